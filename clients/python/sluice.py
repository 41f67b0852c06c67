"""sluice.py: an asyncio client for the sluice broker (standard library only).

It speaks the native text protocol of docs/protocol.md over TCP, a Unix
socket or TLS. One connection carries any number of concurrent commands:
each command's bytes are written and its reply slot queued in one
synchronous step, so replies (which the broker sends in command order) are
matched to their commands by position, and MSG pushes that arrive between
replies go to their subscription. The API is documented in docs/python.md.

    client = await sluice.connect("127.0.0.1", 7700)
    msg_id = await client.publish("jobs", b"payload")
    async for msg in client.subscribe("jobs", credit=64):
        ...
        await msg.ack()

Over a cluster, `await sluice.connect(nodes=["10.0.0.1:7700", ...])` (or
$SLUICE_NODES) gives a Cluster with the same commands: each topic goes to
its owner by rendezvous hashing (place_owner, the function src/place.c
has), over one connection per node, and a -MOVED reply is followed.
"""

import asyncio
import collections
import logging
import os
import re

__all__ = [
    "connect", "connect_cluster", "Client", "Cluster", "Message", "Subscription",
    "SluiceError", "ReplyError", "Full", "TooBig", "NotFound", "NoAuth",
    "Denied", "Busy", "Timeout", "Moved", "ConnectionLost", "ProtocolError",
    "PublishCancelled", "place_weight", "place_owner", "parse_nodes",
]

log = logging.getLogger("sluice")

# A GET or JOIN without a timeout waits in slices this long (ms), so a
# wait "forever" needs no protocol value beyond a plain number.
_FOREVER_SLICE_MS = 3_600_000


class SluiceError(Exception):
    """Base of every error this module raises."""


class ReplyError(SluiceError):
    """The broker answered `-CODE text`."""

    def __init__(self, code, text):
        super().__init__(f"-{code} {text}".rstrip())
        self.code = code
        self.text = text


class Full(ReplyError):
    """-FULL: the topic (or the server's memory) is full; nothing was enqueued."""


class TooBig(ReplyError):
    """-TOOBIG: the payload exceeds limits.max_message; nothing was enqueued."""


class NotFound(ReplyError):
    """-NOTFOUND: the message is not (any more) in flight to this connection."""


class NoAuth(ReplyError):
    """-NOAUTH: authentication required, or AUTH failed."""


class Denied(ReplyError):
    """-DENIED: the user may not use that topic."""


class Busy(ReplyError):
    """-BUSY: the server has too many connections."""


class Timeout(ReplyError, TimeoutError):
    """-TIMEOUT: GET or JOIN found nothing in time."""


class Moved(ReplyError):
    """-MOVED topic host:port: this node does not own the topic; `addr` does
    (as the daemons' cluster.nodes spell it). A Cluster follows it."""

    def __init__(self, code, text):
        super().__init__(code, text)
        self.topic, _, self.addr = text.partition(" ")


class ConnectionLost(SluiceError, ConnectionError):
    """The connection closed or failed.

    `sent` tells a publish's outcome: False means its bytes were never
    handed to the socket (nothing was enqueued; safe to retry), True means
    they were written and the broker may or may not have enqueued it."""

    def __init__(self, text, sent=None):
        super().__init__(text)
        self.sent = sent


class PublishCancelled(asyncio.CancelledError):
    """A publish() cancelled after its bytes were written to the socket.

    The broker will still answer that PUB, so its fate is not lost:
    `await e.outcome` gives the message id once +OK comes (it was
    enqueued), or raises the broker's error or ConnectionLost (it was not,
    or the connection died first and the outcome is unknown). A publish
    cancelled before it was written raises a plain CancelledError: not sent."""

    def __init__(self, outcome):
        super().__init__("publish cancelled after it was sent")
        self.sent = True
        self.outcome = outcome


class ProtocolError(SluiceError):
    """The broker sent something this client cannot parse; the connection is closed."""


_ERRORS = {"FULL": Full, "TOOBIG": TooBig, "NOTFOUND": NotFound, "NOAUTH": NoAuth,
           "DENIED": Denied, "BUSY": Busy, "TIMEOUT": Timeout, "MOVED": Moved}


