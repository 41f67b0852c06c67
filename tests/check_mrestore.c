/* check_mrestore.c: unit tests of reading the mirror back (mrestore): the
 * commands it sends, what it makes of every reply (the pin, repeats, error
 * replies, wrong shapes), the order the broker gets the messages in (dense
 * and sparse ids), the shards (edges, order, empty ones), the single-hash
 * schema of before them, and the blocking restore's streaming reader, fed
 * in pieces of every size, with several commands in flight. A scripted
 * Redis answers each command; no sockets.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "broker.h"
#include "mrestore.h"
#include "msg.h"
#include "topic.h"

/* One command the restore must send and the reply the script gives it. */
typedef struct step {
    const char *cmd; /* argv joined by spaces */
    const char *reply;
} step_t;

#define PIN100 "$3\r\npin\r\n$100\r\n" \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"

static const step_t script_basic[] = {
    {"GET p:next_id", "$2\r\n10\r\n"},
    {"SMEMBERS p:message_topics", "*2\r\n$1\r\na\r\n$1\r\nb\r\n"},
    {"HLEN p:messages:a", ":0\r\n"},
    {"SMEMBERS p:shards:a", "*1\r\n$1\r\n0\r\n"},
    {"HLEN p:messages:b", ":0\r\n"},
    {"SMEMBERS p:shards:b", "*1\r\n$1\r\n0\r\n"},
    /* the pin, 3 twice (a repeat is dropped), and junk that is not an id */
    {"HGETALL p:meta:0:a", "*0\r\n"},
    {"HGETALL p:msg:0:a",
     "*12\r\n$1\r\n3\r\n$3\r\nccc\r\n" PIN100 "$1\r\n2\r\n$2\r\nbb\r\n"
     "$1\r\n1\r\n$1\r\na\r\n$1\r\n3\r\n$3\r\nccc\r\n$3\r\nx-y\r\n$1\r\nz\r\n"},
    {"HGETALL p:att:0:a", "*4\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n9\r\n$1\r\n1\r\n"},
    {"HGETALL p:meta:0:b", "*0\r\n"},
    {"HGETALL p:msg:0:b", "-WRONGTYPE Operation against a key holding the wrong kind\r\n"},
    {"HGETALL p:att:0:b", "*0\r\n"},
};

/* Replies that are not the shape asked for: the key is skipped, the rest
 * is read. */
static const step_t script_shapes[] = {
    {"GET p:next_id", "$-1\r\n"},
    {"SMEMBERS p:message_topics", "*2\r\n$1\r\nc\r\n$1\r\nd\r\n"},
    {"HLEN p:messages:c", ":0\r\n"},
    {"SMEMBERS p:shards:c", "*2\r\n$1\r\n0\r\n$1\r\nx\r\n"},
    {"HLEN p:messages:d", "-WRONGTYPE Operation against a key holding the wrong kind\r\n"},
    {"SMEMBERS p:shards:d", "*1\r\n$1\r\n0\r\n"},
    {"HGETALL p:meta:0:c", "*0\r\n"},
    {"HGETALL p:msg:0:c", ":42\r\n"},
    {"HGETALL p:att:0:c", "*3\r\n$1\r\n0\r\n*0\r\n*0\r\n"},
    {"HGETALL p:meta:0:d", "*0\r\n"},
    {"HGETALL p:msg:0:d", "*2\r\n$1\r\n7\r\n$5\r\nseven\r\n"},
    {"HGETALL p:att:0:d", "*2\r\n$1\r\n7\r\n$3\r\nbad\r\n"},
};

/* Shards at their edges (65,536 ids each): each shard holds its own ids
 * only (131072 in shard 0 is not ours), the set comes unsorted and is read
 * in order, a shard with only the pin is reported empty. */
