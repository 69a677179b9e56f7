"""The embedded DuckDB warehouse: migrations, batch loads through Arrow, the ledger and quarantine."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ingest.warehouse.base import (
    BatchCounts,
    BatchInfo,
    BatchWriter,
    QuarantinedRow,
    Warehouse,
    pending_migrations,
)

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = "256MB"


class DuckDBBatchWriter(BatchWriter):
    """Lands a batch chunk by chunk, each chunk in a transaction of its own.

    DuckDB keeps a transaction's uncommitted rows in memory, so one transaction per file would
    make memory grow with the file. Instead the ledger row stays `loading` until `finish` marks it
    `loaded`. Staging reads loaded batches only, and a batch that never finished is removed by
    `DuckDBWarehouse.remove_unfinished_batches` before the next load.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, info: BatchInfo) -> None:
        self._connection = connection
        self._info = info
        self._quarantined = 0
        self._received = 0
        self._loaded = 0
        self.finished = False

    def append_events(self, events: pa.Table) -> None:
        if events.num_rows == 0:
            return
        with _registered(self._connection, "incoming_events", events), transaction(self._connection):
            # The first line of an event id wins. An id landed before, by an earlier batch or an
            # earlier chunk of this one, makes the row a duplicate.
            row = self._connection.execute(
                """
                insert into raw.usage_events
                select incoming.*
                from incoming_events as incoming
                anti join raw.usage_events as loaded on incoming.event_id = loaded.event_id
                qualify row_number() over (partition by incoming.event_id order by incoming.line_number) = 1
                """
            ).fetchone()
        self._received += events.num_rows
        self._loaded += int(row[0]) if row else 0

    def append_quarantined(self, rows: pa.Table) -> set[str]:
        if rows.num_rows == 0:
            return set()
        with _registered(self._connection, "incoming_quarantine", rows), transaction(self._connection):
            # A row whose text is already quarantined and open from an earlier batch (a file sent
            # again, or the app table's overlap read twice) is a duplicate, not a second entry.
            inserted = self._connection.execute(
                """
                insert into raw.quarantined_rows by name
                select incoming.*
                from incoming_quarantine as incoming
                anti join raw.quarantined_rows as existing
                    on incoming.raw_text = existing.raw_text
                    and incoming.source_format = existing.source_format
                    and existing.batch_id <> incoming.batch_id
                    and existing.replayed_at is null
                    and existing.dismissed_at is null
                returning quarantine_id
                """
            ).fetchall()
        self._quarantined += len(inserted)
        self._received += rows.num_rows - len(inserted)
        return {str(row[0]) for row in inserted}

    def mark_replayed(self, quarantine_ids: list[str]) -> None:
        if not quarantine_ids:
            return
        with transaction(self._connection):
            self._connection.execute(
                "update raw.quarantined_rows set replayed_at = ?, replay_batch_id = ? "
                "where list_contains(?::varchar[], quarantine_id)",
                [_utc_now(), self._info.batch_id, quarantine_ids],
            )

    def finish(
        self, rows_read: int, rows_kept_in_quarantine: int = 0, validation_result: dict[str, Any] | None = None
    ) -> BatchCounts:
        counts = BatchCounts(
            rows_read=rows_read,
            rows_loaded=self._loaded,
            rows_duplicate=self._received - self._loaded,
            rows_quarantined=self._quarantined + rows_kept_in_quarantine,
        )
        with transaction(self._connection):
            self._connection.execute(
                """
                update raw.ingest_batches
                set rows_read = ?, rows_loaded = ?, rows_duplicate = ?, rows_quarantined = ?,
                    finished_at = ?, status = 'loaded', validation_result = ?
                where batch_id = ?
                """,
                [counts.rows_read, counts.rows_loaded, counts.rows_duplicate, counts.rows_quarantined,
                 _utc_now(), json.dumps(validation_result) if validation_result else None, self._info.batch_id],
            )
        self.finished = True
        return counts


