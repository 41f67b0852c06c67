/* msg.c: allocation of messages: the header and the payload share one block,
 * so a queued message costs a single malloc chunk and one free.
 */
#include <stdlib.h>
#include <string.h>

#include "msg.h"

msg_t *msg_new(uint32_t len)
{
    msg_t *m = malloc(sizeof(*m) + len);

    if (m == NULL)
        return NULL;
    /* Only the header is cleared: the payload is about to be overwritten. */
    memset(m, 0, sizeof(*m));
    m->len = len;
    return m;
}

msg_t *msg_new_copy(const void *data, uint32_t len)
{
    msg_t *m = msg_new(len);

    if (m != NULL && len > 0)
        memcpy(m->data, data, len);
    return m;
}

void msg_free(msg_t *m)
{
    free(m);
}
