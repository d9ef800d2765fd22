"""Per-row sample weights (scikit-learn's weighted mean) and class weights, on every backend.

The defining properties: an integer weight is the row repeated that many times, a
weight of 0 is the row dropped (whatever finite values it holds), weights of 1 are no
weights at all.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_sample_weight

import mlp
from mlp import core
from mlp.weights import row_weights

LOSSES = ["mse", "cross_entropy", "binary_cross_entropy", "poisson"]
N_OUT = 2
W_INT = np.array([2, 0, 1, 3, 1, 0, 2, 1])


def _data(loss, rng, n=8):
    x = rng.normal(size=(n, 3))
    y = mlp.losses.LOSSES[loss].sample_targets(rng, n, N_OUT)
    return x, y


def _model(backend, loss, **kwargs):
    return mlp.MLP([3, 5, N_OUT], activation="tanh", loss=loss, backend=backend,
                   dtype="float64", seed=4, **kwargs)


def _host(backend, grads):
    return [(backend.to_numpy(dW), backend.to_numpy(db)) for dW, db in grads]


def _assert_same_grads(got, want, rtol=1e-12):
    for (dW, db), (eW, eb) in zip(got, want, strict=True):
        np.testing.assert_allclose(dW, eW, rtol=rtol, atol=1e-14)
        np.testing.assert_allclose(db, eb, rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("loss", LOSSES)
def test_integer_weights_equal_repeated_rows(backend, loss, rng):
    x, y = _data(loss, rng)
    model = _model(backend, loss)
    x_rep, y_rep = np.repeat(x, W_INT, axis=0), np.repeat(y, W_INT, axis=0)
    assert model.loss(x, y, sample_weight=W_INT) == pytest.approx(model.loss(x_rep, y_rep),
                                                                  rel=1e-12)
    _assert_same_grads(_host(backend, model.gradients(x, y, sample_weight=W_INT)),
                       _host(backend, model.gradients(x_rep, y_rep)))
    weighted, repeated = model.evaluate(x, y, sample_weight=W_INT), model.evaluate(x_rep, y_rep)
    assert weighted == pytest.approx(repeated, rel=1e-12)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_full_batch_fit_with_integer_weights_equals_repeated_rows(backend, loss, rng):
    x, y = _data(loss, rng)
    weighted, repeated = _model(backend, loss), _model(backend, loss)
    h1 = weighted.fit(x, y, epochs=5, optimizer="adam", learning_rate=0.05, alpha=0.01,
                      sample_weight=W_INT)
    h2 = repeated.fit(np.repeat(x, W_INT, axis=0), np.repeat(y, W_INT, axis=0), epochs=5,
                      optimizer="adam", learning_rate=0.05, alpha=0.01)
    _assert_same_grads(weighted.get_weights(), repeated.get_weights(), rtol=1e-11)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-12)


def _garbage(loss, x, y, dropped):
    """Rows ``dropped`` of ``(x, y)`` replaced by huge (still valid, finite) values."""
    x, y = x.copy(), y.copy()
    x[dropped] = [1e300, -1e300, 1e250]
    if loss in ("mse", "poisson"):
        y[dropped] = 1e300
    return x, y


# NumPy warns of the garbage rows' overflow, which the masks then discard.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("loss", LOSSES)
def test_zero_weights_equal_dropped_rows_whatever_they_hold(backend, loss, rng):
    x, y = _data(loss, rng)
    keep = W_INT > 0
    x, y = _garbage(loss, x, y, ~keep)
    model = _model(backend, loss)
    w = W_INT.astype(float)
    assert model.loss(x, y, sample_weight=w) == pytest.approx(
        model.loss(x[keep], y[keep], sample_weight=w[keep]), rel=1e-12)
    got = _host(backend, model.gradients(x, y, sample_weight=w))
    assert all(np.all(np.isfinite(dW)) and np.all(np.isfinite(db)) for dW, db in got)
    _assert_same_grads(got, _host(backend, model.gradients(x[keep], y[keep],
                                                           sample_weight=w[keep])))
    assert model.evaluate(x, y, sample_weight=w) == pytest.approx(
        model.evaluate(x[keep], y[keep], sample_weight=w[keep]), rel=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_zero_weight_rows_drop_out_of_training(backend, rng):
    x, y = _data("mse", rng)
    keep = W_INT > 0
    x, y = _garbage("mse", x, y, ~keep)
    with_zeros, dropped = _model(backend, "mse"), _model(backend, "mse")
    w = keep * 1.0
    h1 = with_zeros.fit(x, y, epochs=4, learning_rate=0.1, sample_weight=w)
    h2 = dropped.fit(x[keep], y[keep], epochs=4, learning_rate=0.1)
    _assert_same_grads(with_zeros.get_weights(), dropped.get_weights())
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_weights_of_one_are_no_weights(backend, loss, rng):
    """Bit for bit on NumPy: every weight multiplies by 1 and every normaliser is n."""
    x, y = _data(loss, rng)
    model = _model(backend, loss)
    x_dev, targets, _ = model._prepare(x, y)
    ones = backend.asarray(np.ones(8), "float64")
    plain = core.loss_and_gradients(model._spec, model.params, x_dev, targets, 0.01)
    weighted = core.loss_and_gradients(model._spec, model.params, x_dev, targets, 0.01, ones)
    host = [(float(backend.to_numpy(plain[0])), _host(backend, plain[1])),
            (float(backend.to_numpy(weighted[0])), _host(backend, weighted[1]))]
    if backend.name == "numpy":
        assert host[0][0] == host[1][0]
        for (dW, db), (eW, eb) in zip(host[0][1], host[1][1]):
            np.testing.assert_array_equal(dW, eW)
            np.testing.assert_array_equal(db, eb)
    else:
        assert host[0][0] == pytest.approx(host[1][0], rel=1e-14)
        _assert_same_grads(host[1][1], host[0][1], rtol=1e-14)


def test_fit_with_weights_of_one_is_the_unweighted_fit(backend, rng):
    x, y = _data("cross_entropy", rng, n=10)
    plain, weighted = _model(backend, "cross_entropy"), _model(backend, "cross_entropy")
    h1 = plain.fit(x, y, epochs=3, batch_size=4, optimizer="adam", learning_rate=0.05)
    h2 = weighted.fit(x, y, epochs=3, batch_size=4, optimizer="adam", learning_rate=0.05,
                      sample_weight=np.ones(10))
    if backend.name == "numpy":
        for (W, b), (V, c) in zip(plain.get_weights(), weighted.get_weights()):
            np.testing.assert_array_equal(W, V)
            np.testing.assert_array_equal(b, c)
    else:
        _assert_same_grads(weighted.get_weights(), plain.get_weights(), rtol=1e-12)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-14)


def test_epoch_loss_is_the_weighted_mean_over_its_batches(backend, rng):
    """With a learning rate too small to move the weights, an epoch of mini-batches of
    unequal weight sums reports the weighted mean loss over all rows."""
    x, y = _data("mse", rng, n=10)
    w = np.array([0.5, 3.0, 1.0, 0.0, 2.0, 1.0, 4.0, 0.25, 1.0, 2.0])
    model = _model(backend, "mse")
    expected = model.loss(x, y, sample_weight=w)
    history = model.fit(x, y, epochs=2, batch_size=3, learning_rate=1e-300, sample_weight=w)
    np.testing.assert_allclose(history.history["loss"], [expected, expected], rtol=1e-12)


def test_a_batch_of_zero_weights_is_a_step_of_zero(backend, rng):
    """A batch whose weights sum to 0 has loss 0 and gradient 0 (no NaN): plain SGD over
    the batches [zero weights, rows 4..7] is full-batch SGD on rows 4..7."""
    x, y = _data("mse", rng)
    w = np.array([0.0] * 4 + [1.0] * 4)
    batched, full = _model(backend, "mse"), _model(backend, "mse")
    h1 = batched.fit(x, y, epochs=3, batch_size=4, shuffle=False, learning_rate=0.1,
                     sample_weight=w, optimizer="sgd")
    h2 = full.fit(x[4:], y[4:], epochs=3, learning_rate=0.1, optimizer="sgd", batch_size=None)
    _assert_same_grads(batched.get_weights(), full.get_weights())
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-12)
    x_dev, targets, _ = batched._prepare(x[:4], y[:4])
    loss, grads = core.loss_and_gradients(batched._spec, batched.params, x_dev, targets,
                                          weights=backend.asarray(np.zeros(4), "float64"))
    assert float(backend.to_numpy(loss)) == 0.0
    assert all(not np.any(backend.to_numpy(g)) for pair in grads for g in pair)


def test_validation_split_splits_the_weights(backend, rng):
    x, y = _data("mse", rng, n=12)
    w = rng.uniform(0.1, 3.0, size=12)
    model = _model(backend, "mse")
    history = model.fit(x, y, epochs=1, learning_rate=0.1, validation_split=0.25,
                        sample_weight=w)
    val = np.sort(model.validation_split_rng().permutation(12)[:3])
    assert history.history["val_loss"][0] == pytest.approx(
        model.loss(x[val], y[val], sample_weight=w[val]), rel=1e-12)
    assert history.history["val_r2"][0] == pytest.approx(
        model.evaluate(x[val], y[val], sample_weight=w[val])["r2"], rel=1e-12)


def test_weighted_scores_are_scikit_learns(backend, rng):
    from sklearn.metrics import accuracy_score, mean_squared_error, r2_score

    x, y = _data("mse", rng)
    w = W_INT * 0.5
    model = _model(backend, "mse")
    pred = backend.to_numpy(model.predict(x))
    got = model.evaluate(x, y, sample_weight=w)
    assert got["r2"] == pytest.approx(r2_score(y, pred, sample_weight=w), rel=1e-12)
    assert got["mse"] == pytest.approx(mean_squared_error(y, pred, sample_weight=w), rel=1e-12)
    xc, labels = _data("cross_entropy", rng)
    clf = _model(backend, "cross_entropy")
    classes = backend.to_numpy(clf.predict_classes(xc))
    assert clf.evaluate(xc, labels, sample_weight=w)["accuracy"] == pytest.approx(
        accuracy_score(labels, classes, sample_weight=w), rel=1e-12)


# ---------------------------------------------------------------- class weights
def test_balanced_class_weights_are_scikit_learns(backend):
    labels = np.array([0, 0, 0, 1, 2, 2, 0, 2])
    model = mlp.MLP([3, N_OUT + 1], loss="cross_entropy", backend=backend, dtype="float64")
    x_dev, targets, dev_labels = model._prepare(np.zeros((8, 3)), labels)
    w = backend.to_numpy(row_weights(model, None, "balanced", targets, dev_labels))
    np.testing.assert_allclose(w, compute_sample_weight("balanced", labels), rtol=1e-15)
    np.testing.assert_allclose(w[[0, 3, 4]], [8 / (3 * 4), 8 / (3 * 1), 8 / (3 * 3)])
    # a class absent from y: n_classes counts the classes present, as scikit-learn's
    absent = np.array([0, 0, 2, 2, 2, 0, 0, 0])
    _, targets, dev_labels = model._prepare(np.zeros((8, 3)), absent)
    w = backend.to_numpy(row_weights(model, None, "balanced", targets, dev_labels))
    np.testing.assert_allclose(w, compute_sample_weight("balanced", absent), rtol=1e-15)
    # a dict, times sample weights; classes not named keep 1
    sw = np.arange(1.0, 9.0)
    w = backend.to_numpy(row_weights(model, sw, {2: 0.5, 0: 3}, targets, dev_labels))
    np.testing.assert_allclose(w, sw * np.where(absent == 2, 0.5, 3.0), rtol=1e-15)


def test_class_weight_for_binary_cross_entropy_and_in_fit(backend, rng):
    x = rng.normal(size=(8, 3))
    y = (np.arange(8) < 2).reshape(-1, 1) * 1.0  # 2 positives, 6 negatives
    model = mlp.MLP([3, 1], loss="binary_cross_entropy", backend=backend, dtype="float64",
                    seed=1)
    _, targets, labels = model._prepare(x, y)
    w = backend.to_numpy(row_weights(model, None, "balanced", targets, labels))
    np.testing.assert_allclose(w, compute_sample_weight("balanced", y.ravel()), rtol=1e-15)
    balanced = mlp.MLP.from_config(model.get_config(), backend=backend)
    by_hand = mlp.MLP.from_config(model.get_config(), backend=backend)
    balanced.fit(x, y, epochs=3, learning_rate=0.5, class_weight="balanced")
    by_hand.fit(x, y, epochs=3, learning_rate=0.5, sample_weight=w)
    _assert_same_grads(balanced.get_weights(), by_hand.get_weights(), rtol=1e-14)


# ------------------------------------------------------------------- poisson
def test_poisson_learns_a_count_target(backend):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(64, 2))
    y = rng.poisson(np.exp(1.0 + 0.8 * x[:, 0] - 0.5 * x[:, 1])).reshape(-1, 1)
    model = mlp.MLP([2, 8, 1], activation="tanh", loss="poisson", backend=backend,
                    dtype="float64", seed=0)
    assert model.output_activation == "exp"
    history = model.fit(x, y, epochs=150, optimizer="adam", learning_rate=0.05)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    pred = backend.to_numpy(model.predict(x))
    assert np.all(pred > 0)
    # beats the best constant prediction, log(mean(y)) (the intercept-only Poisson model)
    c = np.log(y.mean())
    assert model.loss(x, y) < np.mean(np.exp(c) - y * c) - 0.1
    # the loss is half scikit-learn's Poisson deviance less its constant y*log(y) - y
    from scipy.special import xlogy
    from sklearn.metrics import mean_poisson_deviance

    constant = np.mean(xlogy(y, y) - y)
    assert model.loss(x, y) == pytest.approx(
        0.5 * mean_poisson_deviance(y.ravel(), pred.ravel()) - constant, rel=1e-10)
    assert model.evaluate(x, y)["r2"] > 0.3


def test_poisson_refuses_negative_targets():
    model = mlp.MLP([2, 1], loss="poisson")
    with pytest.raises(ValueError, match=r"poisson needs targets >= 0 \(counts or rates\); y "
                                         r"has negative values \(smallest -1\)"):
        model.fit(np.zeros((3, 2)), np.array([1.0, -1.0, 0.0]), epochs=1)


# ------------------------------------------------------------------- refusals
BAD_WEIGHTS = [
    (np.array([1.0, -2.0, 1.0, 1.0]), ValueError, r"sample_weight must be >= 0, got -2 for "
                                                  r"sample 1"),
    (np.array([1.0, np.nan, 1.0, 1.0]), ValueError, r"sample_weight contains 1 NaN or infinite"),
    (np.ones(3), ValueError, r"x and sample_weight have different numbers of samples: 4 and 3"),
    (np.ones((4, 1)), ValueError, r"sample_weight must be 1-D \(n_samples,\), one weight per "
                                  r"sample, got shape \(4, 1\)"),
    (np.zeros(4), ValueError, r"sample_weight sums to 0, so no sample counts"),
    (["a", "b", "c", "d"], TypeError, r"sample_weight must hold real numbers"),
]


@pytest.mark.parametrize("weights,exc,match", BAD_WEIGHTS)
def test_bad_sample_weights_are_refused_and_change_nothing(backend, weights, exc, match):
    model = mlp.MLP([2, 1], backend=backend, seed=0)
    before = model.get_weights()
    x, y = np.ones((4, 2)), np.ones(4)
    for call in (lambda: model.fit(x, y, epochs=1, sample_weight=weights),
                 lambda: model.loss(x, y, sample_weight=weights),
                 lambda: model.evaluate(x, y, sample_weight=weights)):
        with pytest.raises(exc, match=match):
            call()
    assert model.history_ is None
    for (W, b), (V, c) in zip(before, model.get_weights()):
        np.testing.assert_array_equal(W, V)
        np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("loss,class_weight,layers,match", [
    ("mse", "balanced", [2, 1], r"class_weight needs a classification loss \(cross_entropy or "
                                r"binary_cross_entropy\); this model uses 'mse'"),
    ("cross_entropy", "unbalanced", [2, 3], r"class_weight must be a dict \{class: weight\}, "
                                            r"'balanced' or None, got 'unbalanced'"),
    ("cross_entropy", {3: 1.0}, [2, 3], r"class_weight's keys must be classes 0\.\.2, got 3"),
    ("cross_entropy", {1: -1.0}, [2, 3], r"class_weight\[1\] must be a finite number >= 0, "
                                         r"got -1\.0"),
    ("binary_cross_entropy", "balanced", [2, 2], r"class_weight needs one class per sample, but "
                                                 r"the model has 2 binary outputs"),
])
def test_bad_class_weights_are_refused(loss, class_weight, layers, match):
    model = mlp.MLP(layers, loss=loss, seed=0)
    y = {"mse": np.ones(4), "cross_entropy": np.array([0, 1, 2, 1]),
         "binary_cross_entropy": np.ones((4, 2))}[loss]
    with pytest.raises(ValueError, match=match):
        model.fit(np.ones((4, 2)), y, epochs=1, class_weight=class_weight)
    assert model.history_ is None


def test_a_loss_without_terms_refuses_weights_but_trains_unweighted(value_only_mae):
    model = mlp.MLP([2, 1], loss="mae", activation="identity", seed=0)
    x, y = np.ones((4, 2)), np.zeros(4)
    model.fit(x, y, epochs=2)
    with pytest.raises(ValueError, match=r"loss 'mae' cannot take sample_weight: it was built "
                                         r"from value and value_and_delta"):
        model.loss(x, y, sample_weight=np.ones(4))


def test_the_weighted_terms_form_of_a_user_loss(monkeypatch, rng):
    """The docstring's recipe: a loss from its terms takes weights and is exact."""
    def terms(xp, z, a, y):
        return xp.abs(a - y)

    def terms_and_delta(xp, z, a, y, output, scale):
        return terms(xp, z, a, y), output.backward(xp, xp.sign(a - y) * scale, z, a)

    monkeypatch.setitem(mlp.losses.LOSSES, "mae", mlp.Loss(
        "mae", terms=terms, terms_and_delta=terms_and_delta, default_output="identity"))
    model = mlp.MLP([3, 2], loss="mae", activation="identity", dtype="float64", seed=0)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    (W, b), = model.get_weights()
    per_row = np.abs(x @ W + b - y).mean(axis=1)
    assert model.loss(x, y) == pytest.approx(per_row.mean(), rel=1e-14)
    assert model.loss(x, y, sample_weight=W_INT) == pytest.approx(
        np.average(per_row, weights=W_INT), rel=1e-14)


