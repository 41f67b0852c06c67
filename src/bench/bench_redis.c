/* bench_redis.c: the Redis Streams target of `sluice bench`: producers
 * pipeline XADD, consumers read one consumer group with XREADGROUP ...
 * COUNT credit BLOCK 100 and XACK in batches. Commands are written as RESP
 * straight into the connection's output buffer; replies are read with
 * hiredis's reader, fed from the connection's input buffer.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_int.h"
#include "clock.h"

#define BENCH_REDIS_BLOCK_MS 100
#define BENCH_REDIS_GROUP "sluice-bench"

/* ---- commands out ---- */

/* A RESP header, "*N\r\n" or "$N\r\n", into h (PROTO_NUM_MAX + 3 bytes):
 * its length. No printf: a producer writes six of them per message. */
static size_t brd_head(char *h, char type, size_t n)
{
    size_t l = 1;

    h[0] = type;
    l += proto_u64(h + 1, n);
    h[l++] = '\r';
    h[l++] = '\n';
    return l;
}

static int brd_put_argc(client_t *c, size_t argc)
{
    char h[PROTO_NUM_MAX + 3];

    return client_put(c, h, brd_head(h, '*', argc));
}

/* One bulk string, header and all, in one piece of the output buffer. */
static int brd_put_bulk(client_t *c, const char *s, size_t len)
{
    char h[PROTO_NUM_MAX + 3];
    size_t hl = brd_head(h, '$', len);
    char *p = client_space(c, hl + len + 2);

    if (!p)
        return -1;
    memcpy(p, h, hl);
    memcpy(p + hl, s, len);
    memcpy(p + hl + len, "\r\n", 2);
    return 0;
}

/* One command; lens NULL when every argument is a C string. */
int brd_put_cmd(client_t *c, int argc, const char *const *argv, const size_t *lens)
{
    if (brd_put_argc(c, (size_t)argc) < 0)
        return -1;
    for (int i = 0; i < argc; i++) {
        if (brd_put_bulk(c, argv[i], lens ? lens[i] : strlen(argv[i])) < 0)
            return -1;
    }
    return 0;
}

/* ---- replies in ----
 *
 * hiredis's reader parses; instead of building a tree of redisReply
 * objects (two allocations per element: ten per message of an XREADGROUP
 * reply, which made the consumer half again as costly) it calls the
 * functions below for every element as it is read, and they keep only
 * what the bench needs: the type of the reply, an error's text, and the
 * entries of an XREADGROUP reply, handed to a sink on the spot. */

/* What an XREADGROUP reply, [[stream, [[id, [field, value, ...]], ...]], ...],
 * has at a place below its top. */
typedef enum brd_slot {
    BRD_ANY,        /* a stream's name, a field's name: not looked at */
    BRD_PAIR,       /* a stream or an entry: an array of two */
    BRD_ENTRIES,    /* a stream's entries: an array, or nil for none */
    BRD_ID,         /* an entry's id: a bulk string */
    BRD_FIELDS,     /* an entry's fields: an array, or nil if it was deleted */
    BRD_VALUE,      /* a field's value, the payload: a bulk string (or nil) */
} brd_slot_t;

/* The slot of a read task: by its depth (0 the reply, 1 a stream, 2 its
 * name and entries, 3 an entry, 4 its id and fields, 5 a field or value)
 * and its index in its parent. A BLMPOP reply, [key, [value, ...]], has
 * its values at depth 2. */
static brd_slot_t brd_slot(const brd_rd_t *rd, const redisReadTask *t)
{
    int d = 0;

    for (const redisReadTask *p = t; p->parent; p = p->parent)
        d++;
    if (rd->sink.list)
        return d == 1 ? (t->idx == 1 ? BRD_ENTRIES : BRD_ANY) : d == 2 ? BRD_VALUE : BRD_ANY;
    switch (d) {
    case 1:
    case 3: return BRD_PAIR;
    case 2: return t->idx == 1 ? BRD_ENTRIES : BRD_ANY;
    case 4: return t->idx == 0 ? BRD_ID : BRD_FIELDS;
    case 5: return t->idx % 2 == 1 ? BRD_VALUE : BRD_ANY;
    default: return BRD_ANY;
    }
}

/* A new reply starts: no parent. */
static bool brd_rd_top(brd_rd_t *rd, const redisReadTask *t, int type)
{
    if (t->parent)
        return false;
    rd->type = type;
    rd->bad = false;
    rd->err[0] = '\0';
    return true;
}

