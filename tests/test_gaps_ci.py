"""In CI (CI=true) a missing dependency fails the run; elsewhere it skips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.missing import require

TESTS = Path(__file__).resolve().parent


def test_a_missing_dependency_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Debian's postgresql package is missing"):
        require(False, "Debian's postgresql package")


def test_a_missing_dependency_skips_on_a_developer_machine(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server is missing"):
        require(False, "redis-server")


def test_a_present_dependency_neither_skips_nor_fails(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require(True, "chromium") is None


def test_no_test_skips_by_itself_around_the_ci_rule():
    skipping = re.compile(r"pytest\.skip\(|pytest\.importorskip\(|mark\.skip(if)?\b")
    offenders = [str(path.relative_to(TESTS)) for path in TESTS.rglob("*.py")
                 if path.name not in ("missing.py", Path(__file__).name) and skipping.search(path.read_text())]
    assert offenders == []
