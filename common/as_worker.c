/* as_worker: the runtime loop of every service. It owns the consumer, the
 * batch transaction, offset commits, the relay, the deadline scanner,
 * signals and the probe/metrics listener; see as_worker.h for the batch
 * contract. Everything runs on one libuv loop thread. */
#include "as_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "as_deadline.h"
#include "as_failpoint.h"
#include "as_http.h"
#include "as_kafka.h"
#include "as_process.h"
#include "as_relay.h"
#include "as_topics.h"

typedef struct as_runtime_conf {
  const char *instance, *bootstrap, *group_id, *dsn, *migrate_dsn, *schema, *http_addr, *log_level;
  const char *dlq_topic, *failpoint;
  long long batch_max, max_message_bytes, dlq_max_bytes, http_port, relay_batch;
  long long relay_interval_ms, scan_interval_ms, retry_max_ms, shutdown_timeout_ms;
  long long outbox_retention_s, failpoint_after, poll_interval_ms, watchdog_ms, batch_linger_ms;
  long long statement_timeout_ms, lock_timeout_ms, lag_interval_ms;
  long long http_max_connections, http_idle_timeout_ms;
} as_runtime_conf_t;

#define RC(field) offsetof(as_runtime_conf_t, field)
static const as_cfg_param_t runtime_params[] = {
    {"AS_KAFKA_BOOTSTRAP", AS_CFG_STR, "127.0.0.1:9092", 0, 1024, RC(bootstrap),
     "Kafka bootstrap servers (host:port,...)."},
    {"AS_GROUP_ID", AS_CFG_STR, "", 0, 200, RC(group_id),
     "Consumer group; default aftersales-<service>."},
    {"AS_DB_DSN", AS_CFG_STR, "", 0, 1024, RC(dsn),
     "libpq connection string or URI; empty = PG* environment. The worker's own role "
     "(as_<service>)."},
    {"AS_DB_MIGRATE_DSN", AS_CFG_STR, "", 0, 1024, RC(migrate_dsn),
     "The owner role's DSN (aftersales_owner): migrations run over it at start, then it is closed. "
     "Empty: the worker only checks they were applied (by --migrate, which uses AS_DB_DSN) and "
     "waits until they are."},
    {"AS_DB_SCHEMA", AS_CFG_STR, "", 0, 48, RC(schema),
     "Schema of this service's tables; default the service name (48 characters at most: it names a "
     "NOTIFY channel)."},
    {"AS_DB_STATEMENT_TIMEOUT_MS", AS_CFG_INT, "30000", 0, 3600000, RC(statement_timeout_ms),
     "statement_timeout of the batch and scanner session (migrations excepted); a statement "
     "cancelled by it is retried like a lost connection. 0 = the server's."},
    {"AS_DB_LOCK_TIMEOUT_MS", AS_CFG_INT, "5000", 0, 3600000, RC(lock_timeout_ms),
     "lock_timeout of that session: a batch waiting longer for a row or table lock is rolled "
     "back and retried. 0 = the server's."},
    {"AS_INSTANCE", AS_CFG_STR, "", 0, 90, RC(instance),
     "Instance name in logs, metrics and events; default host-pid."},
    {"AS_BATCH_MAX", AS_CFG_INT, "500", 1, 10000, RC(batch_max),
     "Most messages handled in one database transaction."},
    {"AS_BATCH_LINGER_MS", AS_CFG_INT, "3", 0, 1000, RC(batch_linger_ms),
     "A batch short of AS_BATCH_MAX waits this long after its first message for more: fewer, "
     "larger transactions when messages trickle in, at that much latency; 0 starts a batch at "
     "once."},
    {"AS_LAG_INTERVAL_MS", AS_CFG_INT, "1000", 100, 60000, RC(lag_interval_ms),
     "How often as_consumer_lag is recomputed from the group's committed offsets."},
    {"AS_POLL_INTERVAL_MS", AS_CFG_INT, "100", 1, 10000, RC(poll_interval_ms),
     "Fallback consumer poll period (the queue also wakes the loop)."},
    {"AS_MAX_MESSAGE_BYTES", AS_CFG_INT, "1048576", 1024, 16777216, RC(max_message_bytes),
     "Larger messages are dead-lettered as payload_too_large."},
    {"AS_DLQ_TOPIC", AS_CFG_STR, "aftersales.deadletter.v1", 1, 249, RC(dlq_topic),
     "Dead-letter topic."},
    {"AS_DLQ_MAX_BYTES", AS_CFG_INT, "262144", 0, 16777216, RC(dlq_max_bytes),
     "Original bytes kept in a dead letter (the rest is cut, size recorded)."},
    {"AS_HTTP_ADDR", AS_CFG_STR, "127.0.0.1", 1, 64, RC(http_addr),
     "Address of the /healthz, /readyz and /metrics listener: loopback on a plain host; a "
     "container sets the address its probes and scraper reach (compose 0.0.0.0, Kubernetes the "
     "pod IP)."},
    {"AS_HTTP_PORT", AS_CFG_INT, "8080", 0, 65535, RC(http_port),
     "Port of that listener; 0 = any free port (logged)."},
    {"AS_HTTP_MAX_CONNECTIONS", AS_CFG_INT, "64", 1, 10000, RC(http_max_connections),
     "Most open connections to that listener; past it a new one closes the oldest idle one, or "
     "is closed at once (as_http_connections_dropped_total)."},
    {"AS_HTTP_IDLE_TIMEOUT_MS", AS_CFG_INT, "5000", 100, 600000, RC(http_idle_timeout_ms),
     "A connection that sends no whole request, or does not read the answer, within this is "
     "closed."},
    {"AS_RELAY_BATCH", AS_CFG_INT, "2500", 1, 100000, RC(relay_batch),
     "Outbox rows the relay reads at once; up to twice as many may wait for delivery reports."},
    {"AS_RELAY_INTERVAL_MS", AS_CFG_INT, "200", 1, 60000, RC(relay_interval_ms),
     "Relay timer when no commit or NOTIFY wakes it."},
    {"AS_OUTBOX_RETENTION_S", AS_CFG_INT, "3600", 0, 2592000, RC(outbox_retention_s),
     "Published outbox rows are deleted after this."},
    {"AS_SCAN_INTERVAL_MS", AS_CFG_INT, "1000", 10, 3600000, RC(scan_interval_ms),
     "Deadline scanner period."},
    {"AS_RETRY_MAX_MS", AS_CFG_INT, "5000", 10, 600000, RC(retry_max_ms),
     "Longest backoff between retries of a batch after a transient failure."},
    {"AS_SHUTDOWN_TIMEOUT_MS", AS_CFG_INT, "10000", 0, 600000, RC(shutdown_timeout_ms),
     "How long SIGTERM waits for the relay to drain."},
    {"AS_WATCHDOG_MS", AS_CFG_INT, "120000", 1000, 3600000, RC(watchdog_ms),
     "/healthz fails (503) when the relay has rows due but published none, or a batch is in hand "
     "but none completed, for this long."},
    {"AS_LOG_LEVEL", AS_CFG_STR, "info", 1, 5, RC(log_level), "debug, info, warn or error."},
    {"AS_FAILPOINT", AS_CFG_STR, "", 0, 40, RC(failpoint),
     "Test builds only (TEST_HOOKS=1; a release build refuses it): " AS_FAILPOINT_NAMES
     " kill the process with SIGKILL there."},
    {"AS_FAILPOINT_AFTER", AS_CFG_INT, "1", 1, 1000000, RC(failpoint_after),
     "Test builds only: the failpoint fires on this batch (1 = first)."},
};
#define NRUNTIME (sizeof runtime_params / sizeof runtime_params[0])

