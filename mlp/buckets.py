"""Row counts bucketed: a small ladder of sizes that data is padded up to on JAX.

A backend that compiles (``backend.compiles``: JAX, on one device or a mesh)
compiles one program per input shape, and a program costs far more than a
forward pass (hundreds of milliseconds against well under one for a batch of a
few hundred rows). Where the number of rows may be anything (the inputs of
`mlp.MLP.predict` and `mlp.MLP.evaluate`, validation data), the rows are padded
up to the next size of a fixed ladder with rows that cannot change a result, so
a model compiles one program per size of the ladder whatever its data sizes.

The ladder (`bucket`):

- up to `FLOOR` (16) rows: 16;
- up to `DOUBLING_UP_TO` (1024) rows: the next power of two (32, 64, ..., 1024);
- beyond: the next multiple of an eighth of the power of two below (eight sizes
  per octave: 1152, 1280, ..., 1920, 2048, 2304, ...).

So every row count from 1 to 1024 compiles one of 7 programs, and up to a million
rows one of 87. The padding costs compute, which the two parts bound in the way
that matters at each scale: up to 1024 rows a call costs about the same padded
or not (the fixed cost of a call - dispatch, transfers, the checks on the host -
is of the order of the forward pass itself, and padding at most doubles the
rows), while beyond it the padding is less than an eighth of the rows (at most
12.5% more compute, about 5% averaged over sizes). Every size from 16 on
is a multiple of 16, so of the device count of any mesh of up to 16 devices
(`bucket` rounds up to another multiple where asked).

What pads, and why it cannot change a result:

- inputs to the forward pass (`predict`): rows of zeros, computed row by row
  alongside the data's rows and dropped from the output (`first_rows`); the
  count of rows whose output overflowed skips them;
- data with targets (`evaluate`, `loss`, `gradients`, validation data): rows of
  zeros with weight 0 (`padded_weights`), which add exactly 0 to every weighted
  sum (`mlp.core` zeroes the inputs of weight-0 rows, `mlp.losses` drops their
  terms). The data's own rows then weigh 1 where no weights were given, so the
  unweighted mean is computed as the weighted one: the same value within the
  rounding of a sum over more elements (1e-12 in float64).

Training data (`mlp.MLP.fit`, and the estimators of `mlp.sklearn`) pads the same
way, to the size for one row more (`training_rows`), so that at least one row of
weight 0 exists: a batch cut from the rows always has the batch size, the last
partial batch of an epoch filled up with that row's index, and an epoch has as
many slots for batches as the padded rows fill (`batch_plan`). The batches
beyond the epoch's own are never run (the step loop stops at the epoch's own
count, known when the program runs), so no optimizer state moves for them. A
batch's weights are its rows' (0 for the filling rows), and scikit-learn's mean
over rows counts the batch's own rows (`batch_plan`'s counts). On a
data-parallel mesh the padded size is a multiple of the device count.

Host arrays are padded on the host before they move to the device once; a
backend array (already on the device) whose rows need padding goes through the
host, since any operation on a new shape on the device would itself compile a
program. Backends that do not compile (NumPy, PyTorch, array-api-strict, CuPy)
pad nothing: there the padding would only cost time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._typing import Array

if TYPE_CHECKING:
    from .backends import Backend

#: Every row count up to this pads to it.
FLOOR = 16
#: Up to here the ladder doubles; beyond, it has `STEPS_PER_OCTAVE` sizes per octave.
DOUBLING_UP_TO = 1024
#: Sizes per doubling beyond `DOUBLING_UP_TO` (the padding is under 1/8 of the rows).
STEPS_PER_OCTAVE = 8


def bucket(n: int, multiple: int = 1) -> int:
    """The smallest size of the ladder that holds ``n`` rows, rounded up to a multiple
    of ``multiple`` (e.g. a mesh's device count).

    Parameters
    ----------
    n : int
        The number of rows (>= 1).
    multiple : int
        The size is a multiple of this (>= 1).

    Returns
    -------
    int
        ``n`` or more.

    Examples
    --------
    >>> [bucket(n) for n in (1, 16, 17, 1000, 1025, 3000)]
    [16, 16, 32, 1024, 1152, 3072]
    """
    if n < 1 or multiple < 1:
        raise ValueError(f"bucket needs n >= 1 and multiple >= 1, got n={n}, "
                         f"multiple={multiple}")
    if n <= FLOOR:
        size = FLOOR
    elif n <= DOUBLING_UP_TO:
        size = 1 << (n - 1).bit_length()
    else:
        below = 1 << ((n - 1).bit_length() - 1)  # the power of two below n
        step = below // STEPS_PER_OCTAVE
        size = -(-n // step) * step
    return -(-size // multiple) * multiple


def ladder(up_to: int) -> list[int]:
    """The ladder's sizes that row counts from 1 to ``up_to`` pad to, in order.

    Parameters
    ----------
    up_to : int

    Returns
    -------
    list of int
    """
    sizes = [bucket(1)]
    while sizes[-1] < up_to:
        sizes.append(bucket(sizes[-1] + 1))
    return sizes


def pad_host(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` (host NumPy) with rows of zeros after its rows, ``size`` rows in all.

    Parameters
    ----------
    array : numpy.ndarray, (n, ...)
    size : int
        At least ``n``.

    Returns
    -------
    numpy.ndarray, (size, ...)
        ``array`` itself when it has ``size`` rows.
    """
    n = array.shape[0]
    if n == size:
        return array
    out = np.zeros((size, *array.shape[1:]), dtype=array.dtype)
    out[:n] = array
    return out


def pad(backend: Backend, array: Any, size: int) -> Array:
    """``array`` (host NumPy or ``backend``'s own) as ``backend``'s array of ``size``
    rows, the rows after its own zeros.

    A backend array that needs padding makes a trip through the host (on the
    device, an operation on its shape would compile a program of its own).

    Parameters
    ----------
    backend : Backend
    array : numpy.ndarray or backend array, (n, ...)
    size : int
        At least ``n``.

    Returns
    -------
    backend array, (size, ...)
    """
    if backend.is_native(array):
        if array.shape[0] == size:
            return array
        array = backend.to_numpy(array)
    return backend.asarray(pad_host(array, size))


def padded_weights(backend: Backend, weights: Any, n: int, size: int, dtype: Any) -> Array:
    """The rows' weights ``(size,)`` on ``backend``: ``weights`` (or 1 for each of the
    ``n`` rows where None) followed by zeros.

    Parameters
    ----------
    backend : Backend
    weights : backend array (n,) or None
    n, size : int
        The data's rows, and the padded count.
    dtype
        The backend's dtype of the weights (the model's).

    Returns
    -------
    backend array, (size,)
    """
    if weights is None:
        host = np.zeros(size, dtype=backend.dtype_name(dtype))
        host[:n] = 1
        return backend.asarray(host, dtype)
    return pad(backend, weights, size)


def first_rows(backend: Backend, array: Array, n: int) -> Array:
    """The first ``n`` rows of ``backend``'s ``array`` (computed on padded rows), taken on
    the host where it has more (slicing on the device compiles a program per ``n``).

    Parameters
    ----------
    backend : Backend
    array : backend array, (size, ...)
    n : int

    Returns
    -------
    backend array, (n, ...)
    """
    if array.shape[0] == n:
        return array
    return backend.asarray(backend.to_numpy(array)[:n])


def training_rows(n: int, multiple: int = 1) -> int:
    """The row count ``n`` training rows pad to: the ladder's size for ``n + 1`` rows (at
    least one row of weight 0, which the batches' filling points at), a multiple of
    ``multiple`` (a mesh's device count).

    Parameters
    ----------
    n : int
        The training rows (>= 1).
    multiple : int

    Returns
    -------
    int
        More than ``n``.
    """
    return bucket(n + 1, multiple)


def host_weights(weights: np.ndarray | None, n: int, size: int, dtype_name: str) -> np.ndarray:
    """The rows' weights ``(size,)`` on the host: ``weights`` (or 1 for each of the ``n``
    rows where None) followed by zeros.

    Parameters
    ----------
    weights : numpy.ndarray (n,) or None
    n, size : int
    dtype_name : str
        The model's dtype (``"float32"``...).

    Returns
    -------
    numpy.ndarray, (size,)
    """
    out = np.zeros(size, dtype=dtype_name)
    out[:n] = 1 if weights is None else weights
    return out


def batch_plan(batches: np.ndarray, last: np.ndarray | None,
               n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The epochs' batches laid out for padded training rows: every batch of the batch
    size, as many batch slots as the ``n_rows`` rows fill.

    Parameters
    ----------
    batches : numpy.ndarray, (n_epochs, n_batches, batch_size)
        Row indices of each epoch's full batches.
    last : numpy.ndarray (n_epochs, r) or None
        Row indices of each epoch's last, partial batch (``r < batch_size``).
    n_rows : int
        The padded rows (`training_rows`); the last is a row of weight 0.

    Returns
    -------
    indices : numpy.ndarray, (n_epochs, ceil(n_rows / batch_size), batch_size)
        The batches in order, then slots filled with ``n_rows - 1``; the partial
        batch is filled up with it too.
    counts : numpy.ndarray of int32, (n_epochs, ceil(n_rows / batch_size))
        The data's rows in each slot (0 for a slot beyond the epoch's batches).

    Examples
    --------
    >>> indices, counts = batch_plan(np.array([[[2, 0]]]), np.array([[1]]), 4)
    >>> indices.tolist(), counts.tolist()
    ([[[2, 0], [1, 3]]], [[2, 1]])
    """
    n_epochs, n_full, size = batches.shape
    slots = -(-n_rows // size)
    indices = np.full((n_epochs, slots, size), n_rows - 1, dtype=np.int32)
    counts = np.zeros((n_epochs, slots), dtype=np.int32)
    indices[:, :n_full] = batches
    counts[:, :n_full] = size
    if last is not None:
        indices[:, n_full, :last.shape[1]] = last
        counts[:, n_full] = last.shape[1]
    return indices, counts
