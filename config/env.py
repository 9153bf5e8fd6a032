"""Strict readers for environment variables (standard library only).

Each raises ``EnvError`` naming the variable and the value it refused, so a
typo stops the start with one clear line instead of being guessed at.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Mapping

from config.redis_layout import LayoutError, parse_bool


class EnvError(LayoutError):
    """An environment variable has a value that cannot be used."""


def env_str(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    """A string, or the content of the file named by ``NAME_FILE``."""
    env = os.environ if env is None else env
    file_name = env.get(f"{name}_FILE", "").strip()
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise EnvError(f"{name}_FILE={file_name!r} cannot be read ({exc.strerror})") from None
    return env.get(name, default)


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    try:
        return parse_bool(name, env.get(name), default)
    except LayoutError as exc:
        raise EnvError(str(exc)) from None


def env_int(name: str, default: int, env: Mapping[str, str] | None = None, *, minimum: int | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EnvError(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise EnvError(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: str, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return [item.strip() for item in env.get(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent


def var_dir(env: Mapping[str, str] | None = None) -> Path:
    """The runtime folder: VAR_DIR, relative paths taken from the project root."""
    env = os.environ if env is None else env
    return (BASE_DIR / (env.get("VAR_DIR", "").strip() or "var")).resolve()


def secret_key(folder: Path, env: Mapping[str, str] | None = None) -> str:
    """DJANGO_SECRET_KEY, else one generated once into ``folder/secret_key``."""
    given = env_str("DJANGO_SECRET_KEY", "", env).strip()
    if given:
        return given
    path = folder / "secret_key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret_key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(tmp, path)  # fails if another starter won: all agree on one key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
