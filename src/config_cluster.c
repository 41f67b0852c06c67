/* config_cluster.c: the config's `cluster:` section: this broker's name
 * and the node list its topics are placed over (docs/scaling.md). The
 * lookups over it (config_owner, config_elsewhere) are inline in config.h.
 *
 * A node is named by its address exactly as the list spells it: place.h
 * hashes those bytes, so every broker and client that holds the same list
 * places every topic on the same node. That is why `self` must be spelled
 * as in `nodes` (no resolving, no normalising "localhost" to 127.0.0.1) and
 * why a node may appear only once.
 */
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "config_yaml.h"

/* Bits of the section's `seen` mask: the table's order. */
#define CLUSTER_SELF_BIT (1u << 0)
#define CLUSTER_NODES_BIT (1u << 1)

/* A node is reached over TCP by clients and by nothing else: no unix
 * socket (another host cannot reach it), no tls:// (the name is what is
 * hashed; the transport is the client's own setting), no port 0. */
static const char *config_check_node(config_parser_t *p, yaml_node_t *it)
{
    addr_t a;

    return config_bad_address(p, it, addr_parse((const char *)it->data.scalar.value, 0, &a),
                              "node", "host:port or [v6]:port");
}

static int config_set_nodes(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                            void *base)
{
    return config_set_strlist(p, f, val, base, config_check_node, "addresses");
}

static const config_field_t config_cluster_fields[] = {
    FLD(config_t, cluster.self, "self", config_set_nonempty),
    LIST(config_t, cluster.nodes, cluster.nnodes, "nodes", config_set_nodes),
};
static const config_table_t config_cluster_table = TABLE("cluster", config_cluster_fields);

/* The list's item i (a single scalar is a list of one). */
static yaml_node_t *config_item(config_parser_t *p, yaml_node_t *list, size_t i)
{
    if (list->type == YAML_SCALAR_NODE)
        return list;
    return config_node(p, list->data.sequence.items.start[i]);
}

/* nodes: present and not empty, no address twice; self: one of them. */
static int config_check_cluster(config_parser_t *p, yaml_node_t *sec, uint32_t seen)
{
    config_t *cfg = p->cfg;
    yaml_node_t *nodes = config_find(p, sec, "nodes");
    char q[QUOTE_CAP];

    if (!(seen & CLUSTER_NODES_BIT))
        return config_fail(p, sec->start_mark,
                           "cluster needs nodes: (the address of every broker, this one "
                           "included)");
    if (cfg->cluster.nnodes == 0)
        return config_fail(p, nodes->start_mark, "cluster.nodes needs at least one address");
    for (size_t i = 1; i < cfg->cluster.nnodes; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->cluster.nodes[i], cfg->cluster.nodes[j]) == 0)
                return config_fail(p, config_item(p, nodes, i)->start_mark,
                                   "node '%s' is listed twice in cluster.nodes",
                                   config_quote(q, sizeof(q), cfg->cluster.nodes[i],
                                                strlen(cfg->cluster.nodes[i])));
    if (!(seen & CLUSTER_SELF_BIT))
        return config_fail(p, sec->start_mark,
                           "cluster needs self: (this broker's address, as cluster.nodes "
                           "spells it)");
    for (size_t i = 0; i < cfg->cluster.nnodes; i++) {
        if (strcmp(cfg->cluster.nodes[i], cfg->cluster.self) == 0) {
            cfg->cluster.self_index = i;
            return 0;
        }
    }
    return config_fail(p, config_find(p, sec, "self")->start_mark,
                       "cluster.self '%s' is not one of cluster.nodes (spell it as the list "
                       "does)",
                       config_quote(q, sizeof(q), cfg->cluster.self, strlen(cfg->cluster.self)));
}

int config_set_cluster(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                       void *base)
{
    uint32_t seen = 0;

    if (config_walk(p, val, f->key, &config_cluster_table, base, &seen) < 0)
        return -1;
    return config_check_cluster(p, val, seen);
}
