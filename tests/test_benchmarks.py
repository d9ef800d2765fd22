"""The benchmark suite's implementations compute the same thing (correctness only, no timing).

Every peer in `benchmarks.peers` and `mlp.MLP` on every installed backend start
from the same initial weights and see the same batches; after a few steps
their weights must agree within float32 tolerance. The reporting helpers are
checked on made-up rows.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from benchmarks import peers, run, workloads
from mlp import backends, training


def _tiny_classification(optimizer, batch_size, epochs):
    x, y = workloads.synthetic_classes(100, n_features=12, n_classes=4, seed=5)
    xt, yt = workloads.synthetic_classes(40, n_features=12, n_classes=4, seed=6)
    lr = 1e-2 if optimizer == "adam" else 0.1
    return workloads.Workload("tiny", "tiny", (12, 16, 8, 4), "cross_entropy", "softmax", "he",
                              optimizer, lr, batch_size, epochs, x, y, xt, yt, seed=2)


CASES = {
    # the notebook's network: full batch SGD, ReLU output
    "W1": lambda: workloads.w1().scaled(epochs=30),
    # minibatches with a partial last batch (100 = 3 x 32 + 4), Adam
    "adam-minibatch": lambda: _tiny_classification("adam", 32, 2),
    # full-batch SGD, cross-entropy (scikit-learn's shuffling does not matter here)
    "sgd-fullbatch": lambda: _tiny_classification("sgd", None, 5),
    # minibatch SGD with a partial last batch (the learning rate folded into the delta)
    "sgd-minibatch": lambda: _tiny_classification("sgd", 32, 2),
}


def _impls(case):
    ours = [peers.Ours(name) for name in backends.available_backends() if name != "cupy"]
    ours += [peers.Ours(name) for name in peers.PURE_BACKENDS  # without their fast path
             if name.split("-")[0] in backends.available_backends()]
    names = {"W1": ["notebook-f64", "numpy-f32", "numpy-lean", "jax-scan", "jax-optax",
                    "torch-nn"],
             "adam-minibatch": ["numpy-f32", "numpy-lean", "jax-scan", "jax-optax", "torch-nn"],
             "sgd-fullbatch": ["numpy-f32", "numpy-lean", "jax-scan", "sklearn", "torch-nn"],
             "sgd-minibatch": ["numpy-f32", "numpy-lean", "torch-nn"]}[case]
    return ours + [peers.PEERS[n]() for n in names]


PARAMS = [pytest.param(case, impl.name, id=f"{case}-{impl.name}")
          for case in CASES for impl in _impls(case)]


@pytest.fixture(scope="module")
def reference():
    """Our NumPy backend's trained weights (float32), one per case."""
    out = {}
    for case, make in CASES.items():
        wl = make()
        impl = peers.Ours("numpy")
        impl.setup(wl)
        impl.train()
        out[case] = (wl, impl.weights())
    return out


@pytest.mark.parametrize("case,name", PARAMS)
def test_same_weights_as_ours(reference, case, name):
    wl, expected = reference[case]
    module = peers.PEER_REQUIRES.get(name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} needs {module}")
    impl = (peers.Ours(name[4:-1]) if name.startswith("mlp[") else peers.PEERS[name]())
    impl.setup(wl)
    impl.train()
    got = impl.weights()
    assert len(got) == len(expected)
    # Adam's eps sits inside the bias correction in optax and torch (outside in ours and
    # scikit-learn): a relative 1e-3 covers that; everything else agrees to float32 rounding.
    rtol, atol = (2e-3, 1e-4) if wl.optimizer == "adam" else (1e-4, 1e-5)
    for (W, b), (W0, b0) in zip(got, expected):
        np.testing.assert_allclose(np.asarray(W, np.float64), W0, rtol=rtol, atol=atol)
        np.testing.assert_allclose(np.asarray(b, np.float64).reshape(-1), b0, rtol=rtol,
                                   atol=atol)
    loss = peers.evaluate(wl, got, wl.x_train, wl.y_train)["loss"]
    assert loss == pytest.approx(peers.evaluate(wl, expected, wl.x_train, wl.y_train)["loss"],
                                 rel=1e-3)


