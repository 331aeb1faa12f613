"""--api-key and --admin-api-key, with SGLang 0.5.23's exemptions and admin routes."""

from __future__ import annotations

import requests
from conftest import FAST

KEY = "test-api-key-not-a-secret"
ADMIN = "test-admin-key-not-a-secret"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_api_key_rules(sim_factory):
    sim = sim_factory(*FAST, "--api-key", KEY, "--enable-metrics")
    # Probes and scraping need no key.
    for path in ("/health", "/health_generate", "/ready", "/metrics"):
        assert sim.get(path).status_code == 200, path
    # Everything else does, including /ping and paths that do not exist.
    for method, path in (("POST", "/generate"), ("POST", "/v1/chat/completions"),
                         ("GET", "/v1/models"), ("GET", "/model_info"),
                         ("GET", "/server_info"), ("GET", "/ping"), ("GET", "/nope"),
                         ("GET", "/flush_cache")):
        r = requests.request(method, sim.url + path, json={}, timeout=10)
        assert r.status_code == 401, path
        assert r.json() == {"error": "Unauthorized"}
    body = {"text": "x", "sampling_params": {"max_new_tokens": 1}}
    assert sim.post("/generate", body, headers=bearer("wrong")).status_code == 401
    assert sim.post("/generate", body, headers={"Authorization": KEY}).status_code == 401
    assert sim.post("/generate", body, headers=bearer(KEY)).status_code == 200
    # The scheme is case-insensitive in 0.5.23.
    assert sim.post("/generate", body, headers={"Authorization": f"bearer {KEY}"}
                    ).status_code == 200
    assert sim.get("/v1/models", headers=bearer(KEY)).status_code == 200
    # CORS preflights pass.
    assert requests.options(sim.url + "/generate", timeout=10).status_code != 401
    # The key is never echoed.
    info = sim.get("/server_info", headers=bearer(KEY))
    assert KEY not in info.text
    assert info.json()["api_key"] == "<redacted>"
    assert KEY not in sim.log()


def test_admin_key_guards_admin_routes_only(sim_factory):
    sim = sim_factory(*FAST, "--api-key", KEY, "--admin-api-key", ADMIN)
    # Admin routes: the admin key, and not the API key.
    assert sim.post("/flush_cache", headers=bearer(KEY)).status_code == 401
    assert sim.post("/flush_cache", headers=bearer(ADMIN)).status_code == 200
    assert sim.post("/abort_request", {"rid": "x"}, headers=bearer(KEY)).status_code == 401
    assert sim.post("/abort_request", {"rid": "x"}, headers=bearer(ADMIN)).status_code == 200
    # Normal routes: the API key, and not the admin key.
    body = {"text": "x", "sampling_params": {"max_new_tokens": 1}}
    assert sim.post("/generate", body, headers=bearer(ADMIN)).status_code == 401
    assert sim.post("/generate", body, headers=bearer(KEY)).status_code == 200


def test_admin_key_alone_leaves_normal_routes_open(sim_factory):
    sim = sim_factory(*FAST, "--admin-api-key", ADMIN)
    assert sim.post("/generate", {"text": "x", "sampling_params": {"max_new_tokens": 1}}
                    ).status_code == 200
    assert sim.post("/flush_cache").status_code == 401
    assert sim.post("/flush_cache", headers=bearer(ADMIN)).status_code == 200
