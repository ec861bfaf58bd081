/* notif_send: the sender's loop side. Three timers (take due deliveries,
 * record finished ones, the SLA sweep and queue gauge) and a curl multi
 * handle whose sockets and timeout are libuv polls and a timer on the
 * worker's loop (libcurl's socket interface), so thousands of sends run
 * on the one thread without blocking it. notif_send.h has the rules. */
#include "notif_send.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "as_envelope.h"
#include "notif_channel.h"
#include "notif_send_db.h"

#define RECORD_BATCH 256  /* results recorded in one transaction at most */
#define RECORD_DELAY_MS 5 /* how long a result may wait for others to join it */
#define RECORD_RETRY_MS 500
#define SWEEP_MS 1000

typedef struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
  notif_send_t *s;
  struct sock *prev, *next; /* open polls: closed at stop if libcurl has not */
} sock_t;

struct notif_send {
  as_worker_t *w;
  const as_log_t *log;
  const notif_send_conf_t *c;
  CURLM *multi;
  uv_timer_t claim_timer, record_timer, sweep_timer, curl_timer;
  bool started, stopping, full; /* full: the last claim filled every free slot */
  bool claiming;                /* in on_claim: results wait for the claim's end */
  long long inflight;
  /* Taken ahead, up to AS_NOTIFICATION_SEND_CONCURRENCY more than are in
   * flight (their leases run meanwhile): a slot that frees starts the next
   * at once instead of waiting for a record and a take. */
  notif_job_t *queue, *queue_tail;
  long long nqueued;
  notif_job_t *done;   /* results waiting to be recorded */
  notif_job_t *flying; /* sends in flight (fprev / fnext) */
  size_t ndone;
  sock_t *socks;
  notif_breaker_t breaker[NOTIF_CH__COUNT];
  uint64_t rnd;
  struct {
    as_counter_t *sent[NOTIF_CH__COUNT], *retried[NOTIF_CH__COUNT], *failed[NOTIF_CH__COUNT];
    as_counter_t *fell[NOTIF_CH__COUNT], *paused[NOTIF_CH__COUNT], *attempts[NOTIF_CH__COUNT];
    as_counter_t *opened[NOTIF_CH__COUNT];
    as_gauge_t *open[NOTIF_CH__COUNT], *depth, *inflight;
    as_histogram_t *send_seconds[NOTIF_CH__COUNT];
    as_counter_t *breach_first, *breach_other, *lost_lease, *record_failed;
    as_histogram_t *first_response, *event_to_sent, *tx_claim, *tx_record;
  } m;
};

static uint64_t now_ms(const notif_send_t *s) {
  return uv_now(as_worker_loop(s->w));
}

/* xorshift64: jitter needs no more than spread. */
static uint64_t rnd(notif_send_t *s) {
  s->rnd ^= s->rnd << 13;
  s->rnd ^= s->rnd >> 7;
  s->rnd ^= s->rnd << 17;
  return s->rnd;
}

/* base * 2^(attempt-1), at most max, then a random 0.5x-1x of it so
 * deliveries failed together do not come back together. */
static long long backoff(notif_send_t *s, int attempt) {
  long long d = s->c->retry_base_ms;
  for (int i = 1; i < attempt && d < s->c->retry_max_ms; i++) d *= 2;
  if (d > s->c->retry_max_ms) d = s->c->retry_max_ms;
  return d / 2 + (long long)(rnd(s) % (uint64_t)(d / 2 + 1));
}

/* ---- recording -------------------------------------------------------- */

static int record_tx(void *arg, as_tx_t *tx) {
  notif_send_t *s = arg;
  return notif_send_db_record(tx, s->done, (int64_t)s->c->sla_s * 1000000);
}

/* One result, one series: sent, retried (due again after a backoff),
 * failed (for good on this channel), fell_through (its channel paused, the
 * next one made pending) or paused (no channel left: waits out the
 * cool-off). */
