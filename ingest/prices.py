"""Export the genai-prices catalog to dbt seed CSVs.

The warehouse prices usage in SQL, so the catalog's Python pricing rules are flattened into
three seeds:

- ``genai_token_prices.csv``: one row per resolved price version, priced usage key and tier.
  A price version is the price that ``ModelInfo.get_prices`` resolves for one provider, model
  and service tier inside one effective window (UTC dates) and one daily time window
  (seconds since UTC midnight). Windows are cut at every start date and time-of-day boundary
  the model's prices and price variants mention, resolved with the catalog's own
  ``get_prices``, and adjacent windows with identical prices are merged again.
- ``genai_price_leaf_terms.csv``: for each set of priced usage keys, the integer coefficients
  that turn reported usage into the "leaf" quantity each unit price applies to. genai-prices
  subtracts more specific usage (cache reads, audio tokens) from its ancestors before pricing
  (``decompose.compute_leaf_values``), and that subtraction is linear in the usage values.
- ``genai_catalog_info.csv``: the catalog version and its provider and model counts.

Cost of one request, as the seeds encode it::

    cost = sum over priced keys of
        unit_price * sum(coefficient * quantity(counted_usage_key)) / per_units

where the unit price of a key is its highest tier row with ``input_tokens >
above_input_tokens`` (or the base row), and ``quantity('requests')`` is 1.

NOTE: Some genai-prices 0.2.3 behaviour is not in the seeds. Price variants for other
contexts (service_tier fast or default, speed, route, search_type) are not exported. A model
borrowed through another provider's fallback list (Azure serving OpenAI models) ignores price
variants, which the SQL has to apply itself. Groq's 10-second minimum for whisper models and
the errors calc_price raises for inconsistent usage (a cache read larger than input tokens)
are not represented either.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import genai_prices
from genai_prices.data import providers as bundled_providers
from genai_prices.data_units import unit_data
from genai_prices.decompose import is_descendant_or_self
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    PriceContext,
    PriceVariant,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)
from genai_prices.units import UnitDef, UnitRegistry
from genai_prices.validation import validate_priced_units

TOKEN_PRICES_FILE = "genai_token_prices.csv"
LEAF_TERMS_FILE = "genai_price_leaf_terms.csv"
CATALOG_INFO_FILE = "genai_catalog_info.csv"

TOKEN_PRICE_COLUMNS = (
    "price_line_id",
    "price_version_id",
    "price_provider_id",
    "catalog_model_id",
    "service_tier",
    "effective_from",
    "effective_to",
    "day_second_from",
    "day_second_to",
    "usage_key",
    "price_key",
    "per_units",
    "above_input_tokens",
    "unit_price",
    "price_key_set",
)
LEAF_TERM_COLUMNS = ("price_key_set", "usage_key", "counted_usage_key", "coefficient")
CATALOG_INFO_COLUMNS = ("genai_prices_version", "provider_count", "model_count")

# Request contexts exported as service tiers. `standard` is a request without any context.
SERVICE_TIER_CONTEXTS: Mapping[str, PriceContext | None] = {
    "standard": None,
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
}

UNBOUNDED_START = datetime(1970, 1, 1)
OPEN_END = datetime(9999, 12, 31)
SECONDS_PER_DAY = 86_400
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

# The per-request unit: genai-prices counts it as 1 for every request, and it is no reported
# usage key, so its leaf term counts itself and the SQL supplies the quantity 1.
REQUESTS_USAGE_KEY = "requests"

# The seed column unit_price is decimal(38, 18): 18 digits after the point, 20 before it.
UNIT_PRICE_SCALE = 18
UNIT_PRICE_INTEGER_DIGITS = 20

ID_SEPARATOR = "|"


class PriceExportError(Exception):
    """The catalog contains a price that the seed format cannot represent exactly."""


@dataclass(frozen=True)
class PriceWindow:
    """UTC interval [effective_from, effective_to) in which one price applies."""

    effective_from: datetime
    effective_to: datetime


@dataclass(frozen=True)
class DaySegment:
    """Daily interval [second_from, second_to) in seconds since UTC midnight."""

    second_from: int
    second_to: int


@dataclass(frozen=True)
class PriceLine:
    """One unit price: a priced usage key at its base price or at one input-token tier."""

    usage_key: str
    price_key: str
    per_units: int
    above_input_tokens: int | None
    unit_price: Decimal


@dataclass(frozen=True)
class PriceVersion:
    """The prices of one model for one service tier, effective window and daily window."""

    provider_id: str
    model_id: str
    service_tier: str
    window: PriceWindow
    segment: DaySegment
    lines: tuple[PriceLine, ...]

    @property
    def price_key_set(self) -> str:
        return format_price_key_set(line.usage_key for line in self.lines)

    @property
    def price_version_id(self) -> str:
        return ID_SEPARATOR.join(
            (
                self.provider_id,
                self.model_id,
                self.service_tier,
                # Windows always start at UTC midnight, so the date identifies the window.
                self.window.effective_from.date().isoformat(),
                str(self.segment.second_from),
            )
        )


@dataclass(frozen=True)
class LeafTerm:
    """One coefficient of the linear leaf formula of a priced usage key."""

    price_key_set: str
    usage_key: str
    counted_usage_key: str
    coefficient: int


@dataclass(frozen=True)
class ExportSummary:
    """Counts of what `export_price_seeds` wrote."""

    genai_prices_version: str
    provider_count: int
    model_count: int
    price_version_count: int
    token_price_row_count: int
    leaf_term_row_count: int
    output_dir: Path


# A day profile: the segments of one day with the price lines resolved in each.
DayProfile = tuple[tuple[DaySegment, tuple[PriceLine, ...]], ...]


def unit_registry() -> UnitRegistry:
    """Build the unit registry from the catalog's bundled unit data."""
    return UnitRegistry(unit_data)


