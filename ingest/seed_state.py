"""Decide which dbt seeds an incremental build must load again.

Loading a seed replaces its whole table, and the price seeds hold thousands of rows, so a
scheduled build that reloads every seed spends most of its fixed time on files that did not
change. A seed's fingerprint covers everything that decides its table: the CSV file, the
properties files beside it (column types), dbt_project.yml (seed configs) and the dbt version.
After a build, the warehouse records the fingerprint of every seed that loaded. The next
incremental build leaves out a seed when its fingerprint is unchanged and its table still
exists. `build --full-refresh` always loads every seed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SEED_FOLDER = "seeds"
# Every seed builds in this schema: dbt_project.yml sets `+schema: reference` for all of them.
SEED_SCHEMA = "reference"


def seed_fingerprints(project_dir: Path) -> dict[str, str]:
    """Return the fingerprint of each seed of the project, by seed name."""
    from dbt.version import __version__ as dbt_version

    shared = hashlib.sha256()
    shared.update(f"dbt-core {dbt_version}\n".encode())
    shared.update((project_dir / "dbt_project.yml").read_bytes())
    fingerprints: dict[str, str] = {}
    for csv_file in sorted((project_dir / SEED_FOLDER).rglob("*.csv")):
        digest = shared.copy()
        for properties in sorted(csv_file.parent.glob("*.yml")):
            digest.update(properties.read_bytes())
        digest.update(csv_file.read_bytes())
        fingerprints[csv_file.stem] = digest.hexdigest()
    return fingerprints


def unchanged_seeds(current: dict[str, str], loaded: dict[str, str]) -> list[str]:
    """Return the seeds whose loaded table was built from the files as they are now."""
    return sorted(name for name, fingerprint in current.items() if loaded.get(name) == fingerprint)
