/* soak.c: the soak driver. Many producers and consumers hammer the real
 * daemon for a while with every misbehaviour a client can have (random
 * sizes, disconnects mid-payload and mid-delivery, NACKs, ignored messages
 * left to their ack deadline), on topics that hit every overflow policy and
 * feed a dead-letter topic. Then everything is drained and reconciled:
 *
 * - every message that got +OK was acked exactly once, or sits in the
 *   dead-letter topic, or is accounted for by the topic's `dropped` and
 *   `dead` counters; per topic, published = acked + dropped + dead +
 *   dead-lettered, exactly;
 * - nothing is invented: no delivery of a tag never sent, of a message
 *   refused (-FULL, -TOOBIG) or cut off mid-payload, or with a corrupt
 *   payload; no attempt past max_deliveries;
 * - the daemon's RSS (sampled every 100 ms) stays under a bound derived
 *   from its config, and its descriptors come back to where they started.
 *
 * usage: soak [-d SECONDS] [-c CLIENTS] [-s SEED] [-q] [-V]
 * Exit status: 0 when every invariant held, 1 when one did not (or the
 * daemon misbehaved), 2 on a usage error. The daemon is $SLUICED.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "harness.h"
#include "proto.h"

/* ---- the broker's config, and the bound on its memory that follows ---- */

#define SOAK_MAX_MESSAGE (64 * 1024)
#define SOAK_OUTPUT_BUFFER (128 * 1024)
#define SOAK_MAX_LINE 4096
#define SOAK_MAX_MEMORY (24 * 1024 * 1024)
#define SOAK_ACK_TIMEOUT_MS 250
#define SOAK_MAX_DELIVERIES 4

static const char soak_config[] =
    "log: {level: warn}\n"
    "auto_create_topics: false\n"
    "limits:\n"
    "  max_connections: 1000\n"
    "  max_line: 4KiB\n"
    "  max_message: 64KiB\n"
    "  max_memory: 24MiB\n"
    "  output_buffer: 128KiB\n"
    "defaults:\n"
    "  max_messages: 2000\n"
    "  max_bytes: 4MiB\n"
    "  ack_timeout: 250ms\n"
    "  max_deliveries: 4\n"
    "  dead_letter: soak.dlq\n"
    "  prefetch: 16\n"
    "topics:\n"
    "  soak.block: {overflow: block, max_messages: 400}\n"
    "  soak.blockt: {overflow: block, block_timeout: 100ms, max_messages: 200, max_bytes: 1MiB}\n"
    "  soak.reject: {overflow: reject, max_messages: 200}\n"
    "  soak.drop: {overflow: drop-oldest, max_messages: 200, dead_letter: \"\"}\n"
    "  soak.dlq: {overflow: reject, max_messages: 20000, max_bytes: 16MiB, max_deliveries: 0,\n"
    "             ack_timeout: 60s, dead_letter: \"\"}\n";

/* Source topics first; the dead-letter topic last. */
static const char *const soak_topics[] = {"soak.block", "soak.blockt", "soak.reject",
                                          "soak.drop", "soak.dlq"};
#define SOAK_NSOURCES 4
#define SOAK_DLQ 4
#define SOAK_NTOPICS 5
static const uint64_t soak_topic_max_messages[SOAK_NTOPICS] = {400, 200, 200, 200, 20000};

/* ---- the record of every message ---- */

enum {
    TAG_PENDING = 0, /* being sent, or its reply not read yet */
    TAG_OK,          /* +OK: the broker owes it */
    TAG_REFUSED,     /* -FULL or -TOOBIG: must never be delivered */
    TAG_ABORTED,     /* cut off mid-payload: must never be delivered */
    TAG_UNKNOWN,     /* sent whole, producer gone before the reply */
};

typedef struct soak_tag {
    _Atomic uint8_t state;
    uint8_t topic;
    uint32_t len;
    _Atomic uint16_t deliveries; /* in its own topic */
    _Atomic uint16_t acks;       /* successful ACKs in its own topic */
    _Atomic uint16_t dlq;        /* deliveries from the dead-letter topic */
    _Atomic uint16_t dlq_acks;
} soak_tag_t;

#define TAG_CHUNK_BITS 16
#define TAG_CHUNK (1u << TAG_CHUNK_BITS)
#define TAG_CHUNKS 2048 /* 134 million tags: far more than a soak sends */

static _Atomic(soak_tag_t *) soak_chunks[TAG_CHUNKS];
static atomic_uint_fast64_t soak_next_tag;
static pthread_mutex_t soak_chunk_lock = PTHREAD_MUTEX_INITIALIZER;

/* The record of tag t, or NULL for a tag never handed out. */
static soak_tag_t *soak_tag(uint64_t t)
{
    soak_tag_t *chunk;

    if (t >= atomic_load(&soak_next_tag) || (t >> TAG_CHUNK_BITS) >= TAG_CHUNKS)
        return NULL;
    chunk = atomic_load(&soak_chunks[t >> TAG_CHUNK_BITS]);
    return chunk ? &chunk[t & (TAG_CHUNK - 1)] : NULL;
}

/* A new tag with its record (state PENDING); UINT64_MAX when out of room. */
static uint64_t soak_tag_new(unsigned topic, uint32_t len)
{
    uint64_t t = atomic_fetch_add(&soak_next_tag, 1);
    size_t ci = (size_t)(t >> TAG_CHUNK_BITS);
    soak_tag_t *chunk;

    if (ci >= TAG_CHUNKS)
        return UINT64_MAX;
    pthread_mutex_lock(&soak_chunk_lock);
    chunk = atomic_load(&soak_chunks[ci]);
    if (chunk == NULL) {
        chunk = calloc(TAG_CHUNK, sizeof *chunk);
        atomic_store(&soak_chunks[ci], chunk);
    }
    pthread_mutex_unlock(&soak_chunk_lock);
    if (chunk == NULL)
        return UINT64_MAX;
    chunk[t & (TAG_CHUNK - 1)].topic = (uint8_t)topic;
    chunk[t & (TAG_CHUNK - 1)].len = len;
    return t;
}

/* ---- payloads: "T<16 hex digits>:" and then bytes that depend on the tag
 * (NULs, CRs and LFs included) ---- */

#define SOAK_HDR 18

static uint8_t soak_fill_byte(uint64_t tag, size_t j)
{
    return (uint8_t)((tag * 0x9e3779b1u) ^ (j * 131u) ^ (j >> 7));
}

