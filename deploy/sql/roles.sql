-- roles.sql: the fleet's PostgreSQL roles and what each may do, for every
-- stack (scripts/pg.sh for the embedded cluster and the tests, the db-roles
-- service of docker-compose.yml, the aftersales-migrate Job of deploy/k8s,
-- whose ConfigMap scripts/gen_k8s.sh copies from this file). Run it
-- with psql as a role that may create roles (the cluster's admin), on the
-- fleet's database; it is idempotent, so it also rotates passwords:
--
--   AS_DB_PASSWORD_OWNER=... AS_DB_PASSWORD_INTAKE=... \
--     psql -X -v ON_ERROR_STOP=1 -d aftersales -f deploy/sql/roles.sql
--
-- Roles (cluster-wide):
--   aftersales_owner   owns every schema, table and function: migrations run
--                      as it (as-<service> --migrate, or AS_DB_MIGRATE_DSN).
--                      Not a superuser, cannot create roles or databases.
--   as_<service>       one login role per worker: full DML (no TRUNCATE) on
--                      its own schema's tables, nothing on another service's.
--   as_cases_reader, as_cases_opener, as_cases_mover, as_cases_clock
--                      what a worker may do on the shared case tables,
--                      granted on those tables by common/sql/cases migrations
--                      (they exist only once migrated) and given to workers
--                      here: read them; open cases (INSERT only: the
--                      timeline is append-only for every worker); move a
--                      case's state (only through the SECURITY DEFINER
--                      function cases.move); mark SLA clocks met or breached.
-- A password is set from AS_DB_PASSWORD_<ROLE> when that variable is set
-- (never printed); a role without one cannot log in with scram.
--
-- Per database: the schemas exist before any migration (owned by the owner),
-- so that default privileges can say, schema by schema, what the owner's
-- future tables grant to whom.
\set ON_ERROR_STOP on
\getenv pw_owner AS_DB_PASSWORD_OWNER
\getenv pw_intake AS_DB_PASSWORD_INTAKE
\getenv pw_review AS_DB_PASSWORD_REVIEW
\getenv pw_inspection AS_DB_PASSWORD_INSPECTION
\getenv pw_logistics AS_DB_PASSWORD_LOGISTICS
\getenv pw_notification AS_DB_PASSWORD_NOTIFICATION
\getenv pw_probe AS_DB_PASSWORD_PROBE
\if :{?pw_owner}
\else
\set pw_owner ''
\endif
\if :{?pw_intake}
\else
\set pw_intake ''
\endif
\if :{?pw_review}
\else
\set pw_review ''
\endif
\if :{?pw_inspection}
\else
\set pw_inspection ''
\endif
\if :{?pw_logistics}
\else
\set pw_logistics ''
\endif
\if :{?pw_notification}
\else
\set pw_notification ''
\endif
\if :{?pw_probe}
\else
\set pw_probe ''
\endif

BEGIN;
-- Two sessions running this at once (compose restarts, parallel tests)
-- would race on CREATE ROLE: one at a time.
SELECT pg_advisory_xact_lock(hashtext('aftersales:roles.sql'));

CREATE TEMP TABLE as_fleet (svc text PRIMARY KEY, caps text[] NOT NULL, pw text NOT NULL)
  ON COMMIT DROP;
-- The workers and the capabilities each needs on the shared case tables.
-- probe is the runtime's test worker (tests/probe): its own schema only.
-- inspection keeps its own projection of the cases (from CaseOpened) and
-- moves none (review owns every move): nothing on the shared tables.
INSERT INTO as_fleet VALUES
  ('intake', '{reader,opener,mover,clock}', :'pw_intake'),
  ('review', '{reader,mover,clock}', :'pw_review'),
  ('inspection', '{}', :'pw_inspection'),
  ('logistics', '{reader,mover}', :'pw_logistics'),
  ('notification', '{reader}', :'pw_notification'),
  ('probe', '{}', :'pw_probe');

DO $roles$
DECLARE
  r record;
  cap text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'aftersales_owner') THEN
    CREATE ROLE aftersales_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
  END IF;
  FOREACH cap IN ARRAY '{reader,opener,mover,clock}'::text[] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'as_cases_' || cap) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', 'as_cases_' || cap);
    END IF;
  END LOOP;
  FOR r IN SELECT * FROM as_fleet LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'as_' || r.svc) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION',
                     'as_' || r.svc);
    END IF;
    IF r.pw <> '' THEN
      EXECUTE format('ALTER ROLE %I PASSWORD %L', 'as_' || r.svc, r.pw);
    END IF;
    FOREACH cap IN ARRAY r.caps LOOP
      EXECUTE format('GRANT %I TO %I', 'as_cases_' || cap, 'as_' || r.svc);
    END LOOP;
    -- A capability taken out of the list above is taken from the role too
    -- (a cluster set up by an older roles.sql converges).
    FOREACH cap IN ARRAY '{reader,opener,mover,clock}'::text[] LOOP
      IF NOT cap = ANY (r.caps) AND EXISTS (SELECT 1 FROM pg_auth_members m
           WHERE m.roleid = ('as_cases_' || cap)::regrole AND m.member = ('as_' || r.svc)::regrole) THEN
        EXECUTE format('REVOKE %I FROM %I', 'as_cases_' || cap, 'as_' || r.svc);
      END IF;
    END LOOP;
  END LOOP;
END $roles$;

SELECT format('ALTER ROLE aftersales_owner PASSWORD %L', :'pw_owner') WHERE :'pw_owner' <> ''
\gexec

-- This database: the owner may create schemas (migrations say CREATE SCHEMA
-- IF NOT EXISTS); nobody may create objects in public.
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO aftersales_owner', current_database())
\gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $schemas$
DECLARE
  r record;
  role text;
BEGIN
  EXECUTE 'CREATE SCHEMA IF NOT EXISTS cases AUTHORIZATION aftersales_owner';
  -- Functions are callable only when granted (cases.move is SECURITY DEFINER).
  ALTER DEFAULT PRIVILEGES FOR ROLE aftersales_owner IN SCHEMA cases
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
  FOR r IN SELECT * FROM as_fleet LOOP
    role := 'as_' || r.svc;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role);
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION aftersales_owner', r.svc);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', r.svc, role);
    EXECUTE format('GRANT USAGE ON SCHEMA cases TO %I', role);
    -- Tables the owner creates later, and those it already made.
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE aftersales_owner IN SCHEMA %I'
                   ' GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', r.svc, role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE aftersales_owner IN SCHEMA %I'
                   ' GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', r.svc, role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I',
                   r.svc, role);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO %I', r.svc, role);
  END LOOP;
END $schemas$;
COMMIT;
