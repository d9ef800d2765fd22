"""Gradient transformations (issue 8): the building blocks against NumPy formulas, chains,
a user's own transformation in `fit`, configs, the learning-rate scale, robust clipping,
integer step counts and the checks on a user's schedule."""

from __future__ import annotations

import copy
import json
import pickle
from typing import NamedTuple

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import mlp
from mlp import optimizers as O
from mlp import schedules
from mlp.engine.layout import Layout
from mlp.engine.pipeline import make_run

SHAPES = [(3, 4), (4, 2)]
N_STEPS = 4


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _tree(rng, scale=1.0):
    return [(scale * rng.normal(size=s), scale * rng.normal(size=s[1])) for s in SHAPES]


def _to(backend, tree, dtype="float64"):
    return [(backend.asarray(W, dtype), backend.asarray(b, dtype)) for W, b in tree]


def _host(backend, tree):
    return [(backend.to_numpy(W), backend.to_numpy(b)) for W, b in tree]


@pytest.fixture
def problem():
    rng = np.random.default_rng(11)
    return _tree(rng), [_tree(rng, 0.5) for _ in range(N_STEPS)]


def _updates(backend, t, host_params, host_grads):
    """The updates of ``N_STEPS`` calls of ``t.update`` (compiled on JAX), as NumPy."""
    update = backend.jit(t.update)
    params = _to(backend, host_params)
    state = t.init(params)
    out = []
    for g in host_grads:
        u, state = update(_to(backend, g), state, params)
        out.append(_host(backend, u))
    return out, state


def _reference(host_params, host_grads, fn, slot):
    """NumPy: ``fn(g, p, slot, t) -> (update, slot)`` per array, ``t`` from 1."""
    flat_p = [a for pair in host_params for a in pair]
    slots = [slot(a) for a in flat_p]
    out = []
    for t, grads in enumerate(host_grads, start=1):
        flat = []
        for i, (g, p) in enumerate(zip([a for pair in grads for a in pair], flat_p,
                                       strict=True)):
            u, slots[i] = fn(g, p, slots[i], t)
            flat.append(u)
        out.append([(flat[2 * k], flat[2 * k + 1]) for k in range(len(SHAPES))])
    return out


def _close(got, want, rtol=1e-12, atol=1e-14):
    for g_step, w_step in zip(got, want, strict=True):
        for (gW, gb), (wW, wb) in zip(g_step, w_step, strict=True):
            np.testing.assert_allclose(gW, wW, rtol=rtol, atol=atol)
            np.testing.assert_allclose(gb, wb, rtol=rtol, atol=atol)


# ------------------------------------------------------------ building blocks
def test_scale_by_adam(backend, problem):
    b1, b2, eps = 0.8, 0.95, 1e-3

    def ref(g, p, s, t):
        m, v = s
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        return np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps), (m, v)

    got, state = _updates(backend, O.scale_by_adam(b1, b2, eps), *problem)
    _close(got, _reference(*problem, ref, lambda a: (0 * a, 0 * a)))
    assert isinstance(state, O.ScaleByAdamState) and int(state.count) == N_STEPS


def test_scale_by_rms(backend, problem):
    d, eps = 0.7, 1e-4

    def ref(g, p, s, t):
        s = d * s + (1 - d) * g**2
        return g / (np.sqrt(s) + eps), s

    got, _ = _updates(backend, O.scale_by_rms(d, eps), *problem)
    _close(got, _reference(*problem, ref, np.zeros_like))


@pytest.mark.parametrize("nesterov", [False, True])
def test_trace(backend, problem, nesterov):
    d = 0.9

    def ref(g, p, v, t):
        v = g + d * v
        return (g + d * v if nesterov else v), v

    got, _ = _updates(backend, O.trace(d, nesterov=nesterov), *problem)
    _close(got, _reference(*problem, ref, np.zeros_like))


def test_add_decayed_weights(backend, problem):
    got, _ = _updates(backend, O.add_decayed_weights(0.3), *problem)
    _close(got, _reference(*problem, lambda g, p, s, t: (g + 0.3 * p, s), lambda a: None))
    t = O.add_decayed_weights(0.3)
    with pytest.raises(ValueError, match="add_decayed_weights needs the parameters"):
        t.update(_to(backend, problem[1][0]), t.init(_to(backend, problem[0])))


