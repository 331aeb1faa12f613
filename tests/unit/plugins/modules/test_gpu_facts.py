from __future__ import annotations

import stat

from ansible_collections.inferops.sglang.plugins.modules import gpu_facts

TWO_GPUS = ("0, GPU-aaaa, NVIDIA L4, 23034, 0, 23034, 0, 35, 550.54.15, 00000000:01:00.0\n"
            "1, GPU-bbbb, NVIDIA L4, 23034, 300, 22734, [N/A], 36, 550.54.15, 00000000:02:00.0\n")


def fake_smi(tmp_path, body):
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_facts_and_return_values(tmp_path, run_module):
    binary = fake_smi(tmp_path, "cat <<'EOF'\n%sEOF\n" % TWO_GPUS)
    out = run_module(gpu_facts.main, {"binary": binary})
    assert out["changed"] is False and "failed" not in out
    assert out["gpu_count"] == 2 and out["driver_version"] == "550.54.15" and out["nvidia_smi"] == binary
    assert out["ansible_facts"]["inferops_gpus"] == out["gpus"]
    assert out["gpus"][1]["memory_used_mib"] == 300 and out["gpus"][1]["utilization_gpu_pct"] is None


def test_check_mode_still_reads(tmp_path, run_module):
    binary = fake_smi(tmp_path, "cat <<'EOF'\n%sEOF\n" % TWO_GPUS)
    out = run_module(gpu_facts.main, {"binary": binary}, check_mode=True)
    assert out["gpu_count"] == 2


def test_missing_binary_fails_naming_it(tmp_path, run_module):
    missing = str(tmp_path / "bin" / "nvidia-smi")
    out = run_module(gpu_facts.main, {"binary": missing})
    assert out["failed"] is True and missing in out["msg"]


def test_missing_binary_allowed(tmp_path, run_module):
    out = run_module(gpu_facts.main, {"binary": str(tmp_path / "nvidia-smi"), "allow_missing": True})
    assert "failed" not in out
    assert out["gpu_count"] == 0 and out["gpus"] == [] and out["ansible_facts"]["inferops_gpus"] == []
    assert out["nvidia_smi"] is None


def test_driver_failure(tmp_path, run_module):
    binary = fake_smi(tmp_path, "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\n"
                                "exit 9\n")
    out = run_module(gpu_facts.main, {"binary": binary})
    assert out["failed"] is True and "NVIDIA driver" in out["msg"] and out["gpu_count"] == 0
