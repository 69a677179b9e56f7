-- How far each incremental source has been read: the largest (created_at, id) landed so far.
-- The next extract starts an overlap window before it, so rows committed late still land.
create table raw.source_watermarks (
    source_name text primary key,
    watermark_created_at timestamp without time zone not null,
    watermark_id text not null,
    updated_at timestamp without time zone not null
);
