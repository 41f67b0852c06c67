"""crowd.py: the other connections of tests/bench/conns.sh (#15).

    crowd.py HOST:PORT idle N            N connections that connect, PING once and then idle
    crowd.py HOST:PORT active N RATE     N producers publishing RATE msg/s each to
                                         crowd.0..crowd.7, and 8 consumers that ACK them

Prints "ready" once every connection is up (the caller waits for it), then
runs until SIGTERM. Standard library only, raw protocol: one process holds
thousands of sockets.
"""

import asyncio
import signal
import sys


async def open_conn(host, port):
    for _ in range(50):
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"crowd.py: cannot connect to {host}:{port}")


async def idler(host, port, up):
    r, w = await open_conn(host, port)
    w.write(b"PING\r\n")
    await r.readline()
    up.release()
    await r.read()  # returns at EOF only
    return w


async def producer(host, port, rate, k, up):
    r, w = await open_conn(host, port)
    up.release()
    topic = f"crowd.{k % 8}".encode()
    payload = b"x" * 64
    line = b"PUB " + topic + b" 64\r\n" + payload + b"\r\n"
    while True:
        w.write(line)
        await r.readline()
        await asyncio.sleep(1.0 / rate)


async def consumer(host, port, k, up):
    r, w = await open_conn(host, port)
    w.write(f"SUB crowd.{k} 256\r\n".encode())
    await r.readline()
    up.release()
    while True:
        head = await r.readline()
        if not head:
            return
        parts = head.split()
        if parts[0] != b"MSG":
            continue
        await r.readexactly(int(parts[4]) + 2)
        w.write(b"ACK " + parts[2] + b"\r\n")


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    mode, n = sys.argv[2], int(sys.argv[3])
    up = asyncio.Semaphore(0)
    if mode == "idle":
        tasks = [asyncio.ensure_future(idler(host, port, up)) for _ in range(n)]
        want = n
    else:
        rate = float(sys.argv[4])
        tasks = [asyncio.ensure_future(consumer(host, port, k, up)) for k in range(8)]
        tasks += [asyncio.ensure_future(producer(host, port, rate, k, up)) for k in range(n)]
        want = n + 8
    for _ in range(want):
        await up.acquire()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
