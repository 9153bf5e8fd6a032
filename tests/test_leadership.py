"""The leader lock: a short TTL renewed between ticks, and a killed local leader replaced at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

import pytest

from apps.metrics.controller import Controller
from apps.metrics.leadership import LEADER_LOCK, Leadership, Renewer, leader_ttl, local_owner_dead
from tests.test_metrics_support import KEYS, wait_for

LEADER_KEY = f"fw:lock:{LEADER_LOCK}"
NOBODY = 65534


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
    assert not local_owner_dead(f"{here}:{os.getpid()}")  # this very process
    assert not local_owner_dead(f"{here}:not-a-pid")  # no error either: the lock is left to its TTL
    assert not local_owner_dead(f"{here}:")


DEFAULT_SIGNALS_THEN_SLEEP = """
import signal, time
for number in signal.valid_signals():
    try:
        signal.signal(number, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
print("ready", flush=True)
time.sleep(600)
"""


def test_asking_whether_a_live_local_owner_is_dead_sends_it_no_signal():
    # Another controller on this host, of the same user: os.kill(pid, 0) only asks.
    # The child restores every signal's default action (a run under nohup
    # inherits SIGHUP ignored) and says when it has, so any signal ends it.
    here = socket.gethostname()
    child = subprocess.Popen([sys.executable, "-c", DEFAULT_SIGNALS_THEN_SLEEP], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        assert not local_owner_dead(f"{here}:{child.pid}")
    finally:
        child.terminate()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGTERM  # ended by our SIGTERM, not by a signal sent before it


def answer_as_another_user(question: Callable[[], bool]) -> int:
    """0 or 1 as ``question()`` answers in a forked child running as nobody; 2 if it raised.

    Run as root (as here), os.kill(pid, 0) is allowed on every process; a
    controller running as another user than the lock's owner gets EPERM."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest teardown, no atexit, whatever happens
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            os._exit(1 if question() else 0)
        except BaseException:
            os._exit(2)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_live_local_owner_of_another_user_is_not_dead():
    here = socket.gethostname()
    assert not local_owner_dead(f"{here}:1")
    # pid 1 runs as root; seen from nobody, it exists but may not be signalled.
    assert answer_as_another_user(lambda: local_owner_dead(f"{here}:1")) == 0
    gone = f"{here}:{dead_pid()}"
    assert answer_as_another_user(lambda: local_owner_dead(gone)) == 1


@pytest.mark.django_db
def test_a_controller_takes_the_lock_of_a_killed_predecessor_on_this_host_at_once(clean_redis, caplog):
    client = clean_redis.client(0)
    predecessor = f"{socket.gethostname()}:{dead_pid()}"
    client.set(LEADER_KEY, f"{predecessor}|token", px=600_000)
    client.sadd(KEYS.lock_index, LEADER_KEY)
    controller = Controller(publish=False, send_tasks=False)
    with caplog.at_level("WARNING", logger="flowwatch.controller"):
        assert controller.tick() is True
    try:
        # Taken in Redis, not merely acted on as through a broker outage.
        assert client.get(LEADER_KEY).decode() == controller.leader.lock.value
        assert controller.leader.held
        assert [record.getMessage() for record in caplog.records if "leader lock" in record.getMessage()] \
            == [f"took the leader lock of {predecessor}: that process no longer exists"]
    finally:
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


def test_a_standby_s_renewer_neither_touches_the_lock_nor_reports_it_lost(clean_redis, caplog):
    client = clean_redis.client(0)
    leader, standby = Leadership(client, KEYS, ttl=5.0), Leadership(client, KEYS, ttl=5.0)
    try:
        assert leader.claim() is True
        assert standby.claim() is False
        caplog.clear()
        with caplog.at_level("INFO", logger="flowwatch.controller"):
            standby.renew()
        assert caplog.records == []
        assert client.get(LEADER_KEY).decode() == leader.lock.value
    finally:
        leader.release()


def test_the_renewer_notices_a_lost_lock_once_and_says_so(clean_redis, caplog):
    client = clean_redis.client(0)
    old, new = Leadership(client, KEYS, ttl=5.0), Leadership(client, KEYS, ttl=5.0)
    try:
        assert old.claim() is True
        client.delete(LEADER_KEY)  # expired while the old leader backed off
        assert new.claim() is True
        caplog.clear()
        with caplog.at_level("INFO", logger="flowwatch.controller"):
            old.renew()
            assert not old.held
            assert old.claim() is False  # the next tick stands by without a second report
        assert [record.getMessage() for record in caplog.records] == ["leader lock lost (expired or taken over)"]
    finally:
        new.release()


def test_the_renewer_is_a_named_daemon_thread_that_renews_from_its_start(clean_redis):
    client = clean_redis.client(0)
    leadership = Leadership(client, KEYS, ttl=0.4)
    assert leadership.claim() is True
    client.pexpire(LEADER_KEY, 600_000)  # longer than any renewal sets it
    renewer = Renewer(leadership, stuck_after=60.0)
    # A thread dump names it; the interpreter does not wait for it at exit.
    assert (renewer.name, renewer.daemon) == ("fw-leader-renewer", True)
    renewer.start()  # no alive() yet: a renewer counts its start as the loop's last sign of life
    try:
        wait_for(lambda: 0 < client.pttl(LEADER_KEY) <= 400, timeout=15)
        assert renewer.is_alive()
    finally:
        renewer.stop()
        renewer.join(timeout=10)
        leadership.release()
