#!/usr/bin/env python3
"""Failover times of the HA control plane, on the running lab (`make lab`).

Runs --trials trials of each fault under a steady load of non-streamed chats (a mix of short
and long generations, every request counted), and prints p50 and p95 of:

- killed: the active-standby pool's leader instance killed (docker kill inside its node):
  time until the load balancer renders it down, and until the standby holds the lease;
- frozen: an active-active instance frozen (the simulator's hang: connections accepted,
  nothing answered): time until it is out of rotation;
- partitioned: the active-standby leader node cut off from the network (every packet of its
  interface dropped: no RST, no FIN), reconnected 15 s later: time until the standby leads;

and, for every trial, the failed and hung requests. The times come from the agents' events
(every container shares this machine's clock) measured from the moment the fault was injected.
Goals (issue 10): killed, lease moved in 3 s or less (p95); frozen, out of rotation in 5 s or
less (p95); leader node lost, standby leads within TTL + 1 s; 0 failed requests in every trial.

--png draws the first partition trial as a timeline: requests per second by outcome, each
request's latency, the fault, the heal and every role change.

Traffic goes only to 127.0.0.1:8080 (the lab's load balancer) and the lab's containers. Needs
the lab's secrets in .cache/lab-secrets/ and matplotlib for --png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from benchlib import pct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / ".build" / "collections"))
from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import (
    LABELS,
)
from ansible_collections.inferops.sglang.plugins.module_utils._leases import (
    instance_key,
    leader_key,
    read_events,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    AGENT_USER,
    SENTINEL_CLIENT_USER,
    RedisClient,
    discover_master,
)

from tests.harness.load import run_load

PREFIX = "inferops-lab"
NODES = ("gpu1", "gpu2")
TOKENS = [8, 8, 40, 8, 150, 8, 400]
DECODE_MS = 40.0
CUT = ("iptables -I INPUT 1 -i eth0 -j DROP && iptables -I OUTPUT 1 -o eth0 -j DROP && "
       "iptables -I FORWARD 1 -i eth0 -j DROP && iptables -I FORWARD 1 -o eth0 -j DROP")
HEAL = CUT.replace(" -I ", " -D ").replace(" 1 ", " ")


def docker(*args, check=True):
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError("docker {}: {}".format(" ".join(args), done.stderr.strip()))
    return done.stdout


def container_ip(name):
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).strip()


class Lab:
    def __init__(self, secrets):
        self.key = (secrets / "lb-api-key").read_text().strip()
        self.backend_key = (secrets / "sglang-api-key").read_text().strip()
        self.agent_password = (secrets / "redis-agent-password").read_text().strip()
        self.client_password = (secrets / "sentinel-client-password").read_text().strip()
        self.sentinels = [(container_ip(f"{PREFIX}-redis{i}"), 26379) for i in (1, 2, 3)]
        self.instances = {}
        for node in NODES:
            ip = container_ip(f"{PREFIX}-{node}")
            lines = docker("exec", f"{PREFIX}-{node}", "docker", "ps", "--format",
                           "{{.Names}} {{.Label \"" + LABELS["pool"] + "\"}} {{.Ports}}").splitlines()
            for line in lines:
                name, pool, ports = line.split(" ", 2)
                port = ports.split("->")[0].rsplit(":", 1)[1]
                self.instances.setdefault(pool, []).append({"node": node, "name": name, "address": f"{ip}:{port}"})

    def redis(self):
        host, port = discover_master(self.sentinels, "inferops", SENTINEL_CLIENT_USER, self.client_password, AGENT_USER,
                                     self.agent_password, timeout=1.0)
        return RedisClient(host, port, username=AGENT_USER, password=self.agent_password, timeout=2.0)

    def holder(self):
        client = self.redis()
        try:
            value = client.execute("GET", leader_key("standby"))
            return value.rsplit(":", 1)[0] if value else None
        finally:
            client.close()

    def all_healthy(self):
        client = self.redis()
        try:
            for pool, instances in self.instances.items():
                for inst in instances:
                    if client.execute("HGET", instance_key(pool, inst["node"], inst["name"]), "state") != "healthy":
                        return False
            return client.execute("GET", leader_key("standby")) is not None
        finally:
            client.close()

    def events_since(self, since):
        client = self.redis()
        try:
            return [e for e in read_events(client, 300) if e["time"] >= since]
        finally:
            client.close()


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - the lab may be in the middle of a failover
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what} (last error: {last})")


async def _cmd(*argv):
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = (await proc.communicate())[1]
    if proc.returncode != 0:
        raise RuntimeError(" ".join(argv) + ": " + err.decode().strip())


def trial(lab, fault):
    """One fault under load; returns the figures and the raw data for a picture."""
    wait_for(lab.all_healthy, 120, "every instance healthy and a standby leader")
    time.sleep(2)
    leader = lab.holder()
    standby_inst = next(i for i in lab.instances["standby"] if i["node"] == leader)
    chat_inst = lab.instances["chat"][int(time.time()) % len(lab.instances["chat"])]
    marks = {}

    async def inject():
        marks["fault"] = time.time()
        if fault == "killed":
            await _cmd("docker", "exec", f"{PREFIX}-{leader}", "docker", "kill", standby_inst["name"])
        elif fault == "frozen":
            url = "http://{}/_sim/fault".format(chat_inst["address"])
            async with aiohttp.ClientSession() as session, session.post(
                    url, json={"mode": "hang"}, headers={"Authorization": "Bearer " + lab.backend_key}) as resp:
                await resp.read()
        else:
            await _cmd("docker", "exec", f"{PREFIX}-{leader}", "sh", "-c", CUT)

    async def heal():
        marks["heal"] = time.time()
        await _cmd("docker", "exec", f"{PREFIX}-{leader}", "sh", "-c", HEAL)

    path = "/v1/chat/completions" if fault == "frozen" else "/pools/standby/v1/chat/completions"
    events = [(3.0, inject)] + ([(18.0, heal)] if fault == "partitioned" else [])
    records, _t0 = asyncio.run(run_load("http://127.0.0.1:8080", lab.key, 25.0, concurrency=6, path=path,
                                       tokens=TOKENS, decode_ms=DECODE_MS, client_timeout=60.0, events=events))
    wall0 = marks["fault"] - 3.0  # the load's t=0 on the wall clock (the fault fired at t=3)
    target = chat_inst if fault == "frozen" else standby_inst
    history = lab.events_since(marks["fault"] - 1)
    down = [e for e in history if e["type"] == "TOPOLOGY_APPLIED" and target["address"] + " " in e["reason"] + " "
            and "->down" in e["reason"].split(target["address"], 1)[1].split(",")[0]]
    leads = [e for e in history if e["type"] in ("FAILOVER", "LEADER_ELECTED") and e.get("pool") == "standby"
             and e.get("to") != leader]
    failed = [r for r in records if r["outcome"] != "ok"]
    return {
        "fault": fault, "requests": len(records), "failed": len(failed),
        "hung": sum(1 for r in failed if r["outcome"] == "hung"),
        "out_of_rotation_s": round(down[0]["time"] - marks["fault"], 2) if down else None,
        "standby_leads_s": round(leads[0]["time"] - marks["fault"], 2) if leads and fault != "frozen" else None,
        "worst_overrun_s": max(r["overrun"] for r in records),
        "records": records, "marks": {k: v - wall0 for k, v in marks.items()},
        "events": [dict(e, t=e["time"] - wall0) for e in history],
    }


def figures(results):
    rows = []
    for fault in ("killed", "frozen", "partitioned"):
        runs = [r for r in results if r["fault"] == fault]
        if not runs:
            continue
        for key in ("out_of_rotation_s", "standby_leads_s"):
            values = [r[key] for r in runs if r[key] is not None]
            if values:
                rows.append((fault, key, len(values), pct(values, 0.5), pct(values, 0.95)))
    return rows


def draw(result, path):
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    records = result["records"]
    end = int(max(r["end"] for r in records)) + 1
    ok = [0] * end
    bad = [0] * end
    for r in records:
        (ok if r["outcome"] == "ok" else bad)[min(int(r["end"]), end - 1)] += 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    top.bar(range(end), ok, width=0.9, color="#3a7d44", label="answered (200)")
    top.bar(range(end), bad, bottom=ok, width=0.9, color="#c0392b", label="failed or hung")
    top.set_ylabel("requests finished per second")
    top.legend(loc="upper right")
    lat = [(r["t"], r["latency"], r["outcome"] == "ok") for r in records]
    bottom.scatter([t for t, _, good in lat if good], [v for _, v, good in lat if good], s=10, color="#1f4e79",
                   label="latency of each request (at its start)")
    bottom.scatter([t for t, _, good in lat if not good], [v for _, v, good in lat if not good], s=18,
                   color="#c0392b", marker="x", label="failed or hung")
    bottom.set_ylabel("latency, s")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper right")
    colours = {"FAILOVER": "#8e44ad", "SELF_FENCED": "#d35400", "TOPOLOGY_APPLIED": "#7f8c8d",
               "INSTANCE_FENCED": "#c0392b", "INSTANCE_HEALTHY": "#27ae60", "HANDOVER": "#2980b9"}
    for axis in (top, bottom):
        for name, at in result["marks"].items():
            axis.axvline(at, color="black", linestyle="--", linewidth=1.2)
            axis.text(at, axis.get_ylim()[1] * 0.95, " " + name, fontsize=8, va="top")
        for event in result["events"]:
            if event["type"] in colours and 0 <= event["t"] <= end:
                axis.axvline(event["t"], color=colours[event["type"]], linewidth=0.8, alpha=0.8)
    for event in result["events"]:
        if event["type"] in colours and 0 <= event["t"] <= end:
            bottom.text(event["t"], bottom.get_ylim()[1] * 0.7, f" {event['type']} e{event['epoch']}",
                        rotation=90, fontsize=7, color=colours[event["type"]], va="top")
    fig.suptitle("Leader node of the active-standby pool cut off the network at the fault, reconnected at the heal "
                 f"({result['requests']} requests, {result['failed']} failed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--faults", default="killed,frozen,partitioned")
    parser.add_argument("--secrets", default=str(ROOT / ".cache" / "lab-secrets"))
    parser.add_argument("--png", help="draw the first partition trial here (needs matplotlib)")
    parser.add_argument("--json", help="write every trial's figures here")
    args = parser.parse_args()
    lab = Lab(Path(args.secrets))
    results = []
    for fault in args.faults.split(","):
        for number in range(1, args.trials + 1):
            result = trial(lab, fault)
            results.append(result)
            print(f"{fault:<12} trial {number}: {result['requests']:4d} requests, {result['failed']} failed "
                  f"({result['hung']} hung), out of rotation {result['out_of_rotation_s']} s, standby leads "
                  f"{result['standby_leads_s']} s, worst overrun {result['worst_overrun_s']:.1f} s", flush=True)
    print()
    print(f"{'fault':<12} {'time to':<20} {'trials':>6} {'p50 s':>7} {'p95 s':>7}")
    for fault, key, count, p50, p95 in figures(results):
        label = key.replace("_s", "").replace("_", " ")
        print(f"{fault:<12} {label:<20} {count:6d} {p50:7.2f} {p95:7.2f}")
    print("failed or hung requests per trial:", [r["failed"] for r in results])
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if k not in ("records", "events")}
                                               for r in results], indent=1))
    partition = next((r for r in results if r["fault"] == "partitioned"), None)
    if args.png and partition:
        draw(partition, args.png)
        print("timeline:", args.png)


if __name__ == "__main__":
    main()
