/* Unit tests for as_tx against PostgreSQL: the inbox claim marks repeats
 * (within a batch and across batches) as duplicates when their bytes are the
 * same and dead (event_id_reused) when they differ, and a row from before the
 * payload hash matches anything; publish + flush write
 * outbox rows in publish order whose payloads decode to the stamped
 * envelopes and notify the relay; a dead message becomes a DeadLetter row
 * with everything needed to replay it and an id derived from its source
 * position (the same message twice gives the same id); the original bytes
 * are cut at dlq_max_bytes with the original size kept.
 *
 * Messages are stack rd_kafka_message_t values whose rkt is a real topic
 * handle of a producer with no brokers (rd_kafka_topic_name needs one);
 * they are never passed to rd_kafka_message_destroy. */
#include "as_envelope.h"
#include "as_sha256.h"
#include "as_test.h"
#include "as_test_pg.h"
#include "as_tx.h"
#include "as_uuid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SRC_TOPIC "aftersales.probe.v1"
#define DLQ_TOPIC "aftersales.deadletter.v1"
#define GROUP "aftersales-probe"

typedef struct fix {
  as_test_pg_t pg;
  as_db_t db;
  as_tx_conf_t conf;
  as_tx_t tx;
  rd_kafka_t *rk;
  rd_kafka_topic_t *rkt;
} fix_t;

static void fix_setup(fix_t *f) {
  char errstr[256];

  memset(f, 0, sizeof *f);
  as_test_pg_setup(&f->pg);
  as_db_init(&f->db, f->pg.dsn, "test_tx", f->pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&f->db), 0);
  f->conf = (as_tx_conf_t){.service = "probe",
                           .instance = "probe-1",
                           .group_id = GROUP,
                           .dlq_topic = DLQ_TOPIC,
                           .dlq_max_bytes = 1024};
  as_tx_init(&f->tx, &f->db, &f->conf);
  rd_kafka_conf_t *kc = rd_kafka_conf_new();
  AS_CHECK(rd_kafka_conf_set(kc, "log_level", "0", errstr, sizeof errstr) == RD_KAFKA_CONF_OK);
  f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof errstr);
  if (f->rk == NULL) rd_kafka_conf_destroy(kc);
  AS_CHECK(f->rk != NULL);
  f->rkt = rd_kafka_topic_new(f->rk, SRC_TOPIC, NULL);
  AS_CHECK(f->rkt != NULL);
}

static void fix_teardown(fix_t *f) {
  rd_kafka_topic_destroy(f->rkt);
  rd_kafka_destroy(f->rk);
  as_tx_free(&f->tx);
  as_db_close(&f->db);
  as_test_pg_teardown(&f->pg);
}

/* One consumed message: the Kafka record and, when it decoded, its
 * envelope. */
typedef struct in_msg {
  rd_kafka_message_t rkm;
  uint8_t *bytes;
  char key[64];
} in_msg_t;

/* Packs a valid SyntheticProbe envelope with event_id and probe_id into
 * m->bytes and decodes it into msg->env (as the worker would). The same id
 * and probe id give the same bytes (a redelivery). */
static void make_probe(fix_t *f, in_msg_t *m, as_msg_t *msg, const char *event_id,
                       const char *probe_id, int partition, int64_t offset) {
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  Aftersales__V1__SyntheticProbe probe = AFTERSALES__V1__SYNTHETIC_PROBE__INIT;
  Aftersales__V1__Producer prod = AFTERSALES__V1__PRODUCER__INIT;
  const char *reason = NULL;
  char detail[256] = "";

  prod.service = "probe-driver";
  probe.probe_id = (char *)probe_id;
  env.event_id = (char *)event_id;
  env.event_type = "SyntheticProbe";
  env.schema_version = 1;
  env.case_id = "CASE-1";
  env.order_id = "ORD-1";
  env.occurred_at_us = 1763900000000000LL; /* 2025-11-23 */
  env.producer = &prod;
  env.trace_id = "00112233445566778899aabbccddeeff";
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SYNTHETIC_PROBE;
  env.synthetic_probe = &probe;
  size_t len = aftersales__v1__envelope__get_packed_size(&env);
  memset(m, 0, sizeof *m);
  m->bytes = malloc(len);
  AS_CHECK(m->bytes != NULL);
  aftersales__v1__envelope__pack(&env, m->bytes);
  snprintf(m->key, sizeof m->key, "CASE-1");
  m->rkm = (rd_kafka_message_t){.rkt = f->rkt,
                                .partition = partition,
                                .offset = offset,
                                .payload = m->bytes,
                                .len = len,
                                .key = m->key,
                                .key_len = strlen(m->key)};
  memset(msg, 0, sizeof *msg);
  msg->rkm = &m->rkm;
  msg->env = as_envelope_decode(m->bytes, len, &reason, detail, sizeof detail);
  if (msg->env == NULL) fprintf(stderr, "# fixture does not decode: %s: %s\n", reason, detail);
  AS_CHECK(msg->env != NULL);
}

