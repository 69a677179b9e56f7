"""Publish the spark target's landed batches to Spark tables, in a process of its own.

The spark target lands every batch in a DuckDB file beside the Spark catalog
(`Settings.spark_landing_path`), with the ledger, deduplication and quarantine rules of the
duckdb target. This module copies what changed since the last publication into Spark's `raw`
schema: `raw.usage_events` as a Parquet table partitioned by `event_date` (the UTC day of
`created_at`), of which only the days of new batches are overwritten, and the ledger and the
quarantine, which are small, as a whole.

It runs as `python -m ingest.spark_publish SPARK_DIR` so the command line never starts a Java
virtual machine itself: Spark's Derby metastore admits one process at a time, and dbt opens it
next. A publication that dies is repeated whole by the next one, since overwriting a day with
the same rows changes nothing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ingest.warehouse.duckdb import transaction

# Publication bookkeeping, in the landing file: it is not part of the raw tables dbt reads.
STATE_SCHEMA = "spark_publication"
EVENTS_TABLE = "usage_events"
# Tables copied whole at each publication: the ledger and the quarantine.
WHOLE_TABLES = ("ingest_batches", "quarantined_rows")
PARTITION_COLUMN = "event_date"
# How long a command waits for the Java VM of a Spark process it started to release the catalog.
CATALOG_RELEASE_SECONDS = 30.0
# The Spark driver's logging: warnings only, without the ones every session repeats.
LOG4J2_SETTINGS = Path(__file__).with_name("spark_log4j2.properties")


class PublishError(RuntimeError):
    """Landed batches could not be published to Spark."""


def spark_configuration(spark_dir: Path) -> dict[str, str]:
    """Return the settings of the local Spark session, the same as the `spark` profile's.

    NOTE: profiles.yml repeats these values for dbt's session; a change here belongs there too.
    """
    return {
        "spark.master": os.environ.get("USAGE_WAREHOUSE_SPARK_MASTER", "local[2]"),
        "spark.sql.warehouse.dir": str(spark_dir / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={spark_dir / 'metastore_db'};create=true"
        ),
        "spark.hadoop.hive.downloaded.resources.dir": str(spark_dir / "hive_resources"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={spark_dir} -Dlog4j2.configurationFile={LOG4J2_SETTINGS}",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.decimalOperations.allowPrecisionLoss": "false",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.shuffle.partitions": os.environ.get("USAGE_WAREHOUSE_SPARK_SHUFFLE_PARTITIONS", "4"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
    }


def catalog_busy_message(spark_dir: Path) -> str | None:
    """Return why the Spark catalog in SPARK_DIR cannot be opened now, or None when it can.

    Derby holds an exclusive file lock on metastore_db/dbex.lck while a process has the metastore
    open. Checking it first turns Derby's thousands of lines of stack traces into one message.
    """
    lock_file = spark_dir / "metastore_db" / "dbex.lck"
    if not lock_file.exists():
        return None
    with lock_file.open("r+b") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return (
                f"another process (a build, a query or a publication) has the Spark catalog in {spark_dir} open, "
                "and its Derby metastore admits one process at a time; run the command again when it has finished"
            )
        fcntl.lockf(handle, fcntl.LOCK_UN)
    return None


def local_spark_session(spark_dir: Path) -> Any:
    """Start this process's Spark session on the catalog in SPARK_DIR, with `spark_configuration`."""
    from pyspark.sql import SparkSession

    # The local Spark binds the loopback address instead of looking up the host's.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_configuration(spark_dir).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def stop_local_spark(spark: Any) -> None:
    """Stop this process's Spark session and its Java VM, so the catalog is free when this returns.

    `SparkSession.stop` leaves the VM running until the Python process exits. The VM ends when its
    standard input closes, and waiting for it releases the Derby metastore for the next command.
    """
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    spark.stop()
    java_process = getattr(gateway, "proc", None)
    if java_process is None:
        return
    gateway.shutdown()
    if java_process.stdin is not None:
        java_process.stdin.close()
    try:
        java_process.wait(timeout=CATALOG_RELEASE_SECONDS)
    except subprocess.TimeoutExpired:
        java_process.kill()
        java_process.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None


