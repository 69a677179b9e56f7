"""Derive canonical token counts from a provider's own usage payload.

Every provider counts tokens in its own way. Anthropic leaves cache reads and writes out of
``input_tokens``, Gemini leaves thinking tokens out of ``candidatesTokenCount``, and OpenAI
counts cached and reasoning tokens inside the totals. This module turns each payload into one
convention:

- ``input_tokens`` is all input, cached input included. ``cached_input_tokens`` (cache reads)
  and ``cache_write_tokens`` are parts of it.
- ``output_tokens`` is all output, reasoning included. ``reasoning_tokens`` is part of it.
- ``details`` contains every further genai-prices usage key that the payload yields (audio, image,
  tool-use prompt, cache TTL, web searches, ...), so that it can be priced too.

The extraction itself is done by the usage extractors of genai-prices (pinned to 0.2.3). This
module picks the payload flavor, chooses the extractor, wraps the bare usage object into the
response shape that the extractor reads, rejects counts that are not non-negative integers and
checks the invariants above. Every function is pure. docs/usage_rules.md lists the rules per
flavor and field.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ArrayMatch, Provider, UsageExtractor

__all__ = [
    "CANONICAL_TO_GENAI_USAGE_KEY",
    "FLAVORS",
    "TokenCounts",
    "UsageDerivationError",
    "choose_extractor",
    "derive_token_counts",
]

FLAVOR_OPENAI_CHAT: Final = "openai-chat"
FLAVOR_OPENAI_RESPONSES: Final = "openai-responses"
FLAVOR_OPENAI_EMBEDDINGS: Final = "openai-embeddings"
FLAVOR_OPENAI_IMAGES: Final = "openai-images"
FLAVOR_OPENAI_REALTIME: Final = "openai-realtime"
FLAVOR_ANTHROPIC: Final = "anthropic"
FLAVOR_GEMINI: Final = "gemini"
FLAVOR_BEDROCK_CONVERSE: Final = "bedrock-converse"

# The genai-prices extractor (provider_id, api_flavor) that reads each payload flavor when the
# provider has no extractor of its own for it.
_REFERENCE_EXTRACTORS: Final[Mapping[str, tuple[str, str]]] = {
    FLAVOR_OPENAI_CHAT: ("openai", "chat"),
    FLAVOR_OPENAI_RESPONSES: ("openai", "responses"),
    FLAVOR_OPENAI_EMBEDDINGS: ("openai", "embeddings"),
    FLAVOR_OPENAI_IMAGES: ("openai", "images"),
    FLAVOR_OPENAI_REALTIME: ("openai", "realtime"),
    # NOTE: Anthropic reports server-side compaction and advisor steps as entries of
    # usage.iterations, and the top-level counts leave them out. genai-prices 0.2.3 reads only
    # the top level, so the tokens of those steps are not counted.
    FLAVOR_ANTHROPIC: ("anthropic", "default"),
    FLAVOR_GEMINI: ("google", "default"),
    FLAVOR_BEDROCK_CONVERSE: ("aws", "default"),
}

FLAVORS: Final[tuple[str, ...]] = tuple(_REFERENCE_EXTRACTORS)

# OpenAI-compatible APIs are reimplementations, and some count differently: genai-prices 0.2.3
# adds xAI's reasoning tokens to completion_tokens, for example. So an OpenAI-shaped payload is
# read with the provider's own genai-prices extractor of this api_flavor when there is one.
_OPENAI_COMPATIBLE_API_FLAVORS: Final[Mapping[str, str]] = {
    FLAVOR_OPENAI_CHAT: "chat",
    FLAVOR_OPENAI_RESPONSES: "responses",
    FLAVOR_OPENAI_EMBEDDINGS: "embeddings",
    FLAVOR_OPENAI_IMAGES: "images",
    FLAVOR_OPENAI_REALTIME: "realtime",
}

# Providers whose OpenAI-compatible extractor has another api_flavor name in genai-prices 0.2.3.
_API_FLAVOR_OVERRIDES: Final[Mapping[tuple[str, str], str]] = {
    ("openrouter", FLAVOR_OPENAI_RESPONSES): "default",
    ("perplexity", FLAVOR_OPENAI_CHAT): "default",
    ("groq", FLAVOR_OPENAI_CHAT): "default",
    ("mistral", FLAVOR_OPENAI_CHAT): "default",
}

# Providers whose payloads with only input_tokens and output_tokens are Claude's: Anthropic,
# Bedrock and Vertex AI, where Gemini uses other names. Azure also serves OpenAI's Responses
# API, so there the model name decides. Both readings give the same canonical counts.
_CLAUDE_HOSTS: Final = frozenset({"anthropic", "aws", "google"})

# Fields that only one payload family has, used to pick the flavor.
_GEMINI_FIELDS: Final = frozenset(
    {
        "promptTokenCount",
        "candidatesTokenCount",
        "totalTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
    }
)
_BEDROCK_CONVERSE_FIELDS: Final = frozenset({"inputTokens", "outputTokens"})
_ANTHROPIC_FIELDS: Final = frozenset(
    {"cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation", "server_tool_use"}
)
_OPENAI_IMAGE_INPUT_FIELDS: Final = frozenset({"text_tokens", "image_tokens"})
_OPENAI_REALTIME_FIELDS: Final = frozenset({"input_token_details", "output_token_details"})

# The fields each flavor needs, for error messages.
_EXPECTED_FIELDS: Final[Mapping[str, str]] = {
    FLAVOR_OPENAI_CHAT: "prompt_tokens and completion_tokens",
    FLAVOR_OPENAI_RESPONSES: "input_tokens and output_tokens",
    FLAVOR_OPENAI_EMBEDDINGS: "prompt_tokens",
    FLAVOR_OPENAI_IMAGES: (
        "input_tokens, input_tokens_details.text_tokens, input_tokens_details.image_tokens and output_tokens"
    ),
    FLAVOR_OPENAI_REALTIME: "input_tokens, output_tokens and input_token_details",
    FLAVOR_ANTHROPIC: "input_tokens and output_tokens",
    FLAVOR_GEMINI: "promptTokenCount and candidatesTokenCount",
    FLAVOR_BEDROCK_CONVERSE: "inputTokens and outputTokens",
}
_KNOWN_SHAPES: Final = (
    "prompt_tokens with completion_tokens (OpenAI chat), prompt_tokens alone (OpenAI embeddings), "
    "input_tokens with output_tokens (OpenAI Responses, OpenAI images, Anthropic Messages), "
    "promptTokenCount or candidatesTokenCount (Gemini), inputTokens with outputTokens (Bedrock Converse)"
)

# Payload field with the reasoning tokens of each flavor. This module reads the field itself
# only when the chosen extractor has no mapping to output_reasoning_tokens.
_REASONING_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    FLAVOR_OPENAI_CHAT: ("completion_tokens_details", "reasoning_tokens"),
    FLAVOR_OPENAI_RESPONSES: ("output_tokens_details", "reasoning_tokens"),
    FLAVOR_ANTHROPIC: ("output_tokens_details", "thinking_tokens"),
    FLAVOR_GEMINI: ("thoughtsTokenCount",),
}

CANONICAL_TO_GENAI_USAGE_KEY: Final[Mapping[str, str]] = {
    "input_tokens": "input_tokens",
    "cached_input_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "output_tokens": "output_tokens",
    "reasoning_tokens": "output_reasoning_tokens",
}
_CANONICAL_GENAI_USAGE_KEYS: Final = frozenset(CANONICAL_TO_GENAI_USAGE_KEY.values())

_PathStep = str | ArrayMatch
_Path = tuple[_PathStep, ...]


class _CountField(NamedTuple):
    """A payload field that should contain a token count, or a list of objects that do.

    ``item_path`` is None for a plain field. Otherwise ``path`` leads to a list, and
    ``item_path`` leads from each item to its count, as in Gemini's promptTokensDetails.
    """

    path: tuple[str, ...]
    item_path: tuple[str, ...] | None


@dataclass(frozen=True)
class TokenCounts:
    """Token counts of one API call in the canonical convention described in the module docstring."""

    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    details: Mapping[str, int]
    """Further genai-prices usage keys with their non-zero values, such as input_audio_tokens."""
    flavor: str
    """Payload flavor that the counts were read from, one of FLAVORS."""

    def as_genai_usage(self) -> dict[str, int]:
        """Return the counts as keyword arguments for ``genai_prices.Usage``, zeros left out."""
        usage = {
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "output_reasoning_tokens": self.reasoning_tokens,
            **self.details,
        }
        return {key: value for key, value in usage.items() if value != 0}


class UsageDerivationError(ValueError):
    """A usage payload that cannot be turned into canonical token counts.

    The message names the provider, the payload keys seen and what was expected.
    """


@dataclass(frozen=True)
class _Route:
    """The genai-prices extractor for one provider and flavor, with what it reads and writes."""

    flavor: str
    provider_id: str
    api_flavor: str
    extractor: UsageExtractor
    root: tuple[str, ...]
    count_fields: tuple[_CountField, ...]
    destinations: frozenset[str]
    reasoning_fallback: tuple[str, ...] | None


def derive_token_counts(provider: str, usage: Mapping[str, Any], model: str | None = None) -> TokenCounts:
    """Derive canonical token counts from the bare usage object of one provider response.

    ``usage`` is the response's ``usage`` or ``usageMetadata`` object, not the whole response.
    ``provider`` is the normalized provider id (openai, azure, openrouter, google, anthropic,
    aws, ...), and ``model`` only helps to tell an Anthropic payload from an OpenAI Responses
    payload when the keys cannot. Raise UsageDerivationError when the payload is not a mapping,
    has no known shape, misses a required field, has a count that is not a non-negative integer,
    or breaks an invariant (cached plus cache-write input above input, reasoning above output).
    """
    if not isinstance(usage, Mapping):
        raise UsageDerivationError(
            f"Invalid usage payload for provider {provider!r}: expected a JSON object (mapping), "
            f"got {type(usage).__name__}."
        )

    flavor = _detect_flavor(provider, usage, model)
    route = _find_route(provider, flavor)
    _validate_counts(route, provider, usage)

    reported = _extract_reported_usage(route, provider, usage)
    counts = _to_token_counts(route, usage, reported)
    _check_invariants(counts, provider, usage)
    return counts


def choose_extractor(provider: str, flavor: str) -> tuple[str, str]:
    """Return the genai-prices extractor, as (provider_id, api_flavor), for a provider and flavor.

    Anthropic, Gemini and Bedrock Converse payloads always use the extractor of the vendor that
    defines the payload. Claude on Vertex AI, Bedrock and Azure sends Anthropic's usage fields,
    and genai-prices 0.2.3 reads them there with copies of Anthropic's extractor that skip web
    searches and thinking tokens. OpenAI-shaped payloads use the provider's own extractor when
    genai-prices has one that reads the same root object, and OpenAI's otherwise. Raise
    ValueError for a flavor that is not in FLAVORS.
    """
    if flavor not in _REFERENCE_EXTRACTORS:
        raise ValueError(f"Unknown usage flavor {flavor!r}: expected one of {', '.join(FLAVORS)}.")

    reference = _REFERENCE_EXTRACTORS[flavor]
    if flavor not in _OPENAI_COMPATIBLE_API_FLAVORS:
        return reference

    genai_provider = _find_genai_provider(provider)
    if genai_provider is None:
        return reference

    api_flavor = _API_FLAVOR_OVERRIDES.get(
        (genai_provider.id, flavor), _OPENAI_COMPATIBLE_API_FLAVORS[flavor]
    )
    own_extractor = _find_extractor_of(genai_provider, api_flavor)
    reference_extractor = _find_extractor(*reference)
    if own_extractor is None or _as_path(own_extractor.root) != _as_path(reference_extractor.root):
        return reference
    return genai_provider.id, api_flavor


def _detect_flavor(provider: str, usage: Mapping[str, Any], model: str | None) -> str:
    keys = usage.keys()

    if not _GEMINI_FIELDS.isdisjoint(keys):
        return FLAVOR_GEMINI
    if not _BEDROCK_CONVERSE_FIELDS.isdisjoint(keys):
        return FLAVOR_BEDROCK_CONVERSE
    if "prompt_tokens" in keys:
        return FLAVOR_OPENAI_CHAT if "completion_tokens" in keys else FLAVOR_OPENAI_EMBEDDINGS
    if "input_tokens" in keys or "output_tokens" in keys:
        return _detect_input_output_flavor(provider, usage, model)

    raise UsageDerivationError(
        f"Unrecognized usage payload for provider {provider!r}{_model_suffix(model)}: "
        f"keys {_describe_keys(usage)}. Expected {_KNOWN_SHAPES}."
    )


def _detect_input_output_flavor(provider: str, usage: Mapping[str, Any], model: str | None) -> str:
    """Tell apart the payloads that share input_tokens and output_tokens.

    OpenAI Responses, OpenAI images, OpenAI realtime and Anthropic Messages all use these two
    names, so the detail objects decide, and the provider or model decides when there are none.
    """
    keys = usage.keys()
    if not _OPENAI_REALTIME_FIELDS.isdisjoint(keys):
        return FLAVOR_OPENAI_REALTIME

    input_details = usage.get("input_tokens_details")
    if isinstance(input_details, Mapping) and not _OPENAI_IMAGE_INPUT_FIELDS.isdisjoint(input_details.keys()):
        return FLAVOR_OPENAI_IMAGES
    if not _ANTHROPIC_FIELDS.isdisjoint(keys):
        return FLAVOR_ANTHROPIC
    if "input_tokens_details" in keys:
        return FLAVOR_OPENAI_RESPONSES

    output_details = usage.get("output_tokens_details")
    if isinstance(output_details, Mapping):
        if "thinking_tokens" in output_details:
            return FLAVOR_ANTHROPIC
        if "reasoning_tokens" in output_details:
            return FLAVOR_OPENAI_RESPONSES

    genai_provider = _find_genai_provider(provider)
    hosts_claude = genai_provider is not None and genai_provider.id in _CLAUDE_HOSTS
    if hosts_claude or (model is not None and "claude" in model.lower()):
        return FLAVOR_ANTHROPIC
    return FLAVOR_OPENAI_RESPONSES


@functools.cache
def _find_genai_provider(provider: str) -> Provider | None:
    """Find the genai-prices provider for a provider id, or None when genai-prices has none.

    The result is cached for the life of the process, so a price update fetched later by
    genai_prices.UpdatePrices does not change the extractors used here.
    """
    try:
        return get_snapshot().find_provider(None, provider, None)
    except LookupError:
        return None


def _find_extractor_of(genai_provider: Provider, api_flavor: str) -> UsageExtractor | None:
    for extractor in genai_provider.extractors or []:
        if extractor.api_flavor == api_flavor:
            return extractor
    return None


@functools.cache
def _find_extractor(provider_id: str, api_flavor: str) -> UsageExtractor:
    genai_provider = _find_genai_provider(provider_id)
    extractor = None if genai_provider is None else _find_extractor_of(genai_provider, api_flavor)
    if extractor is None:
        raise LookupError(f"genai-prices has no usage extractor {provider_id}/{api_flavor}.")
    return extractor


@functools.cache
def _find_route(provider: str, flavor: str) -> _Route:
    provider_id, api_flavor = choose_extractor(provider, flavor)
    extractor = _find_extractor(provider_id, api_flavor)

    root = _as_path(extractor.root)
    if not all(isinstance(step, str) for step in root):
        raise LookupError(f"genai-prices extractor {provider_id}/{api_flavor} has a root that is not a key path.")

    count_fields = [_to_count_field(_as_path(mapping.path)) for mapping in extractor.mappings]
    destinations = frozenset(mapping.dest for mapping in extractor.mappings)

    reasoning_fallback = None
    if "output_reasoning_tokens" not in destinations:
        reasoning_fallback = _REASONING_FIELDS.get(flavor)
        if reasoning_fallback is not None:
            count_fields.append(_CountField(reasoning_fallback, None))

    return _Route(
        flavor=flavor,
        provider_id=provider_id,
        api_flavor=api_flavor,
        extractor=extractor,
        root=tuple(str(step) for step in root),
        # Several mappings read one field (Gemini's thoughtsTokenCount feeds two keys, and the
        # five modality mappings read one list), so each field is checked once.
        count_fields=tuple(dict.fromkeys(count_fields)),
        destinations=destinations,
        reasoning_fallback=reasoning_fallback,
    )


def _to_count_field(path: _Path) -> _CountField:
    """Split an extractor mapping path at its list step, if it has one."""
    list_steps = [index for index, step in enumerate(path) if isinstance(step, ArrayMatch)]
    if not list_steps:
        return _CountField(tuple(str(step) for step in path), None)

    if len(list_steps) > 1 or not all(isinstance(step, str) for step in path[list_steps[0] + 1 :]):
        raise LookupError(f"Unsupported genai-prices mapping path with several list steps: {path!r}.")
    index = list_steps[0]
    return _CountField(
        tuple(str(step) for step in path[:index]),
        tuple(str(step) for step in path[index + 1 :]),
    )


def _validate_counts(route: _Route, provider: str, usage: Mapping[str, Any]) -> None:
    """Raise UsageDerivationError unless every field that the extractor reads is a count.

    genai-prices silently skips an optional field of the wrong type (a string, say), and it
    accepts floats, so each field is checked here before extraction. Missing and null fields
    are allowed, because the extractor treats them as absent. For a list such as Gemini's
    promptTokensDetails, every item is checked, not only the items the extractor matches.
    """
    for field in route.count_fields:
        problem = _find_count_problem(usage, field)
        if problem is not None:
            raise UsageDerivationError(
                f"Invalid usage payload for provider {provider!r} (flavor {route.flavor}): {problem}. "
                f"Payload keys: {_describe_keys(usage)}."
            )


def _find_count_problem(usage: Mapping[str, Any], field: _CountField) -> str | None:
    """Describe what is wrong with a count field, or return None if it is valid or absent."""
    value, problem = _walk(usage, field.path)
    if problem is not None or value is None:
        return problem
    if field.item_path is None:
        return _describe_invalid_count(value, field.path)

    if type(value) is not list and (not isinstance(value, Sequence) or isinstance(value, str)):
        return f"`{'.'.join(field.path)}` is {type(value).__name__}, expected a list"
    for index, item in enumerate(value):
        item_path = (*field.path[:-1], f"{field.path[-1]}[{index}]")
        item_value, problem = _walk(item, field.item_path, item_path)
        if problem is None and item_value is not None:
            problem = _describe_invalid_count(item_value, (*item_path, *field.item_path))
        if problem is not None:
            return problem
    return None


def _walk(data: Any, path: tuple[str, ...], walked: tuple[str, ...] = ()) -> tuple[Any, str | None]:
    """Follow ``path`` through nested objects and return (value, problem).

    The value is None when a key is missing or null. The problem describes a step that is not
    an object. ``walked`` is the path already followed, used only in the problem text.
    """
    value = data
    for depth, key in enumerate(path):
        if value is None:
            return None, None
        if type(value) is not dict and not isinstance(value, Mapping):
            location = ".".join((*walked, *path[:depth]))
            return None, f"`{location}` is {type(value).__name__}, expected an object"
        value = value.get(key)
    return value, None


def _describe_invalid_count(value: Any, path: tuple[str, ...]) -> str | None:
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        if value >= 0:
            return None
        return f"`{'.'.join(path)}` is {value}, expected a non-negative integer"
    return f"`{'.'.join(path)}` is {value!r} ({type(value).__name__}), expected a non-negative integer"


def _extract_reported_usage(route: _Route, provider: str, usage: Mapping[str, Any]) -> dict[str, int]:
    """Run the genai-prices extractor and return the values it reported, by usage key.

    genai-prices infers values that were not reported when one reads them as attributes of its
    Usage object, so only the attributes that the extraction set are read here.
    """
    response: Mapping[str, Any] = usage
    for key in reversed(route.root):
        response = {key: response}

    try:
        _, extracted = route.extractor.extract(response)
    except ValueError as error:
        raise UsageDerivationError(
            f"Invalid usage payload for provider {provider!r} (flavor {route.flavor}, read with genai-prices "
            f"extractor {route.provider_id}/{route.api_flavor}): {error}. "
            f"Payload keys: {_describe_keys(usage)}. Expected {_EXPECTED_FIELDS[route.flavor]}."
        ) from error

    return {key: value for key, value in vars(extracted).items() if key in route.destinations}


def _to_token_counts(route: _Route, usage: Mapping[str, Any], reported: Mapping[str, int]) -> TokenCounts:
    reasoning_tokens = reported.get("output_reasoning_tokens", 0)
    if route.reasoning_fallback is not None:
        reasoning_tokens = _read_count(usage, route.reasoning_fallback)

    details = {
        key: value for key, value in reported.items() if key not in _CANONICAL_GENAI_USAGE_KEYS and value != 0
    }
    return TokenCounts(
        input_tokens=reported.get("input_tokens", 0),
        cached_input_tokens=reported.get("cache_read_tokens", 0),
        cache_write_tokens=reported.get("cache_write_tokens", 0),
        output_tokens=reported.get("output_tokens", 0),
        reasoning_tokens=reasoning_tokens,
        details=details,
        flavor=route.flavor,
    )


def _read_count(usage: Mapping[str, Any], path: tuple[str, ...]) -> int:
    """Read a count that _validate_counts has already checked, returning 0 when it is absent."""
    value: Any = usage
    for key in path:
        if not isinstance(value, Mapping):
            return 0
        value = value.get(key)
    return value if isinstance(value, int) else 0


def _check_invariants(counts: TokenCounts, provider: str, usage: Mapping[str, Any]) -> None:
    cached_and_written = counts.cached_input_tokens + counts.cache_write_tokens
    if cached_and_written > counts.input_tokens:
        raise UsageDerivationError(
            f"Invalid usage payload for provider {provider!r} (flavor {counts.flavor}): cached input tokens "
            f"({counts.cached_input_tokens}) plus cache-write tokens ({counts.cache_write_tokens}) exceed "
            f"input tokens ({counts.input_tokens}). Payload keys: {_describe_keys(usage)}. "
            f"Expected the input total to include cache reads and writes."
        )
    if counts.reasoning_tokens > counts.output_tokens:
        raise UsageDerivationError(
            f"Invalid usage payload for provider {provider!r} (flavor {counts.flavor}): reasoning tokens "
            f"({counts.reasoning_tokens}) exceed output tokens ({counts.output_tokens}). "
            f"Payload keys: {_describe_keys(usage)}. Expected the output total to include reasoning."
        )


def _as_path(path: str | Sequence[_PathStep]) -> _Path:
    return (path,) if isinstance(path, str) else tuple(path)


def _describe_keys(usage: Mapping[str, Any]) -> str:
    return "[" + ", ".join(sorted(str(key) for key in usage.keys())) + "]"


def _model_suffix(model: str | None) -> str:
    return "" if model is None else f" and model {model!r}"
