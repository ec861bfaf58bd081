/* notif_contacts: the buyers' contacts and preferences (BuyerContactUpdated)
 * and the right to erasure (BuyerErased), on aftersales.contacts.v1.
 *
 * A contact is checked (E.164 phone, e-mail shape, a time zone PostgreSQL
 * knows, a locale tag, quiet minutes 0-1439, channels) and upserted, a
 * batch's contacts in one statement (a bulk import must not hold the loop
 * for a round trip per buyer: first responses wait behind it); one older
 * than the stored one or than an erasure is ignored and counted. A
 * refused contact is personal data: the runtime's dead letter would carry
 * its bytes as they came, so this module writes the dead letter itself,
 * with the event re-encoded with phone, e-mail and push token replaced by
 * "[redacted]" (same id, reason and fields as the runtime's, and counted in
 * as_messages_deadlettered_total), and the message is not marked dead.
 * Reasons never quote a value. An erasure deletes the contact, keeps a
 * tombstone, scrubs every rendered text of the buyer ('[erased]') and
 * cancels what is not sent yet. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "as_log.h"
#include "notification.h"

#define REDACTED "[redacted]"

static bool all_of(const char *s, const char *set) {
  return s[strspn(s, set)] == '\0';
}

#define DIGITS "0123456789"
#define ALNUM "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" DIGITS

static bool phone_ok(const char *p) {
  size_t n = strlen(p);
  return n == 0 || (p[0] == '+' && n >= 8 && n <= 16 && p[1] != '0' && all_of(p + 1, DIGITS));
}

/* local@domain.tld: printable ASCII, no spaces or quoting. */
static bool email_ok(const char *e) {
  size_t n = strlen(e);
  if (n == 0) return true;
  const char *at = strchr(e, '@');
  if (n > 254 || !at || at == e || at - e > 64 || strchr(at + 1, '@')) return false;
  const char *dot = strrchr(at, '.');
  if (!dot || dot == at + 1 || dot[1] == '\0') return false;
  return all_of(e, ALNUM ".!#$%&'*+/=?^_`{|}~-@");
}

/* BCP 47's shape: a 2-3 letter language and up to 3 subtags. */
static bool locale_ok(const char *l) {
  size_t n = strlen(l), lang = strspn(l, "abcdefghijklmnopqrstuvwxyz");
  if (n == 0) return true;
  if (n > 35 || lang < 2 || lang > 3) return false;
  for (const char *s = l + lang; *s;) {
    if (*s != '-') return false;
    size_t k = strspn(s + 1, ALNUM);
    if (k < 2 || k > 8) return false;
    s += 1 + k;
  }
  return true;
}

static const char *channels_bad(const Aftersales__V1__BuyerContactUpdated *c) {
  if (c->n_channels_allowed > 4) return "more than 4 channels";
  for (size_t i = 0; i < c->n_channels_allowed; i++) {
    if (c->channels_allowed[i] < 1 || c->channels_allowed[i] > 4) return "channel unknown";
    for (size_t k = 0; k < i; k++)
      if (c->channels_allowed[k] == c->channels_allowed[i]) return "channel listed twice";
  }
  return NULL;
}

/* The envelope names no case (the contract of the topic), or, in the older
 * form, puts the buyer id in case_id. */
static bool buyer_ok(const as_msg_t *m, const char *buyer_id) {
  return as_envelope_id_ok(buyer_id) &&
         (!m->env->case_id[0] || strcmp(buyer_id, m->env->case_id) == 0);
}

static const char *contact_bad(const as_msg_t *m, const Aftersales__V1__BuyerContactUpdated *c) {
  if (!buyer_ok(m, c->buyer_id)) return "buyer_id missing, unsafe or not the envelope's case_id";
  if (!phone_ok(c->phone)) return "phone is not E.164";
  if (!email_ok(c->email)) return "email is not an address";
  if (strlen(c->push_token) > 512 || !all_of(c->push_token, ALNUM ":._-/+="))
    return "push_token longer than 512 bytes or not a token";
  if (!locale_ok(c->locale)) return "locale is not a BCP 47 tag";
  if (strlen(c->time_zone) > 64 || !all_of(c->time_zone, ALNUM "/_+-"))
    return "time_zone is not an IANA name";
  const Aftersales__V1__QuietHours *q = c->quiet_hours;
  if (q &&
      (q->start_minute < 0 || q->start_minute > 1439 || q->end_minute < 0 || q->end_minute > 1439))
    return "quiet hours outside 0..1439 minutes";
  if (c->updated_at_us <= 0) return "updated_at_us missing";
  return channels_bad(c);
}

