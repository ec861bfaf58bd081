/* review_policy: the review worker's return policy, read from a small
 * INI-like text file and compiled into an immutable review_policy_t. The
 * format is a table of keys (name, type, field, bounds, the sections that
 * may set it), so adding a rule is one row here plus its use in
 * review_decide.c. A file is refused whole, with "line N: what is wrong",
 * when a line does not parse or when the sections contradict each other:
 * the worker then keeps the policy it had, which is why nothing here is
 * lenient. Keys a file's [default] leaves out take the built-in values
 * (review_policy_default, parsed first), so a small file is a whole policy.
 * This file also merges the sections for one case (review_policy_rules):
 * default, then the strictest of the lines' categories, then the merchant. */
#include "review_policy.h"
#include "as_docfile.h"

#include "as_enum.h"
#include "as_err.h"
#include "as_money.h"
#include "proto/common.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The policy compiled in; README shows the same text. */
const char review_policy_default[] =
    "# aftersales review policy: the built-in default.\n"
    "# Amounts are integers in minor units (fen, cents, yen) per ISO 4217 code.\n"
    "# Reasons are the proto's Reason names without REASON_.\n"
    "version = builtin-1\n"
    "\n"
    "[default]\n"
    "# Change of mind, size, colour, other: days from delivery, goods unused.\n"
    "no_reason_days = 7\n"
    "# Objective problems (seller_fault): days from delivery.\n"
    "claim_days = 30\n"
    "# Past claim_days, an objective problem gets a goodwill offer for this\n"
    "# many more days instead of a rejection.\n"
    "goodwill_days = 30\n"
    "seller_fault = QUALITY_DEFECT DAMAGED_IN_TRANSIT NOT_AS_DESCRIBED MISSING_PARTS\n"
    "# These need a photo or video; without one the case waits evidence_days.\n"
    "evidence_required = QUALITY_DEFECT DAMAGED_IN_TRANSIT NOT_AS_DESCRIBED\n"
    "evidence_days = 7\n"
    "# Who pays the return shipping, per reason.\n"
    "shipping.SIZE_MISMATCH = buyer\n"
    "shipping.COLOUR_DIFFERS = buyer\n"
    "shipping.QUALITY_DEFECT = seller\n"
    "shipping.DAMAGED_IN_TRANSIT = seller\n"
    "shipping.NOT_AS_DESCRIBED = seller\n"
    "shipping.MISSING_PARTS = seller\n"
    "shipping.CHANGED_MIND = buyer\n"
    "shipping.NOT_RECEIVED = seller\n"
    "shipping.DELIVERED_NOT_RECEIVED = seller\n"
    "shipping.TRACKING_STALLED = seller\n"
    "shipping.OTHER = buyer\n"
    "# An approved seller-fault refund also returns the order's shipping fee.\n"
    "refund_shipping_on_seller_fault = yes\n"
    "# When such a refund covers only part of the order (some lines or units):\n"
    "# whole (the fee's whole allocation), pro_rata (its share by the refunded\n"
    "# items' paid amount over the order's) or none; the refund that completes\n"
    "# the order always returns what is left of the fee.\n"
    "shipping_refund = pro_rata\n"
    "# Claimed amount strictly above: a person decides.\n"
    "manual_review_above = CNY:200000 USD:30000 EUR:30000 GBP:25000 JPY:4000000\n"
    "# Claimed amount at or below: refunded without sending the goods back.\n"
    "refund_only_max = CNY:1000 USD:300 EUR:300 GBP:300 JPY:50000\n"
    "# Days the buyer has to ship the return after approval.\n"
    "return_days = 7\n"
    "# Abuse signals, sent to manual review: this many earlier claims on the\n"
    "# order, or more cases than max_return_rate_pct of the buyer's orders\n"
    "# (counted from min_orders_for_rate orders on).\n"
    "max_claims_per_order = 2\n"
    "max_return_rate_pct = 50\n"
    "min_orders_for_rate = 5\n"
    "# Goodwill: a severe problem from a buyer of goodwill_min_tenure_days\n"
    "# standing is offered goodwill_percent back; anything else a coupon worth\n"
    "# coupon_percent of the claim. The buyer has offer_hours to answer.\n"
    "goodwill_percent = 50\n"
    "coupon_percent = 20\n"
    "goodwill_min_tenure_days = 90\n"
    "severe = QUALITY_DEFECT DAMAGED_IN_TRANSIT\n"
    "offer_hours = 72\n"
    "return_methods = PICKUP DROP_OFF EXPRESS\n"
    "default_return_method = DROP_OFF\n"
    "packaging = original packaging, tags attached\n"
    "# Quality inspection of the evidence: a claim of one of qc_case_types\n"
    "# for one of qc_reasons that is also a seller_fault reason (QC confirms\n"
    "# or refutes a defect), delivered, inside claim_days and with a photo or\n"
    "# video, goes to a QC agent (InspectionRequested; the case waits in\n"
    "# INSPECTING) instead of being decided by rule; a confirmed defect\n"
    "# refunds the units QC judged. A [category] or [merchant] with\n"
    "# qc_evidence = no keeps its claims out.\n"
    "qc_case_types = REFUND_ONLY\n"
    "qc_reasons = QUALITY_DEFECT DAMAGED_IN_TRANSIT NOT_AS_DESCRIBED\n"
    "qc_evidence = yes\n"
    "# Proactive outreach: the buyers of a lot named by a supplier quality\n"
    "# alert who have not complained are offered, unasked, an exchange or\n"
    "# proactive_percent of what the line was paid (partial_refund); they have\n"
    "# proactive_offer_hours to answer.\n"
    "proactive_offer = partial_refund\n"
    "proactive_percent = 20\n"
    "proactive_offer_hours = 168\n"
    "# Logistics outcomes (issue 13): a case whose parcel the carrier\n"
    "# redelivers is RESOLVED and closes this many days later, unless the\n"
    "# redelivered parcel's delivery closes it first.\n"
    "redelivery_close_days = 7\n"
    "\n"
    "# No no-reason returns; quality claims still apply.\n"
    "[category fresh_produce]\n"
    "non_returnable = yes\n"
    "\n"
    "[category custom_made]\n"
    "non_returnable = yes\n"
    "\n"
    "[category electronics]\n"
    "packaging = anti-static bag inside the original box, all accessories\n"
    "\n"
    "# Return addresses by delivery region; [region *] is the fallback.\n"
    "[region CN-EAST]\n"
    "warehouse = WH-CN-SH-01\n"
    "address = 上海市青浦区华新镇华志路 88 号 售后退货仓\n"
    "\n"
    "[region *]\n"
    "warehouse = WH-CN-HZ-01\n"
    "address = 杭州市余杭区文一西路 969 号 售后退货中心\n";

