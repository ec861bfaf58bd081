/* as_relay: the transactional outbox's publisher. See as_relay.h for the
 * guarantees. One query at a time is outstanding on its connection (SELECT
 * unsent rows above the table's, or UPDATE delivered rows to sent); rows
 * between the two live in a table of slots (FLYING until their delivery
 * report, DELIVERED until a mark is sent, MARKING until it returns), and
 * pump() puts the connection to work whenever it is free.
 * It runs on its own thread with its own libuv loop: sharing the worker's
 * loop made every relay step wait behind a whole batch and capped the
 * fleet at about half the throughput the database allows. Its two queries
 * (read unsent rows, mark rows sent) are sent asynchronously and read when
 * the socket turns readable; delivery reports arrive through the producer's
 * queue pipe. The worker's thread talks to it only through uv_async_send and
 * the atomics below. */
#include "as_relay.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "as_buf.h"
#include "as_db.h"
#include "as_failpoint.h"
#include "as_tx.h"
#include "as_uuid.h"

typedef enum { Q_NONE, Q_SELECT, Q_MARK } relay_query_t;
enum { S_FREE, S_FLYING, S_DELIVERED, S_MARKING }; /* a slot's row */

/* A row to park: the outbox id and why the producer refused it. */
typedef struct park {
  int64_t id;
  rd_kafka_resp_err_t err;
} park_t;

struct as_relay {
  uv_loop_t *loop; /* = &own_loop, run by thread */
  uv_loop_t own_loop;
  uv_thread_t thread;
  uv_async_t wake, stop;
  int close_timeout_ms;
  /* Shared with the worker's thread. */
  atomic_bool a_db_ok, a_caught_up, a_active;
  atomic_uint_least64_t a_published, a_failed, a_kicks, a_kicks_seen, a_parked, a_restarts;
  atomic_uint_least64_t a_progress_ns; /* uv_hrtime of the last progress (as_relay_stalled_ms) */
  atomic_int_least64_t a_backlog;
  atomic_int a_local_pid;
  uint64_t seen_published, seen_failed, seen_parked, seen_restarts; /* worker thread only */
  as_relay_conf_t conf;
  const as_log_t *log;
  as_kafka_ctx_t kctx;
  as_db_t db;
  rd_kafka_t *producer;
  int pipefd[2];
  uv_poll_t pipe_poll;
  uv_poll_t *pg_poll; /* per connection; NULL when none */
  uv_timer_t tick;
  relay_query_t query, last_query; /* the one query outstanding on the connection */
  bool active, closing;
  bool want;      /* something may have been committed: select when the connection is free */
  bool caught_up; /* the last full select found nothing (see as_relay_caught_up) */
  bool need_full; /* a select since the last full one skipped the ids below the rows in the table */
  bool full_due;  /* no more pipelined selects: a full one once the table is empty */
  bool sel_full;
  bool halted;    /* a delivery failed: no select until every report is in, then a full one */
  bool purge_due; /* halted: purge the producer's queue and in-flight requests at the next pump */
  bool isolate;   /* a permanent failure: the next full select resends the oldest row alone */
  int64_t alone;  /* the row sent alone (isolate), 0 when none: its verdict is its own */
  bool fatal;     /* the producer raised a fatal error: replace it */
  int sel_limit;
  uint64_t sel_kicks;
  /* The table of rows produced and not yet marked sent: slot i holds row
   * ids[i] in state st[i]; free slots are stacked in freel; dlv lists the
   * delivered slots waiting for the next mark, mrk those being marked. */
  size_t cap, nused, nflying, nfree, ndlv, nmrk;
  int64_t *ids, hi; /* hi: the highest id in the table, 0 when empty */
  uint8_t *st;
  uint32_t *freel, *dlv, *mrk;
  as_buf_t mark; /* the ids array literal of the MARK query */
  park_t *parks; /* rows to park at the next pump, nparks of cap */
  size_t nparks;
  as_tx_conf_t ptx_conf; /* the dead letters of parked rows */
  as_tx_t ptx;
  as_kafka_opts_t kopts;
  uint64_t retry_at_ms, backlog_at_ms, janitor_at_ms;
  uint64_t t_sel, t_mark; /* query start times (ns), for the debug log */
  unsigned backoff_ms;
  as_counter_t *published, *failed, *parked, *restarts;
  as_gauge_t *backlog, *active_g;
  char listen[80], lock_key[80]; /* LISTEN as_outbox_<schema>; as_relay:<schema> */
};

static void pump(as_relay_t *r);

/* The connection's search_path is the service's schema (as_db). */
static const char sql_select[] =
    "SELECT id, event_id::text, topic, msg_key, payload FROM outbox"
    " WHERE sent_at IS NULL AND id > $2::bigint ORDER BY id LIMIT $1::int";
