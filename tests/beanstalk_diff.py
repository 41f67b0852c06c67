#!/usr/bin/python3
"""tests/beanstalk_diff.py: whole beanstalk sessions, sluice against beanstalkd.

Seeded random scripts of beanstalk commands (put, reserve-with-timeout 0,
reserve-job, delete, release, bury, touch, kick, kick-job, the peeks,
stats-job, stats-tube, stats, use, watch, ignore, the lists, pause-tube 0,
quit and malformed input) over three connections are sent to a real
beanstalkd (the Debian package, socket-activated on a port this test binds)
and to a second server, each started fresh for every seed. The replies are
compared step by step after normalising what may differ between two correct
servers: job ids (each server's are numbered in order of first appearance),
stats-job's age and time-left, and the server-wide stats keys that describe
the process (pid, uptime, rusage, ...). The first difference of a seed is
printed with the script up to it, and the run fails.

  beanstalk_diff.py [--target beanstalkd|sluice] [--seeds N] [--seed S]
                    [--steps N] [--list-seeds]

With no options (as `make check` runs it) the target is
$BEANSTALK_DIFF_TARGET (default sluice), 25 seeds of 300 steps from a
fixed base seed; BEANSTALK_DIFF_SEEDS, BEANSTALK_DIFF_STEPS and
BEANSTALK_DIFF_SEED set the same from the environment (`make soak` runs it
long). Before the run, a beanstalkd whose max-job-size is one byte smaller
must be told apart from the reference, so the comparison can fail. Delays are long
(100 s and more) and TTRs at least a minute, so no job changes state by
itself during a script, and no result depends on timing. In CI (CI=true) a
missing beanstalkd is a failure, elsewhere a skip (77).

Deliberate differences between sluice and beanstalkd that a script can meet
are listed in DELIBERATE below and in docs/beanstalk.md; each is normalised
away by name, never silently.
"""
import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

MAX_JOB = 1000   # beanstalkd -z; sluice's limits.max_message
TUBES = ["default", "a", "b", "c-1"]
UNKNOWN_ID = 987654321
# `stats` keys that describe the session's work, not the process.
STATS_KEYS = {
    "current-jobs-urgent", "current-jobs-ready", "current-jobs-reserved",
    "current-jobs-delayed", "current-jobs-buried", "cmd-put", "cmd-peek",
    "cmd-peek-ready", "cmd-peek-delayed", "cmd-peek-buried", "cmd-reserve",
    "cmd-reserve-with-timeout", "cmd-delete", "cmd-release", "cmd-use",
    "cmd-watch", "cmd-ignore", "cmd-bury", "cmd-kick", "cmd-touch",
    "cmd-stats", "cmd-stats-job", "cmd-stats-tube", "cmd-list-tubes",
    "cmd-list-tube-used", "cmd-list-tubes-watched", "cmd-pause-tube",
    "job-timeouts", "total-jobs", "max-job-size", "current-tubes",
    "current-connections", "current-producers", "current-workers",
    "current-waiting", "total-connections",
}
# Deliberate differences (docs/beanstalk.md, "Deliberate differences"):
# name -> why. The normaliser below applies each by name.
DELIBERATE = {}


# ---- the servers ----

def free_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


class Beanstalkd:
    """beanstalkd -z MAX_JOB on a socket bound here (socket activation)."""
    name = "beanstalkd"

    def __init__(self, max_job=MAX_JOB):
        sock = free_listener()
        self.port = sock.getsockname()[1]
        fd = sock.fileno()

        def activate():
            if fd != 3:
                os.dup2(fd, 3)
            os.set_inheritable(3, True)
            os.environ["LISTEN_FDS"] = "1"
            os.environ["LISTEN_PID"] = str(os.getpid())
        self.proc = subprocess.Popen(["beanstalkd", "-z", str(max_job)], preexec_fn=activate,
                                     close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        sock.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Sluiced:
    """sluiced with a beanstalk listener on a free loopback port."""
    name = "sluice"

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="sluice-bdiff-")
        self.log = open(os.path.join(self.dir, "sluiced.log"), "w")
        for _ in range(20):
            s = free_listener()
            self.port = s.getsockname()[1]
            s.close()
            conf = os.path.join(self.dir, "sluiced.yaml")
            with open(conf, "w") as f:
                f.write("listen: [127.0.0.1:0]\nadmin: {listen: \"\"}\n"
                        f"limits: {{max_message: {MAX_JOB}B}}\n"
                        # beanstalkd never drops a job however often it is reserved
                        "defaults: {max_deliveries: 0}\n"
                        f"beanstalk: {{listen: [127.0.0.1:{self.port}]}}\n")
            env = dict(os.environ)
            env.pop("NOTIFY_SOCKET", None)
            # The port file says it listens; a probe connection of our own
            # would count in total-connections, which beanstalkd's does not.
            pf = os.path.join(self.dir, "ports")
            env["SLUICED_PORT_FILE"] = pf
            self.proc = subprocess.Popen([binary, "-c", conf], stderr=self.log, env=env,
                                         stdout=subprocess.DEVNULL)
            for _ in range(3000):
                if os.path.exists(pf) or self.proc.poll() is not None:
                    break
                time.sleep(0.01)
            if self.proc.poll() is None:
                return
            self.proc.wait(timeout=30)  # the port was taken meanwhile: another
        raise RuntimeError("sluiced did not start:\n" + self.logtext())

    def logtext(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-3000:]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the scripts: a list of (connection, kind, args) steps ----

