"""The training loop: mini-batches, labels, metrics, validation, early stopping,
callbacks, divergence, progress output and the summary - on every backend."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn import metrics as skm
from threadpoolctl import threadpool_limits

import mlp
from mlp import optimizers, schedules
from tests._helpers import WeightLog, count_run_calls


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny matrices: BLAS/OpenMP threads only add overhead, which turns into tens of
    seconds when other processes compete for the cores."""
    with threadpool_limits(1):
        yield



def _weights_equal(a, b, atol=0.0):
    for (W, bias), (W0, b0) in zip(a, b, strict=True):
        np.testing.assert_allclose(W, W0, rtol=0, atol=atol)
        np.testing.assert_allclose(bias, b0, rtol=0, atol=atol)


def _differ(a, b):
    return any(not np.array_equal(W, W0) for (W, _), (W0, _) in zip(a, b, strict=True))


def _classification(n=50, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (np.argmax(x[:, :k] + 0.3 * rng.normal(size=(n, k)), axis=1)).astype(np.int64)
    return x, y


#: Most tests share one network, data size and optimizer, so that JAX compiles
#: the training step once for all of them (compiled functions are shared by models).
SIZES = [5, 8, 3]
N = 30
SGD = dict(learning_rate=0.1, optimizer="sgd")
FULL_SGD = dict(SGD, batch_size=None)  # fit's defaults before issue 12
DIVERGING = dict(learning_rate=10.0, optimizer="sgd", batch_size=None)


def _model(backend, **kwargs):
    kwargs = dict(dict(loss="cross_entropy", dtype="float64", seed=0), **kwargs)
    return mlp.MLP(SIZES, backend=backend, **kwargs)


def _regression(n=40, d=4, outputs=2, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.tanh(x[:, :outputs]) + 0.1 * rng.normal(size=(n, outputs))
    return x, y


# ---------------------------------------------------------------- mini-batches
@pytest.mark.parametrize("opt", ["adam", "momentum"])
def test_minibatch_float64_same_weights_as_numpy(backend, opt):
    x, y = _classification(n=50)
    optimizer = "adam" if opt == "adam" else optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    kwargs = dict(epochs=3, batch_size=16, optimizer=optimizer, alpha=1e-3,
                  validation_split=0.2)

    def train(name):
        model = mlp.MLP([5, 8, 3], loss="cross_entropy", backend=name, dtype="float64", seed=4)
        history = model.fit(x, y, **kwargs)
        return model.get_weights(), history

    ref, ref_history = train("numpy")
    got, history = train(backend)
    _weights_equal(got, ref, atol=1e-10)
    np.testing.assert_allclose(history.history["loss"], ref_history.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(history.history["val_loss"], ref_history.history["val_loss"],
                               rtol=1e-10)


def test_last_partial_batch_is_used(backend):
    """n=10, batch 4: steps on rows 0-3, 4-7 and 8-9 each epoch (shuffle=False)."""
    x, y = _regression(n=10, outputs=1)
    model = mlp.MLP([4, 5, 1], backend=backend, dtype="float64", seed=2, activation="tanh")
    ref = mlp.MLP([4, 5, 1], backend="numpy", dtype="float64", seed=2, activation="tanh")
    lr, epochs = 0.3, 2
    history = model.fit(x, y, epochs=epochs, batch_size=4, shuffle=False, learning_rate=lr,
                        optimizer="sgd")
    epoch_losses = []
    for _ in range(epochs):
        total = 0.0
        for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):
            total += ref.loss(x[rows], y[rows]) * len(range(10)[rows])
            grads = ref.gradients(x[rows], y[rows])
            ref.set_weights([(W - lr * ref.backend.to_numpy(dW), b - lr * ref.backend.to_numpy(db))
                             for (W, b), (dW, db) in zip(ref.get_weights(), grads, strict=True)])
        epoch_losses.append(total / 10)
    _weights_equal(model.get_weights(), ref.get_weights(), atol=1e-12)
    # the epoch's loss is the sample-weighted mean of its batches' losses
    np.testing.assert_allclose(history.history["loss"], epoch_losses, rtol=1e-12)
    # dropping the partial batch would give other weights
    dropped = mlp.MLP([4, 5, 1], backend="numpy", dtype="float64", seed=2, activation="tanh")
    dropped.fit(x[:8], y[:8], epochs=epochs, batch_size=4, shuffle=False, learning_rate=lr)
    assert _differ(dropped.get_weights(), model.get_weights())


class _Recorder:
    """An "optimizer" that never moves the weights and records each step's rows.

    With ``x = eye(n)``, ``y = 1`` and a linear model at zero weights, the
    gradient of sample ``j`` is ``-1/batch`` in ``dW[j]`` and zero elsewhere, so
    the nonzero rows of ``dW`` are the batch.
    """

    def __init__(self, backend):
        self.backend = backend
        self.batches = []
        self.learning_rate = 0.0

    def init(self, params):
        return ()

    def update(self, grads, state, params):
        dW = self.backend.to_numpy(grads[0][0])[:, 0]
        self.batches.append(np.flatnonzero(dW != 0).tolist())
        return params, state


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_sample_once_per_epoch_in_fresh_order(backend, shuffle):
    if backend.compiles:
        pytest.skip("the recorder reads arrays in Python; compiled steps are covered by "
                    "test_minibatch_float64_same_weights_as_numpy")
    n, epochs = 10, 4
    model = mlp.MLP([n, 1], backend=backend, dtype="float64", seed=9)
    model.set_weights([(np.zeros((n, 1)), np.zeros(1))])
    rec = _Recorder(backend)
    model.fit(np.eye(n), np.ones(n), epochs=epochs, batch_size=4, shuffle=shuffle, optimizer=rec)
    assert [len(b) for b in rec.batches] == [4, 4, 2] * epochs
    orders = [sum(rec.batches[3 * e:3 * e + 3], []) for e in range(epochs)]
    for order in orders:
        assert sorted(order) == list(range(n))
    if shuffle:
        assert len({tuple(o) for o in orders}) == epochs  # a fresh permutation every epoch
    else:
        assert all(o == list(range(n)) for o in orders)


def test_shuffle_is_drawn_from_the_seed(backend):
    x, y = _classification(n=N)
    start = _model("numpy").get_weights()

    def train(seed, shuffle=True):
        model = _model(backend, seed=seed)
        model.set_weights(start)  # same start: only the batches can differ
        model.fit(x, y, epochs=3, batch_size=8, shuffle=shuffle, **SGD)
        return model.get_weights()

    a, b, c = train(3), train(3), train(4)
    _weights_equal(a, b)
    assert _differ(a, c)
    assert _differ(a, train(3, shuffle=False))


# ------------------------------------------------------------- classification
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "int64", "onehot", "native"])
def test_label_encodings_train_identically(backend, dtype):
    x, y = _classification(n=N)
    if dtype == "onehot":
        labels = np.eye(3)[y]
    elif dtype == "native":
        labels = backend.asarray(y.astype(np.int32))
    else:
        labels = y.astype(dtype)

    def train(labels):
        model = _model(backend)
        history = model.fit(x, labels, epochs=3, batch_size=8, **SGD)
        return model, history

    model, history = train(labels)
    ref, ref_history = train(y)
    _weights_equal(model.get_weights(), ref.get_weights())
    assert history.history["loss"] == ref_history.history["loss"]
    assert model.evaluate(x, labels) == ref.evaluate(x, y)


