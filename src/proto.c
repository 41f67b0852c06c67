/* proto.c: the sluice wire protocol: parse request lines and PUB payloads
 * in place, format replies and pushes, and parse replies for clients.
 * Pure functions over caller-owned buffers: no I/O, no allocation, no
 * locale. This is the hot path, so lines are found with memchr and numbers
 * are parsed by hand.
 *
 * Leniency (for people typing into nc): tokens may be separated by runs of
 * spaces and tabs, leading and trailing blanks are ignored, and a line of
 * blanks counts as an empty line (consumed without a reply).
 */
#include "proto.h"

#include <string.h>

#include "dec.h"

/* Where a parser is in input it has chosen to discard (proto_parser_t's
 * skip_state). `skip` holds the payload bytes left in SK_PAYLOAD and the
 * garbage bytes seen so far in SK_RESYNC*. */
enum {
    SK_NONE = 0,    /* parsing commands */
    SK_PAYLOAD,     /* discarding a refused PUB's payload */
    SK_TRAILER,     /* refused payload done; its "\r\n" or "\n" comes next */
    SK_TRAILER_LF,  /* saw the "\r" of a refused payload's trailer */
    SK_RESYNC,      /* discarding through the next "\n" after a bad trailer */
    SK_RESYNC_CR,   /* as SK_RESYNC, and the last byte discarded was "\r" */
};

/* Enough tokens for the longest fixed form (PUB t n delay=ms pri=n ttr=ms)
 * plus one, so that "too many arguments" is known without scanning the
 * rest; a command splits off at most its own max_tok + 1. */
#define TOK_MAX 7

typedef struct proto_tok {
    const char *p;
    size_t n;
} proto_tok_t;

typedef struct proto_cmd_def {
    const char *name;       /* lowercase, as shown in error texts */
    size_t len;
    proto_cmd_type_t type;
    size_t min_tok;         /* tokens, the command name included */
    size_t max_tok;
} proto_cmd_def_t;

/* Most frequent first: the lookup is a linear scan. */
static const proto_cmd_def_t proto_cmds[] = {
    { "pub", 3, CMD_PUB, 3, 6 },
    { "ack", 3, CMD_ACK, 2, SIZE_MAX },
    { "sub", 3, CMD_SUB, 2, 3 },
    { "get", 3, CMD_GET, 2, 3 },
    { "nack", 4, CMD_NACK, 2, 3 },
    { "ping", 4, CMD_PING, 1, 1 },
    { "touch", 5, CMD_TOUCH, 2, 2 },
    { "join", 4, CMD_JOIN, 2, 3 },
    { "unsub", 5, CMD_UNSUB, 2, 2 },
    { "stats", 5, CMD_STATS, 1, 2 },
    { "topics", 6, CMD_TOPICS, 1, 1 },
    { "auth", 4, CMD_AUTH, 3, 3 },
    { "quit", 4, CMD_QUIT, 1, 1 },
    { "bury", 4, CMD_BURY, 2, 3 },
    { "kick", 4, CMD_KICK, 3, 3 },
    { "pause", 5, CMD_PAUSE, 3, 3 },
};

