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
 * Fault injection for tests: with --faults FILE, SIGUSR1 makes it read FILE
 * and apply each line: `produce_errors CODE...` (the next Produce requests
 * fail with those Kafka error codes, one per request, in order: see
 * rd_kafka_mock_push_request_errors) or `rtt MS` (every broker answers that
 * much later, so that requests pile up in flight), then log "faults
 * injected".
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

#include "as_int.h"
#include "as_process.h" /* as_version, as_commit */

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "as_topicfile.h"

#define BROKER_EXIT_USAGE 2
#define BROKER_MAX_BROKERS 16

typedef struct {
  const char *topics_file; /* borrowed from argv */
  const char *faults_file; /* borrowed from argv; NULL = no fault injection */
  int brokers;
  int replication;
  as_topicfile_t topics;
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
      "                 [--brokers N] [--replication N] [--faults FILE]\n"
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
      "  --faults FILE          on SIGUSR1, apply FILE's lines `produce_errors CODE...`\n"
      "                         (the next Produce requests fail with those codes)\n"
      "                         and `rtt MS` (every broker answers MS later)\n"
      "  --help                 this text\n"
      "  --version              version and commit\n",
      f);
}

/* A whole decimal string of digits into [min, max]; -1 on anything else. */
static int parse_int(const char *s, int min, int max, int *out) {
  long long v;
  if (as_int_parse(s, 0, min, max, &v) != 0) return -1;
  *out = (int)v;
  return 0;
}

/* `--topic NAME:PARTITIONS` (as_topicfile's reading of it). */
static int topics_add_arg(as_topicfile_t *t, const char *arg) {
  char err[512];

  if (as_topicfile_add_arg(t, arg, err, sizeof(err)) == 0) return 0;
  fprintf(stderr, "as-broker: %s\n", err);
  return -1;
}

static int topics_load_file(as_topicfile_t *t, const char *path) {
  char err[PATH_MAX + 512];

  if (as_topicfile_load(t, path, err, sizeof(err)) == 0) return 0;
  fprintf(stderr, "as-broker: %s\n", err);
  return -1;
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
      {"topics", required_argument, NULL, 'f'},  {"topic", required_argument, NULL, 't'},
      {"brokers", required_argument, NULL, 'b'}, {"replication", required_argument, NULL, 'r'},
      {"faults", required_argument, NULL, 'x'},  {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'v'},       {NULL, 0, NULL, 0},
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
    else if (c == 'x')
      o->faults_file = optarg;
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
    const as_topicfile_entry_t *t = &o->topics.v[i];
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

/* One `produce_errors CODE...` line: the next Produce requests fail with
 * those codes, one request each; or `rtt MS`. Returns the number of codes,
 * -1 if the line is neither. */
static int faults_apply_line(rd_kafka_mock_cluster_t *mc, int brokers, char *line) {
  char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
  rd_kafka_resp_err_t errs[64];
  size_t n = 0;
  int code;

  if (tok == NULL || tok[0] == '#') return 0;
  if (strcmp(tok, "rtt") == 0) {
    tok = strtok_r(NULL, " \t\r\n", &save);
    if (tok == NULL || parse_int(tok, 0, 60000, &code) != 0) return -1;
    for (int b = 1; b <= brokers; b++) rd_kafka_mock_broker_set_rtt(mc, b, code);
    return 0;
  }
  if (strcmp(tok, "produce_errors") != 0) return -1;
  while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL && n < 64) {
    if (parse_int(tok, 1, 32767, &code) != 0) return -1;
    errs[n++] = (rd_kafka_resp_err_t)code;
  }
  rd_kafka_mock_push_request_errors_array(mc, 0 /* Produce */, n, errs);
  return (int)n;
}

/* SIGUSR1: the faults file, read and applied now. */
static void faults_apply(rd_kafka_mock_cluster_t *mc, int brokers, const char *path) {
  char line[1024];
  long errors = 0;
  FILE *f = path ? fopen(path, "r") : NULL;

  if (f == NULL) {
    log_open("error", "faults file not readable");
    log_str("path", path ? path : "(no --faults)");
    log_close();
    return;
  }
  while (fgets(line, sizeof line, f) != NULL) {
    int n = faults_apply_line(mc, brokers, line);
    if (n < 0) {
      log_open("error", "faults file: bad line, ignored");
      log_close();
    } else {
      errors += n;
    }
  }
  fclose(f);
  log_open("info", "faults injected");
  log_int("produce_errors", errors);
  log_close();
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
  while ((sig = broker_wait_signal(sigs)) == SIGUSR1) faults_apply(mc, o->brokers, o->faults_file);
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
    as_topicfile_free(&o.topics);
    return 0;
  }
  if (rc != 0 || opts_finish(&o) != 0) {
    fputs("try: as-broker --help\n", stderr);
    as_topicfile_free(&o.topics);
    return BROKER_EXIT_USAGE;
  }
  /* A reader that closes our stdout/stderr pipe must not kill us. */
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  rc = broker_run(&o, &sigs);
  as_topicfile_free(&o.topics);
  return rc;
}
