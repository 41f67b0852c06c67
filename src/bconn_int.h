/* bconn_int.h: the beanstalk listener's private types, shared by bconn.c
 * (sockets, buffers, life), bconn_cmd.c (the commands), bconn_tube.c (the
 * tubes' use and watch counts) and bconn_stats.c (the YAML bodies).
 */
#ifndef SLUICE_BCONN_INT_H
#define SLUICE_BCONN_INT_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "bconn.h"
#include "bproto.h"
#include "broker.h"
#include "connhost.h"

#define BCONN_SOON_MS 1000        /* DEADLINE_SOON: a second before a TTR ends */
#define BCONN_TUBE_BUCKETS 256    /* the use/watch count table's chains */
#define BCONN_STAGE 1024          /* small replies collected per connection */

/* A tube that some beanstalk connection uses or watches, or did while its
 * topic exists. Tubes live in the core as topics of the same name; this
 * counts who points at them, for list-tubes, stats-tube's current-using and
 * current-watching, and for which tubes "exist" (beanstalkd drops a tube
 * nobody uses, watches or fills). An entry nobody points at is kept only
 * while its topic exists (so at most limits.max_topics of them). */
typedef struct bconn_tube {
    struct bconn_tube *next;      /* its hash chain */
    uint32_t using, watching;     /* connections */
    /* The topic's counters when this tube was last born: stats-tube counts
     * from there, as a beanstalkd tube starts from zero each time. */
    uint64_t base_published, base_acked, base_pauses;
    uint8_t len;
    char name[BPROTO_TUBE_MAX + 1]; /* NUL-terminated */
} bconn_tube_t;

typedef enum bconn_state {
    BCONN_READING,  /* commands are parsed as they arrive */
    BCONN_WAITING,  /* a reserve waits: input is read, not parsed, so replies keep their order */
    BCONN_PARKED,   /* a put is parked (block tube): the socket is not read (backpressure) */
    BCONN_HELD,     /* confirm mode: the put's INSERTED waits for the mirror */
    BCONN_CLOSING,  /* quit: flush, then close */
} bconn_state_t;

/* The per-command counters stats prints (cmd-*), in BCMD_* order. */
#define BCONN_NCMDS (BCMD_QUIT + 1)

typedef struct bconn bconn_t;

/* Every beanstalk connection of one server, and what they share. */
typedef struct bconn_set {
    connhost_t *host;
    LIST_HEAD(bconn_list, bconn) conns;
    TAILQ_HEAD(bconn_flushq, bconn) flushq;
    struct event *flush_ev;       /* after every I/O callback of a turn */
    const user_entry_t *user;     /* beanstalk.user in the live config; NULL: none */
    bconn_tube_t *tubes[BCONN_TUBE_BUCKETS];
    uint64_t ntubes;              /* entries in tubes[] */
    uint64_t nconns, total_conns;
    uint64_t producers, workers, waiting; /* connections that ever put / reserved; waiting now */
    uint64_t cmds[BCONN_NCMDS];
    char id[17];                  /* stats' id: random, per process */
} bconn_set_t;

struct bconn {
    bconn_set_t *set;
    connhost_t *host;
    int fd;
    bconn_state_t state;
    client_t *client;
    bproto_parser_t parser;

    bconn_tube_t *use;            /* never NULL */
    bconn_tube_t **watch;         /* never empty */
    size_t nwatch, capwatch;
    bool producer, worker;        /* has put / reserved (stats' current-producers/-workers) */

    struct event *rev, *wev;
    bool reading, peer_eof, out_full;
    char *in;                     /* in[in_off .. in_len) is unparsed */
    size_t in_off, in_len, in_cap;
    struct evbuffer *out;
    char stage[BCONN_STAGE];      /* replies not yet in out (written to it in one go) */
    size_t nstage;

    LIST_ENTRY(bconn) link;
    TAILQ_ENTRY(bconn) flush_link;
    bool flush_queued;
    char peer[64];
};

/* bconn.c */
void bconn_reply(bconn_t *c, const char *s, size_t n);
#define bconn_reply_lit(c, lit) bconn_reply((c), (lit), sizeof(lit) - 1)
void bconn_set_state(bconn_t *c, bconn_state_t st);
/* The reply to a body: "<head>\r\n<body>\r\n". */
void bconn_reply_body(bconn_t *c, const char *head, size_t hlen, const char *body, size_t blen);
/* The same with a job's payload for body: a big one is written from the
 * message itself (connhost_add_lent), not copied. */
void bconn_reply_job(bconn_t *c, const char *head, size_t hlen, const msg_t *m);

/* bconn_cmd.c: run one parsed command. */
void bconn_exec(bconn_t *c, const bproto_cmd_t *cmd, uint64_t now);
/* A parse error: if it refused a put's body, count the put as beanstalkd
 * does. */
void bconn_put_refused(bconn_t *c, const char *err);
/* A waiting or parked command finished (client_ops.complete). */
void bconn_completed(bconn_t *c, br_op_t op, br_status_t st, uint64_t id);
/* What a command does to a tube, for the listener's user's globs. */
typedef enum bconn_right {
    BCONN_PUT,  /* put: publish */
    BCONN_READ, /* watch, reserve, reserve-job, delete: subscribe */
    BCONN_LOOK, /* use, peeks, kicks, stats, pause-tube, list-tubes: publish or subscribe */
} bconn_right_t;
bool bconn_may(const bconn_t *c, const char *tube, size_t len, bconn_right_t right);

/* bconn_tube.c */
bconn_tube_t *bconn_tube_ref(bconn_set_t *s, const char *name, size_t len);
void bconn_tube_unref(bconn_set_t *s, bconn_tube_t *t);
bconn_tube_t *bconn_tube_find(const bconn_set_t *s, const char *name, size_t len);
/* Someone uses or watches it. */
static inline bool bconn_tube_held(const bconn_tube_t *t)
{
    return t != NULL && (t->using > 0 || t->watching > 0);
}
bool bconn_use(bconn_t *c, const char *name, size_t len);
/* Watch a tube (false: out of memory); how many are watched. */
bool bconn_watch(bconn_t *c, const char *name, size_t len);
/* 1: ignored (or was not watched), 0: it is the last one (NOT_IGNORED). */
int bconn_ignore(bconn_t *c, const char *name, size_t len);
void bconn_tubes_drop(bconn_t *c);
/* Does the tube exist as beanstalkd would say (used, watched, holds a job,
 * or is "default")? */
bool bconn_tube_exists(const bconn_set_t *s, const char *name, size_t len, uint64_t now);

/* bconn_stats.c: the YAML bodies. */
void bconn_stats(bconn_t *c, uint64_t now);
void bconn_stats_tube(bconn_t *c, const char *name, size_t len, uint64_t now);
bool bconn_stats_job(bconn_t *c, uint64_t id, uint64_t now);
void bconn_list_tubes(bconn_t *c, uint64_t now);
void bconn_list_watched(bconn_t *c);

#endif
