"""The README and the documentation stay true: every Python block of README.md and of
the site's pages runs as written (see `tests/readme_blocks.py`)."""

from __future__ import annotations

import pytest

from tests.conftest import _selected
from tests.readme_blocks import all_blocks, missing, needs, python_blocks, run_block

BLOCKS = python_blocks()
ALL_BLOCKS = all_blocks()
SELECTED = _selected()  # at collection: the tests themselves run without $MLP_BACKEND



def _ours(source) -> bool:
    """Whether this test session runs the block: a block on the default backend (numpy) in
    the session that tests numpy, a block that needs a backend in that backend's session
    (the other sessions would only run the same block again)."""
    wanted = needs(source) or ["numpy"]
    return any(name in SELECTED for name in wanted)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


def test_the_guide_pages_have_python_blocks():
    pages = {page for page, _, _ in ALL_BLOCKS}
    assert {"README.md", "docs/getting-started.md", "docs/guide/training.md"} <= pages


@pytest.mark.parametrize("page, line, source", ALL_BLOCKS,
                         ids=[f"{page}:{line}" for page, line, _ in ALL_BLOCKS])
def test_block_runs_as_written(page, line, source, tmp_path):
    where = f"{page}:{line}"
    if not _ours(source):
        pytest.skip(f"{where} runs in the session of {needs(source) or ['numpy']}")
    absent = missing(needs(source))
    if absent:
        pytest.skip(f"{where} needs {', '.join(absent)}")
    result = run_block(source, tmp_path)
    assert result.returncode == 0, f"{where} failed:\n{result.stderr[-3000:]}"


def test_needs_marker_is_read_from_the_first_line():
    assert needs("# needs: cupy, jax\nimport mlp\n") == ["cupy", "jax"]
    assert needs("import mlp\n# needs: cupy\n") == []