# --- formatting -------------------------------------------------------------------------


def format_timestamp(value: datetime) -> str:
    return value.strftime(TIMESTAMP_FORMAT)


def format_price_key_set(usage_keys: Iterable[str]) -> str:
    """Join the distinct usage keys of a price version, sorted, with `+`."""
    return "+".join(sorted(set(usage_keys)))


def format_unit_price(value: Decimal) -> str:
    """Format a catalog price as plain decimal text that fits decimal(38, 18) exactly.

    Raises PriceExportError when the value is not finite, negative, has more than 18
    significant decimal places or more than 20 integer digits.
    """
    if not value.is_finite() or value < 0:
        raise PriceExportError(f"Invalid unit price {value!r}: expected a finite non-negative decimal")

    normalized = value.normalize()
    if int(normalized.as_tuple().exponent) < -UNIT_PRICE_SCALE:
        raise PriceExportError(
            f"Unit price {value} has more than {UNIT_PRICE_SCALE} decimal places "
            "and does not fit decimal(38, 18), so widen the seed column type"
        )
    if normalized.adjusted() + 1 > UNIT_PRICE_INTEGER_DIGITS:
        raise PriceExportError(
            f"Unit price {value} has more than {UNIT_PRICE_INTEGER_DIGITS} integer digits "
            "and does not fit decimal(38, 18)"
        )

    # Trailing zeros beyond 18 places carry no value, so dropping them keeps the price exact.
    if int(value.as_tuple().exponent) < -UNIT_PRICE_SCALE:
        value = value.quantize(Decimal(1).scaleb(-UNIT_PRICE_SCALE))
    return format(value, "f")


# --- windows ----------------------------------------------------------------------------


Constraint = StartDateConstraint | TimeOfDateConstraint


def _model_constraints(model: ModelInfo) -> list[Constraint]:
    constraints: list[Constraint | None] = []
    if not isinstance(model.prices, ModelPrice):
        constraints.extend(conditional.constraint for conditional in model.prices)
    constraints.extend(variant.constraint for variant in model.price_variants or ())
    return [constraint for constraint in constraints if constraint is not None]


def model_start_dates(model: ModelInfo) -> list[date]:
    """Return the sorted distinct start dates of a model's prices and price variants."""
    return sorted(
        {
            constraint.start_date
            for constraint in _model_constraints(model)
            if isinstance(constraint, StartDateConstraint)
        }
    )


def date_windows(start_dates: Sequence[date]) -> list[PriceWindow]:
    """Cut time at each start date (UTC midnight) into consecutive windows.

    Start dates on or before 1970-01-01 cut nothing, because the first window already
    starts there.
    """
    cuts = [datetime.combine(start_date, time()) for start_date in start_dates]
    cuts = [cut for cut in cuts if UNBOUNDED_START < cut < OPEN_END]
    edges = [UNBOUNDED_START, *cuts, OPEN_END]
    return [PriceWindow(start, end) for start, end in zip(edges, edges[1:], strict=False)]


