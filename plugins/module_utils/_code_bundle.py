"""One reproducible zip of a Python package directory, which Python imports from (zipimport).

The HA agent runs the collection's module_utils as they are (one implementation of each protocol
for the modules and the agent). Copied file by file they cost a round trip per file on every run
of the role; one zip is one checksum. The zip is reproducible: the same files give the same bytes
(sorted names, a fixed timestamp and mode), so an unchanged tree is no change on any host.
No Ansible imports: the module is a thin wrapper and the tests call this directly.
"""

from __future__ import annotations

import io
import os
import re
import zipfile

# zip's earliest date: a fixed one makes the bytes depend on the contents only.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BundleError(ValueError):
    """Bad input, the message naming the parameter."""


def _add(archive, name, data):
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def package_zip(src_dir, package):
    """``(bytes, names)``: the ``*.py`` files of ``src_dir`` as the package ``package`` (dotted),
    with an empty ``__init__.py`` in every package above it (and in it, when it has none)."""
    parts = package.split(".")
    if not package or not all(_IDENTIFIER.match(part) for part in parts):
        raise BundleError(f"package: {package!r} is not a dotted Python package name")
    if not os.path.isdir(src_dir):
        raise BundleError(f"src: {src_dir} is not a directory")
    sources = sorted(name for name in os.listdir(src_dir)
                     if name.endswith(".py") and os.path.isfile(os.path.join(src_dir, name)))
    if not sources:
        raise BundleError(f"src: {src_dir} holds no Python files")
    prefix = "/".join(parts)
    entries = {"/".join(parts[:depth]) + "/__init__.py": b"" for depth in range(1, len(parts) + 1)}
    for name in sources:
        with open(os.path.join(src_dir, name), "rb") as handle:
            entries[f"{prefix}/{name}"] = handle.read()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            _add(archive, name, entries[name])
    return buffer.getvalue(), sorted(entries)


def write_if_changed(dest, data, write=True):
    """True when ``dest`` did not hold ``data`` (and, with ``write``, now does: written to a
    temporary file beside it and renamed, so a reader never sees half a zip)."""
    try:
        with open(dest, "rb") as handle:
            if handle.read() == data:
                return False
    except FileNotFoundError:
        pass
    if write:
        directory = os.path.dirname(os.path.abspath(dest))
        os.makedirs(directory, exist_ok=True)
        tmp = f"{dest}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    return True
