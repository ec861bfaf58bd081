-- The sender's SLA sweep (issue 14 item 6): notifications not sent yet
-- whose clock (the request's submission for a first response, else the
-- told event's time) started before now - the SLA, found without a table
-- scan: only rows still waiting and not yet marked are in this index, so
-- it stays as small as the queue.
CREATE INDEX deliveries_sla_due
  ON deliveries ((CASE WHEN submitted_at_us > 0 THEN submitted_at_us ELSE source_at_us END))
  WHERE NOT sla_breached AND status IN ('standby', 'pending', 'sending');
