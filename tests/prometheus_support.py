"""Helpers shared by the Prometheus and Grafana tests (this module holds no test)."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import wait_http_ok

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


def prometheus_config(target: str, token_file: Path, wrong_token_file: Path, rules: Path) -> dict:
    """A Prometheus scraping ``target`` every second twice: with the right token and with a wrong one."""
    def job(name: str, credentials: Path) -> dict:
        return {"job_name": name, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}],
                "authorization": {"type": "Bearer", "credentials_file": str(credentials)}}

    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s",
                   "external_labels": {"flowwatch_url": f"http://{target}"}},
        "rule_files": [str(rules)],
        "scrape_configs": [job("flowwatch", token_file), job("flowwatch-wrong-token", wrong_token_file)],
    }


class PrometheusServer:
    """Debian's prometheus on a free loopback port, its config and data in ``home``."""

    def __init__(self, home: Path, config: dict) -> None:
        from tests.servers import free_port
        from tests.test_browser_support import Process

        home.mkdir(parents=True, exist_ok=True)
        config_file = home / "prometheus.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process("prometheus", [
            PROMETHEUS, f"--config.file={config_file}", f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"], dict(os.environ))
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        wait_http_ok(self.url + "/-/ready", self.process.alive, self.process.tail, "prometheus", timeout, 0.2)

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def vector(self, expr: str, at: float | None = None) -> dict[str, float]:
        """An instant query as {queue or role or "": value}."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        return {(s["metric"].get("queue") or s["metric"].get("role") or ""): float(s["value"][1])
                for s in self.api("query", **params)["result"]}

    def targets(self) -> dict[str, dict]:
        return {t["labels"]["job"]: t for t in self.api("targets")["activeTargets"]}

    def stop(self) -> None:
        self.process.stop()
