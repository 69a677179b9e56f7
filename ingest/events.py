"""Parse and validate canonical usage events.

A canonical event is one JSON object (or one CSV row with the same column names) describing one
call to a paid AI API. This module turns such a record into a `UsageEvent` or raises
`InvalidEvent` with a reason code and a message that names the value and the fix. It does no I/O:
readers hand it records, and writers store what it returns.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any

from genai_prices.data_units import unit_data

from ingest.usage import TokenCounts, UsageDerivationError, derive_token_counts

REQUIRED_FIELDS = ("event_id", "created_at", "provider", "operation")

STRING_FIELDS = (
    "model",
    "platform",
    "service",
    "tool_name",
    "user_id",
    "organization_id",
    "request_id",
    "run_id",
    "service_tier",
    "unit_type",
)

TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)

OBJECT_FIELDS = ("usage", "attributes")

KNOWN_FIELDS = frozenset(
    (*REQUIRED_FIELDS, *STRING_FIELDS, *TOKEN_FIELDS, *OBJECT_FIELDS, "units", "cost_usd", "metadata",
     "usage_details")
)

# Names that producers use for the same provider. The value is (provider, platform implied by the
# name, or None when the name implies no platform).
PROVIDER_ALIASES: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", None),
    "open-ai": ("openai", None),
    "azure": ("openai", "azure"),
    "azure-openai": ("openai", "azure"),
    "azure_openai": ("openai", "azure"),
    "google": ("google", None),
    "gemini": ("google", None),
    "google-gla": ("google", None),
    "google-genai": ("google", None),
    "google_genai": ("google", None),
    "googleai": ("google", None),
    "vertex": ("google", "vertex"),
    "vertexai": ("google", "vertex"),
    "vertex_ai": ("google", "vertex"),
    "google-vertex": ("google", "vertex"),
    "anthropic": ("anthropic", None),
    "claude": ("anthropic", None),
    "bedrock": ("aws", "bedrock"),
    "aws": ("aws", "bedrock"),
    "aws-bedrock": ("aws", "bedrock"),
    "amazon-bedrock": ("aws", "bedrock"),
    "openrouter": ("openrouter", "openrouter"),
    "xai": ("x-ai", None),
    "x-ai": ("x-ai", None),
    "grok": ("x-ai", None),
    "mistralai": ("mistral", None),
}

# Usage keys of genai-prices' unit registry, the names `usage_details` may use.
GENAI_USAGE_KEYS = frozenset(unit_data)

PLATFORMS = frozenset(("api", "vertex", "azure", "bedrock", "openrouter"))

SERVICE_TIER_ALIASES = {
    "standard": "standard",
    "default": "standard",
    "auto": "standard",
    "on_demand": "standard",
    "on-demand": "standard",
    "batch": "batch",
    "flex": "flex",
    "priority": "priority",
}

COST_SCALE = Decimal("0.000000000001")  # decimal(38, 12), the type of every cost column
UNITS_SCALE = Decimal("0.000001")  # decimal(38, 6), enough for fractional seconds of video
# Costs and units stay below 10^12 per event, so sums over billions of events still fit the
# 26 integer digits that decimal(38, 12) leaves.
MAX_AMOUNT_DIGITS = 12
# Far above any real call, and low enough that count times price stays within decimal(38, 18).
MAX_TOKEN_COUNT = 10**15

_VERTEX_MODEL_PATH = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/models/")
# Python's json module parses nested arrays and objects recursively, so it raises RecursionError
# (not a decode error) on text nested deeper than the interpreter's recursion limit.
TOO_DEEP = "nested deeper than the JSON parser allows (about 1,000 levels)"
# Code points of UTF-16 surrogates, which a JSON escape can produce alone but no text can contain.
_UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")
# RFC 3339 needs a full date and a time; Python's parser alone would also take a bare date.
_RFC3339_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


class InvalidEvent(ValueError):
    """A record that cannot land as a usage event; `reason` is a stable code for grouping."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class UsageEvent:
    """One validated usage event in the canonical token convention, created_at in naive UTC."""

    event_id: str
    created_at: datetime
    provider: str
    provider_as_sent: str
    operation: str
    platform: str
    model: str | None
    model_name: str | None
    service: str | None
    tool_name: str | None
    user_id: str | None
    organization_id: str | None
    request_id: str | None
    run_id: str | None
    service_tier: str
    input_tokens: int | None
    cached_input_tokens: int | None
    cache_write_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    usage_details: Mapping[str, int] | None
    usage_flavor: str | None
    units: Decimal | None
    unit_type: str | None
    reported_cost_usd: Decimal | None
    usage_payload: Any
    attributes: Mapping[str, Any] | None
    metadata: Any
    extra_fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_usage(self) -> bool:
        """Whether any usage arrived: tokens, a usage payload, or units."""
        tokens = (self.input_tokens, self.output_tokens, self.cached_input_tokens, self.cache_write_tokens)
        return any(count is not None for count in tokens) or self.units is not None


