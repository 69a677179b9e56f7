"""Print a short summary of the warehouse after a run: events, cost, and what is missing."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import click

from ingest.config import Settings
from ingest.warehouse.reader import (
    QueryError,
    ReadError,
    ReadOnlyConnection,
    check_spark_reading_statement,
    connect_read_only,
)

TRY_QUERY = (
    "select created_at, provider, model, tool_name, operation, input_tokens, output_tokens, units, "
    "unit_type, cost_usd from marts.token_usage order by created_at desc limit 20"
)


def print_summary(settings: Settings) -> None:
    """Read the marts and the quarantine of the warehouse and print the totals.

    The connection is read-only and applies no migrations. A role that may read only the marts
    gets every section, and the quarantine section states that the role cannot read it.
    """
    connection = _connect(settings)
    try:
        if not connection.has_table("marts", "fct_usage_events"):
            raise SummaryError(
                f"{connection.location} has no marts, or none that this role may read; "
                "run `usage-warehouse build` first"
            )
        _print_totals(connection)
        _print_cost_by_provider_and_operation(connection)
        _print_quarantine(connection)
        location = connection.location
    except QueryError as error:
        raise SummaryError(str(error)) from None
    finally:
        connection.close()
    click.echo(f"\n{location}")
    command = Path(sys.argv[0]).absolute()
    # The printed command must reach the same warehouse when USAGE_WAREHOUSE_TARGET is not set.
    target = f" --target {settings.target}" if settings.target != "duckdb" else ""
    click.echo(f'Try:\n  {command} query{target} "{TRY_QUERY}"')


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
    """Run one query on a read-only connection and return the column names and rows."""
    if not sql.strip():
        raise SummaryError("the query is empty; pass one SQL statement, for example \"select 1\"")
    if settings.target == "spark":
        # Checked before Spark starts, which takes seconds.
        try:
            check_spark_reading_statement(sql)
        except QueryError as error:
            raise SummaryError(str(error)) from None
    connection = _connect(settings)
    try:
        return connection.execute(sql)
    except QueryError as error:
        raise SummaryError(str(error)) from None
    finally:
        connection.close()


class SummaryError(RuntimeError):
    """The warehouse cannot be read, or has nothing to summarize yet."""


def _connect(settings: Settings) -> ReadOnlyConnection:
    try:
        return connect_read_only(settings)
    except ReadError as error:
        raise SummaryError(str(error)) from None


def _print_totals(connection: ReadOnlyConnection) -> None:
    _, rows = connection.execute(
        """
        select
            count(*),
            count(*) filter (where cost_source = 'computed'),
            count(*) filter (where cost_source = 'reported'),
            count(*) filter (where cost_source = 'unpriced'),
            count(*) filter (where cost_source = 'unmetered'),
            count(*) filter (where is_unattributed),
            coalesce(sum(cost_usd), 0)
        from marts.fct_usage_events
        """
    )
    events, computed, reported, unpriced, unmetered, unattributed, known_cost = rows[0]
    click.echo("\nUsage warehouse summary")
    click.echo(f"  billable events      {events:>10,}")
    click.echo(f"  cost computed        {computed:>10,}   from token or unit prices")
    click.echo(f"  reported cost only   {reported:>10,}")
    click.echo(f"  unpriced (no price)  {unpriced:>10,}   cost unknown, not counted as 0")
    click.echo(f"  unmetered (no usage) {unmetered:>10,}   cost unknown, not counted as 0")
    click.echo(f"  without organization {unattributed:>10,}")
    click.echo(f"  known cost           {_usd(known_cost):>14} USD")


def _print_cost_by_provider_and_operation(connection: ReadOnlyConnection) -> None:
    _, rows = connection.execute(
        """
        select
            provider,
            operation,
            count(*) as events,
            sum(cost_usd) as known_cost_usd,
            count(*) filter (where cost_source in ('unpriced', 'unmetered')) as unknown_cost_events
        from marts.fct_usage_events
        group by provider, operation
        order by known_cost_usd desc nulls last, provider, operation
        """
    )
    click.echo("\nCost by provider and operation (USD)")
    click.echo(f"  {'provider':<12}{'operation':<24}{'events':>9}{'known cost':>16}{'events w/o cost':>17}")
    for provider, operation, events, cost, unknown in rows:
        click.echo(f"  {provider:<12}{operation:<24}{events:>9,}{_usd(cost):>16}{unknown:>17,}")


def _print_quarantine(connection: ReadOnlyConnection) -> None:
    try:
        _, rows = connection.execute(
            """
            select reason, count(*)
            from raw.quarantined_rows
            where replayed_at is null and dismissed_at is null
            group by reason
            order by count(*) desc, reason
            """
        )
    except QueryError as error:
        if not error.permission_denied:
            raise
        click.echo("\nQuarantined rows: not readable by this role (permission denied on raw.quarantined_rows)")
        return
    total = sum(count for _, count in rows)
    click.echo(f"\nQuarantined rows: {total}")
    for reason, count in rows:
        click.echo(f"  {reason:<32}{count:>8,}")
    if total:
        click.echo("  see them with `usage-warehouse quarantine list`")


def _usd(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.6f}"
