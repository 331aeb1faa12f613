"""The readiness checklist (issue 11, item 6) against real peers on 127.0.0.1: simulators of both
supported SGLang releases behind the nginx_lb role's configuration on a real nginx, and a Redis
master with a replica and three Sentinels (the redis role's ACL files). The GPU nodes' Docker is
the one stand-in: its ``docker inspect`` documents are written from the plan, as the role
creates the containers (the pure isolation and memory checks have their own unit tables).

It proves the checklist passes on a consistent deployment, and that the determinism check fails
(naming itself and the instance) when one instance of a pool runs with another seed or serves
another model, and the Sentinel check when one Sentinel follows another master.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.inferops.sglang.plugins.module_utils import _readiness as rd
from ansible_collections.inferops.sglang.plugins.module_utils._agent import Agent
from ansible_collections.inferops.sglang.plugins.module_utils._agent_config import (
    agent_config,
)
from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import (
    LABELS,
)
from ansible_collections.inferops.sglang.plugins.module_utils._leases import (
    read_events,
)
from ansible_collections.inferops.sglang.plugins.module_utils._nginx_upstreams import (
    normalize_pools,
)
from ansible_collections.inferops.sglang.plugins.module_utils._operations import (
    Fleet,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    AGENT_USER,
    SENTINEL_USER,
    RedisClient,
)
from ansible_collections.inferops.sglang.plugins.module_utils._topology import (
    pools_from_plans,
)
from ansible_collections.inferops.sglang.plugins.modules import sglang_readiness

from tests.harness import lbrender
from tests.harness.procs import free_port, redis_server, simulator
from tests.harness.redisset import MASTER_NAME, PASSWORDS, RedisSet

KEY = "instance-api-key-0000001"
LB_KEY = "client-key-000000000001"
# Fast generations: 100 structured requests take a second or two.
SIM_ARGS = ("--api-key", KEY, "--enable-metrics", "--sim-decode-ms", "1", "--sim-decode-ms-per-req", "0")
GPUS = [{"index": 0, "memory_total_mib": 24576}]


def sentinel_lines(master_port):
    return [f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1",
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
            f"sentinel failover-timeout {MASTER_NAME} 5000",
            f"sentinel auth-user {MASTER_NAME} {SENTINEL_USER}",
            f"sentinel auth-pass {MASTER_NAME} {PASSWORDS['sentinel']}",
            f"sentinel sentinel-user {SENTINEL_USER}", f"sentinel sentinel-pass {PASSWORDS['sentinel']}"]


def docker_inspect(item):
    """What ``docker inspect`` reports for an instance container the sglang role made from ``item``."""
    cid = hashlib.sha256(item["name"].encode()).hexdigest()
    return {"Id": cid, "Name": "/" + item["name"], "LogPath": f"/var/lib/docker/containers/{cid}/{cid}-json.log",
            "State": {"Running": True, "Status": "running"},
            "HostConfig": {"PortBindings": {"30000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(item["host_port"])}]},
                           "DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": item["device_ids"]}]
                           if item["device_ids"] else None, "LogConfig": {"Type": "json-file"}},
            "Config": {"Labels": item["labels"], "Entrypoint": None,
                       "Cmd": ["python3", "-c", "shim", "--port", "30000",
                               "--mem-fraction-static", str(item["mem_fraction_static"]), "--enable-metrics"]}}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("readiness")
    redis = RedisSet(base / "redis")
    sentinel_acl = f"aclfile {base / 'redis' / 'sentinel.acl'}"
    sentinels = [redis_server(base / f"sentinel{k}", [sentinel_acl, *sentinel_lines(redis.port)], sentinel=True)
                 for k in (2, 3)]
    procs = []
    plans = {"n1": [], "n2": []}
    for node, plan in plans.items():
        # chat: one instance on the node's GPU 0, SGLang 0.5.6; sb: active-standby, no GPU, 0.5.23.
        for deployment, mode, version, gpus in (("chat", "active_active", "0.5.6", ["0"]),
                                                ("sb", "active_standby", "0.5.23", [])):
            port = free_port()
            name = f"sglang-{deployment}-{node}"
            procs.append(simulator(port, base / f"{name}.log", "--sim-version", version, *SIM_ARGS))
            plan.append({"name": name, "deployment": deployment, "pool": deployment, "mode": mode, "host_port": port,
                         "sglang_version": version, "device_ids": gpus, "start_order": 0, "tp_size": 1,
                         "mem_fraction_static": 0.85, "memory_share": 0.85, "deployment_path": "sglang_deployments[0]",
                         "labels": {LABELS["managed"]: "true", LABELS["pool"]: deployment, LABELS["gpus"]: ",".join(gpus)}})
    pools = pools_from_plans([{"name": node, "address": "127.0.0.1", "plan": plan} for node, plan in plans.items()])
    lb_port = free_port()
    conf = lbrender.render(base / "lb", {
        "nginx_lb_pools": pools, "nginx_lb_listen_port": lb_port, "nginx_lb_stub_status_port": free_port(),
        "nginx_lb_api_keys": [{"name": "tester", "key": LB_KEY, "rate": "100r/s", "burst": 100}],
        "nginx_lb_backend_api_key": KEY, "nginx_lb_upstream_keepalive_probes": False})
    nginx = lbrender.PrivateNginx(conf).start(lb_port)
    (base / "sentinel-password").write_text(PASSWORDS["client"])
    (base / "agent-password").write_text(PASSWORDS["agent"])
    paths = {"sentinel_password_file": str(base / "sentinel-password"), "password_file": str(base / "agent-password"),
             "state_file": str(base / "state.json"), "event_log": str(base / "events.jsonl"), "listen": "127.0.0.1:1"}
    sentinel_ports = [redis.sentinel_port] + [port for dummy, port in sentinels]
    built = agent_config("lb1", {}, [f"127.0.0.1:{port}" for port in sentinel_ports], paths, pools=pools, lb={
        "pools": normalize_pools(pools), "upstreams_dir": str(base / "lb" / "conf" / "upstreams"),
        "test_command": ["true"], "reload_command": ["true"]})
    assert built["errors"] == []
    nodes = [{"name": node, "plan": plan, "containers": [docker_inspect(item) for item in plan], "gpus": GPUS,
              "health_path": "/health"} for node, plan in plans.items()]
    config_file = base / "agent.json"
    config_file.write_text(json.dumps(built["config"]))
    yield {"base": base, "config": built["config"], "config_file": config_file, "nodes": nodes, "redis": redis,
           "sentinel_ports": sentinel_ports, "lb_url": f"http://127.0.0.1:{lb_port}", "plans": plans}
    nginx.stop()
    for proc in procs:
        proc.stop()
    for proc, dummy in sentinels:
        proc.stop()
    redis.stop()


def run(deployment, config=None, checks=rd.CHECKS, **options):
    options.setdefault("structured_budget", 60.0)
    options.setdefault("request_timeout", 15.0)
    return rd.run_checklist(config or deployment["config"], deployment["nodes"], KEY, checks,
                            lb_url=deployment["lb_url"], **options)


def by_check(results):
    return {r["check"]: r for r in results}


def test_every_check_passes_on_a_consistent_deployment(deployment):
    results = run(deployment)
    table = "\n".join(rd.format_table(results))
    assert [r["check"] for r in results] == list(rd.CHECKS)
    assert rd.failed_checks(results) == [], table
    checks = by_check(results)
    assert "chat: 2 instance(s) agree: model sim/tiny" in checks["determinism"]["evidence"]
    assert "sb: 2 instance(s) agree" in checks["determinism"]["evidence"]
    assert checks["structured_output"]["evidence"].startswith(
        "100/100 requests parsed and conformed to the schema, over 4 instance(s)")
    master = deployment["redis"].port
    assert f"3 Sentinel(s) agree: master of inferops is 127.0.0.1:{master}" in checks["sentinels"]["evidence"]
    assert f"ROLE replica of 127.0.0.1:{master} (connected)" in checks["sentinels"]["evidence"]
    assert "/lb/health/sb 200" in checks["lb_health"]["evidence"]
    assert "GPU 0 (24576 MiB): sglang-chat-n1 0.85" in checks["memory"]["evidence"]
    assert table.splitlines()[-1] == "7 of 7 checks passed"


def with_instance(deployment, pool, node, address):
    """The agent configuration with one server of ``pool`` on ``node`` moved to ``address``."""
    config = copy.deepcopy(deployment["config"])
    for entry in config["lb"]["pools"]:
        for server in entry["servers"]:
            if entry["name"] == pool and server["node"] == node:
                server["address"] = address
    return config


@pytest.mark.parametrize("args, evidence", [
    (("--sim-seed", "7"), "chat: n2/sglang-chat-n2 answered"),
    (("--model-path", "sim/other"), "chat: n2/sglang-chat-n2 serves model 'sim/other', n1/sglang-chat-n1 'sim/tiny'"),
])
def test_determinism_fails_when_one_instance_runs_another_seed_or_model(deployment, args, evidence):
    port = free_port()
    # The same release and flags as the pool's others; only the seed or the model differs.
    odd = simulator(port, deployment["base"] / f"odd-{port}.log", "--sim-version", "0.5.6", *SIM_ARGS, *args)
    try:
        results = run(deployment, with_instance(deployment, "chat", "n2", f"127.0.0.1:{port}"),
                      checks=["determinism", "instance_health"])
    finally:
        odd.stop()
    assert rd.failed_checks(results) == ["determinism"]
    determinism = by_check(results)["determinism"]
    assert evidence in determinism["evidence"]
    # The other pool is still reported as consistent.
    assert "sb: 2 instance(s) agree" in determinism["evidence"]
    assert rd.format_table(results)[-1] == "1 of 2 checks passed; FAILED: determinism"


def sentinel_admin(port):
    return RedisClient("127.0.0.1", port, username=SENTINEL_USER, password=PASSWORDS["sentinel"], timeout=2)


def monitor(client, port):
    client.execute("SENTINEL", "REMOVE", MASTER_NAME)
    client.execute("SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", port, 1)
    client.execute("SENTINEL", "SET", MASTER_NAME, "auth-user", SENTINEL_USER, "auth-pass", PASSWORDS["sentinel"],
                   "down-after-milliseconds", 1000)


def test_sentinels_fail_when_one_sentinel_follows_another_master(deployment):
    redis = deployment["redis"]
    # Another Redis with the same users, standing alone: the third Sentinel is told to follow it.
    rogue, rogue_port = redis_server(deployment["base"] / "rogue", [f"aclfile {deployment['base'] / 'redis' / 'redis.acl'}"])
    admin = sentinel_admin(deployment["sentinel_ports"][2])
    try:
        monitor(admin, rogue_port)
        results = run(deployment, checks=["sentinels", "lb_health"])
    finally:
        monitor(admin, redis.port)
        admin.close()
        rogue.stop()
    assert rd.failed_checks(results) == ["sentinels"]
    evidence = by_check(results)["sentinels"]["evidence"]
    first, second, third = deployment["sentinel_ports"]
    assert (f"the Sentinels disagree on the master of inferops: 127.0.0.1:{redis.port} by 127.0.0.1:{first}, "
            f"127.0.0.1:{second}; 127.0.0.1:{rogue_port} by 127.0.0.1:{third}") in evidence
    assert f"127.0.0.1:{rogue_port}: ROLE master, 0 replica(s)" in evidence
    # Restored: they agree again.
    assert by_check(run(deployment, checks=["sentinels"]))["sentinels"]["ok"]


@pytest.fixture
def run_module(capsys):
    def call(args, check_mode=False):
        with patch_module_args(dict(args, _ansible_check_mode=check_mode)), pytest.raises(SystemExit):
            sglang_readiness.main()
        return capsys.readouterr().out

    return call


def test_the_module_reads_the_agents_configuration_and_skips_the_drill_in_check_mode(deployment, run_module):
    out = run_module({"agent_config": str(deployment["config_file"]), "api_key": KEY, "nodes": deployment["nodes"],
                      "checks": ["instance_health", "lb_health", "sentinels", "memory"], "lb_url": deployment["lb_url"],
                      "drill": True, "drill_pool": "sb"}, check_mode=True)
    assert KEY not in out  # no_log: the key is never in the module's output
    result = json.loads(out)
    assert result["changed"] is False and result["failed_checks"] == [] and result["all_passed"] is True
    assert [c["check"] for c in result["checks"]] == ["instance_health", "lb_health", "sentinels", "memory",
                                                      "failover_drill"]
    assert result["checks"][-1]["skipped"] and "check mode: the drill on pool sb" in result["checks"][-1]["evidence"]
    assert result["msg"] == "readiness: 4 of 4 checks passed (1 skipped)"


def test_the_module_refuses_bad_input_naming_the_option(deployment, run_module):
    out = json.loads(run_module({"agent_config": str(deployment["config_file"]), "drill": True, "drill_pool": "chat",
                                 "checks": ["sentinels"]}))
    assert out["failed"] and out["msg"].startswith("drill_pool: chat is active_active")
    out = json.loads(run_module({"agent_config": str(deployment["config_file"]), "checks": ["isolation"]}))
    assert out["failed"] and out["msg"].startswith("nodes: empty; the isolation check(s) need")


# ---- the drill, with the HA agents running (last: it moves the sb lease) ------------------------
TIMING = {"loop": 0.5, "lease_ttl": 2.0, "lease_margin": 0.5, "cheap_timeout": 0.4, "deep_interval": 1.0,
          "deep_timeout": 2.0, "fall": 2, "rise": 2, "start_timeout": 10.0, "backoff_min": 2.0, "backoff_max": 8.0,
          "record_ttl": 2.0, "wait_replicas": 1, "wait_timeout_ms": 500}


class RunningDocker:
    """Docker on the GPU nodes, for the agents: every instance's container runs (the simulators do)."""

    def __init__(self):
        self.restarted = []

    def running(self, names):
        return dict.fromkeys(names, True)

    def restart(self, name):
        self.restarted.append(name)


