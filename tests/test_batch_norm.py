"""Batch normalization (`mlp.batch_norm`, ``MLP(batch_norm=True)``).

The hand-derived backward pass against central finite differences on every backend:
through the batch's (weighted) mean and variance, for batches of one row (variance 0:
defined maths), two rows and more, alone and through the model's training loss. On the
model: the options, training with the batch's statistics and inference with the running
averages, which the weights carry (saved, loaded, pickled, snapshot, resumed), float64
weights equal on every backend and on 1 and 4 JAX devices, ``fit`` in pieces equal to one.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mlp
from mlp import batch_norm, core

EPSILON = 1e-3


def _loss(xp, z, gamma, beta, w, c):
    """``sum_i w_i * c_i . tanh(out_i)`` (rows of weight 0 count for nothing, as in the
    network) and ``dLoss/dout``."""
    out, normalized = batch_norm.forward(xp, z, gamma, beta, w, EPSILON)
    t = xp.tanh(out)
    rows = 1.0 if w is None else w[:, None]
    return xp.sum(rows * c * t), rows * c * (1 - t * t), normalized


def _numeric(backend, arrays, which, eps=1e-6):
    host = [None if a is None else np.array(a, dtype=np.float64) for a in arrays]
    grad = np.zeros_like(host[which])
    for idx in np.ndindex(grad.shape):
        values = []
        for sign in (1, -1):
            moved = [None if a is None else a.copy() for a in host]
            moved[which][idx] += sign * eps
            args = [None if a is None else backend.asarray(a, "float64") for a in moved]
            values.append(float(_loss(backend.xp, *args)[0]))
        grad[idx] = (values[0] - values[1]) / (2 * eps)
    return grad


@pytest.mark.parametrize("n,weighted", [(1, False), (2, False), (2, True), (7, False),
                                        (7, True)])
def test_batch_norm_gradients_match_finite_differences(backend, n, weighted, rng):
    z = rng.normal(size=(n, 4)) * 3 + 1
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0, 0.0, 0.25])[:n] if weighted else None
    c = rng.normal(size=(n, 4))
    arrays = (z, gamma, beta, w, c)
    with backend.precision(backend.dtype("float64")):
        dev = [None if a is None else backend.asarray(a, "float64") for a in arrays]
        _, dout, normalized = _loss(backend.xp, *dev)
        dz, dgamma, dbeta = batch_norm.backward(backend.xp, dout, dev[1], normalized)
        for got, which in ((dz, 0), (dgamma, 1), (dbeta, 2)):
            np.testing.assert_allclose(backend.to_numpy(got), _numeric(backend, arrays, which),
                                       rtol=1e-6, atol=1e-8)
    if n == 1:  # variance 0: the output is beta, and nothing flows back to z or gamma
        assert np.all(backend.to_numpy(dz) == 0) and np.all(backend.to_numpy(dgamma) == 0)


def test_zero_weight_rows_take_no_part_in_the_statistics(rng):
    z = rng.normal(size=(5, 3))
    w = np.array([1.0, 0.0, 2.0, 0.0, 1.0])
    out, normalized = batch_norm.forward(np, z, np.ones(3), np.zeros(3), w, EPSILON)
    kept = z[w > 0]
    mean = np.average(kept, axis=0, weights=w[w > 0])
    np.testing.assert_allclose(normalized.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(normalized.var, np.average((kept - mean) ** 2, axis=0,
                                                          weights=w[w > 0]), rtol=1e-12)
    moved = z.copy()
    moved[1] += 100.0  # a row of weight 0 changes nothing of the others' outputs
    again, _ = batch_norm.forward(np, moved, np.ones(3), np.zeros(3), w, EPSILON)
    np.testing.assert_array_equal(again[w > 0], out[w > 0])


def test_running_averages_and_inference(rng):
    z = rng.normal(size=(6, 3))
    _, normalized = batch_norm.forward(np, z, np.ones(3), np.zeros(3), None, EPSILON)
    mean = batch_norm.running(np.zeros(3), normalized.mean, 0.99)
    np.testing.assert_allclose(mean, 0.01 * z.mean(axis=0), rtol=1e-12)
    gamma, beta = np.array([2.0, 1.0, 0.5]), np.array([0.0, 1.0, -1.0])
    got = batch_norm.inference(z, gamma, beta, normalized.mean, normalized.var, EPSILON)
    want, _ = batch_norm.forward(np, z, gamma, beta, None, EPSILON)
    np.testing.assert_allclose(got, want, rtol=1e-12)  # on its own batch's statistics


# ------------------------------------------------------------------ on the model
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOAT64 = 1e-10
KW = dict(loss="cross_entropy", dtype="float64", seed=3, batch_norm=True, momentum=0.9)
FIT = dict(epochs=4, batch_size=16)


def _data(n=70, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)) * 3 + 1
    return x, (x[:, 0] + x[:, 1] > 2).astype(int) + (x[:, 2] > 3)


def _model(backend="numpy", **kw):
    return mlp.MLP([6, 12, 8, 3], backend=backend, **{**KW, **kw})


def _difference(a, b):
    return max(float(np.max(np.abs(u - v))) for p, q in zip(a, b, strict=True)
               for u, v in zip(p, q, strict=True))


def _inference(weights, x, epsilon=EPSILON):
    """The network at inference in NumPy: the running averages normalize."""
    a = x
    for W, b in weights[:-1]:
        h = a @ W
        a = np.maximum(b[1] * (h - b[2]) / np.sqrt(b[3] + epsilon) + b[0], 0)
    W, b = weights[-1]
    z = a @ W + b
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(batch_norm="yes"), TypeError, "batch_norm must be True or False, got 'yes'"),
    (dict(batch_norm=True, momentum=1.5), ValueError,
     r"momentum must be a finite number in \[0, 1\], got 1.5"),
    (dict(batch_norm=True, epsilon=0.0), ValueError,
     "epsilon must be a finite number > 0, got 0.0"),
    (dict(batch_norm=True, layer_sizes=[6, 3]), ValueError,
     r"batch_norm=True normalizes the hidden layers, but layer_sizes \[6, 3\] has none"),
])
def test_the_constructor_refuses_bad_options(kwargs, error, match):
    kwargs = {"layer_sizes": [6, 4, 3], **kwargs}
    with pytest.raises(error, match=match):
        mlp.MLP(kwargs.pop("layer_sizes"), **kwargs)


def test_the_options_are_config_read_only_and_summarized():
    model = _model()
    config = model.get_config()
    assert (config["batch_norm"], config["momentum"], config["epsilon"]) == (True, 0.9, 1e-3)
    assert mlp.MLP.from_config(config).batch_norm is True
    with pytest.raises(AttributeError):
        model.batch_norm = False
    old = {k: v for k, v in config.items() if k not in ("batch_norm", "momentum", "epsilon")}
    assert mlp.MLP.from_config(old).batch_norm is False  # configs from before: off
    assert "batch_norm" not in repr(mlp.MLP([6, 4, 3])) and "batch_norm=True" in repr(model)
    lines = []
    model.summary(print_fn=lines.append)
    assert "batch norm" in lines[0] and "(4, 12)" in lines[0]
    assert [tuple(b.shape) for _, b in model.get_weights()] == [(4, 12), (4, 8), (3,)]
    assert model.n_params == 6 * 12 + 48 + 12 * 8 + 32 + 8 * 3 + 3


def test_a_step_moves_the_running_averages_and_inference_uses_them(backend):
    x, y = _data()
    model = _model(backend, momentum=0.75)
    start = model.get_weights()
    np.testing.assert_array_equal(start[0][1], [[0.0] * 12, [1.0] * 12, [0.0] * 12,
                                                [1.0] * 12])
    still = mlp.optimizers.GradientTransformation(  # updates of 0: only the running rows move
        lambda p: None, lambda g, s, p=None: (mlp.tree.tree_map(lambda a: 0 * a, g), s))
    model.fit(x, y, epochs=1, batch_size=70, optimizer=still)  # one full-batch step
    got = model.get_weights()
    h = x @ start[0][0]
    np.testing.assert_allclose(got[0][1][2], 0.25 * h.mean(0), rtol=1e-12)
    np.testing.assert_allclose(got[0][1][3], 0.75 + 0.25 * h.var(0), rtol=1e-12)
    np.testing.assert_array_equal(got[0][1][:2], start[0][1][:2])
    model.fit(x, y, epochs=3, batch_size=16)
    weights = model.get_weights()
    np.testing.assert_allclose(backend.to_numpy(model.predict(x)), _inference(weights, x),
                               rtol=1e-10)
    # training normalizes with the batch's statistics: another loss than inference's
    x_dev, targets, _ = model._prepare(x, y)
    with backend.precision(model.dtype):
        train = float(core.loss_value(model.spec, model.params, x_dev, targets, training=True))
    assert abs(train - model.loss(x, y)) > 1e-3


def test_validation_scores_use_the_running_averages(backend):
    x, y = _data()
    model = _model(backend)
    history = model.fit(x[:50], y[:50], validation_data=(x[50:], y[50:]), **FIT)
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x[50:], y[50:])[
        "loss"], rel=1e-10)


def test_rows_of_weight_zero_take_no_part_in_the_batch_statistics(backend):
    x, y = _data()
    garbage = np.concatenate([x, 1e3 * np.ones((10, 6))]), np.concatenate([y, np.zeros(10, int)])
    weighted = _model(backend)
    weighted.fit(*garbage, epochs=3, shuffle=False, sample_weight=np.r_[np.ones(70), np.zeros(10)])
    plain = _model(backend)
    plain.fit(x, y, epochs=3, shuffle=False, sample_weight=np.ones(70))
    assert _difference(weighted.get_weights(), plain.get_weights()) < 1e-12


@pytest.fixture(scope="module")
def reference():
    x, y = _data()
    out = {}
    for name, fit in CASES.items():
        model = _model("numpy", **MODELS.get(name, {}))
        model.fit(x, y, **fit)
        out[name] = model.get_weights()
    return out


CASES = {"batches": FIT, "full-batch": dict(epochs=3),
         "validation": dict(FIT, validation_split=0.25),
         "weights": dict(FIT, sample_weight=np.linspace(0, 2, 70)),
         "sgd": dict(FIT, optimizer="sgd", learning_rate=0.1),
         "adamw-clip": dict(FIT, optimizer="adamw", clip_norm=0.5),
         "dropout": FIT}
MODELS = {"dropout": dict(dropout=0.2, input_dropout=0.1)}


@pytest.mark.parametrize("case", list(CASES))
def test_float64_weights_agree_across_backends(backend, reference, case):
    x, y = _data()
    model = _model(backend, **MODELS.get(case, {}))
    model.fit(x, y, **CASES[case])
    assert _difference(model.get_weights(), reference[case]) < FLOAT64


def test_fit_in_pieces_saved_loaded_and_pickled_equals_one_fit(backend, tmp_path, reference):
    x, y = _data()
    model = _model(backend)
    model.fit(x, y, epochs=1, batch_size=16)
    model.fit(x, y, epochs=1, batch_size=16)
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz", backend=backend)
    assert (loaded.batch_norm, loaded.momentum, loaded.epsilon) == (True, 0.9, 1e-3)
    loaded.fit(x, y, epochs=1, batch_size=16)
    again = pickle.loads(pickle.dumps(loaded))
    again.fit(x, y, epochs=1, batch_size=16)
    assert _difference(again.get_weights(), reference["batches"]) < FLOAT64
    again.save(tmp_path / "w.npz")  # the weights alone carry the running averages
    np.testing.assert_allclose(backend.to_numpy(mlp.load(tmp_path / "w.npz", backend).predict(x)),
                               backend.to_numpy(again.predict(x)), rtol=1e-12)


def test_a_resumed_backup_and_a_restored_snapshot_equal_one_fit(backend, tmp_path, reference):
    x, y = _data()

    def stop(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _model(backend).fit(x, y, callbacks=[stop, mlp.BackupAndRestore(tmp_path / "b")], **FIT)
    model = _model(backend)
    model.fit(x, y, callbacks=[mlp.BackupAndRestore(tmp_path / "b")], **FIT)
    assert _difference(model.get_weights(), reference["batches"]) < FLOAT64
    state = model.snapshot_state()
    before = model.get_weights()
    model.fit(x, y, epochs=2, batch_size=16)
    model.restore_state(state)
    assert _difference(model.get_weights(), before) == 0


def test_set_weights_checks_the_normalization_rows():
    model = _model()
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"layer 0 expects W of shape \(6, 12\) and b of "
                                         r"shape \(4, 12\)"):
        model.set_weights([(weights[0][0], weights[0][1][0])] + weights[1:])
    weights[1][1][3, 0] = -1.0
    with pytest.raises(ValueError, match=r"layer 1's running variance \(b\[3\]\) has negative"):
        model.set_weights(weights)


# ------------------------------------------------- gradients through the model's loss
def _training_loss_differences(model, x, y, w=None, eps=1e-6):
    be = model.backend
    x_dev, targets, _ = model._prepare(x, y)
    wd = None if w is None else be.asarray(w, "float64")
    host = model.get_weights()
    grads = []
    for layer, pair in enumerate(host):
        out = []
        for which, arr in enumerate(pair):
            g = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                vals = []
                for sign in (1, -1):
                    moved = [[a.copy() for a in p] for p in host]
                    moved[layer][which][idx] += sign * eps
                    params = [tuple(be.asarray(a, "float64") for a in p) for p in moved]
                    vals.append(float(core.loss_value(model.spec, params, x_dev, targets, wd,
                                                      training=True)))
                g[idx] = (vals[0] - vals[1]) / (2 * eps)
            out.append(g)
        grads.append(out)
    return grads


@pytest.mark.parametrize("n,weighted", [(1, False), (2, False), (2, True), (7, False),
                                        (7, True)])
def test_gradients_through_batch_norm_match_finite_differences(backend, n, weighted):
    rng = np.random.default_rng(n)
    model = mlp.MLP([3, 5, 4, 2], loss="cross_entropy", dtype="float64", seed=1,
                    batch_norm=True, activation="tanh", backend=backend)
    weights = model.get_weights()
    for _, b in weights[:-1]:  # scale and shift away from 1 and 0
        b[0] = rng.normal(size=b.shape[1])
        b[1] = rng.uniform(0.5, 2, size=b.shape[1])
    model.set_weights(weights)
    x, y = rng.normal(size=(n, 3)), rng.integers(0, 2, n)
    w = rng.uniform(0.5, 2, n) if weighted else None
    with backend.precision(model.dtype):
        want = _training_loss_differences(model, x, y, w)
    got = [[backend.to_numpy(a) for a in pair] for pair in model.gradients(x, y, w)]
    for g, f in zip(got, want, strict=True):
        for a, b in zip(g, f, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    if n == 1:  # one row: zhat 0, so no gradient to W or gamma of the normalized layers
        # (0 but for rounding where JAX pads the row to a bucket, rows of weight 0)
        assert np.max(np.abs(got[0][0])) < 1e-12 and np.max(np.abs(got[0][1][1])) < 1e-12
    assert all(np.all(pair[1][2:] == 0) for pair in got[:-1])  # the running rows


# ------------------------------------------------------------------ JAX's mesh
def test_four_jax_devices_train_as_one():
    """The batch statistics are reductions over the whole (row-sharded) global batch."""
    pytest.importorskip("jax")
    code = textwrap.dedent("""
        import json, numpy as np, mlp
        from mlp import backends
        rng = np.random.default_rng(0)
        x = rng.normal(size=(70, 6)) * 3 + 1; y = (x[:, 0] + x[:, 1] > 2).astype(int)
        kw = dict(loss="cross_entropy", dtype="float64", seed=3, batch_norm=True,
                  momentum=0.9, dropout=0.2)
        out = {}
        for devices in (1, 4):
            be = backends.get_backend("jax", devices=devices)
            m = mlp.MLP([6, 12, 8, 2], backend=be, **kw)
            m.fit(x, y, epochs=4, batch_size=16, validation_split=0.2)
            m.fit(x, y, epochs=2)  # full batch
            out[devices] = m.get_weights()
        ref = mlp.MLP([6, 12, 8, 2], backend="numpy", **kw)
        ref.fit(x, y, epochs=4, batch_size=16, validation_split=0.2); ref.fit(x, y, epochs=2)
        diff = lambda a, b: max(float(np.max(np.abs(u - v))) for p, q in zip(a, b)
                                for u, v in zip(p, q))
        print(json.dumps([diff(out[1], out[4]), diff(out[4], ref.get_weights())]))
    """)
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    for name in ("JAX_ENABLE_X64", "MLP_BACKEND", "MLP_DEVICES"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    four_vs_one, four_vs_numpy = json.loads(done.stdout.strip().splitlines()[-1])
    assert four_vs_one < FLOAT64 and four_vs_numpy < FLOAT64


def test_the_in_place_path_declines_batch_norm(monkeypatch):
    """NumPy's in-place executor has no normalized kernels: the pure run trains."""
    from mlp.engine import pipeline

    used, original = [], pipeline.run_epochs

    def counting(executor, *args):
        used.append(type(executor).__name__)
        return original(executor, *args)

    monkeypatch.setattr(pipeline, "run_epochs", counting)
    x, y = _data()
    _model(dtype="float32").fit(x, y, epochs=1, batch_size=16)
    _model(dtype="float32", batch_norm=False).fit(x, y, epochs=1, batch_size=16)
    assert used == ["PureEpochs", "Training"]


