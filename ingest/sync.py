"""One scheduled ingest cycle: pull every configured source, land it, then build.

A cycle holds an exclusive lock on a file beside the warehouse, so a second cycle started while
one runs (a slow cycle overlapping the next cron tick) stops at once. Every step can be killed
at any point and run again. Batches that never finished are removed when the warehouse opens.
Spool segments and dropped files are removed or moved only after their batch has landed, and
the app table's watermark moves only after its rows have landed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
from datetime import UTC, datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from ingest.catalog import ModelResolver
from ingest.loader import BatchResult, ingest_file
from ingest.readers import SourceError, expand_paths
from ingest.warehouse.base import Warehouse

logger = logging.getLogger(__name__)

LANDED_FOLDER = "landed"
# Names the tracker gives closed segments: a UTC timestamp, a dash, then a unique id.
TRACKER_SEGMENT = re.compile(r"^\d{8}T\d{6}\d*Z?-[0-9A-Za-z-]+\.jsonl$")


class SyncLockedError(RuntimeError):
    """Another sync cycle holds the lock."""


@dataclass(frozen=True)
class SyncSources:
    """Sources of one cycle: tracker spool folders, drop folders of files, and the app table."""

    spool_dirs: tuple[Path, ...] = ()
    drop_dirs: tuple[Path, ...] = ()
    app_dsn: str | None = None
    app_overlap: timedelta = timedelta(minutes=10)

    @property
    def is_empty(self) -> bool:
        return not self.spool_dirs and not self.drop_dirs and not self.app_dsn


@dataclass
class SyncReport:
    """Batches landed by one cycle and the sources that failed."""

    batches: list[BatchResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@contextmanager
def cycle_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock for one cycle, or raise `SyncLockedError` at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = lock_path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise SyncLockedError(
                f"another sync cycle is running and locks {lock_path} (process {holder}); "
                "this cycle exits without doing anything, try again later"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock, also when the process dies


def pull_sources(
    sources: SyncSources,
    warehouse: Warehouse,
    resolver: ModelResolver,
    on_batch: Callable[[BatchResult], None] = lambda result: None,
) -> SyncReport:
    """Land every configured source; a source that fails is reported and the others go on."""
    report = SyncReport()

    def landed(result: BatchResult) -> None:
        report.batches.append(result)
        on_batch(result)

    for spool in sources.spool_dirs:
        _pull_spool(spool, warehouse, resolver, landed, report)
    for drop in sources.drop_dirs:
        _pull_drop_folder(drop, warehouse, resolver, landed, report)
    if sources.app_dsn:
        from ingest.app_table import AppTableError, extract_token_usage

        try:
            landed(extract_token_usage(sources.app_dsn, warehouse, resolver, sources.app_overlap))
        except AppTableError as error:
            logger.error("app table extract failed: %s", error)
            report.failures.append(f"app table: {error}")
    return report


def _pull_spool(
    spool: Path, warehouse: Warehouse, resolver: ModelResolver,
    landed: Callable[[BatchResult], None], report: SyncReport,
) -> None:
    if not spool.is_dir():
        report.failures.append(f"spool folder {spool} not found")
        return
    for segment in sorted(path for path in spool.glob("*.jsonl") if TRACKER_SEGMENT.match(path.name)):
        try:
            landed(ingest_file(segment, warehouse, resolver))
        except SourceError as error:
            logger.error("spool segment %s failed and is kept: %s", segment, error)
            report.failures.append(str(error))
            continue
        segment.unlink()


def _landed_prefix() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


def _pull_drop_folder(
    drop: Path, warehouse: Warehouse, resolver: ModelResolver,
    landed: Callable[[BatchResult], None], report: SyncReport,
) -> None:
    if not drop.is_dir():
        report.failures.append(f"drop folder {drop} not found")
        return
    target = drop / LANDED_FOLDER
    files = [path for path in expand_paths([drop]) if target not in path.parents]
    for path in files:
        try:
            landed(ingest_file(path, warehouse, resolver))
        except SourceError as error:
            logger.error("dropped file %s failed and is left in place: %s", path, error)
            report.failures.append(str(error))
            continue
        destination = target / path.relative_to(drop)
        if destination.exists():
            # A file of the same name landed before (a daily export, say): keep both.
            destination = destination.with_name(f"{_landed_prefix()}-{destination.name}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), destination)
