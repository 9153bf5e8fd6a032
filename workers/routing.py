"""Celery queues and routes, derived from the queue table.

Each queue gets its own direct exchange and routing key: bare ``Queue(name)``
objects next to a shared default exchange can copy one message into several
queues.

Tasks declare their queue where they are defined, with :func:`routed_task`::

    from workers.routing import routed_task

    @routed_task("messagelog_read", bind=True, max_retries=5)
    def read_message_logs(self, tenant_id: int) -> None: ...

The queue is checked against the table in workers/queues.py when the task's
module is imported (Celery imports every app's tasks when it loads), and the
task carries it, so ``apply_async()`` without a queue lands there.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from celery import shared_task
from celery.app.amqp import AMQP
from celery.signals import before_task_publish
from kombu import Exchange, Queue

from workers.handback import REPEAT_UNSAFE_HEADER
from workers.queues import DEFAULT_QUEUE, FAMILIES, QUEUE_NAMES

# Header stamped on every task at publish; the controller reads it from the
# oldest waiting message to tell how long that message has waited.
SENT_AT_HEADER = "fw_sent_at"


# Task name -> its queue, filled by routed_task as task modules are imported.
_ROUTES: dict[str, str] = {}
# Tasks declared with repeat_safe=False: their messages carry REPEAT_UNSAFE_HEADER.
_REPEAT_UNSAFE: set[str] = set()
# kombu's Redis default, when the transport options do not set one.
DEFAULT_VISIBILITY_TIMEOUT = 3600


class UndeclaredQueue(LookupError):
    """A task was sent to, or declared on, a queue the queue table does not declare."""


class EtaBeyondVisibility(ValueError):
    """A task's ETA or countdown lies beyond the broker's visibility timeout."""


def routed_task(queue: str, *, repeat_safe: bool = True,
                **celery_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``celery.shared_task`` that runs on ``queue``, a queue of the table.

    An undeclared queue is refused here, when the module defining the task is
    imported, not when the first message is sent. ``celery_options`` go to
    ``shared_task`` unchanged (``bind``, ``name``, retries, ...); the task's
    name defaults to ``module.function`` as Celery's does.

    ``repeat_safe=False`` marks a task whose second run would do harm: when
    the worker holding it dies, the controller parks and reports it instead of
    handing it back (workers/handback.py).
    """
    if queue not in QUEUE_NAMES:
        raise UndeclaredQueue(f"routed_task: queue {queue!r} is not declared in workers/queues.py")

    def declare(function: Callable[..., Any]) -> Any:
        name = celery_options.get("name") or f"{function.__module__}.{function.__name__}"
        if _ROUTES.get(name, queue) != queue:
            raise ValueError(f"routed_task: task {name!r} is already routed to {_ROUTES[name]!r}, not {queue!r}")
        _ROUTES[name] = queue
        if not repeat_safe:
            _REPEAT_UNSAFE.add(name)
        return shared_task(**{**celery_options, "name": name, "queue": queue,
                              "repeat_safe": repeat_safe})(function)

    return declare


def repeat_unsafe_tasks() -> set[str]:
    return set(_REPEAT_UNSAFE)


def task_routes() -> dict[str, str]:
    """Task name -> queue of every routed task imported so far."""
    return dict(_ROUTES)


def reserved_queues(routes: dict[str, str] | None = None) -> tuple[str, ...]:
    """Declared queues that no routed task runs on yet, in table order."""
    used = set((task_routes() if routes is None else routes).values())
    return tuple(queue for queue in QUEUE_NAMES if queue not in used)


def route_by_name(name: str, *_args: Any, **_kwargs: Any) -> dict[str, str] | None:
    """Celery router: a task sent by name alone (``send_task``, beat) goes to its declared queue."""
    queue = _ROUTES.get(name)
    return {"queue": queue} if queue else None


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
        "task_routes": (route_by_name,),
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

        visibility = float(self.app.conf.broker_transport_options.get("visibility_timeout")
                           or DEFAULT_VISIBILITY_TIMEOUT)

        def send_task_message(producer, name, message, exchange=None, routing_key=None, queue=None, **kwargs):
            destination(exchange, routing_key, queue, default_queue)
            check_eta(name, message.headers.get("eta"), visibility)
            return send(producer, name, message, exchange=exchange, routing_key=routing_key, queue=queue, **kwargs)

        return send_task_message


def check_eta(name: str, eta: str | None, visibility_timeout: float, now: float | None = None) -> None:
    """Refuse an ETA (or countdown) further away than the visibility timeout.

    A worker holds such a message unacknowledged until it is due; past the
    visibility timeout kombu hands it to a second worker, and it runs twice.
    """
    if not eta:
        return
    moment = datetime.fromisoformat(eta)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    ahead = moment.timestamp() - (time.time() if now is None else now)
    if ahead > visibility_timeout:
        raise EtaBeyondVisibility(
            f"task {name!r}: its ETA is {ahead:.0f} s away, beyond the broker's visibility timeout "
            f"({visibility_timeout:.0f} s, CELERY_VISIBILITY_TIMEOUT): a worker would hold it unacknowledged "
            "that long and it would run twice. Use a shorter countdown, or a periodic job in beat.")


@before_task_publish.connect
def stamp_sent_at(sender: str | None = None, headers: dict | None = None, **_: Any) -> None:
    """Stamp the send time into the headers: the controller ages queues by it;
    and mark tasks that are not safe to repeat, for the controller's hand-back."""
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())
        if sender in _REPEAT_UNSAFE:
            headers[REPEAT_UNSAFE_HEADER] = 1
