"""The callback protocol and the loop behind it: one hook, one stop signal, callbacks
that mean what they say, chunked runs that keep every completed chunk on Ctrl-C, and
recovery from divergence to weights with a finite loss - on every backend."""

from __future__ import annotations

import csv
import math
import os
import re
import stat
import threading
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import mlp
from mlp import callbacks as cb_module
from mlp import training
from mlp.callbacks import CallbackList, EpochLogger, ProgressBar, metric_mode
from tests._helpers import WeightLog, count_run_calls, read_only_folder


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


SIZES = [5, 8, 3]
N = 30


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(n, 3)), axis=1).astype(np.int64)
    return x, y


def _model(backend, **kwargs):
    kwargs = dict(dict(loss="cross_entropy", dtype="float64", seed=0), **kwargs)
    return mlp.MLP(SIZES, backend=backend, **kwargs)


def _weights_equal(a, b, atol=0.0):
    for (W, bias), (W0, b0) in zip(a, b, strict=True):
        np.testing.assert_allclose(W, W0, rtol=0, atol=atol)
        np.testing.assert_allclose(bias, b0, rtol=0, atol=atol)


# ------------------------------------------------------------- metric_mode
def test_metric_mode_knows_each_metrics_direction():
    assert [metric_mode(m) for m in ("loss", "val_loss", "mse", "val_mse")] == ["min"] * 4
    assert [metric_mode(m) for m in ("accuracy", "val_accuracy", "r2", "val_r2")] == ["max"] * 4
    with pytest.raises(ValueError, match=r"unknown metric 'val_los'; known metrics: loss, "
                                         r"val_loss, mse, val_mse, accuracy, val_accuracy, r2, "
                                         r"val_r2 \(or pass mode='min' or mode='max'"):
        metric_mode("val_los")


# ----------------------------------------------------------- the protocol
def test_hooks_are_called_in_order_with_params(backend):
    x, y = _data()
    xv, yv = _data(10, seed=8)
    calls = []

    class Spy(mlp.Callback):
        def on_train_begin(self, logs=None):
            calls.append(("begin", self.params["epochs"], self.params["metrics"]))

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(("epoch_begin", epoch, self.model.train_state_.epoch))

        def on_epoch_end(self, epoch, logs):
            calls.append(("epoch_end", epoch, self.model.train_state_.epoch))

        def on_train_end(self, logs=None):
            calls.append(("end", logs["completed"]))

    model = _model(backend)
    model.fit(x, y, epochs=2, learning_rate=0.1, validation_data=(xv, yv), callbacks=[Spy()])
    assert calls == [("begin", 2, ["loss", "accuracy", "val_loss", "val_accuracy"]),
                     ("epoch_begin", 0, 0), ("epoch_end", 0, 1),
                     ("epoch_begin", 1, 1), ("epoch_end", 1, 2), ("end", True)]
    state = model.train_state_
    assert state.epoch == 2 and state.params is model.params
    assert model.optimizer_state_ is state.opt_state


@pytest.mark.parametrize("truthy", [True, np.True_, 1, "stop", [0]],
                         ids=["True", "np.True_", "1", "str", "list"])
def test_any_truthy_return_stops(backend, truthy):
    x, y = _data()
    model = _model(backend)
    history = model.fit(x, y, epochs=10, learning_rate=0.1,
                        callbacks=[lambda epoch, logs: truthy if epoch == 1 else None])
    assert history.epoch == [0, 1] and history.stopped_epoch == 1


@pytest.mark.parametrize("falsy", [None, False, np.False_, 0, ""])
def test_falsy_return_does_not_stop(falsy):
    x, y = _data()
    history = _model("numpy").fit(x, y, epochs=3, learning_rate=0.1,
                                  callbacks=[lambda epoch, logs: falsy])
    assert history.epoch == [0, 1, 2] and history.stopped_epoch is None


def test_every_callback_sees_the_epoch_that_stops():
    seen = []

    class Model:
        stop_training = False

    model = Model()
    cbs = CallbackList([mlp.Callback(), cb_module.FunctionCallback(lambda e, logs: True),
                        cb_module.FunctionCallback(lambda e, logs: seen.append(e))], model=model)
    assert cbs.on_epoch_end(0, {"loss": 1.0}) is True
    assert seen == [0] and model.stop_training is True


def test_a_callback_without_a_model_says_so():
    """``callback.model`` before a fit gave the callback one (`set_model`) is an
    AttributeError naming the callback (not None to fail on later); a `CallbackList`
    without a model takes callbacks, and a `History` ends without one."""
    stopping = mlp.EarlyStopping()
    with pytest.raises(AttributeError, match=r"^EarlyStopping has no model yet: fit gives "
                                             r"it the model it trains \(set_model\)"):
        _ = stopping.model
    assert getattr(stopping, "model", None) is None and not hasattr(stopping, "model")
    cbs = CallbackList([])
    cbs.append(stopping)
    assert not hasattr(stopping, "model") and cbs.callbacks == [stopping]
    model = _model("numpy")
    cbs.set_model(model)
    assert stopping.model is model and cbs.model is model
    history = cb_module.History()
    history.on_train_end({"completed": True})
    assert history.stopped_epoch is None


# ------------------------------------ what a callback declares: no callback special-cased
def test_a_callback_that_runs_last_runs_after_the_others_and_sees_final_logs(backend):
    """``runs_last`` moves a callback of one's own after the others, whatever its place;
    by then every callback's ``on_epoch_logged`` has put what the others added to the
    logs into the histories."""
    x, y = _data()
    order = []

    class Last(mlp.Callback):
        runs_last = True

        def on_epoch_logged(self, epoch, logs):
            order.append(("logged", epoch, logs["mine"]))

        def on_epoch_end(self, epoch, logs):
            order.append(("last", epoch, self.model.history_.history["mine"][-1]))

    def add(epoch, logs):
        order.append(("add", epoch))
        logs["mine"] = 10.0 + epoch

    model = _model(backend)
    history = model.fit(x, y, epochs=2, learning_rate=0.1, callbacks=[Last(), add])
    assert order == [("add", 0), ("logged", 0, 10.0), ("last", 0, 10.0),
                     ("add", 1), ("logged", 1, 11.0), ("last", 1, 11.0)]
    assert history.history["mine"] == [10.0, 11.0]


def test_set_run_tells_each_callback_its_siblings_and_the_fits_data(tmp_path):
    x, y = _data()
    runs = []

    class Sees(mlp.Callback):
        def set_run(self, run):
            runs.append(run)

    sees, backup = Sees(), mlp.BackupAndRestore(tmp_path / "backup")
    model = _model("numpy")
    model.fit(x, y, epochs=1, learning_rate=0.1, validation_split=0.2, callbacks=[backup, sees],
              verbose=2)
    (run,) = runs
    history, mine, logger, last = run.callbacks
    assert isinstance(history, mlp.History) and isinstance(logger, EpochLogger)
    assert mine is sees and last is backup and backup.others == [history, sees, logger]
    assert run.data is backup.fit_data and run.data.n == 24 and run.data.val[0].shape == (6, 5)
    assert os.listdir(tmp_path) == []  # the completed fit removed its backup folder


def test_callbacks_begun_let_go_when_a_later_one_ends_the_fit_before_it_began():
    """``on_train_abandoned``, not ``on_train_end``, for each callback whose
    ``on_train_begin`` ran; the error that ended the fit is the one raised, even where
    an ``on_train_abandoned`` raises too."""
    x, y = _data()
    calls = []

    class Begins(mlp.Callback):
        def __init__(self, name, fail=None):
            self.name, self.fail = name, fail

        def on_train_begin(self, logs=None):
            calls.append(("begin", self.name))
            if self.fail == "begin":
                raise RuntimeError("no start")

        def on_train_abandoned(self, logs=None):
            calls.append(("abandoned", self.name))
            if self.fail == "abandoned":
                raise OSError("cannot let go")

        def on_train_end(self, logs=None):
            calls.append(("end", self.name))

    model = _model("numpy")
    start = model.get_weights()
    with pytest.raises(RuntimeError, match="no start"):
        model.fit(x, y, epochs=1, callbacks=[Begins("a", "abandoned"), Begins("b"),
                                             Begins("c", "begin"), Begins("d")])
    assert calls == [("begin", "a"), ("begin", "b"), ("begin", "c"),
                     ("abandoned", "a"), ("abandoned", "b")]
    assert model.epochs_trained_ == 0
    _weights_equal(model.get_weights(), start)


