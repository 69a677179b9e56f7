"""Append-only JSON Lines spool: the segment files that the tracker writes and ingest ships.

Each segment is one file of complete JSON Lines. While a process writes it, it is named
``<timestamp>-<uuid>.jsonl.open`` and the writer keeps an exclusive ``flock`` on it. Closing a
segment fsyncs the file, renames it to ``<timestamp>-<uuid>.jsonl`` and fsyncs the folder, so a
``.jsonl`` file is complete and never changes again. Only closed segments may be shipped.

A segment is created under a hidden ``.<timestamp>-<uuid>.jsonl.creating`` name, locked, and then
renamed to ``.jsonl.open``, so recovery never finds an open segment whose lock is not yet taken.

NOTE: the locks use ``fcntl.flock``, so the spool works on POSIX systems only.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

CLOSED_SUFFIX = ".jsonl"
OPEN_SUFFIX = ".jsonl.open"
CREATING_SUFFIX = ".jsonl.creating"

_READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class RecoveredSegment:
    """An open segment left by a dead process, after recovery.

    ``closed_path`` is None when nothing complete was left, so the file was removed.
    """

    open_path: Path
    closed_path: Path | None
    truncated_bytes: int


@dataclass
class _Segment:
    fd: int
    path: Path
    opened_at: float
    size_bytes: int = 0
    events: int = 0


class SegmentWriter:
    """Write JSON Lines into rotating segments of one spool folder.

    Not thread-safe: the caller serializes every call, as `Tracker` does with its lock. Each
    line goes to the operating system with one unbuffered write, so a crash of the process loses
    no line that `append` returned for. Lines reach the disk only when their segment closes.
    """

    def __init__(
        self,
        spool_dir: Path,
        *,
        max_events: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"max_events={max_events} is invalid: a segment must hold at least 1 event")
        if max_seconds <= 0:
            raise ValueError(f"max_seconds={max_seconds} is invalid: use a positive number of seconds")
        self.spool_dir = spool_dir
        self.max_events = max_events
        self.max_seconds = max_seconds
        self.segments_closed = 0
        self._clock = clock
        self._segment: _Segment | None = None

    def append(self, line: bytes) -> None:
        """Append one complete line (ending in a newline) to the open segment, opening one if needed.

        A segment older than ``max_seconds`` is closed first, and a segment that reaches
        ``max_events`` is closed after the write. Raise OSError when the spool cannot be written.
        After a failed write the segment is cut back to its last complete line and closed, so the
        next call starts a new segment.
        """
        if not line.endswith(b"\n"):
            raise ValueError("a spool line must end with a newline")
        self.rotate_if_due()
        if self._segment is None:
            self._segment = self._open_segment()

        segment = self._segment
        try:
            _write_all(segment.fd, line)
        except OSError:
            self._abandon(segment)
            raise
        segment.size_bytes += len(line)
        segment.events += 1

        if segment.events >= self.max_events:
            self.close_segment()

    def rotate_if_due(self) -> bool:
        """Close the open segment if it is older than ``max_seconds``; return whether it closed.

        `append` calls this itself. An idle process should also call it from time to time,
        because otherwise its last segment stays open until the next event or `close_segment`.
        """
        segment = self._segment
        if segment is None or self._clock() - segment.opened_at < self.max_seconds:
            return False
        self.close_segment()
        return True

    def close_segment(self) -> Path | None:
        """Fsync the open segment, rename it to ``.jsonl`` and fsync the folder.

        Return the closed path, or None when no segment was open. When fsync or rename fails
        the OSError propagates and the file stays ``.jsonl.open``, so the next start recovers it.
        """
        segment = self._segment
        if segment is None:
            return None
        self._segment = None
        try:
            if segment.events == 0:
                os.unlink(segment.path)
                return None
            os.fsync(segment.fd)
            closed_path = _closed_path(segment.path)
            os.rename(segment.path, closed_path)
            _fsync_folder(self.spool_dir)
        finally:
            os.close(segment.fd)
        self.segments_closed += 1
        return closed_path

    def recover(self) -> list[RecoveredSegment]:
        """Close the open segments of dead processes, keeping their complete lines.

        A segment whose lock is held belongs to a live writer, in this process or another, and
        is left alone. Raise OSError when the folder cannot be read or a segment cannot be fixed.
        """
        if not self.spool_dir.is_dir():
            return []
        self._remove_abandoned_creations()

        recovered = []
        for path in sorted(self.spool_dir.glob(f"*{OPEN_SUFFIX}")):
            result = _recover_segment(path, self.spool_dir)
            if result is not None:
                recovered.append(result)
        return recovered

    def _open_segment(self) -> _Segment:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        timestamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        stem = f"{timestamp}-{uuid.uuid4().hex}"
        creating_path = self.spool_dir / f".{stem}{CREATING_SUFFIX}"
        open_path = self.spool_dir / f"{stem}{OPEN_SUFFIX}"

        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(creating_path, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(creating_path, open_path)
        except OSError:
            os.close(fd)
            creating_path.unlink(missing_ok=True)
            raise
        return _Segment(fd=fd, path=open_path, opened_at=self._clock())

    def _abandon(self, segment: _Segment) -> None:
        """Cut a segment back to its last complete line after a failed write, then close it."""
        try:
            os.ftruncate(segment.fd, segment.size_bytes)
            self.close_segment()
        except OSError as error:
            # The caller re-raises the write error. This one only means the segment stays
            # .jsonl.open until a later start recovers it.
            logger.warning("Failed to close spool segment %s after a write error: %s", segment.path, error)
            if self._segment is segment:
                self._segment = None
                os.close(segment.fd)

    def _remove_abandoned_creations(self) -> None:
        """Remove the empty files of processes that died between creating and naming a segment."""
        for path in self.spool_dir.glob(f".*{CREATING_SUFFIX}"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)


def _recover_segment(path: Path, spool_dir: Path) -> RecoveredSegment | None:
    """Truncate a dead writer's segment after its last newline and close it; None if it is live."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # another process recovered it first
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live writer has it locked
        if not _is_same_file(fd, path):
            return None  # another process recovered it between our open and our lock

        size = os.fstat(fd).st_size
        complete = _complete_lines_length(fd, size)
        if complete < size:
            os.ftruncate(fd, complete)
        if complete == 0:
            os.unlink(path)
            _fsync_folder(spool_dir)
            return RecoveredSegment(open_path=path, closed_path=None, truncated_bytes=size)

        os.fsync(fd)
        closed_path = _closed_path(path)
        os.rename(path, closed_path)
        _fsync_folder(spool_dir)
        return RecoveredSegment(open_path=path, closed_path=closed_path, truncated_bytes=size - complete)
    finally:
        os.close(fd)


def _complete_lines_length(fd: int, size: int) -> int:
    """Return the length of the file up to and including its last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _READ_CHUNK_BYTES)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _is_same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _closed_path(open_path: Path) -> Path:
    return open_path.with_name(open_path.name.removesuffix(OPEN_SUFFIX) + CLOSED_SUFFIX)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_folder(folder: Path) -> None:
    """Fsync a folder, so that a rename inside it survives a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
