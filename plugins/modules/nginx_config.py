#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nginx_config
short_description: Write nginx configuration files as one change, checked with nginx -t and rolled back when refused
description:
  - Writes every file that differs, then runs O(test_command) once on the whole new configuration. When nginx refuses
    it, every file is put back as it was (new files removed) before the module fails with nginx's message, so a running
    nginx never gets a configuration it cannot load, and a later restart never finds one.
  - Removes the files in O(remove) in the same change.
  - The module does not reload nginx; notify a handler on change.
  - The sequence lives in C(plugins/module_utils/_nginx_apply.py), which the HA agent uses to apply the upstream files it
    renders; one implementation for both.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
options:
  files:
    description: The files.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description: The file's content (shown in C(--diff)).
        type: str
      secret_content:
        description: The content of a file that holds secrets; never shown, never returned. Give this or O(files[].content).
        type: str
      mode:
        description: Octal mode, for example V("0640").
        type: str
        default: "0644"
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      create_only:
        description: Write the file only when it is absent (another owner keeps it up to date once it exists).
        type: bool
        default: false
  remove:
    description: Files to remove in the same change.
    type: list
    elements: path
    default: []
  test_command:
    description: The check of the whole configuration.
    type: list
    elements: str
    default: [nginx, -t]
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Files given as O(files[].secret_content) appear in the diff by path only.
"""

EXAMPLES = r"""
- name: Write the configuration and check it as a whole
  inferops.sglang.nginx_config:
    files:
      - path: /etc/nginx/inferops/lb.conf
        content: "{{ lookup('ansible.builtin.template', 'lb.conf.j2') }}"
      - path: /etc/nginx/inferops/api-keys.conf
        secret_content: "{{ lookup('ansible.builtin.template', 'api-keys.conf.j2') }}"
        mode: "0640"
        group: www-data
    remove: [/etc/nginx/inferops/limit-req.inc]
  notify: Reload nginx
"""

RETURN = r"""
changed_files:
  description: The paths written or removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.sglang.plugins.module_utils._nginx_apply import (
    ApplyError,
    apply_files,
    plan_changes,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True, "options": {
                "path": {"type": "path", "required": True},
                "content": {"type": "str"},
                "secret_content": {"type": "str", "no_log": True},
                "mode": {"type": "str", "default": "0644"},
                "owner": {"type": "str", "default": "root"},
                "group": {"type": "str", "default": "root"},
                "create_only": {"type": "bool", "default": False},
            }, "mutually_exclusive": [("content", "secret_content")], "required_one_of": [("content", "secret_content")]},
            "remove": {"type": "list", "elements": "path", "default": []},
            "test_command": {"type": "list", "elements": "str", "default": ["nginx", "-t"]},
        },
        supports_check_mode=True,
    )
    specs = {}
    secret = set()
    for item in module.params["files"]:
        try:
            mode = int(item["mode"], 8)
        except ValueError:
            module.fail_json(msg="files[].mode: %r is not an octal mode (path %s)" % (item["mode"], item["path"]))
        content = item["content"] if item["content"] is not None else item["secret_content"]
        if item["secret_content"] is not None:
            secret.add(item["path"])
        specs[item["path"]] = {"content": content, "mode": mode, "owner": item["owner"], "group": item["group"],
                               "create_only": item["create_only"]}
    changes = plan_changes(specs, module.params["remove"])
    diff = []
    for path, (old, new) in sorted(changes.items()):
        if path in secret:
            diff.append({"before_header": path, "after_header": path, "before": "(secret, not shown)\n",
                         "after": "(secret, changed)\n"})
        else:
            diff.append({"before_header": path, "after_header": path, "before": old or "", "after": new or ""})
    result = {"changed": bool(changes), "changed_files": sorted(changes)}
    if module._diff:
        result["diff"] = diff
    if module.check_mode or not changes:
        module.exit_json(**result)
    try:
        apply_files(specs, module.params["test_command"], remove=module.params["remove"])
    except (ApplyError, OSError, KeyError) as exc:
        module.fail_json(msg=str(exc), changed=False, changed_files=[])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
