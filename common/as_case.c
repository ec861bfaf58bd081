/* as_case: the legal-move table of the case life cycle, case creation and
 * the transition function, the last two in bulk (as_case_note, a timeline
 * row that keeps the state, is one case at a time): a worker opens or moves a whole
 * batch's cases with a fixed number of statements (array parameters through
 * unnest), and the one-case forms are wrappers of the bulk ones. Both queue
 * the CaseStateChanged of every timeline row they write in the caller's
 * outbox batch. */
#include "as_case.h"

#include "as_cols.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_buf.h"
#include "as_enum.h"
#include "as_topics.h"
#include "as_uuid.h"

#define S(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define B(x) (1u << S(x))
#define NSTATES (S(CLOSED) + 1)

/* From each state, the states it may move to. A closed case never moves;
 * a mediator's ruling (from DISPUTED) is final. A claim QC judges from its
 * evidence alone goes to INSPECTING from where it is decided (issue 12;
 * common/sql/cases/007_inspection.sql). A parcel the carrier lost is
 * reshipped (EXCHANGED) from carrier verification, and a return parcel the
 * buyer shipped and the carrier lost is refunded while the case still
 * awaits it (issue 13; common/sql/cases/009_logistics.sql). */
static const uint32_t legal[NSTATES] = {
    [S(OPEN)] = B(AWAITING_EVIDENCE) | B(IN_REVIEW) | B(MANUAL_REVIEW) | B(APPROVED) | B(REJECTED) |
                B(GOODWILL_OFFERED) | B(CARRIER_VERIFYING) | B(ESCALATED) | B(RESOLVED) |
                B(CLOSED) | B(INSPECTING),
    [S(AWAITING_EVIDENCE)] = B(IN_REVIEW) | B(MANUAL_REVIEW) | B(APPROVED) | B(REJECTED) |
                             B(GOODWILL_OFFERED) | B(CLOSED) | B(INSPECTING),
    [S(IN_REVIEW)] = B(APPROVED) | B(REJECTED) | B(MANUAL_REVIEW) | B(GOODWILL_OFFERED) |
                     B(AWAITING_EVIDENCE) | B(CLOSED) | B(INSPECTING),
    [S(MANUAL_REVIEW)] = B(APPROVED) | B(REJECTED) | B(GOODWILL_OFFERED) | B(AWAITING_EVIDENCE) |
                         B(ESCALATED) | B(CLOSED),
    [S(GOODWILL_OFFERED)] = B(APPROVED) | B(REFUNDED) | B(MANUAL_REVIEW) | B(CLOSED),
    [S(APPROVED)] = B(AWAITING_RETURN) | B(REFUNDED) | B(EXCHANGED) | B(DISPUTED) | B(CLOSED),
    [S(AWAITING_RETURN)] = B(RETURN_RECEIVED) | B(DISPUTED) | B(CLOSED) | B(REFUNDED),
    [S(RETURN_RECEIVED)] = B(INSPECTING) | B(REFUNDED) | B(EXCHANGED) | B(DISPUTED),
    [S(INSPECTING)] = B(REFUNDED) | B(EXCHANGED) | B(REJECTED) | B(DISPUTED),
    [S(REFUNDED)] = B(CLOSED),
    [S(EXCHANGED)] = B(CLOSED),
    [S(REJECTED)] = B(DISPUTED) | B(CLOSED),
    [S(DISPUTED)] = B(APPROVED) | B(REJECTED) | B(REFUNDED) | B(EXCHANGED) | B(CLOSED),
    [S(CARRIER_VERIFYING)] = B(RESOLVED) | B(REFUNDED) | B(ESCALATED) | B(CLOSED) | B(EXCHANGED),
    /* complaints past their deadline, and review cases past their SLA
     * (a supervisor decides those like an agent would) */
    [S(ESCALATED)] = B(RESOLVED) | B(REFUNDED) | B(APPROVED) | B(REJECTED) | B(GOODWILL_OFFERED) |
                     B(AWAITING_EVIDENCE) | B(CLOSED),
    [S(RESOLVED)] = B(CLOSED),
    [S(CLOSED)] = 0,
};

