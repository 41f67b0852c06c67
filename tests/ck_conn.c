/* ck_conn.c: Check assertions over the harness's daemons and connections
 * (see ck_conn.h).
 */
#include "ck_conn.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ck_start(sd_t *d, const char *yaml)
{
    ck_assert_msg(sd_start(d, yaml) == 0, "sluiced did not start with:\n%s", yaml);
}

tc_t *ck_open(const sd_t *d)
{
    tc_t *c = tc_open(d);
    ck_assert_ptr_nonnull(c);
    return c;
}

void ck_send(tc_t *c, const char *s)
{
    ck_assert_int_eq(tc_send(c, s, strlen(s)), 0);
}

void ck_expect(tc_t *c, const char *want)
{
    const char *got = tc_reply_line(c);
    ck_assert_msg(got != NULL, "no reply (wanted \"%s\")", want);
    ck_assert_str_eq(got, want);
}

void ck_expect_prefix(tc_t *c, const char *prefix)
{
    const char *got = tc_reply_line(c);
    ck_assert_msg(got != NULL, "no reply (wanted \"%s...\")", prefix);
    ck_assert_msg(strncmp(got, prefix, strlen(prefix)) == 0, "got \"%s\", wanted \"%s...\"", got,
                  prefix);
}

int ck_sluice(char **out, const char *addr, const char *redirect, const char *fmt, va_list ap)
{
    char args[4096], line[4200];

    vsnprintf(args, sizeof args, fmt, ap);
    snprintf(line, sizeof line, "-s %s %s %s", addr, args, redirect);
    return ck_sluice_line(out, "", line);
}

int ck_sluice_line(char **out, const char *env, const char *args)
{
    char cmd[8192];
    int status = -1;

    snprintf(cmd, sizeof cmd, "%s '%s' %s", env, sd_bin("SLUICE", "../src/sluice"), args);
    char *o = run_capture(cmd, &status);
    ck_assert_ptr_nonnull(o);
    if (out)
        *out = o;
    else
        free(o);
    return status;
}