def gen_pri(r):
    return r.choice([0, 1, 1023, 1024, 1024, 1024, 1025, 4294967295, r.randrange(0, 5000)])


def gen_ref(r, nputs, mine=0.0):
    """A job ordinal, mostly a recent one, or None for an id no server has;
    with probability `mine`, "mine": the job this connection reserved last."""
    if r.random() < mine:
        return "mine"
    if nputs == 0 or r.random() < 0.08:
        return None
    if r.random() < 0.6:
        return max(0, nputs - 1 - int(r.expovariate(0.5)))
    return r.randrange(nputs)


def gen_body(r):
    n = r.choice([0, 1, 5, 20, r.randrange(0, 200), MAX_JOB])
    alphabet = b"abcxyz 0129\r\n\x00\xff"
    return bytes(r.choice(alphabet) for _ in range(n))


def gen_script(seed, steps):
    r = random.Random(seed)
    script = []
    nputs = 0
    for _ in range(steps):
        c = r.randrange(3)
        x = r.random() * 100
        if x < 22:
            delay = 0 if r.random() < 0.85 else r.choice([100, 1000, 86400])
            ttr = r.choice([60, 120, 3600, 86400, 2592000, 4294967295])
            script.append((c, "put", (gen_pri(r), delay, ttr, gen_body(r))))
            nputs += 1
        elif x < 36:
            script.append((c, "line", ("reserve-with-timeout 0",)))
        elif x < 38:
            script.append((c, "job", ("reserve-job", gen_ref(r, nputs))))
        elif x < 45:
            script.append((c, "job", ("delete", gen_ref(r, nputs, 0.5))))
        elif x < 50:
            delay = 0 if r.random() < 0.8 else r.choice([100, 5000])
            script.append((c, "job", ("release", gen_ref(r, nputs, 0.5), gen_pri(r), delay)))
        elif x < 55:
            script.append((c, "job", ("bury", gen_ref(r, nputs, 0.5), gen_pri(r))))
        elif x < 57:
            script.append((c, "job", ("touch", gen_ref(r, nputs, 0.5))))
        elif x < 60:
            script.append((c, "line", ("kick %d" % r.choice([0, 1, 2, 5, 100]),)))
        elif x < 62:
            script.append((c, "job", ("kick-job", gen_ref(r, nputs))))
        elif x < 65:
            script.append((c, "job", ("peek", gen_ref(r, nputs))))
        elif x < 70:
            script.append((c, "line", (r.choice(["peek-ready", "peek-delayed", "peek-buried"]),)))
        elif x < 75:
            script.append((c, "job", ("stats-job", gen_ref(r, nputs))))
        elif x < 77:
            script.append((c, "line", ("stats-tube " + r.choice(TUBES + ["nosuch"]),)))
        elif x < 82:
            script.append((c, "line", ("use " + r.choice(TUBES),)))
        elif x < 86:
            script.append((c, "line", ("watch " + r.choice(TUBES),)))
        elif x < 90:
            script.append((c, "line", ("ignore " + r.choice(TUBES),)))
        elif x < 93:
            script.append((c, "line", (r.choice(["list-tubes", "list-tube-used",
                                                 "list-tubes-watched"]),)))
        elif x < 94:
            script.append((c, "line", ("stats",)))
        elif x < 95:
            script.append((c, "line", ("pause-tube %s 0" % r.choice(TUBES),)))
        elif x < 96:
            script.append((c, "quit", ()))
        else:
            script.append((c, "raw", (r.choice([
                b"put 1 0 60 3\r\nabcXY",            # EXPECTED_CRLF
                b"put 1 0 60 %d\r\n" % (MAX_JOB + 1) + b"z" * (MAX_JOB + 1) + b"\r\n",
                b"put 1 0 60\r\n",                    # BAD_FORMAT
                b"put -1 0 60 1\r\nx\r\n",          # BAD_FORMAT, then "x" unknown
                b"frobnicate\r\n",                    # UNKNOWN_COMMAND
                b"use -bad\r\n", b"watch " + b"n" * 201 + b"\r\n",
                b"delete\r\n", b"delete x\r\n", b"release 1 2\r\n", b"bury 1\r\n",
                b"kick x\r\n", b"reserve-with-timeout x\r\n", b"\r\n", b"PUT 1 0 1 1\r\n",
                b"stats-job 18446744073709551616\r\n", b"peek-ready \r\n",
                b"pause-tube default x\r\n", b"ignore\r\n",
            ]),)))
    return script


