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


# ------------------------------------------------ numbers the model's dtype cannot hold
_XR = np.random.default_rng(0).normal(size=(12, 3))
_YR = _XR.sum(axis=1)


def _float32(backend, **kw):
    return mlp.MLP([3, 4, 1], backend=backend, seed=0, **kw)


@pytest.mark.parametrize("fit, message", [
    (dict(learning_rate=1e-320, optimizer="sgd"),
     r"learning_rate=1e-320 is too small for the model's dtype float32: it would become 0 "
     r"\(the smallest normal float32 number is 1\.175e-38\); use a larger value, or build "
     r"the model with dtype='float64'"),
    (dict(clip_norm=1e-320), r"clip_norm=1e-320 is too small .* it would become 0"),
    (dict(alpha=1e-320), r"alpha=1e-320 is too small .* it would become 0"),
    (dict(alpha=1e39), r"alpha=1e\+39 is too large for the model's dtype float32 \(largest "
                       r"3\.403e\+38\): it would become inf"),
    (dict(clip_norm=1e-40), r"clip_norm=1e-40 is too small .* it would become the subnormal "
                            r"number 1e-40, which loses precision"),
    (dict(optimizer=mlp.optimizers.Adam(beta2=1 - 1e-9)),
     r"Adam\.beta2=0\.999999999 rounds to 1 in the model's dtype float32, which it must stay "
     r"below; use a value <= 0\.99999994"),
    (dict(optimizer=mlp.optimizers.Adam(beta1=1e-50)), r"Adam\.beta1=1e-50 is too small"),
    (dict(optimizer=mlp.optimizers.Adam(eps=1e-46)), r"Adam\.eps=1e-46 is too small"),
    (dict(optimizer=mlp.optimizers.RMSprop(decay=1 - 1e-10)),
     r"RMSprop\.decay=0\.9999999999 rounds to 1"),
    (dict(optimizer=mlp.optimizers.SGD(0.1, momentum=1 - 1e-12)),
     r"SGD\.momentum=0\.999999999999 rounds to 1"),
    (dict(optimizer=mlp.optimizers.AdamW(weight_decay=1e-40)),
     r"AdamW\.weight_decay=1e-40 is too small"),
    (dict(optimizer=mlp.optimizers.chain(mlp.optimizers.clip_by_global_norm(1e-300),
                                         mlp.optimizers.scale_by_learning_rate(0.1))),
     r"ClipByGlobalNorm\.max_norm=1e-300 is too small"),
    (dict(optimizer=mlp.optimizers.SGD(mlp.schedules.cosine_decay(1e-39, 100))),
     r"CosineDecay\.learning_rate=1e-39 is too small"),
    (dict(optimizer=mlp.optimizers.SGD(mlp.schedules.exponential_decay(0.1, 100, 1e-45))),
     r"ExponentialDecay\.decay_rate=1e-45 is too small"),
    (dict(sample_weight=np.full(12, 1e-45)),
     r"sample_weight has 12 weight\(s\) too small for the model's dtype float32 \(e\.g\. 1e-45 "
     r"for sample 0; the smallest normal float32 number is 1\.175e-38\): they would become 0 "
     r"or subnormal"),
    (dict(sample_weight=np.r_[np.ones(11), 1e-40]),
     r"sample_weight has 1 weight\(s\) too small .* \(e\.g\. 1e-40 for sample 11"),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else None)
def test_numbers_the_model_dtype_cannot_hold_are_refused(backend, fit, message):
    """Checked in float64, used in float32: a value that would become 0, subnormal (which
    JAX's CPU flushes to 0, where NumPy keeps it) or inf there, or a decay rate that rounds
    to 1, is refused before any change, with the same message on every backend."""
    model = _float32(backend)
    before = model.get_weights()
    with pytest.raises(ValueError, match=message):
        model.fit(_XR, _YR, epochs=2, **fit)
    assert model.epochs_trained_ == 0 and model.optimizer_state_ is None
    for (W, b), (W0, b0) in zip(model.get_weights(), before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_the_same_numbers_fit_in_float64(backend):
    """float64 holds them: the same values train there (1e-320 stays refused: it is
    subnormal in float64 too)."""
    model = mlp.MLP([3, 4, 1], backend=backend, seed=0, dtype="float64")
    history = model.fit(_XR, _YR, epochs=2, learning_rate=1e-39, optimizer="sgd",
                        clip_norm=1e-40, alpha=1e-40, sample_weight=np.full(12, 1e-45))
    assert all(np.isfinite(history.history["loss"]))
    assert model.loss(_XR, _YR, sample_weight=np.full(12, 1e-45)) == pytest.approx(
        model.loss(_XR, _YR), rel=1e-12)
    with pytest.raises(ValueError, match=r"learning_rate=1e-320 is too small for the model's "
                                         r"dtype float64: it would become the subnormal"):
        model.fit(_XR, _YR, epochs=1, learning_rate=1e-320, optimizer="sgd")


def test_tiny_weights_are_refused_by_loss_evaluate_and_class_weight(backend):
    model = mlp.MLP([3, 2], loss="cross_entropy", backend=backend, seed=0)
    labels = (np.arange(12) % 2).astype(np.int64)
    for call in (model.loss, model.evaluate):
        with pytest.raises(ValueError, match=r"sample_weight has 12 weight\(s\) too small"):
            call(_XR, labels, sample_weight=np.full(12, 1e-45))
    with pytest.raises(ValueError, match=r"class_weight\[1\]=1e-45 is too small for the "
                                         r"model's dtype float32"):
        model.fit(_XR, labels, epochs=1, class_weight={1: 1e-45})
    with pytest.raises(ValueError, match=r"sample_weight times class_weight has 6 weight\(s\) "
                                         r"too small"):
        model.fit(_XR, labels, epochs=1, class_weight={1: 1e-30},
                  sample_weight=np.full(12, 1e-10))


def test_reduce_lr_on_plateau_stays_within_the_dtype(backend):
    model = _float32(backend)
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau's min_lr=1e-40 is too small for "
                                         r"the model's dtype float32"):
        model.fit(_XR, _YR, epochs=1, callbacks=[mlp.ReduceLROnPlateau("loss", min_lr=1e-40)])
    assert model.epochs_trained_ == 0
    # reductions stop where the rate would leave float32's normal numbers (never 0)
    plateau = mlp.ReduceLROnPlateau("loss", factor=1e-20, patience=1, min_delta=1e30)
    model.fit(_XR, _YR, epochs=6, optimizer="sgd", learning_rate=0.01, callbacks=[plateau])
    rates = [rate for _, rate in plateau.reductions]
    assert rates and len(rates) < 5 and min(rates) >= np.finfo(np.float32).smallest_normal
    assert mlp.optimizers.current_learning_rate(model.optimizer_, model.optimizer_state_) > 0
    with pytest.raises(ValueError, match=r"factor=1e-45 is outside what the state's dtype "
                                         r"holds"):
        mlp.optimizers.with_learning_rate_scale(model.optimizer_state_, 1e-45)


def test_pandas_boolean_columns_without_missing_values_are_numbers(backend):
    """``boolean`` is pandas' third nullable type: read as NumPy's bool columns are, like
    ``Int64`` and ``Float64``; mixed with numbers, as float64."""
    model = _model(backend)
    flags = X > 1.0
    frame = pd.DataFrame(flags, columns=list("abc")).astype("boolean")
    expected = backend.to_numpy(model.predict(flags))
    np.testing.assert_array_equal(backend.to_numpy(model.predict(frame)), expected)
    mixed = pd.DataFrame({"a": pd.array(flags[:, 0], dtype="boolean"),
                          "b": pd.array(X[:, 1], dtype="Float64"),
                          "c": pd.array(np.arange(8), dtype="Int64")})
    plain = np.column_stack([flags[:, 0], X[:, 1], np.arange(8)]).astype(np.float64)
    np.testing.assert_array_equal(backend.to_numpy(model.predict(mixed)),
                                  backend.to_numpy(model.predict(plain)))
    targets = pd.Series(Y[:, 0] > 0, dtype="boolean")
    assert model.loss(frame, targets) == pytest.approx(model.loss(flags, Y), rel=1e-15)
    weights = pd.Series(np.arange(8) % 3 > 0, dtype="boolean")
    assert model.loss(X, Y, sample_weight=weights) == pytest.approx(
        model.loss(X, Y, sample_weight=(np.arange(8) % 3 > 0).astype(float)), rel=1e-15)
    with_na = frame.copy()
    with_na.iloc[1, 2] = pd.NA
    with pytest.raises(ValueError, match=r"x has 1 missing value\(s\) \(pd\.NA"):
        model.predict(with_na)


_ML_FLOATS = ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float6_e2m3fn",
              "float4_e2m1fn"]


