"""Per-row weights from ``sample_weight`` and ``class_weight``, checked at the edge.

`MLP.fit`, `MLP.loss` and `MLP.evaluate` take them; the product of the two is
one weight per row, which `mlp.core` folds into the loss and its gradient
(scikit-learn's weighted mean ``sum_i w_i * l_i / sum_i w_i``, see `mlp.losses`).

- ``sample_weight``: ``(n_samples,)`` finite numbers ``>= 0``, not all 0. An
  integer weight counts a row that many times; a weight of 0 drops it.
- ``class_weight`` (classification losses): ``{class: weight}`` (classes not
  named keep weight 1) or ``"balanced"``, scikit-learn's
  ``n_samples / (n_classes * bincount(y))`` with ``n_classes`` the number of
  classes present in ``y``. For ``binary_cross_entropy`` the classes are the
  single output's 0 and 1.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from ._typing import Array
from .losses import LOSSES
from .params import Real, check, check_in_dtype
from .validation import to_backend_array

if TYPE_CHECKING:
    from .model import MLP

#: ``class_weight``: ``{class: weight}``, ``"balanced"`` or None.
ClassWeight = dict[Any, float] | str | None


def row_weights(model: MLP, sample_weight: Array | None, class_weight: ClassWeight,
                targets: Array, labels: Array | None, *, name: str = "sample_weight",
                x_name: str = "x") -> Array | None:
    """The rows' weights ``(n,)`` on the model's backend in its dtype, or None.

    Parameters
    ----------
    model : MLP
    sample_weight : array-like (n,) or None
    class_weight : dict, "balanced" or None
    targets : backend array (n, n_outputs)
        Prepared targets (`MLP.prepare_data`).
    labels : backend array (n,) or None
        Integer labels of a classification loss with labels.

    Raises ValueError/TypeError with the parameter's name for anything else;
    nothing is changed by a refused call.
    """
    if sample_weight is None and class_weight is None:
        return None
    model.spec.loss.check_takes_weights(name if sample_weight is not None else "class_weight")
    n = targets.shape[0]
    weights = np.ones(n)
    if sample_weight is not None:
        weights = _sample_weight(model, sample_weight, n, name, x_name)
    if class_weight is not None:
        weights = weights * _class_weight_per_row(model, class_weight, targets, labels)
    total = float(np.sum(weights))
    if total == 0:
        what = name if class_weight is None else f"{name} times class_weight"
        raise ValueError(f"{what} sums to 0, so no sample counts; give at least one sample a "
                         "weight > 0")
    if total > float(np.finfo(model.dtype_name).max):
        raise ValueError(f"{name} sums to {total:.3g}, more than {model.dtype_name} holds; "
                         "rescale the weights (only their ratios matter)")
    refuse_subnormal(weights, model.dtype_name, name if class_weight is None else
                      f"{name} times class_weight")
    return model.backend.asarray(weights.astype(model.dtype_name), model.dtype)


def refuse_subnormal(weights: np.ndarray, dtype_name: str, what: str) -> None:
    """Refuse nonzero weights below the dtype's smallest normal number: they would become
    0 or subnormal there (flushed to 0 on some devices, JAX's CPU included), and the
    weighted mean would divide by a sum that is no longer theirs.

    Parameters
    ----------
    weights : numpy.ndarray (n,)
        The rows' weights, on the host.
    dtype_name : {"float32", "float64"}
        The model's dtype.
    what : str
        How the message names the weights (e.g. ``sample_weight``).

    Raises
    ------
    ValueError
        A weight too small for ``dtype_name``.
    """
    smallest = float(np.finfo(dtype_name).smallest_normal)
    small = (weights > 0) & (weights < smallest)
    if np.any(small):
        row = int(np.argmax(small))
        raise ValueError(f"{what} has {int(np.sum(small))} weight(s) too small for the model's "
                         f"dtype {dtype_name} (e.g. {float(weights[row])!r} for sample {row}; the "
                         f"smallest normal {dtype_name} number is {smallest:.4g}): they would "
                         "become 0 or subnormal and the weighted mean would be wrong or NaN; "
                         "rescale the weights (only their ratios matter), set such weights to "
                         "0 to leave the samples out"
                         + ("" if dtype_name == "float64" else ", or build the model with "
                            "dtype='float64'"))


def _sample_weight(model: MLP, sample_weight: Array, n: int, name: str, x_name: str
                   ) -> np.ndarray:
    """``sample_weight`` as a float64 NumPy array ``(n,)`` of finite numbers >= 0."""
    backend = model.backend
    arr = backend.to_numpy(to_backend_array(backend, sample_weight, name, "float64"))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), one weight per sample, got shape "
                         f"{tuple(arr.shape)}")
    if arr.shape[0] != n:
        raise ValueError(f"{x_name} and {name} have different numbers of samples: {n} and "
                         f"{arr.shape[0]}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(arr)))} NaN or infinite "
                         "value(s); weights must be finite numbers >= 0")
    if np.any(arr < 0):
        row = int(np.argmax(arr < 0))
        raise ValueError(f"{name} must be >= 0, got {arr[row]:g} for sample {row}")
    return arr


def _host_labels(model: MLP, targets: Array, labels: Array | None, name: str = "class_weight"
                 ) -> tuple[np.ndarray, int]:
    """The integer class of each row (NumPy) and the number of classes."""
    loss = model.spec.loss
    if not loss.classification:
        known = " or ".join(n for n, ls in LOSSES.items() if ls.classification)
        raise ValueError(f"{name} needs a classification loss ({known}); this model uses "
                         f"{loss.name!r} - weight its rows with sample_weight")
    if labels is not None:
        return model.backend.to_numpy(labels).astype(np.int64), model.n_outputs
    if targets.shape[1] != 1:
        raise ValueError(f"{name} needs one class per sample, but the model has "
                         f"{targets.shape[1]} binary outputs (multi-label); weight the rows "
                         "with sample_weight instead")
    return model.backend.to_numpy(targets)[:, 0].astype(np.int64), 2


def _class_weight_per_row(model: MLP, class_weight: dict[Any, float] | str, targets: Array,
                          labels: Array | None) -> np.ndarray:
    """Each row's class weight (NumPy float64 ``(n,)``)."""
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict {{class: weight}}, 'balanced' or "
                             f"None, got {class_weight!r}")
        classes, n_classes = _host_labels(model, targets, labels)
        counts = np.bincount(classes, minlength=n_classes)
        present = int(np.count_nonzero(counts))
        per_class = classes.shape[0] / (present * np.maximum(counts, 1))
        return np.take(per_class, classes)
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class: weight}}, 'balanced' or None, "
                        f"got {type(class_weight).__name__}")
    classes, n_classes = _host_labels(model, targets, labels)
    per_class = np.ones(n_classes)
    for key, value in class_weight.items():
        if (isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral)
                or not 0 <= int(key) < n_classes):
            raise ValueError(f"class_weight's keys must be classes 0..{n_classes - 1}, got "
                             f"{key!r}")
        per_class[int(key)] = check(f"class_weight[{int(key)}]", value, [Real(0)])
        check_in_dtype(f"class_weight[{int(key)}]", per_class[int(key)], model.dtype_name)
    return np.take(per_class, classes)