static const char sql_mark[] = "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])";
/* Oldest ids first through the primary key: sent rows older than the
 * retention sit at the low end. Parked rows stay for inspection. */
static const char sql_janitor[] =
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_at < now() - "
    "make_interval(secs => $1::int) AND parked_at IS NULL ORDER BY id LIMIT 50000)";

static uint64_t now_ms(const as_relay_t *r) {
  return uv_now(r->loop);
}

static void progress(as_relay_t *r) {
  atomic_store(&r->a_progress_ns, uv_hrtime());
}

/* What the worker's thread may read about us. */
static void publish_state(as_relay_t *r) {
  bool idle = r->query == Q_NONE && r->nused == 0 && r->caught_up;
  atomic_store(&r->a_db_ok, r->db.conn != NULL);
  atomic_store(&r->a_caught_up, idle);
  if (idle) progress(r);
}

static void backoff(as_relay_t *r) {
  r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 100;
  if (r->backoff_ms > 5000) r->backoff_ms = 5000;
  r->retry_at_ms = now_ms(r) + r->backoff_ms;
}

/* Rows below the table's were skipped by pipelined selects: a row whose
 * delivery or marking failed, or one committed late by another instance,
 * may sit there. A full select finds them once the table is empty. */
static void want_full(as_relay_t *r) {
  r->need_full = r->full_due = true;
}

/* ---- the table of rows in flight ---------------------------------------- */

static void slot_free(as_relay_t *r, uint32_t s) {
  r->st[s] = S_FREE;
  r->freel[r->nfree++] = s;
  if (--r->nused == 0) r->hi = 0;
}

static void on_pg_poll_closed(uv_handle_t *h) {
  free(h);
}

/* as_db is about to close the socket: stop watching it first. Whatever
 * query was outstanding is lost with the session: rows being marked may or
 * may not be, so they leave the table (a full select republishes those that
 * are not: same event ids). Rows in flight still complete and are marked on
 * the next connection. */
static void on_db_close(void *arg, int fd) {
  as_relay_t *r = arg;
  (void)fd;
  if (r->pg_poll) uv_close((uv_handle_t *)r->pg_poll, on_pg_poll_closed);
  r->pg_poll = NULL;
  r->active = false; /* the advisory lock died with the session */
  if (r->query == Q_MARK) {
    for (size_t i = 0; i < r->nmrk; i++) slot_free(r, r->mrk[i]);
    r->nmrk = 0;
    want_full(r);
  }
  r->query = Q_NONE;
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
 * Called once the whole result is in (PQisBusy false), or at shutdown,
 * where waiting for it is the point. */
static PGresult *take_result(as_relay_t *r, int *rc) {
  PGresult *res = PQgetResult(r->db.conn), *extra;
  while (r->db.conn && (extra = PQgetResult(r->db.conn))) PQclear(extra);
  *rc = as_db_check(&r->db, res); /* a missing result counts as a failure */
  return res;
}

/* Errors that say this message will never be accepted, however often it is
 * sent: its row is parked rather than retried for ever. */
static bool permanent(rd_kafka_resp_err_t e) {
  switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
      return true;
    default:
      return false;
  }
}

static void queue_park(as_relay_t *r, int64_t id, rd_kafka_resp_err_t e) {
  for (size_t i = 0; i < r->nparks; i++)
    if (r->parks[i].id == id) return;
  if (r->nparks < r->cap) r->parks[r->nparks++] = (park_t){id, e};
  want_full(r); /* the rows after it were skipped by nothing: a full select finds them */
}

static int produce_row(as_relay_t *r, PGresult *res, int i) {
  uint64_t be;
  memcpy(&be, PQgetvalue(res, i, 0), sizeof be);
  uint32_t s = r->freel[--r->nfree];
  r->ids[s] = (int64_t)be64toh(be);
  r->st[s] = S_FLYING;
  r->nused++;
  char topic[256];
  snprintf(topic, sizeof topic, "%.*s", PQgetlength(res, i, 2), PQgetvalue(res, i, 2));
  rd_kafka_resp_err_t e = rd_kafka_producev(
      r->producer, RD_KAFKA_V_TOPIC(topic),
      RD_KAFKA_V_KEY(PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3)),
      RD_KAFKA_V_VALUE(PQgetvalue(res, i, 4), (size_t)PQgetlength(res, i, 4)),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADER("event_id", PQgetvalue(res, i, 1), (ssize_t)PQgetlength(res, i, 1)),
      RD_KAFKA_V_OPAQUE((void *)(uintptr_t)s), RD_KAFKA_V_END);
  if (e && permanent(e)) { /* this row alone: the ones after it still go */
    queue_park(r, r->ids[s], e);
    slot_free(r, s);
    return 0;
  }
  if (e) {
    slot_free(r, s);
    AS_WARN(r->log, "outbox produce refused", AS_F_STR("topic", topic),
            AS_F_STR("error", rd_kafka_err2str(e)));
    return -1;
  }
  r->nflying++;
  if (r->isolate) r->alone = r->ids[s]; /* the one row of an isolating select */
  if (r->ids[s] > r->hi) r->hi = r->ids[s];
  return 0;
}