def test_a_callback_that_resumes_a_run_gives_the_validation_split_its_seed():
    """`Callback.resumable_seed`: the fit draws its validation split with the seed a
    callback says it resumes (the model's own where it says None)."""
    x, y = _data()
    seen = {}

    class Resumes(mlp.Callback):
        def __init__(self, seed):
            self.seed = seed

        def resumable_seed(self, model):
            return self.seed

        def set_run(self, run):
            seen[self.seed] = model_ref.backend.to_numpy(run.data.val[0])

    for seed in (None, 123):
        model_ref = _model("numpy")
        model_ref.fit(x, y, epochs=1, validation_split=0.2, callbacks=[Resumes(seed)])

    def split(seed):
        data = training.training_data(_model("numpy"), x, y, None, 0.2, split_seed=seed)
        return np.asarray(data.val[0])

    np.testing.assert_array_equal(seen[None], split(0))
    np.testing.assert_array_equal(seen[123], split(123))
    assert not np.array_equal(split(0), split(123))


def test_logs_a_callback_damages_once_logged_are_refused():
    x, y = _data()

    class Pops(mlp.Callback):
        def on_epoch_logged(self, epoch, logs):
            logs.pop("accuracy")

    model = _model("numpy")
    with pytest.raises(ValueError, match=r"callback Pops \(on_epoch_logged\) removed "
                                         r"'accuracy' from the epoch's logs"):
        model.fit(x, y, epochs=3, callbacks=[Pops()])
    assert model.epochs_trained_ == 1


def test_weights_a_callback_sets_are_trained_from(backend):
    """After epoch 0 a callback sets W*: epoch 1 must train from W*, not from the
    weights the loop had (full batch, plain SGD: the same as one epoch from W*)."""
    x, y = _data()
    target = _model("numpy", seed=7).get_weights()

    def reset(epoch, logs):
        if epoch == 0:
            model.set_weights(target)

    model = _model(backend)
    history = model.fit(x, y, epochs=2, learning_rate=0.1, callbacks=[reset], optimizer="sgd",
                        batch_size=None)
    reference = _model(backend)
    reference.set_weights(target)
    ref_history = reference.fit(x, y, epochs=1, learning_rate=0.1, optimizer="sgd",
                                batch_size=None)
    _weights_equal(model.get_weights(), reference.get_weights(), atol=1e-12)
    assert history.history["loss"][1] == pytest.approx(ref_history.history["loss"][0],
                                                       rel=1e-12)


@pytest.mark.parametrize("one", [lambda e, logs: None, mlp.EarlyStopping()],
                         ids=["function", "callback"])
def test_a_callback_not_in_a_list_is_refused(one):
    x, y = _data()
    model = _model("numpy")
    start = model.get_weights()
    with pytest.raises(TypeError, match=r"callbacks must be a list of Callback objects or "
                                        r"functions fn\(epoch, logs\), got one .*put it in a "
                                        r"list: callbacks=\[\.\.\.\]"):
        model.fit(x, y, epochs=2, callbacks=one)
    _weights_equal(model.get_weights(), start)
    assert model.history_ is None


def test_verbose_callbacks_are_callbacks(capsys):
    x, y = _data()
    model = _model("numpy")
    model.fit(x, y, epochs=2, learning_rate=0.1, callbacks=[EpochLogger()])
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    model.fit(x, y, epochs=2, learning_rate=0.1, callbacks=[ProgressBar()])
    assert "2/2" in capsys.readouterr().err


# ---------------------------------------------------------- early stopping
def _overfitting_problem():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    xv, yv = rng.normal(size=(30, 5)), rng.integers(0, 3, 30)
    return x, y, xv, yv


def test_early_stopping_on_accuracy_keeps_the_most_accurate_epoch(backend):
    x, y, xv, yv = _overfitting_problem()
    model = mlp.MLP([5, 32, 3], loss="cross_entropy", backend=backend, dtype="float64", seed=0)
    log = WeightLog()
    stopper = mlp.EarlyStopping("val_accuracy", patience=5)
    history = model.fit(x, y, epochs=60, optimizer="adam", learning_rate=0.02,
                        validation_data=(xv, yv), callbacks=[log, stopper])
    acc = history.history["val_accuracy"]
    best = int(np.argmax(acc))  # the first of the most accurate epochs
    assert max(acc) > min(acc)
    assert stopper.best_epoch == best and stopper.best == acc[best]
    assert history.stopped_epoch == best + 5 and len(acc) == best + 6
    _weights_equal(model.get_weights(), log.weights[best])
    assert model.evaluate(xv, yv)["accuracy"] == pytest.approx(max(acc), abs=1e-12)


def test_early_stopping_with_mode_watches_any_name():
    stopper = mlp.EarlyStopping("score", mode="max", patience=1)

    class Model:
        params = "start"

    stopper.set_model(Model())
    stopper.on_train_begin()
    assert [stopper.on_epoch_end(e, {"score": v}) for e, v in enumerate([1, 2, 2])] == [
        False, False, True]
    assert stopper.best == 2 and stopper.best_epoch == 1


def test_early_stopping_typo_fails_at_once():
    with pytest.raises(ValueError, match=r"unknown metric 'val_los'; known metrics: loss"):
        mlp.EarlyStopping("val_los")


def test_early_stopping_on_a_metric_not_logged_fails_before_training(backend):
    x, y = _data()
    model = _model(backend)
    start = model.get_weights()
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_accuracy', which this "
                                         r"fit does not log; it logs: loss, accuracy \(validation "
                                         r"metrics "
                                         r"need validation_data or validation_split\)"):
        model.fit(x, y, epochs=3, learning_rate=0.1,
                  callbacks=[mlp.EarlyStopping("val_accuracy")])
    _weights_equal(model.get_weights(), start)
    assert model.history_ is None and getattr(model, "train_state_", None) is None
    # a regression model logs val_r2, not val_accuracy
    reg = mlp.MLP([5, 4, 1], backend=backend, seed=0)
    with pytest.raises(ValueError, match=r"it logs: loss, r2, mse, val_loss, val_r2, val_mse$"):
        reg.fit(x, y.astype(float), epochs=2, validation_split=0.2,
                callbacks=[mlp.EarlyStopping("val_accuracy")])


def test_early_stopping_checks_the_logs_when_it_cannot_know_them():
    stopper = mlp.EarlyStopping("val_r2")
    stopper.on_train_begin()
    with pytest.raises(ValueError, match=r"monitors 'val_r2', .* it logs: loss, val_loss"):
        stopper.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.0})


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(patience=0), ValueError, r"patience must be an integer >= 1, got 0"),
    (dict(patience=True), TypeError, r"patience must be an integer >= 1, got True"),
    (dict(patience=2.0), TypeError, r"patience must be an integer >= 1, got 2\.0"),
    (dict(min_delta=-0.1), ValueError, r"min_delta must be a finite number >= 0, got -0\.1"),
    (dict(min_delta=float("nan")), ValueError, r"min_delta must be .* got nan"),
    (dict(restore_best_weights="yes"), TypeError,
     r"restore_best_weights must be True or False, got 'yes'"),
    (dict(mode="up"), ValueError, r"mode must be one of 'auto', 'min', 'max', got 'up'"),
    (dict(monitor=3), TypeError, r"monitor must be None or a metric name"),
])
def test_early_stopping_parameters_are_checked(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        mlp.EarlyStopping(**kwargs)


def test_early_stopping_takes_numpy_scalars():
    stopper = mlp.EarlyStopping(patience=np.int64(3), min_delta=np.float32(0.5),
                                restore_best_weights=np.True_)
    assert (stopper.patience, stopper.min_delta, stopper.restore_best_weights) == (3, 0.5, True)
    assert type(stopper.patience) is int and type(stopper.min_delta) is float


# ------------------------------------------------------------ fit's params
def test_fit_takes_numpy_scalars_everywhere(backend):
    x, y = _data()
    model = _model(backend)
    history = model.fit(x, y, epochs=np.int64(6), batch_size=np.int32(8),
                        learning_rate=np.float32(0.1), alpha=np.float32(0.0),
                        clip_norm=np.float64(5.0), shuffle=np.True_,
                        early_stopping=np.True_, patience=np.int64(3),
                        min_delta=np.float32(5.0), verbose=np.int64(0))
    assert history.stopped_epoch == 3 and history.epoch == [0, 1, 2, 3]  # nothing improves by 5


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(early_stopping="no"), TypeError, r"early_stopping must be True or False, got 'no'"),
    (dict(early_stopping=1), TypeError, r"early_stopping must be True or False, got 1"),
    (dict(shuffle=0), TypeError, r"shuffle must be True or False, got 0"),
    (dict(patience=np.int64(0)), ValueError, r"patience must be an integer >= 1, got 0"),
    (dict(min_delta=-1), ValueError, r"min_delta must be a finite number >= 0, got -1"),
    (dict(verbose=True), TypeError, r"verbose must be one of 0, 1, 2, got True"),
    (dict(validation_data=[1, 2, 3]), ValueError,
     r"validation_data must be a pair \(x_val, y_val\), got 3 items"),
    (dict(validation_data="val"), TypeError,
     r"validation_data must be None or a pair \(x_val, y_val\), got 'val'"),
])
def test_fit_parameters_use_one_message_form(kwargs, exc, match):
    x, y = _data()
    model = _model("numpy")
    start = model.get_weights()
    with pytest.raises(exc, match=match):
        model.fit(x, y, epochs=2, **kwargs)
    _weights_equal(model.get_weights(), start)


