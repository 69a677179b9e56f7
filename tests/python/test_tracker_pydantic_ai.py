"""Tests for the PydanticAI integration: one usage event per model request, priced per request.

Agents run on pydantic-ai's own `FunctionModel` and `TestModel`, so no test touches the network.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from ingest.events import parse_event
from ingest.tracker import Tracker, TrackingContext
from ingest.tracker.pydantic_ai import (
    record_agent_run,
    resolve_provider,
    run_tracked,
    run_tracked_sync,
    usage_token_fields,
)
from conftest import PROJECT_DIR, query, run_cli

CONTEXT = TrackingContext(
    user_id="u-1", organization_id="org-1", tool_name="Brand Research", service="BrandService", run_id="app-run"
)


def spool_events(spool_dir: Path) -> list[dict[str, Any]]:
    """Return every event of the closed segments, in the order written."""
    events = []
    for segment in sorted(spool_dir.glob("*.jsonl")):
        events.extend(json.loads(line) for line in segment.read_text(encoding="utf-8").splitlines())
    return events


def tool_then_answer_model(model_name: str = "gemini-2.5-pro") -> FunctionModel:
    """A model whose first request calls `lookup` twice and whose second request returns text."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        responses_so_far = sum(isinstance(message, ModelResponse) for message in messages)
        if responses_so_far == 0:
            return ModelResponse(
                parts=[ToolCallPart("lookup", {"query": "brand"}), ToolCallPart("lookup", {"query": "rivals"})],
                usage=RequestUsage(input_tokens=1200, cache_read_tokens=200, cache_write_tokens=100, output_tokens=40),
                model_name=model_name,
                provider_response_id="resp-first",
            )
        return ModelResponse(
            parts=[TextPart("The brand is strong.")],
            usage=RequestUsage(input_tokens=1500, output_tokens=300, output_reasoning_tokens=120),
            model_name=model_name,
        )

    return FunctionModel(respond, model_name=model_name)


def research_agent(model: FunctionModel | TestModel) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(model, name="brand_research")

    @agent.tool_plain
    def lookup(query: str) -> str:
        return f"notes on {query}"

    return agent


# --- usage and provider mapping (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            RequestUsage(input_tokens=1000, cache_read_tokens=600, cache_write_tokens=100, output_tokens=50),
            {"input_tokens": 1000, "cached_input_tokens": 600, "cache_write_tokens": 100, "output_tokens": 50},
        ),
        (
            RequestUsage(input_tokens=10, output_tokens=90, output_reasoning_tokens=70),
            {"input_tokens": 10, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 90,
             "reasoning_tokens": 70},
        ),
        (
            RequestUsage(input_tokens=10, output_tokens=90, details={"reasoning_tokens": 30}),
            {"input_tokens": 10, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 90,
             "reasoning_tokens": 30},
        ),
        (
            RequestUsage(input_tokens=10, output_tokens=5, output_reasoning_tokens=6),
            {"input_tokens": 10, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 5},
        ),
        (
            RequestUsage(input_tokens=500, input_audio_tokens=200, cache_write_tokens=300, cache_write_1h_tokens=300,
                         output_tokens=8),
            {"input_tokens": 500, "cached_input_tokens": 0, "cache_write_tokens": 300, "output_tokens": 8,
             "usage_details": {"input_audio_tokens": 200, "cache_write_1h_tokens": 300}},
        ),
        (RequestUsage(input_tokens=10, output_tokens=5, unmeasured_requests=1), {}),
        (None, {}),
    ],
    ids=["cache", "reasoning", "reasoning-in-details", "reasoning-above-output", "audio-and-1h", "unmeasured", "none"],
)
def test_usage_token_fields(usage: RequestUsage | None, expected: dict[str, Any]) -> None:
    assert usage_token_fields(usage) == expected


