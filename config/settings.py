"""Django settings: one module; every variable, its type and default come from
the schema in config/env.py (documented in docs/configuration.md).

The project starts with no environment at all: SQLite under VAR_DIR, the
bundled Redis on 127.0.0.1:6379, a secret key generated once into VAR_DIR.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import redis_layout
from config.env import secret_key, value, var_dir
from config.env_checks import database_problem

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = var_dir()

SECRET_KEY = secret_key(VAR_DIR)
DEBUG = value("DJANGO_DEBUG")
WEB_HOST = value("WEB_HOST")
ALLOWED_HOSTS = value("DJANGO_ALLOWED_HOSTS") or ["localhost", "127.0.0.1", "[::1]", WEB_HOST]
CSRF_TRUSTED_ORIGINS = value("DJANGO_CSRF_TRUSTED_ORIGINS")
METRICS_API_TOKEN = value("METRICS_API_TOKEN")

INSTALLED_APPS = [
    # The admin's models and app without autodiscovery: config/urls.py
    # imports the apps' admin.py modules where the admin is served (the web
    # process), not in every worker (docs/performance.md, "Memory").
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
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
    # Django's MessageMiddleware, its storage made on first use (docs/performance.md, "Web").
    "apps.core.messages.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
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
DATABASE_URL = value("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'flowwatch.sqlite3'}"
if database_problem(DATABASE_URL):
    # Django's dummy backend refuses every query; system check flowwatch.E002
    # says why, instead of a driver's ImportError or a connection to a
    # database Flowwatch does not run on.
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
else:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
del DATABASE_URL  # it may hold a password: not a setting to show
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

# Logging in must work while Redis is down: never cache sessions.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Security (docs/operating.md, "HTTPS behind a reverse proxy") -----------
# DJANGO_HTTPS=true: users reach the site over HTTPS through a proxy that
# terminates TLS and sets X-Forwarded-Proto (which it must overwrite, never
# pass on from the client).  Off, the site is plain HTTP on loopback, where
# secure cookies would never be sent back.
HTTPS = value("DJANGO_HTTPS")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS
# Probes and Prometheus reach the web server directly, not through the proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
_HSTS = value("DJANGO_HSTS_SECONDS")
SECURE_HSTS_SECONDS = (365 * 24 * 3600 if _HSTS is None else _HSTS) if HTTPS else 0
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Login throttling (django-axes): failures are counted in the database, like
# sessions, so it works while Redis is down.  A lockout is per user name and
# address together: a stranger cannot lock the superadmin out from elsewhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = value("LOGIN_FAILURE_LIMIT")
AXES_COOLOFF_TIME = timedelta(minutes=value("LOGIN_LOCKOUT_MINUTES"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# --- Redis: the four roles, all from config.redis_layout -----------------
REDIS_LAYOUT = redis_layout.resolve()

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_LAYOUT.url("cache"),
        "KEY_PREFIX": redis_layout.CACHE_KEY_PREFIX,
        "OPTIONS": {
            # A circuit breaker: after a failure the cache is skipped for 5 s
            # (apps/core/cache_client.py), so a page pays one timeout, not one per read.
            "CLIENT_CLASS": "apps.core.cache_client.BreakerClient",
            "SOCKET_CONNECT_TIMEOUT": redis_layout.CONNECT_TIMEOUT,
            "SOCKET_TIMEOUT": redis_layout.SOCKET_TIMEOUT,
            "CONNECTION_POOL_KWARGS": {
                "health_check_interval": 30,
                # One immediate retry, for a pooled connection that a Redis
                # restart broke; a timeout is not retried: a frozen cache
                # answers 503 after one read timeout (1 s), within 2 s.
                "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                **REDIS_LAYOUT.ssl_kwargs("cache"),
            },
        },
    }
}

# Host, timeouts, keepalive and TLS of the channels layer live beside the other
# Redis client settings (config/redis_layout.py), for every layer client.
CHANNEL_LAYERS = redis_layout.channel_layers(REDIS_LAYOUT)

# --- Celery (read by config/celery.py with namespace="CELERY") -----------
CELERY_BROKER_URL = REDIS_LAYOUT.url("broker")
CELERY_RESULT_BACKEND = REDIS_LAYOUT.url("results")
# kombu connects to a rediss:// broker without verifying the certificate
# unless broker_use_ssl says otherwise: both are always set for TLS roles.
CELERY_BROKER_USE_SSL = REDIS_LAYOUT.celery_ssl("broker")
CELERY_REDIS_BACKEND_USE_SSL = REDIS_LAYOUT.celery_ssl("results")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task taken but not acknowledged within this many seconds is handed to
    # another worker: longer than the longest normal task (see docs/queues.md).
    "visibility_timeout": value("CELERY_VISIBILITY_TIMEOUT"),
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
CELERY_RESULT_EXPIRES = value("CELERY_RESULT_EXPIRES")
CELERY_RESULT_EXTENDED = False
# Results nobody reads cost a SUBSCRIBE/UNSUBSCRIBE per send;
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
CELERY_WORKER_SEND_TASK_EVENTS = False  # task events (-E) cost ~30 % of throughput

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
    "root": {"handlers": ["console"], "level": value("LOG_LEVEL")},
    # httpx logs every tenant request at INFO: thousands of lines a minute
    # while a backfill runs.  The tenant client logs what goes wrong itself.
    # axes: failed logins and lockouts are warnings; its INFO lines greet every start.
    "loggers": {name: {"level": "WARNING"} for name in ("httpx", "httpcore", "axes")},
}

# --- apps.metrics: controller, alerts, periodic jobs (docs/metrics.md) ---------
# Seconds between controller ticks; `run_controller --interval` overrides it.
METRICS_CONTROLLER_INTERVAL = float(value("METRICS_CONTROLLER_INTERVAL"))
# Alert e-mail goes through Django's mail settings; without EMAIL_HOST it is
# printed to the log (console backend) rather than lost silently.
EMAIL_HOST = value("EMAIL_HOST")
EMAIL_BACKEND = value("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = value("EMAIL_PORT")
EMAIL_HOST_USER = value("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = value("EMAIL_HOST_PASSWORD")  # or EMAIL_HOST_PASSWORD_FILE
EMAIL_USE_TLS = value("EMAIL_USE_TLS")
EMAIL_USE_SSL = value("EMAIL_USE_SSL")
EMAIL_TIMEOUT = 10  # a dead mail server must not hold a trigger_alerts worker
DEFAULT_FROM_EMAIL = value("DEFAULT_FROM_EMAIL")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Periodic work as a data table: name, task, seconds between runs.  Each task
# runs on the queue its routed_task decorator declares.  Each run expires just
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
MESSAGELOG_OVERLAP_SECONDS = value("MESSAGELOG_OVERLAP_SECONDS")
# ...and stop this many seconds before now, so the tenant has finished writing.
MESSAGELOG_READ_LAG_SECONDS = value("MESSAGELOG_READ_LAG_SECONDS")
# A watermark further back than this is a gap: the older part is backfilled cold.
MESSAGELOG_HOT_MAX_SECONDS = value("MESSAGELOG_HOT_MAX_SECONDS")
MESSAGELOG_BACKFILL_WINDOW_SECONDS = value("MESSAGELOG_BACKFILL_WINDOW_SECONDS")
MESSAGELOG_RETENTION_DAYS = value("MESSAGELOG_RETENTION_DAYS")
ARCHIVE_DIR = VAR_DIR / "archives"
STATS_HOURS = value("STATS_HOURS")
STATS_REBUILD_DELAY = value("STATS_REBUILD_DELAY")
ALERTS_DAILY_REPORT_HOUR = value("ALERTS_DAILY_REPORT_HOUR")
# Empty: the key generated once into VAR_DIR/tenant-secrets.key (apps/tenants/secrets.py).
TENANT_SECRETS_KEY = value("TENANT_SECRETS_KEY")
