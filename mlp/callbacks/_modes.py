"""Which direction of a metric is better, ``"min"`` or ``"max"``: the one place that
knows it (`metric_mode`), for the callbacks that watch a metric."""

from __future__ import annotations

#: Whether a larger value of a metric is better ("max") or worse ("min"); the
#: validation metrics are these names with a ``val_`` prefix.
METRIC_MODES = {"loss": "min", "mse": "min", "accuracy": "max", "r2": "max"}


def metric_mode(name: str) -> str:
    """``"max"`` if a larger ``name`` is better (``accuracy``, ``r2``, and their
    ``val_`` forms), ``"min"`` if a smaller one is (``loss``, ``mse``).

    Raises ValueError for any other name, listing the known ones.
    """
    base = name[4:] if isinstance(name, str) and name.startswith("val_") else name
    if base not in METRIC_MODES:
        known = ", ".join(f"{m}, val_{m}" for m in METRIC_MODES)
        raise ValueError(f"unknown metric {name!r}; known metrics: {known} (or pass "
                         f"mode='min' or mode='max' to watch a metric of your own)")
    return METRIC_MODES[base]
