"""test_pycluster.py: the Python client over a cluster (clients/python/sluice.py's
Cluster) against real sluiced daemons on ephemeral loopback ports: the
placement function gives src/place.c's pinned weights and the same owners
as `sluice place`; each topic's commands go to its owner over one
connection per node; and against daemons that know the cluster, a stale
node list still delivers by following -MOVED (with one warning), which a
lone Client reports as sluice.Moved.

Standard library only; run by `make check` with /usr/bin/python3 (the
daemons are started as tests/test_pyclient.py starts them)."""

import asyncio
import os
import socket
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
import sluice  # noqa: E402
from test_pyclient import Daemon  # noqa: E402

SLUICE = os.environ.get("SLUICE", os.path.join(HERE, "..", "build", "src", "sluice"))
T = asyncio.timeout


class TestPlace(unittest.TestCase):
    def test_pinned_weights(self):
        # the three numbers tests/check_place.c pins: every client must agree
        self.assertEqual(sluice.place_weight("127.0.0.1:7700", "orders"), 0x33e9fd82acac40be)
        self.assertEqual(sluice.place_weight("127.0.0.1:7701", "orders"), 0xdbb6efc11931440f)
        self.assertEqual(sluice.place_weight("a", ""), 0x86fc2d0407502de5)

    def test_same_owners_as_sluice_place(self):
        nodes = ["10.0.0.1:7700", "10.0.0.2:7700", "10.0.0.3:7700", "[::1]:7700"]
        topics = [f"topic.{i}" for i in range(300)]
        out = subprocess.run([SLUICE, "place", "--nodes", ",".join(nodes), *topics],
                             capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items()
                                  if k not in ("SLUICE_NODES", "SLUICE_CONFIG")}).stdout
        want = "".join(f"{t} {nodes[sluice.place_owner(nodes, t)]}\n" for t in topics)
        self.assertEqual(out, want)
        self.assertEqual(len({sluice.place_owner(nodes, t) for t in topics}), 4)

    def test_parse_nodes(self):
        self.assertEqual(sluice.parse_nodes("a:1, b:2 ,[::1]:3"), ["a:1", "b:2", "[::1]:3"])
        self.assertEqual(sluice.parse_nodes(("a:1",)), ["a:1"])
        for bad in ("", "a:1,,b:2", "a", "a:0", "a:1,a:1", "a b:1", "unix:/x", "[::1]"):
            with self.assertRaises(ValueError, msg=bad):
                sluice.parse_nodes(bad)

    def test_moved_error(self):
        e = sluice._reply_error("-MOVED orders 10.0.0.2:7700")
        self.assertIsInstance(e, sluice.Moved)
        self.assertEqual((e.code, e.topic, e.addr), ("MOVED", "orders", "10.0.0.2:7700"))


def topic_on(nodes, i, prefix="t"):
    """A topic that nodes[i] owns."""
    k = 0
    while sluice.place_owner(nodes, f"{prefix}.{k}") != i:
        k += 1
    return f"{prefix}.{k}"


class ClusterBase(unittest.IsolatedAsyncioTestCase):
    daemons = []

    @classmethod
    def tearDownClass(cls):
        for d in cls.daemons:
            d.stop()

    async def node(self, i):
        """A plain Client to daemon i, for looking behind the Cluster's back."""
        c = await sluice.connect("127.0.0.1", self.daemons[i].port)
        self.addAsyncCleanup(c.close)
        return c

    async def ready_on(self, i, topic):
        try:
            return (await (await self.node(i)).stats(topic))["ready"]
        except sluice.ReplyError:
            return None  # no such topic there

    async def cluster(self, nodes):
        c = await sluice.connect(nodes=nodes)
        self.addAsyncCleanup(c.close)
        return c


