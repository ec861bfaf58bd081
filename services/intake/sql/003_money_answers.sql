-- Issue 8: what intake needs to allocate the amount paid, to answer every
-- request exactly once, and to judge submission stamps.
--
-- order_lines.discount_minor: OrderLine.discount (same currency as the unit
-- price, at most unit x quantity): the line's allocation weight is
-- unit_minor x quantity - discount_minor.
ALTER TABLE order_lines ADD COLUMN discount_minor bigint NOT NULL DEFAULT 0
  CHECK (discount_minor >= 0);

-- requests.content_hash: what the request asked for (everything but
-- request_id and submitted_at_us; intake_idem.c), so that the same
-- (buyer, idempotency key) with other content is refused. NULL on rows
-- written before this migration: treated as the same content.
ALTER TABLE requests ADD COLUMN content_hash text;

-- held_requests.arrived_us: when the request reached the platform (the
-- vouched time windows fall back on), kept while it waits for its order.
ALTER TABLE held_requests ADD COLUMN arrived_us bigint;

-- One row per request id that got its answer (BuyerAcknowledged or
-- RequestRejected): a request id seen again under a new event id is not
-- answered twice.
CREATE TABLE answers (
  buyer_id     text NOT NULL,
  request_id   text NOT NULL,
  answer       text NOT NULL,          -- 'acknowledged' or the rejection's reason code
  case_id      text,
  answered_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (buyer_id, request_id)
);
