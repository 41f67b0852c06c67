/* check_net.c: end-to-end protocol tests against the real sluiced: the
 * helpers every theme shares, and the runner. The tests themselves are in
 * check_net_basic.c (commands and formats), check_net_deliver.c
 * (consumers, acks, redelivery), check_net_bounds.c (bounds and
 * backpressure) and check_net_input.c (limits and bad input).
 */
#include "check_net.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NET_IO_MS 10000

/* Does yaml set this top-level key? */
static bool net_has_key(const char *yaml, const char *key)
{
    size_t n = strlen(key);

    for (const char *p = yaml; p != NULL; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, key, n) == 0 && p[n] == ':')
            return true;
    }
    return false;
}

/* Daemons of the running test. A failed check exits the test's process:
 * an atexit handler stops them. A test killed on its timeout runs no
 * handler: a guard process, outside the test's process group, kills its
 * daemon when the test's end of a pipe closes without a word. */
#define NET_MAX_DAEMONS 4
static struct {
    sd_t *d;
    int guard_fd;
    pid_t guard;
} net_daemons[NET_MAX_DAEMONS];

static pid_t net_guard(const sd_t *d, int *fd)
{
    int p[2];
    pid_t g;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    g = fork();
    ck_assert_int_ge(g, 0);
    if (g == 0) {
        char b, cmd[128];
        int null = open("/dev/null", O_RDWR);
        setpgid(0, 0);
        /* Hold nothing of the test's but the pipe (not its stdout). */
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        for (int i = 3; i < 1024; i++)
            if (i != p[0])
                close(i);
        if (read(p[0], &b, 1) == 1)
            _exit(0);
        kill(d->pid, SIGKILL);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
        if (strncmp(d->dir, "/tmp/sluice-test-", 17) == 0 && system(cmd) != 0)
            _exit(1);
        _exit(0);
    }
    close(p[0]);
    *fd = p[1];
    return g;
}

/* The daemon in slot i is being stopped the normal way. */
static void net_unguard(int i)
{
    ssize_t n = write(net_daemons[i].guard_fd, "s", 1);

    (void)n;
    close(net_daemons[i].guard_fd);
    waitpid(net_daemons[i].guard, NULL, 0);
    net_daemons[i].d = NULL;
}

static void net_kill_leftovers(void)
{
    for (int i = 0; i < NET_MAX_DAEMONS; i++) {
        sd_t *d = net_daemons[i].d;
        if (d == NULL)
            continue;
        net_unguard(i);
        kill(d->pid, SIGKILL);
        sd_stop(d); /* reaps, shows its log, removes its directory */
    }
}

void net_start(sd_t *d, const char *yaml)
{
    static bool registered;
    char conf[8192];
    int slot = 0;

    if (!registered) {
        atexit(net_kill_leftovers); /* a failed check exits the test's process */
        registered = true;
    }
    while (slot < NET_MAX_DAEMONS && net_daemons[slot].d != NULL)
        slot++;
    ck_assert_int_lt(slot, NET_MAX_DAEMONS);
    /* Nothing may bind a fixed port: neither the listener nor the admin one. */
    snprintf(conf, sizeof conf, "%s%s%s",
             net_has_key(yaml, "listen") ? "" : "listen: [127.0.0.1:0]\n",
             net_has_key(yaml, "admin") ? "" : "admin:\n  listen: \"\"\n", yaml);
    ck_assert_msg(sd_start(d, conf) == 0, "sluiced did not start with:\n%s", conf);
    net_daemons[slot].d = d;
    net_daemons[slot].guard = net_guard(d, &net_daemons[slot].guard_fd);
    ck_assert_int_gt(d->port, 0);
}

void net_stop(sd_t *d)
{
    for (int i = 0; i < NET_MAX_DAEMONS; i++)
        if (net_daemons[i].d == d)
            net_unguard(i);
    ck_assert_int_eq(sd_stop(d), 0);
}

tc_t *net_open(const sd_t *d)
{
    tc_t *c = tc_open(d);

    ck_assert_ptr_nonnull(c);
    return c;
}

void net_send(tc_t *c, const void *data, size_t len)
{
    ck_assert_int_eq(tc_send(c, data, len), 0);
}

void net_sendf(tc_t *c, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof buf);
    net_send(c, buf, (size_t)n);
}

void net_puts(tc_t *c, const char *s)
{
    net_send(c, s, strlen(s));
}

const char *net_reply(tc_t *c)
{
    const char *l = tc_reply_line(c);

    return l ? l : "(no reply)";
}

void net_expect_stats(tc_t *c)
{
    const char *got = net_reply(c);

    ck_assert_msg(c->r.type == REPLY_STATS, "expected +STATS, got: %s", got);
}

/* Have at least n unread bytes in c's buffer. */
static void net_fill(tc_t *c, size_t n)
{
    while (c->len - c->off < n) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        ssize_t got;

        if (c->off > 0) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        while (c->cap < n + 1) {
            char *p = realloc(c->buf, c->cap * 2);
            ck_assert_ptr_nonnull(p);
            c->buf = p;
            c->cap *= 2;
        }
        ck_assert_msg(poll(&pfd, 1, NET_IO_MS) == 1, "no bytes from the daemon in time");
        got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        ck_assert_msg(got > 0, "connection closed while %zu more bytes were expected",
                      n - (c->len - c->off));
        c->len += (size_t)got;
    }
}

