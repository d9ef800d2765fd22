"""What numpydoc's validation checks on every public docstring.

Shared by the Sphinx build (``docs/conf.py``: ``numpydoc_validation_checks``)
and the test that validates every public name without building the site
(``tests/test_docstrings.py``), so both hold the docstrings to one standard.
"""

#: numpydoc check codes: "all" minus the ones listed after it.
NUMPYDOC_CHECKS: set[str] = {"all", "SA01", "EX01", "ES01"}

#: Regular expressions of object names whose docstrings are not validated, each with
#: the reason the checks are wrong for it.
NUMPYDOC_EXCLUDE: set[str] = {
    # A `typing.Protocol` (the in-place operations a backend may offer): its signature
    # is typing's generated ``(*args, **kwargs)``, which PR01 asks to document, though
    # a protocol is never instantiated. Its methods are still validated.
    r"\.InplaceOps$",
}