static const step_t script_shards[] = {
    {"GET p:next_id", "$-1\r\n"},
    {"SMEMBERS p:message_topics", "*1\r\n$1\r\ns\r\n"},
    {"HLEN p:messages:s", ":0\r\n"},
    {"SMEMBERS p:shards:s", "*4\r\n$1\r\n2\r\n$1\r\n0\r\n$1\r\n3\r\n$1\r\n1\r\n"},
    {"HGETALL p:meta:0:s", "*0\r\n"},
    {"HGETALL p:msg:0:s",
     "*6\r\n$5\r\n65535\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$6\r\n131072\r\n$1\r\nx\r\n"},
    {"HGETALL p:att:0:s", "*2\r\n$5\r\n65535\r\n$1\r\n2\r\n"},
    {"HGETALL p:meta:1:s", "*0\r\n"},
    {"HGETALL p:msg:1:s", "*6\r\n$5\r\n65536\r\n$1\r\nc\r\n$6\r\n131071\r\n$1\r\nd\r\n" PIN100},
    {"HGETALL p:att:1:s", "*2\r\n$6\r\n131071\r\n$1\r\n4\r\n"},
    {"HGETALL p:meta:2:s", "*0\r\n"},
    {"HGETALL p:msg:2:s", "*2\r\n$6\r\n131072\r\n$1\r\ne\r\n"},
    {"HGETALL p:att:2:s", "*0\r\n"},
    {"HGETALL p:meta:3:s", "*0\r\n"},
    {"HGETALL p:msg:3:s", "*2\r\n" PIN100},
    {"HGETALL p:att:3:s", "*0\r\n"},
};

/* The single-hash schema of before the shards: read by pages (HSCAN), and
 * the restore says Redis must be rewritten. */
static const step_t script_old[] = {
    {"GET p:next_id", "$1\r\n5\r\n"},
    {"SMEMBERS p:message_topics", "*1\r\n$1\r\no\r\n"},
    {"HLEN p:messages:o", ":3\r\n"},
    {"SMEMBERS p:shards:o", "*1\r\n$1\r\n0\r\n"},
    {"HSCAN p:messages:o 0 COUNT 10000",
     "*2\r\n$1\r\n9\r\n*4\r\n$1\r\n1\r\n$1\r\na\r\n" PIN100},
    {"HSCAN p:messages:o 9 COUNT 10000", "*2\r\n$1\r\n0\r\n*2\r\n$1\r\n2\r\n$2\r\nbb\r\n"},
    {"HSCAN p:attempts:o 0 COUNT 10000", "*2\r\n$1\r\n0\r\n*2\r\n$1\r\n2\r\n$1\r\n3\r\n"},
    {"HGETALL p:meta:0:o", "*0\r\n"},
    {"HGETALL p:msg:0:o", "*2\r\n$1\r\n4\r\n$4\r\ndddd\r\n"},
    {"HGETALL p:att:0:o", "*2\r\n$1\r\n4\r\n$1\r\n1\r\n"},
};

static char *join(int argc, const char **argv, const size_t *lens)
{
    char *s = calloc(1, 512);
    size_t n = 0;

    for (int i = 0; i < argc; i++)
        n += (size_t)snprintf(s + n, 512 - n, i ? " %.*s" : "%.*s", (int)lens[i], argv[i]);
    return s;
}

/* The next command, checked against the script. */
static void expect_command(mrestore_t *rs, const step_t *script, size_t nsteps, size_t *sent)
{
    const char *argv[5];
    size_t lens[5];
    int argc = mrestore_command(rs, argv, lens);
    char *got;

    ck_assert_int_gt(argc, 0);
    ck_assert_uint_lt(*sent, nsteps);
    got = join(argc, argv, lens);
    ck_assert_str_eq(got, script[*sent].cmd);
    free(got);
    (*sent)++;
}

/* A reply as a redisReply, through hiredis's own reader. */
static redisReply *parse_reply(const char *resp)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    ck_assert_int_eq(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
    ck_assert_int_eq(redisReaderGetReply(r, &reply), REDIS_OK);
    ck_assert_ptr_nonnull(reply);
    redisReaderFree(r);
    return reply;
}

/* The async connection's way: one command, one redisReply. */
static void run_feed(mrestore_t *rs, const step_t *script, size_t nsteps)
{
    size_t sent = 0;
    int st = 0;

    while (st == 0) {
        redisReply *r;
        expect_command(rs, script, nsteps, &sent);
        r = parse_reply(script[sent - 1].reply);
        st = mrestore_feed(rs, r);
        freeReplyObject(r);
    }
    ck_assert_int_eq(st, 1);
    ck_assert_uint_eq(sent, nsteps);
}

/* How the streaming went: commands sent while the reply before them was
 * still coming, and the most commands in flight at once. */
typedef struct flow {
    int ahead;
    size_t maxfly;
} flow_t;

