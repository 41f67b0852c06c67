/* check_topview.c: unit tests of what `sluice top` shows, without I/O:
 * STATS bodies (made by the server's own stats.c, so the two cannot drift
 * apart) parsed into samples, malformed bodies refused, rates from counter
 * deltas, sort keys and orders, and rendered frames: rows, the bound bar,
 * compact numbers, width and height limits, no escape codes when plain;
 * and rows from several nodes (a NODE column, the server counters summed).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "topview.h"

static char body[STATS_BODY_MAX];

/* A topic's STATS body as the server writes it. */
static size_t topic_body(const char *name, uint64_t ready, uint64_t published, uint64_t acked)
{
    topic_stats_t t = {
        .name = name, .name_len = strlen(name), .ready = ready, .delayed = 2, .in_flight = 3,
        .bytes = 512, .consumers = 4, .blocked_producers = 5, .max_messages = 1000,
        .max_bytes = 1024, .overflow = OVERFLOW_BLOCK,
        .totals = { .published = published, .delivered = 7, .acked = acked, .redelivered = 8,
                    .dead = 9, .dropped = 10, .rejected = 11 },
    };
    return stats_yaml_topic(body, sizeof body, &t);
}

/* A sample with one row per name, ready = i+1, published = pub[i]. */
static void sample_of(tv_sample_t *s, double t, const char *const *names, const uint64_t *pub,
                      size_t n)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    for (size_t i = 0; i < n; i++) {
        size_t len = topic_body(names[i], i + 1, pub[i], pub[i] / 2);
        ck_assert_int_eq(tv_sample_add(s, body, len), 0);
    }
}

static const tv_topic_t *row(const tv_sample_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->topics[i].name, name) == 0)
            return &s->topics[i];
    return NULL;
}

/* ---- parsing ---- */

START_TEST(test_parse_topic_body_from_stats_c)
{
    tv_topic_t t;
    size_t len = topic_body("orders.eu", 42, 100, 60);

    ck_assert_int_eq(tv_parse_topic(body, len, &t), 0);
    ck_assert_str_eq(t.name, "orders.eu");
    ck_assert_uint_eq(t.ready, 42);
    ck_assert_uint_eq(t.delayed, 2);
    ck_assert_uint_eq(t.in_flight, 3);
    ck_assert_uint_eq(t.bytes, 512);
    ck_assert_uint_eq(t.consumers, 4);
    ck_assert_uint_eq(t.blocked, 5);
    ck_assert_uint_eq(t.max_messages, 1000);
    ck_assert_uint_eq(t.max_bytes, 1024);
    ck_assert_uint_eq(t.c.published, 100);
    ck_assert_uint_eq(t.c.acked, 60);
    ck_assert_uint_eq(t.c.delivered, 7);
    ck_assert_uint_eq(t.c.redelivered, 8);
    ck_assert_uint_eq(t.c.dead, 9);
    ck_assert_uint_eq(t.c.dropped, 10);
    ck_assert_uint_eq(t.c.rejected, 11);
    ck_assert(t.pub_rate < 0 && t.ack_rate < 0);  /* unknown until a second sample */
}
END_TEST

START_TEST(test_parse_topic_name_that_looks_like_a_number)
{
    tv_topic_t t;
    size_t len = topic_body("1", 0, 0, 0);

    ck_assert_int_eq(tv_parse_topic(body, len, &t), 0);
    ck_assert_str_eq(t.name, "1");
}
END_TEST

START_TEST(test_parse_server_body_from_stats_c)
{
    broker_stats_t b = {
        .uptime_ms = 3723000, .topics = 3, .messages = 12, .bytes = 345, .blocked_producers = 2,
        .totals = { .published = 1000, .acked = 900, .dead = 1, .rejected = 4 },
    };
    stats_extra_t x = { .connections = 7, .redis_connected = true, .redis_lag_ops = 5,
                        .max_loop_stall_ms = 43 };
    tv_server_t s;
    size_t len = stats_yaml_server(body, sizeof body, &b, &x);

    ck_assert_int_eq(tv_parse_server(body, len, &s), 0);
    ck_assert_uint_eq(s.uptime_s, 3723);
    ck_assert_uint_eq(s.connections, 7);
    ck_assert_uint_eq(s.topics, 3);
    ck_assert_uint_eq(s.messages, 12);
    ck_assert_uint_eq(s.bytes, 345);
    ck_assert_uint_eq(s.blocked, 2);
    ck_assert_uint_eq(s.max_loop_stall_ms, 43);
    ck_assert_uint_eq(s.c.published, 1000);
    ck_assert_uint_eq(s.c.acked, 900);
    ck_assert_uint_eq(s.c.rejected, 4);
    ck_assert(s.redis_connected);
    ck_assert_uint_eq(s.redis_lag_ops, 5);
    ck_assert(s.version[0] != '\0');
    x.redis_connected = false;
    len = stats_yaml_server(body, sizeof body, &b, &x);
    ck_assert_int_eq(tv_parse_server(body, len, &s), 0);
    ck_assert(!s.redis_connected);
}
END_TEST

