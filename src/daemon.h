/* daemon.h: the life of sluiced: config, signals, systemd, the event loop. */
#ifndef SLUICE_DAEMON_H
#define SLUICE_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

typedef struct daemon_opts {
    const char *config_path; /* -c; NULL: CONFIG_DEFAULT_PATH if it exists, else built-in */
    char **listen;           /* -l (repeatable): replaces the file's listen list */
    size_t nlisten;
    int log_level;           /* -v/--log-level; -1: from the config */
    bool test_only;          /* -t: check the config and exit */
} daemon_opts_t;

/* Run the daemon until SIGTERM/SIGINT. Returns the process exit status:
 * 0, 78 (EX_CONFIG) for a bad config, 1 for other start-up failures. */
int daemon_run(const daemon_opts_t *opts);

#endif