/* SELECT done: hand the rows to the producer; they join the table. A
 * select that was on its way when a delivery failed is dropped: its rows
 * would overtake the failed one; the full select after the halt has them. */
static void selected(as_relay_t *r, PGresult *res) {
  int n = PQntuples(res);
  r->query = Q_NONE;
  if (r->halted || r->fatal) {
    want_full(r);
    return;
  }
  if (n == 0 && r->sel_full) {
    r->caught_up = true;
    atomic_store(&r->a_kicks_seen, r->sel_kicks);
  }
  if (n > 0) r->caught_up = false;
  int sent = 0;
  while (sent < n && produce_row(r, res, sent) == 0) sent++;
  if (sent < n) {
    backoff(r);
    want_full(r);
  }
  if (n == r->sel_limit) r->want = true; /* more rows wait */
  AS_DEBUG(r->log, "relay select", AS_F_INT("rows", n), AS_F_INT("full", r->sel_full),
           AS_F_INT("select_us", (uv_hrtime() - r->t_sel) / 1000), AS_F_INT("in_table", r->nused));
}

static void start_select(as_relay_t *r) {
  size_t room = r->cap - r->nused;
  r->sel_limit = room < (size_t)r->conf.batch ? (int)room : r->conf.batch;
  r->sel_full = r->nused == 0;
  if (r->isolate) r->sel_limit = 1; /* pump selects only when the table is empty */
  r->alone = 0;
  if (r->sel_full) {
    r->need_full = r->full_due = false;
    r->sel_kicks = atomic_load(&r->a_kicks);
  } else {
    r->need_full = true;
  }
  char lim[16], after[24];
  snprintf(lim, sizeof lim, "%d", r->sel_limit);
  snprintf(after, sizeof after, "%lld", (long long)r->hi);
  const char *vals[2] = {lim, after};
  r->want = false;
  r->t_sel = uv_hrtime();
  if (send_query(r, sql_select, 2, vals, 1) == 0)
    r->query = r->last_query = Q_SELECT;
  else
    backoff(r);
}

/* Delivered rows are marked sent in one UPDATE, while the next rows may
 * already be on their way. */
static void start_mark(as_relay_t *r) {
  if (as_failpoint_armed(r->conf.failpoint, "relay_after_delivery")) raise(SIGKILL);
  uint32_t *t = r->mrk;
  r->mrk = r->dlv;
  r->dlv = t;
  r->nmrk = r->ndlv;
  r->ndlv = 0;
  as_buf_reset(&r->mark);
  as_buf_arr_open(&r->mark);
  for (size_t i = 0; i < r->nmrk; i++) {
    char num[24];
    r->st[r->mrk[i]] = S_MARKING;
    as_buf_arr_raw(&r->mark, num,
                   (size_t)snprintf(num, sizeof num, "%lld", (long long)r->ids[r->mrk[i]]));
  }
  as_buf_arr_close(&r->mark);
  r->t_mark = uv_hrtime();
  const char *vals[1] = {as_buf_str(&r->mark)};
  if (as_buf_ok(&r->mark) && send_query(r, sql_mark, 1, vals, 0) == 0) {
    r->query = r->last_query = Q_MARK;
    return;
  }
  for (size_t i = 0; i < r->nmrk; i++) slot_free(r, r->mrk[i]); /* unmarked: republished later */
  r->nmrk = 0;
  want_full(r);
  backoff(r);
}

static void marked(as_relay_t *r, int rc) {
  r->query = Q_NONE;
  AS_DEBUG(r->log, "relay mark", AS_F_INT("rows", r->nmrk),
           AS_F_INT("mark_us", (uv_hrtime() - r->t_mark) / 1000));
  for (size_t i = 0; i < r->nmrk; i++) slot_free(r, r->mrk[i]);
  r->nmrk = 0;
  if (rc < 0) {
    want_full(r); /* unmarked rows go out again: same event ids */
    backoff(r);
  } else if (r->retry_at_ms <= now_ms(r)) {
    r->backoff_ms = 0;
  }
}

/* NOTIFYs libpq has parsed (also while reading a result or running a
 * synchronous query, after which the socket may stay quiet). Our own
 * worker's commits wake us directly (as_relay_committed): a NOTIFY from its
 * backend would only cost an empty select. */
