-- Issue 13: two moves the logistics flows need (common/as_case.c's table
-- has them too; tests/unit/test_case.c checks the two agree). A parcel the
-- carrier lost is reshipped from carrier verification, like an exchange;
-- a return parcel the buyer did ship and the carrier lost is the
-- platform's problem, refunded while the case still awaits the parcel.
INSERT INTO cases.legal_moves (from_state, to_state) VALUES
  ('CARRIER_VERIFYING', 'EXCHANGED'),
  ('AWAITING_RETURN', 'REFUNDED');
