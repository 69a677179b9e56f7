"""Table-driven tests for parsing and validating canonical usage events (ingest/events.py)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from ingest.events import (
    REQUIRED_FIELDS,
    InvalidEvent,
    derived_event_id,
    normalize_model_name,
    normalize_platform,
    normalize_provider,
    normalize_service_tier,
    parse_event,
    parse_json_line,
    parse_timestamp,
    token_usage_event_id,
)

MINIMAL_RECORD: dict[str, Any] = {
    "event_id": "evt-1",
    "created_at": "2025-09-03T10:00:00Z",
    "provider": "openai",
    "operation": "chat",
}

OPENAI_CHAT_USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 50,
    "total_tokens": 150,
    "prompt_tokens_details": {"cached_tokens": 40},
    "completion_tokens_details": {"reasoning_tokens": 10},
}
GEMINI_USAGE = {
    "promptTokenCount": 100,
    "candidatesTokenCount": 50,
    "thoughtsTokenCount": 20,
    "totalTokenCount": 170,
}
# Anthropic leaves cache reads and writes out of input_tokens, so the canonical input is 170.
ANTHROPIC_USAGE = {
    "input_tokens": 100,
    "cache_read_input_tokens": 50,
    "cache_creation_input_tokens": 20,
    "output_tokens": 30,
}


def make_record(**fields: Any) -> dict[str, Any]:
    """Return the minimal valid record with `fields` added or replaced."""
    return {**MINIMAL_RECORD, **fields}


def parse_invalid(record: dict[str, Any]) -> InvalidEvent:
    """Parse a record that must be rejected and return the InvalidEvent raised."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(record)
    return caught.value


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2025-09-03T10:00:00Z", datetime(2025, 9, 3, 10, 0), id="z-suffix"),
        pytest.param("2025-09-03t10:00:00z", datetime(2025, 9, 3, 10, 0), id="lower-case-t-and-z"),
        pytest.param("2025-03-10T23:30:00-02:00", datetime(2025, 3, 11, 1, 30), id="negative-offset-next-day"),
        pytest.param("2025-09-03T10:00:00+05:30", datetime(2025, 9, 3, 4, 30), id="positive-half-hour-offset"),
        pytest.param("2025-09-03T10:00:00", datetime(2025, 9, 3, 10, 0), id="no-offset-is-utc"),
        pytest.param(
            "2025-09-03T10:00:00.123456Z", datetime(2025, 9, 3, 10, 0, 0, 123456), id="microseconds"
        ),
        pytest.param(
            "2025-09-03T10:00:00.5+01:00", datetime(2025, 9, 3, 9, 0, 0, 500000), id="one-digit-fraction"
        ),
        pytest.param(
            "2025-09-03 10:00:00.123+00", datetime(2025, 9, 3, 10, 0, 0, 123000), id="postgresql-utc"
        ),
        pytest.param("2025-09-03 10:00:00-02", datetime(2025, 9, 3, 12, 0), id="postgresql-hour-offset"),
        pytest.param(" 2025-09-03T10:00:00Z\n", datetime(2025, 9, 3, 10, 0), id="surrounding-whitespace"),
    ],
)
def test_parse_timestamp_valid(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)

    assert parsed == expected
    assert parsed.tzinfo is None


