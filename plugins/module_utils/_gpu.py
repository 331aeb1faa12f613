# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""GPU inventory from ``nvidia-smi``.

No Ansible imports: the HA agent imports this file as it is. Works on Python 3.9+.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess

# Order matters: it is the column order of the CSV that nvidia-smi prints.
QUERY_FIELDS = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "temperature.gpu",
    "driver_version",
    "pci.bus_id",
)

RESULT_KEYS = (
    "index",
    "uuid",
    "name",
    "memory_total_mib",
    "memory_used_mib",
    "memory_free_mib",
    "utilization_gpu_pct",
    "temperature_c",
    "driver_version",
    "pci_bus_id",
)

INT_KEYS = frozenset(
    ("index", "memory_total_mib", "memory_used_mib", "memory_free_mib", "utilization_gpu_pct", "temperature_c")
)

# nvidia-smi prints these instead of a value when a GPU cannot report a field
# (common on MIG-enabled or passthrough GPUs, and for temperature on some boards).
_NOT_AVAILABLE = frozenset(
    ("", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]", "[insufficient permissions]", "[gpu is lost]")
)

DRIVER_FAILURE_MARKERS = (
    "NVIDIA-SMI has failed",
    "couldn't communicate with the NVIDIA driver",
    "No devices were found",
)


class GpuQueryError(Exception):
    """nvidia-smi could not be run or its output could not be understood."""


class NvidiaSmiMissing(GpuQueryError):
    """The nvidia-smi binary does not exist at the given path / on PATH."""


def nvidia_smi_argv(binary):
    return [
        binary,
        "--query-gpu=" + ",".join(QUERY_FIELDS),
        "--format=csv,noheader,nounits",
    ]


def find_binary(binary):
    """Return the absolute path of ``binary`` or None.

    A bare name is looked up on PATH plus the sbin/bin directories Ansible's
    ``get_bin_path`` also searches, because module environments often have a
    minimal PATH.
    """
    if os.sep in binary:
        return binary if os.path.isfile(binary) and os.access(binary, os.X_OK) else None
    extra = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    search = os.pathsep.join([os.environ.get("PATH", "")] + extra)
    return shutil.which(binary, path=search)


def _convert(key, raw):
    value = raw.strip()
    if value.lower() in _NOT_AVAILABLE:
        return None
    if key in INT_KEYS:
        try:
            number = float(value)
        except ValueError:
            raise GpuQueryError("cannot read %s=%r as a number" % (key, raw))
        return int(round(number))
    return value


def parse_query_output(text):
    """Parse ``--format=csv,noheader,nounits`` output into a list of GPU dicts.

    Raises GpuQueryError on a line that does not have the expected columns, so
    that a changed nvidia-smi output format fails loudly instead of producing
    half-filled facts.
    """
    gpus = []
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    for lineno, row in enumerate(reader, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(QUERY_FIELDS):
            raise GpuQueryError(
                "line %d of nvidia-smi output has %d fields, expected %d (%s): %r"
                % (lineno, len(row), len(QUERY_FIELDS), ",".join(QUERY_FIELDS), ",".join(row))
            )
        try:
            gpu = {key: _convert(key, cell) for key, cell in zip(RESULT_KEYS, row)}
        except GpuQueryError as exc:
            raise GpuQueryError("line %d of nvidia-smi output: %s" % (lineno, exc))
        if gpu["index"] is None:
            raise GpuQueryError("line %d of nvidia-smi output has no GPU index: %r" % (lineno, ",".join(row)))
        gpus.append(gpu)
    gpus.sort(key=lambda g: g["index"])
    seen = set()
    for gpu in gpus:
        if gpu["index"] in seen:
            raise GpuQueryError("nvidia-smi reported GPU index %d twice" % gpu["index"])
        seen.add(gpu["index"])
    return gpus


def summarize(gpus):
    drivers = sorted({g["driver_version"] for g in gpus if g.get("driver_version")})
    return {
        "gpus": gpus,
        "gpu_count": len(gpus),
        "driver_version": drivers[0] if drivers else None,
    }


def _default_runner(argv, timeout):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GpuQueryError("%s did not answer within %s seconds" % (argv[0], timeout))
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def query_gpus(binary="nvidia-smi", allow_missing=False, runner=None, timeout=60):
    """Run nvidia-smi and return ``{"gpus": [...], "gpu_count": n, "driver_version": v}``.

    ``runner(argv, timeout)`` returns ``(rc, stdout, stderr)``; the Ansible module
    passes its own ``run_command`` so that logging and environment follow Ansible.
    """
    path = find_binary(binary)
    if path is None:
        if allow_missing:
            return summarize([])
        raise NvidiaSmiMissing(
            "nvidia-smi not found at %r: install the NVIDIA driver (it ships nvidia-smi), "
            "set the binary path, or set allow_missing for hosts without GPUs" % binary
        )
    run = runner or _default_runner
    rc, out, err = run(nvidia_smi_argv(path), timeout)
    combined = "%s\n%s" % (out, err)
    if rc != 0 or any(marker in combined for marker in DRIVER_FAILURE_MARKERS):
        detail = " ".join(combined.split())[:500] or "no output"
        hint = ""
        if any(marker in combined for marker in DRIVER_FAILURE_MARKERS[:2]):
            hint = " (the NVIDIA kernel driver is not loaded or does not match the installed nvidia-smi)"
        raise GpuQueryError("%s failed with rc=%d%s: %s" % (path, rc, hint, detail))
    return summarize(parse_query_output(out))
