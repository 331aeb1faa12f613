from __future__ import annotations

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._instance_plan import (
    PlanError,
    mem_fractions,
    plan_instances,
    simulate_memory,
)


def gpus(count, total=81920):
    return [{"index": i, "uuid": "GPU-%04d" % i, "name": "Fake A100", "memory_total_mib": total} for i in range(count)]


def dep(**kw):
    base = {"name": "chat", "model": "tiny-chat", "base_port": 30001}
    base.update(kw)
    return base


# ----------------------------------------------------------------------------- layouts


def test_one_instance_per_gpu_default_uses_all_gpus():
    plan = plan_instances([dep()], gpus(4))
    assert [p["name"] for p in plan] == ["sglang-chat-1", "sglang-chat-2", "sglang-chat-3", "sglang-chat-4"]
    assert [p["device_ids"] for p in plan] == [["0"], ["1"], ["2"], ["3"]]
    assert [p["host_port"] for p in plan] == [30001, 30002, 30003, 30004]
    assert {p["container_port"] for p in plan} == {30000}
    assert [p["gpu_uuids"] for p in plan] == [["GPU-0000"], ["GPU-0001"], ["GPU-0002"], ["GPU-0003"]]
    assert all(p["mem_fraction_static"] == 0.85 and p["start_order"] == 0 for p in plan)
    assert [p["group"] for p in plan] == [0, 1, 2, 3]


def test_tp2_groups_are_consecutive_chunks():
    plan = plan_instances([dep(gpus=[0, 1, 2, 3], tp_size=2)], gpus(4))
    assert [(p["name"], p["device_ids"], p["tp_size"], p["group"]) for p in plan] == [
        ("sglang-chat-1", ["0", "1"], 2, 0),
        ("sglang-chat-2", ["2", "3"], 2, 1),
    ]


def test_gpu_order_of_the_deployment_is_kept():
    plan = plan_instances([dep(gpus=[3, 1, 2, 0], tp_size=2)], gpus(4))
    assert [p["device_ids"] for p in plan] == [["3", "1"], ["2", "0"]]


def test_instances_sharing_a_gpu_are_in_start_order():
    plan = plan_instances([dep(gpus=[0, 1], instances_per_gpu=2)], gpus(2))
    # every first instance of a group before any second one; numbering follows the groups
    assert [(p["name"], p["device_ids"], p["start_order"], p["host_port"]) for p in plan] == [
        ("sglang-chat-1", ["0"], 0, 30001),
        ("sglang-chat-3", ["1"], 0, 30003),
        ("sglang-chat-2", ["0"], 1, 30002),
        ("sglang-chat-4", ["1"], 1, 30004),
    ]


def test_two_deployments_on_disjoint_gpus_with_name_prefix_and_extra_args():
    plan = plan_instances(
        [dep(gpus=[0, 1], tp_size=2, extra_args=["--context-length", 4096]),
         dep(name="embed", model="tiny-embed", gpus=[2, 3], instances_per_gpu=2, base_port=31001,
             served_model_name="embed")],
        gpus(4), container_port=8000, name_prefix="lab")
    names = [p["name"] for p in plan]
    assert names == ["lab-chat-1", "lab-embed-1", "lab-embed-3", "lab-embed-2", "lab-embed-4"]
    chat = plan[0]
    assert chat["extra_args"] == ["--context-length", "4096"]
    assert chat["served_model_name"] is None and chat["container_port"] == 8000
    embed = [p for p in plan if p["deployment"] == "embed"]
    assert {p["served_model_name"] for p in embed} == {"embed"}
    assert sorted(p["host_port"] for p in embed) == [31001, 31002, 31003, 31004]


@pytest.mark.parametrize("deployment,expected_count", [
    (dep(gpus=[]), 1),
    (dep(gpus=[], instances_per_gpu=3), 3),
    (dep(instances=2), 2),
    (dep(gpus=[], instances=2), 2),
])
def test_hosts_without_gpus_run_instances_with_empty_device_ids(deployment, expected_count):
    plan = plan_instances([deployment], [])
    assert len(plan) == expected_count
    assert all(p["device_ids"] == [] and p["gpu_uuids"] == [] for p in plan)
    assert [p["start_order"] for p in plan] == list(range(expected_count))
    assert [p["host_port"] for p in plan] == [30001 + i for i in range(expected_count)]


