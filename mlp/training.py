"""The training loop: pure steps composed into epochs, epochs into compiled calls.

A *step* is ``(params, opt_state, x_batch, y_batch) -> (params, opt_state, loss)``.
An *epoch* scans the step over the batches, whose row indices are drawn on the
host (one permutation per epoch from the model's seed) and gathered on the
device, so the data crosses to the device once per `fit` and every backend
sees the same batches. A *run* scans epochs. On JAX a run is one compiled
call (`Backend.jit` + `Backend.scan` = ``lax.scan``); elsewhere the same code
runs as Python loops. The loss comes back to the host once per run, i.e. once
per epoch whenever anything (validation, callbacks, progress) needs it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .callbacks import Callback, EarlyStopping, FunctionCallback, History
from .core import clip_by_global_norm, loss_and_gradients
from .optimizers import SGD, Adam, AdamW, RMSprop, get_optimizer
from .schedules import check_learning_rate
from .validation import all_finite, check_float, check_int


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite.

    The model's weights have been restored to the last finite ones; the
    epochs completed before are in ``history``.
    """

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


def make_step(spec, optimizer, alpha=0.0, clip_norm=None, packer=None):
    """The pure training step for one batch.

    With a `Packer`, ``params`` (and the optimizer's state) are the packed flat
    arrays: the network sees them unpacked, the optimizer updates them packed.
    """
    xp = spec.xp

    def step(params, opt_state, xb, yb):
        layers = params if packer is None else packer.unpack(params)
        loss, grads = loss_and_gradients(spec, layers, xb, yb, alpha)
        if clip_norm is not None:
            grads = clip_by_global_norm(xp, grads, clip_norm)
        if packer is not None:
            grads = packer.pack(grads)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    return step


class InterruptedRun(Exception):
    """Ctrl-C inside a Python-loop run, after ``len(losses)`` completed epochs whose
    weights and optimizer state it carries (`fit` keeps them, then re-raises)."""

    def __init__(self, params, opt_state, losses):
        super().__init__("interrupted")
        self.params, self.opt_state, self.losses = params, opt_state, losses


#: Optimizers whose update is elementwise over every parameter array: on a backend
#: that does not compile they update all weights as one flat array (see `Packer`).
PACKABLE_OPTIMIZERS = (SGD, Adam, AdamW, RMSprop)


class Packer:
    """All weight matrices as one flat array, all biases as another.

    Where every array operation costs a fixed overhead (NumPy, PyTorch eager), an
    elementwise optimizer (`PACKABLE_OPTIMIZERS`) then runs its handful of
    operations twice per step instead of twice per layer. Each element sees
    exactly the same operations in the same order, so results are identical to
    the per-layer update, bit for bit. Unpacking gives views (reshaped slices).
    """

    def __init__(self, xp, shapes):
        self.xp = xp
        self.shapes = [tuple(s) for s in shapes]  # (fan_in, fan_out) per layer
        self.w_bounds, self.b_bounds = [], []
        ow = ob = 0
        for fan_in, fan_out in self.shapes:
            self.w_bounds.append((ow, ow + fan_in * fan_out))
            self.b_bounds.append((ob, ob + fan_out))
            ow, ob = ow + fan_in * fan_out, ob + fan_out

    def pack(self, pairs):
        xp = self.xp
        return [(xp.concat([xp.reshape(W, (-1,)) for W, _ in pairs]),
                 xp.concat([b for _, b in pairs]))]

    def unpack(self, packed):
        flat_w, flat_b = packed[0]
        return [(self.xp.reshape(flat_w[w0:w1], shape), flat_b[b0:b1])
                for shape, (w0, w1), (b0, b1) in zip(self.shapes, self.w_bounds, self.b_bounds)]

    def _is_param_list(self, node):
        return (isinstance(node, list) and len(node) == len(self.shapes)
                and all(isinstance(p, tuple) and len(p) == 2 for p in node))

    def pack_tree(self, node):
        """Pack every per-layer ``[(W, b), ...]`` list inside an optimizer state."""
        if self._is_param_list(node):
            return self.pack(node)
        if isinstance(node, tuple):
            return tuple(self.pack_tree(n) for n in node)
        return node

    def unpack_tree(self, node, like):
        """Undo `pack_tree`; ``like`` is the unpacked state it came from."""
        if self._is_param_list(like):
            return self.unpack(node)
        if isinstance(like, tuple):
            return tuple(self.unpack_tree(n, m) for n, m in zip(node, like))
        return node


