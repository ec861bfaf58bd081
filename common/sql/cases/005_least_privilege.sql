-- Least privilege on the shared case tables. The migration runs as the
-- owner role (aftersales_owner); the capability roles it grants to are made
-- by deploy/sql/roles.sql, which gives them to the worker roles:
--   as_cases_reader  SELECT on every case table
--   as_cases_opener  INSERT a new case, its first timeline row and its
--                    satellites (intake, as_case_open_many)
--   as_cases_mover   change a case's state, only through cases.move below;
--                    UPDATE on updated_at alone, because SELECT ... FOR
--                    UPDATE (as_case_transition_many's lock) needs an UPDATE
--                    privilege on some column and that one carries nothing
--   as_cases_clock   mark an SLA clock met or breached
-- No worker role may UPDATE, DELETE or TRUNCATE cases.timeline, nor UPDATE
-- state, version or the paid figures of cases.cases.

-- The case life cycle's legal moves, as common/as_case.c's table `legal`
-- has them (tests/unit/test_case.c checks the two agree, pair by pair).
CREATE TABLE legal_moves (
  from_state text NOT NULL,
  to_state   text NOT NULL,
  PRIMARY KEY (from_state, to_state)
);
INSERT INTO legal_moves (from_state, to_state)
SELECT f, unnest(t) FROM (VALUES
  ('OPEN', '{AWAITING_EVIDENCE,IN_REVIEW,MANUAL_REVIEW,APPROVED,REJECTED,GOODWILL_OFFERED,CARRIER_VERIFYING,ESCALATED,RESOLVED,CLOSED}'::text[]),
  ('AWAITING_EVIDENCE', '{IN_REVIEW,MANUAL_REVIEW,APPROVED,REJECTED,GOODWILL_OFFERED,CLOSED}'),
  ('IN_REVIEW', '{APPROVED,REJECTED,MANUAL_REVIEW,GOODWILL_OFFERED,AWAITING_EVIDENCE,CLOSED}'),
  ('MANUAL_REVIEW', '{APPROVED,REJECTED,GOODWILL_OFFERED,AWAITING_EVIDENCE,ESCALATED,CLOSED}'),
  ('GOODWILL_OFFERED', '{APPROVED,REFUNDED,MANUAL_REVIEW,CLOSED}'),
  ('APPROVED', '{AWAITING_RETURN,REFUNDED,EXCHANGED,DISPUTED,CLOSED}'),
  ('AWAITING_RETURN', '{RETURN_RECEIVED,DISPUTED,CLOSED}'),
  ('RETURN_RECEIVED', '{INSPECTING,REFUNDED,EXCHANGED,DISPUTED}'),
  ('INSPECTING', '{REFUNDED,EXCHANGED,REJECTED,DISPUTED}'),
  ('REFUNDED', '{CLOSED}'),
  ('EXCHANGED', '{CLOSED}'),
  ('REJECTED', '{DISPUTED,CLOSED}'),
  ('DISPUTED', '{APPROVED,REJECTED,REFUNDED,EXCHANGED,CLOSED}'),
  ('CARRIER_VERIFYING', '{RESOLVED,REFUNDED,ESCALATED,CLOSED}'),
  ('ESCALATED', '{RESOLVED,REFUNDED,APPROVED,REJECTED,GOODWILL_OFFERED,AWAITING_EVIDENCE,CLOSED}'),
  ('RESOLVED', '{CLOSED}')) AS m(f, t);

-- The one writer of a case's state. The caller (as_case_transition_many)
-- holds the rows FOR UPDATE and has decided the moves; this function, run
-- as the owner, refuses any batch whose timeline rows do not chain from the
-- case as stored (versions old+1, old+2, ...; each move from the state the
-- previous one reached; each move legal), then writes the final state and
-- version and appends the rows. Its search_path is pg_catalog then pg_temp
-- and every name is qualified, so a caller's objects cannot stand in for
-- ours. Returns how many cases moved and how many timeline rows were added.
CREATE FUNCTION move(p_case_id text[], p_version bigint[], p_from text[], p_to text[],
                     p_actor_kind text[], p_actor_id text[], p_reason text[], p_event_id uuid[],
                     p_detail jsonb[], OUT moved bigint, OUT logged bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  bad text;
BEGIN
  SELECT t.case_id INTO bad
    FROM (SELECT t.*, c.state AS cur_state, c.version AS cur_version,
                 lag(t.to_state) OVER w AS prev_to, row_number() OVER w AS k
            FROM unnest(p_case_id, p_version, p_from, p_to) AS t(case_id, version, from_state, to_state)
            LEFT JOIN cases.cases c ON c.case_id = t.case_id
          WINDOW w AS (PARTITION BY t.case_id ORDER BY t.version)) t
   WHERE t.cur_version IS NULL OR t.version <> t.cur_version + t.k
      OR t.from_state IS DISTINCT FROM coalesce(t.prev_to, t.cur_state)
      OR NOT EXISTS (SELECT 1 FROM cases.legal_moves m
                      WHERE m.from_state = t.from_state AND m.to_state = t.to_state)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'illegal case move'
      USING ERRCODE = 'check_violation', DETAIL = format('case %s', bad),
            HINT = 'moves chain from the stored state and version, each one legal';
  END IF;
  UPDATE cases.cases c SET state = l.to_state, version = l.version, updated_at = now()
    FROM (SELECT DISTINCT ON (t.case_id) t.case_id, t.version, t.to_state
            FROM unnest(p_case_id, p_version, p_to) AS t(case_id, version, to_state)
           ORDER BY t.case_id, t.version DESC) l
   WHERE c.case_id = l.case_id;
  GET DIAGNOSTICS moved = ROW_COUNT;
  INSERT INTO cases.timeline (case_id, version, from_state, to_state, actor_kind, actor_id, reason,
                              event_id, detail)
  SELECT * FROM unnest(p_case_id, p_version, p_from, p_to, p_actor_kind, p_actor_id, p_reason,
                       p_event_id, p_detail);
  GET DIAGNOSTICS logged = ROW_COUNT;
END $$;
REVOKE EXECUTE ON FUNCTION move(text[], bigint[], text[], text[], text[], text[], text[], uuid[],
                                jsonb[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION timeline_append_only() FROM PUBLIC;

GRANT SELECT ON cases, timeline, case_lines, sla_clocks, case_evidence, case_messages, legal_moves
  TO as_cases_reader;
-- Every worker checks at start that the migrations it needs are applied.
GRANT SELECT ON schema_migrations TO PUBLIC;
GRANT INSERT ON cases, timeline, case_lines, sla_clocks, case_evidence, case_messages
  TO as_cases_opener;
GRANT USAGE ON SEQUENCE case_number_seq, case_evidence_id_seq, case_messages_id_seq
  TO as_cases_opener;
GRANT EXECUTE ON FUNCTION move(text[], bigint[], text[], text[], text[], text[], text[], uuid[],
                               jsonb[]) TO as_cases_mover;
GRANT UPDATE (updated_at) ON cases TO as_cases_mover;
GRANT UPDATE (met_at, breached_at) ON sla_clocks TO as_cases_clock;
