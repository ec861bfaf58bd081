/* insp_standards: the quality standards as a readable text file, and the
 * pure judgment of one inspector's item results against them.
 *
 * A standards text is parsed whole; a text that does not parse or
 * contradicts itself is refused with "line N: what is wrong" and the
 * caller keeps the standards it had (the same contract as review's policy
 * file). A parsed value is immutable: the worker swaps the pointer on
 * SIGHUP between batches.
 *
 * Per category ([category NAME]; [category default] is mandatory and is
 * what a case's unknown category gets): the checklist (item code, zh-CN and
 * en description, whether failing it is a defect or a minor fault,
 * severity 1-5), whether goods of the category are inspectable at all
 * (fresh produce is judged on evidence only), which returns pass without a
 * human (reasons and the condition the warehouse reports), and each grade's
 * disposition and resellable flag. File-wide: the version, the severity
 * from which a defect is grade D, the coupon per currency granted with
 * every compensation, and the rectification demanded of a supplier.
 *
 * Ownership: parse/load return standards owned by the caller (free with
 * insp_standards_free); every pointer returned by the accessors is
 * borrowed from them. Enum values are the proto's as plain ints (Reason,
 * QcGrade, Disposition), so this header needs no protobuf. */
#ifndef INSP_STANDARDS_H
#define INSP_STANDARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct insp_standards insp_standards_t;

/* The built-in standards, used when AS_INSPECTION_STANDARDS_FILE is empty;
 * the README shows the same text. */
extern const char insp_standards_default[];

enum { INSP_CODE_MAX = 48, INSP_NAME_MAX = 64, INSP_ITEMS_MAX = 32, INSP_GRADES = 5 };

typedef struct insp_item {
  char code[INSP_CODE_MAX + 1];
  bool defect;  /* failing it confirms a defect; else a minor (cosmetic) fault */
  int severity; /* 1 (cosmetic) .. 5 (unsafe) */
  char *zh, *en;
} insp_item_t;

typedef struct insp_grade_rule {
  int disposition; /* Disposition */
  bool resellable;
} insp_grade_rule_t;

typedef struct insp_category {
  char name[INSP_NAME_MAX + 1];
  int line; /* of its header */
  bool inspectable;
  uint32_t auto_pass_reasons; /* bit per Reason */
  char auto_pass_condition[INSP_NAME_MAX + 1];
  insp_grade_rule_t grade[INSP_GRADES]; /* per QcGrade A..D, [0] unused */
  insp_item_t items[INSP_ITEMS_MAX];
  size_t nitems;
  unsigned set; /* internal: keys given in the section */
} insp_category_t;

/* Parses len bytes. Returns the standards, or NULL with err filled
 * ("line 12: unknown key \"colorfast\""). */
insp_standards_t *insp_standards_parse(const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses a file (at most 1 MiB); NULL with err on failure. */
insp_standards_t *insp_standards_load(const char *path, char *err, size_t errlen);
void insp_standards_free(insp_standards_t *s); /* NULL is a no-op */

const char *insp_standards_version(const insp_standards_t *s);
/* The rectification demanded of a supplier (cluster alerts). */
const char *insp_standards_demand(const insp_standards_t *s);
/* The coupon for currency; false (and 0) when the file names none. */
bool insp_standards_coupon(const insp_standards_t *s, const char *currency, int64_t *minor);
/* The category's standard, or [category default] when name is unknown. */
const insp_category_t *insp_standards_category(const insp_standards_t *s, const char *name);
/* The checklist item of code in c, or NULL. */
const insp_item_t *insp_category_item(const insp_category_t *c, const char *code);
/* True when goods of c returned for reason with condition pass unseen. */
bool insp_category_auto_pass(const insp_category_t *c, int reason, const char *condition);

/* One inspector's result for one item. */
typedef struct insp_result {
  const char *code;
  bool passed;
} insp_result_t;

typedef struct insp_judgment {
  bool defect_confirmed;
  int severity; /* the defect's (highest of the failed defect items), else the highest minor's */
  const char *defect_code; /* the failed defect item of that severity (first in checklist order) */
  int grade, disposition;  /* QcGrade, Disposition */
  bool resellable;
  const char *failed[INSP_ITEMS_MAX]; /* failed item codes, checklist order; borrowed */
  size_t nfailed;
} insp_judgment_t;

/* Judges r[0..n) against c: every checklist item exactly once, nothing
 * else. A (nothing failed), B (only minor faults), C (a defect below
 * severe_from), D (a defect at or above it). Returns NULL and fills j, or
 * a reason (static, or in why[whylen]) the results are refused:
 * "item_not_in_standard: ...", "item_repeated: ...", "items_incomplete:
 * ...". */
const char *insp_judge(const insp_standards_t *s, const insp_category_t *c, const insp_result_t *r,
                       size_t n, insp_judgment_t *j, char *why, size_t whylen);

#endif