def make_run(backend, spec, optimizer, alpha=0.0, clip_norm=None):
    """``run(params, opt_state, x, y, batches, last, n_epochs) -> (params, opt_state, losses)``.

    ``batches: (n_epochs, n_batches, batch_size)`` and ``last: (n_epochs, r)``
    hold row indices (``None`` for full-batch training, or when the batch size
    divides the data); ``losses: (n_epochs,)`` are the epochs' mean losses.
    Compiled with ``backend.jit`` (``n_epochs`` is static).
    """
    xp = spec.xp
    step = make_step(spec, optimizer, alpha, clip_norm)
    # Plain SGD has two operations per array: packing would cost more than it saves.
    packed = (not backend.compiles and type(optimizer) in PACKABLE_OPTIMIZERS
              and not (type(optimizer) is SGD and not optimizer.momentum))

    def run(params, opt_state, x, y, batches, last, n_epochs):
        if packed:
            packer = Packer(xp, [W.shape for W, _ in params])
            return _packed_run(packer, params, opt_state, x, y, batches, last, n_epochs)
        return _run(step, params, opt_state, x, y, batches, last, n_epochs)

    def _packed_run(packer, params, opt_state, x, y, batches, last, n_epochs):
        packed_step = make_step(spec, optimizer, alpha, clip_norm, packer)
        try:
            p, s, losses = _run(packed_step, packer.pack(params), packer.pack_tree(opt_state),
                                x, y, batches, last, n_epochs)
        except InterruptedRun as part:
            raise InterruptedRun(packer.unpack(part.params),
                                 packer.unpack_tree(part.opt_state, opt_state),
                                 part.losses) from part.__cause__
        return packer.unpack(p), packer.unpack_tree(s, opt_state), losses

    def _run(step, params, opt_state, x, y, batches, last, n_epochs):
        n = x.shape[0]

        def batch(carry, rows):
            params, opt_state = carry
            params, opt_state, loss = step(params, opt_state, backend.take_rows(x, rows),
                                           backend.take_rows(y, rows))
            return (params, opt_state), loss

        def epoch(carry, rows):
            if rows is None:  # full batch: the data as it is
                params, opt_state, loss = step(*carry, x, y)
                return (params, opt_state), loss
            full, rest = rows
            carry, losses = backend.scan(batch, carry, full)
            total = xp.sum(losses) * full.shape[-1]
            if rest is not None:
                carry, loss = batch(carry, rest)
                total = total + loss * rest.shape[-1]
            return carry, total / n

        if backend.compiles:
            rows = None if batches is None else (batches, last)
            (params, opt_state), losses = backend.scan(epoch, (params, opt_state), rows,
                                                       length=n_epochs)
            return params, opt_state, losses
        # A Python loop over the epochs: Ctrl-C keeps the epochs completed so far.
        carry, losses = (params, opt_state), []
        try:
            for e in range(n_epochs):
                rows = None if batches is None else (
                    batches[e, ...], None if last is None else last[e, ...])
                carry, loss = epoch(carry, rows)
                losses.append(loss)
        except KeyboardInterrupt as exc:
            raise InterruptedRun(*carry, losses) from exc
        return carry[0], carry[1], xp.stack(losses)

    return backend.jit(run, static_argnums=(6,))


def batch_indices(rng, n, batch_size, n_epochs, shuffle):
    """Host row indices for ``n_epochs`` epochs: ``(batches, last)`` (see `make_run`)."""
    if shuffle:
        order = np.stack([rng.permutation(n) for _ in range(n_epochs)])
    else:
        order = np.broadcast_to(np.arange(n), (n_epochs, n))
    n_full = (n // batch_size) * batch_size
    batches = order[:, :n_full].reshape(n_epochs, n // batch_size, batch_size)
    last = order[:, n_full:] if n_full < n else None
    return batches, last


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
