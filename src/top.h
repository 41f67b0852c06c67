/* top.h: `sluice top`, a live view of a broker (or a cluster's nodes) in a terminal (and one
 * frame for scripts with --once). The frame itself is made by topview.c;
 * this module owns the terminal, the signals and the polling loop.
 */
#ifndef SLUICE_TOP_H
#define SLUICE_TOP_H

#include "client.h"
#include "topview.h"

/* What `sluice top` was asked for; sluice.c parses it with the connection
 * options every subcommand takes. */
typedef struct top_opts {
    double interval; /* seconds between frames: 0.1 to 3600 */
    tv_key_t key;    /* the column rows are sorted by */
    bool once;       /* one frame, for scripts */
} top_opts_t;

#define TOP_OPTS_DEFAULT {.interval = 1.0, .key = TV_KEY_NAME, .once = false}

extern const char top_usage_text[];

/* A --interval value: seconds, 0.1 to 3600. False if it is not one. */
bool top_interval_parse(const char *s, double *out);

/* Run `sluice top` on cs[0..n), one connected client per node (freed
 * before returning); addrs[i] is node i's address as given, for the header
 * and the NODE column. Returns the exit status: 0 (q, Ctrl-C), 1 (error),
 * 128+N (stopped by SIGTERM/SIGHUP). */
int top_run(client_t **cs, const char *const *addrs, size_t n, const top_opts_t *o);

#endif
