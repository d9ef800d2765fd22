"""Each process its own training rows, on a JAX mesh over several processes.

With ``backends.get_backend("jax", devices="all", process_local=True)`` (after
``jax.distributed.initialize()`` in every process), `mlp.MLP.fit` takes each
process's own rows ``x``, ``y`` (and ``sample_weight``) rather than the same full
arrays in every process. What the fit trains on is defined as follows.

- **The global rows** are the processes' rows concatenated in process order
  (process 0's first): ``N = n_0 + n_1 + ...`` rows. A fit equals the fit of one
  process holding those ``N`` rows (float64 to rounding): the same seeded
  permutation, drawn over the ``N`` global rows, orders every epoch's batches, and
  each batch holds the same rows with the same weights.
- **The layout.** Each process pads its rows with rows of zeros of weight 0 to
  ``L`` rows, one size for all (`layout`: the size `mlp.buckets.training_rows` gives
  the largest process's count, a multiple of the process's device count, so at
  least one padding row in every block). The global arrays hold ``P * L`` rows,
  process ``p``'s block at rows ``p * L`` to ``(p + 1) * L``, built by
  `jax.make_array_from_process_local_data`: each device receives only its own
  ``L / d`` rows, and no process ever holds another's. A batch's global row ``g``
  lies at `ProcessRows.physical` ``(g)``, and its dropout masks follow ``g``
  (`ProcessRows.numbers`, placed beside the rows). Before that, a process's rows are checked
  on its host (``x``) and its first device (targets and weights, as `fit` checks
  any data), never replicated.
- **Agreement.** The processes exchange a few numbers only (`gather_numbers`): each
  one's row count, whether it refused its data (a process whose rows are refused
  raises its own error; the others raise one naming it, instead of waiting for it),
  a hash of its validation data (which must be the same everywhere), and for
  ``class_weight="balanced"`` each class's count (the classes' weights are those of
  all ``N`` rows).

``validation_data`` is the same full pair in every process (replicated, as
`mlp.MLP.evaluate` takes data); ``validation_split`` is refused (it would split
rows no process holds). `predict` and `evaluate` take the same data in every
process, as on any mesh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import buckets
from ._typing import Array

if TYPE_CHECKING:
    from .backends import Backend
    from .model import MLP
    from .training import TrainingData
    from .weights import ClassWeight

_Result = TypeVar("_Result")


def process_local(backend: Backend) -> bool:
    """Tell whether ``backend`` takes each process's own training rows.

    Parameters
    ----------
    backend : Backend
        Any backend.

    Returns
    -------
    bool
        True for a JAX mesh built with ``process_local=True``.
    """
    return bool(getattr(backend, "process_local", False))


@dataclass(frozen=True)
class ProcessRows:
    """Where the global rows lie in the global arrays of process-local training data.

    Parameters
    ----------
    counts : tuple of int
        Each process's own rows, in process order.
    size : int
        The rows of each process's block (its rows, then padding rows of weight 0).
    rank : int
        This process's place in that order.
    """

    counts: tuple[int, ...]
    size: int
    rank: int = 0

    @property
    def n(self) -> int:
        """The global rows (every process's, together)."""
        return sum(self.counts)

    def physical(self, rows: np.ndarray) -> np.ndarray:
        """The positions in the global arrays of the global rows ``rows``.

        Parameters
        ----------
        rows : numpy.ndarray of int
            Global row numbers ``0 <= g < n`` (any shape).

        Returns
        -------
        numpy.ndarray
            Same shape: row ``g`` of process ``p`` (the ``i``-th of its own) lies at
            ``p * size + i``.

        Examples
        --------
        >>> ProcessRows((3, 2), 4, 0).physical(np.arange(5)).tolist()
        [0, 1, 2, 4, 5]
        """
        rows = np.asarray(rows)
        starts = np.cumsum((0, *self.counts[:-1]))
        owner = np.searchsorted(starts, rows, side="right") - 1
        return (rows + (owner * self.size - starts[owner])).astype(rows.dtype)

    def numbers(self) -> np.ndarray:
        """The global numbers of this process's own rows, which their dropout masks follow
        (`mlp.dropout`).

        Returns
        -------
        numpy.ndarray, (counts[rank],), int32
            ``start, start + 1, ...``: ``start`` the rows of the processes before it.

        Examples
        --------
        >>> ProcessRows((3, 2), 4, 1).numbers().tolist()
        [3, 4]
        """
        start = sum(self.counts[:self.rank])
        return np.arange(start, start + self.counts[self.rank], dtype=np.int32)

    def own(self, array: Array) -> np.ndarray:
        """Take this process's own rows of a global array laid out so.

        They are read from its devices' shards, gathering nothing from other processes.

        Parameters
        ----------
        array : jax.Array, (len(counts) * size, ...)
            Training rows in this layout (``x``, targets or weights).

        Returns
        -------
        numpy.ndarray, (counts[rank], ...)
            This process's rows, without its padding rows.
        """
        shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
        seen, parts = set(), []
        for shard in shards:  # (a replica of the same rows counts once)
            if (shard.index[0].start or 0) not in seen:
                seen.add(shard.index[0].start or 0)
                parts.append(np.asarray(shard.data))
        return np.concatenate(parts)[:self.counts[self.rank]]


def layout(counts: Sequence[int] | np.ndarray, per_process_devices: int, rank: int = 0
           ) -> ProcessRows:
    """Lay out process-local rows: ``counts`` rows in each process, one block size.

    The block size is `mlp.buckets.training_rows` of the largest count, a multiple of
    ``per_process_devices``.

    Parameters
    ----------
    counts : sequence or numpy.ndarray of int
        Each process's own rows.
    per_process_devices : int
        The mesh's devices in each process.
    rank : int
        This process's place in process order.

    Returns
    -------
    ProcessRows
        Where the global rows lie in the global arrays.
    """
    counts = tuple(int(c) for c in counts)
    return ProcessRows(counts, buckets.training_rows(max(counts), per_process_devices), rank)


def agreement(backend: Backend) -> Callable[[int], int] | None:
    """Make the processes of a mesh agree on a chunk length.

    `mlp.training.ChunkPlanner` chooses it from each process's own timings, but every
    process must run the same compiled calls, or their collectives would not match.

    Parameters
    ----------
    backend : Backend
        Any backend.

    Returns
    -------
    callable or None
        On a mesh over several processes, ``agree(chunk) -> int``: the shortest of the
        processes' chunk lengths (a collective); None elsewhere.
    """
    if getattr(backend, "n_processes", 1) < 2:
        return None
    gather = backend.gather_numbers  # type: ignore[attr-defined]

    def agree(chunk: int) -> int:
        return int(np.min(gather(np.array([chunk]))))

    return agree


def _agreed(backend: Any, step: Callable[[], _Result],
            numbers: Callable[[_Result], Sequence[int]], width: int
            ) -> tuple[_Result, np.ndarray]:
    """``step()`` in this process, then every process's ``numbers(result)`` (``width`` of
    them) as ``(n_processes, width)``; a process whose step raised raises its own error,
    the others an error naming it (never a wait for a process that stopped)."""
    result: Any = None
    refusal: BaseException | None = None
    try:
        result = step()
        mine = [0, *numbers(result)]
    except Exception as exc:  # noqa: BLE001 - re-raised after the processes agree
        refusal, mine = exc, [1] + [0] * width
    gathered = backend.gather_numbers(np.array(mine, dtype=np.int64))
    if refusal is not None:
        raise refusal
    refused = [int(p) for p in np.flatnonzero(gathered[:, 0])]
    if refused:
        which = ", ".join(str(p) for p in refused)
        raise ValueError(f"process {which} of {gathered.shape[0]} refused its training rows "
                         f"(its own error says why), so fit stops in every process; nothing "
                         f"changed")
    return result, gathered[:, 1:]


def check_settings(validation_split: float | None) -> None:
    """Refuse what process-local rows cannot do.

    Parameters
    ----------
    validation_split : float or None
        As `mlp.MLP.fit` takes it.

    Raises
    ------
    ValueError
        ``validation_split`` given.
    """
    if validation_split is not None:
        raise ValueError("validation_split cannot split process-local rows (no process holds "
                         "them all); pass validation_data=(x_val, y_val), the same in every "
                         "process")


def training_data(model: MLP, x: Array, y: Array, validation_data: Sequence[Array] | None,
                  validation_split: float | None, sample_weight: Array | None,
                  class_weight: ClassWeight) -> TrainingData:
    """Check and place this process's training rows (`mlp.training.training_data`).

    This process's ``(x, y)`` and weights are checked on its host, agreed with the
    other processes and placed as its block of the global arrays (`layout`).

    Parameters
    ----------
    model : MLP
        On a backend with ``process_local=True``.
    x : array-like, (n, n_features)
        This process's own rows.
    y : array-like
        Their targets, as `mlp.MLP.fit` takes them.
    validation_data : (x_val, y_val) or None
        The same in every process.
    validation_split : None
        Refused where given.
    sample_weight : array-like (n,) or None
        The weights of this process's own rows.
    class_weight : dict, "balanced" or None
        ``"balanced"`` weighs the classes by their counts over every process's rows.

    Returns
    -------
    TrainingData
        The global arrays (``P * L`` rows), ``n`` the global rows, ``rows`` their
        `ProcessRows`.

    Raises
    ------
    ValueError, TypeError
        This process's data refused (the message names the argument), or another
        process's (the message names the process).
    """
    from .training import TrainingData

    backend: Any = model.backend  # a ShardedJaxBackend (`process_local`)
    balanced = isinstance(class_weight, str) and class_weight == "balanced"

    def prepare() -> tuple[Any, ...]:
        check_settings(validation_split)
        model.spec.loss.check_takes_weights("rows of weight 0 (process-local rows are "
                                            "padded with them)")
        with backend.on_process_device():  # (this process's rows: never replicated)
            own = model.prepare_data(x, y, sample_weight, None if balanced else class_weight,
                                     on_host=True)
        val = None
        if validation_data is not None:
            x_val, y_val = validation_data
            val = model.prepare_data(x_val, y_val, None, names=("x_val", "y_val",
                                                               "sample_weight"), on_host=True)
        return own, val, _class_counts(model, own) if balanced else []

    width = 2 + (model.n_outputs if model.n_outputs > 1 else 2) * balanced
    (own, val, _), numbers = _agreed(
        backend, prepare, lambda r: [r[0][0].shape[0], _digest(model, r[1]), *r[2]], width)
    _check_same_validation(numbers[:, 1])
    x_own, targets, labels, w = own
    if balanced:
        with backend.on_process_device():
            w, _ = _agreed(backend, lambda: _balanced(model, sample_weight, targets, labels,
                                                      numbers[:, 2:].sum(axis=0)),
                           lambda _: [], 0)
    rows = layout(numbers[:, 0], backend.n_devices // backend.n_processes, backend.process_rank)
    n_own = int(x_own.shape[0])
    weights = None if w is None else _host(model, w)
    global_ids = (buckets.pad_host(rows.numbers(), rows.size),) if model.spec.drops else ()
    gx, gy, gw, *ids = backend.place_local_rows(  # (ids: what dropout masks follow)
        buckets.pad_host(_host(model, x_own), rows.size),
        buckets.pad_host(_host(model, targets), rows.size),
        buckets.host_weights(weights, n_own, rows.size, model.dtype_name), *global_ids)
    return TrainingData(gx, gy, None if val is None else model.pad_prepared(*val), gw, rows.n,
                        padded=True, n_val=-1 if val is None else val[0].shape[0],
                        val_weights=False, own_weights=w is not None, rows=rows,
                        ids=ids[0] if ids else None)


def _digest(model: MLP, prepared: tuple[Any, ...] | None) -> int:
    """A 63-bit hash of prepared validation data (0 for none), to compare across processes."""
    if prepared is None:
        return 0
    digest = hashlib.blake2b(digest_size=8)
    for array in prepared:
        if array is not None:
            host = np.ascontiguousarray(_host(model, array))
            digest.update(f"{host.dtype}{host.shape};".encode())
            digest.update(host.data)
    return int.from_bytes(digest.digest(), "little") >> 1


def _check_same_validation(digests: np.ndarray) -> None:
    """Refuse validation data that differs between the processes (every process computes
    the same validation metrics from it, and early stopping must stop them all alike)."""
    if np.any(digests != digests[0]):
        differ = [int(p) for p in np.flatnonzero(digests != digests[0])]
        raise ValueError(
            f"validation_data differs between the processes (process 0's and process "
            f"{differ[0]}'s): with process_local=True it is the same pair in every process "
            f"(replicated on every device), only x, y and sample_weight are each process's "
            f"own; nothing changed")


def _host(model: MLP, array: Any) -> np.ndarray:
    """``array`` (the backend's or NumPy) as NumPy."""
    return np.asarray(model.backend.to_numpy(array) if model.backend.is_native(array)
                      else array)


def _class_counts(model: MLP, prepared: tuple[Any, ...]) -> list[int]:
    """This process's rows of each class (for ``class_weight="balanced"``)."""
    from .weights import _host_labels

    classes, n_classes = _host_labels(model, prepared[1], prepared[2])
    return [int(c) for c in np.bincount(classes, minlength=n_classes)]


def _balanced(model: MLP, sample_weight: Array | None, targets: Array, labels: Array | None,
              counts: np.ndarray) -> Array:
    """The rows' weights with ``class_weight="balanced"`` over every process's rows (their
    classes' ``counts``): the classes' weights ``N / (n_classes_present * count)``, as
    one process holding every row computes them."""
    from .weights import row_weights

    present = int(np.count_nonzero(counts))
    per_class = float(np.sum(counts)) / (present * np.maximum(counts, 1))
    weights = row_weights(model, sample_weight, {c: float(v) for c, v in enumerate(per_class)
                                                 if counts[c]}, targets, labels)
    assert weights is not None  # (a class weight is given)
    return weights
