"""test_pyclient.py: the asyncio client (clients/python/sluice.py) against
the real sluiced, started on an ephemeral loopback port as tests/harness.c
does (the daemon writes its bound ports to $SLUICED_PORT_FILE).

Standard library only; run by `make check` with /usr/bin/python3. A missing
daemon or openssl is a failure, never a skip."""

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # the source tree may be read-only (distcheck)
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
import sluice  # noqa: E402

SLUICED = os.environ.get("SLUICED", os.path.join(HERE, "..", "build", "src", "sluiced"))


class Daemon:
    """One sluiced with `yaml` (plus a loopback listener) in a temp dir."""

    def __init__(self, yaml="", listen="[127.0.0.1:0]"):
        self.dir = tempfile.mkdtemp(prefix="sluice-py-")
        conf = os.path.join(self.dir, "sluiced.yaml")
        with open(conf, "w") as f:
            f.write(f"listen: {listen}\nadmin: {{listen: \"\"}}\n{yaml}")
        ports = os.path.join(self.dir, "ports")
        env = dict(os.environ, SLUICED_PORT_FILE=ports)
        env.pop("NOTIFY_SOCKET", None)
        self.log = open(os.path.join(self.dir, "sluiced.log"), "w")
        self.proc = subprocess.Popen([SLUICED, "-c", conf], stderr=self.log, env=env)
        deadline = time.monotonic() + 60
        self.lines = []
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluiced exited {self.proc.returncode}: " + self.logtext())
            if os.path.exists(ports):
                with open(ports) as f:
                    text = f.read()
                if text.endswith("\n"):
                    self.lines = text.split()
                    break
            time.sleep(0.02)
        else:
            raise RuntimeError("sluiced did not start: " + self.logtext())
        first = self.lines[0]
        self.port = int(first.rsplit(":", 1)[1])
        self.tls_port = next((int(x.rsplit(":", 1)[1]) for x in self.lines
                              if x.startswith("tls://")), None)

    def logtext(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Base(unittest.IsolatedAsyncioTestCase):
    yaml = ""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(cls.yaml)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    async def conn(self, **kw):
        c = await sluice.connect("127.0.0.1", self.d.port, **kw)
        self.addAsyncCleanup(c.close)
        return c


T = asyncio.timeout  # every wait in these tests is bounded, never timed


async def drain(conn, topic):
    """Get and ack until the topic holds nothing and no producer is parked."""
    got = []
    async with T(30):
        while True:
            try:
                m = await conn.get(topic, timeout=0.3)
            except sluice.Timeout:
                st = await conn.stats(topic)
                if st["in_flight"] + st["ready"] + st["blocked_producers"] == 0:
                    return got
                continue
            got.append(m)
            await m.ack()


class TestBasics(Base):
    yaml = ("topics:\n"
            "  small: {max_messages: 3, overflow: block}\n"
            "  rej: {max_messages: 2, overflow: reject}\n")

    async def test_publish_subscribe_ack(self):
        c = await self.conn()
        ids = await asyncio.gather(*(c.publish("ps", b"m%d" % i) for i in range(200)))
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 200)
        got = []
        async with T(30):
            async for msg in c.subscribe("ps", credit=16):
                got.append(msg.data)
                await msg.ack()
                if len(got) == 200:
                    break
        self.assertEqual(got, [b"m%d" % i for i in range(200)])
        async with T(30):
            await c.join("ps")
        st = await c.stats("ps")
        self.assertEqual(st["acked"], 200)
        self.assertEqual(st["topic"], "ps")

    async def test_binary_payload_and_get_nack(self):
        c = await self.conn()
        data = bytes(range(256)) + b"\r\nMSG x 1 1 1\r\n"
        mid = await c.publish("g", data)
        msg = await c.get("g", timeout=5)
        self.assertEqual((msg.id, msg.attempt, msg.data), (mid, 1, data))
        await msg.nack()
        msg = await c.get("g", timeout=5)
        self.assertEqual((msg.id, msg.attempt), (mid, 2))
        await msg.touch()
        await msg.ack()
        with self.assertRaises(sluice.Timeout):
            await c.get("g", timeout=0)
        with self.assertRaises(sluice.NotFound):
            await msg.ack()
        await c.join("g", timeout=0)

    async def test_nack_delay_and_join_timeout(self):
        c = await self.conn()
        await c.publish("nd", b"x")
        msg = await c.get("nd", timeout=5)
        await msg.nack(delay=60)
        st = await c.stats("nd")
        self.assertEqual(st["delayed"], 1)
        with self.assertRaises(sluice.Timeout):
            await c.join("nd", timeout=0.05)
        with self.assertRaises(sluice.Timeout):
            await c.get("nd", timeout=0)

    async def test_reject_full(self):
        c = await self.conn()
        await c.publish("rej", b"1")
        await c.publish("rej", b"2")
        with self.assertRaises(sluice.Full) as cm:
            await c.publish("rej", b"3")
        self.assertEqual(cm.exception.text, "rej")
        await c.ping()  # the connection is still in step

    async def test_block_backpressure(self):
        prod = await self.conn()
        cons = await self.conn()
        tasks = [asyncio.create_task(prod.publish("small", b"b%d" % i)) for i in range(10)]
        async with T(30):
            while (await cons.stats("small"))["blocked_producers"] == 0:
                await asyncio.sleep(0.01)
        # three fit; the fourth is parked, the rest wait behind it
        self.assertEqual(sum(t.done() for t in tasks), 3)
        got = []
        async with T(30):
            while len(got) < 10:
                msg = await cons.get("small", timeout=10)
                got.append(msg.data)
                await msg.ack()
            ids = await asyncio.gather(*tasks)
        self.assertEqual(got, [b"b%d" % i for i in range(10)])
        self.assertEqual(ids, sorted(ids))

    async def test_stats_topics(self):
        c = await self.conn()
        await c.publish("st", b"x")
        st = await c.stats()
        self.assertIn("version", st)
        self.assertIsInstance(st["redis"], dict)
        self.assertIn("st", await c.topics())
        with self.assertRaises(sluice.ReplyError):
            await c.stats("no-such-topic")

    async def test_subscribe_break_gives_back(self):
        c = await self.conn()
        for i in range(20):
            await c.publish("sb", b"%d" % i)
        async for msg in c.subscribe("sb", credit=10):
            await msg.ack()
            break
        # the other pushed messages were given back: all 19 come again, once
        c2 = await self.conn()
        seen = []
        async with T(30):
            while len(seen) < 19:
                m = await c2.get("sb", timeout=10)
                seen.append(m.data)
                await m.ack()
        self.assertEqual(sorted(seen, key=int), [b"%d" % i for i in range(1, 20)])
        await c2.join("sb", timeout=5)

    async def test_cancel_subscribe_iteration(self):
        """Cancel a consumer mid-stream: what it acked never comes again,
        what it held unacked comes again once, nothing is lost. (A cancel
        that lands during `await msg.ack()` leaves that one ack in doubt.)"""
        c = await self.conn()
        acked, current = [], []

        async def consume():
            async for msg in c.subscribe("cs", credit=8):
                current[:] = [msg.id]
                await msg.ack()
                acked.append(msg.id)

        task = asyncio.create_task(consume())
        ids = [await c.publish("cs", b"x") for _ in range(30)]
        async with T(30):
            while len(acked) < 10:
                await asyncio.sleep(0.005)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        c2 = await self.conn()
        rest = [m.id for m in await drain(c2, "cs")]
        self.assertFalse(set(acked) & set(rest))  # an acked message never comes back
        self.assertEqual(len(rest), len(set(rest)))
        self.assertLessEqual(set(ids) - set(acked) - set(rest), set(current))
        self.assertEqual((await c2.stats("cs"))["acked"], len(ids))  # none lost

    async def test_cancel_publish(self):
        """Cancelled publishes (some before their bytes are written, some
        parked on a full block topic) leave the stream in step, and every
        one is accounted for: not sent (plain CancelledError), or sent
        (PublishCancelled) with an outcome that says whether it was
        enqueued. What a consumer receives is exactly the +OK'd ones plus
        the cancelled ones whose outcome is an id: none lost, none twice."""
        c = await sluice.connect("127.0.0.1", self.d.port, max_pending=5)
        self.addAsyncCleanup(c.close)
        sent = {}

        async def pub(i):  # PublishCancelled is what the cancelled task itself sees
            try:
                return await c.publish("small", b"c%d" % i)
            except sluice.PublishCancelled as e:
                sent[i] = e
                raise

        tasks = [asyncio.create_task(pub(i)) for i in range(12)]
        async with T(30):
            while (await (await self.conn()).stats("small"))["blocked_producers"] == 0:
                await asyncio.sleep(0.01)
        for t in tasks[3:]:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        oked = [r for r in results if isinstance(r, int)]
        self.assertEqual(len(oked), 3)
        self.assertTrue(all(isinstance(r, asyncio.CancelledError) for r in results[3:]))
        # c3 parked, c4..c7 written behind it as the window (5) freed;
        # c8..c11 were still waiting for the window: never written
        self.assertEqual(sorted(sent), [3, 4, 5, 6, 7])
        self.assertEqual(c.in_doubt, 5)
        self.assertTrue(all(r.sent for r in sent.values()))
        cons = await self.conn()
        seen = [m.data for m in await drain(cons, "small")]
        async with T(30):
            outcomes = {i: await r.outcome for i, r in sent.items()}
        self.assertEqual(seen[:3], [b"c0", b"c1", b"c2"])
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(set(seen), {b"c0", b"c1", b"c2"} | {b"c%d" % i for i in outcomes})
        self.assertTrue(all(isinstance(v, int) for v in outcomes.values()))
        # the same connection is still in step
        mid = await c.publish("after", b"ok")
        self.assertEqual((await c.get("after", timeout=5)).id, mid)

    async def test_cancelled_get_gives_back(self):
        c = await self.conn()
        task = asyncio.create_task(c.get("cg", timeout=30))
        await asyncio.sleep(0.05)
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task
        other = await self.conn()
        mid = await other.publish("cg", b"x")  # reaches the cancelled GET
        await c.ping()  # its reply came and was given back
        m = await other.get("cg", timeout=10)
        self.assertEqual(m.id, mid)
        await m.ack()

    async def test_get_on_subscribed_topic_refused(self):
        c = await self.conn()
        sub = c.subscribe("gs")
        async with sub:
            with self.assertRaises(ValueError):
                await c.get("gs")

    async def test_connection_loss(self):
        d = Daemon()
        try:
            c = await sluice.connect("127.0.0.1", d.port)
            await c.publish("cl", b"x")
            pending = asyncio.create_task(c.get("cl-empty", timeout=30))
            await asyncio.sleep(0.05)
            d.proc.kill()
            d.proc.wait()
            with self.assertRaises(sluice.ConnectionLost):
                await pending
            with self.assertRaises(sluice.ConnectionLost) as cm:
                await c.publish("cl", b"y")
            self.assertFalse(cm.exception.sent)
            await c.close()
        finally:
            d.stop()

    async def test_many_concurrent_publishers(self):
        c = await self.conn()

        async def producer(n):
            return [await c.publish("mc", b"%d-%d" % (n, i)) for i in range(50)]

        ids = await asyncio.gather(*(producer(n) for n in range(8)))
        flat = [i for r in ids for i in r]
        self.assertEqual(len(set(flat)), 400)
        st = await c.stats("mc")
        self.assertEqual(st["ready"], 400)


