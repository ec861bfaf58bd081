/* as_tx: inbox claim, outbox queueing and the dead-letter rows of a batch
 * transaction. Every statement is bulk (unnest of array literals), so a batch
 * of 500 messages costs a handful of round trips, not thousands. */
#include "as_tx.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_uuid.h"

/* The outbox rows of a batch in decision order, and a wake-up for the
 * relay on the schema's channel (as_relay LISTENs on the same name). */
enum { OUT_EVENT, OUT_TOPIC, OUT_KEY, OUT_PAYLOAD };
static const as_col_t out_cols[] = {
    [OUT_EVENT] = {"event_id", "uuid"},
    [OUT_TOPIC] = {"topic", "text"},
    [OUT_KEY] = {"msg_key", "text"},
    [OUT_PAYLOAD] = {"payload", "bytea"}, /* binary: no hex round trip */
};
static const as_bulk_t sql_outbox = AS_BULK(
    "WITH ins AS (INSERT INTO outbox (event_id, topic, msg_key, payload)"
    " SELECT u.event_id, u.topic, u.msg_key, u.payload FROM {{u:o}} ORDER BY u.o"
    " RETURNING 1) SELECT pg_notify('as_outbox_' || current_schema(), count(*)::text) FROM ins",
    out_cols);

enum { IN_EVENT, IN_TOPIC, IN_PARTITION, IN_OFFSET };
static const as_col_t in_cols[] = {
    [IN_EVENT] = {"event_id", "uuid"},
    [IN_TOPIC] = {"topic", "text"},
    [IN_PARTITION] = {"kpartition", "int"},
    [IN_OFFSET] = {"koffset", "bigint"},
};
static const as_bulk_t sql_inbox = AS_BULK(
    "INSERT INTO inbox (event_id, topic, kpartition, koffset) SELECT * FROM {{u}}"
    " ON CONFLICT DO NOTHING RETURNING event_id::text",
    in_cols);

void as_tx_init(as_tx_t *tx, as_db_t *db, const as_tx_conf_t *conf) {
  memset(tx, 0, sizeof *tx);
  tx->db = db;
  tx->conf = conf;
  as_cols_init(&tx->out, &sql_outbox);
}

void as_tx_reset(as_tx_t *tx) {
  as_cols_reset(&tx->out);
  tx->rows = 0;
}

void as_tx_free(as_tx_t *tx) {
  as_cols_free(&tx->out);
}

static int queue_row(as_tx_t *tx, const char *event_id, const char *topic, const char *key,
                     const uint8_t *bytes, size_t len) {
  as_cols_str(&tx->out, OUT_EVENT, event_id);
  as_cols_str(&tx->out, OUT_TOPIC, topic);
  as_cols_str(&tx->out, OUT_KEY, key);
  as_cols_bytes(&tx->out, OUT_PAYLOAD, bytes, len);
  tx->rows++;
  for (int i = 0; i < tx->out.n; i++)
    if (!as_buf_ok(&tx->out.b[i])) return -ENOMEM;
  return 0;
}

int as_tx_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic, const char *key,
                  as_envelope_t *env) {
  as_envelope_stamp_t stamp;
  int rc = as_envelope_stamp(env, &stamp, tx->conf->service, tx->conf->instance,
                             cause ? cause->env : NULL, as_now_us());
  if (rc < 0) return rc;
  size_t len = aftersales__v1__envelope__get_packed_size(env);
  uint8_t *bytes = malloc(len ? len : 1);
  if (!bytes) return -ENOMEM;
  aftersales__v1__envelope__pack(env, bytes);
  rc = queue_row(tx, env->event_id, topic, key, bytes, len);
  free(bytes);
  /* The stamp's storage dies here: leave no dangling pointers in env. */
  env->event_id = (char *)protobuf_c_empty_string;
  env->trace_id = (char *)protobuf_c_empty_string;
  env->causation_id = (char *)protobuf_c_empty_string;
  env->producer = NULL;
  return rc;
}

void as_tx_mark_dead(as_msg_t *m, const char *reason, const char *detail) {
  m->state = AS_MSG_DEAD;
  m->dead_reason = reason;
  snprintf(m->dead_detail, sizeof m->dead_detail, "%s", detail ? detail : "");
}

void as_tx_reject(as_msg_t *m, const char *detail) {
  as_tx_mark_dead(m, AS_DLQ_CONTRACT, detail);
}

