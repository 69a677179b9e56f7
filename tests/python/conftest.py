"""Shared fixtures: the project, the shared cases, and warehouses built through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHARED_DIR = PROJECT_DIR.parent / "shared"
CLI = Path(sys.executable).with_name("usage-warehouse")
# The PostgreSQL tests reach the server the way CI starts it: TCP on 127.0.0.1 as postgres.
# Variables already set (another host, another user) win.
os.environ.setdefault("PGHOST", "127.0.0.1")
os.environ.setdefault("PGUSER", "postgres")

SAMPLE_EVENTS = 3000
SAMPLE_DAYS = 14
SAMPLE_END = "2026-11-30"


def shared_file(relative: str) -> Path:
    """Return a file of the shared folder, which CI always has; skip elsewhere when it is absent."""
    path = SHARED_DIR / relative
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI must run with the shared folder beside the clone")
        pytest.skip(f"{path} is missing: clone the project beside the shared folder")
    return path


@dataclass(frozen=True)
class CommandResult:
    """Exit code and output of one `usage-warehouse` run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    database: Path, *arguments: str, check: bool = True, environment_extra: dict[str, str] | None = None
) -> CommandResult:
    """Run the installed `usage-warehouse` command against one DuckDB file, as a user would."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("USAGE_WAREHOUSE_")
    }
    environment["USAGE_WAREHOUSE_DUCKDB"] = str(database)
    environment.update(environment_extra or {})
    completed = subprocess.run(
        [str(CLI), *arguments], env=environment, capture_output=True, text=True, cwd=PROJECT_DIR
    )
    result = CommandResult(completed.returncode, completed.stdout, completed.stderr)
    if check and completed.returncode != 0:
        raise AssertionError(f"usage-warehouse {' '.join(arguments)} exited {completed.returncode}:\n{result.output[-4000:]}")
    return result


def query(database: Path, sql: str, parameters: list[object] | None = None) -> list[tuple[object, ...]]:
    """Read from a DuckDB warehouse file in UTC."""
    connection = duckdb.connect(str(database), read_only=True)
    try:
        connection.execute("set TimeZone = 'UTC'")
        return connection.execute(sql, parameters or []).fetchall()
    finally:
        connection.close()


def write_jsonl(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


@pytest.fixture(scope="session")
def usage_cases() -> list[dict[str, object]]:
    path = shared_file("cases/usage_cases.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class BuiltWarehouse:
    """A warehouse file after ingest and build, with the build's output."""

    database: Path
    build: CommandResult


@pytest.fixture(scope="session")
def cases_warehouse(tmp_path_factory: pytest.TempPathFactory, usage_cases: list[dict[str, object]]) -> BuiltWarehouse:
    """A warehouse holding every shared case's events, ingested and built."""
    folder = tmp_path_factory.mktemp("cases")
    database = folder / "cases.duckdb"
    events = [event for case in usage_cases for event in case["events"]]  # type: ignore[union-attr]
    run_cli(database, "ingest", str(write_jsonl(folder / "cases.jsonl", events)))
    return BuiltWarehouse(database, run_cli(database, "build"))


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltWarehouse]:
    """A warehouse holding the sample workload, ingested and built."""
    folder = tmp_path_factory.mktemp("sample")
    database = folder / "sample.duckdb"
    sample = folder / "sample.jsonl.gz"
    run_cli(database, "sample", "--events", str(SAMPLE_EVENTS), "--days", str(SAMPLE_DAYS),
            "--end", SAMPLE_END, "--out", str(sample))
    run_cli(database, "ingest", str(sample))
    yield BuiltWarehouse(database, run_cli(database, "build"))
