/* mirror.c: the Redis mirror (see mirror.h; the key schema and what each
 * mode guarantees are in docs/redis.md).
 *
 * Writes never wait for replies. Observer events append RESP arguments to
 * per-topic batches; once per event-loop turn (a low-priority event, like
 * the server's flush pass) each touched topic becomes at most four
 * pipelined commands: HSET messages, HSET attempts, HDEL messages, HDEL
 * attempts. Within a turn a message's events always run enqueued ->
 * attempted -> removed, so that command order is also each message's order.
 *
 * Full resynchronisation (on every connection that may have missed
 * changes, and after falling too far behind) never leaves Redis without
 * the messages it had: the whole state is written into separate
 * "resync" keys in chunks, the live changes of that period go there too,
 * and one Lua script then swaps them in atomically. A crash at any moment
 * leaves either the old or the new complete state, never a half-deleted one.
 */
#include "mirror.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "mrestore.h"
#include "msg.h"
#include "version.h"

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
#define MIRROR_BUF_KEEP ((size_t)256 << 10)       /* larger idle buffers are freed */
#define MIRROR_SYNC_CONNECT_MS 2000
#define MIRROR_SYNC_IO_MS 30000
#define MIRROR_HDR_MAX 48 /* "*N\r\n$4\r\nHSET\r\n$K\r\n" + "\r\n" after the key */

/* Delete what an interrupted resync left, and with ARGV[2] == "1" (a new
 * connection) the stats hashes of topics from earlier runs. */
static const char mirror_lua_cleanup[] =
    "local p = ARGV[1]\n"
    "local t = redis.call('SMEMBERS', p .. ':resync:topics')\n"
    "for i = 1, #t do\n"
    "  redis.call('UNLINK', p .. ':resync:messages:' .. t[i], p .. ':resync:attempts:' .. t[i])\n"
    "end\n"
    "redis.call('UNLINK', p .. ':resync:topics')\n"
    "if ARGV[2] == '1' then\n"
    "  t = redis.call('SMEMBERS', p .. ':topics')\n"
    "  for i = 1, #t do redis.call('UNLINK', p .. ':topic:' .. t[i]) end\n"
    "  redis.call('UNLINK', p .. ':topics')\n"
    "end\n"
    "return 1\n";

/* Replace every message hash by its resync copy, atomically. */
static const char mirror_lua_swap[] =
    "local p = ARGV[1]\n"
    "local old = redis.call('SMEMBERS', p .. ':message_topics')\n"
    "for i = 1, #old do\n"
    "  redis.call('UNLINK', p .. ':messages:' .. old[i], p .. ':attempts:' .. old[i])\n"
    "end\n"
    "local new = redis.call('SMEMBERS', p .. ':resync:topics')\n"
    "for i = 1, #new do\n"
    "  for _, k in ipairs({'messages', 'attempts'}) do\n"
    "    local src = p .. ':resync:' .. k .. ':' .. new[i]\n"
    "    if redis.call('EXISTS', src) == 1 then\n"
    "      redis.call('RENAME', src, p .. ':' .. k .. ':' .. new[i])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #new > 0 then\n"
    "  redis.call('RENAME', p .. ':resync:topics', p .. ':message_topics')\n"
    "else\n"
    "  redis.call('UNLINK', p .. ':message_topics')\n"
    "end\n"
    "return #new\n";

/* ---- small containers ---- */

/* A command being built: RESP arguments after `room` bytes kept free in
 * front, where the header ("*N", verb, key) is written once N is known, so
 * a batch is copied only once more (into hiredis's output buffer). */
typedef struct mbuf {
    char *p;
    size_t len, cap;
    size_t room;
    size_t nargs; /* arguments after the room; 0 = not open */
} mbuf_t;

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

/* A set of message ids: linear probing, backward-shift deletion; 0 marks a
 * free slot (ids start at 1). */
typedef struct idset {
    uint64_t *slot;
    size_t mask, count;
} idset_t;

