"""Optimizers as composable gradient transformations (the optax design).

A *transformation* is a pair of pure functions::

    state = t.init(params)
    updates, state = t.update(grads, state, params)   # params: None where not needed
    params = apply_updates(params, updates)            # params + updates

``params``, ``grads`` and ``updates`` are lists of ``(W, b)``; ``state`` is
plain data (NamedTuples of arrays, step counts as integer 0-d arrays), so JAX
compiles ``update`` inside the training step. No array is modified in place.
Small pieces compose with `chain`; the named optimizers are such chains::

    from mlp.optimizers import chain, clip_by_global_norm, trace, scale_by_learning_rate

    opt = chain(clip_by_global_norm(1.0),        # rescale to a global norm <= 1
                trace(0.9, nesterov=True),       # momentum
                scale_by_learning_rate(0.01))    # times -0.01 (a float or a schedule)
    model.fit(x, y, epochs=10, optimizer=opt)

Building blocks: `scale_by_adam`, `scale_by_rms`, `trace`, `add_decayed_weights`,
`clip_by_global_norm`, `scale_by_learning_rate`, `chain`. Named optimizers
(``fit(optimizer="adam")`` or ``Adam(...)``): `sgd` / `SGD`, `adam` / `Adam`,
`adamw` / `AdamW`, `rmsprop` / `RMSprop`.

A transformation of your own is two functions wrapped in `GradientTransformation`::

    def init(params):
        return None                                   # no state
    def update(grads, state, params=None):
        return tree_map(lambda g: -0.1 * g, grads), state
    model.fit(x, y, epochs=10, optimizer=GradientTransformation(init, update))

(`mlp.tree.tree_map` maps a function over every array.) Declare
``elementwise=True`` when every output element depends only on the same element
of the inputs: then NumPy and PyTorch update all layers as one flat array.

Every built-in transformation is hashable (compiled steps are cached per
optimizer), picklable, and self-describing: ``get_config()`` gives a
JSON-ready dict and `from_config` rebuilds an equal object.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast

from array_api_compat import array_namespace, device

from . import schedules as _schedules
from ._typing import Array, Grads, Params
from .engine.kernels import (
    Block,
    Composite,
    Context,
    Unfit,
    count_namespace,
    mirror,
    mirror_all,
    unpack_state,
)
from .params import Boolean, Real, Rule, check, check_in_dtype
from .schedules import BuiltinSchedule, check_learning_rate
from .tree import Tree, is_namedtuple, structure_problem, tree_leaves, tree_map

if TYPE_CHECKING:
    from ._typing import Optimizer
    from .backends import Backend
    from .schedules import Schedule

__all__ = [
    "GradientTransformation",
    "Chain",
    "chain",
    "apply_updates",
    "global_norm",
    "from_config",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "sgd",
    "adam",
    "adamw",
    "rmsprop",
    "ScaleByAdam",
    "ScaleByRms",
    "Trace",
    "AddDecayedWeights",
    "ClipByGlobalNorm",
    "ScaleByLearningRate",
    "scale_by_adam",
    "scale_by_rms",
    "trace",
    "add_decayed_weights",
    "clip_by_global_norm",
    "scale_by_learning_rate",
    "EmptyState",
    "ScaleByAdamState",
    "ScaleByRmsState",
    "TraceState",
    "ScaleByLearningRateState",
]

_FRACTION: list[Rule] = [Real(0, 1, closed="left")]
_POSITIVE: list[Rule] = [Real(0, closed="neither")]
_NON_NEGATIVE: list[Rule] = [Real(0)]


# ---------------------------------------------------------------- states
class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


class ScaleByAdamState(NamedTuple):
    """The state of `ScaleByAdam`.

    Parameters
    ----------
    count : 0-d array of int
        The number of updates made so far.
    mu : list of (W, b)
        The first moments (running mean of the gradients), shaped as the
        parameters.
    nu : list of (W, b)
        The second moments (running mean of the squared gradients), shaped as
        the parameters.
    """
    count: Any  # int 0-d array: updates made so far
    mu: Any     # first moments, as params
    nu: Any     # second moments, as params


class ScaleByRmsState(NamedTuple):
    """The state of `ScaleByRms`.

    Parameters
    ----------
    nu : list of (W, b)
        The running mean of the squared gradients, shaped as the parameters.
    """
    nu: Any  # running mean of squared gradients, as params


class TraceState(NamedTuple):
    """The state of `Trace`.

    Parameters
    ----------
    trace : list of (W, b)
        The velocity, shaped as the parameters.
    """
    trace: Any  # the velocity, as params


class ScaleByLearningRateState(NamedTuple):
    """The state of `ScaleByLearningRate`.

    Parameters
    ----------
    count : 0-d array of int
        The schedule's step: the number of updates made so far.
    learning_rate_scale : 0-d array of float
        A factor on the learning rate (the parameters' dtype), 1.0 at init;
        `mlp.callbacks.ReduceLROnPlateau` lowers it.
    """
    count: Any                # int 0-d array: the schedule's step
    learning_rate_scale: Any  # float 0-d array (params' dtype), 1.0 at init


#: State class name -> class (for files that record the state's structure).
STATES = {cls.__name__: cls for cls in (EmptyState, ScaleByAdamState, ScaleByRmsState,
                                         TraceState, ScaleByLearningRateState)}


# ---------------------------------------------------------------- helpers
def apply_updates(params: Tree, updates: Tree) -> Tree:
    """Add the updates to the parameters, array by array.

    Parameters
    ----------
    params : list of (W, b)
        The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
        of shape ``(fan_out,)`` (any nesting of lists and tuples of arrays).
    updates : list of (dW, db)
        The updates, shaped as ``params``.

    Returns
    -------
    list of (W, b)
        ``params + updates``, new arrays shaped as ``params``.
    """
    return tree_map(lambda p, u: p + u, params, updates)


def _first_leaf(tree: Tree) -> Array:
    return tree_leaves(tree)[0]


def _zeros_like(params: Tree) -> Tree:
    xp = array_namespace(_first_leaf(params))
    return tree_map(xp.zeros_like, params)


def _zero_count(params: Tree) -> Array:
    leaf = _first_leaf(params)
    xp = array_namespace(leaf)
    return xp.asarray(0, device=device(leaf))  # the backend's default integer dtype


def global_norm(tree: Tree) -> Array:
    """Compute the global norm ``sqrt(sum of squares)`` of every entry, robust to overflow.

    The entries are divided by the largest magnitude before squaring, so float32
    gradients of 1e20 give their true norm rather than ``inf``.

    Parameters
    ----------
    tree : list of (W, b)
        Arrays in any nesting of lists and tuples (e.g. the gradients).

    Returns
    -------
    0-d array
        The norm, in the arrays' dtype.
    """
    largest, scaled = _scaled_norm(tree)
    return largest * scaled


def _scaled_norm(tree: Tree) -> tuple[Array, Array]:
    """``(m, r)`` with ``m`` the largest magnitude and ``r = norm / m`` (``r = 0`` for zeros)."""
    leaves = tree_leaves(tree)
    xp = array_namespace(leaves[0])
    largest: Array = None
    for a in leaves:
        m = xp.max(xp.abs(a))
        largest = m if largest is None else xp.maximum(largest, m)
    safe = xp.where(largest > 0, largest, xp.ones_like(largest))
    total = 0.0
    for a in leaves:
        s = a / safe
        total = total + xp.sum(s * s)
    return largest, xp.sqrt(total)


class _Transformation:
    """Shared by the built-in transformations (frozen dataclasses): checked fields
    and `get_config`."""

    config_name: ClassVar[str] = ""
    elementwise: ClassVar[bool] = True
    #: The checks of each hyperparameter (`mlp.params.check`'s rules), by field name.
    rules: ClassVar[dict[str, list[Rule]]] = {}
    # (set by @dataclass on each subclass: makes `dataclasses.fields` typed for them)
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        for name, rules in self.rules.items():
            object.__setattr__(self, name, check(name, getattr(self, name), rules))

    def get_config(self) -> dict[str, Any]:
        """Describe the transformation as a JSON-ready dict.

        Returns
        -------
        dict
            ``{"name": ..., field: value, ...}``; `from_config` rebuilds an equal
            transformation from it.

        Raises
        ------
        ValueError
            If a field (e.g. a learning-rate schedule of your own) cannot be
            described.
        """
        out: dict[str, Any] = {"name": self.config_name}
        for f in dataclasses.fields(self):
            if f.init:
                out[f.name] = _value_config(f.name, getattr(self, f.name))
        return out


def _value_config(name: str, value: Any) -> Any:
    if callable(value):
        if not hasattr(value, "get_config"):
            raise ValueError(f"cannot save {name}={value!r}: a function of your own has no "
                             "config; use a schedule of mlp.schedules")
        return value.get_config()
    return value


# ---------------------------------------------------------------- building blocks
class _ScaleByAdamInplace(Block):
    """`ScaleByAdam` in place (`mlp.engine.kernels.Block`), operation for operation."""

    n_vectors = 2

    def load(self, state: Any, ctx: Context) -> None:
        count, self.mu, self.nu = unpack_state(state, ScaleByAdamState, ctx, ("mu", "nu"))
        self.scalars = (count,)

    def update(self, ctx: Context, u: Array, p: Array) -> None:
        ops = ctx.ops
        b1, b2, eps, mu, nu, t = self.t.beta1, self.t.beta2, self.t.eps, self.mu, self.nu, ctx.tmp
        (count,) = self.scalars
        ops.multiply(mu, b1, out=mu)  # mu = b1 * mu + (1 - b1) * g
        ops.multiply(u, 1 - b1, out=t)
        ops.add(mu, t, out=mu)
        ops.multiply(u, u, out=t)  # nu = b2 * nu + (1 - b2) * (g * g)
        ops.multiply(t, 1 - b2, out=t)
        ops.multiply(nu, b2, out=nu)
        ops.add(nu, t, out=nu)
        xp = count_namespace(count)
        count = count + 1
        step = xp.astype(count, u.dtype)
        c = xp.sqrt(1.0 - b2**step) / (1.0 - b1**step)
        ops.sqrt(nu, out=t)  # c * (mu / (sqrt(nu) + eps))
        ops.add(t, eps, out=t)
        ops.divide(mu, t, out=t)
        ops.multiply(t, c, out=u)
        self.scalars = (count,)

    def state(self, ctx: Context) -> ScaleByAdamState:
        return ScaleByAdamState(self.scalars[0], ctx.layout.views(self.mu),
                                ctx.layout.views(self.nu))


@dataclass(frozen=True)
class ScaleByAdam(_Transformation):
    """Adam's direction ``c_t * mu / (sqrt(nu) + eps)``.

    ``mu`` and ``nu`` are the running means of the gradients and of their squares
    (Kingma & Ba 2015), the bias corrections folded into
    ``c_t = sqrt(1 - beta2**t) / (1 - beta1**t)`` (their Section 2).

    Parameters
    ----------
    beta1 : float, default 0.9
        Decay of the first moment's running mean, in [0, 1).
    beta2 : float, default 0.999
        Decay of the second moment's running mean, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    config_name: ClassVar[str] = "scale_by_adam"
    inplace: ClassVar[type] = _ScaleByAdamInplace
    rules: ClassVar[dict[str, list[Rule]]] = {"beta1": _FRACTION, "beta2": _FRACTION,
                                              "eps": _POSITIVE}

    def init(self, params: Params) -> ScaleByAdamState:
        """Make the state: a zero step count and zero moments.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        ScaleByAdamState
            The step count (0) and the first and second moments (zeros shaped as
            ``params``).
        """
        return ScaleByAdamState(_zero_count(params), _zeros_like(params), _zeros_like(params))

    def update(self, grads: Grads, state: Any, params: Params | None = None
               ) -> tuple[Grads, Any]:
        """Turn the gradients into Adam's direction, updating the moments.

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : ScaleByAdamState
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            Not used (accepted for the common signature).

        Returns
        -------
        updates : list of (dW, db)
            Adam's direction, shaped as ``grads``.
        state : ScaleByAdamState
            The new state.
        """
        count, mu, nu = state
        b1, b2, eps = self.beta1, self.beta2, self.eps
        xp = array_namespace(count)
        mu = tree_map(lambda g, m: b1 * m + (1 - b1) * g, grads, mu)
        nu = tree_map(lambda g, v: b2 * v + (1 - b2) * (g * g), grads, nu)
        count = count + 1
        t = xp.astype(count, _first_leaf(grads).dtype)
        c = xp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        updates = tree_map(lambda m, v: c * (m / (xp.sqrt(v) + eps)), mu, nu)
        return updates, ScaleByAdamState(count, mu, nu)


class _ScaleByRmsInplace(Block):
    """`ScaleByRms` in place (`mlp.engine.kernels.Block`), operation for operation."""

    n_vectors = 1

    def load(self, state: Any, ctx: Context) -> None:
        (self.nu,) = unpack_state(state, ScaleByRmsState, ctx, ("nu",))

    def update(self, ctx: Context, u: Array, p: Array) -> None:
        ops = ctx.ops
        d, nu, t = self.t.decay, self.nu, ctx.tmp
        ops.multiply(nu, d, out=nu)  # nu = d * nu + (1 - d) * (g * g)
        ops.multiply(u, u, out=t)
        ops.multiply(t, 1 - d, out=t)
        ops.add(nu, t, out=nu)
        ops.sqrt(nu, out=t)  # g / (sqrt(nu) + eps)
        ops.add(t, self.t.eps, out=t)
        ops.divide(u, t, out=u)

    def state(self, ctx: Context) -> ScaleByRmsState:
        return ScaleByRmsState(ctx.layout.views(self.nu))


@dataclass(frozen=True)
class ScaleByRms(_Transformation):
    """RMSprop's direction ``g / (sqrt(nu) + eps)``.

    ``nu = decay * nu + (1 - decay) * g**2`` is the running mean of the squared
    gradients.

    Parameters
    ----------
    decay : float, default 0.9
        Decay of the running mean of squared gradients, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.
    """

    decay: float = 0.9
    eps: float = 1e-8
    config_name: ClassVar[str] = "scale_by_rms"
    inplace: ClassVar[type] = _ScaleByRmsInplace
    rules: ClassVar[dict[str, list[Rule]]] = {"decay": _FRACTION, "eps": _POSITIVE}

    def init(self, params: Params) -> ScaleByRmsState:
        """Make the state: a zero running mean of squared gradients.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        ScaleByRmsState
            Zeros shaped as ``params``.
        """
        return ScaleByRmsState(_zeros_like(params))

    def update(self, grads: Grads, state: Any, params: Params | None = None
               ) -> tuple[Grads, Any]:
        """Divide the gradients by the root of their running mean square.

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : ScaleByRmsState
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            Not used (accepted for the common signature).

        Returns
        -------
        updates : list of (dW, db)
            The scaled gradients, shaped as ``grads``.
        state : ScaleByRmsState
            The new state.
        """
        d, eps = self.decay, self.eps
        nu = tree_map(lambda g, v: d * v + (1 - d) * (g * g), grads, state[0])
        xp = array_namespace(_first_leaf(grads))
        return tree_map(lambda g, v: g / (xp.sqrt(v) + eps), grads, nu), ScaleByRmsState(nu)


class _TraceInplace(Block):
    """`Trace` in place (`mlp.engine.kernels.Block`), operation for operation."""

    n_vectors = 1

    def load(self, state: Any, ctx: Context) -> None:
        (self.v,) = unpack_state(state, TraceState, ctx, ("trace",))

    def update(self, ctx: Context, u: Array, p: Array) -> None:
        ops = ctx.ops
        d, v = self.t.decay, self.v
        ops.multiply(v, d, out=v)  # v = g + d * v
        ops.add(u, v, out=v)
        if self.t.nesterov:  # g + d * v
            ops.multiply(v, d, out=ctx.tmp)
            ops.add(u, ctx.tmp, out=u)
        else:  # v
            ops.copy(u, v)

    def state(self, ctx: Context) -> TraceState:
        return TraceState(ctx.layout.views(self.v))


@dataclass(frozen=True)
class Trace(_Transformation):
    """Momentum: the velocity ``v = g + decay * v`` is the update.

    With ``nesterov`` the update is ``g + decay * v``: PyTorch's and optax's
    convention.

    Parameters
    ----------
    decay : float, default 0.9
        The momentum: the factor on the previous velocity, in [0, 1).
    nesterov : bool, default False
        Use Nesterov momentum: the update is ``g + decay * v``.
    """

    decay: float = 0.9
    nesterov: bool = False
    config_name: ClassVar[str] = "trace"
    inplace: ClassVar[type] = _TraceInplace
    rules: ClassVar[dict[str, list[Rule]]] = {"decay": _FRACTION, "nesterov": [Boolean()]}

    def init(self, params: Params) -> TraceState:
        """Make the state: a zero velocity.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        TraceState
            Zeros shaped as ``params``.
        """
        return TraceState(_zeros_like(params))

    def update(self, grads: Grads, state: Any, params: Params | None = None
               ) -> tuple[Grads, Any]:
        """Add the gradients to the velocity and return it (momentum).

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : TraceState
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            Not used (accepted for the common signature).

        Returns
        -------
        updates : list of (dW, db)
            The velocity (with ``nesterov``: ``g + decay * v``), shaped as ``grads``.
        state : TraceState
            The new state.
        """
        d = self.decay
        velocity = tree_map(lambda g, v: g + d * v, grads, state[0])
        updates = tree_map(lambda g, v: g + d * v, grads, velocity) if self.nesterov else velocity
        return updates, TraceState(velocity)


class _StatelessInplace(Block):
    """A block whose state is `EmptyState`."""

    def load(self, state: Any, ctx: Context) -> None:
        unpack_state(state, EmptyState, ctx)

    def state(self, ctx: Context) -> EmptyState:
        return EmptyState()


class _AddDecayedWeightsInplace(_StatelessInplace):
    """`AddDecayedWeights` in place (`mlp.engine.kernels.Block`)."""

    def update(self, ctx: Context, u: Array, p: Array) -> None:
        ops = ctx.ops
        ops.multiply(p, self.t.weight_decay, out=ctx.tmp)  # g + wd * p
        ops.add(u, ctx.tmp, out=u)


@dataclass(frozen=True)
class AddDecayedWeights(_Transformation):
    """Weight decay: the update is ``g + weight_decay * p``.

    Applied to weights and biases. Placed after an adaptive scaling it is
    decoupled weight decay (AdamW, Loshchilov & Hutter 2019).

    Parameters
    ----------
    weight_decay : float, default 0.01
        The factor on the parameters, >= 0.
    """

    weight_decay: float = 0.01
    config_name: ClassVar[str] = "add_decayed_weights"
    inplace: ClassVar[type] = _AddDecayedWeightsInplace
    rules: ClassVar[dict[str, list[Rule]]] = {"weight_decay": _NON_NEGATIVE}

    def init(self, params: Params) -> EmptyState:
        """Make the state: none.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        EmptyState
            An empty state.
        """
        return EmptyState()

    def update(self, grads: Grads, state: Any, params: Params | None = None
               ) -> tuple[Grads, Any]:
        """Add ``weight_decay * params`` to the gradients.

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : EmptyState
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            The parameters (required).

        Returns
        -------
        updates : list of (dW, db)
            ``grads + weight_decay * params``, shaped as ``grads``.
        state : EmptyState
            The new state.

        Raises
        ------
        ValueError
            If ``params`` is None.
        """
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters: call "
                             "update(grads, state, params)")
        wd = self.weight_decay
        return tree_map(lambda g, p: g + wd * p, grads, params), state


