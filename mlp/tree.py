"""Small tree utilities over parameter lists and optimizer states.

A *tree* is a leaf (an array), ``None``, or a list / tuple / NamedTuple of
trees: parameters ``[(W, b), ...]``, their gradients and updates, and the
optimizer states built from them. `tree_map` lets every optimizer formula be
written once, for every weight matrix and bias vector alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

#: A leaf (an array), None, or a list / tuple / NamedTuple of trees.
Tree: TypeAlias = Any


def is_namedtuple(node: object) -> bool:
    """Whether ``node`` is a NamedTuple instance (an optimizer state)."""
    return isinstance(node, tuple) and hasattr(type(node), "_fields")


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """``fn(leaf, *other_leaves)`` at every leaf of ``tree``; the same structure back.

    ``rest`` are trees of the same structure as ``tree`` (e.g. ``grads`` and a
    moment estimate). ``None`` stays ``None``; lists, tuples and NamedTuples
    keep their types.

    >>> tree_map(lambda g, m: 0.9 * m + g, grads, momentum)  # doctest: +SKIP
    """
    if tree is None:
        return None
    if isinstance(tree, (list, tuple)):
        children = [tree_map(fn, *nodes) for nodes in zip(tree, *rest, strict=True)]
        return type(tree)(*children) if is_namedtuple(tree) else type(tree)(children)
    return fn(tree, *rest)


def tree_leaves(tree: Tree) -> list[Any]:
    """The leaves of ``tree`` in order (``None`` has none)."""
    if tree is None:
        return []
    if isinstance(tree, (list, tuple)):
        return [leaf for node in tree for leaf in tree_leaves(node)]
    return [tree]


def tree_unflatten(template: Tree, leaves: Iterable[Any]) -> Tree:
    """``template``'s structure with its leaves replaced, in order, by ``leaves``.

    The inverse of `tree_leaves`: ``tree_unflatten(t, tree_leaves(t))`` rebuilds
    ``t``. Used to put a stored optimizer state back into the structure that
    ``optimizer.init(params)`` gives.
    """
    it = iter(leaves)
    return tree_map(lambda _: next(it), template)


def structure_problem(new: Tree, old: Tree) -> str | None:
    """How the optimizer state ``new`` differs in structure from ``old`` (the same nesting
    of lists, tuples and NamedTuples, arrays of the same shapes and dtypes), or None."""
    if isinstance(old, (list, tuple)):
        if type(new) is not type(old) or len(new) != len(old):
            return f"{describe(new)} where the state holds {describe(old)}"
        return next((p for p in (structure_problem(n, o) for n, o in zip(new, old))
                     if p), None)
    if getattr(old, "shape", None) is None:  # None, or a number
        return None if type(new) is type(old) else f"{describe(new)} where the state holds " \
                                                    f"{describe(old)}"
    if getattr(new, "shape", None) is None or tuple(new.shape) != tuple(old.shape):
        return f"{describe(new)} where the state holds {describe(old)}"
    if getattr(new, "dtype", None) != old.dtype:
        return (f"{describe(new)} of dtype {new.dtype} where the state holds one of dtype "
                f"{old.dtype}")
    return None


def describe(value: object) -> str:
    """A short description of ``value`` for a message: an array's type and shape, a
    container's length, a short repr of None or a number."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"an array ({type(value).__name__}) of shape {tuple(shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    return repr(value)[:40] if value is None or isinstance(value, (str, int, float)) \
        else f"a {type(value).__name__}"
