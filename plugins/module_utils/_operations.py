# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Operating the fleet: status, switchover, failover, pause/resume, drain/undrain.

The ``sglang_ha`` module is a thin layer over this file; the agents (``_agent.py``) carry the
changes out, through the same keys and scripts (``_leases.py``). Every change is checked
before it is requested, carries a new epoch, is recorded as an event that names who asked and
why, and is waited for until every load balancer has applied it. No Ansible imports.

Errors are ``OperationError(field, message)``: ``field`` is the module option the user got
wrong (``pool``, ``candidate``, ``instance``), and nothing has changed when one is raised.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.inferops.sglang.plugins.module_utils import _ha as ha
from ansible_collections.inferops.sglang.plugins.module_utils._leases import (
    EPOCH_KEY,
    Leases,
    drain_key,
    event,
    instance_key,
    json_object,
    lb_key,
    leader_key,
    parse_holder,
    paused_key,
    publish_event,
    read_events,
    request_key,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    AGENT_USER,
    SENTINEL_CLIENT_USER,
    RedisClient,
    discover_master,
)


class OperationError(Exception):
    def __init__(self, field, message):
        self.field = field
        super().__init__("%s: %s" % (field, message))


def load_lb_agent_config(path):
    """A load balancer agent's configuration (its Redis and its pools), for the modules that run
    on a load balancer. Errors name the ``agent_config`` option."""
    if not os.path.exists(path):
        raise OperationError("agent_config", "%s does not exist; run the module on a host with an HA agent "
                             "(a load balancer)" % path)
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise OperationError("agent_config", "%s cannot be read as JSON: %s" % (path, exc))
    if not isinstance(config, dict) or not (config.get("lb") or {}).get("pools"):
        raise OperationError("agent_config", "%s lists no pools; run the module on a load balancer" % path)
    return config


def connect(agent_config):
    """A client on the Redis master, as the agents' user, from an agent's configuration."""
    redis = agent_config["redis"]
    with open(redis["password_file"], encoding="utf-8") as handle:
        password = handle.read().strip()
    with open(redis["sentinel_password_file"], encoding="utf-8") as handle:
        sentinel_password = handle.read().strip()
    host, port = discover_master([tuple(s) for s in redis["sentinels"]], redis["master_name"], SENTINEL_CLIENT_USER,
                                 sentinel_password, AGENT_USER, password, timeout=1.0)
    return RedisClient(host, port, username=AGENT_USER, password=password, timeout=2.0, client_name="sglang_ha")


