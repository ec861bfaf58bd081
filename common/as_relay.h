/* as_relay: publishes committed outbox rows to Kafka, exactly once per row
 * as far as the database can tell, at least once on the wire.
 *
 * One relay per service is active at a time: it holds a session advisory
 * lock on its own connection, so rows leave in id order (events of one case
 * stay in order) and two instances never race on the same rows; the others
 * stand by and take over when the holder's session ends. A round reads up to
 * `batch` unsent rows, produces them with the idempotent producer, waits for
 * every delivery report on the loop (never blocking it), then marks the
 * delivered rows sent. A crash between delivery and marking republishes
 * those rows with the same event ids: consumers dedupe by event id.
 * The relay is woken by as_relay_kick (after a local commit), by LISTEN
 * as_outbox_<schema> (another instance's commit) and by a timer.
 *
 * Ownership: as_relay_t is the caller's from as_relay_new until
 * as_relay_close; conf strings, log and metrics are borrowed and must
 * outlive it (log is written from the relay's thread: as_log is safe for
 * that, one fwrite per line). */
#ifndef AS_RELAY_H
#define AS_RELAY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "as_kafka.h"
#include "as_log.h"
#include "as_metrics.h"

typedef struct as_relay as_relay_t;

typedef struct as_relay_conf {
  const char *dsn;
  const char *schema;
  const char *bootstrap;
  const char *client_id;
  int batch;            /* rows per round */
  int interval_ms;      /* timer between rounds when idle */
  int retention_s;      /* sent rows kept this long, then deleted */
  const char *failpoint; /* "relay_after_delivery": SIGKILL before marking sent (tests) */
} as_relay_conf_t;

/* Starts the relay's thread. */
as_relay_t *as_relay_new(const as_relay_conf_t *conf, const as_log_t *log, as_metrics_t *metrics,
                         char *err, size_t errlen);

/* The functions below are for the worker's thread; the relay runs on its
 * own (see as_relay.c for why). */

/* Start a round soon (something was committed). */
void as_relay_kick(as_relay_t *r);

/* True when the database connection works (or the relay is standing by). */
bool as_relay_db_ok(const as_relay_t *r);

/* True when nothing is in flight and the last round found no unsent row (or
 * this instance is not the active relay). */
bool as_relay_caught_up(const as_relay_t *r);

/* Copies the relay's counters and gauges into the metrics registry. */
void as_relay_update_metrics(as_relay_t *r);

/* Stops the relay thread after it delivered and marked what was in flight
 * (bounded by timeout_ms), joins it, frees everything, then calls done(arg)
 * before returning. NULL is a no-op. */
void as_relay_close(as_relay_t *r, int timeout_ms, void (*done)(void *arg), void *arg);

#endif
