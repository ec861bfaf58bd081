/* notif_send_db: the sender's SQL. Every statement is one bulk statement
 * over the rows of a claim or of a batch of results (arrays via unnest), so
 * a recorded batch costs a handful of round trips whatever its size. */
#include "notif_send_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "as_topics.h"

/* Due: pending, or sending with its lease gone; not in_app (the batch
 * side's); no earlier event of its case still to be told (case_seq is the
 * event's time, case_arrival the order read for equal times: 003_order.sql).
 * The SLA start and the standby check ride along so the results need no
 * second read. */
static const char sql_claim[] =
    "WITH due AS (SELECT d.delivery_id FROM deliveries d"
    " WHERE d.status IN ('pending', 'sending') AND d.due_at <= now() AND d.channel <> 'in_app'"
    " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE d.case_id <> '' AND e.case_id = d.case_id"
    " AND (e.case_seq, e.case_arrival) < (d.case_seq, d.case_arrival)"
    " AND e.status IN ('pending', 'sending'))"
    " ORDER BY d.due_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED)"
    " UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1,"
    " due_at = now() + $2::bigint * interval '1 millisecond'"
    " FROM due WHERE d.delivery_id = due.delivery_id"
    " RETURNING d.delivery_id::text, d.notification_id::text, d.channel, d.case_id, d.buyer_id,"
    " d.template_id, d.template_version, d.locale, d.subject, d.body, d.attempts,"
    " d.source_event_id, d.source_at_us, d.submitted_at_us,"
    " (SELECT CASE d.channel WHEN 'sms' THEN c.phone WHEN 'email' THEN c.email"
    " ELSE c.push_token END FROM contacts c WHERE c.buyer_id = d.buyer_id),"
    " EXISTS (SELECT 1 FROM deliveries s WHERE s.notification_id = d.notification_id"
    " AND s.status = 'standby'), d.order_id";

/* Only the holder of the lease (same attempt, still sending) records. */
enum { R_ID, R_ATT, R_ST, R_DELAY, R_ERR };
static const as_col_t record_cols[] = {[R_ID] = {"delivery_id", "uuid"},
                                       [R_ATT] = {"attempts", "int"},
                                       [R_ST] = {"st", "text"},
                                       [R_DELAY] = {"delay_ms", "bigint"},
                                       [R_ERR] = {"err", "text"}};
static const as_bulk_t sql_record = AS_BULK(
    "UPDATE deliveries d SET"
    " status = CASE u.st WHEN 'defer' THEN 'pending' ELSE u.st END,"
    " attempts = CASE u.st WHEN 'defer' THEN d.attempts - 1 ELSE d.attempts END,"
    " due_at = CASE WHEN u.st IN ('pending', 'defer')"
    " THEN now() + u.delay_ms * interval '1 millisecond' ELSE d.due_at END,"
    " sent_at = CASE u.st WHEN 'sent' THEN now() ELSE d.sent_at END,"
    " last_error = CASE u.st WHEN 'sent' THEN d.last_error ELSE u.err END"
    " FROM {{u}} WHERE d.delivery_id = u.delivery_id AND d.status = 'sending'"
    " AND d.attempts = u.attempts RETURNING d.delivery_id::text",
    record_cols);

/* Statements over a set of notifications. */
static const as_col_t nid_cols[] = {{"notification_id", "uuid"}};

static const as_bulk_t sql_cancel = AS_BULK(
    "UPDATE deliveries SET status = 'cancelled'"
    " WHERE notification_id = ANY({{$notification_id}}) AND status = 'standby'",
    nid_cols);

static const as_bulk_t sql_next = AS_BULK(
    "WITH n AS (SELECT DISTINCT ON (notification_id) delivery_id FROM deliveries"
    " WHERE notification_id = ANY({{$notification_id}}) AND status = 'standby'"
    " ORDER BY notification_id, rank)"
    " UPDATE deliveries d SET status = 'pending', due_at = now() FROM n"
    " WHERE d.delivery_id = n.delivery_id RETURNING d.notification_id::text, d.channel",
    nid_cols);

/* Marks whole notifications; what another instance marked first is not
 * returned, so each SlaBreached is published once. */
static const as_bulk_t sql_breach = AS_BULK(
    "WITH m AS (UPDATE deliveries SET sla_breached = true"
    " WHERE notification_id = ANY({{$notification_id}}) AND NOT sla_breached"
    " RETURNING notification_id)"
    " SELECT DISTINCT notification_id::text FROM m",
    nid_cols);

