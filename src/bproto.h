/* bproto.h: the beanstalkd 1.12 wire protocol, for the beanstalk listener:
 * request parsing with beanstalkd's exact acceptance rules, reply lines,
 * and the YAML bodies of stats, stats-job, stats-tube and the tube lists.
 * No I/O and no allocation: it reads from a buffer the caller owns and
 * points back into it. docs/beanstalk.md lists every rule and where it
 * follows the real beanstalkd rather than protocol.txt.
 */
#ifndef SLUICE_BPROTO_H
#define SLUICE_BPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* beanstalkd's LINE_BUF_SIZE: a command line, its "\r\n" included, must
 * end within this many bytes of its start. */
#define BPROTO_LINE_MAX 224
#define BPROTO_TUBE_MAX 200             /* longest tube name */
#define BPROTO_JOB_SIZE_DEFAULT 65535   /* beanstalkd's default -z */
#define BPROTO_NUM_MAX 21               /* decimal digits of UINT64_MAX, plus NUL */

typedef enum bproto_cmd_type {
    BCMD_NONE = 0,
    BCMD_PUT,
    BCMD_USE,
    BCMD_RESERVE,
    BCMD_RESERVE_TIMEOUT,
    BCMD_RESERVE_JOB,
    BCMD_DELETE,
    BCMD_RELEASE,
    BCMD_BURY,
    BCMD_TOUCH,
    BCMD_WATCH,
    BCMD_IGNORE,
    BCMD_PEEK,
    BCMD_PEEK_READY,
    BCMD_PEEK_DELAYED,
    BCMD_PEEK_BURIED,
    BCMD_KICK,
    BCMD_KICK_JOB,
    BCMD_STATS_JOB,
    BCMD_STATS_TUBE,
    BCMD_STATS,
    BCMD_LIST_TUBES,
    BCMD_LIST_TUBE_USED,
    BCMD_LIST_TUBES_WATCHED,
    BCMD_PAUSE_TUBE,
    BCMD_QUIT,
} bproto_cmd_type_t;

/* One parsed command; only the fields its type names are set, the rest
 * are zero. Pointers point into the caller's buffer and are valid only
 * until that buffer changes. */
typedef struct bproto_cmd {
    bproto_cmd_type_t type;
    const char *tube;   /* use watch ignore stats-tube pause-tube: a valid name */
    size_t tube_len;
    uint64_t id;        /* peek reserve-job delete release bury touch kick-job stats-job */
    uint32_t pri;       /* put release bury */
    uint32_t delay;     /* put release pause-tube, seconds */
    uint32_t ttr;       /* put, seconds; a 0 sent is raised to 1 as beanstalkd does */
    int32_t timeout;    /* reserve-with-timeout, seconds; < 0: no timeout (as reserve) */
    uint32_t bound;     /* kick */
    const char *body;   /* put: the job body, its "\r\n" excluded */
    size_t body_len;
} bproto_cmd_t;

typedef enum bproto_result {
    BPROTO_NEED_MORE = 0, /* nothing complete yet; `consumed` may still be > 0 (bytes skipped) */
    BPROTO_CMD,           /* `cmd` is filled in */
    BPROTO_ERROR,         /* `err` is the reply line to send; the connection lives */
} bproto_result_t;

/* Per-connection parser state: an over-long line or a refused body being
 * discarded. */
typedef struct bproto_parser {
    uint32_t max_job_size;  /* largest put body accepted (beanstalkd's -z) */
    uint64_t skip;          /* BP_SKIP: body bytes (and "\r\n") still to discard */
    int state;              /* internal: BP_LINE, BP_DISCARD or BP_SKIP */
} bproto_parser_t;

void bproto_parser_init(bproto_parser_t *p, uint32_t max_job_size);

/* Parse at most one command from buf[0..len). Always sets *consumed to the
 * bytes the caller must drop from the front of its buffer (possibly 0).
 * A put is returned only once its body and the two bytes after it are in
 * buf, so a connection buffers at most BPROTO_LINE_MAX + max_job_size + 2
 * bytes. On BPROTO_ERROR, *err is one of the BPROTO_R_* error lines below
 * (static, NUL-terminated). Never fails the connection: beanstalkd answers
 * every bad input and reads on. */
bproto_result_t bproto_parse(bproto_parser_t *p, const char *buf, size_t len,
                             bproto_cmd_t *cmd, size_t *consumed, const char **err);

