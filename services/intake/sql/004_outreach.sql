-- Issue 12: proactive outreach to the buyers of a flawed lot.
--
-- order_lines.lot_id: OrderLine.lot_id, the production lot the units came
-- from ('' when upstream does not know it). It is carried as
-- CaseLine.lot_id on every CaseOpened.
ALTER TABLE order_lines ADD COLUMN lot_id text NOT NULL DEFAULT '';

-- A SupplierQualityAlert names (supplier, sku, lot): its buyers are found
-- through this index, only over lines whose lot is known.
CREATE INDEX order_lines_lot ON order_lines (supplier_id, sku, lot_id) WHERE lot_id <> '';

-- One row per alert intake reached out for: the same alert again (another
-- event id, another instance) opens nothing, even when the first one was
-- cut at AS_INTAKE_OUTREACH_MAX. opened: proactive cases opened;
-- over_bound: eligible lines beyond the bound, not contacted.
CREATE TABLE outreach_alerts (
  alert_id    text PRIMARY KEY,
  supplier_id text NOT NULL,
  sku         text NOT NULL,
  lot_id      text NOT NULL,
  opened      int NOT NULL CHECK (opened >= 0),
  over_bound  int NOT NULL CHECK (over_bound >= 0),
  handled_at  timestamptz NOT NULL DEFAULT now()
);