def test_gpus_empty_list_on_a_gpu_host_means_no_gpu():
    plan = plan_instances([dep(gpus=[], instances=2)], gpus(2))
    assert [p["device_ids"] for p in plan] == [[], []]


def test_plan_is_stable_whatever_the_current_free_memory():
    busy = gpus(2)
    for gpu in busy:
        gpu["memory_free_mib"] = 1234
        gpu["memory_used_mib"] = 80000
    assert plan_instances([dep(instances_per_gpu=2)], busy) == plan_instances([dep(instances_per_gpu=2)], gpus(2))


def test_no_deployments_means_no_instances():
    assert plan_instances([], gpus(2)) == []
    assert plan_instances(None, gpus(2)) == []


def test_string_numbers_from_extra_vars_are_accepted():
    plan = plan_instances([dep(base_port="30001", tp_size="2", memory_fraction="0.5")], gpus(2))
    assert plan[0]["host_port"] == 30001 and plan[0]["tp_size"] == 2 and plan[0]["mem_fraction_static"] == 0.5


# ----------------------------------------------------------------------------- memory arithmetic


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.85, 0.9, 1.0])
def test_mem_fractions_give_every_instance_an_equal_share(k, fraction):
    total = 81920.0
    free = total
    takes = []
    for frac in mem_fractions(k, fraction):
        assert 0 < frac <= 1.0 + 1e-12
        take = free * frac
        takes.append(take)
        free -= take
    share = total * fraction / k
    for take in takes:
        assert take == pytest.approx(share, rel=1e-9)
    assert free == pytest.approx(total * (1 - fraction), abs=1e-6)


def test_mem_fractions_known_values():
    assert [round(f, 3) for f in mem_fractions(2, 0.8)] == [0.4, 0.667]
    assert [round(f, 3) for f in mem_fractions(3, 0.9)] == [0.3, 0.429, 0.75]
    assert mem_fractions(1, 0.85) == [0.85]


@pytest.mark.parametrize("layout", [
    {"gpus": [0, 1, 2, 3], "tp_size": 2, "instances_per_gpu": 2, "memory_fraction": 0.9},
    {"gpus": [0, 1, 2, 3], "tp_size": 1, "instances_per_gpu": 3, "memory_fraction": 0.85},
    {"gpus": [2, 3], "tp_size": 2, "instances_per_gpu": 4, "memory_fraction": 0.8},
    {"gpus": [0], "tp_size": 1, "instances_per_gpu": 7, "memory_fraction": 0.95},
])
def test_planned_fractions_checked_on_a_simulated_memory_ledger(layout):
    """Replay the rounded plan the way SGLang allocates: each start takes its fraction of what is free."""
    host = gpus(4, total=24576)
    plan = plan_instances([dep(**layout)], host)
    ledger = simulate_memory(plan, host)
    k = layout["instances_per_gpu"]
    expected = 24576 * layout["memory_fraction"] / k
    for index in layout["gpus"]:
        taken = ledger[index]
        assert len(taken) == k
        for name, mib in taken.items():
            # 3-decimal rounding of the flag costs at most a few tenths of a percent of the GPU
            assert mib == pytest.approx(expected, abs=0.003 * 24576), name
        assert sum(taken.values()) == pytest.approx(24576 * layout["memory_fraction"], abs=0.005 * 24576)
    untouched = set(range(4)) - set(layout["gpus"])
    assert all(ledger[i] == {} for i in untouched)
    for item in plan:
        assert item["memory_share"] == pytest.approx(layout["memory_fraction"] / k, abs=1e-4)


