"""The Celery app: settings come from Django's CELERY_* names."""

import gc
import os

from celery import Celery
from celery.signals import worker_init

import workers.heartbeat  # noqa: F401  worker signals: heartbeats, instance ids, processed counters
from workers.routing import celery_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("flowwatch", amqp="workers.routing:GuardedAMQP")
# Only the CELERY_* settings, so that inspect conf/report show no other secret.
app.config_from_object("config.celery_settings:SETTINGS")
# Queues and routes are derived from the queue table (workers/queues.py).
app.conf.update(celery_config())
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
