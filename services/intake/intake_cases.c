/* intake_cases: opening the cases a batch accepted, and the first response.
 *
 * A batch's cases are inserted by one statement that writes exactly what
 * as_case_open writes for one case (the case at version 1 and its first
 * timeline entry), numbered AS-YYYYMMDD-NNNNNNN from the shared sequence:
 * 500 single-row calls would cost 500 round trips and miss the throughput
 * target. The case id is derived from (buyer, idempotency key), so a second
 * instance racing on the same key waits on the primary key and its
 * ON CONFLICT DO NOTHING drops the row: that request is silently skipped
 * and only the winner publishes CaseOpened. Everything else of the cases
 * (lines, SLA clocks, evidence, comment, the request record) is a second
 * statement. BuyerAcknowledged is the buyer's first response: its SLA clock
 * is met at once and the submission-to-acknowledgement time observed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_topics.h"
#include "as_uuid.h"
#include "intake.h"

/* as_case_open's statement, for a whole batch: the same rows (the case at
 * version 1, its first timeline entry), numbered from the shared sequence,
 * in case id order so two instances lock conflicting keys in one order.
 * Returns the cases actually inserted; a key another instance committed
 * first is absent. */
static const char sql_open[] =
    "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::uuid[])"
    " AS u(id, ty, st, o, b, m, r, ro, cur, cl, e) ORDER BY u.id COLLATE \"C\"),"
    " s AS (SELECT u.*, nextval('cases.case_number_seq') AS n FROM u),"
    " c AS (INSERT INTO cases.cases (case_id, case_number, case_type, state, order_id, buyer_id,"
    " merchant_id, reason, route, currency, claimed_minor)"
    " SELECT s.id, 'AS-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-' ||"
    " lpad(s.n::text, greatest(7, length(s.n::text)), '0'), s.ty, s.st, s.o, s.b, s.m, s.r, s.ro,"
    " s.cur, s.cl FROM s ORDER BY s.id COLLATE \"C\""
    " ON CONFLICT (case_id) DO NOTHING RETURNING case_id, case_number, state),"
    " t AS (INSERT INTO cases.timeline (case_id, version, from_state, to_state, actor_kind,"
    " actor_id, reason, event_id) SELECT c.case_id, 1, NULL, c.state, 'buyer', u.b,"
    " 'request submitted', u.e FROM c JOIN u ON u.id = c.case_id)"
    " SELECT case_id, case_number FROM c";
/* Everything else of the opened cases, one statement: lines, SLA clocks,
 * evidence, the comment, and intake's record of the request. */
static const char sql_rows[] =
    "WITH l AS (INSERT INTO cases.case_lines (case_id, order_id, line_id, sku, quantity,"
    " unit_minor, currency) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::int[], $6::bigint[], $7::text[])),"
    " k AS (INSERT INTO cases.sla_clocks (case_id, clock, due_at, met_at)"
    " SELECT u.c, u.k, to_timestamp(u.d / 1e6), CASE WHEN u.m THEN now() END"
    " FROM unnest($8::text[], $9::text[], $10::bigint[], $11::bool[]) AS u(c, k, d, m)),"
    " e AS (INSERT INTO cases.case_evidence (case_id, event_id, position, source, uri, media_type,"
    " size_bytes, sha256) SELECT u.c, u.e, u.p, 'request', u.u, u.m, u.s, u.h FROM unnest($12::text[],"
    " $13::uuid[], $14::int[], $15::text[], $16::text[], $17::bigint[], $18::text[])"
    " AS u(c, e, p, u, m, s, h) ON CONFLICT (event_id, position) DO NOTHING),"
    " m AS (INSERT INTO cases.case_messages (case_id, event_id, source, author_kind, author_id,"
    " body, sent_at) SELECT u.c, u.e, 'request', 'buyer', u.b, u.t, to_timestamp(u.s / 1e6)"
    " FROM unnest($19::text[], $20::uuid[], $21::text[], $22::text[], $23::bigint[])"
    " AS u(c, e, b, t, s) ON CONFLICT (event_id, source) DO NOTHING)"
    " INSERT INTO %1$s.requests (buyer_id, idempotency_key, request_id, case_id, order_id,"
    " submitted_at_us, locale, preferred_outcome, return_method, complaint_type, declared_unused)"
    " SELECT * FROM unnest($24::text[], $25::text[], $26::text[], $27::text[], $28::text[],"
    " $29::bigint[], $30::text[], $31::int[], $32::int[], $33::int[], $34::bool[])"
    " ON CONFLICT DO NOTHING";

