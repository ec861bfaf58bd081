/*
 * as-broker: a standalone process hosting librdkafka's in-memory mock Kafka
 * cluster, so the workers and their tests run on one machine with no real
 * Kafka. It creates every topic listed in proto/topics.tsv (plus any given
 * with --topic) with its partition count, prints one line
 * `bootstrap=<host:port,...>` on stdout, logs a JSON "broker ready" line on
 * stderr and then stays up until SIGTERM or SIGINT. The mock speaks the real
 * Kafka protocol, so kcat and every client can talk to it, but in
 * librdkafka 2.0.2 it has limits that tests must respect: it keeps only about
 * 5 MiB per partition (older messages are dropped, so a consumer lagging
 * further loses data), it has no CreateTopics (topics exist only if this
 * process creates them), it keeps everything in memory, it neither dedupes
 * idempotent-producer retries nor honours transactions, a rebalance waits for
 * session.timeout.ms, group members listing assignors in different orders
 * crash it, and static membership misbehaves. Real Kafka has none of these.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "as_process.h" /* as_version, as_commit */

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define BROKER_EXIT_USAGE 2
#define BROKER_MAX_PARTITIONS 1000
#define BROKER_MAX_BROKERS 16
#define BROKER_MAX_TOPIC_LEN 249 /* Kafka's own limit on topic names */

typedef struct {
  char *name; /* owned */
  int partitions;
} broker_topic_t;

typedef struct {
  broker_topic_t *v; /* owned array of n entries */
  size_t n;
  size_t cap;
} broker_topics_t;

typedef struct {
  const char *topics_file; /* borrowed from argv */
  int brokers;
  int replication;
  broker_topics_t topics;
} broker_opts_t;

/* ---- JSON logging on stderr ------------------------------------------- */

static void log_put_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

/* The ISO 8601 UTC timestamp every fleet log line starts with. */
static void log_put_ts(FILE *f) {
  struct timespec now;
  struct tm tm;
  char buf[32];

  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(f, "\"%s.%03ldZ\"", buf, now.tv_nsec / 1000000L);
}

/* librdkafka logs from its own threads: the stderr lock keeps each JSON
 * line whole; log_close() releases it. */
static void log_open(const char *level, const char *msg) {
  flockfile(stderr);
  fputs("{\"ts\":", stderr);
  log_put_ts(stderr);
  fprintf(stderr, ",\"level\":\"%s\",\"service\":\"broker\",\"msg\":", level);
  log_put_json_str(stderr, msg);
}

static void log_str(const char *key, const char *val) {
  fprintf(stderr, ",\"%s\":", key);
  log_put_json_str(stderr, val);
}

static void log_int(const char *key, long val) {
  fprintf(stderr, ",\"%s\":%ld", key, val);
}

static void log_close(void) {
  fputs("}\n", stderr);
  fflush(stderr);
  funlockfile(stderr);
}

static const char *log_level_name(int syslog_level) {
  if (syslog_level <= LOG_ERR) return "error";
  if (syslog_level == LOG_WARNING) return "warn";
  return syslog_level == LOG_DEBUG ? "debug" : "info";
}

/* Runs on librdkafka threads; must not call back into librdkafka. */
static void broker_rdkafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                                  const char *buf) {
  (void)rk;
  log_open(log_level_name(level), buf);
  log_str("facility", fac);
  log_close();
}

/* ---- option and topic-file parsing ------------------------------------- */

static void usage(FILE *f) {
  fputs(
      "usage: as-broker [--topics FILE] [--topic NAME:PARTITIONS]...\n"
      "                 [--brokers N] [--replication N]\n"
      "\n"
      "Hosts librdkafka's in-memory mock Kafka cluster, creates the topics,\n"
      "prints `bootstrap=<host:port,...>` on stdout and runs until SIGTERM\n"
      "or SIGINT.\n"
      "\n"
      "  --topics FILE          topics file: `name partitions key [description]`\n"
      "                         per line, `#` comments (proto/topics.tsv)\n"
      "  --topic NAME:PARTS     one more topic; may be repeated\n"
      "  --brokers N            mock brokers, 1..16 (default 1)\n"
      "  --replication N        replication factor, 1..brokers (default 1)\n"
      "  --help                 this text\n"
      "  --version              version and commit\n",
      f);
}

