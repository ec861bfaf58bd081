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
enum {
  L_CASE,
  L_ORDER,
  L_LINE,
  L_SKU,
  L_QTY,
  L_UNIT,
  L_CUR,
  L_PAID,
  L_PURCHASED,
  L_LOT,
  K_CASE,
  K_CLOCK,
  K_DUE,
  K_MET,
  E_CASE,
  E_EVENT,
  E_POS,
  E_URI,
  E_MEDIA,
  E_SIZE,
  E_SHA,
  M_CASE,
  M_EVENT,
  M_BUYER,
  M_BODY,
  M_SENT,
  R_BUYER,
  R_KEY,
  R_REQUEST,
  R_CASE,
  R_ORDER,
  R_SUBMITTED,
  R_LOCALE,
  R_OUTCOME,
  R_RETURN,
  R_COMPLAINT,
  R_UNUSED,
  R_HASH,
};
/* Sets: l lines, k SLA clocks, e evidence, m the comment, r the request. */
static const as_col_t rows_cols[] = {
    [L_CASE] = {"l.case_id", "text"},
    [L_ORDER] = {"l.order_id", "text"},
    [L_LINE] = {"l.line_id", "text"},
    [L_SKU] = {"l.sku", "text"},
    [L_QTY] = {"l.quantity", "int"},
    [L_UNIT] = {"l.unit_minor", "bigint"},
    [L_CUR] = {"l.currency", "text"},
    [L_PAID] = {"l.paid_minor", "bigint"},
    [L_PURCHASED] = {"l.purchased", "int"},
    [L_LOT] = {"l.lot_id", "text"},
    [K_CASE] = {"k.case_id", "text"},
    [K_CLOCK] = {"k.clock", "text"},
    [K_DUE] = {"k.due_us", "bigint"},
    [K_MET] = {"k.met", "bool"},
    [E_CASE] = {"e.case_id", "text"},
    [E_EVENT] = {"e.event_id", "uuid"},
    [E_POS] = {"e.position", "int"},
    [E_URI] = {"e.uri", "text"},
    [E_MEDIA] = {"e.media_type", "text"},
    [E_SIZE] = {"e.size_bytes", "bigint"},
    [E_SHA] = {"e.sha256", "text"},
    [M_CASE] = {"m.case_id", "text"},
    [M_EVENT] = {"m.event_id", "uuid"},
    [M_BUYER] = {"m.buyer_id", "text"},
    [M_BODY] = {"m.body", "text"},
    [M_SENT] = {"m.sent_us", "bigint"},
    [R_BUYER] = {"r.buyer_id", "text"},
    [R_KEY] = {"r.idempotency_key", "text"},
    [R_REQUEST] = {"r.request_id", "text"},
    [R_CASE] = {"r.case_id", "text"},
    [R_ORDER] = {"r.order_id", "text"},
    [R_SUBMITTED] = {"r.submitted_at_us", "bigint"},
    [R_LOCALE] = {"r.locale", "text"},
    [R_OUTCOME] = {"r.preferred_outcome", "int"},
    [R_RETURN] = {"r.return_method", "int"},
    [R_COMPLAINT] = {"r.complaint_type", "int"},
    [R_UNUSED] = {"r.declared_unused", "bool"},
    [R_HASH] = {"r.content_hash", "text"},
};

/* Everything else of the opened cases, one statement: lines (with the
 * line's paid share), SLA clocks, evidence, the comment, intake's record of
 * the request and its answer (intake_idem). The case's own paid figures are
 * written with the case row itself (as_case_open_many). */
