-- Lets an operator dismiss quarantined rows that no replay can land (a line fixed and sent
-- again in a new file, say), with a note saying why, so they stop showing as open.
alter table raw.quarantined_rows add column dismissed_at timestamp without time zone;
alter table raw.quarantined_rows add column dismissal_note text;
