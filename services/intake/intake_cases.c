/* intake_cases: opening the cases a batch accepted, and the first response.
 *
 * A batch's cases are inserted by one as_case_open_many call (the case at
 * version 1 and its first timeline entry, numbered AS-YYYYMMDD-NNNNNNN from
 * the shared sequence): 500 single-row calls would cost 500 round trips and
 * miss the throughput target. The case id is derived from (buyer,
 * idempotency key), so a second instance racing on the same key waits on
 * the primary key and its ON CONFLICT DO NOTHING drops the row: that
 * request is answered with the winner's case (intake_idem) and only the
 * winner publishes CaseOpened.
 * Everything else of the cases (lines, SLA clocks, evidence, comment, the
 * request record with its content hash) is a second
 * statement, the buyer's history a third, the cases' deadlines a fourth.
 * CaseOpened carries everything the review worker decides on: the claimed
 * lines with prices, categories and suppliers, the order's facts and the
 * buyer's history, the paid shares (intake_money) and the vouched submission
 * time. The same paid figures go into the shared tables (case_lines.paid_minor
 * and purchased here; cases.paid_minor, paid_currency, shipping_paid_minor
 * with the case row),
 * where review checks every CaseOpened against them. BuyerAcknowledged is
 * the buyer's first response, naming the request it answers: its SLA clock
 * is met at once and the submission-to-acknowledgement time observed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_enum.h"
#include "as_topics.h"
#include "as_uuid.h"
#include "intake.h"

/* Everything else of the opened cases, one statement: lines (with the
 * line's paid share), SLA clocks, evidence, the comment, intake's record of
 * the request and its answer (intake_idem). The case's own paid figures are
 * written with the case row itself (as_case_open_many). */
static const char sql_rows[] =
    "WITH l AS (INSERT INTO cases.case_lines (case_id, order_id, line_id, sku, quantity,"
    " unit_minor, currency, paid_minor, purchased) SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[], $8::bigint[], $9::int[])),"
    " k AS (INSERT INTO cases.sla_clocks (case_id, clock, due_at, met_at)"
    " SELECT u.c, u.k, to_timestamp(u.d / 1e6), CASE WHEN u.m THEN now() END"
    " FROM unnest($10::text[], $11::text[], $12::bigint[], $13::bool[]) AS u(c, k, d, m)),"
    " e AS (INSERT INTO cases.case_evidence (case_id, event_id, position, source, uri, media_type,"
    " size_bytes, sha256) SELECT u.c, u.e, u.p, 'request', u.u, u.m, u.s, u.h FROM unnest($14::text[],"
    " $15::uuid[], $16::int[], $17::text[], $18::text[], $19::bigint[], $20::text[])"
    " AS u(c, e, p, u, m, s, h) ON CONFLICT (event_id, position) DO NOTHING),"
    " m AS (INSERT INTO cases.case_messages (case_id, event_id, source, author_kind, author_id,"
    " body, sent_at) SELECT u.c, u.e, 'request', 'buyer', u.b, u.t, to_timestamp(u.s / 1e6)"
    " FROM unnest($21::text[], $22::uuid[], $23::text[], $24::text[], $25::bigint[])"
    " AS u(c, e, b, t, s) ON CONFLICT (event_id, source) DO NOTHING),"
    " a AS (INSERT INTO %1$s.answers (buyer_id, request_id, answer, case_id) SELECT u.b, u.r,"
    " 'acknowledged', u.c FROM unnest($26::text[], $28::text[], $29::text[]) AS u(b, r, c)"
    " ON CONFLICT DO NOTHING)"
    " INSERT INTO %1$s.requests (buyer_id, idempotency_key, request_id, case_id, order_id,"
    " submitted_at_us, locale, preferred_outcome, return_method, complaint_type, declared_unused,"
    " content_hash) SELECT * FROM unnest($26::text[], $27::text[], $28::text[], $29::text[],"
    " $30::text[], $31::bigint[], $32::text[], $33::int[], $34::int[], $35::int[], $36::bool[],"
    " $37::text[]) ON CONFLICT DO NOTHING";

static size_t count_open(const intake_req_t *reqs, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += reqs[i].fate == INTAKE_R_OPEN;
  return k;
}

