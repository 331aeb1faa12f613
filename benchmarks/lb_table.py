#!/usr/bin/env python3
"""The seed's load-balancer table on the simulator: one instance direct vs N behind nginx.

The seed article measured, with locust (50 users, think time between(1, 3) s, POST /generate
{"text": "...", "max_new_tokens": 100}):

    one SGLang instance           8.2 QPS   P99 6.8 s   12% errors
    three instances behind nginx 23.6 QPS   P99 2.3 s    0% errors

This script reproduces that experiment on this machine, all on 127.0.0.1:
  - N simulated SGLang servers (simulator/, `python -m sglang_sim.launch_server`), each with the
    SAME fixed simulated capacity: 4 running requests, a 5 ms decode step growing 0.75 ms per
    extra running request, 100-token answers, and a waiting queue of 35 whose overflow gets
    SGLang's 503 "The request queue is full." (see docs/benchmarks.md for why these numbers);
  - a real nginx (Debian's /usr/sbin/nginx, run in the foreground as a child process) with the
    configuration the nginx_lb role deploys: its templates and the upstream files of
    plugins/module_utils/_nginx_upstreams.py, rendered by tests/harness/render-lb.yml, with only
    addresses, ports, paths, and a benchmark API key with a rate limit too high to trigger;
  - a closed-loop user model like locust's: U users (default 50) started 5 per second as the
    seed's `--spawn-rate 5`, each sending the seed's request and then thinking 1 to 3 s.

It prints, for "1 instance, direct" and "N instances behind nginx": requests, QPS (every
answer), successful answers per second, p50 and p99 latency of successful answers, error rate
(non-2xx or connection errors) and the mean waiting queue per instance. Then the throughput
ratio (successful answers per second, N behind nginx / 1 direct; goal >= 2.9 with 0% errors)
and the latency nginx adds at the median: the same client calls the same single backend
directly and through nginx, alternately, one request at a time (goal < 1 ms).

Bounded: every phase has a fixed measuring window (--duration), a hard cap on requests
(--max-requests) and a per-request timeout; every process it starts is stopped on exit,
Ctrl-C, SIGTERM or error. Needs nginx (Debian: nginx or nginx-light) and ansible-playbook.

Run: .venv/bin/python benchmarks/lb_table.py [--quick] [--instances N] [--users U] [--duration S]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from benchlib import free_port, pct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.harness import lbrender  # the checkout's own harness, found through ROOT

# The seed's locust task, byte for byte. SGLang reads max_new_tokens only inside
# sampling_params and ignores unknown top-level keys, so this request runs with SGLang's
# default limit (128); the simulated model answers in exactly OUTPUT_TOKENS tokens.
SEED_PROMPT = "请用中文写一首关于春天的诗"
SEED_PAYLOAD = {"text": SEED_PROMPT, "max_new_tokens": 100}
SEED_ROWS = (("seed: 1 instance (locust)", 8.2, 6.8, 12.0),
             ("seed: 3 + nginx (locust)", 23.6, 2.3, 0.0))

# Simulated capacity of every instance (the same for all; see docs/benchmarks.md).
MAX_RUNNING = 4
MAX_QUEUED = 35
DECODE_MS = 5.0
DECODE_MS_PER_REQ = 0.75
OUTPUT_TOKENS = 100

SPAWN_RATE = 5.0          # users started per second (the seed's --spawn-rate 5)
THINK_S = (1.0, 3.0)      # locust's between(1, 3)
SETTLE_S = 5.0            # after the last user started, before the measuring window opens
REQUEST_TIMEOUT_S = 60.0
# aiohttp may reuse an idle connection up to this age; SGLang's uvicorn (and the simulator)
# closes idle connections after 5 s, so a longer reuse would race the server's close.
CLIENT_KEEPALIVE_S = 4.0


def _die_with_parent() -> None:
    # Children get SIGTERM if this process dies without cleaning up (SIGKILL, crash), so
    # no simulator or nginx outlives the benchmark. Runs in the child between fork and exec.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Processes:
    """Every process this benchmark starts; stop_all() ends exactly these, by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            # A session of its own: Ctrl-C reaches only this script, which then stops the
            # children in order; nginx's workers share their master's process group.
            # preexec_fn is safe here: children start before any event loop or thread exists.
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509
        self.procs.append((name, proc, log))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        for pname, _, log in self.procs:
            if pname == name and log.exists():
                return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check_alive(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}:\n"
                                   f"{self.log_tail(name)}")

    def stop_all(self) -> None:
        # nginx first (it holds connections to the backends), then the simulators. SIGINT is
        # an immediate stop for both (SIGTERM would make a simulator finish its queue first).
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own group: nginx workers too
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs.clear()


