"""Every document a file names is in the repository.

Someone with a fresh clone has only what is tracked: a comment or a page that
sends them to a design note kept elsewhere, or a link to a page or section
that does not exist, leaves them without the explanation.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Notes that were never part of the repository.  Each pattern is written so
# that it does not match its own source text.
OUTSIDE_NOTES = {
    "a design section or file": re.compile(r"\bDESIGN(?:\.md|\s*§)"),
    "a style note": re.compile(r"\bSTYLE(?:\.md|\s*§)"),
    "a traps note": re.compile(r"\bTRAPS[.]md"),
    "an API note": re.compile(r"\bCPI[_]API"),
    "a shared folder": re.compile(r"(?<![\w/.-])shared[/]"),
}
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOCS_PATH = re.compile(r"(?<![\w/.-])docs/[\w.-]+\.md\b")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = []
    for name in names.splitlines():
        path = ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]:
            found.append(path)
    return found


def anchors_of(markdown: Path) -> set[str]:
    """Heading ids as the in-app docs (python-markdown's toc) and GitHub make them."""
    from markdown.extensions.toc import slugify

    return {slugify(heading, "-") for heading in HEADING.findall(markdown.read_text())}


def broken_link(source: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``source``) leads nowhere, or None."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
        return None  # http(s), mailto: outside the repository by intent
    path_part, _, anchor = target.partition("#")
    destination = (source.parent / path_part).resolve() if path_part else source
    if not destination.exists():
        return f"{target}: no such file"
    if anchor and destination.suffix == ".md" and anchor not in anchors_of(destination):
        return f"{target}: no heading #{anchor} in {destination.name}"
    return None


def test_no_file_sends_the_reader_to_a_note_outside_the_repository():
    found = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}"
                      for what, pattern in OUTSIDE_NOTES.items() if pattern.search(line)]
    assert found == []


def test_every_relative_markdown_link_reaches_a_file_and_its_heading():
    found = []
    for path in tracked_text_files():
        if path.suffix == ".md":
            for target in MARKDOWN_LINK.findall(path.read_text()):
                problem = broken_link(path, target)
                if problem:
                    found.append(f"{path.relative_to(ROOT)}: {problem}")
    assert found == []


def test_every_page_of_docs_a_file_names_exists():
    found = []
    for path in tracked_text_files():
        for name in set(DOCS_PATH.findall(path.read_text(errors="replace"))):
            if not (ROOT / name).is_file():
                found.append(f"{path.relative_to(ROOT)} names {name}")
    assert found == []


def test_the_checks_above_find_what_they_look_for(tmp_path):
    # The samples are spelled with a "~" so that this file does not name the notes itself.
    samples = ("see DE~SIGN §4", "(DE~SIGN.md section 1)", "ST~YLE.md §8", "TR~APS.md", "the CPI~_API notes",
               "(sha~red/TR~APS.md)")
    for line in (sample.replace("~", "") for sample in samples):
        assert any(p.search(line) for p in OUTSIDE_NOTES.values()), line
    assert not any(p.search("a shared folder, /srv/shared/x, DESIGNER") for p in OUTSIDE_NOTES.values())
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Queue families and routing\n")
    assert broken_link(page, "page.md#queue-families-and-routing") is None
    assert broken_link(page, "#top") is None
    assert broken_link(page, "missing.md") == "missing.md: no such file"
    assert "no heading #nope" in broken_link(page, "page.md#nope")
    assert broken_link(page, "https://example.com/missing.md") is None
