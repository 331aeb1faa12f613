# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Probes for the load balancer and Redis/Sentinel checks of the molecule verifiers.

Each subcommand drives real traffic (bounded in count and time, only to 127.0.0.1 and the
project's own containers), prints one JSON object with what it observed and exits 0; the
verify task files assert on that JSON. Secrets come from environment variables, never from
the command line: LBT_KEY (client key), LBT_KEY2 (second client key), LBT_ADMIN_KEY,
LBT_BACKEND_KEY, LBT_AGENT_PASSWORD, LBT_SENTINEL_CLIENT_PASSWORD.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shlex
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse
import warnings

import aiohttp
from load import (  # beside this script (tests/harness/load.py)
    CHAT,
    run_load,
    service_gap,
)


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


async def cmd_stall(args):
    """A deadlocked scheduler with work in it: the instance's stall fault (its HTTP side keeps
    answering), --requests generations sent to it directly, held for --seconds or until
    --stop-file exists, then the fault lifted; the requests then finish."""
    headers = _auth(_env("LBT_BACKEND_KEY"))
    body = {"text": "stalled", "sampling_params": {"max_new_tokens": 4, "ignore_eos": True}}

    async def one(session):
        try:
            async with session.post(f"http://{args.sim}/generate", json=body, headers=headers) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=args.seconds + 60)) as session:
        await _set_fault(session, args.sim, "stall")
        started = time.monotonic()
        clients = [asyncio.create_task(one(session)) for dummy in range(args.requests)]
        while time.monotonic() - started < args.seconds and not (args.stop_file and os.path.exists(args.stop_file)):
            await asyncio.sleep(0.5)
        answered_while_stalled = sum(1 for c in clients if c.done())
        await _set_fault(session, args.sim, "none")
        statuses = await asyncio.gather(*clients)
    print(json.dumps({"stalled_seconds": round(time.monotonic() - started, 1),
                      "answered_while_stalled": answered_while_stalled, "statuses_after_lift": statuses}))


def _percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