/* What as_case_open_many needs of one request (all borrowed from q). A
 * request without a reason (a complaint may have none) leaves cases.reason
 * empty. */
static as_case_opening_t opening_of(const intake_req_t *q) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  const char *type = as_enum_name(&aftersales__v1__case_type__descriptor, (int)r->case_type);
  const char *reason = r->reason ? as_enum_name(&aftersales__v1__reason__descriptor, (int)r->reason) : "";
  return (as_case_opening_t){
      .c = {.case_id = q->case_id, .case_type = type,
            .order_id = r->order_id, .buyer_id = r->buyer_id, .merchant_id = q->merchant_id,
            .reason = reason, .route = q->route,
            .currency = q->currency[0] ? q->currency : NULL, .claimed_minor = q->claimed_minor,
            .state = q->state, .has_paid = q->paid, .paid_minor = q->paid_minor,
            .shipping_paid_minor = q->shipping_paid, .paid_currency = q->paid_currency},
      .actor = {"buyer", r->buyer_id},
      .why = "request submitted",
      .event_id = q->cause->env->event_id,
      .cause = q->cause};
}

/* Inserts the cases through as_case_open_many (numbers drawn there); a
 * request whose case was not inserted (another instance opened it first)
 * goes back to PENDING. */
static int open_all(as_tx_t *tx, intake_req_t *reqs, size_t n) {
  size_t k = count_open(reqs, n);
  as_case_opening_t *o = calloc(k ? k : 1, sizeof *o);
  intake_req_t **who = calloc(k ? k : 1, sizeof *who);
  int rc = o && who ? 0 : -ENOMEM;
  k = 0;
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (reqs[i].fate == INTAKE_R_OPEN) {
      o[k] = opening_of(&reqs[i]);
      who[k++] = &reqs[i];
    }
  if (rc == 0) rc = as_case_open_many(tx, o, k);
  for (size_t j = 0; rc == 0 && j < k; j++) {
    if (o[j].opened) {
      snprintf(who[j]->case_number, sizeof who[j]->case_number, "%s", o[j].case_number);
      continue;
    }
    who[j]->fate = INTAKE_R_PENDING; /* answered with the winner's case (intake_idem) */
  }
  free(who);
  free(o);
  return rc;
}

static void add_clock(as_cols_t *c, const char *case_id, const char *clock, int64_t due, bool met) {
  as_cols_str(c, 0, case_id);
  as_cols_str(c, 1, clock);
  as_cols_int(c, 2, due);
  as_cols_str(c, 3, met ? "t" : "f");
  as_cols_row(c);
}

enum { T_LINES, T_CLOCKS, T_EVIDENCE, T_COMMENTS, T_REQUESTS, T_COUNT };
#define T_PARAMS 37 /* the sum of ncols in write_rows */