const char *as_case_state_name(as_case_state_t s) {
  return (s > 0 && (unsigned)s < NSTATES)
             ? as_enum_name(&aftersales__v1__case_state__descriptor, (int)s)
             : NULL;
}

int as_case_state_parse(const char *name, as_case_state_t *out) {
  int v;
  if (as_enum_value(&aftersales__v1__case_state__descriptor, name, strlen(name), false, &v) < 0)
    return -EINVAL;
  *out = (as_case_state_t)v;
  return 0;
}

bool as_case_move_legal(as_case_state_t from, as_case_state_t to) {
  if (!as_case_state_name(from) || !as_case_state_name(to)) return false;
  return (legal[from] >> to) & 1u;
}

/* ---- CaseStateChanged ---------------------------------------------------- */

#define K(x) AFTERSALES__V1__ACTOR_KIND__ACTOR_KIND_##x

/* The timeline's actor kinds the enum knows; others travel as UNSPECIFIED
 * (and by name in actor_kind). */
static const struct {
  const char *name;
  Aftersales__V1__ActorKind kind;
} actor_kinds[] = {{"system", K(SYSTEM)}, {"buyer", K(BUYER)},     {"seller", K(SELLER)},
                   {"agent", K(AGENT)},   {"carrier", K(CARRIER)}, {"warehouse", K(WAREHOUSE)}};

static Aftersales__V1__ActorKind actor_kind(const char *name) {
  for (size_t i = 0; name && i < sizeof actor_kinds / sizeof actor_kinds[0]; i++)
    if (strcmp(actor_kinds[i].name, name) == 0) return actor_kinds[i].kind;
  return K(UNSPECIFIED);
}

/* One timeline row as the wire sees it; all borrowed. */
typedef struct change {
  const char *case_id, *order_id, *case_number;
  as_case_state_t from, to;
  int64_t version;
  as_case_actor_t actor;
  const char *why, *event_id;
  const as_msg_t *cause;
} change_t;

static char *str_or_empty(const char *s) {
  return (char *)(s ? s : "");
}

/* Queues c's CaseStateChanged. Its id is a name of (case id, version), the
 * timeline's key: the same row always yields the same event id. Returns 0,
 * -EINVAL (a case id too long to name) or -ENOMEM. */
static int publish_change(as_tx_t *tx, const change_t *c) {
  char name[512], id[AS_UUID_STRLEN + 1];
  int len = snprintf(name, sizeof name, "%s|%lld", c->case_id, (long long)c->version);
  if (len < 0 || (size_t)len >= sizeof name) return -EINVAL;
  as_uuid_v5(id, "aftersales.case_state_changed", name, (size_t)len);

  Aftersales__V1__Actor actor = AFTERSALES__V1__ACTOR__INIT;
  actor.kind = actor_kind(c->actor.kind);
  actor.id = str_or_empty(c->actor.id);
  Aftersales__V1__CaseStateChanged p = AFTERSALES__V1__CASE_STATE_CHANGED__INIT;
  p.case_id = (char *)c->case_id;
  p.from_state = c->from;
  p.to_state = c->to;
  p.version = c->version;
  p.actor = &actor;
  p.reason = str_or_empty(c->why);
  p.order_id = str_or_empty(c->order_id);
  p.case_number = str_or_empty(c->case_number);
  p.actor_kind = str_or_empty(c->actor.kind);
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = id;
  env.case_id = p.case_id;
  env.order_id = p.order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_STATE_CHANGED;
  env.case_state_changed = &p;

  /* Without the causing message the causing event's id alone still names
   * the cause (as_envelope_stamp then starts a new trace). */
  as_envelope_t by_id = AFTERSALES__V1__ENVELOPE__INIT;
  as_msg_t named = {.env = &by_id};
  const as_msg_t *cause = c->cause;
  if (!cause && c->event_id) {
    by_id.event_id = (char *)c->event_id;
    cause = &named;
  }
  return as_tx_publish(tx, cause, AS_TOPIC_NAME_CASES, c->case_id, &env);
}

/* ---- opening ------------------------------------------------------------- */

/* The first occurrence of an id wins (DISTINCT ON ... ORDER BY ordinal);
 * numbers are drawn only for cases that bring none; rows are inserted in
 * case-id order so that two instances lock conflicting keys in one order.
 * Returns (ordinal, case_number) of each case actually inserted. */
