"""cluster_load.py: the load and the ledger of tests/cluster_failover.sh.

One producer and one consumer a topic (on odd topics the consumer starts
only when publishing ends, so a backlog is at stake), each on its own
connection to the topic's owner (rendezvous placement over --nodes, as every sluice client
places topics). Producers keep a few confirmed PUBs in flight at a steady
rate and write down every payload that got +OK; consumers ACK everything
they receive and write down what they got. Connections that fail, or hang
because their host is gone, are dropped and made again, as a real client
would do against a node that a standby takes over.

At the end it drains (producers stop, consumers go on until everything
confirmed has arrived or --drain seconds pass) and prints one JSON object:
confirmed messages lost (must be 0), duplicates (at-least-once: counted,
not a failure), PUBs that failed, and for each topic the longest time
without a confirmed PUB. Exit status 1 when any confirmed message is lost
or a topic never confirmed again after the fault (--fault-file).

Standard library only; the client is clients/python/sluice.py.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))
import sluice  # noqa: E402

PUB_TIMEOUT = 3.0     # a PUB unanswered this long: the connection is presumed dead
CONNECT_TIMEOUT = 1.0
RETRY_S = 0.2


class Ledger:
    def __init__(self, topics):
        self.confirmed = {t: set() for t in topics}
        self.received = {t: {} for t in topics}
        self.last_ok = {t: None for t in topics}
        self.max_gap = {t: 0.0 for t in topics}
        self.first_ok_after_fault = {t: None for t in topics}
        self.fault_at = None  # monotonic time of the fault, once known
        self.failed_pubs = 0
        self.reconnects = 0
        self.errors = {}

    def ok(self, topic, seq, now):
        self.confirmed[topic].add(seq)
        last = self.last_ok[topic]
        if last is not None:
            self.max_gap[topic] = max(self.max_gap[topic], now - last)
        self.last_ok[topic] = now
        if self.fault_at is not None and now >= self.fault_at and self.first_ok_after_fault[topic] is None:
            self.first_ok_after_fault[topic] = now

    def error(self, what):
        name = type(what).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


async def connect(addr):
    host, port = addr.rsplit(":", 1)
    return await asyncio.wait_for(sluice.connect(host, int(port), timeout=CONNECT_TIMEOUT),
                                  CONNECT_TIMEOUT * 2)


async def connect_or_wait(addr, ledger):
    """A client, or None (the failure counted) after a pause to retry."""
    try:
        return await connect(addr)
    except (OSError, asyncio.TimeoutError, sluice.SluiceError) as e:
        ledger.error(e)
        await asyncio.sleep(RETRY_S)
        return None


async def producer(topic, addr, ledger, args, stop):
    seq = 0
    period = 1.0 / args.rate
    while not stop.is_set():
        client = await connect_or_wait(addr, ledger)
        if client is None:
            continue
        dead = asyncio.Event()
        window = asyncio.Semaphore(args.window)

        async def one(n):
            try:
                await asyncio.wait_for(client.publish(topic, f"{topic}:{n}".encode()), PUB_TIMEOUT)
                ledger.ok(topic, n, time.monotonic())
            except (OSError, asyncio.TimeoutError, sluice.SluiceError) as e:
                ledger.failed_pubs += 1
                ledger.error(e)
                if not isinstance(e, sluice.ReplyError):
                    dead.set()
            finally:
                window.release()

        tasks = set()
        next_at = time.monotonic()
        while not stop.is_set() and not dead.is_set():
            await window.acquire()
            if dead.is_set():
                window.release()
                break
            task = asyncio.ensure_future(one(seq))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            seq += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = time.monotonic()
        if tasks:
            await asyncio.wait(tasks)
        client.abort()
        if dead.is_set() and not stop.is_set():
            ledger.reconnects += 1
            await asyncio.sleep(RETRY_S)


async def consumer(topic, addr, ledger, done):
    while not done.is_set():
        client = await connect_or_wait(addr, ledger)
        if client is None:
            continue
        sub = client.subscribe(topic, credit=64)

        async def receive():
            async for msg in sub:
                seq = int(msg.data.decode().rsplit(":", 1)[1])
                got = ledger.received[topic]
                got[seq] = got.get(seq, 0) + 1
                await msg.ack()

        async def watchdog():
            # A host that is gone sends no RST: only a question unanswered
            # tells an idle subscription from a dead one.
            while not done.is_set():
                await asyncio.sleep(1.0)
                await asyncio.wait_for(client.ping(), PUB_TIMEOUT)

        tasks = [asyncio.ensure_future(receive()), asyncio.ensure_future(watchdog())]
        stopper = asyncio.ensure_future(done.wait())
        finished, _ = await asyncio.wait(tasks + [stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks + [stopper]:
            t.cancel()
        for t in finished:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                ledger.error(t.exception())
        client.abort()
        if not done.is_set():
            ledger.reconnects += 1
            await asyncio.sleep(RETRY_S)


def owner(nodes, topic):
    return nodes[sluice.place_owner(nodes, topic)]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", required=True, help="host:port,... as in the brokers' cluster.nodes")
    ap.add_argument("--topics", type=int, default=32)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    ap.add_argument("--rate", type=float, default=100.0, help="PUBs a second per topic")
    ap.add_argument("--window", type=int, default=8, help="confirmed PUBs in flight per topic")
    ap.add_argument("--drain", type=float, default=30.0)
    ap.add_argument("--fault-file", help="the driver creates it at the moment of the fault")
    ap.add_argument("--ready-file", help="touched once every producer has a first +OK")
    args = ap.parse_args()

    nodes = args.nodes.split(",")
    topics = [f"t{i:02d}" for i in range(args.topics)]
    ledger = Ledger(topics)
    stop, done = asyncio.Event(), asyncio.Event()
    t0 = time.monotonic()
    # Odd topics get their consumers only when publishing ends, so the
    # fault finds thousands of messages queued there, not just in flight.
    live, late = topics[0::2], topics[1::2]
    consumers = [asyncio.ensure_future(consumer(t, owner(nodes, t), ledger, done)) for t in live]
    producers = [asyncio.ensure_future(producer(t, owner(nodes, t), ledger, args, stop))
                 for t in topics]
    if args.ready_file:
        while any(ledger.last_ok[t] is None for t in topics):
            await asyncio.sleep(0.05)
        open(args.ready_file, "w").close()
        t0 = time.monotonic()
    while time.monotonic() - t0 < args.duration:
        if args.fault_file and ledger.fault_at is None and os.path.exists(args.fault_file):
            ledger.fault_at = time.monotonic()
        await asyncio.sleep(0.05)
    stop.set()
    end = time.monotonic()
    for t in topics:  # a topic still down at the end was down until then
        if ledger.last_ok[t] is not None:
            ledger.max_gap[t] = max(ledger.max_gap[t], end - ledger.last_ok[t])
    await asyncio.gather(*producers)
    consumers += [asyncio.ensure_future(consumer(t, owner(nodes, t), ledger, done)) for t in late]
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        if all(ledger.confirmed[t] <= ledger.received[t].keys() for t in topics):
            break
        await asyncio.sleep(0.1)
    done.set()
    await asyncio.gather(*consumers)

    lost = {t: sorted(ledger.confirmed[t] - ledger.received[t].keys()) for t in topics}
    report = {
        "topics": len(topics),
        "confirmed": sum(len(s) for s in ledger.confirmed.values()),
        "received": sum(len(r) for r in ledger.received.values()),
        "lost": sum(len(v) for v in lost.values()),
        "lost_examples": {t: v[:5] for t, v in lost.items() if v},
        "duplicates": sum(n - 1 for r in ledger.received.values() for n in r.values() if n > 1),
        "stored_unconfirmed": sum(len(ledger.received[t].keys() - ledger.confirmed[t]) for t in topics),
        "failed_pubs": ledger.failed_pubs,
        "reconnects": ledger.reconnects,
        "errors": ledger.errors,
        "max_gap_s": round(max(ledger.max_gap.values()), 2),
        "gap_s": {t: round(g, 2) for t, g in ledger.max_gap.items()},
        "owner": {t: owner(nodes, t) for t in topics},
    }
    never = []
    if args.fault_file:
        never = [t for t in topics if ledger.first_ok_after_fault[t] is None]
        report["never_resumed"] = never
    print(json.dumps(report))
    return 1 if report["lost"] or never else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
