/* daemon.c: the life of sluiced.
 *
 * Start: load the config, bind every listener, tell systemd READY=1.
 * SIGHUP: load the file again; a bad file is rejected whole and the running
 * config stays. SIGTERM/SIGINT: stop accepting and reading, let clients
 * take the replies they are owed, exit 0 within a bounded time.
 */
#include "daemon.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "addr.h"
#include "admin.h"
#include "bconn.h"
#include "broker.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "mirror.h"
#include "msg.h"
#include "notify.h"
#include "server.h"
#include "version.h"

#define DAEMON_DRAIN_MS 5000
#define DAEMON_STATUS_MS 5000

typedef struct daemon {
    const daemon_opts_t *opts;
    const char *path;          /* the file reloads read; NULL: built-in config */
    config_t *cfg;
    struct event_base *base;
    broker_t *broker;
    server_t *server;
    admin_t *admin;            /* NULL when admin.listen is "" */
    mirror_t *mirror;          /* NULL unless redis.enabled */
    struct event *sig_term, *sig_int, *sig_hup;
    struct event *watchdog_ev, *status_ev;
    uint64_t watchdog_usec;
} daemon_t;

/* Which file to read: -c, else the default path if it is there. */
static const char *daemon_config_path(const daemon_opts_t *o)
{
    if (o->config_path != NULL)
        return o->config_path;
    if (access(CONFIG_DEFAULT_PATH, F_OK) == 0)
        return CONFIG_DEFAULT_PATH;
    return NULL;
}

