/* notif_timers: what is told later, on the worker's durable deadlines: the
 * ship-by reminder (AS_NOTIFICATION_REMINDER_HOURS before the date, unless
 * ReturnShipped came first) and the satisfaction survey
 * (AS_NOTIFICATION_SURVEY_DELAY_H after the case closed); and the buyer's
 * answer to the survey, kept for reports. A deadline's notification is
 * named after it: source "reminder:<case id>" or "survey:<case id>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "notification.h"

int notif_reminder_arm(notif_t *x, as_tx_t *tx, const char *case_id, int64_t ship_by) {
  int64_t due = ship_by - x->conf->reminder_hours * NOTIF_HOUR_US;
  if (ship_by <= 0 || due <= as_now_us()) {
    /* too close to the date for a reminder to help: the instructions say it */
    as_counter_add(x->reminders_skipped, 1);
    return 0;
  }
  as_counter_add(x->reminders_set, 1);
  return as_deadline_set(tx, case_id, "reminder", due);
}

int notif_survey_arm(notif_t *x, as_tx_t *tx, const char *case_id) {
  as_counter_add(x->surveys_set, 1);
  return as_deadline_set(tx, case_id, "survey",
                         as_now_us() + x->conf->survey_delay_h * NOTIF_HOUR_US);
}

/* A tell for a deadline of case_id (no event: source named after it). */
static void tell_of(notif_tell_t *t, const char *tmpl, const char *case_id, char *src,
                    size_t srclen, const char *kind) {
  memset(t, 0, sizeof *t);
  snprintf(src, srclen, "%s:%s", kind, case_id);
  t->template_id = tmpl;
  t->case_id = case_id;
  t->order_id = "";
  t->buyer_id = "";
  t->locale = "";
  t->source_event_id = src;
  t->source_at_us = as_now_us();
  t->date_us = t->source_at_us;
}

int notif_timers_reminder(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                          int64_t due_us) {
  notif_t *x = state;
  (void)due_us;
  const char *v[] = {case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx),
                       "SELECT return_address, packaging, ship_by_us FROM cases"
                       " WHERE case_id = $1 AND NOT return_shipped",
                       1, v, &r);
  if (rc == 0 && PQntuples(r) == 1) {
    notif_tell_t t;
    char src[96];
    tell_of(&t, "return.reminder", case_id, src, sizeof src, kind);
    notif_tell_param(&t, "return_address", PQgetvalue(r, 0, 0));
    notif_tell_param(&t, "packaging", PQgetvalue(r, 0, 1));
    t.due_us = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    rc = notif_tell(x, tx, NULL, &t);
  } else if (rc == 0) {
    as_counter_add(x->reminders_skipped, 1);
  }
  PQclear(r);
  return rc;
}

int notif_timers_survey(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                        int64_t due_us) {
  (void)due_us;
  notif_tell_t t;
  char src[96];
  tell_of(&t, "case.survey", case_id, src, sizeof src, kind);
  return notif_tell(state, tx, NULL, &t);
}

int notif_on_survey(void *state, as_tx_t *tx, as_msg_t *m) {
  notif_t *x = state;
  const Aftersales__V1__SurveyAnswered *e = m->env->survey_answered;
  if (!as_envelope_id_ok(e->case_id) || strcmp(e->case_id, m->env->case_id) != 0 ||
      !as_envelope_id_ok(e->buyer_id))
    return as_tx_reject(m, "case_id or buyer_id missing, unsafe or not the envelope's"), 0;
  if (e->score < 1 || e->score > 5) return as_tx_reject(m, "score outside 1..5"), 0;
  if (!notif_text_ok(e->comment, 2000) || strlen(e->notification_id) > 64)
    return as_tx_reject(m, "comment longer than 2000 bytes or with control characters"), 0;
  char score[8], at[24];
  snprintf(score, sizeof score, "%d", e->score);
  snprintf(at, sizeof at, "%lld", (long long)e->answered_at_us);
  const char *v[] = {e->case_id, e->buyer_id, e->notification_id, score, e->comment, at};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx),
                       "INSERT INTO surveys (case_id, buyer_id, notification_id, score, comment,"
                       " answered_at_us) VALUES ($1, $2, $3, $4, $5, $6)"
                       " ON CONFLICT (case_id) DO NOTHING RETURNING 1",
                       6, v, &r);
  if (rc == 0 && PQntuples(r) == 1) as_counter_add(x->answers[e->score - 1], 1);
  PQclear(r);
  return rc;
}