static size_t mirror_u64_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static int mirror_buf_grow(mbuf_t *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    if (b->len + more <= b->cap)
        return 0;
    while (cap < b->len + more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Start a command with `room` header bytes, unless it is open already. */
static int mirror_buf_open(mbuf_t *b, size_t room)
{
    if (b->nargs > 0)
        return 0;
    b->len = 0;
    if (mirror_buf_grow(b, room + 256) < 0)
        return -1;
    b->len = b->room = room;
    return 0;
}

static int mirror_buf_arg(mbuf_t *b, const void *data, size_t n)
{
    char num[24];
    size_t d = mirror_u64_dec(num, n);
    char *q;

    if (mirror_buf_grow(b, n + d + 5) < 0)
        return -1;
    q = b->p + b->len;
    *q++ = '$';
    memcpy(q, num, d);
    q += d;
    *q++ = '\r';
    *q++ = '\n';
    if (n > 0)
        memcpy(q, data, n);
    q += n;
    *q++ = '\r';
    *q++ = '\n';
    b->len = (size_t)(q - b->p);
    b->nargs++;
    return 0;
}

static int mirror_buf_arg_u64(mbuf_t *b, uint64_t v)
{
    char num[24];
    return mirror_buf_arg(b, num, mirror_u64_dec(num, v));
}

static int mirror_buf_arg_str(mbuf_t *b, const char *s)
{
    return mirror_buf_arg(b, s, strlen(s));
}

/* The command was sent (or dropped): empty it, and let a big one go. */
static void mirror_buf_done(mbuf_t *b)
{
    b->len = 0;
    b->nargs = 0;
    b->room = 0;
    if (b->cap > MIRROR_BUF_KEEP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

static void mirror_buf_free(mbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static int mirror_u64s_push(u64vec_t *v, uint64_t x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        uint64_t *p = realloc(v->v, cap * sizeof *p);
        if (p == NULL)
            return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}

static void mirror_u64s_free(u64vec_t *v)
{
    free(v->v);
    memset(v, 0, sizeof *v);
}

static int mirror_refs_push(mrefv_t *v, const msg_t *m)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        mref_t *p = realloc(v->v, cap * sizeof *p);
        if (p == NULL)
            return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n].m = m;
    v->v[v->n].id = m->id;
    v->n++;
    return 0;
}

static void mirror_refs_free(mrefv_t *v)
{
    free(v->v);
    memset(v, 0, sizeof *v);
}

static size_t mirror_ids_home(const idset_t *s, uint64_t id)
{
    id ^= id >> 33;
    id *= UINT64_C(0xff51afd7ed558ccd);
    id ^= id >> 33;
    return (size_t)id & s->mask;
}

static int mirror_ids_grow(idset_t *s)
{
    size_t oldn = s->slot ? s->mask + 1 : 0, n = oldn ? oldn * 2 : 64;
    uint64_t *old = s->slot, *slot = calloc(n, sizeof *slot);

    if (slot == NULL)
        return -1;
    s->slot = slot;
    s->mask = n - 1;
    for (size_t i = 0; i < oldn; i++) {
        size_t j;
        if (old[i] == 0)
            continue;
        for (j = mirror_ids_home(s, old[i]); slot[j] != 0; j = (j + 1) & s->mask)
            ;
        slot[j] = old[i];
    }
    free(old);
    return 0;
}

static int mirror_ids_add(idset_t *s, uint64_t id)
{
    size_t i;

    if ((s->count + 1) * 2 > (s->slot ? s->mask + 1 : 0) && mirror_ids_grow(s) < 0)
        return -1;
    for (i = mirror_ids_home(s, id); s->slot[i] != 0; i = (i + 1) & s->mask)
        if (s->slot[i] == id)
            return 0;
    s->slot[i] = id;
    s->count++;
    return 0;
}

static bool mirror_ids_has(const idset_t *s, uint64_t id)
{
    if (s->count == 0)
        return false;
    for (size_t i = mirror_ids_home(s, id); s->slot[i] != 0; i = (i + 1) & s->mask)
        if (s->slot[i] == id)
            return true;
    return false;
}

static bool mirror_ids_del(idset_t *s, uint64_t id)
{
    size_t i;

    if (s->count == 0)
        return false;
    for (i = mirror_ids_home(s, id); s->slot[i] != id; i = (i + 1) & s->mask)
        if (s->slot[i] == 0)
            return false;
    for (size_t j = i;;) {
        size_t k;
        j = (j + 1) & s->mask;
        if (s->slot[j] == 0)
            break;
        k = mirror_ids_home(s, s->slot[j]);
        /* It stays unless the hole at i lies on its probe path from k. */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        s->slot[i] = s->slot[j];
        i = j;
    }
    s->slot[i] = 0;
    s->count--;
    return true;
}

static void mirror_ids_free(idset_t *s)
{
    free(s->slot);
    memset(s, 0, sizeof *s);
}

/* Empty it, keeping a small table for the next use. */
static void mirror_ids_reset(idset_t *s)
{
    if (s->slot != NULL && s->mask < 4096)
        memset(s->slot, 0, (s->mask + 1) * sizeof *s->slot);
    else
        mirror_ids_free(s);
    s->count = 0;
}

/* ---- the mirror ---- */

/* What a reply answers. Every command carries one (it also keeps the lag
 * accounting exact: hiredis calls each callback once, with NULL when the
 * connection is gone). */
enum mreq_kind {
    REQ_SETUP = 1, /* AUTH, SELECT: an error drops the connection */
    REQ_CHECK,     /* CONFIG GET append*: does Redis persist as redis.durability says? */
    REQ_READY,     /* the connection's cleanup script: its reply means "established" */
    REQ_WRITE,     /* a state write; an error drops the connection */
    REQ_HELD,      /* a write carrying held (confirm mode) messages */
    REQ_CHUNK,     /* a resync chunk (may carry held messages) */
    REQ_SWAP,      /* the resync's swap script */
    REQ_RESTORE,   /* one step of a restore on the async connection */
};

typedef struct mreq {
    int kind;
    bool temp;        /* REQ_HELD: written to the resync keys */
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
    bool queued;          /* in mirror->qhead */
    struct mtopic *qnext;
    mrefv_t puts;         /* enqueued: HSET messages id payload */
    mrefv_t atts;         /* delivered: HSET attempts id count (read at flush) */
    u64vec_t dels;        /* removed: HDEL messages and attempts */
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

enum mirror_phase {
    P_DOWN = 0, /* no connection; a retry is scheduled */
    P_RESTORE,  /* reading the mirrored messages back (Redis was down at start) */
    P_IDLE,     /* too far behind: nothing is written until every reply is in */
    P_RESYNC,   /* writing the whole state into the resync keys */
    P_LIVE,     /* every change is written as it happens */
};

struct mirror {
    server_t *srv;
    broker_t *b;
    struct event_base *base;

    /* Settings, copied: the config they came from is freed on reload. */
    char *address, *password, *prefix;
    uint32_t db;
    mirror_mode_t mode;
    durability_t durability;
    bool confirm;
    uint64_t confirm_timeout_ms, flush_ms;

    redisAsyncContext *ac;
    int phase;              /* enum mirror_phase */
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
    uint64_t pending;       /* changes in the batches */

    mtopic_t **tslot;       /* topic pointer -> batch, open addressing */
    size_t tmask, tcount;
    mtopic_t *qhead;        /* topics with something to flush this turn */

    char *key;              /* scratch for key names */
    size_t key_cap;
    mbuf_t small;           /* one-off commands and stats */
    mbuf_t cmd;             /* a batch being formatted */
    idset_t gone;           /* ids removed within the batch being flushed */
    mbuf_t names;           /* SADD of the stats topic set */
    mbuf_t chunk, chunk_att;
    u64vec_t chunk_held;

    /* confirm mode */
    idset_t held;           /* held messages not settled yet */
    hold_t *holds;          /* FIFO by due time */
    size_t hhead, hcount, hcap;
    u64vec_t swap_ids;      /* held messages in the resync keys: confirmed by the swap */

    /* resync */
    snap_ent_t *snap;
    size_t nsnap, snap_cap, pos;
    bool snap_oom;
    uint64_t resync_upto;   /* ids below were in the snapshot */
    uint64_t resync_after;  /* ms: no resync before (after running out of memory) */
    idset_t tomb;           /* snapshot ids removed since: their msg_t is gone */
    uint64_t resync_t0;

    mrestore_t *rs;         /* a restore on the async connection */
};

static void mirror_on_reply(redisAsyncContext *ac, void *r, void *priv);
static void mirror_resync_start(mirror_t *mi);
/* Put a finished restore into the broker and let consumers have it. */
static void mirror_restore_apply(mirror_t *mi, mrestore_t *rs)
{
    uint64_t now = clock_ms();

    mrestore_apply(rs, mi->b, now);
    broker_dispatch(mi->b, now);
    server_arm_timer(mi->srv);
}

static void mirror_restore_send(mirror_t *mi);

/* What STATS, /metrics and /healthz show of the mirror (server_mirror_status). */
static server_mirror_status_t mirror_status_of(const void *arg)
{
    const mirror_t *mi = arg;
    server_mirror_status_t st = {.connected = mi->established, .lag_ops = mi->lag_ops};

    return st;
}

static bool mirror_writable(const mirror_t *mi)
{
    return mi->ac != NULL && (mi->phase == P_LIVE || mi->phase == P_RESYNC);
}

/* Bytes hiredis has not written to the socket yet. Past MIRROR_OBUF_HIGH
 * Redis reads slower than we write: adding more would only make hiredis
 * move its buffer around after every partial write. */
static size_t mirror_obuf(const mirror_t *mi)
{
    return mi->ac != NULL && mi->ac->c.obuf != NULL ? sdslen(mi->ac->c.obuf) : 0;
}

/* "<prefix>:<part><name>" into mi->key; returns its length. */
static size_t mirror_key(mirror_t *mi, const char *part, const char *name, size_t nlen)
{
    size_t plen = strlen(mi->prefix), qlen = strlen(part), n = plen + 1 + qlen + nlen;

    if (n + 1 > mi->key_cap) {
        char *k = realloc(mi->key, n + 64);
        if (k == NULL)
            return 0;
        mi->key = k;
        mi->key_cap = n + 64;
    }
    memcpy(mi->key, mi->prefix, plen);
    mi->key[plen] = ':';
    memcpy(mi->key + plen + 1, part, qlen);
    if (nlen > 0)
        memcpy(mi->key + plen + 1 + qlen, name, nlen);
    mi->key[n] = '\0';
    return n;
}

/* Header room for any key of a topic with an nlen-byte name. */
static size_t mirror_room(const mirror_t *mi, size_t nlen)
{
    return MIRROR_HDR_MAX + strlen(mi->prefix) + sizeof(":resync:attempts:") + nlen;
}

/* ---- sending ---- */

static mreq_t *mirror_req(const mirror_t *mi, int kind, const uint64_t *ids, size_t nids)
{
    mreq_t *req = malloc(sizeof *req + nids * sizeof(uint64_t));

    if (req == NULL)
        return NULL;
    req->kind = kind;
    req->temp = false;
    req->gen = mi->gen;
    req->bytes = 0;
    req->nids = nids;
    if (nids > 0)
        memcpy(req->ids, ids, nids * sizeof(uint64_t));
    return req;
}

static void mirror_count(mirror_t *mi, size_t bytes)
{
    if (mi->lag_ops == 0)
        mi->last_progress = clock_ms();
    mi->lag_ops++;
    mi->lag_bytes += bytes;
}

/* Hand a formatted command to hiredis (it only appends to its output
 * buffer; the write happens when the socket is writable). Takes req. */
static int mirror_raw(mirror_t *mi, const char *cmd, size_t len, mreq_t *req)
{
    if (req == NULL)
        return -1;
    if (mi->ac == NULL) {
        free(req);
        return -1;
    }
    req->bytes = len;
    if (redisAsyncFormattedCommand(mi->ac, mirror_on_reply, req, cmd, len) != REDIS_OK) {
        free(req);
        return -1;
    }
    mirror_count(mi, len);
    return 0;
}

/* Send "<verb> <key> <the arguments in b>". b is left as it was. */
static int mirror_send(mirror_t *mi, const char *verb, const char *key, size_t klen, mbuf_t *b,
                       mreq_t *req)
{
    char fixed[64];
    int n = snprintf(fixed, sizeof fixed, "*%zu\r\n$%zu\r\n%s\r\n$%zu\r\n", b->nargs + 2,
                     strlen(verb), verb, klen);
    size_t hlen = (size_t)n + klen + 2, body = b->len - b->room;
    char *cmd;
    int rc;

    if (n < 0 || (size_t)n >= sizeof fixed || klen == 0) {
        free(req);
        return -1;
    }
    if (hlen <= b->room) {
        cmd = b->p + b->room - hlen;
        memcpy(cmd, fixed, (size_t)n);
        memcpy(cmd + n, key, klen);
        memcpy(cmd + n + klen, "\r\n", 2);
        return mirror_raw(mi, cmd, hlen + body, req);
    }
    /* The prefix grew since the batch was opened: copy once. */
    cmd = malloc(hlen + body);
    if (cmd == NULL) {
        free(req);
        return -1;
    }
    memcpy(cmd, fixed, (size_t)n);
    memcpy(cmd + n, key, klen);
    memcpy(cmd + n + klen, "\r\n", 2);
    memcpy(cmd + hlen, b->p + b->room, body);
    rc = mirror_raw(mi, cmd, hlen + body, req);
    free(cmd);
    return rc;
}

static int mirror_argv(mirror_t *mi, mreq_t *req, int argc, const char **argv,
                       const size_t *lens)
{
    size_t bytes = 16;

    if (req == NULL)
        return -1;
    if (mi->ac == NULL) {
        free(req);
        return -1;
    }
    for (int i = 0; i < argc; i++)
        bytes += lens[i] + 16;
    req->bytes = bytes;
    if (redisAsyncCommandArgv(mi->ac, mirror_on_reply, req, argc, argv, lens) != REDIS_OK) {
        free(req);
        return -1;
    }
    mirror_count(mi, bytes);
    return 0;
}

/* EVAL a script with the prefix (and an optional flag) as arguments. */
static int mirror_eval(mirror_t *mi, int kind, const char *script, const char *flag)
{
    const char *argv[5] = {"EVAL", script, "0", mi->prefix, flag};
    size_t lens[5] = {4, strlen(script), 1, strlen(mi->prefix), flag ? strlen(flag) : 0};

    return mirror_argv(mi, mirror_req(mi, kind, NULL, 0), flag ? 5 : 4, argv, lens);
}

/* ---- topics and their batches ---- */

static size_t mirror_ptr_home(const mirror_t *mi, const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;

    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return (size_t)x & mi->tmask;
}

static int mirror_topics_grow(mirror_t *mi)
{
    size_t oldn = mi->tslot ? mi->tmask + 1 : 0, n = oldn ? oldn * 2 : 64;
    mtopic_t **old = mi->tslot, **slot = calloc(n, sizeof *slot);

    if (slot == NULL)
        return -1;
    mi->tslot = slot;
    mi->tmask = n - 1;
    for (size_t i = 0; i < oldn; i++) {
        size_t j;
        if (old[i] == NULL)
            continue;
        for (j = mirror_ptr_home(mi, old[i]->t); slot[j] != NULL; j = (j + 1) & mi->tmask)
            ;
        slot[j] = old[i];
    }
    free(old);
    return 0;
}

/* The batch of topic t, created on first use. NULL when out of memory. */
static mtopic_t *mirror_topic(mirror_t *mi, const topic_t *t)
{
    mtopic_t *mt;
    size_t i;

    if (mi->tslot != NULL) {
        for (i = mirror_ptr_home(mi, t); mi->tslot[i] != NULL; i = (i + 1) & mi->tmask)
            if (mi->tslot[i]->t == t)
                return mi->tslot[i];
    }
    if ((mi->tcount + 1) * 2 > (mi->tslot ? mi->tmask + 1 : 0) && mirror_topics_grow(mi) < 0)
        return NULL;
    mt = calloc(1, sizeof *mt);
    if (mt == NULL)
        return NULL;
    mt->t = t;
    mt->name = topic_name(t, &mt->nlen);
    for (i = mirror_ptr_home(mi, t); mi->tslot[i] != NULL; i = (i + 1) & mi->tmask)
        ;
    mi->tslot[i] = mt;
    mi->tcount++;
    return mt;
}

static void mirror_topic_clear(mirror_t *mi, mtopic_t *mt)
{
    mi->pending -= mt->puts.n + mt->atts.n + mt->dels.n;
    mt->puts.n = mt->atts.n = mt->dels.n = mt->held.n = 0;
}

static bool mirror_topic_empty(const mtopic_t *mt)
{
    return mt->puts.n == 0 && mt->atts.n == 0 && mt->dels.n == 0;
}

/* A new connection or a new resync: no topic is in the target set yet. */
static void mirror_forget_topics(mirror_t *mi)
{
    for (size_t i = 0; mi->tslot != NULL && i <= mi->tmask; i++)
        if (mi->tslot[i] != NULL)
            mi->tslot[i]->announced = false;
}

/* Drop every unsent batch (the mirror is dirty and will resync). */
static void mirror_discard_batches(mirror_t *mi)
{
    mtopic_t *mt;

    while ((mt = mi->qhead) != NULL) {
        mi->qhead = mt->qnext;
        mt->queued = false;
        mirror_topic_clear(mi, mt);
    }
}

/* Ids only rise in Redis before anything that could reveal them: every
 * flush of batches starts here, so an HDEL never reaches Redis ahead of a
 * next_id that covers its id. */
static void mirror_put_next_id(mirror_t *mi)
{
    uint64_t n = broker_next_id(mi->b);
    char num[24];
    const char *argv[3] = {"SET", NULL, num};
    size_t lens[3] = {3, 0, 0};

    if (n <= mi->next_id_sent || !mirror_writable(mi))
        return;
    lens[1] = mirror_key(mi, "next_id", NULL, 0);
    argv[1] = mi->key;
    lens[2] = mirror_u64_dec(num, n);
    if (lens[1] > 0 && mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 3, argv, lens) == 0)
        mi->next_id_sent = n;
}

/* SADD the topic to the set naming the message hashes (the resync's own
 * set while resynchronising), once per connection or resync. */
static void mirror_announce(mirror_t *mi, mtopic_t *mt)
{
    const char *argv[3] = {"SADD", NULL, mt->name};
    size_t lens[3] = {4, 0, mt->nlen};

    if (mt->announced)
        return;
    lens[1] = mirror_key(mi, mi->phase == P_RESYNC ? "resync:topics" : "message_topics", NULL, 0);
    argv[1] = mi->key;
    if (lens[1] > 0 && mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 3, argv, lens) == 0)
        mt->announced = true;
}

static void mirror_batch_failed(mirror_t *mi);

/* Send "<verb> <prefix>:<part><topic> <args in mi->cmd>" if it has args. */
static void mirror_send_cmd(mirror_t *mi, const mtopic_t *mt, const char *verb,
                            const char *part, mreq_t *req)
{
    size_t klen;

    if (mi->cmd.nargs == 0) {
        free(req);
        return;
    }
    klen = mirror_key(mi, part, mt->name, mt->nlen);
    mirror_send(mi, verb, mi->key, klen, &mi->cmd, req);
}

/* One command is big enough: a large batch becomes several. */
static bool mirror_cmd_full(const mbuf_t *b)
{
    return b->len - b->room >= MIRROR_CHUNK_BYTES || b->nargs >= 2 * MIRROR_CHUNK_MSGS;
}

static int mirror_flush_atts(mirror_t *mi, const mtopic_t *mt, const char *katt, size_t room)
{
    mbuf_t *b = &mi->cmd;

    if (mirror_buf_open(b, room) < 0)
        return -1;
    for (size_t i = 0; i < mt->atts.n; i++) {
        const mref_t *r = &mt->atts.v[i];
        if (mirror_ids_has(&mi->gone, r->id))
            continue;
        if (mirror_buf_arg_u64(b, r->id) < 0 || mirror_buf_arg_u64(b, r->m->attempt) < 0)
            return -1;
        if (mirror_cmd_full(b)) {
            mirror_send_cmd(mi, mt, "HSET", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
            mirror_buf_done(b);
            if (mirror_buf_open(b, room) < 0)
                return -1;
        }
    }
    mirror_send_cmd(mi, mt, "HSET", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
    mirror_buf_done(b);
    return 0;
}

/* The held messages ride on the last command: its reply comes after the
 * others', and an error in any of them drops the connection first. */
static int mirror_flush_puts(mirror_t *mi, const mtopic_t *mt, const char *kmsg, size_t room,
                             bool temp)
{
    mbuf_t *b = &mi->cmd;
    mreq_t *req;

    if (mirror_buf_open(b, room) < 0)
        return -1;
    for (size_t i = 0; i < mt->puts.n; i++) {
        const mref_t *r = &mt->puts.v[i];
        if (mirror_ids_del(&mi->gone, r->id))
            continue; /* came and went: nothing to write, nothing to delete */
        if (mirror_buf_arg_u64(b, r->id) < 0 || mirror_buf_arg(b, r->m->data, r->m->len) < 0)
            return -1;
        if (mirror_cmd_full(b) && i + 1 < mt->puts.n) {
            mirror_send_cmd(mi, mt, "HSET", kmsg, mirror_req(mi, REQ_WRITE, NULL, 0));
            mirror_buf_done(b);
            if (mirror_buf_open(b, room) < 0)
                return -1;
        }
    }
    req = mirror_req(mi, mt->held.n > 0 ? REQ_HELD : REQ_WRITE, mt->held.v, mt->held.n);
    if (req != NULL)
        req->temp = temp;
    mirror_send_cmd(mi, mt, "HSET", kmsg, req);
    mirror_buf_done(b);
    return 0;
}

static int mirror_flush_dels(mirror_t *mi, const mtopic_t *mt, const char *kmsg,
                             const char *katt, size_t room)
{
    mbuf_t *b = &mi->cmd;

    if (mirror_buf_open(b, room) < 0)
        return -1;
    for (size_t i = 0; i < mt->dels.n; i++) {
        if (!mirror_ids_has(&mi->gone, mt->dels.v[i]))
            continue;
        if (mirror_buf_arg_u64(b, mt->dels.v[i]) < 0)
            return -1;
        if (mirror_cmd_full(b)) {
            mirror_send_cmd(mi, mt, "HDEL", kmsg, mirror_req(mi, REQ_WRITE, NULL, 0));
            mirror_send_cmd(mi, mt, "HDEL", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
            mirror_buf_done(b);
            if (mirror_buf_open(b, room) < 0)
                return -1;
        }
    }
    mirror_send_cmd(mi, mt, "HDEL", kmsg, mirror_req(mi, REQ_WRITE, NULL, 0));
    mirror_send_cmd(mi, mt, "HDEL", katt, mirror_req(mi, REQ_WRITE, NULL, 0));
    mirror_buf_done(b);
    return 0;
}

/* Send a topic's batch: HSET attempts, HSET messages, HDEL messages and
 * attempts (each split if large). A message enqueued and removed within
 * one batch is never written at all: at high rates most messages live
 * shorter than a batch, and Redis never sees them. */
static void mirror_flush_topic(mirror_t *mi, mtopic_t *mt)
{
    bool temp = mi->phase == P_RESYNC;
    const char *kmsg = temp ? "resync:messages:" : "messages:";
    const char *katt = temp ? "resync:attempts:" : "attempts:";
    size_t room = mirror_room(mi, mt->nlen);
    int err = 0;

    if (mirror_topic_empty(mt))
        return;
    if (!mirror_writable(mi)) {
        mirror_topic_clear(mi, mt);
        return;
    }
    for (size_t i = 0; i < mt->dels.n; i++)
        err |= mirror_ids_add(&mi->gone, mt->dels.v[i]);
    if (err == 0) {
        mirror_put_next_id(mi);
        mirror_announce(mi, mt);
        err = mirror_flush_atts(mi, mt, katt, room);
    }
    if (err == 0)
        err = mirror_flush_puts(mi, mt, kmsg, room, temp);
    if (err == 0)
        err = mirror_flush_dels(mi, mt, kmsg, katt, room);
    mirror_buf_done(&mi->cmd);
    mirror_ids_reset(&mi->gone);
    mirror_topic_clear(mi, mt);
    if (err != 0)
        mirror_batch_failed(mi);
}

static void mirror_abort(mirror_t *mi);
static void mirror_schedule_resync(mirror_t *mi);

/* Stop writing: what is not sent yet is dropped, not queued. A resync
 * starts once Redis has answered everything already sent. */
static void mirror_pause(mirror_t *mi)
{
    mirror_abort(mi);
    mi->phase = P_IDLE;
    mi->dirty = true;
    if (mi->lag_ops == 0)
        mirror_schedule_resync(mi);
}

/* Past the bound: pause (memory stays bounded while Redis is slow). */
static void mirror_check_lag(mirror_t *mi)
{
    if (!mirror_writable(mi))
        return;
    if (mi->lag_bytes <= MIRROR_MAX_LAG_BYTES && mi->lag_ops <= MIRROR_MAX_LAG_OPS)
        return;
    if (!mi->lag_logged) {
        log_warn("redis mirror: Redis is %" PRIu64 " commands (%" PRIu64
                 " MiB) behind; pausing the mirror, resynchronising once it catches up",
                 mi->lag_ops, mi->lag_bytes >> 20);
        mi->lag_logged = true;
    }
    mirror_pause(mi);
}

static void mirror_flush_batches(mirror_t *mi)
{
    mtopic_t *mt;

    while ((mt = mi->qhead) != NULL) {
        mi->qhead = mt->qnext;
        mt->queued = false;
        mirror_flush_topic(mi, mt);
    }
    mirror_put_next_id(mi);
    mirror_check_lag(mi);
}

static void mirror_on_turn(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    struct timeval tv = {0, MIRROR_COALESCE_MS * 1000};

    (void)fd;
    (void)what;
    event_del(mi->turn_ev);
    if (mirror_writable(mi) && mirror_obuf(mi) > MIRROR_OBUF_HIGH) {
        /* Redis is behind: gather (and cancel) more, look again soon. */
        evtimer_add(mi->turn_ev, &tv);
        return;
    }
    mi->turn_pending = false;
    mirror_flush_batches(mi);
}

/* mt has a new change: changes go out MIRROR_COALESCE_MS after the first
 * one of a batch (at the end of that loop turn), or at the end of this
 * turn when `urgent` (a held PUB waits for it); later while hiredis still
 * has much unwritten. Past MIRROR_MAX_PENDING the mirror pauses. */
static void mirror_queue(mirror_t *mi, mtopic_t *mt, bool urgent)
{
    struct timeval tv = {0, MIRROR_COALESCE_MS * 1000};

    if (!mt->queued) {
        mt->queued = true;
        mt->qnext = mi->qhead;
        mi->qhead = mt;
    }
    if (urgent) {
        event_active(mi->turn_ev, EV_TIMEOUT, 0);
        mi->turn_pending = true;
    } else if (!mi->turn_pending) {
        evtimer_add(mi->turn_ev, &tv);
        mi->turn_pending = true;
    }
    if (++mi->pending > MIRROR_MAX_PENDING) {
        if (!mi->lag_logged)
            log_warn("redis mirror: Redis cannot keep up (%" PRIu64 " changes waiting); "
                     "pausing the mirror, resynchronising once it catches up",
                     mi->pending);
        mi->lag_logged = true;
        mirror_pause(mi);
    }
}

/* Out of memory: give the state up to a resync, a while later (retrying
 * at once would spin while memory is short). */
static void mirror_batch_failed(mirror_t *mi)
{
    log_error("redis mirror: out of memory; resynchronising in %d s",
              MIRROR_BACKOFF_MAX_MS / 1000);
    mi->resync_after = clock_ms() + MIRROR_BACKOFF_MAX_MS;
    mirror_pause(mi);
}

/* ---- confirm mode: held messages ---- */

static void mirror_arm_confirm(mirror_t *mi)
{
    uint64_t now, due;
    struct timeval tv;

    if (mi->hcount == 0 || evtimer_pending(mi->confirm_ev, NULL))
        return;
    now = clock_ms();
    due = mi->holds[mi->hhead].due;
    tv = clock_tv(due > now ? due - now : 0);
    evtimer_add(mi->confirm_ev, &tv);
}

static int mirror_hold_push(mirror_t *mi, const hold_t *h)
{
    if (mi->hcount == mi->hcap) {
        size_t cap = mi->hcap ? mi->hcap * 2 : 64;
        hold_t *n = malloc(cap * sizeof *n);
        if (n == NULL)
            return -1;
        for (size_t i = 0; i < mi->hcount; i++)
            n[i] = mi->holds[(mi->hhead + i) % mi->hcap];
        free(mi->holds);
        mi->holds = n;
        mi->hcap = cap;
        mi->hhead = 0;
    }
    mi->holds[(mi->hhead + mi->hcount) % mi->hcap] = *h;
    mi->hcount++;
    return 0;
}

/* A PUB is held until Redis has its message, at most confirm_timeout. */
static void mirror_hold(mirror_t *mi, const topic_t *t, uint64_t id)
{
    hold_t h = {.id = id, .due = clock_ms() + mi->confirm_timeout_ms, .t = t};

    if (mirror_hold_push(mi, &h) < 0) {
        log_error("redis mirror: out of memory tracking confirmed PUB %" PRIu64, id);
        return;
    }
    if (mirror_ids_add(&mi->held, id) < 0) {
        mi->hcount--;
        log_error("redis mirror: out of memory tracking confirmed PUB %" PRIu64, id);
        return;
    }
    mirror_arm_confirm(mi);
}

static void mirror_confirm_ids(mirror_t *mi, const uint64_t *ids, size_t n)
{
    uint64_t now = clock_ms();
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        if (mirror_ids_del(&mi->held, ids[i])) {
            broker_confirm(mi->b, ids[i], true, now);
            any = true;
        }
    }
    if (any) {
        broker_dispatch(mi->b, now);
        server_arm_timer(mi->srv);
    }
}

/* Message id of topic t is gone from the broker: delete it from Redis,
 * and keep a resync from reading its freed msg_t. */
static void mirror_forget(mirror_t *mi, const topic_t *t, uint64_t id)
{
    mtopic_t *mt;

    if (mi->phase == P_RESYNC && id < mi->resync_upto && mirror_ids_add(&mi->tomb, id) < 0) {
        /* Without the tombstone the snapshot is unsafe: start over. */
        mirror_batch_failed(mi);
        return;
    }
    if (!mirror_writable(mi)) {
        mi->dirty = true;
        return;
    }
    mt = mirror_topic(mi, t);
    if (mt == NULL || mirror_u64s_push(&mt->dels, id) < 0) {
        mirror_batch_failed(mi);
        return;
    }
    /* Under confirm an ACK goes out with the turn's PUBs, not 2 ms later,
     * so a restore after a crash brings back as few acked messages as it can. */
    mirror_queue(mi, mt, mi->confirm);
}

static void mirror_on_confirm_timer(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    uint64_t now = clock_ms(), refused = 0;

    (void)fd;
    (void)what;
    while (mi->hcount > 0 && mi->holds[mi->hhead].due <= now) {
        hold_t h = mi->holds[mi->hhead];
        mi->hhead = (mi->hhead + 1) % mi->hcap;
        mi->hcount--;
        if (!mirror_ids_del(&mi->held, h.id))
            continue;
        broker_confirm(mi->b, h.id, false, now);
        /* Its write may still land: delete it behind that write. */
        mirror_forget(mi, h.t, h.id);
        refused++;
    }
    if (refused > 0) {
        if (!mi->refuse_logged)
            log_warn("redis mirror: confirmed PUBs time out (-ERR mirror unavailable)");
        mi->refuse_logged = true;
        broker_dispatch(mi->b, now);
        server_arm_timer(mi->srv);
    }
    mirror_arm_confirm(mi);
}

/* ---- observer ---- */

static void mirror_on_enqueued(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;
    mtopic_t *mt;

    if (m->state == MSG_HELD)
        mirror_hold(mi, t, m->id);
    if (!mirror_writable(mi)) {
        mi->dirty = true;
        return;
    }
    mt = mirror_topic(mi, t);
    if (mt == NULL || mirror_refs_push(&mt->puts, m) < 0 ||
        (m->state == MSG_HELD && mirror_u64s_push(&mt->held, m->id) < 0)) {
        mirror_batch_failed(mi);
        return;
    }
    mirror_queue(mi, mt, m->state == MSG_HELD);
}

static void mirror_on_attempted(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;
    mtopic_t *mt;

    if (!mirror_writable(mi)) {
        mi->dirty = true;
        return;
    }
    mt = mirror_topic(mi, t);
    if (mt == NULL || mirror_refs_push(&mt->atts, m) < 0) {
        mirror_batch_failed(mi);
        return;
    }
    mirror_queue(mi, mt, false);
}

static void mirror_on_removed(void *ctx, const topic_t *t, const msg_t *m, br_removal_t why)
{
    (void)why;
    mirror_forget(ctx, t, m->id);
}

static const broker_observer_t mirror_observer = {
    .enqueued = mirror_on_enqueued,
    .attempted = mirror_on_attempted,
    .removed = mirror_on_removed,
};

/* ---- resync ---- */

static void mirror_snapshot_free(mirror_t *mi)
{
    free(mi->snap);
    mi->snap = NULL;
    mi->nsnap = mi->snap_cap = mi->pos = 0;
    mirror_ids_free(&mi->tomb);
}

static void mirror_snapshot_add(void *ctx, const topic_t *t, const msg_t *m)
{
    mirror_t *mi = ctx;

    (void)t;
    if (mi->snap_oom)
        return;
    if (mi->nsnap == mi->snap_cap) {
        size_t cap = mi->snap_cap ? mi->snap_cap * 2 : 1024;
        snap_ent_t *n = realloc(mi->snap, cap * sizeof *n);
        if (n == NULL) {
            mi->snap_oom = true;
            return;
        }
        mi->snap = n;
        mi->snap_cap = cap;
    }
    mi->snap[mi->nsnap].m = m;
    mi->snap[mi->nsnap].id = m->id;
    mi->nsnap++;
}

/* Disown everything in flight for the current phase. */
static void mirror_abort(mirror_t *mi)
{
    mi->gen++;
    mirror_discard_batches(mi);
    mirror_snapshot_free(mi);
    mi->swap_ids.n = 0;
}

static void mirror_schedule_resync_in(mirror_t *mi, uint64_t ms)
{
    struct timeval tv = clock_tv(ms);

    /* A timer, not event_active: activating itself would run it again in
     * the same pass and starve the sockets. */
    evtimer_add(mi->resync_ev, &tv);
}

static void mirror_schedule_resync(mirror_t *mi)
{
    mirror_schedule_resync_in(mi, 0);
}

/* Write one run of same-topic snapshot messages; false when done or failed. */
static bool mirror_send_chunk(mirror_t *mi, size_t *sent)
{
    const topic_t *t = NULL;
    mtopic_t *mt;
    size_t n = 0, klen;
    mreq_t *req;

    mi->chunk_held.n = 0;
    while (mi->pos < mi->nsnap && n < MIRROR_CHUNK_MSGS && mi->chunk.len < MIRROR_CHUNK_BYTES) {
        const snap_ent_t *e = &mi->snap[mi->pos];
        const msg_t *m;
        if (mirror_ids_has(&mi->tomb, e->id)) {
            mi->pos++;
            continue;
        }
        m = e->m;
        if (t != NULL && m->topic != t)
            break;
        if (t == NULL) {
            size_t nlen;
            t = m->topic;
            topic_name(t, &nlen);
            if (mirror_buf_open(&mi->chunk, mirror_room(mi, nlen)) < 0 ||
                mirror_buf_open(&mi->chunk_att, mirror_room(mi, nlen)) < 0)
                goto oom;
        }
        if (mirror_buf_arg_u64(&mi->chunk, m->id) < 0 || mirror_buf_arg(&mi->chunk, m->data, m->len) < 0)
            goto oom;
        if (m->attempt > 0 &&
            (mirror_buf_arg_u64(&mi->chunk_att, m->id) < 0 || mirror_buf_arg_u64(&mi->chunk_att, m->attempt) < 0))
            goto oom;
        if (m->state == MSG_HELD && mirror_u64s_push(&mi->chunk_held, m->id) < 0)
            goto oom;
        mi->pos++;
        n++;
    }
    if (t == NULL)
        return false;
    mt = mirror_topic(mi, t);
    if (mt == NULL)
        goto oom;
    mirror_announce(mi, mt);
    *sent += mi->chunk.len + mi->chunk_att.len;
    req = mirror_req(mi, REQ_CHUNK, mi->chunk_held.v, mi->chunk_held.n);
    klen = mirror_key(mi, "resync:messages:", mt->name, mt->nlen);
    mirror_send(mi, "HSET", mi->key, klen, &mi->chunk, req);
    if (mi->chunk_att.nargs > 0) {
        klen = mirror_key(mi, "resync:attempts:", mt->name, mt->nlen);
        mirror_send(mi, "HSET", mi->key, klen, &mi->chunk_att, mirror_req(mi, REQ_WRITE, NULL, 0));
    }
    mirror_buf_done(&mi->chunk);
    mirror_buf_done(&mi->chunk_att);
    return mi->ac != NULL;
oom:
    mirror_buf_done(&mi->chunk);
    mirror_buf_done(&mi->chunk_att);
    mirror_batch_failed(mi);
    return false;
}

/* Every snapshot message is on its way: swap the resync keys in. Changes
 * from now on go to the real keys, behind the swap in the pipeline. */
static void mirror_resync_finish(mirror_t *mi)
{
    mirror_flush_batches(mi);
    if (mi->phase != P_RESYNC)
        return;
    mirror_put_next_id(mi);
    mirror_eval(mi, REQ_SWAP, mirror_lua_swap, NULL);
    log_debug("redis mirror: resync of %zu messages sent in %" PRIu64 " ms", mi->nsnap,
              clock_ms() - mi->resync_t0);
    mirror_snapshot_free(mi);
    mi->phase = P_LIVE;
}

static void mirror_on_resync(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    size_t sent = 0;

    (void)fd;
    (void)what;
    if (mi->ac == NULL)
        return;
    if (mi->phase == P_IDLE) {
        uint64_t now = clock_ms();
        if (now < mi->resync_after)
            mirror_schedule_resync_in(mi, mi->resync_after - now);
        else if (mi->lag_ops == 0)
            mirror_resync_start(mi);
        return;
    }
    if (mi->phase != P_RESYNC)
        return;
    while (mi->pos < mi->nsnap) {
        if (mi->lag_bytes >= MIRROR_RESYNC_WINDOW)
            return; /* a chunk's reply schedules the next step */
        if (mirror_obuf(mi) > MIRROR_OBUF_HIGH) {
            mirror_schedule_resync_in(mi, MIRROR_COALESCE_MS);
            return;
        }
        if (sent >= MIRROR_RESYNC_TURN) {
            mirror_schedule_resync(mi);
            return;
        }
        if (!mirror_send_chunk(mi, &sent))
            break;
    }
    if (mi->phase == P_RESYNC && mi->pos >= mi->nsnap && mi->ac != NULL)
        mirror_resync_finish(mi);
}

/* Snapshot the broker and start writing it into the resync keys. */
static void mirror_resync_start(mirror_t *mi)
{
    mirror_abort(mi);
    mi->phase = P_RESYNC;
    mi->dirty = false;
    mi->resync_t0 = clock_ms();
    mirror_forget_topics(mi);
    mirror_eval(mi, REQ_WRITE, mirror_lua_cleanup, "0");
    mi->snap_oom = false;
    if (mi->mode == MIRROR_MESSAGES)
        broker_foreach_message(mi->b, mirror_snapshot_add, mi);
    if (mi->snap_oom) {
        mirror_snapshot_free(mi);
        mirror_batch_failed(mi);
        return;
    }
    mi->resync_upto = broker_next_id(mi->b);
    mirror_schedule_resync(mi);
}

/* ---- stats ---- */

static int mirror_put_counters(mbuf_t *b, const br_counters_t *c)
{
    return mirror_buf_arg_str(b, "published") | mirror_buf_arg_u64(b, c->published) |
           mirror_buf_arg_str(b, "delivered") | mirror_buf_arg_u64(b, c->delivered) |
           mirror_buf_arg_str(b, "acked") | mirror_buf_arg_u64(b, c->acked) |
           mirror_buf_arg_str(b, "redelivered") | mirror_buf_arg_u64(b, c->redelivered) |
           mirror_buf_arg_str(b, "dead") | mirror_buf_arg_u64(b, c->dead) | mirror_buf_arg_str(b, "dropped") |
           mirror_buf_arg_u64(b, c->dropped) | mirror_buf_arg_str(b, "rejected") |
           mirror_buf_arg_u64(b, c->rejected);
}

static void mirror_stats_topic(void *ctx, const topic_stats_t *ts)
{
    mirror_t *mi = ctx;
    mbuf_t *b = &mi->small;
    size_t klen;
    int err;

    if (mirror_buf_open(b, mirror_room(mi, ts->name_len)) < 0)
        return;
    err = mirror_buf_arg_str(b, "ready") | mirror_buf_arg_u64(b, ts->ready) | mirror_buf_arg_str(b, "delayed") |
          mirror_buf_arg_u64(b, ts->delayed) | mirror_buf_arg_str(b, "in_flight") |
          mirror_buf_arg_u64(b, ts->in_flight) | mirror_buf_arg_str(b, "bytes") | mirror_buf_arg_u64(b, ts->bytes) |
          mirror_buf_arg_str(b, "consumers") | mirror_buf_arg_u64(b, ts->consumers) |
          mirror_buf_arg_str(b, "blocked_producers") | mirror_buf_arg_u64(b, ts->blocked_producers) |
          mirror_buf_arg_str(b, "max_messages") | mirror_buf_arg_u64(b, ts->max_messages) |
          mirror_buf_arg_str(b, "max_bytes") | mirror_buf_arg_u64(b, ts->max_bytes) |
          mirror_buf_arg_str(b, "overflow") | mirror_buf_arg_str(b, config_overflow_name(ts->overflow)) |
          mirror_put_counters(b, &ts->totals);
    klen = mirror_key(mi, "topic:", ts->name, ts->name_len);
    if (err == 0 && klen > 0)
        mirror_send(mi, "HSET", mi->key, klen, b, mirror_req(mi, REQ_WRITE, NULL, 0));
    mirror_buf_done(b);
    if (mirror_buf_open(&mi->names, mirror_room(mi, 0)) == 0)
        mirror_buf_arg(&mi->names, ts->name, ts->name_len);
}

/* The server hash, every topic's hash, the topic set, the heartbeat. */
static void mirror_write_stats(mirror_t *mi)
{
    broker_stats_t st;
    mbuf_t *b = &mi->small;
    size_t klen;
    char num[24], px[24];
    const char *argv[5] = {"SET", NULL, num, "PX", px};
    size_t lens[5] = {3, 0, 0, 2, 0};
    int err;

    broker_stats(mi->b, clock_ms(), &st);
    if (mirror_buf_open(b, mirror_room(mi, 0)) < 0)
        return;
    err = mirror_buf_arg_str(b, "version") | mirror_buf_arg_str(b, SLUICE_VERSION) |
          mirror_buf_arg_str(b, "uptime_s") | mirror_buf_arg_u64(b, st.uptime_ms / 1000) |
          mirror_buf_arg_str(b, "connections") | mirror_buf_arg_u64(b, mi->srv->nconns) |
          mirror_buf_arg_str(b, "topics") | mirror_buf_arg_u64(b, st.topics) | mirror_buf_arg_str(b, "messages") |
          mirror_buf_arg_u64(b, st.messages) | mirror_buf_arg_str(b, "bytes") | mirror_buf_arg_u64(b, st.bytes) |
          mirror_put_counters(b, &st.totals) | mirror_buf_arg_str(b, "blocked_producers") |
          mirror_buf_arg_u64(b, st.blocked_producers) | mirror_buf_arg_str(b, "max_loop_stall_ms") |
          mirror_buf_arg_u64(b, mi->srv->max_loop_stall_ms) | mirror_buf_arg_str(b, "redis_lag_ops") |
          mirror_buf_arg_u64(b, mi->lag_ops) | mirror_buf_arg_str(b, "updated_ms") |
          mirror_buf_arg_u64(b, clock_unix_ms());
    klen = mirror_key(mi, "server", NULL, 0);
    if (err == 0 && klen > 0)
        mirror_send(mi, "HSET", mi->key, klen, b, mirror_req(mi, REQ_WRITE, NULL, 0));
    mirror_buf_done(b);

    broker_foreach_topic(mi->b, mirror_stats_topic, mi);
    if (mi->names.nargs > 0) {
        klen = mirror_key(mi, "topics", NULL, 0);
        mirror_send(mi, "SADD", mi->key, klen, &mi->names, mirror_req(mi, REQ_WRITE, NULL, 0));
    }
    mirror_buf_done(&mi->names);

    lens[1] = mirror_key(mi, "heartbeat", NULL, 0);
    argv[1] = mi->key;
    lens[2] = mirror_u64_dec(num, clock_unix_ms());
    lens[4] = mirror_u64_dec(px, 3 * mi->flush_ms);
    if (lens[1] > 0)
        mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 5, argv, lens);
    mirror_put_next_id(mi);
}

static void mirror_drop(mirror_t *mi, const char *why);

static void mirror_on_stats(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;

    (void)fd;
    (void)what;
    if (mi->ac == NULL)
        return;
    if (mi->lag_ops > 0 && clock_ms() - mi->last_progress > MIRROR_STALL_MS) {
        mirror_drop(mi, "no reply for 15 s");
        return;
    }
    /* Skipped while Redis does not even read: the next one says it all. */
    if (mi->established && mi->phase != P_RESTORE && mi->phase != P_IDLE &&
        mirror_obuf(mi) <= MIRROR_OBUF_HIGH)
        mirror_write_stats(mi);
}

/* ---- the connection ---- */

/* host/port or unix path from "host:port", "[v6]:port", "unix:/path". */
static int mirror_parse_addr(const char *addr, char *host, size_t cap, int *port,
                             const char **path)
{
    const char *colon;
    size_t hlen;

    *path = NULL;
    if (strncmp(addr, "unix:", 5) == 0) {
        *path = addr + 5;
        return 0;
    }
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        hlen = (size_t)(end - addr - 1);
        colon = end + 1;
        addr++;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= cap)
        return -1;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 ? 0 : -1;
}

/* No connection any more (hiredis frees or has freed it): retry later. */
static void mirror_down(mirror_t *mi, const char *why, bool quiet)
{
    struct timeval tv = clock_tv(mi->backoff_ms);

    mirror_abort(mi);
    if (mi->rs != NULL) {
        mrestore_free(mi->rs);
        mi->rs = NULL;
    }
    mi->phase = P_DOWN;
    mi->dirty = true;
    mi->established = false;
    event_del(mi->connect_ev);
    if (quiet) {
        mi->up_logged = false;
    } else if (mi->up_logged) {
        log_warn("redis mirror lost: %s; retrying", why);
        mi->up_logged = false;
        mi->complained = true;
    } else if (!mi->complained) {
        log_warn("redis mirror: cannot use %s: %s; retrying", mi->address, why);
        mi->complained = true;
    } else {
        log_debug("redis mirror: %s: %s", mi->address, why);
    }
    if (mi->freeing)
        return;
    evtimer_add(mi->retry_ev, &tv);
    mi->backoff_ms = mi->backoff_ms * 2 > MIRROR_BACKOFF_MAX_MS ? MIRROR_BACKOFF_MAX_MS
                                                                 : mi->backoff_ms * 2;
}

/* Close the connection ourselves (the disconnect callback then sees that
 * it is no longer ours). Safe inside reply callbacks: hiredis defers the
 * free until the callback returns. */
static void mirror_drop_ex(mirror_t *mi, const char *why, bool quiet)
{
    redisAsyncContext *ac = mi->ac;

    if (ac == NULL)
        return;
    mi->ac = NULL;
    redisAsyncFree(ac);
    mirror_down(mi, why, quiet);
}

static void mirror_drop(mirror_t *mi, const char *why)
{
    mirror_drop_ex(mi, why, false);
}

static void mirror_on_connect(const redisAsyncContext *ac, int status)
{
    mirror_t *mi = ac->data;

    if (mi->ac != ac || status == REDIS_OK)
        return;
    mi->ac = NULL; /* hiredis frees it when this returns */
    mirror_down(mi, ac->errstr != NULL ? ac->errstr : "connect failed", false);
}

static void mirror_on_disconnect(const redisAsyncContext *ac, int status)
{
    mirror_t *mi = ac->data;

    if (mi->ac != ac)
        return;
    mi->ac = NULL;
    mirror_down(mi, status == REDIS_OK || ac->errstr == NULL ? "connection closed" : ac->errstr,
                false);
}

static void mirror_on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;

    (void)fd;
    (void)what;
    if (mi->ac != NULL && !mi->established)
        mirror_drop(mi, "no answer in time");
}

/* Healthy again: the next failure gets logged, backoff starts low. */
static void mirror_healthy(mirror_t *mi)
{
    mi->backoff_ms = MIRROR_BACKOFF_MIN_MS;
    mi->complained = false;
    mi->lag_logged = false;
    mi->refuse_logged = false;
}

static void mirror_established(mirror_t *mi)
{
    mi->established = true;
    event_del(mi->connect_ev);
    if (!mi->up_logged) {
        log_info("redis mirror connected to %s (db %" PRIu32 ", prefix %s, mirror %s%s)",
                 mi->address, mi->db, mi->prefix,
                 mi->mode == MIRROR_MESSAGES ? "messages" : "stats",
                 mi->mode == MIRROR_MESSAGES && mi->confirm ? ", confirm" : "");
        mi->up_logged = true;
    }
    if (mi->phase == P_LIVE)
        mirror_healthy(mi);
    if (mi->phase != P_RESTORE)
        mirror_write_stats(mi);
}

static void mirror_connect(mirror_t *mi)
{
    char host[256];
    int port = 0;
    const char *path;
    redisAsyncContext *ac;
    struct timeval tv = clock_tv(MIRROR_CONNECT_TIMEOUT_MS);
    const char *argv[2];
    size_t lens[2];
    char num[24];

    if (mirror_parse_addr(mi->address, host, sizeof host, &port, &path) < 0) {
        mirror_down(mi, "bad address", false);
        return;
    }
    ac = path != NULL ? redisAsyncConnectUnix(path) : redisAsyncConnect(host, port);
    if (ac == NULL) {
        mirror_down(mi, "out of memory", false);
        return;
    }
    if (ac->err) {
        char why[256];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        mirror_down(mi, why, false);
        return;
    }
    ac->data = mi;
    if (redisLibeventAttach(ac, mi->base) != REDIS_OK) {
        redisAsyncFree(ac);
        mirror_down(mi, "cannot attach to the event loop", false);
        return;
    }
    redisAsyncSetConnectCallback(ac, mirror_on_connect);
    redisAsyncSetDisconnectCallback(ac, mirror_on_disconnect);
    mi->ac = ac;
    mi->gen++;
    mi->next_id_sent = 0;
    mirror_forget_topics(mi);
    evtimer_add(mi->connect_ev, &tv);

    /* Commands queue until the socket connects; each is answered in order. */
    if (mi->password[0] != '\0') {
        argv[0] = "AUTH";
        argv[1] = mi->password;
        lens[0] = 4;
        lens[1] = strlen(mi->password);
        mirror_argv(mi, mirror_req(mi, REQ_SETUP, NULL, 0), 2, argv, lens);
    }
    if (mi->db != 0) {
        argv[0] = "SELECT";
        argv[1] = num;
        lens[0] = 6;
        lens[1] = mirror_u64_dec(num, mi->db);
        mirror_argv(mi, mirror_req(mi, REQ_SETUP, NULL, 0), 2, argv, lens);
    }
    if (mi->durability != DURABILITY_MEMORY) {
        const char *check[3] = {"CONFIG", "GET", "append*"};
        size_t clens[3] = {6, 3, 7};
        mirror_argv(mi, mirror_req(mi, REQ_CHECK, NULL, 0), 3, check, clens);
    }
    mirror_eval(mi, REQ_READY, mirror_lua_cleanup, "1");
    if (mi->ac == NULL)
        return;
    if (mi->restore_pending) {
        mi->phase = P_RESTORE;
        mi->rs = mrestore_new(mi->prefix, clock_ms());
        if (mi->rs == NULL) {
            mirror_drop(mi, "out of memory");
            return;
        }
        mirror_restore_send(mi);
    } else if (mi->dirty) {
        mirror_resync_start(mi);
    } else {
        mi->phase = P_LIVE;
    }
}

static void mirror_retry_now(mirror_t *mi)
{
    struct timeval zero = {0, 0};

    evtimer_add(mi->retry_ev, &zero);
}

static void mirror_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mirror_connect(arg);
}

