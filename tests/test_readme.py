"""The README stays true: every Python block runs as written (see `tests/readme_blocks.py`)."""

from __future__ import annotations

import pytest

from tests.readme_blocks import missing, needs, python_blocks, run_block

BLOCKS = python_blocks()


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs_as_written(line, source, tmp_path):
    absent = missing(needs(source))
    if absent:
        pytest.skip(f"README.md:{line} needs {', '.join(absent)}")
    result = run_block(source, tmp_path)
    assert result.returncode == 0, f"README.md:{line} failed:\n{result.stderr[-3000:]}"


def test_needs_marker_is_read_from_the_first_line():
    assert needs("# needs: cupy, jax\nimport mlp\n") == ["cupy", "jax"]
    assert needs("import mlp\n# needs: cupy\n") == []
