/* mirror_sentinel.c: the mirror behind Redis Sentinel (redis.sentinels,
 * docs/redis.md "Redis Sentinel").
 *
 * Before each mirror connection the sentinels are asked in turn where the
 * master is (SENTINEL get-master-addr-by-name, each ask on a short-lived
 * connection of its own with a timeout, starting at the sentinel that
 * answered last); the mirror then connects there and checks with ROLE
 * that it reached a master (mirror_link.c sends it; a replica is dropped
 * and the sentinels are asked again after the backoff). One more
 * connection stays SUBSCRIBEd to +switch-master at one sentinel: a switch
 * of our master moves the mirror to the new one at once, and the resync
 * of the new connection brings it up to date with the broker. A lost
 * subscription is made again through the next sentinel, with backoff.
 * Everything runs on the daemon's loop and never waits; only
 * mirror_sentinel_sync blocks, at start-up, before the loop runs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "mirror_int.h"

#define MSENT_ASK_MS 1000 /* one ask, or a subscription's setup, before the next sentinel */

struct msent {
    /* asking where the master is */
    redisAsyncContext *ask;  /* the ask in flight, or NULL */
    struct event *ask_ev;    /* its timeout */
    size_t ask_at;           /* the sentinel asked; a round starts at the last that answered */
    size_t ask_left;         /* sentinels this round has not asked yet */
    char ask_why[160];       /* why the last one gave no answer */
    char hint[MIRROR_WHERE_MAX]; /* a +switch-master's new master: the next connection goes
                                  * there without asking */
    /* the +switch-master subscription */
    redisAsyncContext *sub;
    struct event *sub_ev;    /* its setup's timeout; without a connection, the resubscribe */
    size_t sub_at;
    bool subscribed;
    bool sub_complained;     /* a failure was logged: quiet until subscribed again */
    uint64_t sub_backoff_ms;
};

/* What the mirror is after, for log lines: where it connects, or before
 * the sentinels said where, the master's name. */
const char *mirror_target(const mirror_t *mi)
{
    static char label[300];

    if (mi->where[0] != '\0' || mi->nsentinels == 0)
        return mi->where[0] != '\0' ? mi->where : mi->address;
    snprintf(label, sizeof label, "master %s", mi->master);
    return label;
}

/* "ip:port" of a sentinel's answer ("[ip]:port" for IPv6) into out. */
static void msent_addr(char *out, size_t n, const char *ip, size_t iplen, const char *port,
                       size_t portlen)
{
    bool v6 = memchr(ip, ':', iplen) != NULL;

    snprintf(out, n, "%s%.*s%s:%.*s", v6 ? "[" : "", (int)iplen, ip, v6 ? "]" : "",
             (int)portlen, port);
}

/* A get-master-addr-by-name reply: the master's address into out, or
 * false with why (an unknown name is a nil reply). */
static bool msent_answer(const mirror_t *mi, const redisReply *r, char *out, size_t n,
                         char *why, size_t wn)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[0]->len > 0 && r->element[1]->len > 0) {
        msent_addr(out, n, r->element[0]->str, r->element[0]->len, r->element[1]->str,
                   r->element[1]->len);
        return true;
    }
    if (r->type == REDIS_REPLY_ERROR)
        snprintf(why, wn, "%.*s", (int)(r->len < 120 ? r->len : 120), r->str);
    else
        snprintf(why, wn, "does not know master %s", mi->master);
    return false;
}

/* A ROLE reply: "master", or false with why. */
bool mirror_is_master(const redisReply *r, char *why, size_t n)
{
    const redisReply *role = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0] : NULL;
    bool named = role != NULL && role->type == REDIS_REPLY_STRING;

    if (named && strcmp(role->str, "master") == 0)
        return true;
    snprintf(why, n, "not a master (ROLE says %.*s)",
             named ? (int)(role->len < 20 ? role->len : 20) : 1, named ? role->str : "?");
    return false;
}