@pytest.mark.parametrize(
    ("value", "expected_text"),
    [
        pytest.param("yesterday", "'yesterday'", id="words"),
        pytest.param("", "''", id="empty-string"),
        pytest.param("2025-13-01T00:00:00Z", "'2025-13-01T00:00:00Z'", id="month-13"),
        pytest.param("2025-09-03T25:00:00Z", "'2025-09-03T25:00:00Z'", id="hour-25"),
        pytest.param("2025-09-03T10:00:00Z+00:00", "'2025-09-03T10:00:00Z+00:00'", id="two-offsets"),
        pytest.param(1756893600, "1756893600", id="epoch-int"),
        pytest.param(Decimal("1756893600.5"), "Decimal('1756893600.5')", id="epoch-decimal"),
        pytest.param(None, "None", id="none"),
        pytest.param(datetime(2025, 9, 3), "datetime.datetime(2025, 9, 3, 0, 0)", id="datetime-object"),
    ],
)
def test_parse_timestamp_invalid(value: Any, expected_text: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_timestamp(value)

    assert caught.value.reason == "invalid_created_at"
    assert f"created_at={expected_text}" in caught.value.message


def test_parse_event_created_at_invalid() -> None:
    invalid = parse_invalid(make_record(created_at="03/09/2025 10:00"))

    assert invalid.reason == "invalid_created_at"
    assert "'03/09/2025 10:00'" in invalid.message


def test_parse_event_created_at_offset() -> None:
    event = parse_event(make_record(created_at="2025-03-10T23:30:00-02:00"))

    assert event.created_at == datetime(2025, 3, 11, 1, 30)


# --- required fields ----------------------------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED_FIELDS)
@pytest.mark.parametrize(
    "absent_value",
    [
        pytest.param(KeyError, id="key-absent"),
        pytest.param(None, id="null"),
        pytest.param("", id="empty"),
        pytest.param("  \t", id="whitespace"),
    ],
)
def test_parse_event_required_field_missing(name: str, absent_value: Any) -> None:
    record = dict(MINIMAL_RECORD)
    if absent_value is KeyError:
        del record[name]
    else:
        record[name] = absent_value

    invalid = parse_invalid(record)

    assert invalid.reason == f"missing_{name}"
    assert repr(name) in invalid.message


def test_parse_event_minimal_record() -> None:
    event = parse_event(dict(MINIMAL_RECORD))

    assert event.event_id == "evt-1"
    assert event.created_at == datetime(2025, 9, 3, 10, 0)
    assert event.provider == "openai"
    assert event.operation == "chat"
    assert event.platform == "api"
    assert event.service_tier == "standard"
    assert event.model is None
    assert event.model_name is None


def test_parse_event_strips_strings() -> None:
    event = parse_event(make_record(event_id="  evt-2 ", operation=" chat ", user_id=" u-1 "))

    assert event.event_id == "evt-2"
    assert event.operation == "chat"
    assert event.user_id == "u-1"


def test_parse_event_integer_event_id() -> None:
    event = parse_event(make_record(event_id=42))

    assert event.event_id == "42"


@pytest.mark.parametrize(
    ("name", "value", "expected_text"),
    [
        pytest.param("event_id", {"id": 1}, "event_id={'id': 1}", id="event-id-object"),
        pytest.param("event_id", True, "event_id=True", id="event-id-bool"),
        pytest.param("model", ["gpt-4o"], "model=['gpt-4o']", id="model-list"),
        pytest.param("tool_name", "Ad \ud800", "unpaired surrogate", id="tool-name-lone-surrogate"),
    ],
)
def test_parse_event_string_field_invalid(name: str, value: Any, expected_text: str) -> None:
    invalid = parse_invalid(make_record(**{name: value}))

    assert invalid.reason == f"invalid_{name}"
    assert expected_text in invalid.message


# --- providers, platforms, service tiers ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("openai", ("openai", None), id="openai"),
        pytest.param("OpenAI", ("openai", None), id="openai-mixed-case"),
        pytest.param("Gemini", ("google", None), id="gemini-capitalized"),
        pytest.param("google-genai", ("google", None), id="google-genai"),
        pytest.param("vertex", ("google", "vertex"), id="vertex-implies-platform"),
        pytest.param("VertexAI", ("google", "vertex"), id="vertexai-upper"),
        pytest.param("azure-openai", ("openai", "azure"), id="azure-openai"),
        pytest.param("Azure OpenAI", ("openai", "azure"), id="azure-openai-with-space"),
        pytest.param("claude", ("anthropic", None), id="claude"),
        pytest.param("bedrock", ("aws", "bedrock"), id="bedrock"),
        pytest.param("grok", ("x-ai", None), id="grok"),
        pytest.param(" openrouter ", ("openrouter", "openrouter"), id="openrouter-padded"),
        pytest.param("Acme-AI", ("acme-ai", None), id="unknown-lowercased"),
        pytest.param("Acme AI", ("acme-ai", None), id="unknown-space-to-hyphen"),
    ],
)
def test_normalize_provider_aliases(value: str, expected: tuple[str, str | None]) -> None:
    assert normalize_provider(value) == expected


