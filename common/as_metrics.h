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

/* Renders the whole registry, families in creation order, each with one
 * # HELP and # TYPE line. Returns a malloc'd NUL-terminated buffer (free with
 * free) and its length in *len, or NULL on allocation failure. */
char *as_metrics_render(const as_metrics_t *m, size_t *len);

/* Escapes a label value (backslash, double quote, newline) into buf;
 * returns 0 or -ENOSPC. */
AS_MUST_CHECK int as_metrics_label_escape(char *buf, size_t cap, const char *value);

#endif
