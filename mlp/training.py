"""The training loop: `fit` takes the checked settings (`mlp.fit_settings.FitSettings`),
checks them against the model, prepares the data and the callbacks, then a `Trainer`
runs the epochs. It reads and changes the model through its public members only.

Epochs run in *chunks*, calls of the run built by `mlp.engine.pipeline.make_run` (one
compiled call on JAX). When anything needs the host between epochs (validation,
or a callback that does not take runs of epochs - `mlp.callbacks.Callback`'s
``epochs_at_once`` -, such as progress output or early stopping) a chunk is one
epoch; otherwise chunks grow to about `CHUNK_SECONDS` of work each
(`ChunkPlanner`), so the loss comes back to the host rarely, yet Ctrl-C keeps
every completed chunk and a divergence is caught within a second.

Everything between epochs goes through one protocol (`mlp.callbacks.Callback`);
one signal, ``model.stop_training``, stops. The state carried from epoch to
epoch is one `TrainState` (``model.train_state_``).

A `fit` continues where the model stands: its optimizer and the optimizer's
state (moments, step count, learning-rate scale), the shuffle stream and the
epoch count carry over from the previous `fit` (or from a file saved with
``include_optimizer=True``), so ``fit(epochs=3)`` twice ends at the weights of
one ``fit(epochs=6)``. `choose_optimizer` says when the state starts afresh.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Protocol

import numpy as np
from array_api_compat import device

from . import buckets, core, dropout, shards
from ._typing import Array, Optimizer, Params
from .callbacks import (
    Callback,
    CallbackList,
    EpochLogger,
    History,
    ProgressBar,
    resumed_seed,
)
from .data import (
    ArrayFeed,
    BlockData,
    Feed,
    StreamFeed,
    block_sums,
    check_on_disk,
    is_array_on_disk,
    is_stream,
)
from .engine.feed import SourceFailed, fed_run
from .engine.pipeline import InterruptedRun, batch_indices, make_run
from .fit_settings import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from .fit_settings import FitSettings
from .optimizers import (
    SGD,
    Adam,
    _schedule_name,
    check_numbers_in_dtype,
    check_rate_scale,
    current_learning_rate,
    get_optimizer,
    learning_rate_scale,
    scheduled_rates,
)
from .params import check_in_dtype
from .schedules import Schedule
from .tree import describe as _what
from .tree import structure_problem as _structure_problem
from .validation import all_finite

if TYPE_CHECKING:
    from .backends import Backend
    from .core import NetworkSpec
    from .model import MLP
    from .weights import ClassWeight

#: A model's weights as training holds them: one ``(W, b)`` pair per layer.
Weights = list[tuple[Array, Array]]

#: Seconds of work one call of the run covers when nothing needs the host between
#: epochs: on JAX a call cannot be interrupted, so Ctrl-C loses at most about this much.
CHUNK_SECONDS = 1.0

#: The most epochs in one call (tiny epochs: the per-call cost is then negligible).
MAX_CHUNK = 2**16

#: A diverged chunk is replayed from its start in calls of this many epochs, then epoch
#: by epoch within the call whose loss stopped being finite (`Trainer.replay`).
REPLAY_CHUNK = 256

#: Host row indices per call are capped at about this many entries (32 MiB of int64).
MAX_INDICES = 2**22

#: Bounds on a step's fixed cost (seconds) and on the arithmetic rate (FLOP/s) that a
#: compiled step beats on any device (a JAX step costs about 5 us on a CPU, tens of us
#: on a GPU): a run whose time they bound by `CHUNK_SECONDS` runs in one call, with
#: nothing to measure first (`run_time_bound`). Elsewhere Ctrl-C stops at every epoch.
STEP_SECONDS_BOUND = 1e-4
FLOPS_BOUND = 1e9

class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite.

    The model's weights have been restored to the last ones whose loss on the
    training data is finite, and with them the epoch count, the histories, the
    optimizer's state (its step count) and the shuffle stream; the epochs kept
    are in ``history``.

    Parameters
    ----------
    message : str
        What diverged and why (the learning rate, ``alpha``, or the data's
        scale).
    history : History
        The epochs kept (also ``model.history_``).
    """

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


@dataclass
class TrainState:
    """What training carries from one epoch to the next (``model.train_state_``).

    Parameters
    ----------
    params : list of (W, b)
        The weights the next epoch starts from; the loop keeps ``model.params``
        equal to them at every callback, and takes ``model.params`` back before
        each epoch (so weights a callback sets are the ones trained from).
    opt_state : pytree
        The optimizer's state.
    epoch : int
        Epochs the model has completed, over every `fit` (the next epoch's number;
        ``model.epochs_trained_`` between fits).
    rng : numpy.random.Generator
        The stream the batches' shuffles are drawn from (``model.shuffle_rng``,
        which lives on from one `fit` to the next).
    """

    params: Weights
    opt_state: Any
    epoch: int
    rng: np.random.Generator


class Mark(NamedTuple):
    """Everything at the start of ``epoch`` that a divergence restores together: the
    weights, the optimizer's state, and the shuffle stream (``offset`` epochs on from
    ``shuffled``, its state at the start of the chunk that ran ``epoch``)."""

    epoch: int
    params: Weights
    opt_state: Any
    shuffled: Mapping[str, Any]
    offset: int


@dataclass
class TrainingData:
    """Training data on the device, and the validation data if any.

    Data that is not in memory (`mlp.data`) has a ``feed`` (`mlp.data.Feed`), which is
    also ``x`` (``y`` None, ``w`` the training rows' weights or None): the fed run
    (`mlp.engine.feed`) takes it in ``x``'s place. Validation data on disk is a
    `mlp.data.BlockData`, evaluated block by block."""

    x: Array
    y: Array
    val: tuple[Array, Array, Array | None, Array | None] | BlockData | None
    w: Array | None = None  # the rows' weights (n,), or None
    n: int = -1  # the training samples (x may hold padding rows after them; -1: every row)
    padded: bool = False  # rows padded to `mlp.buckets`' sizes: batches go by `batch_plan`
    n_val: int = -1  # the validation samples (val may hold padding rows after them; -1: all)
    own_weights: bool = True  # w holds weights the fit was given (not only the padding's)
    val_weights: bool = True  # val's weights were given (not only the padding's)
    rows: shards.ProcessRows | None = None  # process-local rows: where the global rows lie in x
    feed: Feed | None = None  # the source of batches of data not in memory (then also x)
    ids: Array | None = None  # x's rows' numbers among the training rows, where not their
    # indices (process-local rows): what their dropout masks follow (`mlp.dropout`)

    def __post_init__(self) -> None:
        if self.n < 0:
            self.n = self.x.shape[0]
        if self.n_val < 0 and self.val is not None:
            self.n_val = self.val.n if isinstance(self.val, BlockData) else self.val[0].shape[0]

    def given(self) -> dict[str, tuple[Any, int]]:
        """The arrays as the fit was given them, without what padding added: ``name ->
        (array, its own rows)`` (the first rows of ``array``); weights only where given.
        What identifies the fit's data (`mlp.io.data_fingerprint`) on every backend."""
        arrays = {"x": (self.x, self.n), "y": (self.y, self.n)}
        if self.w is not None and self.own_weights:
            arrays["sample_weight"] = (self.w, self.n)
        if self.rows is not None:  # process-local rows: this process's own
            arrays = {k: (own, own.shape[0]) for k, (a, _) in arrays.items()
                      for own in (self.rows.own(a),)}
        if isinstance(self.val, tuple):
            names = ("x_val", "y_val", "val_labels", "val_sample_weight")
            for name, array in zip(names, self.val, strict=True):
                if array is not None and (name != "val_sample_weight" or self.val_weights):
                    arrays[name] = (array, self.n_val)
        return arrays


