/* bench_buf.c: the flat byte buffer of the bench's own servers and
 * clients that are not client.c's (the relay floor, the crowd), and the
 * Redis Streams consumer's list of ids to XACK: bytes
 * taken from the front, added at the back, moved down only when that is
 * cheaper than growing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_int.h"

/* Compacting when everything was taken, or when what was taken is at
 * least what is left (so a long output being written is not moved again
 * for every message added behind it); else growing. */
int bench_buf_room(bench_buf_t *b, size_t more, size_t first)
{
    if (b->off > 0 && (b->off == b->len ||
                       (b->cap - b->len < more && b->off >= b->len - b->off))) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : first;
    while (cap - b->len < more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int bench_buf_put(bench_buf_t *b, const void *p, size_t n, size_t first)
{
    if (bench_buf_room(b, n, first) < 0)
        return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

ssize_t bench_buf_write(bench_buf_t *b, int fd)
{
    ssize_t sent = 0;

    while (b->off < b->len) {
        ssize_t n = write(fd, b->p + b->off, b->len - b->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            return -1;
        b->off += (size_t)n;
        sent += n;
    }
    if (b->off == b->len)
        b->off = b->len = 0;
    return sent;
}

void bench_buf_free(bench_buf_t *b)
{
    free(b->p);
    *b = (bench_buf_t){ 0 };
}
