"""config/redis_layout.py: the edges mutation testing found untested (pure, no server)."""

from __future__ import annotations

import ssl

import pytest

from config.redis_layout import (CHANNELS_GROUP_EXPIRY, ROLES, W_TLS_INSECURE, LayoutError, channel_layers,
                                 local_url, mask_url, parse_port, parse_role_url, redact, resolve)

TLS_REMEDY = "TLS is configured by REDIS_CA_CERTS and REDIS_TLS_INSECURE (docs/configuration.md)"


def problem_of(**env: str) -> str:
    (problem,) = resolve({"REDIS_LOCAL": "false", **env}).problems
    return problem


# -- ports and databases ------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "65535"])
def test_the_first_and_last_port_are_accepted(value):
    assert parse_port("REDIS_LOCAL_PORT", value, 6379) == int(value)


@pytest.mark.parametrize("value", ["0", "65536"])
def test_a_port_just_outside_the_range_is_refused_naming_it(value):
    with pytest.raises(LayoutError, match=f"^REDIS_LOCAL_PORT={value} is outside 1-65535$"):
        parse_port("REDIS_LOCAL_PORT", value, 6379)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_an_unset_or_blank_port_is_the_default(value):
    assert parse_port("REDIS_LOCAL_PORT", value, 6390) == 6390


def test_a_database_that_is_not_a_number_is_refused_naming_it():
    with pytest.raises(LayoutError, match=r"^REDIS_CACHE_URL: database 'X' in 'redis://h/X/' is not a number$"):
        parse_role_url("cache", "redis://h/X/")


def test_a_url_without_port_or_database_means_6379_and_database_0():
    role = parse_role_url("broker", "redis://redis.example.com")
    assert (role.port, role.db) == (6379, 0)
    assert parse_role_url("broker", "redis://redis.example.com/").db == 0


def test_the_user_and_password_are_read_percent_decoded():
    role = parse_role_url("cache", "redis://app%40x:p%40ss@redis.example.com/2")
    assert (role.role, role.variable) == ("cache", "REDIS_CACHE_URL")
    assert (role.username, role.password) == ("app@x", "p@ss")
    assert parse_role_url("cache", "redis://:secret@redis.example.com/2").username is None


def test_a_missing_scheme_is_named_as_none():
    with pytest.raises(LayoutError, match=r"^CELERY_BROKER_URL: unknown scheme '\(none\)' in 'redis.example.com/0'"):
        parse_role_url("broker", "redis.example.com/0")


# -- where a URL came from ----------------------------------------------------------
def test_a_role_given_in_the_environment_is_marked_so_and_a_default_is_not():
    layout = resolve({"REDIS_LOCAL": "true", "REDIS_CACHE_URL": "redis://127.0.0.1:6400/2"})
    assert {role: layout.roles[role].from_env for role in ROLES} == {
        "broker": False, "results": False, "cache": True, "channels": False}
    assert parse_role_url("cache", "redis://127.0.0.1/2").from_env is True


# -- TLS options in URLs ------------------------------------------------------------
def test_an_ssl_option_other_than_cert_reqs_is_refused_naming_the_variable_and_the_remedy():
    problem = problem_of(CELERY_BROKER_URL="rediss://redis.example.com/0?ssl_keyfile=/tmp/k")
    assert problem == f"CELERY_BROKER_URL: URL option 'ssl_keyfile' is not accepted; {TLS_REMEDY}"


def test_a_repeated_ssl_cert_reqs_is_refused():
    problem = problem_of(REDIS_CACHE_URL="rediss://redis.example.com/2?ssl_cert_reqs=none&ssl_cert_reqs=none",
                         REDIS_TLS_INSECURE="true")
    assert problem == "REDIS_CACHE_URL: URL option 'ssl_cert_reqs' is given more than once"


def test_ssl_cert_reqs_required_in_a_url_is_refused_with_the_reason():
    problem = problem_of(CELERY_RESULT_BACKEND="rediss://redis.example.com/1?ssl_cert_reqs=required")
    assert problem == (
        "CELERY_RESULT_BACKEND: drop ?ssl_cert_reqs=required: rediss:// always verifies certificates "
        "(against REDIS_CA_CERTS or certifi); only ssl_cert_reqs=none is accepted, with REDIS_TLS_INSECURE=true")


