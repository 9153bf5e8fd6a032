"""The tenant client: OData API v1 JSON over httpx, for SAP Cloud Integration tenants
and the bundled simulator alike.

Plain Python (no Django import), so Celery tasks, management commands and tests use it
alike. One client keeps one connection pool; close it (or use ``with``) when done.
Credentials and tokens never appear in exceptions, reprs or logs.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Literal
from urllib.parse import quote

import httpx

from apps.tenants.odata import (  # noqa: F401  (re-exported: the client's public interface)
    TenantAuthError, TenantError, TenantResponseError, datetime_literal, json_loads, parse_log, parse_odata_date,
)

logger = logging.getLogger("flowwatch.tenants")

PAGE_LIMIT = 1000                 # the API's own cap on entries per call
_FILENAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)


@dataclass(frozen=True)
class TenantConfig:
    name: str
    api_url: str                    # service root ending in /api/v1
    auth: Literal["oauth", "basic"]
    token_url: str = ""
    client_id: str = ""             # oauth client id, or basic user
    client_secret: str = field(default="", repr=False)   # oauth secret, or basic password
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 5            # for 429/5xx/transport errors
    max_page_entries: int = 1000    # more than this in one page -> TenantResponseError
    backoff_base: float = 0.5       # seconds before the first retry; doubles per retry
    backoff_cap: float = 30.0       # no wait (nor Retry-After) is honoured beyond this
    max_body_bytes: int = 64 * 1024 * 1024   # a JSON answer larger than this is refused
    max_download_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"tenant {self.name!r}: api_url must start with http:// or https://")
        if self.auth not in ("oauth", "basic"):
            raise ValueError(f"tenant {self.name!r}: auth must be 'oauth' or 'basic', not {self.auth!r}")
        if self.auth == "oauth" and not self.token_url.startswith(("http://", "https://")):
            raise ValueError(f"tenant {self.name!r}: oauth needs a token_url starting with http:// or https://")


@dataclass
class Page:
    entries: list[dict]             # raw OData entries (dicts as the tenant sent them)
    next_url: str | None            # absolute URL to follow, or None


def _key(value: str) -> str:
    """An entity key in a path: quoted, ' doubled, everything else percent-encoded (':' as %3A)."""
    return "('" + quote(value.replace("'", "''"), safe="") + "')"