static as_counter_t *result_counter(notif_send_t *s, const notif_job_t *j) {
  bool breaker = strcmp(j->code, "circuit_open") == 0;
  switch (j->st) {
    case NOTIF_ST_SENT:
      return s->m.sent[j->ch];
    case NOTIF_ST_PENDING:
      return s->m.retried[j->ch];
    case NOTIF_ST_FAILED:
      return breaker ? s->m.fell[j->ch] : s->m.failed[j->ch];
    case NOTIF_ST_DEFER:
      return s->m.paused[j->ch];
  }
  return s->m.failed[j->ch];
}

static void count(notif_send_t *s, const notif_job_t *j) {
  if (j->st == NOTIF_ST_DEFER && !j->code[0]) return; /* given back unsent at stop: no result */
  if (!j->applied) {
    as_counter_add(s->m.lost_lease, 1); /* another sender took it: its result counts */
    return;
  }
  as_counter_add(result_counter(s, j), 1);
  if (j->sla_published)
    as_counter_add(j->submitted_at_us > 0 ? s->m.breach_first : s->m.breach_other, 1);
  if (j->st == NOTIF_ST_FAILED)
    AS_WARN(s->log, "notification delivery failed", AS_F_STR("delivery_id", j->delivery_id),
            AS_F_STR("channel", notif_ch_name(j->ch)), AS_F_STR("error_code", j->code),
            AS_F_INT("attempts", j->attempts), AS_F_INT("next_channel", j->next_channel));
  if (j->st != NOTIF_ST_SENT) return;
  if (j->submitted_at_us > 0)
    as_histogram_observe(s->m.first_response, (double)(j->done_us - j->submitted_at_us) / 1e6);
  if (j->source_at_us > 0)
    as_histogram_observe(s->m.event_to_sent, (double)(j->done_us - j->source_at_us) / 1e6);
}

static void on_claim(uv_timer_t *t);
static void on_record(uv_timer_t *t);

static void record(notif_send_t *s) {
  uv_timer_stop(&s->record_timer);
  if (!s->done) return;
  uint64_t t0 = uv_hrtime();
  int rc = as_worker_tx(s->w, record_tx, s);
  as_histogram_observe(s->m.tx_record, (double)(uv_hrtime() - t0) / 1e9);
  if (rc < 0) {
    /* Kept and tried again: the leases hold the rows meanwhile (and if
     * they run out first, the rows are sent again with the same key). */
    for (notif_job_t *j = s->done; j; j = j->next)
      j->applied = j->sla_published = false, j->next_channel = 0;
    as_counter_add(s->m.record_failed, 1);
    if (!s->stopping) uv_timer_start(&s->record_timer, on_record, RECORD_RETRY_MS, 0);
    return;
  }
  while (s->done) {
    notif_job_t *j = s->done;
    s->done = j->next;
    count(s, j);
    notif_job_free(j);
  }
  s->ndone = 0;
  if (s->full && !s->stopping)
    uv_timer_start(&s->claim_timer, on_claim, 0, (uint64_t)s->c->interval_ms);
}

static void on_record(uv_timer_t *t) {
  record(t->data);
}

/* A result joins the next record; it goes at once when the batch is full
 * or nothing else is in flight, else after a few milliseconds. */
static void finish(notif_send_t *s, notif_job_t *j, notif_st_t st, long long delay_ms) {
  j->st = st;
  j->delay_ms = delay_ms;
  j->done_us = as_now_us();
  notif_job_drop_text(j);
  j->next = s->done;
  s->done = j;
  s->ndone++;
  if (!s->claiming && (s->ndone >= RECORD_BATCH || s->inflight == 0))
    record(s);
  else if (!uv_is_active((uv_handle_t *)&s->record_timer))
    uv_timer_start(&s->record_timer, on_record, RECORD_DELAY_MS, 0);
}