static const as_bulk_t sql_rows = AS_BULK(
    "WITH ins_lines AS (INSERT INTO cases.case_lines (case_id, order_id, line_id, sku, quantity,"
    " unit_minor, currency, paid_minor, purchased, lot_id) SELECT * FROM {{l}}),"
    " ins_clocks AS (INSERT INTO cases.sla_clocks (case_id, clock, due_at, met_at)"
    " SELECT k.case_id, k.clock, to_timestamp(k.due_us / 1e6), CASE WHEN k.met THEN now() END"
    " FROM {{k}}),"
    " ins_evidence AS (INSERT INTO cases.case_evidence (case_id, event_id, position, source, uri, "
    "media_type,"
    " size_bytes, sha256) SELECT e.case_id, e.event_id, e.position, 'request', e.uri, e.media_type,"
    " e.size_bytes, e.sha256 FROM {{e}} ON CONFLICT (event_id, position) DO NOTHING),"
    " ins_messages AS (INSERT INTO cases.case_messages (case_id, event_id, source, author_kind, "
    "author_id,"
    " body, sent_at) SELECT m.case_id, m.event_id, 'request', 'buyer', m.buyer_id, m.body,"
    " to_timestamp(m.sent_us / 1e6) FROM {{m}} ON CONFLICT (event_id, source) DO NOTHING),"
    " ins_answers AS (INSERT INTO answers (buyer_id, request_id, answer, case_id) SELECT "
    "r.buyer_id,"
    " r.request_id, 'acknowledged', r.case_id FROM {{r}} ON CONFLICT DO NOTHING)"
    " INSERT INTO requests (buyer_id, idempotency_key, request_id, case_id, order_id,"
    " submitted_at_us, locale, preferred_outcome, return_method, complaint_type, declared_unused,"
    " content_hash) SELECT * FROM {{r}} ON CONFLICT DO NOTHING",
    rows_cols);

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
  const char *reason =
      r->reason ? as_enum_name(&aftersales__v1__reason__descriptor, (int)r->reason) : "";
  return (as_case_opening_t){.c = {.case_id = q->case_id,
                                   .case_type = type,
                                   .order_id = r->order_id,
                                   .buyer_id = r->buyer_id,
                                   .merchant_id = q->merchant_id,
                                   .reason = reason,
                                   .route = q->route,
                                   .currency = q->currency[0] ? q->currency : NULL,
                                   .claimed_minor = q->claimed_minor,
                                   .state = q->state,
                                   .has_paid = q->paid,
                                   .paid_minor = q->paid_minor,
                                   .shipping_paid_minor = q->shipping_paid,
                                   .paid_currency = q->paid_currency},
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
  as_cols_str(c, K_CASE, case_id);
  as_cols_str(c, K_CLOCK, clock);
  as_cols_int(c, K_DUE, due);
  as_cols_bool(c, K_MET, met);
}