# ------------------------------------------------------------ chunked runs
def _plan(planner, epochs, timings):
    """The call lengths a planner makes for ``epochs``, given seconds per epoch."""
    sizes, remaining, timings = [], epochs, iter(timings)
    while remaining:
        n = planner.next(remaining)
        remaining -= n
        sizes.append(n)
        planner.measured(n, next(timings) * n, remaining)
    return sizes


def test_chunk_planner_sizes():
    first_compiles = [5.0] + [0.01] * 1000  # the first call compiles; then 10 ms an epoch
    # at most 2**6 epochs of 10 ms a call: 998 = 16 x 62 + 6 left over one by one
    expected = [1, 1] + [62] * 16 + [1] * 6
    assert _plan(training.ChunkPlanner(10_000, seconds=1.0), 1000, first_compiles) == expected
    # half a second left after two epochs: one call
    assert _plan(training.ChunkPlanner(10_000, seconds=1.0), 100, [3.0] + [0.005] * 99) == [
        1, 1, 98]
    # capped by the memory for row indices, and by MAX_CHUNK
    assert _plan(training.ChunkPlanner(16, seconds=1.0), 50, [1e-6] * 50) == (
        [1, 1] + [16] * 3)
    huge = _plan(training.ChunkPlanner(10**9, seconds=1.0), 10**5, [1e-7] * 10**5)
    chunks = [n for n in huge[2:] if n > 1]
    assert len(set(chunks)) == 1 and chunks[0] <= training.MAX_CHUNK  # one length
    # fewer epochs left over than chunks (a long run is not a long tail of small calls)
    assert huge.count(1) - 2 < len(chunks) == math.ceil((10**5 - 2) / training.MAX_CHUNK)
    # tiny epochs timed with the call's overhead (0.4 ms for the second call): chunks of
    # at most 2**11 epochs, 11 of 1818 covering the 19998 epochs left exactly
    assert _plan(training.ChunkPlanner(10**9, seconds=1.0), 20000,
                 [3.0, 4e-4] + [4.5e-6] * 20000) == [1, 1] + [1818] * 11


def test_a_run_known_to_be_short_runs_in_one_call():
    """A run whose time bound (`run_time_bound`) is within the seconds of a call needs no
    measuring: one call (the same on every fit, so nothing new to compile)."""
    # the seed notebook's run: 1000 full-batch epochs of 100 rows through 3 -> 4 -> 1
    bound = training.run_time_bound(1000, 100, None, [3, 4, 1])
    assert bound == pytest.approx(1000 * training.STEP_SECONDS_BOUND
                                  + 6 * 1000 * 100 * (3 * 4 + 4 * 1) / training.FLOPS_BOUND)
    assert bound < training.CHUNK_SECONDS
    assert _plan(training.ChunkPlanner(10_000, seconds=1.0, bound=bound), 1000,
                 [5.0] + [0.01] * 999) == [1000]
    # mini-batches count their steps: 3 x 10 steps an epoch, 300 epochs, 0.3 s
    assert training.run_time_bound(300, 100, 32, [3, 4, 1]) == pytest.approx(
        300 * 4 * training.STEP_SECONDS_BOUND + 6 * 300 * 100 * 16 / training.FLOPS_BOUND)
    # a longer bound, or a run longer than a call may be: measured as before
    assert _plan(training.ChunkPlanner(10_000, seconds=1.0, bound=1.5), 100,
                 [3.0] + [0.005] * 99) == [1, 1, 98]
    assert _plan(training.ChunkPlanner(16, seconds=1.0, bound=0.1), 50, [1e-6] * 50) == (
        [1, 1] + [16] * 3)
    # something needs every epoch: one at a time, however short
    assert _plan(training.ChunkPlanner(1, bound=0.0), 3, [1.0] * 3) == [1] * 3


def test_equal_chunks_make_the_fewest_calls():
    """Among chunk lengths from half the longest to the longest, the plan's calls (chunks
    plus the epochs left over) are the fewest, and the longest such chunk is chosen."""
    for remaining, longest in [(19998, 2048), (29998, 1024), (998, 64), (101, 2), (7, 1),
                               (65537, 4096), (12345, 1000)]:
        chunk = training._equal_chunks(remaining, longest)
        calls = remaining // chunk + remaining % chunk
        candidates = range((longest + 1) // 2, longest + 1)
        assert chunk <= longest
        assert calls == min(remaining // c + remaining % c for c in candidates)
        assert chunk == max(c for c in candidates if remaining // c + remaining % c == calls)
    assert _plan(training.ChunkPlanner(1), 5, [1.0] * 5) == [1] * 5


def test_chunk_planner_remembers_its_choice():
    """The same fit again makes the same calls (nothing new to compile on JAX),
    even when the timings differ."""
    key = ("test", object())
    first = _plan(training.ChunkPlanner(10_000, seconds=1.0, key=key), 300, [0.01] * 300)
    again = _plan(training.ChunkPlanner(10_000, seconds=1.0, key=key), 300, [0.0001] * 300)
    assert first == again == [1, 1] + [59] * 5 + [1] * 3


class _FixedChunks:
    """A planner with a fixed plan of chunk lengths."""

    def __init__(self, max_chunk, seconds=None, key=None, bound=None):
        self.plan = iter([1, 1] + [4] * 100) if max_chunk > 1 else None

    def next(self, remaining):
        return 1 if self.plan is None else min(next(self.plan), remaining)

    def measured(self, n_epochs, seconds, remaining):
        pass


@pytest.mark.parametrize("batch_size", [None, 8])
def test_chunks_train_like_single_epochs(backend, monkeypatch, batch_size):
    """Chunking changes neither the batches nor the weights."""
    monkeypatch.setattr(training, "ChunkPlanner", _FixedChunks)
    x, y = _data()
    chunked = _model(backend)
    history = chunked.fit(x, y, epochs=9, batch_size=batch_size, learning_rate=0.1)
    single = _model(backend)
    ref = single.fit(x, y, epochs=9, batch_size=batch_size, learning_rate=0.1,
                     callbacks=[lambda e, logs: None])
    _weights_equal(chunked.get_weights(), single.get_weights(), atol=1e-12)
    # the chunks' epochs reach both histories at once, with every metric, in the same order
    for logged, expected in ((history, ref), (chunked.history_, single.history_)):
        assert list(logged.history) == list(expected.history) == ["loss", "accuracy"]
        for name, values in expected.history.items():
            np.testing.assert_allclose(logged.history[name], values, rtol=1e-12)
        assert logged.epoch == list(range(9))


@pytest.mark.parametrize("batch_size", [None, 8])
def test_ctrl_c_between_compiled_calls_keeps_every_completed_chunk(backend, monkeypatch,
                                                                  batch_size):
    """Ctrl-C during the fourth call (chunks 1, 1, 4, 4...): the six epochs of the
    first three calls are kept, as if the fit had asked for six."""
    monkeypatch.setattr(training, "ChunkPlanner", _FixedChunks)
    real = training.run_function
    calls = []

    def interrupted_on_the_fourth_call(*args):
        run = real(*args)

        def run_or_interrupt(*run_args):
            calls.append(run_args[-1])
            if len(calls) == 4:
                raise KeyboardInterrupt
            return run(*run_args)

        return run_or_interrupt

    monkeypatch.setattr(training, "run_function", interrupted_on_the_fourth_call)
    x, y = _data()
    model = _model(backend)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=20, batch_size=batch_size, learning_rate=0.1)
    assert calls == [1, 1, 4, 4]
    monkeypatch.undo()
    reference = _model(backend)
    ref = reference.fit(x, y, epochs=6, batch_size=batch_size, learning_rate=0.1)
    _weights_equal(model.get_weights(), reference.get_weights(), atol=1e-12)
    assert model.history_.epoch == list(range(6))
    np.testing.assert_allclose(model.history_.history["loss"], ref.history["loss"], rtol=1e-12)
    assert model.train_state_.epoch == 6


# -------------------------------------------- callbacks that take runs of epochs at once
class _TakesRuns(mlp.Callback):
    """Declares ``epochs_at_once``: records each run of epochs and its logs, and the
    epochs a divergence takes back; stops after the run holding ``stop_at``."""

    epochs_at_once = True

    def __init__(self, stop_at=None):
        self.stop_at, self.runs, self.logs, self.events, self.taken_back = stop_at, [], {}, [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("begin", epoch))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("end", epoch))

    def on_epochs_end(self, epochs, logs):
        self.runs.append(list(epochs))
        for name, values in logs.items():
            self.logs.setdefault(name, []).extend(values)
        return self.stop_at in epochs

    def on_epochs_taken_back(self, epoch, logs=None):
        self.taken_back.append(epoch)


class _OneEpochAtATime(mlp.Callback):
    """Declares nothing: records each epoch as it begins and ends."""

    def __init__(self):
        self.events = []

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("begin", epoch))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("end", epoch, logs["loss"]))


