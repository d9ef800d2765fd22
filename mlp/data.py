"""Data that is not in memory: arrays on disk read by batch, and streams of batches.

`mlp.MLP.fit`, `mlp.MLP.evaluate` and `mlp.MLP.predict` take, besides arrays in
memory:

- *arrays on disk* (`is_array_on_disk`): ``numpy.memmap``, ``h5py.Dataset``,
  ``zarr.Array`` - anything with ``shape``, ``dtype`` and indexing by a sorted
  array of row numbers. Each batch's rows are read when the batch is needed (one
  sorted read, then put in the batch's shuffled order, `read_rows`), never the
  whole array; evaluation and prediction read blocks of rows (`BLOCK_BYTES`);
- *streams of batches* (`is_stream`): a re-iterable (a PyTorch ``DataLoader``, a
  Grain loader, a list of batches) or a function of no arguments returning a fresh
  iterator, iterated once per epoch, yielding ``(x, y)`` or ``(x, y, sample_weight)``.

Training reads them through a *feed* (`Feed`): what the engine's fed run
(`mlp.engine.feed`) asks of any source of batches - ``windows(rows)``, one epoch's
batches prepared on the device in windows of consecutive batches (`Window`, about
`WINDOW_BYTES` each, read ahead in a background thread, `read_ahead`), ``blocks()``
for a pass over the training rows (a diverged fit's loss), and what identifies the
data (``fingerprint``). `ArrayFeed` serves arrays
on disk (the batches that `mlp.engine.pipeline.batch_indices` draws, so a run
equals the same data in memory), `StreamFeed` a stream (its own batches, in its
own order). A feed of another kind (e.g. each process's own rows on a mesh)
plugs in by the same three members.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from array_api_compat import device, is_array_api_obj

from ._typing import Array
from .tree import describe as _what

if TYPE_CHECKING:
    from .model import MLP

#: Bytes of rows one block of `blocks_of` reads for evaluation and prediction.
BLOCK_BYTES = 2**24
#: Batches `read_ahead` keeps ready ahead of the step that takes them.
READ_AHEAD = 2

#: Libraries whose arrays are in memory even though they have ``shape`` and ``dtype``.
_IN_MEMORY_LIBRARIES = frozenset({"pandas", "polars", "builtins", "torch", "jax", "jaxlib",
                                  "cupy", "numpy", "array_api_strict", "dask", "xarray",
                                  "scipy", "sparse", "tensorflow", "mlx", "cudf", "pyarrow",
                                  "ndonnx"})

#: ``(x, y, w)``: one prepared batch on the device (``w`` None without row weights).
Batch = tuple[Array, Array, Array | None]
#: ``(x, y, w, full, rest, ids)``: consecutive batches of an epoch, their rows prepared on
#: the device in the epoch's order, ``full: (k, batch_size)`` and ``rest: (r,)`` (or None)
#: host indices into those rows (the last batch of another size); ``full`` None: one batch
#: of every row (`Feed.windows`). ``ids: (len(x),)`` int32 (host) are the rows' numbers in
#: the training data, which their dropout masks follow (`mlp.dropout`): their indices among
#: the training rows, or for a stream their places in the epoch's stream of rows; None:
#: the window holds every row in order.
Window = tuple[Array, Array, Array | None, np.ndarray | None, np.ndarray | None,
               np.ndarray | None]
#: Bytes of rows one window of batches holds (at least one batch): the run's fixed
#: cost per call (building its executor) is paid once per window.
WINDOW_BYTES = 2**25


def is_array_on_disk(value: object) -> bool:
    """Whether ``value`` is an array that `fit`, `evaluate` and `predict` read by rows
    rather than whole: a ``numpy.memmap``, or an object with ``shape`` (a tuple),
    ``dtype`` and ``__getitem__`` that no in-memory array library owns (``h5py.Dataset``,
    ``zarr.Array``). Neither h5py nor zarr is imported to tell.

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    if isinstance(value, np.memmap):
        return True
    if isinstance(value, np.ndarray) or is_array_api_obj(value):
        return False
    if type(value).__module__.partition(".")[0] in _IN_MEMORY_LIBRARIES:
        return False
    try:
        shape = getattr(value, "shape", None)
    except Exception:  # noqa: BLE001 - e.g. a dataset of a closed h5py file
        kind = type(value)
        return hasattr(kind, "shape") and hasattr(kind, "dtype") and hasattr(kind, "__getitem__")
    return isinstance(shape, tuple) and hasattr(value, "dtype") and hasattr(value, "__getitem__")


