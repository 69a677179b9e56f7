"""Tests for ingest/usage.py: canonical token counts from provider usage payloads.

Three groups: hand-written payloads for each rule and error, recorded real response bodies
compared with the usage that genai-prices extracted from them, and a check that the rules
table in docs/usage_rules.md is exactly what the code does.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices import Usage
from genai_prices.types import ArrayMatch

from conftest import shared_file
from ingest.usage import (
    CANONICAL_TO_GENAI_USAGE_KEY,
    FLAVORS,
    TokenCounts,
    UsageDerivationError,
    choose_extractor,
    derive_token_counts,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DOC = REPO_ROOT / "docs" / "usage_rules.md"

# The providers whose routing the rules table lists row by row.
DOCUMENTED_PROVIDERS = ("openai", "azure", "openrouter", "google", "anthropic", "aws")

GENAI_TO_CANONICAL = {genai_key: name for name, genai_key in CANONICAL_TO_GENAI_USAGE_KEY.items()}


# --- rules, one hand-written payload each -------------------------------------------------


@dataclass(frozen=True)
class RuleCase:
    provider: str
    usage: Mapping[str, Any]
    flavor: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    details: Mapping[str, int] = field(default_factory=dict)
    model: str | None = None


RULE_CASES = {
    "gemini cache, thoughts and modalities": RuleCase(
        provider="google",
        model="gemini-2.5-flash",
        usage={
            "promptTokenCount": 373,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 115}, {"modality": "IMAGE", "tokenCount": 258}],
            "cachedContentTokenCount": 204,
            "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 63}, {"modality": "IMAGE", "tokenCount": 141}],
            "candidatesTokenCount": 89,
            "thoughtsTokenCount": 167,
            "totalTokenCount": 629,
        },
        flavor="gemini",
        input_tokens=373,
        cached_input_tokens=204,
        output_tokens=256,
        reasoning_tokens=167,
        details={
            "input_text_tokens": 115,
            "input_image_tokens": 258,
            "cache_text_read_tokens": 63,
            "cache_image_read_tokens": 141,
        },
    ),
    "gemini thoughts outside candidates": RuleCase(
        provider="google",
        usage={"promptTokenCount": 20, "candidatesTokenCount": 151, "thoughtsTokenCount": 382, "totalTokenCount": 553},
        flavor="gemini",
        input_tokens=20,
        output_tokens=533,
        reasoning_tokens=382,
    ),
    "gemini tool-use prompt is input": RuleCase(
        provider="google",
        usage={
            "promptTokenCount": 300,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 100},
                {"modality": "AUDIO", "tokenCount": 150},
                {"modality": "VIDEO", "tokenCount": 50},
            ],
            "toolUsePromptTokenCount": 40,
            "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 40}],
            "candidatesTokenCount": 60,
            "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 60}],
            "thoughtsTokenCount": 20,
            "totalTokenCount": 420,
        },
        flavor="gemini",
        input_tokens=340,
        output_tokens=80,
        reasoning_tokens=20,
        details={
            "input_text_tokens": 140,
            "input_audio_tokens": 150,
            "input_video_tokens": 50,
            "input_tool_tokens": 40,
            "input_text_tool_tokens": 40,
            "output_audio_tokens": 60,
        },
    ),
    "gemini document counts as image": RuleCase(
        provider="vertex",
        usage={
            "promptTokenCount": 1000,
            "promptTokensDetails": [{"modality": "DOCUMENT", "tokenCount": 800}, {"modality": "TEXT", "tokenCount": 200}],
            "cachedContentTokenCount": 700,
            "cacheTokensDetails": [{"modality": "DOCUMENT", "tokenCount": 700}],
            "candidatesTokenCount": 10,
        },
        flavor="gemini",
        input_tokens=1000,
        cached_input_tokens=700,
        output_tokens=10,
        details={"input_image_tokens": 800, "input_text_tokens": 200, "cache_image_read_tokens": 700},
    ),
    "gemini embeddings have no output": RuleCase(
        provider="google",
        usage={"promptTokenCount": 7, "promptTokenDetails": [{"modality": "TEXT", "tokenCount": 7}]},
        flavor="gemini",
        input_tokens=7,
        output_tokens=0,
    ),
    "anthropic cache read and write": RuleCase(
        provider="anthropic",
        usage={
            "input_tokens": 3,
            "cache_creation_input_tokens": 418,
            "cache_read_input_tokens": 1111,
            "cache_creation": {"ephemeral_5m_input_tokens": 418, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 33,
        },
        flavor="anthropic",
        input_tokens=1532,
        cached_input_tokens=1111,
        cache_write_tokens=418,
        output_tokens=33,
        details={"cache_write_5m_tokens": 418},
    ),
    "anthropic 1h cache, thinking, web search": RuleCase(
        provider="anthropic",
        usage={
            "input_tokens": 50,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 800},
            "output_tokens": 400,
            "output_tokens_details": {"thinking_tokens": 250},
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
        },
        flavor="anthropic",
        input_tokens=1050,
        cache_write_tokens=1000,
        output_tokens=400,
        reasoning_tokens=250,
        details={"cache_write_5m_tokens": 200, "cache_write_1h_tokens": 800, "web_searches": 3},
    ),
    "claude on vertex uses anthropic rules": RuleCase(
        provider="google",
        model="claude-sonnet-4-5",
        usage={
            "input_tokens": 10,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 500},
            "output_tokens": 300,
            "server_tool_use": {"web_search_requests": 2},
        },
        flavor="anthropic",
        input_tokens=2510,
        cached_input_tokens=2000,
        cache_write_tokens=500,
        output_tokens=300,
        details={"cache_write_1h_tokens": 500, "web_searches": 2},
    ),
    "claude on bedrock uses anthropic rules": RuleCase(
        provider="aws",
        usage={"input_tokens": 12, "cache_read_input_tokens": 88, "cache_creation_input_tokens": 0, "output_tokens": 7},
        flavor="anthropic",
        input_tokens=100,
        cached_input_tokens=88,
        output_tokens=7,
    ),
    "bare input/output from google": RuleCase(
        provider="google",
        usage={"input_tokens": 14, "output_tokens": 65},
        flavor="anthropic",
        input_tokens=14,
        output_tokens=65,
    ),
    "bare input/output from openai": RuleCase(
        provider="openai",
        usage={"input_tokens": 14, "output_tokens": 65},
        flavor="openai-responses",
        input_tokens=14,
        output_tokens=65,
    ),
    "bare input/output, claude model": RuleCase(
        provider="azure",
        model="claude-opus-4-1",
        usage={"input_tokens": 14, "output_tokens": 65},
        flavor="anthropic",
        input_tokens=14,
        output_tokens=65,
    ),
    "openai chat gpt-4o cached": RuleCase(
        provider="openai",
        model="gpt-4o",
        usage={
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        flavor="openai-chat",
        input_tokens=2006,
        cached_input_tokens=1920,
        output_tokens=300,
    ),
    "openai chat cached, reasoning, audio": RuleCase(
        provider="openai",
        usage={
            "prompt_tokens": 1200,
            "completion_tokens": 900,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 640, "audio_tokens": 50},
        },
        flavor="openai-chat",
        input_tokens=1200,
        cached_input_tokens=1024,
        output_tokens=900,
        reasoning_tokens=640,
        details={"input_audio_tokens": 100, "output_audio_tokens": 50},
    ),
    "openai chat null details": RuleCase(
        provider="openai",
        usage={"prompt_tokens": 448, "completion_tokens": 38, "prompt_tokens_details": None, "completion_tokens_details": None},
        flavor="openai-chat",
        input_tokens=448,
        output_tokens=38,
    ),
    "azure chat same as openai": RuleCase(
        provider="azure",
        usage={
            "prompt_tokens": 1200,
            "completion_tokens": 900,
            "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 640},
        },
        flavor="openai-chat",
        input_tokens=1200,
        cached_input_tokens=1024,
        cache_write_tokens=100,
        output_tokens=900,
        reasoning_tokens=640,
    ),
    "openai responses cached and reasoning": RuleCase(
        provider="openai",
        usage={
            "input_tokens": 5000,
            "input_tokens_details": {"cached_tokens": 4096},
            "output_tokens": 1500,
            "output_tokens_details": {"reasoning_tokens": 1024},
            "total_tokens": 6500,
        },
        flavor="openai-responses",
        input_tokens=5000,
        cached_input_tokens=4096,
        output_tokens=1500,
        reasoning_tokens=1024,
    ),
    "openai responses cache write": RuleCase(
        provider="openai",
        usage={
            "input_tokens": 142,
            "input_tokens_details": {"cache_write_tokens": 27, "cached_tokens": 0},
            "output_tokens": 33,
            "output_tokens_details": {"reasoning_tokens": 11},
            "total_tokens": 175,
        },
        flavor="openai-responses",
        input_tokens=142,
        cache_write_tokens=27,
        output_tokens=33,
        reasoning_tokens=11,
    ),
    "openrouter responses": RuleCase(
        provider="openrouter",
        usage={
            "input_tokens": 900,
            "input_tokens_details": {"cached_tokens": 512},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 200},
        },
        flavor="openai-responses",
        input_tokens=900,
        cached_input_tokens=512,
        output_tokens=300,
        reasoning_tokens=200,
    ),
    "openai embeddings": RuleCase(
        provider="openai",
        model="text-embedding-3-small",
        usage={"prompt_tokens": 4, "total_tokens": 4},
        flavor="openai-embeddings",
        input_tokens=4,
        output_tokens=0,
    ),
    "gpt-image-1 images": RuleCase(
        provider="openai",
        model="gpt-image-1",
        usage={
            "input_tokens": 50,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
            "output_tokens": 4160,
            "total_tokens": 4210,
        },
        flavor="openai-images",
        input_tokens=50,
        output_tokens=4160,
        details={"input_text_tokens": 10, "input_image_tokens": 40},
    ),
    "openai realtime audio and cache": RuleCase(
        provider="openai",
        usage={
            "input_tokens": 1000,
            "output_tokens": 200,
            "input_token_details": {
                "cached_tokens": 500,
                "text_tokens": 300,
                "audio_tokens": 700,
                "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 400},
            },
            "output_token_details": {"text_tokens": 50, "audio_tokens": 150},
        },
        flavor="openai-realtime",
        input_tokens=1000,
        cached_input_tokens=500,
        output_tokens=200,
        details={
            "input_text_tokens": 300,
            "input_audio_tokens": 700,
            "cache_text_read_tokens": 100,
            "cache_audio_read_tokens": 400,
            "output_text_tokens": 50,
            "output_audio_tokens": 150,
        },
    ),
    # genai-prices reads a top-level cached_tokens for Anthropic's OpenAI-compatible endpoint.
    "anthropic chat ignores nested cache": RuleCase(
        provider="anthropic",
        usage={"prompt_tokens": 268, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 224}},
        flavor="openai-chat",
        input_tokens=268,
        output_tokens=5,
    ),
    "anthropic chat top-level cache": RuleCase(
        provider="anthropic",
        usage={"prompt_tokens": 268, "completion_tokens": 5, "cached_tokens": 224},
        flavor="openai-chat",
        input_tokens=268,
        cached_input_tokens=224,
        output_tokens=5,
    ),
    "xai chat reasoning outside completion": RuleCase(
        provider="x-ai",
        usage={
            "prompt_tokens": 32,
            "completion_tokens": 9,
            "total_tokens": 311,
            "prompt_tokens_details": {"cached_tokens": 6},
            "completion_tokens_details": {"reasoning_tokens": 270},
        },
        flavor="openai-chat",
        input_tokens=32,
        cached_input_tokens=6,
        output_tokens=279,
        reasoning_tokens=270,
    ),
    "xai alias finds x-ai": RuleCase(
        provider="xai",
        usage={"prompt_tokens": 32, "completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 270}},
        flavor="openai-chat",
        input_tokens=32,
        output_tokens=279,
        reasoning_tokens=270,
    ),
    "unknown provider gets openai rules": RuleCase(
        provider="acme-inference",
        usage={
            "prompt_tokens": 100,
            "completion_tokens": 80,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
        flavor="openai-chat",
        input_tokens=100,
        cached_input_tokens=64,
        output_tokens=80,
        reasoning_tokens=30,
    ),
    # genai-prices' MiniMax Responses extractor has no reasoning field, so the module reads it.
    "reasoning read when extractor lacks it": RuleCase(
        provider="minimax",
        usage={
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 50,
            "output_tokens_details": {"reasoning_tokens": 40},
        },
        flavor="openai-responses",
        input_tokens=10,
        output_tokens=50,
        reasoning_tokens=40,
    ),
    "bedrock converse cache write": RuleCase(
        provider="aws",
        usage={
            "inputTokens": 3,
            "outputTokens": 288,
            "cacheReadInputTokens": 0,
            "cacheWriteInputTokens": 2074,
            "cacheDetails": [{"inputTokens": 2074, "ttl": "5m"}],
            "totalTokens": 2365,
        },
        flavor="bedrock-converse",
        input_tokens=2077,
        cache_write_tokens=2074,
        output_tokens=288,
        details={"cache_write_5m_tokens": 2074},
    ),
    "bedrock converse cache read": RuleCase(
        provider="bedrock",
        usage={"inputTokens": 433, "outputTokens": 16, "cacheReadInputTokens": 2752, "cacheWriteInputTokens": 0},
        flavor="bedrock-converse",
        input_tokens=3185,
        cached_input_tokens=2752,
        output_tokens=16,
    ),
}


@pytest.mark.parametrize("case", RULE_CASES.values(), ids=RULE_CASES.keys())
def test_rule_cases(case: RuleCase) -> None:
    counts = derive_token_counts(case.provider, case.usage, case.model)

    assert counts.flavor == case.flavor
    assert counts.input_tokens == case.input_tokens
    assert counts.cached_input_tokens == case.cached_input_tokens
    assert counts.cache_write_tokens == case.cache_write_tokens
    assert counts.output_tokens == case.output_tokens
    assert counts.reasoning_tokens == case.reasoning_tokens
    assert dict(counts.details) == dict(case.details)


def test_counts_are_plain_ints() -> None:
    counts = derive_token_counts("google", RULE_CASES["gemini tool-use prompt is input"].usage)

    values = [
        counts.input_tokens,
        counts.cached_input_tokens,
        counts.cache_write_tokens,
        counts.output_tokens,
        counts.reasoning_tokens,
        *counts.details.values(),
    ]
    assert all(type(value) is int for value in values)


def test_as_genai_usage_prices_like_genai_prices() -> None:
    usage = RULE_CASES["gemini cache, thoughts and modalities"].usage
    counts = derive_token_counts("google", usage)

    ours = genai_prices.calc_price(Usage(**counts.as_genai_usage()), "gemini-2.5-flash", provider_id="google")
    extracted = genai_prices.extract_usage({"usageMetadata": usage}, provider_id="google")
    theirs = genai_prices.calc_price(extracted.usage, "gemini-2.5-flash", provider_id="google")

    assert ours.total_price > 0
    assert ours.total_price == theirs.total_price


def test_as_genai_usage_keys() -> None:
    counts = derive_token_counts("anthropic", RULE_CASES["anthropic 1h cache, thinking, web search"].usage)

    assert counts.as_genai_usage() == {
        "input_tokens": 1050,
        "cache_write_tokens": 1000,
        "output_tokens": 400,
        "output_reasoning_tokens": 250,
        "cache_write_5m_tokens": 200,
        "cache_write_1h_tokens": 800,
        "web_searches": 3,
    }


# --- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    provider: str
    usage: Any
    message_parts: Sequence[str]
    model: str | None = None


ERROR_CASES = {
    "payload is a list": ErrorCase(
        "openai", [{"prompt_tokens": 1}], ["provider 'openai'", "expected a JSON object (mapping), got list"]
    ),
    "payload is None": ErrorCase("google", None, ["provider 'google'", "got NoneType"]),
    "unrecognized keys": ErrorCase(
        "openai",
        {"tokens": 5, "cost": 0.1},
        [
            "Unrecognized usage payload for provider 'openai' and model 'gpt-4o'",
            "keys [cost, tokens]",
            "Expected prompt_tokens with completion_tokens (OpenAI chat)",
            "promptTokenCount or candidatesTokenCount (Gemini)",
        ],
        model="gpt-4o",
    ),
    "empty payload": ErrorCase("anthropic", {}, ["Unrecognized usage payload for provider 'anthropic'", "keys []"]),
    "negative count": ErrorCase(
        "openai",
        {"prompt_tokens": -5, "completion_tokens": 3},
        ["provider 'openai' (flavor openai-chat)", "`prompt_tokens` is -5, expected a non-negative integer"],
    ),
    "float count": ErrorCase(
        "openai",
        {"prompt_tokens": 5, "completion_tokens": 3.0},
        ["`completion_tokens` is 3.0 (float), expected a non-negative integer"],
    ),
    "string in optional field": ErrorCase(
        "openai",
        {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": "2"}},
        [
            "`prompt_tokens_details.cached_tokens` is '2' (str), expected a non-negative integer",
            "Payload keys: [completion_tokens, prompt_tokens, prompt_tokens_details]",
        ],
    ),
    "boolean count": ErrorCase(
        "anthropic",
        {"input_tokens": True, "output_tokens": 3, "cache_read_input_tokens": 0},
        ["(flavor anthropic)", "`input_tokens` is True (bool)"],
    ),
    "detail object of wrong type": ErrorCase(
        "openai",
        {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": 7},
        ["`prompt_tokens_details` is int, expected an object"],
    ),
    "gemini detail list of wrong type": ErrorCase(
        "google",
        {"promptTokenCount": 3, "promptTokensDetails": {"modality": "TEXT", "tokenCount": 3}},
        ["(flavor gemini)", "`promptTokensDetails` is dict, expected a list"],
    ),
    "gemini detail item negative": ErrorCase(
        "google",
        {
            "promptTokenCount": 3,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2}, {"modality": "AUDIO", "tokenCount": -1}],
        },
        ["`promptTokensDetails[1].tokenCount` is -1, expected a non-negative integer"],
    ),
    "bedrock detail item float": ErrorCase(
        "aws",
        {"inputTokens": 3, "outputTokens": 1, "cacheDetails": [{"ttl": "5m", "inputTokens": 2.5}]},
        ["(flavor bedrock-converse)", "`cacheDetails[0].inputTokens` is 2.5 (float)"],
    ),
    "responses without output_tokens": ErrorCase(
        "openai",
        {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}},
        [
            "provider 'openai' (flavor openai-responses, read with genai-prices extractor openai/responses)",
            "Missing value at `usage.output_tokens`",
            "Payload keys: [input_tokens, input_tokens_details]",
            "Expected input_tokens and output_tokens",
        ],
    ),
    "chat with null prompt_tokens": ErrorCase(
        "openai",
        {"prompt_tokens": None, "completion_tokens": 3},
        ["(flavor openai-chat, read with genai-prices extractor openai/chat)", "`usage.prompt_tokens`"],
    ),
    "image usage without image_tokens": ErrorCase(
        "openai",
        {"input_tokens": 50, "input_tokens_details": {"text_tokens": 50}, "output_tokens": 10},
        ["(flavor openai-images", "Missing value at `usage.input_tokens_details.image_tokens`"],
    ),
    "cached above input": ErrorCase(
        "openai",
        {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 6}},
        [
            "cached input tokens (6) plus cache-write tokens (0) exceed input tokens (5)",
            "Expected the input total to include cache reads and writes",
        ],
    ),
    "cache write above input": ErrorCase(
        "openai",
        {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 5}, "output_tokens": 1},
        ["cached input tokens (6) plus cache-write tokens (5) exceed input tokens (10)"],
    ),
    "gemini cached above prompt": ErrorCase(
        "google",
        {"promptTokenCount": 100, "cachedContentTokenCount": 150, "candidatesTokenCount": 5},
        ["(flavor gemini)", "cached input tokens (150) plus cache-write tokens (0) exceed input tokens (100)"],
    ),
    "reasoning above output": ErrorCase(
        "openai",
        {"prompt_tokens": 5, "completion_tokens": 3, "completion_tokens_details": {"reasoning_tokens": 6}},
        ["reasoning tokens (6) exceed output tokens (3)", "Expected the output total to include reasoning"],
    ),
    "thinking above output": ErrorCase(
        "anthropic",
        {"input_tokens": 5, "output_tokens": 3, "output_tokens_details": {"thinking_tokens": 4}},
        ["(flavor anthropic)", "reasoning tokens (4) exceed output tokens (3)"],
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_error_cases(case: ErrorCase) -> None:
    with pytest.raises(UsageDerivationError) as raised:
        derive_token_counts(case.provider, case.usage, case.model)

    message = str(raised.value)
    for part in case.message_parts:
        assert part in message


def test_error_is_value_error() -> None:
    assert issubclass(UsageDerivationError, ValueError)


def test_unknown_flavor_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown usage flavor 'openai-audio'"):
        choose_extractor("openai", "openai-audio")


# --- extractor choice -------------------------------------------------------------------------

EXTRACTOR_CASES = {
    ("openai", "openai-chat"): ("openai", "chat"),
    ("azure", "openai-chat"): ("azure", "chat"),
    ("openrouter", "openai-chat"): ("openrouter", "chat"),
    ("google", "openai-chat"): ("google", "chat"),
    ("anthropic", "openai-chat"): ("anthropic", "chat"),
    ("aws", "openai-chat"): ("openai", "chat"),
    ("x-ai", "openai-chat"): ("x-ai", "chat"),
    ("perplexity", "openai-chat"): ("perplexity", "default"),
    ("acme-inference", "openai-chat"): ("openai", "chat"),
    ("openrouter", "openai-responses"): ("openrouter", "default"),
    ("azure", "openai-embeddings"): ("azure", "embeddings"),
    ("openrouter", "openai-embeddings"): ("openai", "embeddings"),
    ("cohere", "openai-embeddings"): ("openai", "embeddings"),
    ("azure", "openai-images"): ("openai", "images"),
    ("google", "anthropic"): ("anthropic", "default"),
    ("aws", "anthropic"): ("anthropic", "default"),
    ("azure", "anthropic"): ("anthropic", "default"),
    ("openai", "gemini"): ("google", "default"),
    ("anthropic", "bedrock-converse"): ("aws", "default"),
}


@pytest.mark.parametrize(("provider_and_flavor", "expected"), EXTRACTOR_CASES.items(), ids=str)
def test_choose_extractor(provider_and_flavor: tuple[str, str], expected: tuple[str, str]) -> None:
    assert choose_extractor(*provider_and_flavor) == expected


# --- real recorded bodies ---------------------------------------------------------------------


@dataclass(frozen=True)
class RealDataCase:
    """Call derive_token_counts with ``provider`` and compare with the entry of ``extractor``."""

    provider: str
    extractor: tuple[str, str]
    flavor: str


@dataclass
class RealDataTally:
    """Bodies compared per case name, bodies skipped per case name and reason, and mismatches."""

    checked: Counter[str] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)


REQUIRED_CASES = {
    "openai-chat": RealDataCase("openai", ("openai", "chat"), "openai-chat"),
    "openai-responses": RealDataCase("openai", ("openai", "responses"), "openai-responses"),
    "openai-embeddings": RealDataCase("openai", ("openai", "embeddings"), "openai-embeddings"),
    "gemini": RealDataCase("google", ("google", "default"), "gemini"),
    "anthropic": RealDataCase("anthropic", ("anthropic", "default"), "anthropic"),
}

# Providers that use another provider's extractor, or one that reads the same shape.
ROUTED_CASES = {
    "azure chat": RealDataCase("azure", ("azure", "chat"), "openai-chat"),
    "azure responses": RealDataCase("azure", ("azure", "responses"), "openai-responses"),
    "azure embeddings": RealDataCase("azure", ("azure", "embeddings"), "openai-embeddings"),
    "openrouter chat": RealDataCase("openrouter", ("openrouter", "chat"), "openai-chat"),
    "google chat": RealDataCase("google", ("google", "chat"), "openai-chat"),
    "anthropic chat": RealDataCase("anthropic", ("anthropic", "chat"), "openai-chat"),
    "bedrock converse": RealDataCase("aws", ("aws", "default"), "bedrock-converse"),
    "claude on vertex": RealDataCase("google", ("anthropic", "default"), "anthropic"),
    "claude on bedrock": RealDataCase("aws", ("anthropic", "default"), "anthropic"),
    "claude on azure": RealDataCase("azure", ("anthropic", "default"), "anthropic"),
}

# Reasons for not comparing a body with an entry. Several extractors accept bodies of other
# shapes (OpenAI's Responses extractor reads any body with input_tokens and output_tokens),
# and those bodies are compared under the flavor of their own shape.
SKIP_OTHER_SHAPE = "payload of another shape, compared under its own flavor"
# The dataset was recorded with an older genai-prices that did not read some fields yet
# (Azure's cache_write_tokens, Bedrock's cacheDetails). genai-prices 0.2.3 reads them, so the
# entry cannot be matched.
SKIP_OLDER_ENTRY = "entry recorded with an older genai-prices, which 0.2.3 no longer reproduces"

REQUIRED_CHECKED = {
    "openai-chat": 325,
    "openai-responses": 211,
    "openai-embeddings": 3,
    "gemini": 342,
    "anthropic": 189,
}
REQUIRED_SKIPPED = {
    ("openai-responses", SKIP_OTHER_SHAPE): 189,
    ("openai-embeddings", SKIP_OTHER_SHAPE): 325,
    ("anthropic", SKIP_OTHER_SHAPE): 211,
}
ROUTED_CHECKED = {
    "azure chat": 319,
    "azure responses": 205,
    "azure embeddings": 3,
    "openrouter chat": 325,
    "google chat": 325,
    "anthropic chat": 325,
    "bedrock converse": 182,
    "claude on vertex": 189,
    "claude on bedrock": 189,
    "claude on azure": 189,
}
ROUTED_SKIPPED = {
    ("azure chat", SKIP_OLDER_ENTRY): 6,
    ("azure responses", SKIP_OLDER_ENTRY): 6,
    ("azure responses", SKIP_OTHER_SHAPE): 189,
    ("azure embeddings", SKIP_OTHER_SHAPE): 325,
    ("bedrock converse", SKIP_OLDER_ENTRY): 4,
    ("claude on vertex", SKIP_OTHER_SHAPE): 211,
    ("claude on bedrock", SKIP_OTHER_SHAPE): 211,
    ("claude on azure", SKIP_OTHER_SHAPE): 211,
}

GEMINI_FIELDS = {"promptTokenCount", "candidatesTokenCount", "totalTokenCount", "cachedContentTokenCount"}
ANTHROPIC_ONLY_FIELDS = {"cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation", "server_tool_use"}


def payload_shape(usage: Mapping[str, Any]) -> str:
    """Name the flavor that a recorded usage object belongs to, or "either" when it fits two.

    This is the test's own reading of the shapes, kept simpler than the module's.
    """
    if GEMINI_FIELDS & usage.keys():
        return "gemini"
    if "inputTokens" in usage:
        return "bedrock-converse"
    if "prompt_tokens" in usage:
        return "openai-chat" if "completion_tokens" in usage else "openai-embeddings"
    if ANTHROPIC_ONLY_FIELDS & usage.keys():
        return "anthropic"

    output_details = usage.get("output_tokens_details") or {}
    if "thinking_tokens" in output_details:
        return "anthropic"
    if "input_tokens_details" in usage or "reasoning_tokens" in output_details:
        return "openai-responses"
    return "either"


@pytest.fixture(scope="module")
def recorded_bodies() -> list[dict[str, Any]]:
    # 1,271 reduced response bodies from real calls, each with the usage that genai-prices
    # extracted per provider and API flavor.
    with shared_file("data/provider_responses.jsonl").open(encoding="utf-8") as lines:
        bodies = [json.loads(line) for line in lines]
    assert len(bodies) == 1271
    return bodies


def iter_entries(
    bodies: Sequence[Mapping[str, Any]], case: RealDataCase
) -> Iterator[tuple[int, Mapping[str, Any], Mapping[str, Any]]]:
    """Yield (line number, body, entry) for each body that ``case.extractor`` reads."""
    provider_id, api_flavor = case.extractor
    for line_number, record in enumerate(bodies, start=1):
        for entry in record["extracted"]:
            if any(
                extractor["provider_id"] == provider_id and extractor["api_flavor"] == api_flavor
                for extractor in entry["extractors"]
            ):
                yield line_number, record["body"], entry


def bare_usage(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body["usage"] if "usage" in body else body["usageMetadata"]


def is_reproduced_by_genai_prices(body: Mapping[str, Any], entry: Mapping[str, Any], case: RealDataCase) -> bool:
    """Tell whether genai-prices 0.2.3 itself still extracts the entry's usage from the body."""
    # Without the model the extractor skips the catalog lookup, which fails on unknown models.
    response = {key: value for key, value in body.items() if key not in {"file", "model", "modelVersion"}}
    provider_id, api_flavor = case.extractor
    extracted = genai_prices.extract_usage(response, provider_id=provider_id, api_flavor=api_flavor)
    reported = {key: value for key, value in vars(extracted.usage).items() if value}
    return reported == entry["usage"]


