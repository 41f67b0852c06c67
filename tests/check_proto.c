/* check_proto.c: unit tests for the wire protocol (src/proto.c): request
 * framing and parsing, payload skipping and resync, split reads, reply
 * formatting and the client-side reply parser.
 *
 * Most tests drive a small "connection" (struct conn below) that appends
 * what the socket would deliver, calls proto_parse until it needs more, drops
 * the consumed bytes, and records every result as text so whole sequences
 * can be compared.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define CONN_BUF (1 << 16)
#define LOG_MAX (1 << 16)

typedef struct conn {
    proto_parser_t p;
    char buf[CONN_BUF];   /* unparsed input, as a connection would keep it */
    size_t len;
    size_t peak;          /* most bytes ever buffered */
    char log[LOG_MAX];    /* one entry per result, each ended by '|' */
    size_t loglen;
    int fatal;            /* a PROTO_FATAL was returned: no more parsing */
} conn_t;

static void log_add(conn_t *c, const char *s, size_t n)
{
    ck_assert_uint_lt(c->loglen + n, LOG_MAX);
    memcpy(c->log + c->loglen, s, n);
    c->loglen += n;
    c->log[c->loglen] = '\0';
}

static void log_str(conn_t *c, const char *s)
{
    log_add(c, s, strlen(s));
}

/* Bytes as text, with anything unprintable as \xHH. */
static void log_bytes(conn_t *c, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[8];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            log_add(c, (const char *)&ch, 1);
        } else {
            snprintf(tmp, sizeof tmp, "\\x%02x", ch);
            log_str(c, tmp);
        }
    }
}

static void log_u64(conn_t *c, const char *key, uint64_t v)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, " %s=%llu", key, (unsigned long long)v);
    log_str(c, tmp);
}

static const char *const cmd_names[] = {
    "NONE", "PUB", "SUB", "UNSUB", "GET", "ACK", "NACK", "TOUCH", "JOIN",
    "STATS", "TOPICS", "AUTH", "PING", "QUIT", "BURY", "KICK", "PAUSE",
};

/* Describe a parsed command: only the fields that apply to it. */
static void log_cmd(conn_t *c, const proto_cmd_t *cmd)
{
    log_str(c, cmd_names[cmd->type]);
    if (cmd->topic) {
        log_str(c, " t=");
        log_bytes(c, cmd->topic, cmd->topic_len);
    }
    if (cmd->has_num)
        log_u64(c, "n", cmd->num);
    if (cmd->type == CMD_NACK || cmd->type == CMD_TOUCH || cmd->type == CMD_BURY)
        log_u64(c, "id", cmd->id);
    if (cmd->delay_ms)
        log_u64(c, "delay", cmd->delay_ms);
    if (cmd->type == CMD_PUB && cmd->has_pri)
        log_u64(c, "pri", cmd->pri);
    if (cmd->type == CMD_PUB && cmd->ttr_ms)
        log_u64(c, "ttr", cmd->ttr_ms);
    if (cmd->type == CMD_ACK) {
        size_t pos = 0;
        uint64_t id;
        log_str(c, " ids=");
        while (proto_cmd_next_id(cmd, &pos, &id))
            log_u64(c, "", id);
        log_u64(c, "nids", cmd->nids);
        log_u64(c, "first", cmd->id);
    }
    if (cmd->user) {
        log_str(c, " user=");
        log_bytes(c, cmd->user, cmd->user_len);
        log_str(c, " pass=");
        log_bytes(c, cmd->pass, cmd->pass_len);
    }
    if (cmd->type == CMD_PUB) {
        ck_assert_ptr_nonnull(cmd->payload);
        log_str(c, " p=");
        log_bytes(c, cmd->payload, cmd->payload_len);
    }
    log_str(c, "|");
}

/* Every error reply is one line ending "\r\n" and NUL-terminated; log it
 * without its terminator. */
static void log_err(conn_t *c, const char *tag, const char *err)
{
    size_t n = strlen(err);
    ck_assert_uint_lt(n, PROTO_ERR_MAX);
    ck_assert_uint_ge(n, 2);
    ck_assert(err[n - 2] == '\r' && err[n - 1] == '\n');
    ck_assert_ptr_null(memchr(err, '\n', n - 1));
    log_str(c, tag);
    log_bytes(c, err, n - 2);
    log_str(c, "|");
}

static void conn_init(conn_t *c, uint64_t max_line, uint64_t max_message)
{
    memset(c, 0, sizeof *c);
    proto_parser_init(&c->p, max_line, max_message);
}

/* Parse everything the buffer holds, as a connection's read callback would. */
static void conn_drain(conn_t *c)
{
    while (!c->fatal) {
        proto_cmd_t cmd;
        size_t consumed = (size_t)-1;
        char err[PROTO_ERR_MAX];
        proto_result_t r = proto_parse(&c->p, c->buf, c->len, &cmd, &consumed, err);

        ck_assert_uint_le(consumed, c->len);
        if (r == PROTO_CMD)
            log_cmd(c, &cmd);
        else if (r == PROTO_ERROR)
            log_err(c, "E:", err);
        else if (r == PROTO_FATAL)
            log_err(c, "F:", err);
        if (r == PROTO_CMD || r == PROTO_ERROR)
            ck_assert_uint_gt(consumed, 0);
        memmove(c->buf, c->buf + consumed, c->len - consumed);
        c->len -= consumed;
        if (r == PROTO_FATAL)
            c->fatal = 1;
        if (r == PROTO_NEED_MORE)
            break;
    }
}

static void conn_feed(conn_t *c, const char *data, size_t n)
{
    if (c->fatal)
        return;
    ck_assert_uint_le(c->len + n, CONN_BUF);
    memcpy(c->buf + c->len, data, n);
    c->len += n;
    if (c->len > c->peak)
        c->peak = c->len;
    conn_drain(c);
}

static void conn_feed_str(conn_t *c, const char *s)
{
    conn_feed(c, s, strlen(s));
}

/* Feed data in chunks of `step` bytes. */
static void conn_feed_steps(conn_t *c, const char *data, size_t n, size_t step)
{
    for (size_t i = 0; i < n; i += step)
        conn_feed(c, data + i, n - i < step ? n - i : step);
}

/* Parse one complete input with default-ish limits and compare the log. */
static void expect(const char *in, const char *want)
{
    static conn_t c;
    conn_init(&c, 4096, 1 << 20);
    conn_feed_str(&c, in);
    ck_assert_str_eq(c.log, want);
}

static void expect_n(const char *in, size_t n, const char *want)
{
    static conn_t c;
    conn_init(&c, 4096, 1 << 20);
    conn_feed(&c, in, n);
    ck_assert_str_eq(c.log, want);
}

/* ---- valid commands ---- */

START_TEST(test_pub)
{
    expect("PUB orders 5\r\nhello\r\n", "PUB t=orders n=5 p=hello|");
    expect("PUB orders 5\nhello\n", "PUB t=orders n=5 p=hello|");
    expect("PUB t 0\r\n\r\n", "PUB t=t n=0 p=|");
    expect("PUB t 3 delay=250\r\nabc\r\n", "PUB t=t n=3 delay=250 p=abc|");
    expect("PUB t 3 DELAY=7\r\nabc\r\n", "PUB t=t n=3 delay=7 p=abc|");
    expect("PUB t 3 delay=0\r\nabc\r\n", "PUB t=t n=3 p=abc|");
    /* pri= and ttr=, in any order, with or without delay= */
    expect("PUB t 3 pri=0\r\nabc\r\n", "PUB t=t n=3 pri=0 p=abc|");
    expect("PUB t 3 PRI=4294967295 ttr=1500\r\nabc\r\n",
           "PUB t=t n=3 pri=4294967295 ttr=1500 p=abc|");
    expect("PUB t 3 ttr=9 delay=4 pri=7\r\nabc\r\n", "PUB t=t n=3 delay=4 pri=7 ttr=9 p=abc|");
    expect("pub T 1\r\nx\r\n", "PUB t=T n=1 p=x|");
    expect("Pub a.b_c:d-E9 1\r\nx\r\n", "PUB t=a.b_c:d-E9 n=1 p=x|");
}
END_TEST

