"""The fast path of NumPy and PyTorch (the in-place executor, `mlp.engine.inplace`) gives
the pure path's results, bit for bit.

The pure run of `mlp.engine.pipeline.make_run` is the definition; the fast path runs the
same operations in place. Every test trains the same model both ways from the
same weights, optimizer state and batches, and asserts that the weights, the
optimizer state (NamedTuples, step counts included) and the losses are
identical (`np.array_equal`, same types and dtypes). Each test runs once per
library with a fast path (the ``lib`` fixture: numpy, torch) in the sessions
that test that library (``MLP_TEST_BACKENDS`` / ``MLP_BACKEND``, as for the
``backend`` fixture).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import mlp
from mlp import activations, losses, optimizers, schedules
from mlp.backends import _torch
from mlp.backends._numpy import NumpyBackend
from mlp.engine import inplace, kernels, layout, pipeline
from mlp.engine.pipeline import InterruptedRun, batch_indices, make_run
from mlp.engine.pure import PureEpochs
from mlp.optimizers import (
    add_decayed_weights,
    chain,
    clip_by_global_norm,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
)
from mlp.tree import tree_leaves
from tests._helpers import InterruptAtLine
from tests.conftest import _params

#: The backends with a fast path, each built with it (True) or without (False).
BUILDERS = {"numpy": lambda fast: NumpyBackend(fast=fast), "torch": _torch.create}


class Lib:
    """One library's ``pure`` and ``fast`` backends, and its arrays from host ones."""

    def __init__(self, name):
        self.name = name
        self.pure, self.fast = BUILDERS[name](False), BUILDERS[name](True)

    def array(self, host, dtype=None):
        """``host`` on the device (None stays None)."""
        return None if host is None else self.pure.asarray(np.asarray(host), dtype)

    def rows(self, batches, last):
        """Host batch indices (`batch_indices`) on the device, as `fit` passes them."""
        return self.array(batches), self.array(last)

    def host(self, array):
        return self.pure.to_numpy(array)


@pytest.fixture(params=[p for p in _params() if p.values[0] in BUILDERS], scope="module")
def lib(request):
    """The backend fixture's selection (skips included), for the libraries with a fast path."""
    return Lib(request.param)


OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.1),
    "momentum": lambda: optimizers.SGD(0.05, momentum=0.9),
    "nesterov": lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: optimizers.Adam(1e-2),
    "adamw": lambda: optimizers.AdamW(1e-2, weight_decay=0.1),
    "rmsprop": lambda: optimizers.RMSprop(1e-2),
    "adam-cosine": lambda: optimizers.Adam(schedules.cosine_decay(1e-2, 8, warmup_steps=3)),
    "sgd-exponential": lambda: optimizers.SGD(schedules.exponential_decay(0.1, 4, 0.5, True)),
    "rmsprop-invscaling": lambda: optimizers.RMSprop(schedules.invscaling(1e-2)),
    # chains built from the blocks: the named ones' own, others, nested, clipping inside
    "adam-as-chain": lambda: chain(scale_by_adam(), scale_by_learning_rate(1e-2)),
    "momentum-decay-chain": lambda: chain(trace(0.8), add_decayed_weights(1e-3),
                                          scale_by_learning_rate(0.05)),
    "rms-nesterov-chain": lambda: chain(scale_by_rms(0.95), trace(0.5, nesterov=True),
                                        scale_by_learning_rate(
                                            schedules.exponential_decay(1e-2, 3, 0.7))),
    "nested-chain": lambda: chain(chain(scale_by_adam(0.8, 0.99)),
                                  chain(add_decayed_weights(0.1), scale_by_learning_rate(1e-2))),
    # not elementwise: the pure path does not pack, and sums the norm per layer
    "clip-inside-chain": lambda: chain(clip_by_global_norm(0.2), scale_by_adam(),
                                       scale_by_learning_rate(1e-2)),
    "clip-after-adam": lambda: chain(scale_by_adam(), clip_by_global_norm(0.5),
                                     scale_by_learning_rate(1e-2)),
}

#: (hidden activation, loss, output activation)
NETWORKS = [(act, "cross_entropy", None) for act in ("relu", "leaky_relu", "tanh", "sigmoid",
                                                      "identity")]
NETWORKS += [("relu", "mse", out) for out in ("identity", "relu", "leaky_relu", "tanh",
                                                "sigmoid")]
NETWORKS += [("tanh", "binary_cross_entropy", None), ("sigmoid", "poisson", None)]