def eventually(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached within {timeout:g}s"
        time.sleep(0.2)


@pytest.fixture
def agents(deployment):
    base = deployment["base"]
    sentinels = [f"127.0.0.1:{port}" for port in deployment["sentinel_ports"]]
    pools = deployment["config"]["lb"]["pools"]
    docker = RunningDocker()
    started = []

    def start(node, **extra):
        paths = {"sentinel_password_file": str(base / "sentinel-password"), "password_file": str(base / "agent-password"),
                 "state_file": str(base / f"{node}-state.json"), "event_log": str(base / f"{node}-events.jsonl"),
                 "listen": f"127.0.0.1:{free_port()}"}
        built = agent_config(node, TIMING, sentinels, paths, service_address="127.0.0.1", pools=pools, **extra)
        assert built["errors"] == []
        agent = Agent(built["config"], docker=docker)
        thread = threading.Thread(target=agent.run, name=node, daemon=True)
        thread.start()
        started.append((agent, thread))

    for node, plan in deployment["plans"].items():
        start(node, plan=plan)
    start("lb1", lb=dict(deployment["config"]["lb"], upstreams_dir=str(base / "drill-upstreams")))
    (base / "drill-upstreams").mkdir(exist_ok=True)
    yield docker
    for agent, thread in started:
        agent.stopping.set()
        thread.join(10)


def test_the_drill_moves_the_standby_pools_lease_and_times_the_takeover(deployment, agents, run_module):
    client = RedisClient("127.0.0.1", deployment["redis"].port, username=AGENT_USER, password=PASSWORDS["agent"],
                         timeout=2)
    fleet = Fleet(client, deployment["config"]["lb"]["pools"], ["lb1"])
    try:
        # Both sb instances healthy and a leader elected, as in production before a drill.
        eventually(lambda: fleet.lease("sb")[0] is not None and all(
            i["serving"] for p in fleet.status()["pools"] if p["name"] == "sb" for i in p["instances"]))
        leader, epoch = fleet.lease("sb")
        out = json.loads(run_module({"agent_config": str(deployment["config_file"]), "checks": ["sentinels"],
                                     "drill": True, "load_balancers": ["lb1"], "by": "pytest", "drill_timeout": 20}))
        drill = out["checks"][-1]
        assert out["changed"] is True and out["failed_checks"] == [], out["table"]
        standby = "n2" if leader == "n1" else "n1"
        assert drill["check"] == "failover_drill" and not drill.get("skipped")
        assert drill["evidence"].startswith(f"pool sb: the lease moved from {leader} to {standby} (epoch ")
        takeover = float(drill["evidence"].split("takeover ")[1].split(" s")[0])
        assert 0 < takeover < 20
        holder, new_epoch = fleet.lease("sb")
        assert holder == standby and new_epoch > epoch
        event = [e for e in read_events(client, 50) if e["type"] == "FAILOVER"][-1]
        assert event["by"] == "pytest" and event["reason"] == "readiness drill" and event["to"] == standby
    finally:
        client.close()
    assert agents.restarted == []
