"""The postgres target beyond the tests that run on both targets: costs equal to DuckDB's.

The end-to-end tests of ingest, build, sync and the shared cases run on DuckDB and on PostgreSQL
through the `warehouse`, `sample_warehouse` and `cases_warehouse` fixtures of conftest. These
tests need a PostgreSQL server that the libpq variables reach (PGHOST, PGPORT, PGUSER,
PGPASSWORD), with a user that may create databases.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from conftest import BuiltWarehouse

pytestmark = pytest.mark.postgres


def test_postgres_costs_equal_duckdb(sample_duckdb: BuiltWarehouse, sample_postgres: BuiltWarehouse) -> None:
    by_provider = "select provider, sum(cost_usd) from marts.fct_usage_events group by provider order by provider"
    on_duckdb = sample_duckdb.database.query(by_provider)
    on_postgres = sample_postgres.database.query(by_provider)
    assert on_postgres == on_duckdb
    assert sum((cost for _, cost in on_postgres if cost is not None), Decimal(0)) > 0

    cost_types = sample_postgres.database.query(
        """
        select table_name, column_name, data_type, numeric_precision, numeric_scale
        from information_schema.columns
        where table_schema = 'marts' and column_name like '%cost_usd'
        """,
    )
    assert cost_types
    for table, column, data_type, precision, scale in cost_types:
        assert (data_type, precision, scale) == ("numeric", 38, 12), f"marts.{table}.{column}"