static void soak_payload(char *buf, uint64_t tag, uint32_t len)
{
    char hdr[SOAK_HDR + 1];

    snprintf(hdr, sizeof hdr, "T%016" PRIx64 ":", tag);
    memcpy(buf, hdr, SOAK_HDR);
    for (size_t j = SOAK_HDR; j < len; j++)
        buf[j] = (char)soak_fill_byte(tag, j);
}

/* The tag a payload claims, if it is a well-formed one; UINT64_MAX else. */
static uint64_t soak_payload_tag(const char *p, size_t len)
{
    uint64_t tag = 0;

    if (len < SOAK_HDR || p[0] != 'T' || p[17] != ':')
        return UINT64_MAX;
    for (int i = 1; i <= 16; i++) {
        int c = p[i], v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else
            return UINT64_MAX;
        tag = tag << 4 | (uint64_t)v;
    }
    return tag;
}

static bool soak_payload_intact(const char *p, size_t len, uint64_t tag)
{
    for (size_t j = SOAK_HDR; j < len; j++)
        if ((uint8_t)p[j] != soak_fill_byte(tag, j))
            return false;
    return true;
}

/* ---- shared state ---- */

typedef struct soak_opts {
    unsigned duration_s;
    unsigned clients;
    uint64_t seed;
    bool quiet;
    bool valgrind;
} soak_opts_t;

static soak_opts_t soak_opts = {.duration_s = 20, .clients = 16, .seed = 1};
static sd_t soak_d;

static atomic_bool soak_stop_producers, soak_calm, soak_stop_consumers;

/* Counters of what clients did and saw. */
static atomic_uint_fast64_t n_ok, n_full, n_toobig, n_aborted, n_unknown;
static atomic_uint_fast64_t n_delivered, n_redelivered, n_dlq_delivered;
static atomic_uint_fast64_t n_ack_ok, n_ack_notfound, n_nack, n_ignored, n_touch;
static atomic_uint_fast64_t n_prod_sessions, n_cons_sessions, n_cut_mid_delivery;
static atomic_uint_fast64_t n_delayed_pubs;

/* Violations: any of these fails the soak. */
static atomic_uint_fast64_t v_invented, v_corrupt, v_misrouted, v_attempt, v_protocol;

static pthread_mutex_t soak_log_lock = PTHREAD_MUTEX_INITIALIZER;

static void soak_violation(atomic_uint_fast64_t *counter, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void soak_violation(atomic_uint_fast64_t *counter, const char *fmt, ...)
{
    va_list ap;

    /* The first few say what happened; the count says how often. */
    if (atomic_fetch_add(counter, 1) < 20) {
        pthread_mutex_lock(&soak_log_lock);
        fputs("soak: VIOLATION: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        pthread_mutex_unlock(&soak_log_lock);
    }
}

/* xorshift64*: one stream per thread, from the seed. */
static uint64_t soak_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static unsigned soak_below(uint64_t *s, unsigned n) { return (unsigned)(soak_rand(s) % n); }

/* ---- a connection with a read buffer ---- */

typedef struct sk {
    int fd;
    char *buf;
    size_t off, len, cap;
    proto_reply_t r;
} sk_t;

static bool sk_open(sk_t *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)soak_d.port)};
    struct timeval tv = {.tv_sec = 60};
    int one = 1;

    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return false;
    inet_pton(AF_INET, soak_d.host, &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(c->fd);
        return false;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Nothing here should wait a minute: if it does, the broker is stuck. */
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    c->cap = 256 * 1024;
    c->buf = malloc(c->cap);
    return c->buf != NULL;
}

/* Close with a FIN, or (rst) with a reset, as a crashing client would. */
static void sk_close(sk_t *c, bool rst)
{
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd);
    free(c->buf);
    c->buf = NULL;
}

static bool sk_send(sk_t *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Next reply or push into c->r. 1 got one, 0 nothing within timeout_ms,
 * -1 error, EOF or garbage. */
static int sk_reply(sk_t *c, int timeout_ms)
{
    for (;;) {
        size_t used = 0;
        int r = proto_parse_reply(c->buf + c->off, c->len - c->off, &c->r, &used);
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        ssize_t n;

        if (r < 0)
            return -1;
        if (r == 1) {
            c->off += used;
            return 1;
        }
        if (c->off > 0) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        if (c->len == c->cap) {
            char *nb = realloc(c->buf, c->cap * 2);
            if (nb == NULL)
                return -1;
            c->buf = nb;
            c->cap *= 2;
        }
        int pr = poll(&pfd, 1, timeout_ms);
        if (pr == 0)
            return 0;
        if (pr < 0)
            return errno == EINTR ? 0 : -1;
        n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n <= 0)
            return -1;
        c->len += (size_t)n;
    }
}

/* ---- producers ---- */

#define PROD_BATCH_MAX 32

typedef struct producer {
    unsigned index;
    uint64_t rng;
    pthread_t thread;
    char *frame;
    size_t frame_cap;
    uint64_t tags[PROD_BATCH_MAX];
} producer_t;

/* Mostly small, some medium, a few up to max_message, and now and then
 * one over it (-TOOBIG). */
static uint32_t soak_size(uint64_t *rng)
{
    unsigned r = soak_below(rng, 1000);

    if (r < 700)
        return SOAK_HDR + soak_below(rng, 240);
    if (r < 950)
        return 256 + soak_below(rng, 8 * 1024);
    if (r < 999)
        return 8 * 1024 + soak_below(rng, SOAK_MAX_MESSAGE - 8 * 1024 + 1);
    return SOAK_MAX_MESSAGE + 1 + soak_below(rng, 16 * 1024);
}

static void soak_tag_set(uint64_t tag, uint8_t state)
{
    atomic_store(&soak_tag(tag)->state, state);
}

/* Read the replies of a batch: each is +OK, -FULL or -TOOBIG. */
static bool producer_replies(producer_t *p, sk_t *c, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        soak_tag_t *t = soak_tag(p->tags[i]);
        int rr = sk_reply(c, 60000);
        if (rr != 1) {
            soak_violation(&v_protocol, "producer %u: %s", p->index,
                           rr == 0 ? "no reply to a PUB within 60 s"
                                   : "connection lost or garbage while waiting for a reply");
            return false;
        }
        if (c->r.type == REPLY_OK) {
            atomic_store(&t->state, TAG_OK);
            atomic_fetch_add(&n_ok, 1);
        } else if (c->r.type == REPLY_ERROR && c->r.code_len == 4 &&
                   memcmp(c->r.code, "FULL", 4) == 0) {
            atomic_store(&t->state, TAG_REFUSED);
            atomic_fetch_add(&n_full, 1);
        } else if (c->r.type == REPLY_ERROR && c->r.code_len == 6 &&
                   memcmp(c->r.code, "TOOBIG", 6) == 0 && t->len > SOAK_MAX_MESSAGE) {
            atomic_store(&t->state, TAG_REFUSED);
            atomic_fetch_add(&n_toobig, 1);
        } else {
            soak_violation(&v_protocol, "producer %u: unexpected reply type %d to a PUB (%.*s)",
                           p->index, (int)c->r.type, (int)c->r.text_len, c->r.text);
            return false;
        }
    }
    return true;
}

