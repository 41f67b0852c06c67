/* fuzz_proto.c: libFuzzer target for the wire protocol. The first input
 * byte picks a read size; the rest is fed through proto_parse the way a
 * connection would (append a read, parse until it needs more, drop what was
 * consumed) with small limits, and again all at once: both must give the
 * same results. The input is also parsed as a stream of server replies.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *          src/proto.c tests/fuzz/fuzz_proto.c -o .dev/fuzz_proto
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define FUZZ_MAX_LINE 64
#define FUZZ_MAX_MESSAGE 256
/* The most a connection ever has to hold before the parser can act: a
 * full line, its "\r\n", a full payload and the first trailer byte. */
#define FUZZ_MAX_BUFFERED (FUZZ_MAX_LINE + 2 + FUZZ_MAX_MESSAGE + 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond) do { if (!(cond)) abort(); } while (0)

typedef struct fuzz_run {
    proto_parser_t p;
    char *buf;          /* unparsed bytes */
    size_t len;
    size_t cap;
    uint64_t digest;    /* hash of every result so far, in order */
    size_t results;
    int fatal;
} fuzz_run_t;

static void fuzz_mix(fuzz_run_t *r, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        r->digest = (r->digest ^ b[i]) * 0x100000001b3ULL;
}

static void fuzz_mix_u64(fuzz_run_t *r, uint64_t v)
{
    fuzz_mix(r, &v, sizeof v);
}

/* Check a returned command against the bytes it was parsed from, and fold
 * it into the digest. */
static void fuzz_cmd(fuzz_run_t *r, const proto_cmd_t *c, const char *buf, size_t len)
{
    check(c->type > CMD_NONE && c->type <= CMD_QUIT);
    fuzz_mix_u64(r, (uint64_t)c->type);
    if (c->topic) {
        check(c->topic >= buf && c->topic + c->topic_len <= buf + len);
        check(proto_topic_valid(c->topic, c->topic_len));
        fuzz_mix(r, c->topic, c->topic_len);
    }
    fuzz_mix_u64(r, c->has_num ? c->num : UINT64_MAX - 1);
    fuzz_mix_u64(r, c->id);
    fuzz_mix_u64(r, c->delay_ms);
    if (c->type == CMD_SUB && c->has_num)
        check(c->num <= UINT32_MAX);
    if (c->type == CMD_ACK) {
        size_t pos = 0, n = 0;
        uint64_t id;
        check(c->ids >= buf && c->ids + c->ids_len <= buf + len);
        while (proto_ids_next(c->ids, c->ids_len, &pos, &id)) {
            check(n > 0 || id == c->id);
            fuzz_mix_u64(r, id);
            n++;
        }
        check(n == c->nids && n > 0);
    }
    if (c->type == CMD_AUTH) {
        check(c->user >= buf && c->user + c->user_len <= buf + len);
        check(c->pass >= buf && c->pass + c->pass_len <= buf + len);
        check(c->user_len > 0 && c->pass_len > 0);
        fuzz_mix(r, c->user, c->user_len);
        fuzz_mix(r, c->pass, c->pass_len);
    }
    if (c->type == CMD_PUB) {
        check(c->has_num && c->num == c->payload_len);
        check(c->payload_len <= FUZZ_MAX_MESSAGE);
        check(c->payload >= buf && c->payload + c->payload_len <= buf + len);
        fuzz_mix(r, c->payload, c->payload_len);
    }
}

static void fuzz_err(fuzz_run_t *r, const char *err)
{
    size_t n = strnlen(err, PROTO_ERR_MAX);
    check(n < PROTO_ERR_MAX && n > 3);
    check(err[0] == '-' && err[n - 2] == '\r' && err[n - 1] == '\n');
    check(memchr(err, '\n', n - 1) == NULL);
    for (size_t i = 0; i < n - 2; i++)
        check(err[i] >= 0x20 && err[i] < 0x7f);
    fuzz_mix(r, err, n);
}

/* Parse what is buffered until the parser needs more. Each call sees an
 * exact-size heap copy so that ASan catches any read past the end. */