@pytest.mark.parametrize(
    ("provider_name", "canonical_system", "fallback", "model_id", "model", "expected"),
    [
        ("google", "google", None, None, "gemini-2.5-pro", ("google", "api")),
        ("google", "google-cloud", None, None, "gemini-2.5-pro", ("google", "vertex")),
        ("google-cloud", None, None, None, "gemini-2.5-pro", ("google", "vertex")),
        ("google-gla", None, None, None, "gemini-2.0-flash", ("google", "api")),
        ("google-vertex", None, None, None, "gemini-2.0-flash", ("google", "vertex")),
        ("openai", "azure", None, None, "gpt-5", ("openai", "azure")),
        ("azure", None, None, None, "gpt-5", ("openai", "azure")),
        ("bedrock", None, None, None, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", ("anthropic", "bedrock")),
        ("bedrock", None, None, None, "amazon.nova-pro-v1:0", ("aws", "bedrock")),
        ("openrouter", None, None, None, "openai/gpt-5", ("openrouter", "openrouter")),
        ("Anthropic", None, "google", None, "claude-sonnet-4-5", ("anthropic", "api")),
        ("function", None, "google-vertex", None, "gemini-2.5-pro", ("google", "vertex")),
        (None, None, None, "openai:gpt-5", "gpt-5-2025-08-07", ("openai", "api")),
        (None, None, None, "function:respond", "claude-haiku-4-5", ("anthropic", "api")),
        ("test", None, None, "test", "gemini-2.5-flash", ("google", "api")),
    ],
)
def test_resolve_provider(
    provider_name: str | None,
    canonical_system: str | None,
    fallback: str | None,
    model_id: str | None,
    model: str,
    expected: tuple[str, str],
) -> None:
    resolved = resolve_provider(
        provider_name, canonical_system=canonical_system, fallback=fallback, model_id=model_id, model=model
    )

    assert resolved == expected


def test_resolve_provider_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="pass provider="):
        resolve_provider("test", model_id="test", model="test")


# --- recording runs ----------------------------------------------------------------------------


