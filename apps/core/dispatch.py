"""Sending tasks after the database commit.

A task queued inside a transaction could run before the rows it names are
visible, or for rows a rollback removed: every task that names database rows
is sent from ``transaction.on_commit``.  Outside a transaction it is sent at
once.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction


def send_on_commit(task: Any, *args: Any, **options: Any) -> None:
    """``task.apply_async(args, **options)`` once the current transaction commits."""
    transaction.on_commit(lambda: task.apply_async(args=args, **options))


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]
