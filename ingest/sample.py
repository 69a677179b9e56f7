"""Generate a reproducible sample of the app's usage events as JSON Lines.

The sample imitates the app's services calling Google, OpenAI and Anthropic over whole UTC
days, busier on weekday afternoons than at night or at weekends. Each line is one canonical
usage event. Token usage is usually the provider's own usage payload under ``usage``, and
sometimes the canonical counts, where ``input_tokens`` includes cached and cache-write tokens
and ``output_tokens`` includes reasoning tokens. Video and image calls report ``units``
instead.

The sample also carries the quirks and dirt that the warehouse must handle: models that no
price catalog lists, streamed calls that ended before usage arrived, Gemini streams that resend
cumulative usage under one ``request_id``, ``models/``-prefixed Gemini names, calls with no
organization, resent duplicate lines and malformed lines. ``SampleSummary`` counts them.

``write_sample`` streams its output, so memory does not grow with the event count.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import json
import logging
import math
import random
import string
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

logger = logging.getLogger(__name__)

Event = dict[str, Any]

REQUIRED_FIELDS: tuple[str, ...] = ("event_id", "created_at", "provider", "operation")

# Every sample of 500 or more lines contains each of these (provider, operation) pairs as a
# well-formed event. The first deck of calls contains every scenario and takes at most 195 lines
# plus resent ones, and dirt is only applied to a pair that already has a clean line.
REQUIRED_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("google", "generate_image"),
        ("google", "analyze_image"),
        ("google", "analyze_text"),
        ("google", "analyze_hook"),
        ("google", "generate_video"),
        ("google", "generate_avatar_image"),
        ("google", "agent_run"),
        ("openai", "embed"),
        ("openai", "embed_batch"),
        ("openai", "agent_run"),
        ("anthropic", "agent_run"),
    }
)

# Experimental Gemini names that genai-prices 0.2.3 does not list, so these events are unpriced.
UNKNOWN_MODELS: tuple[str, ...] = ("gemini-2.5-flash-exp-0923", "gemini-2.5-flash-lab-1021")

# Models billed per unit (video seconds, images) rather than per token. genai-prices 0.2.3 does
# not list them, so the warehouse needs its own prices for them.
UNIT_PRICED_MODELS: tuple[str, ...] = (
    "veo-3.0-generate-001",
    "veo-3.0-fast-generate-001",
    "imagen-4.0-generate-001",
)

MALFORMED_KINDS: tuple[str, ...] = (
    "truncated_json",
    "missing_required_field",
    "negative_token_count",
    "invalid_timestamp",
    "not_an_object",
)

# Shares of all lines (duplicates, malformed) or of well-formed events (no organization).
DUPLICATE_LINE_SHARE = 0.005
MALFORMED_LINE_SHARE = 0.002
NO_ORGANIZATION_SHARE = 0.01

# Shares of the Gemini analyze_* calls. Each quirk ends up on about 1% of the events or fewer.
UNKNOWN_MODEL_SHARE = 0.045
UNMETERED_STREAM_SHARE = 0.012
CUMULATIVE_STREAM_SHARE = 0.03
MODELS_PREFIX_SHARE = 0.08

# Calls per scenario in each shuffled deck of 88 calls (about 135 lines, because an agent run
# writes one line per model request).
SCENARIO_DECK: tuple[tuple[str, int], ...] = (
    ("gemini_generate_image", 7),
    ("gemini_analyze_image", 9),
    ("gemini_analyze_text", 14),
    ("gemini_analyze_hook", 8),
    ("veo_generate_video", 4),
    ("avatar_generate_image", 5),
    ("doc_embed", 23),
    ("doc_embed_batch", 1),
    ("agent_brand_research", 4),
    ("agent_script_generation", 5),
    ("agent_caption_writer", 4),
    ("agent_comics", 4),
)

# Relative traffic by UTC hour and by weekday (Monday first).
HOURLY_WEIGHTS: tuple[int, ...] = (
    3, 2, 2, 2, 2, 3, 5, 8, 11, 13, 14, 14, 13, 14, 15, 15, 14, 12, 10, 8, 7, 6, 5, 4,
)
WEEKDAY_WEIGHTS: tuple[int, ...] = (100, 105, 105, 100, 85, 35, 30)

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS
_WRITE_BATCH_LINES = 256
_RECENT_LINES = 256
# Compact separators. Each event is a fresh tree, so the circular-reference check can be skipped.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


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
    timeline = _Timeline(first_day, days, events, random.Random(f"timeline:{seed}"))
    factory = _CallFactory(rng, timeline)
    tally = _Tally()

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with _open_output(partial, compress=path.name.endswith(".gz")) as sink:
            _write_lines(sink, timeline, factory, rng, events, tally)
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


# --- Writing --------------------------------------------------------------------------------


class _Tally:
    """Running counts for the summary."""

    def __init__(self) -> None:
        self.lines = 0
        self.duplicates = 0
        self.malformed: Counter[str] = Counter()
        self.without_organization = 0
        self.by_provider: Counter[str] = Counter()


class _LineSink:
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
def _open_output(path: Path, *, compress: bool) -> Iterator[_LineSink]:
    with open(path, "wb") as raw:
        if compress:
            # An empty file name and mtime 0 keep the gzip header independent of path and clock.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
                sink = _LineSink(gz)
                yield sink
                sink.flush()
        else:
            sink = _LineSink(raw)
            yield sink
            sink.flush()


def _write_lines(
    sink: _LineSink,
    timeline: _Timeline,
    factory: _CallFactory,
    rng: random.Random,
    events: int,
    tally: _Tally,
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


def _token_fields(event: Event) -> list[tuple[dict[str, Any], str]]:
    """Top-level token counts of an event, as (container, key) pairs."""
    container = event.get("usage", event)
    return [
        (container, key)
        for key, value in container.items()
        if key.endswith(("_tokens", "TokenCount")) and isinstance(value, int)
    ]


def _invalid_timestamp(created_at: str, rng: random.Random) -> Any:
    day, _, clock = created_at.partition("T")
    choices: list[Any] = [
        f"{day}T25:61:00Z",  # hour and minute out of range
        f"{day} {clock[:8]}",  # no "T" separator and no offset
        f"{day[:5]}13{day[7:]}T{clock}",  # month 13
        "not a timestamp",
        int(datetime.fromisoformat(created_at).timestamp()),  # epoch seconds instead of text
    ]
    return choices[rng.randrange(len(choices))]


# --- Time -----------------------------------------------------------------------------------


class _Timeline:
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


# --- Identifiers and numbers ----------------------------------------------------------------

_ALPHANUMERIC = string.ascii_letters + string.digits
_BASE64URL = _ALPHANUMERIC + "-_"
# Byte-to-character tables for bytes.translate: a fast way to turn random bytes into ids.
_ALPHANUMERIC_TABLE = bytes(ord(_ALPHANUMERIC[i % len(_ALPHANUMERIC)]) for i in range(256))
_BASE64URL_TABLE = bytes(ord(_BASE64URL[i % len(_BASE64URL)]) for i in range(256))


def _random_text(rng: random.Random, length: int, table: bytes = _ALPHANUMERIC_TABLE) -> str:
    return rng.randbytes(length).translate(table).decode("ascii")


def _random_uuid(rng: random.Random) -> str:
    """Format 16 random bytes as a version 4 UUID, like ``uuid.uuid4`` but from ``rng``."""
    digits = rng.randbytes(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def _lognormal_int(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    """Draw a right-skewed count, as token counts are, clamped to [low, high]."""
    return min(max(int(rng.lognormvariate(math.log(median), sigma)), low), high)


def _pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    """Pick one value from (value, weight) pairs whose weights sum to 1."""
    draw = rng.random()
    for value, weight in weighted:
        draw -= weight
        if draw < 0:
            return value
    return weighted[-1][0]


# --- Provider usage payloads ----------------------------------------------------------------


class _Tokens(NamedTuple):
    """Canonical token counts.

    ``input`` includes cached and cache-write tokens, and ``output`` includes reasoning tokens.
    """

    input: int
    cached: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0


def _canonical_counts(tokens: _Tokens) -> Event:
    return {
        "input_tokens": tokens.input,
        "cached_input_tokens": tokens.cached,
        "cache_write_tokens": tokens.cache_write,
        "output_tokens": tokens.output,
        "reasoning_tokens": tokens.reasoning,
    }


def _openai_chat_usage(tokens: _Tokens) -> Event:
    return {
        "prompt_tokens": tokens.input,
        "completion_tokens": tokens.output,
        "total_tokens": tokens.input + tokens.output,
        "prompt_tokens_details": {"cached_tokens": tokens.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": tokens.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_embedding_usage(input_tokens: int) -> Event:
    return {"prompt_tokens": input_tokens, "total_tokens": input_tokens}


def _anthropic_usage(tokens: _Tokens, *, cache_write_1h: int = 0) -> Event:
    """Build Anthropic's ``usage``, whose ``input_tokens`` excludes cache reads and writes."""
    return {
        "input_tokens": tokens.input - tokens.cached - tokens.cache_write,
        "cache_creation_input_tokens": tokens.cache_write,
        "cache_read_input_tokens": tokens.cached,
        "cache_creation": {
            "ephemeral_5m_input_tokens": tokens.cache_write - cache_write_1h,
            "ephemeral_1h_input_tokens": cache_write_1h,
        },
        "output_tokens": tokens.output,
        "service_tier": "standard",
    }


