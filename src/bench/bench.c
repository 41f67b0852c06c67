/* bench.c: `sluice bench`, a load generator for sluice, Redis Streams and
 * beanstalkd. One thread and one connection per producer and per consumer;
 * every payload carries its send time, producer and sequence number under
 * a checksum, so consumers measure latency and detect corruption, and a
 * bitmap per producer catches duplicates and, at the end, losses.
 *
 * This file runs the threads and the run; each target's protocol is in
 * its own bench_<target>.c behind the bench_target_t vtable (bench_int.h).
 */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_int.h"
#include "clock.h"

/* ---- shared by the targets ---- */

void bench_note(bench_t *b, bool fatal, const char *fmt, ...)
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

bool bench_running(bench_t *b)
{
    return !atomic_load_explicit(&b->stop, memory_order_relaxed) &&
           !atomic_load_explicit(&b->abort, memory_order_relaxed);
}

void bench_take(bench_worker_t *w, const char *p, size_t n)
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
bool bench_wait_until(bench_worker_t *w, uint64_t deadline_ns)
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

    while ((k = w->b->o.target->reply(w, err, sizeof err)) > 0) {
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
            if (b->o.target->put(w, payload, b->o.size) < 0) {
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

/* Connect w to its topic's owner. */
static bool bench_connect(bench_worker_t *w, const char *role)
{
    char err[CLIENT_ERR_MAX], addr[CONFIG_NODE_MAX + 1];
    bench_t *b = w->b;

    pthread_mutex_lock(&b->lock);
    memcpy(addr, b->tp[w->tix].addr, sizeof addr);
    pthread_mutex_unlock(&b->lock);
    w->c = client_connect(addr, b->o.target->port, BENCH_CONNECT_MS, err);
    if (!w->c)
        bench_note(b, true, "%s %u: %s", role, w->idx, err);
    return w->c != NULL;
}

bool bench_moved(bench_worker_t *w, const char *to)
{
    bench_t *b = w->b;
    char from[sizeof w->c->addr];

    snprintf(from, sizeof from, "%s", w->c->addr);
    pthread_mutex_lock(&b->lock);
    snprintf(b->tp[w->tix].addr, sizeof b->tp[w->tix].addr, "%s", to);
    pthread_mutex_unlock(&b->lock);
    if (!atomic_exchange(&b->warned_stale, true))
        fprintf(stderr, "sluice: bench: the node list looks stale: %s says %s is on %s "
                        "(following -MOVED)\n", from, w->topic, to);
    client_free(w->c);
    w->c = NULL;
    return bench_connect(w, "consumer");
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
    if (b->o.target->prod_open && b->o.target->prod_open(w) < 0)
        goto out;
    atomic_fetch_add(&b->ready, 1);
    while (!atomic_load(&b->go) && !atomic_load(&b->abort))
        usleep(200);
    bench_produce(w, payload, pad_sum);
out:
    if (b->o.target->prod_close)
        b->o.target->prod_close(w);
    free(payload);
    atomic_fetch_add_explicit(&b->producers_done, 1, memory_order_release);
    return NULL;
}

static void *bench_consumer_main(void *arg)
{
    bench_worker_t *w = arg;

    bench_sched(w->b);
    if (bench_connect(w, "consumer"))
        w->b->o.target->consume(w);
    return NULL;
}
/* ---- the run ---- */

/* What each node delivered, by the address its consumers ended on (a
 * node named twice, once by the list and once by a -MOVED, is one). Only
 * when the run spread over several nodes or topics. */
static void bench_tally_nodes(bench_t *b, bench_result_t *r)
{
    if (b->nodes.n < 2 && b->o.topics < 2)
        return;
    r->per_node = calloc(b->o.consumers, sizeof *r->per_node);
    if (!r->per_node)
        return;
    for (unsigned c = 0; c < b->o.consumers; c++) {
        const char *addr = b->tp[b->cons[c].tix].addr;
        size_t i = 0;
        while (i < r->nper_node && strcmp(r->per_node[i].addr, addr) != 0)
            i++;
        if (i == r->nper_node)
            r->per_node[r->nper_node++].addr = addr;
        r->per_node[i].received += b->cons[c].got;
    }
}

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
    bench_tally_nodes(b, r);
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
    fprintf(stderr, "\r\033[K[bench %s] %.0f s: received %llu (%.0f msg/s)", b->o.target->name,
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

/* Start n workers running fn; -1 (noted) if a thread cannot start. */
static int bench_spawn(bench_t *b, bench_worker_t *ws, unsigned n, void *(*fn)(void *))
{
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&ws[i].th, NULL, fn, &ws[i]) != 0) {
            bench_note(b, true, "cannot start a thread");
            return -1;
        }
        ws[i].started = true;
    }
    return 0;
}

