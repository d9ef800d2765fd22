"""`FitSettings`: every argument of `MLP.fit` but the data, in one checked object.

The fields below are the one place fit's keyword arguments are written:
`MLP.fit`'s signature (what `help` and `inspect.signature` show) is built from
them (`fit_signature`), and the training loop reads the checked object.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._typing import Array, Optimizer
from .callbacks import Callback, EarlyStopping, as_callbacks
from .optimizers import get_optimizer
from .params import Boolean, InstanceOf, Integer, Options, Real, Rule, validate
from .schedules import Schedule, check_learning_rate
from .weights import ClassWeight

#: Samples per step when ``batch_size`` is not given (Keras' default).
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True, kw_only=True, eq=False)
class FitSettings:
    """The settings of one `MLP.fit` call, checked when built (see `MLP.fit` for each).

    Building one refuses what `MLP.fit` refuses before it looks at the model or
    the data, with the same messages (naming the argument): each value against
    `CONSTRAINTS`, ``validation_data`` (a pair) with ``validation_split`` (not
    both), the optimizer and its learning rate, the callbacks.

    Each field is the argument of `MLP.fit` of its name, as checked and stored; these
    differ from what was passed:

    Attributes
    ----------
    learning_rate : float, schedule or None
        Checked (`mlp.schedules.check_learning_rate`); NumPy scalars as floats.
    optimizer : optimizer or None
        The optimizer object (a name is turned into one); None: the model's.
    callbacks : list of Callback
        Functions ``fn(epoch, logs)`` wrapped as `mlp.callbacks.FunctionCallback`.
    sample_weight, class_weight
        As passed: the fit checks them against the data (`mlp.weights.row_weights`).
    stopper : EarlyStopping or None
        The `EarlyStopping` callback of ``early_stopping=True`` (None otherwise).

    Examples
    --------
    >>> from mlp.fit_settings import FitSettings
    >>> FitSettings(epochs=3, optimizer="sgd").optimizer
    SGD(learning_rate=0.01, momentum=0.0, nesterov=False)
    """

    epochs: int
    learning_rate: float | Schedule | None = None
    batch_size: int | None = DEFAULT_BATCH_SIZE
    shuffle: bool = True
    optimizer: str | Optimizer | None = None
    reset_optimizer: bool = False
    alpha: float = 0.0
    clip_norm: float | None = None
    validation_data: tuple[Array, Array] | list[Array] | None = None
    validation_split: float | None = None
    early_stopping: bool = False
    patience: int = 10
    min_delta: float = 0.0
    callbacks: list[Callback] | None = None
    verbose: int = 0
    sample_weight: Array | None = None
    class_weight: ClassWeight = None
    stopper: EarlyStopping | None = field(default=None, init=False, repr=False)

    #: The rule of every setting checked on its own (the optimizer, the learning rate
    #: and the callbacks have their own checks; the rows' weights need the data).
    CONSTRAINTS: ClassVar[dict[str, list[Rule]]] = {
        "epochs": [Integer(1)],
        "batch_size": [None, Integer(1)],
        "reset_optimizer": [Boolean()],
        "shuffle": [Boolean()],
        "alpha": [Real(0)],
        "clip_norm": [None, Real(0, closed="neither")],
        "validation_data": [None, InstanceOf((tuple, list), "a pair (x_val, y_val)")],
        "validation_split": [None, Real(0, 1, closed="neither")],
        "early_stopping": [Boolean()],
        "patience": [Integer(1)],
        "min_delta": [Real(0)],
        "verbose": [Options(0, 1, 2)],
    }

    def __post_init__(self) -> None:
        rules = self.CONSTRAINTS
        checked = validate(rules, {f.name: getattr(self, f.name) for f in _arguments()
                                   if f.name in rules})
        if checked["validation_data"] is not None and len(checked["validation_data"]) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val), got "
                             f"{len(checked['validation_data'])} items")
        if checked["validation_data"] is not None and checked["validation_split"] is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        checked["optimizer"], checked["learning_rate"] = _optimizer(self.optimizer,
                                                                    self.learning_rate)
        checked["callbacks"] = as_callbacks(self.callbacks)
        if checked["early_stopping"]:
            checked["stopper"] = EarlyStopping(patience=checked["patience"],
                                               min_delta=checked["min_delta"])
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_call(cls, arguments: dict[str, Any], where: str = "MLP.fit") -> FitSettings:
        """The settings of a call of ``where`` with the keyword ``arguments``; an unknown
        or missing argument is refused as Python refuses it in a call of ``where``.

        Parameters
        ----------
        arguments : dict
            The keyword arguments of the call (``epochs``, ``batch_size``, ...).
        where : str
            The function's name in the messages (default ``MLP.fit``).

        Raises
        ------
        TypeError
            An argument that is not a setting, or ``epochs`` missing.
        """
        names = {f.name: f for f in _arguments()}
        unknown = [k for k in arguments if k not in names]
        if unknown:
            raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")
        missing = [name for name, f in names.items() if _required(f) and name not in arguments]
        if missing:
            listed = " and ".join(", ".join(repr(m) for m in missing).rsplit(", ", 1))
            raise TypeError(f"{where}() missing {len(missing)} required keyword-only "
                            f"argument{'s' if len(missing) > 1 else ''}: {listed}")
        return cls(**arguments)


def _arguments() -> list[dataclasses.Field[Any]]:
    """The fields that are `MLP.fit`'s keyword arguments, in its order."""
    return [f for f in dataclasses.fields(FitSettings) if f.init]


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def fit_signature(*leading: str) -> inspect.Signature:
    """The signature of a ``fit`` taking the positional-or-keyword ``leading`` arguments
    (e.g. ``"self", "x", "y"``) and then every setting as a keyword-only argument, with
    its default (``epochs`` has none)."""
    params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
              for name in leading]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                 default=inspect.Parameter.empty if _required(f) else f.default)
               for f in _arguments()]
    return inspect.Signature(params)


def _optimizer(optimizer: str | Optimizer | None, learning_rate: float | Schedule | None
               ) -> tuple[Optimizer | None, float | Schedule | None]:
    """``(optimizer object or None, learning rate or None)``, both checked."""
    if learning_rate is not None:
        if isinstance(learning_rate, np.floating | np.integer):  # e.g. np.float32(0.01)
            learning_rate = float(learning_rate)
        learning_rate = check_learning_rate(learning_rate)
        if optimizer is not None and not isinstance(optimizer, str):
            raise ValueError("learning_rate was given twice: pass it to the optimizer object "
                             "or name the optimizer as a string, not both")
    if optimizer is None:
        return None, learning_rate
    return get_optimizer(optimizer, learning_rate), learning_rate
