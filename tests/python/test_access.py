"""Organization isolation on PostgreSQL: row-level security on every organization-facing relation.

One database contains three organizations and unattributed events. Each test connects as a real
role (scoped to one organization, to none, to all, or never granted) and reads the marts the way
an analyst or a dashboard would, then tries to widen its scope.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from conftest import (
    CommandResult,
    WarehouseUnderTest,
    new_postgres_database,
    postgres_admin_connection,
    postgres_rows,
    run_cli,
    write_jsonl,
)

pytestmark = pytest.mark.postgres

ORGANIZATIONS = ("org_a", "org_b", "org_c")
ORGANIZATION_FACING = ("marts.fct_usage_events", "marts.fct_usage_daily", "marts.token_usage")
INTERNAL_RELATIONS = (
    "raw.usage_events", "raw.quarantined_rows", "raw.ingest_batches", "raw.seed_loads", "staging.stg_usage__events",
    "staging.stg_usage__event_snapshots",
    "intermediate.int_usage_events_priced", "reference.unit_prices", "public.schema_migrations",
)
READER_ROLE = "usage_warehouse_reader"
# An organization id written as an SQL injection: it must match no row, not every row.
CRAFTED_ORGANIZATION = "x' or '1'='1"


@dataclass(frozen=True)
class ScopedWarehouse:
    """A built PostgreSQL warehouse and the roles that read it."""

    database: str
    roles: dict[str, str]

    def run(self, *arguments: str, check: bool = True) -> CommandResult:
        warehouse = WarehouseUnderTest("postgres", Path(os.devnull), self.database)
        return warehouse.run(*arguments, check=check)

    def connect(self, role: str | None = None) -> psycopg2.extensions.connection:
        """Connect as one of the test roles by key, or as the builder when `role` is None."""
        if role is None:
            return psycopg2.connect(dbname=self.database)
        return psycopg2.connect(dbname=self.database, user=self.roles[role])

    def read(self, role: str | None, sql: str, parameters: list[object] | None = None) -> list[tuple[object, ...]]:
        return postgres_rows(self.database, sql, parameters, user=self.roles[role] if role else None)


def _events() -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    owners = [*ORGANIZATIONS, None]
    for owner_index, organization in enumerate(owners):
        for day in range(1, 4 + owner_index):
            event: dict[str, object] = {
                "event_id": f"{organization or 'none'}-{day}",
                "created_at": f"2026-11-0{day}T10:00:00Z",
                "provider": "openai",
                "operation": "analyze_text",
                "model": "gpt-4o-mini",
                "input_tokens": 1000 * day + owner_index,
                "output_tokens": 100 + day,
                "tool_name": f"page_of_{organization or 'nobody'}",
                "user_id": f"user_of_{organization or 'nobody'}_{day}",
            }
            if organization:
                event["organization_id"] = organization
            events.append(event)
    return events


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScopedWarehouse]:
    suffix = uuid.uuid4().hex[:10]
    # Roles belong to the server, not to one database, so their names are unique per run.
    roles = {key: f"uw_{key}_{suffix}" for key in (*ORGANIZATIONS, "none", "all", "outsider", "crafted")}
    with new_postgres_database() as database:
        admin = postgres_admin_connection()
        try:
            with admin.cursor() as cursor:
                for name in roles.values():
                    cursor.execute(f"create role {name} login")
            warehouse = ScopedWarehouse(database, roles)
            events = write_jsonl(tmp_path_factory.mktemp("access") / "events.jsonl", _events())
            warehouse.run("ingest", str(events))
            warehouse.run("build")
            for organization in ORGANIZATIONS:
                warehouse.run("access", "grant", "--role", roles[organization], "--org", organization)
            warehouse.run("access", "grant", "--role", roles["all"], "--all")
            warehouse.run("access", "grant", "--role", roles["crafted"], "--org", CRAFTED_ORGANIZATION)
            # A member of the reader role that was never granted an organization.
            with admin.cursor() as cursor:
                cursor.execute(f"grant {READER_ROLE} to {roles['none']}")
            yield warehouse
        finally:
            with admin.cursor() as cursor:
                # The database contains the roles' privileges, so it is dropped first.
                cursor.execute(f"drop database if exists {database} with (force)")
                for name in roles.values():
                    cursor.execute(f"drop role if exists {name}")
            admin.close()


@pytest.mark.parametrize("relation", ORGANIZATION_FACING)
@pytest.mark.parametrize("organization", ORGANIZATIONS)
def test_scoped_role_reads_own_rows_only(scoped: ScopedWarehouse, relation: str, organization: str) -> None:
    counts = f"select count(*), count(*) filter (where organization_id is distinct from %s) from {relation}"
    own_rows = f"select count(*) from {relation} where organization_id = %s"

    [(visible, foreign)] = scoped.read(organization, counts, [organization])
    [(expected,)] = scoped.read(None, own_rows, [organization])

    assert foreign == 0
    assert expected > 0
    assert visible == expected


@pytest.mark.parametrize("relation", ORGANIZATION_FACING)
def test_scoped_role_sees_no_other_ids(scoped: ScopedWarehouse, relation: str) -> None:
    rows = scoped.read("org_a", f"select * from {relation}")
    text = " ".join(str(value) for row in rows for value in row)

    assert "org_a" in text
    for other in ("org_b", "org_c", "nobody"):
        assert other not in text


@pytest.mark.parametrize("relation", ORGANIZATION_FACING)
def test_role_without_organization_reads_nothing(scoped: ScopedWarehouse, relation: str) -> None:
    assert scoped.read("none", f"select count(*) from {relation}") == [(0,)]


@pytest.mark.parametrize("relation", ORGANIZATION_FACING)
def test_crafted_organization_reads_nothing(scoped: ScopedWarehouse, relation: str) -> None:
    assert scoped.read("crafted", f"select count(*) from {relation}") == [(0,)]


@pytest.mark.parametrize(("relation", "cost"), [
    ("marts.fct_usage_events", "cost_usd"), ("marts.fct_usage_daily", "known_cost_usd"), ("marts.token_usage", "cost_usd"),
])
def test_all_role_totals_add_up(scoped: ScopedWarehouse, relation: str, cost: str) -> None:
    totals = f"select count(*), coalesce(sum({cost}), 0) from {relation}"
    [(all_rows, all_cost)] = scoped.read("all", totals)
    [(unattributed_rows, unattributed_cost)] = scoped.read("all", f"{totals} where organization_id is null")
    organization_totals = [scoped.read(organization, totals)[0] for organization in ORGANIZATIONS]

    assert unattributed_rows > 0
    assert all_rows == sum(rows for rows, _ in organization_totals) + unattributed_rows
    assert all_cost == sum((cost for _, cost in organization_totals), Decimal(0)) + unattributed_cost
    assert scoped.read(None, totals) == [(all_rows, all_cost)]


def test_unattributed_rows_only_for_all(scoped: ScopedWarehouse) -> None:
    unattributed = "select count(*) from marts.fct_usage_events where organization_id is null"

    for role in (*ORGANIZATIONS, "none", "crafted"):
        assert scoped.read(role, unattributed) == [(0,)], role
    assert scoped.read("all", unattributed)[0][0] > 0


@pytest.mark.parametrize("relation", ORGANIZATION_FACING)
def test_role_never_granted_is_denied(scoped: ScopedWarehouse, relation: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        scoped.read("outsider", f"select count(*) from {relation}")


@pytest.mark.parametrize("relation", INTERNAL_RELATIONS)
def test_internal_relations_denied(scoped: ScopedWarehouse, relation: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        scoped.read("org_a", f"select count(*) from {relation}")


@pytest.mark.parametrize("statement", [
    "set app.organization_id = 'org_b'",
    "select set_config('app.organization_id', 'org_b', false)",
    "select set_config('usage_warehouse.organization_id', 'org_b', false)",
    "set row_security = on",
    "set search_path = access, marts, public",
    "reset role",
])
def test_settings_do_not_widen_scope(scoped: ScopedWarehouse, statement: str) -> None:
    connection = scoped.connect("org_a")
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            cursor.execute(
                "select count(*) from marts.fct_usage_events where organization_id is distinct from 'org_a'"
            )
            assert cursor.fetchall() == [(0,)]
    finally:
        connection.close()


def test_row_security_off_is_rejected(scoped: ScopedWarehouse) -> None:
    connection = scoped.connect("org_a")
    try:
        with connection.cursor() as cursor:
            cursor.execute("set row_security = off")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
                cursor.execute("select count(*) from marts.fct_usage_events")
    finally:
        connection.close()


@pytest.mark.parametrize("statement", [
    "set role {other}",
    "select set_config('role', '{other}', false)",
    "set session authorization {other}",
])
def test_cannot_switch_to_other_role(scoped: ScopedWarehouse, statement: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        scoped.read("org_a", statement.format(other=scoped.roles["org_b"]))


def test_own_view_still_filtered(scoped: ScopedWarehouse) -> None:
    connection = scoped.connect("org_a")
    try:
        with connection.cursor() as cursor:
            cursor.execute("create temporary view every_event as select * from marts.fct_usage_events")
            cursor.execute("select count(*) filter (where organization_id <> 'org_a'), count(*) from every_event")
            foreign, visible = cursor.fetchone()
    finally:
        connection.close()

    assert foreign == 0
    assert visible > 0


@pytest.mark.parametrize("schema", ["marts", "public", "access"])
def test_cannot_create_views(scoped: ScopedWarehouse, schema: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        scoped.read("org_a", f"create view {schema}.every_event as select * from marts.fct_usage_events")


def test_leaky_predicate_runs_after_policy(scoped: ScopedWarehouse) -> None:
    # Division by zero on another organization's row would prove that the condition saw it.
    rows = scoped.read(
        "org_a",
        "select count(*) from marts.fct_usage_events "
        "where 1 / (case when organization_id = 'org_a' then 1 else 0 end) = 1",
    )

    assert rows[0][0] > 0


def _analyze_events(scoped: ScopedWarehouse) -> None:
    """Collect statistics on the events mart, as autovacuum or an administrator would."""
    connection = scoped.connect()
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("analyze marts.fct_usage_events")
    connection.close()


def test_token_usage_view_runs_as_the_reader(scoped: ScopedWarehouse) -> None:
    # A view that ran as its owner would bypass the events mart's policy for every reader.
    options = "select relkind, reloptions from pg_class where oid = 'marts.token_usage'::regclass"
    assert scoped.read(None, options) == [("v", ["security_invoker=true"])]


def test_statistics_hidden_from_scoped_role(scoped: ScopedWarehouse) -> None:
    _analyze_events(scoped)

    collected = (
        "select count(*) from pg_attribute where attrelid = 'marts.fct_usage_events'::regclass"
        " and attnum > 0 and not attisdropped and attstattarget <> 0"
    )
    assert scoped.read(None, collected) == [(0,)]
    assert scoped.read(None, "select count(*) from pg_stats where schemaname = 'marts'") == [(0,)]
    assert scoped.read("org_a", "select count(*) from pg_stats where schemaname = 'marts'") == [(0,)]


def test_estimates_reveal_no_values(scoped: ScopedWarehouse) -> None:
    _analyze_events(scoped)
    estimate = "explain select * from marts.fct_usage_events where organization_id = %s"

    other = scoped.read("org_a", estimate, ["org_b"])[0][0]
    missing = scoped.read("org_a", estimate, ["no_such_organization"])[0][0]

    # The first plan line carries the estimate, for example "Seq Scan on ... (cost=... rows=5 ...)".
    assert other == missing


def test_grant_table_shows_own_grant(scoped: ScopedWarehouse) -> None:
    rows = scoped.read("org_a", "select role_name, organization_id from access.role_organizations")

    assert rows == [(scoped.roles["org_a"], "org_a")]
    assert scoped.read("none", "select count(*) from access.role_organizations") == [(0,)]


@pytest.mark.parametrize("statement", [
    "insert into access.role_organizations values ('{role}', null, true, now(), '{role}')",
    "update access.role_organizations set all_organizations = true, organization_id = null",
    "alter table marts.fct_usage_events disable row level security",
    "drop policy organization_scope on marts.fct_usage_events",
    "alter table access.role_organizations disable row level security",
    "grant {reader} to {role}",
])
def test_cannot_change_grants_or_policies(scoped: ScopedWarehouse, statement: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        scoped.read("org_a", statement.format(role=scoped.roles["org_a"], reader=READER_ROLE))


def test_policies_survive_rebuild(scoped: ScopedWarehouse) -> None:
    oid_query = "select 'marts.fct_usage_events'::regclass::oid"
    before = scoped.read(None, oid_query)

    scoped.run("build", "--full-refresh")

    assert scoped.read(None, oid_query) != before
    for relation in ORGANIZATION_FACING:
        assert scoped.read(
            "org_b", f"select count(*) from {relation} where organization_id is distinct from 'org_b'"
        ) == [(0,)]
        assert scoped.read("org_b", f"select count(*) from {relation}")[0][0] > 0


def test_unguarded_view_fails_build(scoped: ScopedWarehouse) -> None:
    connection = scoped.connect()
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("create view marts.every_event as select * from marts.fct_usage_events")
        cursor.execute(f"grant select on marts.every_event to {READER_ROLE}")
    try:
        result = scoped.run("build", "--select", "token_usage", check=False)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("drop view marts.every_event")
        connection.close()

    assert result.returncode == 1
    assert "organization scoping is not enforced on marts.every_event" in result.output


def test_revoked_role_reads_nothing(scoped: ScopedWarehouse) -> None:
    role = scoped.roles["crafted"]
    scoped.run("access", "revoke", "--role", role)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            scoped.read("crafted", "select count(*) from marts.fct_usage_events")
        assert role not in scoped.run("access", "list").output
    finally:
        scoped.run("access", "grant", "--role", role, "--org", CRAFTED_ORGANIZATION)


def test_list_shows_scopes(scoped: ScopedWarehouse) -> None:
    output = scoped.run("access", "list").output

    assert f"{scoped.roles['org_a']}: organization org_a" in output
    assert f"{scoped.roles['all']}: all organizations, unattributed events included" in output
    assert f"{scoped.roles['none']}: no organization: reads no rows" in output


@pytest.mark.parametrize(("arguments", "message"), [
    (["--org", ""], "--org is empty"),
    (["--org", "   "], "--org is empty"),
    (["--org", " org_a"], "starts or ends with spaces"),
    ([], "name the organization with --org"),
    (["--org", "org_a", "--all"], "either --org ORG or --all"),
])
def test_grant_rejects_bad_scope(scoped: ScopedWarehouse, arguments: list[str], message: str) -> None:
    result = scoped.run("access", "grant", "--role", scoped.roles["none"], *arguments, check=False)

    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.parametrize(("role", "message"), [
    ("postgres", "a superuser or a BYPASSRLS role"),
    (READER_ROLE, "is the reader group role"),
    ("uw_no_such_role", "does not exist; create it first"),
])
def test_grant_rejects_unscopable_roles(scoped: ScopedWarehouse, role: str, message: str) -> None:
    result = scoped.run("access", "grant", "--role", role, "--org", "org_a", check=False)

    assert result.returncode == 1
    assert message in result.stderr


def test_grant_rejects_second_organization(scoped: ScopedWarehouse) -> None:
    result = scoped.run("access", "grant", "--role", scoped.roles["org_a"], "--org", "org_b", check=False)

    assert result.returncode == 1
    assert "already reads organization org_a" in result.stderr
    assert scoped.read("org_a", "select count(*) from marts.fct_usage_events where organization_id = 'org_b'") == [(0,)]


@pytest.mark.parametrize(("membership", "message"), [
    ("in role {owner}", "the role that owns and builds the relations"),
    ("noinherit in role {owner}", "the role that owns and builds the relations"),
    ("in role pg_read_all_data", "pg_read_all_data"),
    ("in role {granted}", "granted roles"),
])
def test_grant_rejects_risky_membership(scoped: ScopedWarehouse, membership: str, message: str) -> None:
    owner = scoped.read(None, "select pg_get_userbyid(relowner) from pg_class where oid = 'marts.fct_usage_events'::regclass")
    member = f"uw_member_{uuid.uuid4().hex[:8]}"
    options = membership.format(owner=owner[0][0], granted=scoped.roles["org_b"])
    admin = postgres_admin_connection()
    with admin.cursor() as cursor:
        cursor.execute(f"create role {member} login {options}")
    try:
        result = scoped.run("access", "grant", "--role", member, "--org", "org_a", check=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"drop role {member}")
        admin.close()

    assert result.returncode == 1
    assert message in result.stderr


def test_access_needs_postgres(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "w.duckdb", "access", "list", check=False)

    assert result.returncode == 1
    assert "needs the postgres target" in result.stderr
    assert "export --org" in result.stderr
