"""Tests of the Great Expectations suite for chunks of parsed usage events, run on real GX."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from ingest.validation import (
    OUTSIDE_CATALOG,
    UNKNOWN_SERVICE_TIER,
    ChunkValidation,
    ChunkValidationError,
    ChunkValidator,
    build_usage_event_suite,
    default_validator,
    merge_summaries,
    validate_chunk,
)
from ingest.warehouse.base import USAGE_EVENT_SCHEMA

NOW = datetime(2026, 3, 1, 12, 0, 0)

CACHED_PAIR = "expect_column_pair_values_a_to_be_greater_than_b(input_tokens, cached_plus_cache_write_tokens)"
REASONING_PAIR = "expect_column_pair_values_a_to_be_greater_than_b(output_tokens, reasoning_tokens)"


def between(column: str) -> str:
    return f"expect_column_values_to_be_between({column})"


def not_null(column: str) -> str:
    return f"expect_column_values_to_not_be_null({column})"


def event_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": "evt-good",
        "created_at": NOW - timedelta(hours=1),
        "provider": "openai",
        "provider_as_sent": "openai",
        "operation": "analyze_text",
        "platform": "api",
        "model": "gpt-4o",
        "model_name": "gpt-4o",
        "catalog_provider_id": "openai",
        "price_provider_id": "openai",
        "catalog_model_id": "gpt-4o",
        "model_resolution": "matched",
        "service_tier": "standard",
        "input_tokens": 1200,
        "cached_input_tokens": 200,
        "cache_write_tokens": 100,
        "output_tokens": 300,
        "reasoning_tokens": 50,
        "usage_flavor": "tokens",
        "reported_cost_usd": Decimal("0.004"),
        "usage_payload": json.dumps({"prompt_tokens": 1200, "completion_tokens": 300}),
        "has_usage": True,
        "batch_id": "batch-1",
        "source_file": "events.jsonl",
        "line_number": 1,
        "loaded_at": NOW,
    }
    row.update(overrides)
    return row


def chunk(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=USAGE_EVENT_SCHEMA)


@pytest.fixture(scope="module")
def validator() -> ChunkValidator:
    return ChunkValidator()


def run(validator: ChunkValidator, rows: list[dict[str, Any]], now: datetime = NOW) -> ChunkValidation:
    return validator.validate(chunk(rows), build_usage_event_suite(now))


# Each case: the fields that break the good row, and the expectations the row must fail.
FAILING_CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("missing event id", {"event_id": None}, {not_null("event_id")}),
    ("missing created_at", {"created_at": None}, {not_null("created_at")}),
    ("missing provider", {"provider": None}, {not_null("provider")}),
    ("missing operation", {"operation": None}, {not_null("operation")}),
    ("negative output", {"output_tokens": -5, "reasoning_tokens": None}, {between("output_tokens")}),
    ("negative cached", {"cached_input_tokens": -1}, {between("cached_input_tokens")}),
    ("negative cache write", {"cache_write_tokens": -1}, {between("cache_write_tokens")}),
    ("negative reasoning", {"reasoning_tokens": -1}, {between("reasoning_tokens")}),
    ("input above 10^15", {"input_tokens": 10**15 + 1}, {between("input_tokens")}),
    ("negative input", {"input_tokens": -1, "cached_input_tokens": 0, "cache_write_tokens": 0},
     {between("input_tokens"), CACHED_PAIR}),
    ("cached above input", {"cached_input_tokens": 1150}, {CACHED_PAIR}),
    ("cached alone above input", {"cached_input_tokens": 1300, "cache_write_tokens": None}, {CACHED_PAIR}),
    ("reasoning above output", {"reasoning_tokens": 301}, {REASONING_PAIR}),
    ("negative units", {"units": Decimal("-1"), "unit_type": "images"}, {between("units")}),
    ("negative cost", {"reported_cost_usd": Decimal("-0.01")}, {between("reported_cost_usd")}),
    ("far-future created_at", {"created_at": NOW + timedelta(days=365)}, {between("created_at")}),
    ("unknown platform", {"platform": "moon"}, {"expect_column_values_to_be_in_set(platform)"}),
]


@pytest.mark.parametrize(("overrides", "expected"), [case[1:] for case in FAILING_CASES],
                         ids=[case[0] for case in FAILING_CASES])
def test_broken_row_fails_named_expectations(
    validator: ChunkValidator, overrides: dict[str, Any], expected: set[str]
) -> None:
    result = run(validator, [event_row(), event_row(**{"event_id": "evt-bad", **overrides}), event_row()])

    assert result.passed_mask.to_pylist() == [True, False, True]
    assert set(result.failures) == {1}
    assert {failure.expectation for failure in result.failures[1]} == expected
    assert result.summary["success"] is False
    assert result.summary["rows_failed"] == 1
    for name in expected:
        assert result.summary["unexpected_counts"][name] == 1


def test_mixed_chunk_fails_exactly_broken_rows(validator: ChunkValidator) -> None:
    rows = [
        event_row(event_id="good-1"),
        event_row(event_id="negative", input_tokens=-7, cached_input_tokens=0, cache_write_tokens=0),
        event_row(event_id="good-2"),
        event_row(event_id="cached", cached_input_tokens=1100, cache_write_tokens=200),
        event_row(event_id="reasoning", reasoning_tokens=400),
        event_row(event_id="future", created_at=NOW + timedelta(hours=2)),
        event_row(event_id="platform", platform="mainframe"),
        event_row(event_id="unknown-model", catalog_model_id=None, model_resolution="unknown_model"),
    ]

    result = run(validator, rows)

    assert result.passed_mask.to_pylist() == [True, False, True, False, False, False, False, True]
    assert {row: sorted(failure.expectation for failure in failures) for row, failures in result.failures.items()} == {
        1: sorted([between("input_tokens"), CACHED_PAIR]),
        3: [CACHED_PAIR],
        4: [REASONING_PAIR],
        5: [between("created_at")],
        6: ["expect_column_values_to_be_in_set(platform)"],
    }
    assert result.summary["rows"] == 8
    assert result.summary["rows_passed"] == 3
    assert result.summary["rows_failed"] == 5
    assert result.summary[OUTSIDE_CATALOG] == 1


def test_failure_messages_show_values(validator: ChunkValidator) -> None:
    rows = [
        event_row(input_tokens=-7, cached_input_tokens=0, cache_write_tokens=0),
        event_row(cached_input_tokens=1100, cache_write_tokens=200),
        event_row(reasoning_tokens=400),
        event_row(created_at=datetime(2027, 1, 2, 3, 4, 5)),
        event_row(platform="mainframe"),
    ]

    result = run(validator, rows)

    messages = {row: result.failure_message(row) for row in range(len(rows))}
    assert "input_tokens=-7 is outside 0 to 10^15 tokens" in messages[0]
    assert "cached_input_tokens=1100 plus cache_write_tokens=200 exceed input_tokens=1200" in messages[1]
    assert "reasoning_tokens=400 exceed output_tokens=300" in messages[2]
    assert "created_at=2027-01-02T03:04:05 is later than 2026-03-01T12:10:00" in messages[3]
    assert "platform='mainframe' is not one of api, azure, bedrock, openrouter, vertex" in messages[4]
    assert messages[4].startswith("expect_column_values_to_be_in_set(platform): ")


def test_outside_catalog_rows_pass_and_count(validator: ChunkValidator) -> None:
    rows = [
        event_row(),
        event_row(provider="newcorp", catalog_provider_id=None, catalog_model_id=None, model_resolution="unknown_provider"),
        event_row(model="gpt-99", catalog_model_id=None, model_resolution="unknown_model"),
        event_row(model=None, model_name=None, catalog_model_id=None, model_resolution="no_model"),
    ]

    result = run(validator, rows)

    assert result.passed_mask.to_pylist() == [True, True, True, True]
    assert result.failures == {}
    assert result.flagged[OUTSIDE_CATALOG] == [1, 2, 3]
    assert result.summary[OUTSIDE_CATALOG] == 3
    assert result.summary["success"] is True


def test_unknown_service_tier_is_flagged(validator: ChunkValidator) -> None:
    result = run(validator, [event_row(service_tier="scale"), event_row(service_tier="batch")])

    assert result.passed_mask.to_pylist() == [True, True]
    assert result.flagged[UNKNOWN_SERVICE_TIER] == [0]
    assert result.summary[UNKNOWN_SERVICE_TIER] == 1


def test_all_good_chunk_passes(validator: ChunkValidator) -> None:
    no_usage = {name: None for name in
                ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")}
    rows = [
        event_row(event_id="tokens"),
        event_row(event_id="no-usage", reported_cost_usd=None, has_usage=False, **no_usage),
        event_row(event_id="video", units=Decimal("8"), unit_type="video_seconds", reported_cost_usd=Decimal("3.2"),
                  **no_usage),
        event_row(event_id="limit", input_tokens=10**15, cached_input_tokens=10**15, cache_write_tokens=0),
        event_row(event_id="edge", created_at=NOW + timedelta(minutes=10), platform="bedrock"),
    ]

    result = run(validator, rows)

    assert result.passed_mask.to_pylist() == [True] * 5
    assert result.failures == {}
    assert result.summary["success"] is True
    assert result.summary["rows_passed"] == 5
    assert set(result.summary["unexpected_counts"].values()) == {0}


def test_future_tolerance_sets_bound(validator: ChunkValidator) -> None:
    rows = [event_row(created_at=NOW + timedelta(minutes=30))]
    suite = build_usage_event_suite(NOW.replace(tzinfo=UTC), future_tolerance=timedelta(hours=1))

    assert validator.validate(chunk(rows), suite).passed_mask.to_pylist() == [True]
    assert run(validator, rows).passed_mask.to_pylist() == [False]


def test_summary_is_json_serializable(validator: ChunkValidator) -> None:
    result = run(validator, [event_row(), event_row(input_tokens=-1), event_row(catalog_model_id=None)])

    decoded = json.loads(json.dumps(result.summary))

    assert decoded == result.summary
    assert decoded["gx_version"] == "1.24.1"


def test_merge_summaries_adds_chunks(validator: ChunkValidator) -> None:
    first = run(validator, [event_row(), event_row(input_tokens=-1, cached_input_tokens=0, cache_write_tokens=0)])
    second = run(validator, [event_row(catalog_model_id=None), event_row(reasoning_tokens=999)])

    merged = merge_summaries([first.summary, second.summary])

    assert json.loads(json.dumps(merged)) == merged
    assert merged["success"] is False
    assert merged["chunks"] == 2
    assert merged["rows"] == 4
    assert merged["rows_passed"] == 2
    assert merged["rows_failed"] == 2
    assert merged[OUTSIDE_CATALOG] == 1
    assert merged["unexpected_counts"][between("input_tokens")] == 1
    assert merged["unexpected_counts"][REASONING_PAIR] == 1


def test_merge_summaries_of_nothing_succeeds() -> None:
    merged = merge_summaries([])

    assert merged["success"] is True
    assert merged["rows"] == 0
    assert merged["unexpected_counts"] == {}


def test_missing_column_raises(validator: ChunkValidator) -> None:
    table = chunk([event_row()]).drop_columns(["platform"])

    with pytest.raises(ChunkValidationError, match="no column platform"):
        validator.validate(table, build_usage_event_suite(NOW))


def test_validate_chunk_reuses_default_validator() -> None:
    suite = build_usage_event_suite(NOW)

    first = validate_chunk(chunk([event_row()]), suite)
    shared = default_validator()
    second = validate_chunk(chunk([event_row(input_tokens=-1)]), suite)

    assert first.summary["success"] is True
    assert second.summary["success"] is False
    assert default_validator() is shared


def test_validation_opens_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def reject(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", reject)
    monkeypatch.setattr(socket.socket, "connect_ex", reject)
    monkeypatch.setattr(socket, "create_connection", reject)
    monkeypatch.setattr(socket, "getaddrinfo", reject)

    validator = ChunkValidator()
    result = validator.validate(chunk([event_row(), event_row(platform="moon")]), build_usage_event_suite(NOW))

    assert result.passed_mask.to_pylist() == [True, False]
    assert os.environ["GX_ANALYTICS_ENABLED"] == "False"
    assert validator.context.config.analytics_enabled is False
    assert not validator.context.config.data_docs_sites
