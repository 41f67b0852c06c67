/* ck_redis.c: a private redis-server or redis-sentinel for the tests, and
 * hiredis shortcuts to ask it things (see ck_redis.h).
 */
#include "ck_redis.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

const char *ckr_sentinel_bin(void)
{
    return sd_which("REDIS_SENTINEL", "redis-sentinel");
}

static const char *ckr_name(const ckr_t *r)
{
    return r->sentinel ? "redis-sentinel" : "redis-server";
}

/* Where it listens, for messages: its socket or 127.0.0.1:port. */
static const char *ckr_where(const ckr_t *r, char *buf, size_t cap)
{
    if (r->sock[0] != '\0')
        return r->sock;
    snprintf(buf, cap, "127.0.0.1:%d", r->port);
    return buf;
}

/* In the child: stdout and stderr to dir/redis.log, then exec it. */
static void ckr_exec(const ckr_t *r, const char *bin)
{
    char log[160], port[16], of[16], conf[128];
    const char *argv[40];
    int fd, n = 0;

    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    setpgid(0, 0);
    /* A failed test exits at once: its Redis must not outlive it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(127);
    if (r->sentinel) {
        snprintf(conf, sizeof conf, "%s/sentinel.conf", r->dir);
        execl(bin, bin, conf, (char *)NULL);
        _exit(127);
    }
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(of, sizeof of, "%d", r->of);
    argv[n++] = bin;
    if (r->sock[0] != '\0') {
        const char *on_unix[] = {"--port", "0", "--unixsocket", r->sock, "--unixsocketperm", "700"};
        for (size_t i = 0; i < sizeof on_unix / sizeof on_unix[0]; i++)
            argv[n++] = on_unix[i];
    } else {
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
    }
    {
        const char *common[] = {"--save", "", "--daemonize", "no", "--dir", r->dir,
                                "--appendonly", r->aof ? "yes" : "no",
                                "--appendfsync", r->aof ? "always" : "everysec",
                                "--repl-diskless-sync-delay", "0"};
        for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
            argv[n++] = common[i];
    }
    if (r->pass != NULL) {
        argv[n++] = "--requirepass";
        argv[n++] = r->pass;
    }
    if (r->of > 0) {
        argv[n++] = "--replicaof";
        argv[n++] = "127.0.0.1";
        argv[n++] = of;
    }
    argv[n] = NULL;
    execv(bin, (char *const *)argv);
    _exit(127);
}

/* Start it and wait for PING: false if it exited first (its port was
 * taken meanwhile); fails the test if it neither answers nor exits. */
static bool ckr_try_spawn(ckr_t *r)
{
    const char *bin = r->sentinel ? ckr_sentinel_bin() : sd_which("REDIS_SERVER", "redis-server");
    char buf[32];
    uint64_t until;

    ck_assert_msg(bin != NULL, "%s is not on PATH: the test needs a real one (apt-get install %s)",
                  ckr_name(r), ckr_name(r));
    r->pid = fork();
    ck_assert_int_ge(r->pid, 0);
    if (r->pid == 0)
        ckr_exec(r, bin);
    until = sd_now_ms() + (uint64_t)r->wait_ms;
    while (sd_now_ms() < until) {
        if (ckr_has(r, "PONG", "PING"))
            return true;
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return false;
        }
        sd_sleep_ms(10);
    }
    ck_abort_msg("%s at %s did not start (see %s/redis.log)", ckr_name(r),
                 ckr_where(r, buf, sizeof buf), r->dir);
    return false;
}

void ckr_spawn(ckr_t *r)
{
    char buf[32];

    ck_assert_msg(ckr_try_spawn(r), "%s at %s exited at start (see %s/redis.log)", ckr_name(r),
                  ckr_where(r, buf, sizeof buf), r->dir);
}

/* A fresh directory, nothing else set but how long a start may take. */
static void ckr_fresh(ckr_t *r, int wait_ms)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/sluice-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(r->dir));
    r->wait_ms = wait_ms;
}

void ckr_init(ckr_t *r, const char *pass, bool aof, int wait_ms)
{
    ckr_fresh(r, wait_ms);
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    r->pass = pass;
    r->aof = aof;
}

void ckr_start(ckr_t *r, const char *pass, bool aof, int wait_ms)
{
    ckr_init(r, pass, aof, wait_ms);
    ckr_spawn(r);
}

