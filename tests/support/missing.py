"""A missing dependency skips a test on a developer's machine and fails it in CI.

CI sets ``CI=true``: there a skipped PostgreSQL, TLS or browser test would
turn a missing system package into a green run that tested nothing.  Every
test that depends on something the suite cannot install itself calls
:func:`require` instead of ``pytest.skip``.
"""

from __future__ import annotations

import os

import pytest

TRUE = ("1", "true", "yes", "on")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in TRUE


def require(available: bool, what: str) -> None:
    """Skip (fail under CI=true) with ``what`` is missing, unless ``available``."""
    if available:
        return
    message = f"{what} is missing (scripts/test installs it)"
    if in_ci():
        pytest.fail(f"{message}; CI=true: a missing dependency fails the run instead of skipping", pytrace=False)
    pytest.skip(message)