def _data(loss, n, n_in, n_out):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, n_in))
    if loss == "cross_entropy":
        return x, rng.integers(0, n_out, n)
    if loss == "binary_cross_entropy":
        return x, (rng.random((n, n_out)) > 0.5).astype(np.float64)
    if loss == "poisson":
        return x, rng.poisson(2.0, (n, n_out)).astype(np.float64)
    return x, rng.standard_normal((n, n_out))


def _both(lib, optimizer, *, activation="relu", loss="cross_entropy", output=None,
          dtype="float32", batch_size=16, epochs=3, alpha=0.0, clip_norm=None,
          sizes=(6, 9, 7, 3), n=50, edit_state=None, weights=None):
    """``(pure, fast)``: each ``(params, opt_state, losses)`` from the same start
    (``edit_state(state)``: the optimizer's initial state, changed; ``weights``: the
    rows' sample weights, host float64)."""
    model = mlp.MLP(list(sizes), activation=activation, loss=loss, output_activation=output,
                    backend=lib.pure, dtype=dtype, seed=4)
    x, y = _data(loss, n, sizes[0], sizes[-1])
    x_dev, y_dev, _ = model._prepare(x, y)
    w_dev = lib.array(weights, dtype)
    pure = make_run(lib.pure, model._spec, optimizer, alpha, clip_norm)
    fell_back = []

    def pure_fallback(*args):  # the fast path must not hand these inputs to the pure run
        fell_back.append(args)
        return pure(*args)

    fast = pipeline.fast_run(lib.fast, pure_fallback, model._spec, optimizer, alpha, clip_norm)
    assert fast is not None
    batches, last = (None, None) if batch_size is None else lib.rows(*batch_indices(
        np.random.default_rng(3), n, batch_size, epochs, True))
    params = model.params
    state = optimizer.init(params)
    if edit_state is not None:
        state = edit_state(state)
    before = [lib.host(a) for pair in params for a in pair]
    out = [run(params, state, x_dev, y_dev, w_dev, batches, last, epochs)
           for run in (pure, fast)]
    assert not fell_back
    # the inputs are left alone
    assert all(np.array_equal(a, lib.host(b))
               for a, b in zip(before, [a for p in params for a in p]))
    return out


def _leaves(tree):
    if isinstance(tree, (list, tuple)):
        return [(type(tree), len(tree))] + [leaf for node in tree for leaf in _leaves(node)]
    return [tree]


