/* check_idtab.c: unit tests of the id -> message table: insert, find,
 * delete, growth, shrinking, collisions and deletion inside a cluster, and
 * its use as an id set (the mirror's).
 */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "idtab.h"

#define NMSG 4096

static msg_t msgs[NMSG];
static idtab_t tab;

static void setup(void)
{
    for (size_t i = 0; i < NMSG; i++)
        msgs[i].id = i + 1;
    ck_assert_int_eq(idtab_init(&tab), 0);
}

static void teardown(void)
{
    idtab_destroy(&tab);
}

/* Ids whose home slot is `home` in the current table, starting above `from`. */
static size_t ids_with_home(size_t home, uint64_t from, uint64_t *out, size_t want)
{
    size_t n = 0;

    for (uint64_t id = from; n < want && id < from + 100000; id++)
        if (idtab_home(&tab, id) == home)
            out[n++] = id;
    return n;
}

START_TEST(test_empty)
{
    ck_assert_ptr_null(idtab_find(&tab, 1));
    ck_assert_ptr_null(idtab_find(&tab, 0));
    ck_assert_ptr_null(idtab_remove(&tab, 7));
    ck_assert_uint_eq(tab.count, 0);
    ck_assert_uint_eq(idtab_capacity(&tab), IDTAB_MIN_SLOTS);
}
END_TEST

START_TEST(test_insert_find_remove)
{
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(idtab_insert(&tab, &msgs[i]), 0);
    ck_assert_uint_eq(tab.count, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_ptr_eq(idtab_find(&tab, msgs[i].id), &msgs[i]);
    ck_assert_ptr_null(idtab_find(&tab, 6));
    ck_assert_ptr_eq(idtab_remove(&tab, 3), &msgs[2]);
    ck_assert_ptr_null(idtab_find(&tab, 3));
    ck_assert_ptr_null(idtab_remove(&tab, 3));
    ck_assert_uint_eq(tab.count, 4);
    for (size_t i = 0; i < 5; i++)
        if (i != 2)
            ck_assert_ptr_eq(idtab_find(&tab, msgs[i].id), &msgs[i]);
}
END_TEST

START_TEST(test_grow_at_half_load)
{
    size_t cap = idtab_capacity(&tab);

    for (size_t i = 0; i < cap / 2; i++)
        ck_assert_int_eq(idtab_insert(&tab, &msgs[i]), 0);
    ck_assert_uint_eq(idtab_capacity(&tab), cap);
    ck_assert_int_eq(idtab_insert(&tab, &msgs[cap / 2]), 0);
    ck_assert_uint_eq(idtab_capacity(&tab), cap * 2);
    for (size_t i = 0; i <= cap / 2; i++)
        ck_assert_ptr_eq(idtab_find(&tab, msgs[i].id), &msgs[i]);
}
END_TEST

START_TEST(test_many_and_shrink)
{
    for (size_t i = 0; i < NMSG; i++)
        ck_assert_int_eq(idtab_insert(&tab, &msgs[i]), 0);
    ck_assert_uint_eq(tab.count, NMSG);
    ck_assert_uint_ge(idtab_capacity(&tab), 2 * NMSG);
    for (size_t i = 0; i < NMSG; i++)
        ck_assert_ptr_eq(idtab_find(&tab, msgs[i].id), &msgs[i]);
    /* Remove the odd ones, check the rest, then everything. */
    for (size_t i = 1; i < NMSG; i += 2)
        ck_assert_ptr_eq(idtab_remove(&tab, msgs[i].id), &msgs[i]);
    for (size_t i = 0; i < NMSG; i++) {
        if (i % 2)
            ck_assert_ptr_null(idtab_find(&tab, msgs[i].id));
        else
            ck_assert_ptr_eq(idtab_find(&tab, msgs[i].id), &msgs[i]);
    }
    for (size_t i = 0; i < NMSG; i += 2)
        ck_assert_ptr_eq(idtab_remove(&tab, msgs[i].id), &msgs[i]);
    ck_assert_uint_eq(tab.count, 0);
    ck_assert_uint_eq(idtab_capacity(&tab), IDTAB_MIN_SLOTS);
}
END_TEST

START_TEST(test_collisions)
{
    uint64_t ids[4];
    msg_t m[4];

    ck_assert_uint_eq(ids_with_home(3, 1, ids, 4), 4);
    for (int i = 0; i < 4; i++) {
        m[i].id = ids[i];
        ck_assert_int_eq(idtab_insert(&tab, &m[i]), 0);
    }
    /* All four share home 3: they sit in slots 3..6 in insertion order. */
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(tab.slots[3 + i].id, ids[i]);
        ck_assert_ptr_eq(idtab_find(&tab, ids[i]), &m[i]);
    }
}
END_TEST