static void take_notifies(as_relay_t *r) {
  int local = atomic_load(&r->a_local_pid);
  for (PGnotify *n; r->db.conn && (n = PQnotifies(r->db.conn)); PQfreemem(n))
    if (n->be_pid != local) r->want = true;
}

/* The socket is readable: a query result, a notification, or both. */
static void on_pg_readable(uv_poll_t *h, int status, int events) {
  as_relay_t *r = h->data;
  (void)events;
  if (!r->db.conn) return;
  /* A failed poll is stopped by libuv: the session is lost to us (an
   * outstanding query would wait for ever), so it is closed and made anew. */
  if (status < 0 || !PQconsumeInput(r->db.conn)) {
    as_db_close(&r->db);
    backoff(r);
    publish_state(r);
    return;
  }
  take_notifies(r);
  if (r->query != Q_NONE && !PQisBusy(r->db.conn)) {
    int rc = 0;
    PGresult *res = take_result(r, &rc);
    if (r->query == Q_MARK)
      marked(r, rc);
    else if (rc == 0)
      selected(r, res);
    else
      r->query = Q_NONE, backoff(r);
    PQclear(res);
  }
  pump(r);
  publish_state(r);
}

/* ---- connection, lock, housekeeping (synchronous, only when idle) ------ */

static int relay_connect(as_relay_t *r) {
  if (r->db.conn) return 0;
  if (as_db_ensure(&r->db) < 0) return -EAGAIN;
  if (as_db_query(&r->db, r->listen, 0, NULL, NULL) < 0) return -EAGAIN;
  /* The select must walk the partial index of unsent rows in id order: an
   * index scan marks the entries of rows marked sent since as dead, so the
   * next scans skip them. The planner prefers a bitmap scan plus sort
   * whenever its row estimate is near the LIMIT, and a bitmap scan kills
   * nothing: every select then revisited every row sent since the last
   * vacuum (120,000 rows: 10-30 ms a select, the relay's whole latency). */
  if (as_db_query(&r->db, "SET enable_bitmapscan = off", 0, NULL, NULL) < 0 ||
      as_db_query(&r->db, "SET enable_sort = off", 0, NULL, NULL) < 0)
    return -EAGAIN;
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
    if (got && !r->active)
      AS_INFO(r->log, "outbox relay active", AS_F_STR("schema", r->conf.schema));
    r->active = got;
  }
  PQclear(res);
  atomic_store(&r->a_active, r->active);
}

