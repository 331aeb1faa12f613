from __future__ import annotations

from ansible_collections.inferops.sglang.plugins.modules import code_bundle


def args(tmp_path, **extra):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "_one.py").write_text("ONE = 1\n")
    return {"src": str(src), "package": "pkg.utils", "dest": str(tmp_path / "out" / "code.zip"), **extra}


def test_writes_then_reports_no_change(tmp_path, run_module):
    out = run_module(code_bundle.main, args(tmp_path))
    assert out["changed"] is True and "failed" not in out
    assert out["files"] == ["pkg/__init__.py", "pkg/utils/__init__.py", "pkg/utils/_one.py"]
    assert (tmp_path / "out" / "code.zip").is_file()
    assert run_module(code_bundle.main, args(tmp_path))["changed"] is False


def test_check_mode_predicts_and_writes_nothing(tmp_path, run_module):
    out = run_module(code_bundle.main, args(tmp_path), check_mode=True)
    assert out["changed"] is True and not (tmp_path / "out").exists()


def test_bad_package_fails_naming_it(tmp_path, run_module):
    out = run_module(code_bundle.main, args(tmp_path, package="pkg/utils"))
    assert out["failed"] is True and out["msg"].startswith("package: ")
