#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: code_bundle
short_description: Pack a directory of Python files into one reproducible zip that Python imports from
description:
  - Writes the C(*.py) files of O(src) into one zip as the package O(package), with an empty C(__init__.py) in
    every package above it, so that a Python with the zip on C(sys.path) imports them (zipimport).
  - The zip is reproducible (sorted names, a fixed timestamp and mode), so the same files give the same bytes, and
    O(dest) is only rewritten when they differ.
  - The C(ha_agent) role runs it on the controller to ship the collection's module_utils to every host as one
    file, where copying them one by one cost a round trip per file on every run.
  - The logic lives in C(plugins/module_utils/_code_bundle.py).
author:
  - inferops engineers (@inferops)
version_added: 0.1.0
options:
  src:
    description: The directory whose C(*.py) files are packed (not recursive).
    type: path
    required: true
  package:
    description: The dotted package name the files get in the zip, for example V(ansible_collections.inferops.sglang.plugins.module_utils).
    type: str
    required: true
  dest:
    description: The zip to write. Its directory is created when missing.
    type: path
    required: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Run it where the files are (for the role, C(delegate_to=localhost) and C(run_once=true)).
"""

EXAMPLES = r"""
- name: Pack the collection's module_utils on the controller
  inferops.sglang.code_bundle:
    src: "{{ role_path }}/../../plugins/module_utils"
    package: ansible_collections.inferops.sglang.plugins.module_utils
    dest: ~/.cache/inferops.sglang/agent-code.zip
  delegate_to: localhost
  run_once: true
  register: bundle

- name: Ship it as one file
  ansible.builtin.copy:
    src: "{{ bundle.dest }}"
    dest: /opt/inferops/agent/lib/agent-code.zip
    mode: "0644"
"""

RETURN = r"""
dest:
  description: The zip's path.
  returned: always
  type: str
files:
  description: The names inside the zip.
  returned: success
  type: list
  elements: str
  sample: [ansible_collections/__init__.py, ansible_collections/inferops/sglang/plugins/module_utils/_probe.py]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.sglang.plugins.module_utils._code_bundle import (
    BundleError,
    package_zip,
    write_if_changed,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "package": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    try:
        data, names = package_zip(module.params["src"], module.params["package"])
        changed = write_if_changed(dest, data, write=not module.check_mode)
    except BundleError as error:
        module.fail_json(msg=str(error), dest=dest)
    except OSError as error:
        module.fail_json(msg=f"dest: cannot write {dest}: {error}", dest=dest)
    module.exit_json(changed=changed, dest=dest, files=names)


if __name__ == "__main__":
    main()
