"""Install hints name a distribution that is really ours, and say the same thing everywhere.

`mlp` on PyPI is someone else's project, so `pip install 'mlp[jax]'` would install
an unrelated package: this project is distributed as ``mlp-array-api`` (the
import names stay ``mlp`` and ``backends``).
"""

from __future__ import annotations

import pathlib
import re
import tomllib

from backends import _torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIST = "mlp-array-api"


def _sources():
    for folder in ("mlp", "backends"):
        yield from (ROOT / folder).glob("*.py")
    yield ROOT / "README.md"
    yield ROOT / "noxfile.py"


def test_the_distribution_name_is_ours():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["name"] == DIST
    for deps in meta["optional-dependencies"].values():
        for dep in deps:
            assert not re.match(r"mlp\[", dep), dep  # self-references use our name


def test_no_install_hint_names_the_other_projects_distribution():
    for path in _sources():
        text = path.read_text()
        hits = re.findall(r"""pip install ['"]?mlp\[""", text)
        assert not hits, f"{path.name} tells users to pip install 'mlp[...]'"


def test_torch_advice_is_the_same_in_the_readme_and_the_error_message():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in (
        _torch.INSTALL_ADVICE)
    assert "5 GB CUDA build" in readme and "5 GB CUDA build" in _torch.INSTALL_ADVICE
