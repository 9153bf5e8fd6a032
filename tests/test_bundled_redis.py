"""The bundled Redis under the real supervisord: it takes REDIS_LOCAL_PASSWORD,
the password shows on no command line and in no output, and the supervisor
socket is its owner's only."""

from __future__ import annotations

import os
import stat
import subprocess
import time

import pytest
import redis

import boot
from bootstrap.supervisor import supervisord_binary
from tests.servers import die_with_parent, free_port, stop_group
from tests.test_boot import clean_env, run_boot, supervisor_programs

PASSWORD = "local-redis-pw-42"


@pytest.fixture(scope="module")
def supervised_redis(tmp_path_factory):
    """`boot.py up`'s steps for BOOT_ROLES=redis, then the real supervisord running only that program."""
    tmp_path = tmp_path_factory.mktemp("bundled")
    plan = boot.resolve_plan(clean_env(tmp_path, BOOT_ROLES="redis", REDIS_LOCAL_PORT=str(free_port()),
                                       REDIS_LOCAL_PASSWORD=PASSWORD))
    assert plan.ok and plan.roles == ("redis",), plan.problems
    boot.prepare_var_dir(plan.var_dir)
    boot.write_worker_programs(plan)
    boot.write_redis_conf(plan)
    env = boot.supervisor_env(plan)
    process = subprocess.Popen([supervisord_binary(), "-n", "-c", str(boot.SUPERVISORD_CONF)], env=env,
                               cwd=boot.BASE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=die_with_parent)
    try:
        wait_for_port(plan.layout.local_port)
        yield plan
    finally:
        stop_group(process, timeout=20)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return
        except redis.AuthenticationError:
            return  # it answers, and wants a password
        except redis.ConnectionError as exc:
            if "NOAUTH" in str(exc) or "Authentication" in str(exc):
                return
            time.sleep(0.2)
    raise RuntimeError(f"the bundled Redis did not answer on {port}")


def command_lines() -> list[str]:
    lines = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            lines.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass  # ended meanwhile
    return lines


def test_the_bundled_redis_requires_the_password_the_local_urls_carry(supervised_redis):
    plan = supervised_redis
    port = plan.layout.local_port
    with pytest.raises(redis.exceptions.RedisError, match="(?i)auth"):
        redis.Redis(port=port, socket_timeout=5).set("anonymous", "1")
    for role in ("broker", "results", "cache", "channels"):
        assert redis.Redis.from_url(plan.layout.url(role), socket_timeout=5).ping()


def test_the_password_is_on_no_command_line_and_in_an_owner_only_file(supervised_redis, tmp_path, monkeypatch):
    plan = supervised_redis
    lines = command_lines()
    assert any(f"redis-server 127.0.0.1:{plan.layout.local_port}" in line for line in lines), lines
    assert not any(PASSWORD in line for line in lines)
    _plan, _options, programs = supervisor_programs(tmp_path, monkeypatch, REDIS_LOCAL_PASSWORD=PASSWORD)
    assert "/run/redis.conf --bind" in programs["redis"].command and PASSWORD not in programs["redis"].command
    conf = plan.var_dir / "run" / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert f"requirepass {PASSWORD}" in conf.read_text()


def test_the_supervisor_socket_is_its_owners_only(supervised_redis):
    socket_path = supervised_redis.socket_path
    deadline = time.monotonic() + 10
    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    mode = socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) & 0o077 == 0  # no access for group or others


def test_check_never_prints_the_local_password(tmp_path):
    done = run_boot(tmp_path, "check", "--json", REDIS_LOCAL_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert '"url": "redis://:***@localhost:6379/0"' in done.stdout


def test_a_local_password_that_would_need_encoding_is_refused_without_showing_it(tmp_path):
    done = run_boot(tmp_path, "check", REDIS_LOCAL_PASSWORD="p@ss word/with#odd")
    assert done.returncode == 2
    assert "REDIS_LOCAL_PASSWORD: the password must be 8-512 letters, digits or -._~" in done.stderr
    assert "p@ss" not in done.stdout + done.stderr
