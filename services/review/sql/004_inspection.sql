-- Inspection (issue 12). A QC look at a claim's evidence needs the
-- supplier and the lot of each line (InspectionRequested names them), kept
-- from CaseOpened like the other line facts.
ALTER TABLE case_lines ADD COLUMN supplier_id text NOT NULL DEFAULT '';
ALTER TABLE case_lines ADD COLUMN lot_id text NOT NULL DEFAULT '';

-- The units an InspectionCompleted counted (received and judged), per line:
-- the refund after inspection pays these and never the claimed units. The
-- finding may come before the goods are booked in (either order), so it is
-- kept until the case settles.
CREATE TABLE inspected_lines (
  case_id   text NOT NULL REFERENCES cases (case_id),
  line_id   text NOT NULL,
  quantity  int NOT NULL CHECK (quantity >= 1),
  PRIMARY KEY (case_id, line_id)
);
-- Who judged (empty: passed by the standard's rule, no human) and the
-- finding's detail, for the settling move's timeline row.
ALTER TABLE cases ADD COLUMN inspector_id text;
ALTER TABLE cases ADD COLUMN inspection_detail jsonb;

-- Compensation of a supplier alert's reporters: once per compensation id
-- (the row insert decides which delivery is the one), in any case state.
-- Its refund and coupon are a case's second ones, so "one per case" now
-- holds for the case's own refund and coupon only (compensation_id NULL);
-- a compensation's are one per compensation id.
CREATE TABLE compensations (
  compensation_id uuid PRIMARY KEY,
  case_id         text NOT NULL REFERENCES cases (case_id),
  alert_id        text NOT NULL,
  granted_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE refunds ADD COLUMN compensation_id uuid UNIQUE REFERENCES compensations (compensation_id);
ALTER TABLE refunds DROP CONSTRAINT refunds_case_id_key;
CREATE UNIQUE INDEX refunds_one_per_case ON refunds (case_id) WHERE compensation_id IS NULL;
ALTER TABLE coupons ADD COLUMN compensation_id uuid UNIQUE REFERENCES compensations (compensation_id);
ALTER TABLE coupons DROP CONSTRAINT coupons_case_id_key;
CREATE UNIQUE INDEX coupons_one_per_case ON coupons (case_id) WHERE compensation_id IS NULL;
