"""The Celery app: settings come from Django's CELERY_* names."""

import gc
import logging.config
import os
import sys

from celery import Celery
from celery.signals import worker_init

import workers.heartbeat  # noqa: F401  worker signals: heartbeats, instance ids, processed counters
import workers.trim  # noqa: F401  worker signals: the heap goes back to the system once a process is idle
from workers.routing import celery_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Celery's Django fixup runs Django's system checks when a worker or beat
# loads its task modules; the checks import the whole URL configuration (every
# view, the admin and its forms) into processes that serve no page.  boot.py's
# `migrate` has run them before supervisord starts any program, and
# `manage.py check` runs them on demand (docs/performance.md, "Memory").
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")
# httpx imports its command-line client when Rich and Pygments are installed
# (a development virtualenv has them): about 5 MiB per process for a CLI
# Flowwatch never runs.  A None entry makes that one import fail, which httpx
# expects (httpx/__init__.py falls back to a stub `main`).
sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]

# Beat, started through workers.cli, only sends the schedule's tasks by name:
# their routes come from the queue table, not from the task modules.  It runs
# without Celery's Django fixup (which calls django.setup() to import every
# app's models) and without the task modules: about 20 MiB less
# (docs/performance.md, "Memory").
BEAT_ONLY = os.environ.get("FW_BEAT_ONLY") == "1"

app = Celery("flowwatch", amqp="workers.routing:GuardedAMQP", fixups=[] if BEAT_ONLY else None)
# Only the CELERY_* settings, so that inspect conf/report show no other secret.
app.config_from_object("config.celery_settings:SETTINGS")
# Queues and routes are derived from the queue table (workers/queues.py).
app.conf.update(celery_config())
if BEAT_ONLY:
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)  # what django.setup() would have done: the same log lines
else:
    app.autodiscover_tasks(["workers"], related_name="probe")
    app.autodiscover_tasks()


@worker_init.connect
def freeze_before_fork(**_: object) -> None:
    """Move everything imported so far out of the collector's reach before the pool forks.

    A prefork child shares its parent's pages until it writes to them, and a
    garbage collection writes to every object it visits; frozen objects are
    never visited, so the children keep sharing them (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
