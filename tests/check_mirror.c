/* check_mirror.c: the Redis mirror against a real redis-server, which each
 * test starts on a unix socket in its own temp directory (never the
 * machine's default instance). A missing redis-server is a failure.
 *
 * Waits are bounded polls for convergence ("until Redis shows X, at most
 * N seconds"); nothing asserts how long anything took.
 */
#include <check.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ck_redis.h"
#include "harness.h"
#include "mrestore.h"

#define WAIT_MS 15000 /* longest a convergence may take before the test fails */

/* ---- the broker ---- */

/* A failed assertion ends the test process; its daemon must go too. */
static pid_t g_daemon;

static void kill_daemon_at_exit(void)
{
    if (g_daemon > 0)
        kill(-g_daemon, SIGKILL);
}

static void start_broker(sd_t *d, const ckr_t *r, const char *extra)
{
    char yaml[2048];

    snprintf(yaml, sizeof yaml,
             "redis:\n"
             "  enabled: true\n"
             "  address: unix:%s\n"
             "  prefix: t\n"
             "  flush_interval: 50ms\n"
             "%s",
             r->sock, extra ? extra : "");
    ck_assert_int_eq(sd_start(d, yaml), 0);
    g_daemon = d->pid;
}

static int stop_broker(sd_t *d)
{
    g_daemon = 0;
    return sd_stop(d);
}

/* sd_stop for a daemon we already reaped (kill -9). */
static void sd_forget(sd_t *d)
{
    g_daemon = 0;
    d->pid = 0;
    sd_stop(d);
}

/* The STATS body (server, or one topic) contains needle. */
static bool stats_has(tc_t *c, const char *topic, const char *needle)
{
    if (topic != NULL)
        tc_sendf(c, "STATS %s\r\n", topic);
    else
        tc_sendf(c, "STATS\r\n");
    if (tc_reply(c) != 0 || c->r.type != REPLY_STATS)
        return false;
    return memmem(c->r.body, c->r.body_len, needle, strlen(needle)) != NULL;
}

static bool wait_connected(const sd_t *d, bool want)
{
    tc_t *c = tc_open(d);
    uint64_t until = sd_now_ms() + WAIT_MS;
    bool ok = false;

    while (c != NULL && !ok && sd_now_ms() < until) {
        ok = stats_has(c, NULL, want ? "connected: true" : "connected: false");
        if (!ok)
            sd_sleep_ms(20);
    }
    tc_close(c);
    return ok;
}

static void pub(tc_t *c, const char *topic, const char *payload, const char *want)
{
    tc_sendf(c, "PUB %s %zu\r\n%s\r\n", topic, strlen(payload), payload);
    ck_assert_str_eq(tc_reply_line(c), want);
}

/* The messages in a message hash: its fields but the pin. */
static long long msgs_in(const ckr_t *r, int db, const char *key)
{
    return ckr_int(r, db, "HLEN %s", key) - ckr_int(r, db, "HEXISTS %s " MRESTORE_PIN_FIELD, key);
}

/* The messages in a message hash reach n (or the wait ends); returns the
 * last count. */
static long long wait_hlen(const ckr_t *r, int db, const char *key, long long n)
{
    uint64_t until = sd_now_ms() + WAIT_MS;
    long long v = -1;

    while (sd_now_ms() < until) {
        v = msgs_in(r, db, key);
        if (v == n)
            break;
        sd_sleep_ms(20);
    }
    return v;
}

static bool wait_field(const ckr_t *r, const char *key, const char *field, const char *want)
{
    uint64_t until = sd_now_ms() + WAIT_MS;

    while (sd_now_ms() < until) {
        if (ckr_str_is(r, "HGET %s %s", key, field, want))
            return true;
        sd_sleep_ms(20);
    }
    return false;
}

/* The sorted ids in a hash (the pin is not one), joined by ",". */
static char *ids_in(const ckr_t *r, const char *key)
{
    redisReply *rep = ckr_cmd(r, 0, "HKEYS %s", key);
    char *out = calloc(1, 65536);
    unsigned long long ids[4096];
    size_t n = 0, len = 0;

    if (rep != NULL && rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements && n < 4096; i++)
            if (strcmp(rep->element[i]->str, MRESTORE_PIN_FIELD) != 0)
                ids[n++] = strtoull(rep->element[i]->str, NULL, 10);
    freeReplyObject(rep);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            unsigned long long t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    for (size_t i = 0; i < n && len < 65000; i++)
        len += (size_t)snprintf(out + len, 65536 - len, i ? ",%llu" : "%llu", ids[i]);
    return out;
}

static bool wait_hkeys(const ckr_t *r, const char *key, const char *want)
{
    uint64_t until = sd_now_ms() + WAIT_MS;
    char *got = NULL;
    bool eq = false;

    while (!eq && sd_now_ms() < until) {
        free(got);
        got = ids_in(r, key);
        eq = strcmp(got, want) == 0;
        if (!eq)
            sd_sleep_ms(20);
    }
    if (!eq)
        fprintf(stderr, "%s: want {%s}, got {%s}\n", key, want, got);
    free(got);
    return eq;
}

/* ---- tests ---- */