/* One batch of pipelined PUBs to one topic. Returns false when the
 * session is over (the connection was dropped on purpose or failed). */
static bool producer_batch(producer_t *p, sk_t *c)
{
    unsigned topic = soak_below(&p->rng, SOAK_NSOURCES);
    unsigned n = 1 + soak_below(&p->rng, PROD_BATCH_MAX);
    unsigned mode = soak_below(&p->rng, 100); /* 0-1: cut mid-payload, 2-3: leave unread */
    size_t len = 0, cut = 0;

    for (unsigned i = 0; i < n; i++) {
        uint32_t size = soak_size(&p->rng);
        uint64_t tag = soak_tag_new(topic, size);
        unsigned delay = soak_below(&p->rng, 20) == 0 ? soak_below(&p->rng, 300) : 0;
        size_t need = len + 64 + size + 2;

        if (tag == UINT64_MAX)
            return false;
        if (need > p->frame_cap) {
            char *f = realloc(p->frame, need * 2);
            if (f == NULL)
                return false;
            p->frame = f;
            p->frame_cap = need * 2;
        }
        p->tags[i] = tag;
        len += (size_t)sprintf(p->frame + len, "PUB %s %" PRIu32, soak_topics[topic], size);
        if (delay > 0) {
            len += (size_t)sprintf(p->frame + len, " delay=%u", delay);
            atomic_fetch_add(&n_delayed_pubs, 1);
        }
        memcpy(p->frame + len, "\r\n", 2);
        len += 2;
        cut = len + (size > 1 ? 1 + soak_below(&p->rng, size - 1) : 0);
        soak_payload(p->frame + len, tag, size);
        len += size;
        memcpy(p->frame + len, "\r\n", 2);
        len += 2;
    }
    if (mode < 2) {
        /* The last PUB stops mid-payload and the client vanishes; what it
         * sent whole before that has an unknown fate. */
        for (unsigned i = 0; i + 1 < n; i++)
            soak_tag_set(p->tags[i], TAG_UNKNOWN);
        soak_tag_set(p->tags[n - 1], TAG_ABORTED);
        atomic_fetch_add(&n_unknown, n - 1);
        atomic_fetch_add(&n_aborted, 1);
        sk_send(c, p->frame, cut);
        return false;
    }
    if (!sk_send(c, p->frame, len)) {
        soak_violation(&v_protocol, "producer %u: send failed: %s", p->index, strerror(errno));
        for (unsigned i = 0; i < n; i++)
            soak_tag_set(p->tags[i], TAG_UNKNOWN);
        atomic_fetch_add(&n_unknown, n);
        return false;
    }
    if (mode < 4) {
        for (unsigned i = 0; i < n; i++)
            soak_tag_set(p->tags[i], TAG_UNKNOWN);
        atomic_fetch_add(&n_unknown, n);
        return false;
    }
    return producer_replies(p, c, n);
}

static void *producer_run(void *arg)
{
    producer_t *p = arg;

    while (!atomic_load(&soak_stop_producers)) {
        unsigned rounds = 1 + soak_below(&p->rng, 200);
        bool live = true;
        sk_t c;

        if (!sk_open(&c)) {
            soak_violation(&v_protocol, "producer %u: cannot connect: %s", p->index,
                           strerror(errno));
            sd_sleep_ms(100);
            continue;
        }
        atomic_fetch_add(&n_prod_sessions, 1);
        for (unsigned r = 0; r < rounds && live && !atomic_load(&soak_stop_producers); r++)
            live = producer_batch(p, &c);
        sk_close(&c, soak_below(&p->rng, 2) == 0);
    }
    return NULL;
}

/* ---- consumers ---- */

/* A command whose reply is awaited, in the order they were sent. */
typedef enum { PC_SUB, PC_ACK, PC_NACK, PC_TOUCH } pc_type_t;

#define ACK_MAX 16 /* ids in one ACK, at most */

typedef struct pending_cmd {
    pc_type_t type;
    unsigned n;
    uint64_t ids[ACK_MAX];
    uint64_t tags[ACK_MAX];
} pending_cmd_t;

#define PENDING_MAX 4096

typedef struct consumer {
    unsigned index;
    bool dlq;                       /* the dead-letter topic's consumer */
    uint64_t rng;
    pthread_t thread;
    sk_t c;
    pending_cmd_t *pending;         /* ring of PENDING_MAX */
    size_t p_head, p_count;
    pending_cmd_t batch;            /* ACKs gathered, not sent yet */
    unsigned batch_want;
    char out[64 * 1024];
    size_t out_len;
} consumer_t;

static pending_cmd_t *consumer_push(consumer_t *k, pc_type_t type)
{
    pending_cmd_t *pc = &k->pending[(k->p_head + k->p_count) % PENDING_MAX];

    k->p_count++;
    pc->type = type;
    pc->n = 0;
    return pc;
}

static bool consumer_flush_out(consumer_t *k)
{
    bool ok = k->out_len == 0 || sk_send(&k->c, k->out, k->out_len);

    k->out_len = 0;
    return ok;
}

static bool consumer_cmd(consumer_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool consumer_cmd(consumer_t *k, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (k->out_len > sizeof k->out - 1024 && !consumer_flush_out(k))
        return false;
    va_start(ap, fmt);
    n = vsnprintf(k->out + k->out_len, sizeof k->out - k->out_len, fmt, ap);
    va_end(ap);
    k->out_len += (size_t)n;
    return true;
}

/* Send one ACK for ids[0..n) (n <= ACK_MAX). */
static bool consumer_send_ack(consumer_t *k, const uint64_t *ids, const uint64_t *tags,
                              unsigned n)
{
    pending_cmd_t *pc;
    char line[ACK_MAX * 24 + 8];
    size_t len = 3;

    if (n == 0)
        return true;
    if (k->p_count >= PENDING_MAX)
        return false;
    memcpy(line, "ACK", 3);
    pc = consumer_push(k, PC_ACK);
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)sprintf(line + len, " %" PRIu64, ids[i]);
        pc->ids[i] = ids[i];
        pc->tags[i] = tags[i];
    }
    pc->n = n;
    return consumer_cmd(k, "%.*s\r\n", (int)len, line);
}