struct as_worker {
  as_log_t log; /* first: librdkafka's log callback finds it through as_kafka_ctx_t */
  as_kafka_ctx_t kctx;
  const as_service_t *svc;
  const as_migration_t *migrations;
  void *svc_conf, *state; /* owned: the service's configuration and state blocks */
  const char *topics[AS_TOPIC__COUNT];
  size_t ntopics;
  as_runtime_conf_t conf;
  char instance[96], group_id[208], schema[64], client_id[160];
  uv_loop_t loop;
  as_metrics_t *metrics;
  as_db_t db;
  as_tx_conf_t tx_conf;
  as_tx_t tx;
  rd_kafka_t *consumer;
  int pipefd[2];
  as_relay_t *relay;
  as_http_t *http;
  uint64_t http_dropped_seen; /* of as_http_dropped, already counted */
  as_process_t proc;
  uv_poll_t consumer_poll;
  uv_timer_t poll_timer, again_timer, retry_timer, scan_timer, drain_timer, migrate_timer;
  uv_timer_t lag_timer;
  uv_work_t lag_req; /* in flight while lag_busy; reads consumer and lag_parts, writes lag_result */
  rd_kafka_topic_partition_list_t *assigned;  /* owned: copy of the current assignment */
  rd_kafka_topic_partition_list_t *lag_parts; /* owned: the request's copy of it */
  long long lag_result;
  char lag_err[160], lag_err_logged[160]; /* why lag_result is -1; what was logged last */
  bool lag_busy;
  bool hooked; /* the service's start hook ran and its stop hook has not */
  bool live;   /* migrations applied, service consuming: until then /readyz says why not */
  unsigned migrate_delay;
  uv_signal_t sigterm, sigint, sighup;
  as_msg_t *batch;
  as_msg_state_t *saved;
  size_t nbatch;
  uint64_t batch_first_at; /* loop time the batch in hand got its first message */
  bool pending_retry, stopping, broker_up, db_ok;
  unsigned retry_ms;
  uint64_t drain_deadline, batches;
  uint64_t batch_progress_at;    /* uv_now when no batch was in hand or one completed */
  long long max_event_bytes;     /* the largest event the producer accepts */
  bool wedged;                   /* the watchdog tripped (logged once per episode) */
  unsigned long unprepared_seen; /* of db.stmt_uncached, already counted */
  int open_handles, exit_code;
  struct {
    as_counter_t *processed, *duplicates, *ignored, *failed, *retries, *unprepared, *http_dropped;
    as_counter_t *handler_failures, *bisect_tx;
    as_histogram_t *batch_size, *batch_seconds;
    as_gauge_t *lag, *ready;
  } m;
};

const as_log_t *as_worker_log(const as_worker_t *w) {
  return &w->log;
}
as_metrics_t *as_worker_metrics(as_worker_t *w) {
  return w->metrics;
}

static void failpoint(const as_worker_t *w, const char *where) {
  if (as_failpoint_armed(w->conf.failpoint, where) &&
      w->batches == (uint64_t)w->conf.failpoint_after) {
    AS_WARN(&w->log, "failpoint: killing myself", AS_F_STR("failpoint", where));
    raise(SIGKILL);
  }
}

/* ---- batch ------------------------------------------------------------ */

/* A topic whose unrouted payloads are others' events (as_service_t). */
static bool shared_topic(const as_service_t *svc, const rd_kafka_message_t *k) {
  const char *topic = k->rkt ? rd_kafka_topic_name(k->rkt) : NULL;
  for (const char *const *t = svc->shared_topics; t && *t && topic; t++)
    if (strcmp(*t, topic) == 0) return true;
  return false;
}

/* Turns raw bytes into a trusted envelope, or marks the message dead; a
 * payload the service has no route for is ignored (or dead if the service
 * refuses those and the topic is not shared). Ignored messages skip the inbox: a worker's own
 * events come back on the topics it reads (review's CaseStateChanged on cases.v1), and claiming
 * each would cost a row for a message that changes nothing. */
static void admit(as_worker_t *w, as_msg_t *m) {
  const rd_kafka_message_t *k = m->rkm;
  if (k->len > (size_t)w->conf.max_message_bytes) {
    char d[96];
    snprintf(d, sizeof d, "%zu bytes, limit %lld", k->len, w->conf.max_message_bytes);
    as_tx_mark_dead(m, AS_DLQ_TOO_LARGE, d);
    return;
  }
  const char *reason = NULL;
  char detail[200];
  m->env = as_envelope_decode(k->payload, k->len, &reason, detail, sizeof detail);
  if (!m->env) {
    as_tx_mark_dead(m, reason, detail);
  } else if (!as_route_find(w->svc->routes, w->svc->nroutes, m->env->payload_case)) {
    if (w->svc->refuse_unrouted && !shared_topic(w->svc, k)) {
      snprintf(detail, sizeof detail, "%s is not handled by %s", m->env->event_type, w->svc->name);
      as_tx_mark_dead(m, AS_DLQ_UNEXPECTED_PAYLOAD, detail);
    } else {
      m->state = AS_MSG_IGNORED;
    }
  }
}

static void batch_free(as_worker_t *w) {
  for (size_t i = 0; i < w->nbatch; i++) {
    as_envelope_free(w->batch[i].env);
    rd_kafka_message_destroy(w->batch[i].rkm);
  }
  w->nbatch = 0;
}

/* Applies msgs in one transaction. Returns 0, -EAGAIN or -EIO. */
static int run_tx(as_worker_t *w, as_msg_t *msgs, size_t n) {
  int rc = as_db_ensure(&w->db) < 0 ? -EAGAIN : 0;
  if (rc == 0) rc = as_db_begin(&w->db);
  if (rc == 0) rc = as_tx_inbox_claim(&w->tx, msgs, n);
  as_msg_t **fresh = rc == 0 ? malloc(sizeof *fresh * n) : NULL;
  size_t nfresh = 0;
  if (rc == 0 && !fresh) rc = -EAGAIN;
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (msgs[i].state == AS_MSG_NEW) fresh[nfresh++] = &msgs[i];
  for (size_t i = 0; rc == 0 && w->svc->refused && i < n; i++)
    if (msgs[i].state == AS_MSG_DEAD) rc = w->svc->refused(w->state, &w->tx, &msgs[i]);
  if (rc == 0 && nfresh > 0)
    rc = as_route_batch(w->svc->routes, w->svc->nroutes, w->state, &w->tx, fresh, nfresh);
  free(fresh);
  if (rc == 0) rc = as_tx_flush(&w->tx, msgs, n);
  if (rc == 0) failpoint(w, "before_db_commit");
  if (rc == 0) rc = as_db_commit(&w->db);
  if (rc < 0) {
    as_db_rollback(&w->db);
    as_tx_reset(&w->tx);
  }
  return rc == -EAGAIN || rc == -ENOMEM || rc == -ECONNREFUSED ? -EAGAIN : rc < 0 ? -EIO : 0;
}

/* The states msgs[0..n) had before the transaction that just rolled back
 * (the inbox claim and the handler change them). */
static void restore(as_worker_t *w, as_msg_t *msgs, size_t n) {
  size_t at = (size_t)(msgs - w->batch);
  for (size_t i = 0; i < n; i++) msgs[i].state = w->saved[at + i];
}

/* m failed alone: it is dead-lettered in a transaction of its own. */
static int dead_letter_culprit(as_worker_t *w, as_msg_t *m) {
  char detail[240];
  /* the database's text may quote a value: not for a withheld topic */
  if (as_tx_withheld(&w->tx_conf, rd_kafka_topic_name(m->rkm->rkt)))
    snprintf(detail, sizeof detail, "%s: (database text withheld)", w->db.sqlstate);
  else
    snprintf(detail, sizeof detail, "%s: %.200s", w->db.sqlstate, w->db.err);
  as_tx_mark_dead(m, AS_DLQ_HANDLER_FAILED, detail);
  AS_ERROR(&w->log, "message dead-lettered after handler failure",
           AS_F_STR("case_id", m->env ? m->env->case_id : ""),
           AS_F_STR("event_id", m->env ? m->env->event_id : ""), AS_F_STR("detail", detail));
  as_counter_add(w->m.bisect_tx, 1);
  return run_tx(w, m, 1) < 0 ? -EAGAIN : 0;
}