static const char *case_type_name(int t) {
  static const char *const n[] = {"", "RETURN_REFUND", "REFUND_ONLY", "EXCHANGE",
                                  "QUALITY_CLAIM", "LOGISTICS", "COMPLAINT"};
  return (t >= 1 && t <= 6) ? n[t] : "";
}

static const char *reason_name(int r) {
  static const char *const n[] = {"", "SIZE_MISMATCH", "COLOUR_DIFFERS", "QUALITY_DEFECT",
                                  "DAMAGED_IN_TRANSIT", "NOT_AS_DESCRIBED", "MISSING_PARTS",
                                  "CHANGED_MIND", "NOT_RECEIVED", "DELIVERED_NOT_RECEIVED",
                                  "TRACKING_STALLED", "OTHER"};
  return (r >= 1 && r <= 11) ? n[r] : "";
}

static size_t count_open(const intake_req_t *reqs, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += reqs[i].fate == INTAKE_R_OPEN;
  return k;
}

static int by_case_id(const void *a, const void *b) {
  return strcmp((*(intake_req_t *const *)a)->case_id, (*(intake_req_t *const *)b)->case_id);
}

/* Marks the requests whose case was inserted (numbering them) and drops
 * the others: another instance opened those first. */
static int apply_opened(intake_t *x, intake_req_t *reqs, size_t n, PGresult *r) {
  size_t k = count_open(reqs, n);
  intake_req_t **v = malloc((k ? k : 1) * sizeof *v);
  if (!v) return -ENOMEM;
  k = 0;
  for (size_t i = 0; i < n; i++)
    if (reqs[i].fate == INTAKE_R_OPEN) {
      v[k++] = &reqs[i];
      reqs[i].fate = INTAKE_R_SKIP;
    }
  qsort(v, k, sizeof *v, by_case_id);
  for (int row = 0; row < PQntuples(r); row++) {
    intake_req_t key = {0}, *kp = &key;
    snprintf(key.case_id, sizeof key.case_id, "%s", PQgetvalue(r, row, 0));
    intake_req_t **hit = bsearch(&kp, v, k, sizeof *v, by_case_id);
    if (!hit) continue;
    (*hit)->fate = INTAKE_R_OPEN;
    snprintf((*hit)->case_number, sizeof (*hit)->case_number, "%s", PQgetvalue(r, row, 1));
  }
  as_counter_add(x->duplicates, k - (size_t)PQntuples(r));
  free(v);
  return 0;
}

static int open_all(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  intake_cols_t c;
  intake_cols_init(&c, 11);
  for (size_t i = 0; i < n; i++) {
    const intake_req_t *q = &reqs[i];
    if (q->fate != INTAKE_R_OPEN) continue;
    const Aftersales__V1__AfterSalesRequested *r = q->r;
    const char *s[] = {q->case_id, case_type_name((int)r->case_type), as_case_state_name(q->state),
                       r->order_id, r->buyer_id, q->merchant_id, reason_name((int)r->reason), q->route};
    for (int k = 0; k < 8; k++) intake_cols_str(&c, k, s[k]);
    if (q->currency[0]) intake_cols_str(&c, 8, q->currency);
    else intake_cols_null(&c, 8);
    intake_cols_int(&c, 9, q->claimed_minor);
    intake_cols_str(&c, 10, q->cause->env->event_id);
    intake_cols_row(&c);
  }
  PGresult *r = NULL;
  int rc = intake_cols_run(&c, x, tx, sql_open, &r);
  if (rc == 0 && r) rc = apply_opened(x, reqs, n, r);
  PQclear(r);
  intake_cols_free(&c);
  return rc;
}

