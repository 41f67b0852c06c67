/* ck_core.c: the core tests' harness (see ck_core.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ck_core.h"

/* ---- a config with config.md's defaults, built by hand ---- */


void cfg_defaults(test_cfg_t *tc)
{
    config_t *c = &tc->cfg;

    memset(tc, 0, sizeof(*tc));
    c->log_level = LOG_LEVEL_INFO;
    c->limits.max_connections = 10000;
    c->limits.max_line = 4096;
    c->limits.max_message = 1 << 20;
    c->limits.max_memory = UINT64_C(1) << 30;
    c->limits.output_buffer = 4 << 20;
    c->limits.max_topics = 10000;
    c->auto_create_topics = true;
    c->defaults = (topic_conf_t){
        .max_messages = 100000,
        .max_bytes = 64 << 20,
        .overflow = OVERFLOW_BLOCK,
        .block_timeout_ms = 0,
        .prefetch = 64,
        .ack_timeout_ms = 30000,
        .max_deliveries = 5,
        .dead_letter = "",
    };
    c->topics = tc->entries;
}

/* Add a `topics:` entry (defaults merged) and return its limits to edit. */
topic_conf_t *cfg_topic(test_cfg_t *tc, const char *name)
{
    topic_entry_t *e;

    ck_assert_uint_lt(tc->cfg.ntopics, MAX_ENTRIES);
    e = &tc->entries[tc->cfg.ntopics++];
    e->name = (char *)name;
    e->conf = tc->cfg.defaults;
    return &e->conf;
}

/* ---- fake clients ---- */


test_cfg_t tcfg;
broker_t *b;
uint64_t now;
int seq;
fake_t fakes[MAX_FAKES];
size_t nfakes;

void ev_topic(ev_t *e, const topic_t *t)
{
    size_t len = 0;
    const char *n = t != NULL ? topic_name(t, &len) : "";

    snprintf(e->topic, sizeof(e->topic), "%.*s", (int)len, n);
}

bool fk_deliver(void *ctx, const topic_t *t, const msg_t *m)
{
    fake_t *f = ctx;
    ev_t *e;

    ck_assert_uint_lt(f->nev, 256);
    e = &f->ev[f->nev++];
    e->kind = EV_DELIVER;
    e->seq = ++seq;
    ev_topic(e, t);
    e->id = m->id;
    e->attempt = m->attempt;
    ck_assert_uint_lt(m->len, sizeof(e->data));
    memcpy(e->data, m->data, m->len);
    e->data[m->len] = '\0';
    ck_assert_int_eq(m->state, MSG_INFLIGHT);
    f->ndeliv++;
    return !f->full;
}

void fk_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t, uint64_t id)
{
    fake_t *f = ctx;
    ev_t *e;

    ck_assert_uint_lt(f->nev, 256);
    e = &f->ev[f->nev++];
    e->kind = EV_COMPLETE;
    e->seq = ++seq;
    ev_topic(e, t);
    e->op = op;
    e->st = st;
    e->id = id;
    f->ndone++;
}

static const client_ops_t fk_ops = {fk_deliver, fk_complete, false};
static const client_ops_t fk_placed_ops = {fk_deliver, fk_complete, true};

static fake_t *fake_with(const client_ops_t *ops)
{
    fake_t *f;

    ck_assert_uint_lt(nfakes, MAX_FAKES);
    f = &fakes[nfakes++];
    f->c = broker_client_new(b, ops, f);
    ck_assert_ptr_nonnull(f->c);
    return f;
}

fake_t *fake(void) { return fake_with(&fk_ops); }
fake_t *fake_placed(void) { return fake_with(&fk_placed_ops); }

void fake_gone(fake_t *f)
{
    broker_client_free(f->c, now);
    f->c = NULL;
}

/* The i-th delivery (0-based) to f. */
const ev_t *dl(const fake_t *f, size_t i)
{
    for (size_t k = 0, n = 0; k < f->nev; k++)
        if (f->ev[k].kind == EV_DELIVER && n++ == i)
            return &f->ev[k];
    ck_abort_msg("no delivery %zu", i);
    return NULL;
}

/* The i-th completion (0-based) to f. */
const ev_t *done(const fake_t *f, size_t i)
{
    for (size_t k = 0, n = 0; k < f->nev; k++)
        if (f->ev[k].kind == EV_COMPLETE && n++ == i)
            return &f->ev[k];
    ck_abort_msg("no completion %zu", i);
    return NULL;
}

