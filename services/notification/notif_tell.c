/* notif_tell: the notifications of a batch told together. The event
 * handlers queue them (notif_tell copies what it needs); notif_tell_flush
 * then looks the buyers up (each case projection's next case_seq, the
 * contact, the events' dates formatted in the buyer's zone by PostgreSQL)
 * with one statement, renders each template in its buyer's language for
 * each channel the buyer allows and has an address for, and writes every
 * delivery with one statement whose due_at honours quiet hours and the
 * frequency cap (urgent ones go now). Outside a batch (a deadline firing)
 * a notification is told at once.
 * Order (README "Order and parking"): a delivery's case_seq is its event's
 * time (ties: the order read, case_arrival), and one that is not the
 * case's first response is due no earlier than that time plus
 * AS_NOTIFICATION_ORDER_HOLD_MS, so a case's earlier events read from other
 * topics can still come before it; one that comes after a later event of
 * its case was sent is told anyway and counted out of order. An event of a
 * case not projected yet is parked (notif_park) instead of told.
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

/* ---- the queue */

#define NSTR (8 + 2 * NOTIF_PARAMS_MAX + 3 * 4)

struct notif_pending {
  notif_tell_t t;
  const as_msg_t *cause;
  const char *chs[4];
  char *strings; /* every string of t, copied */
};

/* Copies t's strings into one allocation owned by p. */
static int keep(notif_pending_t *p, const notif_tell_t *t) {
  const char **s[NSTR];
  size_t n = 0, len = 0;
  p->t = *t;
  notif_tell_t *c = &p->t;
  const char **fixed[] = {&c->template_id, &c->case_id,         &c->order_id,        &c->buyer_id,
                          &c->locale,      &c->source_event_id, &c->notification_id, &c->only};
  for (size_t i = 0; i < 8; i++) s[n++] = fixed[i];
  for (size_t i = 0; i < c->np; i++) s[n++] = &c->p[i].name, s[n++] = &c->p[i].value;
  for (size_t i = 0; i < c->nwords; i++)
    s[n++] = &c->en[i].name, s[n++] = &c->en[i].value, s[n++] = &c->zh[i].value;
  for (size_t i = 0; i < n; i++) len += *s[i] ? strlen(*s[i]) + 1 : 0;
  char *w = p->strings = malloc(len ? len : 1);
  if (!w) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!*s[i]) continue;
    size_t k = strlen(*s[i]) + 1;
    memcpy(w, *s[i], k);
    *s[i] = w;
    w += k;
  }
  for (size_t i = 0; i < c->nwords; i++) c->zh[i].name = c->en[i].name;
  for (size_t i = 0; i < c->nchannels && i < 4; i++) p->chs[i] = c->channels[i]; /* static */
  return 0;
}

static int queue(notif_t *x, const as_msg_t *cause, const notif_tell_t *t) {
  if (x->npending == x->cappending) {
    size_t cap = x->cappending ? 2 * x->cappending : 64;
    notif_pending_t *v = realloc(x->pending, cap * sizeof *v);
    if (!v) return -ENOMEM;
    x->pending = v;
    x->cappending = cap;
  }
  notif_pending_t *p = &x->pending[x->npending];
  p->cause = cause;
  int rc = keep(p, t);
  if (rc == 0) x->npending++;
  return rc;
}

void notif_tell_drop(notif_t *x) {
  for (size_t i = 0; i < x->npending; i++) free(x->pending[i].strings);
  x->npending = 0;
}

void notif_tell_free(notif_t *x) {
  notif_tell_drop(x);
  free(x->pending);
  x->pending = NULL;
  x->cappending = 0;
}

/* ---- the buyers */

enum {
  B_O,
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
  B_DZ_OK,
  B_PROJECTED,
  B_LATE,
  B_NCOLS
};

