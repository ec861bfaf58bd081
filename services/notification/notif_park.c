/* notif_park: buyer-visible events read before their case's CaseOpened
 * (another topic's partition lagging) are parked, not lost: the envelope
 * as it came, in the parked table (it names no contact), told when the
 * case is projected (notif_cases_apply, in the same batch, in event order)
 * through the same handlers as a fresh event. Each parking moves the
 * case's "parked" deadline to AS_NOTIFICATION_PARK_HOURS from now; when it
 * fires the case never opened and its parked events are dropped, counted
 * and logged. No statement here scans the table: parking is one insert,
 * telling one probe per case (003's parked_case index), dropping one case.
 *
 * Ownership: nothing allocated outlives a call. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "as_buf.h"
#include "as_cols.h"
#include "as_deadline.h"
#include "as_envelope.h"
#include "notification.h"

#define PARK_KIND "parked"

enum { P_EVENT, P_CASE, P_AT, P_ENV, P_NCOLS };
static const as_col_t park_cols[P_NCOLS] = {
    [P_EVENT] = {"event_id", "text"},
    [P_CASE] = {"case_id", "text"},
    [P_AT] = {"occurred_at_us", "bigint"},
    [P_ENV] = {"envelope", "text"},
};
/* A redelivered parked event is parked once (its id). This statement
 * runs after notif_case_locks, so it sees a projection another instance
 * committed meanwhile: the cases projected by now are returned. */
static const as_bulk_t sql_park = AS_BULK(
    "WITH p AS (INSERT INTO parked (event_id, case_id, occurred_at_us, envelope)"
    " SELECT event_id, case_id, occurred_at_us, decode(envelope, 'hex') FROM {{u}}"
    " ON CONFLICT (event_id) DO NOTHING RETURNING case_id)"
    " SELECT count(*), coalesce(string_agg(DISTINCT p.case_id, ',') FILTER (WHERE EXISTS"
    " (SELECT 1 FROM cases c WHERE c.case_id = p.case_id)), '') FROM p",
    park_cols);

int notif_case_locks(as_tx_t *tx, const char *const *cases, size_t n) {
  if (n == 0) return 0;
  as_buf_t a;
  as_buf_init(&a);
  as_buf_arr_open(&a);
  for (size_t i = 0; i < n; i++) as_buf_arr_str(&a, cases[i]);
  as_buf_arr_close(&a);
  if (!as_buf_ok(&a)) {
    as_buf_free(&a);
    return -ENOMEM;
  }
  const char *v[] = {as_buf_str(&a)};
  PGresult *r = NULL;
  /* in the order of the lock keys, so that two batches locking some of the
   * same cases cannot deadlock on each other */
  int rc = as_db_query(as_tx_db(tx),
                       "SELECT count(pg_advisory_xact_lock(" NOTIF_CASE_LOCK_CLASS
                       ", k)) FROM"
                       " (SELECT DISTINCT hashtext(c) AS k FROM unnest($1::text[]) c ORDER BY k) l",
                       1, v, &r);
  PQclear(r);
  as_buf_free(&a);
  return rc;
}

/* A case another instance projected after this batch looked it up: its
 * projection committed before this one's lock, so it missed these rows.
 * Its "parked" deadline is moved to now: the scanner tells them at once
 * (notif_park_expired), not AS_NOTIFICATION_PARK_HOURS later. projected
 * is "a,b" (ids have no comma). */
static void released_now(notif_t *x, const char *projected, const char *const *cases, int64_t *due,
                         size_t n) {
  if (!projected[0]) return;
  int64_t now = as_now_us();
  for (size_t j = 0; j < n; j++) {
    size_t len = strlen(cases[j]);
    for (const char *p = projected; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
      if (strncmp(p, cases[j], len) == 0 && (p[len] == ',' || p[len] == '\0')) {
        due[j] = now;
        AS_INFO(x->log, "case projected by another instance meanwhile: parked events told now",
                AS_F_STR("case_id", cases[j]));
        break;
      }
  }
}

int notif_park(notif_t *x, as_tx_t *tx, const as_msg_t *const *msgs, size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_park);
  const char **cases = malloc(n * sizeof *cases), **kinds = malloc(n * sizeof *kinds);
  int64_t *due = malloc(n * sizeof *due);
  size_t ncases = 0;
  int rc = cases && kinds && due ? 0 : -ENOMEM;
  int64_t until = as_now_us() + x->conf->park_hours * NOTIF_HOUR_US;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const as_msg_t *m = msgs[i];
    as_cols_str(&c, P_EVENT, m->env->event_id);
    as_cols_str(&c, P_CASE, m->env->case_id);
    as_cols_int(&c, P_AT, m->env->occurred_at_us);
    as_cols_hex(&c, P_ENV, m->rkm->payload, m->rkm->len);
    /* one deadline per case (as_deadline_set_many wants them distinct);
     * a batch parks few events, so the scan stays short */
    size_t j = 0;
    while (j < ncases && strcmp(cases[j], m->env->case_id) != 0) j++;
    if (j == ncases) {
      cases[ncases] = m->env->case_id;
      kinds[ncases] = PARK_KIND;
      due[ncases++] = until;
    }
  }
  PGresult *r = NULL;
  if (rc == 0) rc = notif_case_locks(tx, cases, ncases);
  if (rc == 0) rc = as_cols_run(&c, as_tx_db(tx), &r);
  if (rc == 0 && r && PQntuples(r) == 1) {
    long long k = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    as_counter_add(x->parked, (uint64_t)k);
    if (k)
      AS_INFO(x->log, "events parked: their case is not projected yet", AS_F_INT("events", k),
              AS_F_STR("case_id", cases[0]));
    released_now(x, PQgetvalue(r, 0, 1), cases, due, ncases);
  }
  PQclear(r);
  if (rc == 0) rc = as_deadline_set_many(tx, cases, kinds, due, ncases);
  as_cols_free(&c);
  free(cases);
  free(kinds);
  free(due);
  return rc;
}

