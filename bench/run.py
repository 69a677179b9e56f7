"""Benchmark ingest, build and dashboard queries, and prepend the figures to bench/results.md.

All measurements of one run use the same generated sample files, in a scratch folder that is
deleted at the end. PostgreSQL measurements use fresh databases named
``uw_bench_*`` on the server that the PG* variables reach (default 127.0.0.1:5432, user
postgres), and drop them afterwards.

Run it with ``make bench`` (``make bench BENCH_ARGS="--events 200000"``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg2

from ingest.events import TOKEN_FIELDS
from ingest.sample.output import rewrite_events
from ingest.sample.payloads import (
    Tokens,
    anthropic_usage,
    gemini_usage_metadata,
    openai_chat_usage,
    with_token_fields,
)

PROJECT = Path(__file__).resolve().parent.parent
CLI = str(PROJECT / ".venv" / "bin" / "usage-warehouse")
RESULTS = PROJECT / "bench" / "results.md"
END_DAY = "2026-11-30"
NEW_EVENTS_END_DAY = "2026-12-01"
QUERY_REPEATS = 3
# The local Spark of the spark target's builds: both cores of the benchmark machine.
SPARK_MASTER = "local[2]"

# Goals that the figures are compared with.
MIN_INGEST_TO_BULK_RATIO = 0.5
MAX_INCREMENTAL_TO_FULL_RATIO = 0.15
# NOTE: "flat" is read as less than this growth for ten times the lines, a chosen threshold.
MAX_MEMORY_GROWTH = 1.5

# Columns of the plain PostgreSQL table that COPY loads. The JSON objects go to jsonb columns.
COPY_COLUMNS = (
    "event_id", "created_at", "provider", "operation", "model", "platform", "service", "tool_name",
    "user_id", "organization_id", "request_id", *TOKEN_FIELDS, "units", "unit_type", "cost_usd",
    "usage", "attributes", "metadata",
)
COPY_TABLE_DDL = """
create table copied_events (
    event_id text, created_at timestamptz, provider text, operation text, model text,
    platform text, service text, tool_name text, user_id text, organization_id text,
    request_id text, input_tokens bigint, cached_input_tokens bigint, cache_write_tokens bigint,
    output_tokens bigint, reasoning_tokens bigint, units numeric, unit_type text,
    cost_usd numeric, usage jsonb, attributes jsonb, metadata jsonb
)
"""

# Dashboard queries, each written once on the daily mart and once on the event mart. Costs are
# rounded to 9 decimal places because the two marts sum in a different order.
# Each dashboard query as the dashboard reads it (the daily mart), from the event mart, and from
# the raw events themselves: raw.usage_events deduplicated by the staging view, where events and
# tokens need no prices. None where the raw events cannot give the same result (costs need prices).
DASHBOARD_QUERIES: dict[str, tuple[str, str, str | None]] = {
    "cost per day by provider": (
        """select usage_date, provider, round(sum(known_cost_usd), 9) as cost_usd
           from marts.fct_usage_daily group by 1, 2 order by 1, 2""",
        """select usage_date, provider, round(sum(coalesce(cost_usd, 0)), 9) as cost_usd
           from marts.fct_usage_events group by 1, 2 order by 1, 2""",
        None,
    ),
    "events and tokens by organization": (
        """select organization_id, sum(event_count) as event_count,
                  sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens
           from marts.fct_usage_daily group by 1 order by 1 nulls first""",
        """select organization_id, count(*) as event_count,
                  sum(coalesce(input_tokens, 0)) as input_tokens,
                  sum(coalesce(output_tokens, 0)) as output_tokens
           from marts.fct_usage_events group by 1 order by 1 nulls first""",
        """select organization_id, count(*) as event_count,
                  sum(coalesce(input_tokens, 0)) as input_tokens,
                  sum(coalesce(output_tokens, 0)) as output_tokens
           from staging.stg_usage__events group by 1 order by 1 nulls first""",
    ),
}


STEPS = ("ingest", "memory", "builds", "queries")


class BenchmarkError(RuntimeError):
    """A benchmark step failed, or two query results that must be equal differ."""


# ---------------------------------------------------------------------------------------------
# Sample files


def generate_sample(path: Path, events: int, days: int, seed: int, end_day: str) -> None:
    run_cli(["sample", "--events", str(events), "--days", str(days), "--seed", str(seed),
             "--end", end_day, "--out", str(path)])


def with_usage_payload(event: dict[str, Any]) -> dict[str, Any]:
    """Replace canonical token counts with the provider's own usage payload.

    Anthropic gets Anthropic's ``usage``, Google Gemini's ``usageMetadata`` and every other
    provider an OpenAI chat ``usage`` object.
    """
    if "usage" in event or not any(field in event for field in TOKEN_FIELDS):
        return event
    values = [event.get(field) or 0 for field in TOKEN_FIELDS]
    if not all(isinstance(value, int) for value in values):
        return event  # a malformed count stays, so ingest quarantines it as before
    tokens = Tokens(*values)
    provider = str(event.get("provider", "")).lower()
    if provider == "anthropic":
        usage = anthropic_usage(tokens)
    elif provider in ("google", "gemini", "vertex"):
        usage = gemini_usage_metadata(tokens)
    else:
        usage = openai_chat_usage(tokens)
    rewritten = {key: value for key, value in event.items() if key not in TOKEN_FIELDS}
    rewritten["usage"] = usage
    return rewritten


def count_lines(path: Path) -> int:
    with gzip.open(path, "rb") as lines:
        return sum(1 for _ in lines)


def write_copy_csv(source: Path, target: Path) -> int:
    """Write the JSON objects of ``source`` with an event id and a valid created_at as CSV rows for COPY."""
    rows = 0
    with gzip.open(source, "rt", encoding="utf-8") as lines, target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict) or not event.get("event_id") or not _is_timestamp(event.get("created_at")):
                continue
            writer.writerow([_csv_value(event.get(column)) for column in COPY_COLUMNS])
            rows += 1
    return rows


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""  # COPY's CSV format reads an unquoted empty field as NULL
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------
# Commands and timing


def run_cli(arguments: list[str], env: dict[str, str] | None = None) -> float:
    """Run the usage-warehouse CLI and return its wall-clock seconds."""
    started = time.perf_counter()
    completed = subprocess.run([CLI, *arguments], cwd=PROJECT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise BenchmarkError(f"usage-warehouse {' '.join(arguments)} failed with exit code "
                             f"{completed.returncode}:\n{completed.stderr[-3000:]}")
    return seconds


def run_cli_max_rss(arguments: list[str]) -> tuple[float, int]:
    """Run the CLI in a fresh wrapper process and return its seconds and peak RSS in KiB.

    ``RUSAGE_CHILDREN`` keeps the maximum over every child ever waited for, so a wrapper with
    a single child gives the peak of this one run.
    """
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "started = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "seconds = time.perf_counter() - started\n"
        "print(code, seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    completed = subprocess.run([sys.executable, "-c", wrapper, CLI, *arguments], cwd=PROJECT,
                               capture_output=True, text=True, check=True)
    code, seconds, max_rss_kib = completed.stdout.split()[-3:]
    if code != "0":
        raise BenchmarkError(f"usage-warehouse {' '.join(arguments)} failed with exit code {code}:\n{completed.stderr[-3000:]}")
    return float(seconds), int(max_rss_kib)


def best_seconds(action: Callable[[], Any], repeats: int = QUERY_REPEATS) -> tuple[float, Any]:
    """Run ``action`` ``repeats`` times and return the fastest seconds and the last result."""
    fastest = float("inf")
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, result


def postgres_env(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PGHOST", "127.0.0.1")
    env.setdefault("PGPORT", "5432")
    env.setdefault("PGUSER", "postgres")
    env["PGDATABASE"] = database
    env.pop("USAGE_WAREHOUSE_PG_DSN", None)
    return env


def connect_postgres(database: str) -> Any:
    env = postgres_env(database)
    connection = psycopg2.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"], dbname=database)
    connection.autocommit = True
    return connection


def create_database(name: str) -> None:
    admin = connect_postgres("postgres")
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'drop database if exists "{name}" with (force)')
            cursor.execute(f'create database "{name}"')
    finally:
        admin.close()


def drop_database(name: str) -> None:
    admin = connect_postgres("postgres")
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'drop database if exists "{name}" with (force)')
    finally:
        admin.close()


def count_duckdb_events(database: Path) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        return int(connection.execute("select count(*) from raw.usage_events").fetchone()[0])


# ---------------------------------------------------------------------------------------------
# Measurements


def measure_duckdb_ingest(sample: Path, lines: int, scratch: Path, label: str) -> dict[str, Any]:
    """Time the CLI's ingest and DuckDB's own read_json of the same file, each into a new file."""
    slug = label.replace(" ", "_")
    warehouse = scratch / f"ingest_{slug}.duckdb"
    ingest_seconds = run_cli(["--duckdb", str(warehouse), "ingest", str(sample)])
    landed = count_duckdb_events(warehouse)

    bulk = scratch / f"bulk_{slug}.duckdb"
    started = time.perf_counter()
    with duckdb.connect(str(bulk)) as connection:
        connection.execute(
            "create table t as select * from read_json(?, format='newline_delimited', ignore_errors=true)",
            [str(sample)],
        )
        bulk_rows = int(connection.execute("select count(*) from t").fetchone()[0])
    bulk_seconds = time.perf_counter() - started
    return {
        "label": label, "lines": lines, "landed": landed, "bulk_rows": bulk_rows,
        "ingest_seconds": ingest_seconds, "bulk_seconds": bulk_seconds,
    }


def measure_postgres_ingest(sample: Path, lines: int, scratch: Path) -> dict[str, Any]:
    """Time the CLI's ingest into a fresh database and COPY of the same events into a plain table."""
    ingest_database = "uw_bench_ingest"
    copy_database = "uw_bench_copy"
    create_database(ingest_database)
    create_database(copy_database)
    try:
        ingest_seconds = run_cli(["--target", "postgres", "ingest", str(sample)], env=postgres_env(ingest_database))
        with connect_postgres(ingest_database) as connection, connection.cursor() as cursor:
            cursor.execute("select count(*) from raw.usage_events")
            landed = int(cursor.fetchone()[0])
        connection.close()

        csv_path = scratch / "copy.csv"
        csv_rows = write_copy_csv(sample, csv_path)
        connection = connect_postgres(copy_database)
        try:
            with connection.cursor() as cursor, csv_path.open(encoding="utf-8") as rows:
                cursor.execute(COPY_TABLE_DDL)
                started = time.perf_counter()
                cursor.copy_expert(f"copy copied_events ({', '.join(COPY_COLUMNS)}) from stdin with (format csv)", rows)
                copy_seconds = time.perf_counter() - started
        finally:
            connection.close()
    finally:
        drop_database(ingest_database)
        drop_database(copy_database)
    return {
        "lines": lines, "landed": landed, "copy_rows": csv_rows,
        "ingest_seconds": ingest_seconds, "copy_seconds": copy_seconds,
    }


