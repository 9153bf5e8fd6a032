#!/usr/bin/env python3
"""Start Flowwatch: resolve and validate the environment, prepare VAR_DIR,
migrate, make sure a superadmin exists, then exec supervisord in the foreground.

    python boot.py check [--json]     print the resolved layout; exit 2 on problems
    python boot.py up                 (the default) start the stack for BOOT_ROLES
    python boot.py env-docs [--check] write (or check) the variable tables of docs/configuration.md

Standard library only: this file and the ``bootstrap`` package it drives run
before requirements are installed, and never hide a configuration problem
behind an ImportError.  docs/architecture.md ("Processes") describes what
runs after the hand-over to supervisord.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Mapping

BASE_DIR = Path(__file__).resolve().parent
if str(BASE_DIR) not in sys.path:  # `python /path/to/boot.py` from another folder
    sys.path.insert(0, str(BASE_DIR))

from bootstrap import envdoc  # noqa: E402
from bootstrap.plan import BOOT_ONLY_SECRETS, ROLE_NAMES, VARIABLES, Plan, resolve_plan  # noqa: E402,F401
from bootstrap.report import problem_lines, say, summary_lines, warning_lines  # noqa: E402
from bootstrap.steps import (SIMULATOR_HOST, admin_password, ensure_superadmin, prepare_var_dir,  # noqa: E402,F401
                             register_simulator, run_step, runtime_problems)
from bootstrap.supervisor import (  # noqa: E402,F401
    SUPERVISORD_CONF, exec_supervisord, supervisor_env, write_redis_conf, write_worker_programs,
)
from config.env import secret_key  # noqa: E402

EXIT_INVALID = 2  # the environment is unusable: nothing was started
EXIT_FAILED = 1  # a start step (migrate, superadmin) failed


def cmd_check(as_json: bool, env: Mapping[str, str] | None = None) -> int:
    plan = resolve_plan(env)
    if as_json:
        print(json.dumps(plan.as_json(), indent=2))
    else:
        say(summary_lines(plan) + warning_lines(plan))
    say(problem_lines(plan), sys.stderr)
    return 0 if plan.ok else EXIT_INVALID


def cmd_up(env: Mapping[str, str] | None = None) -> int:
    """Validate, prepare, migrate, ensure the superadmin, then exec supervisord."""
    plan = resolve_plan(env)
    if plan.ok:
        plan.problems += runtime_problems(plan)
    if not plan.ok:
        say(summary_lines(plan) + warning_lines(plan))
        say(problem_lines(plan) + [f"boot: {len(plan.problems)} problem(s); nothing was started"], sys.stderr)
        return EXIT_INVALID
    # Owner-only files from here on (database, logs, schedule), inherited by
    # every program: they may hold tenant data.
    os.umask(0o077)
    prepare_var_dir(plan.var_dir)
    secret_key(plan.var_dir, plan.env)
    write_worker_programs(plan)
    write_redis_conf(plan)
    child_env = supervisor_env(plan)
    if not run_step("database migrated", ["migrate", "--noinput"], child_env, plan):
        return EXIT_FAILED
    login = ensure_superadmin(plan, child_env) if "web" in plan.roles else None
    if login is None and "web" in plan.roles:
        return EXIT_FAILED
    if plan.simulator and not register_simulator(plan, child_env):
        return EXIT_FAILED
    say(summary_lines(plan) + warning_lines(plan))
    if plan.simulator:
        say([f"Demo data: the bundled tenant simulator on http://{SIMULATOR_HOST}:{plan.simulator_port}/api/v1, "
             "read as the tenant 'simulator' (SIMULATOR=false leaves it out)"])
    if login:
        say([login])
    exec_supervisord(child_env)
    return EXIT_FAILED  # not reached: exec replaced this process


def cmd_env_docs(check_only: bool) -> int:
    try:
        if check_only:
            current = envdoc.is_current()
            say([f"docs/configuration.md: the variable tables are {'current' if current else 'out of date'}"])
            return 0 if current else EXIT_FAILED
        changed = envdoc.write()
    except envdoc.EnvDocError as exc:
        say([f"error: {exc}"], sys.stderr)
        return EXIT_INVALID
    say([f"docs/configuration.md: {'variable tables rewritten' if changed else 'already current'}"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boot.py", description="Start or check Flowwatch.")
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser("check", help="print the resolved layout and problems; exit 2 on problems")
    check.add_argument("--json", action="store_true", help="print the layout as one JSON document")
    commands.add_parser("up", help="validate, prepare VAR_DIR, migrate, then run supervisord (default)")
    docs = commands.add_parser("env-docs", help="write the variable tables of docs/configuration.md")
    docs.add_argument("--check", action="store_true", help="only say whether they are current; exit 1 if not")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args.json)
        if args.command == "env-docs":
            return cmd_env_docs(args.check)
        return cmd_up()
    except KeyboardInterrupt:  # Ctrl-C during migrate: supervisord is not running yet
        print("boot: interrupted; nothing was started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