/* The blocking restore's way: the small keys through mrestore_feed, then
 * the streaming reader, fed `chunk` bytes at a time, sending the next
 * command whenever it may. */
static flow_t run_stream(mrestore_t *rs, const step_t *script, size_t nsteps, size_t chunk)
{
    size_t sent = 0, answered = 0, off = 0;
    redisReader *rd;
    int st = 0;
    flow_t fl = {0, 0};

    while (st == 0 && !mrestore_scanning(rs)) {
        redisReply *r;
        expect_command(rs, script, nsteps, &sent);
        r = parse_reply(script[sent - 1].reply);
        st = mrestore_feed(rs, r);
        freeReplyObject(r);
        answered++;
    }
    rd = mrestore_reader_new(rs);
    ck_assert_ptr_nonnull(rd);
    while (st == 0) {
        void *reply = NULL;
        const char *resp;
        size_t n;

        if (mrestore_may_send(rs)) {
            if (off > 0)
                fl.ahead++;
            expect_command(rs, script, nsteps, &sent);
            fl.maxfly = sent - answered > fl.maxfly ? sent - answered : fl.maxfly;
            continue;
        }
        ck_assert_uint_lt(answered, sent); /* never waiting with nothing asked */
        ck_assert_uint_le(sent - answered, MRESTORE_WINDOW);
        ck_assert_int_eq(redisReaderGetReply(rd, &reply), REDIS_OK);
        if (reply != NULL) {
            st = mrestore_page_end(rs);
            answered++;
            off = 0;
            continue;
        }
        resp = script[answered].reply;
        ck_assert_uint_lt(off, strlen(resp) + 1);
        n = strlen(resp) - off < chunk ? strlen(resp) - off : chunk;
        ck_assert_int_eq(redisReaderFeed(rd, resp + off, n), REDIS_OK);
        off += n;
    }
    redisReaderFree(rd);
    ck_assert_int_eq(st, 1);
    ck_assert_uint_eq(sent, nsteps);
    ck_assert_uint_eq(answered, nsteps);
    return fl;
}

/* ---- what the broker ends up with ---- */

typedef struct seen {
    char line[64][64];
    size_t n;
} seen_t;

static void seen_add(void *ctx, const topic_t *t, const msg_t *m)
{
    seen_t *s = ctx;
    size_t nlen;
    const char *name = topic_name(t, &nlen);

    ck_assert_uint_lt(s->n, 64);
    snprintf(s->line[s->n++], 64, "%.*s %llu %u %.*s", (int)nlen, name, (unsigned long long)m->id,
             (unsigned)m->attempt, (int)m->len, m->data);
}

static void apply_and_check(mrestore_t *rs, const char *const *want, size_t nwant,
                            uint64_t next_id)
{
    config_t *cfg = config_default();
    broker_t *b;
    seen_t seen = {.n = 0};

    ck_assert_ptr_nonnull(cfg);
    b = broker_new(cfg, 0);
    ck_assert_ptr_nonnull(b);
    mrestore_apply(rs, b, 1000, 1700000000000ull);
    broker_foreach_message(b, seen_add, &seen);
    ck_assert_uint_eq(seen.n, nwant);
    for (size_t i = 0; i < nwant; i++)
        ck_assert_str_eq(seen.line[i], want[i]);
    ck_assert_uint_eq(broker_next_id(b), next_id);
    broker_free(b);
    config_free(cfg);
}

static const char *const want_basic[] = {"a 1 0 a", "a 2 0 bb", "a 3 2 ccc"};

START_TEST(test_feed_basic)
{
    mrestore_t *rs = mrestore_new("p", 0);

    run_feed(rs, script_basic, sizeof script_basic / sizeof script_basic[0]);
    apply_and_check(rs, want_basic, 3, 10);
    mrestore_free(rs);
}
END_TEST

/* Every piece size, from a byte at a time to whole replies: the same
 * commands, the same messages, and the shards asked for MRESTORE_WINDOW
 * at a time. */
START_TEST(test_stream_basic)
{
    for (size_t chunk = 1; chunk <= 400; chunk = chunk < 16 ? chunk + 1 : chunk * 2) {
        mrestore_t *rs = mrestore_new("p", 0);
        flow_t fl = run_stream(rs, script_basic, sizeof script_basic / sizeof script_basic[0], chunk);
        ck_assert_uint_eq(fl.maxfly, MRESTORE_WINDOW);
        apply_and_check(rs, want_basic, 3, 10);
        ck_assert(!mrestore_found_old(rs));
        mrestore_free(rs);
    }
}
END_TEST

