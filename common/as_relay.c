/* as_relay: the transactional outbox's publisher. See as_relay.h for the
 * guarantees; this file is the state machine
 *   IDLE -> SELECTING -> IN_FLIGHT -> MARKING -> IDLE
 * It runs on its own thread with its own libuv loop: sharing the worker's
 * loop made every relay step wait behind a whole batch and capped the
 * fleet at about half the throughput the database allows. Its two queries
 * (read unsent rows, mark rows sent) are sent asynchronously and read when
 * the socket turns readable; delivery reports arrive through the producer's
 * queue pipe. The worker's thread talks to it only through uv_async_send and
 * the atomics below. */
#include "as_relay.h"

#include <endian.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "as_buf.h"
#include "as_db.h"

typedef enum { R_IDLE, R_SELECTING, R_IN_FLIGHT, R_MARKING } relay_state_t;

struct as_relay {
  uv_loop_t *loop; /* = &own_loop, run by thread */
  uv_loop_t own_loop;
  uv_thread_t thread;
  uv_async_t wake, stop;
  int close_timeout_ms;
  /* Shared with the worker's thread. */
  atomic_bool a_db_ok, a_caught_up, a_active;
  atomic_uint_least64_t a_published, a_failed;
  atomic_int_least64_t a_backlog;
  uint64_t seen_published, seen_failed; /* worker thread only */
  as_relay_conf_t conf;
  const as_log_t *log;
  as_kafka_ctx_t kctx;
  as_db_t db;
  rd_kafka_t *producer;
  int pipefd[2];
  uv_poll_t pipe_poll;
  uv_poll_t *pg_poll; /* per connection; NULL when none */
  uv_timer_t tick, kick;
  relay_state_t state;
  bool active, caught_up, closing;
  bool again; /* woken during a round: start the next one as soon as it ends */
  size_t nflight, ndone, cap;
  int64_t *ids;
  rd_kafka_resp_err_t *status;
  as_buf_t mark; /* the ids array literal of the MARKING query */
  uint64_t retry_at_ms, backlog_at_ms, janitor_at_ms;
  uint64_t t_sel, t_prod, t_dr, t_mark; /* round phase start times (ns), for the debug log */
  unsigned backoff_ms;
  as_counter_t *published, *failed;
  as_gauge_t *backlog, *active_g;
  char channel[80], sql_select[256], sql_mark[160], sql_count[160], sql_janitor[320], lock_key[80];
};

static void relay_step(as_relay_t *r);

static uint64_t now_ms(const as_relay_t *r) { return uv_now(r->loop); }

static void on_tick(uv_timer_t *t);

/* Relay thread: run a step on the next loop iteration. */
static void kick_soon(as_relay_t *r) {
  if (!r->closing) uv_timer_start(&r->kick, on_tick, 0, 0);
}

/* What the worker's thread may read about us. */
static void publish_state(as_relay_t *r) {
  atomic_store(&r->a_db_ok, r->db.conn != NULL);
  atomic_store(&r->a_caught_up, r->state == R_IDLE && r->caught_up);
}

static void backoff(as_relay_t *r) {
  r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 100;
  if (r->backoff_ms > 5000) r->backoff_ms = 5000;
  r->retry_at_ms = now_ms(r) + r->backoff_ms;
}

static void on_pg_poll_closed(uv_handle_t *h) { free(h); }

/* as_db is about to close the socket: stop watching it first. Whatever
 * query was outstanding is lost with the session; in-flight deliveries
 * still complete, but their rows stay unmarked and go out again. */
static void on_db_close(void *arg, int fd) {
  as_relay_t *r = arg;
  (void)fd;
  if (r->pg_poll) uv_close((uv_handle_t *)r->pg_poll, on_pg_poll_closed);
  r->pg_poll = NULL;
  r->active = false; /* the advisory lock died with the session */
  if (r->state == R_SELECTING || r->state == R_MARKING) r->state = R_IDLE;
}

/* ---- asynchronous queries -------------------------------------------- */

static int send_query(as_relay_t *r, const char *sql, int n, const char *const *vals, int fmt) {
  if (!PQsendQueryParams(r->db.conn, sql, n, NULL, vals, NULL, NULL, fmt)) {
    snprintf(r->db.err, sizeof r->db.err, "%s", PQerrorMessage(r->db.conn));
    as_db_close(&r->db);
    return -EAGAIN;
  }
  return 0;
}