enum { MAX_NAME = 64, MAX_TEXT = 255, MAX_ID = 63 };

/* Section kinds; also the bits of a key's allowed sections. */
enum { SEC_TOP = 1, SEC_DEFAULT = 2, SEC_CATEGORY = 4, SEC_MERCHANT = 8, SEC_REGION = 16 };
#define DCM (SEC_DEFAULT | SEC_CATEGORY | SEC_MERCHANT)
#define DM (SEC_DEFAULT | SEC_MERCHANT)

typedef enum {
  K_INT,
  K_BOOL,
  K_REASONS,
  K_PAYER,
  K_MONEY,
  K_METHODS,
  K_METHOD,
  K_TEXT,
  K_ID,
  K_SHIPREF,
  K_CASETYPES,
  K_OFFER
} key_type_t;

typedef struct {
  const char *name;
  key_type_t type;
  size_t offset;    /* into review_rules_t */
  int64_t min, max; /* K_INT: bounds; K_TEXT, K_ID: max bytes */
  unsigned scopes;
} key_def_t;

#define R(f) offsetof(review_rules_t, f)
#define SHIP(r)                                                                                    \
  {                                                                                                \
    "shipping." #r, K_PAYER, R(shipping) + sizeof(int) * AFTERSALES__V1__REASON__REASON_##r, 0, 0, \
        DM                                                                                         \
  }

/* Keys a [category] may set are the ones that can be combined over several
 * categories (the smallest number wins); a [merchant] may also say who
 * pays shipping, since free returns are a merchant's commercial choice. */
