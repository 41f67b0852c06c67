/* server.c: listeners, the set of connections, and the per-turn work of the
 * event loop.
 *
 * Writes are batched the way Redis does it before sleeping: connections
 * that got output during a loop turn are queued, and one low-priority event
 * writes them all after every I/O callback of the turn has run, so a
 * consumer receiving pushes from fifty PUBs gets one writev, not fifty.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "tls.h"

#define SERVER_PRIO_FLUSH (SERVER_NPRIORITIES - 1) /* after all I/O of a turn */
#define SERVER_ACCEPT_BACKOFF_MS 100
#define SERVER_PROBE_MS 100        /* the loop-stall probe's period */

/* ---- the connection and flush lists (conn.c asks; only this file writes) ---- */

static void server_flush_dequeue(server_t *s, conn_t *c)
{
    TAILQ_REMOVE(&s->flushq, c, flush_link);
    c->flush_queued = false;
}

void server_conn_add(server_t *s, conn_t *c)
{
    LIST_INSERT_HEAD(&s->conns, c, link);
    s->nconns++;
}

void server_conn_remove(server_t *s, conn_t *c)
{
    if (c->flush_queued)
        server_flush_dequeue(s, c);
    LIST_REMOVE(c, link);
    s->nconns--;
}

void server_want_flush(server_t *s, conn_t *c)
{
    if (c->flush_queued)
        return;
    /* First come, first written: the connection whose command caused the
     * work (a producer waiting for its +OKs) goes out before the pushes it
     * set off, so it can send its next batch while we write the rest. */
    c->flush_queued = true;
    TAILQ_INSERT_TAIL(&s->flushq, c, flush_link);
    event_active(s->flush_ev, EV_TIMEOUT, 0);
}

/* ---- flushing and timers ---- */

static void server_arm_timer(server_t *s);

static void server_on_flush(evutil_socket_t fd, short what, void *arg)
{
    server_t *s = arg;
    conn_t *c;

    (void)fd;
    (void)what;
    while ((c = TAILQ_FIRST(&s->flushq)) != NULL) {
        server_flush_dequeue(s, c);
        conn_flush(c);
    }
    server_arm_timer(s);
}

void server_touch(server_t *s)
{
    event_active(s->flush_ev, EV_TIMEOUT, 0);
}

/* The one place the broker's timer is re-armed: the end of every turn that
 * called into the broker, and its own expiry. */
static void server_arm_timer(server_t *s)
{
    uint64_t next = broker_next_deadline(s->broker);
    uint64_t now;
    struct timeval tv;

    if (next >= s->timer_at)
        return;
    now = clock_ms();
    tv = clock_tv(next > now ? next - now : 0);
    evtimer_add(s->timer_ev, &tv);
    s->timer_at = next;
}

static void server_on_timer(evutil_socket_t fd, short what, void *arg)
{
    server_t *s = arg;

    (void)fd;
    (void)what;
    s->timer_at = UINT64_MAX;
    broker_tick(s->broker, clock_ms());
    server_arm_timer(s);
}

/* A timer that should fire every SERVER_PROBE_MS; how late it fires is how
 * long the loop was busy elsewhere. */
static void server_on_probe(evutil_socket_t fd, short what, void *arg)
{
    server_t *s = arg;
    uint64_t now = clock_ms();
    struct timeval tv = clock_tv(SERVER_PROBE_MS);

    (void)fd;
    (void)what;
    if (now > s->probe_due && now - s->probe_due > s->max_loop_stall_ms)
        s->max_loop_stall_ms = now - s->probe_due;
    s->probe_due = now + SERVER_PROBE_MS;
    evtimer_add(s->probe_ev, &tv);
}

/* ---- accepting ---- */

static void server_peer_name(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "unix");
    }
}

/* One bound address and the protocol it serves. */
typedef struct server_listener {
    server_t *s;
    struct evconnlistener *l;
    char *addr;               /* what it is bound to, for logs and the port file */
    const connproto_t *proto;
    bool tls;
} server_listener_t;

