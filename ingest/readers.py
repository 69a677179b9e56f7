"""Read source files of usage events record by record, with line numbers and original text.

Readers stream, so memory keeps one record at a time whatever the file size. A record that cannot
be read (invalid JSON, a ragged CSV row, bytes that are not UTF-8) comes back with its error, so
the loader quarantines it and goes on with the rest of the file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ingest.events import InvalidEvent, derived_event_id, parse_json_line, token_usage_event_id

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")

# Columns of a CSV export of the app's token_usage table; `id` is optional.
TOKEN_USAGE_COLUMNS = frozenset(
    ("created_at", "provider", "model", "tool_name", "operation", "input_tokens", "output_tokens",
     "units", "unit_type", "cost_usd", "user_id", "organization_id")
)


class SourceError(Exception):
    """A file that cannot be read at all (not found, unsupported format, no CSV header)."""


@dataclass(frozen=True)
class SourceRecord:
    """One record of a source file: its fields, or the error that stopped reading them."""

    line_number: int
    raw_text: str
    fields: dict[str, Any] | None
    error: InvalidEvent | None = None
    raw_fields: str | None = None


# OpenTelemetry spans exported as OTLP JSON are named for their format, such as traces.otlp.json.
OTLP_SUFFIXES = (".otlp.json", ".otlp.jsonl", ".otlp.ndjson")


def source_format(path: Path) -> str:
    """Return otlp, jsonl or csv from the file name, looking through a trailing .gz."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(OTLP_SUFFIXES):
        return "otlp"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    raise SourceError(
        f"{path}: unsupported file type; use .jsonl, .ndjson, .json, .csv or .otlp.json (OpenTelemetry "
        "spans), optionally gzipped (.gz)"
    )


def source_kind(path: Path) -> str:
    """Return otlp, jsonl, csv (canonical columns) or token_usage_csv (an export of the app's table)."""
    if source_format(path) in ("jsonl", "otlp"):
        return source_format(path)
    with _open_binary(path) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace", newline="")
        header = next(csv.reader(text), [])
    return csv_kind(header)


def expand_paths(paths: list[Path]) -> list[Path]:
    """Return the files named and the supported files inside the folders named, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    child for child in path.rglob("*")
                    if child.is_file() and child.name.lower().removesuffix(".gz").endswith(SUFFIXES)
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            raise SourceError(f"{path}: no such file or folder")
    return files


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of the file's bytes as stored (compressed files are hashed compressed)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(path: Path) -> Iterator[SourceRecord]:
    """Yield the records of a JSON Lines or CSV file, gzipped or not.

    Raises `SourceError` when the file itself cannot be read to its end (a truncated or corrupt
    gzip file, for example).
    """
    try:
        yield from _read_records(path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise SourceError(f"{path}: the gzip data is truncated or corrupt ({error}); compress the file again") from None


def _read_records(path: Path) -> Iterator[SourceRecord]:
    if source_format(path) == "otlp":
        from ingest.otlp import read_otlp_records  # imported here: it builds on this module

        yield from read_otlp_records(path)
        return
    if source_format(path) == "jsonl":
        with _open_binary(path) as handle:
            yield from _json_lines(handle)
    else:
        with _open_binary(path) as handle:
            # Undecodable bytes become surrogates, so one bad row is quarantined and the rows
            # after it still read. The utf-8-sig codec drops the byte order mark Excel writes.
            text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
            yield from _csv_rows(path, text)


def csv_kind(header: list[str]) -> str:
    """Return csv for canonical columns, token_usage_csv for an export of the app's table."""
    columns = {column.strip() for column in header}
    if "event_id" not in columns and TOKEN_USAGE_COLUMNS <= columns:
        return "token_usage_csv"
    return "csv"


def csv_record_fields(row: dict[str, Any], kind: str, raw_text: str, line_number: int) -> dict[str, Any]:
    """Turn a CSV row into event fields, giving rows without event_id a stable one."""
    fields = {key.strip(): value for key, value in row.items()}
    if kind == "token_usage_csv" and (fields.get("id") or "").strip():
        fields["event_id"] = token_usage_event_id(fields.pop("id").strip())
    elif not (fields.get("event_id") or "").strip():
        fields.pop("id", None)
        fields["event_id"] = derived_event_id(raw_text, line_number)
    return fields


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _json_lines(handle: IO[bytes]) -> Iterator[SourceRecord]:
    for line_number, raw in enumerate(handle, start=1):
        if line_number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            yield SourceRecord(line_number, text, None, InvalidEvent(
                "invalid_encoding", f"bytes at offset {error.start} are not UTF-8; write the file as UTF-8"
            ))
            continue
        if not text.strip():
            continue
        try:
            yield SourceRecord(line_number, text, parse_json_line(text))
        except InvalidEvent as invalid:
            yield SourceRecord(line_number, text, None, invalid)


def _csv_rows(path: Path, text: io.TextIOWrapper) -> Iterator[SourceRecord]:
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise SourceError(f"{path}: cannot read the CSV header ({error})") from None
    if any(_has_undecodable_bytes(column) for column in header):
        raise SourceError(f"{path}: the CSV header is not UTF-8; save the file as UTF-8")
    header = [column.strip() for column in header]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise SourceError(f"{path}: the CSV header names {', '.join(repeated)} more than once; keep one of each")
    if "created_at" not in header:
        raise SourceError(
            f"{path}: the CSV header has no created_at column; the first line must name the columns"
        )
    kind = csv_kind(header)

    line_number = 1
    while True:
        start_line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield SourceRecord(start_line, "", None, InvalidEvent("invalid_csv", f"unreadable CSV row ({error})"))
            continue
        line_number = start_line
        if not any(value.strip() for value in values):
            continue
        raw_text = _csv_text(values)
        if _has_undecodable_bytes(raw_text):
            printable = raw_text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            yield SourceRecord(line_number, printable, None, InvalidEvent(
                "invalid_encoding", "the row has bytes that are not UTF-8; write the file as UTF-8"
            ))
            continue
        if len(values) != len(header):
            yield SourceRecord(line_number, raw_text, None, InvalidEvent(
                "ragged_csv_row",
                f"row has {len(values)} fields but the header has {len(header)}; "
                "quote fields that contain commas",
            ))
            continue
        row = dict(zip(header, values, strict=True))
        fields = csv_record_fields(row, kind, raw_text, line_number)
        yield SourceRecord(line_number, raw_text, fields, raw_fields=json.dumps(row))


def _has_undecodable_bytes(text: str) -> bool:
    return any("\udc80" <= character <= "\udcff" for character in text)


def _csv_text(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()