/* PUB 3, ACK 1, one more in flight: the documented keys, exactly. */
START_TEST(test_key_schema)
{
    ckr_t r;
    sd_t d;
    tc_t *c, *k;
    redisReply *rep;
    long long pttl;
    uint64_t until;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, NULL);
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    k = tc_open(&d);
    pub(c, "s", "alpha", "+OK 1");
    pub(c, "s", "beta", "+OK 2");
    pub(c, "s", "gamma", "+OK 3");
    tc_sendf(k, "GET s\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG s 1 1 5");
    tc_sendf(k, "ACK 1\r\n");
    ck_assert_str_eq(tc_reply_line(k), "+OK 1");
    tc_sendf(k, "GET s\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG s 2 1 4");

    ck_assert(wait_hkeys(&r, "t:msg:0:s", "2,3"));
    ck_assert(wait_field(&r, "t:topic:s", "acked", "1"));
    ck_assert(wait_field(&r, "t:topic:s", "in_flight", "1"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:msg:0:s", "2", "beta"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:msg:0:s", "3", "gamma"));
    /* the pin keeps the message hash a hash table (MRESTORE_PIN_FIELD) */
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:msg:0:s", MRESTORE_PIN_FIELD, MRESTORE_PIN_VALUE));
    ck_assert(ckr_str_is(&r, "OBJECT ENCODING %s%s", "t:msg:0:s", "", "hashtable"));
    /* deliveries so far, only for delivered messages */
    ck_assert(wait_hkeys(&r, "t:att:0:s", "2"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:att:0:s", "2", "1"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:topic:s", "published", "3"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:topic:s", "delivered", "2"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:topic:s", "ready", "1"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:topic:s", "overflow", "block"));
    ck_assert(wait_field(&r, "t:server", "acked", "1"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:server", "published", "3"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:server", "messages", "2"));
    ck_assert_int_eq(ckr_int(&r, 0, "SISMEMBER %s s", "t:topics"), 1);
    ck_assert_int_eq(ckr_int(&r, 0, "SISMEMBER %s s", "t:message_topics"), 1);
    ck_assert_int_eq(ckr_int(&r, 0, "SISMEMBER %s 0", "t:shards:s"), 1);
    ck_assert_int_eq(ckr_int(&r, 0, "SCARD %s", "t:shards:s"), 1);
    ck_assert(ckr_str_is(&r, "GET %s%s", "t:next_id", "", "4"));
    /* heartbeat: unix ms, expiring after 3 flush intervals (polled: a
     * stalled machine may let it lapse between two snapshots) */
    until = sd_now_ms() + WAIT_MS;
    do {
        pttl = ckr_int(&r, 0, "PTTL %s", "t:heartbeat");
    } while (pttl <= 0 && sd_now_ms() < until);
    ck_assert_msg(pttl > 0 && pttl <= 150, "heartbeat PTTL %lld", pttl);
    rep = ckr_cmd(&r, 0, "GET t:heartbeat");
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    ck_assert(strtoull(rep->str, NULL, 10) > 1600000000000ull);
    freeReplyObject(rep);
    /* nothing else under the prefix */
    rep = ckr_cmd(&r, 0, "KEYS t:*");
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq((int)rep->elements, 9);
    freeReplyObject(rep);

    tc_close(k);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    /* A clean stop deletes the heartbeat; the messages stay. */
    ck_assert_int_eq(ckr_int(&r, 0, "EXISTS %s", "t:heartbeat"), 0);
    ck_assert_int_eq(msgs_in(&r, 0, "t:msg:0:s"), 2);
    ckr_stop(&r);
}
END_TEST

/* Clean stop, start again: messages and attempt counts are back, in order,
 * and ids continue above every id handed out, even once all were acked. */
START_TEST(test_restore_after_clean_stop)
{
    ckr_t r;
    sd_t d;
    tc_t *c, *k;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, NULL);
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    for (int i = 1; i <= 5; i++) {
        char p[16], want[16];
        snprintf(p, sizeof p, "m%d", i);
        snprintf(want, sizeof want, "+OK %d", i);
        pub(c, "r", p, want);
    }
    k = tc_open(&d);
    tc_sendf(k, "GET r\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG r 1 1 2");
    tc_sendf(k, "GET r\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG r 2 1 2");
    tc_sendf(k, "ACK 2\r\n");
    ck_assert_str_eq(tc_reply_line(k), "+OK 1");
    tc_close(k); /* 1 goes back, its attempt kept */
    tc_close(c);
    ck_assert(wait_hkeys(&r, "t:msg:0:r", "1,3,4,5"));
    ck_assert_int_eq(stop_broker(&d), 0);

    start_broker(&d, &r, NULL);
    ck_assert(sd_log_has(&d, "restored 4 messages"));
    c = tc_open(&d);
    ck_assert(stats_has(c, "r", "ready: 4\n"));
    tc_sendf(c, "GET r\r\n");
    ck_assert_str_eq(tc_reply_line(c), "MSG r 1 2 2");
    ck_assert(c->r.body_len == 2 && memcmp(c->r.body, "m1", 2) == 0);
    for (int id = 3; id <= 5; id++) {
        char want[32], body[16];
        snprintf(want, sizeof want, "MSG r %d 1 2", id);
        snprintf(body, sizeof body, "m%d", id);
        tc_sendf(c, "GET r\r\n");
        ck_assert_str_eq(tc_reply_line(c), want);
        ck_assert(memcmp(c->r.body, body, 2) == 0);
    }
    tc_sendf(c, "ACK 1 3 4 5\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 4");
    pub(c, "r", "after", "+OK 6");
    tc_sendf(c, "GET r\r\n");
    ck_assert_str_eq(tc_reply_line(c), "MSG r 6 1 5");
    tc_sendf(c, "ACK 6\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 1");
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ck_assert_int_eq(msgs_in(&r, 0, "t:msg:0:r"), 0);

    /* Nothing left to restore, yet ids go on: the high-water mark. */
    start_broker(&d, &r, NULL);
    c = tc_open(&d);
    pub(c, "r", "later", "+OK 7");
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* The key is gone (or the wait ends). */
static bool wait_gone(const ckr_t *r, const char *key)
{
    uint64_t until = sd_now_ms() + WAIT_MS;

    while (sd_now_ms() < until) {
        if (ckr_int(r, 0, "EXISTS %s", key) == 0)
            return true;
        sd_sleep_ms(20);
    }
    return false;
}

/* GET topic: the message with this id and attempt (its payload "m<id>"),
 * then ACK it. */
static void get_ack(tc_t *c, const char *topic, unsigned long long id, int attempt)
{
    char want[96], body[32];
    int n = snprintf(body, sizeof body, "m%llu", id);

    snprintf(want, sizeof want, "MSG %s %llu %d %d", topic, id, attempt, n);
    tc_sendf(c, "GET %s\r\n", topic);
    ck_assert_str_eq(tc_reply_line(c), want);
    ck_assert(c->r.body_len == (size_t)n && memcmp(c->r.body, body, (size_t)n) == 0);
    tc_sendf(c, "ACK %llu\r\n", id);
    ck_assert_str_eq(tc_reply_line(c), "+OK 1");
}

static void pub_id(tc_t *c, const char *topic, unsigned long long id)
{
    char body[32], want[32];

    snprintf(body, sizeof body, "m%llu", id);
    snprintf(want, sizeof want, "+OK %llu", id);
    pub(c, topic, body, want);
}

/* A topic's messages over several shards (65,536 ids each, from a stored
 * next id just below an edge): ids on both sides of each edge are written
 * to their own shard and restored from it, in order, with their attempts;
 * a shard emptied by acks is deleted once no new id can fall in it, while
 * the open shard is kept; a restore that finds an empty shard below the
 * open one deletes it. */
START_TEST(test_shards)
{
    ckr_t r;
    sd_t d;
    tc_t *c, *k;

    ckr_start(&r, NULL, false, WAIT_MS);
    ckr_do(&r, "SET t:next_id %s", "65533");
    start_broker(&d, &r, NULL);
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    for (unsigned long long id = 65533; id <= 65538; id++)
        pub_id(c, "s", id);
    ck_assert(wait_hkeys(&r, "t:msg:0:s", "65533,65534,65535"));
    ck_assert(wait_hkeys(&r, "t:msg:1:s", "65536,65537,65538"));
    ck_assert(ckr_str_is(&r, "OBJECT ENCODING %s%s", "t:msg:1:s", "", "hashtable"));
    ck_assert_int_eq(ckr_int(&r, 0, "SCARD %s", "t:shards:s"), 2);
    k = tc_open(&d);
    for (unsigned long long id = 65533; id <= 65535; id++)
        get_ack(k, "s", id, 1);
    tc_sendf(k, "GET s\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG s 65536 1 6");
    /* shard 0 is empty and below the open one: gone, and out of the set */
    ck_assert(wait_gone(&r, "t:msg:0:s"));
    ck_assert_int_eq(ckr_int(&r, 0, "SISMEMBER %s 0", "t:shards:s"), 0);
    ck_assert(wait_hkeys(&r, "t:att:1:s", "65536"));
    tc_close(k); /* 65536 goes back, its attempt kept */
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);

    /* Across the next edge: 65536.. in shard 1, then 131070.. from here. */
    ckr_do(&r, "SET t:next_id %s", "131070");
    start_broker(&d, &r, NULL);
    ck_assert(sd_log_has(&d, "restored 3 messages"));
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    for (unsigned long long id = 131070; id <= 131072; id++)
        pub_id(c, "s", id);
    ck_assert(wait_hkeys(&r, "t:msg:1:s", "65536,65537,65538,131070,131071"));
    ck_assert(wait_hkeys(&r, "t:msg:2:s", "131072"));
    get_ack(c, "s", 65536, 2);
    get_ack(c, "s", 65537, 1);
    get_ack(c, "s", 65538, 1);
    get_ack(c, "s", 131070, 1);
    get_ack(c, "s", 131071, 1);
    get_ack(c, "s", 131072, 1);
    ck_assert(wait_gone(&r, "t:msg:1:s"));
    ck_assert(wait_gone(&r, "t:att:1:s"));
    ck_assert_int_eq(ckr_int(&r, 0, "SISMEMBER %s 1", "t:shards:s"), 0);
    /* the open shard stays (new ids fall in it), pinned, empty */
    ck_assert(wait_hkeys(&r, "t:msg:2:s", ""));
    ck_assert_int_eq(ckr_int(&r, 0, "EXISTS %s", "t:msg:2:s"), 1);
    ck_assert_int_eq(ckr_int(&r, 0, "SISMEMBER %s 2", "t:shards:s"), 1);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);

    /* Ids moved on while the broker was down: the empty shard 2 is below
     * the open one now, and the restore deletes it. */
    ckr_do(&r, "SET t:next_id %s", "200000");
    start_broker(&d, &r, NULL);
    ck_assert(sd_log_has(&d, "restored 0 messages"));
    ck_assert(wait_gone(&r, "t:msg:2:s"));
    ck_assert_int_eq(ckr_int(&r, 0, "EXISTS %s", "t:shards:s"), 0);
    c = tc_open(&d);
    pub(c, "s", "later", "+OK 200000");
    ck_assert(wait_hkeys(&r, "t:msg:3:s", "200000"));
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* What the single-hash schema of before the shards holds (P:messages:T,
 * P:attempts:T) is restored, then rewritten in shards; the old keys go. */
