/* addr.h: the one parser for the addresses sluice listens on and connects
 * to: "host:port", "[v6]:port", "unix:/path" and the "tls://" prefix.
 *
 * addr_parse checks the text and splits it; it does no I/O and resolves no
 * names, so the config loader, the listeners, the admin endpoint, the Redis
 * mirror and the command-line client all accept exactly the same forms and
 * give the same reasons for refusing one. Names stay strings (hiredis and
 * getaddrinfo resolve them); addr_sockaddr turns a numeric host into a
 * sockaddr for bind.
 */
#ifndef SLUICE_ADDR_H
#define SLUICE_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_HOST_MAX 256 /* a DNS name is at most 253 bytes */
#define ADDR_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path) on Linux, NUL included */

/* What a caller accepts besides plain host:port and [v6]:port. */
enum {
    ADDR_UNIX = 1,       /* unix:/abs/path */
    ADDR_TLS = 2,        /* tls://host:port (never tls://unix:) */
    ADDR_PORT0 = 4,      /* port 0: the kernel picks one (listeners) */
    ADDR_PORT_OPT = 8,   /* "host" alone, port left 0 for the caller's default; then a
                          * host with two colons or more is a bare IPv6 address */
    ADDR_HOST_OPT = 16,  /* ":port" (or nothing): the host is 127.0.0.1 */
    ADDR_REL_PATH = 32,  /* unix:relative/path too */
};

/* Every listener of the daemon (the file's `listen` and sluiced -l). */
#define ADDR_LISTEN (ADDR_UNIX | ADDR_TLS | ADDR_PORT0)
/* The admin endpoint: TCP only, port 0 allowed. */
#define ADDR_ADMIN ADDR_PORT0
/* The Redis server the mirror connects to. */
#define ADDR_REDIS ADDR_UNIX
/* What `sluice -s` and $SLUICE_ADDR take (the tool strips tls:// itself). */
#define ADDR_CLIENT (ADDR_UNIX | ADDR_PORT_OPT | ADDR_HOST_OPT | ADDR_REL_PATH)

typedef enum addr_kind {
    ADDR_KIND_TCP = 0, /* host and port */
    ADDR_KIND_UNIX,    /* path */
} addr_kind_t;

typedef struct addr {
    addr_kind_t kind;
    bool tls;                  /* given with tls:// */
    uint16_t port;             /* TCP; 0 when ADDR_PORT0 allowed it or ADDR_PORT_OPT left it out */
    char host[ADDR_HOST_MAX];  /* TCP: name or address, without [brackets]; may hold a %zone */
    char path[ADDR_PATH_MAX];  /* UNIX: the socket path */
} addr_t;

/* Parse s into *a as `allow` (ADDR_* bits) permits. NULL on success, else
 * a static message saying why not, worded for "bad address 'S': WHY"
 * ("empty", "missing :port", "port must be 1..65535", ...). *a is
 * unspecified after a failure. */
const char *addr_parse(const char *s, unsigned allow, addr_t *a);

/* Fill *ss for bind or connect: the path of a UNIX address, or a numeric
 * TCP host ("localhost" stands for 127.0.0.1) through libevent's
 * evutil_parse_sockaddr_port. 0, or -1 if the host is a name or not an
 * address libevent takes (a %zone, for one). */
int addr_sockaddr(const addr_t *a, struct sockaddr_storage *ss, socklen_t *len);

/* Only this machine can reach it: a unix socket, "localhost", 127.0.0.0/8,
 * ::1 or ::ffff:127.x.y.z. A name other than localhost is not loopback
 * (nothing is resolved). */
bool addr_loopback(const addr_t *a);

#endif
