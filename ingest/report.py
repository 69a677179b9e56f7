"""Build and serve the usage dashboard, the Evidence project in reports/.

A build lays out a fresh copy of the project's pages and source queries in a work folder under
reports/build/.work/, with node_modules linked rather than copied. It points Evidence's `usage`
source at the warehouse and runs `npm run sources`, which writes each source query's rows to a
Parquet file, and `npm run build:strict`, which renders the static site. Then it moves the site
to the output folder. Because every build starts from an empty work folder, no data file of an
earlier build can reach its site, and full and organization builds have separate output folders.

An organization build passes the quoted organization id to every source query, so its data
files contain that organization's rows only: no other organization's and no unattributed ones.
It also leaves out the operator-only page and query about ingest and quarantine, whose rows
belong to no organization.

Evidence 39 needs no network for `sources` and `build`, because it reads only the warehouse and
node_modules. Its anonymous usage statistics are off through reports/evidence.settings.json, the
one switch that version reads (it ignores the environment variable).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from ingest.config import PROJECT_DIR

# Evidence's connectors: the dashboard does not read the spark target.
REPORT_TARGETS = ("duckdb", "postgres")
logger = logging.getLogger(__name__)

REPORTS_DIR = PROJECT_DIR / "reports"
# The Evidence source that every page reads: `from usage.daily` and so on.
SOURCE_NAME = "usage"
# Files and folders of reports/ that a build copies into its work folder.
PROJECT_ENTRIES = (
    "pages", "sources", "evidence.plugins.yaml", "evidence.settings.json", "package.json", "package-lock.json",
)
# Operator-only parts, left out of organization builds: quarantined rows have no organization.
OPERATOR_ONLY_ENTRIES = ("pages/data-quality/ingest.md", f"sources/{SOURCE_NAME}/ingest_quarantine.sql")
# Evidence 39.1.13 and its DuckDB connector were tested with Node.js 20.
MINIMUM_NODE_MAJOR = 20
INSTALL_STAMP = ".usage-warehouse-install"
# File in every built site, which marks the folder as one that a later build may replace.
SITE_MARKER = ".usage-warehouse-report"
# Evidence 39 can finish a failed source query and then never exit, so each npm step has a limit.
NPM_TIMEOUT_SECONDS = 1800
DEFAULT_SERVE_PORT = 3000
# Lines of a failed npm step's log that an error message repeats: error lines, then the last lines.
LOG_ERROR_LINES = 10
LOG_TAIL_LINES = 15
POSTGRES_CONNECTION = f"""\
# Written by ingest/report.py for a build on the postgres target. node-postgres takes the host,
# port, user, password and database from the PG* environment variables.
name: {SOURCE_NAME}
type: postgres
options: {{}}
"""


class ReportError(RuntimeError):
    """The dashboard cannot be built or served: invalid input, a failed npm step, a missing file."""


class NodeNotFoundError(ReportError):
    """Node.js or npm is missing or too old to run Evidence."""


def organization_literal(organization_id: str | None) -> str:
    """Return the SQL literal that the source queries compare organization_id with.

    `null` keeps every row (a full build). An organization id becomes a standard SQL string
    literal with its single quotes doubled, which DuckDB and PostgreSQL read alike. Evidence
    pastes the literal into the query text, so ids that quoting alone cannot carry are rejected:
    control characters, "$" (Evidence's variable substitution rewrites "$${") and "\\" (an escape
    character on a PostgreSQL server with standard_conforming_strings off).
    """
    if organization_id is None:
        return "null"
    if not organization_id.strip():
        raise ReportError(
            f"organization id {organization_id!r} is blank; pass an id from the organization_id column of the marts"
        )
    rejected = sorted({character for character in organization_id if character in "$\\" or not character.isprintable()})
    if rejected:
        raise ReportError(
            f"organization id {organization_id!r} contains {', '.join(repr(character) for character in rejected)}, "
            "which an organization build cannot pass to Evidence's source queries safely"
        )
    return "'" + organization_id.replace("'", "''") + "'"


def default_output_dir(organization_id: str | None, reports_dir: Path = REPORTS_DIR) -> Path:
    """Return reports/build/site for a full build and reports/build/organizations/<org> otherwise."""
    if organization_id is None:
        return reports_dir / "build" / "site"
    return reports_dir / "build" / "organizations" / _folder_name(organization_id)


def check_node() -> str:
    """Return the version of the Node.js on PATH; raise `NodeNotFoundError` if it or npm is missing or old."""
    missing = [name for name in ("node", "npm") if shutil.which(name) is None]
    if missing:
        raise NodeNotFoundError(
            f"{' and '.join(missing)} not found on PATH. The dashboard is an Evidence project, which needs "
            f"Node.js {MINIMUM_NODE_MAJOR} or later with npm: install both (on Debian or Ubuntu, the nodejs and "
            f"npm packages of a release that ships Node.js {MINIMUM_NODE_MAJOR}) and run the command again"
        )
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    match = re.fullmatch(r"v(\d+)\.\d+\.\d+.*", version)
    if match is None or int(match.group(1)) < MINIMUM_NODE_MAJOR:
        raise NodeNotFoundError(
            f"Node.js {version or '(unknown version)'} is too old for the dashboard's Evidence project; "
            f"install Node.js {MINIMUM_NODE_MAJOR} or later with npm"
        )
    return version


def ensure_node_modules(reports_dir: Path = REPORTS_DIR) -> bool:
    """Run `npm ci` in REPORTS_DIR unless node_modules matches package-lock.json; return whether it ran.

    A stamp file in node_modules records the hash of the lock file and the Node.js version it was
    installed with, so a change of either reinstalls the packages, native binaries such as
    DuckDB's included.
    """
    node_version = check_node()
    lock_file = reports_dir / "package-lock.json"
    if not lock_file.exists():
        raise ReportError(f"{lock_file} not found; the dashboard's npm packages are installed from it")
    expected = f"{hashlib.sha256(lock_file.read_bytes()).hexdigest()} {node_version}\n"
    stamp = reports_dir / "node_modules" / INSTALL_STAMP
    if stamp.exists() and stamp.read_text() == expected:
        return False
    logger.info("installing the dashboard's npm packages with npm ci in %s", reports_dir)
    started = time.monotonic()
    _run_npm(["ci", "--no-audit", "--no-fund"], reports_dir, dict(os.environ), reports_dir / "build" / "npm-ci.log")
    stamp.parent.mkdir(exist_ok=True)  # npm ci creates no node_modules for a project without packages
    stamp.write_text(expected)
    logger.info("npm ci finished in %.0f s", time.monotonic() - started)
    return True


def build_report(
    duckdb_path: Path | None,
    organization_id: str | None = None,
    output_dir: Path | None = None,
    *,
    target: str = "duckdb",
    connection_environment: Mapping[str, str] | None = None,
    reports_dir: Path = REPORTS_DIR,
) -> Path:
    """Build the dashboard's static site from the warehouse's marts and return its folder.

    DUCKDB_PATH is the warehouse on the duckdb target. On postgres, the PG* variables of
    CONNECTION_ENVIRONMENT (or of this process) reach the database. With ORGANIZATION_ID the site
    contains that organization's rows only. OUTPUT_DIR, replaced as a whole, defaults to
    `default_output_dir`. Raises `ReportError` when a step fails, with the errors of its log.
    """
    output_dir = (output_dir or default_output_dir(organization_id, reports_dir)).resolve()
    started = time.monotonic()
    with _build_lock(reports_dir):
        work_dir = _extract_data(duckdb_path, organization_id, target, connection_environment, reports_dir)
        environment = _evidence_environment(work_dir, target, duckdb_path, organization_id, connection_environment)
        logger.info("building the dashboard's pages")
        # build:strict fails on a query error or on a chart, table or value without data, where
        # build would ship the page with an error message in place of the component.
        _run_npm(["run", "build:strict"], work_dir, environment, work_dir / "build.log")
        _replace_folder(work_dir / "build", output_dir)
        # Evidence's intermediate copy of the site (about 120 MB); the logs stay beside it.
        shutil.rmtree(work_dir / ".evidence")
    logger.info(
        "built the dashboard for %s in %s (%.0f s)", _scope(organization_id), output_dir, time.monotonic() - started
    )
    return output_dir


def extract_report_data(
    duckdb_path: Path | None,
    organization_id: str | None = None,
    *,
    target: str = "duckdb",
    connection_environment: Mapping[str, str] | None = None,
    reports_dir: Path = REPORTS_DIR,
) -> Path:
    """Run the dashboard's source queries alone and return the folder of their Parquet files.

    Takes the arguments of `build_report`. The folder is one Parquet file per query,
    `<folder>/<query>/<query>.parquet`, and stays until the next build or extraction.
    """
    with _build_lock(reports_dir):
        work_dir = _extract_data(duckdb_path, organization_id, target, connection_environment, reports_dir)
    return _data_dir(work_dir)


def _extract_data(
    duckdb_path: Path | None,
    organization_id: str | None,
    target: str,
    connection_environment: Mapping[str, str] | None,
    reports_dir: Path,
) -> Path:
    """Validate the inputs, lay out a fresh work folder and run the source queries in it; return the folder."""
    if target not in REPORT_TARGETS:
        raise ReportError(
            f"the dashboard reads the duckdb or postgres target, not {target!r}; on a Spark cluster, point a BI "
            "tool at the marts, or copy an organization's rows out with `usage-warehouse export --org ORG`"
        )
    organization_literal(organization_id)  # reject an unusable id before anything runs
    if target == "duckdb" and (duckdb_path is None or not duckdb_path.is_file()):
        raise ReportError(
            f"DuckDB warehouse {duckdb_path} not found; build it first with `usage-warehouse run` "
            "or `usage-warehouse build`, or pass --duckdb with the warehouse file"
        )
    ensure_node_modules(reports_dir)
    work_dir = reports_dir / "build" / ".work" / ("site" if organization_id is None else "organization")
    _stage_project(reports_dir, work_dir, organization_id is not None, target)
    environment = _evidence_environment(work_dir, target, duckdb_path, organization_id, connection_environment)
    logger.info("running the dashboard's source queries for %s", _scope(organization_id))
    _run_npm(["run", "sources"], work_dir, environment, work_dir / "sources.log")
    _check_source_outputs(work_dir, organization_id)
    return work_dir


def make_server(build_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_SERVE_PORT) -> http.server.ThreadingHTTPServer:
    """Return an HTTP server bound to HOST:PORT that serves the built site in BUILD_DIR; port 0 picks a free one."""
    if not (build_dir / "index.html").is_file():
        raise ReportError(f"{build_dir} contains no built dashboard (index.html not found); run `usage-warehouse report build` first, with the same --org or --out")
    handler = functools.partial(_SiteRequestHandler, directory=str(build_dir))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        raise ReportError(f"listening on {host}:{port} failed: {error}; pass another --port") from None


def serve_report(build_dir: Path, host: str = "127.0.0.1", port: int = DEFAULT_SERVE_PORT) -> None:
    """Serve the built site in BUILD_DIR on HOST:PORT until interrupted (Ctrl-C)."""
    server = make_server(build_dir, host, port)
    bound_host, bound_port = server.server_address[:2]
    logger.info("serving the dashboard in %s at http://%s:%s/ (Ctrl-C stops)", build_dir, bound_host, bound_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopped serving the dashboard")
    finally:
        server.server_close()


@contextlib.contextmanager
def serving(build_dir: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve BUILD_DIR on a free port in a background thread and yield its base URL."""
    server = make_server(build_dir, host, 0)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-server", daemon=True)
    thread.start()
    try:
        bound_host, bound_port = server.server_address[:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _SiteRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serve the static site with the content types Evidence's files need, logging at debug level."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
        ".wasm": "application/wasm",
        ".arrow": "application/vnd.apache.arrow.file",
        ".parquet": "application/vnd.apache.parquet",
    }

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class names it format
        logger.debug("%s %s", self.address_string(), format % args)


