/* check_addr.c: unit tests of the address parser (src/addr.c): every form
 * each caller accepts, every reason for refusing one, the sockaddr it fills
 * for bind, which addresses are loopback, and that the config loader still
 * reports a bad address at its FILE:LINE:COL.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"
#include "config.h"

/* s parses under `allow`; a is the result. */
#define ck_addr_ok(s, allow, a)                                                            \
    do {                                                                                   \
        const char *why_ = addr_parse((s), (allow), (a));                                  \
        ck_assert_msg(why_ == NULL, "'%s' refused: %s", (s), why_);                        \
    } while (0)

/* s is refused under `allow` for exactly the reason `want`. */
#define ck_addr_bad(s, allow, want)                                                        \
    do {                                                                                   \
        addr_t a_;                                                                         \
        const char *why_ = addr_parse((s), (allow), &a_);                                  \
        ck_assert_msg(why_ != NULL, "'%s' accepted", (s));                                 \
        ck_assert_str_eq(why_, (want));                                                    \
    } while (0)

START_TEST(test_tcp_forms)
{
    addr_t a;

    ck_addr_ok("127.0.0.1:7700", 0, &a);
    ck_assert_int_eq(a.kind, ADDR_KIND_TCP);
    ck_assert(!a.tls);
    ck_assert_str_eq(a.host, "127.0.0.1");
    ck_assert_uint_eq(a.port, 7700);

    ck_addr_ok("redis.example.com:6379", ADDR_REDIS, &a);
    ck_assert_str_eq(a.host, "redis.example.com");
    ck_assert_uint_eq(a.port, 6379);

    ck_addr_ok("localhost:1", ADDR_REDIS, &a);
    ck_assert_str_eq(a.host, "localhost");
    ck_assert_uint_eq(a.port, 1);

    ck_addr_ok("my_host-1.lan:65535", 0, &a);
    ck_assert_str_eq(a.host, "my_host-1.lan");
    ck_assert_uint_eq(a.port, 65535);

    ck_addr_ok("[::1]:7700", 0, &a);
    ck_assert_str_eq(a.host, "::1");
    ck_assert_uint_eq(a.port, 7700);

    ck_addr_ok("[::]:0", ADDR_LISTEN, &a);
    ck_assert_str_eq(a.host, "::");
    ck_assert_uint_eq(a.port, 0);

    ck_addr_ok("[::ffff:127.0.0.1]:9", 0, &a);
    ck_assert_str_eq(a.host, "::ffff:127.0.0.1");

    ck_addr_ok("[fe80::1%eth0]:80", 0, &a);
    ck_assert_str_eq(a.host, "fe80::1%eth0");
    ck_assert_uint_eq(a.port, 80);

    ck_addr_ok("0.0.0.0:0", ADDR_ADMIN, &a);
    ck_assert_uint_eq(a.port, 0);
}
END_TEST