/* The one result of the outstanding query; *rc says whether it succeeded.
 * Called once the socket turned readable, i.e. the server has started to
 * answer: waiting for the rest here costs the server's remaining work, while
 * going back to the loop for every socket-buffer-full of a large result
 * would cost a whole batch per chunk. */
static PGresult *take_result(as_relay_t *r, int *rc) {
  PGresult *res = PQgetResult(r->db.conn), *extra;
  while (r->db.conn && (extra = PQgetResult(r->db.conn))) PQclear(extra);
  *rc = as_db_check(&r->db, res); /* a missing result counts as a failure */
  return res;
}

static int grow(as_relay_t *r, size_t n) {
  if (n <= r->cap) return 0;
  int64_t *ids = realloc(r->ids, n * sizeof *ids);
  if (!ids) return -ENOMEM;
  r->ids = ids;
  rd_kafka_resp_err_t *st = realloc(r->status, n * sizeof *st);
  if (!st) return -ENOMEM;
  r->status = st;
  r->cap = n;
  return 0;
}

static int produce_row(as_relay_t *r, PGresult *res, int i) {
  uint64_t be;
  memcpy(&be, PQgetvalue(res, i, 0), sizeof be);
  r->ids[i] = (int64_t)be64toh(be);
  r->status[i] = RD_KAFKA_RESP_ERR__IN_PROGRESS;
  char topic[256];
  snprintf(topic, sizeof topic, "%.*s", PQgetlength(res, i, 2), PQgetvalue(res, i, 2));
  rd_kafka_resp_err_t e = rd_kafka_producev(
      r->producer, RD_KAFKA_V_TOPIC(topic),
      RD_KAFKA_V_KEY(PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3)),
      RD_KAFKA_V_VALUE(PQgetvalue(res, i, 4), (size_t)PQgetlength(res, i, 4)),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADER("event_id", PQgetvalue(res, i, 1), (ssize_t)PQgetlength(res, i, 1)),
      RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
  if (e) {
    AS_WARN(r->log, "outbox produce refused", AS_F_STR("topic", topic),
            AS_F_STR("error", rd_kafka_err2str(e)));
    return -1;
  }
  return 0;
}

/* SELECTING done: hand the rows to the producer. */
static void selected(as_relay_t *r, PGresult *res) {
  int n = PQntuples(res);
  r->caught_up = n == 0;
  r->state = R_IDLE;
  if (n == 0 || grow(r, (size_t)n) < 0) return;
  r->t_prod = uv_hrtime();
  int sent = 0;
  while (sent < n && produce_row(r, res, sent) == 0) sent++;
  r->nflight = (size_t)sent;
  r->ndone = 0;
  if (sent > 0) r->state = R_IN_FLIGHT;
  if (sent < n) backoff(r);
  r->t_dr = uv_hrtime();
}

static void start_select(as_relay_t *r) {
  char lim[16];
  snprintf(lim, sizeof lim, "%d", r->conf.batch);
  const char *vals[1] = {lim};
  r->t_sel = uv_hrtime();
  if (send_query(r, r->sql_select, 1, vals, 1) == 0) r->state = R_SELECTING;
  else backoff(r);
}

/* IN_FLIGHT done (every delivery report in): mark the delivered rows. */
static void start_mark(as_relay_t *r) {
  if (r->conf.failpoint && strcmp(r->conf.failpoint, "relay_after_delivery") == 0) raise(SIGKILL);
  r->t_mark = uv_hrtime();
  as_buf_reset(&r->mark);
  as_buf_arr_open(&r->mark);
  size_t ok = 0;
  for (size_t i = 0; i < r->nflight; i++) {
    if (r->status[i] != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    char num[24];
    as_buf_arr_raw(&r->mark, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)r->ids[i]));
    ok++;
  }
  as_buf_arr_close(&r->mark);
  atomic_fetch_add(&r->a_published, ok);
  atomic_fetch_add(&r->a_failed, r->nflight - ok);
  if (ok < r->nflight) backoff(r); /* unmarked rows go out again: same event ids */
  r->state = R_IDLE;
  if (ok == 0 || !r->db.conn || !as_buf_ok(&r->mark)) return;
  const char *vals[1] = {as_buf_str(&r->mark)};
  if (send_query(r, r->sql_mark, 1, vals, 0) == 0) r->state = R_MARKING;
}

