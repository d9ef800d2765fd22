"""scikit-learn's own MLP tests, run against `mlp.sklearn`'s estimators.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is
the reference users hold a drop-in replacement to: it is read from the
installed package (so it follows the installed version), its one import of
the estimators is pointed at `mlp.sklearn`, and every test it defines runs
here unchanged on NumPy, and `EVERY_BACKEND` of them on every backend
(through ``$MLP_BACKEND``, which the estimators' ``backend=None`` reads). The
few that read scikit-learn's private internals are listed in `NOT_APPLICABLE`
with the reason.
"""

from __future__ import annotations

import pathlib

import pytest

from tests._sklearn_ci import numpy_only

sklearn = pytest.importorskip("sklearn")

_SOURCE = pathlib.Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"

#: The tests that run on every backend (the others on NumPy, in CI's time budget,
#: `tests._sklearn_ci`): the exact gradient, an L-BFGS fit, and the stochastic
#: solvers' partial_fit against a full fit.
EVERY_BACKEND = {"test_gradient", "test_lbfgs_classification", "test_partial_fit_regression"}

#: Tests that exercise scikit-learn's private methods, not behaviour.
NOT_APPLICABLE = {
}


def _load():
    source = _SOURCE.read_text()
    if _IMPORT not in source:  # pragma: no cover - a scikit-learn that reorganised its tests
        raise RuntimeError(f"{_SOURCE} no longer contains {_IMPORT!r}")
    source = source.replace(_IMPORT, "from mlp.sklearn import MLPClassifier, MLPRegressor")
    namespace = {"__name__": __name__, "__file__": str(_SOURCE)}
    exec(compile(source, str(_SOURCE), "exec"), namespace)  # noqa: S102 - scikit-learn's tests
    return namespace


@pytest.fixture(autouse=True)
def _estimators_on(request, backend, monkeypatch):
    """Every reference test runs once per backend: the estimators' ``backend=None``
    reads ``$MLP_BACKEND``."""
    if request.function.__name__ not in EVERY_BACKEND:
        numpy_only(backend)
    monkeypatch.setenv("MLP_BACKEND", backend.name)


@pytest.fixture
def global_random_seed():
    """scikit-learn's fixture (its conftest is not ours): its default seed."""
    return 42


_namespace = _load()
for _name, _obj in _namespace.items():
    if _name.startswith("test_") and callable(_obj):
        if _name in NOT_APPLICABLE:
            _obj = pytest.mark.skip(reason=NOT_APPLICABLE[_name])(_obj)
        globals()[_name] = _obj
    elif not _name.startswith("__") and _name not in globals():
        globals()[_name] = _obj
