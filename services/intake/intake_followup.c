/* intake_followup: evidence and messages a buyer adds to an existing case.
 *
 * They are checked like a request's (attachments, text), must name a case
 * of that buyer, are stored in the shared case tables (case_evidence,
 * case_messages; the case's state is review's business, so no transition)
 * and republished on the cases topic keyed by case id, so review sees them
 * in order with the case's other events. An unknown case cannot be answered
 * and is dead-lettered; another buyer's case is answered with a rejection. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "as_topics.h"
#include "as_uuid.h"
#include "intake.h"

static const char sql_case[] = "SELECT buyer_id, order_id FROM cases.cases WHERE case_id = $1";
static const char sql_evidence[] =
    "INSERT INTO cases.case_evidence (case_id, event_id, position, source, uri, media_type,"
    " size_bytes, sha256) SELECT u.c, u.e, u.p, u.src, u.u, u.m, u.s, u.h FROM unnest($1::text[],"
    " $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[])"
    " AS u(c, e, p, src, u, m, s, h) ON CONFLICT (event_id, position) DO NOTHING";
static const char sql_message[] =
    "INSERT INTO cases.case_messages (case_id, event_id, source, author_kind, author_id, body, sent_at)"
    " VALUES ($1, $2::uuid, $3, 'buyer', $4, $5, to_timestamp($6::bigint / 1e6))"
    " ON CONFLICT (event_id, source) DO NOTHING";

/* What the two payloads share. */
typedef struct followup {
  const char *source, *case_id, *buyer_id, *text;
  Aftersales__V1__Attachment **att;
  size_t natt;
  int64_t at_us;
} followup_t;

static bool view(const as_envelope_t *e, followup_t *f) {
  if (e->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_EVIDENCE_ADDED) {
    const Aftersales__V1__EvidenceAdded *p = e->evidence_added;
    *f = (followup_t){"evidence_added", p->case_id, p->buyer_id, p->comment, p->evidence,
                      p->n_evidence, p->added_at_us};
    return true;
  }
  if (e->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_MESSAGE) {
    const Aftersales__V1__BuyerMessage *p = e->buyer_message;
    *f = (followup_t){"buyer_message", p->case_id, p->buyer_id, p->text, p->attachments,
                      p->n_attachments, p->sent_at_us};
    return true;
  }
  return false;
}

static int store(intake_t *x, as_tx_t *tx, const as_msg_t *m, const followup_t *f) {
  as_cols_t c;
  as_cols_init(&c, 8);
  for (size_t i = 0; i < f->natt; i++) {
    const Aftersales__V1__Attachment *a = f->att[i];
    as_cols_str(&c, 0, f->case_id);
    as_cols_str(&c, 1, m->env->event_id);
    as_cols_int(&c, 2, (long long)i);
    const char *s[] = {f->source, a->uri, a->media_type};
    for (int k = 0; k < 3; k++) as_cols_str(&c, 3 + k, s[k]);
    as_cols_int(&c, 6, a->size_bytes);
    as_cols_str(&c, 7, a->sha256);
    as_cols_row(&c);
  }
  int rc = intake_cols_run(&c, x, tx, sql_evidence, NULL);
  as_cols_free(&c);
  if (rc == 0 && f->text[0]) {
    char at[24];
    snprintf(at, sizeof at, "%lld", (long long)(f->at_us > 0 ? f->at_us : as_now_us()));
    const char *vals[] = {f->case_id, m->env->event_id, f->source, f->buyer_id, f->text, at};
    rc = as_db_query(as_tx_db(tx), sql_message, 6, vals, NULL);
  }
  return rc;
}

static int republish(as_tx_t *tx, const as_msg_t *m, const char *case_id, const char *order_id) {
  char name[80], eid[AS_UUID_STRLEN + 1];
  int len = snprintf(name, sizeof name, "%s|republished", m->env->event_id);
  as_uuid_v5(eid, "aftersales.intake.event", name, (size_t)len);
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = eid;
  env.case_id = (char *)case_id;
  env.order_id = (char *)order_id;
  env.payload_case = m->env->payload_case;
  env.evidence_added = m->env->evidence_added;
  env.buyer_message = m->env->buyer_message;
  return as_tx_publish(tx, m, AS_TOPIC_NAME_CASES, case_id, &env);
}

static void check(const intake_t *x, const followup_t *f, intake_verdict_t *v) {
  memset(v, 0, sizeof *v);
  if (f->natt == 0 && !f->text[0]) {
    v->code = "missing_field";
    snprintf(v->field, sizeof v->field, "%s", f->source[0] == 'e' ? "evidence" : "text");
    return;
  }
  intake_validate_text(x, f->text, f->source[0] == 'e' ? "comment" : "text", v);
  if (!v->code) intake_validate_attachments(x, f->att, f->natt, v);
}

int intake_followup_apply(intake_t *x, as_tx_t *tx, as_msg_t *m) {
  followup_t f;
  if (!view(m->env, &f)) return 0;
  if (!as_envelope_id_ok(f.case_id) || !as_envelope_id_ok(f.buyer_id)) {
    as_tx_reject(m, "case_id or buyer_id missing or unsafe");
    return 0;
  }
  const char *vals[1] = {f.case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_case, 1, vals, &r);
  if (rc == 0 && PQntuples(r) == 0) {
    as_tx_reject(m, "unknown case");
  } else if (rc == 0) {
    const char *order_id = PQgetvalue(r, 0, 1);
    intake_verdict_t v;
    check(x, &f, &v);
    if (strcmp(PQgetvalue(r, 0, 0), f.buyer_id) != 0) {
      v.code = "not_buyers_case";
      snprintf(v.field, sizeof v.field, "case_id");
    }
    if (v.code)
      rc = intake_reject_publish(x, tx, m, m->env->event_id, order_id, f.buyer_id, "", v.code, v.field);
    else if ((rc = store(x, tx, m, &f)) == 0)
      rc = republish(tx, m, f.case_id, order_id);
  }
  PQclear(r);
  return rc;
}
