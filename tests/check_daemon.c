/* check_daemon.c: the daemon's life, end to end: -t, start-up with and
 * without a file, a taken port, SIGHUP with good and bad files, the systemd
 * notify messages on a socket the test owns, the watchdog, clean SIGTERM,
 * and `systemd-analyze verify` of the unit.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

static char *srcdir_path(const char *rel)
{
    static char buf[PATH_MAX];
    const char *top = getenv("SLUICE_SRCDIR");
    snprintf(buf, sizeof buf, "%s/%s", top && *top ? top : "..", rel);
    return buf;
}

/* Run `pre ARG post` in a shell; its stdout in *out (if out). */
static int sh(const char *pre, const char *arg, const char *post, char **out)
{
    char cmd[PATH_MAX * 2];
    int status = -1;
    char *o;

    snprintf(cmd, sizeof cmd, "%s%s%s", pre, arg, post);
    o = run_capture(cmd, &status);
    if (out)
        *out = o;
    else
        free(o);
    return status;
}

/* ---- -t ---- */

START_TEST(test_check_good_file)
{
    char *out = NULL;
    int rc = sh("\"$SLUICED\" -t -c ", srcdir_path("conf/sluiced.yaml"), " 2>&1", &out);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    ck_assert_ptr_nonnull(strstr(out, "configuration is valid"));
    free(out);
}
END_TEST

START_TEST(test_check_bad_file)
{
    char path[] = "/tmp/sluice-bad-XXXXXX";
    int fd = mkstemp(path);
    char *out = NULL, want[PATH_MAX + 32];
    const char *bad = "log:\n  level: info\ndefaults:\n  max_mesages: 5\n";

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    close(fd);
    int rc = sh("\"$SLUICED\" -t -c ", path, " 2>&1", &out);
    ck_assert_int_eq(rc, 78);
    snprintf(want, sizeof want, "%s:4:3: ", path);
    ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "got: %s", out);
    free(out);
    /* The same file refuses a real start too, with the same status. */
    rc = sh("\"$SLUICED\" -c ", path, " -l 127.0.0.1:0 2>&1", &out);
    ck_assert_int_eq(rc, 78);
    ck_assert_ptr_nonnull(strstr(out, want));
    free(out);
    unlink(path);
}
END_TEST