START_TEST(test_old_schema_restore)
{
    ckr_t r;
    sd_t d;
    tc_t *c;

    ckr_start(&r, NULL, false, WAIT_MS);
    ckr_do(&r, "SET t:next_id %s", "70001");
    ckr_do(&r, "SADD t:message_topics %s", "o");
    ckr_do(&r, "HSET t:messages:o pin %s 1 m1 70000 m70000", MRESTORE_PIN_VALUE);
    ckr_do(&r, "HSET t:attempts:o 70000 %s", "2");
    start_broker(&d, &r, NULL);
    ck_assert(sd_log_has(&d, "restored 2 messages"));
    ck_assert(sd_log_has(&d, "single-hash schema"));
    ck_assert(wait_hkeys(&r, "t:msg:0:o", "1"));
    ck_assert(wait_hkeys(&r, "t:msg:1:o", "70000"));
    ck_assert(wait_hkeys(&r, "t:att:1:o", "70000"));
    ck_assert(wait_gone(&r, "t:messages:o"));
    ck_assert(wait_gone(&r, "t:attempts:o"));
    c = tc_open(&d);
    get_ack(c, "o", 1, 1);
    get_ack(c, "o", 70000, 3);
    pub(c, "o", "new", "+OK 70001");
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* Send a line, expect one reply line. */
static void cmd_is(tc_t *c, const char *line, const char *want)
{
    tc_sendf(c, "%s\r\n", line);
    ck_assert_str_eq(tc_reply_line(c), want);
}

/* STATS of a topic shows both (or the wait ends). */
static bool wait_stats(tc_t *c, const char *topic, const char *a, const char *b)
{
    uint64_t until = sd_now_ms() + WAIT_MS;

    while (sd_now_ms() < until) {
        if (stats_has(c, topic, a) && stats_has(c, topic, b))
            return true;
        sd_sleep_ms(20);
    }
    return false;
}

/* What beanstalk jobs are survives a restart (#11 section 5): a buried
 * job, delayed jobs (one due long after the restart, one whose due time
 * passes while the broker is down), priorities and a TTR; through a full
 * resynchronisation too (Redis restarted empty under the broker). The
 * meta records (P:meta:S:T) leave with their messages. */
START_TEST(test_meta_survives)
{
    ckr_t r;
    sd_t d;
    tc_t *c;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, NULL);
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    pub(c, "j", "b1", "+OK 1");
    cmd_is(c, "GET j", "MSG j 1 1 2");
    cmd_is(c, "BURY 1", "+OK");
    tc_sendf(c, "PUB j 2 pri=10\r\np2\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 2");
    tc_sendf(c, "PUB j 2 pri=2000 ttr=400\r\np3\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 3");
    tc_sendf(c, "PUB j 2 delay=600000\r\nd4\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 4");
    tc_sendf(c, "PUB j 2 delay=1000\r\nd5\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 5");
    tc_sendf(c, "PUB j 2 pri=3 delay=600000\r\nd6\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 6");
    ck_assert(wait_hkeys(&r, "t:meta:0:j", "1,2,3,4,5,6"));
    ck_assert(wait_hkeys(&r, "t:msg:0:j", "1,2,3,4,5,6"));
    /* a plain message has no record */
    pub(c, "plain", "x", "+OK 7");
    ck_assert(wait_hkeys(&r, "t:msg:0:plain", "7"));
    ck_assert_int_eq(ckr_int(&r, 0, "EXISTS %s", "t:meta:0:plain"), 0);
    /* Redis restarted empty: the resync writes the records too */
    ckr_kill(&r);
    ckr_spawn(&r);
    ck_assert(wait_hkeys(&r, "t:meta:0:j", "1,2,3,4,5,6"));
    ck_assert(wait_hkeys(&r, "t:msg:0:j", "1,2,3,4,5,6"));
    ck_assert(wait_hkeys(&r, "t:msg:0:plain", "7"));
    ck_assert_int_eq(ckr_int(&r, 0, "EXISTS %s", "t:meta:0:plain"), 0);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    sd_sleep_ms(1100); /* d5's due time passes while the broker is down */

    start_broker(&d, &r, NULL);
    ck_assert(sd_log_has(&d, "restored 7 messages"));
    c = tc_open(&d);
    /* 1 buried; 4 and 6 delayed; 5 ready once its passed due time ticks */
    ck_assert(wait_stats(c, "j", "buried: 1\n", "delayed: 2\n"));
    ck_assert(stats_has(c, "j", "ready: 3\n"));
    /* the ready ones in priority order: 2 (10), 5 (1024), 3 (2000) */
    cmd_is(c, "GET j", "MSG j 2 1 2");
    cmd_is(c, "ACK 2", "+OK 1");
    cmd_is(c, "GET j", "MSG j 5 1 2");
    cmd_is(c, "ACK 5", "+OK 1");
    cmd_is(c, "GET j", "MSG j 3 1 2");
    /* 3's own TTR (400 ms, not the topic's 30 s) gives it back */
    cmd_is(c, "GET j 10000", "MSG j 3 2 2");
    cmd_is(c, "ACK 3", "+OK 1");
    /* the buried one, its attempt kept */
    cmd_is(c, "KICK j 1", "+OK 1");
    cmd_is(c, "GET j", "MSG j 1 2 2");
    cmd_is(c, "ACK 1", "+OK 1");
    /* the delayed ones are still delayed; kicked, 6 (priority 3) goes first */
    cmd_is(c, "KICK j 5", "+OK 2");
    cmd_is(c, "GET j", "MSG j 6 1 2");
    cmd_is(c, "GET j", "MSG j 4 1 2");
    cmd_is(c, "ACK 6 4", "+OK 2");
    ck_assert(wait_hkeys(&r, "t:meta:0:j", ""));
    ck_assert(wait_gone(&r, "t:meta:0:j"));
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* ---- kill -9 while producers publish in confirm mode ---- */

#define KP 4        /* producer connections */
#define KWIN 4      /* PUBs each keeps in flight */
#define KSEQ 4000   /* most PUBs per producer */
#define KTARGET 2000 /* +OKs before the kill */

typedef struct kstate {
    bool ok[KP][KSEQ];        /* got +OK */
    bool before[KP][KSEQ];    /* delivered before the kill */
    int after[KP][KSEQ];      /* deliveries after the restart */
    int sent[KP], answered[KP];
    int oks;
    unsigned long long max_id;
} kstate_t;

static bool kparse(const proto_reply_t *r, int *p, int *s)
{
    char buf[32];

    if (r->body_len >= sizeof buf)
        return false;
    memcpy(buf, r->body, r->body_len);
    buf[r->body_len] = '\0';
    return sscanf(buf, "k%d-%d", p, s) == 2 && *p >= 0 && *p < KP && *s >= 0 && *s < KSEQ;
}

static void kpub(tc_t *c, kstate_t *ks, int p)
{
    while (ks->sent[p] - ks->answered[p] < KWIN && ks->sent[p] < KSEQ) {
        char body[32];
        int n = snprintf(body, sizeof body, "k%d-%d", p, ks->sent[p]);
        tc_sendf(c, "PUB k %d\r\n%s\r\n", n, body);
        ks->sent[p]++;
    }
}

/* Producers pipelining confirmed PUBs and a consumer ACKing, then a
 * kill -9 of the broker (and first of Redis, with `redis_too`: Redis then
 * comes back from its AOF alone, fsynced on every write). Every PUB that
 * got +OK must be delivered, before the kill or after the restore. */
static void kill9_run(bool redis_too)
{
    static kstate_t ks;
    /* Long enough that a loaded machine never turns a PUB into -ERR. */
    const char *conf = redis_too ? "  confirm: true\n  confirm_timeout: 60s\n"
                                   "  durability: always\n"
                                 : "  confirm: true\n  confirm_timeout: 60s\n";
    ckr_t r;
    sd_t d;
    tc_t *prod[KP], *cons, *c;
    int dups = 0, stored_unconfirmed = 0, status;
    bool alive = true;
    uint64_t until;

    memset(&ks, 0, sizeof ks);
    ckr_start(&r, NULL, redis_too, WAIT_MS);
    start_broker(&d, &r, conf);
    ck_assert(wait_connected(&d, true));
    cons = tc_open(&d);
    tc_sendf(cons, "SUB k 32\r\n");
    ck_assert_str_eq(tc_reply_line(cons), "+OK");
    for (int p = 0; p < KP; p++) {
        prod[p] = tc_open(&d);
        kpub(prod[p], &ks, p);
    }
    until = sd_now_ms() + 60000;
    while (alive && ks.oks < KTARGET && sd_now_ms() < until) {
        struct pollfd pfd[KP + 1];
        for (int p = 0; p < KP; p++)
            pfd[p] = (struct pollfd){.fd = prod[p]->fd, .events = POLLIN};
        pfd[KP] = (struct pollfd){.fd = cons->fd, .events = POLLIN};
        poll(pfd, KP + 1, 1000);
        for (int p = 0; p < KP && alive; p++) {
            alive = tc_pump(prod[p]);
            while (tc_next(prod[p])) {
                int s = ks.answered[p]++;
                ck_assert_msg(prod[p]->r.type == REPLY_OK, "PUB refused");
                ks.ok[p][s] = true;
                ks.oks++;
                unsigned long long id = strtoull(prod[p]->r.text, NULL, 10);
                if (id > ks.max_id)
                    ks.max_id = id;
            }
            kpub(prod[p], &ks, p);
        }
        alive = alive && tc_pump(cons);
        while (tc_next(cons)) {
            int p, s;
            if (cons->r.type != REPLY_MSG || !kparse(&cons->r, &p, &s))
                continue;
            ks.before[p][s] = true;
            tc_sendf(cons, "ACK %llu\r\n", (unsigned long long)cons->r.id);
        }
    }
    ck_assert_msg(ks.oks >= KTARGET, "only %d +OK before the kill", ks.oks);
    /* Producers still have PUBs in flight, the consumer ACKs in flight. */
    if (redis_too)
        ckr_kill(&r);
    kill(d.pid, SIGKILL);
    waitpid(d.pid, &status, 0);
    ck_assert(WIFSIGNALED(status));
    sd_forget(&d);
    for (int p = 0; p < KP; p++)
        tc_close(prod[p]);
    tc_close(cons);

    if (redis_too)
        ckr_spawn(&r);
    start_broker(&d, &r, conf);
    c = tc_open(&d);
    for (;;) {
        int p, s;
        tc_sendf(c, "GET k 300\r\n");
        ck_assert_ptr_nonnull(tc_reply_line(c));
        if (c->r.type == REPLY_ERROR)
            break;
        ck_assert_int_eq(c->r.type, REPLY_MSG);
        ck_assert(kparse(&c->r, &p, &s));
        ks.after[p][s]++;
        tc_sendf(c, "ACK %llu\r\n", (unsigned long long)c->r.id);
        ck_assert_str_eq(tc_reply_line(c), "+OK 1");
    }
    ck_assert_str_eq(c->line, "-TIMEOUT");
    for (int p = 0; p < KP; p++) {
        for (int s = 0; s < KSEQ; s++) {
            ck_assert_msg(ks.after[p][s] <= 1, "k%d-%d restored twice", p, s);
            if (ks.ok[p][s])
                ck_assert_msg(ks.before[p][s] || ks.after[p][s] == 1,
                              "k%d-%d got +OK but was lost", p, s);
            if (ks.before[p][s] && ks.after[p][s])
                dups++;
            if (!ks.ok[p][s] && ks.after[p][s])
                stored_unconfirmed++;
        }
    }
    /* New ids start above every id handed out before the kill. */
    tc_sendf(c, "PUB k 4\r\nnext\r\n");
    ck_assert_ptr_nonnull(tc_reply_line(c));
    ck_assert_int_eq(c->r.type, REPLY_OK);
    ck_assert(strtoull(c->r.text, NULL, 10) > ks.max_id);
    fprintf(stderr,
            "kill -9 of %s in confirm mode: %d PUBs got +OK, all delivered; %d delivered again "
            "after the restart (their ACK had not reached Redis); %d stored without their +OK\n",
            redis_too ? "Redis (AOF, fsync always) and the broker" : "the broker", ks.oks, dups,
            stored_unconfirmed);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}

START_TEST(test_kill9_confirm)
{
    kill9_run(false);
}
END_TEST

START_TEST(test_kill9_redis_and_broker_always)
{
    kill9_run(true);
}
END_TEST

/* Many confirmed PUBs in flight on one connection: replies in order, with
 * the replies of commands sent between them in their places; at
 * max_unconfirmed the connection is not read (a frozen Redis holds them). */
START_TEST(test_confirm_pipelined)
{
    enum { N = 300, MAXU = 8, MORE = 40 };
    ckr_t r;
    sd_t d;
    tc_t *c, *o;
    static char req[N * 32];
    size_t len = 0;
    char want[32];

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, "  confirm: true\n  confirm_timeout: 60s\n  max_unconfirmed: 8\n");
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    for (int i = 0; i < N; i++) {
        len += (size_t)snprintf(req + len, sizeof req - len, "PUB p 3\r\n%03d\r\n", i);
        if (i == N / 2)
            len += (size_t)snprintf(req + len, sizeof req - len, "PING\r\nPUB bad!topic 1\r\nx\r\n");
    }
    tc_send(c, req, len);
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof want, "+OK %d", i + 1);
        ck_assert_str_eq(tc_reply_line(c), want);
        if (i == N / 2) {
            ck_assert_str_eq(tc_reply_line(c), "+PONG");
            ck_assert_ptr_nonnull(tc_reply_line(c));
            ck_assert_int_eq(c->r.type, REPLY_ERROR);
        }
    }
    ck_assert(wait_hlen(&r, 0, "t:msg:0:p", N) == N);

    /* Redis frozen: MAXU PUBs are taken and held, the rest wait unread. */
    kill(r.pid, SIGSTOP);
    len = 0;
    for (int i = 0; i < MORE; i++)
        len += (size_t)snprintf(req + len, sizeof req - len, "PUB p 3\r\n%03d\r\n", i);
    tc_send(c, req, len);
    o = tc_open(&d);
    {
        char held[48];
        uint64_t until = sd_now_ms() + WAIT_MS;
        bool seen = false;
        snprintf(held, sizeof held, "bytes: %d\n", (N + MAXU) * 3);
        while (!seen && sd_now_ms() < until) {
            seen = stats_has(o, "p", held);
            if (!seen)
                sd_sleep_ms(20);
        }
        ck_assert_msg(seen, "the held PUBs never reached max_unconfirmed");
        sd_sleep_ms(200); /* and no more are taken while Redis stays frozen */
        ck_assert(stats_has(o, "p", held));
        ck_assert(stats_has(o, "p", "ready: 300\n"));
    }
    kill(r.pid, SIGCONT);
    for (int i = 0; i < MORE; i++) {
        snprintf(want, sizeof want, "+OK %d", N + i + 1);
        ck_assert_str_eq(tc_reply_line(c), want);
    }
    ck_assert(stats_has(o, "p", "ready: 340\n"));
    tc_close(o);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* durability: always on a Redis without fsync on every write: the broker
 * refuses to start and says which settings are missing. */