static void breaker_gauge(notif_send_t *s, notif_ch_t ch) {
  as_gauge_set(s->m.open[ch], notif_breaker_open(&s->breaker[ch]) ? 1 : 0);
}

static void fly_add(notif_send_t *s, notif_job_t *j) {
  j->fprev = NULL;
  j->fnext = s->flying;
  if (s->flying) s->flying->fprev = j;
  s->flying = j;
}

static void fly_remove(notif_send_t *s, notif_job_t *j) {
  if (j->fprev)
    j->fprev->fnext = j->fnext;
  else
    s->flying = j->fnext;
  if (j->fnext) j->fnext->fprev = j->fprev;
  j->fprev = j->fnext = NULL;
}

static void pump(notif_send_t *s);

/* A transfer ended: judge it, feed the breaker, queue the result, start
 * the next taken. */
static void ended(notif_send_t *s, notif_job_t *j, CURLcode cc) {
  notif_outcome_t o = notif_channel_outcome(&j->req, j->ch, cc, j->code);
  notif_channel_release(&j->req);
  fly_remove(s, j);
  as_histogram_observe(s->m.send_seconds[j->ch], (double)(as_now_us() - j->started_us) / 1e6);
  s->inflight--;
  as_gauge_set(s->m.inflight, (double)s->inflight);
  bool provider_ok = o != NOTIF_RETRY || strcmp(j->code, "http_429") == 0;
  if (notif_breaker_record(&s->breaker[j->ch], provider_ok, s->c->breaker_failures,
                           s->c->breaker_cooloff_ms, now_ms(s))) {
    as_counter_add(s->m.opened[j->ch], 1);
    AS_WARN(s->log, "channel paused: circuit breaker open",
            AS_F_STR("channel", notif_ch_name(j->ch)),
            AS_F_INT("cooloff_ms", s->c->breaker_cooloff_ms), AS_F_STR("last_error", j->code));
  }
  breaker_gauge(s, j->ch);
  if (o == NOTIF_SENT) {
    finish(s, j, NOTIF_ST_SENT, 0);
  } else if (o == NOTIF_PERMANENT || j->attempts >= s->c->max_attempts) {
    finish(s, j, NOTIF_ST_FAILED, 0);
  } else {
    long long d = backoff(s, j->attempts);
    if (j->req.retry_after >= 0 && j->req.retry_after * 1000 > d) d = j->req.retry_after * 1000;
    finish(s, j, NOTIF_ST_PENDING, d);
  }
  pump(s);
}

static void drain_multi(notif_send_t *s) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(s->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    notif_job_t *j = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
    CURLcode cc = msg->data.result;
    curl_multi_remove_handle(s->multi, msg->easy_handle);
    ended(s, j, cc);
  }
}

/* ---- libcurl on the loop ---------------------------------------------- */

static void on_sock_closed(uv_handle_t *h) {
  free(h->data);
}

static void sock_close(notif_send_t *s, sock_t *k) {
  if (k->prev)
    k->prev->next = k->next;
  else
    s->socks = k->next;
  if (k->next) k->next->prev = k->prev;
  uv_poll_stop(&k->poll);
  uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_t *k = h->data;
  notif_send_t *s = k->s;
  int flags = status < 0 ? CURL_CSELECT_ERR : 0;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(s->multi, k->fd, flags, &running);
  drain_multi(s);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)e;
  notif_send_t *s = userp;
  sock_t *k = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (k) sock_close(s, k), curl_multi_assign(s->multi, fd, NULL);
    return 0;
  }
  if (!k) {
    k = calloc(1, sizeof *k);
    if (!k || uv_poll_init_socket(as_worker_loop(s->w), &k->poll, fd) < 0) return free(k), -1;
    k->fd = fd;
    k->s = s;
    k->poll.data = k;
    k->next = s->socks;
    if (s->socks) s->socks->prev = k;
    s->socks = k;
    curl_multi_assign(s->multi, fd, k);
  }
  int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
  uv_poll_start(&k->poll, ev, on_poll);
  return 0;
}

