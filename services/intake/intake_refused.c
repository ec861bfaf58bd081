/* intake_refused: an answer for the requests the runtime refused before
 * intake's routes saw them (a NUL or invalid UTF-8 in any string, the
 * envelope's contract, too large, an event id reused with other bytes, a
 * handler failure). Every AfterSalesRequested is owed exactly one answer
 * naming its request id: without this one the buyer's storefront would
 * wait for an answer that never comes.
 *
 * The answer is a RequestRejected whose reason code is the dead letter's
 * (string_nul, invalid_utf8, ...) and whose messages name the field the
 * runtime found at fault (a field path of ours, never the buyer's text).
 * It is given only when the fields that say whom and what it answers
 * (request id, buyer id, and the order id and idempotency key it echoes)
 * are themselves clean on the wire, every occurrence of them: protobuf-c
 * reads "r-1\0x" as "r-1", and an answer under a cut id would claim
 * another request's one answer. One answer per request id holds through
 * intake.answers, as for every other answer. */
#include <string.h>

#include "as_topics.h"
#include "as_wire.h"
#include "intake.h"

enum { ENVELOPE_AFTERSALES_REQUESTED = 110 };                              /* envelope.proto */
enum { REQ_ID = 1, REQ_IDEM_KEY = 2, REQ_ORDER_ID = 3, REQ_BUYER_ID = 4 }; /* requests.proto */

static bool clean(const rd_kafka_message_t *k, uint32_t field) {
  return as_wire_field_clean(k->payload, k->len, ENVELOPE_AFTERSALES_REQUESTED, field);
}

/* The field path of the detail ("aftersales_requested.comment: NUL byte
 * at offset 4" -> "comment"), or "" when the fault is not one field. */
static void field_of(const as_msg_t *m, char *out, size_t len) {
  static const char prefix[] = "aftersales_requested.";
  const char *d = m->dead_detail, *colon = strchr(d, ':');
  out[0] = '\0';
  if (strncmp(d, prefix, sizeof prefix - 1) != 0 || !colon) return;
  d += sizeof prefix - 1;
  size_t n = (size_t)(colon - d) < len - 1 ? (size_t)(colon - d) : len - 1;
  memcpy(out, d, n);
  out[n] = '\0';
}

static const char sql_answer[] =
    "INSERT INTO answers (buyer_id, request_id, answer) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

int intake_on_refused(void *state, as_tx_t *tx, const as_msg_t *m) {
  intake_t *x = state;
  const rd_kafka_message_t *k = m->rkm;
  if (strcmp(rd_kafka_topic_name(k->rkt), AS_TOPIC_NAME_REQUESTS) != 0) return 0;
  as_envelope_t *env = aftersales__v1__envelope__unpack(NULL, k->len, k->payload);
  if (!env) return 0; /* not even protobuf: there is no request id to answer */
  const Aftersales__V1__AfterSalesRequested *r =
      env->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_AFTERSALES_REQUESTED
          ? env->aftersales_requested
          : NULL;
  int rc = 0;
  if (r && as_envelope_id_ok(r->request_id) && as_envelope_id_ok(r->buyer_id) && clean(k, REQ_ID) &&
      clean(k, REQ_BUYER_ID) && clean(k, REQ_ORDER_ID) && clean(k, REQ_IDEM_KEY)) {
    const char *vals[3] = {r->buyer_id, r->request_id, m->dead_reason};
    PGresult *res = NULL;
    rc = as_db_query(as_tx_db(tx), sql_answer, 3, vals, &res);
    bool first = rc == 0 && strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    char field[48];
    field_of(m, field, sizeof field);
    if (first)
      rc = intake_reject_publish(x, tx, m, r->request_id, r->order_id, r->buyer_id,
                                 r->idempotency_key, m->dead_reason, field);
    else if (rc == 0)
      as_counter_add(x->repeated, 1); /* this request id has had its answer */
  }
  aftersales__v1__envelope__free_unpacked(env, NULL);
  return rc;
}
