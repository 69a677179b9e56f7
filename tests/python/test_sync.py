"""The scheduled cycle: sources, lock, exit codes, and runs killed at any point.

The cycle's outcomes are tested on DuckDB and on PostgreSQL, the killed runs on DuckDB only. The
lock is also tested on a local Spark catalog, where it is a file in the Spark folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import psycopg2
import pytest

from conftest import CLI, PROJECT_DIR, SPARK, TARGETS, WarehouseUnderTest, query, run_cli, write_jsonl
from ingest.sample import write_sample
from ingest.sync import SYNC_LOCK_KEY

EVENT = {
    "created_at": "2025-09-03T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o-mini-2024-07-18",
    "operation": "analyze_text",
    "organization_id": "org_a",
    "input_tokens": 1000,
    "output_tokens": 100,
}


def _inputs(folder: Path, events: int = 300) -> tuple[Path, Path]:
    """A drop folder with a sample file and a spool with one closed segment."""
    drop = folder / "drop"
    spool = folder / "spool"
    drop.mkdir(parents=True)
    spool.mkdir(parents=True)
    write_sample(drop / "sample.jsonl.gz", events=events, days=7, seed=3, end=date(2026, 11, 30))
    write_jsonl(spool / "20261130T000000-a.jsonl", [{**EVENT, "event_id": f"spooled-{n}"} for n in range(5)])
    return drop, spool


def _state(database: Path) -> dict[str, object]:
    return {
        "raw_events": query(database, "select count(*), count(distinct event_id) from raw.usage_events"),
        "open_quarantine": query(
            database, "select count(*) from raw.quarantined_rows where replayed_at is null and dismissed_at is null"
        ),
        "marts": query(database, "select count(*), sum(cost_usd) from marts.fct_usage_events"),
    }


@contextmanager
def _sync_lock_held(warehouse: WarehouseUnderTest) -> Iterator[None]:
    """Take the lock that a running cycle takes: a file on DuckDB and Spark, an advisory lock in PostgreSQL."""
    if warehouse.postgres_database is None:
        lock_path = warehouse.settings().sync_lock_path
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a+") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield
        return
    connection = psycopg2.connect(dbname=warehouse.postgres_database)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("select pg_advisory_lock(%s)", [SYNC_LOCK_KEY])
        yield
    finally:
        connection.close()


def test_sync_lands_sources_and_builds(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    drop, spool = _inputs(tmp_path)

    result = warehouse.run("sync", "--drop", str(drop), "--spool", str(spool))

    assert "pulled 2 batches" in result.stdout
    assert not list(spool.glob("*.jsonl"))
    assert (drop / "landed" / "sample.jsonl.gz").exists()
    assert not (drop / "sample.jsonl.gz").exists()
    assert warehouse.query("select count(*) from marts.fct_usage_events where event_id like 'spooled-%'") == [(5,)]


@pytest.mark.parametrize("warehouse", [*TARGETS, SPARK], indirect=True)
def test_sync_second_cycle_exits_75(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    drop, _ = _inputs(tmp_path)
    with _sync_lock_held(warehouse):
        result = warehouse.run("sync", "--drop", str(drop), check=False)

    assert result.returncode == 75
    assert "another sync cycle is running" in result.stderr
    assert (drop / "sample.jsonl.gz").exists()


def test_sync_without_sources_fails(warehouse: WarehouseUnderTest) -> None:
    result = warehouse.run("sync", check=False)

    assert result.returncode == 1
    assert "no source configured" in result.stderr


def test_sync_missing_drop_folder_fails(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    _, spool = _inputs(tmp_path)

    result = warehouse.run("sync", "--spool", str(spool), "--drop", str(tmp_path / "nope"), check=False)

    assert result.returncode == 1
    assert "drop folder" in result.stderr
    assert warehouse.query("select count(*) from marts.fct_usage_events") == [(5,)]


def _sync_command(database: Path, drop: Path, spool: Path) -> tuple[list[str], dict[str, str]]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("USAGE_WAREHOUSE_")}
    environment["USAGE_WAREHOUSE_DUCKDB"] = str(database)
    return [str(CLI), "sync", "--drop", str(drop), "--spool", str(spool)], environment


# DuckDB only: it exercises DuckDB's recovery of batches that commit chunk by chunk (the `loading`
# batches removed when the warehouse opens). On PostgreSQL a killed batch rolls back as one
# transaction, and four more 30,000-event cycles would double the suite's slowest test.
def test_sync_killed_then_rerun_matches_clean_run(tmp_path: Path) -> None:
    """SIGKILL at several points of a cycle, then one full cycle, equals one clean cycle."""
    reference_inputs = tmp_path / "reference"
    drop, spool = _inputs(reference_inputs, events=30000)
    pristine = tmp_path / "pristine"
    shutil.copytree(reference_inputs, pristine)
    reference = reference_inputs / "w.duckdb"
    started = time.monotonic()
    run_cli(reference, "sync", "--drop", str(drop), "--spool", str(spool))
    clean_seconds = time.monotonic() - started
    expected = _state(reference)

    # Three points spread over the clean cycle, from its first seconds to its last fifth.
    for fraction in (0.1, 0.4, 0.8):
        attempt = tmp_path / f"kill-{fraction}"
        shutil.copytree(pristine, attempt)
        database = attempt / "w.duckdb"
        command, environment = _sync_command(database, attempt / "drop", attempt / "spool")
        process = subprocess.Popen(command, env=environment, cwd=PROJECT_DIR, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(clean_seconds * fraction)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the whole group, dbt's child process included
        process.wait()

        run_cli(database, "sync", "--drop", str(attempt / "drop"), "--spool", str(attempt / "spool"))

        assert _state(database) == expected, f"killed after {fraction:.0%} of a clean cycle"
