"""--target and --duckdb after a command, and summary, query and the sync lock on PostgreSQL.

The PostgreSQL tests need a server that the libpq variables reach. Its user must be allowed to
create databases and roles. Each test gets a new database, dropped after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import psycopg2
import pytest
from click.testing import CliRunner
from conftest import (
    CommandResult,
    new_postgres_database,
    postgres_admin_connection,
    postgres_rows,
    query,
    run_cli,
    write_jsonl,
)

from ingest.cli import cli
from ingest.sync import SYNC_LOCK_KEY

INVALID_TARGET = "target 'bogus' is not supported; use one of: duckdb, postgres, spark"


def _events(prefix: str, count: int = 2) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"{prefix}-{number}", "created_at": "2026-11-02T10:00:00Z", "provider": "openai",
            "operation": "analyze_text", "model": "gpt-4o-mini", "organization_id": "org_a",
            "input_tokens": 1000, "output_tokens": 200,
        }
        for number in range(count)
    ]


def _run_postgres(
    database: str, *arguments: str, check: bool = True, environment: dict[str, str] | None = None
) -> CommandResult:
    """Run `usage-warehouse` with PGDATABASE set; the target comes from the arguments or ENVIRONMENT."""
    return run_cli(
        Path(os.devnull), *arguments, check=check, environment_extra={"PGDATABASE": database, **(environment or {})}
    )


def _pg_rows(database: str, sql: str, parameters: list[object] | None = None) -> list[tuple[object, ...]]:
    return postgres_rows(database, sql, parameters)


def _leaf_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_leaf_command_takes_target_options() -> None:
    paths = list(_leaf_paths(cli))
    assert ("quarantine", "list") in paths
    assert ("prices", "export") in paths
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, f"{' '.join(path)} --help: {result.output}"
        assert "--target" in result.output, " ".join(path)
        assert "--duckdb" in result.output, " ".join(path)


def test_command_target_overrides_environment(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    source = write_jsonl(tmp_path / "events.jsonl", _events("env"))

    run_cli(database, "ingest", "--target", "duckdb", str(source),
            environment_extra={"USAGE_WAREHOUSE_TARGET": "postgres", "PGHOST": "0.invalid"})

    assert query(database, "select count(*) from raw.usage_events") == [(2,)]


def test_command_target_overrides_group_target(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    source = write_jsonl(tmp_path / "events.jsonl", _events("group"))

    run_cli(database, "--target", "postgres", "ingest", "--target", "duckdb", str(source),
            environment_extra={"PGHOST": "0.invalid"})

    assert query(database, "select count(*) from raw.usage_events") == [(2,)]


def test_command_target_replaces_invalid_environment(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    source = write_jsonl(tmp_path / "events.jsonl", _events("invalid-env"))

    run_cli(database, "ingest", "--target", "duckdb", str(source), environment_extra={"USAGE_WAREHOUSE_TARGET": "bogus"})

    assert query(database, "select count(*) from raw.usage_events") == [(2,)]


def test_command_duckdb_overrides_group_duckdb(tmp_path: Path) -> None:
    group_file = tmp_path / "group.duckdb"
    command_file = tmp_path / "command.duckdb"
    source = write_jsonl(tmp_path / "events.jsonl", _events("path"))

    run_cli(group_file, "--duckdb", str(group_file), "ingest", "--duckdb", str(command_file), str(source))

    assert query(command_file, "select count(*) from raw.usage_events") == [(2,)]
    assert not group_file.exists()


def test_nested_command_takes_duckdb(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    source = write_jsonl(tmp_path / "events.jsonl", _events("nested"))
    with source.open("a") as out:
        out.write("{not json\n")
    run_cli(database, "ingest", str(source))

    result = run_cli(tmp_path / "elsewhere.duckdb", "quarantine", "list", "--duckdb", str(database))

    assert "invalid_json: 1 rows" in result.stdout


def test_invalid_target_same_error_both_positions(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"

    before = run_cli(database, "--target", "bogus", "summary", check=False)
    after = run_cli(database, "summary", "--target", "bogus", check=False)
    nested = run_cli(database, "quarantine", "list", "--target", "bogus", check=False)

    assert before.returncode == 1
    assert after.returncode == 1
    assert nested.returncode == 1
    assert before.stderr.strip() == f"Error: {INVALID_TARGET}"
    assert after.stderr == before.stderr
    assert nested.stderr == before.stderr


@pytest.mark.postgres
@pytest.mark.parametrize(
    "arguments",
    [("ingest", "--target", "postgres"), ("--target", "postgres", "ingest")],
    ids=["after-command", "before-command"],
)
def test_target_postgres_either_position_lands(
    postgres_database: str, tmp_path: Path, arguments: tuple[str, ...]
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", _events("position"))

    result = run_cli(tmp_path / "w.duckdb", *arguments, str(source), environment_extra={"PGDATABASE": postgres_database})

    assert "loaded 2" in result.stdout
    assert _pg_rows(postgres_database, "select count(*) from raw.usage_events") == [(2,)]
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.postgres
def test_nested_command_takes_target_postgres(postgres_database: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", _events("nested"))
    with source.open("a") as out:
        out.write("{not json\n")
    _run_postgres(postgres_database, "ingest", "--target", "postgres", str(source))

    result = _run_postgres(postgres_database, "quarantine", "list", "--target", "postgres")

    assert "invalid_json: 1 rows" in result.stdout


@pytest.fixture(scope="module")
def built_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new database with two events and one quarantined row, ingested and built; dropped after."""
    with new_postgres_database() as name:
        folder = tmp_path_factory.mktemp("built_postgres")
        source = write_jsonl(folder / "events.jsonl", _events("built"))
        with source.open("a") as out:
            out.write("{not json\n")
        _run_postgres(name, "ingest", str(source), environment={"USAGE_WAREHOUSE_TARGET": "postgres"})
        _run_postgres(name, "build", environment={"USAGE_WAREHOUSE_TARGET": "postgres"})
        yield name