def _query(params: dict[str, str]) -> str:
    # Spaces as %20 and quotes kept literal: the form OData servers document and accept.
    return "&".join(f"{name}={quote(value, safe=chr(39) + ':(),')}" for name, value in params.items())


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _tenant_message(response: httpx.Response, body: bytes) -> str:
    """The tenant's own error text: the OData envelope, an OAuth error, or the start of the body."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
        text = message.get("value") if isinstance(message, dict) else message
        if isinstance(text, str) and text:
            return text
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"{data['error']}: {data.get('error_description', '')}".rstrip(": ")
    text = body.decode("utf-8", "replace").strip()
    kind = response.headers.get("content-type", "no content type")
    if not text:
        return f"{response.reason_phrase or 'error'} (empty body)"
    return text[:300] if "html" not in kind else f"{response.reason_phrase} (an HTML page, {kind})"


class TenantClient:
    """One tenant's API. Not thread-safe: give each thread (or task) its own client."""

    def __init__(self, config: TenantConfig, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._root = httpx.URL(config.api_url.rstrip("/") + "/")
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout)
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False,
                                  headers={"Accept": "application/json"})
        self._token: str | None = None
        self._token_expires = 0.0     # time.monotonic() after which the token is fetched anew

    def __repr__(self) -> str:
        return f"<TenantClient {self.config.name!r} {self.config.api_url}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "TenantClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- message processing logs ------------------------------------------------

    def message_logs(self, log_end_from: datetime, log_end_to: datetime, *,
                     page_size: int = 1000, expand: str = "", select: tuple[str, ...] = ()) -> Iterator[Page]:
        """Pages of the logs with ``from <= LogEnd < to``, oldest LogEnd first, following __next.

        ``expand`` (e.g. ``"CustomHeaderProperties"``) asks for that navigation inline
        with each entry; a tenant that ignores it leaves it deferred.  ``select`` names
        the only properties to send (``$select``; an expanded navigation must be among
        them); a tenant that ignores it sends them all.
        A tenant that ends a full page without __next is asked on with $skip, so a
        tenant that reads $top as a total instead of a page size loses nothing."""
        if not 1 <= page_size <= min(PAGE_LIMIT, self.config.max_page_entries):
            raise ValueError(f"page_size must be between 1 and {min(PAGE_LIMIT, self.config.max_page_entries)}")
        params = {"$filter": f"LogEnd ge {datetime_literal(log_end_from)} and LogEnd lt {datetime_literal(log_end_to)}",
                  "$orderby": "LogEnd", "$top": str(page_size), "$format": "json"}
        if expand:
            params["$expand"] = expand
        if select:
            params["$select"] = ",".join(select)
        url: str | None = str(self._url("MessageProcessingLogs", params))
        received = 0
        while url:
            page = self.get_page(url)
            if page.entries or received == 0:
                yield page
            count, url = len(page.entries), page.next_url
            del page  # not held while the next page is read: one page of objects at a time, not two
            received += count
            if url is None and count == page_size:
                url = str(self._url("MessageProcessingLogs", {**params, "$skip": str(received)}))

    def get_page(self, url: str) -> Page:
        """One page by absolute or root-relative URL (e.g. a saved ``next_url``)."""
        target = self._resolve(url)
        data = self._get_json(target)
        d = data.get("d") if isinstance(data, dict) else None
        results = d.get("results") if isinstance(d, dict) else d
        if not isinstance(results, list):
            raise self._bad(target, 'expected a collection {"d": {"results": [...]}}')
        if len(results) > self.config.max_page_entries:
            raise self._bad(target, f"a page of {len(results)} entries is more than the limit of "
                                    f"{self.config.max_page_entries}")
        if not all(isinstance(entry, dict) for entry in results):
            raise self._bad(target, "every entry of d.results must be an object")
        link = d.get("__next") if isinstance(d, dict) else None
        if link is not None and (not isinstance(link, str) or not link.strip()):
            raise self._bad(target, f"__next must be a URL, got {link!r}")
        return Page(results, str(self._resolve(link)) if link else None)

    def message_log(self, guid: str) -> dict:
        return self._entity(f"MessageProcessingLogs{_key(guid)}")

    def error_text(self, guid: str) -> str | None:
        """The message's error text, or None when the tenant has none for it (404)."""
        try:
            _, body = self._call("GET", self._url(f"MessageProcessingLogs{_key(guid)}/ErrorInformation/$value"),
                                 self.config.max_body_bytes)
        except TenantError as error:
            if error.status == 404:
                return None
            raise
        return body.decode("utf-8", "replace")

    def custom_headers(self, guid: str) -> list[dict]:
        """[{Id, Name, Value}] of the message's custom header properties."""
        found = []
        for entry in self._collect(f"MessageProcessingLogs{_key(guid)}/CustomHeaderProperties"):
            row = {name: entry.get(name) for name in ("Id", "Name", "Value")}
            if not isinstance(row["Name"], str) or not all(isinstance(row[k], (str, type(None))) for k in row):
                raise self._bad(self._url("CustomHeaderProperties"),
                                f"a custom header property of {guid!r} needs a string Name, Id and Value: {row!r}")
            found.append(row)
        return found

    def attachments(self, guid: str) -> list[dict]:
        return self._collect(f"MessageProcessingLogs{_key(guid)}/Attachments")

    def message_store_entries(self, guid: str) -> list[dict]:
        return self._collect(f"MessageProcessingLogs{_key(guid)}/MessageStoreEntries")

    def payload(self, entry_id: str) -> bytes:
        _, body = self._call("GET", self._url(f"MessageStoreEntries{_key(entry_id)}/$value"),
                             self.config.max_download_bytes)
        return body

    # -- integration content ----------------------------------------------------

    def packages(self) -> list[dict]:
        return self._collect("IntegrationPackages")

    def designtime_artifacts(self, package_id: str) -> list[dict]:
        return self._collect(f"IntegrationPackages{_key(package_id)}/IntegrationDesigntimeArtifacts")

    def download_artifact(self, artifact_id: str, version: str = "active") -> tuple[str, bytes]:
        """(filename, zip bytes) of a design-time artifact."""
        url = self._url(f"IntegrationDesigntimeArtifacts(Id={_key(artifact_id)[1:-1]},"
                        f"Version={_key(version)[1:-1]})/$value")
        response, body = self._call("GET", url, self.config.max_download_bytes)
        if not body.startswith(b"PK\x03\x04"):
            raise self._bad(url, f"artifact {artifact_id!r} is not a zip file "
                                 f"({response.headers.get('content-type', 'no content type')})")
        found = _FILENAME.search(response.headers.get("content-disposition", ""))
        name = found.group(1).strip() if found else ""
        # Only a plain file name is kept: a tenant-sent path never picks where a file lands.
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
        return (name if name not in ("", ".", "..") else f"{artifact_id}.zip"), body

    def runtime_artifacts(self) -> list[dict]:
        return self._collect("IntegrationRuntimeArtifacts")

    # -- requests -------------------------------------------------------------------

    def _url(self, path: str, params: dict[str, str] | None = None) -> httpx.URL:
        return httpx.URL(str(self._root) + path + ("?" + _query(params) if params else ""))

    def _resolve(self, link: str) -> httpx.URL:
        """A link (absolute, root-relative, or relative to the service root) -> absolute URL on the tenant's host.
        A link to another host is refused: following it would hand the credentials to that host."""
        target = self._root.join(link.strip())
        if (target.scheme, target.host, target.port) != (self._root.scheme, self._root.host, self._root.port):
            raise self._bad(self._root, f"refusing to follow a link to another host: {target.scheme}://{target.host}")
        return target

    def _bad(self, url: httpx.URL, problem: str) -> TenantResponseError:
        return TenantResponseError(problem, tenant=self.config.name, path=url.path)

    def _entity(self, path: str) -> dict:
        url = self._url(path, {"$format": "json"})
        data = self._get_json(url)
        d = data.get("d") if isinstance(data, dict) else None
        if not isinstance(d, dict):
            raise self._bad(url, 'expected an entity {"d": {...}}')
        return d

    def _collect(self, path: str) -> list[dict]:
        """Every entry of a collection, through all its pages."""
        entries: list[dict] = []
        url: str | None = str(self._url(path, {"$format": "json"}))
        seen: set[str] = set()
        while url:
            if url in seen:
                raise self._bad(httpx.URL(url), "the tenant's __next points back to a page already read")
            seen.add(url)
            page = self.get_page(url)
            entries.extend(page.entries)
            url = page.next_url
        return entries

    def _get_json(self, url: httpx.URL) -> Any:
        _, body = self._call("GET", url, self.config.max_body_bytes)
        try:
            return json_loads(body)  # a page of 1000 entries: the largest share of reading it
        except ValueError as error:
            raise self._bad(url, f"the answer is not valid JSON, truncated or malformed ({error})") from None

    def _call(self, method: str, url: httpx.URL, limit: int, *, token: bool = False) -> tuple[httpx.Response, bytes]:
        """One request, retried on transport errors, 429 and 5xx; on a 401 the token is fetched anew once."""
        attempt, refreshed = 0, False
        while True:
            try:
                response, body = self._send(method, url, limit, token)
            except httpx.TransportError as error:
                attempt = self._retry_or_raise(attempt, None, self._transport_error(error, url))
                continue
            status = response.status_code
            if status == 401 and not token and self.config.auth == "oauth" and not refreshed:
                refreshed, self._token = True, None
                logger.info("tenant %r: 401 on %s, fetching a new access token", self.config.name, url.path)
                continue
            if status == 429 or status >= 500:
                error = self._answer_error(TenantError, response, body, url)
                attempt = self._retry_or_raise(attempt, _retry_after(response), error)
                continue
            if status in (401, 403) or (token and status == 400):
                raise self._answer_error(TenantAuthError, response, body, url)
            if not 200 <= status < 300:
                raise self._answer_error(TenantError, response, body, url)
            return response, body

    def _send(self, method: str, url: httpx.URL, limit: int, token: bool) -> tuple[httpx.Response, bytes]:
        headers = {"Authorization": self._basic_header() if token else self._authorization()}
        with self._http.stream(method, url, headers=headers) as response:
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise self._bad(url, f"the answer is larger than {limit} bytes")
                chunks.append(chunk)
        return response, b"".join(chunks)

    def _retry_or_raise(self, attempt: int, retry_after: float | None, error: TenantError) -> int:
        if attempt >= self.config.max_retries:
            raise error
        if retry_after is not None:
            # Honour the tenant's wait, plus a little jitter so that clients do not return in step.
            delay = min(self.config.backoff_cap, retry_after) + random.uniform(0, self.config.backoff_base / 2)
        else:
            ceiling = min(self.config.backoff_cap, self.config.backoff_base * 2 ** attempt)
            delay = random.uniform(ceiling / 2, ceiling)
        logger.warning("%s; retry %d of %d in %.1fs", error, attempt + 1, self.config.max_retries, delay)
        self._sleep(delay)
        return attempt + 1

    def _transport_error(self, error: httpx.TransportError, url: httpx.URL) -> TenantError:
        if isinstance(error, httpx.RemoteProtocolError):
            return self._bad(url, f"the answer was cut short or broken ({error})")
        return TenantError(f"could not talk to the tenant: {type(error).__name__}: {error}",
                           tenant=self.config.name, path=url.path)

    def _answer_error(self, kind: type[TenantError], response: httpx.Response, body: bytes,
                      url: httpx.URL) -> TenantError:
        return kind(_tenant_message(response, body), tenant=self.config.name, path=url.path,
                    status=response.status_code)

    # -- credentials ------------------------------------------------------------------

    def _basic_header(self) -> str:
        pair = f"{self.config.client_id}:{self.config.client_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _authorization(self) -> str:
        if self.config.auth == "basic":
            return self._basic_header()
        if self._token is None or time.monotonic() >= self._token_expires:
            self._fetch_token()
        return f"Bearer {self._token}"

    def _fetch_token(self) -> None:
        url = httpx.URL(self.config.token_url)
        if "grant_type" not in url.params:
            url = url.copy_merge_params({"grant_type": "client_credentials"})
        _, body = self._call("POST", url, self.config.max_body_bytes, token=True)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        access = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(access, str) or not access:
            raise self._bad(url, "the token endpoint answered without an access_token")
        try:
            lifetime = float(data.get("expires_in", 300))
        except (TypeError, ValueError):
            raise self._bad(url, f"expires_in must be a number, got {data.get('expires_in')!r}") from None
        # Fetched again a little before the tenant's expiry (a tenth of the lifetime, at most a minute).
        self._token = access
        self._token_expires = time.monotonic() + max(0.0, lifetime - min(60.0, lifetime / 10))
        logger.info("tenant %r: fetched an access token valid for %.0fs", self.config.name, lifetime)