static void *brd_on_string(const redisReadTask *t, char *s, size_t len)
{
    brd_rd_t *rd = t->privdata;

    if (brd_rd_top(rd, t, t->type)) {
        if (t->type == REDIS_REPLY_ERROR)
            snprintf(rd->err, sizeof rd->err, "-%.*s", (int)(len > 199 ? 199 : len), s);
        return rd;
    }
    if (!rd->sink.value)
        return rd;
    brd_slot_t slot = brd_slot(rd, t);
    bool bulk = t->type == REDIS_REPLY_STRING;
    if (slot == BRD_ID && bulk)
        rd->bad |= rd->sink.id(rd->sink.arg, s, len) < 0;
    else if (slot == BRD_VALUE && bulk)
        rd->sink.value(rd->sink.arg, s, len);
    else if (slot != BRD_ANY)
        rd->bad = true;
    return rd;
}

static void *brd_on_array(const redisReadTask *t, int n)
{
    brd_rd_t *rd = t->privdata;

    if (brd_rd_top(rd, t, REDIS_REPLY_ARRAY) || !rd->sink.value)
        return rd;
    brd_slot_t slot = brd_slot(rd, t);
    if ((slot == BRD_PAIR && n != 2) || slot == BRD_ID || slot == BRD_VALUE)
        rd->bad = true;
    return rd;
}

static void *brd_on_integer(const redisReadTask *t, long long v)
{
    brd_rd_t *rd = t->privdata;

    (void)v;
    if (!brd_rd_top(rd, t, REDIS_REPLY_INTEGER) && rd->sink.value && brd_slot(rd, t) != BRD_ANY)
        rd->bad = true;
    return rd;
}

static void *brd_on_nil(const redisReadTask *t)
{
    brd_rd_t *rd = t->privdata;

    if (brd_rd_top(rd, t, REDIS_REPLY_NIL) || !rd->sink.value)
        return rd;   /* at the top: XREADGROUP's BLOCK timed out */
    switch (brd_slot(rd, t)) {
    case BRD_FIELDS: rd->sink.value(rd->sink.arg, NULL, 0); break;   /* deleted before it was read */
    case BRD_VALUE: rd->sink.value(rd->sink.arg, "", 0); break;      /* not a payload: corrupt */
    case BRD_PAIR:
    case BRD_ID: rd->bad = true; break;
    default: break;
    }
    return rd;
}

/* Nothing to free: every element "object" is the brd_rd_t itself. */
static void brd_on_free(void *obj)
{
    (void)obj;
}

static redisReplyObjectFunctions brd_rd_fn = {
    .createString = brd_on_string,
    .createArray = brd_on_array,
    .createInteger = brd_on_integer,
    .createNil = brd_on_nil,
    .freeObject = brd_on_free,
};

brd_rd_t *brd_rd_new(const brd_sink_t *sink)
{
    brd_rd_t *rd = calloc(1, sizeof *rd);

    if (!rd)
        return NULL;
    rd->r = redisReaderCreateWithFunctions(&brd_rd_fn);
    if (!rd->r) {
        free(rd);
        return NULL;
    }
    rd->r->privdata = rd;   /* hiredis hands it to every read task */
    /* keep the buffer: by default an emptied one over 16 KiB is freed on
     * the next feed, so every XREADGROUP reply would grow a new one */
    rd->r->maxbuf = 0;
    if (sink)
        rd->sink = *sink;
    return rd;
}

void brd_rd_free(brd_rd_t *rd)
{
    if (!rd)
        return;
    redisReaderFree(rd->r);
    free(rd);
}

int brd_rd_feed(brd_rd_t *rd, const char *p, size_t n)
{
    return redisReaderFeed(rd->r, p, n) == REDIS_OK ? 0 : -1;
}

int brd_rd_get(brd_rd_t *rd)
{
    void *rep = NULL;

    if (redisReaderGetReply(rd->r, &rep) != REDIS_OK)
        return -1;
    return rep != NULL;
}

/* The next whole reply on c, after handing the reader every byte received
 * so far: 1 (rd describes it), 0 when none is complete yet, -1 when the
 * bytes are not RESP. */
int brd_next(client_t *c, brd_rd_t *rd)
{
    size_t n = client_avail(c);

    if (n) {
        if (brd_rd_feed(rd, client_data(c), n) < 0)
            return -1;
        client_consume(c, n);
    }
    return brd_rd_get(rd);
}

/* A reply that is not the error or the type expected, for messages. */
const char *brd_errstr(const brd_rd_t *rd, char *buf, size_t len)
{
    if (rd->type == REDIS_REPLY_ERROR)
        return rd->err;
    snprintf(buf, len, "unexpected reply (hiredis type %d)", rd->type);
    return buf;
}

/* ---- set-up and clean-up ---- */

