/* config.c: loads sluiced.yaml with libyaml into a validated config_t:
 * the key tables, the check of each value, the merge of topics over
 * `defaults`, the cross-checks, and the config.h API.
 *
 * The file is read as one YAML document (libyaml's document API keeps node
 * marks, so every error can name FILE:LINE:COL). Each mapping is walked
 * (config_yaml.c) against a table of known keys; unknown keys, duplicates,
 * wrong node kinds, bad units (config_units.c), bad addresses (addr.c) and
 * out-of-range values are errors, never clamped. Per-topic entries are
 * merged over `defaults` only once the whole file has been read, because
 * `defaults` may come after `topics`.
 *
 * Only the C library, libyaml and libevent (addr.c's sockaddr helper) are
 * used, so the fuzzer can build these files on their own.
 */
#include "config.h"
#include "addr.h"
#include "config_units.h"
#include "config_yaml.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* Durations stop at a year so that every module can add one to a
 * microsecond clock without thinking about overflow. */
#define DURATION_MAX (8760 * MS_PER_H)
#define TOPIC_NAME_MAX 255
#define USER_NAME_MAX 255

/* ------------------------------------------------------------------ */
/* Names                                                               */

static bool config_topic_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == ':' || c == '-';
}

static bool config_valid_topic(const char *s, size_t len)
{
    if (len == 0 || len > TOPIC_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!config_topic_char((unsigned char)s[i]))
            return false;
    return true;
}

/* User names, passwords and globs travel as single protocol tokens: no
 * blanks, no control bytes. */
