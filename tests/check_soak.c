/* check_soak.c: the load tests of the default suite.
 *
 * - The soak driver (tests/soak.c) for 20 seconds: hostile producers and
 *   consumers on every overflow policy, then the full reconciliation of
 *   every acknowledged message, RSS and descriptors. `make soak` runs the
 *   same driver for minutes.
 * - The event loop under heavy load (`sluice bench`, pipelined producers
 *   and consumers) with WATCHDOG_USEC set: WATCHDOG=1 keeps arriving on a
 *   notify socket the test owns, and STATS max_loop_stall_ms stays under a
 *   second.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define SOAK_SECONDS "20"

/* The soak driver: $SOAK, else `soak` next to this program. */
static const char *soak_path(void)
{
    static char path[PATH_MAX];
    char self[PATH_MAX];
    ssize_t n;

    if (getenv("SOAK") && *getenv("SOAK"))
        return getenv("SOAK");
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return "./soak";
    self[n] = '\0';
    snprintf(path, sizeof path, "%s/soak", dirname(self));
    return path;
}

START_TEST(test_short_soak)
{
    char cmd[PATH_MAX + 64];
    int status = -1;
    char *out;

    snprintf(cmd, sizeof cmd, "'%s' -d " SOAK_SECONDS " -c 16 -s 1 2>&1", soak_path());
    out = run_capture(cmd, &status);
    ck_assert_ptr_nonnull(out);
    /* The figures go to the test log, where docs/reliability.md takes them. */
    fputs(out, stderr);
    ck_assert_msg(status == 0, "the soak failed (exit %d):\n%s", status, out);
    ck_assert_ptr_nonnull(strstr(out, "soak: every invariant held"));
    free(out);
}
END_TEST

/* ---- the watchdog under load ---- */

/* A failed assertion ends the test's process at once: the daemon goes too. */
static pid_t live_pid;

static void kill_live(void)
{
    if (live_pid > 0)
        kill(-live_pid, SIGKILL);
}

typedef struct notify_sock {
    int fd;
    char path[108];
    char env[160];
} notify_sock_t;

static void notify_open(notify_sock_t *n)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(n->fd, 0);
    snprintf(n->path, sizeof n->path, "/tmp/sluice-wd-%d-%ld", (int)getpid(), random());
    strcpy(sa.sun_path, n->path);
    ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(n->env, sizeof n->env, "NOTIFY_SOCKET=%s", n->path);
}

static void notify_close(notify_sock_t *n)
{
    close(n->fd);
    unlink(n->path);
}

/* Start `sluice bench` against d with extra arguments; its output goes to
 * `log`. Returns its pid. */
static pid_t bench_start(const sd_t *d, const char *log, const char *const args[])
{
    const char *bin = sd_bin("SLUICE", "../src/sluice");
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char *argv[32] = {(char *)bin, "-s", (char *)d->addr, "bench"};
        int argc = 4, fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        for (size_t i = 0; args[i] && argc < 31; i++)
            argv[argc++] = (char *)args[i];
        argv[argc] = NULL;
        execv(bin, argv);
        _exit(127);
    }
    return pid;
}

/* While `pid` runs, collect WATCHDOG=1 pings; the longest gap between two
 * (or from the start to the first) in ms. Returns the bench's exit status. */
static int watch_pings(notify_sock_t *n, pid_t pid, uint64_t *max_gap, unsigned *pings)
{
    uint64_t last = sd_now_ms();
    int status = -1;

    for (;;) {
        struct pollfd pfd = {.fd = n->fd, .events = POLLIN};
        char buf[256];

        if (poll(&pfd, 1, 50) == 1) {
            ssize_t len = recv(n->fd, buf, sizeof buf - 1, 0);
            if (len > 0) {
                buf[len] = '\0';
                if (strstr(buf, "WATCHDOG=1")) {
                    uint64_t now = sd_now_ms();
                    if (now - last > *max_gap)
                        *max_gap = now - last;
                    last = now;
                    (*pings)++;
                }
            }
        }
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
    }
    /* The time since the last ping counts too. */
    if (sd_now_ms() - last > *max_gap)
        *max_gap = sd_now_ms() - last;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static uint64_t stat_field(tc_t *c, const char *key)
{
    size_t klen = strlen(key);
    const char *p, *end;

    ck_assert_int_eq(tc_sendf(c, "STATS\r\n"), 0);
    ck_assert_int_eq(tc_reply(c), 0);
    ck_assert_int_eq(c->r.type, REPLY_STATS);
    p = c->r.body;
    end = p + c->r.body_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if ((size_t)(nl - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == ':')
            return strtoull(p + klen + 1, NULL, 10);
        p = nl + 1;
    }
    ck_abort_msg("STATS has no %s", key);
    return 0;
}

START_TEST(test_watchdog_under_load)
{
    /* systemd kills a service whose pings stop for WATCHDOG_USEC; sluiced
     * pings every half of it. */
    const uint64_t watchdog_ms = 2000;
    /* Small messages as fast as they go, then large ones (long copies). */
    static const char *const small[] = {"-p", "2", "-c", "2", "-d", "4", "-S", "64", "-w",
                                        "64", "-C", "64", "-a", "16", NULL};
    static const char *const large[] = {"-p", "2", "-c", "2", "-d", "3", "-S", "262144",
                                        "-w", "16", "-C", "16", "-a", "16", NULL};
    const char *const *loads[] = {small, large};
    char wd[64], log[160];
    notify_sock_t n;
    uint64_t stall, gap = 0;
    unsigned pings = 0;
    sd_t d;

    notify_open(&n);
    snprintf(wd, sizeof wd, "WATCHDOG_USEC=%" PRIu64, watchdog_ms * 1000);
    char *env[] = {n.env, wd, NULL};
    ck_assert_int_eq(sd_start_ex(&d, "", env, NULL), 0);
    live_pid = d.pid;
    atexit(kill_live);
    snprintf(log, sizeof log, "%s/bench.log", d.dir);
    for (size_t i = 0; i < 2; i++) {
        pid_t pid = bench_start(&d, log, loads[i]);
        int rc = watch_pings(&n, pid, &gap, &pings);
        char cmd[200];
        /* The bench's report (its rates) goes to the test log. */
        snprintf(cmd, sizeof cmd, "cat '%s' >&2", log);
        ck_assert_int_eq(system(cmd), 0);
        ck_assert_msg(rc == 0, "sluice bench failed (exit %d)", rc);
    }

    tc_t *c = tc_open(&d);
    ck_assert_ptr_nonnull(c);
    stall = stat_field(c, "max_loop_stall_ms");
    fprintf(stderr, "watchdog under load: %u pings, longest gap %" PRIu64
            " ms (WATCHDOG_USEC %" PRIu64 " ms); max_loop_stall_ms %" PRIu64 "\n",
            pings, gap, watchdog_ms, stall);
    ck_assert_uint_ge(pings, 3);
    ck_assert_msg(gap < watchdog_ms, "no WATCHDOG=1 for %" PRIu64 " ms", gap);
    ck_assert_msg(stall < 1000, "the event loop stalled for %" PRIu64 " ms", stall);
    tc_close(c);
    live_pid = 0;
    ck_assert_int_eq(sd_stop(&d), 0);
    notify_close(&n);
}
END_TEST

static Suite *soak_suite(void)
{
    Suite *s = suite_create("soak");
    TCase *t = tcase_create("soak");

    tcase_set_timeout(t, 300);
    tcase_add_test(t, test_short_soak);
    tcase_add_test(t, test_watchdog_under_load);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(soak_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
