-- Expects no rows: every loaded batch accounts for each row it read as loaded, duplicate or
-- quarantined, and its ledger counts match the rows it actually wrote to the raw tables.
with

batches as (

    select * from {{ source('usage', 'ingest_batches') }}
    where status = 'loaded'

),

landed as (

    select
        batch_id,
        count(*) as landed_rows
    from {{ source('usage', 'usage_events') }}
    group by batch_id

),

quarantined as (

    select
        batch_id,
        count(*) as quarantined_rows
    from {{ source('usage', 'quarantined_rows') }}
    group by batch_id

)

select
    batches.batch_id,
    batches.rows_read,
    batches.rows_loaded,
    batches.rows_duplicate,
    batches.rows_quarantined,
    landed.landed_rows,
    quarantined.quarantined_rows
from batches
left join landed
    on batches.batch_id = landed.batch_id
left join quarantined
    on batches.batch_id = quarantined.batch_id
where
    batches.rows_read <> batches.rows_loaded + batches.rows_duplicate + batches.rows_quarantined
    or batches.rows_loaded <> coalesce(landed.landed_rows, 0)
    -- A replay keeps rows that fail again under their first batch, so it may count more.
    or batches.rows_quarantined < coalesce(quarantined.quarantined_rows, 0)
