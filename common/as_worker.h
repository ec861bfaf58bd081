/* as_worker: the runtime every service's main() hands itself to.
 *
 * A service describes itself in an as_service_t (name, input topics, the
 * payload types it accepts, its migrations, its configuration table and its
 * handler) and calls as_worker_main. The runtime then owns the process: it
 * reads the AS_* environment, applies migrations, and runs one libuv loop
 * that drives the consumer (batches), the outbox relay, the deadline
 * scanner, signals (SIGHUP calls the service's reload) and the HTTP
 * probe/metrics listener, until SIGTERM or SIGINT, and returns the process
 * exit code.
 *
 * Batch contract: for every batch the runtime opens one transaction, claims
 * the event ids in the inbox, calls handle() with the fresh messages, writes
 * published events and dead letters to the outbox and commits; only then
 * are the offsets committed. If handle() returns a transient error
 * (-EAGAIN from as_db) the batch is retried later with backoff and the
 * worker reports not ready; any other error rolls the batch back and replays
 * it one message per transaction, so that the message at fault alone is
 * dead-lettered (handler_failed) and the rest are applied.
 *
 * Ownership: the service struct, its tables and state are the service's and
 * must outlive as_worker_main; the runtime never frees them. */
#ifndef AS_WORKER_H
#define AS_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "as_config.h"
#include "as_db.h"
#include "as_err.h"
#include "as_log.h"
#include "as_metrics.h"
#include "as_migrate.h"
#include "as_tx.h"

typedef struct as_worker as_worker_t;

typedef struct as_service {
  const char *name;                 /* "intake"; also the default schema and group suffix */
  const char *summary;              /* one line for --help */
  const char *const *topics;        /* input topics */
  size_t ntopics;
  const Aftersales__V1__Envelope__PayloadCase *accepts; /* others are dead-lettered */
  size_t naccepts;
  const as_migration_t *migrations; /* the service's own, in its schema; may be NULL */
  const as_cfg_param_t *config;     /* service-specific AS_* variables; may be NULL */
  size_t nconfig;
  void *config_out;                 /* filled by as_config_load before init */

  /* Called once after migrations, before consuming; returns 0 or -errno.
   * *state is passed back to every other callback. */
  int (*init)(as_worker_t *w, void **state);
  void (*fini)(void *state);

  /* Applies msgs[0..n) (all AS_MSG_NEW) inside the batch transaction. May
   * mark single messages dead with as_tx_reject (before writing for them).
   * Returns 0 or an as_db error. */
  int (*handle)(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);

  /* Called for each due deadline row (as_deadline_add) in a scanner
   * transaction; returns 0 or an as_db error. May be NULL. */
  int (*on_deadline)(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                     int64_t due_us);

  /* Called on SIGHUP on the loop thread, between batches; returns 0 or a
   * negative error after logging why (the service keeps its old settings).
   * May be NULL. */
  int (*reload)(void *state);
} as_service_t;

/* Runs the service; returns the process exit code (0 on clean shutdown,
 * 1 on a fatal runtime error, 2 on bad configuration). */
AS_MUST_CHECK int as_worker_main(const as_service_t *svc, int argc, char **argv);

/* For services: the worker's log, metrics registry and schema. */
const as_log_t *as_worker_log(const as_worker_t *w);
as_metrics_t *as_worker_metrics(as_worker_t *w);
const char *as_worker_schema(const as_worker_t *w);

#endif
