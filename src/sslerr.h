/* sslerr.h: OpenSSL's error queue as one line a person can read, for the
 * daemon's TLS listeners and the client alike.
 */
#ifndef SLUICE_SSLERR_H
#define SLUICE_SSLERR_H

#include <stddef.h>

/* The first real reason in the thread's OpenSSL error queue (a system
 * error as its errno text), or `fallback` when there is none; the queue is
 * cleared. */
void sslerr_reason(char *out, size_t cap, const char *fallback);

#endif
