/* mirror.c: the Redis mirror's life (see mirror.h; the key schema and
 * what each mode guarantees are in docs/redis.md, the split into files in
 * mirror_int.h): settings, start with the blocking restore, reload, stop
 * and free, and the small helpers every part uses.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "addr.h"
#include "clock.h"
#include "dec.h"
#include "log.h"
#include "mirror_int.h"

/* Put a finished restore into the broker and let consumers have it. */
void mirror_restore_apply(mirror_t *mi, mrestore_t *rs)
{
    uint64_t now = clock_ms();

    size_t pos = 0;
    uint64_t id;

    mrestore_apply(rs, mi->b, now, clock_unix_ms());
    while (mrestore_plain_meta(rs, &pos, &id))
        if (idtab_add(&mi->metaids, id) < 0) {
            /* without it an HDEL of its record could be missed: resync */
            mi->dirty = true;
            break;
        }
    broker_dispatch(mi->b, now);
    server_touch(mi->srv);
}

/* What STATS, /metrics and /healthz show of the mirror (server_mirror_status). */
static server_mirror_status_t mirror_status_of(const void *arg)
{
    const mirror_t *mi = arg;
    server_mirror_status_t st = {.connected = mi->established, .lag_ops = mi->lag_ops};

    return st;
}

bool mirror_writable(const mirror_t *mi)
{
    return mi->ac != NULL && (mi->phase == P_LIVE || mi->phase == P_RESYNC);
}

/* Bytes hiredis has not written to the socket yet. Past MIRROR_OBUF_HIGH
 * Redis reads slower than we write: adding more would only make hiredis
 * move its buffer around after every partial write. */
size_t mirror_obuf(const mirror_t *mi)
{
    return mi->ac != NULL && mi->ac->c.obuf != NULL ? sdslen(mi->ac->c.obuf) : 0;
}

/* "<prefix>:<part>[<shard>:]<name>" into mi->key (the shard when sn > 0
 * digits are given); returns its length, 0 when out of memory. */
static size_t mirror_key_of(mirror_t *mi, const char *part, const char *sd, size_t sn,
                            const char *name, size_t nlen)
{
    size_t plen = strlen(mi->prefix), qlen = strlen(part);
    size_t n = plen + 1 + qlen + (sn > 0 ? sn + 1 : 0) + nlen;
    char *k;

    if (n + 1 > mi->key_cap) {
        k = realloc(mi->key, n + 64);
        if (k == NULL)
            return 0;
        mi->key = k;
        mi->key_cap = n + 64;
    }
    k = mi->key;
    memcpy(k, mi->prefix, plen);
    k[plen] = ':';
    k += plen + 1;
    memcpy(k, part, qlen);
    k += qlen;
    if (sn > 0) {
        memcpy(k, sd, sn);
        k[sn] = ':';
        k += sn + 1;
    }
    if (nlen > 0)
        memcpy(k, name, nlen);
    mi->key[n] = '\0';
    return n;
}

size_t mirror_key(mirror_t *mi, const char *part, const char *name, size_t nlen)
{
    return mirror_key_of(mi, part, NULL, 0, name, nlen);
}

size_t mirror_shard_key(mirror_t *mi, const char *part, uint64_t shard, const char *name,
                        size_t nlen)
{
    char num[24];

    return mirror_key_of(mi, part, num, dec_u64(num, shard), name, nlen);
}

/* Header room for any key of a topic with an nlen-byte name (the longest
 * is a resync shard key: ":resync:shards:" or ":resync:msg:" and 20
 * digits and ":"). */
size_t mirror_room(const mirror_t *mi, size_t nlen)
{
    return MIRROR_HDR_MAX + strlen(mi->prefix) + sizeof(":resync:shards:") + 21 + nlen;
}

/* Room for one more element in a vector of elem-byte elements. */
static int mirror_vec_room(void *vp, size_t n, size_t *cap, size_t elem, size_t first)
{
    void **v = vp;
    size_t ncap;
    void *p;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : first;
    p = realloc(*v, ncap * elem);
    if (p == NULL)
        return -1;
    *v = p;
    *cap = ncap;
    return 0;
}

