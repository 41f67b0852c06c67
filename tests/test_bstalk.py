"""test_bstalk.py: a small beanstalk client of its own, and a worker loop
(put / reserve / delete / release / bury / kick / stats-job) against sluiced's
beanstalk listener, started here on ephemeral loopback ports (the daemon
writes them to $SLUICED_PORT_FILE as "beanstalk HOST:PORT").

Standard library only; run by `make check` with /usr/bin/python3. A missing
daemon is a failure, never a skip. Nothing is timed."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SLUICED = os.environ.get("SLUICED", os.path.join(HERE, "..", "build", "src", "sluiced"))


class Daemon:
    """sluiced with a native and a beanstalk listener on free ports."""

    def __init__(self, yaml=""):
        self.dir = tempfile.mkdtemp(prefix="sluice-bstalk-")
        conf = os.path.join(self.dir, "sluiced.yaml")
        with open(conf, "w") as f:
            f.write("listen: [127.0.0.1:0]\nadmin: {listen: \"\"}\n"
                    "beanstalk: {listen: [127.0.0.1:0]}\n" + yaml)
        ports = os.path.join(self.dir, "ports")
        env = dict(os.environ, SLUICED_PORT_FILE=ports)
        env.pop("NOTIFY_SOCKET", None)
        self.log = open(os.path.join(self.dir, "sluiced.log"), "w")
        self.proc = subprocess.Popen([SLUICED, "-c", conf], stderr=self.log, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sluiced exited %d: %s" % (self.proc.returncode, self.logtext()))
            if os.path.exists(ports):
                with open(ports) as f:
                    text = f.read()
                if text.endswith("\n"):
                    break
            time.sleep(0.02)
        else:
            raise RuntimeError("sluiced did not start: " + self.logtext())
        lines = text.splitlines()
        self.port = int(lines[0].rsplit(":", 1)[1])
        self.bport = int(next(x for x in lines if x.startswith("beanstalk ")).rsplit(":", 1)[1])

    def logtext(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        self.proc.terminate()
        rc = self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


class CommandError(Exception):
    """A reply that is not the command's success (NOT_FOUND, TIMED_OUT, ...)."""