static bool config_valid_token(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Built-in defaults and freeing                                       */

void config_free(config_t *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    config_free_strv(cfg->listen, cfg->nlisten);
    free(cfg->tls.cert);
    free(cfg->tls.key);
    free(cfg->tls.ca);
    free(cfg->admin.listen);
    free(cfg->admin.token);
    free(cfg->defaults.dead_letter);
    for (size_t i = 0; i < cfg->ntopics; i++) {
        free(cfg->topics[i].name);
        free(cfg->topics[i].conf.dead_letter);
    }
    free(cfg->topics);
    free(cfg->redis.address);
    free(cfg->redis.password);
    free(cfg->redis.prefix);
    config_free_strv(cfg->redis.sentinels, cfg->redis.nsentinels);
    free(cfg->redis.master);
    free(cfg->redis.sentinel_password);
    for (size_t i = 0; i < cfg->nusers; i++) {
        free(cfg->users[i].name);
        free(cfg->users[i].password);
        config_free_strv(cfg->users[i].publish, cfg->users[i].npublish);
        config_free_strv(cfg->users[i].subscribe, cfg->users[i].nsubscribe);
    }
    free(cfg->users);
    config_free_strv(cfg->beanstalk.listen, cfg->beanstalk.nlisten);
    free(cfg->beanstalk.user);
    free(cfg->cluster.self);
    config_free_strv(cfg->cluster.nodes, cfg->cluster.nnodes);
    free(cfg);
}

config_t *config_default(void)
{
    config_t *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->listen = calloc(1, sizeof(char *));
    if (cfg->listen != NULL && (cfg->listen[0] = config_strdup("127.0.0.1:7700")) != NULL)
        cfg->nlisten = 1;
    cfg->tls.cert = config_strdup("");
    cfg->tls.key = config_strdup("");
    cfg->tls.ca = config_strdup("");
    cfg->tls.verify_clients = false;
    cfg->admin.listen = config_strdup("127.0.0.1:7701");
    cfg->admin.token = config_strdup("");
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->limits.max_connections = 10000;
    cfg->limits.max_line = 4 * KIB;
    cfg->limits.max_message = 1 * MIB;
    cfg->limits.max_memory = 1 * GIB;
    cfg->limits.output_buffer = 4 * MIB;
    cfg->limits.max_topics = 10000;
    cfg->auto_create_topics = true;
    cfg->defaults.max_messages = 100000;
    cfg->defaults.max_bytes = 64 * MIB;
    cfg->defaults.overflow = OVERFLOW_BLOCK;
    cfg->defaults.block_timeout_ms = 0;
    cfg->defaults.prefetch = 64;
    cfg->defaults.ack_timeout_ms = 30 * MS_PER_S;
    cfg->defaults.max_deliveries = 5;
    cfg->defaults.dead_letter = config_strdup("");
    cfg->redis.enabled = false;
    cfg->redis.address = config_strdup("127.0.0.1:6379");
    cfg->redis.password = config_strdup("");
    cfg->redis.db = 0;
    cfg->redis.prefix = config_strdup("sluice");
    cfg->redis.master = config_strdup("");
    cfg->redis.sentinel_password = config_strdup("");
    cfg->redis.mirror = MIRROR_MESSAGES;
    cfg->redis.confirm = false;
    cfg->redis.confirm_timeout_ms = 5 * MS_PER_S;
    cfg->redis.max_unconfirmed = 1024;
    cfg->redis.durability = DURABILITY_MEMORY;
    cfg->redis.restore = true;
    cfg->redis.flush_interval_ms = 100;
    cfg->beanstalk.listen = calloc(1, sizeof(char *));
    cfg->beanstalk.user = config_strdup("");
    cfg->cluster.self = config_strdup(""); /* no cluster: nodes stays NULL */
    if (cfg->nlisten == 0 || cfg->beanstalk.listen == NULL || cfg->beanstalk.user == NULL ||
        cfg->cluster.self == NULL || cfg->tls.cert == NULL || cfg->tls.key == NULL ||
        cfg->tls.ca == NULL || cfg->admin.listen == NULL || cfg->admin.token == NULL ||
        cfg->defaults.dead_letter == NULL || cfg->redis.address == NULL ||
        cfg->redis.password == NULL || cfg->redis.prefix == NULL || cfg->redis.master == NULL ||
        cfg->redis.sentinel_password == NULL) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* ------------------------------------------------------------------ */
/* Field tables                                                        */

static void config_store_uint(const config_field_t *f, void *base, uint64_t v)
{
    if (f->width == sizeof(uint32_t))
        *FIELD_AT(base, f, uint32_t) = (uint32_t)v;
    else
        *FIELD_AT(base, f, uint64_t) = v;
}

/* Sizes, durations and counts differ only in their units and words. */
typedef struct config_numkind {
    const char *what;            /* "a size" */
    const char *noun;            /* "size" */
    const char *hint;            /* "use B, KiB, MiB or GiB" */
    const config_unit_t *units;
} config_numkind_t;

static const config_numkind_t config_kind_size = {
    "a size", "size", "use B, KiB, MiB or GiB", config_size_units};
static const config_numkind_t config_kind_duration = {
    "a duration", "duration", "use ms, s, m or h", config_duration_units};
static const config_numkind_t config_kind_count = {
    "a number", "number", "use a plain integer", config_count_units};

static int config_set_number(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base, const config_numkind_t *k)
{
    char q[QUOTE_CAP], lo[32], hi[32];
    const char *s = config_value(p, f, val, k->what);
    uint64_t v = 0;
    int rc;

    if (s == NULL)
        return -1;
    config_quote(q, sizeof(q), s, val->data.scalar.length);
    rc = config_parse_units(s, k->units, &v);
    if (rc == PARSE_SYNTAX)
        return config_fail(p, val->start_mark, "bad %s '%s' for %s (%s)", k->noun, q, f->key,
                           k->hint);
    if (rc == PARSE_OVERFLOW || v > f->max || v < f->min) {
        config_fmt_units(lo, sizeof(lo), f->min, k->units);
        config_fmt_units(hi, sizeof(hi), f->max, k->units);
        if (rc == PARSE_OVERFLOW && f->max == UINT64_MAX)
            return config_fail(p, val->start_mark, "%s '%s' is too large for %s", k->noun, q,
                               f->key);
        if (f->max == UINT64_MAX)
            return config_fail(p, val->start_mark, "%s '%s' is out of range for %s (at least %s)",
                               k->noun, q, f->key, lo);
        return config_fail(p, val->start_mark, "%s '%s' is out of range for %s (%s..%s)",
                           k->noun, q, f->key, lo, hi);
    }
    config_store_uint(f, base, v);
    return 0;
}

static int config_set_size(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                           void *base)
{
    return config_set_number(p, f, val, base, &config_kind_size);
}

static int config_set_duration(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                               void *base)
{
    return config_set_number(p, f, val, base, &config_kind_duration);
}

static int config_set_count(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                            void *base)
{
    return config_set_number(p, f, val, base, &config_kind_count);
}

/* true/false only: YAML 1.1's yes/no/on/off are refused, because `no` as a
 * country code or `on` as a word has bitten enough people. */
static int config_set_bool(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                           void *base)
{
    char q[QUOTE_CAP];
    const char *s = config_value(p, f, val, "true or false");

    if (s == NULL)
        return -1;
    if (strcmp(s, "true") == 0)
        *FIELD_AT(base, f, bool) = true;
    else if (strcmp(s, "false") == 0)
        *FIELD_AT(base, f, bool) = false;
    else
        return config_fail(p, val->start_mark, "bad boolean '%s' for %s (use true or false)",
                           config_quote(q, sizeof(q), s, val->data.scalar.length), f->key);
    return 0;
}

static int config_store_string(config_parser_t *p, const config_field_t *f, void *base,
                               const char *s)
{
    char **slot = FIELD_AT(base, f, char *);
    char *copy = config_strdup(s);

    if (copy == NULL)
        return config_oom(p);
    free(*slot);
    *slot = copy;
    return 0;
}

/* Any string; null stands for "". */
static int config_set_string(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base)
{
    const char *s = config_scalar(p, f, val, "a string");

    if (s == NULL)
        return -1;
    return config_store_string(p, f, base, config_is_null(val) ? "" : s);
}

int config_set_nonempty(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                        void *base)
{
    const char *s = config_value(p, f, val, "a string");

    if (s == NULL)
        return -1;
    if (*s == '\0')
        return config_fail(p, val->start_mark, "%s must not be empty", f->key);
    return config_store_string(p, f, base, s);
}

/* One of a fixed set of names, stored as the matching enum value. */
static int config_set_choice(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base, const char *const *names, const char *noun,
                             const char *hint)
{
    char q[QUOTE_CAP];
    const char *s = config_value(p, f, val, hint);

    if (s == NULL)
        return -1;
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(s, names[i]) == 0) {
            *FIELD_AT(base, f, int) = i;
            return 0;
        }
    }
    return config_fail(p, val->start_mark, "bad %s '%s' for %s (use %s)", noun,
                       config_quote(q, sizeof(q), s, val->data.scalar.length), f->key, hint);
}

