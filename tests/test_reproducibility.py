"""One seed, one run: the same weights on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import mlp


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("init", ["he", "glorot", "normal"])
def test_same_seed_gives_bit_identical_initial_weights(backend, dtype, init):
    sizes = [7, 16, 5, 3]
    reference = mlp.MLP(sizes, init=init, dtype=dtype, seed=42, backend="numpy").get_weights()
    weights = mlp.MLP(sizes, init=init, dtype=dtype, seed=42, backend=backend).get_weights()
    for (W, b), (rW, rb) in zip(weights, reference):
        assert W.dtype == np.dtype(dtype) and W.shape == rW.shape
        np.testing.assert_array_equal(W, rW)
        np.testing.assert_array_equal(b, rb)
        assert not np.any(b)


def test_initializers_have_their_documented_scale():
    rng_sizes = [400, 300, 200]
    he = mlp.MLP(rng_sizes, init="he", seed=0, dtype="float64").get_weights()[0][0]
    glorot = mlp.MLP(rng_sizes, init="glorot", seed=0, dtype="float64").get_weights()[0][0]
    normal = mlp.MLP(rng_sizes, init="normal", seed=0, dtype="float64").get_weights()[0][0]
    assert he.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    limit = np.sqrt(6 / (400 + 300))
    assert glorot.max() <= limit and glorot.min() >= -limit
    assert glorot.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert normal.std() == pytest.approx(1.0, rel=0.02)


def test_different_seeds_differ():
    a = mlp.MLP([3, 4, 1], seed=1).get_weights()[0][0]
    b = mlp.MLP([3, 4, 1], seed=2).get_weights()[0][0]
    assert not np.array_equal(a, b)


def test_seed_none_draws_and_records_a_seed():
    model = mlp.MLP([3, 4, 1])
    again = mlp.MLP([3, 4, 1], seed=model.seed)
    np.testing.assert_array_equal(model.get_weights()[0][0], again.get_weights()[0][0])


# float32 results differ across libraries only through the order of summation
# inside matmul/sum kernels; 20 epochs keep that within a few float32 ulps of the weights.
TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-6)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [None, 16], ids=["full-batch", "batch16"])
def test_twenty_sgd_epochs_end_at_the_same_weights(backend, dtype, batch_size, rng):
    x, y = rng.normal(size=(100, 3)), rng.normal(size=(100, 2))
    kwargs = dict(activation="tanh", dtype=dtype, seed=5)
    ref = mlp.MLP([3, 8, 2], backend="numpy", **kwargs)
    ref_hist = ref.fit(x, y, epochs=20, learning_rate=0.05, batch_size=batch_size)
    model = mlp.MLP([3, 8, 2], backend=backend, **kwargs)
    hist = model.fit(x, y, epochs=20, learning_rate=0.05, batch_size=batch_size)
    for (W, b), (rW, rb) in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(W, rW, **TOLERANCE[dtype])
        np.testing.assert_allclose(b, rb, **TOLERANCE[dtype])
    np.testing.assert_allclose(hist.history["loss"], ref_hist.history["loss"],
                               **TOLERANCE[dtype])
    assert hist.history["loss"][-1] < hist.history["loss"][0]
