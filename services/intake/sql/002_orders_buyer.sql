-- The buyer's history a CaseOpened carries (orders placed, the first one's
-- time) is counted per batch from the projection by buyer: without this
-- index every batch would scan intake.orders.
CREATE INDEX orders_buyer ON orders (buyer_id);
