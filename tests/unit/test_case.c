/* Unit tests for as_case: the legal-move table and state names in memory;
 * then, against PostgreSQL, opening a case (once), legal and illegal
 * transitions with what they write (or do not write) in cases.cases and
 * cases.timeline, the append-only trigger, and two connections moving one
 * case: the second waits on the row lock and then sees the first's state.
 * The bulk forms: as_case_open_many with ids existing or repeated in the
 * batch, as_case_transition_many with chained moves on one case, legal,
 * illegal, missing and from_mask-refused moves in one call (refused ones
 * write nothing), and two connections locking the same cases listed in
 * opposite orders. The outbox: one CaseStateChanged per timeline row (a
 * birth from UNSPECIFIED, each legal move), none for a refused move or a
 * failed call, with the row's from/to/version/actor/reason, its name-based
 * event id and the causing event or message. In SQL: cases.legal_moves is
 * the C table pair by pair, and cases.move refuses moves that skip a
 * version, start from another state or are illegal. */
#include "as_case.h"
#include "as_test.h"
#include "as_test_pg.h"
#include "as_uuid.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define ST(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define NSTATES 18 /* UNSPECIFIED .. CLOSED */

AS_TEST(move_legal_table) {
  static const struct {
    as_case_state_t from, to;
    bool legal;
  } rows[] = {
      {ST(OPEN), ST(IN_REVIEW), true},
      {ST(OPEN), ST(AWAITING_EVIDENCE), true},
      {ST(OPEN), ST(CLOSED), true},
      {ST(OPEN), ST(REFUNDED), false}, /* money only after a decision */
      {ST(OPEN), ST(OPEN), false},
      {ST(AWAITING_EVIDENCE), ST(IN_REVIEW), true},
      {ST(IN_REVIEW), ST(APPROVED), true},
      {ST(IN_REVIEW), ST(OPEN), false},
      {ST(APPROVED), ST(AWAITING_RETURN), true},
      {ST(APPROVED), ST(REFUNDED), true},
      {ST(APPROVED), ST(REJECTED), false},
      {ST(AWAITING_RETURN), ST(RETURN_RECEIVED), true},
      {ST(RETURN_RECEIVED), ST(INSPECTING), true},
      {ST(RETURN_RECEIVED), ST(CLOSED), false}, /* goods in hand: decide first */
      {ST(INSPECTING), ST(REJECTED), true},
      {ST(REFUNDED), ST(CLOSED), true},
      {ST(REFUNDED), ST(REFUNDED), false},
      {ST(REFUNDED), ST(APPROVED), false},
      {ST(REJECTED), ST(DISPUTED), true},
      {ST(DISPUTED), ST(APPROVED), true},
      {ST(DISPUTED), ST(IN_REVIEW), false},
      {ST(CARRIER_VERIFYING), ST(ESCALATED), true},
      {ST(CARRIER_VERIFYING), ST(EXCHANGED), true}, /* a lost parcel reshipped */
      {ST(AWAITING_RETURN), ST(REFUNDED), true},    /* a shipped return the carrier lost */
      {ST(CARRIER_VERIFYING), ST(APPROVED), false},
      {ST(ESCALATED), ST(CARRIER_VERIFYING), false},
      {ST(RESOLVED), ST(CLOSED), true},
      {ST(CLOSED), ST(OPEN), false},
      /* outside the enum on either side */
      {ST(UNSPECIFIED), ST(OPEN), false},
      {ST(OPEN), ST(UNSPECIFIED), false},
      {(as_case_state_t)18, ST(CLOSED), false},
      {ST(OPEN), (as_case_state_t)18, false},
      {(as_case_state_t)-1, ST(OPEN), false},
      {ST(OPEN), (as_case_state_t)-1, false},
      {ST(OPEN), (as_case_state_t)33, false},
      {(as_case_state_t)1000, (as_case_state_t)1000, false},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char got[96], want[96];
    snprintf(got, sizeof got, "%d -> %d: %d", (int)rows[i].from, (int)rows[i].to,
             as_case_move_legal(rows[i].from, rows[i].to));
    snprintf(want, sizeof want, "%d -> %d: %d", (int)rows[i].from, (int)rows[i].to, rows[i].legal);
    AS_CHECK_STR_EQ(got, want);
  }
}

/* CLOSED is terminal; no state moves to itself; every state but CLOSED has
 * a way out and every state can be reached from OPEN. */
AS_TEST(move_table_shape) {
  bool reach[NSTATES] = {false};
  reach[ST(OPEN)] = true;
  for (int s = 0; s < NSTATES + 2; s++) {
    AS_CHECK(!as_case_move_legal(ST(CLOSED), (as_case_state_t)s));
    AS_CHECK(!as_case_move_legal((as_case_state_t)s, (as_case_state_t)s));
  }
  for (int from = 1; from < NSTATES - 1; from++) {
    int outs = 0;
    for (int to = 1; to < NSTATES; to++) outs += as_case_move_legal(from, to);
    AS_CHECK(outs > 0);
  }
  for (int pass = 0; pass < NSTATES; pass++)
    for (int from = 1; from < NSTATES; from++)
      for (int to = 1; to < NSTATES; to++)
        if (reach[from] && as_case_move_legal(from, to)) reach[to] = true;
  for (int s = 1; s < NSTATES; s++) AS_CHECK(reach[s]);
}

AS_TEST(state_names_roundtrip) {
  static const char *const want[NSTATES] = {
      NULL,
      "OPEN",
      "AWAITING_EVIDENCE",
      "IN_REVIEW",
      "MANUAL_REVIEW",
      "GOODWILL_OFFERED",
      "APPROVED",
      "AWAITING_RETURN",
      "RETURN_RECEIVED",
      "INSPECTING",
      "REFUNDED",
      "EXCHANGED",
      "REJECTED",
      "DISPUTED",
      "CARRIER_VERIFYING",
      "ESCALATED",
      "RESOLVED",
      "CLOSED",
  };

  for (int s = 0; s < NSTATES; s++) {
    AS_CHECK_STR_EQ(as_case_state_name((as_case_state_t)s), want[s]);
    if (s == 0) continue;
    as_case_state_t back = ST(UNSPECIFIED);
    AS_CHECK_INT_EQ(as_case_state_parse(want[s], &back), 0);
    AS_CHECK_INT_EQ(back, s);
    /* The generated enum agrees with the name (CASE_STATE_<NAME>). */
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&aftersales__v1__case_state__descriptor, s);
    AS_CHECK(v != NULL);
    AS_CHECK_STR_EQ(v->name + strlen("CASE_STATE_"), want[s]);
  }
  AS_CHECK_STR_EQ(as_case_state_name((as_case_state_t)18), NULL);
  AS_CHECK_STR_EQ(as_case_state_name((as_case_state_t)-1), NULL);

  static const char *const bad[] = {"",      "open",  "Open",   "UNSPECIFIED", "CASE_STATE_OPEN",
                                    "OPEN ", " OPEN", "CLOSEDX"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    as_case_state_t out = ST(IN_REVIEW);
    AS_CHECK_INT_EQ(as_case_state_parse(bad[i], &out), -EINVAL);
  }
}

/* ---- against PostgreSQL ------------------------------------------------ */

typedef struct fix {
  as_test_pg_t pg;
  as_db_t db;
  as_tx_conf_t conf;
  as_tx_t tx;
  char case_id[72], case_number[72];
} fix_t;

static void fix_setup(fix_t *f) {
  memset(f, 0, sizeof *f);
  as_test_pg_tx_setup(&f->pg, &f->db, &f->conf, &f->tx, "test_case");
  /* Case ids are unique per case: the case tables are shared. */
  snprintf(f->case_id, sizeof f->case_id, "C-%s", f->pg.schema);
  snprintf(f->case_number, sizeof f->case_number, "N-%s", f->pg.schema);
}

