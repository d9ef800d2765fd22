"""scikit-learn's ``lbfgs`` solver as a mixin of `BaseMLP`: ``scipy.optimize``'s
L-BFGS-B on the full-batch objective, whose value and gradient the backend
computes (`._solver.make_loss_and_gradients`; one host round trip per evaluation).
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result

from .. import buckets
from . import _solver


def _padded_rows(pads: bool, X: np.ndarray, Y: np.ndarray,
                 sample_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray,
                                                            np.ndarray | None]:
    """``(X, Y, sample_weight)``, with ``pads`` (`BaseMLP._pads`) padded on the host to
    `mlp.buckets.bucket` with rows of weight 0 (the weights then never None)."""
    if not pads:
        return X, Y, sample_weight
    n = X.shape[0]
    size = buckets.bucket(n)
    return (buckets.pad_host(X, size), buckets.pad_host(Y, size),
            buckets.host_weights(sample_weight, n, size, X.dtype.name))


class LbfgsSolver:
    """`BaseMLP`'s ``lbfgs`` training (needs its parameters and helpers)."""

    def _fit_lbfgs(self, be, X, Y, sample_weight):
        dtype = be.dtype(X.dtype.name)
        constant = self._loss_constant(Y, sample_weight)  # scikit-learn's reported objective
        data = [None if a is None else be.asarray(a, dtype)
                for a in _padded_rows(self._pads(be), X, Y, sample_weight)]
        shapes = [W.shape for W in self.coefs_]
        theta = np.concatenate([W.ravel() for W in self.coefs_]
                               + list(self.intercepts_)).astype(np.float64)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1

        def objective(packed, *args):
            loss, grad = self._backend_loss_grad(be, packed, *args)
            return loss + constant, grad

        result = scipy.optimize.minimize(
            objective, theta, args=tuple(data), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        flat = result.x.astype(X.dtype)
        self.coefs_, self.intercepts_, start = [], [], 0
        for fan_in, fan_out in shapes:
            self.coefs_.append(flat[start:start + fan_in * fan_out].reshape(fan_in, fan_out))
            start += fan_in * fan_out
        for _, fan_out in shapes:
            self.intercepts_.append(flat[start:start + fan_out])
            start += fan_out

    def _loss_grad_lbfgs(self, packed, X, Y, sample_weight=None, *unused):
        """The full-batch objective and its gradient, for L-BFGS (as scikit-learn's).

        ``packed`` (float64): every ``W`` raveled, then every ``b``; ``X``,
        ``Y: (n, n_outputs)`` and ``sample_weight`` as NumPy or backend arrays.
        Returns ``(loss, flat gradient as float64)``; the work runs on the backend.
        """
        be = self._backend()
        constant = self._loss_constant(np.asarray(Y), sample_weight)
        with be.precision(self.coefs_[0].dtype):
            loss, grad = self._backend_loss_grad(be, packed, X, Y, sample_weight)
            return loss + constant, grad

    def _backend_loss_grad(self, be, packed, X, Y, sample_weight):
        dtype = be.dtype(self.coefs_[0].dtype.name)
        spec, alpha = self._spec(be), float(self.alpha)
        fn = _solver.compiled(be, ("lbfgs", spec, alpha),
                              lambda: _solver.make_loss_and_gradients(be, spec, alpha))
        shapes = tuple(W.shape for W in self.coefs_)
        n_w = sum(W.size for W in self.coefs_)
        to = be.asarray
        w = None if sample_weight is None else to(sample_weight, dtype)
        loss, dw, db = fn(to(packed[:n_w], dtype), to(packed[n_w:], dtype), shapes,
                          to(X, dtype), to(Y, dtype), w)
        grad = np.concatenate([be.to_numpy(dw), be.to_numpy(db)])
        return float(loss), grad.astype(np.float64)

