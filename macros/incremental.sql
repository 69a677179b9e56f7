{#
    The UTC days whose rows of fct_usage_daily this build replaces: the days that the events in
    this build's scope are on now, and the days they were on in the previous build.
#}
{% macro affected_usage_days() -%}
    select cast(created_at as date) as usage_date from {{ ref('int_usage_events_in_scope') }}
    union
    select previous_usage_date from {{ ref('int_usage_events_in_scope') }}
    where previous_usage_date is not null
{%- endmacro %}

{#
    How the incremental usage marts replace rows, per warehouse.

    DuckDB and PostgreSQL delete the rows of the events or days that a build rewrites, then insert
    the new ones. Spark's Parquet tables support neither DELETE nor MERGE, so on Spark the marts
    are partitioned by usage_date and a build rewrites whole days: fct_usage_events overwrites
    each affected day with its new rows plus the unchanged rows of that day, and fct_usage_daily
    drops the affected days before it appends them again. Either way an incremental build leaves
    the same rows as a full refresh.
#}

{# The incremental_strategy of fct_usage_events. #}
{% macro usage_events_incremental_strategy() -%}
    {{ return(adapter.dispatch('usage_events_incremental_strategy', 'usage_warehouse')()) }}
{%- endmacro %}

{% macro default__usage_events_incremental_strategy() -%}
    {{ return('delete+insert') }}
{%- endmacro %}

{% macro spark__usage_events_incremental_strategy() -%}
    {{ return('insert_overwrite') }}
{%- endmacro %}

{# The partition_by of the incremental usage marts: none, except usage_date on Spark. #}
{% macro usage_day_partitioning() -%}
    {{ return(adapter.dispatch('usage_day_partitioning', 'usage_warehouse')()) }}
{%- endmacro %}

{% macro default__usage_day_partitioning() -%}
    {{ return(none) }}
{%- endmacro %}

{% macro spark__usage_day_partitioning() -%}
    {{ return(['usage_date']) }}
{%- endmacro %}

{#
    The statement that removes the affected days' rows from fct_usage_daily before an
    incremental build appends them again.
#}
{% macro delete_affected_usage_days(relation) -%}
    {{ return(adapter.dispatch('delete_affected_usage_days', 'usage_warehouse')(relation)) }}
{%- endmacro %}

{% macro default__delete_affected_usage_days(relation) -%}
    delete from {{ relation }} where usage_date in ({{ affected_usage_days() }})
{%- endmacro %}

{% macro spark__delete_affected_usage_days(relation) -%}
    {{ return(drop_usage_date_partitions(relation, affected_usage_days())) }}
{%- endmacro %}

{#
    The rows that an incremental build of fct_usage_events writes, from `rows_cte`, the CTE of
    the events in this build's scope. On Spark the build overwrites every affected day, so it also
    writes the rows of those days whose events are not in scope, as the table has them now.
#}
{% macro usage_event_rows_to_write(rows_cte) -%}
    {{ return(adapter.dispatch('usage_event_rows_to_write', 'usage_warehouse')(rows_cte)) }}
{%- endmacro %}

{% macro default__usage_event_rows_to_write(rows_cte) -%}
    select * from {{ rows_cte }}
{%- endmacro %}

{% macro spark__usage_event_rows_to_write(rows_cte) -%}
    {%- if not is_incremental() -%}
        select * from {{ rows_cte }}
    {%- else -%}
        {#- The table lists usage_date, its partition column, last: name the columns in its order. -#}
        {%- set column_list = adapter.get_columns_in_relation(this) | map(attribute='quoted') | join(', ') -%}
        {#- Semi and anti joins rather than IN and NOT IN: Spark plans a NOT IN subquery that it
            cannot broadcast as a nested loop join. -#}
        select {{ column_list }} from {{ rows_cte }}
        union all
        select {{ column_list }}
        from {{ this }} as current_rows
        left semi join ({{ affected_usage_days() }}) as affected_days
            on current_rows.usage_date = affected_days.usage_date
        left anti join {{ ref('int_usage_events_in_scope') }} as scope
            on current_rows.billable_key = scope.billable_key
    {%- endif -%}
{%- endmacro %}

{#
    The statement that removes, before an incremental build of fct_usage_events writes, the days
    that it leaves without events. Only Spark needs it: an overwrite by partition cannot empty a
    day that the build writes no row for, so those days are dropped first.
#}
{% macro drop_emptied_usage_days(relation) -%}
    {{ return(adapter.dispatch('drop_emptied_usage_days', 'usage_warehouse')(relation)) }}
{%- endmacro %}

{% macro default__drop_emptied_usage_days(relation) -%}
{%- endmacro %}

{% macro spark__drop_emptied_usage_days(relation) -%}
    {%- set scope = ref('int_usage_events_in_scope') -%}
    {%- set emptied_days_query -%}
        -- Days that events of this scope leave and that keep no event, in the scope or not.
        with

        scope_days as (

            select distinct cast(created_at as date) as usage_date from {{ scope }}

        ),

        kept_days as (

            select distinct current_rows.usage_date
            from {{ relation }} as current_rows
            left anti join {{ scope }} as scope
                on current_rows.billable_key = scope.billable_key

        )

        select distinct scope.previous_usage_date
        from {{ scope }} as scope
        left anti join scope_days
            on scope.previous_usage_date = scope_days.usage_date
        left anti join kept_days
            on scope.previous_usage_date = kept_days.usage_date
        where scope.previous_usage_date is not null
    {%- endset -%}
    {{ return(drop_usage_date_partitions(relation, emptied_days_query)) }}
{%- endmacro %}

{#
    An ALTER TABLE that drops the usage_date partitions of `relation` for the days that
    `days_query` returns, or an empty string when it returns none (dbt then skips the hook).
    Runs the query while the hook is rendered, so the days come from the tables as they are
    before the model writes.
#}
{% macro drop_usage_date_partitions(relation, days_query) -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set days = run_query(days_query).columns[0].values() -%}
    {%- if days | length == 0 -%}
        {{ return('') }}
    {%- endif -%}
    {%- set partitions = [] -%}
    {%- for day in days | sort -%}
        {%- do partitions.append("partition (usage_date = '" ~ day ~ "')") -%}
    {%- endfor -%}
    {{ return('alter table ' ~ relation ~ ' drop if exists ' ~ partitions | join(', ')) }}
{%- endmacro %}