static void add_rows(as_cols_t *t, const intake_req_t *q, const intake_view_t *v) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  for (size_t i = 0; i < r->n_lines; i++) {
    int row = q->line_rows[i];
    const char *s[] = {q->case_id, r->order_id, r->lines[i]->line_id,
                       PQgetvalue(v->lines, row, INTAKE_L_SKU)};
    for (int k = 0; k < 4; k++) as_cols_str(&t[T_LINES], k, s[k]);
    as_cols_int(&t[T_LINES], 4, r->lines[i]->quantity);
    as_cols_str(&t[T_LINES], 5, PQgetvalue(v->lines, row, INTAKE_L_UNIT));
    as_cols_str(&t[T_LINES], 6, PQgetvalue(v->lines, row, INTAKE_L_CUR));
    if (q->paid) as_cols_int(&t[T_LINES], 7, q->line_paid[i]);
    else as_cols_null(&t[T_LINES], 7);
    as_cols_str(&t[T_LINES], 8, PQgetvalue(v->lines, row, INTAKE_L_QUANTITY));
    as_cols_row(&t[T_LINES]);
  }
  add_clock(&t[T_CLOCKS], q->case_id, "first_response", q->first_due_us, true);
  if (q->review_due_us) add_clock(&t[T_CLOCKS], q->case_id, "review", q->review_due_us, false);
  if (q->resolution_due_us) add_clock(&t[T_CLOCKS], q->case_id, "resolution", q->resolution_due_us, false);
  if (!q->review_due_us && q->pickup_due_us) add_clock(&t[T_CLOCKS], q->case_id, "pickup", q->pickup_due_us, false);
  const char *eid = q->cause->env->event_id;
  for (size_t i = 0; i < r->n_evidence; i++) {
    const Aftersales__V1__Attachment *a = r->evidence[i];
    as_cols_str(&t[T_EVIDENCE], 0, q->case_id);
    as_cols_str(&t[T_EVIDENCE], 1, eid);
    as_cols_int(&t[T_EVIDENCE], 2, (long long)i);
    as_cols_str(&t[T_EVIDENCE], 3, a->uri);
    as_cols_str(&t[T_EVIDENCE], 4, a->media_type);
    as_cols_int(&t[T_EVIDENCE], 5, a->size_bytes);
    as_cols_str(&t[T_EVIDENCE], 6, a->sha256);
    as_cols_row(&t[T_EVIDENCE]);
  }
  if (r->comment[0]) {
    const char *s[] = {q->case_id, eid, r->buyer_id, r->comment};
    for (int k = 0; k < 4; k++) as_cols_str(&t[T_COMMENTS], k, s[k]);
    as_cols_int(&t[T_COMMENTS], 4, r->submitted_at_us);
    as_cols_row(&t[T_COMMENTS]);
  }
  const char *s[] = {r->buyer_id, r->idempotency_key, r->request_id, q->case_id, r->order_id};
  for (int k = 0; k < 5; k++) as_cols_str(&t[T_REQUESTS], k, s[k]);
  as_cols_int(&t[T_REQUESTS], 5, r->submitted_at_us);
  as_cols_str(&t[T_REQUESTS], 6, r->locale);
  as_cols_int(&t[T_REQUESTS], 7, (int)r->preferred_outcome);
  as_cols_int(&t[T_REQUESTS], 8, (int)r->return_method);
  as_cols_int(&t[T_REQUESTS], 9, (int)r->complaint_type);
  as_cols_str(&t[T_REQUESTS], 10, r->declared_unused ? "t" : "f");
  as_cols_str(&t[T_REQUESTS], 11, q->hash);
  as_cols_row(&t[T_REQUESTS]);
}

static int write_rows(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n,
                      const intake_view_t *v) {
  static const int ncols[T_COUNT] = {9, 4, 7, 5, 12};
  as_cols_t t[T_COUNT];
  for (int k = 0; k < T_COUNT; k++) as_cols_init(&t[k], ncols[k]);
  for (size_t i = 0; i < n; i++)
    if (reqs[i].fate == INTAKE_R_OPEN) add_rows(t, &reqs[i], v);
  const char *vals[T_PARAMS];
  int rc = 0;
  for (int k = 0, at = 0; rc == 0 && k < T_COUNT; at += ncols[k++]) rc = as_cols_params(&t[k], vals + at);
  char sql[4096];
  if (rc == 0 && t[T_REQUESTS].rows > 0)
    rc = as_db_query(as_tx_db(tx), intake_sql(x, sql, sizeof sql, sql_rows), T_PARAMS, vals, NULL);
  for (int k = 0; k < T_COUNT; k++) as_cols_free(&t[k]);
  return rc;
}

/* Event ids derived from the case: a replay of the same decision (another
 * instance, a redelivery) carries the same id and is deduplicated downstream. */
static void event_id(char out[AS_UUID_STRLEN + 1], const char *case_id, const char *what) {
  char name[256];
  int len = snprintf(name, sizeof name, "%s|%s", case_id, what);
  as_uuid_v5(out, "aftersales.intake.event", name, (size_t)len);
}

/* Money from two columns of r, or NULL when the amount is NULL. */
static Aftersales__V1__Money *money_of(Aftersales__V1__Money *m, PGresult *r, int row, int amount,
                                      int currency) {
  if (PQgetisnull(r, row, amount)) return NULL;
  aftersales__v1__money__init(m);
  m->amount_minor = strtoll(PQgetvalue(r, row, amount), NULL, 10);
  m->currency = PQgetvalue(r, row, currency);
  return m;
}

/* The order's facts from the batch's (locked) order row, and the shipping
 * fee's paid share. */
