-- A notification told before any case exists (a request rejected at
-- intake) has no case id; its events name the order instead (the envelope
-- contract wants one of the two), so the sender's NotificationSent,
-- NotificationFailed and SlaBreached carry it too.
ALTER TABLE deliveries ADD COLUMN order_id text NOT NULL DEFAULT '';
