"""Metrics carry their direction: the built-in ones, a user's registered metric and a user's
loss naming it, logged during training and watched by the callbacks with no ``mode``."""

from __future__ import annotations

import numpy as np
import pytest

import mlp
from mlp import losses, metrics
from mlp.metrics import Metric, Totals, metric_mode


# ----------------------------------------------------------------- built-in
def test_each_built_in_metric_states_its_direction():
    assert {name: m.greater_is_better for name, m in metrics.METRICS.items()} == {
        "mse": False, "accuracy": True, "r2": True}
    assert [metric_mode(n) for n in ("loss", "val_loss", "mse", "val_mse")] == ["min"] * 4
    assert [metric_mode(n) for n in ("accuracy", "val_accuracy", "r2", "val_r2")] == ["max"] * 4
    assert mlp.metric_mode is metric_mode  # one rule, wherever it is imported from
    ce, bce = losses.LOSSES["cross_entropy"], losses.LOSSES["binary_cross_entropy"]
    # yes/no outputs have their own accuracy, logged as accuracy, with its direction
    assert ce.metrics == (metrics.accuracy,) and bce.metrics == (metrics.binary_accuracy,)
    assert bce.metrics[0].name == "accuracy" and bce.metrics[0].mode == "max"
    assert losses.LOSSES["mse"].metrics == (metrics.r2, metrics.mse)


def test_the_weighted_forms_are_scikit_learns(backend, rng):
    from sklearn.metrics import accuracy_score, mean_squared_error, r2_score

    xp = backend.xp
    y, a, w = rng.normal(size=(9, 2)), rng.normal(size=(9, 2)), rng.uniform(0, 2, 9)
    w[3] = 0.0
    dev = [backend.asarray(v, "float64") for v in (y, a, w)]
    assert float(metrics.r2(xp, dev[1], dev[1], dev[0], None, dev[2])) == pytest.approx(
        r2_score(y, a, sample_weight=w), rel=1e-12)
    assert float(metrics.mse(xp, dev[1], dev[1], dev[0], None, dev[2])) == pytest.approx(
        mean_squared_error(y, a, sample_weight=w), rel=1e-12)
    labels = rng.integers(0, 2, 9)
    z = backend.asarray(a, "float64")
    got = metrics.accuracy(xp, z, z, None, backend.asarray(labels), dev[2])
    assert float(got) == pytest.approx(
        accuracy_score(labels, a.argmax(axis=1), sample_weight=w), rel=1e-12)


# ------------------------------------------------------------ registering
def _mean_abs(xp, z, a, targets, labels, weights=None):
    return metrics.weighted_mean(xp, xp.abs(a - targets), weights)


def test_a_registered_metric_has_its_direction_without_a_table(registries):
    with pytest.raises(ValueError, match=r"unknown metric 'val_mae'; known metrics: loss, "
                                         r"val_loss, mse, val_mse, accuracy, val_accuracy, r2, "
                                         r"val_r2 \(or pass mode='min' or mode='max'"):
        metric_mode("val_mae")
    metrics.register_metric(Metric("mae", _mean_abs, greater_is_better=False))
    assert (metric_mode("mae"), metric_mode("val_mae")) == ("min", "min")
    with pytest.raises(ValueError, match=r"unknown metric 'val_mea'; known metrics: loss, .*"
                                         r"r2, val_r2, mae, val_mae \(or pass mode="):
        metric_mode("val_mea")
    assert mlp.EarlyStopping("val_mae").monitor == "val_mae"  # no mode needed
    with pytest.raises(ValueError, match=r"a metric named 'mae' is already registered"):
        metrics.register_metric(Metric("mae", _mean_abs, greater_is_better=False))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(name="val_mae"), ValueError, r"not starting with 'val_' .* got 'val_mae'"),
    (dict(name="loss"), ValueError, r"a metric's name must be .* not 'loss'"),
    (dict(compute=3), TypeError, r"metric 'mae': compute must be a callable"),
    (dict(greater_is_better="min"), TypeError, r"greater_is_better must be True or False, "
                                                r"got 'min'"),
    (dict(totals=Totals(lambda xp, z, a, y, w=None: y)), TypeError,
     r"metric 'mae' needs both totals \(a Totals\) and from_totals"),
])
def test_a_metric_is_checked_when_built(kwargs, exc, match):
    kwargs = dict(dict(name="mae", compute=_mean_abs, greater_is_better=False), **kwargs)
    with pytest.raises(exc, match=match):
        Metric(kwargs.pop("name"), kwargs.pop("compute"), **kwargs)


