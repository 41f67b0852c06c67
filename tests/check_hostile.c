/* check_hostile.c: clients that try to hurt the broker, against the real
 * daemon: a slowloris, a consumer that never reads, 10,000 idle
 * connections, a flood of connects and disconnects, garbage bytes, a
 * 100 MB line and PUBs announcing 2^63 bytes and more; and junk on the
 * beanstalk listener (random bytes, a 64 MB line, a put announcing 4 GiB,
 * half-sent bodies, workers that vanish holding jobs).
 *
 * Every test ends the same way: a clear outcome for the hostile client (an
 * error reply or a closed connection), other clients served correctly all
 * along, the broker still answering PING, and a clean exit (status 0).
 * Memory is watched from outside, through /proc/PID/status.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define HS_MIB (1024u * 1024u)

/* ---- small helpers ---- */

/* A deterministic byte stream, so a failure replays exactly. */
static uint64_t hs_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}



/* CPU seconds the daemon has used, user and system. */
static double hs_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    const char *p;
    size_t n;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15, counted after the command name in parentheses. */
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                            &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The daemon of the running test. A failed assertion ends the test's
 * process at once: this kills the daemon then, so none is left behind. */
static pid_t hs_live_pid;

static void hs_kill_live(void)
{
    if (hs_live_pid > 0)
        kill(-hs_live_pid, SIGKILL);
}

/* Start the daemon. Under ASan, freed memory sits in a quarantine
 * (256 MiB by default) that RSS would count as if the broker held it:
 * keep it small, so RSS means what the broker holds. */
static void hs_start(sd_t *d, const char *yaml)
{
    static char asan[1024];
    const char *cur = getenv("ASAN_OPTIONS");
    char *env[] = {asan, NULL};

    snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%squarantine_size_mb=4", cur ? cur : "",
             cur && *cur ? ":" : "");
    ck_assert_int_eq(sd_start_ex(d, yaml, env, NULL), 0);
    hs_live_pid = d->pid;
    atexit(hs_kill_live);
}

/* Stop the daemon; it must exit cleanly. */
static void hs_stop(sd_t *d)
{
    hs_live_pid = 0;
    ck_assert_int_eq(sd_stop(d), 0);
}

static tc_t *hs_open(const sd_t *d)
{
    tc_t *c = tc_open(d);

    ck_assert_ptr_nonnull(c);
    return c;
}

static void hs_send(tc_t *c, const void *data, size_t len)
{
    ck_assert_int_eq(tc_send(c, data, len), 0);
}

/* The next reply that is not a push (pushes may come between replies). */
static const char *hs_reply(tc_t *c)
{
    const char *line;

    while ((line = tc_reply_line(c)) != NULL && c->r.type == REPLY_MSG)
        ;
    return line ? line : "(no reply)";
}

/* The next reply that is not a push must start with `prefix`. */
static void hs_expect_prefix(tc_t *c, const char *prefix)
{
    const char *line = hs_reply(c);

    ck_assert_msg(strncmp(line, prefix, strlen(prefix)) == 0, "got '%s', want '%s...'", line,
                  prefix);
}

static void hs_ping(tc_t *c)
{
    hs_send(c, "PING\r\n", 6);
    ck_assert_str_eq(hs_reply(c), "+PONG");
}

/* A field of STATS [topic]; fails the test if it is missing. */
static uint64_t hs_stat(tc_t *c, const char *topic, const char *key)
{
    size_t klen = strlen(key);
    const char *p, *end;

    if (topic)
        ck_assert_int_eq(tc_sendf(c, "STATS %s\r\n", topic), 0);
    else
        hs_send(c, "STATS\r\n", 7);
    hs_expect_prefix(c, "+STATS ");
    p = c->r.body;
    end = p + c->r.body_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if ((size_t)(nl - p) > klen + 1 && memcmp(p, key, klen) == 0 && p[klen] == ':')
            return strtoull(p + klen + 1, NULL, 10);
        p = nl + 1;
    }
    ck_abort_msg("STATS has no '%s'", key);
    return 0;
}

/* Ask STATS until `key` equals want; fails after 30 s. */
static void hs_wait_stat(tc_t *c, const char *topic, const char *key, uint64_t want)
{
    uint64_t until = sd_now_ms() + 30000, v = 0;

    while (sd_now_ms() < until) {
        v = hs_stat(c, topic, key);
        if (v == want)
            return;
        sd_sleep_ms(20);
    }
    ck_abort_msg("STATS %s stayed %" PRIu64 ", want %" PRIu64, key, v, want);
}

/* Wait until the daemon holds exactly `want` descriptors again. */
static void hs_wait_fds(pid_t pid, int want)
{
    uint64_t until = sd_now_ms() + 30000;
    int n = -1;

    while (sd_now_ms() < until) {
        n = sd_fd_count(pid);
        if (n == want)
            return;
        sd_sleep_ms(20);
    }
    ck_abort_msg("the daemon holds %d descriptors, %d at the start", n, want);
}

