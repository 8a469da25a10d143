#!/usr/bin/python3
"""The agent workloads of bench/agents_bench.cpp, written the seed documents' way.

The seed designs tern replaces were Python asyncio agent systems. This file rebuilds
their three messaging pieces with the standard library only, as the documents describe
them, and times the same workloads as bench/agents_bench.cpp:

  AsyncMessageQueue  a deque guarded by an asyncio.Condition, with priorities (higher
                     first, FIFO within a priority) and predicate-based receive:
                     `async def put(msg)` inserts and notifies, `async def get(predicate=None)`
                     waits on the condition until a matching message is queued.
  EventBus           publish() awaits delivery into each subscriber's queue in turn, with
                     error isolation (one failing subscriber does not stop the others).
  RequestReply       request() files a future under a fresh correlation id, puts the
                     request in the responder's queue and awaits
                     asyncio.wait_for(future, timeout); the responder resolves the future
                     by id (a reply for an id no longer pending is counted as late).

Workloads (each the same batch shape as its tern counterpart):
  mailbox          a producer puts K=256 messages into a consumer's queue, then waits until
                   the consumer task has taken them all: ns per message.
  publish_s{1,8,64}[_shared|_fresh]  64 publishes to one topic with S subscriber tasks,
                   then wait until every subscriber has all 64: ns per publish and per
                   delivery. _shared: every message carries one 64-byte bytes object;
                   _fresh: a new 64-byte bytes copy per publish.
  request_reply_1  one request in flight at a time: ns per round trip.
  request_reply_64 64 concurrent requests (asyncio.gather), then the next 64.

Correlation ids come from itertools.count() (cheaper than the uuid4() strings such
systems often use), so the Python figures are if anything flattering.

Each workload is calibrated, then run 3 times for about 0.35 s each (under 2 s per
workload); the median is reported. Times are wall time (time.perf_counter) and the
thread's CPU time (time.thread_time); on a loaded machine compare CPU times.

Usage: /usr/bin/python3 bench/python/seed_agents.py [--quick] [--only NAME] > out.json
"""

import argparse
import asyncio
import collections
import itertools
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional


# ---- the seed's building blocks ------------------------------------------------------

@dataclass(slots=True)
class Message:
    type: int = 0
    value: int = 0
    payload: Optional[bytes] = None
    topic: Optional[str] = None
    sender: Optional[str] = None
    receiver: Optional[str] = None
    correlation: Optional[int] = None
    kind: str = "event"
    priority: int = 0


class QueueFull(Exception):
    pass


class AsyncMessageQueue:
    """A Condition-guarded deque with priorities and predicate-based receive."""

    def __init__(self, maxsize: int = 0):
        self._items: collections.deque = collections.deque()
        self._cond = asyncio.Condition()
        self._maxsize = maxsize

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, msg: Message) -> None:
        async with self._cond:
            items = self._items
            if self._maxsize and len(items) >= self._maxsize:
                raise QueueFull()
            if not items or items[-1].priority >= msg.priority:
                items.append(msg)
            else:
                # Higher priority first, FIFO among equals.
                i = len(items)
                while i > 0 and items[i - 1].priority < msg.priority:
                    i -= 1
                items.insert(i, msg)
            self._cond.notify_all()  # waiters may have different predicates

    def _find(self, predicate: Optional[Callable[[Message], bool]]) -> int:
        if predicate is None:
            return 0 if self._items else -1
        for i, m in enumerate(self._items):
            if predicate(m):
                return i
        return -1

    async def get(self, predicate: Optional[Callable[[Message], bool]] = None) -> Message:
        async with self._cond:
            found = -1

            def ready() -> bool:
                nonlocal found
                found = self._find(predicate)
                return found >= 0

            await self._cond.wait_for(ready)
            if found == 0:
                return self._items.popleft()
            msg = self._items[found]
            del self._items[found]
            return msg


class EventBus:
    """publish() awaits delivery into every subscriber's queue; errors are isolated."""

    def __init__(self):
        self._subscribers: dict = collections.defaultdict(list)
        self.errors = 0
        self.published = 0

    def subscribe(self, topic: str, queue: AsyncMessageQueue) -> None:
        self._subscribers[topic].append(queue)

    async def publish(self, topic: str, msg: Message) -> int:
        msg.topic = topic
        self.published += 1
        delivered = 0
        for queue in self._subscribers.get(topic, ()):
            try:
                await queue.put(msg)
                delivered += 1
            except Exception:  # one bad subscriber must not stop the others
                self.errors += 1
        return delivered


class RequestReply:
    """Futures keyed by correlation id, resolved by the responder."""

    def __init__(self):
        self._pending: dict = {}
        self._ids = itertools.count(1)
        self.late = 0
        self.timeouts = 0

    async def request(self, queue: AsyncMessageQueue, msg: Message, timeout: float = 10.0) -> Message:
        cid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        msg.correlation = cid
        msg.kind = "request"
        try:
            await queue.put(msg)
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise
        finally:
            self._pending.pop(cid, None)

    def resolve(self, request: Message, reply: Message) -> bool:
        fut = self._pending.get(request.correlation)
        if fut is None or fut.done():
            self.late += 1  # the requester already gave up: drop it
            return False
        reply.correlation = request.correlation
        reply.kind = "reply"
        fut.set_result(reply)
        return True


# ---- workloads: each returns (ops, wall_s, cpu_s, extra) for `batches` batches ---------