def _reply_error(line):
    code, _, text = line[1:].partition(" ")
    return _ERRORS.get(code, ReplyError)(code, text)


def _ms(seconds):
    if seconds < 0:
        raise ValueError("negative time")
    return int(seconds * 1000)


_TOPIC_RE = re.compile(r"[A-Za-z0-9._:-]{1,255}")


def _check_topic(topic):
    if isinstance(topic, bytes):
        topic = topic.decode("ascii")
    if not isinstance(topic, str) or not _TOPIC_RE.fullmatch(topic):
        raise ValueError(f"bad topic name {topic!r}")
    return topic


def parse_stats(body):
    """The STATS body (a flat YAML mapping with one nested level) as a dict."""
    out, inner = {}, None
    for raw in body.split("\n"):
        if not raw.strip():
            continue
        key, _, value = raw.strip().partition(":")
        value = value.strip()
        if raw.startswith(" ") and inner is not None:
            inner[key] = _scalar(value)
        elif value == "":
            inner = out[key] = {}
        else:
            inner = None
            out[key] = _scalar(value)
    return out


def _scalar(v):
    if v.isdigit():
        return int(v)
    if v in ("true", "false"):
        return v == "true"
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


class Message:
    """One delivered message; it is in flight to this connection until
    ack(), nack(), its ack deadline, or the connection's close."""

    __slots__ = ("topic", "id", "attempt", "data", "_client")

    def __init__(self, client, topic, msg_id, attempt, data):
        self._client = client
        self.topic = topic
        self.id = msg_id
        self.attempt = attempt
        self.data = data

    async def ack(self):
        """Acknowledge: the message is removed for good."""
        await self._client._command(f"ACK {self.id}\r\n".encode())

    async def nack(self, delay=None):
        """Give the message back, ready again at once or after `delay` seconds."""
        extra = "" if delay is None else f" {_ms(delay)}"
        await self._client._command(f"NACK {self.id}{extra}\r\n".encode())

    async def touch(self):
        """Restart the message's ack deadline."""
        await self._client._command(f"TOUCH {self.id}\r\n".encode())

    def __repr__(self):
        return f"<Message {self.topic} id={self.id} attempt={self.attempt} {len(self.data)}B>"


class _Slot:
    """One command's place in the reply stream. The reader fills it even
    when the awaiting task has gone (cancelled), so the stream stays in step."""

    __slots__ = ("kind", "topic", "future", "on_orphan", "sub")

    def __init__(self, kind, topic, future, on_orphan=None, sub=None):
        self.kind = kind          # "pub", "get", "stats", "sub", "unsub", "cmd"
        self.topic = topic
        self.future = future
        self.on_orphan = on_orphan  # called with the reply if nobody awaits it
        self.sub = sub            # the Subscription a SUB makes live


class _Iterated:
    """`async for` over next() and `async with`, for a subscription that
    has _start(), next(), close_nowait() and close(): leaving the loop
    closes it."""

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        try:
            while True:
                try:
                    msg = await self.next()
                except StopAsyncIteration:
                    return
                yield msg
        finally:
            self.close_nowait()

    async def __aenter__(self):
        await self._start()
        return self

    async def __aexit__(self, *exc):
        await self.close()