@pytest.mark.parametrize(
    ("fields", "provider", "platform"),
    [
        pytest.param({"provider": "Gemini"}, "google", "api", id="gemini-on-api"),
        pytest.param({"provider": "vertex"}, "google", "vertex", id="vertex-implies-vertex"),
        pytest.param({"provider": "azure-openai"}, "openai", "azure", id="azure-openai-on-azure"),
        pytest.param({"provider": "Acme-AI"}, "acme-ai", "api", id="unknown-provider-kept"),
        pytest.param({"provider": "openai", "platform": "Azure"}, "openai", "azure", id="explicit-platform"),
        pytest.param({"provider": "vertex", "platform": "api"}, "google", "api", id="explicit-platform-wins"),
    ],
)
def test_parse_event_provider_and_platform(fields: dict[str, Any], provider: str, platform: str) -> None:
    event = parse_event(make_record(**fields))

    assert event.provider == provider
    assert event.platform == platform


def test_parse_event_keeps_provider_as_sent() -> None:
    event = parse_event(make_record(provider="Azure-OpenAI"))

    assert event.provider_as_sent == "Azure-OpenAI"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("api", "api", id="api"),
        pytest.param("Vertex", "vertex", id="vertex-capitalized"),
        pytest.param(" AZURE ", "azure", id="azure-padded-upper"),
        pytest.param("bedrock", "bedrock", id="bedrock"),
        pytest.param("openrouter", "openrouter", id="openrouter"),
    ],
)
def test_normalize_platform_valid(value: str, expected: str) -> None:
    assert normalize_platform(value) == expected


@pytest.mark.parametrize("value", ["gcp", "vertex ai", "Azure-OpenAI"])
def test_normalize_platform_invalid(value: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        normalize_platform(value)

    assert caught.value.reason == "invalid_platform"
    assert f"platform={value!r}" in caught.value.message


def test_parse_event_platform_invalid() -> None:
    invalid = parse_invalid(make_record(platform="gcp"))

    assert invalid.reason == "invalid_platform"
    assert "platform='gcp'" in invalid.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "standard", id="absent"),
        pytest.param("standard", "standard", id="standard"),
        pytest.param("default", "standard", id="default"),
        pytest.param("auto", "standard", id="auto"),
        pytest.param("on_demand", "standard", id="on-demand"),
        pytest.param("Batch", "batch", id="batch-capitalized"),
        pytest.param(" flex ", "flex", id="flex-padded"),
        pytest.param("PRIORITY", "priority", id="priority-upper"),
        pytest.param("on-demand", "standard", id="on-demand-hyphen"),
    ],
)
def test_normalize_service_tier_valid(value: str | None, expected: str) -> None:
    assert normalize_service_tier(value) == expected


@pytest.mark.parametrize(("value", "expected"), [("scale", "scale"), (" Premium ", "premium")])
def test_normalize_service_tier_other_kept(value: str, expected: str) -> None:
    assert normalize_service_tier(value) == expected


def test_parse_event_service_tier_blank() -> None:
    event = parse_event(make_record(service_tier=""))

    assert event.service_tier == "standard"


# --- model names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param("gpt-4o", "gpt-4o", id="plain"),
        pytest.param(" GPT-4o ", "gpt-4o", id="upper-case-padded"),
        pytest.param("models/gemini-2.0-flash", "gemini-2.0-flash", id="genai-sdk-prefix"),
        pytest.param(
            "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro",
            "gemini-2.5-pro",
            id="vertex-resource-path",
        ),
        pytest.param("publishers/google/models/x", "x", id="publisher-path"),
        pytest.param("publishers/anthropic/models/Claude-Sonnet-4", "claude-sonnet-4", id="publisher-upper"),
        pytest.param("openai/gpt-4o", "openai/gpt-4o", id="openrouter-slug-kept"),
        pytest.param("models/", None, id="prefix-only"),
        pytest.param("   ", None, id="blank"),
        pytest.param(None, None, id="none"),
    ],
)
def test_normalize_model_name_cases(model: str | None, expected: str | None) -> None:
    assert normalize_model_name(model) == expected


def test_parse_event_model_and_name() -> None:
    event = parse_event(make_record(provider="vertex", model="publishers/google/models/Gemini-2.5-Pro"))

    assert event.model == "publishers/google/models/Gemini-2.5-Pro"
    assert event.model_name == "gemini-2.5-pro"


