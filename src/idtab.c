/* idtab.c: the id -> message table (linear probing, backward-shift delete).
 * See idtab.h for why only in-flight and held messages live here.
 */
#include <stdlib.h>
#include <string.h>

#include "idtab.h"

static size_t idtab_hash(uint64_t id, unsigned bits)
{
    /* Fibonacci hashing: ids are sequential, and the golden-ratio multiply
     * spreads consecutive ones over the whole table. */
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - bits));
}

size_t idtab_home(const idtab_t *t, uint64_t id)
{
    return idtab_hash(id, t->bits);
}

size_t idtab_capacity(const idtab_t *t)
{
    return t->mask + 1;
}

static int idtab_alloc(idtab_t *t, unsigned bits)
{
    size_t n = (size_t)1 << bits;

    t->slots = calloc(n, sizeof(*t->slots));
    if (t->slots == NULL)
        return -1;
    t->mask = n - 1;
    t->bits = bits;
    t->count = 0;
    return 0;
}

int idtab_init(idtab_t *t)
{
    unsigned bits = 0;

    while (((size_t)1 << bits) < IDTAB_MIN_SLOTS)
        bits++;
    return idtab_alloc(t, bits);
}

void idtab_destroy(idtab_t *t)
{
    free(t->slots);
    t->slots = NULL;
    t->mask = 0;
    t->count = 0;
}

/* Place an entry known to be absent; the table has a free slot. */
static void idtab_place(idtab_t *t, uint64_t id, msg_t *m)
{
    size_t i = idtab_hash(id, t->bits);

    while (t->slots[i].id != 0)
        i = (i + 1) & t->mask;
    t->slots[i].id = id;
    t->slots[i].msg = m;
    t->count++;
}

/* Rebuild with 2^bits slots. On failure the old table stays as it was. */
static int idtab_resize(idtab_t *t, unsigned bits)
{
    idtab_t old = *t;

    if (idtab_alloc(t, bits) < 0) {
        *t = old;
        return -1;
    }
    for (size_t i = 0; i <= old.mask; i++)
        if (old.slots[i].id != 0)
            idtab_place(t, old.slots[i].id, old.slots[i].msg);
    free(old.slots);
    return 0;
}

/* Room for one more entry: 0, or -1 when out of memory. */
static int idtab_reserve(idtab_t *t)
{
    size_t slots = t->mask + 1;

    if (t->slots == NULL)
        return idtab_init(t);
    if ((t->count + 1) * 2 > slots && idtab_resize(t, t->bits + 1) < 0) {
        /* Out of memory: keep going in the old table while it has some
         * slack, since refusing an insert costs the caller a delivery. */
        if ((t->count + 1) * 8 > slots * 7)
            return -1;
    }
    return 0;
}

int idtab_insert(idtab_t *t, msg_t *m)
{
    if (idtab_reserve(t) < 0)
        return -1;
    idtab_place(t, m->id, m);
    return 0;
}

static size_t idtab_slot_of(const idtab_t *t, uint64_t id)
{
    size_t i;

    if (t->count == 0 || id == 0)
        return SIZE_MAX;
    i = idtab_hash(id, t->bits);
    while (t->slots[i].id != 0) {
        if (t->slots[i].id == id)
            return i;
        i = (i + 1) & t->mask;
    }
    return SIZE_MAX;
}

msg_t *idtab_find(const idtab_t *t, uint64_t id)
{
    size_t i = idtab_slot_of(t, id);

    return i == SIZE_MAX ? NULL : t->slots[i].msg;
}

/* Empty slot `hole` and pull back every later entry of the cluster whose
 * home does not lie cyclically in (hole, j]: such an entry was pushed past
 * the hole while probing and would become unreachable otherwise. */
static void idtab_shift_back(idtab_t *t, size_t hole)
{
    size_t j = hole;

    for (;;) {
        j = (j + 1) & t->mask;
        if (t->slots[j].id == 0)
            break;
        size_t home = idtab_hash(t->slots[j].id, t->bits);
        if (((j - home) & t->mask) >= ((j - hole) & t->mask)) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole].id = 0;
    t->slots[hole].msg = NULL;
}

/* Empty slot i, and shrink when the table got sparse. */
static void idtab_vacate(idtab_t *t, size_t i)
{
    idtab_shift_back(t, i);
    t->count--;
    /* Give memory back after a burst, with a wide margin so a table whose
     * load swings with every credit window does not rebuild itself each
     * time; a failed shrink is harmless. */
    if (t->mask + 1 > IDTAB_MIN_SLOTS && t->count * 16 < t->mask + 1)
        (void)idtab_resize(t, t->bits - 1);
}

msg_t *idtab_remove(idtab_t *t, uint64_t id)
{
    size_t i = idtab_slot_of(t, id);
    msg_t *m;

    if (i == SIZE_MAX)
        return NULL;
    m = t->slots[i].msg;
    idtab_vacate(t, i);
    return m;
}

int idtab_add(idtab_t *t, uint64_t id)
{
    if (idtab_has(t, id))
        return 0;
    if (idtab_reserve(t) < 0)
        return -1;
    idtab_place(t, id, NULL);
    return 0;
}

bool idtab_has(const idtab_t *t, uint64_t id)
{
    return idtab_slot_of(t, id) != SIZE_MAX;
}

bool idtab_del(idtab_t *t, uint64_t id)
{
    size_t i = idtab_slot_of(t, id);

    if (i == SIZE_MAX)
        return false;
    idtab_vacate(t, i);
    return true;
}

void idtab_clear(idtab_t *t)
{
    if (t->count == 0)
        return;
    if (t->mask + 1 > IDTAB_MIN_SLOTS) {
        idtab_destroy(t); /* the next add allocates the minimum again */
        return;
    }
    memset(t->slots, 0, (t->mask + 1) * sizeof *t->slots);
    t->count = 0;
}
