/* as_db: a libpq connection that reconnects on demand and classifies
 * failures as transient or permanent. */
#include "as_db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void as_db_init(as_db_t *db, const char *dsn, const char *app_name, const char *schema,
                const as_log_t *log) {
  memset(db, 0, sizeof *db);
  db->dsn = dsn;
  db->app_name = app_name;
  db->schema = schema;
  db->log = log;
}

static void set_err(as_db_t *db, const char *sqlstate, const char *msg) {
  snprintf(db->sqlstate, sizeof db->sqlstate, "%s", sqlstate ? sqlstate : "");
  snprintf(db->err, sizeof db->err, "%s", msg ? msg : "");
  char *nl = strchr(db->err, '\n');
  if (nl) *nl = '\0';
}

/* Prepared statements die with their session. */
static void stmts_forget(as_db_t *db) {
  for (size_t i = 0; i < AS_DB_STMT_MAX; i++) {
    free(db->stmts[i].sql);
    db->stmts[i].sql = NULL;
  }
}

void as_db_close(as_db_t *db) {
  if (db->conn && db->on_close) db->on_close(db->on_close_arg, PQsocket(db->conn));
  if (db->conn) PQfinish(db->conn);
  db->conn = NULL;
  db->pending = false;
  db->in_tx = false;
  stmts_forget(db);
}

/* Server notices ("schema already exists, skipping") become debug lines
 * instead of raw text on stderr, which must hold JSON lines only. */
static void notice(void *arg, const char *message) {
  const as_db_t *db = arg;
  char line[256];
  snprintf(line, sizeof line, "%s", message);
  line[strcspn(line, "\n")] = '\0';
  if (db->log) AS_DEBUG(db->log, "postgres notice", AS_F_STR("detail", line));
}

/* The search_path and the timeouts, in one round trip; a NULL schema or a
 * 0 timeout keeps the session's value (set_config with its current one). */
static int set_session(as_db_t *db) {
  char st[16], lk[16];
  snprintf(st, sizeof st, "%d", db->statement_timeout_ms);
  snprintf(lk, sizeof lk, "%d", db->lock_timeout_ms);
  const char *vals[3] = {db->schema, db->statement_timeout_ms > 0 ? st : NULL,
                         db->lock_timeout_ms > 0 ? lk : NULL};
  PGresult *r = PQexecParams(
      db->conn,
      "SELECT set_config('search_path', coalesce($1, current_setting('search_path')), false),"
      " set_config('statement_timeout', coalesce($2, current_setting('statement_timeout')), false),"
      " set_config('lock_timeout', coalesce($3, current_setting('lock_timeout')), false)",
      3, NULL, vals, NULL, NULL, 0);
  bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) set_err(db, PQresultErrorField(r, PG_DIAG_SQLSTATE), PQresultErrorMessage(r));
  PQclear(r);
  return ok ? 0 : -EIO;
}

int as_db_ensure(as_db_t *db) {
  if (db->conn && PQstatus(db->conn) == CONNECTION_OK) return 0;
  if (db->conn) {
    as_db_close(db);
    db->reconnects++;
  }
  /* Our defaults first, so that anything the DSN says wins. JIT off: our
   * statements are short bulk OLTP; on freshly filled tables the planner's
   * estimates cross jit_above_cost and compiling takes 10-20 ms, longer
   * than the statement. */
  const char *keys[] = {"connect_timeout", "application_name", "options", "dbname", NULL};
  const char *vals[] = {"3", db->app_name, "-c jit=off", db->dsn, NULL};
  db->conn = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(db->conn) != CONNECTION_OK) {
    set_err(db, "08001", PQerrorMessage(db->conn));
    as_db_close(db);
    return -ECONNREFUSED;
  }
  PQsetNoticeProcessor(db->conn, notice, db);
  /* After connecting, not in the options: a DSN's own options win over
   * ours, and the schema must not depend on what a DSN says. */
  if (set_session(db) < 0) {
    as_db_close(db);
    return -ECONNREFUSED;
  }
  set_err(db, NULL, NULL);
  return 0;
}

bool as_db_sqlstate_transient(const char *s) {
  if (!s || !s[0]) return true;       /* no answer from the server at all */
  return strncmp(s, "08", 2) == 0 ||  /* connection exception */
         strcmp(s, "40001") == 0 ||   /* serialization failure */
         strcmp(s, "40P01") == 0 ||   /* deadlock detected */
         strncmp(s, "53", 2) == 0 ||  /* insufficient resources */
         strncmp(s, "57P", 3) == 0 || /* admin/crash shutdown, cannot connect now */
         strcmp(s, "55P03") == 0 ||   /* lock not available (lock_timeout) */
         strcmp(s, "57014") == 0;     /* query canceled (statement_timeout) */
}

int as_db_check(as_db_t *db, PGresult *r) {
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return 0;
  const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  set_err(db, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL,
          primary    ? primary
          : db->conn ? PQerrorMessage(db->conn)
                     : "not connected");
  bool bad = !db->conn || PQstatus(db->conn) != CONNECTION_OK;
  if (bad) as_db_close(db);
  return (bad || as_db_sqlstate_transient(db->sqlstate)) ? -EAGAIN : -EIO;
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325u;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3u;
  return h;
}

/* The slot holding sql, or a free slot in its probe sequence (sql NULL
 * there), or -1 when the cache is full. */