def test_predict_proba_and_classes(backend):
    x, y = _classification(n=N)
    model = _model(backend, dtype="float32")
    model.fit(x, y, epochs=20, optimizer="adam", learning_rate=0.05)
    proba = backend.to_numpy(model.predict_proba(x))
    assert proba.shape == (N, 3)
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    classes = backend.to_numpy(model.predict_classes(x))
    assert classes.shape == (N,) and classes.dtype.kind == "i"
    np.testing.assert_array_equal(classes, proba.argmax(axis=1))
    assert model.evaluate(x, y)["accuracy"] == pytest.approx(np.mean(classes == y), abs=1e-6)
    assert np.mean(classes == y) > 0.8  # it learned the (easy, noisy) rule


def test_binary_predict_classes(backend):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3))
    y = (x[:, :2] > 0).astype(np.float64)  # two independent binary outputs
    model = mlp.MLP([3, 8, 2], loss="binary_cross_entropy", backend=backend, seed=0)
    model.fit(x, y, epochs=25, optimizer="adam", learning_rate=0.1)
    proba = backend.to_numpy(model.predict_proba(x))
    classes = backend.to_numpy(model.predict_classes(x))
    assert classes.shape == (40, 2)
    np.testing.assert_array_equal(classes, (proba > 0.5).astype(classes.dtype))
    result = model.evaluate(x, y)
    assert result["accuracy"] == pytest.approx(np.mean(classes == y), abs=1e-6)
    assert result["accuracy"] > 0.9


def test_evaluate_classification_matches_sklearn(backend):
    x, y = _classification(n=N)
    model = _model(backend)
    model.fit(x, y, epochs=3, **FULL_SGD)
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "accuracy"}
    proba = backend.to_numpy(model.predict_proba(x))
    classes = backend.to_numpy(model.predict_classes(x))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, classes), abs=1e-12)
    assert result["loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2]), rel=1e-9)
    assert result["loss"] == pytest.approx(model.loss(x, y), rel=1e-12)


@pytest.mark.parametrize("outputs", [1, 2])
def test_evaluate_regression_matches_sklearn(backend, outputs):
    x, y = _regression(outputs=outputs)
    if outputs == 1:
        y = y[:, 0]
    model = mlp.MLP([4, 8, outputs], backend=backend, dtype="float64", seed=0)
    model.fit(x, y, epochs=40, optimizer="adam", learning_rate=0.05)
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "r2", "mse"}
    pred = backend.to_numpy(model.predict(x))
    if outputs == 1:
        pred = pred[:, 0]
    assert result["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-10)
    assert result["mse"] == pytest.approx(skm.mean_squared_error(y, pred), rel=1e-10)
    assert result["loss"] == pytest.approx(0.5 * result["mse"], rel=1e-10)  # loss: 0.5 * mse
    assert 0.0 < result["r2"] < 1.0


# ------------------------------------------------------------------ validation
def test_validation_data_classification(backend):
    x, y = _classification(n=N)
    xv, yv = _classification(n=10, seed=8)
    model = _model(backend)
    history = model.fit(x, y, epochs=3, batch_size=8, validation_data=(xv, yv), **SGD)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.epoch == [0, 1, 2]
    final = model.evaluate(xv, yv)
    assert history.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-12)
    assert history.history["val_accuracy"][-1] == pytest.approx(final["accuracy"], abs=1e-12)
    assert history.history["val_loss"][0] > history.history["val_loss"][-1]


def test_validation_data_regression(backend):
    x, y = _regression()
    xv, yv = _regression(n=12, seed=4)
    model = mlp.MLP([4, 8, 2], backend=backend, dtype="float64", seed=0)
    history = model.fit(x, y, epochs=3, learning_rate=0.1, validation_data=(xv, yv))
    assert set(history.history) == {"loss", "r2", "mse", "val_loss", "val_r2", "val_mse"}
    final = model.evaluate(xv, yv)
    for key in ("loss", "r2", "mse"):
        assert history.history["val_" + key][-1] == pytest.approx(final[key], rel=1e-12)


