-- The shared case tables (schema cases): one row per case, its state and
-- version, and its append-only timeline. Every state change goes through
-- as_case_transition (common/as_case.c), which locks the row, checks the move
-- is legal, bumps the version and appends the timeline entry.
CREATE TABLE cases.cases (
  case_id        text PRIMARY KEY,
  case_number    text NOT NULL UNIQUE,
  case_type      text NOT NULL,
  state          text NOT NULL,
  version        bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
  order_id       text NOT NULL,
  buyer_id       text NOT NULL,
  merchant_id    text NOT NULL DEFAULT '',
  reason         text NOT NULL DEFAULT '',
  route          text NOT NULL DEFAULT '',
  currency       char(3),
  claimed_minor  bigint NOT NULL DEFAULT 0 CHECK (claimed_minor >= 0),
  opened_at      timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_order ON cases.cases (order_id);
CREATE INDEX cases_buyer ON cases.cases (buyer_id);

CREATE TABLE cases.timeline (
  case_id     text NOT NULL REFERENCES cases.cases (case_id),
  version     bigint NOT NULL,
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  from_state  text,
  to_state    text NOT NULL,
  actor_kind  text NOT NULL,
  actor_id    text NOT NULL,
  reason      text NOT NULL,
  event_id    uuid,
  detail      jsonb,
  PRIMARY KEY (case_id, version)
);

-- "Accurate documentation": the timeline is append-only, even for a
-- superuser's careless UPDATE.
CREATE FUNCTION cases.timeline_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'cases.timeline is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER timeline_no_update BEFORE UPDATE OR DELETE ON cases.timeline
  FOR EACH ROW EXECUTE FUNCTION cases.timeline_append_only();
