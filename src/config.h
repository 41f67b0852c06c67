/* config.h: the daemon's configuration, loaded from YAML and validated.
 *
 * A config_t is plain data: every module reads it, none of them changes it.
 * A reload builds a whole new config_t and swaps it in only if it is valid.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "place.h"

#define CONFIG_EX_CONFIG 78 /* sysexits.h EX_CONFIG: the exit status for a bad file */
#define CONFIG_DEFAULT_PATH "/etc/sluice/sluiced.yaml"
#define CONFIG_ERR_MAX 512

typedef enum overflow_policy {
    OVERFLOW_BLOCK = 0,
    OVERFLOW_REJECT,
    OVERFLOW_DROP_OLDEST,
} overflow_policy_t;

typedef enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
} log_level_t;

typedef enum mirror_mode {
    MIRROR_STATS = 0,
    MIRROR_MESSAGES,
} mirror_mode_t;

/* What a confirmed PUB's +OK promises (redis.durability; docs/redis.md). */
typedef enum durability {
    DURABILITY_MEMORY = 0, /* Redis has it in memory */
    DURABILITY_EVERYSEC,   /* ... and its AOF is fsynced within about a second */
    DURABILITY_ALWAYS,     /* ... and its AOF was fsynced before it answered */
} durability_t;

/* Limits of one topic: `defaults`, or a `topics:` entry merged over them. */
typedef struct topic_conf {
    uint64_t max_messages;
    uint64_t max_bytes;        /* payload bytes */
    overflow_policy_t overflow;
    uint64_t block_timeout_ms; /* 0 = wait as long as it takes */
    uint32_t prefetch;         /* default SUB credit */
    uint64_t ack_timeout_ms;
    uint32_t max_deliveries;   /* 0 = unlimited */
    char *dead_letter;         /* never NULL; "" = drop and count as dead */
    uint64_t max_lag;          /* with subscribers, this many ready = full; 0 = off */
} topic_conf_t;

typedef struct topic_entry {
    char *name;
    topic_conf_t conf; /* already merged over `defaults` */
} topic_entry_t;

typedef struct user_entry {
    char *name;
    char *password;    /* plain text, or a crypt(3) hash starting with '$' */
    char **publish;    /* fnmatch globs */
    size_t npublish;
    char **subscribe;
    size_t nsubscribe;
} user_entry_t;

typedef struct config {
    char *path;        /* file it came from; NULL for built-in defaults */

    char **listen;     /* "host:port", "[v6]:port", "unix:/path", "tls://host:port" */
    size_t nlisten;

    struct {
        char *cert, *key, *ca;
        bool verify_clients;
    } tls;

    struct {
        char *listen;  /* "" = off */
        char *token;
    } admin;

    log_level_t log_level;

    struct {
        uint64_t max_connections;
        uint64_t max_line;
        uint64_t max_message;
        uint64_t max_memory;
        uint64_t output_buffer;
        uint64_t max_topics; /* sluice extension: bounds auto-created topics */
    } limits;

    bool auto_create_topics;
    topic_conf_t defaults;
    topic_entry_t *topics;
    size_t ntopics;

    struct {
        bool enabled;
        char *address;   /* host:port or unix:/path; not used with sentinels */
        char **sentinels; /* Redis Sentinels to ask for the master (docs/redis.md) */
        size_t nsentinels;
        char *master;    /* the master's name in Sentinel; "" without sentinels */
        char *sentinel_password; /* AUTH to the sentinels; "" = none */
        char *password;
        uint32_t db;
        char *prefix;
        mirror_mode_t mirror;
        bool confirm;
        uint64_t confirm_timeout_ms;
        uint64_t max_unconfirmed; /* confirm mode: PUBs in flight per connection */
        durability_t durability;
        uint32_t replicas;  /* confirm mode: +OK once this many replicas have it (WAIT) */
        bool restore;
        uint64_t flush_interval_ms;
    } redis;

    user_entry_t *users;
    size_t nusers;

    /* The beanstalkd-protocol listener (docs/beanstalk.md): off while
     * nlisten is 0. Its connections act as `user` (a users: entry, "" for
     * none), which the config requires whenever users are configured. */
    struct {
        char **listen;   /* as the native listen */
        size_t nlisten;
        char *user;
    } beanstalk;

    /* The cluster this broker is one node of (docs/scaling.md): off while
     * nnodes is 0. Topics are placed over `nodes` by place.h, which hashes
     * each address as written; a command naming a topic that is neither
     * here nor this node's gets -MOVED. Not reloadable (daemon.c). */
    struct config_cluster {
        char *self;        /* "" = no cluster; else one of nodes, spelled the same */
        char **nodes;      /* "host:port" or "[v6]:port", in the file's order */
        size_t nnodes;
        size_t self_index; /* nodes[self_index] is self */
    } cluster;
} config_t;

