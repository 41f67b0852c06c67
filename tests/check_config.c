/* check_config.c: unit tests of the YAML config loader (src/config.c):
 * defaults, the example file, units, per-topic merging, and the exact
 * FILE:LINE:COL of every kind of error; and of the client's config file
 * and node lists (src/config_client.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "place.h"

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static char err[CONFIG_ERR_MAX];

static config_t *load(const char *yaml)
{
    err[0] = '\0';
    return config_load_string("t.yaml", yaml, strlen(yaml), err, sizeof(err));
}

/* A path under the source tree (make check runs from the build tree). */
static const char *srcpath(const char *rel)
{
    static char buf[4096];
    const char *dir = getenv("SLUICE_SRCDIR");

    snprintf(buf, sizeof(buf), "%s/%s", dir != NULL && *dir ? dir : ".", rel);
    return buf;
}

/* Loading yaml must fail with a message that starts with `prefix` and is one
 * line. A macro, so a failure names the line of the case. */
#define ck_config_error(yaml, prefix)                                                      \
    do {                                                                                   \
        config_t *c_ = load(yaml);                                                         \
        ck_assert_msg(c_ == NULL, "loaded, expected error: %s", (prefix));                 \
        ck_assert_msg(strncmp(err, (prefix), strlen(prefix)) == 0,                         \
                      "\nexpected: %s\n     got: %s", (prefix), err);                      \
        ck_assert_msg(strchr(err, '\n') == NULL, "error is not one line: %s", err);        \
    } while (0)

static config_t *load_ok(const char *yaml)
{
    config_t *c = load(yaml);

    ck_assert_msg(c != NULL, "unexpected error: %s", err);
    return c;
}

/* ------------------------------------------------------------------ */

static void check_defaults(const config_t *c)
{
    ck_assert_uint_eq(c->nlisten, 1);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:7700");
    ck_assert_str_eq(c->tls.cert, "");
    ck_assert_str_eq(c->tls.key, "");
    ck_assert_str_eq(c->tls.ca, "");
    ck_assert(!c->tls.verify_clients);
    ck_assert_str_eq(c->admin.listen, "127.0.0.1:7701");
    ck_assert_str_eq(c->admin.token, "");
    ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
    ck_assert_uint_eq(c->limits.max_connections, 10000);
    ck_assert_uint_eq(c->limits.max_line, 4 * KIB);
    ck_assert_uint_eq(c->limits.max_message, MIB);
    ck_assert_uint_eq(c->limits.max_memory, GIB);
    ck_assert_uint_eq(c->limits.output_buffer, 4 * MIB);
    ck_assert_uint_eq(c->limits.max_topics, 10000);
    ck_assert(c->auto_create_topics);
    ck_assert_uint_eq(c->defaults.max_messages, 100000);
    ck_assert_uint_eq(c->defaults.max_bytes, 64 * MIB);
    ck_assert_int_eq(c->defaults.overflow, OVERFLOW_BLOCK);
    ck_assert_uint_eq(c->defaults.block_timeout_ms, 0);
    ck_assert_uint_eq(c->defaults.prefetch, 64);
    ck_assert_uint_eq(c->defaults.ack_timeout_ms, 30000);
    ck_assert_uint_eq(c->defaults.max_deliveries, 5);
    ck_assert_uint_eq(c->defaults.max_lag, 0);
    ck_assert_str_eq(c->defaults.dead_letter, "");
    ck_assert(!c->redis.enabled);
    ck_assert_str_eq(c->redis.address, "127.0.0.1:6379");
    ck_assert_str_eq(c->redis.password, "");
    ck_assert_uint_eq(c->redis.db, 0);
    ck_assert_str_eq(c->redis.prefix, "sluice");
    ck_assert_int_eq(c->redis.mirror, MIRROR_MESSAGES);
    ck_assert(!c->redis.confirm);
    ck_assert_uint_eq(c->redis.confirm_timeout_ms, 5000);
    ck_assert(c->redis.restore);
    ck_assert_uint_eq(c->redis.flush_interval_ms, 100);
    ck_assert_uint_eq(c->nusers, 0);
}

START_TEST(test_default)
{
    config_t *c = config_default();

    ck_assert_ptr_nonnull(c);
    check_defaults(c);
    ck_assert_ptr_null(c->path);
    ck_assert_uint_eq(c->ntopics, 0);
    ck_assert_ptr_eq(config_topic(c, "orders", 6), &c->defaults);
    config_free(c);
    config_free(NULL);
}
END_TEST

/* Files with nothing in them mean "all defaults". */
START_TEST(test_empty_documents)
{
    static const char *const empty[] = {
        "", "\n", "# just a comment\n", "---\n", "---\n...\n", "~\n", "{}\n",
        "tls:\nadmin:\nlimits:\ntopics:\nusers:\ndefaults:\nredis:\n",
    };

    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        config_t *c = load_ok(empty[i]);

        check_defaults(c);
        ck_assert_uint_eq(c->ntopics, 0);
        ck_assert_str_eq(c->path, "t.yaml");
        config_free(c);
    }
}
END_TEST

/* The shipped example loads, documents the defaults, and its example topic
 * is merged over them. */
START_TEST(test_example_file)
{
    const char *path = srcpath("conf/sluiced.yaml");
    config_t *c = config_load_file(path, err, sizeof(err));
    const topic_conf_t *t;

    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(c->path, path);
    check_defaults(c);
    ck_assert_uint_eq(c->ntopics, 1);
    ck_assert_str_eq(c->topics[0].name, "orders");
    t = config_topic(c, "orders", 6);
    ck_assert_ptr_eq(t, &c->topics[0].conf);
    ck_assert_uint_eq(t->max_messages, 1000000);
    ck_assert_int_eq(t->overflow, OVERFLOW_REJECT);
    ck_assert_str_eq(t->dead_letter, "orders.dead");
    ck_assert_uint_eq(t->max_bytes, 64 * MIB);
    ck_assert_uint_eq(t->prefetch, 64);
    ck_assert_uint_eq(t->ack_timeout_ms, 30000);
    ck_assert_uint_eq(t->max_deliveries, 5);
    ck_assert_ptr_eq(config_topic(c, "orders.dead", 11), &c->defaults);
    ck_assert_uint_eq(c->beanstalk.nlisten, 0);
    ck_assert_str_eq(c->beanstalk.user, "");
    config_free(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Units                                                               */

START_TEST(test_parse_size)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0}, {"1", 1}, {"0B", 0}, {"1B", 1}, {"512B", 512}, {"4KiB", 4 * KIB},
        {"64MiB", 64 * MIB}, {"1GiB", GIB}, {"16GiB", 16 * GIB}, {"007", 7},
        {"18446744073709551615", UINT64_MAX}, {"17179869183GiB", 17179869183 * GIB},
    };
    static const char *const bad[] = {
        "", " 5", "5 ", "5 MiB", "-1", "+1", "1.5MiB", "64MB", "4KB", "4k", "4K", "4kib",
        "KiB", "B", "1TiB", "0x10", "1e3", "18446744073709551616", "17179869184GiB",
        "99999999999999999999999B", "1GiBB", "1MiB ",
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = 12345;
        ck_assert_msg(config_parse_size(good[i].s, &v) == 0, "'%s' refused", good[i].s);
        ck_assert_msg(v == good[i].v, "'%s' gave %llu", good[i].s, (unsigned long long)v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 12345;
        ck_assert_msg(config_parse_size(bad[i], &v) == -1, "'%s' accepted", bad[i]);
        ck_assert_uint_eq(v, 12345);
    }
}
END_TEST

