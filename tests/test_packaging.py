"""Install hints name a distribution that is really ours, and say the same thing everywhere.

`mlp` on PyPI is someone else's project, so `pip install 'mlp[jax]'` would install
an unrelated package: this project is distributed as ``mlp-array-api`` (the
import name stays ``mlp``, with the backends as ``mlp.backends``).
"""

from __future__ import annotations

import inspect
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import tomllib

import pytest

from mlp.backends import _torch

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
    # (the functional core, the optimizers, the schedules and the engine at least)
    assert {"mlp.core", "mlp.schedules", "mlp.metrics", "mlp.tree", "mlp.optimizers",
            "mlp.engine.*", "mlp.callbacks.*", "mlp.training", "mlp.backends.*"} <= set(strict)
    # no module is left out of the check (errors are waived by code, not wholesale)
    assert not any(o.get("ignore_errors") for o in tool["mypy"]["overrides"])
    ignores = tool["ruff"]["lint"]["per-file-ignores"]
    pattern = next(p for p, codes in ignores.items() if p.startswith("!") and codes == ["ANN"])
    modules = _ruff_modules(pattern[1:])
    assert sorted(name for name, _ in modules) == sorted(strict)
    assert all(any((ROOT / folder).glob(f"{name}.py")) for _, (folder, name) in modules)
    assert ignores.get(pattern[1:]) == ["ANN401"]  # Any is allowed in the same files
    assert "ANN" in tool["ruff"]["lint"]["select"]


def _ruff_modules(pattern):
    """``[(mypy's module name, (folder, file pattern))]`` of ruff's file pattern
    ``{mlp/{core,sklearn/_data,callbacks/*},backends/*}.py``: a module of a package
    (``sklearn/_data`` is mypy's ``mlp.sklearn._data``) or every module of a package
    (``callbacks/*`` is ``mlp.callbacks.*``, ``backends/*`` is ``mlp.backends.*``, the
    name it is installed under)."""
    body = re.fullmatch(r"\{(.*)\}\.py", pattern).group(1)
    parts = re.findall(r"(\w+)/(\{[^{}]*\}|[\w*/]+)(?:,|$)", body)
    assert ",".join(f"{folder}/{names}" for folder, names in parts) == body, pattern
    return [(f"mlp.backends.{name.replace('/', '.')}" if folder == "backends"
             else f"{folder}.{name.replace('/', '.')}", (folder, name))
            for folder, names in parts for name in names.strip("{}").split(",")]


# ------------------------------------------------------------ annotations
#: Public functions and methods still unannotated, by module or qualified name (each
#: entry still has one, so the list shrinks as the work is done; a new unannotated one
#: anywhere else fails the test below).
NOT_YET_ANNOTATED: set[str] = set()  # (every one annotated: keep it empty)


def _functions_of(member):
    """The functions a class attribute runs: a method, a static or class method, a
    property's getter, a descriptor wrapping one (scikit-learn's ``available_if``)."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    elif isinstance(member, property):
        member = member.fget
    elif not inspect.isfunction(member):
        member = getattr(member, "fn", None)
    return [member] if inspect.isfunction(member) else []


def _unannotated(fn, method):
    """Whether ``fn`` (unwrapped) lacks an annotation on a parameter (but ``self``/``cls``)
    or on its return value."""
    fn = inspect.unwrap(fn)
    code = fn.__code__
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
    names = list(code.co_varnames[:n])
    if method and names[:1] in (["self"], ["cls"]):
        names = names[1:]
    return any(name not in fn.__annotations__ for name in [*names, "return"])


def _public_definitions(module):
    """``(qualified name, function, is a method)`` of the module's public functions and of
    the public methods (and ``__init__``) of its public classes, and of what it exports."""
    exported = set(getattr(module, "__all__", ()))
    for name, obj in vars(module).items():
        ours = getattr(obj, "__module__", None) == module.__name__ or name in exported
        if name.startswith("_") and name not in exported or not ours:
            continue
        if inspect.isfunction(obj):
            yield f"{obj.__module__}.{obj.__qualname__}", obj, False
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__":
                    continue
                for fn in _functions_of(member):
                    if fn.__module__.split(".")[0] in ("mlp", "backends"):  # not typing's
                        yield f"{obj.__module__}.{obj.__qualname__}.{attr}", fn, True


def test_every_public_function_and_method_is_annotated():
    """Every public function of mlp's public modules (``mlp``, ``mlp.sklearn``,
    ``mlp.io``, ...; no part of the name private) and of the backends (``mlp.backends``
    and each backend's module, whose classes `mlp.backends.get_backend` gives), and every public
    method of their public classes has annotations on its parameters and its return
    value, but those `NOT_YET_ANNOTATED` names, each of which still has one to do."""
    import importlib
    import pkgutil

    import mlp
    from mlp import backends

    names = ["mlp"] + [info.name for info in pkgutil.walk_packages(mlp.__path__, "mlp.")
                       if not any(part.startswith("_") for part in info.name.split("."))]
    names += ["mlp.backends"] + [info.name for info in pkgutil.iter_modules(
        backends.__path__, "mlp.backends.")]
    missing = {qualname for name in names
               for qualname, fn, method in _public_definitions(importlib.import_module(name))
               if _unannotated(fn, method)}
    allowed = {q for q in missing
               if any(q == entry or q.startswith(entry + ".") for entry in NOT_YET_ANNOTATED)}
    assert sorted(missing - allowed) == []
    done = [entry for entry in NOT_YET_ANNOTATED
            if not any(q == entry or q.startswith(entry + ".") for q in allowed)]
    assert done == [], "annotated now: take them off NOT_YET_ANNOTATED"


# ------------------------------------------------------------ the import name
@pytest.mark.parametrize("theirs", ["backends.py", "backends/__init__.py"])
def test_a_users_own_backends_module_does_not_break_mlp(tmp_path, theirs):
    """The backends are installed as ``mlp.backends``: a ``backends.py`` or ``backends/``
    of the user's own, in the folder they run from, stays theirs and mlp works beside it."""
    path = tmp_path / theirs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("raise ImportError('the user\\'s own backends module was imported')\n"
                    "def get_backend(*args, **kwargs):\n    raise AssertionError\n")
    script = textwrap.dedent("""
        import numpy as np
        import mlp
        from mlp import backends
        model = mlp.MLP([3, 4, 2], seed=0)
        model.fit(np.ones((8, 3)), np.ones((8, 2)), epochs=1)
        print(backends.__name__, backends.get_backend("numpy").name, model.epochs_trained_)
        try:
            import backends as theirs
        except ImportError as exc:
            print("theirs:", exc)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "mlp.backends numpy 1"
    assert lines[1] == "theirs: the user's own backends module was imported"


def test_every_package_folder_is_installed():
    """Each folder of the source tree that holds an ``__init__.py`` is a package pyproject
    installs (under the name it is imported by), so an installed copy has all of it."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"mlp." + ".".join(p.parent.relative_to(ROOT / "mlp").parts)
               for p in (ROOT / "mlp").rglob("__init__.py")} | {"mlp."}
    expected = {name.rstrip(".") for name in folders} | {"mlp.backends"}
    assert set(tool["packages"]) == expected
    assert tool["package-dir"] == {"mlp.backends": "backends"}
    assert not any(p.name == "__init__.py" for p in (ROOT / "backends").rglob("*/__init__.py"))
