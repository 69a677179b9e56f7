"""Ingest end to end on real warehouses: idempotence, duplicates, quarantine, lineage, replay.

Each test runs on a new DuckDB file and on a new PostgreSQL database, except the one that checks
how DuckDB recovers from a batch killed halfway. The spark target lands batches through the
DuckDB writer, so two tests also run on a local Spark catalog, to check what its publication
copies to Spark's tables: quarantined rows, and UTC times across a day boundary.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import PROJECT_DIR, SPARK, TARGETS, WarehouseUnderTest, query, run_cli, write_jsonl
from ingest import loader
from ingest.catalog import ModelResolver
from ingest.readers import read_records
from ingest.sample import write_sample
from ingest.warehouse import open_warehouse

GOOD_EVENT = {
    "event_id": "evt-1",
    "created_at": "2025-09-03T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o-mini-2024-07-18",
    "operation": "analyze_text",
    "organization_id": "org_a",
    "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
}


def _event(event_id: str, **changes: object) -> dict[str, object]:
    return {**GOOD_EVENT, "event_id": event_id, **changes}


def _batches(warehouse: WarehouseUnderTest) -> list[tuple[object, ...]]:
    return warehouse.query(
        "select rows_read, rows_loaded, rows_duplicate, rows_quarantined from raw.ingest_batches order by started_at",
    )


def test_same_file_twice_lands_once(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [_event("a"), _event("b")])

    warehouse.run("ingest", str(source))
    second = warehouse.run("ingest", str(source))

    assert warehouse.query("select count(*) from raw.usage_events") == [(2,)]
    assert "skipped, already loaded" in second.stdout
    assert _batches(warehouse) == [(2, 2, 0, 0)]


def test_loaded_event_id_counts_as_duplicate(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    warehouse.run("ingest", str(write_jsonl(tmp_path / "first.jsonl", [_event("a")])))
    second = write_jsonl(tmp_path / "second.jsonl", [_event("a"), _event("b"), _event("b")])

    result = warehouse.run("ingest", str(second))

    assert "read 3 = loaded 1 + duplicate 2 + quarantined 0" in result.stdout
    assert warehouse.query("select count(*) from raw.usage_events") == [(2,)]


@pytest.mark.parametrize("warehouse", [*TARGETS, SPARK], indirect=True)
def test_malformed_lines_quarantined_with_reason(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(_event("ok-1")),
        '{"event_id": "broken", "created_at": ',
        json.dumps(_event("neg", usage=None, input_tokens=-5, output_tokens=1)),
        json.dumps({k: v for k, v in _event("no-time").items() if k != "created_at"}),
        "[1, 2, 3]",
        json.dumps(_event("ok-2")),
        # Valid JSON, but the escape is half of a surrogate pair: no character, so no UTF-8 text.
        json.dumps(_event("lone-surrogate", tool_name="\ud800")),
        '{"event_id": "control", "created_at": "2025-09-03T10:00:00Z", "provider": "openai", "operation": "a\tb"}',
    ]
    source.write_text("\n".join(lines) + "\n")

    result = warehouse.run("ingest", str(source))

    assert "read 8 = loaded 2 + duplicate 0 + quarantined 6" in result.stdout
    reasons = dict(warehouse.query("select line_number, reason from raw.quarantined_rows"))
    assert reasons == {
        2: "invalid_json", 3: "negative_token_count", 4: "missing_created_at", 5: "not_an_object",
        7: "invalid_tool_name", 8: "invalid_json",
    }
    messages = dict(warehouse.query("select line_number, message from raw.quarantined_rows"))
    assert "Invalid control character at column" in messages[8]
    texts = dict(warehouse.query("select line_number, raw_text from raw.quarantined_rows"))
    assert texts[2] == '{"event_id": "broken", "created_at": '


def test_quarantine_list_shows_reason_and_fix(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(_event("bad", platform="azure_foundry")) + "\n")
    warehouse.run("ingest", str(source))

    listing = warehouse.run("quarantine", "list")

    assert "invalid_platform: 1 rows" in listing.stdout
    assert "'azure_foundry'" in listing.stdout
    assert "quarantine replay" in listing.stdout


def test_replay_lands_fixed_rows(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(_event("fixable", platform="azure_foundry")) + "\n")
    warehouse.run("ingest", str(source))
    # An operator corrects the row in place, as after fixing the producer's platform name.

    warehouse.execute("update raw.quarantined_rows set raw_text = replace(raw_text, 'azure_foundry', 'azure')")

    replay = warehouse.run("quarantine", "replay")
    again = warehouse.run("quarantine", "replay")

    assert "read 1 = loaded 1 + duplicate 0 + quarantined 0" in replay.stdout
    assert "read 0 = loaded 0" in again.stdout
    assert warehouse.query("select platform, source_file, line_number from raw.usage_events") == [
        ("azure", str(source), 1)
    ]
    assert warehouse.query("select replay_batch_id is not null from raw.quarantined_rows") == [(True,)]


def test_replay_keeps_rows_still_invalid(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"event_id": "x", \n')
    warehouse.run("ingest", str(source))

    replay = warehouse.run("quarantine", "replay")

    assert "read 1 = loaded 0 + duplicate 0 + quarantined 1" in replay.stdout
    assert warehouse.query("select count(*) from raw.quarantined_rows where replayed_at is null") == [(1,)]


def test_raw_rows_carry_lineage(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [_event("a"), _event("b")])
    warehouse.run("ingest", str(source))

    rows = warehouse.query(
        """
        select events.event_id, events.source_file, events.line_number, events.loaded_at is not null,
            events.batch_id = batches.batch_id
        from raw.usage_events as events
        cross join raw.ingest_batches as batches
        order by events.line_number
        """,
    )
    assert rows == [("a", str(source), 1, True, True), ("b", str(source), 2, True, True)]


def test_gzipped_jsonl_and_unknown_fields(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl.gz"
    with gzip.open(source, "wt") as handle:
        handle.write(json.dumps(_event("gz", surprise={"kept": True})) + "\n")

    warehouse.run("ingest", str(source))

    assert warehouse.query("select extra_fields from raw.usage_events") == [('{"surprise":{"kept":true}}',)]


def test_token_usage_csv_export_lands(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "token_usage.csv"
    source.write_text(
        "id,created_at,provider,model,tool_name,operation,input_tokens,output_tokens,units,unit_type,"
        "cost_usd,user_id,organization_id\n"
        "41,2025-09-03 10:00:00+00,google,veo-3.0-generate-001,VEO Avatars,generate_video,,,8,video_seconds,"
        "3.2,user_1,org_a\n"
        "42,2025-09-03 10:05:00+00,openai,text-embedding-3-small,Knowledge Base,embed,4,0,,,0.00000008,user_1,\n"
    )

    warehouse.run("ingest", str(source))

    rows = warehouse.query(
        "select event_id, units, reported_cost_usd, organization_id from raw.usage_events order by event_id",
    )
    assert rows == [
        ("token_usage:41", Decimal("8.000000"), Decimal("3.200000000000"), "org_a"),
        ("token_usage:42", None, Decimal("0.000000080000"), None),
    ]
    assert warehouse.query("select source_format from raw.ingest_batches") == [("token_usage_csv",)]


@pytest.mark.parametrize("warehouse", [*TARGETS, SPARK], indirect=True)
def test_times_stored_as_utc(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    warehouse.run("ingest", str(write_jsonl(tmp_path / "e.jsonl", [
        _event("offset", created_at="2025-03-10T23:30:00-02:00"),
        _event("naive", created_at="2025-03-10T23:30:00"),
    ])))

    rows = warehouse.query("select event_id, cast(created_at as varchar) from raw.usage_events order by event_id")
    assert rows == [("naive", "2025-03-10 23:30:00"), ("offset", "2025-03-11 01:30:00")]
    # Spark's table is read as Parquet through DuckDB, which shows a UTC timestamp as TIMESTAMP.
    expected_type = {"postgres": "timestamp without time zone"}.get(warehouse.target, "TIMESTAMP")
    assert warehouse.query(
        "select data_type from information_schema.columns where table_name = 'usage_events' and column_name = 'created_at'",
    ) == [(expected_type,)]


def test_missing_path_fails_clearly(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    result = warehouse.run("ingest", str(tmp_path / "nope.jsonl"), check=False)

    assert result.returncode == 1
    assert "no such file or folder" in result.stderr


# Lands the first chunk of a file under a new batch, then dies without finishing it.
DYING_INGEST = """
import os, sys
from pathlib import Path
from ingest import loader
from ingest.catalog import ModelResolver
from ingest.config import Settings
from ingest.readers import read_records
from ingest.sample import write_sample
from ingest.warehouse import open_warehouse