# --- token counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(120, 120, id="int"),
        pytest.param(0, 0, id="zero"),
        pytest.param(120.0, 120, id="integral-float"),
        pytest.param(Decimal("120.0"), 120, id="integral-decimal"),
        pytest.param("120", 120, id="digit-string"),
        pytest.param(" 120 ", 120, id="padded-digit-string"),
        pytest.param("120.00", 120, id="integral-decimal-string"),
    ],
)
def test_parse_event_token_count_valid(value: Any, expected: int) -> None:
    event = parse_event(make_record(input_tokens=value))

    assert event.input_tokens == expected
    assert type(event.input_tokens) is int


@pytest.mark.parametrize(
    ("value", "reason", "expected_text"),
    [
        pytest.param(-5, "negative_token_count", "input_tokens=-5", id="negative-int"),
        pytest.param("-5", "negative_token_count", "input_tokens='-5'", id="negative-string"),
        pytest.param(-5.0, "negative_token_count", "input_tokens=-5.0", id="negative-float"),
        pytest.param(1.5, "invalid_token_count", "input_tokens=1.5", id="fraction-float"),
        pytest.param(Decimal("1.5"), "invalid_token_count", "input_tokens=Decimal('1.5')", id="fraction-decimal"),
        pytest.param("1.5", "invalid_token_count", "input_tokens='1.5'", id="fraction-string"),
        pytest.param("-1.5", "invalid_token_count", "input_tokens='-1.5'", id="negative-fraction"),
        pytest.param("twelve", "invalid_token_count", "input_tokens='twelve'", id="word"),
        pytest.param(True, "invalid_token_count", "input_tokens=True", id="bool"),
        pytest.param(float("nan"), "invalid_token_count", "input_tokens=nan", id="nan"),
        pytest.param([12], "invalid_token_count", "input_tokens=[12]", id="list"),
    ],
)
def test_parse_event_token_count_invalid(value: Any, reason: str, expected_text: str) -> None:
    invalid = parse_invalid(make_record(input_tokens=value))

    assert invalid.reason == reason
    assert expected_text in invalid.message


@pytest.mark.parametrize(
    "value",
    [pytest.param("Infinity", id="string"), pytest.param(float("inf"), id="float")],
)
def test_parse_event_token_count_infinite(value: Any) -> None:
    invalid = parse_invalid(make_record(input_tokens=value))

    assert invalid.reason == "invalid_token_count"
    assert "input_tokens=" in invalid.message


def test_parse_event_token_count_other_field() -> None:
    invalid = parse_invalid(make_record(input_tokens=10, reasoning_tokens="-1"))

    assert invalid.reason == "negative_token_count"
    assert "reasoning_tokens='-1'" in invalid.message


def test_parse_event_explicit_tokens() -> None:
    event = parse_event(
        make_record(
            input_tokens=100, cached_input_tokens=30, cache_write_tokens=20, output_tokens=50, reasoning_tokens=10
        )
    )

    assert event.input_tokens == 100
    assert event.cached_input_tokens == 30
    assert event.cache_write_tokens == 20
    assert event.output_tokens == 50
    assert event.reasoning_tokens == 10
    assert event.usage_flavor == "tokens"
    assert event.usage_details is None


def test_parse_event_absent_tokens_zero() -> None:
    event = parse_event(make_record(output_tokens="7", input_tokens=""))

    assert event.input_tokens == 0
    assert event.cached_input_tokens == 0
    assert event.output_tokens == 7


def test_parse_event_csv_row_strings() -> None:
    event = parse_event(
        make_record(
            input_tokens="1200",
            output_tokens="300",
            cached_input_tokens="",
            cost_usd="0.0042",
            units="",
            unit_type="",
            attributes='{"feature": "search"}',
        )
    )

    assert event.input_tokens == 1200
    assert event.output_tokens == 300
    assert event.cached_input_tokens == 0
    assert event.reported_cost_usd == Decimal("0.0042")
    assert event.units is None
    assert event.unit_type is None
    assert event.attributes == {"feature": "search"}


