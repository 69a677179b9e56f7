"""Read-only connections for the commands that only read the warehouse: summary, query, export.

They apply no migrations and take no ingest lock, so a role that may only read the marts can use
them. Each engine hides behind `ReadOnlyConnection`: SQL text with placeholders in, column names
and rows or Arrow record batches out.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from ingest.config import Settings

# SQLSTATE of "insufficient privilege", raised for a table or schema the role may not read.
INSUFFICIENT_PRIVILEGE = "42501"
# Arrow types of PostgreSQL's built-in type OIDs, as listed in the pg_type catalog.
POSTGRES_ARROW_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    114: pa.string(),  # json
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),  # char(n)
    1043: pa.string(),  # varchar
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    3802: pa.string(),  # jsonb
}
POSTGRES_NUMERIC = 1700
MAX_DECIMAL128_PRECISION = 38


class ReadError(RuntimeError):
    """The warehouse cannot be opened for reading."""


class QueryError(ReadError):
    """A failed query. `permission_denied` is true when the role may not read a relation it names."""

    def __init__(self, message: str, permission_denied: bool = False) -> None:
        super().__init__(message)
        self.permission_denied = permission_denied


class ReadOnlyConnection(ABC):
    """A read-only session in UTC on the configured warehouse."""

    # Parameter placeholder of the engine's SQL, for queries that pass values as parameters.
    placeholder: str

    @property
    @abstractmethod
    def location(self) -> str:
        """Location of the warehouse, for messages: the DuckDB file, or the database, host and user (never a password)."""

    @abstractmethod
    def execute(self, sql: str, parameters: Sequence[object] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one query and return its column names and rows, or raise `QueryError` when it fails."""

    @abstractmethod
    def record_batches(self, sql: str, parameters: Sequence[object], batch_rows: int) -> pa.RecordBatchReader:
        """Run one query and stream its rows as Arrow batches of at most `batch_rows` rows.

        Decimals keep their precision and scale, and timestamps without time zone stay naive UTC.
        """

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read every query inside the block from one snapshot of the warehouse."""
        yield

    def has_table(self, schema: str, name: str) -> bool:
        """Return whether the relation exists and this session may see it."""
        _, rows = self.execute(
            f"select count(*) from information_schema.tables where table_schema = {self.placeholder} "
            f"and table_name = {self.placeholder}",
            [schema, name],
        )
        return bool(rows[0][0])

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""


class DuckDBReadOnlyConnection(ReadOnlyConnection):
    """A DuckDB file opened read-only, which also keeps writers out until it closes."""

    placeholder = "?"

    def __init__(self, path: Path) -> None:
        import duckdb

        self._duckdb = duckdb
        self._path = path
        if not path.exists():
            raise ReadError(
                f"no warehouse at {path}; run `usage-warehouse ingest FILE` and `usage-warehouse build` first"
            )
        try:
            self._connection = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as error:
            raise ReadError(
                f"cannot open {path} ({error}); if another process is writing it, wait for it to finish"
            ) from None
        self._connection.execute("set TimeZone = 'UTC'")

    @property
    def location(self) -> str:
        return f"DuckDB file: {self._path}"

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            cursor = self._connection.execute(sql, list(parameters))
            columns = [description[0] for description in cursor.description or []]
            return columns, cursor.fetchall()
        except self._duckdb.Error as error:
            raise QueryError(f"query failed: {error}") from None

    def record_batches(self, sql: str, parameters: Sequence[object], batch_rows: int) -> pa.RecordBatchReader:
        try:
            return self._connection.execute(sql, list(parameters)).fetch_record_batch(batch_rows)
        except self._duckdb.Error as error:
            raise QueryError(f"query failed: {error}") from None

    def close(self) -> None:
        self._connection.close()


class PostgresReadOnlyConnection(ReadOnlyConnection):
    """A PostgreSQL session with `default_transaction_read_only` on and TimeZone UTC.

    Each statement commits on its own, so a failed query (a table the role may not read) does not
    abort the ones after it. NOTE: the read-only default guards against mistakes, not against a
    query that starts its own `read write` transaction; only the role's privileges stop that.
    """

    placeholder = "%s"

    def __init__(self, dsn: str | None) -> None:
        import psycopg2

        self._psycopg2 = psycopg2
        try:
            # An empty DSN makes libpq read PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
            self._connection = psycopg2.connect(dsn or "")
        except psycopg2.OperationalError as error:
            # libpq's message names the host, database and user but never the password.
            raise ReadError(
                f"failed to connect to the PostgreSQL warehouse: {str(error).strip()}. Set USAGE_WAREHOUSE_PG_DSN "
                "or the PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE variables"
            ) from None
        self._connection.autocommit = True
        self._cursor_numbers = itertools.count()
        # Set after connecting instead of through `options`, so options in the DSN (a setting
        # that row-level security policies read, say) stay in force.
        with self._connection.cursor() as cursor:
            cursor.execute("set default_transaction_read_only = on")
            cursor.execute("set TimeZone = 'UTC'")

    @property
    def location(self) -> str:
        info = self._connection.info
        return f"PostgreSQL database: {info.dbname} on {info.host}:{info.port} as {info.user}"

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            with self._connection.cursor() as cursor:
                # Without parameters psycopg2 sends the text as it is, so a `%` in it needs no escape.
                cursor.execute(sql, list(parameters) if parameters else None)
                columns = [column.name for column in cursor.description or []]
                return columns, cursor.fetchall() if cursor.description else []
        except self._psycopg2.Error as error:
            raise self._query_error(error) from None

    def record_batches(self, sql: str, parameters: Sequence[object], batch_rows: int) -> pa.RecordBatchReader:
        if self._connection.autocommit:
            raise RuntimeError("record_batches needs a transaction; call it inside `with connection.snapshot():`")
        try:
            # A named cursor is a server-side cursor: rows arrive batch_rows at a time.
            cursor = self._connection.cursor(name=f"usage_warehouse_read_{next(self._cursor_numbers)}")
            cursor.execute(sql, list(parameters))
            first_rows = cursor.fetchmany(batch_rows)
            schema = self._arrow_schema(cursor.description, sql, parameters)
        except self._psycopg2.Error as error:
            raise self._query_error(error) from None
        return pa.RecordBatchReader.from_batches(schema, self._batches(cursor, schema, first_rows, batch_rows))

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        self._connection.autocommit = False
        self._connection.set_session(isolation_level="REPEATABLE READ")
        try:
            yield
        finally:
            self._connection.rollback()  # the session is read-only, so there is nothing to commit
            self._connection.set_session(isolation_level="DEFAULT")
            self._connection.autocommit = True

    def close(self) -> None:
        self._connection.close()

    def _batches(
        self, cursor: Any, schema: pa.Schema, rows: list[tuple[object, ...]], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        try:
            while rows:
                columns = list(zip(*rows, strict=True))
                yield pa.RecordBatch.from_arrays(
                    [_arrow_array(values, field.type) for values, field in zip(columns, schema, strict=True)],
                    schema=schema,
                )
                rows = cursor.fetchmany(batch_rows)
        except self._psycopg2.Error as error:
            raise self._query_error(error) from None
        finally:
            cursor.close()

    def _arrow_schema(self, description: Any, sql: str, parameters: Sequence[object]) -> pa.Schema:
        """Map the result columns to Arrow types, keeping each numeric's precision and scale."""
        fields = []
        unconstrained = []
        for column in description:
            if column.type_code == POSTGRES_NUMERIC:
                if column.precision is None or column.precision > 1000:
                    # `numeric` without (precision, scale), such as a sum: its scale is read below.
                    unconstrained.append(column.name)
                    fields.append(pa.field(column.name, pa.decimal128(MAX_DECIMAL128_PRECISION, 0)))
                elif column.precision <= MAX_DECIMAL128_PRECISION:
                    fields.append(pa.field(column.name, pa.decimal128(column.precision, column.scale)))
                else:
                    fields.append(pa.field(column.name, pa.decimal256(column.precision, column.scale)))
            else:
                fields.append(pa.field(column.name, POSTGRES_ARROW_TYPES.get(column.type_code, pa.string())))
        if unconstrained:
            scales = self._largest_scales(unconstrained, sql, parameters)
            fields = [
                pa.field(field.name, pa.decimal128(MAX_DECIMAL128_PRECISION, scales[field.name]))
                if field.name in scales else field
                for field in fields
            ]
        return pa.schema(fields)

    def _largest_scales(self, columns: list[str], sql: str, parameters: Sequence[object]) -> dict[str, int]:
        """Return the largest number of decimal places each unconstrained numeric column holds."""
        from psycopg2 import sql as composer

        scales = composer.SQL(", ").join(
            composer.SQL("coalesce(max(scale({})), 0)").format(composer.Identifier(column)) for column in columns
        )
        query = composer.SQL("select {} from ({}) as result").format(scales, composer.SQL(sql))
        with self._connection.cursor() as cursor:
            cursor.execute(query, list(parameters))
            row = cursor.fetchone()
        assert row is not None
        return {column: int(scale) for column, scale in zip(columns, row, strict=True)}

    def _query_error(self, error: Exception) -> QueryError:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return QueryError(
            f"query failed: {message}",
            permission_denied=getattr(error, "pgcode", None) == INSUFFICIENT_PRIVILEGE,
        )