static const char *const config_overflow_names[] = {"block", "reject", "drop-oldest", NULL};
static const char *const config_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const config_mirror_names[] = {"stats", "messages", NULL};
static const char *const config_durability_names[] = {"memory", "everysec", "always", NULL};

static int config_set_overflow(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                               void *base)
{
    return config_set_choice(p, f, val, base, config_overflow_names, "overflow policy",
                             "block, reject or drop-oldest");
}

static int config_set_level(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                            void *base)
{
    return config_set_choice(p, f, val, base, config_level_names, "log level",
                             "error, warn, info or debug");
}

static int config_set_mirror(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base)
{
    return config_set_choice(p, f, val, base, config_mirror_names, "mirror mode",
                             "stats or messages");
}

static int config_set_durability(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                                 void *base)
{
    return config_set_choice(p, f, val, base, config_durability_names, "durability",
                             "memory, everysec or always");
}

static int config_set_addr(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                           void *base, unsigned allow, bool empty_ok, const char *forms)
{
    char q[QUOTE_CAP];
    const char *s = config_scalar(p, f, val, "an address");
    const char *why;
    addr_t a;

    if (s == NULL)
        return -1;
    if (config_is_null(val))
        s = "";
    if (*s == '\0' && empty_ok)
        return config_store_string(p, f, base, s);
    why = addr_parse(s, allow, &a);
    if (why != NULL)
        return config_fail(p, val->start_mark, "bad address '%s' for %s: %s (use %s)",
                           config_quote(q, sizeof(q), s, strlen(s)), f->key, why, forms);
    return config_store_string(p, f, base, s);
}

static int config_set_admin_listen(config_parser_t *p, const config_field_t *f,
                                   yaml_node_t *val, void *base)
{
    return config_set_addr(p, f, val, base, ADDR_ADMIN, true,
                           "host:port, [v6]:port, or \"\" for off");
}

static int config_set_redis_addr(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                                 void *base)
{
    return config_set_addr(p, f, val, base, ADDR_REDIS, false,
                           "host:port, [v6]:port or unix:/path");
}

