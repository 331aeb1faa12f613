# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The HA agent's configuration file, built from what the inventory decided.

The ``ha_agent`` role calls ``agent_config`` (through a filter) and writes the result as JSON;
``_agent.py`` reads it. The instances and servers in it are exactly the inventory's: the agent
decides their live state, never which exist. No Ansible imports.
"""

from __future__ import annotations

from ansible_collections.inferops.sglang.plugins.module_utils._address import format_address, parse_address, url_for
from ansible_collections.inferops.sglang.plugins.module_utils._agent import DEFAULT_TIMING, check_timing

TIMING_VARS = {
    "loop": "ha_agent_loop_seconds", "lease_ttl": "ha_agent_lease_ttl_seconds",
    "lease_margin": "ha_agent_lease_margin_seconds", "cheap_timeout": "ha_agent_probe_timeout_seconds",
    "deep_interval": "ha_agent_deep_probe_interval_seconds", "deep_timeout": "ha_agent_deep_probe_timeout_seconds",
    "fall": "ha_agent_fall", "rise": "ha_agent_rise", "start_timeout": "ha_agent_start_timeout_seconds",
    "backoff_min": "ha_agent_restart_backoff_min_seconds", "backoff_max": "ha_agent_restart_backoff_max_seconds",
    "record_ttl": "ha_agent_record_ttl_seconds", "wait_replicas": "ha_agent_wait_replicas",
}


def _number(value, var, errors, integer=False):
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        errors.append("%s: %r is not a number" % (var, value))
        return None
    if number < 0:
        errors.append("%s: must be >= 0, got %r" % (var, value))
    return number


def agent_config(node, timing, sentinels, paths, plan=None, service_address=None, pools=None, lb=None,
                 master_name="inferops"):
    """``{"errors": [...], "config": {...}}``; errors name the role's variables.

    ``plan``: the node's instance plan (``sglang_plan``), with ``service_address``; ``pools``:
    the load balancer pools made from every GPU node's plan (``sglang_lb_pools``), which give
    each pool's preferred leader (its first node in the inventory); ``lb``: on a load balancer,
    ``{"pools": nginx_lb_upstreams.pools, "upstreams_dir", "test_command", "reload_command"}``.
    """
    errors = []
    parsed = {}
    for key, value in (timing or {}).items():
        number = _number(value, TIMING_VARS.get(key, key), errors, integer=key in ("fall", "rise", "wait_replicas"))
        if number is not None:
            parsed[key] = number
    merged = dict(DEFAULT_TIMING, **parsed)
    if not errors:
        errors += check_timing(merged)
    if not sentinels:
        errors.append("ha_agent_sentinels: empty, and no host in ha_agent_redis_group to take them from")
    addresses = []
    for index, item in enumerate(sentinels or []):
        try:
            addresses.append(list(parse_address(item)))
        except ValueError:
            errors.append("ha_agent_sentinels[%d]: %r is not host:port" % (index, item))
    preferred = {}
    for pool in pools or []:
        if pool.get("servers"):
            preferred[pool["name"]] = pool["servers"][0].get("node")
    instances = []
    for item in plan or []:
        if not service_address:
            errors.append("sglang_service_address: empty on %s; the agent cannot reach its instances" % node)
            break
        instances.append({
            "name": item["name"], "container": item["name"], "pool": item["pool"], "mode": item.get("mode", "active_active"),
            "failback": item.get("failback", "off"), "failback_hold_down": item.get("failback_hold_down", 300),
            "preferred_node": preferred.get(item["pool"]),
            "address": format_address(service_address, item["host_port"]),
            "url": url_for(service_address, item["host_port"]),
            "version": item.get("sglang_version") or "0.5.6", "gpus": list(item.get("device_ids") or []),
            "start_order": item.get("start_order", 0),
        })
    config = {
        "node": node,
        "timing": merged,
        "redis": {"sentinels": addresses, "master_name": master_name,
                  "sentinel_password_file": paths["sentinel_password_file"], "password_file": paths["password_file"]},
        "state_file": paths["state_file"],
        "event_log": paths["event_log"],
        "listen": paths["listen"],
        "instances": instances,
    }
    if lb:
        # The pools as the role validated them, less what the role's templates add (the
        # upstream's name, derived from the pool's): the agent renders them with the same code.
        config["lb"] = dict(lb, pools=[{k: v for k, v in pool.items() if k != "upstream"} for pool in lb["pools"]])
    return {"errors": errors, "config": config}