static void add_clock(intake_cols_t *c, const char *case_id, const char *clock, int64_t due, bool met) {
  intake_cols_str(c, 0, case_id);
  intake_cols_str(c, 1, clock);
  intake_cols_int(c, 2, due);
  intake_cols_str(c, 3, met ? "t" : "f");
  intake_cols_row(c);
}

enum { T_LINES, T_CLOCKS, T_EVIDENCE, T_COMMENTS, T_REQUESTS, T_COUNT };

static void add_rows(intake_cols_t *t, const intake_req_t *q, const intake_lines_view_t *lv) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  for (size_t i = 0; i < r->n_lines; i++) {
    int row = q->line_rows[i];
    const char *s[] = {q->case_id, r->order_id, r->lines[i]->line_id, PQgetvalue(lv->r, row, 2)};
    for (int k = 0; k < 4; k++) intake_cols_str(&t[T_LINES], k, s[k]);
    intake_cols_int(&t[T_LINES], 4, r->lines[i]->quantity);
    intake_cols_str(&t[T_LINES], 5, PQgetvalue(lv->r, row, 3));
    intake_cols_str(&t[T_LINES], 6, PQgetvalue(lv->r, row, 4));
    intake_cols_row(&t[T_LINES]);
  }
  add_clock(&t[T_CLOCKS], q->case_id, "first_response", q->first_due_us, true);
  if (q->review_due_us) add_clock(&t[T_CLOCKS], q->case_id, "review", q->review_due_us, false);
  if (q->resolution_due_us) add_clock(&t[T_CLOCKS], q->case_id, "resolution", q->resolution_due_us, false);
  const char *eid = q->cause->env->event_id;
  for (size_t i = 0; i < r->n_evidence; i++) {
    const Aftersales__V1__Attachment *a = r->evidence[i];
    intake_cols_str(&t[T_EVIDENCE], 0, q->case_id);
    intake_cols_str(&t[T_EVIDENCE], 1, eid);
    intake_cols_int(&t[T_EVIDENCE], 2, (long long)i);
    intake_cols_str(&t[T_EVIDENCE], 3, a->uri);
    intake_cols_str(&t[T_EVIDENCE], 4, a->media_type);
    intake_cols_int(&t[T_EVIDENCE], 5, a->size_bytes);
    intake_cols_str(&t[T_EVIDENCE], 6, a->sha256);
    intake_cols_row(&t[T_EVIDENCE]);
  }
  if (r->comment[0]) {
    const char *s[] = {q->case_id, eid, r->buyer_id, r->comment};
    for (int k = 0; k < 4; k++) intake_cols_str(&t[T_COMMENTS], k, s[k]);
    intake_cols_int(&t[T_COMMENTS], 4, r->submitted_at_us);
    intake_cols_row(&t[T_COMMENTS]);
  }
  const char *s[] = {r->buyer_id, r->idempotency_key, r->request_id, q->case_id, r->order_id};
  for (int k = 0; k < 5; k++) intake_cols_str(&t[T_REQUESTS], k, s[k]);
  intake_cols_int(&t[T_REQUESTS], 5, r->submitted_at_us);
  intake_cols_str(&t[T_REQUESTS], 6, r->locale);
  intake_cols_int(&t[T_REQUESTS], 7, (int)r->preferred_outcome);
  intake_cols_int(&t[T_REQUESTS], 8, (int)r->return_method);
  intake_cols_int(&t[T_REQUESTS], 9, (int)r->complaint_type);
  intake_cols_str(&t[T_REQUESTS], 10, r->declared_unused ? "t" : "f");
  intake_cols_row(&t[T_REQUESTS]);
}

