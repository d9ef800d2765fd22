"""The network's math: pure forward and backward passes over ``xp``.

Parameters are a list of ``(W, b)`` pairs, ``W: (fan_in, fan_out)``,
``b: (fan_out,)``. Nothing here mutates an array, so JAX can trace and
compile every function, and the same code runs on every backend.

For a batch ``x: (n, n_features)`` the forward pass computes, layer by layer,

    z_l = a_{l-1} @ W_l + b_l,        a_l = f_l(z_l),        a_0 = x

and the backward pass, starting from ``delta_L = dLoss/dz_L`` (given fused by
the loss), runs

    dW_l = a_{l-1}.T @ delta_l,       db_l = sum_rows(delta_l),
    delta_{l-1} = f'_{l-1}(z_{l-1}) * (delta_l @ W_l.T)

stopping before the input layer (nobody needs ``dLoss/dx``).

Dropout while training (`mlp.dropout`): each layer's input is ``a_{l-1} * m_l``, the
mask ``m_l: (n, fan_in)`` holding 0 (dropped) or ``1 / (1 - rate)``; then
``dW_l = (a_{l-1} * m_l).T @ delta_l`` and the gradient flowing back through the mask is
scaled by the same mask, ``delta_{l-1} = f'_{l-1}(z_{l-1}) * ((delta_l @ W_l.T) * m_l)``.
Without masks (inference) nothing changes.

With per-row weights ``w: (n,)`` the loss is scikit-learn's weighted mean
``sum_i w_i * l_i / sum_i w_i`` (`mlp.losses`): ``delta_L``'s rows are scaled by
``w_i / sum(w)``, and the input rows of weight 0 are zeroed first, so such a row
adds exactly 0 to the loss and to every gradient whatever finite values it holds
(a padding row, or a sample dropped by its weight). ``weights=None`` is the
unweighted computation, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

from array_api_compat import device

from ._typing import Array, Grads, Namespace, Params
from .activations import Activation
from .losses import Loss

#: Dropout masks of a training batch, one per layer's input (None: kept whole), or None.
Masks = Sequence[Array | None] | None


class NetworkSpec(NamedTuple):
    """Everything static about a network's math (no arrays).

    ``dropout`` holds the drop rate of each layer's input while training
    (``dropout[0]``: the input features; empty: no dropout, `mlp.dropout`).
    """

    xp: Any
    hidden: Activation
    output: Activation
    loss: Loss
    dropout: tuple[float, ...] = ()

    @property
    def drops(self) -> bool:
        """Whether training drops any unit (a rate above 0)."""
        return any(rate > 0 for rate in self.dropout)


def forward(spec: NetworkSpec, params: Params, x: Array) -> Array:
    """The network's output ``a_L: (n, n_outputs)`` for ``x: (n, n_features)``."""
    xp = spec.xp
    a = x
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        act = spec.output if i == last else spec.hidden
        a = act.forward(xp, a @ W + b)
    return a


def forward_logits(spec: NetworkSpec, params: Params, x: Array, masks: Masks = None
                   ) -> tuple[Array, Array]:
    """``(z_L, a_L)``: the output layer's pre-activation and activation (with ``masks``,
    training's dropout masks, `loss_and_gradients`, applied to each layer's input)."""
    xp = spec.xp
    a = x
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        z = (a if masks is None else dropped(a, masks[i])) @ W + b
        a = (spec.output if i == last else spec.hidden).forward(xp, z)
    return z, a


def forward_checked(spec: NetworkSpec, params: Params, x: Array,
                    n_rows: int | None = None) -> tuple[Array, Array]:
    """``(a_L, n_bad)``: the network's output and the number of rows whose output layer
    (its pre-activation ``z_L`` or its activation ``a_L``) is not finite - rows whose
    forward pass overflowed the dtype (an int 0-d array; `mlp.MLP.predict` refuses them).

    ``n_rows`` (an int or integer 0-d array; None: all) counts only the first
    ``n_rows`` rows: those after them are padding (`mlp.buckets`).
    """
    xp = spec.xp
    z, a = forward_logits(spec, params, x)
    bad = ~(xp.all(xp.isfinite(z), axis=1) & xp.all(xp.isfinite(a), axis=1))
    if n_rows is not None:
        bad = bad & (xp.arange(x.shape[0], device=device(x)) < n_rows)
    return a, xp.sum(xp.astype(bad, xp.int32))


def all_finite_flag(xp: Namespace, arrays: Sequence[Array]) -> Array:
    """Whether every entry of ``arrays`` is finite, as a bool 0-d array (NaN propagates
    through ``max``; one small reduction per array)."""
    return xp.all(xp.isfinite(xp.stack([xp.max(xp.abs(a)) for a in arrays])))


def zero_weight_rows(xp: Namespace, x: Array, weights: Array | None) -> Array:
    """``x`` with the rows of weight 0 set to 0 (``x`` itself when ``weights`` is None)."""
    if weights is None:
        return x
    return xp.where(weights[:, None] > 0, x, 0.0)


