"""Settings from the environment and the command line, validated in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TARGETS = ("duckdb",)
PROJECT_DIR = Path(__file__).resolve().parents[1]
DEFAULT_DUCKDB_PATH = Path("warehouse") / "usage.duckdb"


class ConfigError(ValueError):
    """A setting with an invalid value."""


@dataclass(frozen=True)
class Settings:
    """Warehouse location and the dbt project that builds it."""

    target: str
    duckdb_path: Path
    project_dir: Path

    @property
    def deployments_seed(self) -> Path:
        return self.project_dir / "seeds" / "reference" / "deployment_models.csv"

    def dbt_environment(self) -> dict[str, str]:
        """Return the environment variables that point dbt's profile at this warehouse."""
        return {
            "USAGE_WAREHOUSE_TARGET": self.target,
            "USAGE_WAREHOUSE_DUCKDB": str(self.duckdb_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "DBT_VERSION_CHECK": "False",
        }


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
    return Settings(target=chosen_target, duckdb_path=path, project_dir=project_dir)
