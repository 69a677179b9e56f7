-- Cost per calendar month (UTC) and organization, with the events whose cost is unknown beside
-- the known sum. Unattributed events appear as their own row with a null organization_id.
select
    {{ dbt.date_trunc('month', 'usage_date') }} as usage_month,
    organization_id,
    sum(known_cost_usd) as known_cost_usd,
    sum(event_count) as events,
    sum(unpriced_event_count + unmetered_event_count) as unknown_cost_events
from {{ ref('fct_usage_daily') }}
group by 1, 2
order by 1 desc, 3 desc
