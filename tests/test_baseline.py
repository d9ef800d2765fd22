"""The optimizer redesign (issue 8) keeps every training run: the float64 weights after
20 epochs, recorded on NumPy before the redesign (`tests/data/make_optimizer_baseline.py`),
are reproduced to 1e-12 on every backend, for each optimizer with and without a
schedule, momentum, weight decay, L2, clipping, mini-batches and shuffling."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.data.make_optimizer_baseline import CASES, train

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def recorded():
    with np.load(os.path.join(HERE, "optimizer_baseline.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("case", list(CASES))
def test_redesign_reproduces_recorded_weights(backend, case, recorded):
    weights = train(CASES[case], backend=backend.name)
    for i, (W, b) in enumerate(weights):
        np.testing.assert_allclose(W, recorded[f"{case}/W{i}"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(b, recorded[f"{case}/b{i}"], rtol=0, atol=1e-12)
