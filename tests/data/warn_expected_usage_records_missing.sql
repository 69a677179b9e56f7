{{ config(severity='warn') }}
-- Expects no rows: each instrumented service's provider and operation has at least one event.
-- A row here is a service that recorded nothing, such as one whose tracking broke.
with

expected as (

    select * from {{ ref('expected_usage_records') }}

),

seen as (

    select
        provider,
        operation,
        max(created_at) as last_seen_at
    from {{ ref('fct_usage_events') }}
    group by provider, operation

)

select
    expected.service,
    expected.provider,
    expected.operation
from expected
left join seen
    on
        expected.provider = seen.provider
        and expected.operation = seen.operation
where seen.last_seen_at is null
