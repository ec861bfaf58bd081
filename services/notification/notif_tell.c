/* notif_tell: one notification told: the buyer looked up (the case
 * projection's next case_seq, the contact, the event's dates formatted in
 * the buyer's zone by PostgreSQL) with one statement, the template
 * rendered in the buyer's language for each channel the buyer allows and
 * has an address for, and the deliveries written with one statement whose
 * due_at honours quiet hours and the frequency cap (urgent ones go now).
 * The in-app notice is the case page's: written 'sent' and published at
 * once (InAppNotice + NotificationSent), whatever the contact says. A
 * buyer without a contact yet gets the in-app notice only: nothing is
 * held back waiting for one. ids (README "Identifiers"):
 *   notification_id = uuid5("aftersales.notification", "<source>|<template>")
 *   delivery_id = uuid5("aftersales.notification_delivery", "<notification_id>|<channel>")
 * so a redelivered event (or the same event twice) writes nothing new. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "notification.h"

#define NCH 4 /* sms, email, push, in_app */

void notif_tell_init(notif_tell_t *t, const as_msg_t *m, const char *template_id) {
  memset(t, 0, sizeof *t);
  t->template_id = template_id;
  t->case_id = m->env->case_id;
  t->order_id = m->env->order_id;
  t->buyer_id = "";
  t->locale = "";
  t->source_event_id = m->env->event_id;
  t->source_at_us = m->env->occurred_at_us;
  t->date_us = m->env->occurred_at_us;
}

void notif_tell_param(notif_tell_t *t, const char *name, const char *value) {
  if (t->np < NOTIF_PARAMS_MAX) t->p[t->np++] = (notif_param_t){name, value ? value : ""};
}

void notif_tell_words(notif_tell_t *t, const char *name, const char *en, const char *zh) {
  if (t->nwords >= 4) return;
  t->en[t->nwords] = (notif_param_t){name, en};
  t->zh[t->nwords++] = (notif_param_t){name, zh};
}

const char *notif_money(char *out, size_t len, const Aftersales__V1__Money *m) {
  out[0] = '\0';
  if (m) notif_amount(out, len, m->amount_minor, m->currency);
  return out;
}

/* ---- the buyer */

enum {
  B_BUYER,
  B_NUMBER,
  B_SEQ,
  B_CLOCALE,
  B_SUBMITTED,
  B_KLOCALE,
  B_CHANNELS,
  B_PHONE,
  B_EMAIL,
  B_PUSH,
  B_QS,
  B_QE,
  B_TZ,
  B_D1EN,
  B_D1ZH,
  B_D2EN,
  B_D2ZH,
  B_NCOLS
};

/* The contact's zone was checked when stored; the default at start. */
static const char sql_buyer[] =
    "WITH c AS (UPDATE cases SET seq = seq + 1 WHERE case_id = $1"
    "           RETURNING case_number, buyer_id, locale, seq, submitted_at_us),"
    " b AS (SELECT coalesce((SELECT buyer_id FROM c), nullif($2, '')) AS buyer_id),"
    " k AS (SELECT k.* FROM contacts k JOIN b USING (buyer_id)),"
    " z AS (SELECT coalesce((SELECT nullif(time_zone, '') FROM k), $3) AS tz)"
    " SELECT b.buyer_id, coalesce(c.case_number, ''), coalesce(c.seq, 0), coalesce(c.locale, ''),"
    "  coalesce(c.submitted_at_us, 0), coalesce(k.locale, ''),"
    "  coalesce(array_to_string(k.channels, ','), ''), coalesce(k.phone <> '', false),"
    "  coalesce(k.email <> '', false), coalesce(k.push_token <> '', false),"
    "  coalesce(k.quiet_start_min, 0), coalesce(k.quiet_end_min, 0), z.tz,"
    "  to_char(to_timestamp($4::bigint / 1e6) AT TIME ZONE z.tz, 'YYYY-MM-DD HH24:MI'),"
    "  to_char(to_timestamp($4::bigint / 1e6) AT TIME ZONE z.tz, 'YYYY\"年\"MM\"月\"DD\"日\" "
    "HH24:MI'),"
    "  to_char(to_timestamp($5::bigint / 1e6) AT TIME ZONE z.tz, 'YYYY-MM-DD HH24:MI'),"
    "  to_char(to_timestamp($5::bigint / 1e6) AT TIME ZONE z.tz, 'YYYY\"年\"MM\"月\"DD\"日\" "
    "HH24:MI')"
    " FROM b CROSS JOIN z LEFT JOIN c ON true LEFT JOIN k ON true";