enum {
  O_ID,
  O_NUM,
  O_TYPE,
  O_STATE,
  O_ORDER,
  O_BUYER,
  O_MERCHANT,
  O_REASON,
  O_ROUTE,
  O_CUR,
  O_CLAIMED,
  O_AKIND,
  O_AID,
  O_WHY,
  O_EVENT,
  O_PAID,
  O_PAID_CUR,
  O_SHIP_PAID,
  O_COUNT
};
static const as_col_t open_cols[] = {
    [O_ID] = {"case_id", "text"},
    [O_NUM] = {"case_number", "text"},
    [O_TYPE] = {"case_type", "text"},
    [O_STATE] = {"state", "text"},
    [O_ORDER] = {"order_id", "text"},
    [O_BUYER] = {"buyer_id", "text"},
    [O_MERCHANT] = {"merchant_id", "text"},
    [O_REASON] = {"reason", "text"},
    [O_ROUTE] = {"route", "text"},
    [O_CUR] = {"currency", "text"},
    [O_CLAIMED] = {"claimed_minor", "bigint"},
    [O_AKIND] = {"actor_kind", "text"},
    [O_AID] = {"actor_id", "text"},
    [O_WHY] = {"why", "text"},
    [O_EVENT] = {"event_id", "uuid"},
    [O_PAID] = {"paid_minor", "bigint"},
    [O_PAID_CUR] = {"paid_currency", "text"},
    [O_SHIP_PAID] = {"shipping_paid_minor", "bigint"},
};
static const as_bulk_t sql_open = AS_BULK(
    "WITH u AS (SELECT * FROM {{u:i}}),"
    " d AS (SELECT DISTINCT ON (u.case_id) u.* FROM u ORDER BY u.case_id, u.i),"
    " s AS (SELECT d.*, coalesce(d.case_number, 'AS-' || to_char(now() AT TIME ZONE 'UTC', "
    "'YYYYMMDD')"
    " || '-' || lpad(q.n::text, greatest(7, length(q.n::text)), '0')) AS number FROM d,"
    " LATERAL (SELECT CASE WHEN d.case_number IS NULL THEN nextval('cases.case_number_seq') END AS "
    "n) q),"
    " c AS (INSERT INTO cases.cases (case_id, case_number, case_type, state, order_id, buyer_id,"
    " merchant_id, reason, route, currency, claimed_minor, paid_minor, paid_currency,"
    " shipping_paid_minor)"
    " SELECT s.case_id, s.number, s.case_type, s.state, s.order_id, s.buyer_id, s.merchant_id, "
    "s.reason,"
    " s.route, s.currency, s.claimed_minor, s.paid_minor, s.paid_currency, s.shipping_paid_minor "
    "FROM s"
    " ORDER BY s.case_id COLLATE \"C\" ON CONFLICT (case_id) DO NOTHING"
    " RETURNING case_id, case_number, state),"
    " t AS (INSERT INTO cases.timeline (case_id, version, from_state, to_state, actor_kind,"
    " actor_id, reason, event_id) SELECT c.case_id, 1, NULL, c.state, s.actor_kind, s.actor_id, "
    "s.why,"
    " s.event_id FROM c JOIN s ON s.case_id = c.case_id)"
    " SELECT s.i, c.case_number FROM c JOIN s ON s.case_id = c.case_id",
    open_cols);

static void open_row(as_cols_t *c, const as_case_opening_t *o) {
  const as_case_new_t *k = &o->c;
  const char *s[] = {[O_ID] = k->case_id,
                     [O_NUM] = k->case_number,
                     [O_TYPE] = k->case_type,
                     [O_STATE] = as_case_state_name(k->state),
                     [O_ORDER] = k->order_id,
                     [O_BUYER] = k->buyer_id,
                     [O_MERCHANT] = k->merchant_id,
                     [O_REASON] = k->reason,
                     [O_ROUTE] = k->route,
                     [O_CUR] = k->currency,
                     [O_AKIND] = o->actor.kind,
                     [O_AID] = o->actor.id,
                     [O_WHY] = o->why,
                     [O_EVENT] = o->event_id,
                     [O_PAID_CUR] = k->has_paid ? k->paid_currency : NULL};
  for (int i = 0; i < O_COUNT; i++)
    if (i != O_CLAIMED && i != O_PAID && i != O_SHIP_PAID) as_cols_str(c, i, s[i]);
  as_cols_int(c, O_CLAIMED, k->claimed_minor);
  if (k->has_paid) {
    as_cols_int(c, O_PAID, k->paid_minor);
    as_cols_int(c, O_SHIP_PAID, k->shipping_paid_minor);
  } else {
    as_cols_null(c, O_PAID);
    as_cols_null(c, O_SHIP_PAID);
  }
}