# ------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-6), ("float64", 1e-12)])
def test_the_onnx_graph_normalizes_with_the_running_averages(tmp_path, dtype, tolerance):
    pytest.importorskip("ndonnx")
    ort = pytest.importorskip("onnxruntime")
    x, y = _data()
    model = _model(dtype=dtype)
    model.fit(x, y, **FIT)
    model.export_onnx(tmp_path / "m.onnx")
    probs, labels = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["predict", "label"], {"x": x.astype(dtype)})
    np.testing.assert_allclose(probs, model.predict(x), rtol=0, atol=tolerance)
    np.testing.assert_array_equal(labels, model.predict_classes(x))


# ------------------------------------------------------------------ scikit-learn
def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:200] / 16, y[:200]


@pytest.fixture(scope="module")
def sklearn_reference():
    from mlp.sklearn import MLPClassifier

    x, y = _digits()
    est = MLPClassifier((16, 8), batch_norm=True, random_state=0, max_iter=3, dtype="float64",
                        backend="numpy").fit(x, y)
    return est.coefs_ + est.intercepts_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_normalize_the_same_on_every_backend(backend, sklearn_reference, tmp_path):
    from mlp.sklearn import MLPClassifier

    x, y = _digits()
    est = MLPClassifier((16, 8), batch_norm=True, random_state=0, max_iter=3,
                        dtype="float64", backend=backend).fit(x, y)
    assert [b.shape for b in est.intercepts_] == [(4, 16), (4, 8), (10,)]
    for got, want in zip(est.coefs_ + est.intercepts_, sklearn_reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT64)
    plain = MLPClassifier((16, 8), random_state=0, max_iter=3, dtype="float64",
                          backend=backend).fit(x, y)
    assert np.max(np.abs(plain.coefs_[0] - est.coefs_[0])) > 1e-3  # normalization trained
    # prediction normalizes with the running averages
    np.testing.assert_allclose(est.predict_proba(x), _inference(
        list(zip(est.coefs_, est.intercepts_)), x), rtol=1e-10)
    if backend.name == "numpy" and _has("ndonnx") and _has("onnxruntime"):
        import onnxruntime as ort

        est.to_onnx(tmp_path / "e.onnx")
        probs, = ort.InferenceSession(str(tmp_path / "e.onnx")).run(["predict"], {"x": x})
        np.testing.assert_allclose(probs, est.predict_proba(x), rtol=0, atol=1e-12)


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_estimators_refuse_batch_norm_without_a_stochastic_solver():
    from mlp.sklearn import MLPRegressor

    x, y = _digits()
    with pytest.raises(ValueError, match=r"batch_norm=True needs a stochastic solver"):
        MLPRegressor(hidden_layer_sizes=(8,), batch_norm=True, solver="lbfgs").fit(x, y)
    with pytest.raises(ValueError, match=r"'batch_norm' parameter of MLPRegressor must be"):
        MLPRegressor(batch_norm="yes").fit(x, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_refuse_to_continue_with_another_batch_norm():
    from mlp.sklearn import MLPClassifier

    x, y = _digits()
    est = MLPClassifier((8,), warm_start=True, max_iter=2, random_state=0).fit(x, y)
    before = [c.copy() for c in est.coefs_]
    est.set_params(batch_norm=True)
    with pytest.raises(ValueError, match=r"fit with warm_start=True continues the fitted "
                                         r"network, whose hidden layers are not batch-norm"):
        est.fit(x, y)
    np.testing.assert_array_equal(est.coefs_[0], before[0])
    est = MLPClassifier((8,), max_iter=2, batch_norm=True, random_state=0).fit(x, y)
    est.batch_norm = False
    with pytest.raises(ValueError, match=r"partial_fit continues the fitted network, whose "
                                         r"hidden layers are batch-normalized"):
        est.partial_fit(x, y)


# ------------------------------------------------------------------ files
def test_files_without_the_options_load_without_batch_norm_and_crafted_ones_are_refused(
        tmp_path):
    from mlp.io import ModelFileError
    from tests._helpers import rewrite_npz

    x, y = _data()
    plain = mlp.MLP([6, 12, 3], loss="cross_entropy", seed=0)
    plain.fit(x, y, epochs=2)
    plain.save(tmp_path / "old.npz", include_optimizer=True)
    config = {k: v for k, v in plain.get_config().items()
              if k not in ("batch_norm", "momentum", "epsilon")}
    rewrite_npz(tmp_path / "old.npz", config=np.asarray(json.dumps(config)))
    old = mlp.load(tmp_path / "old.npz")
    assert old.batch_norm is False
    np.testing.assert_array_equal(old.predict(x), plain.predict(x))

    model = _model()
    model.fit(x, y, epochs=1)
    model.save(tmp_path / "bn.npz", include_optimizer=True)
    b0 = model.get_weights()[0][1]
    rewrite_npz(tmp_path / "bn.npz", b0=b0[0])  # a plain bias where the rows belong
    with pytest.raises(ModelFileError, match=r"layer 0 expects W of shape \(6, 12\) and b of "
                                             r"shape \(4, 12\), got \(6, 12\) and \(12,\)"):
        mlp.load(tmp_path / "bn.npz")
    negative = b0.copy()
    negative[3, 0] = -1.0
    rewrite_npz(tmp_path / "bn.npz", b0=negative)
    with pytest.raises((ModelFileError, ValueError), match="running variance"):
        mlp.load(tmp_path / "bn.npz")


def test_a_batch_whose_rows_all_weigh_zero_changes_nothing(backend):
    """Its loss and gradients are 0, and the running averages stay (no NaN from 0 / 0)."""
    x, y = _data(n=48)
    weights = np.r_[np.zeros(16), np.linspace(0.5, 2, 32)]
    fit = dict(epochs=2, batch_size=16, shuffle=False, optimizer="sgd", learning_rate=0.1)
    model = _model(backend)
    model.fit(x, y, sample_weight=weights, **fit)
    alone = _model(backend)
    alone.fit(x[16:], y[16:], sample_weight=weights[16:], **fit)
    assert _difference(model.get_weights(), alone.get_weights()) < 1e-12
