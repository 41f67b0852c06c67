/* ck_conn.h: Check assertions over the harness's daemons and connections,
 * for the integration tests that share them (check_admin, check_auth): a
 * failed start, connection or reply fails the test with what was wanted.
 */
#ifndef SLUICE_CK_CONN_H
#define SLUICE_CK_CONN_H

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

#endif
