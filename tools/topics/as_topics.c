/*
 * as-topics: puts the fleet's topics (proto/topics.tsv, or any table in its
 * format) on a real Kafka cluster and verifies them. Each topic missing is
 * created with its partition count (the Admin API's CreateTopics); each one
 * present is compared with the table. A topic whose partition count
 * differs is reported, never altered: adding partitions would move keys
 * (case ids) to other partitions and break per-case ordering, so a
 * difference is for a human to resolve. With --check nothing is created
 * and a missing topic is a difference too.
 *
 * stdout gets one line per change or difference, e.g.
 *   created topic=aftersales.cases.v1 partitions=12 replication=1
 *   difference topic=aftersales.cases.v1 problem=partitions want=12 have=3
 *   difference topic=aftersales.cases.v1 problem=missing want=12
 *   failed topic=aftersales.cases.v1 error=POLICY_VIOLATION
 * and stderr JSON log lines, ending with a summary. Exit 0 when every
 * topic is there with its count, 1 after a difference or a failed
 * creation, 2 on a usage error, 3 when the cluster did not answer in time.
 * The mock broker (as-broker) makes its own topics and has no CreateTopics.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "as_int.h"
#include "as_log.h"
#include "as_process.h" /* as_version, as_commit */
#include "as_topicfile.h"

#define TOPICS_EXIT_DIFFERS 1
#define TOPICS_EXIT_USAGE 2
#define TOPICS_EXIT_UNREACHABLE 3
#define TOPICS_REPLICATION_AUTO 0 /* 1 on a one-broker cluster, else -1 */
#define TOPICS_MAX_REPLICATION 32767
#define TOPICS_DEFAULT_FILE "proto/topics.tsv"

typedef struct {
  const char *bootstrap;   /* borrowed from argv */
  const char *topics_file; /* borrowed from argv; NULL: the default */
  as_topicfile_t topics;   /* what must exist */
  bool check;              /* verify only */
  int replication;         /* -1 broker default, TOPICS_REPLICATION_AUTO, or N */
  int timeout_ms;          /* for the whole run */
} topics_opts_t;

/* One wanted topic's fate. */
typedef enum {
  TOPIC_UNKNOWN = 0, /* not seen yet */
  TOPIC_OK,          /* there, with its count */
  TOPIC_MISSING,     /* not there */
  TOPIC_CREATING,    /* asked for; waiting until metadata shows it led */
  TOPIC_DIFFERS,     /* there with another count (reported) */
  TOPIC_FAILED,      /* creation refused (reported) */
} topic_state_t;

typedef struct {
  const topics_opts_t *o;
  as_log_t log;
  rd_kafka_t *rk;
  topic_state_t *state; /* owned, one per o->topics entry */
  int64_t deadline_ms;  /* CLOCK_MONOTONIC */
  int brokers;          /* in the last metadata answer */
  int replication;      /* what creation uses (after AUTO is resolved) */
  int created, differences;
} topics_run_t;

static int64_t now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining_ms(const topics_run_t *r) {
  int64_t left = r->deadline_ms - now_ms();

  return left < 0 ? 0 : (int)left;
}

/* ---- options ----------------------------------------------------------- */

static void usage(FILE *f) {
  fputs(
      "usage: as-topics --bootstrap HOST:PORT[,...] [--topics FILE] [--topic NAME:PARTITIONS]...\n"
      "                 [--check] [--replication N] [--timeout-ms N]\n"
      "\n"
      "Creates every topic of the table that a Kafka cluster lacks, with its\n"
      "partition count, and reports each existing topic whose count differs\n"
      "(never altering it). One stdout line per change or difference; exit 0\n"
      "when all match, 1 on a difference or a failed creation, 2 on a usage\n"
      "error, 3 when the cluster did not answer in time.\n"
      "\n"
      "  --bootstrap LIST     the cluster's bootstrap servers\n"
      "  --topics FILE        topics table: `name partitions key [description]` per\n"
      "                       line, `#` comments (default " TOPICS_DEFAULT_FILE
      " unless\n"
      "                       --topic is given)\n"
      "  --topic NAME:PARTS   one more topic; may be repeated\n"
      "  --check              create nothing: a missing topic is a difference\n"
      "  --replication N      replication factor of created topics, 1..32767, or -1\n"
      "                       for the broker's default.replication.factor (default:\n"
      "                       1 on a one-broker cluster, else -1)\n"
      "  --timeout-ms N       give up after N ms, 1..3600000 (default 30000)\n"
      "  --version            version and commit\n"
      "  --help               this text\n",
      f);
}

