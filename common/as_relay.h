/* as_relay: publishes committed outbox rows to Kafka, exactly once per row
 * as far as the database can tell, at least once on the wire.
 *
 * One relay per service is active at a time: it holds a session advisory
 * lock on its own connection, so rows leave in id order (events of one case
 * stay in order) and two instances never race on the same rows; the others
 * stand by and take over when the holder's session ends. The relay reads up
 * to `batch` unsent rows at a time, produces them with the idempotent
 * producer and marks rows sent only once their delivery report is in. It is
 * pipelined: while rows wait for their reports or their marking, newly
 * committed rows (ids above theirs) are already read and produced, so a
 * commit never waits for a whole round; rows that this skips (a failed
 * delivery, an id committed late by another instance) are found by a full
 * read once nothing is in flight, at the latest one timer period later.
 * A crash between delivery and marking republishes those rows with the same
 * event ids: consumers dedupe by event id.
 * Per-key order survives a failed delivery: the first failure halts the
 * relay (no more selects), purges what is queued or in flight, waits for
 * every outstanding report and resends from the oldest unacknowledged row,
 * so a later row of the same key never overtakes the one that failed (the
 * idempotent producer refuses a later batch behind a failed one; purging
 * keeps librdkafka from retrying it ahead of the resend).
 * A row the producer refuses for good (too large, invalid) is parked: a
 * permanent delivery error makes the relay resend the oldest unsent row
 * alone, and if that row alone is refused again (or producev refused it
 * outright) it is marked parked (parked_at, park_reason; sent_at set so the
 * queue moves on), a small dead letter (reason outbox_row_refused, the
 * row's first dlq_max_bytes bytes) is written to the outbox for the
 * dead-letter topic, as_outbox_parked_total counts it, and the rows after
 * it go out. A fatal producer error (rd_kafka_fatal_error) makes the relay
 * drop that producer and build a new one; the rows it had not acknowledged
 * are resent from the outbox in id order.
 * The relay is woken by as_relay_committed / as_relay_kick (after a local
 * commit), by LISTEN as_outbox_<schema> (another instance's commit) and by a
 * timer.
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
  int batch;             /* rows per read; at most 2 x batch rows in flight */
  int interval_ms;       /* timer: a read when no commit or NOTIFY woke us */
  int retention_s;       /* sent rows kept this long, then deleted */
  const char *failpoint; /* "relay_after_delivery": SIGKILL before marking sent (tests) */
  /* For the dead letters of parked rows. */
  const char *service, *instance, *group_id, *dlq_topic;
  size_t dlq_max_bytes; /* original bytes kept in such a dead letter */
} as_relay_conf_t;

/* Starts the relay's thread. */
as_relay_t *as_relay_new(const as_relay_conf_t *conf, const as_log_t *log, as_metrics_t *metrics,
                         char *err, size_t errlen);

/* The functions below are for the worker's thread; the relay runs on its
 * own (see as_relay.c for why). */

/* Read the outbox soon (something was committed). */
void as_relay_kick(as_relay_t *r);

/* The same after a commit on the connection whose server process is
 * backend_pid (PQbackendPID): that backend's NOTIFYs then wake nothing, the
 * kick already did. */
void as_relay_committed(as_relay_t *r, int backend_pid);

/* True when the database connection works (or the relay is standing by). */
bool as_relay_db_ok(const as_relay_t *r);

/* True when nothing is in flight and a read started after the last kick
 * found no unsent row (or this instance is not the active relay). */
bool as_relay_caught_up(const as_relay_t *r);

/* Milliseconds (uv_hrtime clock) since the relay last made progress: a row
 * delivered or parked, or nothing left to publish. 0 while it is caught up
 * or standing by; the worker's watchdog fails /healthz when it grows past
 * AS_WATCHDOG_MS. */
uint64_t as_relay_stalled_ms(const as_relay_t *r);

/* Copies the relay's counters and gauges into the metrics registry. */
void as_relay_update_metrics(as_relay_t *r);

/* Stops the relay thread after it delivered and marked what was in flight
 * (bounded by timeout_ms), joins it, frees everything, then calls done(arg)
 * before returning. NULL is a no-op. */
void as_relay_close(as_relay_t *r, int timeout_ms, void (*done)(void *arg), void *arg);

#endif