# ---- running a script against one server ----

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.closed = False

    def fill(self):
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            raise RuntimeError("no reply within 10 s")
        if not d:
            self.closed = True
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def reply(self):
        """One reply: its line, plus its body when it has one."""
        ln = self.line()
        w = ln.split(b" ")
        if w[0] in (b"OK", b"FOUND", b"RESERVED") and len(w) >= 2 and w[-1].isdigit():
            body = self.exact(int(w[-1]) + 2)
            return ln, body[:-2]
        return ln, None

    def close(self):
        self.s.close()


# Replies that a raw step's bytes produce, in order (a BAD_FORMAT put line
# leaves its body to be read as a command, which gets its own reply).
RAW_REPLIES = {b"put -1 0 60 1\r\nx\r\n": 1}


class Session:
    """One script's run against one server; collects normalised replies."""

    def __init__(self, port):
        self.port = port
        self.conns = {}
        self.ids = {}       # server id -> ordinal
        self.by_ord = []    # ordinal -> server id
        self.mine = {}      # connection -> the id it reserved last

    def conn(self, c):
        if c not in self.conns or self.conns[c].closed:
            self.conns[c] = Conn(self.port)
        return self.conns[c]

    def learn(self, jid):
        jid = int(jid)
        if jid not in self.ids:
            self.ids[jid] = len(self.by_ord)
            self.by_ord.append(jid)
        return "#%d" % self.ids[jid]

    def resolve(self, ref, c):
        if ref == "mine":
            return self.mine.get(c, UNKNOWN_ID)
        if ref is None or ref >= len(self.by_ord):
            return UNKNOWN_ID
        return self.by_ord[ref]

    def norm_line(self, ln):
        w = ln.decode("latin-1").split(" ")
        if w[0] in ("INSERTED", "RESERVED", "FOUND") and len(w) >= 2:
            w[1] = self.learn(w[1])
        elif w[0] == "BURIED" and len(w) == 2:
            w[1] = self.learn(w[1])
        if w[0] in ("RESERVED", "FOUND") and len(w) == 3:
            return " ".join(w[:2])  # the body is compared itself
        if w[0] == "OK":
            return "OK"             # the YAML is compared itself
        return " ".join(w)

    def norm_yaml(self, kind, body):
        lines = body.decode("latin-1").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if kind == "stats-job":
            out, state = [], None
            for ln in lines:
                k, _, v = ln.partition(": ")
                if k == "state":
                    state = v
            for ln in lines:
                k, _, v = ln.partition(": ")
                if k == "id":
                    v = self.learn(v)
                elif k == "age":
                    v = "*"
                elif k == "time-left" and state in ("delayed", "reserved"):
                    v = "*"
                out.append("%s: %s" % (k, v) if k != "---" else ln)
            return out
        if kind == "stats":
            return [ln for ln in lines if ln.partition(":")[0] in STATS_KEYS or ln == "---"]
        if kind == "list-tubes":
            return [lines[0]] + sorted(lines[1:]) if lines else lines
        return lines

    def record(self, conn, kind, c=None):
        ln, body = conn.reply()
        if ln.startswith(b"RESERVED "):
            self.mine[c] = int(ln.split(b" ")[1])
        out = self.norm_line(ln)
        if body is not None:
            if ln.startswith(b"OK"):
                out += " " + " | ".join(self.norm_yaml(kind, body))
            else:
                out += " body=%r" % body
        return out

    def step(self, st):
        c, kind, args = st
        conn = self.conn(c)
        if kind == "put":
            pri, delay, ttr, body = args
            conn.s.sendall(b"put %d %d %d %d\r\n" % (pri, delay, ttr, len(body)) + body + b"\r\n")
            return self.record(conn, "put")
        if kind == "job":
            words = [args[0], str(self.resolve(args[1], c))] + [str(a) for a in args[2:]]
            conn.s.sendall(" ".join(words).encode() + b"\r\n")
            return self.record(conn, args[0], c)
        if kind == "line":
            conn.s.sendall(args[0].encode() + b"\r\n")
            return self.record(conn, args[0].split(" ")[0], c)
        if kind == "raw":
            conn.s.sendall(args[0])
            return " / ".join(self.record(conn, "raw")
                              for _ in range(1 + RAW_REPLIES.get(args[0], 0)))
        if kind == "quit":
            conn.s.sendall(b"quit\r\n")
            try:
                while True:
                    conn.fill()  # the server closes: its clean-up is done
            except EOFError:
                pass
            return "closed" + (" extra=%r" % conn.buf if conn.buf else "")
        raise ValueError(kind)

    def run(self, script):
        out = []
        for st in script:
            try:
                out.append(self.step(st))
            except EOFError:
                out.append("closed by the server")
                self.conns.pop(st[0], None)
            except RuntimeError as e:  # no reply: the rest cannot be compared
                out.append("%s: %s" % (describe(st), e))
                break
        for cn in self.conns.values():
            cn.close()
        return out


