/* topview.c: the pure half of `sluice top`: STATS bodies into samples,
 * rates from counter deltas, sorting, and rendering a frame into a buffer.
 * Nothing here reads a socket, a clock or a terminal, so all of it is unit
 * tested with made-up bodies (tests/check_topview.c).
 */
#include "topview.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ---- */

bool tv_line_next(const char **p, const char *end, char *parent, size_t plen, tv_line_t *l)
{
    while (*p < end) {
        const char *s = *p, *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        *p = nl ? nl + 1 : end;
        const char *k = s;
        while (k < le && *k == ' ')
            k++;
        const char *colon = memchr(k, ':', (size_t)(le - k));
        if (!colon || colon == k)
            continue;
        const char *v = colon + 1;
        while (v < le && *v == ' ')
            v++;
        const char *ve = le;
        if (ve > v && ve[-1] == '\r')
            ve--;
        if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') {
            v++;
            ve--;
        }
        int kl = (int)(colon - k);
        if (k == s) {
            snprintf(parent, plen, "%.*s", kl, k);
            snprintf(l->key, sizeof l->key, "%.*s", kl, k);
        } else {
            snprintf(l->key, sizeof l->key, "%s.%.*s", parent, kl, k);
        }
        l->v = v;
        l->vl = (size_t)(ve - v);
        return true;
    }
    return false;
}

/* Strict decimal, as the protocol writes it. */
static bool tv_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A numeric field: its key and where it goes. */
typedef struct tv_field {
    const char *key;
    size_t off;
} tv_field_t;

#define TV_TOPIC_COUNTER(f, help) {#f, offsetof(tv_topic_t, c.f)},
#define TV_SERVER_COUNTER(f, help) {#f, offsetof(tv_server_t, c.f)},

static const tv_field_t tv_topic_fields[] = {
    {"ready", offsetof(tv_topic_t, ready)},
    {"delayed", offsetof(tv_topic_t, delayed)},
    {"in_flight", offsetof(tv_topic_t, in_flight)},
    {"bytes", offsetof(tv_topic_t, bytes)},
    {"consumers", offsetof(tv_topic_t, consumers)},
    {"blocked_producers", offsetof(tv_topic_t, blocked)},
    {"max_messages", offsetof(tv_topic_t, max_messages)},
    {"max_bytes", offsetof(tv_topic_t, max_bytes)},
    SLUICE_COUNTERS(TV_TOPIC_COUNTER)
};

static const tv_field_t tv_server_fields[] = {
    {"uptime_s", offsetof(tv_server_t, uptime_s)},
    {"connections", offsetof(tv_server_t, connections)},
    {"topics", offsetof(tv_server_t, topics)},
    {"messages", offsetof(tv_server_t, messages)},
    {"bytes", offsetof(tv_server_t, bytes)},
    {"blocked_producers", offsetof(tv_server_t, blocked)},
    {"max_loop_stall_ms", offsetof(tv_server_t, max_loop_stall_ms)},
    {"redis.lag_ops", offsetof(tv_server_t, redis_lag_ops)},
    SLUICE_COUNTERS(TV_SERVER_COUNTER)
};

#define TV_NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* A field that is not a number: 1 taken, 0 not one of them, -1 malformed. */
typedef int tv_string_fn(void *base, const tv_line_t *l);

/* Fill base's numeric fields from body; every one of them must be there. */
static int tv_parse(const char *body, size_t len, const tv_field_t *f, size_t nf, void *base,
                    tv_string_fn *strings)
{
    const char *p = body, *end = body + len;
    char parent[64] = "";
    uint64_t seen = 0;
    tv_line_t l;

    while (tv_line_next(&p, end, parent, sizeof parent, &l)) {
        int k = strings(base, &l);
        if (k < 0)
            return -1;
        if (k > 0)
            continue;
        for (size_t i = 0; i < nf; i++) {
            if (strcmp(l.key, f[i].key) != 0)
                continue;
            uint64_t v;
            if (!tv_u64(l.v, l.vl, &v))
                return -1;
            memcpy((char *)base + f[i].off, &v, sizeof v);
            seen |= UINT64_C(1) << i;
        }
    }
    return seen == (UINT64_C(1) << nf) - 1 ? 0 : -1;
}