static const char *const want_shards[] = {"s 1 0 b", "s 65535 2 a", "s 65536 0 c",
                                          "s 131071 4 d", "s 131072 0 e"};

/* Several shards, ids on both sides of each edge, both ways of reading;
 * shard 3 held only the pin. */
START_TEST(test_shards)
{
    size_t n = sizeof script_shards / sizeof script_shards[0];

    for (int stream = 0; stream < 2; stream++) {
        for (size_t chunk = 1; chunk <= 256; chunk *= 4) {
            mrestore_t *rs = mrestore_new("p", 0);
            const char *topic;
            uint64_t shard;
            if (stream)
                run_stream(rs, script_shards, n, chunk);
            else
                run_feed(rs, script_shards, n);
            ck_assert(mrestore_empty_shard(rs, 0, &topic, &shard));
            ck_assert_str_eq(topic, "s");
            ck_assert_uint_eq(shard, 3);
            ck_assert(!mrestore_empty_shard(rs, 1, &topic, &shard));
            apply_and_check(rs, want_shards, 5, 131073);
            mrestore_free(rs);
        }
    }
}
END_TEST

static const char *const want_old[] = {"o 1 0 a", "o 2 3 bb", "o 4 1 dddd"};

/* The old single-hash schema is read (page by page, the next page asked
 * for as soon as its cursor is in) beside the shards, and flagged. */
START_TEST(test_old_schema)
{
    size_t n = sizeof script_old / sizeof script_old[0];

    for (int stream = 0; stream < 2; stream++) {
        for (size_t chunk = 1; chunk <= 256; chunk *= 2) {
            mrestore_t *rs = mrestore_new("p", 0);
            if (stream) {
                flow_t fl = run_stream(rs, script_old, n, chunk);
                if (chunk < 16)
                    ck_assert_int_gt(fl.ahead, 0);
            } else {
                run_feed(rs, script_old, n);
            }
            ck_assert(mrestore_found_old(rs));
            apply_and_check(rs, want_old, 3, 5);
            mrestore_free(rs);
        }
    }
}
END_TEST

static const char *const want_shapes[] = {"d 7 0 seven"};

START_TEST(test_shapes)
{
    for (int stream = 0; stream < 2; stream++) {
        for (size_t chunk = 1; chunk <= 64; chunk *= 4) {
            mrestore_t *rs = mrestore_new("p", 0);
            size_t n = sizeof script_shapes / sizeof script_shapes[0];
            if (stream)
                run_stream(rs, script_shapes, n, chunk);
            else
                run_feed(rs, script_shapes, n);
            apply_and_check(rs, want_shapes, 1, 8);
            mrestore_free(rs);
        }
    }
}
END_TEST

/* Ids far apart are sorted rather than placed; ids in a dense window are
 * placed; both come out in id order, each once. */
START_TEST(test_order_sparse_and_dense)
{
    static char page[2][4096];
    const char *ids[2][6] = {{"900000000", "5", "70000", "5", "1", "3000000000"},
                             {"12", "10", "11", "15", "13", "14"}};
    const char *const want[2][6] = {{"s 1 0 v", "s 5 0 v", "s 70000 0 v", "s 900000000 0 v",
                                     "s 3000000000 0 v"},
                                    {"s 10 0 v", "s 11 0 v", "s 12 0 v", "s 13 0 v", "s 14 0 v",
                                     "s 15 0 v"}};

    for (int k = 0; k < 2; k++) {
        size_t len = (size_t)snprintf(page[k], sizeof page[k], "*2\r\n$1\r\n0\r\n*12\r\n");
        for (int i = 0; i < 6; i++)
            len += (size_t)snprintf(page[k] + len, sizeof page[k] - len, "$%zu\r\n%s\r\n$1\r\nv\r\n",
                                    strlen(ids[k][i]), ids[k][i]);
        /* the old schema: one hash, any ids */
        const step_t script[] = {
            {"GET p:next_id", "$1\r\n1\r\n"},
            {"SMEMBERS p:message_topics", "*1\r\n$1\r\ns\r\n"},
            {"HLEN p:messages:s", ":6\r\n"},
            {"SMEMBERS p:shards:s", "*0\r\n"},
            {"HSCAN p:messages:s 0 COUNT 10000", page[k]},
            {"HSCAN p:attempts:s 0 COUNT 10000", "*2\r\n$1\r\n0\r\n*0\r\n"},
        };
        mrestore_t *rs = mrestore_new("p", 0);
        run_stream(rs, script, 6, 7);
        apply_and_check(rs, want[k], k == 0 ? 5 : 6, k == 0 ? 3000000001u : 16);
        mrestore_free(rs);
    }
}
END_TEST

