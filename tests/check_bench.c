/* check_bench.c: `sluice bench`: its histogram, payload format and the
 * Redis reply reader (hiredis's parser feeding the bench) on their own; a
 * short run against the real daemon that must report no loss and no
 * duplicate; runs against a fake sluice server (a
 * thread here) that loses, duplicates or corrupts one message, which must
 * fail loudly; and runs against real Redis and beanstalkd servers started
 * by the test (a missing one fails: build.sh installs both); and the
 * crowd (--crowd-idle, --crowd-producers) against the real daemon.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_int.h"
#include "harness.h"
#include "proto.h"

static const char *sluice_bin(void)
{
    return sd_bin("SLUICE", "../src/sluice");
}

/* ---- histogram ---- */

START_TEST(test_hist_buckets_cover_values)
{
    size_t prev_idx = 0;

    /* plain checks in the loop: a Check assertion per value is slow */
    for (uint64_t v = 0; v < 200000; v++) {
        size_t i = bench_hist_index(v);
        bool ok = i < BENCH_HIST_BUCKETS && bench_hist_lower(i) <= v && bench_hist_upper(i) >= v &&
                  i >= prev_idx;  /* monotonic */
        if (!ok)
            ck_abort_msg("value %llu: bucket %zu [%llu, %llu]", (unsigned long long)v, i,
                         (unsigned long long)bench_hist_lower(i), (unsigned long long)bench_hist_upper(i));
        prev_idx = i;
    }
    for (int s = 0; s < 64; s++) {
        uint64_t v = (uint64_t)1 << s;
        size_t i = bench_hist_index(v);
        ck_assert_uint_le(bench_hist_lower(i), v);
        ck_assert_uint_ge(bench_hist_upper(i), v);
        /* relative width stays under 1/32 */
        ck_assert_uint_le((bench_hist_upper(i) - bench_hist_lower(i)) * 32, bench_hist_lower(i) + 32);
    }
    size_t last = bench_hist_index(UINT64_MAX);
    ck_assert_uint_eq(last, BENCH_HIST_BUCKETS - 1);
    ck_assert_uint_eq(bench_hist_upper(last), UINT64_MAX);
}
END_TEST

START_TEST(test_hist_quantiles)
{
    bench_hist_t *h = malloc(sizeof *h), *h2 = malloc(sizeof *h2);

    bench_hist_init(h);
    ck_assert_uint_eq(bench_hist_quantile(h, 0.5), 0);
    for (uint64_t v = 1; v <= 100000; v++)
        bench_hist_record(h, v * 1000);   /* 1 us .. 100 ms */
    ck_assert_uint_eq(h->count, 100000);
    ck_assert_uint_eq(h->min, 1000);
    ck_assert_uint_eq(h->max, 100000000);
    uint64_t p50 = bench_hist_quantile(h, 0.5), p99 = bench_hist_quantile(h, 0.99);
    ck_assert_uint_ge(p50, 50000000);
    ck_assert_uint_le(p50, 50000000 + 50000000 / 32);
    ck_assert_uint_ge(p99, 99000000);
    ck_assert_uint_le(p99, 99000000 + 99000000 / 32);
    ck_assert_uint_eq(bench_hist_quantile(h, 1.0), 100000000);

    /* merging two halves gives the same as recording everything in one */
    bench_hist_init(h2);
    bench_hist_t *a = malloc(sizeof *a);
    bench_hist_init(a);
    for (uint64_t v = 1; v <= 100000; v++)
        bench_hist_record(v % 2 ? a : h2, v * 1000);
    bench_hist_merge(h2, a);
    ck_assert_uint_eq(h2->count, h->count);
    ck_assert_uint_eq(h2->min, h->min);
    ck_assert_uint_eq(h2->max, h->max);
    ck_assert(memcmp(h2->b, h->b, sizeof h->b) == 0);
    free(a);
    free(h);
    free(h2);
}
END_TEST

/* ---- payload ---- */