/* A socket to the daemon, not yet wrapped; -1 on failure. */
static int hs_socket(const sd_t *d, int rcvbuf)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    /* Set before connect, so the window is small from the handshake on. */
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    inet_pton(AF_INET, d->host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Close with a reset instead of a FIN: no TIME_WAIT, and the daemon sees
 * the abrupt end a crashed client gives. */
static void hs_close_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void hs_send_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* True if bytes arrive on fd within ms. */
static bool hs_readable(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    return poll(&pfd, 1, ms) == 1;
}

static void hs_raise_nofile(rlim_t want)
{
    struct rlimit rl;

    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want)
        rl.rlim_max = want; /* works as root; otherwise setrlimit says why */
    rl.rlim_cur = want;
    ck_assert_msg(setrlimit(RLIMIT_NOFILE, &rl) == 0,
                  "cannot raise RLIMIT_NOFILE to %llu: %s (raise the hard limit: ulimit -Hn)",
                  (unsigned long long)want, strerror(errno));
}

/* ---- RSS sampling ---- */

typedef struct hs_sampler {
    pid_t pid;
    atomic_bool stop;
    atomic_uint_fast64_t max_kib;
    pthread_t thread;
} hs_sampler_t;

static void *hs_sampler_run(void *arg)
{
    hs_sampler_t *s = arg;

    while (!atomic_load(&s->stop)) {
        uint64_t kib = sd_rss_kib(s->pid);
        if (kib > atomic_load(&s->max_kib))
            atomic_store(&s->max_kib, kib);
        sd_sleep_ms(100);
    }
    return NULL;
}

static void hs_sampler_start(hs_sampler_t *s, pid_t pid)
{
    s->pid = pid;
    atomic_init(&s->stop, false);
    atomic_init(&s->max_kib, sd_rss_kib(pid));
    ck_assert_int_eq(pthread_create(&s->thread, NULL, hs_sampler_run, s), 0);
}

/* Stop sampling; the largest RSS seen, in KiB. */
static uint64_t hs_sampler_stop(hs_sampler_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    uint64_t last = sd_rss_kib(s->pid);
    uint64_t max = atomic_load(&s->max_kib);
    return last > max ? last : max;
}

/* ---- slowloris ---- */

/* One whole exchange on another connection: PUB, GET, ACK, each checked. */
static void hs_round_trip(tc_t *c, unsigned i)
{
    char payload[16], want[64];
    unsigned long long id;
    const char *line;

    snprintf(payload, sizeof payload, "fast%04u", i);
    ck_assert_int_eq(tc_sendf(c, "PUB fast 8\r\n%s\r\nGET fast\r\n", payload), 0);
    line = tc_reply_line(c);
    ck_assert_ptr_nonnull(line);
    ck_assert_int_eq(sscanf(line, "+OK %llu", &id), 1);
    snprintf(want, sizeof want, "MSG fast %llu 1 8", id);
    ck_assert_str_eq(tc_reply_line(c), want);
    ck_assert_mem_eq(c->r.body, payload, 8);
    ck_assert_int_eq(tc_sendf(c, "ACK %llu\r\n", id), 0);
    ck_assert_str_eq(tc_reply_line(c), "+OK 1");
}

START_TEST(test_slowloris)
{
    static const char pub[] = "PUB slow 10\r\n0123456789\r\n";
    static const char cut[] = "PUB slow 10\r\n01234";
    unsigned long long id;
    char want[64];
    sd_t d;

    hs_start(&d, "");
    tc_t *slow = hs_open(&d), *other = hs_open(&d), *half = hs_open(&d);

    /* One byte every 200 ms; between bytes, another client does a whole
     * round trip: the trickle holds up nobody. */
    for (unsigned i = 0; i < sizeof pub - 1; i++) {
        hs_send(slow, pub + i, 1);
        hs_round_trip(other, i);
        sd_sleep_ms(200);
    }
    ck_assert_int_eq(sscanf(tc_reply_line(slow), "+OK %llu", &id), 1);

    /* The same trickle, cut off mid-payload. */
    for (unsigned i = 0; i < sizeof cut - 1; i++) {
        hs_send(half, cut + i, 1);
        hs_round_trip(other, 100 + i);
        sd_sleep_ms(200);
    }
    tc_close(half);
    hs_wait_stat(other, NULL, "connections", 2);

    /* The whole message arrived, byte for byte; the cut one not at all. */
    hs_send(other, "GET slow\r\n", 10);
    snprintf(want, sizeof want, "MSG slow %llu 1 10", id);
    ck_assert_str_eq(tc_reply_line(other), want);
    ck_assert_mem_eq(other->r.body, "0123456789", 10);
    ck_assert_int_eq(tc_sendf(other, "ACK %llu\r\nGET slow\r\n", id), 0);
    ck_assert_str_eq(tc_reply_line(other), "+OK 1");
    ck_assert_str_eq(tc_reply_line(other), "-TIMEOUT");
    ck_assert_uint_eq(hs_stat(other, "slow", "published"), 1);

    hs_ping(slow);
    hs_ping(other);
    tc_close(slow);
    tc_close(other);
    hs_stop(&d);
}
END_TEST

/* ---- a consumer that never reads ---- */

#define NR_COUNT 20000u
#define NR_SIZE 4096u
#define NR_WINDOW 64u

typedef struct nr_producer {
    const sd_t *d;
    pthread_t thread;
    atomic_bool *producing; /* cleared once every PUB got its reply */
    int failures;
} nr_producer_t;

/* Payload i: its index in 8 digits, then a filler that depends on i. */
static void nr_payload(char *buf, unsigned i)
{
    char head[9];

    snprintf(head, sizeof head, "%08u", i);
    memcpy(buf, head, 8);
    memset(buf + 8, 'a' + (int)(i % 26), NR_SIZE - 8);
}

