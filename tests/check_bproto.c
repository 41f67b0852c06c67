/* check_bproto.c: unit tests for the beanstalkd protocol (src/bproto.c):
 * every command and its argument rules, every error reply, line framing
 * and over-long lines, put bodies, JOB_TOO_BIG skipping, reply lines and
 * the YAML bodies.
 *
 * Input goes through a small "connection" that appends what a socket would
 * deliver, parses until the parser needs more, drops what was consumed, and
 * records every result as text. Every sequence is run whole, one byte at a
 * time, and in 7-byte reads: all three must record the same thing. The
 * expected rules are the real beanstalkd 1.12's (tests/check_bproto_diff.c
 * checks the decisions against it).
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bproto.h"

#define MAXJOB 100          /* max_job_size for these tests */
#define LOG_MAX (1 << 16)

typedef struct bconn {
    bproto_parser_t p;
    char *buf;
    size_t len;
    size_t cap;
    size_t peak;            /* most bytes ever buffered */
    char log[LOG_MAX];
    size_t loglen;
} bconn_t;

static const char *const type_names[] = {
    [BCMD_PUT] = "put", [BCMD_USE] = "use", [BCMD_RESERVE] = "reserve",
    [BCMD_RESERVE_TIMEOUT] = "reserve-with-timeout", [BCMD_RESERVE_JOB] = "reserve-job",
    [BCMD_DELETE] = "delete", [BCMD_RELEASE] = "release", [BCMD_BURY] = "bury",
    [BCMD_TOUCH] = "touch", [BCMD_WATCH] = "watch", [BCMD_IGNORE] = "ignore",
    [BCMD_PEEK] = "peek", [BCMD_PEEK_READY] = "peek-ready", [BCMD_PEEK_DELAYED] = "peek-delayed",
    [BCMD_PEEK_BURIED] = "peek-buried", [BCMD_KICK] = "kick", [BCMD_KICK_JOB] = "kick-job",
    [BCMD_STATS_JOB] = "stats-job", [BCMD_STATS_TUBE] = "stats-tube", [BCMD_STATS] = "stats",
    [BCMD_LIST_TUBES] = "list-tubes", [BCMD_LIST_TUBE_USED] = "list-tube-used",
    [BCMD_LIST_TUBES_WATCHED] = "list-tubes-watched", [BCMD_PAUSE_TUBE] = "pause-tube",
    [BCMD_QUIT] = "quit",
};