/* A sentinel's address: the forms of redis.address. */
static const char *config_check_sentinel(config_parser_t *p, yaml_node_t *it)
{
    addr_t a;
    const char *why = addr_parse((const char *)it->data.scalar.value, ADDR_REDIS, &a);

    return config_bad_address(p, it, why, "sentinel", "host:port, [v6]:port or unix:/path");
}

static int config_set_sentinels(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                                void *base);

/* The name Sentinel knows the master by travels as one argument of
 * SENTINEL get-master-addr-by-name and one word of +switch-master. */
static int config_set_master(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base)
{
    char q[QUOTE_CAP];
    const char *s = config_value(p, f, val, "a name");

    if (s == NULL)
        return -1;
    if (!config_valid_token(s, val->data.scalar.length, 255))
        return config_fail(p, val->start_mark,
                           "bad master name '%s' for master (1..255 bytes without blanks or "
                           "control characters)",
                           config_quote(q, sizeof(q), s, val->data.scalar.length));
    return config_store_string(p, f, base, s);
}

static int config_set_dead_letter(config_parser_t *p, const config_field_t *f,
                                  yaml_node_t *val, void *base)
{
    char q[QUOTE_CAP];
    const char *s = config_scalar(p, f, val, "a topic name");

    if (s == NULL)
        return -1;
    if (config_is_null(val))
        s = "";
    if (*s != '\0' && !config_valid_topic(s, strlen(s)))
        return config_fail(p, val->start_mark,
                           "bad topic name '%s' for dead_letter "
                           "(1..255 bytes of A-Z a-z 0-9 . _ : -, or \"\" for none)",
                           config_quote(q, sizeof(q), s, val->data.scalar.length));
    return config_store_string(p, f, base, s);
}

static const char *config_check_listen(config_parser_t *p, yaml_node_t *it)
{
    addr_t a;
    const char *why = addr_parse((const char *)it->data.scalar.value, ADDR_LISTEN, &a);

    if (why == NULL && a.tls && p->tls_listen == NULL)
        p->tls_listen = it;
    return config_bad_address(p, it, why, "listen",
                              "host:port, [v6]:port, unix:/path or tls://host:port");
}

static const char *config_check_glob(config_parser_t *p, yaml_node_t *it)
{
    char q[QUOTE_CAP];
    const char *s = (const char *)it->data.scalar.value;

    if (config_valid_token(s, it->data.scalar.length, SIZE_MAX))
        return NULL;
    snprintf(p->why, sizeof(p->why),
             "bad topic glob '%s' (must be non-empty, without blanks or control characters)",
             config_quote(q, sizeof(q), s, it->data.scalar.length));
    return p->why;
}

static int config_set_listen(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base)
{
    return config_set_addrs(p, f, val, base, config_check_listen);
}

/* The beanstalk listener's addresses: the native forms; none is off. */
static int config_set_beanstalk_listen(config_parser_t *p, const config_field_t *f,
                                       yaml_node_t *val, void *base)
{
    return config_set_strlist(p, f, val, base, config_check_listen, "addresses");
}

static int config_set_sentinels(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                                void *base)
{
    return config_set_strlist(p, f, val, base, config_check_sentinel, "addresses");
}

static int config_set_globs(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                            void *base)
{
    return config_set_strlist(p, f, val, base, config_check_glob, "topic globs");
}

static int config_set_password(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                               void *base)
{
    const char *s = config_value(p, f, val, "a string");

    if (s == NULL)
        return -1;
    if (!config_valid_token(s, val->data.scalar.length, SIZE_MAX))
        return config_fail(p, val->start_mark,
                           "password must be non-empty, without blanks or control characters");
    return config_store_string(p, f, base, s);
}

static int config_set_section(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                              void *base)
{
    return config_walk(p, val, f->key, f->sub, (char *)base + f->off, NULL);
}

#define SECTION(key, table) {key, config_set_section, 0, 0, 0, 0, 0, &(table)}

static int config_set_topics(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base);
static int config_set_users(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                            void *base);


static const config_field_t config_tls_fields[] = {
    FLD(config_t, tls.cert, "cert", config_set_string),
    FLD(config_t, tls.key, "key", config_set_string),
    FLD(config_t, tls.ca, "ca", config_set_string),
    FLD(config_t, tls.verify_clients, "verify_clients", config_set_bool),
};