START_TEST(test_durability_refused)
{
    ckr_t r;
    sd_t d;
    char yaml[512];

    ckr_start(&r, NULL, false, WAIT_MS);
    snprintf(yaml, sizeof yaml,
             "redis:\n  enabled: true\n  address: unix:%s\n  confirm: true\n"
             "  durability: always\n", r.sock);
    ck_assert_int_ne(sd_start(&d, yaml), 0);
    ck_assert(sd_log_has(&d, "needs Redis with appendonly yes and appendfsync always"));
    ck_assert(sd_log_has(&d, "not starting"));
    sd_stop(&d);
    ckr_stop(&r);
}
END_TEST

/* Redis killed and started again while the broker runs and changes: the
 * mirror converges to the broker's state. Redis comes back with its old
 * data (a snapshot), so stale entries must be removed, not just new ones
 * written. */
START_TEST(test_redis_restart_converges)
{
    ckr_t r;
    sd_t d;
    tc_t *c, *k;
    redisReply *rep;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, NULL);
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    k = tc_open(&d);
    for (int i = 1; i <= 10; i++) {
        char want[16];
        snprintf(want, sizeof want, "+OK %d", i);
        pub(c, "q", "x", want);
    }
    tc_sendf(k, "GET q\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG q 1 1 1");
    tc_sendf(k, "GET q\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG q 2 1 1");
    ck_assert(wait_hkeys(&r, "t:att:0:q", "1,2"));
    rep = ckr_cmd(&r, 0, "SAVE");
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);

    ckr_kill(&r);
    ck_assert(wait_connected(&d, false));
    for (int i = 11; i <= 15; i++) {
        char want[16];
        snprintf(want, sizeof want, "+OK %d", i);
        pub(c, "q", "y", want);
    }
    tc_sendf(k, "ACK 1\r\n");
    ck_assert_str_eq(tc_reply_line(k), "+OK 1");
    tc_sendf(k, "GET q\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG q 3 1 1");
    ck_assert(stats_has(c, NULL, "connected: false"));

    ckr_spawn(&r);
    ck_assert(wait_connected(&d, true));
    ck_assert(wait_hkeys(&r, "t:msg:0:q", "2,3,4,5,6,7,8,9,10,11,12,13,14,15"));
    ck_assert_int_eq(ckr_int(&r, 0, "EXISTS %s", "t:resync:topics"), 0);
    ck_assert(wait_hkeys(&r, "t:att:0:q", "2,3"));
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:msg:0:q", "15", "y"));
    ck_assert(wait_field(&r, "t:topic:q", "published", "15"));
    ck_assert(ckr_str_is(&r, "GET %s%s", "t:next_id", "", "16"));
    /* and it keeps following */
    tc_sendf(k, "ACK 2 3\r\n");
    ck_assert_str_eq(tc_reply_line(k), "+OK 2");
    ck_assert(wait_hkeys(&r, "t:msg:0:q", "4,5,6,7,8,9,10,11,12,13,14,15"));
    ck_assert(wait_hkeys(&r, "t:att:0:q", ""));
    /* One line per state change, not per message. */
    ck_assert_int_eq(sd_log_count(&d, "redis mirror lost"), 1);
    ck_assert_int_eq(sd_log_count(&d, "redis mirror connected"), 2);
    tc_close(k);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* Confirm mode with Redis down: PUB waits, then -ERR mirror unavailable,
 * and the message is not enqueued; once Redis is back PUBs are +OK again. */