def test_training_lowers_the_loss(reference):
    for case, (wl, trained) in reference.items():
        start = peers.evaluate(wl, wl.initial_weights(np.float64), wl.x_train, wl.y_train)
        end = peers.evaluate(wl, trained, wl.x_train, wl.y_train)
        assert end["loss"] < start["loss"], case


def test_shared_batch_order_is_ours():
    from mlp.engine.pipeline import batch_indices

    wl = _tiny_classification("adam", 32, 3)
    rng = np.random.default_rng([wl.seed, 1])
    batches, last = batch_indices(rng, wl.n_samples, 32, 3, True)
    orders = np.stack(wl.orders())
    np.testing.assert_array_equal(orders[:, :96].reshape(3, 3, 32), batches)
    np.testing.assert_array_equal(orders[:, 96:], last)


def test_workloads_match_the_issue():
    w1 = workloads.w1()
    assert (w1.x_train.shape, w1.layer_sizes, w1.epochs, w1.batch_size) == \
        ((100, 3), (3, 4, 1), 1000, None)
    w2 = workloads.w2()
    assert w2.x_train.shape == (1347, 64) and w2.x_test.shape == (450, 64)
    assert abs(float(w2.x_train.mean())) < 1e-6  # standardized on the training set
    # W3's FLOPs: forward + weight gradients for every layer, deltas for all but the input
    fwd = 2 * (784 * 512 + 512 * 512 + 512 * 10)
    expected = (2 * fwd + 2 * (512 * 512 + 512 * 10)) * 60000
    pairs = [(784, 512), (512, 512), (512, 10)]
    wl = workloads.Workload("W3", "", (784, 512, 512, 10), "cross_entropy", "softmax", "he",
                            "sgd", 0.01, 256, 1, np.zeros((60000, 1)), np.zeros(60000))
    assert wl.training_flops() == expected == 3 * fwd * 60000 - 2 * pairs[0][0] * 512 * 60000


def test_synthetic_data_is_seeded_and_float32():
    x1, y1 = workloads.synthetic_classes(50, n_features=8, seed=3, chunk=7)
    x2, y2 = workloads.synthetic_classes(50, n_features=8, seed=3, chunk=7)
    assert x1.dtype == np.float32 and y1.dtype == np.int64
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def _row(wl, impl, kind, seconds, acc=None, **extra):
    return {"workload": wl, "impl": impl, "kind": kind, "device": "cpu", "median_s": seconds,
            "times_s": [seconds], "samples_per_s": 1.0, "gflops": 1.0, "peak_fraction": 0.5,
            "train_loss": 0.1, "test_loss": 0.2, "test_accuracy": acc, **extra}


def test_targets_and_tables_from_rows():
    rows = [_row("W1", "mlp[numpy]", "ours", 0.010), _row("W1", "notebook-f64", "peer", 0.020),
            _row("W1", "mlp[jax]", "ours", 0.012), _row("W1", "jax-scan", "peer", 0.004),
            _row("W2", "mlp[numpy]", "ours", 0.100, 0.98), _row("W2", "numpy-f32", "peer", 0.090,
                                                                 0.97),
            _row("W3", "mlp[numpy]", "ours", 1.0, peak_rss_mib=300.0),
            _row("W3", "numpy-f32", "peer", 1.0, peak_rss_mib=250.0)]
    res = {r["target"]: r for r in run.targets(rows)}
    assert res["W1 mlp[numpy] time / notebook-f64 <= 1"]["met"]
    assert res["W1 mlp[numpy] time / notebook-f64 <= 1"]["measured"] == "0.50x"
    assert not res["W1 mlp[jax] time / jax-scan <= 2"]["met"]  # 3x
    assert res["W2 mlp[numpy] time / numpy-f32 <= 1.2"]["met"]  # 1.11x
    assert res["W2 numpy-f32 test accuracy >= 0.97"]["met"]
    assert res["W3 mlp[numpy] speed >= 0.9x best hand-written peer"]["met"]
    assert res["W3 mlp[numpy] peak RSS / numpy-f32 <= 1.3"]["value"] == pytest.approx(1.2)
    text = run.tables(rows, {})
    assert "| mlp[numpy] | 0.50 |" in text and "**W3**" in text and "300 MiB" in text


