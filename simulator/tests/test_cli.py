"""The launch_server command line: SGLang's flags accepted, anything else refused as argparse
refuses it, and start-up failures that real SGLang has."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import FAST, PYTHON, SIM_DIR, port_open


def run_cli(*args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(SIM_DIR))
    full_env.pop("NVIDIA_VISIBLE_DEVICES", None)
    full_env.pop("CUDA_VISIBLE_DEVICES", None)
    full_env.update(env or {})
    return subprocess.run([PYTHON, "-m", "sglang_sim.launch_server", *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_unknown_flag_is_rejected_like_argparse():
    r = run_cli("--model-path", "m", "--no-such-flag", "1")
    assert r.returncode == 2
    assert "unrecognized arguments: --no-such-flag 1" in r.stderr
    assert r.stderr.startswith("usage:")


def test_missing_model_path_is_rejected():
    r = run_cli("--port", "30001")
    assert r.returncode == 2
    assert "--model-path" in r.stderr and "required" in r.stderr


def test_bad_values_name_the_flag():
    cases = {
        ("--port", "http"): "argument --port",
        ("--port", "70000"): "argument --port",
        ("--mem-fraction-static", "1.5"): "argument --mem-fraction-static",
        ("--tp-size", "0"): "argument --tp-size",
        ("--sim-fault", "explode"): "argument --sim-fault",
        ("--sim-error-rate", "2"): "argument --sim-error-rate",
        ("--log-level", "loud"): "argument --log-level",
    }
    for flag, expected in cases.items():
        r = run_cli("--model-path", "m", *flag)
        assert r.returncode == 2, flag
        assert expected in r.stderr, (flag, r.stderr)


def test_help_lists_sglang_and_sim_flags():
    r = run_cli("--help")
    assert r.returncode == 0
    for flag in ("--model-path", "--tp-size", "--tensor-parallel-size", "--dp-size",
                 "--mem-fraction-static", "--max-running-requests", "--max-queued-requests",
                 "--api-key", "--enable-metrics", "--skip-server-warmup", "--sim-load-seconds",
                 "--sim-decode-ms", "--sim-fault", "--sim-admin"):
        assert flag in r.stdout, flag


def test_aliases_and_resolved_args_in_server_info(sim_factory):
    sim = sim_factory(*FAST, "--tp", "2", "--data-parallel-size", "2", "--mem-fraction-static",
                      "0.41", "--context-length", "2048", "--max-running-requests", "8",
                      "--random-seed", "7", "--trust-remote-code", "--device", "cuda",
                      "--watchdog-timeout", "600", "--log-level-http", "warning",
                      "--chunked-prefill-size", "-1", "--enable-mixed-chunk")
    info = sim.get("/server_info").json()
    assert info["tp_size"] == 2 and info["dp_size"] == 2
    assert info["mem_fraction_static"] == 0.41
    assert info["context_length"] == 2048
    assert info["random_seed"] == 7
    assert info["watchdog_timeout"] == 600
    # The DP controller runs one scheduler per rank.
    assert len(info["internal_states"]) == 2
    assert info["sim"]["tp_size"] == 2 and info["sim"]["dp_size"] == 2
    assert info["sim"]["mem_fraction_static"] == 0.41


def test_missing_local_model_dir_fails_like_sglang(tmp_path):
    r = run_cli("--model-path", str(tmp_path / "absent"), *FAST)
    assert r.returncode == 1
    assert "is not a local folder" in r.stdout


def test_load_error_exits_without_opening_the_port():
    r = run_cli("--model-path", "m", "--port", "30999", *FAST, "--sim-load-error",
                "torch.OutOfMemoryError: CUDA out of memory")
    assert r.returncode == 1
    assert "CUDA out of memory" in r.stdout
    assert "Uvicorn running" not in r.stdout


def test_not_enough_visible_gpus_fails_at_start():
    r = run_cli("--model-path", "m", *FAST, "--tp-size", "2",
                env={"NVIDIA_VISIBLE_DEVICES": "3"})
    assert r.returncode == 1
    assert "invalid device ordinal" in r.stdout
    r = run_cli("--model-path", "m", *FAST, env={"NVIDIA_VISIBLE_DEVICES": "void"})
    assert r.returncode == 1
    assert "No CUDA GPUs are available" in r.stdout


def test_gpu_assignment_is_reported(sim_factory):
    sim = sim_factory(*FAST, "--tp-size", "2", env={"NVIDIA_VISIBLE_DEVICES": "2,3"})
    s = sim.get("/server_info").json()["sim"]
    assert s["nvidia_visible_devices"] == "2,3"
    assert s["visible_devices"] == ["2", "3"]
    assert s["gpu_ids"] == ["2", "3"]
    sim2 = sim_factory(*FAST, "--base-gpu-id", "1", env={"CUDA_VISIBLE_DEVICES": "4,5,6"})
    s2 = sim2.get("/server_info").json()["sim"]
    assert s2["cuda_visible_devices"] == "4,5,6"
    assert s2["gpu_ids"] == ["5"]


def test_model_config_is_read(sim_factory, tmp_path):
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "max_position_embeddings": 1024}))
    sim = sim_factory(*FAST, model=str(model))
    info = sim.get("/model_info").json()
    assert info["architectures"] == ["Qwen2ForCausalLM"]
    assert info["model_type"] == "qwen2"
    assert info["model_path"] == str(model)
    assert sim.get("/v1/models").json()["data"][0]["max_model_len"] == 1024


def test_port_in_use_exits_1(sim_factory):
    sim = sim_factory(*FAST)
    r = run_cli("--model-path", "m", "--port", str(sim.port), *FAST)
    assert r.returncode == 1
    assert "error while attempting to bind" in r.stdout
    assert port_open(sim.port)  # the first one is unharmed
