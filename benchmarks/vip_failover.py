#!/usr/bin/env python3
"""Time without service when the VIP moves, on the running lab (`make lab`).

The lab's two load balancers share a VIP (keepalived, role inferops.sglang.keepalived). Each
trial sends a steady load of short chats to the VIP from this machine, then at 4 s stops, on
the load balancer that holds the VIP:

- nginx: its nginx (systemctl stop nginx): keepalived's check fails and hands the VIP over;
- host: the whole host (docker stop: its keepalived says goodbye as it shuts down);
- crash: the whole host killed (docker kill: no goodbye, the peer waits for missed adverts);

and prints, per trial, the time without service, the failed requests of the steady load and
where the VIP went; then p50 and p95 of the time without service per fault. The time without
service is measured by a prober beside the load that opens a new connection every 50 ms (each
with a 2 s timeout, as a new client would): the longest stretch after the fault in which no
probe that was sent got an answer. A closed-loop load alone would overstate it: its clients
stuck in requests that die with the old holder stop sending until their timeout. After each trial the stopped part is started again
and the VIP stays where it moved (nopreempt): the next trial faults the new holder.
Goal (issue 12): 4 s or less at p95.

Traffic goes only to the VIP on the lab's own Docker network. Needs the lab's secrets in
.cache/lab-secrets/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from benchlib import pct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.harness.load import run_load, service_gap

PREFIX = "inferops-lab"
LBS = (f"{PREFIX}-lb1", f"{PREFIX}-lb2")
FAULT_AT = 4.0
PROBE_EVERY = 0.05
PROBE_TIMEOUT = 2.0


def docker(*args, check=True):
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=90)
    if check and done.returncode != 0:
        raise RuntimeError("docker {}: {}".format(" ".join(args), done.stderr.strip()))
    return done


def lab_vip():
    """The VIP as deployed: the address in lb1's keepalived configuration."""
    config = docker("exec", LBS[0], "cat", "/etc/keepalived/keepalived.conf").stdout
    match = re.search(r"virtual_ipaddress \{\s*([0-9.]+)", config)
    if not match:
        raise RuntimeError("no virtual_ipaddress in lb1's keepalived.conf: is the lab up with its VIP?")
    return match.group(1)


def holders(vip):
    found = []
    for name in LBS:
        done = docker("exec", name, "ip", "-4", "-o", "addr", "show", check=False)
        if done.returncode == 0 and re.search(r"\sinet " + re.escape(vip) + "/", done.stdout):
            found.append(name)
    return found


def ready(vip):
    """Both load balancers run nginx and keepalived, and exactly one holds the VIP."""
    for name in LBS:
        if docker("exec", name, "systemctl", "is-active", "nginx", "keepalived", check=False).returncode != 0:
            return False
    return len(holders(vip)) == 1


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


async def probe(url, key, seconds):
    """One short chat on a new connection every PROBE_EVERY seconds, recorded as the load's
    records are (``t``, ``outcome``), so the load's service_gap measures them."""
    results = []
    headers = {"Authorization": "Bearer " + key}
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    t0 = time.monotonic()

    async def one(session, start):
        try:
            async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
                await resp.read()
                results.append({"t": start, "outcome": "ok" if resp.status == 200 else resp.status})
        except (TimeoutError, aiohttp.ClientError):
            results.append({"t": start, "outcome": "error"})

    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as session:
        tasks = []
        while time.monotonic() - t0 < seconds:
            tasks.append(asyncio.create_task(one(session, round(time.monotonic() - t0, 3))))
            await asyncio.sleep(PROBE_EVERY)
        await asyncio.gather(*tasks)
    return results


def trial(vip, key, fault, seconds):
    wait_for(lambda: ready(vip), 120, "both load balancers up and one VIP holder")
    time.sleep(3)
    holder = holders(vip)[0]
    command = {"nginx": ["docker", "exec", holder, "systemctl", "stop", "nginx"],
               "host": ["docker", "stop", holder],
               "crash": ["docker", "kill", holder]}[fault]

    async def inject():
        proc = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await proc.wait()

    async def both():
        return await asyncio.gather(
            run_load(f"http://{vip}:8080", key, seconds, concurrency=4, tokens=[8, 8, 24], decode_ms=40.0,
                     client_timeout=30.0, events=[(FAULT_AT, inject)]),
            probe(f"http://{vip}:8080", key, seconds))

    (records, _t0), probes = asyncio.run(both())
    moved_to = holders(vip)
    if fault == "nginx":
        docker("exec", holder, "systemctl", "start", "nginx")
    else:
        docker("start", holder)
    failed = [r for r in records if r["outcome"] != "ok"]
    return {"fault": fault, "from": holder, "to": moved_to, "requests": len(records), "failed": len(failed),
            "hung": sum(1 for r in failed if r["outcome"] == "hung"),
            "outcomes": sorted({str(r["outcome"]) for r in failed}),
            "probes": len(probes), "probes_failed": sum(1 for p in probes if p["outcome"] != "ok"),
            "no_service_s": service_gap(probes, FAULT_AT), "load_gap_s": service_gap(records, FAULT_AT)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--faults", default="nginx,host,crash")
    parser.add_argument("--seconds", type=float, default=16.0, help="load per trial")
    parser.add_argument("--secrets", default=str(ROOT / ".cache" / "lab-secrets"))
    parser.add_argument("--json", help="write every trial's figures here")
    args = parser.parse_args()
    key = (Path(args.secrets) / "lb-api-key").read_text().strip()
    vip = lab_vip()
    print(f"VIP {vip}; load: 4 clients, short chats, fault at {FAULT_AT:.0f} s of {args.seconds:.0f} s", flush=True)
    results = []
    for fault in args.faults.split(","):
        for number in range(1, args.trials + 1):
            result = trial(vip, key, fault, args.seconds)
            results.append(result)
            print(f"{fault:<6} trial {number}: {result['from']} -> {','.join(result['to']) or 'nobody'}: "
                  f"{result['requests']:4d} requests, {result['failed']} failed ({result['hung']} hung) "
                  f"{result['outcomes'] or ''}; probes {result['probes_failed']}/{result['probes']} failed, "
                  f"{result['no_service_s']} s without service", flush=True)
    print()
    print(f"{'fault':<6} {'trials':>6} {'no service p50 s':>17} {'p95 s':>7} {'failed per trial':>17}")
    for fault in args.faults.split(","):
        runs = [r for r in results if r["fault"] == fault]
        gaps = [r["no_service_s"] for r in runs if r["no_service_s"] is not None]
        print(f"{fault:<6} {len(runs):6d} {pct(gaps, 0.5):17.2f} {pct(gaps, 0.95):7.2f}   "
              f"{[r['failed'] for r in runs]}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