/* Finds the culprits of a failed range by bisection: each half runs in its
 * own transaction, left first, and a half that fails is split again, down
 * to the single message that fails alone, which is dead-lettered. k bad
 * messages among n cost about k log2 n transactions instead of n.
 *
 * Order: the halves are contiguous and the recursion is depth-first, left
 * before right, so the batch's good messages commit in batch order (within
 * a partition, in offset order): nothing right of a failed half is applied
 * before everything left of it is settled. Per-key order holds; a culprit
 * is skipped at its place, as a dead letter.
 *
 * known_bad: the range is the right half of a failed range whose left half
 * just committed, so (deterministic data) it fails too: split it without
 * running it whole. A single message always runs alone before it is
 * dead-lettered. Returns 0 (committed at the first try), 1 (committed after
 * bisecting) or -EAGAIN. */
static int bisect(as_worker_t *w, as_msg_t *msgs, size_t n, bool known_bad) {
  if (!known_bad || n == 1) {
    as_counter_add(w->m.bisect_tx, 1);
    int rc = run_tx(w, msgs, n);
    if (rc != -EIO) return rc;
    restore(w, msgs, n);
    as_counter_add(w->m.handler_failures, 1);
    if (n == 1) return dead_letter_culprit(w, msgs) < 0 ? -EAGAIN : 1;
  }
  size_t half = n / 2;
  int left = bisect(w, msgs, half, false);
  if (left < 0) return left;
  int right = bisect(w, msgs + half, n - half, left == 0);
  return right < 0 ? right : 1;
}

static void commit_offsets(as_worker_t *w) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)w->nbatch);
  for (size_t i = 0; i < w->nbatch; i++) {
    const rd_kafka_message_t *k = w->batch[i].rkm;
    rd_kafka_topic_partition_t *p =
        rd_kafka_topic_partition_list_find(l, rd_kafka_topic_name(k->rkt), k->partition);
    if (!p) p = rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(k->rkt), k->partition);
    if (k->offset + 1 > p->offset) p->offset = k->offset + 1;
  }
  rd_kafka_resp_err_t e =
      rd_kafka_commit(w->consumer, l, 1 /* async: a lost commit only replays */);
  if (e) AS_WARN(&w->log, "offset commit failed", AS_F_STR("error", rd_kafka_err2str(e)));
  rd_kafka_topic_partition_list_destroy(l);
}

static void count_batch(as_worker_t *w, double seconds) {
  size_t dup = 0, dead = 0, ignored = 0;
  for (size_t i = 0; i < w->nbatch; i++) {
    as_msg_t *m = &w->batch[i];
    if (m->state == AS_MSG_DUPLICATE) dup++;
    if (m->state == AS_MSG_IGNORED) ignored++;
    if (m->state != AS_MSG_DEAD) continue;
    dead++;
    char labels[96];
    snprintf(labels, sizeof labels, "reason=\"%s\"", m->dead_reason);
    as_counter_add(as_metrics_counter(w->metrics, "as_messages_deadlettered_total",
                                      "Messages sent to the dead-letter topic.", labels),
                   1);
    AS_WARN(&w->log, "message dead-lettered", AS_F_STR("reason", m->dead_reason),
            AS_F_STR("detail", m->dead_detail), AS_F_STR("topic", rd_kafka_topic_name(m->rkm->rkt)),
            AS_F_INT("partition", m->rkm->partition), AS_F_INT("offset", m->rkm->offset),
            AS_F_STR("case_id", m->env ? m->env->case_id : NULL),
            AS_F_STR("trace_id", m->env ? m->env->trace_id : NULL));
  }
  as_counter_add(w->m.processed, w->nbatch - dup - dead - ignored);
  as_counter_add(w->m.duplicates, dup);
  as_counter_add(w->m.ignored, ignored);
  as_histogram_observe(w->m.batch_size, (double)w->nbatch);
  as_histogram_observe(w->m.batch_seconds, seconds);
}

static void schedule_retry(as_worker_t *w);

/* Runs the batch in hand to completion, or leaves it pending for a retry. */
static void process(as_worker_t *w) {
  uint64_t t0 = uv_hrtime();
  for (size_t i = 0; i < w->nbatch; i++) w->saved[i] = w->batch[i].state;
  w->batches++;
  int rc = run_tx(w, w->batch, w->nbatch);
  if (rc == -EIO) {
    AS_WARN(&w->log, "batch failed; bisecting it", AS_F_STR("sqlstate", w->db.sqlstate),
            AS_F_STR("detail", w->db.err), AS_F_INT("messages", w->nbatch));
    restore(w, w->batch, w->nbatch);
    as_counter_add(w->m.handler_failures, 1);
    /* The whole batch failed alone: bisect it without running it again. */
    rc = w->nbatch == 1 ? dead_letter_culprit(w, w->batch) : bisect(w, w->batch, w->nbatch, true);
    if (rc > 0) rc = 0;
  }
  if (rc < 0) {
    for (size_t i = 0; i < w->nbatch; i++) w->batch[i].state = w->saved[i];
    as_counter_add(w->m.failed, w->nbatch);
    schedule_retry(w);
    return;
  }
  failpoint(w, "after_db_commit");
  commit_offsets(w);
  count_batch(w, (double)(uv_hrtime() - t0) / 1e9);
  batch_free(w);
  w->pending_retry = false;
  w->retry_ms = 0;
  w->db_ok = true;
  w->batch_progress_at = uv_now(&w->loop);
  as_relay_committed(w->relay, w->db.conn ? PQbackendPID(w->db.conn) : 0);
}

static void pump(as_worker_t *w);

static void on_retry(uv_timer_t *t) {
  as_worker_t *w = t->data;
  process(w);
  if (!w->pending_retry) pump(w);
}

static void schedule_retry(as_worker_t *w) {
  if (!w->pending_retry || w->db_ok)
    AS_WARN(&w->log, "batch not applied; will retry", AS_F_STR("sqlstate", w->db.sqlstate),
            AS_F_STR("detail", w->db.err), AS_F_INT("messages", w->nbatch));
  w->pending_retry = true;
  w->db_ok = false;
  as_counter_add(w->m.retries, 1);
  w->retry_ms = w->retry_ms ? w->retry_ms * 2 : 50;
  if (w->retry_ms > (unsigned)w->conf.retry_max_ms) w->retry_ms = (unsigned)w->conf.retry_max_ms;
  if (!w->stopping) uv_timer_start(&w->retry_timer, on_retry, w->retry_ms, 0);
}

/* ---- consumer --------------------------------------------------------- */

static bool revoked(const rd_kafka_topic_partition_list_t *l, const rd_kafka_message_t *k) {
  return rd_kafka_topic_partition_list_find(l, rd_kafka_topic_name(k->rkt), k->partition) != NULL;
}

/* Messages of revoked partitions that are in hand but unprocessed are
 * dropped: their new owner reads them from the committed offset. */
static void drop_revoked(as_worker_t *w, const rd_kafka_topic_partition_list_t *l) {
  size_t keep = 0;
  for (size_t i = 0; i < w->nbatch; i++) {
    as_msg_t *m = &w->batch[i];
    if (revoked(l, m->rkm)) {
      as_envelope_free(m->env);
      rd_kafka_message_destroy(m->rkm);
    } else {
      w->batch[keep++] = *m;
    }
  }
  w->nbatch = keep;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  as_worker_t *w = ((as_kafka_ctx_t *)opaque)->owner;
  AS_INFO(
      &w->log,
      err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "partitions assigned" : "partitions revoked",
      AS_F_INT("partitions", parts->cnt));
  if (w->assigned) rd_kafka_topic_partition_list_destroy(w->assigned);
  w->assigned = NULL;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    rd_kafka_assign(rk, parts);
    w->assigned = rd_kafka_topic_partition_list_copy(parts);
  } else {
    drop_revoked(w, parts);
    rd_kafka_assign(rk, NULL);
  }
}

/* librdkafka's statistics say whether a broker connection is up. (Their
 * per-partition consumer_lag is not used: it is this client's view, stale
 * for partitions that moved to another instance; see lag_work.) */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk;
  (void)len;
  as_worker_t *w = ((as_kafka_ctx_t *)opaque)->owner;
  w->broker_up = strstr(json, "\"state\":\"UP\"") != NULL;
  return 0; /* librdkafka frees json */
}

