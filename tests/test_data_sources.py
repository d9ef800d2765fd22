"""Data that is not in memory (`mlp.data`): arrays on disk read by batch, streams of
batches, reading ahead in a background thread.

The promise pinned here: with the same seed, an array on disk trains to the weights of
the same array in memory (bit for bit on NumPy and PyTorch, in-place and pure paths;
float64 1e-10 elsewhere), a resumed fit continues exactly, and only the rows of one
batch are read at a time.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

import mlp
from mlp.data import is_array_on_disk, is_stream, read_rows

N, F, C = 90, 5, 3
EXACT = ("numpy", "torch")  # backends whose fast path the disk run must equal bit for bit


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, F))
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    return x, labels


def _weights(model):
    return [a for pair in model.get_weights() for a in pair]


def _assert_same(a, b, exact):
    for p, q in zip(_weights(a), _weights(b), strict=True):
        if exact:
            np.testing.assert_array_equal(p, q)
        else:
            np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)


def _model(backend, **kw):
    return mlp.MLP([F, 8, C], loss="cross_entropy", dtype="float64", seed=3, backend=backend,
                   **kw)


# ------------------------------------------------------------ arrays on disk
def _memmap(tmp_path, array, name="x.dat", dtype=None):
    mm = np.memmap(tmp_path / name, dtype=dtype or array.dtype, mode="w+", shape=array.shape)
    mm[:] = array
    mm.flush()
    return np.memmap(tmp_path / name, dtype=dtype or array.dtype, mode="r", shape=array.shape)


def _h5(tmp_path, array, name="x"):
    h5py = pytest.importorskip("h5py")
    handle = h5py.File(tmp_path / f"{name}.h5", "w")
    return handle.create_dataset(name, data=array)


def _zarr(tmp_path, array, name="x"):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(str(tmp_path / f"{name}.zarr"), mode="w", shape=array.shape,
                        dtype=array.dtype, chunks=(16,) + array.shape[1:])
    z[:] = array
    return z


ON_DISK = {"memmap": _memmap, "h5py": _h5, "zarr": _zarr}


@pytest.mark.parametrize("kind", ON_DISK)
def test_an_array_on_disk_trains_as_the_same_array_in_memory(backend, kind, tmp_path):
    """Shuffled batches with a partial last one, a validation split by index, row weights:
    the same weights, losses and validation scores as in memory."""
    x, y = _data()
    w = np.random.default_rng(1).uniform(0.5, 2.0, N)
    on_disk = ON_DISK[kind](tmp_path, x)
    settings = dict(epochs=3, batch_size=16, validation_split=0.2, sample_weight=w)
    memory, disk = _model(backend), _model(backend)
    h_mem = memory.fit(x, y, **settings)
    h_disk = disk.fit(on_disk, y, **settings)
    _assert_same(memory, disk, backend.name in EXACT)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_disk.history[key], h_mem.history[key], rtol=1e-10)


def test_the_pure_path_on_disk_is_bit_identical_too(tmp_path):
    """NumPy without its in-place executor: the pure step on each batch read."""
    from mlp.backends._numpy import NumpyBackend

    x, y = _data()
    pure = NumpyBackend(fast=False)
    memory, disk = _model(pure), _model(pure)
    memory.fit(x, y, epochs=2, batch_size=16, optimizer="adam")
    disk.fit(_memmap(tmp_path, x), _memmap(tmp_path, y, "y.dat"), epochs=2, batch_size=16,
             optimizer="adam")
    _assert_same(memory, disk, True)


class Recording:
    """An array on disk that records every read (the rows asked for)."""

    def __init__(self, array):
        self.array, self.reads = array, []
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, index):
        rows = np.arange(self.shape[0])[index]
        self.reads.append(np.atleast_1d(rows))
        return self.array[index]


def test_only_the_rows_of_one_batch_are_read_at_a_time_in_sorted_order(backend,
                                                                      monkeypatch):
    """With windows of one batch (`mlp.data.WINDOW_BYTES`; by default a window holds
    about 32 MiB of rows): one sorted read per batch (the partial last batch read with the
    last full one: 90 rows = 5 x 16 + 10), every row once per epoch."""
    monkeypatch.setattr(mlp.data, "WINDOW_BYTES", 16 * 8 * F)
    x, y = _data()
    recorded = Recording(x)
    model = _model(backend)
    model.fit(recorded, y, epochs=2, batch_size=16)
    training = recorded.reads[1:]  # (the first read checks two rows)
    assert len(training) == 2 * 5
    assert [len(r) for r in training] == [16, 16, 16, 16, 26] * 2
    assert all(np.all(np.diff(r) > 0) for r in training)
    for epoch in range(2):
        rows = np.concatenate(training[epoch * 5:(epoch + 1) * 5])
        assert sorted(rows.tolist()) == list(range(N))


@pytest.mark.parametrize("kind", ON_DISK)
def test_evaluate_and_predict_read_arrays_on_disk_by_blocks(backend, kind, tmp_path,
                                                            monkeypatch):
    monkeypatch.setattr(mlp.data, "BLOCK_BYTES", 8 * F * 20)  # blocks of 20 rows
    x, y = _data()
    model = _model(backend)
    model.fit(x, y, epochs=2, batch_size=16)
    on_disk = ON_DISK[kind](tmp_path, x)
    expected, got = model.evaluate(x, y), model.evaluate(on_disk, y)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-10, abs=1e-12)
    to = model.backend.to_numpy
    np.testing.assert_allclose(to(model.predict(on_disk)), to(model.predict(x)), rtol=1e-10)
    np.testing.assert_array_equal(to(model.predict_classes(on_disk)),
                                  to(model.predict_classes(x)))


def test_a_regression_on_disk_evaluates_r2_from_block_sums(backend, tmp_path, monkeypatch):
    monkeypatch.setattr(mlp.data, "BLOCK_BYTES", 8 * F * 32)
    x, _ = _data()
    y = x[:, :2] * 3 + 1
    model = mlp.MLP([F, 8, 2], dtype="float64", seed=1, backend=backend)
    model.fit(x, y, epochs=3, batch_size=8)
    w = np.linspace(0.5, 1.5, N)
    expected = model.evaluate(x, y, sample_weight=w)
    got = model.evaluate(_memmap(tmp_path, x), _memmap(tmp_path, y, "y.dat"), sample_weight=w)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-10, abs=1e-12)


def test_validation_data_on_disk_scores_as_in_memory(backend, tmp_path):
    x, y = _data()
    xv, yv = _data(seed=5)
    a, b = _model(backend), _model(backend)
    ha = a.fit(x, y, epochs=2, batch_size=32, validation_data=(xv, yv))
    hb = b.fit(x, y, epochs=2, batch_size=32,
               validation_data=(_memmap(tmp_path, xv), _memmap(tmp_path, yv, "y.dat")))
    np.testing.assert_allclose(hb.history["val_loss"], ha.history["val_loss"], rtol=1e-10)
    np.testing.assert_allclose(hb.history["val_accuracy"], ha.history["val_accuracy"])


def test_a_resumed_fit_on_disk_continues_exactly(backend, tmp_path):
    """Two fits (through a file saved with the optimizer) end where one fit ends, and a
    crashed fit resumed from its backup ends there too."""
    x, y = _data()
    on_disk = _memmap(tmp_path, x)
    one = _model(backend)
    one.fit(on_disk, y, epochs=4, batch_size=16, optimizer="adam")
    first = _model(backend)
    first.fit(on_disk, y, epochs=2, batch_size=16, optimizer="adam")
    first.save(tmp_path / "m.npz", include_optimizer=True)
    second = mlp.load(tmp_path / "m.npz", backend=backend)
    second.fit(on_disk, y, epochs=2, batch_size=16)
    _assert_same(one, second, backend.name in EXACT)

    class Crashed(BaseException):
        pass

    class Crash(mlp.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                raise Crashed

    backup = tmp_path / "backup"
    crashed = _model(backend)
    with pytest.raises(Crashed):
        crashed.fit(on_disk, y, epochs=4, batch_size=16, optimizer="adam",
                    callbacks=[mlp.BackupAndRestore(backup), Crash()])
    resumed = _model(backend)
    resumed.fit(on_disk, y, epochs=4, batch_size=16, optimizer="adam",
                callbacks=[mlp.BackupAndRestore(backup)])
    assert resumed.epochs_trained_ == 4
    _assert_same(one, resumed, backend.name in EXACT)


def test_arrays_on_disk_get_errors_in_the_users_terms(tmp_path):
    x, y = _data()
    model = _model("numpy")
    text = np.memmap(tmp_path / "s.dat", dtype="U2", mode="w+", shape=(N, F))
    with pytest.raises(TypeError, match=r"x must be an array of real numbers.*<U2"):
        model.fit(text, y, epochs=1)
    with pytest.raises(ValueError, match="x and y have different numbers of samples: 90 and 40"):
        model.fit(_memmap(tmp_path, x), y[:40], epochs=1)
    with pytest.raises(ValueError, match=r"x must be 2-D \(n_samples, 5\), got shape \(90, 4\)"):
        model.fit(_memmap(tmp_path, x[:, :4], "n.dat"), y, epochs=1)

    class SlicesOnly:
        shape, dtype = x.shape, x.dtype

        def __getitem__(self, index):
            if not isinstance(index, slice):
                raise TypeError("only slices")
            return x[index]

    with pytest.raises(TypeError, match=r"x \(SlicesOnly\) does not take a sorted array of "
                                        r"row numbers.*only slices"):
        model.fit(SlicesOnly(), y, epochs=1)
    with pytest.raises(ValueError, match="class_weight needs every row's label"):
        model.fit(_memmap(tmp_path, x), y, epochs=1, class_weight="balanced")
    assert model.epochs_trained_ == 0


def test_a_file_closed_mid_fit_stops_with_what_happened_keeping_the_epochs(tmp_path):
    h5py = pytest.importorskip("h5py")
    x, y = _data()
    handle = h5py.File(tmp_path / "d.h5", "w")
    dataset = handle.create_dataset("x", data=x)
    model = _model("numpy")

    def close(epoch, logs):
        if epoch == 1:
            handle.close()

    with pytest.raises(ValueError, match=r"x \(Dataset\) could not be read .*was its file "
                                         r"closed\?"):
        model.fit(dataset, y, epochs=4, batch_size=16, callbacks=[close])
    assert model.epochs_trained_ == 2
    with pytest.raises(ValueError, match=r"x \(Dataset\) cannot be read .*closed"):
        model.fit(dataset, y, epochs=1)
    _assert_no_reader_thread()


def test_arrays_on_disk_are_told_apart_without_importing_h5py_or_zarr(tmp_path):
    x = np.zeros((4, 2))
    assert is_array_on_disk(_memmap(tmp_path, x))
    assert not is_array_on_disk(x) and not is_array_on_disk([[1.0, 2.0]])
    code = ("import sys, numpy as np, mlp\n"
            f"m = np.memmap({str(tmp_path / 'p.dat')!r}, dtype='f8', mode='w+', shape=(8, 2))\n"
            "model = mlp.MLP([2, 3, 1], seed=0)\n"
            "model.fit(m, np.zeros(8), epochs=1, batch_size=4)\n"
            "model.predict(m)\n"
            "print('h5py' in sys.modules, 'zarr' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_read_rows_reads_sorted_and_gives_the_order_asked():
    class Sorted:
        def __init__(self, array):
            self.array, self.asked = array, []

        def __getitem__(self, index):
            self.asked.append(index)
            return self.array[index]

    array = np.arange(20.0).reshape(10, 2)
    source = Sorted(array)
    rows = np.array([7, 2, 9, 0])
    np.testing.assert_array_equal(read_rows(source, rows), array[rows])
    np.testing.assert_array_equal(source.asked[0], [0, 2, 7, 9])
    np.testing.assert_array_equal(read_rows(source, np.array([4, 3, 5])), array[[4, 3, 5]])
    assert source.asked[1] == slice(3, 6)  # consecutive rows: one slice


# ------------------------------------------------------------ streams
def _batches(x, y, size, w=None):
    return [(x[i:i + size], y[i:i + size]) + (() if w is None else (w[i:i + size],))
            for i in range(0, len(x), size)]


def test_a_list_and_a_function_of_batches_train_as_unshuffled_arrays(backend):
    x, y = _data()
    w = np.random.default_rng(2).uniform(0.5, 2.0, N)
    memory = _model(backend)
    memory.fit(x, y, epochs=3, batch_size=16, shuffle=False, sample_weight=w)
    listed, made = _model(backend), _model(backend)
    history = listed.fit(_batches(x, y, 16, w), epochs=3)
    made.fit(lambda: iter(_batches(x, y, 16, w)), epochs=3)
    _assert_same(memory, listed, backend.name in EXACT)
    _assert_same(listed, made, True)
    assert history.params["samples"] is None and history.params["batch_size"] is None
    np.testing.assert_allclose(history.history["loss"], memory.history_.history["loss"],
                               rtol=1e-10)


def test_a_dataloader_with_a_seeded_generator_is_reproducible(backend):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data()
    dataset = TensorDataset(torch.tensor(x), torch.tensor(y))

    def run():
        loader = DataLoader(dataset, batch_size=16, shuffle=True,
                            generator=torch.Generator().manual_seed(7))
        model = _model(backend)
        model.fit(loader, epochs=2, validation_data=(x[:20], y[:20]))
        return model

    a, b = run(), run()
    _assert_same(a, b, True)
    with pytest.raises(TypeError, match=r"y is None.*a dataset of rows gives one row at a "
                                        r"time: wrap it in torch.utils.data.DataLoader"):
        _model(backend).fit(dataset, epochs=1)
    assert a.history_.history.keys() >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    ordered = DataLoader(dataset, batch_size=16)  # the order of the arrays
    streamed, memory = _model(backend), _model(backend)
    streamed.fit(ordered, epochs=2)
    memory.fit(x, y, epochs=2, batch_size=16, shuffle=False)
    _assert_same(streamed, memory, backend.name in EXACT)


def test_a_one_shot_generator_is_refused_for_several_epochs_and_taken_for_one():
    x, y = _data()
    model = _model("numpy")
    with pytest.raises(ValueError, match=r"one-shot iterator \(generator\).*epochs=2.*"
                                         r"function returning a new iterator"):
        model.fit((b for b in _batches(x, y, 16)), epochs=2)
    assert model.epochs_trained_ == 0
    model.fit((b for b in _batches(x, y, 16)), epochs=1)
    assert model.epochs_trained_ == 1


def test_streams_get_errors_in_the_users_terms():
    x, y = _data()
    model = _model("numpy")
    with pytest.raises(ValueError, match="cannot be split - pass validation_data"):
        model.fit(_batches(x, y, 16), epochs=1, validation_split=0.2)
    with pytest.raises(ValueError, match="yields \\(x, y, sample_weight\\) batches"):
        model.fit(_batches(x, y, 16), epochs=1, sample_weight=np.ones(N))
    with pytest.raises(TypeError, match=r"batch 1 of the source is .*yields \(x, y\) or"):
        model.fit(lambda: iter([(x[:4], y[:4]), x[4:8]]), epochs=1)
    with pytest.raises(ValueError, match="labels must be in 0..2.*y of batch 0"):
        model.fit([(x[:4], np.full(4, 7))], epochs=1)
    with pytest.raises(TypeError, match="y is None; expected an array"):
        model.fit(x, epochs=1)
    with pytest.raises(TypeError, match=r"x is a source of batches \(list\), which yields the "
                                        r"targets too: call fit\(source, epochs=...\) without y"):
        model.fit(_batches(x, y, 16), y, epochs=1)
    with pytest.raises(ValueError, match="yielded no batch in epoch 1"):
        model.fit(lambda: iter([]), epochs=1)
    assert model.epochs_trained_ == 0
    assert is_stream(_batches(x, y, 16)) and not is_stream([[1.0, 2.0]])


def test_a_list_of_rows_is_an_x_and_a_list_of_odd_batches_a_source(backend):
    """A list of rows that are tuples of NumPy scalars (``list(zip(a, b))``) is an ``x``,
    as `predict` takes it, not a source of batches; a list of batches of the wrong
    shape (a tuple of 1 or 4 items, y None, dicts, no batch) gets the batch's message."""
    x, y = _data()
    rows = list(zip(*x.T))  # tuples of F NumPy scalars
    assert not is_stream(list(zip(x[:, 0], x[:, 1])))  # two columns: a 2-tuple per row
    model, memory = _model(backend), _model(backend)
    model.fit(rows, y, epochs=1, batch_size=16)
    memory.fit(x, y, epochs=1, batch_size=16)
    _assert_same(model, memory, backend.name in EXACT)

    model = _model(backend)
    before = _weights(model)
    odd = {r"batch 0 of the source is a tuple of 1 items; a source of batches yields "
           r"\(x, y\) or": [(x[:8],)],
           r"batch 0 of the source is a tuple of 4 items": [(x[:8], y[:8], None, None)],
           r"y of batch 0 is None": [(x[:8], None)]}
    for message, batches in odd.items():
        with pytest.raises(TypeError, match=message):
            model.fit(batches, epochs=1)
    with pytest.raises(TypeError, match=r"a list of batches holds \(x, y\) or \(x, y, "
                                        r"sample_weight\) tuples of arrays, at least one: "
                                        r"its first item is missing \(an empty list\)"):
        model.fit([], epochs=1)
    with pytest.raises(TypeError, match="its first item is a dict"):
        model.fit([{"x": x[:8], "y": y[:8]}], epochs=1)
    assert model.epochs_trained_ == 0
    for p, q in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(p, q)