static void make_msg(fix_t *f, in_msg_t *m, as_msg_t *msg, const char *event_id, int partition,
                     int64_t offset) {
  make_probe(f, m, msg, event_id, "p-1", partition, offset);
}

/* A message whose bytes are not an envelope (env NULL), as the worker keeps
 * it to dead-letter it. */
static void make_raw_msg(fix_t *f, in_msg_t *m, as_msg_t *msg, const void *bytes, size_t len,
                         const char *key, int partition, int64_t offset) {
  memset(m, 0, sizeof *m);
  m->bytes = malloc(len ? len : 1);
  AS_CHECK(m->bytes != NULL);
  memcpy(m->bytes, bytes, len);
  snprintf(m->key, sizeof m->key, "%s", key ? key : "");
  m->rkm = (rd_kafka_message_t){.rkt = f->rkt,
                                .partition = partition,
                                .offset = offset,
                                .payload = m->bytes,
                                .len = len,
                                .key = key ? m->key : NULL,
                                .key_len = key ? strlen(key) : 0};
  memset(msg, 0, sizeof *msg);
  msg->rkm = &m->rkm;
}

static void free_msg(in_msg_t *m, as_msg_t *msg) {
  as_envelope_free(msg->env);
  msg->env = NULL;
  free(m->bytes);
  m->bytes = NULL;
}

static long long count(fix_t *f, const char *fmt) {
  char sql[256];
  return AS_PG_INT(f->pg.conn, as_test_pg_sql(sql, sizeof sql, fmt, f->pg.schema), 0, NULL);
}

AS_TEST(inbox_claim_marks_duplicates) {
  fix_t f;
  in_msg_t m[4];
  as_msg_t msg[4];
  char x[37], y[37], z[37];

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_uuid_v4(x), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(y), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(z), 0);
  make_msg(&f, &m[0], &msg[0], x, 0, 10);
  make_msg(&f, &m[1], &msg[1], y, 1, 20);
  make_msg(&f, &m[2], &msg[2], x, 2, 30);                   /* x again, same batch */
  make_raw_msg(&f, &m[3], &msg[3], "\xff", 1, NULL, 0, 11); /* no envelope */
  as_tx_mark_dead(&msg[3], AS_DLQ_DECODE_FAILED, "bytes");

  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, msg, 4), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(msg[0].state, AS_MSG_NEW);
  AS_CHECK_INT_EQ(msg[1].state, AS_MSG_NEW);
  AS_CHECK_INT_EQ(msg[2].state, AS_MSG_DUPLICATE);
  AS_CHECK_INT_EQ(msg[3].state, AS_MSG_DEAD); /* untouched */

  /* The inbox holds each id once, with where the first copy sat. */
  char sql[256], got[512];
  AS_PG_STR(f.pg.conn,
            as_test_pg_sql(sql, sizeof sql,
                           "SELECT string_agg(concat_ws(':', event_id, topic, kpartition, koffset),"
                           " ' ' ORDER BY koffset) FROM %s.inbox",
                           f.pg.schema),
            0, NULL, got);
  char want[512];
  snprintf(want, sizeof want, "%s:" SRC_TOPIC ":0:10 %s:" SRC_TOPIC ":1:20", x, y);
  AS_CHECK_STR_EQ(got, want);

  /* Next batch: x and y are old, z is new. */
  for (int i = 0; i < 3; i++) free_msg(&m[i], &msg[i]);
  free_msg(&m[3], &msg[3]);
  make_msg(&f, &m[0], &msg[0], y, 1, 21);
  make_msg(&f, &m[1], &msg[1], z, 1, 22);
  make_msg(&f, &m[2], &msg[2], x, 0, 23);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, msg, 3), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(msg[0].state, AS_MSG_DUPLICATE);
  AS_CHECK_INT_EQ(msg[1].state, AS_MSG_NEW);
  AS_CHECK_INT_EQ(msg[2].state, AS_MSG_DUPLICATE);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.inbox"), 3);

  /* The claim follows the transaction: rolled back, z's copy is new again. */
  for (int i = 0; i < 3; i++) free_msg(&m[i], &msg[i]);
  char w[37];
  AS_CHECK_INT_EQ(as_uuid_v4(w), 0);
  make_msg(&f, &m[0], &msg[0], w, 0, 40);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, msg, 1), 0);
  AS_CHECK_INT_EQ(msg[0].state, AS_MSG_NEW);
  as_db_rollback(&f.db);
  msg[0].state = AS_MSG_NEW;
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, msg, 1), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(msg[0].state, AS_MSG_NEW);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.inbox"), 4);
  free_msg(&m[0], &msg[0]);
  fix_teardown(&f);
}