/* Printable ASCII without the space: what a command-line token may hold. */
static inline bool proto_graph(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

static inline bool proto_blank(char c)
{
    return c == ' ' || c == '\t';
}

static const bool proto_topic_chars[256] = {
    ['-'] = true, ['.'] = true, [':'] = true, ['_'] = true,
    ['0'] = true, ['1'] = true, ['2'] = true, ['3'] = true, ['4'] = true,
    ['5'] = true, ['6'] = true, ['7'] = true, ['8'] = true, ['9'] = true,
    ['A'] = true, ['B'] = true, ['C'] = true, ['D'] = true, ['E'] = true,
    ['F'] = true, ['G'] = true, ['H'] = true, ['I'] = true, ['J'] = true,
    ['K'] = true, ['L'] = true, ['M'] = true, ['N'] = true, ['O'] = true,
    ['P'] = true, ['Q'] = true, ['R'] = true, ['S'] = true, ['T'] = true,
    ['U'] = true, ['V'] = true, ['W'] = true, ['X'] = true, ['Y'] = true,
    ['Z'] = true,
    ['a'] = true, ['b'] = true, ['c'] = true, ['d'] = true, ['e'] = true,
    ['f'] = true, ['g'] = true, ['h'] = true, ['i'] = true, ['j'] = true,
    ['k'] = true, ['l'] = true, ['m'] = true, ['n'] = true, ['o'] = true,
    ['p'] = true, ['q'] = true, ['r'] = true, ['s'] = true, ['t'] = true,
    ['u'] = true, ['v'] = true, ['w'] = true, ['x'] = true, ['y'] = true,
    ['z'] = true,
};

bool proto_topic_valid(const char *s, size_t len)
{
    if (len == 0 || len > PROTO_TOPIC_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!proto_topic_chars[(unsigned char)s[i]])
            return false;
    return true;
}

/* Parse s[0..n) as plain decimal digits into *out. False when empty, when
 * anything but a digit is there, or when the value does not fit in 64 bits
 * (leading zeros are fine: they cannot overflow). */
static bool proto_parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    if (n == 0)
        return false;
    /* Nineteen digits always fit (10^19 - 1 < 2^64): no overflow test,
     * and no division, on the path every id and length takes. */
    for (; i < n && i < 19; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9)
            return false;
        v = v * 10 + d;
    }
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Straight into out, two digits per division: ids and lengths are
 * formatted for every message pushed and every PUB answered. */
size_t proto_u64(char *out, uint64_t v)
{
    return dec_u64(out, v);
}

size_t proto_fmt_msg_header(char *out, const char *topic, size_t topic_len,
                            uint64_t id, uint32_t attempt, uint32_t len)
{
    char *o = out;

    memcpy(o, "MSG ", 4);
    o += 4;
    memcpy(o, topic, topic_len);
    o += topic_len;
    *o++ = ' ';
    o += proto_u64(o, id);
    *o++ = ' ';
    o += proto_u64(o, attempt);
    *o++ = ' ';
    o += proto_u64(o, len);
    *o++ = '\r';
    *o++ = '\n';
    return (size_t)(o - out);
}

size_t proto_fmt_ok_u64(char *out, uint64_t n)
{
    char *o = out;

    memcpy(o, "+OK ", 4);
    o += 4;
    o += proto_u64(o, n);
    *o++ = '\r';
    *o++ = '\n';
    return (size_t)(o - out);
}

void proto_parser_init(proto_parser_t *p, uint64_t max_line, uint64_t max_message)
{
    p->max_line = max_line;
    p->max_message = max_message;
    p->skip = 0;
    p->skip_state = SK_NONE;
}

/* ---- error replies ---- */

/* Copy a fixed reply line (already ending "\r\n") into err. */
static proto_result_t proto_err(char *err, proto_result_t r, const char *line)
{
    size_t n = strlen(line);

    if (n >= PROTO_ERR_MAX)
        n = PROTO_ERR_MAX - 1;
    memcpy(err, line, n);
    err[n] = '\0';
    return r;
}

/* The command name in these texts comes from our table, never from the
 * client, so nothing it sent is echoed. */
static proto_result_t proto_err_nargs(char *err, const proto_cmd_def_t *def)
{
    static const char head[] = "-ERR wrong number of arguments for '";
    char *o = err;

    memcpy(o, head, sizeof head - 1);
    o += sizeof head - 1;
    memcpy(o, def->name, def->len);
    o += def->len;
    memcpy(o, "'\r\n", 4);
    return PROTO_ERROR;
}

static proto_result_t proto_err_toobig(char *err, uint64_t n, uint64_t max)
{
    static const char head[] = "-TOOBIG message of ";
    static const char mid[] = " bytes exceeds max_message ";
    char *o = err;

    memcpy(o, head, sizeof head - 1);
    o += sizeof head - 1;
    o += proto_u64(o, n);
    memcpy(o, mid, sizeof mid - 1);
    o += sizeof mid - 1;
    o += proto_u64(o, max);
    memcpy(o, "\r\n", 3);
    return PROTO_ERROR;
}

#define ERR_LINE_TOO_LONG "-ERR line too long\r\n"