/* ---- consumer lag ----------------------------------------------------- */

/* On a libuv pool thread (rd_kafka_committed waits for the coordinator):
 * the lag of the group over the partitions this instance holds (a copy of
 * its assignment, lag_parts), from the group's committed offsets (asked of
 * the coordinator: the truth, whoever committed) to the high watermarks
 * (the consumer's own, refreshed by every fetch response; it never blocks).
 * A partition the group never committed counts from the start of its log
 * (auto.offset.reset is earliest); one whose watermarks are not known yet
 * (assigned a moment ago) counts 0 this round. A partition that moved away
 * is not in the assignment, so it counts only at its new owner.
 * lag_result -1 and lag_err: not known this round. */
static void lag_work(uv_work_t *req) {
  as_worker_t *w = req->data;
  rd_kafka_topic_partition_list_t *parts = w->lag_parts;
  w->lag_result = -1;
  w->lag_err[0] = '\0';
  rd_kafka_resp_err_t e = rd_kafka_committed(w->consumer, parts, 5000);
  if (e) {
    snprintf(w->lag_err, sizeof w->lag_err, "committed offsets: %s", rd_kafka_err2str(e));
    return;
  }
  long long lag = 0;
  for (int i = 0; i < parts->cnt; i++) {
    const rd_kafka_topic_partition_t *p = &parts->elems[i];
    int64_t lo = -1, hi = -1;
    if (p->err || rd_kafka_get_watermark_offsets(w->consumer, p->topic, p->partition, &lo, &hi))
      continue;
    int64_t from = p->offset >= 0 ? p->offset : lo;
    if (from >= 0 && hi > from) lag += hi - from;
  }
  w->lag_result = lag;
}

/* A round that failed keeps the last value, and says why once. */
static void lag_done(uv_work_t *req, int status) {
  as_worker_t *w = req->data;
  w->lag_busy = false;
  rd_kafka_topic_partition_list_destroy(w->lag_parts);
  w->lag_parts = NULL;
  if (status == 0 && w->lag_result >= 0) as_gauge_set(w->m.lag, (double)w->lag_result);
  if (strcmp(w->lag_err, w->lag_err_logged) != 0 && w->lag_err[0])
    AS_WARN(&w->log, "consumer lag not computed", AS_F_STR("detail", w->lag_err));
  snprintf(w->lag_err_logged, sizeof w->lag_err_logged, "%s", w->lag_err);
}

static void on_lag_timer(uv_timer_t *t) {
  as_worker_t *w = t->data;
  if (w->lag_busy || w->stopping || !w->consumer) return;
  if (!w->assigned || w->assigned->cnt == 0) {
    as_gauge_set(w->m.lag, 0); /* holds nothing, so is behind on nothing */
    return;
  }
  w->lag_parts = rd_kafka_topic_partition_list_copy(w->assigned);
  w->lag_req.data = w;
  if (uv_queue_work(&w->loop, &w->lag_req, lag_work, lag_done) == 0) {
    w->lag_busy = true;
  } else {
    rd_kafka_topic_partition_list_destroy(w->lag_parts);
    w->lag_parts = NULL;
  }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  as_worker_t *w = ((as_kafka_ctx_t *)opaque)->owner;
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) w->broker_up = false;
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT) return; /* librdkafka's own log line said it */
  AS_WARN(&w->log, "consumer error", AS_F_STR("error", rd_kafka_err2str(err)),
          AS_F_STR("detail", reason));
}

/* Polls up to batch_max messages into the batch. */
static void collect(as_worker_t *w) {
  if (w->nbatch == 0) w->batch_first_at = uv_now(&w->loop);
  while (w->nbatch < (size_t)w->conf.batch_max) {
    rd_kafka_message_t *k = rd_kafka_consumer_poll(w->consumer, 0);
    if (!k) break;
    if (k->err) {
      AS_WARN(&w->log, "consumer poll error", AS_F_STR("error", rd_kafka_message_errstr(k)));
      rd_kafka_message_destroy(k);
      continue;
    }
    w->broker_up = true;
    as_msg_t *m = &w->batch[w->nbatch++];
    memset(m, 0, sizeof *m);
    m->rkm = k;
    admit(w, m);
  }
}

static void on_again(uv_timer_t *t) {
  pump(t->data);
}

static void pump(as_worker_t *w) {
  if (w->stopping || w->pending_retry) return;
  collect(w);
  if (w->nbatch == 0) {
    w->batch_progress_at = uv_now(&w->loop); /* nothing pending: nothing can be stuck */
    return;
  }
  bool full = w->nbatch == (size_t)w->conf.batch_max;
  /* Each transaction has a fixed cost (a dozen round trips and a commit):
   * at a trickle, starting one per message or two spends a core on that
   * cost alone, which on two cores is taken from the broker and the
   * database (at 1,000/s, batches of three kept the worker 90% busy). */
  uint64_t due = w->batch_first_at + (uint64_t)w->conf.batch_linger_ms;
  if (!full && uv_now(&w->loop) < due) {
    uv_timer_start(&w->again_timer, on_again, due - uv_now(&w->loop), 0);
    return;
  }
  process(w);
  if (full && !w->pending_retry) uv_timer_start(&w->again_timer, on_again, 0, 0);
}
static void on_poll_timer(uv_timer_t *t) {
  pump(t->data);
}

static void on_consumer_event(uv_poll_t *h, int status, int events) {
  as_worker_t *w = h->data;
  (void)status;
  (void)events;
  char buf[64];
  while (read(w->pipefd[0], buf, sizeof buf) > 0) {
  }
  pump(w);
}

/* ---- deadlines -------------------------------------------------------- */

/* A kind the service has no row for is marked fired: a timer nobody
 * handles must not come back every scan. */
static int fire_deadline(void *arg, as_tx_t *tx, const char *case_id, const char *kind,
                         int64_t due_us) {
  as_worker_t *w = arg;
  const as_deadline_kind_t *k = as_route_kind(w->svc->deadlines, w->svc->ndeadlines, kind);
  if (k) return k->fire(w->state, tx, case_id, kind, due_us);
  AS_WARN(&w->log, "deadline kind not handled; marked fired", AS_F_STR("case_id", case_id),
          AS_F_STR("kind", kind));
  return 0;
}

/* Readiness must notice a database that went away even when no message
 * arrives to find out: a cheap round trip each scanner period. */
static bool db_alive(as_worker_t *w) {
  bool ok = as_db_ensure(&w->db) == 0 && as_db_query(&w->db, "SELECT 1", 0, NULL, NULL) == 0;
  if (ok != w->db_ok)
    AS_LOG(&w->log, ok ? AS_LOG_INFO : AS_LOG_WARN,
           ok ? "database reachable" : "database unreachable",
           AS_F_STR("detail", ok ? NULL : w->db.err));
  w->db_ok = ok;
  return ok;
}

/* Statements as_db ran unprepared (its cache full: statement texts built
 * afresh per call would do that) cost a plan each; counted, not hidden. */
static void count_unprepared(as_worker_t *w) {
  as_counter_add(w->m.unprepared, w->db.stmt_uncached - w->unprepared_seen);
  w->unprepared_seen = w->db.stmt_uncached;
}

static void on_scan(uv_timer_t *t) {
  as_worker_t *w = t->data;
  count_unprepared(w);
  if (w->pending_retry || w->stopping || !db_alive(w) || w->svc->ndeadlines == 0) return;
  if (as_db_begin(&w->db) < 0) return;
  int n = as_deadline_scan(&w->tx, 200, fire_deadline, w);
  int rc = n < 0 ? n : as_tx_flush(&w->tx, NULL, 0);
  if (rc == 0) rc = as_db_commit(&w->db);
  if (rc < 0) {
    as_db_rollback(&w->db);
    as_tx_reset(&w->tx);
    AS_WARN(&w->log, "deadline scan failed", AS_F_STR("detail", w->db.err));
    return;
  }
  if (n > 0) {
    as_relay_committed(w->relay, w->db.conn ? PQbackendPID(w->db.conn) : 0);
    if (n == 200) uv_timer_start(&w->scan_timer, on_scan, 0, (uint64_t)w->conf.scan_interval_ms);
  }
}

