"""/metrics: present only with --enable-metrics, SGLang's names and types, and numbers that
agree with what was served."""

from __future__ import annotations

import re
import threading
import time

from conftest import FAST

GAUGES = ["num_running_reqs", "num_used_tokens", "token_usage", "gen_throughput",
          "num_queue_reqs", "num_grammar_queue_reqs", "cache_hit_rate", "num_retracted_reqs",
          "num_paused_reqs", "utilization", "max_total_num_tokens", "context_len"]
COUNTERS = ["prompt_tokens_total", "generation_tokens_total", "num_requests_total",
            "num_aborted_requests_total", "cached_tokens_total"]
HISTOGRAMS = ["time_to_first_token_seconds", "inter_token_latency_seconds",
              "e2e_request_latency_seconds", "request_time_per_output_token_seconds",
              "queue_time_seconds"]
SCHED = 'engine_type="unified",model_name="m1",moe_ep_rank="0",pp_rank="0",tp_rank="0"'
TOK = 'model_name="m1"'


def test_metrics_absent_without_flag(sim_factory):
    sim = sim_factory(*FAST)
    assert sim.get("/metrics").status_code == 404


def test_names_and_types(sim_factory):
    sim = sim_factory(*FAST, "--enable-metrics", "--served-model-name", "m1")
    r = sim.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.MULTILINE))
    for g in GAUGES:
        assert types[f"sglang:{g}"] == "gauge", g
    for c in COUNTERS:
        assert types[f"sglang:{c}"] == "counter", c
    for h in HISTOGRAMS:
        assert types[f"sglang:{h}"] == "histogram", h
    # Every sample line belongs to a declared family and parses as a number.
    for line in r.text.splitlines():
        if line.startswith("#"):
            continue
        name = re.match(r"^([a-zA-Z0-9_:]+)", line).group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, line
        float(line.rsplit(" ", 1)[1])
    assert f"sglang:max_total_num_tokens{{{SCHED}}} 131072.0" in r.text


def test_counters_and_histograms_match_what_was_served(sim_factory):
    sim = sim_factory(*FAST, "--enable-metrics", "--served-model-name", "m1")
    before = sim.metrics()
    prompt = completion = cached = 0
    for i in range(5):
        meta = sim.generate({"text": f"request {i} " * 3,
                             "sampling_params": {"max_new_tokens": 3 + i}})["meta_info"]
        prompt += meta["prompt_tokens"]
        completion += meta["completion_tokens"]
        cached += meta["cached_tokens"]
    after = sim.metrics()

    def delta(name: str, labels: str = TOK) -> float:
        key = f"sglang:{name}{{{labels}}}"
        return after[key] - before[key]

    assert delta("num_requests_total") == 5
    assert delta("prompt_tokens_total") == prompt
    assert delta("generation_tokens_total") == completion
    assert delta("cached_tokens_total") == cached
    assert delta("e2e_request_latency_seconds_count") == 5
    assert delta("time_to_first_token_seconds_count") == 5
    # One inter-token gap per token after the first.
    assert delta("inter_token_latency_seconds_count") == completion - 5
    assert delta("queue_time_seconds_count", SCHED) == 5
    for hist, labels in (("e2e_request_latency_seconds", TOK), ("queue_time_seconds", SCHED)):
        buckets = [(k, v) for k, v in after.items() if k.startswith(f"sglang:{hist}_bucket")]
        values = [v for _, v in buckets]
        assert values == sorted(values)  # cumulative
        assert 'le="+Inf"' in buckets[-1][0]
        assert values[-1] == after[f"sglang:{hist}_count{{{labels}}}"]


def test_gauges_follow_the_load(sim_factory):
    args = list(FAST)
    args[args.index("--sim-decode-ms") + 1] = "20"
    sim = sim_factory(*args, "--enable-metrics", "--served-model-name", "m1",
                      "--max-running-requests", "2")
    threads = [threading.Thread(target=sim.generate, args=(
        {"text": f"load {i}", "sampling_params": {"max_new_tokens": 40, "ignore_eos": True}},))
        for i in range(6)]
    for t in threads:
        t.start()
    seen = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not seen:
        m = sim.metrics()
        running = m[f"sglang:num_running_reqs{{{SCHED}}}"]
        queued = m[f"sglang:num_queue_reqs{{{SCHED}}}"]
        assert running <= 2
        seen = running == 2 and queued == 4
        if seen:
            assert m[f"sglang:num_used_tokens{{{SCHED}}}"] > 0
            assert m[f"sglang:token_usage{{{SCHED}}}"] > 0
            assert m[f"sglang:utilization{{{SCHED}}}"] == 1.0
    assert seen, "never saw 2 running and 4 queued"
    for t in threads:
        t.join(30)
    m = sim.metrics()
    assert m[f"sglang:num_running_reqs{{{SCHED}}}"] == 0
    assert m[f"sglang:num_queue_reqs{{{SCHED}}}"] == 0
    assert m[f"sglang:gen_throughput{{{SCHED}}}"] > 0
    # The four that queued waited for a slot (about 40 steps); the warm-up and the first two
    # did not.
    fast = m['sglang:queue_time_seconds_bucket{engine_type="unified",le="0.1",model_name="m1",'
             'moe_ep_rank="0",pp_rank="0",tp_rank="0"}']
    total = m[f"sglang:queue_time_seconds_count{{{SCHED}}}"]
    assert total == 7
    assert fast <= 3
