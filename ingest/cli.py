"""The `usage-warehouse` command line. Only this module turns exceptions into exit codes."""

from __future__ import annotations

import functools
import logging
import os
import shlex
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ingest.catalog import ModelResolver, load_deployments
from ingest.config import ConfigError, Settings, load_settings
from ingest.dbt_runner import DbtError, run_dbt
from ingest.loader import BatchResult, ingest_file, replay_quarantine
from ingest.readers import SourceError, expand_paths
from ingest.sample import SampleSummary
from ingest.warehouse.base import Warehouse

if TYPE_CHECKING:
    from ingest.warehouse.postgres import PostgresWarehouse

logger = logging.getLogger("ingest")

SAMPLE_EVENTS = 5000
SAMPLE_DAYS = 30
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
MAX_SAMPLE_DAYS = 3650
# Key of context.meta that stores why the group's options are invalid. The error is raised by
# the command, because the command's own --target or --duckdb may replace the invalid value.
SETTINGS_ERROR = "usage_warehouse.settings_error"


class CommandError(click.ClickException):
    """An error the command line reports in one line, with exit code 1."""


class _WarehouseGroup(click.Group):
    """The top-level group: every command under it also takes --target and --duckdb after its name."""

    def resolve_command(
        self, context: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(context, args)
        # Added when the command is looked up, so every command and group added to the CLI gets
        # the options without being listed here.
        if command is not None:
            _add_warehouse_options(command)
        return name, command, rest


def _add_warehouse_options(command: click.Command) -> None:
    """Let every leaf command under COMMAND take --target and --duckdb, overriding the group's."""
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            _add_warehouse_options(subcommand)
        return
    if any(param.name in ("target_override", "duckdb_override") for param in command.params):
        return
    flags = {flag for param in command.params for flag in param.opts}
    # A command with its own --target or --duckdb keeps it, and takes the warehouse from the group.
    if "--target" not in flags:
        command.params.append(click.Option(
            ["--target", "target_override"],
            help="Warehouse to use: duckdb, postgres or spark. Overrides --target before the command and "
                 "USAGE_WAREHOUSE_TARGET.",
        ))
    if "--duckdb" not in flags:
        command.params.append(click.Option(
            ["--duckdb", "duckdb_override"],
            help="DuckDB file of the warehouse. Overrides --duckdb before the command and "
                 "USAGE_WAREHOUSE_DUCKDB.",
        ))
    callback = command.callback
    if callback is None:
        return  # click runs nothing for a command without a callback

    @functools.wraps(callback)
    def run_with_settings(
        *args: object, target_override: str | None = None, duckdb_override: str | None = None, **kwargs: object
    ) -> object:
        context = click.get_current_context()
        context.obj = _command_settings(context, target_override, duckdb_override)
        return callback(*args, **kwargs)

    command.callback = run_with_settings


def _command_settings(context: click.Context, target: str | None, duckdb_path: str | None) -> Settings:
    """Return the settings of the group's options, with the command's own options on top."""
    root = context.find_root()
    if target is None and duckdb_path is None:
        if SETTINGS_ERROR in root.meta:
            raise CommandError(root.meta[SETTINGS_ERROR])
        return root.obj  # type: ignore[no-any-return]
    try:
        return load_settings(target or root.params.get("target"), duckdb_path or root.params.get("duckdb_path"))
    except ConfigError as error:
        raise CommandError(str(error)) from None


@click.group(cls=_WarehouseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--target", envvar="USAGE_WAREHOUSE_TARGET",
    help="Warehouse to use: duckdb (default), postgres (connection: USAGE_WAREHOUSE_PG_DSN or the PG* "
         "variables) or spark (a local Spark in USAGE_WAREHOUSE_SPARK_DIR [default: warehouse/spark]). Every "
         "command also takes it after its name.",
)
@click.option(
    "--duckdb", "duckdb_path", envvar="USAGE_WAREHOUSE_DUCKDB",
    help="DuckDB file of the warehouse [default: warehouse/usage.duckdb in the project]. Every command also "
         "takes it after its name.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.pass_context
def cli(context: click.Context, target: str | None, duckdb_path: str | None, verbose: bool) -> None:
    """Land AI usage events, price them with dbt, and summarize the cost."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Great Expectations logs its own set-up at INFO, which buries the batch lines.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    try:
        context.obj = load_settings(target, duckdb_path)
    except ConfigError as error:
        context.meta[SETTINGS_ERROR] = str(error)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--spool", "spools", multiple=True, type=click.Path(path_type=Path, file_okay=False),
    help="Tracker spool folder: land its closed segments and delete each once it has landed. Repeatable.",
)
@click.option(
    "--app-table", is_flag=True,
    help="Also read new rows of the app's PostgreSQL token_usage table (connection: USAGE_WAREHOUSE_APP_DSN).",
)
@click.option(
    "--overlap-minutes", default=10, show_default=True, type=click.IntRange(min=0),
    help="How far before the last row read the app table is read again, for rows committed late.",
)
@click.pass_obj
def ingest(
    settings: Settings, paths: tuple[Path, ...], spools: tuple[Path, ...], app_table: bool, overlap_minutes: int
) -> None:
    """Land the events of PATHS (files or folders of .jsonl, .csv, optionally .gz)."""
    if not paths and not spools and not app_table:
        raise CommandError("name files or folders to ingest, a tracker spool folder with --spool, or --app-table")
    if paths:
        _ingest(settings, list(paths))
    for spool in spools:
        _ship_spool(settings, spool)
    if app_table:
        _extract_app_table(settings, timedelta(minutes=overlap_minutes))


@cli.command()
@click.option("--full-refresh", is_flag=True, help="Rebuild every model from the raw tables.")
@click.option("--select", "selection", help="dbt node selection, as for `dbt build --select`.")
@click.pass_obj
def build(settings: Settings, full_refresh: bool, selection: str | None) -> None:
    """Run `dbt build`: seeds, models and tests. Warnings do not fail the build."""
    _build(settings, full_refresh=full_refresh, selection=selection)


@cli.command()
@click.option("--events", default=SAMPLE_EVENTS, show_default=True, type=click.IntRange(min=1),
              help="Number of lines to write.")
@click.option("--days", default=SAMPLE_DAYS, show_default=True, type=click.IntRange(1, MAX_SAMPLE_DAYS),
              help="Number of days the events span, ending on --end.")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed; the same seed gives the same file.")
@click.option("--end", "end", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last UTC day of the events [default: yesterday, so no event lies in the future].")
@click.option("--out", type=click.Path(path_type=Path), help="Output file [default: sample_events.jsonl.gz beside the DuckDB file, or in the Spark folder on spark].")
@click.pass_obj
def sample(settings: Settings, events: int, days: int, seed: int, end: object, out: Path | None) -> None:
    """Write a realistic, reproducible sample of the app's usage events."""
    path = out or _default_sample_path(settings)
    summary = _write_sample(path, events, days, seed, end.date() if end else _yesterday())  # type: ignore[attr-defined]
    _print_sample(summary)


@cli.group()
def prices() -> None:
    """Manage the price seeds."""


@prices.command("export")
@click.option("--out", type=click.Path(path_type=Path), help="Folder to write [default: seeds/genai_prices].")
@click.pass_obj
def prices_export(settings: Settings, out: Path | None) -> None:
    """Write the token price seeds from the pinned genai-prices package."""
    from ingest.prices import export_price_seeds

    folder = out or settings.project_dir / "seeds" / "genai_prices"
    summary = export_price_seeds(folder)
    click.echo(f"wrote price seeds to {folder}: {summary}")


@cli.group()
def quarantine() -> None:
    """Inspect and replay rows that failed validation."""


@quarantine.command("list")
@click.option("--reason", help="Show only rows quarantined for this reason code.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0),
              help="Rows to show per reason.")
@click.pass_obj
def quarantine_list(settings: Settings, reason: str | None, limit: int) -> None:
    """Show quarantined rows that have not been replayed, grouped by reason."""
    warehouse = _open_warehouse(settings)
    try:
        rows = list(warehouse.quarantined_rows(reason=reason))
    finally:
        warehouse.close()
    if not rows:
        click.echo("no quarantined rows")
        return
    by_reason: dict[str, list[object]] = {}
    for row in rows:
        by_reason.setdefault(row.reason, []).append(row)
    for code, group in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        click.echo(f"{code}: {len(group)} rows")
        for row in group[:limit]:
            click.echo(f"  {row.source_file}:{row.line_number}  {row.message}")  # type: ignore[attr-defined]
            click.echo(f"    {_shorten(row.raw_text)}")  # type: ignore[attr-defined]
    click.echo(
        "after fixing the cause, run `usage-warehouse quarantine replay`; close rows that no replay can "
        "land with `usage-warehouse quarantine dismiss`"
    )


@quarantine.command("replay")
@click.option("--reason", help="Replay only rows quarantined for this reason code.")
@click.pass_obj
def quarantine_replay(settings: Settings, reason: str | None) -> None:
    """Validate quarantined rows again and land those that now pass."""
    warehouse = _open_warehouse(settings)
    try:
        result = replay_quarantine(warehouse, _resolver(settings), reason)
    finally:
        warehouse.close()
    _print_batches([result])


@quarantine.command("dismiss")
@click.option("--reason", help="Dismiss only rows quarantined for this reason code.")
@click.option("--batch", "batch_id", help="Dismiss only rows of this batch id.")
@click.option("--note", required=True, help="Why the rows need no replay, for example where the fixed rows came from.")
@click.pass_obj
def quarantine_dismiss(settings: Settings, reason: str | None, batch_id: str | None, note: str) -> None:
    """Close quarantined rows that no replay can land, keeping them with a note."""
    if reason is None and batch_id is None:
        raise CommandError("name the rows to dismiss with --reason, --batch or both")
    if not note.strip():
        raise CommandError("--note is empty; say why the rows need no replay")
    warehouse = _open_warehouse(settings)
    try:
        count = warehouse.dismiss_quarantined(note, reason=reason, batch_id=batch_id)
    finally:
        warehouse.close()
    click.echo(f"dismissed {count} quarantined rows")
    if count == 0:
        click.echo("no open rows matched; `usage-warehouse quarantine list` shows the open reasons")


@cli.group()
def access() -> None:
    """Manage which PostgreSQL roles read which organization's rows (postgres target)."""


@access.command("grant")
@click.option("--role", required=True, help="Existing PostgreSQL role that reads the marts.")
@click.option("--org", "organization_id", help="Organization id whose rows the role reads, as in organization_id.")
@click.option("--all", "all_organizations", is_flag=True,
              help="Let the role read every row, unattributed events included (a superuser's view).")
@click.pass_obj
def access_grant(settings: Settings, role: str, organization_id: str | None, all_organizations: bool) -> None:
    """Let ROLE read one organization's rows of the marts, or every row with --all."""
    from ingest.access import AccessError, grant_access

    warehouse = _open_access_warehouse(settings)
    try:
        changed = grant_access(warehouse.connection, settings.reader_role, role, organization_id, all_organizations)
    except AccessError as error:
        raise CommandError(str(error)) from None
    finally:
        warehouse.close()
    scope = "every organization" if all_organizations else f"organization {organization_id}"
    click.echo(f"role {role} {'now reads' if changed else 'already reads'} {scope}")


@access.command("revoke")
@click.option("--role", required=True, help="Role whose grant to remove.")
@click.pass_obj
def access_revoke(settings: Settings, role: str) -> None:
    """Remove ROLE's grant; it reads no rows of the marts afterwards."""
    from ingest.access import AccessError, revoke_access

    warehouse = _open_access_warehouse(settings)
    try:
        revoke_access(warehouse.connection, settings.reader_role, role)
    except AccessError as error:
        raise CommandError(str(error)) from None
    finally:
        warehouse.close()
    click.echo(f"role {role} no longer reads the marts")


@access.command("list")
@click.pass_obj
def access_list(settings: Settings) -> None:
    """Show each role's scope, and what keeps a grant from working."""
    from ingest.access import list_access

    warehouse = _open_access_warehouse(settings)
    try:
        grants = list_access(warehouse.connection, settings.reader_role)
    finally:
        warehouse.close()
    if not grants:
        click.echo(f"no grants; members of {settings.reader_role} would read no rows")
        return
    for grant in grants:
        click.echo(f"{grant.role_name}: {grant.scope}")
        for problem in grant.problems:
            click.echo(f"  problem: {problem}")


def _open_access_warehouse(settings: Settings) -> PostgresWarehouse:
    if settings.target == "spark":
        raise CommandError(
            "`usage-warehouse access` needs the postgres target (--target postgres): on Spark, scope organizations "
            "with the catalog's own access control (a row filter on organization_id). Share one organization's "
            "rows with `usage-warehouse export --org ORG`"
        )
    if settings.target != "postgres":
        raise CommandError(
            "`usage-warehouse access` needs the postgres target (--target postgres): the DuckDB warehouse is "
            "single-tenant and has no roles. Share one organization's rows with `usage-warehouse export --org ORG`"
        )
    return _open_warehouse(settings)  # type: ignore[return-value]


@cli.command()
@click.option("--spool", "spools", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Tracker spool folder to ship (repeatable) [also: USAGE_WAREHOUSE_SPOOL_DIRS].")
@click.option("--drop", "drops", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Drop folder of event files (repeatable); landed files move to its landed/ folder "
                   "[also: USAGE_WAREHOUSE_DROP_DIRS].")
@click.option("--app-table/--no-app-table", default=None,
              help="Read the app's token_usage table [default: when USAGE_WAREHOUSE_APP_DSN is set].")
@click.option("--overlap-minutes", default=10, show_default=True, type=click.IntRange(min=0),
              help="How far before the last row read the app table is read again.")
@click.pass_obj
def sync(
    settings: Settings, spools: tuple[Path, ...], drops: tuple[Path, ...], app_table: bool | None,
    overlap_minutes: int,
) -> None:
    """Run one scheduled cycle: pull every source, land it, then build.

    Exit codes: 0 done (quarantined rows included), 75 another cycle holds the lock, 1 failed.
    """
    from ingest.sync import (
        SyncLockedError, SyncLockError, SyncSources, cycle_lock, database_cycle_lock, pull_sources,
    )

    sources = SyncSources(
        spool_dirs=spools or _paths_from_environment("USAGE_WAREHOUSE_SPOOL_DIRS"),
        drop_dirs=drops or _paths_from_environment("USAGE_WAREHOUSE_DROP_DIRS"),
        app_dsn=_app_dsn(app_table),
        app_overlap=timedelta(minutes=overlap_minutes),
    )
    if sources.is_empty:
        raise CommandError(
            "no source configured; pass --spool, --drop or --app-table, or set USAGE_WAREHOUSE_SPOOL_DIRS, "
            "USAGE_WAREHOUSE_DROP_DIRS or USAGE_WAREHOUSE_APP_DSN"
        )
    if settings.target == "postgres":
        lock = database_cycle_lock(settings.postgres_dsn)
    else:
        lock = cycle_lock(settings.sync_lock_path)
    try:
        with lock:
            logger.info("sync cycle started")
            progress = _SyncProgress()
            warehouse = _open_warehouse(settings)
            try:
                report = pull_sources(sources, warehouse, _resolver(settings), progress.batch_landed)
            finally:
                warehouse.close()
            progress.done()
            _build(settings, full_refresh=False, selection=None)
            logger.info("sync cycle finished: %d batches, %d failed sources", len(report.batches), len(report.failures))
    except SyncLockedError as error:
        click.echo(f"Error: {error}", err=True)
        raise click.exceptions.Exit(EXIT_LOCKED) from None
    except SyncLockError as error:
        raise CommandError(str(error)) from None
    if report.failures:
        raise CommandError(
            f"{len(report.failures)} sources failed (what landed is built):\n  " + "\n  ".join(report.failures)
        )


class _SyncProgress:
    """Progress of a cycle: one updating line on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.interactive = sys.stdout.isatty()
        self.batches = 0
        self.loaded = 0
        self.quarantined = 0

    def batch_landed(self, result: BatchResult) -> None:
        self.batches += 1
        if result.counts is not None:
            self.loaded += result.counts.rows_loaded
            self.quarantined += result.counts.rows_quarantined
        if self.interactive:
            click.echo(
                f"\rlanded {self.batches} batches: {self.loaded:,} events, {self.quarantined:,} quarantined",
                nl=False,
            )
        else:
            _print_batches([result])

    def done(self) -> None:
        if self.interactive and self.batches:
            click.echo()
        click.echo(f"pulled {self.batches} batches: {self.loaded:,} events loaded, {self.quarantined:,} quarantined")


def _paths_from_environment(name: str) -> tuple[Path, ...]:
    value = os.environ.get(name, "")
    return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())


def _app_dsn(app_table: bool | None) -> str | None:
    dsn = os.environ.get("USAGE_WAREHOUSE_APP_DSN")
    if app_table and not dsn:
        raise CommandError("--app-table needs USAGE_WAREHOUSE_APP_DSN, the app database's connection string")
    return dsn if app_table is not False else None


@cli.command()
@click.pass_obj
def summary(settings: Settings) -> None:
    """Print events, cost by provider and operation, and unpriced and quarantined counts."""
    _summarize(settings)


@cli.command("query")
@click.argument("sql")
@click.pass_obj
def query_command(settings: Settings, sql: str) -> None:
    """Run one SQL query on a read-only connection to the warehouse and print the rows."""
    from ingest.summary import SummaryError, run_query

    try:
        columns, rows = run_query(settings, sql)
    except SummaryError as error:
        raise CommandError(str(error)) from None
    _print_table(columns, rows)


@cli.command("export")
@click.option("--org", "organization_id", required=True,
              help="Organization id whose rows to export, as in the marts' organization_id column.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write [default: exports/<org> beside the DuckDB file; on spark, in "
                   "USAGE_WAREHOUSE_SPARK_DIR; on postgres, in the working folder].")
@click.pass_obj
def export_command(settings: Settings, organization_id: str, out: Path | None) -> None:
    """Write one organization's rows of the organization-facing marts as Parquet and CSV.

    Writes fct_usage_events, fct_usage_daily and token_usage, each as <relation>.parquet and
    <relation>.csv, on a read-only connection.
    """
    from ingest.export import ExportError, check_organization_id, default_export_folder, export_organization

    try:
        check_organization_id(organization_id)
        folder = out or default_export_folder(settings, organization_id)
        exported = export_organization(settings, organization_id, folder)
    except ExportError as error:
        raise CommandError(str(error)) from None
    click.echo(f"exported organization {organization_id} to {folder}:")
    for relation in exported:
        names = ", ".join(path.name for path in relation.files)
        click.echo(f"  {relation.relation:<18}{relation.rows:>10,} rows  {names}")


@cli.command()
@click.option("--events", default=SAMPLE_EVENTS, show_default=True, type=click.IntRange(min=1),
              help="Number of sample lines to generate.")
@click.option("--days", default=SAMPLE_DAYS, show_default=True, type=click.IntRange(1, MAX_SAMPLE_DAYS),
              help="Number of days the sample spans.")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed of the sample.")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True,
              help="Build the dashboard after the summary (needs Node.js).")
@click.pass_obj
def run(settings: Settings, events: int, days: int, seed: int, dashboard: bool) -> None:
    """Run the main job: write the sample, ingest it, build, print a summary, build the dashboard."""
    from ingest.report import NodeNotFoundError, check_node

    path = _default_sample_path(settings)
    _print_sample(_write_sample(path, events, days, seed, _yesterday()))
    _ingest(settings, [path])
    _build(settings, full_refresh=False, selection=None)
    _summarize(settings)
    if not dashboard:
        return
    if settings.target == "spark":
        click.echo("\nskipped the dashboard: it reads the duckdb and postgres targets, not spark")
        return
    try:
        check_node()
    except NodeNotFoundError as error:
        click.echo(f"\nskipped the dashboard: {error}")
        return
    click.echo("\nbuilding the dashboard (the first build installs its npm packages)")
    _build_report(settings, organization_id=None, out=None)


@cli.group()
def report() -> None:
    """Build and preview the usage dashboard (the Evidence project in reports/)."""


@report.command("build")
@click.option("--org", "organization_id", help="Build a site that contains this organization's rows only.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Site folder [default: reports/build/site, or reports/build/organizations/<org>].")
@click.pass_obj
def report_build(settings: Settings, organization_id: str | None, out: Path | None) -> None:
    """Refresh the dashboard's data from the marts and build its static site."""
    _build_report(settings, organization_id, out)


@report.command("serve")
@click.option("--org", "organization_id", help="Serve the site built with --org ORG.")
@click.option("--dir", "build_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Site folder to serve [default: the folder that `report build` writes].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535), help="TCP port to listen on.")
def report_serve(organization_id: str | None, build_dir: Path | None, host: str, port: int) -> None:
    """Preview a built dashboard site over HTTP until Ctrl-C."""
    from ingest.report import ReportError, default_output_dir, serve_report

    try:
        serve_report(build_dir or default_output_dir(organization_id), host, port)
    except ReportError as error:
        raise CommandError(str(error)) from None


def _build_report(settings: Settings, organization_id: str | None, out: Path | None) -> None:
    from ingest.report import ReportError, build_report

    try:
        folder = build_report(
            settings.duckdb_path if settings.target == "duckdb" else None,
            organization_id,
            out,
            target=settings.target,
            connection_environment=settings.dbt_environment(),
        )
    except ReportError as error:
        raise CommandError(str(error)) from None
    click.echo(f"built the dashboard in {folder}")
    command = shlex.quote(str(Path(sys.argv[0]).absolute()))
    serve = f"{command} report serve" + (f" --org {shlex.quote(organization_id)}" if organization_id else "")
    if out:
        serve += f" --dir {shlex.quote(str(out))}"
    click.echo(f"preview it with `{serve}`, then open http://127.0.0.1:3000/")


def _ingest(settings: Settings, paths: list[Path]) -> None:
    """Land each file as its own batch, printing each result; a file that fails stops no other."""
    try:
        files = expand_paths(paths)
    except SourceError as error:
        raise CommandError(str(error)) from None
    warehouse = _open_warehouse(settings)
    resolver = _resolver(settings)
    failed: list[str] = []
    try:
        for path in files:
            try:
                _print_batches([ingest_file(path, warehouse, resolver)])
            except SourceError as error:
                click.echo(f"{path}: failed, nothing from it landed: {error}", err=True)
                failed.append(str(path))
    finally:
        warehouse.close()
    if failed:
        raise CommandError(f"{len(failed)} of {len(files)} files failed: {', '.join(failed)}")


def _extract_app_table(settings: Settings, overlap: timedelta) -> None:
    from ingest.app_table import AppTableError, extract_token_usage

    dsn = os.environ.get("USAGE_WAREHOUSE_APP_DSN")
    if not dsn:
        raise CommandError(
            "USAGE_WAREHOUSE_APP_DSN is not set; set it to the app database's connection string, "
            "for example postgresql://reader@db.internal/app"
        )
    warehouse = _open_warehouse(settings)
    try:
        _print_batches([extract_token_usage(dsn, warehouse, _resolver(settings), overlap)])
    except AppTableError as error:
        raise CommandError(str(error)) from None
    finally:
        warehouse.close()


def _ship_spool(settings: Settings, spool: Path) -> None:
    """Land each closed spool segment, oldest first, and delete it once its batch has landed.

    A segment whose contents landed before (the process died between landing and deleting) is
    deleted too. Open segments (`.jsonl.open`) are still being written and are left alone.
    """
    from ingest.sync import SyncSources, pull_sources

    warehouse = _open_warehouse(settings)
    try:
        report = pull_sources(SyncSources(spool_dirs=(spool,)), warehouse, _resolver(settings),
                              lambda result: _print_batches([result]))
    finally:
        warehouse.close()
    if report.failures:
        raise CommandError("; ".join(report.failures) + "; failed segments are kept for the next run")
    click.echo(f"{spool}: shipped {len(report.batches)} closed segments")


def _open_warehouse(settings: Settings) -> Warehouse:
    from ingest.warehouse import open_warehouse

    try:
        return open_warehouse(settings)
    except RuntimeError as error:
        raise CommandError(str(error)) from None


def _build(settings: Settings, *, full_refresh: bool, selection: str | None) -> None:
    from ingest.seed_state import SEED_SCHEMA, seed_fingerprints, unchanged_seeds

    fingerprints = seed_fingerprints(settings.project_dir)
    # Migrations first, so a build on a new file finds the raw tables it reads.
    warehouse = _open_warehouse(settings)
    try:
        if settings.target == "postgres":
            _ensure_reader_role(settings, warehouse)
        # A selection is the user's to make, so only a whole incremental build leaves seeds out.
        skip = not full_refresh and not selection
        skipped_seeds = unchanged_seeds(fingerprints, warehouse.loaded_seeds(SEED_SCHEMA)) if skip else []
    finally:
        warehouse.close()
    arguments = ["build"]
    if full_refresh:
        arguments.append("--full-refresh")
    if selection:
        arguments += ["--select", selection]
    if skipped_seeds:
        # Cautious selection leaves out only the tests that read nothing but skipped seeds. A
        # test that also reads a model (an expected record missing from the marts) still runs.
        arguments += ["--exclude", *skipped_seeds, "--indirect-selection", "cautious"]
        click.echo(f"seeds unchanged since the last build, not loaded again: {', '.join(skipped_seeds)}")
    if settings.target == "spark":
        from ingest.spark_publish import catalog_busy_message

        busy = catalog_busy_message(settings.spark_dir)
        if busy:
            raise CommandError(busy)
    try:
        outcome = run_dbt(settings, arguments)
    except DbtError as error:
        raise CommandError(str(error)) from None
    if settings.target == "spark":
        from ingest.spark_publish import wait_for_catalog_release

        wait_for_catalog_release(settings.spark_dir)
    if outcome.seeds_loaded:
        warehouse = _open_warehouse(settings)
        try:
            warehouse.record_seed_loads({name: fingerprints[name] for name in outcome.seeds_loaded})
        finally:
            warehouse.close()
    if outcome.warnings:
        click.echo(f"\n{len(outcome.warnings)} data checks warned (the data needs a look; the build goes on):")
        for warning in outcome.warnings:
            click.echo(f"  warn  {warning}")
    if not outcome.success:
        details = "\n".join(f"  {failure}" for failure in outcome.failures) or "  see the dbt output above"
        raise CommandError(f"dbt build failed:\n{details}")


def _ensure_reader_role(settings: Settings, warehouse: Warehouse) -> None:
    """Create the role that the marts are granted to, which dbt's grants need."""
    from ingest.access import AccessError, ensure_reader_role

    try:
        ensure_reader_role(warehouse.connection, settings.reader_role)  # type: ignore[attr-defined]
    except AccessError as error:
        raise CommandError(str(error)) from None


def _summarize(settings: Settings) -> None:
    from ingest.summary import SummaryError, print_summary

    try:
        print_summary(settings)
    except SummaryError as error:
        raise CommandError(str(error)) from None


def _resolver(settings: Settings) -> ModelResolver:
    return ModelResolver(load_deployments(settings.deployments_seed))


def _write_sample(path: Path, events: int, days: int, seed: int, end: date | None) -> SampleSummary:
    from ingest.sample import write_sample

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_sample(path, events=events, days=days, seed=seed, end=end)


def _yesterday() -> date:
    # The sample spreads events over whole UTC days; ending yesterday keeps all of them in the past.
    return datetime.now(UTC).date() - timedelta(days=1)


def _print_sample(summary: SampleSummary) -> None:
    click.echo(
        f"wrote {summary.events_written} lines to {summary.path} ({summary.first_day} to {summary.last_day}):"
        f" {summary.duplicate_lines} duplicate and {summary.malformed_lines} malformed lines on purpose,"
        f" {summary.events_without_organization} events without organization"
    )


def _default_sample_path(settings: Settings) -> Path:
    folder = settings.spark_dir if settings.target == "spark" else settings.duckdb_path.parent
    return folder / "sample_events.jsonl.gz"


def _print_batches(results: list[BatchResult]) -> None:
    for result in results:
        if result.counts is None:
            click.echo(f"{result.source_path}: skipped, {result.skipped_because}")
            continue
        counts = result.counts
        click.echo(
            f"{result.source_path}: read {counts.rows_read} = loaded {counts.rows_loaded}"
            f" + duplicate {counts.rows_duplicate} + quarantined {counts.rows_quarantined}"
            f" (batch {result.batch_id}, {result.seconds:.1f} s)"
        )
        for reason, count in result.quarantined_by_reason.most_common():
            click.echo(f"  quarantined {count} x {reason}")
        if result.validation:
            check = result.validation
            click.echo(
                f"  expectations: {check['rows']} rows checked, {check['rows_failed']} failed;"
                f" flagged {check['outside_catalog']} outside the price catalog,"
                f" {check['unknown_service_tier']} with another service tier"
            )
        if not counts.reconciles:
            raise CommandError(f"batch {result.batch_id} does not reconcile: {counts}")


def _print_table(columns: list[str], rows: list[tuple[object, ...]]) -> None:
    cells = [columns, *[["" if value is None else str(value) for value in row] for row in rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(columns))]
    for number, row in enumerate(cells):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            click.echo("  ".join("-" * width for width in widths))
    click.echo(f"({len(rows)} rows)")


def _shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def main() -> None:
    """Run the command line."""
    from ingest.spark_publish import PublishError

    try:
        cli()
    except PublishError as error:
        # Raised when a spark target warehouse closes, after the command's own work is done.
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
