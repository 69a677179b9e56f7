"""The incremental extract of the app's token_usage table, against a real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from conftest import query, run_cli

CREATE_TABLE = """
    create table token_usage (
        id bigserial primary key,
        created_at timestamptz not null,
        provider text not null,
        model text,
        tool_name text,
        operation text not null,
        input_tokens integer,
        output_tokens integer,
        units numeric,
        unit_type text,
        cost_usd numeric,
        user_id text,
        organization_id text
    )
"""

INSERT = """
    insert into token_usage (created_at, provider, model, tool_name, operation, input_tokens, output_tokens,
        units, unit_type, cost_usd, user_id, organization_id)
    values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    returning id
"""


def _server_dsn(database: str) -> str:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    return f"host={host} port={port} user={user} dbname={database}"


@pytest.fixture
def app_dsn() -> Iterator[str]:
    """A new database with an app-shaped token_usage table, dropped afterwards."""
    name = f"usage_app_{os.getpid()}"
    try:
        admin = psycopg2.connect(_server_dsn("postgres"), connect_timeout=5)
    except psycopg2.OperationalError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable in CI: {error}")
        pytest.skip(
            "PostgreSQL is not reachable on 127.0.0.1:5432; start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"drop database if exists {name}")
        cursor.execute(f"create database {name}")
    dsn = _server_dsn(name)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE)
    try:
        yield dsn
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"drop database if exists {name} with (force)")
        admin.close()


def _insert(dsn: str, created_at: datetime, operation: str = "embed", **changes: object) -> int:
    values = {
        "provider": "openai", "model": "text-embedding-3-small", "tool_name": "Knowledge Base",
        "input_tokens": 4, "output_tokens": 0, "units": None, "unit_type": None, "cost_usd": None,
        "user_id": "user_1", "organization_id": "org_a", **changes,
    }
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(INSERT, [
            created_at, values["provider"], values["model"], values["tool_name"], operation,
            values["input_tokens"], values["output_tokens"], values["units"], values["unit_type"],
            values["cost_usd"], values["user_id"], values["organization_id"],
        ])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def _extract(database: Path, dsn: str, *arguments: str) -> str:
    extra = {"USAGE_WAREHOUSE_APP_DSN": dsn}
    return run_cli(database, "ingest", "--app-table", *arguments, environment_extra=extra).stdout


def test_extract_lands_rows_once(tmp_path: Path, app_dsn: str) -> None:
    database = tmp_path / "w.duckdb"
    first = _insert(app_dsn, datetime.fromisoformat("2025-09-03T10:00:00+00:00"))
    second = _insert(app_dsn, datetime.fromisoformat("2025-09-03T12:00:00+02:00"), operation="embed_batch")

    output = _extract(database, app_dsn)
    rerun = _extract(database, app_dsn)

    assert "read 2 = loaded 2 + duplicate 0 + quarantined 0" in output
    assert "loaded 0" in rerun
    rows = query(database, "select event_id, cast(created_at as varchar) from raw.usage_events order by event_id")
    assert rows == [
        (f"token_usage:{first}", "2025-09-03 10:00:00"),
        (f"token_usage:{second}", "2025-09-03 10:00:00"),
    ]


def test_extract_reads_late_rows_in_overlap(tmp_path: Path, app_dsn: str) -> None:
    database = tmp_path / "w.duckdb"
    now = datetime.fromisoformat("2025-09-03T10:00:00+00:00")
    _insert(app_dsn, now)
    _extract(database, app_dsn)
    late = _insert(app_dsn, now - timedelta(minutes=3))  # committed after the first read
    too_late = _insert(app_dsn, now - timedelta(minutes=30))

    output = _extract(database, app_dsn, "--overlap-minutes", "10")

    assert "read 2 = loaded 1 + duplicate 1 + quarantined 0" in output
    landed = {row[0] for row in query(database, "select event_id from raw.usage_events")}
    assert f"token_usage:{late}" in landed
    assert f"token_usage:{too_late}" not in landed


def test_extract_and_csv_export_count_once(tmp_path: Path, app_dsn: str) -> None:
    database = tmp_path / "w.duckdb"
    row_id = _insert(app_dsn, datetime.fromisoformat("2025-09-03T10:00:00+00:00"))
    export = tmp_path / "token_usage.csv"
    export.write_text(
        "id,created_at,provider,model,tool_name,operation,input_tokens,output_tokens,units,unit_type,"
        f"cost_usd,user_id,organization_id\n{row_id},2025-09-03 10:00:00+00,openai,text-embedding-3-small,"
        "Knowledge Base,embed,4,0,,,,user_1,org_a\n"
    )
    run_cli(database, "ingest", str(export))

    output = _extract(database, app_dsn)

    assert "loaded 0 + duplicate 1" in output
    assert query(database, "select count(*) from raw.usage_events") == [(1,)]


def test_extract_needs_dsn(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "w.duckdb", "ingest", "--app-table", check=False)

    assert result.returncode == 1
    assert "USAGE_WAREHOUSE_APP_DSN is not set" in result.stderr


def test_future_row_does_not_move_watermark(tmp_path: Path, app_dsn: str) -> None:
    database = tmp_path / "w.duckdb"
    _insert(app_dsn, datetime.fromisoformat("2025-09-03T10:00:00+00:00"))
    _insert(app_dsn, datetime.fromisoformat("2099-01-01T00:00:00+00:00"))  # a clock gone wrong
    first = _extract(database, app_dsn)
    later = _insert(app_dsn, datetime.fromisoformat("2025-09-03T10:05:00+00:00"))

    second = _extract(database, app_dsn)

    assert "quarantined 1" in first
    assert "loaded 1" in second
    assert query(database, "select count(*) from raw.quarantined_rows") == [(1,)]
    assert (f"token_usage:{later}",) in query(database, "select event_id from raw.usage_events")
