/* fuzz_bproto.c: libFuzzer target for the beanstalkd protocol parser. The
 * first input byte picks a read size; the rest is fed through bproto_parse
 * the way a connection would (append a read, parse until it needs more,
 * drop what was consumed) with a small max_job_size, and again all at
 * once: both must give the same results. Every command is checked against
 * the bytes it came from, and its tube is written back through the reply
 * and YAML formatters into a buffer that is sometimes too small.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *          src/bproto.c src/proto.c tests/fuzz/fuzz_bproto.c -o .dev/fuzz_bproto
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bproto.h"

#define FUZZ_MAX_JOB 200
/* The most a connection ever has to hold before the parser can act: a
 * put line, its body and the two bytes after it. */
#define FUZZ_MAX_BUFFERED (BPROTO_LINE_MAX + FUZZ_MAX_JOB + 2)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(cond) do { if (!(cond)) abort(); } while (0)

typedef struct fuzz_run {
    bproto_parser_t p;
    char *buf;
    size_t len;
    size_t cap;
    uint64_t digest;    /* hash of every result so far, in order */
    size_t results;
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

static void fuzz_format(const bproto_cmd_t *c)
{
    char out[BPROTO_USING_MAX], yaml[64], line[BPROTO_REPLY_MAX];
    const char *names[] = { c->tube, c->tube };
    const size_t lens[] = { c->tube_len, c->tube_len };
    size_t cap = c->tube_len % sizeof yaml;

    check(bproto_fmt_using(out, c->tube, c->tube_len) == 8 + c->tube_len);
    check(bproto_yaml_list(yaml, cap, names, lens, 2) == 4 + 2 * (3 + c->tube_len));
    bproto_tube_stats_t t = { .name = c->tube, .name_len = c->tube_len, .pause = c->delay };
    check(bproto_yaml_tube(yaml, cap, &t) > c->tube_len);
    check(bproto_fmt_reserved(line, c->id, c->body_len) <= BPROTO_REPLY_MAX);
}

static void fuzz_cmd(fuzz_run_t *r, const bproto_cmd_t *c, const char *buf, size_t len)
{
    check(c->type > BCMD_NONE && c->type <= BCMD_QUIT);
    fuzz_mix_u64(r, (uint64_t)c->type);
    fuzz_mix_u64(r, c->id);
    fuzz_mix_u64(r, ((uint64_t)c->pri << 32) | c->delay);
    fuzz_mix_u64(r, ((uint64_t)c->ttr << 32) | c->bound);
    fuzz_mix_u64(r, (uint64_t)(int64_t)c->timeout);
    if (c->tube) {
        check(c->tube >= buf && c->tube + c->tube_len <= buf + len);
        check(bproto_tube_valid(c->tube, c->tube_len));
        fuzz_mix(r, c->tube, c->tube_len);
        fuzz_format(c);
    }
    if (c->type == BCMD_PUT) {
        check(c->ttr >= 1);
        check(c->body_len <= FUZZ_MAX_JOB);
        check(c->body >= buf && c->body + c->body_len + 2 <= buf + len);
        check(c->body[c->body_len] == '\r' && c->body[c->body_len + 1] == '\n');
        fuzz_mix(r, c->body, c->body_len);
    } else {
        check(c->body == NULL && c->body_len == 0);
    }
}

static void fuzz_err(fuzz_run_t *r, const char *err)
{
    static const char *const known[] = { BPROTO_R_BAD_FORMAT, BPROTO_R_UNKNOWN_COMMAND,
                                         BPROTO_R_EXPECTED_CRLF, BPROTO_R_JOB_TOO_BIG };
    size_t i = 0;

    while (i < sizeof known / sizeof known[0] && strcmp(err, known[i]) != 0)
        i++;
    check(i < sizeof known / sizeof known[0]);
    fuzz_mix_u64(r, i);
}

/* Parse what is buffered until the parser needs more. Each call sees an
 * exact-size heap copy so that ASan catches any read past the end. */
static void fuzz_drain(fuzz_run_t *r)
{
    for (;;) {
        char *copy = malloc(r->len ? r->len : 1);
        bproto_cmd_t cmd;
        size_t used = SIZE_MAX;
        const char *err = NULL;

        check(copy);
        memcpy(copy, r->buf, r->len);
        bproto_result_t res = bproto_parse(&r->p, copy, r->len, &cmd, &used, &err);
        check(used <= r->len);
        if (res != BPROTO_NEED_MORE)
            fuzz_mix_u64(r, (uint64_t)res);
        switch (res) {
        case BPROTO_CMD:
            check(used > 0);
            fuzz_cmd(r, &cmd, copy, r->len);
            break;
        case BPROTO_ERROR:
            check(used > 0);
            fuzz_err(r, err);
            break;
        case BPROTO_NEED_MORE:
            break;
        default:
            abort();
        }
        free(copy);
        if (res != BPROTO_NEED_MORE)
            r->results++;
        memmove(r->buf, r->buf + used, r->len - used);
        r->len -= used;
        if (res != BPROTO_NEED_MORE)
            continue;

        /* Asking again changes nothing, and what is left fits in what a
         * connection is required to buffer. */
        bproto_parser_t before = r->p;
        check(bproto_parse(&r->p, r->buf, r->len, &cmd, &used, &err) == BPROTO_NEED_MORE);
        check(used == 0);
        check(memcmp(&before, &r->p, sizeof before) == 0);
        check(r->len <= FUZZ_MAX_BUFFERED);
        break;
    }
}

static void fuzz_feed(fuzz_run_t *r, const uint8_t *data, size_t size, size_t chunk)
{
    bproto_parser_init(&r->p, FUZZ_MAX_JOB);
    r->len = 0;
    r->digest = 0xcbf29ce484222325ULL;
    r->results = 0;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        check(r->len + n <= r->cap);
        memcpy(r->buf + r->len, data + off, n);
        r->len += n;
        fuzz_drain(r);
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
    return 0;
}
