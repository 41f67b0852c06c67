/* check_sentinel.c: the mirror behind Redis Sentinel (redis.sentinels,
 * redis.replicas; docs/redis.md "Redis Sentinel") against real
 * redis-server and redis-sentinel processes that each test starts on
 * ephemeral loopback ports, each in a temp directory of its own with a
 * writable config (Sentinel rewrites its file). A missing redis-sentinel
 * skips the Sentinel tests on a developer's machine and fails them in CI
 * (CI=true); a missing redis-server always fails.
 *
 * Waits are bounded polls for conditions ("until Sentinel names the
 * replica, at most N seconds"); nothing asserts how long anything took.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ck_redis.h"
#include "harness.h"

#define WAIT_MS 30000 /* longest a condition may take before the test fails */
#define MASTER "mm"   /* the name the sentinels monitor the master by */

/* ---- redis-server and redis-sentinel processes ---- */

/* The Sentinel tests need redis-sentinel: without it they are skipped,
 * except in CI, where it is a failure (build.sh installs it). */
static bool have_sentinel(void)
{
    const char *ci = getenv("CI");

    if (ckr_sentinel_bin() != NULL)
        return true;
    ck_assert_msg(ci == NULL || strcmp(ci, "true") != 0,
                  "redis-sentinel is not on PATH (apt-get install redis-sentinel)");
    fprintf(stderr, "redis-sentinel is not on PATH: skipping\n");
    return false;
}

/* A sentinel monitoring the master at port `master` as MASTER. */
static void sentinel_start(ckr_t *s, int master, int quorum, int down_ms)
{
    char conf[512];

    snprintf(conf, sizeof conf,
             "sentinel monitor " MASTER " 127.0.0.1 %d %d\n"
             "sentinel down-after-milliseconds " MASTER " %d\n"
             "sentinel failover-timeout " MASTER " 4000\n"
             "sentinel parallel-syncs " MASTER " 1\n",
             master, quorum, down_ms);
    ckr_sentinel(s, conf, WAIT_MS);
}

/* The port of the master sentinel s names, 0 if none. */
static int sentinel_master(const ckr_t *s)
{
    redisReply *r = ckr_cmd(s, 0, "SENTINEL get-master-addr-by-name " MASTER);
    int port = 0;

    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING)
        port = atoi(r->element[1]->str);
    freeReplyObject(r);
    return port;
}

static bool wait_sentinel_master(const ckr_t *s, int port)
{
    uint64_t until = sd_now_ms() + WAIT_MS;

    while (sd_now_ms() < until) {
        if (sentinel_master(s) == port)
            return true;
        sd_sleep_ms(50);
    }
    return false;
}

/* The replica's link to its master is up. */
static bool wait_replica_up(const ckr_t *replica)
{
    uint64_t until = sd_now_ms() + WAIT_MS;

    while (sd_now_ms() < until) {
        if (ckr_has(replica, "master_link_status:up", "INFO replication"))
            return true;
        sd_sleep_ms(20);
    }
    return false;
}

/* Until Sentinel names one of a and b as master and the other is its
 * linked replica: a master that comes back quickly during a failover can
 * make Sentinel fail over a second time (seen: the restarted old master
 * promoted again 2 s after its replica was), so a single look can be
 * stale. */
static bool wait_settled(const ckr_t *s, ckr_t *a, ckr_t *b, ckr_t **top, ckr_t **low)
{
    uint64_t until = sd_now_ms() + WAIT_MS;
    char want[48];

    while (sd_now_ms() < until) {
        int at = sentinel_master(s);
        if (at == a->port || at == b->port) {
            *top = at == a->port ? a : b;
            *low = at == a->port ? b : a;
            snprintf(want, sizeof want, "master_port:%d\r", at);
            if (ckr_has((*low), want, "INFO replication") &&
                ckr_has((*low), "master_link_status:up", "INFO replication"))
                return true;
        }
        sd_sleep_ms(100);
    }
    return false;
}

