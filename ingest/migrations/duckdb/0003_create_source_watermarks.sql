-- How far each incremental source has been read: the largest (created_at, id) landed so far.
-- The next extract starts an overlap window before it, so rows committed late still land.
create table raw.source_watermarks (
    source_name varchar primary key,
    watermark_created_at timestamp not null,
    watermark_id varchar not null,
    updated_at timestamp not null
);
