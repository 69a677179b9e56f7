"""Every shared usage case, ingested and built through the command line, priced as expected.

Each case reproduces a fault that public usage trackers have shipped, such as cached tokens
charged twice, tiers applied per run or unknown models priced at zero. Expected costs are exact,
on DuckDB, PostgreSQL and Spark alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal

import pytest
from conftest import (
    PROJECT_DIR,
    SPARK,
    TARGETS,
    BuiltWarehouse,
    WarehouseUnderTest,
    postgres_admin_connection,
    shared_file,
)


def _case_names() -> list[str]:
    path = PROJECT_DIR.parent / "shared" / "cases" / "usage_cases.jsonl"
    if not path.exists():
        return ["shared-cases-missing"]
    return [json.loads(line)["case"] for line in path.read_text().splitlines() if line.strip()]


def _costs(warehouse: WarehouseUnderTest) -> dict[str, tuple[str, Decimal | None]]:
    rows = warehouse.query("select event_id, cast(usage_date as varchar), cost_usd from marts.fct_usage_events")
    return {str(event_id): (str(day), cost) for event_id, day, cost in rows}  # type: ignore[misc]


@pytest.fixture(params=[*TARGETS, SPARK])
def built_cases(request: pytest.FixtureRequest) -> BuiltWarehouse:
    """The shared cases' warehouse on each target, Spark included."""
    return request.getfixturevalue(f"cases_{request.param}")


@pytest.mark.parametrize("case_name", _case_names())
def test_shared_case(case_name: str, usage_cases: list[dict], built_cases: BuiltWarehouse) -> None:
    case = next(case for case in usage_cases if case["case"] == case_name)
    costs = _costs(built_cases.database)
    event_ids = [event["event_id"] for event in case["events"]]
    billable = [event_id for event_id in event_ids if event_id in costs]

    for event_id, expected in case.get("expected", {}).items():
        assert event_id in costs, f"{event_id} is missing from marts.fct_usage_events"
        cost = costs[event_id][1]
        if expected is None:
            assert cost is None, f"{event_id}: expected an unknown (null) cost, got {cost}"
        else:
            assert cost == Decimal(expected), f"{event_id}: expected {expected}, got {cost}"

    if "billable_events" in case:
        assert len(billable) == case["billable_events"], f"billable events: {billable}"

    known = [costs[event_id][1] for event_id in billable if costs[event_id][1] is not None]
    if "expected_total" in case:
        assert sum(known, Decimal(0)) == Decimal(case["expected_total"])

    daily: dict[str, Decimal] = defaultdict(Decimal)
    for event_id in billable:
        day, cost = costs[event_id]
        daily[day] += cost or Decimal(0)
    for day, expected in case.get("expected_daily", {}).items():
        assert daily[day] == Decimal(expected), f"day {day}"


def test_cases_build_has_no_failures(built_cases: BuiltWarehouse) -> None:
    assert "ERROR=0" in built_cases.build.output


@pytest.mark.spark
def test_spark_costs_equal_duckdb(cases_spark: BuiltWarehouse, cases_duckdb: BuiltWarehouse) -> None:
    """Every cost column of every event, and of every day, is the same on Spark to the last decimal."""
    for relation, key in (("fct_usage_events", "event_id"), ("fct_usage_daily", "daily_key")):
        columns = [
            str(name) for (name,) in cases_duckdb.database.query(
                "select column_name from information_schema.columns where table_schema = 'marts' "
                "and table_name = ? and (column_name like '%cost%' or column_name like '%tokens%' "
                "or column_name in ('units', 'usage_date', 'organization_id')) order by column_name",
                [relation],
            )
        ]
        sql = f"select {key}, {', '.join(columns)} from marts.{relation} order by {key}"
        duckdb_rows = cases_duckdb.database.query(sql)
        assert duckdb_rows, f"marts.{relation} is empty on DuckDB"
        assert cases_spark.database.query(sql) == duckdb_rows, f"marts.{relation} differs between Spark and DuckDB"


def test_unknown_model_flagged_unpriced(cases_warehouse: BuiltWarehouse) -> None:
    rows = cases_warehouse.database.query(
        "select cost_source, unpriced_reason, computed_cost_usd from marts.fct_usage_events where event_id = 'p-18'",
    )
    assert rows == [("unpriced", "unknown_model", None)]


def test_stream_without_usage_unmetered(cases_warehouse: BuiltWarehouse) -> None:
    rows = cases_warehouse.database.query(
        "select cost_source, is_metered from marts.fct_usage_events where event_id = 'p-08-a'",
    )
    assert rows == [("unmetered", False)]


def test_unattributed_event_keeps_null_organization(cases_warehouse: BuiltWarehouse) -> None:
    rows = cases_warehouse.database.query(
        "select organization_id, is_unattributed from marts.fct_usage_events where event_id = 'p-20-b'",
    )
    assert rows == [(None, True)]


@pytest.mark.parametrize("target", TARGETS)
def test_check_cases_tool_passes(target: str) -> None:
    """The shared checker drives the command line as an outside user would, on a warehouse of its own."""
    tool = shared_file("tools/check_cases.py")
    if target == "postgres":
        postgres_admin_connection().close()  # skips, or fails in CI, when no server is reachable
    environment = {key: value for key, value in os.environ.items() if not key.startswith("USAGE_WAREHOUSE_")}
    environment["USAGE_WAREHOUSE_TARGET"] = target
    with subprocess.Popen(
        [sys.executable, str(tool)], cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment,
    ) as process:
        stdout, stderr = process.communicate()
    # The tool drops its database usage_cases_<pid> but not dbt's output folder for it.
    shutil.rmtree(PROJECT_DIR / "target" / f"postgres-usage_cases_{process.pid}", ignore_errors=True)
    assert process.returncode == 0, stdout + stderr
    assert stdout.strip().splitlines()[-1].endswith("0 failed")
