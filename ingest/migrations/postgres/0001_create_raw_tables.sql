-- Raw tables that ingest writes. Only migrations change them; ingest applies pending ones
-- before it loads anything. Times are UTC without time zone.
create schema if not exists raw;

-- One row per ingested file (or quarantine replay): the ledger that makes ingest idempotent.
-- A batch lands in one transaction, so its row is written as loaded when it commits; a failed
-- batch is rolled back and recorded as failed, without rows. The loading and abandoned statuses
-- of the DuckDB warehouse never occur here.
create table raw.ingest_batches (
    batch_id text primary key,
    source_path text not null,
    source_format text not null,
    content_sha256 text not null,
    byte_count bigint not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_duplicate bigint not null,
    rows_quarantined bigint not null,
    started_at timestamp without time zone not null,
    finished_at timestamp without time zone,
    status text not null,
    ingest_version text not null,
    catalog_version text not null
);

-- One row per landed event, in the canonical token convention, with lineage.
create table raw.usage_events (
    event_id text not null,
    created_at timestamp without time zone not null,
    provider text not null,
    provider_as_sent text not null,
    operation text not null,
    platform text not null,
    model text,
    model_name text,
    catalog_provider_id text,
    price_provider_id text,
    catalog_model_id text,
    model_resolution text not null,
    service text,
    tool_name text,
    user_id text,
    organization_id text,
    request_id text,
    run_id text,
    service_tier text not null,
    input_tokens bigint,
    cached_input_tokens bigint,
    cache_write_tokens bigint,
    output_tokens bigint,
    reasoning_tokens bigint,
    usage_details text,
    usage_flavor text,
    units numeric(38, 6),
    unit_type text,
    reported_cost_usd numeric(38, 12),
    usage_payload text,
    attributes text,
    metadata text,
    extra_fields text,
    has_usage boolean not null,
    batch_id text not null,
    source_file text not null,
    line_number bigint not null,
    loaded_at timestamp without time zone not null
);

-- Rows that failed validation, with the reason and the original text, until a replay lands them.
create table raw.quarantined_rows (
    quarantine_id text primary key,
    batch_id text not null,
    source_file text not null,
    line_number bigint not null,
    source_format text not null,
    raw_text text not null,
    -- For CSV rows, the row as a JSON object of header -> value, so a replay can read it alone.
    raw_fields text,
    reason text not null,
    message text not null,
    quarantined_at timestamp without time zone not null,
    replayed_at timestamp without time zone,
    replay_batch_id text
);

-- Ingest looks up event ids, and open quarantined rows by text, to tell duplicates apart.
create index usage_events_event_id on raw.usage_events (event_id);
create index quarantined_rows_raw_text on raw.quarantined_rows (md5(raw_text));