/* Send the gathered ACK ids as one command. */
static bool consumer_send_acks(consumer_t *k)
{
    bool ok = consumer_send_ack(k, k->batch.ids, k->batch.tags, k->batch.n);

    k->batch.n = 0;
    k->batch_want = 1 + soak_below(&k->rng, ACK_MAX);
    return ok;
}

/* Gather an id for the next ACK. A message whose deadline passed may come
 * back to us with the same id before we acked it: an id is gathered once
 * (a list naming it twice would ack it once and answer one less). */
static bool consumer_gather(consumer_t *k, uint64_t id, uint64_t tag)
{
    for (unsigned i = 0; i < k->batch.n; i++)
        if (k->batch.ids[i] == id)
            return true;
    k->batch.ids[k->batch.n] = id;
    k->batch.tags[k->batch.n++] = tag;
    if (k->batch.n >= k->batch_want)
        return consumer_send_acks(k);
    return true;
}

static void consumer_acked(consumer_t *k, uint64_t tag)
{
    soak_tag_t *t = soak_tag(tag);

    if (k->dlq)
        atomic_fetch_add(&t->dlq_acks, 1);
    else
        atomic_fetch_add(&t->acks, 1);
    atomic_fetch_add(&n_ack_ok, 1);
}

/* The reply to the oldest pending command. */
static bool consumer_on_reply(consumer_t *k)
{
    proto_reply_t *r = &k->c.r;
    pending_cmd_t *pc;

    if (k->p_count == 0) {
        soak_violation(&v_protocol, "consumer %u: a reply nobody asked for", k->index);
        return false;
    }
    pc = &k->pending[k->p_head];
    k->p_head = (k->p_head + 1) % PENDING_MAX;
    k->p_count--;
    if (r->type == REPLY_OK) {
        if (pc->type == PC_ACK) {
            char want[16];
            snprintf(want, sizeof want, "%u", pc->n);
            if (r->text_len != strlen(want) || memcmp(r->text, want, r->text_len) != 0) {
                soak_violation(&v_protocol, "consumer %u: ACK of %u ids answered +OK %.*s",
                               k->index, pc->n, (int)r->text_len, r->text);
                return false;
            }
            for (unsigned i = 0; i < pc->n; i++)
                consumer_acked(k, pc->tags[i]);
        }
        return true;
    }
    if (r->type != REPLY_ERROR || r->code_len != 8 || memcmp(r->code, "NOTFOUND", 8) != 0 ||
        pc->type == PC_SUB) {
        soak_violation(&v_protocol, "consumer %u: unexpected reply -%.*s %.*s", k->index,
                       (int)r->code_len, r->code, (int)r->text_len, r->text);
        return false;
    }
    /* The deadline passed first: the message went back to its topic. An
     * ACK is all-or-nothing, so the other ids are sent again. */
    uint64_t gone = strtoull(r->text, NULL, 10), ids[ACK_MAX], tags[ACK_MAX];
    unsigned n = 0;

    atomic_fetch_add(&n_ack_notfound, 1);
    if (pc->type != PC_ACK)
        return true;
    for (unsigned i = 0; i < pc->n; i++) {
        if (pc->ids[i] == gone)
            continue;
        ids[n] = pc->ids[i];
        tags[n++] = pc->tags[i];
    }
    return consumer_send_ack(k, ids, tags, n);
}

/* Check a delivery against the record. Returns its tag, or UINT64_MAX
 * when it is not one we sent (a violation is counted). */
static uint64_t consumer_check(consumer_t *k)
{
    proto_reply_t *r = &k->c.r;
    uint64_t tag = soak_payload_tag(r->body, r->body_len);
    soak_tag_t *t = tag == UINT64_MAX ? NULL : soak_tag(tag);
    unsigned topic;

    if (t == NULL) {
        soak_violation(&v_invented, "consumer %u: a message with no known tag (%zu bytes)",
                       k->index, r->body_len);
        return UINT64_MAX;
    }
    if (t->len != r->body_len || !soak_payload_intact(r->body, r->body_len, tag))
        soak_violation(&v_corrupt, "tag %" PRIu64 ": corrupt payload (%zu bytes, sent %" PRIu32
                       ")", tag, r->body_len, t->len);
    topic = k->dlq ? SOAK_DLQ : t->topic;
    if (r->topic_len != strlen(soak_topics[topic]) ||
        memcmp(r->topic, soak_topics[topic], r->topic_len) != 0)
        soak_violation(&v_misrouted, "tag %" PRIu64 " of %s delivered on %.*s", tag,
                       soak_topics[t->topic], (int)r->topic_len, r->topic);
    if (!k->dlq && r->attempt > SOAK_MAX_DELIVERIES)
        soak_violation(&v_attempt, "tag %" PRIu64 ": attempt %u > max_deliveries", tag,
                       r->attempt);
    return tag;
}

/* Check and count a push. Returns its tag, or UINT64_MAX if it is not
 * ours (counted as a violation). */
static uint64_t consumer_record(consumer_t *k)
{
    uint64_t tag = consumer_check(k);

    if (tag == UINT64_MAX)
        return tag;
    atomic_fetch_add(&n_delivered, 1);
    if (k->c.r.attempt > 1)
        atomic_fetch_add(&n_redelivered, 1);
    if (k->dlq) {
        atomic_fetch_add(&soak_tag(tag)->dlq, 1);
        atomic_fetch_add(&n_dlq_delivered, 1);
    } else {
        atomic_fetch_add(&soak_tag(tag)->deliveries, 1);
    }
    return tag;
}

