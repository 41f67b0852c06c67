/* mrestore.c: reading the Redis mirror's messages back into the broker
 * (see mrestore.h; the key schema is in docs/redis.md).
 *
 * First the small keys, one command and one reply at a time: the next id,
 * the topic set, and per topic whether it still has a hash of the old
 * single-hash schema and its shard set. That makes a list of jobs: each
 * shard's meta, message and attempt hashes (HGETALL: each shard is small,
 * so one whole reply), and any old-schema hash (HSCAN, page by page). A
 * shard's meta records come first, so that a message that needs an ext
 * block gets it when it is read. What
 * was read is kept aside and put into the broker in one go, in id order,
 * once the last job is in.
 *
 * The same code runs on the blocking connection at start and on the async
 * one when Redis comes back later. At start every message passes through
 * here, so the blocking restore reads the jobs' replies through reader
 * functions of its own (mrestore_reader_new): no redisReply per field, and
 * up to MRESTORE_WINDOW commands in flight, so Redis builds the next reply
 * while this one is parsed.
 */
#include "mrestore.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dec.h"
#include "log.h"
#include "mbuf.h"
#include "msg.h"
#include "proto.h"

#define MRESTORE_SCAN_COUNT "10000"   /* HSCAN page size (old schema) */
#define MRESTORE_AHEAD 64             /* messages fetched ahead while linking them */

/* What the next command reads: the small keys, then the jobs. */
enum restore_step { RS_NEXT_ID = 0, RS_TOPICS, RS_OLD, RS_SHARDS, RS_JOBS, RS_DONE };

/* One hash to read whole (a shard) or by pages (the old schema). */
enum job_kind { J_SCAN_MSG = 0, J_SCAN_ATT, J_ALL_MSG, J_ALL_ATT, J_ALL_META };

typedef struct rjob {
    uint64_t shard;
    uint32_t ti;          /* index in mrestore.topics */
    uint8_t kind;         /* enum job_kind */
} rjob_t;

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

/* A meta record (mrestore.h), parsed. */
typedef struct rmeta {
    uint64_t id;
    uint64_t due, created;  /* unix ms */
    uint64_t ttr_ms, delay_ms;
    uint32_t pri, releases, buries, kicks, timeouts;
    uint8_t state;          /* MSG_READY, MSG_DELAYED or MSG_BURIED */
    bool ext;
    bool used;              /* a message had it (mrestore_apply) */
} rmeta_t;

/* What a command in flight reads: a step, its topic, and in RS_JOBS its job. */
typedef struct rpos {
    int step;
    size_t ti;
    size_t job;
} rpos_t;

struct mrestore {
    int step;             /* what the next command reads ... */
    size_t ti;            /* ... for which topic (RS_SHARDS, RS_OLD) */
    size_t job;           /* ... which job (RS_JOBS) */
    char cursor[32];      /* ... the cursor of an HSCAN job */
    bool cursor_known;    /* the next command is known (an HSCAN's cursor is in) */
    rpos_t fly[MRESTORE_WINDOW]; /* commands sent, oldest first */
    size_t nfly;
    char **topics;
    size_t ntopics;
    rjob_t *jobs;
    size_t njobs, jobs_cap;
    rjob_t *empty;        /* shards read that held no message */
    size_t nempty, empty_cap;
    bool old;             /* something came from the old single-hash schema */
    bool renumbered;      /* mrestore_apply gave the messages new ids */
    /* the reply being streamed through the reader functions */
    char field[24];       /* the last field name (an id, or the pin) */
    size_t flen;          /* 0: none, or too long to be an id */
    bool page_bad;        /* not the shape of the reply expected */
    char page_err[128];   /* its error reply, if it was one */
    size_t page_msgs;     /* messages taken from it */
    uint64_t next_id;     /* the stored high-water mark (0: none) */
    rmsg_t *msgs;
    size_t nmsgs, msgs_cap;
    ratt_t *atts;
    size_t natts, atts_cap;
    rmeta_t *metas;
    size_t nmetas, metas_cap;
    size_t meta_lo, meta_hi; /* the shard being read: its records, sorted */
    size_t skipped;       /* malformed fields */
    char *prefix;         /* the mirror's key prefix */
    char *key;            /* scratch for the key of the current command */
    size_t key_cap;
    char shardnum[24];
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
    free(rs->jobs);
    free(rs->empty);
    for (size_t i = 0; i < rs->nmsgs; i++)
        msg_free(rs->msgs[i].m);
    free(rs->msgs);
    free(rs->atts);
    free(rs->metas);
    free(rs->key);
    free(rs->prefix);
    free(rs);
}