/* A known event id with other bytes is no redelivery: across batches and
 * within one, it is dead-lettered as event_id_reused while the same bytes
 * stay a duplicate; a message already dead keeps its reason; the inbox keeps
 * the first copy's hash, and a row without a hash (from before it) matches
 * anything. */
AS_TEST(inbox_claim_refuses_reused_ids) {
  fix_t f;
  in_msg_t m[5];
  as_msg_t msg[5];
  char x[37], y[37], old[37];

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_uuid_v4(x), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(y), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(old), 0);
  make_probe(&f, &m[0], &msg[0], x, "p-1", 0, 10);
  make_probe(&f, &m[1], &msg[1], x, "p-2", 0, 11); /* x, other bytes, same batch */
  make_probe(&f, &m[2], &msg[2], x, "p-1", 0, 12); /* x, the first bytes again */
  make_probe(&f, &m[3], &msg[3], y, "p-1", 0, 13);
  make_probe(&f, &m[4], &msg[4], y, "p-3", 0, 14);
  as_tx_mark_dead(&msg[4], AS_DLQ_UNEXPECTED_PAYLOAD, "not mine");
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, msg, 5), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(msg[0].state, AS_MSG_NEW);
  AS_CHECK_INT_EQ(msg[1].state, AS_MSG_DEAD);
  AS_CHECK_STR_EQ(msg[1].dead_reason, AS_DLQ_EVENT_ID_REUSED);
  AS_CHECK(strstr(msg[1].dead_detail, "event id taken by other content") != NULL);
  AS_CHECK_INT_EQ(msg[2].state, AS_MSG_DUPLICATE);
  AS_CHECK_INT_EQ(msg[3].state, AS_MSG_NEW);
  AS_CHECK_STR_EQ(msg[4].dead_reason, AS_DLQ_UNEXPECTED_PAYLOAD);
  AS_CHECK_INT_EQ(count(&f,
                        "SELECT count(*) FROM %s.inbox WHERE koffset IN (10, 13)"
                        " AND length(payload_hash) = 32"),
                  2);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.inbox"), 2);

  /* Next batch: x with other bytes, first; x and y redelivered; a row from
   * before the hash. */
  for (int i = 0; i < 5; i++) free_msg(&m[i], &msg[i]);
  char ins[256];
  snprintf(ins, sizeof ins,
           "INSERT INTO %s.inbox (event_id, topic, kpartition, koffset)"
           " VALUES ('%s', 't', 0, 1)",
           f.pg.schema, old);
  AS_PG_EXEC(f.pg.conn, ins);
  make_probe(&f, &m[0], &msg[0], x, "p-9", 1, 20);
  make_probe(&f, &m[1], &msg[1], x, "p-1", 1, 21);
  make_probe(&f, &m[2], &msg[2], y, "p-1", 1, 22);
  make_probe(&f, &m[3], &msg[3], old, "p-4", 1, 23);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, msg, 4), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(msg[0].state, AS_MSG_DEAD);
  AS_CHECK_STR_EQ(msg[0].dead_reason, AS_DLQ_EVENT_ID_REUSED);
  AS_CHECK_INT_EQ(msg[1].state, AS_MSG_DUPLICATE);
  AS_CHECK_INT_EQ(msg[2].state, AS_MSG_DUPLICATE);
  AS_CHECK_INT_EQ(msg[3].state, AS_MSG_DUPLICATE);
  /* The stored rows are untouched: first copy's place and hash. */
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.inbox WHERE kpartition = 0"), 3);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.inbox WHERE payload_hash IS NULL"), 1);
  for (int i = 0; i < 4; i++) free_msg(&m[i], &msg[i]);
  fix_teardown(&f);
}