def test_validation_split(backend):
    x, y = _classification(n=N)
    model = _model(backend)
    history = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.2, **SGD)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.params["samples"] == 24  # 6 of the 30 held out
    for acc in history.history["val_accuracy"]:
        assert acc * 6 == pytest.approx(round(acc * 6), abs=1e-9)  # k correct out of 6
    assert all(np.isfinite(history.history["val_loss"]))
    # the held-out rows are drawn from the seed: the same seed, the same split
    again = _model(backend)
    assert again.fit(x, y, epochs=3, batch_size=8, validation_split=0.2,
                     **SGD).history == history.history


# -------------------------------------------------------------- early stopping
def _overfitting_problem():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)  # noise: val_loss soon rises
    xv, yv = rng.normal(size=(30, 5)), rng.integers(0, 3, 30)
    return x, y, xv, yv


def test_early_stopping_restores_the_best_weights(backend):
    x, y, xv, yv = _overfitting_problem()
    model = mlp.MLP([5, 32, 3], loss="cross_entropy", backend=backend, dtype="float64", seed=0)
    log = WeightLog()
    patience = 4
    history = model.fit(x, y, epochs=60, optimizer="adam", learning_rate=0.02,
                        validation_data=(xv, yv), early_stopping=True, patience=patience,
                        callbacks=[log])
    val = history.history["val_loss"]
    best = int(np.argmin(val))
    assert best < 10  # it overfits quickly
    assert history.stopped_epoch == best + patience
    assert len(val) == best + patience + 1 < 60
    assert min(val[best + 1:]) >= val[best]
    _weights_equal(model.get_weights(), log.weights[best])
    assert _differ(log.weights[-1], log.weights[best])
    assert model.evaluate(xv, yv)["loss"] == pytest.approx(val[best], rel=1e-12)


def test_early_stopping_min_delta_and_training_loss(backend):
    """Without validation data it watches the training loss; min_delta raises the bar."""
    x, y = _classification(n=N)
    kwargs = dict(epochs=20, early_stopping=True, patience=2, **FULL_SGD)
    model = _model(backend)
    history = model.fit(x, y, **kwargs)  # the training loss keeps falling: no stop
    assert len(history.epoch) == 20 and history.stopped_epoch is None
    assert "val_loss" not in history.history
    model = _model(backend)
    history = model.fit(x, y, min_delta=1.0, **kwargs)  # no epoch improves by 1.0
    assert history.stopped_epoch == 2 and len(history.epoch) == 3


def test_early_stopping_callback_logic():
    stopper = mlp.EarlyStopping(patience=2, min_delta=0.1)

    class Model:
        params = "start"

    model = Model()
    stopper.set_model(model)
    stopper.on_train_begin()
    decisions = []
    for epoch, value in enumerate([1.0, 0.8, 0.75, 0.72, 0.5]):
        model.params = f"after epoch {epoch}"
        decisions.append(stopper.on_epoch_end(epoch, {"loss": 9.0, "val_loss": value}))
        if decisions[-1]:
            break
    # 0.75 and 0.72 are not 0.1 below 0.8: two epochs without improvement -> stop at 3
    assert decisions == [False, False, False, True]
    stopper.on_train_end()
    assert model.params == "after epoch 1" and stopper.best_epoch == 1
    # without val_loss in the logs it watches the training loss
    stopper.on_train_begin()
    assert [stopper.on_epoch_end(e, {"loss": v}) for e, v in enumerate([3, 2, 2, 2])] == [
        False, False, False, True]


# ------------------------------------------------------------------- callbacks
def test_function_callback_returning_true_stops(backend):
    x, y = _classification(n=N)
    seen = []

    def cb(epoch, logs):
        seen.append((epoch, dict(logs)))
        return epoch == 2

    model = _model(backend)
    history = model.fit(x, y, epochs=10, callbacks=[cb])
    assert [e for e, _ in seen] == [0, 1, 2]
    assert history.epoch == [0, 1, 2] and history.stopped_epoch == 2
    assert [logs["loss"] for _, logs in seen] == history.history["loss"]
    assert all(set(logs) == {"loss", "accuracy"} for _, logs in seen)


def test_callback_subclass_hooks_and_logs(backend):
    x, y = _classification(n=30)
    xv, yv = _classification(n=10, seed=8)
    calls = []

    class Spy(mlp.Callback):
        def on_train_begin(self, logs=None):
            calls.append("begin")

        def on_epoch_end(self, epoch, logs):
            calls.append((epoch, sorted(logs)))
            self.last = (self.model.get_weights(), self.model.evaluate(xv, yv)["loss"],
                         logs["val_loss"])

        def on_train_end(self, logs=None):
            calls.append("end")

    spy = Spy()
    model = _model(backend)
    model.fit(x, y, epochs=3, batch_size=8, learning_rate=0.1, validation_data=(xv, yv),
              callbacks=[spy])
    keys = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert calls == ["begin", (0, keys), (1, keys), (2, keys), "end"]
    assert spy.model is model
    weights, loss_then, logged = spy.last  # the hook sees the epoch's final weights
    _weights_equal(weights, model.get_weights())
    assert loss_then == pytest.approx(logged, rel=1e-6)