static void fix_teardown(fix_t *f) {
  as_test_pg_tx_teardown(&f->pg, &f->db, &f->tx);
}

static as_case_new_t new_case(const fix_t *f) {
  return (as_case_new_t){.case_id = f->case_id,
                         .case_number = f->case_number,
                         .case_type = "RETURN_REFUND",
                         .order_id = "ORD-1",
                         .buyer_id = "B-1",
                         .merchant_id = "M-1",
                         .reason = "SIZE_MISMATCH",
                         .route = "review",
                         .currency = "EUR",
                         .claimed_minor = 1999,
                         .state = ST(OPEN)};
}

static const as_case_actor_t SYSTEM = {"system", "intake"};

/* Opens f's case in its own committed transaction. */
static void open_committed(fix_t *f) {
  as_case_new_t c = new_case(f);
  AS_CHECK_INT_EQ(as_db_begin(&f->db), 0);
  AS_CHECK_INT_EQ(as_case_open(&f->tx, &c, SYSTEM, "opened", NULL), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f->tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f->db), 0);
}

/* "state|version" of f's case, from the checking connection. */
static void case_row(fix_t *f, char *out, size_t outlen) {
  const char *v[1] = {f->case_id};
  PGresult *r =
      AS_PG_Q(f->pg.conn, "SELECT state, version FROM cases.cases WHERE case_id = $1", 1, v);
  AS_CHECK_INT_EQ(PQntuples(r), 1);
  snprintf(out, outlen, "%s|%s", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
  PQclear(r);
}

static long long timeline_rows(fix_t *f) {
  const char *v[1] = {f->case_id};
  return AS_PG_INT(f->pg.conn, "SELECT count(*) FROM cases.timeline WHERE case_id = $1", 1, v);
}

AS_TEST(open_writes_case_and_first_timeline_row) {
  fix_t f;
  char ev[37], got[512];

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_uuid_v4(ev), 0);
  as_case_new_t c = new_case(&f);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_open(&f.tx, &c, SYSTEM, "request accepted", ev), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  const char *v[2] = {f.case_id, ev};
  AS_PG_STR(f.pg.conn,
            "SELECT concat_ws('|', case_number, case_type, state, version, order_id, buyer_id,"
            " merchant_id, reason, route, currency, claimed_minor)"
            " FROM cases.cases WHERE case_id = $1",
            1, v, got);
  char want[512];
  snprintf(want, sizeof want, "%s|RETURN_REFUND|OPEN|1|ORD-1|B-1|M-1|SIZE_MISMATCH|review|EUR|1999",
           f.case_number);
  AS_CHECK_STR_EQ(got, want);
  AS_PG_STR(f.pg.conn,
            "SELECT concat_ws('|', version, coalesce(from_state, '<null>'), to_state, actor_kind,"
            " actor_id, reason, event_id = $2::uuid, coalesce(detail::text, '<null>'))"
            " FROM cases.timeline WHERE case_id = $1",
            2, v, got);
  AS_CHECK_STR_EQ(got, "1|<null>|OPEN|system|intake|request accepted|t|<null>");
  fix_teardown(&f);
}

AS_TEST(open_twice_is_eexist) {
  fix_t f;
  char row[64];

  fix_setup(&f);
  open_committed(&f);
  as_case_new_t again = new_case(&f);
  again.buyer_id = "B-other";
  again.case_number = "N-other";
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_open(&f.tx, &again, SYSTEM, "again", NULL), -EEXIST);
  /* The transaction is still good: -EEXIST is no SQL error. */
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "OPEN|1");
  AS_CHECK_INT_EQ(timeline_rows(&f), 1);
  const char *v[1] = {f.case_id};
  char buyer[64];
  AS_PG_STR(f.pg.conn, "SELECT buyer_id FROM cases.cases WHERE case_id = $1", 1, v, buyer);
  AS_CHECK_STR_EQ(buyer, "B-1");
  fix_teardown(&f);
}

/* Another case id with a case number already taken: a constraint error,
 * permanent (-EIO), and nothing of the new case is written. */
AS_TEST(open_duplicate_case_number_is_eio) {
  fix_t f;
  char other_id[96];

  fix_setup(&f);
  open_committed(&f);
  as_case_new_t c = new_case(&f);
  snprintf(other_id, sizeof other_id, "%s-b", f.case_id);
  c.case_id = other_id;
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_open(&f.tx, &c, SYSTEM, "dup number", NULL), -EIO);
  AS_CHECK_STR_EQ(f.db.sqlstate, "23505");
  as_db_rollback(&f.db);
  const char *v[1] = {other_id};
  AS_CHECK_INT_EQ(AS_PG_INT(f.pg.conn, "SELECT count(*) FROM cases.cases WHERE case_id = $1", 1, v),
                  0);
  fix_teardown(&f);
}

AS_TEST(open_with_invalid_state_is_einval) {
  fix_t f;

  fix_setup(&f);
  as_case_new_t c = new_case(&f);
  c.state = ST(UNSPECIFIED);
  AS_CHECK_INT_EQ(as_case_open(&f.tx, &c, SYSTEM, "x", NULL), -EINVAL);
  const char *v[1] = {f.case_id};
  AS_CHECK_INT_EQ(AS_PG_INT(f.pg.conn, "SELECT count(*) FROM cases.cases WHERE case_id = $1", 1, v),
                  0);
  fix_teardown(&f);
}

AS_TEST(legal_transition_bumps_version_and_appends_timeline) {
  fix_t f;
  char ev[37], row[64], got[512];
  as_case_state_t from = ST(UNSPECIFIED);
  int64_t version = 0;

  fix_setup(&f);
  open_committed(&f);
  AS_CHECK_INT_EQ(as_uuid_v4(ev), 0);
  as_case_actor_t agent = {"agent", "a-7"};
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition(&f.tx, f.case_id, ST(IN_REVIEW), agent, "triage", ev,
                                     "{\"note\": \"x\", \"n\": 2}", &from, &version),
                  0);
  AS_CHECK_INT_EQ(from, ST(OPEN));
  AS_CHECK_INT_EQ(version, 2);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "IN_REVIEW|2");
  const char *v[2] = {f.case_id, ev};
  AS_PG_STR(f.pg.conn,
            "SELECT concat_ws('|', from_state, to_state, actor_kind, actor_id, reason,"
            " event_id = $2::uuid, detail = '{\"n\": 2, \"note\": \"x\"}'::jsonb, detail->>'note')"
            " FROM cases.timeline WHERE case_id = $1 AND version = 2",
            2, v, got);
  AS_CHECK_STR_EQ(got, "OPEN|IN_REVIEW|agent|a-7|triage|t|t|x");
  /* updated_at moved with the change; opened_at did not. */
  AS_CHECK_INT_EQ(
      AS_PG_INT(f.pg.conn,
                "SELECT (updated_at >= opened_at)::int FROM cases.cases WHERE case_id = $1", 1, v),
      1);

  /* A second move without detail or event: version 3, NULLs stored. */
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition(&f.tx, f.case_id, ST(APPROVED), SYSTEM, "auto", NULL, NULL,
                                     &from, &version),
                  0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(from, ST(IN_REVIEW));
  AS_CHECK_INT_EQ(version, 3);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "APPROVED|3");
  AS_PG_STR(f.pg.conn,
            "SELECT concat_ws('|', from_state, to_state, event_id IS NULL, detail IS NULL)"
            " FROM cases.timeline WHERE case_id = $1 AND version = 3",
            1, v, got);
  AS_CHECK_STR_EQ(got, "IN_REVIEW|APPROVED|t|t");
  AS_CHECK_INT_EQ(timeline_rows(&f), 3);
  /* from and version are optional */
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(
      as_case_transition(&f.tx, f.case_id, ST(REFUNDED), SYSTEM, "paid", NULL, NULL, NULL, NULL),
      0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "REFUNDED|4");
  fix_teardown(&f);
}

