/* mirror_int.h: what the mirror's files share (mirror.h is its public
 * face). The mirror is split by concern:
 *   mirror.c          life: settings, start (with the blocking restore),
 *                     reload, stop, free; small helpers
 *   mirror_link.c     the hiredis connection: sending, connect/backoff,
 *                     and the dispatch of every reply
 *   mirror_batch.c    the broker observer and the per-topic batches,
 *                     flushed once per loop turn, by shard; meta records
 *   mirror_confirm.c  confirm mode: PUBs held until Redis has them (and,
 *                     with redis.replicas, until WAIT says its replicas do)
 *   mirror_sentinel.c Redis Sentinel: where the master is, +switch-master,
 *                     ROLE on each connection
 *   mirror_resync.c   full resynchronisation through the resync keys
 *   mirror_stats.c    the stats hashes and the heartbeat
 * and mbuf.[ch] builds the RESP commands.
 */
#ifndef SLUICE_MIRROR_INT_H
#define SLUICE_MIRROR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "addr.h"
#include "broker.h"
#include "idtab.h"
#include "mbuf.h"
#include "mirror.h"
#include "mrestore.h"
#include "msg.h"

#define MIRROR_BACKOFF_MIN_MS 100
#define MIRROR_BACKOFF_MAX_MS 5000
#define MIRROR_CONNECT_TIMEOUT_MS 3000 /* connect, AUTH, SELECT and the first reply */
#define MIRROR_STALL_MS 15000          /* commands pending and no reply at all: reconnect */
#define MIRROR_MAX_LAG_BYTES ((uint64_t)64 << 20) /* unanswered bytes before pausing */
#define MIRROR_MAX_LAG_OPS 1000000
#define MIRROR_COALESCE_MS 2  /* how long changes gather before they are written */
#define MIRROR_OBUF_HIGH ((size_t)256 << 10) /* hiredis output past this: keep gathering */
#define MIRROR_MAX_PENDING 2000000 /* changes gathered, not sent: past this, pause */
#define MIRROR_CHUNK_BYTES ((size_t)256 << 10)    /* one resync command */
#define MIRROR_CHUNK_MSGS 4096
#define MIRROR_RESYNC_WINDOW ((uint64_t)8 << 20)  /* resync bytes unanswered at once */
#define MIRROR_RESYNC_TURN ((size_t)2 << 20)      /* resync bytes formatted per loop turn */
#define MIRROR_SHUTDOWN_MS 3000
#define MIRROR_SYNC_CONNECT_MS 2000
#define MIRROR_SYNC_IO_MS 30000
#define MIRROR_WAIT_MAX_MS 5000 /* longest WAIT: well inside MIRROR_STALL_MS */
#define MIRROR_WHERE_MAX (ADDR_HOST_MAX + 16) /* "[host]:port" or "unix:/path" */
#define MIRROR_HDR_MAX 48 /* "*N\r\n$4\r\nHSET\r\n$K\r\n" + "\r\n" after the key */

/* Lua scripts (mirror_resync.c). */
extern const char mirror_lua_cleanup[];
extern const char mirror_lua_swap[];
extern const char mirror_lua_drop[];

#define MIRROR_DROP_MAX 64 /* shards one drop script call looks at */

typedef struct u64vec {
    uint64_t *v;
    size_t n, cap;
} u64vec_t;

/* A message a batch refers to. At flush time m is valid unless id was
 * removed in the same batch: every removal reaches the batch too. */
typedef struct mref {
    const msg_t *m;
    uint64_t id;
} mref_t;

typedef struct mrefv {
    mref_t *v;
    size_t n, cap;
} mrefv_t;

/* What a reply answers. Every command carries one (it also keeps the lag
 * accounting exact: hiredis calls each callback once, with NULL when the
 * connection is gone). */
enum mreq_kind {
    REQ_SETUP = 1, /* AUTH, SELECT: an error drops the connection */
    REQ_CHECK,     /* CONFIG GET append*: does Redis persist as redis.durability says? */
    REQ_ROLE,      /* ROLE (with sentinels): is it the master? */
    REQ_READY,     /* the connection's cleanup script: its reply means "established" */
    REQ_WRITE,     /* a state write; an error drops the connection */
    REQ_HELD,      /* a write carrying held (confirm mode) messages */
    REQ_CHUNK,     /* a resync chunk (may carry held messages) */
    REQ_SWAP,      /* the resync's swap script */
    REQ_RESTORE,   /* one step of a restore on the async connection */
    REQ_WAIT,      /* WAIT replicas ms: the held messages stored before it are on them */
};

typedef struct mreq {
    int kind;
    bool temp;        /* REQ_HELD: written to the resync keys */
    bool waited;      /* sent while held messages wait for replicas too (redis.replicas):
                       * a REQ_HELD's or REQ_SWAP's messages are confirmed by a WAIT */
    uint64_t gen;     /* mirror->gen when sent */
    size_t bytes;
    size_t nids;
    uint64_t ids[];   /* held messages in this write */
} mreq_t;