@dataclass(frozen=True)
class Pending:
    """The changes that the next publication copies: new batches, and whether the small tables changed."""

    batch_ids: list[str]
    whole_tables_fingerprint: str
    whole_tables_changed: bool

    @property
    def empty(self) -> bool:
        return not self.batch_ids and not self.whole_tables_changed


def pending_publication(landing: duckdb.DuckDBPyConnection) -> Pending:
    """Return what changed in the landing file since the last publication."""
    _create_state_tables(landing)
    batch_ids = [
        str(row[0]) for row in landing.execute(
            f"""
            select batch_id from raw.ingest_batches
            where status = 'loaded'
                and batch_id not in (select batch_id from {STATE_SCHEMA}.published_batches)
            order by started_at, batch_id
            """
        ).fetchall()
    ]
    # Every change to the ledger or the quarantine moves one of these: a new row, a finished or
    # removed batch, a replayed or dismissed row.
    fingerprint = "|".join(
        str(value) for value in landing.execute(
            """
            select
                (select count(*) from raw.ingest_batches),
                (select max(started_at) from raw.ingest_batches),
                (select max(finished_at) from raw.ingest_batches),
                (select string_agg(status || ':' || n, ',' order by status)
                 from (select status, count(*) as n from raw.ingest_batches group by status)),
                (select count(*) from raw.quarantined_rows),
                (select max(quarantined_at) from raw.quarantined_rows),
                (select count(replayed_at) from raw.quarantined_rows),
                (select count(dismissed_at) from raw.quarantined_rows)
            """
        ).fetchone()
    )
    published = landing.execute(
        f"select value from {STATE_SCHEMA}.state where name = 'whole_tables_fingerprint'"
    ).fetchone()
    return Pending(batch_ids, fingerprint, published is None or published[0] != fingerprint)


def needs_publication(landing_path: Path) -> bool:
    """Return whether the landing file contains changes that Spark does not have yet."""
    if not landing_path.exists():
        return False
    landing = duckdb.connect(str(landing_path))
    try:
        if not landing.execute(
            "select 1 from information_schema.tables where table_schema = 'raw' and table_name = 'ingest_batches'"
        ).fetchone():
            return False
        return not pending_publication(landing).empty
    finally:
        landing.close()


def wait_for_catalog_release(spark_dir: Path, timeout_seconds: float = CATALOG_RELEASE_SECONDS) -> None:
    """Wait until no process has the Spark catalog in SPARK_DIR open, for TIMEOUT_SECONDS at most.

    pyspark's Java VM is a child of the Python process that started it and stops shortly after
    that process exits, so a command that has just run dbt or a publication waits here before it
    opens the catalog itself. After the timeout the caller's own busy check reports the holder.
    """
    deadline = time.monotonic() + timeout_seconds
    while catalog_busy_message(spark_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.2)