AS_TEST(illegal_transition_is_eperm_and_writes_nothing) {
  fix_t f;
  char row[64];
  as_case_state_t from = ST(UNSPECIFIED);
  int64_t version = -1;

  fix_setup(&f);
  open_committed(&f);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition(&f.tx, f.case_id, ST(REFUNDED), SYSTEM, "too early", NULL,
                                     NULL, &from, &version),
                  -EPERM);
  AS_CHECK_INT_EQ(from, ST(OPEN)); /* tells the caller where the case stands */
  AS_CHECK_INT_EQ(version, -1);    /* untouched */
  /* No SQL error: the transaction commits. */
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "OPEN|1");
  AS_CHECK_INT_EQ(timeline_rows(&f), 1);
  fix_teardown(&f);
}

AS_TEST(closed_is_terminal_in_the_database) {
  fix_t f;
  char row[64];

  fix_setup(&f);
  open_committed(&f);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(
      as_case_transition(&f.tx, f.case_id, ST(CLOSED), SYSTEM, "withdrawn", NULL, NULL, NULL, NULL),
      0);
  for (int s = 1; s < NSTATES; s++)
    AS_CHECK_INT_EQ(as_case_transition(&f.tx, f.case_id, (as_case_state_t)s, SYSTEM, "reopen", NULL,
                                       NULL, NULL, NULL),
                    -EPERM);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "CLOSED|2");
  AS_CHECK_INT_EQ(timeline_rows(&f), 2);
  fix_teardown(&f);
}

AS_TEST(unknown_case_is_enoent) {
  fix_t f;
  char missing[96];
  as_case_state_t from = ST(IN_REVIEW);

  fix_setup(&f);
  snprintf(missing, sizeof missing, "%s-missing", f.case_id);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(
      as_case_transition(&f.tx, missing, ST(IN_REVIEW), SYSTEM, "x", NULL, NULL, &from, NULL),
      -ENOENT);
  AS_CHECK_INT_EQ(from, ST(IN_REVIEW)); /* untouched */
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  const char *v[1] = {missing};
  AS_CHECK_INT_EQ(
      AS_PG_INT(f.pg.conn, "SELECT count(*) FROM cases.timeline WHERE case_id = $1", 1, v), 0);
  fix_teardown(&f);
}

/* A malformed detail is an SQL error (-EIO) and the transaction is lost. */
AS_TEST(bad_detail_json_is_eio) {
  fix_t f;
  char row[64];

  fix_setup(&f);
  open_committed(&f);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(
      as_case_transition(&f.tx, f.case_id, ST(IN_REVIEW), SYSTEM, "x", NULL, "{oops", NULL, NULL),
      -EIO);
  AS_CHECK_STR_EQ(f.db.sqlstate, "22P02");
  as_db_rollback(&f.db);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "OPEN|1");
  fix_teardown(&f);
}

AS_TEST(timeline_is_append_only) {
  fix_t f;
  char state[6], msg[256], reason[64];

  fix_setup(&f);
  open_committed(&f);
  const char *v[1] = {f.case_id};
  AS_PG_FAILS(f.pg.conn, "UPDATE cases.timeline SET reason = 'rewritten' WHERE case_id = $1", 1, v,
              state, msg);
  AS_CHECK_STR_EQ(state, "42501");
  AS_CHECK_STR_EQ(msg, "cases.timeline is append-only");
  AS_PG_FAILS(f.pg.conn, "DELETE FROM cases.timeline WHERE case_id = $1", 1, v, state, msg);
  AS_CHECK_STR_EQ(state, "42501");
  AS_CHECK_STR_EQ(msg, "cases.timeline is append-only");
  AS_CHECK_INT_EQ(timeline_rows(&f), 1);
  AS_PG_STR(f.pg.conn, "SELECT reason FROM cases.timeline WHERE case_id = $1", 1, v, reason);
  AS_CHECK_STR_EQ(reason, "opened");
  fix_teardown(&f);
}

/* Conn A moves the case in an open transaction (row locked). Conn B sends
 * the same locking read as_case_transition starts with: it must wait on the
 * lock (seen in pg_stat_activity), then, once A commits, see A's state and
 * version. */
AS_TEST(row_lock_makes_a_second_reader_wait) {
  fix_t f;
  as_db_t b;
  int64_t version = 0;

  fix_setup(&f);
  open_committed(&f);
  as_db_init(&b, f.pg.dsn, "test_case_b", f.pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&b), 0);

  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(
      as_case_transition(&f.tx, f.case_id, ST(APPROVED), SYSTEM, "a", NULL, NULL, NULL, &version),
      0);
  AS_CHECK_INT_EQ(version, 2);

  AS_CHECK_INT_EQ(as_db_begin(&b), 0);
  const char *v[1] = {f.case_id};
  AS_CHECK_INT_EQ(PQsendQueryParams(b.conn,
                                    "SELECT state, version FROM cases.cases WHERE case_id = $1"
                                    " FOR UPDATE",
                                    1, NULL, v, NULL, NULL, 0),
                  1);
  AS_CHECK(as_test_pg_waits_on_lock(f.pg.conn, PQbackendPID(b.conn)));
  AS_CHECK_INT_EQ(PQconsumeInput(b.conn), 1);
  AS_CHECK_INT_EQ(PQisBusy(b.conn), 1);

  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  PGresult *r = PQgetResult(b.conn); /* blocks until B has its row */
  AS_CHECK_INT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
  AS_CHECK_INT_EQ(PQntuples(r), 1);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), "APPROVED");
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 1), "2");
  PQclear(r);
  AS_CHECK(PQgetResult(b.conn) == NULL);
  AS_CHECK_INT_EQ(as_db_commit(&b), 0);
  as_db_close(&b);
  fix_teardown(&f);
}

/* The full function on both sides: B's as_case_transition runs on its own
 * thread and blocks on A's lock. B's move (to AWAITING_RETURN) is illegal
 * from OPEN and legal from APPROVED, so it succeeds only if B read the state
 * A committed. */
typedef struct b_call {
  as_tx_t *tx;
  const char *case_id;
  int rc;
  as_case_state_t from;
  int64_t version;
} b_call_t;

static void *b_transition(void *arg) {
  b_call_t *c = arg;
  c->rc = as_db_begin(c->tx->db);
  if (c->rc == 0)
    c->rc = as_case_transition(c->tx, c->case_id, ST(AWAITING_RETURN), SYSTEM, "b", NULL, NULL,
                               &c->from, &c->version);
  if (c->rc == 0) c->rc = as_db_commit(c->tx->db);
  return NULL;
}

