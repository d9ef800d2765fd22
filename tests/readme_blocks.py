"""The Python blocks of the README and the documentation pages, as a user would run them.

Every fenced ```` ```python ```` block of README.md and of the site's Markdown
pages (``docs/**/*.md``) must run as written, on its own (a fresh interpreter in
an empty folder), after the README's install command. A block whose first line
is ``# needs: NAME`` (a backend such as ``cupy`` or ``jax``) runs only where that
backend can run, and is reported as skipped elsewhere: a GPU example cannot run
on a machine without one.

    python tests/readme_blocks.py          # run them all, print one line each
    python tests/readme_blocks.py docs/guide/training.md   # one page's
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# what the site's build writes into docs/ (sphinx-gallery's pages are the examples')
_GENERATED = ("_build", "auto_examples", "api/generated")
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NEEDS = re.compile(r"^#\s*needs:\s*([\w, -]+)")


def python_blocks(text: str | None = None) -> list[tuple[int, str]]:
    """``(line number, source)`` of every ```` ```python ```` block of a Markdown text
    (by default the README's)."""
    text = README.read_text() if text is None else text
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _FENCE.finditer(text)]


def pages() -> list[pathlib.Path]:
    """README.md and the site's Markdown pages (not what the build generates)."""
    found = sorted(p for p in DOCS.rglob("*.md")
                   if not any(p.relative_to(DOCS).as_posix().startswith(g) for g in _GENERATED))
    return [README, *found]


def all_blocks(paths=None) -> list[tuple[str, int, str]]:
    """``(page, line number, source)`` of every Python block of ``paths`` (default:
    `pages`), the page relative to the repository's root."""
    out = []
    for path in paths or pages():
        path = pathlib.Path(path).resolve()
        name = path.relative_to(ROOT).as_posix()
        out += [(name, line, source) for line, source in python_blocks(path.read_text())]
    return out


def needs(source: str) -> list[str]:
    """The backends a block declares with a first line ``# needs: a, b``."""
    first = source.lstrip().split("\n", 1)[0]
    match = _NEEDS.match(first)
    return [n.strip() for n in match.group(1).split(",") if n.strip()] if match else []


def missing(names) -> list[str]:
    """The names among ``names`` that cannot run here (unknown backends count as missing)."""
    from mlp import backends

    out = []
    for name in names:
        try:
            backends.get_backend(name)
        except Exception:  # noqa: BLE001 - unavailable for whatever reason
            out.append(name)
    return out


def run_block(source: str, workdir, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one block in a fresh interpreter, in ``workdir``, with MPLBACKEND=Agg."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("MLP_BACKEND", None)
    return subprocess.run([sys.executable, "-c", source], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    failed = 0
    for page, line, source in all_blocks(argv or None):
        absent = missing(needs(source))
        if absent:
            print(f"{page}:{line}: skipped (needs {', '.join(absent)})")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            result = run_block(source, tmp)
        status = "ok" if result.returncode == 0 else "FAILED"
        failed += result.returncode != 0
        print(f"{page}:{line}: {status}")
        if result.returncode:
            print(result.stderr[-3000:])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