def _folder_name(organization_id: str) -> str:
    if organization_id in (".", "..") or any(character in organization_id for character in ("/", "\\", "\0")):
        raise ReportError(
            f"organization id {organization_id!r} cannot be a folder name; pass --out FOLDER to choose the folder"
        )
    return organization_id


def _stage_project(reports_dir: Path, work_dir: Path, organization_build: bool, target: str) -> None:
    """Lay out a fresh copy of the Evidence project in WORK_DIR that links reports/node_modules."""
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    for entry in PROJECT_ENTRIES:
        source = reports_dir / entry
        if source.is_dir():
            shutil.copytree(source, work_dir / entry)
        else:
            shutil.copy2(source, work_dir / entry)
    (work_dir / "node_modules").symlink_to(reports_dir / "node_modules", target_is_directory=True)
    if organization_build:
        for entry in OPERATOR_ONLY_ENTRIES:
            (work_dir / entry).unlink()
    if target == "postgres":
        (work_dir / "sources" / SOURCE_NAME / "connection.yaml").write_text(POSTGRES_CONNECTION)


def _evidence_environment(
    work_dir: Path,
    target: str,
    duckdb_path: Path | None,
    organization_id: str | None,
    connection_environment: Mapping[str, str] | None,
) -> dict[str, str]:
    """Return the environment of the npm steps: this process's, less any EVIDENCE_ or VITE_ setting."""
    # An inherited EVIDENCE_DATA_DIR or EVIDENCE_SOURCE__ variable would redirect the build.
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("EVIDENCE_", "VITE_"))}
    environment.update(connection_environment or {})
    # node-postgres reads DATE columns as local midnight: UTC keeps the days the warehouse has.
    environment["TZ"] = "UTC"
    environment["EVIDENCE_VAR__organization_id_literal"] = organization_literal(organization_id)
    if target == "duckdb" and duckdb_path is not None:
        # The DuckDB connector joins the filename to the source's folder, even an absolute one.
        source_dir = work_dir / "sources" / SOURCE_NAME
        environment[f"EVIDENCE_SOURCE__{SOURCE_NAME}__filename"] = os.path.relpath(duckdb_path.resolve(), source_dir)
    return environment