def _terms(xp, z, a, y):
    return xp.abs(a - y)


def _terms_and_delta(xp, z, a, y, output, scale):
    return _terms(xp, z, a, y), output.backward(xp, xp.sign(a - y) * scale, z, a)


def _loss(name, metric_names):
    return losses.Loss(name, terms=_terms, terms_and_delta=_terms_and_delta,
                       default_output="identity", metrics=metric_names)


def test_a_loss_names_known_metrics_and_registers_its_own(registries):
    with pytest.raises(ValueError, match=r"Loss 'mae': metric must be one of 'mse', "
                                         r"'accuracy', 'r2', got 'mae_score'"):
        _loss("mae", ("r2", "mae_score"))
    with pytest.raises(ValueError, match=r"Loss 'mae' names a metric twice: r2, r2"):
        _loss("mae", ("r2", metrics.r2))
    with pytest.raises(TypeError, match=r"metrics must be a tuple of metric names"):
        _loss("mae", "r2")
    own = Metric("mae_score", _mean_abs, greater_is_better=False)
    mlp.register_loss(_loss("mae", ("r2", own)))
    assert metrics.METRICS["mae_score"] is own and metric_mode("val_mae_score") == "min"
    # a metric named as a registered one with the other direction is refused, and the
    # refused loss registers nothing
    upside_down = Metric("r2", metrics.r2.compute, greater_is_better=False)
    fresh = Metric("fresh", _mean_abs, greater_is_better=True)
    with pytest.raises(ValueError, match=r"loss 'mae2' has a metric 'r2' with "
                                         r"greater_is_better=False, but the registered metric "
                                         r"'r2' has greater_is_better=True"):
        mlp.register_loss(_loss("mae2", (fresh, upside_down)))
    assert "mae2" not in losses.LOSSES and "fresh" not in metrics.METRICS


# ------------------------------------------- a user's loss, metric and callbacks
def _abs_step(xp, z, a, y, w=None):
    """``[sum over rows of w * mean |a - y|]``: the training totals of the test's metrics."""
    per_row = xp.mean(xp.abs(a - y), axis=1)
    return xp.reshape(xp.sum(per_row) if w is None else metrics.weighted_sum(xp, per_row, w),
                      (1,))


def _rows(xp, y, w=None):
    return xp.reshape(xp.sum(xp.ones_like(y[:, 0]) if w is None else w), (1,))


ABS_TOTALS = Totals(_abs_step, _rows)


def _abs_from_totals(totals):
    return totals[:, 0] / totals[:, 1]


def _abs_metric(name, greater_is_better):
    return Metric(name, _mean_abs, greater_is_better=greater_is_better, totals=ABS_TOTALS,
                  from_totals=_abs_from_totals)


@pytest.fixture
def user_loss(registries):
    """A user's loss (mean absolute error) reporting r2, mse and two user metrics of the same
    value, one registered as lower-is-better and one as higher-is-better."""
    metrics.register_metric(_abs_metric("abs_error", greater_is_better=False))
    metrics.register_metric(_abs_metric("abs_error_up", greater_is_better=True))
    return mlp.register_loss(_loss("mae", ("r2", "mse", "abs_error", "abs_error_up")))