static void housekeeping(as_relay_t *r) {
  uint64_t now = now_ms(r);
  if (now >= r->backlog_at_ms) {
    PGresult *res = NULL;
    if (as_db_query(&r->db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0, NULL, &res) ==
        0)
      atomic_store(&r->a_backlog, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    PQclear(res);
    r->backlog_at_ms = now + 2000;
  }
  if (r->active && r->db.conn && now >= r->janitor_at_ms) {
    /* A failed trim is retried next round; the warning says why the outbox
     * grows if it keeps failing. */
    char secs[16];
    snprintf(secs, sizeof secs, "%d", r->conf.retention_s);
    const char *vals[1] = {secs};
    if (as_db_query(&r->db, sql_janitor, 1, vals, NULL) < 0)
      AS_WARN(r->log, "outbox trim failed", AS_F_STR("error", r->db.err));
    r->janitor_at_ms = now + 60000;
  }
}

/* ---- parking rows the producer refuses for good ------------------------ */

static const char sql_park_row[] =
    "SELECT event_id::text, topic, msg_key, length(payload), substring(payload FROM 1 FOR $2::int)"
    " FROM outbox WHERE id = $1::bigint AND sent_at IS NULL FOR UPDATE";
static const char sql_park_mark[] =
    "UPDATE outbox SET sent_at = now(), parked_at = now(), park_reason = $2 WHERE id = $1::bigint";

/* The parked row's dead letter, queued on ptx. Its id is derived from the
 * row's event id, so parking the same row again (a crash before COMMIT)
 * yields the same dead letter. res: sql_park_row's one row (binary). */
static int park_dead_letter(as_relay_t *r, PGresult *res, const char *detail) {
  const char *event_id = PQgetvalue(res, 0, 0), *topic = PQgetvalue(res, 0, 1);
  uint32_t be;
  memcpy(&be, PQgetvalue(res, 0, 3), sizeof be);
  char name[128], id[AS_UUID_STRLEN + 1];
  int nlen = snprintf(name, sizeof name, "outbox|%s|%s", r->conf.schema, event_id);
  as_uuid_v5(id, "aftersales.deadletter", name, (size_t)nlen);
  Aftersales__V1__DeadLetter dl = AFTERSALES__V1__DEAD_LETTER__INIT;
  dl.reason_code = (char *)AS_DLQ_OUTBOX_REFUSED;
  dl.detail = (char *)detail;
  dl.source_topic = (char *)topic;
  dl.source_partition = -1; /* it never reached Kafka */
  dl.source_offset = -1;
  dl.source_key = (ProtobufCBinaryData){.len = (size_t)PQgetlength(res, 0, 2),
                                        .data = (uint8_t *)PQgetvalue(res, 0, 2)};
  dl.original = (ProtobufCBinaryData){.len = (size_t)PQgetlength(res, 0, 4),
                                      .data = (uint8_t *)PQgetvalue(res, 0, 4)};
  dl.original_size = (int64_t)be32toh(be);
  dl.consumer_group = (char *)r->conf.group_id;
  dl.failed_at_us = as_now_us();
  dl.original_event_id = (char *)event_id;
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER;
  env.dead_letter = &dl;
  return as_tx_publish(&r->ptx, NULL, r->conf.dlq_topic, topic, &env);
}

/* One transaction: the row marked parked and its dead letter queued in the
 * outbox. A row already sent or parked (another instance) is left alone. */
static int park_one(as_relay_t *r, const park_t *p) {
  char id[24], keep[24], detail[200];
  snprintf(id, sizeof id, "%lld", (long long)p->id);
  snprintf(keep, sizeof keep, "%zu", r->conf.dlq_max_bytes);
  snprintf(detail, sizeof detail, "%s: %s", rd_kafka_err2name(p->err), rd_kafka_err2str(p->err));
  const char *vals[2] = {id, keep};
  PGresult *res = NULL;
  int rc = as_db_begin(&r->db);
  if (rc == 0) rc = as_db_query_ex(&r->db, sql_park_row, 2, vals, NULL, NULL, 1, &res);
  bool found = rc == 0 && PQntuples(res) == 1;
  if (found) {
    AS_ERROR(r->log, "outbox row parked: the producer refuses it", AS_F_INT("outbox_id", p->id),
             AS_F_STR("event_id", PQgetvalue(res, 0, 0)), AS_F_STR("topic", PQgetvalue(res, 0, 1)),
             AS_F_STR("reason", detail));
    rc = park_dead_letter(r, res, detail);
    if (rc == 0) rc = as_tx_flush(&r->ptx, NULL, 0);
    const char *mv[2] = {id, detail};
    if (rc == 0) rc = as_db_query(&r->db, sql_park_mark, 2, mv, NULL);
  }
  PQclear(res);
  if (rc == 0) rc = as_db_commit(&r->db);
  if (rc < 0) {
    as_db_rollback(&r->db);
    as_tx_reset(&r->ptx);
    AS_WARN(r->log, "parking an outbox row failed; will retry", AS_F_STR("detail", r->db.err));
    return rc;
  }
  if (found) atomic_fetch_add(&r->a_parked, 1);
  progress(r);
  return 0;
}

/* Synchronous, on the free connection: parking is rare and must happen
 * before the next select finds the same row again. */
static void park_all(as_relay_t *r) {
  size_t done = 0;
  while (done < r->nparks && r->db.conn && park_one(r, &r->parks[done]) == 0) done++;
  memmove(r->parks, r->parks + done, (r->nparks - done) * sizeof *r->parks);
  r->nparks -= done;
  if (r->nparks > 0) backoff(r);
  r->want = true;
}

/* ---- failed deliveries and fatal producer errors ------------------------- */

/* A delivery failed: stop selecting, and have everything queued or in
 * flight behind it come back (purged) rather than land ahead of its resend. */
static void halt(as_relay_t *r, rd_kafka_resp_err_t e) {
  if (!r->halted)
    AS_WARN(r->log, "outbox delivery failed; resending from the oldest unacknowledged row",
            AS_F_STR("error", rd_kafka_err2name(e)), AS_F_INT("in_flight", r->nflying));
  r->halted = r->purge_due = true;
  want_full(r);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);

static rd_kafka_t *producer_new(as_relay_t *r, char *err, size_t errlen) {
  r->kopts = (as_kafka_opts_t){.bootstrap = r->conf.bootstrap,
                               .client_id = r->conf.client_id,
                               .ctx = &r->kctx,
                               .dr_msg_cb = dr_cb,
                               .error_cb = error_cb};
  return as_kafka_producer_new(&r->kopts, r->pipefd[1], err, errlen);
}

/* The idempotent producer is unusable after a fatal error: destroy it
 * (what it had in flight is unacknowledged: those rows leave the table and
 * a full select resends them in id order) and build a new one. */
static void replace_producer(as_relay_t *r) {
  char fatal[256] = "", err[512];
  rd_kafka_resp_err_t fe = RD_KAFKA_RESP_ERR__FATAL;
  if (r->producer) {
    fe = rd_kafka_fatal_error(r->producer, fatal, sizeof fatal);
    rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(r->producer, 0);
    rd_kafka_destroy(r->producer);
    r->producer = NULL;
  }
  for (size_t s = 0; s < r->cap; s++)
    if (r->st[s] == S_FLYING) slot_free(r, (uint32_t)s);
  r->nflying = 0;
  r->alone = 0; /* its verdict is lost with the producer: sent alone again */
  r->producer = producer_new(r, err, sizeof err);
  if (!r->producer) {
    AS_ERROR(r->log, "cannot recreate the producer; will retry", AS_F_STR("detail", err));
    backoff(r);
    return;
  }
  r->fatal = r->halted = r->purge_due = false;
  want_full(r);
  r->want = true;
  atomic_fetch_add(&r->a_restarts, 1);
  AS_WARN(r->log, "producer recreated after a fatal error",
          AS_F_STR("error", rd_kafka_err2name(fe)), AS_F_STR("detail", fatal));
}

/* Puts the connection to work when it is free. Marking delivered rows and
 * selecting new ones alternate, so neither waits behind a stream of the
 * other, and a select never waits for the previous rows' delivery reports:
 * it asks only for ids above the table's (see want_full for the rest). */
static void pump(as_relay_t *r) {
  if (r->closing) return;
  if (r->fatal && (r->producer || now_ms(r) >= r->retry_at_ms)) replace_producer(r);
  if (!r->producer) return;
  if (r->purge_due) {
    r->purge_due = false;
    rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                    RD_KAFKA_PURGE_F_NON_BLOCKING);
  }
  if (r->halted && r->nflying == 0) { /* every report is in: resend from the oldest */
    r->halted = false;
    r->want = true;
  }
  if (r->query != Q_NONE) return;
  uint64_t now = now_ms(r);
  if (!r->db.conn) {
    if (now < r->retry_at_ms) return;
    if (relay_connect(r) < 0) {
      backoff(r);
      return;
    }
  }
  housekeeping(r);
  if (r->db.conn && !r->active && r->want && now >= r->retry_at_ms) {
    uint64_t kicks = atomic_load(&r->a_kicks);
    try_lock(r);
    if (!r->active) { /* standing by: the active relay publishes */
      r->want = false;
      r->caught_up = true;
      atomic_store(&r->a_kicks_seen, kicks);
    }
  }
  if (!r->db.conn) return;
  if (r->active && r->nparks > 0 && now >= r->retry_at_ms) park_all(r);
  if (!r->db.conn) return;
  take_notifies(r);
  bool sel = r->active && r->want && now >= r->retry_at_ms && r->nused < r->cap && !r->halted &&
             !((r->full_due || r->isolate) && r->nused > 0);
  /* Marks wait for the last delivery report of the rows in flight (each
   * report would otherwise cost a commit of its own), unless the table is
   * filling up. */
  bool mark = r->ndlv > 0 && (r->nflying == 0 || r->nused >= r->cap / 2);
  if (mark && (!sel || r->last_query == Q_SELECT))
    start_mark(r);
  else if (sel)
    start_select(r);
}