def test_clip_by_global_norm(backend, problem):
    def ref_norm(grads):
        return np.sqrt(sum(np.sum(a**2) for pair in grads for a in pair))

    for max_norm in (0.3, 100.0):
        got, _ = _updates(backend, O.clip_by_global_norm(max_norm), *problem)
        want = [[(W * min(1, max_norm / ref_norm(g)), b * min(1, max_norm / ref_norm(g)))
                 for W, b in g] for g in problem[1]]
        _close(got, want)


@pytest.mark.parametrize("lr", [0.1, schedules.exponential_decay(0.1, 1, 0.5)],
                         ids=["float", "schedule"])
def test_scale_by_learning_rate(backend, problem, lr):
    got, state = _updates(backend, O.scale_by_learning_rate(lr), *problem)
    rate = (lambda t: 0.1 * 0.5 ** (t - 1)) if callable(lr) else (lambda t: 0.1)
    _close(got, _reference(*problem, lambda g, p, s, t: (-rate(t) * g, s), lambda a: None))
    assert O.step_count(state) == N_STEPS


def test_chain_feeds_each_piece_the_previous_updates(backend, problem):
    d, lr = 0.5, 0.2

    def ref(g, p, v, t):
        v = g + d * v
        return -lr * (v + 0.1 * p), v

    t = O.chain(O.trace(d), O.add_decayed_weights(0.1), O.scale_by_learning_rate(lr))
    got, state = _updates(backend, t, *problem)
    _close(got, _reference(*problem, ref, np.zeros_like))
    assert [type(s) for s in state] == [O.TraceState, O.EmptyState,
                                        O.ScaleByLearningRateState]
    # a named optimizer is its chain
    sgd = O.SGD(lr, momentum=d)
    named, _ = _updates(backend, sgd, *problem)
    plain, _ = _updates(backend, O.chain(O.trace(d), O.scale_by_learning_rate(lr)), *problem)
    _close(named, plain, rtol=0, atol=0)


def test_elementwise_is_declared():
    for t in (O.scale_by_adam(), O.scale_by_rms(), O.trace(), O.add_decayed_weights(),
              O.scale_by_learning_rate(0.1), O.sgd(), O.adam(), O.adamw(), O.rmsprop(),
              O.chain(O.trace(), O.scale_by_learning_rate(0.1))):
        assert t.elementwise is True, t
    assert O.clip_by_global_norm(1.0).elementwise is False
    assert O.chain(O.clip_by_global_norm(1.0), O.sgd()).elementwise is False
    assert O.GradientTransformation(lambda p: None, lambda g, s, p=None: (g, s)).elementwise \
        is False
    user = O.GradientTransformation(lambda p: None, lambda g, s, p=None: (g, s),
                                    elementwise=True)
    assert O.chain(user, O.sgd()).elementwise is True
    with pytest.raises(TypeError, match="elementwise must be True or False, got 1"):
        O.GradientTransformation(lambda p: None, lambda g, s, p=None: (g, s), elementwise=1)


# ------------------------------------------------------------ step count
def test_step_count_is_an_integer_that_counts_past_2_to_the_24(backend):
    """A float32 counter stops at 2**24 (2**24 + 1 rounds back down); the integer one goes on."""
    params = _to(backend, [(np.ones((2, 2)), np.ones(2))], "float32")
    opt = O.adam(1e-3)
    state = opt.init(params)
    counts = [s.count for s in state]
    assert all(backend.xp.isdtype(c.dtype, "integral") for c in counts)
    big = backend.xp.asarray(2**24, dtype=counts[0].dtype)
    state = (state[0]._replace(count=big), state[1]._replace(count=big))
    update = backend.jit(opt.update)
    for _ in range(3):
        _, state = update(params, state, params)
    assert O.step_count(state) == 2**24 + 3
    assert int(state[0].count) == int(state[1].count) == 2**24 + 3
    assert np.float32(2**24) + np.float32(1) == np.float32(2**24)  # what float32 did


