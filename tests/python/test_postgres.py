"""The postgres target: ingest, a failed batch, the shared cases and a build equal to DuckDB's.

These tests need a PostgreSQL server that the libpq variables reach (PGHOST, PGPORT, PGUSER,
PGPASSWORD), with a user that may create databases. Each test gets a new database, dropped after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from conftest import PROJECT_DIR, query, run_cli, shared_file, write_jsonl

from ingest import loader
from ingest.catalog import ModelResolver
from ingest.config import Settings
from ingest.readers import read_records
from ingest.warehouse import open_warehouse

pytestmark = pytest.mark.postgres

CHECK_CASES = PROJECT_DIR.parent / "shared" / "tools" / "check_cases.py"


def _admin_connection() -> psycopg2.extensions.connection:
    try:
        connection = psycopg2.connect(dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as error:
        message = f"PostgreSQL is not reachable through the PG* variables: {str(error).strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(
            f"{message}. Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`,"
            " or point PGHOST, PGPORT and PGUSER at a server where that user may create databases"
        )
    connection.autocommit = True
    return connection


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """Create a new, empty database, yield its name, and drop it after the test."""
    admin = _admin_connection()
    name = f"uw_pg_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f"create database {name}")
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"drop database if exists {name} with (force)")
        admin.close()


def _run(database: str, *arguments: str) -> str:
    """Run `usage-warehouse` on the postgres target and return its output."""
    environment = {"USAGE_WAREHOUSE_TARGET": "postgres", "PGDATABASE": database}
    # run_cli needs a DuckDB path; the postgres target ignores it.
    return run_cli(Path(os.devnull), *arguments, environment_extra=environment).output


def _pg_query(database: str, sql: str) -> list[tuple[object, ...]]:
    connection = psycopg2.connect(dbname=database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        connection.close()


def _event(event_id: str) -> dict[str, object]:
    return {
        "event_id": event_id, "created_at": "2026-11-02T10:00:00Z", "provider": "openai",
        "operation": "analyze_text", "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 200,
    }


def test_postgres_file_twice_lands_once(postgres_database: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [_event("a"), _event("b")])
    with source.open("a") as out:
        out.write("{not json\n")

    _run(postgres_database, "ingest", str(source))
    _run(postgres_database, "ingest", str(source))

    assert _pg_query(postgres_database, "select event_id from raw.usage_events order by event_id") == [("a",), ("b",)]
    quarantined = _pg_query(postgres_database, "select reason, line_number from raw.quarantined_rows")
    assert len(quarantined) == 1
    assert quarantined[0][1] == 3
    batches = _pg_query(
        postgres_database,
        "select status, rows_read, rows_loaded, rows_duplicate, rows_quarantined from raw.ingest_batches",
    )
    assert batches == [("loaded", 3, 2, 0, 1)]


def test_postgres_failed_batch_leaves_nothing(postgres_database: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [_event("a"), _event("b")])
    settings = Settings(
        target="postgres", duckdb_path=Path(os.devnull), project_dir=PROJECT_DIR,
        postgres_dsn=f"dbname={postgres_database}",
    )
    warehouse = open_warehouse(settings)
    info = loader._batch_info(str(source), "jsonl", "sha-test", 1)
    records = [loader._Located(record, str(source), ordinal) for ordinal, record in enumerate(read_records(source))]

    with pytest.raises(RuntimeError, match="disk on fire"):
        with warehouse.batch(info) as writer:
            events, _ = loader._validate(records, info, ModelResolver())
            writer.append_events(events)
            raise RuntimeError("disk on fire")
    warehouse.close()

    assert _pg_query(postgres_database, "select count(*) from raw.usage_events") == [(0,)]
    assert _pg_query(postgres_database, "select status from raw.ingest_batches") == [("failed",)]


def test_postgres_shared_cases_pass() -> None:
    shared_file("cases/usage_cases.jsonl")
    _admin_connection().close()
    completed = subprocess.run(
        [sys.executable, str(CHECK_CASES)],
        env={**os.environ, "USAGE_WAREHOUSE_TARGET": "postgres"},
        cwd=PROJECT_DIR, capture_output=True, text=True,
    )
    last_line = completed.stdout.strip().splitlines()[-1]
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert last_line.endswith(" passed, 0 failed")


def test_postgres_costs_equal_duckdb(postgres_database: str, tmp_path: Path) -> None:
    sample = tmp_path / "sample.jsonl.gz"
    duckdb_file = tmp_path / "sample.duckdb"
    run_cli(duckdb_file, "sample", "--events", "600", "--days", "7", "--end", "2026-11-30", "--out", str(sample))
    run_cli(duckdb_file, "ingest", str(sample))
    run_cli(duckdb_file, "build")
    _run(postgres_database, "ingest", str(sample))
    _run(postgres_database, "build")

    by_provider = "select provider, sum(cost_usd) from marts.fct_usage_events group by provider order by provider"
    on_duckdb = query(duckdb_file, by_provider)
    on_postgres = _pg_query(postgres_database, by_provider)
    assert on_postgres == on_duckdb
    assert sum((cost for _, cost in on_postgres if cost is not None), Decimal(0)) > 0

    cost_types = _pg_query(
        postgres_database,
        """
        select table_name, column_name, data_type, numeric_precision, numeric_scale
        from information_schema.columns
        where table_schema = 'marts' and column_name like '%cost_usd'
        """,
    )
    assert cost_types
    for table, column, data_type, precision, scale in cost_types:
        assert (data_type, precision, scale) == ("numeric", 38, 12), f"marts.{table}.{column}"
