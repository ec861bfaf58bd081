/* tsan_threads: linked into the ThreadSanitizer build only (SAN=tsan).
 * Debian's librdkafka starts its threads with C11 thrd_create, which glibc
 * implements without going through pthread_create, so neither gcc 12's nor
 * clang 14's TSan runtime sees those threads start: their first malloc
 * runs on a thread TSan never set up and the worker dies of SIGSEGV. These
 * definitions in the executable take the place of glibc's (the dynamic
 * linker binds librdkafka's references to the executable first) and go
 * through the pthread calls TSan intercepts. glibc's thrd_t is a pthread_t
 * and its thrd_join reads the thread's int result from the void * that
 * pthread_join returns, which is what the trampoline returns too. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

typedef struct {
  thrd_start_t func;
  void *arg;
} start_t;

static void *trampoline(void *p) {
  start_t s = *(start_t *)p;

  free(p);
  return (void *)(intptr_t)s.func(s.arg);
}

static int thrd_result(int rc) {
  return rc == 0 ? thrd_success : rc == EAGAIN || rc == ENOMEM ? thrd_nomem : thrd_error;
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg) {
  start_t *s = malloc(sizeof *s);
  int rc;

  if (s == NULL) return thrd_nomem;
  s->func = func;
  s->arg = arg;
  if ((rc = pthread_create((pthread_t *)thr, NULL, trampoline, s)) != 0) free(s);
  return thrd_result(rc);
}

int thrd_join(thrd_t thr, int *res) {
  void *ret;
  int rc = pthread_join((pthread_t)thr, &ret);

  if (rc == 0 && res != NULL) *res = (int)(intptr_t)ret;
  return thrd_result(rc);
}
