"""Land files of usage events in the warehouse as idempotent, reconciled batches.

Every record read ends in exactly one place: loaded, recognized as a duplicate of an event id
already loaded, or quarantined with its reason. Records are parsed and validated in Python, then
written in chunks through Arrow, so memory is bounded by the chunk size, not by the file. JSON
Lines files take a fast path: DuckDB SQL parses whole chunks and certifies most rows, and only
the lines it hands back are parsed in Python.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genai_prices
import pyarrow as pa
import pyarrow.compute as pc

from ingest import __version__
from ingest.catalog import ModelResolver
from ingest.events import InvalidEvent, UsageEvent, parse_event, parse_json_line, stored_json
from ingest.jsonl_fast_path import JsonLinesParser, LineChunk, read_line_chunks
from ingest.readers import SourceRecord, csv_record_fields, file_sha256, read_records, source_kind
from ingest.warehouse.base import (
    QUARANTINE_SCHEMA,
    USAGE_EVENT_SCHEMA,
    BatchCounts,
    BatchInfo,
    QuarantinedRow,
    Warehouse,
)

logger = logging.getLogger(__name__)

CHUNK_ROWS = 10_000
# Records per chunk of the JSON Lines fast path. Its SQL and the expectation suite both cost
# less per row in larger chunks; 50,000 lines of a few hundred bytes stay within tens of MB.
FAST_PATH_CHUNK_ROWS = 50_000


@dataclass
class BatchResult:
    """The outcome of one file or replay: its counts, or why it was skipped."""

    source_path: str
    batch_id: str | None
    counts: BatchCounts | None
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)
    skipped_because: str | None = None
    seconds: float = 0.0
    validation: dict[str, Any] | None = None


@dataclass(frozen=True)
class ValidatedChunk:
    """One chunk of a batch, parsed and checked: what to land, what to quarantine, and the suite's summary."""

    rows_read: int
    events: pa.Table
    quarantined: list[dict[str, Any]]
    validation_summary: dict[str, Any] | None


@dataclass(frozen=True)
class _Located:
    """A source record with the file it came from and its position in the batch."""

    record: SourceRecord
    source_file: str
    ordinal: int


def ingest_file(path: Path, warehouse: Warehouse, resolver: ModelResolver, fast_path: bool = True) -> BatchResult:
    """Land one file as one batch, unless a batch with the same contents is already loaded.

    JSON Lines files go through `ingest.jsonl_fast_path` unless `fast_path` is false. It lands
    the same rows and quarantine rows as the record-by-record path.
    """
    started = time.monotonic()
    content_sha256 = file_sha256(path)
    loaded_batch = warehouse.find_batch_by_content(content_sha256)
    if loaded_batch is not None:
        logger.info("skipped %s: the same contents were loaded as batch %s", path, loaded_batch)
        return BatchResult(str(path), None, None, skipped_because=f"already loaded as batch {loaded_batch}")

    info = _batch_info(str(path), source_kind(path), content_sha256, path.stat().st_size)
    if fast_path and info.source_format == "jsonl":
        return land_chunks(info, _fast_json_line_chunks(path, info, resolver), warehouse, started)
    return land_records(info, read_records(path), warehouse, resolver, started)


def land_records(
    info: BatchInfo,
    records: Iterable[SourceRecord],
    warehouse: Warehouse,
    resolver: ModelResolver,
    started: float | None = None,
) -> BatchResult:
    """Validate and land records from any source as one batch, in chunks."""
    located = (_Located(record, info.source_path, ordinal) for ordinal, record in enumerate(records))
    chunks = (_validated_chunk(chunk, info, resolver) for chunk in _chunks(located, CHUNK_ROWS))
    return land_chunks(info, chunks, warehouse, started)


