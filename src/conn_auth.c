/* conn_auth.c: who a native connection is and what it may do: AUTH (with
 * its constant-time compare and the delayed answer to a wrong guess), the
 * ACL check for a command's topic, and the SUBs remembered so a reload can
 * end those the new rights no longer allow. Split from conn.c, whose hot
 * path calls only conn_may here.
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conn.h"
#include "conn_int.h"
#include "log.h"

#define CONN_AUTH_DELAY_MS 250     /* a failed AUTH is answered this long after it came */

/* ---- permissions ---- */

/* May `u` (NULL: not authenticated) do `type` on topic under cfg? */
bool conn_allowed(const config_t *cfg, const user_entry_t *u, proto_cmd_type_t type,
                         const char *topic, size_t tlen)
{
    if (cfg->nusers == 0)
        return true;
    if (u == NULL)
        return false;
    return config_user_allows(u, type == CMD_PUB, topic, tlen);
}

bool conn_may(const conn_t *c, proto_cmd_type_t type, const char *topic, size_t tlen)
{
    return conn_allowed(conn_cfg(c), c->user, type, topic, tlen);
}

/* Constant-time: the time taken depends on the length of the guess only,
 * never on where it differs from the secret, nor on the secret's length.
 * The secret is never empty (the config refuses empty passwords). */
static bool conn_secret_equal(const char *secret, size_t slen, const char *guess, size_t glen)
{
    unsigned char diff = (unsigned char)(slen != glen);

    for (size_t i = 0; i < glen; i++)
        diff |= (unsigned char)(guess[i] ^ secret[i % slen]);
    return diff == 0;
}

static bool conn_password_ok(const user_entry_t *u, const char *pass, size_t plen)
{
    char given[1024];
    struct crypt_data cd;
    const char *hash;

    if (u->password[0] != '$')
        return conn_secret_equal(u->password, strlen(u->password), pass, plen);
    if (plen >= sizeof given)
        return false;
    memcpy(given, pass, plen);
    given[plen] = '\0';
    memset(&cd, 0, sizeof cd);
    hash = crypt_r(given, u->password, &cd);
    explicit_bzero(given, sizeof given);
    if (hash == NULL || hash[0] == '*') {
        explicit_bzero(&cd, sizeof cd);
        return false;
    }
    bool ok = conn_secret_equal(u->password, strlen(u->password), hash, strlen(hash));
    explicit_bzero(&cd, sizeof cd);
    return ok;
}

/* The delay is over: answer, then go on with what the client sent after. */
static void conn_on_auth_delay(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;

    (void)fd;
    (void)what;
    conn_reply_lit(c, "-NOAUTH invalid username or password\r\n");
    conn_set_state(c, CONN_READING);
    conn_update_reading(c);
    if ((c->in_off < c->in_len || c->peer_eof) && !c->host->draining)
        event_active(c->rev, EV_READ, 0);
}

/* A wrong guess is answered CONN_AUTH_DELAY_MS after the AUTH arrived,
 * however long the check took, from a timer: the loop serves everyone
 * else meanwhile, and this connection, which reads nothing until then,
 * can try at most a few passwords a second. */
static void conn_auth_refuse(conn_t *c, uint64_t started)
{
    uint64_t spent = clock_ms() - started;
    uint64_t left = spent < CONN_AUTH_DELAY_MS ? CONN_AUTH_DELAY_MS - spent : 0;
    struct timeval tv = clock_tv(left);

    if (c->auth_delay == NULL)
        c->auth_delay = evtimer_new(c->host->base, conn_on_auth_delay, c);
    if (c->auth_delay == NULL || evtimer_add(c->auth_delay, &tv) != 0) {
        conn_reply_lit(c, "-NOAUTH invalid username or password\r\n");
        return;
    }
    conn_set_state(c, CONN_DELAYED);
}

void conn_cmd_auth(conn_t *c, const proto_cmd_t *cmd)
{
    const config_t *cfg = conn_cfg(c);
    uint64_t started = clock_ms();
    char who[96];

    if (cfg->nusers == 0) {
        conn_reply_lit(c, "-ERR AUTH is not enabled (no users are configured)\r\n");
        return;
    }
    for (size_t i = 0; i < cfg->nusers; i++) {
        const user_entry_t *u = &cfg->users[i];
        if (strlen(u->name) != cmd->user_len || memcmp(u->name, cmd->user, cmd->user_len) != 0)
            continue;
        if (!conn_password_ok(u, cmd->pass, cmd->pass_len))
            break;
        c->user = u;
        log_info("%s authenticated as '%s'", c->peer, u->name);
        conn_reply_lit(c, "+OK\r\n");
        return;
    }
    /* The name is escaped (it is the client's bytes); the password is
     * never written anywhere. A failed AUTH keeps the earlier login. */
    log_warn("auth failed for user '%s' from %s",
             log_escape(who, sizeof who, cmd->user, cmd->user_len), c->peer);
    conn_auth_refuse(c, started);
}

/* ---- subscriptions, remembered so a reload can re-check them ---- */

static ssize_t conn_sub_find(const conn_t *c, const char *topic, size_t tlen)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (strlen(c->subs[i]) == tlen && memcmp(c->subs[i], topic, tlen) == 0)
            return (ssize_t)i;
    return -1;
}

/* Kept even without users: a reload may add them. A failed allocation
 * only means a reload cannot end this SUB. */
void conn_sub_add(conn_t *c, const char *topic, size_t tlen)
{
    char **v, *name;

    if (conn_sub_find(c, topic, tlen) >= 0)
        return;
    name = strndup(topic, tlen);
    v = realloc(c->subs, (c->nsubs + 1) * sizeof *v);
    if (name == NULL || v == NULL) {
        free(name);
        if (v != NULL)
            c->subs = v;
        return;
    }
    c->subs = v;
    c->subs[c->nsubs++] = name;
}

void conn_sub_remove(conn_t *c, size_t i)
{
    free(c->subs[i]);
    c->subs[i] = c->subs[--c->nsubs];
}

void conn_sub_forget(conn_t *c, const char *topic, size_t tlen)
{
    ssize_t i = conn_sub_find(c, topic, tlen);

    if (i >= 0)
        conn_sub_remove(c, (size_t)i);
}

/* A reload changed who this is or what they may do: SUBs no longer
 * allowed end now, so revoking a right stops the messages too. */
void conn_sub_recheck(conn_t *c, const config_t *cfg)
{
    for (size_t i = 0; i < c->nsubs;) {
        const char *t = c->subs[i];
        size_t tlen = strlen(t);
        if (conn_allowed(cfg, c->user, CMD_SUB, t, tlen)) {
            i++;
            continue;
        }
        log_info("%s (user '%s') may no longer subscribe to '%s': its SUB ends", c->peer,
                 c->user && c->user->name[0] ? c->user->name : "-", t);
        broker_unsubscribe(c->client, t, tlen);
        conn_sub_remove(c, i);
    }
}