int mirror_u64s_push(u64vec_t *v, uint64_t x)
{
    if (mirror_vec_room(&v->v, v->n, &v->cap, sizeof *v->v, 16) < 0)
        return -1;
    v->v[v->n++] = x;
    return 0;
}

static void mirror_u64s_free(u64vec_t *v)
{
    free(v->v);
    memset(v, 0, sizeof *v);
}

int mirror_refs_push(mrefv_t *v, const msg_t *m)
{
    if (mirror_vec_room(&v->v, v->n, &v->cap, sizeof *v->v, 64) < 0)
        return -1;
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

/* ---- restore at start (blocking) ---- */

static redisReply *mirror_sync_cmd(redisContext *c, int argc, const char **argv,
                                   const size_t *lens, char *err, size_t errlen)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);

    if (r == NULL) {
        snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "no reply");
        return NULL;
    }
    /* The restore's reads make their own sense of an error (mrestore_feed). */
    if (r->type == REDIS_REPLY_ERROR && strcmp(argv[0], "HLEN") != 0 &&
        strcmp(argv[0], "GET") != 0 && strcmp(argv[0], "SMEMBERS") != 0) {
        snprintf(err, errlen, "%s refused: %s", argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* A blocking connection for the start-up (the restore, the durability
 * check), set up as the mirror's; with sentinels to the master they name,
 * checked with ROLE. */
static redisContext *mirror_sync_connect(mirror_t *mi, char *err, size_t errlen)
{
    struct timeval tv = clock_tv(MIRROR_SYNC_CONNECT_MS), io = clock_tv(MIRROR_SYNC_IO_MS);
    char num[24];
    const char *argv[2];
    addr_t a;
    size_t lens[2];
    redisContext *c;
    redisReply *r;

    if (mi->nsentinels == 0)
        snprintf(mi->where, sizeof mi->where, "%s", mi->address);
    else if (mirror_sentinel_sync(mi, err, errlen) < 0)
        return NULL;
    if (addr_parse(mi->where, ADDR_REDIS, &a) != NULL) {
        snprintf(err, errlen, "bad address");
        return NULL;
    }
    c = a.kind == ADDR_KIND_UNIX ? redisConnectUnixWithTimeout(a.path, tv)
                                 : redisConnectWithTimeout(a.host, a.port, tv);
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
        lens[1] = dec_u64(num, mi->db);
        if ((r = mirror_sync_cmd(c, 2, argv, lens, err, errlen)) == NULL)
            goto fail;
        freeReplyObject(r);
    }
    if (mi->nsentinels > 0) {
        bool master;
        argv[0] = "ROLE";
        lens[0] = 4;
        if ((r = mirror_sync_cmd(c, 1, argv, lens, err, errlen)) == NULL)
            goto fail;
        master = mirror_is_master(r, err, errlen);
        freeReplyObject(r);
        if (!master)
            goto fail;
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* The shards (and any old-schema hash), up to MRESTORE_WINDOW commands
 * ahead, parsed by the restore's own reader (mrestore_reader_new). 0
 * done, or -1 with why in err. */
static int mirror_restore_stream(redisContext *c, mrestore_t *rs, char *err, size_t errlen)
{
    redisReader *rd = mrestore_reader_new(rs);
    int st = 0;

    if (rd == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    redisReaderFree(c->reader); /* empty: every earlier reply was read */
    c->reader = rd;
    while (st == 0) {
        const char *argv[MRESTORE_MAX_ARGS];
        size_t lens[MRESTORE_MAX_ARGS];
        void *reply = NULL;
        int done = 0;

        if (mrestore_may_send(rs)) {
            int argc = mrestore_command(rs, argv, lens);
            if (argc < 0 || redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK)
                    goto io;
            continue;
        }
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            snprintf(err, errlen, "%s", c->reader->err == REDIS_ERR_OOM ? "out of memory"
                                                                         : c->reader->errstr);
            return -1;
        }
        if (reply != NULL)
            st = mrestore_page_end(rs);
        else if (redisBufferRead(c) != REDIS_OK)
            goto io;
    }
    return 0;
io:
    snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "connection lost");
    return -1;
}

/* The next id, the topic set and each topic's shard set, one command at
 * a time; then the shards (mirror_restore_stream). 0 done, or -1 with why
 * in err. */
static int mirror_restore_read(redisContext *c, mrestore_t *rs, char *err, size_t errlen)
{
    int st = 0;

    while (st == 0 && !mrestore_scanning(rs)) {
        const char *argv[MRESTORE_MAX_ARGS];
        size_t lens[MRESTORE_MAX_ARGS];
        int argc = mrestore_command(rs, argv, lens);
        redisReply *r;

        if (argc < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        r = mirror_sync_cmd(c, argc, argv, lens, err, errlen);
        if (r == NULL)
            return -1;
        st = mrestore_feed(rs, r);
        freeReplyObject(r);
        if (st < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return st == 0 ? mirror_restore_stream(c, rs, err, errlen) : 0;
}

/* Shards the restore found empty and that no new id can fall in are
 * dropped (a crash can leave one behind), on the blocking connection
 * before anything else writes. Best effort: a resync drops them too. */
static void mirror_restore_drop_empty(mirror_t *mi, redisContext *c, const mrestore_t *rs)
{
    uint64_t open = mrestore_shard(broker_next_id(mi->b)), s;
    const char *name;
    char num[24];

    for (size_t i = 0; mrestore_empty_shard(rs, i, &name, &s); i++) {
        const char *argv[6] = {"EVAL", mirror_lua_drop, "0", mi->prefix, name, num};
        size_t lens[6] = {4, strlen(mirror_lua_drop), 1, strlen(mi->prefix), strlen(name),
                          dec_u64(num, s)};
        redisReply *r;
        if (s >= open)
            continue;
        r = redisCommandArgv(c, 6, argv, lens);
        if (r == NULL)
            return;
        freeReplyObject(r);
    }
}

/* 0 restored (maybe nothing), -1 Redis unreachable (logged). */
static int mirror_restore_sync(mirror_t *mi)
{
    char err[256];
    redisContext *c = mirror_sync_connect(mi, err, sizeof err);
    mrestore_t *rs;
    int st;

    if (c == NULL) {
        log_warn("redis mirror: cannot restore from %s: %s; serving now, restoring on the "
                 "first connection",
                 mirror_target(mi), err);
        return -1;
    }
    rs = mrestore_new(mi->prefix, clock_ms());
    if (rs == NULL) {
        redisFree(c);
        log_error("redis mirror: out of memory for the restore");
        return -1;
    }
    st = mirror_restore_read(c, rs, err, sizeof err);
    if (st < 0) {
        redisFree(c);
        log_warn("redis mirror: restore from %s failed: %s; serving now, restoring on the "
                 "first connection",
                 mi->where, err);
        mrestore_free(rs);
        return -1;
    }
    /* Our reader builds no replies: the drops' replies need hiredis's own. */
    redisReaderFree(c->reader);
    c->reader = redisReaderCreate();
    mi->dirty = false; /* unless the apply says otherwise */
    mirror_restore_apply(mi, rs);
    if (c->reader != NULL)
        mirror_restore_drop_empty(mi, c, rs);
    redisFree(c);
    /* Redis holds exactly what was just loaded, unless some of it is in the
     * old single-hash schema: a resync rewrites that in shards. */
    if (mrestore_found_old(rs))
        mi->dirty = true;
    mrestore_free(rs);
    return 0;
}

/* ---- life ---- */

static void mirror_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static char **mirror_strv_dup(char *const *v, size_t n)
{
    char **d = calloc(n + 1, sizeof *d);

    for (size_t i = 0; d != NULL && i < n; i++)
        if ((d[i] = strdup(v[i])) == NULL) {
            mirror_strv_free(d, n);
            return NULL;
        }
    return d;
}

static void mirror_strings_free(mirror_t *mi)
{
    free(mi->address);
    free(mi->password);
    free(mi->prefix);
    free(mi->master);
    free(mi->sentinel_password);
    mirror_strv_free(mi->sentinels, mi->nsentinels);
}

static int mirror_settings(mirror_t *mi, const config_t *cfg)
{
    mirror_t n = {0};

    n.address = strdup(cfg->redis.address);
    n.password = strdup(cfg->redis.password);
    n.prefix = strdup(cfg->redis.prefix);
    n.master = strdup(cfg->redis.master);
    n.sentinel_password = strdup(cfg->redis.sentinel_password);
    n.sentinels = mirror_strv_dup(cfg->redis.sentinels, cfg->redis.nsentinels);
    n.nsentinels = cfg->redis.nsentinels;
    if (n.address == NULL || n.password == NULL || n.prefix == NULL || n.master == NULL ||
        n.sentinel_password == NULL || n.sentinels == NULL) {
        mirror_strings_free(&n);
        return -1;
    }
    mirror_strings_free(mi);
    mi->address = n.address;
    mi->password = n.password;
    mi->prefix = n.prefix;
    mi->master = n.master;
    mi->sentinel_password = n.sentinel_password;
    mi->sentinels = n.sentinels;
    mi->nsentinels = n.nsentinels;
    mi->replicas = cfg->redis.replicas;
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
    mirror_strings_free(&tmp);
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
    if (restore && cfg->redis.restore && mirror_restore_sync(mi) < 0)
        mi->restore_pending = true;
    if (mi->nsentinels > 0 && mirror_sentinel_start(mi) < 0) {
        mirror_free(mi);
        return NULL;
    }
    mirror_apply_mode(mi);
    mirror_arm_stats(mi);
    server_set_mirror(srv, mirror_status_of, mi);
    mirror_connect(mi);
    return mi;
}

/* Do the sentinel settings of cfg differ from mi's? */
static bool mirror_sentinels_changed(const mirror_t *mi, const config_t *cfg)
{
    if (cfg->redis.nsentinels != mi->nsentinels || strcmp(cfg->redis.master, mi->master) != 0 ||
        strcmp(cfg->redis.sentinel_password, mi->sentinel_password) != 0)
        return true;
    for (size_t i = 0; i < mi->nsentinels; i++)
        if (strcmp(cfg->redis.sentinels[i], mi->sentinels[i]) != 0)
            return true;
    return false;
}

void mirror_configure(mirror_t *mi, const config_t *cfg)
{
    bool resent = mirror_sentinels_changed(mi, cfg);
    bool reconnect = strcmp(cfg->redis.address, mi->address) != 0 ||
                     strcmp(cfg->redis.password, mi->password) != 0 ||
                     cfg->redis.db != mi->db || strcmp(cfg->redis.prefix, mi->prefix) != 0 ||
                     cfg->redis.mirror != mi->mode || resent;
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
    if (resent) {
        /* Other sentinels, or another master: start over, asking them. */
        mirror_sentinel_free(mi);
        mi->where[0] = '\0';
        if (mi->nsentinels > 0 && mirror_sentinel_start(mi) < 0)
            log_error("redis mirror: out of memory for the sentinels; connecting to %s",
                      mi->address);
    }
    log_info("redis mirror: settings changed; reconnecting to %s",
             mi->nsentinels > 0 ? "the master the sentinels name" : mi->address);
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

    for (size_t i = 0; mi->held.slots != NULL && i <= mi->held.mask; i++)
        if (mi->held.slots[i].id != 0)
            broker_confirm(mi->b, mi->held.slots[i].id, false, now);
    idtab_destroy(&mi->held);
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
    mirror_sentinel_free(mi);
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
        mirror_u64s_free(&mt->shards);
        mirror_u64s_free(&mt->checks);
        mirror_refs_free(&mt->metas);
        mirror_u64s_free(&mt->mdels);
        free(mt);
    }
    free(mi->tslot);
    mbuf_free(&mi->small);
    mbuf_free(&mi->cmd);
    idtab_destroy(&mi->gone);
    mbuf_free(&mi->names);
    mbuf_free(&mi->chunk);
    mbuf_free(&mi->chunk_att);
    mbuf_free(&mi->chunk_meta);
    idtab_destroy(&mi->metaids);
    mirror_u64s_free(&mi->chunk_held);
    mirror_u64s_free(&mi->swap_ids);
    mirror_u64s_free(&mi->stored);
    free(mi->holds);
    mirror_snapshot_free(mi);
    mrestore_free(mi->rs);
    free(mi->key);
    mirror_strings_free(mi);
    server_set_mirror(mi->srv, NULL, NULL);
    free(mi);
}
