"""scikit-learn's conformance suite (`parametrize_with_checks`) on every backend.

On NumPy every check runs for both estimators; on the other backends, in CI's
time budget (`tests._sklearn_ci`), every check for the classifier. The
instances are small (16 hidden units, 50 epochs at learning rate 0.01) so the
suite stays fast; they pass every check with no expected failures. The
array-API checks, which feed torch / array-api-strict inputs (and JAX inputs
here: scikit-learn's own list skips JAX), need ``SCIPY_ARRAY_API=1`` before
scipy is imported, so they run in a fresh interpreter.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import warnings

import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks  # noqa: E402

from mlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from tests._sklearn_ci import full_suite, numpy_only, on_numpy_session  # noqa: E402

FAST = dict(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01)


def _instances(backend):
    return [MLPClassifier(**FAST, backend=backend), MLPRegressor(**FAST, backend=backend)]


@on_numpy_session
@parametrize_with_checks(_instances("numpy"))
def test_scikit_learn_conformance_on_numpy(estimator, check):
    check(estimator)


def test_scikit_learn_conformance_on_every_backend(backend):
    if backend.name == "numpy":
        pytest.skip("test_scikit_learn_conformance_on_numpy runs each check on numpy")
    failures = []
    # The subset for CI's budget: the classifier (it meets more checks than the regressor)
    estimators = _instances(backend.name) if full_suite(backend) else _instances(backend.name)[:1]
    for estimator in estimators:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = check_estimator(estimator, on_fail=None)
        failures += [f"{type(estimator).__name__} {r['check_name']}: {r['exception']!r}"
                     for r in results if r["status"] == "failed"]
        assert sum(r["status"] == "passed" for r in results) > 50
    assert not failures, "\n".join(failures)


_ARRAY_API_SCRIPT = textwrap.dedent("""
    import warnings, numpy as np, torch
    from sklearn import config_context
    from sklearn.utils.estimator_checks import _yield_array_api_checks, check_array_api_input
    from mlp.sklearn import MLPClassifier, MLPRegressor

    FAST = {fast!r}
    ran = 0
    for est in (MLPClassifier(**FAST, backend={backend!r}),
                MLPRegressor(**FAST, backend={backend!r})):
        for check in _yield_array_api_checks(est):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    check(type(est).__name__, est)
                ran += 1
            except Exception as exc:
                if type(exc).__name__ != "SkipTest":
                    raise
    assert ran >= 8, ran
    for est in (MLPClassifier(**FAST, backend={backend!r}),
                MLPRegressor(**FAST, backend={backend!r})):  # scikit-learn's checks skip JAX
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_array_api_input(type(est).__name__, est, array_namespace="jax.numpy",
                                  check_values=True)

    # NumPy in, NumPy out; torch or JAX in (with dispatch), torch or JAX out
    x = np.random.default_rng(0).normal(size=(30, 4)); y = np.arange(30) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(**FAST, backend={backend!r}).fit(x, y)
        assert type(clf.predict(x)) is np.ndarray
        with config_context(array_api_dispatch=True):
            xt, yt = torch.asarray(x), torch.asarray(y)
            clf = MLPClassifier(**FAST, backend={backend!r}).fit(xt, yt)
            assert isinstance(clf.predict(xt), torch.Tensor)
            assert isinstance(clf.predict_proba(xt), torch.Tensor)
            assert isinstance(clf.score(xt, yt), float)
            import jax.numpy as jnp
            xj, yj = jnp.asarray(x), jnp.asarray(y)
            clf = MLPClassifier(**FAST, backend={backend!r}).fit(xj, yj)
            assert type(clf.predict(xj)) is type(xj)
            reg = MLPRegressor(**FAST, backend={backend!r}).fit(xj, jnp.asarray(x[:, 0]))
            assert type(reg.predict(xj)) is type(xj)
            assert isinstance(reg.score(xj, jnp.asarray(x[:, 0])), float)
    print("ok", ran)
""")


def test_array_api_inputs_come_back_in_their_namespace(backend):
    numpy_only(backend)  # the namespaces are converted on the host, whatever the backend
    pytest.importorskip("torch")
    pytest.importorskip("array_api_strict")
    pytest.importorskip("jax")
    script = _ARRAY_API_SCRIPT.format(fast=FAST, backend=backend.name)
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "PYTHONPATH": root}
    env.pop("MLP_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok")
