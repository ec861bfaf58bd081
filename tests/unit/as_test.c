/* as_test: main() and the checks of the unit-test harness (see as_test.h).
 * Each case runs in a forked child so that a crash, a hang, a leak or a
 * setenv() in one case cannot affect another; the parent only collects exit
 * statuses and prints the TAP-style report. */
#include "as_test.h"

#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_CASES = 1024, DEFAULT_TIMEOUT_S = 10, SHOW_MAX = 512 };

typedef struct {
  const char *name;
  as_test_fn fn;
  const char *file;
  int line;
} test_case_t;

/* Filled by constructors before main(): a static array, because nothing
 * may be allocated that a leak check in the child would then see. */
static test_case_t cases[MAX_CASES];
static size_t ncases;

void as_test_register(const char *name, as_test_fn fn, const char *file, int line) {
  if (ncases == MAX_CASES) {
    fprintf(stderr, "as_test: more than %d cases, raise MAX_CASES\n", MAX_CASES);
    abort();
  }
  cases[ncases++] = (test_case_t){.name = name, .fn = fn, .file = file, .line = line};
}

/* Prints bytes C-style so that invisible differences (a \r, a NUL, a stray
 * UTF-8 byte) show up in a failed comparison. */
static void show(const char *label, const void *p, size_t n) {
  const unsigned char *s = p;

  fprintf(stderr, "#   %s: \"", label);
  for (size_t i = 0; i < n && i < SHOW_MAX; i++) {
    if (s[i] == '"' || s[i] == '\\')
      fprintf(stderr, "\\%c", s[i]);
    else if (s[i] == '\n')
      fputs("\\n", stderr);
    else if (s[i] >= 0x20 && s[i] < 0x7F)
      fputc(s[i], stderr);
    else
      fprintf(stderr, "\\x%02x", s[i]);
  }
  fprintf(stderr, "\"%s (%zu bytes)\n", n > SHOW_MAX ? "..." : "", n);
}

/* Ends the case: _exit, not exit, so that what the failed case still holds
 * is not also reported as leaked. */
static _Noreturn void fail_now(void) {
  fflush(stdout);
  fflush(stderr);
  _exit(1);
}

void as_test_fail(const char *file, int line, const char *expr) {
  fprintf(stderr, "# %s:%d: check failed: %s\n", file, line, expr);
  fail_now();
}

void as_test_check_int(const char *file, int line, const char *ea, const char *eb, long long a,
                       long long b) {
  if (a == b) return;
  fprintf(stderr, "# %s:%d: check failed: %s == %s\n", file, line, ea, eb);
  fprintf(stderr, "#   left:  %lld\n#   right: %lld\n", a, b);
  fail_now();
}

void as_test_check_str(const char *file, int line, const char *ea, const char *eb, const char *a,
                       const char *b) {
  if (a == b || (a != NULL && b != NULL && strcmp(a, b) == 0)) return;
  fprintf(stderr, "# %s:%d: check failed: %s == %s\n", file, line, ea, eb);
  if (a != NULL)
    show("left ", a, strlen(a));
  else
    fputs("#   left : NULL\n", stderr);
  if (b != NULL)
    show("right", b, strlen(b));
  else
    fputs("#   right: NULL\n", stderr);
  fail_now();
}

void as_test_check_mem(const char *file, int line, const char *ea, const char *eb, const void *a,
                       size_t alen, const void *b, size_t blen) {
  const unsigned char *x = a, *y = b;
  size_t i = 0;

  if (alen == blen && (alen == 0 || memcmp(a, b, alen) == 0)) return;
  while (i < alen && i < blen && x[i] == y[i]) i++;
  fprintf(stderr, "# %s:%d: check failed: %s == %s (first difference at byte %zu)\n", file, line,
          ea, eb, i);
  show("left ", a, alen);
  show("right", b, blen);
  fail_now();
}

static int by_place(const void *pa, const void *pb) {
  const test_case_t *a = pa, *b = pb;
  int c = strcmp(a->file, b->file);

  return c != 0 ? c : (a->line > b->line) - (a->line < b->line);
}

static void describe(int status, unsigned timeout, char *why, size_t whylen) {
  if (WIFEXITED(status))
    snprintf(why, whylen, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
    snprintf(why, whylen, "timed out after %u s", timeout);
  else if (WIFSIGNALED(status))
    snprintf(why, whylen, "killed by signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  else
    snprintf(why, whylen, "wait status %d", status);
}

/* Returns 0 if the case passed, else -1 with the reason in why. */
static int run_case(const test_case_t *tc, unsigned timeout, char *why, size_t whylen) {
  pid_t pid;
  int status;

  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid < 0) {
    snprintf(why, whylen, "fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    alarm(timeout); /* SIGALRM's default action kills a hung case */
    tc->fn();
    exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
  }
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      snprintf(why, whylen, "waitpid: %s", strerror(errno));
      return -1;
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  describe(status, timeout, why, whylen);
  return -1;
}

static unsigned timeout_s(void) {
  const char *v = getenv("AS_TEST_TIMEOUT");
  char *end;
  unsigned long t;

  if (v == NULL || *v == '\0') return DEFAULT_TIMEOUT_S;
  t = strtoul(v, &end, 10);
  return *end == '\0' && t > 0 && t < 86400 ? (unsigned)t : DEFAULT_TIMEOUT_S;
}

static int selected(const test_case_t *tc, const char *filter) {
  return filter == NULL || strcmp(tc->name, filter) == 0 || fnmatch(filter, tc->name, 0) == 0;
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : NULL;
  const char *bin = strrchr(argv[0], '/') != NULL ? strrchr(argv[0], '/') + 1 : argv[0];
  unsigned timeout = timeout_s(), n = 0, passed = 0, failed = 0;
  char why[160];

  qsort(cases, ncases, sizeof cases[0], by_place);
  for (size_t i = 0; i < ncases; i++) n += selected(&cases[i], filter) ? 1 : 0;
  printf("1..%u\n", n);
  for (size_t i = 0; i < ncases; i++) {
    if (!selected(&cases[i], filter)) continue;
    if (run_case(&cases[i], timeout, why, sizeof why) == 0) {
      printf("ok %u - %s:%s\n", passed + failed + 1, bin, cases[i].name);
      passed++;
    } else {
      printf("not ok %u - %s:%s\n# %s\n", passed + failed + 1, bin, cases[i].name, why);
      failed++;
    }
  }
  if (n == 0) fprintf(stderr, "# no case matches \"%s\"\n", filter != NULL ? filter : "");
  printf("%u passed, %u failed\n", passed, failed);
  return failed > 0 || n == 0 ? 1 : 0;
}
