/* config_units.c: sizes ("64MiB"), durations ("30s") and counts in
 * sluiced.yaml: parsed exactly (no sign, no fraction, overflow refused) and
 * formatted back for range messages. config_parse_size and
 * config_parse_duration are config.h's.
 */
#include "config.h"
#include "config_units.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const config_unit_t config_size_units[] = {
    {"", 1}, {"B", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", GIB}, {NULL, 0},
};

const config_unit_t config_duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", MS_PER_S}, {"m", MS_PER_M}, {"h", MS_PER_H}, {NULL, 0},
};

const config_unit_t config_count_units[] = {
    {"", 1}, {NULL, 0},
};

int config_parse_units(const char *s, const config_unit_t *units, uint64_t *out)
{
    uint64_t v = 0;
    bool overflow = false;
    const char *p = s;

    if (s == NULL || *p < '0' || *p > '9')
        return PARSE_SYNTAX;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');

        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    for (const config_unit_t *u = units; u->suffix != NULL; u++) {
        if (strcmp(p, u->suffix) != 0)
            continue;
        if (overflow || (u->mult > 1 && v > UINT64_MAX / u->mult))
            return PARSE_OVERFLOW;
        *out = v * u->mult;
        return PARSE_OK;
    }
    return PARSE_SYNTAX;
}

int config_parse_size(const char *s, uint64_t *out)
{
    return config_parse_units(s, config_size_units, out) == PARSE_OK ? 0 : -1;
}

int config_parse_duration(const char *s, uint64_t *out_ms)
{
    return config_parse_units(s, config_duration_units, out_ms) == PARSE_OK ? 0 : -1;
}

void config_fmt_units(char *out, size_t outlen, uint64_t v, const config_unit_t *units)
{
    const config_unit_t *best = NULL;

    for (const config_unit_t *u = units; u->suffix != NULL && v != 0; u++) {
        if (u->suffix[0] == '\0')
            continue;
        if (v % u->mult == 0 && (best == NULL || u->mult >= best->mult))
            best = u;
    }
    if (best == NULL)
        snprintf(out, outlen, "%llu", (unsigned long long)v);
    else
        snprintf(out, outlen, "%llu%s", (unsigned long long)(v / best->mult), best->suffix);
}
