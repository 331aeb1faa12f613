"""The HA decisions as tables: state x observation -> new state, actions, reason (issue 10)."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils import _ha as ha

CFG = {"fall": 2, "rise": 2, "start_timeout": 30, "backoff_min": 5, "backoff_max": 60}
OK = {"running": True, "cheap": True, "deep": True}
CHEAP_OK = {"running": True, "cheap": True, "deep": None}
CHEAP_FAIL = {"running": True, "cheap": False, "deep": None, "error": "timed out"}
DEEP_FAIL = {"running": True, "cheap": True, "deep": False, "error": "HTTP 503"}
DEAD = {"running": False}


def track(state, **kw):
    t = ha.new_track(state, now=0.0)
    t.update(kw)
    return t


# state, fails/rises before, observation, -> state, actions, reason contains
INSTANCE_TABLE = [
    ("healthy", {}, OK, "healthy", [], None),
    ("healthy", {}, CHEAP_OK, "healthy", [], None),
    ("healthy", {}, CHEAP_FAIL, "failing", [], "probe failed 1/2: timed out"),
    ("failing", {"fails": 1}, CHEAP_FAIL, "fenced", ["restart"], "2 probes failed in a row (last: timed out)"),
    ("failing", {"fails": 1}, DEEP_FAIL, "fenced", ["restart"], "2 probes failed in a row (last: HTTP 503)"),
    ("failing", {"fails": 1}, CHEAP_OK, "healthy", [], "probes pass again"),
    ("healthy", {}, DEAD, "fenced", ["restart"], "container not running"),
    ("failing", {"fails": 1}, DEAD, "fenced", ["restart"], "container not running"),
    ("fenced", {}, OK, "starting", [], "restarted; waiting for 2 good deep probes"),
    ("fenced", {}, dict(OK, restart_pending=True), "fenced", [], None),
    ("starting", {}, OK, "starting", [], None),
    ("starting", {"rises": 1}, OK, "healthy", [], "2 good deep probes: back in rotation"),
    ("starting", {"rises": 1}, CHEAP_OK, "starting", [], None),  # only a deep probe counts as a rise
    ("starting", {"rises": 1}, DEEP_FAIL, "starting", [], None),
    # Drained: the operator owns the container (a rolling update replaces it). Fenced, never restarted.
    ("healthy", {}, dict(DEAD, hands_off=True), "fenced", [], "container not running"),
    ("failing", {"fails": 1}, dict(CHEAP_FAIL, hands_off=True), "fenced", [], "2 probes failed in a row"),
    ("fenced", {}, dict(DEAD, hands_off=True), "fenced", [], None),
    ("fenced", {}, dict(OK, hands_off=True, restart_pending=True), "starting", [], "running again (drained"),
]


@pytest.mark.parametrize("state, before, obs, after, actions, reason", INSTANCE_TABLE)
def test_instance_decisions(state, before, obs, after, actions, reason):
    new, got_actions, got_reason = ha.decide_instance(track(state, **before), obs, CFG, now=10.0)
    assert new["state"] == after
    assert got_actions == actions
    if reason is None:
        assert got_reason is None
    else:
        assert reason in got_reason


def test_a_drained_instance_that_does_not_come_back_is_not_restarted_after_the_start_timeout():
    new, actions, dummy = ha.decide_instance(track("starting", since=0.0), dict(DEEP_FAIL, hands_off=True), CFG, now=100.0)
    assert new["state"] == "starting" and actions == [] and new["restarts"] == 0


def test_a_rising_instance_loses_its_rises_on_a_failure():
    new, dummy, dummy = ha.decide_instance(track("starting", rises=1), DEEP_FAIL, CFG, now=10.0)
    assert new["rises"] == 0


def test_a_crash_looping_instance_is_restarted_with_a_doubling_back_off():
    t = track("healthy")
    now = 0.0
    restarts = []
    for dummy in range(40):
        t, actions, dummy = ha.decide_instance(t, DEAD, CFG, now)
        if actions:
            restarts.append(now)
        now += 1.0
    gaps = [b - a for a, b in zip(restarts, restarts[1:])]
    assert restarts[0] == 0.0
    assert gaps == [5.0, 10.0, 20.0]  # then 40 s, beyond this 40 s window


def test_the_back_off_is_capped():
    t = track("healthy")
    for now in range(0, 1000):
        t, dummy, dummy = ha.decide_instance(t, DEAD, CFG, float(now))
    assert t["backoff"] == CFG["backoff_max"]


def test_a_restarted_instance_that_never_rises_is_restarted_after_the_start_timeout():
    t = track("starting", since=0.0)
    t, actions, dummy = ha.decide_instance(t, DEEP_FAIL, CFG, now=29.0)
    assert actions == [] and t["state"] == "starting"
    t, actions, reason = ha.decide_instance(t, DEEP_FAIL, CFG, now=31.0)
    assert actions == ["restart"] and t["state"] == "fenced" and "not healthy 30s after its start" in reason


def view(**kw):
    base = {"node": "gpu1", "role": "standby", "redis_ok": True, "holder": None, "healthy": True, "paused": False,
            "deadline": 0, "failback": False}
    base.update(kw)
    return base


# view -> role, action, reason contains
LEASE_TABLE = [
    (view(), "leader", "take", "the lease is free and I have an instance in rotation"),
    (view(healthy=False), "standby", "none", "none of my instances is in rotation"),
    (view(paused=True), "standby", "none", "pool is paused"),
    (view(role="leader", holder="gpu1"), "leader", "renew", "I hold the lease"),
    (view(role="leader", holder="gpu1", healthy=False), "standby", "release", "handing the lease over"),
    (view(role="leader", holder="gpu1", healthy=False, paused=True), "leader", "renew", "pool paused"),
    (view(holder="gpu2"), "standby", "none", None),
    (view(role="leader", holder="gpu2"), "standby", "none", "the lease is gpu2's now"),
    (view(holder="gpu2", failback=True), "standby", "switchover", "failback: auto"),
    (view(holder="gpu2", failback=True, paused=True), "standby", "none", None),
    (view(role="leader", redis_ok=False, deadline=20), "leader", "none", "still leading until the lease deadline"),
    (view(role="leader", redis_ok=False, deadline=5), "fenced", "none", "fencing myself"),
    (view(redis_ok=False), "standby", "none", "frozen"),
]


@pytest.mark.parametrize("lease_view, role, action, reason", LEASE_TABLE)
def test_lease_decisions(lease_view, role, action, reason):
    got_role, got_action, got_reason = ha.decide_lease(lease_view, {}, now=10.0)
    assert (got_role, got_action) == (role, action)
    if reason is None:
        assert got_reason is None
    else:
        assert reason in got_reason


POOLS = [
    {"name": "chat", "mode": "active_active", "keepalive": 8, "servers": [
        {"address": "10.0.0.1:30001", "node": "gpu1", "instance": "sglang-chat-1"},
        {"address": "10.0.0.2:30001", "node": "gpu2", "instance": "sglang-chat-1"},
        {"address": "10.0.0.9:30001", "state": "down"}]},
    {"name": "sb", "mode": "active_standby", "servers": [
        {"address": "10.0.0.1:30101", "node": "gpu1", "instance": "sglang-sb-1"},
        {"address": "10.0.0.2:30101", "node": "gpu2", "instance": "sglang-sb-1"}]},
]


def states(rendered):
    return {pool["name"]: [s["state"] for s in pool["servers"]] for pool in rendered}


def test_render_follows_records_and_leases_and_never_adds_a_server():
    records = {("chat", "gpu1", "sglang-chat-1"): {"state": "fenced", "epoch": 7},
               ("chat", "gpu2", "sglang-chat-1"): {"state": "healthy", "epoch": 3},
               ("sb", "gpu1", "sglang-sb-1"): {"state": "healthy", "epoch": 2},
               ("sb", "gpu2", "sglang-sb-1"): {"state": "failing", "epoch": 2},
               ("chat", "gpu3", "sglang-chat-1"): {"state": "healthy", "epoch": 9}}  # not in the inventory
    rendered, epoch, rotation, leaders = ha.render_pools(POOLS, records, {"sb": ("gpu2", 8)})
    assert states(rendered) == {"chat": ["down", "primary", "down"], "sb": ["backup", "primary"]}
    assert epoch == 8  # the unknown node's record does not count
    assert [s["address"] for s in rendered[0]["servers"]] == ["10.0.0.1:30001", "10.0.0.2:30001", "10.0.0.9:30001"]
    assert rendered[0]["keepalive"] == 8 and "mode" not in rendered[0]
    assert rotation[("chat", "gpu1", "sglang-chat-1")] is False
    assert leaders == {"sb": "gpu2"}


def test_a_free_lease_keeps_the_last_leader_primary_never_two():
    rendered, dummy, dummy, leaders = ha.render_pools(POOLS, {}, {}, last_leaders={"sb": "gpu2"})
    assert states(rendered)["sb"] == ["backup", "primary"] and leaders == {"sb": "gpu2"}


def test_a_missing_record_keeps_what_was_rendered_last():
    rendered, dummy, dummy, dummy = ha.render_pools(POOLS, {}, {}, last_states={("chat", "gpu1", "sglang-chat-1"): False})
    assert states(rendered)["chat"] == ["down", "primary", "down"]
    assert states(rendered)["sb"] == ["primary", "primary"]  # no lease ever: the first render serves with all


def test_drained_servers_are_rendered_draining():
    rendered, dummy, dummy, dummy = ha.render_pools(POOLS, {}, {}, drained=[("chat", "gpu2", "sglang-chat-1")])
    assert states(rendered)["chat"] == ["primary", "draining", "down"]


def test_after_a_redis_outage_the_last_leader_gets_the_free_lease_first():
    role, action, reason = ha.decide_lease(view(defer_to="gpu2"), {}, now=10.0)
    assert (role, action) == ("standby", "none") and "gpu2, the last leader" in reason
    # The last leader itself does not defer.
    assert ha.decide_lease(view(node="gpu2", role="fenced"), {}, now=10.0)[:2] == ("leader", "take")
