/* check_bstalk.c: the beanstalk listener against the real sluiced, over
 * sockets: every command and its replies, the errors, reserve across
 * watched tubes and priorities, release/bury/kick, pause-tube, peeks, the
 * stats bodies' keys, a closed connection's job coming back, a put parked
 * by a full block tube, reject's OUT_OF_MEMORY, one queue for both
 * protocols, and the listener's user under users:.
 *
 * Nothing here asserts how long anything took: TIMED_OUT and DEADLINE_SOON
 * are checked by what comes back, not by when.
 */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bproto.h"
#include "ck_conn.h"
#include "ck_redis.h"
#include "harness.h"

#define BS_YAML "beanstalk: {listen: [127.0.0.1:0]}\n"

/* ---- a beanstalk client over the harness's connection ---- */

static void bs_start(sd_t *d, const char *yaml)
{
    char conf[4096];

    snprintf(conf, sizeof conf, "%s%s", BS_YAML, yaml ? yaml : "");
    ck_start(d, conf);
    ck_assert_msg(d->bport > 0, "no beanstalk listener in the port file");
}

static tc_t *bs_open(const sd_t *d)
{
    tc_t *c = tc_open_port(d, d->bport);

    ck_assert_msg(c != NULL, "cannot connect to the beanstalk listener");
    return c;
}

static void bs_send(tc_t *c, const char *s)
{
    ck_assert_int_eq(tc_send(c, s, strlen(s)), 0);
}

static const char *bs_line(tc_t *c)
{
    const char *l = tc_line(c);

    ck_assert_msg(l != NULL, "no reply line");
    return l;
}

static void bs_expect(tc_t *c, const char *want)
{
    const char *l = bs_line(c);

    ck_assert_msg(strcmp(l, want) == 0, "got '%s', wanted '%s'", l, want);
}

/* Send a command line, expect one reply line. */
static void bs_cmd(tc_t *c, const char *cmd, const char *want)
{
    char line[512];

    snprintf(line, sizeof line, "%s\r\n", cmd);
    bs_send(c, line);
    bs_expect(c, want);
}

/* The body after "OK n", "RESERVED id n" or "FOUND id n" (malloc'ed). */
static char *bs_body(tc_t *c, size_t n)
{
    char *b = malloc(n + 3);

    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tc_read_n(c, b, n + 2), 0);
    ck_assert_msg(b[n] == '\r' && b[n + 1] == '\n', "body not followed by CRLF");
    b[n] = '\0';
    return b;
}

/* Expect "<word> <id> <bytes>" and then `body`; returns the id. */
static unsigned long long bs_job(tc_t *c, const char *word, const char *body)
{
    unsigned long long id = 0;
    size_t n = 0;
    char w[32];
    const char *l = bs_line(c);
    char *got;

    ck_assert_msg(sscanf(l, "%31s %llu %zu", w, &id, &n) == 3 && strcmp(w, word) == 0, "got '%s', wanted %s",
                  l, word);
    got = bs_body(c, n);
    ck_assert_msg(n == strlen(body) && strcmp(got, body) == 0, "body '%s', wanted '%s'", got,
                  body);
    free(got);
    return id;
}

static unsigned long long bs_put(tc_t *c, unsigned pri, unsigned delay, unsigned ttr,
                                 const char *body)
{
    char line[256];
    unsigned long long id = 0;

    snprintf(line, sizeof line, "put %u %u %u %zu\r\n%s\r\n", pri, delay, ttr, strlen(body),
             body);
    bs_send(c, line);
    const char *l = bs_line(c);
    ck_assert_msg(sscanf(l, "INSERTED %llu", &id) == 1, "put: got '%s'", l);
    return id;
}

/* A YAML body ("OK n" first): malloc'ed. */
static char *bs_yaml(tc_t *c, const char *cmd)
{
    size_t n = 0;

    bs_send(c, cmd);
    bs_send(c, "\r\n");
    const char *l = bs_line(c);
    ck_assert_msg(sscanf(l, "OK %zu", &n) == 1, "%s: got '%s'", cmd, l);
    return bs_body(c, n);
}

/* The value of `key` in a YAML body, as text (static). */
static const char *bs_field(const char *body, const char *key)
{
    static char val[256];
    char k[96];
    const char *p;

    snprintf(k, sizeof k, "\n%s: ", key);
    p = strstr(body, k);
    ck_assert_msg(p != NULL, "no %s in:\n%s", key, body);
    p += strlen(k);
    snprintf(val, sizeof val, "%.*s", (int)strcspn(p, "\n"), p);
    return val;
}

static long long bs_num(const char *body, const char *key)
{
    return atoll(bs_field(body, key));
}

static char *bs_id_cmd(const char *word, unsigned long long id)
{
    static char line[64];

    snprintf(line, sizeof line, "%s %llu", word, id);
    return line;
}

/* ---- the basics ---- */

