/* proto.h: the wire protocol: request parsing, reply formatting, and reply
 * parsing for clients. No I/O and no allocation: it reads from a buffer the
 * caller owns and points back into it.
 */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_TOPIC_MAX 255
#define PROTO_ERR_MAX 160     /* room for one error reply line */
#define PROTO_NUM_MAX 21      /* decimal digits of UINT64_MAX, plus NUL */
#define PROTO_IDS_INLINE 64   /* ACK ids kept parsed in proto_cmd_t; longer lists are re-read */

typedef enum proto_cmd_type {
    CMD_NONE = 0,
    CMD_PUB,
    CMD_SUB,
    CMD_UNSUB,
    CMD_GET,
    CMD_ACK,
    CMD_NACK,
    CMD_TOUCH,
    CMD_JOIN,
    CMD_STATS,
    CMD_TOPICS,
    CMD_AUTH,
    CMD_PING,
    CMD_QUIT,
    CMD_BURY,
    CMD_KICK,
    CMD_PAUSE,
} proto_cmd_type_t;

/* One parsed command. Every pointer points into the caller's buffer and is
 * valid only until that buffer changes. */
typedef struct proto_cmd {
    proto_cmd_type_t type;
    const char *topic;      /* PUB SUB UNSUB GET JOIN STATS KICK PAUSE; NULL if absent */
    size_t topic_len;
    bool has_num;           /* the optional number was given */
    uint64_t num;           /* PUB byte count, SUB credit, GET/JOIN timeout ms, NACK delay ms,
                               BURY priority, KICK count, PAUSE ms */
    uint64_t id;            /* NACK TOUCH BURY; ACK: the first id */
    uint64_t delay_ms;      /* PUB delay=<ms>; 0 if absent */
    const char *ids;        /* ACK: the validated id list ("1 2 3"); walk with proto_ids_next */
    size_t ids_len;
    size_t nids;            /* ACK: how many ids */
    const char *user;       /* AUTH */
    size_t user_len;
    const char *pass;       /* AUTH */
    size_t pass_len;
    const char *payload;    /* PUB: the payload bytes (trailer excluded) */
    size_t payload_len;
    /* Last, and not cleared per command (so the hot path clears no more
     * than it did before they came): set for every PUB and only for PUB. */
    bool has_pri;           /* PUB pri=<n> given */
    uint32_t pri;           /* PUB pri=<n> */
    uint64_t ttr_ms;        /* PUB ttr=<ms>; 0 if absent */
    /* ACK's ids as numbers when there are at most PROTO_IDS_INLINE of
     * them. Walk with proto_cmd_next_id. */
    uint64_t idv[PROTO_IDS_INLINE];
} proto_cmd_t;

typedef enum proto_result {
    PROTO_NEED_MORE = 0, /* nothing complete yet; `consumed` may still be > 0 (skipped bytes) */
    PROTO_CMD,           /* `cmd` is filled in */
    PROTO_ERROR,         /* `err` holds the reply line ("-ERR ...\r\n"); the connection lives */
    PROTO_FATAL,         /* `err` holds the reply line; framing is lost: close after sending */
} proto_result_t;

/* Per-connection parser state: payloads being skipped after an error. */
typedef struct proto_parser {
    uint64_t max_line;      /* limits.max_line: longest line, terminator excluded */
    uint64_t max_message;   /* limits.max_message: largest PUB payload */
    uint64_t skip;          /* payload bytes still to discard */
    int skip_state;         /* internal: where in a discarded payload we are */
} proto_parser_t;

void proto_parser_init(proto_parser_t *p, uint64_t max_line, uint64_t max_message);

/* Parse at most one command from buf[0..len). Always sets *consumed to the
 * bytes the caller must drop from the front of its buffer (possibly 0).
 * A PUB is returned only once its whole payload and trailer are in buf.
 * On PROTO_ERROR/PROTO_FATAL, err (PROTO_ERR_MAX bytes) gets the reply line,
 * "\r\n"-terminated and NUL-terminated. Empty lines are consumed silently.
 *
 * For a reader that places large payloads itself: on PROTO_NEED_MORE,
 * cmd->type is CMD_PUB when buf holds a whole, accepted PUB line whose
 * payload or trailer is not all there yet; cmd is then filled as for
 * PROTO_CMD, payload pointing where the payload starts in buf (so the line
 * is payload - buf bytes) and payload_len its whole count. The caller may
 * take the line and the payload's bytes off the stream itself, check the
 * trailer ("\r\n" or "\n") and on a wrong one call proto_pub_bad_trailer.
 * Otherwise cmd->type is not set: set it to CMD_NONE before the call. */