static int bench_start(bench_t *b)
{
    if (bench_spawn(b, b->cons, b->o.consumers, bench_consumer_main) < 0)
        return -1;
    /* consumers first, so the group exists / SUB is in place before data */
    if (!bench_wait_ready(b, b->o.consumers))
        return -1;
    if (bench_spawn(b, b->prod, b->o.producers, bench_producer_main) < 0)
        return -1;
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

    b->ntp = o->topics ? o->topics : 1;
    b->seen = calloc(o->producers, sizeof *b->seen);
    b->prod = calloc(o->producers, sizeof *b->prod);
    b->cons = calloc(o->consumers, sizeof *b->cons);
    b->tp = calloc(b->ntp, sizeof *b->tp);
    if (!b->seen || !b->prod || !b->cons || !b->tp)
        return -1;
    for (unsigned t = 0; t < b->ntp; t++) {
        bench_topic_t *tp = &b->tp[t];
        if (o->topics)
            snprintf(tp->name, sizeof tp->name, "%s.%u", o->topic, t);
        else
            snprintf(tp->name, sizeof tp->name, "%s", o->topic);
        snprintf(tp->addr, sizeof tp->addr, "%s",
                 client_nodes_owner(&b->nodes, tp->name, strlen(tp->name)));
    }
    for (unsigned i = 0; i < o->producers; i++) {
        b->prod[i].b = b;
        b->prod[i].idx = i;
        b->prod[i].tix = i % b->ntp;
        b->prod[i].topic = b->tp[i % b->ntp].name;
        b->prod[i].quota = o->messages / o->producers + (i < o->messages % o->producers);
    }
    for (unsigned i = 0; i < o->consumers; i++) {
        b->cons[i].b = b;
        b->cons[i].idx = i;
        b->cons[i].tix = i % b->ntp;
        b->cons[i].topic = b->tp[i % b->ntp].name;
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
    free(b->tp);
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
    const bench_target_t *t = b->o.target;
    bench_hist_t total;
    bench_result_t r = { .hist = &total };
    char err[CLIENT_ERR_MAX + 64];

    bench_hist_init(&total);
    if (bench_alloc(b) < 0) {
        fprintf(stderr, "sluice: bench: out of memory\n");
        return 1;
    }
    if (t->setup && t->setup(b, err, sizeof err) < 0) {
        fprintf(stderr, "sluice: bench: %s\n", err);
        return 1;
    }
    if (bench_start(b) == 0)
        bench_watch(b);
    else
        atomic_store(&b->abort, true);
    bench_join(b);
    if (t->teardown)
        t->teardown(b);
    if (b->first_err[0])
        fprintf(stderr, "sluice: bench: %s\n", b->first_err);
    if (atomic_load(&b->abort) && !atomic_load(&b->go))
        return 1;
    bench_tally(b, &r);
    if (b->o.json)
        bench_report_json(&b->o, &r);
    else
        bench_report_text(&b->o, &r);
    free(r.per_node);
    fflush(stdout);
    bool bad = r.lost || r.dups || r.corrupt || r.errors || atomic_load(&b->abort);
    return bad ? 1 : 0;
}

/* The node list from bench's own options, else those before it; only
 * the sluice target takes a list (and the environment's). 0, or the exit
 * status after saying why. */
static int bench_settle(bench_t *b, const bench_conn_t *pre, char **joined)
{
    bench_opts_t *o = &b->o;
    bool sluice = o->target == &bsl_target;
    client_nodes_opts_t no = {
        .nodes = o->nodes_opt ? o->nodes_opt : pre->nodes,
        .server = o->addr ? o->addr : pre->server,
        .config = o->config ? o->config : pre->config,
        .fallback = sluice ? NULL : o->target->addr,
        .no_env = !sluice,
    };
    char err[CONFIG_ERR_MAX + 64];

    if (!sluice && (no.nodes || no.config || o->topics)) {
        fprintf(stderr, "sluice: bench: --nodes, --config and --topics are for -T sluice\n"
                        "Try 'sluice bench --help'.\n");
        return 2;
    }
    if (o->topics > o->consumers) {
        fprintf(stderr, "sluice: bench: --topics %u needs at least %u consumers (one a topic)\n"
                        "Try 'sluice bench --help'.\n", o->topics, o->topics);
        return 2;
    }
    if (o->topics && strlen(o->topic) + 11 > PROTO_TOPIC_MAX) {
        fprintf(stderr, "sluice: bench: --topic too long for --topics\n");
        return 2;
    }
    int rc = client_nodes_resolve(&b->nodes, &no, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "sluice: bench: %s\n%s", err,
                rc == CLIENT_NODES_USAGE ? "Try 'sluice bench --help'.\n" : "");
        return rc == CLIENT_NODES_USAGE ? 2 : 1;
    }
    if (b->nodes.n == 1) {
        o->addr = b->nodes.v[0];
        return 0;
    }
    size_t len = 0;
    for (size_t i = 0; i < b->nodes.n; i++)
        len += strlen(b->nodes.v[i]) + 1;
    if ((*joined = malloc(len)) == NULL) {
        fprintf(stderr, "sluice: bench: out of memory\n");
        return 1;
    }
    char *p = *joined;
    for (size_t i = 0; i < b->nodes.n; i++)
        p += sprintf(p, "%s%s", i ? "," : "", b->nodes.v[i]);
    o->addr = *joined;
    return 0;
}

