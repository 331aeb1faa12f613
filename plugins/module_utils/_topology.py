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


class TopologyError(ValueError):
    """Raised when the GPU nodes' plans cannot form pools; the message names the node."""


def pool_name_for(deployment):
    """nginx pool names allow [a-z0-9_]; deployment names use dashes."""
    return deployment.replace("-", "_")


def pools_from_plans(nodes, pool_overrides=None):
    """Build pools from ``nodes``: a list of ``{"name", "address", "plan"}`` dicts.

    ``plan`` is a node's instance plan (a list of instances with ``deployment`` and
    ``host_port``).  ``pool_overrides`` maps a pool name to extra pool keys (balance method,
    max_fails, ...).  Pools and servers come out in a stable order (nodes in the order given,
    instances in plan order) so the rendered nginx files do not change between runs.
    """
    overrides = pool_overrides or {}
    pools = {}
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
        for instance in plan:
            pool = pool_name_for(instance["deployment"])
            if pool not in pools:
                pools[pool] = []
                order.append(pool)
            pools[pool].append({
                "address": "%s:%d" % (address, int(instance["host_port"])),
                "state": "primary",
            })
    result = []
    for pool in order:
        entry = {"name": pool, "servers": pools[pool]}
        entry.update(overrides.get(pool, {}))
        result.append(entry)
    return result