def test_the_ledger_shows_why_start_order_matters():
    host = gpus(1, total=10000)
    plan = plan_instances([dep(instances_per_gpu=2, memory_fraction=0.8)], host)
    assert [p["mem_fraction_static"] for p in plan] == [0.4, 0.667]
    swapped = list(reversed(plan))
    taken = simulate_memory(swapped, host)[0]
    # started the wrong way round, the first instance grabs two thirds of the GPU
    assert taken["sglang-chat-2"] == pytest.approx(6670)
    assert taken["sglang-chat-1"] == pytest.approx(1332)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("deployments,host,message", [
    ([dep(gpus=[0, 1, 2, 3], tp_size=3)], gpus(4),
     "sglang_deployments[0].tp_size: 3 does not divide the 4 GPUs assigned (0,1,2,3)"),
    ([dep(tp_size=2)], gpus(3),
     "sglang_deployments[0].tp_size: 2 does not divide the 3 GPUs assigned (0,1,2)"),
    ([dep(gpus=[0, 7])], gpus(4),
     "sglang_deployments[0].gpus[1]: GPU 7 is not on this host (GPUs found: 0,1,2,3)"),
    ([dep(gpus=[1, 1])], gpus(4),
     "sglang_deployments[0].gpus[1]: GPU 1 is listed twice"),
    ([dep(gpus=[0, 1]), dep(name="embed", gpus=[1, 2], base_port=31001)], gpus(4),
     "sglang_deployments[1].gpus: GPU 1 is already used by deployment 'chat' (sglang_deployments[0])"),
    ([dep(gpus=[0]), dep(name="embed", base_port=31001)], gpus(2),
     "sglang_deployments[1].gpus: GPU 0 is already used by deployment 'chat' (sglang_deployments[0])"),
    ([dep(gpus=[0]), dep(gpus=[1], base_port=31001)], gpus(2),
     "sglang_deployments[1].name: deployment 'chat' is already defined at sglang_deployments[0]"),
    ([dep(gpus=[0, 1, 2]), dep(name="embed", gpus=[3], base_port=30003)], gpus(4),
     "sglang_deployments[1].base_port: port 30003 is already taken by sglang-chat-3 (sglang_deployments[0])"),
    ([dep(gpus=[0], instances_per_gpu=2, base_port=30000), dep(name="b", gpus=[1], base_port=30001)], gpus(2),
     "sglang_deployments[1].base_port: port 30001 is already taken by sglang-chat-2 (sglang_deployments[0])"),
    ([dep(base_port=0)], gpus(1), "sglang_deployments[0].base_port: 0 is below the minimum 1"),
    ([dep(base_port=70000)], gpus(1), "sglang_deployments[0].base_port: 70000 is above the maximum 65535"),
    ([dep(base_port=65535)], gpus(2), "sglang_deployments[0].base_port: 2 instances from port 65535 run past 65535"),
    ([dep(memory_fraction=0)], gpus(1), "sglang_deployments[0].memory_fraction: 0 is not in (0, 1]"),
    ([dep(memory_fraction=1.5)], gpus(1), "sglang_deployments[0].memory_fraction: 1.5 is not in (0, 1]"),
    ([dep(memory_fraction="lots")], gpus(1), "sglang_deployments[0].memory_fraction: 'lots' is not in (0, 1]"),
    ([dep(instances_per_gpu=0)], gpus(1), "sglang_deployments[0].instances_per_gpu: 0 is below the minimum 1"),
    ([dep(instances_per_gpu=100)], gpus(1),
     "sglang_deployments[0].instances_per_gpu: 100 instances sharing 0.85 of each GPU leave 0.0085 per instance (minimum 0.01)"),
    ([dep(tp_size=0)], gpus(1), "sglang_deployments[0].tp_size: 0 is below the minimum 1"),
    ([dep(tp_size=True)], gpus(1), "sglang_deployments[0].tp_size: True is not an integer"),
    ([dep(name="Chat_1")], gpus(1), "sglang_deployments[0].name: 'Chat_1' must match [a-z0-9-]"),
    ([dep(name="-chat")], gpus(1), "sglang_deployments[0].name: '-chat' must match [a-z0-9-]"),
    ([dep(model="org/model")], gpus(1), "sglang_deployments[0].model: 'org/model' must be the name of a directory"),
    ([{"name": "chat", "base_port": 30001}], gpus(1), "sglang_deployments[0].model: is required"),
    ([{"model": "m", "base_port": 30001}], gpus(1), "sglang_deployments[0].name: is required"),
    ([{"name": "chat", "model": "m"}], gpus(1), "sglang_deployments[0].base_port: is required"),
    ([dep(tp=2)], gpus(1), "sglang_deployments[0]: unknown key(s) tp"),
    ([dep(extra_args="--foo")], gpus(1), "sglang_deployments[0].extra_args: must be a list of strings"),
    ([dep()], [], "sglang_deployments[0].gpus: the host has no GPUs (gpu_facts found none); set gpus: [] or instances: N"),
    ([dep(instances=2)], gpus(2), "sglang_deployments[0].instances: only for deployments without GPUs"),
    ([dep(gpus=[], instances=0)], gpus(1), "sglang_deployments[0].instances: 0 is below the minimum 1"),
    (["chat"], gpus(1), "sglang_deployments[0]: must be a dict"),
    ({"name": "chat"}, gpus(1), "sglang_deployments: must be a list of deployments"),
    ([dep()], [{"index": 0}, {"index": 0}], "gpus[1].index: GPU 0 is listed twice"),
    ([dep()], [{"uuid": "GPU-x"}], "gpus[0].index: None is not an integer"),
])
def test_bad_input_names_the_variable(deployments, host, message):
    with pytest.raises(PlanError) as err:
        plan_instances(deployments, host)
    assert str(err.value).startswith(message), str(err.value)