/* The mirror goes to `addr` now: one line when that is a move. */
static void msent_goto(mirror_t *mi, const char *addr, const char *how)
{
    if (mi->where[0] != '\0' && strcmp(mi->where, addr) != 0)
        log_warn("redis mirror: master %s moved from %s to %s (%s)", mi->master, mi->where, addr,
                 how);
    snprintf(mi->where, sizeof mi->where, "%s", addr);
}

static void msent_ask_master(const mirror_t *mi, redisAsyncContext *ac, redisCallbackFn *cb)
{
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", mi->master};
    size_t lens[3] = {8, 23, strlen(mi->master)};

    redisAsyncCommandArgv(ac, cb, NULL, 3, argv, lens);
}

/* ---- asking where the master is ---- */

static void msent_ask_next(mirror_t *mi);
static void msent_hooks(mirror_t *mi, redisAsyncContext *ac);

/* Close the ask ourselves (its callbacks then see it is no longer ours). */
static void msent_ask_close(struct msent *s)
{
    redisAsyncContext *ac = s->ask;

    s->ask = NULL;
    event_del(s->ask_ev);
    if (ac != NULL)
        redisAsyncFree(ac);
}

/* This sentinel gave no answer (the ask is closed, or hiredis closes it):
 * the next one, or after the whole round the backoff. */
static void msent_ask_failed(mirror_t *mi, const char *why)
{
    struct msent *s = mi->sent;
    char line[400];

    event_del(s->ask_ev);
    snprintf(s->ask_why, sizeof s->ask_why, "%s: %s", mi->sentinels[s->ask_at], why);
    log_debug("redis mirror: sentinel %s", s->ask_why);
    s->ask_at = (s->ask_at + 1) % mi->nsentinels;
    if (s->ask_left > 0) {
        msent_ask_next(mi);
        return;
    }
    snprintf(line, sizeof line, "no sentinel said where it is (last, %s)", s->ask_why);
    mirror_down(mi, line, false);
}

static void msent_on_ask_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    mirror_t *mi = ac->data;
    struct msent *s = mi->sent;
    const redisReply *r = reply;
    char addr[MIRROR_WHERE_MAX], why[160], how[200];

    (void)priv;
    if (s == NULL || s->ask != ac || r == NULL)
        return;
    msent_ask_close(s);
    if (!msent_answer(mi, r, addr, sizeof addr, why, sizeof why)) {
        msent_ask_failed(mi, why);
        return;
    }
    snprintf(how, sizeof how, "sentinel %s says so", mi->sentinels[s->ask_at]);
    msent_goto(mi, addr, how);
    mirror_connect_where(mi);
}

static void msent_on_ask_timeout(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;

    (void)fd;
    (void)what;
    if (mi->sent->ask == NULL)
        return;
    msent_ask_close(mi->sent);
    msent_ask_failed(mi, "no answer in time");
}

static void msent_ask_next(mirror_t *mi)
{
    struct msent *s = mi->sent;
    struct timeval tv = clock_tv(MSENT_ASK_MS);
    redisAsyncContext *ac;
    char why[160];

    s->ask_left--;
    ac = mirror_open(mi, mi->sentinels[s->ask_at], why, sizeof why);
    if (ac == NULL) {
        msent_ask_failed(mi, why);
        return;
    }
    s->ask = ac;
    msent_hooks(mi, ac);
    msent_ask_master(mi, ac, msent_on_ask_reply);
    evtimer_add(s->ask_ev, &tv);
}

/* Find the master, then connect the mirror to it (mirror_connect_where);
 * if no sentinel answers, mirror_down's backoff tries again. */
void mirror_sentinel_resolve(mirror_t *mi)
{
    struct msent *s = mi->sent;

    msent_ask_close(s); /* a round in flight is stale now */
    if (s->hint[0] != '\0') {
        msent_goto(mi, s->hint, "+switch-master");
        s->hint[0] = '\0';
        mirror_connect_where(mi);
        return;
    }
    s->ask_left = mi->nsentinels;
    msent_ask_next(mi);
}

/* ---- the +switch-master subscription ---- */

static void msent_subscribe(mirror_t *mi);