static void fuzz_drain(fuzz_run_t *r)
{
    while (!r->fatal) {
        char *copy = malloc(r->len ? r->len : 1);
        proto_cmd_t cmd;
        size_t used = SIZE_MAX;
        char err[PROTO_ERR_MAX];

        check(copy);
        memcpy(copy, r->buf, r->len);
        proto_result_t res = proto_parse(&r->p, copy, r->len, &cmd, &used, err);
        check(used <= r->len);
        /* How many times it needed more depends on the reads: not hashed. */
        if (res != PROTO_NEED_MORE)
            fuzz_mix_u64(r, (uint64_t)res);
        switch (res) {
        case PROTO_CMD:
            check(used > 0);
            fuzz_cmd(r, &cmd, copy, r->len);
            break;
        case PROTO_ERROR:
            check(used > 0);
            fuzz_err(r, err);
            break;
        case PROTO_FATAL:
            fuzz_err(r, err);
            r->fatal = 1;
            break;
        case PROTO_NEED_MORE:
            break;
        default:
            abort();
        }
        free(copy);
        if (res != PROTO_NEED_MORE)
            r->results++;
        memmove(r->buf, r->buf + used, r->len - used);
        r->len -= used;
        if (res != PROTO_NEED_MORE)
            continue;

        /* Asking again changes nothing, and what is left fits in what a
         * connection is required to buffer. */
        proto_parser_t before = r->p;
        check(proto_parse(&r->p, r->buf, r->len, &cmd, &used, err) == PROTO_NEED_MORE);
        check(used == 0);
        check(memcmp(&before, &r->p, sizeof before) == 0);
        check(r->len <= FUZZ_MAX_BUFFERED);
        break;
    }
}

static void fuzz_feed(fuzz_run_t *r, const uint8_t *data, size_t size, size_t chunk)
{
    proto_parser_init(&r->p, FUZZ_MAX_LINE, FUZZ_MAX_MESSAGE);
    r->len = 0;
    r->digest = 0xcbf29ce484222325ULL;
    r->results = 0;
    r->fatal = 0;
    for (size_t off = 0; off < size && !r->fatal; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        check(r->len + n <= r->cap);
        memcpy(r->buf + r->len, data + off, n);
        r->len += n;
        fuzz_drain(r);
    }
}

/* Parse the input as replies: every one consumes something, and the bytes
 * before its end never look complete on their own. */
static void fuzz_replies(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        proto_reply_t r;
        size_t used = SIZE_MAX, used2;
        const char *s = (const char *)data + off;
        int rc = proto_parse_reply(s, size - off, &r, &used);

        check(rc >= -1 && rc <= 1);
        if (rc != 1)
            return;
        check(used > 0 && used <= size - off);
        check(r.type >= REPLY_OK && r.type <= REPLY_MSG);
        if (r.body)
            check(r.body >= s && r.body + r.body_len <= s + used);
        if (r.type == REPLY_MSG)
            check(proto_topic_valid(r.topic, r.topic_len));
        check(proto_parse_reply(s, used - 1, &r, &used2) == 0);
        off += used;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fuzz_run_t chunked, whole;

    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    size_t chunk = sel < 200 ? 1 + (size_t)sel % 32 : 64 + (size_t)(sel - 200) * 16;
    data++;
    size--;

    if (!chunked.buf) {
        chunked.cap = FUZZ_MAX_BUFFERED + 1024;
        chunked.buf = malloc(chunked.cap);
        check(chunked.buf);
    }
    if (whole.cap < size + 1) {
        free(whole.buf);
        whole.cap = size + 1;
        whole.buf = malloc(whole.cap);
        check(whole.buf);
    }

    fuzz_feed(&chunked, data, size, chunk);
    fuzz_feed(&whole, data, size, size ? size : 1);
    /* Results do not depend on how the bytes were split into reads. */
    check(chunked.results == whole.results);
    check(chunked.digest == whole.digest);
    check(chunked.fatal == whole.fatal);

    fuzz_replies(data, size);
    return 0;
}