def _gemini_usage_metadata(
    tokens: _Tokens,
    *,
    input_image_tokens: int = 0,
    output_image_tokens: int = 0,
    candidate_details: bool = False,
    traffic_type: str | None = None,
) -> Event:
    """Build Gemini's ``usageMetadata``.

    Gemini counts cached tokens inside ``promptTokenCount``, and thoughts apart from candidates.
    """
    candidates = tokens.output - tokens.reasoning
    usage: Event = {
        "promptTokenCount": tokens.input,
        "candidatesTokenCount": candidates,
        "totalTokenCount": tokens.input + tokens.output,
    }
    if tokens.cached:
        usage["cachedContentTokenCount"] = tokens.cached

    input_text_tokens = tokens.input - input_image_tokens
    usage["promptTokensDetails"] = _modality_counts(input_text_tokens, input_image_tokens)
    if tokens.cached:
        cached_text_tokens = min(tokens.cached, input_text_tokens)
        cached_image_tokens = tokens.cached - cached_text_tokens
        usage["cacheTokensDetails"] = _modality_counts(cached_text_tokens, cached_image_tokens)
    if candidate_details or output_image_tokens:
        output_text_tokens = candidates - output_image_tokens
        usage["candidatesTokensDetails"] = _modality_counts(output_text_tokens, output_image_tokens)
    if tokens.reasoning:
        usage["thoughtsTokenCount"] = tokens.reasoning
    if traffic_type is not None:
        usage["trafficType"] = traffic_type
    return usage