def test_callback_can_set_stop_training(backend):
    x, y = _classification(n=N)

    class Stop(mlp.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.model.stop_training = True

    model = _model(backend)
    history = model.fit(x, y, epochs=10, callbacks=[Stop()])
    assert history.epoch == [0, 1] and history.stopped_epoch == 1
    # the flag does not leak into the next fit
    assert len(model.fit(x, y, epochs=3, learning_rate=0.1).epoch) == 3


# ------------------------------------------------------------------ divergence
def _diverging(backend):
    rng = np.random.default_rng(1)
    x, y = 3 * rng.normal(size=(20, 5)), rng.normal(size=20)
    return mlp.MLP([5, 16, 1], backend=backend, seed=0), x, y


def _all_finite(weights):
    return all(np.all(np.isfinite(W)) and np.all(np.isfinite(b)) for W, b in weights)


def _last_with_finite_loss(backend, candidates, x, y):
    probe, _, _ = _diverging(backend)
    for weights in reversed(candidates):
        if _all_finite(weights):
            probe.set_weights(weights)
            try:
                probe.loss(x, y)  # a loss that overflows float32 is refused
            except ValueError as exc:
                assert "overflows float32" in str(exc)
            else:
                return weights
    raise AssertionError("no candidate has a finite loss")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_raises_and_restores_the_last_finite_weights(backend):
    model, x, y = _diverging(backend)
    log = WeightLog()
    start = model.get_weights()
    with pytest.raises(mlp.TrainingDivergedError, match="diverged") as info:
        model.fit(x, y, epochs=50, **DIVERGING, callbacks=[log])
    assert isinstance(info.value, FloatingPointError)
    history = info.value.history
    assert 1 <= len(history.epoch) < 50 and all(np.isfinite(history.history["loss"]))
    # the callback saw every epoch with a finite loss; an epoch whose end weights have none
    # is taken back with them: the history, the epoch count and the weights agree
    assert len(history.epoch) <= len(log.weights) <= len(history.epoch) + 1
    assert model.epochs_trained_ == len(history.epoch) == len(model.history_.epoch)
    restored = model.get_weights()
    assert _all_finite(restored)
    _weights_equal(restored, _last_with_finite_loss(backend, [start, *log.weights], x, y))
    _weights_equal(restored, [start, *log.weights][len(history.epoch)])
    assert np.isfinite(model.loss(x, y))  # finite weights are not enough: the loss is too


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_without_hooks(backend):
    """On JAX the epochs then run in one compiled call; the replay finds the epoch."""
    model, x, y = _diverging(backend)
    with pytest.raises(mlp.TrainingDivergedError) as info:
        model.fit(x, y, epochs=50, **DIVERGING)
    assert _all_finite(model.get_weights())
    # the same epochs as with a callback attached (which runs epoch by epoch)
    other, _, _ = _diverging(backend)
    with pytest.raises(mlp.TrainingDivergedError) as info2:
        other.fit(x, y, epochs=50, **DIVERGING, callbacks=[lambda e, logs: None])
    assert info.value.history.history == info2.value.history.history
    _weights_equal(model.get_weights(), other.get_weights())


def _explodes_at(step_at):
    """A learning rate of 0.01 that becomes 1e6 at step ``step_at`` (array-API only)."""

    def schedule(step):
        from array_api_compat import array_namespace

        xp = array_namespace(step)
        return xp.where(step >= step_at, xp.asarray(1e6), xp.asarray(0.01))

    return schedule


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_long_diverged_chunk_is_replayed_in_blocks(backend, monkeypatch):
    """700 epochs in one call diverge at about epoch 600: the replay runs blocks of
    `REPLAY_CHUNK` epochs, then single epochs from the block where the loss stopped
    being finite, and keeps exactly the epochs a run epoch by epoch keeps."""
    from mlp import training

    class OneLongChunk:
        def __init__(self, max_chunk, seconds=None, key=None, bound=None):
            self.plan = iter([1, 1, 700]) if max_chunk > 1 else None

        def next(self, remaining):
            return 1 if self.plan is None else min(next(self.plan), remaining)

        def measured(self, n_epochs, seconds, remaining):
            pass

    monkeypatch.setattr(training, "ChunkPlanner", OneLongChunk)
    calls = count_run_calls(monkeypatch)
    model, x, y = _diverging(backend)
    fit = dict(epochs=702, optimizer=optimizers.SGD(_explodes_at(600)), batch_size=None)
    with pytest.raises(mlp.TrainingDivergedError) as info:
        model.fit(x, y, **fit)
    first = list(calls)  # the calls of the fit without a callback
    other, _, _ = _diverging(backend)
    with pytest.raises(mlp.TrainingDivergedError) as info2:
        other.fit(x, y, **fit, callbacks=[lambda e, logs: None])
    assert 600 <= len(info.value.history.epoch) < 700
    assert info.value.history.history == info2.value.history.history
    _weights_equal(model.get_weights(), other.get_weights())
    # 1, 1, the chunk, two blocks kept, then (fewer than a block left) one by one up to
    # the epoch that diverged: about 90 calls instead of about 600
    assert first[:5] == [1, 1, 700, 256, 256]
    assert set(first[5:]) == {1} and len(first) < 5 + 700 - 512


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_with_early_stopping_keeps_the_last_finite_weights(backend):
    """Early stopping's restore of its best epoch must not override the divergence
    restore that the error message describes."""
    model, x, y = _diverging(backend)
    log = WeightLog()
    start = model.get_weights()
    with pytest.raises(mlp.TrainingDivergedError):
        model.fit(x, y, epochs=50, **DIVERGING, callbacks=[log], early_stopping=True,
                  patience=50)
    _weights_equal(model.get_weights(), _last_with_finite_loss(backend, [start, *log.weights],
                                                               x, y))


def _pure(optimizer):
    """``optimizer`` as a transformation of the user's own: the fast path does not mirror
    it, so the pure run computes every epoch."""
    return optimizers.GradientTransformation(optimizer.init, optimizer.update)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("path", ["pure", "fast", "per-epoch"])
@pytest.mark.parametrize("batch_size, learning_rate", [(None, 0.3), (4, 0.05)])
def test_a_divergence_takes_back_the_epoch_count_history_and_step_count(
        backend, path, batch_size, learning_rate):
    """The epochs whose end weights are taken back leave the epoch count, the histories,
    the optimizer's step count and the shuffle stream too: the model is then exactly a
    model trained for the epochs kept, and the next fit continues as that one does. On
    JAX "pure" and "fast" run the epochs in one compiled call (and replay it); NumPy and
    PyTorch run SGD on their in-place fast path and a transformation of the user's own on
    the pure path; a callback runs one epoch per call."""
    model, x, y = _diverging(backend)
    sgd = optimizers.SGD(learning_rate)
    optimizer = _pure(sgd) if path == "pure" else sgd
    callbacks = [lambda epoch, logs: None] if path == "per-epoch" else None
    fit = dict(optimizer=optimizer, batch_size=batch_size)
    with pytest.raises(mlp.TrainingDivergedError) as info:
        model.fit(x, y, epochs=60, callbacks=callbacks, **fit)
    kept = model.epochs_trained_
    assert kept >= 1
    assert info.value.history.epoch == model.history_.epoch == list(range(kept))
    steps = 1 if batch_size is None else 5
    assert optimizers.step_count(model.optimizer_state_) == kept * steps
    assert model.train_state_.epoch == kept
    assert f"from before epoch {kept})" in str(info.value)
    reference, _, _ = _diverging(backend)
    reference.fit(x, y, epochs=kept, **fit)
    _weights_equal(model.get_weights(), reference.get_weights())
    assert model.history_.history["loss"] == reference.history_.history["loss"]
    # the next fit continues as it does from the reference: the same optimizer state and
    # shuffle stream (the same batches)
    for a, b in zip(optimizers.tree_leaves(model.optimizer_state_),
                    optimizers.tree_leaves(reference.optimizer_state_), strict=True):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    assert model._shuffle_rng.bit_generator.state == reference._shuffle_rng.bit_generator.state


# ------------------------------------------------------------ schedules as they run
def _xp_of(step):
    from array_api_compat import array_namespace

    return array_namespace(step)


def turns_negative(step):
    """0.01 until step 99, then negative: gradient ascent from step 100 on."""
    xp = _xp_of(step)
    return xp.where(step < 100, xp.asarray(0.01), xp.asarray(-0.01))


def turns_nan(step):
    xp = _xp_of(step)
    return xp.where(step < 100, xp.asarray(0.01), xp.asarray(float("nan")))


@pytest.mark.parametrize("schedule, what", [
    (turns_negative, r"-0\.01, a negative rate, which would run gradient ascent"),
    (turns_nan, r"NaN, which would turn the weights into NaN"),
    (schedules.exponential_decay(0.01, 1.0, 10.0),
     r"inf in float32 \(beyond its range\), which would overflow the weights"),
], ids=["negative", "nan", "overflowing"])
def test_a_schedule_is_checked_at_every_step_the_fit_runs(backend, schedule, what):
    """Step 0 is fine; a later step is not: refused before any epoch, naming the schedule,
    the step and its epoch (the model unchanged)."""
    x, y = _classification(n=N)
    model = _model(backend, dtype="float32")
    before = model.get_weights()
    step = 100 if schedule in (turns_negative, turns_nan) else 39
    name = getattr(schedule, "__name__", "ExponentialDecay")
    with pytest.raises(ValueError, match=rf"learning-rate schedule {name} gives {what}, for "
                                         r"step (\d+) \(in epoch (\d+)\); a learning rate "
                                         r"must be a finite number >= 0 at every step") as info:
        model.fit(x, y, epochs=60, optimizer=optimizers.SGD(schedule), batch_size=10)
    found = int(re.search(r"for step (\d+) \(in epoch (\d+)\)", str(info.value)).group(1))
    epoch = int(re.search(r"in epoch (\d+)", str(info.value)).group(1))
    if schedule in (turns_negative, turns_nan):
        assert (found, epoch) == (100, 33)  # 3 steps an epoch
    else:  # float32 holds 10**38 * 0.01; JAX computes the power in float32, NumPy in float64
        assert step <= found <= 41 and epoch == found // 3
    _weights_equal(model.get_weights(), before)
    assert model.epochs_trained_ == 0 and model.optimizer_state_ is None
    if schedule not in (turns_negative, turns_nan):
        return  # (10x a step: the weights overflow long before the rate does)
    # the steps of a fit that stops before the bad one's epoch are fine
    model.fit(x, y, epochs=epoch, optimizer=optimizers.SGD(schedule), batch_size=10)
    assert model.epochs_trained_ == epoch
    # and the next fit, which would reach it, is refused before its first epoch
    with pytest.raises(ValueError, match=rf"schedule {name} gives .* for step {found} "):
        model.fit(x, y, epochs=30, batch_size=10)
    assert model.epochs_trained_ == epoch


def test_a_schedule_for_one_step_at_a_time_is_checked_step_by_step(backend):
    """A schedule that takes no array of steps (a Python ``if``) is called step by step.
    (JAX refuses such a schedule up front: it is traced.)"""
    if backend.compiles:
        pytest.skip("JAX traces schedules: a Python if on the step is refused up front")

    def python_if(step):
        return 0.01 if int(step) < 50 else -1.0

    x, y = _classification(n=N)
    with pytest.raises(ValueError, match=r"schedule python_if gives -1, a negative rate, "
                                         r"which would run gradient ascent, for step 50 \(in "
                                         r"epoch 50\)"):
        _model(backend).fit(x, y, epochs=60, optimizer=optimizers.SGD(python_if),
                            batch_size=None)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_schedule_that_diverges_is_named_with_its_rates(backend, monkeypatch):
    model, x, y = _diverging(backend)
    schedule = _explodes_at(20)
    schedule.__name__ = "explodes_at_20"
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r"\(the learning rate of schedule explodes_at_20 \(up to 1e\+06 "
                             r"in epoch 2\d\) may be too large\)"):
        model.fit(x, y, epochs=40, optimizer=optimizers.SGD(schedule), batch_size=None)
    assert 20 <= model.epochs_trained_ <= 22


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_alpha_is_blamed_when_it_is_the_cause(backend):
    model, x, y = _diverging(backend)
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r": alpha 100\.0 with the learning rate 0\.1 is the cause: their "
                             r"product, 10, exceeds 2 \(2 \(1 \+ momentum\)\), so the L2 "
                             r"penalty's own steps grow the weights without bound") as info:
        model.fit(x, y, epochs=40, optimizer="sgd", learning_rate=0.1, alpha=100.0,
                  batch_size=None)
    assert "0.1 may be too large" not in str(info.value)
    other, _, _ = _diverging(backend)
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r"the L2 penalty 0\.5 \* alpha \* sum \|\|W\|\|\^2 was "
                             r"already .*e\+3\d \(alpha=1e\+38\), beyond what float32 can "
                             r"train with .*: alpha is too large, not the learning rate"):
        other.fit(x, y, epochs=5, alpha=1e38)
    assert other.epochs_trained_ == 0