/* A batch of only undecodable messages claims nothing and writes nothing. */
AS_TEST(inbox_claim_without_envelopes) {
  fix_t f;
  in_msg_t m;
  as_msg_t msg;

  fix_setup(&f);
  make_raw_msg(&f, &m, &msg, "junk", 4, "k", 0, 1);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, &msg, 1), 0);
  AS_CHECK_INT_EQ(as_tx_inbox_claim(&f.tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(msg.state, AS_MSG_NEW);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.inbox"), 0);
  free_msg(&m, &msg);
  fix_teardown(&f);
}

/* An outgoing envelope of the probe type for case_id. */
typedef struct out_env {
  as_envelope_t env;
  Aftersales__V1__ProbeEchoed echoed;
} out_env_t;

static void make_out(out_env_t *o, const char *case_id, int64_t seq) {
  aftersales__v1__envelope__init(&o->env);
  aftersales__v1__probe_echoed__init(&o->echoed);
  o->echoed.probe_id = "p-1";
  o->echoed.seq = seq;
  o->env.case_id = (char *)case_id;
  o->env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_PROBE_ECHOED;
  o->env.probe_echoed = &o->echoed;
}

AS_TEST(publish_flush_writes_outbox_in_order) {
  fix_t f;
  in_msg_t m;
  as_msg_t cause;
  out_env_t o[3];
  char cause_id[37], fixed_id[37];
  static const char *const keys[3] = {"k-1", "k,\"2\"", "k\\3 {}"};
  static const char *const topics[3] = {"aftersales.review.v1", "aftersales.refunds.v1",
                                        "aftersales.review.v1"};

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_uuid_v4(cause_id), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(fixed_id), 0);
  make_msg(&f, &m, &cause, cause_id, 0, 5);
  char listen[128];
  AS_PG_EXEC(f.pg.conn, as_test_pg_sql(listen, sizeof listen, "LISTEN as_outbox_%s", f.pg.schema));

  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  for (int i = 0; i < 3; i++) {
    make_out(&o[i], "CASE-1", i);
    if (i == 1) o[i].env.event_id = fixed_id; /* a caller-chosen id is kept */
    AS_CHECK_INT_EQ(as_tx_publish(&f.tx, &cause, topics[i], keys[i], &o[i].env), 0);
    /* publish leaves no pointer into its stack behind */
    AS_CHECK_STR_EQ(o[i].env.event_id, "");
    AS_CHECK_STR_EQ(o[i].env.trace_id, "");
    AS_CHECK(o[i].env.producer == NULL);
  }
  AS_CHECK_INT_EQ(f.tx.rows, 3);
  /* Nothing is written before the flush. */
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.outbox"), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &cause, 1), 0);
  AS_CHECK_INT_EQ(f.tx.rows, 0);
  AS_CHECK_INT_EQ(f.tx.dead, 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  char sql[256];
  PGresult *r =
      AS_PG_Q(f.pg.conn,
              as_test_pg_sql(sql, sizeof sql,
                             "SELECT event_id::text, topic, msg_key, payload, sent_at IS NULL"
                             " FROM %s.outbox ORDER BY id",
                             f.pg.schema),
              0, NULL);
  AS_CHECK_INT_EQ(PQntuples(r), 3);
  char seen_ids[3][37];
  for (int i = 0; i < 3; i++) {
    AS_CHECK_STR_EQ(PQgetvalue(r, i, 1), topics[i]);
    AS_CHECK_STR_EQ(PQgetvalue(r, i, 2), keys[i]);
    AS_CHECK_STR_EQ(PQgetvalue(r, i, 4), "t");
    size_t len = 0;
    unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &len);
    AS_CHECK(bytes != NULL);
    const char *reason = NULL;
    char detail[256] = "";
    as_envelope_t *env = as_envelope_decode(bytes, len, &reason, detail, sizeof detail);
    PQfreemem(bytes);
    AS_CHECK_STR_EQ(detail, "");
    AS_CHECK(env != NULL);
    AS_CHECK_STR_EQ(env->event_id, PQgetvalue(r, i, 0));
    AS_CHECK_STR_EQ(env->event_type, "ProbeEchoed");
    AS_CHECK_INT_EQ(env->probe_echoed->seq, i);
    AS_CHECK_STR_EQ(env->case_id, "CASE-1");
    AS_CHECK_STR_EQ(env->producer->service, "probe");
    AS_CHECK_STR_EQ(env->producer->instance, "probe-1");
    AS_CHECK_STR_EQ(env->trace_id, "00112233445566778899aabbccddeeff");
    AS_CHECK_STR_EQ(env->causation_id, cause_id);
    snprintf(seen_ids[i], sizeof seen_ids[i], "%s", env->event_id);
    as_envelope_free(env);
  }
  PQclear(r);
  AS_CHECK_STR_EQ(seen_ids[1], fixed_id);
  AS_CHECK(strcmp(seen_ids[0], seen_ids[2]) != 0);
  AS_CHECK_INT_EQ(seen_ids[0][14], '4');

  /* The relay was told, once, how many rows the commit brought. */
  AS_CHECK_INT_EQ(PQconsumeInput(f.pg.conn), 1);
  PGnotify *n = PQnotifies(f.pg.conn);
  AS_CHECK(n != NULL);
  char chan[96];
  AS_CHECK_STR_EQ(n->relname, as_test_pg_sql(chan, sizeof chan, "as_outbox_%s", f.pg.schema));
  AS_CHECK_STR_EQ(n->extra, "3");
  PQfreemem(n);
  AS_CHECK(PQnotifies(f.pg.conn) == NULL);

  /* An empty flush writes nothing. */
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.outbox"), 3);
  free_msg(&m, &cause);
  fix_teardown(&f);
}

