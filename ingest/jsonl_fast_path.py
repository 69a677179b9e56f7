"""Parse JSON Lines in chunks with DuckDB SQL, certifying each line's event row or handing the line back.

Parsing line by line with Python's json module and `ingest.events.parse_event` lands about 7,000
lines a second, ten times slower than DuckDB's own `read_json`. Here DuckDB's JSON functions
parse and check a whole chunk of lines at once, over an Arrow table of (ordinal, line_number,
raw_text). A line becomes a row only when the SQL can certify that the row is exactly the one
the Python path builds: `loader._event_row(parse_event(parse_json_line(text)), resolver)`.
Every other line is handed back, and the loader parses it in Python, so it lands or is
quarantined with the same reason and message as before. Lines handed back:

- lines with a backslash (a JSON escape) or with a comma before `]` or `}`, because DuckDB's
  JSON reader accepts trailing commas that Python's json module rejects;
- invalid JSON, and JSON values other than objects;
- objects with a repeated key, a key outside `events.KNOWN_FIELDS` (kept as extra_fields) or a
  non-null `usage` payload, whose token counts only genai-prices derives;
- fields of an unexpected JSON type: anything but a string for text (an integer event_id too),
  anything but an integer for token counts, anything but a plain number for amounts;
- strings that start or end with whitespace, which Python strips. The fields normalized per
  distinct value (below) are the exception: Python's own functions strip those;
- created_at outside `YYYY-MM-DDTHH:MM:SS[.f to .ffffff][Z or +HH:MM or -HH:MM]` with a year
  from 2 to 9998, so no offset can move it out of Python's range;
- token counts outside 0 to 10^15, and amounts with a sign, an exponent, a value of 10^12 or
  more, or more decimals than their column keeps (6 for units, 12 for cost_usd);
- usage_details, metadata or attributes that contain a fraction or an integer beyond 64 bits,
  because DuckDB rewrites those when it extracts the value (1e3 becomes 1000.0);
- rows that break a rule of `parse_event` (a missing field, cached tokens above input, units
  without unit_type, an unknown platform), so their quarantine reason is Python's.

Values that repeat across rows are computed in Python once per distinct value in a chunk, by
the functions of `ingest.events` and the `ModelResolver`, and joined back. These are provider,
platform, model, service tier, unit type, operation, service, tool name, usage_details,
metadata, attributes and the list of keys.
"""

from __future__ import annotations

import bisect
import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import duckdb
import pyarrow as pa

from ingest.catalog import ModelResolver
from ingest.events import (
    COST_SCALE,
    KNOWN_FIELDS,
    MAX_AMOUNT_DIGITS,
    MAX_TOKEN_COUNT,
    TOKEN_FIELDS,
    UNITS_SCALE,
    InvalidEvent,
    json_value,
    normalize_model_name,
    normalize_platform,
    normalize_provider,
    normalize_service_tier,
    optional_object_field,
    optional_string_field,
    parse_json_line,
    stored_json,
    usage_details_field,
)
from ingest.readers import SourceError, SourceRecord
from ingest.warehouse.base import USAGE_EVENT_SCHEMA, BatchInfo

# Fields whose values repeat across rows: Python normalizes each distinct combination once.
DIMENSION_FIELDS = ("provider", "platform", "model", "service_tier", "unit_type", "operation", "service", "tool_name")
# Fields that SQL passes to Python as JSON text, one distinct value (or combination) at a time.
DISTINCT_VALUE_FIELDS = (*DIMENSION_FIELDS, "usage_details", "metadata", "attributes")
# Text fields that are nearly unique per row: SQL takes them as sent when they need no stripping.
ROW_TEXT_FIELDS = ("user_id", "organization_id", "request_id", "run_id")

CERTIFIED_SCHEMA = pa.schema([pa.field("ordinal", pa.int64()), *USAGE_EVENT_SCHEMA])

_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
# The characters str.strip() removes, as an RE2 character class.
_WHITESPACE_CLASS = "[" + "".join(f"\\x{{{code:x}}}" for code in range(0x110000) if chr(code).isspace()) + "]"
# DuckDB 1.4 reads integers that fit 64 bits exactly and types larger ones as doubles.
_EXACT_INTEGERS = range(-(2**63), 2**64)