# The statements that the spark target's reading commands accept, by first keyword. NOTE: the
# check reads keywords, not a parsed plan, so it guards against mistakes, not against an attack.
SPARK_READING_KEYWORDS = frozenset({"select", "with", "show", "describe", "desc", "explain", "values", "table", "from"})
SPARK_WRITING_CLAUSE = re.compile(r"\b(insert\s+(into|overwrite)|merge\s+into)\b", re.IGNORECASE)
LEADING_COMMENTS = re.compile(r"\A(\s*(--[^\n]*(\n|\Z)|/\*.*?\*/))*\s*", re.DOTALL)


def check_spark_reading_statement(sql: str) -> None:
    """Raise `QueryError` unless SQL is a reading statement, the only kind the spark target runs."""
    statement = LEADING_COMMENTS.sub("", sql)
    keyword = statement.split(None, 1)[0].lower() if statement.strip() else ""
    writing_clause = SPARK_WRITING_CLAUSE.search(statement) if keyword == "with" else None
    if keyword in SPARK_READING_KEYWORDS and writing_clause is None:
        return
    if writing_clause is not None:
        rejected = f"a WITH statement with {' '.join(writing_clause.group(0).upper().split())}"
    else:
        rejected = keyword.upper() or "an empty statement"
    raise QueryError(
        f"query rejected: {rejected} is not a reading statement. Spark has no read-only session, so the "
        "spark target runs only SELECT, WITH ... SELECT, SHOW, DESCRIBE, EXPLAIN, VALUES and TABLE statements here"
    )


