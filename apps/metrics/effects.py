"""A tick's side effects: the database and the other Redis roles may be away.

Each failure is logged once per outage, and its end once; it is reported
(the database's state goes into the snapshot) and never raised: nothing in a
tick may end the loop.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar

from django.db import DatabaseError, connection

from apps.metrics.snapshot import DatabaseStatus
from workers.log_once import LogOnce

logger = logging.getLogger("flowwatch.controller")

T = TypeVar("T")


class Effects:
    def __init__(self) -> None:
        self.troubles = LogOnce()
        self.database = DatabaseStatus(reachable=True, error=None)

    def db(self, action: Callable[[], T], default: T) -> T:
        """Run a database action; a dead database gives ``default``, and a reconnect next time."""
        try:
            result = action()
        except DatabaseError as exc:
            if self.troubles.started("database"):
                logger.error("database unreachable: %s", type(exc).__name__)
            self.database = DatabaseStatus(reachable=False, error=f"unreachable: {type(exc).__name__}")
            try:
                connection.close()
            except DatabaseError:
                pass
            return default
        if self.troubles.ended("database"):
            logger.info("database answers again")
        self.database = DatabaseStatus(reachable=True, error=None)
        return result

    def attempt(self, what: str, action: Callable[[], Any]) -> Any:
        """Run one side effect: its result (True for None), or None when it failed."""
        try:
            result = action()
        except Exception as exc:
            if self.troubles.started(what):
                logger.warning("%s failed: %s (quiet until it works again)", what, type(exc).__name__)
            return None
        if self.troubles.ended(what):
            logger.info("%s works again", what)
        return True if result is None else result

    def failing(self, what: str) -> bool:
        return self.troubles.failing(what)
