/* log.c: leveled logging to stderr, one event a line.
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with an sd-daemon
 * priority prefix ("<3>" ... "<7>") so journald files it at the right level
 * and adds its own timestamp; elsewhere a UTC timestamp comes first. One
 * fprintf per line: stderr is unbuffered, and a single write keeps lines
 * whole.
 */
#include "log.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static log_level_t log_level = LOG_LEVEL_INFO;
static int log_journal = -1; /* -1: not looked up yet */

static const struct {
    const char *name;
    int syslog_prio;
} log_levels[] = {
    [LOG_LEVEL_ERROR] = {"error", 3},
    [LOG_LEVEL_WARN] = {"warn", 4},
    [LOG_LEVEL_INFO] = {"info", 6},
    [LOG_LEVEL_DEBUG] = {"debug", 7},
};

void log_set_level(log_level_t level) { log_level = level; }

log_level_t log_get_level(void) { return log_level; }

void log_msg(log_level_t level, const char *fmt, ...)
{
    char line[1024];
    int n;
    va_list ap;

    if (level > log_level)
        return;
    if (log_journal < 0)
        log_journal = getenv("JOURNAL_STREAM") != NULL;
    if (log_journal) {
        n = snprintf(line, sizeof line, "<%d>%s: ", log_levels[level].syslog_prio,
                     log_levels[level].name);
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += snprintf(line + n, sizeof line - (size_t)n, ".%03dZ %s: ",
                      (int)(tv.tv_usec / 1000), log_levels[level].name);
    }
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* A message must never span lines. */
    for (char *p = line + n; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "%s\n", line);
}

static void log_libevent(int severity, const char *msg)
{
    log_level_t level = LOG_LEVEL_DEBUG;

    if (severity == EVENT_LOG_ERR)
        level = LOG_LEVEL_ERROR;
    else if (severity == EVENT_LOG_WARN)
        level = LOG_LEVEL_WARN;
    log_msg(level, "libevent: %s", msg);
}

void log_capture_libevent(void) { event_set_log_callback(log_libevent); }

char *log_escape(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (cap == 0)
        return out;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return out;
}
