/* cfifo.c: the replies one connection owes while its confirm-mode PUBs
 * wait for the mirror (see cfifo.h).
 *
 * Marks are absolute byte counts of `later`, so settling the oldest PUB
 * moves exactly the replies that came after it and before the next one,
 * without renumbering the rest. Outcomes arrive almost always in order (the
 * mirror answers whole batches), so cfifo_settle finds its entry at the
 * head.
 */
#include "cfifo.h"

#include <stdlib.h>

#define CFIFO_INITIAL 16

static size_t cfifo_at(const cfifo_t *f, size_t i)
{
    return (f->head + i) % f->cap;
}

int cfifo_reserve(cfifo_t *f, size_t max)
{
    size_t cap;
    cfifo_ent_t *v;

    if (f->n >= max)
        return -1;
    if (f->later == NULL && (f->later = evbuffer_new()) == NULL)
        return -1;
    if (f->n < f->cap)
        return 0;
    cap = f->cap ? f->cap * 2 : CFIFO_INITIAL;
    v = malloc(cap * sizeof *v);
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < f->n; i++)
        v[i] = f->v[cfifo_at(f, i)];
    free(f->v);
    f->v = v;
    f->cap = cap;
    f->head = 0;
    return 0;
}

void cfifo_push(cfifo_t *f, uint64_t id)
{
    cfifo_ent_t *e = &f->v[cfifo_at(f, f->n)];

    e->id = id;
    e->mark = f->later_out + evbuffer_get_length(f->later);
    e->st = 0;
    e->done = false;
    f->n++;
}

struct evbuffer *cfifo_replies(cfifo_t *f, struct evbuffer *out)
{
    return f->n > 0 ? f->later : out;
}

bool cfifo_settle(cfifo_t *f, uint64_t id, int st)
{
    for (size_t i = 0; i < f->n; i++) {
        cfifo_ent_t *e = &f->v[cfifo_at(f, i)];
        if (e->id == id && !e->done) {
            e->st = st;
            e->done = true;
            return true;
        }
    }
    return false;
}

bool cfifo_pop(cfifo_t *f, uint64_t *id, int *st)
{
    const cfifo_ent_t *e;

    if (f->n == 0 || !f->v[f->head].done)
        return false;
    e = &f->v[f->head];
    *id = e->id;
    *st = e->st;
    f->head = cfifo_at(f, 1);
    f->n--;
    return true;
}

void cfifo_release(cfifo_t *f, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(f->later);
    uint64_t upto = f->n > 0 ? f->v[f->head].mark : f->later_out + len;
    size_t move = (size_t)(upto - f->later_out);

    if (move > 0)
        evbuffer_remove_buffer(f->later, out, move);
    f->later_out = upto;
}

size_t cfifo_later_len(const cfifo_t *f)
{
    return f->later != NULL ? evbuffer_get_length(f->later) : 0;
}

void cfifo_free(cfifo_t *f)
{
    free(f->v);
    if (f->later != NULL)
        evbuffer_free(f->later);
    *f = (cfifo_t){0};
}
