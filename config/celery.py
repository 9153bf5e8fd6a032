"""The Celery app: settings come from Django's CELERY_* names."""

import os

from celery import Celery

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
