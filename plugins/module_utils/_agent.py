# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""``inferops-agent``: the HA agent's runtime, on GPU nodes and load balancers.

What it decides and why is in ``_ha.py``; this file gathers the observations (probes, Docker,
Redis), carries out the actions (restart a container, take or renew a lease, render and apply
the upstream files), logs one line per decision with its epoch, publishes events, keeps its
state across restarts and serves a status document and Prometheus metrics on loopback.

Who owns what: the inventory (through site.yml and the agent's config file) decides which
instances and servers exist; the agents decide their live state through Redis. The agent never
renders a server its config does not list, and site.yml never overwrites an upstream file the
agent owns.

Redis unreachable: freeze. The LB keeps the last applied topology, no role changes (a leader
keeps claiming primary only until its lease deadline), and Nginx keeps failing over per
request on its own. There is no fallback to a local lock.

No Ansible imports; stdlib only, so the role installs these files as they are.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ansible_collections.inferops.sglang.plugins.module_utils import _ha as ha
from ansible_collections.inferops.sglang.plugins.module_utils._access_log import AccessLogCounter
from ansible_collections.inferops.sglang.plugins.module_utils._address import address_is_local, parse_address
from ansible_collections.inferops.sglang.plugins.module_utils._leases import (
    Leases,
    drain_key,
    event,
    human_event,
    instance_key,
    json_object,
    last_leader_key,
    lb_key,
    leader_key,
    parse_holder,
    paused_key,
    publish_event,
    request_key,
)
from ansible_collections.inferops.sglang.plugins.module_utils._nginx_apply import ApplyError, apply_files
from ansible_collections.inferops.sglang.plugins.module_utils._nginx_upstreams import render_upstream_files
from ansible_collections.inferops.sglang.plugins.module_utils._probe import http_get, sglang_load
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    AGENT_USER,
    SENTINEL_CLIENT_USER,
    RedisClient,
    RedisError,
    RedisReplyError,
    discover_master,
)
from ansible_collections.inferops.sglang.plugins.module_utils._sglang_api import api_profile

log = logging.getLogger("inferops-agent")

DEFAULT_TIMING = {
    "loop": 1.0,              # seconds between decisions
    "lease_ttl": 5.0,         # seconds a lease lives without renewal
    "lease_margin": 1.0,      # a leader stops claiming primary this long before its lease could expire
    "cheap_timeout": 0.8,     # the every-loop probe
    "deep_interval": 2.0,     # a real generation this often
    "deep_timeout": 5.0,
    "fall": 2,                # failed probes in a row before an instance leaves rotation
    "rise": 2,                # good deep probes before a restarted instance rejoins
    "start_timeout": 120.0,   # a (re)started instance may take this long to become healthy
    "backoff_min": 5.0,       # restart back-off of a crash-looping instance, doubling
    "backoff_max": 120.0,
    "record_ttl": 5.0,        # an instance record in Redis expires this long after its agent stops
    "wait_replicas": 1,       # a lease counts once this many replicas have it (WAIT)
    "wait_timeout_ms": 500,
}


def check_timing(timing):
    """Problems with the timings, each naming the ha_agent variable (the role's preflight and the
    agent's start both refuse them): a lease must survive a few missed loops."""
    errors = []
    loop, ttl, margin = timing["loop"], timing["lease_ttl"], timing["lease_margin"]
    if loop <= 0:
        errors.append("ha_agent_loop_seconds: must be > 0")
    if loop * 3 > ttl:
        errors.append("ha_agent_loop_seconds: %g is more than a third of ha_agent_lease_ttl_seconds (%g): a leader would "
                      "lose its lease after one slow loop" % (loop, ttl))
    if margin < loop or margin >= ttl - loop:
        errors.append("ha_agent_lease_margin_seconds: %g must be at least one loop (%g) and leave a loop before the TTL "
                      "(%g)" % (margin, loop, ttl))
    if timing["cheap_timeout"] >= loop:
        errors.append("ha_agent_probe_timeout_seconds: %g must be shorter than the loop (%g)" % (timing["cheap_timeout"], loop))
    if timing["fall"] < 1 or timing["rise"] < 1:
        errors.append("ha_agent_fall / ha_agent_rise: must be at least 1")
    if timing["record_ttl"] < 2 * loop:
        errors.append("ha_agent_record_ttl_seconds: %g must be at least two loops" % timing["record_ttl"])
    return errors


def _read_secret(path):
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


# ---- Redis, through Sentinel ----------------------------------------------------------------
# Seconds per Sentinel when looking for the master: a partitioned node tries each in turn.
DISCOVERY_TIMEOUT = 0.2


