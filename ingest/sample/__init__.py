"""Generate a reproducible sample of the app's usage events as JSON Lines.

The sample imitates the app's services calling Google, OpenAI and Anthropic over whole UTC
days, busier on weekday afternoons than at night or at weekends. Each line is one canonical
usage event. Token usage is usually the provider's own usage payload under ``usage``, and
sometimes the canonical counts, where ``input_tokens`` includes cached and cache-write tokens
and ``output_tokens`` includes reasoning tokens. Video and image calls report ``units``
instead.

The sample also carries the quirks and dirt that the warehouse must handle. Some models are in
no price catalog, and some streamed calls ended before usage arrived. Gemini streams resend
cumulative usage under one ``request_id``, and some Gemini names carry a ``models/`` prefix.
Some calls have no organization, and some lines are resent duplicates or malformed.
``SampleSummary`` counts them.

``write_sample`` streams its output, so memory does not grow with the event count.

The modules: ``calls`` builds the events of each call, using ``people``, ``agents``,
``payloads`` and ``random_values``. ``timeline`` spaces the events over the days, ``output``
writes and corrupts the lines, and ``constants`` fixes the required operations, quirks and
shares.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ingest.sample.calls import CallFactory
from ingest.sample.constants import (
    CUMULATIVE_STREAM_SHARE,
    DUPLICATE_LINE_SHARE,
    MALFORMED_KINDS,
    MALFORMED_LINE_SHARE,
    MODELS_PREFIX_SHARE,
    NO_ORGANIZATION_SHARE,
    REQUIRED_FIELDS,
    REQUIRED_OPERATIONS,
    SCENARIO_DECK,
    UNIT_PRICED_MODELS,
    UNKNOWN_MODEL_SHARE,
    UNKNOWN_MODELS,
    UNMETERED_STREAM_SHARE,
)
from ingest.sample.output import Tally, open_output, write_lines
from ingest.sample.timeline import HOURLY_WEIGHTS, WEEKDAY_WEIGHTS, Timeline

__all__ = [
    "CUMULATIVE_STREAM_SHARE",
    "DUPLICATE_LINE_SHARE",
    "HOURLY_WEIGHTS",
    "MALFORMED_KINDS",
    "MALFORMED_LINE_SHARE",
    "MODELS_PREFIX_SHARE",
    "NO_ORGANIZATION_SHARE",
    "REQUIRED_FIELDS",
    "REQUIRED_OPERATIONS",
    "SCENARIO_DECK",
    "UNIT_PRICED_MODELS",
    "UNKNOWN_MODELS",
    "UNKNOWN_MODEL_SHARE",
    "UNMETERED_STREAM_SHARE",
    "WEEKDAY_WEIGHTS",
    "SampleSummary",
    "write_sample",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSummary:
    """Counts of what ``write_sample`` wrote to ``path``."""

    path: Path
    first_day: date
    last_day: date
    events_written: int
    """Lines written, duplicates and malformed lines included; equals the requested count."""
    duplicate_lines: int
    malformed_lines: int
    malformed_by_kind: dict[str, int]
    events_without_organization: int
    """Unique well-formed events whose ``organization_id`` is null."""
    events_by_provider: dict[str, int]
    """Unique well-formed events per provider."""

    @property
    def unique_events(self) -> int:
        """Well-formed lines that are not resends of an earlier line."""
        return self.events_written - self.duplicate_lines - self.malformed_lines


def write_sample(
    path: Path,
    *,
    events: int = 5000,
    days: int = 30,
    seed: int = 7,
    end: date | None = None,
) -> SampleSummary:
    """Write ``events`` lines of sample usage over the ``days`` UTC days ending ``end``.

    ``end`` defaults to today's UTC date. The output is gzipped when ``path`` ends in ``.gz``.
    The same arguments give byte-identical output on the same Python version. The file is
    written beside ``path`` under a ``.partial`` suffix and renamed when complete.
    """
    if events < 0:
        raise ValueError(f"events must be 0 or more, got {events}")
    if days < 1:
        raise ValueError(f"days must be 1 or more, got {days}")

    last_day = end if end is not None else datetime.now(UTC).date()
    first_day = last_day - timedelta(days=days - 1)
    rng = random.Random(seed)
    timeline = Timeline(first_day, days, events, random.Random(f"timeline:{seed}"))
    factory = CallFactory(rng, timeline)
    tally = Tally()

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with open_output(partial, compress=path.name.endswith(".gz")) as sink:
            write_lines(sink, timeline, factory, rng, events, tally)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise

    summary = SampleSummary(
        path=path,
        first_day=first_day,
        last_day=last_day,
        events_written=tally.lines,
        duplicate_lines=tally.duplicates,
        malformed_lines=sum(tally.malformed.values()),
        malformed_by_kind={kind: tally.malformed[kind] for kind in MALFORMED_KINDS},
        events_without_organization=tally.without_organization,
        events_by_provider=dict(sorted(tally.by_provider.items())),
    )
    logger.info(
        "Wrote %d sample lines to %s for %s to %s: "
        "%d duplicate, %d malformed, %d without organization",
        summary.events_written,
        path,
        first_day,
        last_day,
        summary.duplicate_lines,
        summary.malformed_lines,
        summary.events_without_organization,
    )
    return summary
