"""$filter and $orderby for MessageProcessingLogs, evaluated over generated messages.

The filter grammar is the subset the API documents: comparisons ``Field op
literal`` with eq ne gt ge lt le, joined by ``and`` / ``or`` and parentheses.
Dates are ``datetime'2021-02-01T00:00:00.000'`` in UTC with no zone.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Callable, NamedTuple

from simulator.flows import FLOWS
from simulator.messages import MAX_DURATION_MS, MAX_SPAN_MS, Record, Timeline, visible


# One query generates at most this many messages, as a real tenant caps a request's
# execution time; a wider one is refused with a hint to narrow the window.
MAX_SCANNED = 400_000


class QueryError(ValueError):
    """A malformed query option; answered with 400 and this message."""


DATE_FIELDS = {"LogEnd": lambda r: r.end, "LogStart": lambda r: r.message.start}
TEXT_FIELDS: dict[str, Callable[[Record], str]] = {
    "Status": lambda r: r.status,
    "CustomStatus": lambda r: r.status,
    "IntegrationFlowName": lambda r: FLOWS[r.message.flow].id,
    "IntegrationArtifact/Id": lambda r: FLOWS[r.message.flow].id,
    "MessageGuid": lambda r: r.message.guid,
    "Sender": lambda r: FLOWS[r.message.flow].sender,
    "Receiver": lambda r: FLOWS[r.message.flow].receiver,
    "LogLevel": lambda r: "INFO",
    "ApplicationMessageId": lambda r: application_message_id(r.message.index),
}
COMPARE = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}
_TOKEN = re.compile(r"\s*(?:(?P<date>datetime'[^']*')|(?P<text>'(?:[^']|'')*')|(?P<paren>[()])"
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_/]*)|(?P<number>-?\d+))")
_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,7}))?)?")


def application_message_id(index: int) -> str:
    return f"{4500000000 + index % 100_000_000}"


class Span(NamedTuple):
    """Inclusive bounds (epoch ms) that a filter puts on LogStart and LogEnd."""
    start_lo: float = -math.inf
    start_hi: float = math.inf
    end_lo: float = -math.inf
    end_hi: float = math.inf

    def both(self, other: "Span") -> "Span":
        return Span(max(self.start_lo, other.start_lo), min(self.start_hi, other.start_hi),
                    max(self.end_lo, other.end_lo), min(self.end_hi, other.end_hi))

    def either(self, other: "Span") -> "Span":
        return Span(min(self.start_lo, other.start_lo), max(self.start_hi, other.start_hi),
                    min(self.end_lo, other.end_lo), max(self.end_hi, other.end_hi))


class Filter(NamedTuple):
    test: Callable[[Record], bool]
    span: Span


def parse_date(literal: str) -> int:
    """``datetime'…'`` (UTC, no zone) -> epoch ms."""
    body = literal[len("datetime'"):-1]
    found = _DATE.fullmatch(body)
    if not found:
        raise QueryError(f"Invalid datetime literal {literal}: expected datetime'yyyy-MM-ddTHH:mm:ss.SSS' "
                         "in UTC without a zone")
    year, month, day, hour, minute, second, fraction = found.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                          tzinfo=timezone.utc)
    except ValueError as error:
        raise QueryError(f"Invalid datetime literal {literal}: {error}") from None
    millis = int((fraction or "0").ljust(3, "0")[:3])
    return int(moment.timestamp()) * 1000 + millis


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if not text[position:].strip():
            break
        found = _TOKEN.match(text, position)
        if not found:
            raise QueryError(f"Invalid filter expression at position {position}: {text[position:position + 20]!r}")
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind)))
        position = found.end()
    return tokens


class _Parser:
    def __init__(self, text: str, fields: dict[str, Callable[[Record], str]]) -> None:
        self.fields = fields
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end":
            raise QueryError("Invalid filter expression: it ends too early")
        self.at += 1
        return token

    def expression(self) -> Filter:
        left = self.conjunction()
        while self.peek() == ("word", "or"):
            self.take()
            right = self.conjunction()
            left = Filter(lambda r, a=left.test, b=right.test: a(r) or b(r), left.span.either(right.span))
        return left

    def conjunction(self) -> Filter:
        left = self.atom()
        while self.peek() == ("word", "and"):
            self.take()
            right = self.atom()
            left = Filter(lambda r, a=left.test, b=right.test: a(r) and b(r), left.span.both(right.span))
        return left

    def atom(self) -> Filter:
        if self.peek() == ("paren", "("):
            self.take()
            inner = self.expression()
            if self.peek() != ("paren", ")"):
                raise QueryError("Invalid filter expression: missing ')'")
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> Filter:
        kind, field = self.take()
        if kind != "word" or (field not in DATE_FIELDS and field not in self.fields):
            raise QueryError(f"Invalid filter expression: unknown property {field!r}")
        _, op = self.take()
        if op not in COMPARE:
            raise QueryError(f"Invalid filter expression: unknown operator {op!r} after {field}")
        kind, literal = self.take()
        if field in DATE_FIELDS:
            return _date_comparison(field, op, kind, literal)
        return _text_comparison(field, op, kind, literal, self.fields[field])


def _date_comparison(field: str, op: str, kind: str, literal: str) -> Filter:
    if kind != "date":
        raise QueryError(f"Invalid filter expression: {field} compares with a datetime'…' literal, not {literal}")
    value, get, compare = parse_date(literal), DATE_FIELDS[field], COMPARE[op]
    low = value if op in ("gt", "ge", "eq") else -math.inf
    high = value if op in ("lt", "le", "eq") else math.inf
    span = Span(low, high) if field == "LogStart" else Span(end_lo=low, end_hi=high)
    return Filter(lambda r: compare(get(r), value), span)


def _text_comparison(field: str, op: str, kind: str, literal: str, get: Callable[[Record], str]) -> Filter:
    if kind != "text":
        raise QueryError(f"Invalid filter expression: {field} compares with a quoted string, not {literal}")
    if op not in ("eq", "ne"):
        raise QueryError(f"Invalid filter expression: {field} supports eq and ne, not {op}")
    value, compare = literal[1:-1].replace("''", "'"), COMPARE[op]
    return Filter(lambda r: compare(get(r), value), Span())


def parse_filter(text: str, timeline: Timeline | None = None) -> Filter:
    """A filter over records; with ``timeline`` it can also test CorrelationId (derived from the seed)."""
    if not text.strip():
        return Filter(lambda r: True, Span())
    fields = dict(TEXT_FIELDS)
    if timeline is not None:
        fields["CorrelationId"] = lambda r: timeline.correlation_id(r.message)
    parser = _Parser(text, fields)
    found = parser.expression()
    if parser.peek()[0] != "end":
        raise QueryError(f"Invalid filter expression: unexpected {parser.peek()[1]!r}")
    return found


ORDERS = {"logend": (lambda r: (r.end, r.message.index), False),
          "logend asc": (lambda r: (r.end, r.message.index), False),
          "logend desc": (lambda r: (r.end, r.message.index), True),
          "logstart": (lambda r: (r.message.start, r.message.index), False),
          "logstart asc": (lambda r: (r.message.start, r.message.index), False),
          "logstart desc": (lambda r: (r.message.start, r.message.index), True)}


def parse_orderby(text: str) -> tuple[Callable[[Record], tuple[int, int]], bool]:
    key = " ".join(text.split()).lower() or "logend"
    if key not in ORDERS:
        raise QueryError(f"Invalid $orderby {text!r}: use LogEnd or LogStart, optionally with asc or desc")
    return ORDERS[key]


def select(timeline: Timeline, now: int, oldest: int, filter_text: str, orderby: str) -> list[Record]:
    """Every message visible at ``now`` that started at or after ``oldest`` and matches, sorted."""
    found_filter = parse_filter(filter_text, timeline)
    key, reverse = parse_orderby(orderby)
    span = found_filter.span
    high = int(min(now, span.start_hi, span.end_hi) + 1)
    # Any message may end in the window if it started up to MAX_DURATION_MS before it;
    # before that, only a retried one can.
    low = int(max(oldest, span.start_lo, span.end_lo - MAX_DURATION_MS, -1))
    tail_low = int(max(oldest, span.start_lo, span.end_lo - MAX_SPAN_MS, -1))
    scanned = (high - low) / timeline.interval
    if scanned > MAX_SCANNED:
        raise QueryError(f"The query spans about {scanned:,.0f} messages, more than {MAX_SCANNED:,} per request: "
                         "narrow it with LogEnd or LogStart bounds")
    test, records = found_filter.test, []
    candidates = (timeline.retried_starting_between(tail_low, min(low, high)),
                  timeline.starting_between(low, high) if low < high else ())
    for group in candidates:
        for message in group:
            record = visible(message, now)
            if record is not None and test(record):
                records.append(record)
    records.sort(key=key, reverse=reverse)
    return records