static void marked(as_relay_t *r, int rc) {
  r->state = R_IDLE;
  if (r->again) kick_soon(r); /* a commit arrived during the round: don't wait for the timer */
  uint64_t t = uv_hrtime();
  AS_DEBUG(r->log, "relay round", AS_F_INT("rows", r->nflight), AS_F_INT("select_us", (r->t_prod - r->t_sel) / 1000),
           AS_F_INT("produce_us", (r->t_dr - r->t_prod) / 1000), AS_F_INT("delivery_us", (r->t_mark - r->t_dr) / 1000),
           AS_F_INT("mark_us", (t - r->t_mark) / 1000));
  if (rc < 0) {
    backoff(r);
    return;
  }
  if (r->retry_at_ms <= now_ms(r)) r->backoff_ms = 0;
  if (r->nflight == (size_t)r->conf.batch) kick_soon(r);
}

/* The socket is readable: a query result, a notification, or both. */
static void on_pg_readable(uv_poll_t *h, int status, int events) {
  as_relay_t *r = h->data;
  (void)events;
  if (status < 0 || !r->db.conn) return;
  if (!PQconsumeInput(r->db.conn)) {
    as_db_close(&r->db);
    backoff(r);
    return;
  }
  bool notified = false;
  for (PGnotify *n; (n = PQnotifies(r->db.conn)); PQfreemem(n)) notified = true;
  if (r->state == R_SELECTING || r->state == R_MARKING) {
    int rc = 0;
    PGresult *res = take_result(r, &rc);
    if (r->state == R_MARKING) marked(r, rc);
    else if (rc == 0) selected(r, res);
    else r->state = R_IDLE, backoff(r);
    PQclear(res);
    /* The next round starts from a kick, the timer or a NOTIFY: starting it
     * here would spin on an empty outbox. */
  } else if (notified) {
    kick_soon(r);
  }
  publish_state(r);
}

/* ---- connection, lock, housekeeping (synchronous, only when idle) ------ */

static int relay_connect(as_relay_t *r) {
  if (r->db.conn) return 0;
  if (as_db_ensure(&r->db) < 0) return -EAGAIN;
  char sql[128];
  snprintf(sql, sizeof sql, "LISTEN %s", r->channel);
  if (as_db_query(&r->db, sql, 0, NULL, NULL) < 0) return -EAGAIN;
  r->pg_poll = malloc(sizeof *r->pg_poll);
  if (!r->pg_poll || uv_poll_init(r->loop, r->pg_poll, PQsocket(r->db.conn)) < 0) {
    free(r->pg_poll);
    r->pg_poll = NULL;
    as_db_close(&r->db);
    return -EAGAIN;
  }
  r->pg_poll->data = r;
  uv_poll_start(r->pg_poll, UV_READABLE, on_pg_readable);
  return 0;
}

static void try_lock(as_relay_t *r) {
  PGresult *res = NULL;
  const char *vals[1] = {r->lock_key};
  if (as_db_query(&r->db, "SELECT pg_try_advisory_lock(hashtext($1))", 1, vals, &res) == 0) {
    bool got = PQgetvalue(res, 0, 0)[0] == 't';
    if (got && !r->active) AS_INFO(r->log, "outbox relay active", AS_F_STR("schema", r->conf.schema));
    r->active = got;
  }
  PQclear(res);
  atomic_store(&r->a_active, r->active);
}

