{#
    grain: one row per billable usage event

    Incremental: int_usage_events_in_scope decides which events this build prices, and their
    rows replace the rows of the same billable_key. A full build prices every event. On Spark,
    which cannot delete rows from the table, the build overwrites whole days instead (see
    macros/incremental.sql).
#}

-- depends_on: {{ ref('int_usage_events_in_scope') }}

{{ config(
    materialized='incremental',
    unique_key='billable_key',
    incremental_strategy=usage_events_incremental_strategy(),
    partition_by=usage_day_partitioning(),
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}{{ drop_emptied_usage_days(this) }}{% endif %}"
) }}

{%- set scope = ref('int_usage_events_in_scope') -%}
{%- if execute and not is_incremental()
    and adapter.get_relation(scope.database, scope.schema, scope.identifier) is not none -%}
    {#- A full build must not start from a scope that an incremental build left behind. -#}
    {%- set partial = run_query(
        "select count(*) from " ~ scope ~ " where scope_mode <> 'all'"
    ).columns[0].values()[0] -%}
    {%- if partial > 0 -%}
        {{ exceptions.raise_compiler_error(
            "fct_usage_events is being rebuilt from an incremental scope; rebuild its parents too: "
            ~ "usage-warehouse build --full-refresh (or dbt build --full-refresh --select +fct_usage_events)"
        ) }}
    {%- endif -%}
{%- endif %}

with

priced_events as (

    select * from {{ ref('int_usage_events_priced') }}

),

final as (

    select
        -- ids
        event_id,
        billable_key,
        request_id,
        run_id,
        organization_id,
        user_id,

        -- what was called
        provider,
        platform,
        model,
        model_name,
        catalog_provider_id,
        price_provider_id,
        catalog_model_id,
        model_resolution,
        service,
        tool_name,
        operation,
        service_tier,

        -- usage
        input_tokens,
        cached_input_tokens,
        cache_write_tokens,
        output_tokens,
        reasoning_tokens,
        usage_details,
        units,
        unit_type,
        video_resolution,
        has_audio,

        -- cost, USD
        reported_cost_usd,
        computed_cost_usd,
        cost_usd,
        cost_source,
        unpriced_reason,
        pricing_basis,
        token_price_version_id,
        price_service_tier,
        price_tier_above_input_tokens,
        price_multiplier,
        unit_price_id,
        unit_price_usd,

        -- lineage
        batch_id,
        source_file,
        line_number,

        -- timestamps and days, UTC
        created_at,
        loaded_at,
        cast(created_at as date) as usage_date,

        -- flags
        is_unattributed,
        is_metered,
        cost_source = 'unpriced' as is_unpriced,
        cost_source = 'unmetered' as is_unmetered

    from priced_events

),

written as (

    {{ usage_event_rows_to_write('final') }}

)

select * from written