class TestAuth(Base):
    yaml = ("users:\n"
            "  bob:\n"
            "    password: secret-bob\n"
            "    publish: [jobs]\n"
            "    subscribe: [jobs]\n")

    async def test_auth(self):
        c = await self.conn(user="bob", password="secret-bob")
        mid = await c.publish("jobs", b"x")
        with self.assertRaises(sluice.Denied):
            await c.publish("other", b"x")
        m = await c.get("jobs", timeout=5)
        self.assertEqual(m.id, mid)
        await m.ack()

    async def test_bad_password_and_none(self):
        with self.assertRaises(sluice.NoAuth):
            await sluice.connect("127.0.0.1", self.d.port, user="bob", password="nope")
        c = await self.conn()
        with self.assertRaises(sluice.NoAuth):
            await c.publish("jobs", b"x")


class TestTLS(unittest.IsolatedAsyncioTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="sluice-py-tls-")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(a, cwd=cls.certs, check=True,  # noqa: E731
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=sluice-py-ca")
        run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
        with open(os.path.join(cls.certs, "server.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
        cls.d = Daemon(f"tls: {{cert: {cls.certs}/server.pem, key: {cls.certs}/server.key}}\n",
                       listen="[127.0.0.1:0, tls://127.0.0.1:0]")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.certs, ignore_errors=True)

    async def test_tls_roundtrip(self):
        ctx = ssl.create_default_context(cafile=os.path.join(self.certs, "ca.pem"))
        c = await sluice.connect("127.0.0.1", self.d.tls_port, ssl=ctx)
        try:
            mid = await c.publish("tls", b"secret")
            m = await c.get("tls", timeout=5)
            self.assertEqual((m.id, m.data), (mid, b"secret"))
            await m.ack()
        finally:
            await c.close()

    async def test_tls_untrusted(self):
        ctx = ssl.create_default_context()  # the system CAs: not ours
        with self.assertRaises(ssl.SSLError):
            await sluice.connect("127.0.0.1", self.d.tls_port, ssl=ctx)


class ReadmeExample(unittest.TestCase):
    """The README's asyncio example, run as it is printed there (only the
    port changed): 100 jobs, each done once by one of the 4 workers, and
    the topic empty afterwards."""

    def test_readme_example_runs(self):
        readme = os.path.join(os.environ.get("SLUICE_SRCDIR", os.path.join(HERE, "..")),
                              "README.md")
        with open(readme) as f:
            text = f.read()
        section = text[text.index("## From Python (asyncio)"):]
        code = section[section.index("```python\n") + 10:section.index("\n```\n")]
        self.assertIn('sluice.connect("127.0.0.1", 7700)', code)
        d = Daemon()
        try:
            code = code.replace('"127.0.0.1", 7700', f'"127.0.0.1", {d.port}')
            env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "clients", "python"),
                       PYTHONDONTWRITEBYTECODE="1")
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr)
            jobs = sorted(line.split(": ", 1)[1] for line in out.stdout.splitlines())
            self.assertEqual(jobs, sorted(f"job {i}" for i in range(100)))
            workers = {line.split(":", 1)[0] for line in out.stdout.splitlines()}
            self.assertLessEqual(workers, {f"worker {n}" for n in range(4)})

            async def check():
                c = await sluice.connect("127.0.0.1", d.port)
                try:
                    st = await c.stats("jobs")
                finally:
                    await c.close()
                self.assertEqual((st["ready"], st["in_flight"], st["acked"]), (0, 0, 100))
            asyncio.run(check())
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
