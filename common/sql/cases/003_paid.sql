-- What the buyer paid, as intake recorded it from the order's OrderPaid when
-- it opened the case: the figures review's refund ledger is capped by. A
-- CaseOpened whose paid figures disagree with these is a contract violation
-- (review refuses it), so the cap can only come from intake's record of the
-- payment, never from whoever produced the event.
--
-- case_lines.paid_minor: the share of the amount paid allocated to the whole
-- order line (all purchased units; as_money_allocate's rule), and
-- purchased: the units bought on that line.
-- cases.paid_minor / paid_currency: OrderPaid.amount_paid;
-- cases.shipping_paid_minor: the share allocated to the shipping fee.
-- NULL only on rows written before this migration.
ALTER TABLE cases.case_lines ADD COLUMN paid_minor bigint CHECK (paid_minor >= 0);
ALTER TABLE cases.case_lines ADD COLUMN purchased int CHECK (purchased >= 1);
ALTER TABLE cases.cases ADD COLUMN paid_minor bigint CHECK (paid_minor >= 0);
ALTER TABLE cases.cases ADD COLUMN paid_currency char(3);
ALTER TABLE cases.cases ADD COLUMN shipping_paid_minor bigint CHECK (shipping_paid_minor >= 0);
