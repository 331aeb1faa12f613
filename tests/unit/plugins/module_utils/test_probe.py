from __future__ import annotations

import math
import socket

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._probe import (
    DEFAULT_TIMEOUTS,
    MetricsParseError,
    ProbeError,
    failure_report,
    fetch_metrics,
    normalize_instances,
    parse_prometheus_text,
    probe_instance,
    probe_many,
    select,
    sglang_load,
    summarize,
    wait_until_ok,
)

INFO_0523 = {"model_path": "/models/tiny-chat", "served_model_name": "tiny-chat", "tokenizer_path": "/models/tiny-chat",
             "is_generation": True, "weight_version": "default"}
INFO_052 = {"model_path": "/models/tiny-chat", "tokenizer_path": "/models/tiny-chat", "is_generation": True}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_liveness_reads_model_info(scripted_server):
    srv = scripted_server()
    srv.route("/model_info", 200, INFO_0523)
    res = probe_instance(srv.url, "liveness")
    assert res["ok"] is True and res["status"] == 200 and res["error"] is None
    assert res["endpoint"] == "/model_info"
    assert res["served_model_name"] == "tiny-chat" and res["model_path"] == "/models/tiny-chat"
    assert res["latency_ms"] >= 0
    assert srv.hits == {"/model_info": 1}


def test_liveness_falls_back_to_get_model_info_on_older_servers(scripted_server):
    srv = scripted_server()
    srv.route("/get_model_info", 200, INFO_052)
    res = probe_instance(srv.url, "liveness")
    assert res["ok"] is True and res["endpoint"] == "/get_model_info"
    # 0.5.2 reports no served_model_name: the model path is what it serves as
    assert res["served_model_name"] == "/models/tiny-chat"
    assert srv.hits == {"/model_info": 1, "/get_model_info": 1}


def test_liveness_does_not_touch_health_endpoints(scripted_server):
    srv = scripted_server()
    srv.route("/model_info", 200, INFO_0523)
    srv.route("/health", 503)
    assert probe_instance(srv.url, "liveness")["ok"] is True
    assert "/health" not in srv.hits


def test_liveness_needs_a_json_object(scripted_server):
    srv = scripted_server()
    srv.route("/model_info", 200, b"<html>proxy page</html>")
    res = probe_instance(srv.url, "liveness")
    assert res["ok"] is False and "not with a JSON object" in res["error"]


def test_refused_connection_is_a_failed_probe_not_an_exception():
    res = probe_instance("127.0.0.1:%d" % free_port(), "liveness", timeout=2)
    assert res["ok"] is False and res["status"] is None and res["error"].startswith("connection failed")
    assert res["url"].startswith("http://127.0.0.1:")


def test_api_key_is_sent_as_bearer_and_never_reported(scripted_server):
    srv = scripted_server()
    srv.route("/model_info", 401, {"error": "Unauthorized"})
    res = probe_instance(srv.url, "liveness", api_key="sk-secret-123")
    assert res["ok"] is False and res["status"] == 401 and "api_key" in res["error"]
    assert srv.auth_headers == ["Bearer sk-secret-123"]
    assert "sk-secret-123" not in repr(res)


@pytest.mark.parametrize("routes,ok,endpoint,error", [
    ({"/ready": (200, b"")}, True, "/ready", None),
    ({"/ready": (503, b"")}, False, "/ready", "HTTP 503 (starting, unhealthy or shutting down)"),
    ({"/health": (200, b"")}, True, "/health", None),  # no /ready before 0.5.23
    ({"/health": (503, b"")}, False, "/health", "HTTP 503 (starting, unhealthy or shutting down)"),
])
def test_ready_falls_back_to_health(scripted_server, routes, ok, endpoint, error):
    srv = scripted_server()
    for path, (status, body) in routes.items():
        srv.route(path, status, body)
    res = probe_instance(srv.url, "ready")
    assert (res["ok"], res["endpoint"], res["error"]) == (ok, endpoint, error)


@pytest.mark.parametrize("check,path", [("health", "/health"), ("health_generate", "/health_generate")])
def test_deep_checks_use_their_endpoint_only(scripted_server, check, path):
    srv = scripted_server()
    srv.route(path, 200, b"")
    res = probe_instance(srv.url, check)
    assert res["ok"] is True and res["endpoint"] == path and srv.hits == {path: 1}


def test_deep_check_404_has_no_fallback(scripted_server):
    srv = scripted_server()
    res = probe_instance(srv.url, "health_generate")
    assert res["ok"] is False and res["status"] == 404


