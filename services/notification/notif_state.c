/* notif_state: the notification worker's state at start and on SIGHUP (the
 * sender started and stopped with the loop): the templates in force, from
 * AS_NOTIFICATION_TEMPLATES_FILE or the built-in default. A file that does not parse stops the
 * worker at start and is refused on reload (the templates in force stay), logged and counted; so is
 * one without the default locale, which every fallback ends at. */
#include <errno.h>
#include <string.h>

#include "as_log.h"
#include "notification.h"

static notif_templates_t *load(const notif_t *x, char *err, size_t errlen) {
  const char *f = x->conf->templates_file;
  notif_templates_t *t = f && f[0]
                             ? notif_templates_load(f, err, errlen)
                             : notif_templates_parse(notif_templates_default,
                                                     strlen(notif_templates_default), err, errlen);
  if (t && !notif_templates_has_locale(t, x->conf->default_locale)) {
    as_err_set(err, errlen, "no template in AS_NOTIFICATION_DEFAULT_LOCALE %s",
               x->conf->default_locale);
    notif_templates_free(t);
    return NULL;
  }
  return t;
}

int notif_reload(void *state) {
  notif_t *x = state;
  char err[512];
  notif_templates_t *t = load(x, err, sizeof err);
  if (!t) {
    as_counter_add(x->reloads_refused, 1);
    AS_ERROR(x->log, "templates refused, the previous ones stay in force", AS_F_STR("detail", err),
             AS_F_STR("in_force", notif_templates_version(x->templates)));
    return -EINVAL;
  }
  notif_templates_free(x->templates);
  x->templates = t;
  as_counter_add(x->reloads_ok, 1);
  AS_INFO(x->log, "templates loaded", AS_F_STR("version", notif_templates_version(t)));
  return 0;
}

void notif_fini(void *state) {
  notif_t *x = state;
  notif_send_fini(x->send);
  notif_templates_free(x->templates);
  notif_tell_free(x);
}

/* The sender runs on the loop once the migrations are applied (as_worker.h
 * start/stop). */
int notif_start(as_worker_t *w, void *state) {
  (void)w;
  notif_t *x = state;
  return notif_send_start(x->send);
}

void notif_stop(void *state) {
  notif_t *x = state;
  notif_send_stop(x->send);
}

int notif_init(as_worker_t *w, const void *conf, void *state) {
  notif_t *x = state;
  x->log = as_worker_log(w);
  x->metrics = as_worker_metrics(w);
  x->conf = conf;
  char err[512];
  x->templates = load(x, err, sizeof err);
  if (!x->templates) {
    AS_ERROR(x->log, "templates refused", AS_F_STR("detail", err));
    return -EINVAL;
  }
  AS_INFO(x->log, "templates loaded", AS_F_STR("version", notif_templates_version(x->templates)));
  return notif_send_init(w, &x->conf->send, &x->send);
}
