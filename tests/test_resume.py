"""Training continues exactly where it stopped (issue 9): a second `fit`, a file saved
with ``include_optimizer=True`` (on any backend), a run killed and started again
with `BackupAndRestore` - each ends at the weights of one uninterrupted run: bit for
bit on NumPy, to 1e-12 in float64 elsewhere. Checkpoints, CSV logs, plateau
reductions and learning curves, on every backend."""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import mlp
from mlp import optimizers as O
from mlp import schedules as S
from mlp import training
from tests._helpers import read_only_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


#: Each optimizer with a schedule (and momentum, weight decay, clipping), mini-batches
#: of 16 out of 50 (a partial last batch) and shuffling.
OPTIMIZERS = {
    "sgd+momentum+step": O.SGD(S.step_decay(0.1, drop=0.5, every=7), momentum=0.9,
                               nesterov=True),
    "adam+cosine": O.Adam(S.cosine_decay(0.02, decay_steps=30, warmup_steps=4)),
    "adamw+exponential": O.AdamW(S.exponential_decay(0.01, 10, 0.5), weight_decay=0.05),
    "rmsprop+invscaling": O.RMSprop(S.invscaling(0.005, power_t=0.5)),
}
FIT = dict(batch_size=16, shuffle=True)


def _data(n=50, seed=2024):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 0.8).astype(int)
    return x, y


def _model(backend, **kwargs):
    return mlp.MLP([5, 8, 3], activation="tanh", loss="cross_entropy", dtype="float64",
                   seed=3, backend=backend, **kwargs)


def _difference(a, b) -> float:
    """The largest absolute difference between two weight lists."""
    return max(float(np.max(np.abs(u - v))) for p, q in zip(a, b, strict=True)
               for u, v in zip(p, q, strict=True))


def _assert_same_weights(got, want, backend_name):
    """Bit for bit on NumPy, to 1e-12 (float64) elsewhere."""
    difference = _difference(got, want)
    if backend_name == "numpy":
        assert difference == 0.0
    else:
        assert difference <= 1e-12


@pytest.fixture(scope="module")
def uninterrupted():
    """name -> (weights, History) of one fit(epochs=6) on NumPy."""
    x, y = _data()
    out = {}
    for name, opt in OPTIMIZERS.items():
        model = _model("numpy")
        history = model.fit(x, y, epochs=6, optimizer=opt, **FIT)
        out[name] = model.get_weights(), history
    return out


# ------------------------------------------------------------ fit continues
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_two_fits_end_at_the_weights_of_one(backend, name):
    x, y = _data()
    once = _model(backend)
    whole = once.fit(x, y, epochs=6, optimizer=OPTIMIZERS[name], **FIT)
    twice = _model(backend)
    first = twice.fit(x, y, epochs=3, optimizer=OPTIMIZERS[name], **FIT)
    second = twice.fit(x, y, epochs=3, **FIT)  # no optimizer: the model's, continued
    _assert_same_weights(twice.get_weights(), once.get_weights(), backend.name)
    assert twice.optimizer_ is OPTIMIZERS[name]
    assert O.step_count(twice.optimizer_state_) == O.step_count(once.optimizer_state_) == 6 * 4
    # each fit returns its own epochs, numbered on; the model's history holds them all
    assert first.epoch == [0, 1, 2] and second.epoch == [3, 4, 5]
    assert second.params["initial_epoch"] == 3 and twice.epochs_trained_ == 6
    assert twice.history_.epoch == list(range(6))
    np.testing.assert_allclose(twice.history_.history["loss"], whole.history["loss"],
                               rtol=1e-12, atol=0)


def test_chunked_runs_continue_exactly(backend):
    """Without hooks JAX runs epochs in chunks of one compiled call; however the
    epochs are cut (1+1+4, 2+5, 7 epoch by epoch), the weights are the same."""
    x, y = _data()
    opt = OPTIMIZERS["adam+cosine"]
    models = []
    for cuts, hooks in (([7], False), ([2, 5], False), ([1, 1, 1, 4], False), ([7], True)):
        model = _model(backend)
        for epochs in cuts:
            model.fit(x, y, epochs=epochs, optimizer=opt,
                      callbacks=[lambda e, logs: None] if hooks else None, **FIT)
        models.append(model.get_weights())
    for weights in models[1:]:
        _assert_same_weights(weights, models[0], backend.name)


def test_an_interrupted_fit_continues_exactly(backend, monkeypatch):
    """Ctrl-C in the middle of a fit keeps the completed epochs, and the shuffle stream
    is left where they leave it: a second fit ends at the uninterrupted weights."""
    x, y = _data()
    opt = OPTIMIZERS["sgd+momentum+step"]
    reference = _model(backend)
    reference.fit(x, y, epochs=6, optimizer=opt, **FIT)

    def interrupt(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    model = _model(backend)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=6, optimizer=opt, callbacks=[interrupt], **FIT)
    assert model.epochs_trained_ == 3
    model.fit(x, y, epochs=3, **FIT)
    _assert_same_weights(model.get_weights(), reference.get_weights(), backend.name)


def test_reset_optimizer_and_another_optimizer_start_a_fresh_state(backend):
    x, y = _data()
    opt = O.Adam(0.01)
    model = _model(backend)
    model.fit(x, y, epochs=2, optimizer=opt, **FIT)
    after_two = model.get_weights()
    model.fit(x, y, epochs=1, reset_optimizer=True, **FIT)
    assert O.step_count(model.optimizer_state_) == 4  # one epoch's steps, not three
    # the same as a fresh state by hand
    twin = _model(backend)
    twin.set_weights(after_two)
    twin._shuffle_rng.bit_generator.state = _shuffled(2)
    twin.fit(x, y, epochs=1, optimizer=opt, **FIT)  # a fresh model: a fresh state
    _assert_same_weights(model.get_weights(), twin.get_weights(), backend.name)
    # another optimizer (here another learning rate) starts afresh too ...
    model.fit(x, y, epochs=1, optimizer=O.Adam(0.02), **FIT)
    assert O.step_count(model.optimizer_state_) == 4
    # ... and an equal one, by name or object, continues
    model.fit(x, y, epochs=1, optimizer=O.Adam(0.02), **FIT)
    assert O.step_count(model.optimizer_state_) == 8
    model.fit(x, y, epochs=1, learning_rate=0.02, **FIT)  # the model's Adam, lr 0.02
    assert O.step_count(model.optimizer_state_) == 12
    model.fit(x, y, epochs=1, optimizer="adam", learning_rate=0.02, **FIT)
    assert O.step_count(model.optimizer_state_) == 16


