/* conn_int.h: the inside of the native connection, shared by conn.c (read,
 * parse, run, write) and conn_auth.c (AUTH, ACLs, remembered SUBs). Not for
 * use outside room conn; the public side is conn.h.
 */
#ifndef SLUICE_CONN_INT_H
#define SLUICE_CONN_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "conn.h"
#include "proto.h"

static inline const config_t *conn_cfg(const conn_t *c) { return c->host->cfg; }

/* conn.c: a reply, in order (behind any PUB still waiting for the mirror). */
void conn_reply(conn_t *c, const char *s, size_t n);
#define conn_reply_lit(c, lit) conn_reply((c), (lit), sizeof(lit) - 1)

/* conn.c: every change of state, logged at debug level. */
void conn_set_state(conn_t *c, conn_state_t state);

/* conn.c: watch the socket or not, as the state and the buffers say. */
void conn_update_reading(conn_t *c);

/* conn_auth.c: may `u` (NULL: not authenticated) do `type` on the topic
 * under cfg? And the connection's own user, under the live config. */
bool conn_allowed(const config_t *cfg, const user_entry_t *u, proto_cmd_type_t type,
                  const char *topic, size_t tlen);
bool conn_may(const conn_t *c, proto_cmd_type_t type, const char *topic, size_t tlen);

/* conn_auth.c: AUTH user pass; a wrong guess is answered after a delay. */
void conn_cmd_auth(conn_t *c, const proto_cmd_t *cmd);

/* conn_auth.c: the SUBs remembered for reloads: add one, forget one by
 * name or by index, and end those cfg no longer allows. */
void conn_sub_add(conn_t *c, const char *topic, size_t tlen);
void conn_sub_forget(conn_t *c, const char *topic, size_t tlen);
void conn_sub_remove(conn_t *c, size_t i);
void conn_sub_recheck(conn_t *c, const config_t *cfg);

#endif
