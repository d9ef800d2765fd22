"""Input conversion at the edge: clear messages where the cause is specific, and plainly
numeric data accepted as it is (issue 12), on every backend."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pandas as pd
import pytest
import scipy.sparse

import mlp

X = np.arange(24, dtype=np.float64).reshape(8, 3) / 10
Y = (np.arange(8) % 2).astype(np.float64)[:, None]


def _model(backend, **kw):
    return mlp.MLP([3, 4, 1], backend=backend, dtype="float64", seed=0, **kw)


@pytest.mark.parametrize("kind", ["csr", "coo"])
def test_sparse_input_says_toarray(backend, kind):
    sparse = getattr(scipy.sparse, f"{kind}_matrix")(X)
    with pytest.raises(TypeError, match=rf"x is a SciPy sparse {kind}_matrix; mlp needs a dense "
                                        r"array: pass x\.toarray\(\)"):
        _model(backend).predict(sparse)
    with pytest.raises(TypeError, match=r"y is a SciPy sparse .* pass y\.toarray\(\)"):
        _model(backend).evaluate(X, scipy.sparse.csr_array(Y))


def test_generators_and_iterators_are_refused_by_name(backend):
    with pytest.raises(TypeError, match=r"x is a generator, which can be read only once; pass "
                                        r"an array or a list"):
        _model(backend).predict(row for row in X)
    with pytest.raises(TypeError, match=r"y is a list_iterator, which can be read only once"):
        _model(backend).loss(X, iter(Y.tolist()))
    with pytest.raises(TypeError, match=r"x must be an array of numbers, got a set, which has no "
                                        r"order"):
        _model(backend).predict({1.0, 2.0, 3.0})


def test_pandas_missing_values_are_named(backend):
    frame = pd.DataFrame(X, columns=list("abc")).astype("Float64")
    frame.iloc[2, 1] = pd.NA
    frame.iloc[5, 0] = pd.NA
    with pytest.raises(ValueError, match=r"x has 2 missing value\(s\) \(pd\.NA, from pandas "
                                         r"nullable columns\); fill or drop them first, e\.g\. "
                                         r"x\.fillna\(0\)"):
        _model(backend).predict(frame)
    labels = pd.Series(np.arange(8) % 2, dtype="Int64")
    labels.iloc[3] = pd.NA
    model = mlp.MLP([3, 2], loss="cross_entropy", backend=backend, seed=0)
    with pytest.raises(ValueError, match=r"y has 1 missing value\(s\) \(pd\.NA"):
        model.evaluate(X, labels)


def test_pandas_nullable_columns_without_missing_values_are_numbers(backend):
    model = _model(backend)
    frame = pd.DataFrame(X, columns=list("abc")).astype("Float64")
    expected = backend.to_numpy(model.predict(X))
    np.testing.assert_allclose(backend.to_numpy(model.predict(frame)), expected, rtol=1e-15)
    targets = pd.Series(Y[:, 0], dtype="Int64")
    assert model.loss(frame, targets) == pytest.approx(model.loss(X, Y), rel=1e-15)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_np_matrix_is_a_plain_2d_array(backend):
    model = _model(backend)
    np.testing.assert_allclose(backend.to_numpy(model.predict(np.asmatrix(X))),
                               backend.to_numpy(model.predict(X)), rtol=1e-15)
    assert model.loss(np.asmatrix(X), np.asmatrix(Y)) == pytest.approx(model.loss(X, Y),
                                                                       rel=1e-15)
    history = model.fit(np.asmatrix(X), np.asmatrix(Y), epochs=1, learning_rate=0.1)
    assert np.isfinite(history.history["loss"][0])


def test_bfloat16_arrays_are_cast(backend):
    model = _model(backend)
    x16 = X.astype(ml_dtypes.bfloat16)
    exact = x16.astype(np.float32).astype(np.float64)  # bfloat16 -> float32 is exact
    np.testing.assert_allclose(backend.to_numpy(model.predict(x16)),
                               backend.to_numpy(model.predict(exact)), rtol=1e-15)
    assert model.loss(x16, Y.astype(ml_dtypes.bfloat16)) == pytest.approx(model.loss(exact, Y),
                                                                          rel=1e-15)


def test_jax_bfloat16_arrays_are_cast(backend):
    jnp = pytest.importorskip("jax.numpy")
    model = _model(backend)
    x16 = jnp.asarray(X, dtype=jnp.bfloat16)
    exact = np.asarray(x16).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(backend.to_numpy(model.predict(x16)),
                               backend.to_numpy(model.predict(exact)), rtol=1e-15)