static int tv_topic_strings(void *base, const tv_line_t *l)
{
    tv_topic_t *t = base;

    if (strcmp(l->key, "topic") != 0)
        return strcmp(l->key, "overflow") == 0;
    if (l->vl == 0 || l->vl > PROTO_TOPIC_MAX)
        return -1;
    memcpy(t->name, l->v, l->vl);
    t->name[l->vl] = '\0';
    return 1;
}

static int tv_server_strings(void *base, const tv_line_t *l)
{
    tv_server_t *s = base;

    if (strcmp(l->key, "version") == 0) {
        snprintf(s->version, sizeof s->version, "%.*s", (int)l->vl, l->v);
        return 1;
    }
    if (strcmp(l->key, "redis.connected") == 0) {
        s->redis_connected = l->vl == 4 && memcmp(l->v, "true", 4) == 0;
        return 1;
    }
    return strcmp(l->key, "redis") == 0;  /* the parent line has no value */
}

int tv_parse_topic(const char *body, size_t len, tv_topic_t *t)
{
    memset(t, 0, sizeof *t);
    t->pub_rate = t->ack_rate = -1;
    if (tv_parse(body, len, tv_topic_fields, TV_NFIELDS(tv_topic_fields), t, tv_topic_strings) < 0)
        return -1;
    return t->name[0] ? 0 : -1;
}

int tv_parse_server(const char *body, size_t len, tv_server_t *s)
{
    memset(s, 0, sizeof *s);
    s->pub_rate = s->ack_rate = -1;
    return tv_parse(body, len, tv_server_fields, TV_NFIELDS(tv_server_fields), s,
                    tv_server_strings);
}

/* ---- samples and rates ---- */

int tv_sample_add(tv_sample_t *s, const char *body, size_t len)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        tv_topic_t *nt = realloc(s->topics, ncap * sizeof *nt);
        if (!nt)
            return -1;
        s->topics = nt;
        s->cap = ncap;
    }
    if (tv_parse_topic(body, len, &s->topics[s->n]) < 0)
        return -1;
    s->n++;
    return 0;
}

void tv_sample_clear(tv_sample_t *s)
{
    s->n = 0;
}

void tv_sample_free(tv_sample_t *s)
{
    free(s->topics);
    s->topics = NULL;
    s->n = s->cap = 0;
}

static double tv_rate(uint64_t now, uint64_t before, double dt)
{
    if (dt <= 0 || now < before)
        return -1;
    return (double)(now - before) / dt;
}

/* Names, then nodes (a topic left behind on a node that no longer owns
 * it is a row of its own). */
static int tv_cmp_name(const void *a, const void *b)
{
    const tv_topic_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c != 0 || x->node == y->node)
        return c;
    return strcmp(x->node ? x->node : "", y->node ? y->node : "");
}

void tv_server_add(tv_server_t *sum, const tv_server_t *one, bool first)
{
    if (first) {
        *sum = *one;
        return;
    }
    sum->uptime_s = one->uptime_s < sum->uptime_s ? one->uptime_s : sum->uptime_s;
    sum->connections += one->connections;
    sum->topics += one->topics;
    sum->messages += one->messages;
    sum->bytes += one->bytes;
    sum->blocked += one->blocked;
    if (one->max_loop_stall_ms > sum->max_loop_stall_ms)
        sum->max_loop_stall_ms = one->max_loop_stall_ms;
#define TV_SUM(f, help) sum->c.f += one->c.f;
    SLUICE_COUNTERS(TV_SUM)
#undef TV_SUM
    sum->redis_connected = sum->redis_connected && one->redis_connected;
    sum->redis_lag_ops += one->redis_lag_ops;
}