def assert_identical(pure, fast):
    """Same structure (NamedTuple classes included), same leaf types, dtypes and values."""
    pure_leaves, fast_leaves = _leaves(pure), _leaves(fast)
    assert len(pure_leaves) == len(fast_leaves)
    for p, f in zip(pure_leaves, fast_leaves):
        if p is None or isinstance(p, tuple):
            assert f == p
            continue
        assert type(f) is type(p)
        assert np.asarray(f).dtype == np.asarray(p).dtype
        assert np.asarray(f).shape == np.asarray(p).shape
        assert np.array_equal(np.asarray(f), np.asarray(p)), (p, f)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [16, None], ids=["minibatch", "fullbatch"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_bit_for_bit(lib, name, batch_size, dtype):
    pure, fast = _both(lib, OPTIMIZERS[name](), batch_size=batch_size, dtype=dtype)
    assert_identical(pure, fast)
    assert pure[2][-1] < pure[2][0]  # it trained


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation,loss,output", NETWORKS)
def test_every_activation_and_loss_bit_for_bit(lib, activation, loss, output, dtype):
    for batch_size in (16, None):  # 50 = 3 x 16 + 2: a partial last batch
        pure, fast = _both(lib, optimizers.Adam(1e-2), activation=activation, loss=loss,
                           output=output, dtype=dtype, batch_size=batch_size)
        assert_identical(pure, fast)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw", "rmsprop"])
def test_clip_norm_and_alpha_bit_for_bit(lib, name, dtype):
    for alpha, clip_norm in ((1e-2, None), (0.0, 0.3), (1e-2, 0.3)):
        pure, fast = _both(lib, OPTIMIZERS[name](), dtype=dtype, alpha=alpha, clip_norm=clip_norm,
                           activation="tanh")
        assert_identical(pure, fast)


def test_four_layers_and_a_batch_that_divides_the_data(lib):
    pure, fast = _both(lib, optimizers.Adam(1e-2), sizes=(5, 8, 8, 6, 2), n=48, batch_size=16)
    assert_identical(pure, fast)


def test_fit_gives_the_same_model_with_and_without_the_fast_path(lib):
    x, y = _data("cross_entropy", 60, 6, 3)
    histories, weights = [], []
    for backend in (lib.pure, lib.fast):
        model = mlp.MLP([6, 10, 3], loss="cross_entropy", backend=backend, seed=1)
        history = model.fit(x, y, epochs=4, batch_size=16, optimizer="adam",
                            learning_rate=1e-2)
        histories.append(history.history["loss"])
        weights.append(model.get_weights())
    assert histories[0] == histories[1]
    assert_identical(weights[0], weights[1])


def test_the_learning_rate_scale_in_the_state_bit_for_bit(lib):
    """A learning-rate scale set in the state (`with_learning_rate_scale`) is applied, and
    handed back, as in the pure path."""
    for name in ("sgd-exponential", "adamw", "momentum-decay-chain"):
        pure, fast = _both(lib, OPTIMIZERS[name](), clip_norm=0.5,
                           edit_state=lambda s: optimizers.with_learning_rate_scale(s, 0.25))
        assert_identical(pure, fast)
        assert optimizers.learning_rate_scale(fast[1]) == 0.25
    unscaled, _ = _both(lib, OPTIMIZERS["adamw"]())
    # the scale mattered
    assert not np.array_equal(lib.host(unscaled[0][0][0]), lib.host(pure[0][0][0]))


def test_a_second_call_continues_from_the_returned_state(lib):
    opt = OPTIMIZERS["adam-cosine"]()
    model = mlp.MLP([6, 9, 3], loss="cross_entropy", backend=lib.pure, seed=4)
    x_dev, y_dev, _ = model._prepare(*_data("cross_entropy", 50, 6, 3))
    batches, last = lib.rows(*batch_indices(np.random.default_rng(3), 50, 16, 2, True))
    pure = make_run(lib.pure, model._spec, opt)
    fast = pipeline.fast_run(lib.fast, pure, model._spec, opt)
    results = []
    for run in (pure, fast):
        params, state = model.params, opt.init(model.params)
        for _ in range(2):
            params, state, losses, totals = run(params, state, x_dev, y_dev, None, batches,
                                                last, 2)
        results.append((params, state, losses, totals))
    assert_identical(*results)
    assert optimizers.step_count(results[1][1]) == 16


def test_ctrl_c_keeps_the_completed_epochs(lib):
    """A KeyboardInterrupt in the third step of epoch 2 hands back epoch 1's results."""

    class Interrupting(schedules.Constant):
        def __call__(self, step):
            if step >= 4 + 2:  # 4 steps per epoch (50 = 3 x 16 + 2)
                raise KeyboardInterrupt
            return self.learning_rate

    opt = optimizers.Adam(Interrupting(1e-2))
    model = mlp.MLP([6, 9, 3], loss="cross_entropy", backend=lib.pure, seed=4)
    x_dev, y_dev, _ = model._prepare(*_data("cross_entropy", 50, 6, 3))
    batches, last = lib.rows(*batch_indices(np.random.default_rng(3), 50, 16, 3, True))
    pure = make_run(lib.pure, model._spec, opt, 0.0, None)
    fast = pipeline.fast_run(lib.fast, pure, model._spec, opt, 0.0, None)
    parts = []
    for run in (pure, fast):
        with pytest.raises(InterruptedRun) as info:
            run(model.params, opt.init(model.params), x_dev, y_dev, None, batches, last, 3)
        parts.append((info.value.params, info.value.opt_state, info.value.losses,
                      info.value.totals))
    assert len(parts[1][2]) == 1
    # epoch 1's training totals: [correct, rows], the rows being every row of the data
    assert [t.shape for t in parts[1][3]] == [(2,)] and parts[1][3][0][1] == 50
    assert optimizers.step_count(parts[1][1]) == 4
    assert_identical(parts[0], parts[1])


def test_ctrl_c_at_any_line_hands_back_a_consistent_state(lib):
    """Ctrl-C at every line of the epoch loops (pure and fast), of saving the weights and of
    a step: what is handed back is always the weights, the optimizer state, the losses and
    the totals of the same number of completed epochs (those of a run that long)."""
    opt = optimizers.Adam(1e-2)
    model = mlp.MLP([6, 9, 3], loss="cross_entropy", backend=lib.pure, seed=4)
    x_dev, y_dev, _ = model._prepare(*_data("cross_entropy", 50, 6, 3))
    host_batches, host_last = batch_indices(np.random.default_rng(3), 50, 16, 3, True)
    pure = make_run(lib.pure, model._spec, opt)
    fast = pipeline.fast_run(lib.fast, _refuse, model._spec, opt)
    params, state = model.params, opt.init(model.params)
    expected = {0: (params, state)}
    for n in (1, 2, 3):
        expected[n] = pure(params, state, x_dev, y_dev, None,
                           *lib.rows(host_batches[:n], host_last[:n]), n)[:2]
    codes = {pipeline.run_epochs.__code__, PureEpochs.save.__code__,
             PureEpochs.epoch.__code__, inplace.Training.save.__code__,
             inplace.Training.step.__code__}
    for run in (pure, fast):
        kept, k = set(), 0
        while True:
            k += 1
            sys.settrace(InterruptAtLine(k, codes))
            try:
                run(params, state, x_dev, y_dev, None, *lib.rows(host_batches, host_last), 3)
            except InterruptedRun as part:
                n = len(part.losses)
                assert len(part.totals) == n
                assert_identical((part.params, part.opt_state), expected[n])
                kept.add(n)
            except KeyboardInterrupt:  # before the loop: nothing kept, nothing changed
                kept.add(None)
            else:
                break  # no line left to interrupt at
            finally:
                sys.settrace(None)
        assert {0, 1, 2} <= kept  # every epoch boundary was crossed


def test_an_activation_or_loss_registered_anew_under_a_builtin_name_runs_as_registered(
        lib, monkeypatch):
    """``register_activation``/``register_loss(..., overwrite=True)`` replace mlp's own
    ReLU and mse: the fast path computes what is registered (as the pure path does), not
    its in-place ReLU or mse."""
    def relu6(xp, z):
        return xp.clip(z, 0.0, 6.0)

    def relu6_backward(xp, delta, z, a):
        return delta * xp.astype((z > 0) & (z < 6), delta.dtype)

    def mae_terms(xp, z, a, y):
        return xp.abs(a - y)

    def mae_terms_and_delta(xp, z, a, y, output, scale):
        return xp.abs(a - y), output.backward(xp, xp.sign(a - y) * scale, z, a)

    monkeypatch.setitem(activations.ACTIVATIONS, "relu", activations.Activation(
        "relu", relu6, relu6_backward, "he"))
    monkeypatch.setitem(losses.LOSSES, "mse", losses.Loss(
        "mse", terms=mae_terms, terms_and_delta=mae_terms_and_delta, default_output="identity"))
    for loss, output in (("mse", "relu"), ("cross_entropy", None), ("mse", "identity")):
        pure, fast = _both(lib, optimizers.SGD(0.1, momentum=0.9), loss=loss, output=output)
        assert_identical(pure, fast)
    monkeypatch.undo()
    builtin, _ = _both(lib, optimizers.SGD(0.1, momentum=0.9), loss="mse", output="relu")
    assert not np.array_equal(lib.host(builtin[2]), lib.host(pure[2]))  # it mattered


def test_transposed_weights_run_the_pure_path(lib):
    """Weights that are transposed views (set directly, not through `set_weights`): a
    matrix product may round differently on them, so the pure run takes them."""
    opt = optimizers.SGD(0.1)
    model = mlp.MLP([6, 9, 3], loss="cross_entropy", backend=lib.pure, seed=4)
    x_dev, y_dev, _ = model._prepare(*_data("cross_entropy", 50, 6, 3))
    views = [(lib.array(np.ascontiguousarray(lib.host(W).T)).T, b) for W, b in model.params]
    pure = make_run(lib.pure, model._spec, opt)
    calls = []

    def pure_fallback(*args):
        calls.append(args)
        return pure(*args)

    fast = pipeline.fast_run(lib.fast, pure_fallback, model._spec, opt)
    out = fast(views, opt.init(views), x_dev, y_dev, None, None, None, 2)
    assert len(calls) == 1
    assert_identical(out, pure(views, opt.init(views), x_dev, y_dev, None, None, None, 2))


def test_the_weights_handed_back_share_no_memory_with_the_state(lib):
    """The weights are arrays of their own (pickling or keeping them does not keep the
    optimizer's moments, which the run stores beside them)."""
    pure, fast = _both(lib, optimizers.Adam(1e-2))
    leaves = [a for pair in fast[0] for a in pair]
    moments = [a for a in tree_leaves(fast[1]) if getattr(a, "ndim", 0) > 0]
    # the weights, biases and the gaps that put each weight matrix on a 64-byte boundary
    size = sum(a.size if lib.name == "numpy" else a.numel() for a in leaves)
    gaps = (layout.BLOCK_ALIGNMENT - 1) * (len(fast[0]) - 1)
    if lib.name == "numpy":
        assert not any(np.shares_memory(a, m) for a in leaves for m in moments)
        assert size <= leaves[0].base.size <= size + gaps
    else:
        storages = {m.untyped_storage().data_ptr() for m in moments}
        assert not any(a.untyped_storage().data_ptr() in storages for a in leaves)
        itemsize = leaves[0].element_size()
        assert size * itemsize <= leaves[0].untyped_storage().nbytes() <= (size + gaps) * itemsize


def test_unknown_optimizers_run_the_pure_path(lib):
    class MySGD(optimizers.SGD):  # a subclass may change update: not mirrored
        pass

    class MyTrace(optimizers.Trace):
        pass

    class Custom:
        def init(self, params):
            return ()

        def update(self, grads, state, params=None):
            return grads, state

    own = optimizers.GradientTransformation(lambda p: optimizers.EmptyState(),
                                            lambda g, s, p=None: (g, s), elementwise=True)
    model = mlp.MLP([3, 4, 2], backend=lib.pure, seed=0)
    for opt in (MySGD(0.1), Custom(), own, chain(own, scale_by_learning_rate(0.1)),
                chain(MyTrace(), scale_by_learning_rate(0.1))):
        pure = make_run(lib.pure, model._spec, opt)
        assert pipeline.fast_run(lib.fast, pure, model._spec, opt) is None
        assert make_run(lib.fast, model._spec, opt) is not None  # the pure run
    assert pipeline.fast_run(lib.pure, pure, model._spec, optimizers.Adam()) is None


def _spy_pure():
    calls = []

    def pure(*args):
        calls.append(args)
        return "pure"

    return pure, calls


def test_inputs_it_does_not_handle_go_to_the_pure_run(lib):
    pure, calls = _spy_pure()
    model = mlp.MLP([3, 4, 2], backend=lib.pure, seed=0)
    opt = optimizers.SGD(0.1, momentum=0.5)
    fast = pipeline.fast_run(lib.fast, pure, model._spec, opt)
    zeros = np.zeros((5, 3))
    x, y = lib.array(zeros, "float32"), lib.array(zeros[:, :2], "float32")
    params = model.params
    state = opt.init(params)
    w = lib.array(np.ones(5), "float64")
    rows = lib.array(np.zeros((1, 1, 2), np.int64))
    not_handled = [
        (params, state, lib.array(zeros, "float64"), y, None, None),  # mixed dtypes
        (params, state, zeros[:, :2].tolist(), y, None, None),  # not the library's arrays
        (params, state, x, y, w, None),  # weights of another dtype
        (params, optimizers.Adam().init(params), x, y, None, None),  # another state
        (params, state, x[:, :2], y, None, None),  # the wrong width
        (params, state, x, y, lib.array(np.ones(4), "float32"), None),  # too few weights
        (params, state, x, y, None, lib.array(np.zeros((1, 1, 2)), "float32")),  # float rows
        (params, state, x, y, None, rows[..., :0].tolist()),  # rows not an array
    ]
    wide = optimizers.with_learning_rate_scale(state, 1.0)
    scale = lib.array(1.0, "float64")  # a float64 scale would promote float32 weights
    not_handled.append((params, (wide[0], wide[1]._replace(learning_rate_scale=scale)), x, y,
                        None, None))
    if lib.name == "torch":  # NumPy arrays; a tensor that requires grad
        not_handled.append((params, state, zeros.astype(np.float32), y, None, None))
        not_handled.append((params, state, x.clone().requires_grad_(), y, None, None))
    for args in not_handled:
        assert fast(*args, None, 1) == "pure"
    assert len(calls) == len(not_handled)
    assert all(len(args) == 8 and args[7] == 1 for args in calls)
    assert fast(params, state, x, y, None, rows, None, 1)[2].shape == (1,)  # handled


def _refuse(*args):
    raise AssertionError("the fast path handed its inputs to the pure run")


def _weights(n, seed=5):
    """Row weights with zeros (rows dropped), fractions and integers."""
    rng = np.random.default_rng(seed)
    return np.round(rng.random(n) * 3, 1) * (rng.random(n) > 0.2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation,loss,output", NETWORKS[::3] + NETWORKS[-2:])
def test_sample_weights_bit_for_bit(lib, activation, loss, output, dtype):
    for batch_size in (16, None):
        pure, fast = _both(lib, optimizers.Adam(1e-2), activation=activation, loss=loss,
                           output=output, dtype=dtype, batch_size=batch_size,
                           weights=_weights(50), alpha=1e-3, clip_norm=0.5)
        assert_identical(pure, fast)


def test_weights_summing_to_zero_and_garbage_in_dropped_rows_bit_for_bit(lib):
    weights = _weights(50)
    weights[:30] = 0.0  # without shuffling, the first batches weigh nothing
    model = mlp.MLP([6, 9, 3], loss="cross_entropy", backend=lib.pure, seed=4)
    x_dev, y_dev, _ = model._prepare(*_data("cross_entropy", 50, 6, 3))
    batches, last = lib.rows(*batch_indices(np.random.default_rng(3), 50, 16, 2, False))
    opt = optimizers.SGD(0.1, momentum=0.9)
    pure = make_run(lib.pure, model._spec, opt)
    fast = pipeline.fast_run(lib.fast, _refuse, model._spec, opt)  # the fast path runs these itself
    w = lib.array(weights, "float32")
    x_dev[int(np.flatnonzero(weights == 0)[-1])] = 3e38  # garbage in a dropped row: inf * 0
    out = [run(model.params, opt.init(model.params), x_dev, y_dev, w, batches, last, 2)
           for run in (pure, fast)]
    assert_identical(*out)
    assert np.all(np.isfinite(lib.host(out[1][2])))
    assert np.all(np.isfinite(lib.host(out[1][0][0][0])))


def test_fit_with_sample_weights_bit_for_bit(lib):
    out = []
    for backend in (lib.pure, lib.fast):
        model = mlp.MLP([6, 9, 3], loss="cross_entropy", backend=backend, seed=4)
        x, y = _data("cross_entropy", 50, 6, 3)
        history = model.fit(x, y, sample_weight=_weights(50), epochs=3, batch_size=16,
                            optimizer="adam", learning_rate=1e-2)
        out.append((model.get_weights(), history.history["loss"]))
    assert out[0][1] == out[1][1]
    assert_identical(out[0][0], out[1][0])


def test_fit_trains_through_the_fast_path(lib, monkeypatch):
    """`make_run` hands the run to the in-place executor (counted here), and `fit`
    gives the same model, history and optimizer state as without it."""
    calls = []
    original = pipeline.run_epochs

    def counting(executor, *args):
        if isinstance(executor, inplace.Training):
            calls.append(type(executor.transform).__name__)
        return original(executor, *args)

    monkeypatch.setattr(pipeline, "run_epochs", counting)
    x, y = _data("mse", 60, 6, 2)
    out = []
    for backend in (lib.pure, lib.fast, lib.name):
        model = mlp.MLP([6, 10, 2], loss="mse", backend=backend, seed=1)
        opt = chain(trace(0.9), scale_by_learning_rate(schedules.cosine_decay(0.05, 10)))
        history = model.fit(x, y, epochs=4, batch_size=16, optimizer=opt, clip_norm=1.0)
        out.append((history.history["loss"], model.get_weights()))
    assert calls and set(calls) == {"Composite"}
    n_fast = len(calls)
    assert out[0][0] == out[1][0] == out[2][0]
    assert_identical(out[0][1], out[1][1])
    assert_identical(out[0][1], out[2][1])
    assert n_fast >= 2  # both backends with the fast path used it


def test_fast_must_be_a_boolean(lib):
    with pytest.raises(TypeError, match="fast must be True or False, got 1"):
        BUILDERS[lib.name](1)


def test_other_backends_have_no_fast_path(backend):
    model = mlp.MLP([3, 4, 2], backend=backend, seed=0)
    run = make_run(backend, model._spec, optimizers.Adam())
    got = pipeline.fast_run(backend, run, model._spec, optimizers.Adam())
    assert (got is None) == (backend.name not in BUILDERS)
    assert (backend.inplace_ops() is None) == (backend.name not in BUILDERS)


class AlignmentSensitiveProduct:
    """A matrix product whose rounding depends on where its operands sit in memory, as
    MKL's does on AMD processors: it sums the product in two parts, split at a point
    that the operands' addresses modulo 64 choose (as a kernel that peels elements up to
    a 64-byte boundary). Operands all on 64-byte boundaries get the library's product."""

    def __init__(self, matmul):
        self.matmul, self.calls = matmul, {"pure": 0, "in place": 0}

    def __call__(self, a, b, *, out=None):
        self.calls["pure" if out is None else "in place"] += 1
        offset = sum(t.data_ptr() % 64 for t in (a, b, out) if t is not None)
        split = offset // a.element_size() % a.shape[-1]
        if split == 0:
            return self.matmul(a, b) if out is None else self.matmul(a, b, out=out)
        product = self.matmul(a[:, :split], b[:split]) + self.matmul(a[:, split:], b[split:])
        return product if out is None else out.copy_(product)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "clip-inside-chain"])
