-- grain: one row per instrumented service, provider and operation that the app should record,
-- with the events of that provider and operation in scope and when the latest was made (UTC).
-- daily.sql explains the filter on organization_id_literal.
with

expected as (

    select * from marts.dim_expected_usage_records

),

seen as (

    select
        provider,
        operation,
        count(*) as event_count,
        max(created_at) as last_seen_at
    from marts.fct_usage_events
    where ${organization_id_literal} is null or organization_id = ${organization_id_literal}
    group by provider, operation

)

select
    expected.service,
    expected.provider,
    expected.operation,
    coalesce(seen.event_count, 0) as event_count,
    seen.last_seen_at
from expected
left join seen
    on
        expected.provider = seen.provider
        and expected.operation = seen.operation
