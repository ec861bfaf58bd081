-- The probe worker's state: how many distinct probes each probe id saw.
-- The CHECK bound lets tests provoke a constraint failure on purpose.
CREATE TABLE probe_state (
  probe_id     text PRIMARY KEY,
  count        bigint NOT NULL,
  last_seq     bigint NOT NULL,
  total_minor  bigint NOT NULL CHECK (total_minor BETWEEN 0 AND 1000000000000)
);
