"""The one-way dependencies (apps/ -> workers/ -> config/redis_layout.py), checked by import-linter.

The contracts are in .importlinter; the suite runs ``lint-imports`` on the
project, and on a copy of it with one forbidden import added, to show that
each contract can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})


def copy_of_the_project(into: Path) -> Path:
    for package in ("apps", "workers", "config"):
        shutil.copytree(ROOT / package, into / package, ignore=shutil.ignore_patterns("__pycache__"))
    (into / "tests").mkdir()
    for name in ("__init__.py", "import_contracts.py"):
        shutil.copy(ROOT / "tests" / name, into / "tests" / name)
    shutil.copy(ROOT / ".importlinter", into / ".importlinter")
    return into


def test_the_project_keeps_every_layering_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "reported"), [
    ("workers/locks.py", "from apps.metrics import models", "workers.locks -> apps.metrics"),
    ("workers/locks.py", "from django.conf import settings", "workers.locks -> django"),
    ("workers/queues.py", "from config import settings", "workers.queues -> config.settings"),
    ("config/redis_layout.py", "import redis", "config.redis_layout imports redis"),
    ("config/redis_layout.py", "from workers import queues", "config.redis_layout imports workers.queues"),
])
def test_a_forbidden_import_breaks_a_contract_naming_it(tmp_path, module, line, reported):
    project = copy_of_the_project(tmp_path)
    path = project / module
    text = path.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest)
    result = lint_imports(project)
    assert result.returncode == 1, result.stdout
    assert reported in " ".join(result.stdout.split())
