from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._code_bundle import (
    BundleError,
    package_zip,
    write_if_changed,
)

PACKAGE = "pkg_a.pkg_b.utils"


def make_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "_answer.py").write_text("VALUE = 42\n")
    (src / "_user.py").write_text("from pkg_a.pkg_b.utils._answer import VALUE\n\nDOUBLE = VALUE * 2\n")
    (src / "notes.txt").write_text("not code\n")
    (src / "sub").mkdir()
    return src


def test_python_imports_the_package_from_the_zip(tmp_path):
    src = make_tree(tmp_path)
    data, names = package_zip(str(src), PACKAGE)
    dest = tmp_path / "code.zip"
    dest.write_bytes(data)
    assert names == ["pkg_a/__init__.py", "pkg_a/pkg_b/__init__.py", "pkg_a/pkg_b/utils/__init__.py",
                     "pkg_a/pkg_b/utils/_answer.py", "pkg_a/pkg_b/utils/_user.py"]
    out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "from pkg_a.pkg_b.utils._user import DOUBLE; print(DOUBLE)", str(dest)],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "84"


def test_same_files_same_bytes_whatever_their_times(tmp_path):
    src = make_tree(tmp_path)
    first = package_zip(str(src), PACKAGE)[0]
    os.utime(src / "_answer.py", (1_000_000, 1_000_000))
    assert package_zip(str(src), PACKAGE)[0] == first
    (src / "_answer.py").write_text("VALUE = 43\n")
    assert package_zip(str(src), PACKAGE)[0] != first


def test_entries_have_a_fixed_date_and_mode(tmp_path):
    data = package_zip(str(make_tree(tmp_path)), PACKAGE)[0]
    path = tmp_path / "code.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {info.external_attr >> 16 for info in archive.infolist()} == {0o644}


def test_write_only_when_different(tmp_path):
    dest = tmp_path / "cache" / "code.zip"
    assert write_if_changed(str(dest), b"one") is True
    assert dest.read_bytes() == b"one" and oct(dest.stat().st_mode & 0o777) == "0o644"
    assert write_if_changed(str(dest), b"one") is False
    assert write_if_changed(str(dest), b"two", write=False) is True
    assert dest.read_bytes() == b"one"
    assert os.listdir(dest.parent) == ["code.zip"]


@pytest.mark.parametrize("package", ["", "pkg..utils", "1pkg", "pkg.ut-ils"])
def test_bad_package_named(tmp_path, package):
    with pytest.raises(BundleError, match="^package: "):
        package_zip(str(make_tree(tmp_path)), package)


def test_bad_src_named(tmp_path):
    with pytest.raises(BundleError, match="^src: .* is not a directory"):
        package_zip(str(tmp_path / "missing"), PACKAGE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="^src: .* holds no Python files"):
        package_zip(str(tmp_path / "empty"), PACKAGE)