def _shuffled(epochs):
    """The shuffle stream's state after ``epochs`` shuffled epochs of the test model."""
    rng = np.random.default_rng([3, 1])
    for _ in range(epochs):
        rng.permutation(50)
    return rng.bit_generator.state


def test_defaults_continue_the_model_or_start_with_adam():
    x, y = _data()
    model = _model("numpy")
    model.fit(x, y, epochs=1)
    assert model.optimizer_ == O.Adam(1e-3)
    assert O.step_count(model.optimizer_state_) == 2  # batches of 32 out of 50
    sgd = O.SGD(0.1)
    model.fit(x, y, epochs=1, optimizer=sgd)
    model.fit(x, y, epochs=1)
    assert model.optimizer_ is sgd and O.step_count(model.optimizer_state_) == 4


def test_learning_rate_alone_needs_a_named_optimizer():
    x, y = _data()
    model = _model("numpy")
    custom = O.chain(O.scale_by_adam(), O.scale_by_learning_rate(0.01))
    model.fit(x, y, epochs=1, optimizer=custom)
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"learning_rate was given without an optimizer, but "
                                         r"the model's optimizer .* has no learning_rate"):
        model.fit(x, y, epochs=1, learning_rate=0.1)
    assert _difference(model.get_weights(), weights) == 0.0


def test_reset_optimizer_must_be_a_bool():
    x, y = _data()
    with pytest.raises(TypeError, match=r"reset_optimizer must be True or False, got 1"):
        _model("numpy").fit(x, y, epochs=1, reset_optimizer=1)


