/* config_client.c: the `sluice` client's own config file and node lists:
 * a YAML file whose one key is `nodes: [host:port, ...]` (sluice --config,
 * $SLUICE_CONFIG), and the same list written with commas (--nodes,
 * $SLUICE_NODES). Both check every entry the same way, so a node is spelled
 * one way wherever it is written down; placement (place.c) hashes those
 * bytes, and a daemon's `-MOVED` names a node as its own list spells it.
 *
 * Errors in the file are FILE:LINE:COL as in sluiced.yaml (config_yaml.c
 * does the placing).
 */
#include "config.h"
#include "addr.h"
#include "config_yaml.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

const char *config_node_check(const char *s, size_t len)
{
    addr_t a;
    char copy[CONFIG_NODE_MAX + 1];

    if (len == 0)
        return "empty";
    if (len > CONFIG_NODE_MAX)
        return "longer than 127 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == ',' || c == '"' || c == '\\')
            return "blanks, commas, quotes, backslashes and control characters are not allowed";
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    /* as the daemons' cluster.nodes: TCP, host:port or [v6]:port; the
     * transport (--tls) is the client's own setting, not part of the name */
    return addr_parse(copy, 0, &a);
}

void config_client_free(client_conf_t *c)
{
    if (c == NULL)
        return;
    config_free_strv(c->nodes, c->nnodes);
    c->nodes = NULL;
    c->nnodes = 0;
}

/* The index of the first entry of v[0..n) that repeats an earlier one, or n. */
static size_t config_first_dup(char *const *v, size_t n)
{
    for (size_t j = 1; j < n; j++)
        for (size_t i = 0; i < j; i++)
            if (strcmp(v[i], v[j]) == 0)
                return j;
    return n;
}

/* ---- the file ---- */

static const char *config_check_node(config_parser_t *p, yaml_node_t *it)
{
    const char *s = (const char *)it->data.scalar.value;
    const char *why = config_node_check(s, it->data.scalar.length);

    return config_bad_address(p, it, why, "node",
                              "host:port or [v6]:port, as the daemons' cluster.nodes spell it");
}

static int config_set_nodes(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                            void *base)
{
    client_conf_t *c = base;

    if (config_set_addrs(p, f, val, base, config_check_node) < 0)
        return -1;
    size_t dup = config_first_dup(c->nodes, c->nnodes);
    if (dup == c->nnodes)
        return 0;
    /* a list of two or more: strlist took a scalar as one item */
    yaml_node_t *it = config_node(p, val->data.sequence.items.start[dup]);
    char q[QUOTE_CAP];
    return config_fail(p, it->start_mark, "node '%s' is listed twice",
                       config_quote(q, sizeof(q), c->nodes[dup], strlen(c->nodes[dup])));
}

static const config_field_t config_client_fields[] = {
    LIST(client_conf_t, nodes, nnodes, "nodes", config_set_nodes),
};
static const config_table_t config_client_table =
    TABLE("a client config file", config_client_fields);

/* The client's document into the client_conf_t at arg (p->cfg is unused). */
static int config_client_apply(config_parser_t *p, yaml_node_t *root, void *arg)
{
    client_conf_t *c = arg;
    yaml_mark_t start = {0, 0, 0};

    if (root != NULL && !config_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE)
            return config_fail(p, root->start_mark, "the top level must be a mapping, not %s",
                               config_kind(root));
        if (config_walk(p, root, "the top level", &config_client_table, c, NULL) < 0)
            return -1;
        start = root->start_mark;
    }
    if (c->nnodes == 0)
        return config_fail(p, start, "no nodes: (a client config file is `nodes: [host:port, "
                                     "...]`)");
    return 0;
}

int config_client_load_string(const char *name, const char *text, size_t len, client_conf_t *out,
                              char *err, size_t errlen)
{
    config_parser_t p;
    client_conf_t c = {0};

    config_parser_init(&p, name, text, len, err, errlen);
    if (config_parse_doc(&p, config_client_apply, &c) < 0) {
        config_client_free(&c);
        return -1;
    }
    *out = c;
    return 0;
}

int config_client_load_file(const char *path, client_conf_t *out, char *err, size_t errlen)
{
    char *buf;
    size_t len;

    if (config_read_file(path, &buf, &len, err, errlen) < 0)
        return -1;
    int rc = config_client_load_string(path, buf, len, out, err, errlen);
    free(buf);
    return rc;
}

/* ---- a comma-separated list ---- */

static bool config_blank(char c)
{
    return c == ' ' || c == '\t';
}

int config_nodes_parse(const char *list, const char *what, client_conf_t *out, char *err,
                       size_t errlen)
{
    client_conf_t c = {0};
    size_t cap = 1;

    for (const char *q = list; *q; q++)
        cap += *q == ',';
    c.nodes = calloc(cap, sizeof *c.nodes);
    if (c.nodes == NULL) {
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *s = p;
        while (s < e && config_blank(*s))
            s++;
        while (e > s && config_blank(e[-1]))
            e--;
        size_t n = (size_t)(e - s);
        char q[QUOTE_CAP];
        const char *why = n == 0 ? (cap == 1 && !comma ? "no node given"
                                                       : "an empty entry (two commas in a row?)")
                                 : config_node_check(s, n);
        if (why != NULL) {
            snprintf(err, errlen, "%s: bad node address '%s': %s", what,
                     config_quote(q, sizeof(q), s, n), why);
            goto fail;
        }
        if ((c.nodes[c.nnodes] = config_strndup(s, n)) == NULL) {
            snprintf(err, errlen, "%s: out of memory", what);
            goto fail;
        }
        c.nnodes++;
        if (!comma)
            break;
        p = comma + 1;
    }
    size_t dup = config_first_dup(c.nodes, c.nnodes);
    if (dup < c.nnodes) {
        char q[QUOTE_CAP];
        snprintf(err, errlen, "%s: node '%s' is listed twice", what,
                 config_quote(q, sizeof(q), c.nodes[dup], strlen(c.nodes[dup])));
        goto fail;
    }
    *out = c;
    return 0;
fail:
    config_client_free(&c);
    return -1;
}
