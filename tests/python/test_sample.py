"""Tests for the sample usage generator: reproducibility, streaming, coverage, dirt and prices."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage, calc_price, extract_usage

from ingest.sample import (
    MALFORMED_KINDS,
    REQUIRED_FIELDS,
    REQUIRED_OPERATIONS,
    UNIT_PRICED_MODELS,
    UNKNOWN_MODELS,
    SampleSummary,
    write_sample,
)

END = date(2026, 11, 30)
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CANONICAL_TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


@dataclass
class ParsedSample:
    """A sample file sorted into clean events, resent lines and malformed lines."""

    summary: SampleSummary
    events: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    malformed: int = 0
    lines: int = 0


def read_lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="ascii") as lines:
        for line in lines:
            yield line.rstrip("\n")


def has_negative_tokens(event: dict[str, Any]) -> bool:
    container = event.get("usage", event)
    return any(
        isinstance(value, int) and value < 0
        for key, value in container.items()
        if key.endswith(("_tokens", "TokenCount"))
    )


def is_well_formed(line: str) -> bool:
    """Check a line as an ingest validator would, independently of the generator's bookkeeping."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return False
    if not isinstance(event, dict) or any(name not in event for name in REQUIRED_FIELDS):
        return False
    created_at = event["created_at"]
    if not isinstance(created_at, str) or not RFC3339_UTC.match(created_at):
        return False
    try:
        datetime.fromisoformat(created_at)
    except ValueError:
        return False
    return not has_negative_tokens(event)


def parse_sample(path: Path, summary: SampleSummary) -> ParsedSample:
    parsed = ParsedSample(summary)
    seen_lines: set[str] = set()
    for line in read_lines(path):
        parsed.lines += 1
        if line in seen_lines:
            parsed.duplicates += 1
        elif not is_well_formed(line):
            parsed.malformed += 1
        else:
            seen_lines.add(line)
            parsed.events.append(json.loads(line))
    return parsed


@pytest.fixture(scope="module")
def large_sample(tmp_path_factory: pytest.TempPathFactory) -> ParsedSample:
    path = tmp_path_factory.mktemp("sample") / "events.jsonl.gz"
    summary = write_sample(path, events=20_000, days=30, seed=11, end=END)
    return parse_sample(path, summary)


# --- Reproducibility and output format ------------------------------------------------------


def test_same_arguments_give_same_bytes(tmp_path: Path) -> None:
    first = write_sample(tmp_path / "a.jsonl.gz", events=3000, days=10, seed=3, end=END)
    second = write_sample(tmp_path / "b.jsonl.gz", events=3000, days=10, seed=3, end=END)

    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert first.events_by_provider == second.events_by_provider


def test_plain_output_matches_gzip_content(tmp_path: Path) -> None:
    write_sample(tmp_path / "a.jsonl", events=1000, seed=3, end=END)
    write_sample(tmp_path / "a.jsonl.gz", events=1000, seed=3, end=END)

    compressed = (tmp_path / "a.jsonl.gz").read_bytes()

    assert gzip.decompress(compressed) == (tmp_path / "a.jsonl").read_bytes()


def test_gzip_header_has_no_time_or_name(tmp_path: Path) -> None:
    write_sample(tmp_path / "a.jsonl.gz", events=10, end=END)
    header = (tmp_path / "a.jsonl.gz").read_bytes()[:10]

    assert header[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0"
    assert header[3] & 0x08 == 0, "gzip header must not store a file name"


def test_different_seed_gives_different_bytes(tmp_path: Path) -> None:
    write_sample(tmp_path / "a.jsonl", events=1000, seed=3, end=END)
    write_sample(tmp_path / "b.jsonl", events=1000, seed=4, end=END)

    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "b.jsonl").read_bytes()


