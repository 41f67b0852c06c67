/* ck_core.h: the harness the core's unit tests share (check_core.c,
 * check_core_bstalk.c): a config with config.md's defaults built by hand,
 * fake clients that record pushes and completions, an observer that
 * records what the mirror would see, and shortcuts for the commands. The
 * clock is `now`, a plain number the tests advance.
 */
#ifndef SLUICE_CK_CORE_H
#define SLUICE_CK_CORE_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"

#define MAX_ENTRIES 8

typedef struct test_cfg {
    config_t cfg;
    topic_entry_t entries[MAX_ENTRIES];
} test_cfg_t;

enum { EV_DELIVER = 1, EV_COMPLETE };

typedef struct ev {
    int kind;
    int seq;            /* global order of events */
    char topic[32];
    uint64_t id;
    uint16_t attempt;   /* EV_DELIVER */
    char data[32];      /* EV_DELIVER, NUL-terminated copy */
    br_op_t op;         /* EV_COMPLETE */
    br_status_t st;     /* EV_COMPLETE */
} ev_t;

typedef struct fake {
    client_t *c;
    ev_t ev[256];
    size_t nev;
    size_t ndeliv, ndone;
    bool full;          /* deliver() reports a full output */
} fake_t;

#define MAX_FAKES 8

typedef struct oev {
    char kind; /* 'E'nqueued, 'A'ttempted, 'R'emoved, 'C'hanged */
    char topic[32];
    uint64_t id;
    uint16_t attempt;
    br_removal_t why;
} oev_t;

extern test_cfg_t tcfg;
extern broker_t *b;
extern uint64_t now;
extern int seq;
extern fake_t fakes[MAX_FAKES];
extern size_t nfakes;
extern oev_t oevs[256];
extern size_t noev;

void cfg_defaults(test_cfg_t *tc);
topic_conf_t *cfg_topic(test_cfg_t *tc, const char *name);
void ev_topic(ev_t *e, const topic_t *t);
bool fk_deliver(void *ctx, const topic_t *t, const msg_t *m);
void fk_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t, uint64_t id);
fake_t *fake(void);
/* A client that obeys the cluster's placement, as a native connection. */
fake_t *fake_placed(void);
void fake_gone(fake_t *f);
const ev_t *dl(const fake_t *f, size_t i);
const ev_t *done(const fake_t *f, size_t i);
const ev_t *last_dl(const fake_t *f);
void assert_done(const fake_t *f, size_t i, br_op_t op, br_status_t st, uint64_t id);
void ob_record(char kind, const topic_t *t, const msg_t *m, br_removal_t why);
void ob_enqueued(void *ctx, const topic_t *t, const msg_t *m);
void ob_attempted(void *ctx, const topic_t *t, const msg_t *m);
void ob_removed(void *ctx, const topic_t *t, const msg_t *m, br_removal_t why);
void ob_changed(void *ctx, const topic_t *t, const msg_t *m);
void start(void);
void setup(void);
void teardown(void);
br_status_t pubd(fake_t *f, const char *topic, const char *data, uint64_t delay,
                        uint64_t *id);
br_status_t pub(fake_t *f, const char *topic, const char *data);
uint64_t pub_ok(fake_t *f, const char *topic, const char *data);
void sub(fake_t *f, const char *topic, int64_t credit);
br_status_t get(fake_t *f, const char *topic, uint64_t timeout);
const ev_t *get_ok(fake_t *f, const char *topic);
br_status_t join(fake_t *f, const char *topic, int64_t timeout);
void disp(void);
topic_stats_t ts(const char *topic);
broker_stats_t ss(void);
bool has_topic(const char *topic);

#endif