def test_var_name_is_used_in_messages():
    with pytest.raises(PlanError, match=r"^my_deps\[0\]\.tp_size: "):
        plan_instances([dep(tp_size=3)], gpus(4), var_name="my_deps")


@pytest.mark.parametrize("kwargs,message", [
    ({"container_port": 0}, "container_port: 0 is below the minimum 1"),
    ({"name_prefix": "Bad Prefix"}, "name_prefix: 'Bad Prefix' must match [a-z0-9-]"),
])
def test_bad_filter_arguments(kwargs, message):
    with pytest.raises(PlanError) as err:
        plan_instances([dep()], gpus(1), **kwargs)
    assert str(err.value).startswith(message)


def test_instance_names_too_long_for_containers_are_rejected():
    with pytest.raises(PlanError, match=r"^sglang_deployments\[0\]\.name: instance name .* is longer than 63"):
        plan_instances([dep(name="x" * 32)], gpus(1), name_prefix="p" * 30)


@pytest.mark.parametrize("name", ["1chat", "x" * 33])
def test_a_deployment_name_that_cannot_be_a_pool_is_refused_here(name):
    with pytest.raises(PlanError, match=r"^sglang_deployments\[0\]\.name: .* it becomes the load balancer pool"):
        plan_instances([dep(name=name)], gpus(1))


def test_modes_are_checked_and_carried_into_the_plan():
    plan = plan_instances([dep(name="chat-b", mode="active_standby", failback="auto")], gpus(1))
    assert plan[0]["pool"] == "chat_b" and plan[0]["mode"] == "active_standby" and plan[0]["failback"] == "auto"
    assert plan[0]["labels"]["inferops.sglang.pool"] == "chat_b"
    with pytest.raises(PlanError, match=r"^sglang_deployments\[0\]\.mode: 'hot' is not a mode"):
        plan_instances([dep(mode="hot")], gpus(1))
    with pytest.raises(PlanError, match=r"^sglang_deployments\[0\]\.failback: auto only applies to mode active_standby"):
        plan_instances([dep(failback="auto")], gpus(1))


def test_version_is_checked_and_copied_into_every_instance():
    deployments = [{"name": "chat", "model": "m", "base_port": 30001, "instances": 2, "gpus": []}]
    plan = plan_instances(deployments, gpus=[], version="0.5.6")
    assert [item["sglang_version"] for item in plan] == ["0.5.6", "0.5.6"]
    with pytest.raises(PlanError, match=r"^sglang_version: 0\.4\.0 is not supported"):
        plan_instances(deployments, gpus=[], version="0.4.0")


def test_a_model_the_cache_does_not_hold_is_refused_under_the_deployment():
    deployments = [{"name": "chat", "model": "tiny-chat", "base_port": 30001, "instances": 1, "gpus": []},
                   {"name": "other", "model": "tiny-chta", "base_port": 30101, "instances": 1, "gpus": []}]
    with pytest.raises(PlanError, match=r"^sglang_deployments\[1\]\.model: 'tiny-chta' is not one of model_cache_models \(tiny-chat\)"):
        plan_instances(deployments, gpus=[], known_models=["tiny-chat"])
    assert len(plan_instances(deployments, gpus=[], known_models=["tiny-chat", "tiny-chta"])) == 2
