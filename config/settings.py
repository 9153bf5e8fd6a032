"""Django settings: one module, defaults inline, every variable in docs/configuration.md.

The project starts with no environment at all: SQLite under VAR_DIR, the
bundled Redis on 127.0.0.1:6379, a secret key generated once into VAR_DIR.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import redis_layout
from config.env import EnvError, env_bool, env_int, env_list, env_str, secret_key, var_dir

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = var_dir()

SECRET_KEY = secret_key(VAR_DIR)
DEBUG = env_bool("DJANGO_DEBUG", False)
WEB_HOST = env_str("WEB_HOST", "127.0.0.1")
WEB_PORT = env_int("WEB_PORT", 8000, minimum=1)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", f"localhost,127.0.0.1,[::1],{WEB_HOST}")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
METRICS_API_TOKEN = env_str("METRICS_API_TOKEN", "")
SIMULATOR = env_bool("SIMULATOR", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "apps.core",
    "apps.metrics",
    "apps.dashboard",
    "apps.tenants",
    "apps.messagelogs",
    "apps.alerts",
    "apps.stats",
    "apps.archives",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'flowwatch.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, workers and the controller write concurrently: WAL lets readers
    # run beside a writer, IMMEDIATE avoids lock-upgrade deadlocks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # libpq waits forever for an unreachable host by default: /readyz and the
    # controller's tick must give up and report instead.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Logging in must work while Redis is down (DESIGN §5): never cache sessions.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Redis: the four roles, all from config.redis_layout -----------------
REDIS_LAYOUT = redis_layout.resolve()

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_LAYOUT.url("cache"),
        "KEY_PREFIX": redis_layout.CACHE_KEY_PREFIX,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": redis_layout.CONNECT_TIMEOUT,
            "SOCKET_TIMEOUT": redis_layout.SOCKET_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {
                "health_check_interval": 30,
                # One immediate retry (a pooled connection that a Redis restart
                # broke), no backoff: a dead cache answers 503 within 2 s.
                "retry": Retry(NoBackoff(), 1),
                **REDIS_LAYOUT.ssl_kwargs("cache"),
            },
        },
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels-redis >= 4.1 hands the extra keys to redis-py, which is
            # how rediss:// gets a verified certificate here too.
            "hosts": [{
                "address": REDIS_LAYOUT.url("channels"),
                # Connect fast-fail only: reads block up to the layer's own
                # BZPOPMIN timeout (5 s), so no read timeout below that.
                "socket_connect_timeout": redis_layout.CONNECT_TIMEOUT,
                "socket_keepalive": True,
                **REDIS_LAYOUT.ssl_kwargs("channels"),
            }],
            "prefix": redis_layout.CHANNELS_PREFIX,
        },
    }
}

# --- Celery (read by config/celery.py with namespace="CELERY") -----------
CELERY_BROKER_URL = REDIS_LAYOUT.url("broker")
CELERY_RESULT_BACKEND = REDIS_LAYOUT.url("results")
# A rediss:// broker without broker_use_ssl silently skips verification
# (shared/TRAPS.md): both are always set explicitly for TLS roles.
CELERY_BROKER_USE_SSL = REDIS_LAYOUT.celery_ssl("broker")
CELERY_REDIS_BACKEND_USE_SSL = REDIS_LAYOUT.celery_ssl("results")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task taken but not acknowledged within this many seconds is handed to
    # another worker: longer than the longest normal task (see docs/queues.md).
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    "socket_connect_timeout": 5,
    # Above kombu's 1 s BRPOP wait: a silent, half-open connection is given
    # up after this long and reconnected.
    "socket_timeout": 30,
    "socket_keepalive": True,
    "health_check_interval": 25,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # workers wait for Redis forever
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 5
CELERY_REDIS_SOCKET_TIMEOUT = 10  # Celery's default (120 s) would hold a result read for minutes
CELERY_REDIS_SOCKET_KEEPALIVE = True
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 25
CELERY_REDIS_RETRY_ON_TIMEOUT = True
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 3600, minimum=60)
CELERY_RESULT_EXTENDED = False
# Results nobody reads cost a SUBSCRIBE/UNSUBSCRIBE per send (TRAPS.md);
# tasks whose caller reads the result opt back in with ignore_result=False.
CELERY_TASK_IGNORE_RESULT = True
# Acknowledge after the task ran: a worker killed mid-task hands it back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# On a lost broker connection, stop long tasks: acks_late re-delivers them.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False  # -E costs ~30 % of throughput (TRAPS.md)
# The queue table is the only source of queues; see workers/routing.py.
CELERY_TASK_CREATE_MISSING_QUEUES = False

# --- Static files, auth, i18n --------------------------------------------
STATIC_URL = "static/"
# WhiteNoise serves the apps' static files straight from their folders: they
# are few and small, and no collectstatic step can be forgotten at boot.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/accounts/login/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Redis URLs carry passwords under names Django's debug page does not hide.
DEFAULT_EXCEPTION_REPORTER_FILTER = "apps.core.errors.RedisAwareReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- apps.metrics: controller, alerts, periodic jobs (docs/metrics.md) ---------
# Seconds between controller ticks; `run_controller --interval` overrides it.
METRICS_CONTROLLER_INTERVAL = float(env_int("METRICS_CONTROLLER_INTERVAL", 5, minimum=1))
# Alert e-mail goes through Django's mail settings; without EMAIL_HOST it is
# printed to the log (console backend) rather than lost silently.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")  # or EMAIL_HOST_PASSWORD_FILE
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = 10  # a dead mail server must not hold a trigger_alerts worker
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "flowwatch@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Periodic work as a data table (STYLE §4): name, task, seconds between runs.
# Queues come from TASK_ROUTES in workers/queues.py.  Each run expires just
# under its period, so a backlog never piles up copies.
BEAT_TABLE = (
    ("metrics-prune-history", "apps.metrics.tasks.prune_history", 6 * 3600),
    ("metrics-rebuild-caches", "apps.metrics.tasks.rebuild_caches", 15 * 60),
    ("tenants-periodic-run", "apps.tenants.tasks.periodic_run", 15),
    ("messagelogs-catch-up-details", "apps.messagelogs.tasks.catch_up_details", 30 * 60),
    ("alerts-evaluate", "apps.alerts.tasks.evaluate_alerts", 60),
    ("alerts-daily-reports", "apps.alerts.tasks.daily_reports", 5 * 60),
    ("archives-messagelogs", "apps.archives.tasks.archive_messagelogs", 3600),
)
CELERY_BEAT_SCHEDULE = {
    name: {"task": task, "schedule": float(period), "options": {"expires": period * 0.9}}
    for name, task, period in BEAT_TABLE
}
# --- end of apps.metrics settings ---------------------------------------------------

# --- the message pipeline: tenants, message logs, alerts, stats, archives (docs/pipeline.md) ---
# Hot reads re-read this many seconds before the watermark (late status changes)...
MESSAGELOG_OVERLAP_SECONDS = env_int("MESSAGELOG_OVERLAP_SECONDS", 120, minimum=0)
# ...and stop this many seconds before now, so the tenant has finished writing.
MESSAGELOG_READ_LAG_SECONDS = env_int("MESSAGELOG_READ_LAG_SECONDS", 5, minimum=0)
# A watermark further back than this is a gap: the older part is backfilled cold.
MESSAGELOG_HOT_MAX_SECONDS = env_int("MESSAGELOG_HOT_MAX_SECONDS", 3600, minimum=60)
MESSAGELOG_BACKFILL_WINDOW_SECONDS = env_int("MESSAGELOG_BACKFILL_WINDOW_SECONDS", 3600, minimum=60)
MESSAGELOG_RETENTION_DAYS = env_int("MESSAGELOG_RETENTION_DAYS", 30, minimum=1)
ARCHIVE_DIR = VAR_DIR / "archives"
STATS_HOURS = env_int("STATS_HOURS", 24, minimum=1)
STATS_REBUILD_DELAY = env_int("STATS_REBUILD_DELAY", 10, minimum=1)
ALERTS_DAILY_REPORT_HOUR = env_int("ALERTS_DAILY_REPORT_HOUR", 7, minimum=0)
if ALERTS_DAILY_REPORT_HOUR > 23:
    raise EnvError(f"ALERTS_DAILY_REPORT_HOUR={ALERTS_DAILY_REPORT_HOUR} must be an hour from 0 to 23")
# Empty: the key generated once into VAR_DIR/tenant-secrets.key (apps/tenants/secrets.py).
TENANT_SECRETS_KEY = env_str("TENANT_SECRETS_KEY", "")