class Subscription(_Iterated):
    """`async for msg in client.subscribe(topic)`; also `async with`.

    Leaving the loop (break, an exception, cancellation) closes the
    subscription: UNSUB is sent, and messages pushed but not yet handed to
    the loop are given back (NACK) at once, so none is lost or stranded.
    Messages already handed out stay the caller's to ack or nack."""

    def __init__(self, client, topic, credit):
        self._client = client
        self.topic = topic
        self.credit = credit
        self._queue = collections.deque()
        self._waiter = None
        self._error = None
        self._started = False
        self.closed = False

    async def _start(self):
        if not self._started:
            self._started = True
            self._client._subs_pending.add(self.topic)
            await self._client._command(
                f"SUB {self.topic} {self.credit}\r\n".encode(), kind="sub", topic=self.topic,
                extra=self)

    def _push(self, msg):
        if self.closed:
            self._client._give_back(msg)
            return
        self._queue.append(msg)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc):
        self._error = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self):
        """The next message (what `async for` calls)."""
        await self._start()
        while not self._queue:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise StopAsyncIteration
            self._waiter = self._client._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    def close_nowait(self):
        """Send UNSUB and give back the messages not handed out; no wait."""
        if self.closed:
            return
        self.closed = True
        while self._queue:
            self._client._give_back(self._queue.popleft())
        if self._started and not self._client._closed:
            self._client._subs_pending.add(self.topic)
            self._client._send_nowait(f"UNSUB {self.topic}\r\n".encode(), kind="unsub",
                                      topic=self.topic)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def close(self):
        """Close, then wait for the broker's +OK to the UNSUB."""
        was_open = not self.closed and self._started
        self.close_nowait()
        if was_open and not self._client._closed:
            await self._client.ping()