AS_TEST(concurrent_transitions_serialise) {
  fix_t f;
  as_db_t bdb;
  as_tx_t btx;
  pthread_t th;
  char row[64];

  fix_setup(&f);
  open_committed(&f);
  as_db_init(&bdb, f.pg.dsn, "test_case_b", f.pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&bdb), 0);
  as_tx_init(&btx, &bdb, &f.conf);

  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(
      as_case_transition(&f.tx, f.case_id, ST(APPROVED), SYSTEM, "a", NULL, NULL, NULL, NULL), 0);
  b_call_t call = {.tx = &btx, .case_id = f.case_id, .rc = 1};
  AS_CHECK_INT_EQ(pthread_create(&th, NULL, b_transition, &call), 0);
  AS_CHECK(as_test_pg_waits_on_lock(f.pg.conn, PQbackendPID(bdb.conn)));
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "OPEN|1"); /* A not committed yet */
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(pthread_join(th, NULL), 0);

  AS_CHECK_INT_EQ(call.rc, 0);
  AS_CHECK_INT_EQ(call.from, ST(APPROVED));
  AS_CHECK_INT_EQ(call.version, 3);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "AWAITING_RETURN|3");
  const char *v[1] = {f.case_id};
  char got[256];
  AS_PG_STR(f.pg.conn,
            "SELECT string_agg(concat_ws(':', version, from_state, to_state, reason), ' '"
            " ORDER BY version) FROM cases.timeline WHERE case_id = $1",
            1, v, got);
  AS_CHECK_STR_EQ(got, "1:OPEN:opened 2:OPEN:APPROVED:a 3:APPROVED:AWAITING_RETURN:b");
  as_tx_free(&btx);
  as_db_close(&bdb);
  fix_teardown(&f);
}

/* ---- bulk forms ------------------------------------------------------------ */

/* f's case id with a suffix: "<case_id>-<sfx>". */
static const char *sub_id(const fix_t *f, const char *sfx, char *out, size_t outlen) {
  snprintf(out, outlen, "%s-%s", f->case_id, sfx);
  return out;
}

/* Opens f's case ids with suffixes sfx[0..n) (state OPEN, numbers drawn) in
 * one committed as_case_open_many. */
static void open_subs_committed(fix_t *f, const char *const *sfx, size_t n, char ids[][96]) {
  as_case_opening_t o[8];
  AS_CHECK(n <= 8);
  for (size_t i = 0; i < n; i++) {
    o[i] = (as_case_opening_t){.c = new_case(f), .actor = SYSTEM, .why = "opened"};
    o[i].c.case_id = sub_id(f, sfx[i], ids[i], sizeof ids[i]);
    o[i].c.case_number = NULL;
  }
  AS_CHECK_INT_EQ(as_db_begin(&f->db), 0);
  AS_CHECK_INT_EQ(as_case_open_many(&f->tx, o, n), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f->tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f->db), 0);
  for (size_t i = 0; i < n; i++) AS_CHECK(o[i].opened);
}