static int opts_int(const char *flag, const char *val, long min, long max, int *out) {
  long long v;
  if (as_int_parse(val, AS_INT_MINUS, min, max, &v) == 0) {
    *out = (int)v;
    return 0;
  }
  fprintf(stderr, "as-topics: %s \"%s\": expected an integer in %ld..%ld\n", flag, val, min, max);
  return -1;
}

static int opts_replication(const char *val, int *out) {
  if (opts_int("--replication", val, -1, TOPICS_MAX_REPLICATION, out) != 0) return -1;
  if (*out != 0) return 0;
  fprintf(stderr, "as-topics: --replication 0: use -1 (broker default) or 1..%d\n",
          TOPICS_MAX_REPLICATION);
  return -1;
}

static int opts_topic(topics_opts_t *o, const char *arg) {
  char err[512];

  if (as_topicfile_add_arg(&o->topics, arg, err, sizeof(err)) == 0) return 0;
  fprintf(stderr, "as-topics: %s\n", err);
  return -1;
}

/* Returns 0 to run, 1 after --help, 2 after --version, -1 on a usage error
 * (already reported). */
static int opts_parse(topics_opts_t *o, int argc, char **argv) {
  static const struct option longopts[] = {
      {"bootstrap", required_argument, NULL, 'b'},
      {"topics", required_argument, NULL, 'f'},
      {"topic", required_argument, NULL, 't'},
      {"check", no_argument, NULL, 'c'},
      {"replication", required_argument, NULL, 'r'},
      {"timeout-ms", required_argument, NULL, 'w'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'v'},
      {NULL, 0, NULL, 0},
  };
  int c, rc = 0;

  while (rc == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (c == 'b')
      o->bootstrap = optarg;
    else if (c == 'f')
      o->topics_file = optarg;
    else if (c == 't')
      rc = opts_topic(o, optarg);
    else if (c == 'c')
      o->check = true;
    else if (c == 'r')
      rc = opts_replication(optarg, &o->replication);
    else if (c == 'w')
      rc = opts_int("--timeout-ms", optarg, 1, 3600000, &o->timeout_ms);
    else if (c == 'h')
      return 1;
    else if (c == 'v')
      return 2;
    else
      rc = -1; /* getopt already said what was wrong */
  }
  if (rc == 0 && optind < argc) {
    fprintf(stderr, "as-topics: unexpected argument \"%s\"\n", argv[optind]);
    rc = -1;
  }
  return rc;
}

/* The file (the default one when no topic was named at all), and the
 * bootstrap, which has no default: a tool that creates topics must never
 * guess which cluster. */
static int opts_finish(topics_opts_t *o) {
  char err[PATH_MAX + 512];
  const char *file = o->topics_file;

  if (file == NULL && o->topics.n == 0) file = TOPICS_DEFAULT_FILE;
  if (file != NULL && as_topicfile_load(&o->topics, file, err, sizeof(err)) != 0) {
    fprintf(stderr, "as-topics: %s\n", err);
    return -1;
  }
  if (o->bootstrap == NULL || o->bootstrap[0] == '\0') {
    fprintf(stderr, "as-topics: no --bootstrap\nhint: e.g. --bootstrap 127.0.0.1:9092\n");
    return -1;
  }
  if (o->topics.n == 0) {
    fprintf(stderr, "as-topics: no topics in %s\n", file);
    return -1;
  }
  return 0;
}

/* ---- the client -------------------------------------------------------- */

/* Runs on librdkafka's threads: logs, never calls back into librdkafka.
 * as_log writes each line with one fwrite, so lines stay whole. */
static void topics_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  const topics_run_t *r = rd_kafka_opaque(rk);
  as_log_level_t lv = level <= 3 ? AS_LOG_ERROR : level <= 4 ? AS_LOG_WARN : AS_LOG_INFO;

  AS_LOG(&r->log, lv, "librdkafka", AS_F_STR("facility", fac), AS_F_STR("detail", buf));
}

