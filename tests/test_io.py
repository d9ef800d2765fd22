"""Saving and loading: one portable .npz file, readable by every backend, written atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import backends
import mlp
from mlp import optimizers, schedules

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
    """``steps`` more full-batch updates with the model's optimizer and saved state."""
    opt, state, params = model.optimizer_, model.optimizer_state_, model.params
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
