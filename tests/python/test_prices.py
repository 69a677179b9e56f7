"""Tests for the genai-prices seed export (ingest/prices.py) and the hand-kept pricing seeds.

The parity tests price usage with a small pure-Python pricer that reads only the exported
CSVs and follows the algorithm the seed format prescribes for the SQL models, and compare it
with genai-prices' own pricing on the real bundled catalog.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from genai_prices import Usage
from genai_prices.data import providers as catalog_providers
from genai_prices.decompose import compute_leaf_values, is_descendant_or_self
from genai_prices.types import ModelInfo, PriceContext, Provider

from ingest.prices import (
    CATALOG_INFO_FILE,
    LEAF_TERMS_FILE,
    OPEN_END,
    REQUESTS_USAGE_KEY,
    SERVICE_TIER_CONTEXTS,
    TOKEN_PRICES_FILE,
    UNBOUNDED_START,
    DaySegment,
    PriceExportError,
    PriceWindow,
    date_windows,
    day_segments,
    export_price_seeds,
    format_unit_price,
    leaf_coefficients,
    model_start_dates,
    time_of_day_boundaries,
    unit_registry,
    utc_second_of_day,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GENAI_SEED_DIR = REPO_ROOT / "seeds" / "genai_prices"
PRICING_SEED_DIR = REPO_ROOT / "seeds" / "pricing"
SEED_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"

REGISTRY = unit_registry()

# Providers whose every model goes through the parity grid.
PARITY_PROVIDER_IDS = ("openai", "google", "anthropic", "aws", "azure", "deepseek", "openrouter")

# Approximate input_tokens totals of the generated usages. The catalog's tier starts are
# 32000, 100000, 128000, 199999, 200000, 256000, 272000, 512000 and 524288, so the totals
# fall below all of them, between several pairs, and above all of them.
INPUT_TOKEN_TARGETS = (4_000, 60_000, 150_000, 230_000, 600_000)


# --- the pricer the seeds imply ---------------------------------------------------------


@dataclass(frozen=True)
class TokenPriceRow:
    price_version_id: str
    effective_from: datetime
    effective_to: datetime
    day_second_from: int
    day_second_to: int
    usage_key: str
    per_units: int
    above_input_tokens: int | None
    unit_price: Decimal
    price_key_set: str


def parse_seed_timestamp(text: str) -> datetime:
    return datetime.strptime(text, SEED_TIMESTAMP_FORMAT)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


class SeedPricer:
    """Price a request from the exported seeds alone, the way the SQL models are meant to."""

    def __init__(self, seed_dir: Path) -> None:
        self.rows_by_model: dict[tuple[str, str, str], list[TokenPriceRow]] = defaultdict(list)
        for record in read_csv(seed_dir / TOKEN_PRICES_FILE):
            key = (record["price_provider_id"], record["catalog_model_id"], record["service_tier"])
            self.rows_by_model[key].append(
                TokenPriceRow(
                    price_version_id=record["price_version_id"],
                    effective_from=parse_seed_timestamp(record["effective_from"]),
                    effective_to=parse_seed_timestamp(record["effective_to"]),
                    day_second_from=int(record["day_second_from"]),
                    day_second_to=int(record["day_second_to"]),
                    usage_key=record["usage_key"],
                    per_units=int(record["per_units"]),
                    above_input_tokens=int(record["above_input_tokens"]) if record["above_input_tokens"] else None,
                    unit_price=Decimal(record["unit_price"]),
                    price_key_set=record["price_key_set"],
                )
            )

        self.terms: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
        for record in read_csv(seed_dir / LEAF_TERMS_FILE):
            self.terms[(record["price_key_set"], record["usage_key"])].append(
                (record["counted_usage_key"], int(record["coefficient"]))
            )

    def cost(
        self,
        provider_id: str,
        model_id: str,
        service_tier: str,
        at: datetime,
        usage: Mapping[str, int],
    ) -> Decimal | None:
        """Return the cost in USD, or None when the seeds contain no price for this request."""
        utc = at.astimezone(UTC).replace(tzinfo=None)
        second_of_day = utc.hour * 3600 + utc.minute * 60 + utc.second
        rows = [
            row
            for row in self.rows_by_model.get((provider_id, model_id, service_tier), [])
            if row.effective_from <= utc < row.effective_to
            and row.day_second_from <= second_of_day < row.day_second_to
        ]
        if not rows:
            return None
        versions = {row.price_version_id for row in rows}
        assert len(versions) == 1, f"overlapping price versions for {model_id} at {at}: {versions}"

        input_tokens = usage.get("input_tokens", 0)
        chosen: dict[str, TokenPriceRow] = {}
        for row in rows:
            if row.above_input_tokens is not None and not input_tokens > row.above_input_tokens:
                continue
            current = chosen.get(row.usage_key)
            if current is None or tier_rank(row) > tier_rank(current):
                chosen[row.usage_key] = row

        total = Decimal(0)
        for usage_key, row in chosen.items():
            leaf = sum(
                coefficient * counted_quantity(counted_key, usage)
                for counted_key, coefficient in self.terms[(row.price_key_set, usage_key)]
            )
            total += row.unit_price * leaf / row.per_units
        return total


def tier_rank(row: TokenPriceRow) -> int:
    return -1 if row.above_input_tokens is None else row.above_input_tokens


def counted_quantity(counted_key: str, usage: Mapping[str, int]) -> int:
    return 1 if counted_key == REQUESTS_USAGE_KEY else usage.get(counted_key, 0)


# --- usage generation -------------------------------------------------------------------


def consistent_usage(leaf_amounts: Mapping[str, int]) -> dict[str, int]:
    """Build reported usage whose every key covers the leaf amounts of its descendants.

    Every ancestor of a listed key is reported too, so genai-prices never has to infer a
    missing parent, and no leaf it computes can be negative.
    """
    keys = set(leaf_amounts)
    for key in leaf_amounts:
        keys |= REGISTRY.ancestor_usage_keys(key)
    return {
        key: sum(
            amount
            for leaf_key, amount in leaf_amounts.items()
            if is_descendant_or_self(REGISTRY.units[key], REGISTRY.units[leaf_key])
        )
        for key in sorted(keys)
    }


REPORTED_USAGE_KEYS = sorted(key for key in REGISTRY.units if key != REQUESTS_USAGE_KEY)


def full_usage(input_token_target: int) -> dict[str, int]:
    """Build usage that reports every registered key, scaled so input_tokens is near the target."""
    pattern = {key: 3 + (index * 7) % 11 for index, key in enumerate(REPORTED_USAGE_KEYS)}
    input_at_scale_one = consistent_usage(pattern)["input_tokens"]
    scale = max(1, input_token_target // input_at_scale_one)
    return consistent_usage({key: amount * scale for key, amount in pattern.items()})


PARITY_USAGES: tuple[dict[str, int], ...] = (
    *(full_usage(target) for target in INPUT_TOKEN_TARGETS),
    {"input_tokens": 1_200, "output_tokens": 340},
    consistent_usage({"input_tokens": 900, "cache_read_tokens": 4_100, "output_tokens": 250}),
    {},
)


# --- grid -------------------------------------------------------------------------------


def provider_of(model: ModelInfo) -> Provider:
    """Return the provider whose model list contains the model (its price_provider_id)."""
    return next(
        provider for provider in catalog_providers if any(item is model for item in provider.models)
    )


def probe_day(window: PriceWindow) -> datetime:
    """Pick a UTC midnight inside the window and away from 1970, where no real request falls."""
    if window.effective_to == OPEN_END:
        return window.effective_from.replace(tzinfo=UTC) + timedelta(days=400)
    if window.effective_from == UNBOUNDED_START:
        return window.effective_to.replace(tzinfo=UTC) - timedelta(days=3)
    return window.effective_from.replace(tzinfo=UTC)


def probe_times(model: ModelInfo) -> list[datetime]:
    """Timestamps next to every start date of the model and at both ends of every daily segment."""
    times: list[datetime] = []
    for window in date_windows(model_start_dates(model)):
        if window.effective_from != UNBOUNDED_START:
            times.append(window.effective_from.replace(tzinfo=UTC) + timedelta(seconds=1))
        if window.effective_to != OPEN_END:
            times.append(window.effective_to.replace(tzinfo=UTC) - timedelta(seconds=61))

        day = probe_day(window)
        for segment in day_segments(time_of_day_boundaries(model)):
            times.append(day + timedelta(seconds=segment.second_from + 1))
            times.append(day + timedelta(seconds=segment.second_to - 1))
    return sorted(set(times))


def contexts_for(model: ModelInfo) -> list[tuple[str, PriceContext | None]]:
    variant_contexts = {tuple(sorted(variant.when.items())) for variant in model.price_variants or ()}
    return [
        (tier, context)
        for tier, context in SERVICE_TIER_CONTEXTS.items()
        if context is None or tuple(sorted(context.items())) in variant_contexts
    ]


@dataclass(frozen=True)
class ParityCase:
    provider: Provider
    model: ModelInfo
    service_tier: str
    context: PriceContext | None
    at: datetime
    usage: Mapping[str, int]

    def __str__(self) -> str:
        return (
            f"{self.provider.id}/{self.model.id} {self.service_tier} "
            f"at {self.at.isoformat()} usage={dict(self.usage)}"
        )


def parity_cases() -> Iterator[ParityCase]:
    """Every model of the parity providers, at every probe time, tier and usage.

    Models come straight from the catalog, not from a name lookup, because some catalog
    model ids do not match their own match clause (aws `regional.amazon.nova-2-lite-v1:0`).
    """
    for provider in catalog_providers:
        if provider.id not in PARITY_PROVIDER_IDS:
            continue
        for model in provider.models:
            for at in probe_times(model):
                for tier, context in contexts_for(model):
                    for usage in PARITY_USAGES:
                        yield ParityCase(provider, model, tier, context, at, usage)

    # A provider that borrows models (Azure serves OpenAI models) prices them at the standard tier.
    snapshot = genai_prices.data_snapshot.get_snapshot()
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    for model_ref in ("gpt-4o", "gpt-5", "o3"):
        provider, model = snapshot.find_provider_model(model_ref, None, "azure", None)
        for tier, context in SERVICE_TIER_CONTEXTS.items():
            yield ParityCase(provider, model, tier, context, at, PARITY_USAGES[0])


def seed_service_tier(provider: Provider, model: ModelInfo, service_tier: str) -> str:
    """Return the seed tier of a request: standard when the provider borrows the model.

    genai-prices ignores price variants of a model found through a fallback provider.
    """
    return service_tier if any(item is model for item in provider.models) else "standard"


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("genai_prices")
    export_price_seeds(output_dir)
    return output_dir


@pytest.fixture(scope="module")
def pricer(export_dir: Path) -> SeedPricer:
    return SeedPricer(export_dir)


# --- pure helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("2.5"), "2.5"),
        (Decimal("0.18000000000000002"), "0.18000000000000002"),
        (Decimal("1E+1"), "10"),
        (Decimal("0.0000001"), "0.0000001"),
        (Decimal("0.50"), "0.50"),
        (Decimal("1.1000000000000000000000"), "1.100000000000000000"),
        (Decimal("0"), "0"),
    ],
)
def test_format_unit_price_exact(value: Decimal, expected: str) -> None:
    assert format_unit_price(value) == expected


@pytest.mark.parametrize(
    "value",
    [Decimal("0.0000000000000000001"), Decimal("1E+20"), Decimal("-1"), Decimal("NaN")],
)
def test_format_unit_price_rejects_unrepresentable(value: Decimal) -> None:
    with pytest.raises(PriceExportError):
        format_unit_price(value)


def test_date_windows_cut_at_midnight() -> None:
    windows = date_windows([date(2024, 5, 1), date(2025, 1, 2)])

    assert windows == [
        PriceWindow(datetime(1970, 1, 1), datetime(2024, 5, 1)),
        PriceWindow(datetime(2024, 5, 1), datetime(2025, 1, 2)),
        PriceWindow(datetime(2025, 1, 2), datetime(9999, 12, 31)),
    ]


def test_date_windows_without_dates() -> None:
    assert date_windows([]) == [PriceWindow(datetime(1970, 1, 1), datetime(9999, 12, 31))]


def test_day_segments_split_wrapping_window() -> None:
    # The window 16:30-00:30 UTC wraps midnight, so its two boundaries cut the day in three.
    assert day_segments([59_400, 1_800]) == [
        DaySegment(0, 1_800),
        DaySegment(1_800, 59_400),
        DaySegment(59_400, 86_400),
    ]


def test_utc_second_of_day_converts_offset() -> None:
    plus_eight = timezone(timedelta(hours=8))

    assert utc_second_of_day(time(0, 30)) == 1_800
    assert utc_second_of_day(time(8, 30, tzinfo=plus_eight)) == 1_800


# --- leaf coefficients ------------------------------------------------------------------

LEAF_KEY_SETS: tuple[frozenset[str], ...] = (
    frozenset({"input_tokens", "output_tokens"}),
    frozenset({"input_tokens", "cache_read_tokens", "output_tokens"}),
    frozenset({"input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"}),
    frozenset(
        {"input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens"}
    ),
    frozenset(
        {
            "input_tokens",
            "input_audio_tokens",
            "cache_read_tokens",
            "cache_audio_read_tokens",
            "output_tokens",
            "output_audio_tokens",
        }
    ),
    frozenset(
        {
            "input_tokens",
            "input_image_tokens",
            "cache_read_tokens",
            "cache_image_read_tokens",
            "output_tokens",
            "output_image_tokens",
        }
    ),
    frozenset({"audio_seconds", "input_audio_seconds"}),
    frozenset({"input_tokens", "output_tokens", "requests"}),
)

LEAF_SAMPLE_USAGES: tuple[dict[str, int], ...] = (
    consistent_usage({key: 10 + 3 * index for index, key in enumerate(REPORTED_USAGE_KEYS)}),
    consistent_usage({"input_tokens": 1_000, "cache_read_tokens": 600, "output_tokens": 90}),
    consistent_usage({"input_audio_tokens": 70, "cache_audio_read_tokens": 30, "output_audio_tokens": 5}),
    {},
)


def apply_coefficients(
    coefficients: Mapping[str, Mapping[str, int]], usage: Mapping[str, int]
) -> dict[str, int]:
    return {
        usage_key: sum(
            coefficient * counted_quantity(counted, usage) for counted, coefficient in vector.items()
        )
        for usage_key, vector in coefficients.items()
    }


def library_leaf_values(priced_keys: frozenset[str], usage: Mapping[str, int]) -> dict[str, int]:
    units = {key: REGISTRY.units[key] for key in priced_keys if key != REQUESTS_USAGE_KEY}
    values = dict(compute_leaf_values(set(units), Usage(**usage), units))
    if REQUESTS_USAGE_KEY in priced_keys:
        values[REQUESTS_USAGE_KEY] = 1
    return {key: int(value) for key, value in values.items()}


@pytest.mark.parametrize("priced_keys", LEAF_KEY_SETS, ids=lambda keys: "+".join(sorted(keys)))
@pytest.mark.parametrize("usage", LEAF_SAMPLE_USAGES, ids=["all-keys", "cache", "audio", "empty"])
def test_leaf_coefficients_match_library(priced_keys: frozenset[str], usage: dict[str, int]) -> None:
    coefficients = leaf_coefficients(priced_keys, REGISTRY)

    assert apply_coefficients(coefficients, usage) == library_leaf_values(priced_keys, usage)


def test_leaf_coefficients_cache_read() -> None:
    coefficients = leaf_coefficients({"input_tokens", "cache_read_tokens", "output_tokens"}, REGISTRY)

    assert coefficients == {
        "input_tokens": {"input_tokens": 1, "cache_read_tokens": -1},
        "cache_read_tokens": {"cache_read_tokens": 1},
        "output_tokens": {"output_tokens": 1},
    }


def test_exported_leaf_terms_match_library(pricer: SeedPricer) -> None:
    key_sets = {key_set for key_set, _ in pricer.terms}
    assert key_sets, "the export wrote no leaf terms"

    for key_set in sorted(key_sets):
        priced_keys = frozenset(key_set.split("+"))
        coefficients: dict[str, dict[str, int]] = defaultdict(dict)
        for (term_key_set, usage_key), terms in pricer.terms.items():
            if term_key_set == key_set:
                coefficients[usage_key] = dict(terms)
        for usage in LEAF_SAMPLE_USAGES:
            assert apply_coefficients(coefficients, usage) == library_leaf_values(priced_keys, usage), key_set


# --- parity with calc_price -------------------------------------------------------------


def test_seed_pricer_matches_calc_price(pricer: SeedPricer) -> None:
    checked = 0
    mismatches: list[str] = []
    for case in parity_cases():
        # ModelInfo.calc_price is what genai_prices.calc_price runs after its name lookup.
        result = case.model.calc_price(
            Usage(**case.usage),
            case.provider,
            genai_request_timestamp=case.at,
            price_context=case.context,
        )
        price_provider_id = provider_of(case.model).id
        service_tier = seed_service_tier(case.provider, case.model, case.service_tier)

        seed_cost = pricer.cost(price_provider_id, case.model.id, service_tier, case.at, case.usage)
        if seed_cost is None and service_tier != "standard":
            # No price of its own for the tier: genai-prices falls back to the standard price.
            seed_cost = pricer.cost(price_provider_id, case.model.id, "standard", case.at, case.usage)

        checked += 1
        if seed_cost != result.total_price:
            mismatches.append(f"{case} -> seeds {seed_cost}, calc_price {result.total_price}")

    assert checked > 20_000, f"the parity grid shrank to {checked} cases"
    assert mismatches == [], f"{len(mismatches)} of {checked} cases differ, first: {mismatches[:5]}"


@pytest.mark.parametrize(
    ("provider_id", "model_ref", "at", "input_tokens", "output_tokens", "expected"),
    [
        ("openai", "gpt-4o-2024-05-13", datetime(2024, 9, 10, 12, tzinfo=UTC), 1_000, 500, Decimal("0.0125")),
        ("openai", "o3-2025-04-16", datetime(2025, 6, 1, 12, tzinfo=UTC), 10_000, 1_000, Decimal("0.14")),
        ("openai", "o3-2025-04-16", datetime(2025, 6, 11, 12, tzinfo=UTC), 10_000, 1_000, Decimal("0.028")),
        ("google", "gemini-2.5-pro", datetime(2025, 8, 24, 12, tzinfo=UTC), 250_000, 2_000, Decimal("0.655")),
    ],
)
def test_seed_pricer_known_values(
    pricer: SeedPricer,
    provider_id: str,
    model_ref: str,
    at: datetime,
    input_tokens: int,
    output_tokens: int,
    expected: Decimal,
) -> None:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    result = genai_prices.calc_price(
        Usage(**usage), model_ref, provider_id=provider_id, genai_request_timestamp=at
    )

    seed_cost = pricer.cost(provider_of(result.model).id, result.model.id, "standard", at, usage)

    assert result.total_price == expected
    assert seed_cost == expected


def test_deepseek_off_peak_window(pricer: SeedPricer) -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    peak = datetime(2025, 3, 1, 12, tzinfo=UTC)
    off_peak_before_midnight = datetime(2025, 3, 1, 23, tzinfo=UTC)
    off_peak_after_midnight = datetime(2025, 3, 2, 0, 10, tzinfo=UTC)

    peak_cost = pricer.cost("deepseek", "deepseek-chat", "standard", peak, usage)
    before_midnight_cost = pricer.cost("deepseek", "deepseek-chat", "standard", off_peak_before_midnight, usage)
    after_midnight_cost = pricer.cost("deepseek", "deepseek-chat", "standard", off_peak_after_midnight, usage)

    assert peak_cost == Decimal("0.27")
    assert before_midnight_cost == Decimal("0.135")
    assert after_midnight_cost == Decimal("0.135")


def test_missing_tier_row_means_no_own_price(pricer: SeedPricer) -> None:
    # genai-prices 0.2.3 gives gpt-4o a batch price only from 2026-10-14.
    usage = {"input_tokens": 1_000, "output_tokens": 500}

    before = pricer.cost("openai", "gpt-4o", "batch", datetime(2026, 10, 13, 12, tzinfo=UTC), usage)
    after = pricer.cost("openai", "gpt-4o", "batch", datetime(2026, 10, 14, 12, tzinfo=UTC), usage)

    assert before is None
    assert after == Decimal("0.00375")


def test_free_model_costs_zero(pricer: SeedPricer) -> None:
    usage = {"input_tokens": 5_000, "output_tokens": 700}

    cost = pricer.cost("openrouter", "qwen3-32b:free", "standard", datetime(2026, 1, 5, tzinfo=UTC), usage)

    assert cost == Decimal(0)


# --- the checked-in seeds ---------------------------------------------------------------


@pytest.mark.parametrize("file_name", [TOKEN_PRICES_FILE, LEAF_TERMS_FILE, CATALOG_INFO_FILE])
def test_checked_in_seeds_equal_fresh_export(export_dir: Path, file_name: str) -> None:
    fresh = (export_dir / file_name).read_bytes()
    checked_in = (GENAI_SEED_DIR / file_name).read_bytes()

    assert checked_in == fresh, f"{file_name} is stale: run `usage-warehouse prices export`"


def test_export_is_deterministic(export_dir: Path, tmp_path: Path) -> None:
    summary = export_price_seeds(tmp_path)

    for file_name in (TOKEN_PRICES_FILE, LEAF_TERMS_FILE, CATALOG_INFO_FILE):
        assert (tmp_path / file_name).read_bytes() == (export_dir / file_name).read_bytes(), file_name
    assert summary.genai_prices_version == genai_prices.__version__
    assert summary.model_count == sum(len(provider.models) for provider in catalog_providers)


def test_export_covers_every_model(export_dir: Path) -> None:
    rows = read_csv(export_dir / TOKEN_PRICES_FILE)
    exported = {(row["price_provider_id"], row["catalog_model_id"]) for row in rows}
    catalog = {(provider.id, model.id) for provider in catalog_providers for model in provider.models}

    assert catalog - exported == set()


def test_token_price_ids_unique(export_dir: Path) -> None:
    line_ids = [row["price_line_id"] for row in read_csv(export_dir / TOKEN_PRICES_FILE)]

    assert len(line_ids) == len(set(line_ids))


# --- hand-kept pricing seeds ------------------------------------------------------------

UNIT_PRICE_GRAIN = ("provider", "model_name", "unit_type", "audio")
UNIT_TYPES = {"video_seconds", "images"}
AUDIO_VALUES = {"with_audio", "without_audio", "any"}


def hand_kept_rows(file_name: str) -> list[dict[str, str]]:
    return read_csv(PRICING_SEED_DIR / file_name)


def windows_overlap(rows: Sequence[dict[str, str]]) -> list[tuple[str, str]]:
    ordered = sorted(rows, key=lambda row: row["effective_from"])
    return [
        (left["effective_from"], right["effective_from"])
        for left, right in zip(ordered, ordered[1:], strict=False)
        if parse_seed_timestamp(right["effective_from"]) < parse_seed_timestamp(left["effective_to"])
    ]


@pytest.mark.parametrize("file_name", ["unit_prices.csv", "price_rules.csv"])
def test_hand_kept_rows_have_source_or_note(file_name: str) -> None:
    rows = hand_kept_rows(file_name)

    assert rows
    for row in rows:
        assert row["source_url"].startswith("https://") or row["note"].strip(), row


@pytest.mark.parametrize("file_name", ["unit_prices.csv", "price_rules.csv"])
def test_hand_kept_windows_valid(file_name: str) -> None:
    for row in hand_kept_rows(file_name):
        start = parse_seed_timestamp(row["effective_from"])
        end = parse_seed_timestamp(row["effective_to"])
        assert start < end, row


def test_unit_prices_values_valid() -> None:
    for row in hand_kept_rows("unit_prices.csv"):
        assert row["unit_type"] in UNIT_TYPES, row
        assert row["audio"] in AUDIO_VALUES, row
        assert row["is_default_variant"] in {"true", "false"}, row
        assert Decimal(row["unit_price_usd"]) > 0, row


def test_unit_prices_windows_do_not_overlap() -> None:
    groups: dict[tuple[str, ...], list[dict[str, str]]] = defaultdict(list)
    for row in hand_kept_rows("unit_prices.csv"):
        groups[tuple(row[column] for column in UNIT_PRICE_GRAIN)].append(row)

    for grain, rows in groups.items():
        assert windows_overlap(rows) == [], grain


def test_unit_prices_one_default_at_a_time() -> None:
    defaults: dict[tuple[str, ...], list[dict[str, str]]] = defaultdict(list)
    for row in hand_kept_rows("unit_prices.csv"):
        if row["is_default_variant"] == "true":
            defaults[(row["provider"], row["model_name"], row["unit_type"])].append(row)

    for grain, rows in defaults.items():
        assert windows_overlap(rows) == [], grain


def test_price_rules_windows_do_not_overlap() -> None:
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in hand_kept_rows("price_rules.csv"):
        groups[(row["provider"], row["service_tier"])].append(row)

    for grain, rows in groups.items():
        assert windows_overlap(rows) == [], grain


def test_price_rules_name_catalog_providers() -> None:
    catalog_ids = {provider.id for provider in catalog_providers}

    for row in hand_kept_rows("price_rules.csv"):
        assert row["provider"] in catalog_ids, row
        assert row["service_tier"] in SERVICE_TIER_CONTEXTS, row
        assert Decimal("0") < Decimal(row["price_multiplier"]) <= Decimal("1"), row


def unit_cost(model_name: str, audio: str, at: datetime, units: int) -> Decimal:
    """Price units of a per-unit model from unit_prices.csv, as the SQL is expected to."""
    utc = at.astimezone(UTC).replace(tzinfo=None)
    matches = [
        row
        for row in hand_kept_rows("unit_prices.csv")
        if row["model_name"] == model_name
        and row["audio"] == audio
        and parse_seed_timestamp(row["effective_from"])
        <= utc
        < parse_seed_timestamp(row["effective_to"])
    ]
    assert len(matches) == 1, f"{len(matches)} unit prices for {model_name} {audio} at {at}"
    return Decimal(matches[0]["unit_price_usd"]) * units


@pytest.mark.parametrize(
    ("model_name", "audio", "at", "units", "expected"),
    [
        ("veo-3.0-generate-001", "with_audio", datetime(2025, 8, 20, 12, tzinfo=UTC), 8, Decimal("6.00")),
        ("veo-3.0-generate-001", "with_audio", datetime(2025, 9, 20, 12, tzinfo=UTC), 8, Decimal("3.20")),
        ("veo-3.0-fast-generate-001", "with_audio", datetime(2025, 9, 20, 12, tzinfo=UTC), 8, Decimal("1.20")),
        ("imagen-4.0-generate-001", "any", datetime(2025, 11, 6, 12, tzinfo=UTC), 2, Decimal("0.08")),
    ],
)
def test_unit_prices_known_costs(
    model_name: str, audio: str, at: datetime, units: int, expected: Decimal
) -> None:
    assert unit_cost(model_name, audio, at, units) == expected
