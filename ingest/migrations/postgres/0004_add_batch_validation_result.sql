-- The Great Expectations summary of each batch: rows checked, rows that failed each
-- expectation, and the rows flagged as outside the price catalog, as JSON.
alter table raw.ingest_batches add column validation_result text;