def utc_second_of_day(value: time) -> int:
    """Convert a time of day (naive means UTC) to whole seconds since UTC midnight."""
    if value.microsecond:
        raise PriceExportError(f"Invalid time-of-day boundary {value}: the seeds store whole seconds")
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).time()
    return value.hour * 3600 + value.minute * 60 + value.second


def time_of_day_boundaries(model: ModelInfo) -> list[int]:
    """Return the sorted distinct seconds since UTC midnight where a daily window starts or ends."""
    seconds: set[int] = set()
    for constraint in _model_constraints(model):
        if isinstance(constraint, TimeOfDateConstraint):
            seconds.add(utc_second_of_day(constraint.start_time))
            seconds.add(utc_second_of_day(constraint.end_time))
    return sorted(seconds)


def day_segments(boundaries: Sequence[int]) -> list[DaySegment]:
    """Split the day at each boundary, so a window that wraps midnight ends up in two segments."""
    edges = sorted({0, SECONDS_PER_DAY, *boundaries})
    return [DaySegment(start, end) for start, end in zip(edges, edges[1:], strict=False)]


# --- resolution -------------------------------------------------------------------------


def variant_applies(variant: PriceVariant, context: PriceContext, at: datetime) -> bool:
    """Return whether a price variant matches a request context at a UTC timestamp."""
    if variant.constraint is not None and not variant.constraint.active(at):
        return False
    return all(context.get(key) == value for key, value in variant.when.items())


def price_lines(model_price: ModelPrice, registry: UnitRegistry) -> tuple[PriceLine, ...]:
    """Flatten a resolved model price into one line per priced key and tier.

    Raises PriceExportError for a price key the unit registry does not know (genai-prices
    would skip it with a warning) or a key set that genai-prices rejects.
    """
    lines: list[PriceLine] = []
    units: list[UnitDef] = []
    for price_key, value in sorted(model_price.__dict__.items()):
        if price_key.startswith("_") or value is None:
            continue
        try:
            unit = registry.unit_for_price_key(price_key)
        except KeyError as error:
            raise PriceExportError(
                f"Unknown price key {price_key!r} in the catalog: the genai-prices unit registry "
                "has no unit for it, so the seeds cannot price it"
            ) from error
        units.append(unit)
        lines.extend(_unit_price_lines(unit, value))

    try:
        validate_priced_units(units, registry)
    except ValueError as error:
        raise PriceExportError(f"Invalid catalog price: genai-prices rejects its key set ({error})") from error

    if not lines:
        # A price without keys (free models such as OpenRouter's `:free` ids) costs 0 in
        # genai-prices. A zero per-request line keeps it a price of 0 in the seed, where no
        # rows at all would read as "no price".
        requests_unit = registry.units[REQUESTS_USAGE_KEY]
        lines.append(
            PriceLine(REQUESTS_USAGE_KEY, requests_unit.price_key, requests_unit.per, None, Decimal(0))
        )
    return tuple(lines)


def _unit_price_lines(unit: UnitDef, value: object) -> list[PriceLine]:
    if isinstance(value, Decimal):
        return [PriceLine(unit.usage_key, unit.price_key, unit.per, None, value)]
    if not isinstance(value, TieredPrices):
        raise PriceExportError(f"Unsupported price value {value!r} for {unit.price_key}")

    starts = [tier.start for tier in value.tiers]
    if len(set(starts)) != len(starts):
        raise PriceExportError(f"Invalid tiers for {unit.price_key}: the tier starts {starts} repeat a value")
    lines = [PriceLine(unit.usage_key, unit.price_key, unit.per, None, value.base)]
    lines.extend(
        PriceLine(unit.usage_key, unit.price_key, unit.per, tier.start, tier.price) for tier in value.tiers
    )
    return lines