def test_a_slow_health_check_times_out(scripted_server):
    srv = scripted_server()
    srv.route("/health", 200, b"", delay=3)
    res = probe_instance(srv.url, "health", timeout=0.5)
    assert res["ok"] is False and res["status"] is None and res["error"] == "timed out after 0.5s"


def test_deep_check_defaults_cover_sglangs_20s_health_budget():
    assert DEFAULT_TIMEOUTS["health"] >= 25 and DEFAULT_TIMEOUTS["health_generate"] >= 25
    assert DEFAULT_TIMEOUTS["liveness"] < DEFAULT_TIMEOUTS["health"]


def test_expect_model_match_and_mismatch(scripted_server):
    srv = scripted_server()
    srv.route("/model_info", 200, INFO_0523)
    srv.route("/health", 200, b"")
    assert probe_instance(srv.url, "liveness", expect_model="tiny-chat")["ok"] is True
    res = probe_instance(srv.url, "health", expect_model="other-model")
    assert res["ok"] is False and res["error"] == "serves model 'tiny-chat', expected 'other-model'"
    assert res["served_model_name"] == "tiny-chat"
    assert srv.hits["/health"] == 1 and srv.hits["/model_info"] == 2


def test_expect_model_with_failing_model_info(scripted_server):
    srv = scripted_server()
    srv.route("/health", 200, b"")
    srv.route("/model_info", 401, {"error": "Unauthorized"})
    res = probe_instance(srv.url, "health", expect_model="tiny-chat")
    assert res["ok"] is False and res["error"].startswith("health passed but model info failed: HTTP 401")


def test_unknown_check_is_a_usage_error():
    with pytest.raises(ProbeError, match="check must be one of liveness, ready, health, health_generate"):
        probe_instance("http://127.0.0.1:1", "deep")


@pytest.mark.parametrize("urls,instances,message", [
    (None, None, "no instance to probe"),
    (["ftp://x"], None, "only http and https"),
    ([""], None, "url must be a non-empty string"),
    (None, [{"name": "a"}], "instances[0] must be a dict with a url key"),
    (["10.0.0.1:30001", "http://10.0.0.1:30001/"], None, "instance http://10.0.0.1:30001 is listed twice"),
])
def test_instance_list_validation(urls, instances, message):
    with pytest.raises(ProbeError) as err:
        normalize_instances(urls=urls, instances=instances)
    assert message in str(err.value)


def test_probe_many_keeps_order_and_names(scripted_server):
    good, bad = scripted_server(), scripted_server()
    good.route("/model_info", 200, INFO_0523)
    items = normalize_instances(instances=[{"url": bad.url, "name": "b"}, {"url": good.url, "name": "g"}])
    results = probe_many(items, "liveness")
    assert [(r["name"], r["ok"]) for r in results] == [("b", False), ("g", True)]
    assert summarize(results) == {"all_ok": False, "healthy_count": 1, "total": 2}
    assert failure_report(results) == "b (%s): HTTP 404: {\"detail\":\"Not Found\"}" % bad.url


def test_wait_polls_until_the_server_comes_up(scripted_server):
    srv = scripted_server()
    calls = {"n": 0}

    def health(_handler):
        calls["n"] += 1
        return (200, b"", 0) if calls["n"] >= 3 else (503, b"", 0)

    srv.routes["/health"] = health
    items = normalize_instances(urls=[srv.url])
    results, attempts, elapsed = wait_until_ok(items, "health", wait_timeout=20, interval=0.05)
    assert results[0]["ok"] is True and attempts == 3 and calls["n"] == 3
    assert results[0]["attempts"] == 3 and elapsed < 20


def test_wait_does_not_reprobe_instances_that_passed(scripted_server):
    up, down = scripted_server(), scripted_server()
    up.route("/health", 200, b"")
    down.route("/health", 503, b"")
    items = normalize_instances(instances=[{"url": up.url, "name": "up"}, {"url": down.url, "name": "down"}])
    results, attempts, _elapsed = wait_until_ok(items, "health", wait_timeout=0.4, interval=0.05)
    assert attempts >= 2
    assert up.hits["/health"] == 1 and down.hits["/health"] == attempts
    assert [r["ok"] for r in results] == [True, False]
    assert failure_report(results) == "down (%s): HTTP 503 (starting, unhealthy or shutting down)" % down.url