class SparkReadOnlyConnection(ReadOnlyConnection):
    """A local Spark session on the spark target's catalog, started in this process.

    NOTE: Spark's Derby metastore admits one process, so nothing else (a dbt build) can open the
    catalog until `close` has stopped this process's Java VM. Spark has no read-only session, so `_frame` rejects
    statements that do not read. `record_batches` collects the whole result in this process
    before it yields the first batch.
    """

    placeholder = "?"

    def __init__(self, spark_dir: Path) -> None:
        if not (spark_dir / "metastore_db").exists():
            raise ReadError(
                f"no Spark catalog in {spark_dir}; run `usage-warehouse --target spark ingest FILE` and "
                "`usage-warehouse --target spark build` first, or set USAGE_WAREHOUSE_SPARK_DIR to its folder"
            )
        from ingest.spark_publish import catalog_busy_message, local_spark_session

        busy = catalog_busy_message(spark_dir)
        if busy:
            raise ReadError(busy)

        # py4j logs each connection at INFO, and pyspark logs each failed query with its Java
        # stack trace. `QueryError` carries the message alone, so both are quieted.
        logging.getLogger("py4j").setLevel(logging.WARNING)
        logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
        self._spark_dir = spark_dir
        try:
            self._spark = local_spark_session(spark_dir)
        except Exception as error:  # py4j and Spark raise several types, each with a message
            raise ReadError(
                f"cannot start Spark on {spark_dir} ({str(error).strip().splitlines()[0]}); if another process "
                "(a build) has its catalog open, wait for it to finish"
            ) from None

    @property
    def location(self) -> str:
        return f"Spark catalog: {self._spark_dir}"

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        frame = self._frame(sql, parameters)
        try:
            return frame.columns, [tuple(row) for row in frame.collect()]
        except Exception as error:
            raise self._query_error(error) from None

    def record_batches(self, sql: str, parameters: Sequence[object], batch_rows: int) -> pa.RecordBatchReader:
        frame = self._frame(sql, parameters)
        try:
            table = frame.toArrow()
        except Exception as error:
            raise self._query_error(error) from None
        # Spark hands timestamps over in UTC with a time zone; the readers' contract is naive UTC.
        schema = pa.schema([
            pa.field(field.name, pa.timestamp(field.type.unit)) if pa.types.is_timestamp(field.type) else field
            for field in table.schema
        ])
        return pa.RecordBatchReader.from_batches(schema, table.cast(schema).to_batches(max_chunksize=batch_rows))

    def has_table(self, schema: str, name: str) -> bool:
        # Spark's session catalog has no information_schema.
        return bool(self._spark.catalog.tableExists(f"{schema}.{name}"))

    def close(self) -> None:
        from ingest.spark_publish import stop_local_spark

        stop_local_spark(self._spark)

    def _frame(self, sql: str, parameters: Sequence[object]) -> Any:
        # Spark runs a command as soon as `sql` is called, so a writing statement is rejected first.
        check_spark_reading_statement(sql)
        try:
            return self._spark.sql(sql, args=list(parameters)) if parameters else self._spark.sql(sql)
        except Exception as error:
            raise self._query_error(error) from None

    @staticmethod
    def _query_error(error: Exception) -> QueryError:
        lines = str(error).strip().splitlines()
        return QueryError(f"query failed: {lines[0] if lines else type(error).__name__}")


def connect_read_only(settings: Settings) -> ReadOnlyConnection:
    """Open a read-only connection to the configured warehouse, without migrating it."""
    if settings.target == "postgres":
        return PostgresReadOnlyConnection(settings.postgres_dsn)
    if settings.target == "spark":
        return SparkReadOnlyConnection(settings.spark_dir)
    return DuckDBReadOnlyConnection(settings.duckdb_path)


def _arrow_array(values: Sequence[object], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_string(arrow_type):
        values = [_text(value) for value in values]
    return pa.array(values, type=arrow_type)


def _text(value: object) -> str | None:
    """Convert a value of a text column to str, because psycopg2 parses json and jsonb into objects."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list, bool, int, float, Decimal)):
        return json.dumps(value, default=str)
    return str(value)