static void on_curl_timer(uv_timer_t *t) {
  notif_send_t *s = t->data;
  int running;
  curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  drain_multi(s);
}

static int on_timeout(CURLM *m, long ms, void *userp) {
  (void)m;
  notif_send_t *s = userp;
  if (ms < 0)
    uv_timer_stop(&s->curl_timer);
  else
    uv_timer_start(&s->curl_timer, on_curl_timer, (uint64_t)ms, 0);
  return 0;
}

/* ---- taking due deliveries -------------------------------------------- */

typedef struct claim {
  notif_send_t *s;
  int limit;
  notif_job_t *jobs;
} claim_t;

static int claim_tx(void *arg, as_tx_t *tx) {
  claim_t *c = arg;
  return notif_send_db_claim(tx, c->limit, c->s->c->lease_ms, &c->jobs);
}

/* A paused channel's delivery falls through to its standby, or waits out
 * the cool-off if it has none (the attempt it was taken with is given
 * back). */
static bool paused(notif_send_t *s, notif_job_t *j) {
  notif_breaker_t *b = &s->breaker[j->ch];
  bool was_open = notif_breaker_open(b);
  if (notif_breaker_allows(b, now_ms(s))) {
    j->trial = was_open;
    return false;
  }
  snprintf(j->code, sizeof j->code, "circuit_open");
  uint64_t now = now_ms(s);
  long long wait = b->open_until_ms > now ? (long long)(b->open_until_ms - now) : s->c->interval_ms;
  finish(s, j, j->has_next ? NOTIF_ST_FAILED : NOTIF_ST_DEFER, wait);
  return true;
}

static void start_one(notif_send_t *s, notif_job_t *j) {
  as_counter_add(s->m.attempts[j->ch], 1);
  if (paused(s, j)) return;
  notif_msg_t m = {j->delivery_id, j->notification_id, j->case_id, j->template_id,
                   j->locale,      j->subject,         j->body,    j->address};
  int rc = notif_channel_prepare(&j->req, j->ch, s->c, &m, j->code);
  if (rc == 0) {
    curl_easy_setopt(j->req.easy, CURLOPT_PRIVATE, (char *)j);
    if (curl_multi_add_handle(s->multi, j->req.easy) == CURLM_OK) {
      j->started_us = as_now_us();
      fly_add(s, j);
      s->inflight++;
      as_gauge_set(s->m.inflight, (double)s->inflight);
      return;
    }
    snprintf(j->code, sizeof j->code, "out_of_memory");
    rc = -ENOMEM;
  }
  notif_channel_release(&j->req);
  if (j->trial) s->breaker[j->ch].trial = false; /* nothing was tried */
  /* Nothing to send it with: the message's fault, not the provider's;
   * out of memory is worth a later attempt. */
  finish(s, j, rc == -ENOMEM ? NOTIF_ST_PENDING : NOTIF_ST_FAILED, rc == -ENOMEM ? 1000 : 0);
}

/* Rows a take may add: the free slots and as many again ahead. */
static long long room(const notif_send_t *s) {
  return 2 * s->c->concurrency - s->inflight - s->nqueued;
}

/* Starts taken sends while slots are free. */
static void pump(notif_send_t *s) {
  bool was = s->claiming;
  s->claiming = true; /* those refused at once are recorded together below */
  while (s->queue && s->inflight < s->c->concurrency && !s->stopping) {
    notif_job_t *j = s->queue;
    s->queue = j->next;
    if (!s->queue) s->queue_tail = NULL;
    j->next = NULL;
    s->nqueued--;
    start_one(s, j);
  }
  s->claiming = was;
  if (!was && s->done && s->inflight == 0) record(s);
}