@pytest.mark.parametrize("batch_size", [None, 8])
def test_a_callback_that_takes_runs_of_epochs_keeps_the_fit_in_runs(backend, monkeypatch,
                                                                    batch_size):
    """A callback declaring ``epochs_at_once`` gets every epoch's logs, in order, one run
    per compiled call: the fit keeps its runs of several epochs (1, 1, 4, 3 here), trains
    the weights epoch by epoch training gives, and calls no per-epoch hook."""
    monkeypatch.setattr(training, "ChunkPlanner", _FixedChunks)
    calls = count_run_calls(monkeypatch)
    x, y = _data()
    model, runs, own = _model(backend), _TakesRuns(), mlp.History()
    history = model.fit(x, y, epochs=9, batch_size=batch_size, learning_rate=0.1,
                        callbacks=[runs, own])
    assert calls == [1, 1, 4, 3]
    assert runs.runs == [[0], [1], [2, 3, 4, 5], [6, 7, 8]] and runs.events == []
    assert list(runs.logs) == ["loss", "accuracy"]
    for logged in (history, own, model.history_):
        assert logged.epoch == list(range(9)) and logged.history == runs.logs
    single = _model(backend)
    ref = single.fit(x, y, epochs=9, batch_size=batch_size, learning_rate=0.1,
                     callbacks=[_OneEpochAtATime()])
    _weights_equal(model.get_weights(), single.get_weights(), atol=1e-12)
    for name, values in ref.history.items():
        np.testing.assert_allclose(runs.logs[name], values, rtol=1e-12)


def test_a_callback_that_takes_runs_may_stop_after_a_run(monkeypatch):
    """A truthy return from ``on_epochs_end`` stops the fit after that run (its epochs
    kept); the fit's History records where it stopped."""
    monkeypatch.setattr(training, "ChunkPlanner", _FixedChunks)
    calls = count_run_calls(monkeypatch)
    x, y = _data()
    model, runs = _model("numpy"), _TakesRuns(stop_at=3)
    history = model.fit(x, y, epochs=20, learning_rate=0.1, callbacks=[runs])
    assert calls == [1, 1, 4] and runs.runs == [[0], [1], [2, 3, 4, 5]]
    assert model.epochs_trained_ == 6 and history.epoch == list(range(6))
    assert history.stopped_epoch == 5


def test_a_callback_declaring_runs_without_on_epochs_end_sees_each_epoch_end(monkeypatch):
    """The default ``on_epochs_end`` gives each epoch of the run to ``on_epoch_end``, in
    order, with its logs; the fit keeps its runs, and a truthy return stops after the run."""
    monkeypatch.setattr(training, "ChunkPlanner", _FixedChunks)
    calls = count_run_calls(monkeypatch)

    class Declares(mlp.Callback):
        epochs_at_once = True

        def __init__(self):
            self.ends = []

        def on_epoch_end(self, epoch, logs):
            self.ends.append((epoch, dict(logs)))
            return epoch == 2

    x, y = _data()
    model, declares = _model("numpy"), Declares()
    history = model.fit(x, y, epochs=9, learning_rate=0.1, callbacks=[declares])
    assert calls == [1, 1, 4]
    assert [e for e, _ in declares.ends] == list(range(6)) == history.epoch
    for i, (_, logs) in enumerate(declares.ends):
        assert logs == {name: values[i] for name, values in history.history.items()}


@pytest.mark.parametrize("siblings", [0, 1], ids=["alone", "beside-one-that-takes-runs"])
def test_a_callback_that_does_not_take_runs_sees_each_epoch_begin_and_end(monkeypatch,
                                                                          siblings):
    """A callback that does not declare ``epochs_at_once`` makes every call one epoch and
    sees each epoch begin and end, in order; a sibling that takes runs is then given each
    epoch as well (``on_epoch_end``, never ``on_epochs_end``)."""
    monkeypatch.setattr(training, "ChunkPlanner", _FixedChunks)
    calls = count_run_calls(monkeypatch)
    x, y = _data()
    model, plain, runs = _model("numpy"), _OneEpochAtATime(), _TakesRuns()
    history = model.fit(x, y, epochs=5, learning_rate=0.1,
                        callbacks=[runs, plain][1 - siblings:])
    assert calls == [1] * 5
    assert plain.events == [event for e, loss in enumerate(history.history["loss"])
                            for event in (("begin", e), ("end", e, loss))]
    if siblings:
        assert runs.runs == []
        assert runs.events == [(kind, e) for e in range(5) for kind in ("begin", "end")]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_divergence_takes_back_a_run_from_the_callbacks_that_took_it(backend, monkeypatch):
    """Runs of 1, 1, 4 epochs at ``learning_rate=30``: the run of four diverges, its
    replay keeps epoch 2 (handed to the callbacks as a run of one) and diverges in epoch 3,
    whose start weights' loss overflows; epoch 2 is taken back from every callback through
    ``on_epochs_taken_back`` (each History drops it), as in a fit of one epoch per call."""
    monkeypatch.setattr(training, "ChunkPlanner", _FixedChunks)
    model, x, y = _diverging(backend)
    runs, own = _TakesRuns(), mlp.History()
    fit = dict(epochs=50, learning_rate=30.0, batch_size=None, optimizer="sgd")
    with pytest.raises(mlp.TrainingDivergedError, match="the loss became (inf|nan) in "
                                                        "epoch 3") as info:
        model.fit(x, y, **fit, callbacks=[runs, own])
    assert runs.runs == [[0], [1], [2]] and runs.taken_back == [2]
    assert model.epochs_trained_ == 2
    for history in (model.history_, own, info.value.history):
        assert history.epoch == [0, 1] and all(len(v) == 2 for v in history.history.values())
    assert runs.logs["loss"][:2] == model.history_.history["loss"]
    other, _, _ = _diverging(backend)
    with pytest.raises(mlp.TrainingDivergedError):
        other.fit(x, y, **fit, callbacks=[_OneEpochAtATime()])
    _weights_equal(model.get_weights(), other.get_weights())
    assert other.history_.history == model.history_.history