static bool nr_payload_ok(const char *buf, size_t len, unsigned *index)
{
    char expect[NR_SIZE];
    unsigned i;

    if (len != NR_SIZE || sscanf(buf, "%8u", &i) != 1 || i >= NR_COUNT)
        return false;
    nr_payload(expect, i);
    *index = i;
    return memcmp(buf, expect, NR_SIZE) == 0;
}

static void *nr_produce(void *arg)
{
    nr_producer_t *p = arg;
    static char frame[NR_WINDOW * (NR_SIZE + 64)];
    tc_t *c = tc_open(p->d);

    if (c == NULL) {
        p->failures++;
        atomic_store(p->producing, false);
        return NULL;
    }
    for (unsigned base = 0; base < NR_COUNT; base += NR_WINDOW) {
        size_t n = 0;
        for (unsigned i = base; i < base + NR_WINDOW && i < NR_COUNT; i++) {
            n += (size_t)sprintf(frame + n, "PUB flood %u\r\n", NR_SIZE);
            nr_payload(frame + n, i);
            n += NR_SIZE;
            memcpy(frame + n, "\r\n", 2);
            n += 2;
        }
        if (tc_send(c, frame, n) != 0) {
            p->failures++;
            break;
        }
        for (unsigned i = base; i < base + NR_WINDOW && i < NR_COUNT; i++)
            if (tc_reply(c) != 0 || c->r.type != REPLY_OK)
                p->failures++;
    }
    tc_close(c);
    atomic_store(p->producing, false);
    return NULL;
}

/* The consumer that does read: it acks in batches of 16 and pings now
 * and then, with everything pipelined. */
typedef struct nr_consumer {
    tc_t *g;
    unsigned char seen[NR_COUNT];
    unsigned unique;       /* distinct messages received */
    unsigned unacked;      /* received, not yet in an ACK */
    unsigned pending;      /* ACKs and PINGs sent, replies not yet read */
    unsigned next_ping;    /* ping when unique reaches this */
    char acks[16 * 24 + 8];
    size_t acks_len;
} nr_consumer_t;

static void nr_send_acks(nr_consumer_t *k)
{
    ck_assert_int_eq(tc_sendf(k->g, "ACK%s\r\n", k->acks), 0);
    k->acks_len = 0;
    k->acks[0] = '\0';
    k->unacked = 0;
    k->pending++;
}

/* Read one push or reply and act on it. */
static void nr_take(nr_consumer_t *k)
{
    tc_t *g = k->g;
    unsigned i;

    ck_assert_int_eq(tc_reply(g), 0);
    if (g->r.type == REPLY_OK || g->r.type == REPLY_PONG) {
        ck_assert_uint_gt(k->pending, 0);
        k->pending--;
        return;
    }
    ck_assert_int_eq(g->r.type, REPLY_MSG);
    ck_assert_msg(nr_payload_ok(g->r.body, g->r.body_len, &i), "a corrupt or unknown payload");
    if (!k->seen[i]) {
        k->seen[i] = 1;
        k->unique++;
    }
    k->acks_len += (size_t)sprintf(k->acks + k->acks_len, " %" PRIu64, g->r.id);
    if (++k->unacked == 16)
        nr_send_acks(k);
    if (k->unique >= k->next_ping) {
        hs_send(g, "PING\r\n", 6);
        k->pending++;
        k->next_ping += 1000;
    }
}

/* Consume until the producer is done (if any) and nothing more comes:
 * every ACK sent and answered, and either `want` distinct messages seen or
 * (want 0) none left ready for us. Fails after two minutes. */
static void nr_consume(nr_consumer_t *k, tc_t *ctl, atomic_bool *producing, unsigned want)
{
    uint64_t until = sd_now_ms() + 120000;

    for (;;) {
        ck_assert_msg(sd_now_ms() < until, "the good consumer starved: %u of %u", k->unique,
                      NR_COUNT);
        if (k->g->off < k->g->len || hs_readable(k->g->fd, 50)) {
            nr_take(k);
            continue;
        }
        if (k->unacked > 0) {
            nr_send_acks(k);
            continue;
        }
        if (k->pending > 0 || (producing && atomic_load(producing)))
            continue;
        if (want ? k->unique >= want : hs_stat(ctl, "flood", "ready") == 0)
            return;
    }
}