class RedisLink:
    """The connection to the current master, found through the Sentinels and found again after
    any error (a promotion closes old connections; a READONLY reply means we hold a replica)."""

    def __init__(self, cfg):
        self.sentinels = [tuple(item) for item in cfg["sentinels"]]
        self.master_name = cfg["master_name"]
        self.sentinel_password = _read_secret(cfg.get("sentinel_password_file"))
        self.password = _read_secret(cfg.get("password_file"))
        self.timeout = float(cfg.get("timeout", 0.5))
        self.client = None
        self.master = None
        self.error = None
        self.healthy = True
        self.recovered_at = None
        self.failed_at = None
        self.retry_seconds = float(cfg.get("retry_seconds", 0.5))

    def _outcome(self, ok):
        if ok and not self.healthy:
            self.recovered_at = time.monotonic()
        self.healthy = ok

    def get(self):
        if self.client is None:
            # One attempt to find the master per loop at most: a partitioned node must not spend
            # its loop (and its lease margin) waiting on unreachable Sentinels again and again.
            if self.failed_at is not None and time.monotonic() - self.failed_at < self.retry_seconds:
                return None
            try:
                # Short per-Sentinel timeouts: a partitioned node tries every Sentinel in turn, and
                # the whole attempt must fit well inside the lease margin.
                host, port = discover_master(self.sentinels, self.master_name, SENTINEL_CLIENT_USER,
                                             self.sentinel_password, AGENT_USER, self.password,
                                             min(self.timeout, DISCOVERY_TIMEOUT))
                client = RedisClient(host, port, username=AGENT_USER, password=self.password, timeout=self.timeout,
                                     client_name="inferops-agent")
                client.connect()
                self.client, self.master, self.error = client, "%s:%s" % (host, port), None
            except (RedisError, OSError, ValueError) as exc:
                self.error = str(exc)
                self.failed_at = time.monotonic()
                self._outcome(False)
                return None
            self.failed_at = None
        return self.client

    def drop(self, error):
        self.error = str(error)
        self._outcome(False)
        if self.client is not None:
            self.client.close()
        self.client = None

    def run(self, action):
        """``action(client)``; None (and the link dropped) when Redis cannot be used right now."""
        client = self.get()
        if client is None:
            return None
        try:
            result = action(client)
            self._outcome(True)
            return result
        except RedisReplyError as exc:
            if exc.code in ("READONLY", "MASTERDOWN", "LOADING", "NOREPLICAS"):
                self.drop(exc)
                return None
            raise
        except RedisError as exc:
            self.drop(exc)
            return None


# ---- Docker --------------------------------------------------------------------------------
class Docker:
    def __init__(self, binary="docker"):
        self.binary = binary

    def running(self, names):
        """``{name: bool}``; a container that does not exist is not running."""
        result = dict.fromkeys(names, False)
        if not names:
            return result
        done = subprocess.run([self.binary, "inspect", "--format", "{{.Name}} {{.State.Running}}", *names],
                              capture_output=True, text=True, timeout=20, check=False)
        for line in done.stdout.splitlines():
            name, dummy, running = line.strip().lstrip("/").partition(" ")
            if name in result:
                result[name] = running == "true"
        return result

    def restart(self, name):
        """Kill and start: every request stuck inside becomes a connection error at once. A
        frozen (paused) container is thawed first, as Docker refuses to kill it otherwise."""
        killed = subprocess.run([self.binary, "kill", name], capture_output=True, text=True, timeout=30, check=False)
        if killed.returncode != 0 and "paused" in killed.stderr.lower():
            subprocess.run([self.binary, "unpause", name], capture_output=True, text=True, timeout=30, check=False)
            subprocess.run([self.binary, "kill", name], capture_output=True, text=True, timeout=30, check=False)
        started = subprocess.run([self.binary, "start", name], capture_output=True, text=True, timeout=60, check=False)
        if started.returncode != 0:
            raise RuntimeError("docker start %s: %s" % (name, started.stderr.strip()))


