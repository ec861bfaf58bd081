-- cases.move checks and writes in one pass: each case's moves are grouped
-- (first and last version, first from-state, last to-state, whether they
-- chain and are legal) and the UPDATE writes only the cases whose group
-- starts from the stored state and version. Fewer cases moved than named
-- means a move did not chain: the batch is refused as before, and only
-- then is the culprit looked up for the message. 005's separate check read
-- every named case a second time and cost as much as the write.
CREATE OR REPLACE FUNCTION move(p_case_id text[], p_version bigint[], p_from text[], p_to text[],
                                p_actor_kind text[], p_actor_id text[], p_reason text[],
                                p_event_id uuid[], p_detail jsonb[], OUT moved bigint,
                                OUT logged bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  named bigint;
  bad text;
BEGIN
  UPDATE cases.cases c SET state = g.last_to, version = g.last_version, updated_at = now()
    FROM (SELECT t.case_id, count(*) AS n, min(t.version) AS first_version,
                 max(t.version) AS last_version,
                 (array_agg(t.from_state ORDER BY t.version))[1] AS first_from,
                 (array_agg(t.to_state ORDER BY t.version DESC))[1] AS last_to,
                 bool_and(m.from_state IS NOT NULL
                          AND t.from_state = coalesce(t.prev_to, t.from_state)) AS chained
            FROM (SELECT u.*, lag(u.to_state) OVER (PARTITION BY u.case_id ORDER BY u.version)
                         AS prev_to
                    FROM unnest(p_case_id, p_version, p_from, p_to)
                         AS u(case_id, version, from_state, to_state)) t
            LEFT JOIN cases.legal_moves m
                   ON m.from_state = t.from_state AND m.to_state = t.to_state
           GROUP BY t.case_id) g
   WHERE c.case_id = g.case_id AND g.chained AND c.version = g.first_version - 1
     AND c.state = g.first_from AND g.last_version - g.first_version + 1 = g.n;
  GET DIAGNOSTICS moved = ROW_COUNT;
  SELECT count(DISTINCT u.case_id) INTO named FROM unnest(p_case_id) AS u(case_id);
  IF moved <> named OR array_position(p_case_id, NULL) IS NOT NULL THEN
    SELECT t.case_id INTO bad
      FROM (SELECT t.*, c.state AS cur_state, c.version AS cur_version,
                   lag(t.to_state) OVER w AS prev_to, row_number() OVER w AS k
              FROM unnest(p_case_id, p_version, p_from, p_to)
                   AS t(case_id, version, from_state, to_state)
              LEFT JOIN cases.cases c ON c.case_id = t.case_id
            WINDOW w AS (PARTITION BY t.case_id ORDER BY t.version)) t
     WHERE t.cur_version IS NULL OR t.version <> t.cur_version + t.k
        OR t.from_state IS DISTINCT FROM coalesce(t.prev_to, t.cur_state)
        OR NOT EXISTS (SELECT 1 FROM cases.legal_moves m
                        WHERE m.from_state = t.from_state AND m.to_state = t.to_state)
     LIMIT 1;
    RAISE EXCEPTION 'illegal case move'
      USING ERRCODE = 'check_violation', DETAIL = format('case %s', coalesce(bad, '(none named)')),
            HINT = 'moves chain from the stored state and version, each one legal';
  END IF;
  INSERT INTO cases.timeline (case_id, version, from_state, to_state, actor_kind, actor_id, reason,
                              event_id, detail)
  SELECT * FROM unnest(p_case_id, p_version, p_from, p_to, p_actor_kind, p_actor_id, p_reason,
                       p_event_id, p_detail);
  GET DIAGNOSTICS logged = ROW_COUNT;
END $$;
