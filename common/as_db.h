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
 * Every statement is prepared on its connection the first time it runs
 * (keyed by its text) and executed by name afterwards: parsing and planning
 * a bulk statement of a few dozen unnest() arrays costs about as much as
 * running it, so a worker whose batch runs the same dozen statements pays
 * for planning once per connection, not once per batch. Statements built
 * afresh for each call must not come through here in numbers: the cache
 * holds AS_DB_STMT_MAX texts and past that runs statements unprepared
 * (counted in stmt_uncached).
 *
 * Ownership: as_db_t is caller-owned (embed it); the DSN and schema are
 * borrowed and must outlive it. The statement cache is the connection's
 * (copies of the texts, freed by as_db_close). Results from as_db_query are
 * owned by the caller (PQclear). */
#ifndef AS_DB_H
#define AS_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_err.h"
#include "as_log.h"

#define AS_DB_STMT_MAX 128

typedef struct as_db_stmt {
  char *sql;     /* owned copy of the text; NULL = free slot */
  uint64_t hash; /* of the text */
} as_db_stmt_t;

typedef struct as_db {
  const char *dsn;      /* borrowed */
  const char *app_name; /* borrowed: application_name shown in pg_stat_activity */
  const char *schema;   /* borrowed: the connection's search_path; NULL leaves the server's */
  const as_log_t *log;  /* borrowed */
  PGconn *conn;         /* owned; NULL while disconnected */
  char sqlstate[6];     /* of the last failure, "" if none or no server answer */
  char err[512];        /* the last failure's primary message, one line */
  unsigned long reconnects;
  as_db_stmt_t stmts[AS_DB_STMT_MAX]; /* prepared on this connection as "as_<slot>" */
  unsigned long stmt_uncached;        /* statements run unprepared: the cache was full */
  /* Session limits set on every new connection (0 leaves the server's):
   * a statement that runs or waits for a lock longer fails with 57014 or
   * 55P03, both transient, so a stuck statement ends in the caller's retry
   * path instead of blocking the loop for ever. */
  int statement_timeout_ms, lock_timeout_ms;
  /* Inside a transaction, statements whose result the caller does not take
   * (out NULL) are sent without waiting: the next call collects the result
   * first and returns its error, if any. The batch transaction's writes
   * then run on the server while the worker builds the next statement.
   * Off by default; only for a connection no one else drives by hand. */
  bool defer;
  bool in_tx, pending;
  /* Called with the socket fd just before the connection is closed, so an
   * fd watcher can stop first (closing a watched fd is undefined in libuv). */
  void (*on_close)(void *arg, int fd);
  void *on_close_arg;
} as_db_t;

/* schema: the search_path, e.g. a plain lower-case identifier, or NULL. */
void as_db_init(as_db_t *db, const char *dsn, const char *app_name, const char *schema,
                const as_log_t *log);

/* Connects if not connected (or the connection went bad) and sets the
 * schema as search_path and the session limits above. Returns 0 or -ECONNREFUSED with db->err set.
 */
AS_MUST_CHECK int as_db_ensure(as_db_t *db);

void as_db_close(as_db_t *db); /* idempotent */

/* Runs sql with text parameters (vals may hold NULLs). On success returns 0
 * and, if out is not NULL, hands the result to the caller. On failure
 * returns -EAGAIN (transient: retry later) or -EIO (permanent), with
 * db->sqlstate and db->err set; the connection is dropped when it went bad.
 * With db->defer inside a transaction and out NULL, 0 means "sent": the
 * statement's failure is returned by the next call (query, commit). */
AS_MUST_CHECK int as_db_query(as_db_t *db, const char *sql, int n, const char *const *vals,
                              PGresult **out);

/* Same with per-parameter lengths and formats (1 = binary) and a result
 * format (1 = binary). */
AS_MUST_CHECK int as_db_query_ex(as_db_t *db, const char *sql, int n, const char *const *vals,
                                 const int *lens, const int *fmts, int result_format,
                                 PGresult **out);

/* Classifies a result of this connection (also one got asynchronously
 * with PQgetResult): 0 for success, else -EAGAIN / -EIO as above. Does not
 * take ownership of r. */
AS_MUST_CHECK int as_db_check(as_db_t *db, PGresult *r);

/* BEGIN / COMMIT / ROLLBACK shorthands with the same error contract.
 * as_db_rollback never fails visibly (a dead connection has no transaction). */
AS_MUST_CHECK int as_db_begin(as_db_t *db);
AS_MUST_CHECK int as_db_commit(as_db_t *db);
void as_db_rollback(as_db_t *db);

/* True if sqlstate (5 characters) names a condition worth retrying. */
bool as_db_sqlstate_transient(const char *sqlstate);

#endif