/* The one-pass split of "PUB t n" and the general tokenizer must agree:
 * the same PUB, spelled for one and then the other, parses the same, and
 * every way out of the short path still ends in the general one's answer. */
START_TEST(test_pub_fast_and_general_agree)
{
    static const char *const pairs[][2] = {
        { "PUB t 3\r\nabc\r\n", "PUB\tt  3 \r\nabc\r\n" },
        { "pUb orders 03\r\nabc\r\n", " pub orders\t03\r\nabc\r\n" },
        { "PUB t 0\n\n", "PUB t\t0\n\n" },
    };
    static conn_t a, b;

    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        conn_init(&a, 4096, 1 << 20);
        conn_feed_str(&a, pairs[i][0]);
        conn_init(&b, 4096, 1 << 20);
        conn_feed_str(&b, pairs[i][1]);
        ck_assert_str_eq(a.log, b.log);
        ck_assert(strncmp(a.log, "PUB ", 4) == 0);
    }
    /* Leaving the short path at each of its checks. */
    expect("PUB a/b 1\r\nx\r\nPING\r\n", "E:-ERR bad topic|PING|");
    expect("PUX t 1\r\n", "E:-ERR unknown command|");
    expect("PUB t 1x\r\nPING\r\n", "E:-ERR bad byte count|PING|");
    expect("PUB t\r\nPING\r\n", "E:-ERR wrong number of arguments for 'pub'|PING|");
    expect("PUB  1\r\nx\r\n", "E:-ERR wrong number of arguments for 'pub'|E:-ERR unknown command|");
    /* Topic bytes are fine but 256 of them are too many. */
    char line[512];
    memset(line, 'a', sizeof line);
    memcpy(line, "PUB ", 4);
    snprintf(line + 4 + PROTO_TOPIC_MAX + 1, sizeof line - 4 - PROTO_TOPIC_MAX - 1, " 1\r\nx\r\nPING\r\n");
    expect(line, "E:-ERR bad topic|PING|");
}
END_TEST

START_TEST(test_pub_binary_payload)
{
    static const char in[] = "PUB t 7\r\na\0b\nc\r\n\r\n";
    expect_n(in, sizeof in - 1, "PUB t=t n=7 p=a\\x00b\\x0ac\\x0d\\x0a|");

    static const char in2[] = "PUB t 4\n\n\n\n\n\n";
    expect_n(in2, sizeof in2 - 1, "PUB t=t n=4 p=\\x0a\\x0a\\x0a\\x0a|");

    /* A payload that looks like commands is still payload. */
    expect("PUB t 6\r\nPING\r\n\r\nPING\r\n", "PUB t=t n=6 p=PING\\x0d\\x0a|PING|");
}
END_TEST

START_TEST(test_pub_points_into_buffer)
{
    static const char in[] = "PUB top 3\r\nabc\r\nPING\r\n";
    proto_parser_t p;
    proto_cmd_t cmd;
    size_t used;
    char err[PROTO_ERR_MAX];

    proto_parser_init(&p, 4096, 100);
    ck_assert_int_eq(proto_parse(&p, in, sizeof in - 1, &cmd, &used, err), PROTO_CMD);
    ck_assert_uint_eq(used, 16);
    ck_assert_ptr_eq(cmd.topic, in + 4);
    ck_assert_ptr_eq(cmd.payload, in + 11);
    ck_assert_uint_eq(cmd.payload_len, 3);
    ck_assert_int_eq(proto_parse(&p, in + used, sizeof in - 1 - used, &cmd, &used, err),
                     PROTO_CMD);
    ck_assert_int_eq(cmd.type, CMD_PING);
    ck_assert_uint_eq(used, 6);
}
END_TEST

START_TEST(test_pub_waits_for_payload)
{
    proto_parser_t p;
    proto_cmd_t cmd;
    size_t used;
    char err[PROTO_ERR_MAX];
    static const char in[] = "PUB t 5\r\nhello\r\n";

    proto_parser_init(&p, 4096, 100);
    /* Every strict prefix: nothing yet, nothing consumed. */
    for (size_t n = 0; n < sizeof in - 2; n++) {
        used = 99;
        ck_assert_int_eq(proto_parse(&p, in, n, &cmd, &used, err), PROTO_NEED_MORE);
        ck_assert_uint_eq(used, 0);
    }
    /* "\r" alone could still be a "\r\n": wait. */
    ck_assert_int_eq(proto_parse(&p, in, sizeof in - 2, &cmd, &used, err), PROTO_NEED_MORE);
    ck_assert_int_eq(proto_parse(&p, in, sizeof in - 1, &cmd, &used, err), PROTO_CMD);
    ck_assert_uint_eq(used, sizeof in - 1);
}
END_TEST

START_TEST(test_sub_unsub)
{
    expect("SUB orders\r\n", "SUB t=orders|");
    expect("SUB orders 10\r\n", "SUB t=orders n=10|");
    expect("sub orders 0\r\n", "SUB t=orders n=0|");
    expect("SUB t 4294967295\r\n", "SUB t=t n=4294967295|");
    expect("UNSUB orders\r\n", "UNSUB t=orders|");
    expect("unsub Orders\n", "UNSUB t=Orders|");
}
END_TEST

START_TEST(test_get_join)
{
    expect("GET t\r\n", "GET t=t|");
    expect("GET t 1500\r\n", "GET t=t n=1500|");
    expect("GET t 0\r\n", "GET t=t n=0|");
    expect("JOIN t\r\n", "JOIN t=t|");
    expect("JOIN t 0\r\n", "JOIN t=t n=0|");
    expect("jOiN t 18446744073709551615\r\n", "JOIN t=t n=18446744073709551615|");
}
END_TEST

START_TEST(test_ack)
{
    expect("ACK 1\r\n", "ACK ids= =1 nids=1 first=1|");
    expect("ACK 1 2 3\r\n", "ACK ids= =1 =2 =3 nids=3 first=1|");
    expect("ack 7 18446744073709551615 0\r\n",
           "ACK ids= =7 =18446744073709551615 =0 nids=3 first=7|");
    expect("ACK  4 \t 5  \r\n", "ACK ids= =4 =5 nids=2 first=4|");

    /* Many ids: more than fit in the fixed token array. */
    expect("ACK 1 2 3 4 5 6 7 8 9 10\r\n",
           "ACK ids= =1 =2 =3 =4 =5 =6 =7 =8 =9 =10 nids=10 first=1|");
}
END_TEST

START_TEST(test_ack_ids_span)
{
    static const char in[] = "ACK  4 \t 5  \r\n";
    proto_parser_t p;
    proto_cmd_t cmd;
    size_t used;
    char err[PROTO_ERR_MAX];

    proto_parser_init(&p, 4096, 100);
    ck_assert_int_eq(proto_parse(&p, in, sizeof in - 1, &cmd, &used, err), PROTO_CMD);
    ck_assert_ptr_eq(cmd.ids, in + 5);
    ck_assert_uint_eq(cmd.ids_len, 5);   /* "4 \t 5" */
    ck_assert_uint_eq(cmd.nids, 2);
}
END_TEST