def land_chunks(
    info: BatchInfo, chunks: Iterable[ValidatedChunk], warehouse: Warehouse, started: float | None = None
) -> BatchResult:
    """Land validated chunks as one batch; `chunks` is read inside the batch, so an error removes it whole."""
    started = time.monotonic() if started is None else started
    summaries: list[dict[str, Any]] = []
    with warehouse.batch(info) as writer:
        rows_read = 0
        reasons: Counter[str] = Counter()
        for chunk in chunks:
            rows_read += chunk.rows_read
            if chunk.validation_summary is not None:
                summaries.append(chunk.validation_summary)
            writer.append_events(chunk.events)
            quarantined = chunk.quarantined
            stored = writer.append_quarantined(pa.Table.from_pylist(quarantined, schema=QUARANTINE_SCHEMA))
            reasons.update(row["reason"] for row in quarantined if row["quarantine_id"] in stored)
        validation = _merged_validation(summaries)
        counts = writer.finish(rows_read, validation_result=validation)
    result = BatchResult(info.source_path, info.batch_id, counts, reasons, seconds=time.monotonic() - started,
                         validation=validation)
    _log_batch(result)
    return result


def replay_quarantine(warehouse: Warehouse, resolver: ModelResolver, reason: str | None = None) -> BatchResult:
    """Validate quarantined rows again and land those that now pass, as one batch.

    A replayed row keeps its original file and line as lineage. A row that fails again stays in
    quarantine, under its new reason in this batch's counts.
    """
    started = time.monotonic()
    rows = list(warehouse.quarantined_rows(reason=reason))
    label = "quarantine replay" + (f" of reason {reason}" if reason else "")
    info = _batch_info(label, "quarantine", f"replay:{uuid.uuid4().hex}", 0)
    with warehouse.batch(info) as writer:
        located = [_Located(_replayed_record(row), row.source_file, ordinal) for ordinal, row in enumerate(rows)]
        summaries: list[dict[str, Any]] = []
        events, failed = _validate(located, info, resolver, summaries)
        failed_ordinals = {row["quarantine_id"] for row in failed}
        writer.append_events(events)
        writer.mark_replayed([
            row.quarantine_id for ordinal, row in enumerate(rows)
            if _quarantine_id(info.batch_id, ordinal) not in failed_ordinals
        ])
        validation = _merged_validation(summaries)
        counts = writer.finish(len(rows), rows_kept_in_quarantine=len(failed), validation_result=validation)
    reasons = Counter(row["reason"] for row in failed)
    result = BatchResult(label, info.batch_id, counts, reasons, seconds=time.monotonic() - started,
                         validation=validation)
    _log_batch(result)
    return result


def _replayed_record(row: QuarantinedRow) -> SourceRecord:
    source_format, raw_text, raw_fields, line_number = row.source_format, row.raw_text, row.raw_fields, row.line_number
    try:
        if row.reason == "invalid_encoding":
            # The stored text has replacement characters where the bytes were: landing it would
            # store corrupted values, so only the fixed file, ingested again, can land this row.
            raise InvalidEvent("invalid_encoding", "the row's bytes were not UTF-8; fix the file and ingest it again")
        if source_format == "jsonl":
            return SourceRecord(line_number, raw_text, parse_json_line(raw_text))
        if source_format == "otlp":
            # A span's raw text is OTLP, not an event: replay the event built from it.
            if raw_fields is None:
                raise InvalidEvent(row.reason, "the span could not become an event; fix the exporter and ingest again")
            return SourceRecord(line_number, raw_text, json.loads(raw_fields), raw_fields=raw_fields)
        if raw_fields is None:
            raise InvalidEvent("ragged_csv_row", "the CSV row could not be split into the header's columns")
        fields = csv_record_fields(json.loads(raw_fields), source_format, raw_text, line_number)
        return SourceRecord(line_number, raw_text, fields, raw_fields=raw_fields)
    except InvalidEvent as invalid:
        return SourceRecord(line_number, raw_text, None, invalid)


def _fast_json_line_chunks(path: Path, info: BatchInfo, resolver: ModelResolver) -> Iterator[ValidatedChunk]:
    """Validate a JSON Lines file chunk by chunk: SQL certifies what it can and Python parses the rest."""
    with JsonLinesParser(resolver) as parser:
        for lines in read_line_chunks(path, FAST_PATH_CHUNK_ROWS):
            yield _validated_line_chunk(lines, parser, info, resolver)