/* Load the config and apply the command line over it. */
static config_t *daemon_load(const daemon_opts_t *o, const char *path, char *err, size_t errlen)
{
    config_t *cfg = path ? config_load_file(path, err, errlen) : config_default();

    if (cfg == NULL) {
        if (path == NULL)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (o->nlisten > 0) {
        char **l = calloc(o->nlisten, sizeof *l);
        if (l == NULL) {
            config_free(cfg);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < o->nlisten; i++)
            l[i] = strdup(o->listen[i]);
        for (size_t i = 0; i < cfg->nlisten; i++)
            free(cfg->listen[i]);
        free(cfg->listen);
        cfg->listen = l;
        cfg->nlisten = o->nlisten;
    }
    if (o->log_level >= 0)
        cfg->log_level = (log_level_t)o->log_level;
    return cfg;
}

static bool daemon_same_addrs(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool daemon_same_listen(const config_t *a, const config_t *b)
{
    return daemon_same_addrs(a->listen, a->nlisten, b->listen, b->nlisten) &&
           daemon_same_addrs(a->beanstalk.listen, a->beanstalk.nlisten, b->beanstalk.listen,
                             b->beanstalk.nlisten);
}

/* The cluster is not reloadable: the node list decides where every topic
 * lives, and a node that changed it alone would answer -MOVED from another
 * map than its peers and clients hold. A changed one waits for a restart. */
static bool daemon_same_cluster(const config_t *a, const config_t *b)
{
    return strcmp(a->cluster.self, b->cluster.self) == 0 &&
           daemon_same_addrs(a->cluster.nodes, a->cluster.nnodes, b->cluster.nodes,
                             b->cluster.nnodes);
}

/* Listeners stay as bound: the new config keeps the old addresses so
 * STATS and the next comparison see what is really open. */
static void daemon_swap_addrs(char ***a, size_t *na, char ***b, size_t *nb)
{
    char **keep = *a;
    size_t nkeep = *na;

    *a = *b;
    *na = *nb;
    *b = keep;
    *nb = nkeep;
}

/* Only this machine can reach it (addr_loopback). An address that does not
 * parse counts as exposed: the warning errs on the side of saying it. */
static bool daemon_loopback(const char *s, unsigned allow, bool *tls)
{
    addr_t a;

    if (addr_parse(s, allow, &a) != NULL)
        return *tls = false, false;
    *tls = a.tls;
    return addr_loopback(&a);
}

static void daemon_list_add(char *list, size_t cap, const char *item)
{
    size_t n = strlen(list);

    if (n + 2 < cap)
        snprintf(list + n, cap - n, "%s%s", n ? ", " : "", item);
}

/* Listening beyond loopback is allowed, but without users anyone who can
 * connect may publish and consume, and without TLS passwords and payloads
 * cross the network in clear: said once at start and at each reload. */
static void daemon_list_exposed(char *const *addrs, size_t n, char *exposed, char *plain,
                                size_t cap)
{
    bool tls;

    for (size_t i = 0; i < n; i++) {
        if (daemon_loopback(addrs[i], ADDR_LISTEN, &tls))
            continue;
        daemon_list_add(exposed, cap, addrs[i]);
        if (!tls)
            daemon_list_add(plain, cap, addrs[i]);
    }
}

static void daemon_warn_exposed(const config_t *cfg)
{
    char exposed[256] = "", plain[256] = "";
    bool tls;

    daemon_list_exposed(cfg->listen, cfg->nlisten, exposed, plain, sizeof exposed);
    daemon_list_exposed(cfg->beanstalk.listen, cfg->beanstalk.nlisten, exposed, plain,
                        sizeof exposed);
    if (exposed[0] != '\0' && cfg->nusers == 0)
        log_warn("listening beyond loopback (%s) without users%s: anyone who can connect may "
                 "publish and consume; see docs/security.md",
                 exposed, plain[0] ? " or TLS" : "");
    else if (plain[0] != '\0')
        log_warn("listening beyond loopback (%s) without TLS: passwords and messages cross the "
                 "network in clear text; see docs/security.md",
                 plain);
    if (cfg->admin.listen[0] != '\0' && !daemon_loopback(cfg->admin.listen, ADDR_ADMIN, &tls) &&
        cfg->admin.token[0] == '\0')
        log_warn("admin endpoint beyond loopback (%s) without admin.token: anyone who can "
                 "connect may read its metrics",
                 cfg->admin.listen);
}

static void daemon_status(daemon_t *d)
{
    broker_stats_t st;

    broker_stats(d->broker, clock_ms(), &st);
    notify_sendf("STATUS=%llu connections, %llu topics, %llu messages queued, %llu published",
                 (unsigned long long)d->server->nconns, (unsigned long long)st.topics,
                 (unsigned long long)st.messages, (unsigned long long)st.totals.published);
}

/* The mirror follows redis.enabled. Enabled by a reload it restores
 * nothing: Redis is made to match the running broker. */
static void daemon_reload_mirror(daemon_t *d, const config_t *cfg)
{
    if (!cfg->redis.enabled) {
        if (d->mirror != NULL)
            log_info("redis mirror: disabled");
        mirror_free(d->mirror);
        d->mirror = NULL;
    } else if (d->mirror != NULL) {
        mirror_configure(d->mirror, cfg);
    } else if ((d->mirror = mirror_new(d->server, cfg, false)) == NULL) {
        log_error("reload: cannot start the redis mirror: out of memory");
    }
}

static void daemon_reload(daemon_t *d)
{
    char err[CONFIG_ERR_MAX];
    config_t *cfg;

    notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)clock_us());
    if (d->path == NULL) {
        log_info("reload: no config file; nothing to do");
        notify_send("READY=1");
        return;
    }
    cfg = daemon_load(d->opts, d->path, err, sizeof err);
    if (cfg == NULL) {
        log_error("reload rejected, keeping the running config: %s", err);
        notify_sendf("READY=1\nSTATUS=reload rejected: %s", err);
        return;
    }
    if (!daemon_same_listen(cfg, d->cfg))
        log_warn("reload: listen addresses changed; they apply at the next restart");
    daemon_swap_addrs(&cfg->listen, &cfg->nlisten, &d->cfg->listen, &d->cfg->nlisten);
    daemon_swap_addrs(&cfg->beanstalk.listen, &cfg->beanstalk.nlisten, &d->cfg->beanstalk.listen,
                      &d->cfg->beanstalk.nlisten);
    if (!daemon_same_cluster(cfg, d->cfg)) {
        struct config_cluster keep = cfg->cluster;

        log_warn("reload: the cluster section changed; it applies at the next restart "
                 "(the running node list stays)");
        cfg->cluster = d->cfg->cluster;
        d->cfg->cluster = keep;
    }

    log_set_level(cfg->log_level);
    server_configure(d->server, cfg);
    daemon_reload_mirror(d, cfg);
    admin_configure(d->admin, cfg);
    config_free(d->cfg);
    d->cfg = cfg;
    daemon_warn_exposed(d->cfg);
    log_info("reloaded %s", d->path);
    notify_send("READY=1");
    daemon_status(d);
}

