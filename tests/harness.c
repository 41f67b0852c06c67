/* harness.c: run the real sluiced on an ephemeral loopback port, and talk
 * to it over real sockets, for the integration tests.
 *
 * The daemon writes the ports it bound to $SLUICED_PORT_FILE (the way
 * memcached does for its tests), so tests never guess a free port.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define HARNESS_START_MS 60000 /* valgrind starts slowly */
#define HARNESS_STOP_MS 60000
#define HARNESS_IO_MS 10000

uint64_t sd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sd_pattern(char *buf, size_t len, unsigned k)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (k * 7 + i / 1000) % 26);
}

size_t sd_pattern_diff(const char *got, size_t len, unsigned k, char *want)
{
    size_t i = 0;

    sd_pattern(want, len, k);
    while (i < len && got[i] == want[i])
        i++;
    return i;
}

void sd_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int sd_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    if (port <= 0) {
        perror("sd_free_port"); /* no loopback socket at all: nothing can run */
        abort();
    }
    return port;
}

const char *sd_bin(const char *envname, const char *fallback)
{
    const char *v = getenv(envname);
    return v && *v ? v : fallback;
}

const char *sd_which(const char *envname, const char *name)
{
    static char found[512];
    const char *env = getenv(envname), *path = getenv("PATH");

    if (env != NULL && *env)
        return env;
    while (path != NULL && *path) {
        size_t n = strcspn(path, ":");
        snprintf(found, sizeof found, "%.*s/%s", (int)n, path, name);
        if (n > 0 && access(found, X_OK) == 0)
            return found;
        path += n + (path[n] == ':');
    }
    return NULL;
}

