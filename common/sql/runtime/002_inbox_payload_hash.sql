-- The inbox keeps the SHA-256 of each record's value bytes: a record with a
-- known event id and the same bytes is a redelivery (skipped); with other
-- bytes it is another event under a used id (dead-lettered event_id_reused).
-- Rows claimed before this migration have no hash (NULL) and match anything:
-- there is nothing to compare them with.
ALTER TABLE inbox ADD COLUMN payload_hash bytea;
