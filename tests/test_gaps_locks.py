"""Locks used as a context manager: a lock held by another says which one."""

from __future__ import annotations

import pytest

from tests.test_metrics_support import KEYS
from workers.locks import Lock, LockNotOwned


def test_entering_a_lock_someone_else_holds_is_refused_naming_the_lock(clean_redis):
    client = clean_redis.client(0)
    with Lock(client, KEYS, "tenant:1", ttl=60, owner="first@host"):
        with pytest.raises(LockNotOwned, match=r"^lock 'tenant:1' is held by someone else$"):
            with Lock(client, KEYS, "tenant:1", ttl=60, owner="second@host"):
                pass  # never reached
        assert client.get("fw:lock:tenant:1").decode().startswith("first@host")
    assert not client.exists("fw:lock:tenant:1")  # leaving the block released it