# ------------------------------------------------------------- divergence
def _regression(n=20, scale=1.0):
    rng = np.random.default_rng(1)
    x = scale * rng.normal(size=(n, 5))
    y = 100 * scale * rng.normal(size=(n, 1))
    return x, y


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("batch_size", [None, 4])
@pytest.mark.parametrize("with_callback", [False, True])
def test_restored_weights_have_a_finite_loss_and_train_on(backend, batch_size, with_callback):
    """Learning rate 1e6: the weights grow to ~1e24 while still finite, and their loss
    overflows; the restore takes the last weights whose loss is finite, from which a
    gentle refit trains normally."""
    x, y = _regression()
    model = mlp.MLP([5, 8, 1], activation="identity", backend=backend, seed=0)
    callbacks = [lambda e, logs: None] if with_callback else None
    with pytest.raises(mlp.TrainingDivergedError, match=r"learning rate 1000000\.0 may be too "
                                                        r"large.*finite loss") as info:
        model.fit(x, y, epochs=100, learning_rate=1e6, batch_size=batch_size,
                  callbacks=callbacks, optimizer="sgd")
    assert np.isfinite(model.loss(x, y))
    assert np.all(np.isfinite(model.backend.to_numpy(model.predict(x))))
    assert all(np.isfinite(info.value.history.history.get("loss", [])))
    # A gentle refit trains on, or, when the restored weights sit at the edge of float32
    # (a loss near 1e30), says that they are the cause - not the learning rate.
    try:
        history = model.fit(x, y, epochs=3, learning_rate=1e-6, batch_size=batch_size,
                            optimizer="sgd")
    except mlp.TrainingDivergedError as again:
        assert "loss was already" in str(again) and "not the learning rate" in str(again)
        assert "may be too large" not in str(again)
        assert np.isfinite(model.loss(x, y))
    else:
        assert all(np.isfinite(history.history["loss"]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_data_overflowing_float32_is_blamed_not_the_learning_rate(backend):
    x, y = _regression(scale=1e20)
    model = mlp.MLP([5, 8, 1], backend=backend, seed=0)
    start = model.get_weights()
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r"at the weights training started from, before any step, the "
                             r"loss was already inf: the data's scale \(largest \|x\| .*e\+20, "
                             r"largest \|y\| .*e\+22\) or those weights \(largest \|W\| .*\) "
                             r"overflow float32, not the learning rate.*dtype='float64'"):
        model.fit(x, y, epochs=5, learning_rate=1e-6)
    _weights_equal(model.get_weights(), start)
    # in float64 the same data trains
    wide = mlp.MLP([5, 8, 1], backend=backend, seed=0, dtype="float64")
    assert all(np.isfinite(wide.fit(x, y, epochs=2, learning_rate=1e-50).history["loss"]))


# ----------------------------------------------------------- CSV logs keep their rows
def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _untouched(model, start):
    """Nothing trained: the refusal came before the first epoch."""
    assert model.epochs_trained_ == 0 and model.history_ is None
    _weights_equal(model.get_weights(), start)


def test_csv_logger_appends_to_another_runs_log(backend, tmp_path):
    """Two runs of fresh models into one log: the second keeps the first's rows (the
    same epoch numbers, one after the other), and a later fit with validation adds its
    columns to the header."""
    x, y = _data()
    path = tmp_path / "log.csv"
    _model(backend).fit(x, y, epochs=2, callbacks=[mlp.CSVLogger(path)])
    first = _rows(path)
    model = _model(backend, seed=1)
    model.fit(x, y, epochs=2, callbacks=[mlp.CSVLogger(path)])
    rows = _rows(path)
    assert rows[:3] == first and [r[0] for r in rows[1:]] == ["0", "1", "0", "1"]
    assert [float(r[1]) for r in rows[3:]] == model.history_.history["loss"]
    model.fit(x, y, epochs=1, validation_data=_data(10, seed=8), callbacks=[mlp.CSVLogger(path)])
    before, rows = rows, _rows(path)
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [r[:3] for r in rows[1:5]] == before[1:]  # the rows before, each kept
    assert all(r[3:] == ["", ""] for r in rows[1:5]) and rows[5][0] == "2"
    assert [float(v) for v in rows[5][1:]] == [model.history_.history[k][-1] for k in rows[0][1:]]


@pytest.mark.parametrize("text, why", [
    ("name,age\nbob,3\n", r"its first line 'name,age' is not a log's header"),
    ("epoch,loss,r2,mse\n0,1.5,0.1,2.0\n", r"its columns are epoch, loss, r2, mse, and this "
                                          r"fit logs epoch, loss, accuracy"),
    ("epoch,loss,accuracy\n0,1.5,0.5\nzero,1.2,0.5\n", r"its line 3 is not a row"),
    ("epoch,loss,accuracy\n0,1.5\n", r"its line 2 is not a row"),
    ("\x00\xff\xfe binary", r"it cannot be read as text"),
])
def test_csv_logger_refuses_a_file_that_is_not_its_log_before_training(tmp_path, text, why):
    x, y = _data()
    path = tmp_path / "data.csv"
    path.write_bytes(text.encode("latin-1"))
    model = _model("numpy")
    start = model.get_weights()
    with pytest.raises(ValueError, match=rf"CSVLogger: '.*data\.csv' is not a log this fit "
                                         rf"can append to: {why}.*append=False"):
        model.fit(x, y, epochs=2, callbacks=[mlp.CSVLogger(path)])
    _untouched(model, start)
    assert path.read_bytes() == text.encode("latin-1")
    model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(path, append=False)])  # asked for
    assert _rows(path)[0] == ["epoch", "loss", "accuracy"] and len(_rows(path)) == 2


def test_csv_logger_drops_a_row_cut_short_by_a_kill(tmp_path):
    x, y = _data()
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss,accuracy\r\n0,1.5,0.5\r\n1,1.4")  # killed mid-row
    model = _model("numpy")
    with pytest.warns(RuntimeWarning, match=r"the last row of '.*log\.csv' was cut short .* "
                                            r"dropped"):
        model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(path)])
    assert _rows(path) == [["epoch", "loss", "accuracy"], ["0", "1.5", "0.5"],
                           ["0", repr(model.history_.history["loss"][0]),
                            repr(model.history_.history["accuracy"][0])]]


@pytest.mark.parametrize("end", ["\n", ""])
def test_csv_logger_keeps_a_whole_last_row_without_its_line_end(tmp_path, end):
    x, y = _data()
    path = tmp_path / "log.csv"
    text = "epoch,loss,accuracy\n0,0.5,0.75\n1,0.25,0.75" + end
    path.write_text(text)
    model = _model("numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped: no warning
        model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(path)])
    written = path.read_text()
    assert written.startswith(text) and written[len(text):].lstrip("\r\n").startswith("0,")
    assert [r[0] for r in _rows(path)] == ["epoch", "0", "1", "0"]
    assert _rows(path)[2] == ["1", "0.25", "0.75"]


def test_a_log_in_use_by_another_fit_is_refused_before_training(tmp_path):
    """One fit at a time writes a log (whatever path or link leads to it): a second fit,
    in another thread, and a second logger of one fit fail before any epoch, and the log
    is free again once the fit holding it ends (also when it raised)."""
    x, y = _data()
    path = tmp_path / "log.csv"
    os.symlink(path, tmp_path / "link.csv")
    refused = []

    def second_fit(epoch, logs):
        def run():
            other = _model("numpy", seed=1)
            try:
                other.fit(x, y, epochs=2, callbacks=[mlp.CSVLogger(tmp_path / "link.csv")])
            except RuntimeError as exc:
                refused.append((exc, other.epochs_trained_))

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()

    model = _model("numpy")
    model.fit(x, y, epochs=2, callbacks=[mlp.CSVLogger(path), second_fit])
    assert len(refused) == 2 and [trained for _, trained in refused] == [0, 0]  # each epoch
    exc = refused[0][0]
    assert re.search(r"CSVLogger: the log '.*link\.csv' is in use by another "
                                      r"fit \(process \d+ on .*; lock file '.*\.log\.csv\.lock'"
                                      r"\): two fits, or two loggers of one fit, cannot write "
                                      r"one log", str(exc))
    assert [r[0] for r in _rows(path)] == ["epoch", "0", "1"]  # each row once
    start = _model("numpy").get_weights()
    twice = _model("numpy")
    with pytest.raises(RuntimeError, match=r"the log '.*log\.csv' is in use by another fit"):
        twice.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(path), mlp.CSVLogger(path)])
    _untouched(twice, start)
    with pytest.raises(ValueError, match="bad"):
        model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(path), _Raises("bad")])
    model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(path)])  # free again
    assert [r[0] for r in _rows(path)] == ["epoch", "0", "1", "2", "3"]
    assert sorted(os.listdir(tmp_path)) == ["link.csv", "log.csv"]  # no lock file left