def publish_in_child_process(spark_dir: Path) -> None:
    """Run the publication in a child process and raise `PublishError` with its output on failure."""
    busy = catalog_busy_message(spark_dir)
    if busy:
        raise PublishError(f"the landed batches were not published to Spark: {busy}")
    completed = subprocess.run(
        [sys.executable, "-m", "ingest.spark_publish", str(spark_dir)],
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip().splitlines()
        master = spark_configuration(spark_dir)["spark.master"]
        raise PublishError(
            f"publishing the landed batches to Spark in {spark_dir} failed (exit {completed.returncode}, Spark "
            f"master {master!r} from USAGE_WAREHOUSE_SPARK_MASTER); they stay in the landing file and the next "
            "ingest or build publishes them again. Last lines:\n" + "\n".join(output[-30:])
        )
    wait_for_catalog_release(spark_dir)
    if completed.stdout.strip():
        print(completed.stdout.strip())


def publish(spark_dir: Path) -> str:
    """Copy the landing file's changes into Spark's raw tables; return a line saying what was copied."""
    from pyspark.sql import functions
    from pyspark.sql.types import TimestampNTZType

    landing_path = spark_dir / "landing.duckdb"
    landing = duckdb.connect(str(landing_path))
    export_dir = spark_dir / "publication"
    shutil.rmtree(export_dir, ignore_errors=True)
    export_dir.mkdir(parents=True)
    spark = local_spark_session(spark_dir)
    try:
        landing.execute("set TimeZone = 'UTC'")
        pending = pending_publication(landing)
        spark.sql("create schema if not exists raw")
        event_columns = _landing_columns(landing, EVENTS_TABLE) + [PARTITION_COLUMN]
        # A missing table or one with other columns (a new migration) is published again in full.
        full = _spark_columns(spark, EVENTS_TABLE) != event_columns
        days_filter = "" if full else (
            f"where cast(created_at as date) in (select distinct cast(created_at as date) from raw.{EVENTS_TABLE} "
            "where batch_id in (select unnest($batch_ids)))"
        )
        events_file = export_dir / f"{EVENTS_TABLE}.parquet"
        landing.execute(
            f"copy (select *, cast(created_at as date) as {PARTITION_COLUMN} from raw.{EVENTS_TABLE} {days_filter}) "
            f"to '{events_file}' (format parquet)",
            {"batch_ids": pending.batch_ids} if days_filter else None,
        )

        def read(path: Path) -> Any:
            frame = spark.read.parquet(str(path))
            # DuckDB writes timestamps without time zone; Spark's timestamp is read in the session's UTC.
            return frame.select(*[
                functions.col(field.name).cast("timestamp") if isinstance(field.dataType, TimestampNTZType)
                else functions.col(field.name)
                for field in frame.schema.fields
            ])

        events = read(events_file)
        if full:
            spark.sql(f"drop table if exists raw.{EVENTS_TABLE}")
            events.write.format("parquet").partitionBy(PARTITION_COLUMN).saveAsTable(f"raw.{EVENTS_TABLE}")
        else:
            # Dynamic partition overwrite: only the days present in the export are replaced.
            events.write.mode("overwrite").insertInto(f"raw.{EVENTS_TABLE}")
        days = events.select(PARTITION_COLUMN).distinct().count()

        for table in WHOLE_TABLES:
            table_file = export_dir / f"{table}.parquet"
            landing.execute(f"copy raw.{table} to '{table_file}' (format parquet)")
            frame = read(table_file)
            if _spark_columns(spark, table) != frame.columns:
                spark.sql(f"drop table if exists raw.{table}")
                frame.write.format("parquet").saveAsTable(f"raw.{table}")
            else:
                frame.write.mode("overwrite").insertInto(f"raw.{table}")

        with transaction(landing):
            # A publication of the ledger or the quarantine alone has no batch to record.
            if pending.batch_ids:
                landing.executemany(
                    f"insert or ignore into {STATE_SCHEMA}.published_batches values (?, now())",
                    [[batch_id] for batch_id in pending.batch_ids],
                )
            landing.execute(
                f"insert or replace into {STATE_SCHEMA}.state values ('whole_tables_fingerprint', ?)",
                [pending.whole_tables_fingerprint],
            )
        scope = "every day" if full else _count(days, "day")
        return f"published {_count(len(pending.batch_ids), 'batch')} to Spark: {scope} of raw.{EVENTS_TABLE} written"
    finally:
        stop_local_spark(spark)
        landing.close()
        shutil.rmtree(export_dir, ignore_errors=True)


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"{number} {noun if number == 1 else plural}"


def _create_state_tables(landing: duckdb.DuckDBPyConnection) -> None:
    landing.execute(f"create schema if not exists {STATE_SCHEMA}")
    landing.execute(
        f"create table if not exists {STATE_SCHEMA}.published_batches "
        "(batch_id varchar primary key, published_at timestamp not null)"
    )
    landing.execute(f"create table if not exists {STATE_SCHEMA}.state (name varchar primary key, value varchar)")


def _landing_columns(landing: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        str(row[0]) for row in landing.execute(
            "select column_name from information_schema.columns where table_schema = 'raw' and table_name = ? "
            "order by ordinal_position",
            [table],
        ).fetchall()
    ]


def _spark_columns(spark: Any, table: str) -> list[str]:
    if not spark.catalog.tableExists(f"raw.{table}"):
        return []
    return [column.name for column in spark.catalog.listColumns(f"raw.{table}")]


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m ingest.spark_publish SPARK_DIR", file=sys.stderr)
        return 2
    print(publish(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