uv_loop_t *as_worker_loop(as_worker_t *w) {
  return &w->loop;
}

/* The scanner's pattern for a service's own work between batches: the
 * batch connection is idle whenever the loop runs anything else. */
int as_worker_tx(as_worker_t *w, as_worker_tx_fn fn, void *arg) {
  if (w->pending_retry || w->stopping || !w->db_ok || as_db_ensure(&w->db) < 0) return -EAGAIN;
  int rc = as_db_begin(&w->db);
  int n = rc < 0 ? rc : fn(arg, &w->tx);
  rc = n < 0 ? n : as_tx_flush(&w->tx, NULL, 0);
  if (rc == 0) rc = as_db_commit(&w->db);
  if (rc < 0) {
    as_db_rollback(&w->db);
    as_tx_reset(&w->tx);
    return rc;
  }
  as_relay_committed(w->relay, w->db.conn ? PQbackendPID(w->db.conn) : 0);
  return n;
}

static void stop_hook(as_worker_t *w) {
  if (!w->hooked) return;
  w->hooked = false;
  w->svc->stop(w->state);
}

/* ---- probes and metrics ----------------------------------------------- */

/* Why the worker is not ready, as a machine-readable code; NULL if ready.
 * Before the migrations are applied (the database not reached yet) the
 * listener already answers: /healthz 200, /readyz 503 "migrations_pending". */
static const char *not_ready(const as_worker_t *w) {
  if (w->stopping) return "stopping";
  if (!w->live) return "migrations_pending";
  if (!w->db_ok) return "database_unreachable";
  if (!w->relay || !as_relay_db_ok(w->relay)) return "relay_database_unreachable";
  if (!w->broker_up) return "broker_unreachable";
  return NULL;
}

static bool ready(const as_worker_t *w) {
  return not_ready(w) == NULL;
}

static void respond(as_http_response_t *resp, int status, const char *body) {
  resp->status = status;
  resp->body = strdup(body);
  resp->body_len = resp->body ? strlen(body) : 0;
  if (!resp->body) resp->status = 500;
}

/* The liveness watchdog. A handler that hangs blocks the loop and the
 * probe times out; this catches the stalls that leave the loop free: a
 * batch in hand that never completes (retried for ever) and a relay with
 * rows due that publishes none (polling librdkafka resets
 * max.poll.interval.ms, so the group would never evict such an instance).
 * Writes the probe's body; returns false when wedged. */
static bool alive(as_worker_t *w, char *body, size_t len) {
  uint64_t limit = (uint64_t)w->conf.watchdog_ms;
  uint64_t relay = w->relay ? as_relay_stalled_ms(w->relay) : 0; /* none before migrations */
  uint64_t batch = w->nbatch > 0 && !w->stopping ? uv_now(&w->loop) - w->batch_progress_at : 0;
  /* A stuck batch first: with the database gone, the relay is stuck too. */
  const char *what = batch > limit ? "batch" : relay > limit ? "relay" : NULL;
  if (!what) {
    w->wedged = false;
    snprintf(body, len, "{\"status\":\"ok\"}\n");
    return true;
  }
  uint64_t ms = batch > limit ? batch : relay;
  const char *why =
      batch > limit ? "a batch in hand, none completed" : "outbox rows due, none published";
  snprintf(body, len,
           "{\"status\":\"stalled\",\"reason\":\"%s\",\"detail\":\"%s for %llu ms\","
           "\"watchdog_ms\":%llu}\n",
           what, why, (unsigned long long)ms, (unsigned long long)limit);
  if (!w->wedged)
    AS_ERROR(&w->log, "watchdog: worker stalled", AS_F_STR("reason", what), AS_F_STR("detail", why),
             AS_F_INT("stalled_ms", ms));
  w->wedged = true;
  return false;
}

static void route(void *arg, const char *method, const char *path, as_http_response_t *resp) {
  as_worker_t *w = arg;
  (void)method;
  resp->content_type = "application/json";
  if (strcmp(path, "/healthz") == 0) {
    char body[256];
    bool ok = alive(w, body, sizeof body);
    respond(resp, ok ? 200 : 503, body);
  } else if (strcmp(path, "/readyz") == 0) {
    const char *why = not_ready(w);
    bool db = w->live && w->db_ok && w->relay && as_relay_db_ok(w->relay);
    char buf[200];
    snprintf(buf, sizeof buf,
             "{\"ready\":%s,\"reason\":%s%s%s,\"database\":%s,\"broker\":%s,\"stopping\":%s}\n",
             why ? "false" : "true", why ? "\"" : "", why ? why : "null", why ? "\"" : "",
             db ? "true" : "false", w->broker_up ? "true" : "false",
             w->stopping ? "true" : "false");
    respond(resp, why ? 503 : 200, buf);
  } else if (strcmp(path, "/metrics") == 0) {
    if (w->relay) as_relay_update_metrics(w->relay);
    as_process_update(&w->proc);
    as_counter_add(w->m.http_dropped, as_http_dropped(w->http) - w->http_dropped_seen);
    w->http_dropped_seen = as_http_dropped(w->http);
    as_gauge_set(w->m.ready, ready(w) ? 1 : 0);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    resp->body = as_metrics_render(w->metrics, &resp->body_len);
    if (!resp->body) resp->status = 500;
  } else {
    respond(resp, 404, "{\"error\":\"not found\"}\n");
  }
}

/* ---- shutdown --------------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
  as_worker_t *w = h->data;
  w->open_handles--;
}

static void close_handle(as_worker_t *w, void *h) {
  uv_handle_t *handle = h;
  if (uv_is_closing(handle)) return;
  handle->data = w;
  w->open_handles++;
  uv_close(handle, on_closed);
}

static void on_relay_closed(void *arg) {
  as_worker_t *w = arg;
  w->relay = NULL;
}

static void on_http_closed(void *arg) {
  as_worker_t *w = arg;
  w->http = NULL;
}

/* Relay drained (or timed out): leave the group and close everything. */
static void finish_shutdown(as_worker_t *w) {
  uv_timer_stop(&w->drain_timer);
  stop_hook(w);
  if (w->consumer) {
    rd_kafka_consumer_close(w->consumer); /* leaves the group: partitions move at once */
    AS_INFO(&w->log, "consumer closed");
  }
  as_relay_close(w->relay, (int)w->conf.shutdown_timeout_ms, on_relay_closed, w);
  as_http_close(w->http, on_http_closed, w);
  void *handles[] = {&w->consumer_poll, &w->poll_timer,  &w->again_timer,   &w->retry_timer,
                     &w->scan_timer,    &w->drain_timer, &w->migrate_timer, &w->lag_timer,
                     &w->sigterm,       &w->sigint,      &w->sighup};
  for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++) close_handle(w, handles[i]);
}

static void on_drain(uv_timer_t *t) {
  as_worker_t *w = t->data;
  bool done = !w->relay || as_relay_caught_up(w->relay);
  if (done || uv_now(&w->loop) >= w->drain_deadline) {
    if (!done)
      AS_WARN(&w->log, "shutdown: outbox not drained in time; the next relay publishes it");
    finish_shutdown(w);
  } else {
    as_relay_kick(w->relay);
  }
}

static void begin_shutdown(as_worker_t *w, int signum) {
  if (w->stopping) return;
  AS_INFO(&w->log, "shutting down", AS_F_STR("signal", strsignal(signum)));
  uv_poll_stop(&w->consumer_poll);
  uv_timer_stop(&w->poll_timer);
  uv_timer_stop(&w->again_timer);
  uv_timer_stop(&w->scan_timer);
  uv_timer_stop(&w->retry_timer);
  uv_timer_stop(&w->migrate_timer);
  uv_timer_stop(&w->lag_timer);
  stop_hook(w);
  /* Stopping first: a last retry that fails must not re-arm the retry
   * timer. Finish the batch in hand once more; if the database is still
   * away it stays uncommitted and is redelivered to whoever owns the
   * partition. */
  w->stopping = true;
  if (w->nbatch > 0) process(w); /* a retry, or a batch still lingering */
  if (w->nbatch > 0) {
    AS_WARN(&w->log, "shutdown: batch in hand not applied; it will be redelivered",
            AS_F_INT("messages", w->nbatch));
    batch_free(w);
  }
  w->drain_deadline = uv_now(&w->loop) + (uint64_t)w->conf.shutdown_timeout_ms;
  as_relay_kick(w->relay);
  uv_timer_start(&w->drain_timer, on_drain, 0, 20);
}