static const key_def_t KEYS[] = {
    {"no_reason_days", K_INT, R(no_reason_days), 0, 365, DCM},
    {"claim_days", K_INT, R(claim_days), 0, 3650, DCM},
    {"goodwill_days", K_INT, R(goodwill_days), 0, 3650, DCM},
    {"evidence_days", K_INT, R(evidence_days), 1, 365, DCM},
    {"return_days", K_INT, R(return_days), 1, 365, DCM},
    {"non_returnable", K_BOOL, R(non_returnable), 0, 0, SEC_CATEGORY | SEC_MERCHANT},
    {"packaging", K_TEXT, R(packaging), 0, MAX_TEXT, DCM},
    {"manual_review_above", K_MONEY, R(manual_review_above), 0, 0, DCM},
    {"refund_only_max", K_MONEY, R(refund_only_max), 0, 0, DCM},
    {"refund_shipping_on_seller_fault", K_BOOL, R(refund_shipping_on_seller_fault), 0, 0, DM},
    {"shipping_refund", K_SHIPREF, R(shipping_refund), 0, 0, DM},
    {"evidence_required", K_REASONS, R(evidence_required), 0, 0, SEC_DEFAULT},
    {"seller_fault", K_REASONS, R(seller_fault), 0, 0, SEC_DEFAULT},
    {"severe", K_REASONS, R(severe), 0, 0, SEC_DEFAULT},
    {"max_claims_per_order", K_INT, R(max_claims_per_order), 1, 1000, SEC_DEFAULT},
    {"max_return_rate_pct", K_INT, R(max_return_rate_pct), 1, 100, SEC_DEFAULT},
    {"min_orders_for_rate", K_INT, R(min_orders_for_rate), 0, 1000000, SEC_DEFAULT},
    {"goodwill_percent", K_INT, R(goodwill_percent), 1, 100, SEC_DEFAULT},
    {"coupon_percent", K_INT, R(coupon_percent), 1, 100, SEC_DEFAULT},
    {"goodwill_min_tenure_days", K_INT, R(goodwill_min_tenure_days), 0, 36500, SEC_DEFAULT},
    {"offer_hours", K_INT, R(offer_hours), 1, 8760, SEC_DEFAULT},
    {"return_methods", K_METHODS, R(return_methods), 0, 0, SEC_DEFAULT},
    {"default_return_method", K_METHOD, R(default_return_method), 0, 0, SEC_DEFAULT},
    {"warehouse", K_ID, R(warehouse), 0, MAX_ID, SEC_REGION},
    {"address", K_TEXT, R(address), 0, MAX_TEXT, SEC_REGION},
    SHIP(SIZE_MISMATCH),
    SHIP(COLOUR_DIFFERS),
    SHIP(QUALITY_DEFECT),
    SHIP(DAMAGED_IN_TRANSIT),
    SHIP(NOT_AS_DESCRIBED),
    SHIP(MISSING_PARTS),
    SHIP(CHANGED_MIND),
    SHIP(NOT_RECEIVED),
    SHIP(DELIVERED_NOT_RECEIVED),
    SHIP(TRACKING_STALLED),
    SHIP(OTHER),
    /* quality inspection of the evidence (issue 12) */
    {"qc_case_types", K_CASETYPES, R(qc_case_types), 0, 0, SEC_DEFAULT},
    {"qc_reasons", K_REASONS, R(qc_reasons), 0, 0, SEC_DEFAULT},
    {"qc_evidence", K_BOOL, R(qc_evidence), 0, 0, DCM},
    /* proactive outreach (review_proactive.c) */
    {"proactive_offer", K_OFFER, R(proactive_offer), 0, 0, DM},
    {"proactive_percent", K_INT, R(proactive_percent), 1, 100, DM},
    {"proactive_offer_hours", K_INT, R(proactive_offer_hours), 1, 8760, DM},
    /* logistics outcomes (review_logistics.c) */
    {"redelivery_close_days", K_INT, R(redelivery_close_days), 1, 365, DM},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])
_Static_assert(NKEYS <= 64, "review_rules_t.set is a 64-bit mask");
_Static_assert((int)AFTERSALES__V1__REASON__REASON_OTHER < (int)REVIEW_NREASONS, "REVIEW_NREASONS");

typedef struct {
  const char *name;
  int value;
} name_value_t;

/* Reasons, return methods and payers are the proto's enums, by their short
 * names (as_enum.h); payers are written in lower case. */
#define REASONS (&aftersales__v1__reason__descriptor)
#define METHODS (&aftersales__v1__return_method__descriptor)
#define PAYERS (&aftersales__v1__payer_party__descriptor)
#define CASETYPES (&aftersales__v1__case_type__descriptor)
static const name_value_t SHIPREFS[] = {
    {"whole", REVIEW_SHIP_WHOLE},
    {"pro_rata", REVIEW_SHIP_PRO_RATA},
    {"none", REVIEW_SHIP_NONE},
    {NULL, 0},
};
/* What a proactive offer is: the Outcome values. */
static const name_value_t OFFERS[] = {
    {"partial_refund", AFTERSALES__V1__OUTCOME__OUTCOME_PARTIAL_REFUND},
    {"exchange", AFTERSALES__V1__OUTCOME__OUTCOME_EXCHANGE},
    {NULL, 0},
};
static const name_value_t SECTIONS[] = {
    {"default", SEC_DEFAULT},
    {"category", SEC_CATEGORY},
    {"merchant", SEC_MERCHANT},
    {"region", SEC_REGION},
    {NULL, 0},
};

typedef struct {
  unsigned kind;
  int line; /* of the header; 0 for an implicit [default] */
  char name[MAX_NAME + 1];
  review_rules_t r;
} section_t;

/* sec[0] is [default]; after parsing the others are sorted by (kind, name)
 * so a case's sections are found by binary search. */
struct review_policy {
  char version[MAX_NAME + 1];
  section_t *sec;
  size_t n, cap;
};

typedef struct {
  review_policy_t *p;
  size_t cur; /* section index; SIZE_MAX before the first section */
  int line;
  bool saw_default;
  char *err;
  size_t errlen;
} parser_t;

/* "line N: " + the message; returns -1 so callers can `return fail(...)`. */
static int fail(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser_t *ps, const char *fmt, ...) {
  char msg[384];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  as_err_set(ps->err, ps->errlen, "line %d: %s", ps->line, msg);
  return -1;
}

static int lookup(const name_value_t *t, const char *name) {
  for (; t->name != NULL; t++)
    if (strcmp(t->name, name) == 0) return t->value;
  return -1;
}