/* Without a cause: a new trace, no causation. */
AS_TEST(publish_without_cause) {
  fix_t f;
  out_env_t o;
  char sql[256];

  fix_setup(&f);
  make_out(&o, "CASE-2", 7);
  AS_CHECK_INT_EQ(as_tx_publish(&f.tx, NULL, "aftersales.review.v1", "CASE-2", &o.env), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, NULL, 0), 0);
  PGresult *r = AS_PG_Q(
      f.pg.conn, as_test_pg_sql(sql, sizeof sql, "SELECT payload FROM %s.outbox", f.pg.schema), 0,
      NULL);
  AS_CHECK_INT_EQ(PQntuples(r), 1);
  size_t len = 0;
  unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &len);
  PQclear(r);
  const char *reason = NULL;
  char detail[256] = "";
  as_envelope_t *env = as_envelope_decode(bytes, len, &reason, detail, sizeof detail);
  PQfreemem(bytes);
  AS_CHECK(env != NULL);
  AS_CHECK_INT_EQ(strlen(env->trace_id), 32);
  AS_CHECK_STR_EQ(env->causation_id, "");
  as_envelope_free(env);
  fix_teardown(&f);
}

AS_TEST(publish_without_payload_is_einval) {
  fix_t f;
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;

  fix_setup(&f);
  env.case_id = "CASE-1";
  AS_CHECK_INT_EQ(as_tx_publish(&f.tx, NULL, "aftersales.review.v1", "k", &env), -EINVAL);
  AS_CHECK_INT_EQ(f.tx.rows, 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.outbox"), 0);
  fix_teardown(&f);
}

/* The dead letter a flush wrote for one message, decoded (free with
 * as_envelope_free); the outbox row's topic, key and id in row_*. */
typedef struct dead_row {
  char topic[64], key[64], id[37];
} dead_row_t;

static as_envelope_t *dead_letter_at(fix_t *f, int nth, dead_row_t *row) {
  char sql[256];
  PGresult *r =
      AS_PG_Q(f->pg.conn,
              as_test_pg_sql(sql, sizeof sql,
                             "SELECT event_id::text, topic, msg_key, payload FROM %s.outbox"
                             " ORDER BY id",
                             f->pg.schema),
              0, NULL);
  AS_CHECK(PQntuples(r) > nth);
  snprintf(row->id, sizeof row->id, "%s", PQgetvalue(r, nth, 0));
  snprintf(row->topic, sizeof row->topic, "%s", PQgetvalue(r, nth, 1));
  snprintf(row->key, sizeof row->key, "%s", PQgetvalue(r, nth, 2));
  size_t len = 0;
  unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, nth, 3), &len);
  PQclear(r);
  AS_CHECK(bytes != NULL);
  const char *reason = NULL;
  char detail[256] = "";
  /* A dead letter must itself pass the contract (it may lack ids). */
  as_envelope_t *env = as_envelope_decode(bytes, len, &reason, detail, sizeof detail);
  PQfreemem(bytes);
  AS_CHECK_STR_EQ(detail, "");
  AS_CHECK(env != NULL);
  AS_CHECK_INT_EQ(env->payload_case, AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER);
  AS_CHECK_STR_EQ(env->event_id, row->id);
  return env;
}