class Client:
    """One connection to sluiced. Make it with `await sluice.connect(...)`."""

    def __init__(self, reader, writer, max_pending=4096):
        self._loop = asyncio.get_running_loop()
        self._reader = reader
        self._writer = writer
        self._slots = collections.deque()
        self._subs = {}             # topic -> Subscription, once its SUB got +OK
        self._subs_pending = set()  # topics with a SUB or UNSUB unanswered
        self._closed = False
        self._error = None
        self._window = asyncio.Semaphore(max_pending)
        self._out = []              # commands of this loop turn, written as one
        self._flush_handle = None
        self.in_doubt = 0  # publishes cancelled after their bytes were written
        self._read_task = self._loop.create_task(self._read_loop())

    # ---- sending ----

    def _send_nowait(self, data, kind="cmd", topic=None, on_orphan=None, sub=None):
        """Write one command and queue its reply slot, in one step."""
        if self._closed:
            raise self._error or ConnectionLost("client is closed", sent=False)
        fut = self._loop.create_future()
        self._write(data)
        self._slots.append(_Slot(kind, topic, fut, on_orphan, sub))
        return fut

    def _write(self, data):
        """Queue bytes for the socket. Everything queued in one turn of the
        event loop goes out in one write: a pipelining producer pays one
        send() per turn, not one per command. Order is kept, so replies
        still match their slots by position."""
        self._out.append(data)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self):
        self._flush_handle = None
        if self._out and not self._closed:
            data = b"".join(self._out)
            self._out.clear()
            self._writer.write(data)

    async def _command(self, data, kind="cmd", topic=None, extra=None, on_orphan=None):
        fut = self._send_nowait(data, kind, topic, on_orphan, extra)
        await self._writer.drain()
        return await fut

    async def publish(self, topic, data, delay=None):
        """Enqueue `data` (bytes) in `topic`; return its id once +OK comes.

        Many tasks may publish at once: their PUBs are pipelined, unanswered,
        on this one connection. Under `overflow: block` a full topic makes
        this wait until there is room, as `await queue.put()` does.

        Cancellation never leaves you guessing: cancelled while waiting for
        the client's window (max_pending unanswered PUBs) it was NOT sent and
        plain CancelledError is raised. Cancelled after its bytes were
        written, PublishCancelled (a CancelledError) is raised, whose
        `outcome` future resolves to the id when the broker's +OK comes;
        `client.in_doubt` counts those. Raises Full, TooBig, Denied, ... or
        ConnectionLost (whose `sent` says whether the bytes had been
        written)."""
        topic = _check_topic(topic)
        if isinstance(data, str):
            data = data.encode()
        head = f"PUB {topic} {len(data)}" + ("" if delay is None else f" delay={_ms(delay)}")
        await self._window.acquire()
        try:
            fut = self._send_nowait(b"".join((head.encode(), b"\r\n", data, b"\r\n")),
                                    "pub", topic)
        except ConnectionLost as e:
            self._window.release()
            raise ConnectionLost(str(e), sent=False) from None  # nothing was written
        except BaseException:
            self._window.release()
            raise
        fut.add_done_callback(self._pub_done)
        try:
            await self._writer.drain()
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            self.in_doubt += 1
            raise PublishCancelled(fut) from None
        except ConnectionLost as e:
            raise ConnectionLost(str(e), sent=True) from None
        except ConnectionError as e:
            raise ConnectionLost(str(e), sent=True) from e

    def _pub_done(self, fut):
        self._window.release()
        if not fut.cancelled():
            fut.exception()  # an outcome nobody awaits is not an "unretrieved" error

    def subscribe(self, topic, credit=64):
        """A Subscription: `async for msg in client.subscribe(topic)`.

        At most `credit` messages are in flight to it unacknowledged."""
        topic = _check_topic(topic)
        if topic in self._subs or topic in self._subs_pending:
            raise ValueError(f"already subscribed to {topic}")
        return Subscription(self, topic, int(credit))

    async def get(self, topic, timeout=None):
        """Pull one message: wait up to `timeout` seconds (None: for ever,
        0: not at all) and raise Timeout if none came. While it waits, later
        commands on this connection wait too (use another connection, or
        subscribe(), for long waits). A message that arrives for a cancelled
        get() is given back (NACK), so it is neither lost nor stranded.
        Not allowed on a topic this client is subscribed to (a GET's reply
        could not be told from a push)."""
        topic = _check_topic(topic)
        if topic in self._subs or topic in self._subs_pending:
            raise ValueError(f"get() on subscribed topic {topic}")
        while True:
            ms = _FOREVER_SLICE_MS if timeout is None else _ms(timeout)
            try:
                return await self._command(f"GET {topic} {ms}\r\n".encode(), kind="get",
                                           topic=topic, on_orphan=self._orphan_get)
            except Timeout:
                if timeout is not None:
                    raise

    def _orphan_get(self, reply):
        if isinstance(reply, Message):
            self._give_back(reply)

    async def join(self, topic, timeout=None):
        """Wait until the topic holds no message at all (like
        asyncio.Queue.join()); raise Timeout after `timeout` seconds."""
        topic = _check_topic(topic)
        arg = "" if timeout is None else f" {_ms(timeout)}"
        await self._command(f"JOIN {topic}{arg}\r\n".encode())

    async def stats(self, topic=None):
        """The server's (or a topic's) counters as a dict."""
        arg = "" if topic is None else " " + _check_topic(topic)
        return parse_stats(await self._command(f"STATS{arg}\r\n".encode(), kind="stats"))

    async def topics(self):
        body = await self._command(b"TOPICS\r\n", kind="stats")
        return [t for t in body.split("\n") if t]

    async def ping(self):
        await self._command(b"PING\r\n")

    async def ack(self, *ids):
        """Acknowledge many messages (or ids) in one command; all or nothing."""
        words = " ".join(str(getattr(i, "id", i)) for i in ids)
        return await self._command(f"ACK {words}\r\n".encode())

    def _give_back(self, msg):
        if not self._closed:
            self._send_nowait(f"NACK {msg.id}\r\n".encode())

    async def close(self, timeout=5.0):
        """QUIT after every command sent so far is answered (waiting at most
        `timeout` seconds: a PUB parked on a full topic may never be), then
        close. Commands still unanswered fail with ConnectionLost."""
        if self._closed:
            return
        try:
            fut = self._send_nowait(b"QUIT\r\n")
            await asyncio.wait_for(fut, timeout)
        except (SluiceError, ConnectionError, TimeoutError):
            pass
        self._shutdown(ConnectionLost("client closed", sent=False))
        try:
            await self._read_task
        except BaseException:
            pass

    def abort(self):
        """Close at once; unanswered commands fail with ConnectionLost."""
        self._shutdown(ConnectionLost("client aborted"))

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # ---- reading ----

    async def _read_loop(self):
        try:
            while True:
                line = await self._reader.readline()
                if not line.endswith(b"\n"):
                    raise ConnectionLost("connection closed by the broker")
                await self._dispatch(line.rstrip(b"\r\n").decode("ascii", "replace"))
        except asyncio.CancelledError:
            self._shutdown(ConnectionLost("client closed"))
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            self._shutdown(e if isinstance(e, ConnectionLost)
                           else ConnectionLost(f"connection lost: {e!r}"))
        except ProtocolError as e:
            self._shutdown(e)

    async def _dispatch(self, line):
        if line.startswith("MSG "):
            msg = await self._read_msg(line)
            sub = self._subs.get(msg.topic)
            if sub is not None:
                sub._push(msg)
                return
            slot = self._slots[0] if self._slots else None
            if slot is None or slot.kind != "get" or slot.topic != msg.topic:
                raise ProtocolError(f"unexpected MSG for {msg.topic}")
            self._resolve(self._slots.popleft(), msg)
            return
        if not self._slots:
            if line.startswith("-BUSY"):
                raise ConnectionLost(line)
            raise ProtocolError(f"unexpected reply {line!r}")
        slot = self._slots.popleft()
        if line.startswith("-"):
            if slot.kind in ("sub", "unsub"):
                self._subs_pending.discard(slot.topic)
            self._resolve(slot, _reply_error(line))
            return
        if slot.kind == "stats":
            n = line.split(" ", 1)[1]
            body = await self._reader.readexactly(int(n) + 2)
            self._resolve(slot, body[:-2].decode())
            return
        if slot.kind == "sub":
            self._subs_pending.discard(slot.topic)
            self._subs[slot.topic] = slot.sub
        elif slot.kind == "unsub":
            self._subs_pending.discard(slot.topic)
            self._subs.pop(slot.topic, None)
        value = line[4:] if line.startswith("+OK ") else line
        if slot.kind == "pub":
            value = int(value)
        self._resolve(slot, value)

    async def _read_msg(self, line):
        try:
            _, topic, msg_id, attempt, n = line.split(" ")
            data = await self._reader.readexactly(int(n) + 2)
        except ValueError:
            raise ProtocolError(f"bad MSG line {line!r}") from None
        return Message(self, topic, int(msg_id), int(attempt), data[:-2])

    def _resolve(self, slot, value):
        fut = slot.future
        if fut.done():  # its task was cancelled: nobody will see the reply
            if slot.on_orphan is not None:
                slot.on_orphan(value)
            return
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)

    def _shutdown(self, exc):
        if self._closed:
            return
        self._closed = True
        self._error = exc
        while self._slots:
            fut = self._slots.popleft().future
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # a reply nobody awaits is not an "unretrieved" error
        for sub in list(self._subs.values()):
            sub._fail(exc)
        self._subs.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out.clear()
        self._writer.close()
        if not self._read_task.done() and asyncio.current_task() is not self._read_task:
            self._read_task.cancel()