START_TEST(test_never_reading_consumer)
{
    static nr_consumer_t k;
    nr_producer_t prod = {0};
    atomic_bool producing;
    hs_sampler_t rss;
    uint64_t base_kib, max_kib, held, bound_kib;
    sd_t d;

    hs_start(&d, "limits: {output_buffer: 64KiB}\n"
                 "topics:\n  flood: {max_bytes: 16MiB, max_messages: 100000}\n");
    tc_t *ctl = hs_open(&d);
    memset(&k, 0, sizeof k);
    k.g = hs_open(&d);
    k.next_ping = 1000;
    base_kib = sd_rss_kib(d.pid);

    /* The reader that never reads: a tiny receive window, a huge credit,
     * and subscribed first: round-robin would hand it most of the flow. */
    int never = hs_socket(&d, 4096);
    ck_assert_int_ge(never, 0);
    ck_assert_int_eq(write(never, "SUB flood 1000000\r\n", 19), 19);
    hs_wait_stat(ctl, "flood", "consumers", 1);
    hs_send(k.g, "SUB flood 64\r\n", 14);
    ck_assert_str_eq(tc_reply_line(k.g), "+OK");

    hs_sampler_start(&rss, d.pid);
    prod.d = &d;
    prod.producing = &producing;
    atomic_init(&producing, true);
    ck_assert_int_eq(pthread_create(&prod.thread, NULL, nr_produce, &prod), 0);
    nr_consume(&k, ctl, &producing, 0);
    pthread_join(prod.thread, NULL);
    ck_assert_int_eq(prod.failures, 0);

    /* Everything the never-reader does not hold reached the good consumer,
     * and it holds no more than its output limit and the kernel buffers
     * between us can take (4 MiB of send buffer at most here). */
    held = hs_stat(ctl, "flood", "in_flight");
    ck_assert_uint_eq(k.unique + held, NR_COUNT);
    ck_assert_msg(held * NR_SIZE < 64 * 1024 + 8 * HS_MIB,
                  "the never-reader holds %" PRIu64 " messages", held);
    max_kib = hs_sampler_stop(&rss);
    /* What the topic may hold (16 MiB), the output limits, and slack for
     * the allocator (and for ASan's redzones and quarantine). */
    bound_kib = base_kib + 40 * 1024;
#ifdef __SANITIZE_ADDRESS__
    bound_kib += 24 * 1024;
#endif
    ck_assert_msg(max_kib < bound_kib, "RSS reached %" PRIu64 " KiB (bound %" PRIu64 ")",
                  max_kib, bound_kib);
    fprintf(stderr, "never-reader: held %" PRIu64 " of %u messages; RSS %" PRIu64
            " -> max %" PRIu64 " KiB\n", held, NR_COUNT, base_kib, max_kib);

    /* Its end gives its messages back: the good consumer gets them all. */
    close(never);
    nr_consume(&k, ctl, NULL, NR_COUNT);
    hs_wait_stat(ctl, "flood", "acked", NR_COUNT);
    ck_assert_uint_eq(hs_stat(ctl, "flood", "in_flight"), 0);
    hs_ping(k.g);
    tc_close(k.g);
    tc_close(ctl);
    hs_stop(&d);
}
END_TEST

/* ---- 10,000 idle connections ---- */

#define IDLE_CONNS 10000

/* One batch through a producer and a consumer: 64 PUBs, 64 MSGs, one ACK. */
static void hs_pair_batch(tc_t *p, tc_t *c, unsigned batch)
{
    char frame[64 * 48], ack[64 * 24] = "ACK";
    size_t n = 0;

    for (unsigned i = 0; i < 64; i++)
        n += (size_t)sprintf(frame + n, "PUB pair 8\r\n%08u\r\n", batch * 64 + i);
    hs_send(p, frame, n);
    for (unsigned i = 0; i < 64; i++) {
        ck_assert_int_eq(tc_reply(p), 0);
        ck_assert_int_eq(p->r.type, REPLY_OK);
    }
    for (unsigned i = 0; i < 64; i++) {
        char want[16];
        ck_assert_int_eq(tc_reply(c), 0);
        ck_assert_int_eq(c->r.type, REPLY_MSG);
        snprintf(want, sizeof want, "%08u", batch * 64 + i);
        ck_assert_mem_eq(c->r.body, want, 8);
        snprintf(ack + strlen(ack), sizeof ack - strlen(ack), " %" PRIu64, c->r.id);
    }
    ck_assert_int_eq(tc_sendf(c, "%s\r\n", ack), 0);
    ck_assert_str_eq(tc_reply_line(c), "+OK 64");
}

START_TEST(test_ten_thousand_idle)
{
    static int fds[IDLE_CONNS];
    unsigned batch = 0;
    int base_fds;
    sd_t d;

    /* The daemon inherits the limit; it must hold all of them and more. */
    hs_raise_nofile(IDLE_CONNS + 1000);
    hs_start(&d, "limits: {max_connections: 10100}\n");
    tc_t *ctl = hs_open(&d), *p = hs_open(&d), *c = hs_open(&d);
    hs_send(c, "SUB pair 64\r\n", 13);
    ck_assert_str_eq(tc_reply_line(c), "+OK");
    base_fds = sd_fd_count(d.pid);

    /* The pair keeps working while the idle crowd gathers... */
    for (int i = 0; i < IDLE_CONNS; i++) {
        fds[i] = hs_socket(&d, 0);
        ck_assert_msg(fds[i] >= 0, "connection %d: %s", i, strerror(errno));
        if (i % 500 == 499)
            hs_pair_batch(p, c, batch++);
    }
    hs_wait_stat(ctl, NULL, "connections", IDLE_CONNS + 3);
    ck_assert_int_eq(sd_fd_count(d.pid), base_fds + IDLE_CONNS);

    /* ...and once it is all there: 10,000 more messages. */
    for (unsigned i = 0; i < 157; i++)
        hs_pair_batch(p, c, batch++);

    /* The idle ones are alive and served. */
    for (int i = 0; i < IDLE_CONNS; i += 97) {
        char buf[16];
        ck_assert_int_eq(write(fds[i], "PING\r\n", 6), 6);
        ck_assert(hs_readable(fds[i], 10000));
        ck_assert_int_eq(read(fds[i], buf, sizeof buf), 7);
        ck_assert_mem_eq(buf, "+PONG\r\n", 7);
    }
    fprintf(stderr, "idle: %d connections held, %u messages through the pair\n", IDLE_CONNS,
            batch * 64);

    for (int i = 0; i < IDLE_CONNS; i++)
        close(fds[i]);
    hs_wait_stat(ctl, NULL, "connections", 3);
    hs_wait_fds(d.pid, base_fds);
    ck_assert_uint_eq(hs_stat(ctl, "pair", "acked"), (uint64_t)batch * 64);
    hs_ping(ctl);
    hs_ping(p);
    hs_ping(c);
    tc_close(ctl);
    tc_close(p);
    tc_close(c);
    hs_stop(&d);
}
END_TEST