@pytest.mark.parametrize(
    ("fields", "reason", "expected_text"),
    [
        pytest.param(
            {"input_tokens": 10, "cached_input_tokens": 8, "cache_write_tokens": 5},
            "cached_exceeds_input",
            "cached_input_tokens=8 plus cache_write_tokens=5 exceed input_tokens=10",
            id="cached-plus-write-over-input",
        ),
        pytest.param(
            {"cached_input_tokens": 1},
            "cached_exceeds_input",
            "exceed input_tokens=0",
            id="cached-without-input",
        ),
        pytest.param(
            {"output_tokens": 10, "reasoning_tokens": 11},
            "reasoning_exceeds_output",
            "reasoning_tokens=11 exceed output_tokens=10",
            id="reasoning-over-output",
        ),
    ],
)
def test_parse_event_token_invariants(fields: dict[str, Any], reason: str, expected_text: str) -> None:
    invalid = parse_invalid(make_record(**fields))

    assert invalid.reason == reason
    assert expected_text in invalid.message


def test_parse_event_cached_equals_input() -> None:
    event = parse_event(make_record(input_tokens=10, cached_input_tokens=6, cache_write_tokens=4))

    assert event.cached_input_tokens == 6


def test_parse_event_explicit_usage_details() -> None:
    event = parse_event(make_record(input_tokens=10, usage_details='{"input_audio_tokens": 4}'))

    assert event.usage_details == {"input_audio_tokens": 4}


def test_parse_event_usage_details_negative() -> None:
    invalid = parse_invalid(make_record(input_tokens=10, usage_details={"input_audio_tokens": -4}))

    assert invalid.reason == "negative_token_count"
    assert "usage_details.input_audio_tokens=-4" in invalid.message


def test_parse_event_usage_details_with_total() -> None:
    event = parse_event(make_record(input_tokens=10, usage_details={"input_audio_tokens": 4}))

    assert event.usage_details == {"input_audio_tokens": 4}


def test_parse_event_usage_details_exceed_total() -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_event(make_record(usage_details={"input_audio_tokens": 4}))

    assert raised.value.reason == "detail_exceeds_total"
    assert "input_audio_tokens=4" in raised.value.message


# --- usage payloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"provider": "openai", "usage": OPENAI_CHAT_USAGE},
            {"input": 100, "cached": 40, "write": 0, "output": 50, "reasoning": 10, "flavor": "openai-chat"},
            id="openai-chat-cached",
        ),
        pytest.param(
            {"provider": "Gemini", "usage": GEMINI_USAGE},
            {"input": 100, "cached": 0, "write": 0, "output": 70, "reasoning": 20, "flavor": "gemini"},
            id="gemini-thoughts",
        ),
        pytest.param(
            {"provider": "anthropic", "usage": ANTHROPIC_USAGE},
            {"input": 170, "cached": 50, "write": 20, "output": 30, "reasoning": 0, "flavor": "anthropic"},
            id="anthropic-cache-read-write",
        ),
        pytest.param(
            {"provider": "openai", "usage": '{"prompt_tokens": 12, "completion_tokens": 3}'},
            {"input": 12, "cached": 0, "write": 0, "output": 3, "reasoning": 0, "flavor": "openai-chat"},
            id="json-string-as-in-csv",
        ),
        pytest.param(
            {"provider": "openai", "usage": OPENAI_CHAT_USAGE, "input_tokens": 100, "output_tokens": "50"},
            {"input": 100, "cached": 40, "write": 0, "output": 50, "reasoning": 10, "flavor": "openai-chat"},
            id="matching-explicit-counts",
        ),
    ],
)
def test_parse_event_usage_payload(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    event = parse_event(make_record(**fields))

    assert event.input_tokens == expected["input"]
    assert event.cached_input_tokens == expected["cached"]
    assert event.cache_write_tokens == expected["write"]
    assert event.output_tokens == expected["output"]
    assert event.reasoning_tokens == expected["reasoning"]
    assert event.usage_flavor == expected["flavor"]


def test_parse_event_keeps_usage_payload() -> None:
    event = parse_event(make_record(provider="anthropic", usage=ANTHROPIC_USAGE))

    assert event.usage_payload == ANTHROPIC_USAGE


@pytest.mark.parametrize(
    ("fields", "expected_text"),
    [
        pytest.param(
            {"provider": "gemini", "usage": GEMINI_USAGE, "output_tokens": 50},
            "output_tokens=50 disagrees with 70",
            id="gemini-output-without-thoughts",
        ),
        pytest.param(
            {"provider": "anthropic", "usage": ANTHROPIC_USAGE, "input_tokens": 100},
            "input_tokens=100 disagrees with 170",
            id="anthropic-input-without-cache",
        ),
        pytest.param(
            {"provider": "openai", "usage": OPENAI_CHAT_USAGE, "cached_input_tokens": "0"},
            "cached_input_tokens=0 disagrees with 40",
            id="openai-cached-string",
        ),
    ],
)
def test_parse_event_tokens_disagree(fields: dict[str, Any], expected_text: str) -> None:
    invalid = parse_invalid(make_record(**fields))

    assert invalid.reason == "tokens_disagree_with_usage"
    assert expected_text in invalid.message


@pytest.mark.parametrize(
    ("usage", "expected_text"),
    [
        pytest.param("[1]", "usage=[1]", id="json-list"),
        pytest.param(42, "usage=42", id="number"),
        pytest.param({"foo": 1}, "keys [foo]", id="unknown-shape"),
        pytest.param({"prompt_tokens": "12", "completion_tokens": 3}, "prompt_tokens", id="string-count"),
        # The payload's own check runs first, so this is invalid_usage, not cached_exceeds_input.
        pytest.param(
            {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 40}},
            "cached input tokens (40)",
            id="cached-over-input",
        ),
    ],
)
def test_parse_event_usage_invalid(usage: Any, expected_text: str) -> None:
    invalid = parse_invalid(make_record(usage=usage))

    assert invalid.reason == "invalid_usage"
    assert expected_text in invalid.message


