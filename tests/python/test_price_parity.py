"""The SQL cost of every token-priced fixture event equals genai-prices' own `calc_price`.

Events priced by the project's own rules are left out here and tested by their cases: a batch
price the catalog lacks (a multiplier from the price rule seed) and per-unit prices (Veo, Imagen).
"""

from __future__ import annotations

import json
from datetime import UTC
from decimal import Decimal
from pathlib import Path

import genai_prices
from genai_prices import Usage

from conftest import BuiltWarehouse, query
from ingest.prices import SERVICE_TIER_CONTEXTS

PARITY_QUERY = """
    select
        event_id, created_at, model_name, catalog_model_id, catalog_provider_id, model_resolution,
        service_tier, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
        reasoning_tokens, usage_details, computed_cost_usd
    from marts.fct_usage_events
    where pricing_basis = 'tokens'
        and cost_source = 'computed'
        and price_multiplier is null
"""


def _catalog_cost(row: tuple[object, ...]) -> Decimal:
    (_, created_at, model_name, catalog_model_id, catalog_provider_id, resolution, service_tier,
     input_tokens, cached, cache_write, output_tokens, reasoning, details, _) = row
    usage = Usage(
        input_tokens=input_tokens,  # type: ignore[arg-type]
        cache_read_tokens=cached,  # type: ignore[arg-type]
        cache_write_tokens=cache_write,  # type: ignore[arg-type]
        output_tokens=output_tokens,  # type: ignore[arg-type]
        output_reasoning_tokens=reasoning,  # type: ignore[arg-type]
        **json.loads(details or "{}"),  # type: ignore[arg-type]
    )
    # The catalog cannot match a deployment name, so use the model it maps to.
    model_ref = catalog_model_id if resolution == "deployment" else model_name
    calculation = genai_prices.calc_price(
        usage,
        str(model_ref),
        provider_id=str(catalog_provider_id),
        genai_request_timestamp=created_at.replace(tzinfo=UTC),  # type: ignore[union-attr]
        price_context=SERVICE_TIER_CONTEXTS.get(str(service_tier)),
    )
    return calculation.total_price


def _check_parity(database: Path) -> int:
    rows = query(database, PARITY_QUERY)
    mismatches = []
    for row in rows:
        expected = _catalog_cost(row)
        if row[-1] != expected:
            mismatches.append(f"{row[0]}: SQL {row[-1]}, genai-prices {expected}")
    assert not mismatches, "\n".join(mismatches[:20])
    return len(rows)


def test_sample_costs_equal_catalog(sample_warehouse: BuiltWarehouse) -> None:
    checked = _check_parity(sample_warehouse.database)

    assert checked > 1000


def test_case_costs_equal_catalog(cases_warehouse: BuiltWarehouse) -> None:
    checked = _check_parity(cases_warehouse.database)

    assert checked >= 15