def test_wait_with_a_fake_clock_stops_at_the_deadline():
    now = {"t": 0.0}
    sleeps = []

    def getter(url, headers, timeout):
        now["t"] += 1.0
        return 503, b"", None

    def sleep(seconds):
        sleeps.append(seconds)
        now["t"] += seconds

    items = normalize_instances(urls=["http://10.9.9.9:1"])
    results, attempts, elapsed = wait_until_ok(items, "ready", wait_timeout=10, interval=2, getter=getter,
                                               clock=lambda: now["t"], sleep=sleep)
    # /ready 503 is an answer (no fallback), so each round costs 1 s plus the 2 s interval
    assert results[0]["ok"] is False and results[0]["status"] == 503
    assert attempts == 4 and elapsed == 10.0 and sleeps == [2, 2, 2]


# ----------------------------------------------------------------------------- metrics

METRICS = r'''# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="tiny-chat",pp_rank="0",tp_rank="0"} 3.0
sglang:num_running_reqs{engine_type="unified",model_name="tiny-chat",pp_rank="0",tp_rank="1"} 2.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="tiny-chat",tp_rank="0"} 7
sglang:num_queue_reqs{model_name="tiny-chat",tp_rank="1"} 1
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="tiny-chat",tp_rank="0"} 0.25
sglang:token_usage{model_name="tiny-chat",tp_rank="1"} 0.5
sglang:cache_hit_rate{model_name="tiny-chat"} NaN
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="tiny-chat"} 1.5e3 1700000000000
# TYPE sglang:e2e_request_latency_seconds histogram
sglang:e2e_request_latency_seconds_bucket{le="0.1",model_name="tiny-chat"} 6.0
sglang:e2e_request_latency_seconds_bucket{le="+Inf",model_name="tiny-chat"} 9.0
sglang:e2e_request_latency_seconds_sum{model_name="tiny-chat"} 3.5
sglang:num_running_reqs{model_name="other"} 100
odd_label{path="C:\\dir",msg="say \"hi\"\nbye"} -Inf
'''


def test_prometheus_parser_reads_samples_types_and_escapes():
    parsed = parse_prometheus_text(METRICS)
    assert parsed["types"]["sglang:num_running_reqs"] == "gauge"
    assert parsed["types"]["sglang:e2e_request_latency_seconds"] == "histogram"
    assert parsed["help"]["sglang:num_running_reqs"] == "The number of running requests."
    first = parsed["samples"][0]
    assert first == {"name": "sglang:num_running_reqs", "value": 3.0, "timestamp_ms": None,
                     "labels": {"engine_type": "unified", "model_name": "tiny-chat", "pp_rank": "0", "tp_rank": "0"}}
    prompt = select(parsed["samples"], "sglang:prompt_tokens_total")[0]
    assert prompt["value"] == 1500.0 and prompt["timestamp_ms"] == 1700000000000
    inf_bucket = select(parsed["samples"], "sglang:e2e_request_latency_seconds_bucket", le="+Inf")
    assert inf_bucket[0]["value"] == 9.0
    odd = select(parsed["samples"], "odd_label")[0]
    assert odd["labels"] == {"path": "C:\\dir", "msg": 'say "hi"\nbye'} and odd["value"] == -math.inf
    assert math.isnan(select(parsed["samples"], "sglang:cache_hit_rate")[0]["value"])


def test_sglang_load_folds_ranks_per_model():
    load = sglang_load(METRICS, model_name="tiny-chat")
    assert load["num_running_reqs"] == 5.0      # requests add up over ranks
    assert load["num_queue_reqs"] == 8.0
    assert load["token_usage"] == 0.5           # ratios take the worst rank
    assert load["prompt_tokens_total"] == 1500.0
    assert "cache_hit_rate" not in load         # NaN means "no data yet"
    assert sglang_load(METRICS)["num_running_reqs"] == 105.0


@pytest.mark.parametrize("text,message", [
    ("sglang:num_running_reqs{model_name=x} 1\n", "line 1: cannot parse labels"),
    ("sglang:num_running_reqs{model_name=\"x\" 1\n", "line 1: not a sample"),
    ("sglang:num_running_reqs lots\n", "line 1: bad sample value 'lots'"),
    ("# fine\n{} 1\n", "line 2: not a sample"),
])
def test_prometheus_parser_rejects_garbage(text, message):
    with pytest.raises(MetricsParseError) as err:
        parse_prometheus_text(text)
    assert str(err.value).startswith(message)


def test_fetch_metrics(scripted_server):
    srv = scripted_server()
    srv.route("/metrics", 200, METRICS.encode())
    load, error = fetch_metrics(srv.url, api_key="k")
    assert error is None and load["num_running_reqs"] == 105.0
    off = scripted_server()
    load, error = fetch_metrics(off.url)
    assert load is None and error == "HTTP 404 (is the server started with --enable-metrics?)"
