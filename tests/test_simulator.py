"""The tenant simulator: its dialect over real HTTP, its determinism, its options."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from apps.tenants.client import datetime_literal
from simulator.config import OptionError, load
from simulator.messages import MAX_DURATION_MS, Timeline, visible
from simulator.query import select
from tests.support.simulator import ROOT, SimulatorProcess


def get(sim, path: str, auth: bool = True, **params: str) -> httpx.Response:
    credentials = (sim.client_id, sim.client_secret) if auth else None
    return httpx.get(f"{sim.url}/{path}", params=params, auth=credentials, timeout=30)


def window(minutes: int, ended_minutes_ago: int = 30) -> str:
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=ended_minutes_ago)
    return f"LogEnd ge {datetime_literal(end - timedelta(minutes=minutes))} and LogEnd lt {datetime_literal(end)}"


def fingerprint(sim, filter_text: str) -> list[tuple]:
    entries = get(sim, "MessageProcessingLogs", **{"$filter": filter_text}).json()["d"]["results"]
    return [(e["MessageGuid"], e["Status"], e["LogStart"], e["LogEnd"], e["CorrelationId"], e["IntegrationFlowName"])
            for e in entries]


def test_two_simulators_with_one_seed_serve_the_same_messages_and_another_seed_does_not(simulator):
    span = window(5)
    twin = SimulatorProcess(seed=7).start()
    other = SimulatorProcess(seed=8).start()
    try:
        mine, twins, others = fingerprint(simulator, span), fingerprint(twin, span), fingerprint(other, span)
    finally:
        twin.stop()
        other.stop()
    assert len(mine) > 300 and mine == twins
    assert not {row[0] for row in mine} & {row[0] for row in others}


def test_a_message_is_a_pure_function_of_seed_and_index_and_its_guid_finds_it():
    first, second = Timeline(7, 120, 0.05), Timeline(7, 120, 0.05)
    assert [first.message(i) for i in range(1000)] == [second.message(i) for i in range(1000)]
    message = first.message(123_456)
    assert first.index_of(message.guid) == 123_456
    assert Timeline(8, 120, 0.05).index_of(message.guid) is None


def test_a_retried_message_shows_retry_first_and_completed_later_with_a_later_log_end():
    timeline = Timeline(7, 120, 0.05)
    retried = next(m for m in map(timeline.message, range(10_000)) if m.retry_end)
    assert visible(retried, retried.first_end - 1) is None
    early, late = visible(retried, retried.first_end), visible(retried, retried.retry_end)
    assert (early.status, early.end) == ("RETRY", retried.first_end)
    assert late.status == "COMPLETED" and late.end > early.end


def test_a_window_holds_exactly_the_messages_that_ended_in_it_including_long_retried_ones():
    timeline, now = Timeline(7, 600, 0.05), 1_800_000_000_000
    low, high = now - 3_600_000, now - 1_800_000
    literal = lambda ms: datetime_literal(datetime.fromtimestamp(ms / 1000, timezone.utc))
    found = select(timeline, now, now - 86_400_000, f"LogEnd ge {literal(low)} and LogEnd lt {literal(high)}", "")
    everything = (visible(m, now) for m in timeline.starting_between(now - 86_400_000, now + 1))
    expected = {r.message.index for r in everything if r is not None and low <= r.end < high}
    assert [r.message.index for r in found] != [] and {r.message.index for r in found} == expected
    assert any(r.message.start < low - MAX_DURATION_MS for r in found)
    assert [r.end for r in found] == sorted(r.end for r in found)


def test_recent_traffic_has_retries_errors_correlated_chains_and_bursty_iflows(simulator):
    recent = get(simulator, "MessageProcessingLogs", **{"$filter": window(20, ended_minutes_ago=0)}).json()
    statuses = Counter(e["Status"] for e in recent["d"]["results"])
    chains = Counter(e["CorrelationId"] for e in recent["d"]["results"])
    assert statuses["RETRY"] and statuses["FAILED"] and statuses["COMPLETED"]
    chain, size = chains.most_common(1)[0]
    linked = get(simulator, "MessageProcessingLogs", **{"$filter": f"{window(20, 0)} and CorrelationId eq '{chain}'"})
    assert size >= 2 and len(linked.json()["d"]["results"]) == size

    def failure_share(flow: str) -> float:
        count = lambda extra: int(get(simulator, "MessageProcessingLogs/$count",
                                      **{"$filter": f"IntegrationFlowName eq '{flow}'{extra}"}).text)
        return count(" and (Status eq 'FAILED' or Status eq 'ESCALATED')") / count("")
    # A day of a bursty iFlow fails far more often than the configured 5%.
    assert failure_share("Invoice_Send") > 2 * failure_share("Material_Replicate")


def test_the_envelope_counts_as_a_string_skips_and_orders(simulator):
    span = window(5)
    plain = get(simulator, "MessageProcessingLogs", **{"$filter": span, "$inlinecount": "allpages"}).json()["d"]
    skipped = get(simulator, "MessageProcessingLogs", **{"$filter": span, "$skip": "10", "$top": "5"}).json()["d"]
    newest = get(simulator, "MessageProcessingLogs", **{"$filter": span, "$orderby": "LogEnd desc"}).json()["d"]
    expanded = get(simulator, "MessageProcessingLogs", **{"$filter": span, "$expand": "CustomHeaderProperties"})
    count = get(simulator, "MessageProcessingLogs/$count", **{"$filter": span})
    assert plain["__count"] == count.text == str(len(plain["results"])) and "__next" not in plain
    assert count.headers["content-type"].startswith("text/plain")
    assert [e["MessageGuid"] for e in skipped["results"]] == [e["MessageGuid"] for e in plain["results"][10:15]]
    assert skipped["__next"].startswith("MessageProcessingLogs?$skiptoken=15&")
    assert newest["results"] == plain["results"][::-1]
    headers = [e["CustomHeaderProperties"] for e in expanded.json()["d"]["results"]]
    assert any(h["results"] and h["results"][0]["Name"] == "OrderNumber" for h in headers)
    entry = plain["results"][0]
    assert entry["__metadata"]["type"] == "com.sap.hci.api.MessageProcessingLog"
    assert entry["ErrorInformation"]["__deferred"]["uri"].endswith("/ErrorInformation")
    assert entry["LogEnd"].startswith("/Date(") and isinstance(entry["TransactionId"], str)


@pytest.mark.parametrize("filter_text, problem", [
    ("LogEnd gt '2021-01-01'", "compares with a datetime"),
    ("LogEnd ge datetime'2021-02-01T00:00:00Z'", "in UTC without a zone"),
    ("Status gt 'FAILED'", "supports eq and ne"),
    ("Colour eq 'red'", "unknown property 'Colour'"),
    ("(Status eq 'FAILED'", "missing ')'"),
    ("Status eq 'FAILED' and", "ends too early"),
    ("Status eq 'FAILED' Status", "unexpected 'Status'"),
    ("Status like 'F%'", "unknown operator 'like'"),
])
def test_a_malformed_filter_gets_a_400_error_envelope(simulator, filter_text, problem):
    answer = get(simulator, "MessageProcessingLogs", **{"$filter": filter_text})
    assert answer.status_code == 400
    assert problem in answer.json()["error"]["message"]["value"]


def test_a_query_over_too_many_messages_is_refused_with_a_hint(simulator):
    simulator.restart(messages_per_minute=600, history_days=1)       # 864 000 messages
    answer = get(simulator, "MessageProcessingLogs", **{"$filter": "Status eq 'FAILED'"})
    assert answer.status_code == 400
    assert "narrow it with LogEnd or LogStart bounds" in answer.json()["error"]["message"]["value"]
    assert get(simulator, "MessageProcessingLogs", **{"$filter": window(60)}).status_code == 200


@pytest.mark.parametrize("params", [{"$orderby": "Status"}, {"$top": "ten"}, {"$skiptoken": "-1"}])
def test_a_malformed_paging_option_gets_a_400(simulator, params):
    assert get(simulator, "MessageProcessingLogs", **params).status_code == 400


def test_every_sub_resource_of_a_failed_message_answers(simulator):
    failed = get(simulator, "MessageProcessingLogs", **{"$filter": f"{window(60)} and Status eq 'FAILED'",
                                                        "$top": "1"}).json()["d"]["results"][0]
    base = f"MessageProcessingLogs('{failed['MessageGuid']}')"
    error = get(simulator, f"{base}/ErrorInformation").json()["d"]
    text = get(simulator, f"{base}/ErrorInformation/$value")
    attachment = get(simulator, f"{base}/Attachments").json()["d"]["results"][0]
    stored = get(simulator, f"{base}/MessageStoreEntries").json()["d"]["results"][0]
    encoded = stored["Id"].replace(":", "%3A")
    assert error["Type"] == "text/plain" and text.text and text.headers["content-type"].startswith("text/plain")
    assert get(simulator, f"MessageProcessingLogAttachments('{attachment['Id']}')/$value").text.startswith("Error")
    assert get(simulator, f"MessageStoreEntries('{encoded}')/$value").content.startswith(b"<?xml")
    assert get(simulator, f"MessageStoreEntries('{encoded}')").json()["d"]["MessageGuid"] == failed["MessageGuid"]
    assert {a["Name"] for a in get(simulator, f"{base}/AdapterAttributes").json()["d"]["results"]} == {
        "Receiver", "Response Code"}
    assert get(simulator, "MessageProcessingLogs('AGnotamessage')").json()["error"]["code"] == "Not Found"


def test_the_token_endpoint_takes_basic_auth_or_form_fields_and_tokens_expire(simulator):
    simulator.restart(token_ttl=1)
    by_header = httpx.post(simulator.token_url, params={"grant_type": "client_credentials"},
                           auth=(simulator.client_id, simulator.client_secret))
    by_form = httpx.post(simulator.token_url, data={"grant_type": "client_credentials",
                                                    "client_id": simulator.client_id,
                                                    "client_secret": simulator.client_secret})
    wrong = httpx.post(simulator.token_url, params={"grant_type": "password"},
                       auth=(simulator.client_id, simulator.client_secret))
    token = by_header.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert by_header.json()["expires_in"] == 1 and by_form.status_code == 200 and wrong.status_code == 400
    assert httpx.get(f"{simulator.url}/IntegrationPackages", headers=bearer).status_code == 200
    time.sleep(1.1)
    expired = httpx.get(f"{simulator.url}/IntegrationPackages", headers=bearer)
    assert expired.status_code == 401
    assert "expired or invalid" in expired.json()["error"]["message"]["value"]


def test_past_the_rate_limit_it_answers_429_with_retry_after(simulator):
    simulator.set_rate_limit(2)
    answers = [get(simulator, "IntegrationRuntimeArtifacts") for _ in range(4)]
    throttled = [a for a in answers if a.status_code == 429]
    assert throttled and int(throttled[0].headers["retry-after"]) >= 1
    assert throttled[0].json()["error"]["message"]["value"].startswith("Rate limit exceeded")
    assert get(simulator, "../../_sim/health", auth=False).json()["status"] == "ok"


def test_control_endpoints_need_the_client_credentials(simulator):
    assert httpx.post(f"{simulator.base}/_sim/expire-tokens").status_code == 401
    assert httpx.post(f"{simulator.base}/_sim/rate-limit?per_second=1", auth=("x", "y")).status_code == 401


def test_options_come_from_the_environment_and_the_command_line_wins():
    options = load(["--port", "9001"], {"SIMULATOR_PORT": "9000", "SIMULATOR_SEED": "5", "SIMULATOR_HOST": ""})
    assert (options.port, options.seed, options.host) == (9001, 5, "127.0.0.1")
    assert "s3cr3t" not in repr(load([], {"SIMULATOR_CLIENT_SECRET": "s3cr3t"}))
    with pytest.raises(OptionError, match="SIMULATOR_FAILURE_RATIO='1.5' must be between 0.0 and 1.0"):
        load([], {"SIMULATOR_FAILURE_RATIO": "1.5"})


def test_a_bad_option_stops_the_process_with_a_clear_error():
    done = subprocess.run([sys.executable, "-m", "simulator"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SIMULATOR_RATE_LIMIT": "fast"})
    assert done.returncode == 2
    assert "SIMULATOR_RATE_LIMIT='fast' is not a whole number" in done.stderr


def test_a_paged_result_that_would_be_computed_anew_is_dropped_not_kept(monkeypatch):
    """A backfill reads one window after another: each window's sorted result
    is kept only while it can still be served, not until the memory bound."""
    from simulator import api as sim_api
    from simulator.config import Options

    moment = [1000.0]
    monkeypatch.setattr(sim_api.time, "monotonic", lambda: moment[0])
    simulated = sim_api.Api(Options(messages_per_minute=10, history_days=0.1))
    now_ms = int(time.time() * 1000)

    def read(window: int) -> None:
        end = datetime.fromtimestamp(now_ms / 1000 - window * 600, timezone.utc)
        text = (f"LogEnd ge {datetime_literal(end - timedelta(minutes=10))} "
                f"and LogEnd lt {datetime_literal(end)}")
        simulated.records(sim_api.Request("GET", {"$filter": text}, "http://x/api/v1", now_ms))

    read(1)
    read(2)
    assert len(simulated._cache) == 2  # both still servable
    moment[0] += sim_api.CACHE_IDLE_SECONDS
    read(3)
    assert len(simulated._cache) == 1  # the idle ones went; only the new window is kept


def test_a_paged_read_keeps_its_result_until_its_last_page_then_drops_it():
    """Pages after the first come from the first page's snapshot; once the last page
    is served the result is dropped at once, so finished windows do not pile up."""
    from simulator import api as sim_api
    from simulator.config import Options

    simulated = sim_api.Api(Options(messages_per_minute=60, history_days=0.1))
    now_ms = int(time.time() * 1000)
    params = {"$filter": f"LogEnd ge {datetime_literal(datetime.fromtimestamp(now_ms / 1000 - 3600, timezone.utc))}",
              "$top": "100"}
    pages, offset = [], 0
    while True:
        body = json.loads(simulated.logs(sim_api.Request("GET", {**params, "$skiptoken": str(offset)},
                                                         "http://x/api/v1", now_ms)).body)["d"]
        pages.append(body["results"])
        if "__next" not in body:
            break
        assert len(simulated._cache) == 1  # kept while pages remain
        offset += 100
    assert len(pages) > 2 and sum(map(len, pages)) > 200
    assert simulated._cache == {}  # the last page dropped it


def test_the_heap_is_trimmed_once_the_last_page_of_a_read_is_sent():
    """After the last page, with no other paged read in progress, the simulator gives its
    free heap back (glibc's malloc_trim): once per read, after the page went out."""
    import asyncio
    import base64

    from simulator.app import Simulator
    from simulator.config import Options

    simulated = Simulator(Options(rate_limit=0, history_days=0.1))
    trims: list[int] = []
    simulated.api.trim = lambda: trims.append(len(sent))
    sent: list[dict] = []
    since = datetime_literal(datetime.now(timezone.utc) - timedelta(hours=1))
    credentials = base64.b64encode(b"flowwatch-demo:flowwatch-demo-secret")

    async def call(offset: int) -> dict:
        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        query = f"$filter=LogEnd ge {since}&$top=1000&$skiptoken={offset}".encode()
        scope = {"type": "http", "method": "GET", "path": "/api/v1/MessageProcessingLogs", "query_string": query,
                 "headers": [(b"authorization", b"Basic " + credentials)], "server": ("127.0.0.1", 1)}
        await simulated(scope, receive, send)
        return json.loads(sent[-1]["body"])["d"]

    offset = 0
    while "__next" in asyncio.run(call(offset)):
        assert trims == []  # pages remain: the result is kept, nothing trimmed
        offset += 1000
    assert offset >= 1000 and trims == [len(sent)]  # once, after the last body was sent


def test_select_sends_only_the_named_properties_with_the_values_of_the_whole_entry(simulator):
    span = window(30)
    whole = get(simulator, "MessageProcessingLogs",
                **{"$filter": span, "$expand": "CustomHeaderProperties", "$top": "5"}).json()["d"]
    names = "LogEnd,MessageGuid,IntegrationArtifact,CustomHeaderProperties,ArchivingStatus,Runs,AlternateWebLink"
    chosen = get(simulator, "MessageProcessingLogs", **{"$filter": span, "$expand": "CustomHeaderProperties",
                                                          "$top": "5", "$select": names}).json()["d"]
    assert len(chosen["results"]) == len(whole["results"]) == 5
    for full, part in zip(whole["results"], chosen["results"]):
        assert list(part) == ["__metadata", *names.split(",")]  # the named ones, in their order
        assert all(part[name] == full[name] for name in part)  # each as the whole entry has it
    assert "$select=" in chosen["__next"]  # the next page is asked the same way
    from simulator.odata import LOG_PROPERTIES

    every = get(simulator, "MessageProcessingLogs", **{"$filter": span, "$expand": "CustomHeaderProperties",
                                                         "$top": "5", "$select": ",".join(LOG_PROPERTIES)}).json()["d"]
    assert every["results"] == whole["results"]  # naming every property renders the whole entry, value for value
    again = get(simulator, "MessageProcessingLogs", **{"$filter": span, "$top": "5", "$select": "*"}).json()["d"]
    assert list(again["results"][0]) == list(whole["results"][0])  # * is everything
    deferred = get(simulator, "MessageProcessingLogs",
                   **{"$filter": span, "$top": "1", "$select": "CustomHeaderProperties"}).json()["d"]["results"][0]
    assert set(deferred["CustomHeaderProperties"]) == {"__deferred"}  # not expanded: deferred


@pytest.mark.parametrize("names, problem", [("Status,Bogus", "'Bogus'"), ("Status,", "''"), ("status", "'status'")])
def test_a_select_naming_no_property_gets_a_400_naming_it(simulator, names, problem):
    answer = get(simulator, "MessageProcessingLogs", **{"$filter": window(5), "$select": names})
    assert answer.status_code == 400
    text = answer.json()["error"]["message"]["value"]
    assert problem in text and "not a property of MessageProcessingLog" in text