typedef struct buyer {
  PGresult *r;                                        /* owns every string below */
  const char *id, *number, *locale, *tz, *date[2][2]; /* [which][zh] */
  long long seq, submitted;
  int qs, qe;
  bool has_contact;
  const char *ch[NCH];
  size_t nch;
} buyer_t;

static int buyer_load(notif_t *x, as_tx_t *tx, const notif_tell_t *t, buyer_t *b) {
  char d1[24], d2[24];
  snprintf(d1, sizeof d1, "%lld", (long long)t->date_us);
  snprintf(d2, sizeof d2, "%lld", (long long)t->due_us);
  const char *v[] = {t->case_id, t->buyer_id, x->conf->default_zone, d1, d2};
  int rc = as_db_query(as_tx_db(tx), sql_buyer, 5, v, &b->r);
  if (rc < 0) return rc;
  PGresult *r = b->r;
  if (PQntuples(r) != 1 || PQgetisnull(r, 0, B_BUYER)) return 1; /* unknown buyer */
  b->id = PQgetvalue(r, 0, B_BUYER);
  b->number = PQgetvalue(r, 0, B_NUMBER);
  b->seq = strtoll(PQgetvalue(r, 0, B_SEQ), NULL, 10);
  b->submitted = strtoll(PQgetvalue(r, 0, B_SUBMITTED), NULL, 10);
  const char *kl = PQgetvalue(r, 0, B_KLOCALE), *cl = PQgetvalue(r, 0, B_CLOCALE);
  b->locale = kl[0] ? kl : t->locale[0] ? t->locale : cl[0] ? cl : x->conf->default_locale;
  b->tz = PQgetvalue(r, 0, B_TZ);
  b->qs = atoi(PQgetvalue(r, 0, B_QS));
  b->qe = atoi(PQgetvalue(r, 0, B_QE));
  for (int i = 0; i < 4; i++) b->date[i / 2][i % 2] = PQgetvalue(r, 0, B_D1EN + i);
  return 0;
}

/* The channels to write, in order: the allowed ones (or those asked) that
 * have an address, then in_app. */
static bool addressed(PGresult *r, const char *ch) {
  int col = strcmp(ch, "sms") == 0     ? B_PHONE
            : strcmp(ch, "email") == 0 ? B_EMAIL
            : strcmp(ch, "push") == 0  ? B_PUSH
                                       : -1;
  return col >= 0 && PQgetvalue(r, 0, col)[0] == 't';
}

static bool listed(const char *csv, const char *ch) {
  size_t n = strlen(ch);
  for (const char *s = csv; *s;) {
    size_t k = strcspn(s, ",");
    if (k == n && memcmp(s, ch, n) == 0) return true;
    s += k + (s[k] == ',');
  }
  return false;
}

static void add_channel(buyer_t *b, const char *ch) {
  for (size_t i = 0; i < b->nch; i++)
    if (strcmp(b->ch[i], ch) == 0) return;
  if (b->nch < NCH) b->ch[b->nch++] = ch;
}

static void channels_of(buyer_t *b, const notif_tell_t *t) {
  static const char *const all[] = {"sms", "email", "push"};
  const char *csv = PQgetvalue(b->r, 0, B_CHANNELS);
  if (t->only) {
    if (listed(csv, t->only) && addressed(b->r, t->only)) add_channel(b, t->only);
    return;
  }
  if (t->channels) {
    for (size_t i = 0; i < t->nchannels; i++)
      if (strcmp(t->channels[i], "in_app") == 0 ||
          (listed(csv, t->channels[i]) && addressed(b->r, t->channels[i])))
        add_channel(b, t->channels[i]);
  } else {
    /* the buyer's order of preference */
    for (const char *s = csv; *s;) {
      size_t k = strcspn(s, ",");
      for (size_t i = 0; i < 3; i++)
        if (strlen(all[i]) == k && memcmp(s, all[i], k) == 0 && addressed(b->r, all[i]))
          add_channel(b, all[i]);
      s += k + (s[k] == ',');
    }
  }
  if (!t->channels) add_channel(b, "in_app");
}

/* ---- rendering */

typedef struct rendered {
  as_buf_t subject, body[NCH];
} rendered_t;

static bool is_zh(const char *locale) {
  return strncmp(locale, "zh", 2) == 0;
}