START_TEST(test_payload_roundtrip_and_corruption)
{
    static const size_t sizes[] = { BENCH_HDR_SIZE, 25, 64, 100, 1024 };

    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t size = sizes[k];
        char *buf = malloc(size);
        bench_stamp_t in = { .run = 0xabcdef01, .producer = 3, .seq = 123456, .ts_ns = 987654321012345ull };
        bench_stamp_t out;

        uint64_t pad = bench_pad_init(buf, size, 42);
        bench_payload_stamp(buf, pad, &in);
        ck_assert(bench_payload_check(buf, size, size, &out));
        ck_assert_uint_eq(out.run, in.run);
        ck_assert_uint_eq(out.producer, in.producer);
        ck_assert_uint_eq(out.seq, in.seq);
        ck_assert_uint_eq(out.ts_ns, in.ts_ns);
        /* any flipped bit anywhere is caught */
        for (size_t i = 0; i < size; i++) {
            for (int bit = 0; bit < 8; bit++) {
                buf[i] ^= (char)(1 << bit);
                if (bench_payload_check(buf, size, size, &out))
                    ck_abort_msg("size %zu byte %zu bit %d not detected", size, i, bit);
                buf[i] ^= (char)(1 << bit);
            }
        }
        /* two different words swapped (within a lane or across lanes) are caught */
        for (size_t i = BENCH_HDR_SIZE; i + 16 <= size; i += 8) {
            for (size_t j = i + 8; j + 8 <= size && j <= i + 40; j += 8) {
                char a[8], b[8];
                memcpy(a, buf + i, 8);
                memcpy(b, buf + j, 8);
                if (memcmp(a, b, 8) == 0)
                    continue;
                memcpy(buf + i, b, 8);
                memcpy(buf + j, a, 8);
                if (bench_payload_check(buf, size, size, &out))
                    ck_abort_msg("size %zu words at %zu and %zu swapped, not detected", size, i, j);
                memcpy(buf + i, a, 8);
                memcpy(buf + j, b, 8);
            }
        }
        /* truncated or wrong-sized payloads are corrupt */
        ck_assert(!bench_payload_check(buf, size - 1, size, &out));
        ck_assert(!bench_payload_check(buf, size, size + 1, &out));
        free(buf);
    }
}
END_TEST

/* ---- Redis replies: hiredis's parser, the bench's sink ---- */

typedef struct walk_rec {
    char got[512];          /* "id;" per id, "=value;" per value, "-;" per deleted entry */
    size_t len;
    int fail_id;            /* make the id sink fail at this id (1-based), 0: never */
    int nid;
} walk_rec_t;

static int walk_id(void *arg, const char *id, size_t n)
{
    walk_rec_t *w = arg;
    if (++w->nid == w->fail_id)
        return -1;
    w->len += (size_t)snprintf(w->got + w->len, sizeof w->got - w->len, "%.*s;", (int)n, id);
    return 0;
}

static void walk_value(void *arg, const char *p, size_t n)
{
    walk_rec_t *w = arg;
    if (!p)
        w->len += (size_t)snprintf(w->got + w->len, sizeof w->got - w->len, "-;");
    else
        w->len += (size_t)snprintf(w->got + w->len, sizeof w->got - w->len, "=%.*s;", (int)n, p);
}

/* Feed s to a fresh reader (byte by byte when split): the reply's
 * REDIS_REPLY_* type, or -1 when the reader calls its shape bad. */
static int walk(const char *s, walk_rec_t *rec, bool split)
{
    brd_sink_t sink = { walk_id, walk_value, rec, false };
    brd_rd_t *rd = brd_rd_new(&sink);
    size_t n = strlen(s);

    ck_assert_ptr_nonnull(rd);
    if (split) {
        for (size_t i = 0; i + 1 < n; i++) {
            ck_assert_int_eq(brd_rd_feed(rd, s + i, 1), 0);
            ck_assert_msg(brd_rd_get(rd) == 0, "a reply before byte %zu of %zu", i + 1, n);
        }
        ck_assert_int_eq(brd_rd_feed(rd, s + n - 1, 1), 0);
    } else {
        ck_assert_int_eq(brd_rd_feed(rd, s, n), 0);
    }
    ck_assert_int_eq(brd_rd_get(rd), 1);
    ck_assert_int_eq(brd_rd_get(rd), 0);   /* exactly one reply */
    int type = rd->bad ? -1 : rd->type;
    brd_rd_free(rd);
    return type;
}

static const char xread_reply[] =
    "*1\r\n*2\r\n$5\r\nbench\r\n*3\r\n"
    "*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$5\r\nhello\r\n"
    "*2\r\n$3\r\n1-1\r\n*-1\r\n"                          /* deleted under us */
    "*2\r\n$3\r\n1-2\r\n*2\r\n$1\r\nd\r\n$4\r\na\r\nb\r\n";  /* binary-safe */