def describe_mismatch(
    line_number: int, case: RealDataCase, counts: TokenCounts, expected_usage: Mapping[str, int]
) -> str | None:
    expected_details = {
        key: value for key, value in expected_usage.items() if key not in GENAI_TO_CANONICAL and value
    }
    actual = {
        "flavor": counts.flavor,
        "input_tokens": counts.input_tokens,
        "cached_input_tokens": counts.cached_input_tokens,
        "cache_write_tokens": counts.cache_write_tokens,
        "output_tokens": counts.output_tokens,
        "reasoning_tokens": counts.reasoning_tokens,
        "details": dict(counts.details),
    }
    expected = {
        "flavor": case.flavor,
        "input_tokens": expected_usage.get("input_tokens", 0),
        "cached_input_tokens": expected_usage.get("cache_read_tokens", 0),
        "cache_write_tokens": expected_usage.get("cache_write_tokens", 0),
        "output_tokens": expected_usage.get("output_tokens", 0),
        "reasoning_tokens": expected_usage.get("output_reasoning_tokens", 0),
        "details": expected_details,
    }
    if actual == expected:
        return None
    return f"line {line_number}, {case}: got {actual}, expected {expected}"


def compare_with_recorded(bodies: Sequence[Mapping[str, Any]], cases: Mapping[str, RealDataCase]) -> RealDataTally:
    tally = RealDataTally()
    for name, case in cases.items():
        for line_number, body, entry in iter_entries(bodies, case):
            usage = bare_usage(body)
            shape = payload_shape(usage)
            if shape not in {case.flavor, "either"}:
                tally.skipped[(name, SKIP_OTHER_SHAPE)] += 1
                continue
            if not is_reproduced_by_genai_prices(body, entry, case):
                tally.skipped[(name, SKIP_OLDER_ENTRY)] += 1
                continue

            try:
                counts = derive_token_counts(case.provider, usage, body.get("model"))
            except UsageDerivationError as error:
                tally.mismatches.append(f"line {line_number}, {case}: raised {error}")
                continue

            mismatch = describe_mismatch(line_number, case, counts, entry["usage"])
            if mismatch is not None:
                tally.mismatches.append(mismatch)
            tally.checked[name] += 1
    return tally