/* A blocking command on a fresh connection. */
int brd_command(client_t *c, int argc, const char *const *argv, char *err, size_t errlen)
{
    brd_rd_t *rd = brd_rd_new(NULL);
    int k = -1, rc = -1;

    if (!rd) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (brd_put_cmd(c, argc, argv, NULL) == 0 && client_flush(c) == 0) {
        uint64_t deadline = clock_ns() + (uint64_t)BENCH_REPLY_MS * 1000000u;
        while ((k = brd_next(c, rd)) == 0) {
            if (clock_ns() > deadline || client_step(c, 100, -1, NULL) < 0) {
                k = -1;
                break;
            }
        }
    }
    if (k != 1)
        snprintf(err, errlen, "%s", c->err[0] ? c->err : "no reply");
    else if (rd->type == REDIS_REPLY_ERROR)
        snprintf(err, errlen, "%s", rd->err);
    else
        rc = 0;
    brd_rd_free(rd);
    return rc;
}

/* Start from an empty stream with a consumer group, so leftovers of an
 * earlier run are not counted. */
static int brd_setup(bench_t *b, char *err, size_t errlen)
{
    char why[CLIENT_ERR_MAX];
    client_t *c = client_connect(b->o.addr, brd_target.port, BENCH_CONNECT_MS, why);
    int rc = -1;

    if (c) {
        const char *del[] = { "DEL", b->o.topic };
        const char *grp[] = { "XGROUP", "CREATE", b->o.topic, BENCH_REDIS_GROUP, "$", "MKSTREAM" };
        rc = brd_command(c, 2, del, why, sizeof why);
        if (rc == 0)
            rc = brd_command(c, 6, grp, why, sizeof why);
        client_free(c);
    }
    if (rc < 0)
        snprintf(err, errlen, "redis setup: %s", why);
    return rc;
}

void brd_teardown(bench_t *b)
{
    char err[CLIENT_ERR_MAX];
    client_t *c = client_connect(b->o.addr, b->o.target->port, BENCH_CONNECT_MS, err);
    const char *del[] = { "DEL", b->o.topic };

    if (!c)
        return;
    brd_command(c, 2, del, err, sizeof err);
    client_free(c);
}

/* ---- producer: the worker's priv is its connection's reader ---- */

int brd_prod_open(bench_worker_t *w)
{
    w->priv = brd_rd_new(NULL);
    if (w->priv)
        return 0;
    bench_note(w->b, true, "producer %u: out of memory", w->idx);
    return -1;
}

void brd_prod_close(bench_worker_t *w)
{
    brd_rd_free(w->priv);
    w->priv = NULL;
}

static int brd_prod_put(bench_worker_t *w, const char *payload, size_t n)
{
    const char *topic = w->b->o.topic;
    const char *argv[] = { "XADD", topic, "*", "d", payload };
    size_t lens[] = { 4, strlen(topic), 1, 1, n };

    return brd_put_cmd(w->c, 5, argv, lens);
}

int brd_prod_answer(bench_worker_t *w, int ok_type, char *err, size_t errlen)
{
    brd_rd_t *rd = w->priv;
    int k = brd_next(w->c, rd);

    if (k <= 0)
        return k;
    if (rd->type == ok_type)
        return 1;
    if (rd->type != REDIS_REPLY_ERROR)
        return -1;
    snprintf(err, errlen, "%s", rd->err);
    return 2;
}

static int brd_prod_reply(bench_worker_t *w, char *err, size_t errlen)
{
    return brd_prod_answer(w, REDIS_REPLY_STRING, err, errlen); /* the new entry's id */
}

/* ---- consumer ---- */

/* Stream entry ids waiting for XACK, kept as one string of NUL-ended ids. */
typedef struct brd_ids {
    bench_buf_t b;
    size_t n;
} brd_ids_t;

/* One consumer's connection. */
typedef struct brd_cons {
    bench_worker_t *w;
    brd_rd_t *rd;           /* its sink: brd_ids_add and brd_take */
    brd_ids_t ids;
    unsigned pending;       /* XACKs not answered yet */
    bool reading;           /* an XREADGROUP is out */
} brd_cons_t;

static int brd_ids_add(void *arg, const char *id, size_t n)
{
    brd_ids_t *ids = &((brd_cons_t *)arg)->ids;

    if (bench_buf_room(&ids->b, n + 1, 4096) < 0)
        return -1;
    memcpy(ids->b.p + ids->b.len, id, n);
    ids->b.p[ids->b.len + n] = '\0';
    ids->b.len += n + 1;
    ids->n++;
    return 0;
}

static void brd_take(void *arg, const char *p, size_t n)
{
    bench_worker_t *w = ((brd_cons_t *)arg)->w;

    if (p)
        bench_take(w, p, n);
    else
        atomic_fetch_add(&w->b->corrupt, 1);   /* the entry was deleted under us */
}