static void server_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                             int salen, void *arg)
{
    server_listener_t *sl = arg;
    server_t *s = sl->s;
    char peer[64];
    int one = 1;

    (void)l;
    (void)salen;
    server_peer_name(sa, peer, sizeof peer);
    if (s->draining) {
        close(fd);
        return;
    }
    if (sl->tls) {
        /* Refusals too must be spoken in TLS: tls.c checks the limit after
         * the handshake. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        tls_accept(s->tls, fd, peer, sl->proto);
        return;
    }
    if (s->nconns >= s->cfg->limits.max_connections) {
        log_warn("refusing %s: max_connections (%llu) reached", peer,
                 (unsigned long long)s->cfg->limits.max_connections);
        conn_refuse(fd, sl->proto->busy);
        return;
    }
    if (sa->sa_family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sl->proto->open(&s->host, fd, peer);
}

static void server_on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    server_t *s = arg;

    (void)fd;
    (void)what;
    for (size_t i = 0; i < s->nlisteners; i++)
        evconnlistener_enable(s->listeners[i]->l);
}

/* Out of descriptors: stop accepting for a moment instead of spinning on a
 * listener that is always readable. */
static void server_on_accept_error(struct evconnlistener *l, void *arg)
{
    server_t *s = ((server_listener_t *)arg)->s;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = clock_tv(SERVER_ACCEPT_BACKOFF_MS);

    (void)l;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        log_warn("accept: %s", strerror(err));
        return;
    }
    log_warn("accept: %s; pausing accepts for %d ms", strerror(err), SERVER_ACCEPT_BACKOFF_MS);
    for (size_t i = 0; i < s->nlisteners; i++)
        evconnlistener_disable(s->listeners[i]->l);
    evtimer_add(s->accept_retry, &tv);
}

/* ---- listening ---- */

/* The address a listener really got (port 0 becomes the kernel's pick). */
static char *server_bound_name(struct evconnlistener *l, const char *asked, const addr_t *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char buf[128];

    if (a->kind == ADDR_KIND_UNIX ||
        getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len) != 0)
        return strdup(asked);
    strcpy(buf, a->tls ? "tls://" : "");
    server_peer_name((struct sockaddr *)&ss, buf + strlen(buf), sizeof buf - strlen(buf));
    return strdup(buf);
}

static int server_listen_one(server_t *s, const char *addr, const connproto_t *proto)
{
    struct sockaddr_storage ss;
    socklen_t len;
    server_listener_t *sl;
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;
    addr_t a;

    /* sluiced -l has always taken a relative socket path; the file does not. */
    if (addr_parse(addr, ADDR_LISTEN | ADDR_REL_PATH, &a) != NULL ||
        addr_sockaddr(&a, &ss, &len) != 0) {
        log_error("cannot listen on %s: not an address (host:port, [v6]:port, unix:/path or "
                  "tls://host:port)",
                  addr);
        return -1;
    }
    if (a.tls && s->tls == NULL && (s->tls = tls_server_new(&s->host, s->cfg)) == NULL) {
        log_error("cannot listen on %s: no usable TLS certificate", addr);
        return -1;
    }
    if (ss.ss_family == AF_UNIX) {
        /* A socket file left by a previous run would make bind fail. */
        const char *path = ((struct sockaddr_un *)&ss)->sun_path;
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path);
        flags &= ~(unsigned)LEV_OPT_REUSEABLE;
    }
    sl = calloc(1, sizeof *sl);
    if (sl == NULL)
        return -1;
    *sl = (server_listener_t){.s = s, .proto = proto, .tls = a.tls};
    sl->l = evconnlistener_new_bind(s->base, server_on_accept, sl, flags, 1024,
                                    (struct sockaddr *)&ss, (int)len);
    if (sl->l == NULL) {
        log_error("cannot listen on %s: %s", addr, strerror(errno));
        free(sl);
        return -1;
    }
    evconnlistener_set_error_cb(sl->l, server_on_accept_error);
    sl->addr = server_bound_name(sl->l, addr, &a);
    s->listeners[s->nlisteners++] = sl;
    log_info("listening on %s%s", sl->addr, proto->label);
    return 0;
}

