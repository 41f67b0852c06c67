/* check_top.c: `sluice top` in a real terminal (a tmux pane) against the
 * real daemon under load: the test keeps a topic busy (a producer and a
 * consumer), fills another until its producer parks, and leaves a third
 * idle. It reads the frames with capture-pane and checks the rows, that
 * rates appear, that sort keys reorder the rows, that q, Ctrl-C and
 * SIGTERM end it with the terminal as it was (stty), and that --once
 * prints one plain frame.
 */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ck_conn.h"
#include "harness.h"

#define WAIT_MS 30000  /* for a frame to show what it must: generous, never a measurement */

static const char top_conf[] =
    "topics:\n"
    "  hot: {max_messages: 1000}\n"
    "  full: {max_messages: 50, max_bytes: 1KiB}\n"
    "  idle: {}\n";

static sd_t daemon_;
static sd_guard_t daemon_guard = { -1, -1 };
static pid_t load_pgid = -1;
static sd_guard_t load_guard = { -1, -1 };
static sd_guard_t tmux_guard = { -1, -1 };  /* the tmux server, should a test fail */

static const char *sluice_bin(void)
{
    return sd_bin("SLUICE", "../src/sluice");
}

/* A file in the daemon's temp directory. */
static const char *tmp(const char *name)
{
    static char buf[4][256];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", daemon_.dir, name);
    return buf[i];
}

/* Run the load in a process group of its own, killed at teardown. */
static void load_start(void)
{
    char cmd[2048];
    const char *s = sluice_bin(), *a = daemon_.addr;

    snprintf(cmd, sizeof cmd,
             "yes hot | '%s' -s %s pub hot >/dev/null 2>&1 &"
             " '%s' -s %s sub hot >/dev/null 2>&1 &"
             " yes full | '%s' -s %s pub full >/dev/null 2>&1 &"
             " wait",
             s, a, s, a, s, a);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    load_pgid = pid;
    load_guard = sd_guard(pid);
}

static void top_setup(void)
{
    ck_assert_int_eq(sd_start(&daemon_, top_conf), 0);
    daemon_guard = sd_guard(daemon_.pid);
    /* the harness's environment may have no terminal type; tmux needs one */
    setenv("TERM", "xterm", 0);
    setenv("SHELL", "/bin/sh", 1);
    ck_assert_msg(system("command -v tmux >/dev/null 2>&1") == 0,
                  "tmux is not installed (apt-get install tmux)");
    load_start();
}

static void tmux_kill(void)
{
    char cmd[512];

    snprintf(cmd, sizeof cmd, "tmux -S '%s' kill-server >/dev/null 2>&1", tmp("tmux.sock"));
    (void)system(cmd);
}

static void top_teardown(void)
{
    tmux_kill();
    sd_guard_release(&tmux_guard);
    if (load_pgid > 0) {
        kill(-load_pgid, SIGTERM);
        waitpid(load_pgid, NULL, 0);
        load_pgid = -1;
    }
    sd_guard_release(&load_guard);
    sd_stop(&daemon_);
    sd_guard_release(&daemon_guard);
}

/* `tmux -S SOCK ARGS` on the test's own server; its output (freed by the
 * caller), and the status in *status when not NULL. */
static char *tmux(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *tmux(int *status, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "tmux -S '%s' -f /dev/null %s", tmp("tmux.sock"), args);
    char *out = run_capture(cmd, &st);
    ck_assert_ptr_nonnull(out);
    if (status)
        *status = st;
    return out;
}

/* Start `sluice -s ADDR top ARGS` in a 120x30 pane. A wrapper script
 * writes top's pid before exec'ing it, then, once it exits, its status
 * and `stty -a` of the terminal it left behind. */
