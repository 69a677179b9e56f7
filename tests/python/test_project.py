"""Checks that keep hand-written parts of the dbt project in step with the generated seeds."""

from __future__ import annotations

import csv
import re

from conftest import PROJECT_DIR

# Usage keys that the canonical token columns and the per-request count supply.
CANONICAL_USAGE_KEYS = {
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "output_reasoning_tokens",
    "requests",
}


def test_detail_keys_cover_priced_keys() -> None:
    macros = (PROJECT_DIR / "macros" / "usage_keys.sql").read_text()
    detail_keys_macro = re.search(r"macro priced_usage_detail_keys\(\).*?endmacro", macros, re.DOTALL)
    assert detail_keys_macro, "no priced_usage_detail_keys macro in macros/usage_keys.sql"
    listed = set(re.findall(r'"([a-z0-9_]+)"', detail_keys_macro.group()))
    with (PROJECT_DIR / "seeds" / "genai_prices" / "genai_token_prices.csv").open(newline="") as handle:
        priced = {row["usage_key"] for row in csv.DictReader(handle)}

    assert listed == priced - CANONICAL_USAGE_KEYS

