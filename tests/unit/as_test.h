/* as_test: the unit-test harness. A test file defines its cases with
 * AS_TEST(name) { ... }; each case registers itself from a constructor, so
 * the list is discovered and no case is written and never run. main() lives
 * in as_test.c: it runs every case (or those matching argv[1], a name or an
 * fnmatch pattern) in its own forked child under an alarm (10 s, or
 * AS_TEST_TIMEOUT seconds), prints TAP-style "ok N - binary:case" lines and a
 * final "N passed, N failed" line, and exits 1 if any case failed.
 *
 * A failed check prints both sides with file:line and ends the case at once
 * (_exit(1), skipping the leak check: the case failed anyway). A case that
 * returns ends its child with exit(0), so in the sanitizer build
 * LeakSanitizer runs and a leak fails the case. */
#ifndef AS_TEST_H
#define AS_TEST_H

#include <stddef.h>

typedef void (*as_test_fn)(void);

/* Called by AS_TEST's constructor; name and file are string literals. */
void as_test_register(const char *name, as_test_fn fn, const char *file, int line);

_Noreturn void as_test_fail(const char *file, int line, const char *expr);
void as_test_check_int(const char *file, int line, const char *ea, const char *eb, long long a,
                       long long b);
void as_test_check_str(const char *file, int line, const char *ea, const char *eb, const char *a,
                       const char *b);
void as_test_check_mem(const char *file, int line, const char *ea, const char *eb, const void *a,
                       size_t alen, const void *b, size_t blen);

#define AS_TEST(name)                                                 \
  static void as_test_case_##name(void);                              \
  __attribute__((constructor)) static void as_test_reg_##name(void) { \
    as_test_register(#name, as_test_case_##name, __FILE__, __LINE__); \
  }                                                                   \
  static void as_test_case_##name(void)

#define AS_CHECK(cond) ((cond) ? (void)0 : as_test_fail(__FILE__, __LINE__, #cond))
#define AS_CHECK_INT_EQ(a, b) \
  as_test_check_int(__FILE__, __LINE__, #a, #b, (long long)(a), (long long)(b))
#define AS_CHECK_STR_EQ(a, b) as_test_check_str(__FILE__, __LINE__, #a, #b, (a), (b))
#define AS_CHECK_MEM_EQ(a, alen, b, blen) \
  as_test_check_mem(__FILE__, __LINE__, #a, #b, (a), (alen), (b), (blen))

#endif