START_TEST(test_version_and_help)
{
    char *out = NULL;
    ck_assert_int_eq(sh("\"$SLUICED\" --version", "", "", &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "sluiced "));
    free(out);
    ck_assert_int_eq(sh("\"$SLUICED\" -h", "", "", &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--listen"));
    free(out);
    ck_assert_int_eq(sh("\"$SLUICED\" --bogus 2>/dev/null", "", "", NULL), 2);
}
END_TEST

/* ---- start-up ---- */

START_TEST(test_start_without_config_file)
{
    sd_t d;
    char *args[] = {"-l", "127.0.0.1:0", NULL};
    char *env[] = {NULL};
    /* No -c: built-in defaults (the default path does not exist here). */
    ck_assert_int_eq(access("/etc/sluice/sluiced.yaml", F_OK) == 0, 0);
    ck_assert_int_eq(sd_start_ex(&d, "", env, args), 0);
    tc_t *c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    tc_sendf(c, "PING\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+PONG");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

START_TEST(test_port_taken)
{
    sd_t a, b;
    char *args[3] = {"-l", NULL, NULL};

    ck_assert_int_eq(sd_start(&a, ""), 0);
    args[1] = a.addr;
    ck_assert_int_ne(sd_start_ex(&b, "", NULL, args), 0);
    ck_assert(sd_log_has(&b, "cannot listen on"));
    ck_assert(sd_log_has(&b, "Address already in use"));
    sd_stop(&b);
    ck_assert_int_eq(sd_stop(&a), 0);
}
END_TEST

START_TEST(test_sigterm_flushes_and_exits_zero)
{
    sd_t d;
    ck_assert_int_eq(sd_start(&d, ""), 0);
    tc_t *c = tc_open(&d);
    tc_sendf(c, "PUB t 5\r\nhello\r\nPING\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+OK 1");
    ck_assert_str_eq(tc_reply_line(c), "+PONG");
    ck_assert_int_eq(sd_stop(&d), 0);
    ck_assert(tc_closed(c, 5000));
    tc_close(c);
}
END_TEST

START_TEST(test_log_lines_have_levels)
{
    sd_t d;
    ck_assert_int_eq(sd_start(&d, ""), 0);
    ck_assert(sd_log_has(&d, "info: listening on 127.0.0.1:"));
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- SIGHUP ---- */

static void wait_log(sd_t *d, const char *needle);

/* At debug level every connection state change is one line: a producer
 * that parks on a full topic, and is read again once there is room. */
START_TEST(test_debug_log_shows_state_changes)
{
    sd_t d;
    ck_assert_int_eq(sd_start(&d, "log: {level: debug}\n"
                                  "topics:\n  one: {max_messages: 1}\n"), 0);
    tc_t *p = tc_open(&d), *q = tc_open(&d);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    tc_sendf(p, "PUB one 1\r\na\r\nPUB one 1\r\nb\r\n");
    ck_assert_str_eq(tc_reply_line(p), "+OK 1");
    wait_log(&d, ": reading -> parked");
    tc_sendf(q, "GET one\r\n");
    ck_assert_str_eq(tc_reply_line(q), "MSG one 1 1 1");
    tc_sendf(q, "ACK 1\r\n"); /* in flight still counts against the bound */
    ck_assert_str_eq(tc_reply_line(q), "+OK 1");
    ck_assert_str_eq(tc_reply_line(p), "+OK 2");
    wait_log(&d, ": parked -> reading");
    tc_close(p);
    tc_close(q);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

static char *stats_field(tc_t *c, const char *topic, const char *field)
{
    static char val[64];
    const char *p;
    char key[64];

    tc_sendf(c, "STATS %s\r\n", topic);
    if (tc_reply(c) != 0 || c->r.type != REPLY_STATS)
        return NULL;
    snprintf(key, sizeof key, "\n%s: ", field);
    p = memmem(c->r.body, c->r.body_len, key, strlen(key));
    if (p == NULL)
        return NULL;
    p += strlen(key);
    snprintf(val, sizeof val, "%.*s", (int)strcspn(p, "\n"), p);
    return val;
}

static void wait_log(sd_t *d, const char *needle)
{
    for (int i = 0; i < 1000 && !sd_log_has(d, needle); i++)
        usleep(10000);
    ck_assert_msg(sd_log_has(d, needle), "log never said: %s", needle);
}

START_TEST(test_sighup_good_and_bad)
{
    sd_t d;
    ck_assert_int_eq(sd_start(&d, "topics:\n  orders:\n    max_messages: 10\n"), 0);
    tc_t *c = tc_open(&d);
    ck_assert_str_eq(stats_field(c, "orders", "max_messages"), "10");

    sd_write_conf(&d, "topics:\n  orders:\n    max_messages: 20\n    overflow: reject\n");
    sd_signal(&d, SIGHUP);
    wait_log(&d, "reloaded");
    ck_assert_str_eq(stats_field(c, "orders", "max_messages"), "20");
    ck_assert_str_eq(stats_field(c, "orders", "overflow"), "reject");

    sd_write_conf(&d, "topics:\n  orders:\n    max_messages: -3\n");
    sd_signal(&d, SIGHUP);
    wait_log(&d, "reload rejected");
    /* Line 4: the harness put a listen line first. */
    ck_assert(sd_log_has(&d, "sluiced.yaml:4:19: "));
    ck_assert_str_eq(stats_field(c, "orders", "max_messages"), "20");
    tc_sendf(c, "PING\r\n");
    ck_assert_str_eq(tc_reply_line(c), "+PONG");
    tc_close(c);
    ck_assert_int_eq(sd_stop(&d), 0);
}
END_TEST

/* ---- systemd notify ---- */

typedef struct notify_sock {
    int fd;
    char path[108];
    char env[160];
} notify_sock_t;

static void notify_open(notify_sock_t *n, bool abstract)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len;

    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(n->fd, 0);
    if (abstract) {
        snprintf(n->path, sizeof n->path, "@sluice-test-%d-%ld", getpid(), random());
        memcpy(sa.sun_path, n->path, strlen(n->path));
        sa.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(n->path));
    } else {
        snprintf(n->path, sizeof n->path, "/tmp/sluice-notify-%d-%ld", getpid(), random());
        strcpy(sa.sun_path, n->path);
        len = sizeof sa;
    }
    ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&sa, len), 0);
    snprintf(n->env, sizeof n->env, "NOTIFY_SOCKET=%s", n->path);
}

static void notify_close(notify_sock_t *n)
{
    close(n->fd);
    if (n->path[0] == '/')
        unlink(n->path);
}

/* Wait for a datagram containing `needle`; skip others. */
static bool notify_expect(notify_sock_t *n, const char *needle)
{
    char buf[1024];
    struct pollfd pfd = {.fd = n->fd, .events = POLLIN};

    while (poll(&pfd, 1, 10000) == 1) {
        ssize_t len = recv(n->fd, buf, sizeof buf - 1, 0);
        if (len <= 0)
            return false;
        buf[len] = '\0';
        if (strstr(buf, needle))
            return true;
    }
    return false;
}

static void notify_lifecycle(bool abstract)
{
    notify_sock_t n;
    sd_t d;

    notify_open(&n, abstract);
    char *env[] = {n.env, NULL};
    ck_assert_int_eq(sd_start_ex(&d, "", env, NULL), 0);
    ck_assert(notify_expect(&n, "READY=1"));
    ck_assert(notify_expect(&n, "STATUS="));
    sd_signal(&d, SIGHUP);
    ck_assert(notify_expect(&n, "RELOADING=1"));
    ck_assert(notify_expect(&n, "READY=1"));
    /* A bad reload still ends with READY=1: the old config keeps serving. */
    sd_write_conf(&d, "bogus_key: 1\n");
    sd_signal(&d, SIGHUP);
    ck_assert(notify_expect(&n, "RELOADING=1"));
    ck_assert(notify_expect(&n, "reload rejected"));
    kill(d.pid, SIGTERM);
    ck_assert(notify_expect(&n, "STOPPING=1"));
    ck_assert_int_eq(sd_stop(&d), 0);
    notify_close(&n);
}

START_TEST(test_notify_path_socket) { notify_lifecycle(false); }
END_TEST

START_TEST(test_notify_abstract_socket) { notify_lifecycle(true); }
END_TEST

START_TEST(test_watchdog)
{
    notify_sock_t n;
    sd_t d;
    char wd[64];

    notify_open(&n, false);
    snprintf(wd, sizeof wd, "WATCHDOG_USEC=200000");
    char *env[] = {n.env, wd, NULL};
    ck_assert_int_eq(sd_start_ex(&d, "", env, NULL), 0);
    ck_assert(notify_expect(&n, "WATCHDOG=1"));
    ck_assert(notify_expect(&n, "WATCHDOG=1"));
    ck_assert_int_eq(sd_stop(&d), 0);
    notify_close(&n);
}
END_TEST

/* ---- the unit file ---- */

START_TEST(test_systemd_unit_verifies)
{
    char tmp[] = "/tmp/sluice-unit-XXXXXX";
    char unit[PATH_MAX + 32], cmd[PATH_MAX * 4];
    char *out = NULL;
    int status;

    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(unit, sizeof unit, "%s/sluiced.service", tmp);
    /* The installed paths do not exist here: point them at this build. */
    snprintf(cmd, sizeof cmd,
             "sed -e \"s|@sbindir@/sluiced|$SLUICED|\" -e 's|@sysconfdir@|%s/conf/..|' "
             "-e 's|@docdir@|%s|' '%s' > '%s'",
             getenv("SLUICE_SRCDIR"), getenv("SLUICE_SRCDIR"), srcdir_path("systemd/sluiced.service.in"),
             unit);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "systemd-analyze verify '%s' 2>&1", unit);
    out = run_capture(cmd, &status);
    ck_assert_msg(status == 0, "systemd-analyze verify failed (%d): %s", status, out);
    free(out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The units a standby uses (docs/scaling.md), as make built them: an
 * instance of each, with the daemon's path pointed at this build. */
START_TEST(test_standby_units_verify)
{
    static const char *const units[] = {"sluiced@", "sluice-takeover@"};
    char tmp[] = "/tmp/sluice-unit-XXXXXX";
    char cmd[PATH_MAX * 4];
    char *out;
    int status;

    ck_assert_ptr_nonnull(mkdtemp(tmp));
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        snprintf(cmd, sizeof cmd,
                 "sed -e \"s|^ExecStart=.*/sluiced |ExecStart=$SLUICED |\" "
                 "\"$(dirname \"$SLUICED\")/../systemd/%s.service\" > '%s/%sh1.service' && "
                 "systemd-analyze verify '%s/%sh1.service' 2>&1",
                 units[i], tmp, units[i], tmp, units[i]);
        out = run_capture(cmd, &status);
        ck_assert_msg(status == 0, "%s: systemd-analyze verify failed (%d): %s", units[i], status, out);
        free(out);
    }
    snprintf(cmd, sizeof cmd, "grep -q '^ExecStart=.*-c .*/sluice/%%i.yaml$' '%s/sluiced@h1.service'", tmp);
    ck_assert_msg(system(cmd) == 0, "sluiced@.service does not read its instance's config");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *daemon_suite(void)
{
    Suite *s = suite_create("daemon");
    TCase *t = tcase_create("lifecycle");

    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_check_good_file);
    tcase_add_test(t, test_check_bad_file);
    tcase_add_test(t, test_version_and_help);
    tcase_add_test(t, test_start_without_config_file);
    tcase_add_test(t, test_port_taken);
    tcase_add_test(t, test_debug_log_shows_state_changes);
    tcase_add_test(t, test_sigterm_flushes_and_exits_zero);
    tcase_add_test(t, test_log_lines_have_levels);
    tcase_add_test(t, test_sighup_good_and_bad);
    tcase_add_test(t, test_notify_path_socket);
    tcase_add_test(t, test_notify_abstract_socket);
    tcase_add_test(t, test_watchdog);
    tcase_add_test(t, test_systemd_unit_verifies);
    tcase_add_test(t, test_standby_units_verify);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(daemon_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