/* ---- a flood of connects and disconnects ---- */

#define FLOOD_CONNS 20000

START_TEST(test_connect_flood)
{
    static const char midpub[] = "PUB flood.pub 100\r\nonly half of the payload arrives, then";
    int base_fds;
    sd_t d;

    hs_start(&d, "topics:\n  flood: {max_deliveries: 0}\n");
    tc_t *ctl = hs_open(&d);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(tc_sendf(ctl, "PUB flood 6\r\nmsg-%02d\r\n", i), 0);
    for (int i = 0; i < 10; i++)
        hs_expect_prefix(ctl, "+OK ");
    base_fds = sd_fd_count(d.pid);

    /* Every way of leaving: at once, after a command, mid-payload, as a
     * consumer with pushes on the way; with a FIN or with a reset. */
    for (int i = 0; i < FLOOD_CONNS; i++) {
        int fd = hs_socket(&d, 0);
        ck_assert_msg(fd >= 0, "connection %d: %s", i, strerror(errno));
        switch (i % 5) {
        case 0:
            close(fd);
            break;
        case 1:
            ck_assert_int_eq(write(fd, "PING\r\n", 6), 6);
            hs_close_rst(fd);
            break;
        case 2:
            ck_assert_int_eq(write(fd, midpub, sizeof midpub - 1), (ssize_t)sizeof midpub - 1);
            hs_close_rst(fd);
            break;
        case 3:
            ck_assert_int_eq(write(fd, "SUB flood 4\r\n", 13), 13);
            close(fd);
            break;
        default:
            hs_close_rst(fd);
            break;
        }
    }
    hs_wait_stat(ctl, NULL, "connections", 1);
    hs_wait_fds(d.pid, base_fds);
    fprintf(stderr, "flood: %d connects and disconnects\n", FLOOD_CONNS);

    /* Nothing half-sent was enqueued; the ten messages are all there,
     * intact, whatever the departed consumers did with them. */
    ck_assert_uint_eq(hs_stat(ctl, NULL, "published"), 10);
    hs_wait_stat(ctl, "flood", "in_flight", 0);
    ck_assert_uint_eq(hs_stat(ctl, "flood", "ready"), 10);
    bool seen[10] = {false};
    for (int i = 0; i < 10; i++) {
        unsigned k;
        hs_send(ctl, "GET flood\r\n", 11);
        ck_assert_ptr_nonnull(tc_reply_line(ctl));
        ck_assert_int_eq(ctl->r.type, REPLY_MSG);
        ck_assert_uint_eq(ctl->r.body_len, 6);
        ck_assert_int_eq(sscanf(ctl->r.body, "msg-%2u", &k), 1);
        ck_assert(k < 10 && !seen[k]);
        seen[k] = true;
        ck_assert_int_eq(tc_sendf(ctl, "ACK %" PRIu64 "\r\n", ctl->r.id), 0);
        ck_assert_str_eq(tc_reply_line(ctl), "+OK 1");
    }
    hs_ping(ctl);
    tc_close(ctl);
    hs_stop(&d);
}
END_TEST

/* ---- pipelining behind a waiting GET ---- */

START_TEST(test_pipelined_behind_waiting_get)
{
    /* Enough PINGs to fill what the daemon buffers (a whole line and
     * payload, max_line + max_message) while the GET holds them back. */
    const unsigned bulk = (4096 + 16384) / 6 + 20, trickle = 25;
    char *pings = malloc(bulk * 6);
    double cpu;
    uint64_t t0, wall;
    sd_t d;

    ck_assert_ptr_nonnull(pings);
    for (unsigned i = 0; i < bulk; i++)
        memcpy(pings + i * 6, "PING\r\n", 6);
    hs_start(&d, "limits: {max_line: 4KiB, max_message: 16KiB}\n");
    tc_t *c = hs_open(&d), *other = hs_open(&d);
    hs_send(c, "GET t 3000\r\n", 12);
    hs_send(c, pings, bulk * 6);
    sd_sleep_ms(200);

    /* More bytes keep coming while the buffer is full: the broker must
     * stop reading, not spin on a readable socket. */
    cpu = hs_cpu_s(d.pid);
    t0 = sd_now_ms();
    for (unsigned i = 0; i < trickle * 6; i++) {
        hs_send(c, &"PING\r\n"[i % 6], 1);
        sd_sleep_ms(10);
    }
    cpu = hs_cpu_s(d.pid) - cpu;
    wall = sd_now_ms() - t0;
    hs_ping(other);
    ck_assert_msg(cpu * 1000 < (double)wall / 4, "the daemon used %.2f s of CPU in %.2f s idle",
                  cpu, (double)wall / 1000);
    fprintf(stderr, "behind a waiting GET: %.2f s of CPU over %.2f s\n", cpu,
            (double)wall / 1000);

    /* Then the GET times out and every PING behind it is answered. */
    ck_assert_str_eq(tc_reply_line(c), "-TIMEOUT");
    for (unsigned i = 0; i < bulk + trickle; i++)
        ck_assert_str_eq(tc_reply_line(c), "+PONG");
    tc_close(c);
    tc_close(other);
    free(pings);
    hs_stop(&d);
}
END_TEST