/* A push: record it, then ACK, NACK, TOUCH or ignore it. */
static bool consumer_on_msg(consumer_t *k)
{
    uint64_t tag = consumer_record(k), id = k->c.r.id;
    bool calm = atomic_load(&soak_calm) || k->dlq;
    unsigned what = calm ? 0 : soak_below(&k->rng, 100);

    if (tag == UINT64_MAX)
        return true;
    if (k->p_count + 2 >= PENDING_MAX)
        what = 0;
    if (what >= 90) {
        atomic_fetch_add(&n_ignored, 1); /* left to its ack deadline */
        return true;
    }
    if (what >= 83) {
        pending_cmd_t *pc = consumer_push(k, PC_NACK);
        pc->ids[0] = id;
        pc->tags[0] = tag;
        pc->n = 1;
        atomic_fetch_add(&n_nack, 1);
        return soak_below(&k->rng, 2) ? consumer_cmd(k, "NACK %" PRIu64 "\r\n", id)
                                      : consumer_cmd(k, "NACK %" PRIu64 " %u\r\n", id,
                                                     soak_below(&k->rng, 150));
    }
    if (what >= 80) {
        pending_cmd_t *pc = consumer_push(k, PC_TOUCH);
        pc->ids[0] = id;
        pc->n = 1;
        atomic_fetch_add(&n_touch, 1);
        if (!consumer_cmd(k, "TOUCH %" PRIu64 "\r\n", id))
            return false;
    }
    return consumer_gather(k, id, tag);
}

/* Wait for the replies to everything sent (ACKs first, when `ack`), so
 * the fate of every ACK is known before the socket goes. Pushes that come
 * meanwhile are recorded and left unacked: they go back on close. */
static bool consumer_settle(consumer_t *k, bool ack)
{
    uint64_t until = sd_now_ms() + 60000;

    if (ack && !consumer_send_acks(k))
        return false;
    if (!consumer_flush_out(k))
        return false;
    while (k->p_count > 0) {
        int rr = sk_reply(&k->c, 1000);
        if (rr < 0 || sd_now_ms() > until) {
            soak_violation(&v_protocol, "consumer %u: %s while %zu replies were due", k->index,
                           rr < 0 ? "connection lost" : "a minute passed", k->p_count);
            return false;
        }
        if (rr == 0)
            continue;
        if (k->c.r.type == REPLY_MSG) {
            consumer_record(k);
            continue;
        }
        if (!consumer_on_reply(k))
            return false;
    }
    return true;
}

/* Which source topics a session takes: all of them when calm. */
static void consumer_subscribe(consumer_t *k)
{
    if (k->dlq) {
        consumer_push(k, PC_SUB);
        consumer_cmd(k, "SUB %s 64\r\n", soak_topics[SOAK_DLQ]);
        return;
    }
    bool calm = atomic_load(&soak_calm);
    /* Each topic always has a consumer: a parked producer waits for one. */
    unsigned mask = calm ? 0xf : (1u << (k->index % SOAK_NSOURCES)) | soak_below(&k->rng, 16);
    for (unsigned t = 0; t < SOAK_NSOURCES; t++) {
        if (!(mask & (1u << t)))
            continue;
        consumer_push(k, PC_SUB);
        consumer_cmd(k, "SUB %s %u\r\n", soak_topics[t], 1 + soak_below(&k->rng, 64));
    }
}

/* One connection's life. Returns false when the consumer should stop. */
static bool consumer_session(consumer_t *k)
{
    bool calm_start = atomic_load(&soak_calm);
    /* After how many pushes, or how long, this session walks away. */
    unsigned leave_after = 20 + soak_below(&k->rng, 2000);
    uint64_t leave_at = sd_now_ms() + 200 + soak_below(&k->rng, 3000);
    unsigned taken = 0;

    if (!sk_open(&k->c)) {
        soak_violation(&v_protocol, "consumer %u: cannot connect: %s", k->index,
                       strerror(errno));
        sd_sleep_ms(100);
        return true;
    }
    atomic_fetch_add(&n_cons_sessions, 1);
    k->p_count = 0;
    k->batch.n = 0;
    k->batch_want = 1 + soak_below(&k->rng, ACK_MAX);
    consumer_subscribe(k);
    for (;;) {
        bool calm = atomic_load(&soak_calm) || k->dlq;
        if (atomic_load(&soak_stop_consumers) || (calm && !calm_start && !k->dlq))
            break;
        if (!calm && (taken >= leave_after || sd_now_ms() >= leave_at)) {
            /* Walk away with messages in flight (the ACKs gathered are
             * never sent) and pushes on the wire. */
            if (!consumer_settle(k, false))
                break;
            atomic_fetch_add(&n_cut_mid_delivery, 1);
            sk_close(&k->c, soak_below(&k->rng, 2) == 0);
            return true;
        }
        if (!consumer_flush_out(k))
            break;
        int rr = sk_reply(&k->c, 50);
        if (rr < 0) {
            soak_violation(&v_protocol, "consumer %u: connection lost", k->index);
            break;
        }
        if (rr == 0) {
            /* Quiet: do not sit on gathered ACKs. */
            if (!consumer_send_acks(k))
                break;
            continue;
        }
        if (k->c.r.type == REPLY_MSG) {
            taken++;
            if (!consumer_on_msg(k))
                break;
        } else if (!consumer_on_reply(k)) {
            break;
        }
    }
    /* A clean end: every ACK answered before the socket goes. */
    consumer_settle(k, true);
    sk_close(&k->c, false);
    return !atomic_load(&soak_stop_consumers);
}

static void *consumer_run(void *arg)
{
    consumer_t *k = arg;

    while (consumer_session(k))
        ;
    return NULL;
}

/* ---- watching the daemon ---- */



static atomic_bool soak_sampling;
static atomic_uint_fast64_t soak_rss_max, soak_rss_samples, soak_fd_max;

static void *sampler_run(void *arg)
{
    (void)arg;
    while (atomic_load(&soak_sampling)) {
        uint64_t kib = sd_rss_kib(soak_d.pid);
        int fds = sd_fd_count(soak_d.pid);
        if (kib > atomic_load(&soak_rss_max))
            atomic_store(&soak_rss_max, kib);
        if (fds > 0 && (uint64_t)fds > atomic_load(&soak_fd_max))
            atomic_store(&soak_fd_max, (uint64_t)fds);
        atomic_fetch_add(&soak_rss_samples, 1);
        sd_sleep_ms(100);
    }
    return NULL;
}

/* ---- STATS through a control connection ---- */

static const char *soak_yaml(const proto_reply_t *r, const char *key, char *out, size_t cap)
{
    const char *p = r->body, *end = r->body + r->body_len;
    size_t klen = strlen(key);

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if ((size_t)(nl - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == ':') {
            const char *v = p + klen + 1;
            while (v < nl && *v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(nl - v), v);
            return out;
        }
        p = nl + 1;
    }
    return NULL;
}

