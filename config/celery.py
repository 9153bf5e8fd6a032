"""The Celery app: settings come from Django's CELERY_* names."""

import os

from celery import Celery

from config import redis_layout
from workers.routing import celery_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Celery reads CELERY_BROKER_URL and CELERY_RESULT_BACKEND from the
# environment before its configuration: hand it the layout's client URLs
# (ssl_* options removed, TLS from broker_use_ssl) so the layout stays the
# one source of Redis settings.
_layout = redis_layout.resolve()
os.environ["CELERY_BROKER_URL"] = _layout.url("broker")
os.environ["CELERY_RESULT_BACKEND"] = _layout.url("results")
for _name in ("CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
    os.environ.pop(_name, None)

app = Celery("flowwatch", amqp="workers.routing:GuardedAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Queues and routes are derived from the queue table (workers/queues.py).
app.conf.update(celery_config())
app.autodiscover_tasks(["workers"], related_name="probe")
app.autodiscover_tasks()
