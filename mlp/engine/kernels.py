"""What an in-place kernel declares, and the pieces the kernels share.

A built-in activation, loss or transformation declares its in-place form beside
its pure one (an ``inplace`` kernel), or declares itself pure-only with
`PureOnly` and the reason. The in-place executor (`mlp.engine.inplace`) takes a
kernel only from that declaration; anything that declares nothing (a user's
own, a subclass of a built-in transformation) runs the pure path.

Kernels work on the in-place operations of the backend's library
(``ops``, `mlp.backends.InplaceOps`): the very functions the pure path's
array-API namespace calls, with ``out=``, so every element sees the same IEEE
operations in the same order as in the pure path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, TypeAlias

from array_api_compat import array_namespace

from .._typing import Array, Namespace

if TYPE_CHECKING:
    from ..backends import InplaceOps
    from .layout import Layout


#: The in-place executor's buffers for one batch size, by name (`mlp.engine.inplace`).
Buffers: TypeAlias = dict[str, Any]


class ActivationKernel(Protocol):
    """An activation's in-place form (e.g. `mlp.activations.ReluInplace`)."""

    def forward(self, ops: InplaceOps, z: Array) -> Array:
        """``f(z)`` into ``z``; returns it."""

    def backward(self, ops: InplaceOps, delta: Array, a: Array, mask: Array) -> Array:
        """``delta * f'(z)`` into ``delta``, from ``a = f(z)`` (``mask``: boolean
        scratch); returns it."""


class LossKernel(Protocol):
    """A loss's in-place form (e.g. `mlp.losses.MseInplace`)."""

    #: Whether its training totals are counts of correct classes, which the executor
    #: may count once per epoch from each step's predicted classes.
    counts_classes: bool

    def value_and_delta(self, ops: InplaceOps, buf: Buffers, z: Array, a: Array, y: Array,
                        output_backward: Callable[[Array], Array]
                        ) -> tuple[Array, Array, Array | None]:
        """``(loss, delta, totals)`` (totals None: the pure ones are computed)."""


class PureOnly(NamedTuple):
    """The declaration of a built-in with no in-place form: the pure function runs.

    Parameters
    ----------
    reason : str
        Why it has none (e.g. the fast path would gain nothing, or the pure
        function is already what runs).
    """

    reason: str


def kernel_of(obj: Any) -> Any:
    """The in-place kernel ``obj`` declares, or None (pure-only, or nothing declared).

    A transformation declares it in its own class body (``inplace = ...``): a
    subclass, which may change ``update``, declares nothing unless it says so
    itself. An activation or loss carries it as its ``inplace`` attribute.
    """
    if isinstance(obj, type) or obj is None:
        return None
    if _is_transformation(obj):
        own = type(obj).inplace if "inplace" in type(obj).__dict__ else None
    else:
        own = getattr(obj, "inplace", None)
    return None if own is None or isinstance(own, PureOnly) else own


def _is_transformation(obj: Any) -> bool:
    return hasattr(obj, "update") and hasattr(obj, "init")


def declaration(obj: Any) -> Any:
    """What ``obj`` (a built-in's class, activation or loss) declares: a kernel, a
    `PureOnly`, or None where it declares neither."""
    if isinstance(obj, type):
        return obj.__dict__.get("inplace")
    return getattr(obj, "inplace", None)


class Unfit(Exception):
    """The optimizer state is not one the in-place executor mirrors (wrong structure or
    dtype): the pure path runs instead."""


class Context:
    """What the in-place transformations (`Block`) share: the in-place operations, the
    layout, the dtype, whether the pure path packs (`mlp.engine.pipeline.packs_layers`),
    the scratch vector ``tmp``, and the flat state vectors' allocator (`vector`)."""

    def __init__(self, ops: InplaceOps, layout: Layout, dtype: Any, packed: bool,
                 vectors: Iterable[Array]) -> None:
        self.ops, self.layout, self.dtype, self.packed = ops, layout, dtype, packed
        self.tmp = ops.zeros((layout.size,), dtype)  # (zeros: the gaps between weights)
        self._vectors: Iterator[Array] = iter(vectors)

    def vector(self) -> Array:
        """The next flat state vector, ``(layout.size,)``."""
        return next(self._vectors)