static void top_run(const char *args)
{
    char pid[256], rc[256], stty[256];

    snprintf(pid, sizeof pid, "%s", tmp("pid"));
    snprintf(rc, sizeof rc, "%s", tmp("rc"));
    snprintf(stty, sizeof stty, "%s", tmp("stty"));
    FILE *f = fopen(tmp("run.sh"), "w");
    ck_assert_ptr_nonnull(f);
    /* the wrapper itself ignores Ctrl-C's SIGINT so it lives to report;
     * top sets its own handler whatever it inherits */
    fprintf(f,
            "trap '' INT\n"
            "sh -c 'echo $$ > %s; exec \"%s\" -s %s top %s'\n"
            "echo $? > %s.tmp; stty -a > %s; mv %s.tmp %s\n"
            "echo TOP-EXITED\n"
            "sleep 600\n",
            pid, sluice_bin(), daemon_.addr, args, rc, stty, rc, rc);
    fclose(f);
    unlink(rc);
    int st;
    free(tmux(&st, "new-session -d -s top -x 120 -y 30 'sh %s'", tmp("run.sh")));
    ck_assert_int_eq(st, 0);
    /* the server is a session leader of its own: guard its group */
    char *pid_s = tmux(&st, "display-message -p '#{pid}'");
    int server = atoi(pid_s);
    free(pid_s);
    ck_assert_int_gt(server, 1);
    tmux_guard = sd_guard(server);
}

static char *pane(void)
{
    return tmux(NULL, "capture-pane -p -t top");
}

/* The whitespace-separated fields of the pane line starting "name ". */
static int row_fields(const char *text, const char *name, char f[][32], int max)
{
    size_t nl = strlen(name);
    const char *p = text;

    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == ' ') {
            char line[512];
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            int n = 0;
            for (char *tok = strtok(line, " "); tok && n < max; tok = strtok(NULL, " "))
                snprintf(f[n++], 32, "%s", tok);
            return n;
        }
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* Columns of a row: name ready delay inflt parked cons pub ack dead bar pct */
enum { F_NAME, F_READY, F_DELAY, F_INFLT, F_PARKED, F_CONS, F_PUB, F_ACK, F_DEAD, F_BAR, F_PCT };

static bool rate_positive(const char *s)
{
    return strcmp(s, "-") != 0 && strtod(s, NULL) > 0;
}

/* The pane once hot shows a publish and an ack rate, and full its parked
 * producer; fails the test with the last frame after WAIT_MS. */
static char *wait_loaded_frame(void)
{
    char *text = NULL;

    for (int waited = 0; waited < WAIT_MS; waited += 200) {
        free(text);
        text = pane();
        char hot[12][32], full[12][32];
        if (row_fields(text, "hot", hot, 12) == 11 && row_fields(text, "full", full, 12) == 11 &&
            rate_positive(hot[F_PUB]) && rate_positive(hot[F_ACK]) &&
            strcmp(full[F_PARKED], "1") == 0 && strcmp(full[F_READY], "50") == 0)
            return text;
        sd_sleep_ms(200);
    }
    ck_abort_msg("no loaded frame in %d ms; last:\n%s", WAIT_MS, text);
    return NULL;
}

/* The first row under the titles. */
static void first_row(const char *text, char *out, size_t cap)
{
    const char *t = strstr(text, "\nTOPIC");
    ck_assert_ptr_nonnull(t);
    const char *r = strchr(t + 1, '\n');
    ck_assert_ptr_nonnull(r);
    r++;
    size_t n = strcspn(r, " \n");
    snprintf(out, cap, "%.*s", (int)n, r);
}

/* Wait for the header to say `sort` and the first row to be `want`. */
static void wait_order(const char *sort, const char *want)
{
    char *text = NULL, first[64] = "";

    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        free(text);
        text = pane();
        if (strstr(text, sort)) {
            first_row(text, first, sizeof first);
            if (strcmp(first, want) == 0) {
                free(text);
                return;
            }
        }
        sd_sleep_ms(100);
    }
    ck_abort_msg("wanted '%s' with %s first; last frame:\n%s", sort, want, text);
}

