"""docs/queues.md stays true to the queue table."""

from pathlib import Path

from workers.queues import FAMILIES, worker_groups

DOC = (Path(__file__).resolve().parent.parent / "docs" / "queues.md").read_text()


def test_the_queue_page_lists_every_family_with_its_lane_and_group():
    for family in FAMILIES:
        assert f"| `{family.queue}` | {family.lane} | `{family.group}` |" in DOC, family.queue


def test_the_queue_page_lists_every_worker_group():
    for group, queues in worker_groups().items():
        assert f"| `worker-{group}` | " + ", ".join(f"`{q}`" for q in queues) + " |" in DOC, group