/* The expression of 050_sender.sql's partial index. */
static const char sql_sweep[] =
    "WITH late AS (SELECT DISTINCT notification_id FROM deliveries"
    " WHERE status IN ('standby', 'pending', 'sending') AND NOT sla_breached"
    " AND (CASE WHEN submitted_at_us > 0 THEN submitted_at_us ELSE source_at_us END)"
    " BETWEEN 1 AND $1::bigint LIMIT $2),"
    " u AS (UPDATE deliveries d SET sla_breached = true FROM late"
    " WHERE d.notification_id = late.notification_id AND NOT d.sla_breached"
    " RETURNING d.notification_id, d.case_id, d.submitted_at_us, d.source_at_us, d.order_id)"
    " SELECT DISTINCT ON (notification_id) notification_id::text, case_id, submitted_at_us,"
    " source_at_us, order_id FROM u ORDER BY notification_id";

static const char sql_depth[] =
    "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending') AND due_at <= now()";

void notif_job_drop_text(notif_job_t *j) {
  free(j->subject);
  free(j->body);
  free(j->address);
  j->subject = j->body = j->address = NULL;
}

void notif_job_free(notif_job_t *j) {
  if (!j) return;
  notif_channel_release(&j->req);
  notif_job_drop_text(j);
  char *s[] = {j->case_id, j->order_id,         j->buyer_id,       j->template_id,
               j->locale,  j->template_version, j->source_event_id};
  for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) free(s[i]);
  free(j);
}

static notif_job_t *job_from(PGresult *r, int i) {
  notif_job_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  snprintf(j->delivery_id, sizeof j->delivery_id, "%s", PQgetvalue(r, i, 0));
  snprintf(j->notification_id, sizeof j->notification_id, "%s", PQgetvalue(r, i, 1));
  j->ch = (notif_ch_t)notif_ch_parse(PQgetvalue(r, i, 2));
  char **dst[] = {&j->case_id, &j->buyer_id, &j->template_id, &j->template_version,
                  &j->locale,  &j->subject,  &j->body};
  bool ok = true;
  for (int k = 0; k < 7; k++) ok = (*dst[k] = strdup(PQgetvalue(r, i, 3 + k))) && ok;
  j->attempts = atoi(PQgetvalue(r, i, 10));
  ok = (j->source_event_id = strdup(PQgetvalue(r, i, 11))) && ok;
  j->source_at_us = strtoll(PQgetvalue(r, i, 12), NULL, 10);
  j->submitted_at_us = strtoll(PQgetvalue(r, i, 13), NULL, 10);
  ok = (j->address = strdup(PQgetvalue(r, i, 14))) && ok; /* '' when no contact */
  j->has_next = PQgetvalue(r, i, 15)[0] == 't';
  ok = (j->order_id = strdup(PQgetvalue(r, i, 16))) && ok;
  if (!ok) notif_job_free(j), j = NULL;
  return j;
}

int notif_send_db_claim(as_tx_t *tx, int limit, long long lease_ms, notif_job_t **out) {
  char lim[16], lease[24];
  snprintf(lim, sizeof lim, "%d", limit);
  snprintf(lease, sizeof lease, "%lld", lease_ms);
  const char *vals[2] = {lim, lease};
  PGresult *r = NULL;
  /* A claim is only a lease: lost with an unflushed commit (a database
   * crash), its rows are due again and sent again with the same
   * idempotency key, as after a sender that died mid-send. Not waiting
   * for the WAL flush takes an fsync off the loop for every claim. */
  int rc = as_db_query(as_tx_db(tx), "SET LOCAL synchronous_commit TO off", 0, NULL, NULL);
  if (rc == 0) rc = as_db_query(as_tx_db(tx), sql_claim, 2, vals, &r);
  if (rc < 0) return rc;
  int n = PQntuples(r);
  for (int i = 0; i < n && rc == 0; i++) {
    notif_job_t *j = job_from(r, i);
    if (!j) rc = -ENOMEM; /* the transaction is rolled back: nothing was taken */
    if (j) j->next = *out, *out = j;
  }
  PQclear(r);
  return rc < 0 ? rc : n;
}

static const char *st_name(notif_st_t st) {
  static const char *const n[] = {"sent", "pending", "failed", "defer"};
  return n[st];
}