class Beanstalk:
    """A blocking beanstalk client: one method per command it needs."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1").split(" ")

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n + 2:]
        return body

    def _call(self, line, *ok, body=None):
        self.sock.sendall(line.encode() + b"\r\n" + (body + b"\r\n" if body is not None else b""))
        words = self._line()
        if words[0] not in ok:
            raise CommandError(" ".join(words))
        return words

    def _yaml(self, line):
        words = self._call(line, "OK")
        out = {}
        for row in self._exact(int(words[1])).decode().splitlines()[1:]:
            if row.startswith("- "):
                out.setdefault("-", []).append(row[2:])
            else:
                k, _, v = row.partition(": ")
                out[k] = int(v) if v.isdigit() else v
        return out

    def use(self, tube):
        return self._call("use " + tube, "USING")[1]

    def watch(self, tube):
        return int(self._call("watch " + tube, "WATCHING")[1])

    def ignore(self, tube):
        return int(self._call("ignore " + tube, "WATCHING")[1])

    def put(self, body, pri=1024, delay=0, ttr=60):
        words = self._call("put %d %d %d %d" % (pri, delay, ttr, len(body)), "INSERTED",
                           body=body)
        return int(words[1])

    def reserve(self, timeout=None):
        line = "reserve" if timeout is None else "reserve-with-timeout %d" % timeout
        words = self._call(line, "RESERVED")
        return int(words[1]), self._exact(int(words[2]))

    def delete(self, jid):
        self._call("delete %d" % jid, "DELETED")

    def release(self, jid, pri=1024, delay=0):
        self._call("release %d %d %d" % (jid, pri, delay), "RELEASED")

    def bury(self, jid, pri=1024):
        self._call("bury %d %d" % (jid, pri), "BURIED")

    def touch(self, jid):
        self._call("touch %d" % jid, "TOUCHED")

    def kick(self, bound):
        return int(self._call("kick %d" % bound, "KICKED")[1])

    def kick_job(self, jid):
        self._call("kick-job %d" % jid, "KICKED")

    def peek_buried(self):
        words = self._call("peek-buried", "FOUND")
        return int(words[1]), self._exact(int(words[2]))

    def stats_job(self, jid):
        return self._yaml("stats-job %d" % jid)

    def stats_tube(self, tube):
        return self._yaml("stats-tube " + tube)

    def stats(self):
        return self._yaml("stats")

    def list_tubes(self):
        return self._yaml("list-tubes")["-"]


class WorkerLoop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("defaults: {max_deliveries: 0}\n")

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("sluiced exited %d" % rc)

    def client(self):
        c = Beanstalk(self.d.bport)
        self.addCleanup(c.close)
        return c

    def test_worker_loop(self):
        """A producer fills a tube; a worker handles each job once: done jobs
        are deleted, a flaky one is released and retried, a poison one is
        buried, kicked after the run and then handled."""
        prod, work = self.client(), self.client()
        self.assertEqual(prod.use("emails"), "emails")
        jobs = {}
        for i in range(20):
            kind = "poison" if i == 7 else "flaky" if i % 5 == 0 else "ok"
            jobs[prod.put(("%s:%d" % (kind, i)).encode(), pri=100 + i)] = kind
        self.assertEqual(work.watch("emails"), 2)
        self.assertEqual(work.ignore("default"), 1)
        done, released, buried = [], set(), []
        while True:
            try:
                jid, body = work.reserve(timeout=0)
            except CommandError as e:
                self.assertEqual(str(e), "TIMED_OUT")
                break
            kind = body.decode().split(":")[0]
            self.assertEqual(kind, jobs[jid])
            st = work.stats_job(jid)
            self.assertEqual(st["state"], "reserved")
            self.assertEqual(st["tube"], "emails")
            if kind == "flaky" and jid not in released:
                released.add(jid)
                work.release(jid, pri=st["pri"])
            elif kind == "poison":
                work.bury(jid)
                buried.append(jid)
            else:
                if kind == "flaky":
                    self.assertEqual((st["reserves"], st["releases"]), (2, 1))
                work.touch(jid)
                work.delete(jid)
                done.append(jid)
        self.assertEqual(len(done), 19)
        self.assertEqual(len(set(done)), 19)
        self.assertEqual(buried, [j for j, k in jobs.items() if k == "poison"])
        # Priorities: the lowest first; a released job (same priority) comes
        # straight back, so the jobs were done in the order they were put.
        self.assertEqual(done, sorted(j for j in jobs if jobs[j] != "poison"))
        self.assertEqual(len(released), 4)
        tube = prod.stats_tube("emails")
        self.assertEqual(tube["current-jobs-buried"], 1)
        self.assertEqual(tube["current-jobs-ready"], 0)
        self.assertEqual(tube["total-jobs"], 20)
        self.assertEqual(tube["cmd-delete"], 19)
        jid, body = prod.peek_buried()
        self.assertEqual(jid, buried[0])
        self.assertEqual(prod.stats_job(jid)["buries"], 1)
        self.assertEqual(prod.kick(10), 1)
        jid2, body2 = work.reserve(timeout=5)
        self.assertEqual((jid2, body2), (jid, body))
        st = work.stats_job(jid)
        self.assertEqual((st["reserves"], st["kicks"], st["buries"]), (2, 1, 1))
        work.delete(jid)
        self.assertEqual(prod.stats_tube("emails")["current-jobs-buried"], 0)

    def test_release_counts_and_priority_order(self):
        c = self.client()
        c.use("prio")
        c.watch("prio")
        c.ignore("default")
        low = c.put(b"low", pri=5000)
        high = c.put(b"high", pri=1)
        mid = c.put(b"mid", pri=100)
        self.assertEqual(c.reserve(0), (high, b"high"))
        c.release(high, pri=9000)        # now the least urgent
        self.assertEqual(c.reserve(0), (mid, b"mid"))
        self.assertEqual(c.reserve(0), (low, b"low"))
        self.assertEqual(c.reserve(0), (high, b"high"))
        st = c.stats_job(high)
        self.assertEqual((st["pri"], st["reserves"], st["releases"]), (9000, 2, 1))
        for j in (high, mid, low):
            c.delete(j)
        with self.assertRaises(CommandError) as e:
            c.delete(high)
        self.assertEqual(str(e.exception), "NOT_FOUND")

    def test_kick_job_delayed_and_stats(self):
        c = self.client()
        c.use("later")
        jid = c.put(b"x", delay=3600)
        st = c.stats_job(jid)
        self.assertEqual((st["state"], st["delay"]), ("delayed", 3600))
        c.kick_job(jid)
        self.assertEqual(c.stats_job(jid)["state"], "ready")
        self.assertIn("later", c.list_tubes())
        s = c.stats()
        self.assertEqual(s["version"], '"1.12"')
        self.assertGreaterEqual(s["current-connections"], 1)
        self.assertGreaterEqual(s["cmd-put"], 1)
        c.delete(jid)

    def test_closed_worker_gives_its_job_back(self):
        a, b = self.client(), self.client()
        a.use("handover")
        jid = a.put(b"job")
        a.watch("handover")
        a.ignore("default")
        self.assertEqual(a.reserve(0)[0], jid)
        b.watch("handover")
        b.ignore("default")
        a.close()
        self.assertEqual(b.reserve(10), (jid, b"job"))
        b.delete(jid)


if __name__ == "__main__":
    unittest.main(verbosity=2)