def _modality_counts(text_tokens: int, image_tokens: int) -> list[Event]:
    counts = []
    if text_tokens:
        counts.append({"modality": "TEXT", "tokenCount": text_tokens})
    if image_tokens:
        counts.append({"modality": "IMAGE", "tokenCount": image_tokens})
    return counts


# --- People ---------------------------------------------------------------------------------


class _User(NamedTuple):
    user_id: str
    organization_id: str | None


class _Population:
    """4-6 organizations of 3-10 users, plus two users without an organization."""

    def __init__(self, rng: random.Random) -> None:
        self.users: list[_User] = []
        weights: list[float] = []
        for _ in range(rng.randint(4, 6)):
            organization_id = f"org_{rng.getrandbits(48):012x}"
            organization_weight = rng.choice((1.0, 2.0, 3.0, 5.0, 8.0))
            for _ in range(rng.randint(3, 10)):
                self.users.append(_User(f"user_{rng.getrandbits(48):012x}", organization_id))
                weights.append(organization_weight * rng.uniform(0.1, 1.0))

        # Two users without an organization share NO_ORGANIZATION_SHARE of all picks.
        unaffiliated_weight = sum(weights) * NO_ORGANIZATION_SHARE / (1 - NO_ORGANIZATION_SHARE)
        for _ in range(2):
            self.users.append(_User(f"user_{rng.getrandbits(48):012x}", None))
            weights.append(unaffiliated_weight / 2)

        self._cumulative_weights: list[float] = []
        running = 0.0
        for weight in weights:
            running += weight
            self._cumulative_weights.append(running)

    def pick(self, rng: random.Random) -> _User:
        draw = rng.random() * self._cumulative_weights[-1]
        return self.users[bisect.bisect(self._cumulative_weights, draw)]