def is_stream(value: object) -> bool:
    """Whether ``value`` is a source of batches rather than an array: a function of no
    arguments, or an iterable that is no array (no ``shape``, not a list of numbers:
    a list counts as a stream when its first item is a tuple ``(x, ...)`` whose first item
    is an array of rows, not a row of numbers).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    if value is None or is_array_on_disk(value) or hasattr(value, "shape") \
            or isinstance(value, (str, bytes, dict)):
        return False
    if isinstance(value, (list, tuple)):
        # a list of batches: its first item a tuple whose first item is an array of rows;
        # a tuple of numbers (a row, e.g. of list(zip(a, b)): NumPy scalars) makes an x
        first = value[0] if value else None
        return isinstance(first, tuple) and bool(first) and len(
            getattr(first[0], "shape", ())) >= 1
    return callable(value) or hasattr(value, "__iter__")


def _dtype_kind(array: Any) -> str:
    try:
        return np.dtype(array.dtype).kind
    except TypeError:
        return "?"


def check_on_disk(array: Any, name: str, n_rows: int | None = None) -> int:
    """Refuse an array on disk that cannot be read by rows as numbers; its row count.

    Parameters
    ----------
    array : array on disk
    name : str
        How messages name it (``x``, ``y``, ``x_val``...).
    n_rows : int or None
        The rows it must have (those of ``x``), or None.

    Returns
    -------
    int
        Its number of rows.

    Raises
    ------
    TypeError
        Not real numbers, or no indexing by sorted row numbers.
    ValueError
        No rows, or another number of rows than ``n_rows``.
    """
    try:
        shape = tuple(array.shape)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # a closed h5py file
        raise ValueError(f"{name} ({type(array).__name__}) cannot be read ({type(exc).__name__}:"
                         f" {exc}); was its file closed?") from exc
    if _dtype_kind(array) not in "biuf" or not shape:
        raise TypeError(f"{name} must be an array of real numbers with rows; the "
                        f"{type(array).__name__} given has dtype {array.dtype} and shape "
                        f"{shape}")
    n = int(shape[0])
    if n == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if n_rows is not None and n != n_rows:
        raise ValueError(f"x and {name} have different numbers of samples: {n_rows} and {n}")
    try:
        probe = read_rows(array, np.array([0, n - 1]) if n > 1 else np.array([0]), name)
    except _ClosedError as exc:
        raise ValueError(str(exc)) from exc
    if probe.shape[0] != min(n, 2):
        raise TypeError(f"{name} ({type(array).__name__}) does not take a sorted array of row "
                        f"numbers as an index; read rows by index (x[[0, 5, 9]]) or load it "
                        f"into memory with numpy.asarray")
    return n


class _ClosedError(ValueError):
    """An array on disk that could not be read (a closed file, a missing store)."""


def _take_sorted(array: Any, rows: np.ndarray, name: str) -> np.ndarray:
    """``array``'s rows at the sorted, distinct ``rows`` (one read; a slice where they are
    consecutive)."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    try:
        if hi - lo == rows.shape[0]:
            block = array[lo:hi]
        elif isinstance(array, np.ndarray):
            block = np.take(array, rows, axis=0)
        elif hasattr(array, "oindex"):  # zarr: orthogonal selection by row numbers
            block = array.oindex[rows]
        else:
            block = array[rows]
    except (TypeError, IndexError) as exc:
        raise TypeError(f"{name} ({type(array).__name__}) does not take a sorted array of row "
                        f"numbers as an index ({type(exc).__name__}: {exc}); read rows by "
                        f"index or load it into memory with numpy.asarray") from exc
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # closed file, store gone
        raise _ClosedError(f"{name} ({type(array).__name__}) could not be read "
                           f"({type(exc).__name__}: {exc}); was its file closed?") from exc
    return np.asarray(block)


