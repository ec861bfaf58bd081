/* as_kafka: consumer and producer construction with the fleet's fixed
 * settings, environment pass-through and loop integration. */
#include "as_kafka.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "as_config.h"

static int conf_set(void *arg, const char *prop, const char *value, char *err, size_t errlen) {
  char e[256];
  if (rd_kafka_conf_set(arg, prop, value, e, sizeof e) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "librdkafka property %s: %s", prop, e);
    return -1;
  }
  return 0;
}

static int set_all(rd_kafka_conf_t *c, const char *const *kv, char *err, size_t errlen) {
  for (; kv[0]; kv += 2)
    if (conf_set(c, kv[0], kv[1], err, errlen) < 0) return -1;
  return 0;
}

/* librdkafka logs arrive through the handle's queue (log.queue), so this
 * runs on the loop thread inside a poll and may log but never call back
 * into librdkafka. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  const as_kafka_ctx_t *ctx = rd_kafka_opaque(rk);
  const as_log_t *l = ctx->log;
  as_log_level_t lv = level <= 3   ? AS_LOG_ERROR
                      : level <= 4 ? AS_LOG_WARN
                      : level <= 6 ? AS_LOG_INFO
                                   : AS_LOG_DEBUG;
  /* Gapless is set on purpose (as_kafka_producer_new says why): its
   * "experimental" notice is not something an operator must act on. */
  if (lv == AS_LOG_WARN && strcmp(fac, "CONFWARN") == 0 &&
      strstr(buf, "enable.gapless.guarantee is experimental"))
    lv = AS_LOG_INFO;
  AS_LOG(l, lv, "librdkafka", AS_F_STR("client", rd_kafka_name(rk)), AS_F_STR("facility", fac),
         AS_F_STR("detail", buf));
}

static rd_kafka_conf_t *base_conf(const as_kafka_opts_t *o, const char *scope, char *err,
                                  size_t errlen) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char stats[16];
  snprintf(stats, sizeof stats, "%d", o->stats_interval_ms);
  /* Nagle off: a worker sends small requests and waits for their answers;
   * batching is linger.ms's job, not the kernel's. */
  const char *kv[] = {"bootstrap.servers",
                      o->bootstrap,
                      "client.id",
                      o->client_id,
                      "log.queue",
                      "true",
                      "statistics.interval.ms",
                      stats,
                      "socket.nagle.disable",
                      "true",
                      NULL};
  if (set_all(c, kv, err, errlen) < 0 ||
      as_config_each_rdkafka(conf_set, c, scope, err, errlen) != 0) {
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  rd_kafka_conf_set_opaque(c, o->ctx);
  rd_kafka_conf_set_log_cb(c, log_cb);
  if (o->stats_cb) rd_kafka_conf_set_stats_cb(c, o->stats_cb);
  if (o->error_cb) rd_kafka_conf_set_error_cb(c, o->error_cb);
  return c;
}

/* librdkafka writes to fd only when an op lands in an empty queue: ops
 * queued before this call (the handle's first log lines) would leave the
 * queue non-empty and the fd silent until someone happens to poll. */
static void enable_events(rd_kafka_queue_t *q, int fd) {
  rd_kafka_queue_io_event_enable(q, fd, "1", 1);
  if (rd_kafka_queue_length(q) > 0 && write(fd, "1", 1) < 0) {
    /* the pipe is full: a wake-up is pending anyway */
  }
  rd_kafka_queue_destroy(q);
}

static int subscribe(rd_kafka_t *rk, const char *const *topics, size_t n, char *err,
                     size_t errlen) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
  for (size_t i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
  return e ? -1 : 0;
}

/* The consumer's configuration: ours, the pass-through, then the forced
 * guarantees. NULL with err set if a property is refused. */
