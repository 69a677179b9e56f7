"""Read OpenTelemetry GenAI spans from OTLP JSON files as canonical usage events.

A file contains either one OTLP/JSON `ExportTraceServiceRequest` object (pretty-printed or not), or one
such object per line, which is what the OpenTelemetry Collector's file exporter writes. Spans sit at
`resourceSpans[].scopeSpans[].spans[]`. The encoding follows the OTLP specification
(opentelemetry-proto, docs/specification.md, "JSON Protobuf Encoding"): keys are lowerCamelCase,
`traceId` and `spanId` are hex strings, and 64-bit integers (`intValue`, `startTimeUnixNano`) are
decimal strings, though JSON numbers are accepted too.

Attribute names follow the OpenTelemetry GenAI semantic conventions (the attribute registry in
open-telemetry/semantic-conventions-genai, docs/registry/attributes/gen-ai.md), with the names that
the registry in open-telemetry/semantic-conventions lists as deprecated read as fallbacks:

| Span attribute (fallbacks after the first)                              | Event field          |
|-------------------------------------------------------------------------|----------------------|
| `gen_ai.provider.name`, `gen_ai.system`                                 | provider, platform   |
| `gen_ai.operation.name`, `llm.request.type`                             | operation            |
| `gen_ai.response.model`, `gen_ai.request.model`                         | model                |
| `gen_ai.response.id`                                                    | request_id           |
| `gen_ai.usage.input_tokens`, `gen_ai.usage.prompt_tokens`               | input_tokens         |
| `gen_ai.usage.output_tokens`, `gen_ai.usage.completion_tokens`          | output_tokens        |
| `gen_ai.usage.cache_read.input_tokens`, `..._cache_read_input_tokens`   | cached_input_tokens  |
| `gen_ai.usage.cache_creation.input_tokens`, `..._creation_input_tokens` | cache_write_tokens   |
| `gen_ai.usage.reasoning.output_tokens`                                  | reasoning_tokens     |
| `gen_ai.agent.name`, else the name of the enclosing `invoke_agent` span | tool_name            |
| `gen_ai.conversation.id`, else the trace id for spans of an agent run   | run_id               |
| `openai.response.service_tier`, then the request tier attributes       | service_tier         |
| `user.id`, `enduser.id` (span, then resource)                           | user_id              |
| `organization.id`, `app.organization_id` (span, then resource)          | organization_id      |
| resource `service.name`                                                 | service              |

The registry states that `gen_ai.usage.input_tokens` includes all input tokens, cached ones too, and
that both cache counts should be included in it. That is the canonical convention, so the counts are
copied unchanged. A producer that reports input without the cache is not corrected here: when its
cache counts exceed its input, validation quarantines the event as `cached_exceeds_input`.

The event id is `otlp:<traceId>:<spanId>` and created_at is the span's start time. Every span
attribute not mapped above lands in `metadata` as decoded, with `otel.scope.name` and
`otel.status_code` added when known.

Three kinds of span are skipped and counted, never quarantined, because none is a billable call:
spans without any `gen_ai.*` attribute; GenAI spans without token usage (tool executions, agent
runs whose model calls are their own child spans); and spans that enclose another span of the same
file carrying usage, such as an agent run that sums its model calls' usage, or a framework span
around an instrumented client call. Billing those would count the same tokens twice.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ingest.events import TOO_DEEP, InvalidEvent
from ingest.readers import SourceRecord

logger = logging.getLogger(__name__)

GEN_AI_PREFIX = "gen_ai."

# OpenTelemetry provider names (current `gen_ai.provider.name` values and older `gen_ai.system`
# values) mapped to the canonical (provider, platform). Other names pass through lower-cased, and
# `ingest.events.normalize_provider` then applies the project's own aliases.
PROVIDERS: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", None),
    "azure.ai.openai": ("openai", "azure"),
    "az.ai.openai": ("openai", "azure"),
    "az.ai.inference": ("openai", "azure"),
    "anthropic": ("anthropic", None),
    "gcp.gemini": ("google", None),
    # Any Google endpoint, backend unknown: the provider's own API is the closest guess.
    "gcp.gen_ai": ("google", None),
    "gcp.vertex_ai": ("google", "vertex"),
    "vertex_ai": ("google", "vertex"),
    "aws.bedrock": ("aws", "bedrock"),
    "x_ai": ("x-ai", None),
    "xai": ("x-ai", None),
    "mistral_ai": ("mistral", None),
}

PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
# `llm.request.type` is what OpenLLMetry wrote before `gen_ai.operation.name` existed.
OPERATION_KEYS = ("gen_ai.operation.name", "llm.request.type")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
REQUEST_ID_KEYS = ("gen_ai.response.id",)
AGENT_NAME_KEYS = ("gen_ai.agent.name",)
CONVERSATION_KEYS = ("gen_ai.conversation.id",)
# The tier in the response is the one the provider reports having served, so it wins over the
# requested tier (which may be `auto`).
SERVICE_TIER_KEYS = (
    "openai.response.service_tier",
    "gen_ai.openai.response.service_tier",
    "gen_ai.request.service_tier",
    "openai.request.service_tier",
    "gen_ai.openai.request.service_tier",
)
USER_KEYS = ("user.id", "enduser.id")
ORGANIZATION_KEYS = ("organization.id", "app.organization_id")

TOKEN_KEYS: dict[str, tuple[str, ...]] = {
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    # The underscore names are OpenLLMetry's, from before the conventions named cache counts.
    "cached_input_tokens": ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
    "cache_write_tokens": ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"),
    "reasoning_tokens": ("gen_ai.usage.reasoning.output_tokens",),
}
USAGE_KEYS = frozenset(key for keys in TOKEN_KEYS.values() for key in keys)

# Operations that run or belong to an agent, so their spans get the trace id as run_id.
AGENT_OPERATIONS = frozenset(("invoke_agent", "invoke_workflow", "create_agent", "execute_tool"))
# Bedrock model ids name their vendor first, after an optional cross-region prefix (us., eu., ...).
_BEDROCK_VENDOR = re.compile(r"^(?:[a-z]{2,6}\.)?(?P<vendor>[a-z0-9-]+)\.")
# Span status codes of the OTLP trace proto: 1 is OK, 2 is ERROR.
STATUS_CODES = {1: "OK", 2: "ERROR"}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
NANOSECONDS_PER_SECOND = 10**9
MAX_NANOSECONDS = 253402300800 * NANOSECONDS_PER_SECOND


@dataclass
class SpanCounts:
    """Tally of one OTLP file: spans read, events produced, and spans skipped or invalid by cause."""

    spans: int = 0
    events: int = 0
    invalid_spans: int = 0
    invalid_requests: int = 0
    not_gen_ai: int = 0
    without_usage: int = 0
    enclosing_usage: int = 0


@dataclass
class _SpanIndex:
    """Links between the spans of one file, gathered before any span is turned into an event."""

    parents: dict[tuple[str, str], str] = field(default_factory=dict)
    usage_spans: list[tuple[str, str]] = field(default_factory=list)
    agent_names: dict[tuple[str, str], str | None] = field(default_factory=dict)
    enclosing: set[tuple[str, str]] = field(default_factory=set)


def read_otlp_records(path: Path, counts: SpanCounts | None = None) -> Iterator[SourceRecord]:
    """Yield one record per billable GenAI span of an OTLP JSON file, gzipped or not.

    `line_number` is the line where the span's request starts (1 for a single-object file),
    `raw_text` the span as compact JSON and `fields` the canonical event, or `error` when the span
    or its request cannot become an event. `raw_fields` is the event as JSON, so a quarantined event
    can be validated again without the resource it came from. Skipped spans are added to `counts`
    when given, and a summary line is logged at the end.

    The file is read twice. The first pass finds agent runs and the spans that enclose other spans
    with usage. Memory therefore grows with the number of span ids, but only one request is parsed
    at a time.
    """
    counts = counts if counts is not None else SpanCounts()
    index = _index_spans(path)
    for line_number, request in _read_requests(path):
        if isinstance(request, _InvalidRequest):
            counts.invalid_requests += 1
            yield SourceRecord(line_number, request.raw_text, None, request.invalid)
            continue
        yield from _request_records(line_number, request, index, counts)

    logger.info(
        "read %s: %d spans, %d events, %d invalid spans, %d invalid requests; skipped %d without gen_ai "
        "attributes, %d without token usage, %d enclosing spans that carry usage",
        path, counts.spans, counts.events, counts.invalid_spans, counts.invalid_requests,
        counts.not_gen_ai, counts.without_usage, counts.enclosing_usage,
    )
    if counts.invalid_spans or counts.invalid_requests:
        logger.warning(
            "%s: %d spans and %d requests could not become events; they are returned with their errors",
            path, counts.invalid_spans, counts.invalid_requests,
        )


def span_to_event(
    span: Mapping[str, Any],
    resource_attributes: Mapping[str, Any],
    *,
    agent_name: str | None = None,
    in_agent_run: bool = False,
) -> dict[str, Any] | None:
    """Map one OTLP/JSON span to canonical event fields, or return None for a span to skip.

    A span is skipped when it has no `gen_ai.*` attribute or no token usage (`skip_reason` returns
    which). `resource_attributes` are the decoded attributes of the span's resource. `agent_name`
    and `in_agent_run` describe the enclosing `invoke_agent` span, when the caller knows one.
    Raises `InvalidEvent` for a span without valid ids or times.
    """
    attributes = decode_attributes(span.get("attributes"), "span attributes")
    if skip_reason(attributes) is not None:
        return None

    trace_id = _span_id(span, "traceId", 32)
    span_id = _span_id(span, "spanId", 16)
    created_at = _span_start(span)
    used: set[str] = set()

    fields: dict[str, Any] = {
        "event_id": f"otlp:{trace_id}:{span_id}",
        "created_at": created_at,
    }
    provider_name = _first(attributes, PROVIDER_KEYS, used)
    model = _first(attributes, MODEL_KEYS, used)
    if provider_name is not None:
        provider, platform = map_provider(str(provider_name), None if model is None else str(model))
        fields["provider"] = provider
        if platform is not None:
            fields["platform"] = platform
    operation = _first(attributes, OPERATION_KEYS, used)
    _put(fields, "operation", operation)
    _put(fields, "model", model)
    _put(fields, "request_id", _first(attributes, REQUEST_ID_KEYS, used))
    for name, keys in TOKEN_KEYS.items():
        _put(fields, name, _first(attributes, keys, used))

    own_agent_name = _first(attributes, AGENT_NAME_KEYS, used)
    _put(fields, "tool_name", own_agent_name if own_agent_name is not None else agent_name)
    conversation_id = _first(attributes, CONVERSATION_KEYS, used)
    is_agent_span = (
        in_agent_run or own_agent_name is not None or "gen_ai.agent.id" in attributes
        or (isinstance(operation, str) and operation in AGENT_OPERATIONS)
    )
    if conversation_id is not None:
        fields["run_id"] = conversation_id
    elif is_agent_span:
        fields["run_id"] = trace_id

    _put(fields, "service_tier", _first(attributes, SERVICE_TIER_KEYS, used))
    _put(fields, "service", resource_attributes.get("service.name"))
    _put(fields, "user_id", _first_of_both(attributes, resource_attributes, USER_KEYS, used))
    _put(fields, "organization_id", _first_of_both(attributes, resource_attributes, ORGANIZATION_KEYS, used))

    metadata = {key: value for key, value in attributes.items() if key not in used}
    status = span.get("status")
    if isinstance(status, Mapping) and status.get("code") in STATUS_CODES:
        metadata["otel.status_code"] = STATUS_CODES[status["code"]]
    if metadata:
        fields["metadata"] = metadata
    return fields


def skip_reason(attributes: Mapping[str, Any]) -> str | None:
    """Return not_gen_ai or without_usage for a span that is not a billable call, else None."""
    if not any(key.startswith(GEN_AI_PREFIX) for key in attributes):
        return "not_gen_ai"
    if not any(key in USAGE_KEYS for key in attributes):
        return "without_usage"
    return None


def map_provider(name: str, model: str | None) -> tuple[str, str | None]:
    """Return the canonical provider and the platform an OpenTelemetry provider name implies.

    Claude on Bedrock (model ids such as `anthropic.claude-...` or `us.anthropic.claude-...`) is
    grouped with Anthropic on the bedrock platform, as the canonical event format recommends.
    """
    key = name.strip().lower()
    provider, platform = PROVIDERS.get(key, (key, None))
    if key == "aws.bedrock" and model is not None:
        match = _BEDROCK_VENDOR.match(model.strip().lower().rsplit("/", 1)[-1])
        if match is not None and match.group("vendor") == "anthropic":
            provider = "anthropic"
    return provider, platform


def decode_attributes(value: Any, where: str) -> dict[str, Any]:
    """Decode an OTLP/JSON attribute list (`[{key, value: AnyValue}]`) into a plain dict.

    Raises `InvalidEvent` when the list or one of its entries has the wrong shape.
    """
    if value is None:
        return {}
    if not isinstance(value, list):
        raise InvalidEvent("invalid_otlp_span", f"{where} are {type(value).__name__}, not a list of key-value objects")
    decoded: dict[str, Any] = {}
    for entry in value:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
            raise InvalidEvent(
                "invalid_otlp_span", f"{where} contain {entry!r}, which is not an object with a string key"
            )
        decoded[entry["key"]] = decode_any_value(entry.get("value"))
    return decoded


def decode_any_value(value: Any) -> Any:
    """Decode one OTLP/JSON AnyValue; an empty or unknown value becomes None.

    `intValue` comes as a decimal string or a number and becomes an int. Text that is not a whole
    number is kept as given, so validation can reject it with the value in its message.
    """
    if not isinstance(value, Mapping):
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return _integer(value["intValue"])
    if "doubleValue" in value:
        # The JSON mapping writes NaN and the infinities as strings; those stay text.
        return value["doubleValue"]
    if "arrayValue" in value:
        items = value["arrayValue"].get("values", []) if isinstance(value["arrayValue"], Mapping) else []
        return [decode_any_value(item) for item in items]
    if "kvlistValue" in value:
        entries = value["kvlistValue"].get("values", []) if isinstance(value["kvlistValue"], Mapping) else []
        return {
            entry["key"]: decode_any_value(entry.get("value"))
            for entry in entries
            if isinstance(entry, Mapping) and isinstance(entry.get("key"), str)
        }
    if "bytesValue" in value:
        return value["bytesValue"]  # base64 text, kept as it is
    return None


def nanoseconds_to_rfc3339(nanoseconds: int) -> str:
    """Format nanoseconds since the Unix epoch as RFC 3339 UTC, truncated to microseconds."""
    seconds, remainder = divmod(nanoseconds, NANOSECONDS_PER_SECOND)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=remainder // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _InvalidRequest:
    """A line or document that is not a readable ExportTraceServiceRequest, with its text."""

    def __init__(self, raw_text: str, invalid: InvalidEvent) -> None:
        self.raw_text = raw_text
        self.invalid = invalid


def _request_records(
    line_number: int, request: Mapping[str, Any], index: _SpanIndex, counts: SpanCounts
) -> Iterator[SourceRecord]:
    for context, span in _request_spans(request):
        counts.spans += 1
        raw_value = span.value if isinstance(span, _WrongType) else span
        raw_text = json.dumps(raw_value, separators=(",", ":"), ensure_ascii=False)
        if isinstance(context, InvalidEvent):
            counts.invalid_spans += 1
            yield SourceRecord(line_number, raw_text, None, context)
            continue
        resource_attributes, scope_name = context
        try:
            attributes = decode_attributes(span.get("attributes"), "span attributes")
            reason = skip_reason(attributes)
            if reason == "not_gen_ai":
                counts.not_gen_ai += 1
                continue
            if reason == "without_usage":
                counts.without_usage += 1
                continue
            key = _span_key(span)
            if key is not None and key in index.enclosing:
                counts.enclosing_usage += 1
                continue
            agent_name, in_agent_run = _enclosing_agent(index, key)
            fields = span_to_event(span, resource_attributes, agent_name=agent_name, in_agent_run=in_agent_run)
        except InvalidEvent as invalid:
            counts.invalid_spans += 1
            yield SourceRecord(line_number, raw_text, None, invalid)
            continue
        if fields is None:  # unreachable: skip_reason above already returned the cause
            continue
        if scope_name:
            fields.setdefault("metadata", {})["otel.scope.name"] = scope_name
        counts.events += 1
        yield SourceRecord(line_number, raw_text, fields, raw_fields=json.dumps(fields, separators=(",", ":")))


def _request_spans(
    request: Mapping[str, Any],
) -> Iterator[tuple[tuple[dict[str, Any], str | None] | InvalidEvent, Any]]:
    """Yield ((resource attributes, scope name), span) for every span of a request.

    A part of the request with the wrong shape yields the error in place of the context, so it is
    returned as invalid and the rest of the request still reads. Such parts are malformed resource
    attributes, a `spans` field that is not a list, and a span that is not an object.
    """
    for resource_spans in _repeated(request, "resourceSpans"):
        if not isinstance(resource_spans, Mapping):
            yield _shape_error(resource_spans, "an item of resourceSpans"), resource_spans
            continue
        resource = resource_spans.get("resource")
        try:
            resource_attributes = decode_attributes(
                resource.get("attributes") if isinstance(resource, Mapping) else None, "resource attributes"
            )
        except InvalidEvent as invalid:
            yield invalid, resource_spans
            continue
        for scope_spans in _repeated(resource_spans, "scopeSpans"):
            if not isinstance(scope_spans, Mapping):
                yield _shape_error(scope_spans, "an item of scopeSpans"), scope_spans
                continue
            scope = scope_spans.get("scope")
            scope_name = scope.get("name") if isinstance(scope, Mapping) else None
            for span in _repeated(scope_spans, "spans"):
                if not isinstance(span, dict):
                    yield _shape_error(span, "a span"), span
                    continue
                yield (resource_attributes, scope_name if isinstance(scope_name, str) else None), span


def _shape_error(value: Any, description: str) -> InvalidEvent:
    if isinstance(value, _WrongType):
        return InvalidEvent(
            "invalid_otlp_span", f"{value.name} is {type(value.value).__name__}, not a list; export traces as OTLP/JSON"
        )
    return InvalidEvent("invalid_otlp_span", f"{description} is {type(value).__name__}, not a JSON object")


def _index_spans(path: Path) -> _SpanIndex:
    index = _SpanIndex()
    for _, request in _read_requests(path):
        if isinstance(request, _InvalidRequest):
            continue
        for context, span in _request_spans(request):
            key = _span_key(span) if not isinstance(context, InvalidEvent) else None
            if key is None:
                continue
            parent = span.get("parentSpanId")
            if isinstance(parent, str) and parent:
                index.parents[key] = parent.lower()
            try:
                attributes = decode_attributes(span.get("attributes"), "span attributes")
            except InvalidEvent:
                continue
            if skip_reason(attributes) is None:
                index.usage_spans.append(key)
            if attributes.get("gen_ai.operation.name") == "invoke_agent":
                name = attributes.get("gen_ai.agent.name")
                index.agent_names[key] = name if isinstance(name, str) else None

    # NOTE: only spans of the same file are linked, so an agent run whose model calls were exported
    # to another file is billed as well as its calls.
    # Mark every ancestor of a span with usage. The walk stops at an ancestor marked before,
    # whose own ancestors are marked already, so each span is visited once.
    for trace_id, span_id in index.usage_spans:
        parent = index.parents.get((trace_id, span_id))
        while parent is not None and (trace_id, parent) not in index.enclosing:
            index.enclosing.add((trace_id, parent))
            parent = index.parents.get((trace_id, parent))
    return index


def _enclosing_agent(index: _SpanIndex, key: tuple[str, str] | None) -> tuple[str | None, bool]:
    """Return the name of the nearest enclosing invoke_agent span and whether there is one."""
    if key is None:
        return None, False
    trace_id, span_id = key
    seen = {span_id}
    parent = index.parents.get(key)
    while parent is not None and parent not in seen:
        if (trace_id, parent) in index.agent_names:
            return index.agent_names[(trace_id, parent)], True
        seen.add(parent)
        parent = index.parents.get((trace_id, parent))
    return None, False


def _read_requests(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | _InvalidRequest]]:
    """Yield (line number, request) for a single-object file or a JSON Lines file of requests.

    The first non-blank line decides. When it is a complete JSON value, the file is JSON Lines.
    Otherwise the whole file is parsed as one document. When that fails too, the file is read line
    by line so each bad line is reported on its own.
    """
    with _open_text(path) as handle:
        first_number, first_line = 0, ""
        for first_number, first_line in enumerate(handle, start=1):
            if first_line.strip():
                break
        else:
            return
        try:
            json.loads(first_line)
        except RecursionError:
            pass  # a line of its own, too deep to read: _json_lines quarantines it
        except json.JSONDecodeError:
            rest = handle.read()
            document = first_line + rest
            try:
                parsed = json.loads(document)
            except json.JSONDecodeError:
                lines = document.splitlines()
                yield from _json_lines(enumerate(lines, start=first_number))
                return
            yield first_number, _as_request(parsed, document)
            return
        yield from _json_lines(enumerate([first_line], start=first_number))
        yield from _json_lines(enumerate(handle, start=first_number + 1))


def _json_lines(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, Mapping[str, Any] | _InvalidRequest]]:
    for line_number, line in lines:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            yield line_number, _InvalidRequest(text, InvalidEvent(
                "invalid_json",
                f"invalid JSON ({error.msg.removesuffix(' at')} at column {error.colno}); write one "
                "ExportTraceServiceRequest object per line",
            ))
            continue
        except RecursionError:
            yield line_number, _InvalidRequest(text, InvalidEvent("invalid_json", f"JSON {TOO_DEEP}"))
            continue
        yield line_number, _as_request(parsed, text)


def _as_request(parsed: Any, text: str) -> Mapping[str, Any] | _InvalidRequest:
    if not isinstance(parsed, dict):
        return _InvalidRequest(text, InvalidEvent(
            "not_an_object", f"expected an ExportTraceServiceRequest object, got {type(parsed).__name__}"
        ))
    if not isinstance(parsed.get("resourceSpans", []), list):
        return _InvalidRequest(text, InvalidEvent(
            "invalid_otlp_request", "resourceSpans is not a list; export traces as OTLP/JSON"
        ))
    return parsed


def _open_text(path: Path) -> IO[str]:
    # Bytes that are not UTF-8 become U+FFFD, so they never stop the file from reading.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return path.open("r", encoding="utf-8-sig", errors="replace")


def _span_key(span: Mapping[str, Any]) -> tuple[str, str] | None:
    trace_id, span_id = span.get("traceId"), span.get("spanId")
    if isinstance(trace_id, str) and isinstance(span_id, str) and trace_id and span_id:
        return trace_id.lower(), span_id.lower()
    return None


def _span_id(span: Mapping[str, Any], name: str, length: int) -> str:
    value = span.get(name)
    if not isinstance(value, str) or len(value) != length or not _HEX.match(value) or set(value) == {"0"}:
        raise InvalidEvent(
            "invalid_span_id",
            f"{name}={value!r} is not a non-zero hex id of {length} characters; "
            "export with OTLP/JSON, which writes ids as hex, not base64",
        )
    return value.lower()


def _span_start(span: Mapping[str, Any]) -> str:
    """Return the start time as RFC 3339 UTC after checking it and the end time."""
    start = _nanoseconds(span, "startTimeUnixNano")
    if span.get("endTimeUnixNano") is not None:
        end = _nanoseconds(span, "endTimeUnixNano")
        if end < start:
            raise InvalidEvent(
                "invalid_span_time",
                f"endTimeUnixNano={span.get('endTimeUnixNano')!r} is before "
                f"startTimeUnixNano={span.get('startTimeUnixNano')!r}; the span's times are corrupt",
            )
    return nanoseconds_to_rfc3339(start)


def _nanoseconds(span: Mapping[str, Any], name: str) -> int:
    value = span.get(name)
    number = _integer(value)
    # datetime ends at year 9999; 253402300800 seconds after 1970 is 10000-01-01T00:00:00Z.
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < MAX_NANOSECONDS:
        raise InvalidEvent(
            "invalid_span_time",
            f"{name}={value!r} is not a positive count of nanoseconds since 1970 before year 10000; "
            'OTLP/JSON writes it as a decimal string such as "1757000000000000000"',
        )
    return number


def _integer(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return value


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...], used: set[str]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            used.add(key)
            return value
    return None


def _first_of_both(
    attributes: Mapping[str, Any], resource_attributes: Mapping[str, Any], keys: tuple[str, ...], used: set[str]
) -> Any:
    value = _first(attributes, keys, used)
    if value is not None:
        return value
    return _first(resource_attributes, keys, set())


def _put(fields: dict[str, Any], name: str, value: Any) -> None:
    if value is not None and value != "":
        fields[name] = value


@dataclass(frozen=True)
class _WrongType:
    """A repeated field that is not a list, kept so it is reported with its value."""

    name: str
    value: Any


def _repeated(message: Mapping[str, Any], name: str) -> list[Any]:
    """Return the items of a repeated field: none when absent, one `_WrongType` when not a list."""
    value = message.get(name)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [_WrongType(name, value)]
