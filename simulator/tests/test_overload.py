"""--max-running-requests queues, --max-queued-requests refuses: SGLang's 503 and abort chunk."""

from __future__ import annotations

import threading
import time

from conftest import FAST, sse_json

QUEUE_FULL = {"object": "error", "message": "The request queue is full.", "type": "503",
              "param": None, "code": 503}


def test_full_queue_gives_503_or_the_abort_chunk(sim_factory):
    args = list(FAST)
    args[args.index("--sim-decode-ms") + 1] = "20"
    sim = sim_factory(*args, "--max-running-requests", "1", "--max-queued-requests", "1",
                      "--enable-metrics")
    long = {"sampling_params": {"max_new_tokens": 100, "ignore_eos": True}}
    threads = [threading.Thread(target=sim.generate, args=({"text": f"hold {i}", **long},))
               for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while sim.get("/v1/loads").json()["loads"][0]["num_waiting_reqs"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = sim.post("/generate", {"text": "one too many", "sampling_params": {"max_new_tokens": 1}})
    assert r.status_code == 503
    assert r.json() == QUEUE_FULL
    r = sim.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503 and r.json() == QUEUE_FULL
    r, raw = sim.stream("/generate", {"text": "stream too", "stream": True})
    assert r.status_code == 200
    chunks = sse_json(raw)
    assert len(chunks) == 1
    fr = chunks[0]["meta_info"]["finish_reason"]
    assert fr["type"] == "abort" and fr["status_code"] == 503
    assert fr["message"] == "The request queue is full."
    r, raw = sim.stream("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                 "stream": True})
    assert r.status_code == 200
    assert sse_json(raw)[-1]["choices"][0]["finish_reason"] == "abort"
    aborted = sim.metrics()['sglang:num_aborted_requests_total{model_name="sim/tiny-model"}']
    assert aborted == 4
    for t in threads:
        t.join(30)
    # Once the queue drains, requests are accepted again.
    assert sim.post("/generate", {"text": "ok", "sampling_params": {"max_new_tokens": 1}}
                    ).status_code == 200


def test_without_a_queue_limit_requests_wait_instead(sim_factory):
    args = list(FAST)
    args[args.index("--sim-decode-ms") + 1] = "10"
    sim = sim_factory(*args, "--max-running-requests", "1")
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(sim.post("/generate", {
        "text": f"wait {i}", "sampling_params": {"max_new_tokens": 10, "ignore_eos": True}})))
        for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in results] == [200] * 5
    # Served one at a time: the queue time grows from one request to the next.
    latencies = sorted(r.json()["meta_info"]["e2e_latency"] for r in results)
    assert latencies[-1] > latencies[0]