def _validated_line_chunk(
    lines: LineChunk, parser: JsonLinesParser, info: BatchInfo, resolver: ModelResolver
) -> ValidatedChunk:
    now = _utc_now()
    certified = parser.parse(lines, info, now)
    handed_back = [_Located(lines.record(ordinal), info.source_path, ordinal) for ordinal in certified.handed_back]
    handed_back += [_Located(record, info.source_path, ordinal) for ordinal, record in lines.undecodable]
    parsed_events, quarantined, parsed = _parse_records(handed_back, info, resolver, now)

    # Rows in file order, as the Python path hands them to the suite and the writer.
    ordinals = pa.concat_arrays([
        certified.events.column("ordinal").combine_chunks(),
        pa.array([item.ordinal for item in parsed], type=pa.int64()),
    ])
    order = pc.sort_indices(ordinals)
    events = pa.concat_tables([certified.events.drop_columns(["ordinal"]), parsed_events]).take(order)
    if events.num_rows == 0:
        return ValidatedChunk(lines.record_count, events, quarantined, None)

    parsed_by_ordinal = {item.ordinal: item for item in parsed}
    ordinal_at = ordinals.take(order).to_pylist()

    def located(position: int) -> _Located:
        ordinal = ordinal_at[position]
        if ordinal in parsed_by_ordinal:
            return parsed_by_ordinal[ordinal]
        return _Located(lines.record(ordinal), info.source_path, ordinal)

    passed, failed, summary = _check_expectations(events, located, info, now)
    return ValidatedChunk(lines.record_count, passed, quarantined + failed, summary)


def _validated_chunk(chunk: list[_Located], info: BatchInfo, resolver: ModelResolver) -> ValidatedChunk:
    summaries: list[dict[str, Any]] = []
    events, quarantined = _validate(chunk, info, resolver, summaries)
    return ValidatedChunk(len(chunk), events, quarantined, summaries[0] if summaries else None)


