"""Run in a child process with a given layout: exercise every Redis role once.

Prints one JSON line: {"cache": ..., "channels": ..., ...}, each
either "ok" or the error it met.  Used by the TLS tests, which need a fresh
process because Django reads the layout from the environment at start.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from channels.layers import get_channel_layer  # noqa: E402
from django.core.cache import cache  # noqa: E402


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def cache_roundtrip() -> str:
    try:
        cache.set("tls-test", "value", 30)
        return "ok" if cache.get("tls-test") == "value" else "wrong value"
    except Exception as exc:
        return _error(exc)


async def _channels() -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("tls-test", channel)
    await layer.group_send("tls-test", {"type": "tls.hello", "text": "hi"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    await layer.flush()
    return "ok" if message.get("text") == "hi" else f"wrong message {message!r}"


def channels_roundtrip() -> str:
    try:
        return asyncio.run(asyncio.wait_for(_channels(), timeout=8))
    except BaseException as exc:  # TimeoutError, SSL errors, ...
        return _error(exc)


def broker_connect() -> str:
    from config.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            connection.default_channel.client.ping()
        return "ok"
    except Exception as exc:
        return _error(exc)


def results_connect() -> str:
    from config.celery import app

    try:
        return "ok" if app.backend.client.ping() else "no answer"
    except Exception as exc:
        return _error(exc)


def celery_roundtrip() -> str:
    from workers.probe import probe

    try:
        answer = probe.apply_async(args=("ai", 0.0), queue="ai", retry=False).get(timeout=20)
        return "ok" if answer["queue"] == "ai" else f"wrong answer {answer!r}"
    except Exception as exc:
        return _error(exc)


if __name__ == "__main__":
    wanted = sys.argv[1:] or ["cache", "channels", "celery"]
    runners = {
        "cache": cache_roundtrip,
        "channels": channels_roundtrip,
        "broker": broker_connect,
        "results": results_connect,
        "celery": celery_roundtrip,
    }
    print(json.dumps({name: runners[name]() for name in wanted}))