@dataclass
class LineChunk:
    """Consecutive records of a JSON Lines file, numbered as `readers.read_records` numbers them.

    Decoded lines are in `ordinals`, `line_numbers` and `texts`; lines that are not UTF-8 are in
    `undecodable`, as (ordinal, record with its error). The ordinal counts records, not lines:
    blank lines have none.
    """

    ordinals: list[int] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    undecodable: list[tuple[int, SourceRecord]] = field(default_factory=list)

    @property
    def record_count(self) -> int:
        return len(self.ordinals) + len(self.undecodable)

    def record(self, ordinal: int) -> SourceRecord:
        """Parse the decoded line with this ordinal as `readers.read_records` would."""
        index = bisect.bisect_left(self.ordinals, ordinal)
        line_number, text = self.line_numbers[index], self.texts[index]
        try:
            return SourceRecord(line_number, text, parse_json_line(text))
        except InvalidEvent as invalid:
            return SourceRecord(line_number, text, None, invalid)

    def arrow_table(self) -> pa.Table:
        return pa.table(
            {"ordinal": self.ordinals, "line_number": self.line_numbers, "raw_text": self.texts},
            schema=pa.schema([("ordinal", pa.int64()), ("line_number", pa.int64()), ("raw_text", pa.string())]),
        )


