"""The readiness checklist's pure checks as tables: observations -> pass/fail and the evidence
that says why (issue 11, item 6)."""

from __future__ import annotations

import copy
import hashlib

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils import _readiness as rd
from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import plan_instances

STOP = {"type": "stop", "matched": 2}


def obs(pool, node, text="Red, yellow and blue.", model="/models/tiny", finish=None, error=None):
    entry = {"pool": pool, "node": node, "instance": "sglang-%s-%s" % (pool, node[-1]), "address": "10.0.0.%s:30001" % node[-1]}
    if error:
        entry["error"] = error
    else:
        entry.update(model=model, text=text, finish_reason=finish or STOP)
    return entry


# observations, ok, evidence must contain
DETERMINISM = [
    ([obs("chat", "n1"), obs("chat", "n2")], True, "chat: 2 instance(s) agree: model /models/tiny"),
    ([obs("chat", "n1")], True, "nothing to compare with"),
    ([obs("chat", "n1"), obs("chat", "n2", text="Red, green and blue.")], False,
     "chat: n2/sglang-chat-2 answered 'Red, green and blue.'"),
    ([obs("chat", "n1"), obs("chat", "n2", text="Red, green and blue.")], False, "they differ from character 5"),
    ([obs("chat", "n1"), obs("chat", "n2", model="/models/other")], False,
     "n2/sglang-chat-2 serves model '/models/other', n1/sglang-chat-1 '/models/tiny'"),
    ([obs("chat", "n1"), obs("chat", "n2", finish={"type": "length", "length": 32})], False,
     "finished with length, n1/sglang-chat-1 with stop(2)"),
    ([obs("chat", "n1"), obs("chat", "n2", error="HTTP 401: Unauthorized")], False, "n2/sglang-chat-2: HTTP 401"),
    # One pool consistent, the other not: the check fails and names the pool.
    ([obs("chat", "n1"), obs("chat", "n2"), obs("sb", "n1"), obs("sb", "n2", text="x")], False, "\nsb: n2/sglang-sb-2"),
    ([], False, "no instance to ask"),
]


@pytest.mark.parametrize("observations, ok, evidence", DETERMINISM)
def test_determinism(observations, ok, evidence):
    got = rd.check_determinism(observations)
    assert got["check"] == "determinism" and got["ok"] is ok
    assert evidence in got["evidence"]


def answer(text, finish=None):
    return {"text": text, "meta_info": {"finish_reason": finish or STOP}}


GOOD_DOC = '{"name": "Ada", "age": 36, "tier": "pro", "active": true, "tags": ["a", "b"]}'
# answer, why it fails (None: conforms)
STRUCTURED_ANSWERS = [
    (answer(GOOD_DOC), None),
    (answer('{"name": "Ada", "age": 36, "tier": "pro", "active": true, "tags": []}'), None),
    (answer('{"name": "Ada", "age": 36, "tier": "pro", "act', {"type": "length", "length": 256}),
     "does not parse (Unterminated string"),
    (answer('{"name": "Ada", "age": 36, "tier": "gold", "active": true, "tags": []}'),
     '$.tier: "gold" is not one of'),
    (answer('{"name": "Ada", "age": 36.5, "tier": "pro", "active": true, "tags": []}'), "$.age: 36.5 is not integer"),
    (answer('{"name": "Ada", "age": 300, "tier": "pro", "active": true, "tags": []}'), "$.age: 300 is above 120"),
    (answer('{"name": "Ada", "age": 3, "tier": "pro", "active": 1, "tags": []}'), "$.active: 1 is not boolean"),
    (answer('{"name": "Ada", "age": 3, "tier": "pro", "active": true}'), "'tags' is missing"),
    (answer('{"name": "Ada", "age": 3, "tier": "pro", "active": true, "tags": [], "x": 1}'),
     "'x' is not allowed (additionalProperties: false)"),
    (answer('{"name": "", "age": 3, "tier": "pro", "active": true, "tags": []}'), "$.name: shorter than 1"),
    (answer('{"name": "A", "age": 3, "tier": "pro", "active": true, "tags": ["a", "b", "c", "d"]}'),
     "$.tags: more than 3 items"),
    (answer('{"name": "A", "age": 3, "tier": "pro", "active": true, "tags": [7]}'), "$.tags[0]: 7 is not string"),
    (answer('["not", "an", "object"]'), "$: "),
]


@pytest.mark.parametrize("reply, why", STRUCTURED_ANSWERS)
def test_structured_answers_parse_and_conform(reply, why):
    got = rd.structured_outcome(reply)
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got


