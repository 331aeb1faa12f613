# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: sglang_api_profile
short_description: The paths and flags of an SGLang release
description:
  - Maps an SGLang release (C(sglang_version)) to what it serves, from C(plugins/module_utils/_sglang_api.py), the one
    place the role, the load balancer's health location, the probe module and the HA agent read.
  - C(/ready) and C(--admin-api-key) exist from 0.5.23 on; C(/health) and C(/health_generate) run a generation on every
    0.5.x.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: The release, for example V(0.5.6).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The container healthcheck path
  ansible.builtin.debug:
    msg: "{{ (sglang_version | inferops.sglang.sglang_api_profile).container_health_path }}"
"""

RETURN = r"""
_value:
  description:
    - C(version), C(deep_health_path), C(container_health_path), C(cheap_probe_path), C(cheap_probe_needs_key),
      C(ready_path) (null before 0.5.23), C(lb_health_path), C(admin_api_key) (bool), C(load_path),
      C(auth_exempt_prefixes).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.sglang.plugins.module_utils._sglang_api import ApiVersionError, api_profile


def sglang_api_profile(version, var_name="sglang_version"):
    try:
        return api_profile(version, var_name)
    except ApiVersionError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"sglang_api_profile": sglang_api_profile}