def read_rows(array: Any, rows: np.ndarray, name: str = "x") -> np.ndarray:
    """``array[rows]`` as a NumPy array, ``rows`` in any order (distinct): read in one
    sorted read (`_take_sorted`), then put in the order of ``rows``.

    Parameters
    ----------
    array : array on disk or in memory, (n, ...)
    rows : numpy.ndarray of int, (m,)
    name : str
        How messages name ``array``.

    Returns
    -------
    numpy.ndarray, (m, ...)
    """
    if bool(np.all(rows[1:] > rows[:-1])):  # sorted already (a window's rows)
        return _take_sorted(array, rows, name)
    order = np.argsort(rows, kind="stable")
    block = _take_sorted(array, rows[order], name)
    out = np.empty_like(block)
    out[order] = block
    return out


def blocks_of(n: int, row_bytes: int) -> Iterator[np.ndarray]:
    """Consecutive row numbers ``0 .. n - 1`` in blocks of about `BLOCK_BYTES`.

    Parameters
    ----------
    n : int
    row_bytes : int
        Bytes one row takes.

    Yields
    ------
    numpy.ndarray of int
        One block's row numbers.
    """
    size = max(1, BLOCK_BYTES // max(row_bytes, 1))
    for lo in range(0, n, size):
        yield np.arange(lo, min(lo + size, n))


# ---------------------------------------------------------------- read ahead
class _Failed:
    """An exception raised in the reading thread, carried to the main thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


class _Reader:
    """The background thread of `read_ahead` and its bounded queue."""

    def __init__(self, items: Iterable[Any], depth: int) -> None:
        self.items = items
        self.ready: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.read, name="mlp-read-ahead", daemon=True)

    def put(self, item: Any) -> bool:
        """Queue ``item`` unless told to stop first; whether it was queued."""
        while not self.stop.is_set():
            try:
                self.ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read(self) -> None:
        """The thread: every item, then `_DONE` (or the exception raised, `_Failed`)."""
        try:
            for item in self.items:
                if not self.put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.put(_Failed(exc))
            return
        self.put(_DONE)

    def consume(self) -> Iterator[Any]:
        """The items in order (in the caller's thread); a reading error raised here."""
        while True:
            item = self.ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self) -> None:
        """Stop the thread and wait for it (freeing it where it waits on a full queue)."""
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.ready.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.05)


@contextmanager
def read_ahead(items: Iterable[Any], depth: int = READ_AHEAD) -> Iterator[Iterator[Any]]:
    """``items`` read in a background thread, at most ``depth`` ahead of the consumer.

    The thread runs while the caller computes on the previous item, so reading (and
    moving to the device) overlaps the step. An exception raised while reading
    is raised in the caller's thread, as it was raised (the reader's traceback
    kept); leaving the ``with`` block (at the end, on an error, on Ctrl-C) stops
    the thread and waits for it.

    Parameters
    ----------
    items : iterable
        Iterated in the background thread only.
    depth : int
        Items kept ready (a bounded queue).

    Yields
    ------
    iterator
        The items, in order.
    """
    reader = _Reader(items, depth)
    reader.thread.start()
    try:
        yield reader.consume()
    finally:
        reader.close()


