"""Dropout (`mlp.dropout`): masks from the seed and the epoch, the same run everywhere.

The masks are a counter-based hash of (seed, epoch, layer, row, unit) in int32
array-API operations: the same bits on every backend, so float64 weights agree to
1e-10 across NumPy, JAX, PyTorch and array-api-strict, on 1 and 4 JAX devices, and a
fit cut in pieces, saved and loaded, or resumed from a backup ends where one fit does.
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
from mlp import core, dropout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOAT64 = 1e-10
KW = dict(loss="cross_entropy", dtype="float64", seed=3, dropout=[0.3, 0.2],
          input_dropout=0.1)
FIT = dict(epochs=4, batch_size=16)


def _data(n=70, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)


def _model(backend="numpy", **kw):
    return mlp.MLP([6, 12, 8, 3], backend=backend, **{**KW, **kw})


def _difference(a, b):
    return max(float(np.max(np.abs(u - v))) for p, q in zip(a, b, strict=True)
               for u, v in zip(p, q, strict=True))


# ------------------------------------------------------------------ the masks
def _masks(epoch=0, seed=0, rates=(0.0, 0.5, 0.5), widths=(3, 40, 30), n=64, rows=None,
           xp=np, to=np.asarray):
    rows = np.arange(n, dtype=np.int32) if rows is None else rows
    stream = dropout.epoch_streams(seed, epoch, 1)[0]
    return dropout.masks(xp, rates, widths, to(stream), to(rows), xp.float64)


def test_masks_are_the_same_bits_on_every_backend(backend):
    rows = np.random.default_rng(0).permutation(500)[:64].astype(np.int32)
    with backend.precision(backend.dtype("float64")):
        got = _masks(epoch=7, seed=12345, rows=rows, xp=backend.xp, to=backend.asarray)
        got = [None if m is None else backend.to_numpy(m) for m in got]
    want = _masks(epoch=7, seed=12345, rows=rows)
    assert got[0] is None and want[0] is None
    for a, b in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_masks_drop_the_rate_and_keep_the_mean(rate):
    (mask,) = _masks(rates=[rate], widths=[100], n=4000)
    assert abs(np.mean(mask == 0) - rate) < 0.005  # 400 000 units
    assert abs(np.mean(mask) - 1.0) < 0.01
    assert set(np.unique(mask).tolist()) == {0.0, dropout.keep_scale(rate)}


def test_masks_differ_between_epochs_layers_rows_units_and_seeds():
    _, a, b = _masks(n=200, widths=(3, 40, 40))
    for other in (_masks(n=200, widths=(3, 40, 40), epoch=1)[1],
                  _masks(n=200, widths=(3, 40, 40), seed=1)[1], b):
        assert 0.4 < np.mean((a == 0) != (other == 0)) < 0.6  # as independent coins
    assert 0.4 < np.mean((a[1:] == 0) != (a[:-1] == 0)) < 0.6
    assert 0.4 < np.mean((a[:, 1:] == 0) != (a[:, :-1] == 0)) < 0.6


def test_a_layers_masks_do_not_depend_on_the_other_layers_rates():
    both = _masks(rates=(0.3, 0.5, 0.2))
    alone = _masks(rates=(0.0, 0.5, 0.0))
    assert alone[0] is None and alone[2] is None
    np.testing.assert_array_equal(both[1], alone[1])


def test_the_largest_rate_keeps_one_unit_in_2_to_the_24():
    rate = 1 - 2**-24
    assert dropout.threshold(rate) == 2**24 - 1 and dropout.keep_scale(rate) == 2.0**24
    dropout.check_rate(rate, "dropout")
    with pytest.raises(ValueError, match="drops every unit"):
        dropout.check_rate(1 - 2**-25, "dropout")
    mlp.MLP([6, 12, 3], dropout=rate, input_dropout=rate)


def test_a_rate_of_zero_masks_nothing():
    masks = _masks(rates=(0.0, 0.5), widths=(3, 4), n=10)
    assert masks[0] is None and masks[1].shape == (10, 4)


# ------------------------------------------------------------------ constructor
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(dropout=1.0), ValueError, r"dropout must be a rate in \[0, 1\)"),
    (dict(dropout=-0.1), ValueError, r"dropout must be a rate in \[0, 1\)"),
    (dict(dropout=[0.5, 1.5]), ValueError, r"dropout must be a rate in \[0, 1\)"),
    (dict(dropout=[]), ValueError, "dropout must be"),
    (dict(dropout="0.5"), TypeError, "dropout must be"),
    (dict(dropout=True), TypeError, "dropout must be"),
    (dict(dropout=[0.5]), ValueError, r"dropout lists 1 rates, but layer_sizes \[6, 12, 8, 3\] "
                                      r"has 2 hidden layers"),
    (dict(input_dropout=1.0), ValueError, r"input_dropout must be a finite number in \[0, 1\)"),
    (dict(input_dropout=float("nan")), ValueError, "input_dropout must be"),
    # below 1, but 1 at the 24 bits a rate is applied with: every unit dropped
    (dict(dropout=0.99999999), ValueError, r"dropout=0.99999999 drops every unit: a rate is "
                                           r"applied to 24 bits .* 1 - 2\*\*-24 = 0.99999994"),
    (dict(dropout=[0.1, 1 - 2**-25]), ValueError, r"dropout=0.99999997\d* drops every unit"),
    (dict(input_dropout=1 - 2**-25), ValueError, r"input_dropout=0.99999997\d* drops every"),
])
def test_the_constructor_refuses_bad_rates(kwargs, error, match):
    with pytest.raises(error, match=match):
        mlp.MLP([6, 12, 8, 3], **kwargs)


def test_a_model_without_hidden_layers_takes_input_dropout_only():
    with pytest.raises(ValueError, match=r"layer_sizes \[6, 3\] has none; to drop input "
                                         r"features use input_dropout"):
        mlp.MLP([6, 3], dropout=0.5)
    assert mlp.MLP([6, 3], input_dropout=0.5).spec.dropout == (0.5,)
    assert mlp.MLP([6, 3], dropout=0.0).spec.dropout == ()


def test_the_rates_are_config_and_read_only():
    model = _model()
    config = model.get_config()
    assert config["dropout"] == [0.3, 0.2] and config["input_dropout"] == 0.1
    assert json.loads(json.dumps(config)) == config
    again = mlp.MLP.from_config(config)
    assert again.dropout == (0.3, 0.2) and again.input_dropout == 0.1
    assert mlp.MLP([2, 3, 1], dropout=0.5).get_config()["dropout"] == 0.5
    with pytest.raises(AttributeError, match="read-only"):
        model.dropout = 0.1
    old = {k: v for k, v in config.items() if k not in ("dropout", "input_dropout")}
    assert mlp.MLP.from_config(old).dropout == 0.0  # a config from before the option


def test_summary_names_the_dropout():
    lines = []
    _model().summary(lines.append)
    rows = lines[0].splitlines()
    assert rows[2].split()[-2:] == ["input", "dropout"]
    assert [r.split()[-1] for r in rows[4:7]] == ["0.1", "0.3", "0.2"]
    plain = []
    _model(dropout=0.0, input_dropout=0.0).summary(plain.append)
    assert "dropout" not in plain[0]


# ------------------------------------------------------------------ inference
def test_inference_drops_nothing(backend):
    x, y = _data()
    model, plain = _model(backend), _model(backend, dropout=0.0, input_dropout=0.0)
    model.fit(x, y, validation_split=0.2, **FIT)
    plain.set_weights(model.get_weights())
    np.testing.assert_array_equal(backend.to_numpy(model.predict(x)),
                                  backend.to_numpy(plain.predict(x)))
    assert model.evaluate(x, y) == plain.evaluate(x, y)
    assert model.loss(x, y) == plain.loss(x, y)
    # the validation scores of the last epoch are inference scores of its weights
    val = model.history_.history["val_loss"][-1]
    rows = np.sort(model.validation_split_rng().permutation(len(x))[:14])
    assert val == pytest.approx(plain.evaluate(x[rows], y[rows])["loss"], rel=1e-12)


def test_dropout_changes_training_and_a_rate_of_zero_does_not(backend):
    x, y = _data()
    runs = {}
    for name, kw in (("drop", {}), ("zero", dict(dropout=[0.0, 0.0], input_dropout=0.0)),
                     ("plain", dict(dropout=0.0, input_dropout=0.0))):
        model = _model(backend, **kw)
        model.fit(x, y, **FIT)
        runs[name] = model.get_weights()
    assert _difference(runs["zero"], runs["plain"]) == 0.0
    assert _difference(runs["drop"], runs["plain"]) > 1e-3


# ------------------------------------------------------------------ the same run everywhere
@pytest.fixture(scope="module")
def reference():
    """name -> weights of fits on NumPy."""
    x, y = _data()
    out = {}
    for name, fit in CASES.items():
        model = _model("numpy")
        model.fit(x, y, **fit)
        out[name] = model.get_weights()
    return out


CASES = {"batches": FIT, "full-batch": dict(epochs=3),
         "unshuffled": dict(FIT, shuffle=False), "validation": dict(FIT, validation_split=0.25),
         "weights": dict(FIT, sample_weight=np.linspace(0, 2, 70)),
         "sgd": dict(FIT, optimizer="sgd", learning_rate=0.1)}


@pytest.mark.parametrize("case", list(CASES))
def test_float64_weights_agree_across_backends(backend, reference, case):
    x, y = _data()
    model = _model(backend)
    model.fit(x, y, **CASES[case])
    assert _difference(model.get_weights(), reference[case]) < FLOAT64


def test_fit_in_pieces_saved_loaded_and_pickled_equals_one_fit(backend, tmp_path, reference):
    x, y = _data()
    model = _model(backend)
    model.fit(x, y, epochs=1, batch_size=16)
    model.fit(x, y, epochs=1, batch_size=16)
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz", backend=backend)
    assert loaded.dropout == (0.3, 0.2) and loaded.input_dropout == 0.1
    loaded.fit(x, y, epochs=1, batch_size=16)
    again = pickle.loads(pickle.dumps(loaded))
    again.fit(x, y, epochs=1, batch_size=16)
    assert _difference(again.get_weights(), reference["batches"]) < FLOAT64


def test_a_resumed_backup_equals_one_fit(backend, tmp_path, reference):
    x, y = _data()

    def stop(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _model(backend).fit(x, y, callbacks=[stop, mlp.BackupAndRestore(tmp_path / "b")], **FIT)
    model = _model(backend)
    model.fit(x, y, callbacks=[mlp.BackupAndRestore(tmp_path / "b")], **FIT)
    assert _difference(model.get_weights(), reference["batches"]) < FLOAT64


def test_the_in_place_path_declines_dropout(monkeypatch):
    """NumPy's in-place executor has no masked kernels: with dropout the pure run trains."""
    from mlp.engine import pipeline

    used, original = [], pipeline.run_epochs

    def counting(executor, *args):
        used.append(type(executor).__name__)
        return original(executor, *args)

    monkeypatch.setattr(pipeline, "run_epochs", counting)
    x, y = _data()
    _model(dtype="float32", seed=11).fit(x, y, epochs=1, batch_size=16)
    _model(dtype="float32", seed=11, dropout=0.0, input_dropout=0.0).fit(x, y, epochs=1,
                                                                         batch_size=16)
    assert used == ["PureEpochs", "Training"]