START_TEST(test_parse_crlf_and_unknown_keys)
{
    static const char b[] =
        "topic: \"t\"\r\nready: 1\r\ndelayed: 0\r\nin_flight: 0\r\nbytes: 0\r\n"
        "consumers: 0\r\nblocked_producers: 0\r\nmax_messages: 9\r\nmax_bytes: 9\r\n"
        "overflow: reject\r\nfuture_field: whatever\r\nnested:\r\n  deep: x\r\n"
        "published: 1\r\ndelivered: 0\r\nacked: 0\r\nredelivered: 0\r\ndead: 0\r\n"
        "dropped: 0\r\nrejected: 18446744073709551615\r\ntimeouts: 0\r\nburies: 0\r\n"
        "kicks: 0\r\npauses: 0\r\n";
    tv_topic_t t;

    ck_assert_int_eq(tv_parse_topic(b, sizeof b - 1, &t), 0);
    ck_assert_str_eq(t.name, "t");
    ck_assert_uint_eq(t.c.rejected, UINT64_MAX);
}
END_TEST

/* Replace the first occurrence of `from` in body[0..len) by `to`. */
static size_t edit(size_t len, const char *from, const char *to)
{
    char *p = strstr(body, from);
    ck_assert_ptr_nonnull(p);
    size_t fl = strlen(from), tl = strlen(to);
    memmove(p + tl, p + fl, len - (size_t)(p - body) - fl + 1);
    memcpy(p, to, tl);
    return len - fl + tl;
}

START_TEST(test_parse_refuses_malformed)
{
    static const char *const bad[][2] = {
        {"ready: 42\n", ""},                             /* missing field */
        {"ready: 42", "ready: -1"},                      /* sign */
        {"ready: 42", "ready: 4x"},                      /* junk */
        {"ready: 42", "ready: "},                        /* empty */
        {"ready: 42", "ready: 18446744073709551616"},    /* overflow */
        {"topic: \"orders\"\n", ""},                     /* no name */
        {"acked: 60\n", ""},                             /* a counter missing */
    };
    tv_topic_t t;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = topic_body("orders", 42, 100, 60);
        len = edit(len, bad[i][0], bad[i][1]);
        ck_assert_msg(tv_parse_topic(body, len, &t) < 0, "accepted: %s", body);
    }
    tv_sample_t s = { 0 };
    ck_assert_int_lt(tv_sample_add(&s, "ready: 1\n", 9), 0);
    ck_assert_uint_eq(s.n, 0);  /* nothing half-added */
    tv_sample_free(&s);
    tv_server_t sv;
    ck_assert_int_lt(tv_parse_server("uptime_s: 1\n", 12, &sv), 0);
}
END_TEST

/* ---- rates ---- */

START_TEST(test_rates_from_deltas)
{
    static const char *const names0[] = {"b", "a", "gone"};
    static const char *const names1[] = {"a", "b", "new"};
    const uint64_t pub0[] = {100, 10, 5}, pub1[] = {30, 300, 7};
    tv_sample_t s0, s1;

    sample_of(&s0, 10.0, names0, pub0, 3);
    s0.srv.c.published = 1000;
    s0.srv.c.acked = 100;
    sample_of(&s1, 12.0, names1, pub1, 3);  /* two seconds later */
    s1.srv.c.published = 1500;
    s1.srv.c.acked = 200;
    tv_rates(&s1, &s0);
    ck_assert_double_eq_tol(row(&s1, "a")->pub_rate, 10.0, 1e-9);  /* 10 -> 30 */
    ck_assert_double_eq_tol(row(&s1, "a")->ack_rate, 5.0, 1e-9);   /* 5 -> 15 */
    ck_assert_double_eq_tol(row(&s1, "b")->pub_rate, 100.0, 1e-9); /* 100 -> 300 */
    ck_assert(row(&s1, "new")->pub_rate < 0);                      /* no earlier sample */
    ck_assert_double_eq_tol(s1.srv.pub_rate, 250.0, 1e-9);
    ck_assert_double_eq_tol(s1.srv.ack_rate, 50.0, 1e-9);
    tv_sample_free(&s0);
    tv_sample_free(&s1);
}
END_TEST