const ev_t *last_dl(const fake_t *f)
{
    ck_assert_uint_gt(f->ndeliv, 0);
    return dl(f, f->ndeliv - 1);
}

void assert_done(const fake_t *f, size_t i, br_op_t op, br_status_t st, uint64_t id)
{
    const ev_t *e = done(f, i);

    ck_assert_int_eq(e->op, op);
    ck_assert_int_eq(e->st, st);
    ck_assert_uint_eq(e->id, id);
}

/* ---- observer ---- */


oev_t oevs[256];
size_t noev;

void ob_record(char kind, const topic_t *t, const msg_t *m, br_removal_t why)
{
    size_t len;
    const char *n = topic_name(t, &len);
    oev_t *o;

    ck_assert_uint_lt(noev, 256);
    o = &oevs[noev++];
    o->kind = kind;
    snprintf(o->topic, sizeof(o->topic), "%.*s", (int)len, n);
    o->id = m->id;
    o->attempt = m->attempt;
    o->why = why;
}

void ob_enqueued(void *ctx, const topic_t *t, const msg_t *m)
{
    (void)ctx;
    ob_record('E', t, m, 0);
}

void ob_attempted(void *ctx, const topic_t *t, const msg_t *m)
{
    (void)ctx;
    ob_record('A', t, m, 0);
}

void ob_removed(void *ctx, const topic_t *t, const msg_t *m, br_removal_t why)
{
    (void)ctx;
    ob_record('R', t, m, why);
}

void ob_changed(void *ctx, const topic_t *t, const msg_t *m)
{
    (void)ctx;
    ob_record('C', t, m, 0);
}

static const broker_observer_t observer = {ob_enqueued, ob_attempted, ob_removed, ob_changed};

/* ---- shortcuts ---- */

void start(void)
{
    b = broker_new(&tcfg.cfg, now);
    ck_assert_ptr_nonnull(b);
    broker_set_observer(b, &observer, NULL);
}

void setup(void)
{
    cfg_defaults(&tcfg);
    now = 1000;
    seq = 0;
    b = NULL;
    memset(fakes, 0, sizeof(fakes));
    nfakes = 0;
    memset(oevs, 0, sizeof(oevs));
    noev = 0;
}

void teardown(void)
{
    broker_free(b);
}

br_status_t pubd(fake_t *f, const char *topic, const char *data, uint64_t delay,
                        uint64_t *id)
{
    msg_t *m = msg_new_copy(data, (uint32_t)strlen(data));

    ck_assert_ptr_nonnull(m);
    return broker_publish(f->c, topic, strlen(topic), m, delay, now, id);
}

br_status_t pub(fake_t *f, const char *topic, const char *data)
{
    uint64_t id = 0;

    return pubd(f, topic, data, 0, &id);
}

uint64_t pub_ok(fake_t *f, const char *topic, const char *data)
{
    uint64_t id = 0;

    ck_assert_int_eq(pubd(f, topic, data, 0, &id), BR_OK);
    ck_assert_uint_gt(id, 0);
    return id;
}

void sub(fake_t *f, const char *topic, int64_t credit)
{
    ck_assert_int_eq(broker_subscribe(f->c, topic, strlen(topic), credit), BR_OK);
}

br_status_t get(fake_t *f, const char *topic, uint64_t timeout)
{
    return broker_get(f->c, topic, strlen(topic), timeout, now);
}

/* GET that must succeed; returns the delivered message's event. */
const ev_t *get_ok(fake_t *f, const char *topic)
{
    ck_assert_int_eq(get(f, topic, 0), BR_OK);
    return last_dl(f);
}

br_status_t join(fake_t *f, const char *topic, int64_t timeout)
{
    return broker_join(f->c, topic, strlen(topic), timeout, now);
}

void disp(void)
{
    broker_dispatch(b, now);
}

topic_stats_t ts(const char *topic)
{
    topic_stats_t s;

    ck_assert_msg(broker_topic_stats(b, topic, strlen(topic), 0, &s), "no topic %s", topic);
    return s;
}

broker_stats_t ss(void)
{
    broker_stats_t s;

    broker_stats(b, now, &s);
    return s;
}

bool has_topic(const char *topic)
{
    topic_stats_t s;

    return broker_topic_stats(b, topic, strlen(topic), 0, &s);
}

