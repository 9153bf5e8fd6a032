"""The snapshot contract of docs/metrics.md, field by field, against what produces and fakes it.

Three sources must agree with the TypedDicts of apps/metrics/snapshot.py:
the docs' own example, a real controller tick (as JSON, the way readers get
it), and the hand-made snapshots the page's tests run on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.metrics.controller import Controller
from apps.metrics.snapshot import QueueEntry, Snapshot
from tests.support.contract import contract_errors
from tests.test_dashboard_snapshots import make_snapshot
from tests.test_metrics_support import fake_worker, fill

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


def documented_example() -> dict:
    text = DOCS.read_text()
    section = text[text.index("## The snapshot"):]
    start = section.index("```json") + len("```json")
    return json.loads(section[start:section.index("```", start)])


def keys_by_level(snapshot: dict) -> dict[str, set[str]]:
    first = {name: snapshot[name][0] for name in ("queues", "redis", "workers", "events") if snapshot[name]}
    found = {"snapshot": set(snapshot), **{name: set(entry) for name, entry in first.items()}}
    for name in ("unacked", "database", "controller"):
        found[name] = set(snapshot[name])
    found["persistence"] = set(first["redis"]["persistence"])
    return found


def test_the_documented_example_is_the_contract_the_typeddicts_spell():
    assert contract_errors(documented_example(), Snapshot) == []


@pytest.mark.django_db
def test_a_real_tick_publishes_exactly_the_documented_fields_with_their_types(clean_redis):
    client = clean_redis.client(0)
    fake_worker(client, queues=("ai",))  # a worker, and events for the queues nobody consumes
    fill(client, "ai", 3)
    controller = Controller(publish=False, send_tasks=False)
    try:
        assert controller.tick()
        snapshot = json.loads(json.dumps(controller.last_snapshot))  # as /api/metrics/ and the page get it
    finally:
        controller.leader.release()
        controller.collector.close()
    assert contract_errors(snapshot, Snapshot) == []
    assert keys_by_level(snapshot) == keys_by_level(documented_example())


def test_the_hand_made_snapshot_of_the_page_tests_has_every_documented_field():
    made = make_snapshot({"ai": 5}, statuses={"ai": "warn"})
    assert contract_errors(made, Snapshot) == []
    made["events"] = documented_example()["events"]
    assert keys_by_level(made) == keys_by_level(documented_example())


def test_the_contract_check_notices_a_missing_or_mistyped_field():
    entry = make_snapshot()["queues"][0]
    del entry["by_priority"]
    entry["depth"] = "12"
    assert contract_errors(entry, QueueEntry, "queue") == [
        "queue.by_priority: missing", "queue.depth: '12' is not int"]
