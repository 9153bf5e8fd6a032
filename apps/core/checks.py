"""System checks for the Redis layout and the environment; ids are stable (docs/configuration.md)."""

from __future__ import annotations

import os

import redis
from django.conf import settings
from django.core.checks import Error, Warning, register

from config import env, env_checks, redis_layout

# A variable outside the Redis layout is unusable (docs/configuration.md).
E_ENVIRONMENT = "flowwatch.E002"


@register("redis")
def check_redis_layout(app_configs=None, **kwargs):
    """The same problems and warnings ``boot.py check`` prints."""
    layout = redis_layout.resolve()
    found = [Error(problem, id=redis_layout.E_INVALID) for problem in layout.problems]
    found += [Warning(text, id=code) for code, text in layout.findings]
    return found


@register("redis")
def check_broker_eviction_policy(app_configs=None, **kwargs):
    """Evicted broker keys are lost tasks; checked only when the broker answers."""
    from workers.redis_clients import client_for

    layout = settings.REDIS_LAYOUT
    if "broker" not in layout.roles:
        return []
    try:
        policy = client_for("broker", layout).config_get("maxmemory-policy").get("maxmemory-policy")
    except (redis.RedisError, OSError):
        return []  # unreachable now: /readyz and the controller report that
    if policy and policy != "noeviction":
        return [Warning(
            f"the broker Redis has maxmemory-policy {policy!r}: under memory pressure it "
            "evicts queued tasks; set it to noeviction",
            id=redis_layout.W_BROKER_EVICTION,
        )]
    return []


@register()
def check_environment(app_configs=None, **kwargs):
    """The variables outside the Redis layout, as ``boot.py check`` reads them.

    A value settings cannot use at all stops them from loading before any
    check runs; these are the ones that load and would fail later (a
    database scheme, both e-mail TLS modes, a stray comma in a list).
    """
    found = []
    for variable in env.SCHEMA:
        if variable.name in redis_layout.VARIABLES:  # check_redis_layout reports these
            continue
        try:
            env.value(variable.name)
        except env.EnvError as exc:
            found.append(Error(str(exc), id=E_ENVIRONMENT))
    found += [Error(problem, id=E_ENVIRONMENT) for problem in env_checks.problems(os.environ)]
    return found
