"""Learning-rate schedules: pure functions of the optimizer's step count.

A schedule is called with ``step``, the number of updates made so far (0 for
the first) as an integer 0-d array, and returns the learning rate for this
update (a number or a 0-d array). The built-in ones cast the step to a float
explicitly (array-API integers do not mix with float scalars) and use only
array-API functions, so they trace under JAX's ``jit``.

>>> from mlp import schedules
>>> lr = schedules.cosine_decay(1e-3, decay_steps=1000, warmup_steps=100)

A schedule of your own is any function of the step. On JAX it is traced, so
branch with ``xp.where(step < 100, a, b)``, not with a Python ``if`` on the step.
Before its epochs run, `fit` evaluates the schedule at every step it will take (in
one call on an array of steps, for a schedule written with elementwise ``xp``
functions; otherwise step by step, at up to 2,048 steps spread over the fit) and
refuses a negative, NaN or infinite rate, naming the schedule and the step.
Each built-in schedule describes itself: ``get_config()`` gives a JSON-ready
dict and `from_config` rebuilds an equal schedule.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from array_api_compat import array_namespace

from ._typing import Array
from .params import Boolean, Integer, Real, check

_POSITIVE = [Real(0, closed="neither")]
_NON_NEGATIVE = [Real(0)]

#: A learning-rate schedule: the step (an integer 0-d array) -> the rate (a number or 0-d
#: array).
Schedule: TypeAlias = Callable[[Array], "float | Array"]


def as_float_step(step: Array) -> Array:
    """``step`` as a float 0-d array (float64 where the backend has it)."""
    xp = array_namespace(step)
    if xp.isdtype(step.dtype, "real floating"):
        return step
    return xp.astype(step, xp.result_type(xp.float32, xp.float64))


class BuiltinSchedule:
    """Shared by the built-in schedules: checked fields and `get_config` (a schedule of
    your own need not derive from it: any function of the step is one)."""

    #: The name in configs (`from_config`).
    config_name = ""
    _rules: ClassVar[dict[str, list[Any]]] = {}
    # (set by @dataclass on each subclass: makes `dataclasses.asdict` typed for them)
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        for name, rules in self._rules.items():
            object.__setattr__(self, name, check(name, getattr(self, name), rules))

    def get_config(self) -> dict[str, Any]:
        """``{"name": ..., <field>: <value>, ...}``, JSON-ready."""
        return {"name": self.config_name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Constant(BuiltinSchedule):
    """The same learning rate at every step."""

    learning_rate: float
    config_name = "constant"
    _rules = {"learning_rate": _POSITIVE}

    def __call__(self, step: Array) -> float:
        return self.learning_rate


@dataclass(frozen=True)
class ExponentialDecay(BuiltinSchedule):
    """``learning_rate * decay_rate ** (step / decay_steps)`` (floored with ``staircase``)."""

    learning_rate: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False
    config_name = "exponential_decay"
    _rules = {"learning_rate": _POSITIVE, "decay_steps": _POSITIVE,
              "decay_rate": _POSITIVE, "staircase": [Boolean()]}

    def __call__(self, step: Array) -> Array:
        xp = array_namespace(step)
        power = as_float_step(step) / self.decay_steps
        if self.staircase:
            power = xp.floor(power)
        return self.learning_rate * self.decay_rate**power


def step_decay(learning_rate: float, drop: float, every: int) -> ExponentialDecay:
    """Multiply the learning rate by ``drop`` every ``every`` steps."""
    return ExponentialDecay(learning_rate, every, drop, staircase=True)


def exponential_decay(learning_rate: float, decay_steps: float, decay_rate: float,
                      staircase: bool = False) -> ExponentialDecay:
    """See `ExponentialDecay`."""
    return ExponentialDecay(learning_rate, decay_steps, decay_rate, staircase)


@dataclass(frozen=True)
class CosineDecay(BuiltinSchedule):
    """Linear warm-up from 0 over ``warmup_steps``, then cosine decay to
    ``final_fraction * learning_rate`` at ``warmup_steps + decay_steps``; flat after."""

    learning_rate: float
    decay_steps: float
    warmup_steps: int = 0
    final_fraction: float = 0.0
    config_name = "cosine_decay"
    _rules = {"learning_rate": _POSITIVE, "decay_steps": _POSITIVE,
              "warmup_steps": [Integer(0)], "final_fraction": _NON_NEGATIVE}

    def __call__(self, step: Array) -> Array:
        xp = array_namespace(step)
        step = as_float_step(step)
        progress = xp.clip((step - self.warmup_steps) / self.decay_steps, 0.0, 1.0)
        cosine = 0.5 * (1.0 + xp.cos(math.pi * progress))
        decayed = self.learning_rate * (self.final_fraction + (1 - self.final_fraction) * cosine)
        if self.warmup_steps == 0:
            return decayed
        warm = self.learning_rate * (step + 1.0) / self.warmup_steps
        return xp.where(step < self.warmup_steps, warm, decayed)


def cosine_decay(learning_rate: float, decay_steps: float, warmup_steps: int = 0,
                 final_fraction: float = 0.0) -> CosineDecay:
    """See `CosineDecay`."""
    return CosineDecay(learning_rate, decay_steps, warmup_steps, final_fraction)


@dataclass(frozen=True)
class InvScaling(BuiltinSchedule):
    """scikit-learn's ``invscaling``: ``learning_rate / (step + 1) ** power_t``.

    scikit-learn counts samples seen; this counts updates (steps).
    """

    learning_rate: float
    power_t: float = 0.5
    config_name = "invscaling"
    _rules = {"learning_rate": _POSITIVE, "power_t": _NON_NEGATIVE}

    def __call__(self, step: Array) -> Array:
        return self.learning_rate / (as_float_step(step) + 1.0) ** self.power_t


def invscaling(learning_rate: float, power_t: float = 0.5) -> InvScaling:
    """See `InvScaling`."""
    return InvScaling(learning_rate, power_t)


#: Config name -> schedule class.
SCHEDULES: dict[str, type[BuiltinSchedule]] = {
    cls.config_name: cls for cls in (Constant, ExponentialDecay, CosineDecay, InvScaling)}


def from_config(config: dict[str, Any]) -> BuiltinSchedule:
    """The schedule described by ``config`` (from ``get_config()``).

    Also reads the older form ``{"schedule": "CosineDecay", <fields>}``.
    Raises ValueError for an unknown schedule name or field.
    """
    if not isinstance(config, dict):
        raise ValueError(f"a schedule config must be a dict, got {type(config).__name__}")
    fields = dict(config)
    if "schedule" in fields:  # format 1 files: the class name
        by_class = {cls.__name__: cls for cls in SCHEDULES.values()}
        name = fields.pop("schedule")
        cls = by_class.get(name) if isinstance(name, str) else None
    else:
        name = fields.pop("name", None)
        cls = SCHEDULES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown learning-rate schedule {name!r}; known: "
                         f"{', '.join(SCHEDULES)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} in the config "
                         f"of learning-rate schedule {name!r}; known: {', '.join(sorted(known))}")
    return cls(**fields)


def check_learning_rate(learning_rate: float | Schedule) -> float | Schedule:
    """A positive finite float (NumPy scalars accepted, stored as ``float``), or a
    callable schedule; a clear error otherwise."""
    if callable(learning_rate):
        return learning_rate
    if not isinstance(learning_rate, numbers.Real) or isinstance(learning_rate, bool):
        raise TypeError(
            "learning_rate must be a positive number or a schedule "
            f"(see mlp.schedules), got {type(learning_rate).__name__}"
        )
    return check("learning_rate", learning_rate, _POSITIVE)
