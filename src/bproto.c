/* bproto.c: the beanstalkd 1.12 protocol: parse command lines and put
 * bodies in place, format replies and YAML bodies. Pure functions over
 * caller-owned buffers: no I/O, no allocation, no locale.
 *
 * The rules are beanstalkd's as it behaves, checked against the real
 * server by tests/check_bproto_diff.c, not a tidier reading of
 * protocol.txt: a line ends at the first "\r", which must be followed by
 * "\n"; a line that has not ended within 224 bytes is discarded through
 * the next "\r\n" and answered BAD_FORMAT once; commands are recognised by
 * prefix; most numbers may be preceded by extra spaces; and kick and
 * reserve-with-timeout read their number with strtoul/strtol as beanstalkd
 * does, trailing garbage and all.
 */
#include "bproto.h"

#include <string.h>

#include "proto.h"

/* Where the parser is (bproto_parser_t's state). */
enum {
    BP_LINE = 0,    /* reading command lines */
    BP_DISCARD,     /* a line overflowed: dropping 224-byte windows until one holds "\r\n" */
    BP_SKIP,        /* dropping a refused put's body; JOB_TOO_BIG is answered after it */
};

/* How a command's name is matched: by prefix (the rest is its arguments),
 * or by prefix and then the whole line must be the name. */
typedef struct bp_def {
    const char *name;
    size_t len;
    bproto_cmd_type_t type;
    bool exact;     /* a longer line is BAD_FORMAT */
} bp_def_t;

#define BP_DEF(s, t, e) { s, sizeof s - 1, t, e }

/* beanstalkd's which_cmd() matches prefixes in its own order, and the
 * first that matches wins, so "reserve-job" (no space) is a malformed
 * "reserve" and "pause-tubex 1" pauses tube "x". Only names with the same
 * first letter can both match one line, so those keep beanstalkd's order
 * among themselves; across letters the order is free, and a worker's
 * commands come first. */
static const bp_def_t bp_defs[] = {
    BP_DEF("put ", BCMD_PUT, false),
    BP_DEF("reserve-with-timeout ", BCMD_RESERVE_TIMEOUT, false),
    BP_DEF("reserve-job ", BCMD_RESERVE_JOB, false),
    BP_DEF("reserve", BCMD_RESERVE, true),
    BP_DEF("delete ", BCMD_DELETE, false),
    BP_DEF("release ", BCMD_RELEASE, false),
    BP_DEF("peek-ready", BCMD_PEEK_READY, true),
    BP_DEF("peek-delayed", BCMD_PEEK_DELAYED, true),
    BP_DEF("peek-buried", BCMD_PEEK_BURIED, true),
    BP_DEF("peek ", BCMD_PEEK, false),
    BP_DEF("bury ", BCMD_BURY, false),
    BP_DEF("kick ", BCMD_KICK, false),
    BP_DEF("kick-job ", BCMD_KICK_JOB, false),
    BP_DEF("touch ", BCMD_TOUCH, false),
    BP_DEF("stats-job ", BCMD_STATS_JOB, false),
    BP_DEF("stats-tube ", BCMD_STATS_TUBE, false),
    BP_DEF("stats", BCMD_STATS, true),
    BP_DEF("use ", BCMD_USE, false),
    BP_DEF("watch ", BCMD_WATCH, false),
    BP_DEF("ignore ", BCMD_IGNORE, false),
    BP_DEF("list-tubes-watched", BCMD_LIST_TUBES_WATCHED, true),
    BP_DEF("list-tube-used", BCMD_LIST_TUBE_USED, true),
    BP_DEF("list-tubes", BCMD_LIST_TUBES, true),
    BP_DEF("quit", BCMD_QUIT, false),
    BP_DEF("pause-tube", BCMD_PAUSE_TUBE, false),
};

/* beanstalkd's NAME_CHARS: letters, digits and -+/;.$_() (names are not
 * on the hot path, so no table). */
static bool bp_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-+/;.$_()", c) != NULL);
}

static size_t bp_name_span(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && bp_name_char(s[i]))
        i++;
    return i;
}

bool bproto_tube_valid(const char *s, size_t len)
{
    return len > 0 && len <= BPROTO_TUBE_MAX && s[0] != '-' && bp_name_span(s, len) == len;
}

/* ---- numbers, as beanstalkd reads them ---- */

/* A cursor over one command line's arguments (no NUL: beanstalkd refuses
 * lines holding one before it looks at them). */
typedef struct bp_cur {
    const char *p;
    const char *end;
} bp_cur_t;

static bool bp_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Digits from c->p into *mag; false if they do not fit in 64 bits (they
 * are all consumed either way, as strtoumax does). */
