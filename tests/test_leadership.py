"""The leader lock: a short TTL renewed between ticks, and a killed local leader replaced at once."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from apps.metrics.controller import Controller
from apps.metrics.leadership import LEADER_LOCK, leader_ttl, local_owner_dead
from tests.test_metrics_support import wait_for


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_lock_lives_two_intervals_so_a_standby_replaces_a_killed_leader_within_three():
    assert leader_ttl(5.0) == 10.0


def test_only_a_vanished_process_of_this_host_counts_as_a_dead_owner():
    here = socket.gethostname()
    assert local_owner_dead(f"{here}:{dead_pid()}")
    assert not local_owner_dead(f"{here}:1")  # alive (init)
    assert not local_owner_dead(f"elsewhere:{dead_pid()}")  # another host: only its TTL tells
    assert not local_owner_dead("worker@host#abc")
    assert not local_owner_dead(None)


@pytest.mark.django_db
def test_a_controller_takes_the_lock_of_a_killed_predecessor_on_this_host_at_once(clean_redis):
    client = clean_redis.client(0)
    client.set(f"fw:lock:{LEADER_LOCK}", f"{socket.gethostname()}:{dead_pid()}|token", px=600_000)
    controller = Controller(publish=False, send_tasks=False)
    assert controller.tick() is True
    controller.leader.release()


@pytest.mark.django_db
def test_a_live_leader_on_another_host_is_left_until_its_ttl(clean_redis):
    client = clean_redis.client(0)
    client.set(f"fw:lock:{LEADER_LOCK}", f"elsewhere:{dead_pid()}|token", px=600_000)
    controller = Controller(publish=False, send_tasks=False)
    assert controller.tick() is False


@pytest.mark.django_db(transaction=True)
def test_a_leader_backing_off_keeps_its_short_lock_through_the_renewer(clean_redis):
    # Interval 0.2 s: the lock lives 0.4 s, the backoff sleeps up to 3 s.
    leader = Controller(publish=False, send_tasks=False, interval=0.2, max_backoff=3.0)
    leader.failures = 10  # as after ten failing ticks: the loop sleeps 3 s between ticks
    leader.tick = lambda: (leader.leader.claim(), setattr(leader, "failures", 10))[0]
    loop = threading.Thread(target=leader.run, daemon=True)
    loop.start()
    try:
        wait_for(lambda: leader.leader.held, timeout=5)
        standby = Controller(publish=False, send_tasks=False, interval=0.2)
        time.sleep(1.5)  # several TTLs, inside one backoff sleep
        assert standby.leader.claim() is False
    finally:
        leader.stop()
        loop.join(timeout=10)