def test_bit_for_bit_where_the_product_rounds_by_alignment(lib, monkeypatch, name, dtype):
    """Every operand of every matrix product sits where it sits in the pure path (on a
    64-byte boundary: the weights, their gradients, the batches and activations), so a
    library that picks its kernel by alignment still gives both paths the same bits."""
    if lib.name != "torch":
        pytest.skip("NumPy's products are its ndarray's own (see the next test)")
    torch = pytest.importorskip("torch")
    product = AlignmentSensitiveProduct(torch.matmul)
    monkeypatch.setattr(torch, "matmul", product)
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: product(a, b))
    for sizes in ((6, 9, 7, 3), (5, 13, 2)):
        for batch_size in (16, None):
            pure, fast = _both(Lib("torch"), OPTIMIZERS[name](), dtype=dtype, sizes=sizes,
                               batch_size=batch_size)
            assert_identical(pure, fast)
    assert product.calls["pure"] > 0 and product.calls["in place"] > 0  # both paths used it
    # and it does round by alignment: the same numbers one element off a boundary
    values = torch.asarray(np.random.default_rng(5).standard_normal((16, 40)),
                           dtype=getattr(torch, dtype))
    a, b = _at_offset(torch, values[:8], 0), _at_offset(torch, values[8:].T, 0)
    assert not torch.equal(product(a, b), product(_at_offset(torch, values[:8], 1), b))


