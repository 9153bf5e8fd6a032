"""Cache families: every cache key belongs to one, with its timeout (docs/dashboard.md).

A key is ``<family prefix>:<rest>``; :func:`key` builds it and refuses
undeclared families, so the superadmin page can say what occupies the cache
Redis family by family.  ``None`` (no expiry) is allowed only for families
marked permanent here.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365 * DAY


@dataclass(frozen=True)
class CacheFamily:
    name: str
    timeout: int | None  # seconds; None = never expires
    purpose: str
    permanent: bool = False

    def __post_init__(self) -> None:
        if self.timeout is None and not self.permanent:
            raise ValueError(f"cache family {self.name!r} has no timeout but is not declared permanent")


FAMILIES: tuple[CacheFamily, ...] = (
    CacheFamily("metrics_snapshot", 5 * MINUTE, "the controller's latest snapshot, for /api/metrics/"),
    CacheFamily("docs_index", 10 * MINUTE, "search index of docs/ for the in-app docs"),
    CacheFamily("stats", DAY, "statistics caches rebuilt by stats_cache"),
    CacheFamily("worker_paths", YEAR, "worker path caches (long-lived, rebuilt on demand)"),
)

BY_NAME: dict[str, CacheFamily] = {f.name: f for f in FAMILIES}


def family(name: str) -> CacheFamily:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"cache family {name!r} is not declared in workers/cache_families.py") from None


def key(family_name: str, *parts: object) -> str:
    """The cache key of ``parts`` within a declared family."""
    return ":".join([family(family_name).name, *map(str, parts)])


def timeout(family_name: str) -> int | None:
    return family(family_name).timeout
