{#
    grain: one row per landed snapshot, that is one row of raw.usage_events in a loaded batch

    Several snapshots can share a billable key (streamed responses, resends): stg_usage__events
    keeps the latest. Incremental builds read this model to find and rank only the snapshots of
    the events in their scope.
#}

with

source as (

    select * from {{ source('usage', 'usage_events') }}

),

batches as (

    select * from {{ source('usage', 'ingest_batches') }}

),

landed as (

    -- Rows of a batch still loading are not part of the warehouse yet.
    select source.*
    from source
    inner join batches
        on source.batch_id = batches.batch_id
    where batches.status = 'loaded'

),

renamed as (

    select
        -- ids
        event_id,
        case
            when request_id is not null
                then {{ dbt.concat(["provider", "':request:'", "request_id"]) }}
            else {{ dbt.concat(["'event:'", "event_id"]) }}
        end as billable_key,
        request_id,
        run_id,
        user_id,
        organization_id,
        batch_id,

        -- strings
        provider,
        provider_as_sent,
        platform,
        operation,
        model,
        model_name,
        catalog_provider_id,
        price_provider_id,
        catalog_model_id,
        model_resolution,
        service,
        tool_name,
        service_tier,
        unit_type,
        usage_flavor,
        source_file,
        {{ json_text('attributes', 'resolution') }} as video_resolution,
        usage_details,
        attributes,
        metadata,
        extra_fields,
        usage_payload,

        -- numerics
        input_tokens,
        cached_input_tokens,
        cache_write_tokens,
        output_tokens,
        reasoning_tokens,
        units,
        reported_cost_usd,
        line_number,

        -- booleans
        has_usage,
        organization_id is null as is_unattributed,
        case lower({{ json_text('attributes', 'audio') }})
            when 'true' then true
            when 'false' then false
        end as has_audio,

        -- timestamps
        created_at,
        loaded_at

    from landed

)

select * from renamed