def unpack_state(state: Any, cls: type, ctx: Context, arrays: tuple[str, ...] = ()
                 ) -> list[Any]:
    """``state``'s fields, checked: a ``cls``, with the fields named in ``arrays`` (lists
    of ``(W, b)``) copied into new flat vectors of ``ctx`` (`Unfit` otherwise)."""
    if type(state) is not cls:
        raise Unfit
    fields = []
    for name, value in zip(cls._fields, state):  # type: ignore[call-overload]
        if name in arrays:
            if not ctx.layout.matches(ctx.ops, value, ctx.dtype):
                raise Unfit
            value = ctx.layout.fill(ctx.ops, ctx.vector(), value)
        fields.append(value)
    return fields


class Block:
    """An in-place transformation: one building block of `mlp.optimizers`, mirrored.

    ``update(ctx, u, p)`` transforms the flat updates ``u`` in place (``p``: the
    flat parameters, read only; ``ctx.tmp``: a shared scratch vector);
    ``load(state, ctx)`` takes the pure state (flat vectors from
    ``ctx.vector()``; scalars kept in ``scalars``), ``state(ctx)`` hands it back
    in the pure format (views). ``scalars`` is a tuple replaced, never changed,
    at every update, so that Ctrl-C can restore it. ``n_vectors``: the flat
    state vectors it needs.
    """

    scalars: tuple[Any, ...] = ()
    n_vectors: ClassVar[int] = 0

    def __init__(self, transformation: Any) -> None:
        self.t = transformation

    def blocks(self) -> list[Block]:
        """The blocks a step runs, in order (here this one)."""
        return [self]

    def load(self, state: Any, ctx: Context) -> None:
        """Take the pure state (`Unfit` where it is not this block's)."""
        raise NotImplementedError

    def state(self, ctx: Context) -> Any:
        """The state in the pure format."""
        raise NotImplementedError

    def update(self, ctx: Context, u: Array, p: Array) -> None:
        """Transform the flat updates ``u`` in place."""
        raise NotImplementedError


class Composite:
    """The in-place form of transformations applied in order (a chain, or a named
    optimizer's chain): their blocks; the state is the tuple of theirs."""

    def __init__(self, parts: list[Block | Composite]) -> None:
        self.parts = parts

    def blocks(self) -> list[Block]:
        return [b for part in self.parts for b in part.blocks()]

    def load(self, state: Any, ctx: Context) -> None:
        if type(state) is not tuple or len(state) != len(self.parts):
            raise Unfit
        for part, s in zip(self.parts, state):
            part.load(s, ctx)

    def state(self, ctx: Context) -> tuple[Any, ...]:
        return tuple(part.state(ctx) for part in self.parts)


def mirror(transformation: object) -> Block | Composite | None:
    """The in-place form of ``transformation`` (a `Block` or a `Composite`), or None.

    A transformation's declared kernel (`kernel_of`) is called with it: a block
    class takes the transformation; a chain's or named optimizer's kernel
    returns the mirror of its parts (None if any part has none).
    """
    kernel = kernel_of(transformation)
    if kernel is None:
        return None
    form: Block | Composite | None = kernel(transformation)
    return form


def mirror_all(transformations: Iterable[object]) -> Composite | None:
    """`Composite` of the mirrors of ``transformations``, or None if one has none."""
    parts = [mirror(t) for t in transformations]
    known = [p for p in parts if p is not None]
    return Composite(known) if len(known) == len(parts) else None


def count_namespace(count: Array, _known: dict[type, Namespace] = {}  # noqa: B006 - a cache
                    ) -> Namespace:
    """``array_namespace(count)``, as the pure update calls it, once per type of count."""
    kind = type(count)
    if kind not in _known:
        _known[kind] = array_namespace(count)
    return _known[kind]
