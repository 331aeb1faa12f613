#!/usr/bin/env python3
"""Capacity curve of one simulated SGLang server, and the simulator's own overhead.

Starts one simulator on 127.0.0.1 with a fixed simulated capacity (--max-running-requests 64,
a 20 ms decode step growing 0.2 ms per running request), then sweeps the number of concurrent
streaming clients (closed loop: each client sends its next request when the previous one
ends). Per level it prints throughput, p50/p99 latency and the sglang:num_queue_reqs gauge
sampled from /metrics. Throughput should rise until the running slots are full and then stay
flat, while latency and the queue grow.

At the highest level (256 concurrent streams) it then measures what the simulator itself
costs, from /_sim/state and os.times():
  - whole process: the server's user+system CPU seconds over the level divided by the
    requests served (every byte of HTTP, SSE, scheduling, metrics and access log included);
  - transport floor: the same clients against stream_floor.py, a bare asyncio server that
    replays the simulator's own recorded chunks with the same writes, slots and step time and
    does nothing else. Its CPU per request is what streaming those bytes costs on this
    machine (event loop, one socket write per token per stream, loopback TCP), a cost real
    SGLang's uvicorn pays as well;
  - the simulator's own overhead: whole process minus transport floor, cross-checked by the
    simulation alone (its engine, token generation and chunk JSON driven in this process with
    no HTTP);
  - send lag (modelled end of a token's step to its chunk's socket write) and step lag (how
    late the scheduler woke up against the modelled clock);
  - headroom: how many requests per second the whole process could serve on one core at that
    cost, against the simulated capacity.
If the own overhead stays under 1 ms and the headroom is large, the simulator is never the
bottleneck of a benchmark that uses it.

Bounded: at most 4 x concurrency requests per level (at least 16), a 60 s cap per level, and
only 127.0.0.1. Run: .venv/bin/python benchmarks/sim_capacity.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from benchlib import free_port, pct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "simulator"))
MAX_RUNNING = 64
DECODE_MS = 20.0
DECODE_MS_PER_REQ = 0.2
PREFILL_MS_PER_TOKEN = 0.02
OUTPUT_TOKENS = 32
LEVEL_CAP_S = 60.0


class Bench:
    def __init__(self, url: str, session: aiohttp.ClientSession, output_tokens: int) -> None:
        self.url = url
        self.session = session
        self.output_tokens = output_tokens

    async def one(self, i: int) -> tuple[float, float, int]:
        """One streaming /generate; returns (ttft, e2e, completion tokens)."""
        body = {"text": f"benchmark request {i} " + "lorem ipsum dolor sit amet " * 12,
                "stream": True,
                "sampling_params": {"max_new_tokens": self.output_tokens, "ignore_eos": True,
                                    "temperature": 0}}
        t0 = time.monotonic()
        ttft = None
        last = b""
        async with self.session.post(self.url + "/generate", json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
            async for line in resp.content:
                if line.startswith(b"data: {"):
                    if ttft is None:
                        ttft = time.monotonic() - t0
                    last = line
                elif line.startswith(b"data: [DONE]"):
                    break
        e2e = time.monotonic() - t0
        tokens = json.loads(last[6:])["meta_info"]["completion_tokens"]
        return ttft or e2e, e2e, tokens

    async def record_events(self) -> list[str]:
        """The SSE events of one benchmark request, as the simulator sent them."""
        body = {"text": "benchmark request 0 " + "lorem ipsum dolor sit amet " * 12,
                "stream": True,
                "sampling_params": {"max_new_tokens": self.output_tokens, "ignore_eos": True,
                                    "temperature": 0}}
        async with self.session.post(self.url + "/generate", json=body) as resp:
            raw = (await resp.read()).decode()
        return [e + "\n\n" for e in raw.split("\n\n") if e.startswith("data: {")]

    async def gauges(self) -> dict[str, float]:
        async with self.session.get(self.url + "/metrics") as resp:
            text = await resp.text()
        out = {}
        for name in ("num_queue_reqs", "num_running_reqs"):
            m = re.search(rf"^sglang:{name}{{[^}}]*}} (\S+)$", text, re.MULTILINE)
            out[name] = float(m.group(1))
        return out

    async def state(self, reset: bool = False) -> dict:
        method = self.session.post if reset else self.session.get
        path = "/_sim/reset_stats" if reset else "/_sim/state"
        async with method(self.url + path) as resp:
            return await resp.json()

    async def level(self, concurrency: int) -> dict:
        total = max(16, 4 * concurrency)
        next_id = iter(range(total))
        results: list[tuple[float, float, int]] = []
        queue_samples: list[float] = []
        running_samples: list[float] = []
        deadline = time.monotonic() + LEVEL_CAP_S

        async def client() -> None:
            for i in next_id:
                if time.monotonic() > deadline:
                    return
                results.append(await self.one(i))

        async def sampler() -> None:
            while True:
                g = await self.gauges()
                queue_samples.append(g["num_queue_reqs"])
                running_samples.append(g["num_running_reqs"])
                await asyncio.sleep(0.25)

        before = await self.state(reset=True)
        t0 = time.monotonic()
        sampling = asyncio.ensure_future(sampler())
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.monotonic() - t0
        sampling.cancel()
        after = await self.state()
        served = after["engine"]["requests_finished"] - before["engine"]["requests_finished"]
        cpu = after["overhead"]["cpu_seconds"] - before["overhead"]["cpu_seconds"]
        cpu_user = (after["overhead"]["cpu_user_seconds"]
                    - before["overhead"]["cpu_user_seconds"])
        tokens = sum(r[2] for r in results)
        return {
            "concurrency": concurrency, "requests": len(results), "wall": wall,
            "req_s": len(results) / wall, "tok_s": tokens / wall,
            "p50": pct([r[1] for r in results], 0.5), "p99": pct([r[1] for r in results], 0.99),
            "ttft_p50": pct([r[0] for r in results], 0.5),
            "queue_mean": sum(queue_samples) / max(len(queue_samples), 1),
            "queue_max": max(queue_samples, default=0.0),
            "running_max": max(running_samples, default=0.0),
            "cpu_s": cpu, "cpu_user_s": cpu_user, "served": served, "chunks": tokens,
            "step_lag": after["overhead"]["step_lag"], "send_lag": after["overhead"]["send_lag"],
        }


def session_for(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 16),
                                 timeout=aiohttp.ClientTimeout(total=LEVEL_CAP_S * 2))


async def run(url: str, levels: list[int], output_tokens: int) -> tuple[list[dict], list[str]]:
    async with session_for(max(levels)) as session:
        bench = Bench(url, session, output_tokens)
        rows = []
        hdr = (f"{'streams':>7} {'reqs':>5} {'req/s':>7} {'tok/s':>8} {'p50 s':>7} {'p99 s':>7} "
               f"{'ttft50':>7} {'queue avg':>9} {'queue max':>9} {'running max':>11}")
        print(hdr)
        print("-" * len(hdr))
        for c in levels:
            row = await bench.level(c)
            rows.append(row)
            print(f"{c:>7} {row['requests']:>5} {row['req_s']:>7.1f} {row['tok_s']:>8.0f} "
                  f"{row['p50']:>7.3f} {row['p99']:>7.3f} {row['ttft_p50']:>7.3f} "
                  f"{row['queue_mean']:>9.1f} {row['queue_max']:>9.0f} "
                  f"{row['running_max']:>11.0f}", flush=True)
        return rows, await bench.record_events()


async def run_floor(url: str, concurrency: int, output_tokens: int) -> dict:
    async with session_for(concurrency) as session:
        return await Bench(url, session, output_tokens).level(concurrency)


async def simulation_only(requests: int, concurrency: int, output_tokens: int) -> float:
    """CPU seconds per request of the simulator's engine, token generation and SSE chunk JSON
    (its real classes), driven in this process without HTTP. Steps are shortened to 0.5 ms:
    the work per token does not depend on the modelled step time."""
    from sglang_sim import tokenizer
    from sglang_sim.api import GenerationApi
    from sglang_sim.args import parse_args
    from sglang_sim.engine import Engine, Req, SamplingParams, Waker
    from sglang_sim.metrics import Metrics
    from sglang_sim.server import Config

    cfg = Config(parse_args(["--model-path", "bench/model", "--max-running-requests",
                             str(MAX_RUNNING), "--sim-decode-ms", "0.5",
                             "--sim-decode-ms-per-req", "0", "--sim-prefill-ms-per-token", "0"]))
    engine = Engine(cfg, Metrics())
    server = type("S", (), {"cfg": cfg, "engine": engine})()
    api = GenerationApi(server)
    scheduler = asyncio.ensure_future(engine.run())
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            waker = Waker()
            req = Req(f"r{i}", tokenizer.encode(f"benchmark request {i} " +
                                                "lorem ipsum dolor sit amet " * 12),
                      SamplingParams({"max_new_tokens": output_tokens, "ignore_eos": True,
                                      "temperature": 0}), waker)
            chunk_of = api.native_chunker([req], with_index=False)
            engine.submit(req)
            sent = 0
            while True:
                n = len(req.output_ids)
                if req.finished or n > sent:
                    chunk_of(req, req.finished, sent).encode()
                    sent = n
                    if req.finished:
                        return
                else:
                    await waker.wait()

    t0 = os.times()
    await asyncio.gather(*(one(i) for i in range(requests)))
    t1 = os.times()
    scheduler.cancel()
    return ((t1.user - t0.user) + (t1.system - t0.system)) / requests


@contextlib.contextmanager
def serving(cmd: list[str], port: int, env: dict):
    """Run cmd (a server on 127.0.0.1:port) for the duration of the block; stop it after,
    whatever happens."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 20
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{cmd[2]} did not start:\n"
                                       + log.read().decode(errors="replace"))
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="levels 1, 16, 64, 256 only")
    ap.add_argument("--levels", help="comma-separated concurrency levels to run instead")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter that runs the simulator (default: this one)")
    ap.add_argument("--output-tokens", type=int, default=OUTPUT_TOKENS,
                    help=f"tokens per answer (default {OUTPUT_TOKENS})")
    ap.add_argument("--server-args", default="",
                    help="extra simulator flags, e.g. '--log-level-http warning'")
    opts = ap.parse_args()
    levels = [1, 16, 64, 256] if opts.quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    if opts.levels:
        levels = [int(x) for x in opts.levels.split(",")]
        if not levels or min(levels) < 1 or max(levels) > 1024:
            ap.error("argument --levels: concurrency levels must be between 1 and 1024")

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "simulator"))
    cmd = [opts.python, "-m", "sglang_sim.launch_server", "--model-path", "bench/model",
           "--host", "127.0.0.1", "--port", str(port), "--enable-metrics", "--sim-admin",
           "--skip-server-warmup", "--sim-load-seconds", "0",
           "--max-running-requests", str(MAX_RUNNING),
           "--sim-decode-ms", str(DECODE_MS), "--sim-decode-ms-per-req", str(DECODE_MS_PER_REQ),
           "--sim-prefill-ms-per-token", str(PREFILL_MS_PER_TOKEN),
           *opts.server_args.split()]
    step_full = DECODE_MS + DECODE_MS_PER_REQ * (MAX_RUNNING - 1)
    with serving(cmd, port, env) as url:
        print(f"Simulated capacity: {MAX_RUNNING} running requests; decode step "
              f"{DECODE_MS:g} ms + {DECODE_MS_PER_REQ:g} ms per extra request "
              f"({step_full:.1f} ms when full, so at most "
              f"{MAX_RUNNING / step_full * 1000:.0f} tok/s of decode); "
              f"{opts.output_tokens} output tokens per request; streaming /generate.\n")
        rows, events = asyncio.run(run(url, levels, opts.output_tokens))
    top = rows[-1]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as events_file:
        json.dump(events, events_file)
        events_file.flush()
        port = free_port()
        floor_cmd = [opts.python, str(ROOT / "benchmarks" / "stream_floor.py"),
                     "--port", str(port), "--events", events_file.name,
                     "--slots", str(MAX_RUNNING), "--step-ms", str(step_full)]
        with serving(floor_cmd, port, env) as url:
            floor = asyncio.run(run_floor(url, top["concurrency"], opts.output_tokens))

    full = [r for r in rows if r["concurrency"] >= MAX_RUNNING]
    print()
    if len(full) >= 2:
        print(f"Throughput from {full[0]['concurrency']} to {full[-1]['concurrency']} streams: "
              f"{full[0]['tok_s']:.0f} -> {full[-1]['tok_s']:.0f} tok/s "
              f"({(full[-1]['tok_s'] / full[0]['tok_s'] - 1) * 100:+.0f}%); p50 latency "
              f"{full[0]['p50']:.2f} -> {full[-1]['p50']:.2f} s; mean queue "
              f"{full[0]['queue_mean']:.0f} -> {full[-1]['queue_mean']:.0f}.")

    def per_request_ms(row: dict, key: str = "cpu_s") -> float:
        return row[key] / max(row["served"], 1) * 1000

    cpu_req_ms, user_ms = per_request_ms(top), per_request_ms(top, "cpu_user_s")
    floor_ms, floor_user_ms = per_request_ms(floor), per_request_ms(floor, "cpu_user_s")
    own_ms = cpu_req_ms - floor_ms
    print(f"\nSimulator overhead at {top['concurrency']} concurrent streams "
          f"({top['served']} requests, {top['chunks']} streamed tokens in {top['wall']:.1f} s):")
    print(f"  whole process        {cpu_req_ms:.3f} ms CPU per request: {user_ms:.3f} ms in user "
          f"space, {cpu_req_ms - user_ms:.3f} ms in the kernel; "
          f"{top['cpu_s'] / max(top['chunks'], 1) * 1e6:.0f} us per streamed token; busy "
          f"{top['cpu_s'] / top['wall'] * 100:.0f}% of one core")
    print(f"  transport floor      {floor_ms:.3f} ms CPU per request: {floor_user_ms:.3f} ms in "
          f"user space, {floor_ms - floor_user_ms:.3f} ms in the kernel (stream_floor.py: the "
          f"same recorded chunks, writes, slots and step time, no framework, no simulation; "
          f"{floor['served']} requests)")
    print(f"  simulator's own      {own_ms:.3f} ms per request (whole process - transport floor)")
    alone_ms = asyncio.run(simulation_only(top["served"], top["concurrency"],
                                           opts.output_tokens)) * 1000
    print(f"  simulation alone     {alone_ms:.3f} ms per request (cross-check: engine, token "
          f"generation, chunk JSON; in-process, no HTTP)")
    sl, st, fl = top["send_lag"], top["step_lag"], floor["send_lag"]
    print(f"  send lag per chunk   p50 {sl['p50_ms']} ms, p99 {sl['p99_ms']} ms, "
          f"max {sl['max_ms']} ms (last {sl['count']} chunks; transport floor: p50 "
          f"{fl['p50_ms']} ms, p99 {fl['p99_ms']} ms)")
    print(f"  step wake-up lag     p50 {st['p50_ms']} ms, p99 {st['p99_ms']} ms  "
          f"(modelled step {step_full:.1f} ms)")
    verdict = "under" if own_ms < 1.0 else "OVER"
    one_core = 1000.0 / cpu_req_ms if cpu_req_ms > 0 else float("inf")
    headroom = one_core / top["req_s"]
    # Below a few times the capacity, CPU contention would start to shape the measured curve.
    bottleneck = "is not" if headroom >= 4 else "MAY BE"
    print(f"  => the simulator's own overhead: {own_ms:.3f} ms per request, {verdict} 1 ms. "
          f"At {cpu_req_ms:.3f} ms per request, transport included, one core would serve "
          f"{one_core:.0f} req/s, {headroom:.1f}x the simulated capacity "
          f"({top['req_s']:.1f} req/s): the simulator {bottleneck} the bottleneck")
    return 0


if __name__ == "__main__":
    sys.exit(main())