async def _run_cmd(command, keep_output=0):
    """Run a command; returns (rc, the end of its stderr, the last ``keep_output`` characters of
    its stdout)."""
    proc = await asyncio.create_subprocess_exec(*shlex.split(command), stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, err.decode(errors="replace")[-200:], out.decode(errors="replace")[-keep_output:] \
        if keep_output else ""


async def cmd_load(args):
    """A steady load of non-streamed chats (tests/harness/load.py), every request counted; a
    fault part way through, and optionally a heal.

    With --tokens, requests cycle through those lengths (ignore_eos, so each generates exactly
    that many tokens): a mix of short and long generations. A request that gets no answer
    within --client-timeout counts as hung (a failure); "overrun" is how much longer than its
    own generation (tokens x --decode-ms) a request took.
    """
    key = _env("LBT_KEY")
    fault_done = {}
    t0_box = {}

    async def fault():
        fault_done["t"] = round(time.monotonic() - t0_box.get("t0", time.monotonic()), 3)
        if args.kill_cmd:
            started = time.monotonic()
            fault_done["kill_rc"], fault_done["kill_stderr"], fault_done["kill_stdout"] = await _run_cmd(
                args.kill_cmd, args.keep_output)
            fault_done["kill_end"] = round(fault_done["t"] + time.monotonic() - started, 3)
            if args.stop_after_cmd is not None:
                await asyncio.sleep(args.stop_after_cmd)
                stop.set()
        if args.hang:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                fault_done["hang"] = await _set_fault(session, args.hang, "hang")

    async def heal():
        fault_done["heal_rc"], fault_done["heal_stderr"], _out = await _run_cmd(args.heal_cmd)

    stop = asyncio.Event()
    # A fault time past the end of the load: a plain load, no fault.
    events = ([(args.fault_at, fault)] if args.fault_at <= args.seconds else []) \
        + ([(args.heal_at, heal)] if args.heal_cmd else [])
    t0_box["t0"] = time.monotonic()
    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else None
    records, _t0 = await run_load(args.url, key, args.seconds, args.concurrency, args.path or ["/v1/chat/completions"],
                                  tokens, args.decode_ms,
                                  args.client_timeout, args.max_requests, events, args.stream_every, stop)
    if args.hang and args.end_hang:
        # End the hang so nginx's stuck upstream connections finish.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await _set_fault(session, args.hang, "none")
    outcomes = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    after = [r for r in records if r["t"] >= fault_done.get("t", 0)]
    latencies = [r["latency"] for r in records if r["outcome"] == "ok"]
    print(json.dumps({
        "service_gap": service_gap(records, fault_done.get("t")),
        "requests": len(records), "outcomes": outcomes, "fault": fault_done,
        "requests_after_fault": len(after),
        "ok_after_fault": sum(1 for r in after if r["outcome"] == "ok"),
        "failed": sum(1 for r in records if r["outcome"] != "ok"),
        "hung": sum(1 for r in records if r["outcome"] == "hung"),
        "retried": sum(1 for r in records if r["retried"]),
        "streams": sum(1 for r in records if r["stream"]),
        "per_path": {path: sum(1 for r in records if r["path"] == path) for path in sorted({r["path"] for r in records})},
        "streams_ok": sum(1 for r in records if r["stream"] and r["outcome"] == "ok"),
        # Streams in flight when the fault (the operation) began: each must have completed.
        "streams_across_fault": sum(1 for r in records if r["stream"] and r["t"] < fault_done.get("t", 0) < r["end"]),
        "streams_across_fault_ok": sum(1 for r in records if r["stream"] and r["t"] < fault_done.get("t", 0) < r["end"]
                                       and r["outcome"] == "ok"),
        "failures": [r for r in records if r["outcome"] != "ok"][:20],
        "worst_overrun": max((r["overrun"] for r in records), default=None),
        "longest_tokens": max((r["tokens"] or 0 for r in records), default=0),
        "latency_p50": _percentile(latencies, 0.5), "latency_p99": _percentile(latencies, 0.99),
        "latency_max": max(latencies) if latencies else None,
        "latency_mean": round(statistics.mean(latencies), 3) if latencies else None,
    }))


# --- what a client key can reach -----------------------------------------------------------

# Paths no SGLang release serves, and spellings of operator paths that a careless allowlist
# would let through.
EXTRA_ATTACK_PATHS = (
    "/_sim/state", "/_sim/fault", "/_sim/reset_stats", "/metrics", "/ready", "/health",
    "/health_generate", "/openapi.json", "/docs", "/api/generate", "/v1/messages", "/nope",
    "/v2/chat/completions", "/v1/chat/completions/x", "/generate/x", "/flush_cache/", "//flush_cache",
    "/./flush_cache", "/%66lush_cache", "/v1/models/../../flush_cache", "/v1/../flush_cache",
    "/pools/nosuchpool/generate", "/lb/admin",
)
# Bodies that would do harm if they reached an instance.
ATTACK_BODIES = {
    "/_sim/fault": {"mode": "crash"},
    "/abort_request": {"abort_all": True},
    "/pause_generation": {},
    "/update_weights_from_disk": {"model_path": "/nonexistent"},
}


def route_paths(routes_file):
    """The routes of a release's HTTP server (one a line, '#' comments), with path parameters filled in."""
    paths = []
    with open(routes_file, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                paths.append(re.sub(r"\{[^}]*\}", "x", line))
    return paths


def allowed(path, routes):
    return any(path == r["path"] or (r.get("prefix") and path.startswith(r["path"])) for r in routes)


def raw_request(url, method, path, headers=None, body=None, timeout=10.0, context=None):
    """One request with the path sent exactly as given (no client-side normalization)."""
    parts = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs = {"timeout": timeout}
    if parts.scheme == "https":
        kwargs["context"] = context
    conn = conn_cls(parts.hostname, parts.port, **kwargs)
    data = json.dumps(body).encode() if body is not None else None
    hdrs = dict(headers or {})
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")[:300]
        return {"status": resp.status, "body": parsed, "request_id": resp.getheader("X-Request-Id"),
                "content_type": resp.getheader("Content-Type")}
    except (OSError, http.client.HTTPException) as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def cmd_attack(args):
    """Every route a client key must not reach, tried through the LB with that key (and without)."""
    key = _env("LBT_KEY")
    client_routes = json.loads(args.client_routes)
    candidates = [p for p in route_paths(args.routes_file) + list(EXTRA_ATTACK_PATHS)
                  if not allowed(p, client_routes)]
    for pool in args.pools:
        candidates += [f"/pools/{pool}/flush_cache", f"/pools/{pool}/_sim/fault", f"/pools/{pool}/server_info"]
    attempts = []
    for path in candidates:
        for method in ("GET", "POST"):
            body = ATTACK_BODIES.get(path, {}) if method == "POST" else None
            result = raw_request(args.url, method, path, headers=_auth(key), body=body)
            attempts.append(dict(result, path=path, method=method, keyed=True))
    # Without a key: refused too (401, or 429 once the per-address limit is reached).
    for path in candidates[:15]:
        result = raw_request(args.url, "POST", path, body=ATTACK_BODIES.get(path, {}))
        attempts.append(dict(result, path=path, method="POST", keyed=False))
    print(json.dumps({"paths": len(candidates), "attempts": attempts}))


def cmd_admin(args):
    """The admin key opens the operator routes; a client key does not."""
    admin = _env("LBT_ADMIN_KEY")
    key = _env("LBT_KEY")
    result = {}
    for path, method in (("/server_info", "GET"), ("/flush_cache", "POST")):
        result[path] = {"admin": raw_request(args.url, method, path, headers=_auth(admin)),
                        "client": raw_request(args.url, method, path, headers=_auth(key))}
        if isinstance(result[path]["admin"].get("body"), dict):
            # /server_info: keep the answer small and free of anything secret.
            body = result[path]["admin"]["body"]
            result[path]["admin"]["body"] = {k: body.get(k) for k in ("version", "served_model_name")}
    result["/v1/models"] = {"admin": raw_request(args.url, "GET", "/v1/models", headers=_auth(admin))}
    print(json.dumps(result))


def vip_holders(vip, containers):
    """The containers that have ``vip`` on an interface (``ip -4 -o addr``); a stopped one has not."""
    holders = []
    for name in containers:
        proc = subprocess.run(["docker", "exec", name, "ip", "-4", "-o", "addr", "show"], capture_output=True,
                              text=True, timeout=20, check=False)
        if proc.returncode == 0 and re.search(r"\sinet " + re.escape(vip) + "/", proc.stdout):
            holders.append(name)
    return holders


def cmd_vip_holder(args):
    print(json.dumps({"vip": args.vip, "holders": vip_holders(args.vip, args.containers)}))


def cmd_sim_state(args):
    """/_sim/state of each instance (direct, with the backend key)."""
    key = _env("LBT_BACKEND_KEY")
    out = {}
    for sim in args.sims:
        got = raw_request(f"http://{sim}", "GET", "/_sim/state", headers=_auth(key))
        body = got.get("body") if isinstance(got.get("body"), dict) else {}
        fields = ("status", "paused", "draining", "version", "startup_time", "health_checks", "flushes", "fault", "engine")
        out[sim] = {k: body.get(k) for k in fields}
        out[sim]["http_status"] = got.get("status")
    print(json.dumps(out))


def _tls_context(ca, version=None):
    ctx = ssl.create_default_context(cafile=ca)
    if version is not None:
        # Offer only this protocol; OpenSSL 3 needs security level 0 to offer TLS 1.0/1.1 at all,
        # so their refusal can only come from the server.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = version
            ctx.maximum_version = version
    return ctx


def cmd_tls(args):
    """A streamed chat with the unmodified OpenAI SDK over HTTPS, and old protocols refused."""
    import openai

    key = _env("LBT_KEY")
    parts = urllib.parse.urlsplit(args.url)
    result = {"handshakes": {}}
    for name, version in (("TLSv1", ssl.TLSVersion.TLSv1), ("TLSv1_1", ssl.TLSVersion.TLSv1_1),
                          ("TLSv1_2", ssl.TLSVersion.TLSv1_2), ("TLSv1_3", ssl.TLSVersion.TLSv1_3)):
        try:
            ctx = _tls_context(args.ca, version)
            with ssl.create_connection((parts.hostname, parts.port), timeout=10) as sock, \
                    ctx.wrap_socket(sock, server_hostname=args.server_name or parts.hostname) as tls:
                result["handshakes"][name] = {"ok": True, "version": tls.version()}
        except (ssl.SSLError, OSError) as exc:
            result["handshakes"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    # The SDK as a user runs it; only its HTTP client is told to trust the lab's CA.
    client = openai.OpenAI(base_url=args.url + "/v1", api_key=key, max_retries=0, timeout=60,
                           http_client=openai.DefaultHttpxClient(verify=args.ca))
    chunks = []
    finish = None
    stream = client.chat.completions.create(model="tiny-chat", stream=True, max_tokens=args.max_tokens,
                                            messages=[{"role": "user", "content": "Say hello over TLS."}])
    for chunk in stream:
        if chunk.choices:
            chunks.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    result["stream"] = {"chunks": len(chunks), "text_length": len("".join(chunks)), "finish_reason": finish}
    # Plain HTTP is refused on the TLS port (no cleartext fallback).
    plain = raw_request(f"http://{parts.hostname}:{parts.port}", "GET", "/v1/models", headers=_auth(key))
    result["plain_http_on_tls_port"] = {"status": plain.get("status")}
    print(json.dumps(result))


async def cmd_anon_flood(args):
    """Requests without a key from one address: 401 within the burst, 429 beyond it."""
    timeout = aiohttp.ClientTimeout(total=60)
    statuses = {}
    samples = {}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one():
            r = await _request(session, "GET", args.url + "/v1/models")
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
            samples.setdefault(str(r["status"]), r)

        await asyncio.gather(*(one() for dummy in range(args.requests)))
        keyed = await _request(session, "GET", args.url + "/v1/models", headers=_auth(_env("LBT_KEY")))
    print(json.dumps({"requests": args.requests, "statuses": statuses, "samples": samples,
                      "keyed_status": keyed["status"]}))


async def cmd_conn_cap(args):
    """One key's cap on requests in flight: streams beyond it get 429, the others complete."""
    key = _env("LBT_KEY2")
    body = dict(CHAT, max_tokens=args.max_tokens, stream=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def stream(started):
            async with session.post(args.url + "/v1/chat/completions", json=body, headers=_auth(key)) as resp:
                started.set()
                raw = await resp.read()
                return {"status": resp.status, "done": raw.rstrip().endswith(b"data: [DONE]")}

        holders = []
        for dummy in range(args.cap):
            started = asyncio.Event()
            holders.append(asyncio.create_task(stream(started)))
            await asyncio.wait_for(started.wait(), 30)
        extra = [await _request(session, "POST", args.url + "/v1/chat/completions", json=CHAT, headers=_auth(key))
                 for dummy in range(args.extra)]
        held = await asyncio.gather(*holders)
        await asyncio.sleep(1.5)  # the key's rate zone refills
        after = await _request(session, "POST", args.url + "/v1/chat/completions", json=CHAT, headers=_auth(key))
    print(json.dumps({"held": held, "beyond_cap": [{"status": r["status"], "body": r["body"]} for r in extra],
                      "after": {"status": after["status"]}}))


async def cmd_health_flood(args):
    """/lb/health flooded from one address: how many probes reached the instances."""
    backend = _env("LBT_BACKEND_KEY")
    timeout = aiohttp.ClientTimeout(total=60)
    statuses = {}
    cache = {}

    async def probes(session):
        counts = {}
        for sim in args.sims:
            async with session.get(f"http://{sim}/_sim/state", headers=_auth(backend)) as resp:
                counts[sim] = (await resp.json())["health_checks"][args.instance_path]
        return counts

    async with aiohttp.ClientSession(timeout=timeout) as session:
        before = await probes(session)
        start = time.monotonic()
        deadline = start + args.seconds

        async def worker():
            sent = 0
            while time.monotonic() < deadline and sent < args.max_requests:
                sent += 1
                async with session.get(args.url + "/lb/health") as resp:
                    await resp.read()
                    statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
                    tag = resp.headers.get("X-Inferops-Health-Cache", "none")
                    cache[tag] = cache.get(tag, 0) + 1

        await asyncio.gather(*(worker() for dummy in range(args.concurrency)))
        elapsed = time.monotonic() - start
        after = await probes(session)
    reached = {sim: after[sim] - before[sim] for sim in args.sims}
    print(json.dumps({"seconds": round(elapsed, 3), "statuses": statuses, "cache": cache,
                      "probes_reaching_instances": reached, "probes_total": sum(reached.values())}))


def _collection_path():
    """Make the checkout's module_utils importable (the agents' own Redis client)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(root, ".build", "collections"))


def cmd_redis_failover(args):
    _collection_path()
    from ansible_collections.inferops.sglang.plugins.module_utils._redis import (  # pylint: disable=import-outside-toplevel
        AGENT_USER,
        SENTINEL_CLIENT_USER,
        RedisClient,
        RedisError,
        discover_master,
    )

    # A client as the agents are, with their code: it asks the Sentinels as the client user
    # (which may only ask for the master), checks ROLE, and writes as the agents' user under
    # their key prefix; it finds the master again after every error.
    sentinels = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in args.sentinels]
    client_password, agent_password = _env("LBT_SENTINEL_CLIENT_PASSWORD"), _env("LBT_AGENT_PASSWORD")

    def find():
        return discover_master(sentinels, args.master_name, SENTINEL_CLIENT_USER, client_password, AGENT_USER,
                               agent_password, timeout=0.5)

    def connect():
        host, port = find()
        return RedisClient(host, port, username=AGENT_USER, password=agent_password, timeout=0.5)

    hosts = dict(item.split("=", 1) for item in args.hosts)  # ip -> container/host name
    old_ip, old_port = find()
    master = connect()
    key = f"inferops:lbcheck:{os.getpid()}"
    master.execute("DEL", key)
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
            if master is None:
                master = connect()
            master.execute("INCR", key)
            acked += 1
            if stopped_at is not None and first_fail is not None:
                acked_after += 1
        except RedisError as exc:
            if master is not None:
                master.close()
            master = None
            last_fail = round(now, 3)
            if first_fail is None:
                first_fail = last_fail
                events.append({"t": first_fail, "event": "first failure", "error": type(exc).__name__})
        if acked_after >= args.writes_after:
            new = find()
            break
        time.sleep(0.05)
    if new is None:
        try:
            new = find()
        except RedisError:
            new = (None, None)
    try:
        final = int((master or connect()).execute("GET", key) or 0)
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


async def cmd_keep_hung(args):
    """Keep one instance hung for a while (--seconds, or until --stop-file exists): put it back
    into the hang fault every 0.3 s, also right after the agent restarted it."""
    applied = 0
    deadline = time.monotonic() + args.seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline and not (args.stop_file and os.path.exists(args.stop_file)):
            try:
                await _set_fault(session, args.sim, "hang")
                applied += 1
            except (aiohttp.ClientError, TimeoutError, RuntimeError):
                pass  # restarting: not listening yet
            await asyncio.sleep(0.3)
        for dummy in range(20):
            try:
                await _set_fault(session, args.sim, "none")
                break
            except (aiohttp.ClientError, TimeoutError, RuntimeError):
                await asyncio.sleep(0.5)
    print(json.dumps({"hang_applied": applied}))


def cmd_ha_state(args):
    """The control plane's state in Redis, as the agents' user: lease holders, the LBs' applied
    epochs and the newest events (for the drills' assertions)."""
    _collection_path()
    # pylint: disable=import-outside-toplevel
    from ansible_collections.inferops.sglang.plugins.module_utils._leases import (
        EPOCH_KEY,
        lb_key,
        leader_key,
        parse_holder,
        read_events,
    )
    from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
        AGENT_USER,
        SENTINEL_CLIENT_USER,
        RedisClient,
        discover_master,
    )

    sentinels = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in args.sentinels]
    password = _env("LBT_AGENT_PASSWORD")
    host, port = discover_master(sentinels, args.master_name, SENTINEL_CLIENT_USER, _env("LBT_SENTINEL_CLIENT_PASSWORD"),
                                 AGENT_USER, password, timeout=1.0)
    client = RedisClient(host, port, username=AGENT_USER, password=password, timeout=2.0)
    holders = {}
    for pool in args.pools:
        node, epoch = parse_holder(client.execute("GET", leader_key(pool)))
        holders[pool] = {"node": node, "epoch": epoch}
    lbs = {}
    for lb in args.lbs:
        fields = client.execute("HGETALL", lb_key(lb)) or []
        lbs[lb] = dict(zip(fields[0::2], fields[1::2]))
    events = read_events(client, args.events)
    counter = int(client.execute("GET", EPOCH_KEY) or 0)
    client.close()
    print(json.dumps({"master": f"{host}:{port}", "holders": holders, "lbs": lbs, "events": events,
                      "epoch_counter": counter}))


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
    p.add_argument("--hang", help="instance host:port put into the hang fault at --fault-at")
    p.add_argument("--end-hang", action=argparse.BooleanOptionalAction, default=True,
                   help="lift the hang at the end (default; --no-end-hang when the instance is fenced anyway)")
    p.add_argument("--heal-cmd", help="command run at --heal-at, e.g. reconnecting a network")
    p.add_argument("--heal-at", type=float, default=0)
    p.add_argument("--path", action="append",
                   help="e.g. /pools/standby/v1/chat/completions; repeat it to take turns between pools "
                        "(default /v1/chat/completions)")
    p.add_argument("--tokens", help="comma-separated generation lengths to cycle through (ignore_eos)")
    p.add_argument("--decode-ms", type=float, default=40, help="the simulator's time per token, for the overrun")
    p.add_argument("--stream-every", type=int, default=0, help="stream every N-th request (0: none)")
    p.add_argument("--keep-output", type=int, default=0, help="keep the last N characters of --kill-cmd's stdout")
    p.add_argument("--stop-after-cmd", type=float,
                   help="end the load this many seconds after --kill-cmd finished (--seconds still bounds it)")
    p = sub.add_parser("attack")
    p.add_argument("--url", required=True)
    p.add_argument("--routes-file", required=True, help="a release's route list (tests/fixtures)")
    p.add_argument("--client-routes", required=True, help="JSON list of {path, prefix} a client key opens")
    p.add_argument("--pools", nargs="*", default=[])
    p = sub.add_parser("admin")
    p.add_argument("--url", required=True)
    p = sub.add_parser("sim-state")
    p.add_argument("--sims", nargs="+", required=True)
    p = sub.add_parser("tls")
    p.add_argument("--url", required=True, help="https://host:port of the LB")
    p.add_argument("--ca", required=True, help="CA certificate file")
    p.add_argument("--server-name", help="name to verify the certificate against (default: the URL's host)")
    p.add_argument("--max-tokens", type=int, default=16)
    p = sub.add_parser("anon-flood")
    p.add_argument("--url", required=True)
    p.add_argument("--requests", type=int, default=40)
    p = sub.add_parser("conn-cap")
    p.add_argument("--url", required=True)
    p.add_argument("--cap", type=int, required=True, help="the key's max_concurrent")
    p.add_argument("--extra", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=60)
    p = sub.add_parser("health-flood")
    p.add_argument("--url", required=True)
    p.add_argument("--sims", nargs="+", required=True)
    p.add_argument("--instance-path", required=True, help="the health path the LB asks the instances")
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-requests", type=int, default=500)
    p = sub.add_parser("ha-state")
    p.add_argument("--sentinels", nargs="+", required=True, help="host:port")
    p.add_argument("--master-name", default="inferops")
    p.add_argument("--pools", nargs="*", default=[])
    p.add_argument("--lbs", nargs="*", default=[])
    p.add_argument("--events", type=int, default=500)
    p = sub.add_parser("keep-hung")
    p.add_argument("--sim", required=True, help="instance host:port")
    p.add_argument("--seconds", type=float, required=True, help="the longest it stays hung")
    p.add_argument("--stop-file", help="end the hang as soon as this file exists")
    p = sub.add_parser("redis-failover")
    p.add_argument("--sentinels", nargs="+", required=True, help="host:port")
    p.add_argument("--master-name", required=True)
    p.add_argument("--hosts", nargs="+", required=True, help="ip=name, to name the stopped master in --stop-cmd")
    p.add_argument("--stop-cmd", required=True, help="command with {host}, run to stop the master")
    p.add_argument("--stop-at", type=float, default=2)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--writes-after", type=int, default=20)
    p = sub.add_parser("stall")
    p.add_argument("--sim", required=True, help="instance host:port")
    p.add_argument("--requests", type=int, default=3)
    p.add_argument("--seconds", type=float, required=True, help="the longest the stall lasts")
    p.add_argument("--stop-file", help="lift the stall as soon as this file exists")
    p = sub.add_parser("vip-holder")
    p.add_argument("--vip", required=True)
    p.add_argument("--containers", nargs="+", required=True, help="the load balancers' containers")
    args = parser.parse_args()
    function = globals()["cmd_" + args.cmd.replace("-", "_")]
    if not asyncio.iscoroutinefunction(function):
        function(args)
    else:
        asyncio.run(function(args))


if __name__ == "__main__":
    main()
