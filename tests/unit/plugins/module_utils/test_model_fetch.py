"""hf_model's logic against the fake hub (a real process) with the real huggingface_hub."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils import _model_fetch as mf
from ansible_collections.inferops.sglang.plugins.module_utils._model_fetch import (
    MANIFEST_NAME,
    FetchError,
    MissingLibrary,
    fetch_model,
    filter_paths,
    public_endpoint,
    resolve_endpoint,
    resumable_fetch,
)

CHAT_FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def source_file(fakehub, repo, rev, path):
    return os.path.join(fakehub.models, repo, "revs", rev, path)


def model_files(dest):
    out = []
    for root, dirs, names in os.walk(dest):
        dirs[:] = [d for d in dirs if d not in (".cache", ".inferops-partial")]
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), dest)
            if rel != MANIFEST_NAME:
                out.append(rel)
    return sorted(out)


@pytest.fixture
def hub(fakehub):
    fakehub.reset()
    return fakehub


# ----------------------------------------------------------------------------- Hugging Face


def test_hf_first_download_then_nothing_is_fetched_again(hub, tmp_path):
    dest = str(tmp_path / "tiny-chat")
    first = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)
    assert first["changed"] is True
    assert first["downloaded"] == CHAT_FILES and [f["path"] for f in first["files"]] == CHAT_FILES
    assert first["revision"] == "main" and len(first["commit"]) == 40
    assert first["bytes"] == sum(f["size"] for f in first["files"])
    assert model_files(dest) == CHAT_FILES
    for name in CHAT_FILES:
        assert sha256(os.path.join(dest, name)) == sha256(source_file(hub, "inferops/tiny-chat", "r2", name))
    safetensors = [f for f in first["files"] if f["path"] == "model.safetensors"][0]
    assert safetensors["sha256"] == sha256(os.path.join(dest, "model.safetensors"))
    assert hub.file_stats("hf", "inferops/tiny-chat", "model.safetensors")["get"] == 1
    with open(os.path.join(dest, MANIFEST_NAME), encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["commit"] == first["commit"] and sorted(manifest["files"]) == CHAT_FILES
    assert oct(os.stat(os.path.join(dest, MANIFEST_NAME)).st_mode & 0o777) == "0o644"

    hub.reset()
    second = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)
    assert second["changed"] is False and second["downloaded"] == [] and second["bytes"] == 0
    assert second["commit"] == first["commit"]
    stats = hub.stats()
    assert stats["api"] == {"hf_model_info": 1}          # the one metadata call
    assert stats["files"] == {}                           # no HEAD, no GET of any file


def test_hf_pinned_commit_already_present_needs_no_request(hub, tmp_path):
    dest = str(tmp_path / "m")
    commit = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)["commit"]
    hub.reset()
    res = fetch_model("hf", dest, repo_id="inferops/tiny-chat", revision=commit, endpoint=hub.url)
    assert res["changed"] is False and res["commit"] == commit
    assert hub.stats()["requests"] == []


def test_hf_revision_change_fetches_only_what_changed(hub, tmp_path):
    dest = str(tmp_path / "m")
    old = fetch_model("hf", dest, repo_id="inferops/tiny-chat", revision="v1.0", endpoint=hub.url)
    assert "NOTES.md" in model_files(dest)
    hub.reset()
    new = fetch_model("hf", dest, repo_id="inferops/tiny-chat", revision="main", endpoint=hub.url)
    assert new["changed"] is True and new["commit"] != old["commit"]
    assert new["downloaded"] == ["generation_config.json"]
    assert new["removed"] == ["NOTES.md"]
    assert model_files(dest) == CHAT_FILES
    assert hub.file_stats("hf", "inferops/tiny-chat", "model.safetensors")["get"] == 0
    assert hub.file_stats("hf", "inferops/tiny-chat", "generation_config.json")["get"] == 1
    with open(os.path.join(dest, "generation_config.json"), encoding="utf-8") as handle:
        assert json.load(handle)["temperature"] == 0.6


def test_hf_resumes_a_cut_download_with_range(hub, tmp_path):
    dest = str(tmp_path / "large")
    size = os.path.getsize(source_file(hub, "inferops/tiny-large", "r1", "model.safetensors"))
    cut = 10 * 1024 * 1024 + 4096   # just past huggingface_hub's first 10 MiB write
    hub.fault(source="hf", path="model.safetensors", cut_after=cut, count=1)
    res = fetch_model("hf", dest, repo_id="inferops/tiny-large", endpoint=hub.url, sleep=lambda s: None)
    assert "model.safetensors" in res["downloaded"]
    stats = hub.file_stats("hf", "inferops/tiny-large", "model.safetensors")
    assert stats["cut"] == 1 and stats["get"] == 1 and stats["range_get"] == 1
    ranged = [r for r in hub.stats()["requests"] if r["range"]]
    assert len(ranged) == 1 and ranged[0]["status"] == 206
    start = int(ranged[0]["range"].split("=")[1].rstrip("-"))
    # huggingface_hub 2.x resumes at its last 10 MiB write; 0.x at the last byte it kept
    assert 10 * 1024 * 1024 <= start <= cut
    # every byte crossed the wire once, except what was cut between the last write and the cut
    assert stats["bytes_sent"] == cut + (size - start)
    assert sha256(os.path.join(dest, "model.safetensors")) == sha256(
        source_file(hub, "inferops/tiny-large", "r1", "model.safetensors"))


def test_hf_gated_without_token_fails_naming_token_before_writing(hub, tmp_path):
    dest = str(tmp_path / "gated")
    with pytest.raises(FetchError) as err:
        fetch_model("hf", dest, repo_id="inferops/tiny-gated", endpoint=hub.url)
    assert err.value.field == "token" and str(err.value).startswith("token: repository inferops/tiny-gated is gated")
    assert not os.path.exists(dest)
    assert hub.body_gets() == 0


def test_hf_gated_with_a_token_that_has_no_access(hub, tmp_path):
    with pytest.raises(FetchError) as err:
        fetch_model("hf", str(tmp_path / "g"), repo_id="inferops/tiny-gated", endpoint=hub.url, token="hf_not_granted",
                    allow_insecure_token=True)
    assert err.value.field == "token" and "refused" in str(err.value)
    assert "hf_not_granted" not in str(err.value)


@pytest.mark.parametrize("source", ["hf", "modelscope"])
def test_a_token_is_never_sent_over_plain_http_unless_allowed(hub, tmp_path, source):
    before = hub.stats()
    with pytest.raises(FetchError) as err:
        fetch_model(source, str(tmp_path / "g"), repo_id="inferops/tiny-gated", endpoint=hub.url,
                    token=hub.gated_token())
    assert err.value.field == "endpoint" and "plain HTTP" in str(err.value) and "allow_insecure_token" in str(err.value)
    assert hub.gated_token() not in str(err.value)
    assert hub.stats() == before  # refused before any request


def test_a_local_copy_refuses_a_token(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(FetchError) as err:
        fetch_model("local", str(tmp_path / "d"), src=str(src), token="hf_something_secret")
    assert err.value.field == "token" and "hf_something_secret" not in str(err.value)


def test_hf_gated_with_token_works_and_the_token_is_nowhere(hub, tmp_path):
    dest = str(tmp_path / "gated")
    token = hub.gated_token()
    res = fetch_model("hf", dest, repo_id="inferops/tiny-gated", endpoint=hub.url, token=token,
                      allow_insecure_token=True)
    assert res["changed"] is True and len(res["downloaded"]) == 5
    assert token not in json.dumps(res)
    for root, _dirs, names in os.walk(dest):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                assert token.encode() not in handle.read(), name


def test_hf_endpoint_from_hf_endpoint_env(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    res = fetch_model("hf", str(tmp_path / "m"), repo_id="inferops/tiny-embed")
    assert res["endpoint"] == hub.url and res["changed"] is True


def test_hf_patterns(hub, tmp_path):
    dest = str(tmp_path / "m")
    res = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url,
                      allow_patterns=["*.json"], ignore_patterns=["tokenizer*"])
    assert res["downloaded"] == ["config.json", "generation_config.json"]
    assert model_files(dest) == ["config.json", "generation_config.json"]
    with pytest.raises(FetchError) as err:
        fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url, allow_patterns=["*.gguf"])
    assert err.value.field == "allow_patterns"


@pytest.mark.parametrize("kwargs,field,text", [
    ({"repo_id": "inferops/nope"}, "repo_id", "repository inferops/nope not found"),
    ({"repo_id": "inferops/tiny-chat", "revision": "no-such-branch"}, "revision", "revision 'no-such-branch' not found"),
])
def test_hf_unknown_repo_or_revision(hub, tmp_path, kwargs, field, text):
    with pytest.raises(FetchError) as err:
        fetch_model("hf", str(tmp_path / "m"), endpoint=hub.url, **kwargs)
    assert err.value.field == field and text in str(err.value)


def test_hf_unreachable_endpoint_names_endpoint(tmp_path):
    with pytest.raises(FetchError) as err:
        fetch_model("hf", str(tmp_path / "m"), repo_id="inferops/tiny-chat", endpoint="http://127.0.0.1:9", timeout=5)
    assert err.value.field == "endpoint"


def test_hf_a_damaged_file_of_another_size_is_fetched_again(hub, tmp_path):
    dest = str(tmp_path / "m")
    fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)
    with open(os.path.join(dest, "tokenizer.json"), "a", encoding="utf-8") as handle:
        handle.write("garbage")
    os.unlink(os.path.join(dest, "config.json"))
    hub.reset()
    res = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)
    assert res["changed"] is True and res["downloaded"] == ["config.json", "tokenizer.json"]
    assert sha256(os.path.join(dest, "tokenizer.json")) == sha256(source_file(hub, "inferops/tiny-chat", "r2", "tokenizer.json"))
    assert hub.file_stats("hf", "inferops/tiny-chat", "model.safetensors")["get"] == 0


def test_hf_adopts_a_directory_filled_by_hand_after_checking_hashes(hub, tmp_path):
    dest = tmp_path / "m"
    shutil.copytree(os.path.join(hub.models, "inferops", "tiny-chat", "revs", "r2"), str(dest))
    hub.reset()
    res = fetch_model("hf", str(dest), repo_id="inferops/tiny-chat", endpoint=hub.url)
    assert res["downloaded"] == [] and res["changed"] is True      # only the manifest is new
    assert os.path.exists(os.path.join(str(dest), MANIFEST_NAME)) and hub.body_gets() == 0


def test_hf_check_mode_reports_without_writing(hub, tmp_path):
    dest = str(tmp_path / "m")
    res = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url, check_mode=True)
    assert res["changed"] is True and res["downloaded"] == CHAT_FILES and not os.path.exists(dest)
    assert res["diff"]["before"] == "" and '"model.safetensors"' in res["diff"]["after"]
    assert hub.body_gets() == 0
    real = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)
    assert real["downloaded"] == res["downloaded"] and real["commit"] == res["commit"]
    again = fetch_model("hf", dest, repo_id="inferops/tiny-chat", endpoint=hub.url, check_mode=True)
    assert again["changed"] is False and again["diff"]["before"] == again["diff"]["after"]


def test_hf_without_the_library_reports_missing_library(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingLibrary) as err:
        fetch_model("hf", str(tmp_path / "m"), repo_id="inferops/tiny-chat", endpoint="http://127.0.0.1:9")
    assert err.value.library == "huggingface_hub"


# ----------------------------------------------------------------------------- ModelScope


def test_modelscope_download_unchanged_and_revision_change(hub, tmp_path):
    dest = str(tmp_path / "ms")
    first = fetch_model("modelscope", dest, repo_id="inferops/tiny-chat", endpoint=hub.url, revision="v1.0")
    assert first["changed"] is True and first["downloaded"] == sorted(CHAT_FILES + ["NOTES.md"])
    assert first["revision"] == "v1.0"
    for name in first["downloaded"]:
        assert sha256(os.path.join(dest, name)) == sha256(source_file(hub, "inferops/tiny-chat", "r1", name))
    assert not os.path.exists(os.path.join(dest, ".inferops-partial"))

    hub.reset()
    again = fetch_model("modelscope", dest, repo_id="inferops/tiny-chat", endpoint=hub.url, revision="v1.0")
    assert again["changed"] is False and hub.stats()["api"] == {"ms_files": 1} and hub.body_gets() == 0

    new = fetch_model("modelscope", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)
    assert new["revision"] == "master"
    assert new["downloaded"] == ["generation_config.json"] and new["removed"] == ["NOTES.md"]
    assert hub.file_stats("ms", "inferops/tiny-chat", "model.safetensors")["get"] == 0


def test_modelscope_resumes_within_a_run(hub, tmp_path):
    dest = str(tmp_path / "ms")
    hub.fault(source="modelscope", path="model.safetensors", cut_after=700000, count=1)
    res = fetch_model("modelscope", dest, repo_id="inferops/tiny-chat", endpoint=hub.url, sleep=lambda s: None)
    stats = hub.file_stats("ms", "inferops/tiny-chat", "model.safetensors")
    assert stats["cut"] == 1 and stats["range_get"] == 1
    size = os.path.getsize(source_file(hub, "inferops/tiny-chat", "r2", "model.safetensors"))
    assert stats["bytes_sent"] == size                 # nothing sent twice
    assert res["bytes"] == sum(f["size"] for f in res["files"])
    assert sha256(os.path.join(dest, "model.safetensors")) == sha256(
        source_file(hub, "inferops/tiny-chat", "r2", "model.safetensors"))


def test_modelscope_resumes_across_runs(hub, tmp_path):
    dest = str(tmp_path / "ms")
    hub.fault(source="modelscope", path="model.safetensors", cut_after=300000, count=3)
    with pytest.raises(FetchError) as err:
        fetch_model("modelscope", dest, repo_id="inferops/tiny-chat", endpoint=hub.url, retries=2, sleep=lambda s: None)
    assert "model.safetensors" in str(err.value) and "next run resumes" in str(err.value)
    assert not os.path.exists(os.path.join(dest, "model.safetensors"))
    assert not os.path.exists(os.path.join(dest, MANIFEST_NAME))
    partial = os.path.join(dest, ".inferops-partial", "model.safetensors.part")
    assert os.path.getsize(partial) == 900000

    hub.reset()
    res = fetch_model("modelscope", dest, repo_id="inferops/tiny-chat", endpoint=hub.url)
    assert res["resumed"] == ["model.safetensors"]
    stats = hub.file_stats("ms", "inferops/tiny-chat", "model.safetensors")
    assert stats["get"] == 0 and stats["range_get"] == 1
    ranged = [r for r in hub.stats()["requests"] if r["range"]]
    assert ranged == [dict(ranged[0], range="bytes=900000-", status=206)]
    assert sha256(os.path.join(dest, "model.safetensors")) == sha256(
        source_file(hub, "inferops/tiny-chat", "r2", "model.safetensors"))
    assert not os.path.exists(os.path.join(dest, ".inferops-partial"))


@pytest.mark.parametrize("token,message", [
    (None, "token: ModelScope model inferops/tiny-gated needs a token (HTTP 401): set token"),
    ("wrong-token", "token: ModelScope refused the token for inferops/tiny-gated (HTTP 403"),
])
def test_modelscope_gated(hub, tmp_path, token, message):
    with pytest.raises(FetchError) as err:
        fetch_model("modelscope", str(tmp_path / "g"), repo_id="inferops/tiny-gated", endpoint=hub.url, token=token,
                    allow_insecure_token=True)
    assert str(err.value).startswith(message) and "wrong-token" not in str(err.value)


def test_modelscope_gated_with_token(hub, tmp_path):
    res = fetch_model("modelscope", str(tmp_path / "g"), repo_id="inferops/tiny-gated", endpoint=hub.url,
                      token=hub.gated_token(), allow_insecure_token=True)
    assert res["changed"] is True and len(res["files"]) == 5


def test_modelscope_unknown_model(hub, tmp_path):
    with pytest.raises(FetchError) as err:
        fetch_model("modelscope", str(tmp_path / "g"), repo_id="inferops/nope", endpoint=hub.url)
    assert err.value.field == "repo_id"


# ----------------------------------------------------------------------------- local / NFS


@pytest.fixture
def nfs_copy(fakehub, tmp_path):
    src = tmp_path / "nfs" / "tiny-chat"
    shutil.copytree(os.path.join(fakehub.models, "inferops", "tiny-chat", "revs", "r2"), str(src))
    (src / "sub").mkdir()
    (src / "sub" / "extra.txt").write_text("nested file\n")
    return str(src)


def test_local_copy_is_idempotent_and_copies_only_changes(nfs_copy, tmp_path):
    dest = str(tmp_path / "models" / "tiny-chat")
    first = fetch_model("local", dest, src=nfs_copy)
    assert first["changed"] is True and first["downloaded"] == sorted(CHAT_FILES + ["sub/extra.txt"])
    assert first["endpoint"] is None
    for name in first["downloaded"]:
        assert sha256(os.path.join(dest, name)) == sha256(os.path.join(nfs_copy, name))
    assert fetch_model("local", dest, src=nfs_copy)["changed"] is False

    with open(os.path.join(nfs_copy, "config.json"), "a", encoding="utf-8") as handle:
        handle.write("\n")
    os.unlink(os.path.join(nfs_copy, "sub", "extra.txt"))
    res = fetch_model("local", dest, src=nfs_copy)
    assert res["downloaded"] == ["config.json"] and res["removed"] == ["sub/extra.txt"]
    assert not os.path.exists(os.path.join(dest, "sub"))
    assert sha256(os.path.join(dest, "config.json")) == sha256(os.path.join(nfs_copy, "config.json"))


def test_local_resumes_a_partial_copy(nfs_copy, tmp_path):
    dest = tmp_path / "models" / "m"
    partial_dir = dest / ".inferops-partial"
    partial_dir.mkdir(parents=True)
    with open(os.path.join(nfs_copy, "model.safetensors"), "rb") as handle:
        (partial_dir / "model.safetensors.part").write_bytes(handle.read(123456))
    res = fetch_model("local", str(dest), src=nfs_copy)
    assert res["resumed"] == ["model.safetensors"]
    assert sha256(str(dest / "model.safetensors")) == sha256(os.path.join(nfs_copy, "model.safetensors"))
    assert res["bytes"] == sum(f["size"] for f in res["files"]) - 123456


def test_local_check_mode(nfs_copy, tmp_path):
    dest = str(tmp_path / "models" / "m")
    res = fetch_model("local", dest, src=nfs_copy, check_mode=True)
    assert res["changed"] is True and len(res["downloaded"]) == 6 and not os.path.exists(dest)


# ----------------------------------------------------------------------------- validation and helpers


@pytest.mark.parametrize("args,field", [
    (dict(source="s3", dest="/tmp/x", repo_id="a/b"), "source"),
    (dict(source="hf", dest="relative/dir", repo_id="a/b"), "dest"),
    (dict(source="hf", dest="/tmp/x", repo_id="not a repo"), "repo_id"),
    (dict(source="hf", dest="/tmp/x", repo_id=None), "repo_id"),
    (dict(source="local", dest="/tmp/x"), "src"),
    (dict(source="local", dest="/tmp/x", src="/nonexistent/nfs/model"), "src"),
    (dict(source="hf", dest="/tmp/x", repo_id="a/b", endpoint="ftp://mirror"), "endpoint"),
    (dict(source="hf", dest="/tmp/x", repo_id="a/b", allow_patterns="*.json"), "allow_patterns"),
])
def test_bad_input_names_the_field(args, field):
    with pytest.raises(FetchError) as err:
        fetch_model(**args)
    assert err.value.field == field and str(err.value).startswith(field + ": ")


def test_dest_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(FetchError, match="^dest: .* is not a directory"):
        fetch_model("hf", str(target), repo_id="a/b")


@pytest.mark.parametrize("allow,ignore,expected", [
    (None, None, ["a.json", "b.safetensors", "sub/c.json", "tok.model"]),
    (["*.json"], None, ["a.json", "sub/c.json"]),
    (["sub/"], None, ["sub/c.json"]),
    (None, ["*.safetensors", "sub/"], ["a.json", "tok.model"]),
    (["*.json", "tok.*"], ["sub/*"], ["a.json", "tok.model"]),
])
def test_filter_paths_follows_huggingface_hub(allow, ignore, expected):
    from huggingface_hub.utils import filter_repo_objects  # pylint: disable=import-outside-toplevel
    paths = ["b.safetensors", "a.json", "sub/c.json", "tok.model"]
    assert filter_paths(paths, allow, ignore) == expected
    assert sorted(filter_repo_objects(paths, allow_patterns=allow, ignore_patterns=ignore)) == expected


def test_endpoint_resolution():
    assert resolve_endpoint("hf", None, {}) == "https://huggingface.co"
    assert resolve_endpoint("hf", None, {"HF_ENDPOINT": "https://hf-mirror.com/"}) == "https://hf-mirror.com"
    assert resolve_endpoint("hf", "http://10.0.0.9:8080", {"HF_ENDPOINT": "https://x"}) == "http://10.0.0.9:8080"
    assert resolve_endpoint("modelscope", None, {}) == "https://www.modelscope.cn"
    assert resolve_endpoint("modelscope", None, {"MODELSCOPE_DOMAIN": "modelscope.example"}) == "https://modelscope.example"
    assert resolve_endpoint("local", "http://ignored", {}) is None
    assert public_endpoint("https://user:pw@mirror.example:8443/hf") == "https://mirror.example:8443/hf"


def test_resumable_fetch_restarts_when_the_server_ignores_range(tmp_path):
    data = bytes(range(256)) * 100
    part = str(tmp_path / "p" / "x.part")
    os.makedirs(os.path.dirname(part))
    with open(part, "wb") as handle:
        handle.write(b"stale bytes that are not the start of the file")
    calls = []

    def open_at(offset):
        import io  # pylint: disable=import-outside-toplevel
        calls.append(offset)
        return io.BytesIO(data), False      # a 200 instead of a 206

    transferred, resumed_from = resumable_fetch(open_at, part, len(data), sleep=lambda s: None)
    assert calls == [46] and transferred == len(data) and resumed_from == 46
    with open(part, "rb") as handle:
        assert handle.read() == data


def test_manifest_view_ignores_the_endpoint():
    base = {"format": 1, "source": "hf", "repo_id": "a/b", "revision": "main", "commit": "c" * 40,
            "endpoint": "https://huggingface.co", "files": {"x": {"size": 1, "sha256": "s"}}}
    mirror = dict(base, endpoint="https://mirror.example")
    assert mf.manifest_view(base) == mf.manifest_view(mirror)
    assert mf.manifest_view(dict(base, commit="d" * 40)) != mf.manifest_view(base)