/* Meta records: read before their shard's messages; a message with an ext
 * record gets its block (priority, TTR, counts, age), delayed ones their
 * due time back on the broker's clock (one that passed while down: due at
 * once), buried ones their state; a malformed record is skipped, and a
 * record without a message means nothing. */
static const step_t script_meta[] = {
    {"GET p:next_id", "$-1\r\n"},
    {"SMEMBERS p:message_topics", "*1\r\n$1\r\nj\r\n"},
    {"HLEN p:messages:j", ":0\r\n"},
    {"SMEMBERS p:shards:j", "*1\r\n$1\r\n0\r\n"},
    {"HGETALL p:meta:0:j",
     "*12\r\n"
     "$1\r\n1\r\n$35\r\nb:0:5:30000:0:1699999990000:2:1:0:3\r\n"
     "$1\r\n2\r\n$15\r\nd:1700000060000\r\n"
     "$1\r\n3\r\n$15\r\nd:1600000000000\r\n"
     "$1\r\n4\r\n$33\r\nr:0:7:400:0:1700000000000:0:0:0:0\r\n"
     "$1\r\n9\r\n$15\r\nd:1700000060000\r\n"
     "$1\r\n6\r\n$5\r\nx:bad\r\n"},
    {"HGETALL p:msg:0:j",
     "*12\r\n$1\r\n4\r\n$1\r\nd\r\n$1\r\n2\r\n$1\r\nb\r\n$1\r\n1\r\n$1\r\na\r\n"
     "$1\r\n3\r\n$1\r\nc\r\n$1\r\n5\r\n$1\r\ne\r\n$1\r\n6\r\n$1\r\nf\r\n"},
    {"HGETALL p:att:0:j", "*2\r\n$1\r\n1\r\n$1\r\n1\r\n"},
};

typedef struct jobs_seen {
    char line[16][96];
    size_t n;
} jobs_seen_t;

static void jobs_add(void *ctx, const topic_t *t, const msg_t *m)
{
    jobs_seen_t *s = ctx;
    const msg_ext_t *x = msg_ext(m);

    (void)t;
    ck_assert_uint_lt(s->n, 16);
    if (x == NULL)
        snprintf(s->line[s->n++], 96, "%llu %u %.*s st=%u due=%llu", (unsigned long long)m->id,
                 (unsigned)m->attempt, (int)m->len, m->data, (unsigned)m->state,
                 m->state == MSG_DELAYED ? (unsigned long long)m->deadline : 0ull);
    else
        snprintf(s->line[s->n++], 96,
                 "%llu %u %.*s st=%u pri=%u ttr=%llu created=%llu rel=%u bur=%u tmo=%u",
                 (unsigned long long)m->id, (unsigned)m->attempt, (int)m->len, m->data,
                 (unsigned)m->state, (unsigned)x->pri, (unsigned long long)x->ttr_ms,
                 (unsigned long long)x->created, (unsigned)x->releases, (unsigned)x->buries,
                 (unsigned)x->timeouts);
}

static bool jobs_has(const jobs_seen_t *s, const char *want)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->line[i], want) == 0)
            return true;
    for (size_t i = 0; i < s->n; i++)
        fprintf(stderr, "  have: %s\n", s->line[i]);
    fprintf(stderr, "  want: %s\n", want);
    return false;
}