/* ---- discarding refused payloads and resynchronising ---- */

/* Is a line (or garbage run) of `seen` bytes with no "\n" yet, whose last
 * byte is `last_cr` a "\r", already known to exceed max_line? Only a final
 * "\r" may still turn out to be part of the terminator. */
static bool proto_too_long(uint64_t seen, bool last_cr, uint64_t max_line)
{
    if (seen <= max_line)
        return false;
    return seen - 1 > max_line || !last_cr;
}

/* Resync: drop bytes through the next "\n". Returns bytes used; sets
 * *fatal when the garbage run grows past what a line may hold. */
static size_t proto_resync(proto_parser_t *p, const char *buf, size_t len, bool *fatal)
{
    const char *nl = memchr(buf, '\n', len);

    if (nl) {
        size_t i = (size_t)(nl - buf);
        bool cr = i ? buf[i - 1] == '\r' : p->skip_state == SK_RESYNC_CR;
        uint64_t content = p->skip + i - (cr ? 1 : 0);
        if (content > p->max_line) {
            *fatal = true;
            return i;
        }
        p->skip = 0;
        p->skip_state = SK_NONE;
        return i + 1;
    }
    if (len == 0)
        return 0;
    p->skip += len;
    p->skip_state = buf[len - 1] == '\r' ? SK_RESYNC_CR : SK_RESYNC;
    *fatal = proto_too_long(p->skip, p->skip_state == SK_RESYNC_CR, p->max_line);
    return len;
}

/* Advance through whatever is being discarded. Returns the bytes of buf it
 * used; the parser is back in SK_NONE unless buf ran out (or *fatal). */
static size_t proto_discard(proto_parser_t *p, const char *buf, size_t len, bool *fatal)
{
    size_t off = 0;

    while (p->skip_state != SK_NONE && off < len && !*fatal) {
        switch (p->skip_state) {
        case SK_PAYLOAD: {
            size_t have = len - off;
            size_t take = p->skip < have ? (size_t)p->skip : have;
            p->skip -= take;
            off += take;
            if (p->skip == 0)
                p->skip_state = SK_TRAILER;
            break;
        }
        case SK_TRAILER:
            if (buf[off] == '\n') {
                off++;
                p->skip_state = SK_NONE;
            } else if (buf[off] == '\r') {
                off++;
                p->skip_state = SK_TRAILER_LF;
            } else {
                /* The reply for this PUB is already out; just find the next
                 * line boundary without a second reply. */
                p->skip = 0;
                p->skip_state = SK_RESYNC;
            }
            break;
        case SK_TRAILER_LF:
            if (buf[off] == '\n') {
                off++;
                p->skip_state = SK_NONE;
            } else {
                p->skip = 1;    /* the "\r" already dropped */
                p->skip_state = SK_RESYNC;
            }
            break;
        default:
            off += proto_resync(p, buf + off, len - off, fatal);
            break;
        }
    }
    return off;
}

/* Start discarding a refused PUB's payload of n bytes and its trailer. */
static void proto_skip_payload(proto_parser_t *p, uint64_t n)
{
    p->skip = n;
    p->skip_state = n ? SK_PAYLOAD : SK_TRAILER;
}

/* ---- command lines ---- */

/* Split s[0..len) on runs of blanks. Stores up to cap (<= TOK_MAX)
 * tokens and returns how many it found, or cap + 1 if there are more. */
static size_t proto_tokens(const char *s, size_t len, proto_tok_t *t, size_t cap)
{
    size_t n = 0, i = 0;

    for (;;) {
        while (i < len && proto_blank(s[i]))
            i++;
        if (i == len)
            return n;
        if (n == cap)
            return cap + 1;
        size_t start = i;
        while (i < len && !proto_blank(s[i]))
            i++;
        t[n].p = s + start;
        t[n].n = i - start;
        n++;
    }
}

/* "PUB <topic> <count>" with single spaces, the form clients send, split in
 * one pass: the same tokens proto_tokens would make, without the general
 * scan. The topic is checked once, later, like any PUB's. Anything else
 * (a tab, runs of blanks, an option) is left to the general path. */
