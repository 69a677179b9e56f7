{# grain: one row per ingest batch: a landed file or a quarantine replay #}

with

source as (

    select * from {{ source('usage', 'ingest_batches') }}

),

renamed as (

    select
        -- ids
        batch_id,

        -- strings
        source_path,
        source_format,
        status,

        -- numerics
        rows_read,
        rows_loaded,
        rows_duplicate,
        rows_quarantined,

        -- timestamps, UTC
        started_at,
        finished_at

    from source

)

select * from renamed
