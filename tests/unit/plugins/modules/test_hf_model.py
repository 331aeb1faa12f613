from __future__ import annotations

import json
import os
import sys

from ansible_collections.inferops.sglang.plugins.modules import hf_model


def test_download_then_unchanged(fakehub, tmp_path, run_module):
    fakehub.reset()
    dest = str(tmp_path / "tiny-chat")
    args = {"repo_id": "inferops/tiny-chat", "dest": dest, "endpoint": fakehub.url}
    first = run_module(hf_model.main, args)
    assert "failed" not in first and first["changed"] is True and len(first["downloaded"]) == 5
    assert first["manifest"] == os.path.join(dest, ".inferops-model.json") and "diff" not in first
    second = run_module(hf_model.main, args)
    assert second["changed"] is False and second["downloaded"] == [] and second["commit"] == first["commit"]


def test_check_mode_with_diff_writes_nothing(fakehub, tmp_path, run_module):
    dest = str(tmp_path / "m")
    out = run_module(hf_model.main, {"repo_id": "inferops/tiny-embed", "dest": dest, "endpoint": fakehub.url},
                     check_mode=True, diff=True)
    assert out["changed"] is True and not os.path.exists(dest)
    assert out["diff"]["before"] == ""
    after = json.loads(out["diff"]["after"])
    assert after["repo_id"] == "inferops/tiny-embed" and after["commit"] == out["commit"]
    assert sorted(after["files"]) == sorted(f["path"] for f in out["files"])


def test_diff_shows_the_revision_change(fakehub, tmp_path, run_module):
    dest = str(tmp_path / "m")
    base = {"repo_id": "inferops/tiny-chat", "dest": dest, "endpoint": fakehub.url}
    run_module(hf_model.main, dict(base, revision="v1.0"))
    out = run_module(hf_model.main, dict(base, revision="main"), diff=True)
    before, after = json.loads(out["diff"]["before"]), json.loads(out["diff"]["after"])
    assert before["revision"] == "v1.0" and after["revision"] == "main" and before["commit"] != after["commit"]
    assert "NOTES.md" in before["files"] and "NOTES.md" not in after["files"]


def test_unknown_source_is_rejected_naming_the_field(tmp_path, run_module):
    out = run_module(hf_model.main, {"source": "s3", "repo_id": "a/b", "dest": str(tmp_path)})
    assert out["failed"] is True and "source" in out["msg"] and "hf, modelscope, local" in out["msg"]


def test_required_parameters_per_source(tmp_path, run_module):
    out = run_module(hf_model.main, {"dest": str(tmp_path)})
    assert out["failed"] is True and "repo_id" in out["msg"]
    out = run_module(hf_model.main, {"source": "local", "dest": str(tmp_path / "d")})
    assert out["failed"] is True and "src" in out["msg"]


def test_gated_without_token_names_token(fakehub, tmp_path, run_module):
    out = run_module(hf_model.main, {"repo_id": "inferops/tiny-gated", "dest": str(tmp_path / "g"),
                                     "endpoint": fakehub.url})
    assert out["failed"] is True and out["field"] == "token" and out["msg"].startswith("token: ")


def test_token_never_shows_in_the_result(fakehub, tmp_path, run_module):
    token = fakehub.gated_token()
    out = run_module(hf_model.main, {"repo_id": "inferops/tiny-gated", "dest": str(tmp_path / "g"),
                                     "endpoint": fakehub.url, "token": token, "allow_insecure_token": True}, diff=True)
    assert "failed" not in out and out["changed"] is True
    assert token not in json.dumps(out)


def test_missing_huggingface_hub_gives_the_standard_message(tmp_path, run_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    out = run_module(hf_model.main, {"repo_id": "a/b", "dest": str(tmp_path / "m"), "endpoint": "http://127.0.0.1:9"})
    assert out["failed"] is True
    assert "Failed to import the required Python library (huggingface_hub)" in out["msg"]


def test_modelscope_and_local_through_the_module(fakehub, tmp_path, run_module):
    ms_dest = str(tmp_path / "ms")
    out = run_module(hf_model.main, {"source": "modelscope", "repo_id": "inferops/tiny-embed", "dest": ms_dest,
                                     "endpoint": fakehub.url})
    assert out["changed"] is True and out["revision"] == "master"
    out = run_module(hf_model.main, {"source": "local", "src": ms_dest, "dest": str(tmp_path / "copy")})
    assert out["changed"] is True and sorted(out["downloaded"]) == sorted(f["path"] for f in out["files"])
    assert ".inferops-model.json" not in out["downloaded"]