# --- Calls ----------------------------------------------------------------------------------


class _AgentProfile(NamedTuple):
    provider: str
    models: tuple[tuple[str, float], ...]
    requests: tuple[int, int]
    """Minimum and maximum model requests per run."""
    prefix_tokens: int
    """Median size of the system prompt and tool definitions, the prefix that caching reuses."""
    step_tokens: int
    """Median tokens each tool result adds to the history."""
    output_tokens: int
    """Median visible output tokens per request."""
    thinks: bool = False
    """Whether requests also spend reasoning tokens."""


_AGENTS: dict[str, _AgentProfile] = {
    "brand_research": _AgentProfile(
        provider="anthropic",
        models=(("claude-sonnet-4-5-20250929", 1.0),),
        requests=(3, 7),
        prefix_tokens=3800,
        step_tokens=2500,
        output_tokens=450,
    ),
    "script_generation": _AgentProfile(
        provider="openai",
        models=(("gpt-4.1", 0.8), ("gpt-4o-mini-2024-07-18", 0.2)),
        requests=(2, 4),
        prefix_tokens=1600,
        step_tokens=400,
        output_tokens=900,
    ),
    "caption_writer": _AgentProfile(
        provider="openai",
        models=(("gpt-4o-mini-2024-07-18", 1.0),),
        requests=(2, 3),
        prefix_tokens=900,
        step_tokens=200,
        output_tokens=150,
    ),
    "comics": _AgentProfile(
        provider="google",
        models=(("gemini-2.5-flash", 1.0),),
        requests=(3, 5),
        prefix_tokens=2200,
        step_tokens=600,
        output_tokens=700,
        thinks=True,
    ),
}

# The app's own per-unit estimates in USD. They can differ from the prices the warehouse uses.
_VEO_ESTIMATE_PER_SECOND: dict[tuple[str, bool], float] = {
    ("veo-3.0-generate-001", True): 0.40,
    ("veo-3.0-generate-001", False): 0.20,
    ("veo-3.0-fast-generate-001", True): 0.15,
    ("veo-3.0-fast-generate-001", False): 0.10,
}
_IMAGEN_ESTIMATE_PER_IMAGE = 0.04

# Tokens per image as Gemini counts them: 258 per input tile of up to 768x768 pixels, and 1290
# per generated image of up to 1024x1024 pixels.
_GEMINI_IMAGE_TILE_TOKENS = 258
_GEMINI_OUTPUT_IMAGE_TOKENS = 1290


class _GeminiCall(NamedTuple):
    """Values shared by the events of one generateContent call."""

    user: _User
    operation: str
    model: str
    platform: str
    tool_name: str
    request_id: str


class _AgentRun(NamedTuple):
    """Values shared by the events of one agent run."""

    agent: str
    profile: _AgentProfile
    model: str
    run_id: str
    user: _User
    canonical: bool
    """Log PydanticAI's canonical counts rather than the provider's usage payload."""
    cache_ttl_1h: bool
    """Cache the prefix for one hour rather than five minutes (Anthropic)."""