/* A numeric STATS field (topic NULL: the server's); UINT64_MAX on error. */
static uint64_t soak_stat(sk_t *ctl, const char *topic, const char *key)
{
    char line[300], val[64];
    int n = topic ? snprintf(line, sizeof line, "STATS %s\r\n", topic)
                  : snprintf(line, sizeof line, "STATS\r\n");

    if (!sk_send(ctl, line, (size_t)n) || sk_reply(ctl, 10000) != 1 ||
        ctl->r.type != REPLY_STATS || soak_yaml(&ctl->r, key, val, sizeof val) == NULL)
        return UINT64_MAX;
    return strtoull(val, NULL, 10);
}

typedef struct topic_totals {
    uint64_t published, acked, dropped, dead, rejected, redelivered, delivered;
} topic_totals_t;

static bool soak_topic_totals(sk_t *ctl, unsigned t, topic_totals_t *o)
{
    const char *name = soak_topics[t];

    o->published = soak_stat(ctl, name, "published");
    o->acked = soak_stat(ctl, name, "acked");
    o->dropped = soak_stat(ctl, name, "dropped");
    o->dead = soak_stat(ctl, name, "dead");
    o->rejected = soak_stat(ctl, name, "rejected");
    o->redelivered = soak_stat(ctl, name, "redelivered");
    o->delivered = soak_stat(ctl, name, "delivered");
    return o->published != UINT64_MAX && o->acked != UINT64_MAX && o->dropped != UINT64_MAX &&
           o->dead != UINT64_MAX && o->rejected != UINT64_MAX;
}

/* ---- the reconciliation ---- */

typedef struct tally {
    uint64_t ok, unknown;              /* sent whole: +OK, or fate unknown */
    uint64_t acked, dlq;               /* tags acked in their topic / in the dead-letter topic */
    uint64_t missing_ok, missing_unknown; /* neither: dropped or dead */
    uint64_t duplicates;               /* deliveries past the first */
} tally_t;

static int soak_failures;

static void soak_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void soak_fail(const char *fmt, ...)
{
    va_list ap;

    soak_failures++;
    fputs("soak: FAILED: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void soak_tally(tally_t tl[SOAK_NSOURCES])
{
    uint64_t ntags = atomic_load(&soak_next_tag);
    uint64_t bad_refused = 0, twice = 0, pending = 0;

    memset(tl, 0, sizeof(tally_t) * SOAK_NSOURCES);
    for (uint64_t tag = 0; tag < ntags; tag++) {
        soak_tag_t *t = soak_tag(tag);
        unsigned st = atomic_load(&t->state);
        unsigned acks = atomic_load(&t->acks), dlq_acks = atomic_load(&t->dlq_acks);
        unsigned deliveries = atomic_load(&t->deliveries) + atomic_load(&t->dlq);
        tally_t *x = &tl[t->topic];

        if (deliveries > 1)
            x->duplicates += deliveries - 1;
        if (st == TAG_REFUSED || st == TAG_ABORTED) {
            if (deliveries > 0 && bad_refused++ < 5)
                fprintf(stderr, "soak: tag %" PRIu64 " was %s yet delivered %u times\n", tag,
                        st == TAG_REFUSED ? "refused" : "cut mid-payload", deliveries);
            continue;
        }
        if (st == TAG_PENDING) {
            pending++;
            continue;
        }
        if (acks > 1 || dlq_acks > 1 || (acks && dlq_acks)) {
            if (twice++ < 5)
                fprintf(stderr, "soak: tag %" PRIu64 " acked %u times, %u in the dead letters\n",
                        tag, acks, dlq_acks);
        }
        if (st == TAG_OK)
            x->ok++;
        else
            x->unknown++;
        x->acked += acks > 0;
        x->dlq += dlq_acks > 0;
        if (acks == 0 && dlq_acks == 0) {
            if (st == TAG_OK)
                x->missing_ok++;
            else
                x->missing_unknown++;
        }
    }
    if (bad_refused)
        soak_fail("%" PRIu64 " refused or cut-off messages were delivered", bad_refused);
    if (twice)
        soak_fail("%" PRIu64 " messages were acked more than once", twice);
    if (pending)
        soak_fail("%" PRIu64 " messages never got their PUB settled (driver bug)", pending);
}

static void soak_reconcile(sk_t *ctl)
{
    tally_t tl[SOAK_NSOURCES];
    topic_totals_t tt[SOAK_NTOPICS];
    uint64_t dlq_in = 0, dlq_acked = 0;

    soak_tally(tl);
    for (unsigned t = 0; t < SOAK_NTOPICS; t++)
        if (!soak_topic_totals(ctl, t, &tt[t])) {
            soak_fail("STATS %s did not answer", soak_topics[t]);
            return;
        }
    for (unsigned t = 0; t < SOAK_NSOURCES; t++) {
        tally_t *x = &tl[t];
        topic_totals_t *s = &tt[t];
        uint64_t gone = s->dropped + s->dead;

        if (!soak_opts.quiet)
            printf("  %-12s published %" PRIu64 " (+OK %" PRIu64 ", unknown fate %" PRIu64
                   "), acked %" PRIu64 ", dead-lettered %" PRIu64 ", dropped %" PRIu64
                   ", dead %" PRIu64 ", rejected %" PRIu64 ", redelivered %" PRIu64 "\n",
                   soak_topics[t], s->published, x->ok, x->unknown, s->acked, x->dlq,
                   s->dropped, s->dead, s->rejected, s->redelivered);
        /* Every ACK we saw succeed is one the broker counted, and no other. */
        if (x->acked != s->acked)
            soak_fail("%s: %" PRIu64 " acks succeeded, the broker counted %" PRIu64,
                      soak_topics[t], x->acked, s->acked);
        /* Conservation: all that came in went out one way. */
        if (s->published != s->acked + s->dropped + s->dead + x->dlq)
            soak_fail("%s: published %" PRIu64 " != acked %" PRIu64 " + dropped %" PRIu64
                      " + dead %" PRIu64 " + dead-lettered %" PRIu64,
                      soak_topics[t], s->published, s->acked, s->dropped, s->dead, x->dlq);
        if (s->published < x->ok || s->published > x->ok + x->unknown)
            soak_fail("%s: published %" PRIu64 " outside [+OK %" PRIu64 ", +OK + unknown %" PRIu64
                      "]", soak_topics[t], s->published, x->ok, x->ok + x->unknown);
        /* Every +OK'd message that was neither acked nor dead-lettered is
         * one the counters account for as dropped or dead. */
        if (x->missing_ok > gone || gone > x->missing_ok + x->missing_unknown)
            soak_fail("%s: %" PRIu64 " +OK'd messages unaccounted for, dropped + dead = %" PRIu64,
                      soak_topics[t], x->missing_ok, gone);
        if (t != 3 && s->dropped != 0)
            soak_fail("%s: %" PRIu64 " dropped without drop-oldest", soak_topics[t], s->dropped);
        dlq_in += x->dlq;
    }
    dlq_acked = tt[SOAK_DLQ].acked;
    if (tt[SOAK_DLQ].published != dlq_in || dlq_acked != dlq_in || tt[SOAK_DLQ].dropped ||
        tt[SOAK_DLQ].dead)
        soak_fail("%s: published %" PRIu64 ", acked %" PRIu64 ", %" PRIu64 " dead-lettered tags"
                  " seen, dropped %" PRIu64 ", dead %" PRIu64, soak_topics[SOAK_DLQ],
                  tt[SOAK_DLQ].published, dlq_acked, dlq_in, tt[SOAK_DLQ].dropped,
                  tt[SOAK_DLQ].dead);
}

/* ---- the run ---- */

/* Payload bytes are bounded by max_memory; each message costs a record on
 * top; each connection may hold its input buffer (a line and a whole
 * payload) and its output up to the limit plus one push. Twice that, for
 * the allocator's own keeping, over the start-up baseline. */
static uint64_t soak_rss_bound_kib(uint64_t base_kib, unsigned conns)
{
    uint64_t msgs = 0, bytes;

    for (unsigned t = 0; t < SOAK_NTOPICS; t++)
        msgs += soak_topic_max_messages[t];
    bytes = SOAK_MAX_MEMORY + msgs * 256 +
            (uint64_t)conns * (SOAK_MAX_LINE + SOAK_MAX_MESSAGE + 8192 + SOAK_OUTPUT_BUFFER +
                               SOAK_MAX_MESSAGE + 4096);
#ifdef __SANITIZE_ADDRESS__
    /* Redzones, shadow memory and a small quarantine. */
    bytes = bytes * 2 + 32 * 1024 * 1024;
#endif
    return base_kib + 2 * bytes / 1024 + 8 * 1024;
}

/* Wait until the broker holds nothing; false after two minutes. */
static bool soak_drain(sk_t *ctl)
{
    uint64_t until = sd_now_ms() + 120000, left = UINT64_MAX;

    while (sd_now_ms() < until) {
        left = soak_stat(ctl, NULL, "messages");
        if (left == 0)
            return true;
        sd_sleep_ms(100);
    }
    soak_fail("the broker still holds %" PRIu64 " messages after two minutes of draining", left);
    return false;
}

static void soak_usage(void)
{
    fputs("usage: soak [-d SECONDS] [-c CLIENTS] [-s SEED] [-q] [-V]\n"
          "  -d SECONDS  how long producers run (default 20)\n"
          "  -c CLIENTS  producers + consumers, at least 2 (default 16)\n"
          "  -s SEED     random seed (default 1)\n"
          "  -q          only the verdict\n"
          "  -V          the daemon runs under valgrind's memcheck: any invalid\n"
          "              access or leak fails the soak (RSS is then not bounded)\n"
          "The daemon is $SLUICED (default ../src/sluiced).\n",
          stderr);
}

static int soak_parse(int argc, char **argv)
{
    int o;

    while ((o = getopt(argc, argv, "d:c:s:qVh")) != -1) {
        char *end = NULL;
        unsigned long long v = 0;
        if (optarg) {
            errno = 0;
            v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end != '\0') {
                soak_usage();
                return -1;
            }
        }
        switch (o) {
        case 'd': soak_opts.duration_s = (unsigned)v; break;
        case 'c': soak_opts.clients = (unsigned)v; break;
        case 's': soak_opts.seed = v; break;
        case 'q': soak_opts.quiet = true; break;
        case 'V': soak_opts.valgrind = true; break;
        default: soak_usage(); return -1;
        }
    }
    if (optind != argc || soak_opts.clients < 2 || soak_opts.clients > 500) {
        soak_usage();
        return -1;
    }
    return 0;
}

#define SOAK_VALGRIND                                                                        \
    "valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect " \
    "--errors-for-leak-kinds=definite,indirect"

/* The daemon under ASan: keep its quarantine small, or RSS would count
 * 256 MiB of freed memory as held. Under valgrind (-V), its exit status
 * carries memcheck's verdict. */
static int soak_start_daemon(void)
{
    static char asan[1024];
    const char *cur = getenv("ASAN_OPTIONS");
    char *env[] = {asan, NULL};

    snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%squarantine_size_mb=4", cur ? cur : "",
             cur && *cur ? ":" : "");
    if (soak_opts.valgrind)
        return sd_start_wrapped(&soak_d, SOAK_VALGRIND, soak_config, env, NULL);
    return sd_start_ex(&soak_d, soak_config, env, NULL);
}

