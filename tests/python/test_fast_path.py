"""The JSON Lines fast path lands exactly what the record-by-record Python path lands.

Each equivalence test ingests one file twice, into two new DuckDB warehouses, once with
`fast_path=False`, and compares the landed events, the quarantined rows and the ledger column by
column. The certification tests check which lines the SQL certifies and which it hands to Python.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import PROJECT_DIR, query, run_cli, shared_file, write_jsonl
from ingest.catalog import ModelResolver, load_deployments
from ingest.config import Settings
from ingest.jsonl_fast_path import JsonLinesParser, read_line_chunks
from ingest.loader import _batch_info, ingest_file
from ingest.sample.output import rewrite_events
from ingest.sample.payloads import with_token_fields
from ingest.warehouse import open_warehouse
from ingest.warehouse.base import USAGE_EVENT_SCHEMA

# Columns that differ between two ingests of the same file by design.
LINEAGE_PER_INGEST = ("batch_id", "loaded_at")
EVENT_COLUMNS = [name for name in USAGE_EVENT_SCHEMA.names if name not in LINEAGE_PER_INGEST]
QUARANTINE_COLUMNS = [
    "line_number", "ordinal", "source_format", "source_file", "raw_text", "raw_fields", "reason", "message",
]
LEDGER_COLUMNS = ["source_format", "rows_read", "rows_loaded", "rows_duplicate", "rows_quarantined", "status"]

BASE_EVENT: dict[str, Any] = {
    "created_at": "2026-11-01T10:00:00Z",
    "provider": "openai",
    "operation": "analyze_text",
    "model": "gpt-4o-2024-08-06",
    "input_tokens": 100,
    "output_tokens": 20,
}


def _line(event_id: str, **changes: Any) -> str:
    """Return one compact JSON line: BASE_EVENT with `changes`, where a value of None removes the field."""
    event = {"event_id": event_id, **BASE_EVENT, **changes}
    return json.dumps({key: value for key, value in event.items() if value is not None}, ensure_ascii=False,
                      separators=(",", ":"))


def _raw(event_id: str, fragment: str) -> str:
    """Return a line whose last field is written by hand, for JSON that json.dumps cannot write."""
    return _line(event_id)[:-1] + "," + fragment + "}"


# (label, line, whether the fast path certifies it). Lines handed back land through Python.
TRICKY_LINES: list[tuple[str, str, bool]] = [
    ("plain", _line("plain"), True),
    ("spaces after separators", json.dumps({"event_id": "spaced", **BASE_EVENT}), True),
    ("unicode text", _line("unicode", tool_name="Café ☕ 工具", user_id="üser"), True),
    ("escaped unicode", json.dumps({"event_id": "escaped", **BASE_EVENT, "tool_name": "Café"}), False),
    ("nested metadata", _line("nested", metadata={"a": {"b": [1, 2, {"c": None}]}, "z": True}), True),
    ("metadata string", _line("meta-string", metadata="v1"), True),
    ("metadata JSON text", _line("meta-json-text", metadata="[1,2]"), True),
    ("metadata number", _line("meta-number", metadata=5), True),
    ("metadata empty object", _line("meta-empty", metadata={}), True),
    ("metadata blank string", _line("meta-blank", metadata="  "), True),
    ("metadata fraction", _line("meta-fraction", metadata={"temperature": 0.7}), False),
    ("metadata exponent", _raw("meta-exponent", '"metadata":{"n":1e3}'), False),
    ("metadata huge integer", _raw("meta-huge", '"metadata":{"n":123456789012345678901234567890}'), False),
    ("metadata repeated nested key", _raw("meta-repeat", '"metadata":{"k":1,"k":2}'), True),
    ("metadata NaN", _raw("meta-nan", '"metadata":{"n":NaN}'), False),
    ("attributes object", _line("attributes", attributes={"resolution": "720p", "audio": False}), True),
    ("attributes JSON text", _line("attributes-text", attributes="[1]"), False),
    ("attributes number", _line("attributes-number", attributes=3), False),
    ("nulls", _line("nulls", model=None, user_id=None), True),
    ("explicit nulls", _raw("explicit-nulls", '"user_id":null,"service":null,"metadata":null,"usage":null'), True),
    ("empty optional string", _line("empty-user", user_id=""), True),
    ("blank optional string", _line("blank-user", user_id="   "), False),
    ("user id with spaces", _line("spaced-user", user_id=" u1 "), False),
    ("event id with spaces", _line(" spaced-id "), False),
    ("event id with ideographic space", _line("id\u3000"), False),
    ("blank tool name", _line("blank-tool", tool_name="   "), True),
    ("padded provider", _line("padded-provider", provider=" OpenAI "), True),
    ("provider alias azure", _line("azure", provider="azure-openai"), True),
    ("provider alias bedrock", _line("bedrock", provider="bedrock", model="anthropic.claude-3-haiku"), True),
    ("provider vertex path", _line("vertex", provider="Vertex",
                                   model="projects/p/locations/us/publishers/google/models/gemini-2.5-flash"), True),
    ("models prefix", _line("models-prefix", provider="google", model="models/gemini-2.5-flash"), True),
    ("unknown provider", _line("unknown-provider", provider="acme-ai", model="acme-1"), True),
    ("invalid platform", _line("bad-platform", platform="mainframe"), False),
    ("tier alias", _line("tier-alias", service_tier="on-demand"), True),
    ("other tier", _line("other-tier", service_tier="Scale"), True),
    ("boolean user id", _line("bool-user", user_id=True), False),
    ("boolean provider", _line("bool-provider", provider=True), False),
    ("integer event id", _raw("ignored", '"event_id":12345').replace('"event_id":"ignored",', ""), False),
    ("integer user id", _line("int-user", user_id=42), False),
    ("missing provider", _line("no-provider", provider=None), False),
    ("missing operation", _line("no-operation", operation=None), False),
    ("zero tokens", _line("zero", input_tokens=0, output_tokens=0), True),
    ("minus zero tokens", _raw("minus-zero", '"reasoning_tokens":-0'), True),
    ("float token count", _raw("float-count", '"cached_input_tokens":1.0'), False),
    ("exponent token count", _raw("exponent-count", '"cached_input_tokens":1e1'), False),
    ("string token count", _line("string-count", input_tokens="100"), False),
    ("negative token count", _line("negative-count", output_tokens=-5), False),
    ("token count at limit", _line("limit-count", input_tokens=10**15), True),
    ("token count above limit", _line("above-limit", input_tokens=10**15 + 1), False),
    ("huge token count", _line("huge-count", input_tokens=10**30), False),
    ("NaN token count", _raw("nan-count", '"cache_write_tokens":NaN'), False),
    ("cached above input", _line("cached-above", cached_input_tokens=101), False),
    ("reasoning above output", _line("reasoning-above", reasoning_tokens=21), False),
    ("only usage details", _line("details-only", input_tokens=None, output_tokens=None,
                                 usage_details={"input_audio_tokens": 0}), True),
    ("usage details", _line("details", usage_details={"input_text_tokens": 60, "input_image_tokens": 40}), True),
    ("empty usage details", _line("details-empty", usage_details={}), True),
    ("usage details above total", _line("details-above", usage_details={"input_audio_tokens": 101}), False),
    ("unknown usage details key", _line("details-unknown", usage_details={"bogus_tokens": 1}), False),
    ("fractional usage detail", _raw("details-fraction", '"usage_details":{"input_audio_tokens":1.5}'), False),
    ("repeated usage details key", _raw("details-repeat", '"usage_details":{"input_audio_tokens":1,"input_audio_tokens":2}'),
     True),
    ("usage payload", _line("usage", input_tokens=None, output_tokens=None,
                            usage={"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}), False),
    ("unknown field", _line("extra", colour="blue"), False),
    ("repeated key", _raw("repeated", '"operation":"embed"'), False),
    ("offset with minutes", _line("offset", created_at="2026-11-01T10:00:00+02:00"), True),
    ("negative offset", _line("negative-offset", created_at="2026-11-01T10:00:00.5-05:30"), True),
    ("no offset", _line("naive", created_at="2026-11-01T10:00:00"), True),
    ("one fraction digit", _line("fraction-1", created_at="2026-11-01T10:00:00.1Z"), True),
    ("six fraction digits", _line("fraction-6", created_at="2026-11-01T10:00:00.123456Z"), True),
    ("seven fraction digits", _line("fraction-7", created_at="2026-11-01T10:00:00.1234567Z"), False),
    ("lowercase z", _line("lower-z", created_at="2026-11-01T10:00:00z"), False),
    ("lowercase t", _line("lower-t", created_at="2026-11-01t10:00:00Z"), False),
    ("space separator", _line("space-separator", created_at="2026-11-01 10:00:00Z"), False),
    ("hour offset", _line("hour-offset", created_at="2026-11-01T10:00:00+02"), False),
    ("no seconds", _line("no-seconds", created_at="2026-11-01T10:00Z"), False),
    ("leap second", _line("leap-second", created_at="2016-12-31T23:59:60Z"), False),
    ("hour 24", _line("hour-24", created_at="2026-11-01T24:00:00Z"), False),
    ("February 30", _line("february-30", created_at="2026-02-30T10:00:00Z"), False),
    ("February 29 of a leap year", _line("february-29", created_at="2024-02-29T10:00:00Z"), True),
    ("year 1", _line("year-1", created_at="0001-01-01T00:30:00+01:00"), False),
    ("year 2", _line("year-2", created_at="0002-01-01T00:30:00+01:00"), True),
    ("year 9999", _line("year-9999", created_at="9999-12-31T23:30:00-01:00"), False),
    ("future year", _line("future", created_at="9998-01-01T00:00:00Z"), True),
    ("created at with spaces", _line("spaced-created-at", created_at=" 2026-11-01T10:00:00Z "), False),
    ("created at number", _line("numeric-created-at", created_at=1762000000), False),
    ("cost with 12 decimals", _raw("cost-12", '"cost_usd":0.123456789012'), True),
    ("cost with 13 decimals", _raw("cost-13", '"cost_usd":0.1234567890125'), False),
    ("integer cost", _line("cost-integer", cost_usd=3), True),
    ("zero cost", _line("cost-zero", cost_usd=0), True),
    ("cost with exponent", _raw("cost-exponent", '"cost_usd":1e-3'), False),
    ("negative cost", _raw("cost-negative", '"cost_usd":-0.5'), False),
    ("minus zero cost", _raw("cost-minus-zero", '"cost_usd":-0.0'), False),
    ("cost as string", _line("cost-string", cost_usd="0.5"), False),
    ("cost of 10^12", _line("cost-large", cost_usd=10**12), False),
    ("units with 6 decimals", _raw("units-6", '"unit_type":"video_seconds","units":8.123456'), True),
    ("units with 7 decimals", _raw("units-7", '"unit_type":"video_seconds","units":8.1234567'), False),
    ("units with a trailing zero", _raw("units-7-zero", '"unit_type":"video_seconds","units":8.1234560'),
     False),
    ("integer units", _line("units-integer", units=4, unit_type="IMAGES", input_tokens=None, output_tokens=None),
     True),
    ("units without unit type", _line("units-alone", units=4), False),
    ("unit type without units", _line("unit-type-alone", unit_type="images"), False),
    ("trailing comma", _line("trailing-comma")[:-1] + ",}", False),
    ("invalid JSON", '{"event_id": "broken", ', False),
    ("array", "[1, 2]", False),
    ("string", '"text"', False),
    ("JSON null", "null", False),
    ("duplicate event id", _line("plain", operation="embed"), True),
    ("metadata nested too deep", _raw("too-deep", '"metadata":' + "[" * 5_000 + "]" * 5_000), False),
]


def _resolver() -> ModelResolver:
    return ModelResolver(load_deployments(PROJECT_DIR / "seeds" / "reference" / "deployment_models.csv"))


def _ingest(source: Path, database: Path, fast_path: bool) -> None:
    warehouse = open_warehouse(Settings(target="duckdb", duckdb_path=database, project_dir=PROJECT_DIR))
    try:
        ingest_file(source, warehouse, _resolver(), fast_path=fast_path)
    finally:
        warehouse.close()


def _landed(database: Path) -> dict[str, list[dict[str, Any]]]:
    events = query(database, f"select {', '.join(EVENT_COLUMNS)} from raw.usage_events order by line_number")
    quarantined = query(
        database,
        "select line_number, split_part(quarantine_id, ':', 2)::integer as ordinal, source_format, source_file, "
        "raw_text, raw_fields, reason, message from raw.quarantined_rows order by ordinal",
    )
    ledger = query(database, f"select {', '.join(LEDGER_COLUMNS)} from raw.ingest_batches")
    return {
        "events": [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in events],
        "quarantined": [dict(zip(QUARANTINE_COLUMNS, row, strict=True)) for row in quarantined],
        "ledger": [dict(zip(LEDGER_COLUMNS, row, strict=True)) for row in ledger],
    }


def _without_load_time(row: dict[str, Any]) -> dict[str, Any]:
    # The future-created_at message names each ingest's own load time.
    message = row.get("message")
    if message is None:
        return row
    return {**row, "message": re.sub(r"later than [0-9T:.-]+, the load time", "later than LOAD_TIME", message)}


def _validation_result(database: Path) -> dict[str, Any]:
    (text,), = query(database, "select validation_result from raw.ingest_batches")
    result = json.loads(text) if text else {}
    # The fast path validates 50,000 rows at a time where Python validates 10,000.
    result.pop("chunks", None)
    return result


def assert_same_landing(source: Path, folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Ingest `source` on both paths and assert equal rows, column by column; return the fast path's rows."""
    fast_database, python_database = folder / "fast.duckdb", folder / "python.duckdb"
    _ingest(source, fast_database, fast_path=True)
    _ingest(source, python_database, fast_path=False)
    fast, python = _landed(fast_database), _landed(python_database)

    for table in ("events", "quarantined", "ledger"):
        assert len(fast[table]) == len(python[table]), f"{table}: {len(fast[table])} rows on the fast path"
        for fast_row, python_row in zip(map(_without_load_time, fast[table]), map(_without_load_time, python[table]),
                                        strict=True):
            for column, python_value in python_row.items():
                fast_value = fast_row[column]
                assert (fast_value, type(fast_value)) == (python_value, type(python_value)), (
                    f"{table}.{column} of line {python_row.get('line_number')}: fast path {fast_value!r}, "
                    f"Python {python_value!r}"
                )
            if isinstance(python_row.get("reported_cost_usd"), Decimal):
                assert fast_row["reported_cost_usd"].as_tuple() == python_row["reported_cost_usd"].as_tuple()
    assert _validation_result(fast_database) == _validation_result(python_database)
    return fast