/* Up to PROTO_IDS_INLINE ids come from idv, more from the text: both
 * walks give every id in order, at the edge and past it. */
START_TEST(test_ack_ids_inline_edge)
{
    static const size_t counts[] = { PROTO_IDS_INLINE - 1, PROTO_IDS_INLINE, PROTO_IDS_INLINE + 1,
                                     3 * PROTO_IDS_INLINE };
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        char in[8192], want[16384];
        size_t n = (size_t)snprintf(in, sizeof in, "ACK");
        size_t w = (size_t)snprintf(want, sizeof want, "ACK ids=");
        for (size_t i = 0; i < counts[k]; i++) {
            n += (size_t)snprintf(in + n, sizeof in - n, " %zu", 1000 + i * 7);
            w += (size_t)snprintf(want + w, sizeof want - w, " =%zu", 1000 + i * 7);
        }
        snprintf(in + n, sizeof in - n, "\r\n");
        snprintf(want + w, sizeof want - w, " nids=%zu first=1000|", counts[k]);
        expect(in, want);
    }
}
END_TEST

START_TEST(test_nack_touch)
{
    expect("NACK 5\r\n", "NACK id=5|");
    expect("NACK 5 100\r\n", "NACK n=100 id=5|");
    expect("nack 5 0\r\n", "NACK n=0 id=5|");
    expect("TOUCH 42\r\n", "TOUCH id=42|");
    expect("touch 18446744073709551615\r\n", "TOUCH id=18446744073709551615|");
}
END_TEST

START_TEST(test_bury_kick_pause)
{
    expect("BURY 5\r\n", "BURY id=5|");
    expect("bury 5 4294967295\r\n", "BURY n=4294967295 id=5|");
    expect("BURY 5 4294967296\r\n", "E:-ERR bad priority|");
    expect("BURY x\r\n", "E:-ERR bad id|");
    expect("BURY\r\n", "E:-ERR wrong number of arguments for 'bury'|");
    expect("BURY 1 2 3\r\n", "E:-ERR wrong number of arguments for 'bury'|");
    expect("KICK jobs 10\r\n", "KICK t=jobs n=10|");
    expect("KICK jobs\r\n", "E:-ERR wrong number of arguments for 'kick'|");
    expect("KICK a/b 1\r\n", "E:-ERR bad topic|");
    expect("KICK jobs -1\r\n", "E:-ERR bad count|");
    expect("PAUSE jobs 60000\r\n", "PAUSE t=jobs n=60000|");
    expect("pause jobs 0\r\n", "PAUSE t=jobs n=0|");
    expect("PAUSE jobs x\r\n", "E:-ERR bad duration|");
    expect("PAUSE jobs 1 2\r\n", "E:-ERR wrong number of arguments for 'pause'|");
}
END_TEST

START_TEST(test_misc_commands)
{
    expect("STATS\r\n", "STATS|");
    expect("STATS orders\r\n", "STATS t=orders|");
    expect("TOPICS\r\n", "TOPICS|");
    expect("AUTH alice s3cr3t!\r\n", "AUTH user=alice pass=s3cr3t!|");
    expect("PING\r\n", "PING|");
    expect("QUIT\r\n", "QUIT|");
    expect("ping\nPiNg\nPING\n", "PING|PING|PING|");
    expect("quit\nstats\ntopics\n", "QUIT|STATS|TOPICS|");
}
END_TEST

START_TEST(test_topic_case_sensitive)
{
    expect("SUB Orders\r\nSUB orders\r\n", "SUB t=Orders|SUB t=orders|");
}
END_TEST

START_TEST(test_blanks)
{
    expect("  PING  \r\n", "PING|");
    expect("\tSUB\t\tt \t 3\t\r\n", "SUB t=t n=3|");
    expect("PUB  t \t 2   delay=5 \r\nab\r\n", "PUB t=t n=2 delay=5 p=ab|");
}
END_TEST

/* ---- malformed commands ---- */

START_TEST(test_wrong_arg_counts)
{
    expect("PUB\r\n", "E:-ERR wrong number of arguments for 'pub'|");
    expect("PUB t\r\n", "E:-ERR wrong number of arguments for 'pub'|");
    expect("SUB\r\n", "E:-ERR wrong number of arguments for 'sub'|");
    expect("SUB t 1 2\r\n", "E:-ERR wrong number of arguments for 'sub'|");
    expect("UNSUB\r\n", "E:-ERR wrong number of arguments for 'unsub'|");
    expect("UNSUB t 1\r\n", "E:-ERR wrong number of arguments for 'unsub'|");
    expect("GET\r\n", "E:-ERR wrong number of arguments for 'get'|");
    expect("GET t 1 2\r\n", "E:-ERR wrong number of arguments for 'get'|");
    expect("ACK\r\n", "E:-ERR wrong number of arguments for 'ack'|");
    expect("ACK   \r\n", "E:-ERR wrong number of arguments for 'ack'|");
    expect("NACK\r\n", "E:-ERR wrong number of arguments for 'nack'|");
    expect("NACK 1 2 3\r\n", "E:-ERR wrong number of arguments for 'nack'|");
    expect("TOUCH\r\n", "E:-ERR wrong number of arguments for 'touch'|");
    expect("TOUCH 1 2\r\n", "E:-ERR wrong number of arguments for 'touch'|");
    expect("JOIN\r\n", "E:-ERR wrong number of arguments for 'join'|");
    expect("JOIN t 1 2\r\n", "E:-ERR wrong number of arguments for 'join'|");
    expect("STATS a b\r\n", "E:-ERR wrong number of arguments for 'stats'|");
    expect("TOPICS x\r\n", "E:-ERR wrong number of arguments for 'topics'|");
    expect("AUTH u\r\n", "E:-ERR wrong number of arguments for 'auth'|");
    expect("AUTH u p x\r\n", "E:-ERR wrong number of arguments for 'auth'|");
    expect("PING x\r\n", "E:-ERR wrong number of arguments for 'ping'|");
    expect("QUIT now\r\n", "E:-ERR wrong number of arguments for 'quit'|");
    expect("PING a b c d e f g\r\n", "E:-ERR wrong number of arguments for 'ping'|");
}
END_TEST

START_TEST(test_bad_numbers)
{
    expect("SUB t -1\r\n", "E:-ERR bad credit|");
    expect("SUB t +1\r\n", "E:-ERR bad credit|");
    expect("SUB t 1x\r\n", "E:-ERR bad credit|");
    expect("SUB t 4294967296\r\n", "E:-ERR bad credit|");
    expect("SUB t 18446744073709551616\r\n", "E:-ERR bad credit|");
    expect("GET t 1.5\r\n", "E:-ERR bad timeout|");
    expect("GET t 0x10\r\n", "E:-ERR bad timeout|");
    expect("JOIN t 18446744073709551616\r\n", "E:-ERR bad timeout|");
    expect("JOIN t 99999999999999999999999\r\n", "E:-ERR bad timeout|");
    expect("NACK abc\r\n", "E:-ERR bad id|");
    expect("NACK 1 -5\r\n", "E:-ERR bad delay|");
    expect("TOUCH 18446744073709551616\r\n", "E:-ERR bad id|");
    expect("ACK 999 abc\r\n", "E:-ERR bad id|");
    expect("ACK abc 999\r\n", "E:-ERR bad id|");
    expect("ACK 1 2 3 4 5 6 7 8 9 1O\r\n", "E:-ERR bad id|");
    expect("ACK 18446744073709551616\r\n", "E:-ERR bad id|");
    /* Leading zeros are still plain decimal digits. */
    expect("TOUCH 007\r\n", "TOUCH id=7|");
    expect("TOUCH 000000000000000000000000000001\r\n", "TOUCH id=1|");
}
END_TEST