def _regression(n=24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    return x, x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1


def _fit(backend, callbacks, epochs=6, loss="mae"):
    x, y = _regression()
    model = mlp.MLP([3, 1], loss=loss, activation="identity", backend=backend,
                    dtype="float64", seed=0)
    start = model.get_weights()
    history = model.fit(x, y, epochs=epochs, optimizer="sgd", learning_rate=0.05,
                        batch_size=len(x), shuffle=False, callbacks=callbacks)
    return start, history.history


def test_a_users_metric_is_logged_from_the_training_batches(backend, user_loss):
    x, y = _regression()
    (W, b), = _fit(backend, [], epochs=1)[0]
    start, logs = _fit(backend, [], epochs=3)
    assert set(logs) == {"loss", "r2", "mse", "abs_error", "abs_error_up"}
    # one full batch: an epoch's training value is the metric at its start
    assert logs["abs_error"][0] == pytest.approx(np.abs(x @ W + b - y).mean(), rel=1e-12)
    assert logs["abs_error"] == logs["abs_error_up"]  # one form: the same sums
    np.testing.assert_allclose(logs["abs_error"], logs["loss"], rtol=1e-14)
    # r2 and mse keep their own sums beside the user's: the same as with the loss's
    # default metrics alone (the loss registered again, reporting r2 and mse only)
    mlp.register_loss(_loss("mae_r2", ("r2", "mse")))
    _, alone = _fit(backend, [], epochs=3, loss="mae_r2")
    assert (logs["r2"], logs["mse"]) == (alone["r2"], alone["mse"])


def test_callbacks_read_a_users_metric_direction_from_the_metric(backend, user_loss, tmp_path):
    """The same values watched as lower-is-better (the error falls every epoch: always an
    improvement) and as higher-is-better (never one after epoch 0), with no mode given."""
    assert (metric_mode("abs_error"), metric_mode("val_abs_error_up")) == ("min", "max")
    down = [mlp.EarlyStopping("abs_error", patience=2),
            mlp.ModelCheckpoint(str(tmp_path / "down-{epoch}.npz"), monitor="abs_error",
                                save_best_only=True),
            mlp.ReduceLROnPlateau("abs_error", patience=1, factor=0.5)]
    _, logs = _fit(backend, down)
    assert np.all(np.diff(logs["abs_error"]) < 0) and len(logs["abs_error"]) == 6
    assert down[0].best_epoch == 5 and down[2].reductions == []
    up = [mlp.EarlyStopping("abs_error_up", patience=2),
          mlp.ModelCheckpoint(str(tmp_path / "up-{epoch}.npz"), monitor="abs_error_up",
                              save_best_only=True),
          mlp.ReduceLROnPlateau("abs_error_up", patience=1, factor=0.5, cooldown=5)]
    _, logs = _fit(backend, up)
    assert up[0].best_epoch == 0 and len(logs["abs_error_up"]) == 3  # stopped at epoch 2
    assert [epoch for epoch, _ in up[2].reductions] == [1]
    saved = sorted(p.name for p in tmp_path.iterdir())  # (files count epochs from 1)
    assert saved == sorted([*(f"down-{e}.npz" for e in range(1, 7)), "up-1.npz"])


def test_a_users_metrics_are_logged_and_watched_on_validation_data(backend, user_loss):
    x, y = _regression()
    model = mlp.MLP([3, 1], loss="mae", activation="identity", backend=backend,
                    dtype="float64", seed=0)
    stopper = mlp.EarlyStopping("val_abs_error_up", patience=1, restore_best_weights=False)
    logs = model.fit(x, y, epochs=6, optimizer="sgd", learning_rate=0.05, batch_size=len(x),
                     validation_data=(x, y), callbacks=[stopper]).history
    assert set(logs) == {"loss", "r2", "mse", "abs_error", "abs_error_up", "val_loss",
                         "val_r2", "val_mse", "val_abs_error", "val_abs_error_up"}
    # the error falls: higher-is-better sees no improvement after epoch 0
    assert logs["val_abs_error"][1] < logs["val_abs_error"][0]
    assert stopper.best_epoch == 0 and len(logs["val_loss"]) == 2
    evaluated = model.evaluate(x, y)
    assert logs["val_abs_error_up"][-1] == pytest.approx(evaluated["abs_error_up"], rel=1e-12)
