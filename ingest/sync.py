"""One scheduled ingest cycle: pull every configured source, land it, then build.

A cycle holds an exclusive lock, so a second cycle started while one runs (a slow cycle
overlapping the next cron tick) stops at once. On DuckDB the lock is a file beside the warehouse.
On PostgreSQL, where cycles may run on several machines, it is a session-level advisory lock in
the warehouse database. Every step can be killed at any point and run again. Batches that never
finished are removed when the warehouse opens. Spool segments and dropped files are removed or
moved only after their batch has landed, and the app table's watermark moves only after its rows
have landed.
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
from typing import IO, TYPE_CHECKING

from ingest.catalog import ModelResolver
from ingest.loader import BatchResult, ingest_file
from ingest.readers import SourceError, expand_paths
from ingest.warehouse.base import Warehouse

if TYPE_CHECKING:
    import psycopg2.extensions

logger = logging.getLogger(__name__)

LANDED_FOLDER = "landed"
# Key of the session-level advisory lock that a cycle on PostgreSQL holds. It differs from
# INGEST_LOCK_KEY in ingest.warehouse.postgres, which each batch takes for its transaction only.
SYNC_LOCK_KEY = 0x75_77_73_79  # "uwsy"
# application_name of the lock's session, so pg_stat_activity shows what holds the lock.
SYNC_APPLICATION_NAME = "usage-warehouse sync"
# Names the tracker gives closed segments: a UTC timestamp, a dash, then a unique id.
TRACKER_SEGMENT = re.compile(r"^\d{8}T\d{6}\d*Z?-[0-9A-Za-z-]+\.jsonl$")


class SyncLockedError(RuntimeError):
    """Another sync cycle holds the lock."""


class SyncLockError(RuntimeError):
    """The lock cannot be taken because its database cannot be reached."""


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


@contextmanager
def database_cycle_lock(dsn: str | None) -> Iterator[None]:
    """Hold the cycle's advisory lock in a PostgreSQL warehouse, or raise `SyncLockedError` at once.

    The lock belongs to a connection of its own, held open for the whole cycle. The server
    releases it when that session ends: at once when the process dies, and after the server's TCP
    keepalive timeout when the network drops.
    """
    import psycopg2

    try:
        # An empty DSN makes libpq read PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
        connection = psycopg2.connect(dsn or "", application_name=SYNC_APPLICATION_NAME)
    except psycopg2.OperationalError as error:
        # libpq's message names the host, database and user but never the password.
        raise SyncLockError(
            f"failed to connect to the PostgreSQL warehouse to take the sync lock: {str(error).strip()}. "
            "Set USAGE_WAREHOUSE_PG_DSN or the PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE variables"
        ) from None
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("select pg_try_advisory_lock(%s)", [SYNC_LOCK_KEY])
            row = cursor.fetchone()
            if not row or not row[0]:
                raise SyncLockedError(
                    f"another sync cycle is running and holds the advisory lock {SYNC_LOCK_KEY} in database "
                    f"{connection.info.dbname} ({_lock_holder(cursor)}); this cycle exits without doing anything, "
                    "try again later"
                )
        yield
    finally:
        connection.close()  # ending the session releases the lock


def _lock_holder(cursor: psycopg2.extensions.cursor) -> str:
    """Describe the session that holds the sync lock, as far as this role may see it."""
    # A bigint advisory key appears in pg_locks split in two: the high 32 bits in classid, the
    # low 32 bits in objid, and objsubid 1. Other roles' client_addr reads as null unless this
    # role has pg_read_all_stats.
    cursor.execute(
        """
        select locks.pid, activity.client_addr, activity.client_hostname, activity.application_name
        from pg_catalog.pg_locks as locks
        left join pg_catalog.pg_stat_activity as activity on activity.pid = locks.pid
        where locks.locktype = 'advisory'
            and locks.granted
            and locks.database = (select oid from pg_catalog.pg_database where datname = current_database())
            and locks.classid = %s and locks.objid = %s and locks.objsubid = 1
        """,
        [SYNC_LOCK_KEY >> 32, SYNC_LOCK_KEY & 0xFFFF_FFFF],
    )
    row = cursor.fetchone()
    if row is None:
        return "holder not found in pg_locks, so it may have released the lock since"
    pid, address, hostname, application = row
    client = hostname or address or "a local socket or an address this role may not see"
    return f"server process {pid}, client {client}, application {application or 'unknown'!r}"


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