START_TEST(test_bad_topics)
{
    char line[600];

    expect("SUB a/b\r\n", "E:-ERR bad topic|");
    expect("SUB a*\r\n", "E:-ERR bad topic|");
    expect("SUB caf\xc3\xa9\r\n", "E:-ERR bad topic|");
    expect("GET a\x01 5\r\n", "E:-ERR bad topic|");
    expect("UNSUB a,b\r\n", "E:-ERR bad topic|");
    expect("JOIN a=b\r\n", "E:-ERR bad topic|");
    expect("STATS a\"b\r\n", "E:-ERR bad topic|");
    /* Bad topic beats bad number: arguments are checked left to right. */
    expect("SUB a/b x\r\n", "E:-ERR bad topic|");

    /* 255 bytes is the longest topic; 256 is refused. */
    memcpy(line, "SUB ", 4);
    memset(line + 4, 'a', 255);
    strcpy(line + 4 + 255, "\r\n");
    static conn_t c;
    conn_init(&c, 4096, 100);
    conn_feed_str(&c, line);
    ck_assert_uint_eq(c.loglen, strlen("SUB t=|") + 255);
    ck_assert(strncmp(c.log, "SUB t=aaaa", 10) == 0);

    memset(line + 4, 'a', 256);
    strcpy(line + 4 + 256, "\r\n");
    conn_init(&c, 4096, 100);
    conn_feed_str(&c, line);
    ck_assert_str_eq(c.log, "E:-ERR bad topic|");
}
END_TEST

START_TEST(test_unknown_and_unprintable)
{
    expect("FOO\r\n", "E:-ERR unknown command|");
    expect("PINGX\r\n", "E:-ERR unknown command|");
    expect("PIN\r\n", "E:-ERR unknown command|");
    expect("P\x09NG\r\n", "E:-ERR unknown command|");   /* tab splits the name */
    expect("P\xc9NG\r\n", "E:-ERR unknown command|");   /* 0xc9|0x20 is not 'i' */
    expect("\x1b[31mRED\r\n", "E:-ERR unknown command|");
    expect("PING\r\r\n", "E:-ERR unknown command|");    /* a stray \r is a byte */
    expect_n("PI\0G\r\n", 6, "E:-ERR unknown command|");
    expect_n("SUB t\0\r\n", 8, "E:-ERR bad topic|");
    expect("AUTH al\x7fice pw\r\n", "E:-ERR bad argument|");
    expect("AUTH alice p\xffw\r\n", "E:-ERR bad argument|");
    /* Errors never stop the stream. */
    expect("FOO\r\nPING\r\n", "E:-ERR unknown command|PING|");
}
END_TEST

/* ---- framing ---- */

START_TEST(test_crlf_and_lf)
{
    expect("PING\nSUB t 1\r\nPING\r\nGET t\n",
           "PING|SUB t=t n=1|PING|GET t=t|");
    expect("PUB t 2\nab\r\nPUB t 2\r\nab\n", "PUB t=t n=2 p=ab|PUB t=t n=2 p=ab|");
}
END_TEST

START_TEST(test_empty_lines)
{
    static conn_t c;
    proto_cmd_t cmd;
    size_t used = 99;
    char err[PROTO_ERR_MAX];

    expect("\n\r\n\n  \t \r\nPING\r\n\r\n", "PING|");

    /* Only empty lines: all consumed, nothing returned. */
    conn_init(&c, 4096, 100);
    static const char blank[] = "\r\n\n\r\n";
    ck_assert_int_eq(proto_parse(&c.p, blank, 5, &cmd, &used, err), PROTO_NEED_MORE);
    ck_assert_uint_eq(used, 5);
    /* A lone "\r" may be the start of "\r\n": kept. */
    ck_assert_int_eq(proto_parse(&c.p, "\n\r", 2, &cmd, &used, err), PROTO_NEED_MORE);
    ck_assert_uint_eq(used, 1);
}
END_TEST

START_TEST(test_max_line)
{
    static conn_t c;
    char line[64];
    const size_t max = 16;

    /* Exactly max_line bytes: accepted with either terminator. */
    strcpy(line, "SUB abcdefghijkl\n");         /* 16 + "\n" */
    ck_assert_uint_eq(strlen(line), max + 1);
    conn_init(&c, max, 100);
    conn_feed_str(&c, line);
    ck_assert_str_eq(c.log, "SUB t=abcdefghijkl|");

    conn_init(&c, max, 100);
    conn_feed_str(&c, "SUB abcdefghijkl\r\n");
    ck_assert_str_eq(c.log, "SUB t=abcdefghijkl|");

    /* max_line + 1: fatal, whatever the terminator. */
    conn_init(&c, max, 100);
    conn_feed_str(&c, "SUB abcdefghijklm\n");
    ck_assert_str_eq(c.log, "F:-ERR line too long|");
    ck_assert(c.fatal);

    conn_init(&c, max, 100);
    conn_feed_str(&c, "SUB abcdefghijklm\r\n");
    ck_assert_str_eq(c.log, "F:-ERR line too long|");

    /* Unterminated: max_line bytes (or max_line + "\r") may still end well. */
    conn_init(&c, max, 100);
    conn_feed_str(&c, "SUB abcdefghijkl");
    ck_assert_str_eq(c.log, "");
    conn_feed_str(&c, "\r");
    ck_assert_str_eq(c.log, "");
    conn_feed_str(&c, "\n");
    ck_assert_str_eq(c.log, "SUB t=abcdefghijkl|");

    /* One byte past max_line that is not "\r": refused at once. */
    conn_init(&c, max, 100);
    conn_feed_str(&c, "SUB abcdefghijklm");
    ck_assert_str_eq(c.log, "F:-ERR line too long|");

    /* "\r" then something other than "\n": refused at once. */
    conn_init(&c, max, 100);
    conn_feed_str(&c, "SUB abcdefghijkl\r");
    ck_assert_str_eq(c.log, "");
    conn_feed_str(&c, "x");
    ck_assert_str_eq(c.log, "F:-ERR line too long|");

    /* A long unterminated run arriving all at once. */
    conn_init(&c, max, 100);
    memset(line, 'x', 40);
    conn_feed(&c, line, 40);
    ck_assert_str_eq(c.log, "F:-ERR line too long|");

    /* Good commands before the long line are still returned. */
    conn_init(&c, max, 100);
    conn_feed_str(&c, "PING\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx");
    ck_assert_str_eq(c.log, "PING|F:-ERR line too long|");
}
END_TEST

START_TEST(test_max_line_huge)
{
    /* No arithmetic on max_line may overflow. */
    static conn_t c;
    conn_init(&c, UINT64_MAX, UINT64_MAX);
    conn_feed_str(&c, "PING\r\nPUB t 3\r\nab");
    ck_assert_str_eq(c.log, "PING|");
    conn_feed_str(&c, "c\r\n");
    ck_assert_str_eq(c.log, "PING|PUB t=t n=3 p=abc|");
}
END_TEST

/* ---- PUB errors, trailers and skipping ---- */