/* Sentinel rewrites this file as it learns: written once per port. */
static void ckr_write_sentinel_conf(const ckr_t *s, const char *conf)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof path, "%s/sentinel.conf", s->dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n%s", s->port, s->dir, conf);
    ck_assert_int_eq(fclose(f), 0);
}

/* The first start on a fresh port, and on another if someone took it
 * meanwhile (conf: a sentinel's lines, NULL for a server). */
static void ckr_first_spawn_tcp(ckr_t *r, const char *conf)
{
    for (int i = 0; i < 3; i++) {
        r->port = sd_free_port();
        if (conf != NULL)
            ckr_write_sentinel_conf(r, conf);
        if (ckr_try_spawn(r))
            return;
    }
    ckr_spawn(r);
}

void ckr_start_tcp(ckr_t *r, int of, int wait_ms)
{
    ckr_fresh(r, wait_ms);
    r->of = of;
    ckr_first_spawn_tcp(r, NULL);
}

void ckr_sentinel(ckr_t *s, const char *conf, int wait_ms)
{
    ckr_fresh(s, wait_ms);
    s->sentinel = true;
    ckr_first_spawn_tcp(s, conf);
}

void ckr_kill(ckr_t *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    if (r->sock[0] != '\0')
        unlink(r->sock);
}

void ckr_stop(ckr_t *r)
{
    char cmd[128];

    ckr_kill(r);
    if (strncmp(r->dir, "/tmp/sluice-test-", 17) == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", r->dir);
    }
}

redisContext *ckr_conn(const ckr_t *r, int db)
{
    struct timeval tv = {2, 0};
    redisContext *c = r->sock[0] != '\0' ? redisConnectUnixWithTimeout(r->sock, tv)
                                         : redisConnectWithTimeout("127.0.0.1", r->port, tv);
    redisReply *rep;

    if (c == NULL || c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (r->pass != NULL) {
        rep = redisCommand(c, "AUTH %s", r->pass);
        freeReplyObject(rep);
    }
    if (db != 0) {
        rep = redisCommand(c, "SELECT %d", db);
        freeReplyObject(rep);
    }
    return c;
}

redisReply *ckr_vcmd(const ckr_t *r, int db, const char *fmt, va_list ap)
{
    redisContext *c = ckr_conn(r, db);
    redisReply *rep;

    if (c == NULL)
        return NULL;
    rep = redisvCommand(c, fmt, ap);
    redisFree(c);
    return rep;
}

redisReply *ckr_cmd(const ckr_t *r, int db, const char *fmt, ...)
{
    redisReply *rep;
    va_list ap;

    va_start(ap, fmt);
    rep = ckr_vcmd(r, db, fmt, ap);
    va_end(ap);
    return rep;
}

long long ckr_int(const ckr_t *r, int db, const char *fmt, const char *key)
{
    redisReply *rep = ckr_cmd(r, db, fmt, key);
    long long v = -1;

    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER)
        v = rep->integer;
    freeReplyObject(rep);
    return v;
}

char *ckr_str(const ckr_t *r, int db, const char *fmt, const char *a, const char *b)
{
    redisReply *rep = ckr_cmd(r, db, fmt, a, b);
    char *s = NULL;

    if (rep != NULL && rep->type == REDIS_REPLY_STRING)
        s = strndup(rep->str, rep->len);
    else if (rep != NULL && rep->type == REDIS_REPLY_NIL)
        s = strdup("");
    freeReplyObject(rep);
    return s;
}

bool ckr_str_is(const ckr_t *r, const char *fmt, const char *a, const char *b, const char *want)
{
    char *s = ckr_str(r, 0, fmt, a, b);
    bool eq = s != NULL && strcmp(s, want) == 0;

    free(s);
    return eq;
}

bool ckr_has(const ckr_t *r, const char *needle, const char *fmt, ...)
{
    redisReply *rep;
    va_list ap;
    bool has;

    va_start(ap, fmt);
    rep = ckr_vcmd(r, 0, fmt, ap);
    va_end(ap);
    has = rep != NULL && (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING) &&
          strstr(rep->str, needle) != NULL;
    freeReplyObject(rep);
    return has;
}

void ckr_do(const ckr_t *r, const char *fmt, const char *arg)
{
    redisReply *rep = ckr_cmd(r, 0, fmt, arg);

    ck_assert_ptr_nonnull(rep);
    ck_assert_int_ne(rep->type, REDIS_REPLY_ERROR);
    freeReplyObject(rep);
}