static void housekeeping(as_relay_t *r) {
  uint64_t now = now_ms(r);
  if (now >= r->backlog_at_ms) {
    PGresult *res = NULL;
    if (as_db_query(&r->db, r->sql_count, 0, NULL, &res) == 0)
      atomic_store(&r->a_backlog, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    PQclear(res);
    r->backlog_at_ms = now + 2000;
  }
  if (r->active && r->db.conn && now >= r->janitor_at_ms) {
    as_db_query(&r->db, r->sql_janitor, 0, NULL, NULL);
    r->janitor_at_ms = now + 60000;
  }
}

static void serve_producer(as_relay_t *r) {
  if (!r->producer) return;
  rd_kafka_poll(r->producer, 0);
  if (r->state == R_IN_FLIGHT && r->ndone >= r->nflight) start_mark(r);
}

static void relay_step_inner(as_relay_t *r) {
  serve_producer(r);
  if (r->state != R_IDLE) r->again = true;
  if (r->closing || r->state != R_IDLE || now_ms(r) < r->retry_at_ms) return;
  r->again = false;
  if (relay_connect(r) < 0) {
    backoff(r);
    return;
  }
  housekeeping(r);
  if (r->db.conn && !r->active) try_lock(r);
  if (!r->active) {
    r->caught_up = true;
    return;
  }
  if (r->db.conn) start_select(r);
}

static void relay_step(as_relay_t *r) {
  relay_step_inner(r);
  publish_state(r);
}

static void on_tick(uv_timer_t *t) { relay_step(t->data); }
static void on_wake(uv_async_t *a) { relay_step(a->data); }

static void on_pipe(uv_poll_t *h, int status, int events) {
  as_relay_t *r = h->data;
  (void)status;
  (void)events;
  char buf[64];
  while (read(r->pipefd[0], buf, sizeof buf) > 0) {
  }
  serve_producer(r);
  publish_state(r);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  as_relay_t *r = ((as_kafka_ctx_t *)opaque)->owner;
  size_t i = (size_t)(intptr_t)m->_private;
  if (r->state == R_IN_FLIGHT && i < r->nflight) {
    r->status[i] = m->err;
    r->ndone++;
  }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  as_relay_t *r = ((as_kafka_ctx_t *)opaque)->owner;
  (void)rk;
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT) return; /* librdkafka's own log line said it */
  AS_LOG(r->log, err == RD_KAFKA_RESP_ERR__FATAL ? AS_LOG_ERROR : AS_LOG_WARN, "producer error",
         AS_F_STR("error", rd_kafka_err2str(err)), AS_F_STR("detail", reason));
}

/* ---- public ----------------------------------------------------------- */

void as_relay_kick(as_relay_t *r) {
  if (r) uv_async_send(&r->wake);
}

bool as_relay_db_ok(const as_relay_t *r) { return atomic_load(&((as_relay_t *)r)->a_db_ok); }

bool as_relay_caught_up(const as_relay_t *r) { return atomic_load(&((as_relay_t *)r)->a_caught_up); }

void as_relay_update_metrics(as_relay_t *r) {
  uint64_t p = atomic_load(&r->a_published), f = atomic_load(&r->a_failed);
  as_counter_add(r->published, p - r->seen_published);
  as_counter_add(r->failed, f - r->seen_failed);
  r->seen_published = p;
  r->seen_failed = f;
  as_gauge_set(r->backlog, (double)atomic_load(&r->a_backlog));
  as_gauge_set(r->active_g, atomic_load(&r->a_active) ? 1 : 0);
}

static void format_sql(as_relay_t *r) {
  const char *s = r->conf.schema;
  snprintf(r->channel, sizeof r->channel, "as_outbox_%s", s);
  snprintf(r->lock_key, sizeof r->lock_key, "as_relay:%s", s);
  snprintf(r->sql_select, sizeof r->sql_select,
           "SELECT id, event_id::text, topic, msg_key, payload FROM %s.outbox"
           " WHERE sent_at IS NULL ORDER BY id LIMIT $1::int", s);
  snprintf(r->sql_mark, sizeof r->sql_mark,
           "UPDATE %s.outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", s);
  snprintf(r->sql_count, sizeof r->sql_count, "SELECT count(*) FROM %s.outbox WHERE sent_at IS NULL", s);
  /* Oldest ids first through the primary key: sent rows older than the
   * retention sit at the low end. */
  snprintf(r->sql_janitor, sizeof r->sql_janitor,
           "DELETE FROM %s.outbox WHERE id IN (SELECT id FROM %s.outbox WHERE sent_at < now() - "
           "make_interval(secs => %d) ORDER BY id LIMIT 50000)", s, s, r->conf.retention_s);
}

static void init_metrics(as_relay_t *r, as_metrics_t *m) {
  r->published = as_metrics_counter(m, "as_outbox_published_total", "Outbox rows delivered to Kafka.", NULL);
  r->failed = as_metrics_counter(m, "as_outbox_failed_total", "Outbox deliveries that failed and will be retried.", NULL);
  r->backlog = as_metrics_gauge(m, "as_outbox_backlog", "Outbox rows not yet published.", NULL);
  r->active_g = as_metrics_gauge(m, "as_relay_active", "1 if this instance is the active outbox relay.", NULL);
}

static void relay_thread(void *arg) {
  as_relay_t *r = arg;
  uv_run(r->loop, UV_RUN_DEFAULT);
}