def test_run_records_one_event_per_request(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    result = research_agent(tool_then_answer_model()).run_sync("Research the brand")

    event_ids = record_agent_run(tracker, result, CONTEXT, agent_name="brand_research", provider="google")
    tracker.close()
    events = spool_events(tmp_path)

    assert len(event_ids) == 2
    assert [event["event_id"] for event in events] == event_ids
    first, second = events
    assert first["request_id"] == "resp-first"
    assert second["request_id"] == f"{result.run_id}/2"
    assert {event["run_id"] for event in events} == {result.run_id}
    assert {event["provider"] for event in events} == {"google"}
    assert {event["platform"] for event in events} == {"api"}
    assert {event["model"] for event in events} == {"gemini-2.5-pro"}
    assert {event["operation"] for event in events} == {"agent_run"}
    assert {event["tool_name"] for event in events} == {"brand_research"}
    assert {event["organization_id"] for event in events} == {"org-1"}
    assert (first["input_tokens"], first["cached_input_tokens"], first["cache_write_tokens"]) == (1200, 200, 100)
    assert first["output_tokens"] == 40
    assert "reasoning_tokens" not in first
    assert (second["input_tokens"], second["output_tokens"], second["reasoning_tokens"]) == (1500, 300, 120)
    assert first["metadata"] == {"request_index": 1, "tool_calls": {"lookup": 2}}
    assert second["metadata"] == {"request_index": 2}


def test_run_events_pass_ingest_validation(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    result = research_agent(tool_then_answer_model()).run_sync("Research the brand")

    record_agent_run(tracker, result, CONTEXT, agent_name="brand_research", provider="google")
    tracker.close()

    for event in spool_events(tmp_path):
        parsed = parse_event(event)
        assert parsed.provider == "google"
        assert parsed.run_id == result.run_id
        assert parsed.cached_input_tokens is not None
        assert parsed.cached_input_tokens <= parsed.input_tokens  # type: ignore[operator]


def test_history_responses_not_recorded_again(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    agent = research_agent(tool_then_answer_model())
    first = agent.run_sync("Research the brand")

    second = agent.run_sync("And the rivals?", message_history=first.all_messages())
    record_agent_run(tracker, second, CONTEXT, agent_name="brand_research", provider="google")
    tracker.close()
    events = spool_events(tmp_path)

    assert len(events) == 1
    assert events[0]["run_id"] == second.run_id
    assert events[0]["request_id"] == f"{second.run_id}/1"


def test_test_model_uses_provider_argument(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    result = research_agent(TestModel()).run_sync("Research the brand")

    event_ids = record_agent_run(tracker, result, CONTEXT, agent_name="brand_research", provider="openai")
    tracker.close()
    events = spool_events(tmp_path)

    assert len(event_ids) == 2  # TestModel calls every tool once, then returns text.
    assert {event["provider"] for event in events} == {"openai"}
    assert events[0]["metadata"]["tool_calls"] == {"lookup": 1}


def test_run_tracked_sync_records_and_returns(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    agent = research_agent(tool_then_answer_model())

    result = run_tracked_sync(agent, "Research the brand", tracker, CONTEXT, provider="google")
    tracker.close()
    events = spool_events(tmp_path)

    assert result.output == "The brand is strong."
    assert len(events) == 2
    assert {event["tool_name"] for event in events} == {"brand_research"}
    assert tracker.stats.recorded == 2


def test_run_tracked_async_records_and_returns(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    agent = research_agent(tool_then_answer_model())

    result = asyncio.run(run_tracked(agent, "Research the brand", tracker, CONTEXT, agent_name="comics"))
    tracker.close()
    events = spool_events(tmp_path)

    assert result.output == "The brand is strong."
    assert [event["tool_name"] for event in events] == ["comics", "comics"]
    assert {event["provider"] for event in events} == {"google"}  # from the model name


def test_run_tracked_returns_result_when_writes_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = Tracker(tmp_path)

    def fail_append(line: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tracker._writer, "append", fail_append)
    result = run_tracked_sync(research_agent(tool_then_answer_model()), "Research the brand", tracker, CONTEXT)

    assert result.output == "The brand is strong."
    assert tracker.stats.failed == 2
    assert tracker.stats.recorded == 0


def test_record_unreadable_result_counts_failure(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)

    event_ids = record_agent_run(tracker, object(), CONTEXT, agent_name="brand_research")

    assert event_ids == []
    assert tracker.stats.failed == 1


def test_response_without_provider_counts_failure(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)
    result = research_agent(tool_then_answer_model(model_name="house-model")).run_sync("Research the brand")

    event_ids = record_agent_run(tracker, result, CONTEXT, agent_name="brand_research")

    assert event_ids == []
    assert tracker.stats.failed == 2


def test_failed_run_records_requests_made(tmp_path: Path) -> None:
    tracker = Tracker(tmp_path)

    def call_tool_then_fail(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(message, ModelResponse) for message in messages):
            raise RuntimeError("model overloaded")
        return ModelResponse(
            parts=[ToolCallPart("lookup", {"query": "brand"})],
            usage=RequestUsage(input_tokens=900, output_tokens=30),
            model_name="claude-sonnet-4-5",
        )

    agent = research_agent(FunctionModel(call_tool_then_fail, model_name="claude-sonnet-4-5"))
    with pytest.raises(RuntimeError, match="model overloaded"):
        run_tracked_sync(agent, "Research the brand", tracker, CONTEXT)
    tracker.close()
    events = spool_events(tmp_path)

    assert len(events) == 1
    assert events[0]["provider"] == "anthropic"
    assert events[0]["input_tokens"] == 900
    assert events[0]["request_id"] == f"{events[0]['run_id']}/1"


def test_import_tracker_skips_pydantic_ai() -> None:
    script = "import sys, ingest.tracker\nprint('pydantic_ai' in sys.modules)\n"
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_DIR, check=True
    )

    assert completed.stdout.strip() == "False"


# --- end to end: each request priced on its own ------------------------------------------------


@pytest.mark.e2e
def test_requests_priced_below_long_context_tier(tmp_path: Path) -> None:
    """Three 80,000-token requests cost the base price each, though together they pass 200,000."""

    def answer_three_times(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        responses_so_far = sum(isinstance(message, ModelResponse) for message in messages)
        parts: list[Any] = [TextPart("Final script.")] if responses_so_far == 2 else [
            ToolCallPart("lookup", {"query": f"scene {responses_so_far + 1}"})
        ]
        return ModelResponse(
            parts=parts, usage=RequestUsage(input_tokens=80_000, output_tokens=1_000), model_name="gemini-2.5-pro"
        )

    spool = tmp_path / "spool"
    database = tmp_path / "agents.duckdb"
    tracker = Tracker(spool)
    result = run_tracked_sync(
        research_agent(FunctionModel(answer_three_times, model_name="gemini-2.5-pro")), "Write the script", tracker, CONTEXT,
        agent_name="script_generation", provider="google",
    )
    tracker.close()
    run_cli(database, "ingest", "--spool", str(spool))
    run_cli(database, "build")
    rows = query(
        database,
        "select request_id, input_tokens, output_tokens, cost_usd, price_tier_above_input_tokens "
        "from marts.fct_usage_events where run_id = ? order by request_id",
        [result.run_id],
    )

    assert [row[0] for row in rows] == [f"{result.run_id}/{index}" for index in (1, 2, 3)]
    for request_id, input_tokens, output_tokens, cost_usd, tier in rows:
        assert (input_tokens, output_tokens) == (80_000, 1_000), request_id
        # 80,000 x 1.25 + 1,000 x 10 USD per million tokens: the base tier, not the 200,000+ tier.
        assert cost_usd == Decimal("0.11"), request_id
        assert tier in (None, 0), request_id
