/* top.c: `sluice top`, a live view of a broker or of every node of a
 * cluster: every interval it reads STATS, TOPICS and STATS <topic> for
 * each topic over one connection per node, and redraws the frame
 * topview.c renders (a NODE column with several nodes, whose server
 * counters add up in the header). The terminal is put in a raw mode
 * (no echo, key by key) on the alternate screen and given back as it was
 * on every way out: q, Ctrl-C, SIGTERM/SIGHUP, a lost connection, a crash
 * signal, and around Ctrl-Z.
 */
#include "top.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "topview.h"

#define TOP_REPLY_MS 10000     /* a broker slower than this to answer is gone */
#define TOP_STEP_MS 100        /* how often a wait looks at the stop flag */

/* Alternate screen and hidden cursor in; cursor and main screen back. */
static const char top_enter_seq[] = "\033[?1049h\033[?25l\033[H\033[2J";
static const char top_leave_seq[] = "\033[?25h\033[?1049l";

const char top_usage_text[] =
    "usage: sluice top [-i SECONDS] [-o KEY] [--once] [-s ADDR | --nodes LIST] [-u USER]\n"
    "                  [--tls ...]\n"
    "  -i, --interval SECONDS  refresh every SECONDS (default 1; 0.1 to 3600)\n"
    "  -o, --sort KEY          name, ready, delayed, inflight, parked, consumers,\n"
    "                          pub, ack, dead or bytes (default: name)\n"
    "      --once              print one frame (after one interval, for the rates)\n"
    "                          and exit; no escape codes when stdout is not a terminal\n"
    "Keys: q quit; n r d f k c p a x b sort by that column (again: reverse);\n"
    "      < > previous/next column; i reverse the order.\n"
    "-s, --nodes, --config, -u, --tls, --ca, --cert, --key: as for every command\n"
    "(sluice --help); with a node list, every node's topics and a NODE column.\n";

/* The terminal, as found and as changed; read by the signal handlers. */
static struct termios top_saved;
static volatile sig_atomic_t top_raw;      /* raw mode is on: restore on the way out */
static volatile sig_atomic_t top_stop_sig; /* SIGINT/SIGTERM/SIGHUP came */
static volatile sig_atomic_t top_resized;  /* SIGWINCH, or back from Ctrl-Z: redraw */

typedef struct top {
    client_t **c;           /* one connection per node */
    const char *const *addrs;
    size_t n;
    char err[CLIENT_ERR_MAX + 64]; /* why it stopped, said once the terminal is back */
    char label[32];         /* "3 nodes", for the header */
    tv_view_t view;
    tv_sample_t cur, prev;  /* prev: the sample on screen, until the next */
    tv_buf_t frame;
} top_t;

/* ---- the terminal ---- */

/* Write all of s; async-signal-safe, for the handlers too. */
static void top_write(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = write(STDOUT_FILENO, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

/* Give the terminal back. Async-signal-safe and idempotent. */
static void top_term_restore(void)
{
    if (!top_raw)
        return;
    top_raw = 0;
    top_write(top_leave_seq, sizeof top_leave_seq - 1);
    tcsetattr(STDIN_FILENO, TCSADRAIN, &top_saved);
}

/* Keys one at a time, no echo; signals (Ctrl-C, Ctrl-Z) still work, and
 * output processing stays so "\n" still returns the carriage. */
static int top_term_raw(void)
{
    struct termios raw = top_saved;

    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) < 0)
        return -1;
    top_raw = 1;
    top_write(top_enter_seq, sizeof top_enter_seq - 1);
    return 0;
}

static void top_on_stop(int sig)
{
    top_stop_sig = sig;
}

static void top_on_winch(int sig)
{
    (void)sig;
    top_resized = 1;
}

/* Ctrl-Z: leave the terminal usable while stopped, take it again after. */
static void top_on_tstp(int sig)
{
    int was_raw = top_raw;
    int saved_errno = errno;

    (void)sig;
    top_term_restore();
    kill(getpid(), SIGSTOP);
    if (was_raw && top_term_raw() == 0)
        top_resized = 1;
    errno = saved_errno;
}

/* A crash: restore, then die of the same signal (SA_RESETHAND). */
static void top_on_fatal(int sig)
{
    top_term_restore();
    raise(sig);
}

static void top_handle(int sig, void (*fn)(int), int flags)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

static void top_catch_signals(void)
{
    static const int stops[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++)
        top_handle(stops[i], top_on_stop, 0);
    top_handle(SIGWINCH, top_on_winch, SA_RESTART);
    top_handle(SIGTSTP, top_on_tstp, SA_RESTART);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        struct sigaction old;
        /* a sanitizer's own handler stays: it reports better than we would */
        if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            top_handle(fatal[i], top_on_fatal, (int)SA_RESETHAND);
    }
}