static void log_f(bconn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_f(bconn_t *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(c->log + c->loglen, LOG_MAX - c->loglen, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    ck_assert_uint_lt(c->loglen + (size_t)n, LOG_MAX);
    c->loglen += (size_t)n;
}

/* One result as text: "name:args" for commands, the bare token for errors;
 * each entry is followed by a space. */
static void log_cmd(bconn_t *c, const bproto_cmd_t *m)
{
    ck_assert_int_gt(m->type, BCMD_NONE);
    ck_assert_int_le(m->type, BCMD_QUIT);
    log_f(c, "%s", type_names[m->type]);
    switch (m->type) {
    case BCMD_PUT:
        log_f(c, ":%u,%u,%u,%.*s", m->pri, m->delay, m->ttr, (int)m->body_len, m->body);
        break;
    case BCMD_USE: case BCMD_WATCH: case BCMD_IGNORE: case BCMD_STATS_TUBE:
        log_f(c, ":%.*s", (int)m->tube_len, m->tube);
        break;
    case BCMD_PAUSE_TUBE:
        log_f(c, ":%.*s,%u", (int)m->tube_len, m->tube, m->delay);
        break;
    case BCMD_PEEK: case BCMD_RESERVE_JOB: case BCMD_DELETE: case BCMD_TOUCH:
    case BCMD_KICK_JOB: case BCMD_STATS_JOB:
        log_f(c, ":%llu", (unsigned long long)m->id);
        break;
    case BCMD_RELEASE:
        log_f(c, ":%llu,%u,%u", (unsigned long long)m->id, m->pri, m->delay);
        break;
    case BCMD_BURY:
        log_f(c, ":%llu,%u", (unsigned long long)m->id, m->pri);
        break;
    case BCMD_RESERVE_TIMEOUT:
        log_f(c, ":%d", m->timeout);
        break;
    case BCMD_KICK:
        log_f(c, ":%u", m->bound);
        break;
    default:
        break;
    }
    log_f(c, " ");
}

/* Parse what is buffered until the parser needs more. */
static void drain(bconn_t *c)
{
    for (;;) {
        bproto_cmd_t m;
        size_t used = SIZE_MAX;
        const char *err = NULL;
        bproto_result_t r = bproto_parse(&c->p, c->buf, c->len, &m, &used, &err);

        ck_assert_uint_le(used, c->len);
        if (r == BPROTO_CMD) {
            ck_assert_uint_gt(used, 0);
            log_cmd(c, &m);
        } else if (r == BPROTO_ERROR) {
            ck_assert_ptr_nonnull(err);
            size_t n = strlen(err);
            ck_assert_uint_gt(n, 2);
            ck_assert(err[n - 2] == '\r' && err[n - 1] == '\n');
            log_f(c, "%.*s ", (int)(n - 2), err);
        } else {
            ck_assert_int_eq(r, BPROTO_NEED_MORE);
        }
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        if (r == BPROTO_NEED_MORE)
            return;
    }
}

static void feed(bconn_t *c, const char *data, size_t n, size_t chunk)
{
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        if (c->len + k > c->cap) {
            c->cap = (c->len + k) * 2;
            c->buf = realloc(c->buf, c->cap);
            ck_assert_ptr_nonnull(c->buf);
        }
        memcpy(c->buf + c->len, data + off, k);
        c->len += k;
        if (c->len > c->peak)
            c->peak = c->len;
        drain(c);
    }
}

/* The log of data[0..n) fed in reads of `chunk` bytes, plus "+<k>" when k
 * bytes are left buffered. Returns a static string (one of three). */
static const char *run_chunked(const char *data, size_t n, size_t chunk, size_t *peak)
{
    static char out[3][LOG_MAX + 32];
    static int which;
    bconn_t *c = calloc(1, sizeof *c);

    ck_assert_ptr_nonnull(c);
    bproto_parser_init(&c->p, MAXJOB);
    feed(c, data, n, chunk ? chunk : 1);
    if (c->len)
        log_f(c, "+%zu", c->len);
    else if (c->loglen)
        c->log[--c->loglen] = '\0';     /* the trailing space */
    char *o = out[which++ % 3];
    memcpy(o, c->log, c->loglen + 1);
    if (peak)
        *peak = c->peak;
    free(c->buf);
    free(c);
    return o;
}

/* Whole, byte by byte and in 7-byte reads must agree; returns the log. */
static const char *run_n(const char *data, size_t n)
{
    const char *whole = run_chunked(data, n, n ? n : 1, NULL);
    const char *bytes = run_chunked(data, n, 1, NULL);
    const char *seven = run_chunked(data, n, 7, NULL);

    ck_assert_str_eq(bytes, whole);
    ck_assert_str_eq(seven, whole);
    return whole;
}

static const char *run(const char *s)
{
    return run_n(s, strlen(s));
}

#define EXPECT(in, out) ck_assert_str_eq(run(in), out)

/* ---- commands ---- */

START_TEST(test_put)
{
    EXPECT("put 1 2 3 5\r\nhello\r\n", "put:1,2,3,hello");
    EXPECT("put 0 0 0 1\r\nx\r\n", "put:0,0,1,x");             /* ttr 0 is 1 */
    EXPECT("put 0 0 1 0\r\n\r\n", "put:0,0,1,");
    EXPECT("put  4294967295  4294967295 4294967295 2\r\nab\r\n",
           "put:4294967295,4294967295,4294967295,ab");
    EXPECT("put 007 0 1 1\r\nx\r\n", "put:7,0,1,x");
    /* the body is opaque: "\r\n" and NUL inside it are data */
    ck_assert_str_eq(run_n("put 0 0 1 4\r\n\r\n\0x\r\n", 19), "put:0,0,1,\r\n");
    EXPECT("put 0 0 1 3\r\nabc\r\nput 0 0 1 1\r\nz\r\n", "put:0,0,1,abc put:0,0,1,z");
}
END_TEST

START_TEST(test_put_bad)
{
    EXPECT("put 0 0 1\r\n", "BAD_FORMAT");
    EXPECT("put 0 0 1 1 \r\n", "BAD_FORMAT");                  /* trailing space */
    EXPECT("put 0 0 1 1x\r\n", "BAD_FORMAT");
    EXPECT("put 4294967296 0 1 1\r\n", "BAD_FORMAT");
    EXPECT("put 0 4294967296 1 1\r\n", "BAD_FORMAT");
    EXPECT("put 0 0 4294967296 1\r\n", "BAD_FORMAT");
    EXPECT("put 0 0 1 4294967296\r\n", "BAD_FORMAT");
    EXPECT("put -1 0 1 1\r\n", "BAD_FORMAT");
    EXPECT("put +1 0 1 1\r\n", "BAD_FORMAT");
    EXPECT("put 0\t0 1 1\r\n", "BAD_FORMAT");
    EXPECT("put 99999999999999999999999 0 1 1\r\n", "BAD_FORMAT");
    EXPECT("put\t0 0 1 1\r\n", "UNKNOWN_COMMAND");
    EXPECT("put\r\n", "UNKNOWN_COMMAND");
    EXPECT("PUT 0 0 1 1\r\n", "UNKNOWN_COMMAND");
    /* a refused put line has no body: what follows is read as commands */
    EXPECT("put 0 0 1 1 \r\nx\r\n", "BAD_FORMAT UNKNOWN_COMMAND");
}
END_TEST

START_TEST(test_put_expected_crlf)
{
    /* exactly bytes + 2 are consumed, whatever the two bytes are */
    EXPECT("put 0 0 1 1\r\nxyz", "EXPECTED_CRLF");
    EXPECT("put 0 0 1 1\r\nxyzuse a\r\n", "EXPECTED_CRLF use:a");
    EXPECT("put 0 0 1 1\r\nx\n\r\n", "EXPECTED_CRLF +1");
    EXPECT("put 0 0 1 1\r\n\r\n\r\n", "EXPECTED_CRLF +1");
    /* incomplete: wait */
    EXPECT("put 0 0 1 1\r\nx\r", "+15");
    EXPECT("put 0 0 1 1\r\nx", "+14");
}
END_TEST

START_TEST(test_put_too_big)
{
    char big[400];
    int n = snprintf(big, sizeof big, "put 0 0 1 %d\r\n", MAXJOB + 1);

    memset(big + n, 'y', MAXJOB + 4);
    memcpy(big + n + MAXJOB + 4, "use a\r\n", 8);
    /* the body and its two trailer bytes are skipped unread, then the
     * error: here a fourth 'y' after the body starts the next line */
    ck_assert_str_eq(run(big), "JOB_TOO_BIG UNKNOWN_COMMAND");
    big[n + MAXJOB + 3] = '\0';
    ck_assert_str_eq(run(big), "JOB_TOO_BIG");
    big[n + MAXJOB + 2] = '\0';
    ck_assert_str_eq(run(big), "");                 /* nothing until it is all skipped */
    /* the size is checked before trailing garbage, as beanstalkd does */
    EXPECT("put 0 0 1 101x\r\n", "");
    EXPECT("put 0 0 1 100\r\n", "+15");
    /* skipped bytes are not kept: the buffer stays small */
    size_t peak;
    char huge[5000];
    n = snprintf(huge, sizeof huge, "put 0 0 1 4000\r\n");
    memset(huge + n, 'z', 4002);
    memcpy(huge + n + 4002, "quit\r\n", 7);
    ck_assert_str_eq(run_chunked(huge, strlen(huge), 16, &peak), "JOB_TOO_BIG quit");
    ck_assert_uint_le(peak, 32);
}
END_TEST

START_TEST(test_tube_commands)
{
    EXPECT("use foo\r\n", "use:foo");
    EXPECT("watch a+/;.$_()-9\r\n", "watch:a+/;.$_()-9");
    EXPECT("ignore (\r\n", "ignore:(");
    EXPECT("stats-tube default\r\n", "stats-tube:default");
    EXPECT("use -a\r\n", "BAD_FORMAT");
    EXPECT("use a b\r\n", "BAD_FORMAT");
    EXPECT("use  a\r\n", "BAD_FORMAT");
    EXPECT("use a \r\n", "BAD_FORMAT");
    EXPECT("use \r\n", "BAD_FORMAT");
    EXPECT("use a*\r\n", "BAD_FORMAT");
    EXPECT("use a:b\r\n", "BAD_FORMAT");
    EXPECT("use a\x80\r\n", "BAD_FORMAT");
    EXPECT("use\r\n", "UNKNOWN_COMMAND");
    EXPECT("watch\r\n", "UNKNOWN_COMMAND");
    EXPECT("ignore\r\n", "UNKNOWN_COMMAND");
    EXPECT("stats-tube\r\n", "BAD_FORMAT");             /* a malformed "stats" */
    EXPECT("stats-tube  default\r\n", "BAD_FORMAT");
    EXPECT("USE a\r\n", "UNKNOWN_COMMAND");

    char line[300], want[300];
    memcpy(line, "use ", 4);
    memset(line + 4, 'a', 201);
    memcpy(line + 4 + 200, "\r\n", 3);
    snprintf(want, sizeof want, "use:%.200s", line + 4);
    ck_assert_str_eq(run(line), want);
    memcpy(line + 4 + 200, "a\r\n", 4);
    ck_assert_str_eq(run(line), "BAD_FORMAT");
}
END_TEST

START_TEST(test_pause_tube)
{
    EXPECT("pause-tube default 10\r\n", "pause-tube:default,10");
    EXPECT("pause-tube  default  1\r\n", "pause-tube:default,1");
    EXPECT("pause-tubedefault 1\r\n", "pause-tube:default,1");  /* no space needed */
    EXPECT("pause-tubex 1\r\n", "pause-tube:x,1");
    EXPECT("pause-tube default 4294967295\r\n", "pause-tube:default,4294967295");
    EXPECT("pause-tube default 4294967296\r\n", "BAD_FORMAT");
    EXPECT("pause-tube default 1 \r\n", "BAD_FORMAT");
    EXPECT("pause-tube default 1x\r\n", "BAD_FORMAT");
    EXPECT("pause-tube default 1 2\r\n", "BAD_FORMAT");
    EXPECT("pause-tube default\t1\r\n", "BAD_FORMAT");
    EXPECT("pause-tube default -1\r\n", "BAD_FORMAT");
    EXPECT("pause-tube default\r\n", "BAD_FORMAT");
    EXPECT("pause-tube -default 1\r\n", "BAD_FORMAT");
    EXPECT("pause-tube a* 1\r\n", "BAD_FORMAT");
    EXPECT("pause-tube *x 1\r\n", "BAD_FORMAT");
    EXPECT("pause-tube\r\n", "BAD_FORMAT");
    EXPECT("pause-tube \r\n", "BAD_FORMAT");

    char line[300];
    int n = snprintf(line, sizeof line, "pause-tube %0200d 1\r\n", 0);
    ck_assert_int_eq(n, 11 + 200 + 4);
    ck_assert_str_eq(run(line), "pause-tube:" "0000000000000000000000000000000000000000"
                     "0000000000000000000000000000000000000000"
                     "0000000000000000000000000000000000000000"
                     "0000000000000000000000000000000000000000"
                     "0000000000000000000000000000000000000000,1");
    snprintf(line, sizeof line, "pause-tube %0201d 1\r\n", 0);
    ck_assert_str_eq(run(line), "BAD_FORMAT");
}
END_TEST

START_TEST(test_id_commands)
{
    EXPECT("peek 1\r\n", "peek:1");
    EXPECT("reserve-job 2\r\n", "reserve-job:2");
    EXPECT("delete 18446744073709551615\r\n", "delete:18446744073709551615");
    EXPECT("touch  3\r\n", "touch:3");                  /* extra spaces before numbers */
    EXPECT("kick-job 01\r\n", "kick-job:1");
    EXPECT("stats-job 5\r\n", "stats-job:5");
    EXPECT("delete 18446744073709551616\r\n", "BAD_FORMAT");
    EXPECT("delete -1\r\n", "BAD_FORMAT");
    EXPECT("delete +1\r\n", "BAD_FORMAT");
    EXPECT("delete 1 \r\n", "BAD_FORMAT");
    EXPECT("delete x\r\n", "BAD_FORMAT");
    EXPECT("delete \r\n", "BAD_FORMAT");
    EXPECT("peek \r\n", "BAD_FORMAT");
    EXPECT("kick-job 1 \r\n", "BAD_FORMAT");
    EXPECT("reserve-job  1\r\n", "reserve-job:1");
    EXPECT("reserve-job 1 \r\n", "BAD_FORMAT");
    EXPECT("stats-job x\r\n", "BAD_FORMAT");
    /* without the space, the prefix that matches decides */
    EXPECT("delete\r\n", "UNKNOWN_COMMAND");
    EXPECT("peek\r\n", "UNKNOWN_COMMAND");
    EXPECT("touch\r\n", "UNKNOWN_COMMAND");
    EXPECT("kick-job\r\n", "UNKNOWN_COMMAND");
    EXPECT("reserve-job\r\n", "BAD_FORMAT");            /* a malformed "reserve" */
    EXPECT("stats-job\r\n", "BAD_FORMAT");              /* a malformed "stats" */
    EXPECT("stats-jobx\r\n", "BAD_FORMAT");
}
END_TEST

START_TEST(test_release_bury)
{
    EXPECT("release 1 2 3\r\n", "release:1,2,3");
    EXPECT("release  1  2  3\r\n", "release:1,2,3");
    EXPECT("release 1 2\r\n", "BAD_FORMAT");
    EXPECT("release 1 2 3 \r\n", "BAD_FORMAT");
    EXPECT("release 1 4294967296 3\r\n", "BAD_FORMAT");
    EXPECT("release 1 2 4294967296\r\n", "BAD_FORMAT");
    EXPECT("release 1 2 3x\r\n", "BAD_FORMAT");
    EXPECT("bury 1 2\r\n", "bury:1,2");
    EXPECT("bury  1  2\r\n", "bury:1,2");
    EXPECT("bury 1\r\n", "BAD_FORMAT");
    EXPECT("bury 1 2 3\r\n", "BAD_FORMAT");
    EXPECT("bury 1 2 \r\n", "BAD_FORMAT");
    EXPECT("bury 1 4294967296\r\n", "BAD_FORMAT");
}
END_TEST

START_TEST(test_reserve)
{
    EXPECT("reserve\r\n", "reserve");
    EXPECT("reserve \r\n", "BAD_FORMAT");
    EXPECT("reservex\r\n", "BAD_FORMAT");
    EXPECT("reserve-with-timeout 0\r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout 30\r\n", "reserve-with-timeout:30");
    /* strtol into an int, as beanstalkd: sign, blanks, garbage, truncation */
    EXPECT("reserve-with-timeout -1\r\n", "reserve-with-timeout:-1");
    EXPECT("reserve-with-timeout -0\r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout \t+1\r\n", "reserve-with-timeout:1");
    EXPECT("reserve-with-timeout 1x\r\n", "reserve-with-timeout:1");
    EXPECT("reserve-with-timeout 0 \r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout abc\r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout \r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout 0x5\r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout 4294967296\r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout 4294967297\r\n", "reserve-with-timeout:1");
    EXPECT("reserve-with-timeout 2147483648\r\n", "reserve-with-timeout:-2147483648");
    EXPECT("reserve-with-timeout 4294967295\r\n", "reserve-with-timeout:-1");
    EXPECT("reserve-with-timeout 9223372036854775807\r\n", "reserve-with-timeout:-1");
    EXPECT("reserve-with-timeout -9223372036854775808\r\n", "reserve-with-timeout:0");
    EXPECT("reserve-with-timeout 9223372036854775808\r\n", "BAD_FORMAT");
    EXPECT("reserve-with-timeout -9223372036854775809\r\n", "BAD_FORMAT");
    EXPECT("reserve-with-timeout 99999999999999999999999\r\n", "BAD_FORMAT");
    EXPECT("reserve-with-timeout\r\n", "BAD_FORMAT");   /* a malformed "reserve" */
    EXPECT("reserve-with-timeoutx\r\n", "BAD_FORMAT");
}
END_TEST

START_TEST(test_kick)
{
    EXPECT("kick 10\r\n", "kick:10");
    /* strtoul into an unsigned int, as beanstalkd */
    EXPECT("kick  3\r\n", "kick:3");
    EXPECT("kick \t5\r\n", "kick:5");
    EXPECT("kick +3\r\n", "kick:3");
    EXPECT("kick -1\r\n", "kick:4294967295");
    EXPECT("kick 5abc\r\n", "kick:5");
    EXPECT("kick 5 6\r\n", "kick:5");
    EXPECT("kick 3 \r\n", "kick:3");
    EXPECT("kick 0x5\r\n", "kick:0");
    EXPECT("kick 4294967296\r\n", "kick:0");
    EXPECT("kick 4294967297\r\n", "kick:1");
    EXPECT("kick 18446744073709551615\r\n", "kick:4294967295");
    EXPECT("kick 18446744073709551616\r\n", "BAD_FORMAT");
    EXPECT("kick \r\n", "BAD_FORMAT");
    EXPECT("kick -\r\n", "BAD_FORMAT");
    EXPECT("kick x\r\n", "BAD_FORMAT");
    EXPECT("kick\r\n", "UNKNOWN_COMMAND");
    EXPECT("kickx 1\r\n", "UNKNOWN_COMMAND");
}
END_TEST

START_TEST(test_no_arg_commands)
{
    EXPECT("peek-ready\r\npeek-delayed\r\npeek-buried\r\nstats\r\nlist-tubes\r\n"
           "list-tube-used\r\nlist-tubes-watched\r\n",
           "peek-ready peek-delayed peek-buried stats list-tubes list-tube-used "
           "list-tubes-watched");
    EXPECT("peek-ready \r\n", "BAD_FORMAT");
    EXPECT("peek-readyx\r\n", "BAD_FORMAT");
    EXPECT("peek-delayedx\r\n", "BAD_FORMAT");
    EXPECT("peek-buriedx\r\n", "BAD_FORMAT");
    EXPECT("stats \r\n", "BAD_FORMAT");
    EXPECT("statsx\r\n", "BAD_FORMAT");
    EXPECT("list-tubes \r\n", "BAD_FORMAT");
    EXPECT("list-tubesx\r\n", "BAD_FORMAT");
    EXPECT("list-tube-used \r\n", "BAD_FORMAT");
    EXPECT("list-tube-usedx\r\n", "BAD_FORMAT");
    EXPECT("list-tubes-watched \r\n", "BAD_FORMAT");
    EXPECT("list-tubes-watchedx\r\n", "BAD_FORMAT");
    EXPECT("list\r\n", "UNKNOWN_COMMAND");
    EXPECT("peekx\r\n", "UNKNOWN_COMMAND");
}
END_TEST

START_TEST(test_quit)
{
    /* beanstalkd closes on anything starting "quit" */
    EXPECT("quit\r\n", "quit");
    EXPECT("quit \r\n", "quit");
    EXPECT("quitx\r\n", "quit");
    EXPECT("qui\r\n", "UNKNOWN_COMMAND");
    ck_assert_str_eq(run_n("quit\0\r\n", 7), "BAD_FORMAT");
}
END_TEST

/* ---- framing ---- */

START_TEST(test_lines)
{
    EXPECT("\r\n", "UNKNOWN_COMMAND");                  /* an empty line is answered */
    EXPECT("foo\r\n", "UNKNOWN_COMMAND");
    ck_assert_str_eq(run_n("foo\0\r\n", 6), "BAD_FORMAT");      /* NUL before the name */
    ck_assert_str_eq(run_n("\0\r\n", 3), "BAD_FORMAT");
    ck_assert_str_eq(run_n("use a\0b\r\n", 9), "BAD_FORMAT");
    /* only "\r\n" ends a line; a lone "\n" is part of it */
    EXPECT("use a\n", "+6");
    EXPECT("use a\nuse b\r\n", "BAD_FORMAT");
    EXPECT("use b\r\n\n", "use:b +1");
    /* the first "\r" of a window must be followed by "\n", or no line is
     * seen there until the window fills */
    EXPECT("use a\rb\r\n", "+9");
    EXPECT("use a\r\r\n", "+8");
    EXPECT("\rx\r\nuse b\r\n", "+11");
}
END_TEST

START_TEST(test_long_lines)
{
    char buf[1200];
    size_t n;

    /* 222 bytes + "\r\n" is the longest line */
    memset(buf, 'x', 222);
    memcpy(buf + 222, "\r\nuse b\r\n", 10);
    ck_assert_str_eq(run(buf), "UNKNOWN_COMMAND use:b");
    /* a "\r" in byte 224 does not count: the window is dropped, the lone
     * "\n" joins the next line, and that line is the BAD_FORMAT one */
    memset(buf, 'x', 223);
    memcpy(buf + 223, "\r\nuse b\r\nuse c\r\n", 17);
    ck_assert_str_eq(run(buf), "BAD_FORMAT use:c");
    /* 224 bytes without an end: silence until a line ends, then one error */
    memset(buf, 'x', 300);
    buf[300] = '\0';
    ck_assert_str_eq(run(buf), "+76");
    memcpy(buf + 300, "\r\nuse b\r\n", 10);
    ck_assert_str_eq(run(buf), "BAD_FORMAT use:b");
    /* windows of 224 keep being dropped */
    memset(buf, 'x', 224 + 223);
    memcpy(buf + 224 + 223, "\r\nuse b\r\nuse c\r\n", 17);
    ck_assert_str_eq(run(buf), "BAD_FORMAT use:c");
    memset(buf, 'x', 224 + 222);
    memcpy(buf + 224 + 222, "\r\nuse b\r\nuse c\r\n", 17);
    ck_assert_str_eq(run(buf), "BAD_FORMAT use:b use:c");
    /* a stray "\r" while discarding hides the "\r\n" after it too */
    memset(buf, 'x', 224);
    memcpy(buf + 224, "a\rb\r\nuse b\r\n", 13);
    ck_assert_str_eq(run(buf), "+12");
    memcpy(buf, "a\rb", 3);
    memset(buf + 3, 'x', 230);
    memcpy(buf + 233, "\r\nuse b\r\n", 10);
    ck_assert_str_eq(run(buf), "BAD_FORMAT use:b");
    /* a valid command too long for a line */
    n = (size_t)snprintf(buf, sizeof buf, "use %0219d\r\n", 0);
    ck_assert_uint_eq(n, 225);
    ck_assert_str_eq(run(buf), "+1");           /* the "\n" waits for a line */
    /* nothing more than a window is ever kept */
    size_t peak;
    memset(buf, 'x', 1100);
    memcpy(buf + 1100, "\r\n", 3);
    ck_assert_str_eq(run_chunked(buf, strlen(buf), 10, &peak), "BAD_FORMAT");
    ck_assert_uint_le(peak, BPROTO_LINE_MAX + 10);
}
END_TEST

START_TEST(test_split_body)
{
    /* a put's body across reads: nothing until its last trailer byte */
    const char *in = "put 9 8 7 10\r\n0123456789\r\nuse t\r\n";
    bconn_t *c = calloc(1, sizeof *c);
    size_t n = strlen(in);

    ck_assert_ptr_nonnull(c);
    bproto_parser_init(&c->p, MAXJOB);
    for (size_t i = 0; i < n; i++) {
        feed(c, in + i, 1, 1);
        if (i < 25)
            ck_assert_uint_eq(c->loglen, 0);
        if (i == 25)
            ck_assert_str_eq(c->log, "put:9,8,7,0123456789 ");
    }
    ck_assert_str_eq(c->log, "put:9,8,7,0123456789 use:t ");
    ck_assert_uint_eq(c->len, 0);
    free(c->buf);
    free(c);
}
END_TEST

START_TEST(test_pipeline)
{
    EXPECT("use a\r\nput 0 0 1 1\r\nx\r\nwatch a\r\nignore default\r\nreserve\r\n"
           "delete 1\r\nfoo\r\nquit\r\n",
           "use:a put:0,0,1,x watch:a ignore:default reserve delete:1 UNKNOWN_COMMAND quit");
}
END_TEST

START_TEST(test_need_more_is_stable)
{
    bproto_parser_t p;
    bproto_cmd_t m;
    size_t used;
    const char *err;
    const char *in = "put 0 0 1 3\r\nab";

    bproto_parser_init(&p, MAXJOB);
    ck_assert_int_eq(bproto_parse(&p, in, strlen(in), &m, &used, &err), BPROTO_NEED_MORE);
    ck_assert_uint_eq(used, 0);
    ck_assert_int_eq(bproto_parse(&p, in, 0, &m, &used, &err), BPROTO_NEED_MORE);
    ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(test_tube_valid)
{
    ck_assert(bproto_tube_valid("a", 1));
    ck_assert(bproto_tube_valid("a-", 2));
    ck_assert(bproto_tube_valid("$;/+()._", 8));
    ck_assert(!bproto_tube_valid("", 0));
    ck_assert(!bproto_tube_valid("-a", 2));
    ck_assert(!bproto_tube_valid("a b", 3));
    ck_assert(!bproto_tube_valid("a:b", 3));
    ck_assert(!bproto_tube_valid("a\0", 2));
}
END_TEST

/* ---- replies ---- */

static void expect_reply(size_t n, const char *out, const char *want)
{
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(memcmp(out, want, n), 0);
}

START_TEST(test_reply_lines)
{
    char out[BPROTO_REPLY_MAX];
    char u[BPROTO_USING_MAX];
    char tube[BPROTO_TUBE_MAX];

    expect_reply(bproto_fmt_inserted(out, 42), out, "INSERTED 42\r\n");
    expect_reply(bproto_fmt_buried_id(out, 7), out, "BURIED 7\r\n");
    expect_reply(bproto_fmt_reserved(out, UINT64_MAX, 65535), out,
                 "RESERVED 18446744073709551615 65535\r\n");
    expect_reply(bproto_fmt_reserved(out, UINT64_MAX, UINT64_MAX), out,
                 "RESERVED 18446744073709551615 18446744073709551615\r\n");
    expect_reply(bproto_fmt_found(out, 1, 0), out, "FOUND 1 0\r\n");
    expect_reply(bproto_fmt_watching(out, 3), out, "WATCHING 3\r\n");
    expect_reply(bproto_fmt_kicked(out, 0), out, "KICKED 0\r\n");
    expect_reply(bproto_fmt_ok(out, 958), out, "OK 958\r\n");
    expect_reply(bproto_fmt_using(u, "default", 7), u, "USING default\r\n");
    memset(tube, 'q', sizeof tube);
    ck_assert_uint_eq(bproto_fmt_using(u, tube, sizeof tube), BPROTO_USING_MAX);
    ck_assert_str_eq(BPROTO_R_DEADLINE_SOON BPROTO_R_TIMED_OUT BPROTO_R_NOT_IGNORED,
                     "DEADLINE_SOON\r\nTIMED_OUT\r\nNOT_IGNORED\r\n");
}
END_TEST

START_TEST(test_yaml_job)
{
    bproto_job_stats_t j = {
        .id = 1, .tube = "default", .tube_len = 7, .state = "buried", .pri = 0, .age = 3,
        .delay = 0, .ttr = 1, .time_left = 0, .file = 0, .reserves = 1, .timeouts = 0,
        .releases = 0, .buries = 1, .kicks = 0,
    };
    const char *want = "---\nid: 1\ntube: default\nstate: buried\npri: 0\nage: 3\n"
                       "delay: 0\nttr: 1\ntime-left: 0\nfile: 0\nreserves: 1\n"
                       "timeouts: 0\nreleases: 0\nburies: 1\nkicks: 0\n";
    char out[512];
    size_t n = bproto_yaml_job(out, sizeof out, &j);

    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(memcmp(out, want, n), 0);
    /* snprintf-like: too small a buffer gets a prefix and the full length */
    memset(out, '#', sizeof out);
    ck_assert_uint_eq(bproto_yaml_job(out, 10, &j), n);
    ck_assert_int_eq(memcmp(out, want, 10), 0);
    ck_assert_int_eq(out[10], '#');
}
END_TEST

START_TEST(test_yaml_tube)
{
    bproto_tube_stats_t t = { .name = "default", .name_len = 7, .current_using = 1,
                              .current_watching = 1, .total_jobs = 9 };
    const char *want = "---\nname: default\ncurrent-jobs-urgent: 0\ncurrent-jobs-ready: 0\n"
                       "current-jobs-reserved: 0\ncurrent-jobs-delayed: 0\n"
                       "current-jobs-buried: 0\ntotal-jobs: 9\ncurrent-using: 1\n"
                       "current-watching: 1\ncurrent-waiting: 0\ncmd-delete: 0\n"
                       "cmd-pause-tube: 0\npause: 0\npause-time-left: 0\n";
    char out[512];
    size_t n = bproto_yaml_tube(out, sizeof out, &t);

    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(memcmp(out, want, n), 0);
}
END_TEST

START_TEST(test_yaml_stats)
{
    bproto_stats_t s = { .current_jobs_buried = 1, .cmd_put = 1, .max_job_size = 65535,
                         .pid = 24073, .version = "1.12", .rusage_utime_sec = 0,
                         .rusage_utime_usec = 2546, .rusage_stime_sec = 12,
                         .rusage_stime_usec = 0, .binlog_max_size = 10485760,
                         .id = "dc8fa5c1dadf97b7", .hostname = "vm",
                         .os = "#1 SMP PREEMPT_DYNAMIC @0", .platform = "x86_64" };
    char out[2048];
    size_t n = bproto_yaml_stats(out, sizeof out, &s);

    ck_assert_uint_lt(n, sizeof out);
    out[n] = '\0';
    ck_assert_ptr_nonnull(strstr(out, "\npid: 24073\nversion: \"1.12\"\n"
                                 "rusage-utime: 0.002546\nrusage-stime: 12.000000\nuptime: 0\n"));
    ck_assert_ptr_nonnull(strstr(out, "\nbinlog-max-size: 10485760\ndraining: false\n"
                                 "id: dc8fa5c1dadf97b7\nhostname: vm\n"
                                 "os: #1 SMP PREEMPT_DYNAMIC @0\nplatform: x86_64\n"));
    ck_assert_int_eq(strncmp(out, "---\ncurrent-jobs-urgent: 0\n", 27), 0);
    ck_assert_uint_eq(out[n - 1], '\n');
    s.draining = true;
    n = bproto_yaml_stats(out, sizeof out, &s);
    out[n] = '\0';
    ck_assert_ptr_nonnull(strstr(out, "\ndraining: true\n"));
}
END_TEST

START_TEST(test_yaml_list)
{
    const char *names[] = { "default", "foo" };
    const size_t lens[] = { 7, 3 };
    char out[64];

    ck_assert_uint_eq(bproto_yaml_list(out, sizeof out, names, lens, 2), 20);
    ck_assert_int_eq(memcmp(out, "---\n- default\n- foo\n", 20), 0);
    ck_assert_uint_eq(bproto_yaml_list(out, sizeof out, names, lens, 0), 4);
}
END_TEST

static Suite *bproto_suite(void)
{
    Suite *s = suite_create("bproto");
    TCase *c = tcase_create("commands");

    tcase_add_test(c, test_put);
    tcase_add_test(c, test_put_bad);
    tcase_add_test(c, test_put_expected_crlf);
    tcase_add_test(c, test_put_too_big);
    tcase_add_test(c, test_tube_commands);
    tcase_add_test(c, test_pause_tube);
    tcase_add_test(c, test_id_commands);
    tcase_add_test(c, test_release_bury);
    tcase_add_test(c, test_reserve);
    tcase_add_test(c, test_kick);
    tcase_add_test(c, test_no_arg_commands);
    tcase_add_test(c, test_quit);
    suite_add_tcase(s, c);

    TCase *f = tcase_create("framing");
    tcase_add_test(f, test_lines);
    tcase_add_test(f, test_long_lines);
    tcase_add_test(f, test_split_body);
    tcase_add_test(f, test_pipeline);
    tcase_add_test(f, test_need_more_is_stable);
    tcase_add_test(f, test_tube_valid);
    suite_add_tcase(s, f);

    TCase *r = tcase_create("replies");
    tcase_add_test(r, test_reply_lines);
    tcase_add_test(r, test_yaml_job);
    tcase_add_test(r, test_yaml_tube);
    tcase_add_test(r, test_yaml_stats);
    tcase_add_test(r, test_yaml_list);
    suite_add_tcase(s, r);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bproto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
