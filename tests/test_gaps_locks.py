"""Locks: entering one another holds, extending, reading owners and their heartbeats at the edges."""

from __future__ import annotations

import pytest

from tests.test_metrics_support import KEYS
from workers.heartbeat import HEARTBEAT_TTL
from workers.locks import Lock, LockNotOwned, owner_alive, owner_of


def test_entering_a_lock_someone_else_holds_is_refused_naming_the_lock(clean_redis):
    client = clean_redis.client(0)
    with Lock(client, KEYS, "tenant:1", ttl=60, owner="first@host"):
        with pytest.raises(LockNotOwned, match=r"^lock 'tenant:1' is held by someone else$"):
            with Lock(client, KEYS, "tenant:1", ttl=60, owner="second@host"):
                pass  # never reached
        assert client.get("fw:lock:tenant:1").decode().startswith("first@host")
    assert not client.exists("fw:lock:tenant:1")  # leaving the block released it


def test_extending_a_lock_gives_it_its_time_to_live_again_and_no_more(clean_redis):
    client = clean_redis.client(0)
    lock = Lock(client, KEYS, "tenant:2", ttl=60, owner="first@host")
    assert lock.acquire()
    client.pexpire(lock.key, 1000)
    assert lock.extend()
    assert 59_000 < client.pttl(lock.key) <= 60_000
    lock.release()


@pytest.mark.parametrize("value, owner", [
    (b"first@host#inst|0123abcd", "first@host#inst"),
    ("first@host#inst|0123abcd", "first@host#inst"),  # a str as well as bytes
    (b"odd|owner|0123abcd", "odd|owner"),  # the token follows the last separator
    (b"no separator", None),
    (None, None),
])
def test_the_owner_is_read_from_a_lock_value(value, owner):
    assert owner_of(value) == owner


def test_a_worker_beating_exactly_its_heartbeat_ttl_ago_is_still_alive():
    beats = {"hot@host": {"ts": 1000.0, "instance": "b"}}
    assert owner_alive("hot@host#b", beats, now=1000.0 + HEARTBEAT_TTL) is True
    assert owner_alive("hot@host#b", beats, now=1000.0 + HEARTBEAT_TTL + 0.001) is False


def test_the_instance_follows_the_last_hash_of_an_owner():
    beats = {"we#ird@host": {"ts": 1000.0, "instance": "b"}}
    assert owner_alive("we#ird@host#b", beats, now=1000.0) is True
