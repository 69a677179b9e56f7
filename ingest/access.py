"""Organization access on the PostgreSQL warehouse: which role reads which organization's rows.

A grant is one row of `access.role_organizations` plus membership in the reader role, which
has SELECT on the organization-facing marts. The row-level security policies that read the
grants are applied by dbt on every build (macros/row_level_security.sql). This module only
writes grants, and rejects the roles a policy cannot restrict: superusers, roles with BYPASSRLS,
roles that can act as the relations' owner or as either of those, and members of pg_read_all_data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

# Schemas whose relations the builder owns; a role with its owner's privileges bypasses the policies.
OWNED_SCHEMAS = ("marts", "access")


class AccessError(RuntimeError):
    """A grant that cannot be made, or a role that cannot be managed."""


@dataclass(frozen=True)
class AccessGrant:
    """One role's scope, with what keeps it from working as granted."""

    role_name: str
    organization_id: str | None
    all_organizations: bool
    granted_at: datetime | None
    granted_by: str | None
    problems: tuple[str, ...]

    @property
    def scope(self) -> str:
        if self.all_organizations:
            return "all organizations, unattributed events included"
        if self.organization_id is None:
            return "no organization: reads no rows"
        return f"organization {self.organization_id}"


def ensure_reader_role(connection: psycopg2.extensions.connection, reader_role: str) -> None:
    """Create the reader group role when it is missing; it never logs in and owns nothing."""
    with connection, connection.cursor() as cursor:
        cursor.execute("select 1 from pg_catalog.pg_roles where rolname = %s", [reader_role])
        if cursor.fetchone():
            return
        cursor.execute("savepoint create_reader_role")
        try:
            cursor.execute(sql.SQL("create role {} nologin").format(sql.Identifier(reader_role)))
        except (psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation):
            # Another build created it between the check and the create.
            cursor.execute("rollback to savepoint create_reader_role")
        except psycopg2.errors.InsufficientPrivilege:
            raise AccessError(
                f"role {reader_role} does not exist and {connection.info.user} may not create it; "
                f"ask an administrator to run: CREATE ROLE {reader_role} NOLOGIN"
            ) from None


def grant_access(
    connection: psycopg2.extensions.connection,
    reader_role: str,
    role: str,
    organization_id: str | None = None,
    all_organizations: bool = False,
) -> bool:
    """Let `role` read one organization's rows, or every row; return False when it already could."""
    _check_scope(organization_id, all_organizations)
    ensure_reader_role(connection, reader_role)
    with connection, connection.cursor() as cursor:
        _check_role_can_be_scoped(cursor, role, reader_role)
        cursor.execute(
            "select organization_id, all_organizations from access.role_organizations where role_name = %s "
            "for update",
            [role],
        )
        existing = cursor.fetchone()
        if existing is not None:
            if tuple(existing) == (organization_id, all_organizations):
                _grant_membership(cursor, reader_role, role)
                return False
            current = "every organization" if existing[1] else f"organization {existing[0]}"
            raise AccessError(
                f"role {role} already reads {current}; run `usage-warehouse access revoke --role {role}` first, "
                "or grant another role"
            )
        cursor.execute(
            """
            insert into access.role_organizations
                (role_name, organization_id, all_organizations, granted_at, granted_by)
            values (%s, %s, %s, %s, current_user)
            """,
            [role, organization_id, all_organizations, datetime.now(UTC).replace(tzinfo=None)],
        )
        _grant_membership(cursor, reader_role, role)
    return True


def revoke_access(connection: psycopg2.extensions.connection, reader_role: str, role: str) -> None:
    """Remove a role's grant and its membership in the reader role."""
    with connection, connection.cursor() as cursor:
        cursor.execute("delete from access.role_organizations where role_name = %s", [role])
        if cursor.rowcount == 0:
            raise AccessError(f"role {role} has no grant; `usage-warehouse access list` shows the grants")
        cursor.execute(
            "select pg_catalog.pg_has_role(%s, %s, 'MEMBER') "
            "where exists (select 1 from pg_catalog.pg_roles where rolname = %s)",
            [role, reader_role, role],
        )
        membership = cursor.fetchone()
        if membership and membership[0]:
            cursor.execute(
                sql.SQL("revoke {} from {}").format(sql.Identifier(reader_role), sql.Identifier(role))
            )


def list_access(connection: psycopg2.extensions.connection, reader_role: str) -> list[AccessGrant]:
    """Return every grant, and every member of the reader role without one, with their problems."""
    with connection, connection.cursor() as cursor:
        cursor.execute(
            """
            with members as (
                select roles.rolname as role_name
                from pg_catalog.pg_roles as roles
                where roles.rolname <> %(reader)s
                    -- to_regrole gives null, and so no members, while the reader role is missing.
                    and pg_catalog.pg_has_role(roles.oid, pg_catalog.to_regrole(pg_catalog.quote_ident(%(reader)s)), 'MEMBER')
                    and not roles.rolsuper
            )

            select
                coalesce(grants.role_name, members.role_name),
                grants.organization_id,
                coalesce(grants.all_organizations, false),
                grants.granted_at,
                grants.granted_by
            from access.role_organizations as grants
            full outer join members
                on grants.role_name = members.role_name
            order by 1
            """,
            {"reader": reader_role},
        )
        rows = cursor.fetchall()
        return [
            AccessGrant(
                role_name=name, organization_id=organization, all_organizations=everything,
                granted_at=granted_at, granted_by=granted_by,
                problems=_role_problems(cursor, name, reader_role),
            )
            for name, organization, everything, granted_at, granted_by in rows
        ]