static bool bp_digits(bp_cur_t *c, uint64_t *mag)
{
    const char *p = c->p, *end = c->end;
    const char *fast = end - p > 19 ? p + 19 : end;
    uint64_t v = 0;
    bool ok = true;

    /* Nineteen digits always fit in 64 bits: no overflow test for them
     * (and a local cursor, which the compiler keeps in a register). */
    for (; p < fast && bp_digit(*p); p++)
        v = v * 10 + (unsigned)(*p - '0');
    for (; p < end && bp_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        /* v * 10 + d > UINT64_MAX, without a division per digit */
        if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && d > UINT64_MAX % 10))
            ok = false;
        v = v * 10 + d;
    }
    c->p = p;
    *mag = v;
    return ok;
}

/* beanstalkd's read_u64(): skip spaces (only ' '), then a digit must
 * follow; the value must fit. `last`: nothing may follow the digits. */
static bool bp_u64(bp_cur_t *c, uint64_t *v, bool last)
{
    while (c->p < c->end && *c->p == ' ')
        c->p++;
    if (c->p == c->end || !bp_digit(*c->p))
        return false;
    if (!bp_digits(c, v))
        return false;
    return !last || c->p == c->end;
}

/* read_u32(), and read_duration() (the same rule, in seconds). */
static bool bp_u32(bp_cur_t *c, uint32_t *v, bool last)
{
    uint64_t w;

    if (!bp_u64(c, &w, last) || w > UINT32_MAX)
        return false;
    *v = (uint32_t)w;
    return true;
}

/* strtol()'s and strtoul()'s prefix: C-locale white space, then a sign. */
static bool bp_strto_head(bp_cur_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || (*c->p >= '\t' && *c->p <= '\r')))
        c->p++;
    bool neg = c->p < c->end && *c->p == '-';
    if (c->p < c->end && (*c->p == '-' || *c->p == '+'))
        c->p++;
    return neg;
}

/* kick: strtoul(), which takes a sign and ignores what follows the
 * digits, stored in beanstalkd's unsigned int. False (BAD_FORMAT) only
 * without digits or on overflow. */
static bool bp_kick_bound(bp_cur_t *c, uint32_t *bound)
{
    bool neg = bp_strto_head(c);
    const char *start = c->p;
    uint64_t mag;

    if (!bp_digits(c, &mag) || c->p == start)
        return false;
    *bound = (uint32_t)(neg ? 0 - mag : mag);
    return true;
}

/* reserve-with-timeout: strtol() into beanstalkd's int. No digits is 0;
 * only overflowing a long is BAD_FORMAT; the low 32 bits are kept, so
 * 4294967297 is 1 s and 2147483648 (negative) waits forever. */
static bool bp_timeout(bp_cur_t *c, int32_t *timeout)
{
    bool neg = bp_strto_head(c);
    uint64_t mag;

    if (!bp_digits(c, &mag) || mag > (uint64_t)INT64_MAX + (neg ? 1 : 0))
        return false;
    uint32_t lo = (uint32_t)(neg ? 0 - mag : mag);
    *timeout = lo > INT32_MAX ? -(int32_t)(UINT32_MAX - lo) - 1 : (int32_t)lo;
    return true;
}

/* ---- command lines ---- */

/* The first byte is compared before memcmp is called: most names differ
 * there, and this runs for every command. The order still decides. */
static const bp_def_t *bp_lookup(const char *s, size_t n)
{
    if (n == 0)
        return NULL;
    for (size_t i = 0; i < sizeof bp_defs / sizeof bp_defs[0]; i++)
        if (bp_defs[i].name[0] == s[0] && n >= bp_defs[i].len &&
            memcmp(s, bp_defs[i].name, bp_defs[i].len) == 0)
            return &bp_defs[i];
    return NULL;
}

/* The tube argument of use/watch/ignore/stats-tube: the whole rest of
 * the line, so "use  a" and "use a " are BAD_FORMAT. */
static bool bp_tube_arg(bp_cur_t *c, bproto_cmd_t *cmd)
{
    size_t n = (size_t)(c->end - c->p);

    if (!bproto_tube_valid(c->p, n))
        return false;
    cmd->tube = c->p;
    cmd->tube_len = n;
    return true;
}

/* pause-tube <tube> <delay>: beanstalkd's read_tube_name() skips spaces
 * and takes the longest run of name characters. */
