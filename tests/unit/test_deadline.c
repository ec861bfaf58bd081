/* Unit tests for as_deadline against PostgreSQL: set, move, cancel and
 * re-arm as rows of <schema>.deadlines; the scanner fires due rows only
 * (due_at <= now(), the boundary included), in due order, at most limit,
 * marks them fired in the caller's transaction and never fires one twice;
 * a failing callback fails the scan; and two transactions scanning at once
 * never take the same row (FOR UPDATE SKIP LOCKED). */
#include "as_deadline.h"
#include "as_envelope.h"
#include "as_test.h"
#include "as_test_pg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct fix {
  as_test_pg_t pg;
  as_db_t db;
  as_tx_conf_t conf;
  as_tx_t tx;
} fix_t;

static void fix_setup(fix_t *f) {
  memset(f, 0, sizeof *f);
  as_test_pg_tx_setup(&f->pg, &f->db, &f->conf, &f->tx, "test_deadline");
}

static void fix_teardown(fix_t *f) {
  as_test_pg_tx_teardown(&f->pg, &f->db, &f->tx);
}

/* What the fire callback saw, in call order. */
typedef struct fired {
  int n;
  char what[16][64]; /* "case/kind" */
  int64_t due[16];
  int fail_at; /* 1-based call that returns -EIO; 0 never */
} fired_t;

static int on_fire(void *arg, as_tx_t *tx, const char *case_id, const char *kind, int64_t due_us) {
  fired_t *f = arg;
  (void)tx;
  if (f->fail_at && f->n + 1 == f->fail_at) return -EIO;
  if (f->n < 16) {
    snprintf(f->what[f->n], sizeof f->what[f->n], "%s/%s", case_id, kind);
    f->due[f->n] = due_us;
  }
  f->n++;
  return 0;
}

/* Scans in its own transaction and commits; returns the scan's result. */
static int scan_committed(fix_t *f, int limit, fired_t *out) {
  memset(out, 0, sizeof *out);
  AS_CHECK_INT_EQ(as_db_begin(&f->db), 0);
  int n = as_deadline_scan(&f->tx, limit, on_fire, out);
  AS_CHECK_INT_EQ(as_db_commit(&f->db), 0);
  return n;
}

static void set_committed(fix_t *f, const char *case_id, const char *kind, int64_t due_us) {
  AS_CHECK_INT_EQ(as_deadline_set(&f->tx, case_id, kind, due_us), 0);
}

