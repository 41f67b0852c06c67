/* config_yaml.c: the config loader's machinery over libyaml's document
 * tree: errors placed at FILE:LINE:COL (libyaml's reader errors too), node
 * helpers, and the walk of a mapping against a key table, which refuses
 * unknown keys (guessing the one meant), duplicates and non-scalar keys.
 * What the keys mean is config.c's.
 */
#include "config_yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Strings                                                             */

char *config_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *config_strdup(const char *s)
{
    return config_strndup(s, strlen(s));
}

void config_free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

const char *config_quote(char *out, size_t outlen, const char *s, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len && o + 8 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];

        if (i == QUOTE_MAX) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f) {
            snprintf(out + o, outlen - o, "\\x%02x", c);
            o += 4;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------ */
/* Errors and nodes                                                    */

int config_fail(config_parser_t *p, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->err == NULL || p->errlen == 0)
        return -1;
    n = snprintf(p->err, p->errlen, "%s:%zu:%zu: ", p->name, m.line + 1, m.column + 1);
    if (n < 0 || (size_t)n >= p->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

void config_fail_file(const char *name, char *err, size_t errlen, const char *what)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", name, what);
}

int config_oom(config_parser_t *p)
{
    config_fail_file(p->name, p->err, p->errlen, "out of memory");
    return -1;
}

yaml_node_t *config_node(config_parser_t *p, int id)
{
    return yaml_document_get_node(p->doc, id);
}

const char *config_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

bool config_is_null(const yaml_node_t *n)
{
    const char *v;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

bool config_key_is(const yaml_node_t *k, const char *name)
{
    return k->type == YAML_SCALAR_NODE && k->data.scalar.length == strlen(name) &&
           memcmp(k->data.scalar.value, name, k->data.scalar.length) == 0;
}

const char *config_scalar(config_parser_t *p, const config_field_t *f, const yaml_node_t *val,
                          const char *what)
{
    if (val->type != YAML_SCALAR_NODE) {
        config_fail(p, val->start_mark, "%s must be %s, not %s", f->key, what,
                    config_kind(val));
        return NULL;
    }
    if (strlen((const char *)val->data.scalar.value) != val->data.scalar.length) {
        config_fail(p, val->start_mark, "%s must not contain a NUL byte", f->key);
        return NULL;
    }
    return (const char *)val->data.scalar.value;
}

const char *config_value(config_parser_t *p, const config_field_t *f, const yaml_node_t *val,
                         const char *what)
{
    const char *s = config_scalar(p, f, val, what);

    if (s != NULL && config_is_null(val)) {
        config_fail(p, val->start_mark, "missing value for %s (expected %s)", f->key, what);
        return NULL;
    }
    return s;
}

yaml_node_t *config_find(config_parser_t *p, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++)
        if (config_key_is(config_node(p, pr->key), key))
            return config_node(p, pr->value);
    return NULL;
}

/* libyaml's reader errors carry a byte offset, not a mark. */
static yaml_mark_t config_offset_mark(const config_parser_t *p, size_t off)
{
    yaml_mark_t m = {0, 0, 0};

    for (size_t i = 0; i < off && i < p->len; i++) {
        if (p->text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    m.index = off;
    return m;
}

int config_syntax_error(config_parser_t *p, const yaml_parser_t *y)
{
    const char *problem = y->problem != NULL ? y->problem : "unknown error";

    switch (y->error) {
    case YAML_MEMORY_ERROR:
        return config_oom(p);
    case YAML_READER_ERROR:
        if (y->problem_value != -1)
            return config_fail(p, config_offset_mark(p, y->problem_offset), "%s (#%X)", problem,
                               (unsigned)y->problem_value);
        return config_fail(p, config_offset_mark(p, y->problem_offset), "%s", problem);
    default:
        break;
    }
    if (y->context != NULL)
        return config_fail(p, y->problem_mark, "%s (%s at %zu:%zu)", problem, y->context,
                           y->context_mark.line + 1, y->context_mark.column + 1);
    return config_fail(p, y->problem_mark, "%s", problem);
}

/* ------------------------------------------------------------------ */
/* Walking mappings                                                    */

/* Edit distance, to suggest the key that was probably meant. Keys are short;
 * anything long is not worth a guess. */
static size_t config_distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b), row[33];

    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int config_unknown_key(config_parser_t *p, const config_table_t *t, yaml_node_t *k)
{
    char q[QUOTE_CAP];
    const char *s = (const char *)k->data.scalar.value;
    const char *guess = NULL;
    size_t best = 3;

    for (size_t i = 0; i < t->n; i++) {
        size_t d = config_distance(s, k->data.scalar.length, t->fields[i].key);

        if (d < best) {
            best = d;
            guess = t->fields[i].key;
        }
    }
    config_quote(q, sizeof(q), s, k->data.scalar.length);
    if (guess != NULL)
        return config_fail(p, k->start_mark, "unknown key '%s' in %s (did you mean '%s'?)", q,
                           t->where, guess);
    return config_fail(p, k->start_mark, "unknown key '%s' in %s", q, t->where);
}

/* Mapping keys must be scalars; the message names what they are instead. */
static int config_check_key(config_parser_t *p, yaml_node_t *k, const char *where)
{
    if (k->type != YAML_SCALAR_NODE)
        return config_fail(p, k->start_mark, "keys in %s must be strings, not %s", where,
                           config_kind(k));
    return 0;
}

int config_walk(config_parser_t *p, yaml_node_t *map, const char *key, const config_table_t *t,
                void *base, uint32_t *seen)
{
    uint32_t got = 0;

    if (config_is_null(map))
        goto done;
    if (map->type != YAML_MAPPING_NODE)
        return config_fail(p, map->start_mark, "%s must be a mapping, not %s", key,
                           config_kind(map));
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = config_node(p, pr->key);
        yaml_node_t *v = config_node(p, pr->value);
        size_t i;

        if (config_check_key(p, k, t->where) < 0)
            return -1;
        for (i = 0; i < t->n && !config_key_is(k, t->fields[i].key); i++)
            ;
        if (i == t->n)
            return config_unknown_key(p, t, k);
        if (got & (1u << i))
            return config_fail(p, k->start_mark, "duplicate key '%s' in %s", t->fields[i].key,
                               t->where);
        got |= 1u << i;
        if (t->fields[i].set(p, &t->fields[i], v, base) < 0)
            return -1;
    }
done:
    if (seen != NULL)
        *seen = got;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Named entries: topics and users                                     */

typedef struct config_name_ref {
    const char *s;
    size_t len;
    size_t idx;
} config_name_ref_t;

static int config_name_cmp(const void *a, const void *b)
{
    const config_name_ref_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);

    if (c != 0)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorting finds duplicates in n log n (configs may list thousands of topics);
 * the first duplicate in file order is the one reported. */
int config_check_names(config_parser_t *p, yaml_node_t *map, const char *where,
                       bool (*valid)(const char *, size_t), const char *rule)
{
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    size_t n = (size_t)(map->data.mapping.pairs.top - pairs), dup = SIZE_MAX;
    config_name_ref_t *refs;
    char q[QUOTE_CAP];

    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = config_node(p, pairs[i].key);

        if (config_check_key(p, k, where) < 0)
            return -1;
        if (!valid((const char *)k->data.scalar.value, k->data.scalar.length))
            return config_fail(p, k->start_mark, "bad name '%s' in %s (%s)",
                               config_quote(q, sizeof(q), (const char *)k->data.scalar.value,
                                            k->data.scalar.length),
                               where, rule);
    }
    if (n < 2)
        return 0;
    refs = malloc(n * sizeof(*refs));
    if (refs == NULL)
        return config_oom(p);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = config_node(p, pairs[i].key);

        refs[i] = (config_name_ref_t){(const char *)k->data.scalar.value, k->data.scalar.length,
                                      i};
    }
    qsort(refs, n, sizeof(*refs), config_name_cmp);
    for (size_t i = 1; i < n; i++)
        if (refs[i].len == refs[i - 1].len && memcmp(refs[i].s, refs[i - 1].s, refs[i].len) == 0 &&
            refs[i].idx < dup)
            dup = refs[i].idx;
    free(refs);
    if (dup != SIZE_MAX) {
        yaml_node_t *k = config_node(p, pairs[dup].key);

        return config_fail(p, k->start_mark, "duplicate key '%s' in %s",
                           config_quote(q, sizeof(q), (const char *)k->data.scalar.value,
                                        k->data.scalar.length),
                           where);
    }
    return 0;
}