void tv_rates(tv_sample_t *cur, tv_sample_t *prev)
{
    if (!prev)
        return;
    double dt = cur->t - prev->t;
    cur->srv.pub_rate = tv_rate(cur->srv.c.published, prev->srv.c.published, dt);
    cur->srv.ack_rate = tv_rate(cur->srv.c.acked, prev->srv.c.acked, dt);
    if (prev->n)
        qsort(prev->topics, prev->n, sizeof *prev->topics, tv_cmp_name);
    for (size_t i = 0; i < cur->n; i++) {
        tv_topic_t *t = &cur->topics[i];
        const tv_topic_t *o =
            prev->n ? bsearch(t, prev->topics, prev->n, sizeof *t, tv_cmp_name) : NULL;
        if (!o)
            continue;
        t->pub_rate = tv_rate(t->c.published, o->c.published, dt);
        t->ack_rate = tv_rate(t->c.acked, o->c.acked, dt);
    }
}

/* ---- sort keys ---- */

static const struct {
    const char *name;
    char ch;
} tv_keys[TV_NKEYS] = {
    [TV_KEY_NAME] = {"name", 'n'},     [TV_KEY_READY] = {"ready", 'r'},
    [TV_KEY_DELAYED] = {"delayed", 'd'}, [TV_KEY_INFLIGHT] = {"inflight", 'f'},
    [TV_KEY_PARKED] = {"parked", 'k'}, [TV_KEY_CONSUMERS] = {"consumers", 'c'},
    [TV_KEY_PUB] = {"pub", 'p'},       [TV_KEY_ACK] = {"ack", 'a'},
    [TV_KEY_DEAD] = {"dead", 'x'},     [TV_KEY_BYTES] = {"bytes", 'b'},
};

bool tv_key_parse(const char *s, tv_key_t *k)
{
    for (int i = 0; i < TV_NKEYS; i++) {
        if (strcmp(s, tv_keys[i].name) == 0) {
            *k = (tv_key_t)i;
            return true;
        }
    }
    return false;
}

bool tv_key_of_char(int ch, tv_key_t *k)
{
    for (int i = 0; i < TV_NKEYS; i++) {
        if (ch == tv_keys[i].ch) {
            *k = (tv_key_t)i;
            return true;
        }
    }
    return false;
}

const char *tv_key_name(tv_key_t k)
{
    return k < TV_NKEYS ? tv_keys[k].name : "?";
}

/* The number a row sorts by; unknown rates (-1) come after every rate. */
static double tv_value(const tv_topic_t *t, tv_key_t k)
{
    switch (k) {
    case TV_KEY_READY: return (double)t->ready;
    case TV_KEY_DELAYED: return (double)t->delayed;
    case TV_KEY_INFLIGHT: return (double)t->in_flight;
    case TV_KEY_PARKED: return (double)t->blocked;
    case TV_KEY_CONSUMERS: return (double)t->consumers;
    case TV_KEY_PUB: return t->pub_rate;
    case TV_KEY_ACK: return t->ack_rate;
    case TV_KEY_DEAD: return (double)t->c.dead;
    case TV_KEY_BYTES: return (double)t->bytes;
    default: return 0;
    }
}

typedef struct tv_order {
    tv_key_t key;
    bool reverse;
} tv_order_t;

static int tv_cmp_rows(const void *a, const void *b, void *arg)
{
    const tv_topic_t *x = a, *y = b;
    const tv_order_t *o = arg;
    int c = 0;

    if (o->key != TV_KEY_NAME) {
        double vx = tv_value(x, o->key), vy = tv_value(y, o->key);
        c = vx > vy ? -1 : vx < vy ? 1 : 0;  /* biggest first */
    }
    if (c == 0)
        c = tv_cmp_name(x, y);
    return o->reverse ? -c : c;
}

