/* mrestore.c: reading the Redis mirror's messages back into the broker
 * (see mrestore.h; the key schema is in docs/redis.md).
 *
 * Every step is one command and one reply, so the same code runs on the
 * blocking connection at start and on the async one when Redis comes back
 * later. What was read is kept aside and put into the broker in one go, in
 * id order, once the last key has been scanned.
 *
 * At start every message passes through here, so the blocking restore
 * reads the HSCAN pages through reader functions of its own
 * (mrestore_reader_new): no redisReply per field, and the next HSCAN is
 * sent as soon as a page's cursor is in, so Redis scans the next page
 * while this one is parsed. At most two commands are in flight.
 */
#include "mrestore.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "msg.h"
#include "proto.h"

#define MRESTORE_SCAN_COUNT "10000"   /* HSCAN page size */
#define MRESTORE_AHEAD 64             /* messages fetched ahead while linking them */

enum restore_step { RS_NEXT_ID = 0, RS_TOPICS, RS_MESSAGES, RS_ATTEMPTS, RS_DONE };

typedef struct rmsg {
    uint64_t id;
    msg_t *m;
    uint32_t topic;       /* index in mrestore.topics */
    uint16_t attempt;
} rmsg_t;

typedef struct ratt {
    uint64_t id;
    uint16_t attempt;
} ratt_t;

/* A key being read: which step, which topic. */
typedef struct rpos {
    int step;
    size_t ti;
} rpos_t;

struct mrestore {
    int step;             /* the key of the next command ... */
    size_t ti;
    char cursor[32];      /* ... and its cursor */
    bool cursor_known;    /* the next command is known (its cursor is in) */
    rpos_t fly[2];        /* keys of the commands sent, oldest first */
    size_t nfly;
    char **topics;
    size_t ntopics;
    /* the page being streamed through the reader functions */
    char field[24];       /* the last field name (an id, or the pin) */
    size_t flen;          /* 0: none, or too long to be an id */
    bool page_bad;        /* not the shape of an HSCAN reply */
    char page_err[128];   /* its error reply, if it was one */
    uint64_t next_id;     /* the stored high-water mark (0: none) */
    rmsg_t *msgs;
    size_t nmsgs, msgs_cap;
    ratt_t *atts;
    size_t natts, atts_cap;
    size_t skipped;       /* malformed fields */
    char *prefix;         /* the mirror's key prefix */
    char *key;            /* scratch for the key of the current command */
    size_t key_cap;
    uint64_t t0;          /* ms, when the restore began */
};

mrestore_t *mrestore_new(const char *prefix, uint64_t now)
{
    mrestore_t *rs = calloc(1, sizeof *rs);

    if (rs == NULL)
        return NULL;
    rs->prefix = strdup(prefix);
    if (rs->prefix == NULL) {
        free(rs);
        return NULL;
    }
    rs->t0 = now;
    rs->cursor_known = true;
    return rs;
}

void mrestore_free(mrestore_t *rs)
{
    if (rs == NULL)
        return;
    for (size_t i = 0; i < rs->ntopics; i++)
        free(rs->topics[i]);
    free(rs->topics);
    for (size_t i = 0; i < rs->nmsgs; i++)
        msg_free(rs->msgs[i].m);
    free(rs->msgs);
    free(rs->atts);
    free(rs->key);
    free(rs->prefix);
    free(rs);
}

/* A decimal without sign or junk; false if not, or zero, or too big. */
static bool mrestore_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v == 0 || v > max)
        return false;
    *out = v;
    return true;
}