def test_different_end_shifts_the_window(tmp_path: Path) -> None:
    summary = write_sample(tmp_path / "a.jsonl", events=500, days=7, end=date(2026, 3, 1))
    parsed = parse_sample(tmp_path / "a.jsonl", summary)
    days = {event["created_at"][:10] for event in parsed.events}

    assert summary.first_day == date(2026, 2, 23)
    assert summary.last_day == date(2026, 3, 1)
    assert min(days) == "2026-02-23"
    assert max(days) == "2026-03-01"


def test_end_defaults_to_today_utc(tmp_path: Path) -> None:
    before = datetime.now(UTC).date()
    summary = write_sample(tmp_path / "a.jsonl", events=10, days=3)
    after = datetime.now(UTC).date()

    assert summary.last_day in {before, after}
    assert summary.first_day == summary.last_day - timedelta(days=2)


@pytest.mark.parametrize("events", [0, 1, 2, 7, 499])
def test_line_count_equals_events(tmp_path: Path, events: int) -> None:
    summary = write_sample(tmp_path / "a.jsonl", events=events, days=2, end=END)

    assert sum(1 for _ in read_lines(tmp_path / "a.jsonl")) == events
    assert summary.events_written == events


@pytest.mark.parametrize(
    ("arguments", "message"), [({"events": -1}, "events"), ({"days": 0}, "days")]
)
def test_invalid_arguments_raise(tmp_path: Path, arguments: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_sample(tmp_path / "a.jsonl", end=END, **arguments)


def test_no_partial_file_left(tmp_path: Path) -> None:
    write_sample(tmp_path / "out" / "a.jsonl.gz", events=100, end=END)

    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.jsonl.gz"]


# --- Streaming ------------------------------------------------------------------------------


def traced_peak_bytes(path: Path, events: int) -> int:
    tracemalloc.start()
    try:
        write_sample(path, events=events, days=30, end=END)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_traced_memory_independent_of_count(tmp_path: Path) -> None:
    # NOTE: tracemalloc slows this generator several times over on Python 3.11, so the traced
    # runs stay at 40k events and the 200k run below measures resident memory instead.
    small_peak = traced_peak_bytes(tmp_path / "small.jsonl", 5_000)
    large_peak = traced_peak_bytes(tmp_path / "large.jsonl", 40_000)

    assert large_peak < 2**20, f"peak traced memory {large_peak} bytes for 40k events"
    assert large_peak < small_peak + 256 * 2**10, f"peak grew from {small_peak} to {large_peak}"


RSS_SCRIPT = """
import resource, sys
from datetime import date
from pathlib import Path
from ingest.sample import write_sample
write_sample(Path(sys.argv[1]), events=int(sys.argv[2]), end=date(2026, 11, 30))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(path: Path, events: int) -> int:
    """Run the generator in a fresh interpreter and return its peak resident set size."""
    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(path), str(events)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return int(result.stdout.strip())


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB only on Linux")
def test_resident_memory_flat_at_200k_events(tmp_path: Path) -> None:
    small_rss = peak_rss_kib(tmp_path / "small.jsonl", 2_000)
    large_rss = peak_rss_kib(tmp_path / "large.jsonl", 200_000)

    # The 200k-line file is over 100 MiB, so holding even a tenth of it would break this bound.
    assert (tmp_path / "large.jsonl").stat().st_size > 100 * 2**20
    assert large_rss - small_rss < 8 * 2**10, f"peak RSS grew from {small_rss} to {large_rss} KiB"


# --- Coverage -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 7, 42])
def test_required_operations_in_1000_events(tmp_path: Path, seed: int) -> None:
    summary = write_sample(tmp_path / "a.jsonl", events=1000, days=7, seed=seed, end=END)
    parsed = parse_sample(tmp_path / "a.jsonl", summary)
    seen = {(event["provider"], event["operation"]) for event in parsed.events}

    assert REQUIRED_OPERATIONS - seen == set()


@pytest.mark.parametrize("seed", range(20))
def test_required_operations_in_500_events(tmp_path: Path, seed: int) -> None:
    summary = write_sample(tmp_path / "a.jsonl", events=500, days=7, seed=seed, end=END)
    parsed = parse_sample(tmp_path / "a.jsonl", summary)
    seen = {(event["provider"], event["operation"]) for event in parsed.events}

    assert REQUIRED_OPERATIONS - seen == set()


def test_provider_operation_pairs_are_known(large_sample: ParsedSample) -> None:
    seen = {(event["provider"], event["operation"]) for event in large_sample.events}

    assert seen == REQUIRED_OPERATIONS


# --- Dirt and quirks ------------------------------------------------------------------------


def test_summary_matches_file(large_sample: ParsedSample) -> None:
    summary = large_sample.summary
    clean_events = large_sample.events

    assert large_sample.lines == summary.events_written == 20_000
    assert large_sample.duplicates == summary.duplicate_lines
    assert large_sample.malformed == summary.malformed_lines
    assert len(clean_events) == summary.unique_events
    assert Counter(event["provider"] for event in clean_events) == summary.events_by_provider
    without_organization = sum(event["organization_id"] is None for event in clean_events)
    assert without_organization == summary.events_without_organization


def test_dirt_shares_near_design(large_sample: ParsedSample) -> None:
    summary = large_sample.summary

    assert 0.003 <= summary.duplicate_lines / summary.events_written <= 0.007
    assert 0.001 <= summary.malformed_lines / summary.events_written <= 0.0035
    assert set(summary.malformed_by_kind) == set(MALFORMED_KINDS)
    assert all(count > 0 for count in summary.malformed_by_kind.values()), summary.malformed_by_kind
    assert 0.005 <= summary.events_without_organization / summary.unique_events <= 0.015


def test_duplicates_resend_earlier_events(large_sample: ParsedSample) -> None:
    event_ids = Counter(event["event_id"] for event in large_sample.events)

    assert large_sample.duplicates > 0
    assert max(event_ids.values()) == 1, "an event_id appears on two different clean lines"


def test_quirks_present_in_share(large_sample: ParsedSample) -> None:
    events = large_sample.events
    unknown = sum(event["model"].removeprefix("models/") in UNKNOWN_MODELS for event in events)
    prefixed = sum(event["model"].startswith("models/") for event in events)
    unmetered = [event for event in events if is_token_operation(event) and not has_tokens(event)]

    assert 0.005 <= unknown / len(events) <= 0.015
    assert prefixed > 0
    assert 0 < len(unmetered) <= 0.01 * len(events)
    assert all(event["attributes"] == {"stream": True} for event in unmetered)


def test_cumulative_gemini_streams(large_sample: ParsedSample) -> None:
    by_request: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in large_sample.events:
        if event["operation"].startswith("analyze_") and "usage" in event:
            by_request[event["request_id"]].append(event)
    streams = [snapshots for snapshots in by_request.values() if len(snapshots) > 1]

    assert streams, "no Gemini stream resent its usage"
    for snapshots in streams:
        totals = [snapshot["usage"]["totalTokenCount"] for snapshot in snapshots]
        assert len({snapshot["event_id"] for snapshot in snapshots}) == len(snapshots)
        assert totals == sorted(totals)
        times = [snapshot["created_at"] for snapshot in snapshots]
        assert times == sorted(times)


def test_agent_runs_share_context(large_sample: ParsedSample) -> None:
    runs: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in large_sample.events:
        if event["operation"] == "agent_run":
            runs[event["run_id"]].append(event)

    providers = {event["provider"] for run in runs.values() for event in run}
    assert providers == {"google", "openai", "anthropic"}
    assert max(len(run) for run in runs.values()) >= 3
    for run in runs.values():
        assert len({(event["user_id"], event["tool_name"], event["model"]) for event in run}) == 1
        assert len({event["request_id"] for event in run}) == len(run)
        # Steps count up from 1, with gaps where a line was written malformed.
        steps = [event["metadata"]["agent_step"] for event in run]
        assert steps == sorted(set(steps))
        assert steps[0] >= 1
        assert steps[-1] <= 7


def test_non_agent_events_have_no_run(large_sample: ParsedSample) -> None:
    for event in large_sample.events:
        assert ("run_id" in event) == (event["operation"] == "agent_run")


# --- Event fields ---------------------------------------------------------------------------


def test_clean_events_have_valid_fields(large_sample: ParsedSample) -> None:
    first = datetime.fromisoformat("2026-11-01T00:00:00+00:00")
    after_last = datetime.fromisoformat("2026-12-01T00:00:00+00:00")
    for event in large_sample.events:
        assert event["provider"] in {"google", "openai", "anthropic"}
        assert first <= datetime.fromisoformat(event["created_at"]) < after_last
        assert event["user_id"].startswith("user_")
        assert event["organization_id"] is None or event["organization_id"].startswith("org_")
        assert event["platform"] in {"api", "vertex"}
        assert event["platform"] == "api" or event["provider"] == "google"
        assert isinstance(event["metadata"]["app_version"], str)


def test_population_size(large_sample: ParsedSample) -> None:
    organizations: defaultdict[str, set[str]] = defaultdict(set)
    for event in large_sample.events:
        if event["organization_id"] is not None:
            organizations[event["organization_id"]].add(event["user_id"])

    assert 4 <= len(organizations) <= 6
    assert all(3 <= len(users) <= 10 for users in organizations.values()), organizations


def test_traffic_has_daily_and_weekly_rhythm(large_sample: ParsedSample) -> None:
    by_hour = Counter(int(event["created_at"][11:13]) for event in large_sample.events)
    by_weekday = Counter(
        datetime.fromisoformat(event["created_at"]).weekday() for event in large_sample.events
    )

    assert by_hour[15] > 3 * by_hour[3]
    # November 2026 has four of each weekday plus an extra Sunday and Monday.
    assert by_weekday[2] > 2 * by_weekday[5]


def test_units_on_video_and_image_events(large_sample: ParsedSample) -> None:
    for event in large_sample.events:
        operation = event["operation"]
        if operation == "generate_video":
            assert event["units"] in {4, 6, 8}
            assert event["unit_type"] == "video_seconds"
            assert event["attributes"]["resolution"] in {"720p", "1080p"}
            assert isinstance(event["attributes"]["audio"], bool)
            assert not has_tokens(event)
        elif operation == "generate_avatar_image":
            assert 1 <= event["units"] <= 4
            assert event["unit_type"] == "images"
            assert not has_tokens(event)
        elif operation == "generate_image":
            assert event["units"] == 1
            assert event["unit_type"] == "images"
        else:
            assert "units" not in event
        if "cost_usd" in event:
            assert event["model"] in UNIT_PRICED_MODELS
            assert event["cost_usd"] > 0


def test_batch_tier_only_on_embed_batch(large_sample: ParsedSample) -> None:
    for event in large_sample.events:
        assert (event.get("service_tier") == "batch") == (event["operation"] == "embed_batch")


# --- Token usage ----------------------------------------------------------------------------


def is_token_operation(event: dict[str, Any]) -> bool:
    return event["operation"] not in {"generate_video", "generate_avatar_image"}


def has_tokens(event: dict[str, Any]) -> bool:
    return "usage" in event or "input_tokens" in event


def modality_total(usage: dict[str, Any], details_key: str) -> int:
    return sum(part["tokenCount"] for part in usage[details_key])


def check_usage_totals(event: dict[str, Any]) -> None:
    usage = event["usage"]
    if event["provider"] == "google":
        output = usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0)
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + output
        assert modality_total(usage, "promptTokensDetails") == usage["promptTokenCount"]
        assert usage.get("cachedContentTokenCount", 0) <= usage["promptTokenCount"]
        if "cacheTokensDetails" in usage:
            assert modality_total(usage, "cacheTokensDetails") == usage["cachedContentTokenCount"]
        if "candidatesTokensDetails" in usage:
            assert modality_total(usage, "candidatesTokensDetails") == usage["candidatesTokenCount"]
    elif event["provider"] == "anthropic":
        cache_creation = usage["cache_creation"]
        assert usage["cache_creation_input_tokens"] == sum(cache_creation.values())
        assert usage["input_tokens"] >= 0
        assert usage["cache_read_input_tokens"] >= 0
        assert usage["output_tokens"] >= 0
    elif "completion_tokens" in usage:
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens_details"]["cached_tokens"] <= usage["prompt_tokens"]
        assert usage["completion_tokens_details"]["reasoning_tokens"] <= usage["completion_tokens"]
    else:
        assert usage["total_tokens"] == usage["prompt_tokens"]


def test_usage_totals_consistent(large_sample: ParsedSample) -> None:
    checked = 0
    for event in large_sample.events:
        if "usage" in event:
            check_usage_totals(event)
            checked += 1

    assert checked > 0.5 * len(large_sample.events)


def test_canonical_counts_consistent(large_sample: ParsedSample) -> None:
    canonical = [event for event in large_sample.events if "input_tokens" in event]

    assert canonical, "no event carries canonical token counts"
    for event in canonical:
        assert "usage" not in event
        assert all(event[name] >= 0 for name in CANONICAL_TOKEN_FIELDS)
        assert event["cached_input_tokens"] + event["cache_write_tokens"] <= event["input_tokens"]
        assert event["reasoning_tokens"] <= event["output_tokens"]


def genai_prices_usage(event: dict[str, Any], model: str) -> Usage:
    """Read an event's tokens the way genai-prices reads the provider's response body."""
    if "input_tokens" in event:
        return Usage(
            input_tokens=event["input_tokens"],
            cache_read_tokens=event["cached_input_tokens"],
            cache_write_tokens=event["cache_write_tokens"],
            output_tokens=event["output_tokens"],
        )
    usage = event["usage"]
    if event["provider"] == "google":
        body = {"modelVersion": model, "usageMetadata": usage}
        return extract_usage(body, provider_id="google").usage
    if event["provider"] == "anthropic":
        return extract_usage({"model": model, "usage": usage}, provider_id="anthropic").usage
    flavor = "chat" if "completion_tokens" in usage else "embeddings"
    body = {"model": model, "usage": usage}
    return extract_usage(body, provider_id="openai", api_flavor=flavor).usage


def test_known_models_price_at_event_time(large_sample: ParsedSample) -> None:
    priced: Counter[str] = Counter()
    for event in large_sample.events:
        # Prices are listed under bare names, so strip the Gemini API's "models/" resource prefix.
        model = event["model"].removeprefix("models/")
        if model in UNKNOWN_MODELS or model in UNIT_PRICED_MODELS or not has_tokens(event):
            continue
        usage = genai_prices_usage(event, model)
        price = calc_price(
            usage,
            model_ref=model,
            provider_id=event["provider"],
            genai_request_timestamp=datetime.fromisoformat(event["created_at"]),
        )
        assert price.total_price > 0, event["event_id"]
        priced[model] += 1

    assert set(priced) == {
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-2.5-flash-image",
        "text-embedding-3-small",
        "gpt-4.1",
        "gpt-4o-mini-2024-07-18",
        "claude-sonnet-4-5-20250929",
    }


@pytest.mark.parametrize("model", UNKNOWN_MODELS)
def test_unknown_models_have_no_price(model: str) -> None:
    with pytest.raises(LookupError):
        calc_price(
            Usage(input_tokens=100, output_tokens=100), model_ref=model, provider_id="google"
        )


def test_extracted_usage_matches_payload(large_sample: ParsedSample) -> None:
    for event in large_sample.events:
        model = event["model"].removeprefix("models/")
        if "usage" not in event or model in UNKNOWN_MODELS or event["provider"] != "google":
            continue
        usage = event["usage"]
        extracted = genai_prices_usage(event, model)
        assert extracted.input_tokens == usage["promptTokenCount"]
        assert extracted.cache_read_tokens == usage.get("cachedContentTokenCount", 0)
        assert extracted.output_tokens == usage["totalTokenCount"] - usage["promptTokenCount"]
