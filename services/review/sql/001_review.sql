-- Review's own tables (its schema): what review knows of each case it
-- decides, the decision, and the money. The case's state lives in the shared
-- cases.cases and changes only through as_case_transition_many.

-- One row per case routed to review, from CaseOpened (event-carried facts:
-- review never reads intake's projection), with the latest decision.
CREATE TABLE cases (
  case_id            text PRIMARY KEY,
  case_number        text NOT NULL,
  order_id           text NOT NULL,
  buyer_id           text NOT NULL,
  merchant_id        text NOT NULL,
  case_type          int NOT NULL,
  reason             int NOT NULL,
  currency           char(3) NOT NULL,
  claimed_minor      bigint NOT NULL CHECK (claimed_minor >= 0),
  delivered_at_us    bigint NOT NULL,
  submitted_at_us    bigint NOT NULL,
  region             text NOT NULL,
  payment_method     int NOT NULL,
  payment_ref        text NOT NULL,
  shipping_fee_minor bigint NOT NULL CHECK (shipping_fee_minor >= 0),
  preferred_outcome  int NOT NULL,
  return_method      int NOT NULL,
  declared_unused    boolean NOT NULL,
  has_media          boolean NOT NULL,
  first_order_at_us  bigint NOT NULL,
  orders             int NOT NULL,
  prior_cases        int NOT NULL,
  claims_on_order    int NOT NULL,
  locale             text NOT NULL,
  review_due_us      bigint NOT NULL,
  -- the decision in force
  verdict            int,
  outcome            int,
  rule               text,
  policy_version     text,
  decided_by         text,
  shipping_payer     int,
  approved_minor     bigint CHECK (approved_minor >= 0),
  return_required    boolean,
  refund_shipping    boolean,
  offer_id           text,
  offer_kind         int,
  offer_minor        bigint CHECK (offer_minor >= 0),
  -- what came back, and the inspection's finding (either may come first)
  return_shipped_at_us  bigint,
  return_received_at_us bigint,
  inspection_passed     boolean,
  ruling_final       boolean NOT NULL DEFAULT false,
  recorded_at        timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_order ON cases (order_id);

CREATE TABLE case_lines (
  case_id     text NOT NULL REFERENCES cases (case_id),
  line_id     text NOT NULL,
  sku         text NOT NULL,
  category    text NOT NULL,
  quantity    int NOT NULL CHECK (quantity >= 1),
  unit_minor  bigint NOT NULL CHECK (unit_minor >= 0),
  PRIMARY KEY (case_id, line_id)
);

-- The refund cap, per order line (and '#shipping' for the order's shipping
-- fee): what was paid and what has been refunded. The first case of an
-- order writes the paid figures; later ones cannot raise them. The CHECK is
-- the last word: no code path, however wrong, refunds more than was paid.
CREATE TABLE ledger (
  order_id        text NOT NULL,
  line_id         text NOT NULL,
  currency        char(3) NOT NULL,
  paid_minor      bigint NOT NULL CHECK (paid_minor >= 0),
  refunded_minor  bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
  CHECK (refunded_minor <= paid_minor),
  PRIMARY KEY (order_id, line_id)
);

-- One refund per case: the id is derived from the case, and the case id is
-- unique, so a redelivered approval or receipt cannot pay twice.
CREATE TABLE refunds (
  refund_id       uuid PRIMARY KEY,
  case_id         text NOT NULL UNIQUE REFERENCES cases (case_id),
  order_id        text NOT NULL,
  currency        char(3) NOT NULL,
  items_minor     bigint NOT NULL CHECK (items_minor >= 0),
  shipping_minor  bigint NOT NULL CHECK (shipping_minor >= 0),
  goodwill_minor  bigint NOT NULL CHECK (goodwill_minor >= 0),
  total_minor     bigint NOT NULL CHECK (total_minor > 0),
  reason_code     text NOT NULL,
  issued_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (total_minor = items_minor + shipping_minor + goodwill_minor)
);

CREATE TABLE refund_lines (
  refund_id     uuid NOT NULL REFERENCES refunds (refund_id),
  order_id      text NOT NULL,
  line_id       text NOT NULL,
  amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
  PRIMARY KEY (refund_id, line_id)
);

-- Every refunded line is charged to the ledger in the same statement's
-- transaction; a line without a ledger row cannot be refunded at all.
CREATE FUNCTION refund_line_charge() RETURNS trigger LANGUAGE plpgsql
  SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE ledger SET refunded_minor = refunded_minor + NEW.amount_minor
   WHERE order_id = NEW.order_id AND line_id = NEW.line_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no ledger row for order % line %', NEW.order_id, NEW.line_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refund_lines_charge AFTER INSERT ON refund_lines
  FOR EACH ROW EXECUTE FUNCTION refund_line_charge();

-- Exchanges and coupons: one per case as well.
CREATE TABLE exchanges (
  exchange_id  uuid PRIMARY KEY,
  case_id      text NOT NULL UNIQUE REFERENCES cases (case_id),
  requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE coupons (
  coupon_id    uuid PRIMARY KEY,
  case_id      text NOT NULL UNIQUE REFERENCES cases (case_id),
  currency     char(3) NOT NULL,
  value_minor  bigint NOT NULL CHECK (value_minor > 0),
  issued_at    timestamptz NOT NULL DEFAULT now()
);
