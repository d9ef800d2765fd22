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

__all__ = [
    "Schedule",
    "BuiltinSchedule",
    "Constant",
    "ExponentialDecay",
    "CosineDecay",
    "InvScaling",
    "step_decay",
    "exponential_decay",
    "cosine_decay",
    "invscaling",
    "from_config",
]

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
    """The base of the built-in schedules: checked fields and `get_config`.

    A schedule of your own need not derive from it: any function of the step is
    one.
    """

    #: The name in configs (`from_config`).
    config_name = ""
    _rules: ClassVar[dict[str, list[Any]]] = {}
    # (set by @dataclass on each subclass: makes `dataclasses.asdict` typed for them)
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        for name, rules in self._rules.items():
            object.__setattr__(self, name, check(name, getattr(self, name), rules))

    def get_config(self) -> dict[str, Any]:
        """Describe the schedule as a JSON-ready dict.

        Returns
        -------
        dict
            ``{"name": ..., field: value, ...}``; `from_config` rebuilds an equal
            schedule from it.
        """
        return {"name": self.config_name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Constant(BuiltinSchedule):
    """The same learning rate at every step.

    Parameters
    ----------
    learning_rate : float
        The initial (peak, for `CosineDecay`) learning rate, > 0.

    Raises
    ------
    ValueError
        If a field is out of its range (the message names it).
    """

    learning_rate: float
    config_name = "constant"
    _rules = {"learning_rate": _POSITIVE}

    def __call__(self, step: Array) -> float:
        return self.learning_rate


@dataclass(frozen=True)
class ExponentialDecay(BuiltinSchedule):
    """Exponential decay: ``learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase`` the power is floored, so the rate drops in whole steps.

    Parameters
    ----------
    learning_rate : float
        The initial (peak, for `CosineDecay`) learning rate, > 0.
    decay_steps : float
        The number of steps over which the rate decays, > 0.
    decay_rate : float
        The factor on the rate per ``decay_steps`` steps, > 0.
    staircase : bool, default False
        Decay in whole steps of ``decay_rate`` (the power floored).

    Raises
    ------
    ValueError
        If a field is out of its range (the message names it).
    """

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
    """Make a schedule that multiplies the learning rate by ``drop`` every ``every`` steps.

    Parameters
    ----------
    learning_rate : float
        The initial learning rate, > 0.
    drop : float
        The factor applied every ``every`` steps, > 0.
    every : int
        The number of steps between drops, > 0.

    Returns
    -------
    ExponentialDecay
        The schedule (a staircase exponential decay).

    Raises
    ------
    ValueError
        If an argument is out of its range (the message names it).

    Examples
    --------
    >>> import numpy as np
    >>> from mlp import schedules
    >>> lr = schedules.step_decay(0.1, drop=0.5, every=10)
    >>> [float(lr(np.asarray(step))) for step in (0, 9, 10, 25)]
    [0.1, 0.1, 0.05, 0.025]
    """
    return ExponentialDecay(learning_rate, every, drop, staircase=True)


def exponential_decay(learning_rate: float, decay_steps: float, decay_rate: float,
                      staircase: bool = False) -> ExponentialDecay:
    """Make an exponential decay, `ExponentialDecay`.

    Parameters
    ----------
    learning_rate : float
        The initial (peak, for `CosineDecay`) learning rate, > 0.
    decay_steps : float
        The number of steps over which the rate decays, > 0.
    decay_rate : float
        The factor on the rate per ``decay_steps`` steps, > 0.
    staircase : bool, default False
        Decay in whole steps of ``decay_rate`` (the power floored).

    Returns
    -------
    ExponentialDecay
        The schedule: call it with the step count.

    Raises
    ------
    ValueError
        If a field is out of its range (the message names it).
    """
    return ExponentialDecay(learning_rate, decay_steps, decay_rate, staircase)


@dataclass(frozen=True)
class CosineDecay(BuiltinSchedule):
    """Linear warm-up, then cosine decay.

    The rate rises linearly from 0 over ``warmup_steps``, then follows half a
    cosine down to ``final_fraction * learning_rate`` at
    ``warmup_steps + decay_steps``, and stays there.

    Parameters
    ----------
    learning_rate : float
        The initial (peak, for `CosineDecay`) learning rate, > 0.
    decay_steps : float
        The number of steps over which the rate decays, > 0.
    warmup_steps : int, default 0
        The steps of linear warm-up from 0 to ``learning_rate``, >= 0.
    final_fraction : float, default 0.0
        The final rate as a fraction of ``learning_rate``, >= 0.

    Raises
    ------
    ValueError
        If a field is out of its range (the message names it).
    """

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
    """Make a warm-up and cosine decay, `CosineDecay`.

    Parameters
    ----------
    learning_rate : float
        The initial (peak, for `CosineDecay`) learning rate, > 0.
    decay_steps : float
        The number of steps over which the rate decays, > 0.
    warmup_steps : int, default 0
        The steps of linear warm-up from 0 to ``learning_rate``, >= 0.
    final_fraction : float, default 0.0
        The final rate as a fraction of ``learning_rate``, >= 0.

    Returns
    -------
    CosineDecay
        The schedule: call it with the step count.

    Raises
    ------
    ValueError
        If a field is out of its range (the message names it).

    Examples
    --------
    >>> import numpy as np
    >>> from mlp import schedules
    >>> lr = schedules.cosine_decay(1e-3, decay_steps=1000, warmup_steps=100)
    >>> [round(float(lr(np.asarray(step))), 6) for step in (0, 99, 600, 1100, 5000)]
    [1e-05, 0.001, 0.0005, 0.0, 0.0]
    """
    return CosineDecay(learning_rate, decay_steps, warmup_steps, final_fraction)


@dataclass(frozen=True)
class InvScaling(BuiltinSchedule):
    """Inverse scaling, scikit-learn's ``invscaling``: ``learning_rate / (step + 1) ** power_t``.

    scikit-learn counts samples seen; this counts updates (steps).

    Parameters
    ----------
    learning_rate : float
        The initial (peak, for `CosineDecay`) learning rate, > 0.
    power_t : float, default 0.5
        The exponent, >= 0.

    Raises
    ------
    ValueError
        If a field is out of its range (the message names it).
    """

    learning_rate: float
    power_t: float = 0.5
    config_name = "invscaling"
    _rules = {"learning_rate": _POSITIVE, "power_t": _NON_NEGATIVE}

    def __call__(self, step: Array) -> Array:
        return self.learning_rate / (as_float_step(step) + 1.0) ** self.power_t


def invscaling(learning_rate: float, power_t: float = 0.5) -> InvScaling:
    """Make an inverse scaling, `InvScaling`.

    Parameters
    ----------
    learning_rate : float
        The initial (peak, for `CosineDecay`) learning rate, > 0.
    power_t : float, default 0.5
        The exponent, >= 0.

    Returns
    -------
    InvScaling
        The schedule: call it with the step count.

    Raises
    ------
    ValueError
        If a field is out of its range (the message names it).
    """
    return InvScaling(learning_rate, power_t)


#: Config name -> schedule class.
SCHEDULES: dict[str, type[BuiltinSchedule]] = {
    cls.config_name: cls for cls in (Constant, ExponentialDecay, CosineDecay, InvScaling)}


def from_config(config: dict[str, Any]) -> BuiltinSchedule:
    """Rebuild the schedule that ``config`` describes.

    Also reads the older form ``{"schedule": "CosineDecay", field: value, ...}``.

    Parameters
    ----------
    config : dict
        What a built-in schedule's ``get_config()`` returned.

    Returns
    -------
    BuiltinSchedule
        A schedule equal to the one described.

    Raises
    ------
    ValueError
        If ``config`` is not a dict, or names an unknown schedule or field.
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
