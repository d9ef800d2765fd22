"""Learning-rate schedules: pure functions of the optimizer's step count.

A schedule is called with ``step``, a 0-d array holding the number of updates
made so far (0 for the first), and returns the learning rate for this update.
They use only array-API functions, so they trace under JAX's ``jit``.

>>> from mlp import schedules
>>> lr = schedules.cosine_decay(1e-3, decay_steps=1000, warmup_steps=100)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from array_api_compat import array_namespace


def _positive(name, value, *, allow_zero=False):
    ok = isinstance(value, numbers.Real) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0
    )
    if not ok or isinstance(value, bool):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _as_python_floats(opt):
    """Store NumPy scalars as Python floats: a ``np.float64`` hyperparameter would
    otherwise promote float32 weights to float64 on NumPy (NEP 50)."""
    for f in dataclasses.fields(opt):
        value = getattr(opt, f.name)
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, int)):
            object.__setattr__(opt, f.name, float(value))


@dataclass(frozen=True)
class Constant:
    """The same learning rate at every step."""

    learning_rate: float

    def __post_init__(self):
        _positive("learning_rate", self.learning_rate)
        _as_python_floats(self)

    def __call__(self, step):
        return self.learning_rate


@dataclass(frozen=True)
class ExponentialDecay:
    """``learning_rate * decay_rate ** (step / decay_steps)`` (floored with ``staircase``)."""

    learning_rate: float
    decay_steps: int
    decay_rate: float
    staircase: bool = False

    def __post_init__(self):
        _positive("learning_rate", self.learning_rate)
        _positive("decay_steps", self.decay_steps)
        _positive("decay_rate", self.decay_rate)
        _as_python_floats(self)

    def __call__(self, step):
        xp = array_namespace(step)
        power = step / self.decay_steps
        if self.staircase:
            power = xp.floor(power)
        return self.learning_rate * self.decay_rate**power


def step_decay(learning_rate: float, drop: float, every: int) -> ExponentialDecay:
    """Multiply the learning rate by ``drop`` every ``every`` steps."""
    return ExponentialDecay(learning_rate, every, drop, staircase=True)


def exponential_decay(learning_rate, decay_steps, decay_rate, staircase=False):
    """See `ExponentialDecay`."""
    return ExponentialDecay(learning_rate, decay_steps, decay_rate, staircase)


@dataclass(frozen=True)
class CosineDecay:
    """Linear warm-up from 0 over ``warmup_steps``, then cosine decay to
    ``final_fraction * learning_rate`` at ``warmup_steps + decay_steps``; flat after."""

    learning_rate: float
    decay_steps: int
    warmup_steps: int = 0
    final_fraction: float = 0.0

    def __post_init__(self):
        _positive("learning_rate", self.learning_rate)
        _positive("decay_steps", self.decay_steps)
        _positive("warmup_steps", self.warmup_steps, allow_zero=True)
        _positive("final_fraction", self.final_fraction, allow_zero=True)
        _as_python_floats(self)

    def __call__(self, step):
        xp = array_namespace(step)
        progress = xp.clip((step - self.warmup_steps) / self.decay_steps, 0.0, 1.0)
        cosine = 0.5 * (1.0 + xp.cos(math.pi * progress))
        decayed = self.learning_rate * (self.final_fraction + (1 - self.final_fraction) * cosine)
        if self.warmup_steps == 0:
            return decayed
        warm = self.learning_rate * (step + 1.0) / self.warmup_steps
        return xp.where(step < self.warmup_steps, warm, decayed)


def cosine_decay(learning_rate, decay_steps, warmup_steps=0, final_fraction=0.0):
    """See `CosineDecay`."""
    return CosineDecay(learning_rate, decay_steps, warmup_steps, final_fraction)


@dataclass(frozen=True)
class InvScaling:
    """scikit-learn's ``invscaling``: ``learning_rate / (step + 1) ** power_t``.

    scikit-learn counts samples seen; this counts updates (steps).
    """

    learning_rate: float
    power_t: float = 0.5

    def __post_init__(self):
        _positive("learning_rate", self.learning_rate)
        _positive("power_t", self.power_t, allow_zero=True)
        _as_python_floats(self)

    def __call__(self, step):
        return self.learning_rate / (step + 1.0) ** self.power_t


def invscaling(learning_rate, power_t=0.5):
    """See `InvScaling`."""
    return InvScaling(learning_rate, power_t)


def check_learning_rate(learning_rate):
    """A positive finite float, or a callable schedule; a clear error otherwise."""
    if callable(learning_rate):
        return learning_rate
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(
            "learning_rate must be a positive number or a schedule "
            f"(see mlp.schedules), got {type(learning_rate).__name__}"
        )
    return _positive("learning_rate", learning_rate)