# ---------------------------------------------------------- progress, summary
def test_silent_by_default(backend, capsys):
    x, y = _classification(n=N)
    _model(backend).fit(x, y, epochs=3, **FULL_SGD)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_2_prints_one_line_per_epoch(backend, capsys):
    x, y = _classification(n=N)
    xv, yv = _classification(n=10, seed=8)
    model = _model(backend)
    history = model.fit(x, y, epochs=3, learning_rate=0.1, validation_data=(xv, yv),
                        verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    pattern = (r"epoch (\d+)/3 - loss: (\S+) - accuracy: \S+ - val_loss: (\S+) - "
               r"val_accuracy: (\S+)"
               r" - \d+\.\d{3}s")
    for i, line in enumerate(lines):
        m = re.fullmatch(pattern, line)
        assert m, line
        assert int(m.group(1)) == i + 1
        assert float(m.group(2)) == pytest.approx(history.history["loss"][i], rel=1e-5)
        assert float(m.group(3)) == pytest.approx(history.history["val_loss"][i], rel=1e-5)


def test_verbose_1_shows_a_tqdm_bar(backend, capsys):
    x, y = _classification(n=N)
    model = _model(backend)
    history = model.fit(x, y, epochs=4, learning_rate=0.1, verbose=1)
    out, err = capsys.readouterr()
    assert out == ""
    assert "100%" in err and "4/4" in err and "epoch" in err
    assert f"loss={history.history['loss'][-1]:.4g}" in err  # the running loss


def test_summary(backend, capsys):
    model = mlp.MLP([64, 128, 64, 10], loss="cross_entropy", backend=backend, dtype="float64",
                    seed=0)
    assert model.summary() is None  # printed once, not echoed again by a REPL
    text = capsys.readouterr().out
    kept = []
    model.summary(print_fn=kept.append)
    assert capsys.readouterr().out == "" and kept == [text.rstrip("\n")]
    for part in ("dense_0", "(64, 128)", "(128,)", "8,320", "dense_1", "(128, 64)", "8,256",
                 "dense_2", "(64, 10)", "650", "relu", "softmax", "float64",
                 backend.name, str(backend.device)):
        assert part in text, part
    assert "total parameters: 17,226" in text
    assert model.n_params == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 == 17226


def test_a_last_step_whose_weights_overflow_the_forward_pass_is_caught(backend):
    """The last step's weights are never seen by an epoch's loss: weights so large that
    the forward pass overflows (finite, ~1e27) must not be returned as a trained model."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    model = mlp.MLP([4, 8, 3], loss="cross_entropy", seed=0, backend=backend)
    with np.errstate(all="ignore"), pytest.raises(mlp.TrainingDivergedError,
                                                  match="the loss of the final weights"):
        model.fit(x * 1e30, y, epochs=1, optimizer="sgd", batch_size=None)
    assert np.isfinite(model.loss(x, y))
    assert np.all(np.isfinite(backend.to_numpy(model.predict(x))))
    # that epoch leaves the history and the step count too (`check_final_weights`): no
    # epoch completed, so the model is as it was before the fit (untrained, no optimizer)
    assert model.epochs_trained_ == 0 and model.history_ is None
    assert model.optimizer_ is None and model.optimizer_state_ is None


# ---------------------------------------------------------------- one fit at a time
class _Pause(mlp.Callback):
    """Holds its fit at the end of epoch 0 until ``release`` is set (``inside``: it is
    there). The waits have a timeout only so that a broken test cannot hang."""

    def __init__(self):
        import threading

        self.inside, self.release = threading.Event(), threading.Event()

    def on_epoch_end(self, epoch, logs):
        if epoch == 0:
            self.inside.set()
            assert self.release.wait(60)


def test_a_second_fit_from_another_thread_is_refused_and_changes_nothing(backend, tmp_path):
    import pickle
    import threading

    x, y = _classification(n=N, d=SIZES[0], k=SIZES[-1])
    model, pause, done = _model(backend), _Pause(), []
    worker = threading.Thread(target=lambda: done.append(
        model.fit(x, y, epochs=3, callbacks=[pause], **SGD)))
    worker.start()
    try:
        assert pause.inside.wait(60)
        weights = model.get_weights()
        busy = r"while another thread runs fit on it; a model runs one training call at a time"
        with pytest.raises(mlp.ModelBusyError, match=r"^fit was called on a model " + busy):
            model.fit(x, y, epochs=5, **SGD)
        with pytest.raises(mlp.ModelBusyError, match=r"^set_weights was called .*" + busy):
            model.set_weights(weights)
        with pytest.raises(mlp.ModelBusyError, match=r"^save\(include_optimizer=True\) was "):
            model.save(tmp_path / "m.npz", include_optimizer=True)
        with pytest.raises(mlp.ModelBusyError, match=r"^pickling \(or copying\) was called"):
            pickle.dumps(model)
        assert model.epochs_trained_ == 1 and model.history_.epoch == [0]
        _weights_equal(model.get_weights(), weights)
        model.save(tmp_path / "weights.npz")  # the weights alone: one consistent list
        np.testing.assert_array_equal(backend.to_numpy(model.predict(x)),
                                      backend.to_numpy(mlp.load(tmp_path / "weights.npz",
                                                                backend=backend).predict(x)))
    finally:
        pause.release.set()
        worker.join(60)
    assert done and done[0].epoch == [0, 1, 2]
    assert model.epochs_trained_ == 3 and model.history_.epoch == [0, 1, 2]
    model.fit(x, y, epochs=1, **SGD)  # free again
    assert model.history_.epoch == [0, 1, 2, 3]


def test_a_fit_from_inside_its_own_callback_is_refused(backend):
    x, y = _classification(n=N, d=SIZES[0], k=SIZES[-1])
    model, refused, twins = _model(backend), [], []

    def nested(epoch, logs):
        try:
            model.fit(x, y, epochs=1, **SGD)
        except mlp.ModelBusyError as exc:
            refused.append(str(exc))
        twin = __import__("copy").deepcopy(model)  # a copy is another model: free to train
        twin.fit(x, y, epochs=1, **SGD)
        twins.append(twin.epochs_trained_)

    history = model.fit(x, y, epochs=2, callbacks=[nested], **SGD)
    assert refused == ["fit was called on a model from inside its own running fit (in a "
                       "callback); a model runs one training call at a time. Wait for the "
                       "running fit to return, or train a copy (copy.deepcopy(model), or a "
                       "new model built from model.get_config())"] * 2
    assert history.epoch == [0, 1] and model.history_.epoch == [0, 1]
    assert model.epochs_trained_ == 2 and twins == [2, 3]


def test_the_guard_is_released_when_fit_raises_and_is_never_pickled(backend):
    import copy
    import pickle

    x, y = _classification(n=N, d=SIZES[0], k=SIZES[-1])
    model = _model(backend)
    with pytest.raises(ValueError):
        model.fit(x, y[:-1], epochs=1)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, epochs=2, callbacks=[lambda e, logs: (_ for _ in ()).throw(
            RuntimeError("boom"))], **SGD)
    model.fit(x, y, epochs=1, **SGD)
    assert mlp.guard.ATTRIBUTE in vars(model)
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), copy.copy(model)):
        assert mlp.guard.ATTRIBUTE not in vars(twin)
        twin.fit(x, y, epochs=1, **SGD)
        assert twin.epochs_trained_ == 3


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_weights_a_callback_sets_that_overflow_name_it_and_keep_the_epoch_before(backend):
    """Finite weights (so set_weights takes them) at which the loss overflows: the
    divergence names the callback, not the learning rate, and the epoch before them, which
    completed, stays (the weights it ended with come back)."""
    x, y = _classification(n=N)
    kept = []

    class Huge(mlp.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                kept.append(self.model.get_weights())
                self.model.set_weights([(np.full_like(W, 1e300), b)
                                        for W, b in self.model.get_weights()])

    model = _model(backend)
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r"in epoch 2: callback Huge \(on_epoch_end\) set the weights epoch 2 "
                             r"trained from \(largest \|W\| 1e\+300\), and the loss at them was "
                             r"already NaN or infinite in float64; the callback is the cause, "
                             r"not the learning rate") as info:
        model.fit(x, y, epochs=4, callbacks=[Huge()], **FULL_SGD)
    assert "may be too large" not in str(info.value)
    assert model.epochs_trained_ == 2 and model.history_.epoch == [0, 1]
    assert mlp.optimizers.step_count(model.optimizer_state_) == 2
    _weights_equal(model.get_weights(), kept[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_schedule_giving_nan_at_a_step_not_sampled_is_named_at_the_divergence(
        backend, monkeypatch):
    """A schedule for one step at a time is sampled before training; NaN at a step between
    the samples diverges, and the message names the schedule and the step rather than
    "the learning rate (up to nan) may be too large"."""
    if backend.compiles:
        pytest.skip("JAX traces schedules: a Python if on the step is refused up front")
    monkeypatch.setattr(mlp.training, "SCHEDULE_SAMPLES", 8)

    def nan_at_37(step):
        return float("nan") if int(step) == 37 else 0.01

    x, y = _classification(n=N)
    model = _model(backend)
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r": schedule nan_at_37 returned the learning rate nan at step 37 "
                             r"\(epoch 12\); the schedule is the cause") as info:
        model.fit(x, y, epochs=20, optimizer=optimizers.SGD(nan_at_37), batch_size=10)
    assert "may be too large" not in str(info.value) and model.epochs_trained_ == 12


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_divergence_quotes_the_learning_rate_with_its_scale(backend):
    """The rate that diverged is the optimizer's times the scale in its state (a state
    loaded or set by hand): the message gives both, and their product."""
    model, x, y = _diverging(backend)
    model.fit(x, y, epochs=1, optimizer="sgd", learning_rate=0.001, batch_size=None)
    model.optimizer_state_ = mlp.optimizers.with_learning_rate_scale(model.optimizer_state_,
                                                                     1e30)
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r"\(the learning rate 0\.001 times the learning-rate scale 1e\+30 "
                             r"of the optimizer's state \(1e\+27\) may be too large\)"):
        model.fit(x, y, epochs=5, batch_size=None)


def test_choose_optimizer_takes_a_name_as_fit_does():
    """`training.choose_optimizer` given a name gives the optimizer of that name (with the
    learning rate), as `fit` would build it: the model's state continues where it equals
    the model's optimizer."""
    from mlp import training

    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    chosen, continued = training.choose_optimizer(model, "sgd", 0.05, False)
    assert chosen == optimizers.SGD(0.05) and continued is False
    x = np.random.default_rng(0).normal(size=(8, 3))
    model.fit(x, x[:, :2], epochs=1, optimizer="sgd", learning_rate=0.05)
    assert training.choose_optimizer(model, "sgd", 0.05, False) == (optimizers.SGD(0.05), True)
    assert training.choose_optimizer(model, "adam", None, False)[1] is False