int mrestore_command(mrestore_t *rs, const char **argv, size_t *lens)
{
    const char *part = NULL;
    const char *name = "";
    size_t plen = strlen(rs->prefix), nlen = 0;

    switch (rs->step) {
    case RS_NEXT_ID:
        argv[0] = "GET";
        part = ":next_id";
        break;
    case RS_TOPICS:
        argv[0] = "SMEMBERS";
        part = ":message_topics";
        break;
    default:
        argv[0] = "HSCAN";
        part = rs->step == RS_MESSAGES ? ":messages:" : ":attempts:";
        name = rs->topics[rs->ti];
        nlen = strlen(name);
        break;
    }
    size_t klen = plen + strlen(part) + nlen;
    if (klen + 1 > rs->key_cap) {
        char *k = realloc(rs->key, klen + 1);
        if (k == NULL)
            return -1;
        rs->key = k;
        rs->key_cap = klen + 1;
    }
    memcpy(rs->key, rs->prefix, plen);
    memcpy(rs->key + plen, part, strlen(part));
    memcpy(rs->key + plen + strlen(part), name, nlen);
    lens[0] = strlen(argv[0]);
    argv[1] = rs->key;
    lens[1] = plen + strlen(part) + nlen;
    if (rs->nfly < 2)
        rs->fly[rs->nfly++] = (rpos_t){rs->step, rs->ti};
    rs->cursor_known = false;
    if (rs->step < RS_MESSAGES)
        return 2;
    argv[2] = rs->cursor;
    lens[2] = strlen(rs->cursor);
    argv[3] = "COUNT";
    lens[3] = 5;
    argv[4] = MRESTORE_SCAN_COUNT;
    lens[4] = strlen(MRESTORE_SCAN_COUNT);
    return 5;
}

/* The array v of n elements with room for one more (v itself, or a larger
 * copy), or NULL when out of memory (v is then left as it was). */
static void *mrestore_grow(void *v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : 1024;
    void *nv = realloc(v, ncap * elem);
    if (nv != NULL)
        *cap = ncap;
    return nv;
}

static int mrestore_add_msg(mrestore_t *rs, uint64_t id, uint32_t ti, const char *data,
                            size_t len)
{
    rmsg_t *v = mrestore_grow(rs->msgs, &rs->msgs_cap, rs->nmsgs, sizeof *rs->msgs);
    msg_t *m;

    if (v == NULL)
        return -1;
    rs->msgs = v;
    m = msg_new_copy(data, (uint32_t)len);
    if (m == NULL)
        return -1;
    rs->msgs[rs->nmsgs].id = id;
    rs->msgs[rs->nmsgs].m = m;
    rs->msgs[rs->nmsgs].topic = ti;
    rs->msgs[rs->nmsgs].attempt = 0;
    rs->nmsgs++;
    return 0;
}

static int mrestore_add_att(mrestore_t *rs, uint64_t id, uint16_t attempt)
{
    ratt_t *v = mrestore_grow(rs->atts, &rs->atts_cap, rs->natts, sizeof *rs->atts);

    if (v == NULL)
        return -1;
    rs->atts = v;
    rs->atts[rs->natts].id = id;
    rs->atts[rs->natts].attempt = attempt;
    rs->natts++;
    return 0;
}

/* One field/value pair of an HSCAN page of the key at pos. 0, or -1 when
 * out of memory. */
static int mrestore_take_pair(mrestore_t *rs, const rpos_t *pos, const char *f, size_t flen,
                              const char *v, size_t vlen)
{
    uint64_t id, att;

    if (pos->step == RS_MESSAGES && flen == sizeof MRESTORE_PIN_FIELD - 1 &&
        memcmp(f, MRESTORE_PIN_FIELD, flen) == 0)
        return 0;
    if (!mrestore_u64(f, flen, UINT64_MAX, &id)) {
        rs->skipped++;
        return 0;
    }
    if (pos->step == RS_MESSAGES) {
        if (vlen > UINT32_MAX) {
            rs->skipped++;
            return 0;
        }
        return mrestore_add_msg(rs, id, (uint32_t)pos->ti, v, vlen);
    }
    if (!mrestore_u64(v, vlen, UINT16_MAX, &att)) {
        rs->skipped++;
        return 0;
    }
    return mrestore_add_att(rs, id, (uint16_t)att);
}

/* One HSCAN page as a redisReply: field/value pairs. */
static int mrestore_page(mrestore_t *rs, const rpos_t *pos, const redisReply *list)
{
    for (size_t i = 0; i + 1 < list->elements; i += 2) {
        const redisReply *f = list->element[i], *v = list->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            rs->skipped++;
            continue;
        }
        if (mrestore_take_pair(rs, pos, f->str, f->len, v->str, v->len) < 0)
            return -1;
    }
    return 0;
}