def outcomes(good, bad=0, instances=2):
    return ([{"instance": "n%d/i" % (k % instances), "ok": True, "error": None} for k in range(good)]
            + [{"instance": "n1/i", "ok": False, "error": "does not parse"} for dummy in range(bad)])


# outcomes, requested, ok, evidence
STRUCTURED = [
    (outcomes(100), 100, True, "100/100 requests parsed and conformed to the schema, over 2 instance(s)"),
    (outcomes(99, 1), 100, False, "failed: n1/i: does not parse"),
    (outcomes(90, 10), 100, False, "; and 5 more"),
    (outcomes(60), 100, False, "40 request(s) were never answered"),
    ([], 100, False, "0/100"),
]


@pytest.mark.parametrize("results, requested, ok, evidence", STRUCTURED)
def test_structured(results, requested, ok, evidence):
    got = rd.check_structured(results, requested, 4.2, 8, 120)
    assert got["ok"] is ok and evidence in got["evidence"]
    assert "concurrency 8, budget 120 s" in got["evidence"]


# ---- isolation and memory: a plan and what docker inspect reports ---------------------------------
GPUS = [{"index": 0, "memory_total_mib": 81920}, {"index": 1, "memory_total_mib": 81920}]
PLAN = plan_instances([{"name": "chat", "model": "m", "base_port": 30001, "instances_per_gpu": 2}], gpus=GPUS,
                      version="0.5.6")


def docker_inspect(item, **change):
    """docker inspect of a container the role made from ``item`` of the plan."""
    cid = hashlib.sha256(item["name"].encode()).hexdigest()
    doc = {
        "Id": cid, "Name": "/" + item["name"], "LogPath": "/var/lib/docker/containers/%s/%s-json.log" % (cid, cid),
        "State": {"Running": True, "Status": "running"},
        "HostConfig": {"PortBindings": {"30000/tcp": [{"HostIp": "10.0.0.1", "HostPort": str(item["host_port"])}]},
                       "DeviceRequests": [{"Driver": "nvidia", "Count": 0, "DeviceIDs": list(item["device_ids"]),
                                           "Capabilities": [["gpu"]]}],
                       "LogConfig": {"Type": "json-file"}},
        "Config": {"Labels": dict(item["labels"]), "Entrypoint": None,
                   "Cmd": ["python3", "-c", "shim", "--model-path", "/models/m", "--port", "30000",
                           "--mem-fraction-static", str(item["mem_fraction_static"]), "--enable-metrics"]},
    }
    for path, value in change.items():
        target = doc
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return doc


def node(containers=None, plan=None, gpus=None):
    plan = PLAN if plan is None else plan
    return {"name": "gpu1", "plan": plan, "gpus": GPUS if gpus is None else gpus,
            "containers": [docker_inspect(i) for i in plan] if containers is None else containers}


def by_name(name):
    return next(i for i in PLAN if i["name"] == name)


SAME_LOG = docker_inspect(by_name("sglang-chat-2"), LogPath=docker_inspect(by_name("sglang-chat-1"))["LogPath"])
STRAY = dict(docker_inspect(by_name("sglang-chat-1"), Name="/sglang-old-1", Id="f" * 64, LogPath="/var/lib/docker/containers/ff/x.log"),
             HostConfig=dict(docker_inspect(by_name("sglang-chat-1"))["HostConfig"], PortBindings={}))
# containers (None: as planned), ok, evidence
ISOLATION = [
    (None, True, "sglang-chat-1 port 30001, container "),
    ([docker_inspect(i) for i in PLAN[:3]], False, "sglang-chat-4 has no container"),
    ([docker_inspect(i) for i in PLAN[:3]] + [docker_inspect(PLAN[3], State={"Running": False, "Status": "exited"})], False,
     "sglang-chat-4 is not running (exited)"),
    ([docker_inspect(i) for i in PLAN[:3]] + [docker_inspect(PLAN[3], HostConfig__PortBindings={
        "30000/tcp": [{"HostPort": str(PLAN[0]["host_port"])}]})], False, "port 30001 is published by both"),
    ([docker_inspect(i) for i in PLAN[:3]] + [docker_inspect(PLAN[3], HostConfig__PortBindings={
        "30000/tcp": [{"HostPort": "30099"}]})], False, "publishes 30099, planned"),
    ([docker_inspect(by_name("sglang-chat-1")), SAME_LOG, docker_inspect(by_name("sglang-chat-3")),
      docker_inspect(by_name("sglang-chat-4"))], False,
     "sglang-chat-2 logs into /var/lib/docker/containers/"),
    ([docker_inspect(i) for i in PLAN] + [STRAY], False, "sglang-old-1 runs but is not in the plan"),
    ([docker_inspect(i, LogPath="", HostConfig__LogConfig={"Type": "journald"}) for i in PLAN], True,
     "no log file (log driver journald)"),
]


