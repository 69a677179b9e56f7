{#
    grain: one row per billable usage event, with the columns of the app's token_usage table

    Analysts' queries written for the app's table run here unchanged. cost_usd is the effective
    cost (computed from prices when known, else what the service reported); reported_cost_usd
    keeps the reported value beside it.

    A view, so an incremental build does not copy every event again. On PostgreSQL it runs as
    the reading role (security_invoker), so fct_usage_events' row-level security applies.
#}

{{ config(materialized='view') }}

with

usage_events as (

    select * from {{ ref('fct_usage_events') }}

),

final as (

    select
        event_id as id,
        created_at,
        provider,
        model,
        tool_name,
        operation,
        input_tokens,
        output_tokens,
        units,
        unit_type,
        cost_usd,
        user_id,
        organization_id,
        reported_cost_usd,
        cost_source
    from usage_events

)

select * from final