/* ---- garbage ---- */

/* Write all of data while reading whatever comes back (the daemon stops
 * reading a client that does not take its replies). Returns true if the
 * daemon closed the connection; its replies are left in c's buffer. */
static bool hs_exchange(tc_t *c, const char *data, size_t len)
{
    size_t off = 0;
    bool closed = false;

    while (!closed) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN | (off < len ? POLLOUT : 0)};
        if (poll(&pfd, 1, 10000) != 1)
            break;
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (c->len == c->cap) {
                c->cap *= 2;
                c->buf = realloc(c->buf, c->cap);
                ck_assert_ptr_nonnull(c->buf);
            }
            ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
            if (n > 0)
                c->len += (size_t)n;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                closed = true;
        }
        if (!closed && off < len && (pfd.revents & POLLOUT)) {
            ssize_t n = send(c->fd, data + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                closed = true;
        }
        if (off == len && !closed && !hs_readable(c->fd, 300))
            break;
    }
    return closed;
}

/* Feed 1 MiB of garbage; every reply must be an error, and a broker that
 * kept the connection must still answer on it. */
static void hs_garbage(bool printable, uint64_t seed)
{
    size_t len = HS_MIB, errors = 0;
    char *junk = malloc(len);
    bool closed, last_too_long = false;
    sd_t d;

    ck_assert_ptr_nonnull(junk);
    for (size_t i = 0; i < len; i++) {
        uint64_t r = hs_rand(&seed);
        junk[i] = printable ? (r % 61 == 0 ? '\n' : (char)(' ' + r % 95)) : (char)r;
    }
    hs_start(&d, "");
    tc_t *g = hs_open(&d), *other = hs_open(&d);

    closed = hs_exchange(g, junk, len);
    if (!closed) {
        hs_send(g, "\r\nPING\r\n", 8);
        closed = hs_exchange(g, "", 0);
    }
    for (;;) {
        size_t used = 0;
        int r = proto_parse_reply(g->buf + g->off, g->len - g->off, &g->r, &used);
        ck_assert_int_ge(r, 0);
        if (r == 0) {
            size_t before = g->len;
            if (closed)
                break;
            /* The PING's answer is still on its way. */
            closed = hs_exchange(g, "", 0);
            ck_assert_msg(closed || g->len > before, "no +PONG came");
            continue;
        }
        g->off += used;
        if (g->r.type == REPLY_PONG)
            break;
        ck_assert_int_eq(g->r.type, REPLY_ERROR);
        ck_assert_msg(g->r.code_len == 3 && memcmp(g->r.code, "ERR", 3) == 0,
                      "unexpected -%.*s", (int)g->r.code_len, g->r.code);
        last_too_long = g->r.text_len == 13 && memcmp(g->r.text, "line too long", 13) == 0;
        errors++;
    }
    /* Either it answered the PING after the garbage, or it closed after
     * saying the line was too long; nothing else is a clear outcome. */
    if (closed)
        ck_assert(last_too_long);
    else
        ck_assert_int_eq(g->r.type, REPLY_PONG);
    ck_assert_uint_gt(errors, 0);
    fprintf(stderr, "garbage (%s): %zu error replies, %s\n", printable ? "text" : "binary",
            errors, closed ? "then closed" : "connection kept");

    ck_assert_uint_eq(hs_stat(other, NULL, "published"), 0);
    hs_ping(other);
    tc_close(g);
    tc_close(other);
    free(junk);
    hs_stop(&d);
}

START_TEST(test_garbage_binary) { hs_garbage(false, 0x9e3779b97f4a7c15ull); }
END_TEST

START_TEST(test_garbage_text) { hs_garbage(true, 0xd1b54a32d192ed03ull); }
END_TEST

/* ---- a 100 MB line ---- */

static void hs_long_line(const char *yaml)
{
    static char chunk[64 * 1024];
    uint64_t sent = 0, limit = 100ull * 1000 * 1000, base_kib, max_kib;
    hs_sampler_t rss;
    bool refused = false;
    sd_t d;

    memset(chunk, 'x', sizeof chunk);
    hs_start(&d, yaml);
    tc_t *c = hs_open(&d), *other = hs_open(&d);
    hs_send_timeout(c->fd, 10000);
    base_kib = sd_rss_kib(d.pid);
    hs_sampler_start(&rss, d.pid);

    /* Stream it and stop when the socket is closed under us. */
    while (sent < limit) {
        ssize_t n = send(c->fd, chunk, sizeof chunk, MSG_NOSIGNAL);
        if (n <= 0) {
            refused = errno == EPIPE || errno == ECONNRESET;
            break;
        }
        sent += (uint64_t)n;
    }
    max_kib = hs_sampler_stop(&rss);
    ck_assert_msg(refused, "%" PRIu64 " bytes went in without the daemon closing (%s)", sent,
                  strerror(errno));
    /* The reply came before the close (if the reset did not discard it). */
    const char *line = tc_line(c);
    if (line != NULL)
        ck_assert_str_eq(line, "-ERR line too long");
    ck_assert(tc_closed(c, 10000));
    ck_assert_msg(max_kib < base_kib + 8 * 1024, "RSS grew from %" PRIu64 " to %" PRIu64 " KiB",
                  base_kib, max_kib);
    fprintf(stderr, "long line: closed after %" PRIu64 " bytes (reply %s); RSS %" PRIu64
            " -> max %" PRIu64 " KiB\n", sent, line ? "read" : "lost to the reset", base_kib,
            max_kib);

    ck_assert_uint_eq(hs_stat(other, NULL, "connections"), 1);
    hs_ping(other);
    tc_close(c);
    tc_close(other);
    hs_stop(&d);
}

