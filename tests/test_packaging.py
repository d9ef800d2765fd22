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


def test_one_version_source_and_a_license_people_can_read():
    import mlp
    from mlp._version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    meta, setuptools = project["project"], project["tool"]["setuptools"]
    assert "version" not in meta and "version" in meta["dynamic"]
    assert setuptools["dynamic"]["version"] == {"attr": "mlp._version.__version__"}
    assert mlp.__version__ == __version__ and re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "Typing :: Typed" in meta["classifiers"]
    assert (ROOT / "mlp" / "py.typed").exists() and "py.typed" in setuptools["package-data"]["mlp"]


def test_scikit_learn_is_bounded_above_where_its_private_helpers_are_used():
    """mlp.sklearn imports a few private scikit-learn helpers (names starting with _):
    every requirement on scikit-learn that serves it has an upper bound."""
    private = [line for path in (ROOT / "mlp" / "sklearn").glob("*.py")
               for line in path.read_text().splitlines()
               if re.match(r"\s*from sklearn\S* import .*\b_\w+", line)
               or re.match(r"\s*from sklearn\S*\._\w+ import", line)]
    assert private  # if none were left, the bound could go
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra in ("sklearn", "test"):
        (spec,) = [d for d in extras[extra] if d.startswith("scikit-learn")]
        assert re.search(r",\s*<\s*\d", spec), (extra, spec)


def test_mlp_sklearn_without_scikit_learn_names_the_extra():
    import subprocess
    import sys

    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import mlp.sklearn\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "mlp.sklearn needs scikit-learn and SciPy (sklearn is not installed)" in out
    assert "pip install 'mlp-array-api[sklearn]'" in out


def test_the_strictly_typed_modules_are_the_same_for_mypy_and_ruff():
    """mypy checks them strictly and ruff requires their annotations: one list, both tools
    (and each module exists, so a moved file cannot drop out of the check unnoticed)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    strict = next(o["module"] for o in tool["mypy"]["overrides"]
                  if o.get("disallow_untyped_defs"))
    assert {"mlp.core", "mlp.schedules", "mlp.metrics", "mlp.tree"} <= set(strict)
    # no module is left out of the check (errors are waived by code, not wholesale)
    assert not any(o.get("ignore_errors") for o in tool["mypy"]["overrides"])
    ignores = tool["ruff"]["lint"]["per-file-ignores"]
    pattern = next(p for p, codes in ignores.items() if p.startswith("!") and codes == ["ANN"])
    names = re.fullmatch(r"!mlp/\{(.*)\}\.py", pattern).group(1).split(",")
    assert sorted(f"mlp.{n.replace('/', '.')}" for n in names) == sorted(strict)
    assert all((ROOT / "mlp" / f"{n}.py").is_file() for n in names)
    assert "ANN" in tool["ruff"]["lint"]["select"]