static int stmt_slot(const as_db_t *db, const char *sql, uint64_t h) {
  for (size_t k = 0; k < AS_DB_STMT_MAX; k++) {
    size_t i = (size_t)((h + k) % AS_DB_STMT_MAX);
    const as_db_stmt_t *s = &db->stmts[i];
    if (!s->sql || (s->hash == h && strcmp(s->sql, sql) == 0)) return (int)i;
  }
  return -1;
}

/* Finds or prepares sql's statement; returns its slot, -1 when the cache is
 * full (run it unprepared), or -2 with *err the failed preparation's result
 * (syntax, missing table, aborted transaction: the statement's own error). */
static int prepared(as_db_t *db, const char *sql, int n, PGresult **err) {
  uint64_t h = fnv1a(sql);
  int slot = stmt_slot(db, sql, h);
  if (slot < 0) {
    db->stmt_uncached++;
    return -1;
  }
  as_db_stmt_t *s = &db->stmts[slot];
  if (s->sql) return slot;
  char name[16], *copy = strdup(sql);
  if (!copy) {
    db->stmt_uncached++; /* out of memory: run it unprepared this time */
    return -1;
  }
  snprintf(name, sizeof name, "as_%d", slot);
  PGresult *p = PQprepare(db->conn, name, sql, n, NULL);
  if (PQresultStatus(p) != PGRES_COMMAND_OK) {
    free(copy);
    *err = p;
    return -2;
  }
  PQclear(p);
  s->sql = copy;
  s->hash = h;
  return slot;
}

/* Runs sql by the name it is prepared under, preparing it first if new. */
static PGresult *exec_cached(as_db_t *db, const char *sql, int n, const char *const *vals,
                             const int *lens, const int *fmts, int result_format) {
  PGresult *err = NULL;
  int slot = prepared(db, sql, n, &err);
  if (slot == -2) return err;
  if (slot < 0) return PQexecParams(db->conn, sql, n, NULL, vals, lens, fmts, result_format);
  char name[16];
  snprintf(name, sizeof name, "as_%d", slot);
  return PQexecPrepared(db->conn, name, n, vals, lens, fmts, result_format);
}

/* Sends sql without waiting for its result (as_db_t.defer); libpq copies
 * the parameters into its output buffer before returning. */
static int send_cached(as_db_t *db, const char *sql, int n, const char *const *vals,
                       const int *lens, const int *fmts) {
  PGresult *err = NULL;
  int slot = prepared(db, sql, n, &err);
  if (slot == -2) {
    int rc = as_db_check(db, err);
    PQclear(err);
    return rc < 0 ? rc : -EIO;
  }
  char name[16];
  snprintf(name, sizeof name, "as_%d", slot);
  int sent = slot < 0 ? PQsendQueryParams(db->conn, sql, n, NULL, vals, lens, fmts, 0)
                      : PQsendQueryPrepared(db->conn, name, n, vals, lens, fmts, 0);
  if (!sent) {
    set_err(db, NULL, PQerrorMessage(db->conn));
    if (PQstatus(db->conn) != CONNECTION_OK) as_db_close(db);
    return -EAGAIN;
  }
  db->pending = true;
  return 0;
}

/* Collects the deferred statement's result: its error, if any, is the
 * caller's (the transaction is aborted on the server anyway). */
static int drain(as_db_t *db) {
  if (!db->pending) return 0;
  db->pending = false;
  int rc = 0;
  for (PGresult *r; db->conn && (r = PQgetResult(db->conn));) {
    if (rc == 0) rc = as_db_check(db, r);
    PQclear(r);
  }
  return rc;
}

/* A migration elsewhere changed what a prepared statement returns
 * ("cached plan must not change result type"): a new session prepares
 * everything afresh, and the batch is retried, not dead-lettered. */
static int replan(as_db_t *db, int rc) {
  if (rc == -EIO && strcmp(db->sqlstate, "0A000") == 0 && strstr(db->err, "cached plan")) {
    as_db_close(db);
    return -EAGAIN;
  }
  return rc;
}

int as_db_query_ex(as_db_t *db, const char *sql, int n, const char *const *vals, const int *lens,
                   const int *fmts, int result_format, PGresult **out) {
  if (out) *out = NULL;
  int rc = replan(db, drain(db));
  if (rc < 0) return rc;
  if (!db->conn) {
    set_err(db, "08003", "not connected");
    return -EAGAIN;
  }
  if (db->defer && db->in_tx && !out && result_format == 0)
    return send_cached(db, sql, n, vals, lens, fmts);
  PGresult *r = exec_cached(db, sql, n, vals, lens, fmts, result_format);
  rc = replan(db, as_db_check(db, r));
  if (rc == 0 && out)
    *out = r;
  else
    PQclear(r);
  return rc;
}

int as_db_query(as_db_t *db, const char *sql, int n, const char *const *vals, PGresult **out) {
  return as_db_query_ex(db, sql, n, vals, NULL, NULL, 0, out);
}

int as_db_begin(as_db_t *db) {
  db->in_tx = true;
  int rc = as_db_query(db, "BEGIN", 0, NULL, NULL);
  if (rc < 0) db->in_tx = false;
  return rc;
}

/* Not deferred: the caller must know the transaction committed. */
int as_db_commit(as_db_t *db) {
  db->in_tx = false;
  return as_db_query(db, "COMMIT", 0, NULL, NULL);
}

void as_db_rollback(as_db_t *db) {
  db->in_tx = false;
  as_ignore(drain(db)); /* the failure that led here was reported already */
  if (!db->conn) return;
  PGresult *r = PQexec(db->conn, "ROLLBACK");
  PQclear(r);
  if (PQstatus(db->conn) != CONNECTION_OK) as_db_close(db);
}