/* The next command reads the key after pos (or none: RS_DONE). */
static void mrestore_next_key(mrestore_t *rs, const rpos_t *pos)
{
    strcpy(rs->cursor, "0");
    rs->cursor_known = true;
    if (pos->step == RS_MESSAGES) {
        rs->step = RS_ATTEMPTS;
        rs->ti = pos->ti;
        return;
    }
    rs->ti = pos->step == RS_TOPICS ? 0 : pos->ti + 1;
    rs->step = rs->ti < rs->ntopics ? RS_MESSAGES : RS_DONE;
}

/* The cursor of the page of the key at pos: what the next command reads. */
static void mrestore_take_cursor(mrestore_t *rs, const rpos_t *pos, const char *cur, size_t len)
{
    if (len == 1 && cur[0] == '0') {
        mrestore_next_key(rs, pos);
        return;
    }
    memcpy(rs->cursor, cur, len);
    rs->cursor[len] = '\0';
    rs->step = pos->step;
    rs->ti = pos->ti;
    rs->cursor_known = true;
}

/* The reply to the oldest command is in: it leaves the flight. 1 when
 * that was the last one, 0 when there is more to send or read. */
static int mrestore_landed(mrestore_t *rs)
{
    /* No usable cursor in it, and nothing sent after it: skip the key. */
    if (rs->nfly == 1 && !rs->cursor_known)
        mrestore_next_key(rs, &rs->fly[0]);
    rs->fly[0] = rs->fly[1];
    if (rs->nfly > 0)
        rs->nfly--;
    return rs->step == RS_DONE && rs->nfly == 0;
}

static void mrestore_warn(const mrestore_t *rs, const rpos_t *pos, const char *why)
{
    log_warn("redis mirror: restore: unexpected reply for %s:%s%s (%s); skipped", rs->prefix,
             pos->step == RS_NEXT_ID ? "next_id"
             : pos->step == RS_TOPICS ? "message_topics"
             : pos->step == RS_MESSAGES ? "messages:" : "attempts:",
             pos->step >= RS_MESSAGES ? rs->topics[pos->ti] : "", why);
}

static const char *mrestore_why(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR ? r->str : "wrong type";
}

static int mrestore_topics(mrestore_t *rs, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY) {
        mrestore_warn(rs, &rs->fly[0], mrestore_why(r));
        return 0;
    }
    rs->topics = calloc(r->elements ? r->elements : 1, sizeof *rs->topics);
    if (rs->topics == NULL)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || !proto_topic_valid(e->str, e->len)) {
            rs->skipped++;
            continue;
        }
        rs->topics[rs->ntopics] = strndup(e->str, e->len);
        if (rs->topics[rs->ntopics] == NULL)
            return -1;
        rs->ntopics++;
    }
    return 0;
}

int mrestore_feed(mrestore_t *rs, const redisReply *r)
{
    const rpos_t pos = rs->fly[0];
    const redisReply *cur;

    switch (pos.step) {
    case RS_NEXT_ID:
        if (r->type == REDIS_REPLY_STRING) {
            if (!mrestore_u64(r->str, r->len, UINT64_MAX, &rs->next_id))
                mrestore_warn(rs, &pos, mrestore_why(r));
        } else if (r->type != REDIS_REPLY_NIL) {
            mrestore_warn(rs, &pos, mrestore_why(r));
        }
        rs->step = RS_TOPICS;
        rs->cursor_known = true;
        return mrestore_landed(rs);
    case RS_TOPICS:
        if (mrestore_topics(rs, r) < 0)
            return -1;
        mrestore_next_key(rs, &pos);
        return mrestore_landed(rs);
    default:
        break;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->len >= sizeof rs->cursor) {
        mrestore_warn(rs, &pos, mrestore_why(r));
        return mrestore_landed(rs);
    }
    cur = r->element[0];
    mrestore_take_cursor(rs, &pos, cur->str, cur->len);
    if (mrestore_page(rs, &pos, r->element[1]) < 0)
        return -1;
    return mrestore_landed(rs);
}

bool mrestore_may_send(const mrestore_t *rs)
{
    return rs->cursor_known && rs->step != RS_DONE && rs->nfly < 2;
}

bool mrestore_scanning(const mrestore_t *rs)
{
    return rs->step >= RS_MESSAGES && rs->step != RS_DONE;
}

/* ---- the streaming reader (blocking restore) ---- */

