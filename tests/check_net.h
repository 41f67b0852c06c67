/* check_net.h: what the end-to-end protocol tests share: starting the real
 * daemon with a config, talking to it, and reading STATS fields, each
 * helper failing the current Check test on anything unexpected.
 */
#ifndef SLUICE_CHECK_NET_H
#define SLUICE_CHECK_NET_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>

#include "harness.h"

/* Every test case gets this long: the slowest ones move some megabytes. */
#define NET_TIMEOUT_S 60

/* Start sluiced with `yaml` on an ephemeral port (the admin listener off
 * unless yaml sets it); stop it and require exit status 0. */
void net_start(sd_t *d, const char *yaml);
void net_stop(sd_t *d);

/* A connection to d; the test fails if it cannot be made. */
tc_t *net_open(const sd_t *d);

/* Send exactly these bytes / a formatted string / a C string. */
void net_send(tc_t *c, const void *data, size_t len);
void net_sendf(tc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void net_puts(tc_t *c, const char *s);

/* The next reply or push as its first line ("+OK 1", "-FULL t",
 * "MSG t 1 1 5"); "(no reply)" on EOF, timeout or garbage. */
const char *net_reply(tc_t *c);
#define NET_EXPECT(c, want) ck_assert_str_eq(net_reply(c), (want))

/* Read a reply and require a +STATS (its body is then in c->r). */
void net_expect_stats(tc_t *c);

/* The next `n` bytes exactly as they come off the wire. */
void net_expect_raw(tc_t *c, const void *want, size_t n);
#define NET_EXPECT_RAW(c, lit) net_expect_raw((c), (lit), sizeof(lit) - 1)

/* The next n raw bytes; valid until the next read on c. */
const char *net_raw(tc_t *c, size_t n);

/* One raw line, terminator included, into a static buffer. */
const char *net_raw_line(tc_t *c);

/* PUB and require "+OK <id>"; returns the id. */
uint64_t net_pub(tc_t *c, const char *topic, const char *payload, size_t len);
#define NET_PUB(c, topic, lit) net_pub((c), (topic), (lit), sizeof(lit) - 1)

/* Read the next reply, require a MSG of that topic, attempt and payload
 * (attempt 0 = any); returns its id. */
uint64_t net_expect_msg(tc_t *c, const char *topic, unsigned attempt, const void *payload,
                        size_t len);
#define NET_EXPECT_MSG(c, topic, attempt, lit) \
    net_expect_msg((c), (topic), (attempt), (lit), sizeof(lit) - 1)

/* PING and require +PONG as the very next reply: nothing was pushed
 * before it. */
void net_ping(tc_t *c);

/* A field of STATS (topic NULL: the server's). `key` is the YAML key with
 * its indentation ("ready", "  connected"). The string form is static. */
const char *net_stat_str(tc_t *c, const char *topic, const char *key);
uint64_t net_stat(tc_t *c, const char *topic, const char *key);

/* Ask STATS until the field equals want (the daemon works asynchronously,
 * e.g. on a close); fails the test after 10 s. */
void net_wait_stat(tc_t *c, const char *topic, const char *key, uint64_t want);

/* The value of `key` in a YAML body (NULL if absent), into a static buffer. */
const char *net_yaml_field(const char *body, size_t len, const char *key);

/* Suites, one per theme (check_net_*.c). */
Suite *net_basic_suite(void);
Suite *net_deliver_suite(void);
Suite *net_bounds_suite(void);
Suite *net_input_suite(void);

#endif