static bool bp_pause_args(bp_cur_t *c, bproto_cmd_t *cmd)
{
    while (c->p < c->end && *c->p == ' ')
        c->p++;
    size_t n = bp_name_span(c->p, (size_t)(c->end - c->p));
    if (!bproto_tube_valid(c->p, n))
        return false;
    cmd->tube = c->p;
    cmd->tube_len = n;
    c->p += n;
    return bp_u32(c, &cmd->delay, true);
}

/* Arguments of every command but put. False: BAD_FORMAT. */
static bool bp_args(bproto_cmd_type_t type, bp_cur_t *c, bproto_cmd_t *cmd)
{
    switch (type) {
    case BCMD_PEEK: case BCMD_RESERVE_JOB: case BCMD_DELETE: case BCMD_TOUCH:
    case BCMD_KICK_JOB: case BCMD_STATS_JOB:
        return bp_u64(c, &cmd->id, true);
    case BCMD_RELEASE:
        return bp_u64(c, &cmd->id, false) && bp_u32(c, &cmd->pri, false) &&
               bp_u32(c, &cmd->delay, true);
    case BCMD_BURY:
        return bp_u64(c, &cmd->id, false) && bp_u32(c, &cmd->pri, true);
    case BCMD_RESERVE_TIMEOUT:
        return bp_timeout(c, &cmd->timeout);
    case BCMD_KICK:
        return bp_kick_bound(c, &cmd->bound);
    case BCMD_USE: case BCMD_WATCH: case BCMD_IGNORE: case BCMD_STATS_TUBE:
        return bp_tube_arg(c, cmd);
    case BCMD_PAUSE_TUBE:
        return bp_pause_args(c, cmd);
    default:
        return true;    /* quit takes anything after it; the exact ones were checked */
    }
}

static bproto_result_t bp_error(const char **err, const char *line)
{
    *err = line;
    return BPROTO_ERROR;
}

/* Find the end of the line that starts buf[0..len), beanstalkd's
 * scan_line_end() over one window: the first "\r" in it must be followed
 * by "\n" (a stray "\r" hides any later "\r\n" in the window). Returns the
 * line's length with its "\r\n", or 0. */
static size_t bp_line_end(const char *buf, size_t len)
{
    size_t w = len < BPROTO_LINE_MAX ? len : BPROTO_LINE_MAX;

    if (w < 2)
        return 0;
    const char *cr = memchr(buf, '\r', w - 1);
    if (!cr || cr[1] != '\n')
        return 0;
    return (size_t)(cr - buf) + 2;
}

/* A put line: the four numbers, then its body. *used is what to drop. */
static bproto_result_t bp_put(bproto_parser_t *p, bp_cur_t *c, const char *buf, size_t len,
                              size_t line, bproto_cmd_t *cmd, size_t *used, const char **err)
{
    uint32_t bytes;

    *used = line;
    if (!bp_u32(c, &cmd->pri, false) || !bp_u32(c, &cmd->delay, false) ||
        !bp_u32(c, &cmd->ttr, false) || !bp_u32(c, &bytes, false))
        return bp_error(err, BPROTO_R_BAD_FORMAT);
    /* Size before trailing garbage, as beanstalkd: "put 0 0 1 99999x"
     * has its 99999 + 2 bytes skipped too. */
    if (bytes > p->max_job_size) {
        p->state = BP_SKIP;
        p->skip = (uint64_t)bytes + 2;
        return BPROTO_NEED_MORE;
    }
    if (c->p != c->end)
        return bp_error(err, BPROTO_R_BAD_FORMAT);
    if (len - line < (size_t)bytes + 2) {
        *used = 0;
        return BPROTO_NEED_MORE;
    }
    /* The two bytes after the body are consumed whatever they are. */
    *used = line + bytes + 2;
    if (buf[line + bytes] != '\r' || buf[line + bytes + 1] != '\n')
        return bp_error(err, BPROTO_R_EXPECTED_CRLF);
    cmd->type = BCMD_PUT;
    if (cmd->ttr == 0)
        cmd->ttr = 1;
    cmd->body = buf + line;
    cmd->body_len = bytes;
    return BPROTO_CMD;
}

/* One complete line buf[0..line) ("\r\n" included). */
static bproto_result_t bp_command(bproto_parser_t *p, const char *buf, size_t len, size_t line,
                                  bproto_cmd_t *cmd, size_t *used, const char **err)
{
    size_t n = line - 2;
    bp_cur_t c = { buf, buf + n };

    memset(cmd, 0, sizeof *cmd);
    *used = line;
    /* beanstalkd's "possible maliciousness" test, before the name. */
    if (memchr(buf, '\0', n))
        return bp_error(err, BPROTO_R_BAD_FORMAT);
    const bp_def_t *d = bp_lookup(buf, n);
    if (!d)
        return bp_error(err, BPROTO_R_UNKNOWN_COMMAND);
    if (d->exact && n != d->len)
        return bp_error(err, BPROTO_R_BAD_FORMAT);
    c.p += d->len;
    if (d->type == BCMD_PUT)
        return bp_put(p, &c, buf, len, line, cmd, used, err);
    if (!bp_args(d->type, &c, cmd)) {
        memset(cmd, 0, sizeof *cmd);
        return bp_error(err, BPROTO_R_BAD_FORMAT);
    }
    cmd->type = d->type;
    return BPROTO_CMD;
}

