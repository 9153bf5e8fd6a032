"""Storing one staged page: idempotent, all or nothing, never back to an older state."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from apps.messagelogs.ingest import BadPage, process_page
from apps.messagelogs.models import LogPage, MessageLog
from tests.pipeline_support import OFFLINE, tenant_row
from tests.support.fake_tenant import odata_date

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def entry(guid: str, status: str, at: datetime, **extra) -> dict:
    return {"MessageGuid": guid, "CorrelationId": "corr-1", "IntegrationFlowName": "OrderToCash", "Status": status,
            "LogStart": odata_date(at), "LogEnd": odata_date(at), **extra}


def stage(tenant, entries: list[dict]) -> int:
    return LogPage.objects.create(tenant=tenant, lane="hot", entries=entries).id


def snapshot() -> list[tuple]:
    return list(MessageLog.objects.order_by("guid").values_list("id", "guid", "status", "log_end", "updated_at"))


@pytest.fixture
def tenant(db):
    return tenant_row(OFFLINE)


def test_a_page_sent_again_changes_nothing(tenant):
    entries = [entry(f"m-{i}", "COMPLETED", T0 + timedelta(seconds=i)) for i in range(50)]
    first = process_page(stage(tenant, entries))
    assert len(first.created) == 50
    before = snapshot()
    again = process_page(stage(tenant, entries))
    assert (again.created, again.changed) == ([], [])
    assert snapshot() == before


def test_a_page_already_stored_is_not_stored_twice(tenant):
    page_id = stage(tenant, [entry("m-1", "COMPLETED", T0)])
    assert process_page(page_id) is not None
    assert process_page(page_id) is None
    assert MessageLog.objects.count() == 1


def test_a_newer_status_updates_the_known_message(tenant):
    process_page(stage(tenant, [entry("m-1", "RETRY", T0)]))
    result = process_page(stage(tenant, [entry("m-1", "COMPLETED", T0 + timedelta(minutes=2))]))
    assert len(result.changed) == 1
    message = MessageLog.objects.get(guid="m-1")
    assert (message.status, message.log_end) == ("COMPLETED", T0 + timedelta(minutes=2))


def test_an_old_page_arriving_late_does_not_undo_a_newer_status(tenant):
    process_page(stage(tenant, [entry("m-1", "COMPLETED", T0 + timedelta(minutes=2))]))
    process_page(stage(tenant, [entry("m-1", "RETRY", T0)]))
    assert MessageLog.objects.get(guid="m-1").status == "COMPLETED"


def test_a_page_with_one_bad_entry_stores_nothing_and_keeps_the_page_with_its_error(tenant):
    page_id = stage(tenant, [entry("m-1", "COMPLETED", T0), entry("m-2", "COMPLETED", T0, LogEnd="yesterday")])
    with pytest.raises(BadPage, match="entry 1"):
        process_page(page_id)
    assert MessageLog.objects.count() == 0
    assert "LogEnd" in LogPage.objects.get(id=page_id).error


def test_problem_messages_and_new_correlation_ids_are_handed_on(tenant):
    result = process_page(stage(tenant, [entry("ok", "COMPLETED", T0), entry("bad", "FAILED", T0),
                                         entry("wait", "RETRY", T0)]))
    assert sorted(MessageLog.objects.get(id=i).guid for i in result.problems) == ["bad", "wait"]
    assert result.correlation_ids == {"corr-1"}


def test_messages_sharing_a_correlation_id_are_linked_into_one_chain(tenant):
    from apps.messagelogs.enrich import link_correlations
    from apps.messagelogs.models import Correlation

    process_page(stage(tenant, [entry("first", "COMPLETED", T0), entry("second", "FAILED", T0 + timedelta(minutes=1)),
                                entry("alone", "COMPLETED", T0, CorrelationId="corr-alone")]))
    assert link_correlations(tenant.id, ["corr-1", "corr-alone"]) == 2
    chain = Correlation.objects.get(correlation_id="corr-1")
    assert (chain.message_count, chain.statuses) == (2, "COMPLETED,FAILED")
    assert chain.last_log_end == T0 + timedelta(minutes=1)
    assert set(chain.messages.values_list("guid", flat=True)) == {"first", "second"}
    assert MessageLog.objects.get(guid="alone").chain is None
    process_page(stage(tenant, [entry("third", "COMPLETED", T0 + timedelta(minutes=2))]))
    link_correlations(tenant.id, ["corr-1"])
    assert Correlation.objects.get(id=chain.id).message_count == 3


def test_a_message_inserted_by_another_worker_meanwhile_still_gets_the_newer_status(tenant, monkeypatch):
    from apps.messagelogs import ingest

    process_page(stage(tenant, [entry("m-1", "RETRY", T0)]))
    real, calls = ingest._stored, []

    def first_look_misses_it(tenant_id, guids):  # as if the other page committed just after our first look
        calls.append(guids)
        return {} if len(calls) == 1 else real(tenant_id, guids)

    monkeypatch.setattr(ingest, "_stored", first_look_misses_it)
    result = process_page(stage(tenant, [entry("m-1", "COMPLETED", T0 + timedelta(minutes=1))]))
    assert len(result.changed) == 1 and result.created == []
    assert MessageLog.objects.get(guid="m-1").status == "COMPLETED"


def expanded(*headers: tuple[str, str]) -> dict:
    return {"CustomHeaderProperties": {"results": [
        {"__metadata": {"type": "com.sap.hci.api.CustomHeaderProperty"}, "Id": f"h-{n}", "Name": name, "Value": value}
        for n, (name, value) in enumerate(headers)]}}


def test_headers_a_page_carries_are_stored_for_every_message_in_bulk_and_a_resend_replaces_them(tenant):
    from apps.messagelogs.models import CustomHeader
    from apps.messagelogs.tasks import messagelog_customheaders

    entries = [entry("done", "COMPLETED", T0, **expanded(("Region", "EMEA"), ("CustomerId", "C1"))),
               entry("bad", "FAILED", T0, **expanded()),
               entry("deferred", "FAILED", T0, CustomHeaderProperties={"__deferred": {"uri": "x"}})]
    result = process_page(stage(tenant, entries))
    ids = {m.guid: m.id for m in MessageLog.objects.all()}
    assert sorted(result.headers) == sorted([[ids["done"], [["h-0", "Region", "EMEA"], ["h-1", "CustomerId", "C1"]]],
                                             [ids["bad"], []]])
    assert result.headers_unknown == [ids["deferred"]]  # fetched one by one, as before
    for _ in range(2):  # a redelivered task stores the same, once
        assert messagelog_customheaders.run(tenant.id, [i for i, _ in result.headers], result.headers) == {"stored": 2}
    stored = sorted(CustomHeader.objects.values_list("message__guid", "name", "value"))
    assert stored == [("done", "CustomerId", "C1"), ("done", "Region", "EMEA")]
    assert set(MessageLog.objects.exclude(headers_at=None).values_list("guid", flat=True)) == {"done", "bad"}


def test_a_page_with_a_malformed_expanded_header_stores_nothing(tenant):
    broken = {"CustomHeaderProperties": {"results": [{"Id": "h-0", "Name": 7, "Value": "x"}]}}
    page_id = stage(tenant, [entry("ok", "COMPLETED", T0), entry("odd", "COMPLETED", T0, **broken)])
    with pytest.raises(BadPage, match="entry 1 .*custom header"):
        process_page(page_id)
    assert not MessageLog.objects.exists() and "custom header" in LogPage.objects.get(id=page_id).error


def test_a_staged_page_keeps_what_storing_reads_and_drops_metadata_and_links():
    from apps.messagelogs.reading import slim

    raw = {"__metadata": {"uri": "x"}, **entry("m", "FAILED", T0), "Sender": "S", "AlternateWebLink": "https://…",
           "IntegrationArtifact": {"__metadata": {"type": "t"}, "Id": "OrderToCash", "PackageId": "P"},
           "ErrorInformation": {"__deferred": {"uri": "y"}}, **expanded(("Region", "APJ"))}
    kept = slim(raw)
    assert set(kept) == {"MessageGuid", "CorrelationId", "IntegrationFlowName", "Status", "LogStart", "LogEnd",
                         "Sender", "AlternateWebLink", "IntegrationArtifact", "CustomHeaderProperties"}
    assert kept["IntegrationArtifact"] == {"Id": "OrderToCash", "PackageId": "P"}
    assert kept["CustomHeaderProperties"] == [{"Id": "h-0", "Name": "Region", "Value": "APJ"}]
    assert "CustomHeaderProperties" not in slim({**raw, "CustomHeaderProperties": {"__deferred": {"uri": "z"}}})
