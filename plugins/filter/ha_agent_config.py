# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: ha_agent_config
short_description: Build the HA agent's configuration from the inventory's decisions
description:
  - Builds the JSON configuration the P(inferops.sglang.ha_agent#role) role writes for C(inferops-agent) on one host, and
    checks the timings (a lease must outlive three loops; the leader's margin must leave a loop before its TTL).
  - The instances come from the node's instance plan, the load balancer's servers from its pools; the agent decides
    their live state and never which exist.
  - The logic lives in C(plugins/module_utils/_agent_config.py).
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: The host's inventory name.
    type: str
    required: true
  timing:
    description: Timings, keyed C(loop), C(lease_ttl), C(lease_margin), C(cheap_timeout), C(deep_interval), C(deep_timeout),
      C(fall), C(rise), C(start_timeout), C(backoff_min), C(backoff_max), C(record_ttl), C(wait_replicas).
    type: dict
    required: true
  sentinels:
    description: Sentinel addresses, C(host:port).
    type: list
    elements: str
    required: true
  paths:
    description: C(sentinel_password_file), C(password_file), C(state_file), C(event_log), C(listen).
    type: dict
    required: true
  plan:
    description: The node's instance plan (C(sglang_plan)); empty on a load balancer.
    type: list
    elements: dict
  service_address:
    description: The node's service address (C(sglang_service_address)).
    type: str
  pools:
    description: The pools made from every GPU node's plan (C(sglang_lb_pools)).
    type: list
    elements: dict
  lb:
    description: On a load balancer, C(pools) (normalized), C(upstreams_dir), C(test_command), C(reload_command).
    type: dict
  master_name:
    description: The name the Sentinels monitor the Redis set under.
    type: str
    default: inferops
"""

EXAMPLES = r"""
- name: Check the agent's configuration
  ansible.builtin.assert:
    that: ha_agent_built.errors | length == 0
    fail_msg: "{{ ha_agent_built.errors | join('; ') }}"
  vars:
    ha_agent_built: "{{ inventory_hostname | inferops.sglang.ha_agent_config(timing=t, sentinels=s, paths=p) }}"
"""

RETURN = r"""
_value:
  description: C(errors) (each naming an ha_agent variable) and C(config) (the JSON document).
  type: dict
"""

from ansible_collections.inferops.sglang.plugins.module_utils._agent_config import agent_config


def ha_agent_config(node, timing, sentinels, paths, plan=None, service_address=None, pools=None, lb=None,
                    master_name="inferops"):
    return agent_config(node, timing, sentinels, paths, plan, service_address, pools, lb, master_name)


class FilterModule:
    def filters(self):
        return {"ha_agent_config": ha_agent_config}