class _Raises(mlp.Callback):
    def __init__(self, message):
        self.message = message

    def on_epoch_end(self, epoch, logs):
        raise ValueError(self.message)


def test_over_long_names_and_nul_characters_are_refused_before_training(tmp_path):
    x, y = _data()
    model = _model("numpy")
    start = model.get_weights()
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    long_log = str(tmp_path / ("l" * limit + ".csv"))
    for append in (True, False):
        with pytest.raises(OSError, match=r"cannot write the CSV log to '.*l\.csv': its file "
                                          rf"name is {limit + 4} bytes long"):
            model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(long_log, append=append)])
    pattern = str(tmp_path / "ck-{epoch:300}.npz")
    with pytest.raises(OSError, match=re.escape(f"cannot save the checkpoint to {pattern!r}: its "
                                                f"file name is 307 bytes long")):
        model.fit(x, y, epochs=1, callbacks=[mlp.ModelCheckpoint(pattern)])
    _untouched(model, start)
    assert os.listdir(tmp_path) == []
    for make, name in ((mlp.ModelCheckpoint, "ModelCheckpoint path"),
                       (mlp.CSVLogger, "CSVLogger path"),
                       (mlp.BackupAndRestore, "BackupAndRestore directory")):
        with pytest.raises(ValueError, match=rf"{name} 'a\\x00b' holds a NUL character"):
            make("a\0b")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_csv_logger_writes_through_links_keeps_modes_and_refuses_pipes(tmp_path):
    x, y = _data()
    model = _model("numpy")
    old = os.umask(0o027)
    try:
        model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(tmp_path / "new.csv")])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.csv").st_mode) == 0o640  # as the umask says
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("epoch,loss,accuracy\n0,1.5,0.5\n")
    os.chmod(target, 0o644)
    os.symlink(target, link)
    # validation columns make the header change: the file is rewritten, not appended to
    model.fit(x, y, epochs=1, validation_data=_data(10, seed=8),
              callbacks=[mlp.CSVLogger(link)])
    assert os.path.islink(link) and stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert [r[0] for r in _rows(target)] == ["epoch", "0", "1"]
    assert sorted(os.listdir(tmp_path)) == ["link.csv", "new.csv", "target.csv"]  # no temp
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"cannot write the CSV log to '.*pipe\.csv': it is "
                                         r"not a regular file"):
        model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(fifo)])
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(IsADirectoryError, match=r"cannot write the CSV log to .*: it is a "
                                                r"folder"):
        model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(tmp_path)])
    assert model.epochs_trained_ == 2


@pytest.mark.parametrize("separator", [";;", "", "1", ".", "-", '"', "\n", "e"])
def test_csv_logger_refuses_a_bad_separator_at_once(separator):
    with pytest.raises(ValueError, match=r"separator must be one character that no number "
                                         rf"holds .*got {re.escape(repr(separator))}"):
        mlp.CSVLogger("log.csv", separator=separator)
    with pytest.raises(TypeError, match=r"separator must be a string"):
        mlp.CSVLogger("log.csv", separator=0)


def test_csv_logger_takes_a_tab(tmp_path):
    x, y = _data()
    _model("numpy").fit(x, y, epochs=2, callbacks=[mlp.CSVLogger(tmp_path / "l.tsv",
                                                                 separator="\t")])
    lines = (tmp_path / "l.tsv").read_text().splitlines()
    assert lines[0] == "epoch\tloss\taccuracy" and lines[2].startswith("1\t")


def test_a_log_or_checkpoint_in_a_missing_or_read_only_folder_fails_before_training(tmp_path):
    x, y = _data()
    model = _model("numpy")
    start = model.get_weights()
    for make, what in ((mlp.CSVLogger, "write the CSV log"),
                       (mlp.ModelCheckpoint, "save the checkpoint")):
        missing = str(tmp_path / "no" / "x-{epoch}.csv")
        with pytest.raises(FileNotFoundError, match=re.escape(f"cannot {what} to {missing!r}: "
                                                              f"folder")):
            model.fit(x, y, epochs=1, callbacks=[make(missing)])
        folder = read_only_folder(tmp_path)
        if folder is not None:
            path = os.path.join(folder, "x-{epoch}.csv")
            with pytest.raises(OSError, match=re.escape(f"cannot {what} to {path!r}: cannot "
                                                        f"create a file in")):
                model.fit(x, y, epochs=1, callbacks=[make(path)])
    _untouched(model, start)


# ----------------------------------------------------------- checkpoint name patterns
@pytest.mark.parametrize("pattern, why", [
    ("{epoch:/>4}.npz", r"gives the field 'epoch' the format spec '/>4'"),
    ("{epoch:{epoch.__class__}}.npz",
     r"gives the field 'epoch' the format spec '\{epoch.__class__\}'"),
    ("{epoch:>{width}}.npz", r"gives the field 'epoch' the format spec '>\{width\}'"),
    ("{epoch:c}.npz", r"gives the field 'epoch' the format spec 'c'"),  # chr(47) is '/'
    ("{epoch:99999}.npz", r"gives the field 'epoch' the format spec '99999'"),
    ("{}.npz", r"has the field \{\}, which is not a plain name"),
    ("{0}.npz", r"has the field \{0\}"),
    ("{epoch.real}.npz", r"has the field \{epoch.real\}"),
    ("{epoch[0]}.npz", r"has the field \{epoch\[0\]\}"),
    ("{epoch!x}.npz", r"converts the field 'epoch' with !x"),
    ("{epoch!r}.npz", r"converts the field 'epoch' with !r"),
    ("run-{epoch}/model.npz", r"names the field 'epoch' in a folder"),
    ("ckpt-{epoch.npz", r"is not a valid name pattern"),
])
def test_a_checkpoint_pattern_that_could_leave_its_folder_is_refused_at_once(pattern, why):
    with pytest.raises(ValueError, match=rf"ModelCheckpoint path {re.escape(repr(pattern))} "
                                         rf"{why}.*write braces as"):
        mlp.ModelCheckpoint(pattern)


@pytest.mark.parametrize("pattern, why", [
    ("{loss:d}.npz", r"cannot name epoch 1 with a value of 0.5: Unknown format code 'd'"),
    ("{accuracy:x}.npz", r"cannot name epoch 1 .*Unknown format code 'x'"),
    ("sub/", r"makes the name '.*sub/', which is not a file in '.*sub'"),
    ("sub/.", r"makes the name '.*sub/\.', which is not a file in '.*sub'"),
])
def test_a_checkpoint_pattern_that_does_not_suit_the_values_fails_before_training(
        tmp_path, pattern, why):
    x, y = _data()
    model = _model("numpy")
    start = model.get_weights()
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=rf"ModelCheckpoint path '.*' {why}"):
        model.fit(x, y, epochs=1, callbacks=[mlp.ModelCheckpoint(f"{tmp_path}/{pattern}")])
    _untouched(model, start)
    assert os.listdir(tmp_path) == ["sub"] and os.listdir(tmp_path / "sub") == []


def test_simple_checkpoint_patterns_name_files_in_their_folder(tmp_path):
    x, y = _data()
    pattern = str(tmp_path / "m-{epoch:_>4}-{loss:+.2e}-{accuracy:.0%}-{{x}}.npz")
    checkpoint = mlp.ModelCheckpoint(pattern)
    model = _model("numpy")
    model.fit(x, y, epochs=1, callbacks=[checkpoint])
    loss, accuracy = model.history_.history["loss"][0], model.history_.history["accuracy"][0]
    name = f"m-___1-{loss:+.2e}-{accuracy:.0%}-{{x}}.npz"
    assert os.listdir(tmp_path) == [name] and checkpoint.saved == [str(tmp_path / name)]
    (tmp_path / "run{1}").mkdir()  # braces in the folder's name, written doubled
    braces = mlp.ModelCheckpoint(str(tmp_path / "run{{1}}" / "m-{epoch}.npz"))
    model.fit(x, y, epochs=1, callbacks=[braces])
    assert braces.saved == [str(tmp_path / "run{1}" / "m-2.npz")]
    assert os.listdir(tmp_path / "run{1}") == ["m-2.npz"]


