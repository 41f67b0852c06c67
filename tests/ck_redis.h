/* ck_redis.h: a private redis-server or redis-sentinel for the tests that
 * need a real one (never the machine's default instance), started by the
 * test in a fresh /tmp/sluice-test-* directory of its own, and hiredis
 * shortcuts to ask it things. Each process dies with the test that started
 * it; ckr_stop removes its directory, so a failed test leaves its data,
 * config and redis.log behind to read. A missing redis-server fails the
 * test.
 */
#ifndef SLUICE_CK_REDIS_H
#define SLUICE_CK_REDIS_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct ckr {
    pid_t pid;        /* 0: not running */
    char dir[64];     /* its data, config and redis.log */
    char sock[128];   /* dir/redis.sock; "" for TCP on port */
    int port;         /* on 127.0.0.1, when sock is "" */
    const char *pass; /* --requirepass, or NULL */
    bool aof;         /* appendonly yes, appendfsync always */
    int of;           /* replicaof this port on 127.0.0.1; 0: a master */
    bool sentinel;    /* redis-sentinel with dir/sentinel.conf */
    int wait_ms;      /* how long a start may take to answer PING */
} ckr_t;

/* redis-sentinel on PATH (or $REDIS_SENTINEL), else NULL. */
const char *ckr_sentinel_bin(void);

/* A fresh directory and its socket path for a server on a unix socket,
 * not started yet (its path can go into a config first). */
void ckr_init(ckr_t *r, const char *pass, bool aof, int wait_ms);

/* Start it (or again: same directory, socket or port, and a dump.rdb or
 * appendonly file there is loaded) and wait for PING, or fail the test. */
void ckr_spawn(ckr_t *r);

/* ckr_init and ckr_spawn. */
void ckr_start(ckr_t *r, const char *pass, bool aof, int wait_ms);

/* A server on a fresh loopback port (another one if it was taken before
 * the server bound it): a master, or with `of` a replica of that port. */
void ckr_start_tcp(ckr_t *r, int of, int wait_ms);

/* A redis-sentinel on a fresh loopback port, with the port, bind and dir
 * lines of its config written here and `conf` (its "sentinel ..." lines)
 * after them. */
void ckr_sentinel(ckr_t *s, const char *conf, int wait_ms);

/* SIGKILL, reaped; its socket goes too. Nothing if it is not running. */
void ckr_kill(ckr_t *r);

/* ckr_kill, and its directory removed. */
void ckr_stop(ckr_t *r);

/* A fresh connection, AUTHed and on db (2 s timeouts); NULL if nothing
 * answers. */
redisContext *ckr_conn(const ckr_t *r, int db);

/* One command on a fresh connection; NULL if nothing answers. */
redisReply *ckr_cmd(const ckr_t *r, int db, const char *fmt, ...);
redisReply *ckr_vcmd(const ckr_t *r, int db, const char *fmt, va_list ap);

/* An integer reply, -1 for anything else. */
long long ckr_int(const ckr_t *r, int db, const char *fmt, const char *key);

/* A string reply as a malloc'ed string ("" for nil, NULL for anything
 * else); and whether that of db 0 is want. */
char *ckr_str(const ckr_t *r, int db, const char *fmt, const char *a, const char *b);
bool ckr_str_is(const ckr_t *r, const char *fmt, const char *a, const char *b, const char *want);

/* Does the reply of fmt on db 0 (a status, string or INFO text) contain
 * needle? */
bool ckr_has(const ckr_t *r, const char *needle, const char *fmt, ...);

/* Run a command on db 0 and ignore its reply, but fail the test if there
 * is none or it is an error (a test's setup of its Redis). */
void ckr_do(const ckr_t *r, const char *fmt, const char *arg);

#endif