/* What the reader functions return for every object: the page's data has
 * gone into the restore already, nothing is built. */
static char mrestore_obj;

/* Depth of a task: 0 the reply, 1 its elements (cursor, list), 2 the
 * list's field/value strings. */
static int mrestore_depth(const redisReadTask *t)
{
    int d = 0;

    for (const redisReadTask *p = t->parent; p != NULL; p = p->parent)
        d++;
    return d;
}

static void *mrestore_rd_array(const redisReadTask *t, int n)
{
    mrestore_t *rs = t->privdata;
    int d = mrestore_depth(t);

    if ((d == 0 && n != 2) || (d == 1 && t->idx != 1) || d > 1)
        rs->page_bad = true;
    return &mrestore_obj;
}

static void *mrestore_rd_string(const redisReadTask *t, char *str, size_t len)
{
    mrestore_t *rs = t->privdata;
    int d = mrestore_depth(t);

    if (d == 0) {
        rs->page_bad = true;
        if (t->type == REDIS_REPLY_ERROR)
            snprintf(rs->page_err, sizeof rs->page_err, "%.*s", (int)(len < 120 ? len : 120), str);
    } else if (d == 1) {
        if (t->idx != 0 || t->type != REDIS_REPLY_STRING || len >= sizeof rs->cursor)
            rs->page_bad = true;
        else if (!rs->page_bad)
            mrestore_take_cursor(rs, &rs->fly[0], str, len);
    } else if (t->idx % 2 == 0) {
        rs->flen = len < sizeof rs->field ? len : 0;
        memcpy(rs->field, str, rs->flen);
    } else if (rs->flen == 0) {
        rs->skipped++;
    } else if (mrestore_take_pair(rs, &rs->fly[0], rs->field, rs->flen, str, len) < 0) {
        return NULL; /* the reader reports out of memory */
    }
    return &mrestore_obj;
}

static void *mrestore_rd_integer(const redisReadTask *t, long long v)
{
    mrestore_t *rs = t->privdata;

    (void)v;
    rs->page_bad = true;
    return &mrestore_obj;
}

static void *mrestore_rd_nil(const redisReadTask *t)
{
    return mrestore_rd_integer(t, 0);
}

static void mrestore_rd_free(void *obj)
{
    (void)obj;
}

static redisReplyObjectFunctions mrestore_rd_fns = {
    .createString = mrestore_rd_string,
    .createArray = mrestore_rd_array,
    .createInteger = mrestore_rd_integer,
    .createNil = mrestore_rd_nil,
    .freeObject = mrestore_rd_free,
};

redisReader *mrestore_reader_new(mrestore_t *rs)
{
    redisReader *r = redisReaderCreateWithFunctions(&mrestore_rd_fns);

    if (r == NULL)
        return NULL;
    redisReaderSetPrivdata(r, rs);
    r->maxbuf = 0; /* pages are large: keep the buffer instead of regrowing it */
    return r;
}

int mrestore_page_end(mrestore_t *rs)
{
    if (rs->page_bad)
        mrestore_warn(rs, &rs->fly[0], rs->page_err[0] ? rs->page_err : "wrong type");
    rs->page_bad = false;
    rs->page_err[0] = '\0';
    rs->flen = 0;
    return mrestore_landed(rs);
}

static int mrestore_cmp_att(const void *a, const void *b)
{
    uint64_t x = ((const ratt_t *)a)->id, y = ((const ratt_t *)b)->id;
    return x < y ? -1 : x > y;
}