static const config_field_t config_admin_fields[] = {
    FLD(config_t, admin.listen, "listen", config_set_admin_listen),
    FLD(config_t, admin.token, "token", config_set_string),
};

static const config_field_t config_log_fields[] = {
    FLD(config_t, log_level, "level", config_set_level),
};

static const config_field_t config_limits_fields[] = {
    NUM(config_t, limits.max_connections, "max_connections", config_set_count, 1, UINT64_MAX),
    NUM(config_t, limits.max_line, "max_line", config_set_size, 64, MIB),
    NUM(config_t, limits.max_message, "max_message", config_set_size, 1, GIB),
    NUM(config_t, limits.max_memory, "max_memory", config_set_size, 1, UINT64_MAX),
    NUM(config_t, limits.output_buffer, "output_buffer", config_set_size, 4 * KIB, UINT64_MAX),
    NUM(config_t, limits.max_topics, "max_topics", config_set_count, 1, UINT64_MAX),
};

/* Bit i of a topic's `seen` mask is this table's entry i. */
static const config_field_t config_topic_fields[] = {
    NUM(topic_conf_t, max_messages, "max_messages", config_set_count, 1, UINT64_MAX),
    NUM(topic_conf_t, max_bytes, "max_bytes", config_set_size, 1, UINT64_MAX),
    FLD(topic_conf_t, overflow, "overflow", config_set_overflow),
    NUM(topic_conf_t, block_timeout_ms, "block_timeout", config_set_duration, 0, DURATION_MAX),
    NUM(topic_conf_t, prefetch, "prefetch", config_set_count, 0, 1000000),
    NUM(topic_conf_t, ack_timeout_ms, "ack_timeout", config_set_duration, 1, DURATION_MAX),
    NUM(topic_conf_t, max_deliveries, "max_deliveries", config_set_count, 0, 65535),
    FLD(topic_conf_t, dead_letter, "dead_letter", config_set_dead_letter),
    NUM(topic_conf_t, max_lag, "max_lag", config_set_count, 0, UINT64_MAX),
};
#define TOPIC_DEAD_LETTER_BIT (1u << 7)

static const config_field_t config_redis_fields[] = {
    FLD(config_t, redis.enabled, "enabled", config_set_bool),
    FLD(config_t, redis.address, "address", config_set_redis_addr),
    FLD(config_t, redis.password, "password", config_set_string),
    LIST(config_t, redis.sentinels, redis.nsentinels, "sentinels", config_set_sentinels),
    FLD(config_t, redis.master, "master", config_set_master),
    FLD(config_t, redis.sentinel_password, "sentinel_password", config_set_string),
    NUM(config_t, redis.db, "db", config_set_count, 0, INT32_MAX),
    FLD(config_t, redis.prefix, "prefix", config_set_nonempty),
    FLD(config_t, redis.mirror, "mirror", config_set_mirror),
    FLD(config_t, redis.confirm, "confirm", config_set_bool),
    NUM(config_t, redis.confirm_timeout_ms, "confirm_timeout", config_set_duration, 1,
        DURATION_MAX),
    NUM(config_t, redis.max_unconfirmed, "max_unconfirmed", config_set_count, 1, 1000000),
    FLD(config_t, redis.durability, "durability", config_set_durability),
    NUM(config_t, redis.replicas, "replicas", config_set_count, 0, 1000),
    FLD(config_t, redis.restore, "restore", config_set_bool),
    NUM(config_t, redis.flush_interval_ms, "flush_interval", config_set_duration, 10,
        DURATION_MAX),
};

static const config_field_t config_beanstalk_fields[] = {
    LIST(config_t, beanstalk.listen, beanstalk.nlisten, "listen", config_set_beanstalk_listen),
    FLD(config_t, beanstalk.user, "user", config_set_string),
};

static const config_field_t config_user_fields[] = {
    FLD(user_entry_t, password, "password", config_set_password),
    LIST(user_entry_t, publish, npublish, "publish", config_set_globs),
    LIST(user_entry_t, subscribe, nsubscribe, "subscribe", config_set_globs),
};
#define USER_PASSWORD_BIT (1u << 0)