/* A decimal without sign or junk, at most max; false if not. */
static bool mrestore_num(const char *s, size_t n, uint64_t max, uint64_t *out)
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
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* The same, and not zero (an id, an attempt count). */
static bool mrestore_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    return mrestore_num(s, n, max, out) && *out != 0;
}

/* ---- meta records ---- */

static size_t mrestore_meta_field(char *out, uint64_t v)
{
    out[0] = ':';
    return 1 + dec_u64(out + 1, v);
}

size_t mrestore_meta_format(const msg_t *m, uint64_t now, uint64_t now_unix, char *out)
{
    const msg_ext_t *x = msg_ext(m);
    /* a held message with a delay is delayed once Redis has it */
    bool delayed = m->state == MSG_DELAYED || (m->state == MSG_HELD && m->deadline > 0);
    uint64_t due = delayed ? now_unix + (m->deadline > now ? m->deadline - now : 0) : 0;
    size_t n = 1;

    out[0] = m->state == MSG_BURIED ? 'b' : delayed ? 'd' : 'r';
    n += mrestore_meta_field(out + n, due);
    if (x == NULL)
        return n;
    n += mrestore_meta_field(out + n, x->pri);
    n += mrestore_meta_field(out + n, x->ttr_ms);
    n += mrestore_meta_field(out + n, x->delay_ms);
    n += mrestore_meta_field(out + n, now_unix - (now > x->created ? now - x->created : 0));
    n += mrestore_meta_field(out + n, x->releases);
    n += mrestore_meta_field(out + n, x->buries);
    n += mrestore_meta_field(out + n, x->kicks);
    n += mrestore_meta_field(out + n, x->timeouts);
    return n;
}

/* A record (mrestore.h) into r; false when it is not one. */
static bool mrestore_meta_parse(const char *s, size_t n, rmeta_t *r)
{
    uint64_t v[9];
    size_t k = 0, i = 2, j = 2;

    if (n < 3 || s[1] != ':')
        return false;
    r->state = s[0] == 'r' ? MSG_READY : s[0] == 'd' ? MSG_DELAYED : s[0] == 'b' ? MSG_BURIED : 0;
    if (r->state == 0)
        return false;
    while (k < 9 && j < n) {
        for (j = i; j < n && s[j] != ':'; j++)
            ;
        if (!mrestore_num(s + i, j - i, k == 0 || (k >= 2 && k <= 4) ? UINT64_MAX : UINT32_MAX,
                          &v[k]))
            return false;
        k++;
        i = j + 1;
    }
    if (j < n || (k != 1 && k != 9))
        return false; /* more fields, or a number of them that is neither form */
    r->due = v[0];
    r->ext = k == 9;
    if (!r->ext)
        return true;
    r->pri = (uint32_t)v[1];
    r->ttr_ms = v[2];
    r->delay_ms = v[3];
    r->created = v[4];
    r->releases = (uint32_t)v[5];
    r->buries = (uint32_t)v[6];
    r->kicks = (uint32_t)v[7];
    r->timeouts = (uint32_t)v[8];
    return true;
}

/* "<prefix><part>[<shard>:]<topic>" into rs->key; its length, or 0 when
 * out of memory. */
