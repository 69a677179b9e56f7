"""Builders of the usage payloads of OpenAI, Anthropic and Gemini, from canonical token counts, and back."""

from __future__ import annotations

from typing import Any, NamedTuple

from ingest.events import TOKEN_FIELDS
from ingest.usage import UsageDerivationError, derive_token_counts

Event = dict[str, Any]
"""A JSON object: an event, a usage payload or a part of one."""


class Tokens(NamedTuple):
    """Canonical token counts.

    ``input`` includes cached and cache-write tokens, and ``output`` includes reasoning tokens.
    """

    input: int
    cached: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0


def canonical_counts(tokens: Tokens) -> Event:
    return {
        "input_tokens": tokens.input,
        "cached_input_tokens": tokens.cached,
        "cache_write_tokens": tokens.cache_write,
        "output_tokens": tokens.output,
        "reasoning_tokens": tokens.reasoning,
    }


def openai_chat_usage(tokens: Tokens) -> Event:
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


def openai_embedding_usage(input_tokens: int) -> Event:
    return {"prompt_tokens": input_tokens, "total_tokens": input_tokens}


def anthropic_usage(tokens: Tokens, *, cache_write_1h: int = 0) -> Event:
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


def gemini_usage_metadata(
    tokens: Tokens,
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


def with_token_fields(event: Event) -> Event:
    """Return an event with its provider `usage` payload replaced by the token counts ingest derives.

    An event without a payload, or with one that ingest cannot read, comes back unchanged, so
    ingest quarantines it as it would the original.
    """
    usage = event.get("usage")
    if not isinstance(usage, dict):
        return event
    try:
        counts = derive_token_counts(str(event.get("provider", "")), usage, event.get("model"))
    except UsageDerivationError:
        return event
    rewritten = {key: value for key, value in event.items() if key != "usage"}
    rewritten.update({name: getattr(counts, name) for name in TOKEN_FIELDS})
    if counts.details:
        rewritten["usage_details"] = dict(counts.details)
    return rewritten
