"""Losses own their specifics; activations and losses live in registries that users extend."""

from __future__ import annotations

import numpy as np
import pytest

import mlp
from mlp import activations, losses


def test_each_loss_states_its_specifics():
    mse, ce, bce = (losses.LOSSES[n] for n in ("mse", "cross_entropy", "binary_cross_entropy"))
    assert (mse.default_output, ce.default_output, bce.default_output) == (
        "identity", "softmax", "sigmoid")
    assert mse.allowed_outputs == activations.hidden_activations()
    assert (ce.allowed_outputs, bce.allowed_outputs) == (("softmax",), ("sigmoid",))
    assert (mse.score_names, ce.score_names, bce.score_names) == (
        ("r2", "mse"), ("accuracy",), ("accuracy",))
    assert (mse.classification, ce.classification, bce.classification) == (False, True, True)
    assert (mse.min_outputs, ce.min_outputs, bce.min_outputs) == (1, 2, 1)


def test_prepare_targets_score_and_classes(backend):
    xp = backend.xp
    ce = losses.LOSSES["cross_entropy"]
    targets, labels = ce.prepare_targets(backend, np.array([2, 0, 1]), 3, 3, backend.dtype(
        "float64"))
    np.testing.assert_array_equal(backend.to_numpy(targets), np.eye(3)[[2, 0, 1]])
    np.testing.assert_array_equal(backend.to_numpy(labels), [2, 0, 1])
    z = backend.asarray(np.array([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    (accuracy,) = ce.score(xp, z, z, targets, labels)
    assert float(accuracy) == pytest.approx(2 / 3, rel=1e-15)
    np.testing.assert_array_equal(backend.to_numpy(ce.predict_classes(xp, z)), [2, 0, 2])

    mse = losses.LOSSES["mse"]
    y, none = mse.prepare_targets(backend, np.array([1.0, 2.0, 4.0]), 3, 1,
                                  backend.dtype("float64"))
    assert none is None and tuple(y.shape) == (3, 1)
    pred = backend.asarray(np.array([[1.0], [2.0], [3.0]]))
    r2, err = mse.score(xp, pred, pred, y, None)
    # residual 1, total variance 14/3 -> r2 = 1 - 3/14
    assert float(r2) == pytest.approx(1 - 3 / 14, rel=1e-14)
    assert float(err) == pytest.approx(1 / 3, rel=1e-14)


def test_cross_entropy_with_one_output_points_to_binary_cross_entropy():
    with pytest.raises(ValueError, match=r"loss 'cross_entropy' needs at least 2 output units, "
                                         r"but layer_sizes ends in 1\. With one unit the softmax "
                                         r"is always 1.*loss='binary_cross_entropy'"):
        mlp.MLP([3, 1], loss="cross_entropy")


def _softsign(xp, z):
    return z / (1.0 + xp.abs(z))


def _softsign_backward(xp, delta, z, a):
    return delta / (1.0 + xp.abs(z)) ** 2


def test_a_registered_activation_trains_and_is_checked(registries, backend):
    mlp.register_activation("softsign", _softsign, _softsign_backward)
    assert "softsign" in activations.hidden_activations()
    model = mlp.MLP([3, 4, 2], activation="softsign", output_activation="softsign",
                    backend=backend, dtype="float64", seed=0)
    assert model.init == "glorot" and model.get_config()["activation"] == "softsign"
    x = np.random.default_rng(0).normal(size=(5, 3))
    (W1, b1), (W2, b2) = model.get_weights()
    h = x @ W1 + b1
    h = h / (1 + np.abs(h))
    out = h @ W2 + b2
    np.testing.assert_allclose(backend.to_numpy(model.predict(x)), out / (1 + np.abs(out)),
                               rtol=1e-12)
    with pytest.raises(ValueError, match=r"an activation named 'softsign' is already registered"):
        mlp.register_activation("softsign", _softsign, _softsign_backward)


def test_a_registered_loss_is_usable_by_name(registries):
    def value(xp, z, a, y):
        return xp.sum(xp.abs(a - y)) / (y.shape[0] * y.shape[1])

    def value_and_delta(xp, z, a, y, output):
        n = y.shape[0] * y.shape[1]
        return value(xp, z, a, y), output.backward(xp, xp.sign(a - y) / n, z, a)

    mlp.register_loss(mlp.Loss("mae", value=value, value_and_delta=value_and_delta,
                               default_output="identity"))
    model = mlp.MLP([2, 1], loss="mae", activation="identity", backend="numpy",
                    dtype="float64", seed=0)
    x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[3.0], [-3.0]])
    (W, b), = model.get_weights()
    assert model.loss(x, y) == pytest.approx(np.mean(np.abs(x @ W + b - y)), rel=1e-12)
    assert set(model.evaluate(x, y)) == {"loss", "r2", "mse"}
    with pytest.raises(ValueError, match=r"predict_classes needs a classification loss "
                                         r"\(cross_entropy or binary_cross_entropy\)"):
        model.predict_classes(x)
    with pytest.raises(ValueError, match=r"a loss named 'mae' is already registered"):
        mlp.register_loss(losses.LOSSES["mae"])


def test_a_loss_takes_its_targets_from_one_targets_object(registries):
    """Checking the user's y, drawing valid targets and making classes: one `Targets`."""
    built_in = {name: loss.targets for name, loss in losses.BUILT_IN.items()}
    assert built_in == {"mse": losses.REAL_TARGETS, "cross_entropy": losses.CLASS_TARGETS,
                        "binary_cross_entropy": losses.BINARY_TARGETS,
                        "poisson": losses.COUNT_TARGETS}
    rng = np.random.default_rng(0)
    labels = losses.LOSSES["cross_entropy"].sample_targets(rng, 50, 3)
    assert labels.shape == (50,) and set(labels.tolist()) == {0, 1, 2}
    binary = losses.LOSSES["binary_cross_entropy"].sample_targets(rng, 50, 2)
    assert binary.shape == (50, 2) and set(np.unique(binary).tolist()) == {0.0, 1.0}

    def terms(xp, z, a, y):
        return xp.abs(a - y)

    def terms_and_delta(xp, z, a, y, output, scale):
        return terms(xp, z, a, y), output.backward(xp, xp.sign(a - y) * scale, z, a)

    # a loss of real targets needs nothing more: the gradient tests can draw its targets
    mae = mlp.Loss("mae", terms=terms, terms_and_delta=terms_and_delta,
                   default_output="identity")
    assert mae.targets is losses.REAL_TARGETS and not mae.classification
    assert mae.sample_targets(np.random.default_rng(1), 4, 2).shape == (4, 2)
    own = mlp.Loss("mae_own", terms=terms, terms_and_delta=terms_and_delta,
                   default_output="identity", targets=losses.Targets(losses.real_targets))
    with pytest.raises(ValueError, match=r"loss 'mae_own' cannot draw targets: its Targets "
                                         r"has no sample function"):
        own.sample_targets(rng, 4, 2)
    with pytest.raises(ValueError, match=r"loss 'mae_own' is not a classifier"):
        own.predict_classes(np, np.zeros((2, 2)))
    with pytest.raises(TypeError, match=r"Loss 'bad': targets must be a mlp.losses.Targets, "
                                        r"got function"):
        mlp.Loss("bad", terms=terms, terms_and_delta=terms_and_delta,
                 default_output="identity", targets=losses.real_targets)
