-- The inspection worker's own tables (its schema). Cases are a small
-- projection of CaseOpened (event-carried facts); tasks are the QC queue;
-- defects, cluster keys, alerts and grants are the supplier clusters. The
-- case's state is review's: inspection never moves a case.

CREATE TABLE cases (
  case_id      text PRIMARY KEY,
  order_id     text NOT NULL,
  buyer_id     text NOT NULL,
  case_type    int NOT NULL,
  reason       int NOT NULL,
  currency     char(3) NOT NULL,
  has_evidence boolean NOT NULL,
  opened_at_us bigint NOT NULL
);

CREATE TABLE case_lines (
  case_id     text NOT NULL REFERENCES cases (case_id),
  line_id     text NOT NULL,
  sku         text NOT NULL,
  category    text NOT NULL,
  supplier_id text NOT NULL,
  lot_id      text NOT NULL,           -- '' when upstream does not know it
  purchased   int NOT NULL CHECK (purchased >= 1),
  claimed     int NOT NULL CHECK (claimed >= 1 AND claimed <= purchased),
  paid_minor  bigint NOT NULL CHECK (paid_minor >= 0),
  PRIMARY KEY (case_id, line_id)
);
CREATE INDEX case_lines_key ON case_lines (supplier_id, sku, lot_id);

-- One task per case and kind: the id is derived from (case, kind), so a
-- second ReturnReceived or InspectionRequested cannot open another.
CREATE TABLE tasks (
  task_id          uuid PRIMARY KEY,
  case_id          text NOT NULL REFERENCES cases (case_id),
  evidence_only    boolean NOT NULL,
  category         text NOT NULL,
  standard_version text NOT NULL,
  opened_at_us     bigint NOT NULL,
  due_at_us        bigint NOT NULL,
  escalated_at_us  bigint,
  judged_at_us     bigint,
  auto_passed      boolean NOT NULL DEFAULT false,
  inspector_id     text,
  defect_confirmed boolean,
  defect_code      text,
  severity         int,
  grade            int,
  disposition      int,
  resellable       boolean,
  failed_items     text[],
  UNIQUE (case_id, evidence_only)
);

CREATE TABLE task_lines (
  task_id  uuid NOT NULL REFERENCES tasks (task_id),
  line_id  text NOT NULL,
  sku      text NOT NULL,
  quantity int NOT NULL CHECK (quantity >= 1),
  PRIMARY KEY (task_id, line_id)
);

-- The row every change to one cluster key locks first (FOR UPDATE): two
-- instances judging defects of the same key serialise here, so the alert
-- is raised once and every grant is decided once.
CREATE TABLE cluster_keys (
  supplier_id   text NOT NULL,
  sku           text NOT NULL,
  lot_id        text NOT NULL,
  defect_code   text NOT NULL,
  watched_at_us bigint,                -- reached the watch level (metric)
  PRIMARY KEY (supplier_id, sku, lot_id, defect_code)
);

-- A confirmed defect: one per case and key, whatever the number of verdicts.
CREATE TABLE defects (
  supplier_id     text NOT NULL,
  sku             text NOT NULL,
  lot_id          text NOT NULL,
  defect_code     text NOT NULL,
  case_id         text NOT NULL REFERENCES cases (case_id),
  buyer_id        text NOT NULL,
  category        text NOT NULL,
  confirmed_at_us bigint NOT NULL,
  PRIMARY KEY (supplier_id, sku, lot_id, defect_code, case_id)
);

CREATE TABLE alerts (
  alert_id        uuid PRIMARY KEY,
  supplier_id     text NOT NULL,
  sku             text NOT NULL,
  lot_id          text NOT NULL,
  defect_code     text NOT NULL,
  window_start_us bigint NOT NULL,
  raised_at_us    bigint NOT NULL,
  last_defect_us  bigint NOT NULL,
  closed_at_us    bigint,
  close_reason    text,
  agent_id        text
);
-- At most one open alert per key.
CREATE UNIQUE INDEX alerts_open ON alerts (supplier_id, sku, lot_id, defect_code)
  WHERE closed_at_us IS NULL;

-- One compensation per (alert, case): the id is derived from both.
CREATE TABLE grants (
  compensation_id uuid PRIMARY KEY,
  alert_id        uuid NOT NULL REFERENCES alerts (alert_id),
  case_id         text NOT NULL REFERENCES cases (case_id),
  currency        char(3) NOT NULL,
  amount_minor    bigint NOT NULL CHECK (amount_minor >= 0),
  coupon_minor    bigint NOT NULL CHECK (coupon_minor >= 0),
  granted_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (alert_id, case_id)
);
