#!/usr/bin/env python3
"""The transport floor of SSE streaming: what any Python HTTP server pays to send the same bytes.

`sim_capacity.py` starts this as a reference next to the simulator. It is a bare asyncio
HTTP/1.1 server with no framework, no routing table and no simulation: it replays a fixed list
of recorded SSE events (the simulator's own chunks for the benchmark's request) to every
`POST /generate`, one event per stream per step, with the same number of running slots, the
same step time and the same writes per request as the simulator:

- the first event goes out together with the response headers, in one write;
- every further event is one HTTP/1.1 chunk, one write;
- the last event, `data: [DONE]` and the end of the chunked body share the final write.

Streams that find every slot taken wait in a FIFO queue, as in the simulator. The CPU time
this process spends per request is therefore the cost of HTTP streaming itself on this machine
(the event loop, the socket writes, loopback TCP), a cost real SGLang's uvicorn pays too.
The simulator's own overhead per request is its CPU time minus this floor.

It answers just enough of the simulator's API for the benchmark client: `GET /metrics` (the
`num_queue_reqs` and `num_running_reqs` gauges), `GET /_sim/state` and
`POST /_sim/reset_stats` (process CPU, streams finished, send lag). Listens on 127.0.0.1 only.

Run (sglang_sim importable, e.g. PYTHONPATH=simulator): python stream_floor.py --port P --events FILE [--slots 64] [--step-ms 32.6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections import deque

# The simulator's own ring of lag samples, so both servers report send lag the same way.
from sglang_sim.engine import LagRing

HEADERS = (b"HTTP/1.1 200 OK\r\n"
           b"content-type: text/event-stream; charset=utf-8\r\n"
           b"cache-control: no-cache\r\n"
           b"transfer-encoding: chunked\r\n"
           b"server: stream-floor\r\n\r\n")
DONE = b"data: [DONE]\n\n"


def frame(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


class Stream:
    __slots__ = ("sent", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.sent = 0


class Floor:
    def __init__(self, events: list[bytes], slots: int, step_s: float) -> None:
        self.events = events
        self.slots = slots
        self.step_s = step_s
        self.waiting: deque[Stream] = deque()
        self.running: list[Stream] = []
        self.finished = 0
        self.send_lag = LagRing()
        self.loop = asyncio.get_running_loop()
        self.next_step = self.loop.time() + step_s
        self.loop.call_at(self.next_step, self.step)

    def step(self) -> None:
        """One modelled step: admit waiting streams, then send each running stream its next
        event; the clock advances by fixed steps so lateness does not accumulate."""
        tick = self.next_step
        while self.waiting and len(self.running) < self.slots:
            self.running.append(self.waiting.popleft())
        last = len(self.events) - 1
        still = []
        for s in self.running:
            t = s.transport
            if t.is_closing():
                continue
            body = self.events[s.sent]
            out = frame(body + DONE) + b"0\r\n\r\n" if s.sent == last else frame(body)
            t.write(HEADERS + out if s.sent == 0 else out)
            self.send_lag.add(self.loop.time() - tick)
            s.sent += 1
            if s.sent > last:
                self.finished += 1
            else:
                still.append(s)
        self.running = still
        self.next_step = max(tick + self.step_s, self.loop.time())
        self.loop.call_at(self.next_step, self.step)

    def metrics(self) -> bytes:
        return (f'sglang:num_queue_reqs{{model_name="floor"}} {float(len(self.waiting))}\n'
                f'sglang:num_running_reqs{{model_name="floor"}} {float(len(self.running))}\n'
                ).encode()

    def state(self, reset: bool) -> bytes:
        if reset:
            self.send_lag.reset()
        usage = os.times()
        return json.dumps({
            "engine": {"requests_finished": self.finished},
            "overhead": {"cpu_seconds": usage.user + usage.system,
                         "cpu_user_seconds": usage.user, "cpu_system_seconds": usage.system,
                         "send_lag": self.send_lag.percentiles(),
                         "step_lag": LagRing().percentiles()}}).encode()


class Connection(asyncio.Protocol):
    """Keep-alive HTTP/1.1 with Content-Length bodies: all the benchmark client sends."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            method, path = lines[0].split(" ")[:2]
            self.answer(method, path)

    def answer(self, method: str, path: str) -> None:
        floor = self.floor
        if method == "POST" and path == "/generate":
            floor.waiting.append(Stream(self.transport))
            return
        if path == "/metrics":
            body, ctype = floor.metrics(), b"text/plain"
        elif path in ("/_sim/state", "/_sim/reset_stats"):
            body, ctype = floor.state(reset=path.endswith("reset_stats")), b"application/json"
        else:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\ncontent-length: %d\r\n\r\n%b"
                             % (ctype, len(body), body))


async def serve(opts: argparse.Namespace, events: list[bytes]) -> None:
    floor = Floor(events, opts.slots, opts.step_ms / 1000.0)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(floor), "127.0.0.1", opts.port,
                                      backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", required=True, help="JSON list of SSE events to replay")
    ap.add_argument("--slots", type=int, default=64, help="running streams at most")
    ap.add_argument("--step-ms", type=float, default=32.6, help="time between two events")
    opts = ap.parse_args()
    try:  # the same event loop the simulator uses when it is installed
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    with open(opts.events, encoding="utf-8") as f:
        events = [e.encode() for e in json.load(f)]
    if not events:
        ap.error(f"argument --events: {opts.events} holds no events")
    asyncio.run(serve(opts, events))


if __name__ == "__main__":
    main()
