"""Dates, filter literals and typed message logs of the tenant API (pure units)."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest

from apps.tenants.client import TenantResponseError, datetime_literal, parse_log, parse_odata_date
from apps.tenants.odata import TenantAuthError

UTC = timezone.utc
CET = timezone(timedelta(hours=1))


def entry(**changes) -> dict:
    base = {
        "MessageGuid": "AGB3vT8yMjxwj1Z5fVMl7rtHbe1W", "CorrelationId": "AGcorr1", "ApplicationMessageId": "4500012345",
        "ApplicationMessageType": None, "Sender": "WebShop", "Receiver": "S4HANA", "LogStart": "/Date(1522069440200)/",
        "LogEnd": "/Date(1522069441200)/", "IntegrationFlowName": "SalesOrder_Replicate", "Status": "FAILED",
        "CustomStatus": "FAILED", "LogLevel": "INFO", "TransactionId": "ab" * 16,
        "IntegrationArtifact": {"Id": "SalesOrder_Replicate", "Name": "Replicate", "Type": "INTEGRATION_FLOW",
                                "PackageId": "OrderToCash", "PackageName": "Order to Cash"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_an_odata_date_becomes_an_aware_utc_datetime_to_the_millisecond():
    assert parse_odata_date("/Date(1522069440200)/") == datetime(2018, 3, 26, 13, 4, 0, 200_000, tzinfo=UTC)
    assert parse_odata_date("/Date(0)/") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_odata_date("/Date(-1000)/") == datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_an_offset_suffix_does_not_move_the_instant():
    assert parse_odata_date("/Date(1522069440200+0060)/") == parse_odata_date("/Date(1522069440200)/")


@pytest.mark.parametrize("value", ["2018-03-26T13:04:00", "/Date(abc)/", "Date(1)", "/Date(1)", "", None,
                                   1522069440200])
def test_anything_else_is_a_value_error_that_shows_the_value(value):
    with pytest.raises(ValueError, match="expected an OData date like '/Date"):
        parse_odata_date(value)


def test_a_literal_is_utc_to_the_millisecond_without_a_zone():
    moment = datetime(2021, 2, 1, 1, 0, 0, 123_999, tzinfo=CET)
    assert datetime_literal(moment) == "datetime'2021-02-01T00:00:00.123'"
    assert datetime_literal(datetime(2021, 2, 1, tzinfo=UTC)) == "datetime'2021-02-01T00:00:00.000'"


def test_a_naive_datetime_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="timezone-aware"):
        datetime_literal(datetime(2021, 2, 1))


def test_a_log_entry_becomes_a_typed_record():
    record = parse_log(entry())
    assert record["guid"] == "AGB3vT8yMjxwj1Z5fVMl7rtHbe1W" and record["status"] == "FAILED"
    assert record["log_start"] == datetime(2018, 3, 26, 13, 4, 0, 200_000, tzinfo=UTC)
    assert record["log_end"] - record["log_start"] == timedelta(seconds=1)
    assert (record["iflow_name"], record["iflow_id"], record["package_id"]) == (
        "SalesOrder_Replicate", "SalesOrder_Replicate", "OrderToCash")
    assert record["application_message_type"] is None and record["correlation_id"] == "AGcorr1"


def test_optional_fields_may_be_missing():
    record = parse_log(entry(CorrelationId=..., IntegrationArtifact=..., Sender=None))
    assert record["correlation_id"] is None and record["sender"] is None
    assert record["iflow_id"] == "SalesOrder_Replicate" and record["package_id"] is None


@pytest.mark.parametrize("changes, problem", [
    ({"MessageGuid": ...}, "MessageGuid must be a non-empty string"),
    ({"Status": 3}, "Status must be a non-empty string, got 3"),
    ({"LogEnd": "2018-03-26"}, "LogEnd: expected an OData date"),
    ({"LogStart": None}, "LogStart: expected an OData date"),
    ({"Sender": ["WebShop"]}, "Sender must be a string or null"),
    ({"IntegrationArtifact": "SalesOrder"}, "IntegrationArtifact must be an object"),
])
def test_a_missing_key_or_wrong_type_is_a_response_error_naming_it(changes, problem):
    with pytest.raises(TenantResponseError, match=problem) as bad:
        parse_log(entry(**changes), tenant="prod", path="/api/v1/MessageProcessingLogs")
    assert str(bad.value).startswith("tenant 'prod': on /api/v1/MessageProcessingLogs: ")


def test_an_error_keeps_its_fields_across_pickling():
    error = TenantAuthError("Bad credentials", tenant="prod", path="/oauth/token", status=401)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TenantAuthError and (copy.tenant, copy.path, copy.status) == ("prod", "/oauth/token", 401)
    assert str(copy) == str(error) == "tenant 'prod': HTTP 401 on /oauth/token: Bad credentials"