/* A select or mark takes milliseconds; one unanswered this long went down
 * with its session without the socket saying so (a database outage can
 * leave it so): the session is dropped and the relay reconnects. */
#define RELAY_QUERY_STUCK_NS (10ULL * 1000 * 1000 * 1000)

static void unstick(as_relay_t *r) {
  if (r->query == Q_NONE || !r->db.conn) return;
  uint64_t began = r->query == Q_SELECT ? r->t_sel : r->t_mark;
  if (uv_hrtime() - began < RELAY_QUERY_STUCK_NS) return;
  AS_WARN(r->log, "relay query unanswered; reconnecting",
          AS_F_STR("query", r->query == Q_SELECT ? "select" : "mark"),
          AS_F_INT("waited_ms", (long long)((uv_hrtime() - began) / 1000000)));
  as_db_close(&r->db);
  backoff(r);
}

/* The timer: a safety net for a lost wake-up or a lost session, and the
 * moment to look below the table for rows pipelined selects skipped. */
static void on_tick(uv_timer_t *t) {
  as_relay_t *r = t->data;
  unstick(r);
  r->want = true;
  if (r->need_full) r->full_due = true;
  if (r->producer) rd_kafka_poll(r->producer, 0); /* reports, should a wake-up be missed */
  pump(r);
  publish_state(r);
}

static void on_wake(uv_async_t *a) {
  as_relay_t *r = a->data;
  r->want = true;
  pump(r);
  publish_state(r);
}