def test_the_default_fit_learns_digits():
    """Issue 12: with only ``epochs`` given, the defaults (Adam 1e-3, batches of 32) learn."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16, y, test_size=0.25,
                                                        random_state=0)
    model = mlp.MLP([64, 64, 10], loss="cross_entropy", seed=0)
    model.fit(x_train, y_train, epochs=30)
    assert model.evaluate(x_test, y_test)["accuracy"] >= 0.95


# ------------------------------------------------------------ resume from a file
@pytest.mark.parametrize("saved_on", ["numpy", "same"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_loaded_model_continues_as_if_never_saved(backend, name, saved_on, uninterrupted,
                                                    tmp_path):
    x, y = _data()
    writer = _model("numpy" if saved_on == "numpy" else backend)
    writer.fit(x, y, epochs=3, optimizer=OPTIMIZERS[name], **FIT)
    path = tmp_path / "half.npz"
    writer.save(path, include_optimizer=True)
    model = mlp.load(path, backend=backend)
    assert model.optimizer_ == OPTIMIZERS[name] and model.epochs_trained_ == 3
    assert model.history_.epoch == [0, 1, 2]
    history = model.fit(x, y, epochs=3, **FIT)
    weights, whole = uninterrupted[name]
    _assert_same_weights(model.get_weights(), weights,
                         "numpy" if backend.name == "numpy" else "other")
    assert history.epoch == [3, 4, 5] and model.history_.epoch == list(range(6))
    np.testing.assert_allclose(model.history_.history["loss"], whole.history["loss"],
                               rtol=1e-12, atol=0)


def test_a_pickled_model_continues_as_if_never_pickled(backend, uninterrupted):
    import pickle

    x, y = _data()
    model = _model(backend)
    model.fit(x, y, epochs=3, optimizer=OPTIMIZERS["adam+cosine"], **FIT)
    model = pickle.loads(pickle.dumps(model))
    model.fit(x, y, epochs=3, **FIT)
    _assert_same_weights(model.get_weights(), uninterrupted["adam+cosine"][0],
                         "numpy" if backend.name == "numpy" else "other")
    assert model.history_.epoch == list(range(6))


def test_a_plain_save_keeps_no_training_state(tmp_path):
    x, y = _data()
    model = _model("numpy")
    model.fit(x, y, epochs=2, **FIT)
    model.save(tmp_path / "plain.npz")
    loaded = mlp.load(tmp_path / "plain.npz")
    assert loaded.optimizer_ is None and loaded.epochs_trained_ == 0 and loaded.history_ is None


def test_the_history_survives_a_save_with_gaps(tmp_path):
    """A metric logged only by a later fit (validation) is NaN for the earlier epochs."""
    x, y = _data()
    model = _model("numpy")
    model.fit(x, y, epochs=2, **FIT)
    model.fit(x, y, epochs=2, validation_data=(x[:10], y[:10]), **FIT)
    history = model.history_.history
    assert np.isnan(history["val_loss"][:2]).all() and np.isfinite(history["val_loss"][2:]).all()
    model.save(tmp_path / "gaps.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "gaps.npz")
    assert loaded.history_.epoch == [0, 1, 2, 3]
    assert list(loaded.history_.history) == list(history)
    for key, values in history.items():
        np.testing.assert_array_equal(loaded.history_.history[key], values)


@pytest.mark.parametrize("damage, match", [
    (lambda t: t.update(shuffle_rng={"bit_generator": "MT19937"}), "shuffle generator"),
    (lambda t: t.update(epochs_trained=-1), "epoch count -1 is not a count"),
    (lambda t: t.update(history_metrics=["loss"]), "does not match its 1 metric"),
])
def test_a_damaged_training_state_is_refused_naming_the_file(tmp_path, damage, match):
    import json

    x, y = _data()
    model = _model("numpy")
    model.fit(x, y, epochs=1, **FIT)
    path = tmp_path / "state.npz"
    model.save(path, include_optimizer=True)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    training_state = json.loads(str(arrays["training"]))
    damage(training_state)
    arrays["training"] = np.asarray(json.dumps(training_state))
    np.savez(path, **arrays)
    with pytest.raises(mlp.ModelFileError, match=rf"'{path}' holds a damaged mlp model: .*"
                                                 rf"{match}"):
        mlp.load(path)


def test_a_state_for_another_architecture_is_refused_naming_the_file(tmp_path):
    x, y = _data()
    model = _model("numpy")
    model.fit(x, y, epochs=1, **FIT)
    model.save(tmp_path / "a.npz", include_optimizer=True)
    other = mlp.MLP([5, 9, 3], loss="cross_entropy", dtype="float64", seed=3)
    other.save(tmp_path / "b.npz")
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        arrays = {**{k: a[k] for k in a.files}, **{k: b[k] for k in b.files}}
    np.savez(tmp_path / "mixed.npz", **arrays)  # another network's weights, a's state
    with pytest.raises(mlp.ModelFileError, match=r"mixed.npz' holds a damaged mlp model: "
                                                 r"optimizer state array \d+ has shape"):
        mlp.load(tmp_path / "mixed.npz")


# ------------------------------------------------------------ kill and run again
def _run_script(backend, folder, kill_at=None, seed=3):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false")
    args = [sys.executable, os.path.join(ROOT, "tests", "resume_script.py"), backend,
            str(folder), "-" if kill_at is None else str(kill_at), str(seed).lower()]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def test_a_killed_run_started_again_ends_as_if_never_killed(backend, tmp_path):
    never, killed = tmp_path / "never", tmp_path / "killed"
    never.mkdir()
    killed.mkdir()
    done = _run_script(backend.name, never)
    assert done.returncode == 0, done.stderr
    first = _run_script(backend.name, killed, kill_at=4)
    assert first.returncode == -signal.SIGKILL, first.stderr
    # the backup, the folder's lock (released by the kill) and the mark that the fit made it
    assert sorted(os.listdir(killed / "backup")) == [".mlp-backup-folder", ".mlp-backup.lock",
                                                     "backup-from-epoch-0.npz"]
    assert not (never / "backup").exists()  # a finished run removes its backup and folder
    assert not (killed / "final.npz").exists()
    again = _run_script(backend.name, killed)
    assert again.returncode == 0, again.stderr
    with np.load(never / "final.npz") as a, np.load(killed / "final.npz") as b:
        weights = [(a[f"W{i}"], a[f"b{i}"]) for i in range(2)]
        resumed = [(b[f"W{i}"], b[f"b{i}"]) for i in range(2)]
        assert a["reductions"].tolist() == [2, 4, 6]  # one after the kill at epoch 4
        assert b["reductions"].tolist() == [2, 4, 6]
    _assert_same_weights(resumed, weights, backend.name)
    assert not (killed / "backup").exists()  # a finished run removes its backup and folder
    # the log has each epoch once, epoch 4 (killed before its backup) as trained again
    never_rows, killed_rows = (_csv(folder / "log.csv") for folder in (never, killed))
    assert [r["epoch"] for r in killed_rows] == [str(e) for e in range(8)]
    for a, b in zip(never_rows, killed_rows, strict=True):
        for key in ("loss", "val_loss", "val_accuracy"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-12, abs=0)


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_backup_of_another_model_is_refused(tmp_path):
    x, y = _data()
    backup = mlp.BackupAndRestore(tmp_path)
    model = _model("numpy")
    model.save(tmp_path / "backup-from-epoch-0.npz", include_optimizer=False)
    other = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", seed=4)
    other.fit(x, y, epochs=1, optimizer="adam", **FIT)
    other.epochs_trained_, other.history_ = 0, None  # a consistent file (no epoch trained)
    other.save(tmp_path / "backup-from-epoch-0.npz", include_optimizer=True)
    with pytest.raises(ValueError, match=r"the backup .*backup-from-epoch-0.npz' was made with "
                                         r"another model .*delete it"):
        model.fit(x, y, epochs=2, optimizer="adam", callbacks=[backup], **FIT)


def test_a_killed_run_of_a_model_with_a_drawn_seed_resumes(tmp_path):
    """The README's pattern with the default ``seed=None``: the run started again takes
    the seed of the run it continues, and ends as that run would have."""
    killed, never = tmp_path / "killed", tmp_path / "never"
    killed.mkdir()
    never.mkdir()
    first = _run_script("numpy", killed, kill_at=4, seed=None)
    assert first.returncode == -signal.SIGKILL, first.stderr
    again = _run_script("numpy", killed, seed=None)
    assert again.returncode == 0, again.stderr
    with np.load(killed / "final.npz") as b:
        seed = int(b["seed"])
        resumed = [(b[f"W{i}"], b[f"b{i}"]) for i in range(2)]
    done = _run_script("numpy", never, seed=seed)  # the same run, never killed
    assert done.returncode == 0, done.stderr
    assert not (killed / "backup").exists()
    never_rows, killed_rows = _csv(never / "log.csv"), _csv(killed / "log.csv")
    assert [r["epoch"] for r in killed_rows] == [str(e) for e in range(8)]
    assert killed_rows == never_rows  # the same split, batches and values, to the last digit
    with np.load(never / "final.npz") as a:
        weights = [(a[f"W{i}"], a[f"b{i}"]) for i in range(2)]
    # EarlyStopping puts back its best epoch's weights, which a backup holds only from the
    # last epoch backed up (3) on: the same weights where the best epoch is one of those
    if np.argmin([float(r["val_loss"]) for r in never_rows]) >= 3:
        _assert_same_weights(resumed, weights, "numpy")


# ------------------------------------------------------------ what a backup resumes
class Crashed(BaseException):
    """A crash, as of a killed process: it stops the fit at once, as Ctrl-C does (an
    Exception would let the later callbacks, the backup included, see the epoch)."""


class Crash(mlp.Callback):
    """Crash at the end of epoch ``epoch`` (before its backup, which goes last)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise Crashed("crash")


def _pattern_callbacks(folder):
    """The README's callbacks (less the checkpoint)."""
    return [mlp.BackupAndRestore(folder / "backup"), mlp.CSVLogger(folder / "log.csv"),
            mlp.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)]


def _readme_run(backend, folder, crash=None, seed=None, x=None, y=None, callbacks=None,
                **fit):
    """A model built with the defaults (``seed=None``), fit as the README's pattern."""
    data = _data()
    x = data[0] if x is None else x
    y = data[1] if y is None else y
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend=backend,
                    seed=seed)
    callbacks = _pattern_callbacks(folder) if callbacks is None else callbacks
    settings = dict(dict(epochs=6, validation_split=0.2, batch_size=16), **fit)
    if crash is None:
        model.fit(x, y, callbacks=callbacks, **settings)
        return model
    with pytest.raises(Crashed, match="crash"):
        model.fit(x, y, callbacks=[*callbacks, Crash(crash)], **settings)
    return model


