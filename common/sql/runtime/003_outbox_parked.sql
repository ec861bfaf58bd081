-- Outbox rows the producer refuses for good (too large for the broker,
-- invalid) are parked instead of stopping the relay: parked_at and
-- park_reason say so, and sent_at is set too, because it means "left the
-- queue" (published or parked): the partial index of unsent rows, the
-- backlog gauge and the relay's select stay as they are. A parked row's dead
-- letter (outbox_row_refused) is a row of its own; the janitor keeps parked
-- rows for inspection.
ALTER TABLE outbox ADD COLUMN parked_at timestamptz, ADD COLUMN park_reason text;
