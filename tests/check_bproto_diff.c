/* check_bproto_diff.c: src/bproto.c's decisions against the real
 * beanstalkd. The test starts beanstalkd (the Debian package; a missing
 * one is a failure) on a loopback socket it binds itself and hands over
 * by socket activation, so no port is guessed. Each case is a byte string
 * of malformed and edge-case input, sent on a fresh connection; every
 * reply beanstalkd gives is classed as one of the parser's error tokens,
 * "ok" (any other reply: the command was accepted) or "closed", and the
 * sequence must equal what bproto_parse decides for the same bytes. When
 * the parser says it needs more, beanstalkd must stay silent too.
 *
 * A second test does the same with seeded random cases built from the
 * pieces the rules care about ($BPROTO_DIFF_SEED picks the seed and runs
 * 20 rounds of 250; by default a fixed seed and 2 rounds).
 *
 * A third compares values: what the parser reads from accepted put, use
 * and kick lines against what beanstalkd shows it read (stats-job, peek,
 * USING, the KICKED count).
 *
 * Silence is judged by one short wait after the expected replies of all
 * cases (their connections are open at once): on a slow machine an extra reply could arrive late and be missed (a lenient
 * result), but a correct run can never fail because of timing. The YAML
 * bodies' keys and their order are compared with beanstalkd's too.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bproto.h"
#include "harness.h"

#define MAXJOB 100          /* beanstalkd -z, and the parser's max_job_size */
#define REPLY_WAIT_MS 10000 /* longest one expected reply may take */
#define SILENCE_MS 300      /* how long "no more replies" is watched for */
#define MAX_CASES 256
#define SEQ_MAX 1024
#define RANDOM_CASES 250   /* per round */

/* ---- beanstalkd, socket-activated ---- */

static pid_t bs_pid;
static sd_guard_t bs_guard;
static struct sockaddr_in bs_addr;

static const char *bs_bin(void)
{
    static char found[512];
    const char *env = getenv("BEANSTALKD"), *path = getenv("PATH");

    if (env != NULL && *env)
        return env;
    while (path != NULL && *path) {
        size_t n = strcspn(path, ":");
        snprintf(found, sizeof found, "%.*s/beanstalkd", (int)n, path);
        if (n > 0 && access(found, X_OK) == 0)
            return found;
        path += n + (path[n] == ':');
    }
    return NULL;
}

static void bs_start(void)
{
    const char *bin = bs_bin();
    socklen_t sl = sizeof bs_addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_msg(bin != NULL, "beanstalkd is not on PATH: this test needs the real one "
                               "(apt-get install beanstalkd; build.sh installs it)");
    memset(&bs_addr, 0, sizeof bs_addr);
    bs_addr.sin_family = AF_INET;
    bs_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&bs_addr, sizeof bs_addr), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&bs_addr, &sl), 0);

    bs_pid = fork();
    ck_assert_int_ge(bs_pid, 0);
    if (bs_pid == 0) {
        char pid[32];
        setpgid(0, 0);
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        if (fd != 3 && (dup2(fd, 3) < 0 || close(fd) < 0))
            _exit(126);
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_PID", pid, 1);
        execl(bin, "beanstalkd", "-z", "100", (char *)NULL);
        _exit(127);
    }
    setpgid(bs_pid, bs_pid);
    bs_guard = sd_guard(bs_pid);
    close(fd);  /* beanstalkd holds the listening socket now */
}

static void bs_stop(void)
{
    kill(bs_pid, SIGTERM);
    waitpid(bs_pid, NULL, 0);
    sd_guard_release(&bs_guard);
}

/* ---- one connection to it, with a reply reader ---- */

typedef struct bconn {
    int fd;
    char buf[4096];
    size_t len;
    bool eof;
} bconn_t;

static void bc_open(bconn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    c->len = 0;
    c->eof = false;
    ck_assert_int_ge(c->fd, 0);
    ck_assert_msg(connect(c->fd, (struct sockaddr *)&bs_addr, sizeof bs_addr) == 0,
                  "connect to beanstalkd: %s", strerror(errno));
}

static void bc_send(bconn_t *c, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        data += w;
        n -= (size_t)w;
    }
}

/* Wait up to ms for more bytes; false on timeout. Sets eof on close. */
static bool bc_fill(bconn_t *c, int ms)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

    if (c->eof || poll(&pfd, 1, ms) <= 0)
        return false;
    ck_assert_uint_lt(c->len, sizeof c->buf);
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (r <= 0) {
        c->eof = true;
        return false;
    }
    c->len += (size_t)r;
    return true;
}

