/* The notification worker's configuration and state.
 *
 * MINIMAL (branch nsend): only the sender's part, so the sender runs and is
 * tested before the batch side (branch notif) merges; the integrator keeps
 * notif's header and adds the two "sender" members below to its structs.
 *
 * Ownership: the runtime owns both blocks (as_worker.h); send is made by
 * init and freed by fini. */
#ifndef NOTIFICATION_H
#define NOTIFICATION_H

#include "notif_send.h"

typedef struct notif_conf {
  notif_send_conf_t send; /* sender (nsend) */
} notif_conf_t;

typedef struct notif {
  notif_send_t *send; /* sender (nsend) */
} notif_t;

#endif