def parse_json_line(text: str) -> dict[str, Any]:
    """Parse one JSON Lines record, keeping numbers with a fraction as exact decimals."""
    try:
        record = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise InvalidEvent(
            "invalid_json",
            # Some messages of the json module end in "at" already ("Invalid control character at").
            f"invalid JSON ({error.msg.removesuffix(' at')} at column {error.colno}); "
            "write one complete JSON object per line",
        ) from None
    except RecursionError:
        raise InvalidEvent("invalid_json", f"JSON {TOO_DEEP}; write events with flat fields") from None
    if not isinstance(record, dict):
        raise InvalidEvent(
            "not_an_object",
            f"expected a JSON object, got {type(record).__name__}; write one event object per line",
        )
    return record


def token_usage_event_id(row_id: str) -> str:
    """Return the event id of a row of the app's token_usage table, shared by every path that reads it."""
    return f"token_usage:{row_id}"


def derived_event_id(raw_text: str, line_number: int) -> str:
    """Return a stable event id for a record that has none, from its content and its line."""
    digest = hashlib.sha256(f"{line_number}\n{raw_text}".encode()).hexdigest()
    return f"derived:{digest[:32]}"


def parse_event(record: Mapping[str, Any]) -> UsageEvent:
    """Validate one record and return it as a canonical `UsageEvent`.

    Raises `InvalidEvent` on the first problem found, naming the field, the value and the fix.
    """
    for name in REQUIRED_FIELDS:
        if _blank(record.get(name)):
            raise InvalidEvent(f"missing_{name}", f"missing required field {name!r}; every event needs it")

    event_id = string_field(record, "event_id")
    created_at = parse_timestamp(record["created_at"])
    provider_as_sent = string_field(record, "provider")
    provider, implied_platform = normalize_provider(provider_as_sent)
    operation = string_field(record, "operation")
    strings = {name: optional_string_field(record, name) for name in STRING_FIELDS}

    platform = normalize_platform(strings["platform"] or implied_platform or "api")
    service_tier = normalize_service_tier(strings["service_tier"])
    model = strings["model"]

    counts = _token_counts(record, provider, model)
    usage_details = dict(counts.details) if counts and counts.details else None
    _check_token_invariants(counts)

    units = _optional_decimal(record, "units", UNITS_SCALE)
    unit_type = strings["unit_type"]
    if (units is None) != (unit_type is None):
        raise InvalidEvent(
            "units_without_unit_type",
            f"units={record.get('units')!r} and unit_type={record.get('unit_type')!r}: "
            "give both (for example units=8, unit_type='video_seconds') or neither",
        )

    return UsageEvent(
        event_id=event_id,
        created_at=created_at,
        provider=provider,
        provider_as_sent=provider_as_sent,
        operation=operation,
        platform=platform,
        model=model,
        model_name=normalize_model_name(model),
        service=strings["service"],
        tool_name=strings["tool_name"],
        user_id=strings["user_id"],
        organization_id=strings["organization_id"],
        request_id=strings["request_id"],
        run_id=strings["run_id"],
        service_tier=service_tier,
        input_tokens=counts.input_tokens if counts else None,
        cached_input_tokens=counts.cached_input_tokens if counts else None,
        cache_write_tokens=counts.cache_write_tokens if counts else None,
        output_tokens=counts.output_tokens if counts else None,
        reasoning_tokens=counts.reasoning_tokens if counts else None,
        usage_details=usage_details,
        usage_flavor=counts.flavor if counts else None,
        units=units,
        unit_type=unit_type.lower() if unit_type else None,
        reported_cost_usd=_optional_decimal(record, "cost_usd", COST_SCALE),
        usage_payload=json_value(record.get("usage")),
        attributes=optional_object_field(record, "attributes"),
        metadata=json_value(record.get("metadata")),
        extra_fields={key: value for key, value in record.items() if key not in KNOWN_FIELDS},
    )


def parse_timestamp(value: Any) -> datetime:
    """Parse an RFC 3339 timestamp into naive UTC; a timestamp without an offset is UTC."""
    if not isinstance(value, str):
        raise InvalidEvent(
            "invalid_created_at",
            f"created_at={value!r} is not a string; use RFC 3339, for example 2025-09-03T10:00:00Z",
        )
    text = value.strip()
    if not _RFC3339_PREFIX.match(text):
        raise InvalidEvent(
            "invalid_created_at",
            f"created_at={value!r} is not an RFC 3339 timestamp; use for example 2025-09-03T10:00:00Z",
        )
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    # PostgreSQL writes offsets as +00 or -02; Python wants +00:00.
    text = re.sub(r"([+-]\d{2})$", r"\1:00", text)
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise InvalidEvent(
            "invalid_created_at",
            f"created_at={value!r} is not an RFC 3339 timestamp between years 1 and 9999 in UTC; "
            "use for example 2025-09-03T10:00:00Z",
        ) from None
    return parsed


