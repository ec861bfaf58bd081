/* insp_cluster: supplier defect clusters.
 *
 * A confirmed defect is recorded once per case and key (supplier, SKU,
 * lot, defect code). Every change to one key first locks its cluster_keys
 * row, so two instances judging defects of the same key serialise there:
 * the alert is raised once and each grant decided once (the alert's and
 * the grant's ids are derived, and unique, besides). Without an open alert,
 * the key's defects confirmed within AS_INSPECTION_CLUSTER_WINDOW_DAYS (and
 * since its last alert closed) are counted by distinct buyers; at
 * AS_INSPECTION_CLUSTER_MIN one SupplierQualityAlert is raised naming the
 * cases and the demand, and every one of those cases is compensated. With
 * an open alert, each newly confirmed case is compensated too and the
 * alert's window moves on. Quality claims with evidence not yet judged
 * count toward the watch level (a metric). An alert closes on
 * RectificationConfirmed or when a window passes with no new defect (the
 * "cluster:window" deadline, keyed by the alert id). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "as_log.h"
#include "as_topics.h"
#include "inspection.h"

typedef struct key {
  const char *supplier, *sku, *lot, *code;
} key_t_;

static int64_t window_us(const insp_t *x) {
  return x->conf->window_days * INSP_DAY_US;
}

static void num(char *buf, size_t n, long long v) {
  snprintf(buf, n, "%lld", v);
}

/* Locks the key's row (creating it); *watched: it reached the watch level. */
static int lock_key(as_tx_t *tx, const key_t_ *k, bool *watched) {
  const char *vals[4] = {k->supplier, k->sku, k->lot, k->code};
  PGresult *r = NULL;
  int rc =
      as_db_query(as_tx_db(tx),
                  "INSERT INTO cluster_keys (supplier_id, sku, lot_id, defect_code)"
                  " VALUES ($1, $2, $3, $4) ON CONFLICT (supplier_id, sku, lot_id, defect_code)"
                  " DO UPDATE SET supplier_id = EXCLUDED.supplier_id RETURNING watched_at_us",
                  4, vals, &r);
  if (rc == 0 && watched) *watched = !PQgetisnull(r, 0, 0);
  PQclear(r);
  return rc;
}

/* ---- compensation */

static int publish_grant(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                         const char *alert_id, const char *comp_id, Aftersales__V1__LineRef **lp,
                         size_t n, int64_t amount, int64_t coupon) {
  Aftersales__V1__Money amt = AFTERSALES__V1__MONEY__INIT, cp = AFTERSALES__V1__MONEY__INIT;
  amt.amount_minor = amount, amt.currency = (char *)c->currency;
  cp.amount_minor = coupon, cp.currency = (char *)c->currency;
  Aftersales__V1__CompensationGranted g = AFTERSALES__V1__COMPENSATION_GRANTED__INIT;
  g.compensation_id = (char *)comp_id;
  g.case_id = (char *)c->case_id;
  g.alert_id = (char *)alert_id;
  g.kind = AFTERSALES__V1__OUTCOME__OUTCOME_REFUND;
  g.amount = &amt;
  g.lines = lp;
  g.n_lines = n;
  g.coupon = &cp;
  g.buyer_id = (char *)c->buyer_id;
  g.order_id = (char *)c->order_id;
  g.granted_at_us = as_now_us();
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_COMPENSATION_GRANTED;
  env.compensation_granted = &g;
  as_counter_add(x->grants, 1);
  return insp_publish(tx, cause, AS_TOPIC_NAME_INSPECTION, c->case_id, c->case_id, c->order_id,
                      &env);
}

/* One CompensationGranted per (alert, case): the case's lines of the
 * cluster's supplier, SKU and lot, all their purchased units, what they
 * were paid, and the standards' coupon for the currency. */
static int grant(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                 const key_t_ *k, const char *alert_id) {
  char name[AS_UUID_STRLEN + AS_ID_MAX + 2], comp_id[AS_UUID_STRLEN + 1];
  int len = snprintf(name, sizeof name, "%s|%s", alert_id, c->case_id);
  as_uuid_v5(comp_id, "aftersales.compensation", name, (size_t)len);
  Aftersales__V1__LineRef lr[INSP_MAX_LINES], *lp[INSP_MAX_LINES];
  size_t n = 0;
  int64_t amount = 0, coupon;
  for (size_t i = 0; i < c->n; i++) {
    const insp_line_t *l = &c->lines[i];
    if (strcmp(l->sku, k->sku) || strcmp(l->supplier_id, k->supplier) || strcmp(l->lot_id, k->lot))
      continue;
    aftersales__v1__line_ref__init(&lr[n]);
    lr[n].line_id = (char *)l->line_id;
    lr[n].sku = (char *)l->sku;
    lr[n].quantity = l->purchased;
    lp[n] = &lr[n];
    amount += l->paid_minor; /* each below 2^63 / INSP_MAX_LINES (insp_cases): no overflow */
    n++;
  }
  (void)insp_standards_coupon(x->standards, c->currency, &coupon);
  char amt_s[24], cp_s[24];
  num(amt_s, sizeof amt_s, amount);
  num(cp_s, sizeof cp_s, coupon);
  const char *vals[6] = {comp_id, alert_id, c->case_id, c->currency, amt_s, cp_s};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx),
                       "INSERT INTO grants (compensation_id, alert_id, case_id, currency,"
                       " amount_minor, coupon_minor) VALUES ($1, $2, $3, $4, $5, $6)"
                       " ON CONFLICT DO NOTHING RETURNING 1",
                       6, vals, &r);
  bool fresh = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  if (rc || !fresh) return rc;
  return publish_grant(x, tx, cause, c, alert_id, comp_id, lp, n, amount, coupon);
}

