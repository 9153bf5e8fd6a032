"""The tenant client against a tenant that answers badly, over real HTTP."""

from __future__ import annotations

import logging
import time

import pytest

from apps.tenants.client import TenantAuthError, TenantClient, TenantConfig, TenantError, TenantResponseError
from tests.servers import free_port
from tests.support.bad_tenant import Answer, BadTenant

SECRET = "bad-tenant-secret-9c2e"
LOGS = "/api/v1/MessageProcessingLogs"
TOKEN = "/oauth/token"


@pytest.fixture
def tenant():
    server = BadTenant().start()
    yield server
    server.stop()


def envelope(text: str) -> dict:
    return {"error": {"code": "Error", "message": {"lang": "en", "value": text}}}


def client_for(tenant: BadTenant, sleeps: list[float] | None = None, **overrides) -> TenantClient:
    fields = dict(name="bad", api_url=tenant.url, auth="basic", client_id="user", client_secret=SECRET,
                  max_retries=2)
    recorded = sleeps if sleeps is not None else []
    return TenantClient(TenantConfig(**{**fields, **overrides}), sleep=recorded.append)


def page_of(count: int, next_link: str | None = None) -> Answer:
    d: dict = {"results": [{"MessageGuid": f"G{n}"} for n in range(count)]}
    if next_link:
        d["__next"] = next_link
    return Answer.json({"d": d})


def test_a_body_cut_short_is_retried_then_reported_as_a_response_error(tenant):
    tenant.answers[LOGS] = Answer(body=b'{"d": {"results": [', declared_length=5000)
    with client_for(tenant) as client, pytest.raises(TenantResponseError) as cut:
        client.get_page("MessageProcessingLogs")
    assert "cut short" in str(cut.value) and cut.value.path == LOGS
    assert len(tenant.requests) == 3          # the first try and max_retries=2 more


def test_json_that_ends_early_is_a_response_error(tenant):
    tenant.answers[LOGS] = Answer(body=b'{"d": {"results": [{"MessageGuid": "A"}')
    with client_for(tenant) as client, pytest.raises(TenantResponseError, match="not valid JSON"):
        client.get_page("MessageProcessingLogs")


@pytest.mark.parametrize("body, problem", [
    ({"d": {"results": "none"}}, "expected a collection"),
    ({"value": []}, "expected a collection"),
    ({"d": {"results": [{"MessageGuid": "A"}, "B"]}}, "every entry of d.results must be an object"),
    ({"d": {"results": [], "__next": 1000}}, "__next must be a URL"),
])
def test_a_collection_of_the_wrong_shape_is_a_response_error(tenant, body, problem):
    tenant.answers[LOGS] = Answer.json(body)
    with client_for(tenant) as client, pytest.raises(TenantResponseError, match=problem):
        client.get_page("MessageProcessingLogs")


def test_a_page_of_100000_entries_is_refused(tenant):
    tenant.answers[LOGS] = Answer.json({"d": {"results": [{}] * 100_000}})
    with client_for(tenant) as client, pytest.raises(TenantResponseError) as oversize:
        client.get_page("MessageProcessingLogs")
    assert "a page of 100000 entries is more than the limit of 1000" in str(oversize.value)


def test_an_answer_over_the_byte_limit_is_refused_while_reading(tenant):
    tenant.answers[LOGS] = Answer.json({"d": {"results": [{"Text": "x" * 10_000}]}})
    with client_for(tenant, max_body_bytes=4096) as client, pytest.raises(TenantResponseError, match="4096 bytes"):
        client.get_page("MessageProcessingLogs")


def test_a_next_link_to_another_host_is_not_followed(tenant):
    tenant.answers[LOGS] = page_of(2, "https://collector.example/steal?$skiptoken=2")
    with client_for(tenant) as client, pytest.raises(TenantResponseError, match="another host"):
        client.get_page("MessageProcessingLogs")


def test_absolute_and_root_relative_next_links_are_followed(tenant):
    tenant.answers[LOGS] = [page_of(3, f"{tenant.url}/MessageProcessingLogs?$skiptoken=3"),
                            page_of(2, "/api/v1/MessageProcessingLogs?$skiptoken=5"), page_of(1)]
    with client_for(tenant) as client:
        sizes = [len(client.get_page("MessageProcessingLogs").entries)]
        page = client.get_page("MessageProcessingLogs")
        sizes.append(len(page.entries))
        assert page.next_url == f"{tenant.url}/MessageProcessingLogs?$skiptoken=5"
    assert sizes == [3, 2]


def test_a_full_last_page_without_next_is_continued_with_skip(tenant):
    """A tenant that reads $top as a total stops sending __next; nothing is lost."""
    tenant.answers[LOGS] = [page_of(2), page_of(2), page_of(1)]
    from datetime import datetime, timezone
    with client_for(tenant) as client:
        pages = list(client.message_logs(datetime(2026, 1, 1, tzinfo=timezone.utc),
                                         datetime(2026, 1, 2, tzinfo=timezone.utc), page_size=2))
    assert [len(p.entries) for p in pages] == [2, 2, 1]
    assert "$skip=2" in tenant.requests[1][1] and "$skip=4" in tenant.requests[2][1]