/* Kafka accepts [A-Za-z0-9._-], at most 249 chars, and not "." or "..". */
static bool topic_name_valid(const char *name) {
  size_t len = strlen(name);

  if (len == 0 || len > BROKER_MAX_TOPIC_LEN) return false;
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
  return strspn(name,
                "abcdefghijklmnopqrstuvwxyz"
                "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789._-") == len;
}

/* Parses a whole decimal string into [min, max]; -1 on anything else. */
static int parse_int(const char *s, int min, int max, int *out) {
  char *end;
  long v;

  if (*s < '0' || *s > '9') /* strtol would take " 3", "+3" and "-0" */
    return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return -1;
  *out = (int)v;
  return 0;
}

static broker_topic_t *topics_find(broker_topics_t *t, const char *name) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].name, name) == 0) return &t->v[i];
  return NULL;
}

static int topics_grow(broker_topics_t *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  broker_topic_t *v = realloc(t->v, cap * sizeof(*v));

  if (v == NULL) return -1;
  t->v = v;
  t->cap = cap;
  return 0;
}

/* Adds one validated topic. The same topic twice with the same count is
 * harmless (a test adding a file topic again); with another count it is a
 * contradiction we refuse. `where` names the source for the error text. */
static int topics_add(broker_topics_t *t, const char *name, const char *parts, const char *where) {
  broker_topic_t *dup;
  int n;

  if (!topic_name_valid(name)) {
    fprintf(stderr,
            "as-broker: %s: invalid topic name \"%s\"\n"
            "hint: use 1..249 of [A-Za-z0-9._-], not \".\" or \"..\"\n",
            where, name);
    return -1;
  }
  if (parse_int(parts, 1, BROKER_MAX_PARTITIONS, &n) != 0) {
    fprintf(stderr,
            "as-broker: %s: invalid partition count \"%s\" for topic %s\n"
            "hint: use an integer in 1..%d\n",
            where, parts, name, BROKER_MAX_PARTITIONS);
    return -1;
  }
  dup = topics_find(t, name);
  if (dup != NULL) {
    if (dup->partitions == n) return 0;
    fprintf(stderr, "as-broker: %s: topic %s given with %d partitions, earlier with %d\n", where,
            name, n, dup->partitions);
    return -1;
  }
  if (t->n == t->cap && topics_grow(t) != 0) goto oom;
  t->v[t->n].name = strdup(name);
  if (t->v[t->n].name == NULL) goto oom;
  t->v[t->n++].partitions = n;
  return 0;
oom:
  fprintf(stderr, "as-broker: out of memory\n");
  return -1;
}

static void topics_free(broker_topics_t *t) {
  for (size_t i = 0; i < t->n; i++) free(t->v[i].name);
  free(t->v);
  *t = (broker_topics_t){0};
}

/* One topics-file line: blank and `#` lines are skipped; otherwise at least
 * `name partitions key` must be there (the key column is what the rest of
 * the fleet documents, so a line without it is a broken line). */
static int topics_parse_line(broker_topics_t *t, char *line, const char *where) {
  char *save = NULL;
  const char *sep = " \t\r\n";
  char *name = strtok_r(line, sep, &save);
  char *parts, *key;

  if (name == NULL || name[0] == '#') return 0;
  parts = strtok_r(NULL, sep, &save);
  key = parts ? strtok_r(NULL, sep, &save) : NULL;
  if (key == NULL) {
    fprintf(stderr,
            "as-broker: %s: malformed line\n"
            "detail: expected `name partitions key [description]`\n",
            where);
    return -1;
  }
  return topics_add(t, name, parts, where);
}