int main(int argc, char **argv)
{
    unsigned np, nc;
    producer_t *prods;
    consumer_t *cons;
    pthread_t sampler;
    sk_t ctl;
    int base_fds, end_fds = -1;
    uint64_t base_kib, bound_kib, start, stall, max_parked = 0;

    if (soak_parse(argc, argv) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    np = soak_opts.clients / 2;
    nc = soak_opts.clients - np;
    if (soak_start_daemon() != 0) {
        fprintf(stderr, "soak: cannot start %s\n", sd_bin("SLUICED", "../src/sluiced"));
        return 1;
    }
    if (!sk_open(&ctl)) {
        fprintf(stderr, "soak: cannot connect to the daemon\n");
        sd_stop(&soak_d);
        return 1;
    }
    /* Counted once the daemon has surely accepted the control connection. */
    if (soak_stat(&ctl, NULL, "connections") != 1) {
        fprintf(stderr, "soak: the daemon does not answer STATS\n");
        sd_stop(&soak_d);
        return 1;
    }
    base_fds = sd_fd_count(soak_d.pid);
    base_kib = sd_rss_kib(soak_d.pid);
    bound_kib = soak_rss_bound_kib(base_kib, soak_opts.clients + 2);
    atomic_store(&soak_sampling, true);
    pthread_create(&sampler, NULL, sampler_run, NULL);

    prods = calloc(np, sizeof *prods);
    cons = calloc(nc + 1, sizeof *cons);
    if (prods == NULL || cons == NULL)
        return 1;
    start = sd_now_ms();
    for (unsigned i = 0; i <= nc; i++) {
        cons[i].index = i;
        cons[i].dlq = i == nc;
        cons[i].rng = soak_opts.seed * 0x9e3779b97f4a7c15ull + 1000 + i;
        cons[i].pending = calloc(PENDING_MAX, sizeof *cons[i].pending);
        pthread_create(&cons[i].thread, NULL, consumer_run, &cons[i]);
    }
    for (unsigned i = 0; i < np; i++) {
        prods[i].index = i;
        prods[i].rng = soak_opts.seed * 0x9e3779b97f4a7c15ull + 1 + i;
        pthread_create(&prods[i].thread, NULL, producer_run, &prods[i]);
    }
    while (sd_now_ms() - start < (uint64_t)soak_opts.duration_s * 1000) {
        uint64_t parked;
        sd_sleep_ms(1000);
        /* Proof that block really parks producers now and then. */
        parked = soak_stat(&ctl, NULL, "blocked_producers");
        if (parked != UINT64_MAX && parked > max_parked)
            max_parked = parked;
        if (!soak_opts.quiet && (sd_now_ms() - start) / 1000 % 10 == 0)
            printf("soak: %3" PRIu64 " s: +OK %" PRIu64 ", -FULL %" PRIu64 ", delivered %" PRIu64
                   ", acked %" PRIu64 ", RSS max %" PRIu64 " KiB\n",
                   (sd_now_ms() - start) / 1000, (uint64_t)atomic_load(&n_ok),
                   (uint64_t)atomic_load(&n_full), (uint64_t)atomic_load(&n_delivered),
                   (uint64_t)atomic_load(&n_ack_ok), (uint64_t)atomic_load(&soak_rss_max));
    }

    /* Wind down: producers finish their batches, consumers turn calm and
     * take everything, and the broker must empty. */
    atomic_store(&soak_stop_producers, true);
    for (unsigned i = 0; i < np; i++)
        pthread_join(prods[i].thread, NULL);
    atomic_store(&soak_calm, true);
    soak_drain(&ctl);
    atomic_store(&soak_stop_consumers, true);
    for (unsigned i = 0; i <= nc; i++)
        pthread_join(cons[i].thread, NULL);
    atomic_store(&soak_sampling, false);
    pthread_join(sampler, NULL);

    soak_reconcile(&ctl);
    stall = soak_stat(&ctl, NULL, "max_loop_stall_ms");
    for (uint64_t until = sd_now_ms() + 10000; sd_now_ms() < until; sd_sleep_ms(20))
        if ((end_fds = sd_fd_count(soak_d.pid)) == base_fds)
            break;
    if (end_fds != base_fds)
        soak_fail("the daemon holds %d descriptors, %d at the start", end_fds, base_fds);
    if (!soak_opts.valgrind && atomic_load(&soak_rss_max) > bound_kib)
        soak_fail("RSS reached %" PRIu64 " KiB, over the bound of %" PRIu64 " KiB",
                  (uint64_t)atomic_load(&soak_rss_max), bound_kib);
    if (atomic_load(&v_invented) || atomic_load(&v_corrupt) || atomic_load(&v_misrouted) ||
        atomic_load(&v_attempt) || atomic_load(&v_protocol))
        soak_fail("violations: invented %" PRIu64 ", corrupt %" PRIu64 ", misrouted %" PRIu64
                  ", attempt past max %" PRIu64 ", protocol %" PRIu64,
                  (uint64_t)atomic_load(&v_invented), (uint64_t)atomic_load(&v_corrupt),
                  (uint64_t)atomic_load(&v_misrouted), (uint64_t)atomic_load(&v_attempt),
                  (uint64_t)atomic_load(&v_protocol));
    sk_close(&ctl, false);
    int rc = sd_stop(&soak_d);
    if (rc != 0)
        soak_fail("the daemon exited with status %d%s", rc,
                  rc == 99 ? " (memcheck found errors: see its report above)" : "");

    printf("soak: %u s, %u clients (%u producers, %u consumers + 1 on the dead letters), "
           "seed %" PRIu64 "\n"
           "  sent: +OK %" PRIu64 ", -FULL %" PRIu64 ", -TOOBIG %" PRIu64
           ", cut mid-payload %" PRIu64 ", fate unknown %" PRIu64 " (producer left unread),"
           " delayed %" PRIu64 "\n"
           "  consumed: deliveries %" PRIu64 " (redeliveries %" PRIu64 ", from dead letters %"
           PRIu64 "), acks %" PRIu64 " (+%" PRIu64 " too late: -NOTFOUND), NACKs %" PRIu64
           ", TOUCHes %" PRIu64 ", left to the deadline %" PRIu64 "\n"
           "  sessions: producers %" PRIu64 ", consumers %" PRIu64 " (%" PRIu64
           " walked away mid-delivery); parked producers seen at once: up to %" PRIu64 "\n"
           "  daemon: RSS %" PRIu64 " KiB at start, max %" PRIu64 " KiB over %" PRIu64
           " samples (bound %" PRIu64 " KiB); fds %d at start, max %" PRIu64 ", %d at end;"
           " max_loop_stall_ms %" PRIu64 "\n"
           "soak: %s\n",
           soak_opts.duration_s, soak_opts.clients, np, nc, soak_opts.seed,
           (uint64_t)atomic_load(&n_ok), (uint64_t)atomic_load(&n_full),
           (uint64_t)atomic_load(&n_toobig), (uint64_t)atomic_load(&n_aborted),
           (uint64_t)atomic_load(&n_unknown), (uint64_t)atomic_load(&n_delayed_pubs),
           (uint64_t)atomic_load(&n_delivered), (uint64_t)atomic_load(&n_redelivered),
           (uint64_t)atomic_load(&n_dlq_delivered), (uint64_t)atomic_load(&n_ack_ok),
           (uint64_t)atomic_load(&n_ack_notfound), (uint64_t)atomic_load(&n_nack),
           (uint64_t)atomic_load(&n_touch), (uint64_t)atomic_load(&n_ignored),
           (uint64_t)atomic_load(&n_prod_sessions), (uint64_t)atomic_load(&n_cons_sessions),
           (uint64_t)atomic_load(&n_cut_mid_delivery), max_parked, base_kib,
           (uint64_t)atomic_load(&soak_rss_max), (uint64_t)atomic_load(&soak_rss_samples),
           bound_kib, base_fds, (uint64_t)atomic_load(&soak_fd_max), end_fds, stall,
           soak_failures ? "FAILED" : "every invariant held");
    for (unsigned i = 0; i <= nc; i++)
        free(cons[i].pending);
    free(cons);
    for (unsigned i = 0; i < np; i++)
        free(prods[i].frame);
    free(prods);
    for (size_t i = 0; i < TAG_CHUNKS; i++)
        free(atomic_load(&soak_chunks[i]));
    return soak_failures ? 1 : 0;
}
