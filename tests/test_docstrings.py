"""Every public name has a numpydoc docstring that numpydoc's validation accepts, and the
examples in the docstrings run as written (doctests).

The public names are each public module's ``__all__`` (`PUBLIC_MODULES`), the classes and
functions of the modules ``mlp.__all__`` names (``mlp.core``, ``mlp.losses``...: what their
reference pages list), and the public methods and properties of the public classes, those
inherited from another class of mlp included (those of third-party bases, such as
scikit-learn's ``BaseEstimator``, are theirs). The checks are the ones the site build
applies (``docs/_validation.py``).
"""

from __future__ import annotations

import doctest
import functools
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from _validation import (  # noqa: E402
    DOCUMENTED_MODULES,
    NUMPYDOC_CHECKS,
    NUMPYDOC_EXCLUDE,
    WRONG_CHECKS,
    data_attributes,
)

sys.path.pop(0)

#: The modules whose ``__all__`` is the public API (the site's API reference).
PUBLIC_MODULES = list(DOCUMENTED_MODULES)

#: Modules whose doctests need optional packages, with those packages.
DOCTEST_NEEDS = {"mlp.export": ("ndonnx", "onnxruntime"),
                 "mlp.sklearn": ("sklearn", "scipy")}


# ------------------------------------------------------------ the public names
def _ours(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] in ("mlp", "backends")


def _function_of(member: object) -> object | None:
    """What a class attribute documents: a function, a property, or None (a value)."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    elif not isinstance(member, (property, functools.cached_property)) \
            and not inspect.isfunction(member):
        member = getattr(member, "fn", None)  # scikit-learn's `available_if`
    if isinstance(member, (property, functools.cached_property)) or inspect.isfunction(member):
        return member
    return None


def _members(cls: type) -> list[tuple[str, object]]:
    """``(name, function or property)`` of the public methods and properties of ``cls``,
    its own and those inherited from mlp's classes; a private function under a public
    name (a class attribute pointing at a helper) is the helper's, not the class's."""
    found = []
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((klass for klass in cls.__mro__ if name in vars(klass)), None)
        if owner is None or not _ours(owner):
            continue
        member = _function_of(vars(owner)[name])
        function = getattr(member, "fget", None) or getattr(member, "func", member)
        if member is not None and not getattr(function, "__name__", "").startswith("_"):
            found.append((name, member))
    return found


def _module_members(module: object) -> list[tuple[str, object]]:
    """The classes and functions a module of ``mlp.__all__`` (``mlp.core``...) lists on its
    page: its ``__all__``, else those it defines whose names are public."""
    names = getattr(module, "__all__", None) or [
        name for name, obj in vars(module).items()
        if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__]
    return [(name, getattr(module, name)) for name in names]


class _Names:
    """The public names found so far, each object once (under the first name it is
    reached by)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.names: list[tuple[str, object]] = []

    def add(self, name: str, obj: object) -> bool:
        if id(obj) in self.seen:
            return False
        self.seen.add(id(obj))
        self.names.append((name, obj))
        return True

    def add_named(self, name: str, obj: object) -> None:
        """A class with its methods and properties, or a function; anything else (a
        constant, a type alias) is documented by a comment."""
        if inspect.isclass(obj) and self.add(name, obj):
            for attr, member in _members(obj):
                self.add(f"{name}.{attr}", member)
        elif inspect.isfunction(obj):
            self.add(name, obj)

    def add_module(self, module_name: str) -> None:
        """A public module, what its ``__all__`` names, and the classes and functions of
        the modules it names that are not public modules themselves (``mlp.core``...)."""
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # mlp.sklearn without scikit-learn: the site needs it
            return
        self.add(module_name, module)
        for name in module.__all__:
            obj = getattr(module, name)
            qualified = f"{module_name}.{name}"
            if not inspect.ismodule(obj):
                self.add_named(qualified, obj)
            elif obj.__name__ not in PUBLIC_MODULES and self.add(qualified, obj):
                for attr, member in _module_members(obj):  # as its page lists them
                    self.add_named(f"{qualified}.{attr}", member)


def public_names() -> list[tuple[str, object]]:
    """``(qualified name, object)`` of every public module, function, class, method and
    property, each object once (under the first name it is reached by)."""
    found = _Names()
    for module_name in PUBLIC_MODULES:
        found.add_module(module_name)
    return found.names


# ------------------------------------------------------------ validation
def _problems(name: str, obj: object) -> list[tuple[str, str, str]]:
    from numpydoc.docscrape import get_doc_object
    from numpydoc.validate import Validator, get_validation_checks, validate

    class _Validator(Validator):
        def __init__(self, obj_name: str, obj: object) -> None:
            super().__init__(get_doc_object(obj))

        @property
        def source_file_def_line(self) -> int | None:
            # numpydoc looks for a ``def`` or ``class`` line in the object's source: a
            # module with neither (``mlp/__init__.py``) has none to find
            try:
                return super().source_file_def_line
            except StopIteration:
                return None

    checks = get_validation_checks(set(NUMPYDOC_CHECKS))
    report = validate(name, validator_cls=_Validator, obj=obj)
    return [(name, code, message) for code, message in report["errors"] if code in checks]


