"""mypy over mlp/ and backends/, laid out as they are installed.

pyproject installs the top-level ``backends/`` folder as ``mlp.backends`` (setuptools'
``package-dir``), which mypy cannot map by itself: it reads modules from folders. This
script builds ``build/typecheck/mlp``, a folder of links to every entry of ``mlp/`` plus
``backends`` -> ``backends/``, and runs mypy there with pyproject's settings, so the
paths it reports (``mlp/model.py``, ``mlp/backends/_jax.py``) are the sources' own.

    python .ci/typecheck.py        # (nox -s lint runs it)
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def build_tree() -> pathlib.Path:
    tree = ROOT / "build" / "typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "mlp").mkdir(parents=True)
    for entry in (ROOT / "mlp").iterdir():
        # (a link mlp/backends -> ../backends, which some checkouts keep to import the
        # sources without installing them, is the one made below)
        if entry.name not in ("__pycache__", "backends"):
            (tree / "mlp" / entry.name).symlink_to(entry)
    (tree / "mlp" / "backends").symlink_to(ROOT / "backends")
    return tree


if __name__ == "__main__":
    tree = build_tree()
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "mlp", *sys.argv[1:]]
    sys.exit(subprocess.call(command, cwd=tree))