/* "state|version" of any case, or "<none>". */
static void row_of(fix_t *f, const char *id, char *out, size_t outlen) {
  const char *v[1] = {id};
  PGresult *r =
      AS_PG_Q(f->pg.conn, "SELECT state, version FROM cases.cases WHERE case_id = $1", 1, v);
  if (PQntuples(r) == 1)
    snprintf(out, outlen, "%s|%s", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
  else
    snprintf(out, outlen, "<none>");
  PQclear(r);
}

/* The timeline of a case, one "version:from:to:actor_kind/actor_id:reason"
 * entry per row, in version order. */
static void timeline_of(fix_t *f, const char *id, char *out, size_t outlen) {
  const char *v[1] = {id};
  char buf[1024];
  AS_PG_STR(
      f->pg.conn,
      "SELECT coalesce(string_agg(concat_ws(':', version, coalesce(from_state, '-'), to_state,"
      " actor_kind || '/' || actor_id, reason), ' ' ORDER BY version), '<none>')"
      " FROM cases.timeline WHERE case_id = $1",
      1, v, buf);
  size_t len = strlen(buf);
  if (len >= outlen) len = outlen - 1;
  memcpy(out, buf, len);
  out[len] = '\0';
}

/* A batch with an id committed before, an id repeated in the batch, a given
 * number and drawn ones: only the new ids are inserted (the first of a
 * repeat wins), each with its own first timeline row, actor and event. */
AS_TEST(open_many_skips_existing_and_repeated_ids) {
  fix_t f;
  char old[1][96], id_a[96], id_b[96], num_b[96], ev_a[37], ev_b[37], got[512], want[512];

  fix_setup(&f);
  static const char *const sfx[] = {"old"};
  open_subs_committed(&f, sfx, 1, old);
  AS_CHECK_INT_EQ(as_uuid_v4(ev_a), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(ev_b), 0);
  as_case_opening_t o[4];
  for (int i = 0; i < 4; i++)
    o[i] = (as_case_opening_t){.c = new_case(&f), .why = "request submitted"};
  o[0].c.case_id = sub_id(&f, "a", id_a, sizeof id_a);
  o[0].c.case_number = NULL;
  o[0].c.buyer_id = "B-a";
  o[0].actor = (as_case_actor_t){"buyer", "B-a"};
  o[0].event_id = ev_a;
  o[1].c.case_id = old[0]; /* committed before */
  o[1].c.buyer_id = "B-intruder";
  o[1].c.case_number = "N-never";
  o[1].actor = SYSTEM;
  o[2].c.case_id = sub_id(&f, "b", id_b, sizeof id_b);
  o[2].c.case_number = sub_id(&f, "num", num_b, sizeof num_b);
  o[2].c.state = ST(AWAITING_EVIDENCE);
  o[2].c.currency = NULL;
  o[2].actor = (as_case_actor_t){"buyer", "B-b"};
  o[2].event_id = ev_b;
  o[3].c.case_id = id_a; /* repeated in the batch: the first wins */
  o[3].c.case_number = NULL;
  o[3].c.buyer_id = "B-repeat";
  o[3].actor = SYSTEM;
  o[3].opened = true; /* reset by the call */
  snprintf(o[3].case_number, sizeof o[3].case_number, "stale");

  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_open_many(&f.tx, o, 4), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  snprintf(got, sizeof got, "%d%d%d%d", o[0].opened, o[1].opened, o[2].opened, o[3].opened);
  AS_CHECK_STR_EQ(got, "1010");
  AS_CHECK_STR_EQ(o[1].case_number, "");
  AS_CHECK_STR_EQ(o[3].case_number, "");
  AS_CHECK_STR_EQ(o[2].case_number, num_b);
  /* A drawn number: AS-<today, UTC>-<at least 7 digits>. */
  const char *v[3] = {o[0].case_number, id_a, ev_a};
  AS_CHECK_INT_EQ(AS_PG_INT(f.pg.conn,
                            "SELECT ($1 ~ ('^AS-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')"
                            " || '-[0-9]{7,}$'))::int",
                            1, v),
                  1);
  AS_PG_STR(f.pg.conn,
            "SELECT concat_ws('|', case_number = $1, state, version, buyer_id)"
            " FROM cases.cases WHERE case_id = $2",
            2, v, got);
  AS_CHECK_STR_EQ(got, "t|OPEN|1|B-a");
  timeline_of(&f, id_a, got, sizeof got);
  AS_CHECK_STR_EQ(got, "1:-:OPEN:buyer/B-a:request submitted");
  AS_CHECK_INT_EQ(AS_PG_INT(f.pg.conn,
                            "SELECT count(*) FROM cases.timeline WHERE case_id = $2"
                            " AND event_id = $3::uuid AND $1::text IS NOT NULL",
                            3, v),
                  1);
  const char *vb[2] = {id_b, ev_b};
  AS_PG_STR(f.pg.conn,
            "SELECT concat_ws('|', c.case_number, c.state, coalesce(c.currency, '<null>'),"
            " t.event_id = $2::uuid) FROM cases.cases c JOIN cases.timeline t USING (case_id)"
            " WHERE case_id = $1",
            2, vb, got);
  snprintf(want, sizeof want, "%s|AWAITING_EVIDENCE|<null>|t", num_b);
  AS_CHECK_STR_EQ(got, want);
  timeline_of(&f, id_b, got, sizeof got);
  AS_CHECK_STR_EQ(got, "1:-:AWAITING_EVIDENCE:buyer/B-b:request submitted");
  /* The case committed before is untouched, with its one timeline row. */
  const char *vo[1] = {old[0]};
  AS_PG_STR(f.pg.conn, "SELECT buyer_id FROM cases.cases WHERE case_id = $1", 1, vo, got);
  AS_CHECK_STR_EQ(got, "B-1");
  timeline_of(&f, old[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "1:-:OPEN:system/intake:opened");
  fix_teardown(&f);
}

/* One opening with a state outside the enum: -EINVAL and nothing written,
 * not even the valid ones; an empty batch is a no-op. */
AS_TEST(open_many_invalid_state_writes_nothing) {
  fix_t f;
  char id_a[96], id_b[96];

  fix_setup(&f);
  as_case_opening_t o[2] = {{.c = new_case(&f), .actor = SYSTEM, .why = "x"},
                            {.c = new_case(&f), .actor = SYSTEM, .why = "x"}};
  o[0].c.case_id = sub_id(&f, "a", id_a, sizeof id_a);
  o[0].c.case_number = NULL;
  o[1].c.case_id = sub_id(&f, "b", id_b, sizeof id_b);
  o[1].c.case_number = NULL;
  o[1].c.state = (as_case_state_t)99;
  AS_CHECK_INT_EQ(as_case_open_many(&f.tx, o, 2), -EINVAL);
  AS_CHECK_INT_EQ(as_case_open_many(&f.tx, o, 0), 0);
  const char *v[2] = {id_a, id_b};
  AS_CHECK_INT_EQ(
      AS_PG_INT(f.pg.conn, "SELECT count(*) FROM cases.cases WHERE case_id IN ($1, $2)", 2, v), 0);
  fix_teardown(&f);
}

static as_case_move_t mv(const char *id, as_case_state_t to, const char *why) {
  return (as_case_move_t){.case_id = id, .to = to, .actor = SYSTEM, .why = why, .rc = 1};
}

/* "rc from version" of a move after the call. */
static void move_result(const as_case_move_t *m, char *out, size_t outlen) {
  const char *from = as_case_state_name(m->from);
  snprintf(out, outlen, "%d %s %lld", m->rc, from ? from : "-", (long long)m->version);
}

/* The same case three times in one call: each move is checked against the
 * state the previous one left; versions 2, 3, 4; one timeline row each with
 * its own actor, reason, event and detail. */
AS_TEST(transition_many_chains_moves_on_one_case) {
  fix_t f;
  char id[1][96], ev1[37], ev2[37], got[512];

  fix_setup(&f);
  static const char *const sfx[] = {"x"};
  open_subs_committed(&f, sfx, 1, id);
  AS_CHECK_INT_EQ(as_uuid_v4(ev1), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(ev2), 0);
  as_case_move_t m[3] = {mv(id[0], ST(APPROVED), "auto approve"),
                         mv(id[0], ST(AWAITING_RETURN), "label sent"),
                         mv(id[0], ST(RETURN_RECEIVED), "parcel in")};
  m[0].actor = (as_case_actor_t){"system", "review"};
  m[0].event_id = ev1;
  m[0].detail_json = "{\"policy\": \"p-1\", \"score\": 3}";
  m[1].actor = (as_case_actor_t){"agent", "a-9"};
  m[1].event_id = ev2;
  m[1].from_mask = AS_CASE_BIT(ST(APPROVED));
  m[2].actor = (as_case_actor_t){"carrier", "sf"};
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, 3), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  move_result(&m[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "0 OPEN 2");
  move_result(&m[1], got, sizeof got);
  AS_CHECK_STR_EQ(got, "0 APPROVED 3");
  move_result(&m[2], got, sizeof got);
  AS_CHECK_STR_EQ(got, "0 AWAITING_RETURN 4");

  row_of(&f, id[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "RETURN_RECEIVED|4");
  timeline_of(&f, id[0], got, sizeof got);
  AS_CHECK_STR_EQ(got,
                  "1:-:OPEN:system/intake:opened 2:OPEN:APPROVED:system/review:auto approve"
                  " 3:APPROVED:AWAITING_RETURN:agent/a-9:label sent"
                  " 4:AWAITING_RETURN:RETURN_RECEIVED:carrier/sf:parcel in");
  const char *v[3] = {id[0], ev1, ev2};
  AS_PG_STR(
      f.pg.conn,
      "SELECT string_agg(concat_ws('/', version, coalesce((event_id = $2::uuid)::text, 'null'),"
      " coalesce((event_id = $3::uuid)::text, 'null'),"
      " coalesce((detail = '{\"score\": 3, \"policy\": \"p-1\"}'::jsonb)::text, 'null')), ' '"
      " ORDER BY version) FROM cases.timeline WHERE case_id = $1 AND version > 1",
      3, v, got);
  AS_CHECK_STR_EQ(got, "2/true/false/true 3/false/true/null 4/null/null/null");
  fix_teardown(&f);
}

/* Legal, illegal, missing and from_mask-refused moves in one call: each
 * gets its own result, the refused ones write nothing (no version bump, no
 * timeline row) and do not stop the moves after them. */
AS_TEST(transition_many_mixed_results) {
  fix_t f;
  char ids[2][96], missing[96], got[512];

  fix_setup(&f);
  static const char *const sfx[] = {"a", "b"};
  open_subs_committed(&f, sfx, 2, ids);
  sub_id(&f, "missing", missing, sizeof missing);
  as_case_move_t m[] = {
      mv(ids[1], ST(REFUNDED), "too early"),   /* 0: illegal from OPEN */
      mv(missing, ST(IN_REVIEW), "ghost"),     /* 1: no such case */
      mv(ids[0], ST(IN_REVIEW), "triage"),     /* 2: legal */
      mv(ids[1], ST(APPROVED), "masked"),      /* 3: legal, but from_mask wants IN_REVIEW */
      mv(ids[1], ST(IN_REVIEW), "triage b"),   /* 4: legal */
      mv(ids[0], ST(OPEN), "back"),            /* 5: illegal from IN_REVIEW (after 2) */
      mv(ids[1], ST(APPROVED), "ok now"),      /* 6: from_mask satisfied after 4 */
      mv(ids[0], ST(CLOSED), "closed"),        /* 7: legal */
      mv(ids[0], ST(APPROVED), "after close"), /* 8: CLOSED is terminal */
  };
  m[3].from_mask = AS_CASE_BIT(ST(IN_REVIEW)) | AS_CASE_BIT(ST(MANUAL_REVIEW));
  m[6].from_mask = m[3].from_mask;
  size_t n = sizeof m / sizeof m[0];
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, n), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  static const char *const want[] = {
      "-1 OPEN 1",      "-2 - 0",        "0 OPEN 2",      "-1 OPEN 1",   "0 OPEN 2",
      "-1 IN_REVIEW 2", "0 IN_REVIEW 3", "0 IN_REVIEW 3", "-1 CLOSED 3",
  };
  for (size_t i = 0; i < n; i++) {
    char w[64];
    /* -EPERM / -ENOENT spelled as numbers */
    if (strncmp(want[i], "-1 ", 3) == 0)
      snprintf(w, sizeof w, "%d%s", -EPERM, want[i] + 2);
    else if (strncmp(want[i], "-2 ", 3) == 0)
      snprintf(w, sizeof w, "%d%s", -ENOENT, want[i] + 2);
    else
      snprintf(w, sizeof w, "%s", want[i]);
    move_result(&m[i], got, sizeof got);
    AS_CHECK_STR_EQ(got, w);
  }
  row_of(&f, ids[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "CLOSED|3");
  row_of(&f, ids[1], got, sizeof got);
  AS_CHECK_STR_EQ(got, "APPROVED|3");
  row_of(&f, missing, got, sizeof got);
  AS_CHECK_STR_EQ(got, "<none>");
  timeline_of(&f, ids[0], got, sizeof got);
  AS_CHECK_STR_EQ(got,
                  "1:-:OPEN:system/intake:opened 2:OPEN:IN_REVIEW:system/intake:triage"
                  " 3:IN_REVIEW:CLOSED:system/intake:closed");
  timeline_of(&f, ids[1], got, sizeof got);
  AS_CHECK_STR_EQ(got,
                  "1:-:OPEN:system/intake:opened 2:OPEN:IN_REVIEW:system/intake:triage b"
                  " 3:IN_REVIEW:APPROVED:system/intake:ok now");
  timeline_of(&f, missing, got, sizeof got);
  AS_CHECK_STR_EQ(got, "<none>");
  fix_teardown(&f);
}

/* Only refused moves: nothing written at all, the transaction still good. */
AS_TEST(transition_many_all_refused_writes_nothing) {
  fix_t f;
  char ids[1][96], got[256];

  fix_setup(&f);
  static const char *const sfx[] = {"a"};
  open_subs_committed(&f, sfx, 1, ids);
  as_case_move_t m[2] = {mv(ids[0], ST(REFUNDED), "no"), mv(ids[0], ST(IN_REVIEW), "masked")};
  m[1].from_mask = AS_CASE_BIT(ST(AWAITING_EVIDENCE));
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, 2), 0);
  AS_CHECK_INT_EQ(m[0].rc, -EPERM);
  AS_CHECK_INT_EQ(m[1].rc, -EPERM);
  AS_CHECK_INT_EQ(m[1].from, ST(OPEN));
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  row_of(&f, ids[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "OPEN|1");
  timeline_of(&f, ids[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "1:-:OPEN:system/intake:opened");
  /* An empty call and a NULL case id: no statement at all. */
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, 0), 0);
  as_case_move_t bad[2] = {mv(ids[0], ST(IN_REVIEW), "x"), mv(NULL, ST(IN_REVIEW), "x")};
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, bad, 2), -EINVAL);
  row_of(&f, ids[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "OPEN|1");
  fix_teardown(&f);
}

