/* bench.c: `sluice bench`, a load generator for sluice, Redis Streams and
 * beanstalkd. One thread and one connection per producer and per consumer;
 * every payload carries its send time, producer and sequence number under
 * a checksum, so consumers measure latency and detect corruption, and a
 * bitmap per producer catches duplicates and, at the end, losses.
 *
 * Each target speaks its server's own protocol: sluice PUB/SUB/ACK,
 * Redis XADD/XREADGROUP/XACK (RESP written and read here), beanstalkd
 * put/reserve/delete.
 */
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "clock.h"
#include "proto.h"

#define BENCH_CONNECT_MS 5000
#define BENCH_REPLY_MS 10000
#define BENCH_OUT_HIGH (256 * 1024)   /* queued bytes before a producer stops queueing */
#define BENCH_ACK_LINE 4000           /* ACK lines stay below the default max_line (4 KiB) */
#define BENCH_REDIS_BLOCK_MS 100
#define BENCH_REDIS_GROUP "sluice-bench"
#define BENCH_BEANS_TTR 60
#define BENCH_BEANS_PRI 1024

/* ---- latency histogram ---- */

void bench_hist_init(bench_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

size_t bench_hist_index(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);   /* e >= SUB_BITS */
    unsigned shift = e - BENCH_HIST_SUB_BITS;
    return (size_t)(shift + 1) * BENCH_HIST_SUB + (size_t)((v >> shift) & (BENCH_HIST_SUB - 1));
}

uint64_t bench_hist_lower(size_t idx)
{
    if (idx < BENCH_HIST_SUB)
        return idx;
    size_t g = idx / BENCH_HIST_SUB, m = idx % BENCH_HIST_SUB;
    return (uint64_t)(BENCH_HIST_SUB + m) << (g - 1);
}

uint64_t bench_hist_upper(size_t idx)
{
    if (idx < BENCH_HIST_SUB)
        return idx;
    size_t g = idx / BENCH_HIST_SUB;
    return bench_hist_lower(idx) + ((uint64_t)1 << (g - 1)) - 1;
}

