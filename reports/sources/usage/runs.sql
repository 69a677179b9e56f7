-- grain: one row per organization, tool and agent run
--
-- The events of a tool that belong to no run form one row with a null run_id. So the table has
-- rows whenever the scope has events, because Evidence 39 cannot build a page whose source table
-- is empty.
-- daily.sql explains the filter on organization_id_literal.
select
    organization_id,
    tool_name,
    run_id,
    min(created_at) as started_at,
    max(created_at) as last_request_at,
    count(*) as model_request_count,
    count(distinct model_name) as model_count,
    sum(case when cost_usd is null then 1 else 0 end) as unknown_cost_event_count,
    coalesce(sum(cost_usd), 0) as known_cost_usd,
    coalesce(sum(input_tokens), 0) as input_tokens,
    coalesce(sum(output_tokens), 0) as output_tokens
from marts.fct_usage_events
where ${organization_id_literal} is null or organization_id = ${organization_id_literal}
group by organization_id, tool_name, run_id