int notif_unpark(notif_t *x, as_tx_t *tx, PGresult *r) {
  size_t n = (size_t)PQntuples(r);
  if (n == 0) return 0;
  as_msg_t *msgs = calloc(n, sizeof *msgs);
  as_msg_t **ptrs = calloc(n, sizeof *ptrs);
  const char **cases = calloc(n, sizeof *cases), **kinds = calloc(n, sizeof *kinds);
  size_t k = 0;
  int rc = msgs && ptrs && cases && kinds ? 0 : -ENOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    cases[i] = PQgetvalue(r, (int)i, 0);
    kinds[i] = PARK_KIND;
    size_t len = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, (int)i, 1), &len);
    if (!b) {
      rc = -ENOMEM;
      break;
    }
    const char *reason = NULL;
    char detail[160];
    as_envelope_t *env = as_envelope_decode(b, len, &reason, detail, sizeof detail);
    PQfreemem(b);
    if (!env) { /* it decoded when it came: only a contract change can do this */
      as_counter_add(x->parked_dropped, 1);
      AS_ERROR(x->log, "parked event no longer decodes: dropped", AS_F_STR("case_id", cases[i]),
               AS_F_STR("reason", reason));
      continue;
    }
    msgs[k] = (as_msg_t){.env = env, .state = AS_MSG_NEW};
    ptrs[k] = &msgs[k];
    k++;
  }
  if (rc == 0) rc = notif_events_apply(x, tx, ptrs, k);
  for (size_t i = 0; rc == 0 && i < k; i++)
    if (msgs[i].state != AS_MSG_NEW) { /* refused now (a template gone since): not told */
      as_counter_add(x->parked_dropped, 1);
      AS_WARN(x->log, "parked event refused when told", AS_F_STR("case_id", msgs[i].env->case_id),
              AS_F_STR("detail", msgs[i].dead_detail));
    } else {
      as_counter_add(x->parked_told, 1);
    }
  if (rc == 0) rc = as_deadline_cancel_many(tx, cases, kinds, n);
  for (size_t i = 0; i < k; i++) as_envelope_free(msgs[i].env);
  free(msgs);
  free(ptrs);
  free(cases);
  free(kinds);
  return rc;
}

/* Normally the case never opened. But a CaseOpened projected by another
 * instance while this one parked (neither saw the other's uncommitted row)
 * leaves events parked for a projected case: those are told now, late,
 * rather than dropped. */
int notif_park_expired(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                       int64_t due_us) {
  notif_t *x = state;
  (void)kind;
  (void)due_us;
  const char *v[] = {case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx),
                       "WITH d AS (DELETE FROM parked WHERE case_id = $1"
                       " RETURNING case_id, envelope, occurred_at_us, arrival)"
                       " SELECT d.case_id, d.envelope,"
                       " EXISTS (SELECT 1 FROM cases c WHERE c.case_id = $1)"
                       " FROM d ORDER BY d.occurred_at_us, d.arrival",
                       1, v, &r);
  int n = rc == 0 ? PQntuples(r) : 0;
  if (n > 0 && PQgetvalue(r, 0, 2)[0] == 't') {
    AS_WARN(x->log, "parked events of a projected case told late", AS_F_STR("case_id", case_id),
            AS_F_INT("events", n));
    rc = notif_unpark(x, tx, r);
  } else if (n > 0) {
    as_counter_add(x->parked_dropped, (uint64_t)n);
    AS_WARN(x->log, "parked events dropped: their case never opened", AS_F_STR("case_id", case_id),
            AS_F_INT("events", n), AS_F_INT("park_hours", x->conf->park_hours));
  }
  PQclear(r);
  return rc;
}
