/* fuzz_config.c: libFuzzer target for the YAML config loader: any bytes go
 * to config_load_string, which must either return a config or one error
 * line, never crash, leak or read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CONFIG_ERR_MAX];
    config_t *cfg;

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