# ---- the agent -------------------------------------------------------------------------------
class Agent:
    def __init__(self, cfg, docker=None, clock=time.time):
        self.cfg = cfg
        self.node = cfg["node"]
        self.timing = dict(DEFAULT_TIMING, **cfg.get("timing", {}))
        errors = check_timing(self.timing)
        if errors:
            raise ValueError("; ".join(errors))
        self.clock = clock
        self.redis = RedisLink(cfg["redis"])
        self.docker = docker or Docker(cfg.get("docker", "docker"))
        self.instances = cfg.get("instances", [])
        self.lb = cfg.get("lb")
        self.api_key = _read_secret(cfg.get("api_key_file"))
        self.state_file = cfg["state_file"]
        self.event_log = cfg.get("event_log")
        self.state = self._load_state()
        self.pool_of = {i["name"]: i["pool"] for i in self.instances}
        self.probes = ThreadPoolExecutor(max_workers=max(4, 2 * len(self.instances)), thread_name_prefix="probe")
        self.deep = {}           # instance -> (future, started)
        self.next_deep = {}
        self.last_probe = {}     # instance -> {kind: {ok, seconds, error}}
        self.load = {}
        self.pending_restarts = []
        self.pending_events = []
        self.frozen = False
        self.stopping = threading.Event()
        self.transitions = {}
        self.lb_status = {"applied_epoch": self.state.get("applied_epoch", 0), "applies": 0, "last_error": None,
                          "last_apply": None}
        self.lock = threading.Lock()
        self.healthy_since = {}
        self.drained = set()  # my instances an operator drained: probed, never restarted by me
        # On a load balancer: what clients got (nginx's access log), who leads each pool as
        # Redis says, and whether this host holds the virtual IP.
        self.access = AccessLogCounter(self.lb["access_log"], [pool["name"] for pool in self.lb.get("pools", [])]) \
            if self.lb and self.lb.get("access_log") else None
        self.pool_leaders = {}
        self.leader_changes = {}
        self.vip_held = None

    # ---- state that survives a restart --------------------------------------------------------
    def _load_state(self):
        try:
            with open(self.state_file, encoding="utf-8") as handle:
                state = json.load(handle)
        except (OSError, ValueError):
            state = {}
        state.setdefault("max_epoch", 0)
        state.setdefault("applied_epoch", 0)
        state.setdefault("instances", {})
        state.setdefault("roles", {})
        state.setdefault("rotation", {})
        return state

    def _save_state(self):
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.state, handle, sort_keys=True)
        os.replace(tmp, self.state_file)

    def seen_epoch(self, epoch):
        if epoch and int(epoch) > self.state["max_epoch"]:
            self.state["max_epoch"] = int(epoch)

    def next_epoch(self):
        """A fresh epoch from Redis (never at or below one we saw), or None when Redis is away."""
        value = self.redis.run(lambda c: Leases(c).next_epoch(self.state["max_epoch"]))
        if value is not None:
            self.seen_epoch(value)
        return value

    # ---- events and decisions ----------------------------------------------------------------
    def new_event(self, kind, epoch, reason, **fields):
        """An event record, not yet logged nor published."""
        return event(kind, epoch, reason, now=self.clock(), node=fields.pop("node", self.node), **fields)

    def log_event(self, record):
        """The journal and this host's event log."""
        log.info("%s", human_event(record))
        if self.event_log:
            try:
                with open(self.event_log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record, sort_keys=True) + "\n")
            except OSError as exc:
                log.warning("cannot write the event log %s: %s", self.event_log, exc)

    def emit(self, kind, epoch, reason, **fields):
        """Log an event and publish it to Redis with the next flush."""
        record = self.new_event(kind, epoch, reason, **fields)
        self.log_event(record)
        self.pending_events.append(record)

    def release_lease(self, pool, epoch, reason):
        """Give the lease up, the HANDOVER event written with it in one step (Leases.release).
        True when released, False when it was no longer ours (LEADER_LOST), None without Redis."""
        record = self.new_event("HANDOVER", epoch, reason, pool=pool, **{"from": self.node, "to": "any healthy standby"})
        released = self.redis.run(lambda c: Leases(c).release(pool, self.node, epoch, event=record))
        if released:
            self.log_event(record)
        elif released is False:
            self.emit("LEADER_LOST", epoch, "the lease was no longer mine when I gave it up (%s)" % reason, pool=pool)
        return released

    def flush_events(self):
        while self.pending_events:
            record = self.pending_events[0]
            if self.redis.run(lambda c, r=record: publish_event(c, r)) is None:
                return
            self.pending_events.pop(0)

    def decision(self, text, *args):
        log.info(text, *args)

    # ---- one loop ----------------------------------------------------------------------------
    def tick(self):
        now = self.clock()
        # Before any Redis call, which may block for its timeouts: a lease not renewed by its
        # deadline is given up now, not after this loop's I/O.
        self._fence_past_deadline(now)
        if self.instances:
            self.gpu_tick(now)
        if self.lb:
            self.lb_tick(now)
        self.flush_events()
        if not self.redis.healthy and not self.frozen:
            self.frozen = True
            self.decision("FROZEN Redis unreachable (%s): keeping the last topology, no role changes", self.redis.error)
        elif self.redis.healthy and self.frozen:
            self.frozen = False
            self.decision("THAWED Redis reachable again (master %s): resuming", self.redis.master)
        self._save_state()

    # ---- GPU node: instances -----------------------------------------------------------------
    def _profile(self, instance):
        return api_profile(instance.get("version", "0.5.6"))

    def _headers(self):
        return {"Authorization": "Bearer %s" % self.api_key} if self.api_key else {}

    def _probe(self, instance, kind):
        profile = self._profile(instance)
        path = profile["cheap_probe_path"] if kind == "cheap" else profile["deep_health_path"]
        timeout = self.timing["cheap_timeout"] if kind == "cheap" else self.timing["deep_timeout"]
        started = time.monotonic()
        status, body, error = http_get(instance["url"] + path, {}, timeout)
        result = {"ok": status == 200, "seconds": round(time.monotonic() - started, 3),
                  "error": error or (None if status == 200 else "%s answered HTTP %s" % (path, status))}
        if kind == "cheap" and status == 200 and path == "/metrics":
            result["load"] = _safe_load(body)
        return result

    def _metrics(self, instance):
        status, body, error = http_get(instance["url"] + "/metrics", {}, self.timing["cheap_timeout"])
        return _safe_load(body) if status == 200 and not error else None

    def gpu_tick(self, now):
        names = [i["name"] for i in self.instances]
        running = self.docker.running([i.get("container", i["name"]) for i in self.instances])
        cheap_jobs = {i["name"]: self.probes.submit(self._probe, i, "cheap") for i in self.instances
                      if running.get(i.get("container", i["name"]))}
        for instance in self.instances:
            name = instance["name"]
            future, started = self.deep.get(name, (None, 0))
            if future is None and running.get(instance.get("container", name)) and now >= self.next_deep.get(name, 0):
                self.deep[name] = (self.probes.submit(self._probe, instance, "deep"), now)
                self.next_deep[name] = now + self.timing["deep_interval"]
        deadline = time.monotonic() + self.timing["cheap_timeout"] + 0.1
        observations = {}
        for instance in self.instances:
            name = instance["name"]
            obs = {"running": bool(running.get(instance.get("container", name))), "cheap": None, "deep": None}
            job = cheap_jobs.get(name)
            if job is not None:
                try:
                    result = job.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # pylint: disable=broad-except
                    result = {"ok": False, "seconds": None, "error": "cheap probe did not finish"}
                obs["cheap"] = result["ok"]
                if not result["ok"]:
                    obs["error"] = result["error"]
                if result.get("load") is not None:
                    self.load[name] = result["load"]
                self.last_probe.setdefault(name, {})["cheap"] = result
            future, started = self.deep.get(name, (None, 0))
            if future is not None:
                if future.done():
                    result = future.result()
                    obs["deep"] = result["ok"]
                    if not result["ok"]:
                        obs["error"] = result["error"]
                    self.last_probe.setdefault(name, {})["deep"] = result
                    self.deep.pop(name)
                elif now - started > self.timing["deep_timeout"] + 0.5:
                    obs["deep"] = False
                    obs["error"] = "deep probe got no answer within %gs" % self.timing["deep_timeout"]
                    self.deep.pop(name)
            observations[name] = obs
        for instance in self.instances:
            observations[instance["name"]]["restart_pending"] = instance["name"] in self.pending_restarts
            observations[instance["name"]]["hands_off"] = instance["name"] in self.drained
            self._decide_instance(instance, observations[instance["name"]], now)
        self._run_restarts(now)
        if self._publish_instances(names) is not None:
            self._pools_tick(now)
        else:
            self._pools_frozen(now)

    def _decide_instance(self, instance, obs, now):
        name = instance["name"]
        track = self.state["instances"].get(name) or ha.new_track(now=now)
        before = track["state"]
        track, actions, reason = ha.decide_instance(track, obs, self.timing, now)
        if track["state"] != before and not {before, track["state"]} <= set(ha.IN_ROTATION):
            # A membership change (in or out of rotation, restarted): it gets its own epoch. With
            # Redis away there is none to have: the change is numbered once Redis is back, before
            # its record is published (an epoch is never handed out twice, nor reused).
            epoch = self.next_epoch()
            if epoch is None:
                track["epoch_pending"] = True
            else:
                track["epoch"] = epoch
                track.pop("epoch_pending", None)
        if track["state"] != before:
            self.transitions[(name, track["state"])] = self.transitions.get((name, track["state"]), 0) + 1
            kinds = {ha.FENCED: "INSTANCE_FENCED", ha.STARTING: "INSTANCE_RESTARTED", ha.HEALTHY: "INSTANCE_HEALTHY",
                     ha.FAILING: "INSTANCE_FAILING"}
            if track["state"] == ha.FAILING:
                self.decision("instance %s: %s (still in rotation) epoch=%s", name, reason, track["epoch"])
            else:
                self.emit(kinds[track["state"]], None if track.get("epoch_pending") else track["epoch"], reason,
                          pool=instance["pool"], instance=name, state=track["state"])
        elif reason:
            self.decision("instance %s: %s", name, reason)
        if "restart" in actions and name not in self.pending_restarts:
            self.pending_restarts.append(name)
        if obs.get("hands_off") and name in self.pending_restarts:
            self.pending_restarts.remove(name)  # drained: the operator restarts it, not the agent
        if track["state"] == ha.HEALTHY:
            self.healthy_since.setdefault(name, now)
        else:
            self.healthy_since.pop(name, None)
        self.state["instances"][name] = track

    def _gpu_group(self, instance):
        return tuple(sorted(instance.get("gpus") or [])) or (instance["name"],)

    def _run_restarts(self, now):
        """Instances sharing a GPU are restarted one at a time, in their planned start order, each
        once the one before it is healthy: --mem-fraction-static is a share of the memory free at
        its start, so each must find the memory its plan counted on."""
        by_name = {i["name"]: i for i in self.instances}
        for name in sorted(self.pending_restarts, key=lambda n: by_name[n].get("start_order", 0)):
            instance = by_name[name]
            group = self._gpu_group(instance)
            busy = [other["name"] for other in self.instances if other["name"] != name and self._gpu_group(other) == group
                    and self.state["instances"].get(other["name"], {}).get("state") == ha.STARTING]
            if busy:
                continue
            self.pending_restarts.remove(name)
            try:
                self.docker.restart(instance.get("container", name))
                self.decision("instance %s: killed and started again (restart %d)", name,
                              self.state["instances"][name]["restarts"])
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                self.decision("instance %s: restart failed: %s", name, exc)

    def _publish_instances(self, names):
        ttl_ms = int(self.timing["record_ttl"] * 1000)
        for name, track in self.state["instances"].items():
            if track.get("epoch_pending"):
                epoch = self.next_epoch()
                if epoch is None:
                    return None
                track["epoch"] = epoch
                del track["epoch_pending"]
                self.decision("instance %s: its change during the Redis outage (now %s) gets epoch %d", name,
                              track["state"], epoch)

        def publish(client):
            commands = []
            for instance in self.instances:
                name = instance["name"]
                track = self.state["instances"].get(name, {})
                key = instance_key(instance["pool"], self.node, name)
                load = self.load.get(name) or {}
                commands.append(["HSET", key, "state", track.get("state", ha.HEALTHY), "epoch", track.get("epoch", 0),
                                 "reason", track.get("reason", ""), "since", track.get("since", 0),
                                 "updated", round(self.clock(), 3), "address", instance.get("address", ""),
                                 "running_reqs", load.get("num_running_reqs", 0), "queue_reqs", load.get("num_queue_reqs", 0),
                                 "token_usage", load.get("token_usage", 0)])
                commands.append(["PEXPIRE", key, ttl_ms])
                commands.append(["GET", drain_key(instance["pool"], self.node, name)])
            replies = client.pipeline(commands)
            for reply in replies:
                if isinstance(reply, RedisReplyError):
                    raise reply
            markers = replies[2::3]
            self.drained = {instance["name"] for instance, marker in zip(self.instances, markers)
                            if marker and (json_object(marker) or {}).get("drained", True)}
            return True

        return self.redis.run(publish)

    # ---- GPU node: leases ----------------------------------------------------------------------
    def _standby_pools(self):
        pools = {}
        for instance in self.instances:
            if instance.get("mode") == ha.ACTIVE_STANDBY:
                pools.setdefault(instance["pool"], []).append(instance)
        return pools

    def _pools_frozen(self, now):
        for pool in self._standby_pools():
            self._apply_lease_without_redis(pool, now)

    def _fence_past_deadline(self, now):
        for pool in self._standby_pools():
            role = self._role(pool)
            if role["role"] == ha.LEADER and now >= role.get("deadline", 0):
                self._apply_lease_without_redis(pool, now)

    def _apply_lease_without_redis(self, pool, now):
        """The lease decision from what this node knows alone: its role and its deadline."""
        role = self._role(pool)
        self._apply_lease(pool, {"node": self.node, "role": role["role"], "redis_ok": False,
                                 "deadline": role.get("deadline", 0)}, now)

    def _role(self, pool):
        return self.state["roles"].setdefault(pool, {"role": ha.STANDBY, "epoch": 0, "deadline": 0})

    def _pools_tick(self, now):
        for pool, members in self._standby_pools().items():
            got = self.redis.run(lambda c, p=pool: c.pipeline(
                [["GET", leader_key(p)], ["GET", paused_key(p)], ["GET", request_key(p)], ["GET", last_leader_key(p)]]))
            if got is None:
                self._pools_frozen(now)
                return
            holder, epoch = parse_holder(got[0])
            self.seen_epoch(epoch)
            role = self._role(pool)
            if holder == self.node and epoch != role.get("epoch"):
                # The lease was handed to this node (a switchover or an operator's failover): it
                # is ours at that epoch.
                role.update(epoch=epoch, role=ha.LEADER,
                            deadline=now + self.timing["lease_ttl"] - self.timing["lease_margin"])
                self.decision("pool %s: the lease was handed to me at epoch %d", pool, epoch)
            healthy = any(ha.in_rotation(self.state["instances"].get(m["name"], {}).get("state")) for m in members)
            # Who led last, as Redis recorded it; this agent's memory only for a fleet whose lease
            # was taken before the record existed.
            last = parse_holder(got[3])[0] or role.get("last_holder")
            recovered = self.redis.recovered_at
            recently_thawed = recovered is not None and time.monotonic() - recovered < self.timing["lease_ttl"]
            view = {"node": self.node, "role": role["role"], "redis_ok": True, "holder": holder, "healthy": healthy,
                    "paused": bool(got[1]), "deadline": role.get("deadline", 0),
                    "failback": self._failback_due(members, holder, now),
                    "defer_to": last if recently_thawed and last not in (None, self.node) else None}
            role["holder"], role["holder_epoch"] = holder, epoch
            request = json_object(got[2])
            if request and holder == self.node and request.get("from") == self.node:
                self._hand_over(pool, role, request, now)
                continue
            self._apply_lease(pool, view, now)

    def _failback_due(self, members, holder, now):
        """This node is the pool's preferred leader, failback is auto, and its instances have
        been healthy for the hold-down."""
        first = members[0]
        if first.get("failback") != "auto" or holder in (None, self.node) or first.get("preferred_node") != self.node:
            return False
        since = [self.healthy_since.get(m["name"]) for m in members]
        if any(s is None for s in since):
            return False  # one of them is not healthy right now: its clock starts again when it is
        return now - max(since) >= float(first.get("failback_hold_down", 300))

    def _apply_lease(self, pool, view, now):
        role = self._role(pool)
        new_role, action, reason = ha.decide_lease(view, {}, now)
        ttl_ms = int(self.timing["lease_ttl"] * 1000)
        was = role["role"]
        if action == "renew":
            ok = self.redis.run(lambda c: Leases(c).renew(pool, self.node, role["epoch"], ttl_ms))
            if ok:
                role["deadline"] = now + self.timing["lease_ttl"] - self.timing["lease_margin"]
            elif ok is False:
                new_role, reason = ha.STANDBY, "my renewal was refused: the lease is no longer mine"
                self.emit("LEADER_LOST", role["epoch"], reason, pool=pool)
        elif action == "take":
            result = self.redis.run(lambda c: Leases(c).take(pool, self.node, ttl_ms, self.state["max_epoch"]))
            if result is None:
                return
            taken, holder, epoch = result
            self.seen_epoch(epoch)
            if not taken:
                new_role, reason = ha.STANDBY, "%s took the lease first" % holder
            elif not self.redis.run(lambda c: Leases(c).confirm(self.timing["wait_replicas"], self.timing["wait_timeout_ms"])):
                # Not on a replica yet: a failover now could lose it. Give it back and try again.
                self.redis.run(lambda c: Leases(c).release(pool, self.node, epoch))
                new_role, reason = ha.STANDBY, "took the lease but no replica confirmed it (WAIT): released it"
            else:
                previous = role.get("holder") or role.get("last_holder")
                # Mine from now on, also as "the last leader" should Redis go away next.
                role.update(epoch=epoch, deadline=now + self.timing["lease_ttl"] - self.timing["lease_margin"],
                            holder=self.node)
                kind = ("LEADER_ELECTED" if not previous else "LEASE_RETAKEN" if previous == self.node else "FAILOVER")
                self.emit(kind, epoch, reason, pool=pool, **{"from": previous or "none", "to": self.node})
        elif action == "release":
            self.release_lease(pool, role["epoch"], reason)
        elif action == "switchover":
            self.redis.run(lambda c: c.execute("SET", request_key(pool), json.dumps(
                {"from": view["holder"], "to": self.node, "reason": "failback after the hold-down", "by": self.node,
                 "time": now, "candidate_instances": [m["name"] for m in self._standby_pools()[pool]]}),
                "PX", int(self.timing["lease_ttl"] * 4000)))
            self.decision("pool %s: %s", pool, reason)
        if new_role == ha.SELF_FENCED and was != ha.SELF_FENCED:
            self.emit("SELF_FENCED", role["epoch"], reason, pool=pool)
        elif reason and action in ("none",) and was != new_role:
            self.decision("pool %s: %s (epoch %s)", pool, reason, role.get("epoch"))
        if role.get("holder"):
            role["last_holder"] = role["holder"]
        role["role"] = new_role

    def _hand_over(self, pool, role, request, now):
        """An operator's (or a failback's) switchover: move the lease to the candidate in one
        step, with a new epoch, only if the candidate is healthy (its records say so)."""
        candidate = request.get("to")
        ttl_ms = int(self.timing["lease_ttl"] * 1000)
        instances = request.get("candidate_instances") or []
        if instances:
            states = self.redis.run(lambda c: c.pipeline([["HGET", instance_key(pool, candidate, name), "state"]
                                                          for name in instances]))
            if states is not None and not any(ha.in_rotation(state) for state in states):
                self.redis.run(lambda c: c.execute("DEL", request_key(pool)))
                self.emit("SWITCHOVER_REFUSED", role["epoch"], "%s has no instance in rotation (%s)" % (
                    candidate, ", ".join("%s %s" % (n, s) for n, s in zip(instances, states))), pool=pool,
                    **{"from": self.node, "to": candidate})
                return
        result = self.redis.run(lambda c: Leases(c).handover(pool, "%s:%d" % (self.node, role["epoch"]), candidate, ttl_ms,
                                                             self.state["max_epoch"]))
        self.redis.run(lambda c: c.execute("DEL", request_key(pool)))
        if not result or not result[0]:
            self.decision("pool %s: switchover to %s not done (lease held by %s)", pool, candidate, result and result[1])
            return
        epoch = result[2]
        self.seen_epoch(epoch)
        self.emit("SWITCHOVER", epoch, request.get("reason") or "requested", pool=pool,
                  **{"from": self.node, "to": candidate, "by": request.get("by")})
        role.update(role=ha.STANDBY, epoch=epoch, holder=candidate)

    # ---- load balancer ------------------------------------------------------------------------
    def lb_tick(self, now):
        pools = self.lb["pools"]
        if self.access is not None:
            try:
                self.access.poll()
            except OSError as exc:
                log.warning("cannot read the access log %s: %s", self.access.path, exc)
        self._watch_vip()

        def read(client):
            commands = []
            for pool in pools:
                commands.append(["GET", leader_key(pool["name"])])
                for server in pool["servers"]:
                    commands.append(["HGETALL", instance_key(pool["name"], server["node"], server["instance"])])
                    commands.append(["GET", drain_key(pool["name"], server["node"], server["instance"])])
            return client.pipeline(commands)

        replies = self.redis.run(read)
        if replies is None:
            return  # frozen: the last applied topology stays
        records, holders, drained = {}, {}, []
        position = 0
        for pool in pools:
            holder, epoch = parse_holder(replies[position])
            position += 1
            if holder:
                holders[pool["name"]] = (holder, epoch)
            if pool.get("mode") == ha.ACTIVE_STANDBY:
                self._watch_leader(pool["name"], holder)
                self.seen_epoch(epoch)
            for server in pool["servers"]:
                fields, drain = replies[position], replies[position + 1]
                position += 2
                key = (pool["name"], server["node"], server["instance"])
                if fields:
                    data = dict(zip(fields[0::2], fields[1::2]))
                    records[key] = {"state": data.get("state"), "epoch": int(data.get("epoch") or 0)}
                    self.seen_epoch(records[key]["epoch"])
                if drain:
                    marker = json_object(drain) or {}
                    if marker.get("drained", True):
                        drained.append(key)
                    drain_epoch = marker.get("epoch", 0)
                    self.seen_epoch(drain_epoch)
                    records.setdefault(key, {"state": ha.HEALTHY, "epoch": 0})
                    records[key]["epoch"] = max(records[key]["epoch"], int(drain_epoch or 0))
        last = {tuple(k.split("|")): v for k, v in self.state["rotation"].items()}
        rendered, epoch, rotation, leaders = ha.render_pools(pools, records, holders, drained, last,
                                                             self.state.get("leaders", {}))
        files = render_upstream_files(rendered, header=["Managed by inferops-agent on %s; site.yml renders it only "
                                                        "when absent." % self.node])
        conf_dir = self.lb["upstreams_dir"]
        wanted = {os.path.join(conf_dir, name): {"content": text, "mode": 0o644} for name, text in files.items()}
        applied = self.state["applied_epoch"]
        current = {path: _read_text(path) for path in wanted}
        if all(current[path] == spec["content"] for path, spec in wanted.items()):
            # What Redis says is what nginx runs: that epoch counts as applied.
            self.state["rotation"] = {"|".join(k): v for k, v in rotation.items()}
            self.state["rendered"] = _states(rendered)
            self.state["leaders"] = leaders
            if epoch > applied:
                self.state["applied_epoch"] = epoch
                self.lb_status["applied_epoch"] = epoch
        elif epoch < applied:
            if self.lb_status.get("stale_epoch") != epoch:
                self.lb_status["stale_epoch"] = epoch
                self.decision("LB: state at epoch %s is older than the applied epoch %s: not applied", epoch, applied)
        else:
            try:
                changed = apply_files(wanted, self.lb["test_command"], self.lb.get("reload_command"))
            except (ApplyError, OSError, subprocess.SubprocessError) as exc:
                self.lb_status["last_error"] = str(exc)
                self.decision("LB: applying epoch %s failed: %s", epoch, exc)
                return
            summary = _changes(self.state.get("rendered", {}), rendered)
            self.state["applied_epoch"] = epoch
            self.state["rotation"] = {"|".join(k): v for k, v in rotation.items()}
            self.state["rendered"] = _states(rendered)
            self.state["leaders"] = leaders
            self.lb_status.update(applied_epoch=epoch, last_apply=now, last_error=None,
                                  applies=self.lb_status["applies"] + 1)
            self.emit("TOPOLOGY_APPLIED", epoch, summary or "first render by the agent", files=len(changed))
        self.redis.run(lambda c: c.pipeline([["HSET", lb_key(self.node), "applied_epoch", self.state["applied_epoch"],
                                              "updated", round(now, 3)],
                                             ["PEXPIRE", lb_key(self.node), int(self.timing["record_ttl"] * 3000)]]))

    def _watch_leader(self, pool, holder):
        before = self.pool_leaders.get(pool, "unknown")
        if holder != before:
            if before != "unknown":
                self.leader_changes[pool] = self.leader_changes.get(pool, 0) + 1
            self.pool_leaders[pool] = holder

    def _watch_vip(self):
        vip = self.lb.get("vip")
        if not vip:
            return
        held = address_is_local(vip)
        if held != self.vip_held:
            if self.vip_held is not None or held:
                self.emit("VIP_ACQUIRED" if held else "VIP_RELEASED", self.state["max_epoch"],
                          "%s %s this load balancer" % (vip, "is on" if held else "left"), vip=vip)
            self.vip_held = held

    # ---- clean stop ----------------------------------------------------------------------------
    def stop(self):
        """A leader that stops cleanly hands its lease over at once."""
        for pool, role in self.state["roles"].items():
            if role.get("role") == ha.LEADER:
                self.release_lease(pool, role["epoch"], "agent stopping")
                role["role"] = ha.STANDBY
        self.flush_events()
        self._save_state()

    # ---- status and metrics --------------------------------------------------------------------
    def status(self):
        with self.lock:
            return {
                "node": self.node, "time": round(self.clock(), 3), "frozen": self.frozen,
                "redis": {"master": self.redis.master, "ok": self.redis.client is not None, "error": self.redis.error},
                "max_epoch": self.state["max_epoch"],
                "instances": {i["name"]: dict(self.state["instances"].get(i["name"], {}), pool=i["pool"],
                                              url=i["url"], load=self.load.get(i["name"]),
                                              probes=self.last_probe.get(i["name"]))
                              for i in self.instances},
                "pools": self.state["roles"],
                "lb": self.lb_status if self.lb else None,
            }

    def metrics(self):
        lines = ["# TYPE inferops_agent_up gauge", "inferops_agent_up 1",
                 "# TYPE inferops_agent_redis_up gauge", "inferops_agent_redis_up %d" % (not self.frozen),
                 "# TYPE inferops_agent_epoch gauge", "inferops_agent_epoch %d" % self.state["max_epoch"]]
        lines.append("# TYPE inferops_agent_instance_state gauge")
        lines.append("# TYPE inferops_agent_instance_in_rotation gauge")
        lines.append("# TYPE inferops_agent_probe_seconds gauge")
        lines.append("# TYPE inferops_agent_restarts_total counter")
        for instance in self.instances:
            name, pool = instance["name"], instance["pool"]
            track = self.state["instances"].get(name, {})
            labels = 'sglang_instance="%s",pool="%s",node="%s"' % (name, pool, self.node)
            for state in ha.INSTANCE_STATES:
                lines.append('inferops_agent_instance_state{%s,state="%s"} %d' % (labels, state, track.get("state") == state))
            lines.append("inferops_agent_instance_in_rotation{%s} %d" % (labels, ha.in_rotation(track.get("state"))))
            lines.append("inferops_agent_restarts_total{%s} %d" % (labels, track.get("restarts", 0)))
            for kind, result in (self.last_probe.get(name) or {}).items():
                if result.get("seconds") is not None:
                    lines.append('inferops_agent_probe_seconds{%s,kind="%s"} %s' % (labels, kind, result["seconds"]))
        lines.append("# TYPE inferops_agent_transitions_total counter")
        for (name, state), count in sorted(self.transitions.items()):
            lines.append('inferops_agent_transitions_total{sglang_instance="%s",pool="%s",node="%s",to="%s"} %d' % (
                name, self.pool_of.get(name, ""), self.node, state, count))
        lines.append("# TYPE inferops_agent_is_leader gauge")
        for pool, role in sorted(self.state["roles"].items()):
            lines.append('inferops_agent_is_leader{pool="%s",node="%s"} %d' % (pool, self.node, role.get("role") == ha.LEADER))
            lines.append('inferops_agent_lease_epoch{pool="%s",node="%s"} %d' % (pool, self.node, role.get("epoch", 0)))
        if self.lb:
            lines.append("# TYPE inferops_lb_pool_has_leader gauge")
            for pool, holder in sorted(self.pool_leaders.items()):
                lines.append('inferops_lb_pool_has_leader{node="%s",pool="%s"} %d' % (self.node, pool, 0 if holder is None else 1))
            lines.append("# TYPE inferops_lb_pool_leader_changes_total counter")
            for pool in sorted(self.pool_leaders):
                lines.append('inferops_lb_pool_leader_changes_total{node="%s",pool="%s"} %d' % (
                    self.node, pool, self.leader_changes.get(pool, 0)))
            if self.lb.get("vip"):
                lines += ["# TYPE inferops_lb_vip_held gauge",
                          'inferops_lb_vip_held{node="%s",vip="%s"} %d' % (self.node, self.lb["vip"], 1 if self.vip_held else 0)]
            if self.access is not None:
                lines += self.access.metrics(self.node)
            lines += ["# TYPE inferops_agent_lb_applied_epoch gauge",
                      'inferops_agent_lb_applied_epoch{node="%s"} %d' % (self.node, self.lb_status["applied_epoch"]),
                      "# TYPE inferops_agent_lb_applies_total counter",
                      'inferops_agent_lb_applies_total{node="%s"} %d' % (self.node, self.lb_status["applies"])]
        return "\n".join(lines) + "\n"

    # ---- running ------------------------------------------------------------------------------
    def run(self):
        _notify("READY=1")
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                with self.lock:
                    self.tick()
            except Exception:  # pylint: disable=broad-except
                log.exception("loop failed; trying again next loop")
            _notify("WATCHDOG=1")
            elapsed = time.monotonic() - started
            if elapsed > self.timing["loop"]:
                log.warning("loop took %.2fs (more than %gs): running the next one at once", elapsed, self.timing["loop"])
            self.stopping.wait(max(0.0, self.timing["loop"] - elapsed))
        with self.lock:
            self.stop()


