/* fuzz_bcore.c: libFuzzer target for the broker core under beanstalk's
 * commands. The input is read as a beanstalk session (bproto_parse): each
 * command runs against a real broker for one of three clients, as the
 * listener would run it (put, reserve over a watch list, reserve-job,
 * delete, release, bury, touch, kick, kick-job, pause-tube, the peeks,
 * stats-job, quit as a client gone), with the clock moving between
 * commands so TTRs, delays, pauses and DEADLINE_SOON fire. The first byte
 * picks the topics' bounds and policy. After every command the broker's
 * counts must add up; at the end everything is freed (LeakSanitizer).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *          src/bproto.c src/proto.c src/msg.c src/idtab.c src/topic.c \
 *          src/broker*.c tests/fuzz/fuzz_bcore.c -o .dev/fuzz_bcore
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bproto.h"
#include "broker.h"

#define FUZZ_CLIENTS 3
#define FUZZ_WATCH 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond) do { if (!(cond)) abort(); } while (0)

typedef struct fclient {
    client_t *c;
    bool waiting;                  /* a reserve or a parked put is pending */
    char use[BPROTO_TUBE_MAX + 1];
    char watch[FUZZ_WATCH][BPROTO_TUBE_MAX + 1];
    size_t nwatch;
} fclient_t;

static broker_t *fb;
static uint64_t fnow;
static fclient_t fc[FUZZ_CLIENTS];

static bool fuzz_deliver(void *ctx, const topic_t *t, const msg_t *m)
{
    (void)ctx;
    check(t != NULL && m->state == MSG_INFLIGHT && m->id > 0);
    return true;
}

static void fuzz_complete(void *ctx, br_op_t op, br_status_t st, const topic_t *t, uint64_t id)
{
    fclient_t *f = ctx;

    (void)st;
    (void)t;
    (void)id;
    check(op == BR_OP_PUB || op == BR_OP_RESERVE);
    f->waiting = false;
}

static const client_ops_t fuzz_ops = {fuzz_deliver, fuzz_complete, false};

static void fuzz_client_new(fclient_t *f)
{
    memset(f, 0, sizeof *f);
    f->c = broker_client_new(fb, &fuzz_ops, f);
    check(f->c != NULL);
    strcpy(f->use, "default");
    strcpy(f->watch[0], "default");
    f->nwatch = 1;
}

static void fuzz_count(void *ctx, const topic_stats_t *ts)
{
    uint64_t *sum = ctx;

    check(ts->urgent <= ts->ready);
    *sum += ts->ready + ts->delayed + ts->in_flight + ts->buried;
}

/* Every message is in exactly one of its topic's queues. */
static void fuzz_invariants(void)
{
    broker_stats_t bs;
    uint64_t sum = 0;

    broker_stats(fb, fnow, &bs);
    broker_foreach_topic(fb, fnow, fuzz_count, &sum);
    check(sum == bs.messages);
}

static void fuzz_name(char *out, const bproto_cmd_t *cmd)
{
    memcpy(out, cmd->tube, cmd->tube_len);
    out[cmd->tube_len] = '\0';
}

static void fuzz_put(fclient_t *f, const bproto_cmd_t *cmd)
{
    uint64_t delay = (uint64_t)(cmd->delay % 5) * 1000, id;
    msg_t *m = msg_new_job((uint32_t)cmd->body_len, cmd->pri,
                           (uint64_t)(cmd->ttr % 10) * 1000 + 1, delay, fnow);
    br_status_t st;

    check(m != NULL);
    memcpy(m->data, cmd->body, cmd->body_len);
    st = broker_publish(f->c, f->use, strlen(f->use), m, delay, fnow, &id);
    f->waiting = st == BR_PENDING;
}

static void fuzz_reserve(fclient_t *f, int64_t timeout_ms)
{
    const char *names[FUZZ_WATCH];
    size_t lens[FUZZ_WATCH];
    br_reserve_t r = {names, lens, f->nwatch, timeout_ms, 1000};

    for (size_t i = 0; i < f->nwatch; i++) {
        names[i] = f->watch[i];
        lens[i] = strlen(f->watch[i]);
    }
    f->waiting = broker_reserve(f->c, &r, fnow) == BR_PENDING;
}

static void fuzz_watch(fclient_t *f, const bproto_cmd_t *cmd)
{
    char name[BPROTO_TUBE_MAX + 1];

    fuzz_name(name, cmd);
    for (size_t i = 0; i < f->nwatch; i++)
        if (strcmp(f->watch[i], name) == 0)
            return;
    if (f->nwatch < FUZZ_WATCH)
        strcpy(f->watch[f->nwatch++], name);
}

static void fuzz_ignore(fclient_t *f, const bproto_cmd_t *cmd)
{
    char name[BPROTO_TUBE_MAX + 1];

    fuzz_name(name, cmd);
    for (size_t i = 0; i < f->nwatch && f->nwatch > 1; i++) {
        if (strcmp(f->watch[i], name) == 0) {
            memmove(f->watch[i], f->watch[f->nwatch - 1], sizeof f->watch[i]);
            f->nwatch--;
            return;
        }
    }
}