def test_retry_after_is_honoured_before_the_next_try(tenant):
    sleeps: list[float] = []
    tenant.answers[LOGS] = [Answer.json(envelope("slow down"), status=429, **{"Retry-After": "7"}), page_of(1)]
    with client_for(tenant, sleeps) as client:
        assert len(client.get_page("MessageProcessingLogs").entries) == 1
    assert len(sleeps) == 1 and 7 <= sleeps[0] <= 7.25


def test_without_retry_after_the_wait_doubles_with_jitter_up_to_the_cap(tenant):
    sleeps: list[float] = []
    tenant.answers[LOGS] = Answer(status=502, body=b"<html><body>Bad Gateway</body></html>",
                                  headers={"Content-Type": "text/html"})
    with client_for(tenant, sleeps, max_retries=4, backoff_base=1.0, backoff_cap=5.0) as client:
        with pytest.raises(TenantError) as failed:
            client.get_page("MessageProcessingLogs")
    assert failed.value.status == 502 and "<html>" not in str(failed.value)
    assert [(low <= s <= high) for s, (low, high) in zip(sleeps, [(0.5, 1), (1, 2), (2, 4), (2.5, 5)])] == [True] * 4


def test_a_401_fetches_a_new_token_once_and_then_gives_up(tenant):
    tenant.answers[TOKEN] = Answer.json({"access_token": "t", "token_type": "bearer", "expires_in": 3600})
    tenant.answers[LOGS] = Answer.json(envelope("token expired"), status=401)
    config = dict(auth="oauth", token_url=tenant.url.replace("/api/v1", TOKEN))
    with client_for(tenant, **config) as client, pytest.raises(TenantAuthError) as refused:
        client.get_page("MessageProcessingLogs")
    paths = [target.split("?")[0] for _, target, _ in tenant.requests]
    assert paths == [TOKEN, LOGS, TOKEN, LOGS]
    assert refused.value.status == 401 and "token expired" in str(refused.value)


def test_the_token_is_fetched_with_basic_auth_and_renewed_before_it_expires(tenant):
    tenant.answers[TOKEN] = Answer.json({"access_token": "short", "token_type": "bearer", "expires_in": "1"})
    tenant.answers[LOGS] = page_of(1)
    config = dict(auth="oauth", token_url=tenant.url.replace("/api/v1", TOKEN))
    with client_for(tenant, **config) as client:
        client.get_page("MessageProcessingLogs")
        time.sleep(1.0)               # past the 1 s lifetime less its tenth
        client.get_page("MessageProcessingLogs")
    tokens = [(target, headers) for method, target, headers in tenant.requests if target.startswith(TOKEN)]
    assert len(tokens) == 2
    assert tokens[0][0] == f"{TOKEN}?grant_type=client_credentials"
    assert tokens[0][1]["Authorization"].startswith("Basic ")
    reads = [headers["Authorization"] for _, target, headers in tenant.requests if target.startswith(LOGS)]
    assert reads == ["Bearer short", "Bearer short"]


def test_refused_client_credentials_are_an_auth_error_without_the_secret(tenant, caplog):
    caplog.set_level(logging.DEBUG)
    tenant.answers[TOKEN] = Answer.json({"error": "unauthorized", "error_description": "Bad credentials"},
                                        status=401)
    config = dict(auth="oauth", token_url=tenant.url.replace("/api/v1", TOKEN))
    with client_for(tenant, **config) as client, pytest.raises(TenantAuthError) as refused:
        client.packages()
    assert str(refused.value) == "tenant 'bad': HTTP 401 on /oauth/token: unauthorized: Bad credentials"
    assert SECRET not in caplog.text + repr(client) + repr(client.config)


def test_a_tenant_that_holds_the_answer_past_the_read_timeout_is_an_error(tenant):
    tenant.answers[LOGS] = Answer.json({"d": {"results": []}})
    tenant.answers[LOGS].delay = 1.5
    with client_for(tenant, read_timeout=0.5, max_retries=1) as client, pytest.raises(TenantError) as slow:
        client.get_page("MessageProcessingLogs")
    assert slow.value.status is None and "ReadTimeout" in str(slow.value)


def test_a_tenant_that_is_not_there_is_an_error_after_the_retries():
    sleeps: list[float] = []
    config = TenantConfig("gone", f"http://127.0.0.1:{free_port()}/api/v1", "basic", client_id="u",
                          client_secret=SECRET, max_retries=3)
    with TenantClient(config, sleep=sleeps.append) as client, pytest.raises(TenantError) as gone:
        client.runtime_artifacts()
    assert len(sleeps) == 3 and "ConnectError" in str(gone.value) and SECRET not in str(gone.value)


def test_a_download_that_is_not_a_zip_is_a_response_error(tenant):
    tenant.answers["/api/v1/IntegrationDesigntimeArtifacts(Id='A',Version='active')/$value"] = Answer(
        body=b"<html>login</html>", headers={"Content-Type": "text/html"})
    with client_for(tenant) as client, pytest.raises(TenantResponseError, match="not a zip file"):
        client.download_artifact("A")


def test_a_download_keeps_only_the_file_name_the_tenant_sends(tenant):
    zipped = b"PK\x03\x04" + b"\x00" * 26
    tenant.answers["/api/v1/IntegrationDesigntimeArtifacts(Id='A',Version='active')/$value"] = Answer(
        body=zipped, headers={"Content-Type": "application/zip",
                              "Content-Disposition": 'attachment; filename="../../etc/A.zip"'})
    with client_for(tenant) as client:
        assert client.download_artifact("A") == ("A.zip", zipped)
