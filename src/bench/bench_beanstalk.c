/* bench_beanstalk.c: the beanstalkd target of `sluice bench`: producers
 * `use` the tube and pipeline `put`, consumers `watch` it, keep
 * `reserve-with-timeout` commands in flight while jobs flow and `delete`
 * what they took, in beanstalkd's line protocol.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_int.h"
#include "clock.h"

/* Every put is "put 1024 0 60 <bytes>": priority 1024, no delay, TTR 60 s.
 * Lines are formatted and replies parsed by hand, not with printf and
 * sscanf, which cost the client more than the server spends on a job. */
#define BENCH_BEANS_PUT "put 1024 0 60 "
#define BENCH_BEANS_INLINE 4096 /* a put up to this size goes out in one client_put */

/* Decimal digits at *p (advanced past them) into *v; false if none. */
static bool bbs_num(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;

    *v = 0;
    while (s < end && *s >= '0' && *s <= '9' && s - *p < 19)
        *v = *v * 10 + (uint64_t)(*s++ - '0');
    if (s == *p)
        return false;
    *p = s;
    return true;
}

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

static int bbs_prod_open(bench_worker_t *w)
{
    char cmd[PROTO_TOPIC_MAX + 8];

    snprintf(cmd, sizeof cmd, "use %s", w->b->o.topic);
    return bbs_command(w, cmd, "USING");
}

static int bbs_prod_put(bench_worker_t *w, const char *payload, size_t n)
{
    char buf[sizeof BENCH_BEANS_PUT + PROTO_NUM_MAX + 2 + BENCH_BEANS_INLINE + 2];
    size_t l = sizeof BENCH_BEANS_PUT - 1;

    memcpy(buf, BENCH_BEANS_PUT, l);
    l += proto_u64(buf + l, n);
    memcpy(buf + l, "\r\n", 2);
    l += 2;
    if (n > BENCH_BEANS_INLINE)
        return client_put(w->c, buf, l) < 0 || client_put(w->c, payload, n) < 0
                   ? -1
                   : client_put(w->c, "\r\n", 2);
    memcpy(buf + l, payload, n);
    memcpy(buf + l + n, "\r\n", 2);
    return client_put(w->c, buf, l + n + 2);
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
    char line[7 + PROTO_NUM_MAX + 2];

    memcpy(line, "delete ", 7);
    for (size_t i = 0; i < s->n; i++) {
        size_t l = 7 + proto_u64(line + 7, s->ids[i]);
        memcpy(line + l, "\r\n", 2);
        if (client_put(w->c, line, l + 2) < 0)
            return -1;
    }
    s->pending += (unsigned)s->n;
    s->n = 0;
    return 0;
}

/* Parse "RESERVED <id> <bytes>" and its body. 1 taken, 0 need more, -1 bad. */
static int bbs_reserved(bench_worker_t *w, bbs_cons_t *s, const char *line, size_t n)
{
    uint64_t id, bytes;
    const char *p = line + 9, *end = line + n; /* after "RESERVED " */

    if (n < 9 || !bbs_num(&p, end, &id) || p == end || *p++ != ' ' ||
        !bbs_num(&p, end, &bytes) || p != end)
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
            if (client_put(w->c, "reserve-with-timeout 0\r\n", 24) < 0)
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
    uint64_t deadline = clock_ns() + BENCH_WIND_DOWN_NS;
    while (!atomic_load(&b->abort) && (s.reserves || s.pending || s.n)) {
        if (s.n && bbs_flush_deletes(w, &s) < 0)
            break;
        if (bbs_cons_replies(w, &s) < 0 || !bench_wait_until(w, deadline))
            break;
    }
    free(s.ids);
    return 0;
}

const bench_target_t bbs_target = {
    .name = "beanstalkd",
    .port = 11300,
    .addr = "127.0.0.1:11300",
    .prod_open = bbs_prod_open,
    .put = bbs_prod_put,
    .reply = bbs_prod_reply,
    .consume = bbs_consume,
};
