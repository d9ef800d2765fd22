"""The training loop: `fit` drives runs of epochs (`mlp.steps`) and their hooks.

The loss comes back to the host once per run, i.e. once per epoch whenever
anything (validation, callbacks, progress) needs it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .callbacks import Callback, EarlyStopping, FunctionCallback, History
from .optimizers import get_optimizer
from .schedules import check_learning_rate
from .steps import InterruptedRun, batch_indices, make_run
from .validation import all_finite, check_float, check_int


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite.

    The model's weights have been restored to the last finite ones; the
    epochs completed before are in ``history``.
    """

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


def _all_finite(backend, params):
    return all(all_finite(backend.xp, W) and all_finite(backend.xp, b) for W, b in params)


def _callbacks(callbacks, model):
    out = []
    for cb in callbacks or []:
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(FunctionCallback(cb))
        else:
            raise TypeError("callbacks must be Callback objects or functions fn(epoch, logs), "
                            f"got {type(cb).__name__}")
    for cb in out:
        cb.set_model(model)
    return out


def fit(model, x, y, *, epochs, learning_rate=None, batch_size=None, shuffle=True,
        optimizer="sgd", alpha=0.0, clip_norm=None, validation_data=None,
        validation_split=None, early_stopping=False, patience=10, min_delta=0.0,
        callbacks=None, verbose=0):
    """Train ``model`` in place of its weights; see `mlp.MLP.fit`."""
    # ---- check everything before touching the model
    epochs = check_int("epochs", epochs)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size)
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 0 (silent), 1 (progress bar) or 2 (a line per epoch), "
                         f"got {verbose!r}")
    alpha = check_float("alpha", alpha, requirement=">= 0", ok=lambda v: v >= 0)
    if clip_norm is not None:
        clip_norm = check_float("clip_norm", clip_norm, requirement="> 0", ok=lambda v: v > 0)
    if learning_rate is not None:
        if isinstance(learning_rate, np.floating | np.integer):  # e.g. np.float32(0.01)
            learning_rate = float(learning_rate)
        check_learning_rate(learning_rate)
        if not isinstance(optimizer, str):
            raise ValueError("learning_rate was given twice: pass it to the optimizer object "
                             "or name the optimizer as a string, not both")
    opt = get_optimizer(optimizer, learning_rate)
    if validation_data is not None and validation_split is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    if validation_split is not None:
        validation_split = check_float("validation_split", validation_split,
                                       requirement="in (0, 1)", ok=lambda v: 0 < v < 1)
    if early_stopping:
        stopper = EarlyStopping("val_loss", patience=patience, min_delta=min_delta)
    cbs = _callbacks(callbacks, model)

    x_dev, y_dev, labels = model._prepare(x, y)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        val = model._prepare(*validation_data, names=("x_val", "y_val"))
    elif validation_split is not None:
        n = x_dev.shape[0]
        n_val = int(round(n * validation_split))
        if n_val < 1 or n_val >= n:
            raise ValueError(f"validation_split={validation_split} leaves {n - n_val} training "
                             f"and {n_val} validation samples out of {n}; both need at least 1")
        order = model._split_rng().permutation(n)
        xp = model.xp
        rows_val = model.backend.asarray(np.sort(order[:n_val]))
        rows_train = model.backend.asarray(np.sort(order[n_val:]))
        val = (xp.take(x_dev, rows_val, axis=0), xp.take(y_dev, rows_val, axis=0),
               None if labels is None else xp.take(labels, rows_val, axis=0))
        x_dev, y_dev = xp.take(x_dev, rows_train, axis=0), xp.take(y_dev, rows_train, axis=0)
    if early_stopping:
        cbs.append(stopper)
        stopper.set_model(model)

    n = x_dev.shape[0]
    full_batch = batch_size is None or batch_size >= n
    run = model._compiled(("run", opt, alpha, clip_norm),
                          lambda: make_run(model.backend, model._spec, opt, alpha, clip_norm))
    hooks = bool(cbs or val is not None or verbose)
    # Without hooks nothing needs the host between epochs: run them in chunks (one compiled
    # call on JAX; elsewhere no per-epoch host round trip). The chunk's host row indices
    # are capped at about 2**22 entries (32 MiB) per call.
    chunk = 1 if hooks else (epochs if full_batch else max(1, min(epochs, 2**22 // n)))
    history = History(dict(epochs=epochs, batch_size=batch_size or n, optimizer=opt,
                           alpha=alpha, clip_norm=clip_norm, shuffle=shuffle, samples=n))
    model.history_ = history
    rng = model._shuffle_rng

    def indices(n_epochs):
        if full_batch:
            return None, None
        batches, last = batch_indices(rng, n, batch_size, n_epochs, shuffle)
        to = model.backend.asarray
        return to(batches), None if last is None else to(last)

    bar = None
    if verbose == 1:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, unit="epoch", desc="fit", leave=True)

    params, state = model.params, opt.init(model.params)
    before = [params, params]  # weights at the start of this epoch and of the previous one
    stopped = completed = False
    for cb in cbs:
        cb.on_train_begin({})
    model.stop_training = False
    try:
        epoch = 0
        while epoch < epochs and not stopped:
            n_epochs = min(chunk, epochs - epoch)
            batches, last = indices(n_epochs)
            t0 = time.perf_counter()
            try:
                new_params, new_state, losses = run(params, state, x_dev, y_dev, batches,
                                                    last, n_epochs)
            except InterruptedRun as part:  # keep the completed epochs, then stop
                if part.losses:
                    params, state = part.params, part.opt_state
                    model.params = params
                    for j, loss in enumerate(part.losses):
                        history.append(epoch + j, {"loss": float(loss)})
                raise KeyboardInterrupt from part.__cause__
            losses = model.backend.to_numpy(losses)
            seconds = time.perf_counter() - t0
            if not np.all(np.isfinite(losses)):
                if n_epochs > 1:  # replay the chunk one epoch at a time to find the epoch
                    for j in range(n_epochs):
                        sub = (None if batches is None else batches[j:j + 1, ...],
                               None if last is None else last[j:j + 1, ...])
                        p, s, lj = run(params, state, x_dev, y_dev, *sub, 1)
                        lj = float(model.backend.to_numpy(lj)[0])
                        if not math.isfinite(lj):
                            break
                        history.append(epoch, {"loss": lj})
                        before = [p, params]
                        params, state, epoch = p, s, epoch + 1
                restore = next((p for p in before if _all_finite(model.backend, p)), before[-1])
                model.params = restore
                raise TrainingDivergedError(
                    f"training diverged: the loss became {losses[np.argmax(~np.isfinite(losses))]}"
                    f" in epoch {epoch} (the learning rate {opt.learning_rate!r} may be too "
                    f"large); the weights were restored to the last finite ones (from before "
                    f"epoch {epoch if restore is before[0] else epoch - 1})", history)
            before = [new_params, params]
            params, state = new_params, new_state
            model.params = params
            for j in range(n_epochs):
                logs = {"loss": float(losses[j])}
                if val is not None:
                    logs.update(model._validation_logs(*val))
                history.append(epoch, logs)
                if verbose == 2:
                    items = " - ".join(f"{k}: {v:.6g}" for k, v in logs.items())
                    print(f"epoch {epoch + 1}/{epochs} - {items} - {seconds:.3f}s", flush=True)
                for cb in cbs:
                    if cb.on_epoch_end(epoch, logs) is True:
                        stopped = True
                stopped = stopped or bool(getattr(model, "stop_training", False))
                if stopped:
                    history.stopped_epoch = epoch
                epoch += 1
            if bar is not None:
                bar.update(n_epochs)
                bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.history.items()})
        completed = True
    finally:
        if bar is not None:
            bar.close()
        model.optimizer_state_ = state
        model.optimizer_ = opt
        for cb in cbs:
            cb.on_train_end({"completed": completed})
    return history
