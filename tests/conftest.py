"""Shared by the unit and integration tests: make the collection importable.

Run from the collection tree, e.g.
``cd .build/collections/ansible_collections/inferops/sglang && python -m pytest -q tests/unit``.
"""

from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _ensure_collection_importable():
    """Make ``ansible_collections.inferops.sglang`` importable however pytest was started.

    The shell's logical working directory (PWD) keeps the symlinked
    .build/collections/ansible_collections/inferops/sglang path that os.getcwd()
    resolves away; without it, a private ansible_collections tree pointing at the
    checkout is made.
    """
    try:
        __import__("ansible_collections.inferops.sglang.plugins")
        return
    except ImportError:
        pass
    for candidate in (os.environ.get("PWD", ""), HERE):
        parts = candidate.split(os.sep)
        if "ansible_collections" in parts:
            idx = len(parts) - 1 - parts[::-1].index("ansible_collections")
            root = os.sep.join(parts[:idx]) or os.sep
            if os.path.isdir(os.path.join(root, "ansible_collections", "inferops", "sglang", "plugins")):
                sys.path.insert(0, root)
                return
    root = tempfile.mkdtemp(prefix="inferops-collections-")
    os.makedirs(os.path.join(root, "ansible_collections", "inferops"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "inferops", "sglang"))
    sys.path.insert(0, root)


_ensure_collection_importable()
