/* mirror_link.c: the mirror's hiredis connection: commands handed to
 * hiredis (never waiting for replies; every command carries an mreq_t),
 * connect, AUTH/SELECT/durability check, loss and backoff, and the one
 * place every reply is dispatched to the part that sent it. With
 * sentinels, where to connect comes from mirror_sentinel.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "addr.h"
#include "clock.h"
#include "dec.h"
#include "log.h"
#include "mirror_int.h"

mreq_t *mirror_req(const mirror_t *mi, int kind, const uint64_t *ids, size_t nids)
{
    mreq_t *req = malloc(sizeof *req + nids * sizeof(uint64_t));

    if (req == NULL)
        return NULL;
    req->kind = kind;
    req->temp = false;
    req->waited = mi->confirm && mi->replicas > 0;
    req->gen = mi->gen;
    req->bytes = 0;
    req->nids = nids;
    if (nids > 0)
        memcpy(req->ids, ids, nids * sizeof(uint64_t));
    return req;
}

/* req was handed to hiredis. A waited write owes a WAIT behind it. */
static void mirror_count(mirror_t *mi, const mreq_t *req)
{
    if (mi->lag_ops == 0)
        mi->last_progress = clock_ms();
    mi->lag_ops++;
    mi->lag_bytes += req->bytes;
    if (__builtin_expect(req->waited, 0) && (req->kind == REQ_HELD || req->kind == REQ_SWAP))
        mi->wait_owed = true;
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
    mirror_count(mi, req);
    return 0;
}

/* Send "<verb> <key> <the arguments in b>". b is left as it was. */
int mirror_send(mirror_t *mi, const char *verb, const char *key, size_t klen, mbuf_t *b,
                       mreq_t *req)
{
    char fixed[MBUF_HEAD_MAX];
    size_t n = mbuf_head(fixed, b->nargs, verb, klen);
    size_t hlen = n + klen + 2, body = b->len - b->room;
    char *cmd;
    int rc;

    if (klen == 0) {
        free(req);
        return -1;
    }
    if (hlen <= b->room) {
        cmd = b->p + b->room - hlen;
        memcpy(cmd, fixed, n);
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
    memcpy(cmd, fixed, n);
    memcpy(cmd + n, key, klen);
    memcpy(cmd + n + klen, "\r\n", 2);
    memcpy(cmd + hlen, b->p + b->room, body);
    rc = mirror_raw(mi, cmd, hlen + body, req);
    free(cmd);
    return rc;
}

int mirror_argv(mirror_t *mi, mreq_t *req, int argc, const char **argv,
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
    mirror_count(mi, req);
    return 0;
}

/* EVAL a script with the prefix (and an optional flag) as arguments. */
int mirror_eval(mirror_t *mi, int kind, const char *script, const char *flag)
{
    const char *argv[5] = {"EVAL", script, "0", mi->prefix, flag};
    size_t lens[5] = {4, strlen(script), 1, strlen(mi->prefix), flag ? strlen(flag) : 0};

    return mirror_argv(mi, mirror_req(mi, kind, NULL, 0), flag ? 5 : 4, argv, lens);
}

/* ---- the connection ---- */

/* No connection any more (hiredis frees or has freed it), or none could
 * be made: retry later. */
void mirror_down(mirror_t *mi, const char *why, bool quiet)
{
    struct timeval tv = clock_tv(mi->backoff_ms);

    mirror_abort(mi);
    mirror_wait_reset(mi);
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
        log_warn("redis mirror: cannot use %s: %s; retrying", mirror_target(mi), why);
        mi->complained = true;
    } else {
        log_debug("redis mirror: %s: %s", mirror_target(mi), why);
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
void mirror_drop_ex(mirror_t *mi, const char *why, bool quiet)
{
    redisAsyncContext *ac = mi->ac;

    if (ac == NULL)
        return;
    mi->ac = NULL;
    redisAsyncFree(ac);
    mirror_down(mi, why, quiet);
}

void mirror_drop(mirror_t *mi, const char *why)
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

void mirror_on_connect_timeout(evutil_socket_t fd, short what, void *arg)
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
        log_info("redis mirror connected to %s (%s%s%sdb %" PRIu32 ", prefix %s, mirror %s%s)",
                 mi->where, mi->sent != NULL ? "master " : "",
                 mi->sent != NULL ? mi->master : "", mi->sent != NULL ? ", " : "", mi->db,
                 mi->prefix,
                 mi->mode == MIRROR_MESSAGES ? "messages" : "stats",
                 mi->mode == MIRROR_MESSAGES && mi->confirm ? ", confirm" : "");
        mi->up_logged = true;
    }
    if (mi->phase == P_LIVE)
        mirror_healthy(mi);
    if (mi->phase != P_RESTORE)
        mirror_write_stats(mi);
}

/* A hiredis connection to address on the daemon's loop, with ac->data =
 * mi (the mirror's own, and the sentinels'). NULL with why in `why`. */
