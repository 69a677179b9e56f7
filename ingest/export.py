"""Export one organization's rows of the organization-facing marts as Parquet and CSV files.

The export reads through a read-only connection that applies no migrations, so a role that may
only read the marts can run it. Each relation becomes `<relation>.parquet` and `<relation>.csv`.
Decimals keep their precision and scale in Parquet (costs stay decimal(38, 12)), and timestamps
stay UTC without a time zone. All files are written under temporary names first and renamed only
when every file is complete, so a failed export leaves no partial file behind.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ingest.config import Settings
from ingest.warehouse.reader import QueryError, ReadError, ReadOnlyConnection, connect_read_only

logger = logging.getLogger(__name__)

# The organization-facing relations of the marts schema, each with the order its rows are written in.
EXPORT_RELATIONS: dict[str, str] = {
    "fct_usage_events": "created_at, event_id",
    "fct_usage_daily": "usage_date, daily_key",
    "token_usage": "created_at, id",
}
BATCH_ROWS = 50_000
LIST_ORGANIZATIONS = (
    'usage-warehouse query "select organization_id, count(*) as events from marts.fct_usage_events '
    'group by organization_id order by organization_id"'
)


class ExportError(RuntimeError):
    """The export cannot run: an invalid organization id, no rows, or a failed read or write."""


@dataclass(frozen=True)
class ExportedRelation:
    """One relation written for an organization: its row count and the files that hold the rows."""

    relation: str
    rows: int
    files: tuple[Path, ...]


def check_organization_id(organization_id: str) -> None:
    """Raise `ExportError` for an organization id that is empty or only whitespace."""
    if not organization_id.strip():
        raise ExportError(
            f"organization id {organization_id!r} is blank; pass --org with an organization id "
            f"(list them with `{LIST_ORGANIZATIONS}`)"
        )


def default_export_folder(settings: Settings, organization_id: str) -> Path:
    """Return `exports/<org>` beside the DuckDB file, in the Spark folder on spark, or in the working folder on postgres."""
    # The id becomes a folder name, so it must be one plain path component.
    if organization_id in (".", "..") or any(character in organization_id for character in ("/", "\\", "\0")):
        raise ExportError(
            f"organization id {organization_id!r} cannot be a folder name; pass --out FOLDER to choose the folder"
        )
    base = {"duckdb": settings.duckdb_path.parent, "spark": settings.spark_dir}.get(settings.target, Path.cwd())
    return base / "exports" / organization_id


def export_organization(settings: Settings, organization_id: str, folder: Path) -> list[ExportedRelation]:
    """Write the organization's rows of each exported relation to FOLDER and return what was written.

    The organization id reaches the database only as a query parameter. Raises `ExportError` when
    the organization has no rows in any relation, and then writes nothing.
    """
    check_organization_id(organization_id)
    try:
        connection = connect_read_only(settings)
    except ReadError as error:
        raise ExportError(str(error)) from None
    try:
        with connection.snapshot():
            counts = _count_rows(connection, organization_id)
            if not any(counts.values()):
                raise ExportError(_no_rows_message(settings, organization_id))
            return _write_relations(connection, organization_id, folder)
    finally:
        connection.close()


def _count_rows(connection: ReadOnlyConnection, organization_id: str) -> dict[str, int]:
    counts = {}
    for relation in EXPORT_RELATIONS:
        sql = f"select count(*) from marts.{relation} where organization_id = {connection.placeholder}"
        try:
            _, rows = connection.execute(sql, [organization_id])
        except QueryError as error:
            if error.permission_denied:
                raise ExportError(f"this role may not read marts.{relation} ({error}); it needs SELECT on it") from None
            raise ExportError(
                f"reading marts.{relation} failed ({error}); if the marts are missing, "
                "run `usage-warehouse build` first"
            ) from None
        counts[relation] = int(rows[0][0])
    return counts


def _no_rows_message(settings: Settings, organization_id: str) -> str:
    message = (
        f"organization {organization_id!r} has no rows in {', '.join(f'marts.{name}' for name in EXPORT_RELATIONS)}; "
        f"list the organizations with `{LIST_ORGANIZATIONS}`"
    )
    if settings.target == "postgres":
        message += " (row-level security shows a role only the organizations it was granted)"
    return message


def _write_relations(connection: ReadOnlyConnection, organization_id: str, folder: Path) -> list[ExportedRelation]:
    """Write every relation under temporary names, then rename them all. On failure, remove them."""
    created_folder = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(
            f"cannot create the export folder {folder}: {error}; pass --out with a writable folder"
        ) from None
    suffix = f".{uuid.uuid4().hex}.tmp"
    renames: list[tuple[Path, Path]] = []
    exported = []
    try:
        for relation, order in EXPORT_RELATIONS.items():
            parquet_path, csv_path = folder / f"{relation}.parquet", folder / f"{relation}.csv"
            parquet_temporary = parquet_path.with_name(f".{parquet_path.name}{suffix}")
            csv_temporary = csv_path.with_name(f".{csv_path.name}{suffix}")
            renames += [(parquet_temporary, parquet_path), (csv_temporary, csv_path)]
            sql = (
                f"select * from marts.{relation} where organization_id = {connection.placeholder} "
                f"order by {order}"
            )
            rows = _write_relation(connection, sql, organization_id, parquet_temporary, csv_temporary)
            exported.append(ExportedRelation(relation, rows, (parquet_path, csv_path)))
        for temporary, final in renames:
            os.replace(temporary, final)
    except (ReadError, OSError, pa.ArrowException) as error:
        _remove_temporary_files(renames, folder if created_folder else None)
        raise ExportError(
            f"export of organization {organization_id!r} to {folder} failed and left no partial file: {error}"
        ) from None
    except BaseException:
        _remove_temporary_files(renames, folder if created_folder else None)
        raise
    return exported


def _write_relation(
    connection: ReadOnlyConnection, sql: str, organization_id: str, parquet_path: Path, csv_path: Path
) -> int:
    """Stream the query's rows into one Parquet and one CSV file and return the row count."""
    batches = connection.record_batches(sql, [organization_id], BATCH_ROWS)
    rows = 0
    with pq.ParquetWriter(parquet_path, batches.schema) as parquet, pa_csv.CSVWriter(csv_path, batches.schema) as csv:
        for batch in batches:
            parquet.write_batch(batch)
            csv.write_batch(batch)
            rows += batch.num_rows
    return rows


def _remove_temporary_files(renames: list[tuple[Path, Path]], created_folder: Path | None) -> None:
    for temporary, _ in renames:
        temporary.unlink(missing_ok=True)
    if created_folder is not None:
        try:
            created_folder.rmdir()  # only when empty, and only the folder this export created
        except OSError as error:
            logger.debug("left the export folder %s in place: %s", created_folder, error)
