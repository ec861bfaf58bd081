/* Unit tests for as_route: the order a batch is dispatched in (batch
 * handlers once each, in table order, with their messages in batch order;
 * then message handlers in batch order), messages marked dead or routed
 * nowhere, a handler error stopping the rest, and deadline kinds matched
 * exactly or by prefix. */
#include "as_route.h"
#include "as_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x

typedef struct calls {
  char log[512];
  int fail_at; /* the call number that returns -EIO; 0 never */
  int n;
} calls_t;

static int note(calls_t *k, const char *who, as_msg_t *const *msgs, size_t n) {
  k->n++;
  size_t len = strlen(k->log);
  snprintf(k->log + len, sizeof k->log - len, "%s%s(", len ? " " : "", who);
  for (size_t i = 0; i < n; i++) {
    len = strlen(k->log);
    snprintf(k->log + len, sizeof k->log - len, "%s%s", i ? "," : "", msgs[i]->env->event_id);
  }
  len = strlen(k->log);
  snprintf(k->log + len, sizeof k->log - len, ")");
  return k->n == k->fail_at ? -EIO : 0;
}

static int orders(void *s, as_tx_t *tx, as_msg_t *const *m, size_t n) {
  (void)tx;
  return note(s, "orders", m, n);
}

/* Refuses the message named "bad" in its batch. */
static int requests(void *s, as_tx_t *tx, as_msg_t *const *m, size_t n) {
  (void)tx;
  for (size_t i = 0; i < n; i++)
    if (strcmp(m[i]->env->event_id, "bad") == 0) as_tx_reject(m[i], "bad");
  return note(s, "requests", m, n);
}

static int followup(void *s, as_tx_t *tx, as_msg_t *m) {
  (void)tx;
  return note(s, "followup", &m, 1);
}

static const as_route_t routes[] = {
    {P(AFTERSALES_REQUESTED), .batch = requests},
    {P(ORDER_PLACED), .batch = orders},
    {P(ORDER_PAID), .batch = orders},
    {P(EVIDENCE_ADDED), .one = followup},
    {P(BUYER_MESSAGE), .one = followup},
};

typedef struct batch {
  as_envelope_t env[8];
  as_msg_t msg[8];
  as_msg_t *ptr[8];
  size_t n;
} batch_t;

static void add(batch_t *b, Aftersales__V1__Envelope__PayloadCase p, const char *id) {
  as_envelope_t e = AFTERSALES__V1__ENVELOPE__INIT;
  b->env[b->n] = e;
  b->env[b->n].payload_case = p;
  b->env[b->n].event_id = (char *)id;
  b->msg[b->n] = (as_msg_t){.env = &b->env[b->n]};
  b->ptr[b->n] = &b->msg[b->n];
  b->n++;
}

static void mixed(batch_t *b) {
  memset(b, 0, sizeof *b);
  add(b, P(EVIDENCE_ADDED), "e1");
  add(b, P(ORDER_PAID), "o1");
  add(b, P(AFTERSALES_REQUESTED), "r1");
  add(b, P(CASE_OPENED), "x1");
  add(b, P(ORDER_PLACED), "o2");
  add(b, P(BUYER_MESSAGE), "m1");
  add(b, P(AFTERSALES_REQUESTED), "bad");
  add(b, P(EVIDENCE_ADDED), "e2");
}

AS_TEST(batch_handlers_then_messages_in_order) {
  batch_t b;
  calls_t k = {.fail_at = 0};

  mixed(&b);
  AS_CHECK_INT_EQ(as_route_batch(routes, AS_LEN(routes), &k, NULL, b.ptr, b.n), 0);
  AS_CHECK_STR_EQ(k.log, "requests(r1,bad) orders(o1,o2) followup(e1) followup(m1) followup(e2)");
  AS_CHECK_INT_EQ(b.msg[6].state, AS_MSG_DEAD);
  AS_CHECK_INT_EQ(b.msg[3].state, AS_MSG_NEW); /* routed nowhere: left alone */
}

/* A message already dead (or a duplicate) reaches no handler. */
AS_TEST(dead_messages_are_skipped) {
  batch_t b;
  calls_t k = {.fail_at = 0};

  mixed(&b);
  b.msg[1].state = AS_MSG_DUPLICATE;
  b.msg[7].state = AS_MSG_DEAD;
  AS_CHECK_INT_EQ(as_route_batch(routes, AS_LEN(routes), &k, NULL, b.ptr, b.n), 0);
  AS_CHECK_STR_EQ(k.log, "requests(r1,bad) orders(o2) followup(e1) followup(m1)");
}

/* The first error is returned and no handler runs after it. */
AS_TEST(error_stops_dispatch) {
  batch_t b;
  calls_t k = {.fail_at = 2};

  mixed(&b);
  AS_CHECK_INT_EQ(as_route_batch(routes, AS_LEN(routes), &k, NULL, b.ptr, b.n), -EIO);
  AS_CHECK_STR_EQ(k.log, "requests(r1,bad) orders(o1,o2)");
  k = (calls_t){.fail_at = 4};
  mixed(&b);
  AS_CHECK_INT_EQ(as_route_batch(routes, AS_LEN(routes), &k, NULL, b.ptr, b.n), -EIO);
  AS_CHECK_STR_EQ(k.log, "requests(r1,bad) orders(o1,o2) followup(e1) followup(m1)");
}

/* A batch with nothing routed calls nothing. */
AS_TEST(nothing_routed) {
  batch_t b = {.n = 0};
  calls_t k = {.fail_at = 0};

  add(&b, P(CASE_OPENED), "x1");
  AS_CHECK_INT_EQ(as_route_batch(routes, AS_LEN(routes), &k, NULL, b.ptr, b.n), 0);
  AS_CHECK_INT_EQ(as_route_batch(routes, AS_LEN(routes), &k, NULL, b.ptr, 0), 0);
  AS_CHECK_STR_EQ(k.log, "");
  AS_CHECK(as_route_find(routes, AS_LEN(routes), P(CASE_OPENED)) == NULL);
  AS_CHECK(as_route_find(routes, AS_LEN(routes), P(ORDER_PAID)) == &routes[2]);
}

static int fire_a(void *s, as_tx_t *tx, const char *c, const char *k, int64_t d) {
  (void)s, (void)tx, (void)c, (void)k, (void)d;
  return 1;
}

static int fire_b(void *s, as_tx_t *tx, const char *c, const char *k, int64_t d) {
  (void)s, (void)tx, (void)c, (void)k, (void)d;
  return 2;
}

AS_TEST(deadline_kinds) {
  static const as_deadline_kind_t kinds[] = {
      {"hold:*", fire_a},
      {"return", fire_a},
      {"return:transit", fire_b},
      {"*", fire_b},
  };
  static const struct {
    const char *kind;
    int want; /* index into kinds, -1 none */
  } rows[] = {
      {"hold:r-1", 0},       {"hold:", 0},           {"hold", 3},    {"return", 1},
      {"return:transit", 2}, {"return:transit+", 3}, {"returns", 3}, {"", 3},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const as_deadline_kind_t *k = as_route_kind(kinds, AS_LEN(kinds), rows[i].kind);
    char got[64], want[64];
    snprintf(got, sizeof got, "%s -> %d", rows[i].kind, k ? (int)(k - kinds) : -1);
    snprintf(want, sizeof want, "%s -> %d", rows[i].kind, rows[i].want);
    AS_CHECK_STR_EQ(got, want);
  }
  AS_CHECK(as_route_kind(kinds, 2, "pickup") == NULL);
  AS_CHECK(as_route_kind(kinds, 0, "hold:x") == NULL);
}
