/* as_db: one PostgreSQL connection with reconnect, and error classes.
 *
 * Queries are synchronous libpq calls on the loop thread: the database is
 * on a local socket or a nearby host, each statement of a batch is bulk
 * (arrays via unnest), so a call is short. What matters is telling a
 * transient failure (connection lost, server shutting down, serialization
 * failure: retry the batch later) from a permanent one (this batch's data
 * broke a constraint: find and dead-letter the culprit).
 *
 * The schema reaches SQL one way: every connection starts with search_path
 * set to the service's schema (and nothing else), so statements name the
 * service's own tables unqualified ("outbox", "orders") and the shared case
 * tables qualified ("cases.cases"); no statement text carries a schema.
 *
 * Ownership: as_db_t is caller-owned (embed it); the DSN and schema are
 * borrowed and must outlive it. Results from as_db_query are owned by the caller
 * (PQclear). */
#ifndef AS_DB_H
#define AS_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "as_log.h"

typedef struct as_db {
  const char *dsn;        /* borrowed */
  const char *app_name;   /* borrowed: application_name shown in pg_stat_activity */
  const char *schema;     /* borrowed: the connection's search_path; NULL leaves the server's */
  const as_log_t *log;    /* borrowed */
  PGconn *conn;           /* owned; NULL while disconnected */
  char sqlstate[6];       /* of the last failure, "" if none or no server answer */
  char err[512];          /* the last failure's primary message, one line */
  unsigned long reconnects;
  /* Called with the socket fd just before the connection is closed, so an
   * fd watcher can stop first (closing a watched fd is undefined in libuv). */
  void (*on_close)(void *arg, int fd);
  void *on_close_arg;
} as_db_t;

/* schema: the search_path, e.g. a plain lower-case identifier, or NULL. */
void as_db_init(as_db_t *db, const char *dsn, const char *app_name, const char *schema,
                const as_log_t *log);

/* Connects if not connected (or the connection went bad) and sets the
 * schema as search_path. Returns 0 or -ECONNREFUSED with db->err set. */
int as_db_ensure(as_db_t *db);

void as_db_close(as_db_t *db); /* idempotent */

/* Runs sql with text parameters (vals may hold NULLs). On success returns 0
 * and, if out is not NULL, hands the result to the caller. On failure
 * returns -EAGAIN (transient: retry later) or -EIO (permanent), with
 * db->sqlstate and db->err set; the connection is dropped when it went bad. */
int as_db_query(as_db_t *db, const char *sql, int n, const char *const *vals, PGresult **out);

/* Same with per-parameter lengths and formats (1 = binary) and a result
 * format (1 = binary). */
int as_db_query_ex(as_db_t *db, const char *sql, int n, const char *const *vals, const int *lens,
                   const int *fmts, int result_format, PGresult **out);

/* Classifies a result of this connection (also one got asynchronously
 * with PQgetResult): 0 for success, else -EAGAIN / -EIO as above. Does not
 * take ownership of r. */
int as_db_check(as_db_t *db, PGresult *r);

/* BEGIN / COMMIT / ROLLBACK shorthands with the same error contract.
 * as_db_rollback never fails visibly (a dead connection has no transaction). */
int as_db_begin(as_db_t *db);
int as_db_commit(as_db_t *db);
void as_db_rollback(as_db_t *db);

/* True if sqlstate (5 characters) names a condition worth retrying. */
bool as_db_sqlstate_transient(const char *sqlstate);

#endif