def _check_source_outputs(work_dir: Path, organization_id: str | None) -> None:
    """Raise `ReportError` naming every source query that wrote no Parquet file.

    `evidence sources` exits 0 when a query fails and writes no file for a query without rows,
    and `evidence build` then fails on the missing file, so both are caught here.
    """
    data_dir = _data_dir(work_dir)
    queries = sorted(path.stem for path in (work_dir / "sources" / SOURCE_NAME).glob("*.sql"))
    missing = [name for name in queries if not (data_dir / name / f"{name}.parquet").is_file()]
    if not missing:
        return
    hint = "; if the log names a missing relation of the marts, run `usage-warehouse build` first"
    if organization_id is not None:
        hint += (
            f", and if organization {organization_id!r} has no usage events, list the organizations with "
            '`usage-warehouse query "select organization_id, count(*) from marts.fct_usage_events group by 1"`'
        )
    raise ReportError(
        f"source queries {', '.join(f'{SOURCE_NAME}.{name}' for name in missing)} failed or returned no rows{hint}."
        f" From {work_dir / 'sources.log'}:\n{_log_excerpt(work_dir / 'sources.log')}"
    )


def _data_dir(work_dir: Path) -> Path:
    return work_dir / ".evidence" / "template" / "static" / "data" / SOURCE_NAME


