/* bench_sluice.c: the sluice target of `sluice bench`: producers pipeline
 * PUB (one header for the whole run, written with the payload in one
 * copy), consumers SUB with a credit (following -MOVED to a topic's
 * owner) and ACK in batches, each line kept under the server's default
 * max_line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_int.h"
#include "clock.h"

#define BENCH_ACK_LINE 4000           /* ACK lines stay below the default max_line (4 KiB) */

static int bsl_prod_open(bench_worker_t *w)
{
    int h = snprintf(w->put_hdr, sizeof w->put_hdr, "PUB %s %zu\r\n", w->topic, w->b->o.size);

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

/* SUB on the topic's owner: a node that does not own it answers -MOVED,
 * and the consumer goes where it says (a few hops at most), so that the
 * producers, which start after every consumer is in place, go there too. */
static int bsl_subscribe(bench_worker_t *w)
{
    bench_t *b = w->b;
    proto_reply_t r;
    char to[CONFIG_NODE_MAX + 1];

    for (int hops = 0;; hops++) {
        client_printf(w->c, "SUB %s %u\r\n", w->topic, b->o.credit);
        if (client_read(w->c, &r, BENCH_REPLY_MS) != 1) {
            bench_note(b, true, "consumer %u: SUB failed: %s", w->idx, w->c->err);
            return -1;
        }
        if (r.type == REPLY_OK)
            return 0;
        if (!client_moved(&r, to, sizeof to) || hops == CLIENT_MAX_HOPS) {
            char e[PROTO_ERR_MAX + 8];
            client_reply_str(&r, e, sizeof e);
            bench_note(b, true, "consumer %u: SUB %s refused: %s", w->idx, w->topic, e);
            return -1;
        }
        if (!bench_moved(w, to))
            return -1;
    }
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
    if (bsl_subscribe(w) < 0) {
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
    uint64_t deadline = clock_ns() + BENCH_WIND_DOWN_NS;
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

const bench_target_t bsl_target = {
    .name = "sluice",
    .port = CLIENT_DEFAULT_PORT,
    .prod_open = bsl_prod_open,
    .put = bsl_prod_put,
    .reply = bsl_prod_reply,
    .consume = bsl_consume,
};

/* The relay floor (bench_relay.c) speaks this protocol's frames: the same
 * producers and consumers drive it. */
const bench_target_t bsl_relay_target = {
    .name = "relay",
    .port = 7709,
    .addr = "127.0.0.1:7709",
    .prod_open = bsl_prod_open,
    .put = bsl_prod_put,
    .reply = bsl_prod_reply,
    .consume = bsl_consume,
};
