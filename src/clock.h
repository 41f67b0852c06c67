/* clock.h: the one clock of the daemon and the client. Monotonic time for
 * every deadline, timer and rate (it never jumps with the wall clock), the
 * wall clock only where a time is stored or shown (the mirror's stats
 * stamp), and the ms -> struct timeval conversion libevent's timers take.
 * Inline: the broker reads the clock on every loop turn. */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

static inline uint64_t clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t clock_us(void)
{
    return clock_ns() / 1000u;
}

static inline uint64_t clock_ms(void)
{
    return clock_ns() / 1000000u;
}

static inline double clock_s(void)
{
    return (double)clock_ns() / 1e9;
}

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
static inline uint64_t clock_unix_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline struct timeval clock_tv(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

#endif
