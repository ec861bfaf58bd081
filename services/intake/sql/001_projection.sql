-- Intake's own tables (its schema): the order projection built from order
-- events, the requests it turned into cases, and requests held for an order
-- not seen yet.
--
-- Each column group carries the timestamp of the event that wrote it, and an
-- upsert only overwrites a group with an event at least as recent: events
-- arriving out of order or twice converge to the same row.
CREATE TABLE orders (
  order_id            text PRIMARY KEY,
  buyer_id            text,
  merchant_id         text,
  region              text,
  shipping_fee_minor  bigint,
  shipping_currency   text,
  placed_at_us        bigint,
  amount_paid_minor   bigint,
  paid_currency       text,
  payment_method      int,
  payment_ref         text,
  paid_at_us          bigint,
  delivered_at_us     bigint,
  cancel_reason       text,
  cancelled_at_us     bigint,
  updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_lines (
  order_id      text NOT NULL,
  line_id       text NOT NULL,
  sku           text NOT NULL,
  category      text NOT NULL,
  supplier_id   text NOT NULL,
  unit_minor    bigint NOT NULL CHECK (unit_minor >= 0),
  currency      text NOT NULL,
  quantity      int NOT NULL CHECK (quantity >= 1),
  title         text NOT NULL,
  placed_at_us  bigint NOT NULL,
  PRIMARY KEY (order_id, line_id)
);

CREATE TABLE shipments (
  order_id         text NOT NULL,
  shipment_id      text NOT NULL,
  carrier          text,
  tracking_number  text,
  shipped_at_us    bigint,
  delivered_at_us  bigint,
  proof            text,
  PRIMARY KEY (order_id, shipment_id)
);
CREATE INDEX shipments_tracking ON shipments (tracking_number);

-- One row per (buyer, idempotency key) that opened a case: the key's case id
-- is derived from the pair, so a repeat finds this row and the case.
CREATE TABLE requests (
  buyer_id         text NOT NULL,
  idempotency_key  text NOT NULL,
  request_id       text NOT NULL,
  case_id          text NOT NULL UNIQUE,
  order_id         text NOT NULL,
  submitted_at_us  bigint NOT NULL,
  locale           text NOT NULL,
  preferred_outcome int NOT NULL,
  return_method    int NOT NULL,
  complaint_type   int NOT NULL,
  declared_unused  boolean NOT NULL,
  opened_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (buyer_id, idempotency_key)
);

-- Requests for an order the projection has not seen: the original envelope
-- bytes, replayed when the order arrives or rejected when the hold expires.
CREATE TABLE held_requests (
  request_id       text PRIMARY KEY,
  order_id         text NOT NULL,
  buyer_id         text NOT NULL,
  idempotency_key  text NOT NULL,
  envelope         bytea NOT NULL,
  held_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (buyer_id, idempotency_key)
);
CREATE INDEX held_requests_order ON held_requests (order_id);