def _at_offset(torch, a, elements):
    """A copy of ``a`` that starts ``elements`` past a 64-byte boundary."""
    store = torch.empty(a.numel() + 64, dtype=a.dtype)
    start = (-store.data_ptr() % 64) // a.element_size() + elements
    out = store[start:start + a.numel()].reshape(a.shape)
    out.copy_(a)
    return out


def test_numpy_products_do_not_depend_on_alignment(lib):
    """NumPy's allocator puts arrays on 16-byte boundaries only, so the pure path's own
    operands move from run to run; the bit-for-bit claim on NumPy rests on its BLAS
    (OpenBLAS) giving the same product wherever the operands sit. This checks that on
    the machine that runs the tests, for products of the shapes training makes."""
    if lib.name != "numpy":
        pytest.skip("the NumPy backend's BLAS")
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for m, k, n in ((16, 6, 9), (50, 9, 7), (64, 64, 128), (64, 128, 64), (7, 50, 3)):
            a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n))
            b = b.astype(dtype)
            want = a @ b, a.T @ a, b @ b.T
            for shift in range(0, 64, np.dtype(dtype).itemsize):
                store = np.empty(a.size + b.size + 64, dtype)
                start = (-store.ctypes.data % 64 + shift) // store.itemsize
                a2 = store[start:start + a.size].reshape(a.shape)
                b2 = store[start + a.size:start + a.size + b.size].reshape(b.shape)
                a2[...], b2[...] = a, b
                got = a2 @ b2, a2.T @ a2, b2 @ b2.T
                assert all(np.array_equal(g, w) for g, w in zip(got, want)), (m, k, n, shift)