def _safe_load(body):
    try:
        return sglang_load(body.decode("utf-8", "replace"))
    except Exception:  # pylint: disable=broad-except
        return None


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _states(rendered):
    return {pool["name"]: {s["address"]: s.get("state", "primary") for s in pool["servers"]} for pool in rendered}


def _changes(before, rendered):
    """The servers whose state changed, for the event's reason (every server on a first render)."""
    parts = []
    for pool, servers in _states(rendered).items():
        old = before.get(pool, {})
        for address, state in servers.items():
            if old.get(address) != state:
                parts.append("%s %s %s%s" % (pool, address, old[address] + "->" if address in old else "", state))
    return ", ".join(parts)


def _notify(message):
    """systemd's sd_notify (Type=notify, WatchdogSec): a hung agent is restarted by systemd."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), target)
    except OSError:
        pass


class _StatusHandler(BaseHTTPRequestHandler):
    agent = None

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/status":
            body, kind = json.dumps(self.agent.status(), sort_keys=True).encode(), "application/json"
        elif self.path == "/metrics":
            body, kind = self.agent.metrics().encode(), "text/plain; version=0.0.4"
        elif self.path == "/health":
            body, kind = b'{"status":"ok"}', "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


def serve_status(agent, listen):
    host, port = parse_address(listen)
    handler = type("Handler", (_StatusHandler,), {"agent": agent})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="status", daemon=True).start()
    return server


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: inferops-agent <config.json>\n")
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        cfg = json.load(handle)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    try:
        agent = Agent(cfg)
    except ValueError as exc:
        sys.stderr.write("inferops-agent: %s\n" % exc)
        return 2
    server = serve_status(agent, cfg.get("listen", "127.0.0.1:9464"))
    signal.signal(signal.SIGTERM, lambda *a: agent.stopping.set())
    signal.signal(signal.SIGINT, lambda *a: agent.stopping.set())
    log.info("inferops-agent on %s: %d instance(s), %s; status on http://%s/status", agent.node, len(agent.instances),
             "load balancer" if agent.lb else "no load balancer", cfg.get("listen", "127.0.0.1:9464"))
    agent.run()
    server.shutdown()
    return 0