# ------------------------------------------------- a callback that damages the model's state
class _SetAtEpoch1(mlp.Callback):
    """Sets ``model.<attribute>`` to ``make(model)`` at the end of epoch 1."""

    def __init__(self, attribute, make):
        self.attribute, self.make = attribute, make

    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            setattr(self.model, self.attribute, self.make(self.model))


def _two_epochs_then(backend, callback, exc, match):
    """Fit 4 epochs with ``callback``: refused at epoch 1 with ``exc``/``match``; the model
    keeps its 2 completed epochs, whole, and trains on."""
    x, y = _data()
    model = _model(backend)
    with pytest.raises(exc, match=match):
        model.fit(x, y, epochs=4, batch_size=10, callbacks=[callback])
    assert model.epochs_trained_ == 2 and model.train_state_.epoch == 2
    assert model.history_.epoch == [0, 1]
    assert all(len(v) == 2 for v in model.history_.history.values())
    assert model.optimizer_ == mlp.optimizers.Adam()
    assert mlp.optimizers.step_count(model.optimizer_state_) == 6  # 3 batches x 2 epochs
    for W, b in model.params:
        assert backend.is_native(W) and backend.is_native(b)
    model.fit(x, y, epochs=1, batch_size=10)
    assert model.epochs_trained_ == 3 and model.history_.epoch == [0, 1, 2]


@pytest.mark.parametrize("attribute, make, exc, match", [
    ("optimizer_state_", lambda m: None, TypeError,
     r"callback _SetAtEpoch1 \(on_epoch_end\) set model\.optimizer_state_ to None where the "
     r"state holds a tuple of 2 items; the state must keep the optimizer's structure"),
    ("optimizer_state_", lambda m: m.optimizer_state_[:1], TypeError,
     r"set model\.optimizer_state_ to a tuple of 1 items where the state holds a tuple of 2"),
    ("history_", lambda m: None, TypeError,
     r"callback _SetAtEpoch1 \(on_epoch_end\) set model\.history_ to None; it holds every "
     r"epoch's metrics and must stay a History"),
    ("params", lambda m: None, TypeError,
     r"set model\.params to None where the model has 2 \(W, b\) pairs; set the weights with "
     r"model\.set_weights"),
    ("params", lambda m: [(W.T, b) for W, b in m.params], TypeError,
     r"set model\.params to an array \(\w+\) of shape \(8, 5\) in layer 0 where a \w+ "
     r"array of shape \(5, 8\) and dtype float64 belongs"),
    ("epochs_trained_", lambda m: 10, ValueError,
     r"set model\.epochs_trained_ to 10, but the model has trained 2 epochs; fit counts them"),
    ("optimizer_", lambda m: mlp.optimizers.SGD(), ValueError,
     r"replaced model\.optimizer_ during fit; a fit trains with the optimizer it started "
     r"with: reduce the learning rate with ReduceLROnPlateau, or fit again with optimizer="),
    ("train_state_", lambda m: None, ValueError,
     r"replaced model\.train_state_, which belongs to the running fit"),
    ("stop_training", lambda m: np.array([True, False]), TypeError,
     r"set model\.stop_training to an array \(ndarray\) of shape \(2,\), which is neither "
     r"true nor false; set it to True to stop training"),
], ids=["opt-state-None", "opt-state-structure", "history-None", "params-None",
        "params-transposed", "epochs", "optimizer", "train-state", "stop-array"])
def test_a_callback_that_damages_the_model_is_named_and_undone(backend, attribute, make, exc,
                                                                match):
    _two_epochs_then(backend, _SetAtEpoch1(attribute, make), exc, match)


def test_uneven_history_lists_are_refused_and_evened_out(backend):
    def grow(epoch, logs):
        if epoch == 1:
            model.history_.history["loss"].append(0.5)

    x, y = _data()
    model = _model(backend)
    with pytest.raises(ValueError, match=r"callback function grow \(on_epoch_end\) left "
                                         r"model\.history_ with 2 epochs but 3 values of "
                                         r"'loss'; every metric must keep one value per epoch"):
        model.fit(x, y, epochs=4, callbacks=[grow])
    assert model.history_.epoch == [0, 1] and len(model.history_.history["loss"]) == 2
    assert 0.5 not in model.history_.history["loss"]


def _duplicate_row(h):
    h.epoch.append(h.epoch[-1])
    for values in h.history.values():
        values.append(0.5)


def _set_column(h, key, column):
    h.history[key] = column


@pytest.mark.parametrize("edit, match", [
    (_duplicate_row, r"3 epochs, more than the 2 the model has trained"),
    (lambda h: h.epoch.__setitem__(slice(None), [e + 1000 for e in h.epoch]),
     r"epochs \[1000, 1001\] that are not whole numbers increasing strictly from 0 up "
     r"to 1 \(the model has trained 2 epochs\)"),
    (lambda h: h.epoch.__setitem__(0, 1), r"epochs \[1, 1\] that are not whole numbers"),
    (lambda h: h.epoch.__setitem__(0, 0.5), r"epochs \[0\.5, 1\] that are not whole"),
    (lambda h: h.epoch.append(99), r"3 epochs but 2 values of 'loss', 2 values of "
                                   r"'accuracy'"),
    (lambda h: h.history["loss"].__setitem__(0, "low"), r"a value of 'loss' that is not a "
                                                         r"number"),
    (lambda h: _set_column(h, "", [1.0, 2.0]), r"a metric named '' \(metrics are named by "
                                                r"non-empty strings\)"),
    (lambda h: setattr(h, "epoch", [5, 6]), r"epochs \[5, 6\] that are not whole"),
], ids=["duplicate-row", "renumbered", "repeated", "float", "epoch-appended", "string",
        "unnamed", "list-replaced"])
def test_a_history_a_callback_leaves_unloadable_is_refused_and_put_back_exactly(
        backend, tmp_path, edit, match):
    """The rules `load` applies to a saved history (epochs increasing strictly from 0 below
    the epoch count, one number per epoch for each named metric) hold after every hook:
    a callback that breaks them is named, the history is put back as it was (the same
    lists, holding what they held), and what the model then saves loads."""
    x, y = _data()
    model = _model(backend)
    before = {}

    def damage(epoch, logs):
        if epoch == 1:
            h = model.history_
            before.update(lists=(h.epoch, h.history, dict(h.history)), epoch=list(h.epoch),
                          values={k: list(v) for k, v in h.history.items()})
            edit(h)

    with pytest.raises((TypeError, ValueError), match=r"callback function damage "
                                                      r"\(on_epoch_end\) left model\.history_ with "
                       + match + r".*; every metric must keep one value per epoch, the epochs "
                                 r"increasing from 0 below the epoch count"):
        model.fit(x, y, epochs=4, callbacks=[damage])
    h = model.history_
    epoch, values, columns = before["lists"]
    assert h.epoch is epoch and h.history is values and h.epoch == before["epoch"] == [0, 1]
    assert list(h.history) == list(columns) and all(h.history[k] is columns[k] for k in columns)
    np.testing.assert_equal(h.history, before["values"])
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz")
    assert loaded.history_.epoch == [0, 1] and loaded.epochs_trained_ == 2


def test_history_edits_load_accepts_pass_the_check(tmp_path):
    """Edits within the rules (a metric removed, one added, past values changed) are a
    callback's to make: they pass, and the file saved loads with them."""
    x, y = _data()
    model = _model("numpy")

    def edit(epoch, logs):
        if epoch == 1:
            h = model.history_
            h.history.pop("accuracy")
            h.history["mine"] = [1.0, 2.0]
            h.history["loss"][0] = 9.0

    model.fit(x, y, epochs=3, callbacks=[edit])
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz")
    assert loaded.history_.epoch == [0, 1, 2] and loaded.history_.history["loss"][0] == 9.0
    np.testing.assert_equal(loaded.history_.history["mine"], [1.0, 2.0, np.nan])