static int topics_load_file(broker_topics_t *t, const char *path) {
  FILE *f = fopen(path, "r");
  char *line = NULL, where[PATH_MAX + 32];
  size_t cap = 0;
  long lineno = 0;
  int rc = 0;

  if (f == NULL) {
    fprintf(stderr, "as-broker: cannot open topics file %s: %s\n", path, strerror(errno));
    return -1;
  }
  while (rc == 0 && getline(&line, &cap, f) != -1) {
    snprintf(where, sizeof(where), "%s:%ld", path, ++lineno);
    rc = topics_parse_line(t, line, where);
  }
  if (rc == 0 && ferror(f)) {
    fprintf(stderr, "as-broker: error reading %s\n", path);
    rc = -1;
  }
  free(line);
  fclose(f);
  return rc;
}

/* `--topic NAME:PARTITIONS`; names cannot hold ':', so split at the last. */
static int topics_add_arg(broker_topics_t *t, const char *arg) {
  char *copy = strdup(arg), *colon;
  int rc = -1;

  if (copy == NULL) {
    fprintf(stderr, "as-broker: out of memory\n");
    return -1;
  }
  colon = strrchr(copy, ':');
  if (colon == NULL)
    fprintf(stderr, "as-broker: --topic %s: expected NAME:PARTITIONS\n", arg);
  else {
    *colon = '\0';
    rc = topics_add(t, copy, colon + 1, "--topic");
  }
  free(copy);
  return rc;
}

static int opts_parse_int(const char *flag, const char *val, int max, int *out) {
  if (parse_int(val, 1, max, out) == 0) return 0;
  fprintf(stderr, "as-broker: %s \"%s\": expected an integer in 1..%d\n", flag, val, max);
  return -1;
}

/* Returns 0 to run, 1 after --help, 2 after --version, -1 on a usage error
 * (already reported). */
static int opts_parse(broker_opts_t *o, int argc, char **argv) {
  static const struct option longopts[] = {
      {"topics", required_argument, NULL, 'f'},
      {"topic", required_argument, NULL, 't'},
      {"brokers", required_argument, NULL, 'b'},
      {"replication", required_argument, NULL, 'r'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'v'},
      {NULL, 0, NULL, 0},
  };
  int c, rc = 0;

  while (rc == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    if (c == 'f')
      o->topics_file = optarg;
    else if (c == 't')
      rc = topics_add_arg(&o->topics, optarg);
    else if (c == 'b')
      rc = opts_parse_int("--brokers", optarg, BROKER_MAX_BROKERS, &o->brokers);
    else if (c == 'r')
      rc = opts_parse_int("--replication", optarg, BROKER_MAX_BROKERS, &o->replication);
    else if (c == 'h')
      return 1;
    else if (c == 'v')
      return 2;
    else
      rc = -1; /* getopt already said what was wrong */
  }
  if (rc == 0 && optind < argc) {
    fprintf(stderr, "as-broker: unexpected argument \"%s\"\n", argv[optind]);
    rc = -1;
  }
  return rc;
}

/* Cross-checks that need every option: file topics, the replication bound
 * (the mock cannot place more replicas than brokers), at least one topic
 * (a broker with none is always a mistake, and it cannot grow any). */
static int opts_finish(broker_opts_t *o) {
  if (o->topics_file != NULL && topics_load_file(&o->topics, o->topics_file) != 0) return -1;
  if (o->replication > o->brokers) {
    fprintf(stderr, "as-broker: --replication %d exceeds --brokers %d\n", o->replication,
            o->brokers);
    return -1;
  }
  if (o->topics.n == 0) {
    fprintf(stderr,
            "as-broker: no topics\n"
            "hint: pass --topics proto/topics.tsv or --topic NAME:PARTITIONS\n");
    return -1;
  }
  return 0;
}

/* ---- the mock cluster -------------------------------------------------- */