def http_status(url: str, headers: dict[str, str] | None = None, timeout: float = 3.0) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return 0


def wait_status(procs: Processes, url: str, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while http_status(url) != 200:
        procs.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer 200 on {url} within {timeout:.0f} s")
        time.sleep(0.2)


@dataclass
class Backend:
    port: int
    url: str = ""

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"


@dataclass
class PhaseResult:
    label: str
    instances: int
    users: int
    window_s: float
    latencies: list[float] = field(default_factory=list)  # successful answers in the window
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count, in the window
    started: int = 0                                       # every request sent, whole phase
    capped: bool = False
    queue_mean: float = float("nan")                       # waiting requests per instance

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def answered(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def qps(self) -> float:
        return self.answered / self.window_s

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.window_s

    @property
    def error_rate(self) -> float:
        return sum(self.errors.values()) / self.answered if self.answered else float("nan")


async def backend_gauges(session: aiohttp.ClientSession, backend: Backend) -> tuple[float, float]:
    """(running, waiting) from the backend's /metrics."""
    async with session.get(backend.url + "/metrics") as resp:
        text = await resp.text()
    values = []
    for name in ("num_running_reqs", "num_queue_reqs"):
        m = re.search(rf"^sglang:{name}{{[^}}]*}} (\S+)$", text, re.MULTILINE)
        values.append(float(m.group(1)) if m else float("nan"))
    return values[0], values[1]


async def wait_idle(backends: list[Backend], timeout: float = 90.0) -> None:
    """Wait until no backend runs or queues anything (the previous phase's tail)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            gauges = [await backend_gauges(session, b) for b in backends]
            if all(r == 0 and w == 0 for r, w in gauges):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"backends still busy after {timeout:.0f} s: {gauges}")
            await asyncio.sleep(0.5)


async def closed_loop(label: str, url: str, headers: dict[str, str], backends: list[Backend],
                      users: int, duration: float, max_requests: int, seed: int) -> PhaseResult:
    """locust-like users: send, wait for the answer, think U(1, 3) s, repeat.

    Users start SPAWN_RATE per second; the measuring window opens SETTLE_S after the last one
    started and lasts `duration`. Answers that arrive inside the window are counted; then no
    new request is sent and the ones in flight are awaited (bounded by the request timeout).
    """
    body = json.dumps(SEED_PAYLOAD, ensure_ascii=False).encode()
    headers = {**headers, "Content-Type": "application/json"}
    result = PhaseResult(label, len(backends), users, duration)
    t_begin = time.monotonic()
    t_open = t_begin + users / SPAWN_RATE + SETTLE_S
    t_close = t_open + duration
    waiting_samples: list[float] = []

    connector = aiohttp.TCPConnector(limit=users + 8, keepalive_timeout=CLIENT_KEEPALIVE_S)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> str | None:
            """None for a good answer, else the kind of error."""
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    raw = await resp.read()
                    if not 200 <= resp.status < 300:
                        return f"HTTP {resp.status}"
                    try:
                        answer = json.loads(raw)
                    except ValueError:
                        return "bad JSON body"
                    return None if isinstance(answer, dict) and "text" in answer else "no text"
            except TimeoutError:
                return f"timeout ({REQUEST_TIMEOUT_S:.0f} s)"
            except aiohttp.ClientError as exc:
                return type(exc).__name__

        async def user(uid: int) -> None:
            rng = random.Random(seed * 100003 + uid)
            await asyncio.sleep(uid / SPAWN_RATE)
            while time.monotonic() < t_close:
                if result.started >= max_requests:
                    result.capped = True
                    return
                result.started += 1
                t0 = time.monotonic()
                error = await one()
                t1 = time.monotonic()
                if t_open <= t1 < t_close:
                    if error is None:
                        result.latencies.append(t1 - t0)
                    else:
                        result.errors[error] = result.errors.get(error, 0) + 1
                think = rng.uniform(*THINK_S)
                if t1 + think >= t_close:
                    return
                await asyncio.sleep(think)

        async def sampler() -> None:
            async with aiohttp.ClientSession() as probe:
                while True:
                    now = time.monotonic()
                    if t_open <= now < t_close:
                        gauges = [await backend_gauges(probe, b) for b in backends]
                        waiting_samples.append(sum(w for _, w in gauges) / len(gauges))
                    await asyncio.sleep(1.0)

        sampling = asyncio.ensure_future(sampler())
        try:
            await asyncio.gather(*(user(i) for i in range(users)))
        finally:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
    if waiting_samples:
        result.queue_mean = statistics.fmean(waiting_samples)
    return result


@dataclass
class Overhead:
    kind: str
    direct: list[float]
    via_lb: list[float]
    diffs: list[float]


async def nginx_overhead(direct_url: str, lb_url: str, direct_headers: dict[str, str],
                         lb_headers: dict[str, str], pairs: int) -> list[Overhead]:
    """One client, one connection to each side, one request at a time, alternating which side
    goes first, so drift in machine load hits both sides alike. Same single backend."""
    generate = json.dumps({"text": SEED_PROMPT, "sampling_params": {"max_new_tokens": 1}},
                          ensure_ascii=False).encode()
    kinds = (("POST /generate, 1 token", "POST", "/generate", generate),
             ("GET /v1/models", "GET", "/v1/models", None))
    connector = aiohttp.TCPConnector(limit_per_host=1, keepalive_timeout=CLIENT_KEEPALIVE_S)
    timeout = aiohttp.ClientTimeout(total=30)
    results = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def timed(base: str, headers: dict[str, str], method: str, path: str,
                        body: bytes | None) -> float:
            t0 = time.perf_counter()
            async with session.request(method, base + path, data=body,
                                       headers={**headers, "Content-Type": "application/json"}
                                       ) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{method} {base}{path}: HTTP {resp.status}")
            return time.perf_counter() - t0

        for kind, method, path, body in kinds:
            sides = ((direct_url, direct_headers), (lb_url, lb_headers))
            for _ in range(10):  # warm both connections (and nginx's upstream keepalive)
                for base, headers in sides:
                    await timed(base, headers, method, path, body)
            direct, via_lb, diffs = [], [], []
            for i in range(pairs):
                order = sides if i % 2 == 0 else sides[::-1]
                got = {}
                for base, headers in order:
                    got[base] = await timed(base, headers, method, path, body)
                direct.append(got[direct_url])
                via_lb.append(got[lb_url])
                diffs.append(got[lb_url] - got[direct_url])
            results.append(Overhead(kind, direct, via_lb, diffs))
    return results


def render_nginx(workdir: Path, pools: list[dict], listen_port: int, status_port: int,
                 lb_key: str, backend_key: str) -> Path:
    """Render the role's configuration (tests/harness/render-lb.yml); return nginx.conf."""
    return lbrender.render(workdir, {
        "nginx_lb_pools": pools,
        "nginx_lb_listen_port": listen_port,
        "nginx_lb_stub_status_port": status_port,
        # The limits stay in the request path (their cost is part of the overhead) but are set
        # far above anything this benchmark sends.
        "nginx_lb_api_keys": [{"name": "bench", "key": lb_key, "rate": "100000r/s",
                               "burst": 100000, "max_concurrent": 100000}],
        "nginx_lb_backend_api_key": backend_key,
    })


def access_log_summary(log: Path, offset: int) -> tuple[dict[str, int], int, int]:
    """Answers per final upstream, requests nginx re-sent to another server, log lines."""
    per_upstream: dict[str, int] = {}
    retried = lines = 0
    with open(log, "rb") as f:
        f.seek(offset)
        for raw in f:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("uri") != "/generate":
                continue
            lines += 1
            addrs = [a.strip() for a in entry.get("upstream_addr", "").split(",") if a.strip()]
            if len(addrs) > 1:
                retried += 1
            if addrs:
                per_upstream[addrs[-1]] = per_upstream.get(addrs[-1], 0) + 1
    return per_upstream, retried, lines


def print_table(rows: list[PhaseResult]) -> None:
    header = (f"{'configuration':<30} {'users':>5} {'requests':>8} {'QPS':>6} {'ok/s':>6} "
              f"{'p50 s':>6} {'p99 s':>6} {'errors':>7} {'queue':>6}")
    print(header)
    print("-" * len(header))
    for label, qps, p99, err in SEED_ROWS:
        print(f"{label:<30} {50:>5} {'-':>8} {qps:>6.1f} {'-':>6} {'-':>6} {p99:>6.1f} "
              f"{err:>6.0f}% {'-':>6}")
    for r in rows:
        print(f"{r.label:<30} {r.users:>5} {r.answered:>8} {r.qps:>6.1f} {r.ok_per_s:>6.1f} "
              f"{pct(r.latencies, 0.5):>6.2f} {pct(r.latencies, 0.99):>6.2f} "
              f"{r.error_rate * 100:>6.1f}% {r.queue_mean:>6.1f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=3,
                    help="instances behind nginx (default 3)")
    ap.add_argument("--users", type=int, default=50, help="simulated users (default 50)")
    ap.add_argument("--duration", type=float, default=None,
                    help="measuring window per configuration, seconds (default 45; --quick 15)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 15 s windows, 100 overhead pairs")
    ap.add_argument("--max-requests", type=int, default=20000,
                    help="hard cap on requests per configuration (default 20000)")
    ap.add_argument("--overhead-pairs", type=int, default=None,
                    help="direct/nginx request pairs per overhead measure (default 400; "
                         "--quick 100)")
    ap.add_argument("--max-running-requests", type=int, default=MAX_RUNNING)
    ap.add_argument("--max-queued-requests", type=int, default=MAX_QUEUED)
    ap.add_argument("--decode-ms", type=float, default=DECODE_MS,
                    help="simulated decode step with one running request, ms")
    ap.add_argument("--decode-ms-per-req", type=float, default=DECODE_MS_PER_REQ,
                    help="extra step time per additional running request, ms")
    ap.add_argument("--output-tokens", type=int, default=OUTPUT_TOKENS,
                    help="tokens in every simulated answer")
    ap.add_argument("--nginx", default=os.environ.get("NGINX", "/usr/sbin/nginx"),
                    help="nginx binary (default /usr/sbin/nginx, or $NGINX)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter that runs the simulator (default: this one)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the users' think times")
    opts = ap.parse_args(argv)
    if opts.duration is None:
        opts.duration = 15.0 if opts.quick else 45.0
    if opts.overhead_pairs is None:
        opts.overhead_pairs = 100 if opts.quick else 400
    checks = (("--instances", 1 <= opts.instances <= 16, "between 1 and 16"),
              ("--users", 1 <= opts.users <= 1000, "between 1 and 1000"),
              ("--duration", 5 <= opts.duration <= 600, "between 5 and 600 seconds"),
              ("--max-requests", 1 <= opts.max_requests <= 1_000_000, "between 1 and 1000000"),
              ("--overhead-pairs", 10 <= opts.overhead_pairs <= 10_000, "between 10 and 10000"),
              ("--max-running-requests", opts.max_running_requests >= 1, "at least 1"),
              ("--max-queued-requests", opts.max_queued_requests >= 1, "at least 1"),
              ("--decode-ms", opts.decode_ms > 0, "above 0"),
              ("--decode-ms-per-req", opts.decode_ms_per_req >= 0, "0 or more"),
              ("--output-tokens", 1 <= opts.output_tokens <= 128,
               "between 1 and 128 (SGLang's default max_new_tokens caps the seed's request)"))
    for flag, ok, rule in checks:
        if not ok:
            ap.error(f"argument {flag}: must be {rule}")
    nginx = shutil.which(opts.nginx) or opts.nginx
    if not (os.path.isfile(nginx) and os.access(nginx, os.X_OK)):
        ap.error(f"argument --nginx: {opts.nginx} is not an executable nginx "
                 "(Debian: apt-get install nginx-light)")
    opts.nginx = nginx
    return opts


def run(opts: argparse.Namespace, workdir: Path, procs: Processes) -> int:
    n = opts.instances
    backends = [Backend(free_port()) for _ in range(n)]
    backend_key = secrets.token_urlsafe(24)
    lb_key = secrets.token_urlsafe(24)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "simulator")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                     if p]))
    for i, b in enumerate(backends):
        procs.start(f"sim-{i}", [
            opts.python, "-m", "sglang_sim.launch_server",
            "--model-path", "inferops-bench/model", "--host", "127.0.0.1", "--port", str(b.port),
            "--api-key", backend_key, "--enable-metrics", "--log-level", "warning",
            "--max-running-requests", str(opts.max_running_requests),
            "--max-queued-requests", str(opts.max_queued_requests),
            "--sim-decode-ms", str(opts.decode_ms),
            "--sim-decode-ms-per-req", str(opts.decode_ms_per_req),
            "--sim-min-output-tokens", str(opts.output_tokens),
            "--sim-max-output-tokens", str(opts.output_tokens),
            "--sim-load-seconds", "0", "--sim-warmup-seconds", "0", "--sim-seed", str(i)],
            env=env)

    # Pool "bench": every instance, served at "/" as deployed. Pool "single": the first
    # instance alone, so the overhead compares the same backend with and without nginx.
    listen_port, status_port = free_port(), free_port()
    pools = [{"name": "bench", "servers": [{"address": f"127.0.0.1:{b.port}"} for b in backends]},
             {"name": "single", "servers": [{"address": f"127.0.0.1:{backends[0].port}"}]}]
    t0 = time.monotonic()
    conf = render_nginx(workdir, pools, listen_port, status_port, lb_key, backend_key)
    render_s = time.monotonic() - t0
    test = subprocess.run([opts.nginx, "-t", "-c", str(conf)], check=False,
                          capture_output=True, text=True, timeout=60)
    if test.returncode != 0:
        raise RuntimeError(f"nginx -t rejected the rendered configuration:\n{test.stderr}")
    # No -p: the prefix stays Debian's, so modules-enabled/*.conf (relative module paths)
    # still load; every path the configuration writes is absolute and inside workdir.
    procs.start("nginx", [opts.nginx, "-c", str(conf), "-g", "daemon off;"])
    lb = f"http://127.0.0.1:{listen_port}"

    for i, b in enumerate(backends):
        wait_status(procs, b.url + "/health", f"simulator {i}")
    wait_status(procs, lb + "/lb/health", "nginx (/lb/health)")
    nginx_version = subprocess.run([opts.nginx, "-v"], check=False, capture_output=True,
                                   text=True, timeout=30).stderr
    step_full = opts.decode_ms + opts.decode_ms_per_req * (opts.max_running_requests - 1)
    capacity = opts.max_running_requests / (opts.output_tokens * step_full / 1000)
    print(f"{nginx_version.strip()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; configuration rendered from roles/nginx_lb in "
          f"{render_s:.1f} s.")
    print(f"Per instance: {opts.max_running_requests} running + {opts.max_queued_requests} "
          f"queued requests (then 503), decode step {opts.decode_ms:g} ms + "
          f"{opts.decode_ms_per_req:g} ms per extra running request ({step_full:g} ms when "
          f"full), {opts.output_tokens}-token answers: at most ~{capacity:.1f} answers/s.")
    print(f"Load: {opts.users} users started {SPAWN_RATE:g}/s, think {THINK_S[0]:g}-"
          f"{THINK_S[1]:g} s, POST /generate {json.dumps(SEED_PAYLOAD, ensure_ascii=False)}; "
          f"{opts.duration:g} s measured per configuration after {SETTLE_S:g} s of settling.\n")

    direct_headers = {"Authorization": f"Bearer {backend_key}"}
    lb_headers = {"Authorization": f"Bearer {lb_key}"}

    print("Measuring the nginx overhead (one client, same backend, one request at a time)...",
          flush=True)
    overheads = asyncio.run(nginx_overhead(backends[0].url, lb + "/pools/single",
                                           direct_headers, lb_headers, opts.overhead_pairs))

    print(f"Running 1 instance, direct ({opts.duration:g} s)...", flush=True)
    asyncio.run(wait_idle(backends))
    single = asyncio.run(closed_loop("1 instance, direct", backends[0].url + "/generate",
                                     direct_headers, backends[:1], opts.users, opts.duration,
                                     opts.max_requests, opts.seed))
    procs.check_alive()

    print(f"Running {n} instances behind nginx ({opts.duration:g} s)...", flush=True)
    asyncio.run(wait_idle(backends))
    log = workdir / "access.log"
    offset = log.stat().st_size if log.exists() else 0
    lb_row = asyncio.run(closed_loop(f"{n} instance{'s' if n > 1 else ''} behind nginx",
                                     lb + "/generate", lb_headers, backends, opts.users,
                                     opts.duration, opts.max_requests, opts.seed))
    procs.check_alive()
    per_upstream, retried, logged = access_log_summary(log, offset)

    print()
    print_table([single, lb_row])
    print("\nQPS: every answer in the window per second; ok/s: successful answers per second;"
          "\np50/p99: latency of successful answers; errors: non-2xx or connection errors;"
          "\nqueue: mean waiting requests per instance (sglang:num_queue_reqs).")
    for r in (single, lb_row):
        if r.errors:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items()))
            print(f"  errors of '{r.label}': {kinds}")
        if r.capped:
            print(f"  '{r.label}' hit --max-requests={opts.max_requests}; its figures are short")

    spread = ", ".join(f"{addr} {count}" for addr, count in sorted(per_upstream.items()))
    print(f"\nnginx (whole phase, {logged} /generate requests logged): answers per instance: "
          f"{spread or 'none'}; re-sent to another instance: {retried}.")

    ratio = lb_row.ok_per_s / single.ok_per_s if single.ok_per_s else float("nan")
    qps_ratio = lb_row.qps / single.qps if single.qps else float("nan")
    # The goal is for 3 instances (2.9x of an ideal 3x); other counts get the same share.
    goal = round(n * 2.9 / 3, 2)
    met = ratio >= goal and lb_row.error_rate == 0
    print(f"\nThroughput (successful answers/s), {n} behind nginx / 1 direct: {ratio:.2f}x "
          f"with {lb_row.error_rate * 100:.1f}% errors -- goal >= {goal:g}x with 0% errors: "
          f"{'met' if met else 'NOT met'}.")
    print(f"QPS (every answer, 503s included), {n} behind nginx / 1 direct: {qps_ratio:.2f}x "
          f"(the seed's table: {SEED_ROWS[1][1] / SEED_ROWS[0][1]:.2f}x).")

    print("\nLatency nginx adds at the median (same client, same single backend, one request "
          f"at a time, {opts.overhead_pairs} alternating pairs):")
    for o in overheads:
        d50, l50 = statistics.median(o.direct), statistics.median(o.via_lb)
        diff50 = statistics.median(o.diffs)
        print(f"  {o.kind:<24} direct p50 {d50 * 1000:7.3f} ms, via nginx p50 {l50 * 1000:7.3f}"
              f" ms: +{(l50 - d50) * 1000:.3f} ms (median of paired differences "
              f"{diff50 * 1000:+.3f} ms, p25..p75 {pct(o.diffs, 0.25) * 1000:+.3f}.."
              f"{pct(o.diffs, 0.75) * 1000:+.3f} ms)")
    head = statistics.median(overheads[0].diffs) * 1000
    print(f"  => nginx overhead at the median (POST /generate): {head:.3f} ms, "
          f"{'under' if head < 1.0 else 'NOT under'} 1 ms.")
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f} (a shared machine: compare the "
          "rows of one run, not runs of different times).")
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then never
    # raises KeyboardInterrupt; the clean-up must run however the benchmark was started.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="inferops-bench-lb-"))
    procs = Processes(workdir)
    try:
        return run(opts, workdir, procs)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every process this benchmark started", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
