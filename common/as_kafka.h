/* as_kafka: librdkafka handles configured the way the fleet's guarantees
 * need, with their queues brought onto the libuv loop.
 *
 * Consumer: manual offset commits only after the database commit
 * (enable.auto.commit and enable.auto.offset.store forced off whatever the
 * environment says), the eager "range" assignor (cooperative-sticky can
 * rewind offsets in librdkafka 2.0 and the mock broker crashes on mixed
 * assignor lists), earliest offset for a new group.
 * Producer: idempotent, acks=all, gapless (a permanent produce error is
 * fatal rather than skipped over: see as_relay.h).
 * Both: AS_RDKAFKA_* pass-through (as_config; AS_RDKAFKA_CONSUMER_* and
 * AS_RDKAFKA_PRODUCER_* to one kind only), librdkafka logs forwarded to
 * a queue and written as JSON lines on the loop thread, and an io-event fd
 * that becomes readable when the handle's queue has something to serve.
 *
 * Ownership: the returned rd_kafka_t is the caller's (rd_kafka_destroy after
 * closing); the io-event pipe fds are the caller's (close both). */
#ifndef AS_KAFKA_H
#define AS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "as_log.h"

/* What rd_kafka_opaque() points to for every handle made here: the log for
 * librdkafka's own messages and the owner for the other callbacks. */
typedef struct as_kafka_ctx {
  const as_log_t *log;
  void *owner;
} as_kafka_ctx_t;

typedef struct as_kafka_opts {
  const char *bootstrap;
  const char *client_id;
  const char *group_id; /* consumer only */
  as_kafka_ctx_t *ctx;  /* becomes rd_kafka_opaque(); borrowed, must outlive the handle */
  /* consumer */
  void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t *,
                       void *);
  /* producer */
  void (*dr_msg_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *);
  /* both: statistics JSON every stats_interval_ms (0 = off) */
  int (*stats_cb)(rd_kafka_t *, char *json, size_t len, void *);
  int stats_interval_ms;
  void (*error_cb)(rd_kafka_t *, int err, const char *reason, void *);
} as_kafka_opts_t;

/* Creates the consumer and subscribes it to topics. event_fd is the write
 * end of a pipe that receives a byte when the consumer queue turns
 * non-empty. Returns NULL with err set on failure. */
rd_kafka_t *as_kafka_consumer_new(const as_kafka_opts_t *o, const char *const *topics,
                                  size_t ntopics, int event_fd, char *err, size_t errlen);

/* Builds (and drops) the consumer's configuration, so that a property
 * librdkafka refuses (AS_RDKAFKA_*) stops a worker at start, before it
 * connects to anything. Returns 0, or -1 with err set. */
int as_kafka_consumer_check(const as_kafka_opts_t *o, char *err, size_t errlen);

/* Creates the idempotent producer; event_fd as above for its main queue. */
rd_kafka_t *as_kafka_producer_new(const as_kafka_opts_t *o, int event_fd, char *err, size_t errlen);

/* What a record costs beyond its value in the producer's size check: the
 * key (a case or order id), the event_id header and the record framing. */
#define AS_KAFKA_RECORD_OVERHEAD 1024

/* The producer's message.max.bytes as the environment sets it
 * (AS_RDKAFKA_MESSAGE_MAX_BYTES or AS_RDKAFKA_PRODUCER_MESSAGE_MAX_BYTES;
 * librdkafka's default otherwise): the largest record the producer hands to a broker.
 * Returns 0, or -EINVAL with err set (a pass-through property refused). */
int as_kafka_producer_max_bytes(long long *out, char *err, size_t errlen);

#endif