void tv_sort(tv_sample_t *s, tv_key_t k, bool reverse)
{
    tv_order_t o = { k, reverse };

    if (s->n)
        qsort_r(s->topics, s->n, sizeof *s->topics, tv_cmp_rows, &o);
}

/* ---- rendering ---- */

void tv_buf_free(tv_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void tv_put(tv_buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len < n + 1) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap - b->len < n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void tv_puts(tv_buf_t *b, const char *s)
{
    tv_put(b, s, strlen(s));
}

/* One line of text being built, before it is cut to the screen width. */
typedef struct tv_text {
    char s[1024];
    size_t len;
} tv_text_t;

static void tv_add(tv_text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tv_add(tv_text_t *t, const char *fmt, ...)
{
    va_list ap;

    if (t->len + 1 >= sizeof t->s)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(t->s + t->len, sizeof t->s - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n < sizeof t->s - t->len ? (size_t)n : sizeof t->s - t->len - 1;
}

/* Emit a finished line: cut to the width (so a terminal never wraps it),
 * in `style` (an SGR parameter string, or NULL) when drawing with ANSI. */
static void tv_emit(tv_buf_t *b, const tv_view_t *v, const tv_text_t *t, const char *style)
{
    size_t n = t->len;

    if (v->width > 0 && n > (size_t)v->width)
        n = (size_t)v->width;
    if (v->ansi && style) {
        tv_puts(b, "\033[");
        tv_puts(b, style);
        tv_puts(b, "m");
    }
    tv_put(b, t->s, n);
    if (v->ansi)
        tv_puts(b, style ? "\033[m\033[K" : "\033[K");
    tv_puts(b, "\n");
}

/* v in at most w characters: exact when it fits, else 12.3k, 456M... in
 * the first unit that leaves less than 1000 of it. */
static const char *tv_count(char *out, size_t cap, uint64_t v, int w)
{
    static const char units[] = "kMGTPE";
    double d = (double)v;

    if (snprintf(out, cap, "%" PRIu64, v) <= w)
        return out;
    for (int i = 0; units[i]; i++) {
        d /= 1000;
        if (d >= 999.95 && units[i + 1])
            continue;
        if (snprintf(out, cap, "%.1f%c", d, units[i]) > w)
            snprintf(out, cap, "%.0f%c", d, units[i]);
        return out;
    }
    return out;
}

static const char *tv_rate_str(char *out, size_t cap, double r, int w)
{
    if (r < 0)
        return "-";
    if (r < 10) {
        snprintf(out, cap, "%.1f", r);
        return out;
    }
    return tv_count(out, cap, (uint64_t)(r + 0.5), w);
}

/* 1.5KiB-style sizes for the header. */
static const char *tv_size(char *out, size_t cap, uint64_t v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    int i = 0;

    while (d >= 1024 && i < 4) {
        d /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(out, cap, "%" PRIu64 "B", v);
    else
        snprintf(out, cap, "%.1f%s", d, units[i]);
    return out;
}

static const char *tv_uptime(char *out, size_t cap, uint64_t s)
{
    if (s >= 86400)
        snprintf(out, cap, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(out, cap, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(out, cap, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(out, cap, "%" PRIu64 "s", s);
    return out;
}

/* The numeric columns, in order, with their widths. */
static const struct {
    const char *label;
    int w;
    tv_key_t key;
} tv_cols[] = {
    {"READY", 7, TV_KEY_READY},   {"DELAY", 6, TV_KEY_DELAYED}, {"INFLT", 6, TV_KEY_INFLIGHT},
    {"PARKED", 7, TV_KEY_PARKED}, {"CONS", 5, TV_KEY_CONSUMERS}, {"PUB/S", 7, TV_KEY_PUB},
    {"ACK/S", 7, TV_KEY_ACK},     {"DEAD", 6, TV_KEY_DEAD},
};
#define TV_NCOLS (sizeof tv_cols / sizeof tv_cols[0])
#define TV_NAME_MIN 8
#define TV_NAME_MAX 40
#define TV_BAR_MIN 4
#define TV_BAR_MAX 20
#define TV_BAR_PLAIN 10

/* Column widths of one frame. */
typedef struct tv_layout {
    int name_w, bar_w;
    int node_w;         /* 0: no NODE column */
} tv_layout_t;

static tv_layout_t tv_layout(const tv_sample_t *s, const tv_view_t *v)
{
    tv_layout_t l = { 5, TV_BAR_PLAIN, v->node_col ? 4 : 0 };  /* "TOPIC", "NODE" */
    int fixed = 0;

    for (size_t i = 0; i < s->n; i++) {
        int n = (int)strlen(s->topics[i].name);
        if (n > l.name_w)
            l.name_w = n;
        int nw = s->topics[i].node ? (int)strlen(s->topics[i].node) : 0;
        if (l.node_w && nw > l.node_w)
            l.node_w = nw;
    }
    if (l.node_w)
        fixed += l.node_w + 1;
    if (v->width <= 0)
        return l;  /* not a terminal: nothing is cut */
    if (l.name_w > TV_NAME_MAX)
        l.name_w = TV_NAME_MAX;
    for (size_t c = 0; c < TV_NCOLS; c++)
        fixed += tv_cols[c].w + 1;
    fixed += 8;  /* " [" "] " "100%" */
    l.bar_w = v->width - fixed - l.name_w;
    if (l.bar_w < TV_BAR_MIN && l.name_w > TV_NAME_MIN) {
        l.name_w -= TV_BAR_MIN - l.bar_w;
        if (l.name_w < TV_NAME_MIN)
            l.name_w = TV_NAME_MIN;
        l.bar_w = v->width - fixed - l.name_w;
    }
    if (l.bar_w < TV_BAR_MIN)
        l.bar_w = TV_BAR_MIN;
    if (l.bar_w > TV_BAR_MAX)
        l.bar_w = TV_BAR_MAX;
    return l;
}

static void tv_header(tv_buf_t *b, const tv_sample_t *s, const tv_view_t *v)
{
    const tv_server_t *x = &s->srv;
    char up[32], sz[32], pr[32], ar[32];
    tv_text_t t = { .len = 0 };

    tv_add(&t, "sluice top  %s  %s  up %s  %" PRIu64 " connections  %" PRIu64
               " topics  every %gs  sort: %s%s",
           v->addr ? v->addr : "", x->version, tv_uptime(up, sizeof up, x->uptime_s),
           x->connections, x->topics, v->interval, tv_key_name(v->key),
           v->reverse ? " (reversed)" : "");
    tv_emit(b, v, &t, "1");
    t.len = 0;
    tv_add(&t, "messages %" PRIu64 "  bytes %s  parked %" PRIu64 "  pub/s %s  ack/s %s"
               "  redelivered %" PRIu64 "  dead %" PRIu64 "  rejected %" PRIu64 "  redis %s",
           x->messages, tv_size(sz, sizeof sz, x->bytes), x->blocked,
           tv_rate_str(pr, sizeof pr, x->pub_rate, 12), tv_rate_str(ar, sizeof ar, x->ack_rate, 12),
           x->c.redelivered, x->c.dead, x->c.rejected,
           x->redis_connected ? "connected" : "off");
    tv_emit(b, v, &t, NULL);
    t.len = 0;
    tv_emit(b, v, &t, NULL);
}

/* The column titles; the sort column's is marked with '*'. */
static void tv_titles(tv_buf_t *b, const tv_view_t *v, const tv_layout_t *l)
{
    tv_text_t t = { .len = 0 };

    tv_add(&t, "%-*s", l->name_w, v->key == TV_KEY_NAME ? "TOPIC*" : "TOPIC");
    if (l->node_w)
        tv_add(&t, " %-*s", l->node_w, "NODE");
    for (size_t c = 0; c < TV_NCOLS; c++) {
        char label[16];
        snprintf(label, sizeof label, "%s%s", v->key == tv_cols[c].key ? "*" : "",
                 tv_cols[c].label);
        tv_add(&t, " %*s", tv_cols[c].w, label);  /* every width has room for the '*' */
    }
    tv_add(&t, " %sBYTES/MAX", v->key == TV_KEY_BYTES ? "*" : "");
    tv_emit(b, v, &t, "7");
}

static void tv_row(tv_buf_t *b, const tv_view_t *v, const tv_layout_t *l, const tv_topic_t *r)
{
    const uint64_t nums[] = {r->ready, r->delayed, r->in_flight, r->blocked, r->consumers, 0, 0,
                             r->c.dead};
    tv_text_t t = { .len = 0 };
    char num[32];

    if ((int)strlen(r->name) > l->name_w)  /* cut long names, and show it */
        tv_add(&t, "%.*s~", l->name_w - 1, r->name);
    else
        tv_add(&t, "%-*s", l->name_w, r->name);
    if (l->node_w)
        tv_add(&t, " %-*s", l->node_w, r->node ? r->node : "-");
    for (size_t c = 0; c < TV_NCOLS; c++) {
        const char *s;
        if (tv_cols[c].key == TV_KEY_PUB)
            s = tv_rate_str(num, sizeof num, r->pub_rate, tv_cols[c].w);
        else if (tv_cols[c].key == TV_KEY_ACK)
            s = tv_rate_str(num, sizeof num, r->ack_rate, tv_cols[c].w);
        else
            s = tv_count(num, sizeof num, nums[c], tv_cols[c].w);
        tv_add(&t, " %*s", tv_cols[c].w, s);
    }
    double fill = r->max_bytes ? (double)r->bytes / (double)r->max_bytes : 0;
    if (fill > 1)
        fill = 1;
    int marks = (int)(fill * l->bar_w + 0.5);
    if (marks == 0 && r->bytes > 0)
        marks = 1;  /* something is held: never an empty-looking bar */
    tv_add(&t, " [");
    for (int i = 0; i < l->bar_w; i++)
        tv_add(&t, "%c", i < marks ? '#' : '.');
    tv_add(&t, "] %3d%%", (int)(fill * 100 + 0.5));
    tv_emit(b, v, &t, NULL);
}

static void tv_help(tv_buf_t *b, const tv_view_t *v)
{
    tv_text_t t = { .len = 0 };

    tv_emit(b, v, &t, NULL);
    tv_add(&t, "q quit  sort: n name r ready d delay f inflt k parked c cons p pub a ack"
               " x dead b bytes  < > column  i invert");
    tv_emit(b, v, &t, "2");
}

int tv_render(tv_buf_t *b, const tv_sample_t *s, const tv_view_t *v)
{
    tv_layout_t l = tv_layout(s, v);
    size_t rows = s->n;

    b->len = 0;
    b->oom = false;
    if (v->ansi)
        tv_puts(b, "\033[H");
    tv_header(b, s, v);
    tv_titles(b, v, &l);
    if (v->height > 0) {
        /* header 3, titles 1, help 2, and the last line left empty: a
         * newline on a terminal's last line would scroll the frame */
        int room = v->height - 5 - (v->help ? 2 : 0);
        rows = room > 0 ? (size_t)room : 0;
        if (rows < s->n && rows > 0)
            rows--;  /* keep a line to say how many are not shown */
        if (rows > s->n)
            rows = s->n;
    }
    for (size_t i = 0; i < rows; i++)
        tv_row(b, v, &l, &s->topics[i]);
    if (rows < s->n) {
        tv_text_t t = { .len = 0 };
        tv_add(&t, "... %zu more topics", s->n - rows);
        tv_emit(b, v, &t, NULL);
    }
    if (v->help)
        tv_help(b, v);
    if (v->ansi)
        tv_puts(b, "\033[J");
    return b->oom ? -1 : 0;
}
