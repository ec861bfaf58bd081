-- A receipt read before its parcel's ReturnShipped waits in the exception
-- queue; the shipment looks it up by tracking number (logi_returns.c
-- release_queued), once per ReturnShipped: indexed, the queue is never
-- scanned.
CREATE INDEX receipts_queue_tracking ON receipts (tracking_number) WHERE case_id IS NULL;
