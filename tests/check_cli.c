/* check_cli.c: the `sluice` command-line client against the real daemon:
 * publishing from stdin, arguments, NUL-separated input and binary files
 * read back byte for byte; --exec ACK and NACK; --count not taking more
 * than asked; error exit statuses; stats, topics, ping.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ck_conn.h"
#include "harness.h"

static const char cli_conf[] =
    "limits:\n"
    "  max_message: 100KiB\n"
    "topics:\n"
    "  small:\n"
    "    max_messages: 1\n"
    "    overflow: reject\n";

static sd_t daemon_;

static sd_guard_t daemon_guard = { -1, -1 };

static void cli_start(const char *conf)
{
    ck_assert_int_eq(sd_start(&daemon_, conf), 0);
    daemon_guard = sd_guard(daemon_.pid);
}

static void cli_setup(void)
{
    cli_start(cli_conf);
}

static const char auth_conf[] =
    "users:\n"
    "  alice:\n"
    "    password: secret\n"
    "    publish: [\"a.*\"]\n"
    "    subscribe: [\"a.*\"]\n";

static void auth_setup(void)
{
    cli_start(auth_conf);
}

static void cli_teardown(void)
{
    sd_stop(&daemon_);
    sd_guard_release(&daemon_guard);
}

/* Run `sluice -s ADDR <args>` through the shell; stdout in *out (freed by
 * the caller, may be NULL), exit status returned. */