/* Looks up the job of a returned delivery id: results are a few dozen,
 * a scan is cheaper than a hash. */
static notif_job_t *find(notif_job_t *l, const char *id, bool by_notification) {
  for (; l; l = l->next)
    if (strcmp(by_notification ? l->notification_id : l->delivery_id, id) == 0) return l;
  return NULL;
}

/* One statement over the notifications of the jobs that match. */
static int ids_query(as_tx_t *tx, const as_bulk_t *stmt, notif_job_t *l,
                     bool (*want)(const notif_job_t *), PGresult **out) {
  as_cols_t c;
  as_cols_init(&c, stmt);
  for (; l; l = l->next)
    if (want(l)) as_cols_str(&c, 0, l->notification_id);
  int rc = as_cols_run(&c, as_tx_db(tx), out);
  as_cols_free(&c);
  return rc;
}

static bool sent(const notif_job_t *j) {
  return j->applied && j->st == NOTIF_ST_SENT;
}
static bool failed(const notif_job_t *j) {
  return j->applied && j->st == NOTIF_ST_FAILED;
}

static int update_rows(as_tx_t *tx, notif_job_t *list) {
  as_cols_t c;
  as_cols_init(&c, &sql_record);
  for (notif_job_t *j = list; j; j = j->next) {
    as_cols_str(&c, R_ID, j->delivery_id);
    as_cols_int(&c, R_ATT, j->attempts);
    as_cols_str(&c, R_ST, st_name(j->st));
    as_cols_int(&c, R_DELAY, j->delay_ms);
    as_cols_str(&c, R_ERR, j->code);
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, as_tx_db(tx), &r);
  for (int i = 0; rc == 0 && r && i < PQntuples(r); i++) {
    notif_job_t *j = find(list, PQgetvalue(r, i, 0), false);
    if (j) j->applied = true;
  }
  PQclear(r);
  as_cols_free(&c);
  return rc;
}

static int next_channels(as_tx_t *tx, notif_job_t *list) {
  PGresult *r = NULL;
  int rc = ids_query(tx, &sql_next, list, failed, &r);
  for (int i = 0; rc == 0 && r && i < PQntuples(r); i++)
    for (notif_job_t *j = list; j; j = j->next)
      if (failed(j) && strcmp(j->notification_id, PQgetvalue(r, i, 0)) == 0)
        j->next_channel = notif_ch_proto(PQgetvalue(r, i, 1));
  PQclear(r);
  return rc;
}

/* A notification of no case (a request rejected at intake) names its order. */
static int publish(as_tx_t *tx, const notif_job_t *j, const char *key,
                   Aftersales__V1__Envelope *env) {
  env->case_id = j->case_id;
  env->order_id = j->order_id;
  return as_tx_publish(tx, NULL, AS_TOPIC_NAME_NOTIFICATIONS, key, env);
}

static int publish_result(as_tx_t *tx, const notif_job_t *j) {
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  const char *key = *j->case_id ? j->case_id : *j->order_id ? j->order_id : j->notification_id;
  if (j->st == NOTIF_ST_SENT) {
    Aftersales__V1__NotificationSent m = AFTERSALES__V1__NOTIFICATION_SENT__INIT;
    m.notification_id = (char *)j->notification_id;
    m.case_id = j->case_id;
    m.channel = (Aftersales__V1__Channel)notif_ch_proto(notif_ch_name(j->ch));
    m.template_id = j->template_id;
    m.locale = j->locale;
    m.sent_at_us = j->done_us;
    m.buyer_id = j->buyer_id;
    m.idempotency_key = (char *)j->delivery_id;
    m.template_version = j->template_version;
    m.attempts = j->attempts;
    m.source_event_id = j->source_event_id;
    m.source_at_us = j->source_at_us;
    env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_NOTIFICATION_SENT;
    env.notification_sent = &m;
    return publish(tx, j, key, &env);
  }
  Aftersales__V1__NotificationFailed m = AFTERSALES__V1__NOTIFICATION_FAILED__INIT;
  m.notification_id = (char *)j->notification_id;
  m.case_id = j->case_id;
  m.channel = (Aftersales__V1__Channel)notif_ch_proto(notif_ch_name(j->ch));
  m.error_code = (char *)j->code;
  m.attempts = j->attempts;
  m.buyer_id = j->buyer_id;
  m.template_id = j->template_id;
  m.idempotency_key = (char *)j->delivery_id;
  m.next_channel = (Aftersales__V1__Channel)j->next_channel;
  m.failed_at_us = j->done_us;
  m.source_event_id = j->source_event_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_NOTIFICATION_FAILED;
  env.notification_failed = &m;
  return publish(tx, j, key, &env);
}