static int grant_case_id(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const char *case_id,
                         const key_t_ *k, const char *alert_id) {
  insp_cases_t cs;
  int rc = insp_cases_load(tx, &case_id, 1, &cs);
  const insp_case_t *c = rc == 0 ? insp_cases_find(&cs, case_id) : NULL;
  if (rc == 0) rc = c ? grant(x, tx, cause, c, k, alert_id) : -EIO; /* a defect's case exists */
  insp_cases_free(&cs);
  return rc;
}

/* ---- raising */

static const char sql_window[] =
    "SELECT case_id, buyer_id, confirmed_at_us, category FROM defects"
    " WHERE supplier_id = $1 AND sku = $2 AND lot_id = $3 AND defect_code = $4"
    " AND confirmed_at_us > $5 AND confirmed_at_us > COALESCE((SELECT max(closed_at_us)"
    " FROM alerts WHERE supplier_id = $1 AND sku = $2 AND lot_id = $3 AND defect_code = $4), 0)"
    " ORDER BY confirmed_at_us, case_id";

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Distinct buyers of the window's defects (column 1), sorted: O(n log n). */
static int distinct_buyers(PGresult *r, int *out) {
  int n = PQntuples(r);
  const char **v = calloc((size_t)n + 1, sizeof *v);
  if (!v) return -ENOMEM;
  for (int i = 0; i < n; i++) v[i] = PQgetvalue(r, i, 1);
  qsort(v, (size_t)n, sizeof *v, cmp_str);
  *out = 0;
  for (int i = 0; i < n; i++) *out += i == 0 || strcmp(v[i], v[i - 1]) != 0;
  free(v);
  return 0;
}

static int publish_alert(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const key_t_ *k,
                         const char *alert_id, PGresult *r, int buyers, int64_t start,
                         int64_t now) {
  int n = PQntuples(r);
  char **ids = calloc((size_t)n + 1, sizeof *ids);
  if (!ids) return -ENOMEM;
  for (int i = 0; i < n; i++) ids[i] = PQgetvalue(r, i, 0);
  Aftersales__V1__SupplierQualityAlert a = AFTERSALES__V1__SUPPLIER_QUALITY_ALERT__INIT;
  a.alert_id = (char *)alert_id;
  a.supplier_id = (char *)k->supplier;
  a.sku = (char *)k->sku;
  a.lot_id = (char *)k->lot;
  a.defect_code = (char *)k->code;
  a.confirmed_cases = n;
  a.distinct_buyers = buyers;
  a.window_start_us = start;
  a.window_end_us = start + window_us(x);
  a.case_ids = ids;
  a.n_case_ids = (size_t)n;
  a.demand = (char *)insp_standards_demand(x->standards);
  a.category = PQgetvalue(r, 0, 3);
  a.raised_at_us = now;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SUPPLIER_QUALITY_ALERT;
  env.supplier_quality_alert = &a;
  int rc = insp_publish(tx, cause, AS_TOPIC_NAME_INSPECTION, alert_id, alert_id, NULL, &env);
  free(ids);
  return rc;
}