START_TEST(test_rates_unknown_after_restart_or_no_time)
{
    static const char *const names[] = {"a"};
    const uint64_t big[] = {500}, small[] = {3};
    tv_sample_t s0, s1;

    sample_of(&s0, 1.0, names, big, 1);
    sample_of(&s1, 2.0, names, small, 1);  /* counters went backwards */
    tv_rates(&s1, &s0);
    ck_assert(s1.topics[0].pub_rate < 0);
    tv_sample_free(&s1);
    sample_of(&s1, 1.0, names, big, 1);    /* no time passed */
    tv_rates(&s1, &s0);
    ck_assert(s1.topics[0].pub_rate < 0);
    tv_rates(&s1, NULL);                   /* no earlier sample at all */
    ck_assert(s1.topics[0].pub_rate < 0);
    tv_sample_free(&s0);
    tv_sample_free(&s1);
}
END_TEST

/* ---- sorting ---- */

static void order_is(const tv_sample_t *s, const char *want)
{
    char got[256] = "";

    for (size_t i = 0; i < s->n; i++) {
        strcat(got, s->topics[i].name);
        strcat(got, i + 1 < s->n ? " " : "");
    }
    ck_assert_str_eq(got, want);
}

START_TEST(test_sort_keys_and_reverse)
{
    static const char *const names[] = {"c", "a", "d", "b"};
    const uint64_t pub[] = {4, 8, 2, 8};
    tv_sample_t s;

    sample_of(&s, 0, names, pub, 4);  /* ready: c 1, a 2, d 3, b 4 */
    tv_sort(&s, TV_KEY_NAME, false);
    order_is(&s, "a b c d");
    tv_sort(&s, TV_KEY_NAME, true);
    order_is(&s, "d c b a");
    tv_sort(&s, TV_KEY_READY, false);
    order_is(&s, "b d a c");  /* biggest first */
    tv_sort(&s, TV_KEY_READY, true);
    order_is(&s, "c a d b");
    s.topics[0].pub_rate = 5;  /* c */
    s.topics[1].pub_rate = 9;  /* a */
    s.topics[2].pub_rate = 9;  /* d */
    tv_sort(&s, TV_KEY_PUB, false);
    order_is(&s, "a d c b");  /* ties by name; b's unknown rate last */
    tv_sample_free(&s);
}
END_TEST

START_TEST(test_key_names_and_chars)
{
    static const char *const names[] = {"name", "ready", "delayed", "inflight", "parked",
                                        "consumers", "pub", "ack", "dead", "bytes"};
    static const char chars[] = "nrdfkcpaxb";
    tv_key_t k;

    for (int i = 0; i < TV_NKEYS; i++) {
        ck_assert(tv_key_parse(names[i], &k));
        ck_assert_int_eq(k, i);
        ck_assert_str_eq(tv_key_name(k), names[i]);
        ck_assert(tv_key_of_char(chars[i], &k));
        ck_assert_int_eq(k, i);
    }
    ck_assert(!tv_key_parse("Ready", &k));
    ck_assert(!tv_key_parse("", &k));
    ck_assert(!tv_key_of_char('q', &k));
    ck_assert(!tv_key_of_char('i', &k));
}
END_TEST

/* ---- rendering ---- */

