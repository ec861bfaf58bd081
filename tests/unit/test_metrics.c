/* Unit tests for as_metrics: the exact exposition text of a small registry,
 * get-or-create rules, number formatting, label escaping, quantiles, and a
 * service's metrics table registered into its state. */
#include "as_metrics.h"
#include "as_test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double LAT_BOUNDS[] = {0.005, 0.01, 0.1, 1};

/* Renders m and compares with want; frees the text. */
static void check_render(const as_metrics_t *m, const char *want) {
  size_t len = 0;
  char *got = as_metrics_render(m, &len);

  AS_CHECK(got != NULL);
  AS_CHECK_STR_EQ(got, want);
  AS_CHECK_INT_EQ(len, strlen(want));
  free(got);
}

AS_TEST(render_exact) {
  as_metrics_t *m = as_metrics_new("intake", "host-1");
  as_counter_t *ok, *bad;
  as_gauge_t *lag;
  as_histogram_t *h;

  AS_CHECK(m != NULL);
  ok = as_metrics_counter(m, "as_messages_total", "Messages consumed.", "result=\"ok\"");
  bad = as_metrics_counter(m, "as_messages_total", "ignored", "result=\"decode_failed\"");
  lag = as_metrics_gauge(m, "as_lag_seconds", "Consumer lag.", NULL);
  h = as_metrics_histogram(m, "as_tx_seconds", "Transaction time.", NULL, LAT_BOUNDS, 4);
  AS_CHECK(ok != NULL && bad != NULL && lag != NULL && h != NULL);
  as_counter_add(ok, 41);
  as_counter_add(ok, 1);
  as_counter_add(bad, 3);
  as_gauge_set(lag, 0.25);
  as_histogram_observe(h, 0.001);
  as_histogram_observe(h, 0.005); /* le is inclusive */
  as_histogram_observe(h, 0.05);
  as_histogram_observe(h, 7);
  check_render(m,
               "# HELP as_messages_total Messages consumed.\n"
               "# TYPE as_messages_total counter\n"
               "as_messages_total{service=\"intake\",instance=\"host-1\",result=\"ok\"} 42\n"
               "as_messages_total{service=\"intake\",instance=\"host-1\","
               "result=\"decode_failed\"} 3\n"
               "# HELP as_lag_seconds Consumer lag.\n"
               "# TYPE as_lag_seconds gauge\n"
               "as_lag_seconds{service=\"intake\",instance=\"host-1\"} 0.25\n"
               "# HELP as_tx_seconds Transaction time.\n"
               "# TYPE as_tx_seconds histogram\n"
               "as_tx_seconds_bucket{service=\"intake\",instance=\"host-1\",le=\"0.005\"} 2\n"
               "as_tx_seconds_bucket{service=\"intake\",instance=\"host-1\",le=\"0.01\"} 2\n"
               "as_tx_seconds_bucket{service=\"intake\",instance=\"host-1\",le=\"0.1\"} 3\n"
               "as_tx_seconds_bucket{service=\"intake\",instance=\"host-1\",le=\"1\"} 3\n"
               "as_tx_seconds_bucket{service=\"intake\",instance=\"host-1\",le=\"+Inf\"} 4\n"
               "as_tx_seconds_sum{service=\"intake\",instance=\"host-1\"} 7.056\n"
               "as_tx_seconds_count{service=\"intake\",instance=\"host-1\"} 4\n");
  AS_CHECK_INT_EQ(as_counter_value(ok), 42);
  AS_CHECK(as_gauge_value(lag) == 0.25);
  AS_CHECK_INT_EQ(as_histogram_count(h), 4);
  as_metrics_free(m);
}

AS_TEST(render_labelled_histogram_and_escaping) {
  as_metrics_t *m = as_metrics_new("in\"ta\\ke", "host\n1");
  as_histogram_t *h;

  AS_CHECK(m != NULL);
  h = as_metrics_histogram(m, "h", "a \\ b\nc \"q\"", "topic=\"orders\"", LAT_BOUNDS, 1);
  AS_CHECK(h != NULL);
  as_histogram_observe(h, 0.5);
  check_render(m,
               "# HELP h a \\\\ b\\nc \"q\"\n"
               "# TYPE h histogram\n"
               "h_bucket{service=\"in\\\"ta\\\\ke\",instance=\"host\\n1\",topic=\"orders\","
               "le=\"0.005\"} 0\n"
               "h_bucket{service=\"in\\\"ta\\\\ke\",instance=\"host\\n1\",topic=\"orders\","
               "le=\"+Inf\"} 1\n"
               "h_sum{service=\"in\\\"ta\\\\ke\",instance=\"host\\n1\",topic=\"orders\"} 0.5\n"
               "h_count{service=\"in\\\"ta\\\\ke\",instance=\"host\\n1\",topic=\"orders\"} 1\n");
  as_metrics_free(m);
}

