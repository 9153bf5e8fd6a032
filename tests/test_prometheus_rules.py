"""deploy/prometheus/flowwatch-rules.yml: valid, unit-tested by promtool, linked to docs/recovery.md."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from tests.prometheus_support import PROMTOOL, exported_names, names_in

RULES = ROOT / "deploy/prometheus/flowwatch-rules.yml"
RULE_TESTS = ROOT / "tests/prometheus/rules_test.yml"
RECOVERY = ROOT / "docs/recovery.md"
# What the rules must cover: the controller's statuses, and the controller itself.
REQUIRED = {
    "FlowwatchQueueDepthWarn", "FlowwatchQueueDepthCritical", "FlowwatchQueueOldMessage",
    "FlowwatchQueueNoConsumer", "FlowwatchQueueStalled", "FlowwatchRedisDown", "FlowwatchRedisMemoryWarn",
    "FlowwatchRedisMemoryCritical", "FlowwatchRedisEvictingKeys", "FlowwatchRedisRejectingConnections",
    "FlowwatchBrokerRestarted", "FlowwatchSnapshotStale", "FlowwatchSnapshotMissing", "FlowwatchWorkersMissing",
}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def recovery_anchors() -> set[str]:
    """The ids of the in-app docs page /docs/recovery/, as it renders."""
    from apps.dashboard import docs

    return set(re.findall(r'<h2 id="([^"]+)"', docs.render("recovery").html))


def test_promtool_accepts_the_rules():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_behaves_as_its_promtool_unit_test_says():
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_rules_cover_every_controller_status_and_the_controller_itself():
    assert {rule["alert"] for rule in alert_rules()} == REQUIRED


def test_every_rule_has_a_summary_and_a_runbook_in_docs_recovery():
    anchors = recovery_anchors()
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        link = re.fullmatch(r"\{\{ \$externalLabels\.flowwatch_url \}\}/docs/recovery/#([a-z0-9-]+)",
                            annotations["runbook_url"])
        assert link and link.group(1) in anchors, (rule["alert"], annotations["runbook_url"])
        assert rule["alert"] in RECOVERY.read_text(), f"{rule['alert']} is not named in docs/recovery.md"


@pytest.mark.django_db
def test_the_rules_use_only_names_that_metrics_exports(clean_redis):
    used = set().union(*(names_in(rule["expr"]) for rule in alert_rules()))
    assert used and used <= exported_names(), used - exported_names()


def test_every_rule_has_a_promtool_unit_test_in_which_it_fires():
    """A rule added without a case in rules_test.yml would pass `promtool test rules` untested."""
    cases = [case for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in group.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    assert {rule["alert"] for rule in alert_rules()} <= fired, {rule["alert"] for rule in alert_rules()} - fired
