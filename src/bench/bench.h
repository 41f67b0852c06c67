/* bench.h: `sluice bench`, a load generator that drives sluice, Redis
 * Streams or beanstalkd with the same workload, each in its own protocol,
 * and checks that every message arrives exactly once and intact. The
 * public entry of src/bench/ (bench_int.h is its inside).
 *
 * The pieces that do not need a server (latency histogram, payload
 * format) are exposed for unit tests.
 */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The connection options given before the subcommand (NULL: not given). */
typedef struct bench_conn {
    const char *server;  /* -s */
    const char *nodes;   /* --nodes */
    const char *config;  /* --config */
} bench_conn_t;

/* Entry point of `sluice bench`: argv[0] is "bench"; pre holds what was
 * given before the subcommand. Returns the exit status: 0 when every
 * message arrived once and intact, 1 when any was lost, duplicated or
 * corrupt or a server refused one, 2 on a usage error. */
int bench_main(int argc, char **argv, const bench_conn_t *pre);

/* ---- latency histogram: log-linear buckets, fixed size, no allocation ----
 * Values below 2^SUB_BITS get a bucket each; above, every power of two is
 * split into 2^SUB_BITS equal buckets (relative error under 1/32). */
#define BENCH_HIST_SUB_BITS 5
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_BUCKETS ((64 - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_SUB)

typedef struct bench_hist {
    uint64_t count;
    uint64_t min, max;     /* exact */
    double sum;
    uint64_t b[BENCH_HIST_BUCKETS];
} bench_hist_t;

void bench_hist_init(bench_hist_t *h);
void bench_hist_record(bench_hist_t *h, uint64_t v);
void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src);
/* The value at quantile q (0..1): the upper edge of the bucket holding it,
 * never above the exact maximum. 0 for an empty histogram. */
uint64_t bench_hist_quantile(const bench_hist_t *h, double q);
size_t bench_hist_index(uint64_t v);
uint64_t bench_hist_lower(size_t idx);   /* smallest value of a bucket */
uint64_t bench_hist_upper(size_t idx);   /* largest value of a bucket */

/* ---- payload: a fixed header, then padding, all under one checksum ----
 * [0,4) checksum of [4,size) | [4,8) run id | [8,16) send time (CLOCK_MONOTONIC ns)
 * | [16,20) producer index | [20,24) sequence number | padding */
#define BENCH_HDR_SIZE 24

typedef struct bench_stamp {
    uint32_t run;
    uint32_t producer;
    uint32_t seq;
    uint64_t ts_ns;
} bench_stamp_t;

/* Fill the padding of buf[0..size) (size >= BENCH_HDR_SIZE) once; returns
 * its part of the checksum, for bench_payload_stamp. */
uint64_t bench_pad_init(char *buf, size_t size, uint64_t seed);
/* Write the header and the checksum over a buffer bench_pad_init filled. */
void bench_payload_stamp(char *buf, uint64_t pad_sum, const bench_stamp_t *st);
/* True if buf[0..len) is a whole, intact payload of `size` bytes; *st gets
 * its header. */
bool bench_payload_check(const char *buf, size_t len, size_t size, bench_stamp_t *st);

#endif
