"""Batch normalization's hand-derived backward pass (`mlp.batch_norm`) against central
finite differences on every backend: through the batch's (weighted) mean and variance,
for batches of one row (variance 0: defined maths), two rows and more."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import batch_norm

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
