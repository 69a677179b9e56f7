"""Run dbt on the project in this repository, pointed at the configured warehouse."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ingest.config import Settings


class DbtError(RuntimeError):
    """dbt could not run, or a check that proves the logic failed."""


@dataclass(frozen=True)
class DbtOutcome:
    """What a dbt invocation ended with, by node."""

    success: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def run_dbt(settings: Settings, arguments: list[str]) -> DbtOutcome:
    """Run one dbt command (for example ["build"]) in-process and collect failures and warnings."""
    from dbt.cli.main import dbtRunner

    project = str(settings.project_dir)
    full_arguments = [*arguments, "--project-dir", project, "--profiles-dir", project]
    with _environment(settings.dbt_environment()):
        result = dbtRunner().invoke(full_arguments)
    if result.exception is not None:
        raise DbtError(f"dbt {' '.join(arguments)} could not run: {result.exception}")

    failures: list[str] = []
    warnings: list[str] = []
    for node_result in getattr(result.result, "results", None) or []:
        status = str(node_result.status).lower()
        name = node_result.node.name
        message = node_result.message or ""
        if status in ("error", "fail", "runtime error"):
            failures.append(f"{name}: {message}".strip())
        elif status == "warn":
            warnings.append(f"{name}: {message}".strip())
    return DbtOutcome(success=bool(result.success), failures=failures, warnings=warnings)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