static void msent_sub_close(struct msent *s)
{
    redisAsyncContext *ac = s->sub;

    s->sub = NULL;
    s->subscribed = false;
    event_del(s->sub_ev);
    if (ac != NULL)
        redisAsyncFree(ac);
}

/* No subscription (closed, or hiredis closes it): through the next
 * sentinel, after the backoff. */
static void msent_sub_lost(mirror_t *mi, const char *why)
{
    struct msent *s = mi->sent;
    struct timeval tv = clock_tv(s->sub_backoff_ms);
    size_t next = (s->sub_at + 1) % mi->nsentinels;

    s->subscribed = false;
    if (!s->sub_complained)
        log_warn("redis mirror: no +switch-master subscription at sentinel %s: %s; trying %s",
                 mi->sentinels[s->sub_at], why, mi->sentinels[next]);
    else
        log_debug("redis mirror: sentinel %s: %s", mi->sentinels[s->sub_at], why);
    s->sub_complained = true;
    s->sub_at = next;
    event_del(s->sub_ev);
    evtimer_add(s->sub_ev, &tv);
    s->sub_backoff_ms = s->sub_backoff_ms * 2 > MIRROR_BACKOFF_MAX_MS ? MIRROR_BACKOFF_MAX_MS
                                                                       : s->sub_backoff_ms * 2;
}

/* ---- either connection ---- */

/* The ask or the subscription failed for `why`: dropped by hiredis (it
 * frees the context) or by us (`ours`: we free it). A context that is
 * neither any more is stale and ignored. */
static void msent_conn_failed(mirror_t *mi, const redisAsyncContext *ac, const char *why,
                              bool ours)
{
    struct msent *s = mi->sent;

    if (s == NULL)
        return;
    if (s->ask == ac) {
        if (ours)
            msent_ask_close(s);
        else
            s->ask = NULL;
        msent_ask_failed(mi, why);
    } else if (s->sub == ac) {
        if (ours)
            msent_sub_close(s);
        else
            s->sub = NULL;
        msent_sub_lost(mi, why);
    }
}

static void msent_on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        msent_conn_failed(ac->data, ac, ac->errstr != NULL ? ac->errstr : "connect failed", false);
}

static void msent_on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    msent_conn_failed(ac->data, ac,
                      ac->errstr != NULL && ac->errstr[0] ? ac->errstr : "connection closed", false);
}

static void msent_on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    const redisReply *r = reply;
    char why[160];

    (void)priv;
    if (r == NULL || r->type != REDIS_REPLY_ERROR)
        return;
    snprintf(why, sizeof why, "AUTH refused: %.*s", (int)(r->len < 120 ? r->len : 120), r->str);
    msent_conn_failed(ac->data, ac, why, true);
}

/* A new connection to a sentinel: its losses come to msent_conn_failed,
 * and it sends AUTH first if the sentinels want a password. */
static void msent_hooks(mirror_t *mi, redisAsyncContext *ac)
{
    const char *argv[2] = {"AUTH", mi->sentinel_password};
    size_t lens[2] = {4, strlen(mi->sentinel_password)};

    redisAsyncSetConnectCallback(ac, msent_on_connect);
    redisAsyncSetDisconnectCallback(ac, msent_on_disconnect);
    if (mi->sentinel_password[0] != '\0')
        redisAsyncCommandArgv(ac, msent_on_auth, NULL, 2, argv, lens);
}

/* Our master is at addr (a +switch-master, or the subscription's own
 * look): a mirror connected elsewhere moves there at once. */
static void msent_switched(mirror_t *mi, const char *addr)
{
    struct msent *s = mi->sent;

    if (strcmp(mi->where, addr) == 0 && (mi->ac != NULL || s->ask != NULL))
        return; /* there already, or on the way */
    msent_ask_close(s); /* its answer would be older than this */
    snprintf(s->hint, sizeof s->hint, "%s", addr);
    mirror_switch(mi);
}

/* The answer to the ask sent before SUBSCRIBE: a switch missed while
 * there was no subscription shows here. */