class Fleet:
    """The pools as the inventory made them (an LB agent's ``lb.pools``) and their live state."""

    def __init__(self, client, pools, lbs, clock=time.time, sleep=time.sleep):
        self.client = client
        self.pools = {pool["name"]: pool for pool in pools}
        self.lbs = list(lbs)
        self.clock = clock
        self.sleep = sleep

    # ---- reading --------------------------------------------------------------------------------
    def pool(self, name):
        if name not in self.pools:
            raise OperationError("pool", "%r is not a pool (pools: %s)" % (name, ", ".join(sorted(self.pools)) or "none"))
        return self.pools[name]

    def _instances(self, pool):
        servers = [s for s in pool["servers"] if s.get("node") and s.get("instance")]
        commands = []
        for server in servers:
            commands.append(["HGETALL", instance_key(pool["name"], server["node"], server["instance"])])
            commands.append(["GET", drain_key(pool["name"], server["node"], server["instance"])])
        replies = self.client.pipeline(commands) if commands else []
        result = []
        for index, server in enumerate(servers):
            fields, drain = replies[2 * index], replies[2 * index + 1]
            record = dict(zip(fields[0::2], fields[1::2])) if fields else {}
            marker = json_object(drain)
            result.append({
                "node": server["node"], "instance": server["instance"], "address": server["address"],
                "state": record.get("state", "unknown"), "reason": record.get("reason", ""),
                "epoch": int(record.get("epoch") or 0), "running_reqs": _number(record.get("running_reqs")),
                "queue_reqs": _number(record.get("queue_reqs")), "token_usage": _number(record.get("token_usage")),
                "drained": bool(marker.get("drained")) if marker else False,
                "serving": ha.in_rotation(record.get("state")) and not (marker and marker.get("drained")),
            })
        return result

    def lease(self, name):
        node, epoch = parse_holder(self.client.execute("GET", leader_key(name)))
        return node, epoch

    def max_epoch(self):
        """The highest epoch anyone used: the floor for the epochs this module hands out."""
        events = read_events(self.client, 200)
        seen = [e.get("epoch") or 0 for e in events]
        counter = self.client.execute("GET", EPOCH_KEY)
        return max(seen + [int(counter or 0)])

    def status(self, events=20):
        pools = []
        for name in sorted(self.pools):
            pool = self.pools[name]
            entry = {"name": name, "mode": pool.get("mode", "active_active"), "instances": self._instances(pool)}
            if entry["mode"] == ha.ACTIVE_STANDBY:
                leader, epoch = self.lease(name)
                entry.update(leader=leader, epoch=epoch, paused=bool(self.client.execute("GET", paused_key(name))),
                             failback=pool.get("failback", "off"))
            else:
                entry.update(leader=None, epoch=max([i["epoch"] for i in entry["instances"]] or [0]),
                             paused=bool(self.client.execute("GET", paused_key(name))))
            pools.append(entry)
        lbs = {}
        for lb in self.lbs:
            fields = self.client.execute("HGETALL", lb_key(lb)) or []
            data = dict(zip(fields[0::2], fields[1::2]))
            lbs[lb] = {"applied_epoch": int(data.get("applied_epoch") or 0), "updated": _number(data.get("updated")),
                       "reachable": bool(data)}
        return {"pools": pools, "lbs": lbs, "events": read_events(self.client, events), "time": round(self.clock(), 3)}

    # ---- waiting -------------------------------------------------------------------------------
    def _wait(self, check, timeout, interval=0.2):
        deadline = self.clock() + timeout
        while True:
            value = check()
            if value or self.clock() >= deadline:
                return value
            self.sleep(interval)

    def wait_applied(self, epoch, timeout):
        """Every LB agent applied ``epoch`` (or a later one); returns ``{lb: applied}``."""
        def applied():
            seen = {}
            for lb in self.lbs:
                fields = self.client.execute("HGETALL", lb_key(lb)) or []
                seen[lb] = int(dict(zip(fields[0::2], fields[1::2])).get("applied_epoch") or 0)
            return seen if all(value >= epoch for value in seen.values()) else None

        result = self._wait(applied, timeout)
        if result is None:
            raise OperationError("timeout", "not every load balancer applied epoch %d within %gs" % (epoch, timeout))
        return result

    def _emit(self, kind, epoch, reason, **fields):
        record = event(kind, epoch, reason, now=self.clock(), **fields)
        publish_event(self.client, record)
        return record

    # ---- roles ---------------------------------------------------------------------------------
    def _standby_pool(self, name):
        pool = self.pool(name)
        if pool.get("mode") != ha.ACTIVE_STANDBY:
            raise OperationError("pool", "%s is active_active: every healthy instance serves, there is no leader to move"
                                 % name)
        return pool

    def _candidate(self, pool, holder, candidate, allow_unhealthy, field="candidate"):
        nodes = sorted({s["node"] for s in pool["servers"] if s.get("node")})
        instances = self._instances(pool)
        if candidate is not None:
            if candidate not in nodes:
                raise OperationError(field, "%r has no instance in pool %s (its nodes: %s)" % (
                    candidate, pool["name"], ", ".join(nodes)))
            if candidate == holder:
                return candidate, instances
            mine = [i for i in instances if i["node"] == candidate]
            if not allow_unhealthy and not any(i["serving"] for i in mine):
                raise OperationError(field, "%s is not healthy: %s" % (candidate, ", ".join(
                    "%s %s%s" % (i["instance"], i["state"], " (drained)" if i["drained"] else "") for i in mine)))
            return candidate, instances
        others = [n for n in nodes if n != holder]
        scored = []
        for node in others:
            mine = [i for i in instances if i["node"] == node]
            serving = [i for i in mine if i["serving"]]
            if serving or allow_unhealthy:
                load = sum((i["running_reqs"] or 0) + (i["queue_reqs"] or 0) for i in serving)
                scored.append((-len(serving), load, node))
        if not scored:
            raise OperationError(field, "no healthy node to move pool %s to (nodes: %s)" % (pool["name"], ", ".join(
                "%s %s" % (i["node"], i["state"]) for i in instances)))
        return sorted(scored)[0][2], instances

    def switchover(self, name, candidate=None, reason="", by="operator", timeout=30.0, check=False):
        """Ask the leader to hand the lease to a healthy candidate; wait until it did and every
        LB applied the new epoch."""
        pool = self._standby_pool(name)
        holder, epoch = self.lease(name)
        if holder is None:
            raise OperationError("pool", "%s has no leader to hand over; use failover" % name)
        if self.client.execute("GET", paused_key(name)):
            raise OperationError("pool", "%s is paused (maintenance): resume it before a switchover" % name)
        target, instances = self._candidate(pool, holder, candidate, allow_unhealthy=False)
        before = {"leader": holder, "epoch": epoch}
        if target == holder:
            return {"changed": False, "before": before, "after": before, "msg": "%s already leads %s" % (holder, name)}
        if check:
            return {"changed": True, "before": before, "after": {"leader": target, "epoch": None},
                    "msg": "would hand %s over from %s to %s" % (name, holder, target)}
        request = {"from": holder, "to": target, "reason": reason or "switchover requested", "by": by,
                   "candidate_instances": [i["instance"] for i in instances if i["node"] == target],
                   "time": round(self.clock(), 3)}
        self.client.execute("SET", request_key(name), json.dumps(request), "PX", int(timeout * 1000))
        moved = self._wait(lambda: self.lease(name)[0] == target, timeout)
        if not moved:
            self.client.execute("DEL", request_key(name))
            refused = [e for e in read_events(self.client, 20) if e["type"] == "SWITCHOVER_REFUSED"
                       and e.get("pool") == name and e["time"] >= request["time"]]
            why = refused[-1]["reason"] if refused else "the leader %s did not hand over within %gs (use failover if " \
                                                        "it is gone)" % (holder, timeout)
            raise OperationError("candidate", why)
        new_holder, new_epoch = self.lease(name)
        applied = self.wait_applied(new_epoch, timeout)
        return {"changed": True, "before": before, "after": {"leader": new_holder, "epoch": new_epoch}, "lbs": applied,
                "msg": "%s handed over from %s to %s at epoch %d" % (name, holder, new_holder, new_epoch)}

    def failover(self, name, candidate=None, reason="", by="operator", allow_unhealthy=False, timeout=30.0,
                 check=False):
        """Move the lease now, whoever holds it (the leader cannot be reached): one atomic step
        with a new epoch; a former leader that comes back finds its lease gone and stands by."""
        pool = self._standby_pool(name)
        holder, epoch = self.lease(name)
        target, instances = self._candidate(pool, holder, candidate, allow_unhealthy)
        before = {"leader": holder, "epoch": epoch}
        if target == holder:
            return {"changed": False, "before": before, "after": before, "msg": "%s already leads %s" % (holder, name)}
        if check:
            return {"changed": True, "before": before, "after": {"leader": target, "epoch": None},
                    "msg": "would move %s from %s to %s" % (name, holder or "nobody", target)}
        expected = self.client.execute("GET", leader_key(name)) or ""
        done, new_holder, new_epoch = Leases(self.client).handover(name, expected, target, 15000, self.max_epoch())
        if not done:
            raise OperationError("pool", "the lease of %s changed while moving it (now %s); try again" % (name, new_holder))
        self._emit("FAILOVER", new_epoch, reason or "failover requested", pool=name, by=by,
                   **{"from": holder or "none", "to": target})
        applied = self.wait_applied(new_epoch, timeout)
        return {"changed": True, "before": before, "after": {"leader": target, "epoch": new_epoch}, "lbs": applied,
                "msg": "%s moved from %s to %s at epoch %d" % (name, holder or "nobody", target, new_epoch)}

    def pause(self, name, paused, reason="", by="operator", check=False):
        """Maintenance: while paused the agents change no role on their own (as Patroni's pause)."""
        self.pool(name)
        current = bool(self.client.execute("GET", paused_key(name)))
        if current == paused:
            return {"changed": False, "before": {"paused": current}, "after": {"paused": current},
                    "msg": "%s is already %s" % (name, "paused" if paused else "running")}
        if check:
            return {"changed": True, "before": {"paused": current}, "after": {"paused": paused},
                    "msg": "would %s %s" % ("pause" if paused else "resume", name)}
        epoch = Leases(self.client).next_epoch(self.max_epoch())
        if paused:
            self.client.execute("SET", paused_key(name), json.dumps({"by": by, "reason": reason, "epoch": epoch,
                                                                     "time": round(self.clock(), 3)}))
        else:
            self.client.execute("DEL", paused_key(name))
        self._emit("PAUSED" if paused else "RESUMED", epoch, reason or ("maintenance" if paused else "end of maintenance"),
                   pool=name, by=by)
        return {"changed": True, "before": {"paused": current}, "after": {"paused": paused, "epoch": epoch},
                "msg": "%s %s at epoch %d" % (name, "paused" if paused else "resumed", epoch)}

    # ---- drain --------------------------------------------------------------------------------
    def _server(self, pool, node, instance):
        instances = self._instances(pool)
        for item in instances:
            if item["node"] == node and item["instance"] == instance:
                return item, instances
        raise OperationError("instance", "%s on %s is not in pool %s (its instances: %s)" % (
            instance, node, pool["name"], ", ".join("%s/%s" % (i["node"], i["instance"]) for i in instances)))

    def drain(self, name, node, instance, drained=True, reason="", by="operator", force=False, wait_idle=True,
              timeout=300.0, check=False):
        """Stop new requests to one instance (rendered ``down`` on every LB, a graceful reload: the
        requests in flight finish in the old workers) and wait until it runs nothing; or undo it."""
        pool = self.pool(name)
        item, instances = self._server(pool, node, instance)
        before = {"drained": item["drained"], "state": item["state"]}
        if item["drained"] == drained:
            return {"changed": False, "before": before, "after": before,
                    "msg": "%s/%s is already %s" % (node, instance, "drained" if drained else "in rotation")}
        if drained and not force:
            others = [i for i in instances if i is not item and i["serving"]]
            if not others:
                raise OperationError("instance", "%s/%s is the last serving instance of pool %s; draining it stops the "
                                                 "pool (set force to do it anyway)" % (node, instance, name))
        # The leader of an active-standby pool hands its lease over first (a checked switchover):
        # draining it would otherwise leave the pool on its backup with nobody leading.
        leads = drained and pool.get("mode") == ha.ACTIVE_STANDBY and self.lease(name)[0] == node
        if check:
            after = dict({"drained": drained}, **({"hand_lease_over_first": True} if leads else {}))
            return {"changed": True, "before": before, "after": after,
                    "msg": "would %s%s %s/%s" % ("hand the lease of %s over, then " % name if leads else "",
                                                 "drain" if drained else "undrain", node, instance)}
        moved = None
        if leads:
            try:
                moved = self.switchover(name, None, reason or "drain of the leader's instance", by, timeout)
            except OperationError as exc:
                if not force:
                    raise OperationError("instance", "%s/%s is the leader's instance of pool %s and the lease cannot "
                                                     "move: %s (set force to drain it anyway)" % (node, instance, name, exc))
        epoch = Leases(self.client).next_epoch(self.max_epoch())
        self.client.execute("SET", drain_key(name, node, instance), json.dumps(
            {"drained": drained, "epoch": epoch, "by": by, "reason": reason, "time": round(self.clock(), 3)}))
        self._emit("DRAINED" if drained else "UNDRAINED", epoch, reason or ("drain" if drained else "undrain"), pool=name,
                   node=node, instance=instance, by=by)
        applied = self.wait_applied(epoch, min(timeout, 60.0))
        result = {"changed": True, "before": before, "after": {"drained": drained, "epoch": epoch}, "lbs": applied}
        if moved:
            result["switchover"] = {key: moved[key] for key in ("before", "after")}
        if not drained and wait_idle:
            # Back in rotation only counts once its agent says it serves (a replaced container has
            # to rise first) and every load balancer rendered it.
            serving = self._wait(lambda: self._server(pool, node, instance)[0]["serving"], timeout, interval=0.5)
            if not serving:
                current, dummy = self._server(pool, node, instance)
                raise OperationError("timeout", "%s/%s is undrained but not serving after %gs: %s (%s)" % (
                    node, instance, timeout, current["state"], current["reason"]))
            current, dummy = self._server(pool, node, instance)
            result["lbs"] = self.wait_applied(max(epoch, current["epoch"]), min(timeout, 60.0))
        if drained and wait_idle:
            at_drain, dummy = self._server(pool, node, instance)
            result["in_flight_at_drain"] = int((at_drain["running_reqs"] or 0) + (at_drain["queue_reqs"] or 0))

            def idle():
                current, dummy = self._server(pool, node, instance)
                return (current["running_reqs"] or 0) + (current["queue_reqs"] or 0) == 0 and current
            started = self.clock()
            done = self._wait(idle, timeout, interval=0.5)
            result["idle"] = bool(done)
            result["idle_after_s"] = round(self.clock() - started, 2)
            if not done:
                raise OperationError("timeout", "%s/%s still runs requests after %gs (it is drained: no new request "
                                                "reaches it)" % (node, instance, timeout))
        result["msg"] = "%s/%s %s at epoch %d" % (node, instance, "drained" if drained else "back in rotation", epoch)
        if "idle" in result:
            result["msg"] += "; %d request(s) in flight when drained, idle after %gs" % (
                result["in_flight_at_drain"], result["idle_after_s"])
        if moved:
            result["msg"] = moved["msg"] + "; " + result["msg"]
        return result


