"""Parameter constraints, declared once and checked at the public edge.

Each public function or class states the rule for every parameter in one
mapping (scikit-learn's ``_parameter_constraints`` idea), and `validate` turns
any violation into one uniform message that names the argument::

    FIT_CONSTRAINTS = {
        "epochs": [Integer(1)],
        "batch_size": [None, Integer(1)],
        "shuffle": [Boolean()],
        "verbose": [Options(0, 1, 2)],
        "alpha": [Real(0)],
    }
    values = validate(FIT_CONSTRAINTS, {"epochs": epochs, ...})

Messages read ``"<name> must be <what>, got <value>"``, e.g.
``epochs must be an integer >= 1, got 0``. A value of the wrong type raises
`TypeError`; a value of the right type outside the allowed range raises
`ValueError`. NumPy scalars are accepted wherever a Python number is, and are
returned as Python numbers (a ``np.float64`` hyperparameter would otherwise
promote float32 arrays to float64). Booleans are accepted only where a boolean
is asked for (``np.True_`` included) and never count as numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

import numpy as np

#: Which bounds of a `Real` are included.
Closed: TypeAlias = Literal["left", "right", "both", "neither"]
#: One rule of a parameter's list: a `Constraint`, or None (which admits None).
Rule: TypeAlias = "Constraint | None"


class _Mismatch(Exception):
    """Raised by a constraint's `accept`: ``type_ok`` tells TypeError from ValueError."""

    def __init__(self, type_ok: bool) -> None:
        super().__init__()
        self.type_ok = type_ok


