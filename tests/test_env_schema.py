"""The environment schema (config/env.py): one source for settings, boot and the docs."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap import envdoc
from config import env, redis_layout
from config.env import SCHEMA, EnvError, value, write_private

ROOT = Path(__file__).resolve().parent.parent


def test_the_variable_tables_of_configuration_md_are_written_from_the_schema():
    assert envdoc.is_current(), "run: python3 boot.py env-docs"


def test_a_table_that_differs_from_the_schema_is_found(tmp_path):
    page = tmp_path / "configuration.md"
    page.write_text(envdoc.CONFIGURATION_MD.read_text().replace("| `WEB_PORT` | port | `8000` |",
                                                               "| `WEB_PORT` | port | `8080` |"))
    assert not envdoc.is_current(page)
    assert envdoc.write(page) and envdoc.is_current(page)


def test_a_page_without_the_markers_of_a_section_is_refused(tmp_path):
    page = tmp_path / "configuration.md"
    page.write_text("# Configuration\n\n<!-- env-table: redis -->\n<!-- end env-table -->\n")
    with pytest.raises(envdoc.EnvDocError, match="missing for .*processes"):
        envdoc.is_current(page)


def test_env_docs_check_exits_zero_while_the_tables_are_current():
    done = subprocess.run([sys.executable, "boot.py", "env-docs", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "current" in done.stdout


def test_each_variable_is_declared_once_with_a_known_type_and_readers():
    names = [variable.name for variable in SCHEMA]
    assert len(names) == len(set(names))
    for variable in SCHEMA:
        assert variable.kind in env.TYPES, variable.name
        assert variable.read_by and set(variable.read_by) <= {env.BOOT, env.SUPERVISORD, env.DJANGO, env.SIMULATOR}
        assert variable.help.endswith((".", ")")), variable.name


def test_the_four_redis_roles_are_in_the_schema():
    assert set(redis_layout.ROLE_VARIABLES.values()) <= set(env.NAMES)


def test_supervisord_reads_exactly_the_variables_the_schema_says_it_reads():
    conf = (ROOT / "supervisord.conf").read_text()
    used = {name for name in re.findall(r"%\(ENV_([A-Z_]+)\)s", conf) if not name.startswith("FW_")}
    assert used == {variable.name for variable in SCHEMA if env.SUPERVISORD in variable.read_by}


def test_a_blank_value_counts_as_unset():
    assert value("WEB_PORT", {"WEB_PORT": "  "}) == 8000
    assert value("LOG_LEVEL", {"LOG_LEVEL": ""}) == "INFO"


@pytest.mark.parametrize("name,raw,expected", [
    ("WEB_PORT", "8080", 8080), ("DJANGO_DEBUG", "TRUE", True), ("WORKER_CONCURRENCY", "4", 4),
    ("DJANGO_ALLOWED_HOSTS", "a.example, b.example", ["a.example", "b.example"]),
    ("WEB_HOST", " 0.0.0.0 ", "0.0.0.0"), ("EMAIL_HOST_PASSWORD", " pw ", " pw "),
])
def test_each_type_parses_its_value(name, raw, expected):
    assert value(name, {name: raw}) == expected


@pytest.mark.parametrize("name,raw,message", [
    ("WEB_PORT", "0", "WEB_PORT=0 is outside 1-65535"),
    ("LOG_LEVEL", "debug", "LOG_LEVEL='debug' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("EMAIL_PORT", "0", "EMAIL_PORT=0 must be at least 1"),
    ("SIMULATOR", "yes", "SIMULATOR='yes' is not a boolean"),
    ("BOOT_ROLES", ",", "BOOT_ROLES=',' has an empty item: remove the stray comma"),
    ("DJANGO_ALLOWED_HOSTS", "a.example,", "DJANGO_ALLOWED_HOSTS='a.example,' has an empty item"),
    ("WORKER_CONCURRENCY", "1_000", "WORKER_CONCURRENCY='1_000' is not a whole number"),
])
def test_a_bad_value_is_refused_naming_the_variable(name, raw, message):
    with pytest.raises(EnvError, match=re.escape(message)):
        value(name, {name: raw})


def test_only_variables_marked_from_file_read_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    assert value("EMAIL_HOST_PASSWORD", {"EMAIL_HOST_PASSWORD_FILE": str(secret)}) == "from-file"
    assert value("EMAIL_HOST", {"EMAIL_HOST_FILE": str(secret)}) == ""


def test_a_list_default_is_a_fresh_list_each_time():
    value("DJANGO_CSRF_TRUSTED_ORIGINS", {}).append("https://changed.example")
    assert value("DJANGO_CSRF_TRUSTED_ORIGINS", {}) == []


def test_django_settings_take_their_defaults_from_the_schema(settings):
    # The suite sets no variable below, so settings hold the schema's defaults.
    assert settings.EMAIL_PORT == env.BY_NAME["EMAIL_PORT"].default
    assert settings.CELERY_RESULT_EXPIRES == env.BY_NAME["CELERY_RESULT_EXPIRES"].default
    assert settings.DEFAULT_FROM_EMAIL == env.BY_NAME["DEFAULT_FROM_EMAIL"].default
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] == \
        env.BY_NAME["CELERY_VISIBILITY_TIMEOUT"].default


# --- the owner-only file writer ------------------------------------------------------------------

def test_a_private_file_is_written_with_mode_0600_and_no_temporary_file_left(tmp_path):
    path = tmp_path / "secret"
    assert write_private(path, "one")
    assert path.read_text() == "one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_a_private_file_replaces_an_older_one_unless_told_to_keep_it(tmp_path):
    path = tmp_path / "secret"
    write_private(path, "one")
    assert write_private(path, "two") and path.read_text() == "two"
    assert not write_private(path, "three", replace=False)
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_a_private_file_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        write_private(tmp_path / "secret", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


# --- boot's modules run before the requirements are installed ----------------------------------------

BOOT_MODULES = [ROOT / "boot.py", *(ROOT / "config" / f"{name}.py" for name in ("env", "env_checks", "redis_layout",
                                                                              "redis_urls")),
                *sorted((ROOT / "bootstrap").glob("*.py"))]
OWN_STDLIB_ONLY = ("bootstrap", "config.env", "config.env_checks", "config.redis_layout", "config.redis_urls")


def module_level_imports(path: Path) -> set[str]:
    """Modules imported at the top of ``path`` (imports inside functions are guarded where used)."""
    import ast

    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if node.module == "config" else node.module
                      for alias in node.names}
    return found


@pytest.mark.parametrize("path", BOOT_MODULES, ids=lambda path: path.name)
def test_boot_s_modules_import_only_the_standard_library_and_each_other(path):
    foreign = sorted(
        name for name in module_level_imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names and name != "__future__"
        and not any(name == own or name.startswith(own + ".") for own in OWN_STDLIB_ONLY)
    )
    assert foreign == []


def test_the_simulator_and_the_schema_agree_on_the_demo_credentials():
    from simulator import config as simulator_config

    assert env.BY_NAME["SIMULATOR_CLIENT_ID"].default == simulator_config.DEFAULT_CLIENT_ID
    assert env.BY_NAME["SIMULATOR_CLIENT_SECRET"].default == simulator_config.DEFAULT_CLIENT_SECRET
    assert env.BY_NAME["SIMULATOR_PORT"].default == simulator_config.Options().port