@pytest.mark.parametrize("containers, ok, evidence", ISOLATION)
def test_isolation(containers, ok, evidence):
    got = rd.check_isolation([node(containers)])
    assert got["check"] == "isolation" and got["ok"] is ok, got["evidence"]
    assert evidence in got["evidence"]


def with_fraction(item, *values):
    doc = docker_inspect(item)
    for value in values:
        doc["Config"]["Cmd"] += ["--mem-fraction-static", value]
    return doc


def replace(name, doc):
    return [doc if i["name"] == name else docker_inspect(i) for i in PLAN]


# sglang-chat-3 (planned on GPU 1) given GPU 0 by Docker: it takes 0.425 of what chat-1 and chat-2 left.
MOVED = replace("sglang-chat-3", docker_inspect(by_name("sglang-chat-3"), HostConfig__DeviceRequests=[{"DeviceIDs": ["0"]}]))
# containers (None: as planned), gpus, ok, evidence
MEMORY = [
    (None, None, True, "GPU 0 (81920 MiB): sglang-chat-1 0.425 + sglang-chat-2 0.739 -> shares 0.425 + 0.425 = 0.850"),
    (None, None, True, "= 0.850 (69626 MiB); GPU 1 (81920 MiB): sglang-chat-3 0.425 + sglang-chat-4 0.739"),
    (None, None, True, "[nvidia-smi: 0, 81920 MiB, 1, 81920 MiB]"),
    # An extra_args --mem-fraction-static comes last, so argparse takes it: not the plan's.
    (replace("sglang-chat-2", with_fraction(by_name("sglang-chat-2"), "0.9")), None, False,
     "GPU 0: sglang-chat-2 runs with --mem-fraction-static 0.9, planned 0.739"),
    (replace("sglang-chat-1", dict(docker_inspect(by_name("sglang-chat-1")), Config=dict(
        docker_inspect(by_name("sglang-chat-1"))["Config"], Cmd=["python3", "-c", "shim", "--port", "30000"]))), None, False,
     "GPU 0: sglang-chat-1 has no --mem-fraction-static"),
    (MOVED, None, False, "GPU 0: sglang-chat-3 uses it, not planned there"),
    (MOVED, None, False, "GPU 1: sglang-chat-3 does not get it (Docker gives it GPUs 0)"),
    (MOVED, None, False, "GPU 0: the instances take 0.914 of its memory, planned 0.850"),
    (None, GPUS[:1], False, "GPU 1: nvidia-smi does not report it"),
    ([docker_inspect(i) for i in PLAN[1:]], None, False, "GPU 0: sglang-chat-1 has no container"),
]


@pytest.mark.parametrize("containers, gpus, ok, evidence", MEMORY)
def test_memory(containers, gpus, ok, evidence):
    got = rd.check_memory([node(containers, gpus=gpus)])
    assert got["check"] == "memory" and got["ok"] is ok, got["evidence"]
    assert evidence in got["evidence"]


@pytest.mark.parametrize("check", [rd.check_isolation, rd.check_memory])
def test_a_node_that_reported_nothing_fails_isolation_and_memory(check):
    got = check([node(), {"name": "gpu2", "missing": True}])
    assert got["ok"] is False
    assert "gpu2: reported nothing (unreachable, or its Docker or nvidia-smi did not answer)" in got["evidence"]
    assert rd.node_errors([{"name": "gpu2", "missing": True}], ["memory"]) == []


def test_memory_without_gpus_and_the_label_when_docker_gives_no_devices():
    cpu_plan = plan_instances([{"name": "sb", "model": "m", "base_port": 30101, "gpus": [], "instances": 1}], gpus=[])
    got = rd.check_memory([node(plan=cpu_plan, gpus=[])])
    assert got["ok"] and got["evidence"] == "gpu1: no instance on a GPU"
    # sglang_gpu_enabled: false: no device requests, the plan's label says which GPUs.
    docs = [docker_inspect(i, HostConfig__DeviceRequests=None) for i in PLAN]
    assert rd.check_memory([node(docs)])["ok"]


@pytest.mark.parametrize("fractions, shares", [
    ([0.85], [0.85]),
    ([0.425, 0.425 / 0.575], [0.425, 0.425]),
    ([0.5, 1.0], [0.5, 0.5]),
])
def test_replay_shares(fractions, shares):
    assert rd.replay_shares(fractions) == pytest.approx(shares)


