"""Saving and loading: one portable .npz file, readable by every backend, written atomically."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
import tempfile
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import mlp
from mlp import backends, optimizers, schedules
from mlp.io import ModelFileError
from tests._helpers import read_only_folder, rewrite_npz

BACKENDS = backends.available_backends()


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny matrices: BLAS/OpenMP threads only add overhead, which turns into tens of
    seconds when other processes compete for the cores."""
    with threadpool_limits(1):
        yield



def _data(n=30, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, np.argmax(x[:, :k], axis=1)


def _trained(backend, dtype="float64", **fit):
    x, y = _data()
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", activation="tanh", backend=backend,
                    dtype=dtype, seed=3)
    model.fit(x, y, epochs=2, batch_size=8, **(fit or dict(optimizer="adam",
                                                           learning_rate=0.05)))
    return model, x, y




@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_save_on_one_backend_load_on_every_other(backend, dtype, tmp_path):
    model, x, _ = _trained(backend, dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    expected = backend.to_numpy(model.predict(x))
    for name in BACKENDS:
        loaded = mlp.load(path, backend=name)
        assert loaded.backend.name == name
        assert loaded.dtype_name == dtype
        assert (loaded.layer_sizes, loaded.activation, loaded.output_activation,
                loaded.loss_name, loaded.seed) == ((5, 8, 3), "tanh", "softmax",
                                                   "cross_entropy", 3)
        for (W, b), (W0, b0) in zip(loaded.get_weights(), model.get_weights(), strict=True):
            assert W.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(W, W0)  # bit for bit
            np.testing.assert_array_equal(b, b0)
        got = loaded.backend.to_numpy(loaded.predict(x))
        rtol = 1e-12 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * 1e-2, err_msg=name)
        np.testing.assert_array_equal(loaded.backend.to_numpy(loaded.predict_classes(x)),
                                      expected.argmax(axis=1))


def test_load_uses_mlp_backend_by_default(backend, tmp_path, monkeypatch):
    model, x, _ = _trained("numpy")
    model.save(tmp_path / "m.npz")
    monkeypatch.setenv("MLP_BACKEND", backend.name)
    loaded = mlp.load(tmp_path / "m.npz")
    assert loaded.backend.name == backend.name
    np.testing.assert_allclose(loaded.backend.to_numpy(loaded.predict(x)),
                               model.backend.to_numpy(model.predict(x)), rtol=1e-12)


def _continue(model, x, y, steps):
    """``steps`` more full-batch updates with the model's optimizer and saved state, in
    the model's precision (on JAX a float64 model's own methods scope it; these calls
    of the optimizer are made from outside them)."""
    opt, state, params = model.optimizer_, model.optimizer_state_, model.params
    with model.backend.precision(model.dtype):
        for _ in range(steps):
            model.params = params
            grads = model.gradients(x, y)
            updates, state = opt.update(grads, state, params)
            params = optimizers.apply_updates(params, updates)
    model.params = params
    return model.get_weights(), state


