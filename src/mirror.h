/* mirror.h: the Redis mirror: the broker's live state kept in Redis
 * (stats, and with `mirror: messages` every unacknowledged message), the
 * confirm mode's acknowledgements, and the restore at start.
 *
 * It runs on the daemon's own event loop through hiredis's async API and
 * its libevent adapter. Redis being down, slow or restarting never stops
 * the broker: the mirror reconnects with backoff, keeps its memory bounded,
 * and resynchronises Redis fully once it can. The key schema is in
 * docs/redis.md.
 */
#ifndef SLUICE_MIRROR_H
#define SLUICE_MIRROR_H

#include <stdbool.h>

#include "config.h"
#include "server.h"

typedef struct mirror mirror_t;

/* Start mirroring srv's broker to the Redis of cfg->redis (which must be
 * enabled). With `restore` and cfg->redis.restore, the mirrored messages
 * are first loaded back into the broker, synchronously (call it before
 * listening); if Redis cannot be reached that is logged and the restore
 * happens on the first connection instead, before anything is written.
 * Then it connects asynchronously on srv->base and keeps srv->redis
 * (connected, lag_ops) up to date. The settings are copied: cfg may be
 * freed afterwards. NULL when out of memory. */
mirror_t *mirror_new(server_t *srv, const config_t *cfg, bool restore);

/* Before mirror_new at start-up, with redis.durability everysec or always:
 * if Redis can be reached and does not persist as the setting promises
 * (appendonly, appendfsync), or refuses CONFIG GET, -1 with why in err:
 * the daemon then refuses to start. 0 otherwise (unreachable is left to
 * the asynchronous connection, which checks again on every connect). */
int mirror_check_start(const config_t *cfg, char *err, size_t errlen);

/* A reloaded config (redis.enabled still true). Changed address, password,
 * db, prefix or mirror mode reconnect and resynchronise; the rest applies
 * at once. Nothing is restored on reload. */
void mirror_configure(mirror_t *m, const config_t *cfg);

/* Shutting down: write what is pending and a last stats snapshot, delete
 * the heartbeat, and run the event loop (at most a few seconds) until Redis
 * has answered everything. Only outside the event loop's dispatch. NULL is
 * a no-op. */
void mirror_stop(mirror_t *m);

/* Disconnect and free. Held (confirm mode) PUBs still waiting get
 * BR_UNAVAILABLE. Safe inside event callbacks (it never runs the loop).
 * NULL is a no-op. */
void mirror_free(mirror_t *m);

#endif
