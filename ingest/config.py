"""Settings from the environment and the command line, validated in one place."""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

TARGETS = ("duckdb", "postgres", "spark")
PROJECT_DIR = Path(__file__).resolve().parents[1]
DEFAULT_DUCKDB_PATH = Path("warehouse") / "usage.duckdb"
DEFAULT_SPARK_DIR = Path("warehouse") / "spark"
# A PYTHONWARNINGS entry that hides pyspark's warning about the installed pandas version.
SPARK_PANDAS_WARNING_FILTER = "ignore:PySpark does not yet fully support pandas:FutureWarning"
DEFAULT_READER_ROLE = "usage_warehouse_reader"
# An unquoted PostgreSQL role name: dbt's grants write the reader role into SQL as it is.
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ConfigError(ValueError):
    """A setting with an invalid value."""


@dataclass(frozen=True)
class Settings:
    """Warehouse location and the dbt project that builds it."""

    target: str
    duckdb_path: Path
    project_dir: Path
    # libpq connection string of the postgres target; None means the PG* variables alone.
    postgres_dsn: str | None = None
    # PostgreSQL group role whose members read the marts through row-level security.
    reader_role: str = DEFAULT_READER_ROLE
    # Folder of the spark target: Spark's tables, its Derby metastore and the landing file.
    spark_dir: Path = PROJECT_DIR / DEFAULT_SPARK_DIR

    @property
    def deployments_seed(self) -> Path:
        return self.project_dir / "seeds" / "reference" / "deployment_models.csv"

    @property
    def dbt_target_path(self) -> Path:
        """The folder of dbt's compiled SQL and results for this warehouse."""
        if self.target == "postgres":
            # One folder per database, so builds of two databases can run at the same time.
            database = self.dbt_environment().get("PGDATABASE") or os.environ.get("PGDATABASE") or "default"
            return self.project_dir / "target" / f"postgres-{database}"
        if self.target == "spark":
            return self.spark_dir / "dbt_target"
        # Each DuckDB file gets its own folder beside it, so builds of two warehouses do not
        # overwrite each other's compiled SQL and results.
        return self.duckdb_path.with_name(f"{self.duckdb_path.name}.dbt_target")

    def dbt_environment(self) -> dict[str, str]:
        """Return the environment variables that point dbt's profile at this warehouse.

        The postgres profile reads the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD,
        PGDATABASE), so a DSN in USAGE_WAREHOUSE_PG_DSN is split into those variables here.
        """
        environment = {
            "USAGE_WAREHOUSE_TARGET": self.target,
            "USAGE_WAREHOUSE_DUCKDB": str(self.duckdb_path),
            "USAGE_WAREHOUSE_READER_ROLE": self.reader_role,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DBT_VERSION_CHECK": "False",
        }
        if self.target == "postgres" and self.postgres_dsn:
            environment.update(libpq_environment(self.postgres_dsn))
        if self.target == "spark":
            environment["USAGE_WAREHOUSE_SPARK_DIR"] = str(self.spark_dir)
            # The local Spark binds the loopback address instead of looking up the host's.
            environment["SPARK_LOCAL_IP"] = os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")
            # pyspark warns at each start that it does not fully support the installed pandas,
            # which Great Expectations needs and dbt-spark's session method does not use.
            environment["PYTHONWARNINGS"] = ",".join(
                filter(None, [os.environ.get("PYTHONWARNINGS"), SPARK_PANDAS_WARNING_FILTER])
            )
        return environment

    @property
    def sync_lock_path(self) -> Path:
        """The file a sync cycle locks on duckdb and spark, beside the DuckDB file or in the Spark folder."""
        if self.target == "spark":
            return self.spark_dir / "sync.lock"
        return self.duckdb_path.with_name(f"{self.duckdb_path.name}.sync.lock")

    @property
    def spark_landing_path(self) -> Path:
        """The DuckDB file where the spark target lands batches before it publishes them to Spark."""
        return self.spark_dir / "landing.duckdb"


def libpq_environment(dsn: str) -> dict[str, str]:
    """Return the PG* variables that reach the same database as a libpq connection string."""
    from psycopg2.extensions import parse_dsn

    try:
        parts = parse_dsn(dsn)
    except Exception as error:  # psycopg2 raises ProgrammingError; keep the DSN out of the message
        raise ConfigError(f"USAGE_WAREHOUSE_PG_DSN is not a valid libpq connection string: {type(error).__name__}") from None
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}
    return {names[key]: value for key, value in parts.items() if key in names}


def load_settings(target: str | None = None, duckdb_path: str | None = None) -> Settings:
    """Build settings from options, falling back to USAGE_WAREHOUSE_* variables and defaults."""
    chosen_target = (target or os.environ.get("USAGE_WAREHOUSE_TARGET") or "duckdb").strip().lower()
    if chosen_target not in TARGETS:
        raise ConfigError(f"target {chosen_target!r} is not supported; use one of: {', '.join(TARGETS)}")

    project_dir = Path(os.environ.get("USAGE_WAREHOUSE_PROJECT_DIR") or PROJECT_DIR).resolve()
    if not (project_dir / "dbt_project.yml").exists():
        raise ConfigError(
            f"no dbt_project.yml in {project_dir}; set USAGE_WAREHOUSE_PROJECT_DIR to the repository root"
        )
    # An explicit path is relative to the working folder; the default lives in the project.
    path_text = duckdb_path or os.environ.get("USAGE_WAREHOUSE_DUCKDB")
    path = Path(path_text).resolve() if path_text else project_dir / DEFAULT_DUCKDB_PATH
    postgres_dsn = os.environ.get("USAGE_WAREHOUSE_PG_DSN") or None
    if chosen_target == "postgres" and postgres_dsn:
        libpq_environment(postgres_dsn)  # reject an invalid DSN before any command runs
    lookback_days = os.environ.get("USAGE_WAREHOUSE_LOOKBACK_DAYS")
    if lookback_days is not None and not lookback_days.strip().isdigit():
        raise ConfigError(
            f"USAGE_WAREHOUSE_LOOKBACK_DAYS {lookback_days!r} is not a whole number of days; set it to 0 or more"
        )
    reader_role = os.environ.get("USAGE_WAREHOUSE_READER_ROLE") or DEFAULT_READER_ROLE
    if not ROLE_NAME.fullmatch(reader_role):
        raise ConfigError(
            f"USAGE_WAREHOUSE_READER_ROLE {reader_role!r} is not a plain role name; use lowercase letters,"
            " digits and underscores, starting with a letter or underscore"
        )
    if chosen_target == "spark" and importlib.util.find_spec("pyspark") is None:
        raise ConfigError(
            "the spark target needs pyspark and dbt-spark, which are not installed; install them with "
            "`.venv/bin/pip install -e '.[spark]'` (Java 17 is needed too)"
        )
    spark_text = os.environ.get("USAGE_WAREHOUSE_SPARK_DIR")
    spark_dir = Path(spark_text).resolve() if spark_text else project_dir / DEFAULT_SPARK_DIR
    return Settings(
        target=chosen_target, duckdb_path=path, project_dir=project_dir, postgres_dsn=postgres_dsn,
        reader_role=reader_role, spark_dir=spark_dir,
    )