AS_TEST(dead_message_becomes_dead_letter) {
  fix_t f;
  in_msg_t m;
  as_msg_t msg;
  static const uint8_t junk[] = {0xde, 0xad, 0x00, 0xbe, 0xef};
  dead_row_t row;

  fix_setup(&f);
  make_raw_msg(&f, &m, &msg, junk, sizeof junk, "case-9", 3, 12345);
  as_tx_mark_dead(&msg, AS_DLQ_DECODE_FAILED, "not a protobuf Envelope (5 bytes)");
  int64_t before = as_now_us();
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &msg, 1), 0);
  AS_CHECK_INT_EQ(f.tx.dead, 1);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  as_envelope_t *env = dead_letter_at(&f, 0, &row);
  const Aftersales__V1__DeadLetter *dl = env->dead_letter;
  AS_CHECK_STR_EQ(row.topic, DLQ_TOPIC);
  AS_CHECK_STR_EQ(row.key, SRC_TOPIC); /* dead letters are keyed by source topic */
  AS_CHECK_STR_EQ(dl->reason_code, AS_DLQ_DECODE_FAILED);
  AS_CHECK_STR_EQ(dl->detail, "not a protobuf Envelope (5 bytes)");
  AS_CHECK_STR_EQ(dl->source_topic, SRC_TOPIC);
  AS_CHECK_INT_EQ(dl->source_partition, 3);
  AS_CHECK_INT_EQ(dl->source_offset, 12345);
  AS_CHECK_MEM_EQ(dl->source_key.data, dl->source_key.len, "case-9", 6);
  AS_CHECK_MEM_EQ(dl->original.data, dl->original.len, junk, sizeof junk);
  AS_CHECK_INT_EQ(dl->original_size, sizeof junk);
  AS_CHECK_STR_EQ(dl->consumer_group, GROUP);
  AS_CHECK(dl->failed_at_us >= before && dl->failed_at_us <= as_now_us());
  AS_CHECK_STR_EQ(dl->original_event_id, "");
  AS_CHECK_STR_EQ(env->case_id, "");
  AS_CHECK_STR_EQ(env->causation_id, "");
  AS_CHECK_STR_EQ(env->producer->service, "probe");

  /* Its id is derived from where the message sat. */
  char want[37];
  static const char name[] = GROUP "|" SRC_TOPIC "|3|12345";
  as_uuid_v5(want, "aftersales.deadletter", name, sizeof name - 1);
  AS_CHECK_STR_EQ(row.id, want);
  AS_CHECK_STR_EQ(row.id, "f47117ba-26fe-5c55-9c0e-da76998300af"); /* pinned in test_uuid */
  as_envelope_free(env);

  /* The same message again (a redelivery): the same dead-letter id. */
  msg.state = AS_MSG_NEW;
  as_tx_mark_dead(&msg, AS_DLQ_DECODE_FAILED, "again");
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &msg, 1), 0);
  env = dead_letter_at(&f, 1, &row);
  AS_CHECK_STR_EQ(row.id, want);
  AS_CHECK_STR_EQ(env->dead_letter->detail, "again");
  as_envelope_free(env);
  char sql[256];
  AS_CHECK_INT_EQ(
      AS_PG_INT(f.pg.conn,
                as_test_pg_sql(sql, sizeof sql, "SELECT count(DISTINCT event_id) FROM %s.outbox",
                               f.pg.schema),
                0, NULL),
      1);
  /* Another offset: another id. */
  m.rkm.offset = 12346;
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &msg, 1), 0);
  env = dead_letter_at(&f, 2, &row);
  AS_CHECK(strcmp(row.id, want) != 0);
  as_envelope_free(env);
  free_msg(&m, &msg);
  fix_teardown(&f);
}

/* A topic declared withheld (personal data): its dead letter keeps the
 * size and SHA-256 of the bytes, not the bytes; a key that is no id goes
 * too. Other topics keep theirs (dead_message_becomes_dead_letter). */
AS_TEST(withheld_topic_dead_letter_keeps_no_bytes) {
  fix_t f;
  in_msg_t m, m2;
  as_msg_t msg, msg2;
  static const char secret[] = "\x0a\x7f phone +8613912345678";
  static const char *const withheld[] = {"aftersales.other.v1", SRC_TOPIC, NULL};
  dead_row_t row;
  uint8_t sha[AS_SHA256_LEN];

  fix_setup(&f);
  f.conf.withheld_topics = withheld;
  make_raw_msg(&f, &m, &msg, secret, sizeof secret - 1, "b-7", 2, 99);
  make_raw_msg(&f, &m2, &msg2, secret, sizeof secret - 1, "+8613912345678", 2, 100);
  as_tx_mark_dead(&msg, AS_DLQ_DECODE_FAILED, "not a protobuf Envelope");
  as_tx_mark_dead(&msg2, AS_DLQ_DECODE_FAILED, "not a protobuf Envelope");
  AS_CHECK(as_tx_withheld(&f.conf, SRC_TOPIC));
  AS_CHECK(!as_tx_withheld(&f.conf, "aftersales.probe"));
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &msg, 1), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &msg2, 1), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  as_sha256(secret, sizeof secret - 1, sha);
  as_envelope_t *env = dead_letter_at(&f, 0, &row);
  const Aftersales__V1__DeadLetter *dl = env->dead_letter;
  AS_CHECK_STR_EQ(dl->reason_code, AS_DLQ_DECODE_FAILED);
  AS_CHECK_INT_EQ(dl->source_offset, 99);
  AS_CHECK_INT_EQ(dl->original.len, 0);
  AS_CHECK(dl->original_withheld);
  AS_CHECK_INT_EQ(dl->original_size, sizeof secret - 1);
  AS_CHECK_MEM_EQ(dl->original_sha256.data, dl->original_sha256.len, sha, sizeof sha);
  AS_CHECK_MEM_EQ(dl->source_key.data, dl->source_key.len, "b-7", 3);
  as_envelope_free(env);
  env = dead_letter_at(&f, 1, &row);
  AS_CHECK_INT_EQ(env->dead_letter->original.len, 0);
  AS_CHECK_INT_EQ(env->dead_letter->source_key.len, 0); /* "+86...": not an id */
  as_envelope_free(env);
  free_msg(&m, &msg);
  free_msg(&m2, &msg2);
  fix_teardown(&f);
}