/* ---- replies ---- */

static void mirror_restore_send(mirror_t *mi)
{
    const char *argv[5];
    size_t lens[5];
    int argc = mrestore_command(mi->rs, argv, lens);

    if (argc < 0 || mirror_argv(mi, mirror_req(mi, REQ_RESTORE, NULL, 0), argc, argv, lens) < 0)
        mirror_drop(mi, "out of memory");
}

static void mirror_restore_reply(mirror_t *mi, const redisReply *r)
{
    int st = mrestore_feed(mi->rs, r);

    if (st < 0) {
        mirror_drop(mi, "out of memory while restoring");
        return;
    }
    if (st == 0) {
        mirror_restore_send(mi);
        return;
    }
    mirror_restore_apply(mi, mi->rs);
    mrestore_free(mi->rs);
    mi->rs = NULL;
    mi->restore_pending = false;
    mirror_resync_start(mi);
}

/* The value of CONFIG GET's `name` in reply r, or "?". */
static const char *mirror_config_value(const redisReply *r, const char *name)
{
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
            strcmp(k->str, name) == 0)
            return v->str;
    }
    return "?";
}

/* Does Redis (its CONFIG GET append* reply r) persist as durability d
 * promises? If not, why in `why`. */
static bool mirror_durable_enough(durability_t d, const redisReply *r, char *why, size_t n)
{
    const char *aof = mirror_config_value(r, "appendonly");
    const char *fsync = mirror_config_value(r, "appendfsync");
    bool aof_on = strcmp(aof, "yes") == 0;

    if (d == DURABILITY_ALWAYS && (!aof_on || strcmp(fsync, "always") != 0)) {
        snprintf(why, n,
                 "durability: always needs Redis with appendonly yes and appendfsync always "
                 "(it has appendonly %.8s, appendfsync %.8s)", aof, fsync);
        return false;
    }
    if (d == DURABILITY_EVERYSEC && (!aof_on || strcmp(fsync, "no") == 0)) {
        snprintf(why, n,
                 "durability: everysec needs Redis with appendonly yes and appendfsync "
                 "everysec or always (it has appendonly %.8s, appendfsync %.8s)", aof, fsync);
        return false;
    }
    return true;
}