/* A producer that never produces: the cheapest handle for admin requests. */
static rd_kafka_t *topics_client_new(topics_run_t *r) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char errstr[512];
  rd_kafka_t *rk;

  if (rd_kafka_conf_set(conf, "bootstrap.servers", r->o->bootstrap, errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "client.id", "as-topics", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    AS_ERROR(&r->log, "librdkafka config refused", AS_F_STR("detail", errstr));
    return NULL;
  }
  rd_kafka_conf_set_opaque(conf, r);
  rd_kafka_conf_set_log_cb(conf, topics_log_cb);
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == NULL) { /* on failure conf is still ours */
    rd_kafka_conf_destroy(conf);
    AS_ERROR(&r->log, "cannot create the Kafka client", AS_F_STR("detail", errstr));
  }
  return rk;
}

/* ---- comparing the table with the cluster ------------------------------ */

static const rd_kafka_metadata_topic_t *md_find(const struct rd_kafka_metadata *md,
                                                const char *name) {
  for (int i = 0; i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, name) == 0) return &md->topics[i];
  return NULL;
}

/* A topic counts as there once every partition has a leader: before that
 * a producer's first send would fail with "leader not available". */
static bool md_topic_led(const rd_kafka_metadata_topic_t *mt) {
  if (mt->err != RD_KAFKA_RESP_ERR_NO_ERROR || mt->partition_cnt == 0) return false;
  for (int i = 0; i < mt->partition_cnt; i++)
    if (mt->partitions[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || mt->partitions[i].leader < 0)
      return false;
  return true;
}

static void report_differs(topics_run_t *r, size_t i, int have) {
  const as_topicfile_entry_t *t = &r->o->topics.v[i];

  r->state[i] = TOPIC_DIFFERS;
  r->differences++;
  printf("difference topic=%s problem=partitions want=%d have=%d\n", t->name, t->partitions, have);
  AS_WARN(&r->log, "topic partition count differs from the table", AS_F_STR("topic", t->name),
          AS_F_INT("want", t->partitions), AS_F_INT("have", have));
}

/* Sorts one wanted topic by what metadata says. A topic we are creating
 * stays CREATING until it is led; one that exists is compared. */
static void classify(topics_run_t *r, const struct rd_kafka_metadata *md, size_t i) {
  const as_topicfile_entry_t *t = &r->o->topics.v[i];
  const rd_kafka_metadata_topic_t *mt = md_find(md, t->name);
  bool present = mt != NULL && mt->err != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC &&
                 mt->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;

  if (r->state[i] == TOPIC_CREATING && (!present || !md_topic_led(mt))) return;
  if (!present) {
    r->state[i] = TOPIC_MISSING;
    return;
  }
  if (mt->partition_cnt != t->partitions)
    report_differs(r, i, mt->partition_cnt);
  else
    r->state[i] = TOPIC_OK;
}

/* One metadata round over every topic of the cluster; 0, or -1 when the
 * cluster did not answer within the time left (logged). */
static int refresh(topics_run_t *r, bool log_failure) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(r->rk, 1, NULL, &md, remaining_ms(r));

  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (log_failure)
      AS_ERROR(&r->log, "the cluster did not answer a metadata request",
               AS_F_STR("bootstrap", r->o->bootstrap), AS_F_STR("error", rd_kafka_err2name(err)));
    return -1;
  }
  r->brokers = md->broker_cnt;
  for (size_t i = 0; i < r->o->topics.n; i++)
    if (r->state[i] == TOPIC_UNKNOWN || r->state[i] == TOPIC_CREATING) classify(r, md, i);
  rd_kafka_metadata_destroy(md);
  return 0;
}

static size_t count_state(const topics_run_t *r, topic_state_t s) {
  size_t n = 0;

  for (size_t i = 0; i < r->o->topics.n; i++) n += r->state[i] == s;
  return n;
}

/* --check: each missing topic is a difference. */
static void report_missing(topics_run_t *r) {
  for (size_t i = 0; i < r->o->topics.n; i++) {
    const as_topicfile_entry_t *t = &r->o->topics.v[i];

    if (r->state[i] != TOPIC_MISSING) continue;
    r->differences++;
    printf("difference topic=%s problem=missing want=%d\n", t->name, t->partitions);
    AS_WARN(&r->log, "topic missing", AS_F_STR("topic", t->name), AS_F_INT("want", t->partitions));
  }
}

/* ---- creating ---------------------------------------------------------- */

