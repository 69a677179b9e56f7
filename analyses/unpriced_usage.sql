-- Events whose cost is unknown, by reason and model: the list of prices to add.
select
    cost_source,
    unpriced_reason,
    provider,
    model,
    count(*) as events,
    min(created_at) as first_seen_at,
    max(created_at) as last_seen_at
from {{ ref('fct_usage_events') }}
where cost_source in ('unpriced', 'unmetered')
group by cost_source, unpriced_reason, provider, model
order by events desc
