"""Fault injection: at run time through /_sim/fault, and at start through --sim-fault."""

from __future__ import annotations

import socket
import threading
import time

import requests
from conftest import FAST, sse_json

GEN = {"text": "fault", "sampling_params": {"max_new_tokens": 2}}


def test_admin_api_needs_the_flag(sim_factory):
    sim = sim_factory(*FAST)
    assert sim.get("/_sim/state").status_code == 404
    assert sim.post("/_sim/fault", {"mode": "crash"}).status_code == 404
    assert sim.proc.poll() is None


def test_admin_api_validates_and_needs_the_key(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin", "--api-key", "k-not-secret")
    assert sim.post("/_sim/fault", {"mode": "hang"}).status_code == 401
    auth = {"Authorization": "Bearer k-not-secret"}
    r = sim.post("/_sim/fault", {"mode": "explode"}, headers=auth)
    assert r.status_code == 400 and "mode" in r.json()["error"]
    r = sim.post("/_sim/fault", {"mode": "error", "error_rate": 3}, headers=auth)
    assert r.status_code == 400 and "error_rate" in r.json()["error"]
    r = sim.post("/_sim/fault", {"mode": "slow", "slow_factor": "x"}, headers=auth)
    assert r.status_code == 400 and "slow_factor" in r.json()["error"]
    state = sim.get("/_sim/state", headers=auth).json()
    assert state["fault"]["mode"] == "none" and state["status"] == "up"


def test_error_fault(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin")
    assert sim.post("/_sim/fault", {"mode": "error", "error_rate": 1.0}).status_code == 200
    r = sim.post("/generate", GEN)
    assert r.status_code == 500 and r.text == "Internal Server Error"
    assert sim.post("/v1/completions", {"prompt": "x"}).status_code == 500
    # The server still looks healthy: that is what makes this fault nasty.
    assert sim.get("/health").status_code == 200
    sim.post("/_sim/fault", {"mode": "error", "error_rate": 0.5})
    codes = [sim.post("/generate", GEN).status_code for _ in range(40)]
    assert set(codes) == {200, 500}
    sim.post("/_sim/fault", {"mode": "none"})
    assert sim.post("/generate", GEN).status_code == 200


def test_reject_fault(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin")
    sim.post("/_sim/fault", {"mode": "reject"})
    r = sim.post("/generate", GEN)
    assert r.status_code == 503 and r.json()["message"] == "The request queue is full."
    r, raw = sim.stream("/generate", {**GEN, "stream": True})
    assert r.status_code == 200
    assert sse_json(raw)[-1]["meta_info"]["finish_reason"]["status_code"] == 503
    assert sim.get("/health").status_code == 200


def test_slow_fault_stretches_steps(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin")
    body = {"text": "slow", "sampling_params": {"max_new_tokens": 20, "ignore_eos": True}}
    fast = sim.generate(body)["meta_info"]["e2e_latency"]
    sim.post("/_sim/fault", {"mode": "slow", "slow_factor": 30})
    slow = sim.generate(body)["meta_info"]["e2e_latency"]
    # 20 steps of 2 ms against 20 steps of 60 ms.
    assert slow > 5 * fast
    assert sim.get("/_sim/state").json()["fault"] == {"mode": "slow", "slow_factor": 30.0,
                                                      "error_rate": 0.5, "exit_code": 1}


def test_hang_fault_accepts_connections_and_never_answers(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin")
    assert sim.post("/_sim/fault", {"mode": "hang"}).status_code == 200
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2):
        pass  # the TCP handshake still works
    for path in ("/health", "/v1/models", "/metrics"):
        try:
            requests.get(sim.url + path, timeout=0.5)
            raise AssertionError(f"{path} answered while hung")
        except requests.Timeout:
            pass
    # The admin API stays reachable so the fault can be lifted.
    assert sim.get("/_sim/state").json()["fault"]["mode"] == "hang"
    sim.post("/_sim/fault", {"mode": "none"})
    assert sim.get("/health").status_code == 200
    assert sim.post("/generate", GEN).status_code == 200


def test_stall_fault_keeps_http_answering_while_no_token_is_made(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin", "--enable-metrics", env={"SGLANG_HEALTH_CHECK_TIMEOUT": "1"})
    assert sim.post("/generate", GEN).status_code == 200
    before = sim.get("/metrics").text
    assert sim.post("/_sim/fault", {"mode": "stall"}).status_code == 200
    stuck = {}
    client = threading.Thread(target=lambda: stuck.update(r=sim.post("/generate", GEN, timeout=30)))
    client.start()
    time.sleep(0.5)
    assert client.is_alive(), "a generation finished while the scheduler was stalled"
    # The HTTP side answers: the models, and the metrics with the stuck request counted.
    assert sim.get("/v1/models").status_code == 200
    metrics = sim.get("/metrics")
    assert metrics.status_code == 200
    assert _gauge(metrics.text, "sglang:num_running_reqs") + _gauge(metrics.text, "sglang:num_queue_reqs") >= 1
    assert _gauge(metrics.text, "sglang:generation_tokens_total") == _gauge(before, "sglang:generation_tokens_total")
    # The deep check fails as SGLang's does (its generation never comes back).
    assert sim.get("/health_generate", timeout=5).status_code == 503
    sim.post("/_sim/fault", {"mode": "none"})
    client.join(10)
    assert stuck["r"].status_code == 200
    assert sim.get("/health_generate").status_code == 200


def _gauge(text, name):
    """The sum of a metric's samples in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_crash_fault_exits_non_zero(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin")
    r = sim.post("/_sim/fault", {"mode": "crash", "exit_code": 3})
    assert r.status_code == 200 and r.json()["scheduled"] is True
    assert sim.wait_exit(10) == 3
    assert "Scheduler hit an exception" in sim.log()


def test_scheduled_fault(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin")
    r = sim.post("/_sim/fault", {"mode": "error", "error_rate": 1, "after_seconds": 0.5})
    assert r.json()["scheduled"] is True
    assert sim.post("/generate", GEN).status_code == 200
    deadline = time.monotonic() + 10
    while sim.post("/generate", GEN).status_code != 500:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_faults_at_start(sim_factory):
    crash = sim_factory(*FAST, "--sim-fault", "crash", "--sim-fault-after", "0.5",
                        "--sim-exit-code", "7")
    assert crash.get("/health").status_code == 200  # up before the fault fires
    assert crash.wait_exit(10) == 7
    err = sim_factory(*FAST, "--sim-fault", "error", "--sim-error-rate", "1")
    assert err.post("/generate", GEN).status_code == 500
    hang = sim_factory(*FAST, "--sim-fault", "hang", healthy=False)
    hang.wait_port()
    try:
        requests.get(hang.url + "/health", timeout=1)
        raise AssertionError("/health answered while hung")
    except requests.Timeout:
        pass
    slow = sim_factory(*FAST, "--sim-fault", "slow", "--sim-slow-factor", "25", "--sim-admin")
    assert slow.get("/_sim/state").json()["fault"]["slow_factor"] == 25.0
