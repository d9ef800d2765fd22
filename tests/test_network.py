"""The seed notebook's API, `mlp.Network`, on every backend."""

from __future__ import annotations

import re

import numpy as np
import pytest

import mlp

SEED = 1  # a seed whose ReLU output unit starts alive on this data (seed 0 starts dead)


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((100, 3)), rng.standard_normal((100, 1))


def test_train_prints_every_100_epochs_and_the_loss_falls(backend, capsys):
    x, y = _data()
    net = mlp.Network(input_dim=3, hidden_dim=4, output_dim=1, backend=backend, seed=SEED)
    losses = net.train(x, y, epochs=1000, learning_rate=0.01)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and len(losses) == 1000
    for i, line in enumerate(lines):
        match = re.fullmatch(r"epoch (\d+), loss: (\S+)", line)
        assert match and int(match.group(1)) == 100 * i
        assert float(match.group(2)) == pytest.approx(losses[100 * i], rel=1e-6)
    assert losses[-1] < losses[0] * 0.95
    assert all(b <= a + 1e-7 for a, b in zip(losses, losses[1:]))  # full-batch GD, small lr


def test_network_matches_the_notebook_math(backend):
    """forward = relu(relu(x W1 + b1) W2 + b2); one backward step = one GD step on
    mean(0.5 (a - y)^2)."""
    x, y = _data()
    net = mlp.Network(3, 4, 1, backend=backend, seed=SEED, dtype="float64")
    (W1, b1), (W2, b2) = net.model.get_weights()
    assert W1.shape == (3, 4) and b1.shape == (4,) and not b1.any()
    h = np.maximum(x @ W1 + b1, 0)
    out = np.maximum(h @ W2 + b2, 0)
    np.testing.assert_allclose(backend.to_numpy(net.forward(x)), out, rtol=1e-12)

    dz2 = (out - y) / 100 * (out > 0)
    dW2 = h.T @ dz2
    dz1 = dz2 @ W2.T * (h > 0)
    dW1 = x.T @ dz1
    net.backward(x, y, learning_rate=0.1)
    (nW1, nb1), (nW2, nb2) = net.model.get_weights()
    np.testing.assert_allclose(nW2, W2 - 0.1 * dW2, rtol=1e-12)
    np.testing.assert_allclose(nW1, W1 - 0.1 * dW1, rtol=1e-12)
    np.testing.assert_allclose(nb2, b2 - 0.1 * dz2.sum(0), rtol=1e-12)
    np.testing.assert_allclose(nb1, b1 - 0.1 * dz1.sum(0), rtol=1e-12)


def test_a_dead_relu_output_never_learns():
    """The caveat the docs warn of: if the output unit's pre-activation is negative
    for every sample, its gradient is zero and the loss stays put."""
    x, y = _data()
    net = mlp.Network(3, 4, 1, seed=SEED, dtype="float64")
    (W1, b1), (W2, _) = net.model.get_weights()
    net.model.set_weights([(W1, b1), (W2, np.array([-100.0]))])
    losses = net.train(x, y, epochs=200, learning_rate=0.01)
    assert losses[0] == losses[-1] == pytest.approx(np.mean(0.5 * y**2))


@pytest.mark.parametrize("epochs, exc, match", [
    (-5, ValueError, r"epochs must be an integer >= 1, got -5"),
    (0, ValueError, r"epochs must be an integer >= 1, got 0"),
    (150.0, TypeError, r"epochs must be an integer >= 1, got 150\.0"),
    ("10", TypeError, r"epochs must be an integer >= 1, got '10'"),
])
def test_train_refuses_epochs_that_are_not_a_count(epochs, exc, match, capsys):
    x, y = _data()
    net = mlp.Network(3, 4, 1, seed=SEED)
    before = net.model.get_weights()
    with pytest.raises(exc, match=match):
        net.train(x, y, epochs=epochs, learning_rate=0.01)
    for (W, b), (W0, b0) in zip(net.model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    assert capsys.readouterr().out == ""


def test_train_accepts_numpy_integers():
    x, y = _data()
    losses = mlp.Network(3, 4, 1, seed=SEED).train(x, y, epochs=np.int64(3), learning_rate=0.01)
    assert len(losses) == 3


@pytest.mark.parametrize("dims, match", [
    ((0, 4, 1), r"input_dim must be an integer >= 1, got 0"),
    ((3, 2.5, 1), r"hidden_dim must be an integer >= 1, got 2\.5"),
    ((3, 4, True), r"output_dim must be an integer >= 1, got True"),
])
def test_network_dimensions_are_named_in_errors(dims, match):
    with pytest.raises((TypeError, ValueError), match=match):
        mlp.Network(*dims)