def test_weights_from_the_host_predict_as_trained_ones_where_products_round_by_alignment(
        monkeypatch, tmp_path):
    """A model's weights live where the library puts a fresh array, however they came
    (trained, set from NumPy, loaded, unpickled), so a product that rounds by alignment
    gives every copy of a model the same predictions."""
    torch = pytest.importorskip("torch")
    if "torch" not in [p.values[0] for p in _params()]:
        pytest.skip("the torch session's")
    import pickle

    x, y = _data("mse", 40, 6, 3)
    model = mlp.MLP([6, 9, 7, 3], backend=_torch.create(), dtype="float64", seed=2)
    model.fit(x, y, epochs=2, batch_size=8)
    model.save(tmp_path / "m.npz")
    twin = mlp.MLP([6, 9, 7, 3], backend=_torch.create(), dtype="float64", seed=5)
    twin.set_weights(model.get_weights())
    copies = [twin, mlp.load(tmp_path / "m.npz", backend="torch"),
              pickle.loads(pickle.dumps(model))]
    product = AlignmentSensitiveProduct(torch.matmul)
    monkeypatch.setattr(torch, "matmul", product)
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: product(a, b))
    xs = _at_offset(torch, torch.asarray(x), 0)
    want = model.predict(xs).numpy()
    for other in copies:
        np.testing.assert_array_equal(other.predict(xs).numpy(), want)


