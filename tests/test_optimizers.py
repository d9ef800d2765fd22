"""Optimizers, schedules, L2 weight decay and gradient clipping.

Every optimizer runs several (compiled, on JAX) updates on backend arrays and is
compared with an independent NumPy implementation of its textbook formula.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import mlp
from mlp import core, optimizers, schedules

SHAPES = [(3, 4), (4, 2)]
N_STEPS = 5


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny matrices: BLAS/OpenMP threads only add overhead, which turns into tens of
    seconds when other processes compete for the cores."""
    with threadpool_limits(1):
        yield



def _host_tree(rng, scale=1.0):
    return [(scale * rng.normal(size=s), scale * rng.normal(size=s[1])) for s in SHAPES]


def _to(backend, tree):
    return [(backend.asarray(W, "float64"), backend.asarray(b, "float64")) for W, b in tree]


def _run(backend, opt, host_params, host_grads):
    """``N_STEPS`` updates through ``backend.jit``; the params after each step, as NumPy."""
    def step(grads, state, params):
        updates, state = opt.update(grads, state, params)
        return optimizers.apply_updates(params, updates), state

    update = backend.jit(step)
    params = _to(backend, host_params)
    state = opt.init(params)
    out = []
    for g in host_grads:
        params, state = update(_to(backend, g), state, params)
        out.append([(backend.to_numpy(W), backend.to_numpy(b)) for W, b in params])
    return out, state


def _reference(host_params, host_grads, step_fn, init_fn):
    """The same steps with a NumPy reference ``step_fn(p, g, slot, t) -> (p, slot)``
    applied to every array (W and b) separately; ``t`` counts from 1."""
    flat = [a.copy() for pair in host_params for a in pair]
    slots = [init_fn(a) for a in flat]
    out = []
    for t, grads in enumerate(host_grads, start=1):
        gflat = [a for pair in grads for a in pair]
        for i, (p, g) in enumerate(zip(flat, gflat, strict=True)):
            flat[i], slots[i] = step_fn(p, g, slots[i], t)
        out.append([(flat[2 * k].copy(), flat[2 * k + 1].copy()) for k in range(len(SHAPES))])
    return out


def _assert_trajectory(got, want, rtol=1e-12, atol=1e-13):
    assert len(got) == len(want)
    for step, (g_step, w_step) in enumerate(zip(got, want, strict=True)):
        for (gW, gb), (wW, wb) in zip(g_step, w_step, strict=True):
            np.testing.assert_allclose(gW, wW, rtol=rtol, atol=atol, err_msg=f"step {step}")
            np.testing.assert_allclose(gb, wb, rtol=rtol, atol=atol, err_msg=f"step {step}")


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    params = _host_tree(rng)
    grads = [_host_tree(rng, scale=0.5) for _ in range(N_STEPS)]
    return params, grads


# ------------------------------------------------------------------ optimizers
def test_plain_sgd(backend, problem):
    params, grads = problem
    lr = 0.1
    got, _ = _run(backend, optimizers.sgd(lr), params, grads)
    want = _reference(params, grads, lambda p, g, s, t: (p - lr * g, s), lambda a: None)
    _assert_trajectory(got, want)


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_sgd_momentum(backend, problem, nesterov):
    params, grads = problem
    lr, mu = 0.05, 0.9

    def step(p, g, v, t):
        v = mu * v + g
        direction = g + mu * v if nesterov else v
        return p - lr * direction, v

    got, _ = _run(backend, optimizers.SGD(lr, momentum=mu, nesterov=nesterov), params, grads)
    want = _reference(params, grads, step, np.zeros_like)
    _assert_trajectory(got, want)
    # the velocity really matters: the first step is plain SGD's (times 1 + mu with
    # Nesterov), the later ones are not
    plain = _reference(params, grads, lambda p, g, s, t: (p - lr * g, s), lambda a: None)
    first = params[0][0] - (1 + mu if nesterov else 1) * lr * grads[0][0][0]
    np.testing.assert_allclose(got[0][0][0], first, rtol=1e-12)
    assert not np.allclose(got[-1][0][0], plain[-1][0][0])


