"""Tests for reading JSON Lines and CSV source files record by record (ingest/readers.py).

Every file is written in pytest's tmp_path, so the tests read nothing outside it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

from ingest.events import parse_event
from ingest.readers import (
    SourceError,
    SourceRecord,
    expand_paths,
    file_sha256,
    read_records,
    source_format,
    source_kind,
)

EVENT_LINE_1 = '{"event_id": "e1", "created_at": "2025-09-03T10:00:00Z", "provider": "openai", "operation": "chat"}'
EVENT_LINE_2 = '{"event_id": "e2", "created_at": "2025-09-03T11:00:00Z", "provider": "gemini", "operation": "chat"}'

CANONICAL_HEADER = "event_id,created_at,provider,operation,model,input_tokens,output_tokens"
TOKEN_USAGE_HEADER = (
    "id,created_at,provider,model,tool_name,operation,input_tokens,output_tokens,units,unit_type,"
    "cost_usd,user_id,organization_id"
)


def write_bytes(path: Path, content: bytes) -> Path:
    """Write `content` to `path`, gzipped when the name ends in .gz (any case)."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "wb") as handle:
            handle.write(content)
    else:
        path.write_bytes(content)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def read_all(path: Path) -> list[SourceRecord]:
    return list(read_records(path))


def line_numbers(records: list[SourceRecord]) -> list[int]:
    return [record.line_number for record in records]


def error_reasons(records: list[SourceRecord]) -> list[str | None]:
    return [record.error.reason if record.error else None for record in records]


# --- JSON Lines ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events.jsonl", "events.ndjson", "events.json", "events.jsonl.gz", "EVENTS.JSONL.GZ"])
def test_read_records_json_lines(tmp_path: Path, name: str) -> None:
    path = write_text(tmp_path / name, f"{EVENT_LINE_1}\n{EVENT_LINE_2}\n")

    records = read_all(path)

    assert line_numbers(records) == [1, 2]
    assert [record.fields["event_id"] for record in records if record.fields] == ["e1", "e2"]
    assert [record.raw_text for record in records] == [EVENT_LINE_1, EVENT_LINE_2]
    assert error_reasons(records) == [None, None]


def test_read_records_jsonl_no_final_newline(tmp_path: Path) -> None:
    records = read_all(write_text(tmp_path / "events.jsonl", f"{EVENT_LINE_1}\n{EVENT_LINE_2}"))

    assert line_numbers(records) == [1, 2]


def test_read_records_jsonl_crlf(tmp_path: Path) -> None:
    records = read_all(write_text(tmp_path / "events.jsonl", f"{EVENT_LINE_1}\r\n{EVENT_LINE_2}\r\n"))

    assert [record.raw_text for record in records] == [EVENT_LINE_1, EVENT_LINE_2]
    assert error_reasons(records) == [None, None]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_read_records_jsonl_skips_blank(tmp_path: Path, name: str) -> None:
    path = write_bytes(tmp_path / name, f"\n{EVENT_LINE_1}\n\n   \n\t\n{EVENT_LINE_2}\n\n".encode())

    records = read_all(path)

    assert line_numbers(records) == [2, 6]


def test_read_records_jsonl_keeps_decimals(tmp_path: Path) -> None:
    path = write_text(tmp_path / "events.jsonl", '{"event_id": "e1", "cost_usd": 0.00000008}\n')

    fields = read_all(path)[0].fields

    assert fields is not None
    assert str(fields["cost_usd"]) == "8E-8"


@pytest.mark.parametrize(
    ("bad_line", "reason", "expected_text"),
    [
        pytest.param('{"event_id": "e9", ', "invalid_json", "invalid JSON", id="truncated-object"),
        pytest.param("not json", "invalid_json", "column 1", id="plain-text"),
        pytest.param("[1, 2]", "not_an_object", "got list", id="array"),
        pytest.param("42", "not_an_object", "got int", id="number"),
    ],
)
def test_read_records_jsonl_bad_line(tmp_path: Path, bad_line: str, reason: str, expected_text: str) -> None:
    path = write_text(tmp_path / "events.jsonl", f"{EVENT_LINE_1}\n{bad_line}\n{EVENT_LINE_2}\n")

    records = read_all(path)

    assert line_numbers(records) == [1, 2, 3]
    assert error_reasons(records) == [None, reason, None]
    assert records[1].fields is None
    assert records[1].raw_text == bad_line
    assert expected_text in records[1].error.message  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_read_records_jsonl_invalid_utf8(tmp_path: Path, name: str) -> None:
    raw = EVENT_LINE_1.encode() + b"\n" + b'{"event_id": "e\xff"}\n' + EVENT_LINE_2.encode() + b"\n"
    path = write_bytes(tmp_path / name, raw)

    records = read_all(path)

    assert error_reasons(records) == [None, "invalid_encoding", None]
    assert records[1].line_number == 2
    assert records[1].fields is None
    assert records[1].raw_text == '{"event_id": "e\ufffd"}'
    assert "offset 15" in records[1].error.message  # type: ignore[union-attr]