/* A malformed detail in one move fails the whole call (-EIO, 22P02): the
 * caller's transaction is lost and nothing of the batch stays. */
AS_TEST(transition_many_bad_detail_is_eio) {
  fix_t f;
  char ids[2][96], got[64];

  fix_setup(&f);
  static const char *const sfx[] = {"a", "b"};
  open_subs_committed(&f, sfx, 2, ids);
  as_case_move_t m[2] = {mv(ids[0], ST(IN_REVIEW), "fine"), mv(ids[1], ST(IN_REVIEW), "broken")};
  m[1].detail_json = "{oops";
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, 2), -EIO);
  AS_CHECK_STR_EQ(f.db.sqlstate, "22P02");
  as_db_rollback(&f.db);
  row_of(&f, ids[0], got, sizeof got);
  AS_CHECK_STR_EQ(got, "OPEN|1");
  fix_teardown(&f);
}

/* Two connections move the same two cases, listed in opposite orders: the
 * rows are locked in case-id order, so B waits for A (no deadlock) and then
 * moves from the states A committed. */
typedef struct b_many {
  as_tx_t *tx;
  as_case_move_t *m;
  size_t n;
  int rc;
} b_many_t;

static void *b_transition_many(void *arg) {
  b_many_t *c = arg;
  c->rc = as_db_begin(c->tx->db);
  if (c->rc == 0) c->rc = as_case_transition_many(c->tx, c->m, c->n);
  if (c->rc == 0) c->rc = as_db_commit(c->tx->db);
  return NULL;
}

AS_TEST(transition_many_locks_in_case_id_order) {
  fix_t f;
  char ids[2][96], got[64];
  as_db_t bdb;
  as_tx_t btx;
  pthread_t th;

  fix_setup(&f);
  static const char *const sfx[] = {"a", "b"};
  open_subs_committed(&f, sfx, 2, ids);
  as_db_init(&bdb, f.pg.dsn, "test_case_b", f.pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&bdb), 0);
  as_tx_init(&btx, &bdb, &f.conf);

  as_case_move_t ma[2] = {mv(ids[0], ST(APPROVED), "a"), mv(ids[1], ST(APPROVED), "a")};
  as_case_move_t mb[2] = {mv(ids[1], ST(AWAITING_RETURN), "b"),
                          mv(ids[0], ST(AWAITING_RETURN), "b")};
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, ma, 2), 0);
  b_many_t call = {.tx = &btx, .m = mb, .n = 2, .rc = 1};
  AS_CHECK_INT_EQ(pthread_create(&th, NULL, b_transition_many, &call), 0);
  AS_CHECK(as_test_pg_waits_on_lock(f.pg.conn, PQbackendPID(bdb.conn)));
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  AS_CHECK_INT_EQ(pthread_join(th, NULL), 0);
  AS_CHECK_INT_EQ(call.rc, 0);
  for (int i = 0; i < 2; i++) {
    move_result(&mb[i], got, sizeof got);
    AS_CHECK_STR_EQ(got, "0 APPROVED 3");
    row_of(&f, ids[i], got, sizeof got);
    AS_CHECK_STR_EQ(got, "AWAITING_RETURN|3");
  }
  as_tx_free(&btx);
  as_db_close(&bdb);
  fix_teardown(&f);
}

/* ---- CaseStateChanged in the outbox -------------------------------------- */

/* The CaseStateChanged rows of f's outbox for case ids starting with f's,
 * in publish order, one entry per row:
 * "<key>:<version>:<from>><to>:<actor kind enum>/<actor id>(<kind>):<reason>"
 * where the topic, the envelope's type, case and order ids and the name-based
 * event id are checked here. */
static void changes_of(fix_t *f, char *out, size_t outlen) {
  char sql[256];
  PGresult *r = AS_PG_Q(f->pg.conn,
                        as_test_pg_sql(sql, sizeof sql,
                                       "SELECT event_id::text, topic, msg_key, payload"
                                       " FROM %s.outbox ORDER BY id",
                                       f->pg.schema),
                        0, NULL);
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; i < PQntuples(r); i++) {
    size_t len = 0;
    unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &len);
    as_envelope_t *env = aftersales__v1__envelope__unpack(NULL, len, bytes);
    PQfreemem(bytes);
    AS_CHECK(env != NULL);
    AS_CHECK_INT_EQ(env->payload_case, AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_STATE_CHANGED);
    const Aftersales__V1__CaseStateChanged *p = env->case_state_changed;
    AS_CHECK_STR_EQ(PQgetvalue(r, i, 1), "aftersales.cases.v1");
    AS_CHECK_STR_EQ(PQgetvalue(r, i, 2), p->case_id);
    AS_CHECK_STR_EQ(env->event_type, "CaseStateChanged");
    AS_CHECK_STR_EQ(env->case_id, p->case_id);
    AS_CHECK_STR_EQ(env->order_id, "ORD-1");
    AS_CHECK_STR_EQ(p->order_id, "ORD-1");
    AS_CHECK(p->case_number[0] != '\0');
    char name[160], id[37];
    int nlen = snprintf(name, sizeof name, "%s|%lld", p->case_id, (long long)p->version);
    as_uuid_v5(id, "aftersales.case_state_changed", name, (size_t)nlen);
    AS_CHECK_STR_EQ(env->event_id, id);
    AS_CHECK_STR_EQ(PQgetvalue(r, i, 0), id);
    const char *from = as_case_state_name(p->from_state);
    int w = snprintf(out + used, outlen - used, "%s%s:%lld:%s>%s:%d/%s(%s):%s", used ? " " : "",
                     PQgetvalue(r, i, 2) + strlen(f->case_id), (long long)p->version,
                     from ? from : "-", as_case_state_name(p->to_state), (int)p->actor->kind,
                     p->actor->id, p->actor_kind, p->reason);
    if (w > 0) used += (size_t)w < outlen - used ? (size_t)w : outlen - used - 1;
    as_envelope_free(env);
  }
  PQclear(r);
}

