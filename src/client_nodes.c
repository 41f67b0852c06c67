/* client_nodes.c: which brokers a client talks to. The node list comes
 * from the first of --nodes, -s (one server), --config FILE,
 * $SLUICE_NODES, $SLUICE_CONFIG, $SLUICE_ADDR and the default address: the
 * command line before the environment, a list before a file. Each topic
 * then goes to its owner among the nodes by rendezvous hashing (place.h),
 * so `sluice` and `sluice bench` agree with every other client and with
 * the daemons' own `cluster.nodes`.
 */
#include "client.h"
#include "place.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A non-empty environment variable, or NULL. */
static const char *client_env(const client_nodes_opts_t *o, const char *name)
{
    const char *v = o->no_env ? NULL : getenv(name);
    return v && *v ? v : NULL;
}

/* One server, as `sluice -s` has always taken it (tls:// and all): not
 * checked here, connecting says what is wrong with it. */
static int client_nodes_one(client_nodes_t *out, const char *addr, const char *from)
{
    out->list.nodes = calloc(1, sizeof *out->list.nodes);
    if (out->list.nodes == NULL || (out->list.nodes[0] = strdup(addr)) == NULL) {
        free(out->list.nodes);
        out->list.nodes = NULL;
        return -1;
    }
    out->list.nnodes = 1;
    snprintf(out->from, sizeof out->from, "%s", from);
    return 0;
}

static int client_nodes_file(client_nodes_t *out, const char *path, const char *from, char *err,
                             size_t errlen)
{
    if (config_client_load_file(path, &out->list, err, errlen) < 0)
        return -1;
    snprintf(out->from, sizeof out->from, "%s %.*s", from, CONFIG_NODE_MAX, path);
    return 0;
}

static int client_nodes_pick(client_nodes_t *out, const client_nodes_opts_t *o, char *err,
                             size_t errlen)
{
    const char *v;

    if (o->nodes && o->server) {
        snprintf(err, errlen, "-s and --nodes exclude each other (one server, or a node list)");
        return CLIENT_NODES_USAGE;
    }
    if (o->nodes) {
        if (config_nodes_parse(o->nodes, "--nodes", &out->list, err, errlen) < 0)
            return CLIENT_NODES_USAGE;
        snprintf(out->from, sizeof out->from, "--nodes");
        return 0;
    }
    if (o->server)
        return client_nodes_one(out, o->server, "-s") < 0 ? CLIENT_NODES_BAD : 0;
    if (o->config)
        return client_nodes_file(out, o->config, "--config", err, errlen) < 0 ? CLIENT_NODES_BAD
                                                                                : 0;
    if ((v = client_env(o, "SLUICE_NODES")) != NULL) {
        if (config_nodes_parse(v, "$SLUICE_NODES", &out->list, err, errlen) < 0)
            return CLIENT_NODES_BAD;
        snprintf(out->from, sizeof out->from, "$SLUICE_NODES");
        return 0;
    }
    if ((v = client_env(o, "SLUICE_CONFIG")) != NULL)
        return client_nodes_file(out, v, "$SLUICE_CONFIG", err, errlen) < 0 ? CLIENT_NODES_BAD
                                                                             : 0;
    if (o->fallback)
        return client_nodes_one(out, o->fallback, "the default") < 0 ? CLIENT_NODES_BAD : 0;
    if ((v = client_env(o, "SLUICE_ADDR")) != NULL)
        return client_nodes_one(out, v, "$SLUICE_ADDR") < 0 ? CLIENT_NODES_BAD : 0;
    return client_nodes_one(out, CLIENT_DEFAULT_ADDR, "the default") < 0 ? CLIENT_NODES_BAD : 0;
}

int client_nodes_resolve(client_nodes_t *out, const client_nodes_opts_t *o, char *err,
                         size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errlen)
        err[0] = '\0';
    int rc = client_nodes_pick(out, o, err, errlen);
    if (rc == 0 && out->list.nnodes == 0) {
        snprintf(err, errlen, "out of memory");
        rc = CLIENT_NODES_BAD;
    }
    if (rc != 0) {
        if (!out->list.nodes && !err[0])
            snprintf(err, errlen, "out of memory");
        config_client_free(&out->list);
        return rc;
    }
    out->v = out->list.nodes;
    out->n = out->list.nnodes;
    return 0;
}

void client_nodes_free(client_nodes_t *nl)
{
    config_client_free(&nl->list);
    nl->v = NULL;
    nl->n = 0;
}

const char *client_nodes_owner(const client_nodes_t *nl, const char *topic, size_t len)
{
    return nl->v[place_owner((const char *const *)nl->v, nl->n, topic, len)];
}