START_TEST(test_confirm_redis_down)
{
    ckr_t r;
    sd_t d;
    tc_t *c, *k;
    uint64_t until;
    bool ok = false;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, "  confirm: true\n  confirm_timeout: 300ms\n");
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    pub(c, "w", "first", "+OK 1");
    ck_assert(ckr_str_is(&r, "HGET %s %s", "t:msg:0:w", "1", "first"));

    ckr_kill(&r);
    pub(c, "w", "lost", "-ERR mirror unavailable");
    ck_assert(stats_has(c, "w", "ready: 1\n"));
    ck_assert(stats_has(c, "w", "published: 1\n"));
    k = tc_open(&d);
    tc_sendf(k, "GET w\r\n");
    ck_assert_str_eq(tc_reply_line(k), "MSG w 1 1 5");
    tc_sendf(k, "GET w\r\n");
    ck_assert_str_eq(tc_reply_line(k), "-TIMEOUT");
    ck_assert_int_eq(sd_log_count(&d, "time out (-ERR mirror unavailable)"), 1);

    ckr_spawn(&r);
    until = sd_now_ms() + WAIT_MS;
    while (!ok && sd_now_ms() < until) {
        tc_sendf(c, "PUB w 5\r\nagain\r\n");
        ck_assert_ptr_nonnull(tc_reply_line(c));
        ok = c->r.type == REPLY_OK;
    }
    ck_assert(ok);
    /* +OK means Redis has it already */
    {
        char id[24];
        snprintf(id, sizeof id, "%.*s", (int)c->r.text_len, c->r.text);
        ck_assert(ckr_str_is(&r, "HGET %s %s", "t:msg:0:w", id, "again"));
    }
    ck_assert(wait_hlen(&r, 0, "t:msg:0:w", 2) == 2);
    tc_close(k);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* AUTH (requirepass) and db are honoured; a wrong password is logged once. */
