-- Raw tables that ingest writes. Only migrations change them; ingest applies pending ones
-- before it loads anything. Times are UTC without time zone.
create schema if not exists raw;

-- One row per ingested file (or quarantine replay): the ledger that makes ingest idempotent.
-- status is loading until every row has landed, then loaded; failed and abandoned batches
-- (a process that died) have had their rows removed.
create table raw.ingest_batches (
    batch_id varchar primary key,
    source_path varchar not null,
    source_format varchar not null,
    content_sha256 varchar not null,
    byte_count bigint not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_duplicate bigint not null,
    rows_quarantined bigint not null,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,
    ingest_version varchar not null,
    catalog_version varchar not null
);

-- One row per landed event, in the canonical token convention, with lineage.
create table raw.usage_events (
    event_id varchar not null,
    created_at timestamp not null,
    provider varchar not null,
    provider_as_sent varchar not null,
    operation varchar not null,
    platform varchar not null,
    model varchar,
    model_name varchar,
    catalog_provider_id varchar,
    price_provider_id varchar,
    catalog_model_id varchar,
    model_resolution varchar not null,
    service varchar,
    tool_name varchar,
    user_id varchar,
    organization_id varchar,
    request_id varchar,
    run_id varchar,
    service_tier varchar not null,
    input_tokens bigint,
    cached_input_tokens bigint,
    cache_write_tokens bigint,
    output_tokens bigint,
    reasoning_tokens bigint,
    usage_details varchar,
    usage_flavor varchar,
    units decimal(38, 6),
    unit_type varchar,
    reported_cost_usd decimal(38, 12),
    usage_payload varchar,
    attributes varchar,
    metadata varchar,
    extra_fields varchar,
    has_usage boolean not null,
    batch_id varchar not null,
    source_file varchar not null,
    line_number bigint not null,
    loaded_at timestamp not null
);

-- Rows that failed validation, with the reason and the original text, until a replay lands them.
create table raw.quarantined_rows (
    quarantine_id varchar primary key,
    batch_id varchar not null,
    source_file varchar not null,
    line_number bigint not null,
    source_format varchar not null,
    raw_text varchar not null,
    -- For CSV rows, the row as a JSON object of header -> value, so a replay can read it alone.
    raw_fields varchar,
    reason varchar not null,
    message varchar not null,
    quarantined_at timestamp not null,
    replayed_at timestamp,
    replay_batch_id varchar
);