class DuckDBWarehouse(Warehouse):
    """One DuckDB file; DuckDB admits one writing process at a time."""

    def __init__(self, path: Path, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = duckdb.connect(str(path))
        except (OSError, duckdb.Error) as error:
            raise WarehouseOpenError(
                f"cannot open the DuckDB warehouse {path}: {error}. Check that the path names a writable "
                "file, and that no other process (a build, a notebook) has it open"
            ) from None
        self._connection.execute("set TimeZone = 'UTC'")
        # Bounds DuckDB's buffer pool: it spills to disk beyond this, so a join over a large
        # warehouse does not take the machine's memory.
        self._connection.execute("set memory_limit = ?", [memory_limit])
        self._connection.execute("set preserve_insertion_order = false")

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
        for migration in pending_migrations("duckdb", applied):
            with transaction(self._connection):
                self._connection.execute(migration.sql)
                self._connection.execute(
                    "insert into main.schema_migrations values (?, ?, ?)",
                    [migration.name, migration.checksum, _utc_now()],
                )
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
        with transaction(self._connection):
            self._connection.execute(
                """
                insert into raw.ingest_batches (
                    batch_id, source_path, source_format, content_sha256, byte_count, rows_read, rows_loaded,
                    rows_duplicate, rows_quarantined, started_at, finished_at, status, ingest_version,
                    catalog_version
                )
                values (?, ?, ?, ?, ?, 0, 0, 0, 0, ?, null, 'loading', ?, ?)
                """,
                [info.batch_id, info.source_path, info.source_format, info.content_sha256, info.byte_count,
                 info.started_at, info.ingest_version, info.catalog_version],
            )
        writer = DuckDBBatchWriter(self._connection, info)
        try:
            yield writer
            if not writer.finished:
                raise RuntimeError(f"batch {info.batch_id} was left without finish()")
        except BaseException:
            self._remove_batch(info.batch_id, "failed")
            raise

    def remove_unfinished_batches(self) -> list[str]:
        """Remove the rows of batches still marked loading, left by a process that died.

        DuckDB lets one process write a file at a time, so a batch still loading when another
        process opens the file can never finish.
        """
        rows = self._connection.execute(
            "select batch_id from raw.ingest_batches where status = 'loading'"
        ).fetchall()
        batch_ids = [str(row[0]) for row in rows]
        for batch_id in batch_ids:
            logger.warning("removing the rows of batch %s, which never finished loading", batch_id)
            self._remove_batch(batch_id, "abandoned")
        with transaction(self._connection):
            # Rows of a batch that failed while its cleanup could not run would otherwise make
            # later rows with the same event ids count as duplicates.
            for table in ("usage_events", "quarantined_rows"):
                self._connection.execute(
                    f"delete from raw.{table} where batch_id in "
                    "(select batch_id from raw.ingest_batches where status in ('failed', 'abandoned'))"
                )
        return batch_ids

    def _remove_batch(self, batch_id: str, status: str) -> None:
        with transaction(self._connection):
            self._connection.execute("delete from raw.usage_events where batch_id = ?", [batch_id])
            self._connection.execute("delete from raw.quarantined_rows where batch_id = ?", [batch_id])
            self._connection.execute(
                "update raw.quarantined_rows set replayed_at = null, replay_batch_id = null "
                "where replay_batch_id = ?",
                [batch_id],
            )
            self._connection.execute(
                "update raw.ingest_batches set status = ?, finished_at = ? where batch_id = ?",
                [status, _utc_now(), batch_id],
            )

    def quarantined_rows(self, reason: str | None = None, include_replayed: bool = False) -> Iterator[QuarantinedRow]:
        sql = """
            select quarantine_id, batch_id, source_file, line_number, source_format, raw_text, raw_fields,
                reason, message, quarantined_at
            from raw.quarantined_rows
            where (? or (replayed_at is null and dismissed_at is null)) and (? is null or reason = ?)
            order by quarantined_at, source_file, line_number
        """
        for row in self._connection.execute(sql, [include_replayed, reason, reason]).fetchall():
            yield QuarantinedRow(*row)

    def dismiss_quarantined(self, note: str, reason: str | None = None, batch_id: str | None = None) -> int:
        with transaction(self._connection):
            row = self._connection.execute(
                """
                update raw.quarantined_rows
                set dismissed_at = ?, dismissal_note = ?
                where replayed_at is null and dismissed_at is null
                    and (? is null or reason = ?) and (? is null or batch_id = ?)
                """,
                [_utc_now(), note, reason, reason, batch_id, batch_id],
            ).fetchone()
        return int(row[0]) if row else 0

    def read_watermark(self, source_name: str) -> tuple[datetime, str] | None:
        row = self._connection.execute(
            "select watermark_created_at, watermark_id from raw.source_watermarks where source_name = ?",
            [source_name],
        ).fetchone()
        return (row[0], str(row[1])) if row else None

    def write_watermark(self, source_name: str, created_at: datetime, row_id: str) -> None:
        with transaction(self._connection):
            self._connection.execute(
                "insert or replace into raw.source_watermarks values (?, ?, ?, ?)",
                [source_name, created_at, row_id, _utc_now()],
            )

    def loaded_seeds(self, schema: str) -> dict[str, str]:
        rows = self._connection.execute(
            """
            select loads.seed_name, loads.fingerprint
            from raw.seed_loads as loads
            inner join information_schema.tables as tables
                on tables.table_schema = ? and tables.table_name = loads.seed_name
            """,
            [schema],
        ).fetchall()
        return {str(name): str(fingerprint) for name, fingerprint in rows}

    def record_seed_loads(self, fingerprints: dict[str, str]) -> None:
        now = _utc_now()
        with transaction(self._connection):
            for name, fingerprint in sorted(fingerprints.items()):
                self._connection.execute(
                    "insert or replace into raw.seed_loads values (?, ?, ?)", [name, fingerprint, now]
                )

    def query(self, sql: str, parameters: list[object] | None = None) -> list[tuple[object, ...]]:
        """Run a read query and return all rows (used by summaries and tests)."""
        return self._connection.execute(sql, parameters or []).fetchall()

    def close(self) -> None:
        self._connection.close()


class WarehouseOpenError(RuntimeError):
    """The DuckDB file cannot be opened: a bad path, no permission, or another process has it."""


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block in one DuckDB transaction: commit when it ends, roll back when it raises."""
    connection.execute("begin transaction")
    try:
        yield
    except BaseException:
        connection.execute("rollback")
        raise
    connection.execute("commit")


@contextmanager
def _registered(connection: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    connection.register(name, table)
    try:
        yield
    finally:
        connection.unregister(name)


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
