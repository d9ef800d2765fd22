"""Training scores logged from each epoch's own batches (issue 9): ``accuracy`` for
classifiers, ``r2`` and ``mse`` for regressors, with the weights of each step."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

import mlp

N, BATCH = 30, 8  # 3 full batches and a rest of 6


def _data(loss, n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    if loss == "cross_entropy":
        y = np.argmax(x[:, :3] + 0.5 * rng.normal(size=(n, 3)), axis=1)
    elif loss == "binary_cross_entropy":
        y = (x[:, :2] + 0.5 * rng.normal(size=(n, 2)) > 0).astype(float)
    else:
        y = np.tanh(x[:, :2]) + 0.1 * rng.normal(size=(n, 2))
    return x, y


def _model(backend, loss):
    outputs = 3 if loss == "cross_entropy" else 2
    return mlp.MLP([4, 6, outputs], loss=loss, backend=backend, dtype="float64", seed=1)


def _weights(n=N):
    w = np.random.default_rng(5).uniform(0.5, 2.0, size=n)
    w[[1, 9, 17, 26]] = 0.0  # in every batch, and in the rest
    return w


def _scores(loss, y, pred, w):
    """The scikit-learn scores of predictions ``pred`` (classes or values)."""
    if loss == "mse":
        return {"r2": skm.r2_score(y, pred, sample_weight=w),
                "mse": skm.mean_squared_error(y, pred, sample_weight=w)}
    if loss == "binary_cross_entropy":  # the fraction of correct 0/1 outputs
        correct = (pred == y).mean(axis=1)
        return {"accuracy": np.average(correct, weights=w)}
    return {"accuracy": skm.accuracy_score(y, pred, sample_weight=w)}


def _predict(model, loss, x):
    return np.asarray(model.predict(x) if loss == "mse" else model.predict_classes(x))


LOSSES = ["cross_entropy", "binary_cross_entropy", "mse"]
FIT = dict(learning_rate=0.5, optimizer="sgd", shuffle=False)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", LOSSES)
def test_full_batch_logs_the_scores_of_the_weights_before_the_step(backend, loss, weighted):
    x, y = _data(loss)
    w = _weights() if weighted else None
    model = _model(backend, loss)
    before = model.evaluate(x, y, sample_weight=w)
    history = model.fit(x, y, epochs=2, batch_size=None, sample_weight=w, **FIT)
    between = history.history  # epoch 1 starts from the weights epoch 0 left
    names = ["r2", "mse"] if loss == "mse" else ["accuracy"]
    assert set(between) == {"loss", *names}
    for name in names:
        assert between[name][0] == pytest.approx(before[name], rel=1e-9, abs=1e-12)
    again = _model(backend, loss)
    again.fit(x, y, epochs=1, batch_size=None, sample_weight=w, **FIT)
    after_one = again.evaluate(x, y, sample_weight=w)
    for name in names:
        assert between[name][1] == pytest.approx(after_one[name], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", LOSSES)
def test_minibatch_scores_are_those_of_each_batch_with_the_weights_at_its_step(
        backend, loss, weighted):
    x, y = _data(loss)
    w = _weights() if weighted else None
    model = _model(backend, loss)
    history = model.fit(x, y, epochs=1, batch_size=BATCH, sample_weight=w, **FIT)
    # by hand: the same steps one batch at a time, predicting each batch before its step
    by_hand = _model(backend, loss)
    preds = []
    for start in range(0, N, BATCH):
        rows = slice(start, start + BATCH)
        preds.append(_predict(by_hand, loss, x[rows]))
        by_hand.fit(x[rows], y[rows], epochs=1, batch_size=None,
                    sample_weight=None if w is None else w[rows], **FIT)
    for mine, theirs in zip(by_hand.get_weights(), model.get_weights()):  # the same steps
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    expected = _scores(loss, y, np.concatenate(preds), w)
    for name, value in expected.items():
        assert history.history[name][0] == pytest.approx(value, rel=1e-9, abs=1e-12)
    # every row counted: the scores differ from those of the final weights
    assert expected != _scores(loss, y, _predict(model, loss, x), w)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_rows_of_weight_zero_add_nothing_to_the_scores(backend, loss):
    x, y = _data(loss)
    x_junk, y_junk = _data(loss, n=6, seed=9)
    x_junk = 1e3 * x_junk  # large values: they must not count at all
    w = np.concatenate([np.ones(N), np.zeros(6)])
    plain = _model(backend, loss).fit(x, y, epochs=2, batch_size=None, **FIT).history
    padded = _model(backend, loss).fit(np.concatenate([x, x_junk]), np.concatenate([y, y_junk]),
                                       epochs=2, batch_size=None, sample_weight=w,
                                       **FIT).history
    for name in plain:
        np.testing.assert_allclose(padded[name], plain[name], rtol=1e-9)


def test_history_validation_and_early_stopping_use_the_training_accuracy(backend):
    x, y = _data("cross_entropy")
    model = _model(backend, "cross_entropy")
    stopper = mlp.EarlyStopping(monitor="accuracy", patience=2)
    history = model.fit(x, y, epochs=20, batch_size=None, learning_rate=1e-9,
                        optimizer="sgd", validation_data=(x, y), callbacks=[stopper])
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert history.params["metrics"] == ["loss", "accuracy", "val_loss", "val_accuracy"]
    # a learning rate too small to change a prediction: no improvement after epoch 0
    assert len(set(history.history["accuracy"])) == 1
    assert history.epoch == [0, 1, 2] and history.stopped_epoch == 2
    # the training accuracy of an epoch is that of its start, validation that of its end
    assert history.history["accuracy"][0] == pytest.approx(
        history.history["val_accuracy"][0], rel=1e-6)


def test_a_loss_without_training_totals_logs_only_the_loss():
    from mlp import losses
    from mlp.metrics import Metric

    base = losses.get_loss("cross_entropy")
    accuracy = base.metrics[0]  # the same metric without its training-totals form
    custom = losses.Loss("ce_no_totals", terms=base._terms, terms_and_delta=base._terms_and_delta,
                         elementwise=False, default_output="softmax",
                         allowed_outputs=("softmax",), targets=base.targets,
                         metrics=(Metric("accuracy", accuracy.compute, greater_is_better=True),),
                         min_outputs=2, needs_output=False)
    losses.register_loss(custom)
    try:
        x, y = _data("cross_entropy")
        model = mlp.MLP([4, 6, 3], loss="ce_no_totals", backend="numpy", seed=1)
        assert set(model.fit(x, y, epochs=2, **FIT).history) == {"loss"}
    finally:
        del losses.LOSSES["ce_no_totals"]
