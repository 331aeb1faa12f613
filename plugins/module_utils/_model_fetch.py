# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Fetch a model snapshot into a directory: Hugging Face Hub (or a mirror), ModelScope, or a local/NFS path.

No Ansible imports; stdlib only, plus ``huggingface_hub`` imported lazily for
source ``hf``. Python 3.9+.

How it stays idempotent and cheap:

* A manifest (``.inferops-model.json`` in the model directory) records the
  source, repository, requested revision, resolved commit, patterns and every
  file with its size and hashes.
* Each run makes one metadata request (Hub: model info with file metadata;
  ModelScope: the recursive file list; local: a directory walk), compares it
  with the manifest and with the sizes on disk, and fetches only what differs.
  A revision pinned to a commit that the manifest already holds needs no
  request at all.
* Downloads resume. Hub: huggingface_hub's own ``snapshot_download`` (2.x retries
  a cut transfer with an HTTP Range request from its last flushed 10 MiB chunk, so a
  cut inside the first chunk restarts that file; 0.x keeps the partial file for the
  next call, which resumes it). ModelScope and local:
  partial files under ``.inferops-partial/`` resume with Range / seek, also
  across runs.
* Downloaded files are checked: size always; with ``verify``, SHA-256 (Hub LFS
  files, ModelScope ``Sha256``, local copies) and the git blob id (Hub non-LFS
  files).

Tokens go into request headers only; they are scrubbed from every message.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request

MANIFEST_NAME = ".inferops-model.json"
PARTIAL_DIR = ".inferops-partial"
MANIFEST_FORMAT = 1
SOURCES = ("hf", "modelscope", "local")
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MS_DEFAULT_ENDPOINT = "https://www.modelscope.cn"
DEFAULT_REVISION = {"hf": "main", "modelscope": "master", "local": None}
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
REPO_ID_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")
# Directories inside the model directory that are bookkeeping, never model files.
PRIVATE_DIRS = (".cache/", PARTIAL_DIR + "/")
CHUNK = 1024 * 1024


class FetchError(Exception):
    """A failure the user can act on; ``field`` names the parameter at fault (or None)."""

    def __init__(self, field, message):
        self.field = field
        self.detail = message
        super().__init__("%s: %s" % (field, message) if field else message)


class MissingLibrary(FetchError):
    def __init__(self, library, error):
        self.library = library
        self.error = error
        super().__init__(None, "the Python library %s is required for source hf: %s" % (library, error))


def scrub(text, secret):
    if secret and text:
        return text.replace(secret, "********")
    return text


# ---------------------------------------------------------------------------------------
# small helpers


def resolve_endpoint(source, endpoint=None, environ=None):
    """Endpoint to use: the parameter, else the library's environment variable, else the public default."""
    environ = os.environ if environ is None else environ
    if source == "local":
        return None
    if endpoint:
        chosen = endpoint
    elif source == "hf":
        chosen = environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT
    elif source == "modelscope":
        # The ModelScope SDK reads a bare domain from MODELSCOPE_DOMAIN.
        domain = environ.get("MODELSCOPE_DOMAIN")
        chosen = ("https://" + domain) if domain else MS_DEFAULT_ENDPOINT
    parsed = urllib.parse.urlsplit(chosen)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise FetchError("endpoint", "%r is not an http(s) URL" % (chosen,))
    return chosen.rstrip("/")


def public_endpoint(endpoint):
    """The endpoint without user:password, for manifests and messages."""
    if not endpoint:
        return endpoint
    parsed = urllib.parse.urlsplit(endpoint)
    if parsed.username or parsed.password:
        netloc = parsed.hostname + (":%d" % parsed.port if parsed.port else "")
        return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, parsed.fragment))
    return endpoint


def _pattern_list(patterns):
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = [patterns]
    # Same rule as huggingface_hub: "dir/" means everything below dir.
    return [p + "*" if p.endswith("/") else p for p in patterns]


