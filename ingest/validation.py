"""Check chunks of parsed usage events with a Great Expectations suite before they land.

`ingest.events` validates one record at a time. This module checks whole chunks again, as a
table, with a suite defined here in code, so the same rules that guard a batch are visible as
Great Expectations results (per-expectation counts of unexpected rows) that the ledger can store.

Great Expectations runs fully offline: analytics are switched off before it is imported, the
context is ephemeral (stores in memory, no Data Docs sites), and creating a context or validating
a chunk opens no socket (tests/python/test_validation.py blocks sockets to check).

Rows that break an expectation fail, each with the expectation names and a message. Some
expectations only flag rows and never fail them: events whose provider or model is outside the
genai-prices catalog (`outside_catalog`), and service tiers that no price or price rule covers
(`unknown_service_tier`), because such events land and stay unpriced.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

# Set before Great Expectations is imported, so its import and every context read this value.
os.environ["GX_ANALYTICS_ENABLED"] = "False"

import great_expectations as gx  # noqa: E402 (imported after the analytics setting on purpose)
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from ingest.events import MAX_TOKEN_COUNT, PLATFORMS, REQUIRED_FIELDS, SERVICE_TIER_ALIASES, TOKEN_FIELDS  # noqa: E402

SUITE_NAME = "usage_events"

# Derived before validation because no Great Expectations 1.24 expectation compares one column
# with the sum of two others on pandas (`UnexpectedRowsExpectation` runs on SQL and Spark only).
CACHED_TOTAL_COLUMN = "cached_plus_cache_write_tokens"

OUTSIDE_CATALOG = "outside_catalog"
UNKNOWN_SERVICE_TIER = "unknown_service_tier"
FLAGS = (OUTSIDE_CATALOG, UNKNOWN_SERVICE_TIER)

# Tiers that prices or price rules can apply to. `ingest.events` keeps any other tier as sent.
KNOWN_SERVICE_TIERS = frozenset(SERVICE_TIER_ALIASES.values())

# Result format that lists every unexpected row by its position in the chunk. The pandas index
# query string is not needed and would repeat every index, so it is switched off.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
}


class ChunkValidationError(RuntimeError):
    """A chunk could not be validated at all: a column is missing or an expectation raised."""


@dataclass(frozen=True)
class RowFailure:
    """One expectation that one row broke."""

    expectation: str
    message: str


@dataclass(frozen=True)
class ChunkValidation:
    """The outcome of validating one chunk.

    `passed_mask` has one entry per row of the chunk, true for rows that break no expectation.
    `failures` maps the position of each failing row to what it broke. `flagged` maps each flag
    to the positions of the rows it marks, and flagged rows still pass. `summary` is JSON-serializable.
    """

    passed_mask: pa.BooleanArray
    failures: dict[int, list[RowFailure]]
    flagged: dict[str, list[int]]
    summary: dict[str, Any]

    def failure_message(self, row: int) -> str:
        """Join what one row broke into one line, for a quarantine message."""
        return "; ".join(f"{failure.expectation}: {failure.message}" for failure in self.failures.get(row, []))


def build_usage_event_suite(now: datetime, future_tolerance: timedelta = timedelta(minutes=10)) -> gx.ExpectationSuite:
    """Build the suite that every chunk of parsed usage events must pass.

    `now` is the load time (naive UTC, or aware and converted to UTC). An event created later
    than `now + future_tolerance` fails, because its clock or its time zone is wrong.
    Each expectation's `meta` contains its row message template, or `flag` for those that never fail.
    """
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    max_created_at = now + future_tolerance

    expectations = [
        *_required_expectations(),
        *_token_expectations(),
        *_amount_expectations(),
        gxe.ExpectColumnValuesToBeBetween(
            column="created_at",
            max_value=max_created_at,
            meta={"message": f"created_at={{created_at}} is later than {max_created_at.isoformat()}, the load time "
                             f"plus {future_tolerance}; check the producer's clock and time zone"},
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="platform",
            value_set=sorted(PLATFORMS),
            meta={"message": f"platform={{platform}} is not one of {', '.join(sorted(PLATFORMS))}"},
        ),
        *_flag_expectations(),
    ]
    # Passed to the constructor, because `add_expectation` needs an active context. The
    # constructor logs and drops an invalid expectation instead of raising, hence the count check.
    suite = gx.ExpectationSuite(
        name=SUITE_NAME, expectations=expectations, meta={"max_created_at": max_created_at.isoformat()}
    )
    if len(suite.expectations) != len(expectations):
        raise ChunkValidationError(
            f"Great Expectations rejected {len(expectations) - len(suite.expectations)} of {len(expectations)} "
            "expectations as invalid; the error it logged names them"
        )
    return suite


def _required_expectations() -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=name, meta={"message": f"{name} is null; every event needs it"})
        for name in REQUIRED_FIELDS
    ]


def _token_expectations() -> list[gxe.Expectation]:
    # A null count means the provider did not report it, so between-checks skip nulls (their default).
    # NOTE: a row with cached tokens but a null input_tokens skips the cached check. `ingest.events`
    # never builds such a row, because it sets every count to 0 once any count is present.
    expectations: list[gxe.Expectation] = [
        gxe.ExpectColumnValuesToBeBetween(
            column=name,
            min_value=0,
            max_value=MAX_TOKEN_COUNT,
            meta={"message": f"{name}={{{name}}} is outside 0 to 10^15 tokens"},
        )
        for name in TOKEN_FIELDS
    ]
    expectations.append(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="input_tokens",
        column_B=CACHED_TOTAL_COLUMN,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        meta={"message": "cached_input_tokens={cached_input_tokens} plus cache_write_tokens={cache_write_tokens} "
                         "exceed input_tokens={input_tokens}; input_tokens counts all input, cached included"},
    ))
    expectations.append(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="output_tokens",
        column_B="reasoning_tokens",
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        meta={"message": "reasoning_tokens={reasoning_tokens} exceed output_tokens={output_tokens}; "
                         "output_tokens counts all output, reasoning included"},
    ))
    return expectations


def _amount_expectations() -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToBeBetween(
            column=name, min_value=0, meta={"message": f"{name}={{{name}}} is negative"}
        )
        for name in ("units", "reported_cost_usd")
    ]


def _flag_expectations() -> list[gxe.Expectation]:
    # `mostly=0` makes an expectation succeed whatever it finds, while its result still lists
    # every unexpected row: that is how a rule flags rows without failing them.
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="catalog_provider_id", mostly=0.0, meta={"flag": OUTSIDE_CATALOG}),
        gxe.ExpectColumnValuesToNotBeNull(column="catalog_model_id", mostly=0.0, meta={"flag": OUTSIDE_CATALOG}),
        gxe.ExpectColumnValuesToBeInSet(
            column="service_tier",
            value_set=sorted(KNOWN_SERVICE_TIERS),
            mostly=0.0,
            meta={"flag": UNKNOWN_SERVICE_TIER},
        ),
    ]


class ChunkValidator:
    """An ephemeral Great Expectations context with one pandas batch definition, reused per chunk.

    Creating the context costs far more than validating a chunk, so one validator serves a
    whole run. It keeps no data between chunks.
    """

    def __init__(self) -> None:
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        data_source = self.context.data_sources.add_pandas(name="usage_event_chunks")
        asset = data_source.add_dataframe_asset(name="usage_events")
        self._batch_definition = asset.add_batch_definition_whole_dataframe(name="chunk")

    def validate(self, events: pa.Table, suite: gx.ExpectationSuite) -> ChunkValidation:
        """Validate one chunk of rows with `USAGE_EVENT_SCHEMA` columns against `suite`."""
        frame = _suite_frame(events, suite)
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=_RESULT_FORMAT)
        return _chunk_validation(events, len(frame), result.results)


@cache
def default_validator() -> ChunkValidator:
    """Return the validator shared by every `validate_chunk` call without one."""
    return ChunkValidator()


def validate_chunk(
    events: pa.Table, suite: gx.ExpectationSuite, validator: ChunkValidator | None = None
) -> ChunkValidation:
    """Validate one chunk against `suite`. The loader's chunks have at most 50,000 rows.

    Raises `ChunkValidationError` when the chunk lacks a column the suite reads or an
    expectation cannot run.
    """
    return (validator or default_validator()).validate(events, suite)


def _suite_columns(suite: gx.ExpectationSuite) -> list[str]:
    columns: list[str] = []
    for expectation in suite.expectations:
        kwargs = expectation.configuration.kwargs
        for key in ("column", "column_A", "column_B"):
            name = kwargs.get(key)
            if name and name not in columns:
                columns.append(name)
    return columns


def _suite_frame(events: pa.Table, suite: gx.ExpectationSuite) -> pd.DataFrame:
    """Convert only the columns the suite reads, so a chunk's JSON payloads never reach pandas.

    Great Expectations compares whole columns at once only for float, integer and nanosecond
    datetime columns. It compares any other type value by value in Python, which cost more than
    parsing the chunk. So counts and amounts become float64 and times datetime64[ns] here. The
    comparisons stay exact where it matters: every valid count is below 10^15, far inside the
    integers that float64 holds exactly, and a float keeps the sign of the amount it comes from.
    Messages read the chunk's own values, never this frame.
    """
    needed = [name for name in _suite_columns(suite) if name != CACHED_TOTAL_COLUMN]
    if CACHED_TOTAL_COLUMN in _suite_columns(suite):
        needed += [name for name in ("cached_input_tokens", "cache_write_tokens") if name not in needed]
    missing = [name for name in needed if name not in events.column_names]
    if missing:
        raise ChunkValidationError(
            f"the chunk has no column {', '.join(missing)}; build it with USAGE_EVENT_SCHEMA"
        )

    frame = pd.DataFrame(
        {name: _comparable(events.column(name)) for name in needed}, index=pd.RangeIndex(events.num_rows)
    )
    if CACHED_TOTAL_COLUMN in _suite_columns(suite):
        # A missing part counts as 0, so the sum is null only when both parts are null.
        frame[CACHED_TOTAL_COLUMN] = frame["cached_input_tokens"].add(frame["cache_write_tokens"], fill_value=0)
    return frame


# Nanosecond datetimes span the years 1677 to 2262. Times outside are moved just inside: no
# expectation compares times with a bound near those years, so every comparison keeps its outcome.
_EARLIEST_COMPARABLE = pa.scalar(datetime(1678, 1, 1), type=pa.timestamp("us"))
_LATEST_COMPARABLE = pa.scalar(datetime(2262, 1, 1), type=pa.timestamp("us"))


def _comparable(column: pa.ChunkedArray) -> Any:
    """Return a column as a type that Great Expectations compares without a Python loop."""
    if pa.types.is_integer(column.type) or pa.types.is_decimal(column.type):
        return column.cast(pa.float64()).to_numpy()
    if pa.types.is_timestamp(column.type):
        inside = pc.max_element_wise(
            pc.min_element_wise(column, _LATEST_COMPARABLE, skip_nulls=False), _EARLIEST_COMPARABLE, skip_nulls=False
        )
        return inside.cast(pa.timestamp("ns")).to_pandas()
    return column.to_pandas()


def _chunk_validation(events: pa.Table, row_count: int, results: Iterable[Any]) -> ChunkValidation:
    failures: dict[int, list[RowFailure]] = {}
    flagged_rows: dict[str, set[int]] = {flag: set() for flag in FLAGS}
    unexpected_counts: dict[str, int] = {}
    column_values = _ColumnValues(events)
    success = True

    for result in results:
        config = result.expectation_config
        label = expectation_label(config.type, config.kwargs)
        if result.exception_info.get("raised_exception"):
            raise ChunkValidationError(
                f"{label} could not run: {result.exception_info.get('exception_message')}"
            )
        rows = _unexpected_rows(label, result.result)
        meta = config.meta or {}
        flag = meta.get("flag")
        if flag is not None:
            flagged_rows.setdefault(flag, set()).update(rows)
            continue

        unexpected_counts[label] = len(rows)
        success = success and bool(result.success)
        template = meta.get("message", label)
        for row in rows:
            failures.setdefault(row, []).append(RowFailure(label, _row_message(template, column_values, row)))

    passed = [row not in failures for row in range(row_count)]
    flagged = {flag: sorted(rows) for flag, rows in flagged_rows.items()}
    summary: dict[str, Any] = {
        "success": success,
        "suite": SUITE_NAME,
        "gx_version": gx.__version__,
        "chunks": 1,
        "rows": row_count,
        "rows_passed": sum(passed),
        "rows_failed": row_count - sum(passed),
        "unexpected_counts": unexpected_counts,
        **{flag: len(rows) for flag, rows in flagged.items()},
    }
    return ChunkValidation(pa.array(passed, type=pa.bool_()), failures, flagged, summary)


def expectation_label(expectation_type: str, kwargs: Mapping[str, Any]) -> str:
    """Name an expectation with the columns it reads, as in `expect_column_values_to_be_between(input_tokens)`."""
    columns = [str(kwargs[key]) for key in ("column", "column_A", "column_B") if kwargs.get(key)]
    return f"{expectation_type}({', '.join(columns)})"


def _unexpected_rows(label: str, result: Mapping[str, Any]) -> list[int]:
    rows = [int(row) for row in result.get("unexpected_index_list") or []]
    # A truncated list would let failing rows pass silently, so the count must match it.
    if len(rows) != result.get("unexpected_count", 0):
        raise ChunkValidationError(
            f"{label} reported {result.get('unexpected_count')} unexpected rows but listed {len(rows)}"
        )
    return rows


class _ColumnValues:
    """Python values of a chunk's columns, converted once on first use, for building messages."""

    def __init__(self, events: pa.Table) -> None:
        self._events = events
        self._lists: dict[str, list[Any]] = {}

    def value(self, column: str, row: int) -> Any:
        if column not in self._lists:
            self._lists[column] = self._events.column(column).to_pylist()
        return self._lists[column][row]


def _row_message(template: str, column_values: _ColumnValues, row: int) -> str:
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    return template.format(**{name: _display(column_values.value(name, row)) for name in names})


def _display(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)


def merge_summaries(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up chunk summaries into one summary of a whole batch, for the ledger."""
    merged: dict[str, Any] = {
        "success": True,
        "suite": SUITE_NAME,
        "gx_version": gx.__version__,
        "chunks": 0,
        "rows": 0,
        "rows_passed": 0,
        "rows_failed": 0,
        "unexpected_counts": {},
        **{flag: 0 for flag in FLAGS},
    }
    for summary in summaries:
        merged["success"] = merged["success"] and bool(summary["success"])
        for key in ("chunks", "rows", "rows_passed", "rows_failed", *FLAGS):
            merged[key] += int(summary.get(key, 0))
        counts = merged["unexpected_counts"]
        for label, count in summary["unexpected_counts"].items():
            counts[label] = counts.get(label, 0) + int(count)
    return merged