/* One topic's changes since its last flush. Topics are never freed by
 * the broker, so the topic pointer is a stable key. */
typedef struct mtopic {
    const topic_t *t;
    const char *name;
    size_t nlen;
    bool announced;       /* added to the current topic set on this connection */
    u64vec_t shards;      /* shards written on this connection (or resync), so in
                           * its shard set and pinned; sorted */
    u64vec_t checks;      /* shards with HDELs since their last look: dropped once
                           * empty and no new id can fall in them */
    bool queued;          /* in mirror->qhead */
    struct mtopic *qnext;
    mrefv_t puts;         /* enqueued: HSET messages id payload */
    mrefv_t atts;         /* delivered: HSET attempts id count (read at flush) */
    u64vec_t dels;        /* removed: HDEL messages and attempts */
    mrefv_t metas;        /* meta records to write (mrestore.h; read at flush) */
    u64vec_t mdels;       /* removed messages that may have a meta record: HDEL */
    u64vec_t held;        /* held (confirm mode) messages among puts */
} mtopic_t;

typedef struct hold {
    uint64_t id;
    uint64_t due;         /* ms: -ERR mirror unavailable after this */
    const topic_t *t;
} hold_t;

typedef struct snap_ent {
    const msg_t *m;       /* valid while `id` is not in mirror->tomb */
    uint64_t id;
} snap_ent_t;

/* Where the connection to Redis is. Changes are written only in P_RESYNC
 * and P_LIVE (mirror_writable); in the other phases an observer event only
 * marks the mirror dirty, and the next resync writes the whole state. */
enum mirror_phase {
    P_DOWN = 0, /* no connection; a retry is scheduled (mirror_down) */
    P_RESTORE,  /* reading the mirrored messages back (Redis was down at start);
                 * nothing is written until they are in the broker */
    P_IDLE,     /* too far behind, or out of memory: nothing is written until
                 * every reply is in, then a resync starts (mirror_pause) */
    P_RESYNC,   /* writing the whole state into the resync keys; live changes
                 * go there too, and the swap script makes them current */
    P_LIVE,     /* every change is written as it happens */
};

struct mirror {
    server_t *srv;
    broker_t *b;
    struct event_base *base;

    /* Settings, copied: the config they came from is freed on reload. */
    char *address, *password, *prefix;
    char **sentinels;       /* none: connect to address */
    size_t nsentinels;
    char *master, *sentinel_password;
    uint32_t replicas;
    uint32_t db;
    mirror_mode_t mode;
    durability_t durability;
    bool confirm;
    uint64_t confirm_timeout_ms, flush_ms;

    redisAsyncContext *ac;
    char where[MIRROR_WHERE_MAX]; /* what ac connects to: address, or the master
                                   * the sentinels named ("" before they did) */
    struct msent *sent;     /* the sentinels' side (mirror_sentinel.c), or NULL */
    enum mirror_phase phase;
    bool established;       /* the setup replies are in: Redis answers us */
    bool dirty;             /* Redis may differ from the broker: resync before live */
    bool restore_pending;   /* restore wanted but not done: do it before any write */
    bool freeing;
    bool up_logged;         /* "connected" was logged; the next loss gets logged */
    bool complained;        /* a failure was logged; quiet until healthy again */
    bool lag_logged, refuse_logged;
    uint64_t gen;           /* bumped whenever in-flight work must be disowned */
    uint64_t backoff_ms;
    uint64_t lag_ops, lag_bytes;
    uint64_t last_progress; /* ms of the last reply, or of the first send after idle */
    uint64_t next_id_sent;

    struct event *retry_ev, *connect_ev, *turn_ev, *resync_ev, *stats_ev, *confirm_ev;
    bool turn_pending;      /* turn_ev is armed */
    bool turn_now;          /* ... and made active for this loop turn (an urgent change) */
    uint64_t pending;       /* changes in the batches */

    mtopic_t **tslot;       /* topic pointer -> batch, open addressing */
    size_t tmask, tcount;
    mtopic_t *qhead;        /* topics with something to flush this turn */

    char *key;              /* scratch for key names */
    size_t key_cap;
    mbuf_t small;           /* one-off commands and stats */
    mbuf_t cmd;             /* a batch being formatted */
    idtab_t gone;           /* ids removed within the batch being flushed */
    mbuf_t names;           /* SADD of the stats topic set */
    mbuf_t chunk, chunk_att, chunk_meta;
    idtab_t metaids;        /* messages without an ext block that have a meta record */
    u64vec_t chunk_held;

    /* confirm mode */
    idtab_t held;           /* held messages not settled yet */
    hold_t *holds;          /* FIFO by due time */
    size_t hhead, hcount, hcap;
    u64vec_t swap_ids;      /* held messages in the resync keys: confirmed by the swap */
    u64vec_t stored;        /* held messages Redis has, waiting for a WAIT's answer */
    bool wait_inflight;     /* a WAIT is unanswered (at most one: it covers all before it) */
    bool wait_owed;         /* a waited write was sent after it: another WAIT follows */
    bool wait_logged;       /* "too few replicas" was logged */
    uint32_t wait_n;        /* the replicas the WAIT in flight asks for */