enum { Q_CASE, Q_BUYER, Q_D1, Q_D2, Q_ZONE, Q_AT, Q_NCOLS };
static const as_col_t q_cols[Q_NCOLS] = {
    [Q_CASE] = {"case_id", "text"}, [Q_BUYER] = {"buyer_id", "text"}, [Q_D1] = {"d1", "bigint"},
    [Q_D2] = {"d2", "bigint"},      [Q_ZONE] = {"dz", "text"},        [Q_AT] = {"at", "bigint"},
};
/* One row per queued notification, in queue order. A case told k times in
 * the batch moves its seq by k, its notifications numbered in queue order
 * (their case_arrival), and its last_at_us to the latest event time told;
 * only an event older than that (rare: read after a later one) looks for a
 * later delivery of its case already sent (through the buyer's index).
 * projected: the case is known (else its events are parked).
 * The contact's zone was checked when stored; dz is the default zone,
 * which only PostgreSQL can check: one it does not know is replaced by UTC
 * (and said so once, below) rather than failing every batch. */
#define FMT_EN "'YYYY-MM-DD HH24:MI'"
#define FMT_ZH "'YYYY\"年\"MM\"月\"DD\"日\" HH24:MI'"
#define LOCAL(d, f) "to_char(to_timestamp(z." d " / 1e6) AT TIME ZONE z.tz, " f ")"
static const as_bulk_t sql_buyers = AS_BULK(
    "WITH t AS (SELECT * FROM {{u:o}}),"
    " n AS (SELECT case_id, count(*) AS k, max(at) AS mx FROM t WHERE case_id <> ''"
    "  GROUP BY case_id),"
    " c AS (UPDATE cases SET seq = cases.seq + n.k,"
    "  last_at_us = greatest(cases.last_at_us, n.mx) FROM n WHERE cases.case_id = n.case_id"
    "  RETURNING cases.case_id, cases.seq - n.k AS base, cases.case_number, cases.buyer_id,"
    "  cases.locale, cases.submitted_at_us, cases.last_at_us AS last_at),"
    " b AS (SELECT t.*, c.base, c.case_number, c.locale AS clocale, c.submitted_at_us AS csub,"
    "  c.last_at,"
    "  coalesce(c.buyer_id, nullif(t.buyer_id, '')) AS buyer,"
    "  row_number() OVER (PARTITION BY t.case_id ORDER BY t.o) AS rn"
    "  FROM t LEFT JOIN c USING (case_id)),"
    " y AS (SELECT b.*, k.locale AS klocale, k.channels, k.phone, k.email, k.push_token,"
    "  k.time_zone,"
    "  k.quiet_start_min, k.quiet_end_min, b.dz IN (SELECT name FROM zones) AS dz_ok"
    "  FROM b LEFT JOIN contacts k ON k.buyer_id = b.buyer),"
    " z AS (SELECT y.*, coalesce(nullif(y.time_zone, ''), CASE WHEN dz_ok THEN dz ELSE 'UTC' END)"
    "  AS tz FROM y)"
    " SELECT z.o, z.buyer, coalesce(z.case_number, ''), coalesce(z.base + z.rn, 0),"
    "  coalesce(z.clocale, ''), coalesce(z.csub, 0), coalesce(z.klocale, ''),"
    "  coalesce(array_to_string(z.channels, ','), ''), coalesce(z.phone <> '', false),"
    "  coalesce(z.email <> '', false), coalesce(z.push_token <> '', false),"
    "  coalesce(z.quiet_start_min, 0), coalesce(z.quiet_end_min, 0), z.tz,"
    "  " LOCAL("d1", FMT_EN) ", " LOCAL("d1", FMT_ZH) ", " LOCAL("d2", FMT_EN) ","
    "  " LOCAL("d2", FMT_ZH) ", z.dz_ok, z.base IS NOT NULL,"
    "  CASE WHEN z.at < z.last_at THEN EXISTS (SELECT 1 FROM deliveries d"
    "   WHERE d.buyer_id = z.buyer AND d.case_id = z.case_id AND d.channel <> 'in_app'"
    "   AND d.status = 'sent' AND (d.case_seq, d.case_arrival) > (z.at, z.base + z.rn))"
    "  ELSE false END FROM z ORDER BY z.o",
    q_cols);