@pytest.mark.parametrize("opt", [
    optimizers.Adam(learning_rate=schedules.cosine_decay(0.05, decay_steps=20, warmup_steps=3)),
    optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    optimizers.RMSprop(0.01),
], ids=["adam+cosine", "nesterov", "rmsprop"])
def test_include_optimizer_round_trips_the_state(backend, opt, tmp_path):
    model, x, y = _trained(backend, optimizer=opt)
    path = tmp_path / "with_opt.npz"
    model.save(path, include_optimizer=True)
    for name in {backend.name, "numpy"}:
        loaded = mlp.load(path, backend=name)
        assert loaded.optimizer_ == opt  # the class, its settings and its schedule
        leaves, ref_leaves = [], []
        _leaves(loaded.optimizer_state_, leaves)
        _leaves(model.optimizer_state_, ref_leaves)
        assert len(leaves) == len(ref_leaves) > 0
        for a, b in zip(leaves, ref_leaves, strict=True):
            np.testing.assert_array_equal(loaded.backend.to_numpy(a), backend.to_numpy(b))
        # 2 epochs of 4 batches: the step count (which drives the schedule) is kept
        assert optimizers.step_count(loaded.optimizer_state_) == 8
        # continuing from the loaded state = continuing without the save/load
        got, _ = _continue(loaded, x, y, 3)
        want, _ = _continue(_copy(model), x, y, 3)
        for (W, b), (W0, b0) in zip(got, want, strict=True):
            np.testing.assert_allclose(W, W0, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(b, b0, rtol=1e-12, atol=1e-14)
        if name != "numpy":
            continue
        # ... and differs from a fresh optimizer state
        fresh = mlp.load(path, backend=name)
        fresh.optimizer_state_ = opt.init(fresh.params)
        other, _ = _continue(fresh, x, y, 3)
        assert not np.allclose(other[0][0], want[0][0], rtol=1e-9, atol=0)


def _leaves(tree, out):
    if tree is None:
        return
    if isinstance(tree, (tuple, list)):
        for t in tree:
            _leaves(t, out)
    else:
        out.append(tree)


def _copy(model):
    """A second model object with the same weights and optimizer state."""
    twin = mlp.MLP(list(model.layer_sizes), loss=model.loss_name, activation=model.activation,
                   backend=model.backend, dtype=model.dtype_name, seed=model.seed)
    twin.params = model.params  # arrays are never modified in place
    twin.optimizer_, twin.optimizer_state_ = model.optimizer_, model.optimizer_state_
    return twin


@pytest.mark.parametrize("opt", [
    optimizers.sgd(0.3),
    optimizers.SGD(schedules.step_decay(0.1, drop=0.5, every=7), momentum=0.5),
    optimizers.Adam(schedules.exponential_decay(1e-3, 100, 0.9, staircase=True), beta2=0.99),
    optimizers.AdamW(schedules.invscaling(0.01, power_t=0.3), weight_decay=0.2, eps=1e-6),
    optimizers.RMSprop(schedules.Constant(0.02), decay=0.8),
], ids=["sgd", "momentum+step", "adam+exponential", "adamw+invscaling", "rmsprop+constant"])
def test_every_optimizer_and_schedule_round_trips(opt, tmp_path):
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    state = opt.init(model.params)
    model.optimizer_, model.optimizer_state_ = opt, opt.update(
        model.gradients(np.ones((2, 3)), np.ones((2, 2))), state, model.params)[1]
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz", backend="numpy")
    assert loaded.optimizer_ == opt and type(loaded.optimizer_) is type(opt)
    got, want = [], []
    _leaves(loaded.optimizer_state_, got)
    _leaves(model.optimizer_state_, want)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_include_optimizer_no_state_is_saved(tmp_path):
    model, _, _ = _trained("numpy")
    model.save(tmp_path / "plain.npz")
    with np.load(tmp_path / "plain.npz") as data:
        assert not any(k.startswith("opt") for k in data.files)
    loaded = mlp.load(tmp_path / "plain.npz", backend="numpy")
    assert loaded.optimizer_ is None and loaded.optimizer_state_ is None


def test_atomic_write_leaves_no_temporary_files(backend, tmp_path):
    model, x, _ = _trained(backend)
    path = tmp_path / "m.npz"
    model.save(path)
    model.save(str(path), include_optimizer=True)  # overwriting, as str
    assert os.listdir(tmp_path) == ["m.npz"]
    np.testing.assert_allclose(mlp.load(path, backend="numpy").predict(x),
                               backend.to_numpy(model.predict(x)), rtol=1e-12)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    model, x, _ = _trained("numpy")
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    other = mlp.MLP([5, 8, 3], loss="cross_entropy", backend="numpy", seed=99)
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old model, whole
    assert os.listdir(tmp_path) == ["m.npz"]  # and no temporary file
    np.testing.assert_array_equal(mlp.load(path, backend="numpy").predict(x), model.predict(x))


def test_saved_file_is_a_plain_npz(tmp_path):
    """Readable without mlp: numpy.load with allow_pickle=False."""
    model, _, _ = _trained("numpy")
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        for i, (W, b) in enumerate(model.get_weights()):
            np.testing.assert_array_equal(data[f"W{i}"], W)
            np.testing.assert_array_equal(data[f"b{i}"], b)
        assert "config" in data.files and "mlp_format" in data.files


# ------------------------------------------------- loading only what is safe (issue 12)
def _zip(path, members):
    """An .npz-like zip of ``members`` (name -> bytes), written as given."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _entries(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _small_model_file(tmp_path, **fit):
    path = tmp_path / "m.npz"
    model = mlp.MLP([3, 4, 2], backend="numpy", seed=0)
    if fit:
        model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, **fit)
    model.save(path, include_optimizer=bool(fit))
    return path


def test_a_huge_declared_architecture_is_refused_before_allocating(tmp_path):
    path = _small_model_file(tmp_path)
    entries = _entries(path)
    config = json.loads(str(np.load(io.BytesIO(entries["config.npy"]))))
    config["layer_sizes"] = [8000, 8000, 2]
    entries["config.npy"] = _npy(np.asarray(json.dumps(config)))
    _zip(path, entries)
    assert path.stat().st_size < 4096
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"m\.npz' holds a damaged mlp model: layer 0 "
                                                 r"expects W of shape \(8000, 8000\)"):
            mlp.load(path, backend="numpy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # far below the 256 MB (8000 x 8000 float32) declared


def test_a_header_claiming_more_than_the_entry_holds_is_refused(tmp_path):
    path = _small_model_file(tmp_path)
    entries = _entries(path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
    entries["W0.npy"] = header.getvalue() + b"\0" * 48
    _zip(path, entries)
    with pytest.raises(ModelFileError, match=r"m\.npz' holds a damaged mlp model: entry W0\.npy "
                                             r"declares shape \(100000, 100000\) of float32 "
                                             r"\(40000000128 bytes\) but holds 176 bytes"):
        mlp.load(path, backend="numpy")


def test_unknown_entries_are_refused_without_being_decompressed(tmp_path, monkeypatch):
    path = _small_model_file(tmp_path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.npy", b"\0" * 1_000_000)
        zf.writestr("notes.txt", b"hello")
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(ModelFileError, match=r"m\.npz' holds a damaged mlp model: unexpected "
                                             r"entries \['bomb\.npy', 'notes\.txt'\]"):
        mlp.load(path, backend="numpy")
    assert opened == []


@pytest.mark.parametrize("config, match", [
    ("[" * 20_000 + "]" * 20_000, r"its config entry nests deeper than 16 levels"),
    ('{"a": ' * 40 + "1" + "}" * 40, r"nests deeper than 16 levels"),
    ('{"layer_sizes": "' + "x" * 70_000 + '"}', r"its config entry is not a short JSON text"),
    ("[1, 2]", r"its config is list, not a JSON object"),
    ("{not json", r"holds a damaged mlp model: Expecting property name"),
    ('{"layer_sizes": [3, 4, 2], "activation": "relu", "output_activation": null, '
     '"loss": "mse", "init": "he", "dtype": "float32", "seed": 0, "x": 1}',
     r"config has unknown keys x"),
    ('{"layer_sizes": {"3": 4}, "activation": "relu", "output_activation": null, '
     '"loss": "mse", "init": "he", "dtype": "float32", "seed": 0}', r"has no order"),
], ids=["deep-list", "deep-object", "long", "list", "not-json", "unknown-key", "dict-sizes"])
def test_crafted_json_is_a_model_file_error(tmp_path, config, match):
    path = _small_model_file(tmp_path)
    entries = _entries(path)
    entries["config.npy"] = _npy(np.asarray(config))
    _zip(path, entries)
    with pytest.raises(ModelFileError, match=r"m\.npz' .*" + match):
        mlp.load(path, backend="numpy")


def test_every_damaged_byte_is_a_model_file_error(tmp_path):
    """Flip bytes all over a real model file: each load succeeds or raises ModelFileError,
    never a raw zipfile, json, NumPy or recursion error."""
    good = _small_model_file(tmp_path, optimizer="adam").read_bytes()
    bad = tmp_path / "bad.npz"
    refused = 0
    for pos in range(0, len(good), 11):
        data = bytearray(good)
        data[pos] ^= 0x5A
        bad.write_bytes(bytes(data))
        try:
            mlp.load(bad, backend="numpy")
        except ModelFileError as exc:
            assert "bad.npz'" in str(exc)
            refused += 1
    assert refused > len(good) // 11 // 2


def test_a_named_pipe_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(_load_outcome(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # unblock the reader before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("load blocked on a named pipe")
    assert outcome[0][0] is ModelFileError
    assert re.search(r"model\.npz' is not a regular file \(it is a named pipe", outcome[0][1])


def _load_outcome(path):
    try:
        mlp.load(path, backend="numpy")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return type(exc), str(exc)
    return None, ""


@pytest.mark.parametrize("change, match", [
    ({"opt_state_1": np.zeros((4, 3))},
     r"optimizer state array 1 has shape \(4, 3\) and dtype float64; expected shape \(3, 4\) "
     r"and dtype float32"),
    ({"opt_state_1": np.zeros((3, 4))}, r"optimizer state array 1 has shape \(3, 4\) and dtype "
                                        r"float64; expected shape \(3, 4\) and dtype float32"),
    ({"opt_state_10": None}, r"its optimizer state has 10 arrays; .* needs 11"),
    ({"opt_state_11": np.zeros(2, "float32")}, r"its optimizer state has 12 arrays; .* needs 11"),
], ids=["shape", "dtype", "missing", "extra"])
def test_a_stored_optimizer_state_must_fit_the_architecture(tmp_path, change, match):
    path = _small_model_file(tmp_path, optimizer="adam")
    rewrite_npz(path, **change)
    with pytest.raises(ModelFileError, match=r"m\.npz' holds a damaged mlp model: " + match):
        mlp.load(path, backend="numpy")


# ----------------------------------------------------------- saving: modes and paths
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_a_plain_write_would(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        mlp.MLP([3, 2], backend="numpy", seed=0).save(tmp_path / "m.npz")
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == mode


def test_overwriting_keeps_the_old_files_mode(tmp_path):
    path = tmp_path / "m.npz"
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    model.save(path)
    for mode in (0o644, 0o640, 0o604):
        os.chmod(path, mode)
        model.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == mode


def test_save_errors_name_the_users_path(tmp_path, monkeypatch):
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    with pytest.raises(FileNotFoundError, match=r"cannot save to '': the path is empty"):
        model.save("")
    with pytest.raises(IsADirectoryError, match=r"cannot save to '.*' : it is a folder"
                       .replace(" :", ":")):
        model.save(tmp_path)

    def no_permission(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".mlp-x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", no_permission)
    target = tmp_path / "m.npz"
    with pytest.raises(PermissionError, match=r"cannot save to '.*m\.npz': cannot "
                                              r"create a file in .*Permission denied") as info:
        model.save(target)
    assert ".mlp-" not in str(info.value)
    monkeypatch.undo()

    def replace_fails(src, dst):
        raise PermissionError(13, "Permission denied", src, dst)

    monkeypatch.setattr(os, "replace", replace_fails)
    with pytest.raises(PermissionError, match=r"cannot save to '.*m\.npz': the write "
                                              r"failed \(Permission denied\)") as info:
        model.save(target)
    assert ".mlp-" not in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []  # no temporary file left behind


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions and a user that they bind (not root)")
def test_save_into_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"cannot save to '.*ro/m\.npz'"):
            mlp.MLP([3, 2], backend="numpy", seed=0).save(folder / "m.npz")
    finally:
        folder.chmod(0o700)


def test_io_does_not_import_the_model():
    """The model uses io to save and load; io works on any model class it is given."""
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(mlp.io.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "model" not in imported and "mlp.model" not in imported


def test_save_never_replaces_a_device_or_a_pipe_and_writes_through_a_link(tmp_path):
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"it is not a regular file .* not replaced"):
        model.save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    target, link = tmp_path / "real.npz", tmp_path / "link.npz"
    mlp.MLP([3, 2], backend="numpy", seed=1).save(target)
    os.symlink(target, link)
    model.save(link)
    assert os.path.islink(link)  # the link stays a link; the file it names is the new model
    np.testing.assert_array_equal(mlp.load(target).get_weights()[0][0], model.get_weights()[0][0])


@pytest.mark.parametrize("path", [None, 3, b"m.npz"])
def test_save_refuses_paths_that_are_not_file_names(tmp_path, path):
    with pytest.raises(TypeError, match=r"cannot save: the path must be a file name|as str"):
        mlp.MLP([3, 2], backend="numpy", seed=0).save(path)


@pytest.mark.parametrize("name", ["missing_dir/", "sub/", "./", "a/..", "."])
def test_save_refuses_a_path_that_names_a_folder(tmp_path, monkeypatch, name):
    """A path ending in a separator (or a dot) names a folder, existing or not: refused,
    and no file named after the folder is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    with pytest.raises(IsADirectoryError, match=re.escape(f"cannot save to {name!r}: it names "
                                                          "a folder")):
        model.save(name)
    assert sorted(os.listdir(tmp_path)) == ["a"] and os.listdir(tmp_path / "a") == []


def _temporary(tmp_path, host, pid):
    path = tmp_path / f".mlp-{host}-{pid}-abc_123.tmp"
    path.write_bytes(b"half a model")
    return path.name


def _dead_pid():
    """The pid of a process that has ended (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_save_removes_the_temporary_files_of_killed_writers_only(tmp_path):
    host = mlp.io._host_tag()
    stale = _temporary(tmp_path, host, _dead_pid())
    ours = _temporary(tmp_path, host, os.getpid())  # a write of this process, in progress
    elsewhere = _temporary(tmp_path, "0badc0de" if host != "0badc0de" else "1badc0de",
                           _dead_pid())  # another machine's: its pids mean nothing here
    other = tmp_path / ".mlp-notes.tmp"  # not a name the writer gives
    other.write_text("mine")
    mlp.MLP([3, 2], backend="numpy", seed=0).save(tmp_path / "m.npz")
    assert sorted(os.listdir(tmp_path)) == sorted([ours, elsewhere, ".mlp-notes.tmp", "m.npz"])
    assert stale not in os.listdir(tmp_path)


KILLED_SAVE = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {root!r})
import mlp

def savez_then_die(fh, **arrays):
    fh.write(b"PK\\x03\\x04 half of a model")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # no finally, no cleanup: as a lost machine

np.savez = savez_then_die
mlp.MLP([3, 2], backend="numpy", seed=0).save({path!r})
"""


def test_a_save_killed_in_the_middle_leaves_a_temporary_file_the_next_save_removes(tmp_path):
    import signal
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "m.npz"
    mlp.MLP([3, 2], backend="numpy", seed=1).save(path)
    before = path.read_bytes()
    script = KILLED_SAVE.format(root=root, path=str(path))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [n for n in os.listdir(tmp_path) if n != "m.npz"]
    assert len(left) == 1 and re.fullmatch(r"\.mlp-[0-9a-f]{8}-\d+-\w+\.tmp", left[0])
    assert path.read_bytes() == before  # the old model, whole
    mlp.MLP([3, 2], backend="numpy", seed=2).save(tmp_path / "other.npz")
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "other.npz"]


