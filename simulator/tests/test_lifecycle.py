"""Start-up, health states and shutdown as an LB or an orchestrator sees them."""

from __future__ import annotations

import signal
import threading
import time

import requests
from conftest import FAST, PROMPT, port_open, sse_json


def without(args: list[str], *flags: str) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in flags:
            skip = True
            continue
        out.append(a)
    return out


def test_loading_then_warmup_then_up(sim_factory):
    args = without(FAST, "--sim-load-seconds", "--sim-warmup-seconds")
    sim = sim_factory(*args, "--sim-load-seconds", "1.0", "--sim-warmup-seconds", "1.0",
                      healthy=False)
    # Loading weights: nothing listens yet.
    assert not port_open(sim.port)
    sim.wait_port()
    # Port open, warm-up pending: 503 with an empty body on both health routes, /ready too.
    for path in ("/health", "/health_generate", "/ready"):
        r = sim.get(path)
        assert r.status_code == 503, path
        assert r.content == b""
    sim.wait_healthy()
    assert sim.get("/health_generate").status_code == 200
    assert sim.get("/ready").status_code == 200
    log = sim.log()
    assert log.index("Uvicorn running") < log.index("The server is fired up and ready to roll!")
    # The warm-up is a real generate request (SGLang's own, with the same prompt).
    meta = sim.generate({"text": PROMPT, "sampling_params": {"max_new_tokens": 2}})["meta_info"]
    assert meta["cached_tokens"] > 0


def test_skip_server_warmup_is_up_when_the_port_opens(sim_factory):
    args = without(FAST, "--sim-warmup-seconds")
    slow_warmup = sim_factory(*args, "--sim-warmup-seconds", "60", healthy=False)
    skipped = sim_factory(*args, "--sim-warmup-seconds", "60", "--skip-server-warmup",
                          healthy=False)
    slow_warmup.wait_port()
    skipped.wait_port()
    assert skipped.get("/health").status_code == 200
    assert skipped.get("/ready").status_code == 200
    assert slow_warmup.get("/health").status_code == 503


def test_health_probe_takes_a_poll_and_is_not_counted(sim_factory):
    args = without(FAST, "--sim-health-poll-seconds")
    sim = sim_factory(*args, "--sim-health-poll-seconds", "0.3", "--enable-metrics")
    key = 'sglang:num_requests_total{model_name="sim/tiny-model"}'
    before = sim.metrics()[key]
    t0 = time.monotonic()
    assert sim.get("/health").status_code == 200
    # The probe is a 1-token generation checked once per poll interval.
    assert time.monotonic() - t0 >= 0.3
    assert sim.get("/health_generate").status_code == 200
    assert sim.metrics()[key] == before


def test_sigterm_drains_then_exits_zero(sim_factory):
    args = without(FAST, "--sim-decode-ms")
    sim = sim_factory(*args, "--sim-decode-ms", "20")
    result = {}

    def long_stream():
        r, raw = sim.stream("/generate", {"text": "drain me", "stream": True,
                                          "sampling_params": {"max_new_tokens": 60,
                                                              "ignore_eos": True}})
        result["status"], result["chunks"] = r.status_code, sse_json(raw)

    t = threading.Thread(target=long_stream)
    t.start()
    sim.wait_running()
    sim.signal(signal.SIGTERM)
    time.sleep(0.05)
    # Draining: health and readiness fail at once, but new work is still accepted.
    assert sim.get("/health").status_code == 503
    assert sim.get("/ready").status_code == 503
    late = sim.post("/generate", {"text": "late", "sampling_params": {"max_new_tokens": 3}})
    assert late.status_code == 200
    assert late.json()["meta_info"]["completion_tokens"] == 3
    t.join(20)
    assert result["status"] == 200
    assert result["chunks"][-1]["meta_info"]["finish_reason"] == {"type": "length", "length": 60}
    assert sim.wait_exit() == 0
    log = sim.log()
    assert "SIGTERM received" in log
    assert not port_open(sim.port)


def test_second_sigterm_exits_at_once(sim_factory):
    args = without(FAST, "--sim-decode-ms")
    sim = sim_factory(*args, "--sim-decode-ms", "50")
    cut = []

    def doomed_stream():
        try:
            sim.stream("/generate", {"text": "x", "stream": True,
                                     "sampling_params": {"max_new_tokens": 400,
                                                         "ignore_eos": True}})
        except requests.RequestException as exc:
            cut.append(exc)

    t = threading.Thread(target=doomed_stream, daemon=True)
    t.start()
    sim.wait_running()
    sim.signal(signal.SIGTERM)
    time.sleep(0.2)
    assert sim.proc.poll() is None  # still draining the 20 s request
    sim.signal(signal.SIGTERM)
    assert sim.wait_exit(5) == 128 + signal.SIGTERM
    t.join(5)
    assert cut, "the in-flight stream should have been cut by the hard exit"


def test_sigterm_while_loading_exits_zero(sim_factory):
    args = without(FAST, "--sim-load-seconds")
    sim = sim_factory(*args, "--sim-load-seconds", "30", healthy=False)
    deadline = time.monotonic() + 10
    while "Load weight begin" not in sim.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    sim.signal(signal.SIGTERM)
    assert sim.wait_exit(5) == 0


def test_sigint_exits_at_once(sim_factory):
    sim = sim_factory(*FAST)
    sim.signal(signal.SIGINT)
    assert sim.wait_exit(5) == 128 + signal.SIGINT


def test_health_timeout_marks_unhealthy_then_recovers(sim_factory):
    sim = sim_factory(*FAST, "--sim-admin", env={"SGLANG_HEALTH_CHECK_TIMEOUT": "0.5"})
    # A step now lasts 2 s x 1000: no output within the 0.5 s health timeout.
    r = sim.post("/_sim/fault", {"mode": "slow", "slow_factor": 1000})
    assert r.status_code == 200
    assert sim.get("/health").status_code == 503
    assert "Health check failed" in sim.log()
    assert sim.get("/_sim/state").json()["status"] == "unhealthy"
    assert sim.post("/_sim/fault", {"mode": "none"}).status_code == 200
    deadline = time.monotonic() + 10
    while sim.get("/health").status_code != 200:
        assert time.monotonic() < deadline
    assert sim.get("/_sim/state").json()["status"] == "up"


def test_health_without_generation_env_switch(sim_factory):
    args = without(FAST, "--sim-health-poll-seconds")
    sim = sim_factory(*args, "--sim-health-poll-seconds", "5", "--sim-admin",
                      env={"SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION": "false"}, healthy=False)
    sim.wait_port()
    deadline = time.monotonic() + 10
    while True:
        t0 = time.monotonic()
        r = sim.get("/health")
        if r.status_code == 200:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # 0.5.23: /health only reads the flags; /health_generate still generates (5 s poll).
    assert time.monotonic() - t0 < 5
    try:
        requests.get(sim.url + "/health_generate", timeout=1)
        raise AssertionError("/health_generate answered before its poll interval")
    except requests.Timeout:
        pass