@pytest.mark.parametrize("change, exc, match", [
    (lambda logs: logs.update(loss="low"), TypeError,
     r"callback function <lambda> \(on_epoch_end\) put 'loss': 'low' in the epoch's logs; logs "
     r"map metric names to numbers"),
    (lambda logs: logs.update(mine=np.ones(3)), TypeError,
     r"put 'mine': an array \(ndarray\) of shape \(3,\) in the epoch's logs"),
    (lambda logs: logs.pop("accuracy"), ValueError,
     r"removed 'accuracy' from the epoch's logs, which later callbacks read"),
], ids=["string", "array", "removed"])
def test_logs_a_callback_damages_are_refused_before_the_next_callback(backend, change, exc,
                                                                       match):
    seen = []
    x, y = _data()
    model = _model(backend)
    with pytest.raises(exc, match=match):
        model.fit(x, y, epochs=3, callbacks=[lambda epoch, logs: change(logs),
                                             lambda epoch, logs: seen.append(epoch)])
    assert seen == [] and model.epochs_trained_ == 1


def test_numbers_a_callback_adds_to_the_logs_are_logged(backend, tmp_path):
    x, y = _data()
    model = _model(backend)
    model.fit(x, y, epochs=2, callbacks=[lambda epoch, logs: logs.update(mine=np.float32(epoch)),
                                         mlp.CSVLogger(tmp_path / "log.csv", append=False)])
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss,accuracy,mine" and rows[2].endswith(",1.0")


def test_numbers_a_callback_adds_to_the_logs_reach_the_histories(backend, tmp_path):
    """The History took the epoch's logs before the other callbacks: what they add (or
    change) is put into the fit's history and model.history_ after them, and is saved."""
    x, y = _data()
    model = _model(backend)

    def late(epoch, logs):
        if epoch == 1:
            logs["late"] = 7.0
        logs["every"] = 0.5 + epoch

    returned = model.fit(x, y, epochs=3, callbacks=[late])
    for history in (returned, model.history_):
        np.testing.assert_equal(history.history["late"], [np.nan, 7.0, np.nan])
        assert history.history["every"] == [0.5, 1.5, 2.5]
    model.save(tmp_path / "m.npz", include_optimizer=True)
    assert mlp.load(tmp_path / "m.npz").history_.history["every"] == [0.5, 1.5, 2.5]
    again = model.fit(x, y, epochs=1, callbacks=[late])  # a later fit adds them too
    assert again.history["every"] == [3.5] and model.history_.history["every"][-1] == 3.5


def test_an_array_returned_from_on_epoch_end_is_named():
    x, y = _data()
    model = _model("numpy")
    with pytest.raises(TypeError, match=r"callback function <lambda>: on_epoch_end returned an "
                                        r"array of shape \(3,\), which is neither true nor "
                                        r"false \(.*\); return True to stop training, None or "
                                        r"False to go on"):
        model.fit(x, y, epochs=3, callbacks=[lambda epoch, logs: np.ones(3)])
    assert model.epochs_trained_ == 1


def test_what_callbacks_may_change_still_trains(backend):
    """Weights set with set_weights, a learning rate reduced in the state, early
    stopping's restored weights, stop_training set: none is refused."""
    x, y = _data()
    model = _model(backend)

    class Fine(mlp.Callback):
        def on_epoch_end(self, epoch, logs):
            self.model.set_weights(self.model.get_weights())
            if epoch == 2:
                self.model.stop_training = np.True_

    history = model.fit(x, y, epochs=6, validation_split=0.2,
                        callbacks=[Fine(), mlp.ReduceLROnPlateau(patience=1, factor=0.5)])
    assert history.epoch == [0, 1, 2] and model.epochs_trained_ == 3


def test_a_learning_rate_a_callback_reduces_in_the_last_epoch_is_kept(backend):
    """The optimizer state a callback sets at the last epoch (or in on_train_end) is the
    model's after the fit, and the one the next fit continues: it was dropped for the
    state from before the callback."""
    from mlp.optimizers import learning_rate_scale, with_learning_rate_scale

    x, y = _data()
    model = _model(backend)

    class Halve(mlp.Callback):
        def on_epoch_end(self, epoch, logs):
            state = self.model.optimizer_state_
            self.model.optimizer_state_ = with_learning_rate_scale(
                state, 0.5 * learning_rate_scale(state))

    model.fit(x, y, epochs=2, callbacks=[Halve()])
    assert learning_rate_scale(model.optimizer_state_) == 0.25
    assert model.train_state_.opt_state is model.optimizer_state_

    class HalveAtTheEnd(mlp.Callback):
        def on_train_end(self, logs=None):
            state = self.model.optimizer_state_
            self.model.optimizer_state_ = with_learning_rate_scale(
                state, 0.5 * learning_rate_scale(state))

    model.fit(x, y, epochs=1, callbacks=[HalveAtTheEnd()])
    assert learning_rate_scale(model.optimizer_state_) == 0.125
    assert model.train_state_.opt_state is model.optimizer_state_


# ------------------------------------------- callbacks after a divergence takes back epochs
def _diverging(backend):
    """A model and data whose full-batch SGD at ``learning_rate=1e5`` ends epoch 1 at
    finite weights whose loss overflows: epoch 1 ends (its loss was computed before its
    step), the callbacks see it, then epoch 2 diverges and epoch 1 is taken back."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2)) * 100
    model = mlp.MLP([3, 8, 2], activation="identity", seed=0, backend=backend)
    return model, x, y


def _csv_epochs(path):
    with open(path, newline="") as fh:
        return [int(row[0]) for row in list(csv.reader(fh))[1:]]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_divergence_takes_back_the_epochs_the_callbacks_saw(backend, tmp_path):
    """The CSV log loses the rows of the epochs taken back (the earlier fit's rows stay),
    every History and the backup agree with the model; checkpoint files stay (each holds
    the epoch it names, as it was)."""
    model, x, y = _diverging(backend)
    log = mlp.CSVLogger(tmp_path / "log.csv")
    model.fit(x, y, epochs=2, learning_rate=1e-3, batch_size=None, optimizer="sgd",
              callbacks=[log])
    seen, own = [], mlp.History()
    folder = tmp_path / "backup"
    checkpoint = mlp.ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz")
    with pytest.raises(mlp.TrainingDivergedError, match="the loss became (inf|nan) in epoch 4") \
            as info:
        model.fit(x, y, epochs=50, learning_rate=1e5, batch_size=None, optimizer="sgd",
                  callbacks=[log, own, checkpoint, lambda e, logs: seen.append(e),
                             mlp.BackupAndRestore(folder)])
    assert seen == [2, 3]  # epoch 3 ended, then was taken back
    kept = list(range(model.epochs_trained_))
    assert kept == [0, 1, 2]
    assert model.history_.epoch == kept and info.value.history.epoch == [2]
    assert own.epoch == [2] and all(len(v) == 1 for v in own.history.values())
    assert _csv_epochs(log.path) == kept
    backup = mlp.load(folder / "backup-from-epoch-2.npz", backend=backend)
    assert backup.epochs_trained_ == 3 and backup.history_.epoch == kept
    _weights_equal(backup.get_weights(), model.get_weights())
    assert checkpoint.saved == [str(tmp_path / "ckpt-3.npz"), str(tmp_path / "ckpt-4.npz")]
    assert mlp.load(tmp_path / "ckpt-4.npz").epochs_trained_ == 4  # as it was written
    # the next fit logs on from the model's epochs, in the same file
    model.fit(x, y, epochs=1, learning_rate=1e-3, callbacks=[log])
    assert _csv_epochs(log.path) == [0, 1, 2, 3]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_callbacks_never_see_an_epoch_whose_weights_overflowed(backend, tmp_path):
    """A step that makes the weights infinite ends its epoch with a finite loss (computed
    before the step): the fit diverges there, before any callback sees the epoch, so no
    checkpoint holds weights that load refuses."""
    model, x, y = _diverging(backend)
    seen = []
    checkpoint = mlp.ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz")
    with pytest.raises(mlp.TrainingDivergedError, match=r"the weights became NaN or infinite "
                                                        r"in epoch 0"):
        model.fit(x, y, epochs=5, learning_rate=1e38, batch_size=None, optimizer="sgd",
                  callbacks=[checkpoint, lambda e, logs: seen.append(e)])
    assert seen == [] and checkpoint.saved == [] and os.listdir(tmp_path) == []
    assert model.epochs_trained_ == 0 and model.history_ is None