static void on_signal(uv_signal_t *s, int signum) {
  begin_shutdown(s->data, signum);
}

/* SIGHUP: the service re-reads what it can (its policy file, say); a worker
 * without a reload hook only says so, it never dies of a stray HUP. */
static void on_reload(uv_signal_t *s, int signum) {
  (void)signum;
  as_worker_t *w = s->data;
  if (!w->svc->reload) {
    AS_INFO(&w->log, "SIGHUP ignored: nothing to reload");
    return;
  }
  int rc = w->svc->reload(w->state);
  if (rc < 0) AS_WARN(&w->log, "reload refused, previous configuration kept", AS_F_INT("rc", rc));
}

/* ---- start ------------------------------------------------------------ */

/* Sizes that must agree, checked before anything connects: every event and
 * every dead letter must fit the producer's message.max.bytes, or its
 * outbox row could never be published. */
static int check_sizes(as_worker_t *w) {
  char err[256];
  long long mmb = 0;
  if (as_kafka_producer_max_bytes(&mmb, err, sizeof err) < 0) {
    AS_ERROR(&w->log, "bad configuration", AS_F_STR("detail", err));
    return -EINVAL;
  }
  w->max_event_bytes = mmb - AS_KAFKA_RECORD_OVERHEAD;
  if (w->conf.dlq_max_bytes + AS_TX_DEAD_LETTER_OVERHEAD > w->max_event_bytes) {
    snprintf(err, sizeof err,
             "AS_DLQ_MAX_BYTES: %lld bytes of original plus %d of dead letter do not fit the "
             "producer's message.max.bytes (%lld); lower AS_DLQ_MAX_BYTES to at most %lld or raise "
             "AS_RDKAFKA_MESSAGE_MAX_BYTES",
             w->conf.dlq_max_bytes, AS_TX_DEAD_LETTER_OVERHEAD, mmb,
             w->max_event_bytes - AS_TX_DEAD_LETTER_OVERHEAD);
    AS_ERROR(&w->log, "bad configuration", AS_F_STR("detail", err));
    return -EINVAL;
  }
  return 0;
}

long long as_worker_max_event_bytes(const as_worker_t *w) {
  return w->max_event_bytes;
}

static int load_config(as_worker_t *w, const as_service_t *svc) {
  char err[256];
  w->svc_conf = calloc(1, svc->conf_size ? svc->conf_size : 1);
  if (!w->svc_conf) return -ENOMEM;
  if (as_config_load(runtime_params, NRUNTIME, &w->conf, err, sizeof err) < 0 ||
      as_failpoint_check(w->conf.failpoint, err, sizeof err) < 0 ||
      (svc->config &&
       as_config_load(svc->config, svc->nconfig, w->svc_conf, err, sizeof err) < 0)) {
    /* no logger yet (its level is among what failed); the detail quotes
     * the operator's value, so it is escaped like any log field */
    char detail[6 * sizeof err + 3];
    as_log_json_escape(detail, sizeof detail, err);
    fprintf(stderr,
            "{\"level\":\"error\",\"service\":\"%s\",\"msg\":\"bad "
            "configuration\",\"detail\":%s}\n",
            svc->name, detail);
    return -EINVAL;
  }
  as_log_level_t lvl;
  if (as_log_level_parse(w->conf.log_level, &lvl) < 0) {
    fprintf(stderr,
            "{\"level\":\"error\",\"msg\":\"bad configuration\",\"detail\":\"AS_LOG_LEVEL: unknown "
            "level\"}\n");
    return -EINVAL;
  }
  char host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(w->instance, sizeof w->instance, "%s", w->conf.instance[0] ? w->conf.instance : host);
  if (!w->conf.instance[0])
    snprintf(w->instance + strlen(w->instance), sizeof w->instance - strlen(w->instance), "-%d",
             (int)getpid());
  snprintf(w->group_id, sizeof w->group_id, "%s%s", w->conf.group_id[0] ? "" : "aftersales-",
           w->conf.group_id[0] ? w->conf.group_id : svc->name);
  snprintf(w->schema, sizeof w->schema, "%s", w->conf.schema[0] ? w->conf.schema : svc->name);
  snprintf(w->client_id, sizeof w->client_id, "%s-%s", svc->name, w->instance);
  as_log_init(&w->log, svc->name, w->instance, lvl);
  if (!as_migrate_ident_ok(w->schema) || strlen(w->schema) > 48) {
    AS_ERROR(&w->log, "bad configuration",
             AS_F_STR("detail", "AS_DB_SCHEMA: not a plain lower-case identifier"));
    return -EINVAL;
  }
  return check_sizes(w);
}

/* True if name is one of the comma-separated names in list. */
static bool listed(const char *list, const char *name) {
  size_t len = strlen(name);
  for (const char *p = list; *p;) {
    size_t n = strcspn(p, ",");
    if (n == len && strncmp(p, name, len) == 0) return true;
    p += n + (p[n] == ',');
  }
  return false;
}

/* The topics proto/topics.tsv says this service consumes. */
static int select_topics(as_worker_t *w) {
#define AS_TOPIC_ROW(id, name, parts, consumers) {name, consumers},
  static const struct { const char *name, *consumers; } fleet[] = {AS_TOPICS(AS_TOPIC_ROW)};
#undef AS_TOPIC_ROW
  for (size_t i = 0; i < AS_LEN(fleet); i++)
    if (listed(fleet[i].consumers, w->svc->name)) w->topics[w->ntopics++] = fleet[i].name;
  if (w->ntopics > 0) return 0;
  AS_ERROR(&w->log, "no topic to consume",
           AS_F_STR("detail", "proto/topics.tsv names this service on no topic"));
  return -EINVAL;
}

/* Applies (apply) or counts the pending migrations of the shared case
 * tables, the runtime's and the service's own. Returns 0, the number still
 * pending (> 0, only when counting), or a negative error with err set. */
static int migrate_lists(as_worker_t *w, PGconn *c, bool apply, char *err, size_t errlen) {
  const struct {
    const char *schema, *source;
    const as_migration_t *list;
  } l[] = {{"cases", "cases", as_sql_cases},
           {w->schema, "runtime", as_sql_runtime},
           {w->schema, w->svc->name, w->migrations}};
  int pending = 0;
  for (size_t i = 0; i < AS_LEN(l); i++) {
    if (!l[i].list) continue;
    int rc = apply ? as_migrate_apply(c, l[i].schema, l[i].source, l[i].list, err, errlen)
                   : as_migrate_pending(c, l[i].schema, l[i].source, l[i].list, err, errlen);
    if (rc < 0) return rc;
    if (!apply) pending += rc;
  }
  return pending;
}

/* One attempt at the migrations. They run as the owner role, never as the
 * worker's: over AS_DB_MIGRATE_DSN when set (embedded stack, tests), or
 * over AS_DB_DSN with --migrate (job: the one-shot job of compose and
 * Kubernetes, whose DSN is the owner's). A worker with neither only checks
 * they are applied and waits for the job meanwhile. Returns 0, -EAGAIN
 * (the database or the job is not there yet: try again later) or -EIO (the
 * database answered and refused: fatal). */