START_TEST(test_trailer)
{
    expect("PUB t 3\r\nabcXY\r\nPING\r\n",
           "E:-ERR payload not followed by \\x5cr\\x5cn|PING|");
    expect("PUB t 3\r\nabc\rX\nPING\r\n",
           "E:-ERR payload not followed by \\x5cr\\x5cn|PING|");
    expect("PUB t 3\r\nabcd\nPING\r\n",
           "E:-ERR payload not followed by \\x5cr\\x5cn|PING|");
    /* The resync line is the rest of the bad trailer's line. */
    expect("PUB t 3\r\nabc PING\r\nPING\r\n",
           "E:-ERR payload not followed by \\x5cr\\x5cn|PING|");
    expect("PUB t 3\r\nabc\r\r\nPING\r\n",
           "E:-ERR payload not followed by \\x5cr\\x5cn|PING|");
}
END_TEST

START_TEST(test_trailer_resync_limits)
{
    static conn_t c;
    char junk[64];

    /* Garbage after a payload is one line: up to max_line bytes. */
    conn_init(&c, 16, 100);
    conn_feed_str(&c, "PUB t 1\nx");
    memset(junk, 'j', 16);
    conn_feed(&c, junk, 16);
    ck_assert_str_eq(c.log, "E:-ERR payload not followed by \\x5cr\\x5cn|");
    conn_feed_str(&c, "\r");
    conn_feed_str(&c, "\nPING\n");
    ck_assert_str_eq(c.log, "E:-ERR payload not followed by \\x5cr\\x5cn|PING|");

    /* One more and framing is lost. */
    conn_init(&c, 16, 100);
    conn_feed_str(&c, "PUB t 1\nx");
    conn_feed(&c, junk, 16);
    conn_feed_str(&c, "j");
    ck_assert_str_eq(c.log, "E:-ERR payload not followed by \\x5cr\\x5cn|F:-ERR line too long|");

    conn_init(&c, 16, 100);
    memset(junk, 'j', 40);
    conn_feed_str(&c, "PUB t 1\nx");
    conn_feed(&c, junk, 40);
    ck_assert_str_eq(c.log, "E:-ERR payload not followed by \\x5cr\\x5cn|F:-ERR line too long|");
}
END_TEST

START_TEST(test_toobig)
{
    static conn_t c;
    static char payload[1000];

    conn_init(&c, 4096, 10);
    conn_feed_str(&c, "PUB t 10\r\n0123456789\r\n");
    ck_assert_str_eq(c.log, "PUB t=t n=10 p=0123456789|");

    conn_init(&c, 4096, 10);
    conn_feed_str(&c, "PUB t 11\r\n0123456789A\r\nPING\r\n");
    ck_assert_str_eq(c.log, "E:-TOOBIG message of 11 bytes exceeds max_message 10|PING|");

    /* A big payload trickling in: skipped without being buffered. */
    memset(payload, '\n', sizeof payload);     /* looks like empty lines */
    conn_init(&c, 64, 10);
    conn_feed_str(&c, "PUB t 1000\r\n");
    ck_assert_str_eq(c.log, "E:-TOOBIG message of 1000 bytes exceeds max_message 10|");
    conn_feed_steps(&c, payload, sizeof payload, 7);
    ck_assert_uint_eq(c.len, 0);
    ck_assert_uint_le(c.peak, 64);
    ck_assert_uint_eq(c.p.skip, 0);
    conn_feed_str(&c, "\r");
    conn_feed_str(&c, "\nPING\r\n");
    ck_assert_str_eq(c.log, "E:-TOOBIG message of 1000 bytes exceeds max_message 10|PING|");
}
END_TEST

START_TEST(test_toobig_byte_by_byte)
{
    static conn_t c;
    static char in[512];
    int n = snprintf(in, sizeof in, "PUB t 100\n%0100d\r\nSUB t 1\nPUB t 300\r\n", 0);
    size_t len = (size_t)n;

    memset(in + len, 'z', 300);
    len += 300;
    memcpy(in + len, "\nPING\n", 6);
    len += 6;

    conn_init(&c, 64, 50);
    conn_feed_steps(&c, in, len, 1);
    ck_assert_str_eq(c.log,
                     "E:-TOOBIG message of 100 bytes exceeds max_message 50|"
                     "SUB t=t n=1|"
                     "E:-TOOBIG message of 300 bytes exceeds max_message 50|"
                     "PING|");
    ck_assert_uint_le(c.peak, 64);
}
END_TEST

START_TEST(test_toobig_2_63)
{
    static conn_t c;
    static char junk[4096];

    conn_init(&c, 4096, 1 << 20);
    conn_feed_str(&c, "PUB t 9223372036854775808\r\n");
    ck_assert_str_eq(c.log,
                     "E:-TOOBIG message of 9223372036854775808 bytes exceeds max_message 1048576|");
    ck_assert_uint_eq(c.p.skip, 9223372036854775808ULL);
    memset(junk, 'P', sizeof junk);
    for (int i = 0; i < 10; i++)
        conn_feed(&c, junk, sizeof junk);
    ck_assert_uint_eq(c.len, 0);
    ck_assert_uint_eq(c.p.skip, 9223372036854775808ULL - 10 * sizeof junk);

    /* UINT64_MAX is a usable count too; one more digit is not. */
    expect("PUB t 18446744073709551615\r\n",
           "E:-TOOBIG message of 18446744073709551615 bytes exceeds max_message 1048576|");
    expect("PUB t 18446744073709551616\r\nPING\r\n", "E:-ERR bad byte count|PING|");
}
END_TEST

START_TEST(test_pub_refused_skips_payload)
{
    /* Refused with a usable count: payload dropped, stream continues. */
    expect("PUB a/b 5\r\nPING!\r\nPING\r\n", "E:-ERR bad topic|PING|");
    expect("PUB t 5 ttl=3\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 del=3\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 delay\x1d" "3\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 delay3\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 d\xc5lay=3\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 delay=x\r\nPING!\r\nPING\r\n", "E:-ERR bad delay|PING|");
    expect("PUB t 5 delay=\r\nPING!\r\nPING\r\n", "E:-ERR bad delay|PING|");
    expect("PUB t 5 delay=1 x\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 delay=1 delay=2\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 delay=1 pri=1 ttr=1 x\r\nPING!\r\nPING\r\n",
           "E:-ERR wrong number of arguments for 'pub'|PING|");
    expect("PUB t 5 pri=4294967296\r\nPING!\r\nPING\r\n", "E:-ERR bad priority|PING|");
    expect("PUB t 5 pri=-1\r\nPING!\r\nPING\r\n", "E:-ERR bad priority|PING|");
    expect("PUB t 5 pri=1 pri=2\r\nPING!\r\nPING\r\n", "E:-ERR bad option|PING|");
    expect("PUB t 5 ttr=0\r\nPING!\r\nPING\r\n", "E:-ERR bad ttr|PING|");
    expect("PUB t 5 ttr=\r\nPING!\r\nPING\r\n", "E:-ERR bad ttr|PING|");
    expect("PUB a/b 0\r\n\r\nPING\r\n", "E:-ERR bad topic|PING|");
    /* An empty payload still has its trailer: here the first PING is not
     * one, so that line is discarded. */
    expect("PUB a/b 0\nPING\nPING\n", "E:-ERR bad topic|PING|");
    /* Syntax errors win over the size limit. */
    static conn_t c;
    conn_init(&c, 4096, 2);
    conn_feed_str(&c, "PUB a/b 5\r\nhello\r\nPING\r\n");
    ck_assert_str_eq(c.log, "E:-ERR bad topic|PING|");
}
END_TEST

START_TEST(test_pub_no_usable_count)
{
    /* No count: nothing is skipped, the next line is a command. */
    expect("PUB t abc\r\nPING\r\n", "E:-ERR bad byte count|PING|");
    expect("PUB t -5\r\nPING\r\n", "E:-ERR bad byte count|PING|");
    expect("PUB t\r\nPING\r\n", "E:-ERR wrong number of arguments for 'pub'|PING|");
    expect("PUB a/b abc\r\nPING\r\n", "E:-ERR bad byte count|PING|");
}
END_TEST