# ------------------------------------------- training rows padded to the ladder (JAX)
PADDED_FITS = {
    "adam-batch-with-rest": dict(batch_size=8, optimizer="adam"),
    "sgd-momentum-clip-unshuffled": dict(batch_size=7, optimizer=optimizers.SGD(0.1, 0.9),
                                         clip_norm=0.5, shuffle=False),
    "full-batch-alpha": dict(optimizer="adam", alpha=1e-3),
    "sample-and-class-weight": dict(batch_size=8, optimizer="rmsprop",
                                    sample_weight="uniform", class_weight="balanced"),
    "validation-split-early-stopping": dict(batch_size=9, optimizer="adam",
                                            validation_split=0.25, early_stopping=True,
                                            patience=2),
}


def _fit_padded_or_not(backend, monkeypatch, padded, kw, n=45, epochs=6):
    from mlp import training

    x, y = _classification(n=n, seed=3)
    kw = dict(kw)
    if kw.get("sample_weight") == "uniform":
        kw["sample_weight"] = np.random.default_rng(4).uniform(0.0, 2.0, size=n)
    with monkeypatch.context() as patch:
        if not padded:
            patch.setattr(training, "pads_training_rows", lambda model: False)
        model = mlp.MLP([5, 6, 3], loss="cross_entropy", dtype="float64", backend=backend,
                        seed=2)
        history = model.fit(x, y, epochs=epochs, **kw)
    return model, history.history


