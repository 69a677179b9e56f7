{# grain: one row per quarantined source row #}

with

source as (

    select * from {{ source('usage', 'quarantined_rows') }}

),

renamed as (

    -- raw_text and raw_fields stay out: they are unvalidated producer text that may name any
    -- organization or user.
    select
        -- ids
        quarantine_id,
        batch_id,
        replay_batch_id,

        -- strings
        source_file,
        source_format,
        reason,
        message,

        -- numerics
        line_number,

        -- timestamps, UTC
        quarantined_at,
        replayed_at,
        dismissed_at

    from source

)

select * from renamed