def loss_value(spec: NetworkSpec, params: Params, x: Array, y: Array,
               weights: Array | None = None, masks: Masks = None) -> Array:
    """The mean loss (0-d array) of ``params`` on ``(x, y)``; ``y`` as the loss expects it.

    ``weights: (n,)`` (non-negative, or None) weights the mean over rows. ``masks``:
    training's dropout masks, one per layer's input (`mlp.dropout.masks`), or None
    (inference: no unit dropped).
    """
    z, a = forward_logits(spec, params, zero_weight_rows(spec.xp, x, weights), masks)
    return spec.loss.value(spec.xp, z, a, y, weights)


def dropped(a: Array, mask: Array | None) -> Array:
    """A layer's input after inverted dropout.

    Parameters
    ----------
    a : array, (n, fan_in)
        The input (or the gradient flowing back through it).
    mask : array, (n, fan_in), or None
        The mask (`mlp.dropout.masks`); None: nothing dropped.

    Returns
    -------
    array, (n, fan_in)
        ``a * mask``, or ``a`` itself where ``mask`` is None.
    """
    return a if mask is None else a * mask


def l2_penalty(xp: Namespace, params: Params, alpha: float | Array) -> Array:
    """``0.5 * alpha * sum ||W||^2`` over the weight matrices (not the biases)."""
    total = 0.0
    for W, _ in params:
        total = total + xp.sum(W * W)
    return 0.5 * alpha * total


def has_l2(alpha: float | Array) -> bool:
    """Whether ``alpha`` adds an L2 term: a nonzero number, or any array (a traced
    coefficient such as scikit-learn's ``alpha / sum(w_batch)`` is not known while
    compiling, so it always counts)."""
    return not isinstance(alpha, (int, float)) or alpha != 0


def loss_and_gradients(spec: NetworkSpec, params: Params, x: Array, y: Array,
                       alpha: float | Array = 0.0,
                       weights: Array | None = None, masks: Masks = None
                       ) -> tuple[Array, Grads]:
    """The mean loss and its exact gradients, from one forward pass.

    (`loss_gradients_and_totals` returns the batch's training totals as well.)

    Parameters
    ----------
    params : list of (W, b)
    x : array, (n, n_features)
    y : array, (n, n_outputs)
        Targets as the loss expects them (one-hot rows for cross-entropy).
    alpha : float or 0-d array
        L2 penalty ``0.5 * alpha * sum ||W||^2`` added to the loss (weights only).
    weights : array, (n,), or None
        Non-negative row weights in the model's dtype: the loss becomes
        ``sum_i w_i * l_i / sum_i w_i`` (0, with zero gradients, if they sum to
        0); None is the unweighted mean.
    masks : list of (array (n, fan_in) or None), or None
        Dropout masks (`mlp.dropout.masks`): layer ``i``'s input is ``a_{i-1} *
        masks[i]`` in the forward pass, and the same mask scales its gradient on the
        way back. None: no dropout.

    Returns
    -------
    loss : 0-d array
    grads : list of (dW, db), shapes as ``params``
    """
    loss, grads, _ = _loss_and_gradients(spec, params, x, y, alpha, weights, False, masks)
    return loss, grads


def loss_gradients_and_totals(spec: NetworkSpec, params: Params, x: Array, y: Array,
                              alpha: float | Array = 0.0, weights: Array | None = None,
                              masks: Masks = None) -> tuple[Array, Grads, Array]:
    """`loss_and_gradients` and the batch's training totals
    (`mlp.losses.Loss.train_totals`, from the same forward pass):
    ``(loss, grads, totals)``."""
    return _loss_and_gradients(spec, params, x, y, alpha, weights, True, masks)


def _loss_and_gradients(spec: NetworkSpec, params: Params, x: Array, y: Array,
                        alpha: float | Array, weights: Array | None,
                        with_totals: bool, masks: Masks = None
                        ) -> tuple[Array, Grads, Array | None]:
    xp = spec.xp
    # (a hidden activation has a backward rule: `mlp.activations.get_activation` checks it)
    backward = cast("Callable[..., Array]", spec.hidden.backward)
    n_layers = len(params)
    masks = [None] * n_layers if masks is None else masks
    inputs: list[Array] = []  # each layer's input, after dropout
    acts: list[Array] = []  # the activations, before it
    zs: list[Array] = []
    a = zero_weight_rows(xp, x, weights)
    for i, (W, b) in enumerate(params):
        acts.append(a)
        a = dropped(a, masks[i])
        inputs.append(a)
        z = a @ W + b
        zs.append(z)
        if i < n_layers - 1:
            a = spec.hidden.forward(xp, z)
        elif spec.loss.needs_output:
            a = spec.output.forward(xp, z)
        else:  # the loss works from z alone (softmax fused into cross-entropy)
            a = None
    loss, delta = spec.loss.value_and_delta(xp, zs[-1], a, y, spec.output, weights)
    totals = spec.loss.train_totals(xp, zs[-1], a, y, weights) if with_totals else None

    grads: list[Any] = [None] * n_layers
    for i in range(n_layers - 1, -1, -1):
        W = params[i][0]
        dW = inputs[i].T @ delta
        if has_l2(alpha):
            dW = dW + alpha * W
        grads[i] = (dW, xp.sum(delta, axis=0))
        if i > 0:
            delta = backward(xp, dropped(delta @ W.T, masks[i]), zs[i - 1], acts[i])
    if has_l2(alpha):
        loss = loss + l2_penalty(xp, params, alpha)
    return loss, grads, totals

