{# grain: one row per ingest batch: a landed file or a quarantine replay #}

with

batches as (

    select * from {{ ref('stg_usage__ingest_batches') }}

),

final as (

    select
        batch_id,
        source_path,
        source_format,
        status,
        rows_read,
        rows_loaded,
        rows_duplicate,
        rows_quarantined,
        started_at,
        finished_at
    from batches

)

select * from final
