/* bench_int.h: the inside of `sluice bench`, shared by its files: the run's
 * options and state, a worker (one thread, one connection), and the target
 * vtable each protocol file fills in. Adding a target is one new file with
 * one bench_target_t, and its line in bench_opts.c's list.
 *
 * Not for use outside src/bench/ (and tests/check_bench.c, which drives
 * the Redis reply reader directly); the public entry is bench.h.
 */
#ifndef SLUICE_BENCH_INT_H
#define SLUICE_BENCH_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench.h"
#include "client.h"
#include "proto.h"

#define BENCH_CONNECT_MS 5000
#define BENCH_CROWD_MAX 1000000       /* --crowd-idle, --crowd-producers */
#define BENCH_REPLY_MS 10000
#define BENCH_OUT_HIGH (256 * 1024)   /* queued bytes before a producer stops queueing */
#define BENCH_WIND_DOWN_NS 3000000000ull  /* consumers finish their last exchange in this */

typedef struct bench bench_t;
typedef struct bench_target bench_target_t;

typedef struct bench_opts {
    const bench_target_t *target;
    const char *addr;       /* -s; once settled, the one node's address, or the nodes
                             * joined by commas (for the report) */
    const char *nodes_opt;  /* --nodes */
    const char *config;     /* --config */
    unsigned topics;        /* --topics N: NAME.0 .. NAME.N-1; 0: the one topic NAME */
    unsigned producers, consumers;
    uint64_t messages;      /* total; unused with duration */
    double duration;        /* seconds; 0 = run by --messages */
    size_t size;
    unsigned window, credit, ack_batch;
    const char *topic;
    bool json;
    bool sched_other;       /* --sched other: leave the worker threads' policy alone */
    unsigned drain_ms;      /* wait this long for missing messages after the producers end */
    const char *relay_listen; /* --relay-listen: serve the relay floor instead of running */
    unsigned crowd_idle;    /* --crowd-idle: hold a crowd of connections instead of running */
    unsigned crowd_producers; /* --crowd-producers */
    double crowd_rate;      /* --crowd-rate: msg/s per crowd producer */
} bench_opts_t;

typedef struct bench_worker {
    bench_t *b;
    unsigned idx;
    unsigned tix;           /* its topic: b->tp[tix] (idx % topics) */
    const char *topic;      /* that topic's name */
    pthread_t th;
    bool started;
    client_t *c;
    void *priv;             /* the target's own per-connection state */
    /* producer */
    uint64_t quota;         /* messages to send (ignored with --duration) */
    uint64_t sent;          /* sequence numbers issued */
    uint64_t replied;       /* replies read */
    uint64_t ok;            /* accepted by the server */
    uint32_t *refused;      /* seqs the server refused */
    size_t nrefused, refused_cap;
    char put_hdr[PROTO_TOPIC_MAX + 40];   /* the same for every put of a run */
    size_t put_hdr_len;
    /* consumer */
    bench_hist_t *hist;
    uint64_t got;           /* new messages this consumer took */
    uint64_t last_ns;       /* when it took the last one */
} bench_worker_t;

/* One server protocol. Every hook but put, reply and consume may be NULL. */
struct bench_target {
    const char *name;       /* for --target and the report */
    const char *alias;      /* another --target name, or NULL */
    int port;               /* default port */
    const char *addr;       /* default address; NULL: sluice's own default */
    /* Once, before any worker connects / after all are done. */
    int (*setup)(bench_t *b, char *err, size_t errlen);
    void (*teardown)(bench_t *b);
    /* A producer's connection is up / its thread is ending. */
    int (*prod_open)(bench_worker_t *w);
    void (*prod_close)(bench_worker_t *w);
    /* Queue one publish of payload[0..n). 0, or -1 out of memory. */
    int (*put)(bench_worker_t *w, const char *payload, size_t n);
    /* Take one reply: 1 accepted, 2 refused (why in err), 0 need more, -1 broken. */
    int (*reply)(bench_worker_t *w, char *err, size_t errlen);
    /* A consumer's whole life on its connection: subscribe, report ready
     * (b->ready), take messages with bench_take until the run stops, then
     * acknowledge what it took. */
    int (*consume)(bench_worker_t *w);
};