async def connect(host=None, port=None, *, nodes=None, path=None, user=None, password=None,
                  ssl=None, server_hostname=None, timeout=10.0, max_pending=4096):
    """Connect (TCP, or a Unix socket with `path=`, or TLS with `ssl=` an
    ssl.SSLContext), authenticate if `user` is given, and return a Client.
    `timeout` bounds connecting, the TLS handshake and AUTH; it raises
    TimeoutError. `max_pending` bounds the unanswered PUBs of one client.

    With `nodes=` (a list of "host:port", or one string with commas), or
    with neither host nor path given and $SLUICE_NODES set, return a Cluster
    over those nodes instead (connect_cluster), which takes the same
    keyword arguments for each of its connections."""
    if nodes is None and host is None and path is None and os.environ.get("SLUICE_NODES"):
        nodes = os.environ["SLUICE_NODES"]
    if nodes is not None:
        if host is not None or port is not None or path is not None:
            raise ValueError("host/port/path and nodes exclude each other")
        return await connect_cluster(nodes, user=user, password=password, ssl=ssl,
                                     server_hostname=server_hostname, timeout=timeout,
                                     max_pending=max_pending)
    host = "127.0.0.1" if host is None else host
    port = 7700 if port is None else port

    async def _open():
        kw = {} if ssl is None else {"ssl": ssl}
        if server_hostname is not None:
            kw["server_hostname"] = server_hostname
        if path is not None:
            r, w = await asyncio.open_unix_connection(path, **kw)
        else:
            r, w = await asyncio.open_connection(host, port, **kw)
        client = Client(r, w, max_pending=max_pending)
        try:
            if user is not None:
                await client._command(f"AUTH {user} {password}\r\n".encode())
            else:
                await client.ping()  # a -BUSY refusal shows here, not later
        except BaseException:
            client.abort()
            raise
        return client

    if isinstance(host, str) and host.startswith("unix:") and path is None:
        path = host[5:]
    return await asyncio.wait_for(_open(), timeout)