static void msent_on_sub_check(redisAsyncContext *ac, void *reply, void *priv)
{
    mirror_t *mi = ac->data;
    struct msent *s = mi->sent;
    const redisReply *r = reply;
    char addr[MIRROR_WHERE_MAX], why[160];

    (void)priv;
    if (s == NULL || s->sub != ac || r == NULL)
        return;
    if (msent_answer(mi, r, addr, sizeof addr, why, sizeof why) && mi->ac != NULL &&
        strcmp(mi->where, addr) != 0)
        msent_switched(mi, addr);
}

/* +switch-master's message: "<name> <old ip> <old port> <new ip> <new port>". */
static void msent_on_switch(mirror_t *mi, const redisReply *msg)
{
    char name[256], oip[ADDR_HOST_MAX], oport[8], nip[ADDR_HOST_MAX], nport[8];
    char text[700], addr[MIRROR_WHERE_MAX];

    if (msg->type != REDIS_REPLY_STRING || msg->len >= sizeof text)
        return;
    memcpy(text, msg->str, msg->len);
    text[msg->len] = '\0';
    if (sscanf(text, "%255s %255s %7s %255s %7s", name, oip, oport, nip, nport) != 5 ||
        strcmp(name, mi->master) != 0)
        return;
    msent_addr(addr, sizeof addr, nip, strlen(nip), nport, strlen(nport));
    log_debug("redis mirror: sentinel %s: +switch-master %s", mi->sentinels[mi->sent->sub_at],
              text);
    msent_switched(mi, addr);
}

static void msent_on_sub_msg(redisAsyncContext *ac, void *reply, void *priv)
{
    mirror_t *mi = ac->data;
    struct msent *s = mi->sent;
    const redisReply *r = reply;
    const redisReply *kind;

    (void)priv;
    if (s == NULL || s->sub != ac || r == NULL)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        (kind = r->element[0])->type != REDIS_REPLY_STRING) {
        if (r->type == REDIS_REPLY_ERROR) {
            char why[160];
            snprintf(why, sizeof why, "SUBSCRIBE refused: %.*s",
                     (int)(r->len < 120 ? r->len : 120), r->str);
            msent_sub_close(s);
            msent_sub_lost(mi, why);
        }
        return;
    }
    if (strcmp(kind->str, "subscribe") == 0) {
        s->subscribed = true;
        event_del(s->sub_ev);
        s->sub_backoff_ms = MIRROR_BACKOFF_MIN_MS;
        if (s->sub_complained)
            log_info("redis mirror: subscribed to +switch-master at sentinel %s",
                     mi->sentinels[s->sub_at]);
        s->sub_complained = false;
    } else if (strcmp(kind->str, "message") == 0) {
        msent_on_switch(mi, r->element[2]);
    }
}

static void msent_on_sub_timer(evutil_socket_t fd, short what, void *arg)
{
    mirror_t *mi = arg;
    struct msent *s = mi->sent;

    (void)fd;
    (void)what;
    if (s->sub == NULL) {
        msent_subscribe(mi);
    } else if (!s->subscribed) {
        msent_sub_close(s);
        msent_sub_lost(mi, "no answer in time");
    }
}

static void msent_subscribe(mirror_t *mi)
{
    struct msent *s = mi->sent;
    struct timeval tv = clock_tv(MSENT_ASK_MS);
    const char *argv[2] = {"SUBSCRIBE", "+switch-master"};
    size_t lens[2] = {9, 14};
    redisAsyncContext *ac;
    char why[160];

    ac = mirror_open(mi, mi->sentinels[s->sub_at], why, sizeof why);
    if (ac == NULL) {
        msent_sub_lost(mi, why);
        return;
    }
    s->sub = ac;
    s->subscribed = false;
    msent_hooks(mi, ac);
    msent_ask_master(mi, ac, msent_on_sub_check);
    redisAsyncCommandArgv(ac, msent_on_sub_msg, NULL, 2, argv, lens);
    evtimer_add(s->sub_ev, &tv);
}

