"""The sample workload built end to end: marts, types, expected records, analyses and the main query.

Every test of the sample workload runs on DuckDB, PostgreSQL and a local Spark catalog; the tests
that build a warehouse of their own run on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT_DIR, SPARK, TARGETS, BuiltWarehouse, WarehouseUnderTest, write_jsonl

VERIFICATION_QUERY = (
    "select created_at, provider, model, tool_name, operation, input_tokens, output_tokens, units, "
    "unit_type, cost_usd from marts.token_usage order by created_at desc limit 20"
)
# information_schema.columns' data_type, numeric_precision and numeric_scale of a cost column.
# Tests read Spark's tables as Parquet files through DuckDB, so Spark's columns show DuckDB's types.
COST_COLUMN_TYPE = {
    "duckdb": ("DECIMAL(38,12)", 38, 12), "postgres": ("numeric", 38, 12), "spark": ("DECIMAL(38,12)", 38, 12),
}
# information_schema.columns' data_type of a UTC timestamp column, stored without time zone.
TIMESTAMP_COLUMN_TYPE = {"duckdb": "TIMESTAMP", "postgres": "timestamp without time zone", "spark": "TIMESTAMP"}
ALL_TARGETS = [*TARGETS, SPARK]


@pytest.fixture(params=ALL_TARGETS)
def sample_warehouse(request: pytest.FixtureRequest) -> BuiltWarehouse:
    """The sample workload ingested and built on each target, Spark included."""
    return request.getfixturevalue(f"sample_{request.param}")


def test_build_passes_without_errors(sample_warehouse: BuiltWarehouse) -> None:
    assert re.search(r"ERROR=0\b", sample_warehouse.build.output)


def test_no_expected_record_missing(sample_warehouse: BuiltWarehouse) -> None:
    assert "warn_expected_usage_records_missing" not in sample_warehouse.build.stdout.split("data checks warned")[-1]
    assert "PASS warn_expected_usage_records_missing" in sample_warehouse.build.output


@pytest.mark.parametrize(
    ("provider", "operation"),
    [("google", "generate_image"), ("google", "generate_video"), ("openai", "embed"), ("openai", "embed_batch")],
)
def test_required_records_present(sample_warehouse: BuiltWarehouse, provider: str, operation: str) -> None:
    rows = sample_warehouse.database.query(
        "select count(*) from marts.token_usage where provider = ? and operation = ?",
        [provider, operation],
    )
    assert rows[0][0] > 0


def test_verification_query_runs(sample_warehouse: BuiltWarehouse) -> None:
    rows = sample_warehouse.database.query(VERIFICATION_QUERY)

    assert len(rows) == 20
    assert rows == sorted(rows, key=lambda row: row[0], reverse=True)


def test_relations_under_plain_schemas(sample_warehouse: BuiltWarehouse) -> None:
    rows = sample_warehouse.database.query(
        "select table_schema, table_name from information_schema.tables where table_schema <> 'main'",
    )
    schemas = {schema for schema, _ in rows}
    assert {"raw", "staging", "marts"} <= schemas
    assert ("marts", "fct_usage_events") in rows
    assert ("marts", "fct_usage_daily") in rows
    assert ("marts", "token_usage") in rows


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("fct_usage_events", "cost_usd"),
        ("fct_usage_events", "computed_cost_usd"),
        ("fct_usage_events", "reported_cost_usd"),
        ("fct_usage_daily", "known_cost_usd"),
        ("token_usage", "cost_usd"),
    ],
)
def test_costs_are_exact_decimals(sample_warehouse: BuiltWarehouse, table: str, column: str) -> None:
    rows = sample_warehouse.database.query(
        "select data_type, numeric_precision, numeric_scale from information_schema.columns "
        "where table_schema = 'marts' and table_name = ? and column_name = ?",
        [table, column],
    )
    assert rows == [COST_COLUMN_TYPE[sample_warehouse.database.target]]


def test_created_at_without_time_zone(sample_warehouse: BuiltWarehouse) -> None:
    rows = sample_warehouse.database.query(
        "select data_type from information_schema.columns where table_schema = 'marts' "
        "and table_name = 'fct_usage_events' and column_name = 'created_at'",
    )
    assert rows == [(TIMESTAMP_COLUMN_TYPE[sample_warehouse.database.target],)]


def test_unknown_costs_never_zero(sample_warehouse: BuiltWarehouse) -> None:
    rows = sample_warehouse.database.query(
        "select count(*) from marts.fct_usage_events where cost_source in ('unpriced', 'unmetered') "
        "and cost_usd is not null",
    )
    assert rows == [(0,)]
    unknown = sample_warehouse.database.query(
        "select count(*) from marts.fct_usage_events where cost_source in ('unpriced', 'unmetered')",
    )
    assert unknown[0][0] > 0, "the sample should contain unpriced and unmetered events"


def test_daily_counts_unknown_beside_known(sample_warehouse: BuiltWarehouse) -> None:
    rows = sample_warehouse.database.query(
        """
        select sum(unpriced_event_count + unmetered_event_count), count(*) filter (where not is_cost_complete)
        from marts.fct_usage_daily
        """,
    )
    unknown_events, incomplete_rows = rows[0]
    assert unknown_events > 0
    assert incomplete_rows > 0


def test_organization_totals_plus_unattributed(sample_warehouse: BuiltWarehouse) -> None:
    rows = sample_warehouse.database.query(
        """
        select
            sum(known_cost_usd) filter (where organization_id is not null),
            sum(known_cost_usd) filter (where organization_id is null),
            sum(known_cost_usd)
        from marts.fct_usage_daily
        """,
    )
    organizations, unattributed, total = rows[0]
    assert unattributed > 0
    assert organizations + unattributed == total


def test_video_priced_per_second(sample_warehouse: BuiltWarehouse) -> None:
    rows = sample_warehouse.database.query(
        "select count(*), count(*) filter (where pricing_basis = 'units' and cost_source = 'computed') "
        "from marts.fct_usage_events where operation = 'generate_video'",
    )
    total, priced = rows[0]
    assert total > 0
    assert priced == total


def test_analyses_compile_and_run(sample_warehouse: BuiltWarehouse, tmp_path: Path) -> None:
    dbt = Path(PROJECT_DIR / ".venv" / "bin" / "dbt")
    completed = subprocess.run(
        [str(dbt), "compile", "--select", "resource_type:analysis", "--project-dir", str(PROJECT_DIR),
         "--profiles-dir", str(PROJECT_DIR), "--target-path", str(tmp_path / "target")],
        env=sample_warehouse.database.environment(), capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stdout[-3000:]

    compiled = sorted((tmp_path / "target" / "compiled").rglob("analyses/*.sql"))
    assert len(compiled) == len(list((PROJECT_DIR / "analyses").glob("*.sql")))
    for path in compiled:
        rows = sample_warehouse.database.query(path.read_text())
        assert rows, f"{path.name} returned no rows on the sample workload"


def test_summary_prints_totals(sample_warehouse: BuiltWarehouse) -> None:
    result = sample_warehouse.database.run("summary")

    assert "billable events" in result.stdout
    assert "Cost by provider and operation (USD)" in result.stdout
    assert "Quarantined rows:" in result.stdout
    assert sample_warehouse.database.location in result.stdout


def test_main_job_runs_in_one_process(warehouse: WarehouseUnderTest) -> None:
    """`run` builds and then reads the warehouse in the same process, as `make run` does."""
    # The DuckDB run builds the dashboard, as `make run` does. On PostgreSQL the site build would
    # repeat it; test_report.py checks the dashboard's PostgreSQL source queries.
    dashboard = "--dashboard" if warehouse.target == "duckdb" else "--no-dashboard"
    result = warehouse.run("run", "--events", "600", "--days", "7", dashboard)

    assert "Usage warehouse summary" in result.stdout
    assert "Cost by provider and operation (USD)" in result.stdout
    if warehouse.target == "duckdb":
        assert f"DuckDB file: {warehouse.duckdb_path}" in result.stdout
        assert "query \"select created_at" in result.stdout
        assert "built the dashboard in" in result.stdout
    else:
        assert "building the dashboard" not in result.stdout
        assert f"PostgreSQL database: {warehouse.postgres_database} " in result.stdout
        # The suggested query names the target, so it reaches PostgreSQL without the variable.
        assert "query --target postgres \"select created_at" in result.stdout


@pytest.mark.spark
def test_main_job_on_spark(sample_spark: BuiltWarehouse) -> None:
    """`run` on Spark builds, then summarizes in the same process, after dbt's Spark has let the catalog go."""
    result, warehouse = sample_spark.build, sample_spark.database

    assert "Usage warehouse summary" in result.stdout
    assert "Cost by provider and operation (USD)" in result.stdout
    assert f"Spark catalog: {warehouse.spark_dir}" in result.stdout
    # The suggested query names the target, so it reaches Spark without the variable.
    assert "query --target spark \"select created_at" in result.stdout
    assert "skipped the dashboard: it reads the duckdb and postgres targets" in result.stdout
    # The sample lands in the Spark folder, not beside the unused DuckDB path.
    assert (warehouse.spark_dir / "sample_events.jsonl.gz").exists()
    assert not warehouse.duckdb_path.parent.joinpath("sample_events.jsonl.gz").exists()


def test_daily_key_separator_in_values(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    """Values containing the characters a naive key would join with still get distinct keys."""
    base = {"created_at": "2025-09-03T10:00:00Z", "provider": "openai", "model": "gpt-4o-2024-08-06",
            "input_tokens": 10, "output_tokens": 1}
    write_jsonl(tmp_path / "keys.jsonl", [
        {**base, "event_id": "one", "operation": "agent_run", "tool_name": "x|y"},
        {**base, "event_id": "two", "operation": "agent_run|x", "tool_name": "y"},
        {**base, "event_id": "three", "operation": "agent_run", "tool_name": "1:x"},
        {**base, "event_id": "four", "operation": "agent_run", "tool_name": None},
    ])
    warehouse.run("ingest", str(tmp_path / "keys.jsonl"))

    build = warehouse.run("build", check=False)

    assert build.returncode == 0, build.output[-3000:]
    assert warehouse.query("select count(distinct daily_key) from marts.fct_usage_daily") == [(4,)]