static void mirror_check_reply(mirror_t *mi, const redisReply *r)
{
    char why[256];

    if (!mirror_durable_enough(mi->durability, r, why, sizeof why)) {
        if (!mi->complained)
            log_error("redis mirror: %s; confirmed PUBs are refused until it does", why);
        mi->complained = true;
        mi->up_logged = false;
        mirror_drop_ex(mi, why, true);
        return;
    }
    if (mi->durability == DURABILITY_EVERYSEC)
        log_warn("redis mirror: durability everysec: a crash of Redis (or its machine) can "
                 "lose up to a second of confirmed PUBs");
}

static void mirror_refused(mirror_t *mi, const mreq_t *req, const redisReply *r)
{
    char why[256];

    snprintf(why, sizeof why, "%s refused: %.*s",
             req->kind == REQ_SETUP   ? "setup"
             : req->kind == REQ_CHECK ? "CONFIG GET (needed by redis.durability)"
             : req->kind == REQ_READY ? "setup script"
                                      : "a write",
             (int)(r->len < 200 ? r->len : 200), r->str);
    if (req->kind == REQ_SETUP || req->kind == REQ_CHECK || req->kind == REQ_READY) {
        /* Not connected in any useful sense: report it as a failure to connect. */
        mi->up_logged = false;
    }
    mirror_drop(mi, why);
}

