"""deploy/grafana/flowwatch.json: importable, every query parses with promtool and uses exported names."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from tests.prometheus_support import PROMTOOL, exported_names, names_in

DASHBOARD = ROOT / "deploy/grafana/flowwatch.json"
# Grafana's own variables, replaced by what Grafana would put there before promtool reads the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h", "$queue": ".*"}
# What an operator opens the dashboard for (the panels' titles).
REQUIRED_PANELS = {"Queue depth", "Oldest message age", "Processed per second", "Consumers per queue",
                   "Unacked messages", "Workers alive", "Redis memory", "Redis clients",
                   "Evictions and rejected connections", "Snapshot age and collection time", "Events", "Alerts sent"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every annotation."""
    found = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in panels() for t in p["targets"]]
    found += [(f"annotation {a['name']!r}", a["expr"]) for a in dashboard()["annotations"]["list"]]
    return found


def substituted(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def test_the_dashboard_is_importable_with_a_prometheus_data_source():
    board = dashboard()
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["uid"] == "flowwatch" and board["title"] == "Flowwatch"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"] and panel["description"], panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_no_two_panels_overlap():
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_it_has_a_panel_for_each_question_and_events_as_annotations():
    assert REQUIRED_PANELS <= {p["title"] for p in panels()}
    annotations = {a["name"]: a for a in dashboard()["annotations"]["list"]}
    assert "flowwatch_events_total" in annotations["Events"]["expr"]


def test_every_query_parses_with_promtool(tmp_path):
    """promtool 2.42 has no "promql" command: each query becomes a recording rule for `check rules`."""
    rules = [{"record": f"flowwatch_dashboard:query_{n}", "expr": substituted(expr)}
             for n, (_where, expr) in enumerate(queries())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_a_broken_query_is_caught_by_that_check(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [
        {"record": "flowwatch_dashboard:broken", "expr": "sum by (queue) (rate(flowwatch_queue_depth[1m])"}]}]}))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


@pytest.mark.django_db
def test_every_query_uses_only_names_that_metrics_exports(clean_redis):
    exported = exported_names()
    for where, expr in queries():
        used = names_in(expr)
        assert used and used <= exported, (where, used - exported)
    variable = dashboard()["templating"]["list"][0]["definition"]
    assert re.search(r"label_values\((\w+), queue\)", variable).group(1) in exported
