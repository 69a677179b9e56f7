"""Event times for the sample: how many fall in each UTC hour, and their RFC 3339 form."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

# Relative traffic by UTC hour and by weekday (Monday first).
HOURLY_WEIGHTS: tuple[int, ...] = (
    3, 2, 2, 2, 2, 3, 5, 8, 11, 13, 14, 14, 13, 14, 15, 15, 14, 12, 10, 8, 7, 6, 5, 4,
)
WEEKDAY_WEIGHTS: tuple[int, ...] = (100, 105, 105, 100, 85, 35, 30)

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS


class Timeline:
    """Ascending event times in epoch milliseconds, ``count`` in all, over whole UTC days.

    Hour slots get their share of ``count`` by ``HOURLY_WEIGHTS`` times ``WEEKDAY_WEIGHTS``.
    Within a slot the times are sorted uniform draws, generated in order so that no slot's
    times are ever held in memory.
    """

    def __init__(self, first_day: date, days: int, count: int, rng: random.Random) -> None:
        self.first_day = first_day
        self.days = days
        self.count = count
        first_midnight = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
        self.start_ms = int(first_midnight.timestamp()) * 1000
        self.end_ms = self.start_ms + days * _DAY_MS
        self._rng = rng
        self._app_versions = [f"2.{14 + week}.0" for week in range(days // 7 + 1)]
        # "YYYY-MM-DDTHH:" for every hour of the window, so formatting a time is one lookup.
        self._hour_prefixes = [
            f"{(first_day + timedelta(days=day)).isoformat()}T{hour:02d}:"
            for day in range(days)
            for hour in range(24)
        ]

    def _slot_weight(self, slot: int) -> int:
        weekday = (self.first_day + timedelta(days=slot // 24)).weekday()
        return HOURLY_WEIGHTS[slot % 24] * WEEKDAY_WEIGHTS[weekday]

    def __iter__(self) -> Iterator[int]:
        slots = self.days * 24
        total_weight = sum(self._slot_weight(slot) for slot in range(slots))
        cumulative_weight = 0
        allocated = 0
        for slot in range(slots):
            cumulative_weight += self._slot_weight(slot)
            # Integer arithmetic makes the allocation exact, so the counts always sum to `count`.
            boundary = self.count * cumulative_weight // total_weight
            yield from self._sorted_times(self.start_ms + slot * _HOUR_MS, boundary - allocated)
            allocated = boundary

    def _sorted_times(self, slot_start_ms: int, count: int) -> Iterator[int]:
        # The maximum of k uniforms is U ** (1 / k). Drawing the maxima from k = count down to 1
        # gives the sorted sample from the top, so 1 - value runs from the bottom.
        remaining_fraction = 1.0
        for k in range(count, 0, -1):
            remaining_fraction *= self._rng.random() ** (1.0 / k)
            offset = int((1.0 - remaining_fraction) * _HOUR_MS)
            yield slot_start_ms + min(offset, _HOUR_MS - 1)

    def clamp(self, at_ms: int) -> int:
        """Move a follow-up event's time back to the window's last millisecond if it is later."""
        return min(at_ms, self.end_ms - 1)

    def format(self, at_ms: int) -> str:
        """Format epoch milliseconds inside the window as RFC 3339 UTC with a ``Z``."""
        hour_index, in_hour = divmod(at_ms - self.start_ms, _HOUR_MS)
        seconds, millis = divmod(in_hour, 1000)
        minute, second = divmod(seconds, 60)
        return f"{self._hour_prefixes[hour_index]}{minute:02d}:{second:02d}.{millis:03d}Z"

    def app_version(self, at_ms: int) -> str:
        """Return the app release current at a time: one release a week through the window."""
        return self._app_versions[(at_ms - self.start_ms) // _WEEK_MS]