START_TEST(test_delete_in_cluster)
{
    uint64_t a[3], other[1];
    msg_t m[4];

    /* Cluster: a0 a1 a2 (home 5) then x (home 7, displaced to 8). */
    ck_assert_uint_eq(ids_with_home(5, 1, a, 3), 3);
    ck_assert_uint_eq(ids_with_home(7, 1, other, 1), 1);
    for (int i = 0; i < 3; i++)
        m[i].id = a[i];
    m[3].id = other[0];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(idtab_insert(&tab, &m[i]), 0);
    ck_assert_uint_eq(tab.slots[8].id, other[0]);
    /* Deleting the middle of the cluster must pull a2 back to 6 and x back
     * to its home 7; without the shift, x would be unreachable. */
    ck_assert_ptr_eq(idtab_remove(&tab, a[1]), &m[1]);
    ck_assert_uint_eq(tab.slots[6].id, a[2]);
    ck_assert_uint_eq(tab.slots[7].id, other[0]);
    ck_assert_uint_eq(tab.slots[8].id, 0);
    ck_assert_ptr_eq(idtab_find(&tab, a[0]), &m[0]);
    ck_assert_ptr_eq(idtab_find(&tab, a[2]), &m[2]);
    ck_assert_ptr_eq(idtab_find(&tab, other[0]), &m[3]);
    ck_assert_ptr_null(idtab_find(&tab, a[1]));
}
END_TEST

START_TEST(test_delete_keeps_home_entries)
{
    uint64_t a[2], b[1];
    msg_t m[3];

    /* a0 at 5, a1 displaced to 6, b at its home 6 displaced to 7. Deleting
     * a0 moves a1 back to 5; b then moves to its home 6. */
    ck_assert_uint_eq(ids_with_home(5, 1, a, 2), 2);
    ck_assert_uint_eq(ids_with_home(6, 1, b, 1), 1);
    m[0].id = a[0];
    m[1].id = a[1];
    m[2].id = b[0];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(idtab_insert(&tab, &m[i]), 0);
    ck_assert_ptr_eq(idtab_remove(&tab, a[0]), &m[0]);
    ck_assert_uint_eq(tab.slots[5].id, a[1]);
    ck_assert_uint_eq(tab.slots[6].id, b[0]);
    ck_assert_uint_eq(tab.slots[7].id, 0);
}
END_TEST

START_TEST(test_wraparound_cluster)
{
    size_t last = idtab_capacity(&tab) - 1;
    uint64_t ids[3];
    msg_t m[3];

    /* A cluster that wraps from the last slot to slots 0 and 1. */
    ck_assert_uint_eq(ids_with_home(last, 1, ids, 3), 3);
    for (int i = 0; i < 3; i++) {
        m[i].id = ids[i];
        ck_assert_int_eq(idtab_insert(&tab, &m[i]), 0);
    }
    ck_assert_uint_eq(tab.slots[last].id, ids[0]);
    ck_assert_uint_eq(tab.slots[0].id, ids[1]);
    ck_assert_uint_eq(tab.slots[1].id, ids[2]);
    ck_assert_ptr_eq(idtab_remove(&tab, ids[0]), &m[0]);
    ck_assert_uint_eq(tab.slots[last].id, ids[1]);
    ck_assert_uint_eq(tab.slots[0].id, ids[2]);
    ck_assert_uint_eq(tab.slots[1].id, 0);
    ck_assert_ptr_eq(idtab_find(&tab, ids[1]), &m[1]);
    ck_assert_ptr_eq(idtab_find(&tab, ids[2]), &m[2]);
}
END_TEST