/* ---- life ---- */

int mirror_sentinel_start(mirror_t *mi)
{
    struct msent *s = calloc(1, sizeof *s);

    if (s == NULL)
        return -1;
    s->ask_ev = evtimer_new(mi->base, msent_on_ask_timeout, mi);
    s->sub_ev = evtimer_new(mi->base, msent_on_sub_timer, mi);
    s->sub_backoff_ms = MIRROR_BACKOFF_MIN_MS;
    if (s->ask_ev == NULL || s->sub_ev == NULL) {
        if (s->ask_ev != NULL)
            event_free(s->ask_ev);
        if (s->sub_ev != NULL)
            event_free(s->sub_ev);
        free(s);
        return -1;
    }
    mi->sent = s;
    msent_subscribe(mi);
    return 0;
}

void mirror_sentinel_free(mirror_t *mi)
{
    struct msent *s = mi->sent;

    if (s == NULL)
        return;
    /* Callbacks run during the frees below: they find no state and return. */
    mi->sent = NULL;
    if (s->ask != NULL) {
        redisAsyncContext *ac = s->ask;
        s->ask = NULL;
        redisAsyncFree(ac);
    }
    if (s->sub != NULL) {
        redisAsyncContext *ac = s->sub;
        s->sub = NULL;
        redisAsyncFree(ac);
    }
    event_free(s->ask_ev);
    event_free(s->sub_ev);
    free(s);
}

/* ---- at start-up (blocking, before the loop runs) ---- */

/* One sentinel's answer, on a blocking connection: 0 with mi->where set. */
static int msent_sync_one(mirror_t *mi, const char *sentinel, char *why, size_t n)
{
    struct timeval tv = clock_tv(MSENT_ASK_MS);
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", mi->master};
    size_t lens[3] = {8, 23, strlen(mi->master)};
    const char *auth[2] = {"AUTH", mi->sentinel_password};
    size_t alens[2] = {4, strlen(mi->sentinel_password)};
    char addr[MIRROR_WHERE_MAX];
    redisContext *c;
    redisReply *r;
    addr_t a;
    int rc = -1;

    if (addr_parse(sentinel, ADDR_REDIS, &a) != NULL) {
        snprintf(why, n, "bad address");
        return -1;
    }
    c = a.kind == ADDR_KIND_UNIX ? redisConnectUnixWithTimeout(a.path, tv)
                                 : redisConnectWithTimeout(a.host, a.port, tv);
    if (c == NULL || c->err) {
        snprintf(why, n, "%s", c != NULL ? c->errstr : "out of memory");
        redisFree(c);
        return -1;
    }
    redisSetTimeout(c, tv);
    if (mi->sentinel_password[0] != '\0') {
        r = redisCommandArgv(c, 2, auth, alens);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, n, "AUTH refused: %s", r != NULL ? r->str : c->errstr);
            freeReplyObject(r);
            redisFree(c);
            return -1;
        }
        freeReplyObject(r);
    }
    r = redisCommandArgv(c, 3, argv, lens);
    if (r == NULL)
        snprintf(why, n, "%s", c->errstr[0] ? c->errstr : "no reply");
    else if (msent_answer(mi, r, addr, sizeof addr, why, n)) {
        snprintf(mi->where, sizeof mi->where, "%s", addr);
        rc = 0;
    }
    freeReplyObject(r);
    redisFree(c);
    return rc;
}

/* Ask the sentinels in turn where the master is, into mi->where. 0, or
 * -1 with why in err. */
int mirror_sentinel_sync(mirror_t *mi, char *err, size_t n)
{
    char why[160] = "";

    for (size_t i = 0; i < mi->nsentinels; i++) {
        if (msent_sync_one(mi, mi->sentinels[i], why, sizeof why) == 0)
            return 0;
        log_debug("redis mirror: sentinel %s: %s", mi->sentinels[i], why);
    }
    snprintf(err, n, "no sentinel said where it is (last, %s: %s)",
             mi->sentinels[mi->nsentinels - 1], why);
    return -1;
}