class _CallFactory:
    """Builder of the events of one call: one event, or one per model request or stream snapshot."""

    def __init__(self, rng: random.Random, timeline: _Timeline) -> None:
        self._rng = rng
        self._timeline = timeline
        self._population = _Population(rng)
        self._deck: list[str] = []
        self._scenarios: dict[str, Callable[[int, _User, int], list[Event]]] = {
            "gemini_generate_image": self._gemini_generate_image,
            "gemini_analyze_image": self._gemini_analyze_image,
            "gemini_analyze_text": self._gemini_analyze_text,
            "gemini_analyze_hook": self._gemini_analyze_hook,
            "veo_generate_video": self._veo_generate_video,
            "avatar_generate_image": self._avatar_generate_image,
            "doc_embed": self._doc_embed,
            "doc_embed_batch": self._doc_embed_batch,
        }
        for agent in _AGENTS:
            self._scenarios[f"agent_{agent}"] = functools.partial(self._agent_run, agent)

    def next_call(self, at_ms: int, limit: int) -> list[Event]:
        """Return the events of the next call, which starts at ``at_ms``: 1 to ``limit`` of them."""
        if not self._deck:
            # Shuffled decks rather than independent draws, so every scenario occurs in every
            # deck of 88 calls, however small the sample.
            self._deck = [name for name, count in SCENARIO_DECK for _ in range(count)]
            self._rng.shuffle(self._deck)
        scenario = self._scenarios[self._deck.pop()]
        return scenario(at_ms, self._population.pick(self._rng), limit)

    # Event shape ------------------------------------------------------------------------

    def _event(
        self,
        at_ms: int,
        user: _User,
        *,
        provider: str,
        operation: str,
        model: str,
        platform: str,
        service: str,
        tool_name: str,
    ) -> Event:
        return {
            "event_id": _random_uuid(self._rng),
            "created_at": self._timeline.format(self._timeline.clamp(at_ms)),
            "provider": provider,
            "operation": operation,
            "model": model,
            "platform": platform,
            "service": service,
            "tool_name": tool_name,
            "user_id": user.user_id,
            "organization_id": user.organization_id,
        }

    def _metadata(self, at_ms: int) -> Event:
        return {"app_version": self._timeline.app_version(self._timeline.clamp(at_ms))}

    def _gemini_response_id(self) -> str:
        return _random_text(self._rng, 23, _BASE64URL_TABLE)

    # Gemini -----------------------------------------------------------------------------

    def _gemini_generate_image(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        rng = self._rng
        platform = "vertex" if rng.random() < 0.1 else "api"
        reference_image_tokens = _GEMINI_IMAGE_TILE_TOKENS if rng.random() < 0.3 else 0
        prompt_tokens = _lognormal_int(rng, 60, 0.7, 5, 2000) + reference_image_tokens
        text_tokens = rng.randint(5, 40) if rng.random() < 0.5 else 0
        tokens = _Tokens(input=prompt_tokens, output=_GEMINI_OUTPUT_IMAGE_TOKENS + text_tokens)

        event = self._event(
            at_ms,
            user,
            provider="google",
            operation="generate_image",
            model=self._gemini_model_name("gemini-2.5-flash-image", platform),
            platform=platform,
            service="GeminiService",
            tool_name="Ad Creator" if rng.random() < 0.8 else "Content Pipeline",
        )
        event["request_id"] = self._gemini_response_id()
        event["usage"] = _gemini_usage_metadata(
            tokens,
            input_image_tokens=reference_image_tokens,
            output_image_tokens=_GEMINI_OUTPUT_IMAGE_TOKENS,
            traffic_type="ON_DEMAND" if platform == "vertex" else None,
        )
        event["units"] = 1
        event["unit_type"] = "images"
        event["attributes"] = {"aspect_ratio": rng.choice(("1:1", "9:16", "16:9"))}
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _gemini_analyze_image(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        rng = self._rng
        image_tokens = _GEMINI_IMAGE_TILE_TOKENS * rng.choice((1, 1, 2, 4, 6))
        thinks = rng.random() < 0.7
        visible_output = _lognormal_int(rng, 300, 0.7, 1, 8192)
        reasoning = _lognormal_int(rng, 500, 0.8, 1, 24_576) if thinks else 0
        tokens = _Tokens(
            input=_lognormal_int(rng, 300, 0.6, 10, 20_000) + image_tokens,
            output=visible_output + reasoning,
            reasoning=reasoning,
        )
        tool_name = "Ad Creator" if rng.random() < 0.5 else "Content Pipeline"
        return self._gemini_content(
            at_ms,
            user,
            limit,
            "analyze_image",
            "gemini-2.5-flash",
            tool_name,
            tokens,
            image_tokens,
            streams=False,
        )

    def _gemini_analyze_text(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        rng = self._rng
        model = "gemini-2.5-flash" if rng.random() < 0.8 else "gemini-2.5-pro"
        # Flash may run with a thinking budget of zero, but Pro cannot turn thinking off.
        thinks = model == "gemini-2.5-pro" or rng.random() < 0.7
        tokens = self._gemini_text_tokens(
            prompt_median=1400, output_median=350, reasoning_median=700, thinks=thinks
        )
        tool_name = "Content Pipeline" if rng.random() < 0.6 else "Knowledge Base"
        return self._gemini_content(
            at_ms, user, limit, "analyze_text", model, tool_name, tokens, 0, streams=True
        )

    def _gemini_analyze_hook(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        model = "gemini-2.5-flash" if self._rng.random() < 0.6 else "gemini-2.5-pro"
        tokens = self._gemini_text_tokens(
            prompt_median=900, output_median=250, reasoning_median=1200, thinks=True
        )
        return self._gemini_content(
            at_ms, user, limit, "analyze_hook", model, "Ad Creator", tokens, 0, streams=True
        )

    def _gemini_text_tokens(
        self, *, prompt_median: int, output_median: int, reasoning_median: int, thinks: bool
    ) -> _Tokens:
        rng = self._rng
        prompt = _lognormal_int(rng, prompt_median, 0.9, 20, 250_000)
        visible_output = _lognormal_int(rng, output_median, 0.8, 1, 8192)
        reasoning = _lognormal_int(rng, reasoning_median, 0.9, 1, 24_576) if thinks else 0
        # Implicit caching only hits long prompts that repeat a recent prefix. The 1024-token
        # minimum of Flash is used for Pro too.
        cached = 0
        if prompt >= 1024 and rng.random() < 0.25:
            cached = int(prompt * rng.uniform(0.3, 0.9))
        return _Tokens(
            input=prompt, cached=cached, output=visible_output + reasoning, reasoning=reasoning
        )

    def _gemini_content(
        self,
        at_ms: int,
        user: _User,
        limit: int,
        operation: str,
        model: str,
        tool_name: str,
        tokens: _Tokens,
        input_image_tokens: int,
        *,
        streams: bool,
    ) -> list[Event]:
        """Build a generateContent call, with its quirks: unknown model, lost or resent usage."""
        rng = self._rng
        platform = "vertex" if rng.random() < 0.1 else "api"
        if rng.random() < UNKNOWN_MODEL_SHARE:
            model = rng.choice(UNKNOWN_MODELS)
        call = _GeminiCall(
            user=user,
            operation=operation,
            model=self._gemini_model_name(model, platform),
            platform=platform,
            tool_name=tool_name,
            request_id=self._gemini_response_id(),
        )

        stream_draw = rng.random() if streams else 1.0
        if stream_draw < UNMETERED_STREAM_SHARE:
            # The stream ended before its final chunk, which is the one that carries usage.
            return [self._gemini_event(call, at_ms, None, stream=True)]
        if limit >= 2 and stream_draw < UNMETERED_STREAM_SHARE + CUMULATIVE_STREAM_SHARE:
            return self._gemini_snapshots(call, at_ms, tokens, input_image_tokens, limit)

        usage = _gemini_usage_metadata(
            tokens,
            input_image_tokens=input_image_tokens,
            candidate_details=platform == "vertex",
            traffic_type="ON_DEMAND" if platform == "vertex" else None,
        )
        return [self._gemini_event(call, at_ms, usage, stream=False)]

    def _gemini_snapshots(
        self, call: _GeminiCall, at_ms: int, tokens: _Tokens, input_image_tokens: int, limit: int
    ) -> list[Event]:
        """Build the usage the app logged from several chunks of one stream.

        Each snapshot is cumulative, so the last one contains the total and the earlier ones
        must not be added to it.
        """
        rng = self._rng
        snapshots = min(rng.choice((2, 3)), limit)
        visible_output = tokens.output - tokens.reasoning
        traffic_type = "ON_DEMAND" if call.platform == "vertex" else None
        events = []
        moment_ms = at_ms
        for index in range(1, snapshots + 1):
            # Thinking finishes before the visible output streams, so only the candidates grow.
            partial_output = max(1, visible_output * index // snapshots)
            partial = tokens._replace(output=partial_output + tokens.reasoning)
            usage = _gemini_usage_metadata(
                partial, input_image_tokens=input_image_tokens, traffic_type=traffic_type
            )
            events.append(self._gemini_event(call, moment_ms, usage, stream=True))
            moment_ms += rng.randint(400, 4000)
        return events

    def _gemini_event(
        self, call: _GeminiCall, at_ms: int, usage: Event | None, *, stream: bool
    ) -> Event:
        event = self._event(
            at_ms,
            call.user,
            provider="google",
            operation=call.operation,
            model=call.model,
            platform=call.platform,
            service="GeminiService",
            tool_name=call.tool_name,
        )
        event["request_id"] = call.request_id
        if usage is not None:
            event["usage"] = usage
        if stream:
            event["attributes"] = {"stream": True}
        event["metadata"] = self._metadata(at_ms)
        return event

    def _gemini_model_name(self, model: str, platform: str) -> str:
        # The Gemini API also accepts and echoes resource names such as "models/gemini-2.5-flash".
        if platform == "api" and self._rng.random() < MODELS_PREFIX_SHARE:
            return f"models/{model}"
        return model

    # Veo and Imagen ---------------------------------------------------------------------

    def _veo_generate_video(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        rng = self._rng
        model = "veo-3.0-generate-001" if rng.random() < 0.65 else "veo-3.0-fast-generate-001"
        platform = "vertex" if rng.random() < 0.4 else "api"
        seconds = _pick(rng, ((8, 0.6), (6, 0.2), (4, 0.2)))
        audio = rng.random() < 0.75

        event = self._event(
            at_ms,
            user,
            provider="google",
            operation="generate_video",
            model=model,
            platform=platform,
            service="VeoService",
            tool_name="VEO Avatars" if rng.random() < 0.7 else "Ad Creator",
        )
        # Veo runs as a long-running operation, and its name is the only response id.
        event["request_id"] = f"models/{model}/operations/{_random_text(rng, 12).lower()}"
        event["units"] = seconds
        event["unit_type"] = "video_seconds"
        if rng.random() < 0.7:
            event["cost_usd"] = self._estimate(seconds * _VEO_ESTIMATE_PER_SECOND[(model, audio)])
        resolution = "720p" if rng.random() < 0.65 else "1080p"
        event["attributes"] = {"resolution": resolution, "audio": audio}
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _avatar_generate_image(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        rng = self._rng
        images = _pick(rng, ((1, 0.4), (2, 0.2), (4, 0.4)))
        event = self._event(
            at_ms,
            user,
            provider="google",
            operation="generate_avatar_image",
            model="imagen-4.0-generate-001",
            platform="vertex" if rng.random() < 0.5 else "api",
            service="AvatarService",
            tool_name="VEO Avatars",
        )
        # Imagen's predict response carries no response id, so the event has no request_id.
        event["units"] = images
        event["unit_type"] = "images"
        if rng.random() < 0.7:
            event["cost_usd"] = self._estimate(images * _IMAGEN_ESTIMATE_PER_IMAGE)
        event["attributes"] = {"aspect_ratio": rng.choice(("1:1", "9:16", "3:4"))}
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _estimate(self, list_cost: float) -> float:
        # One estimate in five drifts by up to 10%, as stale rates or rounding in the app would.
        if self._rng.random() < 0.2:
            list_cost *= self._rng.uniform(0.9, 1.1)
        return round(list_cost, 6)

    # OpenAI embeddings ------------------------------------------------------------------

    def _doc_embed(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        event = self._embedding_event(at_ms, user, "embed")
        event["request_id"] = f"req_{self._rng.getrandbits(128):032x}"
        input_tokens = _lognormal_int(self._rng, 1800, 1.0, 5, 300_000)
        event["usage"] = _openai_embedding_usage(input_tokens)
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _doc_embed_batch(self, at_ms: int, user: _User, limit: int) -> list[Event]:
        event = self._embedding_event(at_ms, user, "embed_batch")
        event["request_id"] = f"batch_{self._rng.getrandbits(128):032x}"
        event["service_tier"] = "batch"
        input_tokens = _lognormal_int(self._rng, 400_000, 0.8, 10_000, 20_000_000)
        event["usage"] = _openai_embedding_usage(input_tokens)
        event["metadata"] = self._metadata(at_ms)
        return [event]

    def _embedding_event(self, at_ms: int, user: _User, operation: str) -> Event:
        return self._event(
            at_ms,
            user,
            provider="openai",
            operation=operation,
            model="text-embedding-3-small",
            platform="api",
            service="DocService",
            tool_name="Knowledge Base",
        )

    # PydanticAI agent runs --------------------------------------------------------------

    def _agent_run(self, agent: str, at_ms: int, user: _User, limit: int) -> list[Event]:
        """Build one event per model request of a run, whose history grows with every request."""
        rng = self._rng
        profile = _AGENTS[agent]
        run = _AgentRun(
            agent=agent,
            profile=profile,
            model=_pick(rng, profile.models),
            run_id=_random_uuid(rng),
            user=user,
            # PydanticAI reports canonical counts, and some runs log those instead of the payload.
            canonical=rng.random() < 0.4,
            cache_ttl_1h=rng.random() < 0.3,
        )
        prefix = _lognormal_int(rng, profile.prefix_tokens, 0.3, 200, 50_000)
        user_request = _lognormal_int(rng, 150, 0.8, 5, 5000)
        history = prefix + user_request
        previous_input = 0
        moment_ms = at_ms

        events = []
        for step in range(min(rng.randint(*profile.requests), limit)):
            output = _lognormal_int(rng, profile.output_tokens, 0.6, 1, 16_000)
            reasoning = _lognormal_int(rng, 600, 0.8, 1, 24_576) if profile.thinks else 0
            tokens = _Tokens(input=history, output=output + reasoning, reasoning=reasoning)
            tokens = self._agent_caching(run, step, prefix, previous_input, tokens)
            events.append(self._agent_event(run, step, moment_ms, tokens))

            previous_input = history
            history += output + _lognormal_int(rng, profile.step_tokens, 0.8, 10, 60_000)
            # Time to generate the output at about 80 tokens per second, then run the tools.
            moment_ms += int((output + reasoning) / 80 * 1000) + rng.randint(300, 6000)
        return events

    def _agent_event(self, run: _AgentRun, step: int, at_ms: int, tokens: _Tokens) -> Event:
        provider = run.profile.provider
        event = self._event(
            at_ms,
            run.user,
            provider=provider,
            operation="agent_run",
            model=run.model,
            platform="api",
            service="PydanticAI",
            tool_name=run.agent,
        )
        event["request_id"] = self._agent_request_id(provider)
        event["run_id"] = run.run_id
        if provider == "anthropic":
            event["service_tier"] = "standard"
        if provider == "openai" and self._rng.random() < 0.01:
            event["attributes"] = {"stream": True}  # the stream ended before its usage chunk
        elif run.canonical:
            event.update(_canonical_counts(tokens))
        else:
            event["usage"] = self._agent_usage(provider, tokens, cache_ttl_1h=run.cache_ttl_1h)
        event["metadata"] = self._metadata(at_ms)
        event["metadata"]["agent_step"] = step + 1
        return event

    def _agent_caching(
        self, run: _AgentRun, step: int, prefix: int, previous_input: int, tokens: _Tokens
    ) -> _Tokens:
        """Apply each provider's prompt caching to a request of an agent run."""
        rng = self._rng
        provider = run.profile.provider
        if provider == "anthropic":
            # The run marks its prefix for caching. The first request writes it, unless an earlier
            # run's one-hour entry is still live, and later requests read it.
            if step == 0 and not (run.cache_ttl_1h and rng.random() < 0.6):
                return tokens._replace(cache_write=prefix)
            return tokens._replace(cached=prefix)
        if provider == "openai":
            # Automatic caching hits prompts of 1024 tokens or more, in steps of 128 tokens.
            if previous_input >= 1024 and rng.random() < 0.8:
                return tokens._replace(cached=1024 + (previous_input - 1024) // 128 * 128)
            return tokens
        if previous_input >= 1024 and rng.random() < 0.6:
            return tokens._replace(cached=int(previous_input * rng.uniform(0.5, 0.95)))
        return tokens

    def _agent_usage(self, provider: str, tokens: _Tokens, *, cache_ttl_1h: bool) -> Event:
        if provider == "anthropic":
            cache_write_1h = tokens.cache_write if cache_ttl_1h else 0
            return _anthropic_usage(tokens, cache_write_1h=cache_write_1h)
        if provider == "openai":
            return _openai_chat_usage(tokens)
        return _gemini_usage_metadata(tokens)

    def _agent_request_id(self, provider: str) -> str:
        if provider == "anthropic":
            return f"msg_01{_random_text(self._rng, 22)}"
        if provider == "openai":
            return f"chatcmpl-{_random_text(self._rng, 29)}"
        return self._gemini_response_id()