class _ClipByGlobalNormInplace(_StatelessInplace):
    """`ClipByGlobalNorm.update` itself, on the arrays the pure path clips (its global norm
    is summed per array: per layer, or over the two packed arrays), copied back."""

    def update(self, ctx: Context, u: Array, p: Array) -> None:
        ops = ctx.ops
        grads = ctx.layout.packed(u) if ctx.packed else ctx.layout.views(u)
        clipped, _ = self.t.update(grads, EmptyState())
        for dst, src in zip(tree_leaves(grads), tree_leaves(clipped)):
            ops.copy(dst, src)


@dataclass(frozen=True)
class ClipByGlobalNorm(_Transformation):
    """Rescale all gradients together so that their global norm is at most ``max_norm``.

    The norm is computed after dividing by the largest magnitude, so float32
    gradients whose squared norm overflows are still clipped, not zeroed. Not
    elementwise, but it needs only the global norm, which is the same on the
    per-layer and the flat packed arrays.

    Parameters
    ----------
    max_norm : float, default 1.0
        The largest global norm of the updates, > 0.
    """

    max_norm: float = 1.0
    config_name: ClassVar[str] = "clip_by_global_norm"
    inplace: ClassVar[type] = _ClipByGlobalNormInplace
    elementwise: ClassVar[bool] = False
    rules: ClassVar[dict[str, list[Rule]]] = {"max_norm": _POSITIVE}

    def init(self, params: Params) -> EmptyState:
        """Make the state: none.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        EmptyState
            An empty state.
        """
        return EmptyState()

    def update(self, grads: Grads, state: Any, params: Params | None = None
               ) -> tuple[Grads, Any]:
        """Rescale the gradients together to a global norm of at most ``max_norm``.

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : EmptyState
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            Not used (accepted for the common signature).

        Returns
        -------
        updates : list of (dW, db)
            The rescaled gradients, shaped as ``grads``.
        state : EmptyState
            The new state.
        """
        largest, ratio = _scaled_norm(grads)  # norm = largest * ratio, never squared whole
        xp = array_namespace(largest)
        # scale = max_norm / norm where norm > max_norm, else 1
        clip = largest * ratio > self.max_norm
        safe_largest = xp.where(clip, largest, xp.ones_like(largest))
        safe_ratio = xp.where(clip, ratio, xp.ones_like(ratio))
        scale = xp.where(clip, (self.max_norm / safe_ratio) / safe_largest,
                         xp.ones_like(largest))
        return tree_map(lambda g: g * scale, grads), state