/* A decoded message the handler refused: the dead letter names the original
 * event and inherits its ids and trace. Only dead messages are written. */
AS_TEST(rejected_message_dead_letter_keeps_identity) {
  fix_t f;
  in_msg_t m[2];
  as_msg_t msg[2];
  char ev[37], ok[37];
  dead_row_t row;

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_uuid_v4(ev), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(ok), 0);
  make_msg(&f, &m[0], &msg[0], ok, 0, 1);
  make_msg(&f, &m[1], &msg[1], ev, 0, 2);
  as_tx_reject(&msg[1], "amount_minor must be positive");
  AS_CHECK_INT_EQ(msg[1].state, AS_MSG_DEAD);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, msg, 2), 0);
  AS_CHECK_INT_EQ(f.tx.dead, 1);
  AS_CHECK_INT_EQ(count(&f, "SELECT count(*) FROM %s.outbox"), 1);

  as_envelope_t *env = dead_letter_at(&f, 0, &row);
  const Aftersales__V1__DeadLetter *dl = env->dead_letter;
  AS_CHECK_STR_EQ(dl->reason_code, AS_DLQ_CONTRACT);
  AS_CHECK_STR_EQ(dl->detail, "amount_minor must be positive");
  AS_CHECK_STR_EQ(dl->original_event_id, ev);
  AS_CHECK_STR_EQ(dl->original_event_type, "SyntheticProbe");
  AS_CHECK_INT_EQ(dl->source_offset, 2);
  AS_CHECK_MEM_EQ(dl->original.data, dl->original.len, m[1].bytes, m[1].rkm.len);
  AS_CHECK_STR_EQ(env->case_id, "CASE-1");
  AS_CHECK_STR_EQ(env->order_id, "ORD-1");
  AS_CHECK_STR_EQ(env->trace_id, "00112233445566778899aabbccddeeff");
  AS_CHECK_STR_EQ(env->causation_id, ev);
  as_envelope_free(env);
  free_msg(&m[0], &msg[0]);
  free_msg(&m[1], &msg[1]);
  fix_teardown(&f);
}

/* The original is cut at dlq_max_bytes; its size is kept. */
AS_TEST(dead_letter_original_is_cut) {
  static const struct {
    size_t len, max, kept;
  } rows[] = {
      {100, 16, 16}, {17, 16, 16}, {16, 16, 16}, {15, 16, 15}, {0, 16, 0}, {100, 0, 0},
  };
  fix_t f;
  uint8_t bytes[100];

  fix_setup(&f);
  for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 7 + 1);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    in_msg_t m;
    as_msg_t msg;
    dead_row_t row;
    as_tx_conf_t conf = f.conf;
    as_tx_t tx;

    conf.dlq_max_bytes = rows[i].max;
    as_tx_init(&tx, &f.db, &conf);
    make_raw_msg(&f, &m, &msg, bytes, rows[i].len, "k", 0, (int64_t)i);
    as_tx_mark_dead(&msg, AS_DLQ_TOO_LARGE, "big");
    AS_CHECK_INT_EQ(as_tx_flush(&tx, &msg, 1), 0);
    as_tx_free(&tx);
    as_envelope_t *env = dead_letter_at(&f, (int)i, &row);
    AS_CHECK_INT_EQ(env->dead_letter->original.len, rows[i].kept);
    AS_CHECK_MEM_EQ(env->dead_letter->original.data, env->dead_letter->original.len, bytes,
                    rows[i].kept);
    AS_CHECK_INT_EQ(env->dead_letter->original_size, rows[i].len);
    as_envelope_free(env);
    free_msg(&m, &msg);
  }
  fix_teardown(&f);
}

/* Published events and dead letters of one flush share the statement, in
 * order: the handler's events first, then the dead letters. */
AS_TEST(flush_mixes_events_and_dead_letters) {
  fix_t f;
  in_msg_t m;
  as_msg_t msg;
  out_env_t o;
  char sql[256], got[256];

  fix_setup(&f);
  make_raw_msg(&f, &m, &msg, "x", 1, NULL, 1, 9);
  as_tx_mark_dead(&msg, AS_DLQ_DECODE_FAILED, "x");
  make_out(&o, "CASE-3", 1);
  AS_CHECK_INT_EQ(as_tx_publish(&f.tx, NULL, "aftersales.review.v1", "CASE-3", &o.env), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &msg, 1), 0);
  AS_PG_STR(
      f.pg.conn,
      as_test_pg_sql(sql, sizeof sql,
                     "SELECT string_agg(topic || '/' || msg_key, ' ' ORDER BY id) FROM %s.outbox",
                     f.pg.schema),
      0, NULL, got);
  AS_CHECK_STR_EQ(got, "aftersales.review.v1/CASE-3 " DLQ_TOPIC "/" SRC_TOPIC);
  free_msg(&m, &msg);
  fix_teardown(&f);
}