# ------------------------------------------------------- kernels beside their definitions
def _undeclared(registry):
    """The names in ``registry`` whose entry declares neither an in-place form nor
    `PureOnly` (with a reason)."""
    missing = []
    for name, entry in registry.items():
        declared = kernels.declaration(entry)
        if declared is None or (isinstance(declared, kernels.PureOnly)
                                and not declared.reason.strip()):
            missing.append(name)
    return missing


def test_every_built_in_declares_its_in_place_form_or_that_it_has_none():
    """Every registry's built-ins (activations, losses, transformations and named
    optimizers) say whether the in-place executor has a kernel for them; a new built-in
    that says nothing fails here instead of silently losing the fast path."""
    registries = {"activations": activations.BUILT_IN, "losses": losses.BUILT_IN,
                  "transformations": optimizers.TRANSFORMATIONS}
    assert set(optimizers.OPTIMIZERS.values()) <= set(optimizers.TRANSFORMATIONS.values())
    for what, registry in registries.items():
        assert registry and not _undeclared(registry), (what, _undeclared(registry))
    # the check bites: an activation registered without a declaration is named
    own = activations.Activation("softsign", lambda xp, z: z, lambda xp, d, z, a: d)
    assert _undeclared({"softsign": own}) == ["softsign"]
    # the kernels the executor takes: by declaration, on the built-ins themselves
    with_kernels = {name for name, act in activations.BUILT_IN.items()
                    if kernels.kernel_of(act) is not None}
    assert with_kernels == {"relu"}
    assert {name for name, loss in losses.BUILT_IN.items()
            if kernels.kernel_of(loss) is not None} == {"mse", "cross_entropy"}
    for cls in optimizers.TRANSFORMATIONS.values():
        assert not isinstance(kernels.declaration(cls), kernels.PureOnly), cls


