"""workers/cli.py: Celery's command line without the repl and the command plugins.

Real workers started through it are everywhere in the suite (tests/conftest.py's
CeleryWorker, the stack tests through supervisord); these check what it leaves out.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, subprocess_env

PROBE = """
import json, sys
from workers.cli import celery_group
group = celery_group()
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("prompt_toolkit", "flower"))
print(json.dumps({"commands": sorted(group.commands), "heavy": heavy,
                  "amqp": sorted(group.commands["amqp"].commands)}))
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)


def test_the_group_has_celerys_own_commands_without_repl_plugins_or_their_imports():
    done = run("-c", PROBE)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"worker", "beat", "inspect", "control", "purge", "amqp"} <= set(found["commands"])
    assert "flower" not in found["commands"]  # a plugin, where Flower is installed
    assert "repl" not in found["amqp"] and "queue.declare" in found["amqp"]
    assert found["heavy"] == []


def test_it_parses_worker_arguments_as_celery_does():
    done = run("-m", "workers.cli", "-A", "config", "worker", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: celery worker" in done.stdout and "--pool" in done.stdout