static void render(const notif_tell_t *t, const buyer_t *b, const notif_text_t *tx,
                   const char *const *ch, size_t nch, rendered_t *out) {
  bool zh = is_zh(tx->locale);
  notif_param_t p[NOTIF_PARAMS_MAX + 8];
  size_t np = 0;
  for (size_t i = 0; i < t->np; i++) p[np++] = t->p[i];
  for (size_t i = 0; i < t->nwords; i++) p[np++] = zh ? t->zh[i] : t->en[i];
  p[np++] = (notif_param_t){"case_number", b->number};
  p[np++] = (notif_param_t){"date", b->date[0][zh]};
  p[np++] = (notif_param_t){"due", t->due_us ? b->date[1][zh] : ""};
  p[np++] = (notif_param_t){"ship_by", t->due_us ? b->date[1][zh] : ""};
  notif_render(&out->subject, tx->part[NOTIF_PART_SUBJECT], p, np, NOTIF_ESC_PLAIN, 200);
  for (size_t i = 0; i < nch; i++) {
    if (strcmp(ch[i], "sms") == 0)
      notif_render(&out->body[i], tx->part[NOTIF_PART_SMS], p, np, NOTIF_ESC_PLAIN, NOTIF_SMS_MAX);
    else if (strcmp(ch[i], "email") == 0)
      notif_render(&out->body[i], tx->part[NOTIF_PART_EMAIL], p, np, NOTIF_ESC_HTML, 0);
    else
      notif_render(&out->body[i], tx->part[NOTIF_PART_PUSH], p, np, NOTIF_ESC_PLAIN,
                   NOTIF_PUSH_MAX);
  }
}

/* ---- the deliveries */

enum {
  D_ID,
  D_NOTIF,
  D_RANK,
  D_CASE,
  D_BUYER,
  D_CHANNEL,
  D_TEMPLATE,
  D_VERSION,
  D_LOCALE,
  D_SUBJECT,
  D_BODY,
  D_URGENT,
  D_SEQ,
  D_STATUS,
  D_SOURCE,
  D_SOURCE_AT,
  D_SUBMITTED,
  D_TZ,
  D_QS,
  D_QE,
  D_CAP,
  D_NCOLS
};
static const as_col_t del_cols[D_NCOLS] = {
    [D_ID] = {"delivery_id", "uuid"},
    [D_NOTIF] = {"notification_id", "uuid"},
    [D_RANK] = {"rank", "int"},
    [D_CASE] = {"case_id", "text"},
    [D_BUYER] = {"buyer_id", "text"},
    [D_CHANNEL] = {"channel", "text"},
    [D_TEMPLATE] = {"template_id", "text"},
    [D_VERSION] = {"template_version", "text"},
    [D_LOCALE] = {"locale", "text"},
    [D_SUBJECT] = {"subject", "text"},
    [D_BODY] = {"body", "text"},
    [D_URGENT] = {"urgent", "bool"},
    [D_SEQ] = {"case_seq", "bigint"},
    [D_STATUS] = {"status", "text"},
    [D_SOURCE] = {"source_event_id", "text"},
    [D_SOURCE_AT] = {"source_at_us", "bigint"},
    [D_SUBMITTED] = {"submitted_at_us", "bigint"},
    [D_TZ] = {"tz", "text"},
    [D_QS] = {"qs", "int"},
    [D_QE] = {"qe", "int"},
    [D_CAP] = {"cap", "int"},
};
/* Quiet hours and the cap hold back what is not urgent and not in-app; the
 * cap counts the buyer's notifications (not in-app) of the last hour, and
 * one over it waits an hour. Returns what was written and why it waits. */
static const as_bulk_t sql_deliveries = AS_BULK(
    "WITH v AS (SELECT u.*, u.status = 'sent' OR u.urgent AS now_,"
    "  CASE WHEN u.status = 'sent' OR u.urgent THEN now() ELSE quiet_until(u.tz, u.qs, u.qe) END"
    "   AS q,"
    "  NOT (u.status = 'sent' OR u.urgent) AND (SELECT count(DISTINCT d.notification_id)"
    "   FROM deliveries d WHERE d.buyer_id = u.buyer_id AND d.channel <> 'in_app'"
    "   AND d.created_at > now() - interval '1 hour') >= u.cap AS capped FROM {{u}}),"
    " ins AS (INSERT INTO deliveries (delivery_id, notification_id, rank, case_id, buyer_id,"
    "  channel, template_id, template_version, locale, subject, body, urgent, case_seq, status,"
    "  source_event_id, source_at_us, submitted_at_us, due_at, sent_at)"
    "  SELECT delivery_id, notification_id, rank, case_id, buyer_id, channel, template_id,"
    "  template_version, locale, subject, body, urgent, case_seq, status, source_event_id,"
    "  source_at_us, submitted_at_us,"
    "  greatest(q, CASE WHEN capped THEN now() + interval '1 hour' ELSE now() END),"
    "  CASE WHEN status = 'sent' THEN now() END FROM v"
    "  ON CONFLICT (notification_id, channel) DO NOTHING RETURNING notification_id, channel)"
    " SELECT ins.channel, v.q > now(), v.capped FROM ins JOIN v USING (notification_id, channel)",
    del_cols);

