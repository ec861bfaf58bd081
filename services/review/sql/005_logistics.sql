-- Logistics (issue 13). Review records the cases intake routes to
-- logistics (so it can refund or reship them when a DeliveryOutcome says
-- the carrier lost the parcel) but never decides them: route says which.
ALTER TABLE cases ADD COLUMN route text NOT NULL DEFAULT 'review';

-- The units a ReturnReceived counted per line (logistics matches the
-- warehouse's receipt with what was expected and publishes only the units
-- that came back). receipt_counted: the receipt named its lines, so the
-- refund after inspection pays at most these; a receipt without lines (an
-- upstream warehouse without logistics) caps nothing.
ALTER TABLE cases ADD COLUMN receipt_counted boolean NOT NULL DEFAULT false;
CREATE TABLE received_lines (
  case_id   text NOT NULL REFERENCES cases (case_id),
  line_id   text NOT NULL,
  quantity  int NOT NULL CHECK (quantity >= 1),
  PRIMARY KEY (case_id, line_id)
);
