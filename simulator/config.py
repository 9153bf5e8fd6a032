"""The simulator's options: environment variables, overridden by the command line."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

DEFAULT_CLIENT_ID = "flowwatch-demo"
DEFAULT_CLIENT_SECRET = "flowwatch-demo-secret"


class OptionError(ValueError):
    """An unusable option; the message names the variable and the value's problem."""


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    port: int = 8090
    seed: int = 1
    messages_per_minute: int = 60
    failure_ratio: float = 0.05
    history_days: float = 2.0
    rate_limit: int = 200           # API requests per second; 0 turns the limit off
    token_ttl: int = 3600           # seconds
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET

    def __repr__(self) -> str:
        # The secret stays out of logs and tracebacks.
        return (f"Options(host={self.host!r}, port={self.port}, seed={self.seed}, "
                f"messages_per_minute={self.messages_per_minute}, failure_ratio={self.failure_ratio}, "
                f"history_days={self.history_days}, rate_limit={self.rate_limit}, "
                f"token_ttl={self.token_ttl}, client_id={self.client_id!r})")


def _whole(name: str, low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise OptionError(f"{name}={raw!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise OptionError(f"{name}={raw!r} must be {bound}")
        return value
    return parse


def _decimal(name: str, low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise OptionError(f"{name}={raw!r} is not a number") from None
        if not low <= value <= high:
            raise OptionError(f"{name}={raw!r} must be between {low} and {high}")
        return value
    return parse


def _text(name: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if not raw.strip():
            raise OptionError(f"{name} must not be empty")
        return raw.strip()
    return parse


# field -> (environment variable, parser); the CLI flag is the field with dashes.
FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "host": ("SIMULATOR_HOST", _text("SIMULATOR_HOST")),
    "port": ("SIMULATOR_PORT", _whole("SIMULATOR_PORT", 1, 65535)),
    "seed": ("SIMULATOR_SEED", _whole("SIMULATOR_SEED", 0)),
    "messages_per_minute": ("SIMULATOR_MESSAGES_PER_MINUTE", _whole("SIMULATOR_MESSAGES_PER_MINUTE", 1, 600_000)),
    "failure_ratio": ("SIMULATOR_FAILURE_RATIO", _decimal("SIMULATOR_FAILURE_RATIO", 0.0, 1.0)),
    "history_days": ("SIMULATOR_HISTORY_DAYS", _decimal("SIMULATOR_HISTORY_DAYS", 0.0, 3650.0)),
    "rate_limit": ("SIMULATOR_RATE_LIMIT", _whole("SIMULATOR_RATE_LIMIT", 0)),
    "token_ttl": ("SIMULATOR_TOKEN_TTL", _whole("SIMULATOR_TOKEN_TTL", 1)),
    "client_id": ("SIMULATOR_CLIENT_ID", _text("SIMULATOR_CLIENT_ID")),
    "client_secret": ("SIMULATOR_CLIENT_SECRET", _text("SIMULATOR_CLIENT_SECRET")),
}


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator",
                                     description="A deterministic SAP Cloud Integration tenant (OData API v1).")
    for field, (variable, _) in FIELDS.items():
        parser.add_argument("--" + field.replace("_", "-"), dest=field, metavar="VALUE",
                            help=f"overrides {variable}")
    return parser


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Options:
    """Options from ``environ`` (empty counts as unset), then ``argv`` flags; OptionError on bad values."""
    environ = os.environ if environ is None else environ
    flags = vars(_argument_parser().parse_args(argv))
    values: dict[str, object] = {}
    for field, (variable, parse) in FIELDS.items():
        if flags.get(field) is not None:
            values[field] = parse(flags[field])
        elif environ.get(variable, "").strip():
            values[field] = parse(environ[variable])
    return Options(**values)
