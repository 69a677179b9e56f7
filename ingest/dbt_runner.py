"""Run dbt on the project in this repository, pointed at the configured warehouse.

dbt runs in a child process, so its warehouse connection is closed when it returns and the
command line can open the warehouse again (DuckDB rejects a second connection with another
configuration inside one process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ingest.config import Settings


class DbtError(RuntimeError):
    """dbt could not run at all."""


@dataclass(frozen=True)
class DbtOutcome:
    """Outcome of one dbt invocation, with failures and warnings by node."""

    success: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seeds_loaded: list[str] = field(default_factory=list)


def run_dbt(settings: Settings, arguments: list[str]) -> DbtOutcome:
    """Run one dbt command (for example ["build"]) and collect failures and warnings by node.

    dbt's own output goes to this process's standard output as dbt prints it.
    """
    dbt = Path(sys.executable).with_name("dbt")
    if not dbt.exists():
        raise DbtError(f"dbt is not installed next to {sys.executable}; run `make venv` to install it")
    project = str(settings.project_dir)
    target = settings.dbt_target_path
    results_path = target / "run_results.json"
    results_path.unlink(missing_ok=True)
    command = [
        str(dbt), *arguments,
        "--project-dir", project, "--profiles-dir", project, "--target-path", str(target),
    ]
    environment = {**os.environ, **settings.dbt_environment()}
    completed = subprocess.run(command, env=environment, cwd=project, check=False)
    if not results_path.exists():
        raise DbtError(f"dbt {' '.join(arguments)} exited {completed.returncode} before running any node")
    results = json.loads(results_path.read_text())["results"]

    failures: list[str] = []
    warnings: list[str] = []
    seeds_loaded: list[str] = []
    for result in results:
        status = str(result.get("status", "")).lower()
        # unique_id is resource_type.package.name, with a hash after the name for generic tests.
        resource_type, _, name = str(result.get("unique_id", "")).split(".")[:3]
        message = f"{name}: {result.get('message') or ''}".strip()
        if status in ("error", "fail", "runtime error"):
            failures.append(message)
        elif status == "warn":
            warnings.append(message)
        elif status == "success" and resource_type == "seed":
            seeds_loaded.append(name)
    return DbtOutcome(
        success=completed.returncode == 0, failures=failures, warnings=warnings, seeds_loaded=seeds_loaded
    )