# --- units, cost, attributes, extra fields ---------------------------------------------------


def test_parse_event_units_largest_allowed() -> None:
    event = parse_event(make_record(units="999999999999.5", unit_type="images"))

    assert event.units == Decimal("999999999999.500000")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("1000000000000", "invalid_units", id="too-large"),
        pytest.param("0.0000001", "invalid_units", id="too-many-decimals"),
    ],
)
def test_parse_event_units_invalid(value: str, reason: str) -> None:
    invalid = parse_invalid(make_record(units=value, unit_type="images"))

    assert invalid.reason == reason
    assert repr(value) in invalid.message


def test_parse_event_units_and_type() -> None:
    event = parse_event(make_record(operation="generate_video", units="8.5", unit_type="Video_Seconds"))

    assert event.units == Decimal("8.5")
    assert event.units.as_tuple().exponent == -6
    assert event.unit_type == "video_seconds"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"units": 8}, id="units-without-type"),
        pytest.param({"units": "8", "unit_type": ""}, id="units-with-blank-type"),
        pytest.param({"unit_type": "images"}, id="type-without-units"),
    ],
)
def test_parse_event_units_unpaired(fields: dict[str, Any]) -> None:
    invalid = parse_invalid(make_record(**fields))

    assert invalid.reason == "units_without_unit_type"
    assert f"units={fields.get('units')!r}" in invalid.message
    assert f"unit_type={fields.get('unit_type')!r}" in invalid.message


@pytest.mark.parametrize(
    ("value", "reason", "expected_text"),
    [
        pytest.param("-2", "negative_units", "units='-2'", id="negative"),
        pytest.param("eight", "invalid_units", "units='eight'", id="word"),
    ],
)
def test_parse_event_units_invalid(value: Any, reason: str, expected_text: str) -> None:
    invalid = parse_invalid(make_record(units=value, unit_type="images"))

    assert invalid.reason == reason
    assert expected_text in invalid.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0.00000008", Decimal("0.000000080000"), id="tiny-string"),
        pytest.param(Decimal("0.00000008"), Decimal("0.000000080000"), id="tiny-decimal"),
        pytest.param(0.1, Decimal("0.100000000000"), id="float-by-repr"),
        pytest.param(2, Decimal("2.000000000000"), id="int"),
        pytest.param("0", Decimal("0.000000000000"), id="zero"),
        pytest.param("0.0000000000005", Decimal("0.000000000000"), id="half-even-down"),
        pytest.param("0.0000000000015", Decimal("0.000000000002"), id="half-even-up"),
        pytest.param("123456789012", Decimal("123456789012.000000000000"), id="twelve-digits"),
        pytest.param("9" * 12 + ".5", Decimal("9" * 12 + ".500000000000"), id="largest-size-allowed"),
    ],
)
def test_parse_event_cost_exact(value: Any, expected: Decimal) -> None:
    event = parse_event(make_record(cost_usd=value))

    assert event.reported_cost_usd == expected
    assert event.reported_cost_usd.as_tuple().exponent == -12