AS_TEST(render_empty) {
  as_metrics_t *m = as_metrics_new(NULL, NULL);

  AS_CHECK(m != NULL);
  check_render(m, "");
  as_metrics_free(m);
  as_metrics_free(NULL);
}

AS_TEST(get_or_create) {
  static const double other[] = {1, 2};
  as_metrics_t *m = as_metrics_new("s", "i");
  as_counter_t *c;

  AS_CHECK(m != NULL);
  c = as_metrics_counter(m, "c_total", "h", NULL);
  AS_CHECK(c != NULL);
  AS_CHECK(as_metrics_counter(m, "c_total", "h", "") == c);
  AS_CHECK(as_metrics_counter(m, "c_total", "h", "a=\"1\"") != c);
  AS_CHECK(as_metrics_gauge(m, "c_total", "h", NULL) == NULL);
  AS_CHECK(as_metrics_histogram(m, "c_total", "h", NULL, other, 2) == NULL);
  AS_CHECK(as_metrics_histogram(m, "lat", "h", NULL, LAT_BOUNDS, 4) != NULL);
  AS_CHECK(as_metrics_histogram(m, "lat", "h", "x=\"y\"", LAT_BOUNDS, 4) != NULL);
  AS_CHECK(as_metrics_histogram(m, "lat", "h", "x=\"z\"", other, 2) == NULL);
  AS_CHECK(as_metrics_histogram(m, "lat", "h", "x=\"z\"", LAT_BOUNDS, 3) == NULL);
  as_metrics_free(m);
}

AS_TEST(rejects_bad_names_and_bounds) {
  static const double unsorted[] = {1, 0.5};
  static const double dup[] = {1, 1};
  static const double inf[] = {1, INFINITY};
  static const char *const bad[] = {"", "1abc", "a-b", "a b", "a{b}", "é"};
  as_metrics_t *m = as_metrics_new("s", "i");

  AS_CHECK(m != NULL);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    AS_CHECK(as_metrics_counter(m, bad[i], "h", NULL) == NULL);
  AS_CHECK(as_metrics_counter(m, NULL, "h", NULL) == NULL);
  AS_CHECK(as_metrics_gauge(m, "ns:sub_name_2", NULL, NULL) != NULL);
  AS_CHECK(as_metrics_histogram(m, "h1", "h", NULL, unsorted, 2) == NULL);
  AS_CHECK(as_metrics_histogram(m, "h2", "h", NULL, dup, 2) == NULL);
  AS_CHECK(as_metrics_histogram(m, "h3", "h", NULL, inf, 2) == NULL);
  AS_CHECK(as_metrics_histogram(m, "h4", "h", NULL, NULL, 0) != NULL);
  check_render(m,
               "# HELP ns:sub_name_2 \n"
               "# TYPE ns:sub_name_2 gauge\n"
               "ns:sub_name_2{service=\"s\",instance=\"i\"} 0\n"
               "# HELP h4 h\n"
               "# TYPE h4 histogram\n"
               "h4_bucket{service=\"s\",instance=\"i\",le=\"+Inf\"} 0\n"
               "h4_sum{service=\"s\",instance=\"i\"} 0\n"
               "h4_count{service=\"s\",instance=\"i\"} 0\n");
  as_metrics_free(m);
}