START_TEST(test_put_reserve_delete)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *c = bs_open(&d);
    unsigned long long id = bs_put(c, 0, 0, 60, "hello");

    bs_cmd(c, "list-tube-used", "USING default");
    bs_send(c, "reserve\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "hello"), id);
    bs_cmd(c, bs_id_cmd("delete", id), "DELETED");
    bs_cmd(c, bs_id_cmd("delete", id), "NOT_FOUND");
    /* A body with CR, LF and a NUL is bytes, nothing more. */
    ck_assert_int_eq(tc_send(c, "put 1 0 60 5\r\na\r\n\0b\r\n", 21), 0);
    const char *l = bs_line(c);
    ck_assert_msg(strncmp(l, "INSERTED ", 9) == 0, "got '%s'", l);
    bs_send(c, "reserve-with-timeout 0\r\n");
    l = bs_line(c);
    ck_assert_msg(strncmp(l, "RESERVED ", 9) == 0 && strcmp(strrchr(l, ' '), " 5") == 0,
                  "got '%s'", l);
    char *b = bs_body(c, 5);
    ck_assert(memcmp(b, "a\r\n\0b", 5) == 0);
    free(b);
    bs_send(c, "quit\r\n");
    ck_assert(tc_closed(c, 5000));
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_errors)
{
    sd_t d;
    bs_start(&d, "limits: {max_message: 100B}\n");
    tc_t *c = bs_open(&d);

    bs_cmd(c, "put x", "BAD_FORMAT");
    bs_cmd(c, "frobnicate", "UNKNOWN_COMMAND");
    bs_cmd(c, "", "UNKNOWN_COMMAND");
    bs_cmd(c, "use -bad", "BAD_FORMAT");
    bs_send(c, "put 0 0 1 1\r\nxyz\r\n");
    bs_expect(c, "EXPECTED_CRLF");
    bs_expect(c, "UNKNOWN_COMMAND"); /* the empty line that followed */
    /* max-job-size is limits.max_message: 100 goes in, 101 is skipped. */
    char big[256];
    memset(big, 'x', sizeof big);
    snprintf(big, sizeof big, "put 0 0 1 101\r\n%0101d\r\n", 0);
    bs_send(c, big);
    bs_expect(c, "JOB_TOO_BIG");
    snprintf(big, sizeof big, "put 0 0 1 100\r\n%0100d\r\n", 0);
    bs_send(c, big);
    const char *l = bs_line(c);
    ck_assert_msg(strncmp(l, "INSERTED ", 9) == 0, "got '%s'", l);
    bs_cmd(c, "peek 999999", "NOT_FOUND");
    bs_cmd(c, "stats-job 999999", "NOT_FOUND");
    bs_cmd(c, "stats-tube nosuch", "NOT_FOUND");
    bs_cmd(c, "ignore default", "NOT_IGNORED");
    bs_cmd(c, "ignore nosuch", "WATCHING 1");
    bs_cmd(c, "touch 999999", "NOT_FOUND");
    bs_cmd(c, "release 999999 0 0", "NOT_FOUND");
    bs_cmd(c, "bury 999999 0", "NOT_FOUND");
    bs_cmd(c, "kick-job 999999", "NOT_FOUND");
    bs_cmd(c, "reserve-job 999999", "NOT_FOUND");
    bs_cmd(c, "pause-tube nosuch 1", "NOT_FOUND");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_timed_out_and_deadline_soon)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *c = bs_open(&d);

    bs_cmd(c, "reserve-with-timeout 0", "TIMED_OUT");
    bs_cmd(c, "reserve-with-timeout 1", "TIMED_OUT");
    /* ttr 1: the job is within a second of its deadline from the start. */
    unsigned long long id = bs_put(c, 0, 0, 1, "x");
    bs_send(c, "reserve\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "x"), id);
    bs_cmd(c, "reserve", "DEADLINE_SOON");
    /* Once the TTR has passed, the job is ready again and comes back
     * (until then, every reserve says DEADLINE_SOON). */
    for (int i = 0;; i++) {
        bs_send(c, "reserve-with-timeout 10\r\n");
        const char *l = bs_line(c);
        if (strcmp(l, "DEADLINE_SOON") != 0) {
            ck_assert_msg(strncmp(l, "RESERVED ", 9) == 0, "got '%s'", l);
            free(bs_body(c, 1));
            break;
        }
        ck_assert_int_lt(i, 200);
        usleep(50000);
    }
    char *b = bs_yaml(c, bs_id_cmd("stats-job", id));
    ck_assert_int_eq(bs_num(b, "reserves"), 2);
    ck_assert_int_eq(bs_num(b, "timeouts"), 1);
    free(b);
    bs_cmd(c, bs_id_cmd("delete", id), "DELETED");
    /* A reserve already waiting is ended by DEADLINE_SOON too, once a held
     * job comes within a second of its TTR. */
    id = bs_put(c, 0, 0, 3, "y");
    bs_send(c, "reserve\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "y"), id);
    bs_cmd(c, "reserve-with-timeout 30", "DEADLINE_SOON");
    bs_cmd(c, bs_id_cmd("touch", id), "TOUCHED");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_tubes_use_watch_ignore)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *c = bs_open(&d), *o = bs_open(&d);
    char *b;

    bs_cmd(c, "use foo", "USING foo");
    bs_cmd(c, "list-tube-used", "USING foo");
    bs_cmd(c, "watch a", "WATCHING 2");
    bs_cmd(c, "watch a", "WATCHING 2");
    bs_cmd(c, "watch b(1)", "WATCHING 3");
    b = bs_yaml(c, "list-tubes-watched");
    ck_assert_str_eq(b, "---\n- default\n- a\n- b(1)\n");
    free(b);
    bs_cmd(c, "ignore a", "WATCHING 2");
    bs_cmd(c, "ignore default", "WATCHING 1");
    bs_cmd(c, "ignore b(1)", "NOT_IGNORED");
    /* Tubes exist while used or watched, and default always. */
    b = bs_yaml(o, "list-tubes");
    ck_assert_msg(strstr(b, "- default\n") && strstr(b, "- foo\n") && strstr(b, "- b(1)\n") &&
                      !strstr(b, "- a\n"),
                  "list-tubes:\n%s", b);
    free(b);
    b = bs_yaml(o, "stats-tube foo");
    ck_assert_str_eq(bs_field(b, "name"), "foo");
    ck_assert_int_eq(bs_num(b, "current-using"), 1);
    ck_assert_int_eq(bs_num(b, "current-watching"), 0);
    free(b);
    b = bs_yaml(o, "stats-tube default");
    ck_assert_int_eq(bs_num(b, "current-using"), 1);
    ck_assert_int_eq(bs_num(b, "current-watching"), 1);
    free(b);
    /* Once nobody uses foo and it holds no job, it is gone. */
    tc_close(c);
    usleep(100000);
    for (int i = 0; i < 100; i++) {
        bs_send(o, "stats-tube foo\r\n");
        const char *l = bs_line(o);
        if (strcmp(l, "NOT_FOUND") == 0)
            break;
        free(bs_body(o, (size_t)atoll(l + 3)));
        ck_assert_int_lt(i, 99);
        usleep(50000);
    }
    tc_close(o);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_tube_names_are_bounded)
{
    sd_t d;
    bs_start(&d, "limits: {max_topics: 3}\n");
    tc_t *c = bs_open(&d);
    char cmd[32], want[32];

    /* default and five more names: twice max_topics, then no more. */
    for (int i = 1; i <= 5; i++) {
        snprintf(cmd, sizeof cmd, "watch w%d", i);
        snprintf(want, sizeof want, "WATCHING %d", i + 1);
        bs_cmd(c, cmd, want);
    }
    bs_cmd(c, "watch w6", "OUT_OF_MEMORY");
    bs_cmd(c, "use w6", "OUT_OF_MEMORY");
    bs_cmd(c, "list-tube-used", "USING default");
    bs_cmd(c, "ignore w1", "WATCHING 5");
    bs_cmd(c, "watch w6", "WATCHING 6"); /* w1's entry went with its last watcher */
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- reserving ---- */

START_TEST(test_reserve_watched_tubes_by_priority)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *p = bs_open(&d), *w = bs_open(&d);

    bs_cmd(p, "use b", "USING b");
    unsigned long long b10 = bs_put(p, 10, 0, 60, "b10");
    bs_cmd(p, "use a", "USING a");
    unsigned long long a100 = bs_put(p, 100, 0, 60, "a100");
    unsigned long long a5 = bs_put(p, 5, 0, 60, "a5");
    unsigned long long a5b = bs_put(p, 5, 0, 60, "a5b");
    bs_cmd(p, "use c", "USING c");
    bs_put(p, 0, 0, 60, "c0"); /* not watched: never reserved */

    bs_cmd(w, "watch a", "WATCHING 2");
    bs_cmd(w, "watch b", "WATCHING 3");
    bs_send(w, "reserve\r\n");
    ck_assert_uint_eq(bs_job(w, "RESERVED", "a5"), a5);
    bs_send(w, "reserve\r\n");
    ck_assert_uint_eq(bs_job(w, "RESERVED", "a5b"), a5b); /* FIFO within a priority */
    bs_send(w, "reserve\r\n");
    ck_assert_uint_eq(bs_job(w, "RESERVED", "b10"), b10);
    bs_send(w, "reserve\r\n");
    ck_assert_uint_eq(bs_job(w, "RESERVED", "a100"), a100);
    bs_cmd(w, "reserve-with-timeout 0", "TIMED_OUT");

    /* A waiting reserve gets the next put, on any watched tube. */
    bs_send(w, "reserve\r\n");
    bs_cmd(p, "use b", "USING b");
    unsigned long long late = bs_put(p, 0, 0, 60, "late");
    ck_assert_uint_eq(bs_job(w, "RESERVED", "late"), late);
    tc_close(p);
    tc_close(w);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_closed_connection_job_comes_back)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *a = bs_open(&d), *b = bs_open(&d);
    unsigned long long id = bs_put(a, 0, 0, 600, "mine");

    bs_send(a, "reserve\r\n");
    ck_assert_uint_eq(bs_job(a, "RESERVED", "mine"), id);
    bs_cmd(b, "reserve-with-timeout 0", "TIMED_OUT");
    tc_close(a);
    bs_send(b, "reserve-with-timeout 10\r\n");
    ck_assert_uint_eq(bs_job(b, "RESERVED", "mine"), id);
    bs_cmd(b, bs_id_cmd("touch", id), "TOUCHED");
    tc_close(b);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_release_bury_kick)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *c = bs_open(&d);
    unsigned long long id = bs_put(c, 50, 0, 60, "job");
    char *b;

    bs_send(c, "reserve\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "job"), id);
    bs_cmd(c, bs_id_cmd("release", id), "BAD_FORMAT");
    char line[64];
    snprintf(line, sizeof line, "release %llu 7 0", id);
    bs_cmd(c, line, "RELEASED");
    bs_send(c, "reserve\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "job"), id);
    b = bs_yaml(c, bs_id_cmd("stats-job", id));
    ck_assert_str_eq(bs_field(b, "state"), "reserved");
    ck_assert_int_eq(bs_num(b, "pri"), 7);
    ck_assert_int_eq(bs_num(b, "reserves"), 2);
    ck_assert_int_eq(bs_num(b, "releases"), 1);
    ck_assert_int_eq(bs_num(b, "ttr"), 60);
    free(b);
    snprintf(line, sizeof line, "bury %llu 9", id);
    bs_cmd(c, line, "BURIED");
    b = bs_yaml(c, bs_id_cmd("stats-job", id));
    ck_assert_str_eq(bs_field(b, "state"), "buried");
    ck_assert_int_eq(bs_num(b, "pri"), 9);
    ck_assert_int_eq(bs_num(b, "buries"), 1);
    free(b);
    bs_send(c, "peek-buried\r\n");
    ck_assert_uint_eq(bs_job(c, "FOUND", "job"), id);
    bs_cmd(c, "reserve-with-timeout 0", "TIMED_OUT");
    bs_cmd(c, "kick 10", "KICKED 1");
    bs_cmd(c, "kick 10", "KICKED 0");
    bs_send(c, "reserve\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "job"), id);
    bs_cmd(c, line, "BURIED");
    bs_cmd(c, bs_id_cmd("kick-job", id), "KICKED");
    bs_cmd(c, bs_id_cmd("kick-job", id), "NOT_FOUND"); /* ready: nothing to kick */
    b = bs_yaml(c, bs_id_cmd("stats-job", id));
    ck_assert_str_eq(bs_field(b, "state"), "ready");
    ck_assert_int_eq(bs_num(b, "kicks"), 2);
    free(b);
    bs_cmd(c, bs_id_cmd("delete", id), "DELETED"); /* a ready job may be deleted */

    /* With nothing buried, kick moves delayed jobs. */
    unsigned long long late = bs_put(c, 0, 100, 60, "later");
    b = bs_yaml(c, bs_id_cmd("stats-job", late));
    ck_assert_str_eq(bs_field(b, "state"), "delayed");
    ck_assert_int_eq(bs_num(b, "delay"), 100);
    ck_assert_int_gt(bs_num(b, "time-left"), 90);
    free(b);
    bs_cmd(c, "peek-ready", "NOT_FOUND");
    bs_send(c, "peek-delayed\r\n");
    ck_assert_uint_eq(bs_job(c, "FOUND", "later"), late);
    bs_cmd(c, "kick 1", "KICKED 1");
    bs_send(c, "peek-ready\r\n");
    ck_assert_uint_eq(bs_job(c, "FOUND", "later"), late);
    bs_send(c, bs_id_cmd("peek", late));
    bs_send(c, "\r\n");
    ck_assert_uint_eq(bs_job(c, "FOUND", "later"), late);
    bs_send(c, bs_id_cmd("reserve-job", late));
    bs_send(c, "\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "later"), late);
    bs_cmd(c, "kick 5", "KICKED 0");
    bs_cmd(c, "use empty", "USING empty");
    bs_cmd(c, "kick 5", "KICKED 0");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_pause_tube)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *c = bs_open(&d);
    char *b;

    unsigned long long id = bs_put(c, 0, 0, 60, "p");
    bs_cmd(c, "pause-tube default 100", "PAUSED");
    bs_cmd(c, "reserve-with-timeout 0", "TIMED_OUT");
    b = bs_yaml(c, "stats-tube default");
    ck_assert_int_eq(bs_num(b, "pause"), 100);
    ck_assert_int_gt(bs_num(b, "pause-time-left"), 90);
    ck_assert_int_eq(bs_num(b, "cmd-pause-tube"), 1);
    ck_assert_int_eq(bs_num(b, "current-jobs-ready"), 1);
    free(b);
    bs_cmd(c, "pause-tube default 0", "PAUSED");
    bs_send(c, "reserve-with-timeout 0\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "p"), id);
    /* A tube only watched can be paused: it exists. */
    bs_cmd(c, "watch quiet", "WATCHING 2");
    bs_cmd(c, "pause-tube quiet 1", "PAUSED");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- stats bodies ---- */

#define KEY_(name, key) key,
static const char *const stats_keys[] = {
    BPROTO_STATS_COUNTS_HEAD(KEY_) "version", "rusage-utime", "rusage-stime",
    BPROTO_STATS_COUNTS_TAIL(KEY_) "draining", "id", "hostname", "os", "platform"};
static const char *const job_keys[] = {"id", "tube", "state", BPROTO_JOB_COUNTS(KEY_)};
static const char *const tube_keys[] = {"name", BPROTO_TUBE_COUNTS(KEY_)};

/* The body's keys are exactly `keys`, in that order. */
static void bs_keys(const char *body, const char *const *keys, size_t n)
{
    const char *p = body;

    ck_assert_msg(strncmp(p, "---\n", 4) == 0, "no YAML start:\n%s", body);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]);
        ck_assert_msg(strncmp(p, keys[i], kl) == 0 && p[kl] == ':',
                      "key %zu should be %s:\n%s", i, keys[i], body);
        p = strchr(p, '\n');
        ck_assert_ptr_nonnull(p);
        p++;
    }
    ck_assert_msg(*p == '\0', "more keys than beanstalkd's:\n%s", p);
}

START_TEST(test_stats_bodies)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *c = bs_open(&d), *w = bs_open(&d);
    char *b;

    unsigned long long id = bs_put(c, 5, 0, 60, "s");
    bs_put(c, 2000, 0, 60, "t");
    bs_send(w, "reserve\r\n");
    ck_assert_uint_eq(bs_job(w, "RESERVED", "s"), id);
    b = bs_yaml(c, "stats");
    bs_keys(b, stats_keys, sizeof stats_keys / sizeof stats_keys[0]);
    ck_assert_int_eq(bs_num(b, "cmd-put"), 2);
    ck_assert_int_eq(bs_num(b, "cmd-reserve"), 1);
    ck_assert_int_eq(bs_num(b, "current-jobs-ready"), 1);
    ck_assert_int_eq(bs_num(b, "current-jobs-reserved"), 1);
    ck_assert_int_eq(bs_num(b, "current-jobs-urgent"), 0);
    ck_assert_int_eq(bs_num(b, "total-jobs"), 2);
    ck_assert_int_eq(bs_num(b, "current-connections"), 2);
    ck_assert_int_eq(bs_num(b, "total-connections"), 2);
    ck_assert_int_eq(bs_num(b, "current-producers"), 1);
    ck_assert_int_eq(bs_num(b, "current-workers"), 1);
    ck_assert_int_eq(bs_num(b, "current-waiting"), 0);
    ck_assert_int_eq(bs_num(b, "max-job-size"), 1048576);
    ck_assert_int_eq(bs_num(b, "pid"), d.pid);
    ck_assert_str_eq(bs_field(b, "version"), "\"1.12\"");
    ck_assert_str_eq(bs_field(b, "draining"), "false");
    free(b);
    b = bs_yaml(c, bs_id_cmd("stats-job", id));
    bs_keys(b, job_keys, sizeof job_keys / sizeof job_keys[0]);
    ck_assert_int_eq(bs_num(b, "id"), (long long)id);
    ck_assert_str_eq(bs_field(b, "tube"), "default");
    ck_assert_str_eq(bs_field(b, "state"), "reserved");
    ck_assert_int_eq(bs_num(b, "pri"), 5);
    ck_assert_int_eq(bs_num(b, "reserves"), 1);
    free(b);
    b = bs_yaml(c, "stats-tube default");
    bs_keys(b, tube_keys, sizeof tube_keys / sizeof tube_keys[0]);
    ck_assert_int_eq(bs_num(b, "current-jobs-ready"), 1);
    ck_assert_int_eq(bs_num(b, "current-jobs-reserved"), 1);
    ck_assert_int_eq(bs_num(b, "total-jobs"), 2);
    ck_assert_int_eq(bs_num(b, "current-using"), 2);
    ck_assert_int_eq(bs_num(b, "current-watching"), 2);
    free(b);
    /* A waiting reserve is counted while it waits. */
    bs_cmd(w, bs_id_cmd("delete", id), "DELETED");
    bs_send(w, "reserve-with-timeout 0\r\n");
    bs_job(w, "RESERVED", "t");
    bs_send(w, "reserve\r\n");
    for (int i = 0;; i++) {
        b = bs_yaml(c, "stats");
        long long waiting = bs_num(b, "current-waiting");
        free(b);
        if (waiting == 1)
            break;
        ck_assert_int_lt(i, 100);
        usleep(20000);
    }
    tc_close(c);
    tc_close(w);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- bounds ---- */

START_TEST(test_full_block_tube_parks_put)
{
    sd_t d;
    bs_start(&d, "topics:\n  full: {max_messages: 1, overflow: block}\n");
    tc_t *p = bs_open(&d), *w = bs_open(&d);

    bs_cmd(p, "use full", "USING full");
    unsigned long long first = bs_put(p, 0, 0, 60, "one");
    /* The second put parks; the command behind it waits its turn. */
    bs_send(p, "put 0 0 60 3\r\ntwo\r\nlist-tube-used\r\n");
    /* It is parked: the native STATS says so, and no reply came. */
    tc_t *n = ck_open(&d);
    for (int i = 0;; i++) {
        ck_send(n, "STATS full\r\n");
        ck_assert_int_eq(tc_reply(n), 0);
        if (memmem(n->r.body, n->r.body_len, "\nblocked_producers: 1\n", 22) != NULL)
            break;
        ck_assert_int_lt(i, 500);
        usleep(10000);
    }
    struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
    ck_assert_int_eq(poll(&pfd, 1, 200), 0); /* no INSERTED yet */
    tc_close(n);
    bs_cmd(w, "watch full", "WATCHING 2");
    bs_cmd(w, "ignore default", "WATCHING 1");
    bs_send(w, "reserve\r\n");
    ck_assert_uint_eq(bs_job(w, "RESERVED", "one"), first);
    bs_cmd(w, bs_id_cmd("delete", first), "DELETED");
    const char *l = bs_line(p);
    ck_assert_msg(strncmp(l, "INSERTED ", 9) == 0, "got '%s'", l);
    bs_expect(p, "USING full");
    bs_send(w, "reserve\r\n");
    bs_job(w, "RESERVED", "two");
    tc_close(p);
    tc_close(w);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_full_reject_tube_out_of_memory)
{
    sd_t d;
    bs_start(&d, "topics:\n  rej: {max_messages: 1, overflow: reject}\n");
    tc_t *p = bs_open(&d);

    bs_cmd(p, "use rej", "USING rej");
    bs_put(p, 0, 0, 60, "one");
    bs_send(p, "put 0 0 60 3\r\ntwo\r\n");
    bs_expect(p, "OUT_OF_MEMORY");
    bs_cmd(p, "list-tube-used", "USING rej");
    tc_close(p);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* A client that sends and never reads: its replies stop at output_buffer
 * (and so do its reads), the server's memory does not follow it. */
START_TEST(test_unread_replies_are_bounded)
{
    static char body[64 * 1024], cmds[8 * 4000];
    sd_t d;
    bs_start(&d, "limits: {output_buffer: 1MiB}\n");
    tc_t *p = bs_open(&d), *hog = bs_open(&d);
    char head[64];
    uint64_t base, rss = 0;

    memset(body, 'j', sizeof body);
    snprintf(head, sizeof head, "put 0 0 60 %zu\r\n", sizeof body);
    bs_send(p, head);
    ck_assert_int_eq(tc_send(p, body, sizeof body), 0);
    bs_send(p, "\r\n");
    bs_expect(p, "INSERTED 1");
    base = sd_rss_kib(d.pid);
    for (size_t i = 0; i < 4000; i++)
        memcpy(cmds + 8 * i, "peek 1\r\n", 8);
    /* 4000 peeks ask for 256 MB of replies. */
    ck_assert_int_eq(tc_send(hog, cmds, sizeof cmds), 0);
    for (int i = 0; i < 20; i++) {
        usleep(50000);
        uint64_t now = sd_rss_kib(d.pid);
        rss = now > rss ? now : rss;
    }
    ck_assert_msg(rss < base + 16 * 1024, "RSS grew from %llu to %llu KiB",
                  (unsigned long long)base, (unsigned long long)rss);
    /* The others are served all along. */
    bs_cmd(p, "list-tube-used", "USING default");
    bs_cmd(p, "peek 1", "FOUND 1 65536");
    free(bs_body(p, sizeof body));
    tc_close(hog);
    tc_close(p);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* Big jobs are written from their message's memory (as native pushes):
 * jobs deleted while their RESERVED replies still wait for a worker that
 * has not read, their memory taken by new jobs meanwhile, reach that
 * worker intact. */
enum { BS_BIG = 256 * 1024, BS_NBIG = 48 };

static void bs_big_put(tc_t *p, unsigned k, char *buf)
{
    char head[64];

    sd_pattern(buf, BS_BIG, k);
    snprintf(head, sizeof head, "put 0 0 60 %d\r\n", BS_BIG);
    bs_send(p, head);
    ck_assert_int_eq(tc_send(p, buf, BS_BIG), 0);
    bs_send(p, "\r\n");
    bs_line(p);
}

START_TEST(test_lent_jobs_outlive_their_delete)
{
    sd_t d;
    char *buf = malloc(BS_BIG), line[64], *body;
    bs_start(&d, "limits: {output_buffer: 64MiB}\n");
    tc_t *p = bs_open(&d), *w = bs_open(&d);
    unsigned long long id;
    size_t n, i;

    ck_assert_ptr_nonnull(buf);
    for (unsigned k = 1; k <= BS_NBIG; k++)
        bs_big_put(p, k, buf);
    for (unsigned k = 1; k <= BS_NBIG; k++)
        bs_send(w, "reserve-with-timeout 0\r\n");
    /* The last ones wait in the broker, behind the 4 MiB the kernel took. */
    for (unsigned k = BS_NBIG - 7; k <= BS_NBIG; k++) {
        snprintf(line, sizeof line, "delete %u\r\n", k);
        bs_send(w, line);
    }
    for (int tries = 0; tries < 200; tries++) {
        body = bs_yaml(p, "stats-tube default");
        n = (size_t)bs_num(body, "current-jobs-reserved");
        free(body);
        if (n == BS_NBIG - 8)
            break;
        usleep(20000);
    }
    ck_assert_uint_eq(n, BS_NBIG - 8);
    bs_cmd(p, "use filler", "USING filler");
    for (unsigned k = 1; k <= BS_NBIG; k++)
        bs_big_put(p, 1000 + k, buf);
    for (unsigned k = 1; k <= BS_NBIG; k++) {
        const char *l = bs_line(w);
        ck_assert_msg(sscanf(l, "RESERVED %llu %zu", &id, &n) == 2 && id == k && n == BS_BIG,
                      "got '%s', wanted RESERVED %u %d", l, k, BS_BIG);
        body = bs_body(w, n);
        i = sd_pattern_diff(body, n, k, buf);
        ck_assert_msg(i == n, "job %u: byte %zu is '%c', not '%c'", k, i, body[i], buf[i]);
        free(body);
    }
    for (unsigned k = BS_NBIG - 7; k <= BS_NBIG; k++)
        bs_expect(w, "DELETED");
    tc_close(w);
    tc_close(p);
    ck_assert_int_eq(sd_stop(&d), 0);
    free(buf);
}
END_TEST

/* ---- one queue, two protocols ---- */

START_TEST(test_native_and_beanstalk_share_queues)
{
    sd_t d;
    bs_start(&d, NULL);
    tc_t *n = ck_open(&d), *b = bs_open(&d);
    char line[64];

    /* A native PUB is reserved over beanstalk. */
    ck_send(n, "PUB jobs 5\r\nnativ\r\n");
    ck_expect(n, "+OK 1");
    bs_cmd(b, "watch jobs", "WATCHING 2");
    bs_send(b, "reserve\r\n");
    ck_assert_uint_eq(bs_job(b, "RESERVED", "nativ"), 1);
    bs_cmd(b, "delete 1", "DELETED");
    /* A beanstalk put is received with GET and acked natively. */
    bs_cmd(b, "use out", "USING out");
    unsigned long long id = bs_put(b, 0, 0, 60, "bean");
    ck_send(n, "GET out 0\r\n");
    snprintf(line, sizeof line, "MSG out %llu 1 4", id);
    ck_expect(n, line);
    ck_assert(n->r.body_len == 4 && memcmp(n->r.body, "bean", 4) == 0);
    snprintf(line, sizeof line, "ACK %llu\r\n", id);
    ck_send(n, line);
    ck_expect(n, "+OK 1");
    bs_cmd(b, bs_id_cmd("peek", id), "NOT_FOUND");
    tc_close(n);
    tc_close(b);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- confirm mode: INSERTED once Redis has the job ---- */

START_TEST(test_confirm_mode_waits_for_redis)
{
    char yaml[512];
    ckr_t redis;
    sd_t d;

    ckr_start(&redis, NULL, false, 10000); /* 10 s to answer PING */
    snprintf(yaml, sizeof yaml,
             "redis: {enabled: true, address: \"unix:%s\", confirm: true, "
             "confirm_timeout: 300ms}\n",
             redis.sock);
    bs_start(&d, yaml);
    tc_t *c = bs_open(&d);

    /* Pipelined: the command after the put waits for its INSERTED. */
    bs_send(c, "put 0 0 60 2\r\nok\r\nlist-tube-used\r\n");
    const char *l = bs_line(c);
    ck_assert_msg(strncmp(l, "INSERTED ", 9) == 0, "got '%s'", l);
    bs_expect(c, "USING default");
    bs_send(c, "reserve-with-timeout 0\r\n");
    bs_job(c, "RESERVED", "ok");
    /* Redis gone: the mirror cannot take the job. */
    ckr_kill(&redis);
    bs_send(c, "put 0 0 60 2\r\nno\r\nlist-tube-used\r\n");
    bs_expect(c, "INTERNAL_ERROR");
    bs_expect(c, "USING default");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
    ckr_stop(&redis);
}
END_TEST

/* ---- users ---- */

static const char *users_yaml =
    "users:\n"
    "  worker:\n"
    "    password: secret-w\n"
    "    publish: [\"jobs.*\"]\n"
    "    subscribe: [\"jobs.*\", \"audit\"]\n"
    "beanstalk: {listen: [127.0.0.1:0], user: worker}\n";

START_TEST(test_listener_user_rights)
{
    sd_t d;
    ck_start(&d, users_yaml);
    ck_assert_int_gt(d.bport, 0);
    tc_t *c = bs_open(&d);

    /* default is watched and used, but worker may not touch it. */
    bs_cmd(c, "reserve-with-timeout 0", "NOT_FOUND");
    bs_send(c, "put 0 0 60 1\r\nx\r\n");
    bs_expect(c, "NOT_FOUND");
    bs_cmd(c, "use other", "NOT_FOUND");
    bs_cmd(c, "list-tube-used", "USING default");
    bs_cmd(c, "watch other", "NOT_FOUND");
    bs_cmd(c, "stats-tube default", "NOT_FOUND");
    bs_cmd(c, "use jobs.a", "USING jobs.a");
    unsigned long long id = bs_put(c, 0, 0, 60, "ok");
    bs_cmd(c, "watch jobs.a", "WATCHING 2");
    bs_send(c, "reserve\r\n");
    ck_assert_uint_eq(bs_job(c, "RESERVED", "ok"), id);
    bs_cmd(c, bs_id_cmd("delete", id), "DELETED");
    /* audit may be read, not written. */
    bs_cmd(c, "use audit", "USING audit");
    bs_send(c, "put 0 0 60 1\r\nx\r\n");
    bs_expect(c, "NOT_FOUND");
    char *b = bs_yaml(c, "list-tubes");
    ck_assert_msg(strstr(b, "- default\n") == NULL && strstr(b, "- jobs.a\n") != NULL,
                  "list-tubes:\n%s", b);
    free(b);
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* Rewrite the config, SIGHUP, wait for the log to say how it went. */
static void bs_reload(sd_t *d, const char *yaml, const char *said)
{
    int before = sd_log_count(d, said);

    ck_assert_int_eq(sd_write_conf(d, yaml), 0);
    sd_signal(d, SIGHUP);
    for (int i = 0; i < 1500 && sd_log_count(d, said) == before; i++)
        usleep(10000);
    ck_assert_msg(sd_log_count(d, said) > before, "the log never said '%s'", said);
}

START_TEST(test_reload_rights_and_listeners)
{
    sd_t d;
    char yaml[1024];

    ck_start(&d, users_yaml);
    tc_t *c = bs_open(&d);
    bs_cmd(c, "use jobs.a", "USING jobs.a");
    bs_put(c, 0, 0, 60, "one");
    /* worker may no longer publish: the next put is refused. */
    snprintf(yaml, sizeof yaml,
             "listen: [127.0.0.1:%d]\n"
             "users:\n  worker: {password: secret-w, subscribe: [\"jobs.*\"]}\n"
             "beanstalk: {listen: [127.0.0.1:%d], user: worker}\n",
             d.port, d.bport);
    bs_reload(&d, yaml, "reloaded");
    bs_send(c, "put 0 0 60 3\r\ntwo\r\n");
    bs_expect(c, "NOT_FOUND");
    bs_cmd(c, "watch jobs.a", "WATCHING 2");
    /* Users without beanstalk.user: rejected whole, the rights stay. */
    bs_reload(&d, "users:\n  worker: {password: p}\nbeanstalk: {listen: [127.0.0.1:0]}\n",
              "reload rejected");
    ck_assert(sd_log_has(&d, "beanstalk needs user: when users are configured"));
    bs_cmd(c, "watch jobs.b", "WATCHING 3");
    /* Another beanstalk address applies at the next restart; the old one stays. */
    snprintf(yaml, sizeof yaml,
             "listen: [127.0.0.1:%d]\nbeanstalk: {listen: [127.0.0.1:0]}\n", d.port);
    bs_reload(&d, yaml, "listen addresses changed");
    tc_t *c2 = bs_open(&d);
    bs_cmd(c2, "use open", "USING open"); /* no users now: anything goes */
    bs_put(c2, 0, 0, 60, "free");
    tc_close(c);
    tc_close(c2);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

static Suite *bstalk_suite(void)
{
    Suite *s = suite_create("bstalk");
    TCase *tc = tcase_create("listener");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_put_reserve_delete);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_timed_out_and_deadline_soon);
    tcase_add_test(tc, test_tubes_use_watch_ignore);
    tcase_add_test(tc, test_tube_names_are_bounded);
    tcase_add_test(tc, test_reserve_watched_tubes_by_priority);
    tcase_add_test(tc, test_closed_connection_job_comes_back);
    tcase_add_test(tc, test_release_bury_kick);
    tcase_add_test(tc, test_pause_tube);
    tcase_add_test(tc, test_stats_bodies);
    tcase_add_test(tc, test_full_block_tube_parks_put);
    tcase_add_test(tc, test_full_reject_tube_out_of_memory);
    tcase_add_test(tc, test_unread_replies_are_bounded);
    tcase_add_test(tc, test_lent_jobs_outlive_their_delete);
    tcase_add_test(tc, test_native_and_beanstalk_share_queues);
    tcase_add_test(tc, test_listener_user_rights);
    tcase_add_test(tc, test_confirm_mode_waits_for_redis);
    tcase_add_test(tc, test_reload_rights_and_listeners);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bstalk_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