def test_a_split_leaving_either_side_a_total_weight_of_0_is_refused(backend):
    """validation_split with weights: each side must keep some weight, or nothing trains (a
    loss of 0 every epoch) or every validation score is a fake 0; all-zero weights without
    a split were already refused."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    sides = set()
    for row in range(6):  # one weighted row: the other side has none
        w = np.zeros(20)
        w[row] = 1.0
        model = mlp.MLP([3, 4, 2], loss="cross_entropy", backend=backend, seed=0)
        before = model.get_weights()
        with pytest.raises(ValueError, match=r"^validation_split=0\.5 leaves the "
                                             r"(training|validation) rows \(10 of 20\) a total "
                                             r"weight of 0 \(sample_weight\): no \1 sample "
                                             r"counts, so (nothing would train|every validation "
                                             r"score would be 0); give more samples a weight > 0"
                                             r", or pass validation_data") as info:
            model.fit(x, y, epochs=2, sample_weight=w, validation_split=0.5)
        sides.add(str(info.value).split()[3])
        assert model.history_ is None and model.epochs_trained_ == 0
        for (W, b), (W0, b0) in zip(model.get_weights(), before, strict=True):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)
    assert sides == {"training", "validation"}
    one = np.zeros(20, dtype=np.int64)
    one[0] = 1  # one row of class 1: class_weight {0: 0} leaves the other side nothing
    with pytest.raises(ValueError, match=r"a total weight of 0 \(class_weight\)"):
        mlp.MLP([3, 4, 2], loss="cross_entropy", backend=backend, seed=0).fit(
            x, one, epochs=1, class_weight={0: 0.0}, validation_split=0.5)
    w = np.zeros(20)
    w[:12] = 1.0  # both sides weighted: trains
    model = mlp.MLP([3, 4, 2], loss="cross_entropy", backend=backend, seed=0)
    model.fit(x, y, epochs=1, sample_weight=w, validation_split=0.5)
    assert model.epochs_trained_ == 1
