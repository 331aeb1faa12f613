# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: monitoring_rules
short_description: The collection's alert rules with a site's own for durations
description:
  - Replaces the C(for:) of each alert named in O(overrides) in the text of the P(inferops.sglang.monitoring#role) role's
    rules file, line by line (comments and layout kept; without overrides the text comes back unchanged), through
    C(plugins/module_utils/_monitoring.py).
  - Returns C(text) and C(errors); each error names O(field) and the alert (an unknown alert, a bad duration, an alert
    without C(for:)).
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: The rules file's text.
    type: str
    required: true
  overrides:
    description: "Alert name to a Prometheus duration, for example C({SGLangEngineHung: 30s})."
    type: dict
    required: true
  field:
    description: The variable the errors name.
    type: str
    default: monitoring_alert_for
"""

EXAMPLES = r"""
- name: The rules with a shorter for on one alert
  ansible.builtin.set_fact:
    rules: "{{ lookup('ansible.builtin.file', 'inferops.rules.yml', rstrip=false) | inferops.sglang.monitoring_rules({'SGLangEngineHung': '30s'}) }}"
"""

RETURN = r"""
_value:
  description: C(text), the rules file as it is to be written, and C(errors), a list.
  type: dict
"""

from ansible_collections.inferops.sglang.plugins.module_utils._monitoring import rules_with_for


def monitoring_rules(rules_text, overrides, field="monitoring_alert_for"):
    return rules_with_for(rules_text, overrides, field=field)


class FilterModule:
    def filters(self):
        return {"monitoring_rules": monitoring_rules}
