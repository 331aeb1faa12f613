# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: monitoring_targets
short_description: What Prometheus scrapes, from the inventory
description:
  - The P(inferops.sglang.monitoring#role) role's file_sd targets, from C(plugins/module_utils/_monitoring.py), one job per
    kind of target (C(sglang), C(inferops_agent), C(nginx), C(redis), C(sentinel)), each labelled with the inventory's
    names (C(node), C(pool), C(sglang_instance)).
  - Instances come from the GPU nodes' plans (C(sglang_plan), C(sglang_service_address)), agents from C(ha_agent_listen),
    exporters from each host's default IPv4 address.
  - "Errors name the variable, for example an agent listening on loopback (C(ha_agent_listen on gpu-1: 127.0.0.1:9464 listens
    on loopback ...))."
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: C(groups), the inventory's groups.
    type: dict
    required: true
  hostvars:
    description: C(hostvars).
    type: dict
    required: true
  sglang_group:
    description: The GPU nodes' group.
    type: str
    default: sglang_nodes
  lb_group:
    description: The load balancers' group.
    type: str
    default: lb_nodes
  redis_group:
    description: The Redis hosts' group.
    type: str
    default: redis_nodes
  ports:
    description: C(nginx_exporter), C(redis_exporter), C(sentinel_exporter).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Work out the targets
  ansible.builtin.set_fact:
    targets: "{{ groups | inferops.sglang.monitoring_targets(hostvars, ports={'nginx_exporter': 9113, 'redis_exporter': 9121,
                 'sentinel_exporter': 9355}) }}"
"""

RETURN = r"""
_value:
  description:
    - C(errors) (a list) and C(jobs), per job a list of file_sd entries (C(targets), C(labels)).
    - C(left_out), the scraped hosts this run does not know (not in its C(--limit), or a GPU node without an instance
      plan); when it is not empty, C(jobs) is empty, since targets made from part of the fleet would drop the rest.
  type: dict
"""

from ansible_collections.inferops.sglang.plugins.module_utils._monitoring import scrape_targets


def _address(facts):
    """Where a host's exporters listen: its monitoring_exporter_address, or its default IPv4 address."""
    return facts.get("monitoring_exporter_address") or (facts.get("ansible_facts", {}).get("default_ipv4") or {}).get(
        "address", "")


def _agent_listen(facts):
    """None when the host runs no agent; "" when it runs one on its default (loopback) address."""
    if not facts.get("inferops_ha_agent_enabled", True):
        return None
    return facts.get("ha_agent_listen", "")


def _known(facts, needs_plan=False):
    """Whether this run knows the host: its facts were gathered (it is in the run's --limit), and for a GPU node its
    instance plan was made (site.yml's preflight)."""
    if not facts.get("ansible_facts"):
        return False
    return not needs_plan or facts.get("sglang_plan") is not None


def monitoring_targets(groups, hostvars, ports, sglang_group="sglang_nodes", lb_group="lb_nodes",
                       redis_group="redis_nodes"):
    members = [(name, group == sglang_group) for group in (sglang_group, lb_group, redis_group)
               for name in groups.get(group, [])]
    left_out = sorted({name for name, is_gpu in members if not _known(hostvars.get(name, {}), needs_plan=is_gpu)})
    if left_out:
        # Rendering targets from part of the fleet would drop the rest from Prometheus: the caller keeps what it has.
        return {"errors": [], "jobs": {}, "left_out": left_out}
    gpu, lbs, redis = [], [], []
    for name in groups.get(sglang_group, []):
        facts = hostvars.get(name, {})
        gpu.append({"name": name, "address": facts.get("sglang_service_address", ""), "plan": facts.get("sglang_plan"),
                    "agent_listen": _agent_listen(facts)})
    for name in groups.get(lb_group, []):
        facts = hostvars.get(name, {})
        lbs.append({"name": name, "address": _address(facts), "agent_listen": _agent_listen(facts)})
    for name in groups.get(redis_group, []):
        redis.append({"name": name, "address": _address(hostvars.get(name, {}))})
    return dict(scrape_targets(gpu, lbs, redis, ports), left_out=[])


class FilterModule:
    def filters(self):
        return {"monitoring_targets": monitoring_targets}
