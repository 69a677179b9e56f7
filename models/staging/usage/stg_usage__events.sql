{# grain: one row per billable event: provider and request_id when there is one, else event_id #}

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
        lower({{ json_text('attributes', 'audio') }}) as audio_flag,
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

        -- timestamps
        created_at,
        loaded_at

    from landed

),

ranked as (

    -- Streamed responses resend cumulative usage under one request id, and producers may
    -- deliver an event twice. The latest snapshot contains the total, whatever the arrival
    -- order. A snapshot without usage never replaces one with usage, so a late resend that lost
    -- its usage cannot turn a known cost into an unknown one. Producers often stamp every chunk
    -- of a stream with the request's start time, so among equal times the larger cumulative
    -- token count is the later snapshot.
    select
        *,
        row_number() over (
            partition by billable_key
            order by
                case when has_usage then 0 else 1 end,
                created_at desc,
                coalesce(input_tokens, 0) + coalesce(output_tokens, 0) desc,
                loaded_at desc,
                event_id desc
        ) as snapshot_rank
    from renamed

),

deduplicated as (

    select
        *,
        case audio_flag
            when 'true' then true
            when 'false' then false
        end as has_audio
    from ranked
    where snapshot_rank = 1

)

select * from deduplicated