typedef struct buyer {
  PGresult *r; /* borrowed: owns every string below */
  int row;
  const char *id, *number, *locale, *tz, *date[2][2]; /* [which][zh] */
  long long seq;
  int qs, qe;
  const char *ch[NCH];
  size_t nch;
} buyer_t;

#define V(b, col) PQgetvalue((b)->r, (b)->row, (col))

/* Row i of the lookup; 1 if no buyer is known (no case, no buyer id). */
static int buyer_at(notif_t *x, PGresult *r, int i, const notif_tell_t *t, buyer_t *b) {
  memset(b, 0, sizeof *b);
  b->r = r;
  b->row = i;
  if (PQgetisnull(r, i, B_BUYER)) return 1;
  b->id = V(b, B_BUYER);
  b->number = V(b, B_NUMBER);
  b->seq = strtoll(V(b, B_SEQ), NULL, 10);
  const char *kl = V(b, B_KLOCALE), *cl = V(b, B_CLOCALE);
  b->locale = kl[0] ? kl : t->locale[0] ? t->locale : cl[0] ? cl : x->conf->default_locale;
  b->tz = V(b, B_TZ);
  b->qs = atoi(V(b, B_QS));
  b->qe = atoi(V(b, B_QE));
  for (int k = 0; k < 4; k++) b->date[k / 2][k % 2] = V(b, B_D1EN + k);
  return 0;
}

static int buyers_load(notif_t *x, as_tx_t *tx, PGresult **out) {
  as_cols_t q;
  as_cols_init(&q, &sql_buyers);
  for (size_t i = 0; i < x->npending; i++) {
    const notif_tell_t *t = &x->pending[i].t;
    as_cols_str(&q, Q_CASE, t->case_id);
    as_cols_str(&q, Q_BUYER, t->buyer_id);
    as_cols_int(&q, Q_D1, t->date_us);
    as_cols_int(&q, Q_D2, t->due_us);
    as_cols_str(&q, Q_ZONE, x->conf->default_zone);
    as_cols_int(&q, Q_AT, t->source_at_us);
  }
  int rc = as_cols_run(&q, as_tx_db(tx), out);
  as_cols_free(&q);
  if (rc == 0 && (!*out || PQntuples(*out) != (int)x->npending)) rc = -EIO;
  if (rc == 0 && !x->zone_warned && PQgetvalue(*out, 0, B_DZ_OK)[0] != 't') {
    x->zone_warned = true;
    AS_ERROR(x->log, "AS_NOTIFICATION_DEFAULT_TIME_ZONE is not a zone PostgreSQL knows; UTC used",
             AS_F_STR("zone", x->conf->default_zone));
  }
  return rc;
}

/* The channels to write, in order: the allowed ones (or those asked) that
 * have an address, then in_app. */
