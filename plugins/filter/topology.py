# -*- coding: utf-8 -*-
# Copyright: inferops engineers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Filter: load-balancer pools from the GPU nodes' instance plans."""

from __future__ import annotations

DOCUMENTATION = r"""
name: sglang_lb_pools
author: inferops engineers (@inferops)
short_description: Build nginx_lb pools from the GPU nodes' SGLang instance plans
description:
  - Takes the inventory names of the GPU nodes and C(hostvars), reads each node's
    C(sglang_plan) and C(sglang_service_address) facts (set by the P(inferops.sglang.sglang#role)
    role), and returns one pool per deployment with one primary server per instance.
options:
  _input:
    description: Inventory names of the GPU nodes, e.g. C(groups['sglang_nodes']).
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  overrides:
    description: Extra pool keys per pool name (balance method, max_fails, ...).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Pools for the load balancer
  ansible.builtin.set_fact:
    nginx_lb_pools: "{{ groups['sglang_nodes'] | inferops.sglang.sglang_lb_pools(hostvars) }}"
"""

RETURN = r"""
_value:
  description: Pools in the form the nginx_lb role takes (C(nginx_lb_pools)).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.sglang.plugins.module_utils._topology import (
    TopologyError,
    pools_from_plans,
)


def sglang_lb_pools(node_names, hostvars, overrides=None):
    nodes = []
    for name in node_names:
        facts = hostvars.get(name, {})
        nodes.append({
            "name": name,
            "address": facts.get("sglang_service_address", ""),
            "plan": facts.get("sglang_plan"),
        })
    try:
        return pools_from_plans(nodes, overrides or {})
    except TopologyError as exc:
        raise AnsibleFilterError("sglang_lb_pools: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {"sglang_lb_pools": sglang_lb_pools}
