#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts with nvidia-smi
description:
  - Runs C(nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,driver_version,pci.bus_id
    --format=csv,noheader,nounits) and returns one dictionary per GPU.
  - Values that nvidia-smi cannot report (V([N/A]), V([Not Supported])) are returned as V(null).
  - Sets the fact C(inferops_gpus), the list the P(inferops.sglang.sglang_instance_plan#filter) filter takes.
  - The logic lives in C(plugins/module_utils/_gpu.py) so that the HA agent uses the same parser.
author:
  - inferops engineers (@inferops)
version_added: 0.1.0
options:
  binary:
    description:
      - Name or path of the nvidia-smi binary. A bare name is searched on E(PATH) and the usual sbin/bin directories.
    type: str
    default: nvidia-smi
  allow_missing:
    description:
      - When V(true), a host without nvidia-smi is not an error; the module returns O(ignore:gpu_count=0).
      - When nvidia-smi exists but fails (for example the driver is not loaded), the module fails regardless.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for nvidia-smi. A wedged GPU can make nvidia-smi hang.
    type: int
    default: 60
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; it runs the query in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
notes:
  - Read-only.
"""

EXAMPLES = r"""
- name: Find the GPUs of the host
  inferops.sglang.gpu_facts:
  register: gpu_info

- name: Show how many GPUs were found
  ansible.builtin.debug:
    msg: "{{ gpu_info.gpu_count }} GPUs, driver {{ gpu_info.driver_version }}"

- name: Hosts without a GPU (lab, CPU simulator) report zero GPUs instead of failing
  inferops.sglang.gpu_facts:
    allow_missing: true

- name: Use a nvidia-smi outside PATH
  inferops.sglang.gpu_facts:
    binary: /usr/local/nvidia/bin/nvidia-smi
"""

RETURN = r"""
gpus:
  description: One entry per GPU, sorted by index. Numbers are integers; fields the GPU cannot report are null.
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      uuid: GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a
      name: NVIDIA A100-SXM4-80GB
      memory_total_mib: 81920
      memory_used_mib: 4
      memory_free_mib: 81916
      utilization_gpu_pct: 0
      temperature_c: 31
      driver_version: "550.54.15"
      pci_bus_id: "00000000:07:00.0"
gpu_count:
  description: Number of GPUs found.
  returned: always
  type: int
  sample: 4
driver_version:
  description: NVIDIA driver version, null when there is no GPU.
  returned: always
  type: str
  sample: "550.54.15"
nvidia_smi:
  description: Path of the nvidia-smi binary that was run, null when it was not found.
  returned: always
  type: str
  sample: /usr/bin/nvidia-smi
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    inferops_gpus:
      description: Same list as RV(gpus).
      type: list
      elements: dict
      returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.sglang.plugins.module_utils._gpu import (
    GpuQueryError,
    find_binary,
    query_gpus,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            binary=dict(type="str", default="nvidia-smi"),
            allow_missing=dict(type="bool", default=False),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    binary = module.params["binary"]
    try:
        # The subprocess runner of module_utils is used (not run_command) because a wedged
        # GPU can hang nvidia-smi and run_command has no timeout.
        result = query_gpus(binary, allow_missing=module.params["allow_missing"], timeout=module.params["timeout"])
    except GpuQueryError as exc:
        module.fail_json(msg=str(exc), gpus=[], gpu_count=0)

    module.exit_json(
        changed=False,
        nvidia_smi=find_binary(binary),
        ansible_facts={"inferops_gpus": result["gpus"]},
        **result
    )


if __name__ == "__main__":
    main()