static const config_table_t config_tls_table = TABLE("tls", config_tls_fields);
static const config_table_t config_admin_table = TABLE("admin", config_admin_fields);
static const config_table_t config_log_table = TABLE("log", config_log_fields);
static const config_table_t config_limits_table = TABLE("limits", config_limits_fields);
static const config_table_t config_defaults_table = TABLE("defaults", config_topic_fields);
static const config_table_t config_redis_table = TABLE("redis", config_redis_fields);
static const config_table_t config_beanstalk_table = TABLE("beanstalk", config_beanstalk_fields);

static const config_field_t config_root_fields[] = {
    LIST(config_t, listen, nlisten, "listen", config_set_listen),
    SECTION("tls", config_tls_table),
    SECTION("admin", config_admin_table),
    SECTION("log", config_log_table),
    SECTION("limits", config_limits_table),
    FLD(config_t, auto_create_topics, "auto_create_topics", config_set_bool),
    {"defaults", config_set_section, offsetof(config_t, defaults), sizeof(topic_conf_t), 0, 0,
     0, &config_defaults_table},
    {"topics", config_set_topics, 0, 0, 0, 0, 0, NULL},
    SECTION("redis", config_redis_table),
    {"users", config_set_users, 0, 0, 0, 0, 0, NULL},
    SECTION("beanstalk", config_beanstalk_table),
    {"cluster", config_set_cluster, 0, 0, 0, 0, 0, NULL},
};
static const config_table_t config_root_table = TABLE("the top level", config_root_fields);

/* ------------------------------------------------------------------ */
/* Named entries: topics and users                                     */

static bool config_valid_user(const char *s, size_t len)
{
    return config_valid_token(s, len, USER_NAME_MAX);
}

static int config_set_topics(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base)
{
    config_t *cfg = base;
    long n = config_entries(p, val, f->key);
    config_table_t t = TABLE("", config_topic_fields);
    char where[TOPIC_NAME_MAX + 16];

    if (n <= 0)
        return (int)n;
    if (config_check_names(p, val, "topics", config_valid_topic,
                           "1..255 bytes of A-Z a-z 0-9 . _ : -") < 0)
        return -1;
    cfg->topics = calloc((size_t)n, sizeof(*cfg->topics));
    p->topic_keys = calloc((size_t)n, sizeof(*p->topic_keys));
    p->topic_vals = calloc((size_t)n, sizeof(*p->topic_vals));
    p->topic_set = calloc((size_t)n, sizeof(*p->topic_set));
    if (cfg->topics == NULL || p->topic_keys == NULL || p->topic_vals == NULL ||
        p->topic_set == NULL)
        return config_oom(p);
    for (long i = 0; i < n; i++) {
        yaml_node_pair_t *pr = &val->data.mapping.pairs.start[i];
        yaml_node_t *k = config_node(p, pr->key);
        topic_entry_t *e = &cfg->topics[cfg->ntopics];

        e->name = config_strndup((const char *)k->data.scalar.value, k->data.scalar.length);
        if (e->name == NULL)
            return config_oom(p);
        cfg->ntopics++;
        p->topic_keys[i] = k;
        p->topic_vals[i] = config_node(p, pr->value);
        snprintf(where, sizeof(where), "topics.%s", e->name);
        t.where = where;
        if (config_walk(p, p->topic_vals[i], where, &t, &e->conf, &p->topic_set[i]) < 0)
            return -1;
    }
    return 0;
}