/* XACK everything collected, ack_batch ids per command. */
static int brd_ack(brd_cons_t *s)
{
    bench_worker_t *w = s->w;
    const char *p = s->ids.b.p;
    const char *head[] = { "XACK", w->b->o.topic, BENCH_REDIS_GROUP };

    for (size_t done = 0; done < s->ids.n;) {
        size_t k = s->ids.n - done < w->b->o.ack_batch ? s->ids.n - done : w->b->o.ack_batch;
        if (brd_put_argc(w->c, k + 3) < 0)
            return -1;
        for (int i = 0; i < 3; i++) {
            if (brd_put_bulk(w->c, head[i], strlen(head[i])) < 0)
                return -1;
        }
        for (size_t i = 0; i < k; i++) {
            size_t l = strlen(p);
            if (brd_put_bulk(w->c, p, l) < 0)
                return -1;
            p += l + 1;
        }
        done += k;
        s->pending++;
    }
    s->ids.b.len = s->ids.n = 0;
    return 0;
}

static int brd_read_cmd(bench_worker_t *w, const char *consumer)
{
    bench_opts_t *o = &w->b->o;
    char count[16], block[16];
    snprintf(count, sizeof count, "%u", o->credit);
    snprintf(block, sizeof block, "%d", BENCH_REDIS_BLOCK_MS);
    const char *argv[] = { "XREADGROUP", "GROUP", BENCH_REDIS_GROUP, consumer, "COUNT", count,
                           "BLOCK", block, "STREAMS", o->topic, ">" };

    return brd_put_cmd(w->c, 11, argv, NULL);
}

/* One reply, whose entries (if any) the reader already handed over: XACK
 * answers come first (they were sent first), then the XREADGROUP answer. */
static int brd_cons_reply(brd_cons_t *s)
{
    bench_worker_t *w = s->w;
    const brd_rd_t *rd = s->rd;
    char e[64];

    if (s->pending) {
        s->pending--;
        if (rd->type != REDIS_REPLY_INTEGER)
            bench_note(w->b, false, "consumer %u: XACK: %s", w->idx, brd_errstr(rd, e, sizeof e));
        return 0;
    }
    if (rd->type == REDIS_REPLY_ERROR) {
        bench_note(w->b, true, "consumer %u: XREADGROUP: %s", w->idx, rd->err);
        return -1;
    }
    s->reading = false;
    if (rd->bad || (rd->type != REDIS_REPLY_ARRAY && rd->type != REDIS_REPLY_NIL)) {
        bench_note(w->b, true, "consumer %u: bad XREADGROUP reply", w->idx);
        return -1;
    }
    return 0;
}

/* Take every reply that has arrived. 0, or -1 when the run cannot go on. */
static int brd_cons_replies(brd_cons_t *s)
{
    int k;

    while ((k = brd_next(s->w->c, s->rd)) == 1) {
        if (brd_cons_reply(s) < 0)
            return -1;
    }
    if (k < 0)
        bench_note(s->w->b, true, "consumer %u: not a RESP reply", s->w->idx);
    return k;
}

static int brd_consume(bench_worker_t *w)
{
    bench_t *b = w->b;
    brd_cons_t s = { .w = w };
    const brd_sink_t sink = { brd_ids_add, brd_take, &s, false };
    char consumer[32];

    s.rd = brd_rd_new(&sink);
    if (!s.rd) {
        bench_note(b, true, "out of memory");
        return -1;
    }
    snprintf(consumer, sizeof consumer, "c%u", w->idx);
    atomic_fetch_add(&b->ready, 1);
    while (bench_running(b)) {
        if (!s.reading) {
            if (brd_ack(&s) < 0 || brd_read_cmd(w, consumer) < 0)
                break;
            s.reading = true;
        }
        if (client_step(w->c, 50, -1, NULL) < 0) {
            bench_note(b, true, "consumer %u: %s", w->idx, w->c->err);
            break;
        }
        if (brd_cons_replies(&s) < 0)
            break;
    }
    /* let the last XREADGROUP finish (what it brings is real), then XACK */
    uint64_t deadline = clock_ns() + BENCH_WIND_DOWN_NS;
    while (!atomic_load(&b->abort) && (s.reading || s.pending || s.ids.n)) {
        if (!s.reading && s.ids.n && brd_ack(&s) < 0)
            break;
        if (brd_cons_replies(&s) < 0 || !bench_wait_until(w, deadline))
            break;
    }
    bench_buf_free(&s.ids.b);
    brd_rd_free(s.rd);
    return 0;
}

const bench_target_t brd_target = {
    .name = "redis-streams",
    .alias = "redis",
    .port = 6379,
    .addr = "127.0.0.1:6379",
    .setup = brd_setup,
    .teardown = brd_teardown,
    .prod_open = brd_prod_open,
    .prod_close = brd_prod_close,
    .put = brd_prod_put,
    .reply = brd_prod_reply,
    .consume = brd_consume,
};