static const char *line_with(const char *frame, const char *needle, char *out, size_t cap)
{
    const char *p = strstr(frame, needle);
    ck_assert_msg(p != NULL, "no '%s' in:\n%s", needle, frame);
    while (p > frame && p[-1] != '\n')
        p--;
    const char *e = strchr(p, '\n');
    snprintf(out, cap, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
    return out;
}

START_TEST(test_render_plain_rows_and_bar)
{
    static const char *const names[] = {"orders", "audit"};
    const uint64_t pub[] = {10, 20};
    tv_sample_t s;
    tv_buf_t b = { 0 };
    tv_view_t v = { .key = TV_KEY_READY, .addr = "127.0.0.1:7700", .interval = 1 };
    char l[512];

    sample_of(&s, 0, names, pub, 2);
    s.topics[0].pub_rate = 1234.4;
    s.topics[0].ack_rate = 2.25;
    s.srv.pub_rate = 99;
    tv_sort(&s, v.key, v.reverse);
    ck_assert_int_eq(tv_render(&b, &s, &v), 0);
    ck_assert_ptr_null(strchr(b.p, '\033'));
    ck_assert_uint_eq(strlen(b.p), b.len);
    ck_assert_ptr_nonnull(strstr(b.p, "127.0.0.1:7700"));
    ck_assert_ptr_nonnull(strstr(b.p, "sort: ready"));
    ck_assert_ptr_nonnull(strstr(b.p, "pub/s 99"));
    ck_assert_ptr_nonnull(strstr(b.p, " *READY"));
    ck_assert_ptr_null(strstr(b.p, "q quit"));  /* help only when asked */
    /* audit has ready 2, orders 1: audit first */
    const char *audit = strstr(b.p, "\naudit "), *orders = strstr(b.p, "\norders ");
    ck_assert(audit != NULL && orders != NULL && audit < orders);
    /* 512 of 1024 bytes: half the bar of 10 */
    line_with(b.p, "orders ", l, sizeof l);
    ck_assert_msg(strstr(l, "[#####.....]  50%") != NULL, "%s", l);
    ck_assert_msg(strstr(l, " 1234 ") != NULL, "%s", l);
    ck_assert_msg(strstr(l, " 2.2 ") != NULL || strstr(l, " 2.3 ") != NULL, "%s", l);
    line_with(b.p, "audit ", l, sizeof l);
    ck_assert_msg(strstr(l, "      - ") != NULL, "unknown rate as '-': %s", l);
    tv_buf_free(&b);
    tv_sample_free(&s);
}
END_TEST

START_TEST(test_render_compacts_big_numbers)
{
    static const char *const names[] = {"big"};
    const uint64_t pub[] = {0};
    tv_sample_t s;
    tv_buf_t b = { 0 };
    tv_view_t v = { .interval = 1 };
    char l[512];

    sample_of(&s, 0, names, pub, 1);
    s.topics[0].ready = 123456789;  /* 9 digits in a column of 7 */
    s.topics[0].in_flight = 99999;
    s.topics[0].pub_rate = 25000000;
    s.topics[0].bytes = 5000;       /* over the bound: a full bar, not more */
    ck_assert_int_eq(tv_render(&b, &s, &v), 0);
    line_with(b.p, "big ", l, sizeof l);
    ck_assert_msg(strstr(l, " 123.5M ") != NULL, "%s", l);
    ck_assert_msg(strstr(l, " 99999 ") != NULL, "%s", l);
    ck_assert_msg(strstr(l, " 25.0M ") != NULL, "%s", l);
    ck_assert_msg(strstr(l, "[##########] 100%") != NULL, "%s", l);
    tv_buf_free(&b);
    tv_sample_free(&s);
}
END_TEST

START_TEST(test_render_fits_the_terminal)
{
    char names_buf[30][16];
    const char *names[30];
    uint64_t pub[30] = { 0 };
    tv_sample_t s;
    tv_buf_t b = { 0 };
    tv_view_t v = { .width = 70, .height = 12, .ansi = true, .help = true, .interval = 0.5 };

    for (int i = 0; i < 30; i++) {
        snprintf(names_buf[i], sizeof names_buf[i], "topic-%02d", i);
        names[i] = names_buf[i];
    }
    sample_of(&s, 0, names, pub, 30);
    strcpy(s.topics[0].name, "a-very-long-topic-name-that-cannot-fit-in-the-column-at-all");
    ck_assert_int_eq(tv_render(&b, &s, &v), 0);
    ck_assert(strncmp(b.p, "\033[H", 3) == 0);
    ck_assert(b.len > 3 && strcmp(b.p + b.len - 3, "\033[J") == 0);
    ck_assert_ptr_nonnull(strstr(b.p, "q quit"));
    ck_assert_ptr_nonnull(strstr(b.p, "every 0.5s"));
    /* 12 lines: 3 header, titles, 4 rows, "more", help 2, one left empty */
    ck_assert_ptr_nonnull(strstr(b.p, "... 26 more topics"));
    int lines = 0;
    for (const char *p = b.p; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    ck_assert_int_eq(lines, 11);
    /* no line longer than the width, escape codes aside */
    const char *p = b.p;
    while (*p) {
        int cols = 0;
        for (; *p && *p != '\n'; p++) {
            if (*p == '\033') {
                while (*p && !((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
                    p++;
                if (!*p)
                    break;
                continue;
            }
            cols++;
        }
        ck_assert_int_le(cols, 70);
        if (*p)
            p++;
    }
    ck_assert_ptr_nonnull(strstr(b.p, "\na-very-~ "));  /* cut, and saying so */
    tv_buf_free(&b);
    tv_sample_free(&s);
}
END_TEST

START_TEST(test_render_no_topics)
{
    tv_sample_t s = { 0 };
    tv_buf_t b = { 0 };
    tv_view_t v = { .interval = 1 };

    ck_assert_int_eq(tv_render(&b, &s, &v), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "TOPIC"));
    ck_assert_ptr_nonnull(strstr(b.p, "BYTES/MAX\n"));
    tv_buf_free(&b);
}
END_TEST

/* ---- several nodes ---- */

/* A topic left on a node that no longer owns it is a row of its own, with
 * its own rate; the NODE column names each row's node; the server line
 * adds the nodes up. */
START_TEST(test_nodes_rows_rates_and_sums)
{
    static const char *const names[] = {"a", "a", "b"};
    static const char *const where[] = {"10.0.0.1:7700", "10.0.0.2:7700", "10.0.0.2:7700"};
    const uint64_t pub0[] = {10, 100, 5}, pub1[] = {20, 300, 5};
    tv_sample_t s0, s1;
    tv_buf_t b = { 0 };
    tv_view_t v = { .addr = "2 nodes", .node_col = true, .interval = 1 };
    char l[512];

    sample_of(&s0, 1.0, names, pub0, 3);
    sample_of(&s1, 2.0, names, pub1, 3);
    for (size_t i = 0; i < 3; i++)
        s0.topics[i].node = s1.topics[i].node = where[i];
    tv_rates(&s1, &s0);
    ck_assert_double_eq_tol(s1.topics[0].pub_rate, 10.0, 1e-9);
    ck_assert_double_eq_tol(s1.topics[1].pub_rate, 200.0, 1e-9);
    tv_server_t one = { .uptime_s = 50, .connections = 2, .topics = 1, .redis_connected = true },
                two = { .uptime_s = 7, .connections = 3, .topics = 2, .redis_connected = false };
    one.c.published = 40;
    two.c.published = 2;
    tv_server_add(&s1.srv, &one, true);
    tv_server_add(&s1.srv, &two, false);
    ck_assert_uint_eq(s1.srv.connections, 5);
    ck_assert_uint_eq(s1.srv.topics, 3);
    ck_assert_uint_eq(s1.srv.uptime_s, 7);          /* the youngest node */
    ck_assert_uint_eq(s1.srv.c.published, 42);
    ck_assert(!s1.srv.redis_connected);             /* not on every node */
    tv_sort(&s1, TV_KEY_NAME, false);
    ck_assert_int_eq(tv_render(&b, &s1, &v), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "sluice top  2 nodes  "));
    ck_assert_ptr_nonnull(strstr(b.p, "\nTOPIC* NODE "));
    const char *a1 = strstr(b.p, "\na     10.0.0.1:7700 "), *a2 = strstr(b.p, "\na     10.0.0.2:7700 ");
    ck_assert_msg(a1 && a2 && a1 < a2, "%s", b.p);  /* by name, then node */
    line_with(b.p, "b     10.0.0.2:7700", l, sizeof l);
    ck_assert_msg(l[0] != '\0', "%s", b.p);
    /* one node: no column */
    v.node_col = false;
    ck_assert_int_eq(tv_render(&b, &s1, &v), 0);
    ck_assert_ptr_null(strstr(b.p, "NODE"));
    tv_buf_free(&b);
    tv_sample_free(&s0);
    tv_sample_free(&s1);
}
END_TEST

static Suite *topview_suite(void)
{
    Suite *s = suite_create("topview");
    TCase *t = tcase_create("topview");

    tcase_add_test(t, test_parse_topic_body_from_stats_c);
    tcase_add_test(t, test_parse_topic_name_that_looks_like_a_number);
    tcase_add_test(t, test_parse_server_body_from_stats_c);
    tcase_add_test(t, test_parse_crlf_and_unknown_keys);
    tcase_add_test(t, test_parse_refuses_malformed);
    tcase_add_test(t, test_rates_from_deltas);
    tcase_add_test(t, test_rates_unknown_after_restart_or_no_time);
    tcase_add_test(t, test_sort_keys_and_reverse);
    tcase_add_test(t, test_key_names_and_chars);
    tcase_add_test(t, test_render_plain_rows_and_bar);
    tcase_add_test(t, test_render_compacts_big_numbers);
    tcase_add_test(t, test_render_fits_the_terminal);
    tcase_add_test(t, test_render_no_topics);
    tcase_add_test(t, test_nodes_rows_rates_and_sums);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(topview_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
