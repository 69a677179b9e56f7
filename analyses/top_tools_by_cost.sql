-- The tools (pages and agents) that spend the most, over all time.
select
    tool_name,
    sum(known_cost_usd) as known_cost_usd,
    sum(event_count) as events,
    sum(unpriced_event_count + unmetered_event_count) as unknown_cost_events
from {{ ref('fct_usage_daily') }}
group by tool_name
order by known_cost_usd desc
limit 10
