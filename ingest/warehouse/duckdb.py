"""The embedded DuckDB warehouse: migrations, batch loads through Arrow, the ledger and quarantine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from ingest.warehouse.base import BatchCounts, BatchInfo, BatchWriter, QuarantinedRow, Warehouse

EVENT_COLUMNS_SQL = "raw.usage_events"


class DuckDBBatchWriter(BatchWriter):
    """Stages a batch in a temporary table, then lands what is new in one statement."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, info: BatchInfo) -> None:
        self._connection = connection
        self._info = info
        self._quarantined = 0
        self._staged = 0
        self.finished = False

    def append_events(self, events: pa.Table) -> None:
        if events.num_rows == 0:
            return
        self._connection.register("incoming_events", events)
        try:
            self._connection.execute("insert into staged_events select * from incoming_events")
        finally:
            self._connection.unregister("incoming_events")
        self._staged += events.num_rows

    def append_quarantined(self, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        self._connection.register("incoming_quarantine", rows)
        try:
            self._connection.execute(
                "insert into raw.quarantined_rows by name select * from incoming_quarantine"
            )
        finally:
            self._connection.unregister("incoming_quarantine")
        self._quarantined += rows.num_rows

    def mark_replayed(self, quarantine_ids: list[str]) -> None:
        if not quarantine_ids:
            return
        self._connection.execute(
            "update raw.quarantined_rows set replayed_at = ?, replay_batch_id = ? "
            "where list_contains(?::varchar[], quarantine_id)",
            [_utc_now(), self._info.batch_id, quarantine_ids],
        )

    def finish(self, rows_read: int, rows_kept_in_quarantine: int = 0) -> BatchCounts:
        # The first line of an event id wins within the batch; ids loaded before are duplicates.
        self._connection.execute(
            """
            insert into raw.usage_events
            select staged.*
            from staged_events as staged
            anti join raw.usage_events as loaded on staged.event_id = loaded.event_id
            qualify row_number() over (partition by staged.event_id order by staged.line_number) = 1
            """
        )
        loaded = self._count_batch_rows()
        counts = BatchCounts(
            rows_read=rows_read,
            rows_loaded=loaded,
            rows_duplicate=self._staged - loaded,
            rows_quarantined=self._quarantined + rows_kept_in_quarantine,
        )
        info = self._info
        self._connection.execute(
            "insert into raw.ingest_batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                info.batch_id, info.source_path, info.source_format, info.content_sha256, info.byte_count,
                counts.rows_read, counts.rows_loaded, counts.rows_duplicate, counts.rows_quarantined,
                info.started_at, _utc_now(), "loaded", info.ingest_version, info.catalog_version,
            ],
        )
        self.finished = True
        return counts

    def _count_batch_rows(self) -> int:
        row = self._connection.execute(
            "select count(*) from raw.usage_events where batch_id = ?", [self._info.batch_id]
        ).fetchone()
        return int(row[0]) if row else 0


class DuckDBWarehouse(Warehouse):
    """One DuckDB file; DuckDB admits one writing process at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._connection = duckdb.connect(str(path))
        except duckdb.IOException as error:
            raise WarehouseBusyError(
                f"cannot open {path}: {error}. Another process (a running build or a notebook) may hold it; "
                "close it and try again"
            ) from None
        self._connection.execute("set TimeZone = 'UTC'")

    def apply_migrations(self) -> list[str]:
        self._connection.execute(
            """
            create table if not exists main.schema_migrations (
                version varchar primary key,
                checksum varchar not null,
                applied_at timestamp not null
            )
            """
        )
        applied = dict(self._connection.execute("select version, checksum from main.schema_migrations").fetchall())
        names = []
        for migration in sorted(resources.files("ingest.migrations.duckdb").iterdir(), key=lambda item: item.name):
            if not migration.name.endswith(".sql"):
                continue
            sql = migration.read_text()
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if migration.name in applied:
                if applied[migration.name] != checksum:
                    raise MigrationError(
                        f"migration {migration.name} changed after it was applied to {self.path}; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            self._connection.execute("begin transaction")
            try:
                self._connection.execute(sql)
                self._connection.execute(
                    "insert into main.schema_migrations values (?, ?, ?)", [migration.name, checksum, _utc_now()]
                )
                self._connection.execute("commit")
            except duckdb.Error:
                self._connection.execute("rollback")
                raise
            names.append(migration.name)
        return names

    def find_batch_by_content(self, content_sha256: str) -> str | None:
        row = self._connection.execute(
            "select batch_id from raw.ingest_batches where content_sha256 = ? and status = 'loaded' limit 1",
            [content_sha256],
        ).fetchone()
        return str(row[0]) if row else None

    @contextmanager
    def batch(self, info: BatchInfo) -> Iterator[DuckDBBatchWriter]:
        connection = self._connection
        connection.execute("begin transaction")
        connection.execute(
            "create or replace temporary table staged_events as select * from raw.usage_events limit 0"
        )
        writer = DuckDBBatchWriter(connection, info)
        try:
            yield writer
            if not writer.finished:
                raise RuntimeError("batch left without finish()")
            connection.execute("drop table staged_events")
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise

    def quarantined_rows(self, reason: str | None = None, include_replayed: bool = False) -> Iterator[QuarantinedRow]:
        sql = """
            select quarantine_id, batch_id, source_file, line_number, source_format, raw_text, raw_fields,
                reason, message, quarantined_at
            from raw.quarantined_rows
            where (? or replayed_at is null) and (? is null or reason = ?)
            order by quarantined_at, source_file, line_number
        """
        for row in self._connection.execute(sql, [include_replayed, reason, reason]).fetchall():
            yield QuarantinedRow(*row)

    def query(self, sql: str, parameters: list[object] | None = None) -> list[tuple[object, ...]]:
        """Run a read query and return all rows (used by summaries and tests)."""
        return self._connection.execute(sql, parameters or []).fetchall()

    def close(self) -> None:
        self._connection.close()


class WarehouseBusyError(RuntimeError):
    """The DuckDB file is locked by another process."""


class MigrationError(RuntimeError):
    """An applied migration no longer matches its file."""


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
