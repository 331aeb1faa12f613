from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._gpu import (
    GpuQueryError,
    NvidiaSmiMissing,
    nvidia_smi_argv,
    parse_query_output,
    query_gpus,
)

FOUR_GPUS = """\
0, GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a, NVIDIA A100-SXM4-80GB, 81920, 4, 81916, 0, 31, 550.54.15, 00000000:07:00.0
1, GPU-1b2c3d4e-0000-1111-2222-333344445555, NVIDIA A100-SXM4-80GB, 81920, 40960, 40960, 87, 64, 550.54.15, 00000000:0B:00.0
2, GPU-22222222-0000-1111-2222-333344445555, NVIDIA A100-SXM4-80GB, 81920, 0, 81920, [N/A], [Not Supported], 550.54.15, 00000000:48:00.0
3, GPU-33333333-0000-1111-2222-333344445555, NVIDIA A100-SXM4-80GB, 81920, 12.0, 81908, 5, 40, 550.54.15, 00000000:4C:00.0
"""


def write_script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_argv_asks_for_every_field_without_units():
    argv = nvidia_smi_argv("/usr/bin/nvidia-smi")
    assert argv[0] == "/usr/bin/nvidia-smi"
    assert argv[1] == ("--query-gpu=index,uuid,name,memory.total,memory.used,memory.free,"
                       "utilization.gpu,temperature.gpu,driver_version,pci.bus_id")
    assert argv[2] == "--format=csv,noheader,nounits"


def test_parse_four_gpus_with_ints_and_unavailable_values():
    gpus = parse_query_output(FOUR_GPUS)
    assert [g["index"] for g in gpus] == [0, 1, 2, 3]
    first = gpus[0]
    assert first == {
        "index": 0, "uuid": "GPU-3a23c669-1f69-c64e-cf85-44e9b07e7a2a", "name": "NVIDIA A100-SXM4-80GB",
        "memory_total_mib": 81920, "memory_used_mib": 4, "memory_free_mib": 81916, "utilization_gpu_pct": 0,
        "temperature_c": 31, "driver_version": "550.54.15", "pci_bus_id": "00000000:07:00.0",
    }
    assert gpus[1]["memory_used_mib"] == 40960 and gpus[1]["utilization_gpu_pct"] == 87
    assert gpus[2]["utilization_gpu_pct"] is None and gpus[2]["temperature_c"] is None
    assert gpus[3]["memory_used_mib"] == 12 and isinstance(gpus[3]["memory_used_mib"], int)


def test_parse_sorts_by_index_and_ignores_blank_lines():
    text = "\n1, GPU-b, T4, 15360, 0, 15360, 0, 30, 535.1, 0:2\n\n0, GPU-a, T4, 15360, 0, 15360, 0, 30, 535.1, 0:1\n"
    assert [g["uuid"] for g in parse_query_output(text)] == ["GPU-a", "GPU-b"]


def test_parse_empty_output_is_no_gpu():
    assert parse_query_output("") == []


@pytest.mark.parametrize("text,message", [
    ("0, GPU-a, T4, 15360\n", "line 1 of nvidia-smi output has 4 fields, expected 10"),
    ("0, GPU-a, T4, lots, 0, 15360, 0, 30, 535.1, 0:1\n", "line 1 of nvidia-smi output: cannot read memory_total_mib='lots'"),
    ("[N/A], GPU-a, T4, 1, 0, 1, 0, 30, 535.1, 0:1\n", "line 1 of nvidia-smi output has no GPU index"),
    ("0, GPU-a, T4, 1, 0, 1, 0, 30, 535.1, 0:1\n0, GPU-b, T4, 1, 0, 1, 0, 30, 535.1, 0:2\n",
     "nvidia-smi reported GPU index 0 twice"),
])
def test_parse_rejects_output_it_does_not_understand(text, message):
    with pytest.raises(GpuQueryError) as err:
        parse_query_output(text)
    assert str(err.value).startswith(message)


def test_query_runs_the_binary_and_summarizes(tmp_path):
    argv_file = tmp_path / "argv"
    binary = write_script(tmp_path, "nvidia-smi", 'echo "$@" > %s\ncat <<"EOF"\n%sEOF\n' % (argv_file, FOUR_GPUS))
    result = query_gpus(binary)
    assert result["gpu_count"] == 4 and result["driver_version"] == "550.54.15"
    assert [g["index"] for g in result["gpus"]] == [0, 1, 2, 3]
    assert "--format=csv,noheader,nounits" in argv_file.read_text()


def test_query_finds_a_bare_name_on_path(tmp_path, monkeypatch):
    write_script(tmp_path, "nvidia-smi", "echo '0, GPU-a, T4, 15360, 0, 15360, 0, 30, 535.1, 0:1'\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert query_gpus("nvidia-smi")["gpu_count"] == 1


def test_missing_binary_fails_naming_the_path(tmp_path):
    missing = str(tmp_path / "nope" / "nvidia-smi")
    with pytest.raises(NvidiaSmiMissing) as err:
        query_gpus(missing)
    assert repr(missing) in str(err.value) and "allow_missing" in str(err.value)


def test_missing_binary_allowed_gives_zero_gpus(tmp_path):
    assert query_gpus(str(tmp_path / "nvidia-smi"), allow_missing=True) == {
        "gpus": [], "gpu_count": 0, "driver_version": None}


def test_driver_not_loaded_is_a_clear_failure_even_when_allowed_missing(tmp_path):
    binary = write_script(tmp_path, "nvidia-smi", (
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\"\nexit 9\n"))
    with pytest.raises(GpuQueryError) as err:
        query_gpus(binary, allow_missing=True)
    message = str(err.value)
    assert binary in message and "rc=9" in message
    assert "driver is not loaded" in message and "NVIDIA-SMI has failed" in message


def test_other_failures_carry_stderr(tmp_path):
    binary = write_script(tmp_path, "nvidia-smi", "echo 'Field \"foo\" is not a valid field' >&2\nexit 2\n")
    with pytest.raises(GpuQueryError, match=r'rc=2: Field "foo" is not a valid field'):
        query_gpus(binary)


def test_hung_nvidia_smi_times_out(tmp_path):
    binary = write_script(tmp_path, "nvidia-smi", "exec sleep 30\n")
    with pytest.raises(GpuQueryError, match="did not answer within 1 seconds"):
        query_gpus(binary, timeout=1)


def test_a_non_executable_file_counts_as_missing(tmp_path):
    path = tmp_path / "nvidia-smi"
    path.write_text("not a program")
    os.chmod(path, 0o644)
    with pytest.raises(NvidiaSmiMissing):
        query_gpus(str(path))
