/* mbuf.h: a Redis command built in place as RESP, for the mirror.
 *
 * Arguments are appended after `room` bytes kept free in front, where the
 * header ("*N", verb, key) is written once N is known (mirror_send), so a
 * batch of thousands of arguments is copied only once more, into hiredis's
 * output buffer. No I/O here.
 */
#ifndef SLUICE_MBUF_H
#define SLUICE_MBUF_H

#include <stddef.h>
#include <stdint.h>

#define MBUF_KEEP ((size_t)256 << 10) /* larger idle buffers are freed */

typedef struct mbuf {
    char *p;
    size_t len, cap;
    size_t room;
    size_t nargs; /* arguments after the room; 0 = not open */
} mbuf_t;

/* Start a command with `room` header bytes, unless it is open already.
 * 0, or -1 when out of memory. */
int mbuf_open(mbuf_t *b, size_t room);

/* Append one bulk-string argument. 0, or -1 when out of memory (the
 * command is then incomplete: the caller drops it). */
int mbuf_arg(mbuf_t *b, const void *data, size_t n);
int mbuf_arg_u64(mbuf_t *b, uint64_t v);
int mbuf_arg_str(mbuf_t *b, const char *s);

/* The head of a command of nargs arguments after verb and key:
 * "*<nargs+2>\r\n$<verb len>\r\n<verb>\r\n$<klen>\r\n", into out (at
 * least MBUF_HEAD_MAX bytes; verb at most 16 bytes); its length. The key
 * and its "\r\n" follow it. */
#define MBUF_HEAD_MAX 80
size_t mbuf_head(char *out, size_t nargs, const char *verb, size_t klen);

/* The command was sent (or dropped): empty it, and let a big one go. */
void mbuf_done(mbuf_t *b);

void mbuf_free(mbuf_t *b);

#endif
