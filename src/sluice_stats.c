/* sluice_stats.c: `sluice stats`: the server's (or one topic's) counters
 * as aligned rows and, for the server, a table of every topic; the raw
 * YAML when not on a terminal or with --yaml.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "sluice_cli.h"
#include "topview.h"

/* Value of a top-level "key: value" line of a STATS body, or NULL. */
static const char *stats_value(const char *body, size_t len, const char *key, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = body, *end = body + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > kl + 1 && memcmp(p, key, kl) == 0 && p[kl] == ':') {
            const char *v = p + kl + 1;
            while (v < le && *v == ' ')
                v++;
            *vlen = (size_t)(le - v);
            if (*vlen && le[-1] == '\r')
                (*vlen)--;
            return v;
        }
        p = le + 1;
    }
    return NULL;
}

/* Print a STATS body as aligned "key  value" rows; nested mappings become
 * dotted keys (redis.connected). */
static void stats_print_pairs(const char *body, size_t len)
{
    char parent[64] = "";
    const char *p = body, *end = body + len;
    tv_line_t rows[128];
    size_t nrows = 0;
    int width = 0;

    while (nrows < sizeof rows / sizeof rows[0] &&
           tv_line_next(&p, end, parent, sizeof parent, &rows[nrows])) {
        if (rows[nrows].vl == 0 && strchr(rows[nrows].key, '.') == NULL)
            continue;  /* a mapping's head ("redis:"): its keys follow, dotted */
        int n = (int)strlen(rows[nrows].key);
        if (n > width)
            width = n;
        nrows++;
    }
    for (size_t i = 0; i < nrows; i++)
        printf("%-*s  %.*s\n", width, rows[i].key, (int)rows[i].vl, rows[i].v);
}

typedef struct topic_row {
    char name[PROTO_TOPIC_MAX + 1];
    char *body;
    size_t len;
} topic_row_t;

/* The table's columns: the queue's state, then every counter (counters.h). */
#define STATS_COL(f, help) #f,
static const char *const stats_cols[] = {
    "ready", "delayed", "in_flight", "bytes", "consumers", SLUICE_COUNTERS(STATS_COL)
};
#undef STATS_COL
#define STATS_NCOLS (sizeof stats_cols / sizeof stats_cols[0])

/* One row per topic, one column per counter, each as wide as it needs. */
static void stats_print_topics(topic_row_t *rows, size_t n)
{
    int w[STATS_NCOLS + 1];

    w[0] = 5;
    for (size_t c = 0; c < STATS_NCOLS; c++)
        w[c + 1] = (int)strlen(stats_cols[c]);
    for (size_t i = 0; i < n; i++) {
        if ((int)strlen(rows[i].name) > w[0])
            w[0] = (int)strlen(rows[i].name);
        for (size_t c = 0; c < STATS_NCOLS; c++) {
            size_t vl = 0;
            if (stats_value(rows[i].body, rows[i].len, stats_cols[c], &vl) && (int)vl > w[c + 1])
                w[c + 1] = (int)vl;
        }
    }
    printf("\n%-*s", w[0], "topic");
    for (size_t c = 0; c < STATS_NCOLS; c++)
        printf("  %*s", w[c + 1], stats_cols[c]);
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        printf("%-*s", w[0], rows[i].name);
        for (size_t c = 0; c < STATS_NCOLS; c++) {
            size_t vl = 0;
            const char *v = stats_value(rows[i].body, rows[i].len, stats_cols[c], &vl);
            printf("  %*.*s", w[c + 1], v ? (int)vl : 1, v ? v : "-");
        }
        putchar('\n');
    }
}

/* The topic overview under the server counters: ask STATS for every topic
 * in one pipeline. */