def test_parse_event_cost_below_limit() -> None:
    event = parse_event(make_record(cost_usd="123456789012.0000000000005"))

    assert event.reported_cost_usd == Decimal("123456789012.000000000000")


@pytest.mark.parametrize(
    ("value", "reason", "expected_text"),
    [
        pytest.param("-0.5", "negative_cost_usd", "cost_usd='-0.5'", id="negative"),
        pytest.param(-1, "negative_cost_usd", "cost_usd=-1", id="negative-int"),
        pytest.param("free", "invalid_cost_usd", "cost_usd='free'", id="word"),
        pytest.param("NaN", "invalid_cost_usd", "cost_usd='NaN'", id="nan"),
        pytest.param("Infinity", "invalid_cost_usd", "cost_usd='Infinity'", id="infinity"),
        pytest.param("1e30", "invalid_cost_usd", "cost_usd='1e30'", id="too-large"),
        pytest.param("1e12", "invalid_cost_usd", "cost_usd='1e12'", id="trillion"),
        pytest.param(True, "invalid_cost_usd", "cost_usd=True", id="bool"),
    ],
)
def test_parse_event_cost_invalid(value: Any, reason: str, expected_text: str) -> None:
    invalid = parse_invalid(make_record(cost_usd=value))

    assert invalid.reason == reason
    assert expected_text in invalid.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"feature": "search", "retries": 2}, {"feature": "search", "retries": 2}, id="object"),
        pytest.param('{"feature": "search"}', {"feature": "search"}, id="json-string"),
        pytest.param('{"share": 0.25}', {"share": Decimal("0.25")}, id="json-string-decimal"),
        pytest.param("", None, id="blank"),
        pytest.param(None, None, id="null"),
    ],
)
def test_parse_event_attributes_valid(value: Any, expected: dict[str, Any] | None) -> None:
    event = parse_event(make_record(attributes=value))

    assert event.attributes == expected


@pytest.mark.parametrize(
    ("value", "expected_text"),
    [
        pytest.param([1, 2], "attributes=[1, 2]", id="list"),
        pytest.param("[1, 2]", "attributes=[1, 2]", id="json-list-string"),
        pytest.param('"text"', "attributes='text'", id="json-string-scalar"),
        pytest.param(5, "attributes=5", id="number"),
        pytest.param("{not json", "attributes='{not json'", id="invalid-json"),
    ],
)
def test_parse_event_attributes_invalid(value: Any, expected_text: str) -> None:
    invalid = parse_invalid(make_record(attributes=value))

    assert invalid.reason == "invalid_attributes"
    assert expected_text in invalid.message


def test_parse_event_extra_fields_kept() -> None:
    event = parse_event(make_record(region="eu-west-1", retry={"attempt": 2}, model="gpt-4o", metadata={"k": 1}))

    assert event.extra_fields == {"region": "eu-west-1", "retry": {"attempt": 2}}
    assert event.metadata == {"k": 1}


def test_parse_event_no_extra_fields() -> None:
    event = parse_event(dict(MINIMAL_RECORD))

    assert event.extra_fields == {}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, False, id="nothing"),
        pytest.param({"model": "gpt-4o", "cost_usd": "0.01"}, False, id="cost-only"),
        pytest.param({"input_tokens": 0}, True, id="zero-tokens"),
        pytest.param({"output_tokens": "5"}, True, id="output-tokens"),
        pytest.param({"usage": {"prompt_tokens": 3}}, True, id="usage-payload"),
        pytest.param({"units": 1, "unit_type": "images"}, True, id="units"),
    ],
)
def test_usage_event_has_usage(fields: dict[str, Any], expected: bool) -> None:
    assert parse_event(make_record(**fields)).has_usage is expected


# --- JSON lines and event ids ---------------------------------------------------------------