def test_launch_flag_takes_the_last_value_in_either_spelling():
    doc = {"Config": {"Entrypoint": ["python3"], "Cmd": ["--mem-fraction-static", "0.4", "--mem-fraction-static=0.3"]}}
    assert rd.launch_flag(doc, "--mem-fraction-static") == "0.3"
    assert rd.launch_flag({"Config": {"Cmd": ["--port", "1"]}}, "--mem-fraction-static") is None


def health(node_name, status=200, metrics=200, error=None):
    return {"node": node_name, "instance": "i-" + node_name, "address": "10.0.0.1:30001", "health_path": "/health",
            "health": {"status": status, "error": error}, "metrics": {"status": metrics, "error": None}}


# observations, ok, evidence
INSTANCE_HEALTH = [
    ([health("n1"), health("n2")], True, "n1/i-n1 (10.0.0.1:30001): /health 200, /metrics 200"),
    ([health("n1"), health("n2", status=503)], False, "FAILED n2/i-n2 (10.0.0.1:30001): /health 503"),
    ([health("n1", metrics=404)], False, "/metrics 404"),
    ([health("n1", status=None, error="connection failed: refused")], False, "/health connection failed: refused"),
    ([], False, "no instance to ask"),
]


@pytest.mark.parametrize("observations, ok, evidence", INSTANCE_HEALTH)
def test_instance_health(observations, ok, evidence):
    got = rd.check_instance_health(observations)
    assert got["ok"] is ok and evidence in got["evidence"]


LB = "http://127.0.0.1:8080/lb/health"
# observations, ok, evidence
LB_HEALTH = [
    ([{"url": LB, "status": 200}, {"url": LB + "/chat", "status": 200}], True, LB + " 200; " + LB + "/chat 200"),
    ([{"url": LB, "status": 200}, {"url": LB + "/sb", "status": 503}], False, LB + "/sb 503"),
    ([{"url": LB, "status": None, "error": "connection failed: refused"}], False, "connection failed: refused"),
    ([{"url": LB, "status": 301}], False, LB + " 301"),
]


@pytest.mark.parametrize("observations, ok, evidence", LB_HEALTH)
def test_lb_health(observations, ok, evidence):
    got = rd.check_lb_health(observations)
    assert got["ok"] is ok and evidence in got["evidence"]


M = "10.0.0.21:6379"
R = "10.0.0.22:6379"
MASTER = {"role": "master", "replicas": [R]}
REPLICA = {"role": "slave", "master": M, "state": "connected"}


def sentinels(*named):
    return [{"sentinel": "10.0.0.%d:26379" % (21 + k), **({"master": n} if n[0].isdigit() else {"error": n})}
            for k, n in enumerate(named)]


# answers, views, ok, evidence
SENTINELS = [
    (sentinels(M, M, M), {M: MASTER, R: REPLICA}, True, "3 Sentinel(s) agree: master of inferops is 10.0.0.21:6379"),
    (sentinels(M, M, M), {M: MASTER, R: REPLICA}, True, "10.0.0.22:6379: ROLE replica of 10.0.0.21:6379 (connected)"),
    (sentinels(M, M, R), {M: MASTER, R: REPLICA}, False,
     "the Sentinels disagree on the master of inferops: 10.0.0.21:6379 by 10.0.0.21:26379, 10.0.0.22:26379; "
     "10.0.0.22:6379 by 10.0.0.23:26379"),
    (sentinels(M, M, R), {M: MASTER, R: REPLICA}, False, "10.0.0.22:6379 is named master but says it is a slave of"),
    (sentinels(M, M, "cannot connect to 10.0.0.23:26379: refused"), {M: MASTER, R: REPLICA}, False,
     "10.0.0.23:26379 did not answer: cannot connect"),
    (sentinels(M, M, M), {M: {"error": "cannot connect"}}, False, "10.0.0.21:6379 (named master) cannot be asked"),
    (sentinels(M, M, M), {M: MASTER, R: {"role": "slave", "master": "10.0.0.9:6379", "state": "connected"}}, False,
     "replica 10.0.0.22:6379 follows 10.0.0.9:6379, not 10.0.0.21:6379"),
    # The agents' ACL lacks ROLE on this site: reported, the Sentinels' agreement still decides.
    (sentinels(M, M, M), {M: {"error": "NOPERM no ROLE", "refused": True}}, True, "ROLE not allowed for the agents' user"),
    ([], {}, False, "no Sentinel configured"),
    (sentinels("does not know inferops"), {}, False, "did not answer: does not know inferops"),
]


