/* topview.h: what `sluice top` shows, with no I/O: STATS bodies parsed into
 * a sample, publish/ack rates from the counter deltas of two samples, rows
 * sorted by a key, and one frame rendered into a buffer (with or without
 * ANSI codes). top.c does the terminal and the network around it.
 */
#ifndef SLUICE_TOPVIEW_H
#define SLUICE_TOPVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"
#include "proto.h"

/* One "key: value" line of a STATS body; nested keys (two-space indent)
 * are dotted onto the last top-level key: "redis.connected". */
typedef struct tv_line {
    char key[64];
    const char *v; /* value, quotes stripped; may be empty */
    size_t vl;
} tv_line_t;

/* The next line of [*p, end) with a key, skipping the others; `parent`
 * (plen bytes) carries the top-level key from line to line. False at the
 * end. Also what `sluice stats` prints its table from. */
bool tv_line_next(const char **p, const char *end, char *parent, size_t plen, tv_line_t *l);

/* The monotonic counters every STATS body ends with (counters.h's list). */
typedef br_counters_t tv_counters_t;

/* One topic, from `STATS <topic>`. */
typedef struct tv_topic {
    char name[PROTO_TOPIC_MAX + 1];
    uint64_t ready, delayed, in_flight, bytes, consumers, blocked, max_messages, max_bytes;
    tv_counters_t c;
    double pub_rate, ack_rate;  /* per second; < 0 while unknown (first sample) */
    const char *node;           /* the node it is on, with several (else NULL); the caller's */
} tv_topic_t;

/* The server, from `STATS`. */
typedef struct tv_server {
    char version[32];
    uint64_t uptime_s, connections, topics, messages, bytes, blocked, max_loop_stall_ms;
    tv_counters_t c;
    bool redis_connected;
    uint64_t redis_lag_ops;
    double pub_rate, ack_rate;  /* as for topics */
} tv_server_t;

/* Everything one refresh read. */
typedef struct tv_sample {
    double t;               /* seconds on a monotonic clock, when it was read */
    tv_server_t srv;
    tv_topic_t *topics;     /* n of them, cap allocated */
    size_t n, cap;
} tv_sample_t;

/* Parse a server / topic STATS body. Unknown keys are skipped (a newer
 * server may add some); a missing or malformed number is an error. 0 or -1. */
int tv_parse_server(const char *body, size_t len, tv_server_t *s);
int tv_parse_topic(const char *body, size_t len, tv_topic_t *t);

/* Parse a topic body into a new row of s. 0, or -1 (malformed, or out of
 * memory; s is unchanged). */
int tv_sample_add(tv_sample_t *s, const char *body, size_t len);

/* Add one node's server counters into sum (a cluster's view): counts and
 * counters add up, the uptime is the youngest node's, Redis is connected
 * only if it is on every node. `first` starts the sum. */
void tv_server_add(tv_server_t *sum, const tv_server_t *one, bool first);

/* Forget the rows (keeping their memory) / free them. */
void tv_sample_clear(tv_sample_t *s);
void tv_sample_free(tv_sample_t *s);

/* Rates of cur from the deltas since prev (NULL: none yet). A topic (by
 * name and node) new
 * since prev, a counter that went backwards (the broker restarted) or no
 * time between the samples leaves the rate unknown. Reorders prev. */
void tv_rates(tv_sample_t *cur, tv_sample_t *prev);

/* What the rows can be sorted by. Names first, numbers biggest first. */
typedef enum tv_key {
    TV_KEY_NAME = 0,
    TV_KEY_READY,
    TV_KEY_DELAYED,
    TV_KEY_INFLIGHT,
    TV_KEY_PARKED,
    TV_KEY_CONSUMERS,
    TV_KEY_PUB,
    TV_KEY_ACK,
    TV_KEY_DEAD,
    TV_KEY_BYTES,
    TV_NKEYS
} tv_key_t;

/* The key named s ("ready", "pub", ...) / bound to key ch ('r', 'p', ...).
 * False if none. */
bool tv_key_parse(const char *s, tv_key_t *k);
bool tv_key_of_char(int ch, tv_key_t *k);
const char *tv_key_name(tv_key_t k);

/* Sort s's rows by k (reverse: the other way round); ties by name. */
void tv_sort(tv_sample_t *s, tv_key_t k, bool reverse);

/* How a frame is drawn. */
typedef struct tv_view {
    int width;          /* columns; 0: as wide as the rows need (not a terminal) */
    int height;         /* lines; 0: every row */
    bool ansi;          /* cursor home, clear-to-end and highlights */
    bool help;          /* the key help line at the bottom */
    tv_key_t key;
    bool reverse;
    const char *addr;   /* the server (or "3 nodes"), for the header */
    bool node_col;      /* a NODE column: the rows come from several nodes */
    double interval;    /* seconds between refreshes, for the header */
} tv_view_t;

/* A growing output buffer. */
typedef struct tv_buf {
    char *p;
    size_t len, cap;
    bool oom;           /* an append failed: the contents are incomplete */
} tv_buf_t;

void tv_buf_free(tv_buf_t *b);

/* Render one frame of s (sorted already) into b, replacing what it held.
 * Plain frames hold no escape code at all. 0, or -1 when out of memory. */
int tv_render(tv_buf_t *b, const tv_sample_t *s, const tv_view_t *v);

#endif
