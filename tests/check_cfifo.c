/* check_cfifo.c: unit tests of the confirm-mode reply FIFO: outcomes in
 * any order still release replies in command order, the replies held
 * behind each PUB come out with it, and the bound holds.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfifo.h"

static cfifo_t f;
static struct evbuffer *out;

static void setup(void)
{
    memset(&f, 0, sizeof f);
    out = evbuffer_new();
}

static void teardown(void)
{
    cfifo_free(&f);
    evbuffer_free(out);
}

/* What a connection does: replies to cfifo_replies, settled heads to out. */
static void reply(const char *s)
{
    evbuffer_add(cfifo_replies(&f, out), s, strlen(s));
}

static void pub_held(uint64_t id)
{
    ck_assert_int_eq(cfifo_reserve(&f, 1000), 0);
    cfifo_push(&f, id);
}

static void drain(void)
{
    uint64_t id;
    int st;
    char line[32];

    while (cfifo_pop(&f, &id, &st)) {
        snprintf(line, sizeof line, "%s%llu;", st == 0 ? "+" : "-", (unsigned long long)id);
        evbuffer_add(out, line, strlen(line));
        cfifo_release(&f, out);
    }
}

static void assert_out(const char *want)
{
    size_t n = evbuffer_get_length(out);
    char *got = calloc(1, n + 1);

    evbuffer_copyout(out, got, n);
    ck_assert_str_eq(got, want);
    free(got);
}

START_TEST(test_nothing_waiting_goes_straight_out)
{
    reply("a;");
    assert_out("a;");
    ck_assert_uint_eq(cfifo_later_len(&f), 0);
}
END_TEST

START_TEST(test_order_kept_whatever_the_settle_order)
{
    reply("a;");
    pub_held(1);
    reply("b;");
    pub_held(2);
    pub_held(3);
    reply("c;");
    reply("d;");
    ck_assert_uint_eq(cfifo_later_len(&f), 6);
    ck_assert(cfifo_settle(&f, 3, 0));
    ck_assert(cfifo_settle(&f, 2, 7));
    drain();
    assert_out("a;"); /* 1 still waits: nothing behind it moves */
    ck_assert(!cfifo_settle(&f, 99, 0));
    ck_assert(!cfifo_settle(&f, 3, 0)); /* settled already */
    ck_assert(cfifo_settle(&f, 1, 0));
    drain();
    assert_out("a;+1;b;-2;+3;c;d;");
    ck_assert_uint_eq(f.n, 0);
    reply("e;");
    assert_out("a;+1;b;-2;+3;c;d;e;");
}
END_TEST

START_TEST(test_bound_and_growth)
{
    for (uint64_t i = 1; i <= 100; i++) {
        ck_assert_int_eq(cfifo_reserve(&f, 100), 0);
        cfifo_push(&f, i);
        if (i % 10 == 0)
            reply("x;");
    }
    ck_assert_int_eq(cfifo_reserve(&f, 100), -1);
    /* settle the first half, then wrap around the ring with new entries */
    for (uint64_t i = 1; i <= 50; i++)
        ck_assert(cfifo_settle(&f, i, 0));
    drain();
    ck_assert_uint_eq(f.n, 50);
    for (uint64_t i = 101; i <= 150; i++) {
        ck_assert_int_eq(cfifo_reserve(&f, 100), 0);
        cfifo_push(&f, i);
    }
    for (uint64_t i = 150; i > 50; i--)
        ck_assert(cfifo_settle(&f, i, 0));
    drain();
    ck_assert_uint_eq(f.n, 0);
    ck_assert_uint_eq(cfifo_later_len(&f), 0);
    ck_assert_uint_eq(evbuffer_get_length(out), 9 * 3 + 90 * 4 + 51 * 5 + 10 * 2);
}
END_TEST

static Suite *cfifo_suite(void)
{
    Suite *s = suite_create("cfifo");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_nothing_waiting_goes_straight_out);
    tcase_add_test(tc, test_order_kept_whatever_the_settle_order);
    tcase_add_test(tc, test_bound_and_growth);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cfifo_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