static int mrestore_cmp_msg(const void *a, const void *b)
{
    uint64_t x = ((const rmsg_t *)a)->id, y = ((const rmsg_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* Without memory to spare: sort rs->msgs itself and drop repeats. */
static void mrestore_sort_in_place(mrestore_t *rs, size_t *n)
{
    size_t k = 0;

    qsort(rs->msgs, rs->nmsgs, sizeof *rs->msgs, mrestore_cmp_msg);
    for (size_t i = 0; i < rs->nmsgs; i++) {
        if (k > 0 && rs->msgs[k - 1].id == rs->msgs[i].id) {
            msg_free(rs->msgs[i].m);
            continue;
        }
        rs->msgs[k++] = rs->msgs[i];
    }
    rs->nmsgs = *n = k;
}

/* Ids are nearly always a dense window of the id space: each index is
 * placed at id - lo, in O(n), and repeats (HSCAN may return a field twice)
 * land on a taken slot and are freed. NULL when out of memory. */
static uint32_t *mrestore_place(mrestore_t *rs, uint64_t lo, uint64_t span, size_t *n)
{
    uint32_t *ord = calloc(span, sizeof *ord);
    size_t k = 0;

    if (ord == NULL)
        return NULL;
    for (size_t i = 0; i < rs->nmsgs; i++) {
        uint32_t *slot = &ord[rs->msgs[i].id - lo];
        if (*slot != 0) {
            msg_free(rs->msgs[i].m);
            rs->msgs[i].m = NULL;
        } else {
            *slot = (uint32_t)i + 1;
        }
    }
    for (uint64_t s = 0; s < span; s++) /* compact: k never passes s */
        if (ord[s] != 0)
            ord[k++] = ord[s] - 1;
    *n = k;
    return ord;
}

/* The indexes of rs->msgs in id order, each id once, and their count in
 * *n; or NULL when rs->msgs itself was sorted instead (sparse ids, or no
 * memory for the placement). */
static uint32_t *mrestore_order(mrestore_t *rs, size_t *n)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    uint32_t *ord = NULL;

    *n = 0;
    if (rs->nmsgs == 0)
        return NULL;
    for (size_t i = 0; i < rs->nmsgs; i++) {
        lo = rs->msgs[i].id < lo ? rs->msgs[i].id : lo;
        hi = rs->msgs[i].id > hi ? rs->msgs[i].id : hi;
    }
    if (hi - lo < 2 * (uint64_t)rs->nmsgs + 1024)
        ord = mrestore_place(rs, lo, hi - lo + 1, n);
    if (ord == NULL)
        mrestore_sort_in_place(rs, n);
    return ord;
}

/* The i-th message in id order (mrestore_order). */
static rmsg_t *mrestore_nth(mrestore_t *rs, const uint32_t *ord, size_t i)
{
    return &rs->msgs[ord != NULL ? ord[i] : i];
}

void mrestore_apply(mrestore_t *rs, broker_t *b, uint64_t now)
{
    size_t n = 0, a = 0;
    uint64_t maxid, next;
    uint32_t *ord = mrestore_order(rs, &n);
    bool renumber;

    if (rs->natts > 0)
        qsort(rs->atts, rs->natts, sizeof *rs->atts, mrestore_cmp_att);
    maxid = n > 0 ? mrestore_nth(rs, ord, n - 1)->id : 0;
    renumber = n > 0 && mrestore_nth(rs, ord, 0)->id < broker_next_id(b);
    next = rs->next_id > maxid + 1 ? rs->next_id : maxid + 1;
    broker_set_next_id(b, next);
    for (size_t i = 0; i < n; i++) {
        rmsg_t *e = mrestore_nth(rs, ord, i);
        /* The messages lie in the order HSCAN returned them, and are linked
         * in id order: without fetching ahead every one is a cache miss
         * (most of the time of a large restore). */
        if (i + 2 * MRESTORE_AHEAD < n)
            __builtin_prefetch(mrestore_nth(rs, ord, i + 2 * MRESTORE_AHEAD));
        if (i + MRESTORE_AHEAD < n)
            __builtin_prefetch(mrestore_nth(rs, ord, i + MRESTORE_AHEAD)->m, 1);
        const char *name = rs->topics[e->topic];
        while (a < rs->natts && rs->atts[a].id < e->id)
            a++;
        if (a < rs->natts && rs->atts[a].id == e->id)
            e->attempt = rs->atts[a].attempt;
        broker_restore(b, name, strlen(name), e->m, renumber ? 0 : e->id, e->attempt);
        e->m = NULL;
    }
    free(ord);
    rs->nmsgs = 0;
    log_info("redis mirror: restored %zu messages (%zu topics) in %.2f s; next id %" PRIu64 "%s",
             n, rs->ntopics, (double)(now - rs->t0) / 1000.0, broker_next_id(b),
             renumber ? " (renumbered: messages were published before Redis came back)" : "");
    if (rs->skipped > 0)
        log_warn("redis mirror: restore skipped %zu malformed entries", rs->skipped);
}