static void open_results(as_case_opening_t *o, size_t n, PGresult *r) {
  for (int row = 0; row < PQntuples(r); row++) {
    long long i = strtoll(PQgetvalue(r, row, 0), NULL, 10) - 1; /* ordinals start at 1 */
    if (i < 0 || (size_t)i >= n) continue;
    o[i].opened = true;
    snprintf(o[i].case_number, sizeof o[i].case_number, "%s", PQgetvalue(r, row, 1));
  }
}

/* The births' CaseStateChanged, in o's order. */
static int publish_births(as_tx_t *tx, const as_case_opening_t *o, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (!o[i].opened) continue;
    change_t c = {.case_id = o[i].c.case_id,
                  .order_id = o[i].c.order_id,
                  .case_number = o[i].case_number,
                  .from = AFTERSALES__V1__CASE_STATE__CASE_STATE_UNSPECIFIED,
                  .to = o[i].c.state,
                  .version = 1,
                  .actor = o[i].actor,
                  .why = o[i].why,
                  .event_id = o[i].event_id,
                  .cause = o[i].cause};
    rc = publish_change(tx, &c);
  }
  return rc;
}

int as_case_open_many(as_tx_t *tx, as_case_opening_t *o, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!o[i].c.case_id || !as_case_state_name(o[i].c.state)) return -EINVAL;
    o[i].opened = false;
    o[i].case_number[0] = '\0';
  }
  if (n == 0) return 0;
  as_cols_t c;
  as_cols_init(&c, &sql_open);
  for (size_t i = 0; i < n; i++) open_row(&c, &o[i]);
  PGresult *r = NULL;
  int rc = as_cols_run(&c, tx->db, &r);
  if (rc == 0) open_results(o, n, r);
  if (rc == 0) rc = publish_births(tx, o, n);
  PQclear(r);
  as_cols_free(&c);
  return rc;
}

int as_case_open(as_tx_t *tx, const as_case_new_t *c, as_case_actor_t actor, const char *why,
                 const char *event_id) {
  as_case_opening_t o = {.c = *c, .actor = actor, .why = why, .event_id = event_id};
  int rc = as_case_open_many(tx, &o, 1);
  return rc == 0 && !o.opened ? -EEXIST : rc;
}

/* ---- moving -------------------------------------------------------------- */

/* Locks in case-id order: two instances moving overlapping sets of cases
 * take the row locks in the same order and cannot deadlock on them. */
static const as_col_t lock_cols[] = {{"case_id", "text"}};
static const as_bulk_t sql_lock = AS_BULK(
    "SELECT case_id, state, version, order_id, case_number FROM cases.cases"
    " WHERE case_id = ANY({{$case_id}})"
    " ORDER BY case_id COLLATE \"C\" FOR UPDATE",
    lock_cols);
/* The timeline rows of the moves made, through cases.move (common/sql/cases/
 * 005_least_privilege.sql, 006_move_one_pass.sql): the one writer of a case's state, a SECURITY
 * DEFINER function that checks the rows chain from the stored case and are
 * legal, then sets each case's final state and version and appends them.
 * Worker roles have no UPDATE on state or version. One round trip; the
 * counts let the caller check every locked row was written. */
enum { T_ID, T_VERSION, T_FROM, T_TO, T_AKIND, T_AID, T_WHY, T_EVENT, T_DETAIL, T_COUNT };
static const as_col_t write_cols[] = {
    [T_ID] = {"case_id", "text"},       [T_VERSION] = {"version", "bigint"},
    [T_FROM] = {"from_state", "text"},  [T_TO] = {"to_state", "text"},
    [T_AKIND] = {"actor_kind", "text"}, [T_AID] = {"actor_id", "text"},
    [T_WHY] = {"reason", "text"},       [T_EVENT] = {"event_id", "uuid"},
    [T_DETAIL] = {"detail", "jsonb"},
};
static const as_bulk_t sql_write = AS_BULK(
    "SELECT moved, logged FROM cases.move({{$case_id}}, {{$version}}, {{$from_state}},"
    " {{$to_state}}, {{$actor_kind}}, {{$actor_id}}, {{$reason}}, {{$event_id}},"
    " {{$detail}})",
    write_cols);