START_TEST(test_line_100mb) { hs_long_line(""); }
END_TEST

START_TEST(test_line_100mb_largest_max_line) { hs_long_line("limits: {max_line: 1MiB}\n"); }
END_TEST

/* ---- PUB announcing 2^63 bytes ---- */

START_TEST(test_pub_2_63)
{
    static char chunk[64 * 1024];
    uint64_t base_kib, max_kib;
    hs_sampler_t rss;
    sd_t d;

    /* What follows the refused line is payload to drop, PINGs included. */
    for (size_t i = 0; i + 6 <= sizeof chunk; i += 6)
        memcpy(chunk + i, "PING\r\n", 6);
    hs_start(&d, "");
    tc_t *c = hs_open(&d), *other = hs_open(&d);
    hs_send_timeout(c->fd, 10000);
    base_kib = sd_rss_kib(d.pid);

    hs_send(c, "PUB big 9223372036854775808\r\n", 29);
    ck_assert_str_eq(tc_reply_line(c),
                     "-TOOBIG message of 9223372036854775808 bytes exceeds max_message 1048576");
    /* 64 MiB more: all read (or the send would time out) and all dropped. */
    hs_sampler_start(&rss, d.pid);
    for (int i = 0; i < 1024; i++) {
        hs_send(c, chunk, sizeof chunk);
        if (i % 128 == 0)
            hs_round_trip(other, (unsigned)i);
    }
    max_kib = hs_sampler_stop(&rss);
    ck_assert_msg(!hs_readable(c->fd, 500), "a reply to discarded bytes");
    ck_assert_msg(max_kib < base_kib + 8 * 1024, "RSS grew from %" PRIu64 " to %" PRIu64 " KiB",
                  base_kib, max_kib);
    fprintf(stderr, "2^63: 64 MiB discarded; RSS %" PRIu64 " -> max %" PRIu64 " KiB\n", base_kib,
            max_kib);

    /* The largest count there is: the same. One past it is no count at
     * all: an error, and the connection goes on. */
    tc_t *c2 = hs_open(&d), *c3 = hs_open(&d);
    hs_send(c2, "PUB big 18446744073709551615\r\nPING\r\n", 36);
    ck_assert_str_eq(tc_reply_line(c2),
                     "-TOOBIG message of 18446744073709551615 bytes exceeds max_message 1048576");
    ck_assert_msg(!hs_readable(c2->fd, 300), "a reply to discarded bytes");
    hs_send(c3, "PUB big 18446744073709551616\r\nPING\r\n", 36);
    ck_assert_str_eq(tc_reply_line(c3), "-ERR bad byte count");
    ck_assert_str_eq(tc_reply_line(c3), "+PONG");

    ck_assert_uint_eq(hs_stat(other, NULL, "published"), 8);
    hs_ping(other);
    tc_close(c);
    tc_close(c2);
    tc_close(c3);
    tc_close(other);
    hs_stop(&d);
}
END_TEST

/* ---- junk on the beanstalk listener ---- */

/* Read beanstalk reply lines until `want` (parse errors only before it). */
static size_t hs_bs_until(tc_t *c, const char *want)
{
    size_t errors = 0;

    for (;;) {
        const char *l = tc_line(c);
        ck_assert_msg(l != NULL, "no '%s' came (closed or silent)", want);
        if (strcmp(l, want) == 0)
            return errors;
        ck_assert_msg(strcmp(l, "UNKNOWN_COMMAND") == 0 || strcmp(l, "BAD_FORMAT") == 0 ||
                          strcmp(l, "EXPECTED_CRLF") == 0 || strcmp(l, "JOB_TOO_BIG") == 0,
                      "unexpected '%s'", l);
        errors++;
    }
}

