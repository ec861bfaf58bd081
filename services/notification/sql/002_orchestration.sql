-- The notification worker's orchestration side (issue 14): the little it
-- keeps of each case to tell its events (who the buyer is, the case
-- number, the order the events are told in, what a reminder or a survey
-- needs later), the buyers' survey answers, and quiet hours as a function
-- of the buyer's time zone (PostgreSQL's zone database: no TZ games in C).

CREATE TABLE cases (
  case_id          text PRIMARY KEY,
  case_number      text NOT NULL DEFAULT '',
  buyer_id         text NOT NULL,
  locale           text NOT NULL DEFAULT '',
  submitted_at_us  bigint NOT NULL DEFAULT 0,
  seq              bigint NOT NULL DEFAULT 0,      -- the last case_seq given to a delivery
  return_address   text NOT NULL DEFAULT '',       -- for the ship-by reminder
  packaging        text NOT NULL DEFAULT '',
  ship_by_us       bigint NOT NULL DEFAULT 0,
  return_shipped   boolean NOT NULL DEFAULT false, -- ReturnShipped seen: no reminder
  closed_at_us     bigint NOT NULL DEFAULT 0
);

-- The satisfaction survey's answers, one per case (the first answer wins),
-- for reports.
CREATE TABLE surveys (
  case_id          text PRIMARY KEY,
  buyer_id         text NOT NULL,
  notification_id  text NOT NULL DEFAULT '',
  score            int NOT NULL CHECK (score BETWEEN 1 AND 5),
  comment          text NOT NULL DEFAULT '',
  answered_at_us   bigint NOT NULL,
  recorded_at      timestamptz NOT NULL DEFAULT now()
);

-- When a non-urgent message may go: now, or the end of the buyer's quiet
-- hours [qs, qe) (minutes after local midnight in zone tz; qs > qe spans
-- midnight; qs = qe: none).
CREATE FUNCTION quiet_until(tz text, qs int, qe int) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN qs = qe THEN now()
    WHEN qs < qe AND m >= qs AND m < qe THEN (d + make_interval(mins => qe)) AT TIME ZONE tz
    WHEN qs > qe AND m >= qs THEN ((d + 1) + make_interval(mins => qe)) AT TIME ZONE tz
    WHEN qs > qe AND m < qe THEN (d + make_interval(mins => qe)) AT TIME ZONE tz
    ELSE now() END
  FROM (SELECT (now() AT TIME ZONE tz) AS l) x,
       LATERAL (SELECT l::date AS d,
                       (extract(hour FROM l) * 60 + extract(minute FROM l))::int AS m) y
$$;

-- The zone names PostgreSQL knew when migrated: a contact's zone is looked
-- up here (an index probe) before pg_timezone_names, which reads the whole
-- zone database on every query (tens of milliseconds); a zone added by a
-- later tzdata update is still found there.
CREATE TABLE zones (name text PRIMARY KEY);
INSERT INTO zones SELECT DISTINCT name FROM pg_timezone_names;
