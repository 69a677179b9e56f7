"""Read the app's own PostgreSQL `token_usage` table incrementally.

Each run reads the rows after a watermark, the largest (created_at, id) landed so far, minus an
overlap window: a row whose transaction committed after a later row was read still lands. Every
row gets the event id `token_usage:<id>`, the same as a CSV export of the table, so rows read
twice (in the overlap, or once from a file and once from the table) count once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.extras

from ingest.catalog import ModelResolver
from ingest.events import token_usage_event_id
from ingest.loader import BatchResult, land_records, new_batch_info
from ingest.readers import SourceRecord
from ingest.warehouse.base import Warehouse

logger = logging.getLogger(__name__)

SOURCE_NAME = "app.token_usage"
DEFAULT_OVERLAP = timedelta(minutes=10)
FETCH_ROWS = 10_000
EARLIEST = datetime(1970, 1, 1)

COLUMNS = (
    "id", "created_at", "provider", "model", "tool_name", "operation", "input_tokens", "output_tokens",
    "units", "unit_type", "cost_usd", "user_id", "organization_id",
)

# Rows in (created_at, id) order from the start of the overlap window, with created_at as UTC
# without time zone whatever the session's time zone. `{utc}` converts the column to that; a
# column without time zone is taken to hold UTC already.
EXTRACT_SQL = """
    select id, {utc} as created_at, {other_columns}
    from token_usage
    where {utc} >= %(since)s
    order by created_at, id
"""

COLUMN_TYPE_SQL = """
    select data_type
    from information_schema.columns
    where table_name = 'token_usage' and column_name = 'created_at'
    order by (table_schema = current_schema()) desc
    limit 1
"""


class AppTableError(RuntimeError):
    """The app's database cannot be reached or read."""


def extract_token_usage(
    dsn: str, warehouse: Warehouse, resolver: ModelResolver, overlap: timedelta = DEFAULT_OVERLAP
) -> BatchResult:
    """Land the app's token_usage rows from the watermark minus `overlap`, then move the watermark."""
    watermark = warehouse.read_watermark(SOURCE_NAME)
    since = watermark[0] - overlap if watermark else EARLIEST
    info = new_batch_info(f"postgresql token_usage since {since:%Y-%m-%d %H:%M:%S}", "app_table",
                          f"app_table:{uuid.uuid4().hex}")
    newest: list[tuple[datetime, str]] = []
    try:
        connection = psycopg2.connect(dsn)
    except psycopg2.Error as error:
        raise AppTableError(
            f"cannot connect to the app database ({str(error).strip()}); check USAGE_WAREHOUSE_APP_DSN"
        ) from None
    try:
        records = _rows_as_records(connection, since, newest)
        result = land_records(info, records, warehouse, resolver)
    except psycopg2.Error as error:
        raise AppTableError(f"reading token_usage failed: {str(error).strip()}") from None
    finally:
        connection.close()

    if newest and (watermark is None or newest[-1][0] >= watermark[0]):
        warehouse.write_watermark(SOURCE_NAME, newest[-1][0], newest[-1][1])
    return result


def _rows_as_records(
    connection: Any, since: datetime, newest: list[tuple[datetime, str]]
) -> Iterator[SourceRecord]:
    with connection.cursor() as cursor:
        cursor.execute(COLUMN_TYPE_SQL)
        found = cursor.fetchone()
    if found is None:
        raise AppTableError("the app database has no token_usage table with a created_at column")
    utc = "(created_at at time zone 'UTC')" if found[0] == "timestamp with time zone" else "created_at"
    sql = EXTRACT_SQL.format(utc=utc, other_columns=", ".join(COLUMNS[2:]))

    # A named cursor streams from the server in FETCH_ROWS pieces, so memory stays flat.
    with connection.cursor(name="token_usage_extract", cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(sql, {"since": since})
        # The watermark never passes the present: a row stamped in the future (a clock gone
        # wrong) would otherwise make every later row fall before the next read.
        now = datetime.now(UTC).replace(tzinfo=None)
        for number, row in enumerate(cursor, start=1):
            fields = _event_fields(row)
            if row["created_at"] <= now:
                newest[:] = [(row["created_at"], str(row["id"]))]
            yield SourceRecord(number, json.dumps(fields, default=str, sort_keys=True), fields)


def _event_fields(row: dict[str, Any]) -> dict[str, Any]:
    fields = {name: _plain(row[name]) for name in COLUMNS if name != "id"}
    fields["event_id"] = token_usage_event_id(str(row["id"]))
    fields["created_at"] = row["created_at"].replace(tzinfo=UTC).isoformat()
    return fields


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value