/* The window's size into the view; 80x24 if the terminal does not say. */
static void top_term_size(top_t *t)
{
    struct winsize ws;

    t->view.width = 80;
    t->view.height = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        t->view.width = ws.ws_col;
        t->view.height = ws.ws_row;
    }
}

/* ---- talking to the broker ---- */

/* The next reply on c, in steps short enough to notice a stop. 1, 0 when
 * stopped, -1 on error (in t->err, said after the terminal is restored). */
static int top_reply(top_t *t, client_t *c, proto_reply_t *r)
{
    double deadline = clock_s() + TOP_REPLY_MS / 1000.0;

    for (;;) {
        int k = client_next(c, r);
        if (k == 1)
            return 1;
        if (k < 0) {
            snprintf(t->err, sizeof t->err, "%s: not a sluice server reply", c->addr);
            return -1;
        }
        if (top_stop_sig)
            return 0;
        if (clock_s() > deadline) {
            snprintf(t->err, sizeof t->err, "%s: no reply in %d ms", c->addr, TOP_REPLY_MS);
            return -1;
        }
        if (client_step(c, TOP_STEP_MS, -1, NULL) < 0) {
            snprintf(t->err, sizeof t->err, "%s", c->err);
            return -1;
        }
    }
}

/* A reply of the wanted type, else -1 with the reason in t->err. */
static int top_expect(top_t *t, client_t *c, proto_reply_t *r, proto_reply_type_t want)
{
    int k = top_reply(t, c, r);

    if (k <= 0 || r->type == want)
        return k;
    char e[PROTO_ERR_MAX + 8] = "unexpected reply";
    if (r->type == REPLY_ERROR)
        client_reply_str(r, e, sizeof e);
    snprintf(t->err, sizeof t->err, "%s: %s", c->addr, e);
    return -1;
}

/* Queue STATS <name> for each valid name of a TOPICS body; how many. */
static size_t top_ask_topics(client_t *c, const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    size_t n = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (proto_topic_valid(p, (size_t)(le - p)) &&
            client_printf(c, "STATS %.*s\r\n", (int)(le - p), p) >= 0)
            n++;
        p = le + 1;
    }
    return n;
}

/* Read node i's part of a sample into s (its STATS and TOPICS were
 * sent): 1, 0 when stopped, -1 on error. */
static int top_sample_node(top_t *t, size_t i, tv_sample_t *s)
{
    client_t *c = t->c[i];
    proto_reply_t r;
    tv_server_t srv;
    int k;

    if ((k = top_expect(t, c, &r, REPLY_STATS)) <= 0)
        return k;
    if (tv_parse_server(r.body, r.body_len, &srv) < 0) {
        snprintf(t->err, sizeof t->err, "%s: STATS body not understood", c->addr);
        return -1;
    }
    tv_server_add(&s->srv, &srv, i == 0);
    if ((k = top_expect(t, c, &r, REPLY_TOPICS)) <= 0)
        return k;
    size_t n = top_ask_topics(c, r.body, r.body_len);
    for (size_t j = 0; j < n; j++) {
        if ((k = top_reply(t, c, &r)) <= 0)
            return k;
        if (r.type == REPLY_ERROR)
            continue;  /* the topic went away meanwhile */
        if (r.type != REPLY_STATS || tv_sample_add(s, r.body, r.body_len) < 0) {
            snprintf(t->err, sizeof t->err, "%s: topic STATS not understood", c->addr);
            return -1;
        }
        s->topics[s->n - 1].node = t->n > 1 ? t->addrs[i] : NULL;
    }
    return 1;
}

/* Read one sample of every node into s: 1, 0 when stopped, -1 on error. */
static int top_sample(top_t *t, tv_sample_t *s)
{
    tv_sample_clear(s);
    /* each node's requests go out before any reply is awaited */
    for (size_t i = 0; i < t->n; i++) {
        if (client_printf(t->c[i], "STATS\r\nTOPICS\r\n") < 0 || client_flush(t->c[i]) < 0) {
            snprintf(t->err, sizeof t->err, "%s: %s", t->addrs[i], t->c[i]->err);
            return -1;
        }
    }
    s->t = clock_s();
    for (size_t i = 0; i < t->n; i++) {
        int k = top_sample_node(t, i, s);
        if (k <= 0)
            return k;
    }
    return 1;
}

/* ---- the loop ---- */

static int top_draw(top_t *t, tv_sample_t *s)
{
    tv_sort(s, t->view.key, t->view.reverse);
    if (tv_render(&t->frame, s, &t->view) < 0) {
        snprintf(t->err, sizeof t->err, "out of memory");
        return -1;
    }
    top_write(t->frame.p, t->frame.len);
    return 0;
}

