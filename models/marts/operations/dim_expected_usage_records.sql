{# grain: one row per instrumented service, provider and operation #}

with

expected_records as (

    select * from {{ ref('expected_usage_records') }}

),

final as (

    select
        {{ grain_key(["service", "provider", "operation"]) }} as expected_record_key,
        service,
        provider,
        operation
    from expected_records

)

select * from final