static int stats_topics_table(const cli_t *cli, client_t *c)
{
    proto_reply_t r;
    topic_row_t *rows = NULL;
    size_t n = 0;
    int rc = -1;

    client_printf(c, "TOPICS\r\n");
    if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
        return -1;
    if (r.type != REPLY_TOPICS) {
        sluice_err_reply(cli, &r);
        return -1;
    }
    const char *p = r.body, *end = r.body + r.body_len;
    size_t lines = 0;
    for (const char *q = p; q < end; q++)
        lines += *q == '\n';
    rows = calloc(lines + 1, sizeof *rows);
    if (!rows)
        return -1;
    while (p < end && n <= lines) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p && (size_t)(le - p) <= PROTO_TOPIC_MAX) {
            memcpy(rows[n].name, p, (size_t)(le - p));
            n++;
        }
        p = le + 1;
    }
    for (size_t i = 0; i < n; i++)
        client_printf(c, "STATS %s\r\n", rows[i].name);
    for (size_t i = 0; i < n; i++) {
        if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
            goto out;
        if (r.type != REPLY_STATS)
            continue;  /* the topic went away meanwhile */
        rows[i].body = malloc(r.body_len + 1);
        if (!rows[i].body)
            goto out;
        memcpy(rows[i].body, r.body, r.body_len);
        rows[i].len = r.body_len;
    }
    if (n)
        stats_print_topics(rows, n);
    rc = 0;
out:
    for (size_t i = 0; i < n; i++)
        free(rows[i].body);
    free(rows);
    return rc;
}

/* A STATS body indented under a YAML key (the node), so that several
 * nodes' bodies make one document. */
static void stats_print_indented(const char *body, size_t len)
{
    const char *p = body, *end = body + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl + 1 : end;
        printf("  %.*s", (int)(le - p), p);
        p = le;
    }
    if (len && end[-1] != '\n')
        putchar('\n');
}

/* One topic's counters, from its owner. */
static int stats_topic(const cli_t *cli, const char *topic, bool yaml)
{
    client_t *c = NULL;
    proto_reply_t r;
    int rc = 1;

    if (sluice_exchangef(cli, &c, topic, &r, SLUICE_QUICK_MS, "STATS %s\r\n", topic) < 0)
        goto out;
    if (r.type != REPLY_STATS) {
        sluice_err_reply(cli, &r);
        goto out;
    }
    rc = 0;
    if (yaml)
        fwrite(r.body, 1, r.body_len, stdout);
    else
        stats_print_pairs(r.body, r.body_len);
out:
    client_free(c);
    return rc;
}

/* One node's server counters (and, on a terminal, its topic table);
 * `label` (NULL for a lone server) names its section. 0 or 1. */
static int stats_server(const cli_t *cli, const char *addr, const char *label, bool yaml,
                        bool first)
{
    client_t *c = sluice_connect(cli, addr);
    proto_reply_t r;
    int rc = 1;

    if (!c)
        return 1;
    client_printf(c, "STATS\r\n");
    if (sluice_reply(cli, c, &r, SLUICE_QUICK_MS) < 0)
        goto out;
    if (r.type != REPLY_STATS) {
        sluice_err_reply(cli, &r);
        goto out;
    }
    rc = 0;
    if (yaml && label) {
        printf("\"%s\":\n", label);  /* node addresses hold no '"' or '\\' */
        stats_print_indented(r.body, r.body_len);
        goto out;
    }
    if (yaml) {
        fwrite(r.body, 1, r.body_len, stdout);
        goto out;
    }
    if (label)
        printf("%s== %s ==\n", first ? "" : "\n", label);
    stats_print_pairs(r.body, r.body_len);
    if (stats_topics_table(cli, c) < 0)
        rc = 1;
out:
    client_free(c);
    return rc;
}

int sluice_stats(cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        { "yaml", no_argument, NULL, 'y' },
        SLUICE_CONN_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    bool yaml = !isatty(STDOUT_FILENO);
    int o;

    while ((o = sluice_getopt(cli, argc, argv, "y" SLUICE_CONN_SHORT, opts)) != -1) {
        switch (o) {
        case 'y': yaml = true; break;
        default:
            return sluice_bad_option();
        }
    }
    if (argc - optind > 1)
        return sluice_usage_err(cli, "unexpected argument '%s'", argv[optind + 1]);
    const char *topic = optind < argc ? argv[optind] : NULL;
    if (topic && !proto_topic_valid(topic, strlen(topic)))
        return sluice_usage_err(cli, "bad topic name '%s'", topic);
    int rc = sluice_resolve(cli);
    if (rc != 0)
        return rc;
    if (topic)
        return stats_topic(cli, topic, yaml);
    /* every node: one section each, named, when there are several */
    for (size_t i = 0; i < cli->nodes.n; i++) {
        const char *label = cli->nodes.n > 1 ? cli->nodes.v[i] : NULL;
        if (stats_server(cli, cli->nodes.v[i], label, yaml, i == 0) != 0)
            rc = 1;
    }
    return rc;
}
