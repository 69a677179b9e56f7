"""Line output for the sample: clean events, resent lines and malformed lines, plain or gzipped."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from ingest.sample.calls import CallFactory
from ingest.sample.constants import (
    DUPLICATE_LINE_SHARE,
    MALFORMED_KINDS,
    MALFORMED_LINE_SHARE,
    REQUIRED_FIELDS,
)
from ingest.sample.payloads import Event
from ingest.sample.timeline import Timeline

_WRITE_BATCH_LINES = 256
_RECENT_LINES = 256
# Compact separators. Each event is a fresh tree, so the circular-reference check can be skipped.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class Tally:
    """Running counts for the summary."""

    def __init__(self) -> None:
        self.lines = 0
        self.duplicates = 0
        self.malformed: Counter[str] = Counter()
        self.without_organization = 0
        self.by_provider: Counter[str] = Counter()


class LineSink:
    """Line buffer that writes in batches, so that each write to a gzipped file is large."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lines: list[str] = []

    def write(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= _WRITE_BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._stream.write(("\n".join(self._lines) + "\n").encode("ascii"))
            self._lines.clear()


@contextmanager
def open_output(path: Path, *, compress: bool) -> Iterator[LineSink]:
    with open(path, "wb") as raw:
        if compress:
            # An empty file name and mtime 0 keep the gzip header independent of path and clock.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
                sink = LineSink(gz)
                yield sink
                sink.flush()
        else:
            sink = LineSink(raw)
            yield sink
            sink.flush()


def write_lines(
    sink: LineSink,
    timeline: Timeline,
    factory: CallFactory,
    rng: random.Random,
    events: int,
    tally: Tally,
) -> None:
    """Write one line per timeline entry: a resent line, a malformed line or a clean event."""
    pending: deque[Event] = deque()
    recent: deque[str] = deque(maxlen=_RECENT_LINES)
    clean_pairs: set[tuple[str, str]] = set()

    for at_ms in timeline:
        tally.lines += 1
        if recent and rng.random() < DUPLICATE_LINE_SHARE:
            sink.write(recent[rng.randrange(len(recent))])
            tally.duplicates += 1
            continue

        if not pending:
            # Later events of a call (agent requests, stream snapshots) take the next lines but
            # keep their own times, so calls interleave as they do in a real log.
            pending.extend(factory.next_call(at_ms, events - tally.lines + 1))
        event = pending.popleft()
        pair = (event["provider"], event["operation"])

        if rng.random() < MALFORMED_LINE_SHARE and pair in clean_pairs:
            kind, line = _corrupt(event, rng)
            sink.write(line)
            tally.malformed[kind] += 1
            continue

        line = _ENCODER.encode(event)
        sink.write(line)
        recent.append(line)
        clean_pairs.add(pair)
        tally.by_provider[event["provider"]] += 1
        if event["organization_id"] is None:
            tally.without_organization += 1


# --- Malformed lines ------------------------------------------------------------------------


def _corrupt(event: Event, rng: random.Random) -> tuple[str, str]:
    """Return a malformed kind and a line that breaks the event in that way."""
    kinds = [kind for kind in MALFORMED_KINDS if kind != "negative_token_count"]
    if _token_fields(event):
        kinds.append("negative_token_count")
    kind = kinds[rng.randrange(len(kinds))]

    if kind == "truncated_json":
        # A strict prefix of a compact JSON object is never valid JSON, because it lacks the
        # closing brace.
        text = _ENCODER.encode(event)
        return kind, text[: rng.randint(1, len(text) - 1)]

    if kind == "missing_required_field":
        del event[REQUIRED_FIELDS[rng.randrange(len(REQUIRED_FIELDS))]]
    elif kind == "negative_token_count":
        container, key = rng.choice(_token_fields(event))
        container[key] = -max(container[key], 1)
    elif kind == "invalid_timestamp":
        event["created_at"] = _invalid_timestamp(event["created_at"], rng)
    else:
        not_objects: list[Any] = [
            [event["event_id"], event["provider"], event["operation"]],
            None,
            "usage tracker: flush failed",
        ]
        return kind, json.dumps(not_objects[rng.randrange(len(not_objects))])
    return kind, _ENCODER.encode(event)


# Totals that no usage extractor reads, so a negative one would not make the line invalid.
_TOTAL_KEYS = frozenset(("total_tokens", "totalTokenCount"))


def _token_fields(event: Event) -> list[tuple[dict[str, Any], str]]:
    """Top-level token counts of an event, as (container, key) pairs."""
    container = event.get("usage", event)
    return [
        (container, key)
        for key, value in container.items()
        if key.endswith(("_tokens", "TokenCount")) and key not in _TOTAL_KEYS and isinstance(value, int)
    ]


def _invalid_timestamp(created_at: str, rng: random.Random) -> Any:
    day, _, clock = created_at.partition("T")
    choices: list[Any] = [
        f"{day}T25:61:00Z",  # hour and minute out of range
        f"{day[:4]}/{day[5:7]}/{day[8:]} {clock[:8]}",  # slashes in the date
        f"{day[:5]}13{day[7:]}T{clock}",  # month 13
        "not a timestamp",
        int(datetime.fromisoformat(created_at).timestamp()),  # epoch seconds instead of text
    ]
    return choices[rng.randrange(len(choices))]


def rewrite_events(source: Path, target: Path, rewrite: Callable[[Event], Event]) -> None:
    """Write a gzipped sample file again with each JSON object passed through `rewrite`.

    Malformed lines and lines that are not objects are copied unchanged, so the new file keeps
    the sample's intended defects.
    """
    with gzip.open(source, "rt", encoding="utf-8") as lines, gzip.open(target, "wt", encoding="utf-8", compresslevel=1) as out:
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                out.write(line)
                continue
            if isinstance(event, dict):
                out.write(json.dumps(rewrite(event), separators=(",", ":")) + "\n")
            else:
                out.write(line)
