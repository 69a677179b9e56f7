{{ config(severity='warn') }}
-- Expects no rows: where a service reported a cost and a price is known, the two agree within
-- var cost_divergence_tolerance. A row is a service whose own estimate is off, or a wrong price.
select
    event_id,
    provider,
    model,
    operation,
    reported_cost_usd,
    computed_cost_usd
from {{ ref('fct_usage_events') }}
where
    reported_cost_usd is not null
    and computed_cost_usd is not null
    and abs(reported_cost_usd - computed_cost_usd)
    > {{ var('cost_divergence_tolerance') }} * computed_cost_usd
