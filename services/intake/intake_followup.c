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
enum { EV_CASE, EV_EVENT, EV_POS, EV_SOURCE, EV_URI, EV_MEDIA, EV_SIZE, EV_SHA };
static const as_col_t evidence_cols[] = {
    [EV_CASE] = {"case_id", "text"},      [EV_EVENT] = {"event_id", "uuid"},
    [EV_POS] = {"position", "int"},       [EV_SOURCE] = {"source", "text"},
    [EV_URI] = {"uri", "text"},           [EV_MEDIA] = {"media_type", "text"},
    [EV_SIZE] = {"size_bytes", "bigint"}, [EV_SHA] = {"sha256", "text"},
};
static const as_bulk_t sql_evidence = AS_BULK(
    "INSERT INTO cases.case_evidence (case_id, event_id, position, source, uri, media_type,"
    " size_bytes, sha256) SELECT * FROM {{u}} ON CONFLICT (event_id, position) DO NOTHING",
    evidence_cols);
static const char sql_message[] =
    "INSERT INTO cases.case_messages (case_id, event_id, source, author_kind, author_id, body, "
    "sent_at)"
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
    *f = (followup_t){"evidence_added", p->case_id,    p->buyer_id,   p->comment,
                      p->evidence,      p->n_evidence, p->added_at_us};
    return true;
  }
  if (e->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_MESSAGE) {
    const Aftersales__V1__BuyerMessage *p = e->buyer_message;
    *f = (followup_t){"buyer_message", p->case_id,       p->buyer_id,  p->text,
                      p->attachments,  p->n_attachments, p->sent_at_us};
    return true;
  }
  return false;
}

static int store(as_tx_t *tx, const as_msg_t *m, const followup_t *f) {
  as_cols_t c;
  as_cols_init(&c, &sql_evidence);
  for (size_t i = 0; i < f->natt; i++) {
    const Aftersales__V1__Attachment *a = f->att[i];
    as_cols_str(&c, EV_CASE, f->case_id);
    as_cols_str(&c, EV_EVENT, m->env->event_id);
    as_cols_int(&c, EV_POS, (long long)i);
    as_cols_str(&c, EV_SOURCE, f->source);
    as_cols_str(&c, EV_URI, a->uri);
    as_cols_str(&c, EV_MEDIA, a->media_type);
    as_cols_int(&c, EV_SIZE, a->size_bytes);
    as_cols_str(&c, EV_SHA, a->sha256);
  }
  int rc = as_cols_run(&c, as_tx_db(tx), NULL);
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

int intake_followup_apply(void *state, as_tx_t *tx, as_msg_t *m) {
  intake_t *x = state;
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
      rc = intake_reject_publish(x, tx, m, m->env->event_id, order_id, f.buyer_id, "", v.code,
                                 v.field);
    else if ((rc = store(tx, m, &f)) == 0)
      rc = republish(tx, m, f.case_id, order_id);
  }
  PQclear(r);
  return rc;
}