START_TEST(test_parse_duration)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0}, {"250", 250}, {"0ms", 0}, {"100ms", 100}, {"1s", 1000}, {"30s", 30000},
        {"5m", 300000}, {"1h", 3600000}, {"24h", 86400000},
        {"18446744073709551615ms", UINT64_MAX},
    };
    static const char *const bad[] = {
        "", " 5s", "5s ", "5 s", "-1", "-1s", "1.5s", "5sec", "5S", "5M", "1d", "ms", "s",
        "5us", "18446744073709551616", "5124095576030432h", "1h30m",
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = 12345;
        ck_assert_msg(config_parse_duration(good[i].s, &v) == 0, "'%s' refused", good[i].s);
        ck_assert_msg(v == good[i].v, "'%s' gave %llu", good[i].s, (unsigned long long)v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 12345;
        ck_assert_msg(config_parse_duration(bad[i], &v) == -1, "'%s' accepted", bad[i]);
        ck_assert_uint_eq(v, 12345);
    }
}
END_TEST

/* Every unit, as the loader sees it (quoted values are the same text). */
START_TEST(test_units_in_file)
{
    config_t *c = load_ok("limits:\n"
                          "  max_line: 64B\n"
                          "  max_message: \"1GiB\"\n"
                          "  max_memory: 2GiB\n"
                          "  output_buffer: 4096\n"
                          "defaults:\n"
                          "  max_bytes: 3MiB\n"
                          "  block_timeout: 1h\n"
                          "  ack_timeout: 250ms\n"
                          "topics:\n"
                          "  a: {max_bytes: 7KiB, block_timeout: 2m, ack_timeout: 9}\n"
                          "  b: {max_bytes: 1, block_timeout: 0, ack_timeout: 3s}\n"
                          "redis:\n"
                          "  confirm_timeout: 1ms\n"
                          "  flush_interval: 10ms\n");

    ck_assert_uint_eq(c->limits.max_line, 64);
    ck_assert_uint_eq(c->limits.max_message, GIB);
    ck_assert_uint_eq(c->limits.max_memory, 2 * GIB);
    ck_assert_uint_eq(c->limits.output_buffer, 4096);
    ck_assert_uint_eq(c->defaults.max_bytes, 3 * MIB);
    ck_assert_uint_eq(c->defaults.block_timeout_ms, 3600000);
    ck_assert_uint_eq(c->defaults.ack_timeout_ms, 250);
    ck_assert_uint_eq(config_topic(c, "a", 1)->max_bytes, 7 * KIB);
    ck_assert_uint_eq(config_topic(c, "a", 1)->block_timeout_ms, 120000);
    ck_assert_uint_eq(config_topic(c, "a", 1)->ack_timeout_ms, 9);
    ck_assert_uint_eq(config_topic(c, "b", 1)->max_bytes, 1);
    ck_assert_uint_eq(config_topic(c, "b", 1)->block_timeout_ms, 0);
    ck_assert_uint_eq(config_topic(c, "b", 1)->ack_timeout_ms, 3000);
    ck_assert_uint_eq(c->redis.confirm_timeout_ms, 1);
    ck_assert_uint_eq(c->redis.flush_interval_ms, 10);
    config_free(c);
}
END_TEST