static void order_facts(Aftersales__V1__OrderFacts *f, Aftersales__V1__Money money[3],
                        const intake_req_t *q, const intake_view_t *v) {
  PGresult *o = v->orders;
  int row = q->order_row;
  aftersales__v1__order_facts__init(f);
  f->placed_at_us = strtoll(PQgetvalue(o, row, INTAKE_O_PLACED), NULL, 10);
  f->delivered_at_us = strtoll(PQgetvalue(o, row, INTAKE_O_DELIVERED), NULL, 10);
  f->paid = money_of(&money[0], o, row, INTAKE_O_PAID, INTAKE_O_PAID_CUR);
  f->payment_method = (Aftersales__V1__PaymentMethod)atoi(PQgetvalue(o, row, INTAKE_O_PAY_METHOD));
  f->payment_ref = PQgetvalue(o, row, INTAKE_O_PAY_REF);
  f->region = PQgetvalue(o, row, INTAKE_O_REGION);
  f->shipping_fee = money_of(&money[1], o, row, INTAKE_O_SHIP_FEE, INTAKE_O_SHIP_CUR);
  if (!q->paid) return;
  aftersales__v1__money__init(&money[2]);
  money[2].amount_minor = q->shipping_paid;
  money[2].currency = f->paid->currency;
  f->shipping_paid = &money[2];
}

/* One claimed line with what the order says of it and its paid share. */
static void case_line(Aftersales__V1__CaseLine *cl, Aftersales__V1__Money money[2],
                      const Aftersales__V1__LineRef *ref, PGresult *l, int row, const int64_t *paid) {
  aftersales__v1__case_line__init(cl);
  cl->line_id = ref->line_id;
  cl->sku = PQgetvalue(l, row, INTAKE_L_SKU);
  cl->category = PQgetvalue(l, row, INTAKE_L_CATEGORY);
  cl->supplier_id = PQgetvalue(l, row, INTAKE_L_SUPPLIER);
  cl->quantity = ref->quantity;
  cl->unit_price = money_of(&money[0], l, row, INTAKE_L_UNIT, INTAKE_L_CUR);
  cl->purchased_quantity = atoi(PQgetvalue(l, row, INTAKE_L_QUANTITY));
  if (!paid) return;
  aftersales__v1__money__init(&money[1]);
  money[1].amount_minor = *paid;
  money[1].currency = cl->unit_price->currency;
  cl->paid_allocated = &money[1];
}

/* What one claimed line of CaseOpened is packed from. */
typedef struct {
  Aftersales__V1__LineRef ref;
  Aftersales__V1__CaseLine cl;
  Aftersales__V1__Money money[2];
} opened_line_t;