static void add_rows(as_cols_t *t, const intake_req_t *q, const intake_view_t *v) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  for (size_t i = 0; i < r->n_lines; i++) {
    int row = q->line_rows[i];
    as_cols_str(t, L_CASE, q->case_id);
    as_cols_str(t, L_ORDER, r->order_id);
    as_cols_str(t, L_LINE, r->lines[i]->line_id);
    as_cols_str(t, L_SKU, PQgetvalue(v->lines, row, INTAKE_L_SKU));
    as_cols_int(t, L_QTY, r->lines[i]->quantity);
    as_cols_str(t, L_UNIT, PQgetvalue(v->lines, row, INTAKE_L_UNIT));
    as_cols_str(t, L_CUR, PQgetvalue(v->lines, row, INTAKE_L_CUR));
    if (q->paid)
      as_cols_int(t, L_PAID, q->line_paid[i]);
    else
      as_cols_null(t, L_PAID);
    as_cols_str(t, L_PURCHASED, PQgetvalue(v->lines, row, INTAKE_L_QUANTITY));
    as_cols_str(t, L_LOT, PQgetvalue(v->lines, row, INTAKE_L_LOT));
  }
  add_clock(t, q->case_id, "first_response", q->first_due_us, true);
  if (q->review_due_us) add_clock(t, q->case_id, "review", q->review_due_us, false);
  if (q->resolution_due_us) add_clock(t, q->case_id, "resolution", q->resolution_due_us, false);
  if (!q->review_due_us && q->pickup_due_us)
    add_clock(t, q->case_id, "pickup", q->pickup_due_us, false);
  const char *eid = q->cause->env->event_id;
  for (size_t i = 0; i < r->n_evidence; i++) {
    const Aftersales__V1__Attachment *a = r->evidence[i];
    as_cols_str(t, E_CASE, q->case_id);
    as_cols_str(t, E_EVENT, eid);
    as_cols_int(t, E_POS, (long long)i);
    as_cols_str(t, E_URI, a->uri);
    as_cols_str(t, E_MEDIA, a->media_type);
    as_cols_int(t, E_SIZE, a->size_bytes);
    as_cols_str(t, E_SHA, a->sha256);
  }
  if (r->comment[0]) {
    as_cols_str(t, M_CASE, q->case_id);
    as_cols_str(t, M_EVENT, eid);
    as_cols_str(t, M_BUYER, r->buyer_id);
    as_cols_str(t, M_BODY, r->comment);
    as_cols_int(t, M_SENT, r->submitted_at_us);
  }
  as_cols_str(t, R_BUYER, r->buyer_id);
  as_cols_str(t, R_KEY, r->idempotency_key);
  as_cols_str(t, R_REQUEST, r->request_id);
  as_cols_str(t, R_CASE, q->case_id);
  as_cols_str(t, R_ORDER, r->order_id);
  as_cols_int(t, R_SUBMITTED, r->submitted_at_us);
  as_cols_str(t, R_LOCALE, r->locale);
  as_cols_int(t, R_OUTCOME, (int)r->preferred_outcome);
  as_cols_int(t, R_RETURN, (int)r->return_method);
  as_cols_int(t, R_COMPLAINT, (int)r->complaint_type);
  as_cols_bool(t, R_UNUSED, r->declared_unused);
  as_cols_str(t, R_HASH, q->hash);
}

static int write_rows(as_tx_t *tx, intake_req_t *reqs, size_t n, const intake_view_t *v) {
  as_cols_t t;
  as_cols_init(&t, &sql_rows);
  for (size_t i = 0; i < n; i++)
    if (reqs[i].fate == INTAKE_R_OPEN) add_rows(&t, &reqs[i], v);
  int rc = as_cols_run(&t, as_tx_db(tx), NULL);
  as_cols_free(&t);
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
                      const Aftersales__V1__LineRef *ref, PGresult *l, int row,
                      const int64_t *paid) {
  aftersales__v1__case_line__init(cl);
  cl->line_id = ref->line_id;
  cl->sku = PQgetvalue(l, row, INTAKE_L_SKU);
  cl->category = PQgetvalue(l, row, INTAKE_L_CATEGORY);
  cl->supplier_id = PQgetvalue(l, row, INTAKE_L_SUPPLIER);
  cl->quantity = ref->quantity;
  cl->unit_price = money_of(&money[0], l, row, INTAKE_L_UNIT, INTAKE_L_CUR);
  cl->purchased_quantity = atoi(PQgetvalue(l, row, INTAKE_L_QUANTITY));
  cl->lot_id = PQgetvalue(l, row, INTAKE_L_LOT);
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
    case_line(&ol[i].cl, ol[i].money, r->lines[i], v->lines, q->line_rows[i],
              q->paid ? &q->line_paid[i] : NULL);
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
  if (rc == 0) rc = write_rows(tx, reqs, n, view);
  if (rc == 0) rc = intake_clock_arm(x, tx, reqs, n);
  if (rc == 0) rc = intake_history_fill(x, tx, reqs, n);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (reqs[i].fate != INTAKE_R_OPEN) continue;
    rc = publish_opened(tx, &reqs[i], view);
    if (rc == 0) rc = publish_ack(x, tx, &reqs[i]);
  }
  return rc;
}