static int config_set_users(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                            void *base)
{
    config_t *cfg = base;
    long n = config_entries(p, val, f->key);
    config_table_t t = TABLE("", config_user_fields);
    char where[USER_NAME_MAX + 16];

    if (n <= 0)
        return (int)n;
    if (config_check_names(p, val, "users", config_valid_user,
                           "1..255 bytes without blanks or control characters") < 0)
        return -1;
    cfg->users = calloc((size_t)n, sizeof(*cfg->users));
    if (cfg->users == NULL)
        return config_oom(p);
    for (long i = 0; i < n; i++) {
        yaml_node_pair_t *pr = &val->data.mapping.pairs.start[i];
        yaml_node_t *k = config_node(p, pr->key);
        yaml_node_t *v = config_node(p, pr->value);
        user_entry_t *u = &cfg->users[cfg->nusers];
        uint32_t seen = 0;

        u->name = config_strndup((const char *)k->data.scalar.value, k->data.scalar.length);
        if (u->name == NULL)
            return config_oom(p);
        cfg->nusers++;
        snprintf(where, sizeof(where), "users.%s", u->name);
        t.where = where;
        if (config_walk(p, v, where, &t, u, &seen) < 0)
            return -1;
        if (!(seen & USER_PASSWORD_BIT))
            return config_fail(p, k->start_mark, "user '%s' has no password", u->name);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* After the whole file: merge topics over defaults, cross-checks       */

/* Every field a topic did not give itself comes from `defaults`. */
static int config_merge_topic(config_parser_t *p, topic_conf_t *c, uint32_t set)
{
    const topic_conf_t *d = &p->cfg->defaults;

    for (size_t i = 0; i < COUNT(config_topic_fields); i++) {
        const config_field_t *f = &config_topic_fields[i];

        if (set & (1u << i))
            continue;
        if (f->set == config_set_dead_letter) {
            if ((c->dead_letter = config_strdup(d->dead_letter)) == NULL)
                return config_oom(p);
            continue;
        }
        memcpy((char *)c + f->off, (const char *)d + f->off, f->width);
    }
    return 0;
}

static int config_merge_topics(config_parser_t *p)
{
    config_t *cfg = p->cfg;

    for (size_t i = 0; i < cfg->ntopics; i++) {
        topic_entry_t *e = &cfg->topics[i];
        yaml_node_t *dl;

        if (config_merge_topic(p, &e->conf, p->topic_set[i]) < 0)
            return -1;
        if (strcmp(e->conf.dead_letter, e->name) != 0)
            continue;
        if (p->topic_set[i] & TOPIC_DEAD_LETTER_BIT) {
            dl = config_find(p, p->topic_vals[i], "dead_letter");
            return config_fail(p, dl->start_mark, "topic '%s' cannot be its own dead_letter",
                               e->name);
        }
        return config_fail(p, p->topic_keys[i]->start_mark,
                           "topic '%s' cannot be its own dead_letter (inherited from "
                           "defaults; set dead_letter: \"\" here)",
                           e->name);
    }
    return 0;
}

static int config_topic_cmp(const void *a, const void *b)
{
    return strcmp(((const topic_entry_t *)a)->name, ((const topic_entry_t *)b)->name);
}

static int config_check_tls(config_parser_t *p, yaml_node_t *root)
{
    const config_t *cfg = p->cfg;
    yaml_node_t *at;

    if (p->tls_listen != NULL && (cfg->tls.cert[0] == '\0' || cfg->tls.key[0] == '\0'))
        return config_fail(p, p->tls_listen->start_mark,
                           "tls:// listener needs tls.cert and tls.key");
    if (!cfg->tls.verify_clients || cfg->tls.ca[0] != '\0')
        return 0;
    at = config_find(p, config_find(p, root, "tls"), "verify_clients");
    return config_fail(p, (at != NULL ? at : root)->start_mark, "tls.verify_clients needs tls.ca");
}

/* beanstalk clients cannot AUTH: with users configured, the listener's
 * connections act as its `user:`, which must be one of them. */
static int config_check_beanstalk(config_parser_t *p, yaml_node_t *root)
{
    const config_t *cfg = p->cfg;
    yaml_node_t *sec = config_find(p, root, "beanstalk");
    yaml_node_t *at = sec != NULL ? config_find(p, sec, "user") : NULL;
    char q[QUOTE_CAP];
    const char *user = cfg->beanstalk.user;

    if (user[0] == '\0') {
        if (cfg->nusers == 0 || cfg->beanstalk.nlisten == 0)
            return 0;
        return config_fail(p, (sec != NULL ? sec : root)->start_mark,
                           "beanstalk needs user: when users are configured (beanstalk "
                           "clients cannot AUTH; its connections act as that user)");
    }
    for (size_t i = 0; i < cfg->nusers; i++)
        if (strcmp(cfg->users[i].name, user) == 0)
            return 0;
    return config_fail(p, (at != NULL ? at : root)->start_mark,
                       "beanstalk.user '%s' is not one of users:",
                       config_quote(q, sizeof(q), user, strlen(user)));
}

/* With sentinels the master's address comes from them: an address as
 * well would be a second answer to the same question. A master name and a
 * sentinel password mean nothing without sentinels. */
static int config_check_sentinels(config_parser_t *p, yaml_node_t *root)
{
    const config_t *cfg = p->cfg;
    yaml_node_t *sec = config_find(p, root, "redis");
    yaml_node_t *at;

    if (cfg->redis.nsentinels == 0) {
        if ((at = config_find(p, sec, "master")) != NULL)
            return config_fail(p, at->start_mark, "redis.master needs redis.sentinels");
        if ((at = config_find(p, sec, "sentinel_password")) != NULL)
            return config_fail(p, at->start_mark, "redis.sentinel_password needs redis.sentinels");
        return 0;
    }
    if ((at = config_find(p, sec, "address")) != NULL)
        return config_fail(p, at->start_mark,
                           "redis.address and redis.sentinels exclude each other (with "
                           "sentinels the mirror asks them where the master is)");
    if (cfg->redis.master[0] == '\0')
        return config_fail(p, config_find(p, sec, "sentinels")->start_mark,
                           "redis.sentinels needs redis.master (the name the sentinels "
                           "monitor the master by)");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

/* Fill p->cfg from the loaded document. */
static int config_apply(config_parser_t *p, yaml_node_t *root, void *unused)
{
    (void)unused;
    config_field_t top = {"the top level", NULL, 0, 0, 0, 0, 0, &config_root_table};

    if (root == NULL || config_is_null(root))
        return 0; /* an empty file: all defaults */
    if (root->type != YAML_MAPPING_NODE)
        return config_fail(p, root->start_mark, "the top level must be a mapping, not %s",
                           config_kind(root));
    if (config_set_section(p, &top, root, p->cfg) < 0)
        return -1;
    if (config_merge_topics(p) < 0 || config_check_tls(p, root) < 0 ||
        config_check_beanstalk(p, root) < 0 || config_check_sentinels(p, root) < 0)
        return -1;
    if (p->cfg->ntopics > 1)
        qsort(p->cfg->topics, p->cfg->ntopics, sizeof(*p->cfg->topics), config_topic_cmp);
    return 0;
}

config_t *config_load_string(const char *name, const char *text, size_t len, char *err,
                             size_t errlen)
{
    config_parser_t p;
    int rc;

    config_parser_init(&p, name, text, len, err, errlen);
    p.cfg = config_default();
    if (p.cfg == NULL || (p.cfg->path = config_strdup(p.name)) == NULL) {
        config_free(p.cfg);
        config_fail_file(p.name, err, errlen, "out of memory");
        return NULL;
    }
    rc = config_parse_doc(&p, config_apply, NULL);
    free(p.topic_keys);
    free(p.topic_vals);
    free(p.topic_set);
    if (rc < 0) {
        config_free(p.cfg);
        return NULL;
    }
    return p.cfg;
}

config_t *config_load_file(const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    config_t *cfg;

    if (config_read_file(path, &buf, &len, err, errlen) < 0)
        return NULL;
    cfg = config_load_string(path, buf, len, err, errlen);
    free(buf);
    return cfg;
}

/* ------------------------------------------------------------------ */
/* Lookups and names                                                   */

bool config_user_allows(const user_entry_t *u, bool publish, const char *name, size_t len)
{
    char *const *globs = publish ? u->publish : u->subscribe;
    size_t n = publish ? u->npublish : u->nsubscribe;
    char z[256]; /* fnmatch wants a C string; names are at most 255 bytes */

    if (len >= sizeof z)
        return false;
    memcpy(z, name, len);
    z[len] = '\0';
    for (size_t i = 0; i < n; i++)
        if (fnmatch(globs[i], z, 0) == 0)
            return true;
    return false;
}

const topic_conf_t *config_topic(const config_t *cfg, const char *name, size_t len)
{
    size_t lo = 0, hi = cfg->ntopics;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = cfg->topics[mid].name;
        size_t sl = strlen(s);
        int c = memcmp(name, s, len < sl ? len : sl);

        if (c == 0 && len != sl)
            c = len < sl ? -1 : 1;
        if (c == 0)
            return &cfg->topics[mid].conf;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return &cfg->defaults;
}

const char *config_overflow_name(overflow_policy_t p)
{
    if ((unsigned)p >= COUNT(config_overflow_names) - 1)
        return "unknown";
    return config_overflow_names[p];
}

const char *config_log_level_name(log_level_t l)
{
    if ((unsigned)l >= COUNT(config_level_names) - 1)
        return "unknown";
    return config_level_names[l];
}
