/* as_tx: what a service's handler sees of one batch transaction.
 *
 * The runtime opens the transaction, claims the batch's event ids in the
 * inbox (duplicates are marked and never reach the handler), calls the
 * handler with the fresh messages, then writes every event the handler
 * published, and a dead letter for every message refused, into the outbox
 * with one bulk statement, and commits. Nothing reaches Kafka before COMMIT:
 * the relay (as_relay) publishes committed outbox rows.
 *
 * Ownership: as_tx_t and every as_msg_t belong to the runtime and are valid
 * only during the handler call. as_tx_publish copies what it needs; the
 * caller keeps its envelope. */
#ifndef AS_TX_H
#define AS_TX_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_cols.h"
#include "as_db.h"
#include "as_envelope.h"
#include "as_err.h"

typedef enum {
  AS_MSG_NEW = 0,   /* first delivery: the handler applies it */
  AS_MSG_DUPLICATE, /* event id already in the inbox with the same bytes: skipped */
  AS_MSG_DEAD,      /* refused: goes to the dead-letter topic */
  AS_MSG_IGNORED,   /* no route in this service: changes nothing, so not claimed either */
} as_msg_state_t;

typedef struct as_msg {
  rd_kafka_message_t *rkm; /* owned by the batch */
  as_envelope_t *env;      /* owned by the batch; NULL if undecodable */
  as_msg_state_t state;
  const char *dead_reason; /* static AS_DLQ_* code */
  char dead_detail[240];
} as_msg_t;

/* Settings the transaction needs from the worker; borrowed. */
/* A dead letter's bytes beyond the original it carries: reason, detail,
 * topic, group, ids, times and the source key (cut at AS_TX_DLQ_KEY_MAX). The
 * worker refuses to start unless AS_DLQ_MAX_BYTES plus this fits the
 * producer's message.max.bytes, so every dead letter can be published. */
#define AS_TX_DEAD_LETTER_OVERHEAD 4096
#define AS_TX_DLQ_KEY_MAX 1024

typedef struct as_tx_conf {
  const char *service;
  const char *instance;
  const char *group_id;
  const char *dlq_topic;
  size_t dlq_max_bytes; /* original bytes kept in a dead letter */
  /* NULL or NULL-terminated: topics whose dead letters keep no original
   * bytes (as_service_t withheld_dead_letter_topics) */
  const char *const *withheld_topics;
} as_tx_conf_t;

typedef struct as_tx {
  as_db_t *db;              /* borrowed */
  const as_tx_conf_t *conf; /* borrowed */
  as_cols_t out;            /* outbox rows, as array literals */
  size_t rows;              /* outbox rows queued */
  size_t dead;              /* dead letters written by the last flush */
} as_tx_t;

void as_tx_init(as_tx_t *tx, as_db_t *db, const as_tx_conf_t *conf);
void as_tx_free(as_tx_t *tx);
void as_tx_reset(as_tx_t *tx); /* drop pending rows (after a rollback) */

/* The handler's connection: run its own statements (as_db_query) on it. */
static inline as_db_t *as_tx_db(as_tx_t *tx) {
  return tx->db;
}

/* Queues env for publication on topic with key, in this transaction.
 * Stamps event id, type, version, time, producer, trace and causation (from
 * cause, the message being handled, or NULL). Returns 0, -EINVAL, -ENOMEM. */
AS_MUST_CHECK int as_tx_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic,
                                const char *key, as_envelope_t *env);

/* Refuses m: it will be dead-lettered with reason contract_violation and
 * detail. Call before writing anything for m (its writes are not undone). */
void as_tx_reject(as_msg_t *m, const char *detail);

/* Marks m dead with any AS_DLQ_* reason. */
void as_tx_mark_dead(as_msg_t *m, const char *reason, const char *detail);

/* True if topic is one of conf's withheld_topics. */
bool as_tx_withheld(const as_tx_conf_t *conf, const char *topic);

/* Inserts the event ids of msgs (those with an envelope and a route) into
 * the inbox with the SHA-256 of each record's value, in one statement. A
 * repeat with the same bytes (a redelivery; of copies in one batch the first
 * wins) is marked AS_MSG_DUPLICATE; a known id with other bytes is marked
 * dead as event_id_reused (a message already dead keeps its reason). Inbox
 * rows from before the hash match any bytes. Returns 0, -ENOMEM or an as_db
 * error. */
AS_MUST_CHECK int as_tx_inbox_claim(as_tx_t *tx, as_msg_t *msgs, size_t n);

/* Queues a dead letter for every AS_MSG_DEAD message, then writes all queued
 * rows to the outbox and notifies the relay. Returns 0 or an as_db error. */
AS_MUST_CHECK int as_tx_flush(as_tx_t *tx, as_msg_t *msgs, size_t n);

#endif