START_TEST(test_refused_payload_bad_trailer)
{
    /* The refusal was the reply; a bad trailer only resyncs, silently. */
    expect("PUB a/b 3\r\nabcXYZ\r\nPING\r\n", "E:-ERR bad topic|PING|");
    expect("PUB a/b 3\r\nabc\rZ\r\nPING\r\n", "E:-ERR bad topic|PING|");
    expect("PUB a/b 3\r\nabc\r\r\nPING\r\n", "E:-ERR bad topic|PING|");

    static conn_t c;
    char junk[40];
    memset(junk, 'j', sizeof junk);
    conn_init(&c, 16, 100);
    conn_feed_str(&c, "PUB a/b 1\nx");
    conn_feed(&c, junk, sizeof junk);
    ck_assert_str_eq(c.log, "E:-ERR bad topic|F:-ERR line too long|");

    /* A "\r" not followed by "\n" counts toward that line's length. */
    conn_init(&c, 16, 100);
    conn_feed_str(&c, "PUB a/b 1\nx\r");
    conn_feed(&c, junk, 15);
    conn_feed_str(&c, "\nPING\n");
    ck_assert_str_eq(c.log, "E:-ERR bad topic|PING|");
    conn_init(&c, 16, 100);
    conn_feed_str(&c, "PUB a/b 1\nx\r");
    conn_feed(&c, junk, 16);
    conn_feed_str(&c, "\nPING\n");
    ck_assert_str_eq(c.log, "E:-ERR bad topic|F:-ERR line too long|");
}
END_TEST

START_TEST(test_skip_then_command_same_call)
{
    proto_parser_t p;
    proto_cmd_t cmd;
    size_t used;
    char err[PROTO_ERR_MAX];
    static const char in[] = "PUB t 20\r\n";
    static const char rest[] = "0123456789\r\nPING\r\n";

    proto_parser_init(&p, 4096, 10);
    ck_assert_int_eq(proto_parse(&p, in, sizeof in - 1, &cmd, &used, err), PROTO_ERROR);
    ck_assert_uint_eq(used, sizeof in - 1);
    ck_assert_int_eq(proto_parse(&p, "0123456789", 10, &cmd, &used, err), PROTO_NEED_MORE);
    ck_assert_uint_eq(used, 10);
    ck_assert_int_eq(proto_parse(&p, rest, sizeof rest - 1, &cmd, &used, err), PROTO_CMD);
    ck_assert_int_eq(cmd.type, CMD_PING);
    ck_assert_uint_eq(used, sizeof rest - 1);

    /* Skipped bytes are consumed even when the next command is incomplete. */
    proto_parser_init(&p, 4096, 10);
    ck_assert_int_eq(proto_parse(&p, "PUB t 11\n", 9, &cmd, &used, err), PROTO_ERROR);
    ck_assert_int_eq(proto_parse(&p, "01234567890\nPI", 14, &cmd, &used, err), PROTO_NEED_MORE);
    ck_assert_uint_eq(used, 12);
}
END_TEST

/* ---- split reads ---- */

static const char pipeline[] =
    "PUB orders 5\r\nhello\r\n"
    "\r\n"
    "SUB orders 10\r\n"
    "PUB orders 3 delay=100\nab\n\n"
    "ACK 1 2 3\r\n"
    "ACK 999 abc\r\n"
    "bogus\n"
    "PUB big 40\r\n0123456789012345678901234567890123456789\r\n"
    "PUB a/b 4\r\nPING\r\n"
    "PUB t x\r\n"
    "PUB t 2\r\nxyZZ\r\n"
    "NACK 7 50\r\n"
    "  \t \n"
    "touch 9\n"
    "GET orders 100\r\n"
    "JOIN orders\r\n"
    "STATS\r\nSTATS orders\r\nTOPICS\r\n"
    "AUTH u p\r\n"
    "PUB t 0\r\n\r\n"
    "PING\r\nQUIT\r\n";

static const char pipeline_log[] =
    "PUB t=orders n=5 p=hello|"
    "SUB t=orders n=10|"
    "PUB t=orders n=3 delay=100 p=ab\\x0a|"
    "ACK ids= =1 =2 =3 nids=3 first=1|"
    "E:-ERR bad id|"
    "E:-ERR unknown command|"
    "E:-TOOBIG message of 40 bytes exceeds max_message 32|"
    "E:-ERR bad topic|"
    "E:-ERR bad byte count|"
    "E:-ERR payload not followed by \\x5cr\\x5cn|"
    "NACK n=50 id=7|"
    "TOUCH id=9|"
    "GET t=orders n=100|"
    "JOIN t=orders|"
    "STATS|STATS t=orders|TOPICS|"
    "AUTH user=u pass=p|"
    "PUB t=t n=0 p=|"
    "PING|QUIT|";

START_TEST(test_split_every_boundary)
{
    static conn_t c;
    const size_t len = sizeof pipeline - 1;

    conn_init(&c, 64, 32);
    conn_feed(&c, pipeline, len);
    ck_assert_str_eq(c.log, pipeline_log);
    ck_assert_uint_eq(c.len, 0);

    for (size_t cut = 0; cut <= len; cut++) {
        conn_init(&c, 64, 32);
        conn_feed(&c, pipeline, cut);
        conn_feed(&c, pipeline + cut, len - cut);
        ck_assert_msg(strcmp(c.log, pipeline_log) == 0, "cut at %zu: %s", cut, c.log);
        ck_assert_uint_eq(c.len, 0);
    }
}
END_TEST

START_TEST(test_split_every_chunk_size)
{
    static conn_t c;
    const size_t len = sizeof pipeline - 1;

    for (size_t step = 1; step <= 17; step++) {
        conn_init(&c, 64, 32);
        conn_feed_steps(&c, pipeline, len, step);
        ck_assert_msg(strcmp(c.log, pipeline_log) == 0, "step %zu: %s", step, c.log);
        ck_assert_uint_eq(c.len, 0);
    }
}
END_TEST

START_TEST(test_need_more_is_stable)
{
    /* Calling again on the same incomplete bytes changes nothing. */
    proto_parser_t p;
    proto_cmd_t cmd;
    size_t used;
    char err[PROTO_ERR_MAX];
    const size_t len = sizeof pipeline - 1;

    for (size_t n = 0; n <= len; n++) {
        size_t off = 0;
        proto_parser_init(&p, 64, 32);
        for (;;) {
            proto_result_t r = proto_parse(&p, pipeline + off, n - off, &cmd, &used, err);
            off += used;
            if (r == PROTO_NEED_MORE)
                break;
            ck_assert_int_ne(r, PROTO_FATAL);
        }
        proto_parser_t saved = p;
        ck_assert_int_eq(proto_parse(&p, pipeline + off, n - off, &cmd, &used, err),
                         PROTO_NEED_MORE);
        ck_assert_uint_eq(used, 0);
        ck_assert(memcmp(&saved, &p, sizeof p) == 0);
    }
}
END_TEST

/* ---- helpers and formatting ---- */

START_TEST(test_topic_valid)
{
    char t[300];

    ck_assert(proto_topic_valid("a", 1));
    ck_assert(proto_topic_valid("A-z_0.9:x", 9));
    ck_assert(!proto_topic_valid("", 0));
    ck_assert(!proto_topic_valid("a b", 3));
    ck_assert(!proto_topic_valid("a\0", 2));
    ck_assert(!proto_topic_valid("a/b", 3));
    memset(t, 'x', sizeof t);
    ck_assert(proto_topic_valid(t, 255));
    ck_assert(!proto_topic_valid(t, 256));
}
END_TEST

