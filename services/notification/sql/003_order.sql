-- A case's events told in the order they happened, and those read before
-- their case parked (issue 14 item 5; README "Order and parking").
--
-- deliveries.case_seq is the told event's envelope occurred_at_us (0 for
-- a deadline's own notification: its firing time); case_arrival breaks
-- ties in the order the worker read them (cases.seq, as before). The
-- sender takes a case's delivery only when no (case_seq, case_arrival)
-- before it is still to be sent.
ALTER TABLE deliveries ADD COLUMN case_arrival bigint NOT NULL DEFAULT 0;

-- The latest event time told for the case: an event older than it may
-- come after a later one was sent (counted as out of order); only then
-- are the case's sent deliveries looked at.
ALTER TABLE cases ADD COLUMN last_at_us bigint NOT NULL DEFAULT 0;

-- Buyer-visible events read before their case's CaseOpened (another
-- topic's partition lagging): the envelope as it came (it names no
-- contact; nothing personal beyond what the event carries), told when the
-- case is projected, in event order; dropped by the case's "parked"
-- deadline AS_NOTIFICATION_PARK_HOURS after the last one was parked.
CREATE TABLE parked (
  event_id       text PRIMARY KEY,
  case_id        text NOT NULL,
  occurred_at_us bigint NOT NULL,
  arrival        bigserial,
  envelope       bytea NOT NULL,
  parked_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_case ON parked (case_id);
