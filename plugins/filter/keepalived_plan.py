# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: keepalived_plan
short_description: Plan the VRRP instance every load balancer runs for the shared virtual IP
description:
  - The P(inferops.sglang.keepalived#role) role's plan, from C(plugins/module_utils/_keepalived.py).
  - Every host starts as BACKUP with C(nopreempt) (the VIP never moves back on its own); priorities fall by 10 down the
    group's order; each host speaks VRRP unicast from its address to every other.
  - A host's address is its C(keepalived_unicast_src_ip), or its default IPv4 address.
  - "Errors name the variable, for example C(keepalived_vip: 10.0.1.5/24 is not on lb-2's network (its address 10.0.0.12))."
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: The load balancers' inventory names, in priority order (C(groups[keepalived_group])).
    type: list
    elements: str
    required: true
  hostvars:
    description: C(hostvars), for each host's address.
    type: dict
    required: true
  vip:
    description: The virtual IP.
    type: str
    required: true
  vip_prefix:
    description: Its prefix length.
    type: int
    required: true
  virtual_router_id:
    description: The VRRP id (1-255).
    type: int
    required: true
  interface:
    description: The interface the VIP lives on.
    type: str
  auth_pass:
    description: The optional VRRP PASS password.
    type: str
"""

EXAMPLES = r"""
- name: Plan the VIP
  ansible.builtin.set_fact:
    plan: "{{ groups['lb_nodes'] | inferops.sglang.keepalived_plan(hostvars, vip='10.0.0.100', vip_prefix=24, virtual_router_id=51) }}"
"""

RETURN = r"""
_value:
  description: C(errors) (a list), C(vip) (C(address/prefix)) and C(hosts), per host C(priority), C(src), C(peers), C(router_id).
  type: dict
"""

from ansible_collections.inferops.sglang.plugins.module_utils._keepalived import plan_vrrp


def keepalived_plan(names, hostvars, vip, vip_prefix, virtual_router_id, interface=None, auth_pass=""):
    hosts = []
    for name in names:
        facts = hostvars.get(name, {})
        address = facts.get("keepalived_unicast_src_ip") or (facts.get("ansible_facts", {}).get("default_ipv4") or {}).get(
            "address", "")
        hosts.append({"name": name, "address": address})
    return plan_vrrp(hosts, vip, vip_prefix, virtual_router_id, interface=interface, auth_pass=auth_pass)


class FilterModule:
    def filters(self):
        return {"keepalived_plan": keepalived_plan}