static size_t mrestore_key(mrestore_t *rs, const char *part, const char *shard,
                           const char *name)
{
    size_t plen = strlen(rs->prefix), qlen = strlen(part), slen = shard ? strlen(shard) : 0,
           nlen = strlen(name), n = plen + qlen + slen + (shard ? 1 : 0) + nlen;
    char *k = rs->key;

    if (n + 1 > rs->key_cap) {
        k = realloc(rs->key, n + 1);
        if (k == NULL)
            return 0;
        rs->key = k;
        rs->key_cap = n + 1;
    }
    memcpy(k, rs->prefix, plen);
    memcpy(k + plen, part, qlen);
    k += plen + qlen;
    if (shard != NULL) {
        memcpy(k, shard, slen);
        k[slen] = ':';
        k += slen + 1;
    }
    memcpy(k, name, nlen);
    k[nlen] = '\0';
    return n;
}

static const char *const mrestore_job_part[] = {
    [J_SCAN_MSG] = ":messages:",
    [J_SCAN_ATT] = ":attempts:",
    [J_ALL_MSG] = ":msg:",
    [J_ALL_ATT] = ":att:",
    [J_ALL_META] = ":meta:",
};

static bool mrestore_job_scans(const rjob_t *j)
{
    return j->kind == J_SCAN_MSG || j->kind == J_SCAN_ATT;
}

/* The command of the job at rs->job (RS_JOBS); its argument count. */
static int mrestore_job_command(mrestore_t *rs, const char **argv, size_t *lens)
{
    const rjob_t *j = &rs->jobs[rs->job];
    const char *shard = NULL;

    if (!mrestore_job_scans(j)) {
        rs->shardnum[snprintf(rs->shardnum, sizeof rs->shardnum, "%" PRIu64, j->shard)] = '\0';
        shard = rs->shardnum;
    }
    lens[1] = mrestore_key(rs, mrestore_job_part[j->kind], shard, rs->topics[j->ti]);
    if (lens[1] == 0)
        return -1;
    argv[1] = rs->key;
    if (!mrestore_job_scans(j)) {
        argv[0] = "HGETALL";
        lens[0] = 7;
        return 2;
    }
    argv[0] = "HSCAN";
    lens[0] = 5;
    argv[2] = rs->cursor;
    lens[2] = strlen(rs->cursor);
    argv[3] = "COUNT";
    lens[3] = 5;
    argv[4] = MRESTORE_SCAN_COUNT;
    lens[4] = strlen(MRESTORE_SCAN_COUNT);
    return 5;
}

/* No job left to send: RS_DONE once every reply is in. */
static void mrestore_next_job(mrestore_t *rs, size_t job)
{
    rs->job = job;
    strcpy(rs->cursor, "0");
    rs->cursor_known = true;
    if (rs->job >= rs->njobs)
        rs->step = RS_DONE;
}

