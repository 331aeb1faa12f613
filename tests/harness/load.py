# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A steady load of chats through the load balancer, streamed or not, every request recorded.

Shared by the molecule drills (tests/harness/lbcheck.py load) and benchmarks/failover.py. Bounded
in time (``seconds``, then the requests in flight finish or hit ``client_timeout``) and in count
(``max_requests``); only ever sent to the URL given (127.0.0.1 or the project's containers).
"""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp

CHAT = {"model": "default", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 8}


async def _read(resp, stream):
    """Whether a chat answer is complete: a JSON body with choices, or a stream that ends with
    ``data: [DONE]`` after a chunk carrying a ``finish_reason`` (a stream cut short is a failure)."""
    data = await resp.read()
    if resp.status != 200:
        return False
    if not stream:
        return b'"choices"' in data
    events = [line[5:].strip() for line in data.split(b"\n") if line.startswith(b"data:")]
    return bool(events) and events[-1] == b"[DONE]" and any(b'"finish_reason":"' in e.replace(b" ", b"") for e in events)


async def _attempt(session, url, body, headers, stream):
    """One try: ``(outcome, stale)``; ``stale`` when the connection failed before the response
    headers (nothing was answered, so nothing can have been half-delivered)."""
    try:
        resp = await session.post(url, json=body, headers=headers)
    except TimeoutError:
        return "hung", False
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        return type(exc).__name__, True
    except aiohttp.ClientError as exc:
        return type(exc).__name__, False
    try:
        async with resp:
            ok = await _read(resp, stream)
            return ("ok" if ok else str(resp.status) if resp.status != 200 else "incomplete"), False
    except TimeoutError:
        return "hung", False
    except aiohttp.ClientError as exc:
        return type(exc).__name__, False


ERROR_PAUSE = 0.1


async def run_load(url, key, seconds, concurrency=6, path="/v1/chat/completions", tokens=None, decode_ms=40.0,
                   client_timeout=60.0, max_requests=5000, events=(), stream_every=0, stop=None):
    """Send chats for ``seconds``; run each ``(at_seconds, coroutine_function)`` of ``events`` at
    its time (the fault, the heal). With ``stream_every`` N, every N-th request is streamed.
    ``stop``, an ``asyncio.Event``, ends the load early once set (no new request starts).
    ``path`` may be a list: requests take each in turn (several pools under one load).
    Returns ``(records, t0)``: one record per request with ``t`` (start, seconds after t0),
    ``end``, ``stream``, ``outcome`` (``ok``, an HTTP status, ``incomplete`` for a stream or body
    cut short, ``hung`` when no answer came within ``client_timeout``, or a connection error's
    name), ``retried`` (the first try met a connection closed before any answer, and the
    request was sent once more, as HTTP clients do), ``tokens``, ``latency`` and ``overrun``
    (latency beyond its own generation, tokens x ``decode_ms``).
    """
    records = []
    paths = [path] if isinstance(path, str) else list(path)
    lengths = list(tokens or [None])
    counter = {"n": 0}
    t0 = time.monotonic()
    stop_at = t0 + seconds
    headers = {"Authorization": "Bearer " + key} if key else {}
    timeout = aiohttp.ClientTimeout(total=client_timeout)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        async def worker():
            while time.monotonic() < stop_at and len(records) < max_requests and not (stop and stop.is_set()):
                length = lengths[counter["n"] % len(lengths)]
                stream = bool(stream_every) and counter["n"] % stream_every == stream_every - 1
                target = paths[counter["n"] % len(paths)]
                counter["n"] += 1
                body = dict(CHAT, max_tokens=length, ignore_eos=True) if length else dict(CHAT)
                if stream:
                    body["stream"] = True
                start = time.monotonic()
                outcome, stale = await _attempt(session, url + target, body, headers, stream)
                retried = False
                if stale:
                    # The connection was closed before any answer came, as nginx's old workers
                    # close idle keep-alive connections at a reload: like HTTP clients (the
                    # OpenAI SDKs retry connection errors), send it once more on a new connection.
                    retried = True
                    outcome, stale = await _attempt(session, url + target, body, headers, stream)
                end = time.monotonic()
                expected = (length or CHAT["max_tokens"]) * decode_ms / 1000.0
                records.append({"t": round(start - t0, 3), "end": round(end - t0, 3), "outcome": outcome, "stream": stream,
                                "path": target, "retried": retried,
                                "tokens": length, "latency": round(end - start, 3),
                                "overrun": round(end - start - expected, 3)})
                if outcome != "ok":
                    # A client does not hammer a refused port: it pauses before its next
                    # request, so a worker keeps sending through an outage of seconds.
                    await asyncio.sleep(ERROR_PAUSE)

        async def scheduled(at, action):
            await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
            await action()

        await asyncio.gather(*(scheduled(at, action) for at, action in events),
                             *(worker() for dummy in range(concurrency)))
    return records, t0


def service_gap(records, fault_t):
    """The time without service after a fault: the longest stretch, from the fault on, in which
    no request that was started got an answer (the starts of successful requests, sorted)."""
    if fault_t is None:
        return None
    starts = sorted(r["t"] for r in records if r["outcome"] == "ok" and r["t"] >= fault_t)
    points = [fault_t] + starts
    return round(max(b - a for a, b in itertools.pairwise(points)), 3) if starts else None