static int cli(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cli(char **out, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int status = ck_sluice(out, daemon_.addr, "", fmt, ap);
    va_end(ap);
    return status;
}

/* A path in the daemon's temp directory (removed by sd_stop). */
static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 256, "%s/%s", daemon_.dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* The whole file; *len gets its size. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = malloc(1 << 20);
    ck_assert_ptr_nonnull(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* A top-level counter of `STATS topic`, read over a test connection; -1
 * if the topic does not exist. */
static long stat_of(const char *topic, const char *key)
{
    tc_t *c = tc_open(&daemon_);
    char want[64];
    long v = -1;

    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "STATS %s\r\n", topic), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    if (c->r.type == REPLY_ERROR) {
        tc_close(c);
        return -1;
    }
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    snprintf(want, sizeof want, "\n%s: ", key);
    char *body = strndup(c->r.body, c->r.body_len);
    char *at = strstr(body, want);
    if (!at && strncmp(body, want + 1, strlen(want + 1)) == 0)
        at = body - 1;
    if (at)
        v = strtol(at + strlen(want), NULL, 10);
    free(body);
    tc_close(c);
    return v;
}

/* GET one message over a test connection: its attempt count and payload. */
static unsigned get_attempt(const char *topic, char *payload, size_t cap)
{
    tc_t *c = tc_open(&daemon_);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(tc_sendf(c, "GET %s 2000\r\n", topic), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_MSG);
    unsigned att = c->r.attempt;
    snprintf(payload, cap, "%.*s", (int)c->r.body_len, c->r.body);
    tc_close(c);
    return att;
}

/* ---- publishing and reading back ---- */

START_TEST(test_pub_stdin_lines_roundtrip)
{
    const char *in = "first line\nsecond\twith tab\n\nafter an empty one\n  spaces  \n";
    char *out = NULL;

    write_file(tmp_path("in"), in, strlen(in));
    ck_assert_int_eq(cli(NULL, "pub lines < '%s'", tmp_path("in")), 0);
    ck_assert_int_eq(stat_of("lines", "ready"), 5);
    ck_assert_int_eq(cli(&out, "sub lines --count 5"), 0);
    ck_assert_str_eq(out, in);
    free(out);
    ck_assert_int_eq(stat_of("lines", "acked"), 5);
    ck_assert_int_eq(stat_of("lines", "ready"), 0);
}
END_TEST

START_TEST(test_pub_last_line_without_newline)
{
    char *out = NULL;

    ck_assert_int_eq(cli(NULL, "pub t < /dev/null"), 0);
    ck_assert_int_eq(stat_of("t", "published"), -1);  /* nothing sent: no topic */
    write_file(tmp_path("in"), "a\nb", 3);
    ck_assert_int_eq(cli(NULL, "pub t < '%s'", tmp_path("in")), 0);
    ck_assert_int_eq(cli(&out, "sub t --count 2"), 0);
    ck_assert_str_eq(out, "a\nb\n");
    free(out);
}
END_TEST

START_TEST(test_pub_args_verbose_ids)
{
    char *out = NULL;

    ck_assert_int_eq(cli(&out, "pub -v t one two 'three four'"), 0);
    unsigned long a, b, c;
    ck_assert_int_eq(sscanf(out, "%lu\n%lu\n%lu\n", &a, &b, &c), 3);
    ck_assert(a < b && b < c);
    free(out);
    ck_assert_int_eq(cli(&out, "get t"), 0);
    ck_assert_str_eq(out, "one\n");
    free(out);
    ck_assert_int_eq(cli(&out, "sub t --count 2"), 0);
    ck_assert_str_eq(out, "two\nthree four\n");
    free(out);
}
END_TEST

START_TEST(test_pub_nul_separated)
{
    static const char in[] = "a\0multi\nline\0\0last";
    size_t n;

    write_file(tmp_path("in"), in, sizeof in - 1);
    ck_assert_int_eq(cli(NULL, "pub -0 t < '%s'", tmp_path("in")), 0);
    ck_assert_int_eq(stat_of("t", "ready"), 4);
    ck_assert_int_eq(cli(NULL, "sub t --count 4 -0 > '%s'", tmp_path("out")), 0);
    char *got = read_file(tmp_path("out"), &n);
    ck_assert_uint_eq(n, sizeof in);  /* each message now ends with a NUL */
    ck_assert(memcmp(got, in, sizeof in) == 0);
    free(got);
}
END_TEST

START_TEST(test_pub_binary_file_exact)
{
    size_t len = 70000, n;
    char *data = malloc(len);

    for (size_t i = 0; i < len; i++)
        data[i] = (char)((i * 7 + i / 256) & 0xff);  /* every byte value: NUL, CR, LF */
    memcpy(data + 100, "\r\nMSG x 1 1 5\r\n", 15);
    write_file(tmp_path("bin"), data, len);
    ck_assert_int_eq(cli(NULL, "pub --file '%s' bin", tmp_path("bin")), 0);
    ck_assert_int_eq(stat_of("bin", "bytes"), (long)len);
    ck_assert_int_eq(cli(NULL, "get --raw bin > '%s'", tmp_path("out")), 0);
    char *got = read_file(tmp_path("out"), &n);
    ck_assert_uint_eq(n, len);
    ck_assert(memcmp(got, data, len) == 0);
    free(got);
    free(data);
    ck_assert_int_eq(stat_of("bin", "acked"), 1);
}
END_TEST

START_TEST(test_pub_pipelines_many)
{
    char *out = NULL, *in = malloc(5000 * 6), *p = in;

    for (int i = 1; i <= 5000; i++)
        p += sprintf(p, "%d\n", i);
    write_file(tmp_path("in"), in, (size_t)(p - in));
    free(in);
    /* far more messages than the window: replies are read while sending */
    ck_assert_int_eq(cli(NULL, "pub -w 8 t < '%s'", tmp_path("in")), 0);
    ck_assert_int_eq(stat_of("t", "ready"), 5000);
    ck_assert_int_eq(cli(&out, "sub t --count 5000 --credit 100 | tail -n 1"), 0);
    ck_assert_str_eq(out, "5000\n");
    free(out);
    ck_assert_int_eq(stat_of("t", "acked"), 5000);
}
END_TEST

/* ---- consuming ---- */

START_TEST(test_sub_count_takes_only_count)
{
    char *out = NULL;

    ck_assert_int_eq(cli(NULL, "pub t 1 2 3 4 5 6 7 8 9 10"), 0);
    ck_assert_int_eq(cli(&out, "sub t --count 3 --credit 50"), 0);
    ck_assert_str_eq(out, "1\n2\n3\n");
    free(out);
    /* nothing beyond the three was taken, so nothing comes back redelivered */
    ck_assert_int_eq(stat_of("t", "ready"), 7);
    ck_assert_int_eq(stat_of("t", "redelivered"), 0);
    ck_assert_int_eq(stat_of("t", "delivered"), 3);
    char p[64];
    ck_assert_uint_eq(get_attempt("t", p, sizeof p), 1);
    ck_assert_str_eq(p, "4");
}
END_TEST

START_TEST(test_exec_ack_with_env)
{
    char *out = NULL;
    size_t n;

    ck_assert_int_eq(cli(&out, "pub -v jobs 'payload one'"), 0);
    long id = strtol(out, NULL, 10);
    free(out);
    ck_assert_int_eq(cli(NULL, "sub jobs --count 1 --exec "
                               "'printf \"%%s %%s %%s:\" \"$SLUICE_TOPIC\" \"$SLUICE_ID\" "
                               "\"$SLUICE_ATTEMPT\" > %s; cat >> %s'",
                         tmp_path("log"), tmp_path("log")), 0);
    char *log = read_file(tmp_path("log"), &n);
    char want[128];
    snprintf(want, sizeof want, "jobs %ld 1:payload one", id);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert(memcmp(log, want, n) == 0);
    free(log);
    ck_assert_int_eq(stat_of("jobs", "acked"), 1);
    ck_assert_int_eq(stat_of("jobs", "ready"), 0);
    ck_assert_int_eq(stat_of("jobs", "in_flight"), 0);
}
END_TEST

START_TEST(test_exec_nack_redelivers)
{
    char p[64];

    ck_assert_int_eq(cli(NULL, "pub jobs work"), 0);
    ck_assert_int_eq(cli(NULL, "sub jobs --count 1 --exec 'cat >/dev/null; exit 3'"), 0);
    ck_assert_int_eq(stat_of("jobs", "acked"), 0);
    ck_assert_int_eq(stat_of("jobs", "ready"), 1);
    ck_assert_uint_eq(get_attempt("jobs", p, sizeof p), 2);
    ck_assert_str_eq(p, "work");
}
END_TEST

START_TEST(test_exec_nack_then_ack_second_attempt)
{
    size_t n;

    ck_assert_int_eq(cli(NULL, "pub jobs retry-me"), 0);
    /* fails on attempt 1, succeeds on attempt 2 */
    ck_assert_int_eq(cli(NULL, "sub jobs --count 2 --exec "
                               "'echo \"$SLUICE_ATTEMPT\" >> %s; test \"$SLUICE_ATTEMPT\" = 2'",
                         tmp_path("att")), 0);
    char *att = read_file(tmp_path("att"), &n);
    ck_assert_uint_eq(n, 4);
    ck_assert(memcmp(att, "1\n2\n", 4) == 0);
    free(att);
    ck_assert_int_eq(stat_of("jobs", "acked"), 1);
    ck_assert_int_eq(stat_of("jobs", "redelivered"), 1);
    ck_assert_int_eq(stat_of("jobs", "ready"), 0);
}
END_TEST

START_TEST(test_sub_no_ack_leaves_message)
{
    char *out = NULL, p[64];

    ck_assert_int_eq(cli(NULL, "pub t keep"), 0);
    ck_assert_int_eq(cli(&out, "sub t --count 1 --no-ack"), 0);
    ck_assert_str_eq(out, "keep\n");
    free(out);
    ck_assert_int_eq(stat_of("t", "acked"), 0);
    ck_assert_uint_eq(get_attempt("t", p, sizeof p), 2);
}
END_TEST

START_TEST(test_get_and_join_timeouts)
{
    char *out = NULL;

    ck_assert_int_eq(cli(&out, "get empty --timeout 20 2>/dev/null"), 3);
    ck_assert_str_eq(out, "");
    free(out);
    ck_assert_int_eq(cli(NULL, "join empty --timeout 0"), 0);
    ck_assert_int_eq(cli(NULL, "pub busy x"), 0);
    ck_assert_int_eq(cli(NULL, "join busy --timeout 20 2>/dev/null"), 3);
    ck_assert_int_eq(cli(NULL, "get busy >/dev/null"), 0);
    ck_assert_int_eq(cli(NULL, "join busy"), 0);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_full_reject_exits_1_with_server_text)
{
    char *out = NULL;

    ck_assert_int_eq(cli(&out, "pub small one two 2>&1"), 1);
    ck_assert_ptr_nonnull(strstr(out, "-FULL"));
    free(out);
    ck_assert_int_eq(stat_of("small", "ready"), 1);
}
END_TEST

START_TEST(test_toobig_exits_1)
{
    char *out = NULL;
    size_t len = 200 * 1024;
    char *big = calloc(1, len);

    write_file(tmp_path("big"), big, len);
    free(big);
    ck_assert_int_eq(cli(&out, "pub --file '%s' t 2>&1", tmp_path("big")), 1);
    ck_assert_ptr_nonnull(strstr(out, "-TOOBIG"));
    free(out);
    /* the connection and the topic are fine afterwards */
    ck_assert_int_eq(cli(NULL, "pub t small"), 0);
    ck_assert_int_eq(stat_of("t", "ready"), 1);
}
END_TEST

START_TEST(test_bad_topic_is_usage_error)
{
    ck_assert_int_eq(cli(NULL, "pub 'bad topic' x 2>/dev/null"), 2);
    ck_assert_int_eq(cli(NULL, "sub 'a/b' 2>/dev/null"), 2);
}
END_TEST

START_TEST(test_cannot_connect)
{
    char cmd[512], *out;
    int status;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sin;

    /* a port that was free a moment ago and has no listener */
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "'%s' -s 127.0.0.1:%d ping 2>&1", sd_bin("SLUICE", "../src/sluice"),
             ntohs(sin.sin_port));
    out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 1);
    ck_assert_ptr_nonnull(strstr(out, "cannot connect to 127.0.0.1:"));
    free(out);
    snprintf(cmd, sizeof cmd, "SLUICE_ADDR=unix:/nonexistent/sock '%s' pub t x 2>&1",
             sd_bin("SLUICE", "../src/sluice"));
    out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 1);
    ck_assert_ptr_nonnull(strstr(out, "cannot connect to unix:/nonexistent/sock"));
    free(out);
}
END_TEST