def filter_paths(paths, allow_patterns=None, ignore_patterns=None):
    """huggingface_hub's allow/ignore semantics (fnmatch), applied to every source."""
    allow = _pattern_list(allow_patterns)
    ignore = _pattern_list(ignore_patterns)
    out = []
    for path in paths:
        if allow is not None and not any(fnmatch.fnmatch(path, p) for p in allow):
            continue
        if ignore is not None and any(fnmatch.fnmatch(path, p) for p in ignore):
            continue
        out.append(path)
    return sorted(out)


def _safe_relpath(path, field="repo"):
    norm = path.replace("\\", "/")
    parts = norm.split("/")
    if norm.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise FetchError(field, "refusing unsafe file path %r from the %s listing" % (path, field))
    return norm


def _is_private(path):
    return path == MANIFEST_NAME or any(path.startswith(d) for d in PRIVATE_DIRS)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_oid(path):
    """The git object id of a file (what the Hub lists as ``blobId`` for non-LFS files)."""
    size = os.path.getsize(path)
    digest = hashlib.sha1()
    digest.update(b"blob %d\0" % size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(dest):
    path = os.path.join(dest, MANIFEST_NAME)
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        return None
    return data


def write_manifest(dest, manifest):
    path = os.path.join(dest, MANIFEST_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def manifest_view(manifest):
    """What decides 'changed': everything but the endpoint (a mirror serves the same commit)."""
    if not manifest:
        return None
    files = {}
    for path, rec in sorted(manifest.get("files", {}).items()):
        files[path] = {k: rec[k] for k in ("size", "sha256", "git_oid") if rec.get(k) is not None}
    view = {k: manifest.get(k) for k in ("source", "repo_id", "revision", "commit", "src", "allow_patterns", "ignore_patterns")}
    view["files"] = files
    return view


def diff_text(manifest):
    view = manifest_view(manifest)
    if view is None:
        return ""
    return json.dumps(view, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------
# HTTP (ModelScope) with resume


class _NoCredentialLeakRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but drop credentials when the redirect leaves the host (CDN links are pre-signed)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            for header in ("Authorization", "Cookie"):
                new.headers.pop(header, None)
                new.unredirected_hdrs.pop(header, None)
        return new


def _opener():
    return urllib.request.build_opener(_NoCredentialLeakRedirect())


def _http_open(url, headers, timeout):
    request = urllib.request.Request(url, headers=headers, method="GET")
    return _opener().open(request, timeout=timeout)


class _Transient(Exception):
    pass


def _copy_stream(stream, handle, digest_update=None):
    written = 0
    while True:
        try:
            block = stream.read(CHUNK)
        except (OSError, ValueError, EOFError, http.client.HTTPException) as exc:
            # A cut connection shows up as IncompleteRead (HTTPException), a reset or a timeout.
            raise _Transient("transfer cut after %d bytes: %s" % (written, exc))
        if not block:
            return written
        handle.write(block)
        written += len(block)


def _partial_path(dest, relpath):
    return os.path.join(dest, PARTIAL_DIR, urllib.parse.quote(relpath, safe="") + ".part")


def resumable_fetch(open_at, part_path, expected_size, retries=5, sleep=time.sleep):
    """Fill ``part_path`` up to ``expected_size`` bytes, resuming from what it holds.

    ``open_at(offset)`` returns ``(stream, resumed)``: ``resumed`` is False when the
    source restarted from byte 0 (a server that ignores Range), so the partial
    file is truncated. Returns ``(bytes_transferred, resumed_from)``.
    """
    os.makedirs(os.path.dirname(part_path), exist_ok=True)
    transferred = 0
    first_offset = None
    attempt = 0
    while True:
        have = os.path.getsize(part_path) if os.path.exists(part_path) else 0
        if have > expected_size:
            have = 0
            open(part_path, "wb").close()
        if first_offset is None:
            first_offset = have
        if have == expected_size:
            return transferred, first_offset
        try:
            stream, resumed = open_at(have)
            with stream:
                mode = "ab" if resumed and have else "wb"
                with open(part_path, mode) as handle:
                    transferred += _copy_stream(stream, handle)
        except _Transient as exc:
            attempt += 1
            if attempt > retries:
                raise FetchError(None, "download failed %d times, last: %s (the partial file is kept and "
                                       "the next run resumes it)" % (attempt, exc))
            sleep(min(2 ** (attempt - 1), 10))
            continue
        size = os.path.getsize(part_path)
        if size == expected_size:
            return transferred, first_offset
        if size > expected_size:
            os.unlink(part_path)
            raise FetchError(None, "received %d bytes, more than the %d listed" % (size, expected_size))
        attempt += 1
        if attempt > retries:
            raise FetchError(None, "download stopped at %d of %d bytes %d times (the partial file is kept and "
                                   "the next run resumes it)" % (size, expected_size, attempt))
        sleep(min(2 ** (attempt - 1), 10))


# ---------------------------------------------------------------------------------------
# listings: one metadata request per run


class Listing:
    def __init__(self, commit, files, gated=False):
        self.commit = commit
        # path -> {"size": int, "sha256": str|None, "git_oid": str|None, "src_mtime_ns": int|None}
        self.files = files
        self.gated = gated


def _digest_listing(files):
    digest = hashlib.sha1()
    for path in sorted(files):
        rec = files[path]
        digest.update(("%s\0%s\0%s\0%s\n" % (path, rec.get("size"), rec.get("sha256") or "",
                                             rec.get("src_mtime_ns") or "")).encode("utf-8"))
    return digest.hexdigest()


def _import_hf():
    try:
        import huggingface_hub  # pylint: disable=import-outside-toplevel
        from huggingface_hub import HfApi, snapshot_download  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise MissingLibrary("huggingface_hub", exc)
    try:
        from huggingface_hub import errors as hf_errors  # pylint: disable=import-outside-toplevel
    except ImportError:  # huggingface_hub < 0.23
        from huggingface_hub import utils as hf_errors  # pylint: disable=import-outside-toplevel
    try:
        from huggingface_hub.utils import disable_progress_bars  # pylint: disable=import-outside-toplevel
        disable_progress_bars()
    except ImportError:
        pass
    return huggingface_hub, HfApi, snapshot_download, hf_errors


def _hf_error(exc, hf_errors, ctx):
    """Map huggingface_hub exceptions to a message that names the parameter to fix."""
    token = ctx.get("token")
    repo = ctx["repo_id"]
    gated = getattr(hf_errors, "GatedRepoError", ())
    revision_nf = getattr(hf_errors, "RevisionNotFoundError", ())
    repo_nf = getattr(hf_errors, "RepositoryNotFoundError", ())
    entry_nf = getattr(hf_errors, "EntryNotFoundError", None) or getattr(hf_errors, "RemoteEntryNotFoundError", ())
    if gated and isinstance(exc, gated):
        if token:
            return FetchError("token", "the token was refused for gated repository %s: request access on the Hub "
                                       "for the account the token belongs to" % repo)
        return FetchError("token", "repository %s is gated: set token to a Hugging Face token that was granted "
                                   "access" % repo)
    if revision_nf and isinstance(exc, revision_nf):
        return FetchError("revision", "revision %r not found in %s" % (ctx["revision"], repo))
    if repo_nf and isinstance(exc, repo_nf):
        hint = "" if token else " (or private: set token)"
        return FetchError("repo_id", "repository %s not found on %s%s" % (repo, public_endpoint(ctx["endpoint"]), hint))
    if entry_nf and isinstance(exc, entry_nf):
        return FetchError("repo_id", "a file listed for %s is missing on the endpoint: %s" % (repo, scrub(str(exc), token)))
    first = scrub(str(exc), token).strip().splitlines()
    detail = first[0] if first else type(exc).__name__
    return FetchError("endpoint", "request to %s failed: %s: %s" % (public_endpoint(ctx["endpoint"]), type(exc).__name__, detail))


def hf_listing(ctx):
    _hub, HfApi, _snap, hf_errors = _import_hf()
    api = HfApi(endpoint=ctx["endpoint"], token=ctx.get("token") or False)
    try:
        info = api.model_info(ctx["repo_id"], revision=ctx["revision"], files_metadata=True,
                              token=ctx.get("token") or False, timeout=ctx["timeout"])
    except Exception as exc:  # pylint: disable=broad-except
        raise _hf_error(exc, hf_errors, ctx)
    if not info.sha:
        raise FetchError("endpoint", "%s did not return a commit for %s" % (public_endpoint(ctx["endpoint"]), ctx["repo_id"]))
    files = {}
    for sibling in info.siblings or []:
        path = _safe_relpath(sibling.rfilename, "repo_id")
        lfs = sibling.lfs
        files[path] = {
            "size": lfs.size if lfs else sibling.size,
            "sha256": lfs.sha256 if lfs else None,
            "git_oid": None if lfs else sibling.blob_id,
        }
        if files[path]["size"] is None:
            raise FetchError("endpoint", "%s listed %s without a size" % (public_endpoint(ctx["endpoint"]), path))
    return Listing(info.sha, files, gated=bool(info.gated))


def _ms_headers(token):
    headers = {"Accept": "application/json", "User-Agent": "inferops-hf_model/1"}
    if token:
        # The ModelScope SDK sends the access token as the m_session_id cookie; newer
        # servers also take a Bearer header.
        headers["Cookie"] = "m_session_id=%s" % token
        headers["Authorization"] = "Bearer %s" % token
    return headers


def _ms_url(ctx, path, **query):
    quoted = "/".join(urllib.parse.quote(part, safe="") for part in ctx["repo_id"].split("/"))
    return "%s/api/v1/models/%s%s?%s" % (ctx["endpoint"], quoted, path, urllib.parse.urlencode(query))


def _ms_http_error(exc, ctx):
    status = exc.code
    try:
        body = json.loads(exc.read(65536).decode("utf-8", "replace"))
        message = body.get("Message") or body.get("message") or ""
    except (ValueError, OSError, AttributeError):
        message = ""
    message = scrub(message, ctx.get("token"))
    if status in (401, 403):
        if ctx.get("token"):
            return FetchError("token", "ModelScope refused the token for %s (HTTP %d%s)" % (
                ctx["repo_id"], status, ": " + message if message else ""))
        return FetchError("token", "ModelScope model %s needs a token (HTTP %d): set token" % (ctx["repo_id"], status))
    if status == 404:
        return FetchError("repo_id", "ModelScope model %s or revision %r not found (HTTP 404%s)" % (
            ctx["repo_id"], ctx["revision"], ": " + message if message else ""))
    return FetchError("endpoint", "ModelScope request failed: HTTP %d%s" % (status, ": " + message if message else ""))


def modelscope_listing(ctx):
    url = _ms_url(ctx, "/repo/files", Revision=ctx["revision"], Recursive="True")
    try:
        with _http_open(url, _ms_headers(ctx.get("token")), ctx["timeout"]) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise _ms_http_error(exc, ctx)
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError("endpoint", "cannot reach %s: %s" % (public_endpoint(ctx["endpoint"]), getattr(exc, "reason", exc)))
    except ValueError as exc:
        raise FetchError("endpoint", "%s answered something that is not JSON: %s" % (public_endpoint(ctx["endpoint"]), exc))
    if not isinstance(payload, dict) or payload.get("Code") not in (200, None) or not isinstance(payload.get("Data"), dict):
        message = payload.get("Message") if isinstance(payload, dict) else None
        raise FetchError("repo_id", "ModelScope listing of %s failed: %s" % (ctx["repo_id"], scrub(str(message), ctx.get("token"))))
    files = {}
    for entry in payload["Data"].get("Files") or []:
        if entry.get("Type") == "tree":
            continue
        path = _safe_relpath(entry.get("Path") or entry.get("Name") or "", "repo_id")
        size = entry.get("Size")
        if not isinstance(size, int):
            raise FetchError("endpoint", "ModelScope listed %s without a size" % path)
        files[path] = {"size": size, "sha256": entry.get("Sha256") or None, "git_oid": None}
    return Listing(_digest_listing(files), files)


def local_listing(ctx):
    src = ctx["src"]
    files = {}
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not (root == src and d in (".cache", PARTIAL_DIR, ".git")))
        for name in names:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, src).replace(os.sep, "/")
            if _is_private(rel) or not os.path.isfile(full):
                continue
            stat = os.stat(full)
            files[rel] = {"size": stat.st_size, "sha256": None, "git_oid": None, "src_mtime_ns": stat.st_mtime_ns}
    if not files:
        raise FetchError("src", "%s holds no files" % src)
    return Listing(_digest_listing(files), files)


# ---------------------------------------------------------------------------------------
# the run


def _validate(ctx):
    source = ctx["source"]
    if source not in SOURCES:
        raise FetchError("source", "%r is not one of %s" % (source, ", ".join(SOURCES)))
    dest = ctx["dest"]
    if not dest or not os.path.isabs(dest):
        raise FetchError("dest", "%r must be an absolute path" % (dest,))
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise FetchError("dest", "%s exists and is not a directory" % dest)
    if source in ("hf", "modelscope"):
        if not ctx.get("repo_id") or not REPO_ID_RE.match(ctx["repo_id"]):
            raise FetchError("repo_id", "%r is not a repository id like org/name" % (ctx.get("repo_id"),))
        if not ctx.get("revision"):
            ctx["revision"] = DEFAULT_REVISION[source]
    else:
        src = ctx.get("src")
        if not src:
            raise FetchError("src", "is required for source local")
        if not os.path.isdir(src):
            raise FetchError("src", "%s is not a directory (is the NFS share mounted?)" % src)
        if os.path.realpath(src) == os.path.realpath(dest):
            raise FetchError("src", "is the same directory as dest")
    for field in ("allow_patterns", "ignore_patterns"):
        value = ctx.get(field)
        if value is not None and (not isinstance(value, list) or not all(isinstance(p, str) and p for p in value)):
            raise FetchError(field, "must be a list of non-empty glob patterns")
    ctx["endpoint"] = resolve_endpoint(source, ctx.get("endpoint"))
    if ctx.get("token") and source == "local":
        raise FetchError("token", "a local source needs no token; leave it unset so it is sent nowhere")
    if ctx.get("token") and urllib.parse.urlsplit(ctx["endpoint"]).scheme != "https" \
            and not ctx.get("allow_insecure_token"):
        # Anyone on the path could read it: refuse unless told in so many words.
        raise FetchError("endpoint", "%s is plain HTTP and a token would be sent to it in clear; use https, or set "
                                     "allow_insecure_token for a trusted private network"
                         % public_endpoint(ctx["endpoint"]))


def _local_matches(dest, path, remote, record, verify):
    """Is ``dest/path`` already the file the listing describes?"""
    full = os.path.join(dest, path)
    if not os.path.isfile(full) or os.path.getsize(full) != remote["size"]:
        return False
    if record is not None:
        if record.get("size") != remote["size"]:
            return False
        for key in ("sha256", "git_oid", "src_mtime_ns"):
            if remote.get(key) is not None and record.get(key) != remote[key]:
                return False
        return True
    # A file of the right size that no manifest describes (a directory filled by hand or by
    # an older tool): adopt it only if its hash proves it, or if verification is off.
    if not verify:
        return True
    if remote.get("sha256"):
        return file_sha256(full) == remote["sha256"]
    if remote.get("git_oid"):
        return git_blob_oid(full) == remote["git_oid"]
    return False


def _check_file(full, remote, verify, src_full=None):
    """Raise FetchError if the file on disk is not what was listed."""
    size = os.path.getsize(full)
    if size != remote["size"]:
        return "size %d, expected %d" % (size, remote["size"])
    if not verify:
        return None
    if remote.get("sha256"):
        got = file_sha256(full)
        if got != remote["sha256"]:
            return "sha256 %s, expected %s" % (got, remote["sha256"])
    elif remote.get("git_oid"):
        got = git_blob_oid(full)
        if got != remote["git_oid"]:
            return "git blob id %s, expected %s" % (got, remote["git_oid"])
    elif src_full is not None:
        got, want = file_sha256(full), file_sha256(src_full)
        if got != want:
            return "sha256 %s differs from the source's %s" % (got, want)
    return None


def _pinned_and_present(ctx, manifest):
    """A commit-pinned revision the manifest already holds needs no network at all."""
    if ctx["source"] != "hf" or not COMMIT_RE.match(ctx.get("revision") or "") or not manifest:
        return False
    if manifest.get("commit") != ctx["revision"] or manifest.get("repo_id") != ctx["repo_id"]:
        return False
    if manifest.get("allow_patterns") != ctx.get("allow_patterns") or manifest.get("ignore_patterns") != ctx.get("ignore_patterns"):
        return False
    for path, rec in manifest["files"].items():
        full = os.path.join(ctx["dest"], path)
        if not os.path.isfile(full) or os.path.getsize(full) != rec.get("size"):
            return False
    return True


def _hf_is_final(exc, hf_errors):
    """Errors a retry cannot fix (access, missing repo/revision/file, other 4xx)."""
    final = tuple(getattr(hf_errors, name) for name in (
        "GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
        "RemoteEntryNotFoundError", "LocalEntryNotFoundError") if hasattr(hf_errors, name))
    if final and isinstance(exc, final):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)


