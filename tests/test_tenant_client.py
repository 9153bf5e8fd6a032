"""The tenant client against the real simulator process, over real HTTP."""

from __future__ import annotations

import logging
import zipfile
from datetime import datetime, timedelta, timezone
from io import BytesIO

import httpx
import pytest

from apps.tenants.client import Page, TenantAuthError, TenantClient, TenantError, datetime_literal, parse_log


def stable_window(minutes: int = 10) -> tuple[datetime, datetime]:
    """A window that ended 30 minutes ago: every retried message in it has settled."""
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)
    return end - timedelta(minutes=minutes), end


def guids(pages: list[Page]) -> list[str]:
    return [entry["MessageGuid"] for page in pages for entry in page.entries]


def reference(simulator, start: datetime, end: datetime) -> list[str]:
    """The window as one unthrottled basic-auth reader sees it, in LogEnd order."""
    with TenantClient(simulator.config(auth="basic")) as client:
        return guids(list(client.message_logs(start, end)))


def raw_get(simulator, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{simulator.url}/{path}", params=params, auth=(simulator.client_id, simulator.client_secret),
                     timeout=30)


def test_it_reads_a_window_page_by_page_through_relative_next_links(simulator):
    start, end = stable_window(minutes=20)
    first = raw_get(simulator, "MessageProcessingLogs", **{"$top": "100", "$orderby": "LogEnd",
                    "$filter": f"LogEnd ge {datetime_literal(start)} and LogEnd lt {datetime_literal(end)}"})
    assert first.json()["d"]["__next"].startswith("MessageProcessingLogs?$skiptoken=100")
    with TenantClient(simulator.config()) as client:
        pages = list(client.message_logs(start, end, page_size=100))
    records = [parse_log(entry) for page in pages for entry in page.entries]
    between = f"LogEnd ge {datetime_literal(start)} and LogEnd lt {datetime_literal(end)}"
    count = int(raw_get(simulator, "MessageProcessingLogs/$count", **{"$filter": between}).text)
    assert len(pages) == -(-count // 100) and len(records) == count > 1000
    assert len({r["guid"] for r in records}) == count
    assert [r["log_end"] for r in records] == sorted(r["log_end"] for r in records)
    assert all(start <= r["log_end"] < end for r in records)
    assert all(page.next_url.startswith(simulator.url + "/MessageProcessingLogs?") for page in pages[:-1])
    assert pages[-1].next_url is None


def test_a_saved_next_link_resumes_the_read_where_it_stopped(simulator):
    start, end = stable_window()
    with TenantClient(simulator.config()) as client:
        pages = client.message_logs(start, end, page_size=200)
        first = next(pages)
        pages.close()
        rest, url = [], first.next_url
        while url:
            page = client.get_page(url)
            rest.append(page)
            url = page.next_url
    assert guids([first, *rest]) == reference(simulator, start, end)


def test_filters_select_by_status_iflow_and_log_start(simulator):
    start, end = stable_window(minutes=60)
    when = f"LogStart ge {datetime_literal(start)} and LogStart lt {datetime_literal(end)}"
    with TenantClient(simulator.config()) as client:
        failed = client.get_page(f"MessageProcessingLogs?$filter={when} and (Status eq 'FAILED' or "
                                 "Status eq 'ESCALATED') and IntegrationFlowName eq 'Invoice_Send'")
        others = client.get_page(f"MessageProcessingLogs?$filter={when} and Status ne 'COMPLETED'"
                                 "&$orderby=LogStart desc&$inlinecount=allpages")
    assert failed.entries
    assert {(e["Status"] in ("FAILED", "ESCALATED"), e["IntegrationFlowName"]) for e in failed.entries} == {
        (True, "Invoice_Send")}
    starts = [parse_log(e)["log_start"] for e in others.entries]
    assert starts == sorted(starts, reverse=True) and all(start <= s < end for s in starts)
    statuses = {e["Status"] for e in others.entries}
    assert "FAILED" in statuses and "COMPLETED" not in statuses


def test_a_token_expired_mid_paging_is_fetched_anew_and_no_page_is_lost(simulator, caplog):
    start, end = stable_window(minutes=15)
    expected = reference(simulator, start, end)
    before = simulator.stats()
    read: list[Page] = []
    caplog.set_level(logging.DEBUG)
    with TenantClient(simulator.config()) as client:
        for page in client.message_logs(start, end, page_size=300):
            read.append(page)
            if len(read) == 2:
                assert simulator.expire_tokens() >= 1
    after = simulator.stats()
    assert guids(read) == expected
    assert after["unauthorized"] - before["unauthorized"] == 1
    assert after["tokens_issued"] - before["tokens_issued"] == 2
    assert "fetching a new access token" in caplog.text
    assert simulator.client_secret not in caplog.text


def test_a_429_storm_slows_the_read_without_losing_or_duplicating_a_page(simulator, caplog):
    start, end = stable_window(minutes=5)
    expected = reference(simulator, start, end)
    simulator.set_rate_limit(3)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        import time
        time.sleep(seconds)

    before = simulator.stats()
    with TenantClient(simulator.config(auth="basic"), sleep=sleep) as client:
        read = list(client.message_logs(start, end, page_size=50))
    throttled = simulator.stats()["throttled"] - before["throttled"]
    assert guids(read) == expected and len(read) >= 10
    assert throttled >= 1 and len(slept) == throttled
    assert min(slept) >= 1.0          # the simulator's Retry-After
    assert "429" in caplog.text


def test_retries_give_up_with_the_tenant_status_after_max_retries(simulator):
    simulator.set_rate_limit(1)
    with TenantClient(simulator.config(auth="basic", max_retries=2), sleep=lambda s: None) as client:
        with pytest.raises(TenantError) as raised:
            for _ in range(5):
                client.packages()
    assert raised.value.status == 429
    assert "Rate limit exceeded" in str(raised.value)


def test_an_error_envelope_becomes_a_tenant_error_naming_tenant_path_and_message(simulator):
    with TenantClient(simulator.config()) as client:
        with pytest.raises(TenantError) as missing:
            client.message_log("AGnothing")
        with pytest.raises(TenantError) as malformed:
            client.get_page("MessageProcessingLogs?$filter=LogEnd ge datetime'2026-02-30T00:00:00'")
    assert missing.value.status == 404 and missing.value.path == "/api/v1/MessageProcessingLogs('AGnothing')"
    assert str(missing.value) == ("tenant 'simulator': HTTP 404 on /api/v1/MessageProcessingLogs('AGnothing'): "
                                  "Message processing log 'AGnothing' does not exist")
    assert malformed.value.status == 400 and "day is out of range for month" in str(malformed.value)


@pytest.mark.parametrize("auth", ["oauth", "basic"])
def test_wrong_credentials_raise_an_auth_error_that_never_shows_the_secret(simulator, auth):
    config = simulator.config(auth=auth, client_secret="wrong-secret-4711")
    with TenantClient(config) as client:
        with pytest.raises(TenantAuthError) as refused:
            client.runtime_artifacts()
    assert refused.value.status == 401
    assert "wrong-secret-4711" not in str(refused.value) + repr(refused.value) + repr(config) + repr(client)


def test_a_failed_message_has_its_error_text_headers_attachment_and_payload(simulator):
    start, end = stable_window(minutes=60)
    with TenantClient(simulator.config()) as client:
        page = client.get_page(f"MessageProcessingLogs?$filter=Status eq 'FAILED' and "
                               f"LogEnd ge {datetime_literal(start)}&$top=1")
        guid = page.entries[0]["MessageGuid"]
        # A message that completed after a RETRY keeps its error text, as on a real tenant;
        # most completed messages never failed and have none.
        completed_page = client.get_page(f"MessageProcessingLogs?$filter=Status eq 'COMPLETED' and "
                                         f"LogEnd ge {datetime_literal(start)}&$top=10").entries
        texts = {e["MessageGuid"]: client.error_text(e["MessageGuid"]) for e in completed_page}
        completed = next(e for e in completed_page if texts[e["MessageGuid"]] is None)
        text = client.error_text(guid)
        attachments = client.attachments(guid)
        stored = client.message_store_entries(guid)
        payload = client.payload(stored[0]["Id"])
        assert client.message_log(guid)["MessageGuid"] == guid
        headers = [client.custom_headers(e["MessageGuid"]) for e in page.entries + [completed]]
    assert text and len(text) > 40
    assert attachments[0]["MessageGuid"] == guid and stored[0]["Id"].startswith("sap-it-res:msg:")
    assert payload.startswith(b"<?xml") and guid.encode() in payload
    assert all(set(row) == {"Id", "Name", "Value"} for rows in headers for row in rows)


def test_packages_artifacts_and_a_real_zip_download(simulator):
    with TenantClient(simulator.config()) as client:
        packages = {p["Id"]: p for p in client.packages()}
        artifacts = client.designtime_artifacts("OrderToCash")
        name, content = client.download_artifact(artifacts[0]["Id"])
        with pytest.raises(TenantError) as read_only:
            client.download_artifact(client.designtime_artifacts("SAPStandardContent")[0]["Id"])
        runtime = client.runtime_artifacts()
    assert packages["SAPStandardContent"]["Mode"] == "READ_ONLY"
    assert name == f"{artifacts[0]['Id']}.zip"
    assert "META-INF/MANIFEST.MF" in zipfile.ZipFile(BytesIO(content)).namelist()
    assert read_only.value.status == 400 and "read-only" in read_only.value.message
    assert {r["Status"] for r in runtime} == {"STARTED", "ERROR"}


def test_pages_read_with_the_fields_flowwatch_reads_carry_only_those_and_parse_the_same(simulator):
    from apps.messagelogs.reading import EXPAND, STAGED_FIELDS

    start, end = stable_window(minutes=15)
    with TenantClient(simulator.config()) as client:
        whole = [e for page in client.message_logs(start, end, expand=EXPAND, page_size=50) for e in page.entries]
        chosen = [e for page in client.message_logs(start, end, expand=EXPAND, page_size=50, select=STAGED_FIELDS)
                  for e in page.entries]
    assert len(chosen) == len(whole) > 50  # every page, following __next with the same $select
    assert {tuple(e) for e in chosen} == {("__metadata", *STAGED_FIELDS)}
    assert [parse_log(e) for e in chosen] == [parse_log(e) for e in whole]  # nothing processing reads is lost
    assert [e["CustomHeaderProperties"] for e in chosen] == [e["CustomHeaderProperties"] for e in whole]