/* As many outbox rows, with distinct event ids, as f's cases have timeline
 * rows (with changes_of naming each row's case and version, every timeline
 * row is on the wire once: the invariant the integration suite checks). */
static void check_timeline_matches_outbox(fix_t *f) {
  char sql[256];
  const char *v[1] = {f->case_id};
  long long rows = AS_PG_INT(
      f->pg.conn, "SELECT count(*) FROM cases.timeline WHERE starts_with(case_id, $1)", 1, v);
  as_test_pg_sql(sql, sizeof sql, "SELECT count(DISTINCT event_id) FROM %s.outbox", f->pg.schema);
  AS_CHECK(rows > 0);
  AS_CHECK_INT_EQ(AS_PG_INT(f->pg.conn, sql, 0, NULL), rows);
  as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.outbox", f->pg.schema);
  AS_CHECK_INT_EQ(AS_PG_INT(f->pg.conn, sql, 0, NULL), rows);
}

#define K(x) AFTERSALES__V1__ACTOR_KIND__ACTOR_KIND_##x

/* Births and a batch of legal, illegal, missing, masked and chained moves:
 * the outbox holds one CaseStateChanged per timeline row, in call order,
 * with from/to/version/actor/reason, and none for a refused move. */
AS_TEST(outbox_holds_one_change_per_legal_move) {
  fix_t f;
  char ids[2][96], missing[96], got[1024], want[1024];

  fix_setup(&f);
  static const char *const sfx[] = {"a", "b"};
  open_subs_committed(&f, sfx, 2, ids);
  sub_id(&f, "missing", missing, sizeof missing);
  as_case_move_t m[] = {
      mv(ids[1], ST(REFUNDED), "too early"),    /* illegal from OPEN */
      mv(missing, ST(IN_REVIEW), "ghost"),      /* no such case */
      mv(ids[0], ST(APPROVED), "auto"),         /* legal: a v2 */
      mv(ids[1], ST(APPROVED), "masked"),       /* from_mask wants IN_REVIEW */
      mv(ids[0], ST(AWAITING_RETURN), "label"), /* chained: a v3 */
      mv(ids[1], ST(MANUAL_REVIEW), "abuse"),   /* legal: b v2 */
      mv(ids[0], ST(OPEN), "back"),             /* illegal */
  };
  m[3].from_mask = AS_CASE_BIT(ST(IN_REVIEW));
  m[4].actor = (as_case_actor_t){"agent", "a-9"};
  m[5].actor = (as_case_actor_t){"mediator", "m-2"}; /* a kind the enum lacks */
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, sizeof m / sizeof m[0]), 0);
  AS_CHECK_INT_EQ(f.tx.rows, 3);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  changes_of(&f, got, sizeof got);
  snprintf(want, sizeof want,
           "-a:1:->OPEN:%d/intake(system):opened -b:1:->OPEN:%d/intake(system):opened"
           " -a:2:OPEN>APPROVED:%d/intake(system):auto"
           " -a:3:APPROVED>AWAITING_RETURN:%d/a-9(agent):label"
           " -b:2:OPEN>MANUAL_REVIEW:%d/m-2(mediator):abuse",
           K(SYSTEM), K(SYSTEM), K(SYSTEM), K(AGENT), K(UNSPECIFIED));
  AS_CHECK_STR_EQ(got, want);
  check_timeline_matches_outbox(&f);
  fix_teardown(&f);
}

/* Only refused moves, a call refused whole (-EINVAL), a failed statement and
 * an opening that finds its case existing queue nothing. */
AS_TEST(outbox_holds_nothing_for_refused_moves) {
  fix_t f;
  char ids[1][96], got[512];

  fix_setup(&f);
  static const char *const sfx[] = {"a"};
  open_subs_committed(&f, sfx, 1, ids);
  as_case_move_t m[2] = {mv(ids[0], ST(REFUNDED), "no"), mv(ids[0], ST(IN_REVIEW), "masked")};
  m[1].from_mask = AS_CASE_BIT(ST(AWAITING_EVIDENCE));
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, 2), 0);
  as_case_move_t bad[2] = {mv(ids[0], ST(IN_REVIEW), "x"), mv(NULL, ST(IN_REVIEW), "x")};
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, bad, 2), -EINVAL);
  as_case_opening_t again = {.c = new_case(&f), .actor = SYSTEM, .why = "again"};
  again.c.case_id = ids[0];
  AS_CHECK_INT_EQ(as_case_open_many(&f.tx, &again, 1), 0);
  AS_CHECK(!again.opened);
  AS_CHECK_INT_EQ(f.tx.rows, 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  as_case_move_t broken = mv(ids[0], ST(IN_REVIEW), "broken");
  broken.detail_json = "{oops";
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, &broken, 1), -EIO);
  AS_CHECK_INT_EQ(f.tx.rows, 0);
  as_db_rollback(&f.db);
  changes_of(&f, got, sizeof got);
  AS_CHECK_STR_EQ(got, "-a:1:->OPEN:1/intake(system):opened");
  fix_teardown(&f);
}

/* The causing event: without a message, event_id is the causation id (a new
 * trace); with the message being handled, its id and trace carry on. */
AS_TEST(outbox_change_names_its_cause) {
  fix_t f;
  char ids[1][96], ev[37], cause_id[37], sql[256];

  fix_setup(&f);
  static const char *const sfx[] = {"a"};
  open_subs_committed(&f, sfx, 1, ids);
  AS_CHECK_INT_EQ(as_uuid_v4(ev), 0);
  AS_CHECK_INT_EQ(as_uuid_v4(cause_id), 0);
  as_envelope_t cause_env = AFTERSALES__V1__ENVELOPE__INIT;
  cause_env.event_id = cause_id;
  cause_env.trace_id = "0123456789abcdef0123456789abcdef";
  as_msg_t cause = {.env = &cause_env};
  as_case_move_t m[2] = {mv(ids[0], ST(IN_REVIEW), "by id"), mv(ids[0], ST(APPROVED), "by msg")};
  m[0].event_id = ev;
  m[1].event_id = cause_id;
  m[1].cause = &cause;
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition_many(&f.tx, m, 2), 0);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);

  PGresult *r = AS_PG_Q(
      f.pg.conn,
      as_test_pg_sql(sql, sizeof sql, "SELECT payload FROM %s.outbox ORDER BY id", f.pg.schema), 0,
      NULL);
  AS_CHECK_INT_EQ(PQntuples(r), 3);
  const char *want_cause[3] = {"", ev, cause_id};
  for (int i = 0; i < 3; i++) {
    size_t len = 0;
    unsigned char *bytes = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 0), &len);
    as_envelope_t *env = aftersales__v1__envelope__unpack(NULL, len, bytes);
    PQfreemem(bytes);
    AS_CHECK(env != NULL);
    AS_CHECK_STR_EQ(env->causation_id, want_cause[i]);
    AS_CHECK_INT_EQ(strlen(env->trace_id), 32);
    if (i == 2)
      AS_CHECK_STR_EQ(env->trace_id, cause_env.trace_id);
    else
      AS_CHECK(strcmp(env->trace_id, cause_env.trace_id) != 0);
    AS_CHECK_STR_EQ(env->producer->service, "test");
    AS_CHECK(env->occurred_at_us > 0);
    as_envelope_free(env);
  }
  PQclear(r);
  fix_teardown(&f);
}