@pytest.mark.parametrize("name", [n for n in _ML_FLOATS if hasattr(ml_dtypes, n)])
def test_every_ml_dtypes_float_is_read_through_float32(backend, name):
    """float32 holds every value of ml_dtypes' narrow floats exactly: x, y, sample weights
    and weights of those types are those values (NumPy refuses to cast them to float64
    directly: "dtype argument must be a NumPy dtype")."""
    narrow = getattr(ml_dtypes, name)
    model = _model(backend)
    x8 = (X / 2).astype(narrow)
    exact = x8.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(backend.to_numpy(model.predict(x8)),
                                  backend.to_numpy(model.predict(exact)))
    w8 = np.array([1, 2, 1, 0.5, 1, 1, 2, 1]).astype(narrow)
    assert model.loss(x8, Y.astype(narrow), sample_weight=w8) == pytest.approx(
        model.loss(exact, Y, sample_weight=w8.astype(np.float32)), rel=1e-15)
    before = model.get_weights()
    model.set_weights([(W.astype(narrow), b.astype(narrow)) for W, b in before])
    for (W, b), (W0, b0) in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(W, W0.astype(narrow).astype(np.float64))
        np.testing.assert_array_equal(b, b0.astype(narrow).astype(np.float64))


def test_ml_dtypes_integers_are_labels_and_complex_ones_are_refused(backend):
    model = mlp.MLP([3, 2], loss="cross_entropy", backend=backend, dtype="float64", seed=0)
    labels = np.arange(8) % 2
    assert model.loss(X, labels.astype(ml_dtypes.int4)) == model.loss(X, labels)
    assert model.loss(X, labels.astype(ml_dtypes.uint4)) == model.loss(X, labels)
    with pytest.raises(TypeError, match=r"x must hold real numbers, got an array of complex "
                                        r"numbers \(dtype complex32\)"):
        model.predict(X.astype(ml_dtypes.complex32))


