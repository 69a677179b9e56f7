-- Expects no rows: the daily mart's cost and counts per day equal the sums over its events,
-- so aggregation drops and double counts nothing.
with

events_by_day as (

    select
        usage_date,
        count(*) as event_count,
        sum(coalesce(cost_usd, 0)) as known_cost_usd,
        sum(coalesce(input_tokens, 0)) as input_tokens,
        sum(coalesce(output_tokens, 0)) as output_tokens
    from {{ ref('fct_usage_events') }}
    group by usage_date

),

daily_by_day as (

    select
        usage_date,
        sum(event_count) as event_count,
        sum(known_cost_usd) as known_cost_usd,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens
    from {{ ref('fct_usage_daily') }}
    group by usage_date

)

select
    events_by_day.known_cost_usd as events_cost_usd,
    daily_by_day.known_cost_usd as daily_cost_usd,
    coalesce(events_by_day.usage_date, daily_by_day.usage_date) as usage_date
from events_by_day
full outer join daily_by_day
    on events_by_day.usage_date = daily_by_day.usage_date
where
    events_by_day.usage_date is null
    or daily_by_day.usage_date is null
    or events_by_day.event_count <> daily_by_day.event_count
    or events_by_day.known_cost_usd <> daily_by_day.known_cost_usd
    or events_by_day.input_tokens <> daily_by_day.input_tokens
    or events_by_day.output_tokens <> daily_by_day.output_tokens