static void on_claim(uv_timer_t *t) {
  notif_send_t *s = t->data;
  long long limit = room(s);
  if (s->stopping || limit <= 0) return;
  claim_t c = {s, (int)limit, NULL};
  uint64_t t0 = uv_hrtime();
  int n = as_worker_tx(s->w, claim_tx, &c);
  as_histogram_observe(s->m.tx_claim, (double)(uv_hrtime() - t0) / 1e9);
  s->full = n == (int)limit;
  /* The take's list is in reverse order of due time: queued oldest first. */
  notif_job_t *rev = NULL;
  while (c.jobs) {
    notif_job_t *j = c.jobs;
    c.jobs = j->next;
    if (n < 0) {
      notif_job_free(j); /* rolled back: not taken */
      continue;
    }
    j->next = rev;
    rev = j;
    s->nqueued++;
  }
  if (rev) {
    if (s->queue_tail)
      s->queue_tail->next = rev;
    else
      s->queue = rev;
    for (s->queue_tail = rev; s->queue_tail->next;) s->queue_tail = s->queue_tail->next;
  }
  pump(s);
  /* Room still after a full take (fallen through, failed at once): look
   * again now rather than a period later. */
  if (s->full && room(s) > 0 && !s->done)
    uv_timer_start(&s->claim_timer, on_claim, 0, (uint64_t)s->c->interval_ms);
}

void notif_send_wake(notif_send_t *s) {
  if (!s || !s->started || s->stopping || room(s) <= 0) return;
  uv_timer_start(&s->claim_timer, on_claim, 0, (uint64_t)s->c->interval_ms);
}

/* ---- SLA of what is still waiting, queue depth ------------------------- */

typedef struct sweep {
  notif_send_t *s;
  int by_clock[2];
  long long depth;
} sweep_t;

static int sweep_tx(void *arg, as_tx_t *tx) {
  sweep_t *x = arg;
  int n = notif_send_db_sweep(tx, (int64_t)x->s->c->sla_s * 1000000, 500, x->by_clock);
  int rc = n < 0 ? n : notif_send_db_depth(tx, &x->depth);
  return rc < 0 ? rc : n;
}

static void on_sweep(uv_timer_t *t) {
  notif_send_t *s = t->data;
  sweep_t x = {s, {0, 0}, 0};
  int n = as_worker_tx(s->w, sweep_tx, &x);
  if (n < 0) return;
  as_counter_add(s->m.breach_first, (uint64_t)x.by_clock[0]);
  as_counter_add(s->m.breach_other, (uint64_t)x.by_clock[1]);
  as_gauge_set(s->m.depth, (double)x.depth);
  if (n > 0)
    AS_WARN(s->log, "notification SLA breached: not sent in time", AS_F_INT("notifications", n),
            AS_F_INT("sla_s", s->c->sla_s));
}

/* ---- lifecycle -------------------------------------------------------- */

static const double sec_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                    2.5,   5,    10,    30,   60,  300,  600, 3600};

static const double send_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,  0.5,    1,     2.5,  5,     10,   30};
static const double tx_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                   0.01,   0.025,   0.05,   0.1,   0.25};