def format_status(status):
    """The status as a table a person can read at 3 a.m."""
    lines = []
    rows = []
    for pool in status["pools"]:
        for item in pool["instances"]:
            if not item["serving"]:
                role = "drained" if item["drained"] else "out"
            elif pool["mode"] == ha.ACTIVE_STANDBY:
                role = "primary" if item["node"] == pool.get("leader") else "backup"
            else:
                role = "primary"
            rows.append((pool["name"], (item["node"], item["instance"], item["address"], item["state"], role,
                                        _show(item["running_reqs"]), _show(item["queue_reqs"]), item["reason"])))
    head = ("node", "instance", "address", "state", "role", "running", "queue", "why")
    widths = [max([len(head[i])] + [len(str(r[1][i])) for r in rows]) for i in range(len(head) - 1)]

    def line(cells):
        return "  " + "  ".join(str(c).ljust(w) if i < 5 else str(c).rjust(w) for i, (c, w) in
                                enumerate(zip(cells, widths))) + "  " + cells[-1]

    for pool in status["pools"]:
        title = "pool %s (%s)" % (pool["name"], pool["mode"])
        if pool["mode"] == ha.ACTIVE_STANDBY:
            title += "  leader %s  epoch %s%s" % (pool.get("leader") or "NONE", pool.get("epoch"),
                                                  "  PAUSED" if pool.get("paused") else "")
        elif pool.get("paused"):
            title += "  PAUSED"
        lines.append(title)
        lines.append(line(head))
        lines.extend(line(cells) for name, cells in rows if name == pool["name"])
    if status["lbs"]:
        lines.append("load balancers: " + ", ".join("%s applied epoch %d" % (lb, data["applied_epoch"])
                                                    for lb, data in sorted(status["lbs"].items())))
    changes = [e for e in status["events"] if e["type"] not in ("TOPOLOGY_APPLIED",)]
    if changes:
        lines.append("recent changes:")
        for record in changes[-10:]:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record["time"]))
            detail = " ".join("%s=%s" % (key, record[key]) for key in ("pool", "node", "instance", "from", "to", "by")
                              if key in record)
            lines.append("  %s %-19s epoch %-4s %s  %s" % (stamp, record["type"], record["epoch"], detail, record["reason"]))
    return lines


def _number(text):
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _show(value):
    return "-" if value is None else "%g" % value