AS_TEST(gauge_number_formats) {
  static const struct {
    double v;
    const char *text;
  } rows[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {1e6, "1000000"},
      {-42, "-42"},
      {0.1, "0.1"},
      {-2.5, "-2.5"},
      {1.0 / 3, "0.3333333333333333"},
      {123456.789, "123456.789"},
      {1e300, "1e+300"},
      {5e-324, "5e-324"},
      {1e15, "1e+15"},
      {9007199254740993.0, "9007199254740992"},
      {INFINITY, "+Inf"},
      {-INFINITY, "-Inf"},
      {NAN, "NaN"},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    as_metrics_t *m = as_metrics_new("s", "i");
    as_gauge_t *g = as_metrics_gauge(m, "g", "h", NULL);
    char want[128];

    AS_CHECK(g != NULL);
    as_gauge_set(g, rows[i].v);
    snprintf(want, sizeof want, "# HELP g h\n# TYPE g gauge\ng{service=\"s\",instance=\"i\"} %s\n",
             rows[i].text);
    check_render(m, want);
    as_metrics_free(m);
  }
}

AS_TEST(counter_is_uint64) {
  as_metrics_t *m = as_metrics_new("s", "i");
  as_counter_t *c = as_metrics_counter(m, "c", "h", NULL);

  AS_CHECK(c != NULL);
  as_counter_add(c, UINT64_MAX);
  check_render(m,
               "# HELP c h\n# TYPE c counter\nc{service=\"s\",instance=\"i\"} "
               "18446744073709551615\n");
  as_metrics_free(m);
}

AS_TEST(quantile) {
  as_metrics_t *m = as_metrics_new("s", "i");
  as_histogram_t *h = as_metrics_histogram(m, "h", "h", NULL, LAT_BOUNDS, 4);
  static const struct {
    double q, want;
  } rows[] = {
      {0, 0.005}, {0.1, 0.005},     {0.5, 0.01},   {0.6, 0.1},  {0.8, 0.1},
      {0.9, 1},   {0.95, HUGE_VAL}, {1, HUGE_VAL}, {-1, 0.005}, {2, HUGE_VAL},
  };

  AS_CHECK(h != NULL);
  /* 10 observations: 2 in <=0.005, 3 in (0.005,0.01], 3 in (0.01,0.1], 1 in
   * (0.1,1], 1 above. Cumulative: 2, 5, 8, 9, 10. */
  for (int i = 0; i < 2; i++) as_histogram_observe(h, 0.001);
  for (int i = 0; i < 3; i++) as_histogram_observe(h, 0.01);
  for (int i = 0; i < 3; i++) as_histogram_observe(h, 0.02);
  as_histogram_observe(h, 0.5);
  as_histogram_observe(h, 99);
  as_histogram_observe(h, NAN); /* ignored */
  AS_CHECK_INT_EQ(as_histogram_count(h), 10);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char got[64], want[64];

    snprintf(got, sizeof got, "q=%g -> %g", rows[i].q, as_histogram_quantile(h, rows[i].q));
    snprintf(want, sizeof want, "q=%g -> %g", rows[i].q, rows[i].want);
    AS_CHECK_STR_EQ(got, want);
  }
  as_metrics_free(m);
}

/* NULL is what get-or-create returns on failure; chaining must not crash. */
AS_TEST(null_series_are_no_ops) {
  as_counter_add(NULL, 1);
  as_gauge_set(NULL, 1);
  as_histogram_observe(NULL, 1);
  AS_CHECK_INT_EQ(as_counter_value(NULL), 0);
  AS_CHECK(as_gauge_value(NULL) == 0);
  AS_CHECK_INT_EQ(as_histogram_count(NULL), 0);
  AS_CHECK(isnan(as_histogram_quantile(NULL, 0.5)));
  AS_CHECK(as_metrics_counter(NULL, "c", "h", NULL) == NULL);
}

AS_TEST(label_escape) {
  static const struct {
    const char *in;
    size_t cap;
    int rc;
    const char *out;
  } rows[] = {
      {"plain", 16, 0, "plain"}, {"a\"b\\c\nd", 16, 0, "a\\\"b\\\\c\\nd"},
      {"订单", 16, 0, "订单"},   {"", 1, 0, ""},
      {"abc", 4, 0, "abc"},      {"abc", 3, -ENOSPC, ""},
      {"a\"", 4, 0, "a\\\""},    {"a\"", 3, -ENOSPC, ""},
      {"", 0, -ENOSPC, NULL},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char buf[32];

    memset(buf, '#', sizeof buf);
    AS_CHECK_INT_EQ(as_metrics_label_escape(buf, rows[i].cap, rows[i].in), rows[i].rc);
    AS_CHECK(buf[rows[i].cap] == '#');
    if (rows[i].out != NULL) AS_CHECK_STR_EQ(buf, rows[i].out);
  }
}