static int init_metrics(notif_send_t *s) {
  as_metrics_t *m = as_worker_metrics(s->w);
  static const char sends[] =
      "Send results by channel: sent, retried (due again after a backoff), failed (for good on "
      "this channel), fell_through (channel paused: the next one tried), paused (no channel "
      "left: waits for the breaker).";
  for (int i = 0; i < NOTIF_CH__COUNT; i++) {
    char l[96];
    const char *ch = notif_ch_name((notif_ch_t)i);
#define LBL(r) (snprintf(l, sizeof l, "channel=\"%s\",result=\"%s\"", ch, r), l)
    s->m.sent[i] = as_metrics_counter(m, "as_notification_sends_total", sends, LBL("sent"));
    s->m.retried[i] = as_metrics_counter(m, "as_notification_sends_total", sends, LBL("retried"));
    s->m.failed[i] = as_metrics_counter(m, "as_notification_sends_total", sends, LBL("failed"));
    s->m.fell[i] = as_metrics_counter(m, "as_notification_sends_total", sends, LBL("fell_through"));
    s->m.paused[i] = as_metrics_counter(m, "as_notification_sends_total", sends, LBL("paused"));
#undef LBL
    snprintf(l, sizeof l, "channel=\"%s\"", ch);
    s->m.attempts[i] = as_metrics_counter(m, "as_notification_send_attempts_total",
                                          "Deliveries taken for a send.", l);
    s->m.opened[i] = as_metrics_counter(m, "as_notification_breaker_opened_total",
                                        "Times a channel's circuit breaker opened.", l);
    s->m.open[i] = as_metrics_gauge(m, "as_notification_breaker_open",
                                    "1 while the channel is paused by its circuit breaker.", l);
    s->m.send_seconds[i] = as_metrics_histogram(
        m, "as_notification_send_seconds",
        "Seconds from a send's start to the gateway's answer (or the timeout).", l, send_bounds,
        sizeof send_bounds / sizeof send_bounds[0]);
    if (!s->m.send_seconds[i] || !s->m.sent[i] || !s->m.retried[i] || !s->m.failed[i] ||
        !s->m.fell[i] || !s->m.paused[i] || !s->m.attempts[i] || !s->m.opened[i] || !s->m.open[i])
      return -ENOMEM;
  }
  static const char br[] = "SlaBreached published by the sender.";
  s->m.breach_first =
      as_metrics_counter(m, "as_notification_sla_breaches_total", br, "clock=\"first_response\"");
  s->m.breach_other =
      as_metrics_counter(m, "as_notification_sla_breaches_total", br, "clock=\"notification\"");
  s->m.depth = as_metrics_gauge(m, "as_notification_send_queue_depth",
                                "Deliveries due and not taken (last sweep).", NULL);
  s->m.inflight = as_metrics_gauge(m, "as_notification_sends_in_flight", "Sends in flight.", NULL);
  s->m.lost_lease = as_metrics_counter(
      m, "as_notification_send_lease_lost_total",
      "Results not recorded because the delivery's lease had passed to another sender.", NULL);
  s->m.record_failed =
      as_metrics_counter(m, "as_notification_send_record_failures_total",
                         "Transactions recording send results that failed (retried).", NULL);
  s->m.first_response = as_metrics_histogram(
      m, "as_notification_first_response_seconds",
      "From a request's submission to its acknowledgement accepted by the gateway.", NULL,
      sec_bounds, sizeof sec_bounds / sizeof sec_bounds[0]);
  s->m.event_to_sent =
      as_metrics_histogram(m, "as_notification_event_to_sent_seconds",
                           "From the told event's time to the gateway's acceptance.", NULL,
                           sec_bounds, sizeof sec_bounds / sizeof sec_bounds[0]);
  static const char txh[] =
      "Seconds the sender's transactions hold the loop (claim: take due "
      "deliveries; record: their results).";
  s->m.tx_claim = as_metrics_histogram(m, "as_notification_send_tx_seconds", txh, "tx=\"claim\"",
                                       tx_bounds, sizeof tx_bounds / sizeof tx_bounds[0]);
  s->m.tx_record = as_metrics_histogram(m, "as_notification_send_tx_seconds", txh, "tx=\"record\"",
                                        tx_bounds, sizeof tx_bounds / sizeof tx_bounds[0]);
  bool ok = s->m.tx_claim && s->m.tx_record && s->m.breach_first && s->m.breach_other &&
            s->m.depth && s->m.inflight && s->m.lost_lease && s->m.record_failed &&
            s->m.first_response && s->m.event_to_sent;
  return ok ? 0 : -ENOMEM;
}

