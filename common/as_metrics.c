/* as_metrics: a Prometheus registry small enough to read in one sitting.
 * Families are a linked list in creation order, each with its series in a
 * linked list; lookups are linear, which is fine for the < 100 series a
 * worker has and keeps get-or-create free of hashing. Rendering builds the
 * text exposition format (0.0.4) in one growable buffer. Histogram buckets
 * are stored per bucket and summed while rendering, so observe() touches one
 * counter. */
#include "as_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KIND_FCOUNTER: a counter kept as a double (seconds of CPU), stored like a
 * gauge. */
typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_FCOUNTER } kind_t;

typedef struct family family_t;

struct as_counter {
  uint64_t value;
};

struct as_gauge {
  double value;
};

struct as_histogram {
  const family_t *fam; /* for the bounds */
  uint64_t *buckets;   /* nbounds + 1, the last is +Inf; not cumulative */
  double sum;
  uint64_t count;
};

typedef struct series {
  struct series *next;
  char *labels; /* "" when none */
  union {
    struct as_counter c;
    struct as_gauge g;
    struct as_histogram h;
  } u;
} series_t;

struct family {
  family_t *next;
  char *name;
  char *help;
  kind_t kind;
  double *bounds;
  size_t nbounds;
  series_t *series;
  series_t **series_tail;
};

struct as_metrics {
  char *base; /* service="...",instance="..." */
  family_t *families;
  family_t **families_tail;
};

int as_metrics_label_escape(char *buf, size_t cap, const char *value) {
  size_t len = 0;

  for (const char *p = value != NULL ? value : ""; *p != '\0'; p++) {
    const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
    size_t n = esc != NULL ? 2 : 1;

    if (n >= cap - len) {
      if (cap > 0) buf[0] = '\0';
      return -ENOSPC;
    }
    memcpy(buf + len, esc != NULL ? esc : p, n);
    len += n;
  }
  if (cap == 0) return -ENOSPC;
  buf[len] = '\0';
  return 0;
}

/* A malloc'd escaped copy; every byte escapes to at most two, so cap always
 * fits and -ENOSPC cannot happen. */
static char *escape_dup(const char *s) {
  size_t cap = 2 * strlen(s) + 1;
  char *out = malloc(cap);

  if (out != NULL) as_ignore(as_metrics_label_escape(out, cap, s));
  return out;
}

as_metrics_t *as_metrics_new(const char *service, const char *instance) {
  as_metrics_t *m = calloc(1, sizeof *m);
  char *svc = escape_dup(service != NULL ? service : "");
  char *inst = escape_dup(instance != NULL ? instance : "");
  size_t cap;

  if (m == NULL || svc == NULL || inst == NULL) goto fail;
  cap = strlen(svc) + strlen(inst) + sizeof "service=\"\",instance=\"\"";
  if ((m->base = malloc(cap)) == NULL) goto fail;
  snprintf(m->base, cap, "service=\"%s\",instance=\"%s\"", svc, inst);
  m->families_tail = &m->families;
  goto out;
fail:
  free(m);
  m = NULL;
out:
  free(inst);
  free(svc);
  return m;
}

static void series_free(series_t *s) {
  free(s->labels);
  free(s);
}

static void family_free(family_t *f) {
  series_t *next;

  for (series_t *s = f->series; s != NULL; s = next) {
    next = s->next;
    if (f->kind == KIND_HISTOGRAM) free(s->u.h.buckets);
    series_free(s);
  }
  free(f->bounds);
  free(f->help);
  free(f->name);
  free(f);
}

void as_metrics_free(as_metrics_t *m) {
  family_t *next;

  if (m == NULL) return;
  for (family_t *f = m->families; f != NULL; f = next) {
    next = f->next;
    family_free(f);
  }
  free(m->base);
  free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]*: anything else would break the exposition. */
static bool name_ok(const char *name) {
  if (name == NULL || *name == '\0' || (*name >= '0' && *name <= '9')) return false;
  for (const char *p = name; *p != '\0'; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == ':'))
      return false;
  return true;
}

static bool bounds_ok(const double *bounds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) return false;
  return true;
}

static family_t *family_new(const char *name, const char *help, kind_t kind, const double *bounds,
                            size_t nbounds) {
  family_t *f = calloc(1, sizeof *f);

  if (f == NULL) return NULL;
  f->kind = kind;
  f->nbounds = nbounds;
  f->series_tail = &f->series;
  f->name = strdup(name);
  f->help = strdup(help != NULL ? help : "");
  f->bounds = malloc((nbounds > 0 ? nbounds : 1) * sizeof *bounds);
  if (f->name == NULL || f->help == NULL || f->bounds == NULL) {
    family_free(f);
    return NULL;
  }
  if (nbounds > 0) memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
  return f;
}

/* The family called name, created if new; NULL if it exists with another
 * type or other bounds. */