class _ScaleByLearningRateInplace(Block):
    """`ScaleByLearningRate` in place (`mlp.engine.kernels.Block`): the same factor."""

    def load(self, state: Any, ctx: Context) -> None:
        count, scale = unpack_state(state, ScaleByLearningRateState, ctx)
        if not (ctx.ops.is_floats([scale], ctx.dtype) and scale.shape == ()):
            raise Unfit  # another dtype would promote the pure path's weights
        self.scalars = (count, scale)

    def update(self, ctx: Context, u: Array, p: Array) -> None:
        count, scale = self.scalars
        factor = (-self.t.rate(count, scale)) * scale
        ctx.ops.multiply(u, factor, out=u)  # -(lr * scale) * g
        self.scalars = (count + 1, scale)

    def state(self, ctx: Context) -> ScaleByLearningRateState:
        return ScaleByLearningRateState(*self.scalars)


@dataclass(frozen=True)
class ScaleByLearningRate(_Transformation):
    """The descent step ``-learning_rate(step) * learning_rate_scale * g``.

    The state holds the step count and a learning-rate scale (1.0 at init),
    which `mlp.callbacks.ReduceLROnPlateau` changes without a recompilation.

    Parameters
    ----------
    learning_rate : float or callable, default 0.01
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    """

    learning_rate: Any = 0.01
    config_name: ClassVar[str] = "scale_by_learning_rate"
    inplace: ClassVar[type] = _ScaleByLearningRateInplace

    def __post_init__(self) -> None:
        object.__setattr__(self, "learning_rate", check_learning_rate(self.learning_rate))

    def init(self, params: Params) -> ScaleByLearningRateState:
        """Make the state: a zero step count and a learning-rate scale of 1.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        ScaleByLearningRateState
            The step count (0) and the scale (a 0-d array of 1.0 in the
            parameters' dtype).
        """
        leaf = _first_leaf(params)
        xp = array_namespace(leaf)
        return ScaleByLearningRateState(_zero_count(params),
                                        xp.ones((), dtype=leaf.dtype, device=device(leaf)))

    def update(self, grads: Grads, state: Any, params: Params | None = None
               ) -> tuple[Grads, Any]:
        """Multiply the gradients by ``-learning_rate(step) * learning_rate_scale``.

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : ScaleByLearningRateState
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            Not used (accepted for the common signature).

        Returns
        -------
        updates : list of (dW, db)
            The descent step, shaped as ``grads``.
        state : ScaleByLearningRateState
            The new state.
        """
        count, scale = state
        lr = self.rate(count, scale)
        factor = (-lr) * scale  # -(lr * scale) exactly; a float lr is negated for free
        return tree_map(lambda g: factor * g, grads), ScaleByLearningRateState(count + 1, scale)

    def rate(self, count: int | Array, like: Array) -> float | Array:
        """The learning rate at step ``count``.

        Parameters
        ----------
        count : int or 0-d array
            The step count (the state's ``count``).
        like : 0-d array
            Gives the dtype of a schedule's array result (the state's
            ``learning_rate_scale``).

        Returns
        -------
        float or 0-d array
            A Python float, or a 0-d array of ``like``'s dtype.
        """
        if not callable(self.learning_rate):
            return self.learning_rate
        lr = self.learning_rate(count)
        if isinstance(lr, numbers.Real):
            return float(lr)
        return array_namespace(like).astype(lr, like.dtype)