def test_an_option_that_is_not_about_tls_is_left_alone():
    assert resolve({"REDIS_LOCAL": "false",
                    "CELERY_BROKER_URL": "rediss://redis.example.com/0?health_check_interval=10"}).ok


def test_an_empty_ssl_cert_reqs_is_refused_not_taken_for_none():
    problem = problem_of(CELERY_BROKER_URL="rediss://redis.example.com/0?ssl_cert_reqs=", REDIS_TLS_INSECURE="true")
    assert problem.startswith("CELERY_BROKER_URL: drop ?ssl_cert_reqs=: ")


def test_the_insecure_switch_turns_celerys_verification_off_only_where_asked():
    layout = resolve({"REDIS_LOCAL": "false", "REDIS_TLS_INSECURE": "true",
                      "CELERY_BROKER_URL": "rediss://redis.example.com/0?ssl_cert_reqs=none",
                      "CELERY_RESULT_BACKEND": "rediss://redis.example.com/1"})
    assert layout.celery_ssl("broker") == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert layout.celery_ssl("results")["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_turning_verification_off_without_the_switch_is_refused_saying_how():
    problem = problem_of(CELERY_BROKER_URL="rediss://redis.example.com/0?ssl_cert_reqs=none")
    assert problem == ("CELERY_BROKER_URL: ssl_cert_reqs=none turns off certificate verification; "
                       "refused unless REDIS_TLS_INSECURE=true")


def test_unset_switches_are_false_and_the_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv("REDIS_LOCAL", "true")
    monkeypatch.setenv("REDIS_LOCAL_PORT", "6391")
    monkeypatch.delenv("REDIS_TLS_INSECURE", raising=False)
    layout = resolve()
    assert layout.tls_insecure is False
    assert layout.url("cache").endswith(":6391/2")


def test_a_user_name_with_an_x_is_neither_refused_nor_hidden():
    assert resolve({"REDIS_LOCAL": "false", "REDIS_CACHE_URL": "redis://Xavier:pw@redis.example.com/2"}).ok


def test_the_insecure_warning_appears_only_with_tls_in_use():
    insecure = resolve({"REDIS_LOCAL": "false", "REDIS_TLS_INSECURE": "true",
                        "CELERY_BROKER_URL": "rediss://redis.example.com/0?ssl_cert_reqs=none"})
    assert (W_TLS_INSECURE, "REDIS_TLS_INSECURE=true: Redis TLS certificates are NOT verified; anyone on the "
            "path can read and change queue and cache traffic") in insecure.findings
    plain = resolve({"REDIS_LOCAL_PORT": "6390", "REDIS_TLS_INSECURE": "true"})
    assert W_TLS_INSECURE not in [code for code, _ in plain.findings]


def test_a_bad_switch_is_a_problem_naming_the_variable():
    for name in ("REDIS_LOCAL", "REDIS_TLS_INSECURE"):
        problems = resolve({name: "yes"}).problems
        assert problems == [f"{name}='yes' is not a boolean: use true or false"]


# -- unencoded characters in the user or password -----------------------------------
@pytest.mark.parametrize("password", ["p/ss", "p?ss", "p#ss"])
def test_an_unencoded_slash_question_mark_or_hash_is_refused_with_the_encoding(password):
    problem = problem_of(REDIS_CACHE_URL=f"redis://:{password}@redis.example.com/2")
    assert problem == ("REDIS_CACHE_URL: malformed URL 'redis://:***@redis.example.com/2': the user or password "
                       "holds an unencoded '/', '?' or '#'; percent-encode it (/ is %2F, ? is %3F, # is %23)")


def test_an_unencoded_at_is_refused_with_the_encoding():
    problem = problem_of(REDIS_CACHE_URL="redis://:p@ss@redis.example.com/2")
    assert problem == ("REDIS_CACHE_URL: malformed URL 'redis://:***@redis.example.com/2': the user or password "
                       "holds an unencoded '@'; percent-encode it as %40 (redis://:p%40ss@host/0)")


def test_the_userinfo_is_read_after_the_first_scheme_separator_not_one_in_the_query():
    problem = problem_of(CELERY_BROKER_URL="redis://:p/w@redis.example.com/0?next=x://y")
    assert "holds an unencoded '/', '?' or '#'" in problem


# -- masking --------------------------------------------------------------------------
@pytest.mark.parametrize("url, masked", [
    ("redis://u:p@h/0?back=x://y", "redis://u:***@h/0?back=x://y"),
    ("redis://u:p:q@h/0", "redis://u:***@h/0"),
    ("redis://u:p@x@h/0", "redis://u:***@h/0"),
    ("redis://lonely@h/0", "redis://***@h/0"),
    ("redis://a/b:c@h/0", "redis://***@h/0"),
    ("redis://h/0", "redis://h/0"),
    ("redis://Xavier:pw@h/0", "redis://Xavier:***@h/0"),
])
def test_masking_hides_every_password_shape(url, masked):
    assert mask_url(url) == masked


def test_redact_replaces_every_secret_and_ignores_empty_ones():
    assert redact("auth hunter2 failed for hunter2 and pw", ["hunter2", "", "pw"]) == "auth *** failed for *** and ***"


# -- shapes other code reads ----------------------------------------------------------
def test_the_layout_summary_names_each_field():
    layout = resolve({"REDIS_LOCAL": "false", "CELERY_BROKER_URL": "rediss://u:pw@redis.example.com:6390/4",
                      "REDIS_CACHE_URL": "redis://127.0.0.1/2", "CELERY_RESULT_BACKEND": "redis://127.0.0.1/1",
                      "CHANNELS_REDIS_URL": "redis://127.0.0.1/3"})
    found = layout.as_dict()
    assert set(found) == {"redis_local", "roles", "problems", "warnings"}
    assert found["redis_local"] is False
    assert found["roles"]["broker"] == {"url": "rediss://u:***@redis.example.com:6390/4", "scheme": "rediss",
                                        "host": "redis.example.com", "port": 6390, "db": 4, "tls": True}
    assert list(found["roles"]) == list(ROLES)


def test_the_channel_layer_is_channels_redis_on_the_channels_url():
    layout = resolve({"REDIS_LOCAL_PORT": "6390"})
    config = channel_layers(layout)
    assert list(config) == ["default"]
    from django.utils.module_loading import import_string
    from channels_redis.core import RedisChannelLayer

    # The project's layer is channels-redis' core layer with a waiting pool (workers/channels_layer.py).
    assert issubclass(import_string(config["default"]["BACKEND"]), RedisChannelLayer)
    assert config["default"]["CONFIG"]["hosts"][0]["address"] == layout.url("channels")


def test_servers_group_the_roles_by_server_with_loopback_names_folded():
    layout = resolve({"REDIS_LOCAL": "false", "CELERY_BROKER_URL": "redis://localhost:6390/0",
                      "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6390/1",
                      "REDIS_CACHE_URL": "redis://redis.example.com/2",
                      "CHANNELS_REDIS_URL": "redis://127.0.0.1:6390/3"})
    assert layout.servers() == {("127.0.0.1", 6390): ["broker", "results", "channels"],
                                ("redis.example.com", 6379): ["cache"]}


# -- the bundled Redis' password (REDIS_LOCAL_PASSWORD or REDIS_LOCAL_PASSWORD_FILE) ----
LOCAL_PASSWORD = "local-Secret_1.~"


def local_layout(**env: str):
    return resolve({"REDIS_LOCAL": "true", "REDIS_LOCAL_PORT": "6390", **env})


def local_urls(auth: str = "") -> dict[str, str]:
    """The bundled Redis' URLs on port 6390, ``auth`` being ":password@" or nothing."""
    return {"broker": f"redis://{auth}localhost:6390/0", "results": f"redis://{auth}localhost:6390/1",
            "cache": f"redis://{auth}localhost:6390/2", "channels": f"redis://{auth}127.0.0.1:6390/3"}


def test_the_local_password_is_in_every_local_role_url_and_kept_on_the_layout():
    layout = local_layout(REDIS_LOCAL_PASSWORD=f"  {LOCAL_PASSWORD} ")
    assert layout.problems == [] and layout.local_password == LOCAL_PASSWORD
    assert {role: layout.url(role) for role in ROLES} == local_urls(f":{LOCAL_PASSWORD}@")
    assert {role: local_url(role, 6390, LOCAL_PASSWORD) for role in ROLES} == local_urls(f":{LOCAL_PASSWORD}@")


def test_without_a_local_password_the_local_urls_carry_none():
    layout = local_layout()
    assert layout.local_password == ""
    assert {role: layout.url(role) for role in ROLES} == local_urls()
    assert {role: local_url(role, 6390) for role in ROLES} == local_urls()


def test_the_password_file_is_read_trimmed_and_wins_over_the_variable(tmp_path):
    secret = tmp_path / "redis-password"
    secret.write_text(f"{LOCAL_PASSWORD}\n")
    layout = local_layout(REDIS_LOCAL_PASSWORD_FILE=f" {secret} ", REDIS_LOCAL_PASSWORD="other-password-2")
    assert layout.problems == [] and layout.local_password == LOCAL_PASSWORD
    assert layout.url("broker") == local_urls(f":{LOCAL_PASSWORD}@")["broker"]


def test_an_unreadable_password_file_is_one_problem_naming_the_file_and_the_urls_carry_no_password(tmp_path):
    missing = tmp_path / "nowhere"
    layout = local_layout(REDIS_LOCAL_PASSWORD_FILE=str(missing), REDIS_LOCAL_PASSWORD=LOCAL_PASSWORD)
    assert layout.problems == [f"REDIS_LOCAL_PASSWORD_FILE={str(missing)!r} cannot be read (No such file or directory)"]
    assert layout.local_password == "" and layout.url("broker") == local_urls()["broker"]


@pytest.mark.parametrize("password, accepted", [
    ("a" * 7, False), ("a" * 8, True), ("a" * 512, True), ("a" * 513, False), ("pass word1", False),
    ("pass:word1", False), ("Az09._~-x", True),
])
def test_a_local_password_is_8_to_512_url_safe_characters_and_a_refusal_never_shows_it(password, accepted, tmp_path):
    by_variable = local_layout(REDIS_LOCAL_PASSWORD=password)
    secret = tmp_path / "secret"
    secret.write_text(password)
    by_file = local_layout(REDIS_LOCAL_PASSWORD_FILE=str(secret))
    if accepted:
        assert by_variable.problems == by_file.problems == []
        return
    rule = ": the password must be 8-512 letters, digits or -._~ (it is not shown)"
    assert by_variable.problems == ["REDIS_LOCAL_PASSWORD" + rule]
    assert by_file.problems == ["REDIS_LOCAL_PASSWORD_FILE" + rule]
    assert by_variable.local_password == by_file.local_password == ""


def test_a_role_whose_url_is_refused_falls_back_to_the_local_url_with_the_local_password():
    layout = resolve({"CELERY_BROKER_URL": "http://broker:6379/0", "REDIS_LOCAL_PASSWORD": LOCAL_PASSWORD,
                      "REDIS_LOCAL_PORT": "6390"})
    assert layout.problems and "broker" not in layout.roles
    assert layout.url("broker") == local_urls(f":{LOCAL_PASSWORD}@")["broker"]


def test_the_channel_layer_keeps_group_members_for_the_declared_expiry():
    assert channel_layers(resolve({}))["default"]["CONFIG"]["group_expiry"] == CHANNELS_GROUP_EXPIRY


def test_a_url_with_a_space_is_refused_naming_its_variable():
    assert problem_of(REDIS_CACHE_URL="redis://h:6379/1 ").startswith("REDIS_CACHE_URL: leading or trailing")
    assert problem_of(REDIS_CACHE_URL="redis://h 1:6379/1").startswith("REDIS_CACHE_URL: 'redis://h 1:6379/1' holds")


def test_an_unknown_scheme_is_named_as_written():
    assert "unknown scheme 'http' in" in problem_of(REDIS_CACHE_URL="http://h:6379/1")
    assert "unknown scheme 'REDIS' in" in problem_of(REDIS_CACHE_URL="REDIS://h:6379/1")
    assert "unknown scheme '(none)' in" in problem_of(REDIS_CACHE_URL="//h:6379/1")