/* Each of the n sentinels knows the others and the master's replicas, so
 * that a failover can be agreed on. */
static bool wait_sentinels_ready(const ckr_t *s, int n, int replicas)
{
    uint64_t until = sd_now_ms() + WAIT_MS;
    char usable[32];

    snprintf(usable, sizeof usable, "OK %d usable", n);
    while (sd_now_ms() < until) {
        int ok = 0;
        for (int i = 0; i < n; i++) {
            redisReply *r = ckr_cmd(&s[i], 0, "SENTINEL replicas " MASTER);
            bool known = r != NULL && r->type == REDIS_REPLY_ARRAY &&
                         (int)r->elements == replicas;
            freeReplyObject(r);
            if (known && ckr_has(&s[i], usable, "SENTINEL ckquorum " MASTER))
                ok++;
        }
        if (ok == n)
            return true;
        sd_sleep_ms(100);
    }
    return false;
}

/* ---- the broker ---- */

static pid_t g_daemon; /* a failed assertion ends the test: its daemon must go too */

static void kill_daemon_at_exit(void)
{
    if (g_daemon > 0)
        kill(-g_daemon, SIGKILL);
}

/* A broker mirroring through the sentinels s[0..n) (with `dead`, a port
 * nobody listens on, first when > 0), plus `extra` lines of redis:. */
static void start_broker(sd_t *d, const ckr_t *s, int n, int dead, const char *extra)
{
    char yaml[2048], list[512] = "";
    size_t len = 0;

    if (dead > 0)
        len += (size_t)snprintf(list + len, sizeof list - len, "127.0.0.1:%d, ", dead);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s127.0.0.1:%d",
                                i > 0 ? ", " : "", s[i].port);
    snprintf(yaml, sizeof yaml,
             "log: {level: debug}\n"
             "redis:\n"
             "  enabled: true\n"
             "  sentinels: [%s]\n"
             "  master: " MASTER "\n"
             "  prefix: t\n"
             "  flush_interval: 50ms\n"
             "%s",
             list, extra != NULL ? extra : "");
    ck_assert_int_eq(sd_start(d, yaml), 0);
    g_daemon = d->pid;
}

static int stop_broker(sd_t *d)
{
    g_daemon = 0;
    return sd_stop(d);
}

static bool wait_connected(const sd_t *d, bool want)
{
    tc_t *c = tc_open(d);
    uint64_t until = sd_now_ms() + WAIT_MS;
    bool ok = false;

    while (c != NULL && !ok && sd_now_ms() < until) {
        tc_sendf(c, "STATS\r\n");
        ok = tc_reply(c) == 0 && c->r.type == REPLY_STATS &&
             memmem(c->r.body, c->r.body_len, want ? "connected: true" : "connected: false",
                    want ? 15 : 16) != NULL;
        if (!ok)
            sd_sleep_ms(20);
    }
    tc_close(c);
    return ok;
}

static bool wait_log(sd_t *d, const char *needle)
{
    uint64_t until = sd_now_ms() + WAIT_MS;

    while (sd_now_ms() < until) {
        if (sd_log_has(d, needle))
            return true;
        sd_sleep_ms(20);
    }
    return false;
}

static void pub(tc_t *c, const char *topic, const char *payload, const char *want)
{
    tc_sendf(c, "PUB %s %zu\r\n%s\r\n", topic, strlen(payload), payload);
    ck_assert_str_eq(tc_reply_line(c), want);
}

/* ---- (b) the broker finds the master through Sentinel ---- */

/* One master and one sentinel: the broker asks it, mirrors to the master,
 * and a new broker restores from it through the sentinel too. With
 * `dead_first`, the first sentinel of the list is a port nobody listens
 * on: the ask and the subscription go on to the next one. */
