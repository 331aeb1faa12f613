#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_model
short_description: Fetch a model snapshot from the Hugging Face Hub, a mirror, ModelScope or a local/NFS path
description:
  - Brings a model directory to the requested snapshot, downloading only files that are missing or differ.
  - A manifest, C(.inferops-model.json) in O(dest), records the source, repository, revision, resolved commit and
    every file with size and hashes. Each run makes one metadata request and compares it with the manifest and the
    sizes on disk; when they match nothing is downloaded and the task reports no change. A O(revision) that is a
    full commit hash already in the manifest needs no request at all.
  - Downloads resume. For O(source=hf) the module uses C(huggingface_hub.snapshot_download), which retries a cut
    transfer with an HTTP Range request. For O(source=modelscope) and O(source=local) partial files are kept in
    C(.inferops-partial/) inside O(dest) and resumed, also by the next run after a failure.
  - Files that a revision no longer has, and that the manifest lists, are removed. Files the module did not
    write are never touched.
  - The logic lives in C(plugins/module_utils/_model_fetch.py).
author:
  - inferops engineers (@inferops)
version_added: 0.1.0
options:
  source:
    description:
      - Where the model comes from. V(hf) is the Hugging Face Hub or a mirror of it (see O(endpoint)), V(modelscope)
        is ModelScope, V(local) is a directory on the host (for example an NFS mount), given in O(src).
    type: str
    choices: [hf, modelscope, local]
    default: hf
  repo_id:
    description:
      - Repository id, for example V(Qwen/Qwen2.5-0.5B-Instruct). Required for V(hf) and V(modelscope); recorded
        only for V(local).
    type: str
  revision:
    description:
      - Branch, tag or commit. Defaults to V(main) for V(hf) and V(master) for V(modelscope).
    type: str
  dest:
    description:
      - The model directory, for example V(/data/models/tiny-chat). Created when missing.
    type: path
    required: true
  src:
    description:
      - Source directory for O(source=local).
    type: path
  endpoint:
    description:
      - Base URL of the hub. For V(hf) the default is E(HF_ENDPOINT) from the task environment, else
        V(https://huggingface.co); set a mirror here. For V(modelscope) the default is V(https://) plus
        E(MODELSCOPE_DOMAIN), else V(https://www.modelscope.cn).
    type: str
  token:
    description:
      - Access token (Hugging Face token, or ModelScope SDK token). Needed for gated and private repositories.
      - The module never falls back to a token from the environment or a token file on the host, so what is
        fetched does not depend on who ran C(hf auth login) there.
      - It is sent only to O(endpoint), and only over HTTPS unless O(allow_insecure_token=true); a local source refuses it.
    type: str
  allow_insecure_token:
    description:
      - Allow sending O(token) to a plain C(http://) endpoint (a mirror on a trusted private network). Off, such a run
        fails before any request, naming O(endpoint).
    type: bool
    default: false
  allow_patterns:
    description:
      - Only files matching at least one of these glob patterns (C(huggingface_hub) semantics; V(dir/) means
        everything below dir).
    type: list
    elements: str
  ignore_patterns:
    description:
      - Files matching any of these glob patterns are skipped.
    type: list
    elements: str
  verify:
    description:
      - Check what was downloaded or copied against the listing. Sizes are always checked; with V(true) also
        SHA-256 (Hub LFS files, ModelScope C(Sha256), local copies against their source) and the git blob id
        (Hub non-LFS files). Files already in place are checked by size on every run.
    type: bool
    default: true
  timeout:
    description:
      - Seconds for each metadata request (and each read for V(modelscope) downloads).
    type: int
    default: 60
  max_workers:
    description:
      - Parallel file downloads for V(hf).
    type: int
    default: 8
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Makes the metadata request and reports what would be downloaded or removed, without writing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the manifest (repository, revision, commit, files with sizes and hashes) before and after.
requirements:
  - huggingface_hub (for O(source=hf) only), in the Python that runs the module (set C(ansible_python_interpreter)
    to a virtualenv that has it).
notes:
  - The token never appears in results, errors or the manifest.
  - For O(source=hf), huggingface_hub keeps its own bookkeeping in C(.cache/huggingface/) inside O(dest).
"""

EXAMPLES = r"""
- name: Fetch a model from the Hub into the shared cache
  inferops.sglang.hf_model:
    repo_id: Qwen/Qwen2.5-0.5B-Instruct
    dest: /data/models/qwen2.5-0.5b
  vars:
    ansible_python_interpreter: /opt/inferops/hf-venv/bin/python

- name: Gated model through a mirror, pinned to a commit, weights and configs only
  inferops.sglang.hf_model:
    repo_id: meta-llama/Llama-3.1-8B-Instruct
    revision: 0e9e39f249a16976918f6564b8830bc894c89659
    endpoint: https://hf-mirror.example.com
    token: "{{ vault_hf_token }}"
    allow_patterns: ["*.json", "*.safetensors", "tokenizer*"]
    dest: /data/models/llama-3.1-8b

- name: From ModelScope
  inferops.sglang.hf_model:
    source: modelscope
    repo_id: Qwen/Qwen2.5-0.5B-Instruct
    dest: /data/models/qwen2.5-0.5b

- name: From an NFS share
  inferops.sglang.hf_model:
    source: local
    src: /mnt/models/tiny-chat
    dest: /data/models/tiny-chat
"""

RETURN = r"""
dest:
  description: The model directory.
  returned: always
  type: str
  sample: /data/models/tiny-chat
source:
  description: The source used.
  returned: always
  type: str
  sample: hf
repo_id:
  description: The repository id.
  returned: always
  type: str
  sample: inferops/tiny-chat
revision:
  description: The requested revision (with its default filled in).
  returned: always
  type: str
  sample: main
commit:
  description:
    - Resolved commit for V(hf). For V(modelscope) and V(local), a SHA-1 digest of the file listing (paths, sizes,
      hashes or modification times), which changes exactly when the content does.
  returned: success
  type: str
  sample: 3f8c2a1e0d6b4c5a9e7f1b2d3c4a5b6e7f8a9b0c
endpoint:
  description: The endpoint used (without credentials), null for V(local).
  returned: always
  type: str
  sample: https://huggingface.co
files:
  description: Files of the snapshot, with size and known hashes.
  returned: success
  type: list
  elements: dict
  sample:
    - path: model.safetensors
      size: 2097152
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
downloaded:
  description: Paths fetched (in check mode, that would be fetched).
  returned: success
  type: list
  elements: str
  sample: [config.json, model.safetensors]
removed:
  description: Paths removed because the requested snapshot no longer has them (in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: []
resumed:
  description: Paths whose download resumed a partial file left by an earlier run (V(modelscope), V(local)).
  returned: success
  type: list
  elements: str
  sample: []
bytes:
  description: Bytes transferred (for V(hf), the size of the files fetched; in check mode, that would be).
  returned: success
  type: int
  sample: 2101248
manifest:
  description: Path of the manifest file.
  returned: always
  type: str
  sample: /data/models/tiny-chat/.inferops-model.json
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.inferops.sglang.plugins.module_utils._model_fetch import (
    FetchError,
    MissingLibrary,
    fetch_model,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="str", default="hf", choices=["hf", "modelscope", "local"]),
            repo_id=dict(type="str"),
            revision=dict(type="str"),
            dest=dict(type="path", required=True),
            src=dict(type="path"),
            endpoint=dict(type="str"),
            token=dict(type="str", no_log=True),
            allow_insecure_token=dict(type="bool", default=False),
            allow_patterns=dict(type="list", elements="str"),
            ignore_patterns=dict(type="list", elements="str"),
            verify=dict(type="bool", default=True),
            timeout=dict(type="int", default=60),
            max_workers=dict(type="int", default=8),
        ),
        required_if=[
            ("source", "hf", ["repo_id"]),
            ("source", "modelscope", ["repo_id"]),
            ("source", "local", ["src"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    for field in ("timeout", "max_workers"):
        if p[field] < 1:
            module.fail_json(msg="%s: must be at least 1, got %d" % (field, p[field]))
    try:
        result = fetch_model(
            source=p["source"], dest=p["dest"], repo_id=p["repo_id"], revision=p["revision"], endpoint=p["endpoint"],
            token=p["token"], allow_insecure_token=p["allow_insecure_token"], allow_patterns=p["allow_patterns"],
            ignore_patterns=p["ignore_patterns"], src=p["src"],
            verify=p["verify"], check_mode=module.check_mode, timeout=p["timeout"], max_workers=p["max_workers"],
        )
    except MissingLibrary as exc:
        module.fail_json(msg=missing_required_lib(exc.library) + " (source hf needs it in the module's Python)",
                         exception="".join(traceback.format_exception_only(type(exc.error), exc.error)))
    except FetchError as exc:
        module.fail_json(msg=str(exc), field=exc.field)

    diff = result.pop("diff")
    if module._diff and result["changed"]:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