/* The mock cluster needs a client handle to live in; a producer that never
 * produces is the cheapest. Log level 4 (warning) keeps the mock's
 * per-connection chatter off stderr while real trouble still shows. The
 * mock brokers' sockets take this handle's settings: with Nagle's algorithm
 * on, pipelined responses met the clients' delayed ACKs and every produce
 * round trip of more than a few messages took ~44 ms instead of ~2 ms. */
static rd_kafka_t *broker_handle_new(void) {
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_t *rk;

  if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "client.id", "as-broker", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "socket.nagle.disable", "true", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    fprintf(stderr, "as-broker: librdkafka config: %s\n", errstr);
    return NULL;
  }
  rd_kafka_conf_set_log_cb(conf, broker_rdkafka_log_cb);
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == NULL) { /* on failure conf is still ours */
    rd_kafka_conf_destroy(conf);
    fprintf(stderr, "as-broker: rd_kafka_new: %s\n", errstr);
  }
  return rk;
}

static int broker_create_topics(rd_kafka_mock_cluster_t *mc, const broker_opts_t *o) {
  for (size_t i = 0; i < o->topics.n; i++) {
    const broker_topic_t *t = &o->topics.v[i];
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(mc, t->name, t->partitions, o->replication);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      log_open("error", "topic creation failed");
      log_str("topic", t->name);
      log_str("error", rd_kafka_err2str(err));
      log_close();
      return -1;
    }
  }
  return 0;
}

/* Waits for SIGTERM/SIGINT, which main() blocked before any librdkafka
 * thread existed, so every thread inherits the mask and sigwait() here is
 * the only place they are delivered: no handler, no busy loop. */
static int broker_wait_signal(const sigset_t *set) {
  int sig = 0;

  while (sigwait(set, &sig) != 0)
    ;
  return sig;
}

static int broker_announce(const rd_kafka_mock_cluster_t *mc, size_t ntopics) {
  const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);

  /* The one stdout line; the launcher reads it, so flush it now. */
  if (printf("bootstrap=%s\n", bootstrap) < 0 || fflush(stdout) != 0) {
    fprintf(stderr, "as-broker: cannot write to stdout: %s\n", strerror(errno));
    return -1;
  }
  log_open("info", "broker ready");
  log_str("bootstrap", bootstrap);
  log_int("topics", (long)ntopics);
  log_close();
  return 0;
}

static int broker_run(const broker_opts_t *o, const sigset_t *sigs) {
  rd_kafka_t *rk = NULL;
  rd_kafka_mock_cluster_t *mc = NULL;
  int rc = 1, sig;

  rk = broker_handle_new();
  if (rk == NULL) goto out;
  mc = rd_kafka_mock_cluster_new(rk, o->brokers);
  if (mc == NULL) {
    fprintf(stderr, "as-broker: cannot create the mock cluster\n");
    goto out;
  }
  if (broker_create_topics(mc, o) != 0 || broker_announce(mc, o->topics.n) != 0) goto out;
  sig = broker_wait_signal(sigs);
  log_open("info", "broker stopping");
  log_str("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  log_close();
  rc = 0;
out:
  /* The cluster lives inside rk, so it goes first. */
  if (mc != NULL) rd_kafka_mock_cluster_destroy(mc);
  if (rk != NULL) rd_kafka_destroy(rk);
  return rc;
}

int main(int argc, char **argv) {
  broker_opts_t o = {.brokers = 1, .replication = 1};
  sigset_t sigs;
  int rc;

  rc = opts_parse(&o, argc, argv);
  if (rc == 1 || rc == 2) {
    if (rc == 1)
      usage(stdout);
    else
      printf("as-broker %s (commit %s)\n", as_version, as_commit);
    topics_free(&o.topics);
    return 0;
  }
  if (rc != 0 || opts_finish(&o) != 0) {
    fputs("try: as-broker --help\n", stderr);
    topics_free(&o.topics);
    return BROKER_EXIT_USAGE;
  }
  /* A reader that closes our stdout/stderr pipe must not kill us. */
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  rc = broker_run(&o, &sigs);
  topics_free(&o.topics);
  return rc;
}
