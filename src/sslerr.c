/* sslerr.c: OpenSSL's error queue as one line (see sslerr.h). */
#include "sslerr.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

void sslerr_reason(char *out, size_t cap, const char *fallback)
{
    unsigned long e;
    size_t n = 0;

    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        /* A system error's reason is an errno value ("no such file"). */
        const char *r = ERR_GET_LIB(e) == ERR_LIB_SYS ? strerror(ERR_GET_REASON(e))
                                                      : ERR_reason_error_string(e);
        /* The first real reason is the cause; the rest say where it surfaced. */
        if (r != NULL && n == 0 && ERR_GET_REASON(e) != ERR_R_SYS_LIB)
            n = (size_t)snprintf(out, cap, "%s", r);
    }
    if (out[0] == '\0')
        snprintf(out, cap, "%s", fallback);
}