static int migrate_once(as_worker_t *w, bool job) {
  char err[512] = "";
  bool own = !job && w->conf.migrate_dsn[0];
  as_db_t mdb;
  as_db_t *db = &w->db;
  if (own) {
    as_db_init(&mdb, w->conf.migrate_dsn, w->client_id, NULL, &w->log);
    db = &mdb;
  }
  int rc = as_db_ensure(db);
  if (rc == 0) rc = migrate_lists(w, db->conn, job || own, err, sizeof err);
  if (rc == 0 && own) rc = as_db_ensure(&w->db); /* the worker's own role logs in */
  if (rc > 0) {
    AS_WARN(&w->log, "migrations not applied yet; waiting for the migration job",
            AS_F_INT("pending", rc), AS_F_STR("schema", w->schema));
    rc = -EAGAIN;
  } else if (rc == -EACCES && !(job || own)) {
    /* the job is between creating its bookkeeping and granting it; a
     * grant that never comes keeps this line coming, and /readyz 503 */
    AS_WARN(&w->log, "migrations table not readable yet; waiting for the migration job",
            AS_F_STR("schema", w->schema), AS_F_STR("detail", err));
    rc = -EAGAIN;
  } else if (rc == -EINVAL ||
             ((rc == -EIO || rc == -EACCES) && db->conn && PQstatus(db->conn) == CONNECTION_OK)) {
    AS_ERROR(&w->log, "migration failed", AS_F_STR("detail", err));
    rc = -EIO;
  } else if (rc < 0) {
    const as_db_t *failed = w->db.err[0] ? &w->db : db;
    AS_WARN(&w->log, "database not reachable; retrying",
            AS_F_STR("detail", failed->err[0] ? failed->err : err));
    as_db_close(db);
    as_db_close(&w->db);
    rc = -EAGAIN;
  }
  if (own) as_db_close(&mdb);
  return rc;
}

static unsigned next_delay(unsigned delay) {
  return delay == 0 ? 100 : delay < 5000 ? delay * 2 : 5000;
}

/* --migrate: waits for the database (a job started before PostgreSQL keeps
 * trying instead of crash-looping). */
static int migrate(as_worker_t *w) {
  for (unsigned delay = 100;; delay = next_delay(delay)) {
    int rc = migrate_once(w, true);
    if (rc != -EAGAIN) return rc;
    usleep(delay * 1000);
  }
}

static void init_metrics(as_worker_t *w) {
  static const double size_bounds[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
  static const double sec_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5};
  as_metrics_t *m = w->metrics;
  w->m.processed = as_metrics_counter(m, "as_messages_processed_total",
                                      "Messages applied (first delivery).", NULL);
  w->m.duplicates = as_metrics_counter(
      m, "as_messages_duplicate_total",
      "Redelivered messages (a known event id, the same bytes) skipped by the inbox.", NULL);
  w->m.ignored =
      as_metrics_counter(m, "as_messages_ignored_total",
                         "Messages of payload types this service has no route for (someone else's, "
                         "or its own events read back): neither applied nor claimed in the inbox.",
                         NULL);
  w->m.failed = as_metrics_counter(m, "as_messages_failed_total",
                                   "Messages in batches that failed and will be retried.", NULL);
  w->m.unprepared = as_metrics_counter(
      m, "as_db_statements_unprepared_total",
      "Statements run without a prepared plan (the connection's statement cache was full).", NULL);
  w->m.handler_failures = as_metrics_counter(
      m, "as_batch_handler_failures_total",
      "Transactions rolled back by a non-transient database error (a message's data broke a "
      "constraint); each is bisected until its culprit is dead-lettered as handler_failed.",
      NULL);
  w->m.bisect_tx = as_metrics_counter(
      m, "as_batch_bisect_transactions_total",
      "Transactions run to isolate failing messages (about log2 of the batch per culprit, its dead "
      "letter included).",
      NULL);
  w->m.retries = as_metrics_counter(m, "as_batch_retries_total",
                                    "Batches retried after a transient failure.", NULL);
  w->m.batch_size = as_metrics_histogram(m, "as_batch_size", "Messages per batch.", NULL,
                                         size_bounds, sizeof size_bounds / sizeof size_bounds[0]);
  w->m.batch_seconds =
      as_metrics_histogram(m, "as_batch_duration_seconds", "Time to apply and commit a batch.",
                           NULL, sec_bounds, sizeof sec_bounds / sizeof sec_bounds[0]);
  w->m.lag = as_metrics_gauge(
      m, "as_consumer_lag", "Messages behind the high watermark, over assigned partitions.", NULL);
  w->m.ready = as_metrics_gauge(m, "as_ready", "1 when the worker reports ready.", NULL);
  w->m.http_dropped = as_metrics_counter(
      m, "as_http_connections_dropped_total",
      "Connections to the HTTP listener closed by AS_HTTP_MAX_CONNECTIONS.", NULL);
}

/* The service's state: zeroed, its metrics in place, then its own init. */
static int init_service(as_worker_t *w) {
  const as_service_t *svc = w->svc;
  char err[256];
  w->state = calloc(1, svc->state_size ? svc->state_size : 1);
  if (!w->state) return -ENOMEM;
  if (as_metrics_register(w->metrics, svc->metrics, svc->nmetrics, w->state, err, sizeof err) < 0) {
    AS_ERROR(&w->log, "service init failed", AS_F_STR("detail", err));
    return -ENOMEM;
  }
  if (as_process_init(&w->proc, w->metrics) < 0) return -ENOMEM;
  int rc = svc->init ? svc->init(w, w->svc_conf, w->state) : 0;
  if (rc < 0) AS_ERROR(&w->log, "service init failed", AS_F_INT("rc", rc));
  return rc;
}

/* Every handle is initialised before anything can fail, so that one
 * shutdown path closes them all whatever happened. */
static int init_handles(as_worker_t *w) {
  if (pipe2(w->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) return -errno;
  uv_timer_t *timers[] = {&w->poll_timer,  &w->again_timer,   &w->retry_timer, &w->scan_timer,
                          &w->drain_timer, &w->migrate_timer, &w->lag_timer};
  for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
    uv_timer_init(&w->loop, timers[i]);
    timers[i]->data = w;
  }
  uv_poll_init(&w->loop, &w->consumer_poll, w->pipefd[0]);
  uv_signal_init(&w->loop, &w->sigterm);
  uv_signal_init(&w->loop, &w->sigint);
  uv_signal_init(&w->loop, &w->sighup);
  w->consumer_poll.data = w->sigterm.data = w->sigint.data = w->sighup.data = w;
  return 0;
}

static as_kafka_opts_t consumer_opts(as_worker_t *w) {
  return (as_kafka_opts_t){.bootstrap = w->conf.bootstrap,
                           .client_id = w->client_id,
                           .group_id = w->group_id,
                           .ctx = &w->kctx,
                           .rebalance_cb = rebalance_cb,
                           .stats_cb = stats_cb,
                           .stats_interval_ms = 1000,
                           .error_cb = error_cb};
}

/* The librdkafka properties (AS_RDKAFKA_*), before any connection. */
static int check_kafka(as_worker_t *w) {
  char err[512];
  as_kafka_opts_t o = consumer_opts(w);
  if (as_kafka_consumer_check(&o, err, sizeof err) == 0) return 0;
  AS_ERROR(&w->log, "bad configuration", AS_F_STR("detail", err));
  return -EINVAL;
}

static int start_kafka(as_worker_t *w) {
  char err[512];
  as_kafka_opts_t o = consumer_opts(w);
  w->consumer = as_kafka_consumer_new(&o, w->topics, w->ntopics, w->pipefd[1], err, sizeof err);
  if (!w->consumer) {
    AS_ERROR(&w->log, "cannot create consumer", AS_F_STR("detail", err));
    return -EINVAL;
  }
  as_relay_conf_t rc = {.dsn = w->conf.dsn,
                        .schema = w->schema,
                        .bootstrap = w->conf.bootstrap,
                        .client_id = w->client_id,
                        .batch = (int)w->conf.relay_batch,
                        .interval_ms = (int)w->conf.relay_interval_ms,
                        .retention_s = (int)w->conf.outbox_retention_s,
                        .failpoint = w->conf.failpoint,
                        .service = w->svc->name,
                        .instance = w->instance,
                        .group_id = w->group_id,
                        .dlq_topic = w->conf.dlq_topic,
                        .dlq_max_bytes = (size_t)w->conf.dlq_max_bytes};
  w->relay = as_relay_new(&rc, &w->log, w->metrics, err, sizeof err);
  if (!w->relay) {
    AS_ERROR(&w->log, "cannot create outbox relay", AS_F_STR("detail", err));
    return -EINVAL;
  }
  return 0;
}

