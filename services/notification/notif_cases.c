/* notif_cases: the little the worker keeps of each case to tell its
 * events: the buyer, the case number, the locale and submission time from
 * CaseOpened (one bulk statement per batch, before the batch's other
 * events are told; the same statement takes the events parked for these
 * cases, told here, in event order: notif_park; the cases' locks taken
 * first, so that what another instance parked meanwhile is seen), and
 * ReturnShipped, which
 * stops the ship-by reminder. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "as_deadline.h"
#include "notification.h"

enum { K_CASE, K_NUMBER, K_BUYER, K_LOCALE, K_SUBMITTED, K_NCOLS };
static const as_col_t case_cols[K_NCOLS] = {
    [K_CASE] = {"case_id", "text"},
    [K_NUMBER] = {"case_number", "text"},
    [K_BUYER] = {"buyer_id", "text"},
    [K_LOCALE] = {"locale", "text"},
    [K_SUBMITTED] = {"submitted_at_us", "bigint"},
};
static const as_bulk_t sql_cases = AS_BULK(
    "WITH u AS (SELECT * FROM {{u}}),"
    " i AS (INSERT INTO cases (case_id, case_number, buyer_id, locale, submitted_at_us)"
    "  SELECT * FROM u ON CONFLICT (case_id) DO NOTHING),"
    " p AS (DELETE FROM parked WHERE case_id IN (SELECT case_id FROM u)"
    "  RETURNING case_id, envelope, occurred_at_us, arrival)"
    " SELECT case_id, envelope FROM p ORDER BY occurred_at_us, arrival",
    case_cols);

static const char *bad_case(const as_msg_t *m, const Aftersales__V1__CaseOpened *e) {
  if (!as_envelope_id_ok(e->case_id) || strcmp(e->case_id, m->env->case_id) != 0)
    return "case_id missing, unsafe or not the envelope's";
  if (!as_envelope_id_ok(e->buyer_id)) return "buyer_id missing or unsafe";
  if (!notif_text_ok(e->case_number, 64)) return "case_number longer than 64 bytes";
  if (!notif_text_ok(e->locale, 35)) return "locale longer than 35 bytes";
  return NULL;
}

int notif_cases_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_cases);
  const char **ids = malloc(n * sizeof *ids);
  size_t nids = 0;
  if (!ids) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__CaseOpened *e = msgs[i]->env->case_opened;
    const char *bad = bad_case(msgs[i], e);
    if (bad) {
      as_tx_reject(msgs[i], bad);
      continue;
    }
    ids[nids++] = e->case_id;
    as_cols_str(&c, K_CASE, e->case_id);
    as_cols_str(&c, K_NUMBER, e->case_number);
    as_cols_str(&c, K_BUYER, e->buyer_id);
    as_cols_str(&c, K_LOCALE, e->locale);
    as_cols_int(&c, K_SUBMITTED, e->submitted_at_us);
  }
  PGresult *r = NULL;
  /* another instance parking an event of these cases waits for this
   * commit, or this statement sees its parked rows (notif_park) */
  int rc = notif_case_locks(tx, ids, nids);
  free(ids);
  if (rc == 0) rc = as_cols_run(&c, as_tx_db(tx), &r);
  as_cols_free(&c);
  if (rc == 0 && r) rc = notif_unpark(state, tx, r);
  PQclear(r);
  return rc;
}

int notif_on_shipped(void *state, as_tx_t *tx, as_msg_t *m) {
  (void)state;
  const Aftersales__V1__ReturnShipped *e = m->env->return_shipped;
  if (!as_envelope_id_ok(e->case_id) || strcmp(e->case_id, m->env->case_id) != 0)
    return as_tx_reject(m, "case_id missing, unsafe or not the envelope's"), 0;
  const char *v[] = {e->case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), "UPDATE cases SET return_shipped = true WHERE case_id = $1", 1,
                       v, &r);
  PQclear(r);
  return rc < 0 ? rc : as_deadline_cancel(tx, e->case_id, "reminder");
}