static int publish_breach(as_tx_t *tx, const char *case_id, const char *order_id, const char *key,
                          bool first, int64_t start_us, int64_t sla_us) {
  Aftersales__V1__SlaBreached b = AFTERSALES__V1__SLA_BREACHED__INIT;
  b.case_id = (char *)case_id;
  b.clock = first ? "first_response" : "notification";
  b.due_at_us = start_us + sla_us;
  b.breached_at_us = as_now_us();
  b.escalated_to = "customer_service";
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SLA_BREACHED;
  env.sla_breached = &b;
  env.case_id = (char *)case_id;
  env.order_id = (char *)order_id;
  return as_tx_publish(tx, NULL, AS_TOPIC_NAME_CASES, key, &env);
}

static int64_t sla_start(const notif_job_t *j) {
  return j->submitted_at_us > 0 ? j->submitted_at_us : j->source_at_us;
}

/* Late: sent past the bound, or failed on its last channel (it never will
 * be sent, so its SLA is lost now). */
static bool is_late(const notif_job_t *j, int64_t sla_us) {
  if (!j->applied || sla_start(j) <= 0) return false;
  if (j->st == NOTIF_ST_FAILED) return j->next_channel == 0;
  return j->st == NOTIF_ST_SENT && j->done_us - sla_start(j) > sla_us;
}
static bool late(const notif_job_t *j) {
  return j->late;
}

static int breaches(as_tx_t *tx, notif_job_t *list, int64_t sla_us) {
  for (notif_job_t *j = list; j; j = j->next) j->late = is_late(j, sla_us);
  PGresult *r = NULL;
  int rc = ids_query(tx, &sql_breach, list, late, &r);
  for (int i = 0; rc == 0 && r && i < PQntuples(r); i++) {
    notif_job_t *j = find(list, PQgetvalue(r, i, 0), true);
    while (j && !late(j)) j = find(j->next, j->notification_id, true);
    if (!j) continue;
    rc = publish_breach(tx, j->case_id, j->order_id,
                        *j->case_id    ? j->case_id
                        : *j->order_id ? j->order_id
                                       : j->notification_id,
                        j->submitted_at_us > 0, sla_start(j), sla_us);
    j->sla_published = rc == 0;
  }
  PQclear(r);
  return rc;
}

int notif_send_db_record(as_tx_t *tx, notif_job_t *list, int64_t sla_us) {
  int rc = update_rows(tx, list);
  PGresult *r = NULL;
  if (rc == 0) rc = ids_query(tx, &sql_cancel, list, sent, &r);
  PQclear(r);
  if (rc == 0) rc = next_channels(tx, list);
  for (notif_job_t *j = list; rc == 0 && j; j = j->next)
    if (j->applied && (j->st == NOTIF_ST_SENT || j->st == NOTIF_ST_FAILED))
      rc = publish_result(tx, j);
  if (rc == 0) rc = breaches(tx, list, sla_us);
  return rc;
}

int notif_send_db_sweep(as_tx_t *tx, int64_t sla_us, int limit, int by_clock[2]) {
  char before[24], lim[16];
  snprintf(before, sizeof before, "%lld", (long long)(as_now_us() - sla_us));
  snprintf(lim, sizeof lim, "%d", limit);
  const char *v[2] = {before, lim};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_sweep, 2, v, &r);
  if (rc < 0) return rc;
  int n = PQntuples(r);
  for (int i = 0; rc == 0 && i < n; i++) {
    const char *case_id = PQgetvalue(r, i, 1);
    int64_t sub = strtoll(PQgetvalue(r, i, 2), NULL, 10),
            src = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    rc = publish_breach(tx, case_id, PQgetvalue(r, i, 4), *case_id ? case_id : PQgetvalue(r, i, 0),
                        sub > 0, sub > 0 ? sub : src, sla_us);
    by_clock[sub > 0 ? 0 : 1]++;
  }
  PQclear(r);
  return rc < 0 ? rc : n;
}

int notif_send_db_depth(as_tx_t *tx, long long *out) {
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_depth, 0, NULL, &r);
  if (rc == 0) *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return rc;
}