def _adam_step(lr, b1, b2, eps):
    def step(p, g, slot, t):
        m, v = slot
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        # Kingma & Ba, Section 2 (the bias corrections folded into the step size)
        alpha_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        return p - alpha_t * m / (np.sqrt(v) + eps), (m, v)

    return step


def _zeros2(a):
    return (np.zeros_like(a), np.zeros_like(a))


def test_adam(backend, problem):
    params, grads = problem
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-3  # a large eps so its placement is tested
    got, state = _run(backend, optimizers.Adam(lr, b1, b2, eps), params, grads)
    _assert_trajectory(got, _reference(params, grads, _adam_step(lr, b1, b2, eps), _zeros2))
    assert optimizers.step_count(state) == N_STEPS


def test_adam_equals_textbook_bias_correction(problem):
    """The folded step equals m_hat / (sqrt(v_hat) + eps_hat) with eps_hat = eps / sqrt(1-b2^t)."""
    params, grads = problem
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8

    def textbook(p, g, slot, t):
        m, v = slot
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps / math.sqrt(1 - b2**t)), (m, v)

    _assert_trajectory(_reference(params, grads, textbook, _zeros2),
                       _reference(params, grads, _adam_step(lr, b1, b2, eps), _zeros2))


def test_adamw_decoupled_decay(backend, problem):
    params, grads = problem
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.99, 1e-8, 0.1
    adam_step = _adam_step(lr, b1, b2, eps)

    def step(p, g, slot, t):
        new, slot = adam_step(p, g, slot, t)
        return new - lr * wd * p, slot  # decay of the *old* weights, not through the moments

    got, _ = _run(backend, optimizers.AdamW(lr, b1, b2, eps, weight_decay=wd), params, grads)
    _assert_trajectory(got, _reference(params, grads, step, _zeros2))


def test_adamw_zero_gradients_decay_geometrically(backend, problem):
    params, _ = problem
    lr, wd = 0.1, 0.5
    zeros = [[(np.zeros_like(W), np.zeros_like(b)) for W, b in params]] * 3
    got, _ = _run(backend, optimizers.adamw(lr, weight_decay=wd), params, zeros)
    for (W, b), (W0, b0) in zip(got[-1], params, strict=True):
        np.testing.assert_allclose(W, W0 * (1 - lr * wd) ** 3, rtol=1e-12)
        np.testing.assert_allclose(b, b0 * (1 - lr * wd) ** 3, rtol=1e-12)
    # plain Adam does not move at all on zero gradients
    still, _ = _run(backend, optimizers.adam(lr), params, zeros)
    np.testing.assert_array_equal(still[-1][0][0], params[0][0])


def test_rmsprop(backend, problem):
    params, grads = problem
    lr, rho, eps = 0.01, 0.8, 1e-4

    def step(p, g, s, t):
        s = rho * s + (1 - rho) * g**2
        return p - lr * g / (np.sqrt(s) + eps), s

    got, _ = _run(backend, optimizers.RMSprop(lr, decay=rho, eps=eps), params, grads)
    _assert_trajectory(got, _reference(params, grads, step, np.zeros_like))


def test_optimizer_with_schedule(backend, problem):
    """The schedule is evaluated at the step count 0, 1, 2, ... kept in the state."""
    params, grads = problem
    lr0, rate = 0.1, 0.5
    opt = optimizers.SGD(schedules.exponential_decay(lr0, decay_steps=1, decay_rate=rate))
    got, _ = _run(backend, opt, params, grads)
    want = _reference(params, grads, lambda p, g, s, t: (p - lr0 * rate ** (t - 1) * g, s),
                      lambda a: None)
    _assert_trajectory(got, want)


