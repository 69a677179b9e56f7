"""The spark target's writer: a DuckDB landing file, published to Spark's raw tables on close.

Batches land in `Settings.spark_landing_path` through `DuckDBWarehouse`, so the ledger,
deduplication, quarantine and lineage rules are the duckdb target's, row for row. Closing the
warehouse publishes what changed to Spark (`ingest.spark_publish`) in a child process, before
dbt opens Spark's single-process Derby metastore.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

from ingest.config import Settings
from ingest.spark_publish import needs_publication, publish_in_child_process
from ingest.warehouse.base import BatchInfo, BatchWriter, QuarantinedRow, Warehouse
from ingest.warehouse.duckdb import DuckDBWarehouse


class SparkWarehouse(Warehouse):
    """Batches land in DuckDB beside the Spark catalog and reach Spark when the warehouse closes."""

    def __init__(self, settings: Settings) -> None:
        self._spark_dir = settings.spark_dir
        self._landing = DuckDBWarehouse(settings.spark_landing_path)

    def apply_migrations(self) -> list[str]:
        return self._landing.apply_migrations()

    def find_batch_by_content(self, content_sha256: str) -> str | None:
        return self._landing.find_batch_by_content(content_sha256)

    def batch(self, info: BatchInfo) -> AbstractContextManager[BatchWriter]:
        return self._landing.batch(info)

    def remove_unfinished_batches(self) -> list[str]:
        return self._landing.remove_unfinished_batches()

    def quarantined_rows(self, reason: str | None = None, include_replayed: bool = False) -> Iterator[QuarantinedRow]:
        return self._landing.quarantined_rows(reason, include_replayed)

    def dismiss_quarantined(self, note: str, reason: str | None = None, batch_id: str | None = None) -> int:
        return self._landing.dismiss_quarantined(note, reason, batch_id)

    def read_watermark(self, source_name: str):  # type: ignore[no-untyped-def]
        return self._landing.read_watermark(source_name)

    def write_watermark(self, source_name: str, created_at, row_id: str) -> None:  # type: ignore[no-untyped-def]
        self._landing.write_watermark(source_name, created_at, row_id)

    def loaded_seeds(self, schema: str) -> dict[str, str]:
        # A seed counts as loaded when its fingerprint is recorded and its managed table's
        # folder, warehouse/<schema>.db/<seed>, exists in the catalog.
        recorded = self._landing.query("select seed_name, fingerprint from raw.seed_loads")
        tables = self._spark_dir / "warehouse" / f"{schema}.db"
        return {str(name): str(fingerprint) for name, fingerprint in recorded if (tables / str(name)).is_dir()}

    def record_seed_loads(self, fingerprints: dict[str, str]) -> None:
        self._landing.record_seed_loads(fingerprints)

    def close(self) -> None:
        self._landing.close()
        if needs_publication(self._spark_dir / "landing.duckdb"):
            publish_in_child_process(self._spark_dir)