static int check_conf(notif_send_t *s) {
  const notif_send_conf_t *c = s->c;
  const char *why = NULL;
  if ((*c->sms_url || *c->push_url) && !*c->secret)
    why = "AS_NOTIFICATION_WEBHOOK_SECRET: required with a webhook URL (unsigned requests)";
  else if (c->lease_ms <= c->timeout_ms)
    why = "AS_NOTIFICATION_SEND_LEASE_MS: must exceed AS_NOTIFICATION_SEND_TIMEOUT_MS";
  else if (c->retry_max_ms < c->retry_base_ms)
    why = "AS_NOTIFICATION_RETRY_MAX_MS: below AS_NOTIFICATION_RETRY_BASE_MS";
  if (!why) return 0;
  AS_ERROR(s->log, "bad configuration", AS_F_STR("detail", why));
  return -EINVAL;
}

int notif_send_init(as_worker_t *w, const notif_send_conf_t *conf, notif_send_t **out) {
  *out = NULL;
  notif_send_t *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  s->w = w;
  s->log = as_worker_log(w);
  s->c = conf;
  s->rnd = (uint64_t)as_now_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
  *out = s;
  int rc = check_conf(s);
  if (rc == 0) rc = init_metrics(s);
  if (rc == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) rc = -ENOMEM;
  if (rc == 0) s->multi = curl_multi_init();
  if (rc == 0 && !s->multi) rc = -ENOMEM;
  return rc;
}

int notif_send_start(notif_send_t *s) {
  /* Telling and sending scale apart: an instance told not to send leaves
   * the rows (and their SLA sweep) to the instances that do. */
  if (s->c->concurrency == 0) {
    AS_INFO(s->log,
            "notification sender off on this instance (AS_NOTIFICATION_SEND_CONCURRENCY=0)");
    return 0;
  }
  uv_loop_t *loop = as_worker_loop(s->w);
  uv_timer_t *t[] = {&s->claim_timer, &s->record_timer, &s->sweep_timer, &s->curl_timer};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) uv_timer_init(loop, t[i]), t[i]->data = s;
  s->started = true;
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
  curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
  curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)s->c->concurrency);
  uv_timer_start(&s->claim_timer, on_claim, 0, (uint64_t)s->c->interval_ms);
  uv_timer_start(&s->sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
  AS_INFO(s->log, "notification sender started", AS_F_INT("concurrency", s->c->concurrency),
          AS_F_INT("timeout_ms", s->c->timeout_ms), AS_F_INT("max_attempts", s->c->max_attempts));
  return 0;
}

/* Sends in flight are abandoned (their rows stay leased and are taken
 * again with the same key); results already in are recorded first. */
void notif_send_stop(notif_send_t *s) {
  if (!s || !s->started || s->stopping) return;
  /* Taken and not started: given back (due now, the attempt returned) so
   * another instance sends them without waiting out the lease. */
  s->claiming = true;
  while (s->queue) {
    notif_job_t *j = s->queue;
    s->queue = j->next;
    j->next = NULL;
    finish(s, j, NOTIF_ST_DEFER, 0);
  }
  s->queue_tail = NULL;
  s->nqueued = 0;
  s->claiming = false;
  record(s);
  s->stopping = true;
  while (s->flying) {
    notif_job_t *j = s->flying;
    fly_remove(s, j);
    curl_multi_remove_handle(s->multi, j->req.easy);
    notif_job_free(j);
  }
  curl_multi_cleanup(s->multi); /* closes the cached connections: their polls too */
  s->multi = NULL;
  while (s->socks) sock_close(s, s->socks);
  uv_timer_t *t[] = {&s->claim_timer, &s->record_timer, &s->sweep_timer, &s->curl_timer};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) uv_close((uv_handle_t *)t[i], NULL);
}

void notif_send_fini(notif_send_t *s) {
  if (!s) return;
  if (s->multi) curl_multi_cleanup(s->multi);
  while (s->done) {
    notif_job_t *j = s->done;
    s->done = j->next;
    notif_job_free(j);
  }
  curl_global_cleanup();
  free(s);
}
