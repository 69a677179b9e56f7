-- Which database role reads which organization's rows of the organization-facing marts.
-- `usage-warehouse access` writes this table; the row-level security policies on the marts read
-- it. A role reads either one organization or, with all_organizations, every row including the
-- unattributed events. A role without a row here reads no rows at all.
create schema if not exists access;

create table access.role_organizations (
    role_name text primary key,
    organization_id text,
    all_organizations boolean not null default false,
    granted_at timestamp without time zone not null,
    granted_by text not null,
    constraint role_organizations_one_scope check (
        (all_organizations and organization_id is null)
        or (not all_organizations and organization_id is not null and btrim(organization_id) <> '')
    )
);

-- The marts' policies look this table up as the reading role, so readers get SELECT on it. This
-- policy then shows each reader only the rows of the roles whose privileges it has, so no reader
-- learns which other roles and organizations exist. The table's owner is not subject to it.
alter table access.role_organizations enable row level security;

create policy own_grants_only on access.role_organizations
    for select
    using (
        role_name in (
            select roles.rolname
            from pg_catalog.pg_roles as roles
            where pg_catalog.pg_has_role(current_user, roles.oid, 'USAGE')
        )
    );
