/* log.h: leveled logging to stderr, one event a line (journald reads it). */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stddef.h>

#include "config.h"

void log_set_level(log_level_t level);
log_level_t log_get_level(void);

/* Route libevent's own messages into ours. */
void log_capture_libevent(void);

void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Copy at most n bytes of untrusted s into out (cap bytes, NUL-terminated),
 * escaping anything that is not printable ASCII, so client bytes can never
 * forge a log line. Returns out. */
char *log_escape(char *out, size_t cap, const char *s, size_t n);

#endif