int mrestore_command(mrestore_t *rs, const char **argv, size_t *lens)
{
    const rpos_t pos = {rs->step, rs->ti, rs->job};
    int argc = 2;

    switch (rs->step) {
    case RS_NEXT_ID:
        argv[0] = "GET";
        lens[1] = mrestore_key(rs, ":next_id", NULL, "");
        break;
    case RS_TOPICS:
        argv[0] = "SMEMBERS";
        lens[1] = mrestore_key(rs, ":message_topics", NULL, "");
        break;
    case RS_SHARDS:
        argv[0] = "SMEMBERS";
        lens[1] = mrestore_key(rs, ":shards:", NULL, rs->topics[rs->ti]);
        break;
    case RS_OLD:
        argv[0] = "HLEN";
        lens[1] = mrestore_key(rs, ":messages:", NULL, rs->topics[rs->ti]);
        break;
    default:
        argc = mrestore_job_command(rs, argv, lens);
        break;
    }
    if (argc < 0 || lens[1] == 0)
        return -1;
    argv[1] = rs->key;
    lens[0] = strlen(argv[0]);
    if (rs->nfly < MRESTORE_WINDOW)
        rs->fly[rs->nfly++] = pos;
    if (rs->step != RS_JOBS || mrestore_job_scans(&rs->jobs[rs->job]))
        rs->cursor_known = false; /* known again when its reply (or cursor) is in */
    else
        mrestore_next_job(rs, rs->job + 1);
    return argc;
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

static int mrestore_add_job(rjob_t **v, size_t *n, size_t *cap, uint32_t ti, int kind,
                            uint64_t shard)
{
    rjob_t *nv = mrestore_grow(*v, cap, *n, sizeof **v);

    if (nv == NULL)
        return -1;
    *v = nv;
    nv[*n] = (rjob_t){.shard = shard, .ti = ti, .kind = (uint8_t)kind};
    (*n)++;
    return 0;
}

/* The meta record of id in the shard being read, or NULL. */
static const rmeta_t *mrestore_meta_of(const mrestore_t *rs, uint64_t id)
{
    size_t lo = rs->meta_lo, hi = rs->meta_hi;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rs->metas[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < rs->meta_hi && rs->metas[lo].id == id ? &rs->metas[lo] : NULL;
}

/* A message, with the ext block its meta record asks for. */
static msg_t *mrestore_new_msg(const mrestore_t *rs, uint64_t id, const char *data, size_t len)
{
    const rmeta_t *r = rs->meta_hi > rs->meta_lo ? mrestore_meta_of(rs, id) : NULL;
    msg_ext_t *x;
    msg_t *m;

    if (r == NULL || !r->ext)
        return msg_new_copy(data, (uint32_t)len);
    m = msg_new_job((uint32_t)len, r->pri, r->ttr_ms, r->delay_ms, 0);
    if (m == NULL)
        return NULL;
    memcpy(m->data, data, len);
    x = msg_ext(m);
    x->releases = r->releases;
    x->buries = r->buries;
    x->kicks = r->kicks;
    x->timeouts = r->timeouts;
    return m; /* x->created: mrestore_apply, on the broker's clock */
}

static int mrestore_add_msg(mrestore_t *rs, uint64_t id, uint32_t ti, const char *data,
                            size_t len)
{
    rmsg_t *v = mrestore_grow(rs->msgs, &rs->msgs_cap, rs->nmsgs, sizeof *rs->msgs);
    msg_t *m;

    if (v == NULL)
        return -1;
    rs->msgs = v;
    m = mrestore_new_msg(rs, id, data, len);
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

static int mrestore_add_meta(mrestore_t *rs, uint64_t id, const char *v, size_t vlen)
{
    rmeta_t *nv, r;

    if (!mrestore_meta_parse(v, vlen, &r)) {
        rs->skipped++;
        return 0;
    }
    nv = mrestore_grow(rs->metas, &rs->metas_cap, rs->nmetas, sizeof *rs->metas);
    if (nv == NULL)
        return -1;
    rs->metas = nv;
    r.id = id;
    r.used = false;
    rs->metas[rs->nmetas++] = r;
    return 0;
}

/* One field/value pair of the job at pos. 0, or -1 when out of memory. */
static int mrestore_take_pair(mrestore_t *rs, const rpos_t *pos, const char *f, size_t flen,
                              const char *v, size_t vlen)
{
    const rjob_t *j = &rs->jobs[pos->job];
    bool msg = j->kind == J_SCAN_MSG || j->kind == J_ALL_MSG;
    uint64_t id, att;

    if (msg && flen == sizeof MRESTORE_PIN_FIELD - 1 && memcmp(f, MRESTORE_PIN_FIELD, flen) == 0)
        return 0;
    /* A shard holds its own ids only; anything else is not ours. */
    if (!mrestore_u64(f, flen, UINT64_MAX, &id) ||
        (!mrestore_job_scans(j) && mrestore_shard(id) != j->shard)) {
        rs->skipped++;
        return 0;
    }
    if (msg) {
        if (vlen > UINT32_MAX) {
            rs->skipped++;
            return 0;
        }
        rs->page_msgs++;
        return mrestore_add_msg(rs, id, j->ti, v, vlen);
    }
    if (j->kind == J_ALL_META)
        return mrestore_add_meta(rs, id, v, vlen);
    if (!mrestore_u64(v, vlen, UINT16_MAX, &att)) {
        rs->skipped++;
        return 0;
    }
    return mrestore_add_att(rs, id, (uint16_t)att);
}

/* Field/value pairs as a redisReply's elements. */
static int mrestore_pairs(mrestore_t *rs, const rpos_t *pos, const redisReply *list)
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

/* The cursor of a page of the HSCAN job at pos: what the next command reads. */
static void mrestore_take_cursor(mrestore_t *rs, const rpos_t *pos, const char *cur, size_t len)
{
    if (len == 1 && cur[0] == '0') {
        mrestore_next_job(rs, pos->job + 1);
        return;
    }
    memcpy(rs->cursor, cur, len);
    rs->cursor[len] = '\0';
    rs->cursor_known = true;
}

static int mrestore_cmp_meta(const void *a, const void *b)
{
    uint64_t x = ((const rmeta_t *)a)->id, y = ((const rmeta_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* A shard's meta records are in (its jobs land in order: meta, messages,
 * attempts): sorted, they are what its messages are looked up in; once
 * its attempts are in, nothing is. */
static void mrestore_meta_range(mrestore_t *rs, const rjob_t *j)
{
    if (j->kind == J_ALL_META) {
        if (rs->nmetas > rs->meta_hi) /* none yet: metas may be NULL */
            qsort(rs->metas + rs->meta_hi, rs->nmetas - rs->meta_hi, sizeof *rs->metas,
                  mrestore_cmp_meta);
        rs->meta_lo = rs->meta_hi;
        rs->meta_hi = rs->nmetas;
    } else if (j->kind == J_ALL_ATT) {
        rs->meta_lo = rs->meta_hi = rs->nmetas;
    }
}

/* The whole reply to the oldest command is in: it leaves the flight. 1
 * when that was the last one, 0 when there is more to send or read. */
static int mrestore_landed(mrestore_t *rs)
{
    const rpos_t *pos = &rs->fly[0];

    if (rs->nfly == 0)
        return rs->step == RS_DONE;
    /* An HSCAN that gave no usable cursor, and nothing sent after it: skip the key. */
    if (pos->step == RS_JOBS && rs->nfly == 1 && !rs->cursor_known)
        mrestore_next_job(rs, pos->job + 1);
    if (pos->step == RS_JOBS && rs->jobs[pos->job].kind == J_ALL_MSG && rs->page_msgs == 0 &&
        !rs->page_bad &&
        mrestore_add_job(&rs->empty, &rs->nempty, &rs->empty_cap, rs->jobs[pos->job].ti,
                         J_ALL_MSG, rs->jobs[pos->job].shard) < 0)
        return -1;
    if (pos->step == RS_JOBS)
        mrestore_meta_range(rs, &rs->jobs[pos->job]);
    rs->page_msgs = 0;
    rs->page_bad = false;
    memmove(&rs->fly[0], &rs->fly[1], (rs->nfly - 1) * sizeof rs->fly[0]);
    rs->nfly--;
    return rs->step == RS_DONE && rs->nfly == 0;
}

static void mrestore_warn(mrestore_t *rs, const rpos_t *pos, const char *why)
{
    char shard[24] = "";
    const char *part = pos->step == RS_NEXT_ID ? ":next_id"
                       : pos->step == RS_TOPICS ? ":message_topics"
                       : pos->step == RS_SHARDS ? ":shards:"
                       : pos->step == RS_OLD    ? ":messages:"
                                                : mrestore_job_part[rs->jobs[pos->job].kind];
    const char *name = pos->step == RS_SHARDS || pos->step == RS_OLD ? rs->topics[pos->ti]
                       : pos->step == RS_JOBS ? rs->topics[rs->jobs[pos->job].ti]
                                              : "";

    if (pos->step == RS_JOBS && !mrestore_job_scans(&rs->jobs[pos->job]))
        snprintf(shard, sizeof shard, "%" PRIu64, rs->jobs[pos->job].shard);
    if (mrestore_key(rs, part, shard[0] ? shard : NULL, name) == 0)
        return;
    log_warn("redis mirror: restore: unexpected reply for %s (%s); skipped", rs->key, why);
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

static int mrestore_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A topic's shard set: a job for each shard's meta records, messages and
 * attempts, in shard order (so in id order, which the final linking
 * likes). */
static int mrestore_shards(mrestore_t *rs, const rpos_t *pos, const redisReply *r)
{
    uint64_t *s;
    size_t n = 0;
    int err = 0;

    if (r->type != REDIS_REPLY_ARRAY) {
        mrestore_warn(rs, pos, mrestore_why(r));
        return 0;
    }
    s = malloc((r->elements ? r->elements : 1) * sizeof *s);
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING &&
            mrestore_num(e->str, e->len, UINT64_MAX >> MRESTORE_SHARD_BITS, &s[n]))
            n++;
        else
            rs->skipped++;
    }
    qsort(s, n, sizeof *s, mrestore_cmp_u64);
    for (size_t i = 0; i < n && err == 0; i++)
        err = mrestore_add_job(&rs->jobs, &rs->njobs, &rs->jobs_cap, (uint32_t)pos->ti,
                               J_ALL_META, s[i]) |
              mrestore_add_job(&rs->jobs, &rs->njobs, &rs->jobs_cap, (uint32_t)pos->ti, J_ALL_MSG,
                               s[i]) |
              mrestore_add_job(&rs->jobs, &rs->njobs, &rs->jobs_cap, (uint32_t)pos->ti, J_ALL_ATT,
                               s[i]);
    free(s);
    return err;
}

/* HLEN of the topic's old-schema message hash: if it has any, page through
 * it and its attempts hash (before the shards: a resync after this restore
 * rewrites it as shards). */
static int mrestore_old(mrestore_t *rs, const rpos_t *pos, const redisReply *r)
{
    if (r->type != REDIS_REPLY_INTEGER) {
        mrestore_warn(rs, pos, mrestore_why(r));
        return 0;
    }
    if (r->integer <= 0)
        return 0;
    rs->old = true; /* even a pin alone: the resync this causes deletes it */
    return mrestore_add_job(&rs->jobs, &rs->njobs, &rs->jobs_cap, (uint32_t)pos->ti, J_SCAN_MSG,
                            0) |
           mrestore_add_job(&rs->jobs, &rs->njobs, &rs->jobs_cap, (uint32_t)pos->ti, J_SCAN_ATT,
                            0);
}

/* The small keys' replies, one command at a time: what the next one reads. */
static int mrestore_discover(mrestore_t *rs, const rpos_t *pos, const redisReply *r)
{
    int err = 0;

    switch (pos->step) {
    case RS_NEXT_ID:
        if (r->type == REDIS_REPLY_STRING) {
            if (!mrestore_u64(r->str, r->len, UINT64_MAX, &rs->next_id))
                mrestore_warn(rs, pos, mrestore_why(r));
        } else if (r->type != REDIS_REPLY_NIL) {
            mrestore_warn(rs, pos, mrestore_why(r));
        }
        rs->step = RS_TOPICS;
        break;
    case RS_TOPICS:
        err = mrestore_topics(rs, r);
        rs->step = RS_OLD;
        rs->ti = 0;
        break;
    case RS_OLD:
        err = mrestore_old(rs, pos, r);
        rs->step = RS_SHARDS;
        break;
    default: /* RS_SHARDS */
        err = mrestore_shards(rs, pos, r);
        rs->step = RS_OLD;
        rs->ti++;
        break;
    }
    if (rs->step == RS_OLD && rs->ti >= rs->ntopics) {
        rs->step = RS_JOBS;
        mrestore_next_job(rs, 0);
    }
    rs->cursor_known = true;
    return err;
}

int mrestore_feed(mrestore_t *rs, const redisReply *r)
{
    const rpos_t pos = rs->fly[0];
    const rjob_t *j;

    if (pos.step != RS_JOBS) {
        if (mrestore_discover(rs, &pos, r) < 0)
            return -1;
        return mrestore_landed(rs);
    }
    j = &rs->jobs[pos.job];
    if (!mrestore_job_scans(j)) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
            mrestore_warn(rs, &pos, mrestore_why(r));
            rs->page_bad = true;
        } else if (mrestore_pairs(rs, &pos, r) < 0) {
            return -1;
        }
        return mrestore_landed(rs);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->len >= sizeof rs->cursor) {
        mrestore_warn(rs, &pos, mrestore_why(r));
        rs->page_bad = true;
        return mrestore_landed(rs);
    }
    mrestore_take_cursor(rs, &pos, r->element[0]->str, r->element[0]->len);
    if (mrestore_pairs(rs, &pos, r->element[1]) < 0)
        return -1;
    return mrestore_landed(rs);
}

bool mrestore_may_send(const mrestore_t *rs)
{
    if (rs->step == RS_DONE || rs->nfly >= MRESTORE_WINDOW)
        return false;
    if (rs->step != RS_JOBS)
        return rs->nfly == 0;
    return rs->cursor_known;
}

bool mrestore_scanning(const mrestore_t *rs)
{
    return rs->step == RS_JOBS || (rs->step == RS_DONE && rs->nfly > 0);
}

bool mrestore_plain_meta(const mrestore_t *rs, size_t *pos, uint64_t *id)
{
    for (; !rs->renumbered && *pos < rs->nmetas; (*pos)++) {
        const rmeta_t *r = &rs->metas[*pos];
        if (!r->ext && r->used) {
            *id = r->id;
            (*pos)++;
            return true;
        }
    }
    return false;
}

bool mrestore_found_old(const mrestore_t *rs)
{
    return rs->old;
}

bool mrestore_empty_shard(const mrestore_t *rs, size_t i, const char **topic, uint64_t *shard)
{
    if (i >= rs->nempty)
        return false;
    *topic = rs->topics[rs->empty[i].ti];
    *shard = rs->empty[i].shard;
    return true;
}

/* ---- the streaming reader (blocking restore) ---- */

/* What the reader functions return for every object: the reply's data has
 * gone into the restore already, nothing is built. */
static char mrestore_obj;

/* Depth of a task: 0 the reply, 1 its elements, 2 an element's elements. */
static int mrestore_depth(const redisReadTask *t)
{
    int d = 0;

    for (const redisReadTask *p = t->parent; p != NULL; p = p->parent)
        d++;
    return d;
}

/* The job of the reply being read: HGETALL (flat pairs) or HSCAN
 * (cursor, then pairs one level down). */
static bool mrestore_rd_scans(const mrestore_t *rs)
{
    return mrestore_job_scans(&rs->jobs[rs->fly[0].job]);
}

static void *mrestore_rd_array(const redisReadTask *t, int n)
{
    mrestore_t *rs = t->privdata;
    int d = mrestore_depth(t);

    if (!mrestore_rd_scans(rs)) {
        if (d > 0 || n % 2 != 0)
            rs->page_bad = true;
    } else if ((d == 0 && n != 2) || (d == 1 && t->idx != 1) || d > 1) {
        rs->page_bad = true;
    }
    return &mrestore_obj;
}

/* A string at the depth where field/value pairs are: idx says which. */
static void *mrestore_rd_pair(mrestore_t *rs, int idx, const char *str, size_t len)
{
    if (idx % 2 == 0) {
        rs->flen = len < sizeof rs->field ? len : 0;
        memcpy(rs->field, str, rs->flen);
    } else if (rs->flen == 0) {
        rs->skipped++;
    } else if (mrestore_take_pair(rs, &rs->fly[0], rs->field, rs->flen, str, len) < 0) {
        return NULL; /* the reader reports out of memory */
    }
    return &mrestore_obj;
}

static void *mrestore_rd_string(const redisReadTask *t, char *str, size_t len)
{
    mrestore_t *rs = t->privdata;
    int d = mrestore_depth(t), pairs = mrestore_rd_scans(rs) ? 2 : 1;

    if (d == 0) {
        rs->page_bad = true;
        if (t->type == REDIS_REPLY_ERROR)
            snprintf(rs->page_err, sizeof rs->page_err, "%.*s", (int)(len < 120 ? len : 120), str);
    } else if (d == pairs) {
        if (!rs->page_bad)
            return mrestore_rd_pair(rs, t->idx, str, len);
    } else if (d == 1) { /* an HSCAN's cursor */
        if (t->idx != 0 || t->type != REDIS_REPLY_STRING || len >= sizeof rs->cursor)
            rs->page_bad = true;
        else if (!rs->page_bad)
            mrestore_take_cursor(rs, &rs->fly[0], str, len);
    } else {
        rs->page_bad = true;
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
    r->maxbuf = 0; /* replies are large: keep the buffer instead of regrowing it */
    return r;
}

int mrestore_page_end(mrestore_t *rs)
{
    if (rs->page_bad)
        mrestore_warn(rs, &rs->fly[0], rs->page_err[0] ? rs->page_err : "wrong type");
    rs->page_err[0] = '\0';
    rs->flen = 0;
    return mrestore_landed(rs); /* clears page_bad */
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

    if (rs->nmsgs > 0)
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

/* One message into b: plainly ready, or as its meta record says (its
 * state; a due time that passed while the broker was down is due now;
 * unix ms back onto the broker's clock). */
static void mrestore_put(broker_t *b, const char *name, rmsg_t *e, const rmeta_t *r,
                         uint64_t id, uint64_t now, uint64_t now_unix)
{
    msg_ext_t *x = msg_ext(e->m);
    uint64_t due = 0;

    if (r == NULL) {
        broker_restore(b, name, strlen(name), e->m, id, e->attempt);
        return;
    }
    if (x != NULL) { /* its age, as far back as this clock goes */
        uint64_t age = now_unix > r->created ? now_unix - r->created : 0;
        x->created = age < now ? now - age : 0;
    }
    if (r->state == MSG_DELAYED)
        due = r->due > now_unix ? now + (r->due - now_unix) : (now > 0 ? now : 1);
    broker_restore_as(b, name, strlen(name), e->m, id, e->attempt, (msg_state_t)r->state, due);
}

void mrestore_apply(mrestore_t *rs, broker_t *b, uint64_t now, uint64_t now_unix)
{
    size_t n = 0, a = 0, k = 0;
    uint64_t maxid, next;
    uint32_t *ord = mrestore_order(rs, &n);
    bool renumber;

    if (rs->natts > 0)
        qsort(rs->atts, rs->natts, sizeof *rs->atts, mrestore_cmp_att);
    if (rs->nmetas > 0)
        qsort(rs->metas, rs->nmetas, sizeof *rs->metas, mrestore_cmp_meta);
    maxid = n > 0 ? mrestore_nth(rs, ord, n - 1)->id : 0;
    renumber = n > 0 && mrestore_nth(rs, ord, 0)->id < broker_next_id(b);
    rs->renumbered = renumber;
    next = rs->next_id > maxid + 1 ? rs->next_id : maxid + 1;
    broker_set_next_id(b, next);
    for (size_t i = 0; i < n; i++) {
        rmsg_t *e = mrestore_nth(rs, ord, i);
        rmeta_t *r;
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
        while (k < rs->nmetas && rs->metas[k].id < e->id)
            k++;
        r = k < rs->nmetas && rs->metas[k].id == e->id ? &rs->metas[k] : NULL;
        if (r != NULL)
            r->used = true;
        mrestore_put(b, name, e, r, renumber ? 0 : e->id, now, now_unix);
        e->m = NULL;
    }
    free(ord);
    rs->nmsgs = 0;
    log_info("redis mirror: restored %zu messages (%zu topics) in %.2f s; next id %" PRIu64 "%s",
             n, rs->ntopics, (double)(now - rs->t0) / 1000.0, broker_next_id(b),
             renumber ? " (renumbered: messages were published before Redis came back)" : "");
    if (rs->old)
        log_warn("redis mirror: restore read %s:messages:* of the single-hash schema before "
                 "shards (docs/redis.md); Redis is rewritten in shards now",
                 rs->prefix);
    if (rs->skipped > 0)
        log_warn("redis mirror: restore skipped %zu malformed entries", rs->skipped);
}