def test_a_crashed_fit_with_the_default_seed_resumes_when_run_again(backend, tmp_path):
    crashed = _readme_run(backend, tmp_path, crash=3)
    assert sorted(os.listdir(tmp_path / "backup")) == [".mlp-backup-folder",
                                                       "backup-from-epoch-0.npz"]
    rerun = _readme_run(backend, tmp_path)
    assert rerun.seed == crashed.seed and rerun.get_config() == crashed.get_config()
    assert rerun.history_.epoch == list(range(6)) and rerun.epochs_trained_ == 6
    never = _readme_run(backend, tmp_path / "never", seed=crashed.seed,
                        callbacks=_pattern_callbacks(tmp_path / "never")[2:])
    _assert_same_weights(rerun.get_weights(), never.get_weights(), backend.name)
    np.testing.assert_allclose(rerun.history_.history["val_loss"],
                               never.history_.history["val_loss"], rtol=1e-12, atol=0)
    assert [r["epoch"] for r in _csv(tmp_path / "log.csv")] == [str(e) for e in range(6)]
    assert os.listdir(tmp_path) == ["log.csv"]  # the backup folder is gone


def _log_run(folder, backup, log, crash=None, seed=3, epochs=6):
    """A fit of 6 epochs with its own backup folder, logging to ``log``."""
    x, y = _data()
    callbacks = [mlp.BackupAndRestore(folder / backup), mlp.CSVLogger(folder / log)]
    model = mlp.MLP([5, 8, 3], activation="tanh", loss="cross_entropy", dtype="float64",
                    seed=seed, backend="numpy")
    if crash is None:
        model.fit(x, y, epochs=epochs, callbacks=callbacks, **FIT)
    else:
        with pytest.raises(Crashed, match="crash"):
            model.fit(x, y, epochs=epochs, callbacks=[*callbacks, Crash(crash)], **FIT)
    return model


def test_a_resumed_log_never_loses_the_rows_of_another_run(tmp_path):
    """Run A crashes after logging epoch 3 (before its backup); run B (its own backup)
    completes into the same log; A resumed keeps every row of B, and its own."""
    _log_run(tmp_path, "bkA", "shared.csv", crash=3)
    _log_run(tmp_path, "bkB", "shared.csv", seed=4)
    before = (tmp_path / "shared.csv").read_bytes()
    a = _log_run(tmp_path, "bkA", "shared.csv")
    assert a.history_.epoch == list(range(6))
    after = (tmp_path / "shared.csv").read_bytes()
    assert after.startswith(before)  # nothing written before is removed or changed
    rows = [r["epoch"] for r in _csv(tmp_path / "shared.csv")]
    # A's 0..3 (3 logged before the crash, kept: B wrote since), B's 0..5, A's 3..5 again
    assert rows == ["0", "1", "2", "3", "0", "1", "2", "3", "4", "5", "3", "4", "5"]
    assert sorted(os.listdir(tmp_path)) == ["shared.csv"]


def test_a_resumed_run_logging_elsewhere_leaves_the_first_log_alone(tmp_path):
    _log_run(tmp_path, "bk", "a.csv", crash=3)
    first = (tmp_path / "a.csv").read_bytes()
    (tmp_path / "b.csv").write_text("epoch,loss,accuracy\n3,0.5,0.25\n4,0.5,0.25\n")
    _log_run(tmp_path, "bk", "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == first  # its killed run's row 3 stays
    assert [r["epoch"] for r in _csv(tmp_path / "b.csv")] == ["3", "4", "3", "4", "5"]
    assert [r["loss"] for r in _csv(tmp_path / "b.csv")][:2] == ["0.5", "0.5"]


def test_a_resumed_run_replaces_only_its_own_row_of_the_epoch_trained_again(tmp_path):
    _log_run(tmp_path, "bk", "log.csv", crash=3)
    assert [r["epoch"] for r in _csv(tmp_path / "log.csv")] == ["0", "1", "2", "3"]
    assert os.path.exists(tmp_path / ".log.csv.lock")  # the killed run's mark, for its rerun
    _log_run(tmp_path, "bk", "log.csv")
    (tmp_path / "never").mkdir()
    never = _log_run(tmp_path / "never", "bk", "log.csv")
    assert _csv(tmp_path / "log.csv") == _csv(tmp_path / "never" / "log.csv")
    assert never.epochs_trained_ == 6 and sorted(os.listdir(tmp_path)) == ["log.csv", "never"]


def test_a_log_changed_since_the_killed_run_is_left_alone(tmp_path):
    _log_run(tmp_path, "bk", "log.csv", crash=3)
    path = tmp_path / "log.csv"
    path.write_bytes(path.read_bytes().replace(b"\r\n2,", b"\r\n7,"))  # edited by hand
    edited = path.read_bytes()
    with pytest.warns(RuntimeWarning, match=r"CSVLogger: '.*log\.csv' has changed since the "
                                            r"run this fit resumes last wrote it"):
        _log_run(tmp_path, "bk", "log.csv")
    assert path.read_bytes().startswith(edited)
    assert [r["epoch"] for r in _csv(path)] == ["0", "1", "7", "3", "3", "4", "5"]


def _unchanged(model, before):
    """The model is as ``before`` (weights, seed) and untrained: nothing was restored."""
    assert model.epochs_trained_ == 0 and model.history_ is None
    assert model.seed == before[1]
    assert _difference(model.get_weights(), before[0]) == 0.0


@pytest.mark.parametrize("change, match", [
    (dict(alpha=0.01), r"alpha 0\.0 there, 0\.01 here"),
    (dict(batch_size=8), r"batch_size 16 there, 8 here"),
    (dict(clip_norm=1.0), r"clip_norm None there, 1\.0 here"),
    (dict(shuffle=False), r"shuffle True there, False here"),
    (dict(x=_data()[0] + 1e-9), r"other data \(the same shapes, other values\)"),
    (dict(x=_data(60)[0], y=_data(60)[1]), r"other data \(x: shape \(40, 5\) there, shape "
                                           r"\(48, 5\) here, x_val: shape \(10, 5\) there, "
                                           r"shape \(12, 5\) here\)"),
    (dict(sample_weight=np.ones(50)), r"other data \(sample_weight: none there, shape \(40,\) "
                                      r"here"),
    (dict(validation_split=0.3), r"other data"),
])
def test_a_backup_of_another_run_is_refused_saying_what_differs(tmp_path, change, match):
    _readme_run("numpy", tmp_path, crash=2)
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend="numpy")
    before = (model.get_weights(), model.seed)
    x, y = change.pop("x", _data()[0]), change.pop("y", _data()[1])
    settings = dict(dict(epochs=6, validation_split=0.2, batch_size=16), **change)
    with pytest.raises(ValueError, match=r"the backup '.*backup-from-epoch-0\.npz' was made by "
                                         rf"another run than this fit: {match}.*delete it"):
        model.fit(x, y, callbacks=_pattern_callbacks(tmp_path), **settings)
    _unchanged(model, before)


