"""``manage.py queue_metrics [--json]``: one collection, printed, without the loop.

It publishes nothing and records no event: it is a look, not a tick.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from apps.metrics.controller import Controller


class Command(BaseCommand):
    help = "Print one collection of queue depths and Redis figures (no publishing, no events)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the snapshot as JSON")

    def handle(self, *args, as_json: bool, **options) -> None:
        snapshot = Controller(publish=False, send_tasks=False).look()
        if as_json:
            self.stdout.write(json.dumps(snapshot, indent=2))
            return
        self.stdout.write(f"collected at {snapshot['collected_at']} in {snapshot['duration_ms']:.1f} ms")
        self.stdout.write(f"{'queue':<32} {'depth':>8} {'oldest s':>9} {'cons':>4} {'/min':>7}  status")
        for q in snapshot["queues"]:
            age = "-" if q["oldest_age_seconds"] is None else f"{q['oldest_age_seconds']:.1f}"
            depth = "?" if q["depth"] is None else q["depth"]
            rate = "-" if q["processed_per_minute"] is None else f"{q['processed_per_minute']:.1f}"
            reasons = f"  ({'; '.join(q['reasons'])})" if q["reasons"] else ""
            self.stdout.write(f"{q['name']:<32} {depth:>8} {age:>9} {q['consumers']:>4} {rate:>7}  "
                              f"{q['status']}{reasons}")
        unacked = snapshot["unacked"]
        self.stdout.write(f"unacked: {unacked['count']}")
        for r in snapshot["redis"]:
            where = f"{r['host']}:{r['port']}/{r['db']}"
            memory = "-" if r["memory_percent"] is None else f"{r['memory_percent']:.1f}%"
            reasons = f"  ({'; '.join(r['reasons'])})" if r["reasons"] else ""
            self.stdout.write(f"redis {r['role']:<9} {where:<24} memory {memory:>7}  {r['status']}{reasons}")