static bool proto_pub_tokens(const char *s, size_t len, proto_tok_t *t)
{
    size_t i = 4, start;

    if (len < 7 || ((unsigned char)s[0] | 0x20) != 'p' || ((unsigned char)s[1] | 0x20) != 'u' ||
        ((unsigned char)s[2] | 0x20) != 'b' || s[3] != ' ')
        return false;
    for (start = i; i < len && !proto_blank(s[i]); i++)
        ;
    if (i == start || i == len || s[i] != ' ')
        return false;
    t[1] = (proto_tok_t){s + start, i - start};
    for (start = ++i; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        ;
    if (i == start || i != len)
        return false;
    t[0] = (proto_tok_t){s, 3};
    t[2] = (proto_tok_t){s + start, i - start};
    return true;
}

static const proto_cmd_def_t *proto_lookup(const proto_tok_t *t)
{
    for (size_t k = 0; k < sizeof proto_cmds / sizeof proto_cmds[0]; k++) {
        const proto_cmd_def_t *d = &proto_cmds[k];
        if (d->len != t->n)
            continue;
        size_t i = 0;
        /* |0x20 folds only 'A'..'Z' onto the lowercase letters we compare
         * against, so no other byte can match by accident. */
        while (i < t->n && ((unsigned char)t->p[i] | 0x20) == (unsigned char)d->name[i])
            i++;
        if (i == t->n)
            return d;
    }
    return NULL;
}

static bool proto_word_valid(const proto_tok_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (!proto_graph((unsigned char)t->p[i]))
            return false;
    return true;
}

/* Validate ACK's ids from s[0..len), the line after the command name, and
 * fill cmd->ids/ids_len/nids/id. */
static bool proto_ack_ids(const char *s, size_t len, proto_cmd_t *cmd)
{
    size_t i = 0, first = 0, end = 0, n = 0;

    for (;;) {
        while (i < len && proto_blank(s[i]))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && !proto_blank(s[i]))
            i++;
        uint64_t id;
        if (!proto_parse_u64(s + start, i - start, &id))
            return false;
        if (n < PROTO_IDS_INLINE)
            cmd->idv[n] = id;
        if (n++ == 0) {
            first = start;
            cmd->id = id;
        }
        end = i;
    }
    cmd->ids = s + first;
    cmd->ids_len = end - first;
    cmd->nids = n;
    return true;
}

bool proto_ids_next(const char *ids, size_t len, size_t *pos, uint64_t *id)
{
    size_t i = *pos;

    while (i < len && proto_blank(ids[i]))
        i++;
    if (i >= len)
        return false;
    size_t start = i;
    while (i < len && !proto_blank(ids[i]))
        i++;
    if (!proto_parse_u64(ids + start, i - start, id))
        return false;
    *pos = i;
    return true;
}

bool proto_cmd_next_id(const proto_cmd_t *cmd, size_t *pos, uint64_t *id)
{
    if (cmd->nids > PROTO_IDS_INLINE)
        return proto_ids_next(cmd->ids, cmd->ids_len, pos, id);
    if (*pos >= cmd->nids)
        return false;
    *id = cmd->idv[(*pos)++];
    return true;
}

/* Does token t start with `key` ("delay=", ...), letters in any case? */
static bool proto_opt_is(const proto_tok_t *t, const char *key, size_t k)
{
    if (t->n < k || t->p[k - 1] != '=')
        return false;
    /* Fold the letters only: 0x1d | 0x20 would pass for '='. */
    for (size_t i = 0; i < k - 1; i++)
        if (((unsigned char)t->p[i] | 0x20) != (unsigned char)key[i])
            return false;
    return true;
}

/* One of PUB's options, each at most once (keys case-insensitive):
 * delay=<ms>, pri=<0..4294967295> (lower first), ttr=<ms> (its own ack
 * timeout, at least 1). `seen` holds the options met so far. */