START_TEST(test_auth_and_db)
{
    ckr_t r;
    sd_t d;
    tc_t *c;
    uint64_t until;

    ckr_start(&r, "s3cret", false, WAIT_MS);
    start_broker(&d, &r, "  password: s3cret\n  db: 3\n");
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    pub(c, "a", "hello", "+OK 1");
    ck_assert_int_eq(wait_hlen(&r, 3, "t:msg:0:a", 1), 1);
    ck_assert_int_eq(ckr_int(&r, 0, "EXISTS %s", "t:msg:0:a"), 0);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);

    start_broker(&d, &r, "  password: wrong\n  restore: false\n");
    c = tc_open(&d);
    pub(c, "a", "served anyway", "+OK 1");
    until = sd_now_ms() + 1000; /* several retries */
    while (sd_now_ms() < until)
        sd_sleep_ms(50);
    ck_assert(stats_has(c, NULL, "connected: false"));
    ck_assert_int_eq(sd_log_count(&d, "redis mirror: cannot use"), 1);
    ck_assert_int_eq(sd_log_count(&d, "setup refused"), 1);
    ck_assert_int_eq(sd_log_count(&d, "redis mirror connected"), 0);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* Redis down at start: the broker serves, and restores on the first
 * connection, before any write could overwrite what Redis holds. */
