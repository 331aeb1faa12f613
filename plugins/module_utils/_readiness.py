# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The production-readiness checklist (seed 002), checked against a live deployment.

One function per line of the checklist takes what was observed and returns
``{"check": name, "ok": bool, "evidence": str}``; they are pure, so the unit tests feed them
tables. Thin functions next to them do the observing (HTTP to the instances and the load
balancer, Redis and the Sentinels), and ``run_checklist`` puts both together for the
``sglang_readiness`` module. What the GPU nodes' Docker and nvidia-smi report reaches this file
as data (the playbook gathers it on the nodes). No Ansible imports.

The lines:

``determinism``
    The same prompt at temperature 0, sent to every instance of a pool directly, gives the same
    model, text and finish reason everywhere.
``structured_output``
    JSON-schema-constrained generations (SGLang's ``json_schema`` sampling parameter on
    ``/generate``), spread over every instance with bounded concurrency and a time budget: each
    answer parses and conforms to the schema.
``isolation``
    Each planned instance runs in its own running container, published on its own planned port,
    with its own log file directory (``docker inspect``).
``memory``
    Each GPU's memory is split as planned: every instance's ``--mem-fraction-static`` (its last
    occurrence on the command line, as argparse reads it) is the plan's, and the shares of total
    memory they take, started one after another, add up to at most the planned fraction (<= 1).
``instance_health``
    Every instance answers its health path and ``/metrics`` with 200.
``lb_health``
    The load balancer's ``/lb/health`` (and each pool's ``/lb/health/<pool>``) is 200.
``sentinels``
    Every Sentinel names the same master, that address says it is the master (``ROLE``), and
    each replica it lists follows it.
``failover_drill``
    Only when asked: the lease of an active-standby pool is moved to its standby (as
    ``failover.yml`` does) and the takeover is timed until every load balancer applied it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.inferops.sglang.plugins.module_utils._address import format_address, parse_address
from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import LABELS
from ansible_collections.inferops.sglang.plugins.module_utils._operations import OperationError
from ansible_collections.inferops.sglang.plugins.module_utils._probe import normalize_url, probe_instance
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    AGENT_USER,
    SENTINEL_CLIENT_USER,
    RedisClient,
    RedisError,
    RedisReplyError,
    ask_sentinels,
)

CHECKS = ("determinism", "structured_output", "isolation", "memory", "instance_health", "lb_health", "sentinels")
DRILL = "failover_drill"
# What each line of the checklist asks (the table's legend).
TITLES = {
    "determinism": "same prompt at temperature 0: same model, text and finish reason on every instance of a pool",
    "structured_output": "JSON-schema-constrained requests all parse and conform",
    "isolation": "each instance has its own container, port and log directory",
    "memory": "each GPU's memory split as planned (--mem-fraction-static)",
    "instance_health": "every instance answers its health path and /metrics",
    "lb_health": "the load balancer's /lb/health is 200",
    "sentinels": "Redis and every Sentinel agree on the master",
    DRILL: "failover drill on an active-standby pool",
}

DEFAULT_PROMPT = "Readiness check: name the three primary colours and stop."
# The schema of the structured-output line: every kind of constraint xgrammar enforces that the
# checker below verifies (types, required members, no others, bounds, enums, arrays).
STRUCTURED_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 32},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tier": {"type": "string", "enum": ["free", "pro", "enterprise"]},
        "active": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
    },
    "required": ["name", "age", "tier", "active", "tags"],
    "additionalProperties": False,
}
# Rounding of the plan (3 decimals) and of the shares derived from it.
FRACTION_TOLERANCE = 0.0005
SHARE_TOLERANCE = 0.005
_MAX_BODY = 4 * 1024 * 1024
# A GPU node that reported nothing (readiness.yml passes ``{"name", "missing": true}`` for it).
MISSING = "reported nothing (unreachable, or its Docker or nvidia-smi did not answer)"
# A container id in a path, shown by its first 12 digits as Docker shows it.
_ID_RE = re.compile(r"\b[0-9a-f]{64}\b")


class ReadinessError(ValueError):
    """Bad input; the message starts with the option or variable at fault."""


def result(check, ok, evidence, skipped=False):
    entry = {"check": check, "ok": bool(ok), "evidence": evidence}
    if skipped:
        entry["skipped"] = True
    return entry


def _short(text, length=48):
    text = " ".join(str(text).split())
    return text if len(text) <= length else text[:length - 3] + "..."


def _digest(text):
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:12]