static void ids_of(const notif_tell_t *t, char nid[AS_UUID_STRLEN + 1]) {
  if (t->notification_id) {
    snprintf(nid, AS_UUID_STRLEN + 1, "%s", t->notification_id);
    return;
  }
  char name[256];
  int n = snprintf(name, sizeof name, "%s|%s", t->source_event_id, t->template_id);
  as_uuid_v5(nid, "aftersales.notification", name, (size_t)n);
}

static void delivery_id(const char *nid, const char *ch, char out[AS_UUID_STRLEN + 1]) {
  char name[64];
  int n = snprintf(name, sizeof name, "%s|%s", nid, ch);
  as_uuid_v5(out, "aftersales.notification_delivery", name, (size_t)n);
}

typedef struct told {
  const notif_tell_t *t;
  const buyer_t *b;
  const notif_text_t *text;
  const char *version, *nid;
} told_t;

static void rows(notif_t *x, as_cols_t *c, const told_t *k, rendered_t *rd) {
  int rank = 0;
  for (size_t i = 0; i < k->b->nch; i++) {
    const char *ch = k->b->ch[i];
    bool app = strcmp(ch, "in_app") == 0;
    char did[AS_UUID_STRLEN + 1];
    delivery_id(k->nid, ch, did);
    as_cols_str(c, D_ID, did);
    as_cols_str(c, D_NOTIF, k->nid);
    as_cols_int(c, D_RANK, app ? (int)k->b->nch - 1 : rank);
    as_cols_str(c, D_CASE, k->t->case_id);
    as_cols_str(c, D_BUYER, k->b->id);
    as_cols_str(c, D_CHANNEL, ch);
    as_cols_str(c, D_TEMPLATE, k->text->id);
    as_cols_str(c, D_VERSION, k->version);
    as_cols_str(c, D_LOCALE, k->text->locale);
    as_cols_str(c, D_SUBJECT, as_buf_str(&rd->subject));
    as_cols_str(c, D_BODY, as_buf_str(&rd->body[i]));
    as_cols_bool(c, D_URGENT, k->t->urgent);
    as_cols_int(c, D_SEQ, k->b->seq);
    as_cols_str(c, D_STATUS, app ? "sent" : rank == 0 ? "pending" : "standby");
    as_cols_str(c, D_SOURCE, k->t->source_event_id);
    as_cols_int(c, D_SOURCE_AT, k->t->source_at_us);
    as_cols_int(c, D_SUBMITTED, k->t->submitted_at_us ? k->t->submitted_at_us : 0);
    as_cols_str(c, D_TZ, k->b->tz);
    as_cols_int(c, D_QS, k->b->qs);
    as_cols_int(c, D_QE, k->b->qe);
    as_cols_int(c, D_CAP, x->conf->cap_per_hour);
    if (!app) rank++;
  }
}