def _certified_labels(path: Path) -> dict[int, bool]:
    """Return, per line number of decoded lines, whether the fast path certified it."""
    info = _batch_info(str(path), "jsonl", "test", 0)
    certified: dict[int, bool] = {}
    with JsonLinesParser(_resolver()) as parser:
        for lines in read_line_chunks(path, 50_000):
            chunk = parser.parse(lines, info, datetime(2026, 12, 1))
            handed_back = set(chunk.handed_back)
            for ordinal, line_number in zip(lines.ordinals, lines.line_numbers, strict=True):
                certified[line_number] = ordinal not in handed_back
    return certified


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10,000-line sample workload: token fields, usage payloads and the sample's malformed lines."""
    folder = tmp_path_factory.mktemp("fast-path-sample")
    path = folder / "sample.jsonl.gz"
    run_cli(folder / "unused.duckdb", "sample", "--events", "10000", "--days", "30", "--end", "2026-11-30",
            "--out", str(path))
    return path


@pytest.fixture(scope="module")
def token_fields_file(sample_file: Path) -> Path:
    """The sample with every valid usage payload rewritten as token fields, as bench/run.py does."""
    path = sample_file.with_name("token_fields.jsonl.gz")
    rewrite_events(sample_file, path, with_token_fields)
    return path