/* "due_us|fired|cancelled" of one deadline, or "none". */
static void row_of(fix_t *f, const char *case_id, const char *kind, char *out, size_t outlen) {
  char sql[256];
  const char *v[2] = {case_id, kind};
  as_test_pg_sql(sql, sizeof sql,
                 "SELECT concat_ws('|', (extract(epoch FROM due_at) * 1e6)::bigint,"
                 " fired_at IS NOT NULL, cancelled_at IS NOT NULL)"
                 " FROM %s.deadlines WHERE case_id = $1 AND kind = $2",
                 f->pg.schema);
  PGresult *r = AS_PG_Q(f->pg.conn, sql, 2, v);
  snprintf(out, outlen, "%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "none");
  AS_CHECK(PQntuples(r) <= 1);
  PQclear(r);
}

static void want_row(fix_t *f, const char *case_id, const char *kind, long long due, bool fired,
                     bool cancelled) {
  char got[128], want[128];
  row_of(f, case_id, kind, got, sizeof got);
  snprintf(want, sizeof want, "%lld|%s|%s", due, fired ? "t" : "f", cancelled ? "t" : "f");
  AS_CHECK_STR_EQ(got, want);
}

static long long count_rows(fix_t *f) {
  char sql[128];
  return AS_PG_INT(
      f->pg.conn,
      as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.deadlines", f->pg.schema), 0, NULL);
}

AS_TEST(set_move_cancel) {
  fix_t f;
  int64_t t = 1900000000123457LL; /* microsecond precision kept */

  fix_setup(&f);
  set_committed(&f, "C1", "sla", t);
  want_row(&f, "C1", "sla", t, false, false);
  /* Another kind of the same case is another deadline. */
  set_committed(&f, "C1", "evidence", t + 1);
  want_row(&f, "C1", "evidence", t + 1, false, false);
  AS_CHECK_INT_EQ(count_rows(&f), 2);

  /* Setting again moves it: still one row for (C1, sla). */
  set_committed(&f, "C1", "sla", t + 3600000000LL);
  want_row(&f, "C1", "sla", t + 3600000000LL, false, false);
  AS_CHECK_INT_EQ(count_rows(&f), 2);

  AS_CHECK_INT_EQ(as_deadline_cancel(&f.tx, "C1", "sla"), 0);
  want_row(&f, "C1", "sla", t + 3600000000LL, false, true);
  want_row(&f, "C1", "evidence", t + 1, false, false); /* the other kind stays */
  /* Cancelling what does not exist, or again, is no error. */
  AS_CHECK_INT_EQ(as_deadline_cancel(&f.tx, "C1", "sla"), 0);
  AS_CHECK_INT_EQ(as_deadline_cancel(&f.tx, "C-none", "sla"), 0);
  AS_CHECK_INT_EQ(count_rows(&f), 2);

  /* Set after cancel re-arms. */
  set_committed(&f, "C1", "sla", t);
  want_row(&f, "C1", "sla", t, false, false);
  fix_teardown(&f);
}

/* The bulk cancel: the named pairs only, a pair twice and a missing one
 * are no error, a fired deadline stays fired, nothing at all is a no-op. */
AS_TEST(cancel_many) {
  fix_t f;
  int64_t t = 1900000000123457LL;

  fix_setup(&f);
  set_committed(&f, "C1", "sla", t);
  set_committed(&f, "C1", "evidence", t);
  set_committed(&f, "C2", "sla", t);
  const char *cases[] = {"C1", "C2", "C2", "C-none"};
  const char *kinds[] = {"sla", "sla", "sla", "sla"};
  AS_CHECK_INT_EQ(as_deadline_cancel_many(&f.tx, cases, kinds, 4), 0);
  want_row(&f, "C1", "sla", t, false, true);
  want_row(&f, "C2", "sla", t, false, true);
  want_row(&f, "C1", "evidence", t, false, false);
  AS_CHECK_INT_EQ(as_deadline_cancel_many(&f.tx, cases, kinds, 0), 0);
  AS_CHECK_INT_EQ(count_rows(&f), 3);
  fix_teardown(&f);
}

/* Set and cancel follow the caller's transaction: a rollback undoes them. */
AS_TEST(set_is_transactional) {
  fix_t f;

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_deadline_set(&f.tx, "C1", "sla", 1900000000000000LL), 0);
  as_db_rollback(&f.db);
  AS_CHECK_INT_EQ(count_rows(&f), 0);
  fix_teardown(&f);
}

AS_TEST(scan_fires_only_due_rows_in_order) {
  fix_t f;
  fired_t got;
  int64_t now = as_now_us();

  fix_setup(&f);
  set_committed(&f, "C-late", "sla", now - 5000000);        /* due 5 s ago */
  set_committed(&f, "C-future", "sla", now + 3600000000LL); /* in an hour */
  set_committed(&f, "C-early", "sla", now - 60000000);      /* due a minute ago */
  set_committed(&f, "C-cancelled", "sla", now - 60000000);
  AS_CHECK_INT_EQ(as_deadline_cancel(&f.tx, "C-cancelled", "sla"), 0);

  AS_CHECK_INT_EQ(scan_committed(&f, 10, &got), 2);
  AS_CHECK_INT_EQ(got.n, 2);
  AS_CHECK_STR_EQ(got.what[0], "C-early/sla"); /* oldest first */
  AS_CHECK_STR_EQ(got.what[1], "C-late/sla");
  AS_CHECK_INT_EQ(got.due[0], now - 60000000);
  AS_CHECK_INT_EQ(got.due[1], now - 5000000);
  want_row(&f, "C-early", "sla", now - 60000000, true, false);
  want_row(&f, "C-late", "sla", now - 5000000, true, false);
  want_row(&f, "C-future", "sla", now + 3600000000LL, false, false);
  want_row(&f, "C-cancelled", "sla", now - 60000000, false, true);

  /* Fired rows are not fired again. */
  AS_CHECK_INT_EQ(scan_committed(&f, 10, &got), 0);
  AS_CHECK_INT_EQ(got.n, 0);

  /* Set again re-arms a fired deadline. */
  set_committed(&f, "C-late", "sla", now - 1000000);
  want_row(&f, "C-late", "sla", now - 1000000, false, false);
  AS_CHECK_INT_EQ(scan_committed(&f, 10, &got), 1);
  AS_CHECK_STR_EQ(got.what[0], "C-late/sla");
  AS_CHECK_INT_EQ(got.due[0], now - 1000000);
  AS_CHECK_INT_EQ(scan_committed(&f, 10, &got), 0);
  fix_teardown(&f);
}

/* due_at = now() (the transaction's time) is due; one microsecond later is
 * not. */
AS_TEST(scan_boundary_is_inclusive) {
  fix_t f;
  fired_t got;
  char sql[256];

  fix_setup(&f);
  set_committed(&f, "C-now", "sla", 4000000000000000LL);
  set_committed(&f, "C-next", "sla", 4000000000000000LL);
  memset(&got, 0, sizeof got);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_db_query(&f.db,
                              as_test_pg_sql(sql, sizeof sql,
                                             "UPDATE %s.deadlines SET due_at = now() +"
                                             " CASE case_id WHEN 'C-now' THEN interval '0'"
                                             " ELSE interval '1 microsecond' END",
                                             f.pg.schema),
                              0, NULL, NULL),
                  0);
  AS_CHECK_INT_EQ(as_deadline_scan(&f.tx, 10, on_fire, &got), 1);
  AS_CHECK_STR_EQ(got.what[0], "C-now/sla");
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  fix_teardown(&f);
}