def test_recorded_bodies_openai_gemini_anthropic(recorded_bodies: list[dict[str, Any]]) -> None:
    tally = compare_with_recorded(recorded_bodies, REQUIRED_CASES)

    assert tally.mismatches[:5] == []
    assert dict(tally.checked) == REQUIRED_CHECKED
    assert dict(tally.skipped) == REQUIRED_SKIPPED


def test_recorded_bodies_other_providers(recorded_bodies: list[dict[str, Any]]) -> None:
    tally = compare_with_recorded(recorded_bodies, ROUTED_CASES)

    assert tally.mismatches[:5] == []
    assert dict(tally.checked) == ROUTED_CHECKED
    assert dict(tally.skipped) == ROUTED_SKIPPED


def test_recorded_bodies_all_derivable(recorded_bodies: list[dict[str, Any]]) -> None:
    """Every body with a usage object of a known shape derives without error."""
    shapes: Counter[str] = Counter()
    for record in recorded_bodies:
        body = record["body"]
        if "usage" not in body and "usageMetadata" not in body:
            shapes["no usage object (Cohere embeddings meta)"] += 1
            continue
        usage = bare_usage(body)
        if "billed_units" in usage:
            shapes["Cohere billed_units, not supported"] += 1
            continue

        counts = derive_token_counts("google" if "usageMetadata" in body else "openai", usage, body.get("model"))
        shapes[counts.flavor] += 1

    assert shapes == {
        "gemini": 342,
        "openai-chat": 325,
        "openai-responses": 211,
        "anthropic": 189,
        "bedrock-converse": 186,
        "openai-embeddings": 3,
        "no usage object (Cohere embeddings meta)": 4,
        "Cohere billed_units, not supported": 11,
    }


