/* Unit tests for intake_config_routes (AS_INTAKE_COMPLAINT_ROUTES),
 * table-driven: main.c's default map; departments with their own hours at
 * the bounds (1, 8760) and without (AS_INTAKE_COMPLAINT_HOURS); any order,
 * empty items; and every way a map is refused, with the error text the
 * worker logs at start: an item that is not TYPE=department (unknown,
 * lower-case or UNSPECIFIED type, no '='), a bad department (empty, upper
 * case, a space, 48 bytes) or bad hours (0, 8761, empty, trailing text, a
 * second colon, out of range), and a complaint type left unmapped. Built
 * the way main.c's init calls it, without a database. */
#include "../../services/intake/intake.h"
#include "as_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_ROUTES                                                                     \
  "SERVICE_ATTITUDE=customer_care,CASE_HANDLING=quality_assurance,DELIVERY=logistics_ops," \
  "PRODUCT_LISTING=merchant_ops,OTHER=customer_care"
/* The four types after SERVICE_ATTITUDE, mapped: a row changes the first. */
#define REST "CASE_HANDLING=qa,DELIVERY=logistics_ops,PRODUCT_LISTING=merchant_ops,OTHER=cc"

static const intake_conf_t conf = {.complaint_hours = 72};

/* Indexed by ComplaintType: 0 is UNSPECIFIED, never mapped. */
static const struct {
  const char *spec;
  const char *dept[INTAKE_NCOMPLAINT];
  long long hours[INTAKE_NCOMPLAINT];
} good[] = {
    {DEFAULT_ROUTES,
     {"", "customer_care", "quality_assurance", "logistics_ops", "merchant_ops", "customer_care"},
     {0, 72, 72, 72, 72, 72}},
    {"SERVICE_ATTITUDE=customer_care:1,CASE_HANDLING=quality_assurance:48,DELIVERY=logistics_ops:"
     "8760,"
     "PRODUCT_LISTING=merchant_ops,OTHER=customer_care",
     {"", "customer_care", "quality_assurance", "logistics_ops", "merchant_ops", "customer_care"},
     {0, 1, 48, 8760, 72, 72}},
    {",OTHER=o,,DELIVERY=d,PRODUCT_LISTING=p,CASE_HANDLING=c,SERVICE_ATTITUDE=s,",
     {"", "s", "c", "d", "p", "o"},
     {0, 72, 72, 72, 72, 72}},
    {"SERVICE_ATTITUDE=a_b-c9," REST,
     {"", "a_b-c9", "qa", "logistics_ops", "merchant_ops", "cc"},
     {0, 72, 72, 72, 72, 72}},
    {"SERVICE_ATTITUDE=abcdefghijklmnopqrstuvwxyz0123456789_-abcdefghi:24," REST, /* 47 bytes */
     {"", "abcdefghijklmnopqrstuvwxyz0123456789_-abcdefghi", "qa", "logistics_ops", "merchant_ops",
      "cc"},
     {0, 24, 72, 72, 72, 72}},
};

#define E "AS_INTAKE_COMPLAINT_ROUTES: "

static const struct {
  const char *spec, *err;
} bad[] = {
    {"", E "no department for SERVICE_ATTITUDE"},
    {",,,", E "no department for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=s,CASE_HANDLING=c,DELIVERY=d,PRODUCT_LISTING=p",
     E "no department for OTHER"},
    {"OTHER=o,CASE_HANDLING=c", E "no department for SERVICE_ATTITUDE"},
    {"REFUNDS=finance," REST, E "\"REFUNDS=finance\" is not TYPE=department"},
    {"service_attitude=cc," REST, E "\"service_attitude=cc\" is not TYPE=department"},
    {"UNSPECIFIED=cc," REST, E "\"UNSPECIFIED=cc\" is not TYPE=department"},
    {"=cc," REST, E "\"=cc\" is not TYPE=department"},
    {"SERVICE_ATTITUDE," REST, E "\"SERVICE_ATTITUDE\" is not TYPE=department"},
    {"SERVICE_ATTITUDE =cc," REST, E "\"SERVICE_ATTITUDE =cc\" is not TYPE=department"},
    {"SERVICE_ATTITUDE_X=cc," REST, E "\"SERVICE_ATTITUDE_X=cc\" is not TYPE=department"},
    {"SERVICE_ATTITUDE=," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=:24," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=Customer_care," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=customer care," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=customer.care," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc=x," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=abcdefghijklmnopqrstuvwxyz0123456789_-abcdefghij," REST, /* 48 bytes */
     E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc:0," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc:8761," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc:-1," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc:," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc:24h," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc:1:2," REST, E "bad department or hours for SERVICE_ATTITUDE"},
    {"SERVICE_ATTITUDE=cc:99999999999999999999," REST,
     E "bad department or hours for SERVICE_ATTITUDE"},
    {"OTHER=o,DELIVERY=Logistics," REST, E "bad department or hours for DELIVERY"},
};

AS_TEST(valid_maps) {
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    intake_t x = {.conf = &conf};
    memset(x.dept, 'x', sizeof x.dept); /* whatever was there before is replaced */
    char err[200] = "";
    int rc = intake_config_routes(&x, good[i].spec, err, sizeof err);
    char got[512], want[512];
    snprintf(got, sizeof got, "%s: rc %d %s", good[i].spec, rc, err);
    snprintf(want, sizeof want, "%s: rc 0 ", good[i].spec);
    AS_CHECK_STR_EQ(got, want);
    AS_CHECK_STR_EQ(x.dept[0], "");
    for (int t = 1; t < INTAKE_NCOMPLAINT; t++) {
      snprintf(got, sizeof got, "%s: type %d -> %s:%lld", good[i].spec, t, x.dept[t],
               x.dept_hours[t]);
      snprintf(want, sizeof want, "%s: type %d -> %s:%lld", good[i].spec, t, good[i].dept[t],
               good[i].hours[t]);
      AS_CHECK_STR_EQ(got, want);
    }
  }
}

AS_TEST(invalid_maps_and_their_errors) {
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    intake_t x = {.conf = &conf};
    char err[200] = "";
    int rc = intake_config_routes(&x, bad[i].spec, err, sizeof err);
    char got[512], want[512];
    snprintf(got, sizeof got, "%s: rc %d %s", bad[i].spec, rc, err);
    snprintf(want, sizeof want, "%s: rc %d %s", bad[i].spec, -EINVAL, bad[i].err);
    AS_CHECK_STR_EQ(got, want);
  }
}

/* The error fits whatever buffer it is given (main.c's is 200 bytes). */
AS_TEST(error_truncated_to_the_buffer) {
  intake_t x = {.conf = &conf};
  char err[24];
  memset(err, 'z', sizeof err);
  AS_CHECK_INT_EQ(intake_config_routes(&x, "NO_SUCH_TYPE=abc," REST, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_INTAKE_COMPLAINT_ROU");
}