static rd_kafka_conf_t *consumer_conf(const as_kafka_opts_t *o, char *err, size_t errlen) {
  rd_kafka_conf_t *c = base_conf(o, AS_RDKAFKA_CONSUMER, err, errlen);
  if (!c) return NULL;
  /* Forced after the pass-through: these are the delivery guarantees. */
  const char *kv[] = {"group.id",
                      o->group_id,
                      "enable.auto.commit",
                      "false",
                      "enable.auto.offset.store",
                      "false",
                      "partition.assignment.strategy",
                      "range",
                      "enable.partition.eof",
                      "false",
                      NULL};
  if (set_all(c, kv, err, errlen) < 0) {
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  if (!as_config_rdkafka_given(AS_RDKAFKA_CONSUMER, "AUTO_OFFSET_RESET"))
    conf_set(c, "auto.offset.reset", "earliest", err, errlen);
  /* librdkafka prefetches up to 64 MiB per consumer by default; a few
   * batches' worth keeps the worker small (RSS target 32 MB) and loses no
   * throughput. */
  if (!as_config_rdkafka_given(AS_RDKAFKA_CONSUMER, "QUEUED_MAX_MESSAGES_KBYTES"))
    conf_set(c, "queued.max.messages.kbytes", "4096", err, errlen);
  /* Real Kafka answers a fetch with up to fetch.max.bytes (50 MB by
   * default), and the whole response stays allocated while any message of
   * it is in the queue: as-probe peaked at 43.7 MB on Kafka 4.1, 34.4 MB
   * with 1 MiB, at the same throughput. Smaller queues cost throughput
   * instead: librdkafka 2.0.2 backs a full queue off for a fixed second, so
   * the queue must hold about a second of messages. */
  if (!as_config_rdkafka_given(AS_RDKAFKA_CONSUMER, "FETCH_MAX_BYTES"))
    conf_set(c, "fetch.max.bytes", "1048576", err, errlen);
  rd_kafka_conf_set_rebalance_cb(c, o->rebalance_cb);
  return c;
}

int as_kafka_consumer_check(const as_kafka_opts_t *o, char *err, size_t errlen) {
  rd_kafka_conf_t *c = consumer_conf(o, err, errlen);
  if (!c) return -1;
  rd_kafka_conf_destroy(c);
  return 0;
}

rd_kafka_t *as_kafka_consumer_new(const as_kafka_opts_t *o, const char *const *topics,
                                  size_t ntopics, int event_fd, char *err, size_t errlen) {
  rd_kafka_conf_t *c = consumer_conf(o, err, errlen);
  if (!c) return NULL;
  char e[256];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
  if (!rk) {
    rd_kafka_conf_destroy(c);
    snprintf(err, errlen, "consumer: %s", e);
    return NULL;
  }
  rd_kafka_poll_set_consumer(rk); /* logs, stats, errors served by the consumer queue */
  rd_kafka_set_log_queue(rk, NULL);
  enable_events(rd_kafka_queue_get_consumer(rk), event_fd);
  if (subscribe(rk, topics, ntopics, err, errlen) < 0) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
  }
  return rk;
}

rd_kafka_t *as_kafka_producer_new(const as_kafka_opts_t *o, int event_fd, char *err,
                                  size_t errlen) {
  rd_kafka_conf_t *c = base_conf(o, AS_RDKAFKA_PRODUCER, err, errlen);
  if (!c) return NULL;
  /* Gapless: a batch refused for good raises a fatal error instead of
   * bumping the epoch and sending the batches behind it, which would put a
   * later event of the same key on the topic ahead of the refused one's
   * resend (the relay replaces a producer that went fatal, as_relay.c). */
  const char *kv[] = {"enable.idempotence",       "true", "acks", "all",
                      "enable.gapless.guarantee", "true", NULL};
  if (set_all(c, kv, err, errlen) < 0) {
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  if (!as_config_rdkafka_given(AS_RDKAFKA_PRODUCER, "LINGER_MS"))
    conf_set(c, "linger.ms", "2", err, errlen);
  rd_kafka_conf_set_dr_msg_cb(c, o->dr_msg_cb);
  char e[256];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
  if (!rk) {
    rd_kafka_conf_destroy(c);
    snprintf(err, errlen, "producer: %s", e);
    return NULL;
  }
  rd_kafka_set_log_queue(rk, NULL);
  enable_events(rd_kafka_queue_get_main(rk), event_fd);
  return rk;
}

int as_kafka_producer_max_bytes(long long *out, char *err, size_t errlen) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char v[32];
  size_t vlen = sizeof v;
  int rc = as_config_each_rdkafka(conf_set, c, AS_RDKAFKA_PRODUCER, err, errlen) != 0 ? -EINVAL : 0;
  if (rc == 0 && rd_kafka_conf_get(c, "message.max.bytes", v, &vlen) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "librdkafka has no message.max.bytes");
    rc = -EINVAL;
  }
  if (rc == 0) *out = strtoll(v, NULL, 10);
  rd_kafka_conf_destroy(c);
  return rc;
}