@pytest.mark.parametrize("case", list(PADDED_FITS))
def test_padded_training_rows_give_the_unpadded_results(backend, monkeypatch, case):
    """On JAX the rows pad to `mlp.buckets.training_rows` with rows of weight 0 and each
    epoch runs only its own batches: the weights and every log equal those of the rows as
    they are to 1e-12 in float64 (elsewhere nothing pads, and they are the same run)."""
    kw = PADDED_FITS[case]
    model, logs = _fit_padded_or_not(backend, monkeypatch, True, kw)
    ref, ref_logs = _fit_padded_or_not(backend, monkeypatch, False, kw)
    _weights_equal(model.get_weights(), ref.get_weights(), atol=1e-12)
    assert logs.keys() == ref_logs.keys()
    for name in logs:
        np.testing.assert_allclose(logs[name], ref_logs[name], rtol=1e-12, atol=1e-14)
    assert model.optimizer_state_ is not None


def test_padded_rows_with_full_batches_only_train_to_the_last_bits(backend, monkeypatch):
    """Where the batch size divides the data, every step sees the same rows with weights
    of 1 instead of none (the same products, sums and delta): on JAX the padded run is
    another program (its epoch a loop of computed length), which XLA may fuse otherwise,
    so the weights agree to a few units in the last place; elsewhere nothing pads and
    they are equal bit for bit."""
    kw = dict(batch_size=9, optimizer="adam")
    model, _ = _fit_padded_or_not(backend, monkeypatch, True, kw)
    ref, _ = _fit_padded_or_not(backend, monkeypatch, False, kw)
    for (W, b), (W0, b0) in zip(model.get_weights(), ref.get_weights(), strict=True):
        for a, a0 in ((W, W0), (b, b0)):
            tolerance = 4 * np.finfo(np.float64).eps * np.max(np.abs(a0))
            np.testing.assert_allclose(a, a0, rtol=0, atol=tolerance if backend.compiles else 0)