class Constraint:
    """A rule for one parameter: `accept` returns the value as stored, or raises `_Mismatch`."""

    #: What the value must be, completing "<name> must be ...".
    description = "valid"

    def accept(self, value: Any) -> Any:
        """``value`` as stored; raises `_Mismatch` if it does not satisfy the rule."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _bound_text(low: float | None, high: float | None, closed: str) -> str:
    lo_in = closed in ("left", "both")
    hi_in = closed in ("right", "both")
    if low is not None and high is not None:
        return f"in {'[' if lo_in else '('}{low:g}, {high:g}{']' if hi_in else ')'}"
    if low is not None:
        return f"{'>=' if lo_in else '>'} {low:g}"
    if high is not None:
        return f"{'<=' if hi_in else '<'} {high:g}"
    return ""


def _in_bounds(value: Any, low: float | None, high: float | None, closed: str) -> bool:
    lo_in = closed in ("left", "both")
    hi_in = closed in ("right", "both")
    if low is not None and not (value >= low if lo_in else value > low):
        return False
    return high is None or (value <= high if hi_in else value < high)


class Integer(Constraint):
    """An integer (Python or NumPy, not bool) in ``[low, high]``; stored as ``int``."""

    def __init__(self, low: int | None = None, high: int | None = None) -> None:
        self.low, self.high = low, high
        bounds = _bound_text(low, high, "both")
        self.description = "an integer" + (f" {bounds}" if bounds else "")

    def accept(self, value: Any) -> Any:
        if _is_bool(value) or not isinstance(value, numbers.Integral):
            raise _Mismatch(type_ok=False)
        if not _in_bounds(value, self.low, self.high, "both"):
            raise _Mismatch(type_ok=True)
        return int(value)


class Real(Constraint):
    """A finite real number (int or float, Python or NumPy, not bool) within the bounds;
    stored as ``float``.

    ``closed`` says which bounds are included: ``"left"`` (default), ``"right"``,
    ``"both"`` or ``"neither"``. ``finite=False`` also admits ``inf`` (never NaN).
    """

    def __init__(self, low: float | None = None, high: float | None = None,
                 closed: Closed = "left", *, finite: bool = True) -> None:
        self.low, self.high, self.closed, self.finite = low, high, closed, finite
        bounds = _bound_text(low, high, closed)
        kind = "a finite number" if finite else "a number"
        self.description = kind + (f" {bounds}" if bounds else "")

    def accept(self, value: Any) -> Any:
        if _is_bool(value) or not isinstance(value, numbers.Real):
            raise _Mismatch(type_ok=False)
        value = float(value)
        if math.isnan(value) or (self.finite and math.isinf(value)):
            raise _Mismatch(type_ok=True)
        if not _in_bounds(value, self.low, self.high, self.closed):
            raise _Mismatch(type_ok=True)
        return value


class Boolean(Constraint):
    """``True`` or ``False`` (``np.bool_`` too); stored as ``bool``. Nothing else, so that
    ``early_stopping="no"`` is refused rather than read as true."""

    description = "True or False"

    def accept(self, value: Any) -> Any:
        if not _is_bool(value):
            raise _Mismatch(type_ok=False)
        return bool(value)


class Options(Constraint):
    """One of a fixed set of values (strings, or integers such as ``verbose``)."""

    def __init__(self, *options: Any) -> None:
        self.options = options
        self.description = "one of " + ", ".join(repr(o) for o in options)

    def accept(self, value: Any) -> Any:
        if _is_bool(value):
            raise _Mismatch(type_ok=False)
        if isinstance(value, np.generic):
            value = value.item()
        try:
            found = value in self.options
        except TypeError:  # unhashable / incomparable
            found = False
        if not found:
            same_type = any(type(value) is type(o) for o in self.options)
            raise _Mismatch(type_ok=same_type)
        return value


class Callable(Constraint):
    """Any callable (a schedule, a user's function); stored as it is."""

    description = "a callable"

    def accept(self, value: Any) -> Any:
        if not callable(value):
            raise _Mismatch(type_ok=False)
        return value


class InstanceOf(Constraint):
    """An instance of ``cls`` (or a tuple of classes); stored as it is."""

    def __init__(self, cls: type | tuple[type, ...], description: str | None = None) -> None:
        self.cls = cls
        names = cls if isinstance(cls, tuple) else (cls,)
        self.description = description or "a " + " or ".join(c.__name__ for c in names)

    def accept(self, value: Any) -> Any:
        if not isinstance(value, self.cls):
            raise _Mismatch(type_ok=False)
        return value


class _NoneConstraint(Constraint):
    description = "None"

    def accept(self, value: Any) -> Any:
        if value is not None:
            raise _Mismatch(type_ok=False)
        return None


def _as_constraint(rule: Rule) -> Constraint:
    if rule is None:
        return _NoneConstraint()
    if isinstance(rule, Constraint):
        return rule
    raise TypeError(f"not a parameter constraint: {rule!r}")


def _describe(rules: list[Constraint]) -> str:
    texts = [r.description for r in rules]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


def _shown(value: Any) -> str:
    if isinstance(value, (str, numbers.Number, type(None), np.generic)):
        return repr(value.item() if isinstance(value, np.generic) else value)
    return f"{type(value).__name__} {value!r}"[:200]


def check(name: str, value: Any, rules: Iterable[Rule]) -> Any:
    """``value`` as stored if it satisfies any of ``rules``; else a TypeError or ValueError.

    ``rules`` is a list of `Constraint` objects and ``None`` (which admits None).
    The error is a ValueError when some rule accepted the value's type but not
    its value (``epochs=0``), a TypeError otherwise (``epochs="5"``).
    """
    constraints = [_as_constraint(r) for r in rules]
    type_ok = False
    for rule in constraints:
        try:
            return rule.accept(value)
        except _Mismatch as miss:
            type_ok = type_ok or miss.type_ok
    error = ValueError if type_ok else TypeError
    raise error(f"{name} must be {_describe(constraints)}, got {_shown(value)}")


def validate(constraints: Mapping[str, Any],
             values: Mapping[str, Any]) -> dict[str, Any]:
    """Check every entry of ``values`` against its rules in ``constraints``.

    Returns a new dict of the values as stored (NumPy scalars as Python numbers).
    A name without an entry in ``constraints`` is a programming error (KeyError),
    so that no parameter goes unchecked.
    """
    return {name: check(name, value, constraints[name]) for name, value in values.items()}


def check_in_dtype(name: str, value: float, dtype_name: str, *, fraction: bool = False,
                   hint: str = "") -> None:
    """Refuse a number (already checked in float64) that the model's dtype cannot hold as
    the number it is: a nonzero value that would become 0 or a subnormal number (below
    the dtype's smallest normal number, where it loses precision and some devices flush
    it to 0), a value beyond its largest, and, with ``fraction``, a value below 1 that
    rounds to 1 (a decay rate of 1 divides by ``1 - rate = 0``).

    The message names ``name``, the value and the dtype's limit, and ends with
    ``hint`` (default: a value within the limit, or ``dtype='float64'``).
    """
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return
    info = np.finfo(dtype_name)
    wider = "" if dtype_name == "float64" else ", or build the model with dtype='float64'"
    if abs(value) > float(info.max):
        raise ValueError(f"{name}={value!r} is too large for the model's dtype {dtype_name} "
                         f"(largest {float(info.max):.4g}): it would become inf"
                         + (hint or f"; use a smaller value{wider}"))
    if abs(value) < float(info.smallest_normal):
        cast = float(np.asarray(value, dtype=dtype_name))
        became = "0" if cast == 0 else f"the subnormal number {cast:.4g}, which loses precision"
        raise ValueError(f"{name}={value!r} is too small for the model's dtype {dtype_name}: "
                         f"it would become {became} (the smallest normal {dtype_name} number "
                         f"is {float(info.smallest_normal):.4g})"
                         + (hint or f"; use a larger value{wider}"))
    if fraction and value < 1 and float(np.asarray(value, dtype=dtype_name)) == 1.0:
        below = float(np.nextafter(np.asarray(1.0, dtype=dtype_name), 0))
        raise ValueError(f"{name}={value!r} rounds to 1 in the model's dtype {dtype_name}, "
                         f"which it must stay below; use a value <= {below!r}{wider}")