static int write_rows(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n,
                      const intake_lines_view_t *lv) {
  static const int ncols[T_COUNT] = {7, 4, 7, 5, 11};
  intake_cols_t t[T_COUNT];
  for (int k = 0; k < T_COUNT; k++) intake_cols_init(&t[k], ncols[k]);
  for (size_t i = 0; i < n; i++)
    if (reqs[i].fate == INTAKE_R_OPEN) add_rows(t, &reqs[i], lv);
  const char *vals[34];
  int rc = 0;
  for (int k = 0, at = 0; rc == 0 && k < T_COUNT; at += ncols[k++]) rc = intake_cols_params(&t[k], vals + at);
  char sql[4096];
  if (rc == 0 && t[T_REQUESTS].rows > 0)
    rc = as_db_query(as_tx_db(tx), intake_sql(x, sql, sizeof sql, sql_rows), 34, vals, NULL);
  for (int k = 0; k < T_COUNT; k++) intake_cols_free(&t[k]);
  return rc;
}

/* Event ids derived from the case: a replay of the same decision (another
 * instance, a redelivery) carries the same id and is deduplicated downstream. */
static void event_id(char out[AS_UUID_STRLEN + 1], const char *case_id, const char *what) {
  char name[96];
  int len = snprintf(name, sizeof name, "%s|%s", case_id, what);
  as_uuid_v8(out, "aftersales.intake.event", name, (size_t)len);
}

static int publish_opened(as_tx_t *tx, const intake_req_t *q, const intake_lines_view_t *lv) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  Aftersales__V1__LineRef lines[r->n_lines ? r->n_lines : 1];
  Aftersales__V1__LineRef *lp[r->n_lines ? r->n_lines : 1];
  for (size_t i = 0; i < r->n_lines; i++) {
    aftersales__v1__line_ref__init(&lines[i]);
    lines[i].line_id = r->lines[i]->line_id;
    lines[i].sku = PQgetvalue(lv->r, q->line_rows[i], 2);
    lines[i].quantity = r->lines[i]->quantity;
    lp[i] = &lines[i];
  }
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
  char eid[AS_UUID_STRLEN + 1];
  event_id(eid, q->case_id, "CaseOpened");
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = eid;
  env.case_id = (char *)q->case_id;
  env.order_id = r->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED;
  env.case_opened = &o;
  return as_tx_publish(tx, q->cause, AS_TOPIC_NAME_CASES, q->case_id, &env);
}

static int publish_ack(intake_t *x, as_tx_t *tx, const intake_req_t *q) {
  const Aftersales__V1__AfterSalesRequested *r = q->r;
  Aftersales__V1__BuyerAcknowledged a = AFTERSALES__V1__BUYER_ACKNOWLEDGED__INIT;
  a.case_id = (char *)q->case_id;
  a.case_number = (char *)q->case_number;
  a.buyer_id = r->buyer_id;
  a.submitted_at_us = r->submitted_at_us;
  a.locale = r->locale;
  char eid[AS_UUID_STRLEN + 1];
  event_id(eid, q->case_id, "BuyerAcknowledged");
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = eid;
  env.case_id = (char *)q->case_id;
  env.order_id = r->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_ACKNOWLEDGED;
  env.buyer_acknowledged = &a;
  int rc = as_tx_publish(tx, q->cause, AS_TOPIC_NAME_CASES, q->case_id, &env);
  int64_t now = as_now_us();
  as_histogram_observe(x->ack_submitted, (double)(now - r->submitted_at_us) / 1e6);
  as_histogram_observe(x->ack_occurred, (double)(now - q->cause->env->occurred_at_us) / 1e6);
  as_counter_add(x->opened, 1);
  return rc;
}

int intake_cases_open(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n,
                      const intake_lines_view_t *lines) {
  if (count_open(reqs, n) == 0) return 0;
  int rc = open_all(x, tx, reqs, n);
  if (rc == 0) rc = write_rows(x, tx, reqs, n, lines);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (reqs[i].fate != INTAKE_R_OPEN) continue;
    rc = publish_opened(tx, &reqs[i], lines);
    if (rc == 0) rc = publish_ack(x, tx, &reqs[i]);
  }
  return rc;
}
