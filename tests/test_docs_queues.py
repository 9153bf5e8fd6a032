"""docs/queues.md stays true to the queue table."""

import re
from pathlib import Path

from workers.queues import BY_GROUP, FAMILIES, QUEUE_NAMES, worker_groups

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "queues.md").read_text()


def test_the_queue_page_lists_every_family_with_its_lane_and_group():
    for family in FAMILIES:
        assert f"| `{family.queue}` | {family.lane} | `{family.group}` |" in DOC, family.queue


def test_the_queue_page_lists_every_worker_group_with_its_pool():
    for group, queues in worker_groups().items():
        row = f"| `worker-{group}` | " + ", ".join(f"`{q}`" for q in queues) + f" | {BY_GROUP[group].pool} |"
        assert row in DOC, group


# --- which queues have work, and beat's schedule ---------------------------------------------------

NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                "fifteen sixteen seventeen eighteen nineteen twenty").split()


def routed_tasks() -> dict[str, set[str]]:
    """Queue -> the tasks the Celery app sends there when the caller names no queue."""
    from config.celery import app

    app.loader.import_default_modules()
    found: dict[str, set[str]] = {}
    for name in app.tasks:
        if not name.startswith("celery."):
            found.setdefault(app.amqp.router.route({}, name)["queue"].name, set()).add(name)
    return found


def tasks_column() -> dict[str, str]:
    """Queue -> the text of its *tasks* cell in the families table."""
    table = DOC.split("## The families", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    return {cells[1].strip().strip("`"): cells[4].strip() for cells in rows}


def test_a_queue_without_a_routed_task_is_marked_reserved_and_only_such_a_queue():
    routed, column = routed_tasks(), tasks_column()
    assert set(column) == set(QUEUE_NAMES)
    for queue in QUEUE_NAMES:
        expected = ", ".join(f"`{task}`" for task in sorted(routed.get(queue, ()))) or "reserved"
        assert column[queue] == expected, queue


def test_the_periodic_jobs_table_is_beat_s_schedule_with_each_job_s_queue():
    from django.conf import settings

    routed = {task: queue for queue, tasks in routed_tasks().items() for task in tasks}
    for name, task, seconds in settings.BEAT_TABLE:
        every = (f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min" if seconds % 60 == 0
                 else f"{seconds} s")
        assert f"| `{name}` | `{task}` | {every} | `{routed[task]}` |" in DOC, name


def test_no_page_counts_the_queues_by_hand():
    count = len(QUEUE_NAMES)
    spelled = rf"(?:{count}|{NUMBER_WORDS[count]})" if count < len(NUMBER_WORDS) else str(count)
    pattern = re.compile(rf"\b{spelled}\b(?:\s+[\w-]+){{0,2}}\s+queues?\b", re.IGNORECASE)
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [f"{page.name}: {match.group(0)}" for page in pages for match in pattern.finditer(page.read_text())]
    assert found == []