def _check_scope(organization_id: str | None, all_organizations: bool) -> None:
    if all_organizations and organization_id is not None:
        raise AccessError("pass either --org ORG or --all, not both")
    if all_organizations:
        return
    if organization_id is None:
        raise AccessError("name the organization with --org ORG, or pass --all for a role that reads every row")
    if not organization_id.strip():
        raise AccessError(
            "--org is empty; name an organization id as it appears in organization_id. Unattributed events "
            "(no organization) are readable only by a role granted --all"
        )
    if organization_id != organization_id.strip():
        raise AccessError(
            f"organization id {organization_id!r} starts or ends with spaces; pass it exactly as it appears in "
            "organization_id"
        )


def _check_role_can_be_scoped(cursor: psycopg2.extensions.cursor, role: str, reader_role: str) -> None:
    """Raise unless row-level security can restrict what `role` reads."""
    if role == reader_role:
        raise AccessError(
            f"{role} is the reader group role; every member would read what it is granted. "
            "Grant a role of one organization, or a login role, instead"
        )
    cursor.execute("select rolsuper, rolbypassrls from pg_catalog.pg_roles where rolname = %s", [role])
    found = cursor.fetchone()
    if found is None:
        raise AccessError(
            f"role {role!r} does not exist; create it first, for example: CREATE ROLE {role} LOGIN PASSWORD '...'"
        )
    problems = _role_problems(cursor, role, reader_role, include_membership=False)
    if problems:
        raise AccessError(
            f"role {role} cannot be limited to an organization: {'; '.join(problems)}. "
            "Read with a role that has none of these"
        )


def _role_problems(
    cursor: psycopg2.extensions.cursor, role: str, reader_role: str, include_membership: bool = True
) -> tuple[str, ...]:
    # 'MEMBER' also counts NOINHERIT memberships: such a member can SET ROLE and act as the role.
    cursor.execute(
        """
        select
            exists (
                select 1
                from pg_catalog.pg_roles as powerful
                where (powerful.rolsuper or powerful.rolbypassrls)
                    and pg_catalog.pg_has_role(roles.oid, powerful.oid, 'MEMBER')
            ),
            exists (
                select 1
                from pg_catalog.pg_class as classes
                inner join pg_catalog.pg_namespace as namespaces on classes.relnamespace = namespaces.oid
                where namespaces.nspname = any(%(owned)s)
                    and pg_catalog.pg_has_role(roles.oid, classes.relowner, 'MEMBER')
            ),
            exists (
                select 1
                from pg_catalog.pg_roles as predefined
                where predefined.rolname in ('pg_read_all_data', 'pg_write_all_data')
                    and pg_catalog.pg_has_role(roles.oid, predefined.oid, 'MEMBER')
            ),
            coalesce(
                pg_catalog.pg_has_role(roles.oid, pg_catalog.to_regrole(pg_catalog.quote_ident(%(reader)s)), 'USAGE'),
                false
            ),
            array(
                select grants.role_name
                from access.role_organizations as grants
                inner join pg_catalog.pg_roles as granted on granted.rolname = grants.role_name
                where granted.oid <> roles.oid
                    and (
                        pg_catalog.pg_has_role(roles.oid, granted.oid, 'MEMBER')
                        or pg_catalog.pg_has_role(granted.oid, roles.oid, 'MEMBER')
                    )
                order by grants.role_name
            )
        from pg_catalog.pg_roles as roles
        where roles.rolname = %(role)s
        """,
        {"role": role, "reader": reader_role, "owned": list(OWNED_SCHEMAS)},
    )
    found = cursor.fetchone()
    if found is None:
        return ("the role no longer exists",)
    bypasses_rls, can_act_as_owner, reads_all_data, reads_marts, related_grants = found
    problems = []
    if bypasses_rls:
        problems.append("it is, or can act as, a superuser or a BYPASSRLS role, which row-level security never restricts")
    if can_act_as_owner:
        problems.append(
            "it is, or can act as, the role that owns and builds the relations, which bypasses the policies"
        )
    if reads_all_data:
        problems.append("it is a member of pg_read_all_data or pg_write_all_data, which reach the raw tables")
    if related_grants:
        problems.append(
            f"it is a member of, or has as a member, the granted roles {', '.join(related_grants)}, so one of them "
            "would read the other's organizations too"
        )
    if include_membership and not reads_marts:
        problems.append(f"it does not have the privileges of {reader_role}, so it reads nothing")
    return tuple(problems)


def _grant_membership(cursor: psycopg2.extensions.cursor, reader_role: str, role: str) -> None:
    try:
        cursor.execute(sql.SQL("grant {} to {}").format(sql.Identifier(reader_role), sql.Identifier(role)))
    except psycopg2.errors.InsufficientPrivilege:
        raise AccessError(
            f"{cursor.connection.info.user} may not grant role {reader_role}; run the command as the role that "
            f"created it, or ask an administrator to run: GRANT {reader_role} TO {role}"
        ) from None