static void find_master_run(bool dead_first)
{
    ckr_t m, s;
    sd_t d;
    tc_t *c;
    char want[96];
    int dead = dead_first ? sd_free_port() : 0;
    redisReply *r;

    if (!have_sentinel())
        return;
    ckr_start_tcp(&m, 0, WAIT_MS);
    sentinel_start(&s, m.port, 1, 60000);
    ck_assert(wait_sentinel_master(&s, m.port));
    start_broker(&d, &s, 1, dead, "  confirm: true\n  confirm_timeout: 60s\n");
    ck_assert(wait_connected(&d, true));
    snprintf(want, sizeof want, "redis mirror connected to 127.0.0.1:%d (master " MASTER ", db 0",
             m.port);
    ck_assert(sd_log_has(&d, want));
    c = tc_open(&d);
    pub(c, "f", "hello", "+OK 1");
    r = ckr_cmd(&m, 0, "HGET t:msg:0:f 1");
    ck_assert(r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, "hello") == 0);
    freeReplyObject(r);
    snprintf(want, sizeof want, "subscribed to +switch-master at sentinel 127.0.0.1:%d", s.port);
    if (dead_first) {
        char line[96];
        snprintf(line, sizeof line, "no +switch-master subscription at sentinel 127.0.0.1:%d",
                 dead);
        ck_assert(wait_log(&d, line));
        ck_assert(wait_log(&d, want));
    }
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);

    /* The restore at start asks the sentinels too (blocking, before listening). */
    start_broker(&d, &s, 1, dead, NULL);
    c = tc_open(&d);
    tc_sendf(c, "GET f\r\n");
    ck_assert_str_eq(tc_reply_line(c), "MSG f 1 1 5");
    ck_assert(sd_log_has(&d, "restored 1 messages"));
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&s);
    ckr_stop(&m);
}

START_TEST(test_find_master)
{
    find_master_run(false);
}
END_TEST

/* ---- (d) the first sentinel of the list is dead ---- */

START_TEST(test_first_sentinel_dead)
{
    find_master_run(true);
}
END_TEST

/* ---- sentinel_password ---- */

/* Sentinels that want a password: a wrong one is refused (and said so in
 * the log), the right one finds the master, at start-up (the restore's
 * blocking ask) and on the loop. */
START_TEST(test_sentinel_password)
{
    ckr_t m, s;
    sd_t d;
    redisReply *r;

    if (!have_sentinel())
        return;
    ckr_start_tcp(&m, 0, WAIT_MS);
    sentinel_start(&s, m.port, 1, 60000);
    ck_assert(wait_sentinel_master(&s, m.port));
    r = ckr_cmd(&s, 0, "ACL SETUSER default resetpass >sekrit");
    ck_assert(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);

    start_broker(&d, &s, 1, 0, "  sentinel_password: wrong\n  restore: false\n");
    ck_assert(wait_log(&d, "AUTH refused"));
    ck_assert(wait_connected(&d, false));
    ck_assert_int_eq(stop_broker(&d), 0);

    start_broker(&d, &s, 1, 0, "  sentinel_password: sekrit\n");
    ck_assert(wait_connected(&d, true)); /* the ask got through with the password */
    ck_assert(!sd_log_has(&d, "AUTH refused"));
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&s);
    ckr_stop(&m);
}
END_TEST

/* ---- ROLE and READONLY: a sentinel naming a replica ---- */

/* The sentinel monitors a replica as if it were the master (a stale
 * answer, as just after a failover): ROLE says so, the mirror drops it
 * and asks again after its backoff; once it is a master the mirror
 * connects. Made a replica again under the mirror, its writes get
 * READONLY: the connection is dropped, and made again once it is a
 * master once more. */