static bool addressed(const buyer_t *b, const char *ch) {
  int col = strcmp(ch, "sms") == 0     ? B_PHONE
            : strcmp(ch, "email") == 0 ? B_EMAIL
            : strcmp(ch, "push") == 0  ? B_PUSH
                                       : -1;
  return col >= 0 && V(b, col)[0] == 't';
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
  const char *csv = V(b, B_CHANNELS);
  if (t->only) {
    if (listed(csv, t->only) && addressed(b, t->only)) add_channel(b, t->only);
    return;
  }
  if (t->channels) {
    for (size_t i = 0; i < t->nchannels; i++)
      if (strcmp(t->channels[i], "in_app") == 0 ||
          (listed(csv, t->channels[i]) && addressed(b, t->channels[i])))
        add_channel(b, t->channels[i]);
  } else {
    /* the buyer's order of preference */
    for (const char *s = csv; *s;) {
      size_t k = strcspn(s, ",");
      for (size_t i = 0; i < 3; i++)
        if (strlen(all[i]) == k && memcmp(s, all[i], k) == 0 && addressed(b, all[i]))
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
  D_O,
  D_ARRIVAL,
  D_HOLD,
  D_ORDER,
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
    [D_O] = {"o", "int"},
    [D_ARRIVAL] = {"case_arrival", "bigint"},
    [D_HOLD] = {"hold_us", "bigint"},
    [D_ORDER] = {"order_id", "text"},
};
/* Quiet hours and the cap hold back what is not urgent and not in-app. The
 * cap counts the buyer's notifications (not in-app) of the last hour, the
 * ones before this statement plus this batch's in queue order (o); one
 * over it waits an hour. Returns what was written, why it waits, and the
 * queue index it came from. */
static const as_bulk_t sql_deliveries = AS_BULK(
    "WITH v AS (SELECT u.*, u.status = 'sent' OR u.urgent AS now_,"
    "  CASE WHEN u.status = 'sent' OR u.urgent THEN now() ELSE quiet_until(u.tz, u.qs, u.qe) END"
    "   AS q,"
    "  (SELECT count(DISTINCT d.notification_id) FROM deliveries d WHERE d.buyer_id = u.buyer_id"
    "   AND d.channel <> 'in_app' AND d.created_at > now() - interval '1 hour') AS before"
    "  FROM {{u}}),"
    " w AS (SELECT v.*, NOT now_ AND before + dense_rank() OVER (PARTITION BY buyer_id, now_"
    "  ORDER BY o) > cap AS capped FROM v),"
    /* the same notification queued twice in a batch is written (and joined back) once */
    " w1 AS (SELECT DISTINCT ON (notification_id, channel) * FROM w"
    "  ORDER BY notification_id, channel, o),"
    " ins AS (INSERT INTO deliveries (delivery_id, notification_id, rank, case_id, order_id, "
    "buyer_id,"
    "  channel, template_id, template_version, locale, subject, body, urgent, case_seq,"
    "  case_arrival, status, source_event_id, source_at_us, submitted_at_us, due_at, sent_at)"
    "  SELECT delivery_id, notification_id, rank, case_id, order_id, buyer_id, channel, "
    "template_id,"
    "  template_version, locale, subject, body, urgent, case_seq, case_arrival, status,"
    "  source_event_id, source_at_us, submitted_at_us,"
    "  greatest(q, CASE WHEN capped THEN now() + interval '1 hour' ELSE now() END,"
    "  to_timestamp(hold_us / 1e6)),"
    "  CASE WHEN status = 'sent' THEN now() END FROM w1"
    "  ON CONFLICT (notification_id, channel) DO NOTHING RETURNING notification_id, channel)"
    " SELECT ins.channel, w1.q > now(), w1.capped, w1.o"
    " FROM ins JOIN w1 USING (notification_id, channel)",
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

/* One queued notification as rendered. */
typedef struct told {
  const notif_tell_t *t;
  const as_msg_t *cause;
  buyer_t b;
  const notif_text_t *text; /* NULL: not told */
  const char *version;
  char nid[AS_UUID_STRLEN + 1];
  rendered_t rd;
  int written;
} told_t;

/* Not before: the event's time (a clock ahead of ours counts as now) plus
 * the hold, unless it is the case's first response or has no case (0). */
static int64_t hold_us(const notif_t *x, const notif_tell_t *t, int64_t now) {
  if (!t->case_id[0] || t->first || x->conf->order_hold_ms <= 0) return 0;
  return (t->source_at_us < now ? t->source_at_us : now) + x->conf->order_hold_ms * 1000;
}

static void rows(notif_t *x, as_cols_t *c, const told_t *k, int o, int64_t now) {
  int rank = 0;
  int64_t hold = hold_us(x, k->t, now);
  for (size_t i = 0; i < k->b.nch; i++) {
    const char *ch = k->b.ch[i];
    bool app = strcmp(ch, "in_app") == 0;
    char did[AS_UUID_STRLEN + 1];
    delivery_id(k->nid, ch, did);
    as_cols_str(c, D_ID, did);
    as_cols_str(c, D_NOTIF, k->nid);
    as_cols_int(c, D_RANK, app ? (int)k->b.nch - 1 : rank);
    as_cols_str(c, D_CASE, k->t->case_id);
    as_cols_str(c, D_ORDER, k->t->order_id ? k->t->order_id : "");
    as_cols_str(c, D_BUYER, k->b.id);
    as_cols_str(c, D_CHANNEL, ch);
    as_cols_str(c, D_TEMPLATE, k->text->id);
    as_cols_str(c, D_VERSION, k->version);
    as_cols_str(c, D_LOCALE, k->text->locale);
    as_cols_str(c, D_SUBJECT, k->rd.subject.len ? k->rd.subject.data : "");
    as_cols_str(c, D_BODY, k->rd.body[i].len ? k->rd.body[i].data : "");
    as_cols_bool(c, D_URGENT, k->t->urgent);
    as_cols_int(c, D_SEQ, k->t->source_at_us);
    as_cols_int(c, D_ARRIVAL, k->b.seq);
    as_cols_int(c, D_HOLD, hold);
    as_cols_str(c, D_STATUS, app ? "sent" : rank == 0 ? "pending" : "standby");
    as_cols_str(c, D_SOURCE, k->t->source_event_id);
    as_cols_int(c, D_SOURCE_AT, k->t->source_at_us);
    as_cols_int(c, D_SUBMITTED, k->t->submitted_at_us);
    as_cols_str(c, D_TZ, k->b.tz);
    as_cols_int(c, D_QS, k->b.qs);
    as_cols_int(c, D_QE, k->b.qe);
    as_cols_int(c, D_CAP, x->conf->cap_per_hour);
    as_cols_int(c, D_O, o);
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
  n.buyer_id = (char *)k->b.id;
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
  s.buyer_id = (char *)k->b.id;
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

/* The buyer, template, channels and texts of queued notification k. */
static void prepare(notif_t *x, PGresult *r, int i, told_t *k) {
  if (PQgetvalue(r, i, B_LATE)[0] == 't') {
    /* a later event of its case was sent before this one was read */
    as_counter_add(x->out_of_order, 1);
    AS_WARN(x->log, "event told after a later one of its case was sent",
            AS_F_STR("template_id", k->t->template_id), AS_F_STR("case_id", k->t->case_id));
  }
  if (buyer_at(x, r, i, k->t, &k->b) == 1) {
    /* no case projected and no buyer named: nobody to tell */
    as_counter_add(x->untold_case, 1);
    AS_WARN(x->log, "event not told: no case projection and no buyer",
            AS_F_STR("template_id", k->t->template_id), AS_F_STR("case_id", k->t->case_id));
    return;
  }
  k->text =
      notif_templates_find(x->templates, k->t->template_id, k->b.locale, x->conf->default_locale);
  if (k->text) channels_of(&k->b, k->t);
  if (!k->text || k->b.nch == 0) {
    as_counter_add(x->untold_channel, 1);
    k->text = NULL;
    return;
  }
  k->version = notif_templates_version(x->templates);
  ids_of(k->t, k->nid);
  render(k->t, &k->b, k->text, k->b.ch, k->b.nch, &k->rd);
}

/* What the insert returned: counted, and the in-app notices published. */
static int written(notif_t *x, as_tx_t *tx, told_t *k, size_t n, PGresult *r) {
  as_counter_add(x->deliveries, (uint64_t)PQntuples(r));
  for (int i = 0; i < PQntuples(r); i++) {
    const char *ch = PQgetvalue(r, i, 0);
    size_t o = (size_t)atoi(PQgetvalue(r, i, 3));
    if (o >= n) return -EIO;
    k[o].written++;
    if (PQgetvalue(r, i, 2)[0] == 't')
      as_counter_add(x->deferred_cap, 1);
    else if (PQgetvalue(r, i, 1)[0] == 't')
      as_counter_add(x->deferred_quiet, 1);
    if (strcmp(ch, "in_app") != 0) continue;
    as_counter_add(x->in_app, 1);
    int rc = publish_in_app(tx, k[o].cause, &k[o], as_buf_str(&k[o].rd.subject),
                            as_buf_str(&k[o].rd.body[k[o].b.nch - 1]));
    if (rc < 0) return rc;
  }
  for (size_t o = 0; o < n; o++)
    if (k[o].text) as_counter_add(k[o].written ? x->told : x->duplicates, 1);
  return 0;
}

/* An event of a case not projected yet, read from the topics (a deadline's
 * or a parked one's has no bytes to park): parked, not told. */
static bool to_park(PGresult *r, int i, const told_t *k) {
  return k->t->case_id[0] && PQgetvalue(r, i, B_PROJECTED)[0] != 't' && k->cause && k->cause->rkm;
}

static int tell_all(notif_t *x, as_tx_t *tx, told_t *k, size_t n) {
  PGresult *r = NULL, *w = NULL;
  as_cols_t c;
  as_cols_init(&c, &sql_deliveries);
  const as_msg_t **park = NULL;
  size_t npark = 0;
  int64_t now = as_now_us();
  int rc = buyers_load(x, tx, &r);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (to_park(r, (int)i, &k[i])) {
      if (!park && !(park = calloc(n, sizeof *park))) rc = -ENOMEM;
      /* an event's tells are queued together: its bytes once */
      else if (npark == 0 || park[npark - 1] != k[i].cause)
        park[npark++] = k[i].cause;
      continue;
    }
    prepare(x, r, (int)i, &k[i]);
    if (!k[i].text) continue;
    if (!as_buf_ok(&k[i].rd.subject)) rc = -ENOMEM;
    rows(x, &c, &k[i], (int)i, now);
  }
  if (rc == 0 && npark) rc = notif_park(x, tx, park, npark);
  free(park);
  if (rc == 0) rc = as_cols_run(&c, as_tx_db(tx), &w);
  if (rc == 0 && w) rc = written(x, tx, k, n, w);
  if (rc == 0 && w && PQntuples(w) > 0) notif_send_wake(x->send);
  PQclear(w);
  as_cols_free(&c);
  PQclear(r);
  return rc;
}

int notif_tell_flush(notif_t *x, as_tx_t *tx) {
  size_t n = x->npending;
  if (n == 0) return 0;
  told_t *k = calloc(n, sizeof *k);
  if (!k) {
    notif_tell_drop(x);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    notif_pending_t *p = &x->pending[i];
    if (p->t.channels) p->t.channels = p->chs; /* into the queue, which stopped moving */
    k[i].t = &p->t;
    k[i].cause = p->cause;
    as_buf_init(&k[i].rd.subject);
    for (int j = 0; j < NCH; j++) as_buf_init(&k[i].rd.body[j]);
  }
  int rc = tell_all(x, tx, k, n);
  for (size_t i = 0; i < n; i++) {
    as_buf_free(&k[i].rd.subject);
    for (int j = 0; j < NCH; j++) as_buf_free(&k[i].rd.body[j]);
  }
  free(k);
  notif_tell_drop(x);
  return rc;
}

int notif_tell(notif_t *x, as_tx_t *tx, const as_msg_t *cause, const notif_tell_t *t) {
  int rc = queue(x, cause, t);
  if (rc < 0 || x->batching) return rc;
  return notif_tell_flush(x, tx);
}

bool notif_text_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 && s[i] != '\n') return false;
  return true;
}
