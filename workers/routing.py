"""Celery queues and routes, derived from the queue table.

Each queue gets its own direct exchange and routing key: bare ``Queue(name)``
objects next to a shared default exchange can copy one message into several
queues (shared/TRAPS.md).
"""

from __future__ import annotations

import time
from typing import Any

from celery.app.amqp import AMQP
from celery.signals import before_task_publish
from kombu import Exchange, Queue

from workers.queues import DEFAULT_QUEUE, FAMILIES, QUEUE_NAMES, TASK_ROUTES

# Header stamped on every task at publish; the controller reads it from the
# oldest waiting message to tell how long that message has waited.
SENT_AT_HEADER = "fw_sent_at"


class UndeclaredQueue(LookupError):
    """A task was sent to a queue the queue table does not declare."""


def kombu_queues() -> tuple[Queue, ...]:
    return tuple(
        Queue(f.queue, Exchange(f.queue, type="direct"), routing_key=f.queue) for f in FAMILIES
    )


def celery_config() -> dict[str, Any]:
    return {
        "task_queues": kombu_queues(),
        "task_default_queue": DEFAULT_QUEUE,
        "task_default_exchange": DEFAULT_QUEUE,
        "task_default_routing_key": DEFAULT_QUEUE,
        "task_routes": {task: {"queue": queue} for task, queue in TASK_ROUTES.items()},
        # Celery refuses unknown queue names itself with this off;
        # GuardedAMQP also refuses raw exchange/routing-key pairs.
        "task_create_missing_queues": False,
    }


def destination(exchange: Any, routing_key: str | None, queue: Any, default_queue: str) -> str:
    """The declared queue a message will land in, or UndeclaredQueue.

    Mirrors how Celery's ``send_task_message`` picks the target: a queue
    name or object, else the default queue; an explicit exchange and routing
    key must be one declared queue's own pair, because any other pair is
    either a silent new list in Redis or a message routed nowhere.
    """
    qname = queue if isinstance(queue, str) or queue is None else queue.name
    exchange_name = exchange if isinstance(exchange, str) or exchange is None else exchange.name
    if qname is None and exchange_name is None:
        qname = default_queue
    if qname is not None and qname not in QUEUE_NAMES:
        raise UndeclaredQueue(f"queue {qname!r} is not declared in workers/queues.py")
    if exchange_name and routing_key:
        if routing_key not in QUEUE_NAMES or exchange_name != routing_key:
            raise UndeclaredQueue(
                f"exchange {exchange_name!r} with routing key {routing_key!r} reaches no queue "
                "declared in workers/queues.py"
            )
        return routing_key
    if qname is None:
        raise UndeclaredQueue(f"exchange {exchange_name!r} without a routing key reaches no declared queue")
    return qname


class GuardedAMQP(AMQP):
    """Celery's AMQP helper whose task sender refuses undeclared destinations."""

    def _create_task_sender(self):
        send = super()._create_task_sender()
        default_queue = self.app.conf.task_default_queue

        def send_task_message(producer, name, message, exchange=None, routing_key=None, queue=None, **kwargs):
            destination(exchange, routing_key, queue, default_queue)
            return send(producer, name, message, exchange=exchange, routing_key=routing_key, queue=queue, **kwargs)

        return send_task_message


@before_task_publish.connect
def stamp_sent_at(headers: dict | None = None, **_: Any) -> None:
    """Stamp the send time into the headers: the controller ages queues by it."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())


def routed_task(queue: str, **celery_options: Any):
    """``celery.shared_task`` bound to one declared queue.

    ``@routed_task("messagelog_read", bind=True)`` puts every call of the
    task on ``messagelog_read``; an undeclared queue is refused when the
    module is imported, not when the first message goes nowhere.
    """
    from celery import shared_task

    if queue not in QUEUE_NAMES:
        raise UndeclaredQueue(f"queue {queue!r} is not declared in workers/queues.py")
    return shared_task(queue=queue, **celery_options)