/* A failed flush statement is reported as a permanent error with its
 * SQLSTATE, and the pending rows are dropped (the batch is retried from
 * scratch after the rollback). */
AS_TEST(flush_error_is_reported) {
  fix_t f;
  out_env_t o;
  char sql[128];

  fix_setup(&f);
  AS_PG_EXEC(f.pg.conn, as_test_pg_sql(sql, sizeof sql, "DROP TABLE %s.outbox", f.pg.schema));
  make_out(&o, "CASE-4", 1);
  AS_CHECK_INT_EQ(as_tx_publish(&f.tx, NULL, "aftersales.review.v1", "CASE-4", &o.env), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, NULL, 0), -EIO);
  AS_CHECK_STR_EQ(f.db.sqlstate, "42P01");
  AS_CHECK_INT_EQ(f.tx.rows, 0);
  fix_teardown(&f);
}

/* The longest schema name whose notify channel (as_outbox_<schema>) still
 * fits PostgreSQL's 63-byte identifier limit: 53 characters. */
AS_TEST(flush_with_longest_channel_name) {
  fix_t f;
  out_env_t o;
  char sql[256], schema[64];
  as_tx_t tx;
  as_db_t ldb;

  fix_setup(&f);
  as_test_pg_unique_name(schema, sizeof schema, "l");
  size_t n = strlen(schema);
  memset(schema + n, 'x', 53 - n);
  schema[53] = '\0';
  as_test_pg_migrate_at(__FILE__, __LINE__, f.pg.conn, schema, "runtime", as_sql_runtime);
  as_db_init(&ldb, f.pg.dsn, "test_tx_long", schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&ldb), 0);
  as_tx_init(&tx, &ldb, &f.conf);
  make_out(&o, "CASE-5", 1);
  AS_CHECK_INT_EQ(as_tx_publish(&tx, NULL, "aftersales.review.v1", "CASE-5", &o.env), 0);
  int rc = as_tx_flush(&tx, NULL, 0);
  if (rc != 0) fprintf(stderr, "# %s\n", ldb.err);
  AS_CHECK_INT_EQ(rc, 0);
  as_tx_free(&tx);
  as_db_close(&ldb);
  AS_CHECK_INT_EQ(
      AS_PG_INT(f.pg.conn,
                as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.outbox", schema), 0, NULL),
      1);
  AS_PG_EXEC(f.pg.conn, as_test_pg_sql(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema));
  fix_teardown(&f);
}

/* A dead letter always fits the producer: the worker checks at start that
 * dlq_max_bytes plus AS_TX_DEAD_LETTER_OVERHEAD fits message.max.bytes, so
 * nothing else in it may grow with the input. A hostile 100 KiB key is cut
 * at AS_TX_DLQ_KEY_MAX, the original at dlq_max_bytes. */
AS_TEST(dead_letter_is_bounded_whatever_the_key) {
  fix_t f;
  in_msg_t m;
  as_msg_t msg;
  dead_row_t row;
  enum { KEY = 100 * 1024, BODY = 64 * 1024 };
  char *key = malloc(KEY);
  uint8_t *body = malloc(BODY);
  AS_CHECK(key != NULL && body != NULL);
  memset(key, 'k', KEY);
  memset(body, 0x0f, BODY);

  fix_setup(&f);
  make_raw_msg(&f, &m, &msg, body, BODY, "x", 1, 7);
  m.rkm.key = key;
  m.rkm.key_len = KEY;
  as_tx_mark_dead(&msg, AS_DLQ_DECODE_FAILED, "junk");
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, &msg, 1), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  as_envelope_t *env = dead_letter_at(&f, 0, &row);
  const Aftersales__V1__DeadLetter *dl = env->dead_letter;
  AS_CHECK_INT_EQ(dl->source_key.len, AS_TX_DLQ_KEY_MAX);
  AS_CHECK_INT_EQ(dl->original.len, f.conf.dlq_max_bytes);
  AS_CHECK_INT_EQ(dl->original_size, BODY);
  size_t packed = aftersales__v1__envelope__get_packed_size(env);
  AS_CHECK(packed <= f.conf.dlq_max_bytes + AS_TX_DEAD_LETTER_OVERHEAD);
  as_envelope_free(env);
  free_msg(&m, &msg);
  fix_teardown(&f);
  free(key);
  free(body);
}
