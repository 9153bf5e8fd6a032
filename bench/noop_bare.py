"""The anchor of bench/bench_tasks.py: the same no-op through Celery with nothing of Flowwatch's.

Same Redis, same queue declared the same way, and the settings a fair
comparison needs: late acks, prefetch 1, no result stored.
"""

import os

from celery import Celery
from kombu import Exchange, Queue

QUEUE = "periodic_run"

app = Celery("bare", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:1/0"))
app.conf.update(
    task_queues=(Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE),),
    task_default_queue=QUEUE, task_default_exchange=QUEUE, task_default_routing_key=QUEUE,
    task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True,
    worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop() -> None:
    return None
