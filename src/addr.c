/* addr.c: parses "host:port", "[v6]:port", "unix:/path" and "tls://"
 * addresses once for every module (see addr.h), and turns numeric ones into
 * a sockaddr with libevent's evutil_parse_sockaddr_port.
 *
 * The grammar is the one the config file has always documented; the
 * command-line client's shortcuts ("host", ":port", a bare IPv6 address, a
 * relative socket path) are flags, not a second parser.
 */
#include "addr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <event2/util.h>

#define ADDR_LOCALHOST "127.0.0.1" /* what "localhost" and an empty host stand for */

static bool addr_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

static bool addr_hex_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Digits only (no sign, no blanks), at most 5 of them. */
static const char *addr_port(const char *p, unsigned allow, addr_t *a)
{
    const char *range = allow & ADDR_PORT0 ? "port must be 0..65535" : "port must be 1..65535";
    unsigned long v = 0;
    size_t n = 0;

    for (; p[n] >= '0' && p[n] <= '9'; n++) {
        if (n == 5)
            return range;
        v = v * 10 + (unsigned long)(p[n] - '0');
    }
    if (n == 0 || p[n] != '\0')
        return "port must be a number";
    if (v > 65535 || (v == 0 && !(allow & ADDR_PORT0)))
        return range;
    a->port = (uint16_t)v;
    return NULL;
}

static const char *addr_host_set(addr_t *a, const char *s, size_t n)
{
    if (n >= sizeof a->host)
        return "host is longer than 255 bytes";
    memcpy(a->host, s, n);
    a->host[n] = '\0';
    return NULL;
}

/* An IPv6 address of n bytes at s (the inside of [...], or a bare one):
 * hex digits, colons and dots, then maybe a %zone naming an interface. */
static const char *addr_v6(addr_t *a, const char *s, size_t n)
{
    const char *end = s + n, *zone = memchr(s, '%', n);
    bool has_colon = false;

    for (const char *p = s; p < (zone != NULL ? zone : end); p++) {
        if (*p == ':')
            has_colon = true;
        else if (!addr_hex_char((unsigned char)*p) && *p != '.')
            return "bad character in [v6] address";
    }
    if (!has_colon)
        return "bad [v6] address";
    if (zone != NULL && zone + 1 == end)
        return "empty zone in [v6] address";
    for (const char *q = zone != NULL ? zone + 1 : end; q < end; q++)
        if (!addr_host_char((unsigned char)*q))
            return "bad zone in [v6] address";
    return addr_host_set(a, s, n);
}

static const char *addr_bracketed(const char *s, unsigned allow, addr_t *a)
{
    const char *end = strchr(s, ']');
    const char *why;

    if (end == NULL || end == s + 1)
        return "unterminated or empty [v6] address";
    if ((why = addr_v6(a, s + 1, (size_t)(end - s - 1))) != NULL)
        return why;
    if (end[1] == '\0' && (allow & ADDR_PORT_OPT))
        return NULL;
    if (end[1] != ':')
        return "missing :port";
    return addr_port(end + 2, allow, a);
}

/* host:port, [v6]:port, and the client's shortcuts. */
static const char *addr_hostport(const char *s, unsigned allow, addr_t *a)
{
    const char *colon = strrchr(s, ':');
    size_t hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
    const char *why;

    a->kind = ADDR_KIND_TCP;
    if (s[0] == '[')
        return addr_bracketed(s, allow, a);
    if ((allow & ADDR_PORT_OPT) && colon != NULL && memchr(s, ':', hlen) != NULL)
        return addr_v6(a, s, strlen(s)); /* a port needs brackets round the address */
    if (colon == NULL && !(allow & ADDR_PORT_OPT))
        return "missing :port";
    if (hlen == 0 && !(allow & ADDR_HOST_OPT))
        return "missing host";
    for (const char *p = s; p < s + hlen; p++) {
        if (*p == ':')
            return "IPv6 addresses need brackets, as in [::1]:7700";
        if (!addr_host_char((unsigned char)*p))
            return "bad character in host";
    }
    why = hlen == 0 ? addr_host_set(a, ADDR_LOCALHOST, strlen(ADDR_LOCALHOST))
                    : addr_host_set(a, s, hlen);
    if (why != NULL || colon == NULL)
        return why;
    return addr_port(colon + 1, allow, a);
}

static const char *addr_unix(const char *path, unsigned allow, addr_t *a)
{
    size_t n = strlen(path);

    if (!(allow & ADDR_UNIX))
        return "unix sockets are not allowed here";
    if (path[0] != '/' && !(allow & ADDR_REL_PATH))
        return "unix socket path must be absolute";
    if (n == 0)
        return "empty unix socket path";
    if (n >= sizeof a->path)
        return "unix socket path is longer than 107 bytes";
    a->kind = ADDR_KIND_UNIX;
    memcpy(a->path, path, n + 1);
    return NULL;
}

const char *addr_parse(const char *s, unsigned allow, addr_t *a)
{
    memset(a, 0, sizeof *a);
    if (*s == '\0' && !(allow & ADDR_HOST_OPT))
        return "empty";
    if (strncmp(s, "unix:", 5) == 0)
        return addr_unix(s + 5, allow, a);
    if (strncmp(s, "tls://", 6) == 0) {
        if (!(allow & ADDR_TLS))
            return "tls:// is not allowed here";
        /* TLS runs over TCP only: what follows is host:port, even "unix:..." */
        a->tls = true;
        return addr_hostport(s + 6, allow, a);
    }
    return addr_hostport(s, allow, a);
}

int addr_sockaddr(const addr_t *a, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[ADDR_HOST_MAX + 2];
    int sslen = (int)sizeof *ss;

    memset(ss, 0, sizeof *ss);
    if (a->kind == ADDR_KIND_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, a->path, sizeof a->path);
        *len = (socklen_t)sizeof *un;
        return 0;
    }
    /* Brackets, so that libevent never reads "1:2" as host 1, port 2. */
    snprintf(host, sizeof host, strchr(a->host, ':') != NULL ? "[%s]" : "%s",
             strcmp(a->host, "localhost") == 0 ? ADDR_LOCALHOST : a->host);
    /* Without a port libevent leaves it 0 (it refuses an explicit ":0"). */
    if (evutil_parse_sockaddr_port(host, (struct sockaddr *)ss, &sslen) != 0)
        return -1;
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(a->port);
    else if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(a->port);
    else
        return -1;
    *len = (socklen_t)sslen;
    return 0;
}

bool addr_loopback(const addr_t *a)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (a->kind == ADDR_KIND_UNIX)
        return true;
    if (addr_sockaddr(a, &ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24 == 127;
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}
