"""Worker locks against the real suite Redis: owner token, TTL, owner-only release, cleaning."""

from __future__ import annotations

import pytest

from tests.test_metrics_support import KEYS, fake_worker, wait_for
from workers.locks import Lock, LockNotOwned, clean_dead_locks


@pytest.fixture
def client(clean_redis):
    return clean_redis.client(0)


def test_a_lock_holds_an_owner_token_and_a_ttl(client):
    lock = Lock(client, KEYS, "tenant:1", ttl=30, owner="hot@host")
    assert lock.acquire()
    assert client.get("fw:lock:tenant:1").decode() == f"hot@host|{lock.token}"
    assert 0 < client.pttl("fw:lock:tenant:1") <= 30_000
    assert client.sismember("fw:locks", "fw:lock:tenant:1")


def test_a_second_holder_cannot_take_a_held_lock(client):
    assert Lock(client, KEYS, "tenant:1", ttl=30, owner="a@host").acquire()
    assert not Lock(client, KEYS, "tenant:1", ttl=30, owner="b@host").acquire()
    with pytest.raises(LockNotOwned):
        with Lock(client, KEYS, "tenant:1", ttl=30, owner="b@host"):
            pass


def test_only_the_owner_releases(client):
    mine = Lock(client, KEYS, "tenant:1", ttl=30, owner="a@host")
    assert mine.acquire()
    impostor = Lock(client, KEYS, "tenant:1", ttl=30, owner="a@host")  # same owner, other token
    assert impostor.release() is False
    assert client.exists("fw:lock:tenant:1")
    assert mine.release() is True
    assert not client.exists("fw:lock:tenant:1")
    assert not client.sismember("fw:locks", "fw:lock:tenant:1")


def test_a_late_first_owner_does_not_release_the_lock_someone_took_after_expiry(client):
    first = Lock(client, KEYS, "tenant:1", ttl=0.05, owner="a@host")
    assert first.acquire()
    second = Lock(client, KEYS, "tenant:1", ttl=30, owner="b@host")
    wait_for(second.acquire, timeout=5)
    assert first.release() is False
    assert first.extend() is False
    assert client.get("fw:lock:tenant:1").decode() == second.value


def test_the_owner_extends_its_lock(client):
    lock = Lock(client, KEYS, "tenant:1", ttl=0.5, owner="a@host")
    lock.acquire()
    lock.ttl = 60
    assert lock.extend() is True
    assert client.pttl("fw:lock:tenant:1") > 1000


def test_the_cleaner_deletes_locks_whose_owner_heartbeat_expired(client):
    fake_worker(client, "alive@host")
    fake_worker(client, "dead@host", age=120)
    Lock(client, KEYS, "held-by-alive", ttl=60, owner="alive@host").acquire()
    Lock(client, KEYS, "held-by-dead", ttl=60, owner="dead@host").acquire()
    Lock(client, KEYS, "held-by-forgotten", ttl=60, owner="gone@host").acquire()
    Lock(client, KEYS, "held-by-a-command", ttl=60, owner="web-1:4242").acquire()
    deleted = clean_dead_locks(client, KEYS)
    assert sorted(deleted) == ["held-by-dead", "held-by-forgotten"]
    assert client.exists("fw:lock:held-by-alive", "fw:lock:held-by-a-command") == 2


def test_the_cleaner_drops_index_entries_of_locks_that_expired_by_ttl(client):
    Lock(client, KEYS, "short", ttl=0.05, owner="a@host").acquire()
    wait_for(lambda: not client.exists("fw:lock:short"), timeout=5)  # Redis expired it
    assert clean_dead_locks(client, KEYS) == []
    assert client.smembers("fw:locks") == set()


@pytest.mark.django_db
def test_the_controller_cleans_dead_locks_every_tick(client):
    from apps.metrics.controller import Controller

    fake_worker(client, "dead@host", age=120)
    Lock(client, KEYS, "held-by-dead", ttl=60, owner="dead@host").acquire()
    controller = Controller(publish=False, send_tasks=False)
    assert controller.tick()
    controller.leader.release()
    assert not client.exists("fw:lock:held-by-dead")


def test_a_lock_of_a_crashed_worker_is_dead_once_another_instance_beats_under_its_name(client):
    fake_worker(client, "hot@host", instance="second-start")
    Lock(client, KEYS, "held-by-crashed", ttl=60, owner="hot@host#first-start").acquire()
    Lock(client, KEYS, "held-by-current", ttl=60, owner="hot@host#second-start").acquire()
    assert clean_dead_locks(client, KEYS) == ["held-by-crashed"]
    assert client.exists("fw:lock:held-by-current")


def test_the_cleaner_uses_the_heartbeats_it_is_given_instead_of_reading_them_again(client):
    Lock(client, KEYS, "held-by-gone", ttl=60, owner="gone@host#1").acquire()
    client.config_resetstat()
    assert clean_dead_locks(client, KEYS, heartbeats={}) == ["held-by-gone"]
    assert "cmdstat_hgetall" not in client.info("commandstats")


def test_a_worker_process_owns_its_locks_by_worker_name_and_instance(client):
    from workers import heartbeat

    saved = dict(heartbeat._state)
    try:
        heartbeat.remember_worker_name(sender="hot@host")  # celeryd_init, before the pool forks
        first = heartbeat._state["instance"]
        assert Lock(client, KEYS, "tenant:1", ttl=30).owner == f"hot@host#{first}"
        heartbeat.remember_worker_name(sender="hot@host")  # the next start of the same worker
        assert heartbeat._state["instance"] != first
    finally:
        heartbeat._state.clear()
        heartbeat._state.update(saved)