def test_a_counted_epoch_runs_only_its_own_batches(backend):
    """The engine's epoch over `mlp.buckets.batch_plan`'s slots (a loop whose length comes
    with the data) equals the epoch over the batches as they are, on every backend; the
    slots beyond the epoch's batches move no optimizer state (Adam's step count)."""
    from mlp import buckets
    from mlp.engine.pipeline import batch_indices, make_run
    from mlp.tree import tree_leaves

    x, y = _classification(n=21, seed=5)
    model = mlp.MLP([5, 4, 3], loss="cross_entropy", dtype="float64", backend=backend, seed=0)
    to = backend.asarray
    targets = to(np.eye(3)[y])
    opt = optimizers.Adam(0.05)
    batches, last = batch_indices(np.random.default_rng(0), 21, 4, 3, True)
    plain = make_run(backend, model.spec, opt)
    counted = make_run(backend, model.spec, opt, counted=True)
    with backend.precision(model.dtype):
        state = opt.init(model.params)
        p0, s0, losses0, _ = plain(model.params, state, to(x), targets, None, to(batches),
                                   to(last), 3)
        size = buckets.training_rows(21)
        indices, counts = buckets.batch_plan(batches, last, size)
        assert indices.shape == (3, 8, 4) and counts[0].tolist() == [4] * 5 + [1, 0, 0]
        xs, ys = (to(buckets.pad_host(np.asarray(a), size)) for a in (x, np.eye(3)[y]))
        w = to(buckets.host_weights(None, 21, size, "float64"))
        p1, s1, losses1, _ = counted(model.params, state, xs, ys, w, to(indices), to(counts), 3)
    for (W0, b0), (W1, b1) in zip(p0, p1, strict=True):
        np.testing.assert_allclose(backend.to_numpy(W1), backend.to_numpy(W0), atol=1e-13)
        np.testing.assert_allclose(backend.to_numpy(b1), backend.to_numpy(b0), atol=1e-13)
    np.testing.assert_allclose(backend.to_numpy(losses1), backend.to_numpy(losses0), rtol=1e-12)
    steps = [int(backend.to_numpy(leaf)) for leaf in tree_leaves(s1)
             if backend.to_numpy(leaf).dtype.kind in "iu"]
    assert steps and set(steps) == {18}  # 3 epochs of 6 batches (8 slots each)
