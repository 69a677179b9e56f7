{#
    grain: one row per UTC day, organization, provider, model, operation and tool

    Events without an organization form their own unattributed rows (null organization_id), so
    the organizations' totals plus the unattributed rows equal the grand total.
#}

with

usage_events as (

    select * from {{ ref('fct_usage_events') }}

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

        count(*) as event_count,
        sum(case when cost_source = 'computed' then 1 else 0 end) as computed_event_count,
        sum(case when cost_source = 'reported' then 1 else 0 end) as reported_event_count,
        sum(case when cost_source = 'unpriced' then 1 else 0 end) as unpriced_event_count,
        sum(case when cost_source = 'unmetered' then 1 else 0 end) as unmetered_event_count,

        sum(coalesce(input_tokens, 0)) as input_tokens,
        sum(coalesce(cached_input_tokens, 0)) as cached_input_tokens,
        sum(coalesce(cache_write_tokens, 0)) as cache_write_tokens,
        sum(coalesce(output_tokens, 0)) as output_tokens,
        sum(coalesce(reasoning_tokens, 0)) as reasoning_tokens,
        sum(case when unit_type = 'images' then units else 0 end) as images,
        sum(case when unit_type = 'video_seconds' then units else 0 end) as video_seconds,

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