/* The value of a proto enum's short name, or -1. */
static int enum_lookup(const ProtobufCEnumDescriptor *d, const char *name, bool lower) {
  int v;
  return as_enum_value(d, name, strlen(name), lower, &v) == 0 ? v : -1;
}

static const char *name_of(const name_value_t *t, int value) {
  for (; t->name != NULL; t++)
    if (t->value == value) return t->name;
  return "?";
}

static const key_def_t *find_key(const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
  return NULL;
}

/* Decimal digits only: no sign, no spaces, no hex, no overflow. */
static bool parse_uint(const char *s, int64_t *out) {
  int64_t v = 0;

  if (*s == '\0') return false;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9') return false;
    if (v > (INT64_MAX - (*s - '0')) / 10) return false;
    v = v * 10 + (*s - '0');
  }
  *out = v;
  return true;
}

static bool printable_ascii(const char *s, bool spaces) {
  for (; *s != '\0'; s++)
    if (*s < 0x20 || *s > 0x7e || (!spaces && *s == ' ')) return false;
  return true;
}

bool review_money_find(const review_money_list_t *l, const char *currency, int64_t *minor) {
  if (currency == NULL) return false;
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i].currency, currency) == 0) {
      *minor = l->v[i].minor;
      return true;
    }
  return false;
}

/* Sets currency's figure in l, adding it when new; false when l is full. */
static bool money_put(review_money_list_t *l, const char *currency, int64_t minor) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i].currency, currency) == 0) {
      l->v[i].minor = minor;
      return true;
    }
  if (l->n == REVIEW_MAX_CURRENCIES) return false;
  memcpy(l->v[l->n].currency, currency, 4);
  l->v[l->n++].minor = minor;
  return true;
}

/* ---- value parsers, one per key type; value is trimmed and mutable ---- */

static int parse_int_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  int64_t n;

  if (!parse_uint(v, &n) || n < k->min || n > k->max)
    return fail(ps, "%s must be an integer from %lld to %lld, not \"%s\"", k->name,
                (long long)k->min, (long long)k->max, v);
  *(int64_t *)field = n;
  return 0;
}

static int parse_bool_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
    return fail(ps, "%s must be yes or no, not \"%s\"", k->name, v);
  *(bool *)field = strcmp(v, "yes") == 0;
  return 0;
}

/* A space-separated list of the names of enum d, as a bit mask by value. */
static int parse_set(parser_t *ps, const key_def_t *k, char *v, const ProtobufCEnumDescriptor *d,
                     const char *what, uint32_t *out) {
  uint32_t set = 0;
  char *save = NULL;

  for (char *tok = strtok_r(v, " \t", &save); tok != NULL; tok = strtok_r(NULL, " \t", &save)) {
    int val = enum_lookup(d, tok, false);
    if (val < 0 || val >= 32) return fail(ps, "%s: unknown %s \"%s\"", k->name, what, tok);
    if (set & (1u << val)) return fail(ps, "%s: \"%s\" is listed twice", k->name, tok);
    set |= 1u << val;
  }
  *out = set;
  return 0;
}

static int parse_reasons_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  return parse_set(ps, k, v, REASONS, "reason", field);
}

static int parse_casetypes_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  return parse_set(ps, k, v, CASETYPES, "case type", field);
}

static int parse_methods_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  if (parse_set(ps, k, v, METHODS, "return method", field) < 0) return -1;
  if (*(uint32_t *)field == 0) return fail(ps, "%s needs at least one method", k->name);
  return 0;
}

/* One name v, already looked up as val (-1: not a name of what). */
static int parse_one(parser_t *ps, const key_def_t *k, const char *v, int val, const char *what,
                     void *field) {
  if (val < 0) return fail(ps, "%s: unknown %s \"%s\"", k->name, what, v);
  *(int *)field = val;
  return 0;
}

static int parse_payer_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  return parse_one(ps, k, v, enum_lookup(PAYERS, v, true), "payer (buyer, seller or platform)",
                   field);
}

static int parse_method_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  return parse_one(ps, k, v, enum_lookup(METHODS, v, false), "return method", field);
}

static int parse_shipref_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  return parse_one(ps, k, v, lookup(SHIPREFS, v), "shipping refund (whole, pro_rata or none)",
                   field);
}

/* "CNY:200000 USD:30000": ISO 4217 code, colon, non-negative minor units.
 * The list replaces per currency: a section sets the currencies it names
 * and inherits the others. */
static int parse_money_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  review_money_list_t got = {0}, *l = field;
  char *save = NULL;
  int64_t minor, dummy;

  for (char *tok = strtok_r(v, " \t", &save); tok != NULL; tok = strtok_r(NULL, " \t", &save)) {
    char code[4] = "";
    if (strlen(tok) > 4 && tok[3] == ':') memcpy(code, tok, 3);
    if (!as_money_currency_ok(code) || !parse_uint(tok + 4, &minor))
      return fail(ps, "%s: \"%s\" is not CUR:amount (3 upper-case letters, an integer >= 0)",
                  k->name, tok);
    tok[3] = '\0';
    if (review_money_find(&got, tok, &dummy))
      return fail(ps, "%s: currency %s is listed twice", k->name, tok);
    if (!money_put(&got, tok, minor))
      return fail(ps, "%s: more than %d currencies", k->name, REVIEW_MAX_CURRENCIES);
  }
  for (size_t i = 0; i < got.n; i++)
    if (!money_put(l, got.v[i].currency, got.v[i].minor))
      return fail(ps, "%s: more than %d currencies", k->name, REVIEW_MAX_CURRENCIES);
  return 0;
}

