"""Message processing logs as a pure function of (seed, time).

Message ``i`` belongs to the ``i``-th slot of the timeline that starts at the
Unix epoch, one slot per ``60000 / messages_per_minute`` milliseconds. Every
attribute of a message comes from one keyed BLAKE2b digest of ``i``, so two
simulators with the same seed and rate serve the same messages, and a window
of time is generated without any stored state. Its GUID encodes ``i`` (with a
keyed check), so a single message is found without a table.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from bisect import bisect_right
from functools import lru_cache
from typing import Iterator, NamedTuple

from simulator.flows import CUMULATIVE_WEIGHTS, FLOWS, TOTAL_WEIGHT

MAX_DURATION_MS = 15_000
RETRY_SHARE = 0.03                # of messages that go to RETRY and complete later
MIN_RETRY_DELAY_MS = 60_000
MAX_RETRY_DELAY_MS = 20 * 60_000
# A message's LogEnd is at most this long after its LogStart (the retried ones).
MAX_SPAN_MS = MAX_RETRY_DELAY_MS + MAX_DURATION_MS
BURST_PERIOD_MS = 15 * 60_000     # a bursty iFlow fails for whole periods of this length
BURST_CHANCE = 40                 # of 256: the share of periods that are bursts
BURST_FAILURE = 0.75
CHAINED = 110                     # of 256: the share of messages that share a CorrelationId
CHAIN_LENGTH = 4
BLOCK = 4096                      # indices per cached block of retried messages


class Message(NamedTuple):
    index: int
    guid: str
    flow: int                     # index into FLOWS
    start: int                    # LogStart, epoch ms
    first_end: int                # LogEnd of the first (or only) outcome
    first_status: str
    retry_end: int                # LogEnd of the later COMPLETED state; 0 when never retried
    digest: bytes


class Record(NamedTuple):
    """A message as visible at one moment: its current status and LogEnd."""
    message: Message
    status: str
    end: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Timeline:
    def __init__(self, seed: int, messages_per_minute: int, failure_ratio: float) -> None:
        self.key = hashlib.blake2b(f"flowwatch-simulator:{seed}".encode(), digest_size=32).digest()
        self.interval = 60_000 / messages_per_minute
        self.failure_ratio = failure_ratio
        self._in_burst = lru_cache(maxsize=4096)(self._burst)
        self._retried_in_block = lru_cache(maxsize=512)(self._retried_block)

    def digest(self, label: bytes) -> bytes:
        return hashlib.blake2b(label, key=self.key, digest_size=32).digest()

    def message(self, index: int) -> Message:
        raw = index.to_bytes(8, "big")
        digest = self.digest(raw)
        start = int((index + digest[13] / 256) * self.interval)
        flow = bisect_right(CUMULATIVE_WEIGHTS, int.from_bytes(digest[14:16], "big") % TOTAL_WEIGHT)
        first_end = start + 40 + int.from_bytes(digest[16:18], "big") % MAX_DURATION_MS
        status, retry_end = self._outcome(flow, start, first_end, digest)
        return Message(index, _b64(digest[:13] + raw), flow, start, first_end, status, retry_end, digest)

    def _outcome(self, flow: int, start: int, first_end: int, digest: bytes) -> tuple[str, int]:
        roll = int.from_bytes(digest[18:21], "big") / 2**24
        failure = BURST_FAILURE if FLOWS[flow].bursty and self._in_burst(flow, start // BURST_PERIOD_MS) \
            else self.failure_ratio
        if roll < failure:
            return ("ESCALATED" if digest[24] % 5 == 0 else "FAILED"), 0
        if roll >= 1 - RETRY_SHARE:
            delay = MIN_RETRY_DELAY_MS + int.from_bytes(digest[21:23], "big") * 17 % (
                MAX_RETRY_DELAY_MS - MIN_RETRY_DELAY_MS)
            return "RETRY", first_end + delay
        return "COMPLETED", 0

    def _burst(self, flow: int, period: int) -> bool:
        return self.digest(b"burst:%d:%d" % (flow, period))[0] < BURST_CHANCE

    def index_of(self, guid: str) -> int | None:
        """The index a GUID encodes, or None for a GUID this timeline never issued."""
        try:
            raw = base64.urlsafe_b64decode(guid + "=" * (-len(guid) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 21:
            return None
        index = int.from_bytes(raw[13:], "big")
        return index if self.digest(raw[13:])[:13] == raw[:13] else None

    def starting_between(self, low: int, high: int) -> Iterator[Message]:
        """Messages whose LogStart is in [low, high), in index order."""
        first = max(0, int(low // self.interval) - 1)
        last = int(high // self.interval) + 1
        for index in range(first, last + 1):
            message = self.message(index)
            if low <= message.start < high:
                yield message

    def retried_starting_between(self, low: int, high: int) -> Iterator[Message]:
        """The retried messages whose LogStart is in [low, high): the only ones whose LogEnd
        can lie far after their start, found without generating the others in full."""
        first = max(0, int(low // self.interval) - 1)
        last = int(high // self.interval) + 1
        for block in range(first // BLOCK, last // BLOCK + 1):
            for message in self._retried_in_block(block):
                if low <= message.start < high:
                    yield message

    def _retried_block(self, block: int) -> tuple[Message, ...]:
        found = []
        for index in range(block * BLOCK, (block + 1) * BLOCK):
            # The status roll alone rules out most indices before a full message is built.
            if int.from_bytes(self.digest(index.to_bytes(8, "big"))[18:21], "big") >= (1 - RETRY_SHARE) * 2**24:
                message = self.message(index)
                if message.retry_end:
                    found.append(message)
        return tuple(found)

    def correlation_id(self, message: Message) -> str:
        if message.digest[23] < CHAINED:
            group = message.index // CHAIN_LENGTH
            return "AGcorr" + _b64(self.digest(b"corr:%d" % group)[:15])
        return "AGcorr" + _b64(message.digest[2:17])


def visible(message: Message, now: int) -> Record | None:
    """The message as a tenant shows it at ``now`` (epoch ms): nothing before its first LogEnd."""
    if message.retry_end:
        if message.retry_end <= now:
            return Record(message, "COMPLETED", message.retry_end)
        if message.first_end <= now:
            return Record(message, "RETRY", message.first_end)
        return None
    return Record(message, message.first_status, message.first_end) if message.first_end <= now else None