START_TEST(test_role_check)
{
    ckr_t m, r, s;
    sd_t d;
    redisReply *rep;

    if (!have_sentinel())
        return;
    ckr_start_tcp(&m, 0, WAIT_MS);
    ckr_start_tcp(&r, m.port, WAIT_MS);
    ck_assert(wait_replica_up(&r));
    sentinel_start(&s, r.port, 1, 60000);
    ck_assert(wait_sentinel_master(&s, r.port));
    start_broker(&d, &s, 1, 0, NULL);
    ck_assert(wait_log(&d, "not a master (ROLE says slave)"));
    ck_assert(wait_connected(&d, false));

    rep = ckr_cmd(&r, 0, "REPLICAOF NO ONE");
    ck_assert(rep != NULL && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    ck_assert(wait_connected(&d, true));

    rep = ckr_cmd(&r, 0, "REPLICAOF 127.0.0.1 %d", m.port);
    ck_assert(rep != NULL && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    ck_assert(wait_log(&d, "READONLY"));
    ck_assert(wait_connected(&d, false));
    rep = ckr_cmd(&r, 0, "REPLICAOF NO ONE");
    freeReplyObject(rep);
    ck_assert(wait_connected(&d, true));
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&s);
    ckr_stop(&r);
    ckr_stop(&m);
}
END_TEST

/* ---- redis.replicas without enough replicas ---- */

/* replicas: 1 and no replica: a confirmed PUB gets -ERR mirror
 * unavailable after confirm_timeout, as when Redis does not answer, and
 * its message is deleted from Redis again; once a replica is there PUBs
 * are +OK. Needs no Sentinel. */
START_TEST(test_wait_replicas)
{
    ckr_t m, r;
    sd_t d;
    tc_t *c;
    char yaml[512];
    long long n = -1;
    uint64_t until;
    bool ok = false;

    ckr_start_tcp(&m, 0, WAIT_MS);
    snprintf(yaml, sizeof yaml,
             "redis:\n  enabled: true\n  address: 127.0.0.1:%d\n  prefix: t\n"
             "  confirm: true\n  confirm_timeout: 300ms\n  replicas: 1\n",
             m.port);
    ck_assert_int_eq(sd_start(&d, yaml), 0);
    g_daemon = d.pid;
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    pub(c, "w", "alone", "-ERR mirror unavailable");
    ck_assert(wait_log(&d, "0 of 1 replicas acknowledged in time"));
    until = sd_now_ms() + WAIT_MS;
    while (n != 0 && sd_now_ms() < until) {
        n = ckr_int(&m, 0, "HEXISTS %s 1", "t:msg:0:w");
        if (n != 0)
            sd_sleep_ms(20);
    }
    ck_assert_int_eq(n, 0);

    ckr_start_tcp(&r, m.port, WAIT_MS);
    ck_assert(wait_replica_up(&r));
    until = sd_now_ms() + WAIT_MS;
    while (!ok && sd_now_ms() < until) {
        tc_sendf(c, "PUB w 5\r\nagain\r\n");
        ck_assert_ptr_nonnull(tc_reply_line(c));
        ok = c->r.type == REPLY_OK;
    }
    ck_assert(ok);
    ck_assert(wait_log(&d, "replicas acknowledge again (1 wanted)"));
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
    ckr_stop(&m);
}
END_TEST

/* ---- (c) kill -9 of the master under confirmed load ---- */

#define FP 4        /* producer connections */
#define FWIN 4      /* PUBs each keeps in flight */
#define FSEQ 30000  /* most PUBs per producer and round */

typedef struct fround {
    char tag;                    /* payloads are "<tag><producer>-<seq>" */
    unsigned char ok[FP][FSEQ];  /* 1: +OK, 2: -ERR */
    bool before[FP][FSEQ];       /* delivered (and ACKed) while it ran */
    int after[FP][FSEQ];         /* delivered by the restored broker */
    int sent[FP], answered[FP];
    int oks, errs;
} fround_t;

typedef struct fload {
    fround_t *fr;
    tc_t *prod[FP];
    tc_t *cons; /* or NULL: no consumer */
    bool publish;
} fload_t;

static bool fparse(const fround_t *fr, const proto_reply_t *r, int *p, int *s)
{
    char buf[32];

    if (r->body_len >= sizeof buf || r->body_len == 0 || r->body[0] != fr->tag)
        return false;
    memcpy(buf, r->body + 1, r->body_len - 1);
    buf[r->body_len - 1] = '\0';
    return sscanf(buf, "%d-%d", p, s) == 2 && *p >= 0 && *p < FP && *s >= 0 && *s < FSEQ;
}

static void ftop_up(fload_t *l, int p)
{
    fround_t *fr = l->fr;

    while (l->publish && fr->sent[p] - fr->answered[p] < FWIN && fr->sent[p] < FSEQ) {
        char body[32];
        int n = snprintf(body, sizeof body, "%c%d-%d", fr->tag, p, fr->sent[p]);
        tc_sendf(l->prod[p], "PUB k %d\r\n%s\r\n", n, body);
        fr->sent[p]++;
    }
}

/* Run the load (producers keeping FWIN PUBs in flight, the consumer
 * ACKing what it gets) until done(arg) (looked at every 100 ms) or the
 * deadline; false at the deadline. */
static bool fload_until(fload_t *l, bool (*done)(void *), void *arg)
{
    fround_t *fr = l->fr;
    uint64_t until = sd_now_ms() + 60000, look = 0;

    for (int p = 0; p < FP; p++)
        ftop_up(l, p);
    while (sd_now_ms() < until) {
        struct pollfd pfd[FP + 1];
        int n = FP;
        if (sd_now_ms() >= look) {
            if (done(arg))
                return true;
            look = sd_now_ms() + 100;
        }
        for (int p = 0; p < FP; p++)
            pfd[p] = (struct pollfd){.fd = l->prod[p]->fd, .events = POLLIN};
        if (l->cons != NULL)
            pfd[n++] = (struct pollfd){.fd = l->cons->fd, .events = POLLIN};
        poll(pfd, (nfds_t)n, 100);
        for (int p = 0; p < FP; p++) {
            ck_assert_msg(tc_pump(l->prod[p]), "producer connection lost");
            while (tc_next(l->prod[p])) {
                int s = fr->answered[p]++;
                if (l->prod[p]->r.type == REPLY_OK) {
                    fr->ok[p][s] = 1;
                    fr->oks++;
                } else {
                    ck_assert_int_eq(l->prod[p]->r.type, REPLY_ERROR);
                    fr->ok[p][s] = 2;
                    fr->errs++;
                }
            }
            ftop_up(l, p);
        }
        if (l->cons == NULL)
            continue;
        ck_assert_msg(tc_pump(l->cons), "consumer connection lost");
        while (tc_next(l->cons)) {
            int p, s;
            if (l->cons->r.type != REPLY_MSG || !fparse(fr, &l->cons->r, &p, &s))
                continue;
            fr->before[p][s] = true;
            tc_sendf(l->cons, "ACK %llu\r\n", (unsigned long long)l->cons->r.id);
        }
    }
    return false;
}

static void fload_open(fload_t *l, fround_t *fr, const sd_t *d, bool consumer)
{
    memset(l, 0, sizeof *l);
    l->fr = fr;
    l->publish = true;
    for (int p = 0; p < FP; p++)
        ck_assert_ptr_nonnull(l->prod[p] = tc_open(d));
    if (consumer) {
        ck_assert_ptr_nonnull(l->cons = tc_open(d));
        tc_sendf(l->cons, "SUB k 32\r\n");
        ck_assert_str_eq(tc_reply_line(l->cons), "+OK");
    }
}

static void fload_close(fload_t *l)
{
    for (int p = 0; p < FP; p++)
        tc_close(l->prod[p]);
    tc_close(l->cons);
}

typedef struct fwant {
    fload_t *l;
    int oks;        /* at least this many +OKs */
    sd_t *d;
    const char *log; /* and this in the broker's log, or NULL */
} fwant_t;

static bool fdone_oks(void *arg)
{
    const fwant_t *w = arg;

    return w->l->fr->oks >= w->oks && (w->log == NULL || sd_log_has(w->d, w->log));
}

static bool fdone_answered(void *arg)
{
    const fload_t *l = arg;

    for (int p = 0; p < FP; p++)
        if (l->fr->answered[p] < l->fr->sent[p])
            return false;
    return true;
}

/* Stop publishing and wait for every PUB's answer. */
static void fload_drain(fload_t *l)
{
    l->publish = false;
    ck_assert_msg(fload_until(l, fdone_answered, l), "PUBs left unanswered");
}

/* Read back everything the (restored) broker d has, into fr->after (and
 * ACK it); messages of other rounds are counted in *others. */
static void fread_back(sd_t *d, fround_t *fr, int *others)
{
    tc_t *c = tc_open(d);

    for (;;) {
        int p, s;
        tc_sendf(c, "GET k 500\r\n");
        ck_assert_ptr_nonnull(tc_reply_line(c));
        if (c->r.type == REPLY_ERROR)
            break;
        ck_assert_int_eq(c->r.type, REPLY_MSG);
        if (fparse(fr, &c->r, &p, &s))
            fr->after[p][s]++;
        else
            (*others)++;
        tc_sendf(c, "ACK %llu\r\n", (unsigned long long)c->r.id);
        ck_assert_str_eq(tc_reply_line(c), "+OK 1");
    }
    ck_assert_str_eq(c->line, "-TIMEOUT");
    tc_close(c);
}

/* Every message that got +OK was delivered while the round ran or is in
 * the restored broker: none is lost. Returns how many came twice (before
 * and after: their ACK had not reached Redis). */
static int fcount(const fround_t *fr, int *unconfirmed)
{
    int dups = 0;

    *unconfirmed = 0;
    for (int p = 0; p < FP; p++)
        for (int s = 0; s < fr->sent[p]; s++) {
            ck_assert_msg(fr->after[p][s] <= 1, "%c%d-%d restored twice", fr->tag, p, s);
            if (fr->ok[p][s] == 1)
                ck_assert_msg(fr->before[p][s] || fr->after[p][s] == 1,
                              "%c%d-%d got +OK but was lost", fr->tag, p, s);
            if (fr->before[p][s] && fr->after[p][s])
                dups++;
            if (fr->ok[p][s] != 1 && fr->after[p][s])
                (*unconfirmed)++;
        }
    return dups;
}

/* A master, its replica and three sentinels (quorum 2); the broker in
 * confirm mode with replicas: 1.
 *
 * Round a: confirmed PUBs under load with a consumer ACKing; kill -9 of
 * the master; PUBs go on (those held past confirm_timeout get -ERR,
 * counted); Sentinel promotes the replica, the old master comes back as
 * its replica, the broker follows and +OKs resume. Then the broker is
 * stopped and a fresh one restores through Sentinel: every +OK is there.
 *
 * Round b, the case the WAIT is for: the fresh broker takes confirmed
 * PUBs, then the master (the promoted replica, or whichever of the two
 * Sentinel names by then) and the broker are killed with -9 at once, so
 * no broker is left to write anything again. Sentinel promotes the other,
 * and a third broker restores from it alone: every +OK of round b is
 * there. */
START_TEST(test_failover)
{
    static fround_t a, b;
    /* Short enough that PUBs held through the failover get -ERR. */
    const char *conf = "  confirm: true\n  confirm_timeout: 2s\n  replicas: 1\n";
    ckr_t m, r, s[3];
    sd_t d;
    fload_t l;
    fwant_t w;
    char moved[128];
    int dups, unconfirmed, others = 0, status, oks_at_kill;

    if (!have_sentinel())
        return;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.tag = 'a';
    b.tag = 'b';
    ckr_start_tcp(&m, 0, WAIT_MS);
    ckr_start_tcp(&r, m.port, WAIT_MS);
    ck_assert(wait_replica_up(&r));
    for (int i = 0; i < 3; i++)
        sentinel_start(&s[i], m.port, 2, 1000);
    ck_assert_msg(wait_sentinels_ready(s, 3, 1), "the sentinels did not find each other");

    /* round a */
    start_broker(&d, s, 3, 0, conf);
    ck_assert(wait_connected(&d, true));
    fload_open(&l, &a, &d, true);
    w = (fwant_t){.l = &l, .oks = 1000};
    ck_assert(fload_until(&l, fdone_oks, &w));
    oks_at_kill = a.oks;
    ckr_kill(&m);
    snprintf(moved, sizeof moved, "master " MASTER " moved from 127.0.0.1:%d to 127.0.0.1:%d",
             m.port, r.port);
    ck_assert_msg(wait_sentinel_master(&s[0], r.port), "Sentinel did not promote the replica");
    /* The old master comes back as the new one's replica, so that WAIT 1
     * can be answered again. */
    m.of = r.port;
    ckr_spawn(&m);
    w = (fwant_t){.l = &l, .oks = oks_at_kill + 1000, .d = &d, .log = moved};
    ck_assert_msg(fload_until(&l, fdone_oks, &w), "+OKs did not resume after the failover");
    fload_drain(&l);
    fload_close(&l);
    ck_assert_int_eq(sd_log_count(&d, moved), 1);
    ck_assert_int_eq(stop_broker(&d), 0);

    start_broker(&d, s, 3, 0, conf);
    fread_back(&d, &a, &others);
    dups = fcount(&a, &unconfirmed);
    fprintf(stderr,
            "failover, broker alive: %d PUBs got +OK (%d before the kill), %d got -ERR during "
            "it; 0 lost; %d delivered again after the restore; %d stored without their +OK\n",
            a.oks, oks_at_kill, a.errs, dups, unconfirmed);

    /* round b: the master is whichever Sentinel names now (on a loaded
     * machine it may have failed over again on its own since round a),
     * with the other one linked to it as its replica */
    ckr_t *top, *low;
    ck_assert_msg(wait_settled(&s[0], &m, &r, &top, &low),
                  "Sentinel and the two servers did not agree on a master");
    ck_assert(wait_connected(&d, true));
    fload_open(&l, &b, &d, false);
    w = (fwant_t){.l = &l, .oks = 1500};
    ck_assert(fload_until(&l, fdone_oks, &w));
    ckr_kill(top);
    kill(d.pid, SIGKILL);
    waitpid(d.pid, &status, 0);
    ck_assert(WIFSIGNALED(status));
    g_daemon = 0;
    d.pid = 0;
    sd_stop(&d);
    fload_close(&l);
    ck_assert_msg(wait_sentinel_master(&s[0], low->port), "Sentinel did not promote the replica");
    start_broker(&d, s, 3, 0, conf);
    fread_back(&d, &b, &others);
    dups = fcount(&b, &unconfirmed);
    ck_assert_int_eq(dups, 0); /* nobody consumed round b */
    fprintf(stderr,
            "failover, broker killed too: %d PUBs got +OK, 0 lost; %d stored without their "
            "+OK; %d messages of round a came back again\n",
            b.oks, unconfirmed, others);
    ck_assert_int_eq(stop_broker(&d), 0);
    for (int i = 0; i < 3; i++)
        ckr_stop(&s[i]);
    ckr_stop(&r);
    ckr_stop(&m);
}
END_TEST

static Suite *sentinel_suite(void)
{
    Suite *s = suite_create("sentinel");
    TCase *tc = tcase_create("sentinel");

    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_find_master);
    tcase_add_test(tc, test_first_sentinel_dead);
    tcase_add_test(tc, test_sentinel_password);
    tcase_add_test(tc, test_role_check);
    tcase_add_test(tc, test_wait_replicas);
    tcase_add_test(tc, test_failover);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sentinel_suite());
    int failed;

    signal(SIGPIPE, SIG_IGN);
    atexit(kill_daemon_at_exit);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