START_TEST(test_redis_reply_entries)
{
    walk_rec_t rec = { 0 };

    ck_assert_int_eq(walk(xread_reply, &rec, true), REDIS_REPLY_ARRAY);
    ck_assert_str_eq(rec.got, "1-0;=hello;1-1;-;1-2;=a\r\nb;");
    memset(&rec, 0, sizeof rec);
    ck_assert_int_eq(walk(xread_reply, &rec, false), REDIS_REPLY_ARRAY);
    ck_assert_str_eq(rec.got, "1-0;=hello;1-1;-;1-2;=a\r\nb;");

    /* BLOCK timed out: nil (or no stream), nothing to take */
    memset(&rec, 0, sizeof rec);
    ck_assert_int_eq(walk("*-1\r\n", &rec, false), REDIS_REPLY_NIL);
    ck_assert_int_eq(walk("*0\r\n", &rec, false), REDIS_REPLY_ARRAY);
    ck_assert_int_eq(walk("*1\r\n*2\r\n$1\r\ns\r\n*-1\r\n", &rec, false), REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(rec.len, 0);

    /* a failing id sink (out of memory) makes the reply bad */
    memset(&rec, 0, sizeof rec);
    rec.fail_id = 2;
    ck_assert_int_eq(walk(xread_reply, &rec, false), -1);
}
END_TEST

START_TEST(test_redis_reply_pipeline)
{
    walk_rec_t rec = { 0 };
    brd_sink_t sink = { walk_id, walk_value, &rec, false };
    brd_rd_t *rd = brd_rd_new(&sink);
    char buf[1024];

    /* XACK's answer, an error, then XREADGROUP's, read in one go */
    int n = snprintf(buf, sizeof buf, ":64\r\n-NOGROUP no such key\r\n%s+OK\r\n", xread_reply);
    ck_assert_int_eq(brd_rd_feed(rd, buf, (size_t)n), 0);
    ck_assert_int_eq(brd_rd_get(rd), 1);
    ck_assert_int_eq(rd->type, REDIS_REPLY_INTEGER);
    ck_assert_uint_eq(rec.len, 0);
    ck_assert_int_eq(brd_rd_get(rd), 1);
    ck_assert_int_eq(rd->type, REDIS_REPLY_ERROR);
    ck_assert_str_eq(rd->err, "-NOGROUP no such key");
    ck_assert_int_eq(brd_rd_get(rd), 1);
    ck_assert_int_eq(rd->type, REDIS_REPLY_ARRAY);
    ck_assert(!rd->bad);
    ck_assert_str_eq(rec.got, "1-0;=hello;1-1;-;1-2;=a\r\nb;");
    ck_assert_int_eq(brd_rd_get(rd), 1);
    ck_assert_int_eq(rd->type, REDIS_REPLY_STATUS);
    ck_assert_str_eq(rd->err, "");
    ck_assert_int_eq(brd_rd_get(rd), 0);
    brd_rd_free(rd);

    /* no sink (a producer): an XADD id, the entries of an array ignored */
    rd = brd_rd_new(NULL);
    ck_assert_int_eq(brd_rd_feed(rd, "$3\r\n1-0\r\n", 9), 0);
    ck_assert_int_eq(brd_rd_get(rd), 1);
    ck_assert_int_eq(rd->type, REDIS_REPLY_STRING);
    ck_assert_int_eq(brd_rd_feed(rd, xread_reply, strlen(xread_reply)), 0);
    ck_assert_int_eq(brd_rd_get(rd), 1);
    ck_assert_int_eq(rd->type, REDIS_REPLY_ARRAY);
    brd_rd_free(rd);
}
END_TEST

START_TEST(test_redis_reply_rejects)
{
    static const char *const bad[] = {
        "*1\r\n*1\r\n$5\r\nbench\r\n",                       /* stream is not [name, entries] */
        "*1\r\n$5\r\nbench\r\n",                             /* stream is not an array */
        "*1\r\n*2\r\n$1\r\ns\r\n:3\r\n",                     /* entries not an array */
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n:1\r\n*0\r\n",   /* id not a string */
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$-1\r\n*0\r\n",  /* id nil */
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*1\r\n$3\r\n1-0\r\n",  /* entry is not [id, fields] */
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n:7\r\n",                 /* fields */
        "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n:5\r\n", /* value */
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        walk_rec_t rec = { 0 };
        ck_assert_msg(walk(bad[i], &rec, false) == -1, "case %zu accepted", i);
    }
    /* not RESP at all: the reader says so, and stays failed */
    brd_rd_t *rd = brd_rd_new(NULL);
    ck_assert_int_eq(brd_rd_feed(rd, "?x\r\n", 4), 0);
    ck_assert_int_eq(brd_rd_get(rd), -1);
    ck_assert_int_eq(brd_rd_feed(rd, "+OK\r\n", 5), -1);
    brd_rd_free(rd);
}
END_TEST

/* ---- runs ---- */

/* Run `sluice bench <args>` with stderr folded in; its exit status. */
static int bench_run(char **out, const char *args)
{
    char cmd[1024];
    int status = -1;

    snprintf(cmd, sizeof cmd, "'%s' bench %s 2>&1", sluice_bin(), args);
    *out = run_capture(cmd, &status);
    ck_assert_ptr_nonnull(*out);
    return status;
}

START_TEST(test_bench_against_daemon)
{
    sd_t d;
    char args[256], *out;

    ck_assert_int_eq(sd_start(&d, NULL), 0);
    sd_guard_t g = sd_guard(d.pid);
    snprintf(args, sizeof args, "-s %s -n 3000 -p 2 -c 2 -S 100 -w 16 -C 32 -a 10 --json", d.addr);
    int rc = bench_run(&out, args);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "\"received\":3000,"));
    ck_assert_ptr_nonnull(strstr(out, "\"lost\":0,"));
    ck_assert_ptr_nonnull(strstr(out, "\"duplicates\":0,"));
    ck_assert_ptr_nonnull(strstr(out, "\"corrupt\":0,"));
    free(out);

    /* the text report, and the topic was left empty (everything acked) */
    snprintf(args, sizeof args, "-s %s -n 500 -t other", d.addr);
    rc = bench_run(&out, args);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "received 500, lost 0, duplicates 0, corrupt 0"));
    ck_assert_ptr_nonnull(strstr(out, "latency histogram"));
    free(out);
    tc_t *c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "STATS bench\r\n"), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    char *body = strndup(c->r.body, c->r.body_len);
    ck_assert_ptr_nonnull(strstr(body, "\nready: 0\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nin_flight: 0\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nacked: 3000\n"));
    free(body);
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
    sd_guard_release(&g);
}
END_TEST

