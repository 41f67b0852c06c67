/* check_place.c: unit tests of rendezvous placement (src/place.c): the
 * weight is the documented function (known values that other clients
 * check against), every node list gives every topic one owner, owners
 * spread evenly, and adding a node moves only the topics it wins.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"

#define NTOPICS 20000

static const char *const five[] = {"10.0.0.1:7700", "10.0.0.2:7700", "10.0.0.3:7700",
                                   "10.0.0.4:7700", "10.0.0.5:7700"};

static size_t owner_of(const char *const *nodes, size_t n, int i)
{
    char t[32];
    int len = snprintf(t, sizeof t, "topic.%d", i);

    return place_owner(nodes, n, t, (size_t)len);
}

/* Pinned values: a change here breaks every deployed client's placement.
 * The Python client's tests check the same three numbers. */
START_TEST(test_known_weights)
{
    ck_assert_uint_eq(place_weight("127.0.0.1:7700", "orders", 6), 0x33e9fd82acac40beULL);
    ck_assert_uint_eq(place_weight("127.0.0.1:7701", "orders", 6), 0xdbb6efc11931440fULL);
    ck_assert_uint_eq(place_weight("a", "", 0), 0x86fc2d0407502de5ULL);
}
END_TEST

/* The topic's length counts, not a NUL: "ab" and "a" differ by one byte. */
START_TEST(test_length_not_nul)
{
    ck_assert_uint_ne(place_weight("n", "ab", 2), place_weight("n", "ab", 1));
    ck_assert_uint_eq(place_weight("n", "ab", 1), place_weight("n", "a", 1));
}
END_TEST

START_TEST(test_one_node_owns_all)
{
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(owner_of(five, 1, i), 0);
}
END_TEST

/* Each of 5 nodes gets its fifth of 20,000 topics, within 10 %. */
START_TEST(test_even_spread)
{
    size_t count[5] = {0};

    for (int i = 0; i < NTOPICS; i++)
        count[owner_of(five, 5, i)]++;
    for (int k = 0; k < 5; k++)
        ck_assert_msg(count[k] > NTOPICS / 5 * 9 / 10 && count[k] < NTOPICS / 5 * 11 / 10,
                      "node %d owns %zu of %d", k, count[k], NTOPICS);
}
END_TEST

/* Going from 4 nodes to 5 moves only topics to the new node, about a
 * fifth of them; the order of the list does not matter. */
START_TEST(test_adding_moves_one_nth)
{
    const char *const shuffled[] = {five[3], five[0], five[4], five[2], five[1]};
    const size_t map[] = {3, 0, 4, 2, 1};
    size_t moved = 0;

    for (int i = 0; i < NTOPICS; i++) {
        size_t before = owner_of(five, 4, i), after = owner_of(five, 5, i);
        if (before != after) {
            ck_assert_uint_eq(after, 4);
            moved++;
        }
        ck_assert_uint_eq(map[owner_of(shuffled, 5, i)], after);
    }
    ck_assert_msg(moved > NTOPICS / 5 * 9 / 10 && moved < NTOPICS / 5 * 11 / 10,
                  "%zu of %d topics moved", moved, NTOPICS);
}
END_TEST

/* Removing a node moves only the topics it owned. */
START_TEST(test_removing_moves_only_its_own)
{
    const char *const four[] = {five[0], five[1], five[3], five[4]};
    const size_t map[] = {0, 1, 3, 4};

    for (int i = 0; i < NTOPICS; i++) {
        size_t before = owner_of(five, 5, i), after = map[owner_of(four, 4, i)];
        if (before != 2)
            ck_assert_uint_eq(after, before);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("place");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_known_weights);
    tcase_add_test(tc, test_length_not_nul);
    tcase_add_test(tc, test_one_node_owns_all);
    tcase_add_test(tc, test_even_spread);
    tcase_add_test(tc, test_adding_moves_one_nth);
    tcase_add_test(tc, test_removing_moves_only_its_own);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
