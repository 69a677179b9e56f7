"""Incremental marts: any arrival order of the same events, and a price change, give the full build.

Each test lands events batch by batch with an incremental build after each, then compares the
marts with a `build --full-refresh` of the same warehouse. The lookback window is 0 days, so an
incremental build re-reads only what arrived since the previous build and the scope logic, not
the window, has to get late events and late duplicates right.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import pytest
from conftest import PROJECT_DIR, TARGETS, WarehouseUnderTest, new_warehouse, write_jsonl

NO_LOOKBACK = {"USAGE_WAREHOUSE_LOOKBACK_DAYS": "0"}
MART_QUERIES = {
    "fct_usage_events": "select * from marts.fct_usage_events order by billable_key",
    "fct_usage_daily": "select * from marts.fct_usage_daily order by daily_key",
    "token_usage": "select * from marts.token_usage order by id",
}
# Columns that do not depend on when or in which batch an event arrived.
COST_BY_KEY = "select billable_key, event_id, usage_date, cost_usd, cost_source from marts.fct_usage_events order by 1"


def _sample_events(warehouse: WarehouseUnderTest, folder: Path) -> list[dict[str, object]]:
    path = folder / "sample.jsonl.gz"
    warehouse.run("sample", "--events", "600", "--days", "10", "--end", "2026-11-30", "--seed", "11", "--out", str(path))
    events = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the sample's malformed lines are the quarantine's business, not this test's
    return events


def _late_snapshots(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """Return later snapshots of three requests: one with more output, one losing, one on another day."""
    with_request = [event for event in events if event.get("request_id") and event.get("output_tokens")]
    winner, loser, moved = (dict(event) for event in with_request[:3])
    winner.update(event_id=f"{winner['event_id']}-late", output_tokens=int(winner["output_tokens"]) + 500)
    winner["created_at"] = str(winner["created_at"]).replace("Z", "").split("+")[0][:19] + ".5Z"
    loser.update(event_id=f"{loser['event_id']}-stale", created_at="2026-11-01T00:00:00Z", output_tokens=1)
    moved.update(event_id=f"{moved['event_id']}-moved", created_at="2026-11-30T23:59:59Z")
    return [winner, loser, moved]


def _land_in_batches(warehouse: WarehouseUnderTest, folder: Path, batches: list[list[dict[str, object]]]) -> None:
    for number, batch in enumerate(batches):
        warehouse.run("ingest", str(write_jsonl(folder / f"batch_{number}.jsonl", batch)))
        warehouse.run("build", environment_extra=NO_LOOKBACK)


def _marts(warehouse: WarehouseUnderTest) -> dict[str, list[tuple[object, ...]]]:
    return {name: warehouse.query(sql) for name, sql in MART_QUERIES.items()}


def _arrival_orders(events: list[dict[str, object]]) -> dict[str, list[list[dict[str, object]]]]:
    late = _late_snapshots(events)
    by_time = sorted(events, key=lambda event: str(event["created_at"]))
    third = len(by_time) // 3
    shuffled = list(events)
    random.Random(5).shuffle(shuffled)
    return {
        # Newest days first, so every later batch is late for the days already built.
        "newest_first": [by_time[2 * third:], by_time[third:2 * third], by_time[:third] + late],
        "shuffled": [shuffled[:200], late + shuffled[200:400], shuffled[400:]],
        # Two batches, because each build on a local Spark takes over a minute: the oldest days
        # arrive after the newer ones were built, with the later snapshots.
        "late_batch": [by_time[third:], by_time[:third] + late],
    }


@pytest.mark.parametrize(
    ("target", "order"),
    [
        ("duckdb", "newest_first"),
        ("duckdb", "shuffled"),
        pytest.param("postgres", "newest_first", marks=pytest.mark.postgres),
        pytest.param("spark", "late_batch", marks=pytest.mark.spark),
    ],
)
def test_incremental_equals_full_refresh(target: str, order: str, tmp_path: Path) -> None:
    with new_warehouse(target, tmp_path) as warehouse:
        batches = _arrival_orders(_sample_events(warehouse, tmp_path))[order]
        _land_in_batches(warehouse, tmp_path, batches)
        incremental = _marts(warehouse)
        costs = warehouse.query(COST_BY_KEY)

        warehouse.run("build", "--full-refresh")

        for name, rows in _marts(warehouse).items():
            assert incremental[name] == rows, name
        assert costs == warehouse.query(COST_BY_KEY)
        assert len(incremental["fct_usage_events"]) > 500


def _project_copy(folder: Path) -> Path:
    copy = folder / "project"
    for name in ("dbt_project.yml", "profiles.yml"):
        copy.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_DIR / name, copy / name)
    for name in ("models", "macros", "seeds", "tests", "analyses"):
        shutil.copytree(PROJECT_DIR / name, copy / name, ignore=shutil.ignore_patterns("python", "__pycache__"))
    return copy


def test_price_change_reprices_old_events(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    environment = {**NO_LOOKBACK, "USAGE_WAREHOUSE_PROJECT_DIR": str(project)}
    with new_warehouse("duckdb", tmp_path) as warehouse:
        events = _sample_events(warehouse, tmp_path)
        warehouse.run("ingest", str(write_jsonl(tmp_path / "events.jsonl", events)))
        warehouse.run("build", environment_extra=environment)
        video_cost = "select sum(cost_usd) from marts.fct_usage_events where model_name = 'veo-3.0-generate-001'"
        before = warehouse.query(video_cost)[0][0]

        prices = project / "seeds" / "pricing" / "unit_prices.csv"
        old_row = "google,veo-3.0-generate-001,video_seconds,with_audio,true,2025-09-09 00:00:00,9999-12-31 00:00:00,0.40,"
        assert old_row in prices.read_text()
        prices.write_text(prices.read_text().replace(old_row, old_row.replace(",0.40,", ",0.50,")))
        rebuilt = warehouse.run("build", environment_extra=environment)
        incremental = _marts(warehouse)
        after = warehouse.query(video_cost)[0][0]

        warehouse.run("build", "--full-refresh", environment_extra=environment)

        assert before is not None
        assert after > before
        # Only the changed seed loaded again; the others were left as they were.
        assert "not loaded again: deployment_models, expected_usage_records, genai_catalog_info, " \
            "genai_price_leaf_terms, genai_token_prices, price_rules\n" in rebuilt.output
        for name, rows in _marts(warehouse).items():
            assert incremental[name] == rows, name


def test_full_refresh_needs_full_scope(tmp_path: Path) -> None:
    with new_warehouse("duckdb", tmp_path) as warehouse:
        events = _sample_events(warehouse, tmp_path)[:50]
        warehouse.run("ingest", str(write_jsonl(tmp_path / "events.jsonl", events)))
        warehouse.run("build")
        warehouse.run("build")

        result = warehouse.run("build", "--select", "fct_usage_events", "--full-refresh", check=False)

    assert result.returncode == 1
    assert "rebuild its parents too" in result.output


def _run_results(warehouse: WarehouseUnderTest) -> set[str]:
    return {result["unique_id"] for result in json.loads(warehouse.settings().dbt_target_path.joinpath(
        "run_results.json").read_text())["results"]}


@pytest.mark.parametrize("target", TARGETS)
def test_unchanged_seeds_are_not_loaded_again(target: str, tmp_path: Path) -> None:
    with new_warehouse(target, tmp_path) as warehouse:
        events = _sample_events(warehouse, tmp_path)[:50]
        warehouse.run("ingest", str(write_jsonl(tmp_path / "events.jsonl", events)))
        first = warehouse.run("build")
        first_nodes = _run_results(warehouse)

        second = warehouse.run("build")
        second_nodes = _run_results(warehouse)

        warehouse.execute("drop table reference.price_rules")
        third = warehouse.run("build")
        third_nodes = _run_results(warehouse)

        if target == "duckdb":
            # Which seeds a full refresh loads is decided before dbt runs, the same on both targets.
            full = warehouse.run("build", "--full-refresh")
            full_nodes = _run_results(warehouse)

    seeds = {node for node in first_nodes if node.startswith("seed.")}
    assert len(seeds) == 7
    assert "not loaded again" not in first.output
    assert "not loaded again: deployment_models, expected_usage_records" in second.output
    assert not seeds & second_nodes
    # The tests of a skipped seed alone are left out with it; a test that also reads the marts runs.
    assert "test.usage_warehouse.unique_genai_token_prices_price_line_id.991c17b214" not in second_nodes
    assert "test.usage_warehouse.warn_expected_usage_records_missing" in second_nodes
    assert second_nodes >= {node for node in first_nodes if node.startswith("model.")}
    # A seed whose table is gone loads again, whatever its recorded fingerprint.
    assert seeds & third_nodes == {"seed.usage_warehouse.price_rules"}
    assert "price_rules" not in third.output.split("not loaded again: ")[1].splitlines()[0]
    if target == "duckdb":
        assert seeds <= full_nodes
        assert "not loaded again" not in full.output