static int publish_opened(as_tx_t *tx, const intake_req_t *q, const intake_view_t *v) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  /* On the heap: a request may claim up to AS_INTAKE_LINES_MAX (1,000) lines. */
  size_t nl = r->n_lines ? r->n_lines : 1;
  opened_line_t *ol = calloc(nl, sizeof *ol);
  Aftersales__V1__LineRef **lp = calloc(nl, sizeof *lp);
  Aftersales__V1__CaseLine **clp = calloc(nl, sizeof *clp);
  Aftersales__V1__Money order_money[3];
  if (!ol || !lp || !clp) {
    free(ol), free(lp), free(clp);
    return -ENOMEM;
  }
  for (size_t i = 0; i < r->n_lines; i++) {
    aftersales__v1__line_ref__init(&ol[i].ref);
    ol[i].ref.line_id = r->lines[i]->line_id;
    ol[i].ref.sku = PQgetvalue(v->lines, q->line_rows[i], INTAKE_L_SKU);
    ol[i].ref.quantity = r->lines[i]->quantity;
    lp[i] = &ol[i].ref;
    case_line(&ol[i].cl, ol[i].money, r->lines[i], v->lines, q->line_rows[i], q->paid ? &q->line_paid[i] : NULL);
    clp[i] = &ol[i].cl;
  }
  Aftersales__V1__OrderFacts facts;
  order_facts(&facts, order_money, q, v);
  Aftersales__V1__BuyerHistory hist = AFTERSALES__V1__BUYER_HISTORY__INIT;
  hist.first_order_at_us = q->history.first_order_at_us;
  hist.orders = q->history.orders;
  hist.cases = q->history.cases;
  hist.claims_on_order = q->history.claims_on_order;
  Aftersales__V1__Money money = AFTERSALES__V1__MONEY__INIT;
  money.amount_minor = q->claimed_minor;
  money.currency = (char *)q->currency;
  Aftersales__V1__CaseOpened o = AFTERSALES__V1__CASE_OPENED__INIT;
  o.case_id = (char *)q->case_id;
  o.case_number = (char *)q->case_number;
  o.order_id = r->order_id;
  o.buyer_id = r->buyer_id;
  o.merchant_id = (char *)q->merchant_id;
  o.case_type = r->case_type;
  o.reason = r->reason;
  o.n_lines = r->n_lines;
  o.lines = lp;
  o.claimed_amount = &money;
  o.state = q->state;
  o.route = (char *)q->route;
  o.request_id = r->request_id;
  o.first_response_due_us = q->first_due_us;
  o.review_due_us = q->review_due_us;
  o.resolution_due_us = q->resolution_due_us;
  o.preferred_outcome = r->preferred_outcome;
  o.return_method = r->return_method;
  o.n_evidence = r->n_evidence;
  o.evidence = r->evidence;
  o.comment = r->comment;
  o.n_case_lines = r->n_lines;
  o.case_lines = clp;
  o.order = &facts;
  o.buyer_history = &hist;
  o.declared_unused = r->declared_unused;
  o.locale = r->locale;
  o.submitted_at_us = q->vouched_us; /* the time windows are judged on (intake_requests.c) */
  char eid[AS_UUID_STRLEN + 1];
  event_id(eid, q->case_id, "CaseOpened");
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = eid;
  env.case_id = (char *)q->case_id;
  env.order_id = r->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED;
  env.case_opened = &o;
  int rc = as_tx_publish(tx, q->cause, AS_TOPIC_NAME_CASES, q->case_id, &env);
  free(ol), free(lp), free(clp);
  return rc;
}

int intake_cases_ack(as_tx_t *tx, const intake_req_t *q) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  Aftersales__V1__BuyerAcknowledged a = AFTERSALES__V1__BUYER_ACKNOWLEDGED__INIT;
  a.case_id = (char *)q->case_id;
  a.case_number = (char *)q->case_number;
  a.buyer_id = r->buyer_id;
  a.submitted_at_us = r->submitted_at_us;
  a.locale = r->locale;
  a.request_id = r->request_id;
  char eid[AS_UUID_STRLEN + 1], what[160];
  snprintf(what, sizeof what, "BuyerAcknowledged|%s", r->request_id);
  event_id(eid, q->case_id, what);
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = eid;
  env.case_id = (char *)q->case_id;
  env.order_id = r->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_ACKNOWLEDGED;
  env.buyer_acknowledged = &a;
  return as_tx_publish(tx, q->cause, AS_TOPIC_NAME_CASES, q->case_id, &env);
}

/* The first response to a request that opened its case, and its latency. */
static int publish_ack(intake_t *x, as_tx_t *tx, const intake_req_t *q) {
  int rc = intake_cases_ack(tx, q);
  int64_t now = as_now_us();
  as_histogram_observe(x->ack_submitted, (double)(now - q->r->submitted_at_us) / 1e6);
  as_histogram_observe(x->ack_occurred, (double)(now - q->cause->env->occurred_at_us) / 1e6);
  as_counter_add(x->opened, 1);
  return rc;
}

int intake_cases_open(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n,
                      const intake_view_t *view) {
  if (count_open(reqs, n) == 0) return 0;
  int rc = open_all(tx, reqs, n);
  if (rc == 0) rc = write_rows(x, tx, reqs, n, view);
  if (rc == 0) rc = intake_clock_arm(x, tx, reqs, n);
  if (rc == 0) rc = intake_history_fill(x, tx, reqs, n);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (reqs[i].fate != INTAKE_R_OPEN) continue;
    rc = publish_opened(tx, &reqs[i], view);
    if (rc == 0) rc = publish_ack(x, tx, &reqs[i]);
  }
  return rc;
}