START_TEST(test_u64)
{
    char out[PROTO_NUM_MAX];
    size_t n;

    n = proto_u64(out, 0);
    ck_assert_uint_eq(n, 1);
    ck_assert(memcmp(out, "0", 1) == 0);
    n = proto_u64(out, 1234567890);
    ck_assert_uint_eq(n, 10);
    ck_assert(memcmp(out, "1234567890", 10) == 0);
    n = proto_u64(out, UINT64_MAX);
    ck_assert_uint_eq(n, 20);
    ck_assert(memcmp(out, "18446744073709551615", 20) == 0);
    /* Every digit count, at both edges: the formatter works in pairs. */
    for (uint64_t p = 10; p != 0 && p <= UINT64_MAX / 10 * 10; p *= 10) {
        for (uint64_t v = p - 2; v != p + 2; v++) {
            char want[PROTO_NUM_MAX + 1];
            int k = snprintf(want, sizeof want, "%llu", (unsigned long long)v);
            n = proto_u64(out, v);
            ck_assert_uint_eq(n, (size_t)k);
            ck_assert(memcmp(out, want, n) == 0);
        }
        if (p > UINT64_MAX / 10)
            break;
    }
}
END_TEST

START_TEST(test_fmt)
{
    char out[PROTO_MSG_HDR_MAX];
    char topic[PROTO_TOPIC_MAX];
    size_t n;

    n = proto_fmt_msg_header(out, "orders", 6, 1, 1, 5);
    ck_assert_uint_eq(n, 18);
    ck_assert(memcmp(out, "MSG orders 1 1 5\r\n", n) == 0);

    memset(topic, 'q', sizeof topic);
    n = proto_fmt_msg_header(out, topic, sizeof topic, UINT64_MAX, UINT32_MAX, UINT32_MAX);
    ck_assert_uint_eq(n, 4 + 255 + 1 + 20 + 1 + 10 + 1 + 10 + 2);
    ck_assert_uint_le(n, PROTO_MSG_HDR_MAX);
    ck_assert(memcmp(out + 260, "18446744073709551615 4294967295 4294967295\r\n", 44) == 0);

    char ok[32];
    n = proto_fmt_ok_u64(ok, 42);
    ck_assert_uint_eq(n, 8);
    ck_assert(memcmp(ok, "+OK 42\r\n", 8) == 0);
    n = proto_fmt_ok_u64(ok, UINT64_MAX);
    ck_assert_uint_eq(n, 26);
    ck_assert(memcmp(ok, "+OK 18446744073709551615\r\n", 26) == 0);
}
END_TEST

START_TEST(test_ids_next)
{
    size_t pos = 0;
    uint64_t id;
    static const char ids[] = "1  22\t333";

    ck_assert(proto_ids_next(ids, 9, &pos, &id));
    ck_assert_uint_eq(id, 1);
    ck_assert(proto_ids_next(ids, 9, &pos, &id));
    ck_assert_uint_eq(id, 22);
    ck_assert(proto_ids_next(ids, 9, &pos, &id));
    ck_assert_uint_eq(id, 333);
    ck_assert(!proto_ids_next(ids, 9, &pos, &id));
    pos = 0;
    ck_assert(!proto_ids_next("", 0, &pos, &id));
}
END_TEST

/* ---- reply parser ---- */

/* Parse a complete reply; every strict prefix must ask for more. */
static int reply(const char *s, size_t len, proto_reply_t *r)
{
    size_t used;

    for (size_t n = 0; n < len; n++) {
        int rc = proto_parse_reply(s, n, r, &used);
        if (rc == -1)
            return -1;
        ck_assert_msg(rc == 0, "prefix %zu of a reply was complete", n);
    }
    int rc = proto_parse_reply(s, len, r, &used);
    if (rc == 1)
        ck_assert_uint_eq(used, len);
    return rc;
}

static int reply_str(const char *s, proto_reply_t *r)
{
    return reply(s, strlen(s), r);
}

static void assert_text(const char *p, size_t n, const char *want)
{
    ck_assert_uint_eq(n, strlen(want));
    ck_assert(memcmp(p, want, n) == 0);
}

START_TEST(test_reply_simple)
{
    proto_reply_t r;

    ck_assert_int_eq(reply_str("+OK\r\n", &r), 1);
    ck_assert_int_eq(r.type, REPLY_OK);
    ck_assert_uint_eq(r.text_len, 0);
    ck_assert_int_eq(reply_str("+OK 42\r\n", &r), 1);
    ck_assert_int_eq(r.type, REPLY_OK);
    assert_text(r.text, r.text_len, "42");
    ck_assert_int_eq(reply_str("+OK 1 2\n", &r), 1);
    assert_text(r.text, r.text_len, "1 2");
    ck_assert_int_eq(reply_str("+PONG\r\n", &r), 1);
    ck_assert_int_eq(r.type, REPLY_PONG);
    ck_assert_int_eq(reply_str("+BYE\n", &r), 1);
    ck_assert_int_eq(r.type, REPLY_BYE);
}
END_TEST

START_TEST(test_reply_error)
{
    proto_reply_t r;

    ck_assert_int_eq(reply_str("-FULL orders\r\n", &r), 1);
    ck_assert_int_eq(r.type, REPLY_ERROR);
    assert_text(r.code, r.code_len, "FULL");
    assert_text(r.text, r.text_len, "orders");
    ck_assert_int_eq(reply_str("-ERR wrong number of arguments for 'ack'\r\n", &r), 1);
    assert_text(r.code, r.code_len, "ERR");
    assert_text(r.text, r.text_len, "wrong number of arguments for 'ack'");
    ck_assert_int_eq(reply_str("-TIMEOUT\r\n", &r), 1);
    assert_text(r.code, r.code_len, "TIMEOUT");
    ck_assert_uint_eq(r.text_len, 0);
    ck_assert_int_eq(reply_str("-NOTFOUND 17\n", &r), 1);
    assert_text(r.code, r.code_len, "NOTFOUND");
    assert_text(r.text, r.text_len, "17");
}
END_TEST

START_TEST(test_reply_bodies)
{
    proto_reply_t r;
    static const char msg[] = "MSG orders 17 2 7\r\na\0b\r\nc\n\r\n";

    ck_assert_int_eq(reply(msg, sizeof msg - 1, &r), 1);
    ck_assert_int_eq(r.type, REPLY_MSG);
    assert_text(r.topic, r.topic_len, "orders");
    ck_assert_uint_eq(r.id, 17);
    ck_assert_uint_eq(r.attempt, 2);
    ck_assert_uint_eq(r.body_len, 7);
    ck_assert(memcmp(r.body, "a\0b\r\nc\n", 7) == 0);

    ck_assert_int_eq(reply_str("MSG t 18446744073709551615 4294967295 0\n\n", &r), 1);
    ck_assert_uint_eq(r.id, UINT64_MAX);
    ck_assert_uint_eq(r.attempt, UINT32_MAX);
    ck_assert_uint_eq(r.body_len, 0);

    ck_assert_int_eq(reply_str("+STATS 11\r\nversion: 1\n\r\n", &r), 1);
    ck_assert_int_eq(r.type, REPLY_STATS);
    assert_text(r.body, r.body_len, "version: 1\n");
    ck_assert_int_eq(reply_str("+TOPICS 4\r\na\nb\n\n", &r), 1);
    ck_assert_int_eq(r.type, REPLY_TOPICS);
    assert_text(r.body, r.body_len, "a\nb\n");
    ck_assert_int_eq(reply_str("+TOPICS 0\r\n\r\n", &r), 1);
    ck_assert_uint_eq(r.body_len, 0);
}
END_TEST