START_TEST(test_beanstalk_junk)
{
    static char chunk[64 * 1024];
    uint64_t seed = 0x2545f4914f6cdd1dull, base_kib, max_kib;
    size_t len = HS_MIB, errors;
    char *junk = malloc(len);
    hs_sampler_t rss;
    sd_t d;

    ck_assert_ptr_nonnull(junk);
    for (size_t i = 0; i < len; i++) {
        junk[i] = (char)hs_rand(&seed);
        if (junk[i] == 'q') /* no "quit" by chance */
            junk[i] = 'Q';
    }
    hs_start(&d, "beanstalk: {listen: [127.0.0.1:0]}\n");
    ck_assert_int_gt(d.bport, 0);
    tc_t *g = tc_open_port(&d, d.bport), *w = tc_open_port(&d, d.bport), *other = hs_open(&d);
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(w);
    base_kib = sd_rss_kib(d.pid);
    hs_sampler_start(&rss, d.pid);

    /* 1 MiB of random bytes: only parse errors, and the connection lives
     * (a final CRLF ends whatever line the junk left open). */
    hs_send(g, junk, len);
    hs_send(g, "\r\nlist-tube-used\r\n", 18);
    errors = hs_bs_until(g, "USING default");
    ck_assert_uint_gt(errors, 0);

    /* 1 MiB of command-shaped text: whatever it forms is answered, and the
     * connection still follows (blank lines end any body left open). */
    static const char *const words[] = {
        "put ", "use ", "watch ", "ignore ", "peek ", "peek-ready", "peek-delayed", "peek-buried",
        "delete ", "release ", "bury ", "touch ", "kick ", "kick-job ", "stats-job ",
        "stats-tube ", "stats", "list-tubes", "list-tube-used", "list-tubes-watched",
        "pause-tube ", "reserve-job ", "default", "a", "-x", "(b)", " ", "  ", "0", "1", "7", "99",
        "4294967296", "-1", "\r\n", "\r\n", "\r\n", "\n", "\r", "\t"};
    for (size_t n = 0; n + 16 < len;) {
        const char *wd = words[hs_rand(&seed) % (sizeof words / sizeof words[0])];
        memcpy(junk + n, wd, strlen(wd));
        n += strlen(wd);
        junk[n] = '\0';
    }
    hs_send(g, junk, strlen(junk));
    for (int i = 0; i < 150; i++)
        hs_send(g, "\r\n", 2);
    hs_send(g, "use sentinel\r\n", 14);
    for (const char *l; (l = tc_line(g)) != NULL && strcmp(l, "USING sentinel") != 0;)
        ;
    hs_send(g, "use default\r\npause-tube default 0\r\n", 35);
    ck_assert_str_eq(tc_line(g), "USING default");
    ck_assert_str_eq(tc_line(g), "PAUSED"); /* the junk may have paused it */

    /* A 64 MB line: silence, nothing kept, then one BAD_FORMAT. */
    memset(chunk, 'x', sizeof chunk);
    hs_send_timeout(g->fd, 10000);
    for (int i = 0; i < 1024; i++)
        hs_send(g, chunk, sizeof chunk);
    ck_assert_msg(!hs_readable(g->fd, 300), "a reply inside an over-long line");
    hs_send(g, "\r\nlist-tube-used\r\n", 18);
    ck_assert_uint_eq(hs_bs_until(g, "USING default"), 1);

    /* A put announcing 4 GiB - 1: its body is skipped as it comes. */
    hs_send(g, "put 0 0 1 4294967295\r\n", 22);
    for (int i = 0; i < 1024; i++)
        hs_send(g, chunk, sizeof chunk);
    ck_assert_msg(!hs_readable(g->fd, 300), "a reply to skipped bytes");
    max_kib = hs_sampler_stop(&rss);
    ck_assert_msg(max_kib < base_kib + 8 * 1024, "RSS grew from %" PRIu64 " to %" PRIu64 " KiB",
                  base_kib, max_kib);
    fprintf(stderr, "beanstalk junk: %zu error replies; RSS %" PRIu64 " -> max %" PRIu64 " KiB\n",
            errors, base_kib, max_kib);
    tc_close(g);

    /* Half-sent bodies and workers that vanish: the broker goes on, and a
     * vanished worker's job is reserved by the next one. */
    for (int i = 0; i < 50; i++) {
        tc_t *h = tc_open_port(&d, d.bport);
        ck_assert_ptr_nonnull(h);
        hs_send(h, "put 0 0 60 1048576\r\nhalf", 24);
        if (i % 2)
            hs_close_rst(h->fd), h->fd = open("/dev/null", O_RDONLY);
        tc_close(h);
    }
    hs_send(w, "put 0 0 60 3\r\njob\r\nreserve\r\n", 28);
    ck_assert_str_eq(tc_line(w), "INSERTED 1");
    ck_assert_str_eq(tc_line(w), "RESERVED 1 3");
    ck_assert_str_eq(tc_line(w), "job");
    hs_close_rst(w->fd);
    w->fd = open("/dev/null", O_RDONLY);
    tc_close(w);
    w = tc_open_port(&d, d.bport);
    ck_assert_ptr_nonnull(w);
    hs_send(w, "reserve-with-timeout 10\r\n", 25);
    ck_assert_str_eq(tc_line(w), "RESERVED 1 3");
    ck_assert_str_eq(tc_line(w), "job");
    hs_send(w, "delete 1\r\nstats-tube default\r\n", 30);
    ck_assert_str_eq(tc_line(w), "DELETED");
    ck_assert_int_eq(strncmp(tc_line(w), "OK ", 3), 0);

    ck_assert_uint_eq(hs_stat(other, NULL, "published"), 1);
    hs_ping(other);
    tc_close(w);
    tc_close(other);
    free(junk);
    hs_stop(&d);
}
END_TEST

static Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *t = tcase_create("hostile");

    tcase_set_timeout(t, 180);
    tcase_add_test(t, test_slowloris);
    tcase_add_test(t, test_never_reading_consumer);
    tcase_add_test(t, test_ten_thousand_idle);
    tcase_add_test(t, test_connect_flood);
    tcase_add_test(t, test_pipelined_behind_waiting_get);
    tcase_add_test(t, test_garbage_binary);
    tcase_add_test(t, test_garbage_text);
    tcase_add_test(t, test_line_100mb);
    tcase_add_test(t, test_line_100mb_largest_max_line);
    tcase_add_test(t, test_pub_2_63);
    tcase_add_test(t, test_beanstalk_junk);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hostile_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