def _parts_inplace(transformation: Chain | _Named) -> Block | Composite | None:
    """Give the in-place form of a chain, or of a named optimizer's chain.

    Parameters
    ----------
    transformation : Chain or named optimizer
        The transformation.

    Returns
    -------
    Block, Composite or None
        Its parts' in-place forms as one `mlp.engine.kernels.Composite` (None if
        a part has none).
    """
    if isinstance(transformation, _Named):
        return mirror(transformation.transformation)
    return mirror_all(transformation.transformations)


@dataclass(frozen=True)
class Chain:
    """Transformations applied one after the other, each to the previous one's updates.

    The state is the tuple of their states. `chain` builds one.

    Parameters
    ----------
    transformations : tuple of transformations
        Objects with ``init(params)`` and ``update(grads, state, params)``.

    Raises
    ------
    TypeError
        If an item is not a transformation.
    """

    transformations: tuple[Optimizer, ...]
    config_name: ClassVar[str] = "chain"
    inplace: ClassVar[Any] = staticmethod(_parts_inplace)

    def __post_init__(self) -> None:
        for t in self.transformations:
            if not (hasattr(t, "init") and hasattr(t, "update")):
                raise TypeError("chain() takes transformations (objects with init(params) and "
                                f"update(grads, state, params)), got {type(t).__name__}")
        object.__setattr__(self, "transformations", tuple(self.transformations))

    @property
    def elementwise(self) -> bool:
        """Whether every transformation of the chain is elementwise."""
        return all(getattr(t, "elementwise", False) for t in self.transformations)

    def init(self, params: Params) -> tuple[Any, ...]:
        """Make the state: each transformation's own, in order.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        tuple
            One state per transformation.
        """
        return tuple(t.init(params) for t in self.transformations)

    def update(self, grads: Grads, state: tuple[Any, ...], params: Params | None = None
               ) -> tuple[Grads, tuple[Any, ...]]:
        """Apply each transformation in order to the previous one's updates.

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : tuple
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            The parameters, passed to each transformation.

        Returns
        -------
        updates : list of (dW, db)
            The last transformation's updates, shaped as ``grads``.
        state : tuple
            The new state.

        Raises
        ------
        TypeError
            If a transformation of your own returns something other than a pair
            ``(updates, state)`` shaped as ``grads`` and the state it was given.
        """
        new_state = []
        for t, s in zip(self.transformations, state, strict=True):
            grads, s = checked_update(t, grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    def get_config(self) -> dict[str, Any]:
        """Describe the chain as a JSON-ready dict.

        Returns
        -------
        dict
            ``{"name": "chain", "transformations": [config, ...]}``; `from_config`
            rebuilds an equal chain from it.

        Raises
        ------
        ValueError
            If a transformation cannot be described.
        """
        return {"name": "chain",
                "transformations": [optimizer_config(t) for t in self.transformations]}


def chain(*transformations: Optimizer) -> Chain:
    """Make one transformation that applies ``transformations`` in order.

    Parameters
    ----------
    *transformations : transformation
        Objects with ``init(params)`` and ``update(grads, state, params)``;
        each one's updates are the next one's gradients.

    Returns
    -------
    Chain
        The chain; its state is the tuple of their states.

    Raises
    ------
    TypeError
        If an argument is not a transformation.

    Examples
    --------
    >>> from mlp.optimizers import chain, clip_by_global_norm, scale_by_learning_rate, trace
    >>> opt = chain(clip_by_global_norm(1.0), trace(0.9), scale_by_learning_rate(0.01))
    >>> [t.get_config()["name"] for t in opt.transformations]
    ['clip_by_global_norm', 'trace', 'scale_by_learning_rate']
    """
    return Chain(transformations)


class GradientTransformation:
    """A transformation of your own from two pure functions.

    Parameters
    ----------
    init : callable
        ``init(params) -> state``.
    update : callable
        ``update(grads, state, params=None) -> (updates, state)``; the updates
        are added to the parameters.
    elementwise : bool, default False
        True when every update element depends only on the same element of
        ``grads``, ``state`` and ``params`` (then NumPy and PyTorch may update
        all layers as one flat array).
    """

    def __init__(self, init: Callable[[Params], Any],
                 update: Callable[..., tuple[Grads, Any]], elementwise: bool = False) -> None:
        for name, fn in (("init", init), ("update", update)):
            if not callable(fn):
                raise TypeError(f"{name} must be a function, got {type(fn).__name__}")
        self.init, self.update = init, update
        self.elementwise = check("elementwise", elementwise, [Boolean()])

    def __repr__(self) -> str:
        name = getattr(self.update, "__qualname__", repr(self.update))
        return f"GradientTransformation(update={name}, elementwise={self.elementwise})"


def _described(value: object) -> str:
    if value is None or isinstance(value, (bool, numbers.Number, str)):
        return repr(value)[:60]
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)}"
    size = f" of {len(value)} items" if isinstance(value, (list, tuple)) else ""
    return f"a {type(value).__name__}{size}"


