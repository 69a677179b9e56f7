-- Expects no rows: every batch accounts for each row it read as loaded, duplicate or quarantined.
select
    batch_id,
    rows_read,
    rows_loaded,
    rows_duplicate,
    rows_quarantined
from {{ source('usage', 'ingest_batches') }}
where rows_read <> rows_loaded + rows_duplicate + rows_quarantined
