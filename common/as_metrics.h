/* as_metrics: a small Prometheus registry (counters, gauges, histograms) and
 * its text exposition format (version 0.0.4).
 *
 * Everything runs on the loop thread, so nothing is atomic. Each series is a
 * metric name plus an optional label string (e.g. reason="decode_failed");
 * the registry adds service="..." and instance="..." to every series.
 *
 * Ownership: the registry owns every series it returns; the pointers stay
 * valid until as_metrics_free. Name, help and label strings are copied. */
#ifndef AS_METRICS_H
#define AS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "as_err.h"

typedef struct as_metrics as_metrics_t;
typedef struct as_counter as_counter_t;
typedef struct as_gauge as_gauge_t;
typedef struct as_histogram as_histogram_t;

/* Returns NULL on allocation failure. */
as_metrics_t *as_metrics_new(const char *service, const char *instance);
void as_metrics_free(as_metrics_t *m); /* NULL is a no-op */

/* Get-or-create. labels is NULL or a Prometheus label list without braces,
 * e.g. "reason=\"decode_failed\"" (the caller escapes label values with
 * as_metrics_label_escape). Returns NULL on allocation failure or if the
 * name already exists with another type. */
as_counter_t *as_metrics_counter(as_metrics_t *m, const char *name, const char *help,
                                 const char *labels);
as_gauge_t *as_metrics_gauge(as_metrics_t *m, const char *name, const char *help,
                             const char *labels);
/* A counter whose value is not a whole number (process_cpu_seconds_total):
 * set with as_gauge_set to the running total, rendered as a counter. */
as_gauge_t *as_metrics_float_counter(as_metrics_t *m, const char *name, const char *help,
                                     const char *labels);
/* bounds: ascending upper bounds (le) of the buckets, +Inf added implicitly;
 * copied. All series of one name must use the same bounds. */
as_histogram_t *as_metrics_histogram(as_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *bounds, size_t nbounds);

void as_counter_add(as_counter_t *c, uint64_t n);
uint64_t as_counter_value(const as_counter_t *c);
void as_gauge_set(as_gauge_t *g, double v);
double as_gauge_value(const as_gauge_t *g);
void as_histogram_observe(as_histogram_t *h, double v);
uint64_t as_histogram_count(const as_histogram_t *h);
/* The smallest bucket bound b with count(le=b) >= q * count (q in 0..1), the
 * usual way to read a percentile off a histogram; +Inf as HUGE_VAL. */
double as_histogram_quantile(const as_histogram_t *h, double q);

/* A service's metrics as a table: one row per series, naming the field of
 * the service's state that holds its pointer. as_metrics_register creates
 * every series and stores each pointer in its field, so the service's code
 * only counts. The row macros check at compile time that the field has the
 * series' pointer type. */
typedef enum { AS_METRIC_COUNTER, AS_METRIC_GAUGE, AS_METRIC_HISTOGRAM } as_metric_type_t;

typedef struct as_metric_def {
  as_metric_type_t type;
  const char *name, *help, *labels; /* labels may be NULL */
  size_t slot;                      /* offset of the pointer field in the state */
  const double *bounds;             /* histograms: bucket bounds (static) */
  size_t nbounds;
} as_metric_def_t;

#define AS_METRIC_SLOT_(stype, field, ptype) \
  (offsetof(stype, field) + 0 * sizeof((ptype **){&((stype *)0)->field}))
#define AS_COUNTER(stype, field, name, labels, help)                                          \
  {                                                                                           \
    AS_METRIC_COUNTER, (name), (help), (labels), AS_METRIC_SLOT_(stype, field, as_counter_t), \
        NULL, 0                                                                               \
  }
#define AS_GAUGE(stype, field, name, labels, help) \
  { AS_METRIC_GAUGE, (name), (help), (labels), AS_METRIC_SLOT_(stype, field, as_gauge_t), NULL, 0 }
#define AS_HISTOGRAM(stype, field, name, labels, help, bounds)                                    \
  {                                                                                               \
    AS_METRIC_HISTOGRAM, (name), (help), (labels), AS_METRIC_SLOT_(stype, field, as_histogram_t), \
        (bounds), sizeof(bounds) / sizeof((bounds)[0])                                            \
  }

/* Creates defs[0..n) in m and stores each pointer at state + slot.
 * Returns 0, or -ENOMEM (allocation failure, or a name registered before
 * with another type) naming the series in err. */
int as_metrics_register(as_metrics_t *m, const as_metric_def_t *defs, size_t n, void *state,
                        char *err, size_t errlen);

/* Renders the whole registry, families in creation order, each with one
 * # HELP and # TYPE line. Returns a malloc'd NUL-terminated buffer (free with
 * free) and its length in *len, or NULL on allocation failure. */
char *as_metrics_render(const as_metrics_t *m, size_t *len);

/* Escapes a label value (backslash, double quote, newline) into buf;
 * returns 0 or -ENOSPC. */
AS_MUST_CHECK int as_metrics_label_escape(char *buf, size_t cap, const char *value);

#endif
