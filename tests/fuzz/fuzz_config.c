/* fuzz_config.c: libFuzzer target for the YAML config loader: any bytes go
 * to config_load_string, which must either return a config or one error
 * line, never crash, leak or read out of bounds; and the same bytes to the
 * client's config file (config_client_load_string) and, as a string, to
 * the node list parser of --nodes (config_nodes_parse), under the same
 * rules.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A client's file or node list: a list of at least one node, or one
 * line of error. */
static void fuzz_client(const uint8_t *data, size_t size)
{
    char err[CONFIG_ERR_MAX];
    client_conf_t cc = {0};
    char *s = malloc(size + 1);
    int rc;

    err[0] = '\0';
    rc = config_client_load_string("c.yaml", (const char *)data, size, &cc, err, sizeof(err));
    if ((rc == 0) != (cc.nnodes > 0) || (rc < 0 && (err[0] == '\0' || strchr(err, '\n'))))
        abort();
    config_client_free(&cc);
    if (s == NULL)
        return;
    memcpy(s, data, size);
    s[size] = '\0';
    err[0] = '\0';
    rc = config_nodes_parse(s, "--nodes", &cc, err, sizeof(err));
    if ((rc == 0) != (cc.nnodes > 0) || (rc < 0 && err[0] == '\0'))
        abort();
    for (size_t i = 0; i < cc.nnodes; i++)
        if (config_node_check(cc.nodes[i], strlen(cc.nodes[i])) != NULL)
            abort();
    config_client_free(&cc);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CONFIG_ERR_MAX];
    config_t *cfg;

    fuzz_client(data, size);

    err[0] = '\0';
    cfg = config_load_string("fuzz.yaml", (const char *)data, size, err, sizeof(err));
    if (cfg == NULL) {
        /* a failure always explains itself in one line */
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            abort();
        return 0;
    }
    /* every string a module may read is there */
    for (size_t i = 0; i < cfg->ntopics; i++)
        if (config_topic(cfg, cfg->topics[i].name, strlen(cfg->topics[i].name)) !=
            &cfg->topics[i].conf || cfg->topics[i].conf.dead_letter == NULL)
            abort();
    if (cfg->nlisten == 0 || cfg->defaults.dead_letter == NULL)
        abort();
    config_free(cfg);
    return 0;
}
