"""scikit-learn's stochastic solvers (``sgd``, ``adam``) as a mixin of `BaseMLP`.

One compiled epoch per call (`._solver.make_epoch`), then scikit-learn's
bookkeeping on the host: ``loss_curve_``, ``t_``, the ``tol`` /
``n_iter_no_change`` rule (training loss, or validation score with
``early_stopping``), ``invscaling`` and ``adaptive`` learning rates, the
``ConvergenceWarning`` at ``max_iter``. The same ``random_state`` draws the same
split and batches as scikit-learn's MLP.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle

from .. import buckets, dropout
from ..optimizers import with_learning_rate_scale
from ..tree import tree_map
from . import _solver

if TYPE_CHECKING:
    from ..backends import Backend


def _batches(order: np.ndarray, batch_size: int):
    """``(batches (n // bs, bs), last (r,) or None)`` from one epoch's sample order."""
    n_full = (len(order) // batch_size) * batch_size
    return (order[:n_full].reshape(-1, batch_size),
            order[n_full:] if n_full < len(order) else None)


def _training_rows(be: Backend, dtype: Any, pads: bool,
                   rows: tuple[np.ndarray, np.ndarray, np.ndarray | None]
                   ) -> tuple[tuple[Any, Any, Any], int | None]:
    """``((x, y, w) on the backend, padded rows or None)`` from host ``rows = (X, Y, w)``:
    with ``pads`` (`BaseMLP._pads`) padded on the host to `mlp.buckets.training_rows`
    with rows of weight 0, so that every data size within a size of the ladder shares
    one program."""
    (X, Y, w), to = rows, be.asarray
    if not pads:
        return (to(X, dtype), to(Y, dtype), None if w is None else to(w, dtype)), None
    n = X.shape[0]
    size = buckets.training_rows(n)
    weights = buckets.host_weights(w, n, size, X.dtype.name)
    return (to(buckets.pad_host(X, size), dtype), to(buckets.pad_host(Y, size), dtype),
            to(weights, dtype)), size


def _epoch_rows(be: Backend, batches: np.ndarray, last: np.ndarray | None,
                padded: int | None) -> tuple[Any, Any]:
    """An epoch's ``(batches, last)`` on the backend, with a leading axis of one epoch
    (added on the host: no array operation on the device): as they are, or for
    ``padded`` rows laid out by `mlp.buckets.batch_plan` (``last``: the rows in each
    batch slot)."""
    batches, last = batches[None], None if last is None else last[None]
    if padded is None:
        return be.asarray(batches), None if last is None else be.asarray(last)
    indices, counts = buckets.batch_plan(batches, last, padded)
    return be.asarray(indices), be.asarray(counts)


def _stream(be, key, samples_seen):
    """The epoch's dropout stream (`mlp.dropout.epoch_streams`), numbered by the samples
    seen before it (which grow over ``partial_fit`` and ``warm_start`` calls); None
    without dropout."""
    if key is None:
        return None
    return be.asarray(dropout.epoch_streams(key, samples_seen, 1))


@dataclass
class SolverState:
    """What a stochastic solver carries from one `fit`/`partial_fit` call to the next.

    ``learning_rate`` is the current one (``invscaling`` and ``adaptive`` change
    it); ``state`` the optimizer's state (moments, velocity, step count) as
    NumPy arrays, so the estimator pickles; None until the first step.
    """

    learning_rate: float
    state: object = None


class StochasticSolver:
    """`BaseMLP`'s ``sgd`` / ``adam`` training (needs its parameters and helpers)."""

    def _split(self, X, Y, sample_weight, rng):
        """``(train, val)``, each ``(X, Y, w)``; ``val`` None without early stopping."""
        if not self.early_stopping:
            return (X, Y, sample_weight), None
        stratify = Y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction,
                                 stratify=stratify)
        if parts[1].shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        train, val = parts[0::2], parts[1::2]
        if sample_weight is None:
            train, val = (*train, None), (*val, None)
        return train, val

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=3)
        return int(np.clip(self.batch_size, 1, n))

    def _make_optimizer(self):
        return _solver.make_optimizer(self.solver, self.learning_rate_init, self.momentum,
                                      self.nesterovs_momentum, self.beta_1, self.beta_2,
                                      self.epsilon)

    def _fit_stochastic(self, be, X, Y, sample_weight, incremental, rng):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = SolverState(float(self.learning_rate_init))
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        (X, Y, w), val = self._split(X, Y, sample_weight, rng)
        dtype = be.dtype(X.dtype.name)
        to = be.asarray
        data, padded = _training_rows(be, dtype, self._pads(be), (X, Y, w))
        opt, spec, alpha = self._make_optimizer(), self._spec(be), float(self.alpha)
        counted = padded is not None
        epoch = _solver.compiled(be, ("epoch", spec, opt, alpha, counted),
                                 lambda: _solver.make_epoch(be, spec, opt, alpha, counted))
        params = self._device_params(be, dtype)
        key = int(rng.randint(2**31)) if spec.drops else None  # the dropout masks' seed
        # a new state is made on the host and moved as a kept one is (on JAX, zeros
        # made on the device would compile a program per shape)
        host_state = (opt.init(list(zip(self.coefs_, self.intercepts_)))
                      if self._optimizer.state is None else self._optimizer.state)
        state = tree_map(lambda a: to(a, dtype if a.dtype.kind == "f" else None), host_state)
        if val is not None:  # scored every epoch: padded once
            val = (self._forward_input(be, val[0], dtype), self._validation_targets(val[1]),
                   val[2])
            self._best_params = params
        n, order = X.shape[0], np.arange(X.shape[0])
        batch_size = self._batch_size(n)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    order = shuffle(order, random_state=rng)
                batches, last = _batches(order, batch_size)
                state = self._with_learning_rate(state)
                params, state, loss = epoch(params, state, *data,
                                            *_epoch_rows(be, batches, last, padded),
                                            _stream(be, key, self.t_))
                loss = float(loss) + self._epoch_constant(Y, w, batches, last)
                if self._end_epoch(be, loss, n, params, val) or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        self._optimizer.state = tree_map(be.to_numpy, state)
        self._store_params(be, self.__dict__.pop("_best_params") if val is not None else params)

    def _epoch_constant(self, Y, w, batches, last):
        """What scikit-learn's epoch loss adds to ours: each batch's `_loss_constant`,
        weighted by the batch's size as the batches' losses are (0 unless Poisson)."""
        if self.out_activation_ != "exp":
            return 0.0
        rows = [*batches, *([] if last is None else [last])]
        return sum(len(r) * self._loss_constant(Y, w, r) for r in rows) / Y.shape[0]

    def _with_learning_rate(self, state):
        """``state`` with the current learning rate (SGD's ``invscaling``/``adaptive``)."""
        if self.solver != "sgd":
            return state
        return with_learning_rate_scale(state, self._optimizer.learning_rate
                                        / float(self.learning_rate_init))

    def _end_epoch(self, be, loss, n, params, val):
        """scikit-learn's bookkeeping after an epoch; True to stop."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n
        self.loss_curve_.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        self._update_no_improvement_count(be, params, val)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = (float(self.learning_rate_init)
                                             / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        what = ("Validation score" if val is not None else "Training loss")
        msg = (f"{what} did not improve more than tol={self.tol:f} for "
               f"{self.n_iter_no_change} consecutive epochs.")
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._optimizer.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._optimizer.learning_rate /= 5.0
        if self.verbose:
            print(msg + f" Setting learning rate to {self._optimizer.learning_rate:f}")
        self._no_improvement_count = 0
        return False

    def _update_no_improvement_count(self, be, params, val):
        if val is None:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
            return
        X_val, y_val, w_val = val
        outputs = be.to_numpy(self._forward_fn(be)(params, X_val))[:len(y_val)]
        score = (float(self._score_outputs(outputs, y_val, w_val))
                 if np.isfinite(outputs).all() else np.nan)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = params