# ---- placement: which node owns a topic (src/place.c, docs/scaling.md) ----

_MASK64 = (1 << 64) - 1
_FNV_OFFSET = 0xcbf29ce484222325
_FNV_PRIME = 0x100000001b3


def _fnv(h, data):
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xff51afd7ed558ccd) & _MASK64
    k ^= k >> 33
    k = (k * 0xc4ceb9fe1a85ec53) & _MASK64
    k ^= k >> 33
    return k


def place_weight(node, topic):
    """The weight of `node` (its address as the node list spells it) for
    `topic`: MurmurHash3's finalizer over FNV-1a-64 of node, one 0x00 byte
    and topic. The same number as src/place.c's place_weight."""
    node = node.encode() if isinstance(node, str) else node
    topic = topic.encode() if isinstance(topic, str) else topic
    return _fmix64(_fnv(_fnv(_FNV_OFFSET, node), b"\0" + topic))


def place_owner(nodes, topic):
    """The index in `nodes` of topic's owner: the highest weight wins, the
    lower index on a tie (rendezvous hashing)."""
    best, top = 0, place_weight(nodes[0], topic)
    for i in range(1, len(nodes)):
        w = place_weight(nodes[i], topic)
        if w > top:
            best, top = i, w
    return best


_NODE_BAD = re.compile(r'[\x00-\x20\x7f,"\\]')


def _split_addr(addr):
    """'host:port' or '[v6]:port' into (host, port), or ValueError."""
    if _NODE_BAD.search(addr) or not addr or len(addr) > 127:
        raise ValueError(f"bad node address {addr!r}")
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad node address {addr!r}: use [v6]:port")
        port = rest[1:]
    else:
        host, sep, port = addr.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"bad node address {addr!r}: missing :port")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"bad node address {addr!r}: use host:port, port 1..65535")
    return host, int(port)


def parse_nodes(nodes):
    """A node list as a list of addresses, checked: a list (or tuple), or
    one string "host:port,host:port" as $SLUICE_NODES and `sluice --nodes`
    take it (blanks around an entry dropped). No entry twice."""
    if isinstance(nodes, str):
        nodes = [n.strip(" \t") for n in nodes.split(",")]
    nodes = list(nodes)
    if not nodes:
        raise ValueError("empty node list")
    for n in nodes:
        _split_addr(n)
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"a node is listed twice in {nodes!r}")
    return nodes


# How many times a command follows -MOVED before giving up.
MAX_HOPS = 3


class _ClusterSubscription(_Iterated):
    """A Subscription on the topic's owner, found when it starts (a -MOVED
    answer to SUB moves it); otherwise it is that node's Subscription."""

    def __init__(self, cluster, topic, credit):
        self._cluster = cluster
        self.topic = topic
        self.credit = credit
        self._sub = None
        self.closed = False

    async def _start(self):
        if self._sub is None:
            self._sub = await self._cluster._routed(self.topic, self._try)
        return self._sub

    async def _try(self, client):
        sub = client.subscribe(self.topic, self.credit)
        await sub._start()
        return sub

    async def next(self):
        return await (await self._start()).next()

    def close_nowait(self):
        self.closed = True
        if self._sub is not None:
            self._sub.close_nowait()

    async def close(self):
        self.closed = True
        if self._sub is not None:
            await self._sub.close()