def test_a_subclass_or_a_transformation_of_your_own_declares_nothing():
    """A subclass inherits its base's ``inplace`` attribute but not its declaration (it
    may change ``update``), so it has no kernel unless its own class body says so."""
    class MyAdam(optimizers.Adam):
        pass

    class MyScaleByAdam(optimizers.ScaleByAdam):
        inplace = optimizers.ScaleByAdam.inplace  # declared: taken

    assert kernels.mirror(MyAdam()) is None
    assert kernels.mirror(chain(MyAdam())) is None
    assert kernels.mirror(optimizers.Adam()) is not None
    assert kernels.mirror(MyScaleByAdam()) is not None


def _sklearn_fits(lib, estimator, X, y, weights, **params):
    """The estimator fitted with and without the in-place executor; the executors used."""
    used, original = [], pipeline.run_epochs

    def counting(executor, *args):
        used.append(type(executor).__name__)
        return original(executor, *args)

    fits = []
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        mp.setattr(pipeline, "run_epochs", counting)
        for fast in (False, True):
            est = estimator(**params, random_state=0, backend=BUILDERS[lib.name](fast))
            fits.append(est.fit(X, y, sample_weight=weights))
    return fits, used


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_sklearn_estimators_run_the_in_place_executor_bit_for_bit(lib, solver, weighted):
    """scikit-learn's epoch (its L2 coefficient ``alpha / sum(w_batch)``, its loss
    weighting) is an objective of the same run: the estimators train in place on NumPy
    and PyTorch, with the pure executor's weights and loss curves bit for bit."""
    sk = pytest.importorskip("mlp.sklearn")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 5))
    w = _weights(70) if weighted else None
    cases = [(sk.MLPClassifier, rng.integers(0, 3, 70), dict(hidden_layer_sizes=(7, 4))),
             (sk.MLPRegressor, rng.standard_normal((70, 2)), dict(hidden_layer_sizes=(6,)))]
    for estimator, y, params in cases:
        (pure, fast), used = _sklearn_fits(lib, estimator, X, y, w, solver=solver,
                                           batch_size=16, max_iter=4, alpha=1e-2,
                                           momentum=0.9, **params)
        assert used == ["PureEpochs"] * 4 + ["Training"] * 4
        assert fast.loss_curve_ == pure.loss_curve_
        assert_identical(fast.coefs_ + fast.intercepts_, pure.coefs_ + pure.intercepts_)
