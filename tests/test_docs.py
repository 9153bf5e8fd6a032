"""The in-app docs: rendering, safety, links between pages, and the cached search index."""

from __future__ import annotations

import os
import re
import time
from html.parser import HTMLParser

import pytest
from django.core.cache import cache
from django.test import override_settings

from apps.dashboard import docs
from tests.servers import free_port
from tests.test_dashboard import dead_cache, redis_connects

GUIDE = """# Operating guide

Intro text about **queues**.

## Restarting Redis

The bundled Redis loses its queues on restart. See [the queue table](queues.md#the-families)
and [Redis recovery](recovery.md). The code is in [routing](../workers/routing.py).

<script>alert("owned")</script>

[click me](javascript:alert(1))

![screen](shot.png)

| setting | default |
|---|---|
| queue warn | 1000 |
"""

QUEUES = """# Queues

## The families

Eighteen queues; backlog means depth.
"""


ATTRIBUTES = """# Attributes

## Click me {: onclick="alert(2)" }

A paragraph.
{: onmouseover="alert(3)" }

[a link](https://example.com){: onclick="alert(4)" }

``` { .python onclick="alert(5)" }
print("hi")
```
"""


class _EventAttributes(HTMLParser):
    """Collects every on* attribute of every element (onclick, onmouseover, ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [(tag, name) for name, _ in attrs if name.lower().startswith("on")]


def event_attributes(html: str) -> list[tuple[str, str]]:
    parser = _EventAttributes()
    parser.feed(html)
    return parser.found


@pytest.fixture
def doc_dir(tmp_path, monkeypatch):
    (tmp_path / "guide.md").write_text(GUIDE)
    (tmp_path / "queues.md").write_text(QUEUES)
    (tmp_path / "shot.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setattr(docs, "docs_dir", lambda: tmp_path)
    return tmp_path


@pytest.fixture
def reader(client, outsider):
    client.force_login(outsider)
    return client


def test_docs_need_a_login(client, db, doc_dir):
    response = client.get("/docs/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_any_logged_in_user_sees_the_list_of_docs(reader, doc_dir):
    html = reader.get("/docs/").content.decode()
    assert 'href="/docs/guide/"' in html and "Operating guide" in html
    assert 'href="/docs/queues/"' in html


def test_a_doc_renders_as_html_with_headings_and_tables(reader, doc_dir):
    html = reader.get("/docs/guide/").content.decode()
    assert '<h2 id="restarting-redis">Restarting Redis</h2>' in html
    assert "<td>1000</td>" in html


def test_links_between_docs_point_at_their_pages(reader, doc_dir):
    html = reader.get("/docs/guide/").content.decode()
    assert 'href="/docs/queues/#the-families"' in html
    assert 'href="/docs/recovery/"' in html
    # A file of the repository is named, not linked to a page that cannot exist.
    assert '<span class="repo-path">routing</span>' in html


def test_raw_html_and_script_links_in_a_doc_are_neutralised(reader, doc_dir):
    html = reader.get("/docs/guide/").content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html
    assert "javascript:" not in html


def test_attribute_lists_in_a_doc_cannot_add_event_handlers(reader, doc_dir):
    (doc_dir / "attributes.md").write_text(ATTRIBUTES)
    html = reader.get("/docs/attributes/").content.decode()
    assert "Click me" in html and "A paragraph." in html and 'href="https://example.com"' in html
    assert event_attributes(html) == []


def test_images_of_docs_are_served_and_nothing_else(reader, doc_dir):
    html = reader.get("/docs/guide/").content.decode()
    assert 'src="/docs/files/shot.png"' in html
    assert reader.get("/docs/files/shot.png").status_code == 200
    assert reader.get("/docs/files/guide.md").status_code == 404
    assert reader.get("/docs/files/..%2Fsettings.png").status_code == 404


@pytest.mark.parametrize("slug", ["missing", "..", ".hidden", "guide.md"])
def test_unknown_or_malformed_doc_names_are_404(reader, doc_dir, slug):
    assert reader.get(f"/docs/{slug}/").status_code == 404


def test_search_finds_a_section_and_links_to_its_anchor(reader, doc_dir, clean_redis):
    html = reader.get("/docs/search/", {"q": "bundled restart"}).content.decode()
    assert 'href="/docs/guide/#restarting-redis"' in html
    assert "<mark>bundled</mark>" in html


def test_search_terms_are_escaped(reader, doc_dir, clean_redis):
    html = reader.get("/docs/search/", {"q": '<img src=x onerror=alert(1)>'}).content.decode()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_search_index_lives_in_the_docs_index_cache_family(doc_dir, clean_redis):
    lookup = docs.load_index()
    assert lookup.source == "rebuilt"
    key = docs.index_key()
    assert key.startswith("docs_index:")
    assert cache.get(key) == lookup.sections
    assert cache.ttl(key) <= 600  # the family's short timeout
    assert docs.load_index().source == "cache"


def test_a_missing_index_is_rebuilt(doc_dir, clean_redis):
    docs.load_index()
    cache.delete(docs.index_key())
    assert docs.load_index().source == "rebuilt"


def test_editing_a_doc_gives_a_fresh_index(doc_dir, clean_redis):
    docs.load_index()
    old_key = docs.index_key()
    path = doc_dir / "queues.md"
    path.write_text(QUEUES + "\n## Priorities\n\nSub-queues per priority.\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert docs.index_key() != old_key
    assert any(s["heading"] == "Priorities" for s in docs.load_index().sections)


def test_search_still_answers_when_the_cache_redis_is_down_without_waiting_past_two_seconds(reader, doc_dir):
    port = free_port()
    with override_settings(CACHES=dead_cache(port)), redis_connects() as attempts:
        html = reader.get("/docs/search/", {"q": "eighteen"}).content.decode()
    assert 'href="/docs/queues/#the-families"' in html
    assert "cache is unavailable" in html
    assert attempts.ports() == {port}
    assert attempts.worst_case_seconds() <= 2.0 and attempts.longest_read_timeout() <= 1.0


def test_every_shipped_doc_renders_and_its_links_to_other_docs_resolve(reader):
    shipped = docs.all_docs()
    assert shipped, "docs/ has no Markdown files"
    for entry in shipped:
        html = reader.get(f"/docs/{entry.slug}/").content.decode()
        for slug in re.findall(r'href="/docs/([^/"#]+)/', html):
            assert docs.doc_path(slug) is not None, f"{entry.slug}.md links to missing {slug}.md"


# --- rebuilt after a Redis restart ----------------------------------------------

def test_running_the_registered_rebuilders_repopulates_the_docs_index(doc_dir, clean_redis):
    from apps.metrics.tasks import rebuild_caches

    assert cache.get(docs.index_key()) is None  # an emptied cache, as after a restart
    results = {result["name"]: result for result in rebuild_caches()}
    assert results["docs_index"]["ok"] is True
    assert cache.get(docs.index_key()) == docs.build_index()
    assert docs.load_index().source == "cache"  # the first search after the restart finds it


def test_a_rebuild_with_the_cache_down_is_reported_as_failed(doc_dir):
    from workers.rebuild import run_rebuilders

    with override_settings(CACHES=dead_cache()):
        (result,) = run_rebuilders(["docs_index"])
    assert result.ok is False and "Connection" in result.error


def test_a_real_worker_rebuilds_the_docs_index_when_rebuild_caches_is_queued(clean_redis, celery_worker):
    from apps.metrics.tasks import rebuild_caches

    key = docs.index_key()  # the shipped docs: the worker reads the same files
    rebuild_caches.apply_async()
    for _ in range(200):  # the task's result is ignored: watch the cache key instead
        if cache.get(key) is not None:
            break
        time.sleep(0.1)
    assert cache.get(key) == docs.build_index()