# --- CSV with canonical columns ----------------------------------------------------------------


def test_read_records_canonical_csv(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "events.csv",
        f"{CANONICAL_HEADER}\n"
        "e1,2025-09-03T10:00:00Z,openai,chat,gpt-4o,120,30\n"
        "e2,2025-09-03T11:00:00Z,gemini,chat,gemini-2.0-flash,80,\n",
    )

    records = read_all(path)

    assert source_kind(path) == "csv"
    assert line_numbers(records) == [2, 3]
    assert error_reasons(records) == [None, None]
    assert records[0].fields == {
        "event_id": "e1",
        "created_at": "2025-09-03T10:00:00Z",
        "provider": "openai",
        "operation": "chat",
        "model": "gpt-4o",
        "input_tokens": "120",
        "output_tokens": "30",
    }
    assert records[0].raw_text == "e1,2025-09-03T10:00:00Z,openai,chat,gpt-4o,120,30"
    assert json.loads(records[1].raw_fields or "null")["output_tokens"] == ""


def test_read_records_csv_gzip(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "events.csv.gz", f"{CANONICAL_HEADER}\ne1,2025-09-03T10:00:00Z,openai,chat,gpt-4o,120,30\n"
    )

    records = read_all(path)

    assert source_kind(path) == "csv"
    assert [record.fields["event_id"] for record in records if record.fields] == ["e1"]


def test_read_records_csv_header_padded(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "events.csv", " event_id , created_at ,provider,operation\ne1,2025-09-03T10:00:00Z,openai,chat\n"
    )

    fields = read_all(path)[0].fields

    assert fields is not None
    assert fields["event_id"] == "e1"
    assert fields["created_at"] == "2025-09-03T10:00:00Z"


def test_read_records_csv_quoted_fields(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "events.csv",
        "event_id,created_at,provider,operation,tool_name,attributes\n"
        'e1,2025-09-03T10:00:00Z,openai,chat,"line one\nline two","{""steps"": ""search, summarize""}"\n'
        'e2,2025-09-03T10:00:00Z,openai,chat,"a\r\nb",\n'
        'e3,2025-09-03T10:00:00Z,openai,chat,"search, then summarize",\n',
    )

    records = read_all(path)

    assert line_numbers(records) == [2, 4, 6]
    assert error_reasons(records) == [None, None, None]
    assert records[0].fields["tool_name"] == "line one\nline two"  # type: ignore[index]
    assert records[0].fields["attributes"] == '{"steps": "search, summarize"}'  # type: ignore[index]
    assert records[1].fields["tool_name"] == "a\r\nb"  # type: ignore[index]
    assert records[2].fields["tool_name"] == "search, then summarize"  # type: ignore[index]
    assert parse_event(records[0].fields).attributes == {"steps": "search, summarize"}  # type: ignore[arg-type]


def test_read_records_csv_skips_blank(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "events.csv",
        "event_id,created_at,provider,operation\n"
        "\n"
        "e1,2025-09-03T10:00:00Z,openai,chat\n"
        ",,,\n"
        "\n"
        "e2,2025-09-03T10:00:00Z,openai,chat\n",
    )

    records = read_all(path)

    assert line_numbers(records) == [3, 6]


@pytest.mark.parametrize(
    ("bad_row", "expected_text"),
    [
        pytest.param("e2,2025-09-03T10:00:00Z,openai,chat, with comma", "row has 5 fields but the header has 4",
                     id="too-many"),
        pytest.param("e2,2025-09-03T10:00:00Z,openai", "row has 3 fields but the header has 4", id="too-few"),
        pytest.param("e2", "row has 1 fields but the header has 4", id="single-field"),
    ],
)
def test_read_records_csv_ragged_row(tmp_path: Path, bad_row: str, expected_text: str) -> None:
    path = write_text(
        tmp_path / "events.csv",
        "event_id,created_at,provider,operation\n"
        "e1,2025-09-03T10:00:00Z,openai,chat\n"
        f"{bad_row}\n"
        "e3,2025-09-03T10:00:00Z,openai,chat\n",
    )

    records = read_all(path)

    assert line_numbers(records) == [2, 3, 4]
    assert error_reasons(records) == [None, "ragged_csv_row", None]
    assert records[1].fields is None
    assert records[1].raw_text == bad_row
    assert expected_text in records[1].error.message  # type: ignore[union-attr]