@pytest.mark.parametrize("answers, views, ok, evidence", SENTINELS)
def test_sentinels(answers, views, ok, evidence):
    got = rd.check_sentinels("inferops", answers, views)
    assert got["check"] == "sentinels" and got["ok"] is ok, got["evidence"]
    assert evidence in got["evidence"]


class FakeFleet:
    def __init__(self, pools, fail=None):
        self.pools = {p["name"]: p for p in pools}
        self.fail = fail
        self.calls = []

    def lease(self, name):
        return "n1", 7

    def failover(self, name, candidate, reason, by, allow_unhealthy, timeout):
        self.calls.append((name, candidate, reason, by, allow_unhealthy, timeout))
        if self.fail:
            raise rd.OperationError("candidate", self.fail)
        return {"after": {"leader": "n2", "epoch": 8}}


POOLS = [{"name": "chat", "mode": "active_active"}, {"name": "sb", "mode": "active_standby"}]


def test_drill_moves_the_first_standby_pool_and_reports_the_takeover():
    fleet = FakeFleet(POOLS)
    ticks = iter([10.0, 11.25])
    outcome = rd.run_drill(fleet, by="tester", clock=lambda: next(ticks))
    assert fleet.calls == [("sb", None, "readiness drill", "tester", False, 60.0)]
    got = rd.check_drill(outcome)
    assert got["ok"] and not got.get("skipped")
    assert got["evidence"] == ("pool sb: the lease moved from n1 to n2 (epoch 8); takeover 1.25 s until every load "
                               "balancer applied it")


# pools, drill_pool, check_mode, fail, -> ok, skipped, evidence
DRILL = [
    (POOLS, None, True, None, True, True, "check mode: the drill on pool sb would move its lease; nothing was moved"),
    (POOLS[:1], None, False, None, True, True, "no active_standby pool to drill (pools: chat)"),
    (POOLS, "sb", False, "n2 is not healthy: n2-sb fenced", False, False, "pool sb: candidate: n2 is not healthy"),
]


@pytest.mark.parametrize("pools, pool, check_mode, fail, ok, skipped, evidence", DRILL)
def test_drill_outcomes(pools, pool, check_mode, fail, ok, skipped, evidence):
    fleet = FakeFleet(pools, fail)
    got = rd.check_drill(rd.run_drill(fleet, pool, check_mode=check_mode))
    assert got["ok"] is ok and bool(got.get("skipped")) is skipped and evidence in got["evidence"]
    if check_mode:
        assert fleet.calls == []


@pytest.mark.parametrize("pool, message", [
    ("nope", "drill_pool: 'nope' is not a pool (pools: chat, sb)"),
    ("chat", "drill_pool: chat is active_active; a drill needs an active_standby pool (sb)"),
])
def test_drill_refuses_a_bad_pool_naming_the_option(pool, message):
    with pytest.raises(rd.ReadinessError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        rd.run_drill(FakeFleet(POOLS), pool)


# nodes, needed, error
NODE_ERRORS = [
    ([], ["isolation"], "nodes: empty; the isolation check(s) need"),
    ([{"plan": []}], [], "nodes[0]: must be a dictionary with name"),
    ([{"name": "g", "plan": "x"}], [], "nodes[0].plan: must be a list (sglang_plan from the sglang role's validation)"),
    ([{"name": "g", "containers": {}}], [], "nodes[0].containers: must be a list (docker inspect"),
    ([{"name": "g", "plan": [{"name": "x"}]}], [], "nodes[0].plan[0]: not an instance of the plan"),
    ("x", [], "nodes: must be a list"),
]


@pytest.mark.parametrize("nodes, needed, error", NODE_ERRORS)
def test_node_errors_name_the_field(nodes, needed, error):
    assert any(error in e for e in rd.node_errors(nodes, needed))


def test_good_nodes_have_no_errors():
    assert rd.node_errors([copy.deepcopy(node())], ["isolation", "memory"]) == []
    assert rd.node_errors([], []) == []


def test_table_marks_each_line_and_names_the_failed_checks():
    results = [rd.result("determinism", True, "chat: agree"), rd.result("sentinels", False, "disagree\nsecond line"),
               rd.check_drill({"skipped": "not asked"})]
    table = rd.format_table(results)
    assert table[1].split() == ["determinism", "PASS", "chat:", "agree"]
    assert table[2].split()[:2] == ["sentinels", "FAIL"] and table[3].strip() == "second line"
    assert table[4].split()[:2] == ["failover_drill", "SKIP"]
    assert table[-1] == "1 of 2 checks passed (1 skipped); FAILED: sentinels"
    assert rd.failed_checks(results) == ["sentinels"]