static void fuzz_peeks(const fclient_t *f, const bproto_cmd_t *cmd)
{
    br_job_info_t j;
    const msg_t *m = NULL;
    size_t ul = strlen(f->use);

    switch (cmd->type) {
    case BCMD_PEEK:
        m = broker_peek_id(fb, cmd->id);
        break;
    case BCMD_PEEK_READY:
        m = broker_peek_ready(fb, f->use, ul);
        check(m == NULL || m->state == MSG_READY);
        break;
    case BCMD_PEEK_DELAYED:
        m = broker_peek_delayed(fb, f->use, ul);
        check(m == NULL || m->state == MSG_DELAYED);
        break;
    default:
        m = broker_peek_buried(fb, f->use, ul);
        check(m == NULL || m->state == MSG_BURIED);
        break;
    }
    if (m != NULL) {
        check(broker_job_info(fb, m->id, fnow, &j));
        check(j.id == m->id && j.pri == msg_pri(m) && j.reserves == m->attempt);
    }
}

/* One command for client f, as the listener would run it. */
static void fuzz_exec(fclient_t *f, const bproto_cmd_t *cmd)
{
    uint64_t n;

    switch (cmd->type) {
    case BCMD_PUT:
        fuzz_put(f, cmd);
        break;
    case BCMD_USE:
        fuzz_name(f->use, cmd);
        break;
    case BCMD_WATCH:
        fuzz_watch(f, cmd);
        break;
    case BCMD_IGNORE:
        fuzz_ignore(f, cmd);
        break;
    case BCMD_RESERVE:
        fuzz_reserve(f, -1);
        break;
    case BCMD_RESERVE_TIMEOUT:
        fuzz_reserve(f, cmd->timeout < 0 ? -1 : (int64_t)(cmd->timeout % 4) * 1000);
        break;
    case BCMD_RESERVE_JOB:
        (void)broker_reserve_id(f->c, cmd->id, fnow);
        break;
    case BCMD_DELETE:
        (void)broker_delete(f->c, cmd->id, fnow);
        break;
    case BCMD_RELEASE:
        (void)broker_release(f->c, cmd->id, cmd->pri, (uint64_t)(cmd->delay % 5) * 1000, fnow);
        break;
    case BCMD_BURY:
        (void)broker_bury(f->c, cmd->id, cmd->pri, fnow);
        break;
    case BCMD_TOUCH:
        (void)broker_touch(f->c, cmd->id, fnow);
        break;
    case BCMD_KICK:
        (void)broker_kick(fb, f->use, strlen(f->use), cmd->bound, fnow, &n);
        break;
    case BCMD_KICK_JOB:
        (void)broker_kick_id(fb, cmd->id, fnow);
        break;
    case BCMD_PAUSE_TUBE:
        (void)broker_pause(fb, cmd->tube, cmd->tube_len, (uint64_t)(cmd->delay % 5) * 1000, fnow);
        break;
    case BCMD_PEEK: case BCMD_PEEK_READY: case BCMD_PEEK_DELAYED: case BCMD_PEEK_BURIED:
        fuzz_peeks(f, cmd);
        break;
    case BCMD_STATS_JOB: {
        br_job_info_t j;
        if (broker_job_info(fb, cmd->id, fnow, &j))
            check(j.id == cmd->id && j.state != MSG_HELD);
        break;
    }
    case BCMD_QUIT:
        broker_client_free(f->c, fnow);
        fuzz_client_new(f);
        break;
    default:
        break;
    }
}

static void fuzz_config(config_t *cfg, uint8_t knob)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->limits.max_message = 200;
    cfg->limits.max_memory = 4096;
    cfg->limits.output_buffer = 1 << 20;
    cfg->limits.max_topics = 8;
    cfg->auto_create_topics = true;
    cfg->defaults = (topic_conf_t){
        .max_messages = 4 + knob % 8,
        .max_bytes = 2048,
        .overflow = (overflow_policy_t)(knob / 8 % 3),
        .block_timeout_ms = knob & 0x40 ? 3000 : 0,
        .prefetch = 8,
        .ack_timeout_ms = 5000,
        .max_deliveries = knob & 0x80 ? 3 : 0,
        .dead_letter = knob & 0x20 ? "dead" : "",
    };
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_t cfg;
    bproto_parser_t p;
    size_t off = 1, k = 0;

    if (size < 1)
        return 0;
    fuzz_config(&cfg, data[0]);
    fnow = 1000;
    fb = broker_new(&cfg, fnow);
    check(fb != NULL);
    for (size_t i = 0; i < FUZZ_CLIENTS; i++)
        fuzz_client_new(&fc[i]);
    bproto_parser_init(&p, (uint32_t)cfg.limits.max_message);
    while (off < size) {
        bproto_cmd_t cmd;
        size_t used = 0;
        const char *err = NULL;
        bproto_result_t r = bproto_parse(&p, (const char *)data + off, size - off, &cmd, &used,
                                         &err);
        if (used == 0 && r == BPROTO_NEED_MORE)
            break;
        off += used;
        if (r == BPROTO_CMD) {
            fclient_t *f = &fc[k++ % FUZZ_CLIENTS];
            if (!f->waiting)
                fuzz_exec(f, &cmd);
        }
        /* Time moves by what the command's bytes say: up to ~2.5 s. */
        fnow += (used * 97) % 2500;
        broker_tick(fb, fnow);
        fuzz_invariants();
    }
    for (size_t i = 0; i < FUZZ_CLIENTS; i++)
        broker_client_free(fc[i].c, fnow);
    fuzz_invariants();
    broker_free(fb);
    msg_cache_release();
    return 0;
}