def _fetch_hf(ctx, wanted, need):
    _hub, _api, snapshot_download, hf_errors = _import_hf()
    for path in need:
        # A wrong local copy must go, or huggingface_hub trusts its own metadata and keeps it.
        full = os.path.join(ctx["dest"], path)
        if os.path.exists(full):
            os.unlink(full)
    attempt = 0
    while True:
        try:
            snapshot_download(
                ctx["repo_id"],
                revision=ctx["commit"],
                local_dir=ctx["dest"],
                endpoint=ctx["endpoint"],
                token=ctx.get("token") or False,
                allow_patterns=ctx.get("allow_patterns"),
                ignore_patterns=ctx.get("ignore_patterns"),
                max_workers=ctx.get("max_workers") or 8,
            )
            return
        except Exception as exc:  # pylint: disable=broad-except
            attempt += 1
            if _hf_is_final(exc, hf_errors) or attempt > ctx.get("retries", 5):
                raise _hf_error(exc, hf_errors, ctx)
            # huggingface_hub 2.x already retried a cut transfer with Range inside the call;
            # 0.x gives up at once but keeps the partial file, which the next call resumes.
            (ctx.get("sleep") or time.sleep)(min(2 ** (attempt - 1), 10))


def _fetch_modelscope(ctx, listing, need, stats):
    headers = _ms_headers(ctx.get("token"))
    for path in need:
        remote = listing.files[path]
        url = _ms_url(ctx, "/repo", Revision=ctx["revision"], FilePath=path)

        def open_at(offset, url=url):
            req_headers = dict(headers)
            req_headers["Accept"] = "*/*"
            if offset:
                req_headers["Range"] = "bytes=%d-" % offset
            try:
                response = _http_open(url, req_headers, ctx["timeout"])
            except urllib.error.HTTPError as exc:
                if exc.code == 416:
                    # Our partial file does not fit the server's copy; start over.
                    part = _partial_path(ctx["dest"], path)
                    if os.path.exists(part):
                        os.unlink(part)
                    raise _Transient("HTTP 416 for a resume; restarting %s" % path)
                if exc.code >= 500 or exc.code == 429:
                    raise _Transient("HTTP %d" % exc.code)
                raise _ms_http_error(exc, ctx)
            except (urllib.error.URLError, OSError) as exc:
                raise _Transient("cannot connect: %s" % (getattr(exc, "reason", exc),))
            return response, response.status == 206

        _fetch_one(ctx, path, remote, open_at, stats)