static void mirror_handle(mirror_t *mi, const redisAsyncContext *ac, const mreq_t *req,
                          const redisReply *r)
{
    /* Setup belongs to a connection; everything else to a phase of it. */
    bool same_conn = ac == mi->ac;
    bool current = same_conn && req->gen == mi->gen;

    if (r->type == REDIS_REPLY_ERROR && req->kind != REQ_RESTORE) {
        if (current || (same_conn && (req->kind == REQ_SETUP || req->kind == REQ_CHECK ||
                                      req->kind == REQ_READY)))
            mirror_refused(mi, req, r);
        return;
    }
    switch (req->kind) {
    case REQ_CHECK:
        if (same_conn)
            mirror_check_reply(mi, r);
        break;
    case REQ_READY:
        if (same_conn)
            mirror_established(mi);
        break;
    case REQ_HELD:
        if (!req->temp)
            mirror_confirm_ids(mi, req->ids, req->nids);
        else if (current)
            for (size_t i = 0; i < req->nids; i++)
                mirror_u64s_push(&mi->swap_ids, req->ids[i]);
        break;
    case REQ_CHUNK:
        if (!current)
            break;
        for (size_t i = 0; i < req->nids; i++)
            mirror_u64s_push(&mi->swap_ids, req->ids[i]);
        if (mi->phase == P_RESYNC)
            mirror_schedule_resync(mi);
        break;
    case REQ_SWAP:
        if (!current)
            break;
        mirror_confirm_ids(mi, mi->swap_ids.v, mi->swap_ids.n);
        mi->swap_ids.n = 0;
        if (mi->phase == P_LIVE)
            mirror_healthy(mi);
        break;
    case REQ_RESTORE:
        if (current && mi->phase == P_RESTORE && mi->rs != NULL)
            mirror_restore_reply(mi, r);
        break;
    default:
        break;
    }
}

