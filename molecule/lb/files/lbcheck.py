# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Probes for the load balancer and Redis/Sentinel checks of the molecule verifiers.

Each subcommand drives real traffic (bounded in count and time, only to 127.0.0.1 and the
project's own containers), prints one JSON object with what it observed and exits 0; the
verify task files assert on that JSON. Secrets come from environment variables, never from
the command line: LBT_KEY (client key), LBT_KEY2 (second client key), LBT_BACKEND_KEY,
LBT_REDIS_PASSWORD, LBT_SENTINEL_PASSWORD.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

import aiohttp

CHAT = {"model": "default", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 8}


def _env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"environment variable {name} is required")
    return value


def _auth(key):
    return {"Authorization": "Bearer " + key} if key else {}


async def _json_or_text(resp):
    text = await resp.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _metric_total(session, base, key):
    # Every request the instance served (including its health generations) counts here.
    async with session.get(base + "/metrics", headers=_auth(key)) as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^sglang:num_requests_total(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
        if match:
            total += float(match.group(2))
    return total


async def cmd_spread(args):
    key = _env("LBT_KEY")
    backend_key = _env("LBT_BACKEND_KEY")
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        bases = ["http://" + s for s in args.sims]
        before = [await _metric_total(session, b, backend_key) for b in bases]
        statuses = {}
        sem = asyncio.Semaphore(args.concurrency)

        async def one():
            async with sem, session.post(args.url + "/v1/chat/completions", json=CHAT, headers=_auth(key)) as resp:
                await resp.read()
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1

        await asyncio.gather(*(one() for dummy in range(args.requests)))
        after = [await _metric_total(session, b, backend_key) for b in bases]
    print(json.dumps({"requests": args.requests, "statuses": statuses,
                      "served": {s: after[i] - before[i] for i, s in enumerate(args.sims)}}))


async def cmd_stream(args):
    key = _env("LBT_KEY")
    body = dict(CHAT, max_tokens=args.max_tokens, stream=True)
    timeout = aiohttp.ClientTimeout(total=120)
    chunks = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.monotonic()
        async with session.post(args.url + "/v1/chat/completions", json=body, headers=_auth(key)) as resp:
            status = resp.status
            headers = {k: resp.headers.get(k) for k in ("Content-Type", "X-Accel-Buffering", "Server")}
            buffer = b""
            # Read what the socket delivers, as it arrives: every SSE event is timed on arrival.
            async for data in resp.content.iter_any():
                now = time.monotonic() - start
                buffer += data
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if event.startswith(b"data: "):
                        chunks.append((round(now, 4), event[6:].decode()))
    done = bool(chunks) and chunks[-1][1] == "[DONE]"
    content_chunks = [c for c in chunks if c[1] != "[DONE]"]
    times = [c[0] for c in content_chunks]
    distinct_arrivals = len(set(times))
    print(json.dumps({
        "status": status, "headers": headers, "chunks": len(content_chunks), "done": done,
        "distinct_arrival_times": distinct_arrivals,
        "first_chunk_s": times[0] if times else None, "last_chunk_s": times[-1] if times else None,
    }))


async def _request(session, method, url, **kwargs):
    async with session.request(method, url, **kwargs) as resp:
        return {"status": resp.status, "body": await _json_or_text(resp),
                "content_type": resp.headers.get("Content-Type"), "retry_after": resp.headers.get("Retry-After"),
                "server": resp.headers.get("Server")}


async def cmd_auth(args):
    key = _env("LBT_KEY")
    # Same length and alphabet as the real key, one character different; then the real key in
    # another letter case (nginx compares plain map strings without regard to case).
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    other_case = key.swapcase()
    timeout = aiohttp.ClientTimeout(total=30)
    url = args.url + "/v1/models"
    async with aiohttp.ClientSession(timeout=timeout) as session:
        result = {
            "missing": await _request(session, "GET", url),
            "wrong": await _request(session, "GET", url, headers=_auth(wrong)),
            "other_case": await _request(session, "GET", url, headers=_auth(other_case)),
            "not_bearer": await _request(session, "GET", url, headers={"Authorization": "Basic " + key}),
            "valid": await _request(session, "GET", url, headers=_auth(key)),
            "valid_lowercase_scheme": await _request(session, "GET", url, headers={"Authorization": "bearer " + key}),
            "lb_health_without_key": await _request(session, "GET", args.url + "/lb/health"),
        }
    print(json.dumps(result))


async def cmd_flood(args):
    key = _env("LBT_KEY2")
    timeout = aiohttp.ClientTimeout(total=60)
    statuses = {}
    sample = None
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one():
            nonlocal sample
            r = await _request(session, "GET", args.url + "/v1/models", headers=_auth(key))
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
            if r["status"] == 429 and sample is None:
                sample = r

        await asyncio.gather(*(one() for dummy in range(args.requests)))
        # The other key has its own zone: it must not be limited by this flood.
        other = await _request(session, "GET", args.url + "/v1/models", headers=_auth(_env("LBT_KEY")))
    print(json.dumps({"requests": args.requests, "statuses": statuses, "sample_429": sample,
                      "other_key_status": other["status"]}))


async def cmd_body(args):
    key = _env("LBT_KEY")
    payload = json.dumps(dict(CHAT, messages=[{"role": "user", "content": "x" * args.size}]))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        big = await _request(session, "POST", args.url + "/v1/chat/completions", data=payload,
                             headers=dict(_auth(key), **{"Content-Type": "application/json"}))
        small = await _request(session, "POST", args.url + "/v1/chat/completions", json=CHAT, headers=_auth(key))
    big["bytes"] = len(payload)
    print(json.dumps({"oversized": big, "normal": {"status": small["status"]}}))


async def cmd_health(args):
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.monotonic()
        result = await _request(session, "GET", args.url + args.path)
    result["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(result))


async def _set_fault(session, sim, mode):
    headers = _auth(_env("LBT_BACKEND_KEY"))
    async with session.post(f"http://{sim}/_sim/fault", json={"mode": mode}, headers=headers) as resp:
        body = await _json_or_text(resp)
        if resp.status != 200:
            raise RuntimeError(f"fault {mode} on {sim}: {resp.status} {body}")
        return body


async def cmd_fault(args):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        results = {sim: await _set_fault(session, sim, args.mode) for sim in args.sims}
    print(json.dumps(results))


def _percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


async def cmd_load(args):
    """A steady load of non-streamed chats; a fault is injected part way through."""
    key = _env("LBT_KEY")
    records = []
    stop_at = time.monotonic() + args.seconds
    t0 = time.monotonic()
    fault_done = {}
    timeout = aiohttp.ClientTimeout(total=args.client_timeout)
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        async def worker():
            while time.monotonic() < stop_at and len(records) < args.max_requests:
                start = time.monotonic()
                try:
                    async with session.post(args.url + "/v1/chat/completions", json=CHAT, headers=_auth(key)) as resp:
                        body = await resp.read()
                        ok = resp.status == 200 and b'"choices"' in body
                        outcome = str(resp.status) if not ok else "ok"
                except TimeoutError:
                    outcome = "client_timeout"
                except aiohttp.ClientError as exc:
                    outcome = type(exc).__name__
                records.append({"t": round(start - t0, 3), "outcome": outcome,
                                "latency": round(time.monotonic() - start, 3)})

        async def injector():
            await asyncio.sleep(args.fault_at)
            fault_done["t"] = round(time.monotonic() - t0, 3)
            if args.kill_cmd:
                proc = await asyncio.create_subprocess_exec(*shlex.split(args.kill_cmd),
                                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                err = (await proc.communicate())[1]
                fault_done["kill_rc"] = proc.returncode
                fault_done["kill_stderr"] = err.decode()[-200:]
            if args.hang:
                fault_done["hang"] = await _set_fault(session, args.hang, "hang")

        await asyncio.gather(injector(), *(worker() for dummy in range(args.concurrency)))
        if args.hang:
            # End the hang so nginx's stuck upstream connections finish.
            await _set_fault(session, args.hang, "none")
    outcomes = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    after = [r for r in records if r["t"] >= fault_done.get("t", 0)]
    latencies = [r["latency"] for r in records if r["outcome"] == "ok"]
    print(json.dumps({
        "requests": len(records), "outcomes": outcomes, "fault": fault_done,
        "requests_after_fault": len(after),
        "ok_after_fault": sum(1 for r in after if r["outcome"] == "ok"),
        "failed": sum(1 for r in records if r["outcome"] != "ok"),
        "failures": [r for r in records if r["outcome"] != "ok"][:20],
        "latency_p50": _percentile(latencies, 0.5), "latency_p99": _percentile(latencies, 0.99),
        "latency_max": max(latencies) if latencies else None,
        "latency_mean": round(statistics.mean(latencies), 3) if latencies else None,
    }))


def cmd_redis_failover(args):
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeout
    from redis.sentinel import MasterNotFoundError, Sentinel

    sentinels = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in args.sentinels]
    sentinel = Sentinel(sentinels, socket_timeout=0.5,
                        sentinel_kwargs={"password": _env("LBT_SENTINEL_PASSWORD"), "socket_timeout": 0.5})
    master = sentinel.master_for(args.master_name, socket_timeout=0.5, password=_env("LBT_REDIS_PASSWORD"))
    hosts = dict(item.split("=", 1) for item in args.hosts)  # ip -> container/host name
    old_ip, old_port = sentinel.discover_master(args.master_name)
    key = f"inferops:lbcheck:{os.getpid()}"
    master.delete(key)
    acked = 0
    events = []
    t0 = time.monotonic()
    stopped_at = None
    first_fail = last_fail = None
    acked_after = 0
    new = None
    while time.monotonic() - t0 < args.seconds:
        now = time.monotonic() - t0
        if stopped_at is None and now >= args.stop_at:
            cmd = args.stop_cmd.format(host=hosts[old_ip])
            rc = subprocess.run(shlex.split(cmd), capture_output=True, check=False).returncode
            stopped_at = round(now, 3)
            events.append({"t": stopped_at, "event": "stopped master", "host": hosts[old_ip], "rc": rc})
        try:
            master.incr(key)
            acked += 1
            if stopped_at is not None and first_fail is not None:
                acked_after += 1
        except (RedisConnectionError, RedisTimeout, MasterNotFoundError, RedisError) as exc:
            last_fail = round(now, 3)
            if first_fail is None:
                first_fail = last_fail
                events.append({"t": first_fail, "event": "first failure", "error": type(exc).__name__})
        if acked_after >= args.writes_after:
            new = sentinel.discover_master(args.master_name)
            break
        time.sleep(0.05)
    if new is None:
        try:
            new = sentinel.discover_master(args.master_name)
        except MasterNotFoundError:
            new = (None, None)
    try:
        final = int(master.get(key) or 0)
    except RedisError:
        final = None
    print(json.dumps({
        "old_master": f"{old_ip}:{old_port}", "old_host": hosts.get(old_ip),
        "new_master": "{}:{}".format(*tuple(new)), "new_host": hosts.get(new[0]),
        "acked_writes": acked, "acked_after_failover": acked_after, "final_value": final,
        "first_failure_s": first_fail, "last_failure_s": last_fail, "stopped_at_s": stopped_at,
        "outage_s": round(last_fail - first_fail, 3) if first_fail is not None else 0.0,
        "events": events,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("spread")
    p.add_argument("--url", required=True)
    p.add_argument("--sims", nargs="+", required=True, help="instances as host:port")
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=8)
    p = sub.add_parser("stream")
    p.add_argument("--url", required=True)
    p.add_argument("--max-tokens", type=int, default=24)
    p = sub.add_parser("auth")
    p.add_argument("--url", required=True)
    p = sub.add_parser("flood")
    p.add_argument("--url", required=True)
    p.add_argument("--requests", type=int, default=40)
    p = sub.add_parser("body")
    p.add_argument("--url", required=True)
    p.add_argument("--size", type=int, required=True)
    p = sub.add_parser("health")
    p.add_argument("--url", required=True)
    p.add_argument("--path", default="/lb/health")
    p = sub.add_parser("fault")
    p.add_argument("--sims", nargs="+", required=True)
    p.add_argument("--mode", required=True)
    p = sub.add_parser("load")
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--max-requests", type=int, default=2000)
    p.add_argument("--client-timeout", type=float, default=30)
    p.add_argument("--fault-at", type=float, default=4)
    p.add_argument("--kill-cmd", help="command run at --fault-at, e.g. 'docker kill NAME'")
    p.add_argument("--hang", help="instance host:port put into the hang fault at --fault-at (and out of it at the end)")
    p = sub.add_parser("redis-failover")
    p.add_argument("--sentinels", nargs="+", required=True, help="host:port")
    p.add_argument("--master-name", required=True)
    p.add_argument("--hosts", nargs="+", required=True, help="ip=name, to name the stopped master in --stop-cmd")
    p.add_argument("--stop-cmd", required=True, help="command with {host}, run to stop the master")
    p.add_argument("--stop-at", type=float, default=2)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--writes-after", type=int, default=20)
    args = parser.parse_args()
    if args.cmd == "redis-failover":
        cmd_redis_failover(args)
    else:
        asyncio.run(globals()["cmd_" + args.cmd](args))


if __name__ == "__main__":
    main()