/* Wait for the wrapper to record top's exit; its status. */
static int wait_exit(void)
{
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        FILE *f = fopen(tmp("rc"), "r");
        if (f) {
            int rc = -1;
            ck_assert_int_eq(fscanf(f, "%d", &rc), 1);
            fclose(f);
            return rc;
        }
        sd_sleep_ms(100);
    }
    ck_abort_msg("sluice top did not exit");
    return -1;
}

/* The terminal top left: canonical mode and echo back on, cursor shown,
 * the main screen back (the frame gone, the wrapper's line there). */
static void assert_restored(void)
{
    size_t len = 0;
    FILE *f = fopen(tmp("stty"), "r");
    ck_assert_ptr_nonnull(f);
    char stty[4096];
    len = fread(stty, 1, sizeof stty - 1, f);
    fclose(f);
    stty[len] = '\0';
    ck_assert_msg(strstr(stty, " icanon") && !strstr(stty, "-icanon"), "%s", stty);
    ck_assert_msg(strstr(stty, " echo ") && !strstr(stty, "-echo "), "%s", stty);
    char *text = NULL;
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        free(text);
        text = pane();
        if (strstr(text, "TOP-EXITED"))
            break;
        sd_sleep_ms(100);
    }
    ck_assert_msg(strstr(text, "TOP-EXITED") != NULL, "%s", text);
    ck_assert_msg(strstr(text, "sluice top") == NULL, "frame left on screen:\n%s", text);
    free(text);
    char *cursor = tmux(NULL, "display-message -p -t top '#{cursor_flag}'");
    ck_assert_str_eq(cursor, "1\n");
    free(cursor);
}

START_TEST(test_live_rows_rates_sort_and_q)
{
    top_run("-i 0.5");
    char *text = wait_loaded_frame();
    char hot[12][32], full[12][32], idle[12][32];
    ck_assert_int_eq(row_fields(text, "hot", hot, 12), 11);
    ck_assert_int_eq(row_fields(text, "full", full, 12), 11);
    ck_assert_int_eq(row_fields(text, "idle", idle, 12), 11);
    ck_assert_str_eq(hot[F_CONS], "1");
    ck_assert_str_eq(full[F_CONS], "0");
    ck_assert_str_eq(idle[F_READY], "0");
    ck_assert_str_eq(idle[F_PARKED], "0");
    ck_assert_str_eq(idle[F_BAR], "[....................]");
    ck_assert_str_eq(idle[F_PCT], "0%");
    ck_assert(strncmp(full[F_BAR], "[#", 2) == 0);  /* 50 lines of "full\n" in 1 KiB */
    ck_assert_ptr_nonnull(strstr(text, "sluice top  "));
    ck_assert_ptr_nonnull(strstr(text, daemon_.addr));
    ck_assert_ptr_nonnull(strstr(text, "sort: name"));
    ck_assert_ptr_nonnull(strstr(text, "q quit"));
    free(text);

    /* by name: full hot idle; by consumers: hot (1) first; again: reversed */
    wait_order("sort: name", "full");
    free(tmux(NULL, "send-keys -t top c"));
    wait_order("sort: consumers", "hot");
    free(tmux(NULL, "send-keys -t top c"));
    wait_order("sort: consumers (reversed)", "idle");
    free(tmux(NULL, "send-keys -t top n"));
    wait_order("sort: name", "full");
    free(tmux(NULL, "send-keys -t top i"));
    wait_order("sort: name (reversed)", "idle");
    free(tmux(NULL, "send-keys -t top c"));
    wait_order("sort: consumers", "hot");
    free(tmux(NULL, "send-keys -t top '>'"));  /* the next column: pub/s, hot's alone > 0 */
    wait_order("sort: pub", "hot");
    free(tmux(NULL, "send-keys -t top '<'"));
    wait_order("sort: consumers", "hot");

    free(tmux(NULL, "send-keys -t top q"));
    ck_assert_int_eq(wait_exit(), 0);
    assert_restored();
}
END_TEST

START_TEST(test_ctrl_c_restores_the_terminal)
{
    top_run("-o consumers");
    wait_order("sort: consumers", "hot");
    free(tmux(NULL, "send-keys -t top C-c"));
    ck_assert_int_eq(wait_exit(), 0);
    assert_restored();
}
END_TEST

