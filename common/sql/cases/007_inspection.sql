-- Inspection (issue 12). A claim whose evidence QC judges without the goods
-- back goes from the decision's starting states straight to INSPECTING
-- (common/as_case.c's table `legal` has the same pairs).
INSERT INTO cases.legal_moves (from_state, to_state) VALUES
  ('OPEN', 'INSPECTING'), ('AWAITING_EVIDENCE', 'INSPECTING'), ('IN_REVIEW', 'INSPECTING');

-- A timeline row that changes no state (from_state = to_state = the case's
-- state): something happened to the case that its state does not show, such
-- as a closed case compensated after a supplier alert (a new refund, the
-- case not reopened). Like cases.move it is the owner's code: it bumps the
-- version only from the one the caller read under its FOR UPDATE lock and
-- appends the row; it returns the state, or NULL if the case or version did
-- not match (nothing written).
CREATE FUNCTION cases.note(p_case_id text, p_version bigint, p_actor_kind text, p_actor_id text,
                           p_reason text, p_event_id uuid, p_detail jsonb)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  st text;
BEGIN
  UPDATE cases.cases SET version = p_version, updated_at = now()
   WHERE case_id = p_case_id AND version = p_version - 1
  RETURNING state INTO st;
  IF st IS NULL THEN
    RETURN NULL;
  END IF;
  INSERT INTO cases.timeline (case_id, version, from_state, to_state, actor_kind, actor_id, reason,
                              event_id, detail)
  VALUES (p_case_id, p_version, st, st, p_actor_kind, p_actor_id, p_reason, p_event_id, p_detail);
  RETURN st;
END $$;
REVOKE EXECUTE ON FUNCTION cases.note(text, bigint, text, text, text, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cases.note(text, bigint, text, text, text, uuid, jsonb) TO as_cases_mover;