/* The built-in configuration (no file). Never NULL unless out of memory. */
config_t *config_default(void);

/* Load and validate a YAML file. On success returns a config and leaves
 * `err` untouched; on failure returns NULL and writes one line
 * "FILE:LINE:COL: message" (1-based) into err (at most errlen bytes). */
config_t *config_load_file(const char *path, char *err, size_t errlen);

/* Same, from memory; `name` stands for FILE in error messages. */
config_t *config_load_string(const char *name, const char *text, size_t len,
                             char *err, size_t errlen);

void config_free(config_t *cfg);

/* Does one of u's publish (or, !publish, subscribe) globs match the
 * topic or tube name[0..len)? A name over 255 bytes matches nothing. */
bool config_user_allows(const user_entry_t *u, bool publish, const char *name, size_t len);

/* Limits for a topic: its own entry if listed, else the defaults. */
const topic_conf_t *config_topic(const config_t *cfg, const char *name, size_t len);

/* With a cluster section, the address (as cluster.nodes spells it) of the
 * node that owns the topic name[0..len); NULL without one. Inline, like
 * config_elsewhere, so the core reads the placement straight from the
 * config without linking the loader. */
static inline const char *config_owner(const config_t *cfg, const char *name, size_t len)
{
    if (cfg->cluster.nnodes == 0)
        return NULL;
    return cfg->cluster.nodes[place_owner((const char *const *)cfg->cluster.nodes,
                                          cfg->cluster.nnodes, name, len)];
}

/* Does a cluster section give the topic to another node? false without
 * one. */
static inline bool config_elsewhere(const config_t *cfg, const char *name, size_t len)
{
    return cfg->cluster.nnodes > 0 &&
           place_owner((const char *const *)cfg->cluster.nodes, cfg->cluster.nnodes, name,
                       len) != cfg->cluster.self_index;
}

/* "64MiB", "4KiB", "1GiB", "512B", "100" (bytes). Returns 0 or -1. */
int config_parse_size(const char *s, uint64_t *out);

/* "30s", "100ms", "5m", "1h", "250" (ms). Returns 0 or -1. */
int config_parse_duration(const char *s, uint64_t *out_ms);

/* ---- the client's config file (sluice --config, $SLUICE_CONFIG;
 * config_client.c, docs/cli.md) ---- */

#define CONFIG_NODE_MAX 127 /* bytes of one node address */

/* What a client config file holds: the node list of a cluster. */
typedef struct client_conf {
    char **nodes;  /* addresses exactly as written: placement hashes these bytes */
    size_t nnodes; /* at least 1 once loaded */
} client_conf_t;

/* Load a client config file (YAML, a top-level `nodes: [host:port, ...]`
 * and nothing else) into *out. 0, or -1 with "FILE:LINE:COL: message" in
 * err. The string form names the text `name` in messages. */
int config_client_load_file(const char *path, client_conf_t *out, char *err, size_t errlen);
int config_client_load_string(const char *name, const char *text, size_t len, client_conf_t *out,
                              char *err, size_t errlen);

/* A node list written "host:port,host:port,..." (--nodes, $SLUICE_NODES;
 * blanks around an entry are dropped) into *out; `what` names the source
 * in messages. 0, or -1 with "WHAT: why" in err. */
int config_nodes_parse(const char *list, const char *what, client_conf_t *out, char *err,
                       size_t errlen);

/* NULL if s[0..len) can be a node's address (host:port or [v6]:port, as
 * in cluster.nodes; up to CONFIG_NODE_MAX bytes), else why not. */
const char *config_node_check(const char *s, size_t len);

void config_client_free(client_conf_t *c);

const char *config_overflow_name(overflow_policy_t p);
const char *config_log_level_name(log_level_t l);

#endif