def test_update_does_not_modify_inputs(backend, problem):
    if backend.compiles:
        pytest.skip("JAX arrays are immutable")
    params, grads = problem
    for opt in (optimizers.SGD(0.1, momentum=0.9), optimizers.adamw(), optimizers.rmsprop()):
        p = _to(backend, params)
        g = _to(backend, grads[0])
        state = opt.init(p)
        opt.update(g, state, p)
        np.testing.assert_array_equal(backend.to_numpy(p[0][0]), params[0][0])
        np.testing.assert_array_equal(backend.to_numpy(g[0][0]), grads[0][0][0])


def test_get_optimizer_by_name():
    assert optimizers.get_optimizer("adam") == optimizers.Adam()
    assert optimizers.get_optimizer("SGD", 0.5) == optimizers.SGD(0.5)
    assert optimizers.get_optimizer("rmsprop").learning_rate == 1e-3
    assert optimizers.get_optimizer("adamw", 0.2) == optimizers.AdamW(learning_rate=0.2)
    opt = optimizers.SGD(0.1, momentum=0.9, nesterov=True)
    assert optimizers.get_optimizer(opt) is opt


# ------------------------------------------------------------------- schedules
def _at(backend, schedule, steps):
    fn = backend.jit(schedule)
    out = []
    for s in steps:
        value = fn(backend.asarray(np.asarray(float(s)), "float64"))
        out.append(float(backend.to_numpy(backend.asarray(value, "float64")))
                   if not isinstance(value, float) else value)
    return np.asarray(out)


def test_constant_schedule(backend):
    np.testing.assert_allclose(_at(backend, schedules.Constant(0.3), [0, 5, 1000]), 0.3)


def test_step_decay(backend):
    sched = schedules.step_decay(0.1, drop=0.5, every=10)
    got = _at(backend, sched, [0, 9, 10, 19, 20, 35])
    np.testing.assert_allclose(got, [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125], rtol=1e-12)


def test_exponential_decay(backend):
    sched = schedules.exponential_decay(0.2, decay_steps=100, decay_rate=0.1)
    got = _at(backend, sched, [0, 50, 100, 250])
    np.testing.assert_allclose(got, [0.2, 0.2 * 0.1**0.5, 0.02, 0.2 * 0.1**2.5], rtol=1e-12)
    stair = schedules.exponential_decay(0.2, 100, 0.1, staircase=True)
    np.testing.assert_allclose(_at(backend, stair, [99, 100, 250]), [0.2, 0.02, 0.002],
                               rtol=1e-12)


def test_cosine_decay_with_warmup(backend):
    lr, warm, decay, final = 1e-2, 10, 100, 0.1
    sched = schedules.cosine_decay(lr, decay_steps=decay, warmup_steps=warm, final_fraction=final)
    steps = [0, 4, 9, 10, 35, 60, 85, 110, 500]
    want = []
    for s in steps:
        if s < warm:
            want.append(lr * (s + 1) / warm)  # linear warm-up, reaching lr at step warm - 1
        else:
            progress = min((s - warm) / decay, 1.0)
            want.append(lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))))
    np.testing.assert_allclose(_at(backend, sched, steps), want, rtol=1e-12)
    # landmarks: the peak after warm-up, the midpoint, the floor
    got = _at(backend, sched, [10, 60, 110, 10_000])
    np.testing.assert_allclose(got, [lr, lr * (final + (1 - final) / 2), lr * final, lr * final],
                               rtol=1e-12)


def test_cosine_decay_without_warmup(backend):
    sched = schedules.cosine_decay(1.0, decay_steps=4)
    np.testing.assert_allclose(_at(backend, sched, [0, 1, 2, 4, 9]),
                               [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.0, 0.0],
                               rtol=1e-12, atol=1e-15)