AS_TEST(scan_respects_limit) {
  fix_t f;
  fired_t got;
  int64_t now = as_now_us();

  fix_setup(&f);
  set_committed(&f, "C3", "k", now - 1000000);
  set_committed(&f, "C1", "k", now - 3000000);
  set_committed(&f, "C2", "k", now - 2000000);
  AS_CHECK_INT_EQ(scan_committed(&f, 2, &got), 2);
  AS_CHECK_STR_EQ(got.what[0], "C1/k");
  AS_CHECK_STR_EQ(got.what[1], "C2/k");
  AS_CHECK_INT_EQ(scan_committed(&f, 2, &got), 1);
  AS_CHECK_STR_EQ(got.what[0], "C3/k");
  AS_CHECK_INT_EQ(scan_committed(&f, 2, &got), 0);
  fix_teardown(&f);
}

/* A callback error ends the scan with that error; after the caller's
 * rollback nothing is marked fired and the next scan fires them all. */
AS_TEST(scan_callback_failure) {
  fix_t f;
  fired_t got;
  int64_t now = as_now_us();
  char sql[128];

  fix_setup(&f);
  set_committed(&f, "C1", "k", now - 3000000);
  set_committed(&f, "C2", "k", now - 2000000);
  set_committed(&f, "C3", "k", now - 1000000);
  memset(&got, 0, sizeof got);
  got.fail_at = 2;
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&f.tx, 10, on_fire, &got), -EIO);
  AS_CHECK_INT_EQ(got.n, 1); /* the third was not called */
  as_db_rollback(&f.db);
  as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.deadlines WHERE fired_at IS NOT NULL",
                 f.pg.schema);
  AS_CHECK_INT_EQ(AS_PG_INT(f.pg.conn, sql, 0, NULL), 0);
  AS_CHECK_INT_EQ(scan_committed(&f, 10, &got), 3);
  AS_CHECK_INT_EQ(AS_PG_INT(f.pg.conn, sql, 0, NULL), 3);
  fix_teardown(&f);
}

/* A crash (rollback) after firing leaves the deadline to fire again. */
AS_TEST(scan_rolled_back_fires_again) {
  fix_t f;
  fired_t got;

  fix_setup(&f);
  set_committed(&f, "C1", "k", as_now_us() - 1000000);
  memset(&got, 0, sizeof got);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&f.tx, 10, on_fire, &got), 1);
  as_db_rollback(&f.db);
  AS_CHECK_INT_EQ(scan_committed(&f, 10, &got), 1);
  AS_CHECK_STR_EQ(got.what[0], "C1/k");
  fix_teardown(&f);
}

/* A holds its scanned rows in an open transaction; B's scan (a second
 * instance) skips them instead of waiting or firing them too. lock_timeout
 * on B turns a missing SKIP LOCKED into an error instead of a hang. */