# ---------------------------------------------------------------- feeds
class Feed(Protocol):
    """What the fed run (`mlp.engine.feed`) and `fit` ask of a source of batches."""

    #: The training rows (0 where unknown until an epoch has run).
    n: int
    #: Batches per epoch, where known (else None).
    steps_per_epoch: int | None

    def windows(self, rows: tuple[np.ndarray, np.ndarray | None] | None
                ) -> Any:
        """A context manager giving one epoch's batches in windows (`Window`), read
        ahead: with ``rows`` (the epoch's host row indices, full batches then the rest),
        those rows; None: the source's own batches."""

    def blocks(self) -> Iterator[Batch]:
        """The training rows once, in prepared blocks (a loss over all of them)."""

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data (shapes and a hash), as `mlp.io.data_fingerprint`."""


class _Prepared:
    """Rows of arrays (on disk or in memory) prepared as the model trains on them."""

    def __init__(self, model: MLP, x: Any, y: Any, w: np.ndarray | None,
                 names: tuple[str, str] = ("x", "y"), rows: np.ndarray | None = None) -> None:
        self.model, self.x, self.y, self.w_host, self.names = model, x, y, w, names
        self.rows = rows  # the source's row of each row here (None: all, in order)
        self.n = int(x.shape[0] if rows is None else rows.shape[0])
        itemsize = max(np.dtype(x.dtype).itemsize, np.dtype(model.dtype_name).itemsize)
        self._row_bytes = itemsize * int(np.prod(x.shape[1:], dtype=np.int64))
        self.w = None if w is None else model.backend.asarray(
            w if rows is None else w[rows], model.dtype)

    def source_rows(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.rows is None else self.rows[rows]

    def host(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The raw rows ``(x, y, w)`` at ``rows`` (host arrays)."""
        src = self.source_rows(rows)
        w = None if self.w_host is None else self.w_host[src]
        return read_rows(self.x, src, self.names[0]), read_rows(self.y, src, self.names[1]), w

    def prepared(self, rows: np.ndarray, padded: bool = False
                 ) -> tuple[Array, Array, Array | None, Array | None]:
        """``(x, targets, labels, w)`` of ``rows``, checked and on the device
        (`mlp.MLP.prepare_data`; ``padded``: padded for evaluation)."""
        x, y, w = self.host(rows)
        model = self.model
        x_dev, targets, labels, _ = model.prepare_data(
            x, y, None, names=(*self.names, "sample_weight"), on_host=padded)
        w_dev = None if w is None else model.backend.asarray(w, model.dtype)
        if padded:
            return model.pad_prepared(x_dev, targets, labels, w_dev)
        return x_dev, targets, labels, w_dev

    def batch(self, rows: np.ndarray) -> Batch:
        x, targets, _, w = self.prepared(rows)
        return x, targets, w

    def row_bytes(self) -> int:
        """Bytes one row takes (in its own dtype or the model's, the larger)."""
        return self._row_bytes

    def blocks(self, padded: bool = False) -> Iterator[tuple[Array, Array, Array | None,
                                                             Array | None]]:
        for rows in blocks_of(self.n, self.row_bytes()):
            yield self.prepared(rows, padded)


