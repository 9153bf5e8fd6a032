"""A worker's main process and the controller, killed with SIGKILL on the real stack."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from tests.faults.conftest import DRILL_GROUP, INTERVAL, report, sigkill, wait_until


def handed_back(stack, task_id: str) -> dict | None:
    snapshot = stack.snapshot() or {"events": []}
    return next((e for e in snapshot["events"]
                 if e["kind"] == "handed_back" and e["details"].get("task_id") == task_id), None)


def test_a_task_of_a_killed_worker_main_process_is_handed_back_and_run_once(stack):
    token = uuid.uuid4().hex
    program = f"workers:worker-{DRILL_GROUP}"
    task_id = stack.send("workers.probe.drill", token, 6.0)
    wait_until(lambda: stack.drill_notes(token) == ["start"], timeout=60, what="the drill started")
    sigkill(stack.pid(program))
    killed_at, killed_wall = time.monotonic(), time.time()
    # Within two controller intervals (the holdings expire in 4 s, then the next tick); a margin on top.
    event = wait_until(lambda: handed_back(stack, task_id), timeout=2 * INTERVAL + 10, interval=0.5,
                       what="a handed_back event for the task")
    seconds = datetime.fromisoformat(event["at"]).timestamp() - killed_wall
    wait_until(lambda: stack.drill_notes(token)[-1:] == ["done"], timeout=90, what="the task ran again")
    done_at = time.monotonic() - killed_at
    time.sleep(max(0.0, 8.0 - done_at))  # past the first run's own end, had it survived
    notes = stack.drill_notes(token)
    report("worker main process SIGKILL", handed_back_s=f"{seconds:.1f}", finished_s=f"{done_at:.1f}",
           runs_started=notes.count("start"), runs_finished=notes.count("done"), tasks_lost=0,
           tasks_repeated=notes.count("done") - 1)
    assert notes == ["start", "start", "done"]


def test_a_killed_controller_is_replaced_within_three_intervals(stack):
    before = stack.snapshot()
    sigkill(stack.pid("controller"))
    killed_at = time.monotonic()
    fresh = wait_until(lambda: (s := stack.snapshot()) and s["controller"]["pid"] != before["controller"]["pid"]
                       and s["collected_at"] > before["collected_at"] and s,
                       timeout=3 * INTERVAL + 5, interval=0.2, what="a snapshot from a new leader")
    seconds = time.monotonic() - killed_at
    report("controller SIGKILL", new_leader_snapshot_s=f"{seconds:.1f}", old_pid=before["controller"]["pid"],
           new_pid=fresh["controller"]["pid"])
    assert fresh["controller"]["leader"] is True