AS_TEST(concurrent_scans_never_share_a_row) {
  fix_t f;
  as_db_t bdb;
  as_tx_t btx;
  fired_t ga, gb;
  int64_t now = as_now_us();

  fix_setup(&f);
  for (int i = 0; i < 5; i++) {
    char id[16];
    snprintf(id, sizeof id, "C%d", i);
    set_committed(&f, id, "k", now - 10000000 + i);
  }
  as_db_init(&bdb, f.pg.dsn, "test_deadline_b", f.pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&bdb), 0);
  as_tx_init(&btx, &bdb, &f.conf);
  AS_CHECK_INT_EQ(as_db_query(&bdb, "SET lock_timeout = '1s'", 0, NULL, NULL), 0);

  memset(&ga, 0, sizeof ga);
  memset(&gb, 0, sizeof gb);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&f.tx, 2, on_fire, &ga), 2);
  AS_CHECK_STR_EQ(ga.what[0], "C0/k");
  AS_CHECK_STR_EQ(ga.what[1], "C1/k");

  AS_CHECK_INT_EQ(as_db_begin(&bdb), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&btx, 10, on_fire, &gb), 3);
  AS_CHECK_STR_EQ(gb.what[0], "C2/k");
  AS_CHECK_STR_EQ(gb.what[1], "C3/k");
  AS_CHECK_STR_EQ(gb.what[2], "C4/k");
  /* While both hold their rows, a third scan finds nothing free. */
  fired_t gc;
  as_db_t cdb;
  as_tx_t ctx;
  memset(&gc, 0, sizeof gc);
  as_db_init(&cdb, f.pg.dsn, "test_deadline_c", f.pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&cdb), 0);
  as_tx_init(&ctx, &cdb, &f.conf);
  AS_CHECK_INT_EQ(as_db_query(&cdb, "SET lock_timeout = '1s'", 0, NULL, NULL), 0);
  AS_CHECK_INT_EQ(as_db_begin(&cdb), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&ctx, 10, on_fire, &gc), 0);
  AS_CHECK_INT_EQ(as_db_commit(&cdb), 0);

  AS_CHECK_INT_EQ(as_db_commit(&bdb), 0);
  AS_CHECK_INT_EQ(as_db_commit(&f.db), 0);
  char sql[128];
  as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.deadlines WHERE fired_at IS NOT NULL",
                 f.pg.schema);
  AS_CHECK_INT_EQ(AS_PG_INT(f.pg.conn, sql, 0, NULL), 5);
  fired_t again;
  AS_CHECK_INT_EQ(scan_committed(&f, 10, &again), 0);

  as_tx_free(&ctx);
  as_db_close(&cdb);
  as_tx_free(&btx);
  as_db_close(&bdb);
  fix_teardown(&f);
}

/* A holds every due row; B, scanning while A's transaction is open, gets
 * none and returns at once; after A rolls back, B gets them all. */
AS_TEST(skip_locked_returns_nothing_while_held) {
  fix_t f;
  as_db_t bdb;
  as_tx_t btx;
  fired_t ga, gb;
  int64_t now = as_now_us();

  fix_setup(&f);
  set_committed(&f, "C1", "k", now - 2000000);
  set_committed(&f, "C2", "k", now - 1000000);
  as_db_init(&bdb, f.pg.dsn, "test_deadline_b", f.pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&bdb), 0);
  as_tx_init(&btx, &bdb, &f.conf);
  AS_CHECK_INT_EQ(as_db_query(&bdb, "SET lock_timeout = '1s'", 0, NULL, NULL), 0);

  memset(&ga, 0, sizeof ga);
  memset(&gb, 0, sizeof gb);
  AS_CHECK_INT_EQ(as_db_begin(&f.db), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&f.tx, 10, on_fire, &ga), 2);
  AS_CHECK_INT_EQ(as_db_begin(&bdb), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&btx, 10, on_fire, &gb), 0);
  AS_CHECK_INT_EQ(gb.n, 0);
  AS_CHECK_INT_EQ(as_db_commit(&bdb), 0);
  as_db_rollback(&f.db);

  memset(&gb, 0, sizeof gb);
  AS_CHECK_INT_EQ(as_db_begin(&bdb), 0);
  AS_CHECK_INT_EQ(as_deadline_scan(&btx, 10, on_fire, &gb), 2);
  AS_CHECK_INT_EQ(as_db_commit(&bdb), 0);
  AS_CHECK_STR_EQ(gb.what[0], "C1/k");
  AS_CHECK_STR_EQ(gb.what[1], "C2/k");
  as_tx_free(&btx);
  as_db_close(&bdb);
  fix_teardown(&f);
}