static family_t *family_get(as_metrics_t *m, const char *name, const char *help, kind_t kind,
                            const double *bounds, size_t nbounds) {
  family_t *f;

  for (f = m->families; f != NULL; f = f->next)
    if (strcmp(f->name, name) == 0) break;
  if (f != NULL) {
    bool same = f->kind == kind && f->nbounds == nbounds &&
                (nbounds == 0 || memcmp(f->bounds, bounds, nbounds * sizeof *bounds) == 0);
    return same ? f : NULL;
  }
  if ((f = family_new(name, help, kind, bounds, nbounds)) == NULL) return NULL;
  *m->families_tail = f;
  m->families_tail = &f->next;
  return f;
}

static series_t *series_new(family_t *f, const char *labels) {
  series_t *s = calloc(1, sizeof *s);

  if (s == NULL || (s->labels = strdup(labels)) == NULL) goto fail;
  if (f->kind == KIND_HISTOGRAM) {
    s->u.h.fam = f;
    if ((s->u.h.buckets = calloc(f->nbounds + 1, sizeof *s->u.h.buckets)) == NULL) goto fail;
  }
  *f->series_tail = s;
  f->series_tail = &s->next;
  return s;
fail:
  if (s != NULL) series_free(s);
  return NULL;
}

static series_t *series_get(as_metrics_t *m, const char *name, const char *help, const char *labels,
                            kind_t kind, const double *bounds, size_t nbounds) {
  family_t *f;

  if (m == NULL || !name_ok(name) || (nbounds > 0 && bounds == NULL) || !bounds_ok(bounds, nbounds))
    return NULL;
  if ((f = family_get(m, name, help, kind, bounds, nbounds)) == NULL) return NULL;
  if (labels == NULL) labels = "";
  for (series_t *s = f->series; s != NULL; s = s->next)
    if (strcmp(s->labels, labels) == 0) return s;
  return series_new(f, labels);
}

as_counter_t *as_metrics_counter(as_metrics_t *m, const char *name, const char *help,
                                 const char *labels) {
  series_t *s = series_get(m, name, help, labels, KIND_COUNTER, NULL, 0);

  return s != NULL ? &s->u.c : NULL;
}

as_gauge_t *as_metrics_gauge(as_metrics_t *m, const char *name, const char *help,
                             const char *labels) {
  series_t *s = series_get(m, name, help, labels, KIND_GAUGE, NULL, 0);

  return s != NULL ? &s->u.g : NULL;
}

as_gauge_t *as_metrics_float_counter(as_metrics_t *m, const char *name, const char *help,
                                     const char *labels) {
  series_t *s = series_get(m, name, help, labels, KIND_FCOUNTER, NULL, 0);

  return s != NULL ? &s->u.g : NULL;
}

as_histogram_t *as_metrics_histogram(as_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *bounds, size_t nbounds) {
  series_t *s = series_get(m, name, help, labels, KIND_HISTOGRAM, bounds, nbounds);

  return s != NULL ? &s->u.h : NULL;
}

/* The series functions accept NULL (what get-or-create returns on
 * allocation failure) as a no-op, so that callers can chain
 * as_counter_add(as_metrics_counter(...), 1) without a crash path. */
void as_counter_add(as_counter_t *c, uint64_t n) {
  if (c != NULL) c->value += n;
}

uint64_t as_counter_value(const as_counter_t *c) {
  return c != NULL ? c->value : 0;
}

void as_gauge_set(as_gauge_t *g, double v) {
  if (g != NULL) g->value = v;
}

double as_gauge_value(const as_gauge_t *g) {
  return g != NULL ? g->value : 0;
}

/* NaN is dropped: it would land in +Inf and turn _sum into NaN for good. */
void as_histogram_observe(as_histogram_t *h, double v) {
  size_t i = 0;

  if (h == NULL || isnan(v)) return;
  while (i < h->fam->nbounds && v > h->fam->bounds[i]) i++;
  h->buckets[i]++;
  h->sum += v;
  h->count++;
}

uint64_t as_histogram_count(const as_histogram_t *h) {
  return h != NULL ? h->count : 0;
}

double as_histogram_quantile(const as_histogram_t *h, double q) {
  double want;
  uint64_t cum = 0;

  if (h == NULL) return NAN;
  want = (q > 1 ? 1 : q > 0 ? q : 0) * (double)h->count;
  for (size_t i = 0; i < h->fam->nbounds; i++) {
    cum += h->buckets[i];
    if ((double)cum >= want) return h->fam->bounds[i];
  }
  return HUGE_VAL;
}

/* --- rendering ----------------------------------------------------------- */

