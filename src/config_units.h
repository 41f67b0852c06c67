/* config_units.h: numbers with units in sluiced.yaml (sizes, durations,
 * counts), private to the config loader (config*.c; config.h is the API).
 */
#ifndef SLUICE_CONFIG_UNITS_H
#define SLUICE_CONFIG_UNITS_H

#include <stddef.h>
#include <stdint.h>

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define MS_PER_S ((uint64_t)1000)
#define MS_PER_M (MS_PER_S * 60)
#define MS_PER_H (MS_PER_M * 60)

typedef struct config_unit {
    const char *suffix;
    uint64_t mult;
} config_unit_t;

/* Each ends with {NULL, 0}; "" is the bare number. */
extern const config_unit_t config_size_units[];     /* bytes: B KiB MiB GiB */
extern const config_unit_t config_duration_units[]; /* ms: ms s m h */
extern const config_unit_t config_count_units[];    /* a plain number */

enum { PARSE_OK = 0, PARSE_SYNTAX = -1, PARSE_OVERFLOW = -2 };

/* Digits, then one of `units` (exact, case-sensitive). Nothing else: no sign,
 * no blanks, no fraction. PARSE_OK with *out set, PARSE_SYNTAX or
 * PARSE_OVERFLOW. */
int config_parse_units(const char *s, const config_unit_t *units, uint64_t *out);

/* v in the largest unit that divides it, for range messages ("64B..1MiB"). */
void config_fmt_units(char *out, size_t outlen, uint64_t v, const config_unit_t *units);

#endif