# ---- JSON schema (the subset STRUCTURED_SCHEMA uses) -------------------------------------------
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(schema, value, path="$"):
    """Where ``value`` breaks ``schema``: a list of ``"<path>: <why>"`` (empty: it conforms).

    Covers type, enum, const, properties, required, additionalProperties (bool or schema),
    minLength/maxLength, minimum/maximum, items, minItems/maxItems.
    """
    errors = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_TYPES[kind](value) for kind in kinds):
            return ["%s: %s is not %s" % (path, _short(json.dumps(value), 24), " or ".join(kinds))]
    if "enum" in schema and value not in schema["enum"]:
        errors.append("%s: %s is not one of %s" % (path, _short(json.dumps(value), 24), json.dumps(schema["enum"])))
    if "const" in schema and value != schema["const"]:
        errors.append("%s: is not %s" % (path, json.dumps(schema["const"])))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append("%s: %r is missing" % (path, name))
        extra = schema.get("additionalProperties", True)
        for name, member in value.items():
            if name in properties:
                errors += schema_errors(properties[name], member, "%s.%s" % (path, name))
            elif extra is False:
                errors.append("%s: %r is not allowed (additionalProperties: false)" % (path, name))
            elif isinstance(extra, dict):
                errors += schema_errors(extra, member, "%s.%s" % (path, name))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append("%s: shorter than %d" % (path, schema["minLength"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append("%s: longer than %d" % (path, schema["maxLength"]))
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append("%s: %s is below %s" % (path, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append("%s: %s is above %s" % (path, value, schema["maximum"]))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append("%s: fewer than %d items" % (path, schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append("%s: more than %d items" % (path, schema["maxItems"]))
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                errors += schema_errors(schema["items"], item, "%s[%d]" % (path, index))
    return errors


# ---- the checks (pure) ---------------------------------------------------------------------------
def finish_text(reason):
    """SGLang's finish reason (``{"type": "stop", "matched": 2}`` or a string) as one word."""
    if isinstance(reason, dict):
        kind = str(reason.get("type"))
        return "%s(%s)" % (kind, reason["matched"]) if reason.get("matched") is not None else kind
    return str(reason)


def check_determinism(observations):
    """``observations``: one per instance, with ``pool``, ``node``, ``instance``, and either
    ``error`` or ``model``, ``text`` and ``finish_reason``. Each pool must agree on all three."""
    if not observations:
        return result("determinism", False, "no instance to ask (the pools list no server)")
    pools = {}
    for item in observations:
        pools.setdefault(item["pool"], []).append(item)
    ok = True
    lines = []
    for pool, items in pools.items():
        failed = [i for i in items if i.get("error")]
        if failed:
            ok = False
            lines.append("%s: %s" % (pool, "; ".join("%s/%s: %s" % (i["node"], i["instance"], i["error"]) for i in failed)))
            continue
        first = items[0]
        differences = []
        for other in items[1:]:
            label = "%s/%s" % (other["node"], other["instance"])
            versus = "%s/%s" % (first["node"], first["instance"])
            if other.get("model") != first.get("model"):
                differences.append("%s serves model %r, %s %r" % (label, other.get("model"), versus, first.get("model")))
            if other["text"] != first["text"]:
                at = next((k for k, (a, b) in enumerate(zip(other["text"], first["text"])) if a != b),
                          min(len(other["text"]), len(first["text"])))
                differences.append("%s answered %r (sha256 %s), %s %r (sha256 %s): they differ from character %d" % (
                    label, _short(other["text"], 32), _digest(other["text"]), versus, _short(first["text"], 32),
                    _digest(first["text"]), at))
            if finish_text(other["finish_reason"]) != finish_text(first["finish_reason"]):
                differences.append("%s finished with %s, %s with %s" % (
                    label, finish_text(other["finish_reason"]), versus, finish_text(first["finish_reason"])))
        if differences:
            ok = False
            lines.append("%s: %s" % (pool, "; ".join(differences)))
        else:
            lines.append("%s: %d instance(s) agree: model %s, %d characters (sha256 %s), finish %s%s" % (
                pool, len(items), first.get("model"), len(first["text"]), _digest(first["text"]),
                finish_text(first["finish_reason"]), "" if len(items) > 1 else " (nothing to compare with)"))
    return result("determinism", ok, "\n".join(lines))


def check_structured(outcomes, requested, elapsed, concurrency, budget):
    """``outcomes``: one per request sent, ``{"instance", "ok", "error"}``; every one of
    ``requested`` must have been sent within ``budget`` seconds and conform."""
    good = [o for o in outcomes if o["ok"]]
    bad = [o for o in outcomes if not o["ok"]]
    instances = sorted({o["instance"] for o in outcomes})
    ok = requested > 0 and len(outcomes) == requested and not bad
    evidence = "%d/%d requests parsed and conformed to the schema, over %d instance(s), %.1f s (concurrency %d, budget %g s)" % (
        len(good), requested, len(instances), elapsed, concurrency, budget)
    if bad:
        shown = bad[:5]
        evidence += "\nfailed: " + "; ".join("%s: %s" % (o["instance"], o["error"]) for o in shown)
        if len(bad) > len(shown):
            evidence += "; and %d more" % (len(bad) - len(shown))
    if len(outcomes) < requested:
        evidence += "\n%d request(s) were never answered" % (requested - len(outcomes))
    return result("structured_output", ok, evidence)


def container_name(doc):
    return str(doc.get("Name") or "").lstrip("/")


def host_ports(doc):
    """The host ports a container publishes (``HostConfig.PortBindings``), sorted."""
    ports = set()
    for bindings in ((doc.get("HostConfig") or {}).get("PortBindings") or {}).values():
        for binding in bindings or []:
            if str(binding.get("HostPort") or "").isdigit():
                ports.add(int(binding["HostPort"]))
    return sorted(ports)


def command_line(doc):
    config = doc.get("Config") or {}
    return [str(part) for part in (config.get("Entrypoint") or []) + (config.get("Cmd") or [])]


def launch_flag(doc, flag):
    """The value of ``flag`` on the container's command line: the last one, as argparse reads it."""
    value = None
    argv = command_line(doc)
    for index, part in enumerate(argv):
        if part == flag and index + 1 < len(argv):
            value = argv[index + 1]
        elif part.startswith(flag + "="):
            value = part.split("=", 1)[1]
    return value


def container_gpus(doc):
    """GPU indices Docker gives the container (its device requests), else the plan's label."""
    ids = []
    for request in (doc.get("HostConfig") or {}).get("DeviceRequests") or []:
        ids += [str(i) for i in request.get("DeviceIDs") or []]
    if ids:
        return ids
    label = ((doc.get("Config") or {}).get("Labels") or {}).get(LABELS["gpus"]) or ""
    return [part for part in label.split(",") if part]


def _managed(doc):
    return ((doc.get("Config") or {}).get("Labels") or {}).get(LABELS["managed"]) == "true"


def check_isolation(nodes):
    """``nodes``: ``{"name", "plan", "containers"}`` (the plan and ``docker inspect`` of the
    managed containers). Each planned instance: its own running container, its planned host
    port and no other container's, its own log directory."""
    ok = True
    lines = []
    log_dirs = {}
    ids = {}
    for node in nodes:
        if node.get("missing"):
            ok = False
            lines.append("%s: %s" % (node["name"], MISSING))
            continue
        docs = {container_name(doc): doc for doc in node.get("containers") or [] if _managed(doc)}
        planned = [item["name"] for item in node.get("plan") or []]
        problems = []
        port_owner = {}
        for name in sorted(docs):
            for port in host_ports(docs[name]):
                if port in port_owner:
                    problems.append("port %d is published by both %s and %s" % (port, port_owner[port], name))
                port_owner[port] = name
        for name in sorted(set(docs) - set(planned)):
            problems.append("%s runs but is not in the plan" % name)
        seen = []
        for item in node.get("plan") or []:
            doc = docs.get(item["name"])
            if doc is None:
                problems.append("%s has no container" % item["name"])
                continue
            state = doc.get("State") or {}
            if not state.get("Running"):
                problems.append("%s is not running (%s)" % (item["name"], state.get("Status", "unknown")))
            ports = host_ports(doc)
            if ports != [int(item["host_port"])]:
                published = ",".join(map(str, ports)) or "nothing"
                problems.append("%s publishes %s, planned %d" % (item["name"], published, int(item["host_port"])))
            log_path = str(doc.get("LogPath") or "")
            log_dir = os.path.dirname(log_path) if log_path else ""
            where = "%s/%s" % (node["name"], item["name"])
            if log_dir:
                if log_dir in log_dirs:
                    problems.append("%s logs into %s, as %s does" % (item["name"], log_dir, log_dirs[log_dir]))
                log_dirs[log_dir] = where
            container_id = str(doc.get("Id") or "")
            if container_id in ids:
                problems.append("%s is the same container as %s" % (item["name"], ids[container_id]))
            ids[container_id] = where
            log_text = _ID_RE.sub(lambda m: m.group(0)[:12] + "...", log_dir) if log_dir else "no log file (log driver %s)" % (
                ((doc.get("HostConfig") or {}).get("LogConfig") or {}).get("Type", "unknown"))
            seen.append("%s port %s, container %s, logs %s" % (
                item["name"], ",".join(map(str, ports)) or "-", container_id[:12] or "?", log_text))
        if problems:
            ok = False
            lines.append("%s: %s" % (node["name"], "; ".join(problems)))
        else:
            lines.append("%s: %s" % (node["name"], "; ".join(seen) if seen else "no instance planned"))
    if not nodes:
        return result("isolation", False, "no GPU node reported its containers")
    return result("isolation", ok, "\n".join(lines))


def replay_shares(fractions):
    """Shares of a GPU's total memory that instances take when started in this order, each
    taking its ``--mem-fraction-static`` of the memory still free."""
    free = 1.0
    shares = []
    for fraction in fractions:
        take = free * fraction
        shares.append(take)
        free -= take
    return shares


def check_memory(nodes):
    """``nodes``: ``{"name", "plan", "containers", "gpus"}`` (``gpus``: gpu_facts' list, for the
    total memory). Per GPU: each instance's ``--mem-fraction-static`` is the plan's, the
    containers on it are the planned ones, and the shares they take in start order add up to
    at most the planned fraction of the GPU (never above 1)."""
    ok = True
    lines = []
    for node in nodes:
        if node.get("missing"):
            ok = False
            lines.append("%s: %s" % (node["name"], MISSING))
            continue
        docs = {container_name(doc): doc for doc in node.get("containers") or [] if _managed(doc)}
        totals = {str(g.get("index")): g.get("memory_total_mib") for g in node.get("gpus") or []}
        planned_on = {}
        for item in node.get("plan") or []:
            for device in item.get("device_ids") or []:
                planned_on.setdefault(str(device), []).append(item)
        running_on = {}
        for name, doc in docs.items():
            for device in container_gpus(doc):
                running_on.setdefault(device, []).append(name)
        problems = []
        seen = []
        for device in sorted(set(planned_on) | set(running_on), key=lambda d: (len(d), d)):
            items = sorted(planned_on.get(device, []), key=lambda i: i.get("start_order", 0))
            names = [i["name"] for i in items]
            strangers = sorted(set(running_on.get(device, [])) - set(names))
            missing = [n for n in names if n not in docs]
            absent = [n for n in names if n in docs and n not in running_on.get(device, [])]
            for name in strangers:
                problems.append("GPU %s: %s uses it, not planned there" % (device, name))
            for name in missing:
                problems.append("GPU %s: %s has no container" % (device, name))
            for name in absent:
                problems.append("GPU %s: %s does not get it (Docker gives it GPUs %s)" % (
                    device, name, ",".join(container_gpus(docs[name])) or "none"))
            fractions = []
            parts = []
            for item in items + [{"name": n} for n in strangers]:
                doc = docs.get(item["name"])
                if doc is None:
                    continue
                raw = launch_flag(doc, "--mem-fraction-static")
                try:
                    value = float(raw)
                except (TypeError, ValueError):
                    problems.append("GPU %s: %s has %s" % (device, item["name"], "--mem-fraction-static %r" % raw if raw
                                                           else "no --mem-fraction-static (SGLang picks its own)"))
                    continue
                if not 0 < value <= 1:
                    problems.append("GPU %s: %s has --mem-fraction-static %s, not in (0, 1]" % (device, item["name"], raw))
                planned = item.get("mem_fraction_static")
                if planned is not None and abs(value - float(planned)) > FRACTION_TOLERANCE:
                    problems.append("GPU %s: %s runs with --mem-fraction-static %s, planned %s" % (
                        device, item["name"], raw, planned))
                fractions.append(value)
                parts.append((item["name"], raw))
            shares = replay_shares(fractions)
            total_share = sum(shares)
            planned_share = sum(float(i.get("memory_share") or 0) for i in items)
            if total_share > 1 + 1e-9 or (items and total_share > planned_share + SHARE_TOLERANCE):
                problems.append("GPU %s: the instances take %.3f of its memory, planned %.3f" % (
                    device, total_share, planned_share))
            mib = totals.get(device)
            if mib is None and device in planned_on:
                problems.append("GPU %s: nvidia-smi does not report it" % device)
            detail = " + ".join("%s %s" % (name, raw) for name, raw in parts)
            seen.append("GPU %s (%s): %s -> shares %s = %.3f%s" % (
                device, "%d MiB" % mib if isinstance(mib, int) else "? MiB", detail or "nothing",
                " + ".join("%.3f" % s for s in shares) or "0", total_share,
                " (%d MiB)" % round(mib * total_share) if isinstance(mib, int) else ""))
        if problems:
            ok = False
            lines.append("%s: %s" % (node["name"], "; ".join(problems)))
        elif seen:
            lines.append("%s: %s" % (node["name"], "; ".join(seen)))
        else:
            lines.append("%s: no instance on a GPU" % node["name"])
        if node.get("gpus"):
            lines[-1] += " [nvidia-smi: %s]" % ", ".join(
                "%s, %s MiB" % (g.get("index"), g.get("memory_total_mib")) for g in node["gpus"])
    if not nodes:
        return result("memory", False, "no GPU node reported its containers")
    return result("memory", ok, "\n".join(lines))


def check_instance_health(observations):
    """``observations``: per instance ``{"node", "instance", "address", "health_path",
    "health": {"status", "error"}, "metrics": {"status", "error"}}``; both must be 200."""
    if not observations:
        return result("instance_health", False, "no instance to ask (the pools list no server)")
    ok = True
    lines = []
    for item in observations:
        parts = []
        good = True
        for key, path in (("health", item["health_path"]), ("metrics", "/metrics")):
            answer = item[key]
            parts.append("%s %s" % (path, answer.get("status") if answer.get("status") is not None else answer.get("error")))
            good = good and answer.get("status") == 200
        ok = ok and good
        lines.append("%s%s/%s (%s): %s" % (
            "" if good else "FAILED ", item["node"], item["instance"], item["address"], ", ".join(parts)))
    return result("instance_health", ok, "\n".join(lines))


def check_lb_health(observations):
    """``observations``: ``{"url", "status", "error"}`` for /lb/health and each pool's."""
    if not observations:
        return result("lb_health", False, "nothing asked")
    ok = all(o.get("status") == 200 for o in observations)
    return result("lb_health", ok, "; ".join("%s %s" % (o["url"], o["status"] if o.get("status") is not None else o.get("error"))
                                             for o in observations))


def check_sentinels(master_name, answers, views):
    """``answers``: each Sentinel's ``{"sentinel", "master"|"error"}``; ``views``: ``ROLE`` as
    the agents' user per address, ``{"role", "replicas", "master", "error", "refused"}``.

    Every Sentinel must answer and name one address; that address must say master, and each
    replica it lists must follow it. ROLE refused by the ACL is reported, not failed."""
    if not answers:
        return result("sentinels", False, "no Sentinel configured")
    lines = ["%s: %s" % (a["sentinel"], a.get("master") or "ERROR " + a.get("error", "")) for a in answers]
    votes = [a["master"] for a in answers if a.get("master")]
    # The address most Sentinels name first.
    named = sorted(set(votes), key=lambda address: (-votes.count(address), address))
    problems = ["%s did not answer: %s" % (a["sentinel"], a["error"]) for a in answers if a.get("error")]
    if len(named) > 1:
        problems.append("the Sentinels disagree on the master of %s: %s" % (master_name, "; ".join(
            "%s by %s" % (address, ", ".join(a["sentinel"] for a in answers if a.get("master") == address))
            for address in named)))
    for address in named:
        view = views.get(address) or {}
        if view.get("refused"):
            lines.append("%s: ROLE not allowed for the agents' user (%s); its own view not checked" % (address, view["error"]))
        elif view.get("error"):
            problems.append("%s (named master) cannot be asked: %s" % (address, view["error"]))
        elif view.get("role") != "master":
            problems.append("%s is named master but says it is a %s%s" % (
                address, view.get("role"), " of %s" % view["master"] if view.get("master") else ""))
        else:
            replicas = view.get("replicas") or []
            listed = (": " + ", ".join(replicas)) if replicas else ""
            lines.append("%s: ROLE master, %d replica(s)%s" % (address, len(replicas), listed))
            for replica in replicas:
                seen = views.get(replica) or {}
                if seen.get("refused"):
                    continue
                if seen.get("error"):
                    problems.append("replica %s cannot be asked: %s" % (replica, seen["error"]))
                elif seen.get("role") != "slave" or seen.get("master") != address:
                    problems.append("replica %s follows %s, not %s" % (replica, seen.get("master") or seen.get("role"),
                                                                       address))
                else:
                    lines.append("%s: ROLE replica of %s (%s)" % (replica, address, seen.get("state")))
    if not named and not problems:
        problems.append("no Sentinel named a master for %s" % master_name)
    evidence = "\n".join(problems + lines) if problems else "%d Sentinel(s) agree: master of %s is %s\n%s" % (
        len(answers), master_name, named[0], "\n".join(lines))
    return result("sentinels", not problems, evidence)


def check_drill(outcome):
    """``outcome``: ``{"pool", "from", "to", "epoch", "seconds"}``, or ``{"pool", "error"}``,
    or ``{"skipped": why}``."""
    if outcome.get("skipped"):
        return result(DRILL, True, outcome["skipped"], skipped=True)
    if outcome.get("error"):
        return result(DRILL, False, "pool %s: %s" % (outcome.get("pool"), outcome["error"]))
    return result(DRILL, True, "pool %s: the lease moved from %s to %s (epoch %s); takeover %.2f s until every load "
                               "balancer applied it" % (outcome["pool"], outcome["from"], outcome["to"], outcome["epoch"],
                                                        outcome["seconds"]))


def failed_checks(results):
    return [r["check"] for r in results if not r["ok"]]


def format_table(results):
    """The checklist as lines: check, PASS/FAIL/SKIP, evidence (continuation lines indented)."""
    width = max([len("check")] + [len(r["check"]) for r in results])
    lines = ["%s  %-4s  %s" % ("check".ljust(width), "", "evidence")]
    for entry in results:
        mark = "SKIP" if entry.get("skipped") else "PASS" if entry["ok"] else "FAIL"
        evidence = str(entry["evidence"]).splitlines() or [""]
        lines.append("%s  %s  %s" % (entry["check"].ljust(width), mark, evidence[0]))
        lines.extend("%s  %s  %s" % ("".ljust(width), "    ", more) for more in evidence[1:])
    failed = failed_checks(results)
    ran = [r for r in results if not r.get("skipped")]
    lines.append("%d of %d checks passed%s%s" % (len(ran) - len(failed), len(ran),
                                                 " (%d skipped)" % (len(results) - len(ran)) if len(ran) < len(results)
                                                 else "", "; FAILED: " + ", ".join(failed) if failed else ""))
    return lines


# ---- observing (I/O) -------------------------------------------------------------------------------
def http_request(url, body=None, headers=None, timeout=10.0, verify=True):
    """GET (``body`` None) or POST JSON; returns ``(status, text, error)``. No proxy."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    handlers = [urllib.request.ProxyHandler({})]
    if url.startswith("https://") and not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(_MAX_BODY).decode("utf-8", "replace"), None
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read(_MAX_BODY).decode("utf-8", "replace")
        except (OSError, ValueError):
            text = ""
        return exc.code, text, None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            return None, "", "timed out after %gs" % timeout
        return None, "", "connection failed: %s" % (exc.reason,)
    except (socket.timeout, TimeoutError):
        return None, "", "timed out after %gs" % timeout
    except (ConnectionError, OSError, ValueError) as exc:
        return None, "", "request failed: %s" % (exc,)


def _auth(api_key):
    return {"Authorization": "Bearer %s" % api_key} if api_key else {}


def generate(url, api_key, text, sampling_params, timeout):
    """``POST /generate``; returns ``(answer_dict, error)``."""
    status, body, error = http_request(normalize_url(url) + "/generate", {"text": text, "sampling_params": sampling_params},
                                       _auth(api_key), timeout)
    if error:
        return None, error
    if status != 200:
        return None, "HTTP %d: %s" % (status, _short(body, 120))
    try:
        answer = json.loads(body)
    except ValueError:
        return None, "/generate answered 200 with no JSON: %s" % _short(body, 80)
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        return None, "/generate answered without a text: %s" % _short(body, 80)
    return answer, None


def instances_of(pools):
    """Every server of the pools that names its node and instance, in pool order."""
    found = []
    for pool in pools:
        for server in pool.get("servers") or []:
            if server.get("node") and server.get("instance"):
                found.append({"pool": pool["name"], "node": server["node"], "instance": server["instance"],
                              "address": server["address"], "url": "http://%s" % server["address"]})
    return found


def _parallel(function, items, workers):
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as executor:
        return list(executor.map(function, items))


def observe_determinism(instances, api_key, prompt=DEFAULT_PROMPT, max_new_tokens=32, timeout=30.0):
    def ask(instance):
        entry = dict(instance)
        info = probe_instance(instance["url"], "liveness", api_key=api_key, timeout=min(timeout, 10.0))
        if not info["ok"]:
            entry["error"] = "model info: %s" % info["error"]
            return entry
        entry["model"] = info["model_path"] or info["served_model_name"]
        answer, error = generate(instance["url"], api_key, prompt, {"temperature": 0, "max_new_tokens": max_new_tokens},
                                 timeout)
        if error:
            entry["error"] = error
            return entry
        entry["text"] = answer["text"]
        entry["finish_reason"] = (answer.get("meta_info") or {}).get("finish_reason")
        return entry

    return _parallel(ask, instances, 16)


def structured_outcome(answer):
    """Why one structured answer fails (None: it parsed and conformed)."""
    reason = (answer.get("meta_info") or {}).get("finish_reason")
    text = answer["text"]
    try:
        document = json.loads(text)
    except ValueError as exc:
        return "does not parse (%s, finish %s): %s" % (exc, finish_text(reason), _short(text, 60))
    errors = schema_errors(STRUCTURED_SCHEMA, document)
    if errors:
        return "does not conform: %s" % "; ".join(errors[:3])
    return None


def run_structured(instances, api_key, count=100, concurrency=8, budget=120.0, request_timeout=30.0,
                   max_new_tokens=256, clock=time.monotonic):
    """Send ``count`` schema-constrained generations round-robin over ``instances``, at most
    ``concurrency`` at a time, none started after ``budget`` seconds. Returns
    ``(outcomes, elapsed)``."""
    if not instances:
        return [], 0.0
    started = clock()
    deadline = started + budget
    schema = json.dumps(STRUCTURED_SCHEMA)

    def one(index):
        instance = instances[index % len(instances)]
        label = "%s/%s" % (instance["node"], instance["instance"])
        remaining = deadline - clock()
        if remaining <= 0:
            return {"instance": label, "ok": False, "error": "not sent: the %g s budget was used up" % budget}
        params = {"temperature": 0, "max_new_tokens": max_new_tokens, "json_schema": schema}
        prompt = "Readiness check %d: describe a customer of tier free, pro or enterprise as JSON." % index
        answer, error = generate(instance["url"], api_key, prompt, params, min(request_timeout, max(remaining, 1.0)))
        if error:
            return {"instance": label, "ok": False, "error": error}
        why = structured_outcome(answer)
        return {"instance": label, "ok": why is None, "error": why}

    outcomes = _parallel(one, list(range(count)), concurrency)
    return outcomes, round(clock() - started, 2)


def observe_health(instances, api_key, health_paths, timeout=30.0):
    """``health_paths``: node -> path (default ``/health``)."""
    def ask(instance):
        entry = dict(instance, health_path=health_paths.get(instance["node"]) or "/health")
        for key, path in (("health", entry["health_path"]), ("metrics", "/metrics")):
            status, dummy, error = http_request(normalize_url(instance["url"]) + path, None, _auth(api_key), timeout)
            entry[key] = {"status": status, "error": error}
        return entry

    return _parallel(ask, instances, 16)


def observe_lb(lb_url, pools, timeout=10.0, verify=True):
    urls = [normalize_url(lb_url) + "/lb/health"] + [normalize_url(lb_url) + "/lb/health/" + p["name"] for p in pools]
    found = []
    for url in urls:
        status, dummy, error = http_request(url, None, None, timeout, verify=verify)
        found.append({"url": url, "status": status, "error": error})
    return found


def _role_view(host, port, password, timeout):
    client = RedisClient(host, port, username=AGENT_USER, password=password, timeout=timeout)
    try:
        reply = client.execute("ROLE")
    except RedisReplyError as exc:
        return {"error": str(exc), "refused": str(exc).startswith("NOPERM")}
    except RedisError as exc:
        return {"error": str(exc)}
    finally:
        client.close()
    if reply[0] == "master":
        return {"role": "master", "replicas": [format_address(r[0], r[1]) for r in reply[2] or []]}
    if reply[0] == "slave":
        return {"role": "slave", "master": format_address(reply[1], reply[2]), "state": reply[3]}
    return {"role": reply[0]}


def observe_redis(sentinels, master_name, sentinel_password, password, timeout=1.0):
    """Each Sentinel's answer (as the Sentinel client user) and ``ROLE`` (as the agents' user) of
    every address they name and of the replicas those masters list."""
    answers = ask_sentinels([tuple(s) for s in sentinels], master_name, SENTINEL_CLIENT_USER, sentinel_password, timeout)
    views = {}
    for address in sorted({a["master"] for a in answers if a.get("master")}):
        host, port = parse_address(address)
        views[address] = _role_view(host, port, password, timeout)
        for replica in views[address].get("replicas") or []:
            if replica not in views:
                rhost, rport = parse_address(replica)
                views[replica] = _role_view(rhost, rport, password, timeout)
    return answers, views


def read_secret(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise ReadinessError("agent_config: redis.%s %s cannot be read: %s" % (what, path, exc.strerror or exc))


def run_drill(fleet, pool=None, reason="readiness drill", by="readiness", timeout=60.0, check_mode=False,
              clock=time.monotonic):
    """Move an active-standby pool's lease to its standby (``Fleet.failover``) and time it until
    every load balancer applied the new epoch. Returns an outcome for ``check_drill``."""
    standby = [name for name in sorted(fleet.pools) if fleet.pools[name].get("mode") == "active_standby"]
    if pool is None:
        if not standby:
            return {"skipped": "no active_standby pool to drill (pools: %s)" % ", ".join(sorted(fleet.pools))}
        pool = standby[0]
    elif pool not in fleet.pools:
        raise ReadinessError("drill_pool: %r is not a pool (pools: %s)" % (pool, ", ".join(sorted(fleet.pools))))
    elif pool not in standby:
        raise ReadinessError("drill_pool: %s is active_active; a drill needs an active_standby pool (%s)" % (
            pool, ", ".join(standby) or "none"))
    if check_mode:
        return {"skipped": "check mode: the drill on pool %s would move its lease; nothing was moved" % pool}
    holder, dummy = fleet.lease(pool)
    started = clock()
    try:
        moved = fleet.failover(pool, None, reason, by, False, timeout)
    except (OperationError, RedisError) as exc:
        return {"pool": pool, "error": "%s (leader was %s)" % (exc, holder or "nobody")}
    seconds = clock() - started
    return {"pool": pool, "from": holder or "nobody", "to": moved["after"]["leader"], "epoch": moved["after"]["epoch"],
            "seconds": seconds}


# ---- the whole checklist ----------------------------------------------------------------------------
def node_errors(nodes, needed):
    """Problems with the ``nodes`` option, each naming its field."""
    errors = []
    if not isinstance(nodes, list):
        return ["nodes: must be a list of the GPU nodes' observations"]
    if needed and not nodes:
        errors.append("nodes: empty; the %s check(s) need each GPU node's plan and docker inspect (readiness.yml "
                      "gathers them), or leave them out of checks" % " and ".join(needed))
    for index, node in enumerate(nodes):
        field = "nodes[%d]" % index
        if not isinstance(node, dict) or not node.get("name"):
            errors.append("%s: must be a dictionary with name, plan, containers and gpus" % field)
            continue
        if node.get("missing"):
            continue
        for key, kind, what in (("plan", list, "sglang_plan from the sglang role's validation"),
                                ("containers", list, "docker inspect of the managed containers"),
                                ("gpus", list, "gpu_facts' gpus")):
            if not isinstance(node.get(key, []), kind):
                errors.append("%s.%s: must be a list (%s), got %s" % (field, key, what, type(node[key]).__name__))
        for pos, item in enumerate(node.get("plan") or []):
            if not isinstance(item, dict) or "name" not in item or "host_port" not in item:
                errors.append("%s.plan[%d]: not an instance of the plan (name, host_port, ...)" % (field, pos))
    return errors


def run_checklist(config, nodes, api_key="", checks=CHECKS, lb_url="http://127.0.0.1:8080", verify=True,
                  prompt=DEFAULT_PROMPT, max_new_tokens=32, structured_requests=100, structured_concurrency=8,
                  structured_budget=120.0, request_timeout=30.0, drill=None):
    """Every asked check against the deployment an agent's ``config`` describes (its ``redis``
    and ``lb.pools``). ``drill``: None, or ``callable() -> outcome`` (``run_drill`` bound to a
    fleet). Returns the results in checklist order."""
    pools = (config.get("lb") or {}).get("pools") or []
    instances = instances_of(pools)
    health_paths = {node["name"]: node.get("health_path") for node in nodes}
    results = []
    for check in checks:
        if check == "determinism":
            results.append(check_determinism(observe_determinism(instances, api_key, prompt, max_new_tokens,
                                                                 request_timeout)))
        elif check == "structured_output":
            outcomes, elapsed = run_structured(instances, api_key, structured_requests, structured_concurrency,
                                               structured_budget, request_timeout)
            results.append(check_structured(outcomes, structured_requests, elapsed, structured_concurrency,
                                            structured_budget))
        elif check == "isolation":
            results.append(check_isolation(nodes))
        elif check == "memory":
            results.append(check_memory(nodes))
        elif check == "instance_health":
            results.append(check_instance_health(observe_health(instances, api_key, health_paths, request_timeout)))
        elif check == "lb_health":
            results.append(check_lb_health(observe_lb(lb_url, pools, min(request_timeout, 10.0), verify)))
        elif check == "sentinels":
            redis = config.get("redis") or {}
            try:
                answers, views = observe_redis(redis.get("sentinels") or [], redis.get("master_name", "inferops"),
                                               read_secret(redis.get("sentinel_password_file", ""), "sentinel_password_file"),
                                               read_secret(redis.get("password_file", ""), "password_file"))
            except ReadinessError as exc:
                results.append(result("sentinels", False, str(exc)))
            else:
                results.append(check_sentinels(redis.get("master_name", "inferops"), answers, views))
    if drill is not None:
        results.append(check_drill(drill()))
    return results