def measure_memory(small: Path, large: Path, scratch: Path) -> list[dict[str, Any]]:
    """Peak RSS of DuckDB ingest for a file and one ten times larger, each into a new warehouse."""
    results = []
    for sample in (small, large):
        warehouse = scratch / sample.name.replace(".jsonl.gz", ".duckdb")
        seconds, max_rss_kib = run_cli_max_rss(["--duckdb", str(warehouse), "ingest", str(sample)])
        results.append({"lines": count_lines(sample), "seconds": seconds, "max_rss_mib": max_rss_kib / 1024})
    return results


# An incremental build re-reads every event loaded within the lookback window before the newest
# loaded_at in the marts (USAGE_WAREHOUSE_LOOKBACK_DAYS, default 3 days). A history landed in
# one batch lies wholly inside that window, so the history is backdated as if each event had
# landed an hour after it was created.
BACKDATE_LOADED_AT_SQL = "update raw.usage_events set loaded_at = created_at + interval '1 hour'"


def lookback_days() -> str:
    """Return the lookback of incremental builds in days, as dbt_project.yml reads it."""
    return os.environ.get("USAGE_WAREHOUSE_LOOKBACK_DAYS", "3")


def backdate_duckdb_history(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(BACKDATE_LOADED_AT_SQL)


def backdate_postgres_history(database: str) -> None:
    connection = connect_postgres(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(BACKDATE_LOADED_AT_SQL)
    finally:
        connection.close()


def measure_builds(warehouse_args: list[str], new_events: Path, env: dict[str, str] | None) -> dict[str, float]:
    """Time a full-refresh build, then land ``new_events`` and time an incremental build."""
    full_seconds = run_cli([*warehouse_args, "build", "--full-refresh"], env=env)
    run_cli([*warehouse_args, "ingest", str(new_events)], env=env)
    incremental_seconds = run_cli([*warehouse_args, "build"], env=env)
    return {"full_seconds": full_seconds, "incremental_seconds": incremental_seconds}


def measure_spark_builds(history: Path, new_events: Path, spark_dir: Path) -> dict[str, float]:
    """Time the builds on a local Spark catalog in SPARK_DIR, as `measure_builds` does elsewhere.

    The history lands in the spark target's landing file through the duckdb target and is
    backdated there. The full refresh's first step then publishes all of it to Spark, so the full
    refresh figure includes that publication: a Java VM start and a copy of every day.
    """
    landing = spark_dir / "landing.duckdb"
    run_cli(["--duckdb", str(landing), "ingest", str(history)])
    backdate_duckdb_history(landing)
    env = {**os.environ, "USAGE_WAREHOUSE_SPARK_DIR": str(spark_dir), "USAGE_WAREHOUSE_SPARK_MASTER": SPARK_MASTER}
    return measure_builds(["--target", "spark"], new_events, env)


def measure_queries(warehouse: Path) -> list[dict[str, Any]]:
    """Time each dashboard query on the daily mart, the event mart and the raw events, and compare the results."""
    results = []
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        for name, (from_daily, from_events, from_raw) in DASHBOARD_QUERIES.items():
            daily_seconds, daily_rows = best_seconds(lambda sql=from_daily: connection.execute(sql).fetchall())
            events_seconds, events_rows = best_seconds(lambda sql=from_events: connection.execute(sql).fetchall())
            if _normalize(daily_rows) != _normalize(events_rows):
                raise BenchmarkError(f"{name}: the daily mart and the event mart return different results")
            raw_seconds = None
            if from_raw is not None:
                raw_seconds, raw_rows = best_seconds(lambda sql=from_raw: connection.execute(sql).fetchall())
                if _normalize(daily_rows) != _normalize(raw_rows):
                    raise BenchmarkError(f"{name}: the daily mart and the raw events return different results")
            results.append({"name": name, "rows": len(daily_rows), "daily_seconds": daily_seconds,
                            "events_seconds": events_seconds, "raw_seconds": raw_seconds})
    return results


def _normalize(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(Decimal(str(value)) if isinstance(value, (float, Decimal)) else value for value in row) for row in rows]


# ---------------------------------------------------------------------------------------------
# Machine and versions


def machine_facts() -> dict[str, str]:
    load = os.getloadavg()
    memory_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    with connect_postgres("postgres") as connection, connection.cursor() as cursor:
        cursor.execute("show server_version")
        postgres_version = cursor.fetchone()[0]
    connection.close()
    dbt = subprocess.run([str(PROJECT / ".venv" / "bin" / "dbt"), "--version"], capture_output=True, text=True)
    # `dbt --version` lists "- installed: X" for dbt-core and "- <adapter>: X - ..." per adapter.
    dbt_versions = []
    for match in re.finditer(r"^\s*-\s*(\w+):\s*([0-9][0-9.]*)", dbt.stdout, re.MULTILINE):
        name, version = match.groups()
        if name != "latest":
            dbt_versions.append(f"{'dbt-core' if name == 'installed' else 'dbt-' + name} {version}")
    return {
        "cpus": str(os.cpu_count()),
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "postgres": postgres_version,
        "dbt": ", ".join(dbt_versions) or dbt.stdout.strip(),
    }


# ---------------------------------------------------------------------------------------------
# Report


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}"


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def render(args: argparse.Namespace, facts: dict[str, str], figures: dict[str, Any], started_at: str) -> str:
    """Format one run's figures as a Markdown section of results.md."""
    lines = [
        f"## {started_at} UTC: {args.events:,} events",
        "",
        f"Machine: {facts['cpus']} CPUs, {facts['memory']} memory, load average at start "
        f"{facts['load']} (1, 5, 15 min), shared with other work. Python {facts['python']}, "
        f"duckdb {facts['duckdb']}, PostgreSQL {facts['postgres']}, {facts['dbt']}.",
        f"Command: `{' '.join(['bench/run.py', *sys.argv[1:]])}`. Sample: `usage-warehouse sample "
        f"--events {args.events} --days {args.days} --end {END_DAY}`.",
    ]
    if "history_ingest_seconds" in figures:
        lines += ["", f"Steps: {', '.join(args.steps)}. Landing the token-fields file in DuckDB took "
                      f"{figures['history_ingest_seconds']:.1f} s ({rate(args.events, figures['history_ingest_seconds'])} "
                      "rows/s)."]
    if "duckdb_ingest" in figures:
        lines += render_ingest(figures["duckdb_ingest"], figures["postgres_ingest"])
    if "memory" in figures:
        lines += render_memory(figures["memory"])
    if "builds" in figures:
        lines += render_builds(figures["builds"], figures["new_events"])
    if "queries" in figures:
        lines += render_queries(figures["queries"])
    return "\n".join(lines) + "\n"


def render_ingest(duckdb_results: list[dict[str, Any]], postgres: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "### Ingest vs the engine's bulk load",
        "",
        "Rows per second count every line of the file (duplicate and malformed lines included) "
        "over wall-clock seconds. Ingest time is the whole CLI process, start-up included.",
        "",
        "| Warehouse, events | Lines | Ingest s | Ingest rows/s | Bulk load s | Bulk rows/s | Ingest / bulk | Goal ≥ 0.5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in duckdb_results:
        ratio = result["bulk_seconds"] / result["ingest_seconds"]
        lines.append(
            f"| DuckDB, {result['label']} | {result['lines']:,} | {result['ingest_seconds']:.1f} | "
            f"{rate(result['lines'], result['ingest_seconds'])} | {result['bulk_seconds']:.2f} (read_json) | "
            f"{rate(result['lines'], result['bulk_seconds'])} | {ratio:.3f} | {verdict(ratio >= MIN_INGEST_TO_BULK_RATIO)} |"
        )

    ratio = postgres["copy_seconds"] / postgres["ingest_seconds"]
    lines.append(
        f"| PostgreSQL, token fields | {postgres['lines']:,} | {postgres['ingest_seconds']:.1f} | "
        f"{rate(postgres['lines'], postgres['ingest_seconds'])} | {postgres['copy_seconds']:.2f} (COPY) | "
        f"{rate(postgres['lines'], postgres['copy_seconds'])} | {ratio:.3f} | {verdict(ratio >= MIN_INGEST_TO_BULK_RATIO)} |"
    )
    duckdb_landed = ", ".join(f"DuckDB {result['label']} {result['landed']:,}" for result in duckdb_results)
    bulk_loaded = ", ".join(f"{result['label']} {result['bulk_rows']:,}" for result in duckdb_results)
    lines += [
        "",
        f"Rows landed by ingest (duplicates and quarantined rows left out): {duckdb_landed}, "
        f"PostgreSQL {postgres['landed']:,}. Rows loaded by read_json: {bulk_loaded}. "
        f"Rows loaded by COPY: {postgres['copy_rows']:,} (JSON objects with an event id and a valid timestamp).",
    ]
    return lines


def render_memory(memory: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "### Ingest peak memory (DuckDB)",
        "",
        "| Lines | Seconds | Max RSS MiB |",
        "|---|---|---|",
    ]
    for result in memory:
        lines.append(f"| {result['lines']:,} | {result['seconds']:.1f} | {result['max_rss_mib']:.0f} |")

    growth = memory[1]["max_rss_mib"] / memory[0]["max_rss_mib"]
    lines += [
        "",
        f"Peak memory grows {growth:.2f} times for ten times the lines. Goal, flat as the file grows "
        f"(taken here as under {MAX_MEMORY_GROWTH} times): {verdict(growth < MAX_MEMORY_GROWTH)}.",
    ]
    return lines


def render_builds(builds: dict[str, dict[str, float]], new_events: int) -> list[str]:
    lines = [
        "",
        "### Full refresh vs incremental build",
        "",
        f"Incremental: after landing {new_events:,} new events (1%, another seed, the day after). "
        "Before the full refresh, the history's loaded_at was set to created_at + 1 hour, as if it had "
        f"landed as it happened, so the {lookback_days()}-day lookback re-reads the last days only.",
        "",
        "| Warehouse | Full refresh s | Incremental s | Incremental / full | Goal ≤ 0.15 |",
        "|---|---|---|---|---|",
    ]
    for warehouse, seconds in builds.items():
        ratio = seconds["incremental_seconds"] / seconds["full_seconds"]
        lines.append(f"| {warehouse} | {seconds['full_seconds']:.1f} | {seconds['incremental_seconds']:.1f} | "
                     f"{ratio:.2f} | {verdict(ratio <= MAX_INCREMENTAL_TO_FULL_RATIO)} |")
    return lines


def render_queries(queries: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "### Dashboard queries: marts vs events (DuckDB)",
        "",
        f"Fastest of {QUERY_REPEATS} runs each; every column of a row returns the same result (the script "
        "checks them). Raw events are raw.usage_events deduplicated by the staging view. Costs need prices, "
        "so the cost query reads the marts only.",
        "",
        "| Query | Rows | From fct_usage_daily ms | From fct_usage_events ms | From raw events ms |",
        "|---|---|---|---|---|",
    ]
    for result in queries:
        raw = "n/a" if result["raw_seconds"] is None else f"{result['raw_seconds'] * 1000:.1f}"
        lines.append(f"| {result['name']} | {result['rows']:,} | {result['daily_seconds'] * 1000:.1f} | "
                     f"{result['events_seconds'] * 1000:.1f} | {raw} |")
    return lines


def prepend_results(section: str) -> None:
    header = "# Benchmark results\n\nNewest run first. Written by `make bench` (bench/run.py); see bench/README.md.\n"
    previous = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else header
    body = previous[len(header):] if previous.startswith(header) else previous
    RESULTS.write_text(f"{header}\n{section}{body}", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="Lines of the main sample file (default: 1,000,000).")
    parser.add_argument("--large", action="store_true", help="Use 10,000,000 events (overrides --events).")
    parser.add_argument("--days", type=int, default=90, help="Days the sample spans, ending on %s (default: 90)." % END_DAY)
    parser.add_argument("--memory-events", type=int, default=None,
                        help="Lines of the smaller file of the memory pair; the larger has ten times as many "
                             "(default: a tenth of --events).")
    parser.add_argument("--skip-postgres-build", action="store_true",
                        help="Measure the full and incremental build on DuckDB only.")
    parser.add_argument("--spark-build", action="store_true",
                        help=f"Also measure the builds on a local Spark ({SPARK_MASTER}); slow, so off by default.")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="Comma-separated steps to run, of %s (default: all). Without ingest, the "
                             "token-fields file is still landed in DuckDB for the other steps." % ", ".join(STEPS))
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder and print its path.")
    args = parser.parse_args(argv)
    if args.large:
        args.events = 10_000_000
    if args.memory_events is None:
        args.memory_events = max(args.events // 10, 1)
    args.steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = sorted(set(args.steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step {', '.join(unknown)}; use {', '.join(STEPS)}")
    if "queries" in args.steps and "builds" not in args.steps:
        parser.error("the queries step reads the marts that the builds step builds; add builds")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    facts = machine_facts()
    scratch = Path(tempfile.mkdtemp(prefix="uw_bench_"))
    figures: dict[str, Any] = {}
    try:
        print(f"scratch folder {scratch}; load average {facts['load']}", flush=True)
        sample = scratch / "sample.jsonl.gz"
        generate_sample(sample, args.events, args.days, seed=7, end_day=END_DAY)
        tokens_file = scratch / "tokens.jsonl.gz"
        rewrite_events(sample, tokens_file, with_token_fields)
        lines = count_lines(sample)
        duckdb_warehouse = scratch / "ingest_token_fields.duckdb"

        if "ingest" in args.steps:
            usage_file = scratch / "usage.jsonl.gz"
            rewrite_events(sample, usage_file, with_usage_payload)
            print("DuckDB ingest vs read_json", flush=True)
            figures["duckdb_ingest"] = [
                measure_duckdb_ingest(tokens_file, lines, scratch, "token fields"),
                measure_duckdb_ingest(usage_file, lines, scratch, "usage payloads"),
            ]
            print("PostgreSQL ingest vs COPY", flush=True)
            figures["postgres_ingest"] = measure_postgres_ingest(tokens_file, lines, scratch)
        elif "builds" in args.steps or "queries" in args.steps:
            print("landing the token-fields file in DuckDB", flush=True)
            figures["history_ingest_seconds"] = run_cli(["--duckdb", str(duckdb_warehouse), "ingest", str(tokens_file)])

        if "memory" in args.steps:
            print("ingest peak memory", flush=True)
            small = scratch / "memory_small.jsonl.gz"
            large = scratch / "memory_large.jsonl.gz"
            generate_sample(small, args.memory_events, args.days, seed=11, end_day=END_DAY)
            generate_sample(large, args.memory_events * 10, args.days, seed=11, end_day=END_DAY)
            figures["memory"] = measure_memory(small, large, scratch)

        if "builds" in args.steps:
            print("full refresh vs incremental build", flush=True)
            new_events = scratch / "new_events.jsonl.gz"
            figures["new_events"] = max(args.events // 100, 1)
            generate_sample(new_events, figures["new_events"], 1, seed=8, end_day=NEW_EVENTS_END_DAY)
            backdate_duckdb_history(duckdb_warehouse)
            figures["builds"] = {"DuckDB": measure_builds(["--duckdb", str(duckdb_warehouse)], new_events, None)}
            if not args.skip_postgres_build:
                database = "uw_bench_build"
                create_database(database)
                try:
                    env = postgres_env(database)
                    run_cli(["--target", "postgres", "ingest", str(tokens_file)], env=env)
                    backdate_postgres_history(database)
                    figures["builds"]["PostgreSQL"] = measure_builds(["--target", "postgres"], new_events, env)
                finally:
                    drop_database(database)
            if args.spark_build:
                figures["builds"][f"Spark ({SPARK_MASTER})"] = measure_spark_builds(
                    tokens_file, new_events, scratch / "spark"
                )

        if "queries" in args.steps:
            print("dashboard queries", flush=True)
            figures["queries"] = measure_queries(duckdb_warehouse)

        section = render(args, facts, figures, started_at)
        prepend_results(section)
        print(section)
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