/* The NewTopic list for every MISSING topic; rd_kafka_NewTopic_destroy_array
 * and free() release it. Returns the count, or -1 (logged). */
static int create_list(topics_run_t *r, rd_kafka_NewTopic_t ***out) {
  size_t n = count_state(r, TOPIC_MISSING), k = 0;
  rd_kafka_NewTopic_t **v = calloc(n ? n : 1, sizeof(*v));
  char errstr[512];

  if (v == NULL) goto oom;
  for (size_t i = 0; i < r->o->topics.n; i++) {
    const as_topicfile_entry_t *t = &r->o->topics.v[i];

    if (r->state[i] != TOPIC_MISSING) continue;
    v[k] = rd_kafka_NewTopic_new(t->name, t->partitions, r->replication, errstr, sizeof(errstr));
    if (v[k] == NULL) {
      AS_ERROR(&r->log, "topic refused by librdkafka", AS_F_STR("topic", t->name),
               AS_F_STR("detail", errstr));
      rd_kafka_NewTopic_destroy_array(v, k);
      free(v);
      return -1;
    }
    k++;
  }
  *out = v;
  return (int)k;
oom:
  AS_ERROR(&r->log, "out of memory");
  return -1;
}

static ssize_t wanted_index(const topics_run_t *r, const char *name) {
  for (size_t i = 0; i < r->o->topics.n; i++)
    if (strcmp(r->o->topics.v[i].name, name) == 0) return (ssize_t)i;
  return -1;
}

/* One topic's answer. TOPIC_ALREADY_EXISTS (someone else created it since
 * our metadata round) is compared like any existing topic. */
static void create_result(topics_run_t *r, const rd_kafka_topic_result_t *tr) {
  const char *name = rd_kafka_topic_result_name(tr);
  rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr);
  ssize_t i = wanted_index(r, name);

  if (i < 0) return;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    r->state[i] = err == RD_KAFKA_RESP_ERR_NO_ERROR ? TOPIC_CREATING : TOPIC_UNKNOWN;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    r->created++;
    printf("created topic=%s partitions=%d replication=%d\n", name, r->o->topics.v[i].partitions,
           r->replication);
    return;
  }
  r->state[i] = TOPIC_FAILED;
  r->differences++;
  printf("failed topic=%s error=%s\n", name, rd_kafka_err2name(err));
  AS_ERROR(&r->log, "topic creation failed", AS_F_STR("topic", name),
           AS_F_STR("error", rd_kafka_err2name(err)),
           AS_F_STR("detail", rd_kafka_topic_result_error_string(tr)));
}

/* Waits for the CreateTopics answer on q; 0, or -1 (logged). */
static int create_wait(topics_run_t *r, rd_kafka_queue_t *q) {
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, remaining_ms(r) + 1000);
  const rd_kafka_CreateTopics_result_t *res;
  const rd_kafka_topic_result_t **trs;
  size_t n = 0;
  int rc = -1;

  if (ev == NULL) {
    AS_ERROR(&r->log, "no answer to CreateTopics in time");
    return -1;
  }
  res = rd_kafka_event_CreateTopics_result(ev);
  if (res == NULL || rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    AS_ERROR(&r->log, "CreateTopics failed",
             AS_F_STR("error", rd_kafka_err2name(rd_kafka_event_error(ev))),
             AS_F_STR("detail", rd_kafka_event_error_string(ev)));
    goto out;
  }
  trs = rd_kafka_CreateTopics_result_topics(res, &n);
  for (size_t i = 0; i < n; i++) create_result(r, trs[i]);
  rc = 0;
out:
  rd_kafka_event_destroy(ev);
  return rc;
}

