"""The strict reading of one Redis URL (standard library only).

redis-py, kombu and Celery each parse a Redis URL their own way and accept
much that they later misread: a query ``db`` wins over the path in redis-py,
port 0 silently becomes 6379, an unknown option reaches the connection as a
keyword it refuses, a space in a host fails only at connect.  Every rule here
refuses such a URL up front, with the variable's name and never its password.
``config/redis_layout.py`` applies them to each role.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult

# The options a URL may carry: those redis-py parses itself (its
# URL_QUERY_ARGUMENT_PARSERS) that neither restate the path, host or
# credentials nor configure TLS, with what each value must look like.
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_WHOLE = re.compile(r"[1-9][0-9]*")
_FLAG = re.compile(r"(?i)true|false|1|0")
OPTIONS: dict[str, tuple[re.Pattern[str], str]] = {
    "socket_timeout": (_NUMBER, "a number of seconds"),
    "socket_connect_timeout": (_NUMBER, "a number of seconds"),
    "health_check_interval": (_NUMBER, "a number of seconds"),
    "max_connections": (_WHOLE, "a whole number above 0"),
    "socket_keepalive": (_FLAG, "true or false"),
    "retry_on_timeout": (_FLAG, "true or false"),
    "protocol": (re.compile("[23]"), "2 or 3"),
    "client_name": (re.compile(r"[\w.:-]{1,64}"), "letters, digits and . : - _"),
}
# Options that restate what the URL's own parts say, and so could contradict
# them: redis-py lets ?db= win over the path, and ?password= would escape
# masking.
RESTATING = ("db", "host", "port", "username", "password", "path")
TLS_OPTION = "ssl_cert_reqs"
# A host name (letters, digits, - . _) or an IPv6 literal (urlsplit drops its brackets).
_HOST = re.compile(r"[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")


class LayoutError(ValueError):
    """A variable of the layout has a value that cannot be used."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``.

    Works on the text, not on a parse: a password with an unencoded ``/``,
    ``?`` or ``#`` makes ``urlsplit`` cut the userinfo in the wrong place, and
    such a URL is exactly the one that ends up in an error message.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, after = rest.rpartition("@")  # the last @ ends the userinfo
    user, colon, _secret = userinfo.partition(":")
    if not colon or any(c in user for c in "/?#"):
        return f"{scheme}://***@{after}"  # a lone userinfo may be a password too
    return f"{scheme}://{user}:***@{after}"


def check_text(variable: str, url: str) -> None:
    """No surrounding or inner whitespace, no control characters.

    Celery reads CELERY_BROKER_URL from the environment itself, untrimmed,
    and a space inside a URL is a host or password no client can use.
    """
    if url != url.strip():
        raise LayoutError(f"{variable}: leading or trailing whitespace around {mask_url(url.strip())!r}; "
                          "remove it")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise LayoutError(f"{variable}: {mask_url(url)!r} holds a space or control character; "
                          "percent-encode one in a password (a space is %20)")


def check_userinfo(variable: str, url: str) -> None:
    """Refuse a user or password holding an unencoded ``/ ? # @``.

    URL parsers split such a URL in different places (``redis://:p@ss@h/0``
    is the password ``p@ss`` to one and the host ``ss@h`` to another), so a
    guess could send the password to the wrong server or as a host name.
    """
    _, _, rest = url.strip().partition("://")
    userinfo = rest.rpartition("@")[0]
    if any(c in userinfo for c in "/?#"):
        raise LayoutError(
            f"{variable}: malformed URL {mask_url(url)!r}: the user or password holds an unencoded "
            "'/', '?' or '#'; percent-encode it (/ is %2F, ? is %3F, # is %23)"
        )
    if "@" in userinfo:
        raise LayoutError(
            f"{variable}: malformed URL {mask_url(url)!r}: the user or password holds an unencoded "
            "'@'; percent-encode it as %40 (redis://:p%40ss@host/0)"
        )


def check_host_and_port(variable: str, url: str, parts: SplitResult) -> tuple[str, int]:
    """The host and port; ``parts.port`` may raise ValueError (caller reports it)."""
    host = parts.hostname or ""
    if not host:
        raise LayoutError(f"{variable}: no host in {mask_url(url)!r}")
    if not _HOST.fullmatch(host):
        raise LayoutError(f"{variable}: host {host!r} in {mask_url(url)!r} is not a host name or address")
    port = parts.port
    if port == 0:  # redis-py and kombu would quietly use 6379 instead
        raise LayoutError(f"{variable}: port 0 in {mask_url(url)!r} is not a port; use 1-65535")
    return host, 6379 if port is None else port


def parse_db(variable: str, url: str, path: str, max_db: int) -> int:
    text = path.strip("/") or "0"
    if not re.fullmatch(r"[0-9]+", text):
        raise LayoutError(f"{variable}: database {text!r} in {mask_url(url)!r} is not a number")
    db = int(text)
    if db > max_db:
        raise LayoutError(f"{variable}: database {db} is out of range 0-{max_db}")
    return db


def check_query(variable: str, query: tuple[tuple[str, str], ...], insecure_reqs: set[str]) -> None:
    """Each option known, lower-case, given once, and with a value of its kind."""
    names = [name for name, _ in query]
    for name, value in query:
        _check_option(variable, name, value, insecure_reqs)
        if names.count(name) > 1:  # redis-py keeps the first, kombu the last
            raise LayoutError(f"{variable}: URL option {name!r} is given more than once")


def _check_option(variable: str, name: str, value: str, insecure_reqs: set[str]) -> None:
    lowered = name.lower()
    if lowered in RESTATING:
        raise LayoutError(f"{variable}: URL option {name!r} is not accepted: the {lowered} belongs in "
                          "the URL itself (redis://user:password@host:port/db); a query copy could "
                          "contradict it")
    if name != lowered and (lowered in OPTIONS or lowered.startswith("ssl_")):
        raise LayoutError(f"{variable}: URL option {name!r} must be lower-case ({lowered}): Redis "
                          "clients do not recognise it otherwise")
    if name.startswith("ssl_"):
        _check_tls_option(variable, name, value, insecure_reqs)
        return
    if name not in OPTIONS:
        raise LayoutError(f"{variable}: unknown URL option {name!r}; accepted: "
                          f"{', '.join(sorted(OPTIONS))}, {TLS_OPTION}=none")
    pattern, meaning = OPTIONS[name]
    if not pattern.fullmatch(value):
        raise LayoutError(f"{variable}: {name}={value!r} is not {meaning}")


def _check_tls_option(variable: str, name: str, value: str, insecure_reqs: set[str]) -> None:
    """TLS settings come from the layout only (REDIS_CA_CERTS, certifi,
    REDIS_TLS_INSECURE): redis-py and kombu let ``ssl_*`` options in a URL
    override them, so any other ``ssl_*`` option could quietly weaken
    verification and is refused."""
    if name != TLS_OPTION:
        raise LayoutError(
            f"{variable}: URL option {name!r} is not accepted; TLS is configured by "
            "REDIS_CA_CERTS and REDIS_TLS_INSECURE (docs/configuration.md)"
        )
    if value.lower() not in insecure_reqs:
        # Celery reads the broker URL from the environment and kombu lets its
        # ssl_* options replace broker_use_ssl: REDIS_CA_CERTS would be lost.
        raise LayoutError(
            f"{variable}: drop ?ssl_cert_reqs={value}: rediss:// always verifies certificates "
            "(against REDIS_CA_CERTS or certifi); only ssl_cert_reqs=none is accepted, "
            "with REDIS_TLS_INSECURE=true"
        )