class Cluster:
    """The nodes of a cluster as one client: each topic's commands go to its
    owner (place_owner over the node list, spelled exactly as the daemons'
    cluster.nodes), over one connection per node, made when first needed.
    A -MOVED answer (the list is stale) is followed, at most MAX_HOPS
    times, with one warning logged, and remembered for that topic.
    Make it with `await sluice.connect(nodes=...)` or connect_cluster()."""

    def __init__(self, nodes, **connect_kw):
        self.nodes = parse_nodes(nodes)
        self._kw = connect_kw
        self._conns = {}       # address -> Task giving its Client
        self._moved = {}       # topic -> the address a -MOVED named
        self._warned = False
        self._closed = False

    def owner(self, topic):
        """The address topic's commands go to first."""
        topic = _check_topic(topic)
        return self._moved.get(topic) or self.nodes[place_owner(self.nodes, topic)]

    async def client(self, addr):
        """The connection to node `addr` (made now if there is none)."""
        if self._closed:
            raise ConnectionLost("cluster is closed", sent=False)
        task = self._conns.get(addr)
        if task is not None and task.done() and (task.cancelled() or task.exception() or
                                                 task.result()._closed):
            task = None  # failed, or lost since: connect again
        if task is None:
            host, port = _split_addr(addr)
            task = asyncio.ensure_future(connect(host, port, **self._kw))
            self._conns[addr] = task
        return await asyncio.shield(task)

    async def _routed(self, topic, fn):
        """fn(client) on topic's owner, following -MOVED."""
        addr = self.owner(topic)
        for hop in range(MAX_HOPS + 1):
            try:
                return await fn(await self.client(addr))
            except Moved as e:
                if hop == MAX_HOPS:
                    raise
                if not self._warned:
                    self._warned = True
                    log.warning("the node list looks stale: %s says %s is on %s "
                                "(following -MOVED)", addr, topic, e.addr)
                self._moved[topic] = addr = e.addr

    async def publish(self, topic, data, delay=None):
        """Client.publish on the topic's owner."""
        return await self._routed(topic, lambda c: c.publish(topic, data, delay))

    def subscribe(self, topic, credit=64):
        """Client.subscribe on the topic's owner (found when it starts)."""
        return _ClusterSubscription(self, _check_topic(topic), int(credit))

    async def get(self, topic, timeout=None):
        return await self._routed(topic, lambda c: c.get(topic, timeout))

    async def join(self, topic, timeout=None):
        return await self._routed(topic, lambda c: c.join(topic, timeout))

    async def stats(self, topic=None):
        """A topic's counters (from its owner) as a dict; without a topic,
        {address: that node's server counters} for every node."""
        if topic is not None:
            return await self._routed(topic, lambda c: c.stats(topic))
        out = {}
        for addr in self.nodes:
            out[addr] = await (await self.client(addr)).stats()
        return out

    async def topics(self):
        """Every node's topics, once each."""
        seen = {}
        for addr in self.nodes:
            for t in await (await self.client(addr)).topics():
                seen.setdefault(t, None)
        return list(seen)

    async def ping(self):
        """PING every node."""
        for addr in self.nodes:
            await (await self.client(addr)).ping()

    async def ack(self, *msgs):
        """Acknowledge many messages, one ACK per node they came from."""
        by_client = {}
        for m in msgs:
            if not isinstance(m, Message):
                raise ValueError("Cluster.ack takes messages (an id alone names no node)")
            by_client.setdefault(m._client, []).append(m.id)
        for client, ids in by_client.items():
            await client.ack(*ids)

    async def close(self, timeout=5.0):
        """Close every node's connection (Client.close)."""
        self._closed = True
        tasks, self._conns = list(self._conns.values()), {}
        for task in tasks:
            try:
                client = await task
            except BaseException:
                continue
            await client.close(timeout)

    def abort(self):
        self._closed = True
        for task in self._conns.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().abort()
            else:
                task.cancel()
        self._conns = {}

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


async def connect_cluster(nodes=None, **connect_kw):
    """A Cluster over `nodes` (a list of "host:port", or one string with
    commas; None: $SLUICE_NODES). It connects to a node when a command
    first needs it; `connect_kw` (user, password, ssl, timeout, ...) is
    passed to connect() for each."""
    if nodes is None:
        nodes = os.environ.get("SLUICE_NODES")
        if not nodes:
            raise ValueError("no node list: pass nodes= or set $SLUICE_NODES")
    return Cluster(nodes, **connect_kw)