@pytest.mark.parametrize("before, after, match", [
    (mlp.EarlyStopping(monitor="val_accuracy", patience=3),
     mlp.EarlyStopping(monitor="val_loss", patience=3),
     r"3:EarlyStopping was built with other settings \(monitor 'val_accuracy' there, "
     r"'val_loss' here\)"),
    (mlp.EarlyStopping(patience=3, mode="max", min_delta=0.1),
     mlp.EarlyStopping(patience=4, min_delta=0.1),
     r"3:EarlyStopping was built with other settings \(mode 'max' there, 'auto' here; "
     r"patience 3 there, 4 here\)"),
    (mlp.ReduceLROnPlateau(monitor="val_accuracy"), mlp.ReduceLROnPlateau(monitor="loss"),
     r"3:ReduceLROnPlateau was built with other settings \(monitor 'val_accuracy' there, "
     r"'loss' here\)"),
    (mlp.ReduceLROnPlateau(factor=0.5, min_lr=1e-4), mlp.ReduceLROnPlateau(factor=0.2),
     r"3:ReduceLROnPlateau was built with other settings \(factor 0\.5 there, 0\.2 here; "
     r"min_lr 0\.0001 there, 0\.0 here\)"),
], ids=["stop-monitor", "stop-mode-patience", "plateau-monitor", "plateau-factor"])
def test_a_backup_of_a_watching_callback_built_otherwise_is_refused(tmp_path, before, after,
                                                                    match):
    """The best value a backup holds means something only for the metric, mode and
    thresholds it was counted with: a rerun with other settings is refused before anything
    is restored, saying what differs."""
    _readme_run("numpy", tmp_path, crash=3, callbacks=[*_pattern_callbacks(tmp_path), before])
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend="numpy")
    old = (model.get_weights(), model.seed)
    with pytest.raises(ValueError, match=r"the backup '.*backup-from-epoch-0\.npz' was made by "
                                         r"another run than this fit: its callback " + match
                                         + r"; build it as that run did to resume"):
        model.fit(*_data(), epochs=6, validation_split=0.2, batch_size=16,
                  callbacks=[*_pattern_callbacks(tmp_path), after])
    _unchanged(model, old)
    resumed = _readme_run("numpy", tmp_path, callbacks=[*_pattern_callbacks(tmp_path), before])
    assert 3 < resumed.epochs_trained_ <= 6 and not (tmp_path / "backup").exists()


@pytest.mark.parametrize("build, fit, match", [
    (dict(seed=5), {}, r"another model than this fit's: seed \d+ there, 5 here"),
    (dict(activation="tanh"), {}, r"another model than this fit's: activation 'relu' there, "
                                  r"'tanh' here"),
    ({}, dict(optimizer="sgd"), r"another optimizer \(Adam.*\) than this fit's \(SGD"),
])
def test_a_backup_of_another_model_or_optimizer_is_refused(tmp_path, build, fit, match):
    _readme_run("numpy", tmp_path, crash=2)
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend="numpy", **build)
    before = (model.get_weights(), model.seed)
    with pytest.raises(ValueError, match=rf"the backup '.*' was made with {match}.*delete it"):
        model.fit(*_data(), epochs=6, validation_split=0.2, batch_size=16,
                  callbacks=_pattern_callbacks(tmp_path), **fit)
    _unchanged(model, before)


def test_a_trained_model_with_a_drawn_seed_is_told_which_seed_resumes(tmp_path):
    crashed = _readme_run("numpy", tmp_path, crash=2)
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend="numpy")
    model.epochs_trained_ = 0
    model.history_ = mlp.History()  # not a fresh model: it keeps its own seed
    with pytest.raises(ValueError, match=rf"seed {crashed.seed} there, {model.seed} here \(this "
                                         rf"model's seed was drawn; build it with "
                                         rf"seed={crashed.seed} to resume"):
        model.fit(*_data(), epochs=6, validation_split=0.2, batch_size=16,
                  callbacks=_pattern_callbacks(tmp_path))


def test_a_rerun_asking_for_fewer_epochs_than_backed_up_is_refused(tmp_path):
    crashed = _readme_run("numpy", tmp_path, crash=3)  # 3 epochs backed up
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend="numpy")
    before = (model.get_weights(), model.seed)
    with pytest.raises(ValueError, match=r"holds 3 epochs of this fit, more than the epochs=2 "
                                         r"it asks for: ask for epochs=3 or more"):
        model.fit(*_data(), epochs=2, validation_split=0.2, batch_size=16,
                  callbacks=_pattern_callbacks(tmp_path))
    _unchanged(model, before)
    history = model.fit(*_data(), epochs=3, validation_split=0.2, batch_size=16,
                        callbacks=_pattern_callbacks(tmp_path))  # as many: nothing to train
    assert model.seed == crashed.seed and model.epochs_trained_ == 3
    assert history.epoch == [0, 1, 2] and not (tmp_path / "backup").exists()


def _damage_states(path, change):
    import json

    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    training = json.loads(str(arrays["training"]))
    change(training["callbacks"])
    arrays["training"] = np.asarray(json.dumps(training))
    np.savez(path, **arrays)


class Refuses(mlp.Callback):
    """A callback whose state cannot be put back."""

    def get_state(self):
        return {"n": 1}

    def set_state(self, state):
        raise ValueError("not this state")


@pytest.mark.parametrize("change, extra, error, match", [
    (lambda s: s["2:ReduceLROnPlateau"].pop("wait"), [], mlp.ModelFileError,
     r"'.*backup-from-epoch-0\.npz' holds a damaged backup: the state of callback "
     r"2:ReduceLROnPlateau holds \['best', 'cooling', 'reductions', 'settings'\], where "
     r"ReduceLROnPlateau keeps \['best', 'cooling', 'reductions', 'settings', 'wait'\]"),
    (lambda s: s.update({"2:ReduceLROnPlateau": [1, 2]}), [], mlp.ModelFileError,
     r"holds a damaged .*2:ReduceLROnPlateau'? (holds|is not a callback's state \()list"),
    (lambda s: s["2:ReduceLROnPlateau"].update(reductions=5), [], ValueError,
     r"the backup '.*' could not be restored \(.*\); the model is as it was"),
    (lambda s: s.update({"4:EarlyStopping": {}}), [], ValueError,
     r"it holds the state of a callback 4:EarlyStopping, which this fit does not have"),
    (lambda s: s.update({"3:Refuses": {"n": 2}}), [Refuses()], ValueError,
     r"could not be restored \(not this state\); the model is as it was"),
    (lambda s: s["run"].update(alpha="x"), [], ValueError, r"alpha 'x' there, 0\.0 here"),
    (lambda s: s.update(run=3), [], mlp.ModelFileError, r"its run record is not a JSON"),
])
def test_a_damaged_backup_is_refused_whole_and_changes_nothing(tmp_path, change, extra, error,
                                                               match):
    _readme_run("numpy", tmp_path, crash=3, callbacks=[*_pattern_callbacks(tmp_path), *extra])
    _damage_states(tmp_path / "backup" / "backup-from-epoch-0.npz", change)
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend="numpy")
    before = (model.get_weights(), model.seed)
    with pytest.raises(error, match=match):
        model.fit(*_data(), epochs=6, validation_split=0.2, batch_size=16,
                  callbacks=[*_pattern_callbacks(tmp_path), *extra])
    _unchanged(model, before)
    assert model.optimizer_ is None and model.optimizer_state_ is None
    assert ".mlp-backup.lock" not in os.listdir(tmp_path / "backup")  # let go


