"""The controller loop: collect, assess, record, publish, roll up, send, clean.

One :class:`Controller` runs :meth:`Controller.tick` every ``interval``
seconds; a tick is a row of small steps (docs/metrics.md, "One tick"), each
in the module that does that job:

* leadership — apps/metrics/leadership.py (only the leader acts);
* the memory kept in the database — apps/metrics/memory.py;
* the assessment: statuses, hysteresis, reasons — apps/metrics/assess.py;
* the event outbox: save, show, alert — apps/metrics/outbox.py;
* the per-minute history — apps/metrics/history.py;
* work held by dead workers, handed back — apps/metrics/handback.py;
* the readers of the broker and of INFO — workers/collect.py.

Nothing in a tick may end the loop: Redis or the database going away turns
into "unreachable" entries in the snapshot, a capped backoff and, once they
answer again, recovery without a restart (apps/metrics/effects.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, Iterable, Mapping

from django.conf import settings

from apps.metrics import history, memory
from apps.metrics import snapshot as snapshots
from apps.metrics.assess import Assessor, Change
from apps.metrics.effects import Effects
from apps.metrics.handback import HandBack
from apps.metrics.evaluate import CLEAR_TICKS, Thresholds
from apps.metrics.leadership import Leadership, Renewer, leader_ttl
from apps.metrics.models import QueueThreshold, cMetricSettings, iso
from apps.metrics.outbox import Outbox
from apps.metrics.snapshot import DatabaseStatus, Snapshot
from config.redis_layout import Layout
from workers.collect import BrokerReading, Collection, Collector
from workers.locks import clean_dead_locks
from workers.queues import QUEUE_NAMES

logger = logging.getLogger("flowwatch.controller")

MAX_BACKOFF = 30.0
# 2 ** 16 times any interval is far past MAX_BACKOFF; without a cap,
# 2 ** failures overflows a float after ~1024 failing ticks.
MAX_BACKOFF_EXPONENT = 16
STALL_TICKS = 6
WORKER_FORGET_SECONDS = 3600


class Controller:
    def __init__(self, *, layout: Layout | None = None, transport_options: Mapping[str, Any] | None = None,
                 queues: Iterable[str] = QUEUE_NAMES, interval: float | None = None,
                 clear_ticks: int = CLEAR_TICKS, stall_ticks: int = STALL_TICKS,
                 max_backoff: float = MAX_BACKOFF, publish: bool = True, send_tasks: bool = True) -> None:
        self.layout = layout or settings.REDIS_LAYOUT
        if transport_options is None:
            transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        self.collector = Collector(self.layout, transport_options, queues)
        self.keys = self.collector.keys
        self.interval = interval = settings.METRICS_CONTROLLER_INTERVAL if interval is None else interval
        self.max_backoff = max(max_backoff, interval)
        self.publish_enabled = publish
        self.send_tasks = send_tasks
        # A short TTL, so a killed leader is replaced within three intervals;
        # while the loop runs, the renewer keeps it across backoff sleeps.
        self.leader = Leadership(self.collector.broker_client, self.keys, ttl=leader_ttl(interval))
        self.renewer: Renewer | None = None
        self.effects = Effects()
        self.assessor = Assessor(self.layout, self.collector.servers, self.collector.queues, interval=interval,
                                 clear_ticks=clear_ticks, stall_ticks=stall_ticks)
        self.outbox = Outbox(self.effects)
        self.handback = HandBack(self.collector.broker_client, self.keys)
        self.thresholds = Thresholds()
        self.state_loaded = False
        self.stopping = threading.Event()
        self.failures = 0  # consecutive ticks that failed or found the broker unreachable
        self.tick_failed = False  # the last tick raised
        self.ticks = 0
        self.last_snapshot: Snapshot | None = None

    # -- the loop -------------------------------------------------------------
    def run(self, once: bool = False) -> None:
        previous_handlers = self._install_signal_handlers()
        logger.info("controller started: interval %.1f s, %d queues, %d Redis servers",
                    self.interval, len(self.collector.queues), len(self.collector.servers))
        self.renewer = Renewer(self.leader, stuck_after=self.max_backoff + 2 * self.interval)
        self.renewer.start()
        try:
            while not self.stopping.is_set():
                self.renewer.alive()
                self.safe_tick()
                if once:
                    break
                self.stopping.wait(self.next_delay())
        finally:
            self.renewer.stop()
            self.leader.release()
            self.collector.close()
            snapshots.close_group_publisher()
            for signum, handler in previous_handlers.items():
                if handler is not None:  # None: installed outside Python, nothing to put back
                    signal.signal(signum, handler)
            logger.info("controller stopped")

    def safe_tick(self) -> bool:
        """A tick that never raises: a surprise is logged and backed off from."""
        try:
            acted = self.tick()
        except Exception:
            logger.exception("controller tick failed; backing off")
            self.failures += 1
            self.tick_failed = True
            return False
        self.tick_failed = False
        return acted

    def next_delay(self) -> float:
        """The interval; doubled per failing tick, capped, while the broker is away or ticks fail."""
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** min(self.failures, MAX_BACKOFF_EXPONENT), self.max_backoff)

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGTERM and SIGINT stop the loop; returns the handlers to put back after it."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        for signum in previous:
            signal.signal(signum, self.stop)
        return previous

    def tick(self) -> bool:
        """One pass; True when this controller acted (it is the leader)."""
        self.ticks += 1
        if not self.claim_leadership():
            self.failures = 0
            return False
        self.load_state()
        self.load_thresholds()
        collection = self.collector.collect()
        snapshot, changes = self.evaluate(collection)
        if collection.broker is not None:
            changes += self.handback.run()  # work of dead workers back to its queues
        self.outbox.record(changes)
        snapshot["events"] = self.outbox.events()
        self.publish(snapshot)
        self.roll_up(snapshot)
        broker = collection.broker
        if broker is not None and self.send_tasks:
            self.outbox.send()
        self.clean_locks(broker)
        self.last_snapshot = snapshot
        # Back off only while the broker — what the loop is about — is away.
        # Another role that does not answer costs one connect timeout per tick
        # (read in parallel with the broker) and is retried every tick.
        self.failures = 0 if broker is not None else self.failures + 1
        return True

    def look(self) -> Snapshot:
        """One collection evaluated against fresh thresholds: no lock, no events, no publishing."""
        try:
            self.load_thresholds()
            snapshot, _changes = self.evaluate(self.collector.collect())
            snapshot["events"] = self.effects.db(memory.latest_events, [])
            snapshot["database"] = DatabaseStatus(**self.effects.database)
            return snapshot
        finally:
            self.collector.close()

    # -- steps ----------------------------------------------------------------
    def claim_leadership(self) -> bool:
        if not self.leader.claim():
            if self.ticks == 1:
                logger.info("standing by: another controller holds the leader lock (%s)", self.leader.holder)
            return False
        if self.leader.memory_stale:
            self.forget_memory()
        return True

    def forget_memory(self) -> None:
        """Leadership came back: another controller may have led meanwhile and
        recorded status changes and restarts. Statuses, run_ids and the last
        depth are read again from the database (load_state); the
        evicted/rejected baselines and the stall counts start afresh."""
        self.state_loaded = False
        self.assessor.forget()

    def load_state(self) -> None:
        """What the database remembers, at start and whenever leadership returns.
        Until the database answers, the memory in this process stands."""
        if self.state_loaded:
            return
        found = self.effects.db(memory.read, None)
        if found is None:
            return
        memory.overlay(found, self.outbox.unsaved)
        self.outbox.restore(found.events)
        self.assessor.restore(found.statuses, found.reachable, found.servers, found.depth)
        self.state_loaded = True

    def load_thresholds(self) -> None:
        """Fresh thresholds each tick; the last good ones while the database is away."""
        loaded = self.effects.db(
            lambda: Thresholds.from_models(cMetricSettings.load(), list(QueueThreshold.objects.all())), None)
        if loaded is not None:
            self.thresholds = loaded

    def evaluate(self, collection: Collection) -> tuple[Snapshot, list[Change]]:
        now = time.time()
        found = self.assessor.assess(collection, self.thresholds, now)
        for server, run_id, restarted_at in found.run_ids:
            self.effects.db(lambda: memory.remember_server(server, run_id, restarted_at), None)
        if found.restarted:
            self.outbox.pending_rebuild = True
        snapshot = Snapshot(
            collected_at=iso(now), duration_ms=collection.duration_ms, queues=found.queues,
            unacked=found.unacked, redis=found.redis, workers=found.workers, thresholds=self.thresholds.as_dict(),
            events=[], database=DatabaseStatus(**self.effects.database),
            controller={"host": socket.gethostname(), "pid": os.getpid(), "leader": self.leader.held,
                        "interval": self.interval},
        )
        return snapshot, found.changes

    def publish(self, snapshot: Snapshot) -> None:
        """To the cache and the Channels group; a role this tick found unreachable
        is skipped (trying would only add its timeouts to the tick)."""
        if not self.publish_enabled:
            return
        up = {r["role"]: r["reachable"] for r in snapshot["redis"]}
        encoded = snapshots.encode(snapshot)  # once per tick, for the cache and every socket
        if up.get("cache", True):
            self.effects.attempt("cache", lambda: snapshots.publish_to_cache(encoded))
        if up.get("channels", True):
            self.effects.attempt("channels", lambda: snapshots.publish_to_group(encoded))

    def roll_up(self, snapshot: Snapshot) -> None:
        minute = datetime.now(dt_timezone.utc).replace(second=0, microsecond=0)
        self.effects.db(lambda: history.roll_up(minute, snapshot), None)

    def clean_locks(self, broker: BrokerReading | None) -> None:
        """Delete locks of dead workers and forget long-silent workers, with the
        heartbeats this tick's collection read (no second HGETALL)."""
        if broker is None:
            return
        client = self.collector.broker_client
        deleted = self.effects.attempt("lock cleaning", lambda: clean_dead_locks(client, self.keys, broker.workers))
        for name in deleted if isinstance(deleted, list) else []:
            logger.warning("deleted lock %s: its owner is not alive (heartbeat expired or another instance)", name)
        self.effects.attempt("worker pruning", lambda: self._forget_old_workers(broker))

    def _forget_old_workers(self, broker: BrokerReading) -> None:
        """Drop heartbeat entries silent for WORKER_FORGET_SECONDS, and unreadable ones."""
        now = time.time()
        stale = [name for name, beat in broker.workers.items() if now - float(beat["ts"]) > WORKER_FORGET_SECONDS]
        stale += broker.unreadable_workers
        if stale:
            self.collector.broker_client.hdel(self.keys.workers, *stale)