typedef struct {
  char *p;
  size_t len;
  size_t cap;
  bool oom;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n) {
  if (b->oom) return;
  if (n + 1 > b->cap - b->len) {
    size_t cap = b->cap * 2 > b->len + n + 1 ? b->cap * 2 : b->len + n + 1;
    char *p = realloc(b->p, cap);

    if (p == NULL) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s) {
  buf_put(b, s, strlen(s));
}

/* HELP text escapes only backslash and newline (the format's rule). */
static void buf_help(buf_t *b, const char *s) {
  for (; *s != '\0'; s++) {
    if (*s == '\\')
      buf_str(b, "\\\\");
    else if (*s == '\n')
      buf_str(b, "\\n");
    else
      buf_put(b, s, 1);
  }
}

/* Shortest text that reads back as the same double; integral values in
 * integer form; Inf and NaN as Prometheus spells them. */
static void fmt_double(char out[32], double v) {
  if (isnan(v)) {
    strcpy(out, "NaN");
  } else if (isinf(v)) {
    strcpy(out, v > 0 ? "+Inf" : "-Inf");
  } else if (fabs(v) < 1e15 && v == (double)(long long)v) {
    snprintf(out, 32, "%lld", (long long)v);
  } else {
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(out, 32, "%.*g", prec, v);
      if (strtod(out, NULL) == v) break;
    }
  }
}

/* name{service="..",instance="..",<labels>,le="x"} value */
static void put_sample(buf_t *b, const as_metrics_t *m, const char *name, const char *suffix,
                       const char *labels, const char *le, const char *value) {
  buf_str(b, name);
  buf_str(b, suffix);
  buf_str(b, "{");
  buf_str(b, m->base);
  if (*labels != '\0') {
    buf_str(b, ",");
    buf_str(b, labels);
  }
  if (le != NULL) {
    buf_str(b, ",le=\"");
    buf_str(b, le);
    buf_str(b, "\"");
  }
  buf_str(b, "} ");
  buf_str(b, value);
  buf_str(b, "\n");
}

static void put_histogram(buf_t *b, const as_metrics_t *m, const family_t *f, const series_t *s) {
  char le[32], val[32];
  uint64_t cum = 0;

  for (size_t i = 0; i <= f->nbounds; i++) {
    cum += s->u.h.buckets[i];
    fmt_double(le, i < f->nbounds ? f->bounds[i] : HUGE_VAL);
    snprintf(val, sizeof val, "%llu", (unsigned long long)cum);
    put_sample(b, m, f->name, "_bucket", s->labels, le, val);
  }
  fmt_double(val, s->u.h.sum);
  put_sample(b, m, f->name, "_sum", s->labels, NULL, val);
  snprintf(val, sizeof val, "%llu", (unsigned long long)s->u.h.count);
  put_sample(b, m, f->name, "_count", s->labels, NULL, val);
}

static void put_family(buf_t *b, const as_metrics_t *m, const family_t *f) {
  static const char *const types[] = {"counter", "gauge", "histogram", "counter"};
  char val[32];

  buf_str(b, "# HELP ");
  buf_str(b, f->name);
  buf_str(b, " ");
  buf_help(b, f->help);
  buf_str(b, "\n# TYPE ");
  buf_str(b, f->name);
  buf_str(b, " ");
  buf_str(b, types[f->kind]);
  buf_str(b, "\n");
  for (const series_t *s = f->series; s != NULL; s = s->next) {
    if (f->kind == KIND_HISTOGRAM) {
      put_histogram(b, m, f, s);
      continue;
    }
    if (f->kind == KIND_COUNTER)
      snprintf(val, sizeof val, "%llu", (unsigned long long)s->u.c.value);
    else
      fmt_double(val, s->u.g.value);
    put_sample(b, m, f->name, "", s->labels, NULL, val);
  }
}

char *as_metrics_render(const as_metrics_t *m, size_t *len) {
  buf_t b = {.p = NULL, .len = 0, .cap = 0, .oom = false};

  buf_put(&b, "", 0); /* an empty registry still renders as "" */
  for (const family_t *f = m->families; f != NULL; f = f->next) put_family(&b, m, f);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (len != NULL) *len = b.len;
  return b.p;
}

int as_metrics_register(as_metrics_t *m, const as_metric_def_t *defs, size_t n, void *state,
                        char *err, size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    const as_metric_def_t *d = &defs[i];
    void *p = NULL;
    /* Each pointer is copied as the type its field has (see the row macros). */
    if (d->type == AS_METRIC_COUNTER) {
      as_counter_t *c = as_metrics_counter(m, d->name, d->help, d->labels);
      memcpy((char *)state + d->slot, &c, sizeof c);
      p = c;
    } else if (d->type == AS_METRIC_GAUGE) {
      as_gauge_t *g = as_metrics_gauge(m, d->name, d->help, d->labels);
      memcpy((char *)state + d->slot, &g, sizeof g);
      p = g;
    } else {
      as_histogram_t *h =
          as_metrics_histogram(m, d->name, d->help, d->labels, d->bounds, d->nbounds);
      memcpy((char *)state + d->slot, &h, sizeof h);
      p = h;
    }
    if (!p) {
      snprintf(err, errlen, "metric %s {%s}: out of memory or registered with another type",
               d->name, d->labels ? d->labels : "");
      return -ENOMEM;
    }
  }
  return 0;
}