def test_four_jax_devices_train_as_one():
    pytest.importorskip("jax")
    code = textwrap.dedent("""
        import json, numpy as np, mlp
        from mlp import backends
        rng = np.random.default_rng(0)
        x = rng.normal(size=(70, 6)); y = (x[:, 0] + x[:, 1] > 0).astype(int)
        out = {}
        for devices in (1, 4):
            be = backends.get_backend("jax", devices=devices)
            m = mlp.MLP([6, 12, 8, 2], loss="cross_entropy", dtype="float64", seed=3,
                        dropout=[0.3, 0.2], input_dropout=0.1, backend=be)
            m.fit(x, y, epochs=4, batch_size=16)
            m.fit(x, y, epochs=2)  # full batch
            out[devices] = m.get_weights()
        ref = mlp.MLP([6, 12, 8, 2], loss="cross_entropy", dtype="float64", seed=3,
                      dropout=[0.3, 0.2], input_dropout=0.1, backend="numpy")
        ref.fit(x, y, epochs=4, batch_size=16); ref.fit(x, y, epochs=2)
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


def test_core_applies_the_masks_given():
    """`mlp.core.loss_value` with masks is the forward pass on the masked inputs."""
    model = _model()
    x, y = _data(n=5)
    x_dev, targets, _ = model._prepare(x, y)
    masks = _masks(seed=3, rates=(0.1, 0.3, 0.2), widths=(6, 12, 8), n=5)
    (W0, b0), (W1, b1), (W2, b2) = model.params
    a = np.maximum((x * masks[0]) @ W0 + b0, 0)
    a = np.maximum((a * masks[1]) @ W1 + b1, 0)
    z = (a * masks[2]) @ W2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = -np.mean(np.log(p[np.arange(5), y]))
    assert float(core.loss_value(model.spec, model.params, x_dev, targets, masks=masks)) \
        == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------ scikit-learn
def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:200] / 16, y[:200]


@pytest.fixture(scope="module")
def sklearn_reference():
    from mlp.sklearn import MLPClassifier

    x, y = _digits()
    est = MLPClassifier((16, 8), dropout=[0.3, 0.1], random_state=0, max_iter=3, dtype="float64",
                        backend="numpy").fit(x, y)
    return est.coefs_ + est.intercepts_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_drop_the_same_units_on_every_backend(backend, sklearn_reference):
    from mlp.sklearn import MLPClassifier

    x, y = _digits()
    est = MLPClassifier((16, 8), dropout=[0.3, 0.1], random_state=0, max_iter=3,
                        dtype="float64", backend=backend).fit(x, y)
    for got, want in zip(est.coefs_ + est.intercepts_, sklearn_reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT64)
    plain = MLPClassifier((16, 8), random_state=0, max_iter=3, dtype="float64",
                          backend=backend).fit(x, y)
    assert np.max(np.abs(plain.coefs_[0] - est.coefs_[0])) > 1e-3  # dropout trained
    zero = MLPClassifier((16, 8), dropout=[0.0, 0.0], random_state=0, max_iter=3,
                         dtype="float64", backend=backend).fit(x, y)
    for a, b in zip(zero.coefs_ + zero.intercepts_, plain.coefs_ + plain.intercepts_):
        np.testing.assert_array_equal(a, b)  # a rate of 0 is scikit-learn's estimator
    # prediction drops nothing: the plain forward pass of the learned weights
    a = x
    for W, b in zip(est.coefs_[:-1], est.intercepts_[:-1]):
        a = np.maximum(a @ W + b, 0)
    z = a @ est.coefs_[-1] + est.intercepts_[-1]
    np.testing.assert_allclose(est.predict_proba(x), np.exp(z) / np.exp(z).sum(1, keepdims=True),
                               rtol=1e-10)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dropout=0.5, solver="lbfgs"), "needs a stochastic solver"),
    (dict(dropout=[0.5, 0.5]), r"one such rate per hidden layer \(1 here\)"),
    (dict(dropout=[1.0]), r"dropout must be a rate in \[0, 1\)"),
    (dict(dropout=1.0), r"'dropout' parameter of MLPRegressor must be"),
    (dict(dropout=[[0.1]]), r"dropout must be a rate in \[0, 1\) or a list of one such rate "
                            r"per hidden layer \(1 here\), got \[\[0.1\]\]"),
    (dict(dropout=["a"]), r"dropout must be a rate in \[0, 1\).*got \['a'\]"),
    (dict(dropout=0.99999999), r"dropout=0.99999999 drops every unit"),
    (dict(dropout=[1 - 2**-25]), r"dropout=0.99999997\d* drops every unit"),
])
def test_estimators_refuse_bad_dropout(kwargs, match):
    from mlp.sklearn import MLPRegressor

    x, y = _digits()
    with pytest.raises(ValueError, match=match):
        MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, **kwargs).fit(x, y)
