"""Sphinx configuration: the mlp site (MyST pages, numpydoc, autosummary, sphinx-gallery).

    nox -s docs                                   # what CI runs: -W --keep-going, doctests
    sphinx-build -W --keep-going docs docs/_build/html

The site builds offline (no intersphinx). The API reference lists every name of
each documented module's ``__all__`` (``docs/api/*.rst`` are written from it
here, on every build); autosummary writes one page per name.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import sys
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))  # _validation.py
os.environ.setdefault("MPLBACKEND", "Agg")

from _validation import NUMPYDOC_CHECKS, NUMPYDOC_EXCLUDE  # noqa: E402

import mlp  # noqa: E402

project = "mlp"
author = "The mlp developers"
copyright = "The mlp developers"  # noqa: A001 - Sphinx's name
release = mlp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]
templates_path = ["_templates"]

# -- MyST ----------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, as on GitHub

# -- autodoc, autosummary, numpydoc -------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False  # a module page lists what it defines
autosummary_ignore_module_all = False  # or its __all__
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc sections give the types
numpydoc_show_class_members = False  # the class template documents the members
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# numpydoc's validation of every docstring the site documents (docs/_validation.py, the
# list tests/test_docstrings.py uses too). MLP_DOCS_VALIDATE=0 turns it off.
if os.environ.get("MLP_DOCS_VALIDATE", "1") != "0":
    numpydoc_validation_checks = set(NUMPYDOC_CHECKS)
    numpydoc_validation_exclude = set(NUMPYDOC_EXCLUDE)



def _skip_member(app: object, what: str, name: str, obj: object, skip: bool,
                 options: object) -> bool | None:
    """What a class page leaves out: scikit-learn's generated metadata-routing setters
    (``set_fit_request``...; scikit-learn documents them, in its own glossary's terms)
    and data attributes (a NamedTuple's fields, class-level settings), which the class's
    docstring describes; its methods and properties each get their entry."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    if what == "class" and not (inspect.isroutine(obj) or inspect.isclass(obj) or isinstance(
            obj, (property, functools.cached_property, classmethod, staticmethod))):
        return True
    return None


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_member)  # type: ignore[attr-defined]


# -- HTML ----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"mlp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
html_show_sourcelink = False

# -- sphinx-gallery ------------------------------------------------------------------------


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    "filename_pattern": r"\.py$",  # run every example
    "ignore_pattern": r"__init__\.py",
    "reset_argv": "_gallery.example_argv",  # docs/_gallery.py
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "min_reported_time": 1,
    "capture_repr": (),
    "matplotlib_animations": False,
    "show_signature": False,
}


# -- the API reference's pages, from each module's __all__ -------------------------------

API_MODULES = {
    "mlp": "The package: the model, loading, the callbacks, errors and registries.",
    "mlp.optimizers": "Optimizers as chains of pure gradient transformations, as in optax.",
    "mlp.schedules": "Learning-rate schedules: functions of the step count.",
    "mlp.callbacks": "What runs between epochs: history, checkpoints, logs, early stopping.",
    "mlp.sklearn": "scikit-learn's MLPClassifier and MLPRegressor, on every backend.",
    "mlp.export": "ONNX export.",
    "mlp.backends": "The array libraries: choosing one, its devices, its compilation cache.",
}


def public_names(module_name: str) -> list[str]:
    """The module's ``__all__``; without one, the public functions and classes it defines."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, obj in vars(module).items()
                 if not name.startswith("_") and getattr(obj, "__module__", None) == module_name
                 and (inspect.isclass(obj) or inspect.isfunction(obj))]
    return list(names)


def _kind(obj: object) -> str:
    if isinstance(obj, types.ModuleType):
        return "Modules"
    if inspect.isclass(obj):
        return "Exceptions" if issubclass(obj, BaseException) else "Classes"
    return "Functions" if inspect.isroutine(obj) else "Constants"  # type aliases too


def _home(module_name: str, name: str, obj: object) -> str | None:
    """Where a name that ``module_name`` re-exports is documented: another API module
    listing the same object (``mlp.History`` is ``mlp.callbacks.History``), else None."""
    if isinstance(obj, types.ModuleType):
        full = obj.__name__
        return full if full in API_MODULES and full != module_name else None
    for other in API_MODULES:
        if other == module_name or other == "mlp":
            continue
        module = importlib.import_module(other)
        for other_name in public_names(other):
            if getattr(module, other_name, None) is obj:
                return f"{other}.{other_name}"
    return None


def _api_page(module_name: str) -> str:
    module = importlib.import_module(module_name)
    groups: dict[str, list[str]] = {"Classes": [], "Functions": [], "Exceptions": [],
                                    "Constants": [], "Modules": []}
    aliases: list[tuple[str, str]] = []
    for name in public_names(module_name):
        obj = getattr(module, name)
        home = _home(module_name, name, obj)
        if home is not None:
            aliases.append((name, home))
        elif isinstance(obj, types.ModuleType):
            groups["Modules"].append(name)
        else:
            groups[_kind(obj)].append(name)
    title = f"``{module_name}``"
    lines = [".. This page is written by docs/conf.py from the module's __all__.", "",
             title, "=" * len(title), "", API_MODULES[module_name], "",
             f".. automodule:: {module_name}", "   :no-members:", "   :no-index:", "",
             f".. currentmodule:: {module_name}", ""]
    templates = {"Classes": "autosummary/class.rst", "Exceptions": "autosummary/class.rst",
                 "Modules": "autosummary/module.rst"}
    for group, names in groups.items():
        if not names:
            continue
        lines += [group, "-" * len(group), "", ".. autosummary::", "   :toctree: generated/",
                  f"   :template: {templates.get(group, 'autosummary/base.rst')}", "",
                  *(f"   {name}" for name in names), ""]
    if aliases:
        lines += ["Also here", "---------", "",
                  f"These names of ``{module_name}`` are documented where they are defined:", "",
                  *(f"- ``{module_name}.{name}``: :py:obj:`{home}`" for name, home in aliases),
                  ""]
    return "\n".join(lines)


def constants() -> set[str]:
    """The full names of the API modules' data (constants, type aliases)."""
    out = set()
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        out |= {f"{module_name}.{name}" for name in public_names(module_name)
                if _kind(getattr(module, name)) == "Constants"}
    return out


def write_api_pages() -> None:
    """docs/api/<module>.rst for each module, rewritten only when it changes."""
    for module_name in API_MODULES:
        page = DOCS / "api" / f"{module_name}.rst"
        text = _api_page(module_name)
        if not page.exists() or page.read_text() != text:
            page.write_text(text)


write_api_pages()
if "numpydoc_validation_exclude" in globals():
    # data has a docstring of a line or a comment (``#:``), no numpydoc sections
    numpydoc_validation_exclude |= {re.escape(name) + "$" for name in constants()}
