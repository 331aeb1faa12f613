# -*- coding: utf-8 -*-
# Copyright: inferops engineers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Load-balancer pools from the instance plans of the GPU nodes.

The inventory is the single source of truth: each GPU node plans its instances
(``_instance_plan``), and the load balancer's pools are derived from those plans, one pool per
deployment name, one server per instance at the node's service address.  The HA agent derives
the same pools (and then changes server states), so this stays free of Ansible imports.
"""

from __future__ import annotations

from ansible_collections.inferops.sglang.plugins.module_utils._address import format_address, is_ip
from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import pool_name_for
from ansible_collections.inferops.sglang.plugins.module_utils._sglang_api import api_profile

# Every SGLang 0.5.x serves it (a real generation): what a pool of mixed or unknown releases asks.
COMMON_HEALTH_PATH = "/health"


class TopologyError(ValueError):
    """Raised when the GPU nodes' plans cannot form pools; the message names the node or the
    deployment variable."""


def health_path_for(versions):
    """What /lb/health asks a pool's instances: the cheapest path every one of them serves."""
    paths = {api_profile(v)["lb_health_path"] if v else COMMON_HEALTH_PATH for v in versions}
    return paths.pop() if len(paths) == 1 else COMMON_HEALTH_PATH


def pools_from_plans(nodes, pool_overrides=None):
    """Build pools from ``nodes``: a list of ``{"name", "address", "plan"}`` dicts.

    ``plan`` is a node's instance plan (a list of instances with ``deployment`` and
    ``host_port``).  ``pool_overrides`` maps a pool name to extra pool keys (balance method,
    max_fails, ...).  Pools and servers come out in a stable order (nodes in the order given,
    instances in plan order) so the rendered nginx files do not change between runs.
    """
    overrides = pool_overrides or {}
    pools = {}
    versions = {}
    modes = {}
    extras = {}
    order = []
    for node in nodes:
        name = node.get("name", "?")
        address = node.get("address") or ""
        plan = node.get("plan")
        if plan is None:
            raise TopologyError(
                "%s: no instance plan; run the sglang role on it in the same play run "
                "(or gather its facts) before the load balancer" % name)
        if plan and not address:
            raise TopologyError("%s: no service address (sglang_service_address is empty)" % name)
        if plan and not is_ip(address):
            raise TopologyError("%s: sglang_bind_address %r is not an IP address (nginx resolves names only at "
                                "start)" % (name, address))
        for instance in plan:
            pool = instance.get("pool") or pool_name_for(instance["deployment"])
            if pool not in pools:
                pools[pool] = []
                versions[pool] = set()
                modes[pool] = instance.get("mode", "active_active"), instance.get("deployment_path", "sglang_deployments")
                extras[pool] = {k: instance[k] for k in ("failback", "failback_hold_down") if k in instance}
                order.append(pool)
            elif instance.get("mode", "active_active") != modes[pool][0]:
                raise TopologyError("%s.mode: %s on %s, but %s elsewhere; a pool has one mode on every node" % (
                    instance.get("deployment_path", "sglang_deployments"), instance.get("mode"), name, modes[pool][0]))
            versions[pool].add(instance.get("sglang_version"))
            pools[pool].append({
                "address": format_address(address, int(instance["host_port"])),
                "state": "primary",
                "node": name,
                "instance": instance.get("name"),
            })
    result = []
    for pool in order:
        mode, path = modes[pool]
        nodes_of_pool = sorted({server["node"] for server in pools[pool]})
        if mode == "active_standby" and len(nodes_of_pool) < 2:
            raise TopologyError("%s.mode: active_standby needs instances on at least two nodes; pool %s has them on %s "
                                "only" % (path, pool, ", ".join(nodes_of_pool)))
        entry = {"name": pool, "mode": mode, "servers": pools[pool], "health_path": health_path_for(versions[pool])}
        entry.update(extras[pool])
        entry.update(overrides.get(pool, {}))
        result.append(entry)
    return result
