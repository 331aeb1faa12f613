from __future__ import annotations

import json

from ansible_collections.inferops.sglang.plugins.modules import sglang_probe

INFO = {"model_path": "/models/tiny-chat", "served_model_name": "tiny-chat"}


def test_single_url_liveness(scripted_server, run_module):
    srv = scripted_server()
    srv.route("/model_info", 200, INFO)
    out = run_module(sglang_probe.main, {"url": srv.url})
    assert "failed" not in out and out["changed"] is False
    assert out["all_ok"] is True and out["healthy_count"] == 1 and out["total"] == 1
    inst = out["instances"][0]
    assert inst["url"] == srv.url and inst["served_model_name"] == "tiny-chat" and inst["status"] == 200


def test_check_mode_probes_too(scripted_server, run_module):
    srv = scripted_server()
    srv.route("/health", 200, b"")
    out = run_module(sglang_probe.main, {"urls": [srv.url], "check": "health"}, check_mode=True)
    assert out["all_ok"] is True and srv.hits == {"/health": 1}


def test_failing_instance_fails_the_task_with_its_name(scripted_server, run_module):
    good, bad = scripted_server(), scripted_server()
    good.route("/health", 200, b"")
    bad.route("/health", 503, b"")
    out = run_module(sglang_probe.main, {"check": "health", "instances": [
        {"name": "sglang-chat-1", "url": good.url}, {"name": "sglang-chat-2", "url": bad.url}]})
    assert out["failed"] is True
    assert out["msg"] == ("1 of 2 instances failed health: sglang-chat-2 (%s): HTTP 503 (starting, unhealthy or "
                          "shutting down)" % bad.url)
    assert [i["ok"] for i in out["instances"]] == [True, False] and out["healthy_count"] == 1


def test_fail_on_error_false_reports_without_failing(scripted_server, run_module):
    bad = scripted_server()
    bad.route("/ready", 503, b"")
    out = run_module(sglang_probe.main, {"url": bad.url, "check": "ready", "fail_on_error": False})
    assert "failed" not in out and out["all_ok"] is False and out["instances"][0]["status"] == 503


def test_wait_fails_listing_every_failing_instance(scripted_server, run_module):
    a, b = scripted_server(), scripted_server()
    a.route("/health_generate", 503, b"")
    out = run_module(sglang_probe.main, {
        "instances": [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}],
        "check": "health_generate", "wait": True, "wait_timeout": 0.5, "interval": 0.1})
    assert out["failed"] is True
    assert out["msg"].startswith("2 of 2 instances did not pass health_generate within 0.5s: ")
    assert "a (%s): HTTP 503" % a.url in out["msg"] and "b (%s): HTTP 404" % b.url in out["msg"]
    assert out["elapsed"] >= 0.5 and out["instances"][0]["attempts"] >= 2


def test_wait_succeeds_and_checks_the_model(scripted_server, run_module):
    srv = scripted_server()
    srv.route("/health", 200, b"")
    srv.route("/model_info", 200, INFO)
    out = run_module(sglang_probe.main, {"url": srv.url, "check": "health", "wait": True,
                                         "expect_model": "tiny-chat", "wait_timeout": 5})
    assert "failed" not in out and out["all_ok"] is True and out["instances"][0]["served_model_name"] == "tiny-chat"


def test_api_key_is_not_in_the_output(scripted_server, run_module):
    srv = scripted_server()
    srv.route("/model_info", 401, {"error": "Unauthorized"})
    out = run_module(sglang_probe.main, {"url": srv.url, "api_key": "sk-very-secret"})
    assert out["failed"] is True and "api_key" in out["msg"]
    assert "sk-very-secret" not in json.dumps(out)
    assert srv.auth_headers == ["Bearer sk-very-secret"]


def test_argument_errors(run_module):
    out = run_module(sglang_probe.main, {"url": "http://a:1", "urls": ["http://b:1"]})
    assert out["failed"] is True and "mutually exclusive" in out["msg"]
    out = run_module(sglang_probe.main, {})
    assert out["failed"] is True and "one of the following is required" in out["msg"]
    out = run_module(sglang_probe.main, {"url": "http://a:1", "check": "deep"})
    assert out["failed"] is True and "check" in out["msg"] and "liveness" in out["msg"]
    out = run_module(sglang_probe.main, {"urls": ["ftp://x"]})
    assert out["failed"] is True and out["msg"].startswith("urls: url 'ftp://x': only http and https")
    out = run_module(sglang_probe.main, {"url": "http://a:1", "timeout": 0})
    assert out["failed"] is True and out["msg"].startswith("timeout must be a positive number")
