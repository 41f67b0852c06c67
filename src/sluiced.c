/* sluiced.c: the daemon's command line. Everything else is in daemon.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "version.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sluiced [-c FILE] [-l ADDR]... [-t] [-v] [--log-level LEVEL]\n"
            "  -c, --config FILE     config file (default %s if it exists,\n"
            "                        else built-in defaults: 127.0.0.1:7700, memory only)\n"
            "  -l, --listen ADDR     listen on ADDR instead of the file's list (repeatable):\n"
            "                        host:port, [v6]:port or unix:/path\n"
            "  -t, --test            check the config file and exit (0 ok, 78 bad)\n"
            "  -v, --verbose         log level debug\n"
            "      --log-level L     error | warn | info | debug\n"
            "      --version         print the version and exit\n"
            "  -h, --help            this text\n"
            "Signals: HUP reloads the config, TERM/INT shut down cleanly.\n",
            CONFIG_DEFAULT_PATH);
}

static int parse_level(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};

    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"test", no_argument, NULL, 't'},         {"verbose", no_argument, NULL, 'v'},
        {"log-level", required_argument, NULL, 'L'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    daemon_opts_t o = {.log_level = -1};
    int ch, rc;

    o.listen = calloc((size_t)argc, sizeof *o.listen);
    if (o.listen == NULL)
        return 1;
    while ((ch = getopt_long(argc, argv, "c:l:tvh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o.config_path = optarg;
            break;
        case 'l':
            o.listen[o.nlisten++] = optarg;
            break;
        case 't':
            o.test_only = true;
            break;
        case 'v':
            o.log_level = LOG_LEVEL_DEBUG;
            break;
        case 'L':
            o.log_level = parse_level(optarg);
            if (o.log_level < 0) {
                fprintf(stderr, "sluiced: bad log level '%s' (error, warn, info, debug)\n", optarg);
                free(o.listen);
                return 2;
            }
            break;
        case 'V':
            printf("sluiced %s\n", SLUICE_VERSION);
            free(o.listen);
            return 0;
        case 'h':
            usage(stdout);
            free(o.listen);
            return 0;
        default:
            usage(stderr);
            free(o.listen);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluiced: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        free(o.listen);
        return 2;
    }
    rc = daemon_run(&o);
    free(o.listen);
    return rc;
}
