"""What would fail later is refused at the start: by `boot.py check`, by
`boot.py up` before it writes anything, and by Django's system checks, each
problem as one line naming the variable and never showing a password."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env
from tests.test_boot import SECRET, clean_env, error_lines, run_boot

REFUSED = [
    ({"CELERY_BROKER_URL": f" redis://:{SECRET}@localhost:6379/0 "},
     "CELERY_BROKER_URL: leading or trailing whitespace around 'redis://:***@localhost:6379/0'"),
    ({"REDIS_CACHE_URL": "redis://localhost:6379/2?db=0"}, "REDIS_CACHE_URL: URL option 'db' is not accepted"),
    ({"REDIS_CACHE_URL": f"redis://localhost:6379/2?password={SECRET}"},
     "REDIS_CACHE_URL: URL option 'password' is not accepted"),
    ({"CELERY_RESULT_BACKEND": "rediss://r.internal:6380/1?SSL_CERT_REQS=none", "REDIS_TLS_INSECURE": "true"},
     "CELERY_RESULT_BACKEND: URL option 'SSL_CERT_REQS' must be lower-case (ssl_cert_reqs)"),
    ({"CELERY_RESULT_BACKEND": "rediss://r.internal:6380/1?ssl_keyfile=/tmp/k"},
     "CELERY_RESULT_BACKEND: URL option 'ssl_keyfile' is not accepted"),
    ({"REDIS_CACHE_URL": "redis://localhost:6379/2?sockettimeout=3"},
     "REDIS_CACHE_URL: unknown URL option 'sockettimeout'"),
    ({"CHANNELS_REDIS_URL": "redis://my host:6379/3"}, "CHANNELS_REDIS_URL: 'redis://my host:6379/3' holds a space"),
    ({"CHANNELS_REDIS_URL": "redis://my%20host:6379/3"}, "CHANNELS_REDIS_URL: host 'my%20host'"),
    ({"CELERY_RESULT_BACKEND": "REDIS://localhost:6379/1"}, "CELERY_RESULT_BACKEND: unknown scheme 'REDIS'"),
    ({"CELERY_BROKER_URL": "redis://localhost:0/0"},
     "CELERY_BROKER_URL: port 0 in 'redis://localhost:0/0' is not a port"),
    ({"BOOT_ROLES": ","}, "BOOT_ROLES=',' has an empty item: remove the stray comma"),
    ({"BOOT_ROLES": "web,,workers"}, "BOOT_ROLES='web,,workers' has an empty item"),
    ({"DATABASE_URL": f"mysql://fw:{SECRET}@db.internal/fw"}, "DATABASE_URL: scheme 'mysql' is not supported"),
    ({"DATABASE_URL": " sqlite:////tmp/fw.sqlite3"}, "DATABASE_URL: leading or trailing whitespace"),
    ({"EMAIL_USE_TLS": "true", "EMAIL_USE_SSL": "true"}, "EMAIL_USE_TLS and EMAIL_USE_SSL are both true"),
    ({"DJANGO_HSTS_SECONDS": "3600"}, "DJANGO_HSTS_SECONDS is set but DJANGO_HTTPS is false"),
]


@pytest.mark.parametrize("extra,expected", REFUSED, ids=[str(i) for i, _ in enumerate(REFUSED)])
def test_boot_check_refuses_each_with_one_line_naming_the_variable(tmp_path, extra, expected):
    done = run_boot(tmp_path, "check", **extra)
    assert done.returncode == 2, done.stdout
    (line,) = error_lines(done)
    assert expected in line
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_django_system_checks_refuse_the_same_values_naming_each_variable(redis_server):
    env = {}
    for extra, _expected in REFUSED:
        env.update(extra)  # later cases of a variable replace earlier ones
    expected = [text for extra, text in REFUSED if all(env[name] == value for name, value in extra.items())]
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "(flowwatch.E00" in line]
    for text in expected:
        assert any(text in line for line in errors), (text, errors)
    assert SECRET not in done.stdout + done.stderr


def test_django_reports_an_unsupported_database_instead_of_loading_its_driver():
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, timeout=120, capture_output=True,
                          text=True, env=subprocess_env(DATABASE_URL=f"mysql://fw:{SECRET}@127.0.0.1:1/fw"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "(flowwatch.E002) DATABASE_URL: scheme 'mysql' is not supported" in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_up_with_an_unsupported_database_writes_nothing(tmp_path):
    done = run_boot(tmp_path, "up", DATABASE_URL=f"mysql://fw:{SECRET}@127.0.0.1:1/fw", BOOT_ROLES="web,workers")
    assert done.returncode == 2
    assert error_lines(done) == ["error: DATABASE_URL: scheme 'mysql' is not supported; use postgres:// "
                                 "(or postgresql://) or sqlite://"]
    assert "nothing was started" in done.stderr
    assert not (tmp_path / "var").exists()


def test_up_refused_leaves_an_existing_var_dir_exactly_as_it_was(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir(mode=0o755)
    (var_dir / "kept.txt").write_text("unchanged")
    before = sorted((p.relative_to(var_dir), p.stat().st_mode, p.stat().st_mtime_ns) for p in var_dir.rglob("*"))
    mode = var_dir.stat().st_mode
    done = run_boot(tmp_path, "up", EMAIL_USE_TLS="true", EMAIL_USE_SSL="1", BOOT_ROLES="web,workers")
    assert done.returncode == 2
    assert [line.split(" are")[0] for line in error_lines(done)] == ["error: EMAIL_USE_TLS and EMAIL_USE_SSL"]
    assert sorted((p.relative_to(var_dir), p.stat().st_mode, p.stat().st_mtime_ns)
                  for p in var_dir.rglob("*")) == before
    assert var_dir.stat().st_mode == mode


def test_the_accepted_options_still_pass(tmp_path):
    env = clean_env(tmp_path, REDIS_CACHE_URL="redis://localhost:6379/2?socket_timeout=2&max_connections=50",
                    CHANNELS_REDIS_URL="redis://[::1]:6379/3?socket_timeout=20&protocol=3",
                    DATABASE_URL="postgresql://fw@db.internal:5432/fw", BOOT_ROLES="web, workers")
    done = subprocess.run([sys.executable, str(ROOT / "boot.py"), "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert error_lines(done) == []