def _updates_problem(updates: Any, grads: Any) -> str | None:
    """What is wrong with ``updates`` against ``grads`` (same nesting of lists and tuples,
    arrays of the same shapes), or None."""
    if isinstance(grads, (list, tuple)):
        if not isinstance(updates, (list, tuple)) or len(updates) != len(grads):
            return (f"{_described(updates)} as updates where the gradients are a "
                    f"{type(grads).__name__} of {len(grads)} items")
        for u, g in zip(updates, grads):
            problem = _updates_problem(u, g)
            if problem:
                return problem
        return None
    if getattr(updates, "shape", None) is None:
        return f"{_described(updates)} as an update where the gradient is an array"
    if tuple(updates.shape) != tuple(grads.shape):
        return (f"an update of shape {tuple(updates.shape)} for a gradient of shape "
                f"{tuple(grads.shape)}")
    if type(updates) is not type(grads) or updates.dtype != grads.dtype:
        return (f"an update of dtype {updates.dtype} ({type(updates).__name__}) for a gradient "
                f"of dtype {grads.dtype} ({type(grads).__name__})")
    return None


def checked_update(transformation: Optimizer, grads: Grads, state: Any,
                   params: Params | None = None) -> tuple[Grads, Any]:
    """``transformation.update(grads, state, params)``, its result checked when the
    transformation is one of your own: a pair ``(updates, state)`` with the updates
    shaped as ``grads``, or a TypeError that names the transformation and says what it
    returned (rather than an error from deep inside the training step)."""
    result = transformation.update(grads, state, params)
    if type(transformation) in _BUILT_IN:
        return result
    problem: str | None
    if _updates_problem(result, grads) is None:
        problem = "returned the updates alone, without the new state"
    elif not (isinstance(result, (tuple, list)) and len(result) == 2):
        problem = f"returned {_described(result)}"
    else:
        problem = _updates_problem(result[0], grads)
        problem = problem and f"returned {problem}"
    if problem:
        raise TypeError(f"the optimizer {transformation!r} {problem}: update(grads, state, "
                        "params) must return a pair (updates, new_state), the updates shaped "
                        "as grads (a list of (dW, db), one per layer) and of their dtype")
    problem = structure_problem(result[1], state)
    if problem:
        raise TypeError(f"the optimizer {transformation!r} returned a new state with "
                        f"{problem}: update(grads, state, params) must return a state of the "
                        "structure of the one it was given (the one init(params) made: the "
                        "same lists, tuples and NamedTuples, arrays of the same shapes and "
                        "dtypes)")
    return result


# ---------------------------------------------------------------- named optimizers
class _Named(_Transformation):
    """A named optimizer: a frozen dataclass of hyperparameters and the chain it stands for."""

    @functools.cached_property
    def transformation(self) -> Chain:
        """The chain of building blocks this optimizer stands for."""
        return chain(*self._pieces())

    def _pieces(self) -> list[Optimizer]:
        """The building blocks it chains, in order."""
        raise NotImplementedError

    def init(self, params: Params) -> tuple[Any, ...]:
        """Make the state of the chain this optimizer stands for.

        Parameters
        ----------
        params : list of (W, b)
            The parameters, per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)``.

        Returns
        -------
        tuple
            One state per building block of the chain.
        """
        return self.transformation.init(params)

    def update(self, grads: Grads, state: tuple[Any, ...], params: Params | None = None
               ) -> tuple[Grads, tuple[Any, ...]]:
        """Turn the gradients into this optimizer's descent step.

        Parameters
        ----------
        grads : list of (dW, db)
            The gradients (or the previous transformation's updates), shaped as
            the parameters.
        state : tuple
            The state from `init` or from the previous call.
        params : list of (W, b) or None, optional
            The parameters, passed to each building block.

        Returns
        -------
        updates : list of (dW, db)
            The descent step, shaped as ``grads``.
        state : tuple
            The new state.
        """
        return self.transformation.update(grads, state, params)