/* The event's bytes with the personal fields replaced (caller frees). */
static uint8_t *redacted_bytes(const as_msg_t *m, size_t *len) {
  Aftersales__V1__BuyerContactUpdated c = *m->env->buyer_contact_updated;
  if (c.phone[0]) c.phone = REDACTED;
  if (c.email[0]) c.email = REDACTED;
  if (c.push_token[0]) c.push_token = REDACTED;
  as_envelope_t env = *m->env;
  env.buyer_contact_updated = &c;
  *len = aftersales__v1__envelope__get_packed_size(&env);
  uint8_t *b = malloc(*len ? *len : 1);
  if (b) aftersales__v1__envelope__pack(&env, b);
  return b;
}

/* As the runtime's (as_tx.c), but with the redacted bytes as original. */
static int dead_letter(notif_t *x, as_tx_t *tx, const as_msg_t *m, const char *reason) {
  const rd_kafka_message_t *k = m->rkm;
  const char *topic = rd_kafka_topic_name(k->rkt);
  char name[320], id[AS_UUID_STRLEN + 1];
  int nlen = snprintf(name, sizeof name, "%s|%s|%d|%lld", tx->conf->group_id, topic,
                      (int)k->partition, (long long)k->offset);
  as_uuid_v5(id, "aftersales.deadletter", name, (size_t)nlen);
  size_t len = 0;
  uint8_t *bytes = redacted_bytes(m, &len);
  if (!bytes) return -ENOMEM;
  Aftersales__V1__DeadLetter dl = AFTERSALES__V1__DEAD_LETTER__INIT;
  dl.reason_code = (char *)AS_DLQ_CONTRACT;
  dl.detail = (char *)reason;
  dl.source_topic = (char *)topic;
  dl.source_partition = k->partition;
  dl.source_offset = k->offset;
  dl.source_key = (ProtobufCBinaryData){
      .len = k->key_len < AS_TX_DLQ_KEY_MAX ? k->key_len : AS_TX_DLQ_KEY_MAX, .data = k->key};
  dl.original = (ProtobufCBinaryData){
      .len = len < tx->conf->dlq_max_bytes ? len : tx->conf->dlq_max_bytes, .data = bytes};
  dl.original_size = (int64_t)len;
  dl.consumer_group = (char *)tx->conf->group_id;
  dl.failed_at_us = as_now_us();
  dl.original_event_id = m->env->event_id;
  dl.original_event_type = m->env->event_type;
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = id;
  env.case_id = m->env->case_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER;
  env.dead_letter = &dl;
  int rc = as_tx_publish(tx, m, tx->conf->dlq_topic, topic, &env);
  free(bytes);
  if (rc < 0) return rc;
  as_counter_add(x->contacts_refused, 1);
  as_counter_add(as_metrics_counter(x->metrics, "as_messages_deadlettered_total",
                                    "Messages sent to the dead-letter topic.",
                                    "reason=\"" AS_DLQ_CONTRACT "\""),
                 1);
  AS_WARN(x->log, "contact refused, dead-lettered redacted", AS_F_STR("reason", reason),
          AS_F_STR("event_id", m->env->event_id));
  return 0;
}

static const char *const channel_names[] = {"", "sms", "email", "push", "in_app"};

/* A run of contacts (the batch's, up to its next erasure) in one
 * statement. The zone is checked here, against the zones PostgreSQL knew
 * when migrated, else its zone database (CASE keeps that order). A buyer
 * named twice keeps the newest (ON CONFLICT cannot touch a row twice in
 * one statement); the others count as stale. Rows returned: the first
 * (with the count stored) and every refused one. */
