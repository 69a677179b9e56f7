"""Tests for reading OpenTelemetry GenAI spans from OTLP JSON files (ingest/otlp.py).

Every file is written in pytest's tmp_path, so the tests read nothing outside it.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from ingest.events import InvalidEvent, parse_event
from ingest.otlp import SpanCounts, decode_any_value, map_provider, read_otlp_records, skip_reason, span_to_event
from ingest.readers import SourceRecord

TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
START_NANOS = "1757000000123456789"  # 2025-09-04T15:33:20.123456Z
END_NANOS = "1757000002000000000"
CREATED_AT = "2025-09-04T15:33:20.123456Z"


def string(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def integer(key: str, value: int, *, as_text: bool = True) -> dict[str, Any]:
    """Return an intValue attribute, as a decimal string (the OTLP/JSON default) or a number."""
    return {"key": key, "value": {"intValue": str(value) if as_text else value}}


def make_span(span_id: str, attributes: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": TRACE_ID,
        "spanId": span_id,
        "name": "chat",
        "kind": 3,
        "startTimeUnixNano": START_NANOS,
        "endTimeUnixNano": END_NANOS,
        "attributes": attributes,
        "status": {},
    }
    span.update(overrides)
    return span


def make_request(*scopes: list[dict[str, Any]], service: str = "billing-api") -> dict[str, Any]:
    """Return an ExportTraceServiceRequest with one resource and one scope per span list."""
    return {
        "resourceSpans": [{
            "resource": {"attributes": [string("service.name", service), string("organization.id", "org-res")]},
            "scopeSpans": [
                {"scope": {"name": f"scope-{number}", "version": "1.0"}, "spans": spans}
                for number, spans in enumerate(scopes)
            ],
        }]
    }


def chat_attributes(*, as_text: bool = True) -> list[dict[str, Any]]:
    return [
        string("gen_ai.provider.name", "openai"),
        string("gen_ai.operation.name", "chat"),
        string("gen_ai.request.model", "gpt-4o"),
        string("gen_ai.response.model", "gpt-4o-2024-08-06"),
        string("gen_ai.response.id", "chatcmpl-123"),
        integer("gen_ai.usage.input_tokens", 1200, as_text=as_text),
        integer("gen_ai.usage.output_tokens", 300, as_text=as_text),
        integer("gen_ai.usage.cache_read.input_tokens", 1000, as_text=as_text),
        integer("gen_ai.usage.reasoning.output_tokens", 100, as_text=as_text),
        string("openai.response.service_tier", "default"),
        string("user.id", "user-7"),
        {"key": "gen_ai.request.temperature", "value": {"doubleValue": 0.2}},
        {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}}},
    ]


def write_json(path: Path, request: dict[str, Any]) -> Path:
    path.write_text(json.dumps(request, indent=2))
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def events(records: list[SourceRecord]) -> list[dict[str, Any]]:
    return [record.fields for record in records if record.fields is not None]


# --- span_to_event: one span at a time ---------------------------------------------------------

MAPPING_CASES = [
    pytest.param(
        chat_attributes(),
        {
            "provider": "openai", "operation": "chat", "model": "gpt-4o-2024-08-06", "request_id": "chatcmpl-123",
            "input_tokens": 1200, "output_tokens": 300, "cached_input_tokens": 1000, "reasoning_tokens": 100,
            "service_tier": "default", "user_id": "user-7",
        },
        id="current names, intValue as string",
    ),
    pytest.param(
        chat_attributes(as_text=False),
        {"input_tokens": 1200, "output_tokens": 300, "cached_input_tokens": 1000},
        id="intValue as number",
    ),
    pytest.param(
        [
            string("gen_ai.system", "openai"),
            string("gen_ai.operation.name", "chat"),
            string("gen_ai.request.model", "gpt-4o-mini"),
            integer("gen_ai.usage.prompt_tokens", 50),
            integer("gen_ai.usage.completion_tokens", 7),
            string("gen_ai.openai.request.service_tier", "auto"),
            string("enduser.id", "user-9"),
        ],
        {
            "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 50, "output_tokens": 7,
            "service_tier": "auto", "user_id": "user-9",
        },
        id="deprecated names",
    ),
    pytest.param(
        [
            string("gen_ai.provider.name", "gcp.vertex_ai"),
            string("gen_ai.operation.name", "generate_content"),
            string("gen_ai.request.model", "gemini-2.5-flash"),
            integer("gen_ai.usage.input_tokens", 10),
            integer("gen_ai.usage.output_tokens", 20),
            string("app.organization_id", "org-span"),
        ],
        {"provider": "google", "platform": "vertex", "organization_id": "org-span"},
        id="vertex and span organization",
    ),
    pytest.param(
        [
            string("gen_ai.provider.name", "azure.ai.openai"),
            string("gen_ai.operation.name", "embeddings"),
            string("gen_ai.request.model", "text-embedding-3-small"),
            integer("gen_ai.usage.input_tokens", 8),
        ],
        {"provider": "openai", "platform": "azure", "operation": "embeddings", "organization_id": "org-res"},
        id="azure embeddings and resource organization",
    ),
    pytest.param(
        [
            string("gen_ai.provider.name", "aws.bedrock"),
            string("gen_ai.operation.name", "chat"),
            string("gen_ai.request.model", "us.anthropic.claude-3-5-sonnet-20240620-v1:0"),
            integer("gen_ai.usage.input_tokens", 100),
            integer("gen_ai.usage.cache_creation.input_tokens", 40),
            integer("gen_ai.usage.output_tokens", 5),
        ],
        {"provider": "anthropic", "platform": "bedrock", "cache_write_tokens": 40},
        id="claude on bedrock",
    ),
    pytest.param(
        [
            string("gen_ai.provider.name", "Groq"),
            string("gen_ai.operation.name", "chat"),
            integer("gen_ai.usage.input_tokens", 1),
        ],
        {"provider": "groq"},
        id="unknown provider lower-cased",
    ),
    pytest.param(
        [
            string("gen_ai.provider.name", "anthropic"),
            string("gen_ai.operation.name", "invoke_agent"),
            string("gen_ai.agent.name", "Math Tutor"),
            string("gen_ai.conversation.id", "conv-1"),
            integer("gen_ai.usage.input_tokens", 30),
            integer("gen_ai.usage.output_tokens", 3),
        ],
        {"tool_name": "Math Tutor", "run_id": "conv-1"},
        id="agent with conversation id",
    ),
]


@pytest.mark.parametrize(("attributes", "expected"), MAPPING_CASES)
def test_span_to_event_mapping(attributes: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    resource = {"service.name": "billing-api", "organization.id": "org-res"}
    fields = span_to_event(make_span("00f067aa0ba902b7", attributes), resource)
    assert fields is not None
    for name, value in expected.items():
        assert fields.get(name) == value, name
    assert fields["event_id"] == f"otlp:{TRACE_ID.lower()}:00f067aa0ba902b7"
    assert fields["created_at"] == CREATED_AT
    assert fields["service"] == "billing-api"
    event = parse_event(fields)
    assert event.input_tokens == fields.get("input_tokens")


def test_span_to_event_metadata_keeps_the_rest() -> None:
    fields = span_to_event(make_span("00f067aa0ba902b7", chat_attributes(), status={"code": 2}), {})
    assert fields is not None
    assert fields["metadata"] == {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.finish_reasons": ["stop"],
        "otel.status_code": "ERROR",
    }


def test_span_to_event_agent_run_from_trace() -> None:
    attributes = [
        string("gen_ai.provider.name", "openai"),
        string("gen_ai.operation.name", "chat"),
        integer("gen_ai.usage.input_tokens", 5),
    ]
    fields = span_to_event(make_span("00f067aa0ba902b7", attributes), {}, agent_name="support", in_agent_run=True)
    assert fields is not None
    assert fields["tool_name"] == "support"
    assert fields["run_id"] == TRACE_ID.lower()
    plain = span_to_event(make_span("00f067aa0ba902b7", attributes), {})
    assert plain is not None
    assert "run_id" not in plain
    assert "tool_name" not in plain


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ([string("http.request.method", "POST")], "not_gen_ai"),
        ([], "not_gen_ai"),
        ([string("gen_ai.operation.name", "execute_tool"), string("gen_ai.tool.name", "search")], "without_usage"),
        ([string("gen_ai.operation.name", "chat"), integer("gen_ai.usage.output_tokens", 0)], None),
    ],
)
def test_skip_reason_cases(attributes: list[dict[str, Any]], reason: str | None) -> None:
    decoded = {item["key"]: decode_any_value(item["value"]) for item in attributes}
    assert skip_reason(decoded) == reason
    fields = span_to_event(make_span("00f067aa0ba902b7", attributes), {})
    assert (fields is None) == (reason is not None)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"startTimeUnixNano": "yesterday"}, "invalid_span_time"),
        ({"startTimeUnixNano": "0"}, "invalid_span_time"),
        ({"startTimeUnixNano": None}, "invalid_span_time"),
        ({"endTimeUnixNano": "1"}, "invalid_span_time"),
        ({"startTimeUnixNano": "9" * 25}, "invalid_span_time"),
        ({"spanId": "W7Ej"}, "invalid_span_id"),
        ({"traceId": "0" * 32}, "invalid_span_id"),
    ],
)
def test_span_to_event_invalid_span(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        span_to_event(make_span("00f067aa0ba902b7", chat_attributes(), **overrides), {})
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ({"stringValue": "a"}, "a"),
        ({"intValue": "12"}, 12),
        ({"intValue": 12}, 12),
        ({"intValue": "twelve"}, "twelve"),
        ({"doubleValue": 1.5}, 1.5),
        ({"doubleValue": "NaN"}, "NaN"),
        ({"boolValue": True}, True),
        ({"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "b"}]}}, [1, "b"]),
        ({"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}}, {"k": False}),
        ({"bytesValue": "AQI="}, "AQI="),
        ({}, None),
    ],
)
def test_decode_any_value_cases(value: dict[str, Any], decoded: Any) -> None:
    assert decode_any_value(value) == decoded


@pytest.mark.parametrize(
    ("name", "model", "expected"),
    [
        ("gcp.gemini", None, ("google", None)),
        ("gcp.gen_ai", None, ("google", None)),
        ("gcp.vertex_ai", None, ("google", "vertex")),
        ("aws.bedrock", "amazon.nova-pro-v1:0", ("aws", "bedrock")),
        ("aws.bedrock", "anthropic.claude-3-haiku-20240307-v1:0", ("anthropic", "bedrock")),
        ("azure.ai.openai", None, ("openai", "azure")),
        ("x_ai", None, ("x-ai", None)),
        ("Anthropic", None, ("anthropic", None)),
        ("moonshot_ai", None, ("moonshot_ai", None)),
    ],
)
def test_map_provider_cases(name: str, model: str | None, expected: tuple[str, str | None]) -> None:
    assert map_provider(name, model) == expected


# --- read_otlp_records: real files -------------------------------------------------------------

def test_read_single_object_with_scopes(tmp_path: Path) -> None:
    http_span = make_span("0000000000000001", [string("http.request.method", "POST")])
    chat_span = make_span("0000000000000002", chat_attributes())
    embed_span = make_span("0000000000000003", [
        string("gen_ai.provider.name", "openai"),
        string("gen_ai.operation.name", "embeddings"),
        integer("gen_ai.usage.input_tokens", 8, as_text=False),
    ])
    request = make_request([http_span, chat_span], [embed_span])
    request["resourceSpans"].append({
        "resource": {"attributes": [string("service.name", "worker")]},
        "scopeSpans": [{"scope": {"name": "other"}, "spans": [make_span("0000000000000004", chat_attributes())]}],
    })
    counts = SpanCounts()
    records = list(read_otlp_records(write_json(tmp_path / "request.json", request), counts))

    assert [record.line_number for record in records] == [1, 1, 1]
    assert [record.error for record in records] == [None, None, None]
    fields = events(records)
    assert [item["event_id"].rsplit(":", 1)[1] for item in fields] == [
        "0000000000000002", "0000000000000003", "0000000000000004"
    ]
    assert [item["service"] for item in fields] == ["billing-api", "billing-api", "worker"]
    assert [item["metadata"]["otel.scope.name"] for item in fields] == ["scope-0", "scope-1", "other"]
    assert json.loads(records[0].raw_text) == chat_span
    assert counts == SpanCounts(spans=4, events=3, not_gen_ai=1)
    parsed = [parse_event(item) for item in fields]
    assert [event.input_tokens for event in parsed] == [1200, 8, 1200]
    assert [event.cached_input_tokens for event in parsed] == [1000, 0, 1000]


def test_read_json_lines_of_requests(tmp_path: Path) -> None:
    first = make_request([make_span("0000000000000001", chat_attributes())])
    second = make_request([
        make_span("0000000000000002", chat_attributes(as_text=False)),
        make_span("0000000000000003", chat_attributes(), startTimeUnixNano="not-a-time"),
    ])
    too_deep = "[" * 100_000 + "]" * 100_000
    path = write_lines(tmp_path / "traces.jsonl", [json.dumps(first), "", json.dumps(second), "{broken", too_deep])
    counts = SpanCounts()
    records = list(read_otlp_records(path, counts))

    assert [record.line_number for record in records] == [1, 3, 3, 4, 5]
    assert [record.error.reason if record.error else None for record in records] == [
        None, None, "invalid_span_time", "invalid_json", "invalid_json"
    ]
    assert "nested deeper" in records[4].error.message
    assert records[2].fields is None
    assert json.loads(records[2].raw_text)["spanId"] == "0000000000000003"
    assert records[3].raw_text == "{broken"
    assert counts.events == 2
    assert counts.invalid_spans == 1
    assert counts.invalid_requests == 2
    for item in events(records):
        assert parse_event(item).output_tokens == 300


def test_read_gzipped_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(make_request([make_span("0000000000000001", chat_attributes())])) + "\n")
    records = list(read_otlp_records(path))
    assert len(events(records)) == 1


def test_read_agent_run_skips_enclosing(tmp_path: Path) -> None:
    agent = make_span("00000000000000a0", [
        string("gen_ai.provider.name", "openai"),
        string("gen_ai.operation.name", "invoke_agent"),
        string("gen_ai.agent.name", "support"),
        integer("gen_ai.usage.input_tokens", 300),
        integer("gen_ai.usage.output_tokens", 30),
    ], kind=1)
    step = make_span("00000000000000a1", [string("step", "1")], parentSpanId="00000000000000a0")
    calls = [
        make_span(f"00000000000000b{number}", [
            string("gen_ai.provider.name", "openai"),
            string("gen_ai.operation.name", "chat"),
            string("gen_ai.response.model", "gpt-4o"),
            integer("gen_ai.usage.input_tokens", 150),
            integer("gen_ai.usage.output_tokens", 15),
        ], parentSpanId="00000000000000a1")
        for number in (1, 2)
    ]
    tool = make_span("00000000000000c1", [
        string("gen_ai.operation.name", "execute_tool"), string("gen_ai.tool.name", "lookup"),
    ], parentSpanId="00000000000000a0")
    # The calls end first, so a collector exports them in an earlier request than their agent run.
    lines = [json.dumps(make_request(calls)), json.dumps(make_request([step, tool, agent]))]
    counts = SpanCounts()
    records = list(read_otlp_records(write_lines(tmp_path / "agent.jsonl", lines), counts))

    fields = events(records)
    assert [item["event_id"][-2:] for item in fields] == ["b1", "b2"]
    assert [item["tool_name"] for item in fields] == ["support", "support"]
    assert [item["run_id"] for item in fields] == [TRACE_ID.lower()] * 2
    assert counts == SpanCounts(spans=5, events=2, not_gen_ai=1, without_usage=1, enclosing_usage=1)
    assert sum(parse_event(item).input_tokens or 0 for item in fields) == 300


def test_read_malformed_request_shapes(tmp_path: Path) -> None:
    request = {"resourceSpans": [
        {"resource": {"attributes": "service.name=x"}, "scopeSpans": []},
        {"scopeSpans": [{"spans": ["not a span", make_span("0000000000000001", chat_attributes())]}]},
        {"scopeSpans": {"spans": []}},
    ]}
    lines = [json.dumps(request), json.dumps({"resourceSpans": {}}), json.dumps([1, 2])]
    records = list(read_otlp_records(write_lines(tmp_path / "shapes.jsonl", lines)))
    assert [record.error.reason if record.error else None for record in records] == [
        "invalid_otlp_span", "invalid_otlp_span", None, "invalid_otlp_span", "invalid_otlp_request", "not_an_object"
    ]


def test_read_empty_file(tmp_path: Path) -> None:
    counts = SpanCounts()
    assert list(read_otlp_records(write_lines(tmp_path / "empty.jsonl", ["", "  "]), counts)) == []
    assert counts == SpanCounts()
