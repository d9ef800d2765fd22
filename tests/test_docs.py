"""The README's links lead somewhere, the site's pages are all in it, and CITATION.cff is valid.

Every relative link of README.md names a file of the repository; one into ``docs/``
names a page of the site (reachable from ``docs/index.md`` through the toctrees); an
anchor (``page.md#a-heading``, ``#a-heading``) names a heading of that page, slugged
as GitHub and MyST slug them. The site's build checks the links between its own pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
_FENCED = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```", re.S | re.M)
_RST_TOCTREE = re.compile(r"^\.\. toctree::\n((?:[ \t]+.*\n|\n)*)", re.M)


def slug(heading: str) -> str:
    """A heading's anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = _FENCED.sub("", page.read_text())
    return {slug(m.group(2)) for m in _HEADING.finditer(text)}


def links(page: Path) -> list[str]:
    return _LINK.findall(_FENCED.sub("", page.read_text()))


def _toctree_entries(page: Path) -> list[Path]:
    text = page.read_text()
    if page.suffix == ".md":
        bodies = [b for b in _TOCTREE.findall(text)]
        lines = [line for b in bodies for line in b.splitlines() if not line.startswith(":")]
    else:
        bodies = _RST_TOCTREE.findall(text)
        lines = [line for b in bodies for line in b.splitlines()
                 if line.strip() and not line.strip().startswith(":")]
    out = []
    for entry in (line.strip() for line in lines):
        if not entry:
            continue
        for suffix in (".md", ".rst"):
            candidate = page.parent / f"{entry}{suffix}"
            if candidate.exists():
                out.append(candidate.resolve())
    return out


def site_pages() -> set[Path]:
    """The pages reachable from docs/index.md through the toctrees (in the repository:
    the API modules' and the examples' pages are written by the build)."""
    seen: set[Path] = set()
    todo = [(DOCS / "index.md").resolve()]
    while todo:
        page = todo.pop()
        if page not in seen:
            seen.add(page)
            todo += _toctree_entries(page)
    return seen


def test_slugs_follow_github():
    assert slug("JAX: compiled once, kept on disk") == "jax-compiled-once-kept-on-disk"
    assert slug("`fit` continues") == "fit-continues"
    assert slug("What is bit for bit, and where") == "what-is-bit-for-bit-and-where"


def test_the_site_reaches_every_guide_page():
    pages = site_pages()
    guide = {p.resolve() for p in (DOCS / "guide").glob("*.md")}
    assert guide and guide <= pages
    assert (DOCS / "getting-started.md").resolve() in pages
    assert (DOCS / "api" / "index.rst").resolve() in pages


def _readme_links() -> list[str]:
    return [t for t in links(README) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("target", _readme_links())
def test_readme_link_resolves(target):
    path, _, anchor = target.partition("#")
    page = README if not path else (ROOT / path).resolve()
    assert page.exists(), f"README.md links to {target}: no such file"
    assert ROOT in page.parents or page == ROOT, f"README.md links outside the repository: {target}"
    if DOCS in page.parents:
        assert page in site_pages(), f"README.md links to {target}, which is not a page of the site"
    if anchor:
        assert page.suffix == ".md", f"README.md links to an anchor outside Markdown: {target}"
        assert anchor in anchors(page), (
            f"README.md links to {target}: {page.name} has no heading with that anchor "
            f"(its anchors: {sorted(anchors(page))})")


def test_readme_links_into_the_guide():
    targets = {t.partition("#")[0] for t in _readme_links()}
    assert {"docs/getting-started.md", "docs/guide/training.md", "docs/api/index.rst"} <= targets


def test_readme_is_short_and_has_no_history():
    text = README.read_text()
    assert len(text.splitlines()) <= 210
    assert not re.search(r"\bissue \d+|#\d{2,}\b|\bround (two|three|four)\b|20\d\d-\d\d-\d\d",
                         text, re.I)


def test_citation_cff_is_valid():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert data["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert data[key], key
    assert all(isinstance(a, dict) and (a.get("name") or a.get("family-names"))
               for a in data["authors"])
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert data.get("license") == project["license"]
    from mlp import __version__

    assert str(data.get("version")) == __version__