/* True if s[0..len) is a tube name beanstalkd accepts: 1..200 bytes of
 * letters, digits and -+/;.$_(), not starting with '-'. */
bool bproto_tube_valid(const char *s, size_t len);

/* Fixed reply lines. */
#define BPROTO_R_DELETED "DELETED\r\n"
#define BPROTO_R_RELEASED "RELEASED\r\n"
#define BPROTO_R_BURIED "BURIED\r\n"
#define BPROTO_R_TOUCHED "TOUCHED\r\n"
#define BPROTO_R_KICKED "KICKED\r\n"            /* kick-job */
#define BPROTO_R_PAUSED "PAUSED\r\n"
#define BPROTO_R_NOT_FOUND "NOT_FOUND\r\n"
#define BPROTO_R_NOT_IGNORED "NOT_IGNORED\r\n"
#define BPROTO_R_DEADLINE_SOON "DEADLINE_SOON\r\n"
#define BPROTO_R_TIMED_OUT "TIMED_OUT\r\n"
#define BPROTO_R_DRAINING "DRAINING\r\n"
#define BPROTO_R_OUT_OF_MEMORY "OUT_OF_MEMORY\r\n"
#define BPROTO_R_INTERNAL_ERROR "INTERNAL_ERROR\r\n"
#define BPROTO_R_BAD_FORMAT "BAD_FORMAT\r\n"
#define BPROTO_R_UNKNOWN_COMMAND "UNKNOWN_COMMAND\r\n"
#define BPROTO_R_EXPECTED_CRLF "EXPECTED_CRLF\r\n"
#define BPROTO_R_JOB_TOO_BIG "JOB_TOO_BIG\r\n"

/* Reply lines with numbers. Each writes into out, which must hold
 * BPROTO_REPLY_MAX bytes, and returns the length (not NUL-terminated).
 * RESERVED and FOUND are followed by the body and "\r\n"; OK by a YAML
 * body of that many bytes and "\r\n". */
#define BPROTO_REPLY_MAX (16 + 2 * BPROTO_NUM_MAX)
size_t bproto_fmt_inserted(char *out, uint64_t id);         /* INSERTED <id> */
size_t bproto_fmt_buried_id(char *out, uint64_t id);        /* BURIED <id> (put) */
size_t bproto_fmt_reserved(char *out, uint64_t id, uint64_t bytes);
size_t bproto_fmt_found(char *out, uint64_t id, uint64_t bytes);
size_t bproto_fmt_watching(char *out, uint64_t count);
size_t bproto_fmt_kicked(char *out, uint64_t count);        /* KICKED <count> (kick) */
size_t bproto_fmt_ok(char *out, uint64_t bytes);

/* "USING <tube>\r\n"; out must hold BPROTO_USING_MAX bytes. */
#define BPROTO_USING_MAX (8 + BPROTO_TUBE_MAX)
size_t bproto_fmt_using(char *out, const char *tube, size_t tube_len);

/* ---- YAML bodies ----
 * Each writer works like snprintf: it writes at most cap bytes and returns
 * the length of the whole body, so a return > cap means "retry with that
 * much room". The body is what OK <bytes> counts: send "OK <n>\r\n", the
 * body, then "\r\n". Keys, their order and their formats are beanstalkd
 * 1.12's (the lists below are in that order). */

#define BPROTO_STATS_COUNTS_HEAD(X) \
    X(current_jobs_urgent, "current-jobs-urgent") \
    X(current_jobs_ready, "current-jobs-ready") \
    X(current_jobs_reserved, "current-jobs-reserved") \
    X(current_jobs_delayed, "current-jobs-delayed") \
    X(current_jobs_buried, "current-jobs-buried") \
    X(cmd_put, "cmd-put") \
    X(cmd_peek, "cmd-peek") \
    X(cmd_peek_ready, "cmd-peek-ready") \
    X(cmd_peek_delayed, "cmd-peek-delayed") \
    X(cmd_peek_buried, "cmd-peek-buried") \
    X(cmd_reserve, "cmd-reserve") \
    X(cmd_reserve_with_timeout, "cmd-reserve-with-timeout") \
    X(cmd_delete, "cmd-delete") \
    X(cmd_release, "cmd-release") \
    X(cmd_use, "cmd-use") \
    X(cmd_watch, "cmd-watch") \
    X(cmd_ignore, "cmd-ignore") \
    X(cmd_bury, "cmd-bury") \
    X(cmd_kick, "cmd-kick") \
    X(cmd_touch, "cmd-touch") \
    X(cmd_stats, "cmd-stats") \
    X(cmd_stats_job, "cmd-stats-job") \
    X(cmd_stats_tube, "cmd-stats-tube") \
    X(cmd_list_tubes, "cmd-list-tubes") \
    X(cmd_list_tube_used, "cmd-list-tube-used") \
    X(cmd_list_tubes_watched, "cmd-list-tubes-watched") \
    X(cmd_pause_tube, "cmd-pause-tube") \
    X(job_timeouts, "job-timeouts") \
    X(total_jobs, "total-jobs") \
    X(max_job_size, "max-job-size") \
    X(current_tubes, "current-tubes") \
    X(current_connections, "current-connections") \
    X(current_producers, "current-producers") \
    X(current_workers, "current-workers") \
    X(current_waiting, "current-waiting") \
    X(total_connections, "total-connections") \
    X(pid, "pid")
