"""Print a short summary of the warehouse after a run: events, cost, and what is missing."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import click
import duckdb

from ingest.config import Settings

TRY_QUERY = (
    "select created_at, provider, model, tool_name, operation, input_tokens, output_tokens, units, "
    "unit_type, cost_usd from marts.token_usage order by created_at desc limit 20"
)


def print_summary(settings: Settings) -> None:
    """Read the marts and the quarantine of the DuckDB warehouse and print the totals."""
    _require_duckdb(settings, "summary")
    if not settings.duckdb_path.exists():
        raise SummaryError(
            f"no warehouse at {settings.duckdb_path}; run `usage-warehouse ingest FILE` and `usage-warehouse build` first"
        )
    connection = _connect_read_only(settings.duckdb_path)
    try:
        connection.execute("set TimeZone = 'UTC'")
        marts = connection.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts' and table_name = 'fct_usage_events'"
        ).fetchone()
        if not marts or marts[0] == 0:
            raise SummaryError(f"{settings.duckdb_path} has no marts yet; run `usage-warehouse build` first")
        _print_totals(connection)
        _print_cost_by_provider_and_operation(connection)
        _print_quarantine(connection)
    finally:
        connection.close()
    click.echo(f"\nDuckDB file: {settings.duckdb_path}")
    command = Path(sys.argv[0]).absolute()
    click.echo(f'Try:\n  {command} query "{TRY_QUERY}"')


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
    """Run one query on a read-only connection and return the column names and rows."""
    if not sql.strip():
        raise SummaryError("the query is empty; pass one SQL statement, for example \"select 1\"")
    _require_duckdb(settings, "query")
    if not settings.duckdb_path.exists():
        raise SummaryError(f"no warehouse at {settings.duckdb_path}; run `usage-warehouse run` first")
    connection = _connect_read_only(settings.duckdb_path)
    try:
        connection.execute("set TimeZone = 'UTC'")
        try:
            cursor = connection.execute(sql)
        except duckdb.Error as error:
            raise SummaryError(f"query failed: {error}") from None
        columns = [description[0] for description in cursor.description or []]
        return columns, cursor.fetchall()
    finally:
        connection.close()


class SummaryError(RuntimeError):
    """The warehouse cannot be read, or has nothing to summarize yet."""


def _require_duckdb(settings: Settings, command: str) -> None:
    # TODO: read PostgreSQL too; until then the command rejects it instead of opening a DuckDB file.
    if settings.target != "duckdb":
        raise SummaryError(
            f"`usage-warehouse {command}` supports the duckdb target only for now; on {settings.target}, "
            "query the marts schema with psql"
        )


def _connect_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        raise SummaryError(
            f"cannot open {path} ({error}); if another process is writing it, wait for it to finish"
        ) from None


def _print_totals(connection: duckdb.DuckDBPyConnection) -> None:
    row = connection.execute(
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
    ).fetchone()
    assert row is not None
    events, computed, reported, unpriced, unmetered, unattributed, known_cost = row
    click.echo("\nUsage warehouse summary")
    click.echo(f"  billable events      {events:>10,}")
    click.echo(f"  cost computed        {computed:>10,}   from token or unit prices")
    click.echo(f"  reported cost only   {reported:>10,}")
    click.echo(f"  unpriced (no price)  {unpriced:>10,}   cost unknown, not counted as 0")
    click.echo(f"  unmetered (no usage) {unmetered:>10,}   cost unknown, not counted as 0")
    click.echo(f"  without organization {unattributed:>10,}")
    click.echo(f"  known cost           {_usd(known_cost):>14} USD")


def _print_cost_by_provider_and_operation(connection: duckdb.DuckDBPyConnection) -> None:
    rows = connection.execute(
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
    ).fetchall()
    click.echo("\nCost by provider and operation (USD)")
    click.echo(f"  {'provider':<12}{'operation':<24}{'events':>9}{'known cost':>16}{'events w/o cost':>17}")
    for provider, operation, events, cost, unknown in rows:
        click.echo(f"  {provider:<12}{operation:<24}{events:>9,}{_usd(cost):>16}{unknown:>17,}")


def _print_quarantine(connection: duckdb.DuckDBPyConnection) -> None:
    rows = connection.execute(
        """
        select reason, count(*)
        from raw.quarantined_rows
        where replayed_at is null and dismissed_at is null
        group by reason
        order by count(*) desc, reason
        """
    ).fetchall()
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
