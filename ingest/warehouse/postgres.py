"""The PostgreSQL warehouse: migrations, batch loads through COPY, the ledger and quarantine.

Each batch lands in one transaction. Rows go through `COPY ... FROM STDIN` into a temporary
staging table, and from there into the raw tables without the event ids loaded before. The
ledger row is written as `loaded` in the same transaction, so a batch that fails leaves nothing
but a `failed` ledger row written after the rollback.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
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

# Key of the transaction-level advisory lock that makes ingest writers (and migrations) take
# turns, so two batches never both land the same new event id.
INGEST_LOCK_KEY = 0x75_77_69_6E  # "uwin"


class PostgresBatchWriter(BatchWriter):
    """Lands a batch inside the transaction that `PostgresWarehouse.batch` opened."""

    def __init__(self, connection: psycopg2.extensions.connection, info: BatchInfo) -> None:
        self._connection = connection
        self._info = info
        self._quarantined = 0
        self._received = 0
        self._loaded = 0
        self.finished = False

    def append_events(self, events: pa.Table) -> None:
        if events.num_rows == 0:
            return
        with self._connection.cursor() as cursor:
            _copy_to_staging(cursor, "incoming_events", "raw.usage_events", events)
            columns = ", ".join(events.schema.names)
            # The first line of an event id wins. An id landed before, by an earlier batch or an
            # earlier chunk of this one, makes the row a duplicate.
            cursor.execute(
                f"""
                insert into raw.usage_events ({columns})
                select distinct on (incoming.event_id) {_prefixed("incoming", events.schema.names)}
                from incoming_events as incoming
                where not exists (
                    select 1 from raw.usage_events as loaded where loaded.event_id = incoming.event_id
                )
                order by incoming.event_id, incoming.line_number
                """
            )
            loaded = cursor.rowcount
        self._received += events.num_rows
        self._loaded += loaded

    def append_quarantined(self, rows: pa.Table) -> set[str]:
        if rows.num_rows == 0:
            return set()
        with self._connection.cursor() as cursor:
            _copy_to_staging(cursor, "incoming_quarantine", "raw.quarantined_rows", rows)
            columns = ", ".join(rows.schema.names)
            # A row whose text is already quarantined and open from an earlier batch (a file sent
            # again, or the app table's overlap read twice) is a duplicate, not a second entry.
            cursor.execute(
                f"""
                insert into raw.quarantined_rows ({columns})
                select {_prefixed("incoming", rows.schema.names)}
                from incoming_quarantine as incoming
                where not exists (
                    select 1
                    from raw.quarantined_rows as existing
                    where md5(existing.raw_text) = md5(incoming.raw_text)
                        and existing.raw_text = incoming.raw_text
                        and existing.source_format = incoming.source_format
                        and existing.batch_id <> incoming.batch_id
                        and existing.replayed_at is null
                        and existing.dismissed_at is null
                )
                returning quarantine_id
                """
            )
            inserted = cursor.fetchall()
        self._quarantined += len(inserted)
        self._received += rows.num_rows - len(inserted)
        return {str(row[0]) for row in inserted}

    def mark_replayed(self, quarantine_ids: list[str]) -> None:
        if not quarantine_ids:
            return
        with self._connection.cursor() as cursor:
            cursor.execute(
                "update raw.quarantined_rows set replayed_at = %s, replay_batch_id = %s "
                "where quarantine_id = any(%s)",
                [_utc_now(), self._info.batch_id, list(quarantine_ids)],
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
        with self._connection.cursor() as cursor:
            _insert_ledger_row(
                cursor, self._info, "loaded", counts, json.dumps(validation_result) if validation_result else None
            )
        self._connection.commit()
        self.finished = True
        return counts


class PostgresWarehouse(Warehouse):
    """One PostgreSQL database, reached through a libpq connection string or the PG* variables."""

    def __init__(self, dsn: str | None = None) -> None:
        try:
            # An empty DSN makes libpq read PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
            self._connection = psycopg2.connect(dsn or "", options="-c TimeZone=UTC")
        except psycopg2.OperationalError as error:
            # The message names the host and database but never the password.
            raise WarehouseOpenError(
                f"failed to connect to the PostgreSQL warehouse: {str(error).strip()}. Set USAGE_WAREHOUSE_PG_DSN "
                "or the PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE variables"
            ) from None
        self._batch_open = False

    @property
    def connection(self) -> psycopg2.extensions.connection:
        """The open connection, for commands that manage the database beyond the raw tables."""
        return self._connection

    def apply_migrations(self) -> list[str]:
        try:
            return self._apply_migrations()
        except psycopg2.errors.InsufficientPrivilege as error:
            raise WarehouseOpenError(
                f"{self._connection.info.user} may not create or change the raw tables ({str(error).strip()}); "
                "run ingest, build and access as the role that owns the warehouse"
            ) from None

    def _apply_migrations(self) -> list[str]:
        names = []
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute("select pg_advisory_xact_lock(%s)", [INGEST_LOCK_KEY])
            cursor.execute(
                """
                create table if not exists public.schema_migrations (
                    version text primary key,
                    checksum text not null,
                    applied_at timestamp without time zone not null
                )
                """
            )
            cursor.execute("select version, checksum from public.schema_migrations")
            applied = dict(cursor.fetchall())
            for migration in pending_migrations("postgres", applied):
                cursor.execute(migration.sql)
                cursor.execute(
                    "insert into public.schema_migrations values (%s, %s, %s)",
                    [migration.name, migration.checksum, _utc_now()],
                )
                names.append(migration.name)
        return names

    def find_batch_by_content(self, content_sha256: str) -> str | None:
        rows = self.query(
            "select batch_id from raw.ingest_batches where content_sha256 = %s and status = 'loaded' limit 1",
            [content_sha256],
        )
        return str(rows[0][0]) if rows else None

    @contextmanager
    def batch(self, info: BatchInfo) -> Iterator[PostgresBatchWriter]:
        with self._connection.cursor() as cursor:
            cursor.execute("select pg_advisory_xact_lock(%s)", [INGEST_LOCK_KEY])
        writer = PostgresBatchWriter(self._connection, info)
        self._batch_open = True
        try:
            yield writer
            if not writer.finished:
                raise RuntimeError(f"batch {info.batch_id} was left without finish()")
        except BaseException:
            self._connection.rollback()
            self._batch_open = False
            self._record_failed_batch(info)
            raise
        finally:
            self._batch_open = False

    def _record_failed_batch(self, info: BatchInfo) -> None:
        try:
            with self._connection, self._connection.cursor() as cursor:
                _insert_ledger_row(cursor, info, "failed", BatchCounts(0, 0, 0, 0), None)
        except psycopg2.Error as error:
            # The rollback already removed the batch's rows, so only its ledger entry is missing.
            logger.warning("failed to record failed batch %s in raw.ingest_batches: %s", info.batch_id, error)

    def remove_unfinished_batches(self) -> list[str]:
        """Return no ids: a batch that did not commit left nothing, because it lands in one transaction."""
        return []

    def quarantined_rows(self, reason: str | None = None, include_replayed: bool = False) -> Iterator[QuarantinedRow]:
        sql = """
            select quarantine_id, batch_id, source_file, line_number, source_format, raw_text, raw_fields,
                reason, message, quarantined_at
            from raw.quarantined_rows
            where (%(all)s or (replayed_at is null and dismissed_at is null))
                and (%(reason)s::text is null or reason = %(reason)s)
            order by quarantined_at, source_file, line_number
        """
        for row in self.query(sql, {"all": include_replayed, "reason": reason}):
            yield QuarantinedRow(*row)  # type: ignore[arg-type]

    def dismiss_quarantined(self, note: str, reason: str | None = None, batch_id: str | None = None) -> int:
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(
                """
                update raw.quarantined_rows
                set dismissed_at = %(now)s, dismissal_note = %(note)s
                where replayed_at is null and dismissed_at is null
                    and (%(reason)s::text is null or reason = %(reason)s)
                    and (%(batch)s::text is null or batch_id = %(batch)s)
                """,
                {"now": _utc_now(), "note": note, "reason": reason, "batch": batch_id},
            )
            return cursor.rowcount

    def read_watermark(self, source_name: str) -> tuple[datetime, str] | None:
        rows = self.query(
            "select watermark_created_at, watermark_id from raw.source_watermarks where source_name = %s",
            [source_name],
        )
        return (rows[0][0], str(rows[0][1])) if rows else None  # type: ignore[return-value]

    def write_watermark(self, source_name: str, created_at: datetime, row_id: str) -> None:
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(
                """
                insert into raw.source_watermarks values (%s, %s, %s, %s)
                on conflict (source_name) do update set
                    watermark_created_at = excluded.watermark_created_at,
                    watermark_id = excluded.watermark_id,
                    updated_at = excluded.updated_at
                """,
                [source_name, created_at, row_id, _utc_now()],
            )

    def loaded_seeds(self, schema: str) -> dict[str, str]:
        rows = self.query(
            """
            select loads.seed_name, loads.fingerprint
            from raw.seed_loads as loads
            where to_regclass(format('%%I.%%I', %s::text, loads.seed_name)) is not null
            """,
            [schema],
        )
        return {str(name): str(fingerprint) for name, fingerprint in rows}

    def record_seed_loads(self, fingerprints: dict[str, str]) -> None:
        now = _utc_now()
        with self._connection, self._connection.cursor() as cursor:
            for name, fingerprint in sorted(fingerprints.items()):
                cursor.execute(
                    """
                    insert into raw.seed_loads values (%s, %s, %s)
                    on conflict (seed_name) do update set
                        fingerprint = excluded.fingerprint,
                        loaded_at = excluded.loaded_at
                    """,
                    [name, fingerprint, now],
                )

    def query(
        self, sql: str, parameters: list[object] | dict[str, object] | None = None
    ) -> list[tuple[object, ...]]:
        """Run a read query and return all rows (used by summaries and tests).

        Inside an open batch the query joins the batch's transaction, so it reads the rows staged
        so far and does not commit them.
        """
        if self._batch_open:
            with self._connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return cursor.fetchall()
        with self._connection, self._connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()

    def close(self) -> None:
        self._connection.close()


class WarehouseOpenError(RuntimeError):
    """The PostgreSQL server cannot be reached, or rejects the connection."""


def _copy_to_staging(cursor: psycopg2.extensions.cursor, staging: str, like: str, table: pa.Table) -> None:
    """Copy an Arrow table into a temporary table shaped like a raw table, emptied first."""
    cursor.execute(f"create temporary table if not exists {staging} (like {like}) on commit drop")
    cursor.execute(f"truncate {staging}")
    cursor.copy_expert(
        f"copy {staging} ({', '.join(table.schema.names)}) from stdin with (format csv)", _csv_file(table)
    )


def _csv_file(table: pa.Table) -> io.StringIO:
    """Write an Arrow table as PostgreSQL CSV: null is an unquoted empty field, text is always quoted."""
    buffer = io.StringIO()
    for batch in table.to_batches():
        for row in batch.to_pylist():
            buffer.write(",".join(_csv_field(value) for value in row.values()))
            buffer.write("\n")
    buffer.seek(0)
    return buffer


def _csv_field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    # Whole numbers, booleans and Decimal; str() of a Decimal keeps every digit.
    return str(value)


def _prefixed(alias: str, columns: list[str]) -> str:
    return ", ".join(f"{alias}.{column}" for column in columns)


def _insert_ledger_row(
    cursor: psycopg2.extensions.cursor, info: BatchInfo, status: str, counts: BatchCounts, validation_result: str | None
) -> None:
    cursor.execute(
        """
        insert into raw.ingest_batches (
            batch_id, source_path, source_format, content_sha256, byte_count, rows_read, rows_loaded,
            rows_duplicate, rows_quarantined, started_at, finished_at, status, ingest_version,
            catalog_version, validation_result
        )
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        [info.batch_id, info.source_path, info.source_format, info.content_sha256, info.byte_count,
         counts.rows_read, counts.rows_loaded, counts.rows_duplicate, counts.rows_quarantined,
         info.started_at, _utc_now(), status, info.ingest_version, info.catalog_version, validation_result],
    )


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
