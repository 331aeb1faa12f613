# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: sglang_container_label
short_description: The name of a label the collection puts on every SGLang instance container
description:
  - The labels are defined once, in C(plugins/module_utils/_instance_plan.py); the plan
    (P(inferops.sglang.sglang_instance_plan#filter)) puts them on each instance, and the role's clean-up, the HA agent and
    the tests find instances by them.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: Which label.
    type: str
    required: true
    choices: [managed, deployment, pool, model, gpus, start_order]
"""

EXAMPLES = r"""
- name: List the containers the sglang role manages
  ansible.builtin.command:
    argv: [docker, ps, --filter, "label={{ 'managed' | inferops.sglang.sglang_container_label }}=true"]
  changed_when: false
"""

RETURN = r"""
_value:
  description: The label's name, for example C(inferops.sglang.managed).
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import LABELS


def sglang_container_label(which):
    if which not in LABELS:
        raise AnsibleFilterError("sglang_container_label: %r is no label; one of %s" % (which, ", ".join(sorted(LABELS))))
    return LABELS[which]


class FilterModule:
    def filters(self):
        return {"sglang_container_label": sglang_container_label}