static int start_http(as_worker_t *w) {
  char err[256];
  w->http =
      as_http_start(&w->loop, w->conf.http_addr, (int)w->conf.http_port, route, w, err, sizeof err);
  if (!w->http) {
    AS_ERROR(&w->log, "cannot start http listener", AS_F_STR("detail", err));
    return -EADDRINUSE;
  }
  as_http_set_max_connections(w->http, (unsigned)w->conf.http_max_connections);
  as_http_set_timeout_ms(w->http, (unsigned)w->conf.http_idle_timeout_ms);
  return 0;
}

static void start_consuming(as_worker_t *w) {
  w->batch_progress_at = uv_now(&w->loop);
  uv_poll_start(&w->consumer_poll, UV_READABLE, on_consumer_event);
  uv_timer_start(&w->poll_timer, on_poll_timer, 0, (uint64_t)w->conf.poll_interval_ms);
  uv_timer_start(&w->scan_timer, on_scan, (uint64_t)w->conf.scan_interval_ms,
                 (uint64_t)w->conf.scan_interval_ms);
  uv_timer_start(&w->lag_timer, on_lag_timer, 0, (uint64_t)w->conf.lag_interval_ms);
}

static void start_signals(as_worker_t *w) {
  uv_signal_start(&w->sigterm, on_signal, SIGTERM);
  uv_signal_start(&w->sigint, on_signal, SIGINT);
  uv_signal_start(&w->sighup, on_reload, SIGHUP);
}

/* Migrations applied: the batch session gets its timeouts (not during the
 * migrations, which may wait for other instances' locks), then the
 * consumer, the relay and the timers start. */
static int go_live(as_worker_t *w) {
  as_db_close(&w->db); /* the next as_db_ensure sets the timeouts */
  w->db.statement_timeout_ms = (int)w->conf.statement_timeout_ms;
  w->db.lock_timeout_ms = (int)w->conf.lock_timeout_ms;
  int rc = start_kafka(w);
  if (rc < 0) return rc;
  w->live = true;
  w->db_ok = true;
  start_consuming(w);
  if (w->svc->start) {
    rc = w->svc->start(w, w->state);
    if (rc < 0) {
      AS_ERROR(&w->log, "service start failed", AS_F_INT("rc", rc));
      return rc;
    }
    w->hooked = w->svc->stop != NULL;
  }
  AS_INFO(&w->log, "worker started", AS_F_STR("group", w->group_id), AS_F_STR("schema", w->schema),
          AS_F_INT("http_port", as_http_port(w->http)), AS_F_INT("batch_max", w->conf.batch_max));
  return 0;
}

/* The migrations on the loop, retried with backoff while the database is
 * not there; the HTTP listener answers meanwhile. */
static void on_migrate(uv_timer_t *t) {
  as_worker_t *w = t->data;
  if (w->stopping) return;
  int rc = migrate_once(w, false);
  if (rc == -EAGAIN) {
    w->migrate_delay = next_delay(w->migrate_delay);
    uv_timer_start(t, on_migrate, w->migrate_delay, 0);
    return;
  }
  if (rc == 0) rc = go_live(w);
  if (rc < 0) {
    w->exit_code = 1;
    w->stopping = true;
    finish_shutdown(w);
  }
}

static void usage(const as_service_t *svc, const char *prog) {
  const as_cfg_param_t *tables[2] = {runtime_params, svc->config};
  size_t sizes[2] = {NRUNTIME, svc->nconfig};
  as_config_help(stdout, prog, svc->summary, tables, sizes, svc->config ? 2 : 1);
  printf(
      "\nCommands:\n  %s            run the worker\n  %s --migrate  apply database migrations and "
      "exit\n"
      "  %s --help     this text\n"
      "  %s --version  version and commit\n",
      prog, prog, prog, prog);
}

static void teardown(as_worker_t *w) {
  if (w->assigned) rd_kafka_topic_partition_list_destroy(w->assigned);
  if (w->consumer) rd_kafka_destroy(w->consumer);
  if (w->pipefd[0] >= 0) close(w->pipefd[0]);
  if (w->pipefd[1] >= 0) close(w->pipefd[1]);
  if (w->state && w->svc->fini) w->svc->fini(w->state);
  free(w->state);
  free(w->svc_conf);
  as_tx_free(&w->tx);
  as_db_close(&w->db);
  as_metrics_free(w->metrics);
  free(w->batch);
  free(w->saved);
}

/* The listener first, so that probes answer while the database is still
 * away (a pod waiting for PostgreSQL is alive, only not ready); then the
 * migrations on the loop, then the consumer. */
static int run(as_worker_t *w) {
  if (init_handles(w) < 0) return 1;
  if (start_http(w) == 0) {
    start_signals(w);
    AS_INFO(&w->log, "http listening", AS_F_INT("http_port", as_http_port(w->http)));
    uv_timer_start(&w->migrate_timer, on_migrate, 0, 0);
  } else {
    w->exit_code = 1;
    w->stopping = true;
    finish_shutdown(w);
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);
  int closed = uv_loop_close(&w->loop);
  if (closed != 0)
    AS_ERROR(&w->log, "loop closed with handles open", AS_F_STR("detail", uv_strerror(closed)));
  return w->exit_code != 0 || closed != 0 ? 1 : 0;
}

int as_worker_main(const as_service_t *svc, const as_migration_t *migrations, int argc,
                   char **argv) {
  as_worker_t *w = calloc(1, sizeof *w);
  if (!w) return 1;
  w->svc = svc;
  w->migrations = migrations;
  w->pipefd[0] = w->pipefd[1] = -1;
  w->kctx = (as_kafka_ctx_t){.log = &w->log, .owner = w};
  int code = 2;
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    usage(svc, argv[0]);
    code = 0;
    goto out;
  }
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    printf("%s %s (commit %s%s)\n", argv[0], as_version, as_commit,
           as_failpoint_enabled() ? ", test build: AS_FAILPOINT enabled" : "");
    code = 0;
    goto out;
  }
  if (argc > 1 && strcmp(argv[1], "--migrate") != 0) {
    fprintf(stderr, "%s: unknown argument \"%.40s\" (try --help)\n", argv[0], argv[1]);
    goto out;
  }
  if (load_config(w, svc) < 0 || select_topics(w) < 0) goto out;
  code = 1;
  w->metrics = as_metrics_new(svc->name, w->instance);
  w->batch = calloc((size_t)w->conf.batch_max, sizeof *w->batch);
  w->saved = calloc((size_t)w->conf.batch_max, sizeof *w->saved);
  if (!w->metrics || !w->batch || !w->saved || uv_loop_init(&w->loop) < 0) goto out;
  w->tx_conf = (as_tx_conf_t){.service = svc->name,
                              .instance = w->instance,
                              .group_id = w->group_id,
                              .dlq_topic = w->conf.dlq_topic,
                              .dlq_max_bytes = (size_t)w->conf.dlq_max_bytes,
                              .withheld_topics = svc->withheld_dead_letter_topics};
  as_db_init(&w->db, w->conf.dsn, w->client_id, w->schema, &w->log);
  w->db.defer = true; /* the batch connection is the loop's alone: its writes need not wait */
  as_tx_init(&w->tx, &w->db, &w->tx_conf);
  if (argc > 1) {
    if (migrate(w) == 0) {
      AS_INFO(&w->log, "migrations applied", AS_F_STR("schema", w->schema));
      code = 0;
    }
    goto out_loop;
  }
  /* Everything the service reads (its settings, policy and route files) is
   * checked before any connection: a bad file fails at once, also with no
   * database anywhere, instead of after the database came up. */
  init_metrics(w);
  int rc = check_kafka(w);
  if (rc == 0) rc = init_service(w);
  if (rc < 0) {
    code = rc == -EINVAL ? 2 : 1;
    goto out_loop;
  }
  code = run(w);
  AS_INFO(&w->log, "worker stopped", AS_F_INT("exit_code", code));
  goto out;
out_loop:
  uv_loop_close(&w->loop);
out:
  teardown(w);
  free(w);
  return code;
}