# ------------------------------------------------------------ one fit per folder
def test_a_backup_folder_in_use_is_refused_and_freed_after(tmp_path):
    x, y = _data()
    refused = []

    def other_thread():  # another model, the same folder, while the first trains
        try:
            _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(tmp_path / "b")])
        except RuntimeError as exc:
            refused.append(str(exc))

    def second_fit(epoch, logs):
        if epoch == 0:
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()

    _model("numpy").fit(x, y, epochs=2, callbacks=[second_fit,
                                                   mlp.BackupAndRestore(tmp_path / "b")])
    assert len(refused) == 1 and re.search(
        rf"BackupAndRestore: the folder '.*b' is in use by another fit \(process {os.getpid()} "
        r"on .*; lock file '.*\.mlp-backup\.lock'\): two runs cannot share", refused[0])
    _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(tmp_path / "b")])
    assert os.listdir(tmp_path) == []
    # two in one fit: the second is refused, and the first lets the folder go
    with pytest.raises(RuntimeError, match=r"is in use by another fit"):
        _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(tmp_path / "b"),
                                                       mlp.BackupAndRestore(tmp_path / "b")])
    _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(tmp_path / "b")])
    assert os.listdir(tmp_path) == []


HOLDER = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
import mlp

def wait(epoch, logs):
    print("training", flush=True)
    sys.stdin.readline()

x = np.random.default_rng(0).normal(size=(20, 5)); y = np.arange(20) % 3
mlp.MLP([5, 3], loss="cross_entropy", seed=0).fit(
    x, y, epochs=1, callbacks=[wait, mlp.BackupAndRestore({folder!r})])
