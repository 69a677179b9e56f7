{#
    Organization scoping on PostgreSQL, enforced by the database.

    Each organization-facing relation gets row-level security and one SELECT policy in the same
    transaction that builds it, before it is granted to the reader role, so no reader ever sees a
    version of it without the policy. The policy reads access.role_organizations (written by
    `usage-warehouse access`) as the reading role. It matches grants only to roles whose
    privileges the current user has, and never reads a setting, so SET and set_config cannot
    change what it returns. A role without a grant reads no rows. Unattributed events (null
    organization_id) match only an all-organizations grant. The relations' owner, the builder,
    bypasses the policy, so nobody should read with it.

    DuckDB has no roles: the embedded warehouse is single-tenant and these macros do nothing there.
    On Spark they do nothing either: a cluster scopes organizations with its own catalog's row
    filters and grants, which this project does not manage.
#}

{#
    The group role that is granted SELECT on the organization-facing relations. The marts'
    grants config in dbt_project.yml reads the same variable with the same default.
#}
{% macro reader_role() -%}
    {{ return(env_var('USAGE_WAREHOUSE_READER_ROLE', 'usage_warehouse_reader')) }}
{%- endmacro %}

{# True when a grant row belongs to a role whose privileges the current user has. #}
{% macro grant_belongs_to_current_user(grants) -%}
    {{ grants }}.role_name in (
        select roles.rolname
        from pg_catalog.pg_roles as roles
        where pg_catalog.pg_has_role(current_user, roles.oid, 'USAGE')
    )
{%- endmacro %}

{% macro apply_organization_scope(relation) -%}
    {{ return(adapter.dispatch('apply_organization_scope', 'usage_warehouse')(relation)) }}
{%- endmacro %}

{% macro default__apply_organization_scope(relation) -%}
{%- endmacro %}

{% macro postgres__apply_organization_scope(relation) -%}
    {%- if config.get('materialized') == 'view' -%}
        {#-
            A view reads its tables with its owner's privileges, which bypass their policies,
            unless it runs as the invoker: then the policies of the tables it reads apply.
        -#}
        alter view {{ relation }} set (security_invoker = true)
    {%- else -%}
    {#-
        No column statistics: the planner's row estimates, which EXPLAIN shows to every reader,
        would otherwise reveal other organizations' values and their row counts.
    -#}
    {%- set columns = adapter.get_columns_in_relation(relation) -%}
    alter table {{ relation }}
    {%- for column in columns %}
        alter column {{ adapter.quote(column.name) }} set statistics 0{{ ',' if not loop.last else ';' }}
    {%- endfor %}
    alter table {{ relation }} enable row level security;
    drop policy if exists organization_scope on {{ relation }};
    create policy organization_scope on {{ relation }}
        for select
        using (
            exists (
                select 1
                from access.role_organizations as grants
                where grants.all_organizations
                    and {{ grant_belongs_to_current_user('grants') }}
            )
            or organization_id in (
                select grants.organization_id
                from access.role_organizations as grants
                where not grants.all_organizations
                    and {{ grant_belongs_to_current_user('grants') }}
            )
        )
    {%- endif -%}
{%- endmacro %}

{#
    For marts that hold no organization's data (reference lists such as the expected usage
    records): row-level security with a policy that shows every row, so the end-of-build check
    sees that sharing them is deliberate.
#}
{% macro share_with_every_organization(relation) -%}
    {{ return(adapter.dispatch('share_with_every_organization', 'usage_warehouse')(relation)) }}
{%- endmacro %}

{% macro default__share_with_every_organization(relation) -%}
{%- endmacro %}

{% macro postgres__share_with_every_organization(relation) -%}
    alter table {{ relation }} enable row level security;
    drop policy if exists shared_with_every_organization on {{ relation }};
    create policy shared_with_every_organization on {{ relation }} for select using (true)
{%- endmacro %}

{#
    Let the reader role reach the marts schema and the grants table that the policies read. Runs
    once at the start of every build: granting on one schema from several models at once fails
    with "tuple concurrently updated".
#}
{% macro grant_reader_access() -%}
    {{ return(adapter.dispatch('grant_reader_access', 'usage_warehouse')()) }}
{%- endmacro %}

{% macro default__grant_reader_access() -%}
{%- endmacro %}

{% macro postgres__grant_reader_access() -%}
    {%- set reader = adapter.quote(reader_role()) -%}
    {%- set marts = generate_schema_name('marts', none) -%}
    {#- A build of seeds alone does not create the marts schema. -#}
    do $grant$
    begin
        if exists (select 1 from pg_catalog.pg_namespace where nspname = '{{ marts }}') then
            grant usage on schema {{ adapter.quote(marts) }} to {{ reader }};
        end if;
    end
    $grant$;
    grant usage on schema access to {{ reader }};
    grant select on access.role_organizations to {{ reader }}
{%- endmacro %}

{#
    Fail the run when the reader role, or a role with an organization grant, can read a relation
    that row-level security does not guard: a table without a policy, a materialized view, or a
    view that runs with its owner's privileges (which bypass the policies). Runs at the end of
    every build, so a new model or a hand-made grant cannot open a hole unnoticed.
#}
{% macro verify_organization_scope() -%}
    {{ return(adapter.dispatch('verify_organization_scope', 'usage_warehouse')()) }}
{%- endmacro %}

{% macro default__verify_organization_scope() -%}
{%- endmacro %}

{% macro postgres__verify_organization_scope() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set unguarded_query -%}
        with readers as (
            select roles.oid as role_oid, roles.rolname as role_name
            from pg_catalog.pg_roles as roles
            where roles.rolname = '{{ reader_role() }}'
                or roles.rolname in (select grants.role_name from access.role_organizations as grants)
        ),

        relations as (
            select
                classes.oid as relation_oid,
                classes.relkind as relation_kind,
                classes.relrowsecurity as has_row_security,
                coalesce(classes.reloptions, '{}') as relation_options,
                format('%I.%I', namespaces.nspname, classes.relname) as relation_name
            from pg_catalog.pg_class as classes
            inner join pg_catalog.pg_namespace as namespaces
                on classes.relnamespace = namespaces.oid
            where classes.relkind in ('r', 'p', 'v', 'm', 'f')
                and namespaces.nspname not in ('pg_catalog', 'information_schema')
                and namespaces.nspname not like 'pg\_%'
        )

        select
            relations.relation_name,
            string_agg(readers.role_name, ', ' order by readers.role_name) as role_names
        from relations
        cross join readers
        where pg_catalog.has_table_privilege(readers.role_oid, relations.relation_oid, 'SELECT')
            and not (
                relations.relation_kind in ('r', 'p')
                and relations.has_row_security
                and exists (
                    select 1 from pg_catalog.pg_policy as policies
                    where policies.polrelid = relations.relation_oid
                )
            )
            and not (
                relations.relation_kind = 'v'
                and relations.relation_options && array[
                    'security_invoker=true', 'security_invoker=on', 'security_invoker=yes', 'security_invoker=1'
                ]
            )
        group by relations.relation_name
        order by relations.relation_name
    {%- endset -%}
    {%- set unguarded = run_query(unguarded_query) -%}
    {%- if unguarded.rows | length > 0 -%}
        {%- set listed = [] -%}
        {%- for row in unguarded.rows -%}
            {%- do listed.append(row[0] ~ ' (readable by ' ~ row[1] ~ ')') -%}
        {%- endfor -%}
        {{ exceptions.raise_compiler_error(
            'organization scoping is not enforced on ' ~ listed | join(', ')
            ~ '. Revoke SELECT on these relations from the reader roles, or make them organization-facing'
            ~ ' models (row-level security via the apply_organization_scope post-hook; views with security_invoker)'
        ) }}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}

{# DuckDB has no roles or grants; without this, dbt-duckdb warns about the marts' grants config. #}
{% macro duckdb__apply_grants(relation, grant_config, should_revoke=True) -%}
{%- endmacro %}

{#
    dbt-spark applies grants after reading them with SHOW GRANTS, which Spark SQL (4.3) does not
    have, so the marts' grants config is not applied on Spark.
#}
{% macro spark__apply_grants(relation, grant_config, should_revoke=True) -%}
{%- endmacro %}