def test_the_walk_finds_every_kind_of_public_name():
    """The walk reaches the names it is meant to (so the validation cannot silently
    check nothing): every public module, the main entry points, methods, properties,
    inherited hooks and scikit-learn's ``available_if`` methods."""
    names = dict(public_names())
    assert len(names) >= 250, len(names)
    for name in ["mlp", "mlp.MLP", "mlp.MLP.fit", "mlp.MLP.predict", "mlp.MLP.evaluate",
                 "mlp.MLP.save", "mlp.MLP.n_params", "mlp.MLP.from_config", "mlp.load",
                 "mlp.History.on_epochs_end", "mlp.Callback.on_epoch_end",
                 "mlp.optimizers.adam", "mlp.optimizers.Adam", "mlp.optimizers.Chain.init",
                 "mlp.schedules.cosine_decay", "mlp.export.export_onnx",
                 "mlp.sklearn.MLPClassifier.partial_fit", "mlp.sklearn.MLPRegressor.score",
                 "mlp.get_backend", "mlp.backends.Backend.asarray", "mlp.losses"]:
        assert name in names, name
    # scikit-learn's own methods are scikit-learn's to document
    assert "mlp.sklearn.MLPClassifier.get_params" not in names


def test_every_public_docstring_passes_numpydoc_validation():
    """Every public name's docstring passes the checks of ``docs/_validation.py``: a
    one-line summary ending with a period, every parameter documented in order with a
    type and a description, a Returns section where something is returned, ..."""
    pytest.importorskip("numpydoc")
    excluded = re.compile("|".join(NUMPYDOC_EXCLUDE)) if NUMPYDOC_EXCLUDE else None
    problems = [problem for name, obj in public_names()
                if not (excluded and excluded.search(name))
                for problem in _problems(name, obj)]
    assert problems == []


def test_the_exclusions_each_exclude_a_public_name():
    """Each pattern of ``WRONG_CHECKS`` still matches a public name (a stale one goes), and
    the data attributes excluded are data the site documents, not functions or classes."""
    names = [name for name, _ in public_names()]
    stale = [pattern for pattern in WRONG_CHECKS
             if not any(re.search(pattern, name) for name in names)]
    assert stale == []
    data = data_attributes()
    assert {"KNOWN_BACKENDS", "Schedule", "ScaleByAdamState.count", "Adam.rules",
            "Callback.runs_last"} <= {name.removeprefix("mlp.backends.")
                                      .removeprefix("mlp.schedules.") for name in data}
    validated = [name for name in names
                 if any(re.search(rf"(^|\.){re.escape(d)}$", name) for d in data)]
    assert validated == []


# ------------------------------------------------------------ doctests
def _modules() -> list[str]:
    import mlp
    from mlp import backends

    names = ["mlp", *(info.name for info in pkgutil.walk_packages(mlp.__path__, "mlp."))]
    names += [f"mlp.backends.{info.name}" for info in pkgutil.iter_modules(backends.__path__)]
    return sorted(set(names))


@pytest.mark.parametrize("module_name", _modules())
def test_the_docstring_examples_run(module_name, monkeypatch):
    """The examples in every module's docstrings run as written and print what they
    show (on NumPy: ``$MLP_BACKEND`` is set to numpy for them), as
    ``pytest --doctest-modules mlp`` runs them."""
    for package in DOCTEST_NEEDS.get(".".join(module_name.split(".")[:2]), ()):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"the examples of {module_name} need {package}")
    monkeypatch.setenv("MLP_BACKEND", "numpy")
    module = importlib.import_module(module_name)
    tests = [t for t in doctest.DocTestFinder().find(module, module_name) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    output: list[str] = []
    for test in tests:
        runner.run(test, out=output.append)
    assert runner.failures == 0, "".join(output)


def test_the_main_entry_points_have_examples():
    """The main entry points each show a short example (run by the test above)."""
    import mlp
    from mlp import callbacks, optimizers, schedules
    from mlp.export import export_onnx

    shown = [mlp.MLP, mlp.MLP.fit, mlp.MLP.predict, mlp.MLP.evaluate, mlp.MLP.save, mlp.load,
             mlp.History,
             callbacks.EarlyStopping, optimizers.adam, optimizers.chain, schedules.cosine_decay,
             schedules.step_decay, export_onnx, mlp.get_backend, mlp.metric_mode]
    if importlib.util.find_spec("sklearn") is not None:
        from mlp.sklearn import MLPClassifier, MLPRegressor

        shown += [MLPClassifier, MLPRegressor]
    missing = [getattr(obj, "__qualname__", obj) for obj in shown
               if ">>> " not in (obj.__doc__ or "")]
    assert missing == []