def test_check_writable_names_the_users_path_and_leaves_nothing(tmp_path):
    assert mlp.io.check_writable(tmp_path / "m.npz") == str(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match=r"cannot save to 'no/{epoch}\.npz': folder "
                                                r".*no' does not exist"):
        mlp.io.check_writable(tmp_path / "no" / "1.npz", shown="no/{epoch}.npz")
    folder = read_only_folder(tmp_path)
    if folder is None:
        pytest.skip("no read-only folder to try")
    target = os.path.join(folder, "m.npz")
    with pytest.raises(OSError, match=re.escape(f"cannot save to {target!r}: cannot create "
                                                f"a file in {folder!r}")):
        mlp.io.check_writable(target)


def test_loading_a_users_activation_before_registering_it_says_to_register_it(tmp_path):
    path = tmp_path / "ss.npz"
    mlp.register_activation("softsign_io_test", lambda xp, z: z / (1.0 + xp.abs(z)),
                            lambda xp, d, z, a: d / (1.0 + xp.abs(z)) ** 2)
    try:
        mlp.MLP([3, 4, 1], activation="softsign_io_test", backend="numpy", seed=0).save(path)
    finally:
        del mlp.activations.ACTIVATIONS["softsign_io_test"]
    with pytest.raises(ModelFileError, match=r"activation 'softsign_io_test', which is not "
                                             r"registered .* mlp\.register_activation"):
        mlp.load(path, backend="numpy")