static int store_text(parser_t *ps, const key_def_t *k, const char *v, void *field) {
  char *copy;

  if (*v == '\0' || strlen(v) > (size_t)k->max)
    return fail(ps, "%s must be 1 to %lld bytes", k->name, (long long)k->max);
  copy = strdup(v);
  if (copy == NULL) return fail(ps, "out of memory");
  free(*(char **)field); /* [default] starts with the built-in's copy */
  *(char **)field = copy;
  return 0;
}

static int parse_text_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  return store_text(ps, k, v, field);
}

static int parse_id_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  if (!printable_ascii(v, false))
    return fail(ps, "%s must be printable ASCII without spaces", k->name);
  return store_text(ps, k, v, field);
}

static int parse_offer_value(parser_t *ps, const key_def_t *k, char *v, void *field) {
  return parse_one(ps, k, v, lookup(OFFERS, v), "offer (partial_refund or exchange)", field);
}

typedef int (*value_parser_t)(parser_t *ps, const key_def_t *k, char *v, void *field);
static const value_parser_t PARSERS[] = {
    [K_INT] = parse_int_value,
    [K_BOOL] = parse_bool_value,
    [K_REASONS] = parse_reasons_value,
    [K_PAYER] = parse_payer_value,
    [K_MONEY] = parse_money_value,
    [K_METHODS] = parse_methods_value,
    [K_METHOD] = parse_method_value,
    [K_TEXT] = parse_text_value,
    [K_ID] = parse_id_value,
    [K_SHIPREF] = parse_shipref_value,
    [K_CASETYPES] = parse_casetypes_value,
    [K_OFFER] = parse_offer_value,
};

/* Bytes of a field of the type, for the table-driven merge. */
static size_t field_size(key_type_t t) {
  switch (t) {
    case K_INT:
      return sizeof(int64_t);
    case K_BOOL:
      return sizeof(bool);
    case K_REASONS:
    case K_METHODS:
    case K_CASETYPES:
      return sizeof(uint32_t);
    case K_PAYER:
    case K_METHOD:
    case K_SHIPREF:
    case K_OFFER:
      return sizeof(int);
    case K_TEXT:
    case K_ID:
      return sizeof(char *);
    case K_MONEY:
      break;
  }
  return sizeof(review_money_list_t);
}

/* Copies onto dst the keys src set itself (strings borrowed), recording
 * them in dst->set. Money lists merge per currency. */
static void rules_merge(review_rules_t *dst, const review_rules_t *src) {
  for (size_t i = 0; i < NKEYS; i++) {
    const key_def_t *k = &KEYS[i];
    const char *from = (const char *)src + k->offset;
    char *to = (char *)dst + k->offset;

    if (!(src->set & (UINT64_C(1) << i))) continue;
    if (k->type == K_MONEY) {
      const review_money_list_t *l = (const review_money_list_t *)from;
      for (size_t j = 0; j < l->n; j++)
        (void)money_put((review_money_list_t *)to, l->v[j].currency, l->v[j].minor);
    } else {
      memcpy(to, from, field_size(k->type));
    }
    dst->set |= UINT64_C(1) << i;
  }
}

static void rules_free(review_rules_t *r) {
  free(r->packaging);
  free(r->warehouse);
  free(r->address);
}

/* ---- sections and lines ---- */

static section_t *section_add(parser_t *ps, unsigned kind, const char *name) {
  review_policy_t *p = ps->p;

  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    section_t *sec = realloc(p->sec, cap * sizeof *sec);
    if (sec == NULL) return NULL;
    p->sec = sec;
    p->cap = cap;
  }
  section_t *s = &p->sec[p->n++];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->line = ps->line;
  snprintf(s->name, sizeof s->name, "%s", name);
  return s;
}

