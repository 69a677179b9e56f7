-- grain: one row per UTC day, organization, provider, model, operation, cost source and
-- unpriced reason. The compared_ columns cover only the events that carry both a reported and a
-- computed cost, so the two sums can be set against each other.
-- daily.sql explains the filter on organization_id_literal.
select
    usage_date,
    organization_id,
    is_unattributed,
    provider,
    model_name,
    operation,
    cost_source,
    unpriced_reason,
    count(*) as event_count,
    coalesce(sum(cost_usd), 0) as known_cost_usd,
    sum(
        case when reported_cost_usd is not null and computed_cost_usd is not null then 1 else 0 end
    ) as compared_event_count,
    coalesce(sum(
        case when computed_cost_usd is not null then reported_cost_usd end
    ), 0) as compared_reported_cost_usd,
    coalesce(sum(
        case when reported_cost_usd is not null then computed_cost_usd end
    ), 0) as compared_computed_cost_usd
from marts.fct_usage_events
where ${organization_id_literal} is null or organization_id = ${organization_id_literal}
group by
    usage_date, organization_id, is_unattributed, provider, model_name, operation, cost_source,
    unpriced_reason
