from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.sglang.plugins.filter.instance_plan import FilterModule, sglang_instance_plan

GPUS = [{"index": i, "uuid": "GPU-%d" % i, "memory_total_mib": 24576} for i in range(4)]


def test_filter_is_registered_under_its_name():
    assert FilterModule().filters()["sglang_instance_plan"] is sglang_instance_plan


def test_filter_returns_the_plan():
    plan = sglang_instance_plan([{"name": "chat", "model": "tiny-chat", "tp_size": 2, "base_port": 30001}], gpus=GPUS)
    assert [(p["name"], p["device_ids"]) for p in plan] == [("sglang-chat-1", ["0", "1"]), ("sglang-chat-2", ["2", "3"])]


def test_filter_errors_are_filter_errors_naming_the_variable():
    with pytest.raises(AnsibleFilterError) as err:
        sglang_instance_plan([{"name": "chat", "model": "tiny-chat", "tp_size": 3, "base_port": 30001}], gpus=GPUS)
    assert "sglang_deployments[0].tp_size: 3 does not divide the 4 GPUs assigned (0,1,2,3)" in str(err.value)


def test_filter_works_by_fqcn_in_a_real_ansible_run(tmp_path):
    """The role calls it as inferops.sglang.sglang_instance_plan; check that name resolves in ansible itself."""
    import ansible_collections.inferops.sglang as coll  # pylint: disable=import-outside-toplevel
    coll_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(coll.__path__[0]))))
    playbook = tmp_path / "plan.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  vars:\n"
        "    deps: [{name: chat, model: tiny-chat, instances: 2, base_port: 30001}]\n"
        "  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"{{ deps | inferops.sglang.sglang_instance_plan(gpus=[]) | map(attribute='name') | list }}\"\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"{{ deps | inferops.sglang.sglang_instance_plan(gpus=[], name_prefix='Bad Prefix') }}\"\n"
    )
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=coll_root, ANSIBLE_NOCOLOR="true",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run([ansible_playbook, "-i", "localhost,", "-c", "local", str(playbook)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    ok_part, failed_part = proc.stdout.split("fatal: [localhost]", 1)
    first = json.loads(ok_part[ok_part.index("ok: [localhost] => ") + len("ok: [localhost] => "):].split("\n\n")[0])
    assert first["msg"] == ["sglang-chat-1", "sglang-chat-2"]
    assert "name_prefix: 'Bad Prefix' must match [a-z0-9-]" in failed_part
    assert proc.returncode == 2, proc.stdout + proc.stderr
