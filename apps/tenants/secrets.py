"""Tenant secrets at rest: Fernet with a key kept in VAR_DIR.

The key lives in ``VAR_DIR/tenant-secrets.key`` (mode 0600), generated once
the same way the Django secret key is: written to a private temporary file
and hard-linked into place, so two processes starting together agree on one
key.  ``TENANT_SECRETS_KEY`` (or ``TENANT_SECRETS_KEY_FILE``) overrides it,
for installations whose hosts share no VAR_DIR.  Losing the key loses the
stored secrets (they must be entered again), never the message data.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from config.env import write_private

KEY_FILE_NAME = "tenant-secrets.key"


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted with this installation's key."""


def key_path(folder: Path | None = None) -> Path:
    return Path(folder or settings.VAR_DIR) / KEY_FILE_NAME


def ensure_key_file(path: Path) -> bytes:
    """The key in ``path``, generated once with mode 0600."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Kept if another process wrote one first: everyone reads the winner's key.
        write_private(path, Fernet.generate_key().decode("ascii"), replace=False)
    return path.read_bytes().strip()


@lru_cache(maxsize=None)
def _fernet() -> Fernet:
    given = getattr(settings, "TENANT_SECRETS_KEY", "")
    return Fernet(given.encode() if given else ensure_key_file(key_path()))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode() if secret else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("the tenant secret cannot be decrypted with this installation's key; "
                               "enter it again") from None