static const char *proto_pub_option(const proto_tok_t *t, unsigned *seen, proto_cmd_t *cmd)
{
    uint64_t v;

    if (proto_opt_is(t, "delay=", 6) && !(*seen & 1)) {
        *seen |= 1;
        return proto_parse_u64(t->p + 6, t->n - 6, &cmd->delay_ms) ? NULL : "-ERR bad delay\r\n";
    }
    if (proto_opt_is(t, "pri=", 4) && !(*seen & 2)) {
        *seen |= 2;
        if (!proto_parse_u64(t->p + 4, t->n - 4, &v) || v > UINT32_MAX)
            return "-ERR bad priority\r\n";
        cmd->has_pri = true;
        cmd->pri = (uint32_t)v;
        return NULL;
    }
    if (proto_opt_is(t, "ttr=", 4) && !(*seen & 4)) {
        *seen |= 4;
        if (!proto_parse_u64(t->p + 4, t->n - 4, &cmd->ttr_ms) || cmd->ttr_ms == 0)
            return "-ERR bad ttr\r\n";
        return NULL;
    }
    return "-ERR bad option\r\n";
}

/* Check a PUB line whose byte count n is usable: syntax first, then the
 * size limit. Returns PROTO_CMD when the payload should be read, else
 * PROTO_ERROR with err filled in. */
static proto_result_t proto_pub_check(const proto_parser_t *p, const proto_cmd_def_t *d,
                                      const proto_tok_t *t, size_t nt, uint64_t n,
                                      proto_cmd_t *cmd, char *err)
{
    const char *bad;

    if (nt > d->max_tok)
        return proto_err_nargs(err, d);
    if (!proto_topic_valid(t[1].p, t[1].n))
        return proto_err(err, PROTO_ERROR, "-ERR bad topic\r\n");
    unsigned seen = 0;
    cmd->has_pri = false;
    cmd->pri = 0;
    cmd->ttr_ms = 0;
    for (size_t i = 3; i < nt; i++)
        if ((bad = proto_pub_option(&t[i], &seen, cmd)) != NULL)
            return proto_err(err, PROTO_ERROR, bad);
    if (n > p->max_message)
        return proto_err_toobig(err, n, p->max_message);
    return PROTO_CMD;
}

/* Parse a non-PUB command from its tokens. Returns PROTO_CMD or
 * PROTO_ERROR (with err filled in). `rest` is the line after the command
 * name, for ACK's variable id list. */
static proto_result_t proto_simple(const proto_cmd_def_t *d, const proto_tok_t *t, size_t nt,
                                   const char *rest, size_t rest_len,
                                   proto_cmd_t *cmd, char *err)
{
    if (nt < d->min_tok || nt > d->max_tok)
        return proto_err_nargs(err, d);

    cmd->type = d->type;
    switch (d->type) {
    case CMD_SUB: case CMD_GET: case CMD_JOIN: case CMD_UNSUB:
    case CMD_STATS:
        if (nt >= 2) {
            if (!proto_topic_valid(t[1].p, t[1].n))
                return proto_err(err, PROTO_ERROR, "-ERR bad topic\r\n");
            cmd->topic = t[1].p;
            cmd->topic_len = t[1].n;
        }
        if (nt == 3) {
            if (!proto_parse_u64(t[2].p, t[2].n, &cmd->num))
                return proto_err(err, PROTO_ERROR, d->type == CMD_SUB ?
                                 "-ERR bad credit\r\n" : "-ERR bad timeout\r\n");
            if (d->type == CMD_SUB && cmd->num > UINT32_MAX)
                return proto_err(err, PROTO_ERROR, "-ERR bad credit\r\n");
            cmd->has_num = true;
        }
        break;
    case CMD_NACK: case CMD_TOUCH: case CMD_BURY:
        if (!proto_parse_u64(t[1].p, t[1].n, &cmd->id))
            return proto_err(err, PROTO_ERROR, "-ERR bad id\r\n");
        if (nt == 3) {
            bool bury = d->type == CMD_BURY;
            if (!proto_parse_u64(t[2].p, t[2].n, &cmd->num) || (bury && cmd->num > UINT32_MAX))
                return proto_err(err, PROTO_ERROR,
                                 bury ? "-ERR bad priority\r\n" : "-ERR bad delay\r\n");
            cmd->has_num = true;
        }
        break;
    case CMD_KICK: case CMD_PAUSE:
        if (!proto_topic_valid(t[1].p, t[1].n))
            return proto_err(err, PROTO_ERROR, "-ERR bad topic\r\n");
        cmd->topic = t[1].p;
        cmd->topic_len = t[1].n;
        if (!proto_parse_u64(t[2].p, t[2].n, &cmd->num))
            return proto_err(err, PROTO_ERROR, d->type == CMD_KICK ? "-ERR bad count\r\n"
                                                                   : "-ERR bad duration\r\n");
        cmd->has_num = true;
        break;
    case CMD_ACK:
        if (!proto_ack_ids(rest, rest_len, cmd))
            return proto_err(err, PROTO_ERROR, "-ERR bad id\r\n");
        break;
    case CMD_AUTH:
        if (!proto_word_valid(&t[1]) || !proto_word_valid(&t[2]))
            return proto_err(err, PROTO_ERROR, "-ERR bad argument\r\n");
        cmd->user = t[1].p;
        cmd->user_len = t[1].n;
        cmd->pass = t[2].p;
        cmd->pass_len = t[2].n;
        break;
    default:
        break;
    }
    return PROTO_CMD;
}

