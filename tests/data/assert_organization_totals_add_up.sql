-- Expects no rows: the organizations' totals plus the unattributed bucket equal the grand total.
with

by_organization as (

    select
        sum(case when is_unattributed then 0 else known_cost_usd end) as organizations_cost_usd,
        sum(case when is_unattributed then known_cost_usd else 0 end) as unattributed_cost_usd,
        sum(known_cost_usd) as total_cost_usd,
        sum(case when is_unattributed then 0 else event_count end) as organizations_events,
        sum(case when is_unattributed then event_count else 0 end) as unattributed_events,
        sum(event_count) as total_events
    from {{ ref('fct_usage_daily') }}

)

select *
from by_organization
where
    organizations_cost_usd + unattributed_cost_usd <> total_cost_usd
    or organizations_events + unattributed_events <> total_events