START_TEST(test_reply_stream)
{
    /* A pipelined stream of replies and pushes, split at every byte. */
    static const char s[] =
        "+OK 1\r\nMSG q 1 1 5\r\nhello\r\n+OK\r\n-FULL q\r\n"
        "+STATS 3\r\na:1\r\n+PONG\r\n+BYE\r\n";
    static const proto_reply_type_t want[] = {
        REPLY_OK, REPLY_MSG, REPLY_OK, REPLY_ERROR, REPLY_STATS, REPLY_PONG, REPLY_BYE,
    };
    const size_t len = sizeof s - 1;

    for (size_t cut = 0; cut <= len; cut++) {
        char buf[sizeof s];
        size_t have = 0, fed = 0, k = 0;
        while (k < sizeof want / sizeof want[0]) {
            proto_reply_t r;
            size_t used;
            int rc = proto_parse_reply(buf, have, &r, &used);
            ck_assert_int_ne(rc, -1);
            if (rc == 0) {
                size_t upto = fed < cut ? cut : len;
                ck_assert_uint_lt(fed, upto);
                memcpy(buf + have, s + fed, upto - fed);
                have += upto - fed;
                fed = upto;
                continue;
            }
            ck_assert_int_eq(r.type, want[k]);
            k++;
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        ck_assert_uint_eq(have, 0);
        ck_assert_uint_eq(fed, len);
    }
}
END_TEST

START_TEST(test_reply_roundtrip)
{
    char buf[PROTO_MSG_HDR_MAX + 16];
    proto_reply_t r;
    size_t used;
    size_t n = proto_fmt_msg_header(buf, "a.b", 3, 99, 3, 2);

    memcpy(buf + n, "hi\r\n", 4);
    ck_assert_int_eq(proto_parse_reply(buf, n + 4, &r, &used), 1);
    ck_assert_uint_eq(used, n + 4);
    ck_assert_int_eq(r.type, REPLY_MSG);
    ck_assert_uint_eq(r.id, 99);
    ck_assert_uint_eq(r.attempt, 3);
    assert_text(r.body, r.body_len, "hi");

    n = proto_fmt_ok_u64(buf, 7);
    ck_assert_int_eq(proto_parse_reply(buf, n, &r, &used), 1);
    assert_text(r.text, r.text_len, "7");
}
END_TEST

START_TEST(test_reply_garbage)
{
    proto_reply_t r;
    size_t used;
    static char longline[PROTO_REPLY_LINE_MAX + 8];

    ck_assert_int_eq(reply_str("hello\r\n", &r), -1);
    ck_assert_int_eq(reply_str("*3\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+OKAY\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+ok\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+PONG x\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+WHAT\r\n", &r), -1);
    ck_assert_int_eq(reply_str("-\r\n", &r), -1);
    ck_assert_int_eq(reply_str("-err lower\r\n", &r), -1);
    ck_assert_int_eq(reply_str("-ERR\ttab\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+STATS\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+STATS x\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+STATS 3\r\nabcX\r\n", &r), -1);
    ck_assert_int_eq(reply_str("+TOPICS 1\r\na\rX", &r), -1);
    ck_assert_int_eq(reply_str("MSG t 1 1\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSG t 1 1 2 3\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSG t/x 1 1 0\r\n\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSG t  1 1 0\r\n\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSG t 1 1 0 \r\n\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSG t 1 4294967296 0\r\n\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSG t x 1 0\r\n\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSGX t 1 1 0\r\n\r\n", &r), -1);
    ck_assert_int_eq(reply_str("MSG t 1 1 5\r\nhelloXX", &r), -1);

    /* A header line longer than any server sends is garbage, as soon as
     * that is known. */
    memset(longline, '+', sizeof longline);
    ck_assert_int_eq(proto_parse_reply(longline, PROTO_REPLY_LINE_MAX, &r, &used), 0);
    ck_assert_int_eq(proto_parse_reply(longline, PROTO_REPLY_LINE_MAX + 2, &r, &used), -1);

    /* A huge body length just waits; it cannot overflow. */
    ck_assert_int_eq(proto_parse_reply("+STATS 18446744073709551615\r\nab", 31, &r, &used), 0);
    ck_assert_int_eq(proto_parse_reply("", 0, &r, &used), 0);
}
END_TEST

static Suite *proto_suite(void)
{
    Suite *s = suite_create("proto");
    TCase *tc;

    tc = tcase_create("commands");
    tcase_add_test(tc, test_pub);
    tcase_add_test(tc, test_pub_binary_payload);
    tcase_add_test(tc, test_pub_points_into_buffer);
    tcase_add_test(tc, test_pub_waits_for_payload);
    tcase_add_test(tc, test_sub_unsub);
    tcase_add_test(tc, test_get_join);
    tcase_add_test(tc, test_ack);
    tcase_add_test(tc, test_ack_ids_span);
    tcase_add_test(tc, test_pub_fast_and_general_agree);
    tcase_add_test(tc, test_ack_ids_inline_edge);
    tcase_add_test(tc, test_nack_touch);
    tcase_add_test(tc, test_bury_kick_pause);
    tcase_add_test(tc, test_misc_commands);
    tcase_add_test(tc, test_topic_case_sensitive);
    tcase_add_test(tc, test_blanks);
    suite_add_tcase(s, tc);

    tc = tcase_create("malformed");
    tcase_add_test(tc, test_wrong_arg_counts);
    tcase_add_test(tc, test_bad_numbers);
    tcase_add_test(tc, test_bad_topics);
    tcase_add_test(tc, test_unknown_and_unprintable);
    suite_add_tcase(s, tc);

    tc = tcase_create("framing");
    tcase_add_test(tc, test_crlf_and_lf);
    tcase_add_test(tc, test_empty_lines);
    tcase_add_test(tc, test_max_line);
    tcase_add_test(tc, test_max_line_huge);
    tcase_add_test(tc, test_trailer);
    tcase_add_test(tc, test_trailer_resync_limits);
    tcase_add_test(tc, test_toobig);
    tcase_add_test(tc, test_toobig_byte_by_byte);
    tcase_add_test(tc, test_toobig_2_63);
    tcase_add_test(tc, test_pub_refused_skips_payload);
    tcase_add_test(tc, test_pub_no_usable_count);
    tcase_add_test(tc, test_refused_payload_bad_trailer);
    tcase_add_test(tc, test_skip_then_command_same_call);
    suite_add_tcase(s, tc);

    tc = tcase_create("split");
    tcase_add_test(tc, test_split_every_boundary);
    tcase_add_test(tc, test_split_every_chunk_size);
    tcase_add_test(tc, test_need_more_is_stable);
    suite_add_tcase(s, tc);

    tc = tcase_create("format");
    tcase_add_test(tc, test_topic_valid);
    tcase_add_test(tc, test_u64);
    tcase_add_test(tc, test_fmt);
    tcase_add_test(tc, test_ids_next);
    suite_add_tcase(s, tc);

    tc = tcase_create("replies");
    tcase_add_test(tc, test_reply_simple);
    tcase_add_test(tc, test_reply_error);
    tcase_add_test(tc, test_reply_bodies);
    tcase_add_test(tc, test_reply_stream);
    tcase_add_test(tc, test_reply_roundtrip);
    tcase_add_test(tc, test_reply_garbage);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(proto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
