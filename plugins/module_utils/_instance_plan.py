# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Instance planning: which SGLang containers a host runs, on which GPUs and ports.

Shared by the ``sglang_instance_plan`` filter (the ``sglang`` role) and the HA
agent. No Ansible imports; Python 3.9+.

Deployment keys (one dict per deployment, in ``sglang_deployments``):

``name`` (required)
    ``[a-z0-9-]``; instance names are ``<prefix>-<name>-<n>``, n from 1.
``model`` (required)
    Directory name of the model under the host's model cache.
``base_port`` (required)
    Host port of the first instance; instance i (0-based) gets ``base_port + i``.
``gpus``
    GPU indices the deployment uses. Default: every GPU of the host. ``[]``
    means "no GPU" (CPU simulator, lab hosts).
``tp_size`` (default 1)
    GPUs per instance. The deployment's GPUs are cut into consecutive groups
    of ``tp_size``; it must divide their number.
``instances_per_gpu`` (default 1)
    How many instances share each GPU group.
``instances``
    Instance count for a deployment without GPUs (``gpus: []``, or a host
    where gpu_facts found none). Not allowed when GPUs are assigned.
``memory_fraction`` (default 0.85)
    Fraction of each GPU's total memory that the instances sharing it may take
    together.
``extra_args`` (default [])
    Extra ``launch_server`` arguments, passed through.
``served_model_name``
    Passed through (None when not set).
``mode`` (default ``active_active``)
    How the load balancer uses the deployment's pool: ``active_active`` (every healthy
    instance is primary, least connections) or ``active_standby`` (one node's instances are
    primary, the others Nginx ``backup``; the leader holds a lease in Redis).
``failback`` (default ``off``), ``failback_hold_down`` (seconds, default 300)
    ``auto``: a recovered preferred leader (the first node in the inventory with the pool)
    takes the lease back through a checked switchover once it has been healthy for the
    hold-down. Active-standby only.