void net_expect_raw(tc_t *c, const void *want, size_t n)
{
    net_fill(c, n);
    ck_assert_msg(memcmp(c->buf + c->off, want, n) == 0, "expected %zu bytes \"%.*s\", got \"%.*s\"",
                  n, (int)n, (const char *)want, (int)n, c->buf + c->off);
    c->off += n;
}

const char *net_raw(tc_t *c, size_t n)
{
    const char *p;

    net_fill(c, n);
    p = c->buf + c->off;
    c->off += n;
    return p;
}

const char *net_raw_line(tc_t *c)
{
    static char line[4096];
    size_t have = 0;
    char *nl;

    for (;;) {
        nl = memchr(c->buf + c->off, '\n', c->len - c->off);
        if (nl != NULL)
            break;
        have = c->len - c->off;
        ck_assert_uint_lt(have, sizeof line - 1);
        net_fill(c, have + 1);
    }
    have = (size_t)(nl - (c->buf + c->off)) + 1;
    ck_assert_uint_lt(have, sizeof line);
    memcpy(line, c->buf + c->off, have);
    line[have] = '\0';
    c->off += have;
    return line;
}

uint64_t net_pub(tc_t *c, const char *topic, const char *payload, size_t len)
{
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "PUB %s %zu\r\n", topic, len);

    net_send(c, hdr, (size_t)n);
    net_send(c, payload, len);
    net_send(c, "\r\n", 2);
    ck_assert_msg(tc_reply(c) == 0, "no reply to PUB %s", topic);
    ck_assert_msg(c->r.type == REPLY_OK && c->r.text_len > 0, "PUB %s: got %s", topic,
                  c->r.type == REPLY_ERROR ? c->r.code : "another reply");
    return strtoull(c->r.text, NULL, 10);
}

uint64_t net_expect_msg(tc_t *c, const char *topic, unsigned attempt, const void *payload,
                        size_t len)
{
    const proto_reply_t *r = &c->r;
    const char *got = net_reply(c);

    ck_assert_msg(r->type == REPLY_MSG, "expected a MSG on %s, got: %s", topic, got);
    ck_assert_msg(r->topic_len == strlen(topic) && memcmp(r->topic, topic, r->topic_len) == 0,
                  "expected a MSG on %s, got: %s", topic, got);
    if (attempt)
        ck_assert_msg(r->attempt == attempt, "expected attempt %u, got: %s", attempt, got);
    ck_assert_msg(r->body_len == len && memcmp(r->body, payload, len) == 0,
                  "payload of %s is not \"%.*s\"", got, (int)len, (const char *)payload);
    return r->id;
}

void net_ping(tc_t *c)
{
    net_puts(c, "PING\r\n");
    NET_EXPECT(c, "+PONG");
}

const char *net_yaml_field(const char *body, size_t len, const char *key)
{
    static char val[256];
    size_t klen = strlen(key);
    const char *p = body, *end = body + len;

    /* Only whole lines count: "ready" must not match "already". */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        if ((size_t)(eol - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == ':' &&
            (p + klen + 1 == eol || p[klen + 1] == ' ')) {
            p += klen + 1;
            if (p < eol)
                p++;
            snprintf(val, sizeof val, "%.*s", (int)(eol - p), p);
            return val;
        }
        p = eol + 1;
    }
    return NULL;
}

const char *net_stat_str(tc_t *c, const char *topic, const char *key)
{
    const char *v;

    if (topic)
        net_sendf(c, "STATS %s\r\n", topic);
    else
        net_puts(c, "STATS\r\n");
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_msg(c->r.type == REPLY_STATS, "STATS %s: no +STATS reply", topic ? topic : "");
    v = net_yaml_field(c->r.body, c->r.body_len, key);
    ck_assert_msg(v != NULL, "STATS %s has no '%s' in:\n%.*s", topic ? topic : "", key,
                  (int)c->r.body_len, c->r.body);
    return v;
}

uint64_t net_stat(tc_t *c, const char *topic, const char *key)
{
    const char *v = net_stat_str(c, topic, key);
    char *end;
    uint64_t n = strtoull(v, &end, 10);

    ck_assert_msg(*v != '\0' && *end == '\0', "STATS field %s is not a number: '%s'", key, v);
    return n;
}

void net_wait_stat(tc_t *c, const char *topic, const char *key, uint64_t want)
{
    uint64_t got = 0;

    for (int i = 0; i < 1000; i++) {
        got = net_stat(c, topic, key);
        if (got == want)
            return;
        usleep(10000);
    }
    ck_abort_msg("STATS %s %s stayed %llu, never %llu", topic ? topic : "", key,
                 (unsigned long long)got, (unsigned long long)want);
}

int main(void)
{
    SRunner *sr = srunner_create(net_basic_suite());
    int failed;

    srunner_add_suite(sr, net_deliver_suite());
    srunner_add_suite(sr, net_bounds_suite());
    srunner_add_suite(sr, net_input_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
