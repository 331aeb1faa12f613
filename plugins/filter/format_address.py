# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: format_address
short_description: Write a host and a port the way the collection writes every address
description:
  - C(host:port), with brackets around an IPv6 address (C([fd00::5]:9090)), from C(plugins/module_utils/_address.py), the
    one definition the instance plan, the load balancer, the agents and the monitoring role share.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input, port
options:
  _input:
    description: The host (an address or a name).
    type: str
    required: true
  port:
    description: The port.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: The Prometheus address
  ansible.builtin.debug:
    msg: "{{ '10.0.0.5' | inferops.sglang.format_address(9090) }}"   # 10.0.0.5:9090
"""

RETURN = r"""
_value:
  description: C(host:port).
  type: str
"""

from ansible_collections.inferops.sglang.plugins.module_utils._address import format_address


class FilterModule:
    def filters(self):
        return {"format_address": format_address}