static int create_missing(topics_run_t *r) {
  rd_kafka_NewTopic_t **v = NULL;
  rd_kafka_AdminOptions_t *ao = NULL;
  rd_kafka_queue_t *q = NULL;
  char errstr[512];
  int n = create_list(r, &v), rc = -1;

  if (n <= 0) return n;
  ao = rd_kafka_AdminOptions_new(r->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  q = rd_kafka_queue_new(r->rk);
  if (ao == NULL || q == NULL ||
      rd_kafka_AdminOptions_set_request_timeout(ao, remaining_ms(r) + 1, errstr, sizeof(errstr)) ||
      rd_kafka_AdminOptions_set_operation_timeout(ao, remaining_ms(r), errstr, sizeof(errstr))) {
    AS_ERROR(&r->log, "cannot set up CreateTopics");
    goto out;
  }
  rd_kafka_CreateTopics(r->rk, v, (size_t)n, ao, q);
  rc = create_wait(r, q);
out:
  if (q != NULL) rd_kafka_queue_destroy(q);
  if (ao != NULL) rd_kafka_AdminOptions_destroy(ao);
  rd_kafka_NewTopic_destroy_array(v, (size_t)n);
  free(v);
  return rc;
}

/* Until every created topic is led and every raced one compared, or time
 * runs out (each left over is then a failure). */
static void await_created(topics_run_t *r) {
  struct timespec pause = {0, 100 * 1000000L};

  while (count_state(r, TOPIC_CREATING) + count_state(r, TOPIC_UNKNOWN) > 0) {
    if (refresh(r, false) != 0 || remaining_ms(r) == 0) break;
    if (count_state(r, TOPIC_CREATING) + count_state(r, TOPIC_UNKNOWN) == 0) return;
    nanosleep(&pause, NULL);
  }
  for (size_t i = 0; i < r->o->topics.n; i++) {
    if (r->state[i] != TOPIC_CREATING && r->state[i] != TOPIC_UNKNOWN) continue;
    r->state[i] = TOPIC_FAILED;
    r->differences++;
    printf("failed topic=%s error=_TIMED_OUT\n", r->o->topics.v[i].name);
    AS_ERROR(&r->log, "topic not led in time", AS_F_STR("topic", r->o->topics.v[i].name));
  }
}

/* ---- the run ----------------------------------------------------------- */

static int topics_apply(topics_run_t *r) {
  if (refresh(r, true) != 0) return TOPICS_EXIT_UNREACHABLE;
  r->replication = r->o->replication != TOPICS_REPLICATION_AUTO ? r->o->replication
                   : r->brokers == 1                            ? 1
                                                                : -1;
  if (r->o->check)
    report_missing(r);
  else if (create_missing(r) != 0)
    return TOPICS_EXIT_UNREACHABLE;
  else
    await_created(r);
  AS_INFO(&r->log, r->o->check ? "topics checked" : "topics applied",
          AS_F_STR("bootstrap", r->o->bootstrap), AS_F_INT("brokers", r->brokers),
          AS_F_INT("topics", r->o->topics.n), AS_F_INT("created", r->created),
          AS_F_INT("differences", r->differences));
  return r->differences ? TOPICS_EXIT_DIFFERS : 0;
}

static int topics_run(const topics_opts_t *o) {
  topics_run_t r = {.o = o, .deadline_ms = now_ms() + o->timeout_ms};
  char host[64] = "unknown";
  int rc = TOPICS_EXIT_UNREACHABLE;

  if (gethostname(host, sizeof(host)) != 0) host[0] = '\0';
  host[sizeof(host) - 1] = '\0';
  as_log_init(&r.log, "topics", host, AS_LOG_INFO);
  r.state = calloc(o->topics.n, sizeof(*r.state));
  if (r.state == NULL) {
    AS_ERROR(&r.log, "out of memory");
    return rc;
  }
  r.rk = topics_client_new(&r);
  if (r.rk != NULL) rc = topics_apply(&r);
  if (fflush(stdout) != 0) rc = TOPICS_EXIT_UNREACHABLE;
  if (r.rk != NULL) rd_kafka_destroy(r.rk);
  free(r.state);
  return rc;
}

int main(int argc, char **argv) {
  topics_opts_t o = {.replication = TOPICS_REPLICATION_AUTO, .timeout_ms = 30000};
  int rc = opts_parse(&o, argc, argv);

  if (rc == 1 || rc == 2) {
    if (rc == 1)
      usage(stdout);
    else
      printf("as-topics %s (commit %s)\n", as_version, as_commit);
    as_topicfile_free(&o.topics);
    return 0;
  }
  if (rc != 0 || opts_finish(&o) != 0) {
    fputs("try: as-topics --help\n", stderr);
    as_topicfile_free(&o.topics);
    return TOPICS_EXIT_USAGE;
  }
  /* A reader that closes our stdout pipe must not kill us. */
  signal(SIGPIPE, SIG_IGN);
  rc = topics_run(&o);
  as_topicfile_free(&o.topics);
  return rc;
}