/* Find the line at buf[0..len). Returns 1 with *content (terminator
 * excluded) and *total (terminator included), 0 when more bytes are
 * needed, -1 when it is known to be longer than max_line. */
static int proto_line(const proto_parser_t *p, const char *buf, size_t len,
                      size_t *content, size_t *total)
{
    size_t scan = len;

    /* No need to look past max_line + "\r\n". */
    if (len >= 2 && (uint64_t)(len - 2) > p->max_line)
        scan = (size_t)p->max_line + 2;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl)
        return proto_too_long(len, len && buf[len - 1] == '\r', p->max_line) ? -1 : 0;
    size_t i = (size_t)(nl - buf);
    size_t c = (i && buf[i - 1] == '\r') ? i - 1 : i;
    if (c > p->max_line)
        return -1;
    *content = c;
    *total = i + 1;
    return 1;
}

proto_result_t proto_pub_bad_trailer(proto_parser_t *p, char *err)
{
    p->skip = 0;
    p->skip_state = SK_RESYNC;
    return proto_err(err, PROTO_ERROR, "-ERR payload not followed by \\r\\n\r\n");
}

/* Handle a PUB line: either an error (payload skipped unless there is no
 * usable count) or a wait for / return of its payload. */
static proto_result_t proto_pub(proto_parser_t *p, const proto_cmd_def_t *d,
                                const proto_tok_t *t, size_t nt,
                                const char *buf, size_t len, size_t line_total,
                                proto_cmd_t *cmd, size_t *used, char *err)
{
    uint64_t n;

    *used = 0;
    /* Without a usable count there is no payload to skip: the bytes that
     * follow will be read as commands. */
    if (nt < d->min_tok) {
        *used = line_total;
        return proto_err_nargs(err, d);
    }
    if (!proto_parse_u64(t[2].p, t[2].n, &n)) {
        *used = line_total;
        return proto_err(err, PROTO_ERROR, "-ERR bad byte count\r\n");
    }

    if (proto_pub_check(p, d, t, nt, n, cmd, err) != PROTO_CMD) {
        *used = line_total;
        proto_skip_payload(p, n);
        return PROTO_ERROR;
    }

    /* The command is known from here on; a reader that places payloads
     * itself may use it even while the payload is still to come. */
    cmd->type = CMD_PUB;
    cmd->topic = t[1].p;
    cmd->topic_len = t[1].n;
    cmd->has_num = true;
    cmd->num = n;
    cmd->payload = buf + line_total;
    cmd->payload_len = (size_t)n;
    /* Wait for payload + at least one trailer byte; compare without adding
     * so a huge n cannot overflow. */
    size_t have = len - line_total;
    if (n >= have)
        return PROTO_NEED_MORE;
    size_t tr = line_total + (size_t)n;
    size_t end;
    if (buf[tr] == '\n') {
        end = tr + 1;
    } else if (buf[tr] == '\r' && tr + 1 == len) {
        return PROTO_NEED_MORE;
    } else if (buf[tr] == '\r' && buf[tr + 1] == '\n') {
        end = tr + 2;
    } else {
        *used = tr;
        cmd->type = CMD_NONE;
        return proto_pub_bad_trailer(p, err);
    }
    *used = end;
    return PROTO_CMD;
}

