-- The logistics worker's own tables (its schema): buyers of orders (for
-- tracking notices), parcels and their scans (the tracking projection),
-- the cases routed to logistics or awaiting a return, carrier inquiries,
-- expected returns and warehouse receipts (with the exception queue).
-- Cases move through common/as_case.c only; review owns every move after
-- a DeliveryOutcome.

CREATE TABLE orders (
  order_id text PRIMARY KEY,
  buyer_id text NOT NULL
);

-- One row of state per parcel (carrier, tracking number), whatever the
-- number of scans: last_* is the latest scan by scanned_at, not arrival.
-- A scan may come before its shipment: the row exists with order_id NULL
-- until OrderShipped fills it in.
CREATE TABLE parcels (
  parcel_id        bigserial PRIMARY KEY,
  carrier          text NOT NULL,
  tracking_number  text NOT NULL,
  direction        int NOT NULL DEFAULT 1,   -- ParcelDirection
  order_id         text,
  shipment_id      text,
  case_id          text,                     -- return parcels
  line_ids         text[] NOT NULL DEFAULT '{}',
  quantities       int[] NOT NULL DEFAULT '{}',
  shipped_at_us    bigint,
  expected_delivery_us bigint,
  last_status      text,
  last_location    text,
  last_scan_us     bigint,
  delivered_at_us  bigint,
  proof            text NOT NULL DEFAULT '',
  scans            bigint NOT NULL DEFAULT 0,
  stalled_inquiry  uuid,                     -- the open STALLED inquiry, if any
  stall_inquiries  int NOT NULL DEFAULT 0,   -- STALLED inquiries so far (the next ordinal)
  UNIQUE (carrier, tracking_number)
);
CREATE INDEX parcels_order ON parcels (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX parcels_tracking ON parcels (tracking_number);

-- Every scan once (a repeat is the same key and changes nothing).
CREATE TABLE scans (
  carrier         text NOT NULL,
  tracking_number text NOT NULL,
  scanned_at_us   bigint NOT NULL,
  status          text NOT NULL,
  location        text NOT NULL,
  proof           text NOT NULL,
  PRIMARY KEY (carrier, tracking_number, scanned_at_us, status)
);

-- The cases logistics has seen on aftersales.cases.v1 (every route: a
-- return of a review case needs its claimed lines).
CREATE TABLE cases (
  case_id           text PRIMARY KEY,
  order_id          text NOT NULL,
  buyer_id          text NOT NULL,
  route             text NOT NULL,
  reason            int NOT NULL,
  preferred_outcome int NOT NULL,
  locale            text NOT NULL,
  line_ids          text[] NOT NULL,
  quantities        int[] NOT NULL
);

-- A question to a carrier; one DeliveryOutcome at most per inquiry.
CREATE TABLE inquiries (
  inquiry_id      uuid PRIMARY KEY,
  kind            int NOT NULL,              -- InquiryKind
  ordinal         int NOT NULL,
  case_id         text NOT NULL,             -- '' for a stalled parcel
  parcel_id       bigint REFERENCES parcels (parcel_id),
  order_id        text NOT NULL,
  carrier         text NOT NULL,
  tracking_number text NOT NULL,
  direction       int NOT NULL,
  requested_at_us bigint NOT NULL,
  answer_due_us   bigint NOT NULL,
  answered_at_us  bigint,
  finding         int,
  rule            text,
  defaulted       boolean NOT NULL DEFAULT false,
  closed_at_us    bigint,
  closed_by       text                       -- 'answer', 'deadline', 'scan'
);
CREATE INDEX inquiries_case ON inquiries (case_id, kind) WHERE case_id <> '';
CREATE INDEX inquiries_tracking ON inquiries (tracking_number, kind);

-- An expected return (ReturnInstructions), linked to its parcel by
-- ReturnShipped and closed by the receipt matched to it.
CREATE TABLE returns (
  case_id         text PRIMARY KEY,
  warehouse_id    text NOT NULL,
  ship_by_us      bigint NOT NULL,
  carrier         text,
  tracking_number text,
  shipped_at_us   bigint,
  received_at_us  bigint,
  receipt_id      text,
  inquiries       int NOT NULL DEFAULT 0
);
CREATE INDEX returns_tracking ON returns (tracking_number) WHERE tracking_number IS NOT NULL;

-- Every warehouse receipt once (a repeat of receipt_id is harmless). An
-- unmatched one waits here for an agent (the exception queue) with what
-- it said, so ReceiptLinked can release it as if matched.
CREATE TABLE receipts (
  receipt_id      text PRIMARY KEY,
  warehouse_id    text NOT NULL,
  tracking_number text NOT NULL,
  label_case_id   text NOT NULL,
  line_ids        text[] NOT NULL,
  quantities      int[] NOT NULL,
  condition       text NOT NULL,
  received_at_us  bigint NOT NULL,
  case_id         text,                      -- matched or linked
  matched_by      text,
  unmatched_reason text,
  released_by     text
);
CREATE INDEX receipts_queue ON receipts (receipt_id) WHERE case_id IS NULL;

-- Every batch of scans updates its parcels' rows and moves their stall
-- deadlines (non-HOT: due_at is indexed): vacuum both eagerly, as the
-- runtime does the outbox, so the partial index of pending deadlines the
-- scanner reads and the parcels' index do not drag dead versions along
-- (a paced phase after 100,000 scans was 20 times slower before a vacuum).
ALTER TABLE parcels SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0);
ALTER TABLE deadlines SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0);
