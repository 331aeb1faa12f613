# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: sglang_instance_plan
short_description: Plan the SGLang instances of a host from its deployments and GPUs
description:
  - Turns a list of deployments into one entry per SGLang instance, in start order, with GPU device ids, host port and
    the C(--mem-fraction-static) that gives every instance sharing a GPU an equal share of its memory.
  - SGLang takes C(--mem-fraction-static) of the memory free when it starts, so with k instances on a GPU group and
    C(share = memory_fraction / k), the j-th started (j from 0) gets C(share / (1 - j * share)).
  - The plan is computed from total GPU memory, never from current free memory, so it is the same on every run.
  - "Errors name the variable path, for example C(sglang_deployments[0].tp_size: 3 does not divide the 4 GPUs assigned (0,1,2,3))."
  - The logic lives in C(plugins/module_utils/_instance_plan.py), shared with the HA agent.
author:
  - inferops engineers (@inferops)
version_added: 0.1.0
positional: _input
options:
  _input:
    description:
      - The deployments. Each is a dictionary with C(name) (required, C([a-z0-9-])), C(model) (required, the model
        directory name in the cache), C(base_port) (required, port of the first instance; instance i from 0 gets
        C(base_port + i)), C(gpus) (GPU indices; default all GPUs of the host; V([]) for no GPU), C(tp_size)
        (default 1), C(instances_per_gpu) (default 1), C(instances) (instance count for a deployment without GPUs),
        C(memory_fraction) (default 0.85, in (0, 1]), C(extra_args) (list, passed through) and
        C(served_model_name) (passed through).
      - A host without GPUs (O(gpus) empty) can still run instances. Set C(gpus=[]) or C(instances=N) on the
        deployment; those instances get empty C(device_ids).
    type: list
    elements: dict
    required: true
  gpus:
    description:
      - The GPUs of the host, as returned by P(inferops.sglang.gpu_facts#module) (C(inferops_gpus)). Each needs C(index);
        C(uuid) is copied into the plan.
    type: list
    elements: dict
    default: []
  container_port:
    description: Port SGLang listens on inside each container.
    type: int
    default: 30000
  name_prefix:
    description: Prefix of the instance (container) names.
    type: str
    default: sglang
  var_name:
    description: Variable name used at the start of error messages.
    type: str
    default: sglang_deployments
  version:
    description:
      - The SGLang release the instances run (C(sglang_version)); checked, and copied into every instance as
        C(sglang_version) so what is built from the plan (the load balancer's health path) knows it.
    type: str
  known_models:
    description:
      - The model names the host's cache holds (C(model_cache_models[].name)). A deployment naming another model fails,
        naming C(sglang_deployments[i].model). Not checked when omitted.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Plan the instances of this host
  ansible.builtin.set_fact:
    sglang_plan: >-
      {{ sglang_deployments | inferops.sglang.sglang_instance_plan(gpus=inferops_gpus,
         container_port=30000, name_prefix='sglang') }}
  vars:
    sglang_deployments:
      - name: chat            # 2 instances with tp 2 on GPUs 0-3
        model: tiny-chat
        gpus: [0, 1, 2, 3]
        tp_size: 2
        base_port: 30001
      - name: embed           # 2 instances sharing GPU 4
        model: tiny-embed
        gpus: [4]
        instances_per_gpu: 2
        base_port: 30101

- name: Lab host without GPUs, two simulated instances
  ansible.builtin.set_fact:
    sglang_plan: "{{ [{'name': 'chat', 'model': 'tiny-chat', 'instances': 2, 'base_port': 30001}]
                     | inferops.sglang.sglang_instance_plan(gpus=[]) }}"
"""

RETURN = r"""
_value:
  description: One dictionary per instance, sorted by start order (every first instance of a GPU group, then every second, ...).
  type: list
  elements: dict
  contains:
    name:
      description: C(<prefix>-<deployment>-<n>), n from 1.
      type: str
    deployment:
      description: Deployment name.
      type: str
    model:
      description: Model directory name.
      type: str
    served_model_name:
      description: From the deployment, null when not set.
      type: str
    host_port:
      description: Host port.
      type: int
    container_port:
      description: Port inside the container.
      type: int
    device_ids:
      description: GPU indices as strings (for C(device_requests)); empty without GPUs.
      type: list
      elements: str
    gpu_uuids:
      description: GPU UUIDs in the same order.
      type: list
      elements: str
    tp_size:
      description: Tensor parallel size.
      type: int
    mem_fraction_static:
      description: The C(--mem-fraction-static) value, 3 decimals.
      type: float
    memory_share:
      description: Fraction of each GPU's total memory the instance ends up with.
      type: float
    start_order:
      description: 0 for the first instance on its GPU group, 1 for the second, ...
      type: int
    group:
      description: Index of the GPU group within the deployment.
      type: int
    extra_args:
      description: Passed through from the deployment.
      type: list
      elements: str
    sglang_version:
      description: The O(version) given, or null.
      type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import PlanError, plan_instances


def sglang_instance_plan(deployments, gpus=None, container_port=30000, name_prefix="sglang", var_name="sglang_deployments",
                         version=None, known_models=None):
    try:
        return plan_instances(deployments, gpus=gpus, container_port=container_port, name_prefix=name_prefix,
                              var_name=var_name, version=version, known_models=known_models)
    except PlanError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule:
    def filters(self):
        return {"sglang_instance_plan": sglang_instance_plan}