proto_result_t proto_parse(proto_parser_t *p, const char *buf, size_t len,
                           proto_cmd_t *cmd, size_t *consumed, char *err)
{
    size_t off = 0;

    for (;;) {
        bool fatal = false;
        off += proto_discard(p, buf + off, len - off, &fatal);
        *consumed = off;
        if (fatal)
            return proto_err(err, PROTO_FATAL, ERR_LINE_TOO_LONG);
        if (p->skip_state != SK_NONE)
            return PROTO_NEED_MORE;

        const char *line = buf + off;
        size_t avail = len - off, content, total;
        int lr = proto_line(p, line, avail, &content, &total);
        if (lr < 0)
            return proto_err(err, PROTO_FATAL, ERR_LINE_TOO_LONG);
        if (lr == 0)
            return PROTO_NEED_MORE;

        proto_tok_t t[TOK_MAX];
        const proto_cmd_def_t *d = &proto_cmds[0];   /* pub */
        size_t nt = 3;
        if (!proto_pub_tokens(line, content, t)) {
            nt = proto_tokens(line, content, t, 1);
            if (nt == 0) {      /* empty or blank line: no reply */
                off += total;
                continue;
            }
            d = proto_lookup(&t[0]);
            if (!d) {
                *consumed = off + total;
                return proto_err(err, PROTO_ERROR, "-ERR unknown command\r\n");
            }
            /* Split off only as many tokens as the command can take (and
             * one more, to tell "too many"); a command without a bound
             * (ACK's id list) reads the rest of the line itself. */
            if (nt > 1 && d->max_tok > 1 && d->max_tok <= TOK_MAX)
                nt = proto_tokens(line, content, t, d->max_tok);
        }

        memset(cmd, 0, offsetof(proto_cmd_t, has_pri));
        if (d->type == CMD_PUB) {
            size_t used;
            proto_result_t r = proto_pub(p, d, t, nt, line, avail, total, cmd, &used, err);
            *consumed = off + used;
            return r;
        }
        const char *rest = t[0].p + t[0].n;
        *consumed = off + total;
        return proto_simple(d, t, nt, rest, (size_t)(line + content - rest), cmd, err);
    }
}

/* ---- replies, for clients ---- */

/* Body of a "+STATS n" / "+TOPICS n" / "MSG ... n" reply: n bytes after the
 * header line, then "\r\n" or "\n". Same return convention as
 * proto_parse_reply. */
static int proto_reply_body(const char *buf, size_t len, size_t hdr, uint64_t n,
                            proto_reply_t *r, size_t *consumed)
{
    size_t have = len - hdr;

    if (n >= have)
        return 0;
    size_t tr = hdr + (size_t)n;
    size_t end;
    if (buf[tr] == '\n') {
        end = tr + 1;
    } else if (buf[tr] == '\r') {
        if (tr + 1 == len)
            return 0;
        if (buf[tr + 1] != '\n')
            return -1;
        end = tr + 2;
    } else {
        return -1;
    }
    r->body = buf + hdr;
    r->body_len = (size_t)n;
    *consumed = end;
    return 1;
}

/* Does line[0..n) start with the literal word w (followed by the end or a
 * space)? Sets *rest to what follows the space. */
static bool proto_word(const char *line, size_t n, const char *w, size_t wl,
                       const char **rest, size_t *rest_len)
{
    if (n < wl)
        return false;
    /* Words are 3 to 7 bytes: compare in place rather than call memcmp. */
    for (size_t i = 0; i < wl; i++)
        if (line[i] != w[i])
            return false;
    if (n == wl) {
        *rest = line + n;
        *rest_len = 0;
        return true;
    }
    if (line[wl] != ' ')
        return false;
    *rest = line + wl + 1;
    *rest_len = n - wl - 1;
    return true;
}

/* Cut the next single-space-separated field from *s. Fields are a few
 * bytes long: a plain loop beats a call to memchr. */