long config_entries(config_parser_t *p, yaml_node_t *val, const char *key)
{
    if (config_is_null(val))
        return 0;
    if (val->type != YAML_MAPPING_NODE)
        return config_fail(p, val->start_mark, "%s must be a mapping, not %s", key,
                           config_kind(val));
    return (long)(val->data.mapping.pairs.top - val->data.mapping.pairs.start);
}

/* ------------------------------------------------------------------ */
/* Lists of strings                                                    */

const char *config_bad_address(config_parser_t *p, yaml_node_t *it, const char *why,
                               const char *kind, const char *forms)
{
    char q[QUOTE_CAP];

    if (why == NULL)
        return NULL;
    snprintf(p->why, sizeof(p->why), "bad %s address '%s': %s (use %s)", kind,
             config_quote(q, sizeof(q), (const char *)it->data.scalar.value,
                          it->data.scalar.length),
             why, forms);
    return p->why;
}

int config_set_strlist(config_parser_t *p, const config_field_t *f, yaml_node_t *val, void *base,
                       const char *(*check)(config_parser_t *, yaml_node_t *), const char *what)
{
    char ***slot = FIELD_AT(base, f, char **);
    size_t *count = (size_t *)(void *)((char *)base + f->off2);
    bool scalar = val->type == YAML_SCALAR_NODE;
    size_t n = 0;
    char **v;

    if (val->type == YAML_MAPPING_NODE)
        return config_fail(p, val->start_mark, "%s must be a list of %s, not a mapping",
                           f->key, what);
    if (!scalar)
        n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    else if (!config_is_null(val))
        n = 1;
    v = calloc(n ? n : 1, sizeof(char *));
    if (v == NULL)
        return config_oom(p);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = scalar ? val : config_node(p, val->data.sequence.items.start[i]);
        const char *s = config_scalar(p, f, it, what);
        const char *why = NULL;

        if (s == NULL || (why = check(p, it)) != NULL) {
            if (why != NULL)
                config_fail(p, it->start_mark, "%s", why);
            config_free_strv(v, n);
            return -1;
        }
        if ((v[i] = config_strdup(s)) == NULL) {
            config_free_strv(v, n);
            return config_oom(p);
        }
    }
    config_free_strv(*slot, *count);
    *slot = v;
    *count = n;
    return 0;
}