static int raise_alert(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const key_t_ *k, PGresult *r,
                       int buyers, int64_t now) {
  int64_t start = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  char name[4 * AS_ID_MAX + 80], alert_id[AS_UUID_STRLEN + 1], start_s[24], now_s[24];
  int len = snprintf(name, sizeof name, "%s|%s|%s|%s|%lld", k->supplier, k->sku, k->lot, k->code,
                     (long long)start);
  as_uuid_v5(alert_id, "aftersales.supplier_alert", name, (size_t)len);
  num(start_s, sizeof start_s, start);
  num(now_s, sizeof now_s, now);
  const char *vals[7] = {alert_id, k->supplier, k->sku, k->lot, k->code, start_s, now_s};
  int rc = as_db_query(as_tx_db(tx),
                       "INSERT INTO alerts (alert_id, supplier_id, sku, lot_id, defect_code,"
                       " window_start_us, raised_at_us, last_defect_us)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                       7, vals, NULL);
  if (rc == 0) rc = publish_alert(x, tx, cause, k, alert_id, r, buyers, start, now);
  if (rc == 0) rc = as_deadline_set(tx, alert_id, "cluster:window", now + window_us(x));
  if (rc) return rc;
  as_counter_add(x->alerts_raised, 1);
  AS_WARN(x->log, "supplier quality alert raised", AS_F_STR("alert_id", alert_id),
          AS_F_STR("supplier_id", k->supplier), AS_F_STR("sku", k->sku),
          AS_F_STR("defect_code", k->code), AS_F_INT("distinct_buyers", buyers));
  for (int i = 0; rc == 0 && i < PQntuples(r); i++)
    rc = grant_case_id(x, tx, cause, PQgetvalue(r, i, 0), k, alert_id);
  return rc;
}

/* Unjudged quality claims with evidence on the key's supplier, SKU and lot,
 * by buyers without a confirmed defect in the window: with the confirmed
 * ones, the watch level. */
static const char sql_pending[] =
    "SELECT count(DISTINCT c.buyer_id) FROM cases c JOIN case_lines l USING (case_id)"
    " WHERE l.supplier_id = $1 AND l.sku = $2 AND l.lot_id = $3 AND c.has_evidence"
    " AND c.reason = 3 AND c.opened_at_us > $5"
    " AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.case_id = c.case_id"
    " AND t.judged_at_us IS NOT NULL)"
    " AND c.buyer_id NOT IN (SELECT buyer_id FROM defects d WHERE d.supplier_id = $1"
    " AND d.sku = $2 AND d.lot_id = $3 AND d.defect_code = $4 AND d.confirmed_at_us > $5)";

static int watch(insp_t *x, as_tx_t *tx, const key_t_ *k, int buyers, const char *since) {
  const char *vals[5] = {k->supplier, k->sku, k->lot, k->code, since};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_pending, 5, vals, &r);
  long long pending = rc == 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
  PQclear(r);
  if (rc || buyers + pending < x->conf->cluster_min) return rc;
  char now_s[24];
  num(now_s, sizeof now_s, as_now_us());
  vals[4] = now_s;
  rc = as_db_query(as_tx_db(tx),
                   "UPDATE cluster_keys SET watched_at_us = $5 WHERE supplier_id = $1 AND sku = $2"
                   " AND lot_id = $3 AND defect_code = $4",
                   5, vals, NULL);
  if (rc == 0) as_counter_add(x->watched, 1);
  return rc;
}

/* ---- a defect confirmed */

static const char sql_open[] =
    "SELECT alert_id FROM alerts WHERE supplier_id = $1 AND sku = $2 AND lot_id = $3"
    " AND defect_code = $4 AND closed_at_us IS NULL";

static int under_alert(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                       const key_t_ *k, const char *alert_id, int64_t now) {
  char now_s[24];
  num(now_s, sizeof now_s, now);
  const char *vals[2] = {alert_id, now_s};
  int rc = as_db_query(as_tx_db(tx), "UPDATE alerts SET last_defect_us = $2 WHERE alert_id = $1", 2,
                       vals, NULL);
  if (rc == 0) rc = as_deadline_set(tx, alert_id, "cluster:window", now + window_us(x));
  return rc ? rc : grant(x, tx, cause, c, k, alert_id);
}

static int count_window(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const key_t_ *k,
                        bool watched, int64_t now) {
  char since[24];
  num(since, sizeof since, now - window_us(x));
  const char *vals[5] = {k->supplier, k->sku, k->lot, k->code, since};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_window, 5, vals, &r);
  if (rc) return PQclear(r), rc;
  int buyers;
  if ((rc = distinct_buyers(r, &buyers)) != 0)
    ;
  else if (buyers >= x->conf->cluster_min)
    rc = raise_alert(x, tx, cause, k, r, buyers, now);
  else if (!watched)
    rc = watch(x, tx, k, buyers, since);
  PQclear(r);
  return rc;
}

int insp_cluster_defect(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                        const insp_line_t *l, const char *code, const char *category) {
  key_t_ k = {l->supplier_id, l->sku, l->lot_id, code};
  bool watched = false;
  int rc = lock_key(tx, &k, &watched);
  if (rc) return rc;
  int64_t now = as_now_us();
  char now_s[24];
  num(now_s, sizeof now_s, now);
  const char *vals[8] = {k.supplier, k.sku,       k.lot,    k.code,
                         c->case_id, c->buyer_id, category, now_s};
  rc = as_db_query(as_tx_db(tx),
                   "INSERT INTO defects (supplier_id, sku, lot_id, defect_code, case_id, buyer_id,"
                   " category, confirmed_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                   " ON CONFLICT DO NOTHING",
                   8, vals, NULL);
  PGresult *r = NULL;
  if (rc == 0) rc = as_db_query(as_tx_db(tx), sql_open, 4, vals, &r);
  if (rc == 0 && PQntuples(r) == 1)
    rc = under_alert(x, tx, cause, c, &k, PQgetvalue(r, 0, 0), now);
  else if (rc == 0)
    rc = count_window(x, tx, cause, &k, watched, now);
  PQclear(r);
  return rc;
}