START_TEST(test_restore_when_redis_returns)
{
    ckr_t r;
    sd_t d;
    tc_t *c;
    redisReply *rep;
    bool seen[4] = {false};
    uint64_t until;
    bool four = false;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, NULL);
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    pub(c, "z", "old1", "+OK 1");
    pub(c, "z", "old2", "+OK 2");
    pub(c, "z", "old3", "+OK 3");
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    rep = ckr_cmd(&r, 0, "SAVE");
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
    ckr_kill(&r);

    start_broker(&d, &r, NULL);
    ck_assert(sd_log_has(&d, "cannot restore"));
    c = tc_open(&d);
    pub(c, "z", "new1", "+OK 1");
    ckr_spawn(&r); /* loads dump.rdb */
    until = sd_now_ms() + WAIT_MS;
    while (!four && sd_now_ms() < until) {
        four = stats_has(c, "z", "ready: 4\n");
        if (!four)
            sd_sleep_ms(20);
    }
    ck_assert(four);
    ck_assert(sd_log_has(&d, "restored 3 messages"));
    for (int i = 0; i < 4; i++) {
        tc_sendf(c, "GET z\r\n");
        ck_assert_ptr_nonnull(tc_reply_line(c));
        ck_assert_int_eq(c->r.type, REPLY_MSG);
        ck_assert_int_eq((int)c->r.body_len, 4);
        if (memcmp(c->r.body, "new1", 4) == 0)
            seen[0] = true;
        else
            seen[c->r.body[3] - '0'] = true;
    }
    ck_assert(seen[0] && seen[1] && seen[2] && seen[3]);
    /* Redis then holds all four (in flight now), under distinct ids. */
    ck_assert_int_eq(wait_hlen(&r, 0, "t:msg:0:z", 4), 4);
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

