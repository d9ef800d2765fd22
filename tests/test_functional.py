"""The pure functions of `mlp.core` on a model's ``spec`` and ``params``: the model's math
inside ``jax.jit``, ``jax.grad`` and ``jax.vmap`` and under PyTorch's autograd, where the
model's methods (which check and convert concrete arrays) refuse traced ones clearly."""

from __future__ import annotations

import numpy as np
import pytest

import mlp
from mlp import core

X = np.random.default_rng(0).normal(size=(6, 4))
Y = np.random.default_rng(1).normal(size=(6, 2))


def _model(backend, dtype="float64"):
    return mlp.MLP([4, 5, 2], activation="tanh", backend=backend, dtype=dtype, seed=3)


def _input_gradient_by_differences(model, x, y, h=1e-6):
    """d mean-loss / d x by central differences (float64, on the host)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (model.loss(up, y) - model.loss(down, y)) / (2 * h)
    return grad


def test_the_spec_and_params_give_the_models_predictions(backend):
    model = _model(backend)
    with backend.precision(model.dtype):  # (JAX: float64 within the model's scope)
        x = backend.asarray(X, "float64")
        pure = backend.to_numpy(core.forward(model.spec, model.params, x))
    got = backend.to_numpy(model.predict(X))
    if model.bucketed():  # JAX runs predict on the rows padded to 16 (mlp.buckets), whose
        # matrix products XLA may sum in another order than on 6 rows: the same to 1e-15,
        np.testing.assert_allclose(pure, got, rtol=1e-14, atol=0)
        with backend.precision(model.dtype):  # and bit for bit on the same 16 rows
            padded = backend.asarray(mlp.buckets.pad_host(X, mlp.buckets.bucket(6)), "float64")
            pure = backend.to_numpy(core.forward(model.spec, model.params, padded))[:6]
    np.testing.assert_array_equal(pure, got)
    assert model.spec.loss is mlp.losses.LOSSES["mse"]
    with pytest.raises(AttributeError):
        model.spec = None


def test_jax_transformations_of_the_pure_functions():
    jax = pytest.importorskip("jax")
    model = _model("jax")
    with model.backend.precision(model.dtype):
        x, y = model.backend.asarray(X, "float64"), model.backend.asarray(Y, "float64")
        forward = jax.jit(lambda a: core.forward(model.spec, model.params, a))
        np.testing.assert_allclose(np.asarray(forward(x)), np.asarray(model.predict(X)),
                                   rtol=1e-12)
        rows = jax.vmap(lambda row: core.forward(model.spec, model.params, row[None, :])[0])(x)
        np.testing.assert_allclose(np.asarray(rows), np.asarray(model.predict(X)), rtol=1e-12)
        saliency = jax.grad(lambda a: core.loss_value(model.spec, model.params, a, y))(x)
        loss, grads = jax.jit(lambda p: core.loss_and_gradients(model.spec, p, x, y))(
            model.params)
    np.testing.assert_allclose(np.asarray(saliency), _input_gradient_by_differences(model, X, Y),
                               rtol=1e-6, atol=1e-9)
    assert float(loss) == pytest.approx(model.loss(X, Y), rel=1e-12)
    for (dW, db), (gW, gb) in zip(grads, model.gradients(X, Y)):
        np.testing.assert_allclose(np.asarray(dW), np.asarray(gW), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(db), np.asarray(gb), rtol=1e-12, atol=1e-15)


def test_torch_autograd_through_the_pure_functions():
    torch = pytest.importorskip("torch")
    model = _model("torch")
    x = torch.asarray(X, requires_grad=True)
    core.loss_value(model.spec, model.params, x, torch.asarray(Y)).backward()
    np.testing.assert_allclose(x.grad.numpy(), _input_gradient_by_differences(model, X, Y),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "evaluate", "loss", "fit"])
def test_a_traced_array_gets_a_message_that_names_the_pure_functions(method):
    jax = pytest.importorskip("jax")
    model = mlp.MLP([4, 3], loss="cross_entropy", backend="jax", seed=0)
    labels = np.array([0, 1, 2, 1, 0, 2])
    call = {"predict": lambda a: model.predict(a),
            "predict_proba": lambda a: model.predict_proba(a),
            "evaluate": lambda a: model.evaluate(a, labels)["loss"],
            "loss": lambda a: model.loss(a, labels),
            "fit": lambda a: model.fit(a, labels, epochs=1)}[method]
    with pytest.raises(TypeError, match=r"x is traced by a JAX transformation .* "
                                        r"mlp\.core\.forward\(model\.spec, model\.params, x\)"):
        jax.jit(call)(X.astype(np.float32))
    assert model.epochs_trained_ == 0