# ------------------------------------------------------------ overflow-robust clipping
def test_clipping_float32_gradients_whose_squared_norm_overflows(backend):
    """(1e20)**2 overflows float32: a naive sum of squares gives norm inf and a zero update."""
    grads = _to(backend, [(np.full((2, 3), 1e20), np.full(3, -1e20))], "float32")
    with np.errstate(over="ignore"):
        naive = np.sqrt(sum(np.sum(backend.to_numpy(a) ** 2) for pair in grads for a in pair))
    assert naive == np.inf  # the old clip: scale = 2 / max(inf, 2) = 0, a zero update
    clip = O.clip_by_global_norm(2.0)
    clipped, _ = backend.jit(clip.update)(grads, clip.init(grads))
    (W, b), = _host(backend, clipped)
    assert W.dtype == np.float32
    np.testing.assert_allclose(W, np.full((2, 3), 2.0 / 3.0), rtol=1e-6)
    np.testing.assert_allclose(b, np.full(3, -2.0 / 3.0), rtol=1e-6)
    assert float(O.global_norm(grads)) == pytest.approx(3e20, rel=1e-6)
    # all-zero gradients stay zero (no 0/0)
    zeros = _to(backend, [(np.zeros((2, 3)), np.zeros(3))], "float32")
    (Wz, bz), = _host(backend, clip.update(zeros, clip.init(zeros))[0])
    assert not np.any(Wz) and not np.any(bz)


def test_fit_with_clip_norm_trains_through_overflowing_gradients(backend):
    x = np.asarray([[1e19, -1e19], [2e19, 1e19]])
    y = np.asarray([[0.0], [1.0]])
    model = mlp.MLP([2, 1], activation="identity", backend=backend, seed=0)
    before = model.get_weights()
    model.fit(x, y, epochs=1, learning_rate=0.1, clip_norm=1.0, optimizer="sgd", batch_size=None)
    (W, b), = model.get_weights()
    moved = np.sqrt(np.sum((W - before[0][0]) ** 2) + np.sum((b - before[0][1]) ** 2))
    assert moved == pytest.approx(0.1, rel=1e-5)  # lr * clip_norm, not 0


# ------------------------------------------------------------ a user's own transformation
def _user_sgd(lr):
    def init(params):
        return O.EmptyState()

    def update(grads, state, params=None):
        return mlp.tree.tree_map(lambda g: -lr * g, grads), state

    return O.GradientTransformation(init, update)