void bench_hist_record(bench_hist_t *h, uint64_t v)
{
    h->b[bench_hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src)
{
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t bench_hist_quantile(const bench_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t up = bench_hist_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}

/* ---- payload ---- */

/* A fast word-at-a-time hash: enough to notice any changed, moved or
 * missing byte, cheap enough not to slow the consumer down. Every step is
 * a bijection of h, so any change survives to the end. */
static uint64_t bench_mix(uint64_t h, const unsigned char *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    for (; n > 0; p++, n--) {
        h = (h ^ *p) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
    }
    return h;
}

/* Mix all 64 bits into the 32 we keep. */
static uint32_t bench_mix_end(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* The padding goes first, so a producer hashes it once per run
 * (bench_pad_init) and only the 20 header bytes per message. */
static uint64_t bench_pad_sum(const char *buf, size_t size)
{
    return bench_mix(0x9E3779B97F4A7C15ull ^ (size - 4), (const unsigned char *)buf + BENCH_HDR_SIZE,
                     size - BENCH_HDR_SIZE);
}

static uint32_t bench_sum(const char *buf, uint64_t pad_sum)
{
    return bench_mix_end(bench_mix(pad_sum, (const unsigned char *)buf + 4, BENCH_HDR_SIZE - 4));
}

uint64_t bench_pad_init(char *buf, size_t size, uint64_t seed)
{
    uint64_t x = seed | 1;

    for (size_t i = BENCH_HDR_SIZE; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (char)(x >> 24);
    }
    return bench_pad_sum(buf, size);
}

void bench_payload_stamp(char *buf, uint64_t pad_sum, const bench_stamp_t *st)
{
    memcpy(buf + 4, &st->run, 4);
    memcpy(buf + 8, &st->ts_ns, 8);
    memcpy(buf + 16, &st->producer, 4);
    memcpy(buf + 20, &st->seq, 4);
    uint32_t sum = bench_sum(buf, pad_sum);
    memcpy(buf, &sum, 4);
}

bool bench_payload_check(const char *buf, size_t len, size_t size, bench_stamp_t *st)
{
    uint32_t sum;

    if (len != size || len < BENCH_HDR_SIZE)
        return false;
    memcpy(&sum, buf, 4);
    if (sum != bench_sum(buf, bench_pad_sum(buf, len)))
        return false;
    memcpy(&st->run, buf + 4, 4);
    memcpy(&st->ts_ns, buf + 8, 8);
    memcpy(&st->producer, buf + 16, 4);
    memcpy(&st->seq, buf + 20, 4);
    return true;
}

/* ---- RESP ---- */

/* Parse the signed decimal of a RESP header line buf[0..n). */
static bool bench_resp_int(const char *s, size_t n, int64_t *v)
{
    bool neg = false;
    int64_t x = 0;

    if (n && *s == '-') {
        neg = true;
        s++;
        n--;
    }
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return true;
}

/* One header line at buf[pos]: its type, its number (for $ and *), and
 * where the next thing starts. 1, 0 (need more) or -1. */
static int bench_resp_head(const char *buf, size_t len, size_t pos, char *type, int64_t *num,
                           size_t *next)
{
    if (pos >= len)
        return 0;
    const char *nl = memchr(buf + pos, '\n', len - pos);
    if (!nl)
        return len - pos > 65536 ? -1 : 0;
    size_t e = (size_t)(nl - buf);
    if (e == pos || buf[e - 1] != '\r')
        return -1;
    *type = buf[pos];
    *next = e + 1;
    *num = 0;
    if (*type == '$' || *type == '*' || *type == ':')
        return bench_resp_int(buf + pos + 1, e - 1 - pos - 1, num) ? 1 : -1;
    return *type == '+' || *type == '-' ? 1 : -1;
}

int bench_resp_scan(const char *buf, size_t len, size_t *end)
{
    size_t pos = 0;
    uint64_t need = 1;  /* values still to skip: arrays add their elements */

    while (need) {
        char t;
        int64_t n;
        size_t next;
        int k = bench_resp_head(buf, len, pos, &t, &n, &next);
        if (k <= 0)
            return k;
        pos = next;
        need--;
        if (t == '$' && n >= 0) {
            if ((uint64_t)n > len - pos || len - pos - (size_t)n < 2)
                return 0;
            if (buf[pos + (size_t)n] != '\r' || buf[pos + (size_t)n + 1] != '\n')
                return -1;
            pos += (size_t)n + 2;
        } else if (t == '*' && n > 0) {
            if (n > (1 << 24))
                return -1;
            need += (uint64_t)n;
        }
    }
    *end = pos;
    return 1;
}

/* A cursor over one whole RESP value that bench_resp_scan accepted. */
typedef struct resp_cur {
    const char *buf;
    size_t len, pos;
} resp_cur_t;

/* Read a header of the given type; false if it is another type. */
static bool resp_expect(resp_cur_t *r, char type, int64_t *num)
{
    char t;
    size_t next;

    if (bench_resp_head(r->buf, r->len, r->pos, &t, num, &next) != 1 || t != type)
        return false;
    r->pos = next;
    return true;
}

/* A bulk string; *s is NULL for a nil one. */
static bool resp_bulk(resp_cur_t *r, const char **s, size_t *n)
{
    int64_t l;

    if (!resp_expect(r, '$', &l))
        return false;
    if (l < 0) {
        *s = NULL;
        *n = 0;
        return true;
    }
    *s = r->buf + r->pos;
    *n = (size_t)l;
    r->pos += (size_t)l + 2;
    return true;
}

/* Skip one value of any type. */
static bool resp_skip(resp_cur_t *r)
{
    size_t end;

    if (bench_resp_scan(r->buf + r->pos, r->len - r->pos, &end) != 1)
        return false;
    r->pos += end;
    return true;
}

static int bench_resp_put(client_t *c, int argc, const char *const *argv, const size_t *lens)
{
    char h[32];
    int n = snprintf(h, sizeof h, "*%d\r\n", argc);

    if (client_put(c, h, (size_t)n) < 0)
        return -1;
    for (int i = 0; i < argc; i++) {
        n = snprintf(h, sizeof h, "$%zu\r\n", lens[i]);
        if (client_put(c, h, (size_t)n) < 0 || client_put(c, argv[i], lens[i]) < 0 ||
            client_put(c, "\r\n", 2) < 0)
            return -1;
    }
    return 0;
}

/* ---- which (producer, seq) pairs arrived ---- */

#define SEEN_CHUNK_SHIFT 20
#define SEEN_CHUNK_WORDS ((1u << SEEN_CHUNK_SHIFT) / 64)
#define SEEN_NCHUNKS (1u << (32 - SEEN_CHUNK_SHIFT))

/* One producer's bitmap, in chunks made on first use so a --duration run
 * needs no size up front. Consumers mark it concurrently. */
typedef struct bench_seen {
    _Atomic(_Atomic uint64_t *) chunk[SEEN_NCHUNKS];
} bench_seen_t;

/* 1 if seq is new, 0 if it was already marked, -1 out of memory. */
static int bench_seen_mark(bench_seen_t *s, uint32_t seq)
{
    _Atomic uint64_t *ch = atomic_load_explicit(&s->chunk[seq >> SEEN_CHUNK_SHIFT], memory_order_acquire);

    if (!ch) {
        _Atomic uint64_t *fresh = calloc(SEEN_CHUNK_WORDS, sizeof *fresh);
        if (!fresh)
            return -1;
        _Atomic uint64_t *expect = NULL;
        if (atomic_compare_exchange_strong(&s->chunk[seq >> SEEN_CHUNK_SHIFT], &expect, fresh)) {
            ch = fresh;
        } else {
            free(fresh);   /* another consumer made it first */
            ch = expect;
        }
    }
    uint32_t off = seq & ((1u << SEEN_CHUNK_SHIFT) - 1);
    uint64_t bit = (uint64_t)1 << (off & 63);
    uint64_t old = atomic_fetch_or_explicit(&ch[off >> 6], bit, memory_order_relaxed);
    return (old & bit) ? 0 : 1;
}

static bool bench_seen_has(bench_seen_t *s, uint32_t seq)
{
    _Atomic uint64_t *ch = atomic_load(&s->chunk[seq >> SEEN_CHUNK_SHIFT]);
    uint32_t off = seq & ((1u << SEEN_CHUNK_SHIFT) - 1);

    return ch && (atomic_load_explicit(&ch[off >> 6], memory_order_relaxed) >> (off & 63)) & 1;
}

static void bench_seen_free(bench_seen_t *s)
{
    for (size_t i = 0; i < SEEN_NCHUNKS; i++)
        free((void *)atomic_load(&s->chunk[i]));
}

/* ---- shared state ---- */

typedef enum bench_target { BT_SLUICE, BT_REDIS, BT_BEANSTALKD } bench_target_t;

typedef struct bench_opts {
    bench_target_t target;
    const char *addr;
    unsigned producers, consumers;
    uint64_t messages;      /* total; unused with duration */
    double duration;        /* seconds; 0 = run by --messages */
    size_t size;
    unsigned window, credit, ack_batch;
    const char *topic;
    bool json;
    bool sched_other;       /* --sched other: leave the worker threads' policy alone */
    unsigned drain_ms;      /* wait this long for missing messages after the producers end */
} bench_opts_t;

typedef struct bench bench_t;

typedef struct bench_worker {
    bench_t *b;
    unsigned idx;
    pthread_t th;
    bool started;
    client_t *c;
    /* producer */
    uint64_t quota;         /* messages to send (ignored with --duration) */
    uint64_t sent;          /* sequence numbers issued */
    uint64_t replied;       /* replies read */
    uint64_t ok;            /* accepted by the server */
    uint32_t *refused;      /* seqs the server refused */
    size_t nrefused, refused_cap;
    char put_hdr[PROTO_TOPIC_MAX + 40];   /* the same for every PUB of a run */
    size_t put_hdr_len;
    /* consumer */
    bench_hist_t *hist;
    uint64_t got;           /* new messages this consumer took */
    uint64_t last_ns;       /* when it took the last one */
} bench_worker_t;

/* What differs per target on the producer side. */
typedef struct bench_ops {
    const char *name;
    int port;               /* default port */
    int (*prod_setup)(bench_worker_t *w);
    int (*prod_put)(bench_worker_t *w, const char *payload, size_t n);
    /* Take one reply: 1 accepted, 2 refused (why in err), 0 need more, -1 broken. */
    int (*prod_reply)(bench_worker_t *w, char *err, size_t errlen);
    int (*consume)(bench_worker_t *w);
} bench_ops_t;

struct bench {
    bench_opts_t o;
    const bench_ops_t *ops;
    uint32_t run;           /* tells this run's messages from leftovers */
    bench_seen_t *seen;     /* one per producer */
    bench_worker_t *prod, *cons;
    /* Consumers bump these for every message: on their own cache line, so
     * the producer threads reading the options above do not stall on it. */
    _Alignas(64) atomic_uint_fast64_t received, dups, corrupt, stale, errors;
    _Alignas(64) atomic_uint ready;
    atomic_uint producers_done;
    atomic_bool go, stop, abort;
    uint64_t t_start, t_deadline;
    pthread_mutex_t lock;
    char first_err[CLIENT_ERR_MAX + 64];
};

static void bench_note(bench_t *b, bool fatal, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Record a problem: the first one is reported; a fatal one ends the run. */
static void bench_note(bench_t *b, bool fatal, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&b->lock);
    if (!b->first_err[0]) {
        va_start(ap, fmt);
        vsnprintf(b->first_err, sizeof b->first_err, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&b->lock);
    atomic_fetch_add(&b->errors, 1);
    if (fatal)
        atomic_store(&b->abort, true);
}

static bool bench_running(bench_t *b)
{
    return !atomic_load_explicit(&b->stop, memory_order_relaxed) &&
           !atomic_load_explicit(&b->abort, memory_order_relaxed);
}

/* Check one received payload and account for it. */
static void bench_take(bench_worker_t *w, const char *p, size_t n)
{
    bench_t *b = w->b;
    bench_stamp_t st;
    uint64_t now = clock_ns();

    if (!bench_payload_check(p, n, b->o.size, &st)) {
        atomic_fetch_add(&b->corrupt, 1);
        return;
    }
    if (st.run != b->run) {
        atomic_fetch_add(&b->stale, 1);
        return;
    }
    if (st.producer >= b->o.producers) {
        atomic_fetch_add(&b->corrupt, 1);
        return;
    }
    int k = bench_seen_mark(&b->seen[st.producer], st.seq);
    if (k < 0) {
        bench_note(b, true, "out of memory");
        return;
    }
    if (k == 0) {
        atomic_fetch_add(&b->dups, 1);
        return;
    }
    atomic_fetch_add_explicit(&b->received, 1, memory_order_relaxed);
    w->got++;
    w->last_ns = now;
    bench_hist_record(w->hist, now >= st.ts_ns ? now - st.ts_ns : 0);
}

/* One I/O step of a consumer winding down; false once deadline_ns has
 * passed or the connection failed. */
static bool bench_wait_until(bench_worker_t *w, uint64_t deadline_ns)
{
    int left = (int)((int64_t)(deadline_ns - clock_ns()) / 1000000);
    if (left <= 0)
        return false;
    if (client_step(w->c, left < 50 ? left : 50, -1, NULL) < 0) {
        bench_note(w->b, false, "%s", w->c->err);
        return false;
    }
    return true;
}

/* ---- target: sluice ---- */

static int bsl_prod_setup(bench_worker_t *w)
{
    int h = snprintf(w->put_hdr, sizeof w->put_hdr, "PUB %s %zu\r\n", w->b->o.topic, w->b->o.size);

    w->put_hdr_len = (size_t)h;
    return 0;
}

static int bsl_prod_put(bench_worker_t *w, const char *payload, size_t n)
{
    char *p = client_space(w->c, w->put_hdr_len + n + 2);

    if (p == NULL)
        return -1;
    memcpy(p, w->put_hdr, w->put_hdr_len);
    memcpy(p + w->put_hdr_len, payload, n);
    memcpy(p + w->put_hdr_len + n, "\r\n", 2);
    return 0;
}

static int bsl_prod_reply(bench_worker_t *w, char *err, size_t errlen)
{
    proto_reply_t r;
    int k = client_next(w->c, &r);

    if (k <= 0)
        return k;
    if (r.type == REPLY_OK)
        return 1;
    if (r.type != REPLY_ERROR)
        return -1;
    client_reply_str(&r, err, errlen);
    return 2;
}

/* Queue ACKs for ids[0..n), splitting lines that would pass max_line. */
static int bsl_ack(bench_worker_t *w, const uint64_t *ids, size_t n, unsigned *pending)
{
    char line[BENCH_ACK_LINE + PROTO_NUM_MAX + 8];
    size_t i = 0;

    while (i < n) {
        size_t l = 3;
        memcpy(line, "ACK", 3);
        while (i < n && l < BENCH_ACK_LINE) {
            line[l++] = ' ';
            l += proto_u64(line + l, ids[i++]);
        }
        line[l++] = '\r';
        line[l++] = '\n';
        if (client_put(w->c, line, l) < 0)
            return -1;
        (*pending)++;
    }
    return 0;
}

/* One reply on a consumer connection: a push or the answer to an ACK. */
static int bsl_cons_reply(bench_worker_t *w, const proto_reply_t *r, uint64_t *ids, size_t *n,
                          unsigned *pending)
{
    if (r->type == REPLY_MSG) {
        bench_take(w, r->body, r->body_len);
        ids[(*n)++] = r->id;
        if (*n == w->b->o.ack_batch) {
            int e = bsl_ack(w, ids, *n, pending);
            *n = 0;
            return e;
        }
        return 0;
    }
    if (*pending)
        (*pending)--;
    if (r->type == REPLY_ERROR) {
        char e[PROTO_ERR_MAX + 8];
        client_reply_str(r, e, sizeof e);
        bench_note(w->b, false, "consumer %u: %s", w->idx, e);
    } else if (r->type != REPLY_OK) {
        bench_note(w->b, true, "consumer %u: unexpected reply", w->idx);
        return -1;
    }
    return 0;
}

static int bsl_consume(bench_worker_t *w)
{
    bench_t *b = w->b;
    proto_reply_t r;
    unsigned pending = 0;
    size_t n = 0;
    uint64_t *ids = calloc(b->o.ack_batch, sizeof *ids);

    if (!ids) {
        bench_note(b, true, "out of memory");
        return -1;
    }
    client_printf(w->c, "SUB %s %u\r\n", b->o.topic, b->o.credit);
    if (client_read(w->c, &r, BENCH_REPLY_MS) != 1 || r.type != REPLY_OK) {
        bench_note(b, true, "consumer %u: SUB failed: %s", w->idx, w->c->err);
        free(ids);
        return -1;
    }
    atomic_fetch_add(&b->ready, 1);
    while (bench_running(b)) {
        int k = client_next(w->c, &r);
        if (k < 0)
            break;
        if (k == 1) {
            if (bsl_cons_reply(w, &r, ids, &n, &pending) < 0)
                break;
            continue;
        }
        /* idle: acknowledge the partial batch now rather than sit on it */
        if (n && bsl_ack(w, ids, n, &pending) < 0)
            break;
        n = 0;
        if (client_step(w->c, 50, -1, NULL) < 0) {
            if (bench_running(b))
                bench_note(b, true, "consumer %u: %s", w->idx, w->c->err);
            break;
        }
    }
    /* leave nothing unacknowledged behind: it would be redelivered */
    if (n)
        bsl_ack(w, ids, n, &pending);
    n = 0;
    uint64_t deadline = clock_ns() + 3000000000ull;
    while (pending) {
        int k = client_next(w->c, &r);
        if (k < 0)
            break;
        if (k == 1) {
            bsl_cons_reply(w, &r, ids, &n, &pending);
            if (n && bsl_ack(w, ids, n, &pending) < 0)
                break;
            n = 0;
            continue;
        }
        if (!bench_wait_until(w, deadline))
            break;
    }
    free(ids);
    return 0;
}

/* ---- target: Redis Streams ---- */

static int brd_prod_put(bench_worker_t *w, const char *payload, size_t n)
{
    const char *topic = w->b->o.topic;
    const char *argv[] = { "XADD", topic, "*", "d", payload };
    size_t lens[] = { 4, strlen(topic), 1, 1, n };

    return bench_resp_put(w->c, 5, argv, lens);
}

/* One RESP reply: its type byte and length, or 0/-1 as bench_resp_scan. */
static int brd_next(client_t *c, char *type, size_t *len)
{
    int k = bench_resp_scan(client_data(c), client_avail(c), len);

    if (k == 1)
        *type = client_data(c)[0];
    return k;
}

static void brd_errstr(const client_t *c, size_t len, char *err, size_t errlen)
{
    size_t n = len >= 2 ? len - 2 : len;   /* drop the CRLF */
    snprintf(err, errlen, "%.*s", (int)(n > 200 ? 200 : n), client_data(c));
}

static int brd_prod_reply(bench_worker_t *w, char *err, size_t errlen)
{
    char t = 0;
    size_t len;
    int k = brd_next(w->c, &t, &len);

    if (k <= 0)
        return k;
    int res = t == '$' ? 1 : t == '-' ? 2 : -1;
    if (res == 2)
        brd_errstr(w->c, len, err, errlen);
    client_consume(w->c, len);
    return res;
}

/* A blocking command on a fresh connection (setup and cleanup). */
static int brd_command(client_t *c, int argc, const char *const *argv, char *err, size_t errlen)
{
    size_t lens[8];
    char t = 0;
    size_t len = 0;

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (bench_resp_put(c, argc, argv, lens) < 0 || client_flush(c) < 0)
        goto broken;
    uint64_t deadline = clock_ns() + (uint64_t)BENCH_REPLY_MS * 1000000u;
    int k;
    while ((k = brd_next(c, &t, &len)) == 0) {
        if (clock_ns() > deadline || client_step(c, 100, -1, NULL) < 0)
            goto broken;
    }
    if (k < 0)
        goto broken;
    if (t == '-') {
        brd_errstr(c, len, err, errlen);
        client_consume(c, len);
        return -1;
    }
    client_consume(c, len);
    return 0;
broken:
    snprintf(err, errlen, "%s", c->err[0] ? c->err : "no reply");
    return -1;
}

/* Start from an empty stream with a consumer group, so leftovers of an
 * earlier run are not counted. */
static int brd_setup(bench_t *b, char *err, size_t errlen)
{
    char cerr[CLIENT_ERR_MAX];
    client_t *c = client_connect(b->o.addr, b->ops->port, BENCH_CONNECT_MS, cerr);

    if (!c) {
        snprintf(err, errlen, "%s", cerr);
        return -1;
    }
    const char *del[] = { "DEL", b->o.topic };
    const char *grp[] = { "XGROUP", "CREATE", b->o.topic, BENCH_REDIS_GROUP, "$", "MKSTREAM" };
    int rc = brd_command(c, 2, del, err, errlen);
    if (rc == 0)
        rc = brd_command(c, 6, grp, err, errlen);
    client_free(c);
    return rc;
}

static void brd_teardown(bench_t *b)
{
    char err[CLIENT_ERR_MAX];
    client_t *c = client_connect(b->o.addr, b->ops->port, BENCH_CONNECT_MS, err);
    const char *del[] = { "DEL", b->o.topic };

    if (!c)
        return;
    brd_command(c, 2, del, err, sizeof err);
    client_free(c);
}

/* Stream entry ids waiting for XACK, kept as one string of NUL-ended ids. */
typedef struct brd_ids {
    char *buf;
    size_t len, cap, n;
} brd_ids_t;

static int brd_ids_add(brd_ids_t *ids, const char *id, size_t n)
{
    if (ids->cap - ids->len < n + 1) {
        size_t ncap = ids->cap ? ids->cap * 2 : 4096;
        while (ncap - ids->len < n + 1)
            ncap *= 2;
        char *nb = realloc(ids->buf, ncap);
        if (!nb)
            return -1;
        ids->buf = nb;
        ids->cap = ncap;
    }
    memcpy(ids->buf + ids->len, id, n);
    ids->buf[ids->len + n] = '\0';
    ids->len += n + 1;
    ids->n++;
    return 0;
}

/* XACK everything collected, ack_batch ids per command. */
static int brd_ack(bench_worker_t *w, brd_ids_t *ids, unsigned *pending)
{
    const char *p = ids->buf;
    char h[32];

    for (size_t done = 0; done < ids->n;) {
        size_t k = ids->n - done < w->b->o.ack_batch ? ids->n - done : w->b->o.ack_batch;
        const char *argv[] = { "XACK", w->b->o.topic, BENCH_REDIS_GROUP };
        int hn = snprintf(h, sizeof h, "*%zu\r\n", k + 3);
        if (client_put(w->c, h, (size_t)hn) < 0)
            return -1;
        for (int i = 0; i < 3; i++) {
            hn = snprintf(h, sizeof h, "$%zu\r\n", strlen(argv[i]));
            if (client_put(w->c, h, (size_t)hn) < 0 || client_put(w->c, argv[i], strlen(argv[i])) < 0 ||
                client_put(w->c, "\r\n", 2) < 0)
                return -1;
        }
        for (size_t i = 0; i < k; i++) {
            size_t l = strlen(p);
            hn = snprintf(h, sizeof h, "$%zu\r\n", l);
            if (client_put(w->c, h, (size_t)hn) < 0 || client_put(w->c, p, l) < 0 ||
                client_put(w->c, "\r\n", 2) < 0)
                return -1;
            p += l + 1;
        }
        done += k;
        (*pending)++;
    }
    ids->len = ids->n = 0;
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
    size_t lens[11];

    for (int i = 0; i < 11; i++)
        lens[i] = strlen(argv[i]);
    return bench_resp_put(w->c, 11, argv, lens);
}

/* Walk an XREADGROUP reply: [[stream, [[id, [field, value]], ...]]] or nil. */
static int brd_entries(bench_worker_t *w, const char *buf, size_t len, brd_ids_t *ids)
{
    resp_cur_t r = { buf, len, 0 };
    int64_t nstreams = 0, two = 0, nent = 0, nfv = 0;
    const char *s;
    size_t sl;

    if (!resp_expect(&r, '*', &nstreams))
        return -1;
    if (nstreams <= 0)
        return 0;  /* nil: BLOCK timed out */
    for (int64_t i = 0; i < nstreams; i++) {
        if (!resp_expect(&r, '*', &two) || two != 2 || !resp_skip(&r) || !resp_expect(&r, '*', &nent))
            return -1;
        for (int64_t j = 0; j < nent; j++) {
            const char *id;
            size_t idl;
            if (!resp_expect(&r, '*', &two) || two != 2 || !resp_bulk(&r, &id, &idl) || !id)
                return -1;
            if (brd_ids_add(ids, id, idl) < 0)
                return -1;
            if (!resp_expect(&r, '*', &nfv))
                return -1;
            if (nfv < 0) {
                atomic_fetch_add(&w->b->corrupt, 1);   /* the entry was deleted under us */
                continue;
            }
            for (int64_t f = 0; f + 1 < nfv; f += 2) {
                if (!resp_skip(&r) || !resp_bulk(&r, &s, &sl))
                    return -1;
                bench_take(w, s ? s : "", sl);
            }
            if (nfv % 2 && !resp_skip(&r))
                return -1;
        }
    }
    return 0;
}

/* Take what has arrived: XACK answers first (they were sent first), then
 * the XREADGROUP answer. */
static int brd_cons_replies(bench_worker_t *w, brd_ids_t *ids, unsigned *pending, bool *reading)
{
    char t;
    size_t len;
    int k;

    while ((k = brd_next(w->c, &t, &len)) == 1) {
        if (*pending) {
            (*pending)--;
            if (t != ':') {
                char e[256];
                brd_errstr(w->c, len, e, sizeof e);
                bench_note(w->b, false, "consumer %u: XACK: %s", w->idx, e);
            }
        } else if (t == '-') {
            char e[256];
            brd_errstr(w->c, len, e, sizeof e);
            bench_note(w->b, true, "consumer %u: XREADGROUP: %s", w->idx, e);
            return -1;
        } else {
            *reading = false;
            if (brd_entries(w, client_data(w->c), len, ids) < 0) {
                bench_note(w->b, true, "consumer %u: bad XREADGROUP reply", w->idx);
                return -1;
            }
        }
        client_consume(w->c, len);
    }
    if (k < 0)
        bench_note(w->b, true, "consumer %u: not a RESP reply", w->idx);
    return k;
}

static int brd_consume(bench_worker_t *w)
{
    bench_t *b = w->b;
    brd_ids_t ids = { 0 };
    unsigned pending = 0;
    bool reading = false;
    char consumer[32];

    snprintf(consumer, sizeof consumer, "c%u", w->idx);
    atomic_fetch_add(&b->ready, 1);
    while (bench_running(b)) {
        if (!reading) {
            if (brd_ack(w, &ids, &pending) < 0 || brd_read_cmd(w, consumer) < 0)
                break;
            reading = true;
        }
        if (client_step(w->c, 50, -1, NULL) < 0) {
            bench_note(b, true, "consumer %u: %s", w->idx, w->c->err);
            break;
        }
        if (brd_cons_replies(w, &ids, &pending, &reading) < 0)
            break;
    }
    /* let the last XREADGROUP finish (what it brings is real), then XACK */
    uint64_t deadline = clock_ns() + 3000000000ull;
    while (!atomic_load(&b->abort) && (reading || pending || ids.n)) {
        if (!reading && ids.n && brd_ack(w, &ids, &pending) < 0)
            break;
        if (brd_cons_replies(w, &ids, &pending, &reading) < 0 || !bench_wait_until(w, deadline))
            break;
    }
    free(ids.buf);
    return 0;
}

/* ---- target: beanstalkd ---- */

/* One "\r\n"-ended line from the input: its length without the CRLF, or
 * 0 when none is complete yet (beanstalkd never sends an empty line). */
static size_t bbs_line(client_t *c, const char **line)
{
    const char *d = client_data(c);
    const char *nl = client_avail(c) ? memchr(d, '\n', client_avail(c)) : NULL;

    if (!nl)
        return 0;
    *line = d;
    size_t n = (size_t)(nl - d);
    return n && d[n - 1] == '\r' ? n - 1 : n;
}

static bool bbs_is(const char *line, size_t n, const char *word)
{
    size_t wl = strlen(word);
    return n >= wl && memcmp(line, word, wl) == 0 && (n == wl || line[wl] == ' ');
}

/* Drop one whole line (with its terminator) from the input. */
static void bbs_eat_line(client_t *c)
{
    const char *nl = memchr(client_data(c), '\n', client_avail(c));
    client_consume(c, (size_t)(nl - client_data(c)) + 1);
}

/* Send one command and expect a reply line starting with `want`; any
 * other outcome ends the run (set-up cannot go on without it). */
static int bbs_command(bench_worker_t *w, const char *cmd, const char *want)
{
    const char *line;
    size_t n;

    client_printf(w->c, "%s\r\n", cmd);
    uint64_t deadline = clock_ns() + (uint64_t)BENCH_REPLY_MS * 1000000u;
    if (client_flush(w->c) < 0)
        goto broken;
    while ((n = bbs_line(w->c, &line)) == 0) {
        if (clock_ns() > deadline || client_step(w->c, 100, -1, NULL) < 0)
            goto broken;
    }
    bool ok = bbs_is(line, n, want);
    if (!ok)
        bench_note(w->b, true, "%s: %.*s", cmd, (int)(n > 100 ? 100 : n), line);
    bbs_eat_line(w->c);
    return ok ? 0 : -1;
broken:
    bench_note(w->b, true, "%s: %s", cmd, w->c->err[0] ? w->c->err : "no reply");
    return -1;
}

static int bbs_prod_setup(bench_worker_t *w)
{
    char cmd[PROTO_TOPIC_MAX + 8];

    snprintf(cmd, sizeof cmd, "use %s", w->b->o.topic);
    return bbs_command(w, cmd, "USING");
}

static int bbs_prod_put(bench_worker_t *w, const char *payload, size_t n)
{
    if (client_printf(w->c, "put %d 0 %d %zu\r\n", BENCH_BEANS_PRI, BENCH_BEANS_TTR, n) < 0 ||
        client_put(w->c, payload, n) < 0)
        return -1;
    return client_put(w->c, "\r\n", 2);
}

static int bbs_prod_reply(bench_worker_t *w, char *err, size_t errlen)
{
    const char *line;
    size_t n = bbs_line(w->c, &line);

    if (n == 0)
        return client_avail(w->c) > 4096 ? -1 : 0;
    int res = bbs_is(line, n, "INSERTED") ? 1 : 2;
    if (res == 2)
        snprintf(err, errlen, "%.*s", (int)(n > 100 ? 100 : n), line);
    bbs_eat_line(w->c);
    return res;
}

/* Consumer state: reserves in flight and deletes not yet answered. */
typedef struct bbs_cons {
    unsigned reserves;      /* reserve commands not answered yet */
    bool flowing;           /* the last reserve found a job: pipeline more */
    unsigned pending;       /* deletes not answered yet */
    uint64_t *ids;          /* jobs to delete, not yet sent */
    size_t n;
} bbs_cons_t;

static int bbs_flush_deletes(bench_worker_t *w, bbs_cons_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (client_printf(w->c, "delete %llu\r\n", (unsigned long long)s->ids[i]) < 0)
            return -1;
    }
    s->pending += (unsigned)s->n;
    s->n = 0;
    return 0;
}

/* Parse "RESERVED <id> <bytes>" and its body. 1 taken, 0 need more, -1 bad. */
static int bbs_reserved(bench_worker_t *w, bbs_cons_t *s, const char *line, size_t n)
{
    unsigned long long id, bytes;
    char tmp[64];

    if (n >= sizeof tmp)
        return -1;
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    if (sscanf(tmp, "RESERVED %llu %llu", &id, &bytes) != 2)
        return -1;
    const char *nl = memchr(line, '\n', client_avail(w->c));
    size_t hdr = (size_t)(nl - line) + 1;
    if (bytes > client_avail(w->c) || client_avail(w->c) - hdr < bytes + 2)
        return 0;
    bench_take(w, line + hdr, (size_t)bytes);
    client_consume(w->c, hdr + (size_t)bytes + 2);
    s->ids[s->n++] = id;
    s->reserves--;
    s->flowing = true;
    if (s->n == w->b->o.ack_batch)
        return bbs_flush_deletes(w, s) < 0 ? -1 : 1;
    return 1;
}

/* Take every complete reply. 0, or -1 when the stream is broken. */
static int bbs_cons_replies(bench_worker_t *w, bbs_cons_t *s)
{
    const char *line;
    size_t n;

    while ((n = bbs_line(w->c, &line)) > 0) {
        if (bbs_is(line, n, "RESERVED")) {
            int k = bbs_reserved(w, s, line, n);
            if (k < 0)
                goto bad;
            if (k == 0)
                return 0;
            continue;
        }
        if (bbs_is(line, n, "TIMED_OUT") || bbs_is(line, n, "DEADLINE_SOON")) {
            s->reserves--;
            s->flowing = false;
        } else if (bbs_is(line, n, "DELETED")) {
            s->pending--;
        } else if (bbs_is(line, n, "NOT_FOUND")) {
            s->pending--;
            bench_note(w->b, false, "consumer %u: delete: NOT_FOUND", w->idx);
        } else {
            goto bad;
        }
        bbs_eat_line(w->c);
    }
    return client_avail(w->c) > 4096 ? -1 : 0;
bad:
    bench_note(w->b, true, "consumer %u: unexpected reply from beanstalkd", w->idx);
    return -1;
}

/* While jobs flow, keep `credit` non-blocking reserves in flight; when the
 * tube runs dry, one reserve that waits (a second at most), so deletes
 * queued behind it are never held up for long. */
static int bbs_reserve_more(bench_worker_t *w, bbs_cons_t *s)
{
    if (s->flowing) {
        while (s->reserves < w->b->o.credit) {
            if (client_printf(w->c, "reserve-with-timeout 0\r\n") < 0)
                return -1;
            s->reserves++;
        }
    } else if (s->reserves == 0) {
        if (client_printf(w->c, "reserve-with-timeout 1\r\n") < 0)
            return -1;
        s->reserves++;
    }
    return 0;
}

static int bbs_consume(bench_worker_t *w)
{
    bench_t *b = w->b;
    bbs_cons_t s = { .flowing = true };
    char cmd[PROTO_TOPIC_MAX + 8];

    s.ids = calloc(b->o.ack_batch, sizeof *s.ids);
    if (!s.ids) {
        bench_note(b, true, "out of memory");
        return -1;
    }
    snprintf(cmd, sizeof cmd, "watch %s", b->o.topic);
    if (bbs_command(w, cmd, "WATCHING") < 0 || bbs_command(w, "ignore default", "WATCHING") < 0) {
        free(s.ids);
        return -1;
    }
    atomic_fetch_add(&b->ready, 1);
    while (bench_running(b)) {
        if (bbs_reserve_more(w, &s) < 0)
            break;
        if (client_step(w->c, 50, -1, NULL) < 0) {
            bench_note(b, true, "consumer %u: %s", w->idx, w->c->err);
            break;
        }
        if (bbs_cons_replies(w, &s) < 0)
            break;
        if (s.n && bbs_flush_deletes(w, &s) < 0)
            break;
    }
    uint64_t deadline = clock_ns() + 3000000000ull;
    while (!atomic_load(&b->abort) && (s.reserves || s.pending || s.n)) {
        if (s.n && bbs_flush_deletes(w, &s) < 0)
            break;
        if (bbs_cons_replies(w, &s) < 0 || !bench_wait_until(w, deadline))
            break;
    }
    free(s.ids);
    return 0;
}

static const bench_ops_t bench_targets[] = {
    [BT_SLUICE] = { "sluice", CLIENT_DEFAULT_PORT, bsl_prod_setup, bsl_prod_put, bsl_prod_reply, bsl_consume },
    [BT_REDIS] = { "redis-streams", 6379, NULL, brd_prod_put, brd_prod_reply, brd_consume },
    [BT_BEANSTALKD] = { "beanstalkd", 11300, bbs_prod_setup, bbs_prod_put, bbs_prod_reply, bbs_consume },
};

/* ---- producer and consumer threads ---- */

static void bench_refused(bench_worker_t *w, uint32_t seq)
{
    if (w->nrefused == w->refused_cap) {
        size_t ncap = w->refused_cap ? w->refused_cap * 2 : 16;
        uint32_t *nr = realloc(w->refused, ncap * sizeof *nr);
        if (!nr)
            return;
        w->refused = nr;
        w->refused_cap = ncap;
    }
    w->refused[w->nrefused++] = seq;
}

/* Take every reply already read. -1 when the stream is broken. */
static int bench_prod_replies(bench_worker_t *w, uint64_t *inflight, bool *more)
{
    char err[PROTO_ERR_MAX + 64];
    int k;

    while ((k = w->b->ops->prod_reply(w, err, sizeof err)) > 0) {
        (*inflight)--;
        if (k == 1) {
            w->ok++;
        } else {
            /* a refusal ends this producer: the bench is about accepted messages */
            bench_refused(w, (uint32_t)w->replied);
            bench_note(w->b, false, "producer %u: %s", w->idx, err);
            *more = false;
        }
        w->replied++;
    }
    if (k < 0)
        bench_note(w->b, true, "producer %u: bad reply from server", w->idx);
    return k;
}

static void bench_produce(bench_worker_t *w, char *payload, uint64_t pad_sum)
{
    bench_t *b = w->b;
    uint64_t inflight = 0;
    bool more = true;
    bench_stamp_t st = { .run = b->run, .producer = w->idx };

    while (!atomic_load_explicit(&b->abort, memory_order_relaxed)) {
        while (more && inflight < b->o.window && client_unsent(w->c) < BENCH_OUT_HIGH) {
            uint64_t now = clock_ns();
            bool done = b->o.duration > 0 ? now >= b->t_deadline || w->sent >= UINT32_MAX
                                          : w->sent >= w->quota;
            if (done) {
                more = false;
                break;
            }
            st.seq = (uint32_t)w->sent;
            st.ts_ns = now;
            bench_payload_stamp(payload, pad_sum, &st);
            if (b->ops->prod_put(w, payload, b->o.size) < 0) {
                bench_note(b, true, "producer %u: out of memory", w->idx);
                return;
            }
            w->sent++;
            inflight++;
        }
        if (!more && inflight == 0)
            return;
        if (client_step(w->c, 100, -1, NULL) < 0) {
            bench_note(b, true, "producer %u: %s", w->idx, w->c->err);
            return;
        }
        if (bench_prod_replies(w, &inflight, &more) < 0)
            return;
    }
}

static bool bench_connect(bench_worker_t *w, const char *role)
{
    char err[CLIENT_ERR_MAX];

    w->c = client_connect(w->b->o.addr, w->b->ops->port, BENCH_CONNECT_MS, err);
    if (!w->c)
        bench_note(w->b, true, "%s %u: %s", role, w->idx, err);
    return w->c != NULL;
}

/* A load generator should not take the CPU from the server it measures:
 * as SCHED_BATCH, a worker woken by a reply waits for the server's turn
 * to end instead of preempting it in the middle of a batch (on 2 CPUs
 * shared by server and clients, that preemption costs more than the
 * work). Every target gets the same treatment. */
static void bench_sched(const bench_t *b)
{
    struct sched_param sp = { .sched_priority = 0 };

    if (!b->o.sched_other)
        (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
}

static void *bench_producer_main(void *arg)
{
    bench_worker_t *w = arg;
    bench_t *b = w->b;
    char *payload = malloc(b->o.size);

    if (!payload) {
        bench_note(b, true, "out of memory");
        goto out;
    }
    uint64_t pad_sum = bench_pad_init(payload, b->o.size, ((uint64_t)b->run << 32) ^ w->idx);
    bench_sched(b);
    if (!bench_connect(w, "producer"))
        goto out;
    if (b->ops->prod_setup && b->ops->prod_setup(w) < 0)
        goto out;
    atomic_fetch_add(&b->ready, 1);
    while (!atomic_load(&b->go) && !atomic_load(&b->abort))
        usleep(200);
    bench_produce(w, payload, pad_sum);
out:
    free(payload);
    atomic_fetch_add_explicit(&b->producers_done, 1, memory_order_release);
    return NULL;
}

static void *bench_consumer_main(void *arg)
{
    bench_worker_t *w = arg;

    bench_sched(w->b);
    if (bench_connect(w, "consumer"))
        w->b->ops->consume(w);
    return NULL;
}

/* ---- options ---- */

static const char bench_usage_text[] =
    "usage: sluice bench [OPTIONS]\n"
    "  -T, --target NAME      sluice | redis-streams | beanstalkd (sluice)\n"
    "  -s, --server ADDR      host:port or unix:/path (sluice: $SLUICE_ADDR or\n"
    "                         127.0.0.1:7700; redis 127.0.0.1:6379; beanstalkd 127.0.0.1:11300)\n"
    "  -p, --producers N      producer threads, one connection each (1)\n"
    "  -c, --consumers N      consumer threads, one connection each (1)\n"
    "  -n, --messages N       messages in all (100000)\n"
    "  -d, --duration S       publish for S seconds instead of --messages\n"
    "  -S, --size BYTES       payload size, at least 24 (64)\n"
    "  -w, --window N         unanswered publishes in flight per producer (64)\n"
    "  -C, --credit N         messages in flight per consumer: SUB credit, XREADGROUP\n"
    "                         COUNT, beanstalkd reserves in flight (256)\n"
    "  -a, --ack-batch N      ids per ACK / XACK; beanstalkd deletes per write (64)\n"
    "  -t, --topic NAME       topic, stream key or tube (bench)\n"
    "      --drain-timeout MS after the producers finish, how long to wait for\n"
    "                         missing messages before calling them lost (5000)\n"
    "      --sched POLICY     batch: worker threads run as SCHED_BATCH, so they do not\n"
    "                         preempt the server they measure; other: leave them be (batch)\n"
    "  -j, --json             print one JSON object instead of the report\n"
    "  -h, --help             this text\n"
    "Exit status: 0 when every message arrived once and intact; 1 otherwise.\n";

static bool bench_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;

    if (!s[0] || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int bench_bad(const char *what, const char *arg)
{
    fprintf(stderr, "sluice: bench: bad %s '%s'\nTry 'sluice bench --help'.\n", what, arg);
    return 2;
}

static int bench_parse(int argc, char **argv, bench_opts_t *o)
{
    static const struct option opts[] = {
        { "target", required_argument, NULL, 'T' },
        { "server", required_argument, NULL, 's' },
        { "producers", required_argument, NULL, 'p' },
        { "consumers", required_argument, NULL, 'c' },
        { "messages", required_argument, NULL, 'n' },
        { "duration", required_argument, NULL, 'd' },
        { "size", required_argument, NULL, 'S' },
        { "window", required_argument, NULL, 'w' },
        { "credit", required_argument, NULL, 'C' },
        { "ack-batch", required_argument, NULL, 'a' },
        { "topic", required_argument, NULL, 't' },
        { "drain-timeout", required_argument, NULL, 'D' },
        { "sched", required_argument, NULL, 'P' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    int ch;

    while ((ch = getopt_long(argc, argv, "T:s:p:c:n:d:S:w:C:a:t:jh", opts, NULL)) != -1) {
        switch (ch) {
        case 'T':
            if (strcmp(optarg, "sluice") == 0)
                o->target = BT_SLUICE;
            else if (strcmp(optarg, "redis-streams") == 0 || strcmp(optarg, "redis") == 0)
                o->target = BT_REDIS;
            else if (strcmp(optarg, "beanstalkd") == 0)
                o->target = BT_BEANSTALKD;
            else
                return bench_bad("--target", optarg);
            break;
        case 's': o->addr = optarg; break;
        case 'p':
            if (!bench_num(optarg, 1, 1024, &v))
                return bench_bad("--producers", optarg);
            o->producers = (unsigned)v;
            break;
        case 'c':
            if (!bench_num(optarg, 1, 1024, &v))
                return bench_bad("--consumers", optarg);
            o->consumers = (unsigned)v;
            break;
        case 'n':
            if (!bench_num(optarg, 1, (uint64_t)1 << 40, &o->messages))
                return bench_bad("--messages", optarg);
            break;
        case 'd': {
            char *end;
            o->duration = strtod(optarg, &end);
            if (*end || !(o->duration > 0) || o->duration > 86400)
                return bench_bad("--duration", optarg);
            break;
        }
        case 'S':
            if (!bench_num(optarg, BENCH_HDR_SIZE, 64u << 20, &v))
                return bench_bad("--size (24 bytes to 64 MiB)", optarg);
            o->size = (size_t)v;
            break;
        case 'w':
            if (!bench_num(optarg, 1, 1000000, &v))
                return bench_bad("--window", optarg);
            o->window = (unsigned)v;
            break;
        case 'C':
            if (!bench_num(optarg, 1, 1000000, &v))
                return bench_bad("--credit", optarg);
            o->credit = (unsigned)v;
            break;
        case 'a':
            if (!bench_num(optarg, 1, 1000000, &v))
                return bench_bad("--ack-batch", optarg);
            o->ack_batch = (unsigned)v;
            break;
        case 't':
            if (!proto_topic_valid(optarg, strlen(optarg)) || strlen(optarg) > 200)
                return bench_bad("--topic", optarg);
            o->topic = optarg;
            break;
        case 'D':
            if (!bench_num(optarg, 0, 3600000, &v))
                return bench_bad("--drain-timeout", optarg);
            o->drain_ms = (unsigned)v;
            break;
        case 'P':
            if (strcmp(optarg, "batch") != 0 && strcmp(optarg, "other") != 0)
                return bench_bad("--sched", optarg);
            o->sched_other = strcmp(optarg, "other") == 0;
            break;
        case 'j': o->json = true; break;
        case 'h': fputs(bench_usage_text, stdout); return -1;
        default:
            fprintf(stderr, "Try 'sluice bench --help'.\n");
            return 2;
        }
    }
    if (optind < argc)
        return bench_bad("argument", argv[optind]);
    if (!o->duration && o->messages / o->producers >= UINT32_MAX)
        return bench_bad("--messages (at most 2^32-1 per producer)", "");
    return 0;
}

/* ---- report ---- */

static void bench_fmt_ns(char *out, size_t n, uint64_t ns)
{
    /* %g: "10 us" for the histogram rows, "108.5 us" for percentiles */
    if (ns < 1000)
        snprintf(out, n, "%llu ns", (unsigned long long)ns);
    else if (ns < 1000000)
        snprintf(out, n, "%.4g us", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(out, n, "%.4g ms", (double)ns / 1e6);
    else
        snprintf(out, n, "%.4g s", (double)ns / 1e9);
}

typedef struct bench_result {
    uint64_t sent, accepted, unconfirmed, received, lost, dups, corrupt, stale, errors;
    double elapsed;         /* first publish to last new message, seconds */
    bench_hist_t *hist;
} bench_result_t;

/* Rows on a 1-2-5 scale (<= 10 us, <= 20 us, <= 50 us, ...) between the
 * fastest and the slowest message; each fine bucket goes to the row of
 * its midpoint, so row edges are as exact as the buckets (about 3%). */
#define BENCH_ROWS 36

static void bench_print_hist(const bench_hist_t *h)
{
    uint64_t limit[BENCH_ROWS], rows[BENCH_ROWS] = { 0 }, peak = 0;
    int lo = BENCH_ROWS, hi = -1;
    static const unsigned steps[3] = { 1, 2, 5 };

    for (int r = 0; r < BENCH_ROWS; r++) {  /* 1 us .. 50000 s */
        uint64_t p10 = 1000;
        for (int k = 0; k < r / 3; k++)
            p10 *= 10;
        limit[r] = steps[r % 3] * p10;
    }
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        uint64_t mid = bench_hist_lower(i) / 2 + bench_hist_upper(i) / 2;
        int r = 0;
        while (r < BENCH_ROWS - 1 && mid > limit[r])
            r++;
        rows[r] += h->b[i];
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    for (int r = lo; r <= hi; r++)
        peak = rows[r] > peak ? rows[r] : peak;
    printf("\nlatency histogram\n");
    for (int r = lo; r <= hi; r++) {
        char up[32], bar[41];
        bench_fmt_ns(up, sizeof up, limit[r]);
        size_t len = peak ? (size_t)((rows[r] * 40 + peak - 1) / peak) : 0;
        memset(bar, '#', len);
        bar[len] = '\0';
        printf("  <= %-9s %10llu %6.2f%%  %s\n", up, (unsigned long long)rows[r],
               100.0 * (double)rows[r] / (double)h->count, bar);
    }
}

static void bench_report_text(const bench_t *b, const bench_result_t *r)
{
    const bench_opts_t *o = &b->o;
    double rate = r->elapsed > 0 ? (double)r->received / r->elapsed : 0;
    char p50[32], p90[32], p99[32], p999[32], mx[32];

    bench_fmt_ns(p50, sizeof p50, bench_hist_quantile(r->hist, 0.50));
    bench_fmt_ns(p90, sizeof p90, bench_hist_quantile(r->hist, 0.90));
    bench_fmt_ns(p99, sizeof p99, bench_hist_quantile(r->hist, 0.99));
    bench_fmt_ns(p999, sizeof p999, bench_hist_quantile(r->hist, 0.999));
    bench_fmt_ns(mx, sizeof mx, r->hist->max);
    printf("target      %s at %s, topic %s\n", b->ops->name, o->addr, o->topic);
    printf("load        %u producers, %u consumers, %zu B messages, window %u, credit %u, ack batch %u\n",
           o->producers, o->consumers, o->size, o->window, o->credit, o->ack_batch);
    printf("throughput  %.0f msg/s, %.2f MB/s (%llu messages in %.3f s)\n", rate,
           rate * (double)o->size / 1e6, (unsigned long long)r->received, r->elapsed);
    printf("latency     p50 %s, p90 %s, p99 %s, p99.9 %s, max %s\n", p50, p90, p99, p999, mx);
    printf("messages    sent %llu, accepted %llu, received %llu, lost %llu, duplicates %llu, "
           "corrupt %llu\n",
           (unsigned long long)r->sent, (unsigned long long)r->accepted,
           (unsigned long long)r->received, (unsigned long long)r->lost,
           (unsigned long long)r->dups, (unsigned long long)r->corrupt);
    if (r->stale || r->unconfirmed || r->errors)
        printf("also        %llu stale (from earlier runs, ignored), %llu unconfirmed, %llu errors\n",
               (unsigned long long)r->stale, (unsigned long long)r->unconfirmed,
               (unsigned long long)r->errors);
    if (r->hist->count)
        bench_print_hist(r->hist);
}

static void bench_report_json(const bench_t *b, const bench_result_t *r)
{
    const bench_opts_t *o = &b->o;
    double rate = r->elapsed > 0 ? (double)r->received / r->elapsed : 0;
    const bench_hist_t *h = r->hist;

    printf("{\"target\":\"%s\",\"addr\":\"%s\",\"topic\":\"%s\",\"producers\":%u,\"consumers\":%u,"
           "\"size\":%zu,\"window\":%u,\"credit\":%u,\"ack_batch\":%u,",
           b->ops->name, o->addr, o->topic, o->producers, o->consumers, o->size, o->window,
           o->credit, o->ack_batch);
    printf("\"sent\":%llu,\"accepted\":%llu,\"received\":%llu,\"lost\":%llu,\"duplicates\":%llu,"
           "\"corrupt\":%llu,\"stale\":%llu,\"unconfirmed\":%llu,\"errors\":%llu,",
           (unsigned long long)r->sent, (unsigned long long)r->accepted,
           (unsigned long long)r->received, (unsigned long long)r->lost,
           (unsigned long long)r->dups, (unsigned long long)r->corrupt,
           (unsigned long long)r->stale, (unsigned long long)r->unconfirmed,
           (unsigned long long)r->errors);
    printf("\"elapsed_s\":%.6f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,", r->elapsed, rate,
           rate * (double)o->size / 1e6);
    printf("\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
           "\"mean\":%.1f},",
           (double)bench_hist_quantile(h, 0.5) / 1e3, (double)bench_hist_quantile(h, 0.9) / 1e3,
           (double)bench_hist_quantile(h, 0.99) / 1e3, (double)bench_hist_quantile(h, 0.999) / 1e3,
           (double)h->max / 1e3, h->count ? h->sum / (double)h->count / 1e3 : 0.0);
    printf("\"histogram\":[");
    bool first = true;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        printf("%s[%.3f,%llu]", first ? "" : ",", (double)bench_hist_upper(i) / 1e3,
               (unsigned long long)h->b[i]);
        first = false;
    }
    printf("]}\n");
}

/* ---- the run ---- */

/* Losses: accepted sequence numbers no consumer saw. */
static void bench_tally(bench_t *b, bench_result_t *r)
{
    for (unsigned p = 0; p < b->o.producers; p++) {
        bench_worker_t *w = &b->prod[p];
        size_t ri = 0;
        r->sent += w->sent;
        r->accepted += w->ok;
        r->unconfirmed += w->sent - w->replied;
        for (uint64_t s = 0; s < w->replied; s++) {
            if (ri < w->nrefused && w->refused[ri] == s) {
                ri++;
                continue;
            }
            if (!bench_seen_has(&b->seen[p], (uint32_t)s))
                r->lost++;
        }
    }
    r->received = atomic_load(&b->received);
    r->dups = atomic_load(&b->dups);
    r->corrupt = atomic_load(&b->corrupt);
    r->stale = atomic_load(&b->stale);
    r->errors = atomic_load(&b->errors);
    uint64_t last = b->t_start;
    for (unsigned c = 0; c < b->o.consumers; c++) {
        bench_hist_merge(r->hist, b->cons[c].hist);
        if (b->cons[c].last_ns > last)
            last = b->cons[c].last_ns;
    }
    r->elapsed = (double)(last - b->t_start) / 1e9;
}

static uint64_t bench_accepted(bench_t *b)
{
    uint64_t n = 0;
    for (unsigned p = 0; p < b->o.producers; p++)
        n += b->prod[p].ok;
    return n;
}

static void bench_progress(bench_t *b, uint64_t now, uint64_t *shown, uint64_t *last_recv)
{
    if (now - *shown < 1000000000u)
        return;
    uint64_t recv = atomic_load(&b->received);
    double dt = (double)(now - *shown) / 1e9;
    fprintf(stderr, "\r\033[K[bench %s] %.0f s: received %llu (%.0f msg/s)", b->ops->name,
            (double)(now - b->t_start) / 1e9, (unsigned long long)recv,
            (double)(recv - *last_recv) / dt);
    *shown = now;
    *last_recv = recv;
}

/* Watch the run until every accepted message has arrived, or the
 * producers are done and nothing new came for drain_ms. */
static void bench_watch(bench_t *b)
{
    bool tty = isatty(STDERR_FILENO);
    uint64_t shown = b->t_start, last_recv = 0, seen = 0, changed = clock_ns();

    for (;;) {
        usleep(10000);
        uint64_t now = clock_ns();
        if (atomic_load(&b->abort))
            break;
        uint64_t recv = atomic_load(&b->received);
        if (recv != seen) {
            seen = recv;
            changed = now;
        }
        if (tty)
            bench_progress(b, now, &shown, &last_recv);
        if (atomic_load_explicit(&b->producers_done, memory_order_acquire) < b->o.producers)
            continue;
        if (recv >= bench_accepted(b))
            break;
        if (now - changed >= (uint64_t)b->o.drain_ms * 1000000u)
            break;
    }
    if (tty && shown != b->t_start)
        fputs("\r\033[K", stderr);
}

/* Wait for `n` workers to report ready (or the run to fail). */
static bool bench_wait_ready(bench_t *b, unsigned n)
{
    uint64_t deadline = clock_ns() + 3ull * (BENCH_CONNECT_MS + BENCH_REPLY_MS) * 1000000u;

    while (atomic_load(&b->ready) < n) {
        if (atomic_load(&b->abort))
            return false;
        if (clock_ns() > deadline) {
            bench_note(b, true, "connections not ready after %d s",
                       3 * (BENCH_CONNECT_MS + BENCH_REPLY_MS) / 1000);
            return false;
        }
        usleep(1000);
    }
    return true;
}

static int bench_start(bench_t *b)
{
    for (unsigned i = 0; i < b->o.consumers; i++) {
        bench_worker_t *w = &b->cons[i];
        if (pthread_create(&w->th, NULL, bench_consumer_main, w) != 0) {
            bench_note(b, true, "cannot start a thread");
            return -1;
        }
        w->started = true;
    }
    /* consumers first, so the group exists / SUB is in place before data */
    if (!bench_wait_ready(b, b->o.consumers))
        return -1;
    for (unsigned i = 0; i < b->o.producers; i++) {
        bench_worker_t *w = &b->prod[i];
        if (pthread_create(&w->th, NULL, bench_producer_main, w) != 0) {
            bench_note(b, true, "cannot start a thread");
            return -1;
        }
        w->started = true;
    }
    if (!bench_wait_ready(b, b->o.consumers + b->o.producers))
        return -1;
    b->t_start = clock_ns();
    b->t_deadline = b->t_start + (uint64_t)(b->o.duration * 1e9);
    atomic_store(&b->go, true);
    return 0;
}

static void bench_join(bench_t *b)
{
    for (unsigned i = 0; i < b->o.producers; i++)
        if (b->prod[i].started)
            pthread_join(b->prod[i].th, NULL);
    atomic_store(&b->stop, true);
    for (unsigned i = 0; i < b->o.consumers; i++)
        if (b->cons[i].started)
            pthread_join(b->cons[i].th, NULL);
}

static int bench_alloc(bench_t *b)
{
    const bench_opts_t *o = &b->o;

    b->seen = calloc(o->producers, sizeof *b->seen);
    b->prod = calloc(o->producers, sizeof *b->prod);
    b->cons = calloc(o->consumers, sizeof *b->cons);
    if (!b->seen || !b->prod || !b->cons)
        return -1;
    for (unsigned i = 0; i < o->producers; i++) {
        b->prod[i].b = b;
        b->prod[i].idx = i;
        b->prod[i].quota = o->messages / o->producers + (i < o->messages % o->producers);
    }
    for (unsigned i = 0; i < o->consumers; i++) {
        b->cons[i].b = b;
        b->cons[i].idx = i;
        b->cons[i].hist = malloc(sizeof *b->cons[i].hist);
        if (!b->cons[i].hist)
            return -1;
        bench_hist_init(b->cons[i].hist);
    }
    return 0;
}

static void bench_free(bench_t *b)
{
    for (unsigned i = 0; b->prod && i < b->o.producers; i++) {
        client_free(b->prod[i].c);
        free(b->prod[i].refused);
    }
    for (unsigned i = 0; b->cons && i < b->o.consumers; i++) {
        client_free(b->cons[i].c);
        free(b->cons[i].hist);
    }
    for (unsigned i = 0; b->seen && i < b->o.producers; i++)
        bench_seen_free(&b->seen[i]);
    free(b->seen);
    free(b->prod);
    free(b->cons);
    pthread_mutex_destroy(&b->lock);
}

static uint32_t bench_run_id(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
                 ((uint64_t)getpid() << 32);
    return (uint32_t)(x ^ (x >> 32));
}

static int bench_execute(bench_t *b)
{
    bench_hist_t total;
    bench_result_t r = { .hist = &total };
    char err[CLIENT_ERR_MAX + 64];

    bench_hist_init(&total);
    if (bench_alloc(b) < 0) {
        fprintf(stderr, "sluice: bench: out of memory\n");
        return 1;
    }
    if (b->o.target == BT_REDIS && brd_setup(b, err, sizeof err) < 0) {
        fprintf(stderr, "sluice: bench: redis setup: %s\n", err);
        return 1;
    }
    if (bench_start(b) == 0)
        bench_watch(b);
    else
        atomic_store(&b->abort, true);
    bench_join(b);
    if (b->o.target == BT_REDIS)
        brd_teardown(b);
    if (b->first_err[0])
        fprintf(stderr, "sluice: bench: %s\n", b->first_err);
    if (atomic_load(&b->abort) && !atomic_load(&b->go))
        return 1;
    bench_tally(b, &r);
    if (b->o.json)
        bench_report_json(b, &r);
    else
        bench_report_text(b, &r);
    fflush(stdout);
    bool bad = r.lost || r.dups || r.corrupt || r.errors || atomic_load(&b->abort);
    return bad ? 1 : 0;
}

int bench_main(int argc, char **argv, const char *addr)
{
    bench_t *b = calloc(1, sizeof *b);
    if (!b)
        return 1;
    b->o = (bench_opts_t){
        .target = BT_SLUICE, .addr = addr, .producers = 1, .consumers = 1, .messages = 100000,
        .size = 64, .window = 64, .credit = 256, .ack_batch = 64, .topic = "bench",
        .drain_ms = 5000,
    };
    pthread_mutex_init(&b->lock, NULL);
    int rc = bench_parse(argc, argv, &b->o);
    if (rc != 0) {
        pthread_mutex_destroy(&b->lock);
        free(b);
        return rc < 0 ? 0 : rc;
    }
    b->ops = &bench_targets[b->o.target];
    if (!b->o.addr && b->o.target == BT_SLUICE)
        b->o.addr = client_default_addr();
    if (!b->o.addr)
        b->o.addr = b->o.target == BT_REDIS ? "127.0.0.1:6379" : "127.0.0.1:11300";
    b->run = bench_run_id();
    rc = bench_execute(b);
    bench_free(b);
    free(b);
    return rc;
}
