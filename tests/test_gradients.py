"""Hand-derived gradients against central finite differences, on every backend.

The cases come from the registries (`mlp.activations.ACTIVATIONS`, `mlp.losses.LOSSES`):
a newly registered activation or loss is checked here without editing this file.
"""

from __future__ import annotations

import numpy as np
import pytest

import mlp
from mlp import core

HIDDEN = list(mlp.activations.hidden_activations())
# (loss, output activation): every loss with every output activation it allows.
HEADS = [(name, out) for name, loss in mlp.losses.LOSSES.items() for out in loss.allowed_outputs]


def _targets(loss, rng, n, n_out):
    return mlp.losses.LOSSES[loss].sample_targets(rng, n, n_out)


def _finite_difference(model, x, y, eps=1e-6, weights=None, masks=None):
    """Central differences of model.loss over every weight, on the model's backend
    (with ``masks``: the training loss with those dropout masks held fixed)."""
    with model.backend.precision(model.dtype):  # float64 on JAX without the global flag
        return _central_differences(model, x, y, eps, weights, masks)


def _central_differences(model, x, y, eps, weights, masks=None):
    be = model.backend
    x_dev, targets, _ = model._prepare(x, y)
    w = None if weights is None else be.asarray(weights, "float64")
    loss = be.jit(lambda p, x, y, w, m: core.loss_value(model._spec, p, x, y, w, m))
    host = model.get_weights()
    grads = []
    for layer, (W, b) in enumerate(host):
        pair = []
        for which, arr in enumerate((W, b)):
            g = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                vals = []
                for sign in (1, -1):
                    pert = [(w.copy(), c.copy()) for w, c in host]
                    pert[layer][which][idx] += sign * eps
                    params = [(be.asarray(w, "float64"), be.asarray(c, "float64"))
                              for w, c in pert]
                    vals.append(float(loss(params, x_dev, targets, w, masks)))
                g[idx] = (vals[0] - vals[1]) / (2 * eps)
            pair.append(g)
        grads.append(pair)
    return grads