static void daemon_on_signal(evutil_socket_t sig, short what, void *arg)
{
    daemon_t *d = arg;

    (void)what;
    if (sig == SIGHUP) {
        daemon_reload(d);
        return;
    }
    if (d->server->draining)
        return;
    log_info("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    notify_send("STOPPING=1");
    server_drain(d->server, DAEMON_DRAIN_MS);
}

static void daemon_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    notify_send("WATCHDOG=1");
}

static void daemon_on_status(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    daemon_status(arg);
}

static int daemon_events(daemon_t *d)
{
    struct timeval status_tv = {.tv_sec = DAEMON_STATUS_MS / 1000};

    d->sig_term = evsignal_new(d->base, SIGTERM, daemon_on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, daemon_on_signal, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, daemon_on_signal, d);
    d->status_ev = event_new(d->base, -1, EV_PERSIST, daemon_on_status, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup || !d->status_ev)
        return -1;
    evsignal_add(d->sig_term, NULL);
    evsignal_add(d->sig_int, NULL);
    evsignal_add(d->sig_hup, NULL);
    event_add(d->status_ev, &status_tv);
    d->watchdog_usec = notify_watchdog_usec();
    if (d->watchdog_usec > 0) {
        /* Half the period, as systemd advises. */
        uint64_t half = d->watchdog_usec / 2;
        struct timeval tv = {.tv_sec = (time_t)(half / 1000000),
                             .tv_usec = (suseconds_t)(half % 1000000)};
        d->watchdog_ev = event_new(d->base, -1, EV_PERSIST, daemon_on_watchdog, d);
        if (d->watchdog_ev == NULL)
            return -1;
        event_add(d->watchdog_ev, &tv);
    }
    return 0;
}

static void daemon_free(daemon_t *d)
{
    struct event *evs[] = {d->sig_term, d->sig_int, d->sig_hup, d->watchdog_ev, d->status_ev};

    /* The mirror first: its last writes use the server, and PUBs it still
     * holds get their answer while their connections exist. */
    mirror_stop(d->mirror);
    mirror_free(d->mirror);
    admin_free(d->admin);
    server_free(d->server);
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    broker_free(d->broker);
    msg_cache_release();
    if (d->base)
        event_base_free(d->base);
    config_free(d->cfg);
}

/* Which node this is, once at start. `self` is what -MOVED sends clients
 * to: a port that no native listener binds is worth a warning (behind a
 * port forward it is right, hence not an error). */
static void daemon_log_cluster(const config_t *cfg)
{
    addr_t self, l;
    bool bound = false;

    if (cfg->cluster.nnodes == 0)
        return;
    log_info("cluster: this is %s, node %zu of %zu", cfg->cluster.self,
             cfg->cluster.self_index + 1, cfg->cluster.nnodes);
    if (addr_parse(cfg->cluster.self, 0, &self) != NULL)
        return;
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (addr_parse(cfg->listen[i], ADDR_LISTEN, &l) == NULL && l.kind == ADDR_KIND_TCP &&
            (l.port == self.port || l.port == 0))
            bound = true;
    if (!bound)
        log_warn("cluster.self %s: no native listener binds port %u; clients that -MOVED "
                 "sends here must reach it through a forward",
                 cfg->cluster.self, (unsigned)self.port);
}

