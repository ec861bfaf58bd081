-- What a case is about and what happened on it besides state changes (schema
-- cases, shared by every worker). Written first by intake when it opens a
-- case; later workers read them and add evidence, messages and clock marks.
--
-- case_lines: the order lines a case claims and how many units, with the unit
-- price the buyer paid (minor units + ISO currency). Intake sums them per
-- (order, line) over cases not rejected to refuse claiming more than bought.
CREATE TABLE cases.case_lines (
  case_id     text NOT NULL REFERENCES cases.cases (case_id),
  order_id    text NOT NULL,
  line_id     text NOT NULL,
  sku         text NOT NULL DEFAULT '',
  quantity    int NOT NULL CHECK (quantity >= 1),
  unit_minor  bigint NOT NULL CHECK (unit_minor >= 0),
  currency    char(3) NOT NULL,
  PRIMARY KEY (case_id, line_id)
);
CREATE INDEX case_lines_order_line ON cases.case_lines (order_id, line_id);

-- sla_clocks: one row per clock of a case (first_response, review,
-- resolution, carrier_answer ...): when it is due, when it was met, when it
-- was found breached. A clock is met or breached once.
CREATE TABLE cases.sla_clocks (
  case_id      text NOT NULL REFERENCES cases.cases (case_id),
  clock        text NOT NULL,
  due_at       timestamptz NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  met_at       timestamptz,
  breached_at  timestamptz,
  PRIMARY KEY (case_id, clock)
);
CREATE INDEX sla_clocks_open ON cases.sla_clocks (due_at) WHERE met_at IS NULL AND breached_at IS NULL;

-- case_evidence: every attachment of a case (from the opening request or
-- added later), one row per (causing event, position in its list).
CREATE TABLE cases.case_evidence (
  id          bigserial PRIMARY KEY,
  case_id     text NOT NULL REFERENCES cases.cases (case_id),
  event_id    uuid NOT NULL,
  position    int NOT NULL,
  source      text NOT NULL,
  uri         text NOT NULL,
  media_type  text NOT NULL,
  size_bytes  bigint NOT NULL CHECK (size_bytes > 0),
  sha256      char(64) NOT NULL,
  added_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (event_id, position)
);
CREATE INDEX case_evidence_case ON cases.case_evidence (case_id);

-- case_messages: the buyer's words on a case, byte-exact (the opening
-- request's comment, evidence comments, follow-up messages).
CREATE TABLE cases.case_messages (
  id          bigserial PRIMARY KEY,
  case_id     text NOT NULL REFERENCES cases.cases (case_id),
  event_id    uuid NOT NULL,
  source      text NOT NULL,
  author_kind text NOT NULL,
  author_id   text NOT NULL,
  body        text NOT NULL,
  sent_at     timestamptz NOT NULL,
  UNIQUE (event_id, source)
);
CREATE INDEX case_messages_case ON cases.case_messages (case_id);

-- Human-readable case numbers AS-YYYYMMDD-NNNNNNN come from one sequence
-- (gaps are harmless; uniqueness is what matters).
CREATE SEQUENCE cases.case_number_seq;