@pytest.mark.parametrize("n_out", [1, 3], ids=["1out", "3out"])
@pytest.mark.parametrize("loss,output", HEADS, ids=[f"{a}-{b}" for a, b in HEADS])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients_match_finite_differences(backend, hidden, loss, output, n_out, rng):
    n_out = max(n_out, mlp.losses.LOSSES[loss].min_outputs)  # cross-entropy needs 2
    model = mlp.MLP([3, 4, n_out], activation=hidden, output_activation=output, loss=loss,
                    backend=backend, dtype="float64", seed=7)
    x = rng.normal(size=(6, 3))
    y = _targets(loss, rng, 6, n_out)
    analytic = [(backend.to_numpy(dW), backend.to_numpy(db)) for dW, db in model.gradients(x, y)]
    numeric = _finite_difference(model, x, y)
    for (dW, db), (nW, nb) in zip(analytic, numeric):
        np.testing.assert_allclose(dW, nW, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(db, nb, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss,output", HEADS, ids=[f"{a}-{b}" for a, b in HEADS])
def test_weighted_gradients_match_finite_differences(backend, loss, output, rng):
    """Row weights (zeros included) through every loss and output: the gradient is that
    of the weighted mean ``sum_i w_i l_i / sum_i w_i``."""
    n_out = max(2, mlp.losses.LOSSES[loss].min_outputs)
    model = mlp.MLP([3, 4, n_out], activation="tanh", output_activation=output, loss=loss,
                    backend=backend, dtype="float64", seed=5)
    x = rng.normal(size=(7, 3))
    y = _targets(loss, rng, 7, n_out)
    w = np.array([0.5, 0.0, 2.0, 1.0, 3.0, 0.0, 0.25])
    x_dev, targets, _ = model._prepare(x, y)
    grads = backend.jit(lambda p, x, y, w: core.loss_and_gradients(
        model._spec, p, x, y, weights=w)[1])(model.params, x_dev, targets,
                                             backend.asarray(w, "float64"))
    numeric = _finite_difference(model, x, y, weights=w)
    for (dW, db), (nW, nb) in zip(grads, numeric):
        np.testing.assert_allclose(backend.to_numpy(dW), nW, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(backend.to_numpy(db), nb, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss,output", HEADS, ids=[f"{a}-{b}" for a, b in HEADS])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_dropout_gradients_match_finite_differences(backend, hidden, loss, output, rng):
    """With the dropout masks held fixed (input and both hidden layers), the hand-derived
    backward pass (the same mask scaling the gradient on its way back) is the gradient
    of the masked loss; with row weights, zeros included."""
    n_out = max(2, mlp.losses.LOSSES[loss].min_outputs)
    model = mlp.MLP([3, 5, 4, n_out], activation=hidden, output_activation=output, loss=loss,
                    backend=backend, dtype="float64", seed=9, dropout=[0.5, 0.3],
                    input_dropout=0.2)
    # biases off 0: a row whose units are all dropped would sit on ReLU's kink at z = b
    model.set_weights([(W, 0.1 * rng.normal(size=b.shape)) for W, b in model.get_weights()])
    x = rng.normal(size=(7, 3))
    y = _targets(loss, rng, 7, n_out)
    w = np.array([0.5, 0.0, 2.0, 1.0, 3.0, 1.0, 0.25])
    with backend.precision(model.dtype):
        stream = backend.asarray(mlp.dropout.epoch_streams(9, 4, 1)[0])
        rows = backend.asarray(np.arange(7, dtype=np.int32))
        masks = mlp.dropout.masks(backend.xp, model.spec.dropout, [3, 5, 4], stream, rows,
                                  model.dtype)
        assert all(float(backend.xp.min(m)) == 0.0 for m in masks)  # units dropped
        x_dev, targets, _ = model._prepare(x, y)
        grads = backend.jit(lambda p, x, y, w, m: core.loss_and_gradients(
            model._spec, p, x, y, weights=w, masks=m)[1])(
                model.params, x_dev, targets, backend.asarray(w, "float64"), masks)
    numeric = _finite_difference(model, x, y, weights=w, masks=masks)
    for (dW, db), (nW, nb) in zip(grads, numeric):
        np.testing.assert_allclose(backend.to_numpy(dW), nW, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(backend.to_numpy(db), nb, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss", list(mlp.losses.LOSSES))
def test_gradients_agree_across_backends(backend, loss, rng):
    kwargs = dict(activation="tanh", loss=loss, dtype="float64", seed=3)
    x = rng.normal(size=(20, 5))
    y = _targets(loss, rng, 20, 4)
    reference = mlp.MLP([5, 8, 6, 4], backend="numpy", **kwargs).gradients(x, y)
    model = mlp.MLP([5, 8, 6, 4], backend=backend, **kwargs)
    for (dW, db), (rW, rb) in zip(model.gradients(x, y), reference):
        np.testing.assert_allclose(backend.to_numpy(dW), rW, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(backend.to_numpy(db), rb, rtol=1e-12, atol=1e-14)


def test_mse_gradient_divides_by_every_output(rng):
    """The notebook divides by n only; with several outputs the true gradient of
    mean(0.5 * (a - y)**2) also divides by the number of outputs."""
    model = mlp.MLP([2, 3], activation="identity", loss="mse", dtype="float64", seed=0)
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 3))
    W, b = model.get_weights()[0]
    pred = x @ W + b
    expected_dW = x.T @ (pred - y) / (5 * 3)
    np.testing.assert_allclose(model.gradients(x, y)[0][0], expected_dW, rtol=1e-12)
    assert model.loss(x, y) == pytest.approx(np.mean(0.5 * (pred - y) ** 2), rel=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    model = mlp.MLP([1, 2], activation="identity", loss="cross_entropy", dtype="float64", seed=0)
    model.set_weights([(np.array([[1000.0, -1000.0]]), np.zeros(2))])
    x = np.array([[1.0], [1.0]])
    assert model.loss(x, np.array([0, 1])) == pytest.approx(1000.0, rel=1e-12)
    dW, db = model.gradients(x, np.array([0, 0]))[0]
    assert np.all(np.isfinite(dW)) and np.allclose(db, 0.0)


def test_binary_cross_entropy_is_stable_for_huge_logits():
    model = mlp.MLP([1, 1], activation="identity", loss="binary_cross_entropy",
                    dtype="float64", seed=0)
    model.set_weights([(np.array([[800.0]]), np.zeros(1))])
    x = np.array([[1.0], [-1.0]])
    # z = +800 with y = 0 and z = -800 with y = 1: each costs 800
    assert model.loss(x, np.array([[0.0], [1.0]])) == pytest.approx(800.0, rel=1e-12)
    assert model.loss(x, np.array([[1.0], [0.0]])) == pytest.approx(0.0, abs=1e-12)


def test_the_registries_cover_the_built_ins():
    """The parametrization above is not vacuous: it holds every built-in."""
    assert {"relu", "leaky_relu", "tanh", "sigmoid", "identity"} <= set(HIDDEN)
    assert "softmax" not in HIDDEN and "exp" not in HIDDEN
    assert {("mse", "identity"), ("mse", "tanh"), ("cross_entropy", "softmax"),
            ("binary_cross_entropy", "sigmoid"), ("poisson", "exp")} <= set(HEADS)
    assert len(HEADS) == len(HIDDEN) + 3
