/* as-probe: the test-only worker that exercises the runtime end to end.
 *
 * It consumes SyntheticProbe events, adds each to a per-probe-id counter
 * (one state write per batch), and publishes a ProbeEchoed event per probe
 * through the outbox. Tests and `make bench` drive it; its behaviour on bad
 * input is what every real worker inherits from the runtime:
 *  - a probe whose id is empty or unsafe, or whose amount is negative, is
 *    refused by its validator (contract_violation);
 *  - an amount that passes validation but breaks the table's CHECK makes
 *    the batch fail in the database, which the runtime replays message by
 *    message and dead-letters as handler_failed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_buf.h"
#include "as_worker.h"
#include "as_topics.h"

extern const as_migration_t as_sql_probe[];

typedef struct probe {
  as_worker_t *w;
  char sql[768];
} probe_t;

/* The probe's own contract; the envelope was checked by the runtime. */
static const char *validate(const Aftersales__V1__SyntheticProbe *p) {
  if (!as_envelope_id_ok(p->probe_id)) return "probe_id must be 1..64 characters of [A-Za-z0-9._:-]";
  if (p->amount_minor < 0) return "amount_minor must not be negative";
  if (strlen(p->note) > 1000) return "note longer than 1000 bytes";
  return NULL;
}

static int init(as_worker_t *w, void **state) {
  probe_t *p = calloc(1, sizeof *p);
  if (!p) return -1;
  p->w = w;
  const char *s = as_worker_schema(w);
  snprintf(p->sql, sizeof p->sql,
           "INSERT INTO %s.probe_state AS t (probe_id, count, last_seq, total_minor)"
           " SELECT u.p, count(*), max(u.s), sum(u.a) FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
           " AS u(p, s, a) GROUP BY u.p ON CONFLICT (probe_id) DO UPDATE SET count = t.count + EXCLUDED.count,"
           " last_seq = greatest(t.last_seq, EXCLUDED.last_seq), total_minor = t.total_minor + EXCLUDED.total_minor"
           " RETURNING probe_id, count, total_minor",
           s);
  *state = p;
  return 0;
}

static void fini(void *state) { free(state); }

static int echo(as_tx_t *tx, const as_msg_t *m, PGresult *r) {
  const Aftersales__V1__SyntheticProbe *sp = m->env->synthetic_probe;
  Aftersales__V1__ProbeEchoed e = AFTERSALES__V1__PROBE_ECHOED__INIT;
  e.probe_id = sp->probe_id;
  e.seq = sp->seq;
  for (int i = 0; i < PQntuples(r); i++)
    if (strcmp(PQgetvalue(r, i, 0), sp->probe_id) == 0) {
      e.count = strtoll(PQgetvalue(r, i, 1), NULL, 10);
      e.total_minor = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.case_id = m->env->case_id;
  env.order_id = m->env->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_PROBE_ECHOED;
  env.probe_echoed = &e;
  return as_tx_publish(tx, m, AS_TOPIC_NAME_PROBE_ECHO, sp->probe_id, &env);
}

static int handle(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  probe_t *p = state;
  as_buf_t ids, seqs, amounts;
  as_buf_init(&ids);
  as_buf_init(&seqs);
  as_buf_init(&amounts);
  as_buf_arr_open(&ids);
  as_buf_arr_open(&seqs);
  as_buf_arr_open(&amounts);
  size_t good = 0;
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__SyntheticProbe *sp = msgs[i]->env->synthetic_probe;
    const char *why = validate(sp);
    if (why) {
      as_tx_reject(msgs[i], why);
      continue;
    }
    char num[24];
    as_buf_arr_str(&ids, sp->probe_id);
    as_buf_arr_raw(&seqs, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)sp->seq));
    as_buf_arr_raw(&amounts, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)sp->amount_minor));
    good++;
  }
  as_buf_arr_close(&ids);
  as_buf_arr_close(&seqs);
  as_buf_arr_close(&amounts);
  int rc = (as_buf_ok(&ids) && as_buf_ok(&seqs) && as_buf_ok(&amounts)) ? 0 : -ENOMEM;
  PGresult *r = NULL;
  if (rc == 0 && good > 0) {
    const char *vals[3] = {as_buf_str(&ids), as_buf_str(&seqs), as_buf_str(&amounts)};
    rc = as_db_query(as_tx_db(tx), p->sql, 3, vals, &r);
  }
  for (size_t i = 0; rc == 0 && i < n && good > 0; i++)
    if (msgs[i]->state == AS_MSG_NEW) rc = echo(tx, msgs[i], r);
  PQclear(r);
  as_buf_free(&ids);
  as_buf_free(&seqs);
  as_buf_free(&amounts);
  return rc;
}

static const char *const topics[] = {AS_TOPIC_NAME_PROBE};
static const Aftersales__V1__Envelope__PayloadCase accepts[] = {
    AFTERSALES__V1__ENVELOPE__PAYLOAD_SYNTHETIC_PROBE};

static const as_service_t probe_service = {
    .name = "probe",
    .summary = "as-probe: the runtime's test worker (counts synthetic probes, echoes each through the outbox)",
    .topics = topics,
    .ntopics = 1,
    .accepts = accepts,
    .naccepts = 1,
    .migrations = as_sql_probe,
    .init = init,
    .fini = fini,
    .handle = handle,
};

int main(int argc, char **argv) { return as_worker_main(&probe_service, argc, argv); }