def resolve_day_profile(
    model: ModelInfo,
    context: PriceContext | None,
    window: PriceWindow,
    segments: Sequence[DaySegment],
    registry: UnitRegistry,
) -> DayProfile:
    """Resolve a model's prices in each daily segment of one window and merge equal neighbors.

    For a non-standard context a segment is left out unless a variant of that context
    matches there, so a missing segment means the catalog has no price of its own.
    """
    resolved: list[tuple[DaySegment, tuple[PriceLine, ...]]] = []
    for segment in segments:
        at = window.effective_from.replace(tzinfo=UTC) + timedelta(seconds=segment.second_from)
        if context is not None and not any(
            variant_applies(variant, context, at) for variant in model.price_variants or ()
        ):
            continue
        resolved.append((segment, price_lines(model.get_prices(at, context), registry)))
    return merge_day_segments(resolved)


def merge_day_segments(resolved: Sequence[tuple[DaySegment, tuple[PriceLine, ...]]]) -> DayProfile:
    """Merge touching segments whose price lines are equal."""
    merged: list[tuple[DaySegment, tuple[PriceLine, ...]]] = []
    for segment, lines in resolved:
        if merged:
            previous_segment, previous_lines = merged[-1]
            if previous_segment.second_to == segment.second_from and previous_lines == lines:
                merged[-1] = (DaySegment(previous_segment.second_from, segment.second_to), lines)
                continue
        merged.append((segment, lines))
    return tuple(merged)


def merge_windows(profiles: Sequence[tuple[PriceWindow, DayProfile]]) -> list[tuple[PriceWindow, DayProfile]]:
    """Merge touching windows whose day profiles are equal, and drop windows without any segment."""
    merged: list[tuple[PriceWindow, DayProfile]] = []
    for window, profile in profiles:
        if not profile:
            continue
        if merged:
            previous_window, previous_profile = merged[-1]
            if previous_window.effective_to == window.effective_from and previous_profile == profile:
                merged[-1] = (PriceWindow(previous_window.effective_from, window.effective_to), profile)
                continue
        merged.append((window, profile))
    return merged


def model_price_versions(provider: Provider, model: ModelInfo, registry: UnitRegistry) -> list[PriceVersion]:
    """Resolve every price version of one model for each exported service tier."""
    windows = date_windows(model_start_dates(model))
    segments = day_segments(time_of_day_boundaries(model))
    versions: list[PriceVersion] = []
    for service_tier, context in SERVICE_TIER_CONTEXTS.items():
        if context is not None and not model.price_variants:
            continue
        profiles = [
            (window, resolve_day_profile(model, context, window, segments, registry)) for window in windows
        ]
        for window, profile in merge_windows(profiles):
            versions.extend(
                PriceVersion(provider.id, model.id, service_tier, window, segment, lines)
                for segment, lines in profile
            )
    return versions


def catalog_price_versions(providers: Sequence[Provider], registry: UnitRegistry) -> list[PriceVersion]:
    """Resolve the price versions of every model of every provider."""
    return [
        version
        for provider in providers
        for model in provider.models
        for version in model_price_versions(provider, model, registry)
    ]


# --- leaf terms ---------------------------------------------------------------------------


def leaf_coefficients(priced_usage_keys: Iterable[str], registry: UnitRegistry) -> dict[str, dict[str, int]]:
    """Return, per priced usage key, the coefficients of its leaf quantity.

    Mirrors ``decompose.compute_leaf_values``, which visits units most specific first and
    takes each leaf as its own usage minus the leaves of its priced strict descendants.
    Only non-zero coefficients are kept.
    """
    keys = set(priced_usage_keys)
    units = sorted(
        (registry.units[key] for key in keys if key != REQUESTS_USAGE_KEY),
        key=lambda unit: (-len(unit.dimensions), unit.usage_key),
    )
    leaves: dict[str, dict[str, int]] = {}
    for unit in units:
        vector = {unit.usage_key: 1}
        for other in units:
            if other is unit or not is_descendant_or_self(unit, other):
                continue
            for counted_key, coefficient in leaves[other.usage_key].items():
                vector[counted_key] = vector.get(counted_key, 0) - coefficient
        leaves[unit.usage_key] = {key: value for key, value in vector.items() if value != 0}

    if REQUESTS_USAGE_KEY in keys:
        leaves[REQUESTS_USAGE_KEY] = {REQUESTS_USAGE_KEY: 1}
    return leaves


def leaf_terms(price_key_sets: Iterable[str], registry: UnitRegistry) -> list[LeafTerm]:
    """Expand each price key set into its leaf terms, sorted."""
    terms = [
        LeafTerm(key_set, usage_key, counted_key, coefficient)
        for key_set in set(price_key_sets)
        for usage_key, vector in leaf_coefficients(key_set.split("+"), registry).items()
        for counted_key, coefficient in vector.items()
    ]
    return sorted(terms, key=lambda term: (term.price_key_set, term.usage_key, term.counted_usage_key))


