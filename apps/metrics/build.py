"""The version /metrics reports as flowwatch_build_info{version}.

FLOWWATCH_VERSION when the deployment sets it (e.g. a release tag), else the
commit of the checkout this runs from, else "unknown".
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from config.env import value

ROOT = Path(__file__).resolve().parent.parent.parent


@functools.lru_cache(maxsize=1)
def version() -> str:
    return str(value("FLOWWATCH_VERSION") or "").strip() or _git_commit() or "unknown"


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
