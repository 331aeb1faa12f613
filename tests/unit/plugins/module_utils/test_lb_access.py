from __future__ import annotations

from ansible_collections.inferops.sglang.plugins.module_utils._lb_access import check_access

KEY_A = "a" * 20
KEY_B = "b" * 20
ADMIN = "c" * 20
ROUTES = [{"path": "/v1/chat/completions"}, {"path": "/v1/models/", "prefix": True}]


def test_valid_settings_return_keys_without_values():
    result = check_access([{"name": "team-a", "key": KEY_A, "max_concurrent": "8"}], ROUTES,
                          [{"path": "/flush_cache"}], admin_api_key=ADMIN)
    assert result["errors"] == []
    assert result["keys"] == [{"name": "team-a", "rate": "20r/s", "burst": 40, "max_concurrent": 8}]
    assert result["admin_enabled"] and result["admin_routes"] == [{"path": "/flush_cache", "prefix": False}]
    assert KEY_A not in repr(result) and ADMIN not in repr(result)


def test_admin_routes_are_dropped_without_an_admin_key():
    result = check_access([{"name": "a", "key": KEY_A}], ROUTES, [{"path": "/flush_cache"}])
    assert result["errors"] == [] and result["admin_routes"] == [] and not result["admin_enabled"]


def test_every_mistake_is_named_and_no_key_is_shown():
    keys = [
        {"name": "admin", "key": KEY_A},                        # reserved name
        {"name": "x", "key": "short"},                          # too short
        {"name": "X", "key": KEY_A, "rate": "fast"},            # duplicate key, bad rate
        {"name": "y", "key": KEY_B, "max_concurrent": 0, "colour": 1},
    ]
    routes = [{"path": "/v1/models/"}, {"path": "/lb/x"}, {"path": "/v1/../x"}, {"path": "/generate", "extra": 1},
              {"path": "/v1/chat/completions"}, {"path": "/v1/chat/completions"}]
    result = check_access(keys, routes, [{"path": "/generate"}], admin_api_key=KEY_B)
    text = "; ".join(result["errors"])
    for expected in (
        "nginx_lb_api_keys[0].name: 'admin' is reserved",
        "nginx_lb_api_keys[1].key: must be at least 16 characters",
        "nginx_lb_api_keys[2].key: the same key as nginx_lb_api_keys[0]",
        "nginx_lb_api_keys[2].rate: 'fast'",
        "nginx_lb_api_keys[3].max_concurrent: must be an integer >= 1",
        "nginx_lb_api_keys[3].colour: unknown key",
        "nginx_lb_client_routes[0].path: '/v1/models/' ends with /: set prefix: true",
        "nginx_lb_client_routes[1].path: '/lb/x' is under /lb/",
        "nginx_lb_client_routes[3].extra: unknown key",
        "nginx_lb_client_routes[5].path: '/v1/chat/completions' overlaps nginx_lb_client_routes[4]",
        "nginx_lb_admin_routes[0].path: '/generate' overlaps nginx_lb_client_routes[3]",
        "nginx_lb_admin_api_key: the same as nginx_lb_api_keys[3]",
    ):
        assert expected in text, expected
    assert KEY_A not in text and KEY_B not in text
    assert result["keys"] == [] and result["client_routes"] == []


def test_dot_segments_and_prefix_overlaps():
    result = check_access([{"name": "a", "key": KEY_A}], [{"path": "/v1/../flush_cache"}])
    assert any("nginx_lb_client_routes[0].path" in e for e in result["errors"])
    result = check_access([{"name": "a", "key": KEY_A}], [{"path": "/v1/", "prefix": True}],
                          [{"path": "/v1/loads"}], admin_api_key=ADMIN)
    assert any("nginx_lb_admin_routes[0].path: '/v1/loads' overlaps" in e for e in result["errors"])


def test_no_keys_is_an_error_only_with_auth_on():
    assert check_access([], ROUTES)["errors"] == ["nginx_lb_api_keys: empty while nginx_lb_auth_enabled is true"]
    assert check_access([], ROUTES, auth_enabled=False)["errors"] == []