START_TEST(test_usage_errors)
{
    char cmd[512];
    int status;
    const char *bin = sd_bin("SLUICE", "../src/sluice");
    const char *bad[] = { "", "frobnicate", "pub", "sub t --count x", "get t --count 1",
                          "pub --window 0 t", "stats a b", "bench --size 3" };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", bin, bad[i]);
        free(run_capture(cmd, &status));
        ck_assert_msg(status == 2, "'%s' exited %d", bad[i], status);
    }
    snprintf(cmd, sizeof cmd, "'%s' --help", bin);
    char *out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: sluice"));
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' --version", bin);
    out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 0);
    ck_assert(strncmp(out, "sluice ", 7) == 0);
    free(out);
}
END_TEST

/* ---- inspection ---- */

START_TEST(test_stats_topics_ping)
{
    char *out = NULL;

    ck_assert_int_eq(cli(&out, "ping"), 0);
    ck_assert_str_eq(out, "PONG\n");
    free(out);
    ck_assert_int_eq(cli(NULL, "pub alpha 1 2 3"), 0);
    ck_assert_int_eq(cli(NULL, "pub beta 1"), 0);
    /* not a terminal: YAML, the server's body as is */
    ck_assert_int_eq(cli(&out, "stats"), 0);
    ck_assert_ptr_nonnull(strstr(out, "published: 4\n"));
    ck_assert_ptr_nonnull(strstr(out, "uptime_s: "));
    free(out);
    ck_assert_int_eq(cli(&out, "stats alpha --yaml"), 0);
    ck_assert_ptr_nonnull(strstr(out, "ready: 3\n"));
    free(out);
    ck_assert_int_eq(cli(&out, "topics"), 0);
    ck_assert_ptr_nonnull(strstr(out, "alpha\n"));
    ck_assert_ptr_nonnull(strstr(out, "beta\n"));
    ck_assert_ptr_nonnull(strstr(out, "small\n"));  /* named in the config */
    free(out);
}
END_TEST