START_TEST(test_bench_duration_mode)
{
    sd_t d;
    char args[256], *out;

    ck_assert_int_eq(sd_start(&d, NULL), 0);
    sd_guard_t g = sd_guard(d.pid);
    snprintf(args, sizeof args, "-s %s -d 0.3 -p 1 -c 2 --json", d.addr);
    int rc = bench_run(&out, args);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "\"lost\":0,"));
    ck_assert_ptr_null(strstr(out, "\"received\":0,"));
    free(out);
    ck_assert_int_eq(sd_stop(&d), 0);
    sd_guard_release(&g);
}
END_TEST

START_TEST(test_bench_cannot_connect)
{
    char *out;
    int rc = bench_run(&out, "-s unix:/nonexistent/sock -n 10");

    ck_assert_int_eq(rc, 1);
    ck_assert_ptr_nonnull(strstr(out, "cannot connect"));
    free(out);
}
END_TEST

/* ---- a fake sluice server that misbehaves once ---- */

typedef enum fake_mode { FAKE_DROP, FAKE_DUP, FAKE_CORRUPT } fake_mode_t;

#define FAKE_CLIENTS 8

typedef struct fake_conn {
    int fd;
    char *buf;
    size_t len;
    proto_parser_t parser;
    bool sub;
} fake_conn_t;

typedef struct fake_msg {
    uint64_t id;
    char *data;
    size_t len;
} fake_msg_t;

typedef struct fake {
    fake_mode_t mode;
    uint64_t victim;        /* which PUB (0-based) to mistreat */
    int lfd, port, stop[2];
    pthread_t th;
    fake_conn_t conns[FAKE_CLIENTS];
    fake_msg_t *q;          /* accepted, not yet pushed */
    size_t nq, capq;
    uint64_t pubs;
    unsigned rr;            /* round-robin among subscribers */
} fake_t;

static void fake_write(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        c += w;
        n -= (size_t)w;
    }
}

static void fake_enqueue(fake_t *f, uint64_t id, const char *p, size_t n)
{
    if (f->nq == f->capq) {
        f->capq = f->capq ? f->capq * 2 : 64;
        f->q = realloc(f->q, f->capq * sizeof *f->q);
    }
    f->q[f->nq].id = id;
    f->q[f->nq].data = malloc(n);
    memcpy(f->q[f->nq].data, p, n);
    f->q[f->nq].len = n;
    f->nq++;
}