/* cases.legal_moves (the table cases.move checks, run as the owner) holds
 * exactly the pairs as_case_move_legal allows: the two cannot drift. */
AS_TEST(sql_legal_moves_match_the_c_table) {
  fix_t f;
  fix_setup(&f);
  for (int a = 1; a < NSTATES; a++)
    for (int b = 1; b < NSTATES; b++) {
      const char *v[2] = {as_case_state_name((as_case_state_t)a),
                          as_case_state_name((as_case_state_t)b)};
      char got[96], want[96];
      long long n = AS_PG_INT(
          f.pg.conn,
          "SELECT count(*) FROM cases.legal_moves WHERE from_state = $1 AND to_state = $2", 2, v);
      snprintf(got, sizeof got, "%s -> %s: %lld", v[0], v[1], n);
      snprintf(want, sizeof want, "%s -> %s: %d", v[0], v[1],
               as_case_move_legal((as_case_state_t)a, (as_case_state_t)b));
      AS_CHECK_STR_EQ(got, want);
    }
  fix_teardown(&f);
}

/* cases.move, called directly as a worker could, refuses rows that do not
 * chain from the stored case (a version skipped, a from_state that is not
 * the case's) or make an illegal move, and writes nothing then. */
AS_TEST(sql_move_refuses_what_does_not_chain) {
  fix_t f;
  char state[6], msg[256], row[64];
  fix_setup(&f);
  open_committed(&f);
  static const char call[] =
      "SELECT * FROM cases.move(ARRAY[$1], ARRAY[$2::bigint], ARRAY[$3], ARRAY[$4], "
      "ARRAY['system'], ARRAY['x'], ARRAY['why'], ARRAY[NULL::uuid], ARRAY[NULL::jsonb])";
  const char *cases[][3] = {
      {"3", "OPEN", "IN_REVIEW"},  /* version 2 skipped */
      {"2", "REFUNDED", "CLOSED"}, /* not the stored state */
      {"2", "OPEN", "REFUNDED"},   /* illegal from OPEN */
      {"1", "OPEN", "IN_REVIEW"},  /* an old version rewritten */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *v[4] = {f.case_id, cases[i][0], cases[i][1], cases[i][2]};
    AS_PG_FAILS(f.pg.conn, call, 4, v, state, msg);
    AS_CHECK_STR_EQ(state, "23514");
    AS_CHECK_STR_EQ(msg, "illegal case move");
  }
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "OPEN|1");
  AS_CHECK_INT_EQ(timeline_rows(&f), 1);
  const char *ok[4] = {f.case_id, "2", "OPEN", "IN_REVIEW"};
  PGresult *r = AS_PG_Q(f.pg.conn, call, 4, ok);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), "1");
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 1), "1");
  PQclear(r);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "IN_REVIEW|2");
  /* Two moves of one case: each must start where the one before ended,
   * with the next version. */
  static const char two[] =
      "SELECT * FROM cases.move(ARRAY[$1, $1], ARRAY[$2::bigint, $3::bigint], ARRAY[$4, $5],"
      " ARRAY[$6, $7], ARRAY['system', 'system'], ARRAY['x', 'x'], ARRAY['a', 'b'],"
      " ARRAY[NULL::uuid, NULL], ARRAY[NULL::jsonb, NULL])";
  const char *pairs[][6] = {
      {"3", "4", "IN_REVIEW", "IN_REVIEW", "APPROVED",
       "REJECTED"}, /* the second from the stale state */
      {"3", "3", "IN_REVIEW", "APPROVED", "APPROVED", "AWAITING_RETURN"}, /* one version twice */
      {"3", "5", "IN_REVIEW", "APPROVED", "APPROVED", "AWAITING_RETURN"}, /* version 4 skipped */
      {"3", "4", "IN_REVIEW", "APPROVED", "APPROVED", "INSPECTING"},      /* the second illegal */
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    const char *v[7] = {f.case_id,   pairs[i][0], pairs[i][1], pairs[i][2],
                        pairs[i][3], pairs[i][4], pairs[i][5]};
    AS_PG_FAILS(f.pg.conn, two, 7, v, state, msg);
    AS_CHECK_STR_EQ(state, "23514");
  }
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "IN_REVIEW|2");
  AS_CHECK_INT_EQ(timeline_rows(&f), 2);
  const char *chain[7] = {f.case_id,        "3", "4", "IN_REVIEW", "APPROVED", "APPROVED",
                          "AWAITING_RETURN"};
  r = AS_PG_Q(f.pg.conn, two, 7, chain);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), "1");
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 1), "2");
  PQclear(r);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "AWAITING_RETURN|4");
  AS_CHECK_INT_EQ(timeline_rows(&f), 4);
  fix_teardown(&f);
}

/* Issue 12: QC of a claim's evidence moves a case straight to INSPECTING
 * from where it is decided, and as_case_note appends a timeline row that
 * keeps the state (a closed case compensated), bumping the version, in any
 * state, CLOSED included; an unknown case is -ENOENT. */
AS_TEST(inspecting_from_decision_and_note_keeps_the_state) {
  fix_t f;
  char row[64], got[256];
  int64_t version = 0;

  AS_CHECK(as_case_move_legal(ST(OPEN), ST(INSPECTING)));
  AS_CHECK(as_case_move_legal(ST(AWAITING_EVIDENCE), ST(INSPECTING)));
  AS_CHECK(as_case_move_legal(ST(IN_REVIEW), ST(INSPECTING)));
  AS_CHECK(!as_case_move_legal(ST(MANUAL_REVIEW), ST(INSPECTING)));
  fix_setup(&f);
  open_committed(&f);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_transition(&f.tx, f.case_id, ST(INSPECTING), SYSTEM, "qc.evidence", NULL,
                                     NULL, NULL, NULL),
                  0);
  AS_CHECK_INT_EQ(as_case_transition(&f.tx, f.case_id, ST(REJECTED), SYSTEM, "inspection.failed",
                                     NULL, NULL, NULL, NULL),
                  0);
  AS_CHECK_INT_EQ(
      as_case_transition(&f.tx, f.case_id, ST(CLOSED), SYSTEM, "closed", NULL, NULL, NULL, NULL),
      0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  as_case_actor_t review = {"system", "review"};
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_case_note(&f.tx, f.case_id, review, "compensation.granted", NULL,
                               "{\"refunded_minor\": 1999}", &version),
                  0);
  AS_CHECK_INT_EQ(version, 5);
  AS_CHECK_INT_EQ(as_case_note(&f.tx, "no-such-case", review, "x", NULL, NULL, NULL), -ENOENT);
  AS_CHECK_INT_EQ(as_tx_flush(&f.tx, NULL, 0), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  case_row(&f, row, sizeof row);
  AS_CHECK_STR_EQ(row, "CLOSED|5");
  const char *v[1] = {f.case_id};
  AS_PG_STR(
      f.pg.conn,
      "SELECT concat_ws('|', from_state, to_state, actor_id, reason, detail->>'refunded_minor')"
      " FROM cases.timeline WHERE case_id = $1 AND version = 5",
      1, v, got);
  AS_CHECK_STR_EQ(got, "CLOSED|CLOSED|review|compensation.granted|1999");
  AS_CHECK_INT_EQ(timeline_rows(&f), 5);
  fix_teardown(&f);
}
