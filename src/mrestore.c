/* mrestore.c: reading the Redis mirror's messages back into the broker
 * (see mrestore.h; the key schema is in docs/redis.md).
 *
 * Every step is one command and one reply, so the same code runs on the
 * blocking connection at start and on the async one when Redis comes back
 * later. What was read is kept aside and put into the broker in one go, in
 * id order, once the last key has been scanned.
 */
#include "mrestore.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "msg.h"
#include "proto.h"

#define MRESTORE_SCAN_COUNT "10000"   /* HSCAN page size */

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

struct mrestore {
    int step;
    char **topics;
    size_t ntopics, ti;
    char cursor[32];
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

static int mrestore_add_msg(mrestore_t *rs, uint64_t id, const char *data, size_t len)
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
    rs->msgs[rs->nmsgs].topic = (uint32_t)rs->ti;
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

/* One HSCAN page: field/value pairs. */
static int mrestore_page(mrestore_t *rs, const redisReply *list)
{
    for (size_t i = 0; i + 1 < list->elements; i += 2) {
        const redisReply *f = list->element[i], *v = list->element[i + 1];
        uint64_t id, att;
        if (rs->step == RS_MESSAGES && f->type == REDIS_REPLY_STRING &&
            f->len == sizeof MRESTORE_PIN_FIELD - 1 && memcmp(f->str, MRESTORE_PIN_FIELD, f->len) == 0)
            continue;
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            !mrestore_u64(f->str, f->len, UINT64_MAX, &id)) {
            rs->skipped++;
            continue;
        }
        if (rs->step == RS_MESSAGES) {
            if (v->len > UINT32_MAX) {
                rs->skipped++;
                continue;
            }
            if (mrestore_add_msg(rs, id, v->str, v->len) < 0)
                return -1;
        } else if (mrestore_u64(v->str, v->len, UINT16_MAX, &att)) {
            if (mrestore_add_att(rs, id, (uint16_t)att) < 0)
                return -1;
        } else {
            rs->skipped++;
        }
    }
    return 0;
}

/* The next key to scan, or RS_DONE. */
static void mrestore_advance(mrestore_t *rs)
{
    strcpy(rs->cursor, "0");
    if (rs->step == RS_MESSAGES) {
        rs->step = RS_ATTEMPTS;
        return;
    }
    rs->ti = rs->step == RS_TOPICS ? 0 : rs->ti + 1;
    rs->step = rs->ti < rs->ntopics ? RS_MESSAGES : RS_DONE;
}

static void mrestore_warn(const mrestore_t *rs, const redisReply *r)
{
    log_warn("redis mirror: restore: unexpected reply for %s:%s%s (%s); skipped", rs->prefix,
             rs->step == RS_NEXT_ID ? "next_id"
             : rs->step == RS_TOPICS ? "message_topics"
             : rs->step == RS_MESSAGES ? "messages:" : "attempts:",
             rs->step >= RS_MESSAGES ? rs->topics[rs->ti] : "",
             r->type == REDIS_REPLY_ERROR ? r->str : "wrong type");
}

static int mrestore_topics(mrestore_t *rs, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY) {
        mrestore_warn(rs, r);
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
    const redisReply *cur, *list;

    switch (rs->step) {
    case RS_NEXT_ID:
        if (r->type == REDIS_REPLY_STRING) {
            if (!mrestore_u64(r->str, r->len, UINT64_MAX, &rs->next_id))
                mrestore_warn(rs, r);
        } else if (r->type != REDIS_REPLY_NIL) {
            mrestore_warn(rs, r);
        }
        rs->step = RS_TOPICS;
        return 0;
    case RS_TOPICS:
        if (mrestore_topics(rs, r) < 0)
            return -1;
        mrestore_advance(rs);
        return rs->step == RS_DONE;
    default:
        break;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->len >= sizeof rs->cursor) {
        mrestore_warn(rs, r);
        mrestore_advance(rs);
        return rs->step == RS_DONE;
    }
    cur = r->element[0];
    list = r->element[1];
    if (mrestore_page(rs, list) < 0)
        return -1;
    memcpy(rs->cursor, cur->str, cur->len);
    rs->cursor[cur->len] = '\0';
    if (strcmp(rs->cursor, "0") == 0)
        mrestore_advance(rs);
    return rs->step == RS_DONE;
}

static int mrestore_cmp_msg(const void *a, const void *b)
{
    uint64_t x = ((const rmsg_t *)a)->id, y = ((const rmsg_t *)b)->id;
    return x < y ? -1 : x > y;
}

static int mrestore_cmp_att(const void *a, const void *b)
{
    uint64_t x = ((const ratt_t *)a)->id, y = ((const ratt_t *)b)->id;
    return x < y ? -1 : x > y;
}

void mrestore_apply(mrestore_t *rs, broker_t *b, uint64_t now)
{
    size_t n = 0, a = 0;
    uint64_t maxid, next;
    bool renumber;

    if (rs->nmsgs > 0)
        qsort(rs->msgs, rs->nmsgs, sizeof *rs->msgs, mrestore_cmp_msg);
    if (rs->natts > 0)
        qsort(rs->atts, rs->natts, sizeof *rs->atts, mrestore_cmp_att);
    /* HSCAN may return a field twice; keep one. */
    for (size_t i = 0; i < rs->nmsgs; i++) {
        if (n > 0 && rs->msgs[n - 1].id == rs->msgs[i].id) {
            msg_free(rs->msgs[i].m);
            continue;
        }
        rs->msgs[n++] = rs->msgs[i];
    }
    rs->nmsgs = n;
    for (size_t i = 0; i < n; i++) {
        while (a < rs->natts && rs->atts[a].id < rs->msgs[i].id)
            a++;
        if (a < rs->natts && rs->atts[a].id == rs->msgs[i].id)
            rs->msgs[i].attempt = rs->atts[a].attempt;
    }
    maxid = n > 0 ? rs->msgs[n - 1].id : 0;
    renumber = n > 0 && rs->msgs[0].id < broker_next_id(b);
    next = rs->next_id > maxid + 1 ? rs->next_id : maxid + 1;
    broker_set_next_id(b, next);
    for (size_t i = 0; i < n; i++) {
        const char *name = rs->topics[rs->msgs[i].topic];
        broker_restore(b, name, strlen(name), rs->msgs[i].m, renumber ? 0 : rs->msgs[i].id,
                       rs->msgs[i].attempt);
        rs->msgs[i].m = NULL;
    }
    rs->nmsgs = 0;
    log_info("redis mirror: restored %zu messages (%zu topics) in %.2f s; next id %" PRIu64 "%s",
             n, rs->ntopics, (double)(now - rs->t0) / 1000.0, broker_next_id(b),
             renumber ? " (renumbered: messages were published before Redis came back)" : "");
    if (rs->skipped > 0)
        log_warn("redis mirror: restore skipped %zu malformed entries", rs->skipped);
}
