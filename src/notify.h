/* notify.h: the systemd notification protocol (sd_notify) without libsystemd. */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

#include <stdint.h>

/* Send one datagram of newline-separated "KEY=VALUE" assignments to
 * $NOTIFY_SOCKET (a path, or "@name" for an abstract socket). Returns 1 if
 * sent, 0 if not under systemd (no NOTIFY_SOCKET), -1 on error. */
int notify_send(const char *state);

/* printf-style wrapper around notify_send. */
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog period in microseconds from $WATCHDOG_USEC (honouring
 * $WATCHDOG_PID), or 0 when no watchdog is asked for. */
uint64_t notify_watchdog_usec(void);

#endif