static void fake_command(fake_t *f, fake_conn_t *c, const proto_cmd_t *cmd)
{
    char line[64];

    if (cmd->type == CMD_PUB) {
        uint64_t n = f->pubs++, id = n + 1;
        int l = snprintf(line, sizeof line, "+OK %llu\r\n", (unsigned long long)id);
        fake_write(c->fd, line, (size_t)l);
        if (f->mode == FAKE_DROP && n == f->victim)
            return;  /* acknowledged, then lost */
        fake_enqueue(f, id, cmd->payload, cmd->payload_len);
        if (f->mode == FAKE_DUP && n == f->victim)
            fake_enqueue(f, id, cmd->payload, cmd->payload_len);
        if (f->mode == FAKE_CORRUPT && n == f->victim)
            f->q[f->nq - 1].data[cmd->payload_len - 1] ^= 0x20;
        return;
    }
    if (cmd->type == CMD_SUB)
        c->sub = true;
    if (cmd->type == CMD_ACK) {
        int l = snprintf(line, sizeof line, "+OK %zu\r\n", cmd->nids);
        fake_write(c->fd, line, (size_t)l);
        return;
    }
    fake_write(c->fd, cmd->type == CMD_PING ? "+PONG\r\n" : "+OK\r\n", cmd->type == CMD_PING ? 7 : 5);
}

/* Push everything queued, one subscriber after another. */
static void fake_deliver(fake_t *f)
{
    for (size_t i = 0; i < f->nq; i++) {
        fake_conn_t *c = NULL;
        for (unsigned k = 0; k < FAKE_CLIENTS && !c; k++) {
            fake_conn_t *x = &f->conns[(f->rr + k) % FAKE_CLIENTS];
            if (x->fd >= 0 && x->sub) {
                c = x;
                f->rr = (f->rr + k + 1) % FAKE_CLIENTS;
            }
        }
        if (!c) {
            memmove(f->q, f->q + i, (f->nq - i) * sizeof *f->q);
            f->nq -= i;
            return;
        }
        char hdr[PROTO_MSG_HDR_MAX];
        size_t h = proto_fmt_msg_header(hdr, "bench", 5, f->q[i].id, 1, (uint32_t)f->q[i].len);
        fake_write(c->fd, hdr, h);
        fake_write(c->fd, f->q[i].data, f->q[i].len);
        fake_write(c->fd, "\r\n", 2);
        free(f->q[i].data);
    }
    f->nq = 0;
}

static void fake_read(fake_t *f, fake_conn_t *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, (1 << 20) - c->len);

    if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        c->len = 0;
        c->sub = false;
        return;
    }
    c->len += (size_t)n;
    for (;;) {
        proto_cmd_t cmd;
        size_t used = 0;
        char err[PROTO_ERR_MAX];
        proto_result_t r = proto_parse(&c->parser, c->buf, c->len, &cmd, &used, err);
        if (r == PROTO_CMD)
            fake_command(f, c, &cmd);
        else if (r != PROTO_NEED_MORE)
            fake_write(c->fd, err, strlen(err));
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        if (r == PROTO_NEED_MORE && used == 0)
            break;
    }
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;

    for (;;) {
        struct pollfd p[FAKE_CLIENTS + 2];
        p[0] = (struct pollfd){ .fd = f->lfd, .events = POLLIN };
        p[1] = (struct pollfd){ .fd = f->stop[0], .events = POLLIN };
        for (int i = 0; i < FAKE_CLIENTS; i++)
            p[i + 2] = (struct pollfd){ .fd = f->conns[i].fd, .events = POLLIN };
        if (poll(p, FAKE_CLIENTS + 2, -1) < 0)
            continue;
        if (p[1].revents)
            return NULL;
        if (p[0].revents & POLLIN) {
            int fd = accept(f->lfd, NULL, NULL);
            for (int i = 0; fd >= 0 && i < FAKE_CLIENTS; i++) {
                if (f->conns[i].fd < 0) {
                    f->conns[i].fd = fd;
                    fd = -1;
                }
            }
            if (fd >= 0)
                close(fd);
        }
        for (int i = 0; i < FAKE_CLIENTS; i++)
            if (f->conns[i].fd >= 0 && p[i + 2].revents)
                fake_read(f, &f->conns[i]);
        fake_deliver(f);
    }
}

