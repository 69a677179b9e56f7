"""Tests of the usage dashboard: the organization filter, the build, organization builds and the pages.

The builds and the browser check need Node.js with npm, and Debian's chromium for the pages. They
skip with an install hint when either is missing, except in CI, where they fail. One full build
and one organization build of the sample warehouse are shared by every test that reads a site.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from conftest import PROJECT_DIR, BuiltWarehouse, query
from ingest.report import (
    OPERATOR_ONLY_ENTRIES,
    REPORTS_DIR,
    SOURCE_NAME,
    NodeNotFoundError,
    ReportError,
    build_report,
    check_node,
    default_output_dir,
    ensure_node_modules,
    extract_report_data,
    make_server,
    organization_literal,
    serving,
)

SOURCE_DIR = REPORTS_DIR / "sources" / SOURCE_NAME
CHECK_PAGES_SCRIPT = REPORTS_DIR / "scripts" / "check-pages.mjs"
SCREENSHOT_DIR = PROJECT_DIR / "target" / "report-screenshots"
FILTER_VARIABLE = "${organization_id_literal}"
# Pages of every full build besides one page per organization.
FULL_BUILD_PAGES = {"/", "/agents/", "/models/", "/organizations/", "/data-quality/", "/data-quality/ingest/"}
# Columns whose values identify an organization's people and work. An organization build shows
# no value of another organization in them.
IDENTIFYING_COLUMNS = ("organization_id", "user_id", "run_id", "tool_name", "model_name", "service")
# Source queries whose rows differ between two warehouses of the same events: batch ids and times.
WAREHOUSE_SPECIFIC_QUERIES = ("ingest_quarantine",)


def require_tool(name: str, hint: str) -> str:
    """Return the path of NAME on PATH; skip the test without it, except in CI, where it fails."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found on PATH: {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_chromium() -> str:
    """Return Debian's chromium, installing the package first when it is missing and apt-get may run."""
    if shutil.which("chromium") is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, capture_output=True)
    return require_tool("chromium", "install Debian's chromium package (apt-get install -y chromium)")


def require_node() -> None:
    require_tool("node", "install Node.js 20 or later with npm to build the dashboard")
    require_tool("npm", "install npm (with Node.js 20 or later) to build the dashboard")


# -- the organization filter ------------------------------------------------------------------

LITERAL_CASES = {
    "full build": (None, "null"),
    "plain id": ("org_0f42907a70c3", "'org_0f42907a70c3'"),
    "single quote": ("o'brien", "'o''brien'"),
    "injection attempt": ("x' or '1'='1", "'x'' or ''1''=''1'"),
    "unicode": ("Zürich AG", "'Zürich AG'"),
}

REJECTED_IDS = {
    "empty": "",
    "blank": "   ",
    "dollar": "org$1",
    "evidence variable": "${organization_id_literal}",
    "backslash": "org\\1",
    "newline": "org\n1",
    "nul": "org\x001",
}


@pytest.mark.parametrize("case", LITERAL_CASES.values(), ids=LITERAL_CASES.keys())
def test_organization_literal_quotes_id(case: tuple[str | None, str]) -> None:
    organization_id, expected = case
    assert organization_literal(organization_id) == expected


@pytest.mark.parametrize("organization_id", REJECTED_IDS.values(), ids=REJECTED_IDS.keys())
def test_organization_literal_rejects_unsafe_id(organization_id: str) -> None:
    with pytest.raises(ReportError, match="organization id"):
        organization_literal(organization_id)


def test_every_source_query_filters_organizations() -> None:
    queries = sorted(SOURCE_DIR.glob("*.sql"))
    operator_only = {REPORTS_DIR / entry for entry in OPERATOR_ONLY_ENTRIES}
    unfiltered = [path.name for path in queries if path not in operator_only and FILTER_VARIABLE not in path.read_text()]
    assert queries, f"no source queries in {SOURCE_DIR}"
    assert unfiltered == []


def test_operator_only_entries_exist() -> None:
    missing = [entry for entry in OPERATOR_ONLY_ENTRIES if not (REPORTS_DIR / entry).exists()]
    assert missing == []


def test_telemetry_setting_is_off() -> None:
    settings = json.loads((REPORTS_DIR / "evidence.settings.json").read_text())
    assert settings["send_anonymous_usage_stats"] == "no"