static void on_stop(uv_async_t *a);

as_relay_t *as_relay_new(const as_relay_conf_t *conf, const as_log_t *log, as_metrics_t *metrics,
                         char *err, size_t errlen) {
  as_relay_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->loop = &r->own_loop;
  r->conf = *conf;
  r->log = log;
  r->kctx = (as_kafka_ctx_t){.log = log, .owner = r};
  r->pipefd[0] = r->pipefd[1] = -1;
  as_buf_init(&r->mark);
  as_db_init(&r->db, conf->dsn, conf->client_id, log);
  r->db.on_close = on_db_close;
  r->db.on_close_arg = r;
  format_sql(r);
  init_metrics(r, metrics);
  if (pipe2(r->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    goto fail;
  }
  as_kafka_opts_t o = {.bootstrap = conf->bootstrap, .client_id = conf->client_id, .ctx = &r->kctx,
                       .dr_msg_cb = dr_cb, .error_cb = error_cb};
  r->producer = as_kafka_producer_new(&o, r->pipefd[1], err, errlen);
  if (!r->producer || uv_loop_init(r->loop) < 0) goto fail;
  uv_timer_init(r->loop, &r->tick);
  uv_timer_init(r->loop, &r->kick);
  uv_poll_init(r->loop, &r->pipe_poll, r->pipefd[0]);
  uv_async_init(r->loop, &r->wake, on_wake);
  uv_async_init(r->loop, &r->stop, on_stop);
  r->tick.data = r->kick.data = r->pipe_poll.data = r->wake.data = r->stop.data = r;
  uv_poll_start(&r->pipe_poll, UV_READABLE, on_pipe);
  uv_timer_start(&r->tick, on_tick, 0, (uint64_t)conf->interval_ms);
  if (uv_thread_create(&r->thread, relay_thread, r) < 0) {
    snprintf(err, errlen, "cannot start the relay thread");
    goto fail; /* handles on a loop that never ran: leaked with it, process exits */
  }
  return r;
fail:
  if (r->producer) rd_kafka_destroy(r->producer);
  if (r->pipefd[0] >= 0) close(r->pipefd[0]);
  if (r->pipefd[1] >= 0) close(r->pipefd[1]);
  free(r);
  return NULL;
}

/* Finishes the round in hand synchronously: the relay is stopping anyway. */
static void finish_round(as_relay_t *r, int timeout_ms) {
  if (r->state == R_SELECTING || r->state == R_MARKING) {
    PGresult *res;
    while (r->db.conn && (res = PQgetResult(r->db.conn))) {
      if (r->state == R_SELECTING && as_db_check(&r->db, res) == 0) selected(r, res);
      PQclear(res);
    }
    if (r->state != R_IN_FLIGHT) r->state = R_IDLE;
  }
  if (r->state == R_IN_FLIGHT) {
    rd_kafka_flush(r->producer, timeout_ms);
    serve_producer(r);
  }
  if (r->state == R_MARKING) {
    PGresult *res;
    while (r->db.conn && (res = PQgetResult(r->db.conn))) PQclear(res);
    r->state = R_IDLE;
  }
}

/* Relay thread: deliver and mark what is in flight, so a clean stop
 * republishes nothing, then close every handle; the loop then ends. */
static void on_stop(uv_async_t *a) {
  as_relay_t *r = a->data;
  r->closing = true;
  finish_round(r, r->close_timeout_ms);
  as_db_close(&r->db); /* closes pg_poll via on_db_close */
  uv_handle_t *hs[] = {(uv_handle_t *)&r->tick, (uv_handle_t *)&r->kick, (uv_handle_t *)&r->pipe_poll,
                       (uv_handle_t *)&r->wake, (uv_handle_t *)&r->stop};
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) uv_close(hs[i], NULL);
}

void as_relay_close(as_relay_t *r, int timeout_ms, void (*done)(void *arg), void *arg) {
  if (!r) return;
  r->close_timeout_ms = timeout_ms;
  uv_async_send(&r->stop);
  uv_thread_join(&r->thread);
  as_relay_update_metrics(r);
  uv_loop_close(r->loop);
  rd_kafka_destroy(r->producer);
  close(r->pipefd[0]);
  close(r->pipefd[1]);
  as_buf_free(&r->mark);
  free(r->ids);
  free(r->status);
  free(r);
  if (done) done(arg);
}
