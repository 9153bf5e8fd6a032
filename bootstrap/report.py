"""A plan as the lines ``boot.py`` prints; passwords are masked by RoleUrl.summary()."""

from __future__ import annotations

import sys
from typing import TextIO

from bootstrap.plan import BASE_DIR, Plan
from config import redis_layout


def layout_lines(plan: Plan) -> list[str]:
    """The resolved layout as a table, one row per role."""
    layout = plan.layout
    if layout.redis_local:
        where = plan.redis_bin or ("not started on this host" if "redis" not in plan.roles else "binary not found")
        head = (f"Redis layout: bundled Redis on {redis_layout.BUNDLED_REDIS_HOST}:{layout.local_port} "
                f"(REDIS_LOCAL=true, {where})")
    else:
        head = "Redis layout: external Redis (REDIS_LOCAL=false)"
    lines = [head, f"  {'role':<9}{'scheme':<8}{'host':<22}{'port':<7}{'db':<4}{'tls':<5}url"]
    for role in redis_layout.ROLES:
        if role not in layout.roles:
            lines.append(f"  {role:<9}(invalid: see the problems below)")
            continue
        s = layout.roles[role].summary()
        tls = "yes" if s["tls"] else "no"
        lines.append(f"  {role:<9}{s['scheme']:<8}{s['host']:<22}{s['port']!s:<7}{s['db']!s:<4}{tls:<5}{s['url']}")
    return lines


def summary_lines(plan: Plan) -> list[str]:
    lines = [f"Flowwatch at {BASE_DIR} (VAR_DIR={plan.var_dir})", *layout_lines(plan)]
    programs = ", ".join(plan.programs()) or "(none)"
    lines.append(f"Programs (BOOT_ROLES={plan.boot_roles}): {programs}")
    lines += [f"  {note}" for note in plan.notes]
    if "web" in plan.roles:
        lines.append(f"Web: {plan.web_url}")
    return lines


def warning_lines(plan: Plan) -> list[str]:
    return [f"warning: {code + ': ' if code else ''}{text}" for code, text in plan.findings]


def problem_lines(plan: Plan) -> list[str]:
    return [f"error: {problem}" for problem in plan.problems]


def say(lines: list[str], stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    for line in lines:
        print(line, file=stream)
    stream.flush()