MAILBOX_K = 256
PUBLISH_BATCH = 64
PAYLOAD = bytes(range(1, 65))


async def mailbox(batches: int):
    q = AsyncMessageQueue()
    received = 0
    target = 0
    done = asyncio.Event()

    async def consumer():
        nonlocal received
        while True:
            await q.get()
            received += 1
            if received >= target:
                done.set()

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(batches):
        target += MAILBOX_K
        done.clear()
        for i in range(MAILBOX_K):
            await q.put(Message(type=1, value=i))
        await done.wait()
    t1, c1 = time.perf_counter(), time.thread_time()
    task.cancel()
    assert received == batches * MAILBOX_K
    return batches * MAILBOX_K, t1 - t0, c1 - c0, {}


def make_publish(subs: int, payload_mode: str):
    async def publish(batches: int):
        bus = EventBus()
        queues = [AsyncMessageQueue() for _ in range(subs)]
        for q in queues:
            bus.subscribe("bench/topic", q)
        counts = [0] * subs
        target = 0
        remaining = subs
        done = asyncio.Event()
        checksum = 0

        async def subscriber(i: int, q: AsyncMessageQueue):
            nonlocal remaining, checksum
            while True:
                m = await q.get()
                if m.payload is not None:
                    checksum += m.payload[0]
                counts[i] += 1
                if counts[i] == target:
                    remaining -= 1
                    if remaining == 0:
                        done.set()

        tasks = [asyncio.create_task(subscriber(i, q)) for i, q in enumerate(queues)]
        await asyncio.sleep(0)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(batches):
            target += PUBLISH_BATCH
            remaining = subs
            done.clear()
            for i in range(PUBLISH_BATCH):
                if payload_mode == "shared":
                    payload = PAYLOAD
                elif payload_mode == "fresh":
                    payload = bytes(bytearray(PAYLOAD))  # a new 64-byte buffer
                else:
                    payload = None
                await bus.publish("bench/topic", Message(type=2, value=i, payload=payload))
            await done.wait()
        t1, c1 = time.perf_counter(), time.thread_time()
        for t in tasks:
            t.cancel()
        assert all(c == batches * PUBLISH_BATCH for c in counts) and bus.errors == 0
        return batches * PUBLISH_BATCH, t1 - t0, c1 - c0, {"deliveries": batches * PUBLISH_BATCH * subs}

    return publish


def make_request_reply(inflight: int):
    async def request_reply(batches: int):
        rr = RequestReply()
        q = AsyncMessageQueue()

        async def responder():
            while True:
                m = await q.get()
                rr.resolve(m, Message(value=m.value + 1))

        task = asyncio.create_task(responder())
        await asyncio.sleep(0)
        answered = 0
        t0, c0 = time.perf_counter(), time.thread_time()
        if inflight == 1:
            for i in range(batches):
                r = await rr.request(q, Message(value=i), timeout=10.0)
                answered += r.value > 0
        else:
            for _ in range(batches):
                replies = await asyncio.gather(
                    *(rr.request(q, Message(value=i), timeout=10.0) for i in range(inflight)))
                answered += len(replies)
        t1, c1 = time.perf_counter(), time.thread_time()
        task.cancel()
        assert answered == batches * inflight and rr.late == 0 and rr.timeouts == 0
        return batches * inflight, t1 - t0, c1 - c0, {}

    return request_reply


WORKLOADS = {
    "mailbox": mailbox,
    "request_reply_1": make_request_reply(1),
    "request_reply_64": make_request_reply(64),
}
for _subs in (1, 8, 64):
    for _mode, _suffix in (("none", ""), ("shared", "_shared"), ("fresh", "_fresh")):
        WORKLOADS[f"publish_s{_subs}{_suffix}"] = make_publish(_subs, _mode)


def measure(name: str, fn, per_run_s: float, runs: int) -> dict:
    # Calibrate: grow the batch count until one run takes a measurable time.
    batches = 1
    while True:
        ops, wall, _, _ = asyncio.run(fn(batches))
        if wall >= per_run_s / 10 or batches >= 1 << 20:
            break
        batches *= 4
    batches = max(1, int(batches * per_run_s / max(wall, 1e-6)))
    walls, cpus = [], []
    extra: dict = {}
    for _ in range(runs):
        ops, wall, cpu, extra = asyncio.run(fn(batches))
        walls.append(wall * 1e9 / ops)
        cpus.append(cpu * 1e9 / ops)
    out = {
        "ops": ops,
        "ns_per_op": statistics.median(walls),
        "cpu_ns_per_op": statistics.median(cpus),
        "runs_ns_per_op": walls,
    }
    if "deliveries" in extra:
        per_delivery = ops / extra["deliveries"]
        out["ns_per_delivery"] = out["ns_per_op"] * per_delivery
        out["cpu_ns_per_delivery"] = out["cpu_ns_per_op"] * per_delivery
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--only", action="append", help="run only this workload (repeatable)")
    args = ap.parse_args()
    per_run_s, runs = (0.05, 1) if args.quick else (0.35, 3)
    names = args.only or list(WORKLOADS)
    result = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "clock": "time.perf_counter (wall) and time.thread_time (cpu)",
        "workloads": {},
    }
    for name in names:
        start = time.perf_counter()
        result["workloads"][name] = measure(name, WORKLOADS[name], per_run_s, runs)
        result["workloads"][name]["seconds"] = round(time.perf_counter() - start, 3)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