Memory arithmetic: SGLang's ``--mem-fraction-static`` is a fraction of the
memory *free when the instance starts*. With k instances on a group and
``share = memory_fraction / k`` of total memory for each, the j-th one started
(j from 0) sees ``1 - j*share`` of the memory free, so it must ask for
``share / (1 - j*share)``. The plan uses total memory, never current free
memory, so it is the same on every run.
"""

from __future__ import annotations

import re

from ansible_collections.inferops.sglang.plugins.module_utils._sglang_api import ApiVersionError, api_profile

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
KNOWN_KEYS = frozenset((
    "name", "model", "base_port", "gpus", "tp_size", "instances_per_gpu", "instances",
    "memory_fraction", "extra_args", "served_model_name", "mode", "failback", "failback_hold_down",
))
MODES = ("active_active", "active_standby")
FAILBACK = ("off", "auto")
# Labels on every instance container: the role's clean-up and the HA agent find instances by them.
LABELS = {
    "managed": "inferops.sglang.managed",
    "deployment": "inferops.sglang.deployment",
    "pool": "inferops.sglang.pool",
    "model": "inferops.sglang.model",
    "gpus": "inferops.sglang.gpus",
    "start_order": "inferops.sglang.start-order",
}
POOL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def pool_name_for(deployment):
    """The load balancer pool (and nginx upstream) a deployment becomes: dashes turn into underscores."""
    return deployment.replace("-", "_")


DEFAULT_MEMORY_FRACTION = 0.85
# Below 1% of a GPU per instance there is no room for weights plus KV cache; such a
# plan is a typo (instances_per_gpu: 100), not a layout.
MIN_SHARE = 0.01
MAX_NAME_LEN = 63


class PlanError(ValueError):
    """Invalid deployment data; the message starts with the variable path."""

    def __init__(self, path, message):
        self.path = path
        self.detail = message
        super().__init__("%s: %s" % (path, message))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value, path, minimum=None, maximum=None):
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        # Inventory values typed on the command line (-e) arrive as strings.
        value = int(value)
    if not _is_int(value):
        raise PlanError(path, "%r is not an integer" % (value,))
    if minimum is not None and value < minimum:
        raise PlanError(path, "%d is below the minimum %d" % (value, minimum))
    if maximum is not None and value > maximum:
        raise PlanError(path, "%d is above the maximum %d" % (value, maximum))
    return value


def mem_fractions(instances, memory_fraction=DEFAULT_MEMORY_FRACTION):
    """``--mem-fraction-static`` for each of ``instances`` started one after another on one GPU group.

    Unrounded; callers round for the command line.
    """
    share = float(memory_fraction) / instances
    return [share / (1.0 - j * share) for j in range(instances)]


def _host_gpus(gpus, gpus_var):
    by_index = {}
    for pos, gpu in enumerate(gpus or []):
        path = "%s[%d]" % (gpus_var, pos)
        if not isinstance(gpu, dict):
            raise PlanError(path, "must be a GPU dict from gpu_facts, got %r" % (gpu,))
        index = _int(gpu.get("index"), path + ".index", minimum=0)
        if index in by_index:
            raise PlanError(path + ".index", "GPU %d is listed twice" % index)
        by_index[index] = gpu
    return by_index


def _fmt_indices(indices):
    return ",".join(str(i) for i in indices)


def _validate_deployment(dep, path, host):
    if not isinstance(dep, dict):
        raise PlanError(path, "must be a dict, got %r" % (dep,))
    unknown = sorted(set(dep) - KNOWN_KEYS)
    if unknown:
        raise PlanError(path, "unknown key(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(KNOWN_KEYS))))
    for key in ("name", "model", "base_port"):
        if dep.get(key) is None:
            raise PlanError("%s.%s" % (path, key), "is required")
    name = dep["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PlanError(path + ".name", "%r must match [a-z0-9-] (lower case, digits, inner dashes)" % (name,))
    if not POOL_NAME_RE.match(pool_name_for(name)):
        # The name becomes the load balancer's pool (nginx names): say so here, not later at the LB.
        raise PlanError(path + ".name", "%r must start with a letter and have at most 32 characters: it becomes "
                                        "the load balancer pool %r" % (name, pool_name_for(name)))
    mode = dep.get("mode", "active_active")
    if mode not in MODES:
        raise PlanError(path + ".mode", "%r is not a mode (expected one of %s)" % (mode, ", ".join(MODES)))
    failback = dep.get("failback", "off")
    if failback not in FAILBACK:
        raise PlanError(path + ".failback", "%r must be one of %s" % (failback, ", ".join(FAILBACK)))
    if failback == "auto" and mode != "active_standby":
        raise PlanError(path + ".failback", "auto only applies to mode active_standby")
    hold_down = _int(dep.get("failback_hold_down", 300), path + ".failback_hold_down", minimum=0)
    model = dep["model"]
    if not isinstance(model, str) or not model.strip() or "/" in model or model in (".", ".."):
        raise PlanError(path + ".model", "%r must be the name of a directory in the model cache (no '/')" % (model,))

    tp_size = _int(dep.get("tp_size", 1), path + ".tp_size", minimum=1)
    per_gpu = _int(dep.get("instances_per_gpu", 1), path + ".instances_per_gpu", minimum=1)
    fraction = dep.get("memory_fraction", DEFAULT_MEMORY_FRACTION)
    if isinstance(fraction, str):
        try:
            fraction = float(fraction)
        except ValueError:
            pass
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise PlanError(path + ".memory_fraction", "%r is not in (0, 1]" % (fraction,))
    fraction = float(fraction)
    extra_args = dep.get("extra_args", []) or []
    if not isinstance(extra_args, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in extra_args):
        raise PlanError(path + ".extra_args", "must be a list of strings, got %r" % (extra_args,))
    served = dep.get("served_model_name")
    if served is not None and (not isinstance(served, str) or not served):
        raise PlanError(path + ".served_model_name", "must be a non-empty string, got %r" % (served,))

    # Which GPUs, and how many instances without GPUs.
    instances = dep.get("instances")
    if "gpus" in dep and dep["gpus"] is not None:
        raw = dep["gpus"]
        if not isinstance(raw, list):
            raise PlanError(path + ".gpus", "must be a list of GPU indices, got %r" % (raw,))
        indices = []
        for pos, item in enumerate(raw):
            index = _int(item, "%s.gpus[%d]" % (path, pos), minimum=0)
            if index not in host:
                raise PlanError("%s.gpus[%d]" % (path, pos), "GPU %d is not on this host (GPUs found: %s)" % (
                    index, _fmt_indices(sorted(host)) or "none"))
            if index in indices:
                raise PlanError("%s.gpus[%d]" % (path, pos), "GPU %d is listed twice" % index)
            indices.append(index)
        explicit_gpus = True
    else:
        indices = sorted(host)
        explicit_gpus = False

    if indices:
        if instances is not None:
            raise PlanError(path + ".instances", "only for deployments without GPUs (gpus: []); "
                                                 "with GPUs use instances_per_gpu")
        if len(indices) % tp_size:
            raise PlanError(path + ".tp_size", "%d does not divide the %d GPUs assigned (%s)" % (
                tp_size, len(indices), _fmt_indices(indices)))
        groups = [indices[i:i + tp_size] for i in range(0, len(indices), tp_size)]
        count_per_group = per_gpu
    else:
        if not explicit_gpus and instances is None:
            raise PlanError(path + ".gpus", "the host has no GPUs (gpu_facts found none); set gpus: [] "
                                            "or instances: N to run instances without GPUs")
        count_per_group = _int(instances, path + ".instances", minimum=1) if instances is not None else per_gpu
        groups = [[]]

    share = fraction / count_per_group
    if share < MIN_SHARE:
        raise PlanError(path + ".instances_per_gpu" if indices or instances is None else path + ".instances",
                        "%d instances sharing %.3g of each GPU leave %.4f per instance (minimum %.2f)" % (
                            count_per_group, fraction, share, MIN_SHARE))
    base_port = _int(dep["base_port"], path + ".base_port", minimum=1, maximum=65535)
    total = len(groups) * count_per_group
    if base_port + total - 1 > 65535:
        raise PlanError(path + ".base_port", "%d instances from port %d run past 65535" % (total, base_port))

    return {
        "name": name, "model": model, "tp_size": tp_size, "groups": groups, "count_per_group": count_per_group,
        "fraction": fraction, "share": share, "base_port": base_port, "extra_args": [str(a) for a in extra_args],
        "served_model_name": served, "mode": mode, "failback": failback, "failback_hold_down": hold_down,
    }


def plan_instances(deployments, gpus=None, container_port=30000, name_prefix="sglang",
                   var_name="sglang_deployments", gpus_var="gpus", version=None, known_models=None,
                   models_var="model_cache_models"):
    """Return the instance plan (list of dicts in start order). Raises PlanError.

    ``version`` (the SGLang release the instances run) is checked and copied into every
    instance, so what is built from the plan (the load balancer's health path) knows it.
    ``known_models``, when given, is the list of model names the host's cache holds; a
    deployment naming any other model is refused under its own variable path.
    """
    if version is not None:
        try:
            api_profile(version)
        except ApiVersionError as exc:
            raise PlanError("sglang_version", str(exc).split(": ", 1)[1])
    if deployments is None:
        deployments = []
    if not isinstance(deployments, list):
        raise PlanError(var_name, "must be a list of deployments, got %r" % (type(deployments).__name__,))
    if not isinstance(name_prefix, str) or not NAME_RE.match(name_prefix):
        raise PlanError("name_prefix", "%r must match [a-z0-9-]" % (name_prefix,))
    container_port = _int(container_port, "container_port", minimum=1, maximum=65535)
    host = _host_gpus(gpus, gpus_var)

    names = {}
    gpu_owner = {}
    port_owner = {}
    planned = []
    for dpos, dep in enumerate(deployments):
        path = "%s[%d]" % (var_name, dpos)
        spec = _validate_deployment(dep, path, host)
        if known_models is not None and spec["model"] not in known_models:
            raise PlanError(path + ".model", "%r is not one of %s (%s); the instances would find no model directory" % (
                spec["model"], models_var, ", ".join(known_models) or "none"))
        if spec["name"] in names:
            raise PlanError(path + ".name", "deployment %r is already defined at %s" % (spec["name"], names[spec["name"]]))
        names[spec["name"]] = path
        for group in spec["groups"]:
            for index in group:
                if index in gpu_owner:
                    other_name, other_path = gpu_owner[index]
                    raise PlanError(path + ".gpus", "GPU %d is already used by deployment %r (%s)" % (
                        index, other_name, other_path))
        for group in spec["groups"]:
            for index in group:
                gpu_owner[index] = (spec["name"], path)

        fractions = mem_fractions(spec["count_per_group"], spec["fraction"])
        ordinal = 0
        for gpos, group in enumerate(spec["groups"]):
            for j in range(spec["count_per_group"]):
                number = ordinal + 1
                instance_name = "%s-%s-%d" % (name_prefix, spec["name"], number)
                if len(instance_name) > MAX_NAME_LEN:
                    raise PlanError(path + ".name", "instance name %r is longer than %d characters" % (
                        instance_name, MAX_NAME_LEN))
                port = spec["base_port"] + ordinal
                if port in port_owner:
                    other_instance, other_path = port_owner[port]
                    raise PlanError(path + ".base_port", "port %d is already taken by %s (%s)" % (
                        port, other_instance, other_path))
                port_owner[port] = (instance_name, path)
                planned.append({
                    "name": instance_name,
                    "deployment": spec["name"],
                    "deployment_path": path,
                    "pool": pool_name_for(spec["name"]),
                    "mode": spec["mode"],
                    "failback": spec["failback"],
                    "failback_hold_down": spec["failback_hold_down"],
                    "model": spec["model"],
                    "served_model_name": spec["served_model_name"],
                    "host_port": port,
                    "container_port": container_port,
                    "device_ids": [str(i) for i in group],
                    "gpu_uuids": [host[i].get("uuid") for i in group],
                    "tp_size": spec["tp_size"],
                    "mem_fraction_static": round(fractions[j], 3),
                    "memory_share": round(spec["share"], 4),
                    "start_order": j,
                    "group": gpos,
                    "extra_args": list(spec["extra_args"]),
                    "sglang_version": version,
                    "_key": (j, dpos, gpos),
                })
                ordinal += 1

    planned.sort(key=lambda item: item["_key"])
    for item in planned:
        del item["_key"]
        item["labels"] = {
            LABELS["managed"]: "true", LABELS["deployment"]: item["deployment"], LABELS["pool"]: item["pool"],
            LABELS["model"]: item["model"], LABELS["gpus"]: ",".join(item["device_ids"]),
            LABELS["start_order"]: str(item["start_order"]),
        }
    return planned


def simulate_memory(plan, gpus):
    """Replay the plan on a memory ledger the way SGLang allocates.

    Each instance, in plan order, takes ``mem_fraction_static`` of the memory
    still free on each of its GPUs. Returns ``{gpu_index: {instance: MiB}}``.
    Used by tests and by the role's verifier to check what every instance ends with.
    """
    free = {}
    for gpu in gpus:
        free[int(gpu["index"])] = float(gpu["memory_total_mib"])
    taken = {index: {} for index in free}
    for item in plan:
        for device in item["device_ids"]:
            index = int(device)
            grab = free[index] * item["mem_fraction_static"]
            free[index] -= grab
            taken[index][item["name"]] = grab
    return taken
