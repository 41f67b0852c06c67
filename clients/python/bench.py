#!/usr/bin/env python3
"""bench.py: what the asyncio client (sluice.py) moves per process.

Two runs against a running sluiced, 64-byte payloads by default:
  publish   one connection, WINDOW publishes unanswered at a time, until
            COUNT are confirmed (+OK), in rounds of at most 50,000 (a
            topic's default bound is 100,000 messages) with the topic
            drained between rounds, outside the measurement;
  pub+sub   in the same process and event loop: the same publishing on one
            connection, and a subscription with CREDIT on a second that
            acks in batches of ACK ids; timed until every message is acked.
Prints one line per run: messages per second and the process's CPU per
message. docs/benchmarks.md has the figures.

    python3 clients/python/bench.py [-s HOST:PORT] [-n COUNT] [-S SIZE] \
        [-w WINDOW] [-C CREDIT] [-a ACK]
"""

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice  # noqa: E402


async def publish_all(client, topic, count, window, payload):
    """`window` tasks, each publishing its share in turn: at most `window`
    PUBs are unanswered at once, all on one connection."""
    async def lane(n):
        for _ in range(n):
            await client.publish(topic, payload)

    share, extra = divmod(count, window)
    await asyncio.gather(*(lane(share + (i < extra)) for i in range(window)))


async def consume_all(client, topic, count, credit, ack_batch):
    ids = []
    async with client.subscribe(topic, credit=credit) as sub:
        for got in range(1, count + 1):
            ids.append((await sub.next()).id)
            if len(ids) >= ack_batch or got == count:
                await client.ack(*ids)
                ids.clear()


ROUND = 50_000


def report(label, count, wall, cpu):
    print(f"{label:<10} {count / wall:>10,.0f} msg/s   {cpu / count * 1e6:6.2f} us CPU/msg"
          f"   ({count} x {args.size} B in {wall:.2f} s)")


async def run():
    host, port = args.server.rsplit(":", 1)
    payload = b"x" * args.size
    pub = await sluice.connect(host, int(port))
    sub = await sluice.connect(host, int(port))
    try:
        await sub.ping()
        wall = cpu = 0.0
        left = args.count
        while left > 0:
            n = min(left, ROUND)
            start, cpu0 = time.perf_counter(), time.process_time()
            await publish_all(pub, "pybench.pub", n, args.window, payload)
            wall += time.perf_counter() - start
            cpu += time.process_time() - cpu0
            await consume_all(sub, "pybench.pub", n, 1024, 256)  # untimed drain
            left -= n
        report("publish", args.count, wall, cpu)

        start, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(
            publish_all(pub, "pybench.e2e", args.count, args.window, payload),
            consume_all(sub, "pybench.e2e", args.count, args.credit, args.ack))
        report("pub+sub", args.count, time.perf_counter() - start,
               time.process_time() - cpu0)
    finally:
        await pub.close()
        await sub.close()


p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("-s", "--server", default="127.0.0.1:7700")
p.add_argument("-n", "--count", type=int, default=200_000)
p.add_argument("-S", "--size", type=int, default=64)
p.add_argument("-w", "--window", type=int, default=64)
p.add_argument("-C", "--credit", type=int, default=64)
p.add_argument("-a", "--ack", type=int, default=16)
args = p.parse_args()
asyncio.run(run())
