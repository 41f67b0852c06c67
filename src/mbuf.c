/* mbuf.c: RESP arguments appended to a growable buffer (see mbuf.h). */
#include "mbuf.h"

#include <stdlib.h>
#include <string.h>

#include "dec.h"

static int mbuf_grow(mbuf_t *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    if (b->len + more <= b->cap)
        return 0;
    while (cap < b->len + more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int mbuf_open(mbuf_t *b, size_t room)
{
    if (b->nargs > 0)
        return 0;
    b->len = 0;
    if (mbuf_grow(b, room + 256) < 0)
        return -1;
    b->len = b->room = room;
    return 0;
}

int mbuf_arg(mbuf_t *b, const void *data, size_t n)
{
    char num[24];
    size_t d = dec_u64(num, n);
    char *q;

    if (mbuf_grow(b, n + d + 5) < 0)
        return -1;
    q = b->p + b->len;
    *q++ = '$';
    memcpy(q, num, d);
    q += d;
    *q++ = '\r';
    *q++ = '\n';
    if (n > 0)
        memcpy(q, data, n);
    q += n;
    *q++ = '\r';
    *q++ = '\n';
    b->len = (size_t)(q - b->p);
    b->nargs++;
    return 0;
}

int mbuf_arg_u64(mbuf_t *b, uint64_t v)
{
    char *q;
    size_t d;

    /* "$<digits>\r\n<v>\r\n", in place: at most 1 + 2 + 2 + 20 + 2. The
     * value goes where a one-digit length leaves it, and moves by one byte
     * for the rare ten digits and more. */
    if (mbuf_grow(b, 27) < 0)
        return -1;
    q = b->p + b->len;
    d = dec_u64(q + 4, v);
    if (d >= 10) {
        memmove(q + 5, q + 4, d);
        q[1] = (char)('0' + d / 10);
        q[2] = (char)('0' + d % 10);
        q[3] = '\r';
        q[4] = '\n';
        q += 5 + d;
    } else {
        q[1] = (char)('0' + d);
        q[2] = '\r';
        q[3] = '\n';
        q += 4 + d;
    }
    b->p[b->len] = '$';
    *q++ = '\r';
    *q++ = '\n';
    b->len = (size_t)(q - b->p);
    b->nargs++;
    return 0;
}

int mbuf_arg_str(mbuf_t *b, const char *s)
{
    return mbuf_arg(b, s, strlen(s));
}

/* A RESP length line: c, the number, CRLF. */
static size_t mbuf_len_line(char *out, char c, size_t n)
{
    size_t d;

    out[0] = c;
    d = dec_u64(out + 1, n);
    out[1 + d] = '\r';
    out[2 + d] = '\n';
    return d + 3;
}

size_t mbuf_head(char *out, size_t nargs, const char *verb, size_t klen)
{
    size_t vlen = strlen(verb), n = mbuf_len_line(out, '*', nargs + 2);

    n += mbuf_len_line(out + n, '$', vlen);
    memcpy(out + n, verb, vlen);
    n += vlen;
    out[n++] = '\r';
    out[n++] = '\n';
    return n + mbuf_len_line(out + n, '$', klen);
}

void mbuf_done(mbuf_t *b)
{
    b->len = 0;
    b->nargs = 0;
    b->room = 0;
    if (b->cap > MBUF_KEEP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

void mbuf_free(mbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