/* "[default]", "[category NAME]", "[merchant ID]", "[region CODE]". */
static int handle_section(parser_t *ps, char *s) {
  size_t len = strlen(s);
  char *kind, *name, *save = NULL;
  int k;

  if (len < 2 || s[len - 1] != ']') return fail(ps, "section header must end with ]");
  s[len - 1] = '\0';
  kind = strtok_r(s + 1, " \t", &save);
  name = strtok_r(NULL, " \t", &save);
  k = kind ? lookup(SECTIONS, kind) : -1;
  if (k < 0) return fail(ps, "unknown section [%s]", kind ? kind : "");
  if (strtok_r(NULL, " \t", &save) != NULL)
    return fail(ps, "section [%s] takes one name without spaces", kind);
  if (k == SEC_DEFAULT) {
    if (name != NULL) return fail(ps, "[default] takes no name");
    if (ps->saw_default) return fail(ps, "duplicate section [default]");
    ps->saw_default = true;
    ps->p->sec[0].line = ps->line;
    ps->cur = 0;
    return 0;
  }
  if (name == NULL || strlen(name) > MAX_NAME || !printable_ascii(name, false))
    return fail(ps, "[%s] needs a name of 1 to %d printable ASCII characters", kind, MAX_NAME);
  if (section_add(ps, (unsigned)k, name) == NULL) return fail(ps, "out of memory");
  ps->cur = ps->p->n - 1;
  return 0;
}

static int handle_version(parser_t *ps, const char *v) {
  if (ps->cur != SIZE_MAX) return fail(ps, "version belongs before the first section");
  if (ps->p->version[0] != '\0') return fail(ps, "duplicate key \"version\"");
  if (*v == '\0' || strlen(v) > MAX_NAME || !printable_ascii(v, true))
    return fail(ps, "version must be 1 to %d printable ASCII characters", MAX_NAME);
  memcpy(ps->p->version, v, strlen(v) + 1);
  return 0;
}

