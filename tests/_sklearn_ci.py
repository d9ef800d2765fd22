"""The sklearn tests' share of CI's time budget.

CI runs the whole suite once per backend on a small machine. scikit-learn's
full conformance suite, its own ``test_mlp.py`` and the meta-estimator tests
run on NumPy (where nothing compiles); on the other backends a representative
subset runs - parity of the weights with scikit-learn's for each solver, the
weighted objective and gradient, one conformance run with tiny networks, one
L-BFGS fit - with the same assertions. ``MLP_SKLEARN_FULL=1`` runs everything
on every backend.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import _selected


def full_suite(backend) -> bool:
    """Whether the full sklearn suite runs on ``backend`` (NumPy, or ``MLP_SKLEARN_FULL=1``)."""
    return backend.name == "numpy" or os.environ.get("MLP_SKLEARN_FULL", "") == "1"


def numpy_only(backend) -> None:
    """Skip a test outside the representative subset on a backend other than NumPy."""
    if not full_suite(backend):
        pytest.skip("runs on numpy (set MLP_SKLEARN_FULL=1 to run it on every backend)")


#: Skips a test that does not take ``backend`` (it runs on NumPy) in the sessions
#: of the other backends (``MLP_BACKEND=jax`` ...), so it runs once in CI, not four times.
on_numpy_session = pytest.mark.skipif("numpy" not in _selected(),
                                      reason="runs in the numpy session")