@dataclass(frozen=True)
class SGD(_Named):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    The chain ``trace(momentum, nesterov)`` (without momentum: none), then
    ``scale_by_learning_rate(learning_rate)``.

    Parameters
    ----------
    learning_rate : float or callable, default 0.01
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    momentum : float, default 0.0
        The momentum, in [0, 1) (0: none).
    nesterov : bool, default False
        Use Nesterov momentum: the update is ``g + decay * v``.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range, or ``nesterov`` is set without
        momentum.
    """

    learning_rate: Any = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    config_name: ClassVar[str] = "sgd"
    inplace: ClassVar[Any] = staticmethod(_parts_inplace)
    rules: ClassVar[dict[str, list[Rule]]] = {"momentum": _FRACTION, "nesterov": [Boolean()]}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "learning_rate", check_learning_rate(self.learning_rate))
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    def _pieces(self) -> list[Optimizer]:
        momentum: list[Optimizer] = [trace(self.momentum, self.nesterov)] if self.momentum else []
        return [*momentum, scale_by_learning_rate(self.learning_rate)]


@dataclass(frozen=True)
class Adam(_Named):
    """Adam (Kingma & Ba 2015).

    The chain ``scale_by_adam(beta1, beta2, eps)``, then
    ``scale_by_learning_rate(learning_rate)``.

    Parameters
    ----------
    learning_rate : float or callable, default 1e-3
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    beta1 : float, default 0.9
        Decay of the first moment's running mean, in [0, 1).
    beta2 : float, default 0.999
        Decay of the second moment's running mean, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """

    learning_rate: Any = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    config_name: ClassVar[str] = "adam"
    inplace: ClassVar[Any] = staticmethod(_parts_inplace)
    rules: ClassVar[dict[str, list[Rule]]] = {"beta1": _FRACTION, "beta2": _FRACTION,
                                              "eps": _POSITIVE}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "learning_rate", check_learning_rate(self.learning_rate))

    def _pieces(self) -> list[Optimizer]:
        return [scale_by_adam(self.beta1, self.beta2, self.eps),
                scale_by_learning_rate(self.learning_rate)]


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    The chain ``scale_by_adam``, ``add_decayed_weights``, ``scale_by_learning_rate``:
    ``p -= lr * (adam direction + weight_decay * p)``.

    Parameters
    ----------
    learning_rate : float or callable, default 1e-3
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    beta1 : float, default 0.9
        Decay of the first moment's running mean, in [0, 1).
    beta2 : float, default 0.999
        Decay of the second moment's running mean, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.
    weight_decay : float, default 0.01
        The factor on the parameters, >= 0.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """

    weight_decay: float = 0.01
    config_name: ClassVar[str] = "adamw"
    inplace: ClassVar[Any] = staticmethod(_parts_inplace)
    rules: ClassVar[dict[str, list[Rule]]] = {**Adam.rules, "weight_decay": _NON_NEGATIVE}

    def _pieces(self) -> list[Optimizer]:
        adam_dir, lr = super()._pieces()
        return [adam_dir, add_decayed_weights(self.weight_decay), lr]


@dataclass(frozen=True)
class RMSprop(_Named):
    """RMSprop (Tieleman & Hinton 2012).

    The chain ``scale_by_rms(decay, eps)``, then
    ``scale_by_learning_rate(learning_rate)``.

    Parameters
    ----------
    learning_rate : float or callable, default 1e-3
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    decay : float, default 0.9
        Decay of the running mean of squared gradients, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """

    learning_rate: Any = 1e-3
    decay: float = 0.9
    eps: float = 1e-8
    config_name: ClassVar[str] = "rmsprop"
    inplace: ClassVar[Any] = staticmethod(_parts_inplace)
    rules: ClassVar[dict[str, list[Rule]]] = {"decay": _FRACTION, "eps": _POSITIVE}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "learning_rate", check_learning_rate(self.learning_rate))

    def _pieces(self) -> list[Optimizer]:
        return [scale_by_rms(self.decay, self.eps), scale_by_learning_rate(self.learning_rate)]


# ---------------------------------------------------------------- constructors
def scale_by_adam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> ScaleByAdam:
    """Make Adam's direction, `ScaleByAdam`.

    Parameters
    ----------
    beta1 : float, default 0.9
        Decay of the first moment's running mean, in [0, 1).
    beta2 : float, default 0.999
        Decay of the second moment's running mean, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.

    Returns
    -------
    ScaleByAdam
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return ScaleByAdam(beta1, beta2, eps)


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8) -> ScaleByRms:
    """Make RMSprop's direction, `ScaleByRms`.

    Parameters
    ----------
    decay : float, default 0.9
        Decay of the running mean of squared gradients, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.

    Returns
    -------
    ScaleByRms
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return ScaleByRms(decay, eps)


def trace(decay: float = 0.9, nesterov: bool = False) -> Trace:
    """Make momentum, `Trace`.

    Parameters
    ----------
    decay : float, default 0.9
        The momentum: the factor on the previous velocity, in [0, 1).
    nesterov : bool, default False
        Use Nesterov momentum: the update is ``g + decay * v``.

    Returns
    -------
    Trace
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return Trace(decay, nesterov)


def add_decayed_weights(weight_decay: float = 0.01) -> AddDecayedWeights:
    """Make weight decay, `AddDecayedWeights`.

    Parameters
    ----------
    weight_decay : float, default 0.01
        The factor on the parameters, >= 0.

    Returns
    -------
    AddDecayedWeights
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return AddDecayedWeights(weight_decay)


def clip_by_global_norm(max_norm: float) -> ClipByGlobalNorm:
    """Make clipping by global norm, `ClipByGlobalNorm`.

    Parameters
    ----------
    max_norm : float
        The largest global norm of the updates, > 0.

    Returns
    -------
    ClipByGlobalNorm
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return ClipByGlobalNorm(max_norm)


def scale_by_learning_rate(learning_rate: float | Schedule) -> ScaleByLearningRate:
    """Make the descent step, `ScaleByLearningRate`.

    Parameters
    ----------
    learning_rate : float or callable
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).

    Returns
    -------
    ScaleByLearningRate
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return ScaleByLearningRate(learning_rate)


def sgd(learning_rate: float | Schedule = 0.01, momentum: float = 0.0, nesterov: bool = False
        ) -> SGD:
    """Make stochastic gradient descent, `SGD`.

    Parameters
    ----------
    learning_rate : float or callable, default 0.01
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    momentum : float, default 0.0
        The momentum, in [0, 1) (0: none).
    nesterov : bool, default False
        Use Nesterov momentum: the update is ``g + decay * v``.

    Returns
    -------
    SGD
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return SGD(learning_rate, momentum, nesterov)


def adam(learning_rate: float | Schedule = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
         eps: float = 1e-8) -> Adam:
    """Make Adam, `Adam`.

    Parameters
    ----------
    learning_rate : float or callable, default 1e-3
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    beta1 : float, default 0.9
        Decay of the first moment's running mean, in [0, 1).
    beta2 : float, default 0.999
        Decay of the second moment's running mean, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.

    Returns
    -------
    Adam
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).

    Examples
    --------
    >>> import numpy as np
    >>> from mlp.optimizers import adam, apply_updates
    >>> params = [(np.ones((2, 3)), np.zeros(3))]
    >>> grads = [(np.ones((2, 3)), np.ones(3))]
    >>> opt = adam(learning_rate=0.1)
    >>> state = opt.init(params)
    >>> updates, state = opt.update(grads, state, params)
    >>> dW, db = updates[0]   # the first step: about -learning_rate * sign(g)
    >>> dW.round(6).tolist()
    [[-0.1, -0.1, -0.1], [-0.1, -0.1, -0.1]]
    >>> apply_updates(params, updates)[0][0].shape
    (2, 3)
    """
    return Adam(learning_rate, beta1, beta2, eps)