int config_set_addrs(config_parser_t *p, const config_field_t *f, yaml_node_t *val, void *base,
                     const char *(*check)(config_parser_t *, yaml_node_t *))
{
    if (config_set_strlist(p, f, val, base, check, "addresses") < 0)
        return -1;
    if (*(size_t *)(void *)((char *)base + f->off2) == 0)
        return config_fail(p, val->start_mark, "%s needs at least one address", f->key);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Files and documents                                                 */

#define CONFIG_FILE_MAX ((size_t)64 << 20)

int config_read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    char what[CONFIG_ERR_MAX];
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (fp == NULL) {
        snprintf(what, sizeof(what), "cannot open: %s", strerror(errno));
        config_fail_file(path, err, errlen, what);
        return -1;
    }
    for (;;) {
        size_t got;

        if (len == cap) {
            char *nb = cap >= CONFIG_FILE_MAX ? NULL : realloc(buf, cap ? cap * 2 : 4096);

            if (nb == NULL) {
                config_fail_file(path, err, errlen,
                                 cap >= CONFIG_FILE_MAX ? "file is larger than 64MiB"
                                                        : "out of memory");
                goto fail;
            }
            buf = nb;
            cap = cap ? cap * 2 : 4096;
        }
        got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(fp)) {
        snprintf(what, sizeof(what), "cannot read: %s", strerror(errno));
        config_fail_file(path, err, errlen, what);
        goto fail;
    }
    fclose(fp);
    *out = buf;
    *outlen = len;
    return 0;
fail:
    fclose(fp);
    free(buf);
    return -1;
}

void config_parser_init(config_parser_t *p, const char *name, const char *text, size_t len,
                        char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->name = name != NULL ? name : "<config>";
    p->text = text != NULL ? text : "";
    p->len = text != NULL ? len : 0;
    p->err = err;
    p->errlen = errlen;
}

static int config_parse_loaded(config_parser_t *p, yaml_parser_t *y,
                               int (*apply)(config_parser_t *, yaml_node_t *, void *), void *arg)
{
    yaml_document_t doc, next;
    int rc;

    if (!yaml_parser_load(y, &doc))
        return config_syntax_error(p, y);
    p->doc = &doc;
    rc = apply(p, yaml_document_get_root_node(&doc), arg);
    yaml_document_delete(&doc);
    p->doc = NULL;
    if (rc < 0)
        return -1;
    if (!yaml_parser_load(y, &next))
        return config_syntax_error(p, y);
    if (yaml_document_get_root_node(&next) != NULL)
        rc = config_fail(p, next.start_mark,
                         "a second YAML document starts here (a config file holds one)");
    yaml_document_delete(&next);
    return rc;
}

int config_parse_doc(config_parser_t *p, int (*apply)(config_parser_t *, yaml_node_t *, void *),
                     void *arg)
{
    yaml_parser_t y;

    if (!yaml_parser_initialize(&y))
        return config_oom(p);
    yaml_parser_set_input_string(&y, (const unsigned char *)p->text, p->len);
    int rc = config_parse_loaded(p, &y, apply, arg);
    yaml_parser_delete(&y);
    return rc;
}
