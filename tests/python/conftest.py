"""Shared fixtures: the project, the shared cases, and warehouses built through the command line.

End-to-end tests take a warehouse under test (`WarehouseUnderTest`) on each target: a new DuckDB
file, or a new PostgreSQL database that is dropped after. The PostgreSQL variants carry the
`postgres` mark. They skip with a how-to-start message when no server is reachable, except in CI,
where they fail. The shared cases and the Spark tests also run on a new local Spark catalog
(`spark` mark), which tests read through the Parquet files of its tables.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import __main__
import duckdb
import psycopg2
import psycopg2.extensions
import pytest

from ingest.config import Settings

# pyspark's Spark Connect module exits a process whose main module has neither a file nor a spec,
# taking it for a doctest run, and Great Expectations imports that module when pyspark is
# installed. pytest-xdist's workers are such processes, so their main module gets a file here.
if getattr(__main__, "__spec__", None) is None and not hasattr(__main__, "__file__"):
    __main__.__file__ = __file__

PROJECT_DIR = Path(__file__).resolve().parents[2]
SHARED_DIR = PROJECT_DIR.parent / "shared"
CLI = Path(sys.executable).with_name("usage-warehouse")
# The PostgreSQL tests reach the server the way CI starts it: TCP on 127.0.0.1 as postgres.
# Variables already set (another host, another user) win.
os.environ.setdefault("PGHOST", "127.0.0.1")
os.environ.setdefault("PGUSER", "postgres")

# Test files that build warehouses, slowest first. `make test` hands whole files to two
# pytest-xdist workers in collection order (`--dist loadfile --no-loadscope-reorder`), so the
# slowest files start first and the workers finish at about the same time. The order follows
# one run's durations on a 2-core machine; files not listed come after, as collected.
SLOWEST_FILES_FIRST = (
    "test_build.py", "test_incremental.py", "test_report.py", "test_ingest.py", "test_export.py",
    "test_sync.py", "test_usage_cases.py", "test_cli_targets.py", "test_access.py", "test_app_table.py",
)

SAMPLE_EVENTS = 3000
SAMPLE_DAYS = 14
SAMPLE_END = "2026-11-30"

# Parameters that run a fixture or test once per target. The postgres mark lets
# `pytest -m "not postgres"` run the DuckDB variants alone.
TARGETS = [
    pytest.param("duckdb", id="duckdb"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
SPARK = pytest.param("spark", id="spark", marks=pytest.mark.spark)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the slowest test files to the front; a stable sort keeps each file's own order."""
    rank = {name: index for index, name in enumerate(SLOWEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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


def query(
    database: Path | WarehouseUnderTest, sql: str, parameters: list[object] | None = None
) -> list[tuple[object, ...]]:
    """Read from a DuckDB warehouse file, or from a warehouse under test on either target, in UTC."""
    if isinstance(database, WarehouseUnderTest):
        return database.query(sql, parameters)
    connection = duckdb.connect(str(database), read_only=True)
    try:
        connection.execute("set TimeZone = 'UTC'")
        return connection.execute(sql, parameters or []).fetchall()
    finally:
        connection.close()


def write_jsonl(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def postgres_admin_connection() -> psycopg2.extensions.connection:
    """Connect to the server's `postgres` database in autocommit, to create and drop databases.

    Skips the test when the server is unreachable, or fails it in CI, where a server must run.
    """
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


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """Create a new, empty database, yield its name, then drop it with dbt's output folder for it."""
    name = f"uw_e2e_{uuid.uuid4().hex[:12]}"
    admin = postgres_admin_connection()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"create database {name}")
    finally:
        admin.close()
    try:
        yield name
    finally:
        admin = postgres_admin_connection()
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"drop database if exists {name} with (force)")
        finally:
            admin.close()
        # `Settings.dbt_target_path` of the postgres target: one folder per database name.
        shutil.rmtree(PROJECT_DIR / "target" / f"postgres-{name}", ignore_errors=True)


def postgres_rows(
    database: str, sql: str, parameters: list[object] | None = None, user: str | None = None
) -> list[tuple[object, ...]]:
    """Run one statement in a PostgreSQL database, as `user` when given, and return its rows."""
    connection = psycopg2.connect(dbname=database, **({"user": user} if user else {}))
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()
    finally:
        connection.close()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    with new_postgres_database() as name:
        yield name


@dataclass(frozen=True)
class WarehouseUnderTest:
    """A warehouse on one target that tests drive through the command line and read with SQL.

    `duckdb_path` is set on both targets. On duckdb it is the warehouse. On postgres the command
    line still writes files beside it, such as the sample file of `run`.
    """

    target: str
    duckdb_path: Path
    # Name of the PostgreSQL database on the postgres target, None on duckdb and spark.
    postgres_database: str | None

    @property
    def location(self) -> str:
        """The DuckDB file, the PostgreSQL database name or the Spark folder, as the command line prints it."""
        if self.target == "spark":
            return str(self.spark_dir)
        return self.postgres_database or str(self.duckdb_path)

    @property
    def spark_dir(self) -> Path:
        """The Spark catalog's folder on the spark target, beside the DuckDB path."""
        return self.duckdb_path.with_name("spark")

    def environment(self) -> dict[str, str]:
        """Return the variables that point the command line and dbt at this warehouse alone."""
        environment = {key: value for key, value in os.environ.items() if not key.startswith("USAGE_WAREHOUSE_")}
        environment["USAGE_WAREHOUSE_DUCKDB"] = str(self.duckdb_path)
        environment.update(self._target_variables())
        return environment

    def _target_variables(self) -> dict[str, str]:
        if self.target == "spark":
            return {"USAGE_WAREHOUSE_TARGET": "spark", "USAGE_WAREHOUSE_SPARK_DIR": str(self.spark_dir)}
        if self.postgres_database is None:
            return {}
        return {"USAGE_WAREHOUSE_TARGET": "postgres", "PGDATABASE": self.postgres_database}

    def settings(self) -> Settings:
        """Return the settings that `ingest.warehouse.open_warehouse` needs to open this warehouse."""
        dsn = f"dbname={self.postgres_database}" if self.postgres_database is not None else None
        return Settings(
            target=self.target, duckdb_path=self.duckdb_path, project_dir=PROJECT_DIR, postgres_dsn=dsn,
            spark_dir=self.spark_dir,
        )

    def run(
        self, *arguments: str, check: bool = True, environment_extra: dict[str, str] | None = None
    ) -> CommandResult:
        """Run the installed `usage-warehouse` command against this warehouse, as a user would."""
        extra = {**self._target_variables(), **(environment_extra or {})}
        return run_cli(self.duckdb_path, *arguments, check=check, environment_extra=extra)

    def query(self, sql: str, parameters: list[object] | None = None) -> list[tuple[object, ...]]:
        """Read in UTC on a read-only connection. Tests write parameters as `?` on every target.

        On spark the SQL is DuckDB's, run on the Parquet files of Spark's tables, so no test
        process starts a Java VM that would hold the Derby metastore.
        """
        if self.target == "spark":
            return _spark_tables_query(self.spark_dir, sql, parameters)
        if self.postgres_database is None:
            return query(self.duckdb_path, sql, parameters)
        connection = psycopg2.connect(dbname=self.postgres_database, options="-c TimeZone=UTC")
        try:
            connection.set_session(readonly=True, autocommit=True)
            with connection.cursor() as cursor:
                cursor.execute(*_psycopg2_statement(sql, parameters))
                return cursor.fetchall()
        finally:
            connection.close()

    def execute(self, sql: str) -> None:
        """Run one writing statement and commit it, as an operator fixing rows by hand would."""
        if self.target == "spark":
            raise NotImplementedError("tests write to the spark target through the command line only")
        if self.postgres_database is None:
            connection = duckdb.connect(str(self.duckdb_path))
            try:
                connection.execute(sql)
            finally:
                connection.close()
            return
        connection = psycopg2.connect(dbname=self.postgres_database)
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()


def _psycopg2_statement(sql: str, parameters: list[object] | None) -> tuple[str, list[object] | None]:
    """Translate DuckDB's `?` placeholders to psycopg2's `%s`, escaping literal percent signs.

    psycopg2 reads `%` as a placeholder only when parameters are passed, so SQL without parameters
    stays as it is. NOTE: every `?` becomes a placeholder, so test SQL has no `?` in string literals.
    """
    if parameters is None:
        return sql, None
    return sql.replace("%", "%%").replace("?", "%s"), parameters


def _spark_tables_query(spark_dir: Path, sql: str, parameters: list[object] | None) -> list[tuple[object, ...]]:
    """Run DuckDB SQL on a Spark catalog's tables, each a view over its Parquet files.

    Spark's views have no files: the `create or replace view` statements of the last dbt build
    (in its target folder) define them again here, and a view whose SQL DuckDB rejects is left out.
    """
    connection = duckdb.connect()
    try:
        connection.execute("set TimeZone = 'UTC'")
        for schema_dir in sorted((spark_dir / "warehouse").glob("*.db")):
            schema = schema_dir.name.removesuffix(".db")
            connection.execute(f"create schema if not exists {schema}")
            for table_dir in sorted(path for path in schema_dir.iterdir() if path.is_dir()):
                if next(table_dir.rglob("*.parquet"), None) is None:
                    continue
                connection.execute(
                    f"create view {schema}.{table_dir.name} as select * from "
                    f"read_parquet('{table_dir}/**/*.parquet', hive_partitioning = true)"
                )
        views = [
            path.read_text() for path in sorted((spark_dir / "dbt_target" / "run").rglob("*.sql"))
            if path.read_text().lstrip().startswith("create or replace view")
        ]
        # A view can read another view, so each round defines the views whose relations exist.
        while views:
            rejected = []
            for statement in views:
                try:
                    connection.execute(statement)
                except duckdb.Error:
                    rejected.append(statement)
            if len(rejected) == len(views):
                break
            views = rejected
        return connection.execute(sql, parameters or []).fetchall()
    finally:
        connection.close()


def _require_local_spark() -> None:
    """Skip a Spark test when pyspark or Java is missing, or fail it in CI, where both must be."""
    missing = [name for name, found in (
        ("pyspark (pip install -e '.[spark]')", importlib.util.find_spec("pyspark") is not None),
        ("Java 17 (java on PATH)", shutil.which("java") is not None),
    ) if not found]
    if not missing:
        return
    message = f"the spark target needs {' and '.join(missing)}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def new_warehouse(target: str, folder: Path) -> Iterator[WarehouseUnderTest]:
    """Create an empty warehouse on TARGET whose files live in FOLDER, and remove it after."""
    duckdb_path = folder / "w.duckdb"
    if target == "spark":
        _require_local_spark()
    if target in ("duckdb", "spark"):
        yield WarehouseUnderTest(target, duckdb_path, None)
        return
    with new_postgres_database() as name:
        yield WarehouseUnderTest("postgres", duckdb_path, name)


@pytest.fixture(params=TARGETS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WarehouseUnderTest]:
    """A new, empty warehouse on each target, so the test runs once per target."""
    with new_warehouse(request.param, tmp_path) as created:
        yield created


@pytest.fixture(scope="session")
def usage_cases() -> list[dict[str, object]]:
    path = shared_file("cases/usage_cases.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class BuiltWarehouse:
    """A warehouse after ingest and build, with the build's output."""

    database: WarehouseUnderTest
    build: CommandResult


@contextmanager
def _built_cases(target: str, folder: Path, usage_cases: list[dict[str, object]]) -> Iterator[BuiltWarehouse]:
    events = [event for case in usage_cases for event in case["events"]]  # type: ignore[union-attr]
    source = write_jsonl(folder / "cases.jsonl", events)
    with new_warehouse(target, folder) as warehouse:
        warehouse.run("ingest", str(source))
        yield BuiltWarehouse(warehouse, warehouse.run("build"))


@pytest.fixture(scope="session")
def cases_duckdb(
    tmp_path_factory: pytest.TempPathFactory, usage_cases: list[dict[str, object]]
) -> Iterator[BuiltWarehouse]:
    with _built_cases("duckdb", tmp_path_factory.mktemp("cases-duckdb"), usage_cases) as built:
        yield built


@pytest.fixture(scope="session")
def cases_postgres(
    tmp_path_factory: pytest.TempPathFactory, usage_cases: list[dict[str, object]]
) -> Iterator[BuiltWarehouse]:
    with _built_cases("postgres", tmp_path_factory.mktemp("cases-postgres"), usage_cases) as built:
        yield built


@pytest.fixture(scope="session")
def cases_spark(
    tmp_path_factory: pytest.TempPathFactory, usage_cases: list[dict[str, object]]
) -> Iterator[BuiltWarehouse]:
    with _built_cases("spark", tmp_path_factory.mktemp("cases-spark"), usage_cases) as built:
        yield built


@pytest.fixture(scope="session", params=TARGETS)
def cases_warehouse(request: pytest.FixtureRequest) -> BuiltWarehouse:
    """A warehouse on each target holding every shared case's events, ingested and built."""
    return request.getfixturevalue(f"cases_{request.param}")


@pytest.fixture(scope="session")
def sample_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample workload's events, written once by `usage-warehouse sample` for every target."""
    folder = tmp_path_factory.mktemp("sample-events")
    path = folder / "sample.jsonl.gz"
    run_cli(folder / "unused.duckdb", "sample", "--events", str(SAMPLE_EVENTS), "--days", str(SAMPLE_DAYS),
            "--end", SAMPLE_END, "--out", str(path))
    return path


@contextmanager
def _built_sample(target: str, folder: Path, sample: Path) -> Iterator[BuiltWarehouse]:
    with new_warehouse(target, folder) as warehouse:
        warehouse.run("ingest", str(sample))
        yield BuiltWarehouse(warehouse, warehouse.run("build"))


@pytest.fixture(scope="session")
def sample_duckdb(tmp_path_factory: pytest.TempPathFactory, sample_events: Path) -> Iterator[BuiltWarehouse]:
    """The sample workload ingested and built on DuckDB."""
    with _built_sample("duckdb", tmp_path_factory.mktemp("sample-duckdb"), sample_events) as built:
        yield built


@pytest.fixture(scope="session")
def sample_postgres(tmp_path_factory: pytest.TempPathFactory, sample_events: Path) -> Iterator[BuiltWarehouse]:
    """The sample workload ingested and built on PostgreSQL."""
    with _built_sample("postgres", tmp_path_factory.mktemp("sample-postgres"), sample_events) as built:
        yield built


@pytest.fixture(scope="session")
def sample_spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltWarehouse]:
    """The sample workload on a local Spark catalog, written, ingested and built by the main job.

    Each build on a local Spark takes over a minute, so `run` builds this warehouse and its output
    serves the main job's test too. Its sample ends yesterday instead of on SAMPLE_END.
    """
    with new_warehouse("spark", tmp_path_factory.mktemp("sample-spark")) as warehouse:
        result = warehouse.run("run", "--events", str(SAMPLE_EVENTS), "--days", str(SAMPLE_DAYS), "--dashboard")
        yield BuiltWarehouse(warehouse, result)


@pytest.fixture(scope="session", params=TARGETS)
def sample_warehouse(request: pytest.FixtureRequest) -> BuiltWarehouse:
    """The sample workload ingested and built on each target, shared by every test that reads it."""
    return request.getfixturevalue(f"sample_{request.param}")
