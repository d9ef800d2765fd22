"""The flat layout of a network's parameters: all weight matrices, then all biases.

One layout serves both executors: the pure run on a backend that does not
compile packs the parameters of an elementwise optimizer into two flat arrays
(`Layout.pack`: the weights, the biases), and the in-place executor keeps
weights, gradients and optimizer state as views into flat vectors laid out the
same way (`Layout.views`). Each weight matrix starts on a 64-byte boundary
(`aligned_offsets`; zeros fill the gaps, which every elementwise optimizer keeps
at zero), so a matrix product sees the weights where it would see a fresh array
of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from array_api_compat import device

from .._typing import Array, Namespace, Params
from ..tree import is_namedtuple

if TYPE_CHECKING:
    from ..backends import InplaceOps

#: ``[(W, b), ...]``: a network's weights and biases (or gradients, or an optimizer's
#: per-layer state), layer by layer; packed, one pair ``(all W, all b)``.
Pairs: TypeAlias = list[tuple[Array, Array]]

#: Every weight matrix in a packed array starts a multiple of this many elements from its
#: start: on a 64-byte boundary (in float32 and float64), where PyTorch's allocator puts
#: a fresh tensor. Matrix-product libraries may pick their kernels by the operands'
#: alignment (MKL does on AMD processors), so a weight block at any other offset could
#: be multiplied with another rounding than the same weights in an array of their own.
BLOCK_ALIGNMENT = 16


def aligned_offsets(sizes: Iterable[int], alignment: int = BLOCK_ALIGNMENT
                    ) -> tuple[list[tuple[int, int]], int]:
    """Blocks of ``sizes`` elements one after another, each on a multiple of ``alignment``.

    Returns
    -------
    bounds : list of (start, stop)
    total : int
        The end of the last block (zeros fill the gaps between blocks).
    """
    bounds: list[tuple[int, int]] = []
    offset = 0
    for size in sizes:
        bounds.append((offset, offset + size))
        offset += -(-size // alignment) * alignment
    total = bounds[-1][1] if bounds else 0
    return bounds, total


class Layout:
    """All weight matrices as one flat array, all biases as another (or both in one vector).

    Where every array operation costs a fixed overhead (NumPy, PyTorch eager), an
    elementwise optimizer then runs its handful of operations twice per step
    instead of twice per layer. Each element sees exactly the same operations in
    the same order, so results are identical to the per-layer update, bit for
    bit. Unpacking gives views (reshaped slices).

    Parameters
    ----------
    xp : namespace
        The array-API namespace `pack` and `unpack` use.
    shapes : sequence of (fan_in, fan_out)
        The weight matrices' shapes, layer by layer.
    aligned : bool, default True
        Each weight matrix on a 64-byte boundary (`aligned_offsets`); False packs
        them without gaps (scikit-learn's flat parameter vector).

    Attributes
    ----------
    n_weights : int
        The weights' part of the flat vector (gaps included).
    size : int
        The whole flat vector: the weights' part, then all biases.
    """

    def __init__(self, xp: Namespace, shapes: Iterable[Sequence[int]], aligned: bool = True
                 ) -> None:
        self.xp = xp
        self.shapes = [tuple(s) for s in shapes]  # (fan_in, fan_out) per layer
        self.w_bounds, self.n_weights = aligned_offsets([i * o for i, o in self.shapes],
                                                        BLOCK_ALIGNMENT if aligned else 1)
        self.b_bounds: list[tuple[int, int]] = []
        ob = 0
        for _, fan_out in self.shapes:
            self.b_bounds.append((ob, ob + fan_out))
            ob += fan_out
        self.size = self.n_weights + ob
        self._gaps: dict[tuple[Any, ...], Any] = {}  # zeros by (size, dtype, device)

    # ------------------------------------------------------------ packed arrays
    def _gap(self, size: int, like: Array) -> Array:
        """Zeros of ``like``'s dtype and device, ``(size,)``."""
        key = (size, like.dtype, device(like))
        gap = self._gaps.get(key)
        if gap is None:
            gap = self._gaps[key] = self.xp.zeros((size,), dtype=like.dtype, device=device(like))
        return gap

    def pack(self, pairs: Params) -> Pairs:
        """``[(W, b), ...]`` as ``[(all W, all b)]`` (new arrays)."""
        xp, pieces = self.xp, []
        for (W, _), (_, w1), nxt in zip(pairs, self.w_bounds, self.w_bounds[1:] + [None]):
            pieces.append(xp.reshape(W, (-1,)))
            if nxt is not None and nxt[0] > w1:
                pieces.append(self._gap(nxt[0] - w1, W))
        return [(xp.concat(pieces), xp.concat([b for _, b in pairs]))]

    def unpack(self, packed: Params) -> Pairs:
        """``[(all W, all b)]`` as ``[(W, b), ...]`` (views)."""
        flat_w, flat_b = packed[0]
        return [(self.xp.reshape(flat_w[w0:w1], shape), flat_b[b0:b1])
                for shape, (w0, w1), (b0, b1) in zip(self.shapes, self.w_bounds, self.b_bounds)]

    def _is_param_list(self, node: object) -> bool:
        return (isinstance(node, list) and len(node) == len(self.shapes)
                and all(isinstance(p, tuple) and len(p) == 2 for p in node))

    def pack_tree(self, node: Any) -> Any:
        """Pack every per-layer ``[(W, b), ...]`` list inside an optimizer state."""
        if self._is_param_list(node):
            return self.pack(node)
        if is_namedtuple(node):
            return type(node)(*(self.pack_tree(n) for n in node))
        if isinstance(node, tuple):
            return tuple(self.pack_tree(n) for n in node)
        return node

    def unpack_tree(self, node: Any, like: Any) -> Any:
        """Undo `pack_tree`; ``like`` is the unpacked state it came from."""
        if self._is_param_list(like):
            return self.unpack(node)
        if is_namedtuple(like):
            return type(like)(*(self.unpack_tree(n, m) for n, m in zip(node, like)))
        if isinstance(like, tuple):
            return tuple(self.unpack_tree(n, m) for n, m in zip(node, like))
        return node

    # ------------------------------------------------------- one flat vector
    def packed(self, flat: Array) -> Pairs:
        """``[(all W, all b)]``: the packed arrays of `pack`, as views into ``flat: (size,)``."""
        return [(flat[:self.n_weights], flat[self.n_weights:])]

    def views(self, flat: Array) -> Pairs:
        """``[(W, b), ...]`` views into ``flat: (size,)``."""
        return self.unpack(self.packed(flat))

    def matches(self, ops: InplaceOps, pairs: object, dtype: Any) -> bool:
        """Whether ``pairs`` is a list of ``(W, b)`` arrays of ``ops``'s library, of this
        layout and ``dtype``."""
        return (isinstance(pairs, list) and len(pairs) == len(self.shapes) and all(
            isinstance(pair, tuple) and len(pair) == 2 and ops.is_floats(pair, dtype)
            and pair[0].shape == shape and pair[1].shape == shape[1:]
            for pair, shape in zip(pairs, self.shapes)))

    def fill(self, ops: InplaceOps, flat: Array, pairs: Params) -> Array:
        """Copy ``pairs`` into ``flat``; returns ``flat``."""
        for (W, b), (W0, b0) in zip(self.views(flat), pairs):
            ops.copy(W, W0)
            ops.copy(b, b0)
        return flat