def test_invscaling_matches_scikit_learn_formula(backend):
    # scikit-learn: learning_rate_init / (t + 1) ** power_t
    sched = schedules.invscaling(0.1, power_t=0.25)
    steps = [0, 1, 3, 15, 99]
    np.testing.assert_allclose(_at(backend, sched, steps),
                               [0.1 / (t + 1) ** 0.25 for t in steps], rtol=1e-12)
    np.testing.assert_allclose(_at(backend, schedules.invscaling(1.0), [3]), [0.5], rtol=1e-12)


# --------------------------------------------------- L2 weight decay, clipping
def _model_and_data(backend, loss="mse", sizes=(4, 6, 3), n=12):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, sizes[0]))
    if loss == "mse":
        y = rng.normal(size=(n, sizes[-1]))
    else:
        y = rng.integers(0, sizes[-1], n)
    model = mlp.MLP(list(sizes), loss=loss, backend=backend, dtype="float64", seed=0,
                    activation="tanh")
    return model, x, y


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_alpha_adds_l2_penalty_on_weights_only(backend, loss):
    model, x, y = _model_and_data(backend, loss)
    x_dev, targets, _ = model._prepare(x, y)
    alpha = 0.3
    l0, g0 = backend.jit(partial(core.loss_and_gradients, model._spec))(
        model.params, x_dev, targets)
    l1, g1 = backend.jit(partial(core.loss_and_gradients, model._spec, alpha=alpha))(
        model.params, x_dev, targets)
    host = model.get_weights()
    penalty = 0.5 * alpha * sum(float(np.sum(W**2)) for W, _ in host)
    assert float(l1) == pytest.approx(float(l0) + penalty, rel=1e-12)
    assert float(l0) == pytest.approx(model.loss(x, y), rel=1e-12)
    for (dW0, db0), (dW1, db1), (W, _) in zip(g0, g1, host, strict=True):
        np.testing.assert_allclose(backend.to_numpy(dW1), backend.to_numpy(dW0) + alpha * W,
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(backend.to_numpy(db1), backend.to_numpy(db0))


def test_fit_with_alpha_is_sgd_on_the_penalized_gradient(backend):
    model, x, y = _model_and_data(backend)
    start = model.get_weights()
    grads = [(backend.to_numpy(dW), backend.to_numpy(db)) for dW, db in model.gradients(x, y)]
    lr, alpha = 0.1, 0.5
    penalty = 0.5 * alpha * sum(float(np.sum(W**2)) for W, _ in start)
    loss0 = model.loss(x, y)
    history = model.fit(x, y, epochs=1, learning_rate=lr, alpha=alpha)
    assert history.history["loss"][0] == pytest.approx(loss0 + penalty, rel=1e-12)
    for (W, b), (W0, b0), (dW, db) in zip(model.get_weights(), start, grads, strict=True):
        np.testing.assert_allclose(W, W0 - lr * (dW + alpha * W0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, b0 - lr * db, rtol=1e-12, atol=1e-14)


def _norm(grads):
    return math.sqrt(sum(float(np.sum(a**2)) for pair in grads for a in pair))


def test_clip_by_global_norm(backend, problem):
    _, grads = problem
    g = _to(backend, grads[0])
    norm = _norm(grads[0])
    assert float(optimizers.global_norm(g)) == pytest.approx(norm, rel=1e-12)
    clip = optimizers.clip_by_global_norm(norm / 4)
    clipped, _ = clip.update(g, clip.init(g))
    host = [(backend.to_numpy(a), backend.to_numpy(b)) for a, b in clipped]
    assert _norm(host) == pytest.approx(norm / 4, rel=1e-12)
    for (a, b), (a0, b0) in zip(host, grads[0], strict=True):  # same direction
        np.testing.assert_allclose(a, a0 / 4, rtol=1e-12)
        np.testing.assert_allclose(b, b0 / 4, rtol=1e-12)
    untouched, _ = optimizers.clip_by_global_norm(norm * 2).update(g, clip.init(g))
    for (a, _), (a0, _) in zip(untouched, grads[0], strict=True):
        np.testing.assert_allclose(backend.to_numpy(a), a0, rtol=1e-15)


def test_fit_with_clip_norm(backend):
    model, x, y = _model_and_data(backend)
    start = model.get_weights()
    grads = [(backend.to_numpy(dW), backend.to_numpy(db)) for dW, db in model.gradients(x, y)]
    clip = _norm(grads) / 10
    lr = 0.5
    model.fit(x, y, epochs=1, learning_rate=lr, clip_norm=clip)
    moved = [(W - W0, b - b0) for (W, b), (W0, b0) in zip(model.get_weights(), start, strict=True)]
    assert _norm(moved) == pytest.approx(lr * clip, rel=1e-10)
    for (dW, db), (gW, gb) in zip(moved, grads, strict=True):
        np.testing.assert_allclose(dW, -lr * gW / 10, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(db, -lr * gb / 10, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------- fit(optimizer=, learning_rate=)
def test_fit_takes_a_name_or_an_object(backend):
    results = []
    for kwargs in (dict(optimizer="rmsprop", learning_rate=0.01),
                   dict(optimizer=optimizers.RMSprop(0.01)),
                   dict(optimizer=optimizers.rmsprop(learning_rate=0.01))):
        model, x, y = _model_and_data(backend)
        model.fit(x, y, epochs=3, batch_size=5, **kwargs)
        results.append(model.get_weights())
    for other in results[1:]:
        for (W, b), (W0, b0) in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)


def test_fit_with_a_schedule_matches_a_manual_loop(backend):
    sched = schedules.step_decay(0.2, drop=0.5, every=2)
    model, x, y = _model_and_data(backend)
    manual = [(W.copy(), b.copy()) for W, b in model.get_weights()]
    model.fit(x, y, epochs=5, optimizer="sgd", learning_rate=sched)
    ref = mlp.MLP([4, 6, 3], backend="numpy", dtype="float64", seed=0, activation="tanh")
    for step in range(5):
        ref.set_weights(manual)
        grads = ref.gradients(x, y)
        lr = 0.2 * 0.5 ** (step // 2)
        manual = [(W - lr * dW, b - lr * db)
                  for (W, b), (dW, db) in zip(manual, grads, strict=True)]
    for (W, b), (W0, b0) in zip(model.get_weights(), manual, strict=True):
        np.testing.assert_allclose(W, W0, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(b, b0, rtol=1e-11, atol=1e-13)


def test_every_optimizer_lowers_the_loss(backend):
    for opt in ("sgd", "adam", "adamw", "rmsprop"):
        model, x, y = _model_and_data(backend)
        before = model.loss(x, y)
        history = model.fit(x, y, epochs=5, optimizer=opt,
                            learning_rate=0.2 if opt == "sgd" else 0.05)
        assert model.loss(x, y) < 0.9 * before, opt
        assert history.history["loss"][-1] < history.history["loss"][0], opt


@pytest.mark.parametrize("make", [
    lambda: mlp.optimizers.SGD(np.float64(0.1), momentum=np.float64(0.9)),
    lambda: mlp.optimizers.Adam(np.float64(1e-2), beta1=np.float32(0.9)),
    lambda: mlp.optimizers.SGD(mlp.schedules.cosine_decay(np.float64(0.1), 10)),
], ids=["sgd", "adam", "schedule"])
def test_numpy_scalar_hyperparameters_keep_float32(backend, make):
    """np.float64 hyperparameters are stored as Python floats, so they never promote
    float32 weights to float64 (NumPy 2 treats NumPy scalars as typed, not weak)."""
    opt = make()
    assert all(type(v) is float for v in (opt.learning_rate, getattr(opt, "momentum", 0.0))
               if not callable(v))
    model = mlp.MLP([3, 4, 2], backend=backend, seed=0)
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), epochs=2, optimizer=opt)
    assert all(w.dtype == np.float32 and b.dtype == np.float32 for w, b in model.get_weights())
    assert all(backend.dtype_name(W.dtype) == "float32" for W, _ in model.params)