def test_read_records_csv_without_created_at(tmp_path: Path) -> None:
    path = write_text(tmp_path / "events.csv", "event_id,provider\ne1,openai\n")

    with pytest.raises(SourceError, match="no created_at column"):
        read_all(path)


def test_read_records_csv_empty_file(tmp_path: Path) -> None:
    assert read_all(write_text(tmp_path / "events.csv", "")) == []


def test_read_records_csv_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(
        b"event_id,created_at,provider,operation\n"
        b"e1,2025-09-03T10:00:00Z,openai,chat\n"
        b"e2,2025-09-03T10:00:00Z,open\xffai,chat\n"
        b"e3,2025-09-03T10:00:00Z,openai,chat\n"
    )

    records = read_all(path)

    assert line_numbers(records) == [2, 3, 4]
    assert error_reasons(records) == [None, "invalid_encoding", None]


def test_read_records_csv_invalid_utf8_large(tmp_path: Path) -> None:
    rows = [f"e{index},2025-09-03T10:00:00Z,openai,chat\n".encode() for index in range(1000)]
    rows[500] = b"e500,2025-09-03T10:00:00Z,open\xffai,chat\n"
    path = tmp_path / "events.csv"
    path.write_bytes(b"event_id,created_at,provider,operation\n" + b"".join(rows))

    records = read_all(path)

    assert len(records) == 1000
    assert [record.line_number for record in records if record.error] == [502]


# --- CSV export of the app's token_usage table -----------------------------------------------


def test_read_records_token_usage_ids(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "token_usage.csv",
        f"{TOKEN_USAGE_HEADER}\n"
        "101,2025-09-03 10:00:00.123+00,openai,gpt-4o,search,chat,1200,300,,,0.0042,u-1,org-1\n"
        "102,2025-09-03 10:05:00+00,google,veo-3.0-generate-001,,generate_video,,,8,video_seconds,,u-2,org-1\n",
    )

    records = read_all(path)

    assert source_kind(path) == "token_usage_csv"
    assert [record.fields["event_id"] for record in records if record.fields] == [
        "token_usage:101",
        "token_usage:102",
    ]
    assert all("id" not in (record.fields or {}) for record in records)
    assert json.loads(records[0].raw_fields or "null")["id"] == "101"


def test_read_records_token_usage_parses(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "token_usage.csv",
        f"{TOKEN_USAGE_HEADER}\n"
        " 101 ,2025-09-03 10:00:00.123+00,openai,gpt-4o,search,chat,1200,300,,,0.0042,u-1,org-1\n",
    )

    event = parse_event(read_all(path)[0].fields)  # type: ignore[arg-type]

    assert event.event_id == "token_usage:101"
    assert event.input_tokens == 1200
    assert event.tool_name == "search"
    assert event.extra_fields == {}


def test_read_records_token_usage_no_id(tmp_path: Path) -> None:
    header = TOKEN_USAGE_HEADER.removeprefix("id,")
    path = write_text(
        tmp_path / "token_usage.csv",
        f"{header}\n2025-09-03 10:00:00+00,openai,gpt-4o,,chat,10,5,,,,u-1,org-1\n",
    )

    records = read_all(path)

    assert source_kind(path) == "token_usage_csv"
    assert re.fullmatch(r"derived:[0-9a-f]{32}", records[0].fields["event_id"])  # type: ignore[index]


@pytest.mark.parametrize(
    ("header", "row"),
    [
        pytest.param(
            TOKEN_USAGE_HEADER, ",2025-09-03 10:00:00+00,openai,gpt-4o,,chat,10,5,,,,u-1,org-1", id="token-usage-blank-id"
        ),
        pytest.param(
            "created_at,provider,operation,input_tokens", "2025-09-03T10:00:00Z,openai,chat,10", id="canonical-no-column"
        ),
        pytest.param(
            "event_id,created_at,provider,operation", " ,2025-09-03T10:00:00Z,openai,chat", id="canonical-blank"
        ),
        pytest.param(
            "id,created_at,provider,operation", "7,2025-09-03T10:00:00Z,openai,chat", id="canonical-id-column"
        ),
    ],
)
def test_read_records_derived_id(tmp_path: Path, header: str, row: str) -> None:
    # The same row twice: the ids must differ between lines and repeat on a second read.
    path = write_text(tmp_path / "events.csv", f"{header}\n{row}\n{row}\n")

    first_read = [record.fields["event_id"] for record in read_all(path) if record.fields]
    second_read = [record.fields["event_id"] for record in read_all(path) if record.fields]

    assert all(event_id.startswith("derived:") for event_id in first_read)
    assert first_read == second_read
    assert first_read[0] != first_read[1]