extern const bench_target_t bsl_target;   /* bench_sluice.c */
extern const bench_target_t brd_target;   /* bench_redis.c */
extern const bench_target_t brl_target;   /* bench_rlist.c */
extern const bench_target_t bbs_target;   /* bench_beanstalk.c */
extern const bench_target_t bsl_relay_target; /* bench_sluice.c: sluice's client side, to the relay */

/* ---- a flat byte buffer (bench_buf.c): the relay, the crowd, the XACK ids ---- */

typedef struct bench_buf {
    char *p;
    size_t off, len, cap;   /* p[off..len) holds the bytes */
} bench_buf_t;

/* Room for `more` bytes at p + len, the first allocation `first` bytes (or
 * more): 0, or -1 out of memory. */
int bench_buf_room(bench_buf_t *b, size_t more, size_t first);
/* Append p[0..n): 0, or -1 out of memory. */
int bench_buf_put(bench_buf_t *b, const void *p, size_t n, size_t first);
/* Write what it holds to fd until it is empty or the kernel is full (the
 * buffer is reset when empty): the bytes written, or -1 when the peer is
 * gone. */
ssize_t bench_buf_write(bench_buf_t *b, int fd);
/* Free it and leave it empty. */
void bench_buf_free(bench_buf_t *b);

/* ---- the relay floor (bench_relay.c) ---- */

/* Serve the relay on addr until killed; returns only on a failure (1). */
int bench_relay_main(const char *addr);

/* ---- the crowd (bench_crowd.c) ---- */

/* Hold o->crowd_idle idle connections and o->crowd_producers slow
 * producers (with their consumers) on o->addr, say `ready` once all are
 * up, and run until SIGTERM or SIGINT: 0, or 1 when something failed. */
int bench_crowd_main(const bench_opts_t *o);

/* ---- which (producer, seq) pairs arrived (bench_seen.c) ---- */

#define BENCH_SEEN_CHUNK_SHIFT 20
#define BENCH_SEEN_NCHUNKS (1u << (32 - BENCH_SEEN_CHUNK_SHIFT))

/* One producer's bitmap, in chunks made on first use so a --duration run
 * needs no size up front. Consumers mark it concurrently. */
typedef struct bench_seen {
    _Atomic(_Atomic uint64_t *) chunk[BENCH_SEEN_NCHUNKS];
} bench_seen_t;

/* 1 if seq is new, 0 if it was already marked, -1 out of memory. */
int bench_seen_mark(bench_seen_t *s, uint32_t seq);
bool bench_seen_has(bench_seen_t *s, uint32_t seq);
void bench_seen_free(bench_seen_t *s);

/* ---- the run (bench.c) ---- */

/* One topic of the run and the node that owns it: place.h's owner, put
 * right by the consumers if a node answers -MOVED (under b->lock). */
typedef struct bench_topic {
    char name[PROTO_TOPIC_MAX + 1];
    char addr[CONFIG_NODE_MAX + 1];
} bench_topic_t;

struct bench {
    bench_opts_t o;
    client_nodes_t nodes;   /* the settled node list */
    bench_topic_t *tp;      /* ntp topics */
    unsigned ntp;
    atomic_bool warned_stale; /* the -MOVED line was printed */
    uint32_t run;           /* tells this run's messages from leftovers */
    bench_seen_t *seen;     /* one per producer */
    bench_worker_t *prod, *cons;
    /* Consumers bump these for every message: on their own cache line, so
     * the producer threads reading the options above do not stall on it. */
    _Alignas(64) atomic_uint_fast64_t received, dups, corrupt, stale, errors;
    _Alignas(64) atomic_uint ready;
    atomic_uint producers_done;
    atomic_bool go, stop, abort;
    uint64_t t_start, t_deadline;
    pthread_mutex_t lock;
    char first_err[CLIENT_ERR_MAX + 64];
};