/* then version, rusage-utime, rusage-stime */
#define BPROTO_STATS_COUNTS_TAIL(X) \
    X(uptime, "uptime") \
    X(binlog_oldest_index, "binlog-oldest-index") \
    X(binlog_current_index, "binlog-current-index") \
    X(binlog_records_migrated, "binlog-records-migrated") \
    X(binlog_records_written, "binlog-records-written") \
    X(binlog_max_size, "binlog-max-size")
/* then draining, id, hostname, os, platform */

#define BPROTO_FIELD_(name, key) uint64_t name;

/* The stats body ("stats"): the caller fills every field. */
typedef struct bproto_stats {
    BPROTO_STATS_COUNTS_HEAD(BPROTO_FIELD_)
    const char *version;            /* printed in double quotes, as beanstalkd does */
    uint64_t rusage_utime_sec;      /* printed as <sec>.<usec, 6 digits> */
    uint32_t rusage_utime_usec;
    uint64_t rusage_stime_sec;
    uint32_t rusage_stime_usec;
    BPROTO_STATS_COUNTS_TAIL(BPROTO_FIELD_)
    bool draining;                  /* "true" / "false" */
    const char *id;                 /* a random id for this process */
    const char *hostname;
    const char *os;
    const char *platform;
} bproto_stats_t;

size_t bproto_yaml_stats(char *out, size_t cap, const bproto_stats_t *s);

#define BPROTO_JOB_COUNTS(X) \
    X(pri, "pri") \
    X(age, "age") \
    X(delay, "delay") \
    X(ttr, "ttr") \
    X(time_left, "time-left") \
    X(file, "file") \
    X(reserves, "reserves") \
    X(timeouts, "timeouts") \
    X(releases, "releases") \
    X(buries, "buries") \
    X(kicks, "kicks")

/* The stats-job body: id, tube, state, then the counts above. */
typedef struct bproto_job_stats {
    uint64_t id;
    const char *tube;
    size_t tube_len;
    const char *state;              /* "ready", "delayed", "reserved" or "buried" */
    BPROTO_JOB_COUNTS(BPROTO_FIELD_)
} bproto_job_stats_t;

size_t bproto_yaml_job(char *out, size_t cap, const bproto_job_stats_t *j);

#define BPROTO_TUBE_COUNTS(X) \
    X(current_jobs_urgent, "current-jobs-urgent") \
    X(current_jobs_ready, "current-jobs-ready") \
    X(current_jobs_reserved, "current-jobs-reserved") \
    X(current_jobs_delayed, "current-jobs-delayed") \
    X(current_jobs_buried, "current-jobs-buried") \
    X(total_jobs, "total-jobs") \
    X(current_using, "current-using") \
    X(current_watching, "current-watching") \
    X(current_waiting, "current-waiting") \
    X(cmd_delete, "cmd-delete") \
    X(cmd_pause_tube, "cmd-pause-tube") \
    X(pause, "pause") \
    X(pause_time_left, "pause-time-left")

/* The stats-tube body: name, then the counts above. */
typedef struct bproto_tube_stats {
    const char *name;
    size_t name_len;
    BPROTO_TUBE_COUNTS(BPROTO_FIELD_)
} bproto_tube_stats_t;

size_t bproto_yaml_tube(char *out, size_t cap, const bproto_tube_stats_t *t);

/* The list-tubes / list-tubes-watched body: "---\n" then "- <name>\n" for
 * each of the n names (names[i] of lens[i] bytes). */
size_t bproto_yaml_list(char *out, size_t cap, const char *const *names,
                        const size_t *lens, size_t n);

#endif