def test_read_records_token_usage_bom(tmp_path: Path) -> None:
    path = tmp_path / "token_usage.csv"
    path.write_bytes(
        f"\ufeff{TOKEN_USAGE_HEADER}\n101,2025-09-03 10:00:00+00,openai,gpt-4o,,chat,10,5,,,,u-1,org-1\n".encode()
    )

    fields = read_all(path)[0].fields

    assert fields is not None
    assert fields["event_id"] == "token_usage:101"


# --- file names, folders and hashes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("a.jsonl", "jsonl", id="jsonl"),
        pytest.param("a.ndjson", "jsonl", id="ndjson"),
        pytest.param("a.json", "jsonl", id="json"),
        pytest.param("a.jsonl.gz", "jsonl", id="jsonl-gz"),
        pytest.param("a.CSV", "csv", id="csv-upper"),
        pytest.param("a.csv.gz", "csv", id="csv-gz"),
    ],
)
def test_source_format_supported(name: str, expected: str) -> None:
    assert source_format(Path(name)) == expected


@pytest.mark.parametrize("name", ["a.txt", "a.gz", "a.parquet", "a.csv.zip", "jsonl"])
def test_source_format_unsupported(name: str) -> None:
    with pytest.raises(SourceError, match=re.escape(f"{name}: unsupported file type")):
        source_format(Path(name))


def test_read_records_unsupported_suffix(tmp_path: Path) -> None:
    path = write_text(tmp_path / "events.txt", f"{EVENT_LINE_1}\n")

    with pytest.raises(SourceError, match="unsupported file type"):
        read_all(path)


def test_expand_paths_folder(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.csv", "c.jsonl.gz", "d.ndjson", "e.json", "f.CSV.GZ", "notes.txt", "g.gz", "h.jsonl.bak"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.csv").write_text("")
    (tmp_path / "sub" / "readme.md").write_text("")

    files = expand_paths([tmp_path])

    assert [path.relative_to(tmp_path).as_posix() for path in files] == [
        "a.csv",
        "b.jsonl",
        "c.jsonl.gz",
        "d.ndjson",
        "e.json",
        "f.CSV.GZ",
        "sub/z.csv",
    ]


def test_expand_paths_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.jsonl").write_text("")
    (folder / "a.jsonl").write_text("")
    single = write_text(tmp_path / "single.csv", "")

    files = expand_paths([single, folder])

    assert files == [single, folder / "a.jsonl", folder / "b.jsonl"]


def test_expand_paths_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.jsonl"

    with pytest.raises(SourceError, match=re.escape(f"{missing}: no such file or folder")):
        expand_paths([missing])


def test_expand_paths_empty_folder(tmp_path: Path) -> None:
    assert expand_paths([tmp_path]) == []


def test_file_sha256_plain(tmp_path: Path) -> None:
    path = write_text(tmp_path / "events.jsonl", f"{EVENT_LINE_1}\n")

    assert file_sha256(path) == hashlib.sha256(f"{EVENT_LINE_1}\n".encode()).hexdigest()


def test_file_sha256_stable(tmp_path: Path) -> None:
    path = write_text(tmp_path / "events.jsonl", f"{EVENT_LINE_1}\n")

    assert file_sha256(path) == file_sha256(path)


def test_file_sha256_gzip_compressed(tmp_path: Path) -> None:
    path = write_text(tmp_path / "events.jsonl.gz", f"{EVENT_LINE_1}\n")

    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_sha256_large(tmp_path: Path) -> None:
    # About 3 MiB, so the content spans several of the 1 MiB blocks that file_sha256 reads.
    content = bytes(range(256)) * (3 * 4096 + 7)
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)

    assert file_sha256(path) == hashlib.sha256(content).hexdigest()


def test_read_records_jsonl_byte_order_mark(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "bom.jsonl", b'\xef\xbb\xbf{"event_id": "a"}\n')

    records = read_all(path)

    assert records[0].error is None
    assert records[0].fields == {"event_id": "a"}