enum {
  K_BUYER,
  K_LOCALE,
  K_TZ,
  K_PHONE,
  K_EMAIL,
  K_PUSH,
  K_CHANS,
  K_QS,
  K_QE,
  K_MKT,
  K_AT,
  K_NCOLS
};
static const as_col_t k_cols[K_NCOLS] = {
    [K_BUYER] = {"buyer_id", "text"}, [K_LOCALE] = {"locale", "text"},
    [K_TZ] = {"time_zone", "text"},   [K_PHONE] = {"phone", "text"},
    [K_EMAIL] = {"email", "text"},    [K_PUSH] = {"push_token", "text"},
    [K_CHANS] = {"chans", "text"},    [K_QS] = {"qs", "int"},
    [K_QE] = {"qe", "int"},           [K_MKT] = {"mkt", "bool"},
    [K_AT] = {"at", "bigint"},
};
static const as_bulk_t sql_contacts = AS_BULK(
    "WITH z AS (SELECT u.*, CASE WHEN u.time_zone = '' THEN true"
    "  WHEN EXISTS (SELECT 1 FROM zones WHERE name = u.time_zone) THEN true"
    "  ELSE EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = u.time_zone) END AS zone_ok"
    "  FROM {{u:o}}),"
    " ins AS (INSERT INTO contacts (buyer_id, locale, time_zone, phone, email, push_token,"
    "  channels, quiet_start_min, quiet_end_min, marketing_opt_in, updated_at_us)"
    "  SELECT DISTINCT ON (z.buyer_id) z.buyer_id, z.locale, z.time_zone, z.phone, z.email,"
    "  z.push_token, coalesce(string_to_array(nullif(z.chans, ''), ','), '{}'), z.qs, z.qe,"
    "  z.mkt, z.at FROM z WHERE z.zone_ok AND NOT EXISTS (SELECT 1 FROM erasures e"
    "  WHERE e.buyer_id = z.buyer_id AND e.erased_at_us >= z.at)"
    "  ORDER BY z.buyer_id, z.at DESC, z.o DESC"
    "  ON CONFLICT (buyer_id) DO UPDATE SET locale = EXCLUDED.locale,"
    "  time_zone = EXCLUDED.time_zone, phone = EXCLUDED.phone, email = EXCLUDED.email,"
    "  push_token = EXCLUDED.push_token, channels = EXCLUDED.channels,"
    "  quiet_start_min = EXCLUDED.quiet_start_min, quiet_end_min = EXCLUDED.quiet_end_min,"
    "  marketing_opt_in = EXCLUDED.marketing_opt_in, updated_at_us = EXCLUDED.updated_at_us"
    "  WHERE contacts.updated_at_us < EXCLUDED.updated_at_us RETURNING 1)"
    " SELECT z.o, NOT z.zone_ok, i.n FROM z, (SELECT count(*) AS n FROM ins) i"
    " WHERE z.o = 1 OR NOT z.zone_ok ORDER BY z.o",
    k_cols);

typedef struct run {
  as_cols_t c;
  as_msg_t **msg; /* of each row, in row order (borrowed); capacity: the batch */
  size_t n;
} run_t;

static void run_add(run_t *r, as_msg_t *m) {
  const Aftersales__V1__BuyerContactUpdated *c = m->env->buyer_contact_updated;
  char chans[64] = "";
  for (size_t i = 0; i < c->n_channels_allowed; i++)
    snprintf(chans + strlen(chans), sizeof chans - strlen(chans), "%s%s", i ? "," : "",
             channel_names[c->channels_allowed[i]]);
  as_cols_str(&r->c, K_BUYER, c->buyer_id);
  as_cols_str(&r->c, K_LOCALE, c->locale);
  as_cols_str(&r->c, K_TZ, c->time_zone);
  as_cols_str(&r->c, K_PHONE, c->phone);
  as_cols_str(&r->c, K_EMAIL, c->email);
  as_cols_str(&r->c, K_PUSH, c->push_token);
  as_cols_str(&r->c, K_CHANS, chans);
  as_cols_int(&r->c, K_QS, c->quiet_hours ? c->quiet_hours->start_minute : 0);
  as_cols_int(&r->c, K_QE, c->quiet_hours ? c->quiet_hours->end_minute : 0);
  as_cols_bool(&r->c, K_MKT, c->marketing_opt_in);
  as_cols_int(&r->c, K_AT, c->updated_at_us);
  r->msg[r->n++] = m;
}

