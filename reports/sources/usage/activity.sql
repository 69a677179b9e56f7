-- grain: one row per organization, user, service, tool, provider, model and operation
-- daily.sql explains the filter on organization_id_literal.
select
    organization_id,
    user_id,
    service,
    tool_name,
    provider,
    model_name,
    operation,
    count(*) as event_count,
    sum(case when cost_usd is null then 1 else 0 end) as unknown_cost_event_count,
    coalesce(sum(cost_usd), 0) as known_cost_usd,
    min(created_at) as first_seen_at,
    max(created_at) as last_seen_at
from marts.fct_usage_events
where ${organization_id_literal} is null or organization_id = ${organization_id_literal}
group by organization_id, user_id, service, tool_name, provider, model_name, operation