@pytest.mark.parametrize("elementwise", [False, True])
def test_fit_with_a_users_transformation(backend, elementwise):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(12, 2))

    def model():
        return mlp.MLP([4, 5, 2], activation="tanh", backend=backend, dtype="float64", seed=1)

    user = _user_sgd(0.1)
    user.elementwise = elementwise  # packed (NumPy, PyTorch) or per layer: the same result
    mine, ref = model(), model()
    mine.fit(x, y, epochs=4, batch_size=5, optimizer=user)
    ref.fit(x, y, epochs=4, batch_size=5, optimizer="sgd", learning_rate=0.1)
    for (W, b), (W0, b0) in zip(mine.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(W, W0, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, b0, rtol=1e-12, atol=1e-14)
    # ... and in a chain with built-in pieces
    chained = model()
    chained.fit(x, y, epochs=4, batch_size=5,
                optimizer=O.chain(O.trace(0.5), _user_sgd(0.1)))
    ref2 = model()
    ref2.fit(x, y, epochs=4, batch_size=5, optimizer=O.SGD(0.1, momentum=0.5))
    np.testing.assert_allclose(chained.get_weights()[0][0], ref2.get_weights()[0][0],
                               rtol=1e-12, atol=1e-14)


def test_packed_and_per_layer_runs_agree_with_clipping(backend):
    """An elementwise chain runs packed on NumPy/PyTorch; clipping needs only the global
    norm, which packing keeps."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 2))
    model = mlp.MLP([4, 6, 2], activation="tanh", backend=backend, dtype="float64", seed=2)
    x_dev, y_dev, _ = model._prepare(x, y)
    results = []
    for elementwise in (True, False):
        user = O.GradientTransformation(O.adam(0.05).init, O.adam(0.05).update,
                                        elementwise=elementwise)
        run = make_run(model.backend, model._spec, user, alpha=0.01, clip_norm=0.2)
        p, s, losses, _ = run(model.params, user.init(model.params), x_dev, y_dev, None, None,
                              None, 6)
        results.append((_host(backend, p), backend.to_numpy(losses)))
    _close([results[0][0]], [results[1][0]])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


def test_packer_handles_namedtuple_states(backend):
    params = _to(backend, _tree(np.random.default_rng(0)))
    packer = Layout(backend.xp, [W.shape for W, _ in params])
    state = O.adamw().init(params)
    packed = packer.pack_tree(state)
    assert type(packed[0]) is O.ScaleByAdamState and len(packed[0].mu) == 1
    back = packer.unpack_tree(packed, state)
    assert type(back[0]) is O.ScaleByAdamState and type(back[1]) is O.EmptyState
    assert [W.shape for W, _ in back[0].nu] == [s for s in SHAPES]


# ------------------------------------------------------------ configs, pickle, copies
ALL_OPTIMIZERS = [
    O.sgd(0.3),
    O.SGD(schedules.step_decay(0.1, drop=0.5, every=7), momentum=0.5, nesterov=np.True_),
    O.Adam(schedules.cosine_decay(1e-3, 100, warmup_steps=5, final_fraction=0.1)),
    O.AdamW(schedules.invscaling(0.01, power_t=0.3), weight_decay=0.2, eps=1e-6),
    O.RMSprop(schedules.Constant(0.02), decay=0.8),
    O.Adam(schedules.exponential_decay(1e-3, 100, 0.9, staircase=True), beta2=0.99),
    O.chain(O.clip_by_global_norm(1.0), O.trace(0.9, nesterov=True),
            O.add_decayed_weights(1e-4), O.scale_by_rms(), O.scale_by_adam(),
            O.scale_by_learning_rate(schedules.cosine_decay(0.1, 10))),
]


@pytest.mark.parametrize("opt", ALL_OPTIMIZERS, ids=lambda o: type(o).__name__)
def test_config_pickle_copy_and_hash(opt):
    config = json.loads(json.dumps(opt.get_config()))  # JSON-ready
    again = O.from_config(config)
    assert again == opt and type(again) is type(opt) and hash(again) == hash(opt)
    assert O.optimizer_config(opt) == config
    for clone in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt), copy.copy(opt)):
        assert clone == opt and hash(clone) == hash(opt)
    assert {opt: 1}[again] == 1  # usable as a cache key


@pytest.mark.parametrize("sched", [schedules.Constant(0.1), schedules.step_decay(0.1, 0.5, 3),
                                   schedules.cosine_decay(0.1, 10, 2, 0.1),
                                   schedules.invscaling(0.1, 0.25)], ids=lambda s: type(s).__name__)
def test_schedule_config_pickle_copy(sched):
    config = json.loads(json.dumps(sched.get_config()))
    assert schedules.from_config(config) == sched
    assert pickle.loads(pickle.dumps(sched)) == sched == copy.deepcopy(sched)
    assert hash(schedules.from_config(config)) == hash(sched)


def test_numpy_scalars_and_booleans_are_stored_as_python_values():
    opt = O.SGD(np.float32(0.5), momentum=np.float64(0.9), nesterov=np.True_)
    assert type(opt.learning_rate) is float and type(opt.momentum) is float
    assert opt.nesterov is True
    assert json.dumps(opt.get_config())
    sched = schedules.cosine_decay(np.float64(0.1), np.int64(10), np.int32(2))
    assert type(sched.learning_rate) is float and type(sched.warmup_steps) is int
    assert type(O.trace(np.float32(0.5), np.bool_(False)).nesterov) is bool


@pytest.mark.parametrize("config, message", [
    ({"name": "sgdd"}, r"unknown optimizer 'sgdd'; known: sgd, adam"),
    ({"name": "sgd", "lr": 0.1}, r"unknown field\(s\) 'lr' in the config of optimizer 'sgd'"),
    ({"name": "adam", "learning_rate": {"name": "linear"}},
     r"unknown learning-rate schedule 'linear'"),
    ({"name": "chain", "transformations": [{"name": "nope"}]}, r"unknown optimizer 'nope'"),
    ("sgd", r"an optimizer config must be a dict"),
])
def test_from_config_refuses_unknown_names(config, message):
    with pytest.raises(ValueError, match=message):
        O.from_config(config)


def test_legacy_config_format_still_loads():
    old = {"name": "adam", "class": "Adam",
           "fields": {"learning_rate": {"schedule": "CosineDecay", "learning_rate": 0.05,
                                        "decay_steps": 20, "warmup_steps": 3,
                                        "final_fraction": 0.0},
                      "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}
    assert O.from_config(old) == O.Adam(schedules.cosine_decay(0.05, 20, 3))


def test_a_users_transformation_cannot_be_saved():
    user = _user_sgd(0.1)
    with pytest.raises(ValueError, match=r"cannot save optimizer GradientTransformation\(.*"
                                         r"a transformation of your own has no get_config"):
        O.optimizer_config(user)
    with pytest.raises(ValueError, match=r"cannot save optimizer .*a transformation of your "
                                         r"own"):
        O.optimizer_config(O.chain(O.trace(), user))
    with pytest.raises(ValueError, match=r"cannot save optimizer .*learning_rate=.*function of "
                                         r"your own"):
        O.optimizer_config(O.sgd(lambda step: 0.1))


def test_get_optimizer():
    assert O.get_optimizer("AdamW", 0.2) == O.AdamW(0.2)
    c = O.chain(O.trace(), O.scale_by_learning_rate(0.1))
    assert O.get_optimizer(c) is c
    with pytest.raises(ValueError, match=r"unknown optimizer 'nadam'; known: sgd, adam, adamw, "
                                         r"rmsprop"):
        O.get_optimizer("nadam")
    with pytest.raises(TypeError, match=r"optimizer must be a name \(sgd, adam, adamw, "
                                        r"rmsprop\), a transformation"):
        O.get_optimizer(0.1)
    with pytest.raises(TypeError, match=r"chain\(\) takes transformations .*got float"):
        O.chain(O.trace(), 0.1)


@pytest.mark.parametrize("make, message", [
    (lambda: O.trace(1.0), r"decay must be a finite number in \[0, 1\), got 1\.0"),
    (lambda: O.SGD(0.1, nesterov=True), r"nesterov=True needs momentum > 0"),
    (lambda: O.SGD(0.1, momentum=0.5, nesterov=1), r"nesterov must be True or False, got 1"),
    (lambda: O.clip_by_global_norm(0), r"max_norm must be a finite number > 0, got 0"),
    (lambda: O.adamw(weight_decay=-1), r"weight_decay must be a finite number >= 0, got -1"),
    (lambda: O.scale_by_learning_rate("fast"), r"learning_rate must be a positive number or a "
                                               r"schedule"),
    (lambda: schedules.cosine_decay(0.1, 0), r"decay_steps must be a finite number > 0, got 0"),
])
def test_hyperparameters_are_checked(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


# ------------------------------------------------------------ learning-rate scale
def test_learning_rate_scale_changes_the_step_without_recompiling(backend, problem):
    opt = O.sgd(schedules.exponential_decay(0.2, 1, 0.5))
    params = _to(backend, problem[0])
    grads = _to(backend, problem[1][0])
    traces = []

    def update(g, s, p):
        traces.append(1)
        return opt.update(g, s, p)

    step = backend.jit(update)
    state = opt.init(params)
    assert O.learning_rate_scale(state) == 1.0
    assert O.current_learning_rate(opt, state) == pytest.approx(0.2)
    full, state = step(grads, state, params)
    halved_state = O.with_learning_rate_scale(state, 0.25)
    assert O.learning_rate_scale(state) == 1.0  # pure: the old state is unchanged
    assert O.learning_rate_scale(halved_state) == 0.25
    assert O.current_learning_rate(opt, halved_state) == pytest.approx(0.1 * 0.25)
    quarter, halved_state = step(grads, halved_state, params)
    for (a, _), (b, _) in zip(_host(backend, quarter), _host(backend, full), strict=True):
        np.testing.assert_allclose(a, b * 0.5 * 0.25, rtol=1e-12)
    if backend.compiles:
        assert len(traces) == 1
    dtype = halved_state[0].learning_rate_scale.dtype
    assert backend.dtype_name(dtype) == "float64"
    with pytest.raises(ValueError, match="factor must be a finite number >= 0"):
        O.with_learning_rate_scale(state, -1.0)
    with pytest.raises(ValueError, match="has no learning rate"):
        O.learning_rate_scale(O.trace().init(params))


# ------------------------------------------------------------ a user's schedule
def _as_str(step):
    return "0.1"


def _python_if(step):
    return 0.1 if step < 10 else 0.01


def _broken(step):
    raise KeyError("boom")


def test_check_schedule_messages(backend):
    with pytest.raises(TypeError, match=r"learning-rate schedule _as_str must return a number "
                                        r"or a 0-d array for step 0, got str"):
        O.check_schedule(backend, _as_str)
    with pytest.raises(TypeError, match=r"schedule _broken failed for step 0 \(KeyError"):
        O.check_schedule(backend, _broken)

    def vec(step):
        return backend.xp.ones(3) * 0.1

    with pytest.raises(ValueError, match=r"schedule vec must return a number or a 0-d array "
                                         r"for step 0, got an array of shape \(3,\)"):
        O.check_schedule(backend, vec)
    O.check_schedule(backend, lambda step: 0.1)
    O.check_schedule(backend, schedules.cosine_decay(0.1, 10))
    if backend.compiles:
        with pytest.raises(TypeError, match=r"schedules are traced by JAX: use "
                                            r"xp.where\(step < 100, a, b\) instead of a Python "
                                            r"if on the step"):
            O.check_schedule(backend, _python_if)
    else:
        O.check_schedule(backend, _python_if)


def test_fit_checks_a_users_schedule_before_training(backend):
    model = mlp.MLP([2, 1], backend=backend, seed=0)
    before = model.get_weights()
    with pytest.raises(TypeError, match="schedule _as_str must return a number"):
        model.fit(np.ones((3, 2)), np.ones((3, 1)), epochs=1, optimizer=O.sgd(_as_str))
    np.testing.assert_array_equal(model.get_weights()[0][0], before[0][0])
    # a schedule written with xp.where works everywhere, compiled on JAX
    xp = backend.xp

    def halves(step):
        return xp.where(step < 2, xp.asarray(0.1), xp.asarray(0.05))

    model.fit(np.ones((3, 2)), np.ones((3, 1)), epochs=3, optimizer=O.sgd(halves))
    assert O.step_count(model.optimizer_state_) == 3
    assert O.current_learning_rate(model.optimizer_, model.optimizer_state_) == \
        pytest.approx(0.05)


def test_a_schedule_returning_a_tensor_that_requires_grad_is_refused():
    """On PyTorch (with or without the fast path) a learning rate that requires grad would
    pull the weights into an autograd graph: `fit` refuses it and changes nothing."""
    torch = pytest.importorskip("torch")
    from mlp.backends import _torch

    log_lr = torch.tensor(-4.6, requires_grad=True)

    def learned(step):
        return torch.exp(log_lr)

    for backend in (_torch.create(fast=True), _torch.create(fast=False)):
        model = mlp.MLP([3, 4, 2], loss="cross_entropy", backend=backend, seed=0)
        before = model.get_weights()
        with pytest.raises(TypeError, match=r"learning-rate schedule learned returned a torch "
                                            r"tensor that requires grad; .* return "
                                            r"float\(value\) or value.detach\(\)"):
            model.fit(np.ones((4, 3)), [0, 1, 0, 1], epochs=1, optimizer=O.sgd(learned))
        assert model.epochs_trained_ == 0
        np.testing.assert_array_equal(model.get_weights()[0][0], before[0][0])
        # detached, it trains
        model.fit(np.ones((4, 3)), [0, 1, 0, 1], epochs=2,
                  optimizer=O.sgd(lambda step: torch.exp(log_lr).detach()))
        assert model.epochs_trained_ == 2


def test_a_chain_and_its_state_round_trip_through_a_file(backend, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    model = mlp.MLP([3, 4, 2], backend=backend, dtype="float64", seed=0)
    opt = O.chain(O.clip_by_global_norm(1.0), O.trace(0.5),
                  O.scale_by_learning_rate(schedules.cosine_decay(0.1, 10)))
    model.fit(x, y, epochs=3, batch_size=4, optimizer=opt)
    model.optimizer_state_ = O.with_learning_rate_scale(model.optimizer_state_, 0.5)
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz", backend=backend.name)
    assert loaded.optimizer_ == opt
    state = loaded.optimizer_state_
    assert [type(s) for s in state] == [O.EmptyState, O.TraceState, O.ScaleByLearningRateState]
    assert O.step_count(state) == 6 and O.learning_rate_scale(state) == 0.5
    assert O.current_learning_rate(opt, state) == pytest.approx(
        O.current_learning_rate(opt, model.optimizer_state_))
    with pytest.raises(ValueError, match="cannot save optimizer"):
        model.optimizer_ = _user_sgd(0.1)
        model.save(tmp_path / "user.npz", include_optimizer=True)


def test_an_optimizer_class_instead_of_an_object_says_how_to_write_it():
    with pytest.raises(TypeError, match=r"got the class Adam: write Adam\(\)"):
        O.get_optimizer(O.Adam)


def _as_float32(a):
    from array_api_compat import array_namespace

    xp = array_namespace(a)
    return xp.astype(a, xp.float32)


class _Count(NamedTuple):
    count: object
    moment: object


@pytest.mark.parametrize("new_state, returned", [
    (lambda s: None, r"None where the state holds a _Count of 2 items"),
    (lambda s: (s.count, s.moment), r"a tuple of 2 items where the state holds a _Count"),
    (lambda s: _Count(s.count + 1, [(_as_float32(m), v) for m, v in s.moment]),
     r"of dtype \S*float32 where the state holds one of dtype \S*float64"),
    (lambda s: _Count(s.count + 1, s.moment[:1]), r"a list of 1 items where the state holds "
                                                   r"a list of 2 items"),
], ids=["None", "tuple", "dtype", "layers"])
def test_a_users_update_returning_a_state_of_another_structure_is_named(backend, new_state,
                                                                       returned):
    """A new state that is not the structure of the one given (None, another container,
    arrays of another dtype) is refused at the first step, naming the optimizer, the same
    on every backend (JAX would fail inside its loop, NumPy and PyTorch train on)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(12, 2))
    model = mlp.MLP([4, 5, 2], activation="tanh", backend=backend, dtype="float64", seed=1)
    before = model.get_weights()

    def init(params):
        return _Count(0, mlp.tree.tree_map(lambda a: a * 0, params))

    def update(grads, state, params=None):
        return mlp.tree.tree_map(lambda g: -0.1 * g, grads), new_state(state)

    user = O.GradientTransformation(init, update)
    with pytest.raises(TypeError, match=r"the optimizer GradientTransformation\(update=\S+, "
                                        r"elementwise=False\) returned a new state with .*"
                                        + returned + r".*: update\(grads, state, params\) must "
                                        r"return a state of the structure of the one it was "
                                        r"given"):
        model.fit(x, y, epochs=2, batch_size=5, optimizer=user)
    assert model.epochs_trained_ == 0 and model.history_ is None  # as it was before the fit
    assert model.optimizer_ is None
    for (W, b), (W0, b0) in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("update, returned", [
    (lambda g, s, p=None: None, "returned None"),
    (lambda g, s, p=None: mlp.tree.tree_map(lambda a: -0.1 * a, g),
     "returned the updates alone, without the new state"),
    (lambda g, s, p=None: (g, s, 0), "returned a tuple of 3 items"),
    (lambda g, s, p=None: (g[:1], s), r"returned a list of 1 items as updates where the "
                                      r"gradients are a list of 2 items"),
    (lambda g, s, p=None: ([(dW[:1, ...], db) for dW, db in g], s),
     r"returned an update of shape \(1, 5\) for a gradient of shape \(4, 5\)"),
    (lambda g, s, p=None: ([(dW, None) for dW, db in g], s),
     r"returned None as an update where the gradient is an array"),
    (lambda g, s, p=None: ([(_as_float32(dW), db) for dW, db in g], s),
     r"returned an update of dtype \S*float32 \(\w+\) for a gradient of dtype \S*float64 \(\w+\)"),
], ids=["None", "updates-alone", "three", "layers", "shape", "leaf", "dtype"])
@pytest.mark.parametrize("chained", [False, True], ids=["alone", "in-a-chain"])
def test_a_users_update_returning_the_wrong_thing_is_named(backend, update, returned,
                                                          chained):
    """What the update returned and what it must return, naming the transformation, not
    "cannot unpack non-iterable NoneType object"; the weights and epochs are unchanged."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(12, 2))
    model = mlp.MLP([4, 5, 2], activation="tanh", backend=backend, dtype="float64", seed=1)
    before = model.get_weights()
    user = O.GradientTransformation(lambda p: None, update)
    optimizer = O.chain(user, O.scale_by_learning_rate(0.1)) if chained else user
    with pytest.raises(TypeError, match=r"the optimizer GradientTransformation\(update=<lambda>, "
                                        r"elementwise=False\) " + returned + r": update\(grads, "
                                        r"state, params\) must return a pair \(updates, "
                                        r"new_state\), the updates shaped as grads"):
        model.fit(x, y, epochs=2, batch_size=5, optimizer=optimizer)
    assert model.epochs_trained_ == 0 and model.history_ is None and model.optimizer_ is None
    for (W, b), (W0, b0) in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
