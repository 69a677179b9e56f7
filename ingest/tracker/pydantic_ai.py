"""Record PydanticAI agent runs as usage events: one event per model request, never one per run.

A run that makes three model requests is billed as three requests. Summing them before pricing
would move a run of three 80,000-token requests past a 200,000-token long-context threshold that
none of its requests crossed, so every `ModelResponse` of the run becomes its own event.

`ingest.tracker` does not import this module, so importing the tracker never imports pydantic-ai.
The app imports it explicitly. The functions here read responses by attribute and import
pydantic_ai only inside `run_tracked` and `run_tracked_sync`. Written against pydantic-ai-slim
2.68.0, and tolerant of older releases where a field is missing.

Token convention of pydantic-ai's `RequestUsage` (pydantic_ai/usage.py, 2.68.0):
``input_tokens`` includes ``cache_read_tokens``, ``cache_write_tokens`` and
``input_audio_tokens``, and ``output_tokens`` includes ``output_reasoning_tokens`` and
``output_audio_tokens``. pydantic-ai normalizes providers that report cache tokens apart
(Anthropic, Bedrock) into that convention, which is the canonical event's convention too, so the
counts are copied without arithmetic.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from ingest.tracker.context import TrackingContext, current_context
from ingest.tracker.tracker import Tracker

logger = logging.getLogger(__name__)

OPERATION_AGENT_RUN = "agent_run"

# pydantic-ai's `Provider.name` values, as stored in `ModelResponse.provider_name`, mapped to the
# canonical (provider, platform). Older releases named the Gemini API `google-gla` and Vertex AI
# `google-vertex`. Names not listed here are sent lowercased on platform `api`, and
# ingest normalizes its own aliases.
_PROVIDER_PLATFORMS: dict[str, tuple[str, str]] = {
    "google": ("google", "api"),
    "google-gla": ("google", "api"),
    "google-vertex": ("google", "vertex"),
    "google-cloud": ("google", "vertex"),
    "openai": ("openai", "api"),
    "azure": ("openai", "azure"),
    "anthropic": ("anthropic", "api"),
    "bedrock": ("aws", "bedrock"),
    "openrouter": ("openrouter", "openrouter"),
    "xai": ("x-ai", "api"),
    "grok": ("x-ai", "api"),
}

# Provider names of pydantic-ai's own test models, which do not identify the provider that bills the call.
_TEST_PROVIDERS = frozenset(("test", "function"))

# Model name prefixes that identify the provider when a response names none.
_MODEL_PREFIX_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("gemini", "google"),
    ("gemma", "google"),
    ("imagen", "google"),
    ("gpt-", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding", "openai"),
    ("claude", "anthropic"),
)

# `RequestUsage` fields that are genai-prices usage keys, sent as the event's `usage_details`.
_DETAIL_FIELDS = ("input_audio_tokens", "cache_audio_read_tokens", "output_audio_tokens", "cache_write_1h_tokens")


def record_agent_run(
    tracker: Tracker,
    result: Any,
    ctx: TrackingContext | None = None,
    *,
    agent_name: str | None,
    provider: str | None = None,
    operation: str = OPERATION_AGENT_RUN,
) -> list[str]:
    """Record one usage event per model request of a finished run; return the recorded event ids.

    ``result`` is an `AgentRunResult` (or a finished streamed result): its ``new_messages()`` are
    walked, so responses carried in from an earlier run's ``message_history`` are not recorded
    twice. See `record_model_responses` for the fields of each event. Catches every Exception: a
    failure is logged and counted in ``tracker.stats.failed``.
    """
    try:
        messages = list(result.new_messages())
        run_id = _string_attribute(result, "run_id")
    except Exception as error:
        # The tracker must never break the app, so a result object it cannot read is reported
        # the same way as a failed write.
        tracker.report_failure(error, "(agent run)", ctx if ctx is not None else current_context())
        return []
    return record_model_responses(
        tracker, messages, ctx, run_id=run_id, agent_name=agent_name, provider=provider, operation=operation
    )


def record_model_responses(
    tracker: Tracker,
    messages: Iterable[Any],
    ctx: TrackingContext | None = None,
    *,
    run_id: str | None = None,
    agent_name: str | None,
    provider: str | None = None,
    operation: str = OPERATION_AGENT_RUN,
) -> list[str]:
    """Record one usage event per `ModelResponse` in ``messages``; return the recorded event ids.

    Requests and other messages are skipped. ``run_id`` defaults to the first response's own
    ``run_id``, else a new UUID, and it replaces the context's run_id. ``agent_name`` becomes the
    event's tool_name (None keeps the context's). A response whose fields cannot be built is
    logged and counted in ``tracker.stats.failed`` without stopping the others. Catches every
    Exception, as `record_agent_run` does.
    """
    context = ctx if ctx is not None else current_context()
    try:
        responses = [message for message in messages if getattr(message, "kind", None) == "response"]
        if run_id is None:
            run_id = _first_run_id(responses) or str(uuid.uuid4())
        builders = _event_builders(responses, run_id, agent_name, provider, operation)
    except Exception as error:
        tracker.report_failure(error, "(agent run)", context)
        return []

    event_ids: list[str] = []
    for build_fields in builders:
        # `record_built` builds the fields inside the tracker's own error handling, so one broken
        # response is logged and counted, and the run's other responses are still recorded.
        event_id = tracker.record_built(build_fields, context, None, None)
        if event_id is not None:
            event_ids.append(event_id)
    return event_ids


async def run_tracked(
    agent: Any,
    prompt: Any,
    tracker: Tracker,
    ctx: TrackingContext | None = None,
    *,
    agent_name: str | None = None,
    provider: str | None = None,
    operation: str = OPERATION_AGENT_RUN,
    **run_kwargs: Any,
) -> Any:
    """Run ``agent.run(prompt, **run_kwargs)``, record its model requests, and return the result.

    ``agent_name`` defaults to the agent's ``name``. Recording catches every Exception, so the
    result is returned even when no event could be written. When the run itself raises, the requests it made
    before the error (captured with pydantic-ai's `capture_run_messages`) are recorded, and the
    error is re-raised unchanged.
    """
    from pydantic_ai import capture_run_messages

    name = agent_name if agent_name is not None else getattr(agent, "name", None)
    history_length = len(run_kwargs.get("message_history") or ())
    with capture_run_messages() as captured:
        try:
            result = await agent.run(prompt, **run_kwargs)
        except Exception:
            _record_failed_run(tracker, captured, history_length, ctx, name, provider, operation)
            raise
    record_agent_run(tracker, result, ctx, agent_name=name, provider=provider, operation=operation)
    return result


def run_tracked_sync(
    agent: Any,
    prompt: Any,
    tracker: Tracker,
    ctx: TrackingContext | None = None,
    *,
    agent_name: str | None = None,
    provider: str | None = None,
    operation: str = OPERATION_AGENT_RUN,
    **run_kwargs: Any,
) -> Any:
    """Run ``agent.run_sync(prompt, **run_kwargs)`` and record it, as `run_tracked` does."""
    from pydantic_ai import capture_run_messages

    name = agent_name if agent_name is not None else getattr(agent, "name", None)
    history_length = len(run_kwargs.get("message_history") or ())
    with capture_run_messages() as captured:
        try:
            result = agent.run_sync(prompt, **run_kwargs)
        except Exception:
            _record_failed_run(tracker, captured, history_length, ctx, name, provider, operation)
            raise
    record_agent_run(tracker, result, ctx, agent_name=name, provider=provider, operation=operation)
    return result


def model_response_event_fields(
    response: Any,
    *,
    run_id: str,
    index: int,
    agent_name: str | None,
    provider: str | None = None,
    operation: str = OPERATION_AGENT_RUN,
) -> dict[str, Any]:
    """Build the canonical event fields of one `ModelResponse`, the ``index``-th of its run (from 1).

    The request id is the provider's ``provider_response_id``, else ``<run_id>/<index>``, so
    recording the same run twice lands each request once. ``created_at`` is the response's
    ``timestamp``. The metadata counts the tool calls the response made by tool name, with
    native (provider-side) tools apart. Raise ValueError when no provider can be found.
    """
    model = _string_attribute(response, "model_name")
    provider_name, platform = resolve_provider(
        _string_attribute(response, "provider_name"),
        canonical_system=_string_attribute(response, "canonical_system"),
        fallback=provider,
        model_id=_string_attribute(response, "model_id"),
        model=model,
    )
    metadata: dict[str, Any] = {"request_index": index}
    metadata.update(_tool_call_counts(getattr(response, "parts", None) or ()))
    fields: dict[str, Any] = {
        "provider": provider_name,
        "platform": platform,
        "operation": operation,
        "model": model,
        "tool_name": agent_name,
        "request_id": _string_attribute(response, "provider_response_id") or f"{run_id}/{index}",
        "run_id": run_id,
        "created_at": getattr(response, "timestamp", None),
        "metadata": metadata,
    }
    fields.update(usage_token_fields(getattr(response, "usage", None)))
    return {name: value for name, value in fields.items() if value is not None}


def failed_attempt_event_fields(
    attempt: Any,
    *,
    run_id: str,
    index: int,
    attempt_index: int,
    agent_name: str | None,
    provider: str | None = None,
    operation: str = OPERATION_AGENT_RUN,
) -> dict[str, Any]:
    """Build the event fields of a fallback attempt that returned usage but was not kept as the response.

    pydantic-ai keeps such attempts in ``ModelResponse.failed_attempts`` and leaves their usage
    out of the response's own, yet the provider bills them. The request id is
    ``<run_id>/<index>/attempt-<attempt_index>``, because attempts carry no provider id.
    """
    model = _string_attribute(attempt, "model_name")
    provider_name, platform = resolve_provider(
        _string_attribute(attempt, "provider_name"), fallback=provider, model=model
    )
    fields: dict[str, Any] = {
        "provider": provider_name,
        "platform": platform,
        "operation": operation,
        "model": model,
        "tool_name": agent_name,
        "request_id": f"{run_id}/{index}/attempt-{attempt_index}",
        "run_id": run_id,
        "created_at": getattr(attempt, "timestamp", None),
        "metadata": {
            "request_index": index,
            "failed_attempt": _string_attribute(attempt, "outcome") or "unknown",
        },
    }
    fields.update(usage_token_fields(getattr(attempt, "usage", None)))
    return {name: value for name, value in fields.items() if value is not None}


def usage_token_fields(usage: Any) -> dict[str, Any]:
    """Map a pydantic-ai `RequestUsage` to the canonical token fields, or {} when usage is unknown.

    A usage with ``unmeasured_requests`` set means the provider omitted usage, so no counts are
    sent and the warehouse counts the event as unmetered. Reasoning tokens come from
    ``output_reasoning_tokens`` (2.x), else from ``details['reasoning_tokens']`` (OpenAI's key in
    older releases). They are left out when they exceed output_tokens, because ingest would
    reject the whole event.
    """
    if usage is None or _count(usage, "unmeasured_requests"):
        return {}

    output_tokens = _count(usage, "output_tokens")
    details = getattr(usage, "details", None) or {}
    reasoning_tokens = _count(usage, "output_reasoning_tokens") or _mapping_count(details, "reasoning_tokens")
    fields: dict[str, Any] = {
        "input_tokens": _count(usage, "input_tokens"),
        "cached_input_tokens": _count(usage, "cache_read_tokens"),
        "cache_write_tokens": _count(usage, "cache_write_tokens"),
        "output_tokens": output_tokens,
    }
    if reasoning_tokens and reasoning_tokens <= output_tokens:
        fields["reasoning_tokens"] = reasoning_tokens

    usage_details = {name: _count(usage, name) for name in _DETAIL_FIELDS if _count(usage, name)}
    if usage_details:
        fields["usage_details"] = usage_details
    return fields


def resolve_provider(
    provider_name: str | None,
    *,
    canonical_system: str | None = None,
    fallback: str | None = None,
    model_id: str | None = None,
    model: str | None = None,
) -> tuple[str, str]:
    """Return the canonical (provider, platform) of a response.

    The first known source wins: the response's ``provider_name`` (unless it is a test model's),
    the caller's ``fallback``, the prefix of ``model_id`` (``openai:gpt-5``), then the model
    name. ``canonical_system`` distinguishes Vertex AI and Azure clients from the Gemini API and
    OpenAI. Claude on Bedrock is provider anthropic on platform bedrock, so it groups with
    Anthropic. Raise ValueError when no source names a provider.
    """
    name = _normalized_name(provider_name)
    if name in _TEST_PROVIDERS:
        name = None
    if name is None:
        name = _normalized_name(fallback)
    if name is None and model_id and ":" in model_id:
        prefix = _normalized_name(model_id.split(":", 1)[0])
        name = None if prefix in _TEST_PROVIDERS else prefix
    if name is None:
        name = _provider_from_model(model)
    if name is None:
        raise ValueError(
            f"no provider for model {model!r}: the response has no provider_name; "
            "pass provider= to name the provider that bills the agent's model"
        )

    provider, platform = _PROVIDER_PLATFORMS.get(name, (name, "api"))
    if provider == "google" and canonical_system == "google-cloud":
        platform = "vertex"
    if provider == "openai" and canonical_system == "azure":
        platform = "azure"
    if platform == "bedrock" and _provider_from_model(model, anywhere=True) == "anthropic":
        provider = "anthropic"
    return provider, platform


def _record_failed_run(
    tracker: Tracker,
    captured: Sequence[Any],
    history_length: int,
    ctx: TrackingContext | None,
    agent_name: str | None,
    provider: str | None,
    operation: str,
) -> None:
    """Record the requests a run made before it raised; the captured list starts with the history."""
    record_model_responses(
        tracker,
        list(captured)[history_length:],
        ctx,
        agent_name=agent_name,
        provider=provider,
        operation=operation,
    )


def _event_builders(
    responses: Sequence[Any], run_id: str, agent_name: str | None, provider: str | None, operation: str
) -> list[Callable[[], dict[str, Any]]]:
    """Return one field builder per response, plus one per failed attempt that reported usage."""
    builders: list[Callable[[], dict[str, Any]]] = []
    for index, response in enumerate(responses, start=1):
        builders.append(
            partial(
                model_response_event_fields,
                response,
                run_id=run_id,
                index=index,
                agent_name=agent_name,
                provider=provider,
                operation=operation,
            )
        )
        for attempt_index, attempt in enumerate(getattr(response, "failed_attempts", None) or [], start=1):
            if getattr(attempt, "usage", None) is None:
                continue  # An attempt that raised before a response has no usage to bill.
            builders.append(
                partial(
                    failed_attempt_event_fields,
                    attempt,
                    run_id=run_id,
                    index=index,
                    attempt_index=attempt_index,
                    agent_name=agent_name,
                    provider=provider,
                    operation=operation,
                )
            )
    return builders


def _first_run_id(responses: Iterable[Any]) -> str | None:
    for response in responses:
        run_id = _string_attribute(response, "run_id")
        if run_id:
            return run_id
    return None


def _tool_call_counts(parts: Iterable[Any]) -> dict[str, dict[str, int]]:
    """Count a response's tool calls by tool name: `tool_calls` for app tools, `native_tool_calls` for provider tools.

    Parts are classified by ``part_kind``: ``tool-call`` for the app's function and output tools,
    and ``native-tool-call`` (``builtin-tool-call`` in older releases) for tools the provider runs.
    """
    app_tools: Counter[str] = Counter()
    native_tools: Counter[str] = Counter()
    for part in parts:
        kind = getattr(part, "part_kind", None)
        tool_name = getattr(part, "tool_name", None)
        if not isinstance(kind, str) or not kind.endswith("tool-call") or not isinstance(tool_name, str):
            continue
        if kind == "tool-call":
            app_tools[tool_name] += 1
        else:
            native_tools[tool_name] += 1

    counts: dict[str, dict[str, int]] = {}
    if app_tools:
        counts["tool_calls"] = dict(app_tools)
    if native_tools:
        counts["native_tool_calls"] = dict(native_tools)
    return counts


def _provider_from_model(model: str | None, *, anywhere: bool = False) -> str | None:
    """Guess the provider from a model name's prefix, or from any dotted segment when ``anywhere``.

    ``anywhere`` reads Bedrock ids such as ``us.anthropic.claude-sonnet-4-5-...``.
    """
    if not model:
        return None
    name = model.strip().lower().removeprefix("models/")
    segments = name.split(".") if anywhere else [name]
    for segment in segments:
        if segment == "anthropic":
            return "anthropic"
        for prefix, provider in _MODEL_PREFIX_PROVIDERS:
            if segment.startswith(prefix):
                return provider
    return None


def _normalized_name(value: str | None) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()


def _string_attribute(source: Any, name: str) -> str | None:
    value = getattr(source, name, None)
    return value if isinstance(value, str) and value else None


def _count(usage: Any, name: str) -> int:
    value = getattr(usage, name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _mapping_count(values: Mapping[str, Any], name: str) -> int:
    value = values.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