/* The dead letter's id is derived from where the message sat, so a
 * redelivered bad message yields the same id and is deduplicated downstream. */
static int queue_dead_letter(as_tx_t *tx, const as_msg_t *m) {
  const rd_kafka_message_t *k = m->rkm;
  const char *topic = rd_kafka_topic_name(k->rkt);
  char name[320], id[37];
  int nlen = snprintf(name, sizeof name, "%s|%s|%d|%lld", tx->conf->group_id, topic,
                      (int)k->partition, (long long)k->offset);
  as_uuid_v5(id, "aftersales.deadletter", name, (size_t)nlen);
  size_t keep = k->len < tx->conf->dlq_max_bytes ? k->len : tx->conf->dlq_max_bytes;

  Aftersales__V1__DeadLetter dl = AFTERSALES__V1__DEAD_LETTER__INIT;
  dl.reason_code = (char *)m->dead_reason;
  dl.detail = (char *)m->dead_detail;
  dl.source_topic = (char *)topic;
  dl.source_partition = k->partition;
  dl.source_offset = k->offset;
  dl.source_key = (ProtobufCBinaryData){.len = k->key_len, .data = k->key};
  dl.original = (ProtobufCBinaryData){.len = keep, .data = k->payload};
  dl.original_size = (int64_t)k->len;
  dl.consumer_group = (char *)tx->conf->group_id;
  dl.failed_at_us = as_now_us();
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER;
  env.dead_letter = &dl;
  if (m->env) {
    dl.original_event_id = m->env->event_id;
    dl.original_event_type = m->env->event_type;
    env.case_id = m->env->case_id;
    env.order_id = m->env->order_id;
  }
  as_msg_t cause = {.env = m->env};
  return as_tx_publish(tx, m->env ? &cause : NULL, tx->conf->dlq_topic, topic, &env);
}

int as_tx_flush(as_tx_t *tx, as_msg_t *msgs, size_t n) {
  tx->dead = 0;
  for (size_t i = 0; i < n; i++) {
    if (msgs[i].state != AS_MSG_DEAD) continue;
    int rc = queue_dead_letter(tx, &msgs[i]);
    if (rc < 0) return rc == -ENOMEM ? -ENOMEM : -EIO;
    tx->dead++;
  }
  if (tx->rows == 0) return 0;
  int rc = as_cols_run(&tx->out, tx->db, NULL);
  as_tx_reset(tx);
  return rc;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Marks every message whose id the inbox did not return as a duplicate; of
 * two copies in one batch, the first wins. A dead message already in the
 * inbox was dead-lettered before and is not dead-lettered again. */
static int mark_duplicates(as_msg_t *msgs, size_t n, PGresult *r) {
  size_t fresh = (size_t)PQntuples(r);
  char **ids = malloc(sizeof *ids * (fresh ? fresh : 1));
  bool *used = calloc(fresh ? fresh : 1, sizeof *used);
  if (!ids || !used) {
    free(ids);
    free(used);
    return -ENOMEM;
  }
  for (size_t i = 0; i < fresh; i++) ids[i] = PQgetvalue(r, (int)i, 0);
  qsort(ids, fresh, sizeof *ids, cmp_str);
  for (size_t i = 0; i < n; i++) {
    if (!msgs[i].env || msgs[i].state == AS_MSG_IGNORED) continue;
    char *key = msgs[i].env->event_id;
    char **hit = bsearch(&key, ids, fresh, sizeof *ids, cmp_str);
    size_t at = hit ? (size_t)(hit - ids) : 0;
    if (hit && !used[at])
      used[at] = true;
    else
      msgs[i].state = AS_MSG_DUPLICATE;
  }
  free(ids);
  free(used);
  return 0;
}

int as_tx_inbox_claim(as_tx_t *tx, as_msg_t *msgs, size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_inbox);
  for (size_t i = 0; i < n; i++) {
    if (!msgs[i].env || msgs[i].state == AS_MSG_IGNORED) continue;
    as_cols_str(&c, IN_EVENT, msgs[i].env->event_id);
    as_cols_str(&c, IN_TOPIC, rd_kafka_topic_name(msgs[i].rkm->rkt));
    as_cols_int(&c, IN_PARTITION, msgs[i].rkm->partition);
    as_cols_int(&c, IN_OFFSET, msgs[i].rkm->offset);
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, tx->db, &r);
  if (rc == 0 && r) rc = mark_duplicates(msgs, n, r);
  PQclear(r);
  as_cols_free(&c);
  return rc;
}
