# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: nginx_lb_access
short_description: Check who may reach what through the load balancer
description:
  - Takes the client API keys of the P(inferops.sglang.nginx_lb#role) role and its route and limit settings, and returns
    every problem found (each naming the variable, never showing a key) and the normalized keys and routes the role
    renders its nginx maps and locations from.
  - A client key opens the client routes of every pool; the admin key opens the admin routes and nothing else; every
    other path is answered by nginx itself and never reaches an instance.
  - The logic lives in C(plugins/module_utils/_lb_access.py).
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: The client keys (C(nginx_lb_api_keys)), each with C(name), C(key), C(rate), C(burst), C(max_concurrent).
    type: list
    elements: dict
    required: true
  client_routes:
    description: C(nginx_lb_client_routes).
    type: list
    elements: dict
    required: true
  admin_routes:
    description: C(nginx_lb_admin_routes).
    type: list
    elements: dict
    default: []
  admin_api_key:
    description: C(nginx_lb_admin_api_key); empty disables the admin routes.
    type: str
    default: ""
  backend_api_key:
    description: C(nginx_lb_backend_api_key).
    type: str
    default: ""
  backend_admin_api_key:
    description: C(nginx_lb_backend_admin_api_key).
    type: str
    default: ""
  auth_enabled:
    description: C(nginx_lb_auth_enabled).
    type: bool
    default: true
  default_rate:
    description: C(nginx_lb_api_key_default_rate).
    type: str
    default: 20r/s
  default_burst:
    description: C(nginx_lb_api_key_default_burst).
    type: int
    default: 40
  default_max_concurrent:
    description: C(nginx_lb_api_key_default_max_concurrent).
    type: int
    default: 64
  anonymous_rate:
    description: C(nginx_lb_anonymous_rate).
    type: str
    default: 5r/s
  health_rate:
    description: C(nginx_lb_health_rate).
    type: str
    default: 10r/s
"""

EXAMPLES = r"""
- name: Refuse bad access settings before anything changes
  ansible.builtin.assert:
    that: nginx_lb_access.errors | length == 0
    fail_msg: "{{ nginx_lb_access.errors | join('; ') }}"
  vars:
    nginx_lb_access: "{{ nginx_lb_api_keys | inferops.sglang.nginx_lb_access(client_routes=nginx_lb_client_routes) }}"
"""

RETURN = r"""
_value:
  description: The result.
  type: dict
  contains:
    errors:
      description: Every problem found, each naming its variable. Empty when the settings are valid.
      type: list
      elements: str
    keys:
      description: One entry per client key with C(name), C(rate), C(burst), C(max_concurrent) (never the key itself).
      type: list
      elements: dict
    client_routes:
      description: The client routes, each C(path) and C(prefix).
      type: list
      elements: dict
    admin_routes:
      description: The admin routes (empty unless an admin key is set).
      type: list
      elements: dict
    admin_enabled:
      description: Whether an admin key is set.
      type: bool
"""

from ansible_collections.inferops.sglang.plugins.module_utils._lb_access import check_access


def nginx_lb_access(api_keys, client_routes, admin_routes=None, admin_api_key="", backend_api_key="",
                    backend_admin_api_key="", auth_enabled=True, default_rate="20r/s", default_burst=40,
                    default_max_concurrent=64, anonymous_rate="5r/s", health_rate="10r/s"):
    return check_access(api_keys, client_routes, admin_routes, admin_api_key, backend_api_key, backend_admin_api_key,
                        auth_enabled, default_rate, default_burst, default_max_concurrent, anonymous_rate, health_rate)


class FilterModule:
    def filters(self):
        return {"nginx_lb_access": nginx_lb_access}
