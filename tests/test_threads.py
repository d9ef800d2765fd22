"""NumPy's BLAS on one thread while the in-place executor trains a small network
(`mlp.backends._threads`): the limit holds during the run, is lifted after it, and
changes no result."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import mlp
from mlp.backends import _threads
from mlp.backends._numpy import NumpyBackend, NumpyInplace
from mlp.engine import pipeline

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads():
    """NumPy's BLAS thread count now."""
    return [p["num_threads"] for p in threadpoolctl.threadpool_info()
            if p["user_api"] == "blas" and "numpy" in p["filepath"]][0]


@pytest.fixture
def two_blas_threads():
    """NumPy's BLAS on two threads for the test (what a 2-core machine runs by default)."""
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield blas_threads()


def train(x, y, dtype, batch_size=64):
    model = mlp.MLP([x.shape[1], 128, 64, 10], loss="cross_entropy", dtype=dtype, seed=0,
                    backend=NumpyBackend())
    history = model.fit(x, y, epochs=3, batch_size=batch_size, optimizer="adam")
    return model, history.history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_thread_for_small_products_gives_the_same_bits(two_blas_threads, monkeypatch,
                                                           dtype):
    """A fit below `SMALL_PRODUCT` (64 x 64 x 128 multiply-adds: above OpenBLAS's own
    threshold, so two threads really split its products) equals, bit for bit, the same
    fit with the limit turned off."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 64)), rng.integers(0, 10, size=300)
    limited, limited_logs = train(x, y, dtype)
    monkeypatch.setattr(_threads, "SMALL_PRODUCT", 0)
    assert blas_threads() == two_blas_threads
    free, free_logs = train(x, y, dtype)
    for (W1, b1), (W2, b2) in zip(limited.get_weights(), free.get_weights()):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    assert limited_logs["loss"] == free_logs["loss"]
    assert limited_logs["accuracy"] == free_logs["accuracy"]
    assert len(free_logs["loss"]) == 3


def test_the_limit_holds_during_a_small_run_and_is_lifted_after(two_blas_threads,
                                                                monkeypatch):
    seen = []
    finish = pipeline._finish

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return finish(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_finish", spy)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 64)), rng.integers(0, 10, size=200)
    train(x, y, "float32")  # 64 * 64 * 128 multiply-adds: small
    train(x, y, "float32", batch_size=200)  # 200 * 64 * 128 = 2**20.6: small
    monkeypatch.setattr(_threads, "SMALL_PRODUCT", 64 * 64 * 128 - 1)
    train(x, y, "float32")  # now above the limit: the BLAS's own threads
    assert seen == [1, 1, two_blas_threads]
    assert blas_threads() == two_blas_threads


def test_threads_for_chooses_by_the_largest_product(two_blas_threads):
    ops = NumpyInplace()
    with ops.threads_for(_threads.SMALL_PRODUCT):
        assert blas_threads() == 1
    assert blas_threads() == two_blas_threads
    with ops.threads_for(_threads.SMALL_PRODUCT + 1):
        assert blas_threads() == two_blas_threads


def test_nested_runs_share_one_limit_and_other_threads_change_nothing(two_blas_threads):
    """The outermost use sets the limit and lifts it; a use in another thread leaves the
    count as it finds it (OpenBLAS lets no other thread raise what the main one set)."""
    seen = []

    def other():
        with _threads.one_blas_thread():
            seen.append(blas_threads())
        seen.append(blas_threads())

    with _threads.one_blas_thread():
        with _threads.one_blas_thread():
            assert blas_threads() == 1
        assert blas_threads() == 1
        worker = threading.Thread(target=other)
        worker.start()
        worker.join(10)
        assert blas_threads() == 1
    assert blas_threads() == two_blas_threads
    worker = threading.Thread(target=other)
    worker.start()
    worker.join(10)
    assert seen == [1, 1, two_blas_threads, two_blas_threads]
    assert blas_threads() == two_blas_threads


def test_without_threadpoolctl_the_thread_count_stays_as_it_is(two_blas_threads, monkeypatch):
    monkeypatch.setitem(_threads._state, "controller", False)  # as when the import failed
    with _threads.one_blas_thread():
        assert blas_threads() == two_blas_threads
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(100, 64)), rng.integers(0, 10, size=100)
    _, logs = train(x, y, "float32")
    assert len(logs["loss"]) == 3
