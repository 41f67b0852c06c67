/* harness.h: what integration tests use to run the real sluiced binary on an
 * ephemeral loopback port and talk to it over real sockets.
 */
#ifndef SLUICE_TEST_HARNESS_H
#define SLUICE_TEST_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

typedef struct sd {
    pid_t pid;
    char dir[64];         /* fresh temp directory, removed by sd_stop */
    char conf[128];       /* dir/sluiced.yaml */
    char log[128];        /* dir/sluiced.log: the daemon's stderr */
    char host[96];        /* "127.0.0.1" */
    int port;             /* the port the daemon bound */
    char addr[96];        /* "127.0.0.1:PORT", for -s */
    int admin_port;       /* the admin endpoint's port (on host); 0 when it is off */
    int bport;            /* the first beanstalk listener's port (on host); 0: none */
    const char *wrap;     /* a command the daemon runs under (valgrind), or NULL */
} sd_t;

/* Path of a built program from the environment ($SLUICED, $SLUICE), or a
 * default relative to the build tree. */
/* The monotonic clock in ms, and a sleep: what every test's waits use. */
uint64_t sd_now_ms(void);
void sd_sleep_ms(int ms);
/* A loopback TCP port the kernel just gave a socket that is now closed:
 * free a moment ago (another process may take it; callers that can, retry). */
int sd_free_port(void);

const char *sd_bin(const char *envname, const char *fallback);

/* A payload that tells messages apart: pattern k over len bytes, letters
 * changing every 1000 bytes. sd_pattern_diff: the first byte of got that
 * is not pattern k (len when none; want is scratch of len bytes). */
void sd_pattern(char *buf, size_t len, unsigned k);
size_t sd_pattern_diff(const char *got, size_t len, unsigned k, char *want);

/* An installed program: $envname if set, else `name` on PATH (a static
 * buffer), else NULL. */
const char *sd_which(const char *envname, const char *name);

/* Start the daemon with `yaml` (may be NULL or "") as its config file; a
 * "listen: [127.0.0.1:0]" line is added first unless yaml has a top-level
 * "listen:", and "admin: {listen: \"\"}" last unless it has a top-level
 * "admin:" (nothing may bind the fixed default 7701). extra_env
 * (NULL-terminated, may be NULL) adds NAME=VALUE entries; extra_args (may be
 * NULL) adds arguments. Waits until the port is known. 0 or -1. */
int sd_start(sd_t *d, const char *yaml);
int sd_start_ex(sd_t *d, const char *yaml, char *const extra_env[], char *const extra_args[]);

/* The same, run under `wrap` (a shell command prefix such as "valgrind -q"). */
int sd_start_wrapped(sd_t *d, const char *wrap, const char *yaml, char *const extra_env[],
                     char *const extra_args[]);

/* Rewrite the config file (for SIGHUP tests). */
int sd_write_conf(sd_t *d, const char *yaml);

/* SIGTERM, wait up to 20 s; returns the exit status, 128+sig if killed by a
 * signal, -1 on timeout (then it is SIGKILLed). Removes the temp dir. */
int sd_stop(sd_t *d);

/* Send a signal. */
void sd_signal(sd_t *d, int sig);

/* True if the daemon's log contains `needle`. */
bool sd_log_has(sd_t *d, const char *needle);
/* How many lines of the daemon's log contain needle. */
int sd_log_count(const sd_t *d, const char *needle);

/* Check ends a failing test with _exit() and a hung one with SIGKILL, so
 * no teardown runs. A guard is a small watcher process, outside the test's
 * process group, that SIGKILLs process group `pgrp` if the test process
 * goes without releasing it. Aborts if it cannot be made. */
typedef struct sd_guard {
    pid_t pid;
    int fd;
} sd_guard_t;

sd_guard_t sd_guard(pid_t pgrp);
void sd_guard_release(sd_guard_t *g);

/* A process's resident memory in KiB (VmRSS), 0 if unreadable; and how
 * many descriptors it holds open, -1 if unreadable. */
uint64_t sd_rss_kib(pid_t pid);
int sd_fd_count(pid_t pid);

/* ---- a buffered test connection ---- */

typedef struct tc {
    int fd;
    char *buf;
    size_t len, cap, off;
    char line[8192];      /* last line read by tc_line */
    proto_reply_t r;      /* last reply read by tc_reply */
} tc_t;

/* Connect to the daemon; reads time out after 10 s. NULL on failure. */
tc_t *tc_open(const sd_t *d);
/* The same to another port of d's host (d->bport: its beanstalk listener). */
tc_t *tc_open_port(const sd_t *d, int port);
void tc_close(tc_t *c);

/* Send bytes / a formatted string. 0 or -1. */
int tc_send(tc_t *c, const void *data, size_t len);
int tc_sendf(tc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Read one reply or push; the result is in c->r and valid until the next
 * read. 0, or -1 on EOF/timeout/garbage. */
int tc_reply(tc_t *c);

/* Read exactly n bytes into out (a beanstalk body, which may hold CR and
 * LF). 0 or -1. */
int tc_read_n(tc_t *c, char *out, size_t n);

/* Without blocking: read what the socket holds into the buffer (false on
 * EOF or an error), and take one whole reply out of it into c->r (false
 * when none is complete yet). For tests that poll many connections. */
bool tc_pump(tc_t *c);
bool tc_next(tc_t *c);

/* Read one line (without the CRLF) into c->line. Returns c->line or NULL. */
const char *tc_line(tc_t *c);

/* Read one reply and format it back as its first line (e.g. "+OK 1",
 * "-FULL t", "MSG t 1 1 5") into c->line; the body, if any, stays in c->r. */
const char *tc_reply_line(tc_t *c);

/* True if the peer closed the connection (reads EOF within timeout_ms). */
bool tc_closed(tc_t *c, int timeout_ms);

/* Run a shell command, capture stdout (malloc'ed, NUL-terminated) and the
 * exit status. Returns NULL on failure to run. */
char *run_capture(const char *cmd, int *status);

#endif
