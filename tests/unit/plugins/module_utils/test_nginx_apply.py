"""The safe apply shared by the nginx_config module and the HA agent: write, check, roll back."""

from __future__ import annotations

import os

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._nginx_apply import (
    ApplyError,
    apply_files,
    plan_changes,
)


def spec(content, **kw):
    return dict({"content": content, "mode": 0o644}, **kw)


def test_changed_files_are_written_and_checked_once(tmp_path):
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    a.write_text("old a\n")
    os.chmod(a, 0o644)
    calls = []

    def runner(argv, **kw):
        calls.append((argv, a.read_text(), b.read_text()))
        return type("R", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    changed = apply_files({str(a): spec("new a\n"), str(b): spec("new b\n", mode=0o640)}, ["nginx", "-t"],
                          ["reload"], runner=runner)
    assert changed == sorted([str(a), str(b)])
    # nginx -t saw the whole new configuration, then the reload ran.
    assert calls[0] == (["nginx", "-t"], "new a\n", "new b\n") and calls[1][0] == ["reload"]
    assert oct(os.stat(b).st_mode & 0o777) == "0o640"
    assert apply_files({str(a): spec("new a\n")}, ["nginx", "-t"], runner=runner) == []


def test_a_refused_configuration_is_rolled_back_and_nothing_reloaded(tmp_path):
    a, new, gone = tmp_path / "a.conf", tmp_path / "new.conf", tmp_path / "gone.conf"
    a.write_text("good\n")
    os.chmod(a, 0o644)
    gone.write_text("keep me\n")
    calls = []

    def runner(argv, **kw):
        calls.append(argv)
        return type("R", (), {"returncode": 1, "stdout": "", "stderr": "unknown directive \"bad\""})()

    with pytest.raises(ApplyError, match='previous files are back.*unknown directive "bad"'):
        apply_files({str(a): spec("bad\n"), str(new): spec("x\n")}, ["nginx", "-t"], ["reload"],
                    remove=[str(gone)], runner=runner)
    assert a.read_text() == "good\n" and not new.exists() and gone.read_text() == "keep me\n"
    assert calls == [["nginx", "-t"]]


def test_create_only_files_are_left_alone_once_they_exist(tmp_path):
    owned = tmp_path / "upstream-chat.conf"
    assert list(plan_changes({str(owned): spec("first\n", create_only=True)})) == [str(owned)]
    owned.write_text("the agent's\n")
    assert plan_changes({str(owned): spec("first\n", create_only=True)}) == {}