# ----------------------------------------------------------- paths refused before the work
def test_save_names_a_file_where_a_folder_should_be(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    for path in ("afile/x.npz", "afile/sub/x.npz"):
        with pytest.raises(NotADirectoryError, match=re.escape(
                f"cannot save to {path!r}: {str(tmp_path / 'afile')!r} is a file, not a "
                f"folder")):
            model.save(path)
    with pytest.raises(FileNotFoundError, match=r"cannot save to 'no/x\.npz': folder .* does "
                                                r"not exist"):
        model.save("no/x.npz")
    with pytest.raises(FileNotFoundError, match=r"cannot save to '~/x\.npz': folder .* does "
                                                r"not exist; '~' is not expanded .*expanduser"):
        model.save("~/x.npz")
    assert os.listdir(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "x"


def test_save_and_load_refuse_a_nul_in_the_path(tmp_path):
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    with pytest.raises(ValueError, match=r"cannot save to '.*m\\x00\.npz': it holds a NUL "
                                         r"character"):
        model.save(str(tmp_path / "m\0.npz"))
    with pytest.raises(ValueError, match=r"cannot load '.*m\\x00\.npz': it holds a NUL"):
        mlp.load(str(tmp_path / "m\0.npz"))
    assert os.listdir(tmp_path) == []


def test_save_refuses_a_name_too_long_for_the_file_system_before_the_work(tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "m" * (limit - 3) + ".npz"  # one byte more than the file system takes
    with pytest.raises(OSError, match=rf"its file name is {limit + 1} bytes long, more than "
                                      rf"the {limit} the file system of .* takes") as info:
        mlp.MLP([3, 2], backend="numpy", seed=0).save(tmp_path / name)
    assert info.value.errno == errno.ENAMETOOLONG and os.listdir(tmp_path) == []
    mlp.MLP([3, 2], backend="numpy", seed=0).save(tmp_path / name[1:])  # the longest taken
    assert os.listdir(tmp_path) == [name[1:]]


def test_save_refuses_a_symbolic_link_loop_and_keeps_the_links(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(OSError, match=r"cannot save to '.*a': it is a symbolic link that "
                                      r"leads in a loop") as info:
        mlp.MLP([3, 2], backend="numpy", seed=0).save(a)
    assert info.value.errno == errno.ELOOP
    assert os.path.islink(a) and os.path.islink(b) and sorted(os.listdir(tmp_path)) == ["a", "b"]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_the_mode_of_a_new_file_is_found_without_changing_the_umask(tmp_path, monkeypatch):
    """Setting the umask, even for a moment, would give the files other threads create
    meanwhile the wrong mode: it is only read."""
    old = os.umask(0o027)
    try:
        def no_umask(mask):
            raise AssertionError("os.umask called")

        monkeypatch.setattr(os, "umask", no_umask)
        assert mlp.io.current_umask() == 0o027
        mlp.MLP([3, 2], backend="numpy", seed=0).save(tmp_path / "m.npz")
        monkeypatch.undo()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o640


def test_the_umask_is_read_where_proc_is_missing(monkeypatch):
    real_open = open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    old = os.umask(0o037)
    try:
        assert mlp.io.current_umask() == 0o037
        assert os.umask(0o037) == 0o037  # put back as it was
    finally:
        os.umask(old)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_loaded_optimizer_state_has_a_fresh_states_dtypes(backend, tmp_path, dtype):
    """Step counts included (JAX's are int64 in a float64 model): a fit that resumes from
    the file, or a backup restored into a running fit, sees the state it would have made."""
    from mlp.tree import tree_leaves

    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype=dtype, seed=0, backend=backend)
    x, y = np.random.default_rng(0).normal(size=(20, 5)), np.arange(20) % 3
    model.fit(x, y, epochs=2)
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz", backend=backend.name)
    assert [a.dtype for a in tree_leaves(loaded.optimizer_state_)] == \
        [a.dtype for a in tree_leaves(model.optimizer_state_)]


# ------------------------------------------- what save writes, load reads
def _nan_moments(model):
    from mlp.tree import tree_leaves, tree_unflatten

    leaves = tree_leaves(model.optimizer_state_)
    leaves[1] = leaves[1] * float("nan")  # Adam's first moments of W0
    model.optimizer_state_ = tree_unflatten(model.optimizer_state_, leaves)


def _negative_count(model):
    from mlp.tree import tree_leaves, tree_unflatten

    leaves = tree_leaves(model.optimizer_state_)
    leaves[0] = leaves[0] - 10  # the step count
    model.optimizer_state_ = tree_unflatten(model.optimizer_state_, leaves)


UNLOADABLE = {
    "epochs-1e30": (lambda m: setattr(m, "epochs_trained_", 10**30),
                    r"model\.epochs_trained_ is 1000000000000000000000000000000, beyond the "
                    r"2\*\*53 epochs a model file holds"),
    "epochs-2**53+1": (lambda m: setattr(m, "epochs_trained_", 2**53 + 1),
                       r"model\.epochs_trained_ is 9007199254740993, beyond"),
    "history-2**64-1": (lambda m: m.history_.epoch.__setitem__(1, 2**64 - 1),
                        r"model\.history_ has epochs \[0, 18446744073709551615\] that are not "
                        r"whole numbers increasing strictly from 0 up to 1 \(the model has "
                        r"trained 2 epochs\)"),
    "history-negative": (lambda m: m.history_.epoch.__setitem__(0, -1),
                         r"model\.history_ has epochs \[-1, 1\] that are not whole numbers"),
    "history-duplicate": (lambda m: m.history_.epoch.__setitem__(0, 1),
                          r"model\.history_ has epochs \[1, 1\] that are not whole numbers"),
    "history-beyond-count": (lambda m: setattr(m, "epochs_trained_", 1),
                             r"model\.history_ has 2 epochs, more than the 1 the model has "
                             r"trained"),
    "metric-unnamed": (lambda m: m.history_.history.__setitem__("", [0.0, 0.0]),
                       r"model\.history_ has a metric named '' \(metrics are named by "
                       r"non-empty strings\)"),
    "nan-moments": (_nan_moments, r"model\.optimizer_state_'s array 1 \(first moments\) holds "
                                  r"NaN or infinite values"),
    "negative-count": (_negative_count, r"array 0 \(step count\) holds negative counts"),
}


@pytest.mark.parametrize("case", list(UNLOADABLE))
def test_save_refuses_a_training_state_load_would_refuse(backend, tmp_path, case):
    """What a crafted file could hold and `load` refuses, `save` refuses before writing (the
    attributes set by hand): a file save writes is one load reads."""
    x = np.random.default_rng(0).normal(size=(12, 3))
    model = mlp.MLP([3, 4, 2], backend=backend, seed=0)
    model.fit(x, x[:, :2], epochs=2)
    change, message = UNLOADABLE[case]
    change(model)
    # the history by the check of the model's state fit makes too, the rest by load's rules
    pattern = (r"^save: " + message + r".*; fit keeps the epoch count and the history itself"
               if case.startswith(("history", "metric")) else
               r"cannot save to '.*m\.npz': .*" + message + r".*, and mlp\.load would refuse "
               r"the file; nothing was written")
    with pytest.raises(ValueError, match=pattern):
        model.save(tmp_path / "m.npz", include_optimizer=True)
    assert os.listdir(tmp_path) == []


def test_save_refuses_weights_that_are_not_finite(backend, tmp_path):
    model = mlp.MLP([3, 4, 2], backend=backend, seed=0)
    W, b = model.params[1]
    model.params = [model.params[0], (W * float("inf"), b)]
    for include in (False, True):
        with pytest.raises(ValueError, match=r"the weights of layer 1 hold NaN or infinite "
                                             r"values, and mlp\.load would refuse the file"):
            model.save(tmp_path / "m.npz", include_optimizer=include)
    assert os.listdir(tmp_path) == []


def test_a_fit_beyond_the_epochs_a_file_holds_is_refused(backend, tmp_path):
    x = np.random.default_rng(0).normal(size=(12, 3))
    model = mlp.MLP([3, 4, 2], backend=backend, seed=0)
    model.fit(x, x[:, :2], epochs=1)
    model.epochs_trained_ = 2**53 - 1
    model.history_.epoch[0] = 2**53 - 2
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"epochs=2 would bring the model's epoch count from "
                                         r"9007199254740991 to 9007199254740993, beyond the "
                                         r"2\*\*53 epochs a model file holds; ask for at most 1"):
        model.fit(x, x[:, :2], epochs=2)
    for (W, b), (W0, b0) in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    model.fit(x, x[:, :2], epochs=1)  # up to 2**53: saved and loaded
    model.save(tmp_path / "m.npz", include_optimizer=True)
    assert mlp.load(tmp_path / "m.npz").epochs_trained_ == 2**53


def test_a_loaded_optimizer_state_has_the_dtypes_a_fresh_one_has(backend, tmp_path):
    """Read inside the model's precision (as a resumed backup is, within fit), the state's
    step counts have the integer type the optimizer's own init gives there (JAX: int64
    with 64-bit types on, not narrowed to int32), so a fit resumes it."""
    from mlp.tree import tree_leaves

    x = np.random.default_rng(0).normal(size=(12, 3))
    model = mlp.MLP([3, 4, 2], backend=backend, dtype="float64", seed=0)
    model.fit(x, x[:, :2], epochs=1)
    model.save(tmp_path / "m.npz", include_optimizer=True)
    be = model.backend
    with be.precision(model.dtype):
        loaded = mlp.load(tmp_path / "m.npz", backend=backend)
        fresh = loaded.optimizer_.init(loaded.params)
    assert [leaf.dtype for leaf in tree_leaves(loaded.optimizer_state_)] == [
        leaf.dtype for leaf in tree_leaves(fresh)]
