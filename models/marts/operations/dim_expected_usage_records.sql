{# grain: one row per instrumented service, provider and operation #}

{#- No organization's data: every reader may read it, so organization builds of the dashboard can. -#}
{{ config(
    post_hook="{{ share_with_every_organization(this) }}",
    grants={'select': [env_var('USAGE_WAREHOUSE_READER_ROLE', 'usage_warehouse_reader')]}
) }}

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