# --- rows ---------------------------------------------------------------------------------

_TIER_ORDER = {service_tier: index for index, service_tier in enumerate(SERVICE_TIER_CONTEXTS)}


def token_price_rows(versions: Iterable[PriceVersion]) -> list[list[str]]:
    """Build the sorted rows of genai_token_prices.csv.

    Raises PriceExportError when two rows would share a price_line_id.
    """
    keyed_rows: list[tuple[tuple[object, ...], list[str]]] = []
    for version in versions:
        version_id = version.price_version_id
        key_set = version.price_key_set
        for line in version.lines:
            tier_label = "base" if line.above_input_tokens is None else str(line.above_input_tokens)
            row = [
                ID_SEPARATOR.join((version_id, line.price_key, tier_label)),
                version_id,
                version.provider_id,
                version.model_id,
                version.service_tier,
                format_timestamp(version.window.effective_from),
                format_timestamp(version.window.effective_to),
                str(version.segment.second_from),
                str(version.segment.second_to),
                line.usage_key,
                line.price_key,
                str(line.per_units),
                "" if line.above_input_tokens is None else str(line.above_input_tokens),
                format_unit_price(line.unit_price),
                key_set,
            ]
            sort_key = (
                version.provider_id,
                version.model_id,
                _TIER_ORDER[version.service_tier],
                version.window.effective_from,
                version.segment.second_from,
                line.usage_key,
                -1 if line.above_input_tokens is None else line.above_input_tokens,
            )
            keyed_rows.append((sort_key, row))

    keyed_rows.sort(key=lambda item: item[0])
    rows = [row for _, row in keyed_rows]
    _raise_on_duplicate_ids(row[0] for row in rows)
    return rows


def _raise_on_duplicate_ids(line_ids: Iterable[str]) -> None:
    seen: set[str] = set()
    for line_id in line_ids:
        if line_id in seen:
            raise PriceExportError(
                f"Duplicate price_line_id {line_id!r}: a provider or model id probably contains "
                f"{ID_SEPARATOR!r}, so change ID_SEPARATOR"
            )
        seen.add(line_id)


def leaf_term_rows(terms: Iterable[LeafTerm]) -> list[list[str]]:
    return [
        [term.price_key_set, term.usage_key, term.counted_usage_key, str(term.coefficient)] for term in terms
    ]


def catalog_info_rows(providers: Sequence[Provider], version: str) -> list[list[str]]:
    model_count = sum(len(provider.models) for provider in providers)
    return [[version, str(len(providers)), str(model_count)]]


# --- I/O ----------------------------------------------------------------------------------


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Write a CSV with `\\n` line endings so repeated exports are byte-identical."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def export_price_seeds(
    output_dir: Path,
    providers: Sequence[Provider] | None = None,
    genai_prices_version: str | None = None,
) -> ExportSummary:
    """Write the three genai-prices seed CSVs into output_dir and return what was written.

    Defaults to the catalog bundled with the installed genai-prices package, not a snapshot
    fetched at runtime, so the files depend only on the installed version.
    """
    providers = bundled_providers if providers is None else providers
    version = genai_prices.__version__ if genai_prices_version is None else genai_prices_version
    registry = unit_registry()

    versions = catalog_price_versions(providers, registry)
    price_rows = token_price_rows(versions)
    terms = leaf_terms((version_item.price_key_set for version_item in versions), registry)
    term_rows = leaf_term_rows(terms)

    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / TOKEN_PRICES_FILE, TOKEN_PRICE_COLUMNS, price_rows)
    write_csv(output_dir / LEAF_TERMS_FILE, LEAF_TERM_COLUMNS, term_rows)
    write_csv(output_dir / CATALOG_INFO_FILE, CATALOG_INFO_COLUMNS, catalog_info_rows(providers, version))

    return ExportSummary(
        genai_prices_version=version,
        provider_count=len(providers),
        model_count=sum(len(provider.models) for provider in providers),
        price_version_count=len(versions),
        token_price_row_count=len(price_rows),
        leaf_term_row_count=len(term_rows),
        output_dir=output_dir,
    )