START_TEST(test_stats_table_on_a_terminal)
{
    char *out = NULL;

    /* `script` gives the client a terminal as stdout */
    /* script(1) gives the client a terminal; bsdutils is essential in Debian. */
    ck_assert_msg(system("command -v script >/dev/null 2>&1") == 0,
                  "script(1) is not installed (apt-get install bsdutils)");
    ck_assert_int_eq(cli(NULL, "pub alpha 1 2"), 0);
    char cmd[1024];
    int status;
    snprintf(cmd, sizeof cmd, "script -qec \"'%s' -s %s stats\" /dev/null",
             sd_bin("SLUICE", "../src/sluice"), daemon_.addr);
    out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 0);
    ck_assert_ptr_null(strstr(out, "published: "));  /* not YAML */
    ck_assert_ptr_nonnull(strstr(out, "published  "));
    ck_assert_ptr_nonnull(strstr(out, "redis.connected"));
    ck_assert_ptr_nonnull(strstr(out, "topic"));
    ck_assert_ptr_nonnull(strstr(out, "alpha "));
    free(out);
}
END_TEST

/* ---- authentication ---- */

START_TEST(test_auth_user_and_password_env)
{
    char *out = NULL;

    ck_assert_int_eq(cli(&out, "pub a.x hi 2>&1"), 1);
    ck_assert_ptr_nonnull(strstr(out, "-NOAUTH"));
    free(out);
    ck_assert_int_eq(cli(&out, "-u alice ping 2>&1"), 1);  /* no password set */
    ck_assert_ptr_nonnull(strstr(out, "$SLUICE_PASSWORD"));
    free(out);
    setenv("SLUICE_PASSWORD", "wrong", 1);
    ck_assert_int_eq(cli(&out, "-u alice ping 2>&1"), 1);
    ck_assert_ptr_nonnull(strstr(out, "AUTH refused: -NOAUTH"));
    free(out);
    setenv("SLUICE_PASSWORD", "secret", 1);
    ck_assert_int_eq(cli(&out, "ping -u alice"), 0);
    ck_assert_str_eq(out, "PONG\n");
    free(out);
    ck_assert_int_eq(cli(NULL, "-u alice pub a.x hi"), 0);
    ck_assert_int_eq(cli(&out, "-u alice pub b.x hi 2>&1"), 1);
    ck_assert_ptr_nonnull(strstr(out, "-DENIED"));
    free(out);
    setenv("SLUICE_USER", "alice", 1);
    ck_assert_int_eq(cli(&out, "get a.x"), 0);
    ck_assert_str_eq(out, "hi\n");
    free(out);
    unsetenv("SLUICE_USER");
    unsetenv("SLUICE_PASSWORD");
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *t = tcase_create("cli");

    tcase_add_checked_fixture(t, cli_setup, cli_teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_pub_stdin_lines_roundtrip);
    tcase_add_test(t, test_pub_last_line_without_newline);
    tcase_add_test(t, test_pub_args_verbose_ids);
    tcase_add_test(t, test_pub_nul_separated);
    tcase_add_test(t, test_pub_binary_file_exact);
    tcase_add_test(t, test_pub_pipelines_many);
    tcase_add_test(t, test_sub_count_takes_only_count);
    tcase_add_test(t, test_exec_ack_with_env);
    tcase_add_test(t, test_exec_nack_redelivers);
    tcase_add_test(t, test_exec_nack_then_ack_second_attempt);
    tcase_add_test(t, test_sub_no_ack_leaves_message);
    tcase_add_test(t, test_get_and_join_timeouts);
    tcase_add_test(t, test_full_reject_exits_1_with_server_text);
    tcase_add_test(t, test_toobig_exits_1);
    tcase_add_test(t, test_bad_topic_is_usage_error);
    tcase_add_test(t, test_cannot_connect);
    tcase_add_test(t, test_usage_errors);
    tcase_add_test(t, test_stats_topics_ping);
    tcase_add_test(t, test_stats_table_on_a_terminal);
    suite_add_tcase(s, t);

    TCase *a = tcase_create("auth");
    tcase_add_checked_fixture(a, auth_setup, cli_teardown);
    tcase_set_timeout(a, 60);
    tcase_add_test(a, test_auth_user_and_password_env);
    suite_add_tcase(s, a);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
