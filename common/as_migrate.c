/* as_migrate: applies embedded, versioned SQL migrations under an advisory
 * lock, each in its own transaction together with its bookkeeping row. */
#include "as_migrate.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool as_migrate_ident_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 62 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_')) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
      return false;
  return true;
}

/* Runs sql (no parameters, may hold several statements); copies the
 * server's message on failure. */
static int run(PGconn *c, const char *sql, char *err, size_t errlen) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -EIO;
  if (rc < 0) snprintf(err, errlen, "%s", PQresultErrorMessage(r));
  PQclear(r);
  return rc;
}

/* Runs a statement with text parameters; copies the server's message on
 * failure. Returns 1 if it returned a row, 0 if not, or -EIO. */
static int run_params(PGconn *c, const char *sql, int n, const char *const *vals, char *err,
                      size_t errlen) {
  PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  int rc = st == PGRES_TUPLES_OK ? PQntuples(r) > 0 : st == PGRES_COMMAND_OK ? 0 : -EIO;
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (rc < 0 && state && strcmp(state, "42501") == 0) rc = -EACCES; /* insufficient_privilege */
  if (rc < 0) snprintf(err, errlen, "%s", PQresultErrorMessage(r));
  PQclear(r);
  return rc;
}

/* Inside a transaction: the schema is the search_path until it ends (SET
 * LOCAL), so migrations name their tables unqualified and the session's
 * own search_path is what it was afterwards. */
static int enter_schema(PGconn *c, const char *schema, char *err, size_t errlen) {
  const char *vals[1] = {schema};
  int rc = run(c, "BEGIN", err, errlen);
  if (rc == 0)
    rc = run_params(c, "SELECT set_config('search_path', $1, true)", 1, vals, err, errlen);
  return rc < 0 ? rc : 0;
}

static int end_tx(PGconn *c, int rc, char *err, size_t errlen) {
  char ignore[8];
  if (rc == 0) return run(c, "COMMIT", err, errlen);
  run(c, "ROLLBACK", ignore, sizeof ignore);
  return rc;
}

/* Applies m unless the books already have it: 1 applied, 0 was there. */
static int apply_one(PGconn *c, const char *schema, const char *source, const as_migration_t *m,
                     char *err, size_t errlen) {
  const char *params[2] = {source, m->version};
  int rc = enter_schema(c, schema, err, errlen);
  int done =
      rc < 0 ? rc
             : run_params(c, "SELECT 1 FROM schema_migrations WHERE source = $1 AND version = $2",
                          2, params, err, errlen);
  rc = done < 0 ? done : 0;
  if (rc == 0 && !done) rc = run(c, m->sql, err, errlen);
  if (rc == 0 && !done)
    rc = run_params(c, "INSERT INTO schema_migrations (source, version) VALUES ($1, $2)", 2, params,
                    err, errlen);
  rc = end_tx(c, rc, err, errlen);
  return rc < 0 ? rc : !done;
}

/* The schema and its books. CREATE SCHEMA takes no parameter: the name is
 * a checked identifier, written into the one statement that creates it. */
static int create_books(PGconn *c, const char *schema, char *err, size_t errlen) {
  char sql[96];
  int n = snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", schema);
  int rc = n > 0 && (size_t)n < sizeof sql ? run(c, sql, err, errlen) : -EINVAL;
  if (rc == 0) rc = enter_schema(c, schema, err, errlen);
  if (rc == 0)
    rc = run(c,
             "CREATE TABLE IF NOT EXISTS schema_migrations (source text NOT NULL,"
             " version text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
             " PRIMARY KEY (source, version))",
             err, errlen);
  return end_tx(c, rc, err, errlen);
}

int as_migrate_apply(PGconn *c, const char *schema, const char *source, const as_migration_t *list,
                     char *err, size_t errlen) {
  if (!as_migrate_ident_ok(schema)) {
    snprintf(err, errlen, "schema name \"%.64s\" is not a plain lower-case identifier", schema);
    return -EINVAL;
  }
  const char *lock[1] = {schema};
  int rc =
      run_params(c, "SELECT pg_advisory_lock(hashtext('as_migrate:' || $1))", 1, lock, err, errlen);
  if (rc >= 0) rc = create_books(c, schema, err, errlen);
  int n = 0;
  for (const as_migration_t *m = list; rc >= 0 && m->version; m++) {
    rc = apply_one(c, schema, source, m, err, errlen);
    if (rc > 0) n++;
  }
  char ignore[8];
  run_params(c, "SELECT pg_advisory_unlock(hashtext('as_migrate:' || $1))", 1, lock, ignore,
             sizeof ignore);
  return rc < 0 ? rc : n;
}

/* Counts list's versions absent from the books; a schema or books not made
 * yet count every one. Reads only: any role that may read the books can
 * ask. */
int as_migrate_pending(PGconn *c, const char *schema, const char *source,
                       const as_migration_t *list, char *err, size_t errlen) {
  if (!as_migrate_ident_ok(schema)) {
    snprintf(err, errlen, "schema name \"%.64s\" is not a plain lower-case identifier", schema);
    return -EINVAL;
  }
  char books[80];
  snprintf(books, sizeof books, "%s.schema_migrations", schema);
  const char *vals[1] = {books};
  int rc = run_params(c, "SELECT 1 WHERE to_regclass($1) IS NOT NULL", 1, vals, err, errlen);
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE source = $1 AND version = $2", books);
  int n = 0;
  for (const as_migration_t *m = list; rc >= 0 && m->version; m++) {
    const char *params[2] = {source, m->version};
    int have = rc == 0 ? 0 : run_params(c, sql, 2, params, err, errlen);
    if (have < 0) return have;
    n += !have;
  }
  return rc < 0 ? rc : n;
}