void bproto_parser_init(bproto_parser_t *p, uint32_t max_job_size)
{
    p->max_job_size = max_job_size;
    p->skip = 0;
    p->state = BP_LINE;
}

bproto_result_t bproto_parse(bproto_parser_t *p, const char *buf, size_t len,
                             bproto_cmd_t *cmd, size_t *consumed, const char **err)
{
    size_t off = 0;

    for (;;) {
        *consumed = off;
        if (p->state == BP_SKIP) {
            size_t n = len - off < p->skip ? len - off : (size_t)p->skip;
            off += n;
            p->skip -= n;
            *consumed = off;
            if (p->skip)
                return BPROTO_NEED_MORE;
            p->state = BP_LINE;
            return bp_error(err, BPROTO_R_JOB_TOO_BIG);
        }
        size_t line = bp_line_end(buf + off, len - off);
        if (!line) {
            if (len - off < BPROTO_LINE_MAX)
                return BPROTO_NEED_MORE;
            /* A full window and no line: drop it silently, then keep
             * dropping until a window ends a line. */
            off += BPROTO_LINE_MAX;
            p->state = BP_DISCARD;
            continue;
        }
        if (p->state == BP_DISCARD) {
            p->state = BP_LINE;
            *consumed = off + line;
            return bp_error(err, BPROTO_R_BAD_FORMAT);
        }
        size_t used;
        bproto_result_t r = bp_command(p, buf + off, len - off, line, cmd, &used, err);
        off += used;
        *consumed = off;
        if (r != BPROTO_NEED_MORE || used == 0)
            return r;
        /* a refused put: go on to skip its body */
    }
}

/* ---- reply lines ---- */

static size_t bp_fmt(char *out, const char *word, size_t wl, const uint64_t *nums, size_t k)
{
    char *o = out;

    memcpy(o, word, wl);
    o += wl;
    for (size_t i = 0; i < k; i++) {
        *o++ = ' ';
        o += proto_u64(o, nums[i]);
    }
    *o++ = '\r';
    *o++ = '\n';
    return (size_t)(o - out);
}

#define BP_FMT(out, word, ...) \
    bp_fmt(out, word, sizeof word - 1, (const uint64_t[]){ __VA_ARGS__ }, \
           sizeof (const uint64_t[]){ __VA_ARGS__ } / sizeof(uint64_t))

size_t bproto_fmt_inserted(char *out, uint64_t id)
{
    return BP_FMT(out, "INSERTED", id);
}

size_t bproto_fmt_buried_id(char *out, uint64_t id)
{
    return BP_FMT(out, "BURIED", id);
}

size_t bproto_fmt_reserved(char *out, uint64_t id, uint64_t bytes)
{
    return BP_FMT(out, "RESERVED", id, bytes);
}

size_t bproto_fmt_found(char *out, uint64_t id, uint64_t bytes)
{
    return BP_FMT(out, "FOUND", id, bytes);
}

size_t bproto_fmt_watching(char *out, uint64_t count)
{
    return BP_FMT(out, "WATCHING", count);
}

size_t bproto_fmt_kicked(char *out, uint64_t count)
{
    return BP_FMT(out, "KICKED", count);
}

size_t bproto_fmt_ok(char *out, uint64_t bytes)
{
    return BP_FMT(out, "OK", bytes);
}

size_t bproto_fmt_using(char *out, const char *tube, size_t tube_len)
{
    memcpy(out, "USING ", 6);
    memcpy(out + 6, tube, tube_len);
    memcpy(out + 6 + tube_len, "\r\n", 2);
    return 8 + tube_len;
}

/* ---- YAML bodies ---- */

/* An snprintf-style writer: counts everything, stores what fits. */
typedef struct bp_w {
    char *out;
    size_t cap;
    size_t n;
} bp_w_t;

static void bp_put_bytes(bp_w_t *w, const char *s, size_t n)
{
    if (w->n < w->cap)
        memcpy(w->out + w->n, s, w->cap - w->n < n ? w->cap - w->n : n);
    w->n += n;
}