static bool proto_field(const char **s, size_t *n, const char **f, size_t *fl)
{
    size_t k = 0;

    while (k < *n && (*s)[k] != ' ')
        k++;
    const char *sp = k < *n ? *s + k : NULL;

    if (k == 0)
        return false;
    *f = *s;
    *fl = k;
    *s += sp ? k + 1 : k;
    *n -= sp ? k + 1 : k;
    return !sp || *n > 0;   /* no trailing lone space */
}

static int proto_reply_msg(const char *buf, size_t len, const char *args, size_t an,
                           size_t hdr, proto_reply_t *r, size_t *consumed)
{
    const char *f;
    size_t fl;
    uint64_t attempt, n;

    if (!proto_field(&args, &an, &f, &fl) || !proto_topic_valid(f, fl))
        return -1;
    r->topic = f;
    r->topic_len = fl;
    if (!proto_field(&args, &an, &f, &fl) || !proto_parse_u64(f, fl, &r->id))
        return -1;
    if (!proto_field(&args, &an, &f, &fl) || !proto_parse_u64(f, fl, &attempt) ||
        attempt > UINT32_MAX)
        return -1;
    r->attempt = (uint32_t)attempt;
    if (!proto_field(&args, &an, &f, &fl) || an != 0 || !proto_parse_u64(f, fl, &n))
        return -1;
    r->type = REPLY_MSG;
    return proto_reply_body(buf, len, hdr, n, r, consumed);
}

static int proto_reply_error(const char *line, size_t n, proto_reply_t *r)
{
    size_t i = 1;

    while (i < n && line[i] >= 'A' && line[i] <= 'Z')
        i++;
    if (i == 1 || (i < n && line[i] != ' '))
        return -1;
    r->type = REPLY_ERROR;
    r->code = line + 1;
    r->code_len = i - 1;
    r->text = line + (i < n ? i + 1 : i);
    r->text_len = i < n ? n - i - 1 : 0;
    return 1;
}

int proto_parse_reply(const char *buf, size_t len, proto_reply_t *r, size_t *consumed)
{
    size_t scan = len < PROTO_REPLY_LINE_MAX + 2 ? len : PROTO_REPLY_LINE_MAX + 2;
    const char *rest;
    size_t rn;

    *consumed = 0;
    if (len == 0)
        return 0;
    if (buf[0] != '+' && buf[0] != '-' && buf[0] != 'M')
        return -1;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl)
        return len > PROTO_REPLY_LINE_MAX + 1 ? -1 : 0;

    size_t hdr = (size_t)(nl - buf) + 1;
    size_t n = hdr - 1;
    if (n && buf[n - 1] == '\r')
        n--;
    if (n > PROTO_REPLY_LINE_MAX)
        return -1;

    memset(r, 0, sizeof *r);
    if (buf[0] == '-') {
        int e = proto_reply_error(buf, n, r);
        if (e == 1)
            *consumed = hdr;
        return e;
    }
    if (proto_word(buf, n, "MSG", 3, &rest, &rn))
        return proto_reply_msg(buf, len, rest, rn, hdr, r, consumed);
    if (proto_word(buf, n, "+OK", 3, &rest, &rn)) {
        r->type = REPLY_OK;
        r->text = rest;
        r->text_len = rn;
        *consumed = hdr;
        return 1;
    }
    if (n == 5 && memcmp(buf, "+PONG", 5) == 0) {
        r->type = REPLY_PONG;
        *consumed = hdr;
        return 1;
    }
    if (n == 4 && memcmp(buf, "+BYE", 4) == 0) {
        r->type = REPLY_BYE;
        *consumed = hdr;
        return 1;
    }
    bool stats = proto_word(buf, n, "+STATS", 6, &rest, &rn);
    if (stats || proto_word(buf, n, "+TOPICS", 7, &rest, &rn)) {
        uint64_t blen;
        if (!proto_parse_u64(rest, rn, &blen))
            return -1;
        r->type = stats ? REPLY_STATS : REPLY_TOPICS;
        return proto_reply_body(buf, len, hdr, blen, r, consumed);
    }
    return -1;
}
