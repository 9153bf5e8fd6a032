"""The variable tables of docs/configuration.md, written from the schema in config/env.py.

Each table sits between ``<!-- env-table: SECTION -->`` and
``<!-- end env-table -->``; ``python boot.py env-docs`` rewrites them and
``python boot.py env-docs --check`` says whether they are current.  The
prose around the tables is written by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from bootstrap.plan import BASE_DIR
from config.env import SCHEMA, Variable

CONFIGURATION_MD = BASE_DIR / "docs" / "configuration.md"
TABLE = re.compile(r"(<!-- env-table: (?P<section>[\w-]+) -->\n).*?(<!-- end env-table -->)", re.DOTALL)
HEADER = "| variable | type | default | read by | meaning |\n|---|---|---|---|---|\n"


class EnvDocError(ValueError):
    """docs/configuration.md and the schema cannot be matched up."""


def sections() -> list[str]:
    """The schema's sections, in order of first appearance."""
    return list(dict.fromkeys(variable.section for variable in SCHEMA))


def row(variable: Variable) -> str:
    name = f"`{variable.name}`" + (" *(\\_FILE)*" if variable.from_file else "")
    meaning = variable.help + (f" Example: {variable.example}." if variable.example else "")
    return f"| {name} | {variable.type_text} | {variable.shown_default} | {', '.join(variable.read_by)} | {meaning} |\n"


def table(section: str) -> str:
    return HEADER + "".join(row(variable) for variable in SCHEMA if variable.section == section)


def rewrite(text: str) -> str:
    """``text`` with every env-table replaced by the schema's; EnvDocError when a section has none."""
    found = [match.group("section") for match in TABLE.finditer(text)]
    missing = [section for section in sections() if section not in found]
    unknown = [section for section in found if section not in sections()]
    if missing or unknown:
        raise EnvDocError(f"docs/configuration.md: env-table markers missing for {missing or 'none'}, "
                          f"unknown for {unknown or 'none'}")
    return TABLE.sub(lambda match: match.group(1) + table(match.group("section")) + match.group(3), text)


def write(path: Path = CONFIGURATION_MD) -> bool:
    """Rewrite the tables in ``path``; True when anything changed."""
    text = path.read_text()
    new = rewrite(text)
    if new != text:
        path.write_text(new)
    return new != text


def is_current(path: Path = CONFIGURATION_MD) -> bool:
    text = path.read_text()
    return rewrite(text) == text