def test_sample_lands_identically(sample_file: Path, tmp_path: Path) -> None:
    fast = assert_same_landing(sample_file, tmp_path)
    assert len(fast["events"]) > 9_500
    assert fast["quarantined"]


def test_token_fields_sample_lands_identically(token_fields_file: Path, tmp_path: Path) -> None:
    fast = assert_same_landing(token_fields_file, tmp_path)
    assert len(fast["events"]) > 9_500


def test_token_fields_sample_mostly_certified(token_fields_file: Path) -> None:
    certified = _certified_labels(token_fields_file)
    handed_back = [line for line, ok in certified.items() if not ok]
    # The sample writes a few hundred malformed lines and usage payloads on purpose.
    assert len(handed_back) < len(certified) * 0.01


def test_usage_cases_land_identically(tmp_path: Path) -> None:
    cases = [json.loads(line) for line in shared_file("cases/usage_cases.jsonl").read_text().splitlines() if line.strip()]
    events = [event for case in cases for event in case["events"]]
    source = write_jsonl(tmp_path / "cases.jsonl", events)
    fast = assert_same_landing(source, tmp_path)
    assert len(fast["events"]) + len(fast["quarantined"]) == len(events)


def test_tricky_lines_land_identically(tmp_path: Path) -> None:
    source = tmp_path / "tricky.jsonl"
    source.write_text("".join(line + "\n" for _, line, _ in TRICKY_LINES), encoding="utf-8")
    fast = assert_same_landing(source, tmp_path)
    assert fast["events"]
    assert fast["quarantined"]