static void mirror_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    mirror_t *mi = ac->data;
    mreq_t *req = priv;

    mi->lag_ops--;
    mi->lag_bytes -= req->bytes;
    if (reply != NULL) {
        mi->last_progress = clock_ms();
        if (!mi->freeing)
            mirror_handle(mi, ac, req, reply);
    }
    free(req);
    if (!mi->freeing && mi->phase == P_IDLE && mi->ac != NULL && mi->lag_ops == 0)
        mirror_schedule_resync(mi);
}

/* ---- restore at start (blocking) ---- */

static redisReply *mirror_sync_cmd(redisContext *c, int argc, const char **argv,
                                   const size_t *lens, char *err, size_t errlen)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);

    if (r == NULL) {
        snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "no reply");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR && strcmp(argv[0], "HSCAN") != 0 &&
        strcmp(argv[0], "GET") != 0 && strcmp(argv[0], "SMEMBERS") != 0) {
        snprintf(err, errlen, "%s refused: %s", argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static redisContext *mirror_sync_connect(const mirror_t *mi, char *err, size_t errlen)
{
    struct timeval tv = clock_tv(MIRROR_SYNC_CONNECT_MS), io = clock_tv(MIRROR_SYNC_IO_MS);
    char host[256], num[24];
    int port = 0;
    const char *path, *argv[2];
    size_t lens[2];
    redisContext *c;
    redisReply *r;

    if (mirror_parse_addr(mi->address, host, sizeof host, &port, &path) < 0) {
        snprintf(err, errlen, "bad address");
        return NULL;
    }
    c = path != NULL ? redisConnectUnixWithTimeout(path, tv) : redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, io);
    if (mi->password[0] != '\0') {
        argv[0] = "AUTH";
        argv[1] = mi->password;
        lens[0] = 4;
        lens[1] = strlen(mi->password);
        if ((r = mirror_sync_cmd(c, 2, argv, lens, err, errlen)) == NULL)
            goto fail;
        freeReplyObject(r);
    }
    if (mi->db != 0) {
        argv[0] = "SELECT";
        argv[1] = num;
        lens[0] = 6;
        lens[1] = mirror_u64_dec(num, mi->db);
        if ((r = mirror_sync_cmd(c, 2, argv, lens, err, errlen)) == NULL)
            goto fail;
        freeReplyObject(r);
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* 0 restored (maybe nothing), -1 Redis unreachable (logged). */
static int mirror_restore_sync(mirror_t *mi)
{
    char err[256];
    redisContext *c = mirror_sync_connect(mi, err, sizeof err);
    mrestore_t *rs;
    int st = 0;

    if (c == NULL) {
        log_warn("redis mirror: cannot restore from %s: %s; serving now, restoring on the "
                 "first connection",
                 mi->address, err);
        return -1;
    }
    rs = mrestore_new(mi->prefix, clock_ms());
    if (rs == NULL) {
        redisFree(c);
        log_error("redis mirror: out of memory for the restore");
        return -1;
    }
    while (st == 0) {
        const char *argv[5];
        size_t lens[5];
        int argc = mrestore_command(rs, argv, lens);
        redisReply *r = argc < 0 ? NULL : mirror_sync_cmd(c, argc, argv, lens, err, sizeof err);
        if (r == NULL) {
            st = -1;
            break;
        }
        st = mrestore_feed(rs, r);
        freeReplyObject(r);
        if (st < 0)
            snprintf(err, sizeof err, "out of memory");
    }
    redisFree(c);
    if (st < 0) {
        log_warn("redis mirror: restore from %s failed: %s; serving now, restoring on the "
                 "first connection",
                 mi->address, err);
        mrestore_free(rs);
        return -1;
    }
    mirror_restore_apply(mi, rs);
    mrestore_free(rs);
    return 0;
}

/* ---- life ---- */

static int mirror_settings(mirror_t *mi, const config_t *cfg)
{
    char *a = strdup(cfg->redis.address), *p = strdup(cfg->redis.password),
         *x = strdup(cfg->redis.prefix);

    if (a == NULL || p == NULL || x == NULL) {
        free(a);
        free(p);
        free(x);
        return -1;
    }
    free(mi->address);
    free(mi->password);
    free(mi->prefix);
    mi->address = a;
    mi->password = p;
    mi->prefix = x;
    mi->db = cfg->redis.db;
    mi->mode = cfg->redis.mirror;
    mi->durability = cfg->redis.durability;
    mi->confirm = cfg->redis.confirm;
    mi->confirm_timeout_ms = cfg->redis.confirm_timeout_ms;
    mi->flush_ms = cfg->redis.flush_interval_ms;
    return 0;
}

/* The observer only in messages mode; confirm only makes sense there. */
static void mirror_apply_mode(mirror_t *mi)
{
    broker_set_observer(mi->b, mi->mode == MIRROR_MESSAGES ? &mirror_observer : NULL, mi);
    broker_set_confirm(mi->b, mi->mode == MIRROR_MESSAGES && mi->confirm);
}

static void mirror_arm_stats(mirror_t *mi)
{
    struct timeval tv = clock_tv(mi->flush_ms);

    event_del(mi->stats_ev);
    event_add(mi->stats_ev, &tv);
}

int mirror_check_start(const config_t *cfg, char *err, size_t errlen)
{
    mirror_t tmp = {0};
    redisContext *c;
    redisReply *r;
    const char *argv[3] = {"CONFIG", "GET", "append*"};
    size_t lens[3] = {6, 3, 7};
    int rc = 0;

    if (cfg->redis.durability == DURABILITY_MEMORY || mirror_settings(&tmp, cfg) < 0)
        return 0;
    c = mirror_sync_connect(&tmp, err, errlen);
    if (c != NULL) {
        r = mirror_sync_cmd(c, 3, argv, lens, err, errlen);
        if (r == NULL)
            rc = -1; /* CONFIG refused (renamed, or an ACL): the promise cannot be checked */
        else if (!mirror_durable_enough(tmp.durability, r, err, errlen))
            rc = -1;
        freeReplyObject(r);
        redisFree(c);
    }
    free(tmp.address);
    free(tmp.password);
    free(tmp.prefix);
    return rc;
}

mirror_t *mirror_new(server_t *srv, const config_t *cfg, bool restore)
{
    mirror_t *mi = calloc(1, sizeof *mi);

    if (mi == NULL)
        return NULL;
    mi->srv = srv;
    mi->b = srv->broker;
    mi->base = srv->base;
    mi->backoff_ms = MIRROR_BACKOFF_MIN_MS;
    mi->dirty = true;
    mi->retry_ev = evtimer_new(mi->base, mirror_on_retry, mi);
    mi->connect_ev = evtimer_new(mi->base, mirror_on_connect_timeout, mi);
    mi->turn_ev = event_new(mi->base, -1, 0, mirror_on_turn, mi);
    mi->resync_ev = evtimer_new(mi->base, mirror_on_resync, mi);
    mi->stats_ev = event_new(mi->base, -1, EV_PERSIST, mirror_on_stats, mi);
    mi->confirm_ev = evtimer_new(mi->base, mirror_on_confirm_timer, mi);
    if (mirror_settings(mi, cfg) < 0 || !mi->retry_ev || !mi->connect_ev || !mi->turn_ev ||
        !mi->resync_ev || !mi->stats_ev || !mi->confirm_ev) {
        mirror_free(mi);
        return NULL;
    }
    /* After every socket callback of a turn, like the server's flush. */
    event_priority_set(mi->turn_ev, SERVER_NPRIORITIES - 1);
    event_priority_set(mi->resync_ev, SERVER_NPRIORITIES - 1);
    if (restore && cfg->redis.restore) {
        if (mirror_restore_sync(mi) == 0)
            mi->dirty = false; /* Redis holds exactly what was just loaded */
        else
            mi->restore_pending = true;
    }
    mirror_apply_mode(mi);
    mirror_arm_stats(mi);
    server_set_mirror(srv, mirror_status_of, mi);
    mirror_connect(mi);
    return mi;
}

void mirror_configure(mirror_t *mi, const config_t *cfg)
{
    bool reconnect = strcmp(cfg->redis.address, mi->address) != 0 ||
                     strcmp(cfg->redis.password, mi->password) != 0 ||
                     cfg->redis.db != mi->db || strcmp(cfg->redis.prefix, mi->prefix) != 0 ||
                     cfg->redis.mirror != mi->mode;
    bool rearm = cfg->redis.flush_interval_ms != mi->flush_ms;

    if (mirror_settings(mi, cfg) < 0) {
        log_error("redis mirror: out of memory; keeping the previous redis settings");
        return;
    }
    mirror_apply_mode(mi);
    if (rearm)
        mirror_arm_stats(mi);
    if (!reconnect)
        return;
    log_info("redis mirror: settings changed; reconnecting to %s", mi->address);
    if (mi->ac != NULL)
        mirror_drop_ex(mi, "reconfigured", true);
    else
        mirror_abort(mi);
    /* Reconnect now; Redis will be resynchronised under the new settings. */
    mi->dirty = true;
    mi->backoff_ms = MIRROR_BACKOFF_MIN_MS;
    event_del(mi->retry_ev);
    mirror_retry_now(mi);
}

static void mirror_on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

void mirror_stop(mirror_t *mi)
{
    uint64_t until = clock_ms() + MIRROR_SHUTDOWN_MS;
    struct event *wake;
    const char *argv[2] = {"DEL", NULL};
    size_t lens[2] = {3, 0};

    if (mi == NULL)
        return;
    event_del(mi->stats_ev);
    if (mi->ac == NULL) {
        log_warn("redis mirror: not connected at shutdown; Redis may miss the latest changes");
        return;
    }
    mirror_flush_batches(mi);
    if (mi->established && mi->phase != P_RESTORE) {
        mirror_write_stats(mi);
        lens[1] = mirror_key(mi, "heartbeat", NULL, 0);
        argv[1] = mi->key;
        mirror_argv(mi, mirror_req(mi, REQ_WRITE, NULL, 0), 2, argv, lens);
    }
    wake = evtimer_new(mi->base, mirror_on_wake, NULL);
    while (wake != NULL && mi->ac != NULL && clock_ms() < until &&
           !(mi->phase == P_LIVE && mi->lag_ops == 0 && mi->qhead == NULL)) {
        struct timeval tv = clock_tv(20);
        evtimer_add(wake, &tv);
        event_base_loop(mi->base, EVLOOP_ONCE);
    }
    if (wake != NULL)
        event_free(wake);
    if (mi->ac == NULL || mi->phase != P_LIVE || mi->lag_ops > 0)
        log_warn("redis mirror: stopping before Redis confirmed everything (%" PRIu64
                 " writes unanswered); it may miss the latest changes",
                 mi->lag_ops);
}

/* Every PUB still held gets -ERR mirror unavailable: nobody will confirm it. */
static void mirror_refuse_all(mirror_t *mi)
{
    uint64_t now = clock_ms();

    for (size_t i = 0; mi->held.slot != NULL && i <= mi->held.mask; i++)
        if (mi->held.slot[i] != 0)
            broker_confirm(mi->b, mi->held.slot[i], false, now);
    mirror_ids_free(&mi->held);
    broker_dispatch(mi->b, now);
}

void mirror_free(mirror_t *mi)
{
    struct event *evs[6];

    if (mi == NULL)
        return;
    mi->freeing = true;
    if (mi->b != NULL) {
        broker_set_observer(mi->b, NULL, NULL);
        broker_set_confirm(mi->b, false);
    }
    if (mi->ac != NULL) {
        redisAsyncContext *ac = mi->ac;
        mi->ac = NULL;
        redisAsyncFree(ac);
    }
    mirror_refuse_all(mi);
    evs[0] = mi->retry_ev;
    evs[1] = mi->connect_ev;
    evs[2] = mi->turn_ev;
    evs[3] = mi->resync_ev;
    evs[4] = mi->stats_ev;
    evs[5] = mi->confirm_ev;
    for (size_t i = 0; i < 6; i++)
        if (evs[i] != NULL)
            event_free(evs[i]);
    for (size_t i = 0; mi->tslot != NULL && i <= mi->tmask; i++) {
        mtopic_t *mt = mi->tslot[i];
        if (mt == NULL)
            continue;
        mirror_refs_free(&mt->puts);
        mirror_refs_free(&mt->atts);
        mirror_u64s_free(&mt->dels);
        mirror_u64s_free(&mt->held);
        free(mt);
    }
    free(mi->tslot);
    mirror_buf_free(&mi->small);
    mirror_buf_free(&mi->cmd);
    mirror_ids_free(&mi->gone);
    mirror_buf_free(&mi->names);
    mirror_buf_free(&mi->chunk);
    mirror_buf_free(&mi->chunk_att);
    mirror_u64s_free(&mi->chunk_held);
    mirror_u64s_free(&mi->swap_ids);
    free(mi->holds);
    mirror_snapshot_free(mi);
    mrestore_free(mi->rs);
    free(mi->key);
    free(mi->address);
    free(mi->password);
    free(mi->prefix);
    server_set_mirror(mi->srv, NULL, NULL);
    free(mi);
}