def read_line_chunks(path: Path, records_per_chunk: int) -> Iterator[LineChunk]:
    """Yield a JSON Lines file's records in chunks, streaming, with `readers.read_records`' numbering.

    Raises `SourceError`, as `read_records` does, when the gzip data is truncated or corrupt.
    """
    try:
        yield from _line_chunks(path, records_per_chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise SourceError(f"{path}: the gzip data is truncated or corrupt ({error}); compress the file again") from None


def _line_chunks(path: Path, records_per_chunk: int) -> Iterator[LineChunk]:
    # Mirrors readers._json_lines line for line, minus the JSON parsing.
    chunk = LineChunk()
    ordinal = 0
    with _open_binary(path) as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1:
                raw = raw.removeprefix(_BYTE_ORDER_MARK)
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                chunk.undecodable.append((ordinal, _undecodable_record(line_number, raw, error)))
            else:
                if not text.strip():
                    continue
                chunk.ordinals.append(ordinal)
                chunk.line_numbers.append(line_number)
                chunk.texts.append(text)
            ordinal += 1
            if chunk.record_count == records_per_chunk:
                yield chunk
                chunk = LineChunk()
    if chunk.record_count:
        yield chunk


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _undecodable_record(line_number: int, raw: bytes, error: UnicodeDecodeError) -> SourceRecord:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return SourceRecord(line_number, text, None, InvalidEvent(
        "invalid_encoding", f"bytes at offset {error.start} are not UTF-8; write the file as UTF-8"
    ))


@dataclass(frozen=True)
class CertifiedChunk:
    """The rows SQL certified (`CERTIFIED_SCHEMA`, in ordinal order) and the ordinals it handed back."""

    events: pa.Table
    handed_back: list[int]


class JsonLinesParser:
    """An in-memory DuckDB connection that certifies event rows for chunks of JSON lines."""

    def __init__(self, resolver: ModelResolver) -> None:
        self._resolver = resolver
        self._connection = duckdb.connect()
        # A created_at without an offset is UTC, as in `parse_timestamp`.
        self._connection.execute("set TimeZone = 'UTC'")
        for macro in _MACROS:
            self._connection.execute(macro)

    def __enter__(self) -> JsonLinesParser:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._connection.close()

    def parse(self, lines: LineChunk, info: BatchInfo, loaded_at: datetime) -> CertifiedChunk:
        """Certify the rows of a chunk's decoded lines; the lineage columns come from `info` and `loaded_at`."""
        connection = self._connection
        connection.register("chunk_lines", lines.arrow_table())
        connection.execute(_ROWS_SQL)
        connection.unregister("chunk_lines")

        lookups = {
            "key_sets": self._key_sets(),
            "dimension_values": self._dimension_values(),
            "usage_detail_values": self._usage_detail_values(),
            "metadata_values": self._json_values("metadata", _stored_metadata),
            "attribute_values": self._json_values("attributes", _stored_attributes),
        }
        for name, table in lookups.items():
            connection.register(name, table)
        events = connection.execute(
            _EVENTS_SQL, {"batch_id": info.batch_id, "source_file": info.source_path, "loaded_at": loaded_at}
        ).fetch_arrow_table().cast(CERTIFIED_SCHEMA)
        for name in lookups:
            connection.unregister(name)
        connection.execute("drop table chunk_rows")

        certified = set(events.column("ordinal").to_pylist())
        return CertifiedChunk(events, [ordinal for ordinal in lines.ordinals if ordinal not in certified])

    def _distinct(self, column: str) -> list[str]:
        return [text for (text,) in self._connection.execute(f"select distinct {column} from chunk_rows").fetchall()]

    def _key_sets(self) -> pa.Table:
        """Return the chunk's key lists (joined by quotes) that name only known fields, none twice."""
        certified = []
        for text in self._distinct("keys_text"):
            keys = text.split('"') if text else []
            if len(set(keys)) == len(keys) and KNOWN_FIELDS.issuperset(keys):
                certified.append(text)
        return pa.table({"keys_text": pa.array(certified, type=pa.string())})

    def _usage_detail_values(self) -> pa.Table:
        """Return each certified usage_details text with its stored JSON and its largest input and output parts."""
        rows = []
        for text in self._distinct("usage_details_json"):
            value = _loads(text)
            if value is _TOO_DEEP or not _exact_through_duckdb(value):
                continue
            try:
                details = usage_details_field({"usage_details": value})
            except InvalidEvent:
                continue
            # parse_event's detail_exceeds_total rule compares each *_tokens part with its total.
            parts = {key: count for key, count in details.items() if key.endswith("_tokens")}
            rows.append({
                "json": text,
                "stored": stored_json(details) if details else None,
                "max_input_detail": max((count for key, count in parts.items() if not key.startswith("output_")), default=0),
                "max_output_detail": max((count for key, count in parts.items() if key.startswith("output_")), default=0),
            })
        return pa.Table.from_pylist(rows, schema=_USAGE_DETAIL_SCHEMA)

    def _dimension_values(self) -> pa.Table:
        keys = ", ".join(f"{name}_json" for name in DIMENSION_FIELDS)
        rows = []
        for texts in self._connection.execute(f"select distinct {keys} from chunk_rows").fetchall():
            row = self._dimension_row(dict(zip(DIMENSION_FIELDS, texts, strict=True)))
            if row is not None:
                rows.append({**{f"{name}_json": text for name, text in zip(DIMENSION_FIELDS, texts, strict=True)}, **row})
        return pa.Table.from_pylist(rows, schema=_DIMENSION_SCHEMA)

    def _dimension_row(self, texts: dict[str, str]) -> dict[str, Any] | None:
        """Normalize one combination of dimension fields as `parse_event` does, or None to hand it back."""
        record = {name: _loads(text) for name, text in texts.items() if text}
        if not all(isinstance(value, str) for value in record.values()):
            return None
        strings = {name: optional_string_field(record, name) for name in DIMENSION_FIELDS}
        provider_as_sent, operation = strings["provider"], strings["operation"]
        if provider_as_sent is None or operation is None:
            return None

        provider, implied_platform = normalize_provider(provider_as_sent)
        try:
            platform = normalize_platform(strings["platform"] or implied_platform or "api")
        except InvalidEvent:
            return None

        model = strings["model"]
        model_name = normalize_model_name(model)
        resolution = self._resolver.resolve(provider, platform, model_name)
        unit_type = strings["unit_type"]
        return {
            "provider": provider,
            "provider_as_sent": provider_as_sent,
            "operation": operation,
            "platform": platform,
            "model": model,
            "model_name": model_name,
            "catalog_provider_id": resolution.catalog_provider_id,
            "price_provider_id": resolution.price_provider_id,
            "catalog_model_id": resolution.catalog_model_id,
            "model_resolution": resolution.status,
            "service": strings["service"],
            "tool_name": strings["tool_name"],
            "service_tier": normalize_service_tier(strings["service_tier"]),
            "unit_type": unit_type.lower() if unit_type else None,
        }

    def _json_values(self, name: str, stored: Callable[[Any], str | None]) -> pa.Table:
        rows = []
        for text in self._distinct(f"{name}_json"):
            value = _loads(text)
            if value is _TOO_DEEP or not _exact_through_duckdb(value):
                continue
            try:
                rows.append({"json": text, "stored": stored(value)})
            except InvalidEvent:
                continue
        return pa.Table.from_pylist(rows, schema=pa.schema([("json", pa.string()), ("stored", pa.string())]))


# Marker that `_loads` returns for JSON nested too deep for Python's parser. The line goes to Python.
_TOO_DEEP = object()


def _loads(text: str) -> Any:
    """Parse DuckDB's JSON text of one value as the line's parser would; empty text is None."""
    if not text:
        return None
    try:
        return json.loads(text, parse_float=Decimal)
    except RecursionError:
        return _TOO_DEEP


def _stored_metadata(value: Any) -> str | None:
    return stored_json(json_value(value))


def _stored_attributes(value: Any) -> str | None:
    return stored_json(optional_object_field({"attributes": value}, "attributes"))


def _exact_through_duckdb(value: Any) -> bool:
    """Return whether a value parsed from DuckDB's JSON text equals the value parsed from the line itself.

    DuckDB rewrites numbers with a fraction or exponent (1e3 becomes 1000.0, 2.50 becomes 2.5)
    and integers beyond 64 bits, which can change what `stored_json` writes. Strings, booleans,
    nulls and 64-bit integers come through unchanged, and repeated keys stay in order, so
    Python keeps the last one as it does for the line.
    """
    if isinstance(value, dict):
        return all(_exact_through_duckdb(item) for item in value.values())
    if isinstance(value, list):
        return all(_exact_through_duckdb(item) for item in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return value in _EXACT_INTEGERS
    return False


_DIMENSION_SCHEMA = pa.schema([
    *[(f"{name}_json", pa.string()) for name in DIMENSION_FIELDS],
    *[(name, pa.string()) for name in (
        "provider", "provider_as_sent", "operation", "platform", "model", "model_name", "catalog_provider_id",
        "price_provider_id", "catalog_model_id", "model_resolution", "service", "tool_name", "service_tier",
        "unit_type",
    )],
])


_USAGE_DETAIL_SCHEMA = pa.schema([
    ("json", pa.string()), ("stored", pa.string()), ("max_input_detail", pa.int64()), ("max_output_detail", pa.int64())
])


def _amount_text_sql(name: str, scale: Decimal) -> str:
    """SQL for an amount's number as written in the line, or null when it cannot be certified.

    DuckDB's JSON text of a fraction is a double's shortest form, not the digits the line contains, so a
    fraction is read from the line itself. The key is spelled `"name"` in the line only once
    (there are no escapes), so the match is the top-level field.
    """
    digits = MAX_AMOUNT_DIGITS
    decimals = -scale.as_tuple().exponent
    key = f'"{name}"'
    return f"""
        case
            when {name}_json is null then null
            when regexp_full_match({name}_json, '[0-9]{{1,{digits}}}') then {name}_json
            when length(raw_text) - length(replace(raw_text, '{key}', '')) = {len(key)}
                then nullif(regexp_extract(
                    raw_text, '[{{,]\\s*{key}\\s*:\\s*([0-9]{{1,{digits}}}(?:\\.[0-9]{{1,{decimals}}})?)\\s*[,}}]', 1
                ), '')
        end"""


_STRUCTURE = json.dumps({name: "JSON" for name in sorted(KNOWN_FIELDS)})

_MACROS = (
    f"create macro has_edge_space(s) as regexp_matches(s, '^{_WHITESPACE_CLASS}|{_WHITESPACE_CLASS}$')",
    # Text of a JSON string value, null for any other JSON type.
    "create macro json_text(j) as case when starts_with(j, '\"') then json_extract_string(j, '$') end",
    # Token count of a JSON integer from 0 to the limit, null for anything else.
    f"create macro token_count(j) as case when regexp_full_match(j, '[0-9]{{1,16}}') "
    f"and try_cast(j as bigint) <= {MAX_TOKEN_COUNT} then try_cast(j as bigint) end",
)

# The one RFC 3339 shape certified: 1 to 6 fraction digits, as Python pads them, no leap second,
# and Z, an offset of hours and minutes, or none (UTC). DuckDB's cast checks the calendar date.
_TIMESTAMP_PATTERN = (
    "[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    "([.][0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
)

_ROWS_SQL = f"""
create or replace temp table chunk_rows as
with candidates as (
    select ordinal, line_number, raw_text
    from chunk_lines
    where not contains(raw_text, '\\')
        and not regexp_matches(raw_text, ',\\s*[\\]}}]')
        -- try: a line that is not JSON gives null instead of failing the query
        and try(json_type(raw_text)) = 'OBJECT'
),

fields as materialized (
    select
        ordinal,
        line_number,
        raw_text,
        -- try again: DuckDB may evaluate these before the filter above has removed invalid JSON.
        -- A key contains no quote, because the line has no escapes, so a quote separates keys.
        array_to_string(try(json_keys(raw_text)), '"') as keys_text,
        try(json_transform(raw_text, '{_STRUCTURE}')) as field
    from candidates
),

field_texts as (
    select
        ordinal,
        line_number,
        raw_text,
        keys_text,
        field.usage::varchar as usage_json,
        json_text(field.event_id::varchar) as event_id,
        json_text(field.created_at::varchar) as created_at_text,
        {", ".join(f"field.{name}::varchar as {name}_json" for name in ROW_TEXT_FIELDS)},
        {", ".join(f"json_text(field.{name}::varchar) as {name}" for name in ROW_TEXT_FIELDS)},
        {", ".join(f"field.{name}::varchar as {name}_json" for name in TOKEN_FIELDS)},
        {", ".join(f"token_count(field.{name}::varchar) as {name}" for name in TOKEN_FIELDS)},
        field.units::varchar as units_json,
        field.cost_usd::varchar as cost_usd_json,
        {", ".join(f"coalesce(field.{name}::varchar, '') as {name}_json" for name in DISTINCT_VALUE_FIELDS)}
    from fields
),

typed as (
    select
        *,
        case
            when regexp_full_match(created_at_text, '{_TIMESTAMP_PATTERN}')
                and left(created_at_text, 4) between '0002' and '9998'
            then try_cast(created_at_text as timestamptz)::timestamp
        end as created_at,
        {_amount_text_sql("units", UNITS_SCALE)} as units_text,
        {_amount_text_sql("cost_usd", COST_SCALE)} as cost_usd_text
    from field_texts
)

select
    ordinal,
    line_number,
    event_id,
    created_at,
    {", ".join(f"nullif({name}, '') as {name}" for name in ROW_TEXT_FIELDS)},
    {", ".join(TOKEN_FIELDS)},
    try_cast(units_text as decimal(38, 6)) as units,
    try_cast(cost_usd_text as decimal(38, 12)) as reported_cost_usd,
    keys_text,
    {", ".join(f"{name}_json" for name in DISTINCT_VALUE_FIELDS)},
    -- The checks of single fields; the rules across fields come in _EVENTS_SQL.
    usage_json is null
        and event_id <> '' and not has_edge_space(event_id)
        and created_at is not null
        and {" and ".join(
            f"({name}_json is null or {name} = '' or ({name} is not null and not has_edge_space({name})))"
            for name in ROW_TEXT_FIELDS
        )}
        and {" and ".join(f"({name}_json is null or {name} is not null)" for name in TOKEN_FIELDS)}
        and (units_json is null or try_cast(units_text as double) = try_cast(units_json as double))
        and (cost_usd_json is null or try_cast(cost_usd_text as double) = try_cast(cost_usd_json as double))
        as fields_certified
from typed
"""

_EVENTS_SQL = f"""
with joined as (
    select
        parsed.*,
        dimension.* exclude ({", ".join(f"{name}_json" for name in DIMENSION_FIELDS)}),
        details.stored as usage_details,
        details.max_input_detail,
        details.max_output_detail,
        {" or ".join(f"parsed.{name} is not null" for name in TOKEN_FIELDS)} or details.stored is not null as has_counts,
        metadata.stored as metadata,
        attribute.stored as attributes
    from chunk_rows as parsed
    -- Inner joins: a value that Python could not certify has no row, so its line is handed back.
    inner join key_sets as key_set on parsed.keys_text = key_set.keys_text
    inner join dimension_values as dimension
        on {" and ".join(f"parsed.{name}_json = dimension.{name}_json" for name in DIMENSION_FIELDS)}
    inner join usage_detail_values as details on parsed.usage_details_json = details.json
    inner join metadata_values as metadata on parsed.metadata_json = metadata.json
    inner join attribute_values as attribute on parsed.attributes_json = attribute.json
    where parsed.fields_certified
),

counted as (
    -- parse_event sets every count once any count or usage detail is present.
    select
        * exclude ({", ".join(TOKEN_FIELDS)}),
        {", ".join(f"case when has_counts then coalesce({name}, 0) end as {name}" for name in TOKEN_FIELDS)}
    from joined
)

select
    ordinal,
    event_id,
    created_at,
    provider,
    provider_as_sent,
    operation,
    platform,
    model,
    model_name,
    catalog_provider_id,
    price_provider_id,
    catalog_model_id,
    model_resolution,
    service,
    tool_name,
    {", ".join(ROW_TEXT_FIELDS)},
    service_tier,
    {", ".join(TOKEN_FIELDS)},
    usage_details,
    case when has_counts then 'tokens' end as usage_flavor,
    units,
    unit_type,
    reported_cost_usd,
    null::varchar as usage_payload,
    attributes,
    metadata,
    null::varchar as extra_fields,
    has_counts or units is not null as has_usage,
    $batch_id as batch_id,
    $source_file as source_file,
    line_number,
    $loaded_at::timestamp as loaded_at
from counted
-- The rules of parse_event across fields; a row that breaks one goes to Python for its quarantine reason.
where (units is null) = (unit_type is null)
    and (not has_counts or (
        cached_input_tokens + cache_write_tokens <= input_tokens
        and reasoning_tokens <= output_tokens
        and max_input_detail <= input_tokens
        and max_output_detail <= output_tokens
    ))
order by ordinal
"""