/* A protocol that keeps its own connections is told of reloads, drains
 * and the end, once however many addresses it listens on. */
static int server_proto_add(server_t *s, const connproto_t *proto)
{
    if (proto->close_all == NULL)
        return 0;
    for (size_t i = 0; i < s->nprotos; i++)
        if (s->protos[i] == proto)
            return 0;
    if (s->nprotos == SERVER_MAX_PROTOS) {
        log_error("cannot listen for%s: too many protocols", proto->label);
        return -1;
    }
    s->protos[s->nprotos++] = proto;
    return 0;
}

int server_listen(server_t *s, char *const *addrs, size_t naddrs, const connproto_t *proto)
{
    server_listener_t **v = realloc(s->listeners, (s->nlisteners + naddrs + 1) * sizeof *v);

    if (v == NULL)
        return -1;
    s->listeners = v;
    if (server_proto_add(s, proto) != 0)
        return -1;
    for (size_t i = 0; i < naddrs; i++)
        if (server_listen_one(s, addrs[i], proto) != 0)
            return -1;
    return 0;
}

int server_write_port_file(const server_t *s, const char *path)
{
    char tmp[4096];
    FILE *f;

    /* Written whole and renamed, so a reader never sees half of it. */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    for (size_t i = 0; i < s->nlisteners; i++) {
        const char *key = s->listeners[i]->proto->port_key;
        fprintf(f, "%s%s%s\n", key ? key : "", key ? " " : "", s->listeners[i]->addr);
    }
    if (s->admin_addr != NULL)
        fprintf(f, "admin %s\n", s->admin_addr);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* ---- the mirror's status ---- */

void server_set_mirror(server_t *s, server_mirror_status_fn fn, const void *arg)
{
    s->mirror_status = fn;
    s->mirror_arg = arg;
}

server_mirror_status_t server_mirror_status(const server_t *s)
{
    server_mirror_status_t none = {.connected = false, .lag_ops = 0};

    return s->mirror_status != NULL ? s->mirror_status(s->mirror_arg) : none;
}

/* ---- what connections see (connhost.h) ---- */

/* host is the first member of server_t's leading union. */
static server_t *server_of(const connhost_t *h) { return (server_t *)h; }

static void server_host_add(connhost_t *h, conn_t *c) { server_conn_add(server_of(h), c); }

static void server_host_remove(connhost_t *h, conn_t *c) { server_conn_remove(server_of(h), c); }

static void server_host_want_flush(connhost_t *h, conn_t *c) { server_want_flush(server_of(h), c); }

static void server_host_touch(connhost_t *h) { server_touch(server_of(h)); }

static stats_extra_t server_host_stats(const connhost_t *h)
{
    const server_t *s = server_of(h);
    server_mirror_status_t ms = server_mirror_status(s);

    return (stats_extra_t){
        .connections = s->nconns,
        .redis_connected = ms.connected,
        .redis_lag_ops = ms.lag_ops,
        .max_loop_stall_ms = s->max_loop_stall_ms,
    };
}

static const connhost_ops_t server_host_ops = {
    .conn_add = server_host_add,
    .conn_remove = server_host_remove,
    .want_flush = server_host_want_flush,
    .touch = server_host_touch,
    .stats = server_host_stats,
};

/* ---- life ---- */

server_t *server_new(struct event_base *base, broker_t *broker, const config_t *cfg)
{
    server_t *s = calloc(1, sizeof *s);
    struct timeval tv = clock_tv(SERVER_PROBE_MS);

    if (s == NULL)
        return NULL;
    LIST_INIT(&s->conns);
    TAILQ_INIT(&s->flushq);
    s->base = base;
    s->broker = broker;
    s->cfg = cfg;
    s->ops = &server_host_ops;
    s->timer_at = UINT64_MAX;
    s->flush_ev = event_new(base, -1, 0, server_on_flush, s);
    s->timer_ev = evtimer_new(base, server_on_timer, s);
    s->accept_retry = evtimer_new(base, server_on_accept_retry, s);
    s->probe_ev = evtimer_new(base, server_on_probe, s);
    if (s->flush_ev == NULL || s->timer_ev == NULL || s->accept_retry == NULL ||
        s->probe_ev == NULL) {
        server_free(s);
        return NULL;
    }
    event_priority_set(s->flush_ev, SERVER_PRIO_FLUSH);
    s->probe_due = clock_ms() + SERVER_PROBE_MS;
    evtimer_add(s->probe_ev, &tv);
    return s;
}

void server_configure(server_t *s, const config_t *cfg)
{
    conn_t *c;

    LIST_FOREACH(c, &s->conns, link)
        conn_reconfigure(c, cfg);
    for (size_t i = 0; i < s->nprotos; i++)
        s->protos[i]->configure(&s->host, cfg);
    s->cfg = cfg;
    if (s->tls != NULL)
        tls_server_configure(s->tls, cfg);
    broker_configure(s->broker, cfg, clock_ms());
    broker_dispatch(s->broker, clock_ms());
    server_arm_timer(s);
}

static void server_on_drain(evutil_socket_t fd, short what, void *arg)
{
    server_t *s = arg;
    bool drained = true;
    struct timeval tv = clock_tv(10);
    conn_t *c;

    (void)fd;
    (void)what;
    LIST_FOREACH(c, &s->conns, link)
        if (!conn_drained(c))
            drained = false;
    for (size_t i = 0; i < s->nprotos; i++)
        if (!s->protos[i]->drained(&s->host))
            drained = false;
    if (drained && tls_server_drained(s->tls)) {
        event_base_loopbreak(s->base);
        return;
    }
    evtimer_add(s->drain_ev, &tv);
}

static void server_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    server_t *s = arg;

    (void)fd;
    (void)what;
    log_warn("shutdown: some clients did not take their last replies in time");
    event_base_loopbreak(s->base);
}