def test_a_source_of_batches_where_an_array_is_needed_is_named_as_one():
    """predict, evaluate and validation_data take arrays: a DataLoader, a list of batches
    or a function of batches there is refused as the source of batches it is."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data()
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=16)
    model = _model("numpy")
    message = (r"{} is a source of batches \({}\), which only fit takes \(fit\(source, "
               r"epochs=...\), without y\); predict, evaluate and the validation data take "
               r"arrays")
    for source, kind in ((loader, "DataLoader"), (_batches(x, y, 16), "list"),
                         (lambda: iter(_batches(x, y, 16)), "function")):
        with pytest.raises(TypeError, match=message.format("x", kind)):
            model.predict(source)
        with pytest.raises(TypeError, match=message.format("x", kind)):
            model.evaluate(source, y)
        with pytest.raises(TypeError, match=message.format("x_val", kind)):
            model.fit(x, y, epochs=1, validation_data=(source, y))
    assert model.epochs_trained_ == 0
    assert model.predict(list(zip(*x.T))).shape == (N, C)  # rows as tuples: an array


DROPS = [dict(dropout=0.3), dict(input_dropout=0.2, dropout=0.4)]


@pytest.mark.parametrize("rates", DROPS)
@pytest.mark.parametrize("kind", ["memmap", "h5py"])
def test_dropout_on_disk_trains_as_the_same_array_in_memory(backend, kind, rates, tmp_path,
                                                            monkeypatch):
    """A row's dropout masks follow its number among the training rows, which each window
    of batches read from disk hands its steps beside the rows (windows of 3 batches here:
    window-local indices would draw other masks): shuffled batches with a partial last
    one, a validation split by index and row weights train the weights, losses and
    validation scores of the same array in memory; so does one batch of every row."""
    monkeypatch.setattr(mlp.data, "WINDOW_BYTES", 3 * 16 * 8 * F)
    x, y = _data()
    w = np.random.default_rng(1).uniform(0.5, 2.0, N)
    on_disk = ON_DISK[kind](tmp_path, x)
    for settings in (dict(epochs=3, batch_size=16, validation_split=0.2, sample_weight=w),
                     dict(epochs=2, batch_size=None)):
        memory, disk = _model(backend, **rates), _model(backend, **rates)
        h_mem = memory.fit(x, y, **settings)
        h_disk = disk.fit(on_disk, y, **settings)
        _assert_same(memory, disk, backend.name in EXACT)
        for key, values in h_mem.history.items():
            np.testing.assert_allclose(h_disk.history[key], values, rtol=1e-10)
    plain = _model(backend)
    plain.fit(x, y, epochs=2, batch_size=None)
    assert not np.allclose(_weights(plain)[0], _weights(memory)[0])  # (units dropped)


@pytest.mark.parametrize("rates", DROPS)
def test_dropout_on_a_stream_follows_the_rows_places_in_the_epochs_stream(backend, rates,
                                                                          monkeypatch):
    """A stream's rows are numbered by their places in the epoch's stream (0, 1, 2, ...
    over its batches in order), so a list of batches (in windows of 2 batches, a last
    batch of another size) trains as the arrays in memory unshuffled, and a seeded
    shuffling DataLoader is reproducible."""
    monkeypatch.setattr(mlp.data, "WINDOW_BYTES", 2 * 16 * 8 * F)
    x, y = _data()
    w = np.random.default_rng(2).uniform(0.5, 2.0, N)
    memory, listed, made = (_model(backend, **rates) for _ in range(3))
    h_mem = memory.fit(x, y, epochs=3, batch_size=16, shuffle=False, sample_weight=w)
    h_listed = listed.fit(_batches(x, y, 16, w), epochs=3)
    made.fit(lambda: iter(_batches(x, y, 16, w)), epochs=3)
    _assert_same(memory, listed, backend.name in EXACT)
    _assert_same(listed, made, True)
    np.testing.assert_allclose(h_listed.history["loss"], h_mem.history["loss"], rtol=1e-10)
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    def shuffled():
        loader = DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=16,
                            shuffle=True, generator=torch.Generator().manual_seed(7))
        model = _model(backend, **rates)
        model.fit(loader, epochs=2)
        return model

    _assert_same(shuffled(), shuffled(), True)


# ------------------------------------------------------------ reading ahead
def _assert_no_reader_thread():
    assert not [t for t in threading.enumerate() if t.name == "mlp-read-ahead"]


class Failing(Recording):
    """Reads fail from the ``fail_at``-th read on."""

    def __init__(self, array, fail_at):
        super().__init__(array)
        self.fail_at = fail_at

    def __getitem__(self, index):
        if len(self.reads) >= self.fail_at:
            raise OSError("the disk went away")
        return super().__getitem__(index)


def test_an_error_while_reading_ahead_surfaces_with_its_message(backend, monkeypatch):
    monkeypatch.setattr(mlp.data, "WINDOW_BYTES", 16 * 8 * F)  # a read per batch
    x, y = _data()
    model = _model(backend)
    with pytest.raises(ValueError, match=r"x \(Failing\) could not be read \(OSError: the "
                                         r"disk went away\)"):
        model.fit(Failing(x, fail_at=1 + 5 + 3), y, epochs=3, batch_size=16)
    assert model.epochs_trained_ == 1  # the completed epoch is kept
    _assert_no_reader_thread()

    def stream():
        yield x[:16], y[:16]
        raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError, match="the source failed"):
        _model(backend).fit(stream, epochs=1)
    _assert_no_reader_thread()


def test_ctrl_c_anywhere_in_a_fed_epoch_keeps_the_completed_epochs(tmp_path, monkeypatch):
    """Ctrl-C at every line of the fed run, the epoch and the step: the model is at the end
    of an epoch of the uninterrupted run, and the reading thread has stopped."""
    from mlp.engine import pipeline
    from mlp.engine.feed import FedEpochs
    from mlp.training import Trainer
    from tests._helpers import InterruptAtLine

    monkeypatch.setattr(mlp.data, "WINDOW_BYTES", 8 * 8 * F)  # a window per batch
    x, y = _data()
    x, y = x[:24], y[:24]
    on_disk = _memmap(tmp_path, x)

    def fit(model, **kw):
        model.fit(on_disk, y, epochs=3, batch_size=8, optimizer="sgd", **kw)

    log = []
    reference = _model("numpy")
    fit(reference, callbacks=[lambda e, logs: log.append(reference.get_weights())])
    codes = {f.__code__ for f in (FedEpochs.epoch, FedEpochs._run, pipeline.run_epochs,
                                  Trainer.run_chunk)}
    kept, k = set(), 0
    while True:
        k += 1
        model = _model("numpy")
        sys.settrace(InterruptAtLine(k, codes))
        try:
            fit(model)
        except KeyboardInterrupt:
            pass
        else:
            break
        finally:
            sys.settrace(None)
        _assert_no_reader_thread()
        epochs = model.epochs_trained_
        kept.add(epochs)
        assert model.history_ is None or len(model.history_.epoch) == epochs
        if epochs:
            for a, b in zip(model.get_weights(), log[epochs - 1]):
                np.testing.assert_array_equal(a[0], b[0])
    assert {0, 1, 2} <= kept


# ------------------------------------------------------------ the benchmark runs
def test_the_memmap_benchmark_runs_on_a_tiny_file(tmp_path):
    """`benchmarks.memmap` end to end on a file of 0.5 MB (no timing asserted): it
    creates the file once, reuses it, and writes its table with both thread counts."""
    from benchmarks import memmap

    args = ["--folder", str(tmp_path / "data"), "--gigabytes", "0.0005", "--memory-rows",
            "64", "--batch-size", "32", "--hidden", "4", "--repeats", "1",
            "--out", str(tmp_path / "out.md")]
    text = memmap.main(args)
    assert (tmp_path / "out.md").read_text() == text
    rows = [line for line in text.splitlines()
            if line.startswith("| BLAS") and "threads" not in line]
    assert len(rows) == 2 and rows[0].startswith("| BLAS 1")  # one thread, then the default
    created = (tmp_path / "data" / "x.f32").stat().st_mtime_ns
    memmap.main(args)
    assert (tmp_path / "data" / "x.f32").stat().st_mtime_ns == created  # reused
    x_path, y_path, n = memmap.make_files(tmp_path / "data", 0.0005)
    assert x_path.stat().st_size == n * memmap.FEATURES * 4 >= 0.0005e9
    assert memmap.rss_anon() > 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in the diverging math
def test_a_divergence_on_disk_restores_finite_weights_as_in_memory(backend, tmp_path):
    """The loss of the weights to restore is computed block by block from the file."""
    x, _ = _data()
    y = x[:, :2] * 100
    on_disk = _memmap(tmp_path, x)
    errors = []
    for data in (x, on_disk):
        model = mlp.MLP([F, 8, 2], activation="identity", dtype="float64", seed=1,
                        backend=backend)
        with pytest.raises(mlp.TrainingDivergedError, match="learning rate 1000000.0 may be "
                                                            "too large.*restored") as info:
            model.fit(data, y, epochs=50, batch_size=16, optimizer="sgd", learning_rate=1e6)
        errors.append((str(info.value), model.get_weights()))
    assert errors[0][0] == errors[1][0]
    for (wa, ba), (wb, bb) in zip(errors[0][1], errors[1][1]):
        assert np.all(np.isfinite(wb)) and np.all(np.isfinite(bb))
        np.testing.assert_allclose(wb, wa, rtol=1e-10)
        np.testing.assert_allclose(bb, ba, rtol=1e-10)
