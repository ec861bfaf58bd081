/* as_tx: inbox claim, outbox queueing and the dead-letter rows of a batch
 * transaction. Every statement is bulk (unnest of array literals), so a batch
 * of 500 messages costs a handful of round trips, not thousands. */
#include "as_tx.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_sha256.h"
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

/* The claim: one row per event id of the batch with the SHA-256 of the
 * record's value. A new id is inserted and returned with our hash; a known
 * id whose stored hash differs is "updated" to itself, only so that it is
 * returned with the stored hash (a row lock and a dead tuple, for hostile
 * input only); a known id with the same hash, or none (rows from before
 * the hash), is not returned: a redelivery. DO UPDATE, not a second SELECT,
 * sees a row another instance committed after this statement's snapshot,
 * and costs nothing for the ids that are new. */
enum { IN_EVENT, IN_TOPIC, IN_PARTITION, IN_OFFSET, IN_HASH };
static const as_col_t in_cols[] = {
    [IN_EVENT] = {"event_id", "uuid"},      [IN_TOPIC] = {"topic", "text"},
    [IN_PARTITION] = {"kpartition", "int"}, [IN_OFFSET] = {"koffset", "bigint"},
    [IN_HASH] = {"payload_hash", "bytea"},
};
static const as_bulk_t sql_inbox = AS_BULK(
    "INSERT INTO inbox AS i (event_id, topic, kpartition, koffset, payload_hash)"
    " SELECT * FROM {{u}} ON CONFLICT (event_id) DO UPDATE SET payload_hash = i.payload_hash"
    " WHERE i.payload_hash <> EXCLUDED.payload_hash"
    " RETURNING i.event_id::text, encode(i.payload_hash, 'hex')",
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

bool as_tx_withheld(const as_tx_conf_t *conf, const char *topic) {
  for (const char *const *t = conf->withheld_topics; t && *t && topic; t++)
    if (strcmp(*t, topic) == 0) return true;
  return false;
}

/* A key the envelope's id rules would accept (a buyer id), not bytes that
 * could be anything (a phone number). */
static bool key_is_id(const rd_kafka_message_t *k) {
  char key[AS_ID_MAX + 1];
  if (!k->key || k->key_len == 0 || k->key_len > AS_ID_MAX) return false;
  memcpy(key, k->key, k->key_len);
  key[k->key_len] = '\0';
  return strlen(key) == k->key_len && as_envelope_id_ok(key);
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
  /* Cut so that the dead letter fits the producer (AS_TX_DEAD_LETTER_OVERHEAD). */
  dl.source_key = (ProtobufCBinaryData){
      .len = k->key_len < AS_TX_DLQ_KEY_MAX ? k->key_len : AS_TX_DLQ_KEY_MAX, .data = k->key};
  dl.original = (ProtobufCBinaryData){.len = keep, .data = k->payload};
  dl.original_size = (int64_t)k->len;
  uint8_t sha[AS_SHA256_LEN];
  if (as_tx_withheld(tx->conf, topic)) { /* may carry personal data: only its hash */
    as_sha256(k->payload, k->len, sha);
    dl.original = (ProtobufCBinaryData){.len = 0, .data = NULL};
    dl.original_withheld = true;
    dl.original_sha256 = (ProtobufCBinaryData){.len = AS_SHA256_LEN, .data = sha};
    if (!key_is_id(k)) dl.source_key = (ProtobufCBinaryData){.len = 0, .data = NULL};
  }
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

/* A message the inbox judges (it has an envelope and a route), with its
 * place in the batch and the hash of its bytes. */
typedef struct claim {
  as_msg_t *m;
  size_t pos;
  uint8_t hash[AS_SHA256_LEN];
} claim_t;

/* By event id, then batch order: each id's copies in a run, first copy first. */
static int cmp_claim(const void *a, const void *b) {
  const claim_t *x = a, *y = b;
  int c = strcmp(x->m->env->event_id, y->m->env->event_id);
  return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* One row the claim returned: an event id and its stored hash in hex. */
typedef struct claimed {
  const char *id, *hex;
} claimed_t;

static int cmp_claimed(const void *a, const void *b) {
  return strcmp(((const claimed_t *)a)->id, ((const claimed_t *)b)->id);
}

static void hex_of(const uint8_t h[AS_SHA256_LEN], char out[2 * AS_SHA256_LEN + 1]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < AS_SHA256_LEN; i++) {
    out[2 * i] = digits[h[i] >> 4];
    out[2 * i + 1] = digits[h[i] & 15];
  }
  out[2 * AS_SHA256_LEN] = '\0';
}

/* Judges the copies cl[0..k) of one event id. The hash the id stands for is
 * the stored one the claim returned, else the first copy's (just inserted,
 * or a redelivery of what is stored). The inserted copy is new; another
 * copy with that hash is a duplicate; one with other bytes reuses the id.
 * A dead message keeps its own reason (it is dead-lettered anyway). */
static void judge_id(claim_t *cl, size_t k, const char *returned_hex) {
  char first[2 * AS_SHA256_LEN + 1], mine[2 * AS_SHA256_LEN + 1];
  hex_of(cl[0].hash, first);
  bool inserted = returned_hex && strcmp(returned_hex, first) == 0;
  const char *accepted = returned_hex ? returned_hex : first;
  for (size_t j = 0; j < k; j++) {
    as_msg_t *m = cl[j].m;
    hex_of(cl[j].hash, mine);
    if (j == 0 && inserted) continue; /* stays as it is: new, or dead */
    if (strcmp(mine, accepted) == 0) {
      m->state = AS_MSG_DUPLICATE;
    } else if (m->state != AS_MSG_DEAD) {
      char d[160];
      snprintf(d, sizeof d,
               "event id taken by other content: sha256 %.16s... stored, %.16s... here", accepted,
               mine);
      as_tx_mark_dead(m, AS_DLQ_EVENT_ID_REUSED, d);
    }
  }
}

/* Marks each message from what the claim returned (see sql_inbox). */
static int judge(claim_t *cl, size_t k, PGresult *r) {
  size_t nrows = r ? (size_t)PQntuples(r) : 0;
  claimed_t *rows = malloc(sizeof *rows * (nrows ? nrows : 1));
  if (!rows) return -ENOMEM;
  for (size_t i = 0; i < nrows; i++)
    rows[i] = (claimed_t){PQgetvalue(r, (int)i, 0), PQgetvalue(r, (int)i, 1)};
  qsort(rows, nrows, sizeof *rows, cmp_claimed);
  for (size_t j = 0, end; j < k; j = end) {
    for (end = j + 1; end < k && strcmp(cl[end].m->env->event_id, cl[j].m->env->event_id) == 0;)
      end++;
    claimed_t key = {.id = cl[j].m->env->event_id};
    const claimed_t *hit = bsearch(&key, rows, nrows, sizeof *rows, cmp_claimed);
    judge_id(cl + j, end - j, hit ? hit->hex : NULL);
  }
  free(rows);
  return 0;
}

int as_tx_inbox_claim(as_tx_t *tx, as_msg_t *msgs, size_t n) {
  claim_t *cl = malloc(sizeof *cl * (n ? n : 1));
  if (!cl) return -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!msgs[i].env || msgs[i].state == AS_MSG_IGNORED) continue;
    cl[k] = (claim_t){.m = &msgs[i], .pos = i};
    as_sha256(msgs[i].rkm->payload, msgs[i].rkm->len, cl[k].hash);
    k++;
  }
  qsort(cl, k, sizeof *cl, cmp_claim);
  as_cols_t c;
  as_cols_init(&c, &sql_inbox);
  for (size_t j = 0; j < k; j++) {
    const as_msg_t *m = cl[j].m;
    if (j > 0 && strcmp(m->env->event_id, cl[j - 1].m->env->event_id) == 0) continue;
    as_cols_str(&c, IN_EVENT, m->env->event_id);
    as_cols_str(&c, IN_TOPIC, rd_kafka_topic_name(m->rkm->rkt));
    as_cols_int(&c, IN_PARTITION, m->rkm->partition);
    as_cols_int(&c, IN_OFFSET, m->rkm->offset);
    as_cols_bytes(&c, IN_HASH, cl[j].hash, AS_SHA256_LEN);
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, tx->db, &r);
  if (rc == 0 && k > 0) rc = judge(cl, k, r);
  PQclear(r);
  as_cols_free(&c);
  free(cl);
  return rc;
}