START_TEST(test_sigterm_restores_the_terminal)
{
    top_run("");
    wait_order("sort: name", "full");
    FILE *f = fopen(tmp("pid"), "r");
    ck_assert_ptr_nonnull(f);
    int pid = 0;
    ck_assert_int_eq(fscanf(f, "%d", &pid), 1);
    fclose(f);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_int_eq(wait_exit(), 128 + SIGTERM);
    assert_restored();
}
END_TEST

START_TEST(test_once_is_one_plain_frame)
{
    char cmd[1024];
    int status;
    char *out = NULL;

    for (int waited = 0; waited < WAIT_MS; waited += 500) {
        free(out);
        /* -s after the command, as every command takes it */
        snprintf(cmd, sizeof cmd, "'%s' top --once -i 0.3 -o consumers -s %s", sluice_bin(),
                 daemon_.addr);
        out = run_capture(cmd, &status);
        ck_assert_ptr_nonnull(out);
        ck_assert_int_eq(status, 0);
        ck_assert_ptr_null(strchr(out, '\033'));  /* stdout is a pipe: no escape codes */
        char hot[12][32];
        if (row_fields(out, "hot", hot, 12) == 11 && rate_positive(hot[F_PUB]))
            break;
    }
    ck_assert_ptr_nonnull(strstr(out, "sort: consumers"));
    ck_assert_ptr_nonnull(strstr(out, "every 0.3s"));
    ck_assert_ptr_nonnull(strstr(out, daemon_.addr));
    ck_assert_ptr_null(strstr(out, "q quit"));
    char first[64], hot[12][32];
    first_row(out, first, sizeof first);
    ck_assert_str_eq(first, "hot");
    ck_assert_int_eq(row_fields(out, "hot", hot, 12), 11);
    ck_assert_msg(rate_positive(hot[F_PUB]) && rate_positive(hot[F_ACK]), "%s", out);
    ck_assert_uint_eq(strlen(hot[F_BAR]), 12);  /* a bar of 10 when not a terminal */
    ck_assert(hot[F_BAR][0] == '[' && hot[F_BAR][11] == ']');
    int rows = 0;
    for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++)
        rows++;
    ck_assert_int_eq(rows, 4 + 3);  /* header 3, titles, one row per topic */
    free(out);
}
END_TEST

START_TEST(test_usage_and_no_terminal)
{
    char cmd[1024];
    int status;

    snprintf(cmd, sizeof cmd, "'%s' -s %s top </dev/null 2>&1", sluice_bin(), daemon_.addr);
    char *out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 1);
    ck_assert_ptr_nonnull(strstr(out, "needs a terminal"));
    free(out);
    static const char *const bad[] = {"-i 0", "-i abc", "-i 1e9", "-o size", "extra", "--bogus"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "'%s' -s %s top --once %s 2>&1", sluice_bin(), daemon_.addr,
                 bad[i]);
        out = run_capture(cmd, &status);
        ck_assert_msg(status == 2, "top %s: status %d: %s", bad[i], status, out);
        free(out);
    }
    snprintf(cmd, sizeof cmd, "'%s' top --help", sluice_bin());
    out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 0);
    ck_assert_ptr_nonnull(strstr(out, "--interval"));
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' -s 127.0.0.1:1 top --once 2>&1", sluice_bin());
    out = run_capture(cmd, &status);
    ck_assert_int_eq(status, 1);
    free(out);
}
END_TEST

static Suite *top_suite(void)
{
    Suite *s = suite_create("top");
    TCase *t = tcase_create("top");

    tcase_add_checked_fixture(t, top_setup, top_teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_live_rows_rates_sort_and_q);
    tcase_add_test(t, test_ctrl_c_restores_the_terminal);
    tcase_add_test(t, test_sigterm_restores_the_terminal);
    tcase_add_test(t, test_once_is_one_plain_frame);
    tcase_add_test(t, test_usage_and_no_terminal);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(top_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
