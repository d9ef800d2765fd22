"""Small tree utilities over parameter lists and optimizer states.

A *tree* is a leaf (an array), ``None``, or a list / tuple / NamedTuple of
trees: parameters ``[(W, b), ...]``, their gradients and updates, and the
optimizer states built from them. `tree_map` lets every optimizer formula be
written once, for every weight matrix and bias vector alike.
"""

from __future__ import annotations


def is_namedtuple(node) -> bool:
    """Whether ``node`` is a NamedTuple instance (an optimizer state)."""
    return isinstance(node, tuple) and hasattr(type(node), "_fields")


def tree_map(fn, tree, *rest):
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


def tree_leaves(tree) -> list:
    """The leaves of ``tree`` in order (``None`` has none)."""
    if tree is None:
        return []
    if isinstance(tree, (list, tuple)):
        return [leaf for node in tree for leaf in tree_leaves(node)]
    return [tree]


def tree_unflatten(template, leaves):
    """``template``'s structure with its leaves replaced, in order, by ``leaves``.

    The inverse of `tree_leaves`: ``tree_unflatten(t, tree_leaves(t))`` rebuilds
    ``t``. Used to put a stored optimizer state back into the structure that
    ``optimizer.init(params)`` gives.
    """
    it = iter(leaves)
    return tree_map(lambda _: next(it), template)