static char *trim(char *s) {
  char *end;

  while (*s == ' ' || *s == '\t') s++;
  end = s + strlen(s);
  while (end > s && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
  return s;
}

static int handle_key(parser_t *ps, char *key, char *v) {
  const key_def_t *k;
  section_t *s;

  if (strcmp(key, "version") == 0) return handle_version(ps, v);
  k = find_key(key);
  if (k == NULL) return fail(ps, "unknown key \"%s\"", key);
  if (ps->cur == SIZE_MAX) return fail(ps, "key \"%s\" outside a section", key);
  s = &ps->p->sec[ps->cur];
  if (!(k->scopes & s->kind))
    return fail(ps, "key \"%s\" is not allowed in [%s]", key, name_of(SECTIONS, (int)s->kind));
  uint64_t bit = UINT64_C(1) << (k - KEYS);
  if (s->r.set & bit) return fail(ps, "duplicate key \"%s\"", key);
  s->r.set |= bit;
  if (k->type == K_MONEY) /* a [default] list replaces the built-in one */
    memset((char *)&s->r + k->offset, 0, sizeof(review_money_list_t));
  return PARSERS[k->type](ps, k, v, (char *)&s->r + k->offset);
}

/* Valid UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_valid(const unsigned char *s) {
  while (*s != '\0') {
    uint32_t cp, min;
    size_t n;

    if (*s < 0x80) {
      s++;
      continue;
    }
    if ((*s & 0xE0) == 0xC0)
      n = 1, cp = *s & 0x1F, min = 0x80;
    else if ((*s & 0xF0) == 0xE0)
      n = 2, cp = *s & 0x0F, min = 0x800;
    else if ((*s & 0xF8) == 0xF0)
      n = 3, cp = *s & 0x07, min = 0x10000;
    else
      return false;
    for (size_t i = 1; i <= n; i++) {
      if ((s[i] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    s += n + 1;
  }
  return true;
}

static int handle_line(parser_t *ps, char *raw) {
  size_t len = strlen(raw);
  char *s, *eq;

  if (len > 0 && raw[len - 1] == '\r') raw[len - 1] = '\0';
  for (const char *c = raw; *c != '\0'; c++)
    if ((*c >= 0 && *c < 0x20 && *c != '\t') || *c == 0x7f)
      return fail(ps, "control character 0x%02x", (unsigned)*c);
  if (!utf8_valid((const unsigned char *)raw)) return fail(ps, "invalid UTF-8");
  s = trim(raw);
  if (*s == '\0' || *s == '#') return 0;
  if (*s == '[') return handle_section(ps, s);
  eq = strchr(s, '=');
  if (eq == NULL) return fail(ps, "expected \"key = value\", a [section] or a # comment");
  *eq = '\0';
  if (*trim(s) == '\0') return fail(ps, "missing key before =");
  return handle_key(ps, trim(s), trim(eq + 1));
}

/* ---- whole-policy checks ---- */

static int section_cmp(const void *a, const void *b) {
  const section_t *x = a, *y = b;

  if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
  return strcmp(x->name, y->name);
}

static const section_t *section_find(const review_policy_t *p, unsigned kind, const char *name) {
  size_t lo = 1, hi = p->n;

  if (name == NULL) return NULL;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const section_t *s = &p->sec[mid];
    int c = s->kind != kind ? (s->kind < kind ? -1 : 1) : strcmp(s->name, name);
    if (c == 0) return s;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* The contradictions a scope's merged rules may not contain; msg empty when
 * none. Each would make a decision the policy's author cannot have meant. */
static void rules_contradiction(const review_rules_t *r, char *msg, size_t len) {
  msg[0] = '\0';
  for (size_t i = 0; i < r->refund_only_max.n; i++) {
    const char *cur = r->refund_only_max.v[i].currency;
    int64_t cheap = r->refund_only_max.v[i].minor, above;
    if (!review_money_find(&r->manual_review_above, cur, &above)) {
      as_err_set(msg, len, "refund_only_max names %s but manual_review_above has no figure for it",
                 cur);
      return;
    }
    if (cheap >= above) {
      as_err_set(msg, len, "refund_only_max %s:%lld is not below manual_review_above %s:%lld", cur,
                 (long long)cheap, cur, (long long)above);
      return;
    }
  }
  for (int reason = 0; reason < REVIEW_NREASONS; reason++) {
    const char *name = as_enum_name(REASONS, reason);
    if ((r->seller_fault & (1u << reason)) &&
        r->shipping[reason] == AFTERSALES__V1__PAYER_PARTY__PAYER_PARTY_BUYER) {
      as_err_set(msg, len, "shipping.%s = buyer, but %s is a seller_fault reason", name, name);
      return;
    }
    if ((r->severe & (1u << reason)) && !(r->seller_fault & (1u << reason))) {
      as_err_set(msg, len, "severe lists %s, which is not a seller_fault reason", name);
      return;
    }
  }
  if (r->goodwill_days > 0 && r->claim_days == 0)
    as_err_set(msg, len, "goodwill_days > 0 needs claim_days > 0");
  else if (!(r->return_methods & (1u << r->default_return_method)))
    as_err_set(msg, len, "default_return_method %s is not in return_methods",
               as_enum_name(METHODS, r->default_return_method));
}

static int check_scopes(const review_policy_t *p, char *err, size_t errlen) {
  char msg[256];

  for (size_t i = 0; i < p->n; i++) {
    const section_t *s = &p->sec[i];
    review_rules_t r = p->sec[0].r;

    if (s->kind == SEC_REGION) {
      if (s->r.warehouse == NULL || s->r.address == NULL)
        return as_err_set(err, errlen, "line %d: [region %s] needs warehouse and address", s->line,
                          s->name),
               -1;
      continue;
    }
    if (i > 0) rules_merge(&r, &s->r);
    rules_contradiction(&r, msg, sizeof msg);
    if (msg[0] == '\0') continue;
    if (s->line > 0)
      as_err_set(err, errlen, "line %d: [%s%s%s]: %s", s->line, name_of(SECTIONS, (int)s->kind),
                 i ? " " : "", s->name, msg);
    else
      as_err_set(err, errlen, "[default]: %s", msg);
    return -1;
  }
  return 0;
}

/* Sorts the named sections, refuses duplicates, then the file-wide rules. */
static int finish(parser_t *ps, bool builtin) {
  review_policy_t *p = ps->p;

  if (p->version[0] == '\0')
    return as_err_set(ps->err, ps->errlen,
                      "missing version (version = ... before the first section)"),
           -1;
  qsort(p->sec + 1, p->n - 1, sizeof *p->sec, section_cmp);
  for (size_t i = 2; i < p->n; i++) {
    const section_t *a = &p->sec[i - 1], *b = &p->sec[i];
    if (section_cmp(a, b) == 0)
      return as_err_set(ps->err, ps->errlen,
                        "line %d: duplicate section [%s %s] (first at line %d)",
                        a->line > b->line ? a->line : b->line, name_of(SECTIONS, (int)a->kind),
                        a->name, a->line < b->line ? a->line : b->line),
             -1;
  }
  if (section_find(p, SEC_REGION, "*") == NULL)
    return as_err_set(ps->err, ps->errlen,
                      "missing [region *]: the fallback return address is mandatory"),
           -1;
  for (size_t i = 0; builtin && i < NKEYS; i++)
    if ((KEYS[i].scopes & SEC_DEFAULT) && !(p->sec[0].r.set & (UINT64_C(1) << i)))
      return as_err_set(ps->err, ps->errlen, "[default]: missing key \"%s\"", KEYS[i].name), -1;
  return check_scopes(p, ps->err, ps->errlen);
}

/* [default] starts as a copy of base (its strings duplicated), with no key
 * marked set: the file may set each once. */
static int default_from(review_policy_t *p, const review_rules_t *base) {
  review_rules_t *r = &p->sec[0].r;

  if (base == NULL) return 0;
  *r = *base;
  r->set = 0;
  r->packaging = base->packaging ? strdup(base->packaging) : NULL;
  r->warehouse = r->address = NULL;
  return base->packaging && !r->packaging ? -1 : 0;
}

static int parse_lines(parser_t *ps, char *buf) {
  for (char *line = buf; line != NULL;) {
    char *nl = strchr(line, '\n');
    if (nl != NULL) *nl = '\0';
    ps->line++;
    if (handle_line(ps, line) < 0) return -1;
    line = nl ? nl + 1 : NULL;
  }
  return 0;
}

/* base NULL: text is the built-in policy, whose [default] must be complete. */
static review_policy_t *parse_with(const char *text, size_t len, const review_rules_t *base,
                                   char *err, size_t errlen) {
  parser_t ps = {.cur = SIZE_MAX, .err = err, .errlen = errlen};
  char *buf = NULL;

  if (len > AS_DOCFILE_MAX)
    return as_err_set(err, errlen, "policy is %zu bytes, more than 1 MiB", len), NULL;
  int nul_line = as_docfile_nul_line(text, len);
  if (nul_line) return as_err_set(err, errlen, "line %d: NUL byte", nul_line), NULL;
  ps.p = calloc(1, sizeof *ps.p);
  buf = malloc(len + 1);
  if (ps.p == NULL || buf == NULL || section_add(&ps, SEC_DEFAULT, "") == NULL ||
      default_from(ps.p, base) < 0) {
    as_err_set(err, errlen, "out of memory");
    goto failed;
  }
  memcpy(buf, text, len);
  buf[len] = '\0';
  if (parse_lines(&ps, buf) < 0 || finish(&ps, base == NULL) < 0) goto failed;
  free(buf);
  return ps.p;
failed:
  free(buf);
  review_policy_free(ps.p);
  return NULL;
}

review_policy_t *review_policy_parse(const char *text, size_t len, char *err, size_t errlen) {
  review_policy_t *builtin, *p;
  char berr[256];

  as_err_set(err, errlen, "%s", "");
  builtin =
      parse_with(review_policy_default, strlen(review_policy_default), NULL, berr, sizeof berr);
  if (builtin == NULL) return as_err_set(err, errlen, "built-in policy: %s", berr), NULL;
  p = parse_with(text, len, &builtin->sec[0].r, err, errlen);
  review_policy_free(builtin);
  return p;
}

static void *parse_doc(const char *text, size_t len, char *err, size_t errlen) {
  return review_policy_parse(text, len, err, errlen);
}

review_policy_t *review_policy_load(const char *path, char *err, size_t errlen) {
  return as_docfile_load(path, parse_doc, err, errlen);
}

void review_policy_free(review_policy_t *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->n; i++) rules_free(&p->sec[i].r);
  free(p->sec);
  free(p);
}

const char *review_policy_version(const review_policy_t *p) {
  return p->version;
}

/* ---- the rules for one case ---- */

/* acc takes the stricter of acc and r, for the keys a [category] may set:
 * smaller numbers (windows, thresholds), non-returnable if either is, and
 * the first category's packaging. */
static void rules_stricter(review_rules_t *acc, const review_rules_t *r) {
  for (size_t i = 0; i < NKEYS; i++) {
    const key_def_t *k = &KEYS[i];
    if (!(k->scopes & SEC_CATEGORY) || k->type != K_INT) continue;
    int64_t *a = (int64_t *)((char *)acc + k->offset);
    const int64_t *b = (const int64_t *)((const char *)r + k->offset);
    if (*b < *a) *a = *b;
  }
  const review_money_list_t *lists[] = {&r->manual_review_above, &r->refund_only_max};
  review_money_list_t *accs[] = {&acc->manual_review_above, &acc->refund_only_max};
  for (size_t j = 0; j < 2; j++)
    for (size_t i = 0; i < lists[j]->n; i++) {
      int64_t have;
      if (!review_money_find(accs[j], lists[j]->v[i].currency, &have) ||
          lists[j]->v[i].minor < have)
        (void)money_put(accs[j], lists[j]->v[i].currency, lists[j]->v[i].minor);
    }
  acc->non_returnable = acc->non_returnable || r->non_returnable;
  acc->qc_evidence = acc->qc_evidence && r->qc_evidence; /* one line opted out: no QC */
  uint64_t pack = UINT64_C(1) << (find_key("packaging") - KEYS);
  if (!(acc->set & pack) && (r->set & pack)) {
    acc->packaging = r->packaging;
    acc->set |= pack;
  }
}

void review_policy_rules(const review_policy_t *p, const review_case_t *c, review_rules_t *out) {
  const section_t *merchant;
  bool first = true;

  *out = p->sec[0].r;
  out->set = 0;
  for (size_t i = 0; i < c->nlines; i++) {
    const section_t *cat = section_find(p, SEC_CATEGORY, c->lines[i].category);
    review_rules_t line = p->sec[0].r;

    line.set = 0;
    if (cat != NULL) rules_merge(&line, &cat->r);
    if (first)
      *out = line;
    else
      rules_stricter(out, &line);
    first = false;
  }
  merchant = section_find(p, SEC_MERCHANT, c->merchant_id);
  if (merchant != NULL) rules_merge(out, &merchant->r);
}

/* seller_fault is a [default]-only key, so no case can change it. */
bool review_policy_seller_fault(const review_policy_t *p, int reason) {
  return reason >= 0 && reason < REVIEW_NREASONS && (p->sec[0].r.seller_fault & (1u << reason));
}

const review_rules_t *review_policy_region(const review_policy_t *p, const char *code) {
  const section_t *s = section_find(p, SEC_REGION, code);

  if (s == NULL) s = section_find(p, SEC_REGION, "*");
  return &s->r;
}