/* The edges of every range are accepted. */
START_TEST(test_range_edges)
{
    config_t *c = load_ok("limits: {max_connections: 1, max_line: 1MiB, max_message: 1,\n"
                          "         max_memory: 1, output_buffer: 4KiB, max_topics: 1}\n"
                          "defaults: {max_messages: 1, max_bytes: 1, prefetch: 1000000,\n"
                          "           ack_timeout: 8760h, max_deliveries: 65535,\n"
                          "           block_timeout: 8760h}\n"
                          "redis: {db: 2147483647}\n");

    ck_assert_uint_eq(c->limits.max_line, MIB);
    ck_assert_uint_eq(c->limits.max_message, 1);
    ck_assert_uint_eq(c->limits.output_buffer, 4 * KIB);
    ck_assert_uint_eq(c->limits.max_topics, 1);
    ck_assert_uint_eq(c->defaults.prefetch, 1000000);
    ck_assert_uint_eq(c->defaults.max_deliveries, 65535);
    ck_assert_uint_eq(c->defaults.ack_timeout_ms, 8760ULL * 3600000);
    ck_assert_uint_eq(c->redis.db, 2147483647);
    config_free(c);

    c = load_ok("defaults: {prefetch: 0, max_deliveries: 0, max_lag: 256}\n"
                "limits: {max_message: 1GiB, max_line: 64}\n");
    ck_assert_uint_eq(c->defaults.max_lag, 256);
    ck_assert_uint_eq(c->defaults.prefetch, 0);
    ck_assert_uint_eq(c->defaults.max_deliveries, 0);
    ck_assert_uint_eq(c->limits.max_message, GIB);
    config_free(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Topics                                                              */

START_TEST(test_topic_merge)
{
    /* `defaults` comes after the topics: they must still inherit it. */
    config_t *c = load_ok("topics:\n"
                          "  orders:\n"
                          "    max_messages: 1000000\n"
                          "    overflow: reject\n"
                          "    dead_letter: orders.dead\n"
                          "  orders.dead:\n"
                          "  audit: {prefetch: 0, max_deliveries: 0, dead_letter: \"\"}\n"
                          "defaults:\n"
                          "  max_messages: 500\n"
                          "  max_bytes: 1MiB\n"
                          "  overflow: drop-oldest\n"
                          "  block_timeout: 5s\n"
                          "  prefetch: 8\n"
                          "  ack_timeout: 1m\n"
                          "  max_deliveries: 3\n"
                          "  dead_letter: graveyard\n");
    const topic_conf_t *o = config_topic(c, "orders", 6);
    const topic_conf_t *d = config_topic(c, "orders.dead", 11);
    const topic_conf_t *a = config_topic(c, "audit", 5);

    ck_assert_uint_eq(c->ntopics, 3);
    ck_assert_uint_eq(o->max_messages, 1000000);
    ck_assert_int_eq(o->overflow, OVERFLOW_REJECT);
    ck_assert_str_eq(o->dead_letter, "orders.dead");
    ck_assert_uint_eq(o->max_bytes, MIB);
    ck_assert_uint_eq(o->block_timeout_ms, 5000);
    ck_assert_uint_eq(o->prefetch, 8);
    ck_assert_uint_eq(o->ack_timeout_ms, 60000);
    ck_assert_uint_eq(o->max_deliveries, 3);

    /* listed with no body: all inherited, but its own entry */
    ck_assert_ptr_ne(d, &c->defaults);
    ck_assert_uint_eq(d->max_messages, 500);
    ck_assert_int_eq(d->overflow, OVERFLOW_DROP_OLDEST);
    ck_assert_str_eq(d->dead_letter, "graveyard");
    ck_assert_ptr_ne(d->dead_letter, c->defaults.dead_letter);

    /* explicit zero and "" override non-zero defaults */
    ck_assert_uint_eq(a->prefetch, 0);
    ck_assert_uint_eq(a->max_deliveries, 0);
    ck_assert_str_eq(a->dead_letter, "");
    ck_assert_uint_eq(a->max_messages, 500);

    /* unlisted: the defaults themselves */
    ck_assert_ptr_eq(config_topic(c, "other", 5), &c->defaults);
    ck_assert_uint_eq(c->defaults.max_messages, 500);
    config_free(c);
}
END_TEST

/* config_topic takes a length, not a C string; topics are kept sorted. */
START_TEST(test_topic_lookup)
{
    char yaml[64 * 1024], name[32];
    size_t off = 0;
    config_t *c;

    off += (size_t)snprintf(yaml + off, sizeof(yaml) - off, "topics:\n");
    for (int i = 299; i >= 0; i--)
        off += (size_t)snprintf(yaml + off, sizeof(yaml) - off,
                                "  t%d: {max_messages: %d}\n", i, i + 1);
    c = load_ok(yaml);
    ck_assert_uint_eq(c->ntopics, 300);
    for (size_t i = 1; i < c->ntopics; i++)
        ck_assert(strcmp(c->topics[i - 1].name, c->topics[i].name) < 0);
    for (int i = 0; i < 300; i++) {
        int n = snprintf(name, sizeof(name), "t%dXYZ", i);

        ck_assert_uint_eq(config_topic(c, name, (size_t)n - 3)->max_messages, (uint64_t)i + 1);
    }
    ck_assert_ptr_eq(config_topic(c, "t1", 1), &c->defaults);
    ck_assert_ptr_eq(config_topic(c, "t3000", 5), &c->defaults);
    ck_assert_ptr_eq(config_topic(c, "", 0), &c->defaults);
    config_free(c);
}
END_TEST

/* Anchors and aliases are plain YAML and work. */
START_TEST(test_aliases)
{
    config_t *c = load_ok("defaults: &d {max_messages: 9, overflow: reject}\n"
                          "topics:\n"
                          "  a: *d\n"
                          "  b: *d\n"
                          "listen: &l [\"127.0.0.1:0\"]\n");

    ck_assert_uint_eq(config_topic(c, "a", 1)->max_messages, 9);
    ck_assert_int_eq(config_topic(c, "b", 1)->overflow, OVERFLOW_REJECT);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:0");
    config_free(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Other sections                                                      */

START_TEST(test_listen_forms)
{
    config_t *c = load_ok("listen:\n"
                          "  - 127.0.0.1:0\n"
                          "  - 0.0.0.0:7700\n"
                          "  - localhost:65535\n"
                          "  - \"[::1]:0\"\n"
                          "  - \"[fe80::1%eth0]:7700\"\n"
                          "  - \"[::ffff:127.0.0.1]:1\"\n"
                          "  - unix:/run/sluice/sluice.sock\n"
                          "  - tls://broker.example.com:7443\n"
                          "  - tls://[::]:7443\n"
                          "tls: {cert: /etc/c.pem, key: /etc/k.pem}\n");

    ck_assert_uint_eq(c->nlisten, 9);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:0");
    ck_assert_str_eq(c->listen[3], "[::1]:0");
    ck_assert_str_eq(c->listen[6], "unix:/run/sluice/sluice.sock");
    ck_assert_str_eq(c->listen[8], "tls://[::]:7443");
    config_free(c);

    /* one address alone is a one-element list */
    c = load_ok("listen: 127.0.0.1:0\n");
    ck_assert_uint_eq(c->nlisten, 1);
    ck_assert_str_eq(c->listen[0], "127.0.0.1:0");
    config_free(c);
}
END_TEST

START_TEST(test_all_sections)
{
    config_t *c = load_ok("tls: {cert: c.pem, key: k.pem, ca: ca.pem, verify_clients: true}\n"
                          "admin: {listen: \"[::1]:0\", token: s3cret}\n"
                          "log: {level: error}\n"
                          "auto_create_topics: false\n"
                          "redis:\n"
                          "  enabled: true\n"
                          "  address: unix:/run/redis/redis.sock\n"
                          "  password: pw\n"
                          "  db: 15\n"
                          "  prefix: sl\n"
                          "  mirror: stats\n"
                          "  confirm: true\n"
                          "  confirm_timeout: 2s\n"
                          "  restore: false\n"
                          "  flush_interval: 1s\n");

    ck_assert_str_eq(c->tls.cert, "c.pem");
    ck_assert_str_eq(c->tls.key, "k.pem");
    ck_assert_str_eq(c->tls.ca, "ca.pem");
    ck_assert(c->tls.verify_clients);
    ck_assert_str_eq(c->admin.listen, "[::1]:0");
    ck_assert_str_eq(c->admin.token, "s3cret");
    ck_assert_int_eq(c->log_level, LOG_LEVEL_ERROR);
    ck_assert(!c->auto_create_topics);
    ck_assert(c->redis.enabled);
    ck_assert_str_eq(c->redis.address, "unix:/run/redis/redis.sock");
    ck_assert_str_eq(c->redis.password, "pw");
    ck_assert_uint_eq(c->redis.db, 15);
    ck_assert_str_eq(c->redis.prefix, "sl");
    ck_assert_int_eq(c->redis.mirror, MIRROR_STATS);
    ck_assert(c->redis.confirm);
    ck_assert_uint_eq(c->redis.confirm_timeout_ms, 2000);
    ck_assert(!c->redis.restore);
    ck_assert_uint_eq(c->redis.flush_interval_ms, 1000);
    config_free(c);

    /* null and "" turn strings off; levels by name */
    c = load_ok("admin: {listen: \"\", token: ~}\nlog: {level: warn}\n");
    ck_assert_str_eq(c->admin.listen, "");
    ck_assert_str_eq(c->admin.token, "");
    ck_assert_int_eq(c->log_level, LOG_LEVEL_WARN);
    config_free(c);
    c = load_ok("admin:\n  listen:\nlog: {level: debug}\nredis: {address: \"[::1]:6379\"}\n");
    ck_assert_str_eq(c->admin.listen, "");
    ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
    ck_assert_str_eq(c->redis.address, "[::1]:6379");
    config_free(c);
}
END_TEST

START_TEST(test_users)
{
    config_t *c = load_ok("users:\n"
                          "  alice:\n"
                          "    password: \"$6$salt$hash\"\n"
                          "    publish: [orders, \"events.*\"]\n"
                          "    subscribe: \"*\"\n"
                          "  bob: {password: pw}\n");
    const user_entry_t *a, *b;

    ck_assert_uint_eq(c->nusers, 2);
    a = &c->users[0];
    b = &c->users[1];
    ck_assert_str_eq(a->name, "alice");
    ck_assert_str_eq(a->password, "$6$salt$hash");
    ck_assert_uint_eq(a->npublish, 2);
    ck_assert_str_eq(a->publish[0], "orders");
    ck_assert_str_eq(a->publish[1], "events.*");
    ck_assert_uint_eq(a->nsubscribe, 1);
    ck_assert_str_eq(a->subscribe[0], "*");
    ck_assert_str_eq(b->name, "bob");
    ck_assert_str_eq(b->password, "pw");
    ck_assert_uint_eq(b->npublish, 0);
    ck_assert_uint_eq(b->nsubscribe, 0);
    config_free(c);
}
END_TEST

START_TEST(test_beanstalk)
{
    config_t *c = load_ok("");

    ck_assert_uint_eq(c->beanstalk.nlisten, 0); /* off by default */
    ck_assert_str_eq(c->beanstalk.user, "");
    config_free(c);
    c = load_ok("beanstalk: {listen: [127.0.0.1:11300, \"unix:/run/b.sock\", \"[::1]:0\"]}\n");
    ck_assert_uint_eq(c->beanstalk.nlisten, 3);
    ck_assert_str_eq(c->beanstalk.listen[0], "127.0.0.1:11300");
    ck_assert_str_eq(c->beanstalk.listen[1], "unix:/run/b.sock");
    ck_assert_str_eq(c->beanstalk.listen[2], "[::1]:0");
    config_free(c);
    c = load_ok("beanstalk:\n  listen: 127.0.0.1:11300\n  user: w\nusers: {w: {password: p}}\n");
    ck_assert_uint_eq(c->beanstalk.nlisten, 1);
    ck_assert_str_eq(c->beanstalk.user, "w");
    config_free(c);
    c = load_ok("beanstalk: {listen: []}\nusers: {w: {password: p}}\n"); /* off: no user needed */
    ck_assert_uint_eq(c->beanstalk.nlisten, 0);
    config_free(c);
    c = load_ok("beanstalk: {listen: tls://127.0.0.1:11400}\ntls: {cert: c.pem, key: k.pem}\n");
    ck_assert_str_eq(c->beanstalk.listen[0], "tls://127.0.0.1:11400");
    config_free(c);
}
END_TEST

START_TEST(test_error_beanstalk)
{
    ck_config_error("beanstalk: {listen: [nohost]}\n",
                    "t.yaml:1:22: bad listen address 'nohost'");
    ck_config_error("beanstalk: {port: 1}\n", "t.yaml:1:13: unknown key 'port' in beanstalk");
    ck_config_error("beanstalk: {listen: {a: 1}}\n",
                    "t.yaml:1:21: listen must be a list of addresses, not a mapping");
    ck_config_error("beanstalk: {listen: tls://127.0.0.1:1}\n",
                    "t.yaml:1:21: tls:// listener needs tls.cert and tls.key");
    ck_config_error("users: {w: {password: p}}\nbeanstalk: {listen: [127.0.0.1:0]}\n",
                    "t.yaml:2:12: beanstalk needs user: when users are configured");
    ck_config_error("users: {w: {password: p}}\nbeanstalk: {listen: [127.0.0.1:0], user: x}\n",
                    "t.yaml:2:42: beanstalk.user 'x' is not one of users:");
    ck_config_error("beanstalk: {listen: [127.0.0.1:0], user: x}\n",
                    "t.yaml:1:42: beanstalk.user 'x' is not one of users:");
}
END_TEST

/* redis.sentinels and what goes with them (docs/redis.md "Redis Sentinel"). */
START_TEST(test_sentinel)
{
    config_t *c = load_ok("redis:\n"
                          "  sentinels: [127.0.0.1:26379, \"[::1]:26380\", unix:/run/s.sock]\n"
                          "  master: my-master.1\n"
                          "  sentinel_password: s3\n"
                          "  confirm: true\n"
                          "  replicas: 2\n");

    ck_assert_uint_eq(c->redis.nsentinels, 3);
    ck_assert_str_eq(c->redis.sentinels[0], "127.0.0.1:26379");
    ck_assert_str_eq(c->redis.sentinels[1], "[::1]:26380");
    ck_assert_str_eq(c->redis.sentinels[2], "unix:/run/s.sock");
    ck_assert_str_eq(c->redis.master, "my-master.1");
    ck_assert_str_eq(c->redis.sentinel_password, "s3");
    ck_assert_uint_eq(c->redis.replicas, 2);
    config_free(c);
    /* one sentinel as a scalar; defaults without any */
    c = load_ok("redis: {sentinels: \"localhost:26379\", master: m}\n");
    ck_assert_uint_eq(c->redis.nsentinels, 1);
    ck_assert_str_eq(c->redis.sentinels[0], "localhost:26379");
    ck_assert_str_eq(c->redis.sentinel_password, "");
    ck_assert_uint_eq(c->redis.replicas, 0);
    config_free(c);
    c = load_ok("redis: {sentinels: [], address: \"127.0.0.1:6380\", replicas: 1000}\n");
    ck_assert_uint_eq(c->redis.nsentinels, 0);
    ck_assert_str_eq(c->redis.master, "");
    ck_assert_uint_eq(c->redis.replicas, 1000);
    config_free(c);
}
END_TEST

START_TEST(test_cluster)
{
    static const char *const nodes[] = {"10.0.0.1:7700", "10.0.0.2:7700", "[::1]:7700"};
    config_t *c = load_ok("");

    /* Off by default: no node list, every topic this broker's. */
    ck_assert_uint_eq(c->cluster.nnodes, 0);
    ck_assert_str_eq(c->cluster.self, "");
    ck_assert_ptr_null(config_owner(c, "orders", 6));
    ck_assert(!config_elsewhere(c, "orders", 6));
    config_free(c);

    c = load_ok("cluster:\n  self: 10.0.0.2:7700\n"
                "  nodes: [10.0.0.1:7700, 10.0.0.2:7700, \"[::1]:7700\"]\n");
    ck_assert_uint_eq(c->cluster.nnodes, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_str_eq(c->cluster.nodes[i], nodes[i]);
    ck_assert_str_eq(c->cluster.self, "10.0.0.2:7700");
    ck_assert_uint_eq(c->cluster.self_index, 1);
    /* The owner is place_owner over the list as written, whatever the topic. */
    for (int k = 0; k < 64; k++) {
        char t[16];
        int n = snprintf(t, sizeof t, "topic-%d", k);
        size_t o = place_owner(nodes, 3, t, (size_t)n);

        ck_assert_str_eq(config_owner(c, t, (size_t)n), nodes[o]);
        ck_assert(config_elsewhere(c, t, (size_t)n) == (o != 1));
    }
    config_free(c);

    /* One node, as a single scalar: a cluster that owns everything. */
    c = load_ok("cluster: {self: \"b.example:1\", nodes: b.example:1}\n");
    ck_assert_uint_eq(c->cluster.nnodes, 1);
    ck_assert_str_eq(config_owner(c, "x", 1), "b.example:1");
    ck_assert(!config_elsewhere(c, "x", 1));
    config_free(c);
}
END_TEST

START_TEST(test_error_sentinel)
{
    ck_config_error("redis:\n  address: 127.0.0.1:6379\n  sentinels: [127.0.0.1:26379]\n"
                    "  master: m\n",
                    "t.yaml:2:12: redis.address and redis.sentinels exclude each other");
    ck_config_error("redis:\n  sentinels: [127.0.0.1:26379]\n  master: m\n"
                    "  address: 127.0.0.1:6379\n",
                    "t.yaml:4:12: redis.address and redis.sentinels exclude each other");
    ck_config_error("redis: {sentinels: [127.0.0.1:26379]}\n",
                    "t.yaml:1:20: redis.sentinels needs redis.master");
    ck_config_error("redis: {master: m}\n", "t.yaml:1:17: redis.master needs redis.sentinels");
    ck_config_error("redis: {sentinels: [], master: m}\n",
                    "t.yaml:1:32: redis.master needs redis.sentinels");
    ck_config_error("redis: {sentinel_password: p}\n",
                    "t.yaml:1:28: redis.sentinel_password needs redis.sentinels");
    ck_config_error("redis: {sentinels: [127.0.0.1:26379, nohost], master: m}\n",
                    "t.yaml:1:38: bad sentinel address 'nohost': missing :port");
    ck_config_error("redis: {sentinels: [\"h:0\"], master: m}\n",
                    "t.yaml:1:21: bad sentinel address 'h:0': port must be 1..65535");
    ck_config_error("redis: {sentinels: {a: 1}, master: m}\n",
                    "t.yaml:1:20: sentinels must be a list of addresses, not a mapping");
    ck_config_error("redis: {sentinels: [127.0.0.1:26379], master: \"a b\"}\n",
                    "t.yaml:1:47: bad master name 'a b' for master (1..255 bytes");
    ck_config_error("redis: {sentinels: [127.0.0.1:26379], master: \"\"}\n",
                    "t.yaml:1:47: bad master name '' for master");
    ck_config_error("redis: {replicas: 1001}\n",
                    "t.yaml:1:19: number '1001' is out of range for replicas (0..1000)");
    ck_config_error("redis: {replicas: -1}\n", "t.yaml:1:19: bad number '-1' for replicas");
}
END_TEST

START_TEST(test_error_cluster)
{
    ck_config_error("cluster: {self: a:1}\n", "t.yaml:1:10: cluster needs nodes:");
    ck_config_error("cluster: {nodes: [a:1]}\n", "t.yaml:1:10: cluster needs self:");
    ck_config_error("cluster:\n", "t.yaml:1:9: cluster needs nodes:");
    ck_config_error("cluster: {self: a:1, nodes: []}\n",
                    "t.yaml:1:29: cluster.nodes needs at least one address");
    ck_config_error("cluster:\n  self: a:1\n  nodes: [a:1, \"unix:/x\"]\n",
                    "t.yaml:3:16: bad node address 'unix:/x': unix sockets "
                    "are not allowed here (use host:port or [v6]:port)");
    ck_config_error("cluster:\n  self: a:1\n  nodes: [a:1, \"tls://b:2\"]\n",
                    "t.yaml:3:16: bad node address 'tls://b:2': tls:// is not "
                    "allowed here");
    ck_config_error("cluster:\n  self: a:1\n  nodes: [a:1, b]\n",
                    "t.yaml:3:16: bad node address 'b': missing :port");
    ck_config_error("cluster:\n  self: a:1\n  nodes: [a:1, b:0]\n",
                    "t.yaml:3:16: bad node address 'b:0': port must be");
    ck_config_error("cluster:\n  self: a:1\n  nodes: [a:1, b:2, a:1]\n",
                    "t.yaml:3:21: node 'a:1' is listed twice in cluster.nodes");
    ck_config_error("cluster:\n  self: c:3\n  nodes: [a:1, b:2]\n",
                    "t.yaml:2:9: cluster.self 'c:3' is not one of cluster.nodes");
    /* Names are compared as written: they are what is hashed. */
    ck_config_error("cluster:\n  self: localhost:1\n  nodes: [127.0.0.1:1]\n",
                    "t.yaml:2:9: cluster.self 'localhost:1' is not one of cluster.nodes");
    ck_config_error("cluster: {self: \"\", nodes: [a:1]}\n",
                    "t.yaml:1:17: self must not be empty");
    ck_config_error("cluster: {self: a:1, nodes: [a:1], weight: 2}\n",
                    "t.yaml:1:36: unknown key 'weight' in cluster");
    ck_config_error("cluster: {self: a:1, nodes: {a: 1}}\n",
                    "t.yaml:1:29: nodes must be a list of addresses, not a mapping");
    ck_config_error("cluster: [a:1]\n", "t.yaml:1:10: cluster must be a mapping");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors: exact place and wording                                     */

START_TEST(test_error_keys)
{
    ck_config_error("log:\n  level: info\nlsiten: [127.0.0.1:0]\n",
                    "t.yaml:3:1: unknown key 'lsiten' in the top level (did you mean 'listen'?)");
    ck_config_error("defaults:\n  max_mesages: 5\n",
                    "t.yaml:2:3: unknown key 'max_mesages' in defaults");
    ck_config_error("topics:\n  jobs:\n    prefetch: 1\n    colour: red\n",
                    "t.yaml:4:5: unknown key 'colour' in topics.jobs");
    ck_config_error("users:\n  bob: {password: x, admin: true}\n",
                    "t.yaml:2:22: unknown key 'admin' in users.bob");
    ck_config_error("redis: {enabled: false, xyzzy: 1}\n",
                    "t.yaml:1:25: unknown key 'xyzzy' in redis");
    ck_config_error("limits:\n  max_line: 4KiB\n  max_line: 8KiB\n",
                    "t.yaml:3:3: duplicate key 'max_line' in limits");
    ck_config_error("log: {level: info}\nlog: {level: warn}\n",
                    "t.yaml:2:1: duplicate key 'log' in the top level");
    ck_config_error("topics:\n  a: {}\n  b: {}\n  a: {}\n  b: {}\n",
                    "t.yaml:4:3: duplicate key 'a' in topics");
    ck_config_error("users:\n  bob: {password: x}\n  bob: {password: y}\n",
                    "t.yaml:3:3: duplicate key 'bob' in users");
    ck_config_error("[a]: 1\n", "t.yaml:1:1: keys in the top level must be strings, not a list");
}
END_TEST

START_TEST(test_error_kinds)
{
    ck_config_error("- a\n- b\n", "t.yaml:1:1: the top level must be a mapping, not a list");
    ck_config_error("hello\n", "t.yaml:1:1: the top level must be a mapping, not a scalar");
    ck_config_error("limits:\n  - max_line: 4KiB\n",
                    "t.yaml:2:3: limits must be a mapping, not a list");
    ck_config_error("tls: on\n", "t.yaml:1:6: tls must be a mapping, not a scalar");
    ck_config_error("limits:\n  max_line: [1, 2]\n",
                    "t.yaml:2:13: max_line must be a size, not a list");
    ck_config_error("log:\n  level:\n    x: 1\n",
                    "t.yaml:3:5: level must be error, warn, info or debug, not a mapping");
    ck_config_error("topics:\n  - a\n", "t.yaml:2:3: topics must be a mapping, not a list");
    ck_config_error("topics:\n  a: [1]\n", "t.yaml:2:6: topics.a must be a mapping, not a list");
    ck_config_error("users: [bob]\n", "t.yaml:1:8: users must be a mapping, not a list");
    ck_config_error("listen: {a: 1}\n",
                    "t.yaml:1:9: listen must be a list of addresses, not a mapping");
    ck_config_error("listen: [[127.0.0.1:0]]\n",
                    "t.yaml:1:10: listen must be addresses, not a list");
    ck_config_error("admin: {token: [a]}\n", "t.yaml:1:16: token must be a string, not a list");
    ck_config_error("limits: {max_line: }\n",
                    "t.yaml:1:20: missing value for max_line (expected a size)");
    ck_config_error("users:\n  bob:\n    password: x\n    publish: {a: 1}\n",
                    "t.yaml:4:14: publish must be a list of topic globs, not a mapping");
}
END_TEST

START_TEST(test_error_values)
{
    ck_config_error("defaults:\n  max_bytes: 64MB\n",
                    "t.yaml:2:14: bad size '64MB' for max_bytes (use B, KiB, MiB or GiB)");
    ck_config_error("limits: {max_memory: 1.5GiB}\n",
                    "t.yaml:1:22: bad size '1.5GiB' for max_memory (use B, KiB, MiB or GiB)");
    ck_config_error("defaults:\n  ack_timeout: 5sec\n",
                    "t.yaml:2:16: bad duration '5sec' for ack_timeout (use ms, s, m or h)");
    ck_config_error("limits: {max_connections: 10k}\n",
                    "t.yaml:1:27: bad number '10k' for max_connections (use a plain integer)");
    ck_config_error("redis: {db: -1}\n",
                    "t.yaml:1:13: bad number '-1' for db (use a plain integer)");
    ck_config_error("auto_create_topics: yes\n",
                    "t.yaml:1:21: bad boolean 'yes' for auto_create_topics (use true or false)");
    ck_config_error("defaults:\n  overflow: drop_oldest\n",
                    "t.yaml:2:13: bad overflow policy 'drop_oldest' for overflow "
                    "(use block, reject or drop-oldest)");
    ck_config_error("log: {level: verbose}\n",
                    "t.yaml:1:14: bad log level 'verbose' for level "
                    "(use error, warn, info or debug)");
    ck_config_error("redis: {mirror: all}\n",
                    "t.yaml:1:17: bad mirror mode 'all' for mirror (use stats or messages)");
    ck_config_error("redis: {prefix: \"\"}\n", "t.yaml:1:17: prefix must not be empty");
    ck_config_error("admin: {token: \"a\\0b\"}\n",
                    "t.yaml:1:16: token must not contain a NUL byte");
    /* control characters in a value are escaped: the message stays one line */
    ck_config_error("log: {level: \"in\\nfo\"}\n",
                    "t.yaml:1:14: bad log level 'in\\x0afo' for level");
}
END_TEST

START_TEST(test_error_ranges)
{
    ck_config_error("limits:\n  max_line: 32\n",
                    "t.yaml:2:13: size '32' is out of range for max_line (64B..1MiB)");
    ck_config_error("limits: {max_line: 1025KiB}\n",
                    "t.yaml:1:20: size '1025KiB' is out of range for max_line (64B..1MiB)");
    ck_config_error("limits: {max_message: 2GiB}\n",
                    "t.yaml:1:23: size '2GiB' is out of range for max_message (1B..1GiB)");
    ck_config_error("limits: {max_message: 0}\n",
                    "t.yaml:1:23: size '0' is out of range for max_message (1B..1GiB)");
    ck_config_error("limits: {output_buffer: 4095}\n",
                    "t.yaml:1:25: size '4095' is out of range for output_buffer (at least 4KiB)");
    ck_config_error("limits: {max_connections: 0}\n",
                    "t.yaml:1:27: number '0' is out of range for max_connections (at least 1)");
    ck_config_error("limits: {max_topics: 0}\n",
                    "t.yaml:1:22: number '0' is out of range for max_topics (at least 1)");
    ck_config_error("limits: {max_memory: 18446744073709551616}\n",
                    "t.yaml:1:22: size '18446744073709551616' is too large for max_memory");
    ck_config_error("limits: {max_memory: 17179869184GiB}\n",
                    "t.yaml:1:22: size '17179869184GiB' is too large for max_memory");
    ck_config_error("defaults: {max_messages: 0}\n",
                    "t.yaml:1:26: number '0' is out of range for max_messages (at least 1)");
    ck_config_error("defaults: {prefetch: 1000001}\n",
                    "t.yaml:1:22: number '1000001' is out of range for prefetch (0..1000000)");
    ck_config_error("defaults: {max_deliveries: 65536}\n",
                    "t.yaml:1:28: number '65536' is out of range for max_deliveries (0..65535)");
    ck_config_error("topics:\n  a: {ack_timeout: 0}\n",
                    "t.yaml:2:20: duration '0' is out of range for ack_timeout (1ms..8760h)");
    ck_config_error("defaults: {block_timeout: 8761h}\n",
                    "t.yaml:1:27: duration '8761h' is out of range for block_timeout (0..8760h)");
    ck_config_error("redis:\n  flush_interval: 5ms\n",
                    "t.yaml:2:19: duration '5ms' is out of range for flush_interval "
                    "(10ms..8760h)");
    ck_config_error("redis: {db: 2147483648}\n",
                    "t.yaml:1:13: number '2147483648' is out of range for db (0..2147483647)");
}
END_TEST

START_TEST(test_error_addresses)
{
    static const char forms[] = "(use host:port, [v6]:port, unix:/path or tls://host:port)";
    char want[256];

    snprintf(want, sizeof(want), "t.yaml:3:5: bad listen address '127.0.0.1:65536': "
             "port must be 0..65535 %s", forms);
    ck_config_error("listen:\n  - 127.0.0.1:7700\n  - 127.0.0.1:65536\n", want);
    ck_config_error("listen: localhost\n",
                    "t.yaml:1:9: bad listen address 'localhost': missing :port");
    ck_config_error("listen: \":7700\"\n", "t.yaml:1:9: bad listen address ':7700': missing host");
    ck_config_error("listen: [\"h:\"]\n",
                    "t.yaml:1:10: bad listen address 'h:': port must be a number");
    ck_config_error("listen: [\"h:12a\"]\n",
                    "t.yaml:1:10: bad listen address 'h:12a': port must be a number");
    ck_config_error("listen: \"::1:7700\"\n",
                    "t.yaml:1:9: bad listen address '::1:7700': IPv6 addresses need brackets");
    ck_config_error("listen: \"[::1]7700\"\n",
                    "t.yaml:1:9: bad listen address '[::1]7700': missing :port");
    ck_config_error("listen: \"[zz::1]:1\"\n",
                    "t.yaml:1:9: bad listen address '[zz::1]:1': bad character in [v6] address");
    ck_config_error("listen: \"ho st:1\"\n",
                    "t.yaml:1:9: bad listen address 'ho st:1': bad character in host");
    ck_config_error("listen: unix:run/s.sock\n",
                    "t.yaml:1:9: bad listen address 'unix:run/s.sock': "
                    "unix socket path must be absolute");
    ck_config_error("listen: [\"\"]\n", "t.yaml:1:10: bad listen address '': empty");
    ck_config_error("listen: []\n", "t.yaml:1:9: listen needs at least one address");
    ck_config_error("listen:\n", "t.yaml:1:8: listen needs at least one address");
    ck_config_error("listen: tls://127.0.0.1:0\n",
                    "t.yaml:1:9: tls:// listener needs tls.cert and tls.key");
    ck_config_error("listen: tls://127.0.0.1:0\ntls: {cert: c.pem}\n",
                    "t.yaml:1:9: tls:// listener needs tls.cert and tls.key");
    ck_config_error("tls:\n  verify_clients: true\n",
                    "t.yaml:2:19: tls.verify_clients needs tls.ca");
    ck_config_error("admin: {listen: \"unix:/x\"}\n",
                    "t.yaml:1:17: bad address 'unix:/x' for listen: "
                    "unix sockets are not allowed here");
    ck_config_error("admin: {listen: \"tls://h:1\"}\n",
                    "t.yaml:1:17: bad address 'tls://h:1' for listen: tls:// is not allowed here");
    ck_config_error("redis: {address: localhost}\n",
                    "t.yaml:1:18: bad address 'localhost' for address: missing :port");
    ck_config_error("redis: {address: \"h:0\"}\n",
                    "t.yaml:1:18: bad address 'h:0' for address: port must be 1..65535");
    ck_config_error("redis: {address: \"\"}\n", "t.yaml:1:18: bad address '' for address: empty");
    /* A null address is empty too (the fuzzer found it read past "" here). */
    ck_config_error("redis: {address: null}\n", "t.yaml:1:18: bad address '' for address: empty");
}
END_TEST

/* A unix socket path has room for 107 bytes. */
START_TEST(test_error_unix_path)
{
    char yaml[256], path[120];
    config_t *c;

    memset(path, 'a', sizeof(path));
    path[0] = '/';
    snprintf(yaml, sizeof(yaml), "listen: unix:%.107s\n", path);
    c = load_ok(yaml);
    config_free(c);
    snprintf(yaml, sizeof(yaml), "listen: unix:%.108s\n", path);
    c = load(yaml);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "t.yaml:1:9: bad listen address 'unix:/aaa") == err, "%s", err);
    ck_assert_msg(strstr(err, "...': unix socket path is longer than 107 bytes") != NULL, "%s",
                  err);
}
END_TEST

START_TEST(test_error_names)
{
    ck_config_error("topics:\n  \"bad topic\": {}\n",
                    "t.yaml:2:3: bad name 'bad topic' in topics "
                    "(1..255 bytes of A-Z a-z 0-9 . _ : -)");
    ck_config_error("topics:\n  ok: {}\n  \"\": {}\n", "t.yaml:3:3: bad name '' in topics");
    ck_config_error("topics:\n  a/b:\n", "t.yaml:2:3: bad name 'a/b' in topics");
    ck_config_error("topics:\n  q:\n    dead_letter: \"q q\"\n",
                    "t.yaml:3:18: bad topic name 'q q' for dead_letter");
    ck_config_error("topics:\n  q:\n    prefetch: 1\n    dead_letter: q\n",
                    "t.yaml:4:18: topic 'q' cannot be its own dead_letter");
    ck_config_error("topics:\n  dlq:\n    prefetch: 1\ndefaults:\n  dead_letter: dlq\n",
                    "t.yaml:2:3: topic 'dlq' cannot be its own dead_letter "
                    "(inherited from defaults");
    ck_config_error("users:\n  \"b b\": {password: x}\n", "t.yaml:2:3: bad name 'b b' in users");
    ck_config_error("users:\n  bob:\n    publish: [a]\n", "t.yaml:2:3: user 'bob' has no password");
    ck_config_error("users:\n  bob:\n", "t.yaml:2:3: user 'bob' has no password");
    ck_config_error("users:\n  bob: {password: \"\"}\n",
                    "t.yaml:2:19: password must be non-empty, "
                    "without blanks or control characters");
    ck_config_error("users:\n  bob: {password: \"a b\"}\n",
                    "t.yaml:2:19: password must be non-empty");
    ck_config_error("users:\n  bob:\n    password: x\n    subscribe: [ok, \"a b\"]\n",
                    "t.yaml:4:21: bad topic glob 'a b'");
}
END_TEST

/* A long value: the message keeps a short, escaped prefix of it. */
START_TEST(test_error_long_value)
{
    char yaml[1024];
    config_t *c;

    memset(yaml, 0, sizeof(yaml));
    strcpy(yaml, "log: {level: \"");
    memset(yaml + strlen(yaml), 'x', 600);
    strcat(yaml, "\\t\"}\n");
    c = load(yaml);
    ck_assert_ptr_null(c);
    ck_assert_msg(strncmp(err, "t.yaml:1:14: bad log level 'xxxx", 32) == 0, "%s", err);
    ck_assert_msg(strstr(err, "x...' for level") != NULL, "%s", err);
    ck_assert(strlen(err) < 200);
}
END_TEST

START_TEST(test_error_yaml)
{
    ck_config_error("log:\n  level: [info\n",
                    "t.yaml:3:1: did not find expected ',' or ']' "
                    "(while parsing a flow sequence at 2:10)");
    ck_config_error("log:\n\tlevel: info\n",
                    "t.yaml:2:1: found character that cannot start any token");
    ck_config_error("log: {level: \"info}\n",
                    "t.yaml:2:1: found unexpected end of stream "
                    "(while scanning a quoted scalar at 1:14)");
    ck_config_error("log: *nope\n", "t.yaml:1:6: found undefined alias");
    ck_config_error("log:\n  level: info\n level: warn\n",
                    "t.yaml:3:2: did not find expected key");
    ck_config_error("log: {level: info}\n---\nlog: {level: warn}\n",
                    "t.yaml:2:1: a second YAML document starts here (a config file holds one)");
    ck_config_error("log: {level: info}\n...\nlog: {level: warn}\n",
                    "t.yaml:3:1: did not find expected <document start>");
    ck_config_error("log: {level: info}\n---\n", "t.yaml:2:1: a second YAML document");
    ck_config_error("log: {level: info}\n---\n[\n",
                    "t.yaml:4:1: did not find expected node content");
    /* invalid UTF-8: libyaml gives an offset, placed here by counting lines */
    ck_config_error("log:\n  level: \"i\xff\"\n", "t.yaml:2:12: invalid leading UTF-8 octet (#FF)");
    /* a self-referencing alias ends in a kind error, not a loop */
    ck_config_error("listen: &a [*a]\n", "t.yaml:1:9: listen must be addresses, not a list");
    ck_config_error("topics: &t {x: *t}\n", "t.yaml:1:13: unknown key 'x' in topics.x");
}
END_TEST

START_TEST(test_error_buffer)
{
    static const char bad[] = "limits: {max_line: 1}\n";
    char small[16];
    config_t *c;

    memset(small, '#', sizeof(small));
    c = config_load_string("t.yaml", bad, strlen(bad), small, 10);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(small, "t.yaml:1:");
    ck_assert_int_eq(small[10], '#');
    c = config_load_string("t.yaml", bad, strlen(bad), NULL, 0);
    ck_assert_ptr_null(c);
    /* not NUL-terminated: only len bytes count */
    c = config_load_string("t.yaml", "log: {level: warn}####", 18, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_int_eq(c->log_level, LOG_LEVEL_WARN);
    config_free(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Real files                                                          */

START_TEST(test_files)
{
    char path[4096], want[4200];
    config_t *c;

    snprintf(path, sizeof(path), "%s", srcpath("tests/configs/good.yaml"));
    c = config_load_file(path, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(c->path, path);
    ck_assert_uint_eq(c->nlisten, 3);
    ck_assert_str_eq(c->listen[2], "unix:/tmp/sluice-test.sock");
    ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
    ck_assert_uint_eq(c->limits.max_line, 8 * KIB);
    ck_assert_uint_eq(c->limits.max_topics, 50);
    ck_assert(!c->auto_create_topics);
    ck_assert_uint_eq(c->ntopics, 2);
    ck_assert_uint_eq(config_topic(c, "jobs", 4)->max_messages, 10);
    ck_assert_int_eq(config_topic(c, "jobs", 4)->overflow, OVERFLOW_DROP_OLDEST);
    ck_assert_uint_eq(config_topic(c, "jobs", 4)->ack_timeout_ms, 120000);
    ck_assert_uint_eq(config_topic(c, "jobs", 4)->prefetch, 0);
    ck_assert_str_eq(config_topic(c, "jobs", 4)->dead_letter, "jobs.dlq");
    ck_assert_uint_eq(config_topic(c, "jobs.dlq", 8)->max_deliveries, 0);
    ck_assert_str_eq(config_topic(c, "jobs.dlq", 8)->dead_letter, "");
    ck_assert(c->redis.enabled);
    ck_assert_uint_eq(c->redis.db, 3);
    ck_assert_int_eq(c->redis.mirror, MIRROR_STATS);
    ck_assert_uint_eq(c->nusers, 1);
    ck_assert_uint_eq(c->users[0].npublish, 2);
    ck_assert_str_eq(c->users[0].subscribe[0], "*");
    config_free(c);

    snprintf(path, sizeof(path), "%s", srcpath("tests/configs/empty.yaml"));
    c = config_load_file(path, err, sizeof(err));
    ck_assert_msg(c != NULL, "%s", err);
    check_defaults(c);
    config_free(c);

    snprintf(path, sizeof(path), "%s", srcpath("tests/configs/bad-key.yaml"));
    snprintf(want, sizeof(want), "%s:6:5: unknown key 'max_mesages' in topics.jobs", path);
    ck_assert_ptr_null(config_load_file(path, err, sizeof(err)));
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);

    snprintf(path, sizeof(path), "%s", srcpath("tests/configs/bad-syntax.yaml"));
    snprintf(want, sizeof(want), "%s:3:4: did not find expected ',' or ']'", path);
    ck_assert_ptr_null(config_load_file(path, err, sizeof(err)));
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);

    snprintf(path, sizeof(path), "%s", srcpath("tests/configs/two-docs.yaml"));
    snprintf(want, sizeof(want), "%s:4:1: a second YAML document", path);
    ck_assert_ptr_null(config_load_file(path, err, sizeof(err)));
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);

    snprintf(path, sizeof(path), "%s", srcpath("tests/configs/no-such-file.yaml"));
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    ck_assert_ptr_null(config_load_file(path, err, sizeof(err)));
    ck_assert_str_eq(err, want);

    snprintf(path, sizeof(path), "%s", srcpath("tests/configs"));
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", path);
    ck_assert_ptr_null(config_load_file(path, err, sizeof(err)));
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_str_eq(config_overflow_name(OVERFLOW_BLOCK), "block");
    ck_assert_str_eq(config_overflow_name(OVERFLOW_REJECT), "reject");
    ck_assert_str_eq(config_overflow_name(OVERFLOW_DROP_OLDEST), "drop-oldest");
    ck_assert_str_eq(config_overflow_name((overflow_policy_t)99), "unknown");
    ck_assert_str_eq(config_log_level_name(LOG_LEVEL_ERROR), "error");
    ck_assert_str_eq(config_log_level_name(LOG_LEVEL_WARN), "warn");
    ck_assert_str_eq(config_log_level_name(LOG_LEVEL_INFO), "info");
    ck_assert_str_eq(config_log_level_name(LOG_LEVEL_DEBUG), "debug");
    ck_assert_str_eq(config_log_level_name((log_level_t)-1), "unknown");
}
END_TEST

/* ------------------------------------------------------------------ */
/* The client's config file and node lists (config_client.c)           */

static client_conf_t cc;

static int load_client(const char *yaml)
{
    err[0] = '\0';
    config_client_free(&cc);
    return config_client_load_string("c.yaml", yaml, strlen(yaml), &cc, err, sizeof(err));
}

#define ck_client_error(yaml, want)                                                        \
    do {                                                                                   \
        ck_assert_msg(load_client(yaml) < 0, "loaded, expected error: %s", (want));        \
        ck_assert_msg(strcmp(err, (want)) == 0, "\nexpected: %s\n     got: %s", (want), err); \
    } while (0)

START_TEST(test_client_file)
{
    ck_assert_msg(load_client("nodes: [10.0.0.1:7700, \"10.0.0.2:7700\", host.example:7700]\n")
                      == 0, "%s", err);
    ck_assert_uint_eq(cc.nnodes, 3);
    ck_assert_str_eq(cc.nodes[0], "10.0.0.1:7700");
    ck_assert_str_eq(cc.nodes[1], "10.0.0.2:7700");
    ck_assert_str_eq(cc.nodes[2], "host.example:7700");
    ck_assert_int_eq(load_client("# one node\nnodes:\n  - \"[::1]:7700\"\n"), 0);
    ck_assert_uint_eq(cc.nnodes, 1);
    ck_assert_str_eq(cc.nodes[0], "[::1]:7700");
    ck_assert_int_eq(load_client("nodes: b.example:7700\n"), 0);  /* a scalar: one */
    ck_assert_str_eq(cc.nodes[0], "b.example:7700");
    /* a node is reached over TCP, and its name is what is hashed */
    ck_client_error("nodes: [unix:/run/sluice.sock]\n",
                    "c.yaml:1:9: bad node address 'unix:/run/sluice.sock': unix sockets are not "
                    "allowed here (use host:port or [v6]:port, as the daemons' cluster.nodes "
                    "spell it)");
    config_client_free(&cc);
    config_client_free(&cc);  /* twice is fine */
}
END_TEST

START_TEST(test_client_file_errors)
{
    ck_client_error("", "c.yaml:1:1: no nodes: (a client config file is `nodes: [host:port, ...]`)");
    ck_client_error("# nothing\n",
                    "c.yaml:1:1: no nodes: (a client config file is `nodes: [host:port, ...]`)");
    ck_client_error("[a, b]\n", "c.yaml:1:1: the top level must be a mapping, not a list");
    ck_client_error("nodes: [a:1]\nnode: [b:2]\n",
                    "c.yaml:2:1: unknown key 'node' in a client config file (did you mean "
                    "'nodes'?)");
    ck_client_error("nodes: [a:1]\nnodes: [b:2]\n",
                    "c.yaml:2:1: duplicate key 'nodes' in a client config file");
    ck_client_error("nodes: []\n", "c.yaml:1:8: nodes needs at least one address");
    ck_client_error("nodes:\n", "c.yaml:1:7: nodes needs at least one address");
    ck_client_error("nodes: {a: 1}\n", "c.yaml:1:8: nodes must be a list of addresses, not a "
                                        "mapping");
    ck_client_error("nodes:\n  - 10.0.0.1:7700\n  - [x]\n",
                    "c.yaml:3:5: nodes must be addresses, not a list");
    ck_client_error("nodes:\n  - 10.0.0.1:7700\n  - 10.0.0.2:99999\n",
                    "c.yaml:3:5: bad node address '10.0.0.2:99999': port must be 1..65535 (use "
                    "host:port or [v6]:port, as the daemons' cluster.nodes spell it)");
    ck_client_error("nodes: [\"a:1,b:2\"]\n",
                    "c.yaml:1:9: bad node address 'a:1,b:2': blanks, commas, quotes, backslashes "
                    "and control characters are not allowed (use host:port or [v6]:port, as "
                    "the daemons' cluster.nodes spell it)");
    ck_client_error("nodes: [a:1, b:2, a:1]\n", "c.yaml:1:19: node 'a:1' is listed twice");
    ck_client_error("nodes: [a:1\n", "c.yaml:2:1: did not find expected ',' or ']' (while "
                                     "parsing a flow sequence at 1:8)");
    ck_client_error("nodes: [a:1]\n---\nnodes: [b:2]\n",
                    "c.yaml:2:1: a second YAML document starts here (a config file holds one)");
    ck_assert_int_eq(config_client_load_file("/nonexistent/c.yaml", &cc, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "/nonexistent/c.yaml: cannot open: No such file or directory");
}
END_TEST

static int parse_nodes(const char *list)
{
    err[0] = '\0';
    config_client_free(&cc);
    return config_nodes_parse(list, "--nodes", &cc, err, sizeof(err));
}

START_TEST(test_node_lists)
{
    ck_assert_int_eq(parse_nodes("10.0.0.1:7700"), 0);
    ck_assert_uint_eq(cc.nnodes, 1);
    ck_assert_int_eq(parse_nodes("10.0.0.1:7700,10.0.0.2:7700, [::1]:7700 ,\tb:1"), 0);
    ck_assert_uint_eq(cc.nnodes, 4);
    ck_assert_str_eq(cc.nodes[1], "10.0.0.2:7700");
    ck_assert_str_eq(cc.nodes[2], "[::1]:7700");  /* blanks around an entry are dropped */
    ck_assert_str_eq(cc.nodes[3], "b:1");
    ck_assert_int_eq(parse_nodes(""), -1);
    ck_assert_str_eq(err, "--nodes: bad node address '': no node given");
    ck_assert_int_eq(parse_nodes("a:1,,b:2"), -1);
    ck_assert_str_eq(err, "--nodes: bad node address '': an empty entry (two commas in a row?)");
    ck_assert_int_eq(parse_nodes("a:1,"), -1);
    ck_assert_str_eq(err, "--nodes: bad node address '': an empty entry (two commas in a row?)");
    ck_assert_int_eq(parse_nodes("a:1,b:0"), -1);
    ck_assert_str_eq(err, "--nodes: bad node address 'b:0': port must be 1..65535");
    ck_assert_int_eq(parse_nodes("a:1,a b:2"), -1);
    ck_assert_str_eq(err, "--nodes: bad node address 'a b:2': blanks, commas, quotes, backslashes "
                          "and control characters are not allowed");
    ck_assert_int_eq(parse_nodes("a:1,b:2,a:1"), -1);
    ck_assert_str_eq(err, "--nodes: node 'a:1' is listed twice");
    ck_assert_ptr_null(config_node_check("h:1", 3));
    ck_assert_ptr_nonnull(config_node_check("h:1", 0));
    config_client_free(&cc);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    TCase *te = tcase_create("errors");

    tcase_add_test(tc, test_default);
    tcase_add_test(tc, test_empty_documents);
    tcase_add_test(tc, test_example_file);
    tcase_add_test(tc, test_parse_size);
    tcase_add_test(tc, test_parse_duration);
    tcase_add_test(tc, test_units_in_file);
    tcase_add_test(tc, test_range_edges);
    tcase_add_test(tc, test_topic_merge);
    tcase_add_test(tc, test_topic_lookup);
    tcase_add_test(tc, test_aliases);
    tcase_add_test(tc, test_listen_forms);
    tcase_add_test(tc, test_all_sections);
    tcase_add_test(tc, test_users);
    tcase_add_test(tc, test_files);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_beanstalk);
    tcase_add_test(tc, test_cluster);
    tcase_add_test(tc, test_sentinel);
    suite_add_tcase(s, tc);

    tcase_add_test(te, test_error_keys);
    tcase_add_test(te, test_error_kinds);
    tcase_add_test(te, test_error_values);
    tcase_add_test(te, test_error_ranges);
    tcase_add_test(te, test_error_addresses);
    tcase_add_test(te, test_error_unix_path);
    tcase_add_test(te, test_error_names);
    tcase_add_test(te, test_error_long_value);
    tcase_add_test(te, test_error_yaml);
    tcase_add_test(te, test_error_buffer);
    tcase_add_test(te, test_error_beanstalk);
    tcase_add_test(te, test_error_cluster);
    tcase_add_test(te, test_error_sentinel);
    suite_add_tcase(s, te);

    TCase *tcl = tcase_create("client");
    tcase_add_test(tcl, test_client_file);
    tcase_add_test(tcl, test_client_file_errors);
    tcase_add_test(tcl, test_node_lists);
    suite_add_tcase(s, tcl);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
