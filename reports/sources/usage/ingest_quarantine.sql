-- grain: one row per ingest batch and quarantine reason
--
-- A batch that quarantined nothing has one row with a null reason, so the table has rows whenever
-- anything was ingested. Quarantined rows carry no validated organization, so organization builds
-- leave out this query and the page that reads it (OPERATOR_ONLY_ENTRIES in ingest/report.py).
with

batches as (

    select * from marts.fct_ingest_batches

),

quarantined as (

    select
        batch_id,
        reason,
        count(*) as quarantined_row_count,
        sum(case when is_open then 1 else 0 end) as open_row_count,
        max(quarantined_at) as last_quarantined_at
    from marts.fct_quarantined_rows
    group by batch_id, reason

)

select
    batches.batch_id,
    batches.source_path,
    batches.source_format,
    batches.status,
    batches.started_at,
    batches.finished_at,
    batches.rows_read,
    batches.rows_loaded,
    batches.rows_duplicate,
    batches.rows_quarantined,
    quarantined.reason,
    coalesce(quarantined.quarantined_row_count, 0) as quarantined_row_count,
    coalesce(quarantined.open_row_count, 0) as open_row_count,
    quarantined.last_quarantined_at
from batches
left join quarantined
    on batches.batch_id = quarantined.batch_id
