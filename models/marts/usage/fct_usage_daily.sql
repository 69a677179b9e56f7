{#
    grain: one row per UTC day, organization, provider, model, operation and tool

    Events without an organization form their own unattributed rows (null organization_id), so
    the organizations' totals plus the unattributed rows equal the grand total.
#}

{#
    Incremental: the days that this build's events are on, now or before it, are deleted and
    aggregated again from fct_usage_events, so a day that an event left loses it too. On Spark
    the table is partitioned by usage_date and those days' partitions are dropped instead.
#}

-- depends_on: {{ ref('int_usage_events_in_scope') }}

{{ config(
    materialized='incremental',
    incremental_strategy='append',
    partition_by=usage_day_partitioning(),
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}{{ delete_affected_usage_days(this) }}{% endif %}"
) }}

with

usage_events as (

    select * from {{ ref('fct_usage_events') }}
    {% if is_incremental() %}
        where usage_date in ({{ affected_usage_days() }})
    {% endif %}

),

aggregated as (

    select
        usage_date,
        organization_id,
        provider,
        model_name,
        operation,
        tool_name,
        is_unattributed,

        -- Counts and token sums are bigint and unit sums decimal(38, 6) on every warehouse: DuckDB
        -- would sum integers to hugeint and PostgreSQL decimals to numeric without a scale.
        cast(count(*) as bigint) as event_count,
        cast(sum(case when cost_source = 'computed' then 1 else 0 end) as bigint) as computed_event_count,
        cast(sum(case when cost_source = 'reported' then 1 else 0 end) as bigint) as reported_event_count,
        cast(sum(case when cost_source = 'unpriced' then 1 else 0 end) as bigint) as unpriced_event_count,
        cast(sum(case when cost_source = 'unmetered' then 1 else 0 end) as bigint) as unmetered_event_count,

        cast(sum(coalesce(input_tokens, 0)) as bigint) as input_tokens,
        cast(sum(coalesce(cached_input_tokens, 0)) as bigint) as cached_input_tokens,
        cast(sum(coalesce(cache_write_tokens, 0)) as bigint) as cache_write_tokens,
        cast(sum(coalesce(output_tokens, 0)) as bigint) as output_tokens,
        cast(sum(coalesce(reasoning_tokens, 0)) as bigint) as reasoning_tokens,
        cast(sum(case when unit_type = 'images' then units else 0 end) as decimal(38, 6)) as images,
        cast(sum(case when unit_type = 'video_seconds' then units else 0 end) as decimal(38, 6)) as video_seconds,

        {{ usd('sum(coalesce(cost_usd, 0))') }} as known_cost_usd,
        {{ usd('sum(coalesce(computed_cost_usd, 0))') }} as computed_cost_usd,
        {{ usd('sum(coalesce(reported_cost_usd, 0))') }} as reported_cost_usd
    from usage_events
    group by usage_date, organization_id, provider, model_name, operation, tool_name, is_unattributed

),

final as (

    select
        {{ grain_key([
            "usage_date", "organization_id", "provider", "model_name", "operation", "tool_name"
        ]) }} as daily_key,
        *,
        unpriced_event_count + unmetered_event_count = 0 as is_cost_complete
    from aggregated

)

select * from final
