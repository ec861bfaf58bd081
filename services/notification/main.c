/* as-notification: tells the buyer, on the right channel.
 *
 * MINIMAL (branch nsend): the sender alone (notif_send.h). It consumes its
 * topics and ignores every payload; the deliveries rows it sends are
 * written by the batch side (branch notif), or by the tests meanwhile. The
 * integrator keeps notif's main.c and copies the blocks marked "sender
 * (nsend)" into it. */
#include <stddef.h>

#include "notification.h"

static const as_cfg_param_t config[] = {
    /* ---- sender (nsend): copy into notif's table ---- */
    NOTIF_SEND_CONFIG(notif_conf_t, send),
    /* ---- end sender ---- */
};

/* ---- sender (nsend): copy these hooks, call notif_send_init from init
 * and notif_send_fini from fini ---- */
static int notif_start(as_worker_t *w, void *state) {
  (void)w;
  notif_t *x = state;
  return notif_send_start(x->send);
}

static void notif_stop(void *state) {
  notif_t *x = state;
  notif_send_stop(x->send);
}
/* ---- end sender ---- */

static int notif_init(as_worker_t *w, const void *conf, void *state) {
  const notif_conf_t *c = conf;
  notif_t *x = state;
  return notif_send_init(w, &c->send, &x->send);
}

static void notif_fini(void *state) {
  notif_t *x = state;
  notif_send_fini(x->send);
}

static const as_service_t notification_service = {
    .name = "notification",
    .summary =
        "as-notification: sends the buyers' notifications (SMS, e-mail, push) with retries, "
        "fallback channels, circuit breakers and the first-response SLA",
    .config = config,
    .nconfig = AS_LEN(config),
    .conf_size = sizeof(notif_conf_t),
    .state_size = sizeof(notif_t),
    .init = notif_init,
    .fini = notif_fini,
    .start = notif_start, /* sender (nsend) */
    .stop = notif_stop,   /* sender (nsend) */
};

AS_SERVICE_MAIN(notification_service)