/* A locked case as the batch's moves leave it. */
typedef struct locked {
  const char *id, *order_id, *case_number; /* into the lock result */
  as_case_state_t state;
  int64_t version;
  bool dirty;
} locked_t;

static int by_id(const void *a, const void *b) {
  return strcmp(((const locked_t *)a)->id, ((const locked_t *)b)->id);
}

/* Takes the row locks and reads the cases into *rows (sorted by id). */
static int lock_rows(as_tx_t *tx, const as_case_move_t *m, size_t n, PGresult **r, locked_t **rows,
                     size_t *nrows) {
  as_cols_t c;
  as_cols_init(&c, &sql_lock);
  for (size_t i = 0; i < n; i++) as_cols_str(&c, 0, m[i].case_id);
  int rc = as_cols_run(&c, tx->db, r);
  as_cols_free(&c);
  if (rc < 0) return rc;
  *nrows = (size_t)PQntuples(*r);
  *rows = calloc(*nrows ? *nrows : 1, sizeof **rows);
  if (!*rows) return -ENOMEM;
  for (size_t k = 0; k < *nrows; k++) {
    locked_t *l = &(*rows)[k];
    l->id = PQgetvalue(*r, (int)k, 0);
    if (as_case_state_parse(PQgetvalue(*r, (int)k, 1), &l->state) < 0) return -EIO;
    l->version = strtoll(PQgetvalue(*r, (int)k, 2), NULL, 10);
    l->order_id = PQgetvalue(*r, (int)k, 3);
    l->case_number = PQgetvalue(*r, (int)k, 4);
  }
  qsort(*rows, *nrows, sizeof **rows, by_id);
  return 0;
}

/* Decides one move against its case as the earlier moves left it. */
static void decide(as_case_move_t *m, locked_t *rows, size_t nrows) {
  locked_t key = {.id = m->case_id};
  locked_t *l = bsearch(&key, rows, nrows, sizeof *rows, by_id);
  if (!l) {
    m->rc = -ENOENT;
    m->from = AFTERSALES__V1__CASE_STATE__CASE_STATE_UNSPECIFIED;
    m->version = 0;
    return;
  }
  m->from = l->state;
  bool in_mask = m->from_mask == 0 || (((uint64_t)m->from_mask >> l->state) & 1u);
  if (!in_mask || !as_case_move_legal(l->state, m->to)) {
    m->rc = -EPERM;
    m->version = l->version;
    return;
  }
  l->state = m->to;
  m->version = ++l->version;
  l->dirty = true;
  m->rc = 0;
}

/* Writes the dirty rows and the timeline rows of the moves made. */
static int write_moves(as_tx_t *tx, const as_case_move_t *m, size_t n, const locked_t *rows,
                       size_t nrows) {
  as_cols_t c;
  as_cols_init(&c, &sql_write);
  long long want_u = 0, want_t = 0;
  for (size_t k = 0; k < nrows; k++) want_u += rows[k].dirty;
  for (size_t i = 0; i < n; i++) {
    if (m[i].rc != 0) continue;
    const char *s[] = {m[i].case_id,
                       NULL,
                       as_case_state_name(m[i].from),
                       as_case_state_name(m[i].to),
                       m[i].actor.kind,
                       m[i].actor.id,
                       m[i].why,
                       m[i].event_id,
                       m[i].detail_json};
    for (int k = T_ID; k < T_COUNT; k++)
      if (k != T_VERSION) as_cols_str(&c, k, s[k - T_ID]);
    as_cols_int(&c, T_VERSION, m[i].version);
    want_t++;
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, tx->db, &r);
  if (rc == 0 && r &&
      (strtoll(PQgetvalue(r, 0, 0), NULL, 10) != want_u ||
       strtoll(PQgetvalue(r, 0, 1), NULL, 10) != want_t))
    rc = -EIO; /* a locked row vanished: cannot happen while the lock holds */
  PQclear(r);
  as_cols_free(&c);
  return rc;
}