static void on_pipe(uv_poll_t *h, int status, int events) {
  as_relay_t *r = h->data;
  (void)status;
  (void)events;
  char buf[64];
  while (read(r->pipefd[0], buf, sizeof buf) > 0) {
  }
  if (r->producer) rd_kafka_poll(r->producer, 0); /* delivery reports: dr_cb */
  pump(r);
  publish_state(r);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  as_relay_t *r = ((as_kafka_ctx_t *)opaque)->owner;
  uint32_t s = (uint32_t)(uintptr_t)m->_private;
  if (s >= r->cap || r->st[s] != S_FLYING) return;
  r->nflying--;
  if (m->err) { /* stays unsent: a full select publishes it again */
    int64_t id = r->ids[s];
    bool alone = id == r->alone;
    slot_free(r, s);
    want_full(r);
    if (alone) r->alone = 0;
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
      return; /* we halted: resent with the row that failed (alone again if isolating) */
    atomic_fetch_add(&r->a_failed, 1);
    if (permanent(m->err) && alone) {
      queue_park(r, id, m->err); /* refused alone too: it is this row */
      r->isolate = false;
    } else if (permanent(m->err)) {
      r->isolate = true; /* is it this row, or the batch it travelled in? */
    }
    halt(r, m->err);
    if (now_ms(r) >= r->retry_at_ms) backoff(r);
    return;
  }
  if (r->ids[s] == r->alone) /* the row sent alone went through: back to batches */
    r->alone = 0, r->isolate = false;
  progress(r);
  atomic_fetch_add(&r->a_published, 1);
  r->st[s] = S_DELIVERED;
  r->dlv[r->ndlv++] = s;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  as_relay_t *r = ((as_kafka_ctx_t *)opaque)->owner;
  (void)rk;
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT) return;      /* librdkafka's own log line said it */
  if (err == RD_KAFKA_RESP_ERR__FATAL) r->fatal = true; /* pump replaces the producer */
  AS_LOG(r->log, err == RD_KAFKA_RESP_ERR__FATAL ? AS_LOG_ERROR : AS_LOG_WARN, "producer error",
         AS_F_STR("error", rd_kafka_err2str(err)), AS_F_STR("detail", reason));
}

/* ---- public ----------------------------------------------------------- */

void as_relay_kick(as_relay_t *r) {
  if (!r) return;
  atomic_fetch_add(&r->a_kicks, 1);
  uv_async_send(&r->wake);
}

void as_relay_committed(as_relay_t *r, int backend_pid) {
  if (!r) return;
  atomic_store(&r->a_local_pid, backend_pid);
  as_relay_kick(r);
}

bool as_relay_db_ok(const as_relay_t *r) {
  return atomic_load(&((as_relay_t *)r)->a_db_ok);
}

/* Caught up, and the select that found nothing started after the last kick. */
bool as_relay_caught_up(const as_relay_t *r) {
  as_relay_t *m = (as_relay_t *)r;
  return atomic_load(&m->a_caught_up) && atomic_load(&m->a_kicks_seen) == atomic_load(&m->a_kicks);
}

uint64_t as_relay_stalled_ms(const as_relay_t *r) {
  as_relay_t *m = (as_relay_t *)r;
  if (!m || as_relay_caught_up(r)) return 0;
  uint64_t now = uv_hrtime(), at = atomic_load(&m->a_progress_ns);
  return now > at ? (now - at) / 1000000 : 0;
}

void as_relay_update_metrics(as_relay_t *r) {
  uint64_t p = atomic_load(&r->a_published), f = atomic_load(&r->a_failed);
  uint64_t k = atomic_load(&r->a_parked), x = atomic_load(&r->a_restarts);
  as_counter_add(r->published, p - r->seen_published);
  as_counter_add(r->failed, f - r->seen_failed);
  as_counter_add(r->parked, k - r->seen_parked);
  as_counter_add(r->restarts, x - r->seen_restarts);
  r->seen_published = p;
  r->seen_failed = f;
  r->seen_parked = k;
  r->seen_restarts = x;
  as_gauge_set(r->backlog, (double)atomic_load(&r->a_backlog));
  as_gauge_set(r->active_g, atomic_load(&r->a_active) ? 1 : 0);
}

/* The channel and the lock are named after the schema, the one name a
 * NOTIFY channel can carry (as_tx notifies 'as_outbox_' || current_schema()). */
static int name_schema(as_relay_t *r) {
  const char *s = r->conf.schema;
  int a = snprintf(r->listen, sizeof r->listen, "LISTEN as_outbox_%s", s);
  int b = snprintf(r->lock_key, sizeof r->lock_key, "as_relay:%s", s);
  return a > 0 && (size_t)a < sizeof r->listen && b > 0 && (size_t)b < sizeof r->lock_key ? 0
                                                                                          : -EINVAL;
}