def test_parse_json_line_object() -> None:
    record = parse_json_line('{"event_id": "e1", "input_tokens": 12, "cost_usd": 0.00000008}')

    assert record == {"event_id": "e1", "input_tokens": 12, "cost_usd": Decimal("0.00000008")}
    assert type(record["input_tokens"]) is int
    assert type(record["cost_usd"]) is Decimal


@pytest.mark.parametrize(
    ("text", "reason", "expected_text"),
    [
        pytest.param('{"event_id": ', "invalid_json", "column 14", id="truncated"),
        pytest.param("{'a': 1}", "invalid_json", "column 2", id="single-quotes"),
        pytest.param("", "invalid_json", "column 1", id="empty"),
        pytest.param("[1, 2]", "not_an_object", "got list", id="array"),
        pytest.param('"text"', "not_an_object", "got str", id="string"),
        pytest.param("12.5", "not_an_object", "got Decimal", id="number"),
        pytest.param("null", "not_an_object", "got NoneType", id="null"),
        pytest.param('{"metadata": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid_json", "nested deeper",
                     id="nested-too-deep"),
    ],
)
def test_parse_json_line_invalid(text: str, reason: str, expected_text: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_json_line(text)

    assert caught.value.reason == reason
    assert expected_text in caught.value.message


def test_token_usage_event_id_format() -> None:
    assert token_usage_event_id("12345") == "token_usage:12345"


def test_derived_event_id_format() -> None:
    assert re.fullmatch(r"derived:[0-9a-f]{32}", derived_event_id('{"a": 1}', 3))


def test_derived_event_id_stable() -> None:
    assert derived_event_id('{"a": 1}', 3) == derived_event_id('{"a": 1}', 3)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(('{"a": 1}', 3), ('{"a": 1}', 4), id="same-text-other-line"),
        pytest.param(('{"a": 1}', 3), ('{"a": 2}', 3), id="other-text-same-line"),
    ],
)
def test_derived_event_id_differs(first: tuple[str, int], second: tuple[str, int]) -> None:
    assert derived_event_id(*first) != derived_event_id(*second)


@pytest.mark.parametrize("value", ["2025-09-03", "20250903T100000Z", "10:00:00"])
def test_parse_timestamp_rejects_non_rfc3339(value: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_timestamp(value)

    assert raised.value.reason == "invalid_created_at"
    assert repr(value) in raised.value.message


def test_normalize_model_name_upper_case_prefix() -> None:
    assert normalize_model_name("MODELS/GEMINI-2.0-FLASH") == "gemini-2.0-flash"


def test_parse_event_details_disagree_with_usage() -> None:
    record = make_record(
        provider="openai",
        usage=OPENAI_CHAT_USAGE,
        usage_details={"input_audio_tokens": 7},
    )

    with pytest.raises(InvalidEvent) as raised:
        parse_event(record)

    assert raised.value.reason == "tokens_disagree_with_usage"
    assert "input_audio_tokens=7" in raised.value.message


@pytest.mark.parametrize("value", [10**15 + 1, 2**63, "9223372036854775808"])
def test_parse_event_token_count_above_limit(value: Any) -> None:
    invalid = parse_invalid(make_record(input_tokens=value, output_tokens=1))

    assert invalid.reason == "invalid_token_count"
    assert "10^15" in invalid.message


def test_parse_event_unknown_usage_key() -> None:
    invalid = parse_invalid(make_record(input_tokens=10, usage_details={"cache_write_1h_token": 4}))

    assert invalid.reason == "unknown_usage_key"
    assert "cache_write_1h_token" in invalid.message


def test_parse_event_csv_payload_text_parsed() -> None:
    event = parse_event(make_record(
        provider="openai",
        usage='{"prompt_tokens": 10, "completion_tokens": 2}',
        metadata='{"app_version": "1.2"}',
    ))

    assert event.usage_payload == {"prompt_tokens": 10, "completion_tokens": 2}
    assert event.metadata == {"app_version": "1.2"}


def test_parse_event_blank_metadata_none() -> None:
    assert parse_event(make_record(metadata="")).metadata is None


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:45", "9999-12-31T23:00:00-05:00"])
def test_parse_timestamp_out_of_range(value: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_timestamp(value)

    assert raised.value.reason == "invalid_created_at"