/* ---- closing */

static const char sql_alert[] =
    "SELECT supplier_id, sku, lot_id, defect_code, closed_at_us IS NOT NULL, last_defect_us"
    " FROM alerts WHERE alert_id = $1";

/* Locks the alert's key, then reads the alert: the order every path takes. */
static int lock_alert(as_tx_t *tx, const char *alert_id, PGresult **out) {
  const char *vals[1] = {alert_id};
  int rc = as_db_query(as_tx_db(tx), sql_alert, 1, vals, out);
  if (rc || PQntuples(*out) == 0) return rc ? rc : -ENOENT;
  key_t_ k = {PQgetvalue(*out, 0, 0), PQgetvalue(*out, 0, 1), PQgetvalue(*out, 0, 2),
              PQgetvalue(*out, 0, 3)};
  rc = lock_key(tx, &k, NULL);
  PGresult *again = NULL;
  if (rc == 0) rc = as_db_query(as_tx_db(tx), sql_alert, 1, vals, &again);
  PQclear(*out);
  *out = again;
  return rc;
}

static int close_alert(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const char *alert_id,
                       const char *reason, const char *agent) {
  int64_t now = as_now_us();
  char now_s[24];
  num(now_s, sizeof now_s, now);
  const char *vals[4] = {alert_id, now_s, reason, agent};
  int rc = as_db_query(as_tx_db(tx),
                       "UPDATE alerts SET closed_at_us = $2, close_reason = $3, agent_id = $4"
                       " WHERE alert_id = $1",
                       4, vals, NULL);
  if (rc == 0 && agent) rc = as_deadline_cancel(tx, alert_id, "cluster:window");
  if (rc) return rc;
  Aftersales__V1__SupplierQualityAlertClosed e =
      AFTERSALES__V1__SUPPLIER_QUALITY_ALERT_CLOSED__INIT;
  e.alert_id = (char *)alert_id;
  e.reason = (char *)reason;
  e.closed_at_us = now;
  e.agent_id = (char *)(agent ? agent : "");
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SUPPLIER_QUALITY_ALERT_CLOSED;
  env.supplier_quality_alert_closed = &e;
  as_counter_add(agent ? x->alerts_rectified : x->alerts_expired, 1);
  AS_INFO(x->log, "supplier quality alert closed", AS_F_STR("alert_id", alert_id),
          AS_F_STR("reason", reason));
  return insp_publish(tx, cause, AS_TOPIC_NAME_INSPECTION, alert_id, alert_id, NULL, &env);
}

int insp_on_rectified(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__RectificationConfirmed *e = m->env->rectification_confirmed;
  if (!as_uuid_valid(e->alert_id)) return as_tx_reject(m, "unknown_alert: not a UUID"), 0;
  if (!as_envelope_id_ok(e->agent_id)) return as_tx_reject(m, "agent id missing or unsafe"), 0;
  if (!insp_text_ok(e->note, 4000)) return as_tx_reject(m, "note too long or has control bytes"), 0;
  char id[AS_UUID_STRLEN + 1];
  memcpy(id, e->alert_id, sizeof id);
  as_uuid_canonicalise(id);
  PGresult *r = NULL;
  int rc = lock_alert(tx, id, &r);
  if (rc == -ENOENT)
    rc = 0, as_tx_reject(m, "unknown_alert: no such alert");
  else if (rc == 0 && PQgetvalue(r, 0, 4)[0] == 't')
    as_tx_reject(m, "alert_closed: the alert was closed already");
  else if (rc == 0)
    rc = close_alert(state, tx, m, id, "rectified", e->agent_id);
  PQclear(r);
  return rc;
}

int insp_timers_window(void *state, as_tx_t *tx, const char *alert_id, const char *kind,
                       int64_t due_us) {
  (void)kind;
  (void)due_us;
  insp_t *x = state;
  PGresult *r = NULL;
  int rc = as_uuid_valid(alert_id) ? lock_alert(tx, alert_id, &r) : -ENOENT;
  if (rc == -ENOENT)
    rc = 0;                                          /* nothing to close */
  else if (rc == 0 && PQgetvalue(r, 0, 4)[0] != 't') /* each new defect moved the deadline on */
    rc = close_alert(x, tx, NULL, alert_id, "window_passed", NULL);
  PQclear(r);
  return rc;
}