def _window_batches(batch_size: int, row_bytes: int) -> int:
    """Batches of ``batch_size`` rows in a window of about `WINDOW_BYTES` (at least 1)."""
    return max(1, WINDOW_BYTES // max(batch_size * row_bytes, 1))


class ArrayFeed:
    """Training rows of arrays on disk (or in memory beside them), read by batch.

    Parameters
    ----------
    model : MLP
    x : array on disk, (n_rows, n_features)
    y : array (on disk or in memory), (n_rows, ...)
    w : numpy.ndarray (n_rows,) or None
        The rows' weights, checked, in the model's dtype.
    rows : numpy.ndarray of int or None
        The rows of ``x`` that train (sorted; a validation split's other part), or
        None for all.
    """

    steps_per_epoch: int | None = None

    def __init__(self, model: MLP, x: Any, y: Any, w: np.ndarray | None,
                 rows: np.ndarray | None = None) -> None:
        self.data = _Prepared(model, x, y, w, rows=rows)
        self.n = self.data.n
        self.model = model
        self.w = self.data.w  # the training rows' weights on the device, or None
        self.shape = (self.n, *tuple(x.shape[1:]))

    def _epoch(self, rows: tuple[np.ndarray, np.ndarray | None]) -> Iterator[Window]:
        full, rest = np.asarray(rows[0]), None if rows[1] is None else np.asarray(rows[1])
        model, (n_batches, size) = self.model, full.shape
        step = _window_batches(size, self.data.row_bytes())
        with model.backend.precision(model.dtype):  # (in the reading thread)
            for k in range(0, n_batches, step):
                part = full[k:k + step]
                last = rest if k + step >= n_batches else None
                taken = part.reshape(-1) if last is None else np.concatenate(
                    [part.reshape(-1), last])
                # the window's rows in sorted order (one read, no reordering copy); the
                # batches index them where each of their rows landed
                order = np.argsort(taken, kind="stable")
                where = np.empty_like(order)
                where[order] = np.arange(order.shape[0])
                x, y, w = self.data.batch(taken[order])
                m = part.size
                yield (x, y, w, where[:m].reshape(part.shape),
                       None if last is None else where[m:], taken[order].astype(np.int32))

    def windows(self, rows: tuple[np.ndarray, np.ndarray | None] | None) -> Any:
        """The epoch's batches at ``rows`` in windows (`Feed.windows`), read ahead."""
        if rows is None:  # one batch of every row (batch_size None, or >= the rows)
            return read_ahead(iter([(*self.data.batch(np.arange(self.n)), None, None, None)]))
        return read_ahead(self._epoch(rows))

    def blocks(self) -> Iterator[Batch]:
        """The training rows in blocks (`Feed.blocks`)."""
        for x, targets, _, w in self.data.blocks():
            yield x, targets, w

    def fingerprint(self) -> dict[str, Any]:
        """Shapes and one hash of the training rows as prepared (read block by block)."""
        digest, shapes = hashlib.blake2b(digest_size=16), {}
        to_numpy = self.model.backend.to_numpy
        shapes["x"] = [self.n, *self.shape[1:]]
        for x, targets, w in self.blocks():
            for name, array in (("x", x), ("y", targets), ("sample_weight", w)):
                if array is not None:
                    host = np.ascontiguousarray(to_numpy(array))
                    digest.update(f"{name}:{host.dtype}:{host.shape[1:]};".encode())
                    digest.update(host.data)
        return {"shapes": shapes, "hash": digest.hexdigest()}


class StreamFeed:
    """A stream of batches: a re-iterable or a function returning a fresh iterator,
    iterated once per epoch (`Feed`).

    Parameters
    ----------
    model : MLP
    source : iterable or callable
        Yields ``(x, y)`` or ``(x, y, sample_weight)`` per batch.
    epochs : int
        The epochs of the fit: a one-shot iterator is refused for more than one.
    """

    def __init__(self, model: MLP, source: Any, epochs: int) -> None:
        self.model, self.source = model, source
        self.one_shot = not callable(source) and iter(source) is source
        if self.one_shot and epochs > 1:
            raise ValueError(
                f"x is a one-shot iterator ({type(source).__name__}), which yields its "
                f"batches once, but epochs={epochs}: pass something iterated afresh every "
                f"epoch - a list of batches, a DataLoader, or a function returning a new "
                f"iterator (fit(lambda: make_batches(), epochs={epochs}))")
        self.n = 0
        self.epochs_read = 0
        self.weighted: bool | None = None
        try:
            self.steps_per_epoch: int | None = None if callable(source) else len(source)
        except TypeError:
            self.steps_per_epoch = None
        self.w = None

    def _iterator(self) -> Iterator[Any]:
        if callable(self.source):
            made = self.source()
            try:
                return iter(made)
            except TypeError:
                raise TypeError(f"the function given as x returned {type(made).__name__}, "
                                f"not an iterator of (x, y) batches") from None
        if self.one_shot and self.epochs_read:
            raise ValueError("x is a one-shot iterator that was used up by an earlier pass; "
                             "pass a re-iterable or a function returning a fresh iterator")
        return iter(self.source)

    def _batch(self, item: Any, k: int) -> Batch:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            what = (f"a {type(item).__name__} of {len(item)} items"
                    if isinstance(item, (tuple, list)) else _what(item))
            raise TypeError(f"batch {k} of the source is {what}; a source of batches yields "
                            f"(x, y) or (x, y, sample_weight)")
        from .weights import _sample_weight

        model = self.model
        x, targets, _, _ = model.prepare_data(item[0], item[1], names=(
            f"x of batch {k}", f"y of batch {k}", "sample_weight"))
        weighted = len(item) == 3 and item[2] is not None
        if self.weighted is not None and weighted != self.weighted:
            raise ValueError(f"batch {k} of the source {'has' if weighted else 'lacks'} "
                             f"sample weights where earlier batches did not; yield (x, y, "
                             f"sample_weight) for every batch or for none")
        self.weighted = weighted
        if not weighted:
            return x, targets, None
        model.spec.loss.check_takes_weights("sample_weight")
        w = _sample_weight(model, item[2], x.shape[0], f"sample_weight of batch {k}",
                           f"x of batch {k}")
        return x, targets, model.backend.asarray(w.astype(model.dtype_name), model.dtype)

    def _batches(self) -> Iterator[Batch]:
        n = k = 0
        model = self.model
        with model.backend.precision(model.dtype):  # (in the reading thread)
            for k, item in enumerate(self._iterator()):
                batch = self._batch(item, k)
                n += int(batch[0].shape[0])
                yield batch
        self.epochs_read += 1
        if n == 0:
            raise ValueError(f"the source of batches yielded no batch in epoch "
                             f"{self.epochs_read} (a used-up iterator?); a source must yield "
                             f"its batches afresh every epoch")
        self.n = n
        self.steps_per_epoch = k + 1

    def _windows(self) -> Iterator[Window]:
        """The epoch's batches, those of one size in a row joined into windows (a batch
        of another size closes its window, as its last batch). A row's number (the
        window's ``ids``) is its place in the epoch's stream of rows: 0, 1, 2, ..."""
        xp, group, start = self.model.xp, list[Batch](), 0
        for batch in self._batches():
            m = int(batch[0].shape[0])
            size = int(group[0][0].shape[0]) if group else m
            limit = _window_batches(size, 8 * int(np.prod(batch[0].shape[1:])))
            group.append(batch)
            if m != size or len(group) >= limit:
                yield self._joined(xp, group, size, m != size, start)
                start += sum(int(b[0].shape[0]) for b in group)
                group = []
        if group:
            yield self._joined(xp, group, int(group[0][0].shape[0]), False, start)

    @staticmethod
    def _joined(xp: Any, group: list[Batch], size: int, closed: bool, start: int) -> Window:
        """One window of ``group``'s batches (``closed``: its last is the rest), its first
        row the ``start``-th of the epoch."""
        full = len(group) - 1 if closed else len(group)
        parts = [xp.concat([b[i] for b in group], axis=0) if len(group) > 1 else group[0][i]
                 for i in (0, 1)]
        w = None if group[0][2] is None else (
            xp.concat([b[2] for b in group]) if len(group) > 1 else group[0][2])
        m = full * size
        rest = np.arange(m, m + int(group[-1][0].shape[0])) if closed else None
        ids = np.arange(start, start + (m if rest is None else m + rest.shape[0]),
                        dtype=np.int32)
        return (parts[0], parts[1], w, np.arange(m).reshape(full, size) if full else None,
                rest, ids)

    def windows(self, rows: Any) -> Any:
        """The source's batches of one epoch in windows (`Feed.windows`), read ahead."""
        return read_ahead(self._windows())

    def blocks(self) -> Iterator[Batch]:
        """The source's batches once more (`Feed.blocks`)."""
        yield from self._batches()

    def fingerprint(self) -> dict[str, Any]:
        """A stream is not read to identify it: no shapes, the hash of nothing."""
        return {"shapes": {}, "hash": hashlib.blake2b(digest_size=16).hexdigest()}


# ---------------------------------------------------------------- evaluation by blocks
class BlockData:
    """Data with targets on disk, evaluated block by block (validation data, `evaluate`).

    Parameters
    ----------
    model : MLP
    x, y : arrays (on disk or in memory), (n, ...)
    w : numpy.ndarray (n,) or None
        Checked row weights.
    names : (str, str)
        How messages name ``x`` and ``y``.
    rows : numpy.ndarray or None
        The rows of ``x`` that belong (a validation split's), or None for all.
    """

    def __init__(self, model: MLP, x: Any, y: Any, w: np.ndarray | None,
                 names: tuple[str, str] = ("x", "y"), rows: np.ndarray | None = None) -> None:
        self.data = _Prepared(model, x, y, w, names, rows)
        self.n = self.data.n

    def metrics(self, params: Any = None, prefix: str = "") -> dict[str, float]:
        """The metrics of `mlp.MLP.evaluate` (``prefix`` before each name) of ``params``
        (default: the model's), from sums over the blocks (`mlp.metrics.Totals`).

        Parameters
        ----------
        params : list of (W, b) or None
        prefix : str

        Returns
        -------
        dict
            Metric name -> float (NaN or inf where they overflow).
        """
        model = self.data.model
        spec = model.spec
        if tuple(spec.loss.training_score_names) != tuple(spec.loss.score_names):
            missing = sorted(set(spec.loss.score_names) - set(spec.loss.training_score_names))
            raise ValueError(f"the metrics {missing} have no form summed over blocks of rows "
                             f"(mlp.metrics.Totals), so data on disk cannot be evaluated with "
                             f"them; load it into memory")
        fn = model.compiled(("block sums",), lambda: model.backend.jit(block_sums(spec)))
        params = model.params if params is None else params
        to_numpy = model.backend.to_numpy
        total: np.ndarray | None = None
        for block in self.data.blocks(padded=True):
            sums = to_numpy(fn(params, *block)).astype(np.float64)
            total = sums if total is None else total + sums
        assert total is not None  # (at least one row)
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = total[0] / total[1] if total[1] > 0 else 0.0
            scores = spec.loss.scores_from_totals(total[None, 2:])
        logs = {prefix + "loss": float(loss)}
        logs.update({prefix + name: float(np.asarray(v)[0]) for name, v in scores.items()})
        return logs


def block_sums(spec: Any) -> Callable[..., Array]:
    """``sums(params, x, targets, labels, w) -> (2 + t + d,)``: a block's loss times its
    weight, its weight (rows, or the weights' sum), its training totals and its data's:
    sums that add up over blocks (for `fit`'s loss over data not in memory, and
    `BlockData.metrics`).

    Parameters
    ----------
    spec : NetworkSpec

    Returns
    -------
    callable
        ``sums(params, x, targets, labels, w)``, to be compiled by ``backend.jit``.
    """
    from . import core

    xp = spec.xp

    def sums(params: Any, x: Array, targets: Array, labels: Array | None,
             w: Array | None) -> Array:
        z, a = core.forward_logits(spec, params, core.zero_weight_rows(xp, x, w))
        loss = spec.loss.value(xp, z, a, targets, w)
        weight = (xp.sum(w) if w is not None
                  else xp.asarray(float(x.shape[0]), dtype=loss.dtype, device=device(loss)))
        return xp.concat([xp.stack([loss * weight, weight]),
                          spec.loss.train_totals(xp, z, a, targets, w),
                          spec.loss.data_totals(xp, targets, w)])

    return sums


def predict_by_blocks(model: MLP, x: Any, what: str) -> Array:
    """`mlp.MLP.predict` (``what="predict"``) or ``predict_classes`` (``"classes"``) of an
    array on disk, block by block; the outputs joined on the device.

    Parameters
    ----------
    model : MLP
    x : array on disk, (n, n_features)
    what : str

    Returns
    -------
    array
        ``(n, n_outputs)`` (or ``(n,)`` classes).
    """
    n = check_on_disk(x, "x")
    width = int(np.prod(x.shape[1:], dtype=np.int64))
    method = model.predict if what == "predict" else model.predict_classes
    parts = [method(read_rows(x, rows)) for rows in blocks_of(n, width * 8)]
    return parts[0] if len(parts) == 1 else model.xp.concat(parts, axis=0)