def normalize_provider(value: str) -> tuple[str, str | None]:
    """Return the canonical provider name and the platform its alias implies, if any."""
    key = value.strip().lower().replace(" ", "-")
    return PROVIDER_ALIASES.get(key, (key, None))


def normalize_platform(value: str) -> str:
    """Return the platform in lower case, or raise for a platform the catalog cannot map."""
    platform = value.strip().lower()
    if platform not in PLATFORMS:
        raise InvalidEvent(
            "invalid_platform",
            f"platform={value!r} is not one of {', '.join(sorted(PLATFORMS))}; "
            "use api for the provider's own API",
        )
    return platform


def normalize_service_tier(value: str | None) -> str:
    """Return standard, batch, flex or priority for known names; an absent tier is standard.

    Another tier (OpenAI's `scale`, say) is kept in lower case: the event lands, and stays
    unpriced until a price for that tier exists.
    """
    if value is None:
        return "standard"
    name = value.strip().lower()
    return SERVICE_TIER_ALIASES.get(name, name)


def normalize_model_name(model: str | None) -> str | None:
    """Strip SDK prefixes (`models/`, Vertex resource paths) and lower-case a model name."""
    if model is None:
        return None
    name = _VERTEX_MODEL_PATH.sub("", model.strip().lower())
    return name.removeprefix("models/") or None


def _token_counts(record: Mapping[str, Any], provider: str, model: str | None) -> TokenCounts | None:
    explicit = {name: _optional_count(record, name) for name in TOKEN_FIELDS}
    explicit_details = usage_details_field(record)
    payload = record.get("usage")
    if _blank(payload):
        if all(count is None for count in explicit.values()) and not explicit_details:
            return None
        return TokenCounts(
            input_tokens=explicit["input_tokens"] or 0,
            cached_input_tokens=explicit["cached_input_tokens"] or 0,
            cache_write_tokens=explicit["cache_write_tokens"] or 0,
            output_tokens=explicit["output_tokens"] or 0,
            reasoning_tokens=explicit["reasoning_tokens"] or 0,
            details=explicit_details,
            flavor="tokens",
        )

    if isinstance(payload, str):
        payload = _json_object_text(payload, "usage")
    if not isinstance(payload, Mapping):
        raise InvalidEvent(
            "invalid_usage",
            f"usage={payload!r} is not an object; send the provider's usage payload as returned",
        )
    try:
        derived = derive_token_counts(provider, payload, model)
    except UsageDerivationError as error:
        raise InvalidEvent("invalid_usage", str(error)) from None

    for key, count in explicit_details.items():
        if derived.details.get(key, 0) != count:
            raise InvalidEvent(
                "tokens_disagree_with_usage",
                f"usage_details {key}={count} disagrees with {derived.details.get(key, 0)} derived from the "
                "usage payload; send either the payload or matching counts",
            )
    for name, count in explicit.items():
        if count is not None and count != getattr(derived, name):
            raise InvalidEvent(
                "tokens_disagree_with_usage",
                f"{name}={count} disagrees with {getattr(derived, name)} derived from the usage payload; "
                "send either the payload or matching token counts",
            )
    return derived


def _check_token_invariants(counts: TokenCounts | None) -> None:
    if counts is None:
        return
    if counts.cached_input_tokens + counts.cache_write_tokens > counts.input_tokens:
        raise InvalidEvent(
            "cached_exceeds_input",
            f"cached_input_tokens={counts.cached_input_tokens} plus cache_write_tokens="
            f"{counts.cache_write_tokens} exceed input_tokens={counts.input_tokens}; "
            "input_tokens counts all input, cached included",
        )
    for key, count in counts.details.items():
        if not key.endswith("_tokens"):
            continue
        total_name = "output_tokens" if key.startswith("output_") else "input_tokens"
        total = getattr(counts, total_name)
        if count > total:
            raise InvalidEvent(
                "detail_exceeds_total",
                f"usage_details {key}={count} exceeds {total_name}={total}; "
                f"{total_name} counts every part, so send it too",
            )
    if counts.reasoning_tokens > counts.output_tokens:
        raise InvalidEvent(
            "reasoning_exceeds_output",
            f"reasoning_tokens={counts.reasoning_tokens} exceed output_tokens={counts.output_tokens}; "
            "output_tokens counts all output, reasoning included",
        )