START_TEST(test_unix_and_tls)
{
    addr_t a;
    char s[200], path[ADDR_PATH_MAX + 8];

    ck_addr_ok("unix:/run/sluice/sluiced.sock", ADDR_LISTEN, &a);
    ck_assert_int_eq(a.kind, ADDR_KIND_UNIX);
    ck_assert_str_eq(a.path, "/run/sluice/sluiced.sock");
    ck_assert(!a.tls);

    ck_addr_ok("tls://broker.example.com:7443", ADDR_LISTEN, &a);
    ck_assert_int_eq(a.kind, ADDR_KIND_TCP);
    ck_assert(a.tls);
    ck_assert_str_eq(a.host, "broker.example.com");
    ck_assert_uint_eq(a.port, 7443);

    ck_addr_ok("tls://[::]:0", ADDR_LISTEN, &a);
    ck_assert(a.tls);
    ck_assert_str_eq(a.host, "::");

    /* 107 bytes fit in sun_path with its NUL; 108 do not. */
    memset(path, 'a', sizeof path);
    path[0] = '/';
    snprintf(s, sizeof s, "unix:%.107s", path);
    ck_addr_ok(s, ADDR_UNIX, &a);
    ck_assert_uint_eq(strlen(a.path), 107);
    snprintf(s, sizeof s, "unix:%.108s", path);
    ck_addr_bad(s, ADDR_UNIX, "unix socket path is longer than 107 bytes");
    snprintf(s, sizeof s, "unix:%.108s", path + 1);
    ck_addr_bad(s, ADDR_UNIX | ADDR_REL_PATH, "unix socket path is longer than 107 bytes");

    ck_addr_bad("unix:/x", 0, "unix sockets are not allowed here");
    ck_addr_bad("unix:/x", ADDR_ADMIN, "unix sockets are not allowed here");
    ck_addr_bad("unix:run/s.sock", ADDR_LISTEN, "unix socket path must be absolute");
    ck_addr_bad("unix:", ADDR_UNIX, "unix socket path must be absolute");
    ck_addr_bad("unix:", ADDR_UNIX | ADDR_REL_PATH, "empty unix socket path");
    ck_addr_bad("tls://h:1", ADDR_ADMIN, "tls:// is not allowed here");
    ck_addr_bad("tls://h:1", ADDR_REDIS, "tls:// is not allowed here");
    /* TLS is for TCP listeners: after tls:// comes host:port, never a path. */
    ck_addr_bad("tls://unix:/x", ADDR_LISTEN, "port must be a number");
    ck_addr_bad("tls://", ADDR_LISTEN, "missing :port");
    ck_addr_bad("tls://tls://h:1", ADDR_LISTEN, "IPv6 addresses need brackets, as in [::1]:7700");
}
END_TEST

START_TEST(test_errors)
{
    char longhost[300];
    addr_t a;

    ck_addr_bad("", ADDR_LISTEN, "empty");
    ck_addr_bad("localhost", ADDR_REDIS, "missing :port");
    ck_addr_bad(":7700", ADDR_LISTEN, "missing host");
    ck_addr_bad("h:", ADDR_LISTEN, "port must be a number");
    ck_addr_bad("h:12a", ADDR_LISTEN, "port must be a number");
    ck_addr_bad("h:+80", ADDR_LISTEN, "port must be a number");
    ck_addr_bad("h: 80", ADDR_LISTEN, "port must be a number");
    ck_addr_bad("h:-1", ADDR_LISTEN, "port must be a number");
    ck_addr_bad("h:0", ADDR_REDIS, "port must be 1..65535");
    ck_addr_bad("h:65536", ADDR_REDIS, "port must be 1..65535");
    ck_addr_bad("h:65536", ADDR_LISTEN, "port must be 0..65535");
    ck_addr_bad("h:000080", ADDR_LISTEN, "port must be 0..65535");
    ck_addr_bad("::1:7700", ADDR_LISTEN, "IPv6 addresses need brackets, as in [::1]:7700");
    ck_addr_bad("ho st:1", ADDR_LISTEN, "bad character in host");
    ck_addr_bad("h\xc3\xa9:1", ADDR_LISTEN, "bad character in host");
    ck_addr_bad("[::1", ADDR_LISTEN, "unterminated or empty [v6] address");
    ck_addr_bad("[]:1", ADDR_LISTEN, "unterminated or empty [v6] address");
    ck_addr_bad("[::1]7700", ADDR_LISTEN, "missing :port");
    ck_addr_bad("[::1]", ADDR_LISTEN, "missing :port");
    ck_addr_bad("[::1]:", ADDR_LISTEN, "port must be a number");
    ck_addr_bad("[zz::1]:1", ADDR_LISTEN, "bad character in [v6] address");
    ck_addr_bad("[1.2.3.4]:1", ADDR_LISTEN, "bad [v6] address");
    ck_addr_bad("[fe80::1%]:1", ADDR_LISTEN, "empty zone in [v6] address");
    ck_addr_bad("[fe80::1%e/0]:1", ADDR_LISTEN, "bad zone in [v6] address");

    memset(longhost, 'h', sizeof longhost);
    memcpy(longhost + 256, ":1", 3);
    ck_addr_bad(longhost, ADDR_REDIS, "host is longer than 255 bytes");
    memcpy(longhost + 255, ":1", 3);
    ck_addr_ok(longhost, ADDR_REDIS, &a);
    ck_assert_uint_eq(strlen(a.host), 255);
}
END_TEST