def _fetch_local(ctx, listing, need, stats):
    for path in need:
        remote = listing.files[path]
        src_full = os.path.join(ctx["src"], path)

        def open_at(offset, src_full=src_full):
            handle = open(src_full, "rb")
            handle.seek(offset)
            return handle, True

        _fetch_one(ctx, path, remote, open_at, stats, src_full=src_full)


def _fetch_one(ctx, path, remote, open_at, stats, src_full=None):
    part = _partial_path(ctx["dest"], path)
    try:
        transferred, resumed_from = resumable_fetch(open_at, part, remote["size"], retries=ctx.get("retries", 5),
                                                    sleep=ctx.get("sleep") or time.sleep)
    except FetchError as exc:
        raise FetchError(exc.field, "%s: %s" % (path, exc.detail))
    problem = _check_file(part, remote, ctx["verify"], src_full=src_full)
    if problem:
        os.unlink(part)
        raise FetchError("verify", "%s failed verification (%s); the bad copy was removed" % (path, problem))
    final = os.path.join(ctx["dest"], path)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    os.chmod(part, 0o644)
    os.replace(part, final)
    stats["bytes"] += transferred
    if resumed_from:
        stats["resumed"].append(path)


def fetch_model(source, dest, repo_id=None, revision=None, endpoint=None, token=None, allow_patterns=None,
                ignore_patterns=None, src=None, verify=True, check_mode=False, timeout=60, max_workers=8,
                retries=5, sleep=None, allow_insecure_token=False):
    """Bring ``dest`` to the requested snapshot. Returns a result dict (see the hf_model module's RETURN)."""
    ctx = {
        "source": source, "dest": dest, "repo_id": repo_id, "revision": revision, "endpoint": endpoint,
        "token": token, "allow_patterns": allow_patterns, "ignore_patterns": ignore_patterns, "src": src,
        "verify": verify, "timeout": timeout, "max_workers": max_workers, "retries": retries, "sleep": sleep,
        "allow_insecure_token": allow_insecure_token,
    }
    try:
        return _run(ctx, check_mode)
    except FetchError as exc:
        if token and token in str(exc):
            raise FetchError(exc.field, scrub(exc.detail, token))
        raise