/* A key: false to quit. A sort key pressed again reverses the order. */
static bool top_key(top_t *t, int ch)
{
    tv_key_t k;

    if (ch == 'q' || ch == 'Q' || ch == 3)
        return false;
    if (ch == 'i') {
        t->view.reverse = !t->view.reverse;
    } else if (ch == '<' || ch == '>') {
        int d = ch == '>' ? 1 : TV_NKEYS - 1;
        t->view.key = (tv_key_t)(((int)t->view.key + d) % TV_NKEYS);
        t->view.reverse = false;
    } else if (tv_key_of_char(ch, &k)) {
        t->view.reverse = k == t->view.key ? !t->view.reverse : false;
        t->view.key = k;
    }
    return true;
}

/* Take keys until `until` (monotonic seconds), redrawing the frame on
 * screen when one changes the order or the window changes. 1 to go on,
 * 0 to quit, -1 on error. */
static int top_wait(top_t *t, double until)
{
    for (;;) {
        if (top_stop_sig)
            return 0;
        if (top_resized) {
            top_resized = 0;
            top_term_size(t);
            top_write("\033[2J", 4);
            if (top_draw(t, &t->prev) < 0)
                return -1;
        }
        double left = until - clock_s();
        if (left <= 0)
            return 1;
        struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
        int n = poll(&p, 1, (int)ceil(left * 1000));
        if (n <= 0)
            continue;  /* timeout, or a signal: look at the flags */
        char keys[64];
        ssize_t got = read(STDIN_FILENO, keys, sizeof keys);
        if (got == 0)
            return 0;  /* the terminal went away */
        bool changed = false;
        for (ssize_t i = 0; i < got; i++) {
            if (keys[i] == '\033')
                break;  /* an arrow or function key: not ours */
            if (!top_key(t, (unsigned char)keys[i]))
                return 0;
            changed = true;
        }
        if (changed && top_draw(t, &t->prev) < 0)
            return -1;
    }
}

static int top_live(top_t *t)
{
    if (tcgetattr(STDIN_FILENO, &top_saved) < 0 || top_term_raw() < 0) {
        fprintf(stderr, "sluice: top: terminal: %s\n", strerror(errno));
        return -1;
    }
    t->view.ansi = true;
    t->view.help = true;
    top_term_size(t);
    for (;;) {
        double next = clock_s() + t->view.interval;
        int k = top_sample(t, &t->cur);
        if (k <= 0)
            return k;
        tv_rates(&t->cur, &t->prev);
        if (top_draw(t, &t->cur) < 0)
            return -1;
        tv_sample_t on_screen = t->cur;
        t->cur = t->prev;
        t->prev = on_screen;
        if ((k = top_wait(t, next)) <= 0)
            return k;
    }
}

/* One frame, after one interval so that it has rates. */
static int top_once(top_t *t)
{
    if (isatty(STDOUT_FILENO))
        top_term_size(t);
    t->view.height = 0;  /* every topic */
    int k = top_sample(t, &t->prev);
    if (k <= 0)
        return k;
    double until = clock_s() + t->view.interval;
    while (!top_stop_sig && clock_s() < until)
        poll(NULL, 0, (int)ceil((until - clock_s()) * 1000));
    if (top_stop_sig || (k = top_sample(t, &t->cur)) <= 0)
        return top_stop_sig ? 0 : k;
    tv_rates(&t->cur, &t->prev);
    return top_draw(t, &t->cur);
}

/* ---- the way in ---- */

bool top_interval_parse(const char *s, double *out)
{
    char *end;

    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0.1 || v > 3600)
        return false;
    *out = v;
    return true;
}

int top_run(client_t **cs, const char *const *addrs, size_t n, const top_opts_t *o)
{
    top_t t = {.c = cs, .addrs = addrs, .n = n,
               .view = {.interval = o->interval, .addr = addrs[0], .key = o->key,
                        .node_col = n > 1}};

    if (n > 1) {
        snprintf(t.label, sizeof t.label, "%zu nodes", n);
        t.view.addr = t.label;
    }
    top_catch_signals();
    int k = o->once ? top_once(&t) : top_live(&t);
    top_term_restore();
    if (k < 0 && t.err[0])
        fprintf(stderr, "sluice: top: %s\n", t.err);
    int rc = k < 0 ? 1 : 0;
    if (top_stop_sig == SIGTERM || top_stop_sig == SIGHUP || top_stop_sig == SIGQUIT)
        rc = 128 + top_stop_sig;
    for (size_t i = 0; i < n; i++)
        client_free(cs[i]);
    tv_sample_free(&t.cur);
    tv_sample_free(&t.prev);
    tv_buf_free(&t.frame);
    return rc;
}
