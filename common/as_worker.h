/* as_worker: the runtime every service's main() hands itself to.
 *
 * A service is its tables and its domain code. It describes itself in one
 * static as_service_t (name, configuration table, state size, metrics,
 * payload routes, deadline kinds, lifecycle hooks) and its main.c ends with
 * AS_SERVICE_MAIN(service). The runtime then owns the process: it reads
 * the AS_* environment into a configuration block it allocates, allocates
 * the service's zeroed state, registers its metrics into it and calls init
 * (which checks the service's files: all of this before any connection, so
 * a bad setting fails at once), starts the HTTP probe/metrics listener
 * (/readyz 503 "migrations_pending" meanwhile), applies the migrations
 * (the build embeds services/<name>/sql/NNN_*.sql as as_service_migrations;
 * retried with backoff while the database is away), and then runs the
 * consumer (batches), the outbox relay, the deadline scanner and signals
 * (SIGHUP calls reload) on one libuv loop until SIGTERM or SIGINT, and
 * returns the process exit code.
 *
 * Topics are declared once, in proto/topics.tsv: the worker subscribes to
 * every topic whose consumers column names the service (the Kubernetes
 * autoscaling triggers come from the same column). Every payload on them
 * is accepted; a payload without a route is ignored, or dead-lettered
 * (unexpected_payload) if the service sets refuse_unrouted and the topic
 * is not one of its shared_topics.
 *
 * The database: every connection's search_path is the service's schema
 * (AS_DB_SCHEMA, default the service name), so statements name the
 * service's own tables unqualified and the shared case tables as cases.*.
 *
 * Batch contract: for every batch the runtime opens one transaction, claims
 * the event ids in the inbox, dispatches the fresh messages over the routes
 * (as_route.h), writes published events and dead letters to the outbox and
 * commits; only then are the offsets committed. If a handler returns a
 * transient error (-EAGAIN from as_db) the batch is retried later with
 * backoff and the worker reports not ready; any other error rolls the batch
 * back and bisects it (each half in its own transaction, left before right,
 * recursively), so that the messages at fault alone are dead-lettered
 * (handler_failed) and the rest are applied in order, at a cost of about
 * log2(batch) transactions per culprit.
 *
 * Ownership: the service struct and its tables are static. The runtime owns
 * the configuration and state blocks: it frees them after fini, which
 * releases only what init acquired (the state's own pointers). */
#ifndef AS_WORKER_H
#define AS_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "as_config.h"
#include "as_db.h"
#include "as_err.h"
#include "as_log.h"
#include "as_metrics.h"
#include "as_migrate.h"
#include "as_route.h"
#include "as_tx.h"

typedef struct as_worker as_worker_t;