def _run(ctx, check_mode):
    _validate(ctx)
    dest = ctx["dest"]
    before = read_manifest(dest)
    result = {
        "changed": False, "dest": dest, "source": ctx["source"], "repo_id": ctx.get("repo_id"),
        "revision": ctx.get("revision"), "endpoint": public_endpoint(ctx["endpoint"]), "commit": None,
        "files": [], "downloaded": [], "removed": [], "resumed": [], "bytes": 0,
        "manifest": os.path.join(dest, MANIFEST_NAME),
        "diff": {"before": diff_text(before), "after": diff_text(before),
                 "before_header": os.path.join(dest, MANIFEST_NAME), "after_header": os.path.join(dest, MANIFEST_NAME)},
    }

    if _pinned_and_present(ctx, before):
        result["commit"] = before["commit"]
        result["files"] = _file_list(before["files"])
        return result

    if ctx["source"] == "hf":
        listing = hf_listing(ctx)
        if listing.gated and not ctx.get("token"):
            raise FetchError("token", "repository %s is gated: set token to a Hugging Face token that was granted "
                                      "access" % ctx["repo_id"])
    elif ctx["source"] == "modelscope":
        listing = modelscope_listing(ctx)
    else:
        listing = local_listing(ctx)
    ctx["commit"] = listing.commit

    wanted = filter_paths([p for p in listing.files if not _is_private(p)], ctx.get("allow_patterns"), ctx.get("ignore_patterns"))
    if not wanted:
        raise FetchError("allow_patterns" if ctx.get("allow_patterns") else "repo_id",
                         "no file of %s matches the patterns" % (ctx.get("repo_id") or ctx.get("src")))
    records = (before or {}).get("files", {}) if _same_target(before, ctx) else {}
    need = [p for p in wanted if not _local_matches(dest, p, listing.files[p], records.get(p), ctx["verify"])]
    old_paths = set((before or {}).get("files", {}))
    stale = sorted(p for p in old_paths - set(wanted) if os.path.lexists(os.path.join(dest, p)))

    after = {
        "format": MANIFEST_FORMAT, "source": ctx["source"], "repo_id": ctx.get("repo_id"),
        "revision": ctx.get("revision"), "commit": listing.commit, "endpoint": public_endpoint(ctx["endpoint"]),
        "src": ctx.get("src"), "allow_patterns": ctx.get("allow_patterns"), "ignore_patterns": ctx.get("ignore_patterns"),
        "files": {p: {k: v for k, v in listing.files[p].items() if v is not None} for p in wanted},
    }
    result["commit"] = listing.commit
    result["files"] = _file_list(after["files"])
    result["downloaded"] = need
    result["removed"] = stale
    result["bytes"] = sum(listing.files[p]["size"] for p in need)
    result["diff"]["after"] = diff_text(after)
    changed = bool(need or stale or manifest_view(before) != manifest_view(after))
    result["changed"] = changed
    if not changed or check_mode:
        return result

    os.makedirs(dest, exist_ok=True)
    stats = {"bytes": 0, "resumed": []}
    if need:
        if ctx["source"] == "hf":
            _fetch_hf(ctx, wanted, need)
            for path in need:
                full = os.path.join(dest, path)
                if not os.path.isfile(full):
                    raise FetchError("repo_id", "%s was not downloaded" % path)
                problem = _check_file(full, listing.files[path], ctx["verify"])
                if problem:
                    os.unlink(full)
                    raise FetchError("verify", "%s failed verification (%s); the bad copy was removed" % (path, problem))
            stats["bytes"] = result["bytes"]
        elif ctx["source"] == "modelscope":
            _fetch_modelscope(ctx, listing, need, stats)
        else:
            _fetch_local(ctx, listing, need, stats)
    for path in stale:
        os.unlink(os.path.join(dest, path))
        _prune_empty_dirs(dest, os.path.dirname(path))
    partial_root = os.path.join(dest, PARTIAL_DIR)
    if os.path.isdir(partial_root) and not os.listdir(partial_root):
        os.rmdir(partial_root)
    write_manifest(dest, after)
    result["bytes"] = stats["bytes"]
    result["resumed"] = stats["resumed"]
    return result


def _same_target(manifest, ctx):
    if not manifest:
        return False
    return manifest.get("source") == ctx["source"] and manifest.get("repo_id") == ctx.get("repo_id")


def _prune_empty_dirs(dest, rel_dir):
    while rel_dir:
        full = os.path.join(dest, rel_dir)
        try:
            os.rmdir(full)
        except OSError:
            return
        rel_dir = os.path.dirname(rel_dir)


def _file_list(files):
    return [dict(path=p, **{k: v for k, v in rec.items() if k in ("size", "sha256", "git_oid")})
            for p, rec in sorted(files.items())]