static void fake_start(fake_t *f, fake_mode_t mode, uint64_t victim)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sin;

    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->victim = victim;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(f->lfd, 0);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(f->lfd, 16), 0);
    ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sin, &sl), 0);
    f->port = ntohs(sin.sin_port);
    ck_assert_int_eq(pipe(f->stop), 0);
    for (int i = 0; i < FAKE_CLIENTS; i++) {
        f->conns[i].fd = -1;
        f->conns[i].buf = malloc(1 << 20);
        proto_parser_init(&f->conns[i].parser, 4096, 1 << 19);
    }
    ck_assert_int_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f)
{
    ck_assert_int_eq(write(f->stop[1], "x", 1), 1);
    pthread_join(f->th, NULL);
    for (int i = 0; i < FAKE_CLIENTS; i++) {
        if (f->conns[i].fd >= 0)
            close(f->conns[i].fd);
        free(f->conns[i].buf);
    }
    for (size_t i = 0; i < f->nq; i++)
        free(f->q[i].data);
    free(f->q);
    close(f->lfd);
    close(f->stop[0]);
    close(f->stop[1]);
}

static char *fake_bench(fake_mode_t mode, int *rc)
{
    fake_t f;
    char args[256], *out;

    fake_start(&f, mode, 17);
    snprintf(args, sizeof args, "-s 127.0.0.1:%d -n 60 -p 2 -c 2 --drain-timeout 300", f.port);
    *rc = bench_run(&out, args);
    fake_stop(&f);
    return out;
}

START_TEST(test_bench_reports_lost_message)
{
    int rc;
    char *out = fake_bench(FAKE_DROP, &rc);

    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "received 59, lost 1, duplicates 0, corrupt 0") != NULL, "%s", out);
    free(out);
}
END_TEST

START_TEST(test_bench_reports_duplicate)
{
    int rc;
    char *out = fake_bench(FAKE_DUP, &rc);

    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "received 60, lost 0, duplicates 1, corrupt 0") != NULL, "%s", out);
    free(out);
}
END_TEST

START_TEST(test_bench_reports_corruption)
{
    int rc;
    char *out = fake_bench(FAKE_CORRUPT, &rc);

    /* the damaged copy does not count as received, so it is also lost */
    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "received 59, lost 1, duplicates 0, corrupt 1") != NULL, "%s", out);
    free(out);
}
END_TEST

/* ---- real Redis and beanstalkd (build.sh installs both; a missing one fails) ---- */

static bool have(const char *prog)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

static bool port_open(int port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
    close(fd);
    return ok;
}

/* Start argv in its own process group, guarded, and wait until it
 * listens on port. */
static pid_t spawn_server(char *const argv[], int port, sd_guard_t *g)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);  /* both sides: no window where the group is missing */
    *g = sd_guard(pid);
    for (int i = 0; i < 500 && !port_open(port); i++)
        usleep(10000);
    ck_assert_msg(port_open(port), "%s did not start", argv[0]);
    return pid;
}

static void reap(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* One bench run of `target` against a fresh redis-server: every message
 * arrives once and intact. */
static void bench_against_redis(const char *target)
{
    ck_assert_msg(have("redis-server"), "redis-server is not installed (apt-get install redis-server)");
    int port = sd_free_port();
    char ps[16], args[256], *out;
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = { "redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", NULL };
    sd_guard_t g;
    pid_t pid = spawn_server(argv, port, &g);
    snprintf(args, sizeof args, "-T %s -s 127.0.0.1:%d -n 2000 -p 2 -c 2 -C 50 -a 20", target, port);
    int rc = bench_run(&out, args);
    reap(pid);
    sd_guard_release(&g);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "received 2000, lost 0, duplicates 0, corrupt 0"));
    free(out);
}

START_TEST(test_bench_redis_streams)
{
    bench_against_redis("redis-streams");
}
END_TEST

/* A plain list: LPUSH and BLMPOP, every message once (no acks to lose). */
START_TEST(test_bench_redis_lists)
{
    bench_against_redis("redis-lists");
}
END_TEST

START_TEST(test_bench_beanstalkd)
{
    ck_assert_msg(have("beanstalkd"), "beanstalkd is not installed (apt-get install beanstalkd)");
    int port = sd_free_port();
    char ps[16], args[256], *out;
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = { "beanstalkd", "-l", "127.0.0.1", "-p", ps, NULL };
    sd_guard_t g;
    pid_t pid = spawn_server(argv, port, &g);
    snprintf(args, sizeof args, "-T beanstalkd -s 127.0.0.1:%d -n 2000 -p 2 -c 2 -C 20 -a 10", port);
    int rc = bench_run(&out, args);
    reap(pid);
    sd_guard_release(&g);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "received 2000, lost 0, duplicates 0, corrupt 0"));
    free(out);
}
END_TEST