print("done", flush=True)
"""


def test_another_process_training_in_the_folder_is_refused(tmp_path):
    """Two processes, one folder: the second is refused (naming the first) while the
    first trains, and takes the folder once it has ended."""
    folder = str(tmp_path / "shared")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=ROOT, folder=folder)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "training\n"
        model = _model("numpy")
        with pytest.raises(RuntimeError, match=rf"in use by another fit \(process "
                                               rf"{holder.pid} on "):
            model.fit(*_data(), epochs=1, callbacks=[mlp.BackupAndRestore(folder)])
        assert model.epochs_trained_ == 0
        out, _ = holder.communicate("go on\n", timeout=120)
    finally:
        holder.kill()
    assert out == "done\n" and holder.returncode == 0
    model.fit(*_data(), epochs=1, callbacks=[mlp.BackupAndRestore(folder)])
    assert not os.path.exists(folder)


def test_without_flock_a_lock_file_of_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    from mlp.callbacks import _locks

    monkeypatch.setattr(_locks, "fcntl", None)  # as where flock is missing
    folder = tmp_path / "b"
    folder.mkdir()
    lock = folder / ".mlp-backup.lock"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid names no process now
    lock.write_text(f"{child.pid} {socket.gethostname()}\n")
    x, y = _data()
    _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(folder)])
    assert os.listdir(folder) == []  # the stale lock taken over, then let go
    lock.write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a process that runs
    with pytest.raises(RuntimeError, match=rf"in use by another fit \(process {os.getppid()}"):
        _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(folder)])
    lock.write_text(f"{child.pid} another-machine\n")  # its pids mean nothing here
    with pytest.raises(RuntimeError, match=rf"process {child.pid} on another-machine"):
        _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(folder)])


def test_a_completed_fit_removes_only_the_folder_it_made(tmp_path):
    x, y = _data()
    _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(tmp_path / "a" / "b")])
    assert os.listdir(tmp_path) == []  # its folder removed, and the parent made for it
    (tmp_path / "runs").mkdir()
    _model("numpy").fit(x, y, epochs=1, callbacks=[
        mlp.BackupAndRestore(tmp_path / "runs" / "exp1" / "deep" / "backup")])
    assert os.listdir(tmp_path) == ["runs"] and os.listdir(tmp_path / "runs") == []
    mine = tmp_path / "mine"
    mine.mkdir()
    _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.BackupAndRestore(mine)])
    assert os.listdir(mine) == []  # the user's folder stays, emptied of the backup and lock
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"BackupAndRestore directory '.*notes\.txt' "
                                                 r"is a file, not a folder"):
        _model("numpy").fit(x, y, epochs=1,
                            callbacks=[mlp.BackupAndRestore(tmp_path / "notes.txt")])
    folder = read_only_folder(tmp_path)
    if folder is not None:
        with pytest.raises(OSError, match=r"BackupAndRestore cannot create its folder"):
            _model("numpy").fit(x, y, epochs=1, callbacks=[
                mlp.BackupAndRestore(os.path.join(folder, "backup"))])


def test_a_resumed_fit_removes_the_folders_the_crashed_run_made_and_only_those(tmp_path):
    x, y = _data()
    folder = tmp_path / "runs" / "exp1" / "backup"
    with pytest.raises(Crashed, match="crash"):
        _model("numpy").fit(x, y, epochs=3, callbacks=[mlp.BackupAndRestore(folder), Crash(1)])
    (tmp_path / "runs" / "notes.txt").write_text("x")  # the user's, in a folder the run made
    model = _model("numpy")
    model.fit(x, y, epochs=3, callbacks=[mlp.BackupAndRestore(folder)])
    assert model.epochs_trained_ == 3
    assert os.listdir(tmp_path) == ["runs"] and os.listdir(tmp_path / "runs") == ["notes.txt"]


# ------------------------------------------------------------ checkpoints
def test_model_checkpoint_every_n_epochs(backend, tmp_path):
    x, y = _data()
    opt = OPTIMIZERS["adam+cosine"]
    weights = []
    model = _model(backend)
    checkpoint = mlp.ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}.npz", every_n_epochs=2)
    model.fit(x, y, epochs=5, optimizer=opt, callbacks=[
        checkpoint, lambda e, logs: weights.append(model.get_weights())], **FIT)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-02.npz", "ckpt-04.npz"]
    assert checkpoint.saved == [str(tmp_path / "ckpt-02.npz"), str(tmp_path / "ckpt-04.npz")]
    four = mlp.load(tmp_path / "ckpt-04.npz", backend=backend)
    assert _difference(four.get_weights(), weights[3]) == 0.0
    assert four.epochs_trained_ == 4 and four.history_.epoch == [0, 1, 2, 3]
    four.fit(x, y, epochs=1, **FIT)  # a checkpoint resumes like any saved model
    _assert_same_weights(four.get_weights(), model.get_weights(), backend.name)


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = _data()
    xv, yv = _data(20, seed=5)
    model = _model("numpy")
    checkpoint = mlp.ModelCheckpoint(tmp_path / "best-{epoch}-{val_accuracy:.2f}.npz",
                                     monitor="val_accuracy", save_best_only=True)
    history = model.fit(x, y, epochs=8, optimizer=O.Adam(0.05), validation_data=(xv, yv),
                        callbacks=[checkpoint], **FIT)
    accuracy = history.history["val_accuracy"]
    improved = [e for e in range(8) if accuracy[e] > max(accuracy[:e], default=-1)]
    assert [int(os.path.basename(p).split("-")[1]) - 1 for p in checkpoint.saved] == improved
    assert checkpoint.best == max(accuracy)
    last = mlp.load(checkpoint.saved[-1])
    assert last.evaluate(xv, yv)["accuracy"] == pytest.approx(max(accuracy), abs=1e-12)
    # a later fit only saves what beats the best of the epochs before it
    again = mlp.ModelCheckpoint(tmp_path / "more-{epoch}.npz", monitor="val_accuracy",
                                save_best_only=True)
    model.fit(x, y, epochs=1, validation_data=(xv, yv), callbacks=[again], **FIT)
    assert again.best == max(model.history_.history["val_accuracy"])
    assert len(again.saved) == int(model.history_.history["val_accuracy"][-1] > max(accuracy))


def test_model_checkpoint_refuses_names_it_cannot_fill(tmp_path):
    x, y = _data()
    with pytest.raises(ValueError, match=r"names val_accuracy, which this fit does not log; "
                                         r"it can name epoch and loss"):
        _model("numpy").fit(x, y, epochs=1, callbacks=[
            mlp.ModelCheckpoint(tmp_path / "{val_accuracy}.npz")])
    with pytest.raises(ValueError, match=r"not a valid name pattern"):
        mlp.ModelCheckpoint(tmp_path / "ckpt-{epoch.npz")
    with pytest.raises(ValueError, match=r"ModelCheckpoint saves the optimizer, but cannot save"):
        _model("numpy").fit(x, y, epochs=1, optimizer=O.GradientTransformation(
            lambda p: None, lambda g, s, p=None: (g, s)), callbacks=[
            mlp.ModelCheckpoint(tmp_path / "c.npz")])


@pytest.mark.parametrize("make", [
    lambda: mlp.ModelCheckpoint("x.npz", monitor="val_acc"),
    lambda: mlp.ReduceLROnPlateau(monitor="val_acc"),
    lambda: mlp.EarlyStopping(monitor="val_acc"),
], ids=["checkpoint", "plateau", "early_stopping"])
def test_every_watching_callback_refuses_an_unknown_metric(make):
    with pytest.raises(ValueError, match=r"unknown metric 'val_acc'; known metrics: loss, "
                                         r"val_loss, .*accuracy, val_accuracy, r2, val_r2"):
        make()


def test_watching_callbacks_know_the_direction():
    assert mlp.metric_mode("val_accuracy") == "max" and mlp.metric_mode("r2") == "max"
    plateau = mlp.ReduceLROnPlateau(monitor="val_r2", min_delta=0.1)
    assert plateau._improves(0.5, 0.3, "val_r2") and not plateau._improves(0.35, 0.3, "val_r2")
    plateau = mlp.ReduceLROnPlateau(monitor="loss")
    assert plateau._improves(0.2, 0.3, "loss") and not plateau._improves(0.4, 0.3, "loss")


# ------------------------------------------------------------ CSV log
def test_csv_logger_writes_every_value_and_appends(tmp_path):
    x, y = _data()
    xv, yv = _data(20, seed=5)
    path = tmp_path / "log.csv"
    model = _model("numpy")
    model.fit(x, y, epochs=3, validation_data=(xv, yv), callbacks=[mlp.CSVLogger(path)], **FIT)
    model.fit(x, y, epochs=2, validation_data=(xv, yv), callbacks=[mlp.CSVLogger(path)], **FIT)
    rows = _csv(path)
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [int(r["epoch"]) for r in rows] == list(range(5))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # full precision
        assert [float(r[key]) for r in rows] == model.history_.history[key]
    model.fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(path, append=False)], **FIT)
    assert _csv(path) == [{"epoch": "5", "loss": repr(model.history_.history["loss"][-1]),
                           "accuracy": repr(model.history_.history["accuracy"][-1])}]


# ------------------------------------------------------------ plateau
def test_reduce_lr_on_plateau_scales_the_state_without_recompiling(backend):
    """``min_delta`` so large that nothing counts as an improvement after the first
    epoch: with patience 2 the rate halves after epochs 2, 4 and 6, then stays at
    ``min_lr``."""
    x, y = _data()
    opt = O.SGD(0.1, momentum=0.5)
    plateau = mlp.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=1e9,
                                    min_lr=0.0125)
    model = _model(backend)
    model.fit(x, y, epochs=10, optimizer=opt, callbacks=[plateau], **FIT)
    assert plateau.reductions == [(2, 0.05), (4, 0.025), (6, 0.0125)]
    assert O.current_learning_rate(opt, model.optimizer_state_) == 0.0125
    assert O.learning_rate_scale(model.optimizer_state_) == 0.125
    if backend.compiles:  # the scale is state: one compiled length (1 epoch), one compilation
        run = training.run_function(model, opt, 0.0, None)
        compiled = getattr(run, "__wrapped__", run)  # under the backend's 64-bit scope
        assert compiled._cache_size() == 1
    # the same as setting the scale by hand after those epochs (inside fit: on JAX,
    # with_learning_rate_scale outside a model's method truncates float64 to float32)
    manual = _model(backend)

    def by_hand(epoch, logs):
        scale = {2: 0.5, 4: 0.25, 6: 0.125}.get(epoch)
        if scale is not None:
            manual.optimizer_state_ = O.with_learning_rate_scale(manual.optimizer_state_, scale)

    manual.fit(x, y, epochs=10, optimizer=opt, callbacks=[by_hand], **FIT)
    _assert_same_weights(model.get_weights(), manual.get_weights(), backend.name)


def test_reduce_lr_on_plateau_needs_a_learning_rate_and_a_logged_metric():
    x, y = _data()
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau monitors 'val_loss', which this "
                                         r"fit does not log.*validation_data"):
        _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.ReduceLROnPlateau()])
    no_rate = O.GradientTransformation(lambda p: None, lambda g, s, p=None: (g, s))
    with pytest.raises(ValueError, match=r"needs an optimizer with a learning rate"):
        _model("numpy").fit(x, y, epochs=1, optimizer=no_rate,
                            callbacks=[mlp.ReduceLROnPlateau(monitor="loss")])


# ------------------------------------------------------------ learning curves
def test_history_plot_draws_training_and_validation_curves(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    x, y = _data()
    model = _model("numpy")
    history = model.fit(x, y, epochs=4, validation_split=0.2, **FIT)
    figure = history.plot(path=tmp_path / "curve.png")
    assert isinstance(figure, matplotlib.figure.Figure)
    panels = {ax.get_title(): [line.get_label() for line in ax.get_lines()]
              for ax in figure.axes}
    assert panels == {"loss": ["loss", "val_loss"], "accuracy": ["accuracy", "val_accuracy"]}
    loss_line = figure.axes[0].get_lines()[0]
    assert list(loss_line.get_xdata()) == [1, 2, 3, 4]
    assert list(loss_line.get_ydata()) == history.history["loss"]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # into given Axes
    from matplotlib.figure import Figure

    axes = Figure().subplots(1, 2)
    assert history.plot(ax=axes) is axes[0].figure
    with pytest.raises(ValueError, match=r"a sequence of 2 \(one per panel\), got 3"):
        history.plot(ax=list(Figure().subplots(1, 3)))


def test_history_to_dataframe():
    pytest.importorskip("pandas")
    x, y = _data()
    model = _model("numpy")
    model.fit(x, y, epochs=2, **FIT)
    model.fit(x, y, epochs=2, validation_data=(x[:10], y[:10]), **FIT)
    frame = model.history_.to_dataframe()
    assert list(frame.index) == [0, 1, 2, 3] and frame.index.name == "epoch"
    assert list(frame.columns) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert frame["val_loss"].isna().tolist() == [True, True, False, False]


def test_history_plot_checks_its_path_first_and_writes_as_save_does(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    x, y = _data()
    model = _model("numpy")
    history = model.fit(x, y, epochs=2, **FIT)
    missing = str(tmp_path / "no" / "curve.png")
    with pytest.raises(FileNotFoundError, match=re.escape(f"cannot save the figure to "
                                                          f"{missing!r}: folder")):
        history.plot(missing)
    with pytest.raises(IsADirectoryError, match=r"cannot save the figure to 'no/': it names a "
                                                r"folder"):
        history.plot("no/")
    with pytest.raises(IsADirectoryError, match=r"cannot save the figure to '.*': it is a "
                                                r"folder; give a file name such as "
                                                r"'history\.png'"):
        history.plot(tmp_path)
    with pytest.raises(ValueError, match=r"History.plot cannot save the figure to '.*curve\.xyz'"
                                         r": matplotlib does not write 'xyz' files \(it writes "
                                         r".*png"):
        history.plot(tmp_path / "curve.xyz")
    target, link = tmp_path / "target.png", tmp_path / "link.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    os.symlink(target, link)
    history.plot(link)
    assert os.path.islink(link) and target.read_bytes()[:4] == b"\x89PNG"
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o640)
    history.plot(tmp_path / "curve.pdf")
    assert (tmp_path / "curve.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(os.listdir(tmp_path)) == ["curve.pdf", "link.png", "target.png"]


def test_without_flock_a_log_lock_kept_for_its_rerun_is_free_to_take(tmp_path, monkeypatch):
    """Where the lock file itself is the lock (no ``flock``): the one a failed fit keeps
    (for its rerun's check) does not lock the log, and a log in use is still refused."""
    monkeypatch.setattr(mlp.callbacks._locks, "fcntl", None)
    _log_run(tmp_path, "bk", "log.csv", crash=3)
    assert (tmp_path / ".log.csv.lock").read_text().startswith("released\n")
    x, y = _data()
    with pytest.raises(RuntimeError, match=r"the log '.*log\.csv' is in use by another fit"):
        _model("numpy").fit(x, y, epochs=1, callbacks=[mlp.CSVLogger(tmp_path / "log.csv"),
                                                       mlp.CSVLogger(tmp_path / "log.csv")])
    _log_run(tmp_path, "bk", "log.csv")
    assert [r["epoch"] for r in _csv(tmp_path / "log.csv")] == [str(e) for e in range(6)]
    assert sorted(os.listdir(tmp_path)) == ["log.csv"]


@pytest.mark.parametrize("case", ["plain", "validation_split", "validation_data", "weighted"])
def test_the_runs_data_is_identified_alike_on_every_backend(backend, case):
    """`BackupAndRestore` identifies a run's data by its fingerprint: the data as given,
    not the rows and weights a backend that pads them adds (`TrainingData.given`), so a
    backup made on NumPy resumes on JAX (or a mesh) and back."""
    from mlp.io import data_fingerprint
    from mlp.training import training_data

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(45, 5)), rng.integers(0, 3, size=45)
    kw = {"plain": dict(), "validation_split": dict(validation_split=0.3),
          "validation_data": dict(validation_data=(x[:13], y[:13])),
          "weighted": dict(validation_split=0.3,
                           sample_weight=rng.uniform(0.5, 2.0, size=45))}[case]
    prints = []
    for on in (backend, "numpy"):
        model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", backend=on, seed=1)
        with model.backend.precision(model.dtype):
            data = training_data(model, x, y, kw.get("validation_data"),
                                 kw.get("validation_split"), kw.get("sample_weight"))
            prints.append(data_fingerprint(model, data))
    assert prints[0] == prints[1]
    assert prints[0]["shapes"]["x"] == [45 - round(45 * kw.get("validation_split", 0)), 5]
    assert ("sample_weight" in prints[0]["shapes"]) == (case == "weighted")