/* Upserts the run and dead-letters the rows whose zone PostgreSQL does not
 * know; the run is empty again after. */
static int run_flush(notif_t *x, as_tx_t *tx, run_t *r) {
  if (r->n == 0) return 0;
  PGresult *res = NULL;
  int rc = as_cols_run(&r->c, as_tx_db(tx), &res);
  size_t refused = 0;
  long long stored = 0;
  for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
    long long o = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    stored = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    if (PQgetvalue(res, i, 1)[0] != 't') continue;
    if (o < 1 || (size_t)o > r->n)
      rc = -EIO;
    else if ((rc = dead_letter(x, tx, r->msg[o - 1], "time_zone unknown")) == 0)
      refused++;
  }
  if (rc == 0 && (stored < 0 || (size_t)stored > r->n - refused)) rc = -EIO;
  if (rc == 0) {
    as_counter_add(x->contacts_stored, (uint64_t)stored);
    as_counter_add(x->contacts_stale, (uint64_t)(r->n - refused - (size_t)stored));
  }
  PQclear(res);
  as_cols_reset(&r->c);
  r->n = 0;
  return rc;
}

static int on_erased(notif_t *x, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__BuyerErased *e = m->env->buyer_erased;
  if (!buyer_ok(m, e->buyer_id))
    return as_tx_reject(m, "buyer_id missing, unsafe or not the envelope's case_id"), 0;
  char at[24];
  snprintf(at, sizeof at, "%lld", (long long)(e->erased_at_us > 0 ? e->erased_at_us : as_now_us()));
  const char *v[] = {e->buyer_id, at};
  PGresult *r = NULL;
  int rc = as_db_query(
      as_tx_db(tx),
      "WITH t AS (INSERT INTO erasures (buyer_id, erased_at_us) VALUES ($1, $2)"
      "  ON CONFLICT (buyer_id) DO UPDATE SET erased_at_us ="
      "  greatest(erasures.erased_at_us, EXCLUDED.erased_at_us)),"
      " k AS (DELETE FROM contacts WHERE buyer_id = $1),"
      " s AS (UPDATE surveys SET comment = '' WHERE buyer_id = $1)"
      " UPDATE deliveries SET subject = CASE WHEN subject = '' THEN '' ELSE '[erased]' END,"
      "  body = '[erased]',"
      "  status = CASE WHEN status IN ('pending', 'standby', 'sending') THEN 'cancelled'"
      "  ELSE status END,"
      "  last_error = CASE WHEN status IN ('pending', 'standby', 'sending') THEN 'buyer_erased'"
      "  ELSE last_error END"
      " WHERE buyer_id = $1",
      2, v, &r);
  PQclear(r);
  if (rc == 0) {
    as_counter_add(x->erasures, 1);
    AS_INFO(x->log, "buyer erased", AS_F_STR("event_id", m->env->event_id));
  }
  return rc;
}

int notif_contacts_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  notif_t *x = state;
  run_t r = {.msg = calloc(n ? n : 1, sizeof *r.msg)};
  if (!r.msg) return -ENOMEM;
  as_cols_init(&r.c, &sql_contacts);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    as_msg_t *m = msgs[i];
    if (m->env->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_ERASED) {
      rc = run_flush(x, tx, &r); /* the contacts before it, then the erasure */
      if (rc == 0) rc = on_erased(x, tx, m);
      continue;
    }
    const char *bad = contact_bad(m, m->env->buyer_contact_updated);
    if (bad)
      rc = dead_letter(x, tx, m, bad);
    else
      run_add(&r, m);
  }
  if (rc == 0) rc = run_flush(x, tx, &r);
  as_cols_free(&r.c);
  free(r.msg);
  return rc;
}