/* The relay floor: `sluice bench --relay-listen` serves, `-T relay`
 * drives it with the sluice producers and consumers, and every message
 * arrives once and intact (2 producers, 2 consumers: the round robin). */
START_TEST(test_bench_relay)
{
    int port = sd_free_port();
    char addr[64], args[256], *out;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    char *argv[] = { (char *)sluice_bin(), "bench", "--relay-listen", addr, NULL };
    sd_guard_t g;
    pid_t pid = spawn_server(argv, port, &g);
    snprintf(args, sizeof args, "-T relay -s %s -n 3000 -p 2 -c 2 -S 1000 -w 16 -C 32 -a 10", addr);
    int rc = bench_run(&out, args);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "received 3000, lost 0, duplicates 0, corrupt 0"));
    free(out);
    /* a payload larger than the relay's first input buffer */
    snprintf(args, sizeof args, "-T relay -s %s -n 20 -S 1000000 -w 4 -C 4 -a 1", addr);
    rc = bench_run(&out, args);
    reap(pid);
    sd_guard_release(&g);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "received 20, lost 0, duplicates 0, corrupt 0"));
    free(out);
}
END_TEST

/* ---- the crowd: idle connections and slow producers beside a run ---- */

/* A number from a STATS body: the value of "\nKEY: " (-1: missing). */
static long long stat_of(const char *body, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s: ", key);
    const char *p = strstr(body, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* `STATS [topic]`'s value of key. */
static long long stats_get(tc_t *c, const char *topic, const char *key)
{
    ck_assert_int_eq(topic ? tc_sendf(c, "STATS %s\r\n", topic) : tc_sendf(c, "STATS\r\n"), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    char *body = strndup(c->r.body, c->r.body_len);
    long long v = stat_of(body, key);
    free(body);
    ck_assert_msg(v >= 0, "STATS %s has no %s", topic ? topic : "", key);
    return v;
}

/* key summed over crowd.0 .. crowd.7. */
static long long crowd_sum(tc_t *c, const char *key)
{
    long long sum = 0;
    char topic[16];
    for (int k = 0; k < 8; k++) {
        snprintf(topic, sizeof topic, "crowd.%d", k);
        sum += stats_get(c, topic, key);
    }
    return sum;
}

/* `sluice bench -s addr ARGS` with stdout on a pipe (*out), in its own
 * process group, guarded. */
static pid_t spawn_crowd(const char *addr, const char *const *args, FILE **out, sd_guard_t *g)
{
    char *argv[16] = { (char *)sluice_bin(), "bench", "-s", (char *)addr };
    int n = 4, fds[2];
    while (*args && n < 15)
        argv[n++] = (char *)*args++;
    argv[n] = NULL;
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);
    *g = sd_guard(pid);
    close(fds[1]);
    *out = fdopen(fds[0], "r");
    ck_assert_ptr_nonnull(*out);
    return pid;
}

/* A line from the crowd within 30 s, or "" at EOF or timeout. */
static const char *crowd_line(FILE *f, char *buf, size_t len)
{
    struct pollfd pfd = { .fd = fileno(f), .events = POLLIN };
    if (poll(&pfd, 1, 30000) != 1 || !fgets(buf, (int)len, f))
        buf[0] = '\0';
    return buf;
}

/* 50 idle connections and 20 producers at 50/s with their 8 consumers
 * against a real daemon: all of them are there once it says ready, the
 * producers publish at their rate (not faster, and not much slower), the
 * consumers drain, what the crowd counts is what the daemon counts, and
 * SIGTERM ends it with status 0. */
START_TEST(test_bench_crowd)
{
    static const char *const args[] = { "--crowd-idle", "50", "--crowd-producers", "20",
                                        "--crowd-rate", "50", NULL };
    sd_t d;
    sd_guard_t g;
    FILE *out;
    char line[512], *bad;

    /* usage errors first */
    ck_assert_int_eq(bench_run(&bad, "--crowd-rate 5"), 2);
    ck_assert_ptr_nonnull(strstr(bad, "needs --crowd-producers"));
    free(bad);
    ck_assert_int_eq(bench_run(&bad, "--crowd-idle 0"), 2);
    free(bad);
    ck_assert_int_eq(bench_run(&bad, "--crowd-producers 2 --crowd-rate 0"), 2);
    free(bad);

    ck_assert_int_eq(sd_start(&d, NULL), 0);
    sd_guard_t dg = sd_guard(d.pid);
    pid_t pid = spawn_crowd(d.addr, args, &out, &g);
    ck_assert_str_eq(crowd_line(out, line, sizeof line), "ready\n");
    tc_t *c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    /* 50 idle, 20 producers, 8 consumers, and this one */
    ck_assert_int_eq(stats_get(c, NULL, "connections"), 79);
    ck_assert_int_eq(crowd_sum(c, "consumers"), 8);
    long long p0 = crowd_sum(c, "published");
    sd_sleep_ms(1000);
    long long p1 = crowd_sum(c, "published");
    ck_assert_msg(p1 > p0, "published %lld, then %lld", p0, p1);
    /* drained: what is queued stays within the consumers' credit */
    ck_assert_int_le(crowd_sum(c, "ready"), 8 * 256);

    kill(pid, SIGTERM);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    sd_guard_release(&g);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "crowd status %d", st);
    crowd_line(out, line, sizeof line);
    fclose(out);
    double secs;
    unsigned long long sent, confirmed, refused, skipped, received, acked, errors;
    ck_assert_msg(sscanf(line, "crowd: 50 idle, 20 producers at 50/s, 8 consumers, %lf s: sent %llu, "
                               "confirmed %llu, refused %llu, skipped %llu, received %llu, "
                               "acked %llu, errors %llu",
                         &secs, &sent, &confirmed, &refused, &skipped, &received, &acked,
                         &errors) == 8, "crowd said: %s", line);
    /* the schedule: 1000 a second in all (the first at 0 s), never ahead of it */
    double due = secs * 1000;
    ck_assert_msg(sent + skipped <= due + 2 && sent + skipped >= due / 2, "%s", line);
    ck_assert_msg(confirmed > 0 && received > 0 && refused == 0 && errors == 0, "%s", line);
    ck_assert_msg(received == acked && received <= confirmed + 8 * 256, "%s", line);

    /* once its connections are gone, the daemon's counts agree */
    for (int i = 0; i < 500 && stats_get(c, NULL, "connections") > 1; i++)
        sd_sleep_ms(10);
    ck_assert_int_eq(stats_get(c, NULL, "connections"), 1);
    long long pub = crowd_sum(c, "published"), ack = crowd_sum(c, "acked");
    ck_assert_msg((unsigned long long)pub >= confirmed && (unsigned long long)pub <= sent,
                  "daemon published %lld; %s", pub, line);
    ck_assert_msg((unsigned long long)ack == acked, "daemon acked %lld; %s", ack, line);
    ck_assert_int_ge(crowd_sum(c, "delivered"), (long long)received);
    ck_assert_int_eq(stats_get(c, NULL, "messages"), pub - ack);
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
    sd_guard_release(&dg);
}
END_TEST

static Suite *bench_suite(void)
{
    Suite *s = suite_create("bench");
    TCase *u = tcase_create("units");
    TCase *r = tcase_create("runs");

    /* Check's 4 s default is too tight for a sanitized build on a busy CI
     * machine; nothing here is timed. */
    tcase_set_timeout(u, 60);
    tcase_add_test(u, test_hist_buckets_cover_values);
    tcase_add_test(u, test_hist_quantiles);
    tcase_add_test(u, test_payload_roundtrip_and_corruption);
    tcase_add_test(u, test_redis_reply_entries);
    tcase_add_test(u, test_redis_reply_pipeline);
    tcase_add_test(u, test_redis_reply_rejects);
    suite_add_tcase(s, u);

    tcase_set_timeout(r, 60);
    tcase_add_test(r, test_bench_against_daemon);
    tcase_add_test(r, test_bench_duration_mode);
    tcase_add_test(r, test_bench_cannot_connect);
    tcase_add_test(r, test_bench_reports_lost_message);
    tcase_add_test(r, test_bench_reports_duplicate);
    tcase_add_test(r, test_bench_reports_corruption);
    tcase_add_test(r, test_bench_redis_streams);
    tcase_add_test(r, test_bench_redis_lists);
    tcase_add_test(r, test_bench_beanstalkd);
    tcase_add_test(r, test_bench_relay);
    tcase_add_test(r, test_bench_crowd);
    suite_add_tcase(s, r);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bench_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
