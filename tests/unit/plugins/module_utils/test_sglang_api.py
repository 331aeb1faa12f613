from __future__ import annotations

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._sglang_api import (
    ApiVersionError,
    api_profile,
    image_tag_version,
    version_errors,
)


def test_0_5_6_has_no_ready_and_no_admin_key():
    profile = api_profile("0.5.6")
    assert profile["ready_path"] is None
    assert profile["lb_health_path"] == "/health"
    assert profile["cheap_probe_path"] == "/metrics" and not profile["cheap_probe_needs_key"]
    assert not profile["admin_api_key"]
    assert profile["load_path"] == "/get_load"
    assert "/ready" not in profile["auth_exempt_prefixes"]


def test_0_5_23_has_ready_and_admin_key():
    profile = api_profile("v0.5.23")
    assert profile["version"] == "0.5.23"
    assert profile["ready_path"] == profile["lb_health_path"] == profile["cheap_probe_path"] == "/ready"
    assert profile["admin_api_key"] and not profile["cheap_probe_needs_key"]
    assert profile["load_path"] == "/v1/loads"


def test_deep_health_is_a_generation_on_every_release():
    for version in ("0.5.0", "0.5.6", "0.5.23", "0.5.40"):
        assert api_profile(version)["deep_health_path"] == "/health_generate"


@pytest.mark.parametrize("bad", ["0.4.9", "0.6.0", "1.0.0", "latest", "", None, "0.5"])
def test_unknown_releases_are_refused_naming_the_variable(bad):
    with pytest.raises(ApiVersionError, match="^my_version: "):
        api_profile(bad, var_name="my_version")


def test_image_tag_must_agree_with_the_version():
    assert image_tag_version("lmsysorg/sglang:v0.5.6-cu126") == "0.5.6"
    assert image_tag_version("inferops/sglang-sim:0.1.0") is None  # not an SGLang release tag
    assert image_tag_version("lmsysorg/sglang:latest") is None
    assert version_errors("0.5.6", image="lmsysorg/sglang:v0.5.6") == []
    errors = version_errors("0.5.6", image="lmsysorg/sglang:v0.5.23")
    assert len(errors) == 1 and errors[0].startswith("sglang_version: 0.5.6, but sglang_image")


def test_admin_key_needs_a_release_that_has_it():
    assert version_errors("0.5.23", admin_api_key="x" * 20) == []
    errors = version_errors("0.5.6", admin_api_key="x" * 20)
    assert len(errors) == 1 and errors[0].startswith("sglang_admin_api_key: set, but SGLang 0.5.6")
    assert "x" * 20 not in errors[0]
