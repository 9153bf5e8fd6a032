"""Random input to the layout resolver, the environment readers and the
threshold validation: a clear refusal or a usable value, never a traceback.

Where the layout accepts a URL, redis-py must read it the same way: same
host, port, database and password (the query `db` and port 0 were two ways
they disagreed).  Example counts stay small: these run with the suite.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
import redis.connection
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.plan import resolve_plan
from config import env as schema
from config import env_checks, redis_layout

# Derandomized, with no example database: the same examples every run, and no
# .hypothesis folder in the checkout.
FEW = settings(max_examples=60, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])

# Pieces of a Redis URL: valid ones, near misses and noise.
schemes = st.sampled_from(["redis", "rediss", "REDIS", "http", "unix", ""])
hosts = st.one_of(st.sampled_from(["localhost", "127.0.0.1", "[::1]", "redis.internal", "my host", "", "h_1"]),
                  st.text(max_size=12))
ports = st.one_of(st.none(), st.integers(min_value=-1, max_value=70000).map(str), st.text(max_size=4))
paths = st.one_of(st.sampled_from(["", "/", "/0", "/3", "/15", "/16", "/²", "/1/2"]), st.text(max_size=6))
passwords = st.one_of(st.none(), st.text(max_size=10), st.text(max_size=10).map(lambda t: quote(t, safe="")))
option_names = st.sampled_from(["db", "socket_timeout", "SSL_CERT_REQS", "ssl_cert_reqs", "ssl_keyfile", "password",
                                "max_connections", "protocol", "foo", "Socket_Timeout", "health_check_interval"])
option_values = st.one_of(st.sampled_from(["0", "1", "2.5", "30", "none", "true", "-1", ""]), st.text(max_size=5))
queries = st.lists(st.tuples(option_names, option_values), max_size=3)
spaces = st.sampled_from(["", " ", "\t"])


@st.composite
def redis_urls(draw) -> str:
    password = draw(passwords)
    userinfo = "" if password is None else f":{password}@"
    port = draw(ports)
    query = "&".join(f"{name}={value}" for name, value in draw(queries))
    url = f"{draw(schemes)}://{userinfo}{draw(hosts)}{'' if port is None else ':' + port}{draw(paths)}"
    url += f"?{query}" if query else ""
    return draw(spaces) + url + draw(spaces)


@st.composite
def plausible_urls(draw) -> str:
    """Well-formed but for one option or port: where a client could quietly read something else."""
    port = draw(st.sampled_from(["", ":0", ":6379", ":6380"]))
    option = f"{draw(option_names)}={draw(st.sampled_from(['0', '1', '7', '30', 'none', 'true']))}"
    return f"{draw(st.sampled_from(['redis', 'rediss']))}://localhost{port}/{draw(st.integers(0, 15))}" + \
        draw(st.sampled_from(["", f"?{option}"]))


role_urls = st.one_of(redis_urls(), plausible_urls(), st.text(max_size=40))
layout_envs = st.fixed_dictionaries({}, optional={
    **{variable: role_urls for variable in redis_layout.ROLE_VARIABLES.values()},
    "REDIS_LOCAL": st.sampled_from(["true", "false", "yes", "", "1"]),
    "REDIS_LOCAL_PORT": st.one_of(st.sampled_from(["6379", "0", "65536", "6_379", " 6390 "]), st.text(max_size=5)),
    "REDIS_TLS_INSECURE": st.sampled_from(["true", "false", "on"]),
    "REDIS_LOCAL_PASSWORD": st.one_of(st.sampled_from(["long-enough-pw", "short", "p@ss word"]), st.text(max_size=9)),
})


@settings(FEW, max_examples=250)
@given(layout_envs)
def test_the_layout_resolves_or_names_the_variable_and_redis_py_reads_what_it_accepts(env):
    layout = redis_layout.resolve(env)  # never raises
    for problem in layout.problems:
        assert problem.split(":")[0].split("=")[0] in redis_layout.VARIABLES | {"REDIS_LOCAL_PASSWORD_FILE"}, problem
    for role, parsed in layout.roles.items():
        assert 0 <= parsed.db <= redis_layout.MAX_DB and 1 <= parsed.port <= 65535
        read = redis.connection.parse_url(parsed.url)
        assert (read.get("host"), read.get("port", 6379), read.get("db", 0)) == (parsed.host, parsed.port, parsed.db)
        assert read.get("password") == (parsed.password or None)
        assert not parsed.password or parsed.password not in parsed.masked_url.replace(":***@", "")
    for role in redis_layout.ROLES:
        assert role in layout.roles or any(redis_layout.ROLE_VARIABLES[role] in p for p in layout.problems) \
            or any(p.startswith(("REDIS_LOCAL_PORT", "REDIS_LOCAL_PASSWORD")) for p in layout.problems)


# Every schema variable, with text of the shapes its readers meet.
raw_values = st.one_of(st.sampled_from(["", " ", "true", "FALSE", "0", "-3", "1_000", "8080", "70000", ",", "a,,b",
                                        "x, y", "sqlite:///x", "mysql://u:p@h/d", " postgres://h/d", "DEBUG"]),
                       st.text(max_size=12))
schema_envs = st.dictionaries(st.sampled_from([v.name for v in schema.SCHEMA if v.name not in redis_layout.VARIABLES]),
                              raw_values, max_size=6)


@FEW
@given(st.sampled_from(schema.SCHEMA), raw_values)
def test_each_reader_returns_its_type_or_an_env_error_naming_the_variable(variable, raw):
    try:
        read = schema.value(variable.name, {variable.name: raw})
    except schema.EnvError as exc:
        assert str(exc).startswith(variable.name)
        return
    expected = {"bool": bool, "int": int, "port": int, "list": list}.get(variable.kind, str)
    assert read is None or read == variable.default or isinstance(read, expected)
    if variable.kind == "list" and read:
        assert all(item and item == item.strip() for item in read)


@FEW
@given(schema_envs)
def test_boot_and_the_system_check_turn_any_environment_into_lines_naming_variables(tmp_path_factory, env):
    env = {**env, "VAR_DIR": str(tmp_path_factory.getbasetemp() / "var"), "BOOT_ROLES": env.get("BOOT_ROLES", "web")}
    for line in env_checks.problems(env):
        assert line.split(":")[0].split("=")[0].split(" ")[0] in schema.BY_NAME, line
    plan = resolve_plan(env)  # never raises
    for line in plan.problems:
        assert any(line.startswith(name) for name in (*schema.NAMES, "BOOT_ROLES", "REDIS_LOCAL=")), line


# --- thresholds --------------------------------------------------------------------------

numbers = st.one_of(st.integers(min_value=-10, max_value=2**70).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.sampled_from(["", "1e309", "-0", "50.5", "0x10", "１２"]), st.text(max_size=6))


@FEW
@pytest.mark.django_db
@given(st.fixed_dictionaries({name: numbers for name in (
    "queue_warn", "queue_critical", "memory_warn_percent", "memory_critical_percent", "evicted_keys_warn_min",
    "evicted_keys_critical_min", "rejected_connections_critical_min", "history_retention_days")}),
    st.sampled_from(["", "ops@example.com", "not an address"]),
    st.sampled_from(["", "https://hooks.example/x", "ftp://x/y", "javascript:alert(1)", "http://"]))
def test_the_thresholds_form_accepts_only_thresholds_the_controller_can_apply(data, emails, webhook):
    from apps.metrics.evaluate import LEVEL, QueueFacts, Thresholds, queue_status
    from apps.metrics.forms import MetricSettingsForm
    from apps.metrics.models import ORDERED_PAIRS, cMetricSettings

    form = MetricSettingsForm({**data, "alert_emails": emails, "alert_webhook_url": webhook},
                              instance=cMetricSettings(pk=1))
    if not form.is_valid():
        assert form.errors and set(form.errors) <= set(form.fields) | {"__all__"}
        return
    config = form.instance
    for warn, critical, _label in ORDERED_PAIRS:
        assert getattr(config, warn) < getattr(config, critical)
    assert 0 <= config.memory_warn_percent <= 100 and webhook.startswith(("", "http"))
    thresholds = Thresholds.from_models(config, [])
    for depth in (0, config.queue_warn, config.queue_critical, 10**12):
        status, _reasons = queue_status(QueueFacts(depth=depth, consumers=1, stalled_seconds=None),
                                        *thresholds.for_queue("ai"))
        assert status in LEVEL


@FEW
@pytest.mark.django_db
@given(st.lists(st.tuples(st.sampled_from(["ai", "", "nope", "trigger_alerts"]), numbers, numbers), max_size=4),
       st.one_of(st.integers(min_value=-5, max_value=10**6).map(str), st.text(max_size=4)))
def test_the_override_formset_refuses_or_accepts_any_post_without_a_traceback(rows, total):
    from apps.metrics.forms import MAX_OVERRIDES, QueueThresholdFormSet
    from apps.metrics.models import QueueThreshold

    data = {"form-TOTAL_FORMS": total, "form-INITIAL_FORMS": "0"}
    for i, (queue, warn, critical) in enumerate(rows):
        data.update({f"form-{i}-queue": queue, f"form-{i}-warn": warn, f"form-{i}-critical": critical})
    formset = QueueThresholdFormSet(data, queryset=QueueThreshold.objects.none())
    try:
        valid = formset.is_valid()
    except ValidationError:  # a management form Django cannot read: its own clear error
        return
    assert len(formset.forms) <= MAX_OVERRIDES + 1
    for form in formset.forms if valid else ():
        if form.has_changed():
            assert form.cleaned_data["warn"] < form.cleaned_data["critical"]