def usage_details_field(record: Mapping[str, Any]) -> dict[str, int]:
    """Return `usage_details` as genai-prices usage keys to token counts; raise `InvalidEvent` when invalid."""
    details = record.get("usage_details")
    if _blank(details):
        return {}
    if isinstance(details, str):
        details = _json_object_text(details, "usage_details")
    if not isinstance(details, Mapping):
        raise InvalidEvent(
            "invalid_usage_details",
            f"usage_details={details!r} is not an object of genai-prices usage keys to token counts",
        )
    unknown = sorted(str(key) for key in details if key not in GENAI_USAGE_KEYS)
    if unknown:
        raise InvalidEvent(
            "unknown_usage_key",
            f"usage_details has {', '.join(unknown)}, which genai-prices does not know as usage keys; "
            "use its keys, such as input_audio_tokens or cache_write_1h_tokens",
        )
    return {str(key): _count(value, f"usage_details.{key}") for key, value in details.items()}


def string_field(record: Mapping[str, Any], name: str) -> str:
    """Return a text field stripped; an integer becomes its decimal text, and other types raise `InvalidEvent`."""
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(f"invalid_{name}", f"{name}={value!r} is not a string")
    if isinstance(value, str) and _UNPAIRED_SURROGATE.search(value):
        # JSON can escape half of a surrogate pair (\ud800), which is no character and no UTF-8.
        raise InvalidEvent(
            f"invalid_{name}",
            f"{name}={value!r} contains an unpaired surrogate escape; send valid Unicode text",
        )
    return str(value).strip()


def optional_string_field(record: Mapping[str, Any], name: str) -> str | None:
    """Return an optional text field like `string_field`, or None when it is absent, null or blank."""
    if _blank(record.get(name)):
        return None
    return string_field(record, name)


def _optional_count(record: Mapping[str, Any], name: str) -> int | None:
    value = record.get(name)
    if _blank(value):
        return None
    return _count(value, name)


def _count(value: Any, name: str) -> int:
    number = _number(value)
    if number is None or not number.is_finite() or number != number.to_integral_value():
        raise InvalidEvent("invalid_token_count", f"{name}={value!r} is not a whole number of tokens")
    if number < 0:
        raise InvalidEvent(
            "negative_token_count", f"{name}={value!r} is negative; token counts are never below 0"
        )
    if number > MAX_TOKEN_COUNT:
        raise InvalidEvent(
            "invalid_token_count", f"{name}={value!r} is above the limit of 10^15 tokens for one event"
        )
    return int(number)


def _optional_decimal(record: Mapping[str, Any], name: str, scale: Decimal) -> Decimal | None:
    value = record.get(name)
    if _blank(value):
        return None
    number = _number(value)
    if number is None or not number.is_finite():
        raise InvalidEvent(f"invalid_{name}", f"{name}={value!r} is not a number")
    if number < 0:
        raise InvalidEvent(f"negative_{name}", f"{name}={value!r} is negative")
    if number.adjusted() >= MAX_AMOUNT_DIGITS:
        raise InvalidEvent(
            f"invalid_{name}", f"{name}={value!r} is too large; one event's {name} must stay below 10^12"
        )
    with localcontext(prec=40):
        stored = number.quantize(scale, rounding=ROUND_HALF_EVEN)
    if name == "units" and stored != number:
        raise InvalidEvent(
            "invalid_units", f"units={value!r} has more than 6 decimal places; send the units rounded"
        )
    return stored


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def optional_object_field(record: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """Return an optional object field, parsing JSON text; raise `InvalidEvent` for anything but an object."""
    value = record.get(name)
    if _blank(value):
        return None
    if isinstance(value, str):
        value = _json_object_text(value, name)
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"invalid_{name}", f"{name}={value!r} is not a JSON object")
    return value


def json_value(value: Any) -> Any:
    """Return a value as given, parsing JSON text (as CSV cells carry it); blank becomes None."""
    if _blank(value):
        return None
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            return json.loads(value, parse_float=Decimal)
        except (json.JSONDecodeError, RecursionError):
            return value
    return value


def _json_object_text(text: str, name: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError:
        raise InvalidEvent(f"invalid_{name}", f"{name}={text!r} is not valid JSON") from None
    except RecursionError:
        raise InvalidEvent(f"invalid_{name}", f"{name} is JSON {TOO_DEEP}") from None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def stored_json(value: Any) -> str | None:
    """Serialize a JSON column as the raw tables store it: sorted keys, compact, decimals as int or float."""
    if value is None:
        return None
    return json.dumps(value, default=_json_number, separators=(",", ":"), sort_keys=True)


def _json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