@pytest.mark.parametrize("case", ["W1", "adam-minibatch", "sgd-minibatch"])
def test_lean_peer_tracks_the_loss_only_when_asked(case):
    import mlp

    wl = CASES[case]()
    lean = peers.NumpyLean()
    lean.setup(wl)
    lean.train()
    assert lean.losses == []  # no loss computed during the steps by default
    lean.track_loss = True
    lean.train()
    model = mlp.MLP(wl.layer_sizes, activation="relu", output_activation=wl.output_activation,
                    loss=wl.loss, init=wl.init, backend="numpy", seed=wl.seed)
    model.set_weights(wl.initial_weights(np.float32))
    history = model.fit(wl.x_train, wl.y_train, epochs=wl.epochs,
                        learning_rate=wl.learning_rate, batch_size=wl.batch_size,
                        optimizer=wl.optimizer)
    np.testing.assert_allclose(lean.losses, history.history["loss"], rtol=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_numpy_with_and_without_its_fast_path_end_with_identical_weights(reference, case):
    wl, expected = reference[case]
    impl = peers.Ours("numpy-pure")
    impl.setup(wl)
    impl.train()
    for (W, b), (W0, b0) in zip(impl.weights(), expected):
        assert np.array_equal(W, W0) and np.array_equal(b, b0)


def test_chunking_benchmark_times_the_same_training_both_ways():
    """benchmarks.chunking: the chunked fit and the one-call fit train the same run (same
    final loss), with the call lengths the planner chose."""
    pytest.importorskip("jax")
    import dataclasses

    from benchmarks import chunking

    # long enough that its time bound exceeds a call's second: measured, then chunked
    wl = dataclasses.replace(workloads.get("W1"), epochs=12000)
    assert training.run_time_bound(wl.epochs, wl.n_samples, None, wl.layer_sizes) > 1.0
    _, calls_chunked, loss_chunked = chunking._fit(wl, one_call=False)
    _, calls_whole, loss_whole = chunking._fit(wl, one_call=True)
    assert calls_whole == [12000] and calls_chunked[:2] == [1, 1]
    assert sum(calls_chunked) == 12000
    assert loss_chunked == loss_whole
    assert chunking._calls_summary([1, 1, 99, 99, 99, 1]) == "1 x2, 99 x3, 1 x1"


def test_benchmarks_record_the_thread_counts_they_ran_with():
    from threadpoolctl import threadpool_limits

    from benchmarks.threads import describe, thread_counts

    with threadpool_limits(limits=1, user_api="blas"):
        counts = thread_counts()
    assert counts["blas"] == 1
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert thread_counts()["torch"] == 1
    finally:
        torch.set_num_threads(before)
    assert describe({"blas": 1, "openmp": None, "torch": 3}) == "threads: BLAS 1, torch 3"


def test_the_suite_runs_at_one_thread_and_at_the_default():
    """By default ``benchmarks.run`` makes one run per thread mode, each given the user's
    other options; ``latest.md`` puts each ratio of both runs side by side."""
    assert run._parse([]).threads == "both"
    assert run._parse(["--threads", "default"]).threads == "default"
    assert run._parse(["--threads=2"]).threads == 2
    with pytest.raises(SystemExit):
        run._parse(["--threads", "0"])
    assert run._child_argv(["--quick", "--threads", "both", "--out", "x", "--repeats=3",
                            "--out=y"]) == ["--quick", "--repeats=3"]
    machine = {"cpu": "cpu", "cpus": 2, "blas": "b", "load_average_start": 1.0,
               "load_average_end": 1.0, "seconds": 9.0}
    runs = {"1": {"machine": machine,
                  "results": [_row("W2", "mlp[numpy]", "ours", 0.100),
                              _row("W2", "numpy-lean", "peer", 0.125)]},
            "default": {"machine": machine,
                        "results": [_row("W2", "mlp[numpy]", "ours", 0.120),
                                    _row("W2", "numpy-lean", "peer", 0.200)]}}
    text = run.both_tables(runs)
    assert "| W2 | mlp[numpy] | numpy-lean | 0.80 | 0.60 |" in text