def test_torch_float8_tensors_are_read_through_float32(backend):
    torch = pytest.importorskip("torch")
    model = _model(backend)
    x8 = torch.as_tensor(X / 2).to(torch.float8_e4m3fn)
    exact = x8.float().double().numpy()
    np.testing.assert_array_equal(backend.to_numpy(model.predict(x8)),
                                  backend.to_numpy(model.predict(exact)))


def test_jax_float8_arrays_are_read_through_float32(backend):
    jnp = pytest.importorskip("jax.numpy")
    model = _model(backend)
    x8 = jnp.asarray(X / 2, dtype=jnp.float8_e4m3fn)
    exact = np.asarray(x8).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(backend.to_numpy(model.predict(x8)),
                                  backend.to_numpy(model.predict(exact)))


def test_masked_arrays_are_refused_with_masked_values_and_read_without(backend):
    model = _model(backend)
    masked = np.ma.masked_array(X, mask=X > 2.0)
    with pytest.raises(ValueError, match=r"x is a masked array with 3 masked value\(s\), which "
                                         r"mlp would read as the values under the mask; fill "
                                         r"them first \(e\.g\. x\.filled\(0\)\)"):
        model.predict(masked)
    with pytest.raises(ValueError, match=r"sample_weight is a masked array with 1 masked"):
        model.loss(X, Y, sample_weight=np.ma.masked_array(np.ones(8), mask=np.eye(8)[2]))
    np.testing.assert_array_equal(backend.to_numpy(model.predict(np.ma.masked_array(X))),
                                  backend.to_numpy(model.predict(X)))


def test_object_arrays_of_numbers_are_numbers_and_others_name_their_types(backend):
    model = _model(backend)
    np.testing.assert_array_equal(backend.to_numpy(model.predict(X.astype(object))),
                                  backend.to_numpy(model.predict(X)))
    with pytest.raises(TypeError, match=r"x must hold real numbers, got an array of Python "
                                        r"objects: float, str \(dtype object\)"):
        model.predict(pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": ["1"] * 8}))
    with pytest.raises(TypeError, match=r"objects: int, NoneType \(dtype object\)"):
        model.predict([[1, None, 3]])
    with pytest.raises(ValueError, match=r"x holds a number too large for float64"):
        model.predict([[10**400, 2, 3]])
    records = np.zeros(2, dtype=[("a", float), ("b", float), ("c", float)])
    with pytest.raises(TypeError, match=r"got an array of records with fields a, b, c \(turn "
                                        r"them into columns with numpy\.lib\.recfunctions\."
                                        r"structured_to_unstructured\)"):
        model.predict(records)


@pytest.mark.parametrize("n", [15, 16])
def test_the_backends_own_arrays_give_what_host_arrays_give(backend, n):
    """An array of the backend's own, whether or not its row count is a size of the
    padding ladder (then it stays on the device; else it is checked and padded on the
    host, where the model pads rows), gives what the same NumPy array gives, and its NaN
    and inf are named as theirs are."""
    model = _model(backend)
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 1))
    bad_x, bad_y = x.copy(), y.copy()
    bad_x[2, 1], bad_y[3, 0] = np.nan, np.inf
    with backend.precision(model.dtype):
        xd, yd, bad_xd, bad_yd = (backend.asarray(a) for a in (x, y, bad_x, bad_y))
    assert np.array_equal(backend.to_numpy(model.predict(xd)),
                          backend.to_numpy(model.predict(x)))
    assert model.evaluate(xd, yd) == model.evaluate(x, y)
    assert model.loss(xd, yd, np.ones(n)) == model.loss(x, y, np.ones(n))
    with pytest.raises(ValueError, match=r"^x contains 1 NaN or infinite value\(s\)"):
        model.predict(bad_xd)
    with pytest.raises(ValueError, match=r"^y contains 1 NaN or infinite value\(s\)"):
        model.evaluate(xd, bad_yd)
