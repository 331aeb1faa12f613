# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: redis_current_master
short_description: Which Redis host is the master now, from what every host's Sentinel and Redis report
description:
  - The P(inferops.sglang.redis#role) role's rule for the master it points replicas at, from
    C(plugins/module_utils/_redis.py).
  - 1. The address most Sentinels name (after a failover this is the promoted replica; the role follows it, never the
    inventory). 2. Before any Sentinel monitors the set, the master the running replicas follow. 3. Otherwise
    (bootstrap) the inventory's bootstrap master.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description:
      - One entry per Redis host, with C(host) (inventory name), C(address) (C(host:port) the others reach it at),
        C(sentinel_master) (C(host:port) its Sentinel names, or null) and C(replica_of) (C(host:port) its Redis
        follows, or null).
    type: list
    elements: dict
    required: true
  bootstrap_host:
    description: The inventory host that is master when nothing runs yet (C(redis_master_host)).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Work out the current master
  ansible.builtin.set_fact:
    redis_current_master: "{{ nodes | inferops.sglang.redis_current_master(bootstrap_host=redis_master_host) }}"
  vars:
    nodes:
      - {host: redis-1, address: "10.0.0.31:6379", sentinel_master: "10.0.0.32:6379", replica_of: "10.0.0.32:6379"}
      - {host: redis-2, address: "10.0.0.32:6379", sentinel_master: "10.0.0.32:6379", replica_of: null}
"""

RETURN = r"""
_value:
  description:
    - C(host) (inventory name, empty when the winning address is no inventory host's), C(address), C(source)
      (V(sentinel), V(replicas) or V(inventory)) and C(detail) (every answer).
  type: dict
"""

from ansible_collections.inferops.sglang.plugins.module_utils._redis import current_master


def redis_current_master(nodes, bootstrap_host):
    return current_master(nodes, bootstrap_host)


class FilterModule:
    def filters(self):
        return {"redis_current_master": redis_current_master}