    /* resync */
    snap_ent_t *snap;
    size_t nsnap, snap_cap, pos;
    bool snap_oom;
    uint64_t resync_upto;   /* ids below were in the snapshot */
    uint64_t resync_after;  /* ms: no resync before (after running out of memory) */
    idtab_t tomb;           /* snapshot ids removed since: their msg_t is gone */
    uint64_t resync_t0;

    mrestore_t *rs;         /* a restore on the async connection */
};


extern const broker_observer_t mirror_observer;

/* mirror.c */
size_t mirror_key(mirror_t *mi, const char *part, const char *name, size_t nlen);
size_t mirror_shard_key(mirror_t *mi, const char *part, uint64_t shard, const char *name,
                        size_t nlen);
size_t mirror_obuf(const mirror_t *mi);
int mirror_refs_push(mrefv_t *v, const msg_t *m);
void mirror_restore_apply(mirror_t *mi, mrestore_t *rs);
size_t mirror_room(const mirror_t *mi, size_t nlen);
int mirror_u64s_push(u64vec_t *v, uint64_t x);
bool mirror_writable(const mirror_t *mi);

/* mirror_batch.c */
void mirror_announce(mirror_t *mi, mtopic_t *mt);
int mirror_announce_shard(mirror_t *mi, mtopic_t *mt, uint64_t shard);
void mirror_check_all(mirror_t *mi);
void mirror_check_open(mirror_t *mi);
void mirror_check_shards(mirror_t *mi, mtopic_t *mt);
int mirror_drop_shards(mirror_t *mi, const char *name, size_t nlen, const uint64_t *shards,
                       size_t n);
void mirror_batch_failed(mirror_t *mi);
void mirror_discard_batches(mirror_t *mi);
void mirror_flush_batches(mirror_t *mi);
void mirror_forget_topics(mirror_t *mi);
void mirror_on_turn(evutil_socket_t fd, short what, void *arg);
void mirror_put_next_id(mirror_t *mi);
void mirror_queue(mirror_t *mi, mtopic_t *mt, bool urgent);
mtopic_t *mirror_topic(mirror_t *mi, const topic_t *t);

/* mirror_confirm.c */
void mirror_confirm_ids(mirror_t *mi, const uint64_t *ids, size_t n);
void mirror_forget(mirror_t *mi, const topic_t *t, uint64_t id, const msg_t *m);
void mirror_hold(mirror_t *mi, const topic_t *t, uint64_t id);
void mirror_on_confirm_timer(evutil_socket_t fd, short what, void *arg);
void mirror_stored(mirror_t *mi, bool waited, const uint64_t *ids, size_t n);
void mirror_wait_reply(mirror_t *mi, const redisReply *r);
void mirror_wait_reset(mirror_t *mi);
void mirror_wait_send(mirror_t *mi);

/* mirror_link.c */
int mirror_argv(mirror_t *mi, mreq_t *req, int argc, const char **argv, const size_t *lens);
void mirror_connect(mirror_t *mi);
void mirror_connect_where(mirror_t *mi);
void mirror_down(mirror_t *mi, const char *why, bool quiet);
void mirror_drop(mirror_t *mi, const char *why);
void mirror_drop_ex(mirror_t *mi, const char *why, bool quiet);
bool mirror_durable_enough(durability_t d, const redisReply *r, char *why, size_t n);
int mirror_eval(mirror_t *mi, int kind, const char *script, const char *flag);
void mirror_on_connect_timeout(evutil_socket_t fd, short what, void *arg);
void mirror_on_reply(redisAsyncContext *ac, void *reply, void *priv);
void mirror_on_retry(evutil_socket_t fd, short what, void *arg);
redisAsyncContext *mirror_open(mirror_t *mi, const char *address, char *why, size_t n);
mreq_t *mirror_req(const mirror_t *mi, int kind, const uint64_t *ids, size_t nids);
void mirror_restore_send(mirror_t *mi);
void mirror_retry_now(mirror_t *mi);
void mirror_switch(mirror_t *mi);
int mirror_send(mirror_t *mi, const char *verb, const char *key, size_t klen, mbuf_t *b, mreq_t *req);

/* mirror_resync.c */
void mirror_abort(mirror_t *mi);
void mirror_on_resync(evutil_socket_t fd, short what, void *arg);
void mirror_resync_start(mirror_t *mi);
void mirror_schedule_resync(mirror_t *mi);
void mirror_snapshot_free(mirror_t *mi);

/* mirror_sentinel.c */
bool mirror_is_master(const redisReply *r, char *why, size_t n);
void mirror_sentinel_free(mirror_t *mi);
void mirror_sentinel_resolve(mirror_t *mi);
int mirror_sentinel_start(mirror_t *mi);
int mirror_sentinel_sync(mirror_t *mi, char *err, size_t n);
const char *mirror_target(const mirror_t *mi);

/* mirror_stats.c */
void mirror_on_stats(evutil_socket_t fd, short what, void *arg);
void mirror_write_stats(mirror_t *mi);

#endif
