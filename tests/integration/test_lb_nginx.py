"""The nginx_lb role's configuration on a real nginx in front of simulators of both supported
SGLang releases: /lb/health asks each pool the path its release has (issue 10, Must show 5),
and a client key reaches nothing but the allowlist (issue 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from ansible_collections.inferops.sglang.plugins.module_utils._topology import (
    pools_from_plans,
)

from tests.harness import lbrender
from tests.harness.procs import ROOT, free_port, simulator

BACKEND_KEY = "backend-key-0000000001"
CLIENT_KEY = "client-key-00000000001"
ADMIN_KEY = "admin-key-000000000001"
LBCHECK = [sys.executable, str(ROOT / "tests" / "harness" / "lbcheck.py")]
CLIENT_ROUTES = [{"path": "/v1/chat/completions"}, {"path": "/v1/completions"}, {"path": "/generate"},
                 {"path": "/v1/embeddings"}, {"path": "/v1/models"}, {"path": "/v1/models/", "prefix": True}]


def _auth(key):
    return {"Authorization": "Bearer " + key}


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    if not os.path.exists("/usr/sbin/nginx"):
        pytest.fail("nginx is not installed (scripts/bootstrap.sh installs nginx-light)")
    base = tmp_path_factory.mktemp("lb")
    sims = {}
    procs = []
    for release in ("0.5.6", "0.5.23"):
        for index in range(2):
            port = free_port()
            procs.append(simulator(port, base / f"sim-{release}-{index}.log", "--sim-version", release,
                                   "--api-key", BACKEND_KEY, "--sim-admin", "--enable-metrics",
                                   "--served-model-name", "tiny-chat"))
            sims.setdefault(release, []).append(f"127.0.0.1:{port}")
    # The pools as site.yml makes them: from each node's instance plan, which carries the release.
    nodes = [{"name": f"node-{release}", "address": "127.0.0.1",
              "plan": [{"deployment": "old" if release == "0.5.6" else "new", "host_port": int(a.split(":")[1]),
                        "sglang_version": release} for a in addresses]}
             for release, addresses in sims.items()]
    pools = pools_from_plans(nodes)
    # The mistake this guards against: asking a 0.5.6 pool for /ready.
    pools.append({"name": "wrong", "servers": [{"address": a} for a in sims["0.5.6"]], "health_path": "/ready"})
    port, status_port = free_port(), free_port()
    conf = lbrender.render(base, {
        "nginx_lb_pools": pools, "nginx_lb_listen_port": port, "nginx_lb_stub_status_port": status_port,
        "nginx_lb_api_keys": [{"name": "tester", "key": CLIENT_KEY, "rate": "1000r/s", "burst": 1000}],
        "nginx_lb_backend_api_key": BACKEND_KEY, "nginx_lb_admin_api_key": ADMIN_KEY,
        "nginx_lb_client_routes": CLIENT_ROUTES,
    })
    nginx = lbrender.PrivateNginx(conf).start(port)
    yield {"url": f"http://127.0.0.1:{port}", "sims": sims, "pools": pools, "log": base / "access.log"}
    nginx.stop()
    for proc in procs:
        proc.stop()


def _health_counts(sims):
    return [requests.get(f"http://{s}/_sim/state", headers=_auth(BACKEND_KEY), timeout=5).json()["health_checks"]
            for s in sims]


def _fault(sims, mode):
    for sim in sims:
        assert requests.post(f"http://{sim}/_sim/fault", json={"mode": mode}, headers=_auth(BACKEND_KEY),
                             timeout=5).status_code == 200


def test_each_pool_is_asked_the_health_path_its_release_has(lb):
    paths = {pool["name"]: pool["health_path"] for pool in lb["pools"]}
    assert paths == {"old": "/health", "new": "/ready", "wrong": "/ready"}
    before = {release: _health_counts(sims) for release, sims in lb["sims"].items()}
    time.sleep(1.1)  # past the cache interval of earlier answers
    assert requests.get(lb["url"] + "/lb/health/old", timeout=10).status_code == 200
    assert requests.get(lb["url"] + "/lb/health/new", timeout=10).status_code == 200
    after = {release: _health_counts(sims) for release, sims in lb["sims"].items()}
    probed_old = sum(a["/health"] - b["/health"] for a, b in zip(after["0.5.6"], before["0.5.6"]))
    probed_new = sum(a["/ready"] - b["/ready"] for a, b in zip(after["0.5.23"], before["0.5.23"]))
    assert probed_old == 1 and probed_new == 1
    # The newer release is never asked for a generation by /lb/health.
    assert sum(a["/health"] - b["/health"] for a, b in zip(after["0.5.23"], before["0.5.23"])) == 0


def test_asking_a_0_5_6_pool_for_ready_would_report_it_down_forever(lb):
    time.sleep(1.1)
    assert requests.get(lb["url"] + "/lb/health/old", timeout=10).status_code == 200
    wrong = requests.get(lb["url"] + "/lb/health/wrong", timeout=10)
    assert wrong.status_code == 503 and wrong.json() == {"status": "unavailable", "pool": "wrong"}


def test_health_is_503_once_every_instance_of_the_pool_hangs(lb):
    _fault(lb["sims"]["0.5.23"], "hang")
    try:
        time.sleep(1.1)
        started = time.monotonic()
        answer = requests.get(lb["url"] + "/lb/health/new", timeout=30)
        assert answer.status_code == 503
        assert time.monotonic() - started < 10  # bounded by nginx_lb_health_total_timeout
        assert requests.get(lb["url"] + "/lb/health/old", timeout=10).status_code == 200
    finally:
        _fault(lb["sims"]["0.5.23"], "none")


def test_a_client_key_reaches_only_the_allowlist(lb):
    env = dict(os.environ, LBT_KEY=CLIENT_KEY)
    done = subprocess.run([*LBCHECK, "attack", "--url", lb["url"], "--routes-file",
                           str(ROOT / "tests" / "fixtures" / "sglang-0.5.6-routes.txt"),
                           "--client-routes", json.dumps(CLIENT_ROUTES), "--pools", "old", "new"],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    attempts = json.loads(done.stdout)["attempts"]
    keyed = [a for a in attempts if a["keyed"]]
    assert {a["status"] for a in keyed} <= {403, 404}
    assert {a["status"] for a in attempts if not a["keyed"]} <= {401, 429}
    ids = {a["request_id"] for a in attempts}
    lines = [json.loads(line) for line in Path(lb["log"]).read_text().splitlines()]
    mine = [line for line in lines if line["request_id"] in ids]
    assert len(mine) == len(attempts)
    assert [line["uri"] for line in mine if line["upstream_addr"]] == []
    # While the allowed routes do reach an instance, and the admin key opens the operator routes.
    models = requests.get(lb["url"] + "/pools/new/v1/models", headers=_auth(CLIENT_KEY), timeout=10)
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "tiny-chat"
    info = requests.get(lb["url"] + "/pools/new/server_info", headers=_auth(ADMIN_KEY), timeout=10)
    assert info.status_code == 200 and info.json()["version"] == "0.5.23"
    assert BACKEND_KEY not in info.text