/* A service's table: every series created and its pointer stored in the
 * state's field (series of one name with different labels included). */
typedef struct svc_state {
  int before;
  as_counter_t *opened, *by_kind[3];
  as_gauge_t *depth;
  as_histogram_t *latency;
  int after;
} svc_state_t;

static const as_metric_def_t SVC_METRICS[] = {
    AS_COUNTER(svc_state_t, opened, "as_svc_opened_total", NULL, "Opened."),
    AS_COUNTER(svc_state_t, by_kind[1], "as_svc_kind_total", "kind=\"a\"", "By kind."),
    AS_COUNTER(svc_state_t, by_kind[2], "as_svc_kind_total", "kind=\"b\"", "By kind."),
    AS_GAUGE(svc_state_t, depth, "as_svc_depth", NULL, "Depth."),
    AS_HISTOGRAM(svc_state_t, latency, "as_svc_seconds", NULL, "Latency.", LAT_BOUNDS),
};

AS_TEST(register_table) {
  as_metrics_t *m = as_metrics_new("svc", "i-1");
  svc_state_t st = {.before = 7, .after = 9};
  char err[160] = "";

  AS_CHECK(m != NULL);
  AS_CHECK_INT_EQ(as_metrics_register(m, SVC_METRICS, sizeof SVC_METRICS / sizeof SVC_METRICS[0],
                                      &st, err, sizeof err),
                  0);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK(st.opened == as_metrics_counter(m, "as_svc_opened_total", "x", NULL));
  AS_CHECK(st.by_kind[0] == NULL);
  AS_CHECK(st.by_kind[1] == as_metrics_counter(m, "as_svc_kind_total", "x", "kind=\"a\""));
  AS_CHECK(st.by_kind[2] == as_metrics_counter(m, "as_svc_kind_total", "x", "kind=\"b\""));
  AS_CHECK(st.by_kind[1] != st.by_kind[2]);
  AS_CHECK(st.depth == as_metrics_gauge(m, "as_svc_depth", "x", NULL));
  AS_CHECK(st.latency != NULL);
  AS_CHECK_INT_EQ(st.before, 7);
  AS_CHECK_INT_EQ(st.after, 9);
  as_counter_add(st.by_kind[2], 2);
  as_histogram_observe(st.latency, 0.05);
  AS_CHECK_INT_EQ(as_counter_value(st.by_kind[2]), 2);
  AS_CHECK_INT_EQ(as_histogram_count(st.latency), 1);
  as_metrics_free(m);
}

/* A name already registered with another type: -ENOMEM naming the series. */
AS_TEST(register_refuses_a_type_clash) {
  as_metrics_t *m = as_metrics_new("svc", "i-1");
  svc_state_t st = {0};
  char err[160] = "";
  static const as_metric_def_t clash[] = {
      AS_COUNTER(svc_state_t, opened, "as_svc_depth", NULL, "Opened."),
  };

  AS_CHECK(as_metrics_gauge(m, "as_svc_depth", "Depth.", NULL) != NULL);
  AS_CHECK_INT_EQ(as_metrics_register(m, clash, 1, &st, err, sizeof err), -ENOMEM);
  AS_CHECK(strstr(err, "as_svc_depth") != NULL);
  AS_CHECK(st.opened == NULL);
  as_metrics_free(m);
}

/* A counter of seconds (process_cpu_seconds_total) renders as a counter
 * with a fractional value, and its name stays a counter's. */
AS_TEST(float_counter) {
  as_metrics_t *m = as_metrics_new("probe", "h");
  as_gauge_t *cpu;

  AS_CHECK(m != NULL);
  cpu = as_metrics_float_counter(m, "process_cpu_seconds_total", "CPU.", NULL);
  AS_CHECK(cpu != NULL);
  AS_CHECK(as_metrics_gauge(m, "process_cpu_seconds_total", "CPU.", NULL) == NULL);
  AS_CHECK(as_metrics_float_counter(m, "process_cpu_seconds_total", "CPU.", NULL) == cpu);
  as_gauge_set(cpu, 1.5);
  check_render(m,
               "# HELP process_cpu_seconds_total CPU.\n"
               "# TYPE process_cpu_seconds_total counter\n"
               "process_cpu_seconds_total{service=\"probe\",instance=\"h\"} 1.5\n");
  as_metrics_free(m);
}