START_TEST(test_random_churn)
{
    /* Random inserts and removes against a shadow array. */
    static bool in[NMSG];

    memset(in, 0, sizeof(in));
    unsigned seed = 12345;

    for (int step = 0; step < 200000; step++) {
        size_t i = (size_t)rand_r(&seed) % NMSG;
        if (in[i]) {
            ck_assert_ptr_eq(idtab_remove(&tab, msgs[i].id), &msgs[i]);
            in[i] = false;
        } else {
            ck_assert_ptr_null(idtab_find(&tab, msgs[i].id));
            ck_assert_int_eq(idtab_insert(&tab, &msgs[i]), 0);
            in[i] = true;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < NMSG; i++) {
        if (in[i]) {
            n++;
            ck_assert_ptr_eq(idtab_find(&tab, msgs[i].id), &msgs[i]);
        } else {
            ck_assert_ptr_null(idtab_find(&tab, msgs[i].id));
        }
    }
    ck_assert_uint_eq(tab.count, n);
}
END_TEST

/* The id-set face: a zeroed table allocates on first add; adding twice is
 * one member; del says whether it was there; clear empties and is reusable;
 * a churned set agrees with a plain bitmap. */
START_TEST(test_id_set)
{
    idtab_t set = {0};
    static bool ref[20001];

    ck_assert(!idtab_has(&set, 7));
    ck_assert(!idtab_del(&set, 7));
    idtab_clear(&set); /* nothing allocated: a no-op */
    ck_assert_int_eq(idtab_add(&set, 7), 0);
    ck_assert_int_eq(idtab_add(&set, 7), 0);
    ck_assert_uint_eq(set.count, 1);
    ck_assert(idtab_has(&set, 7));
    ck_assert(!idtab_has(&set, 0)); /* 0 is never an id */
    ck_assert(idtab_del(&set, 7));
    ck_assert(!idtab_del(&set, 7));

    srand(42);
    memset(ref, 0, sizeof ref);
    for (int i = 0; i < 200000; i++) {
        uint64_t id = 1 + (uint64_t)rand() % 20000;
        if (rand() % 3 == 0) {
            ck_assert(idtab_del(&set, id) == ref[id]);
            ref[id] = false;
        } else {
            ck_assert_int_eq(idtab_add(&set, id), 0);
            ref[id] = true;
        }
    }
    for (uint64_t id = 1; id <= 20000; id++)
        ck_assert(idtab_has(&set, id) == ref[id]);

    idtab_clear(&set); /* large: given back, reallocated on the next add */
    ck_assert_uint_eq(set.count, 0);
    ck_assert(!idtab_has(&set, 5));
    ck_assert_int_eq(idtab_add(&set, 5), 0);
    ck_assert_uint_eq(idtab_capacity(&set), IDTAB_MIN_SLOTS);
    idtab_clear(&set); /* small: kept, zeroed */
    ck_assert_ptr_nonnull(set.slots);
    ck_assert(!idtab_has(&set, 5));
    idtab_destroy(&set);
}
END_TEST

static Suite *idtab_suite(void)
{
    Suite *s = suite_create("idtab");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_insert_find_remove);
    tcase_add_test(tc, test_grow_at_half_load);
    tcase_add_test(tc, test_many_and_shrink);
    tcase_add_test(tc, test_collisions);
    tcase_add_test(tc, test_delete_in_cluster);
    tcase_add_test(tc, test_delete_keeps_home_entries);
    tcase_add_test(tc, test_wraparound_cluster);
    tcase_add_test(tc, test_random_churn);
    tcase_add_test(tc, test_id_set);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(idtab_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