redisAsyncContext *mirror_open(mirror_t *mi, const char *address, char *why, size_t n)
{
    addr_t a;
    redisAsyncContext *ac;

    if (addr_parse(address, ADDR_REDIS, &a) != NULL) {
        snprintf(why, n, "bad address");
        return NULL;
    }
    ac = a.kind == ADDR_KIND_UNIX ? redisAsyncConnectUnix(a.path) : redisAsyncConnect(a.host, a.port);
    if (ac == NULL) {
        snprintf(why, n, "out of memory");
        return NULL;
    }
    if (ac->err) {
        snprintf(why, n, "%s", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = mi;
    if (redisLibeventAttach(ac, mi->base) != REDIS_OK) {
        redisAsyncFree(ac);
        snprintf(why, n, "cannot attach to the event loop");
        return NULL;
    }
    return ac;
}

/* Connect to where Redis is: the address, or with sentinels wherever
 * they say the master is (they call mirror_connect_where). */
void mirror_connect(mirror_t *mi)
{
    if (mi->ac != NULL)
        return; /* connected (or connecting) since the retry was armed */
    if (mi->sent != NULL) {
        mirror_sentinel_resolve(mi);
        return;
    }
    snprintf(mi->where, sizeof mi->where, "%s", mi->address);
    mirror_connect_where(mi);
}

void mirror_connect_where(mirror_t *mi)
{
    redisAsyncContext *ac;
    struct timeval tv = clock_tv(MIRROR_CONNECT_TIMEOUT_MS);
    const char *argv[2];
    size_t lens[2];
    char num[24], why[256];

    if ((ac = mirror_open(mi, mi->where, why, sizeof why)) == NULL) {
        mirror_down(mi, why, false);
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
        lens[1] = dec_u64(num, mi->db);
        mirror_argv(mi, mirror_req(mi, REQ_SETUP, NULL, 0), 2, argv, lens);
    }
    if (mi->durability != DURABILITY_MEMORY) {
        const char *check[3] = {"CONFIG", "GET", "append*"};
        size_t clens[3] = {6, 3, 7};
        mirror_argv(mi, mirror_req(mi, REQ_CHECK, NULL, 0), 3, check, clens);
    }
    if (mi->sent != NULL) {
        /* A sentinel's answer can be stale: make sure before writing. Its
         * reply comes before any write's, and drops the connection if need be. */
        argv[0] = "ROLE";
        lens[0] = 4;
        mirror_argv(mi, mirror_req(mi, REQ_ROLE, NULL, 0), 1, argv, lens);
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

void mirror_retry_now(mirror_t *mi)
{
    struct timeval zero = {0, 0};

    evtimer_add(mi->retry_ev, &zero);
}

void mirror_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mirror_connect(arg);
}

/* The master moved (a sentinel said so): leave the old one and connect
 * again at once; the new connection resynchronises. */
void mirror_switch(mirror_t *mi)
{
    if (mi->ac != NULL)
        mirror_drop_ex(mi, "the master moved", true);
    mi->backoff_ms = MIRROR_BACKOFF_MIN_MS;
    event_del(mi->retry_ev);
    mirror_retry_now(mi);
}

/* ---- replies ---- */

void mirror_restore_send(mirror_t *mi)
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
bool mirror_durable_enough(durability_t d, const redisReply *r, char *why, size_t n)
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

/* Replies that belong to the connection's setup. */
static bool mirror_setup_kind(int kind)
{
    return kind == REQ_SETUP || kind == REQ_CHECK || kind == REQ_ROLE || kind == REQ_READY;
}

/* An error reply to req. A READONLY write (with sentinels: the master we
 * had came back as a replica) drops the connection like any other, and
 * the next one asks the sentinels again. */
static void mirror_refused(mirror_t *mi, const mreq_t *req, const redisReply *r)
{
    char why[256];

    snprintf(why, sizeof why, "%s refused: %.*s",
             req->kind == REQ_SETUP   ? "setup"
             : req->kind == REQ_CHECK ? "CONFIG GET (needed by redis.durability)"
             : req->kind == REQ_ROLE  ? "ROLE (needed by redis.sentinels)"
             : req->kind == REQ_READY ? "setup script"
             : req->kind == REQ_WAIT  ? "WAIT (needed by redis.replicas)"
                                      : "a write",
             (int)(r->len < 200 ? r->len : 200), r->str);
    if (mirror_setup_kind(req->kind)) {
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
        if (current || (same_conn && (mirror_setup_kind(req->kind) || req->kind == REQ_WAIT)))
            mirror_refused(mi, req, r);
        return;
    }
    switch (req->kind) {
    case REQ_CHECK:
        if (same_conn)
            mirror_check_reply(mi, r);
        break;
    case REQ_ROLE:
        if (same_conn) {
            char why[128];
            if (!mirror_is_master(r, why, sizeof why))
                mirror_drop(mi, why);
        }
        break;
    case REQ_WAIT:
        if (same_conn)
            mirror_wait_reply(mi, r);
        break;
    case REQ_READY:
        if (same_conn)
            mirror_established(mi);
        break;
    case REQ_HELD:
        if (!req->temp) {
            if (same_conn || !req->waited)
                mirror_stored(mi, req->waited, req->ids, req->nids);
        } else if (current)
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
        mirror_stored(mi, req->waited, mi->swap_ids.v, mi->swap_ids.n);
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

void mirror_on_reply(redisAsyncContext *ac, void *reply, void *priv)
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
