"""Optimizers as pure ``init`` / ``update`` pairs (the optax design).

    state = opt.init(params)
    params, state = opt.update(grads, state, params)

``params`` and ``grads`` are lists of ``(W, b)``; ``state`` is plain data
(tuples of arrays), so JAX compiles ``update`` inside the training step. No
array is modified in place. ``learning_rate`` is a float or a schedule from
`mlp.schedules` (a function of the step count kept in ``state``).

Each optimizer is a small frozen dataclass (hashable, so a compiled training
step can be cached per optimizer):

- `SGD`: ``v = g + momentum * v``; ``p -= lr * v`` (or ``lr * (g + momentum * v)``
  with ``nesterov``) - PyTorch's and optax's convention;
- `Adam` (Kingma & Ba 2015, with the bias correction folded into the step size,
  as in their Section 2 and scikit-learn);
- `AdamW`: Adam plus decoupled weight decay ``p -= lr * weight_decay * p``
  (weights and biases, as in PyTorch and optax);
- `RMSprop`: ``s = decay * s + (1 - decay) * g**2``; ``p -= lr * g / (sqrt(s) + eps)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from array_api_compat import array_namespace, device

from .schedules import _as_python_floats, check_learning_rate


def _zeros_like_params(xp, params):
    return [(xp.zeros_like(W), xp.zeros_like(b)) for W, b in params]


def _step_counter(params):
    W = params[0][0]
    xp = array_namespace(W)
    return xp.zeros((), dtype=W.dtype, device=device(W))


def _lr(learning_rate, count):
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _check_fraction(name, value, *, allow_zero=True):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0.0 <= value < 1.0) or (not allow_zero and value == 0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def _check_positive(name, value):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, optionally with (Nesterov) momentum."""

    learning_rate: Any = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    name: str = field(default="sgd", init=False)

    def __post_init__(self):
        check_learning_rate(self.learning_rate)
        _as_python_floats(self)
        _check_fraction("momentum", self.momentum)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def init(self, params):
        xp = array_namespace(params[0][0])
        velocity = _zeros_like_params(xp, params) if self.momentum else None
        return (_step_counter(params), velocity)

    def update(self, grads, state, params):
        count, velocity = state
        lr = _lr(self.learning_rate, count)
        if not self.momentum:
            new = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, grads)]
            return new, (count + 1.0, None)
        m = self.momentum
        velocity = [(dW + m * vW, db + m * vb) for (dW, db), (vW, vb) in zip(grads, velocity)]
        if self.nesterov:
            steps = [(dW + m * vW, db + m * vb) for (dW, db), (vW, vb) in zip(grads, velocity)]
        else:
            steps = velocity
        new = [(W - lr * sW, b - lr * sb) for (W, b), (sW, sb) in zip(params, steps)]
        return new, (count + 1.0, velocity)


@dataclass(frozen=True)
class Adam:
    """Adam: moment estimates with bias correction."""

    learning_rate: Any = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name: str = field(default="adam", init=False)

    def __post_init__(self):
        check_learning_rate(self.learning_rate)
        _as_python_floats(self)
        _check_fraction("beta1", self.beta1)
        _check_fraction("beta2", self.beta2)
        _check_positive("eps", self.eps)

    def init(self, params):
        xp = array_namespace(params[0][0])
        return (_step_counter(params), _zeros_like_params(xp, params),
                _zeros_like_params(xp, params))

    def _moments(self, grads, state):
        count, mu, nu = state
        xp = array_namespace(count)
        b1, b2 = self.beta1, self.beta2
        mu = [(b1 * mW + (1 - b1) * dW, b1 * mb + (1 - b1) * db)
              for (dW, db), (mW, mb) in zip(grads, mu)]
        nu = [(b2 * vW + (1 - b2) * (dW * dW), b2 * vb + (1 - b2) * (db * db))
              for (dW, db), (vW, vb) in zip(grads, nu)]
        t = count + 1.0
        lr = _lr(self.learning_rate, count)
        step_size = lr * xp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        steps = [(mW / (xp.sqrt(vW) + self.eps), mb / (xp.sqrt(vb) + self.eps))
                 for (mW, mb), (vW, vb) in zip(mu, nu)]
        return lr, step_size, steps, (t, mu, nu)

    def update(self, grads, state, params):
        _, step_size, steps, state = self._moments(grads, state)
        new = [(W - step_size * sW, b - step_size * sb)
               for (W, b), (sW, sb) in zip(params, steps)]
        return new, state


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""

    weight_decay: float = 0.01
    name: str = field(default="adamw", init=False)

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.weight_decay, numbers.Real) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def update(self, grads, state, params):
        lr, step_size, steps, state = self._moments(grads, state)
        wd = self.weight_decay
        new = [(W - step_size * sW - lr * wd * W, b - step_size * sb - lr * wd * b)
               for (W, b), (sW, sb) in zip(params, steps)]
        return new, state


@dataclass(frozen=True)
class RMSprop:
    """RMSprop: divide by a running root-mean-square of the gradients."""

    learning_rate: Any = 1e-3
    decay: float = 0.9
    eps: float = 1e-8
    name: str = field(default="rmsprop", init=False)

    def __post_init__(self):
        check_learning_rate(self.learning_rate)
        _as_python_floats(self)
        _check_fraction("decay", self.decay)
        _check_positive("eps", self.eps)

    def init(self, params):
        xp = array_namespace(params[0][0])
        return (_step_counter(params), _zeros_like_params(xp, params))

    def update(self, grads, state, params):
        count, sq = state
        xp = array_namespace(count)
        d = self.decay
        sq = [(d * sW + (1 - d) * (dW * dW), d * sb + (1 - d) * (db * db))
              for (dW, db), (sW, sb) in zip(grads, sq)]
        lr = _lr(self.learning_rate, count)
        new = [(W - lr * dW / (xp.sqrt(sW) + self.eps), b - lr * db / (xp.sqrt(sb) + self.eps))
               for (W, b), (dW, db), (sW, sb) in zip(params, grads, sq)]
        return new, (count + 1.0, sq)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def sgd(learning_rate=0.01, momentum=0.0, nesterov=False) -> SGD:
    return SGD(learning_rate, momentum, nesterov)


def adam(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8) -> Adam:
    return Adam(learning_rate, beta1, beta2, eps)


def adamw(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01) -> AdamW:
    return AdamW(learning_rate, beta1, beta2, eps, weight_decay)


def rmsprop(learning_rate=1e-3, decay=0.9, eps=1e-8) -> RMSprop:
    return RMSprop(learning_rate, decay, eps)


def get_optimizer(optimizer, learning_rate=None):
    """An optimizer from a name (with ``learning_rate``) or an optimizer object.

    An object must have ``init(params)`` and ``update(grads, state, params)``.
    """
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        cls = OPTIMIZERS[key]
        return cls() if learning_rate is None else cls(learning_rate=learning_rate)
    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        return optimizer
    raise TypeError(
        "optimizer must be a name (" + ", ".join(OPTIMIZERS) + ") or an object with "
        f"init(params) and update(grads, state, params), got {type(optimizer).__name__}"
    )