static void bp_put_str(bp_w_t *w, const char *s)
{
    bp_put_bytes(w, s, strlen(s));
}

static void bp_put_u64(bp_w_t *w, uint64_t v)
{
    char d[BPROTO_NUM_MAX];

    bp_put_bytes(w, d, proto_u64(d, v));
}

/* "<key>: " */
static void bp_key(bp_w_t *w, const char *key)
{
    bp_put_str(w, key);
    bp_put_bytes(w, ": ", 2);
}

static void bp_kv_u64(bp_w_t *w, const char *key, uint64_t v)
{
    bp_key(w, key);
    bp_put_u64(w, v);
    bp_put_bytes(w, "\n", 1);
}

static void bp_kv_str(bp_w_t *w, const char *key, const char *s, size_t n)
{
    bp_key(w, key);
    bp_put_bytes(w, s, n);
    bp_put_bytes(w, "\n", 1);
}

/* "<sec>.<usec as 6 digits>", beanstalkd's "%d.%06d" for rusage. */
static void bp_kv_time(bp_w_t *w, const char *key, uint64_t sec, uint32_t usec)
{
    char d[BPROTO_NUM_MAX];
    size_t n = proto_u64(d, usec % 1000000);

    bp_key(w, key);
    bp_put_u64(w, sec);
    bp_put_bytes(w, ".", 1);
    bp_put_bytes(w, "000000", 6 - n);
    bp_put_bytes(w, d, n);
    bp_put_bytes(w, "\n", 1);
}

#define BP_KV_STATS_(name, key) bp_kv_u64(&w, key, s->name);
#define BP_KV_JOB_(name, key) bp_kv_u64(&w, key, j->name);
#define BP_KV_TUBE_(name, key) bp_kv_u64(&w, key, t->name);

static const char *bp_or_empty(const char *s)
{
    return s ? s : "";
}

size_t bproto_yaml_stats(char *out, size_t cap, const bproto_stats_t *s)
{
    bp_w_t w = { out, cap, 0 };

    bp_put_bytes(&w, "---\n", 4);
    BPROTO_STATS_COUNTS_HEAD(BP_KV_STATS_)
    bp_key(&w, "version");
    bp_put_bytes(&w, "\"", 1);
    bp_put_str(&w, bp_or_empty(s->version));
    bp_put_bytes(&w, "\"\n", 2);
    bp_kv_time(&w, "rusage-utime", s->rusage_utime_sec, s->rusage_utime_usec);
    bp_kv_time(&w, "rusage-stime", s->rusage_stime_sec, s->rusage_stime_usec);
    BPROTO_STATS_COUNTS_TAIL(BP_KV_STATS_)
    bp_kv_str(&w, "draining", s->draining ? "true" : "false", s->draining ? 4 : 5);
    bp_kv_str(&w, "id", bp_or_empty(s->id), strlen(bp_or_empty(s->id)));
    bp_kv_str(&w, "hostname", bp_or_empty(s->hostname), strlen(bp_or_empty(s->hostname)));
    bp_kv_str(&w, "os", bp_or_empty(s->os), strlen(bp_or_empty(s->os)));
    bp_kv_str(&w, "platform", bp_or_empty(s->platform), strlen(bp_or_empty(s->platform)));
    return w.n;
}

size_t bproto_yaml_job(char *out, size_t cap, const bproto_job_stats_t *j)
{
    bp_w_t w = { out, cap, 0 };
    const char *state = bp_or_empty(j->state);

    bp_put_bytes(&w, "---\n", 4);
    bp_kv_u64(&w, "id", j->id);
    bp_kv_str(&w, "tube", j->tube, j->tube_len);
    bp_kv_str(&w, "state", state, strlen(state));
    BPROTO_JOB_COUNTS(BP_KV_JOB_)
    return w.n;
}

size_t bproto_yaml_tube(char *out, size_t cap, const bproto_tube_stats_t *t)
{
    bp_w_t w = { out, cap, 0 };

    bp_put_bytes(&w, "---\n", 4);
    bp_kv_str(&w, "name", t->name, t->name_len);
    BPROTO_TUBE_COUNTS(BP_KV_TUBE_)
    return w.n;
}

size_t bproto_yaml_list(char *out, size_t cap, const char *const *names,
                        const size_t *lens, size_t n)
{
    bp_w_t w = { out, cap, 0 };

    bp_put_bytes(&w, "---\n", 4);
    for (size_t i = 0; i < n; i++) {
        bp_put_bytes(&w, "- ", 2);
        bp_put_bytes(&w, names[i], lens[i]);
        bp_put_bytes(&w, "\n", 1);
    }
    return w.n;
}
