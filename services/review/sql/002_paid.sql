-- The refund cap is what was paid (issue 8): review's copy of a case keeps
-- what intake recorded as paid (the order's amount paid, the shipping fee's
-- allocation, each line's allocation and units bought), and the ledger,
-- seeded from those allocations, also counts the units refunded per line so
-- that a refund of k of a line's Q units costs share(allocation, k, Q) and the
-- refund that completes the line gets what the floors left over.
ALTER TABLE cases ADD COLUMN paid_minor bigint NOT NULL DEFAULT 0 CHECK (paid_minor >= 0);
ALTER TABLE cases ADD COLUMN shipping_paid_minor bigint NOT NULL DEFAULT 0
  CHECK (shipping_paid_minor >= 0);
-- The policy's shipping_refund in force when the case was decided:
-- 0 (rows decided before this migration) and 1 whole, 2 pro_rata, 3 none.
ALTER TABLE cases ADD COLUMN shipping_refund int NOT NULL DEFAULT 0;
ALTER TABLE case_lines ADD COLUMN paid_minor bigint NOT NULL DEFAULT 0 CHECK (paid_minor >= 0);
ALTER TABLE case_lines ADD COLUMN purchased int NOT NULL DEFAULT 1 CHECK (purchased >= 1);

-- purchased: units bought on the line (0 for '#shipping', and for rows
-- seeded before this migration, which keep their old rule: unit price x
-- units, cut to what is left); refunded_units: units refunded so far, never
-- more than were bought.
ALTER TABLE ledger ADD COLUMN purchased int NOT NULL DEFAULT 0 CHECK (purchased >= 0);
ALTER TABLE ledger ADD COLUMN refunded_units int NOT NULL DEFAULT 0 CHECK (refunded_units >= 0);
ALTER TABLE ledger ADD CONSTRAINT ledger_units_bought CHECK (refunded_units <= purchased);

-- The units a refund line gives back (0: an amount that refunds no unit, a
-- goodwill or partial amount, or the shipping fee). A line may give units
-- back for 0 minor units (a share that floors to nothing), so the refund
-- that completes the line still finds the remainder.
ALTER TABLE refund_lines ADD COLUMN quantity int NOT NULL DEFAULT 0 CHECK (quantity >= 0);
ALTER TABLE refund_lines DROP CONSTRAINT refund_lines_amount_minor_check;
ALTER TABLE refund_lines ADD CONSTRAINT refund_lines_amount_or_units
  CHECK (amount_minor >= 0 AND (amount_minor > 0 OR quantity > 0));

CREATE OR REPLACE FUNCTION refund_line_charge() RETURNS trigger LANGUAGE plpgsql
  SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE ledger SET refunded_minor = refunded_minor + NEW.amount_minor,
                               refunded_units = refunded_units + NEW.quantity
   WHERE order_id = NEW.order_id AND line_id = NEW.line_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no ledger row for order % line %', NEW.order_id, NEW.line_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;
