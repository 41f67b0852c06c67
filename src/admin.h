/* admin.h: the admin HTTP endpoint (admin.listen): GET /metrics in the
 * Prometheus text format, GET /stats as JSON, GET /healthz. Read-only, on
 * the daemon's own event loop (libevent's evhttp). */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "server.h"

typedef struct admin admin_t;

/* Listen on `addr` ("host:port" or "[v6]:port"; port 0 takes a free one)
 * and serve srv's broker. The token is read from srv->cfg at each request,
 * so a reload changes it at once. NULL (and logged) when it cannot bind. */
admin_t *admin_new(server_t *srv, const char *addr);

/* The address really bound, "HOST:PORT" (port 0 resolved). */
const char *admin_address(const admin_t *a);

/* A reloaded config: a changed admin.listen is logged and waits for the
 * next restart, as the protocol listeners do. NULL a is a no-op. */
void admin_configure(admin_t *a, const config_t *cfg);

/* Close the listener and every admin connection. NULL is a no-op. */
void admin_free(admin_t *a);

#endif