/* The crowd is for one server; say so for a node list. */
static int bench_crowd_one(const bench_t *b)
{
    fprintf(stderr, "sluice: bench: the crowd goes to one server, not a node list (%s)\n"
                    "Try 'sluice bench --help'.\n", b->nodes.from);
    return 2;
}

int bench_main(int argc, char **argv, const bench_conn_t *pre)
{
    bench_t *b = calloc(1, sizeof *b);
    char *joined = NULL;
    if (!b)
        return 1;
    b->o = (bench_opts_t){
        .target = &bsl_target, .producers = 1, .consumers = 1, .messages = 100000,
        .size = 64, .window = 64, .credit = 256, .ack_batch = 64, .topic = "bench",
        .drain_ms = 5000,
    };
    pthread_mutex_init(&b->lock, NULL);
    int rc = bench_opts_parse(argc, argv, &b->o);
    if (rc != 0) {
        pthread_mutex_destroy(&b->lock);
        free(b);
        return rc < 0 ? 0 : rc;
    }
    if (b->o.relay_listen) {
        rc = bench_relay_main(b->o.relay_listen);
        pthread_mutex_destroy(&b->lock);
        free(b);
        return rc;
    }
    rc = bench_settle(b, pre, &joined);
    if (rc == 0 && (b->o.crowd_idle || b->o.crowd_producers)) {
        rc = b->nodes.n == 1 ? bench_crowd_main(&b->o) : bench_crowd_one(b);
    } else if (rc == 0) {
        b->run = bench_run_id();
        rc = bench_execute(b);
    }
    bench_free(b);
    client_nodes_free(&b->nodes);
    free(joined);
    free(b);
    return rc;
}
