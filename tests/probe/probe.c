/* probe: counts synthetic probes per probe id and echoes each through the
 * outbox (see main.c for what the probe is for). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "as_topics.h"
#include "probe.h"

enum { P_ID, P_SEQ, P_AMOUNT };
static const as_col_t count_cols[] = {
    [P_ID] = {"probe_id", "text"},
    [P_SEQ] = {"seq", "bigint"},
    [P_AMOUNT] = {"amount_minor", "bigint"},
};
static const as_bulk_t sql_count = AS_BULK(
    "INSERT INTO probe_state AS t (probe_id, count, last_seq, total_minor)"
    " SELECT u.probe_id, count(*), max(u.seq), sum(u.amount_minor) FROM {{u}}"
    " GROUP BY u.probe_id ON CONFLICT (probe_id) DO UPDATE SET count = t.count + EXCLUDED.count,"
    " last_seq = greatest(t.last_seq, EXCLUDED.last_seq), total_minor = t.total_minor + "
    "EXCLUDED.total_minor"
    " RETURNING probe_id, count, total_minor",
    count_cols);

/* The probe's own contract; the envelope was checked by the runtime. */
static const char *validate(const Aftersales__V1__SyntheticProbe *p) {
  if (!as_envelope_id_ok(p->probe_id))
    return "probe_id must be 1..64 characters of [A-Za-z0-9._:-]";
  if (p->amount_minor < 0) return "amount_minor must not be negative";
  if (strlen(p->note) > 1000) return "note longer than 1000 bytes";
  return NULL;
}

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

int probe_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  (void)state;
  as_cols_t c;
  as_cols_init(&c, &sql_count);
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__SyntheticProbe *sp = msgs[i]->env->synthetic_probe;
    const char *why = validate(sp);
    if (why) {
      as_tx_reject(msgs[i], why);
      continue;
    }
    as_cols_str(&c, P_ID, sp->probe_id);
    as_cols_int(&c, P_SEQ, sp->seq);
    as_cols_int(&c, P_AMOUNT, sp->amount_minor);
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, as_tx_db(tx), &r);
  for (size_t i = 0; rc == 0 && r && i < n; i++)
    if (msgs[i]->state == AS_MSG_NEW) rc = echo(tx, msgs[i], r);
  PQclear(r);
  as_cols_free(&c);
  return rc;
}