def describe(st):
    c, kind, args = st
    if kind == "put":
        return "c%d: put %d %d %d %d <%r>" % (c, args[0], args[1], args[2], len(args[3]),
                                              args[3][:40])
    if kind == "job":
        ref = {None: "?", "mine": "mine"}.get(args[1], "#%s" % args[1])
        return "c%d: %s %s %s" % (c, args[0], ref,
                                  " ".join(str(a) for a in args[2:]))
    if kind == "raw":
        return "c%d: raw %r" % (c, args[0][:60])
    return "c%d: %s %s" % (c, kind, " ".join(args))


def run_seed(seed, steps, make_target):
    script = gen_script(seed, steps)
    ref = Beanstalkd()
    try:
        want = Session(ref.port).run(script)
    finally:
        ref.stop()
    tgt = make_target()
    try:
        got = Session(tgt.port).run(script)
        alive = tgt.proc.poll() is None
    finally:
        tgt.stop()
    if not alive:
        return "the target died during the script"
    for i, (a, b) in enumerate(zip(want, got)):
        if a != b:
            lines = ["seed %d: step %d differs" % (seed, i)]
            for j in range(max(0, i - 12), i):
                lines.append("    %4d %-50s -> %s" % (j, describe(script[j])[:50], want[j][:100]))
            lines.append("  > %4d %s" % (i, describe(script[i])))
            lines.append("      beanstalkd: %s" % a)
            lines.append("      %-10s: %s" % (tgt.name, b))
            return "\n".join(lines)
    return None


def main():
    env = os.environ
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=["beanstalkd", "sluice"],
                    default=env.get("BEANSTALK_DIFF_TARGET", "sluice"))
    ap.add_argument("--seeds", type=int, default=int(env.get("BEANSTALK_DIFF_SEEDS", "25")))
    ap.add_argument("--seed", type=int, default=int(env.get("BEANSTALK_DIFF_SEED", "20261204")))
    ap.add_argument("--steps", type=int, default=int(env.get("BEANSTALK_DIFF_STEPS", "300")))
    ap.add_argument("--keep-going", action="store_true", help="report every seed's difference")
    ap.add_argument("--no-plant", action="store_true",
                    help="skip the check that a planted difference is found")
    a = ap.parse_args()

    if shutil.which("beanstalkd") is None:
        print("beanstalk_diff: beanstalkd is not installed (build.sh installs it)")
        return 1 if env.get("CI") == "true" else 77
    if a.target == "sluice":
        binary = env.get("SLUICED")
        if not binary or not os.access(binary, os.X_OK):
            print("beanstalk_diff: SLUICED must name the sluiced to test")
            return 1

        def make_target():
            return Sluiced(binary)
    else:
        make_target = Beanstalkd

    # The comparison must be able to fail: a beanstalkd whose max-job-size is
    # one byte smaller must differ from the reference within these seeds.
    if not a.no_plant:
        planted = None
        for k in range(a.seeds):
            planted = run_seed(a.seed + k, a.steps, lambda: Beanstalkd(MAX_JOB - 1))
            if planted:
                break
        if not planted:
            print("beanstalk_diff: FAIL: a beanstalkd with -z %d was not told apart" % (MAX_JOB - 1))
            return 1
        print("beanstalk_diff: the planted difference (-z %d) is found:\n%s" %
              (MAX_JOB - 1, planted.split("\n")[0] + "\n" + "\n".join(planted.split("\n")[-3:])))
    for name, why in DELIBERATE.items():
        print("beanstalk_diff: normalised (deliberate, docs/beanstalk.md): %s: %s" % (name, why))
    failed = 0
    t0 = time.monotonic()
    for k in range(a.seeds):
        seed = a.seed + k
        diff = run_seed(seed, a.steps, make_target)
        if diff:
            failed += 1
            print(diff, flush=True)
            if not a.keep_going:
                break
    ran = k + 1
    print("beanstalk_diff: %d scripts of %d steps against %s from seed %d in %.1f s" %
          (ran, a.steps, a.target, a.seed, time.monotonic() - t0))
    print("beanstalk_diff: %d passed, %d failed" % (ran - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