/* The moves' CaseStateChanged, in m's order. */
static int publish_moves(as_tx_t *tx, const as_case_move_t *m, size_t n, const locked_t *rows,
                         size_t nrows) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (m[i].rc != 0) continue;
    locked_t key = {.id = m[i].case_id};
    const locked_t *l = bsearch(&key, rows, nrows, sizeof *rows, by_id);
    change_t c = {.case_id = m[i].case_id,
                  .order_id = l->order_id,
                  .case_number = l->case_number,
                  .from = m[i].from,
                  .to = m[i].to,
                  .version = m[i].version,
                  .actor = m[i].actor,
                  .why = m[i].why,
                  .event_id = m[i].event_id,
                  .cause = m[i].cause};
    rc = publish_change(tx, &c);
  }
  return rc;
}

int as_case_transition_many(as_tx_t *tx, as_case_move_t *m, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!m[i].case_id) return -EINVAL;
  if (n == 0) return 0;
  PGresult *r = NULL;
  locked_t *rows = NULL;
  size_t nrows = 0;
  int rc = lock_rows(tx, m, n, &r, &rows, &nrows);
  for (size_t i = 0; rc == 0 && i < n; i++) decide(&m[i], rows, nrows);
  if (rc == 0) rc = write_moves(tx, m, n, rows, nrows);
  if (rc == 0) rc = publish_moves(tx, m, n, rows, nrows);
  free(rows);
  PQclear(r);
  return rc;
}

int as_case_transition(as_tx_t *tx, const char *case_id, as_case_state_t to, as_case_actor_t actor,
                       const char *why, const char *event_id, const char *detail_json,
                       as_case_state_t *from, int64_t *version) {
  as_case_move_t mv = {.case_id = case_id,
                       .to = to,
                       .actor = actor,
                       .why = why,
                       .event_id = event_id,
                       .detail_json = detail_json};
  int rc = as_case_transition_many(tx, &mv, 1);
  if (rc == 0) rc = mv.rc;
  if (from && (rc == 0 || rc == -EPERM)) *from = mv.from;
  if (version && rc == 0) *version = mv.version;
  return rc;
}

/* ---- a timeline row without a move --------------------------------------- */

static const char sql_note[] = "SELECT cases.note($1, $2::bigint, $3, $4, $5, $6::uuid, $7::jsonb)";

int as_case_note(as_tx_t *tx, const char *case_id, as_case_actor_t actor, const char *why,
                 const as_msg_t *cause, const char *detail_json, int64_t *version) {
  if (!case_id) return -EINVAL;
  as_case_move_t key = {.case_id = case_id};
  PGresult *r = NULL, *w = NULL;
  locked_t *rows = NULL;
  size_t nrows = 0;
  int rc = lock_rows(tx, &key, 1, &r, &rows, &nrows);
  if (rc == 0 && nrows == 0) rc = -ENOENT;
  char ver[24];
  const char *event_id = cause && cause->env ? cause->env->event_id : NULL;
  if (rc == 0) {
    snprintf(ver, sizeof ver, "%lld", (long long)(rows[0].version + 1));
    const char *vals[7] = {case_id, ver, actor.kind, actor.id, why, event_id, detail_json};
    rc = as_db_query(tx->db, sql_note, 7, vals, &w);
  }
  /* NULL: the row moved under the lock, which cannot happen while it holds */
  if (rc == 0 && (PQntuples(w) != 1 || PQgetisnull(w, 0, 0))) rc = -EIO;
  if (rc == 0) {
    change_t c = {.case_id = case_id,
                  .order_id = rows[0].order_id,
                  .case_number = rows[0].case_number,
                  .from = rows[0].state,
                  .to = rows[0].state,
                  .version = rows[0].version + 1,
                  .actor = actor,
                  .why = why,
                  .event_id = event_id,
                  .cause = cause};
    rc = publish_change(tx, &c);
    if (rc == 0 && version) *version = c.version;
  }
  PQclear(w);
  PQclear(r);
  free(rows);
  return rc;
}
