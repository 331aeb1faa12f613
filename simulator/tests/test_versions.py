"""--sim-version: the simulator presents an older SGLang release's HTTP surface, so the
collection's version-dependent choices (health paths, auth exemptions, --admin-api-key) are
tested against both releases it supports."""

from __future__ import annotations

import subprocess

import requests
from conftest import FAST, PYTHON, SIM_DIR

KEY = "test-api-key-not-a-secret"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_0_5_6_has_no_ready_route_and_exempts_only_health_and_metrics(sim_factory):
    sim = sim_factory(*FAST, "--sim-version", "0.5.6", "--api-key", KEY, "--enable-metrics")
    for path in ("/health", "/health_generate", "/metrics"):
        assert sim.get(path).status_code == 200, path
    # /ready is not a route of 0.5.6: without a key the middleware refuses it like any
    # unknown path; with the key it is a plain 404.
    assert sim.get("/ready").status_code == 401
    assert sim.get("/ready", headers=bearer(KEY)).status_code == 404
    assert sim.get("/v1/loads", headers=bearer(KEY)).status_code == 404
    # The routes 0.5.6 has answer as before.
    assert sim.get("/get_load", headers=bearer(KEY)).status_code == 200
    info = sim.get("/server_info", headers=bearer(KEY)).json()
    assert info["version"] == "0.5.6"
    assert sim.get("/_sim/state").status_code == 401


def test_0_5_23_serves_ready_without_a_key(sim_factory):
    sim = sim_factory(*FAST, "--sim-version", "0.5.23", "--api-key", KEY)
    assert sim.get("/ready").status_code == 200
    assert sim.get("/server_info", headers=bearer(KEY)).json()["version"] == "0.5.23"


def test_0_5_6_refuses_the_admin_key_flag_without_echoing_it():
    secret = "admin-key-value-not-to-be-printed"
    proc = subprocess.run([PYTHON, "-m", "sglang_sim.launch_server", "--model-path", "m",
                           "--sim-version", "0.5.6", "--admin-api-key", secret],
                          capture_output=True, text=True, timeout=30, cwd=SIM_DIR, check=False)
    assert proc.returncode == 2
    assert "unrecognized arguments: --admin-api-key" in proc.stderr
    assert secret not in proc.stderr + proc.stdout


def test_state_counts_health_probes_per_path_and_flushes(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin")
    before = sim.get("/_sim/state").json()
    for dummy in range(3):
        assert sim.get("/health").status_code == 200
    assert sim.get("/ready").status_code == 200
    assert sim.post("/flush_cache").status_code == 200
    after = sim.get("/_sim/state").json()
    assert after["health_checks"]["/health"] - before["health_checks"]["/health"] == 3
    assert after["health_checks"]["/ready"] - before["health_checks"]["/ready"] == 1
    assert after["health_checks"]["/health_generate"] == before["health_checks"]["/health_generate"]
    assert after["flushes"] == before["flushes"] + 1
    assert after["startup_time"] == before["startup_time"]
    assert requests.get(sim.url + "/_sim/state", timeout=10).json()["version"] == "0.5.23"
