"""Compare the model cache on this host with what the (fake) Hub serves.

    python3 compare_models.py ENDPOINT SPEC_JSON

SPEC_JSON is a list of {"dir", "source", "repo_id", "revision"} (compared with the Hub's file
tree: size, SHA-256 of LFS files, git blob id of the others) or {"dir", "src"} (compared with a
local directory, by size and SHA-256).

For Hub models it also reads the Hub's per-file counters (/_fakehub/stats): no file may have
been downloaded twice ("never downloaded twice"): at most one full GET, and, for a file whose
transfer was never cut, exactly its size in bytes. A cut transfer must have been resumed with
a Range request.

Prints one JSON object: {"models": {dir: {"files": N, "problems": [...], "transfers": {...}}}};
exits 1 when anything differs. Only listing requests are made, so the counters stay untouched.
"""

import hashlib
import json
import os
import sys
import urllib.parse
import urllib.request

# Written by the hf_model module and by huggingface_hub; not part of the model.
OWN_FILES = (".inferops-model.json",)
OWN_DIRS = (".cache", ".inferops-partial")


def digests(path):
    """SHA-256 and git blob id of a file."""
    size = os.path.getsize(path)
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(block)
            blob.update(block)
    return {"size": size, "sha256": sha256.hexdigest(), "oid": blob.hexdigest()}


def local_files(root):
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in OWN_DIRS]
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in OWN_FILES:
                continue
            full = os.path.join(dirpath, name)
            found[rel] = digests(full)
    return found


def hub_files(endpoint, repo_id, revision):
    """The Hub's tree listing (no token needed for listings, also of gated repositories)."""
    url = "{}/api/models/{}/tree/{}?recursive=true".format(endpoint, repo_id, urllib.parse.quote(revision, safe=""))
    with urllib.request.urlopen(url, timeout=30) as response:
        entries = json.load(response)
    files = {}
    for entry in entries:
        if entry["type"] != "file":
            continue
        if "lfs" in entry:
            files[entry["path"]] = {"size": entry["size"], "sha256": entry["lfs"]["oid"]}
        else:
            files[entry["path"]] = {"size": entry["size"], "oid": entry["oid"]}
    return files


def hub_stats(endpoint):
    with urllib.request.urlopen(endpoint + "/_fakehub/stats", timeout=30) as response:
        return json.load(response)["files"]


def transfer_problems(stats, prefix, repo_id, want):
    problems, transfers = [], {}
    for path, info in sorted(want.items()):
        entry = stats.get(f"{prefix}:{repo_id}:{path}")
        if entry is None:
            problems.append(f"never downloaded {path}")
            continue
        transfers[path] = entry
        if entry["get"] > 1:
            problems.append(f"{path}: downloaded {entry['get']} times")
        if entry["cut"] == 0 and entry["bytes_sent"] != info["size"]:
            problems.append(f"{path}: {entry['bytes_sent']} bytes sent for a {info['size']}-byte file")
        if entry["cut"] > 0 and entry["range_get"] < entry["cut"]:
            problems.append(f"{path}: {entry['cut']} cut transfer(s) but {entry['range_get']} resumed")
    return problems, transfers


def compare(want, have):
    problems = []
    for path in sorted(set(want) | set(have)):
        if path not in have:
            problems.append(f"missing {path}")
        elif path not in want:
            problems.append(f"unexpected {path}")
        else:
            # Compare what the reference knows about the file (size and one of the hashes).
            mine = {key: have[path][key] for key in want[path]}
            if mine != want[path]:
                problems.append(f"differs {path}: want {want[path]}, have {mine}")
    return problems


def main():
    endpoint, spec = sys.argv[1].rstrip("/"), json.loads(sys.argv[2])
    stats = hub_stats(endpoint)
    report, failed = {}, False
    for model in spec:
        have = local_files(model["dir"]) if os.path.isdir(model["dir"]) else {}
        transfers = {}
        if "src" in model:
            want = {path: {"size": d["size"], "sha256": d["sha256"]} for path, d in local_files(model["src"]).items()}
            problems = compare(want, have)
        else:
            want = hub_files(endpoint, model["repo_id"], model["revision"])
            problems = compare(want, have)
            prefix = "ms" if model.get("source") == "modelscope" else "hf"
            more, transfers = transfer_problems(stats, prefix, model["repo_id"], want)
            problems += more
        if not want:
            problems.append("the reference listing is empty")
        failed = failed or bool(problems)
        report[model["dir"]] = {"files": len(have), "problems": problems, "transfers": transfers}
    print(json.dumps({"models": report}, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