typedef struct as_service {
  const char *name;    /* "intake": the schema, group, binary suffix and topics.tsv consumer */
  const char *summary; /* one line for --help */

  /* AS_<SERVICE>_* variables, loaded into a zeroed block of conf_size
   * bytes (the rows' offsets are into it) before init. May be NULL. */
  const as_cfg_param_t *config;
  size_t nconfig, conf_size;

  /* The service's state: a zeroed block of state_size bytes, its metric
   * pointers set from metrics[] (as_metrics.h) before init. */
  size_t state_size;
  const as_metric_def_t *metrics;
  size_t nmetrics;

  /* What the service does with each payload and each deadline kind
   * (as_route.h). */
  const as_route_t *routes;
  size_t nroutes;
  bool refuse_unrouted; /* dead-letter payloads without a route instead of ignoring them */
  /* NULL, or a NULL-terminated list of topics the service shares with
   * others (intake reads aftersales.inspection.v1 for supplier alerts
   * only): a payload without a route on them is someone else's event and
   * ignored, even when refuse_unrouted is set. */
  const char *const *shared_topics;
  /* NULL, or a NULL-terminated list of topics whose messages may carry
   * personal data (notification's contacts): a dead letter of one of
   * their messages, whatever refused it, keeps no original bytes, only
   * their size and SHA-256, the reason, the offset and the key if it is
   * an id; the detail of a handler failure is its SQLSTATE alone (the
   * database's text may quote a value), in the log too. */
  const char *const *withheld_dead_letter_topics;
  const as_deadline_kind_t *deadlines;
  size_t ndeadlines;
  /* Called in the batch's transaction for each message the runtime
   * refused before any route saw it (undecodable, a bad string, the
   * envelope's contract, too large, an event id reused with other bytes,
   * an unexpected payload) or that its route failed on alone
   * (handler_failed, after bisection), with m->dead_reason and
   * m->dead_detail set and
   * m->env NULL unless it decoded: a service whose senders are owed an
   * answer for every message (intake's requests) answers it here from the
   * raw bytes (m->rkm). The message is dead-lettered either way. Returns 0
   * or a negative error, as a route does. May be NULL. */
  int (*refused)(void *state, as_tx_t *tx, const as_msg_t *m);

  /* Called once before any connection (the migrations come after), with
   * the loaded configuration and the state: it reads and checks the
   * service's files and settings and must not touch the database. Returns
   * 0, -EINVAL for a bad setting or file (exit code 2) or another -errno.
   * May be NULL. */
  int (*init)(as_worker_t *w, const void *conf, void *state);
  /* Releases what init acquired, also after init failed (the state was
   * zeroed: what init did not get is NULL); the runtime then frees the
   * blocks. May be NULL. */
  void (*fini)(void *state);
  /* Called on SIGHUP on the loop thread, between batches; returns 0 or a
   * negative error after logging why (the service keeps its old settings).
   * May be NULL. */
  int (*reload)(void *state);

  /* Work outside the batches (the notification sender): start is called
   * once the worker is live (migrations applied, consumer and relay
   * started), on the loop thread; it may start its own libuv handles on
   * as_worker_loop(w) and run transactions with as_worker_tx. stop is
   * called once at the start of shutdown (or not at all if start was never
   * called): it stops taking work and uv_closes every handle it started
   * (the loop runs until they are closed); work in flight is abandoned, so
   * whatever it holds must be safe to take again later (a lease). start
   * returns 0 or a negative error (the worker then stops, exit code 1).
   * Both may be NULL; the batch path never calls them. */
  int (*start)(as_worker_t *w, void *state);
  void (*stop)(void *state);
} as_service_t;

/* The service's migrations, embedded by the build (scripts/embed_sql.sh). */
extern const as_migration_t as_service_migrations[];

/* Runs the service; returns the process exit code (0 on clean shutdown,
 * 1 on a fatal runtime error, 2 on bad configuration). */
AS_MUST_CHECK int as_worker_main(const as_service_t *svc, const as_migration_t *migrations,
                                 int argc, char **argv);

/* A service's main(). */
#define AS_SERVICE_MAIN(svc)                                          \
  int main(int argc, char **argv) {                                   \
    return as_worker_main(&(svc), as_service_migrations, argc, argv); \
  }

/* For services: the worker's log and metrics registry (for series made on
 * demand, e.g. one per reason code). */
const as_log_t *as_worker_log(const as_worker_t *w);
as_metrics_t *as_worker_metrics(as_worker_t *w);

/* For start hooks: the worker's loop (borrowed; everything runs on it). */
uv_loop_t *as_worker_loop(as_worker_t *w);

/* For start hooks: runs fn in one transaction on the worker's connection,
 * between batches, as the deadline scanner does: fn runs its statements on
 * as_tx_db(tx) and queues events with as_tx_publish (cause NULL); the
 * runtime then writes them to the outbox, commits and wakes the relay.
 * Returns fn's negative result or an as_db error after rolling back (and
 * dropping what fn queued), -EAGAIN without calling fn when the worker
 * cannot now (a batch waiting for its retry, stopping, database down), or
 * fn's result (>= 0) after the commit. */
typedef int (*as_worker_tx_fn)(void *arg, as_tx_t *tx);
AS_MUST_CHECK int as_worker_tx(as_worker_t *w, as_worker_tx_fn fn, void *arg);

/* The largest envelope (packed bytes) the relay's producer accepts
 * (message.max.bytes less the record's own overhead): an event must be
 * bounded below this where it is made, or its outbox row is parked. */
long long as_worker_max_event_bytes(const as_worker_t *w);

#endif