def adamw(learning_rate: float | Schedule = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.01) -> AdamW:
    """Make Adam with decoupled weight decay, `AdamW`.

    Parameters
    ----------
    learning_rate : float or callable, default 1e-3
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    beta1 : float, default 0.9
        Decay of the first moment's running mean, in [0, 1).
    beta2 : float, default 0.999
        Decay of the second moment's running mean, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.
    weight_decay : float, default 0.01
        The factor on the parameters, >= 0.

    Returns
    -------
    AdamW
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return AdamW(learning_rate, beta1, beta2, eps, weight_decay)


def rmsprop(learning_rate: float | Schedule = 1e-3, decay: float = 0.9, eps: float = 1e-8
            ) -> RMSprop:
    """Make RMSprop, `RMSprop`.

    Parameters
    ----------
    learning_rate : float or callable, default 1e-3
        The step size: a float, or a schedule (a function of the step count,
        see `mlp.schedules`).
    decay : float, default 0.9
        Decay of the running mean of squared gradients, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment, > 0.

    Returns
    -------
    RMSprop
        The transformation.

    Raises
    ------
    ValueError
        If a hyperparameter is out of its range (the message names it).
    """
    return RMSprop(learning_rate, decay, eps)


#: The named optimizers, by the name ``fit(optimizer=...)`` takes.
OPTIMIZERS: dict[str, type[SGD | Adam | RMSprop]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW,
                                                     "rmsprop": RMSprop}

#: Every built-in transformation by its config name.
TRANSFORMATIONS = {cls.config_name: cls for cls in (
    SGD, Adam, AdamW, RMSprop, ScaleByAdam, ScaleByRms, Trace, AddDecayedWeights,
    ClipByGlobalNorm, ScaleByLearningRate, Chain)}
#: The built-in transformations' classes (their updates need no check, `checked_update`).
_BUILT_IN = frozenset(TRANSFORMATIONS.values())


def get_optimizer(optimizer: object, learning_rate: float | Schedule | None = None
                  ) -> Optimizer:
    """A transformation from a name (with ``learning_rate``) or a transformation object.

    A name is one of `OPTIMIZERS` (any case). An object is a named optimizer, a
    `chain`, a `GradientTransformation`, or anything with ``init(params)`` and
    ``update(grads, state, params)``; it is returned as it is.
    """
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        cls = OPTIMIZERS[key]
        return cls() if learning_rate is None else cls(learning_rate=learning_rate)
    if isinstance(optimizer, type):  # e.g. optimizer=Adam instead of Adam()
        raise TypeError(f"optimizer must be an optimizer object, got the class "
                        f"{optimizer.__name__}: write {optimizer.__name__}() (with its "
                        f"settings, e.g. {optimizer.__name__}(learning_rate=1e-3)) or a name "
                        f"such as {optimizer.__name__.lower()!r}")
    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        if learning_rate is not None:
            raise ValueError("learning_rate was given twice: pass it to the optimizer object "
                             "or name the optimizer as a string, not both")
        return cast("Optimizer", optimizer)
    raise TypeError(
        "optimizer must be a name (" + ", ".join(OPTIMIZERS) + "), a transformation such as "
        "mlp.optimizers.chain(...), or an object with init(params) and "
        f"update(grads, state, params), got {type(optimizer).__name__}"
    )


# ---------------------------------------------------------------- configs
def optimizer_config(opt: object) -> dict[str, Any]:
    """``opt.get_config()``; a ValueError ``"cannot save optimizer ...: ..."`` for a
    transformation of your own (which has no config)."""
    if not hasattr(opt, "get_config"):
        raise ValueError(f"cannot save optimizer {opt!r}: a transformation of your own has no "
                         "get_config(); save without include_optimizer, or build it from "
                         "mlp.optimizers pieces")
    try:
        config: dict[str, Any] = opt.get_config()
    except ValueError as exc:
        if str(exc).startswith("cannot save optimizer"):
            raise
        raise ValueError(f"cannot save optimizer {opt!r}: {exc}") from exc
    return config


def _legacy(config: dict[str, Any]) -> dict[str, Any]:
    """Format-1 files: ``{"name": "adam", "class": "Adam", "fields": {...}}``."""
    return {"name": config["name"], **config["fields"]}


def from_config(config: dict[str, Any]) -> Optimizer:
    """Rebuild the transformation that ``config`` describes.

    Parameters
    ----------
    config : dict
        What ``get_config()`` of a built-in transformation, named optimizer or
        chain returned.

    Returns
    -------
    transformation
        An object equal to the one described.

    Raises
    ------
    ValueError
        If ``config`` is not a dict, or names an unknown optimizer,
        transformation or schedule, or an unknown field.
    """
    if not isinstance(config, dict):
        raise ValueError(f"an optimizer config must be a dict, got {type(config).__name__}")
    if "fields" in config:
        config = _legacy(config)
    fields = dict(config)
    name = fields.pop("name", None)
    cls = TRANSFORMATIONS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(TRANSFORMATIONS)}")
    if cls is Chain:
        parts = fields.pop("transformations", None)
        if fields or not isinstance(parts, list):
            raise ValueError(f"a chain config holds only a list of 'transformations', "
                             f"got {config!r}")
        return chain(*(from_config(p) for p in parts))
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} in the config of "
                         f"optimizer {name!r}; known: {', '.join(sorted(known))}")
    if isinstance(fields.get("learning_rate"), dict):
        fields["learning_rate"] = _schedules.from_config(fields["learning_rate"])
    return cls(**fields)


# ---------------------------------------------------------------- learning rate in the state
def _rate_states(state: Any) -> list[ScaleByLearningRateState]:
    """Every `ScaleByLearningRateState` inside ``state``, in order."""
    if isinstance(state, ScaleByLearningRateState):
        return [state]
    if isinstance(state, (list, tuple)):
        return [s for node in state for s in _rate_states(node)]
    return []


def learning_rate_scale(state: Any) -> float:
    """The learning-rate scale kept in an optimizer's ``state`` (1.0 unless changed)."""
    found = _rate_states(state)
    if not found:
        raise ValueError("this optimizer state has no learning rate (no "
                         "scale_by_learning_rate in the optimizer)")
    return float(found[0].learning_rate_scale)


def with_learning_rate_scale(state: Any, factor: float) -> Any:
    """A new ``state`` whose learning rate is ``factor`` times the optimizer's own
    (schedule included). Pure: ``state`` is not changed. No recompilation on JAX."""
    factor = check("factor", factor, _NON_NEGATIVE)
    if not _rate_states(state):
        raise ValueError("this optimizer state has no learning rate (no "
                         "scale_by_learning_rate in the optimizer)")

    def replace(node: Any) -> Any:
        if isinstance(node, ScaleByLearningRateState):
            old = node.learning_rate_scale
            xp = array_namespace(old)
            info = xp.finfo(old.dtype)
            if 0 < factor < float(info.smallest_normal) or factor > float(info.max):
                raise ValueError(f"factor={factor!r} is outside what the state's dtype holds "
                                 f"(normal numbers from {float(info.smallest_normal):.4g} to "
                                 f"{float(info.max):.4g}): it would become 0, subnormal or "
                                 "inf")
            return node._replace(learning_rate_scale=xp.asarray(factor, dtype=old.dtype,
                                                                device=device(old)))
        if is_namedtuple(node):
            return type(node)(*(replace(n) for n in node))
        if isinstance(node, (list, tuple)):
            return type(node)(replace(n) for n in node)
        return node

    return replace(state)