static void bc_drop(bconn_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* The next reply line (without "\r\n") into line; body bytes that follow
 * OK/FOUND/RESERVED are read and dropped, or copied into body when given.
 * Returns false on timeout or close. */
static bool bc_reply(bconn_t *c, int ms, char *line, size_t cap, char *body, size_t bcap)
{
    char *nl;

    while (!(nl = memmem(c->buf, c->len, "\r\n", 2)))
        if (!bc_fill(c, ms))
            return false;
    size_t n = (size_t)(nl - c->buf);
    ck_assert_uint_lt(n, cap);
    memcpy(line, c->buf, n);
    line[n] = '\0';
    bc_drop(c, n + 2);

    unsigned long long a, b;
    size_t blen = 0;
    if (sscanf(line, "OK %llu", &a) == 1)
        blen = (size_t)a;
    else if (sscanf(line, "FOUND %llu %llu", &a, &b) == 2 ||
             sscanf(line, "RESERVED %llu %llu", &a, &b) == 2)
        blen = (size_t)b;
    else
        return true;
    blen += 2;
    while (blen > 0) {
        if (c->len == 0 && !bc_fill(c, ms))
            return false;
        size_t k = c->len < blen ? c->len : blen;
        if (body && k <= bcap) {
            memcpy(body, c->buf, k);
            body += k;
            bcap -= k;
        }
        bc_drop(c, k);
        blen -= k;
    }
    if (body)
        body[-2] = '\0';    /* over the body's "\r\n" */
    return true;
}

/* ---- the cases ---- */

typedef struct dcase {
    char *data;
    size_t len;
} dcase_t;

static dcase_t cases[MAX_CASES];
static size_t ncases;

static void add_n(const char *data, size_t n)
{
    ck_assert_uint_lt(ncases, MAX_CASES);
    cases[ncases].data = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(cases[ncases].data);
    memcpy(cases[ncases].data, data, n);
    cases[ncases++].len = n;
}

static void add(const char *s)
{
    add_n(s, strlen(s));
}

/* head, then `fill` repeated k times, then tail. */
static void add_rep(const char *head, char fill, size_t k, const char *tail)
{
    size_t h = strlen(head), t = strlen(tail);
    char *b = malloc(h + k + t);

    ck_assert_ptr_nonnull(b);
    memcpy(b, head, h);
    memset(b + h, fill, k);
    memcpy(b + h + k, tail, t);
    add_n(b, h + k + t);
    free(b);
}

static void build_cases(void)
{
    static const char *const plain[] = {
        /* lines */
        "\r\n", "foo\r\n", "USE a\r\n", "use a\n", "use a\nuse b\r\n", "use b\r\n\n",
        "use a\rb\r\n", "use a\r\r\n", "\rx\r\nuse b\r\n", "a\r\r\nuse b\r\n",
        /* put */
        "put 0 0 1 1\r\nx\r\n", "put 0 0 0 1\r\nx\r\n", "put 0 0 1 0\r\n\r\n",
        "put  0  0  1  1\r\nx\r\n", "put 007 0 1 1\r\nx\r\n",
        "put 4294967295 4294967295 4294967295 1\r\nx\r\n",
        "put 0 0 1\r\nx\r\n", "put 0 0 1 1 \r\nx\r\n", "put 0 0 1 1x\r\nx\r\n",
        "put 4294967296 0 1 1\r\nx\r\n", "put 0 4294967296 1 1\r\nx\r\n",
        "put 0 0 4294967296 1\r\nx\r\n", "put 0 0 1 4294967296\r\nx\r\n",
        "put -1 0 1 1\r\nx\r\n", "put +1 0 1 1\r\nx\r\n", "put 0\t0 1 1\r\nx\r\n",
        "put\t0 0 1 1\r\nx\r\n", "put\r\n", "put \r\n", "PUT 0 0 1 1\r\nx\r\n",
        "put 0 0 1 1\r\nxyz", "put 0 0 1 1\r\nxyzuse a\r\n", "put 0 0 1 1\r\nx\n\r\n",
        "put 0 0 1 1\r\n\r\n\r\n", "put 0 0 1 1\r\nx\r", "put 0 0 1 1\r\nx",
        "put 0 0 1 3\r\nabc\r\nput 0 0 1 1\r\nz\r\n", "put 0 0 1 100\r\n",
        "put 0 0 1 101x\r\n", "put 99999999999999999999999 0 1 1\r\nx\r\n",
        /* tubes */
        "use foo\r\n", "use -a\r\n", "use a_b\r\n", "use a b\r\n", "use  a\r\n", "use a \r\n",
        "use \r\n", "use\r\n", "use a*\r\n", "use a:b\r\n", "use a\x80\r\n",
        "watch a+/;.$_()-9\r\n", "watch (\r\n", "watch -\r\n", "watch a-\r\n", "watch \r\n",
        "watch\r\n", "watch a \r\n", "ignore default\r\n", "ignore nonexist\r\n",
        "ignore -x\r\n", "ignore\r\n", "stats-tube default\r\n", "stats-tube\r\n",
        "stats-tube  default\r\n", "stats-tube -x\r\n",
        /* pause-tube */
        "pause-tube default 1\r\n", "pause-tube  default  1\r\n", "pause-tubedefault 1\r\n",
        "pause-tubex 1\r\n", "pause-tube default 4294967295\r\n",
        "pause-tube default 4294967296\r\n", "pause-tube default 1 \r\n",
        "pause-tube default 1x\r\n", "pause-tube default 1 2\r\n", "pause-tube default\t1\r\n",
        "pause-tube default -1\r\n", "pause-tube default\r\n", "pause-tube -default 1\r\n",
        "pause-tube a* 1\r\n", "pause-tube *x 1\r\n", "pause-tube\r\n", "pause-tube \r\n",
        "pause-tube default 0\r\n",
        /* ids */
        "peek 1\r\n", "peek\r\n", "peek \r\n", "peek 1 \r\n", "reserve-job 1\r\n",
        "reserve-job  1\r\n", "reserve-job 1 \r\n", "reserve-job x\r\n", "reserve-job\r\n",
        "delete 18446744073709551615\r\n", "delete 18446744073709551616\r\n", "delete -1\r\n",
        "delete +1\r\n", "delete  1\r\n", "delete 1 \r\n", "delete 01\r\n", "delete\r\n",
        "delete x\r\n", "touch 1\r\n", "touch  1\r\n", "touch 1 \r\n", "touch\r\n",
        "kick-job 1\r\n", "kick-job  1\r\n", "kick-job 1 \r\n", "kick-job x\r\n", "kick-job\r\n",
        "stats-job 1\r\n", "stats-job  1\r\n", "stats-job 1 \r\n", "stats-job x\r\n",
        "stats-job\r\n", "stats-jobx\r\n",
        "release 1 2 3\r\n", "release  1  2  3\r\n", "release 1 2\r\n", "release 1 2 3 \r\n",
        "release 1 4294967296 3\r\n", "release 1 2 4294967296\r\n", "release 1 2 3x\r\n",
        "bury 1 2\r\n", "bury  1  2\r\n", "bury 1\r\n", "bury 1 2 3\r\n", "bury 1 2 \r\n",
        "bury 1 4294967296\r\n",
        /* reserve: only forms that answer at once or within a second */
        "put 0 0 1 1\r\nx\r\nreserve\r\n", "reserve \r\n", "reservex\r\n",
        "reserve-with-timeout 0\r\n", "reserve-with-timeout  0\r\n",
        "reserve-with-timeout 0 \r\n", "reserve-with-timeout abc\r\n",
        "reserve-with-timeout \r\n", "reserve-with-timeout 0x5\r\n",
        "reserve-with-timeout -0\r\n", "reserve-with-timeout 4294967296\r\n",
        "reserve-with-timeout 9223372036854775808\r\n",
        "reserve-with-timeout -9223372036854775809\r\n",
        "reserve-with-timeout 99999999999999999999999\r\n", "reserve-with-timeout\r\n",
        "reserve-with-timeoutx\r\n", "reserve-with-timeout 1x\r\n",
        "reserve-with-timeout 4294967297\r\n",
        /* kick */
        "kick 10\r\n", "kick  3\r\n", "kick \t5\r\n", "kick +3\r\n", "kick -1\r\n",
        "kick 5abc\r\n", "kick 5 6\r\n", "kick 3 \r\n", "kick 0x5\r\n",
        "kick 18446744073709551615\r\n", "kick 18446744073709551616\r\n", "kick \r\n",
        "kick -\r\n", "kick x\r\n", "kick\r\n", "kickx 1\r\n",
        /* no arguments */
        "peek-ready\r\n", "peek-delayed\r\n", "peek-buried\r\n", "stats\r\n", "list-tubes\r\n",
        "list-tube-used\r\n", "list-tubes-watched\r\n", "peek-ready \r\n", "peek-readyx\r\n",
        "peek-delayedx\r\n", "peek-buriedx\r\n", "stats \r\n", "statsx\r\n",
        "list-tubes \r\n", "list-tubesx\r\n", "list-tube-used \r\n", "list-tube-usedx\r\n",
        "list-tubes-watched \r\n", "list-tubes-watchedx\r\n", "list\r\n", "peekx\r\n",
        /* quit */
        "quit\r\n", "quit \r\n", "quitx\r\n", "qui\r\n", "use a\r\nquit\r\nuse b\r\n",
    };

    ncases = 0;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        add(plain[i]);
    /* NUL bytes */
    add_n("foo\0\r\n", 6);
    add_n("\0\r\n", 3);
    add_n("use a\0b\r\n", 9);
    add_n("quit\0\r\n", 7);
    add_n("put 0 0 1 4\r\n\r\n\0x\r\n", 19);
    /* long names and lines */
    add_rep("use ", 'a', 200, "\r\n");
    add_rep("use ", 'a', 201, "\r\n");
    add_rep("use ", 'a', 218, "\r\n");
    add_rep("use ", 'a', 219, "\r\n");
    add_rep("use ", 'a', 220, "\r\nuse b\r\n");
    add_rep("watch ", 'a', 201, "\r\n");
    add_rep("pause-tube ", 'a', 200, " 1\r\n");
    add_rep("pause-tube ", 'a', 201, " 1\r\n");
    add_rep("", 'x', 222, "\r\nuse b\r\n");
    add_rep("", 'x', 223, "\r\nuse b\r\nuse c\r\n");
    add_rep("", 'x', 224, "use b\r\n");
    add_rep("", 'x', 300, "\r\nuse b\r\n");
    add_rep("", 'x', 300, "");
    add_rep("", 'x', 224 + 223, "\r\nuse b\r\nuse c\r\n");
    add_rep("", 'x', 224 + 222, "\r\nuse b\r\nuse c\r\n");
    add_rep("", 'x', 224, "a\rb\r\nuse b\r\nuse c\r\n");
    add_rep("a\rb", 'x', 230, "\r\nuse b\r\n");
    add_rep("", 'x', 1000, "\r\nlist-tube-used\r\n");
    /* bodies over the limit: skipped, then JOB_TOO_BIG */
    add_rep("put 0 0 1 101\r\n", 'y', 103, "use a\r\n");
    add_rep("put 0 0 1 101\r\n", 'y', 104, "use a\r\n");
    add_rep("put 0 0 1 101\r\n", 'y', 102, "");
    add_rep("put 0 0 1 101x\r\n", 'y', 103, "use a\r\n");
    add_rep("put 0 0 1 100\r\n", 'y', 100, "\r\n");
    add_rep("put 0 0 1 100\r\n", 'y', 102, "use a\r\n");
}

/* ---- the two sides ---- */

static void seq_add(char *seq, const char *tok)
{
    size_t n = strlen(seq);

    ck_assert_uint_lt(n + strlen(tok) + 2, SEQ_MAX);
    snprintf(seq + n, SEQ_MAX - n, "%s%s", n ? " " : "", tok);
}

/* What bproto decides: one token per reply, "closed" after quit, and the
 * number of replies. */
static size_t parser_seq(const dcase_t *k, char *seq, bool *closes)
{
    bproto_parser_t p;
    size_t off = 0, replies = 0;

    seq[0] = '\0';
    *closes = false;
    bproto_parser_init(&p, MAXJOB);
    for (;;) {
        bproto_cmd_t m;
        size_t used;
        const char *err;
        bproto_result_t r = bproto_parse(&p, k->data + off, k->len - off, &m, &used, &err);
        off += used;
        if (r == BPROTO_NEED_MORE)
            return replies;
        if (r == BPROTO_CMD && m.type == BCMD_QUIT) {
            seq_add(seq, "closed");
            *closes = true;
            return replies;
        }
        char tok[32];
        snprintf(tok, sizeof tok, "%.*s", r == BPROTO_ERROR ? (int)strlen(err) - 2 : 2,
                 r == BPROTO_ERROR ? err : "ok");
        seq_add(seq, tok);
        replies++;
    }
}

static const char *classify(const char *line)
{
    static const char *const errors[] = { "BAD_FORMAT", "UNKNOWN_COMMAND", "EXPECTED_CRLF",
                                          "JOB_TOO_BIG" };

    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (strcmp(line, errors[i]) == 0)
            return errors[i];
    return "ok";
}

/* What beanstalkd does with the same bytes, read as far as the parser's
 * count of replies (and a close). Every case has its own connection,
 * opened and sent to before any is read, so the silence watches of all
 * cases overlap (server_tail). */
static void server_head(bconn_t *c, const dcase_t *k, size_t replies, bool closes, char *seq)
{
    char line[512];

    seq[0] = '\0';
    for (size_t i = 0; i < replies; i++) {
        if (!bc_reply(c, REPLY_WAIT_MS, line, sizeof line, NULL, 0)) {
            seq_add(seq, c->eof ? "closed" : "(silence)");
            c->eof = true;  /* nothing more to learn */
            return;
        }
        seq_add(seq, classify(line));
    }
    if (closes) {
        while (bc_fill(c, REPLY_WAIT_MS))
            ;
        seq_add(seq, c->eof ? "closed" : "(open)");
        c->eof = true;
    }
    (void)k;
}

/* After the common wait: anything more that arrived is a difference. */
static void server_tail(bconn_t *c, char *seq)
{
    char line[512];

    if (c->eof)
        return;
    if (bc_reply(c, 0, line, sizeof line, NULL, 0)) {
        seq_add(seq, classify(line));
        seq_add(seq, "(more)");
    } else if (c->eof) {
        seq_add(seq, "closed");
    }
}

/* The case as C-ish text for a failure message (long runs shortened). */
static void show(const dcase_t *k, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < k->len && o + 16 < cap; i++) {
        size_t run = 1;
        while (i + run < k->len && k->data[i + run] == k->data[i])
            run++;
        unsigned char ch = (unsigned char)k->data[i];
        char one[8];
        if (ch == '\r' || ch == '\n')
            snprintf(one, sizeof one, "\\%c", ch == '\r' ? 'r' : 'n');
        else if (ch < 0x20 || ch >= 0x7f || ch == '\\')
            snprintf(one, sizeof one, "\\x%02x", ch);
        else
            snprintf(one, sizeof one, "%c", ch);
        if (run > 8) {
            o += (size_t)snprintf(out + o, cap - o, "%s*%zu", one, run);
            i += run - 1;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "%s", one);
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
}

/* Run every case in cases[] against beanstalkd and the parser; returns
 * how many differ, with a line each in report. */
static size_t run_cases(char *report, size_t cap)
{
    static char mine[MAX_CASES][SEQ_MAX], theirs[MAX_CASES][SEQ_MAX];
    static size_t replies[MAX_CASES];
    static bool closes[MAX_CASES];
    size_t rl = 0, bad = 0;

    report[0] = '\0';
    bs_start();
    bconn_t *conns = calloc(ncases, sizeof *conns);
    ck_assert_ptr_nonnull(conns);
    for (size_t i = 0; i < ncases; i++) {
        replies[i] = parser_seq(&cases[i], mine[i], &closes[i]);
        bc_open(&conns[i]);
        bc_send(&conns[i], cases[i].data, cases[i].len);
    }
    for (size_t i = 0; i < ncases; i++)
        server_head(&conns[i], &cases[i], replies[i], closes[i], theirs[i]);
    usleep(SILENCE_MS * 1000);
    for (size_t i = 0; i < ncases; i++) {
        char text[512];

        server_tail(&conns[i], theirs[i]);
        close(conns[i].fd);
        if (strcmp(mine[i], theirs[i]) == 0)
            continue;
        bad++;
        show(&cases[i], text, sizeof text);
        if (rl < cap - 1024)
            rl += (size_t)snprintf(report + rl, cap - rl, "\n  \"%s\": bproto [%s], beanstalkd [%s]",
                                   text, mine[i], theirs[i]);
    }
    free(conns);
    bs_stop();
    for (size_t i = 0; i < ncases; i++)
        free(cases[i].data);
    return bad;
}

START_TEST(test_decisions_match_beanstalkd)
{
    static char report[1 << 16];

    build_cases();
    size_t n = ncases, bad = run_cases(report, sizeof report);
    ck_assert_msg(bad == 0, "%zu of %zu cases differ:%s", bad, n, report);
    ck_assert_uint_gt(n, 200);
}
END_TEST

/* ---- random cases ----
 * Lines put together from the pieces the rules care about (every command
 * name, with and without its space; numbers at the edges of their ranges;
 * names good and bad; blanks, tabs, NULs, stray CR and LF; long runs), in a
 * sequence that $BPROTO_DIFF_SEED picks (a fixed one by default, so make
 * check is repeatable). Each case first moves to its own tube and puts
 * jobs there, so a reserve it happens to form finds one at once, and
 * nothing it pauses or deletes can hold up another case. */

static uint64_t rnd_state;

static unsigned rnd(unsigned n)
{
    rnd_state = rnd_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((rnd_state >> 33) % n);
}

static const char *pick(const char *const *v, size_t n)
{
    return v[rnd((unsigned)n)];
}

#define PICK(v) pick(v, sizeof v / sizeof v[0])

typedef struct rbuf {
    char b[1500];
    size_t n;
} rbuf_t;

static void rb_add(rbuf_t *r, const char *s, size_t n)
{
    if (r->n + n > sizeof r->b)
        n = sizeof r->b - r->n;
    memcpy(r->b + r->n, s, n);
    r->n += n;
}

static void rb_str(rbuf_t *r, const char *s)
{
    rb_add(r, s, strlen(s));
}

static void rb_rep(rbuf_t *r, char c, size_t k)
{
    for (size_t i = 0; i < k; i++)
        rb_add(r, &c, 1);
}

static void random_line(rbuf_t *r)
{
    static const char *const names[] = {
        "put", "use", "reserve", "reserve-with-timeout", "reserve-job", "delete", "release",
        "bury", "touch", "watch", "ignore", "peek", "peek-ready", "peek-delayed",
        "peek-buried", "kick", "kick-job", "stats-job", "stats-tube", "stats", "list-tubes",
        "list-tube-used", "list-tubes-watched", "pause-tube", "quit", "PUT", "foo", "",
    };
    static const char *const args[] = {
        "0", "1", "7", "00", "4294967295", "4294967296", "18446744073709551615",
        "18446744073709551616", "9223372036854775808", "-1", "+1", "0x5", "1x", "x", "a",
        "default", "a*", "-a", "(", "b+c", "a;b$_().", "", " ", "\t", "\n", "\r",
    };
    static const char *const seps[] = { " ", " ", " ", "  ", "\t", "" };
    static const char *const ends[] = { "\r\n", "\r\n", "\r\n", "\r\n", "\r\n", "\n",
                                        "\r", "\r\r\n", " \r\n", "" };
    const char *name = PICK(names);
    unsigned nargs = rnd(5);

    if (rnd(5) == 0) {      /* a put whose body fits its count, or nearly */
        static const unsigned sizes[] = { 0, 1, 3, 99, 100, 101, 150 };
        unsigned n = sizes[rnd(sizeof sizes / sizeof sizes[0])];
        char line[64];
        snprintf(line, sizeof line, "put %u 0 %u %u%s\r\n", rnd(3), rnd(3), n,
                 rnd(8) ? "" : PICK(seps));
        rb_str(r, line);
        rb_rep(r, 'b', n + rnd(3) - (n && rnd(2) ? 1 : 0));
        rb_str(r, PICK(ends));
        return;
    }
    if (rnd(20) == 0) {     /* a long run, sometimes over a window */
        rb_rep(r, 'x', 150 + rnd(400));
    } else {
        rb_str(r, name);
        for (unsigned i = 0; i < nargs; i++) {
            rb_str(r, i == 0 && rnd(4) ? " " : PICK(seps));
            if (rnd(30) == 0)
                rb_rep(r, 'n', 195 + rnd(10));
            else
                rb_str(r, PICK(args));
        }
    }
    if (rnd(25) == 0)
        rb_add(r, "\0", 1);
    rb_str(r, PICK(ends));
    /* a body after a put line: sometimes the right size, sometimes not */
    if (strcmp(name, "put") == 0 && rnd(2)) {
        rb_rep(r, 'b', rnd(9));
        rb_str(r, PICK(ends));
    }
}

static void build_random_cases(uint64_t seed)
{
    ncases = 0;
    rnd_state = seed;
    for (size_t i = 0; i < RANDOM_CASES; i++) {
        rbuf_t r = { .n = 0 };
        char pre[160];

        /* a tube name the pieces above cannot spell */
        snprintf(pre, sizeof pre, "use r(%zu)\r\nwatch r(%zu)\r\nignore default\r\n"
                 "put 0 0 1 1\r\nx\r\nput 0 0 1 1\r\nx\r\nput 0 0 1 1\r\nx\r\n", i, i);
        rb_str(&r, pre);
        for (unsigned k = 1 + rnd(4); k > 0; k--)
            random_line(&r);
        add_n(r.b, r.n);
    }
}

START_TEST(test_random_decisions_match_beanstalkd)
{
    static char report[1 << 16];
    const char *env = getenv("BPROTO_DIFF_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10) : 11;
    int rounds = env && *env ? 20 : 2;

    for (int k = 0; k < rounds; k++) {
        build_random_cases(seed + (uint64_t)k);
        size_t n = ncases, bad = run_cases(report, sizeof report);
        ck_assert_msg(bad == 0, "seed %llu: %zu of %zu cases differ:%s",
                      (unsigned long long)(seed + (uint64_t)k), bad, n, report);
    }
}
END_TEST

/* ---- YAML keys and their order ---- */

/* "key key key" from a YAML mapping body ("---\nkey: value\n..."). */
static void yaml_keys(const char *body, char *out, size_t cap)
{
    const char *p = strchr(body, '\n');

    out[0] = '\0';
    ck_assert_ptr_nonnull(p);
    for (p++; *p; ) {
        const char *colon = strstr(p, ": "), *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_msg(colon != NULL && colon < nl, "not a key line: %.*s", (int)(nl - p), p);
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%.*s", n ? " " : "", (int)(colon - p), p);
        p = nl + 1;
    }
}

/* The keys of beanstalkd's body and of ours (mine[0..n)) must be the same,
 * in the same order. */
static void same_keys(const char *theirs, char *mine, size_t n)
{
    static char k1[2048], k2[2048];

    mine[n] = '\0';
    yaml_keys(theirs, k1, sizeof k1);
    yaml_keys(mine, k2, sizeof k2);
    ck_assert_str_eq(k2, k1);
}

static void their_body(bconn_t *c, const char *cmd, char *body, size_t cap)
{
    char line[128];

    bc_send(c, cmd, strlen(cmd));
    ck_assert_msg(bc_reply(c, REPLY_WAIT_MS, line, sizeof line, body, cap), "%s: no reply", cmd);
    ck_assert_msg(strncmp(line, "OK ", 3) == 0, "%s: %s", cmd, line);
}

START_TEST(test_yaml_keys_match_beanstalkd)
{
    bconn_t *c = calloc(1, sizeof *c);
    char line[128], body[4096], mine[4096];
    unsigned long long id;

    ck_assert_ptr_nonnull(c);
    bs_start();
    bc_open(c);
    bc_send(c, "put 5 0 10 2\r\nhi\r\n", 18);
    ck_assert(bc_reply(c, REPLY_WAIT_MS, line, sizeof line, NULL, 0));
    ck_assert_int_eq(sscanf(line, "INSERTED %llu", &id), 1);

    char cmd[64];
    snprintf(cmd, sizeof cmd, "stats-job %llu\r\n", id);
    their_body(c, cmd, body, sizeof body);
    bproto_job_stats_t j = { .id = id, .tube = "default", .tube_len = 7, .state = "ready" };
    same_keys(body, mine, bproto_yaml_job(mine, sizeof mine - 1, &j));

    their_body(c, "stats-tube default\r\n", body, sizeof body);
    bproto_tube_stats_t t = { .name = "default", .name_len = 7 };
    same_keys(body, mine, bproto_yaml_tube(mine, sizeof mine - 1, &t));

    their_body(c, "stats\r\n", body, sizeof body);
    bproto_stats_t s = { .version = "1.12", .id = "x", .hostname = "h", .os = "o",
                         .platform = "p" };
    same_keys(body, mine, bproto_yaml_stats(mine, sizeof mine - 1, &s));

    /* and the list format, byte for byte */
    their_body(c, "list-tubes-watched\r\n", body, sizeof body);
    const char *names[] = { "default" };
    const size_t lens[] = { 7 };
    size_t n = bproto_yaml_list(mine, sizeof mine - 1, names, lens, 1);
    mine[n] = '\0';
    ck_assert_str_eq(mine, body);

    close(c->fd);
    free(c);
    bs_stop();
}
END_TEST

/* ---- values ----
 * What the parser reads out of an accepted command must be what
 * beanstalkd read: a put's numbers and body as stats-job and peek show
 * them, a tube name as USING echoes it, and kick's bound as the count it
 * kicks out of three buried jobs. */

/* One command on c; its reply line into line (body, if any, into body). */
static void ask(bconn_t *c, const char *cmd, size_t n, char *line, size_t cap, char *body,
                size_t bcap)
{
    bc_send(c, cmd, n);
    ck_assert_msg(bc_reply(c, REPLY_WAIT_MS, line, cap, body, bcap), "%.*s: no reply",
                  (int)n, cmd);
}

/* The parser's one command from s (which must be accepted). */
static bproto_cmd_t parse_one(const char *s, size_t n)
{
    bproto_parser_t p;
    bproto_cmd_t m;
    size_t used;
    const char *err;

    bproto_parser_init(&p, MAXJOB);
    ck_assert_msg(bproto_parse(&p, s, n, &m, &used, &err) == BPROTO_CMD, "%s: not accepted", s);
    return m;
}

static unsigned long long yaml_num(const char *body, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\n%s: ", key);
    const char *v = strstr(body, k);
    ck_assert_msg(v != NULL, "no %s in %s", key, body);
    return strtoull(v + strlen(k), NULL, 10);
}

START_TEST(test_values_match_beanstalkd)
{
    static const char *const puts[] = {
        "put 1 2 3 5\r\nhello\r\n", "put 0 0 0 1\r\nx\r\n", "put  007  0010  01 2\r\nab\r\n",
        "put 4294967295 4294967295 4294967295 0\r\n\r\n", "put 1024 1 1 3\r\na\nb\r\n",
    };
    static const char *const uses[] = { "use a+/;.$_()-9\r\n", "use (\r\n", "use a-\r\n" };
    static const char *const kicks[] = { "kick 2\r\n", "kick 4294967296\r\n", "kick 4294967297\r\n",
                                         "kick -1\r\n", "kick 2abc\r\n", "kick \t+2\r\n",
                                         "kick 0x5\r\n", "kick 18446744073709551615\r\n" };
    bconn_t *c = calloc(1, sizeof *c);
    char line[512], body[4096];
    unsigned long long id;

    ck_assert_ptr_nonnull(c);
    bs_start();
    bc_open(c);
    ask(c, "use v\r\n", 7, line, sizeof line, NULL, 0);
    for (size_t i = 0; i < sizeof puts / sizeof puts[0]; i++) {
        bproto_cmd_t m = parse_one(puts[i], strlen(puts[i]));
        char cmd[64];

        ask(c, puts[i], strlen(puts[i]), line, sizeof line, NULL, 0);
        ck_assert_msg(sscanf(line, "INSERTED %llu", &id) == 1, "%s: %s", puts[i], line);
        snprintf(cmd, sizeof cmd, "stats-job %llu\r\n", id);
        ask(c, cmd, strlen(cmd), line, sizeof line, body, sizeof body);
        ck_assert_uint_eq(yaml_num(body, "pri"), m.pri);
        ck_assert_uint_eq(yaml_num(body, "delay"), m.delay);
        ck_assert_uint_eq(yaml_num(body, "ttr"), m.ttr);
        snprintf(cmd, sizeof cmd, "peek %llu\r\n", id);
        ask(c, cmd, strlen(cmd), line, sizeof line, body, sizeof body);
        ck_assert_uint_eq(strlen(body), m.body_len);
        ck_assert_int_eq(memcmp(body, m.body, m.body_len), 0);
    }
    for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++) {
        bproto_cmd_t m = parse_one(uses[i], strlen(uses[i]));
        char want[BPROTO_USING_MAX + 1];

        want[bproto_fmt_using(want, m.tube, m.tube_len) - 2] = '\0';
        ask(c, uses[i], strlen(uses[i]), line, sizeof line, NULL, 0);
        ck_assert_str_eq(line, want);
    }
    close(c->fd);

    /* kick, each in a tube of its own with three buried jobs */
    for (size_t i = 0; i < sizeof kicks / sizeof kicks[0]; i++) {
        bproto_cmd_t m = parse_one(kicks[i], strlen(kicks[i]));
        char cmd[160];
        int n = snprintf(cmd, sizeof cmd, "use k%zu\r\nwatch k%zu\r\nignore default\r\n", i, i);

        bc_open(c);
        bc_send(c, cmd, (size_t)n);
        for (int r = 0; r < 3; r++)
            ck_assert(bc_reply(c, REPLY_WAIT_MS, line, sizeof line, NULL, 0));
        for (int j = 0; j < 3; j++) {
            ask(c, "put 0 0 60 1\r\nx\r\n", 17, line, sizeof line, NULL, 0);
            ask(c, "reserve\r\n", 9, line, sizeof line, NULL, 0);
            ck_assert_int_eq(sscanf(line, "RESERVED %llu", &id), 1);
            n = snprintf(cmd, sizeof cmd, "bury %llu 0\r\n", id);
            ask(c, cmd, (size_t)n, line, sizeof line, NULL, 0);
            ck_assert_str_eq(line, "BURIED");
        }
        ask(c, kicks[i], strlen(kicks[i]), line, sizeof line, NULL, 0);
        snprintf(cmd, sizeof cmd, "KICKED %u", m.bound < 3 ? m.bound : 3);
        ck_assert_msg(strcmp(line, cmd) == 0, "%s: beanstalkd %s, bproto bound %u", kicks[i],
                      line, m.bound);
        close(c->fd);
    }
    free(c);
    bs_stop();
}
END_TEST

static Suite *diff_suite(void)
{
    Suite *s = suite_create("bproto_diff");
    TCase *c = tcase_create("beanstalkd");

    /* about 250 fixed and 500 random cases, all connections at once */
    tcase_set_timeout(c, 120);
    tcase_add_test(c, test_decisions_match_beanstalkd);
    tcase_add_test(c, test_random_decisions_match_beanstalkd);
    tcase_add_test(c, test_yaml_keys_match_beanstalkd);
    tcase_add_test(c, test_values_match_beanstalkd);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(diff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
