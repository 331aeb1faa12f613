# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What Prometheus scrapes, derived from the inventory (the monitoring role's file_sd targets).

One job per kind of target, each target labelled with the inventory's names so an alert or a
dashboard panel says which node, pool and instance it is about:

- ``sglang``: every instance's ``/metrics`` (exempt from the API key in every SGLang release),
  from the GPU nodes' instance plans (``sglang_plan``, ``sglang_service_address``);
- ``inferops_agent``: every HA agent's ``/metrics`` (GPU nodes and load balancers);
- ``nginx``: the nginx exporter on every load balancer (``stub_status``);
- ``redis`` and ``sentinel``: the Redis exporter on every Redis host, once for Redis and once for
  its Sentinel.

Errors name the variable: an agent that listens on loopback cannot be scraped from another
host. No Ansible imports.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.inferops.sglang.plugins.module_utils._address import format_address, parse_address


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def scrape_targets(gpu_nodes, lb_nodes, redis_nodes, ports):
    """``gpu_nodes``: ``[{"name", "address", "plan", "agent_listen"}]``; ``lb_nodes``:
    ``[{"name", "address", "agent_listen"}]``; ``redis_nodes``: ``[{"name", "address"}]``;
    ``ports``: ``nginx_exporter``, ``redis_exporter``, ``sentinel_exporter``.
    Returns ``{"errors": [...], "jobs": {job: [file_sd entry, ...]}}``."""
    errors = []
    jobs = {"sglang": [], "inferops_agent": [], "nginx": [], "redis": [], "sentinel": []}
    for node in gpu_nodes:
        if not node.get("address"):
            errors.append("sglang_service_address: empty on %s; its instances cannot be scraped" % node["name"])
            continue
        for item in node.get("plan") or []:
            jobs["sglang"].append({"targets": [format_address(node["address"], item["host_port"])],
                                   "labels": {"node": node["name"], "pool": item["pool"], "sglang_instance": item["name"],
                                              "deployment": item["deployment"]}})
    for role, nodes in (("gpu", gpu_nodes), ("lb", lb_nodes)):
        for node in nodes:
            listen = node.get("agent_listen")
            if listen is None:
                continue  # no agent on this host
            if not listen:
                errors.append("ha_agent_listen on %s: not set, so the agent listens on loopback and Prometheus on another "
                              "host cannot scrape it; set it to the host's address, e.g. \"{{ ansible_facts.default_ipv4."
                              "address }}:9464\"" % node["name"])
                continue
            try:
                host, port = parse_address(listen)
            except ValueError:
                errors.append("ha_agent_listen on %s: %r is not host:port" % (node["name"], listen))
                continue
            if _is_loopback(host):
                errors.append("ha_agent_listen on %s: %s listens on loopback; Prometheus on another host cannot "
                              "scrape it (listen on the host's address, e.g. \"{{ ansible_facts.default_ipv4.address "
                              "}}:9464\")" % (node["name"], listen))
                continue
            if host in ("0.0.0.0", "::"):
                host = node.get("address") or host
            jobs["inferops_agent"].append({"targets": [format_address(host, port)],
                                           "labels": {"node": node["name"], "role": role}})
    for node in lb_nodes:
        jobs["nginx"].append({"targets": [format_address(node["address"], ports["nginx_exporter"])],
                              "labels": {"node": node["name"]}})
    for node in redis_nodes:
        jobs["redis"].append({"targets": [format_address(node["address"], ports["redis_exporter"])],
                              "labels": {"node": node["name"]}})
        jobs["sentinel"].append({"targets": [format_address(node["address"], ports["sentinel_exporter"])],
                                 "labels": {"node": node["name"]}})
    if not jobs["sglang"] and not errors:
        errors.append("monitoring_sglang_group: no SGLang instance to scrape (no host with a plan in the group)")
    return {"errors": errors, "jobs": jobs}


# --- the alert rules, with a site's own `for:` ------------------------------------------------
# Prometheus's duration syntax: units from milliseconds to years, largest first, e.g. 1m30s.
_DURATION = re.compile(r"^(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?$")
_RULE_LINE = re.compile(r"^\s*- (alert|record):\s*(\S+)\s*$")
_FOR_LINE = re.compile(r"^(\s*)for:\s*\S+\s*$")


def rules_with_for(rules_text, overrides, field="monitoring_alert_for"):
    """``{"text", "errors"}``: the rules file with the ``for:`` of each alert named in
    ``overrides`` (alert name -> Prometheus duration) replaced. Edited line by line, so the file
    keeps its comments and layout, and without overrides it is returned byte for byte. Errors
    name ``field`` and the alert: an unknown alert, a bad duration, an alert that has no ``for:``
    (it fires as soon as its expression holds)."""
    if not isinstance(overrides, dict):
        return {"text": rules_text, "errors": [f"{field}: a mapping of alert name to duration, not {overrides!r}"]}
    errors = [f"{field}.{name}: {value!r} is not a Prometheus duration such as 30s, 5m or 1h30m"
              for name, value in overrides.items()
              if not isinstance(value, str) or not value or not _DURATION.match(value)]
    lines = rules_text.splitlines(keepends=True)
    alerts, replaced, current = [], set(), None
    for index, line in enumerate(lines):
        rule = _RULE_LINE.match(line)
        if rule:
            current = rule.group(2) if rule.group(1) == "alert" else None
            if current:
                alerts.append(current)
            continue
        duration = _FOR_LINE.match(line)
        if duration and current in overrides and current not in replaced:
            lines[index] = f"{duration.group(1)}for: {overrides[current]}\n"
            replaced.add(current)
    for name in overrides:
        if name not in alerts:
            errors.append(f"{field}.{name}: no such alert in the collection's rules ({', '.join(sorted(alerts))})")
        elif name not in replaced:
            errors.append(f"{field}.{name}: this alert has no for: (it fires as soon as its expression holds)")
    if errors:
        return {"text": rules_text, "errors": errors}
    return {"text": "".join(lines), "errors": []}
