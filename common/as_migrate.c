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
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
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

/* Returns a malloc'd copy of sql with every {{schema}} replaced, or NULL. */
static char *substitute(const char *sql, const char *schema) {
  static const char tok[] = "{{schema}}";
  size_t n = 0, tl = sizeof tok - 1, sl = strlen(schema);
  for (const char *p = sql; (p = strstr(p, tok)); p += tl) n++;
  char *out = malloc(strlen(sql) + n * sl + 1);
  if (!out) return NULL;
  char *o = out;
  for (const char *p = sql;;) {
    const char *hit = strstr(p, tok);
    size_t len = hit ? (size_t)(hit - p) : strlen(p);
    memcpy(o, p, len);
    o += len;
    if (!hit) break;
    memcpy(o, schema, sl);
    o += sl;
    p = hit + tl;
  }
  *o = '\0';
  return out;
}

static int applied(PGconn *c, const char *schema, const char *source, const char *version,
                   char *err, size_t errlen) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT 1 FROM %s.schema_migrations WHERE source = $1 AND version = $2",
           schema);
  const char *params[2] = {source, version};
  PGresult *r = PQexecParams(c, sql, 2, NULL, params, NULL, NULL, 0);
  int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) > 0 : -EIO;
  if (rc < 0) snprintf(err, errlen, "%s", PQresultErrorMessage(r));
  PQclear(r);
  return rc;
}

static int apply_one(PGconn *c, const char *schema, const char *source, const as_migration_t *m,
                     char *err, size_t errlen) {
  char *sql = substitute(m->sql, schema);
  if (!sql) return -ENOMEM;
  char rec[256];
  snprintf(rec, sizeof rec, "INSERT INTO %s.schema_migrations (source, version) VALUES ($1, $2)",
           schema);
  const char *params[2] = {source, m->version};
  int rc = run(c, "BEGIN", err, errlen);
  if (rc == 0) rc = run(c, sql, err, errlen);
  if (rc == 0) {
    PGresult *r = PQexecParams(c, rec, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      snprintf(err, errlen, "%s", PQresultErrorMessage(r));
      rc = -EIO;
    }
    PQclear(r);
  }
  char ignore[8];
  if (rc == 0) rc = run(c, "COMMIT", err, errlen);
  else run(c, "ROLLBACK", ignore, sizeof ignore);
  free(sql);
  return rc;
}

int as_migrate_apply(PGconn *c, const char *schema, const char *source, const as_migration_t *list,
                     char *err, size_t errlen) {
  if (!as_migrate_ident_ok(schema)) {
    snprintf(err, errlen, "schema name \"%.64s\" is not a plain lower-case identifier", schema);
    return -EINVAL;
  }
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT pg_advisory_lock(hashtext('as_migrate:%s'));"
           "CREATE SCHEMA IF NOT EXISTS %s;"
           "CREATE TABLE IF NOT EXISTS %s.schema_migrations (source text NOT NULL,"
           " version text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
           " PRIMARY KEY (source, version))",
           schema, schema, schema);
  int rc = run(c, sql, err, errlen), n = 0;
  for (const as_migration_t *m = list; rc == 0 && m->version; m++) {
    rc = applied(c, schema, source, m->version, err, errlen);
    if (rc == 0 && (rc = apply_one(c, schema, source, m, err, errlen)) == 0) n++;
    if (rc == 1) rc = 0;
  }
  char unlock[128], ignore[8];
  snprintf(unlock, sizeof unlock, "SELECT pg_advisory_unlock(hashtext('as_migrate:%s'))", schema);
  run(c, unlock, ignore, sizeof ignore);
  return rc < 0 ? rc : n;
}
