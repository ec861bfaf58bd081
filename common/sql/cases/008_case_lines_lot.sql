-- Issue 12: the production lot of a case's line (OrderLine.lot_id, '' when
-- upstream did not say), written by intake with the line, as CaseOpened's
-- CaseLine.lot_id carries it: whoever reads the shared tables (inspection's
-- defect clusters per lot, an agent's view) sees which lot a claimed or
-- proactively contacted line came from without intake's projection.
ALTER TABLE cases.case_lines ADD COLUMN lot_id text NOT NULL DEFAULT '';