proto_result_t proto_parse(proto_parser_t *p, const char *buf, size_t len,
                           proto_cmd_t *cmd, size_t *consumed, char *err);

/* A PUB's payload (taken by the caller, see proto_parse) is not followed
 * by its trailer: from the byte that should have been one, the parser
 * discards up to the next line, as it does for its own PUBs, and err gets
 * the reply line. Returns PROTO_ERROR. */
proto_result_t proto_pub_bad_trailer(proto_parser_t *p, char *err);

/* Walk an ACK id list the parser already validated. `*pos` starts at 0.
 * Returns false when there are no more ids. */
bool proto_ids_next(const char *ids, size_t len, size_t *pos, uint64_t *id);

/* Walk a parsed ACK's ids, from idv when they fit there (so each id is
 * parsed once), else from the text. `*pos` starts at 0. */
bool proto_cmd_next_id(const proto_cmd_t *cmd, size_t *pos, uint64_t *id);

/* True if s[0..len) is a valid topic name: 1..255 of [A-Za-z0-9._:-]. */
bool proto_topic_valid(const char *s, size_t len);

/* Write the decimal form of v into out (at least PROTO_NUM_MAX bytes, not
 * NUL-terminated); returns the number of digits. */
size_t proto_u64(char *out, uint64_t v);

/* Format "MSG <topic> <id> <attempt> <bytes>\r\n" into out, which must hold
 * PROTO_MSG_HDR_MAX bytes. Returns its length. */
#define PROTO_MSG_HDR_MAX (4 + PROTO_TOPIC_MAX + 3 * PROTO_NUM_MAX + 8)
size_t proto_fmt_msg_header(char *out, const char *topic, size_t topic_len,
                            uint64_t id, uint32_t attempt, uint32_t len);

/* Format "+OK <n>\r\n" into out (at least 32 bytes). Returns its length. */
size_t proto_fmt_ok_u64(char *out, uint64_t n);

/* ---- replies, for clients (the `sluice` tool, tests, bench) ---- */

typedef enum proto_reply_type {
    REPLY_OK = 1,    /* "+OK [args]" ; text = args */
    REPLY_PONG,      /* "+PONG" */
    REPLY_BYE,       /* "+BYE" */
    REPLY_STATS,     /* "+STATS <n>" + body ; body/body_len */
    REPLY_TOPICS,    /* "+TOPICS <n>" + body */
    REPLY_ERROR,     /* "-CODE text" ; code = "ERR", "FULL", ...; text = rest */
    REPLY_MSG,       /* "MSG <topic> <id> <attempt> <n>" + payload */
} proto_reply_type_t;

typedef struct proto_reply {
    proto_reply_type_t type;
    const char *code;   /* REPLY_ERROR: "FULL" etc. (not NUL-terminated) */
    size_t code_len;
    const char *text;   /* REPLY_OK args / REPLY_ERROR text (may be empty) */
    size_t text_len;
    const char *topic;  /* REPLY_MSG */
    size_t topic_len;
    uint64_t id;        /* REPLY_MSG */
    uint32_t attempt;   /* REPLY_MSG */
    const char *body;   /* REPLY_MSG payload, REPLY_STATS/TOPICS body */
    size_t body_len;
} proto_reply_t;

/* Longest reply or push header line proto_parse_reply accepts, terminator
 * excluded: anything longer is not from a sluice server. */
#define PROTO_REPLY_LINE_MAX 4096

/* Parse one reply or push from buf[0..len). Returns 1 and sets *consumed
 * when a whole one is there, 0 when more bytes are needed, -1 when the
 * bytes are not a valid reply (the stream is unusable). */
int proto_parse_reply(const char *buf, size_t len, proto_reply_t *r, size_t *consumed);

#endif
