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

void as_tx_init(as_tx_t *tx, as_db_t *db, const as_tx_conf_t *conf) {
  memset(tx, 0, sizeof *tx);
  tx->db = db;
  tx->conf = conf;
  as_buf_init(&tx->ids);
  as_buf_init(&tx->topics);
  as_buf_init(&tx->keys);
  as_buf_init(&tx->payloads);
  snprintf(tx->sql_insert, sizeof tx->sql_insert,
           "WITH ins AS (INSERT INTO %s.outbox (event_id, topic, msg_key, payload)"
           " SELECT u.e, u.t, u.k, u.p FROM unnest($1::uuid[], $2::text[],"
           " $3::text[], $4::bytea[]) WITH ORDINALITY AS u(e, t, k, p, o) ORDER BY u.o"
           " RETURNING 1) SELECT pg_notify('as_outbox_%s', count(*)::text) FROM ins",
           conf->schema, conf->schema);
  snprintf(tx->sql_inbox, sizeof tx->sql_inbox,
           "INSERT INTO %s.inbox (event_id, topic, kpartition, koffset)"
           " SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[])"
           " ON CONFLICT DO NOTHING RETURNING event_id::text",
           conf->schema);
}

void as_tx_reset(as_tx_t *tx) {
  as_buf_reset(&tx->ids);
  as_buf_reset(&tx->topics);
  as_buf_reset(&tx->keys);
  as_buf_reset(&tx->payloads);
  tx->rows = 0;
}

void as_tx_free(as_tx_t *tx) {
  as_buf_free(&tx->ids);
  as_buf_free(&tx->topics);
  as_buf_free(&tx->keys);
  as_buf_free(&tx->payloads);
}

static int queue_row(as_tx_t *tx, const char *event_id, const char *topic, const char *key,
                     const uint8_t *bytes, size_t len) {
  if (tx->rows == 0) {
    as_buf_arr_open(&tx->ids);
    as_buf_arr_open(&tx->topics);
    as_buf_arr_open(&tx->keys);
    as_buf_bin_open(&tx->payloads);
  }
  as_buf_arr_raw(&tx->ids, event_id, strlen(event_id));
  as_buf_arr_str(&tx->topics, topic);
  as_buf_arr_str(&tx->keys, key);
  as_buf_bin_bytes(&tx->payloads, bytes, len);
  tx->rows++;
  bool ok = as_buf_ok(&tx->ids) && as_buf_ok(&tx->topics) && as_buf_ok(&tx->keys) &&
            as_buf_ok(&tx->payloads);
  return ok ? 0 : -ENOMEM;
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

void as_tx_reject(as_msg_t *m, const char *detail) { as_tx_mark_dead(m, AS_DLQ_CONTRACT, detail); }

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
  as_buf_arr_close(&tx->ids);
  as_buf_arr_close(&tx->topics);
  as_buf_arr_close(&tx->keys);
  as_buf_bin_close(&tx->payloads);
  if (!as_buf_ok(&tx->ids) || !as_buf_ok(&tx->topics) || !as_buf_ok(&tx->keys) ||
      !as_buf_ok(&tx->payloads) || tx->payloads.len > INT32_MAX)
    return -ENOMEM;
  const char *vals[4] = {as_buf_str(&tx->ids), as_buf_str(&tx->topics), as_buf_str(&tx->keys),
                         tx->payloads.data};
  const int lens[4] = {0, 0, 0, (int)tx->payloads.len}, fmts[4] = {0, 0, 0, 1};
  int rc = as_db_query_ex(tx->db, tx->sql_insert, 4, vals, lens, fmts, 0, NULL);
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
    if (!msgs[i].env) continue;
    char *key = msgs[i].env->event_id;
    char **hit = bsearch(&key, ids, fresh, sizeof *ids, cmp_str);
    size_t at = hit ? (size_t)(hit - ids) : 0;
    if (hit && !used[at]) used[at] = true;
    else msgs[i].state = AS_MSG_DUPLICATE;
  }
  free(ids);
  free(used);
  return 0;
}

int as_tx_inbox_claim(as_tx_t *tx, as_msg_t *msgs, size_t n) {
  as_buf_t ids, topics, parts, offs;
  as_buf_init(&ids);
  as_buf_init(&topics);
  as_buf_init(&parts);
  as_buf_init(&offs);
  as_buf_arr_open(&ids);
  as_buf_arr_open(&topics);
  as_buf_arr_open(&parts);
  as_buf_arr_open(&offs);
  size_t with_id = 0;
  for (size_t i = 0; i < n; i++) {
    if (!msgs[i].env) continue;
    char num[24];
    as_buf_arr_raw(&ids, msgs[i].env->event_id, strlen(msgs[i].env->event_id));
    as_buf_arr_str(&topics, rd_kafka_topic_name(msgs[i].rkm->rkt));
    as_buf_arr_raw(&parts, num, (size_t)snprintf(num, sizeof num, "%d", (int)msgs[i].rkm->partition));
    as_buf_arr_raw(&offs, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)msgs[i].rkm->offset));
    with_id++;
  }
  as_buf_arr_close(&ids);
  as_buf_arr_close(&topics);
  as_buf_arr_close(&parts);
  as_buf_arr_close(&offs);
  int rc = 0;
  PGresult *r = NULL;
  if (!as_buf_ok(&ids) || !as_buf_ok(&topics) || !as_buf_ok(&parts) || !as_buf_ok(&offs)) {
    rc = -ENOMEM;
    goto out;
  }
  if (with_id == 0) goto out;
  const char *vals[4] = {as_buf_str(&ids), as_buf_str(&topics), as_buf_str(&parts), as_buf_str(&offs)};
  rc = as_db_query(tx->db, tx->sql_inbox, 4, vals, &r);
  if (rc == 0) rc = mark_duplicates(msgs, n, r);
out:
  PQclear(r);
  as_buf_free(&ids);
  as_buf_free(&topics);
  as_buf_free(&parts);
  as_buf_free(&offs);
  return rc;
}
