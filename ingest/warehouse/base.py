"""The interface every warehouse writer implements, and the Arrow layout of the raw tables."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import pyarrow as pa

COST = pa.decimal128(38, 12)
UNITS = pa.decimal128(38, 6)

USAGE_EVENT_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("created_at", pa.timestamp("us")),
    ("provider", pa.string()),
    ("provider_as_sent", pa.string()),
    ("operation", pa.string()),
    ("platform", pa.string()),
    ("model", pa.string()),
    ("model_name", pa.string()),
    ("catalog_provider_id", pa.string()),
    ("price_provider_id", pa.string()),
    ("catalog_model_id", pa.string()),
    ("model_resolution", pa.string()),
    ("service", pa.string()),
    ("tool_name", pa.string()),
    ("user_id", pa.string()),
    ("organization_id", pa.string()),
    ("request_id", pa.string()),
    ("run_id", pa.string()),
    ("service_tier", pa.string()),
    ("input_tokens", pa.int64()),
    ("cached_input_tokens", pa.int64()),
    ("cache_write_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()),
    ("usage_details", pa.string()),
    ("usage_flavor", pa.string()),
    ("units", UNITS),
    ("unit_type", pa.string()),
    ("reported_cost_usd", COST),
    ("usage_payload", pa.string()),
    ("attributes", pa.string()),
    ("metadata", pa.string()),
    ("extra_fields", pa.string()),
    ("has_usage", pa.bool_()),
    ("batch_id", pa.string()),
    ("source_file", pa.string()),
    ("line_number", pa.int64()),
    ("loaded_at", pa.timestamp("us")),
])

QUARANTINE_SCHEMA = pa.schema([
    ("quarantine_id", pa.string()),
    ("batch_id", pa.string()),
    ("source_file", pa.string()),
    ("line_number", pa.int64()),
    ("source_format", pa.string()),
    ("raw_text", pa.string()),
    ("raw_fields", pa.string()),
    ("reason", pa.string()),
    ("message", pa.string()),
    ("quarantined_at", pa.timestamp("us")),
    ("replayed_at", pa.timestamp("us")),
    ("replay_batch_id", pa.string()),
    ("dismissed_at", pa.timestamp("us")),
    ("dismissal_note", pa.string()),
])


@dataclass(frozen=True)
class BatchInfo:
    """Ledger facts about one batch, known before its rows are counted."""

    batch_id: str
    source_path: str
    source_format: str
    content_sha256: str
    byte_count: int
    started_at: datetime
    ingest_version: str
    catalog_version: str


@dataclass(frozen=True)
class BatchCounts:
    """Row counts of one batch, where read = loaded + duplicate + quarantined."""

    rows_read: int
    rows_loaded: int
    rows_duplicate: int
    rows_quarantined: int

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_duplicate + self.rows_quarantined


@dataclass(frozen=True)
class QuarantinedRow:
    """A quarantined row as `quarantine list` and `quarantine replay` read it."""

    quarantine_id: str
    batch_id: str
    source_file: str
    line_number: int
    source_format: str
    raw_text: str
    raw_fields: str | None
    reason: str
    message: str
    quarantined_at: datetime


class BatchWriter(ABC):
    """Writes one batch: all of it becomes visible to the models, or none of it."""

    @abstractmethod
    def append_events(self, events: pa.Table) -> None:
        """Stage validated events; duplicates are resolved when the batch finishes."""

    @abstractmethod
    def append_quarantined(self, rows: pa.Table) -> set[str]:
        """Store rows that failed validation and return the ids stored.

        A row already quarantined and open from an earlier batch counts as a duplicate instead.
        """

    @abstractmethod
    def mark_replayed(self, quarantine_ids: list[str]) -> None:
        """Record that these quarantined rows landed through this batch."""

    @abstractmethod
    def finish(
        self, rows_read: int, rows_kept_in_quarantine: int = 0, validation_result: dict[str, Any] | None = None
    ) -> BatchCounts:
        """Land staged events not loaded before and write the ledger row.

        `validation_result` is the Great Expectations summary of the batch, stored with it.

        `rows_kept_in_quarantine` counts replayed rows that failed again: they stay quarantined
        under their existing row and count as quarantined in this batch.
        """


class Warehouse(ABC):
    """A warehouse that ingest can land batches in."""

    @abstractmethod
    def apply_migrations(self) -> list[str]:
        """Apply pending migrations to the raw tables and return the names applied."""

    @abstractmethod
    def find_batch_by_content(self, content_sha256: str) -> str | None:
        """Return the id of a loaded batch with these file contents, if there is one."""

    @abstractmethod
    def batch(self, info: BatchInfo) -> AbstractContextManager[BatchWriter]:
        """Open a batch; leaving the block without `finish` removes everything it wrote."""

    @abstractmethod
    def remove_unfinished_batches(self) -> list[str]:
        """Remove what batches left by a process that died wrote, and return their ids."""

    @abstractmethod
    def quarantined_rows(self, reason: str | None = None, include_replayed: bool = False) -> Iterator[QuarantinedRow]:
        """Yield quarantined rows, oldest first, optionally of one reason only."""

    @abstractmethod
    def dismiss_quarantined(self, note: str, reason: str | None = None, batch_id: str | None = None) -> int:
        """Mark open quarantined rows (of one reason or batch, or all) as dismissed; return how many."""

    @abstractmethod
    def read_watermark(self, source_name: str) -> tuple[datetime, str] | None:
        """Return the (created_at, id) an incremental source was read up to, if it was read."""

    @abstractmethod
    def write_watermark(self, source_name: str, created_at: datetime, row_id: str) -> None:
        """Record how far an incremental source has been read."""

    @abstractmethod
    def loaded_seeds(self, schema: str) -> dict[str, str]:
        """Return the recorded fingerprint of each seed whose table exists in `schema`."""

    @abstractmethod
    def record_seed_loads(self, fingerprints: dict[str, str]) -> None:
        """Record the fingerprints of seeds that a build has just loaded."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""


class MigrationError(RuntimeError):
    """An applied migration no longer matches its file."""


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file of an engine's raw tables."""

    name: str
    sql: str
    checksum: str


def pending_migrations(engine: str, applied: dict[str, str]) -> list[Migration]:
    """Return the engine's migrations not applied yet, in order.

    `applied` maps each applied migration's name to its checksum; a changed file raises
    `MigrationError`, because an applied migration must never be edited.
    """
    pending = []
    files = sorted(resources.files(f"ingest.migrations.{engine}").iterdir(), key=lambda item: item.name)
    for file in files:
        if not file.name.endswith(".sql"):
            continue
        sql = file.read_text()
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        if file.name not in applied:
            pending.append(Migration(file.name, sql, checksum))
        elif applied[file.name] != checksum:
            raise MigrationError(
                f"migration {file.name} changed after it was applied; add a new migration instead of editing it"
            )
    return pending
