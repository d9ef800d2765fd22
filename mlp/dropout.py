"""Dropout masks from a counter-based generator, written in array-API integer operations.

Inverted dropout multiplies a layer's input by a mask that is 0 with probability
``rate`` and ``1 / (1 - rate)`` otherwise, while training only. The mask of row ``r``
of the training data in epoch ``e`` (its index in the rows `fit` trains on, whatever
batch, device, padding, window read from disk or process it lands in; in a stream of
batches, its place in the epoch's stream), at unit ``u`` (numbered through every layer's
input, the input features first), is a hash of ``(key, e, r, u)``: the key follows
from the model's seed (`dropout_key`), so the masks are the same on every backend,
device count, batch order and resume, with no generator state to carry and no mask to
move from the host. What does not change within an epoch is hashed on the host once
(the epoch's key, `epoch_streams`) or once per network (the units' hashes); a step
hashes its rows, then every (row, unit) pair of all layers at once (`masks`).

The hash is 32-bit integer arithmetic on int32 arrays, multiplication wrapping modulo
``2**32`` (NumPy, PyTorch, JAX and array-api-strict all wrap; no 64-bit or unsigned
integer type is needed, so JAX without x64 and PyTorch run it as they are); right
shifts are made logical by masking off the sign's copies. The mask keeps a unit where
the hash's top 24 bits are at least ``round(rate * 2**24)``: the drop probability is
``rate`` to within ``2**-25`` (kept units are scaled by the inverse of the exact keep
probability), and the decision is an integer comparison, the same everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._typing import Array, Namespace

#: Bits of the hash that decide a unit (the top 24 of 32).
_BITS = 24
#: The two odd multipliers of the mixing function (Chris Wellons' ``lowbias32``).
_M1, _M2 = 0x21F0AAAD, 0x735A2D97
#: Multipliers that spread the row and the unit numbers before they are mixed.
_ROW, _UNIT = 0x27D4EB2F, 0x165667B1
#: The stream id of dropout in the seed's streams (0: initial weights, 1: shuffles, 2: split).
STREAM = 3


def dropout_key(seed: int) -> tuple[int, int]:
    """Two 31-bit words from ``seed``'s dropout stream (`STREAM`): the masks' key.

    Parameters
    ----------
    seed : int
        The model's seed.

    Returns
    -------
    tuple of int
        ``(k0, k1)``, each in ``[0, 2**31)`` (an int32 holds them).
    """
    words = np.random.SeedSequence([seed, STREAM]).generate_state(2, dtype=np.uint32)
    return int(words[0]) >> 1, int(words[1]) >> 1


def epoch_streams(seed: int, first_epoch: int, n_epochs: int) -> np.ndarray:
    """The masks' key of each of ``n_epochs`` epochs from ``first_epoch``, on the host.

    An epoch's key is ``mix(mix(k0 ^ epoch) ^ k1)`` (`dropout_key`, the epoch mod
    ``2**31``).

    Parameters
    ----------
    seed : int
        The model's seed (`dropout_key`).
    first_epoch : int
        The number of the first epoch (epochs count over every `fit`).
    n_epochs : int
        How many epochs.

    Returns
    -------
    numpy.ndarray, (n_epochs, 1), int32
        One row per epoch (`masks` reads one row).
    """
    k0, k1 = dropout_key(seed)
    epochs = ((np.arange(n_epochs, dtype=np.int64) + first_epoch) % 2**31).astype(np.int32)
    keys = mix(np, np.bitwise_xor(mix(np, np.bitwise_xor(epochs, np.int32(k0))), np.int32(k1)))
    return keys[:, None]


def _shift(xp: Namespace, h: Array, k: int) -> Array:
    """``h >> k`` as an unsigned 32-bit shift (the sign's copies masked off)."""
    return xp.bitwise_and(xp.bitwise_right_shift(h, k), (1 << (32 - k)) - 1)


def _signed(value: int) -> int:
    """``value mod 2**32`` as the int32 with the same bits."""
    value %= 2**32
    return value - 2**32 if value >= 2**31 else value


def mix(xp: Namespace, h: Array) -> Array:
    """The 32-bit mixing function ``lowbias32`` on int32 ``h`` (wrapping products).

    Parameters
    ----------
    xp : namespace
        The array namespace of ``h``.
    h : array of int32
        Values to mix, any shape.

    Returns
    -------
    array of int32
        The mixed values, ``h``'s shape.
    """
    h = xp.bitwise_xor(h, _shift(xp, h, 16))
    h = h * _signed(_M1)
    h = xp.bitwise_xor(h, _shift(xp, h, 15))
    h = h * _signed(_M2)
    return xp.bitwise_xor(h, _shift(xp, h, 15))


def threshold(rate: float) -> int:
    """The smallest 24-bit value a unit keeps at drop ``rate``.

    Parameters
    ----------
    rate : float
        The drop rate, in ``[0, 1)``.

    Returns
    -------
    int
        ``round(rate * 2**24)``.
    """
    return int(round(rate * 2**_BITS))


def check_rate(rate: float, name: str) -> None:
    """Refuse a drop rate below 1 that the 24 bits it is applied with round to 1 (every
    unit dropped: nothing would train, and the kept units' scale would divide by 0).

    Parameters
    ----------
    rate : float
        A drop rate in ``[0, 1)``.
    name : str
        How the message names it (``dropout``, ``input_dropout``).

    Raises
    ------
    ValueError
        ``round(rate * 2**24)`` is ``2**24``.
    """
    if threshold(rate) >= 2**_BITS:
        raise ValueError(f"{name}={rate!r} drops every unit: a rate is applied to 24 bits "
                         f"(round(rate * 2**24) / 2**24), which round it to 1; the largest "
                         f"rate that keeps any is 1 - 2**-24 = {1 - 2**-_BITS!r}")


def keep_scale(rate: float) -> float:
    """A kept unit's scale at drop ``rate``, so that the mask's mean is exactly 1.

    Parameters
    ----------
    rate : float
        The drop rate, in ``[0, 1)``.

    Returns
    -------
    float
        ``1 / (1 - p)``, ``p = threshold(rate) / 2**24`` the exact drop probability.
    """
    return float(2**_BITS / (2**_BITS - threshold(rate)))


@functools.lru_cache(maxsize=64)
def _units(rates: tuple[float, ...], widths: tuple[int, ...]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[tuple[int, int, int], ...]]:
    """Host constants of the units that drop, every layer's side by side: their hashes
    (from each unit's number among all layers' inputs, so a layer's masks do not depend
    on the other layers' rates), thresholds and scales, and ``(layer, start, stop)``
    of each layer with a rate above 0."""
    numbers, thresholds, scales, parts = [], [], [], []
    offset = start = 0
    for layer, (rate, width) in enumerate(zip(rates, widths)):
        if rate > 0:
            numbers.append(np.arange(offset, offset + width))
            thresholds.append(np.full(width, threshold(rate)))
            scales.append(np.full(width, keep_scale(rate)))
            parts.append((layer, start, start + width))
            start += width
        offset += width
    ids = (np.concatenate(numbers) % 2**31).astype(np.int32)
    return (mix(np, ids * np.int32(_signed(_UNIT)) + np.int32(1)),
            np.concatenate(thresholds).astype(np.int32), np.concatenate(scales), tuple(parts))


def masks(xp: Namespace, rates: Sequence[float], widths: Sequence[int], stream: Array,
          rows: Array, dtype: Any) -> list[Array | None]:
    """The inverted-dropout masks of a batch, one per layer's input.

    A layer's mask is ``(n, width)`` of 0 and ``1 / (1 - rate)`` in ``dtype``, or None
    where the layer's rate is 0. Unit ``u`` of row ``r`` is kept where the top 24 bits
    of ``mix(mix(r * c + key) ^ unit_hash[u])`` reach the unit's threshold: two mixes,
    all layers at once.

    Parameters
    ----------
    xp : namespace
        The backend's array namespace.
    rates : sequence of float
        The drop rate of each layer's input (``rates[0]``: the input features).
    widths : sequence of int
        Each layer's input width (``layer_sizes[:-1]``).
    stream : array, (1,), int32
        The epoch's key (a row of `epoch_streams`).
    rows : array, (n,), int32
        The batch's row indices in the training data.
    dtype : dtype
        The model's floating dtype.

    Returns
    -------
    list of (array (n, width) or None)
        The masks, layer by layer.
    """
    unit_hash, thresholds, scales, parts = _units(tuple(rates), tuple(widths))
    dev = _device(rows)
    row_hash = mix(xp, xp.astype(rows, xp.int32) * _signed(_ROW) + stream)
    h = mix(xp, xp.bitwise_xor(row_hash[:, None], xp.asarray(unit_hash, device=dev)[None, :]))
    kept = _shift(xp, h, 32 - _BITS) >= xp.asarray(thresholds, device=dev)
    scale = xp.asarray(scales, dtype=dtype, device=dev)
    both = xp.where(kept, scale, xp.zeros_like(scale))
    out: list[Array | None] = [None] * len(widths)
    for layer, start, stop in parts:
        out[layer] = both if len(parts) == 1 else both[:, start:stop]
    return out


def _device(array: Array) -> Any:
    from array_api_compat import device

    return device(array)