def _scope(organization_id: str | None) -> str:
    return "every organization" if organization_id is None else f"organization {organization_id!r}"


def _run_npm(arguments: list[str], cwd: Path, environment: dict[str, str], log_path: Path) -> None:
    """Run npm with ARGUMENTS in CWD, its output to LOG_PATH; raise `ReportError` when it fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = ["npm", *arguments]
    started = time.monotonic()
    with log_path.open("w") as log:
        # A session of its own, so a timeout stops npm and every process it started.
        process = subprocess.Popen(
            command, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=NPM_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise ReportError(
                f"`{' '.join(command)}` in {cwd} did not finish within {NPM_TIMEOUT_SECONDS} s and was stopped. "
                f"From {log_path}:\n{_log_excerpt(log_path)}"
            ) from None
    completed = subprocess.CompletedProcess(command, returncode)
    logger.debug("%s exited %s after %.1f s", " ".join(command), completed.returncode, time.monotonic() - started)
    if completed.returncode != 0:
        raise ReportError(
            f"`{' '.join(command)}` in {cwd} failed with exit code {completed.returncode}. "
            f"From {log_path}:\n{_log_excerpt(log_path)}"
        )


def _log_excerpt(log_path: Path) -> str:
    """Return the error lines of an npm step's log (stack frames left out), then its last lines."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    errors = [line for line in lines if "error" in line.lower() and not line.lstrip().startswith("at ")]
    excerpt = list(dict.fromkeys(errors))[:LOG_ERROR_LINES]
    return "\n".join([*excerpt, "...", *lines[-LOG_TAIL_LINES:]] if excerpt else lines[-LOG_TAIL_LINES:])


def _replace_folder(source: Path, destination: Path) -> None:
    """Move SOURCE to DESTINATION, replacing what was there only once the new folder is in place.

    An existing DESTINATION is replaced only when it is empty or an earlier dashboard build
    (it has the marker file, or it lies under reports/build), so `--out .` never deletes a folder.
    """
    if destination.exists() and any(destination.iterdir()):
        earlier_build = (destination / SITE_MARKER).exists() or destination.resolve().is_relative_to(
            (REPORTS_DIR / "build").resolve()
        )
        if not earlier_build:
            raise ReportError(
                f"{destination} is not empty and contains no earlier dashboard build; pass --out a new or empty folder"
            )
    (source / SITE_MARKER).write_text("a usage-warehouse dashboard build; `report build` may replace this folder\n")
    destination.parent.mkdir(parents=True, exist_ok=True)
    incoming = destination.with_name(f".{destination.name}.incoming")
    outgoing = destination.with_name(f".{destination.name}.outgoing")
    for leftover in (incoming, outgoing):
        if leftover.exists():
            shutil.rmtree(leftover)
    shutil.move(str(source), incoming)
    if destination.exists():
        destination.rename(outgoing)
    incoming.rename(destination)
    if outgoing.exists():
        shutil.rmtree(outgoing)


@contextlib.contextmanager
def _build_lock(reports_dir: Path) -> Iterator[None]:
    """Hold the lock that lets one build or extraction run at a time: they share node_modules."""
    path = reports_dir / "build" / ".work" / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another dashboard build to finish (lock %s)", path)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