class TestRouting(ClusterBase):
    """Three plain daemons: the client's list is all there is."""

    @classmethod
    def setUpClass(cls):
        cls.daemons = [Daemon() for _ in range(3)]
        cls.nodes = [f"127.0.0.1:{d.port}" for d in cls.daemons]

    async def test_publish_lands_on_owner(self):
        c = await self.cluster(self.nodes)
        self.assertIsInstance(c, sluice.Cluster)
        for i in range(3):
            t = topic_on(self.nodes, i, "pub")
            self.assertEqual(c.owner(t), self.nodes[i])
            await asyncio.gather(*(c.publish(t, b"m%d" % k) for k in range(5)))
            for j in range(3):
                self.assertEqual(await self.ready_on(j, t), 5 if j == i else None)

    async def test_get_subscribe_join_stats(self):
        c = await self.cluster(",".join(self.nodes))  # a string as $SLUICE_NODES has it
        for i in range(3):
            t = topic_on(self.nodes, i, "rt")
            for k in range(3):
                await c.publish(t, b"%d" % k)
            m = await c.get(t, timeout=5)
            self.assertEqual(m.data, b"0")
            await m.ack()
            got = []
            async with T(30):
                async for m in c.subscribe(t, credit=4):
                    got.append(m)
                    if len(got) == 2:
                        break
            await c.ack(*got)
            self.assertEqual([m.data for m in got], [b"1", b"2"])
            async with T(30):
                await c.join(t)
            self.assertEqual((await c.stats(t))["acked"], 3)
        # one connection per node, whatever the number of topics
        self.assertEqual(len(c._conns), 3)
        every = await c.stats()
        self.assertEqual(sorted(every), sorted(self.nodes))
        self.assertTrue(all(s["published"] >= 3 for s in every.values()))
        names = await c.topics()
        self.assertEqual(len(names), len(set(names)))
        self.assertTrue({topic_on(self.nodes, i, "rt") for i in range(3)} <= set(names))
        await c.ping()

    async def test_sluice_nodes_env(self):
        os.environ["SLUICE_NODES"] = ",".join(self.nodes)
        try:
            c = await sluice.connect()
            self.addAsyncCleanup(c.close)
            self.assertIsInstance(c, sluice.Cluster)
            t = topic_on(self.nodes, 2, "env")
            await c.publish(t, b"x")
            self.assertEqual(await self.ready_on(2, t), 1)
            # a host given is one server, whatever the environment says
            one = await sluice.connect("127.0.0.1", self.daemons[0].port)
            self.addAsyncCleanup(one.close)
            self.assertIsInstance(one, sluice.Client)
        finally:
            del os.environ["SLUICE_NODES"]
        with self.assertRaises(ValueError):
            await sluice.connect_cluster()
        with self.assertRaises(ValueError):
            await sluice.connect("127.0.0.1", nodes=self.nodes)

    async def test_node_down_only_its_topics(self):
        down = Daemon()
        nodes = self.nodes[:1] + [f"127.0.0.1:{down.port}"]
        down.stop()
        c = await self.cluster(nodes)
        await c.publish(topic_on(nodes, 0, "up"), b"x")
        with self.assertRaises(OSError):
            await c.publish(topic_on(nodes, 1, "down"), b"x")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class TestMoved(ClusterBase):
    """Three daemons that know the cluster; the client may not."""

    @classmethod
    def setUpClass(cls):
        ports = free_ports(3)
        cls.nodes = [f"127.0.0.1:{p}" for p in ports]
        items = ", ".join(f'"{n}"' for n in cls.nodes)
        cls.daemons = [Daemon(f'cluster: {{self: "{n}", nodes: [{items}]}}\n',
                              listen=f"[{n}]") for n in cls.nodes]

    async def test_stale_list_follows_moved(self):
        stale = self.nodes[:2]
        c = await self.cluster(stale)
        t = topic_on(self.nodes, 2, "stale")
        self.assertNotEqual(c.owner(t), self.nodes[2])
        with self.assertLogs("sluice", "WARNING") as logs:
            ids = await asyncio.gather(*(c.publish(t, b"s%d" % k) for k in range(10)))
            await c.publish(topic_on(self.nodes, 2, "stale2"), b"x")
        self.assertEqual(len(ids), 10)
        self.assertEqual(len(logs.output), 1)  # said once
        self.assertIn("node list looks stale", logs.output[0])
        self.assertIn(self.nodes[2], logs.output[0])
        self.assertEqual(c.owner(t), self.nodes[2])  # remembered for the topic
        for j in range(3):
            self.assertEqual(await self.ready_on(j, t), 10 if j == 2 else None)
        m = await c.get(t, timeout=5)
        self.assertEqual(m.data, b"s0")
        await m.ack()
        # a fresh Cluster's subscription follows -MOVED on its SUB
        c2 = await self.cluster(stale)
        got = []
        with self.assertLogs("sluice", "WARNING"):
            async with T(30):
                async for m in c2.subscribe(t, credit=16):
                    got.append(m.data)
                    await m.ack()
                    if len(got) == 9:
                        break
        self.assertEqual(sorted(got), sorted(b"s%d" % k for k in range(1, 10)))
        async with T(30):
            await c2.join(t)

    async def test_lone_client_reports_moved(self):
        t = topic_on(self.nodes, 1, "lone")
        c = await self.node(0)
        with self.assertRaises(sluice.Moved) as cm:
            await c.publish(t, b"x")
        self.assertEqual((cm.exception.topic, cm.exception.addr), (t, self.nodes[1]))
        await c.ping()  # still in step
        self.assertIsNone(await self.ready_on(0, t))


if __name__ == "__main__":
    unittest.main(verbosity=2)