/* Record a problem: the first one is reported; a fatal one ends the run. */
void bench_note(bench_t *b, bool fatal, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Neither stopped nor aborted. */
bool bench_running(bench_t *b);
/* Check one received payload and account for it. */
void bench_take(bench_worker_t *w, const char *p, size_t n);
/* One I/O step of a consumer winding down; false once deadline_ns has
 * passed or the connection failed. */
bool bench_wait_until(bench_worker_t *w, uint64_t deadline_ns);
/* A consumer's first reply was -MOVED to `to`: record the topic's owner,
 * say once that the node list looks stale, and connect w there. False
 * (noted) if it cannot. */
bool bench_moved(bench_worker_t *w, const char *to);

/* ---- options (bench_opts.c) ---- */

/* Parse argv into o (defaults already there): 0, -1 after --help, 2 on a
 * usage error (said on stderr). */
int bench_opts_parse(int argc, char **argv, bench_opts_t *o);

/* ---- report (bench_report.c) ---- */

/* Messages one node delivered (to the consumers connected to it). */
typedef struct bench_node_count {
    const char *addr;
    uint64_t received;
} bench_node_count_t;

typedef struct bench_result {
    uint64_t sent, accepted, unconfirmed, received, lost, dups, corrupt, stale, errors;
    double elapsed;         /* first publish to last new message, seconds */
    bench_hist_t *hist;
    bench_node_count_t *per_node;  /* with several nodes or topics; else NULL */
    size_t nper_node;
} bench_result_t;

void bench_report_text(const bench_opts_t *o, const bench_result_t *r);
void bench_report_json(const bench_opts_t *o, const bench_result_t *r);

/* ---- Redis Streams replies (bench_redis.c) ---- */

struct redisReader;

/* Where brd_rd_t puts what an XREADGROUP (or, with `list`, a BLMPOP)
 * reply brings. */
typedef struct brd_sink {
    /* Each entry's id, once (to XACK it): 0, or -1 to mark the reply bad. */
    int (*id)(void *arg, const char *id, size_t n);
    /* Each field's value (the payload); p is NULL for an entry that was
     * deleted before it was read. */
    void (*value)(void *arg, const char *p, size_t n);
    void *arg;
    bool list;  /* BLMPOP's [key, [value, ...]]: values only, no ids */
} brd_sink_t;

/* A reply reader on hiredis's parser that builds no reply objects: it
 * keeps the type of each reply and an error's text, and hands the entries
 * of an XREADGROUP reply, [[stream, [[id, [field, value, ...]], ...]], ...],
 * to its sink while they are parsed. */
typedef struct brd_rd {
    struct redisReader *r;
    brd_sink_t sink;        /* value NULL: no entries expected (producers, set-up) */
    int type;               /* REDIS_REPLY_* of the last reply */
    bool bad;               /* with a sink: the reply was not shaped as XREADGROUP's */
    char err[201];          /* an error reply as sent, "-ERR ..." (up to 200 bytes) */
} brd_rd_t;

/* NULL when out of memory. sink may be NULL. */
brd_rd_t *brd_rd_new(const brd_sink_t *sink);
void brd_rd_free(brd_rd_t *rd);
/* Hand the reader bytes (it copies them). 0, or -1 once it failed. */
int brd_rd_feed(brd_rd_t *rd, const char *p, size_t n);
/* Parse on: 1 when one more whole reply was read (type, bad and err tell
 * what it was), 0 when more bytes are needed, -1 when it is not RESP. */
int brd_rd_get(brd_rd_t *rd);

/* RESP out and in over a bench connection, shared with bench_rlist.c. */
int brd_put_cmd(client_t *c, int argc, const char *const *argv, const size_t *lens);
int brd_next(client_t *c, brd_rd_t *rd);
int brd_command(client_t *c, int argc, const char *const *argv, char *err, size_t errlen);
const char *brd_errstr(const brd_rd_t *rd, char *buf, size_t len);
/* A producer's reader (its priv), and its next reply: 1 when of ok_type,
 * 2 an error reply (err), 0 none yet, -1 anything else. */
int brd_prod_open(bench_worker_t *w);
void brd_prod_close(bench_worker_t *w);
int brd_prod_answer(bench_worker_t *w, int ok_type, char *err, size_t errlen);
/* DEL the target's key on a fresh connection, errors ignored. */
void brd_teardown(bench_t *b);

#endif