database, source = Path(sys.argv[1]), Path(sys.argv[2])
warehouse = open_warehouse(Settings(target="duckdb", duckdb_path=database, project_dir=Path.cwd()))
info = loader._batch_info(str(source), "jsonl", "sha-test", 1)
batch = warehouse.batch(info)
writer = batch.__enter__()
records = [loader._Located(record, str(source), ordinal) for ordinal, record in enumerate(read_records(source))]
events, _ = loader._validate(records, info, ModelResolver())
writer.append_events(events)
os._exit(9)
"""


def test_failed_batch_leaves_nothing(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [_event("a"), _event("b")])
    opened = open_warehouse(warehouse.settings())
    info = loader._batch_info(str(source), "jsonl", "sha-test", 1)

    with pytest.raises(RuntimeError, match="disk on fire"):
        with opened.batch(info) as writer:
            events, _ = loader._validate(
                [loader._Located(record, str(source), ordinal) for ordinal, record in enumerate(read_records(source))], info, ModelResolver()
            )
            writer.append_events(events)
            raise RuntimeError("disk on fire")
    opened.close()

    assert warehouse.query("select count(*) from raw.usage_events") == [(0,)]
    assert warehouse.query("select status from raw.ingest_batches") == [("failed",)]


# DuckDB only: a DuckDB batch commits chunk by chunk under a `loading` ledger row, which the next
# open marks abandoned and removes. A PostgreSQL batch is one transaction, so a process that dies
# leaves no rows at all, and the first assertion below would not hold.
def test_abandoned_batch_removed_on_open(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    source = write_jsonl(tmp_path / "events.jsonl", [_event("a"), _event("b")])
    # A script file, not `python -c`: with pyspark installed, Great Expectations imports Spark
    # Connect, which exits a process whose main module has no file, taking it for a doctest run.
    script = tmp_path / "dying_ingest.py"
    script.write_text(DYING_INGEST)
    died = subprocess.run([sys.executable, str(script), str(database), str(source)], cwd=PROJECT_DIR)
    assert died.returncode == 9
    assert query(database, "select count(*) from raw.usage_events") == [(2,)]

    run_cli(database, "ingest", str(source))

    assert query(database, "select status, rows_loaded from raw.ingest_batches order by started_at") == [
        ("abandoned", 0),
        ("loaded", 2),
    ]
    assert query(database, "select count(*) from raw.usage_events") == [(2,)]


def test_truncated_gzip_fails_alone(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    lines = "".join(json.dumps(_event(f"t{number}")) + "\n" for number in range(2000))
    whole = gzip.compress(lines.encode())
    (folder / "a_truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    write_jsonl(folder / "b_good.jsonl", [_event("good")])

    result = warehouse.run("ingest", str(folder), check=False)

    assert result.returncode == 1
    assert "a_truncated.jsonl.gz" in result.stderr
    assert "truncated or corrupt" in result.stderr
    assert "b_good.jsonl: read 1 = loaded 1" in result.stdout
    assert warehouse.query("select event_id from raw.usage_events") == [("good",)]
    assert warehouse.query("select status from raw.ingest_batches order by started_at") == [("failed",), ("loaded",)]


def test_csv_repeated_column_rejected(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "repeated.csv"
    source.write_text("event_id,created_at,provider,operation,provider\ne1,2025-09-03T10:00:00Z,openai,embed,google\n")

    result = warehouse.run("ingest", str(source), check=False)

    assert result.returncode == 1
    assert "names provider more than once" in result.stderr


def test_replay_keeps_undecodable_rows(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "latin1.jsonl"
    line = json.dumps(_event("cafe", tool_name="caf\u00e9"), ensure_ascii=False).encode("cp1252")
    source.write_bytes(line + b"\n")
    warehouse.run("ingest", str(source))

    replay = warehouse.run("quarantine", "replay")

    assert "read 1 = loaded 0 + duplicate 0 + quarantined 1" in replay.stdout
    assert warehouse.query("select count(*) from raw.usage_events") == [(0,)]


def test_dismissed_rows_leave_open_list(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"event_id": "x", \n' + json.dumps(_event("bad", platform="nowhere")) + "\n")
    warehouse.run("ingest", str(source))

    dismissed = warehouse.run("quarantine", "dismiss", "--reason", "invalid_json", "--note", "resent fixed")
    listing = warehouse.run("quarantine", "list")

    assert "dismissed 1 quarantined rows" in dismissed.stdout
    assert "invalid_json" not in listing.stdout
    assert "invalid_platform: 1 rows" in listing.stdout
    assert warehouse.query("select dismissal_note from raw.quarantined_rows where reason = 'invalid_json'") == [
        ("resent fixed",)
    ]


def test_dismiss_needs_a_selection(warehouse: WarehouseUnderTest) -> None:
    result = warehouse.run("quarantine", "dismiss", "--note", "x", check=False)

    assert result.returncode == 1
    assert "--reason, --batch or both" in result.stderr


def test_sample_dirt_reconciles_exactly(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    """Every line the sample corrupts on purpose is quarantined, and every resent line is a duplicate."""
    sample = write_sample(tmp_path / "s.jsonl.gz", events=20000, days=10, seed=11, end=date(2026, 11, 30))

    result = warehouse.run("ingest", str(sample.path))

    loaded = sample.events_written - sample.duplicate_lines - sample.malformed_lines
    assert (
        f"read {sample.events_written} = loaded {loaded} + duplicate {sample.duplicate_lines}"
        f" + quarantined {sample.malformed_lines}"
    ) in result.stdout


def test_spool_segments_shipped_and_deleted(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    write_jsonl(spool / "20261201T000000-a.jsonl", [_event("s1"), _event("s2")])
    write_jsonl(spool / "20261201T000100-b.jsonl", [_event("s2"), _event("s3")])
    still_open = spool / "20261201T000200-c.jsonl.open"
    still_open.write_text(json.dumps(_event("s4")) + "\n")

    result = warehouse.run("ingest", "--spool", str(spool))

    assert "shipped 2 closed segments" in result.stdout
    assert sorted(path.name for path in spool.iterdir()) == [still_open.name]
    assert warehouse.query("select event_id from raw.usage_events order by event_id") == [("s1",), ("s2",), ("s3",)]


def test_spool_segment_landed_before_deleted(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    segment = write_jsonl(spool / "20261201T000000-0a1b.jsonl", [_event("s1")])
    warehouse.run("ingest", str(segment))  # landed, but the process died before deleting it

    result = warehouse.run("ingest", "--spool", str(spool))

    assert "skipped, already loaded" in result.stdout
    assert not segment.exists()
    assert warehouse.query("select count(*) from raw.usage_events") == [(1,)]


def test_ingest_needs_paths_or_spool(warehouse: WarehouseUnderTest) -> None:
    result = warehouse.run("ingest", check=False)

    assert result.returncode == 1
    assert "--spool" in result.stderr


OTLP_REQUEST = {
    "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "DocService"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "name": "chat gpt-4o-mini",
            "startTimeUnixNano": "1756893600000000000",
            "endTimeUnixNano": "1756893601000000000",
            "attributes": [
                {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini-2024-07-18"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1000"}},
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "100"}},
                {"key": "organization.id", "value": {"stringValue": "org_a"}},
            ],
        }]}],
    }]
}


def test_otlp_spans_land_as_events(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = tmp_path / "traces.otlp.json"
    source.write_text(json.dumps(OTLP_REQUEST))

    result = warehouse.run("ingest", str(source))

    assert "read 1 = loaded 1" in result.stdout
    rows = warehouse.query(
        "select event_id, provider, input_tokens, output_tokens, organization_id, service from raw.usage_events",
    )
    assert rows == [
        ("otlp:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174", "openai", 1000, 100, "org_a", "DocService")
    ]
    assert warehouse.query("select source_format from raw.ingest_batches") == [("otlp",)]


def test_expectation_failures_quarantined_by_name(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "mixed.jsonl", [
        _event("good"),
        _event("future", created_at="2999-01-01T00:00:00Z"),
        _event("unknown-model", model="gemini-experimental-zz", provider="google"),
    ])
    with source.open("a") as handle:
        handle.write('{"event_id": "broken"\n')

    result = warehouse.run("ingest", str(source))

    assert "read 4 = loaded 2 + duplicate 0 + quarantined 2" in result.stdout
    assert "expectations: 3 rows checked, 1 failed; flagged 1 outside the price catalog" in result.stdout
    reasons = dict(warehouse.query("select line_number, reason from raw.quarantined_rows"))
    assert reasons[4] == "invalid_json"
    assert reasons[2].startswith("expect_column_values_to_be_between(created_at")
    message = warehouse.query("select message from raw.quarantined_rows where line_number = 2")[0][0]
    assert "2999-01-01" in str(message)
    stored = warehouse.query("select validation_result from raw.ingest_batches")[0][0]
    assert json.loads(str(stored))["rows_failed"] == 1
    assert json.loads(str(stored))["outside_catalog"] == 1


def test_spool_ignores_other_files(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    other = write_jsonl(spool / "daily.jsonl", [_event("d1")])

    result = warehouse.run("ingest", "--spool", str(spool))

    assert "shipped 0 closed segments" in result.stdout
    assert other.exists()


def test_same_bad_line_quarantined_once(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    first = tmp_path / "day1.jsonl"
    first.write_text('{"event_id": "x", \n' + json.dumps(_event("a")) + "\n")
    resent = tmp_path / "day1-resent.jsonl"
    resent.write_text('{"event_id": "x", \n' + json.dumps(_event("a")) + "\n" + json.dumps(_event("b")) + "\n")
    warehouse.run("ingest", str(first))

    result = warehouse.run("ingest", str(resent))

    assert "read 3 = loaded 1 + duplicate 2 + quarantined 0" in result.stdout
    assert warehouse.query("select count(*) from raw.quarantined_rows") == [(1,)]


def test_otlp_spans_of_one_request_quarantined_apart(warehouse: WarehouseUnderTest, tmp_path: Path) -> None:
    request = json.loads(json.dumps(OTLP_REQUEST))
    span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    broken = []
    for number in range(3):
        copy = json.loads(json.dumps(span))
        copy["spanId"] = f"00000000000000a{number}"
        copy["attributes"] = [item for item in copy["attributes"] if item["key"] != "gen_ai.operation.name"]
        broken.append(copy)
    request["resourceSpans"][0]["scopeSpans"][0]["spans"] = [span, *broken]
    source = tmp_path / "old.otlp.json"
    source.write_text(json.dumps(request))

    result = warehouse.run("ingest", str(source))

    assert "read 4 = loaded 1 + duplicate 0 + quarantined 3" in result.stdout