def _validate(
    chunk: list[_Located], info: BatchInfo, resolver: ModelResolver, summaries: list[dict[str, Any]] | None = None
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Split a chunk into an Arrow table of valid events and a list of quarantine rows.

    Each record is parsed first, and a record that cannot become an event is quarantined with the
    parser's reason. The parsed chunk then runs through the Great Expectations suite, and a row
    that breaks an expectation is quarantined under that expectation's name. The suite's summary
    of the chunk is appended to `summaries` when given.
    """
    now = _utc_now()
    events, quarantined, parsed = _parse_records(chunk, info, resolver, now)
    if events.num_rows == 0:
        return events, quarantined
    passed, failed, summary = _check_expectations(events, parsed.__getitem__, info, now)
    if summaries is not None:
        summaries.append(summary)
    return passed, quarantined + failed


def _parse_records(
    chunk: list[_Located], info: BatchInfo, resolver: ModelResolver, now: datetime
) -> tuple[pa.Table, list[dict[str, Any]], list[_Located]]:
    """Parse records into an events table and quarantine rows; also return the records behind the table's rows."""
    columns: dict[str, list[Any]] = {name: [] for name in USAGE_EVENT_SCHEMA.names}
    quarantined: list[dict[str, Any]] = []
    parsed: list[_Located] = []
    for item in chunk:
        record = item.record
        try:
            if record.error is not None:
                raise record.error
            event = parse_event(record.fields or {})
        except InvalidEvent as invalid:
            quarantined.append(_quarantine_row(item, invalid, info, now))
            continue
        row = _event_row(event, resolver)
        row.update(batch_id=info.batch_id, source_file=item.source_file, line_number=record.line_number,
                   loaded_at=now)
        for name, values in columns.items():
            values.append(row[name])
        parsed.append(item)
    return pa.Table.from_pydict(columns, schema=USAGE_EVENT_SCHEMA), quarantined, parsed


def _check_expectations(
    events: pa.Table, located: Callable[[int], _Located], info: BatchInfo, now: datetime
) -> tuple[pa.Table, list[dict[str, Any]], dict[str, Any]]:
    """Run the Great Expectations suite on parsed events.

    Returns the rows that pass, a quarantine row for each row that fails (`located` gives the
    record behind a row position), and the suite's summary.
    """
    # Imported here: Great Expectations takes seconds to import, and only landing needs it.
    from ingest.validation import build_usage_event_suite, validate_chunk

    validation = validate_chunk(events, build_usage_event_suite(now))
    quarantined = []
    for position, failures in sorted(validation.failures.items()):
        invalid = InvalidEvent(failures[0].expectation, validation.failure_message(position))
        quarantined.append(_quarantine_row(located(position), invalid, info, now))
    return events.filter(validation.passed_mask), quarantined, validation.summary


def _event_row(event: UsageEvent, resolver: ModelResolver) -> dict[str, Any]:
    resolution = resolver.resolve(event.provider, event.platform, event.model_name)
    return {
        "event_id": event.event_id,
        "created_at": event.created_at,
        "provider": event.provider,
        "provider_as_sent": event.provider_as_sent,
        "operation": event.operation,
        "platform": event.platform,
        "model": event.model,
        "model_name": event.model_name,
        "catalog_provider_id": resolution.catalog_provider_id,
        "price_provider_id": resolution.price_provider_id,
        "catalog_model_id": resolution.catalog_model_id,
        "model_resolution": resolution.status,
        "service": event.service,
        "tool_name": event.tool_name,
        "user_id": event.user_id,
        "organization_id": event.organization_id,
        "request_id": event.request_id,
        "run_id": event.run_id,
        "service_tier": event.service_tier,
        "input_tokens": event.input_tokens,
        "cached_input_tokens": event.cached_input_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "usage_details": stored_json(event.usage_details),
        "usage_flavor": event.usage_flavor,
        "units": event.units,
        "unit_type": event.unit_type,
        "reported_cost_usd": event.reported_cost_usd,
        "usage_payload": stored_json(event.usage_payload),
        "attributes": stored_json(event.attributes),
        "metadata": stored_json(event.metadata),
        "extra_fields": stored_json(event.extra_fields or None),
        "has_usage": event.has_usage,
    }


def _quarantine_row(item: _Located, invalid: InvalidEvent, info: BatchInfo, now: datetime) -> dict[str, Any]:
    record = item.record
    return {
        "quarantine_id": _quarantine_id(info.batch_id, item.ordinal),
        "batch_id": info.batch_id,
        "source_file": item.source_file,
        "line_number": record.line_number,
        "source_format": info.source_format,
        "raw_text": record.raw_text,
        "raw_fields": record.raw_fields,
        "reason": invalid.reason,
        "message": f"line {record.line_number}: {invalid.message}",
        "quarantined_at": now,
        "replayed_at": None,
        "replay_batch_id": None,
        "dismissed_at": None,
        "dismissal_note": None,
    }


def new_batch_info(source_path: str, source_format: str, content_id: str, byte_count: int = 0) -> BatchInfo:
    """Describe a new batch; `content_id` identifies its contents for skipping reloads."""
    return _batch_info(source_path, source_format, content_id, byte_count)


def _quarantine_id(batch_id: str, ordinal: int) -> str:
    # By position in the batch, not by line: several OTLP spans share the line of their request.
    return f"{batch_id}:{ordinal}"


def _batch_info(source_path: str, source_format: str, content_sha256: str, byte_count: int) -> BatchInfo:
    return BatchInfo(
        batch_id=_new_batch_id(),
        source_path=source_path,
        source_format=source_format,
        content_sha256=content_sha256,
        byte_count=byte_count,
        started_at=_utc_now(),
        ingest_version=__version__,
        catalog_version=genai_prices.__version__,
    )


def _merged_validation(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not summaries:
        return None
    from ingest.validation import merge_summaries

    return merge_summaries(summaries)


def _log_batch(result: BatchResult) -> None:
    counts = result.counts
    if counts is None:
        return
    logger.info(
        "batch %s from %s: read %d, loaded %d, duplicate %d, quarantined %d in %.1f s",
        result.batch_id, result.source_path, counts.rows_read, counts.rows_loaded, counts.rows_duplicate,
        counts.rows_quarantined, result.seconds,
    )
    if counts.rows_quarantined:
        logger.warning(
            "batch %s quarantined %d rows: %s; see `usage-warehouse quarantine list`",
            result.batch_id, counts.rows_quarantined,
            ", ".join(f"{reason} {count}" for reason, count in result.quarantined_by_reason.most_common()),
        )


def _chunks(items: Iterable[_Located], size: int) -> Iterator[list[_Located]]:
    chunk: list[_Located] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _new_batch_id() -> str:
    return uuid.uuid4().hex


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