def _pieces_with_states(opt: object, state: Any) -> list[tuple[object, Any]]:
    """``(transformation, state)`` for every building block inside ``opt``."""
    if isinstance(opt, _Named):
        return _pieces_with_states(opt.transformation, state)
    if isinstance(opt, Chain):
        return [pair for t, s in zip(opt.transformations, state, strict=True)
                for pair in _pieces_with_states(t, s)]
    return [(opt, state)]


def current_learning_rate(opt: object, state: Any) -> float:
    """The learning rate ``opt`` applies at its next update from ``state`` (schedule and
    scale included), as a float for logs."""
    for t, s in _pieces_with_states(opt, state):
        if isinstance(t, ScaleByLearningRate):
            return float(t.rate(s.count, s.learning_rate_scale)) * float(
                s.learning_rate_scale)
    raise ValueError(f"optimizer {opt!r} has no learning rate (no scale_by_learning_rate)")


def step_count(state: Any) -> int:
    """The number of updates made from ``state`` (the first step count it holds)."""
    for node in _rate_states(state) or _counted(state):
        return int(node.count)
    raise ValueError("this optimizer state holds no step count")


def _counted(state: Any) -> list[Any]:
    if hasattr(state, "count"):
        return [state]
    if isinstance(state, (list, tuple)):
        return [s for node in state for s in _counted(node)]
    return []


def learning_rate_schedules(opt: object) -> list[Schedule]:
    """The learning-rate schedules (callables) inside ``opt``'s building blocks."""
    if isinstance(opt, _Named):
        return learning_rate_schedules(opt.transformation)
    if isinstance(opt, Chain):
        return [s for t in opt.transformations for s in learning_rate_schedules(t)]
    if isinstance(opt, ScaleByLearningRate) and callable(opt.learning_rate):
        return [opt.learning_rate]
    return []


def check_numbers_in_dtype(opt: object, dtype_name: str) -> None:
    """Refuse a hyperparameter of ``opt`` (a built-in transformation, named optimizer or
    chain; a built-in schedule's parameters included) that the model's dtype cannot hold
    as the number it is (`mlp.params.check_in_dtype`): a learning rate of 1e-320 becomes 0
    in float32, a ``beta2`` of ``1 - 1e-9`` becomes 1. Transformations of the user's own
    are not looked into."""
    if isinstance(opt, Chain):
        for t in opt.transformations:
            check_numbers_in_dtype(t, dtype_name)
        return
    if not (isinstance(opt, _Transformation) and dataclasses.is_dataclass(opt)):
        return
    owner = type(opt).__name__
    for f in dataclasses.fields(opt):
        value = getattr(opt, f.name)
        if isinstance(value, BuiltinSchedule):
            _check_schedule_numbers(value, dtype_name)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            check_in_dtype(f"{owner}.{f.name}", float(value), dtype_name,
                           fraction=opt.rules.get(f.name) is _FRACTION)


def check_rate_scale(opt: object, state: Any, dtype_name: str) -> None:
    """Refuse a learning-rate scale in ``state`` (`with_learning_rate_scale`) that a fit
    cannot train with: 0 (the rate times it is 0: nothing would train), or one the model's
    dtype cannot hold as the number it is, alone or times a constant learning rate
    (`mlp.params.check_in_dtype`)."""
    for t, s in _pieces_with_states(opt, state):
        if not isinstance(t, ScaleByLearningRate) or not isinstance(s, ScaleByLearningRateState):
            continue
        scale = float(s.learning_rate_scale)
        if not scale > 0:
            raise ValueError(f"the optimizer state's learning-rate scale is {scale!r}: the "
                             f"learning rate times it is 0, so nothing would train")
        check_in_dtype("the optimizer state's learning-rate scale", scale, dtype_name)
        if not callable(t.learning_rate):
            check_in_dtype(f"the learning rate {t.learning_rate!r} times the optimizer state's "
                           f"learning-rate scale {scale!r}", t.learning_rate * scale,
                           dtype_name)


def _check_schedule_numbers(schedule: BuiltinSchedule, dtype_name: str) -> None:
    for f in dataclasses.fields(schedule):
        value = getattr(schedule, f.name)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            check_in_dtype(f"{type(schedule).__name__}.{f.name}", float(value), dtype_name)


def scheduled_rates(opt: object, state: Any) -> list[tuple[Schedule, Array]]:
    """``(schedule, count)`` for each learning-rate schedule in ``opt`` and the step
    count its `ScaleByLearningRate` stands at in ``state`` (an int 0-d array)."""
    return [(t.learning_rate, s.count) for t, s in _pieces_with_states(opt, state)
            if isinstance(t, ScaleByLearningRate) and callable(t.learning_rate)]


# ---------------------------------------------------------------- user schedules
def _is_tracer_error(exc: BaseException) -> bool:
    """A JAX error from using a traced value as a Python bool or number (no jax import)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConcretizationTypeError", "TracerBoolConversionError",
                         "TracerIntegerConversionError"})


def _schedule_name(schedule: object) -> str:
    return getattr(schedule, "__name__", None) or type(schedule).__name__


def check_schedule(backend: Backend, schedule: Schedule) -> None:
    """Call a learning-rate ``schedule`` once, for step 0 (compiled where ``backend``
    compiles), and turn a failure into an error that says how to write it.

    Raises TypeError when the schedule fails, returns something other than a
    number or a 0-d array, or (on JAX) branches with a Python ``if`` on the step.
    """
    name = _schedule_name(schedule)
    xp = backend.xp
    step = xp.asarray(0)
    hint = ("a schedule takes the step count (an integer 0-d array) and returns a number "
            "or a 0-d array; cast the step before float math: xp.astype(step, xp.float64)")
    try:
        value = schedule(step)
    except Exception as exc:
        raise TypeError(f"learning-rate schedule {name} failed for step 0 "
                        f"({type(exc).__name__}: {exc}); {hint}") from exc
    _check_schedule_value(name, value)
    backend.check_plain(value, f"learning-rate schedule {name}")
    if backend.compiles:
        try:
            backend.jit(schedule)(step)
        except Exception as exc:
            if _is_tracer_error(exc):
                raise TypeError(
                    f"learning-rate schedule {name} uses the step as a Python value, but "
                    "schedules are traced by JAX: use xp.where(step < 100, a, b) instead of "
                    "a Python if on the step (and xp functions, not math or float())"
                ) from exc
            raise TypeError(f"learning-rate schedule {name} failed when compiled for step 0 "
                            f"({type(exc).__name__}: {exc}); {hint}") from exc


def _check_schedule_value(name: str, value: Any) -> None:
    if isinstance(value, bool) or not (isinstance(value, numbers.Real)
                                       or hasattr(value, "shape")):
        raise TypeError(f"learning-rate schedule {name} must return a number or a 0-d array "
                        f"for step 0, got {type(value).__name__}")
    if hasattr(value, "shape") and tuple(value.shape) != ():
        raise ValueError(f"learning-rate schedule {name} must return a number or a 0-d array "
                         f"for step 0, got an array of shape {tuple(value.shape)}")
    if not isinstance(value, numbers.Real) and not array_namespace(value).isdtype(
            value.dtype, ("real floating", "integral")):
        raise TypeError(f"learning-rate schedule {name} must return a real number for step 0, "
                        f"got an array of dtype {value.dtype}")
