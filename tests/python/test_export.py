"""`usage-warehouse export`: one organization's rows, as Parquet and CSV, on every target.

The warehouse contains three organizations and unattributed events. The PostgreSQL case needs a
server that the libpq variables reach, with a user that may create databases.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SPARK, TARGETS, CommandResult, WarehouseUnderTest, new_warehouse, query, write_jsonl

from ingest import export
from ingest.spark_publish import needs_publication

RELATIONS = ("fct_usage_events", "fct_usage_daily", "token_usage")
EXPORTED_ORGANIZATION = "org_b"
OTHER_IDS = ("org_a", "org_c", "user_a1", "user_a2", "user_c1", "user_none1")
EXACT_REPORTED_COST = Decimal("0.123456789012")


def _event(event_id: str, organization: str | None, user: str, day: int, **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": event_id, "created_at": f"2026-11-{day:02d}T10:15:30.123456Z", "provider": "openai",
        "operation": "analyze_text", "model": "gpt-4o-mini", "user_id": user,
        "input_tokens": 1234, "output_tokens": 567,
    }
    if organization is not None:
        event["organization_id"] = organization
    return {**event, **fields}


def _events() -> list[dict[str, object]]:
    return [
        _event("ev-01", "org_a", "user_a1", 2),
        _event("ev-02", "org_a", "user_a2", 3),
        _event("ev-03", "org_b", "user_b1", 2),
        _event("ev-04", "org_b", "user_b2", 3, cached_input_tokens=1000),
        # A model outside the price catalog keeps its reported cost, to the twelfth decimal.
        _event("ev-05", "org_b", "user_b1", 3, model="in-house-model-7", cost_usd=str(EXACT_REPORTED_COST)),
        _event("ev-06", "org_c", "user_c1", 2),
        _event("ev-07", None, "user_none1", 2),
    ]


def _built(target: str, folder: Path) -> Iterator[WarehouseUnderTest]:
    with new_warehouse(target, folder) as warehouse:
        warehouse.run("ingest", str(write_jsonl(folder / "events.jsonl", _events())))
        warehouse.run("build")
        yield warehouse


@pytest.fixture(scope="module")
def duckdb_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseUnderTest]:
    """The events above on DuckDB, also alone for the cases that behave the same on both targets."""
    yield from _built("duckdb", tmp_path_factory.mktemp("export-duckdb"))


@pytest.fixture(scope="module")
def postgres_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseUnderTest]:
    """The events above on PostgreSQL."""
    yield from _built("postgres", tmp_path_factory.mktemp("export-postgres"))


@pytest.fixture(scope="module")
def spark_landing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WarehouseUnderTest, CommandResult]]:
    """The events above landed for a local Spark catalog whose publication failed (an invalid master)."""
    folder = tmp_path_factory.mktemp("export-spark")
    with new_warehouse("spark", folder) as warehouse:
        failed = warehouse.run(
            "ingest", str(write_jsonl(folder / "events.jsonl", _events())), check=False,
            environment_extra={"USAGE_WAREHOUSE_SPARK_MASTER": "invalid-master"},
        )
        yield warehouse, failed


@pytest.fixture(scope="module")
def spark_warehouse(spark_landing: tuple[WarehouseUnderTest, CommandResult]) -> WarehouseUnderTest:
    """The events above on a local Spark catalog: the build publishes them, then builds."""
    warehouse, _ = spark_landing
    warehouse.run("build")
    return warehouse


@pytest.fixture(params=TARGETS)
def built_warehouse(request: pytest.FixtureRequest) -> WarehouseUnderTest:
    """The events above on each target, ingested and built once per module."""
    return request.getfixturevalue(f"{request.param}_warehouse")


# Each export on Spark starts a Java VM (about half a minute), so only the two tests that check
# what is written, and the one of the default folder, run there too.
@pytest.fixture(params=[*TARGETS, SPARK])
def any_warehouse(request: pytest.FixtureRequest) -> WarehouseUnderTest:
    """The events above on each target, Spark included."""
    return request.getfixturevalue(f"{request.param}_warehouse")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_writes_only_organization_rows(any_warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    out = tmp_path / "out"

    result = any_warehouse.run("export", "--org", EXPORTED_ORGANIZATION, "--out", str(out))

    assert sorted(path.name for path in out.iterdir()) == sorted(
        f"{relation}.{kind}" for relation in RELATIONS for kind in ("parquet", "csv")
    )
    for relation in RELATIONS:
        expected = any_warehouse.query(
            f"select count(*) from marts.{relation} where organization_id = ?", [EXPORTED_ORGANIZATION]
        )[0][0]
        assert expected > 0, relation
        table = pq.read_table(out / f"{relation}.parquet")
        rows = _read_csv(out / f"{relation}.csv")
        assert table.num_rows == expected, relation
        assert len(rows) == expected, relation
        assert set(table.column("organization_id").to_pylist()) == {EXPORTED_ORGANIZATION}, relation
        assert {row["organization_id"] for row in rows} == {EXPORTED_ORGANIZATION}, relation
        assert table.column_names == list(rows[0]), relation
        assert f"{relation:<18}{expected:>10,} rows" in result.stdout


def test_export_contains_no_other_ids(built_warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    out = tmp_path / "out"

    built_warehouse.run("export", "--org", EXPORTED_ORGANIZATION, "--out", str(out))

    for relation in RELATIONS:
        text = (out / f"{relation}.csv").read_text()
        values = [str(value) for row in pq.read_table(out / f"{relation}.parquet").to_pylist() for value in row.values()]
        for other in OTHER_IDS:
            assert other not in text, f"{other} in {relation}.csv"
            assert not [value for value in values if other in value], f"{other} in {relation}.parquet"


def test_export_keeps_decimals_and_timestamps(any_warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    out = tmp_path / "out"

    any_warehouse.run("export", "--org", EXPORTED_ORGANIZATION, "--out", str(out))

    table = pq.read_table(out / "fct_usage_events.parquet")
    assert table.schema.field("cost_usd").type == pa.decimal128(38, 12)
    assert table.schema.field("reported_cost_usd").type == pa.decimal128(38, 12)
    assert table.schema.field("created_at").type == pa.timestamp("us")
    expected = any_warehouse.query(
        "select event_id, cost_usd, created_at from marts.fct_usage_events where organization_id = ? order by event_id",
        [EXPORTED_ORGANIZATION],
    )
    exported = sorted(zip(table.column("event_id").to_pylist(), table.column("cost_usd").to_pylist(),
                          table.column("created_at").to_pylist(), strict=True))
    assert exported == expected
    assert ("ev-05", EXACT_REPORTED_COST, datetime(2026, 11, 3, 10, 15, 30, 123456)) in exported
    rows = {row["event_id"]: row for row in _read_csv(out / "fct_usage_events.csv")}
    assert {event_id: Decimal(rows[event_id]["cost_usd"]) for event_id, _, _ in expected} == {
        event_id: cost for event_id, cost, _ in expected
    }
    assert rows["ev-05"]["created_at"] == "2026-11-03 10:15:30.123456"
    daily = pq.read_table(out / "fct_usage_daily.parquet")
    assert daily.schema.field("known_cost_usd").type == pa.decimal128(38, 12)
    assert sum(daily.column("known_cost_usd").to_pylist()) == sum(cost for _, cost, _ in expected)


def test_export_crafted_organization_fails_cleanly(built_warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    out = tmp_path / "out"

    result = built_warehouse.run("export", "--org", "x' or '1'='1", "--out", str(out), check=False)

    assert result.returncode == 1
    assert "organization \"x' or '1'='1\" has no rows" in result.stderr
    assert "usage-warehouse query" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("organization", ["", "   "])
def test_export_blank_organization_rejected(
    duckdb_warehouse: WarehouseUnderTest, tmp_path: Path, organization: str
) -> None:
    result = duckdb_warehouse.run("export", "--org", organization, "--out", str(tmp_path / "out"), check=False)

    assert result.returncode == 1
    assert f"organization id {organization!r} is blank" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["duckdb", SPARK])
def test_export_default_folder_in_warehouse_folder(target: str, request: pytest.FixtureRequest) -> None:
    """Beside the DuckDB file on duckdb, in USAGE_WAREHOUSE_SPARK_DIR on spark."""
    warehouse: WarehouseUnderTest = request.getfixturevalue(f"{target}_warehouse")
    base = warehouse.spark_dir if target == "spark" else warehouse.duckdb_path.parent
    folder = base / "exports" / EXPORTED_ORGANIZATION

    result = warehouse.run("export", "--org", EXPORTED_ORGANIZATION)

    assert f"to {folder}:" in result.stdout
    assert (folder / "token_usage.parquet").exists()


def test_export_organization_not_a_folder_name(duckdb_warehouse: WarehouseUnderTest) -> None:
    result = duckdb_warehouse.run("export", "--org", "../escape", check=False)

    assert result.returncode == 1
    assert "cannot be a folder name; pass --out FOLDER" in result.stderr
    assert not (duckdb_warehouse.duckdb_path.parent / "escape").exists()


def test_export_failure_leaves_no_files(
    duckdb_warehouse: WarehouseUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    write_relation = export._write_relation
    written: list[Path] = []

    def fail_on_last(connection, sql, organization_id, parquet_path, csv_path):  # type: ignore[no-untyped-def]
        if "token_usage" in sql:
            raise OSError("disk full")
        written.extend([parquet_path, csv_path])
        return write_relation(connection, sql, organization_id, parquet_path, csv_path)

    monkeypatch.setattr(export, "_write_relation", fail_on_last)

    with pytest.raises(export.ExportError, match="failed and left no partial file: disk full"):
        export.export_organization(duckdb_warehouse.settings(), EXPORTED_ORGANIZATION, out)

    assert len(written) == 4
    assert not out.exists()


@pytest.mark.spark
def test_spark_failed_publication_keeps_batch(spark_landing: tuple[WarehouseUnderTest, CommandResult]) -> None:
    warehouse, failed = spark_landing

    assert failed.returncode == 1
    assert "publishing the landed batches to Spark" in failed.stderr
    assert "Spark master 'invalid-master' from USAGE_WAREHOUSE_SPARK_MASTER" in failed.stderr
    assert "the next ingest or build publishes them again" in failed.stderr
    assert query(warehouse.settings().spark_landing_path, "select count(*) from raw.usage_events") == [(7,)]


@pytest.mark.spark
def test_spark_build_publishes_pending_batch(spark_warehouse: WarehouseUnderTest) -> None:
    assert not needs_publication(spark_warehouse.settings().spark_landing_path)
    assert spark_warehouse.query("select count(*) from raw.usage_events") == [(7,)]
    assert spark_warehouse.query("select count(*) from marts.fct_usage_events") == [(7,)]


@pytest.mark.spark
def test_spark_query_rejects_writing_statement(spark_warehouse: WarehouseUnderTest) -> None:
    result = spark_warehouse.run("query", "create table marts.probe as select 1 as a", check=False)

    assert result.returncode == 1
    assert "CREATE is not a reading statement" in result.stderr
    assert spark_warehouse.query("select count(*) from marts.fct_usage_events") == [(7,)]


@pytest.mark.spark
def test_spark_query_rejects_writing_with_clause(spark_warehouse: WarehouseUnderTest) -> None:
    statement = "with kept as (select 1 as a) insert into marts.fct_usage_daily select * from marts.fct_usage_daily"

    result = spark_warehouse.run("query", statement, check=False)

    assert result.returncode == 1
    assert "a WITH statement with INSERT INTO is not a reading statement" in result.stderr


@pytest.mark.spark
def test_spark_new_folder_publishes_empty_ledger_once(tmp_path: Path) -> None:
    with new_warehouse("spark", tmp_path) as warehouse:
        first = warehouse.run("quarantine", "list")
        second = warehouse.run("quarantine", "list")

    assert "published 0 batches to Spark" in first.output
    assert "published" not in second.output
