-- The case's satellite tables (timeline, case_lines, sla_clocks,
-- case_evidence, case_messages) lose their foreign keys to cases.cases.
--
-- Why: a foreign key is checked by a trigger that looks the parent up and
-- locks it FOR KEY SHARE, once per child row. Opening a case writes five or
-- six such rows (its first timeline entry, its lines, its clocks, the
-- comment), and on the 2-core reference machine those checks cost about
-- 6 us a row, a fifth of intake's database time per request. The rows
-- cannot be orphaned by the fleet itself: a case's satellites are written
-- in the transaction that inserts or locks the case (as_case_open_many,
-- as_case_transition_many, intake's and review's bulk statements keyed by
-- the batch's case ids), nothing deletes a case, and the integration
-- suite asserts after every test that no satellite row lacks its case
-- (conftest's "orphans" invariant). Large order systems drop foreign keys
-- on hot write paths for the same reason and keep the rule in the writer.
ALTER TABLE cases.timeline DROP CONSTRAINT IF EXISTS timeline_case_id_fkey;
ALTER TABLE cases.case_lines DROP CONSTRAINT IF EXISTS case_lines_case_id_fkey;
ALTER TABLE cases.sla_clocks DROP CONSTRAINT IF EXISTS sla_clocks_case_id_fkey;
ALTER TABLE cases.case_evidence DROP CONSTRAINT IF EXISTS case_evidence_case_id_fkey;
ALTER TABLE cases.case_messages DROP CONSTRAINT IF EXISTS case_messages_case_id_fkey;

-- sla_clocks_open indexed open clocks by due time for a scan nobody runs
-- (deadlines fire from each service's own deadlines table). Worse than
-- the cost on every insert: for review's bulk "mark these cases' review
-- clocks met" a cached generic plan preferred walking every open clock
-- through this index to the primary key, about 170 us a case at 20,000
-- open cases.
DROP INDEX IF EXISTS cases.sla_clocks_open;