void server_drain(server_t *s, uint64_t timeout_ms)
{
    struct timeval tv = clock_tv(timeout_ms);
    struct event *deadline;
    conn_t *c;

    if (s->draining)
        return;
    s->draining = true;
    for (size_t i = 0; i < s->nlisteners; i++)
        evconnlistener_disable(s->listeners[i]->l);
    LIST_FOREACH(c, &s->conns, link)
        conn_stop_reading(c);
    for (size_t i = 0; i < s->nprotos; i++)
        s->protos[i]->stop_reading(&s->host);
    s->drain_ev = evtimer_new(s->base, server_on_drain, s);
    deadline = evtimer_new(s->base, server_on_drain_timeout, s);
    if (s->drain_ev == NULL || deadline == NULL) {
        event_base_loopbreak(s->base);
        return;
    }
    s->drain_deadline = deadline;
    evtimer_add(deadline, &tv);
    event_active(s->drain_ev, EV_TIMEOUT, 0);
}

void server_free(server_t *s)
{
    addr_t a;

    if (s == NULL)
        return;
    while (!LIST_EMPTY(&s->conns))
        conn_free(LIST_FIRST(&s->conns));
    for (size_t i = 0; i < s->nprotos; i++)
        s->protos[i]->close_all(&s->host);
    tls_server_free(s->tls);
    for (size_t i = 0; i < s->nlisteners; i++) {
        server_listener_t *sl = s->listeners[i];
        evconnlistener_free(sl->l);
        if (addr_parse(sl->addr, ADDR_LISTEN | ADDR_REL_PATH, &a) == NULL &&
            a.kind == ADDR_KIND_UNIX)
            unlink(a.path);
        free(sl->addr);
        free(sl);
    }
    free(s->listeners);
    if (s->flush_ev)
        event_free(s->flush_ev);
    if (s->timer_ev)
        event_free(s->timer_ev);
    if (s->accept_retry)
        event_free(s->accept_retry);
    if (s->probe_ev)
        event_free(s->probe_ev);
    if (s->drain_ev)
        event_free(s->drain_ev);
    if (s->drain_deadline)
        event_free(s->drain_deadline);
    free(s);
}