/* What `sluice -s` takes on top of the file's forms. */
START_TEST(test_client_forms)
{
    addr_t a;

    ck_addr_ok("10.0.0.5:7700", ADDR_CLIENT, &a);
    ck_assert_str_eq(a.host, "10.0.0.5");
    ck_assert_uint_eq(a.port, 7700);

    ck_addr_ok("broker", ADDR_CLIENT, &a); /* port left to the caller */
    ck_assert_str_eq(a.host, "broker");
    ck_assert_uint_eq(a.port, 0);

    ck_addr_ok(":7701", ADDR_CLIENT, &a);
    ck_assert_str_eq(a.host, "127.0.0.1");
    ck_assert_uint_eq(a.port, 7701);

    ck_addr_ok("", ADDR_CLIENT, &a);
    ck_assert_str_eq(a.host, "127.0.0.1");
    ck_assert_uint_eq(a.port, 0);

    ck_addr_ok("[::1]", ADDR_CLIENT, &a);
    ck_assert_str_eq(a.host, "::1");
    ck_assert_uint_eq(a.port, 0);

    ck_addr_ok("::1", ADDR_CLIENT, &a); /* bare IPv6: no port possible */
    ck_assert_str_eq(a.host, "::1");
    ck_assert_uint_eq(a.port, 0);

    ck_addr_ok("fe80::1%eth0", ADDR_CLIENT, &a);
    ck_assert_str_eq(a.host, "fe80::1%eth0");

    ck_addr_ok("unix:sluiced.sock", ADDR_CLIENT, &a);
    ck_assert_int_eq(a.kind, ADDR_KIND_UNIX);
    ck_assert_str_eq(a.path, "sluiced.sock");

    ck_addr_bad("h:0", ADDR_CLIENT, "port must be 1..65535");
    ck_addr_bad("h:", ADDR_CLIENT, "port must be a number");
    ck_addr_bad("[::1]x", ADDR_CLIENT, "missing :port");
    ck_addr_bad("[]", ADDR_CLIENT, "unterminated or empty [v6] address");
    ck_addr_bad("unix:", ADDR_CLIENT, "empty unix socket path");
    ck_addr_bad("tls://h:1", ADDR_CLIENT, "tls:// is not allowed here");
    ck_addr_bad("zz::1", ADDR_CLIENT, "bad character in [v6] address");
}
END_TEST

/* s, parsed as a listener, binds to family/ip/port. */
static void ck_sockaddr(const char *s, int family, const char *ip, unsigned port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    addr_t a;
    char got[INET6_ADDRSTRLEN] = "";
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    bool v6 = family == AF_INET6;

    ck_addr_ok(s, ADDR_LISTEN, &a);
    ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), 0);
    ck_assert_int_eq(ss.ss_family, family);
    ck_assert_uint_eq(len, v6 ? sizeof *in6 : sizeof *in);
    const void *bytes = v6 ? (const void *)&in6->sin6_addr : (const void *)&in->sin_addr;
    unsigned got_port = ntohs(v6 ? in6->sin6_port : in->sin_port);
    inet_ntop(family, bytes, got, sizeof got);
    ck_assert_str_eq(got, ip);
    ck_assert_uint_eq(got_port, port);
}

START_TEST(test_sockaddr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    addr_t a;

    ck_sockaddr("127.0.0.1:7700", AF_INET, "127.0.0.1", 7700);
    ck_sockaddr("localhost:0", AF_INET, "127.0.0.1", 0);
    ck_sockaddr("tls://[::1]:7443", AF_INET6, "::1", 7443);
    ck_sockaddr("[::ffff:10.0.0.1]:1", AF_INET6, "::ffff:10.0.0.1", 1);

    ck_addr_ok("unix:/tmp/s.sock", ADDR_LISTEN, &a);
    ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), 0);
    ck_assert_int_eq(ss.ss_family, AF_UNIX);
    ck_assert_uint_eq(len, sizeof(struct sockaddr_un));
    ck_assert_str_eq(((struct sockaddr_un *)&ss)->sun_path, "/tmp/s.sock");

    /* Only numbers can be bound: a name is for getaddrinfo or hiredis. */
    ck_addr_ok("broker.example.com:7700", ADDR_LISTEN, &a);
    ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), -1);
    ck_addr_ok("256.1.1.1:1", ADDR_LISTEN, &a);
    ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), -1);
    ck_addr_ok("[1:2]:3", ADDR_LISTEN, &a);
    ck_assert_int_eq(addr_sockaddr(&a, &ss, &len), -1);
}
END_TEST