START_TEST(test_meta)
{
    size_t n = sizeof script_meta / sizeof script_meta[0];
    char want[96];

    for (int stream = 0; stream < 2; stream++) {
        config_t *cfg = config_default();
        mrestore_t *rs = mrestore_new("p", 0);
        jobs_seen_t seen = {.n = 0};
        broker_t *b;

        if (stream)
            run_stream(rs, script_meta, n, 5);
        else
            run_feed(rs, script_meta, n);
        b = broker_new(cfg, 0);
        ck_assert_ptr_nonnull(b);
        /* the broker's clock says 100000 at unix 1700000000000 */
        mrestore_apply(rs, b, 100000, 1700000000000ull);
        broker_foreach_message(b, jobs_add, &seen);
        ck_assert_uint_eq(seen.n, 6);
        snprintf(want, sizeof want, "1 1 a st=%u pri=5 ttr=30000 created=90000 rel=2 bur=1 tmo=3",
                 (unsigned)MSG_BURIED);
        ck_assert(jobs_has(&seen, want));
        snprintf(want, sizeof want, "2 0 b st=%u due=160000", (unsigned)MSG_DELAYED);
        ck_assert(jobs_has(&seen, want));
        snprintf(want, sizeof want, "3 0 c st=%u due=100000", (unsigned)MSG_DELAYED);
        ck_assert(jobs_has(&seen, want));
        snprintf(want, sizeof want, "4 0 d st=%u pri=7 ttr=400 created=100000 rel=0 bur=0 tmo=0",
                 (unsigned)MSG_READY);
        ck_assert(jobs_has(&seen, want));
        snprintf(want, sizeof want, "5 0 e st=%u due=0", (unsigned)MSG_READY);
        ck_assert(jobs_has(&seen, want));
        snprintf(want, sizeof want, "6 0 f st=%u due=0", (unsigned)MSG_READY);
        ck_assert(jobs_has(&seen, want));
        broker_free(b);
        config_free(cfg);
        mrestore_free(rs);
    }
}
END_TEST

/* What the mirror writes, the restore reads back. */
START_TEST(test_meta_format)
{
    msg_t *m = msg_new_ext(1), *p = msg_new(1);
    msg_ext_t *x = msg_ext(m);
    char rec[MRESTORE_META_MAX];
    size_t n;

    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(p);
    m->state = MSG_BURIED;
    x->pri = 4294967295u;
    x->ttr_ms = 18446744073709551615ull;
    x->created = 500;
    x->releases = x->buries = x->kicks = x->timeouts = 4294967295u;
    ck_assert(mrestore_meta_needed(m));
    n = mrestore_meta_format(m, 1000, 1700000000000ull, rec);
    ck_assert_uint_lt(n, MRESTORE_META_MAX);
    ck_assert_str_eq((rec[n] = '\0', rec), "b:0:4294967295:18446744073709551615:0:1699999999500:"
                                           "4294967295:4294967295:4294967295:4294967295");
    p->state = MSG_READY;
    ck_assert(!mrestore_meta_needed(p));
    p->state = MSG_DELAYED;
    p->deadline = 61000;
    ck_assert(mrestore_meta_needed(p));
    n = mrestore_meta_format(p, 1000, 1700000000000ull, rec);
    ck_assert_str_eq((rec[n] = '\0', rec), "d:1700000060000");
    p->state = MSG_HELD; /* confirm mode, with a delay */
    n = mrestore_meta_format(p, 1000, 1700000000000ull, rec);
    ck_assert_str_eq((rec[n] = '\0', rec), "d:1700000060000");
    p->state = MSG_NEW;
    msg_free(m);
    msg_free(p);
}
END_TEST

/* Nothing mirrored: two commands, nothing restored. */
START_TEST(test_empty)
{
    const step_t script[] = {
        {"GET p:next_id", "$-1\r\n"},
        {"SMEMBERS p:message_topics", "*0\r\n"},
    };
    mrestore_t *rs = mrestore_new("p", 0);

    ck_assert(!mrestore_scanning(rs));
    run_stream(rs, script, 2, 3);
    apply_and_check(rs, NULL, 0, 1);
    mrestore_free(rs);
}
END_TEST

static Suite *mrestore_suite(void)
{
    Suite *s = suite_create("mrestore");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_feed_basic);
    tcase_add_test(tc, test_stream_basic);
    tcase_add_test(tc, test_shards);
    tcase_add_test(tc, test_old_schema);
    tcase_add_test(tc, test_meta);
    tcase_add_test(tc, test_meta_format);
    tcase_add_test(tc, test_shapes);
    tcase_add_test(tc, test_order_sparse_and_dense);
    tcase_add_test(tc, test_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(mrestore_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
