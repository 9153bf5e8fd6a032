"""``python -m workers.cli -A config worker|beat ...``: Celery's own command line, lighter.

The same command as ``python -m celery``: the same arguments, the same group
and sub-commands, the same worker and beat.  What it leaves out are two
imports that a worker or beat never uses and that cost about 12 MiB of
private memory in each of them (docs/performance.md, "Memory"):

- click-repl, and prompt_toolkit with it, which ``celery amqp`` imports for
  its interactive ``repl`` sub-command (here ``celery amqp`` has no ``repl``);
- the ``celery.commands`` plugins of whatever is installed beside Celery
  (Flower's ``celery flower`` where bench/requirements.txt is installed),
  which Celery's command group imports at start to list them.

supervisord runs beat and every worker program through it.  Operators keep
``python -m celery`` for everything else (inspect, purge, ``amqp repl``).

It also tells the app when it runs beat (``FW_BEAT_ONLY=1`` in its own
environment): beat only sends the schedule's tasks, by name, so
``config/celery.py`` then leaves out Django's app registry and the task
modules, about 20 MiB of the process.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import types
from typing import Any, Callable

PLUGIN_GROUP = "celery.commands"
BEAT_ONLY = "FW_BEAT_ONLY"  # read by config/celery.py
# Celery's options before the sub-command that take a value (``-A config``).
VALUE_OPTIONS = frozenset(("-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir"))


def subcommand(argv: list[str]) -> str | None:
    """The sub-command of a ``celery`` command line (``beat`` in ``-A config beat -l info``)."""
    args = iter(argv)
    for arg in args:
        if arg in VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _without_repl() -> None:
    """click-repl as ``celery.bin.amqp`` uses it: ``register_repl`` adds nothing."""
    if "click_repl" not in sys.modules:
        stub = types.ModuleType("click_repl", "Stand-in: no interactive repl (workers/cli.py).")
        stub.register_repl = lambda group, name="repl": None  # type: ignore[attr-defined]
        sys.modules["click_repl"] = stub


def celery_group() -> Callable[..., Any]:
    """Celery's ``celery`` click group, imported with no command plugin."""
    real = importlib.metadata.entry_points

    def no_plugins(**params: Any) -> Any:
        if params.get("group") == PLUGIN_GROUP:
            return importlib.metadata.EntryPoints(())
        return real(**params)

    _without_repl()
    importlib.metadata.entry_points = no_plugins  # read once, when celery.bin.celery is imported
    try:
        from celery.bin.celery import celery
    finally:
        importlib.metadata.entry_points = real
    return celery


def main() -> None:
    """What ``celery.__main__.main`` does, with :func:`celery_group`."""
    from celery import maybe_patch_concurrency

    if "multi" not in sys.argv:
        maybe_patch_concurrency()
    if subcommand(sys.argv[1:]) == "beat":
        os.environ[BEAT_ONLY] = "1"
    sys.exit(celery_group()(prog_name="celery", auto_envvar_prefix="CELERY"))


if __name__ == "__main__":
    main()