static void init_metrics(as_relay_t *r, as_metrics_t *m) {
  r->published =
      as_metrics_counter(m, "as_outbox_published_total", "Outbox rows delivered to Kafka.", NULL);
  r->failed = as_metrics_counter(m, "as_outbox_failed_total",
                                 "Outbox deliveries that failed and will be retried.", NULL);
  r->parked = as_metrics_counter(m, "as_outbox_parked_total",
                                 "Outbox rows the producer refuses for good (too large, invalid): "
                                 "parked and dead-lettered as outbox_row_refused.",
                                 NULL);
  r->restarts =
      as_metrics_counter(m, "as_relay_producer_restarts_total",
                         "Relay producers replaced after a fatal librdkafka error.", NULL);
  r->backlog = as_metrics_gauge(m, "as_outbox_backlog", "Outbox rows not yet published.", NULL);
  r->active_g = as_metrics_gauge(m, "as_relay_active",
                                 "1 if this instance is the active outbox relay.", NULL);
}

static int alloc_table(as_relay_t *r, size_t cap) {
  r->ids = calloc(cap, sizeof *r->ids);
  r->st = calloc(cap, sizeof *r->st);
  r->freel = calloc(cap, sizeof *r->freel);
  r->dlv = calloc(cap, sizeof *r->dlv);
  r->mrk = calloc(cap, sizeof *r->mrk);
  r->parks = calloc(cap, sizeof *r->parks);
  if (!r->ids || !r->st || !r->freel || !r->dlv || !r->mrk || !r->parks) return -ENOMEM;
  r->cap = cap;
  for (size_t i = 0; i < cap; i++) r->freel[i] = (uint32_t)(cap - 1 - i);
  r->nfree = cap;
  return 0;
}

static void free_table(as_relay_t *r) {
  free(r->ids);
  free(r->st);
  free(r->freel);
  free(r->dlv);
  free(r->mrk);
  free(r->parks);
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
  as_db_init(&r->db, conf->dsn, conf->client_id, conf->schema, log);
  r->db.on_close = on_db_close;
  r->db.on_close_arg = r;
  r->ptx_conf = (as_tx_conf_t){.service = conf->service,
                               .instance = conf->instance,
                               .group_id = conf->group_id,
                               .dlq_topic = conf->dlq_topic,
                               .dlq_max_bytes = conf->dlq_max_bytes};
  as_tx_init(&r->ptx, &r->db, &r->ptx_conf);
  atomic_store(&r->a_progress_ns, uv_hrtime());
  init_metrics(r, metrics);
  if (name_schema(r) < 0) {
    snprintf(err, errlen, "schema name too long");
    goto fail;
  }
  if (alloc_table(r, 2 * (size_t)(conf->batch > 0 ? conf->batch : 1)) < 0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (pipe2(r->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    goto fail;
  }
  r->producer = producer_new(r, err, errlen);
  if (!r->producer || uv_loop_init(r->loop) < 0) goto fail;
  uv_timer_init(r->loop, &r->tick);
  uv_poll_init(r->loop, &r->pipe_poll, r->pipefd[0]);
  uv_async_init(r->loop, &r->wake, on_wake);
  uv_async_init(r->loop, &r->stop, on_stop);
  r->tick.data = r->pipe_poll.data = r->wake.data = r->stop.data = r;
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
  as_tx_free(&r->ptx);
  free_table(r);
  free(r);
  return NULL;
}

/* Completes the outstanding query, waits for the delivery reports (bounded
 * by timeout_ms) and marks the delivered rows, synchronously: the relay is
 * stopping anyway. */
static void finish(as_relay_t *r, int timeout_ms) {
  for (int pass = 0; pass < 2; pass++) {
    if (r->query != Q_NONE && r->db.conn) {
      int rc = 0;
      PGresult *res = take_result(r, &rc);
      if (r->query == Q_MARK)
        marked(r, rc);
      else if (rc == 0)
        selected(r, res);
      else
        r->query = Q_NONE;
      PQclear(res);
    }
    r->query = Q_NONE;
    if (pass == 0 && r->nflying > 0 && r->producer) {
      rd_kafka_flush(r->producer, timeout_ms);
      rd_kafka_poll(r->producer, 0);
    }
    if (pass == 0 && r->ndlv > 0 && r->db.conn) start_mark(r);
  }
}

/* Relay thread: deliver and mark what is in flight, so a clean stop
 * republishes nothing, then close every handle; the loop then ends. */
static void on_stop(uv_async_t *a) {
  as_relay_t *r = a->data;
  r->closing = true;
  finish(r, r->close_timeout_ms);
  as_db_close(&r->db); /* closes pg_poll via on_db_close */
  uv_handle_t *hs[] = {(uv_handle_t *)&r->tick, (uv_handle_t *)&r->pipe_poll,
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
  if (r->producer) rd_kafka_destroy(r->producer);
  as_tx_free(&r->ptx);
  close(r->pipefd[0]);
  close(r->pipefd[1]);
  as_buf_free(&r->mark);
  free_table(r);
  free(r);
  if (done) done(arg);
}
