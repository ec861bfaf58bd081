/* as_migrate: versioned SQL migrations embedded in the binary and applied
 * at start.
 *
 * Each migration is a file NNN_name.sql; scripts/embed_sql.sh turns a folder
 * of them into an as_migration_t array ending with {NULL, NULL}. A migration
 * runs with the target schema as its search_path (SET LOCAL: the session's
 * own is untouched), so it names its tables unqualified and the same text
 * serves any schema; a function it creates should say SET search_path FROM
 * CURRENT, so that its body resolves names in that schema whoever calls it.
 * Applied versions are recorded in <schema>.schema_migrations; a session
 * advisory lock per schema makes concurrent starts of several instances
 * safe. Migrations run as the owner role (deploy/sql/roles.sql), never as a
 * worker's own role: objects they create belong to the owner, and the
 * default privileges of each schema give the worker roles their share.
 *
 * Ownership: arrays are static; nothing returned needs freeing. */
#ifndef AS_MIGRATE_H
#define AS_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "as_err.h"

typedef struct as_migration {
  const char *version; /* "001_inbox_outbox" */
  const char *sql;
} as_migration_t;

extern const as_migration_t as_sql_runtime[]; /* per-service inbox/outbox/deadlines */
extern const as_migration_t as_sql_cases[];   /* the shared case tables, schema "cases" */

struct pg_conn;

/* Applies every migration of list not yet recorded in schema under source
 * (e.g. "runtime", "probe": several lists may share a schema). Returns the
 * number applied (>= 0), or -EINVAL (bad schema name) / -EIO (-EACCES: a
 * permission refused) with the server's message in err. */
AS_MUST_CHECK int as_migrate_apply(struct pg_conn *conn, const char *schema, const char *source,
                                   const as_migration_t *list, char *err, size_t errlen);

/* The number of list's migrations not yet recorded in schema under source
 * (0: all applied; a missing schema counts them all), for a worker whose
 * role may not migrate: it waits for the owner's migration job instead.
 * Returns that count, or -EINVAL / -EIO with the server's message in err;
 * -EACCES when the role may not read the bookkeeping yet (the job creates
 * the table, then grants it: a check in between is refused). */
AS_MUST_CHECK int as_migrate_pending(struct pg_conn *conn, const char *schema, const char *source,
                                     const as_migration_t *list, char *err, size_t errlen);

/* True for a safe lower-case SQL identifier ([a-z_][a-z0-9_]{0,61}). */
bool as_migrate_ident_ok(const char *s);

#endif
