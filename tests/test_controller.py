"""The controller loop: hysteresis, publishing, history, leader lock, outages, signals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
from channels.layers import get_channel_layer

from apps.metrics.assess import Assessor
from apps.metrics.controller import Controller
from apps.metrics.evaluate import Hysteresis, Thresholds
from apps.metrics.models import MetricEvent, QueueSample, RedisSample, RedisServerState, iso
from apps.metrics.snapshot import (GROUP, ControllerInfo, DatabaseStatus, EventEntry, Persistence, QueueEntry,
                                   RedisEntry, Snapshot, Unacked, WorkerEntry, latest_snapshot,
                                   latest_snapshot_json)
from tests.conftest import ROOT, subprocess_env
from tests.servers import RedisServer
from tests.test_metrics_support import fake_worker, fill, layout_for, private_server, queue, role, wait_for
from workers.collect import Collector
from workers.queues import QUEUE_NAMES


def tick(controller: Controller) -> dict:
    assert controller.tick()
    return controller.last_snapshot


# -- hysteresis ---------------------------------------------------------------------
def test_hysteresis_rises_at_once_and_falls_only_after_three_lower_ticks():
    h = Hysteresis(clear_ticks=3)
    assert h.update("q", "warn", "warn") == ("ok", "warn")
    assert h.update("q", "ok", "ok")[1] == "warn"
    assert h.update("q", "ok", "ok")[1] == "warn"
    assert h.update("q", "ok", "ok") == ("warn", "ok")


def test_hysteresis_restarts_the_count_when_the_value_comes_back():
    h = Hysteresis(clear_ticks=3)
    h.update("q", "critical", "critical")
    h.update("q", "ok", "ok")
    h.update("q", "ok", "ok")
    h.update("q", "ok", "critical")  # back within the margin: the count starts again
    assert h.update("q", "ok", "ok")[1] == "critical"
    assert h.update("q", "ok", "ok")[1] == "critical"
    assert h.update("q", "ok", "ok")[1] == "ok"


def test_the_assessment_reports_what_to_write_and_writes_nothing_itself(clean_redis):
    """No ``db`` fixture: pytest-django fails any database query made here."""
    layout = layout_for(clean_redis.port)
    collector = Collector(layout, {}, QUEUE_NAMES)
    assessor = Assessor(layout, collector.servers, collector.queues, interval=5.0, clear_ticks=3, stall_ticks=6)
    try:
        found = assessor.assess(collector.collect(), Thresholds(), time.time())
    finally:
        collector.close()
    assert [run_id for _server, run_id, _restart in found.run_ids] == [role(
        {"redis": found.redis}, "broker")["run_id"]]
    assert len(found.changes) == len(QUEUE_NAMES)  # no consumer anywhere: every queue warns


@pytest.mark.django_db
def test_a_depth_hovering_at_the_threshold_records_one_event_not_a_flap(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client)
    controller = Controller(publish=False, send_tasks=False)
    statuses = []
    for depth in (1000, 990, 1001, 950, 1000, 995):  # hovering just around warn 1000
        client.delete("package_read")
        fill(client, "package_read", depth)
        statuses.append(queue(tick(controller), "package_read")["status"])
    assert statuses == ["warn"] * 6
    assert MetricEvent.objects.filter(subject="queue:package_read").count() == 1
    controller.leader.release()


@pytest.mark.django_db
def test_a_status_clears_after_three_ticks_ten_percent_below_the_threshold(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client)
    controller = Controller(publish=False, send_tasks=False)
    fill(client, "package_read", 1000)
    tick(controller)
    client.delete("package_read")
    fill(client, "package_read", 899)
    statuses = [queue(tick(controller), "package_read")["status"] for _ in range(3)]
    assert statuses == ["warn", "warn", "ok"]
    events = list(MetricEvent.objects.filter(subject="queue:package_read").order_by("id"))
    assert [(e.old_status, e.new_status) for e in events] == [("ok", "warn"), ("warn", "ok")]
    controller.leader.release()


# -- publishing and history ------------------------------------------------------------
def listen_once(group: str, ready: threading.Event, received: list) -> None:
    """A group member in its own thread and event loop, as a consumer would be."""

    async def listen() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        ready.set()
        try:
            received.append(await asyncio.wait_for(layer.receive(channel), 10))
        finally:
            await layer.group_discard(group, channel)

    asyncio.run(listen())


@pytest.mark.django_db
def test_a_tick_publishes_the_snapshot_to_the_cache_and_the_channels_group(clean_redis):
    ready, received = threading.Event(), []
    listener = threading.Thread(target=listen_once, args=(GROUP, ready, received))
    listener.start()
    assert ready.wait(10)
    controller = Controller(send_tasks=False)
    tick(controller)
    listener.join(15)
    controller.leader.release()
    message = received[0]
    assert message["type"] == "metrics.snapshot"
    cached = latest_snapshot()
    # One encoding for both: the frame carries exactly the cached JSON.
    assert message["frame"] == '{"type": "snapshot", "snapshot": ' + latest_snapshot_json().decode() + "}"
    assert json.loads(message["frame"]) == {"type": "snapshot", "snapshot": cached}
    assert [q["name"] for q in cached["queues"]][:2] == ["messagelog_read", "messagelog_read_cold"]
    assert {"collected_at", "duration_ms", "queues", "unacked", "redis", "workers", "thresholds",
            "events"} <= set(cached)
    assert [r["role"] for r in cached["redis"]] == ["broker", "results", "cache", "channels"]
    assert role(cached, "broker")["shared_with"] == ["results", "cache", "channels"]
    json.dumps(cached)  # JSON-safe all the way down


@pytest.mark.django_db
def test_the_snapshot_typeddicts_name_exactly_the_fields_a_tick_publishes(clean_redis):
    fake_worker(clean_redis.client(0), queues=("ai",))  # a worker, and events for the other queues
    controller = Controller(publish=False, send_tasks=False)
    snapshot = tick(controller)
    controller.leader.release()
    shapes = [(snapshot, Snapshot), (snapshot["queues"][0], QueueEntry), (snapshot["redis"][0], RedisEntry),
              (snapshot["redis"][0]["persistence"], Persistence), (snapshot["workers"][0], WorkerEntry),
              (snapshot["unacked"], Unacked), (snapshot["events"][0], EventEntry),
              (snapshot["database"], DatabaseStatus), (snapshot["controller"], ControllerInfo)]
    for found, shape in shapes:
        assert set(found) == set(shape.__annotations__), shape.__name__


@pytest.mark.django_db
def test_the_snapshot_lists_the_latest_events_first(clean_redis):
    controller = Controller(publish=False, send_tasks=False)
    snapshot = tick(controller)  # no consumers: every queue warns
    assert len(snapshot["events"]) == len(QUEUE_NAMES)
    fill(clean_redis.client(0), "ai", 1)
    snapshot = tick(controller)
    assert snapshot["events"][0]["subject"] == "queue:ai"
    assert snapshot["events"][0]["new_status"] == "critical"
    controller.leader.release()


@pytest.mark.django_db
def test_each_minute_is_rolled_up_once_per_queue_with_its_highest_depth(clean_redis):
    client = clean_redis.client(0)
    controller = Controller(publish=False, send_tasks=False)
    fill(client, "ai", 7)
    tick(controller)
    client.delete("ai")
    fill(client, "ai", 3)
    tick(controller)
    samples = QueueSample.objects.filter(queue="ai")
    assert samples.count() in (1, 2)  # two when the ticks straddled a minute
    assert samples.order_by("minute").first().depth == 7
    assert RedisSample.objects.filter(role="broker").exists()
    controller.leader.release()


# -- restarts --------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_restarted_redis_is_recorded_with_the_depth_it_lost_and_caches_are_rebuilt(clean_redis):
    with private_server() as server:
        fill(server.client(0), "ai", 5)
        fake_worker(server.client(0))
        server.client(0).hset("unacked", "tag", "x")
        controller = Controller(layout=layout_for(server.port), transport_options={}, publish=False)
        tick(controller)
        old_run_id = role(controller.last_snapshot, "broker")["run_id"]
        server.restart()
        snapshot = tick(controller)
        controller.collector.close()
    event = MetricEvent.objects.get(kind="restart")
    assert event.details["lost_depth"] == 5
    assert event.details["lost_unacked"] == 1
    assert event.details["old_run_id"] == old_run_id != role(snapshot, "broker")["run_id"]
    assert "5 queued and 1 unacked messages were lost" in event.message
    # The heartbeats went with the data: no "no consumer" alarm before workers beat again.
    assert queue(snapshot, "ai")["reasons"] == [
        "consumers unknown: waiting for worker heartbeats after the broker came back"]
    # The rebuild was queued at once, on the Celery app's broker.
    queued = clean_redis.client(0).lrange("stats_cache", 0, -1)
    assert [json.loads(m)["headers"]["task"] for m in queued] == ["apps.metrics.tasks.rebuild_caches"]


# -- leader lock -----------------------------------------------------------------------
@pytest.mark.django_db
def test_only_the_leader_acts_and_a_standby_takes_over_when_it_stops(clean_redis):
    first = Controller(publish=False, send_tasks=False)
    second = Controller(publish=False, send_tasks=False)
    assert first.tick() is True
    assert second.tick() is False
    assert second.last_snapshot is None
    first.leader.release()
    assert second.tick() is True
    assert first.tick() is False
    second.leader.release()


@pytest.mark.django_db
def test_a_standby_takes_over_when_the_leader_dies_without_releasing(clean_redis):
    # TTL 1 s (two intervals): long enough that the first tick, the first of a
    # session on a loaded machine, ends well before it; the takeover is waited for.
    first = Controller(publish=False, send_tasks=False, interval=0.5, max_backoff=1.0)
    second = Controller(publish=False, send_tasks=False, interval=0.5, max_backoff=1.0)
    assert first.tick() is True
    assert second.tick() is False
    wait_for(second.tick, timeout=10)  # the lock expired
    second.leader.release()


# -- outages ---------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_loop_survives_its_redis_stopping_and_recovers_by_itself(clean_redis):
    with private_server() as server:
        controller = Controller(layout=layout_for(server.port), transport_options={}, interval=0.05,
                                max_backoff=0.3, publish=False, send_tasks=False)
        loop = threading.Thread(target=controller.run, daemon=True)
        loop.start()
        try:
            wait_for(lambda: controller.last_snapshot and role(controller.last_snapshot, "broker")["reachable"])
            server.stop()
            down = wait_for(lambda: not role(controller.last_snapshot, "broker")["reachable"]
                            and controller.last_snapshot)
            assert role(down, "broker")["error"].startswith("unreachable: ")
            assert role(down, "broker")["status"] == "critical"
            assert queue(down, "ai")["depth"] is None
            assert controller.next_delay() > controller.interval  # backing off
            server.start()
            wait_for(lambda: role(controller.last_snapshot, "broker")["reachable"], timeout=10)
        finally:
            controller.stop()
            loop.join(timeout=10)
    assert not loop.is_alive()
    kinds = list(MetricEvent.objects.filter(subject="redis:broker").order_by("id").values_list("kind", flat=True))
    # The bundled Redis is non-persistent: coming back is also a restart.
    assert kinds[-3:] == ["unreachable", "restart", "recovered"]
    assert controller.next_delay() == controller.interval


@pytest.mark.django_db(transaction=True)
def test_run_controller_ends_cleanly_on_sigterm_and_releases_the_leader_lock(clean_redis):
    env = subprocess_env(LOG_LEVEL="INFO")
    process = subprocess.Popen([sys.executable, "manage.py", "run_controller", "--interval", "0.2"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: clean_redis.client(0).exists("fw:lock:controller:leader"), timeout=30)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "controller stopped" in output
    assert not clean_redis.client(0).exists("fw:lock:controller:leader")
    assert "Traceback" not in output


@pytest.mark.django_db(transaction=True)
def test_run_controller_once_publishes_one_snapshot(clean_redis):
    result = subprocess.run([sys.executable, "manage.py", "run_controller", "--once"], cwd=ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert latest_snapshot()["queues"][0]["name"] == "messagelog_read"


class _RedisWithoutHello(RedisServer):
    """A real Redis that does not know HELLO, like any Redis before 6.

    redis-py opens a connection with ``HELLO 3 AUTH default <password>``; such
    a server answers ``unknown command 'HELLO', with args beginning with: ...
    '<password>'``: an error text that quotes the password.
    """

    def __init__(self) -> None:
        super().__init__("--rename-command", "HELLO", "")

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")


def test_a_password_that_a_redis_error_quotes_never_reaches_the_log_or_the_snapshot(caplog, db):
    secret = "s3cret-pa55"
    with _RedisWithoutHello() as server:
        urls = {role_name: f"redis://:{secret}@127.0.0.1:{server.port}/{db_number}"
                for db_number, role_name in enumerate(("broker", "results", "cache", "channels"))}
        with pytest.raises(redis.ResponseError, match=secret):  # the leak this test guards against is real
            redis.Redis.from_url(urls["broker"]).ping()
        controller = Controller(layout=layout_for(server.port, **urls), transport_options={}, publish=False,
                                send_tasks=False)
        with caplog.at_level("DEBUG"):
            controller.safe_tick()
            controller.safe_tick()
        controller.collector.close()
    snapshot = controller.last_snapshot
    broker = role(snapshot, "broker")
    assert broker["reachable"] is False
    assert "unknown command" in broker["error"] and "***" in broker["error"]
    assert secret not in json.dumps(snapshot)
    assert secret not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_database_going_away_is_reported_and_events_are_saved_when_it_returns(clean_redis, tmp_path):
    from django.db import connection

    controller = Controller(send_tasks=False)
    tick(controller)
    real_name = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = str(tmp_path / "missing" / "db.sqlite3")  # cannot be opened
    try:
        fill(clean_redis.client(0), "ai", 1)  # ai: warn (no consumer) -> critical
        snapshot = tick(controller)
        assert snapshot["database"] == {"reachable": False, "error": "unreachable: OperationalError"}
        assert latest_snapshot()["database"]["reachable"] is False  # still published
        assert snapshot["events"][0]["subject"] == "queue:ai" and snapshot["events"][0]["id"] is None
    finally:
        connection.close()
        connection.settings_dict["NAME"] = real_name
    snapshot = tick(controller)
    controller.leader.release()
    assert snapshot["database"]["reachable"] is True
    saved = MetricEvent.objects.get(subject="queue:ai", new_status="critical")
    assert snapshot["events"][0]["id"] == saved.id


@pytest.mark.django_db
def test_a_restarted_controller_neither_repeats_nor_misses_status_events(clean_redis):
    first = Controller(publish=False, send_tasks=False)
    tick(first)  # no consumer anywhere: one warn event per queue
    first.leader.release()
    assert MetricEvent.objects.count() == len(QUEUE_NAMES)
    fake_worker(clean_redis.client(0))
    second = Controller(publish=False, send_tasks=False, clear_ticks=1)
    snapshot = tick(second)
    second.leader.release()
    assert queue(snapshot, "ai")["status"] == "ok"
    assert len(snapshot["events"]) == 2 * len(QUEUE_NAMES)  # its own, then those the first one recorded
    events = MetricEvent.objects.order_by("-id")[:len(QUEUE_NAMES)]
    assert {(e.old_status, e.new_status) for e in events} == {("warn", "ok")}
    assert MetricEvent.objects.count() == 2 * len(QUEUE_NAMES)


@pytest.mark.django_db
def test_queue_metrics_prints_one_collection_and_publishes_nothing(clean_redis, capsys):
    from django.core.management import call_command

    fill(clean_redis.client(0), "ai", 4)
    call_command("queue_metrics", "--json")
    snapshot = json.loads(capsys.readouterr().out)
    assert queue(snapshot, "ai")["depth"] == 4
    assert latest_snapshot() is None
    assert MetricEvent.objects.count() == 0
    call_command("queue_metrics")
    table = capsys.readouterr().out
    assert "ai" in table and "critical  (no consumer)" in table
    assert "redis broker" in table


# -- malformed entries in the broker's fw: hashes --------------------------------------
@pytest.mark.django_db
def test_malformed_heartbeat_and_counter_entries_spoil_one_figure_not_the_tick(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client, "good@host")
    client.hset("fw:workers", "x@h", '"oops"')
    client.hset("fw:processed:total", mapping={"ai": "abc", "stats_cache": 4})
    controller = Controller(publish=False, send_tasks=False)
    snapshot = tick(controller)
    controller.leader.release()
    assert [w["name"] for w in snapshot["workers"]] == ["good@host"]
    assert queue(snapshot, "ai")["processed_total"] == 0  # the one figure spoiled
    assert queue(snapshot, "stats_cache")["processed_total"] == 4
    assert queue(snapshot, "ai")["consumers"] == 1
    assert client.hkeys("fw:workers") == [b"good@host"]  # the unreadable entry is forgotten


@pytest.mark.django_db
def test_queue_metrics_prints_a_collection_despite_malformed_entries(clean_redis, capsys):
    from django.core.management import call_command

    clean_redis.client(0).hset("fw:workers", "x@h", '"oops"')
    clean_redis.client(0).hset("fw:processed:total", "ai", "abc")
    call_command("queue_metrics")
    assert "redis broker" in capsys.readouterr().out


# -- leadership that comes back --------------------------------------------------------
def hand_over(first: Controller, second: Controller) -> None:
    """``first`` loses the lock to ``second`` and stands by one tick, as a running loop would."""
    first.leader.release()
    assert second.tick() is True
    assert first.tick() is False


@pytest.mark.django_db
def test_a_controller_that_leads_again_does_not_repeat_a_status_change_another_recorded(clean_redis):
    first = Controller(publish=False, send_tasks=False, clear_ticks=1)
    second = Controller(publish=False, send_tasks=False, clear_ticks=1)
    tick(first)  # no consumer anywhere: every queue warns
    fake_worker(clean_redis.client(0))
    hand_over(first, second)  # the second records warn -> ok
    second.leader.release()
    snapshot = tick(first)
    first.leader.release()
    assert queue(snapshot, "ai")["status"] == "ok"
    events = MetricEvent.objects.filter(subject="queue:ai").order_by("id")
    assert [(e.old_status, e.new_status) for e in events] == [("ok", "warn"), ("warn", "ok")]


@pytest.mark.django_db
def test_a_controller_that_leads_again_does_not_repeat_a_restart_another_recorded(clean_redis):
    with private_server() as server:
        first, second = (Controller(layout=layout_for(server.port), transport_options={}, publish=False,
                                    send_tasks=False) for _ in range(2))
        tick(first)
        hand_over(first, second)
        server.restart()
        tick(second)  # records the restart
        second.leader.release()
        snapshot = tick(first)
        first.leader.release()
        for controller in (first, second):
            controller.collector.close()
    assert MetricEvent.objects.filter(kind="restart").count() == 1
    assert role(snapshot, "broker")["last_restart_at"] is not None  # the restart the other one saw


@pytest.mark.django_db
def test_a_controller_that_leads_again_does_not_count_stalls_from_before(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client)
    fill(client, "ai", 1)
    first = Controller(publish=False, send_tasks=False, stall_ticks=2)
    second = Controller(publish=False, send_tasks=False, stall_ticks=2)
    tick(first)
    tick(first)  # one still tick: one more would make it stalled
    hand_over(first, second)
    second.leader.release()
    snapshot = tick(first)
    first.leader.release()
    assert not any(r.startswith("stalled") for r in queue(snapshot, "ai")["reasons"])


# -- backoff ---------------------------------------------------------------------------
def test_the_backoff_is_capped_however_many_ticks_failed(db):
    controller = Controller(publish=False, send_tasks=False, interval=5.0, max_backoff=30.0)
    for failures in (1, 3, 1100, 10**6):
        controller.failures = failures
        assert controller.next_delay() <= 30
    assert controller.next_delay() == 30


@pytest.mark.django_db
def test_an_unreachable_channels_redis_does_not_back_the_loop_off(clean_redis):
    with private_server() as dead:
        port = dead.port  # a port that refuses once the server is gone
    controller = Controller(layout=layout_for(clean_redis.port, channels=f"redis://127.0.0.1:{port}/3"),
                            transport_options={}, send_tasks=False)
    snapshot = tick(controller)
    snapshot = tick(controller)
    controller.leader.release()
    assert role(snapshot, "channels")["reachable"] is False
    assert role(snapshot, "broker")["reachable"] is True
    assert controller.failures == 0
    assert controller.next_delay() == controller.interval


@pytest.mark.django_db
def test_an_unreachable_broker_backs_the_loop_off(clean_redis):
    with private_server() as dead:
        port = dead.port
    controller = Controller(layout=layout_for(port), transport_options={}, publish=False, send_tasks=False)
    controller.safe_tick()
    controller.safe_tick()
    controller.collector.close()
    assert role(controller.last_snapshot, "broker")["reachable"] is False
    assert controller.next_delay() > controller.interval


def test_the_default_interval_is_the_metrics_controller_interval_setting(db, settings):
    settings.METRICS_CONTROLLER_INTERVAL = 7.0
    assert Controller(publish=False, send_tasks=False).interval == 7.0


# -- restarts: losses and survivors ----------------------------------------------------
@pytest.mark.django_db
def test_a_persistent_broker_restart_says_what_survived_and_is_no_loss(clean_redis):
    with private_server("--appendonly", "yes", "--appendfsync", "always") as server:
        client = server.client(0)
        fill(client, "ai", 5)
        client.hset("unacked", "tag", "x")
        controller = Controller(layout=layout_for(server.port), transport_options={}, publish=False,
                                send_tasks=False)
        tick(controller)
        server.restart()
        snapshot = tick(controller)
        controller.leader.release()
        controller.collector.close()
    assert role(snapshot, "broker")["persistence"]["persistent"] is True
    event = MetricEvent.objects.get(kind="restart")
    assert "lost" not in event.message
    assert event.message.endswith("it is persistent: 5 queued and 1 unacked messages survived")
    assert event.new_status == "warn"
    assert (event.details["lost_depth"], event.details["lost_unacked"], event.details["persistent"]) == (0, 0, True)


@pytest.mark.django_db
def test_the_lost_depth_is_what_was_queued_before_less_what_is_queued_right_after(clean_redis):
    with private_server() as server:
        fill(server.client(0), "ai", 5)
        controller = Controller(layout=layout_for(server.port), transport_options={}, publish=False,
                                send_tasks=False)
        tick(controller)
        server.restart()
        fill(server.client(0), "ai", 2)  # published after the restart, before the next tick
        tick(controller)
        controller.leader.release()
        controller.collector.close()
    event = MetricEvent.objects.get(kind="restart")
    assert event.details["lost_depth"] == 3
    assert event.new_status == "critical"
    assert "3 queued and 0 unacked messages were lost" in event.message


# -- last_restart_at -------------------------------------------------------------------
@pytest.mark.django_db
def test_last_restart_at_is_null_until_the_controller_sees_a_restart(clean_redis):
    snapshot = tick(Controller(publish=False, send_tasks=False))
    assert [r["last_restart_at"] for r in snapshot["redis"]] == [None] * 4


@pytest.mark.django_db
def test_last_restart_at_is_when_the_controller_saw_the_run_id_change_even_after_it_restarts(clean_redis):
    with private_server() as server:
        layout = layout_for(server.port)
        first = Controller(layout=layout, transport_options={}, publish=False, send_tasks=False)
        tick(first)
        server.restart()
        seen = role(tick(first), "broker")["last_restart_at"]
        first.leader.release()
        first.collector.close()
        second = Controller(layout=layout, transport_options={}, publish=False, send_tasks=False)
        again = role(tick(second), "broker")["last_restart_at"]
        second.leader.release()
        second.collector.close()
    assert MetricEvent.objects.filter(kind="restart").count() == 1
    assert seen is not None and seen == iso(RedisServerState.objects.get().restarted_at)
    assert again == seen


# -- run_controller --once -------------------------------------------------------------
@pytest.mark.django_db
def test_run_controller_once_exits_non_zero_when_its_tick_failed(clean_redis, monkeypatch):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    def broken(self) -> bool:
        raise RuntimeError("thresholds exploded")

    monkeypatch.setattr(Controller, "load_thresholds", broken)
    with pytest.raises(CommandError, match="tick failed"):
        call_command("run_controller", "--once")


# -- the broker's heartbeat hash is read once per tick ---------------------------------
@pytest.mark.django_db
def test_a_tick_reads_the_worker_heartbeats_once(clean_redis):
    with private_server() as server:
        fake_worker(server.client(0))
        controller = Controller(layout=layout_for(server.port), transport_options={}, publish=False,
                                send_tasks=False)
        tick(controller)
        server.client(0).config_resetstat()
        tick(controller)
        stats = server.client(0).info("commandstats")
        controller.leader.release()
        controller.collector.close()
    # fw:workers once, and the three processed counters: all in the collection's one round trip.
    assert stats["cmdstat_hgetall"]["calls"] == 4
