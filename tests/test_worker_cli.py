"""workers/cli.py: Celery's command line without the repl and the command plugins.

Real workers started through it are everywhere in the suite (tests/conftest.py's
CeleryWorker, the stack tests through supervisord); these check what it leaves out.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, subprocess_env
from tests.servers import die_with_parent, stop_group

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


def test_it_names_the_sub_command_after_celerys_own_options():
    from workers.cli import subcommand

    assert subcommand(["-A", "config", "beat", "--schedule", "worker"]) == "beat"
    assert subcommand(["--app", "config", "-b", "redis://x", "--loglevel", "worker"]) == "worker"
    assert subcommand(["-A", "config", "--skip-checks", "inspect", "ping"]) == "inspect"
    assert subcommand(["--app=config", "beat"]) == "beat"
    assert subcommand(["-A", "config"]) is None


@pytest.mark.django_db(transaction=True)  # the worker's periodic_run reads the tenants
def test_beat_sends_the_schedule_by_name_without_djangos_app_registry_and_a_worker_runs_it(
        clean_redis, celery_worker, tmp_path):
    """Beat started as supervisord starts it imports no model and no task module
    (a sitecustomize writes the modules it holds when it stops), and what it
    sends still reaches its queue and is run by a real worker."""
    log, modules = tmp_path / "beat.log", tmp_path / "modules.json"
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(modules)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n")
    command = [sys.executable, "-m", "workers.cli", "-A", "config", "beat",
               "--schedule", str(tmp_path / "schedule"), "--loglevel", "INFO"]
    env = subprocess_env(LOG_LEVEL="INFO")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    beat = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=die_with_parent)
    before = len(celery_worker.log.read_text())  # the worker's log is appended to by every test
    ran = re.compile(r"Task apps\.tenants\.tasks\.periodic_run\[[0-9a-f-]+\] succeeded")
    try:
        deadline = time.monotonic() + 60  # the job runs every 15 s, the first time 15 s after the start
        while not ran.search(celery_worker.log.read_text()[before:]):
            assert beat.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (log.read_text()[-2000:], celery_worker.log.read_text()[-2000:])
            time.sleep(0.2)
    finally:
        stop_group(beat, timeout=30)
    held = set(json.loads(modules.read_text()))
    assert {"celery.beat", "config.celery", "workers.routing"} <= held  # the list is beat's own
    assert not {name for name in held if name.startswith(("apps", "django.db.models", "django.contrib"))}
    text = log.read_text()
    assert "Scheduler: Sending due task tenants-periodic-run (apps.tenants.tasks.periodic_run)" in text
    assert " INFO celery.beat " in text  # the project's log format (settings.LOGGING), as before
