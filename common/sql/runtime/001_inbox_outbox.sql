-- The runtime's tables, created in each service's own schema (the search_path
-- as_migrate sets).
-- inbox: every event id this service has accepted; a redelivered event finds
-- its id here and is skipped, inside the same transaction as its effects.
CREATE TABLE inbox (
  event_id     uuid PRIMARY KEY,
  topic        text NOT NULL,
  kpartition   int NOT NULL,
  koffset      bigint NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now()
);

-- outbox: events to publish, written in the transaction that decided them.
-- The relay publishes rows in id order and marks them sent only after the
-- broker acknowledged them.
CREATE TABLE outbox (
  id          bigserial PRIMARY KEY,
  event_id    uuid NOT NULL,
  topic       text NOT NULL,
  msg_key     text NOT NULL,
  payload     bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- deadlines: timers (SLA clocks, evidence and return deadlines). The scanner
-- takes due rows with FOR UPDATE SKIP LOCKED, so several instances share them.
CREATE TABLE deadlines (
  id          bigserial PRIMARY KEY,
  case_id     text NOT NULL,
  kind        text NOT NULL,
  due_at      timestamptz NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  fired_at    timestamptz,
  cancelled_at timestamptz,
  UNIQUE (case_id, kind)
);
CREATE INDEX deadlines_due ON deadlines (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;

-- The outbox is a queue: rows are inserted, marked sent moments later and
-- deleted after the retention. Vacuum it eagerly so the partial index of
-- unsent rows does not drag dead entries through every relay scan.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
