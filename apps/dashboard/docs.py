"""The in-app docs: docs/*.md rendered to safe HTML, and a search index.

Raw HTML in Markdown is escaped (the html block and inline patterns are
removed), attributes cannot be added from Markdown (no ``attr_list``, and any
``on*`` attribute is dropped), links with a scheme other than
http(s)/mailto are dropped, and links between docs (``queues.md#section``)
point at their /docs/ pages.

The search index lives in the cache ("docs_index" family, short timeout)
under a fingerprint of the files, so an edited doc gets a fresh index; a
missing index is rebuilt, and a cache that is down only costs the rebuild.
:func:`rebuild_index` is also the "docs_index" cache rebuilder
(workers/rebuild.py, registered in DashboardConfig.ready), so after a Redis
restart the index is back before the first search needs it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

import markdown
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from markdown.extensions.toc import slugify
from markdown.treeprocessors import Treeprocessor

from apps.dashboard.cache_errors import CACHE_ERRORS
from workers import cache_families

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.(png|svg|jpg|jpeg|gif)$")
SAFE_SCHEMES = {"http", "https", "mailto"}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_MARKUP = re.compile(r"[*_`>#|]|!?\[([^\]]*)\]\([^)]*\)")


def docs_dir() -> Path:
    return Path(settings.BASE_DIR) / "docs"


def doc_path(slug: str) -> Path | None:
    """The file of ``slug``, or None for an unknown or malformed name."""
    if not SLUG.match(slug):
        return None
    path = docs_dir() / f"{slug}.md"
    return path if path.is_file() else None


def asset_path(name: str) -> Path | None:
    if not FILE_NAME.match(name):
        return None
    path = docs_dir() / name
    return path if path.is_file() else None


def title_of(text: str, fallback: str) -> str:
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match and len(match.group(1)) == 1:
            return match.group(2)
    return fallback


@dataclass(frozen=True)
class DocEntry:
    slug: str
    title: str


def all_docs() -> list[DocEntry]:
    entries = [
        DocEntry(path.stem, title_of(path.read_text(encoding="utf-8"), path.stem))
        for path in docs_dir().glob("*.md")
        if SLUG.match(path.stem)
    ]
    return sorted(entries, key=lambda entry: entry.title.lower())


# --- rendering -------------------------------------------------------------

# "extra" minus attr_list (which lets `{: onclick="..." }` set any attribute)
# and md_in_html (raw HTML is never passed through anyway).
EXTENSIONS = ("abbr", "def_list", "fenced_code", "footnotes", "tables", "toc", "sane_lists")


class _LinkRewriter(Treeprocessor):
    """Doc-to-doc links become /docs/ pages; unsafe schemes and event handlers are dropped."""

    def run(self, root: Element) -> None:
        for element in root.iter():
            # Nothing above sets an on* attribute; this keeps it so if an
            # extension that sets attributes is ever added.
            for name in [n for n in element.attrib if n.lower().startswith("on")]:
                del element.attrib[name]
        for element in root.iter("a"):
            href = rewrite_link(element.get("href", ""))
            if href is None:  # a file of the repository: no page to link to
                element.tag = "span"
                element.attrib.clear()
                element.set("class", "repo-path")
            else:
                element.set("href", href)
        for element in root.iter("img"):
            element.set("src", rewrite_asset(element.get("src", "")))


def rewrite_link(href: str) -> str | None:
    """The href to render; None for a relative link to a file that is not a doc."""
    parts = urlsplit(href)
    if parts.scheme:
        return href if parts.scheme.lower() in SAFE_SCHEMES else "#"
    if parts.netloc or not parts.path:
        return href  # protocol-relative or a bare #fragment
    if parts.path.startswith("/"):
        return href  # a path of this site, e.g. /superadmin/metrics/
    name = parts.path.removeprefix("./")
    if "/" not in name and FILE_NAME.match(name):
        return reverse("dashboard:doc-asset", args=[name])
    if not name.endswith(".md") or "/" in name:
        return None  # ../workers/queues.py and the like live in the repository, not here
    slug = Path(parts.path).stem
    if not SLUG.match(slug):
        return "#"
    return reverse("dashboard:doc", args=[slug]) + (f"#{parts.fragment}" if parts.fragment else "")


def rewrite_asset(src: str) -> str:
    parts = urlsplit(src)
    if parts.scheme or parts.netloc:
        return src if parts.scheme.lower() in {"http", "https"} else ""
    name = Path(parts.path).name
    return reverse("dashboard:doc-asset", args=[name]) if FILE_NAME.match(name) else ""


def _markdown() -> markdown.Markdown:
    md = markdown.Markdown(extensions=list(EXTENSIONS))
    # Raw HTML in a doc is shown as text, never passed through.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_LinkRewriter(md), "flowwatch_links", 1)
    return md


@dataclass(frozen=True)
class RenderedDoc:
    slug: str
    title: str
    html: str  # safe: raw HTML escaped, links filtered
    toc: str


def render(slug: str) -> RenderedDoc | None:
    path = doc_path(slug)
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    md = _markdown()
    html = md.convert(text)
    return RenderedDoc(slug, title_of(text, slug), html, getattr(md, "toc", ""))


# --- search index ----------------------------------------------------------

class Section(TypedDict):
    slug: str
    title: str  # the doc's title
    heading: str
    anchor: str
    text: str  # plain text of the section


def sections_of(slug: str, text: str) -> list[Section]:
    title = title_of(text, slug)
    sections: list[Section] = []
    heading, anchor, lines, in_code = title, "", [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        match = None if in_code else _HEADING.match(line)
        if match:
            sections.append(_section(slug, title, heading, anchor, lines))
            heading, anchor, lines = match.group(2), slugify(match.group(2), "-"), []
        else:
            lines.append(line)
    sections.append(_section(slug, title, heading, anchor, lines))
    return [s for s in sections if s["text"] or s["anchor"]]


def _section(slug: str, title: str, heading: str, anchor: str, lines: list[str]) -> Section:
    plain = _MARKUP.sub(lambda m: m.group(1) or " ", " ".join(lines))
    return Section(slug=slug, title=title, heading=heading, anchor=anchor, text=" ".join(plain.split()))


def build_index() -> list[Section]:
    return [
        section
        for path in sorted(docs_dir().glob("*.md"))
        if SLUG.match(path.stem)
        for section in sections_of(path.stem, path.read_text(encoding="utf-8"))
    ]


def index_key() -> str:
    """The cache key of the index for the docs as they are now on disk."""
    digest = hashlib.sha1()
    for path in sorted(docs_dir().glob("*.md")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_mtime_ns}:{stat.st_size};".encode())
    return cache_families.key("docs_index", digest.hexdigest()[:16])


@dataclass
class IndexLookup:
    sections: list[Section]
    source: str  # "cache", "rebuilt" or "rebuilt, cache unavailable"


def load_index() -> IndexLookup:
    """The index from the cache, rebuilt (and stored) when missing."""
    key = index_key()
    try:
        cached = cache.get(key)
    except CACHE_ERRORS:
        return IndexLookup(build_index(), "rebuilt, cache unavailable")
    if cached is not None:
        return IndexLookup(cached, "cache")
    sections = build_index()
    try:
        cache.set(key, sections, timeout=cache_families.timeout("docs_index"))
    except CACHE_ERRORS:
        return IndexLookup(sections, "rebuilt, cache unavailable")
    return IndexLookup(sections, "rebuilt")


def rebuild_index() -> int:
    """Store a fresh index for the docs as they are now; the number of sections.

    Unlike :func:`load_index` it lets a cache error through, so that the
    rebuild is reported as failed rather than silently skipped.
    """
    sections = build_index()
    cache.set(index_key(), sections, timeout=cache_families.timeout("docs_index"))
    return len(sections)


class Hit(TypedDict):
    section: Section
    score: int
    snippet: list[tuple[str, bool]]  # (text, is_match) pieces; the template escapes them


def search(query: str, sections: list[Section], limit: int = 20) -> list[Hit]:
    terms = [t for t in dict.fromkeys(query.lower().split()) if t][:8]
    if not terms:
        return []
    hits = []
    for section in sections:
        body, heading = section["text"].lower(), (section["heading"] + " " + section["title"]).lower()
        if not all(t in body or t in heading for t in terms):
            continue
        score = sum(body.count(t) + 5 * heading.count(t) for t in terms)
        hits.append(Hit(section=section, score=score, snippet=snippet(section["text"], terms)))
    return sorted(hits, key=lambda h: -h["score"])[:limit]


def snippet(text: str, terms: list[str], width: int = 200) -> list[tuple[str, bool]]:
    """A window of ``text`` around the first match, split into marked pieces."""
    lowered = text.lower()
    first = min((i for i in (lowered.find(t) for t in terms) if i >= 0), default=0)
    start = max(0, first - width // 3)
    window = text[start:start + width]
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
    pieces: list[tuple[str, bool]] = [("…", False)] if start else []
    position = 0
    for match in pattern.finditer(window):
        pieces.append((window[position:match.start()], False))
        pieces.append((match.group(0), True))
        position = match.end()
    pieces.append((window[position:], False))
    if start + width < len(text):
        pieces.append(("…", False))
    return [p for p in pieces if p[0]]


def context_for_search(query: str) -> dict[str, Any]:
    lookup = load_index()
    return {"query": query, "hits": search(query, lookup.sections), "index_source": lookup.source}
