"""Helpers shared by the Prometheus and Grafana tests (this module holds no test)."""

from __future__ import annotations

import re
import shutil

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# A Flowwatch metric name inside a PromQL expression.
NAME = re.compile(r"\bflowwatch_[a-z0-9_]+\b")


def names_in(expr: str) -> set[str]:
    return set(NAME.findall(expr))


def exported_names() -> set[str]:
    """Every sample name /metrics declares (its "# TYPE" lines), after one real controller tick.

    Families without a sample yet (no eviction counter before the controller
    carries it, no event of a kind) are declared all the same.
    """
    from apps.metrics import prometheus
    from apps.metrics.controller import Controller

    controller = Controller(send_tasks=False)
    assert controller.tick()
    controller.leader.release()
    text = prometheus.render(controller.last_snapshot, now=0.0, counts=prometheus.read_counts())[0].decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))
