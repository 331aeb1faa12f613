"""The fake hub itself: the protocol details clients rely on (it stands in for the Hub in molecule too)."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request

import pytest


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode())


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # pylint: disable=unused-argument
        return None


def call(url, method="GET", headers=None, data=None):
    opener = urllib.request.build_opener(NoRedirect(), urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with opener.open(request, timeout=10) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, err.headers, err.read())


@pytest.fixture
def hub(fakehub):
    fakehub.reset()
    return fakehub


def test_model_info_with_blobs_lists_sizes_and_lfs(hub):
    info = call(hub.url + "/api/models/inferops/tiny-chat/revision/main?blobs=true").json()
    assert info["id"] == "inferops/tiny-chat" and len(info["sha"]) == 40 and info["gated"] is False
    siblings = {s["rfilename"]: s for s in info["siblings"]}
    weights = siblings["model.safetensors"]
    assert weights["lfs"]["size"] == weights["size"] and len(weights["lfs"]["sha256"]) == 64
    assert "lfs" not in siblings["config.json"] and len(siblings["config.json"]["blobId"]) == 40
    plain = call(hub.url + "/api/models/inferops/tiny-chat").json()
    assert plain["sha"] == info["sha"] and "size" not in plain["siblings"][0]


def test_tags_branches_and_commit_prefixes_resolve(hub):
    main = call(hub.url + "/api/models/inferops/tiny-chat/revision/main").json()["sha"]
    tag = call(hub.url + "/api/models/inferops/tiny-chat/revision/v1.0").json()["sha"]
    assert main != tag
    assert call(hub.url + "/api/models/inferops/tiny-chat/revision/" + tag[:10]).json()["sha"] == tag
    missing = call(hub.url + "/api/models/inferops/tiny-chat/revision/nope")
    assert missing.status == 404 and missing.headers["X-Error-Code"] == "RevisionNotFound"
    unknown = call(hub.url + "/api/models/inferops/none")
    assert unknown.status == 404 and unknown.headers["X-Error-Code"] == "RepoNotFound"


def test_resolve_plain_file_and_lfs_redirect(hub):
    plain = call(hub.url + "/inferops/tiny-chat/resolve/main/config.json", method="HEAD")
    assert plain.status == 200 and plain.headers["X-Repo-Commit"] and plain.headers["ETag"].startswith('"')
    assert int(plain.headers["Content-Length"]) > 0 and plain.body == b""
    lfs = call(hub.url + "/inferops/tiny-chat/resolve/main/model.safetensors", method="HEAD")
    assert lfs.status == 302 and lfs.headers["Location"].startswith("/_fakehub/lfs/inferops/tiny-chat/")
    size = os.path.getsize(os.path.join(hub.models, "inferops", "tiny-chat", "revs", "r2", "model.safetensors"))
    assert lfs.headers["X-Linked-Size"] == str(size) and len(lfs.headers["X-Linked-Etag"].strip('"')) == 64
    assert not any(h.lower().startswith("x-xet") for h in lfs.headers.keys())
    body = call(hub.url + lfs.headers["Location"])
    assert hashlib.sha256(body.body).hexdigest() == lfs.headers["X-Linked-Etag"].strip('"')


@pytest.mark.parametrize("header,status,expected", [
    ("bytes=10-19", 206, "bytes 10-19/"),
    ("bytes=-5", 206, None),
    ("bytes=999999999-", 416, "bytes */"),
])
def test_ranges(hub, header, status, expected):
    url = hub.url + "/inferops/tiny-chat/resolve/main/config.json"
    whole = call(url).body
    resp = call(url, headers={"Range": header})
    assert resp.status == status
    if expected:
        assert (resp.headers.get("Content-Range") or "").startswith(expected)
    if header == "bytes=10-19":
        assert resp.body == whole[10:20]
    if header == "bytes=-5":
        assert resp.body == whole[-5:]


def test_gated_repo_answers_like_the_hub(hub):
    url = hub.url + "/inferops/tiny-gated/resolve/main/config.json"
    anonymous = call(url)
    assert anonymous.status == 401 and anonymous.headers["X-Error-Code"] == "GatedRepo"
    wrong = call(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 403 and wrong.headers["X-Error-Code"] == "GatedRepo"
    good = call(url, headers={"Authorization": "Bearer " + hub.gated_token()})
    assert good.status == 200
    info = call(hub.url + "/api/models/inferops/tiny-gated").json()
    assert info["gated"] == "manual"


def test_tree_listing_recursive_and_not(hub):
    tree = call(hub.url + "/api/models/inferops/tiny-chat/tree/main?recursive=true").json()
    paths = [e["path"] for e in tree]
    assert "model.safetensors" in paths and all(e["type"] == "file" for e in tree)
    lfs = [e for e in tree if e.get("lfs")]
    assert [e["path"] for e in lfs] == ["model.safetensors"] and "xetHash" not in lfs[0]


def test_modelscope_listing_and_download(hub):
    listing = call(hub.url + "/api/v1/models/inferops/tiny-chat/repo/files?Revision=master&Recursive=True").json()
    assert listing["Code"] == 200 and listing["Success"] is True
    files = {f["Path"]: f for f in listing["Data"]["Files"]}
    weights = files["model.safetensors"]
    assert weights["Type"] == "blob" and weights["IsLFS"] is True and len(weights["Sha256"]) == 64
    body = call(hub.url + "/api/v1/models/inferops/tiny-chat/repo?Revision=master&FilePath=model.safetensors").body
    assert hashlib.sha256(body).hexdigest() == weights["Sha256"] and len(body) == weights["Size"]
    cookie = call(hub.url + "/api/v1/models/inferops/tiny-gated/repo/files?Revision=master",
                  headers={"Cookie": "m_session_id=" + hub.gated_token()})
    assert cookie.status == 200
    assert call(hub.url + "/api/v1/models/inferops/tiny-gated/repo/files?Revision=master").status == 401


def test_static_files_and_traversal(hub):
    resp = call(hub.url + "/hello.txt")
    assert resp.status == 200 and resp.body == b"static file\n" and resp.headers["Content-Type"] == "text/plain"
    assert call(hub.url + "/nope.txt").status == 404
    assert call(hub.url + "/%2e%2e/%2e%2e/etc/passwd").status == 404
    # apt asks for "<repo>/./InRelease" when a flat repository's suite is "./".
    assert call(hub.url + "/%2e/hello.txt").body == b"static file\n"


def test_stats_faults_and_reset(hub):
    url = hub.url + "/api/v1/models/inferops/tiny-chat/repo?Revision=master&FilePath=config.json"
    hub.fault(source="modelscope", path="config.json", status=503)
    assert call(url).status == 503
    assert call(url).status == 200
    stats = hub.file_stats("ms", "inferops/tiny-chat", "config.json")
    assert stats["get"] == 2 and stats["faulted"] == 1
    bad = call(hub.url + "/_fakehub/faults", method="POST", data=b'{"path": "x"}')
    assert bad.status == 400
    hub.reset()
    assert hub.stats()["files"] == {} and hub.stats()["faults"] == []