@pytest.fixture(scope="module")
def tricky_warehouse(sample_duckdb: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sample warehouse whose organizations have ids that need quoting."""
    path = tmp_path_factory.mktemp("tricky") / "tricky.duckdb"
    shutil.copy(sample_duckdb.database.duckdb_path, path)
    organizations = [row[0] for row in query(path, _ORGANIZATIONS_SQL)]
    renamed = dict(zip(organizations, ["o'brien", "x' or '1'='1", "Zürich AG"], strict=False))
    connection = duckdb.connect(str(path))
    try:
        for relation in ("fct_usage_events", "fct_usage_daily"):
            for old, new in renamed.items():
                connection.execute(f"update marts.{relation} set organization_id = ? where organization_id = ?", [new, old])
    finally:
        connection.close()
    return path


_ORGANIZATIONS_SQL = """
    select organization_id from marts.fct_usage_events
    where organization_id is not null
    group by organization_id
    order by organization_id
"""


@pytest.mark.parametrize("organization_id", ["o'brien", "x' or '1'='1", "Zürich AG"])
def test_source_queries_keep_one_organization(tricky_warehouse: Path, organization_id: str) -> None:
    # Evidence replaces the variable in the query text, as here, before the query runs.
    literal = organization_literal(organization_id)
    for path in sorted(SOURCE_DIR.glob("*.sql")):
        if FILTER_VARIABLE not in path.read_text() or "organization_id" not in _columns(tricky_warehouse, path, literal):
            continue
        sql = path.read_text().replace(FILTER_VARIABLE, literal)
        organizations = {row[0] for row in query(tricky_warehouse, f"select distinct organization_id from ({sql})")}
        assert organizations == {organization_id}, path.name


def test_source_queries_keep_unattributed_rows_in_full_build(tricky_warehouse: Path) -> None:
    sql = (SOURCE_DIR / "daily.sql").read_text().replace(FILTER_VARIABLE, organization_literal(None))
    organizations = {row[0] for row in query(tricky_warehouse, f"select distinct organization_id from ({sql})")}
    expected = {row[0] for row in query(tricky_warehouse, "select distinct organization_id from marts.fct_usage_daily")}
    assert organizations == expected
    assert None in organizations


def _columns(database: Path, path: Path, literal: str) -> list[str]:
    sql = path.read_text().replace(FILTER_VARIABLE, literal)
    return [row[0] for row in query(database, f"describe ({sql})")]


# -- build settings, Node.js and the server ---------------------------------------------------


def test_default_output_dir_separates_builds() -> None:
    full = default_output_dir(None)
    organization = default_output_dir("org_1")
    assert full == REPORTS_DIR / "build" / "site"
    assert organization == REPORTS_DIR / "build" / "organizations" / "org_1"
    assert not organization.is_relative_to(full)


@pytest.mark.parametrize("organization_id", ["..", "a/b"])
def test_default_output_dir_rejects_path_like_id(organization_id: str) -> None:
    with pytest.raises(ReportError, match="--out"):
        default_output_dir(organization_id)


def test_check_node_names_missing_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NodeNotFoundError) as raised:
        check_node()
    assert "node and npm not found" in str(raised.value)
    assert "Node.js 20" in str(raised.value)


def test_build_rejects_missing_warehouse(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not found"):
        build_report(tmp_path / "missing.duckdb", output_dir=tmp_path / "site")


def test_ensure_node_modules_installs_once_per_lock(tmp_path: Path) -> None:
    require_node()
    (tmp_path / "package.json").write_text(json.dumps({"name": "probe", "version": "1.0.0", "private": True}))
    lock = {"name": "probe", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": "probe", "version": "1.0.0"}}}
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))

    assert ensure_node_modules(tmp_path) is True
    assert ensure_node_modules(tmp_path) is False
    lock["packages"][""]["license"] = "MIT"  # type: ignore[index]
    (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    assert ensure_node_modules(tmp_path) is True


def test_make_server_rejects_folder_without_site(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no built dashboard"):
        make_server(tmp_path)


def test_serving_sends_wasm_content_type(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>probe</title>")
    (tmp_path / "engine.wasm").write_bytes(b"\0asm")
    with serving(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{base_url}/engine.wasm", timeout=10) as response:
            assert response.headers["Content-Type"] == "application/wasm"
        with urllib.request.urlopen(f"{base_url}/", timeout=10) as response:
            assert b"probe" in response.read()


# -- builds of the sample warehouse -----------------------------------------------------------


@dataclass(frozen=True)
class BuiltSite:
    """A built dashboard and the warehouse it was built from."""

    folder: Path
    warehouse: Path
    organization_id: str | None


@pytest.fixture(scope="session")
def full_site(sample_duckdb: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """The dashboard of the sample warehouse with every organization."""
    require_node()
    warehouse = sample_duckdb.database.duckdb_path
    folder = build_report(warehouse, None, tmp_path_factory.mktemp("report") / "site")
    return BuiltSite(folder, warehouse, None)


@pytest.fixture(scope="session")
def organization_site(sample_duckdb: BuiltWarehouse, tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """The dashboard of the sample organization with the fewest events."""
    require_node()
    warehouse = sample_duckdb.database.duckdb_path
    organization_id = str(query(warehouse, """
        select organization_id from marts.fct_usage_events
        where organization_id is not null
        group by organization_id
        order by count(*), organization_id
        limit 1
    """)[0][0])
    folder = build_report(warehouse, organization_id, tmp_path_factory.mktemp("report") / "organization")
    return BuiltSite(folder, warehouse, organization_id)


def _page_paths(site: Path) -> list[str]:
    """Return the URL path of every page of a built site, such as / and /organizations/org_1/."""
    paths = []
    for index in sorted(site.rglob("index.html")):
        relative = index.parent.relative_to(site)
        if relative.parts and relative.parts[0] in ("api", "_app"):
            continue
        paths.append("/" if not relative.parts else f"/{relative.as_posix()}/")
    return paths


def _data_files(site: Path) -> list[Path]:
    return sorted(site.joinpath("data", SOURCE_NAME).rglob("*.parquet"))


def _read_table(path: Path) -> pa.Table:
    """Decode a Parquet file, or an Arrow file or stream as Evidence writes for prerendered queries."""
    if path.suffix == ".parquet":
        return pq.read_table(path)
    data = pa.BufferReader(path.read_bytes())
    try:
        return ipc.open_stream(data).read_all()
    except pa.ArrowInvalid:
        return ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()


def _string_values(table: pa.Table) -> set[str]:
    values: set[str] = set()
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values.update(value for value in column.to_pylist() if value is not None)
    return values


def _known_cost(site: Path) -> float:
    return float(pc.sum(pq.read_table(site / "data" / SOURCE_NAME / "daily" / "daily.parquet")["known_cost_usd"]).as_py())


@pytest.mark.e2e
def test_full_build_has_every_page(full_site: BuiltSite) -> None:
    organizations = [row[0] for row in query(full_site.warehouse, _ORGANIZATIONS_SQL)]
    expected = FULL_BUILD_PAGES | {f"/organizations/{organization}/" for organization in organizations}
    assert set(_page_paths(full_site.folder)) == expected


@pytest.mark.e2e
def test_full_build_has_every_source_query(full_site: BuiltSite) -> None:
    expected = sorted(path.stem for path in SOURCE_DIR.glob("*.sql"))
    assert [path.stem for path in _data_files(full_site.folder)] == expected


@pytest.mark.e2e
def test_full_build_cost_matches_warehouse(full_site: BuiltSite) -> None:
    warehouse_cost = float(query(full_site.warehouse, "select sum(coalesce(cost_usd, 0)) from marts.fct_usage_events")[0][0])
    assert _known_cost(full_site.folder) == pytest.approx(warehouse_cost, abs=1e-6)


@pytest.mark.e2e
def test_organization_build_cost_matches_warehouse(organization_site: BuiltSite) -> None:
    warehouse_cost = float(query(
        organization_site.warehouse,
        "select sum(coalesce(cost_usd, 0)) from marts.fct_usage_events where organization_id = ?",
        [organization_site.organization_id],
    )[0][0])
    assert _known_cost(organization_site.folder) == pytest.approx(warehouse_cost, abs=1e-6)


@pytest.mark.e2e
def test_organization_build_leaves_out_operator_pages(organization_site: BuiltSite) -> None:
    pages = set(_page_paths(organization_site.folder))
    assert "/data-quality/ingest/" not in pages
    assert pages == (FULL_BUILD_PAGES - {"/data-quality/ingest/"}) | {
        f"/organizations/{organization_site.organization_id}/"
    }
    assert not (organization_site.folder / "data" / SOURCE_NAME / "ingest_quarantine").exists()


@pytest.mark.e2e
def test_organization_build_contains_no_other_organization(organization_site: BuiltSite) -> None:
    foreign = _foreign_values(organization_site.warehouse, str(organization_site.organization_id))
    foreign_ids = {value for column in ("organization_id", "user_id", "run_id") for value in foreign[column]}
    assert foreign_ids, "the sample warehouse has no other organization to leak"
    all_foreign = set().union(*foreign.values())

    files = [path for path in organization_site.folder.rglob("*") if path.is_file()]
    tables = [path for path in files if path.suffix in (".parquet", ".arrow")]
    leaked_values = {
        str(path.relative_to(organization_site.folder)): sorted(_string_values(_read_table(path)) & all_foreign)
        for path in tables
    }
    texts = [path for path in files if path.suffix in (".html", ".json", ".js")]
    leaked_text = {
        str(path.relative_to(organization_site.folder)): sorted(
            value for value in (all_foreign if path.suffix != ".js" else foreign_ids) if value in path.read_text(errors="replace")
        )
        for path in texts
    }
    assert any(path.suffix == ".parquet" for path in tables)
    assert any(path.suffix == ".arrow" for path in tables)
    assert {path: values for path, values in leaked_values.items() if values} == {}
    assert {path: values for path, values in leaked_text.items() if values} == {}


def _foreign_values(warehouse: Path, organization_id: str) -> dict[str, set[str]]:
    """Return, per identifying column, the values of other organizations and unattributed events only."""
    foreign = {}
    for column in IDENTIFYING_COLUMNS:
        own = {row[0] for row in query(
            warehouse, f"select distinct {column} from marts.fct_usage_events where organization_id = ?", [organization_id]
        )}
        others = {row[0] for row in query(
            warehouse,
            f"select distinct {column} from marts.fct_usage_events where organization_id is distinct from ?",
            [organization_id],
        )}
        foreign[column] = {str(value) for value in others - own if value is not None}
    return foreign


@pytest.mark.e2e
def test_organization_without_events_rejected(sample_duckdb: BuiltWarehouse) -> None:
    require_node()
    with pytest.raises(ReportError, match="has no usage events") as raised:
        extract_report_data(sample_duckdb.database.duckdb_path, "org_without_events")
    assert "usage.daily" in str(raised.value)


@pytest.mark.e2e
@pytest.mark.postgres
def test_postgres_source_queries_match_duckdb(
    full_site: BuiltSite, sample_postgres: BuiltWarehouse, tmp_path: Path
) -> None:
    data_dir = extract_report_data(
        None, target="postgres", connection_environment={"PGDATABASE": str(sample_postgres.database.postgres_database)}
    )
    for path in _data_files(full_site.folder):
        if path.stem in WAREHOUSE_SPECIFIC_QUERIES:
            continue
        postgres_path = data_dir / path.parent.name / path.name
        assert postgres_path.is_file(), f"no {postgres_path.name} from the postgres source"
        assert _sorted_rows(pq.read_table(postgres_path)) == _sorted_rows(pq.read_table(path)), path.name


def _sorted_rows(table: pa.Table) -> list[tuple[object, ...]]:
    """Return the rows in a stable order, with floats rounded so the two connectors' conversions agree."""
    rows = [
        tuple(round(value, 9) if isinstance(value, float) else value for value in row.values())
        for row in table.to_pylist()
    ]
    return sorted(rows, key=repr)


# -- pages in a browser -----------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("site_fixture", ["full_site", "organization_site"])
def test_pages_render_without_errors(request: pytest.FixtureRequest, site_fixture: str, tmp_path: Path) -> None:
    chromium = require_chromium()
    site: BuiltSite = request.getfixturevalue(site_fixture)
    screenshots = tmp_path / "screenshots"
    paths = _page_paths(site.folder)

    with serving(site.folder) as base_url:
        report = _check_pages(base_url, paths, screenshots, chromium, tmp_path)
    _keep_screenshots(screenshots, SCREENSHOT_DIR / site_fixture.removesuffix("_site"))
    pages = report["pages"]

    assert [page["path"] for page in pages] == paths
    assert {page["path"]: page["status"] for page in pages if page["status"] != 200} == {}
    assert _problems(pages, "errorTexts") == {}
    assert _problems(pages, "errorElements") == {}
    assert _problems(pages, "consoleErrors") == {}
    assert _problems(pages, "pageErrors") == {}
    assert _problems(pages, "failedRequests") == {}
    assert _problems(pages, "emptyCharts") == {}
    assert _problems(pages, "emptyTables") == {}
    assert [page["path"] for page in pages if not page["charts"] and not page["tables"]] == []
    assert all(Path(page["screenshot"]).is_file() for page in pages)


def _check_pages(base_url: str, paths: list[str], screenshots: Path, chromium: str, tmp_path: Path) -> dict:
    config = tmp_path / "check-pages.json"
    config.write_text(json.dumps({
        "baseUrl": base_url, "paths": paths, "screenshotDir": str(screenshots), "chromium": chromium,
        "timeoutMs": 30000,
    }))
    completed = subprocess.run(
        ["node", str(CHECK_PAGES_SCRIPT), str(config)], cwd=REPORTS_DIR, capture_output=True, text=True, timeout=600,
        check=False,
    )
    assert completed.returncode == 0, f"check-pages.mjs exited {completed.returncode}:\n{completed.stderr[-4000:]}"
    return json.loads(completed.stdout)


def _problems(pages: Iterable[dict], key: str) -> dict[str, list[object]]:
    return {page["path"]: page[key] for page in pages if page[key]}


def _keep_screenshots(source: Path, destination: Path) -> None:
    """Copy the screenshots to target/report-screenshots, where they outlive the test's temporary folder."""
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(source, destination)