def test_tricky_lines_certified_as_expected(tmp_path: Path) -> None:
    source = tmp_path / "tricky.jsonl"
    source.write_text("".join(line + "\n" for _, line, _ in TRICKY_LINES), encoding="utf-8")
    certified = _certified_labels(source)
    for line_number, (label, _, expected) in enumerate(TRICKY_LINES, start=1):
        assert certified[line_number] == expected, f"{label}: certified {certified[line_number]}"


def test_line_framing_lands_identically(tmp_path: Path) -> None:
    lines = [
        b"\xef\xbb\xbf" + _line("bom").encode() + b"\r\n",
        b"\n",
        b"   \t \r\n",
        "\u3000\n".encode(),
        _line("after-blank").encode() + b"\r\r\n",
        b'{"event_id": "latin-1 \xe9"}\n',
        b"\xef\xbb\xbf" + _line("bom-on-line-7").encode() + b"\n",
        _line("\u00e9t\u00e9").encode() + b"\n",
        _line("no-newline-at-end").encode(),
    ]
    source = tmp_path / "framing.jsonl.gz"
    source.write_bytes(gzip.compress(b"".join(lines)))
    fast = assert_same_landing(source, tmp_path)
    assert [row["line_number"] for row in fast["events"]] == [1, 5, 8, 9]
    assert [(row["line_number"], row["ordinal"], row["reason"]) for row in fast["quarantined"]] == [
        (6, 2, "invalid_encoding"), (7, 3, "invalid_json"),
    ]


def test_duplicates_across_paths_keep_first_line(tmp_path: Path) -> None:
    # Line 1 goes to Python (an unknown field), line 2 is certified: the first line still wins.
    source = tmp_path / "duplicates.jsonl"
    source.write_text(_line("same", colour="blue") + "\n" + _line("same", operation="embed") + "\n")
    fast = assert_same_landing(source, tmp_path)
    assert [(row["line_number"], row["extra_fields"]) for row in fast["events"]] == [(1, '{"colour":"blue"}')]


def test_future_rows_fail_expectations_on_both_paths(tmp_path: Path) -> None:
    source = tmp_path / "future.jsonl"
    source.write_text(_line("future", created_at="9998-01-01T00:00:00Z") + "\n" + _line("now") + "\n")
    fast = assert_same_landing(source, tmp_path)
    assert [row["reason"] for row in fast["quarantined"]] == ["expect_column_values_to_be_between(created_at)"]