/* Does yaml have `key` (e.g. "listen:") at the start of a line? */
static bool sd_has_top_key(const char *yaml, const char *key)
{
    size_t n = strlen(key);
    const char *p = yaml;

    while (p != NULL) {
        if (strncmp(p, key, n) == 0)
            return true;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return false;
}

int sd_write_conf(sd_t *d, const char *yaml)
{
    FILE *f = fopen(d->conf, "w");
    size_t n = yaml ? strlen(yaml) : 0;

    if (f == NULL)
        return -1;
    if (yaml == NULL || !sd_has_top_key(yaml, "listen:"))
        fputs("listen: [127.0.0.1:0]\n", f);
    if (yaml)
        fputs(yaml, f);
    /* Last, so the line numbers of the test's own yaml stay as they were. */
    if (yaml == NULL || !sd_has_top_key(yaml, "admin:"))
        fprintf(f, "%sadmin: {listen: \"\"}\n", n > 0 && yaml[n - 1] != '\n' ? "\n" : "");
    return fclose(f);
}

static int sd_read_port(sd_t *d, const char *port_file)
{
    char line[96], more[128];
    FILE *f = fopen(port_file, "r");
    char *colon;

    if (f == NULL)
        return -1;
    if (fgets(line, sizeof line, f) == NULL) {
        fclose(f);
        return -1;
    }
    /* The admin endpoint's line, if any: "admin HOST:PORT"; and the
     * beanstalk listeners': "beanstalk HOST:PORT". */
    while (fgets(more, sizeof more, f) != NULL) {
        if (strncmp(more, "admin ", 6) == 0 && (colon = strrchr(more, ':')) != NULL)
            d->admin_port = atoi(colon + 1);
        if (strncmp(more, "beanstalk ", 10) == 0 && d->bport == 0 &&
            (colon = strrchr(more, ':')) != NULL)
            d->bport = atoi(colon + 1);
    }
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    colon = strrchr(line, ':');
    if (colon == NULL)
        return -1;
    snprintf(d->addr, sizeof d->addr, "%s", line);
    *colon = '\0';
    snprintf(d->host, sizeof d->host, "%s", line);
    d->port = atoi(colon + 1);
    return 0;
}

int sd_start_ex(sd_t *d, const char *yaml, char *const extra_env[], char *const extra_args[])
{
    return sd_start_wrapped(d, NULL, yaml, extra_env, extra_args);
}

int sd_start_wrapped(sd_t *d, const char *wrap, const char *yaml, char *const extra_env[],
                     char *const extra_args[])
{
    char port_file[128];
    const char *bin = sd_bin("SLUICED", "../src/sluiced");
    uint64_t until;

    memset(d, 0, sizeof *d);
    d->wrap = wrap;
    snprintf(d->dir, sizeof d->dir, "/tmp/sluice-test-XXXXXX");
    if (mkdtemp(d->dir) == NULL)
        return -1;
    snprintf(d->conf, sizeof d->conf, "%s/sluiced.yaml", d->dir);
    snprintf(d->log, sizeof d->log, "%s/sluiced.log", d->dir);
    snprintf(port_file, sizeof port_file, "%s/ports", d->dir);
    if (sd_write_conf(d, yaml) != 0)
        return -1;

    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0) {
        char *argv[32] = {(char *)bin, "-c", d->conf};
        int argc = 3, fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        for (size_t i = 0; extra_args && extra_args[i] && argc < 31; i++)
            argv[argc++] = extra_args[i];
        argv[argc] = NULL;
        setenv("SLUICED_PORT_FILE", port_file, 1);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        for (size_t i = 0; extra_env && extra_env[i]; i++)
            putenv(extra_env[i]);
        /* Its own process group, so a stuck daemon can be killed whole;
         * and it dies with the test that started it (a failed assertion
         * ends the test without sd_stop). */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (d->wrap != NULL) {
            /* e.g. valgrind: `exec` keeps the pid, so signals reach it. */
            char cmd[8192];
            size_t n = (size_t)snprintf(cmd, sizeof cmd, "exec %s", d->wrap);
            for (int i = 0; i < argc && n < sizeof cmd; i++)
                n += (size_t)snprintf(cmd + n, sizeof cmd - n, " '%s'", argv[i]);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        execv(bin, argv);
        _exit(127);
    }
    until = sd_now_ms() + HARNESS_START_MS;
    while (sd_now_ms() < until) {
        int status;
        if (sd_read_port(d, port_file) == 0)
            return 0;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            return -1;
        }
        usleep(5000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return -1;
}

int sd_start(sd_t *d, const char *yaml) { return sd_start_ex(d, yaml, NULL, NULL); }

void sd_signal(sd_t *d, int sig)
{
    if (d->pid > 0)
        kill(d->pid, sig);
}

static void sd_rmdir(const char *dir)
{
    char cmd[128];
    int rc;

    if (dir[0] == '\0' || strncmp(dir, "/tmp/sluice-test-", 17) != 0)
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    rc = system(cmd);
    (void)rc;
}

int sd_stop(sd_t *d)
{
    uint64_t until = sd_now_ms() + HARNESS_STOP_MS;
    int status = 0, rc = -1;

    if (d->pid <= 0) {
        sd_rmdir(d->dir);
        return -1;
    }
    kill(d->pid, SIGTERM);
    while (sd_now_ms() < until) {
        pid_t p = waitpid(d->pid, &status, WNOHANG);
        if (p == d->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        usleep(5000);
    }
    if (rc == -1) {
        kill(-d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    if (rc != 0) {
        /* Show why: the daemon's own log is the best clue. */
        char cmd[192];
        snprintf(cmd, sizeof cmd, "tail -n 40 '%s' >&2", d->log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no daemon log)\n");
    }
    d->pid = 0;
    sd_rmdir(d->dir);
    return rc;
}

int sd_log_count(const sd_t *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    char line[4096];
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

bool sd_log_has(sd_t *d, const char *needle)
{
    return sd_log_count(d, needle) > 0;
}

sd_guard_t sd_guard(pid_t pgrp)
{
    sd_guard_t g = {-1, -1};
    int p[2];

    if (pipe2(p, O_CLOEXEC) != 0 || (g.pid = fork()) < 0) {
        perror("sd_guard");
        abort();
    }
    if (g.pid == 0) {
        char c;
        ssize_t n;
        setpgid(0, 0); /* out of the test's group, which Check kills at its end */
        close(p[1]);
        while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
            ;
        if (n <= 0)
            kill(-pgrp, SIGKILL);
        _exit(0);
    }
    close(p[0]);
    g.fd = p[1];
    return g;
}

void sd_guard_release(sd_guard_t *g)
{
    if (g->fd < 0)
        return;
    if (write(g->fd, "q", 1) != 1)
        kill(g->pid, SIGKILL);
    close(g->fd);
    waitpid(g->pid, NULL, 0);
    g->fd = -1;
}

uint64_t sd_rss_kib(pid_t pid)
{
    char path[64], line[256];
    uint64_t kib = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
            break;
    fclose(f);
    return kib;
}

int sd_fd_count(pid_t pid)
{
    char path[64];
    struct dirent *e;
    int n = 0;
    DIR *dir;

    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    dir = opendir(path);
    if (dir == NULL)
        return -1;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

/* ---- connections ---- */

tc_t *tc_open(const sd_t *d)
{
    return tc_open_port(d, d->port);
}

tc_t *tc_open_port(const sd_t *d, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    tc_t *c = calloc(1, sizeof *c);
    int one = 1;

    if (c == NULL)
        return NULL;
    inet_pton(AF_INET, d->host, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (c->fd >= 0)
            close(c->fd);
        free(c);
        return NULL;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    return c;
}

void tc_close(tc_t *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
}

int tc_send(tc_t *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int tc_sendf(tc_t *c, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    return tc_send(c, buf, (size_t)n);
}

/* Consumed bytes out of the way, and room for at least one more. */
static bool tc_make_room(tc_t *c)
{
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == c->cap) {
        char *p = realloc(c->buf, c->cap * 2);
        if (p == NULL)
            return false;
        c->buf = p;
        c->cap *= 2;
    }
    return true;
}

/* Wait up to timeout_ms for more bytes. 1 got some, 0 EOF, -1 timeout/error. */
static int tc_fill(tc_t *c, int timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    ssize_t n;

    if (!tc_make_room(c))
        return -1;
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -1;
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    c->len += (size_t)n;
    return 1;
}

int tc_reply(tc_t *c)
{
    for (;;) {
        size_t used = 0;
        int r = proto_parse_reply(c->buf + c->off, c->len - c->off, &c->r, &used);
        if (r < 0)
            return -1;
        if (r == 1) {
            c->off += used;
            return 0;
        }
        if (tc_fill(c, HARNESS_IO_MS) != 1)
            return -1;
    }
}

int tc_read_n(tc_t *c, char *out, size_t n)
{
    while (c->len - c->off < n)
        if (tc_fill(c, HARNESS_IO_MS) != 1)
            return -1;
    memcpy(out, c->buf + c->off, n);
    c->off += n;
    return 0;
}

bool tc_pump(tc_t *c)
{
    ssize_t n;

    if (!tc_make_room(c))
        return false;
    n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return false;
    if (n > 0)
        c->len += (size_t)n;
    return true;
}

bool tc_next(tc_t *c)
{
    size_t used = 0;

    if (proto_parse_reply(c->buf + c->off, c->len - c->off, &c->r, &used) != 1)
        return false;
    c->off += used;
    return true;
}

const char *tc_line(tc_t *c)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
        if (nl != NULL) {
            size_t n = (size_t)(nl - (c->buf + c->off));
            size_t keep = n > 0 && nl[-1] == '\r' ? n - 1 : n;
            if (keep >= sizeof c->line)
                keep = sizeof c->line - 1;
            memcpy(c->line, c->buf + c->off, keep);
            c->line[keep] = '\0';
            c->off += n + 1;
            return c->line;
        }
        if (tc_fill(c, HARNESS_IO_MS) != 1)
            return NULL;
    }
}

const char *tc_reply_line(tc_t *c)
{
    const proto_reply_t *r = &c->r;

    if (tc_reply(c) != 0)
        return NULL;
    switch (r->type) {
    case REPLY_OK:
        snprintf(c->line, sizeof c->line, r->text_len ? "+OK %.*s" : "+OK", (int)r->text_len,
                 r->text);
        break;
    case REPLY_PONG:
        snprintf(c->line, sizeof c->line, "+PONG");
        break;
    case REPLY_BYE:
        snprintf(c->line, sizeof c->line, "+BYE");
        break;
    case REPLY_STATS:
        snprintf(c->line, sizeof c->line, "+STATS %zu", r->body_len);
        break;
    case REPLY_TOPICS:
        snprintf(c->line, sizeof c->line, "+TOPICS %zu", r->body_len);
        break;
    case REPLY_ERROR:
        snprintf(c->line, sizeof c->line, r->text_len ? "-%.*s %.*s" : "-%.*s", (int)r->code_len,
                 r->code, (int)r->text_len, r->text);
        break;
    case REPLY_MSG:
        snprintf(c->line, sizeof c->line, "MSG %.*s %llu %u %zu", (int)r->topic_len, r->topic,
                 (unsigned long long)r->id, r->attempt, r->body_len);
        break;
    }
    return c->line;
}

bool tc_closed(tc_t *c, int timeout_ms)
{
    uint64_t until = sd_now_ms() + (uint64_t)timeout_ms;

    while (sd_now_ms() < until) {
        c->off = c->len; /* anything still queued is not what we wait for */
        int r = tc_fill(c, (int)(until - sd_now_ms()));
        if (r == 0)
            return true;
        if (r < 0)
            return errno == ECONNRESET;
    }
    return false;
}

char *run_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    size_t n;
    int st;

    if (p == NULL || out == NULL) {
        if (p)
            pclose(p);
        free(out);
        return NULL;
    }
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *q = realloc(out, cap * 2);
            if (q == NULL)
                break;
            out = q;
            cap *= 2;
        }
    }
    out[len] = '\0';
    st = pclose(p);
    if (status)
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return out;
}