def _equal_chunks(remaining: int, longest: int) -> int:
    """The chunk length, between half of ``longest`` and ``longest``, that covers
    ``remaining`` epochs in the fewest calls: ``remaining // chunk`` chunks, then the
    ``remaining % chunk`` epochs left over one by one (the longest such chunk)."""
    return min(range(longest, (longest + 1) // 2 - 1, -1),
               key=lambda chunk: remaining // chunk + remaining % chunk)


def run_time_bound(epochs: int, n_rows: int, batch_size: int | None,
                   layer_sizes: Sequence[int]) -> float:
    """An upper bound on the seconds ``epochs`` epochs over ``n_rows`` rows take on any
    device (`STEP_SECONDS_BOUND` a step, plus the matrix products' FLOPs at
    `FLOPS_BOUND`: forward, and backward for the delta and the weights' gradient)."""
    steps = epochs * (1 if batch_size is None else -(-n_rows // batch_size))
    weights = sum(a * b for a, b in zip(layer_sizes, layer_sizes[1:]))
    return float(steps * STEP_SECONDS_BOUND + 6.0 * epochs * n_rows * weights / FLOPS_BOUND)


class ChunkPlanner:
    """How many epochs the next call of the run covers.

    With ``max_chunk=1`` (something needs every epoch) always one. A run whose
    time ``bound`` (`run_time_bound`) is within ``seconds`` runs in one call.
    Otherwise the first two calls run one epoch each (the first may include compiling,
    the second measures an epoch); then the rest runs in one call when it takes
    at most ``seconds``, else in equal chunks no longer than the longest power of
    two of epochs that takes at most ``seconds`` (and at most `MAX_CHUNK` epochs),
    and the epochs left over one by one, the chunk chosen for the fewest
    calls (`_equal_chunks`). So a run calls the compiled function with
    two lengths only (1 and the chunk): on JAX it compiles at most twice (a
    diverged chunk's replay adds one program, `REPLAY_CHUNK` epochs long).

    The chunk chosen is remembered under ``key`` (the run, the data size, the
    batch size and the epochs), so that the same fit again makes the same calls
    and compiles nothing new, however the timings vary. ``agree`` (on a mesh over
    several processes, `mlp.shards.agreement`) makes the processes' choices one,
    so that they run the same programs.
    """

    _chosen: dict[Any, int] = {}  # key -> chunk, least recently used first
    _CACHE_SIZE = 256

    def __init__(self, max_chunk: int, seconds: float | None = None, key: Any = None,
                 bound: float | None = None, agree: Callable[[int], int] | None = None
                 ) -> None:
        self.max_chunk = max(1, int(max_chunk))
        self.agree = agree
        self.seconds = CHUNK_SECONDS if seconds is None else seconds
        self.key = key
        self.calls = 0
        self.chunk: int | None = 1 if self.max_chunk == 1 else self._chosen.get(key)
        self.short = bound is not None and bound <= self.seconds

    def next(self, remaining: int) -> int:
        """The length of the next call, ``remaining`` epochs being left."""
        if self.short and self.calls == 0 and remaining <= min(self.max_chunk, MAX_CHUNK):
            return remaining  # the whole run, known to be short
        if self.calls < 2 or self.chunk is None or remaining < self.chunk:
            return 1
        return self.chunk

    def measured(self, n_epochs: int, seconds: float, remaining: int) -> None:
        """Report a call of ``n_epochs`` that took ``seconds``; ``remaining`` epochs are left."""
        self.calls += 1
        if self.chunk is not None or self.calls < 2 or remaining == 0:
            return
        per_epoch = max(seconds / n_epochs, 1e-9)
        limit = min(self.max_chunk, MAX_CHUNK)
        fits = max(1.0, min(self.seconds / per_epoch, limit))  # epochs a call may take
        if remaining <= fits:
            self.chunk = remaining
        else:  # the longest power of two that fits (steady under timing noise)
            self.chunk = _equal_chunks(remaining, 2 ** int(math.log2(fits)))
        if self.agree is not None:
            self.chunk = self.agree(self.chunk)
        if self.key is not None:
            self._chosen.pop(self.key, None)
            self._chosen[self.key] = self.chunk
            while len(self._chosen) > self._CACHE_SIZE:
                self._chosen.pop(next(iter(self._chosen)))


#: The optimizer of a model's first `fit` when none is named.
DEFAULT_OPTIMIZER = Adam(1e-3)


class FitPlan(NamedTuple):
    """A fit's checked settings with what the model decides for them: the optimizer it
    trains with and whether it continues the model's optimizer state (`choose_optimizer`)."""

    settings: FitSettings
    optimizer: Optimizer
    continued: bool


def fit(model: MLP, x: Array, y: Array | None, settings: FitSettings) -> History:
    """Train ``model`` from its current weights with ``settings`` (see `mlp.MLP.fit`).

    The steps, each a function of its own:

    1. The settings were checked when built (`FitSettings`); here the model's
       state (`check_model_state`), the epoch count, the optimizer built or
       continued (`choose_optimizer`) and the numbers in the model's dtype.
       A rejected call changes nothing.
    2. `training_data`: ``x``, ``y``, the rows' weights and the validation data
       (given, or split off from the seed) checked and moved to the device once.
    3. `callback_list`: `History` first, then the user's callbacks, then
       `EarlyStopping` (``early_stopping=True``) and `ProgressBar`
       (``verbose=1``) or `EpochLogger` (``verbose=2``), behind one
       `CallbackList` (which runs those that declare ``runs_last`` after them).
    4. `Trainer.train`: the epochs, in chunks; each chunk is checked for
       divergence, and Ctrl-C keeps every completed epoch.

    Returns the `History` of this fit's epochs (``model.history_`` holds every fit's).
    """
    check_model_state(model, "fit", optimizer_state=settings.reset_optimizer is not True)
    check_epoch_count(model.epochs_trained_, settings.epochs)
    plan = FitPlan(settings, *choose_optimizer(model, settings.optimizer,
                                               settings.learning_rate,
                                               settings.reset_optimizer))
    check_numbers(model.dtype_name, plan)
    if plan.continued and model.optimizer_state_ is not None:
        check_rate_scale(plan.optimizer, model.optimizer_state_, model.dtype_name)
    split_seed = resumed_seed(model, settings.callbacks or [])
    if fed(x, y):
        data = fed_data(model, x, y, settings, split_seed)
    else:
        data = training_data(model, x, y, settings.validation_data, settings.validation_split,
                             settings.sample_weight, settings.class_weight,
                             split_seed=split_seed)
    if data.val is not None:  # validation data whose metrics overflow would log only NaN
        check_validation(model, data.val)
    cbs, history = callback_list(model, plan, data)
    Trainer(model, data, plan, cbs, history).train()
    return history


# ------------------------------------------------------------------ step 1
def check_epoch_count(trained: int, epochs: int) -> None:
    """Refuse a fit that would count more epochs than a model file holds (`mlp.io.MAX_EPOCHS`,
    2**53): its model could not be saved."""
    from .io import MAX_EPOCHS

    if trained + epochs > MAX_EPOCHS:
        raise ValueError(f"epochs={epochs} would bring the model's epoch count from {trained} "
                         f"to {trained + epochs}, beyond the 2**53 epochs a model file holds; "
                         f"ask for at most {max(MAX_EPOCHS - trained, 0)}")


def check_numbers(dtype_name: str, plan: FitPlan) -> None:
    """Refuse a number checked in float64 that the model's dtype cannot hold as the number
    it is (`mlp.params.check_in_dtype`): ``alpha``, ``clip_norm``, the learning rate and
    the optimizer's other hyperparameters (a learning rate or ``clip_norm`` of 1e-320 is 0
    in float32, and would silently train nothing)."""
    for name in ("learning_rate", "alpha", "clip_norm"):
        value = getattr(plan.settings, name)
        if value is not None and not callable(value):
            check_in_dtype(name, value, dtype_name)
    check_numbers_in_dtype(plan.optimizer, dtype_name)


def choose_optimizer(model: MLP, optimizer: str | Optimizer | None,
                     learning_rate: float | Schedule | None,
                     reset: bool) -> tuple[Optimizer, bool]:
    """``(optimizer, continued)``: the optimizer this fit trains with, and whether it
    continues from ``model.optimizer_state_`` (else it starts from ``optimizer.init``).

    - ``optimizer`` a name: the optimizer of that name (`mlp.optimizers.get_optimizer`)
      with ``learning_rate``.
    - ``optimizer`` None: the model's optimizer (from its last `fit` or its file),
      else `DEFAULT_OPTIMIZER`; a ``learning_rate`` replaces its learning rate
      (a named optimizer only).
    - An optimizer equal to the model's (``fit(optimizer="adam")`` twice) continues
      its state; a different one, or ``reset``, starts a fresh state.
    """
    current = model.optimizer_
    if isinstance(optimizer, str):  # a name, with its learning rate (as `FitSettings` takes it)
        optimizer = get_optimizer(optimizer, learning_rate)
    elif optimizer is None:
        optimizer = current if current is not None else DEFAULT_OPTIMIZER
        if learning_rate is not None:
            optimizer = _with_learning_rate(optimizer, learning_rate)
    continued = (not reset and current is not None and model.optimizer_state_ is not None
                 and _same(optimizer, current))
    return optimizer, continued


def _with_learning_rate(optimizer: Optimizer, learning_rate: float | Schedule) -> Optimizer:
    if not (dataclasses.is_dataclass(optimizer) and "learning_rate" in {
            f.name for f in dataclasses.fields(optimizer)}):
        raise ValueError(f"learning_rate was given without an optimizer, but the model's "
                         f"optimizer {optimizer!r} has no learning_rate to replace; pass "
                         f"optimizer=... as well")
    return dataclasses.replace(optimizer, learning_rate=learning_rate)


def _same(a: object, b: object) -> bool:
    try:
        return bool(a is b or a == b)
    except Exception:  # noqa: BLE001 - an object of the user's own that cannot compare
        return False


# ------------------------------------------------------------------ step 2
def training_data(model: MLP, x: Array, y: Array,
                  validation_data: Sequence[Array] | None, validation_split: float | None,
                  sample_weight: Array | None = None, class_weight: ClassWeight = None,
                  split_seed: int | None = None) -> TrainingData:
    """``(x, y)`` and the rows' weights (`mlp.weights.row_weights`) on the device, checked;
    validation data given (unweighted) or split off (with its rows' weights) by the
    stream of ``split_seed`` (default: the model's seed; see `resumed_seed`).

    Where the model pads rows (`pads_training_rows`), ``x`` stays on the host until
    it is split and padded (`_placed`), so nothing compiles per data size. On a
    backend that takes each process's own rows, see `mlp.shards.training_data`."""
    if shards.process_local(model.backend):
        return shards.training_data(model, x, y, validation_data, validation_split,
                                    sample_weight, class_weight)
    on_host = pads_training_rows(model)
    x_dev, y_dev, labels, w = model.prepare_data(x, y, sample_weight, class_weight,
                                                 on_host=on_host)
    if validation_data is not None and any(map(is_array_on_disk, validation_data)):
        return _placed(model, TrainingData(x_dev, y_dev, validation_of(model, validation_data),
                                           w, val_weights=False))
    if validation_data is not None:
        x_val, y_val = validation_data  # (a pair, checked)
        val = model.prepare_data(x_val, y_val, None, names=("x_val", "y_val", "sample_weight"),
                                 on_host=True)
        return _placed(model, TrainingData(x_dev, y_dev, model.pad_prepared(*val), w,
                                           n_val=val[0].shape[0], val_weights=val[3] is not None))
    if validation_split is None:
        return _placed(model, TrainingData(x_dev, y_dev, None, w))
    rows_val, rows_train = split_rows(model, x_dev.shape[0], validation_split, split_seed, w,
                                      _weights_name(sample_weight, class_weight))
    n_val = rows_val.shape[0]
    split = _host_split if on_host else _row_splitter(model)
    val, (x_train, y_train, _, w_train) = split(model, (x_dev, y_dev, labels, w), rows_val,
                                                rows_train)
    val = model.pad_prepared(*val)  # evaluated every epoch: padded once
    return _placed(model, TrainingData(x_train, y_train, val, w_train, n_val=n_val,
                                       val_weights=w is not None))


def split_rows(model: MLP, n: int, validation_split: float, split_seed: int | None,
               w: Array | None, weights_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(validation rows, training rows)``, each sorted: ``validation_split`` of ``n``
    rows drawn by the stream of ``split_seed`` (`MLP.validation_split_rng`); refused where
    a side would have no rows, or (with the rows' weights ``w``) a total weight of 0."""
    n_val = int(round(n * validation_split))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split={validation_split} leaves {n - n_val} training "
                         f"and {n_val} validation samples out of {n}; both need at least 1")
    order = model.validation_split_rng(split_seed).permutation(n)
    if w is not None:
        _check_split_weights(model, w, order[:n_val], validation_split, weights_name)
    return np.sort(order[:n_val]), np.sort(order[n_val:])


def _weights_name(sample_weight: Array | None, class_weight: ClassWeight) -> str:
    if class_weight is None:
        return "sample_weight"
    return "class_weight" if sample_weight is None else "sample_weight times class_weight"


def _check_split_weights(model: MLP, w: Array, rows_val: np.ndarray,
                         validation_split: float, what: str) -> None:
    """Refuse a split that leaves the training or the validation rows a total weight of 0:
    nothing would train (a loss of 0 every epoch), or every validation score would be a
    meaningless 0 (a "perfect" val_loss)."""
    weights = model.backend.to_numpy(w).astype(np.float64)
    val = np.zeros(weights.shape[0], dtype=bool)
    val[rows_val] = True
    for side, rows, effect in (("training", ~val, "nothing would train"),
                               ("validation", val, "every validation score would be 0")):
        if float(np.sum(weights[rows])) == 0:
            raise ValueError(
                f"validation_split={validation_split} leaves the {side} rows "
                f"({int(np.sum(rows))} of {weights.shape[0]}) a total weight of 0 ({what}): "
                f"no {side} sample counts, so {effect}; give more samples a weight > 0, or "
                f"pass validation_data=(x_val, y_val)")


def _row_splitter(model: MLP) -> Callable[..., Any]:
    """``split(model, arrays, rows_a, rows_b) -> (arrays at rows_a, arrays at rows_b)``
    (host row indices; None stays None), in one call: compiled on JAX, one program
    rather than one per array."""
    xp = model.xp

    def split(arrays: Sequence[Array | None], rows_a: Array, rows_b: Array
              ) -> tuple[tuple[Array | None, ...], ...]:
        return tuple(tuple(None if a is None else xp.take(a, rows, axis=0) for a in arrays)
                     for rows in (rows_a, rows_b))

    fn = model.compiled(("split rows",), lambda: model.backend.jit(split))
    to = model.backend.asarray
    return lambda model, arrays, rows_a, rows_b: fn(arrays, to(rows_a), to(rows_b))


def _host_split(model: MLP, arrays: tuple[Any, ...], rows_a: np.ndarray, rows_b: np.ndarray
                ) -> tuple[tuple[Any, ...], ...]:
    """`_row_splitter`'s split on the host (NumPy arrays back): on a backend that compiles,
    a split on the device would compile a program per pair of sizes."""
    host = [None if a is None else _to_host(model, a) for a in arrays]
    return tuple(tuple(None if a is None else a[rows] for a in host) for rows in (rows_a, rows_b))


def _to_host(model: MLP, array: Any) -> np.ndarray:
    """``array`` (the backend's or NumPy) as NumPy."""
    return model.backend.to_numpy(array) if model.backend.is_native(array) else array


def pads_training_rows(model: MLP) -> bool:
    """Whether `fit` pads the training rows to `mlp.buckets`' sizes with rows of weight 0
    (`mlp.buckets.training_rows`), so that a model compiles a bounded number of programs
    whatever its data sizes: where the model pads what it evaluates (`MLP.bucketed`, a
    backend that compiles and a loss that takes row weights)."""
    return model.bucketed(weighted=True)


def _placed(model: MLP, data: TrainingData) -> TrainingData:
    """``data`` with its training rows placed by the backend (`Backend.place_rows`: as
    they are, or padded with rows of weight 0 and sharded over several devices); where
    the model pads training rows (`pads_training_rows`), padded on the host to
    `mlp.buckets.training_rows` first."""
    backend = model.backend
    if backend.pads_rows:
        model.spec.loss.check_takes_weights("rows of weight 0 (a data-parallel backend pads "
                                             "the data with them)")
    if not pads_training_rows(model):
        x, y, w = backend.place_rows(data.x, data.y, data.w)
        return TrainingData(x, y, data.val, w, data.n, n_val=data.n_val,
                            val_weights=data.val_weights, own_weights=data.w is not None)
    n = data.x.shape[0]
    size = buckets.training_rows(n, getattr(backend, "n_devices", 1))
    weights = None if data.w is None else _to_host(model, data.w)
    x, y = (buckets.pad_host(_to_host(model, a), size) for a in (data.x, data.y))
    x, y, w = backend.place_rows(x, y, buckets.host_weights(weights, n, size, model.dtype_name),
                                 padded=True)
    return TrainingData(x, y, data.val, w, n, padded=True, n_val=data.n_val,
                        val_weights=data.val_weights, own_weights=data.w is not None)


# ------------------------------------------------------------------ data not in memory
def fed(x: Any, y: Any) -> bool:
    """Whether `fit` reads its training data through a feed (`mlp.data`): a stream of
    batches (``y`` None) or arrays on disk. Refuses ``y`` None with anything else, and
    ``y`` beside a stream."""
    if y is None:
        if not is_stream(x):
            rows = hasattr(x, "__getitem__") and hasattr(x, "__len__") and not hasattr(
                x, "shape") and not isinstance(x, (list, tuple))
            hint = ("; a dataset of rows gives one row at a time: wrap it in "
                    "torch.utils.data.DataLoader(x, batch_size=...)") if rows else ""
            if isinstance(x, (list, tuple)) and (not x or isinstance(x[0], (tuple, dict))):
                hint = (f"; a list of batches holds (x, y) or (x, y, sample_weight) tuples "
                        f"of arrays, at least one: its first item is "
                        f"{_what(x[0]) if x else 'missing (an empty list)'}")
            raise TypeError(f"y is None; expected an array of targets for x ({_what(x)}): "
                            f"fit takes y=None only when x is a source of (x, y) batches - a "
                            f"DataLoader, a list of batches, a re-iterable or a function "
                            f"returning an iterator{hint}")
        return True
    if is_stream(x):
        raise TypeError(f"x is a source of batches ({type(x).__name__}), which yields the "
                        f"targets too: call fit(source, epochs=...) without y")
    return is_array_on_disk(x) or is_array_on_disk(y)


def fed_data(model: MLP, x: Any, y: Any, settings: FitSettings,
             split_seed: int | None) -> TrainingData:
    """The `TrainingData` of a stream (``y`` None) or of arrays on disk: a `Feed` that
    reads the batches when they are needed, and the validation data (a split of the
    rows on disk by index, read block by block like validation data on disk)."""
    if model.backend.pads_rows:
        raise ValueError(f"the {model.backend.name} backend spreads whole arrays over its "
                         f"devices: train it on arrays in memory (or give each process its "
                         f"own rows, see the guide on shards)")
    if y is None:
        return _stream_data(model, x, settings)
    x, y = (a if is_array_on_disk(a) or hasattr(a, "shape") else np.asarray(a) for a in (x, y))
    n = check_on_disk(x, "x") if is_array_on_disk(x) else _in_memory_rows(x, "x")
    if is_array_on_disk(y):
        check_on_disk(y, "y", n)
    elif _in_memory_rows(y, "y") != n:
        raise ValueError(f"x and y have different numbers of samples: {n} and {len(y)}")
    if getattr(x, "ndim", len(x.shape)) != 2 or x.shape[1] != model.n_features:
        raise ValueError(f"x must be 2-D (n_samples, {model.n_features}), got shape "
                         f"{tuple(x.shape)}")
    w = _disk_weights(model, settings, n)
    val = validation_of(model, settings.validation_data)
    split = settings.validation_split
    if split is None:
        return _fed_training(ArrayFeed(model, x, y, w), val)
    rows_val, rows_train = split_rows(model, n, split, split_seed,
                                      None if w is None else model.backend.asarray(w),
                                      "sample_weight")
    return _fed_training(ArrayFeed(model, x, y, w, rows=rows_train),
                         BlockData(model, x, y, w, rows=rows_val), val_weights=w is not None)


def _fed_training(feed: ArrayFeed | StreamFeed,
                  val: tuple[Array, Array, Array | None, Array | None] | BlockData | None,
                  val_weights: bool = False) -> TrainingData:
    """`TrainingData` read through ``feed`` (which stands in ``x``'s place)."""
    n_val = -1 if val is None or isinstance(val, BlockData) else int(val[0].shape[0])
    return TrainingData(feed, None, val, feed.w, feed.n, n_val=n_val, feed=feed,
                        val_weights=val_weights, own_weights=feed.w is not None)


def _in_memory_rows(array: Any, name: str) -> int:
    try:
        return len(array)
    except TypeError:
        raise TypeError(f"{name} must be an array of numbers, got {_what(array)}") from None


def _disk_weights(model: MLP, settings: FitSettings, n: int) -> np.ndarray | None:
    """The rows' weights of data on disk, checked, as a host array in the model's dtype
    (read whole: one number a row); ``class_weight`` is refused (it needs every label)."""
    from .weights import row_weights

    if settings.class_weight is not None:
        raise ValueError("class_weight needs every row's label at once; with data on disk "
                         "pass sample_weight (one weight a row, e.g. the class's weight of "
                         "each row) instead")
    if settings.sample_weight is None:
        return None
    sample_weight = settings.sample_weight
    if is_array_on_disk(sample_weight):
        sample_weight = np.asarray(sample_weight[:])
    w = row_weights(model, sample_weight, None, np.empty((n, 0)), None)
    return None if w is None else model.backend.to_numpy(w)


def _stream_data(model: MLP, source: Any, settings: FitSettings) -> TrainingData:
    """The `TrainingData` of a stream of batches (validation data given, never split)."""
    if settings.validation_split is not None:
        raise ValueError("validation_split splits arrays by rows; a source of batches "
                         "cannot be split - pass validation_data=(x_val, y_val) instead")
    for name in ("sample_weight", "class_weight"):
        if getattr(settings, name) is not None:
            raise ValueError(f"{name} weighs rows of arrays; a source of batches yields "
                             f"(x, y, sample_weight) batches to weigh its rows")
    return _fed_training(StreamFeed(model, source, settings.epochs),
                         validation_of(model, settings.validation_data))


def validation_of(model: MLP, validation_data: Sequence[Any] | None
                  ) -> tuple[Array, Array, Array | None, Array | None] | BlockData | None:
    """Validation data given to `fit`: on disk, a `mlp.data.BlockData`; in memory,
    prepared and padded once (`MLP.pad_prepared`)."""
    if validation_data is None:
        return None
    x_val, y_val = validation_data  # (a pair, checked)
    if is_array_on_disk(x_val) or is_array_on_disk(y_val):
        n = check_on_disk(x_val, "x_val") if is_array_on_disk(x_val) else len(x_val)
        if is_array_on_disk(y_val):
            check_on_disk(y_val, "y_val", n)
        return BlockData(model, x_val, y_val, None, ("x_val", "y_val"))
    return model.pad_prepared(*model.prepare_data(
        x_val, y_val, None, names=("x_val", "y_val", "sample_weight"), on_host=True))


def check_validation(model: MLP, val: tuple[Array, Array, Array | None, Array | None]
                     | BlockData) -> None:
    """Refuse validation data whose metrics overflow at the starting weights (every epoch
    would log only NaN)."""
    if not isinstance(val, BlockData):
        model.evaluate_prepared(*val, of=" of the validation data")
        return
    logs = val.metrics()
    bad = [name for name, value in logs.items() if not math.isfinite(value)]
    if bad:
        raise ValueError(f"the {', '.join(bad)} of the validation data (it is "
                         f"{logs[bad[0]]}) overflows {model.dtype_name} at the starting "
                         f"weights: rescale the inputs (e.g. standardize them)")


def validation_logs(model: MLP, val: tuple[Array, Array, Array | None, Array | None]
                    | BlockData, params: Params) -> dict[str, float]:
    """The epoch's ``val_`` metrics of ``params``, in memory or block by block."""
    if isinstance(val, BlockData):
        return val.metrics(params, prefix="val_")
    return model.validation_logs(*val, params=params)


# ------------------------------------------------------------------ step 3
def logged_metrics(model: MLP, validation: bool) -> list[str]:
    """The names each epoch's logs hold: ``loss``, the training scores from the epoch's own
    batches (`mlp.losses.Loss.scores_from_totals`), and with validation data those of
    `MLP.evaluate`, ``val_``-prefixed."""
    training = ["loss", *model.spec.loss.training_score_names]
    if not validation:
        return training
    names = ["loss", *model.spec.loss.score_names]  # (what `MLP.evaluate` logs)
    return training + ["val_" + name for name in names]


def callback_list(model: MLP, plan: FitPlan, data: TrainingData
                  ) -> tuple[CallbackList, History]:
    """Every callback of this fit behind one `CallbackList`, and the `History` among them.

    The list runs a callback that declares ``runs_last`` (a `BackupAndRestore`,
    whose backup holds what every other callback did to the epoch) after the
    others, and tells each the fit's data (`Callback.set_run`).
    """
    n, settings = data.n, plan.settings
    stream = isinstance(data.feed, StreamFeed)  # (its batches and their number its own)
    params = dict(epochs=settings.epochs, initial_epoch=model.epochs_trained_,
                  batch_size=None if stream else settings.batch_size or n,
                  optimizer=plan.optimizer, alpha=settings.alpha, clip_norm=settings.clip_norm,
                  shuffle=False if stream else settings.shuffle, samples=None if stream else n,
                  metrics=logged_metrics(model, data.val is not None))
    history = History(params)
    cbs: list[Callback] = [history, *(settings.callbacks or ())]  # (a list once checked)
    if settings.stopper is not None:
        cbs.append(settings.stopper)
    if settings.verbose == 1:
        cbs.append(ProgressBar())
    elif settings.verbose == 2:
        cbs.append(EpochLogger())
    return CallbackList(cbs, model=model, params=params, data=data), history


# ------------------------------------------------------------------ step 4
def run_function(model: MLP, optimizer: Optimizer, alpha: float,
                 clip_norm: float | None, fed_by: Feed | None = None) -> Callable[..., Any]:
    """The (compiled, shared) run of `mlp.engine.pipeline.make_run` for this model and
    settings (for rows padded to `mlp.buckets`' sizes where the model pads them,
    `pads_training_rows`). With ``fed_by`` (data not in memory), the fed run
    (`mlp.engine.feed.fed_run`) over that run for unpadded rows: one step per call."""
    if fed_by is not None:
        return fed_run(model.xp, model.compiled(
            ("run", optimizer, alpha, clip_norm, False),
            lambda: make_run(model.backend, model.spec, optimizer, alpha, clip_norm)),
            model.backend.asarray)
    counted = pads_training_rows(model)
    return model.compiled(("run", optimizer, alpha, clip_norm, counted),
                           lambda: make_run(model.backend, model.spec, optimizer, alpha,
                                            clip_norm, counted=counted))


def _largest_weight(model: MLP, params: Params) -> float:
    """The largest ``|weight|`` over all layers (NaN or inf if any weight is): one compiled
    reduction."""
    xp = model.xp

    def largest_magnitudes(params: Params) -> Array:
        return xp.stack([xp.max(xp.abs(a)) for pair in params for a in pair])

    check = model.compiled(("largest magnitudes",),
                            lambda: model.backend.jit(largest_magnitudes))
    values = model.backend.to_numpy(check(params))
    return float(np.max(values)) if all_finite(np, values) else math.inf


def _params_finite(model: MLP, params: Params) -> bool:
    """Whether every weight is finite."""
    return math.isfinite(_largest_weight(model, params))


class StateCheck:
    """Refuses, after each callback hook, a model state the callback left damaged
    (`CallbackList.check`), naming the callback; the damaged attribute is put back first.

    A callback may stop training (``stop_training``), set the weights the next epoch
    trains from (``set_weights``; ``model.params`` of the right shapes), replace the
    optimizer state by one of the same structure (`ReduceLROnPlateau`), add real numbers
    to the epoch's logs, or, as `BackupAndRestore` does when training begins, move the
    whole training state forward consistently. Anything else - the training state, the
    optimizer or the epoch count replaced, ``optimizer_state_``, ``params`` or
    ``history_`` set to something else (None, another structure), a history `mlp.load`
    would refuse (lists of unequal lengths, epochs not increasing from 0 below the
    epoch count, values that are not numbers), a logged metric removed or a value that
    is not a number - is refused with a message that names the callback, and the
    history is put back exactly. Each check compares references first (the history
    with a copy, at C speed), so an unchanged state costs little.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.copy = _HistoryCopy(trainer.model.history_)
        self.seen()

    def seen(self) -> None:
        """Take the model's present state as the sound one (the history copied, when it
        changed, to be put back exactly)."""
        model = self.trainer.model
        self.params, self.opt_state = model.params, model.optimizer_state_
        if not self.copy.same(model.history_):
            self.copy = _HistoryCopy(model.history_)

    def __call__(self, callback: Callback, hook: str, logs: Any) -> None:
        from .callbacks import callback_name

        name = f"callback {callback_name(callback)} ({hook})"
        self.hook = hook
        try:
            for step in (self._owned, self._params, self._opt_state, self._history,
                         self._stop):
                step(name)
            if hook in ("on_epoch_end", "on_epoch_logged"):
                self._logs(name, logs)
        except (TypeError, ValueError):
            if hook != "on_train_end" or (logs or {}).get("completed", True):
                raise  # (on a fit that failed already, the attributes are put back only)
        self.seen()

    def _owned(self, name: str) -> None:
        """The training state, the optimizer and the epoch count belong to the fit."""
        trainer, model = self.trainer, self.trainer.model
        state = trainer.state
        if model.train_state_ is not state:
            model.train_state_ = state
            raise ValueError(f"{name} replaced model.train_state_, which belongs to the running "
                             "fit; set the weights with model.set_weights(...) instead")
        if model.optimizer_ is not trainer.optimizer:
            model.optimizer_ = trainer.optimizer
            raise ValueError(f"{name} replaced model.optimizer_ during fit; a fit trains with "
                             "the optimizer it started with: reduce the learning rate with "
                             "ReduceLROnPlateau, or fit again with optimizer=...")
        epochs = model.epochs_trained_
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs != state.epoch:
            model.epochs_trained_ = state.epoch
            raise ValueError(f"{name} set model.epochs_trained_ to {epochs!r}, but the model "
                             f"has trained {state.epoch} epochs; fit counts them itself")

    def _params(self, name: str) -> None:
        model = self.trainer.model
        params = model.params
        if params is self.params:
            return
        problem = params_problem(model, params)
        if problem:
            model.params = self.params
            raise TypeError(f"{name} set model.params to {problem}; set the weights with "
                            "model.set_weights([(W, b), ...]), which checks them")
        if self.hook in ("on_epoch_begin", "on_epoch_end", "on_epochs_end",
                         "on_epoch_logged"):  # trained from
            trainer = self.trainer
            trainer.weights_set = WeightsSet(trainer.state.epoch, name, self.params, params)

    def _opt_state(self, name: str) -> None:
        model = self.trainer.model
        new = model.optimizer_state_
        if new is self.opt_state:
            return
        problem = _structure_problem(new, self.opt_state)
        if problem:
            model.optimizer_state_ = self.opt_state
            raise TypeError(
                f"{name} set model.optimizer_state_ to {problem}; the state must keep the "
                f"optimizer's structure. Reduce the learning rate with ReduceLROnPlateau "
                f"(mlp.optimizers.with_learning_rate_scale), or start the state afresh in "
                f"a new fit with reset_optimizer=True")

    def _history(self, name: str) -> None:
        from .callbacks import History

        model, copy = self.trainer.model, self.copy
        history = model.history_
        if copy.same(history):
            return
        if not isinstance(history, History):
            copy.put_back(model)
            raise TypeError(f"{name} set model.history_ to {_what(history)}; it holds every "
                            "epoch's metrics and must stay a History")
        problem = history_problem(history, model.epochs_trained_, copy.appended(history))
        if problem:
            copy.put_back(model)
            raise ValueError(f"{name} left model.history_ with {problem}; every metric must "
                             "keep one value per epoch, the epochs increasing from 0 below "
                             "the epoch count, as fit logs them (read the history, or keep "
                             "values of your own elsewhere); the history was put back as it "
                             "was")

    def _stop(self, name: str) -> None:
        model = self.trainer.model
        try:
            bool(model.stop_training)
        except Exception:  # noqa: BLE001 - e.g. an array of several elements
            value = model.stop_training
            model.stop_training = False
            raise TypeError(f"{name} set model.stop_training to {_what(value)}, which is "
                            "neither true nor false; set it to True to stop training") from None

    def _logs(self, name: str, logs: Any) -> None:
        if not isinstance(logs, dict):
            raise TypeError(f"{name} left the epoch's logs as {_what(logs)}")
        missing = [k for k in self.trainer.history.params.get("metrics", ()) if k not in logs]
        if missing:
            raise ValueError(f"{name} removed {', '.join(map(repr, missing))} from the epoch's "
                             "logs, which later callbacks read; leave the logged values in place")
        for key, value in logs.items():
            if not isinstance(key, str) or isinstance(value, (bool, np.bool_)) \
                    or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} put {key!r}: {_what(value)} in the epoch's logs; logs "
                                "map metric names to numbers (later callbacks and the "
                                "history read them as such)")


def check_model_state(model: MLP, what: str, *, training_state: bool = True,
                      optimizer_state: bool = True) -> None:
    """Refuse, before ``what`` (``"fit"``, ``"save"``) does anything, a model whose state
    was damaged outside fit (attributes assigned by hand): weights of other shapes, an
    epoch count that is not a count, a history of uneven lists, an optimizer state of
    another structure than the one the last fit left. Cheap: no array is read."""
    from .callbacks import History

    problem = params_problem(model, model.params)
    if problem:
        raise ValueError(f"{what}: model.params is {problem}; set the weights with "
                         "model.set_weights([(W, b), ...]), which checks them")
    if not training_state:
        return
    epochs, history = model.epochs_trained_, model.history_
    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)) \
            or epochs < 0:
        problem = f"model.epochs_trained_ is {epochs!r}, not a count of epochs"
    elif history is not None and not isinstance(history, History):
        problem = f"model.history_ is {_what(history)}, not a History (or None)"
    elif history is not None and history_problem(history, int(epochs)):
        problem = f"model.history_ has {history_problem(history, int(epochs))}"
    if problem:
        raise ValueError(f"{what}: {problem}; fit keeps the epoch count and the history "
                         "itself - build a new model (or load a saved one) to start afresh")
    optimizer = model.optimizer_
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer,
                                                                             "update")):
        raise ValueError(f"{what}: model.optimizer_ is {_what(optimizer)}, not an optimizer; "
                         "fit keeps the optimizer itself - pass optimizer=... to fit to "
                         "change it")
    problem = _changed_opt_state(model) if optimizer_state else None
    if problem:
        raise ValueError(f"{what}: {problem}; fit keeps the optimizer's state itself - fit "
                         "with reset_optimizer=True to start it afresh")


def _changed_opt_state(model: MLP) -> str | None:
    """How ``model.optimizer_state_``, replaced since the last fit, differs in structure
    from the state that fit left (None when it was not replaced or has the structure)."""
    state, left = model.optimizer_state_, getattr(model.train_state_, "opt_state", None)
    if state is None or left is None or state is left:
        return None
    problem = _structure_problem(state, left)
    return problem and (f"model.optimizer_state_ has another structure than the state the "
                        f"last fit left ({problem})")


def params_problem(model: MLP, params: object) -> str | None:
    """What is wrong with ``params`` as the model's weights (shapes, dtype, backend), or
    None."""
    sizes = model.layer_sizes
    if not isinstance(params, (list, tuple)) or len(params) != len(sizes) - 1:
        return f"{_what(params)} where the model has {len(sizes) - 1} (W, b) pairs"
    for i, pair in enumerate(params):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return f"{_what(pair)} for layer {i}, not a pair (W, b)"
        for array, shape in zip(pair, model.weight_shapes()[i]):
            if not model.backend.is_native(array) or tuple(array.shape) != shape \
                    or array.dtype != model.dtype:
                return (f"{_what(array)} in layer {i} where a {model.backend.name} array of "
                        f"shape {shape} and dtype {model.dtype_name} belongs")
    return None


class HistoryLike(Protocol):
    """What `history_problem` reads of a history: a `History`, or a stand-in for one as
    recorded (`mlp.state.HistoryRecord.recorded`)."""

    @property
    def epoch(self) -> list[int]: ...

    @property
    def history(self) -> dict[str, list[float]]: ...


def history_problem(history: HistoryLike, epochs_trained: int, since: int = 0) -> str | None:
    """What makes ``history`` one that `mlp.load` would refuse (the rule `fit`, the
    callbacks' check and `mlp.io.save` share) in a file whose epoch count
    is ``epochs_trained`` (None if nothing): lists of one value per epoch, named metrics
    of numbers, epochs increasing strictly from 0 up to the count. The rows before
    ``since`` are known sound (only their last epoch is read)."""
    epochs, values = history.epoch, history.history
    if not isinstance(epochs, list) or not isinstance(values, dict):
        return "its epoch list or its metrics replaced"
    lengths = {key: len(v) if isinstance(v, list) else None for key, v in values.items()}
    uneven = {k: n for k, n in lengths.items() if n != len(epochs)}
    if uneven:
        return (f"{len(epochs)} epochs but " + ", ".join(
            f"{n if n is not None else 'no list of'} values of {k!r}" for k, n in uneven.items()))
    return _epochs_problem(epochs, epochs_trained, since) or _values_problem(values, since)


def _epochs_problem(epochs: list[Any], epochs_trained: int, since: int) -> str | None:
    if len(epochs) > epochs_trained:
        return f"{len(epochs)} epochs, more than the {epochs_trained} the model has trained"
    part = epochs[max(since - 1, 0):]
    if not part:
        return None
    numbers_ = _whole_numbers(part)
    if numbers_ is None or numbers_[0] < 0 or numbers_[-1] >= epochs_trained \
            or bool(np.any(numbers_[1:] <= numbers_[:-1])):
        shown = epochs if len(epochs) <= 8 else [*epochs[:3], "...", *epochs[-3:]]
        return (f"epochs {str(shown).replace(repr('...'), '...')} that are not whole numbers "
                f"increasing strictly from 0 up to {epochs_trained - 1} (the model has "
                f"trained {epochs_trained} epochs)")
    return None


def _whole_numbers(items: list[Any]) -> np.ndarray | None:
    """``items`` as a 1-d array if each is a whole number (``2``, ``2.0``: what save
    writes as an integer), else None."""
    try:
        array = np.asarray(items)
    except (OverflowError, TypeError, ValueError):
        return None
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        return None
    if array.dtype.kind == "f" and not bool(np.all(np.isfinite(array)
                                                   & (array == np.round(array)))):
        return None
    return array


def _values_problem(values: dict[Any, Any], since: int) -> str | None:
    for key, column in values.items():
        if not isinstance(key, str) or not key:
            return f"a metric named {key!r} (metrics are named by non-empty strings)"
        try:
            ok = np.asarray(column[since:], dtype=np.float64).shape == (len(column) - since,)
        except (OverflowError, TypeError, ValueError):
            ok = False
        if not ok:
            return f"a value of {key!r} that is not a number"
    return None


class _HistoryCopy:
    """A copy of a `History`'s epochs and values (and the lists that hold them), to
    tell whether it changed and to put it back exactly as it was."""

    def __init__(self, history: History | None) -> None:
        self.history = history
        epoch, values = ([], {}) if history is None else (history.epoch, history.history)
        self.lists: tuple[list[int], dict[str, list[float]], dict[str, list[float]]] = (
            epoch, values, dict(values))
        self.epoch = list(epoch)
        self.values = {k: list(v) for k, v in values.items()}

    def same(self, history: History | None) -> bool:
        """Whether ``history`` is the copied one, unchanged (compared at C speed)."""
        if history is not self.history or history is None:
            return history is self.history
        return history.epoch is self.lists[0] and history.history is self.lists[1] \
            and history.epoch == self.epoch and history.history == self.values

    def appended(self, history: History | None) -> int:
        """How many rows of ``history`` were kept (0 unless it is the copied one with rows
        appended, or none, and every other row unchanged): the rows to check are the others."""
        if history is not self.history or history is None or history.epoch is not \
                self.lists[0] or history.history is not self.lists[1] \
                or history.history.keys() != self.values.keys():
            return 0
        n = len(self.epoch)
        if history.epoch[:n] != self.epoch or any(
                not isinstance(v, list) or v[:n] != self.values[k]
                for k, v in history.history.items()):
            return 0
        return n

    def put_back(self, model: MLP) -> None:
        """Make ``model.history_`` the copied history again, its lists holding what they held."""
        model.history_ = history = self.history
        if history is None:
            return
        epoch, values, columns = self.lists
        history.epoch, history.history = epoch, values
        epoch[:] = self.epoch
        values.clear()
        for key, column in columns.items():
            column[:] = self.values[key]
            values[key] = column


class WeightsSet(NamedTuple):
    """Weights a callback set between epochs: the epoch that trains from them, the
    callback, the weights they replaced (those the epoch before ended with), and them."""

    epoch: int
    callback: str
    replaced: Weights
    weights: Weights


class _ScheduleFault(Exception):
    """A schedule that gave a NaN or infinite rate: the divergence's cause (its text)."""


class Trainer:
    """Runs the epochs of one `fit`: chunks of epochs, callbacks, divergence, Ctrl-C.

    The phases of `train`: `begin` (the callbacks' ``on_train_begin``; a
    `BackupAndRestore` may move the model forward there); chunks (`run_chunk`, each
    epoch taken by `keep`) until the model has trained ``start + epochs`` epochs or
    ``model.stop_training``; a last check that the weights are finite; `finish`
    (``on_train_end``, also when it raised). A fit that raises before an epoch of its
    own is kept puts the model back as it found it (`MLP.snapshot_state`).

    Epochs are numbered on from the model's ``epochs_trained_`` (``start``).
    """

    #: The callbacks' check (`StateCheck`), from `begin` on.
    check: StateCheck

    def __init__(self, model: MLP, data: TrainingData, plan: FitPlan, callbacks: CallbackList,
                 history: History) -> None:
        self.model, self.data, self.callbacks, self.history = model, data, callbacks, history
        settings = plan.settings
        self.epochs = settings.epochs
        self.start = model.epochs_trained_
        self.end = self.start + self.epochs
        self.optimizer = plan.optimizer
        n = data.n
        batch_size = settings.batch_size
        self.batch_size = None if batch_size is None or batch_size >= n else batch_size
        self.shuffle = settings.shuffle
        self.run = run_function(model, self.optimizer, settings.alpha, settings.clip_norm,
                                data.feed)
        opt_state = (model.optimizer_state_ if plan.continued
                     else self.optimizer.init(model.params))
        self.state = TrainState(model.params, opt_state, self.start, model.shuffle_rng)
        self.alpha = settings.alpha
        self.steps_per_epoch = (1 if self.batch_size is None else -(-n // self.batch_size))
        if isinstance(data.feed, StreamFeed):  # (the source's batches, as many as it has)
            self.steps_per_epoch = data.feed.steps_per_epoch or 1
        self.checked_steps = self.check_schedules(self.start, self.epochs)  # before any change
        self.initial = model.params
        # (first epoch, shuffle stream's state) of the chunk running, for `mark`
        self.chunk = (self.start, model.shuffle_rng.bit_generator.state)
        self.first = self.mark(self.start)  # where this fit starts (after on_train_begin)
        self.recent: deque[Mark] = deque(maxlen=2)  # `Mark`s of the starts of recent chunks
        self.weights_set: WeightsSet | None = None  # by a callback, between epochs
        # Runs of epochs when every callback takes them after the run (declares
        # `epochs_at_once`); a callback that does not, or validation, needs every epoch.
        self.epochs_at_once = data.val is None and callbacks.epochs_at_once
        max_chunk = self.epochs if self.batch_size is None else MAX_INDICES // max(data.n, 1)
        self.planner = ChunkPlanner(max_chunk if self.epochs_at_once else 1,
                                    key=(self.run, n, self.batch_size, self.epochs),
                                    bound=run_time_bound(self.epochs, data.n, self.batch_size,
                                                         model.layer_sizes))
        agree = shards.agreement(model.backend)
        if agree is not None:  # several processes: one chunk length for all
            self.planner.agree = agree

    # ------------------------------------------------------------ the loop
    def model_history(self) -> History:
        """``model.history_``: every fit's epochs, a `History` from `begin` on (the
        callbacks' check keeps it one)."""
        history = self.model.history_
        if history is None:  # (begin gave the model one)
            raise RuntimeError("fit: the model has no history_ before training began")
        return history

    def train(self) -> None:
        """Run the fit; one that fails (any exception, Ctrl-C included) before an epoch of
        its own is kept puts the whole model back as it found it (`MLP.snapshot_state`), one that
        fails later keeps the epochs completed (`end`)."""
        before = self.model.snapshot_state()
        self.began = False
        try:
            self.begin()
            self.began = True
            self.epochs_loop()
        except BaseException:
            if not self.began or self.state.epoch == self.first.epoch:
                self.model.train_state_ = before.train_state  # the fit lets go of its own
                self.model.restore_state(before)
            raise

    def begin(self) -> None:
        """The model takes this fit's training state and optimizer; the callbacks'
        ``on_train_begin`` (a `BackupAndRestore` may move the model forward there)."""
        model, state = self.model, self.state
        model.stop_training = False
        model.train_state_ = state  # callbacks see it from on_train_begin on
        model.optimizer_, model.optimizer_state_ = self.optimizer, state.opt_state
        self.check = self.callbacks.check = StateCheck(self)
        self.callbacks.on_train_begin({})
        self.chunk = (state.epoch, state.rng.bit_generator.state)  # (a backup's)
        self.initial = model.params
        self.first = self.mark(state.epoch, model.params, model.optimizer_state_)
        if model.history_ is None:
            model.history_ = History(self.history.params)
        model.history_.params = self.history.params
        self.check.seen()
        self.history.extend(model.history_, since=self.start)  # epochs a backup restored

    def epochs_loop(self) -> None:
        """Chunks until the model has trained ``end`` epochs or a callback stops it, a last
        check of the weights, then `end`."""
        model, state = self.model, self.state
        completed = False
        try:
            while state.epoch < self.end and not model.stop_training:
                self.run_chunk(self.planner.next(self.end - state.epoch))
            self.check_final_weights()
            completed = True
        finally:
            self.finish(completed)

    def finish(self, completed: bool) -> None:
        """``on_train_end``, the model at its last completed epoch: its history holds
        exactly its epochs (one interrupted between taking an epoch and counting it gives
        it back; the callbacks see an epoch once it is counted), the training state
        follows what the callbacks left (e.g. early stopping's best weights, a learning
        rate reduced at the last epoch), also when a callback's ``on_train_end`` raised."""
        model, state = self.model, self.state
        model.optimizer_ = self.optimizer
        model.epochs_trained_ = state.epoch
        if not completed:
            self.model_history().drop_epochs_from(state.epoch)
        self.check.seen()
        try:
            self.callbacks.on_train_end({"completed": completed})
        finally:
            state.params, state.opt_state = model.params, model.optimizer_state_

    def run_chunk(self, n_epochs: int) -> None:
        """Run ``n_epochs`` epochs in one call, then hand each to the callbacks."""
        state, data, model = self.state, self.data, self.model
        # weights and an optimizer state a callback set are the ones trained from
        state.params, state.opt_state = model.params, model.optimizer_state_
        if not self.epochs_at_once:  # (a run's callbacks take no epoch's beginning)
            for j in range(n_epochs):
                self.callbacks.on_epoch_begin(state.epoch + j)
        self.check_chunk_schedules(n_epochs)
        shuffled = state.rng.bit_generator.state
        self.chunk = (state.epoch, shuffled)
        batches, last = self.indices(n_epochs)
        start = time.perf_counter()
        try:
            params, opt_state, losses, totals = self.run(state.params, state.opt_state, data.x,
                                                         data.y, data.w, batches, last, n_epochs,
                                                         **self.noise(state.epoch, n_epochs))
            losses, totals = model.backend.to_numpy(losses), model.backend.to_numpy(totals)
        except InterruptedRun as part:  # Ctrl-C (Python loop): keep the completed epochs
            self.rewind(shuffled, len(part.losses))
            if part.losses:
                self.keep(part.params, part.opt_state, [float(v) for v in part.losses],
                          np.stack([model.backend.to_numpy(t) for t in part.totals]))
            if isinstance(part.__cause__, SourceFailed):  # reading failed: its own error
                raise part.__cause__.error  # noqa: B904 - (its own cause kept)
            raise KeyboardInterrupt from part.__cause__
        except BaseException:  # Ctrl-C in a compiled call: the chunk is lost
            self.rewind(shuffled, 0)
            raise
        self.planner.measured(n_epochs, time.perf_counter() - start,
                              self.end - state.epoch - n_epochs)
        if not np.all(np.isfinite(losses)):
            if n_epochs > 1:
                losses = self.replay(batches, last, n_epochs)
            self.diverged(state.epoch, f"the loss became {losses[np.argmax(~np.isfinite(losses))]}")
        self.keep(params, opt_state, losses, totals)

    def rewind(self, shuffled: Mapping[str, Any], n_kept: int) -> None:
        """Put the shuffle stream where ``n_kept`` epochs from ``shuffled`` leave it, so
        that a fit interrupted within a chunk continues with the next epoch's order."""
        if self.batch_size is None or not self.shuffle:
            return
        self.state.rng.bit_generator.state = shuffled
        if n_kept:
            batch_indices(self.state.rng, self.data.n, self.batch_size, n_kept, True)

    def keep(self, params: Weights, opt_state: Any, losses: Sequence[float] | np.ndarray,
             totals: np.ndarray) -> None:
        """Make ``params`` the model's weights and log the epochs of ``losses`` and of
        the training ``totals`` (a host array, one row per epoch).

        Nothing changes until every log is known (validation included); then the
        model's history takes the epochs and one assignment (`commit`) moves the weights,
        the optimizer state and the epoch count of the model and of its training state
        together: a Ctrl-C at any line leaves them at the same epoch (`finish` gives
        back epochs the history took but the count did not). Then the callbacks see the
        epochs end: the run at once (``on_epochs_end``) where they all take runs, else
        each epoch (``on_epoch_end``)."""
        state, model = self.state, self.model
        self.recent.append(self.mark(state.epoch))
        columns = {"loss": np.asarray(losses, dtype=np.float64).tolist(),
                   **{name: v.tolist() for name, v in
                      model.spec.loss.scores_from_totals(totals).items()}}
        epochs = range(state.epoch, state.epoch + len(columns["loss"]))
        if self.epochs_at_once:  # the callbacks take the run's epochs at once
            self.model_history().append_epochs(epochs, columns)
            self.commit(params, opt_state, epochs[-1] + 1)
            self.callbacks.on_epochs_end(epochs, columns)
            return
        if not _params_finite(model, params):  # never handed to the callbacks
            self.diverged(epochs[-1], "the weights became NaN or infinite")
        rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
        if self.data.val is not None:  # then every chunk is one epoch
            rows[-1].update(validation_logs(model, self.data.val, params))
        for epoch, logs in zip(epochs, rows):
            self.model_history().append(epoch, logs)
        self.commit(params, opt_state, epochs[-1] + 1)
        for epoch, logs in zip(epochs, rows):
            self.callbacks.on_epoch_end(epoch, logs)

    def commit(self, params: Weights, opt_state: Any, epoch: int) -> None:
        """The model and its training state at the end of ``epoch - 1``, in one
        assignment (no Ctrl-C can fall between its parts)."""
        s, m, new = self.state, self.model, (params, opt_state, epoch) * 2
        s.params, s.opt_state, s.epoch, m.params, m.optimizer_state_, m.epochs_trained_ = new
        self.check.seen()

    def indices(self, n_epochs: int) -> tuple[Array | None, Array | None]:
        """The batches' row indices for the next ``n_epochs`` (None for full batches)."""
        if self.batch_size is None:
            return None, None
        batches, last = batch_indices(self.state.rng, self.data.n, self.batch_size,
                                      n_epochs, self.shuffle)
        if self.data.feed is not None:  # read from the host, batch by batch
            return batches, last
        if self.data.rows is not None:  # the global rows' places in the process-local blocks
            batches = self.data.rows.physical(batches)
            last = None if last is None else self.data.rows.physical(last)
        to, n_rows = self.model.backend.batch_rows, self.data.x.shape[0]
        if self.data.padded:  # every batch of the batch size, slots for the padded rows
            batches, counts = buckets.batch_plan(batches, last, n_rows)
            return to(batches, n_rows), self.model.backend.asarray(counts)
        return to(batches, n_rows), None if last is None else to(last, n_rows)

    def noise(self, first_epoch: int, n_epochs: int) -> dict[str, Array]:
        """The run's ``streams`` argument for epochs ``first_epoch`` on: their dropout
        streams (`mlp.dropout.epoch_streams`, from the model's seed and the epoch numbers
        only), and ``ids`` where the rows' numbers are not their indices (`TrainingData`);
        none without dropout."""
        model = self.model
        if not model.spec.drops:
            return {}
        host = dropout.epoch_streams(model.seed, first_epoch, n_epochs)
        ids = {} if self.data.ids is None else {"ids": self.data.ids}
        return {"streams": model.backend.asarray(host), **ids}

    # ---------------------------------------------------------- divergence
    def replay(self, batches: Array | None, last: Array | None, n_epochs: int) -> np.ndarray:
        """Rerun a diverged chunk from its start, keeping the finite epochs: in calls of
        `REPLAY_CHUNK` epochs while their losses are finite, then epoch by epoch within
        the call where they stopped being so (at most ``n_epochs / REPLAY_CHUNK +
        REPLAY_CHUNK`` calls); returns the diverged epoch's loss (a 1-element array)."""
        j, length = 0, REPLAY_CHUNK
        while j < n_epochs:
            length = length if n_epochs - j >= length else 1
            losses, kept = self.rerun(batches, last, j, length)
            if kept:
                j += length
            elif length == 1:
                return losses
            else:  # the divergence is within these epochs: again, one at a time
                length = 1
        raise AssertionError("a diverged chunk replayed without divergence")  # pragma: no cover

    def rerun(self, batches: Array | None, last: Array | None, start: int, length: int
              ) -> tuple[np.ndarray, bool]:
        """Run the chunk's epochs ``start`` to ``start + length`` again; keep them if their
        losses are finite. ``(losses, kept)``."""
        state, data, to_numpy = self.state, self.data, self.model.backend.to_numpy
        part = slice(start, start + length)
        sub = (None if batches is None else batches[part, ...],
               None if last is None else last[part, ...])
        params, opt_state, losses, totals = self.run(state.params, state.opt_state, data.x,
                                                     data.y, data.w, *sub, length,
                                                     **self.noise(state.epoch, length))
        losses = to_numpy(losses)
        if not np.all(np.isfinite(losses)):
            return losses[np.argmax(~np.isfinite(losses))][None], False
        self.keep(params, opt_state, losses, to_numpy(totals))
        return losses, True

    def training_loss(self, params: Params) -> float:
        """The mean loss (no penalty; weighted as training) of ``params`` on the training data."""
        model, data = self.model, self.data
        if data.feed is not None:
            return _fed_loss(model, data.feed, params)

        def compile_loss(spec: NetworkSpec = model.spec) -> Callable[..., Any]:
            def loss(p: Params, x: Array, y: Array, w: Array | None) -> Array:
                return core.loss_value(spec, p, x, y, w)

            return model.backend.jit(loss)

        fn = model.compiled(("training_loss",), compile_loss)
        return float(fn(params, data.x, data.y, data.w))

    def check_final_weights(self) -> None:
        """The last step's weights were never evaluated: refuse NaN/inf weights, and
        weights so large (beyond sqrt of the dtype's largest value) that the forward
        pass may overflow, unless their training loss is finite."""
        largest = _largest_weight(self.model, self.state.params)
        if not math.isfinite(largest):
            self.diverged(self.state.epoch - 1, "the weights became NaN or infinite")
        limit = math.sqrt(float(np.finfo(self.model.dtype_name).max))
        if largest > limit and not math.isfinite(self.training_loss(self.state.params)):
            self.diverged(self.state.epoch - 1, "the loss of the final weights became NaN "
                          "or infinite")

    def mark(self, epoch: int, params: Weights | None = None, opt_state: Any = None) -> Mark:
        """The `Mark` of the start of ``epoch`` of the chunk running (default: the current
        weights and optimizer state)."""
        state = self.state
        start, shuffled = self.chunk
        return Mark(epoch, state.params if params is None else params,
                    state.opt_state if opt_state is None else opt_state, shuffled, epoch - start)

    def last_finite(self) -> Mark:
        """The latest epoch start whose training loss is finite (the fit's start if none
        is); where a callback set the weights the diverged epoch trained from, the weights
        they replaced come next (the epoch before stays)."""
        state, set_ = self.state, self.weights_set
        candidates = [self.mark(state.epoch)]
        if set_ is not None and set_.epoch == state.epoch:
            candidates.append(self.mark(state.epoch, set_.replaced))
        candidates.extend(reversed(self.recent))
        for mark in candidates:
            if _params_finite(self.model, mark.params) and math.isfinite(
                    self.training_loss(mark.params)):
                return mark
        return self.first

    def restore(self, mark: Mark) -> None:
        """Put the model back at ``mark``: the weights, the optimizer's state (its step
        count included), the epoch count, the shuffle stream, and the model's history
        without the epochs from ``mark.epoch`` on; the callbacks, which saw those epochs
        end, are told (`Callback.on_epochs_taken_back`: a `History` drops them)."""
        state, model = self.state, self.model
        seen = state.epoch > mark.epoch  # by the callbacks
        state.params, state.opt_state, state.epoch = mark.params, mark.opt_state, mark.epoch
        model.params, model.optimizer_state_ = mark.params, mark.opt_state
        model.epochs_trained_ = mark.epoch
        self.rewind(mark.shuffled, mark.offset)
        self.model_history().drop_epochs_from(mark.epoch)
        self.check.seen()
        if seen:
            self.callbacks.on_epochs_taken_back(mark.epoch)

    def diverged(self, epoch: int, what: str) -> NoReturn:
        """Restore the last state with a finite loss (`restore`) and raise
        `TrainingDivergedError`, with a message naming the likely cause
        (`divergence_cause`)."""
        mark = self.last_finite()
        self.restore(mark)
        restored = (f"the weights were restored to the last ones with a finite loss (from "
                    f"before epoch {mark.epoch}), and the epoch count, the history and the "
                    f"optimizer's state (its step count) with them")
        raise TrainingDivergedError(f"training diverged: {what} in epoch {epoch}"
                                    f"{self.divergence_cause(epoch, mark)}; {restored}",
                                    self.history)

    def divergence_cause(self, epoch: int, mark: Mark) -> str:
        """What the divergence message blames, in order: the data (or the starting
        weights), when the loss at the weights this fit started from was already
        infinite or near the dtype's limit; ``alpha``, when its L2 penalty overflows there
        or outweighs the data's loss at the restored weights; else the learning rate (a
        schedule named, with the rates of the epoch that diverged)."""
        dtype = self.model.dtype_name
        limit = math.sqrt(float(np.finfo(dtype).max))
        set_ = self.weights_set
        if set_ is not None and set_.epoch == epoch and mark.params is set_.replaced:
            return self._set_weights_cause(set_)
        start_loss = self.training_loss(self.initial)
        if not (math.isfinite(start_loss) and start_loss < limit):
            return self._scale_message(start_loss)
        try:
            rate = self._rate_text(epoch, mark)
        except _ScheduleFault as fault:
            return str(fault)
        if self.alpha:
            start_penalty = self._penalty(self.initial)
            if not start_penalty < limit:
                return (f", but at the weights training started from the L2 penalty 0.5 * "
                        f"alpha * sum ||W||^2 was already {start_penalty:.3g} (alpha="
                        f"{self.alpha!r}), beyond what {dtype} can train with (the square "
                        f"root of its largest number, {limit:.3g}): alpha is too large, not "
                        f"the learning rate; lower alpha")
            return self._alpha_cause(rate, start_penalty, start_loss)
        return f" ({rate} may be too large)"

    def _set_weights_cause(self, set_: WeightsSet) -> str:
        """The cause when the weights a callback set had no finite loss already."""
        largest = _largest_weight(self.model, set_.weights)
        return (f": {set_.callback} set the weights epoch {set_.epoch} trained from (largest "
                f"|W| {largest:.3g}), and the loss at them was already NaN or infinite in "
                f"{self.model.dtype_name}; the callback is the cause, not the learning rate - "
                f"set weights of a sensible size")

    def _alpha_cause(self, rate: str, penalty: float, loss: float) -> str:
        """The cause when ``alpha`` is set: with plain SGD whose ``learning_rate *
        alpha`` exceeds ``2 (1 + momentum)`` the penalty's own steps grow the weights
        without bound; else alpha is named with the learning rate when its penalty
        outweighed the data's loss at the start."""
        opt, alpha = self.optimizer, self.alpha
        if isinstance(opt, SGD) and not callable(opt.learning_rate):
            bound = 2 * (1 + opt.momentum)
            if opt.learning_rate * alpha > bound:
                return (f": alpha {alpha!r} with the learning rate {opt.learning_rate!r} is the "
                        f"cause: their product, {opt.learning_rate * alpha:.3g}, exceeds "
                        f"{bound:g} (2 (1 + momentum)), so the L2 penalty's own steps grow the "
                        f"weights without bound; lower alpha or the learning rate")
        if penalty >= loss:
            return (f" ({rate} or alpha {alpha!r} may be too large: at the weights training "
                    f"started from the L2 penalty, {penalty:.3g}, outweighed the data's loss, "
                    f"{loss:.3g})")
        return f" ({rate} may be too large)"

    def _rate_text(self, epoch: int, mark: Mark) -> str:
        """``the learning rate 0.1`` (with the learning-rate scale of the optimizer's state,
        where it is not 1), or for a schedule ``the learning rate of schedule NAME (up to
        R in epoch E)``; `_schedule_fault` where the schedule gave NaN or inf."""
        scale = self._scale(mark)
        times = "" if scale == 1 else f" times the learning-rate scale {scale:.3g} of the " \
                                      f"optimizer's state"
        scheduled = scheduled_rates(self.optimizer, mark.opt_state)
        if scheduled:
            schedule, steps, rates = self._epoch_rates(epoch, mark, scheduled[0])
            bad = ~np.isfinite(rates)
            if np.any(bad):
                i = int(np.argmax(bad))
                raise _ScheduleFault(
                    f": schedule {_schedule_name(schedule)} returned the learning rate "
                    f"{float(rates[i])} at step {int(steps[i])} (epoch {epoch}); the schedule "
                    f"is the cause - make it return finite rates")
            return (f"the learning rate of schedule {_schedule_name(schedule)} (up to "
                    f"{float(np.max(rates)) * scale:.3g} in epoch {epoch}{times})")
        lr = getattr(self.optimizer, "learning_rate", None)
        if lr is None:
            try:
                lr = current_learning_rate(self.optimizer, mark.opt_state)
            except (ValueError, TypeError):
                return "the learning rate"
            return f"the learning rate {lr!r}"
        return f"the learning rate {lr!r}" + (f"{times} ({lr * scale:.3g})" if times else "")

    def _epoch_rates(self, epoch: int, mark: Mark, scheduled: tuple[Schedule, Any]
                     ) -> tuple[Schedule, np.ndarray, np.ndarray]:
        """``(schedule, steps, rates)`` of the steps of ``epoch``."""
        schedule, count = scheduled
        first = int(count) + (epoch - mark.epoch) * self.steps_per_epoch
        steps, rates = schedule_values(self.model.backend, schedule, first,
                                       self.steps_per_epoch, count, self.model.dtype_name)
        return schedule, steps, rates

    def _scale(self, mark: Mark) -> float:
        try:
            return learning_rate_scale(mark.opt_state)
        except (ValueError, TypeError):
            return 1.0

    def _penalty(self, params: Params) -> float:
        """``0.5 * alpha * sum ||W||^2`` of ``params``, in float64 on the host."""
        to = self.model.backend.to_numpy
        with np.errstate(over="ignore"):
            total = sum(float(np.sum(np.square(to(W).astype(np.float64)))) for W, _ in params)
            return 0.5 * self.alpha * total

    def _scale_message(self, start_loss: float) -> str:
        xp, data, model = self.model.xp, self.data, self.model

        def largest(array: Array) -> float:
            return float(xp.max(xp.abs(array)))

        weights = max(largest(W) for W, _ in self.initial)
        if data.feed is not None:
            x_max, y_max = _fed_largest(model, data.feed)
        else:
            x_max, y_max = largest(data.x), largest(data.y)
        already = (f"{start_loss}" if not math.isfinite(start_loss) else
                   f"{start_loss:.3g} (near the limit of {model.dtype_name})")
        return (f", but at the weights training started from, before any step, the loss was "
                f"already {already}: the data's scale (largest "
                f"|x| {x_max:.3g}, largest |y| {y_max:.3g}) or those "
                f"weights (largest |W| {weights:.3g}) overflow {model.dtype_name}, not the "
                f"learning rate. Rescale x and y (e.g. standardize them) or start from "
                f"fresh weights" + ("" if model.dtype_name == "float64" else
                                    ", or build the model with dtype='float64'"))

    # ------------------------------------------------------------ schedules
    def check_schedules(self, first_epoch: int, n_epochs: int) -> list[tuple[int, int]] | None:
        """Refuse a learning-rate schedule that gives a negative, NaN or infinite rate (in
        the model's dtype) at any step of the epochs ``first_epoch`` to ``first_epoch +
        n_epochs`` (`mlp.optimizers.schedule_values`: one call for every step, or a sample
        for a schedule that takes no array of steps). Returns the steps checked per
        schedule, ``[(first, end), ...]``, or None without a schedule."""
        scheduled = scheduled_rates(self.optimizer, self.state.opt_state)
        if not scheduled:
            return None
        checked = []
        for schedule, count in scheduled:
            first, n_steps = int(count), n_epochs * self.steps_per_epoch
            steps, rates = schedule_values(self.model.backend, schedule, first, n_steps, count,
                                           self.model.dtype_name)
            bad = ~np.isfinite(rates) | (rates < 0)
            if np.any(bad):
                i = int(np.argmax(bad))
                epoch = first_epoch + (int(steps[i]) - first) // self.steps_per_epoch
                raise _schedule_error(schedule, int(steps[i]), float(rates[i]), epoch,
                                      self.model.dtype_name)
            checked.append((first, first + n_steps))
        return checked

    def check_chunk_schedules(self, n_epochs: int) -> None:
        """`check_schedules` for the next chunk's steps where they lie outside those
        checked already (a callback may have moved the optimizer's step count)."""
        if self.checked_steps is None:
            return
        scheduled = scheduled_rates(self.optimizer, self.state.opt_state)
        needed = [(int(count), int(count) + n_epochs * self.steps_per_epoch)
                  for _, count in scheduled]
        if len(needed) == len(self.checked_steps) and all(
                lo >= a and hi <= b for (lo, hi), (a, b) in zip(needed, self.checked_steps)):
            return
        self.checked_steps = self.check_schedules(self.state.epoch, n_epochs)


def _fed_loss(model: MLP, feed: Feed, params: Params) -> float:
    """The mean loss (no penalty; weighted as training) of ``params`` over a feed's rows,
    from the sums of `mlp.data.block_sums` block by block."""
    fn = model.compiled(("block sums",), lambda: model.backend.jit(block_sums(model.spec)))
    total, weight = 0.0, 0.0
    for x, y, w in feed.blocks():
        sums = model.backend.to_numpy(fn(params, x, y, None, w))
        total, weight = total + float(sums[0]), weight + float(sums[1])
    return total / weight if weight > 0 else 0.0


def _fed_largest(model: MLP, feed: Feed) -> tuple[float, float]:
    """The largest ``|x|`` and ``|y|`` over a feed's rows."""
    xp, x_max, y_max = model.xp, 0.0, 0.0
    for x, y, _ in feed.blocks():
        x_max = max(x_max, float(xp.max(xp.abs(x))))
        y_max = max(y_max, float(xp.max(xp.abs(y))))
    return x_max, y_max


#: Steps whose learning rates `schedule_values` computes in one call of a schedule.
SCHEDULE_BLOCK = 2**18
#: Steps a schedule that takes no array of steps is called for, one by one, at most.
SCHEDULE_SAMPLES = 2**11


def schedule_values(backend: Backend, schedule: Schedule, first: int, n_steps: int,
                    like: Array, dtype_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, rates)``: host arrays of the learning rates ``schedule`` gives for the steps
    ``first`` to ``first + n_steps`` (cast to ``dtype_name`` as training casts them).

    A schedule that takes an array of steps (those of `mlp.schedules` and any written
    with elementwise ``xp`` functions) is called once per `SCHEDULE_BLOCK` steps; one
    that does not (it raises, or returns another shape) is called step by step, at every
    step when there are at most `SCHEDULE_SAMPLES`, else at that many steps evenly
    spread from the first to the last."""
    xp, to_host = backend.xp, backend.to_numpy
    steps_out, rates_out = [], []
    for lo in range(first, first + n_steps, SCHEDULE_BLOCK):
        hi = min(lo + SCHEDULE_BLOCK, first + n_steps)
        steps = xp.arange(lo, hi, dtype=like.dtype, device=device(like))
        try:
            values = schedule(steps)
            if not isinstance(values, numbers.Real):
                values = to_host(values)
                if values.shape != (hi - lo,) and not (values.shape == () and hi - lo == 1):
                    raise ValueError("not one rate per step")  # (a 0-d array may be a sum)
        except Exception:  # noqa: BLE001 - a schedule written for one step at a time
            return _one_by_one(backend, schedule, first, n_steps, like, dtype_name)
        rates = np.broadcast_to(np.asarray(values, dtype=np.float64), (hi - lo,))
        steps_out.append(np.arange(lo, hi))
        rates_out.append(_in_dtype(rates, dtype_name))
    return np.concatenate(steps_out), np.concatenate(rates_out)


def _in_dtype(rates: Sequence[float] | np.ndarray, dtype_name: str) -> np.ndarray:
    """float64 ``rates`` as ``dtype_name`` holds them (beyond its range: inf), in float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(rates, dtype=np.float64).astype(dtype_name).astype(np.float64)


def _one_by_one(backend: Backend, schedule: Schedule, first: int, n_steps: int, like: Array,
                dtype_name: str) -> tuple[np.ndarray, np.ndarray]:
    xp = backend.xp
    steps = (np.arange(first, first + n_steps) if n_steps <= SCHEDULE_SAMPLES else
             np.unique(np.linspace(first, first + n_steps - 1, SCHEDULE_SAMPLES).astype(int)))
    rates = []
    for step in steps:
        try:
            value = schedule(xp.asarray(int(step), dtype=like.dtype, device=device(like)))
            value = float(value) if isinstance(value, numbers.Real) else float(
                backend.to_numpy(value))
        except Exception as exc:
            raise TypeError(f"learning-rate schedule {_schedule_name(schedule)} failed for "
                            f"step {int(step)} ({type(exc).__name__}: {exc})") from exc
        rates.append(value)
    return steps, _in_dtype(rates, dtype_name)


def _schedule_error(schedule: Schedule, step: int, rate: float, epoch: int,
                    dtype_name: str) -> ValueError:
    if math.isnan(rate):
        what = "NaN, which would turn the weights into NaN"
    elif math.isinf(rate):
        what = f"{rate} in {dtype_name} (beyond its range), which would overflow the weights"
    else:
        what = f"{rate:.6g}, a negative rate, which would run gradient ascent"
    return ValueError(f"learning-rate schedule {_schedule_name(schedule)} gives {what}, for "
                      f"step {step} (in epoch {epoch}); a learning rate must be a finite "
                      f"number >= 0 at every step: fix the schedule (e.g. clip its value "
                      f"at 0)")
