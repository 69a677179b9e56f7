-- The fingerprint of each dbt seed as the last build that loaded it saw its files. An
-- incremental build leaves out the seeds whose fingerprint is unchanged and whose table exists.
create table raw.seed_loads (
    seed_name varchar primary key,
    fingerprint varchar not null,
    loaded_at timestamp not null
);
