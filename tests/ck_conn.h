/* ck_conn.h: Check assertions over the harness's daemons, connections and
 * the sluice client, for the integration tests that share them: a failed
 * start, connection, reply or run fails the test with what was wanted.
 */
#ifndef SLUICE_CK_CONN_H
#define SLUICE_CK_CONN_H

#include <stdarg.h>

#include "harness.h"

/* Start sluiced with yaml, or fail the test showing the config. */
void ck_start(sd_t *d, const char *yaml);

/* Open a connection to d, or fail the test. */
tc_t *ck_open(const sd_t *d);

/* Send the whole NUL-terminated s, or fail the test. */
void ck_send(tc_t *c, const char *s);

/* The next reply's first line is exactly want / starts with prefix. */
void ck_expect(tc_t *c, const char *want);
void ck_expect_prefix(tc_t *c, const char *prefix);

/* Run `sluice -s ADDR ARGS REDIRECT` through the shell, ARGS formatted from
 * fmt/ap and REDIRECT e.g. "2>&1" or "". Its stdout goes to *out (freed by
 * the caller; with out NULL it is dropped); returns its wait status. */
int ck_sluice(char **out, const char *addr, const char *redirect, const char *fmt, va_list ap);

/* Run `ENV sluice ARGS` through the shell (ENV: a prefix such as
 * "NAME=value" or "env -u NAME", or ""); stdout and the status as above. */
int ck_sluice_line(char **out, const char *env, const char *args);

#endif