/* The loader words a bad address the same and places it at FILE:LINE:COL. */
/* s parses under `allow`, and addr_loopback says `want` of it. */
static void ck_loopback(const char *s, unsigned allow, bool want)
{
    addr_t a;

    ck_addr_ok(s, allow, &a);
    ck_assert_msg(addr_loopback(&a) == want, "'%s': loopback should be %d", s, want);
}

/* What sluiced's "beyond loopback" warnings are decided on. */
START_TEST(test_loopback)
{
    ck_loopback("127.0.0.1:7700", ADDR_LISTEN, true);
    ck_loopback("127.1.2.3:0", ADDR_LISTEN, true);
    ck_loopback("tls://127.0.0.1:7700", ADDR_LISTEN, true);
    ck_loopback("[::1]:7700", ADDR_LISTEN, true);
    ck_loopback("[::ffff:127.0.0.9]:7700", ADDR_LISTEN, true);
    ck_loopback("localhost:7700", ADDR_LISTEN, true);
    ck_loopback("unix:/run/sluice.sock", ADDR_LISTEN, true);
    ck_loopback("0.0.0.0:7700", ADDR_LISTEN, false);
    ck_loopback("tls://0.0.0.0:7700", ADDR_LISTEN, false);
    ck_loopback("[::]:7700", ADDR_LISTEN, false);
    ck_loopback("192.168.1.20:7700", ADDR_LISTEN, false);
    ck_loopback("[fe80::1%lo]:7700", ADDR_LISTEN, false); /* a zone: not an address libevent takes */
    ck_loopback("[::ffff:10.0.0.1]:7700", ADDR_LISTEN, false);
    ck_loopback("128.0.0.1:7700", ADDR_LISTEN, false);
    ck_loopback("broker.example:7700", ADDR_LISTEN, false); /* a name is never resolved */
    ck_loopback("0.0.0.0:7701", ADDR_ADMIN, false);
}
END_TEST

START_TEST(test_config_positions)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"listen:\n  - 127.0.0.1:0\n  - \"[::1\"\n",
         "t.yaml:3:5: bad listen address '[::1': unterminated or empty [v6] address "
         "(use host:port, [v6]:port, unix:/path or tls://host:port)"},
        {"listen: [tls://unix:/x]\n",
         "t.yaml:1:10: bad listen address 'tls://unix:/x': port must be a number"},
        {"admin:\n  listen: \"h:65536\"\n",
         "t.yaml:2:11: bad address 'h:65536' for listen: port must be 0..65535 "
         "(use host:port, [v6]:port, or \"\" for off)"},
        {"redis:\n  enabled: true\n  address: \"unix:\"\n",
         "t.yaml:3:12: bad address 'unix:' for address: unix socket path must be absolute "
         "(use host:port, [v6]:port or unix:/path)"},
        {"redis: {address: \"h:x\"}\n",
         "t.yaml:1:18: bad address 'h:x' for address: port must be a number"},
    };
    char err[CONFIG_ERR_MAX];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_t *c = config_load_string("t.yaml", cases[i].yaml, strlen(cases[i].yaml), err,
                                         sizeof err);
        ck_assert_msg(c == NULL, "accepted: %s", cases[i].yaml);
        ck_assert_msg(strncmp(err, cases[i].want, strlen(cases[i].want)) == 0,
                      "got '%s', want '%s'", err, cases[i].want);
    }
}
END_TEST

static Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_tcp_forms);
    tcase_add_test(tc, test_unix_and_tls);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_client_forms);
    tcase_add_test(tc, test_sockaddr);
    tcase_add_test(tc, test_loopback);
    tcase_add_test(tc, test_config_positions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(addr_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
