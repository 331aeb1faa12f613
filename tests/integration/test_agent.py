"""The HA agent's whole loop on real peers, fast: a Redis set with a Sentinel, simulators of both
supported SGLang releases, and the role's nginx configuration on a real nginx, all private
processes on 127.0.0.1. Two GPU-node agents and one load-balancer agent run in threads with
short timings. "Containers" are simulator processes that a stand-in for Docker kills and
starts again (the molecule scenario drills the same faults on real containers, under load).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests
from ansible_collections.inferops.sglang.plugins.module_utils._agent import Agent
from ansible_collections.inferops.sglang.plugins.module_utils._agent_config import (
    agent_config,
)
from ansible_collections.inferops.sglang.plugins.module_utils._leases import (
    EPOCH_KEY,
    instance_key,
    leader_key,
    read_events,
)
from ansible_collections.inferops.sglang.plugins.module_utils._nginx_upstreams import (
    normalize_pools,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    AGENT_USER,
    RedisClient,
)
from ansible_collections.inferops.sglang.plugins.module_utils._topology import (
    pools_from_plans,
)

from tests.harness import lbrender
from tests.harness.procs import free_port, simulator
from tests.harness.redisset import PASSWORDS, RedisSet

KEY = "client-key-00000000001"
TIMING = {"loop": 0.5, "lease_ttl": 2.0, "lease_margin": 0.5, "cheap_timeout": 0.4, "deep_interval": 1.0,
          "deep_timeout": 2.0, "fall": 2, "rise": 2, "start_timeout": 10.0, "backoff_min": 2.0, "backoff_max": 8.0,
          "record_ttl": 2.0, "wait_replicas": 1, "wait_timeout_ms": 500}
# Pool fb has failback: auto with this hold-down (seconds); n1 is its preferred leader (first node).
HOLD_DOWN = 4


class ProcessDocker:
    """Stands in for Docker: a "container" is a simulator process on a fixed port."""

    def __init__(self, base):
        self.base = base
        self.specs = {}
        self.procs = {}
        self.restarts = {}

    def add(self, name, port, *args):
        self.specs[name] = (port, args)
        self.procs[name] = simulator(port, self.base / f"{name}.log", *args)

    def running(self, names):
        return {name: name in self.procs and self.procs[name].alive() for name in names}

    def restart(self, name):
        self.procs[name].stop()
        port, args = self.specs[name]
        self.procs[name] = simulator(port, self.base / f"{name}-{self.restarts.get(name, 0) + 1}.log", *args)
        self.restarts[name] = self.restarts.get(name, 0) + 1

    def kill(self, name):
        self.procs[name].stop()

    def stop(self):
        for proc in self.procs.values():
            proc.stop()


def eventually(check, timeout=15.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:g}s: {value!r}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    base = tmp_path_factory.mktemp("agents")
    redis = RedisSet(base / "redis")
    docker = ProcessDocker(base)
    plans = {"n1": [], "n2": []}
    for node, plan in plans.items():
        for deployment, mode, version, failback in (("chat", "active_active", "0.5.6", "off"),
                                                    ("sb", "active_standby", "0.5.23", "off"),
                                                    ("fb", "active_standby", "0.5.23", "auto")):
            port = free_port()
            name = f"{node}-{deployment}"
            docker.add(name, port, "--sim-version", version, "--enable-metrics", "--sim-admin", "--sim-decode-ms", "5")
            plan.append({"name": name, "deployment": deployment, "pool": deployment, "mode": mode,
                         "failback": failback, "failback_hold_down": HOLD_DOWN,
                         "host_port": port, "sglang_version": version, "device_ids": [], "start_order": 0,
                         "deployment_path": "sglang_deployments[0]"})
    nodes = [{"name": node, "address": "127.0.0.1", "plan": plan} for node, plan in plans.items()]
    pools = pools_from_plans(nodes)
    for secret in ("sentinel", "agent"):
        (base / secret).write_text(PASSWORDS["client" if secret == "sentinel" else "agent"])
    lb_port, status_port = free_port(), free_port()
    conf = lbrender.render(base / "lb", {
        "nginx_lb_pools": pools, "nginx_lb_listen_port": lb_port, "nginx_lb_stub_status_port": status_port,
        "nginx_lb_api_keys": [{"name": "tester", "key": KEY, "rate": "1000r/s", "burst": 1000}],
        "nginx_lb_upstreams_owner": "agent", "nginx_lb_upstream_keepalive_probes": False,
    })
    nginx = lbrender.PrivateNginx(conf).start(lb_port)
    agents = {}

    def config(node, plan=None, lb=None):
        paths = {"sentinel_password_file": str(base / "sentinel"), "password_file": str(base / "agent"),
                 "state_file": str(base / f"{node}-state.json"), "event_log": str(base / f"{node}-events.jsonl"),
                 "listen": f"127.0.0.1:{free_port()}"}
        built = agent_config(node, TIMING, [f"127.0.0.1:{redis.sentinel_port}"], paths, plan=plan,
                             service_address="127.0.0.1", pools=pools, lb=lb)
        assert built["errors"] == []
        return built["config"]

    def start(node, cfg):
        agent = Agent(cfg, docker=docker)
        thread = threading.Thread(target=agent.run, name=node, daemon=True)
        thread.start()
        agents[node] = (agent, thread)
        return agent

    lb_cfg = config("lb1", lb={"pools": normalize_pools(pools), "upstreams_dir": str(base / "lb" / "conf" / "upstreams"),
                               "test_command": ["/usr/sbin/nginx", "-t", "-c", str(conf)],
                               "reload_command": ["/usr/sbin/nginx", "-s", "reload", "-c", str(conf)]})
    for node, plan in plans.items():
        start(node, config(node, plan=plan))
    start("lb1", lb_cfg)
    admin = redis.admin()
    yield {"redis": redis, "docker": docker, "agents": agents, "start": start, "lb_cfg": lb_cfg, "admin": admin,
           "upstreams": base / "lb" / "conf" / "upstreams", "url": f"http://127.0.0.1:{lb_port}", "plans": plans}
    for agent, thread in agents.values():
        agent.stopping.set()
        thread.join(10)
    admin.close()
    nginx.stop()
    docker.stop()
    redis.stop()


def rendered(fleet, pool):
    """{address: state} from the upstream file on disk (what nginx runs)."""
    text = (fleet["upstreams"] / f"upstream-{pool}.conf").read_text()
    states = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("server "):
            address = line.split()[1]
            states[address] = "down" if " down" in line else "backup" if " backup" in line else "primary"
    return states


def address(fleet, node, deployment):
    plan = next(i for i in fleet["plans"][node] if i["deployment"] == deployment)
    return f"127.0.0.1:{plan['host_port']}"


def events(fleet):
    client = RedisClient("127.0.0.1", fleet["redis"].port, username=AGENT_USER, password=PASSWORDS["agent"], timeout=2)
    try:
        return read_events(client, 200)
    finally:
        client.close()


def holder(fleet, pool):
    value = fleet["admin"].execute("GET", leader_key(pool))
    return value.rsplit(":", 1)[0] if value else None


def test_steady_state_one_leader_and_every_chat_instance_primary(fleet):
    eventually(lambda: holder(fleet, "sb") in ("n1", "n2"))
    leader = holder(fleet, "sb")
    standby = "n2" if leader == "n1" else "n1"
    eventually(lambda: rendered(fleet, "sb") == {address(fleet, leader, "sb"): "primary",
                                                 address(fleet, standby, "sb"): "backup"})
    assert set(rendered(fleet, "chat").values()) == {"primary"}
    answer = requests.post(fleet["url"] + "/pools/sb/generate", json={"text": "hi", "sampling_params": {"max_new_tokens": 2}},
                           headers={"Authorization": "Bearer " + KEY}, timeout=10)
    assert answer.status_code == 200
    kinds = [e["type"] for e in events(fleet)]
    assert "LEADER_ELECTED" in kinds and "TOPOLOGY_APPLIED" in kinds


def test_a_hung_instance_is_fenced_restarted_and_rejoins(fleet):
    target = address(fleet, "n1", "chat")
    before = fleet["docker"].restarts.get("n1-chat", 0)
    requests.post(f"http://{target}/_sim/fault", json={"mode": "hang"}, timeout=5)
    eventually(lambda: rendered(fleet, "chat")[target] == "down", timeout=10)
    eventually(lambda: fleet["docker"].restarts.get("n1-chat", 0) > before, timeout=10)
    eventually(lambda: rendered(fleet, "chat")[target] == "primary", timeout=20)
    mine = [e for e in events(fleet) if e.get("instance") == "n1-chat"]
    kinds = [e["type"] for e in mine]
    assert kinds[-3:] == ["INSTANCE_FENCED", "INSTANCE_RESTARTED", "INSTANCE_HEALTHY"]
    epochs = [e["epoch"] for e in mine[-3:]]
    assert epochs == sorted(epochs) and len(set(epochs)) == 3
    assert "probes failed" in mine[-3]["reason"]


def test_the_lease_moves_when_the_leaders_instance_dies_and_never_comes_back_on_its_own(fleet):
    leader = holder(fleet, "sb")
    other = "n2" if leader == "n1" else "n1"
    first_epoch = int(fleet["admin"].execute("GET", leader_key("sb")).rsplit(":", 1)[1])
    fleet["docker"].kill(f"{leader}-sb")
    eventually(lambda: holder(fleet, "sb") == other, timeout=10)
    eventually(lambda: rendered(fleet, "sb")[address(fleet, other, "sb")] == "primary", timeout=10)
    new_epoch = int(fleet["admin"].execute("GET", leader_key("sb")).rsplit(":", 1)[1])
    assert new_epoch > first_epoch
    # The old leader's instance is restarted and healthy again, as a standby: no failback.
    eventually(lambda: rendered(fleet, "sb")[address(fleet, leader, "sb")] == "backup", timeout=25)
    time.sleep(3)
    assert holder(fleet, "sb") == other
    kinds = [e["type"] for e in events(fleet) if e.get("pool") == "sb"]
    assert "HANDOVER" in kinds and "FAILOVER" in kinds


def test_epochs_only_grow_and_one_leader_at_a_time(fleet):
    history = events(fleet)
    # Per pool, in the order the changes happened (agents publish their events independently).
    for pool in ("sb", "fb"):
        leadership = sorted((e for e in history if e.get("pool") == pool and e["type"] in (
            "LEADER_ELECTED", "FAILOVER", "SWITCHOVER", "LEASE_RETAKEN")), key=lambda e: e["time"])
        epochs = [e["epoch"] for e in leadership]
        assert epochs and epochs == sorted(epochs) and len(set(epochs)) == len(epochs), (pool, leadership)
    # Every epoch handed out by Redis is unique across all kinds of change.
    kinds = ("INSTANCE_FENCED", "INSTANCE_RESTARTED", "INSTANCE_HEALTHY", "LEADER_ELECTED", "FAILOVER", "SWITCHOVER",
             "LEASE_RETAKEN")
    changes = [e["epoch"] for e in history if e["type"] in kinds and e["epoch"] is not None]
    assert len(changes) == len(set(changes))


def test_the_lb_agent_keeps_its_applied_epoch_across_a_restart(fleet):
    agent, thread = fleet["agents"]["lb1"]
    applied = agent.state["applied_epoch"]
    agent.stopping.set()
    thread.join(10)
    saved = json.loads(Path(fleet["lb_cfg"]["state_file"]).read_text())
    assert saved["applied_epoch"] == applied > 0
    again = fleet["start"]("lb1", fleet["lb_cfg"])
    assert again.state["applied_epoch"] == applied
    eventually(lambda: again.lb_status["applied_epoch"] >= applied and again.state["max_epoch"] >= applied)


def test_with_redis_gone_the_topology_freezes_and_resumes_without_a_role_change(fleet):
    snapshot = {pool: rendered(fleet, pool) for pool in ("chat", "sb")}
    leader = holder(fleet, "sb")
    fleet["redis"].master.signal(19)   # SIGSTOP: the master stops answering
    fleet["redis"].replica.signal(19)
    try:
        eventually(lambda: all(a.frozen for a, dummy in fleet["agents"].values()), timeout=10)
        time.sleep(2)
        assert {pool: rendered(fleet, pool) for pool in ("chat", "sb")} == snapshot
    finally:
        fleet["redis"].replica.signal(18)
        fleet["redis"].master.signal(18)
    eventually(lambda: not any(a.frozen for a, dummy in fleet["agents"].values()), timeout=15)
    # The lease expired while Redis was away; the last leader takes it back, nobody else.
    eventually(lambda: holder(fleet, "sb") == leader, timeout=10)
    time.sleep(2)
    assert holder(fleet, "sb") == leader
    assert {pool: rendered(fleet, pool) for pool in ("chat", "sb")} == snapshot


def test_a_lease_taken_just_before_redis_goes_away_stays_with_its_new_holder(fleet):
    """The node that took the lease last is "the last leader" after the outage, not the one
    it took the lease from; and what changed during the outage carries no epoch until Redis is back."""
    eventually(lambda: holder(fleet, "sb") in ("n1", "n2"))
    leader = holder(fleet, "sb")
    other = "n2" if leader == "n1" else "n1"
    eventually(lambda: rendered(fleet, "sb")[address(fleet, other, "sb")] == "backup", timeout=30)
    fleet["docker"].kill(f"{leader}-sb")
    eventually(lambda: holder(fleet, "sb") == other, timeout=10)
    epoch_before_outage = int(fleet["admin"].execute("GET", EPOCH_KEY) or 0)
    fleet["redis"].master.signal(19)
    fleet["redis"].replica.signal(19)
    try:
        eventually(lambda: all(a.frozen for a, dummy in fleet["agents"].values()), timeout=10)
        fleet["docker"].kill(f"{other}-chat")  # a change while Redis is away
        time.sleep(4)
    finally:
        fleet["redis"].replica.signal(18)
        fleet["redis"].master.signal(18)
    eventually(lambda: not any(a.frozen for a, dummy in fleet["agents"].values()), timeout=15)
    eventually(lambda: holder(fleet, "sb") is not None, timeout=15)
    time.sleep(2)
    assert holder(fleet, "sb") == other
    fenced = [e for e in events(fleet) if e["type"] == "INSTANCE_FENCED" and e.get("instance") == f"{other}-chat"]
    assert fenced and fenced[-1]["epoch"] is None
    # Numbered once Redis was back: its record's epoch is newer than any handed out before the
    # outage (the lease may have been retaken since, with a newer one still).
    eventually(lambda: int(fleet["admin"].execute("HGET", instance_key("chat", other, f"{other}-chat"), "epoch") or 0)
               > epoch_before_outage, timeout=20)
    eventually(lambda: rendered(fleet, "chat")[address(fleet, other, "chat")] == "primary", timeout=30)


# ---- operations (issue 11), through the module's logic -------------------------------------------
from ansible_collections.inferops.sglang.plugins.module_utils._operations import (
    Fleet,
    OperationError,
    format_status,
)


@pytest.fixture
def ops(fleet):
    client = RedisClient("127.0.0.1", fleet["redis"].port, username=AGENT_USER, password=PASSWORDS["agent"], timeout=2)
    yield Fleet(client, fleet["lb_cfg"]["lb"]["pools"], ["lb1"])
    client.close()


def sb_instances(ops):
    return next(p for p in ops.status()["pools"] if p["name"] == "sb")["instances"]


def test_status_reports_pools_leaders_instances_and_changes(fleet, ops):
    eventually(lambda: holder(fleet, "sb") is not None)
    status = ops.status()
    pools = {p["name"]: p for p in status["pools"]}
    assert pools["sb"]["mode"] == "active_standby" and pools["sb"]["leader"] == holder(fleet, "sb")
    assert {i["node"] for i in pools["chat"]["instances"]} == {"n1", "n2"}
    assert status["lbs"]["lb1"]["applied_epoch"] > 0
    table = "\n".join(format_status(status))
    assert "pool sb (active_standby)  leader" in table and "recent changes:" in table


def test_switchover_moves_the_lease_to_the_candidate_with_one_more_epoch(fleet, ops):
    eventually(lambda: sb_instances(ops) and all(
        i["serving"] for p in ops.status()["pools"] for i in p["instances"]), timeout=30)
    leader, epoch = ops.lease("sb")
    other = "n2" if leader == "n1" else "n1"
    result = ops.switchover("sb", candidate=other, reason="test switchover", by="pytest", timeout=20)
    assert result["after"]["leader"] == other and result["after"]["epoch"] > epoch
    assert result["lbs"]["lb1"] >= result["after"]["epoch"]
    eventually(lambda: rendered(fleet, "sb")[address(fleet, other, "sb")] == "primary")
    switch = [e for e in events(fleet) if e["type"] == "SWITCHOVER"][-1]
    assert switch["reason"] == "test switchover" and switch["by"] == "pytest" and switch["to"] == other


def test_refusals_name_the_option_and_change_nothing(fleet, ops):
    leader, epoch = ops.lease("sb")
    with pytest.raises(OperationError, match="^candidate: 'n9' has no instance in pool sb"):
        ops.switchover("sb", candidate="n9")
    with pytest.raises(OperationError, match="^pool: 'nope' is not a pool"):
        ops.switchover("nope")
    with pytest.raises(OperationError, match="^pool: chat is active_active"):
        ops.switchover("chat")
    other = "n2" if leader == "n1" else "n1"
    fleet["docker"].kill(f"{other}-sb")
    eventually(lambda: not next(i for i in sb_instances(ops) if i["node"] == other)["serving"])
    with pytest.raises(OperationError, match=f"^candidate: {other} is not healthy"):
        ops.switchover("sb", candidate=other)
    assert ops.lease("sb") == (leader, epoch)
    eventually(lambda: next(i for i in sb_instances(ops) if i["node"] == other)["serving"], timeout=30)


def keep_hung(target, seconds):
    """Hang an instance again and again (also right after its agent restarted it)."""
    def run():
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                requests.post(f"http://{target}/_sim/fault", json={"mode": "hang"}, timeout=1)
            except requests.RequestException:
                pass
            time.sleep(0.2)
        requests.post(f"http://{target}/_sim/fault", json={"mode": "none"}, timeout=5)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_paused_pool_changes_no_role_until_resumed(fleet, ops):
    leader = ops.lease("sb")[0]
    assert ops.pause("sb", True, reason="maintenance", by="pytest")["changed"]
    with pytest.raises(OperationError, match="^pool: sb is paused"):
        ops.switchover("sb")
    hung = keep_hung(address(fleet, leader, "sb"), 14)
    time.sleep(5)
    # The leader's instance is out of rotation, but the pool is paused: nobody moves the lease.
    assert not next(i for i in sb_instances(ops) if i["node"] == leader)["serving"]
    assert ops.lease("sb")[0] == leader
    assert ops.pause("sb", False, by="pytest")["changed"]
    eventually(lambda: ops.lease("sb")[0] not in (None, leader), timeout=8)
    hung.join()


def test_drain_stops_new_requests_and_undrain_brings_it_back(fleet, ops):
    target = address(fleet, "n2", "chat")
    result = ops.drain("chat", "n2", "n2-chat", True, reason="before maintenance", by="pytest", timeout=30)
    assert result["idle"] and result["lbs"]["lb1"] >= result["after"]["epoch"]
    assert rendered(fleet, "chat")[target] == "down"
    with pytest.raises(OperationError, match="^instance: n1/n1-chat is the last serving instance of pool chat"):
        ops.drain("chat", "n1", "n1-chat", True)
    back = ops.drain("chat", "n2", "n2-chat", False, by="pytest", timeout=30)
    assert back["changed"] and rendered(fleet, "chat")[target] == "primary"


def test_failover_moves_the_lease_even_from_a_live_leader(fleet, ops):
    eventually(lambda: all(i["serving"] for i in sb_instances(ops)), timeout=30)
    leader, epoch = ops.lease("sb")
    other = "n2" if leader == "n1" else "n1"
    result = ops.failover("sb", candidate=other, reason="leader unreachable", by="pytest", timeout=20)
    assert result["after"] == {"leader": other, "epoch": result["after"]["epoch"]} and result["after"]["epoch"] > epoch
    time.sleep(3)
    assert ops.lease("sb")[0] == other  # the new holder keeps it; the old one stands by


def test_failback_waits_for_the_hold_down_and_never_happens_while_the_former_leader_flaps(fleet, ops):
    eventually(lambda: holder(fleet, "fb") == "n1", timeout=30)  # the preferred leader, by failback if need be
    n1 = address(fleet, "n1", "fb")
    hung = keep_hung(n1, 4)
    eventually(lambda: holder(fleet, "fb") == "n2", timeout=15)
    hung.join()
    # Flap: back in rotation for less than the hold-down, then hung again, three times.
    for dummy in range(3):
        eventually(lambda: rendered(fleet, "fb")[n1] == "backup", timeout=30)
        time.sleep(HOLD_DOWN / 2)
        hung = keep_hung(n1, 6)
        eventually(lambda: rendered(fleet, "fb")[n1] == "down", timeout=10)
        assert holder(fleet, "fb") == "n2", "failback while the former leader flaps"
        hung.join()
    eventually(lambda: holder(fleet, "fb") == "n1", timeout=40)
    history = [e for e in events(fleet) if e.get("pool") == "fb"]
    back = max(i for i, e in enumerate(history) if e["type"] == "SWITCHOVER" and e["to"] == "n1")
    switch = history[back]
    assert switch["from"] == "n2" and switch["by"] == "n1" and switch["reason"] == "failback after the hold-down"
    rejoined = [e for e in history[:back] if e["type"] == "INSTANCE_HEALTHY" and e.get("instance") == "n1-fb"]
    left = [e for e in history[:back] if e["type"] in ("INSTANCE_FENCED", "INSTANCE_RESTARTED")
            and e.get("instance") == "n1-fb"]
    # It came back after its last fall, and stayed healthy the whole hold-down before the move.
    assert rejoined and left and rejoined[-1]["time"] > left[-1]["time"]
    assert switch["time"] - rejoined[-1]["time"] >= HOLD_DOWN
    # One switchover to n1 after the failover to n2: none happened during the flapping.
    moved_to_n2 = max(i for i, e in enumerate(history[:back]) if e.get("to") == "n2")
    assert not [e for e in history[moved_to_n2 + 1:back] if e.get("to") == "n1"]