/* mirror: stats writes counters only; Redis frozen (SIGSTOP) does not stop
 * the broker, and the lag shows in STATS until it thaws. */
START_TEST(test_stats_mode_and_frozen_redis)
{
    ckr_t r;
    sd_t d;
    tc_t *c;
    redisReply *rep;
    bool lagging = false;
    uint64_t until;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, "  mirror: stats\n");
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    pub(c, "st", "x", "+OK 1");
    ck_assert(wait_field(&r, "t:topic:st", "published", "1"));
    ck_assert(wait_field(&r, "t:server", "published", "1"));
    rep = ckr_cmd(&r, 0, "KEYS t:msg:*");
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq((int)rep->elements, 0);
    freeReplyObject(rep);

    kill(r.pid, SIGSTOP);
    until = sd_now_ms() + WAIT_MS;
    while (!lagging && sd_now_ms() < until) {
        tc_sendf(c, "PUB st 1\r\ny\r\n");
        ck_assert_ptr_nonnull(tc_reply_line(c));
        ck_assert_int_eq(c->r.type, REPLY_OK);
        lagging = !stats_has(c, NULL, "lag_ops: 0\n");
    }
    ck_assert(lagging);
    kill(r.pid, SIGCONT);
    until = sd_now_ms() + WAIT_MS;
    while (!stats_has(c, NULL, "lag_ops: 0\n") && sd_now_ms() < until)
        sd_sleep_ms(20);
    ck_assert(stats_has(c, NULL, "lag_ops: 0\n"));
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

static void reload_with(sd_t *d, const ckr_t *r, const char *redis_yaml)
{
    char yaml[2048];

    snprintf(yaml, sizeof yaml, "listen: [\"%s\"]\nredis:\n  address: unix:%s\n%s", d->addr,
             r->sock, redis_yaml);
    ck_assert_int_eq(sd_write_conf(d, yaml), 0);
    sd_signal(d, SIGHUP);
}

/* SIGHUP: a new prefix moves the mirror (resynchronised there), enabled:
 * false stops it, enabled again starts it without a restore. */
START_TEST(test_reload)
{
    ckr_t r;
    sd_t d;
    tc_t *c;

    ckr_start(&r, NULL, false, WAIT_MS);
    start_broker(&d, &r, NULL);
    ck_assert(wait_connected(&d, true));
    c = tc_open(&d);
    pub(c, "x", "one", "+OK 1");
    ck_assert(wait_hkeys(&r, "t:msg:0:x", "1"));

    reload_with(&d, &r, "  enabled: true\n  prefix: u\n");
    ck_assert(wait_hkeys(&r, "u:msg:0:x", "1"));
    pub(c, "x", "two", "+OK 2");
    ck_assert(wait_hkeys(&r, "u:msg:0:x", "1,2"));
    ck_assert(sd_log_has(&d, "settings changed"));

    reload_with(&d, &r, "  enabled: false\n  prefix: u\n");
    ck_assert(wait_connected(&d, false));
    ck_assert(sd_log_has(&d, "redis mirror: disabled"));
    pub(c, "x", "three", "+OK 3");
    ck_assert(stats_has(c, NULL, "connected: false"));

    reload_with(&d, &r, "  enabled: true\n  prefix: u\n  confirm: true\n");
    ck_assert(wait_connected(&d, true));
    ck_assert(wait_hkeys(&r, "u:msg:0:x", "1,2,3"));
    pub(c, "x", "four", "+OK 4");
    ck_assert(ckr_str_is(&r, "HGET %s %s", "u:msg:0:x", "4", "four"));
    tc_close(c);
    ck_assert_int_eq(stop_broker(&d), 0);
    ckr_stop(&r);
}
END_TEST

static Suite *mirror_suite(void)
{
    Suite *s = suite_create("mirror");
    TCase *tc = tcase_create("redis");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_key_schema);
    tcase_add_test(tc, test_restore_after_clean_stop);
    tcase_add_test(tc, test_shards);
    tcase_add_test(tc, test_old_schema_restore);
    tcase_add_test(tc, test_meta_survives);
    tcase_add_test(tc, test_kill9_confirm);
    tcase_add_test(tc, test_redis_restart_converges);
    tcase_add_test(tc, test_confirm_redis_down);
    tcase_add_test(tc, test_confirm_pipelined);
    tcase_add_test(tc, test_kill9_redis_and_broker_always);
    tcase_add_test(tc, test_durability_refused);
    tcase_add_test(tc, test_auth_and_db);
    tcase_add_test(tc, test_restore_when_redis_returns);
    tcase_add_test(tc, test_stats_mode_and_frozen_redis);
    tcase_add_test(tc, test_reload);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mirror_suite());
    int failed;

    signal(SIGPIPE, SIG_IGN);
    atexit(kill_daemon_at_exit);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