static int daemon_start(daemon_t *d)
{
    const char *port_file = getenv("SLUICED_PORT_FILE");
    char err[256];

    d->base = event_base_new();
    if (d->base == NULL || event_base_priority_init(d->base, SERVER_NPRIORITIES) != 0) {
        log_error("cannot create the event loop");
        return 1;
    }
    d->broker = broker_new(d->cfg, clock_ms());
    d->server = d->broker ? server_new(d->base, d->broker, d->cfg) : NULL;
    if (d->server == NULL) {
        log_error("out of memory");
        return 1;
    }
    if (d->cfg->redis.enabled && mirror_check_start(d->cfg, err, sizeof err) < 0) {
        log_error("redis mirror: %s; not starting", err);
        return 1;
    }
    /* Before listening: a restore is done before any client sees the broker. */
    if (d->cfg->redis.enabled && (d->mirror = mirror_new(d->server, d->cfg, true)) == NULL) {
        log_error("cannot start the redis mirror: out of memory");
        return 1;
    }
    /* Signals first: whoever learns the port may signal us at once. */
    if (daemon_events(d) != 0) {
        log_error("cannot set up signal handling");
        return 1;
    }
    if (server_listen(d->server, d->cfg->listen, d->cfg->nlisten, &conn_proto) != 0)
        return 1;
    if (d->cfg->beanstalk.nlisten > 0 &&
        server_listen(d->server, d->cfg->beanstalk.listen, d->cfg->beanstalk.nlisten,
                      &bconn_proto) != 0)
        return 1;
    if (d->cfg->admin.listen[0] != '\0') {
        if ((d->admin = admin_new(d->server, d->cfg->admin.listen)) == NULL)
            return 1;
        d->server->admin_addr = admin_address(d->admin);
    }
    daemon_warn_exposed(d->cfg);
    daemon_log_cluster(d->cfg);
    if (port_file != NULL && server_write_port_file(d->server, port_file) != 0) {
        log_error("cannot write %s: %s", port_file, strerror(errno));
        return 1;
    }
    return 0;
}

/* glibc's defaults hand the top of the heap back to the kernel as soon as
 * 128 KiB of it is free, and a consumer's window of 64 acked 16 KiB
 * messages is 1 MiB: every window was faulted in again, page by page (4.5
 * faults a message, most of the cost of big messages; docs/benchmarks.md).
 * Its own remedy, raising the thresholds when a big mmapped block is
 * freed, happened only by chance (a big output buffer). Fixed thresholds
 * instead: messages under 1 MiB come from the heap, and at most 16 MiB of
 * free heap is kept, a constant, so memory stays bounded by the config. */
static void daemon_tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
}

int daemon_run(const daemon_opts_t *opts)
{
    daemon_t d = {.opts = opts};
    char err[CONFIG_ERR_MAX];
    int rc;

    d.path = daemon_config_path(opts);
    d.cfg = daemon_load(opts, d.path, err, sizeof err);
    if (d.cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return CONFIG_EX_CONFIG;
    }
    if (opts->test_only) {
        fprintf(stderr, "%s: configuration is valid\n", d.path ? d.path : "(built-in defaults)");
        config_free(d.cfg);
        return 0;
    }
    log_set_level(d.cfg->log_level);
    log_capture_libevent();
    signal(SIGPIPE, SIG_IGN);
    daemon_tune_malloc();
    log_info("sluiced %s starting (config: %s)", SLUICE_VERSION,
             d.path ? d.path : "built-in defaults");
    rc = daemon_start(&d);
    if (rc == 0) {
        notify_send("READY=1");
        daemon_status(&d);
        event_base_dispatch(d.base);
        log_info("stopped");
    }
    /* A second TERM during teardown must not turn a clean exit into 143. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, NULL);
    daemon_free(&d);
    return rc;
}