/* The in-app notice of a notification just written, and its NotificationSent. */
static int publish_in_app(as_tx_t *tx, const as_msg_t *cause, const told_t *k, const char *title,
                          const char *body) {
  int64_t now = as_now_us();
  char did[AS_UUID_STRLEN + 1];
  delivery_id(k->nid, "in_app", did);
  Aftersales__V1__InAppNotice n = AFTERSALES__V1__IN_APP_NOTICE__INIT;
  n.notification_id = (char *)k->nid;
  n.case_id = (char *)k->t->case_id;
  n.buyer_id = (char *)k->b->id;
  n.template_id = (char *)k->text->id;
  n.template_version = (char *)k->version;
  n.locale = (char *)k->text->locale;
  n.title = (char *)title;
  n.body = (char *)body;
  n.created_at_us = now;
  const char *key = k->t->case_id[0] ? k->t->case_id : k->t->order_id;
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.case_id = (char *)k->t->case_id;
  env.order_id = (char *)k->t->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_IN_APP_NOTICE;
  env.in_app_notice = &n;
  int rc = as_tx_publish(tx, cause, NOTIF_TOPIC, key, &env);
  if (rc < 0) return rc;
  Aftersales__V1__NotificationSent s = AFTERSALES__V1__NOTIFICATION_SENT__INIT;
  s.notification_id = (char *)k->nid;
  s.case_id = (char *)k->t->case_id;
  s.channel = AFTERSALES__V1__CHANNEL__CHANNEL_IN_APP;
  s.template_id = (char *)k->text->id;
  s.locale = (char *)k->text->locale;
  s.sent_at_us = now;
  s.buyer_id = (char *)k->b->id;
  s.idempotency_key = did;
  s.template_version = (char *)k->version;
  s.attempts = 1;
  s.source_event_id = (char *)k->t->source_event_id;
  s.source_at_us = k->t->source_at_us;
  as_envelope_t e2 = AFTERSALES__V1__ENVELOPE__INIT;
  e2.case_id = (char *)k->t->case_id;
  e2.order_id = (char *)k->t->order_id;
  e2.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_NOTIFICATION_SENT;
  e2.notification_sent = &s;
  return as_tx_publish(tx, cause, NOTIF_TOPIC, key, &e2);
}

static int written(notif_t *x, as_tx_t *tx, const as_msg_t *cause, const told_t *k, PGresult *r,
                   rendered_t *rd) {
  int n = PQntuples(r);
  as_counter_add(x->deliveries, (uint64_t)n);
  if (n == 0)
    as_counter_add(x->duplicates, 1);
  else
    as_counter_add(x->told, 1);
  for (int i = 0; i < n; i++) {
    const char *ch = PQgetvalue(r, i, 0);
    if (PQgetvalue(r, i, 2)[0] == 't')
      as_counter_add(x->deferred_cap, 1);
    else if (PQgetvalue(r, i, 1)[0] == 't')
      as_counter_add(x->deferred_quiet, 1);
    if (strcmp(ch, "in_app") != 0) continue;
    as_counter_add(x->in_app, 1);
    int rc = publish_in_app(tx, cause, k, as_buf_str(&rd->subject),
                            as_buf_str(&rd->body[k->b->nch - 1]));
    if (rc < 0) return rc;
  }
  return 0;
}

static int write_rows(notif_t *x, as_tx_t *tx, const as_msg_t *cause, const told_t *k) {
  rendered_t rd;
  as_buf_init(&rd.subject);
  for (int i = 0; i < NCH; i++) as_buf_init(&rd.body[i]);
  render(k->t, k->b, k->text, k->b->ch, k->b->nch, &rd);
  as_cols_t c;
  as_cols_init(&c, &sql_deliveries);
  rows(x, &c, k, &rd);
  PGresult *r = NULL;
  int rc = as_buf_ok(&rd.subject) ? as_cols_run(&c, as_tx_db(tx), &r) : -ENOMEM;
  if (rc == 0 && r) rc = written(x, tx, cause, k, r, &rd);
  PQclear(r);
  as_cols_free(&c);
  as_buf_free(&rd.subject);
  for (int i = 0; i < NCH; i++) as_buf_free(&rd.body[i]);
  return rc;
}

int notif_tell(notif_t *x, as_tx_t *tx, const as_msg_t *cause, const notif_tell_t *t) {
  const notif_text_t *text = NULL;
  buyer_t b = {0};
  int rc = buyer_load(x, tx, t, &b);
  if (rc == 1) {
    /* no case projected and no buyer named: nobody to tell */
    as_counter_add(x->untold_case, 1);
    AS_WARN(x->log, "event not told: no case projection and no buyer",
            AS_F_STR("template_id", t->template_id), AS_F_STR("case_id", t->case_id));
    rc = 0;
    goto out;
  }
  if (rc < 0) goto out;
  text = notif_templates_find(x->templates, t->template_id, b.locale, x->conf->default_locale);
  if (text) channels_of(&b, t);
  if (!text || b.nch == 0) {
    as_counter_add(x->untold_channel, 1);
    goto out;
  }
  char nid[AS_UUID_STRLEN + 1];
  ids_of(t, nid);
  told_t k = {t, &b, text, notif_templates_version(x->templates), nid};
  rc = write_rows(x, tx, cause, &k);
out:
  PQclear(b.r);
  return rc;
}

bool notif_text_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 && s[i] != '\n') return false;
  return true;
}
