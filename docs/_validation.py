"""What numpydoc's validation checks on every public docstring.

Shared by the Sphinx build (``docs/conf.py``: ``numpydoc_validation_checks``)
and the test that validates every public name without building the site
(``tests/test_docstrings.py``), so both hold the docstrings to one standard.
"""

from __future__ import annotations

import importlib
import inspect
import re

#: numpydoc check codes: "all" minus the ones listed after it.
NUMPYDOC_CHECKS: set[str] = {"all", "SA01", "EX01", "ES01"}

#: The modules whose ``__all__`` the site's API reference documents.
DOCUMENTED_MODULES = ("mlp", "mlp.optimizers", "mlp.schedules", "mlp.callbacks", "mlp.sklearn",
                      "mlp.export", "mlp.backends")

#: Regular expressions of object names whose docstrings are not validated because a check
#: is wrong for them, each with the reason.
WRONG_CHECKS: set[str] = {
    # A `typing.Protocol` (the in-place operations a backend may offer): its signature
    # is typing's generated ``(*args, **kwargs)``, which PR01 asks to document, though
    # a protocol is never instantiated. Its methods are still validated.
    r"\.InplaceOps$",
}


def _is_data(value: object) -> bool:
    """Whether a class or module attribute is data (documented by a ``#:`` comment), not
    a function, property, class or module (documented by a docstring)."""
    if isinstance(value, (staticmethod, classmethod, property)):
        return False
    return not (inspect.isroutine(value) or inspect.isclass(value) or inspect.ismodule(value)
                or callable(getattr(value, "fn", None)))  # scikit-learn's `available_if`


def data_attributes() -> set[str]:
    """``Class.attribute`` and ``module.CONSTANT`` of the data the site documents.

    numpydoc validates a data attribute against the docstring of its value's type (a
    ``dict``'s, a ``bool``'s, "Alias for field number 0" of a NamedTuple's field), not
    against the ``#:`` comment the page shows, so every check is wrong for them.
    """
    names: set[str] = set()
    for module_name in DOCUMENTED_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # (mlp.sklearn without scikit-learn)
            continue
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and obj.__module__.split(".")[0] in ("mlp", "backends"):
                names.update(f"{obj.__name__}.{attr}" for attr, value in vars(obj).items()
                             if not attr.startswith("_") and _is_data(value))
                names.update(f"{obj.__name__}.{attr}"  # declared without a value
                             for attr in vars(obj).get("__annotations__", {})
                             if not attr.startswith("_") and attr not in vars(obj))
            elif _is_data(obj):  # a constant, or a type alias
                names.add(f"{module_name}.{name}")
    return names


#: Every name whose docstring is not validated: `WRONG_CHECKS` and `data_attributes`.
NUMPYDOC_EXCLUDE: set[str] = WRONG_CHECKS | {rf"(^|\.){re.escape(name)}$"
                                             for name in sorted(data_attributes())}
