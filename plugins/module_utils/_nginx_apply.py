# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Change nginx's configuration safely: write, ``nginx -t``, roll back on refusal, reload.

The one implementation of that sequence: the ``nginx_config`` module (the ``nginx_lb`` role)
and the HA agent on a load balancer both call ``apply_files``. A running nginx never gets a
configuration it cannot load, and a later restart never finds one: when ``nginx -t`` refuses
the new files, the previous ones are put back before anything else happens.

No Ansible imports; stdlib only.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import tempfile


class ApplyError(Exception):
    """nginx refused the new files (they were rolled back) or could not be reloaded."""


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _ids(owner, group):
    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    return uid, gid


def _write(path, content, mode, owner=None, group=None):
    """Atomically: a temporary file in the same directory, then rename over the target."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".inferops-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner or group:
            os.chown(tmp, *_ids(owner, group))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def plan_changes(files, remove=()):
    """Which files would change: ``{path: (old or None, new or None)}`` (new None = removed).

    ``files``: ``{path: {"content": str, "mode": int, "owner": str, "group": str,
    "create_only": bool}}``. ``create_only`` files are written only when absent (someone else
    owns them once they exist).
    """
    changes = {}
    for path, spec in files.items():
        old = _read(path)
        if spec.get("create_only") and old is not None:
            continue
        if old != spec["content"] or _mode_differs(path, spec):
            changes[path] = (old, spec["content"])
    for path in remove:
        old = _read(path)
        if old is not None:
            changes[path] = (old, None)
    return changes


def _mode_differs(path, spec):
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return True
    if (info.st_mode & 0o7777) != spec.get("mode", 0o644):
        return True
    uid, gid = _ids(spec.get("owner"), spec.get("group"))
    return (uid != -1 and info.st_uid != uid) or (gid != -1 and info.st_gid != gid)


def _restore(path, old, spec):
    if old is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        _write(path, old, (spec or {}).get("mode", 0o644), (spec or {}).get("owner"), (spec or {}).get("group"))


def apply_files(files, test_command, reload_command=None, remove=(), runner=subprocess.run):
    """Write what changed, check it with ``test_command``, roll back on refusal, then reload.

    Returns the list of changed paths (empty: nothing to do, nothing run). Raises ApplyError
    with nginx's message when the check fails (after the rollback) or the reload fails.
    """
    changes = plan_changes(files, remove)
    if not changes:
        return []
    done = []
    try:
        for path, (old, new) in changes.items():
            if new is None:
                os.unlink(path)
            else:
                spec = files[path]
                _write(path, new, spec.get("mode", 0o644), spec.get("owner"), spec.get("group"))
            done.append(path)
        checked = runner(list(test_command), capture_output=True, text=True, check=False, timeout=60)
        if checked.returncode != 0:
            raise ApplyError("nginx rejected the new configuration; the previous files are back in place and nginx "
                             "was not reloaded: " + (checked.stderr or checked.stdout).strip())
    except BaseException:
        for path in reversed(done):
            _restore(path, changes[path][0], files.get(path))
        raise
    if reload_command:
        reloaded = runner(list(reload_command), capture_output=True, text=True, check=False, timeout=60)
        if reloaded.returncode != 0:
            raise ApplyError("the configuration is valid but nginx did not reload: "
                             + (reloaded.stderr or reloaded.stdout).strip())
    return sorted(changes)