# --- the rules table in docs/usage_rules.md ---------------------------------------------------

DOC_ROW = re.compile(
    r"^\| `(?P<flavor>[a-z-]+)` \| (?P<providers>[^|]+?) \| `(?P<field>[^`]+)` \| `(?P<target>[^`]+)` \|"
)


@dataclass(frozen=True)
class DocRow:
    flavor: str
    provider: str
    field: str
    genai_key: str


def read_doc_rows() -> set[DocRow]:
    rows: set[DocRow] = set()
    for line in RULES_DOC.read_text(encoding="utf-8").splitlines():
        match = DOC_ROW.match(line)
        if match is None:
            continue

        providers_text = match["providers"].strip()
        providers = (
            DOCUMENTED_PROVIDERS if providers_text == "all" else tuple(p.strip(" `") for p in providers_text.split(","))
        )
        target = match["target"]
        genai_key = target.removeprefix("details.") if target.startswith("details.") else CANONICAL_TO_GENAI_USAGE_KEY[target]
        for provider in providers:
            rows.add(DocRow(match["flavor"], provider, match["field"], genai_key))
    return rows


def format_path(path: str | Sequence[str | ArrayMatch]) -> str:
    if isinstance(path, str):
        return path
    parts: list[str] = []
    for step in path:
        if isinstance(step, ArrayMatch):
            parts[-1] += f"[{step.field}={getattr(step.match, 'equals')}]"
        else:
            parts.append(step)
    return ".".join(parts)


def code_rows() -> set[DocRow]:
    rows: set[DocRow] = set()
    providers = {provider.id: provider for provider in genai_prices.data_snapshot.get_snapshot().providers}
    for flavor in FLAVORS:
        for provider in DOCUMENTED_PROVIDERS:
            provider_id, api_flavor = choose_extractor(provider, flavor)
            extractor = next(e for e in providers[provider_id].extractors or [] if e.api_flavor == api_flavor)
            for mapping in extractor.mappings:
                rows.add(DocRow(flavor, provider, format_path(mapping.path), mapping.dest))
    return rows


def test_rules_doc_rows_match_extractors() -> None:
    doc_rows = read_doc_rows()

    assert len(doc_rows) > 0
    assert sorted(doc_rows - code_rows(), key=str) == []


def test_rules_doc_lists_every_mapping() -> None:
    assert sorted(code_rows() - read_doc_rows(), key=str) == []
