/* config_yaml.h: the config loader's machinery over libyaml's document
 * tree, private to config*.c (config.h is the API): the loader's state, the
 * key tables' types, errors placed at FILE:LINE:COL, node helpers, and the
 * walk of a mapping against a key table (config_yaml.c).
 */
#ifndef SLUICE_CONFIG_YAML_H
#define SLUICE_CONFIG_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "config.h"

#define QUOTE_MAX 64 /* longest value echoed back in an error */
#define QUOTE_CAP (QUOTE_MAX * 4 + 8) /* room for config_quote's output */

/* One load of one file. */
typedef struct config_parser {
    const char *name;       /* FILE in messages */
    const char *text;       /* the input, to place reader errors */
    size_t len;
    yaml_document_t *doc;
    config_t *cfg;
    char *err;
    size_t errlen;
    yaml_node_t *tls_listen; /* first tls:// listener, checked against tls.* */
    yaml_node_t **topic_keys; /* parallel to cfg->topics until they are sorted */
    yaml_node_t **topic_vals;
    uint32_t *topic_set;     /* which fields each topic gave itself */
    char why[CONFIG_ERR_MAX]; /* a list checker's complaint */
} config_parser_t;

typedef struct config_field config_field_t;
typedef struct config_table config_table_t;

/* Parses `val` for field f into the struct at `base`. 0 or -1 (error set). */
typedef int (*config_set_fn)(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                             void *base);

struct config_field {
    const char *key;
    config_set_fn set;
    size_t off;                 /* the field inside base */
    size_t width;               /* its size, for merging topic fields */
    size_t off2;                /* a list's count, for list fields */
    uint64_t min, max;          /* inclusive range of numeric fields */
    const config_table_t *sub;  /* the table of a nested section */
};

struct config_table {
    const char *where;          /* "limits", "topics.orders": for messages */
    const config_field_t *fields;
    size_t n;
};

#define FIELD_AT(base, f, type) ((type *)(void *)((char *)(base) + (f)->off))

/* Entries of the key tables: a field, a number with its range, a list with
 * its count, and a table of them. */
#define FLD(type, member, key, fn) \
    {key, fn, offsetof(type, member), sizeof(((type *)0)->member), 0, 0, UINT64_MAX, NULL}
#define NUM(type, member, key, fn, lo, hi) \
    {key, fn, offsetof(type, member), sizeof(((type *)0)->member), 0, lo, hi, NULL}
#define LIST(type, member, count, key, fn) \
    {key, fn, offsetof(type, member), sizeof(((type *)0)->member), offsetof(type, count), \
     0, UINT64_MAX, NULL}
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define TABLE(where, fields) {where, fields, COUNT(fields)}

char *config_strndup(const char *s, size_t n);
char *config_strdup(const char *s);
/* Free the n strings of v, then v. */
void config_free_strv(char **v, size_t n);

/* Copy s into out (QUOTE_CAP bytes) for an error message: control bytes
 * escaped (a message is one line whatever the file holds) and long values
 * cut short. Returns out. */
const char *config_quote(char *out, size_t outlen, const char *s, size_t len);

/* A list item's address check: NULL when `why` is NULL, else "bad KIND
 * address 'ITEM': WHY (use FORMS)" in p->why (config_set_strlist's check). */
const char *config_bad_address(config_parser_t *p, yaml_node_t *it, const char *why,
                               const char *kind, const char *forms);

/* Record "FILE:LINE:COL: message" (libyaml marks are 0-based). Returns -1 so
 * callers can `return config_fail(...)`. */
int config_fail(config_parser_t *p, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An error with no place in the file (cannot open, out of memory). */
void config_fail_file(const char *name, char *err, size_t errlen, const char *what);

/* "FILE: out of memory"; returns -1. */
int config_oom(config_parser_t *p);

/* libyaml's parse error, placed (reader errors carry an offset, not a mark). */
int config_syntax_error(config_parser_t *p, const yaml_parser_t *y);

yaml_node_t *config_node(config_parser_t *p, int id);

/* "a mapping", "a list" or "a scalar", for messages. */
const char *config_kind(const yaml_node_t *n);

/* A plain `~`, `null` or nothing at all: YAML's null. */
bool config_is_null(const yaml_node_t *n);

bool config_key_is(const yaml_node_t *k, const char *name);

/* The value of `key` in map; NULL if map is not a mapping or lacks it. */
yaml_node_t *config_find(config_parser_t *p, yaml_node_t *map, const char *key);

/* Returns the scalar's text, or NULL with an error if val is not a scalar or
 * holds a NUL byte (every value ends up in a C string). */
const char *config_scalar(config_parser_t *p, const config_field_t *f, const yaml_node_t *val,
                          const char *what);

/* A scalar that must not be null (sizes, numbers, booleans, names). */
const char *config_value(config_parser_t *p, const config_field_t *f, const yaml_node_t *val,
                         const char *what);

/* Walk `map` (the value of `key`) against table t, writing into base: unknown
 * keys (with a guess at the one meant), duplicates and non-scalar keys are
 * errors. Null is an empty mapping. `seen` (may be NULL) gets bit i for
 * t->fields[i] present. */
int config_walk(config_parser_t *p, yaml_node_t *map, const char *key, const config_table_t *t,
                void *base, uint32_t *seen);

/* The number of pairs in `val`, or -1 with an error if it is not a mapping
 * (null counts as an empty one). */
long config_entries(config_parser_t *p, yaml_node_t *val, const char *key);

/* Check the keys of a name -> entry mapping (topics, users): scalars, each
 * passing `valid` (`rule` says what that is, for the message), none twice. */
int config_check_names(config_parser_t *p, yaml_node_t *map, const char *where,
                       bool (*valid)(const char *, size_t), const char *rule);

/* A list of strings into the char ** at f->off and its count at f->off2,
 * each passing `check` (NULL if fine, else why not; `what` names the
 * items for messages). A single scalar is a one-element list; null is an
 * empty one. */
int config_set_strlist(config_parser_t *p, const config_field_t *f, yaml_node_t *val, void *base,
                       const char *(*check)(config_parser_t *, yaml_node_t *), const char *what);

/* The same for a list of addresses that may not be empty. */
int config_set_addrs(config_parser_t *p, const config_field_t *f, yaml_node_t *val, void *base,
                     const char *(*check)(config_parser_t *, yaml_node_t *));

/* The whole file at path (at most 64 MiB) into *out (malloc'ed) and
 * *outlen. 0, or -1 with "PATH: why" in err. */
int config_read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen);

/* A parser over text[0..len) (NULL: empty), named `name` in messages,
 * its errors into err; every other field zero. */
void config_parser_init(config_parser_t *p, const char *name, const char *text, size_t len,
                        char *err, size_t errlen);

/* Load the first YAML document of p->text, hand its root (NULL when
 * empty) and arg to apply with p->doc set, and refuse a second document.
 * 0 or -1. */
int config_parse_doc(config_parser_t *p, int (*apply)(config_parser_t *, yaml_node_t *, void *),
                     void *arg);

/* Setters shared by config.c's tables and config_cluster.c's. A non-empty
 * string: */
int config_set_nonempty(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                        void *base);

/* The `cluster:` section (config_cluster.c). */
int config_set_cluster(config_parser_t *p, const config_field_t *f, yaml_node_t *val,
                       void *base);

#endif