@pytest.mark.postgres
def test_postgres_summary_prints_totals(built_postgres: str) -> None:
    result = _run_postgres(built_postgres, "summary", "--target", "postgres")

    assert "billable events               2" in result.stdout
    assert "Quarantined rows: 1" in result.stdout
    assert "  invalid_json" in result.stdout
    assert f"PostgreSQL database: {built_postgres} on " in result.stdout
    assert " as postgres" in result.stdout
    assert 'query --target postgres "select' in result.stdout


@pytest.mark.postgres
def test_postgres_summary_hides_password(built_postgres: str) -> None:
    dsn = f"host={os.environ['PGHOST']} dbname={built_postgres} user=postgres password=hunter2-secret"

    result = run_cli(Path(os.devnull), "summary", "--target", "postgres",
                     environment_extra={"USAGE_WAREHOUSE_PG_DSN": dsn})

    assert "billable events" in result.stdout
    assert "hunter2-secret" not in result.output


@pytest.mark.postgres
def test_postgres_query_prints_rows(built_postgres: str) -> None:
    result = _run_postgres(
        built_postgres, "query", "--target", "postgres",
        "select event_id, current_setting('TimeZone') as zone from marts.fct_usage_events "
        "where event_id like 'built-%' order by 1",
    )

    assert result.stdout.splitlines()[2:5] == ["built-0   UTC", "built-1   UTC", "(2 rows)"]


@pytest.mark.postgres
def test_postgres_query_error_is_one_line(built_postgres: str) -> None:
    result = _run_postgres(built_postgres, "query", "--target", "postgres", "select * from marts.nope", check=False)

    assert result.returncode == 1
    assert result.stderr == 'Error: query failed: relation "marts.nope" does not exist\n'


@pytest.mark.postgres
def test_postgres_query_session_is_read_only(built_postgres: str) -> None:
    result = _run_postgres(
        built_postgres, "query", "--target", "postgres", "delete from marts.fct_usage_events", check=False
    )

    assert result.returncode == 1
    assert "query failed: cannot execute DELETE in a read-only transaction" in result.stderr
    assert _pg_rows(built_postgres, "select count(*) from marts.fct_usage_events") == [(2,)]


@pytest.mark.postgres
def test_postgres_summary_applies_no_migrations(postgres_database: str) -> None:
    result = _run_postgres(postgres_database, "summary", "--target", "postgres", check=False)

    assert result.returncode == 1
    assert "has no marts" in result.stderr
    assert _pg_rows(postgres_database, "select to_regclass('public.schema_migrations')") == [(None,)]


@pytest.fixture
def marts_only_role(built_postgres: str) -> Iterator[str]:
    """A login role that may read the marts but not the raw schema; dropped after."""
    role = f"uw_test_reader_{uuid.uuid4().hex[:12]}"
    admin = postgres_admin_connection()
    with admin.cursor() as cursor:
        cursor.execute(f"create role {role} login")
    connection = psycopg2.connect(dbname=built_postgres)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"grant usage on schema marts to {role}")
            cursor.execute(f"grant select on all tables in schema marts to {role}")
            # Where the marts have row-level security, the policy reads the access schema. Members
            # of the reader group role may read it, so this role joins that group when it exists.
            cursor.execute("select rolname from pg_roles where rolname = 'usage_warehouse_reader'")
            if cursor.fetchone():
                cursor.execute(f"grant usage_warehouse_reader to {role}")
        yield role
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"drop owned by {role}")
        connection.close()
        with admin.cursor() as cursor:
            cursor.execute(f"drop role if exists {role}")
        admin.close()


@pytest.mark.postgres
def test_postgres_summary_without_raw_privilege(built_postgres: str, marts_only_role: str) -> None:
    result = _run_postgres(
        built_postgres, "summary", "--target", "postgres", environment={"PGUSER": marts_only_role}
    )

    assert "billable events" in result.stdout
    assert "Cost by provider and operation" in result.stdout
    assert "Quarantined rows: not readable by this role" in result.stdout
    assert f" as {marts_only_role}" in result.stdout


@pytest.mark.postgres
def test_postgres_sync_waits_for_advisory_lock(postgres_database: str, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    write_jsonl(drop / "events.jsonl", _events("sync", count=3))
    holder = psycopg2.connect(dbname=postgres_database)
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("select pg_advisory_lock(%s)", [SYNC_LOCK_KEY])

        locked = _run_postgres(postgres_database, "--target", "postgres", "sync", "--drop", str(drop), check=False)

        assert locked.returncode == 75
        assert "another sync cycle is running" in locked.stderr
        assert f"server process {holder.info.backend_pid}" in locked.stderr
        assert (drop / "events.jsonl").exists()
        assert _pg_rows(postgres_database, "select to_regclass('raw.usage_events')") == [(None,)]

        with holder.cursor() as cursor:
            cursor.execute("select pg_advisory_unlock(%s)", [SYNC_LOCK_KEY])
        _run_postgres(postgres_database, "--target", "postgres", "sync", "--drop", str(drop))
    finally:
        holder.close()

    assert (drop / "landed" / "events.jsonl").exists()
    assert _pg_rows(postgres_database, "select count(*) from marts.fct_usage_events") == [(3,)]
