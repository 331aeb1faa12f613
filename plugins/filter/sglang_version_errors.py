# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: sglang_version_errors
short_description: Check an SGLang version setting against the image and the admin key
description:
  - Returns every problem with C(sglang_version), each naming the variable the user wrote, for example an image tagged
    C(v0.5.23) while C(sglang_version) says 0.5.6, or C(sglang_admin_api_key) set for a release without
    C(--admin-api-key). Empty when the settings agree.
  - The logic lives in C(plugins/module_utils/_sglang_api.py).
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: C(sglang_version).
    type: str
    required: true
  image:
    description: C(sglang_image); a tag naming a release must name this one.
    type: str
  admin_api_key:
    description: C(sglang_admin_api_key) (only whether it is set matters; it is never shown).
    type: str
"""

EXAMPLES = r"""
- name: Refuse a version that disagrees with the image
  ansible.builtin.assert:
    that: errors | length == 0
    fail_msg: "{{ errors | join('; ') }}"
  vars:
    errors: "{{ sglang_version | inferops.sglang.sglang_version_errors(image=sglang_image) }}"
"""

RETURN = r"""
_value:
  description: The problems found, each naming its variable; empty when there are none.
  type: list
  elements: str
"""

from ansible_collections.inferops.sglang.plugins.module_utils._sglang_api import version_errors


def sglang_version_errors(version, image=None, admin_api_key=None):
    return version_errors(version, image=image, admin_api_key=admin_api_key)


class FilterModule:
    def filters(self):
        return {"sglang_version_errors": sglang_version_errors}
