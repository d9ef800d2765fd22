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

Batch normalization (``spec.batch_norm``, `mlp.batch_norm`): a hidden layer's
pre-activation is ``z_l = gamma_l * normalize(a_{l-1} @ W_l) + beta_l``, its ``b_l``
holding ``(beta, gamma, running mean, running variance)`` as rows ``(4, units)``.
While training the batch's own (weighted) mean and variance normalize and the backward
pass runs through them (`mlp.batch_norm.backward`); at inference the running averages do.

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

from . import batch_norm as bn
from ._typing import Array, Grads, Namespace, Params
from .activations import Activation
from .losses import Loss

#: Dropout masks of a training batch, one per layer's input (None: kept whole), or None.
Masks = Sequence[Array | None] | None


class NetworkSpec(NamedTuple):
    """Everything static about a network's math (no arrays).

    Parameters
    ----------
    xp : namespace
        The backend's array-API namespace.
    hidden : Activation
        The hidden layers' activation.
    output : Activation
        The output layer's activation.
    loss : Loss
        The loss.
    dropout : tuple of float, default ()
        The drop rate of each layer's input while training (``dropout[0]``: the
        input features; empty: no dropout, `mlp.dropout`).
    batch_norm : tuple of float, default ()
        ``(momentum, epsilon)`` of the hidden layers' batch normalization
        (`mlp.batch_norm`); empty: none.
    """

    xp: Any
    hidden: Activation
    output: Activation
    loss: Loss
    dropout: tuple[float, ...] = ()
    batch_norm: tuple[float, ...] = ()

    @property
    def drops(self) -> bool:
        """Whether training drops any unit (a rate above 0)."""
        return any(rate > 0 for rate in self.dropout)

    @property
    def normalizes(self) -> bool:
        """Whether the hidden layers are batch-normalized."""
        return bool(self.batch_norm)


def pre_activation(spec: NetworkSpec, a: Array, W: Array, b: Array, hidden: bool) -> Array:
    """Compute a layer's pre-activation at inference.

    ``a @ W + b``, or on a batch-normalized hidden layer ``a @ W`` normalized with the
    running averages (`mlp.batch_norm`).

    Parameters
    ----------
    spec : NetworkSpec
        The network's math.
    a : array of shape (n_samples, fan_in)
        The layer's input.
    W : array of shape (fan_in, fan_out)
        Its weights.
    b : array of shape (fan_out,) or (4, fan_out)
        Its bias (or its normalization's rows, `mlp.batch_norm.ROWS`).
    hidden : bool
        Whether the layer is a hidden one.

    Returns
    -------
    array of shape (n_samples, fan_out)
        The pre-activation.
    """
    if hidden and spec.normalizes:
        return bn.layer_inference(spec.xp, a @ W, b, spec.batch_norm[1])
    return a @ W + b


def forward(spec: NetworkSpec, params: Params, x: Array) -> Array:
    """Compute the network's output.

    Parameters
    ----------
    spec : NetworkSpec
        The network's math (`mlp.MLP.spec`).
    params : list of (W, b)
        Per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape ``(fan_out,)``.
    x : array of shape (n_samples, n_features)
        The inputs.

    Returns
    -------
    array of shape (n_samples, n_outputs)
        The output layer's activation ``a_L``.
    """
    xp = spec.xp
    a = x
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        act = spec.output if i == last else spec.hidden
        a = act.forward(xp, pre_activation(spec, a, W, b, i < last))
    return a


def forward_logits(spec: NetworkSpec, params: Params, x: Array, masks: Masks = None,
                   weights: Array | None = None, training: bool = False
                   ) -> tuple[Array, Array]:
    """Compute the output layer's pre-activation and activation.

    Parameters
    ----------
    spec : NetworkSpec
        The network's math (`mlp.MLP.spec`).
    params : list of (W, b)
        Per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape ``(fan_out,)``.
    x : array of shape (n_samples, n_features)
        The inputs.
    masks : sequence of (array of shape (n_samples, fan_in) or None), or None, default None
        Training's dropout masks, one per layer's input (`mlp.dropout.masks`):
        layer ``i``'s input is multiplied by ``masks[i]``; None (inference): no
        unit dropped.
    weights : array of shape (n_samples,) or None, default None
        With ``training``: the rows' weights in the batch statistics (None: equal).
    training : bool, default False
        Batch normalization with the batch's statistics (as a training step), not
        the running averages.

    Returns
    -------
    z : array of shape (n_samples, n_outputs)
        The output layer's pre-activation ``z_L``.
    a : array of shape (n_samples, n_outputs)
        Its activation ``a_L``.
    """
    xp = spec.xp
    a = x
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        a = a if masks is None else dropped(a, masks[i])
        if training and spec.normalizes and i < last:
            z, _ = bn.layer_forward(xp, a @ W, b, weights, spec.batch_norm[1])
        else:
            z = pre_activation(spec, a, W, b, i < last)
        a = (spec.output if i == last else spec.hidden).forward(xp, z)
    return z, a


def forward_checked(spec: NetworkSpec, params: Params, x: Array,
                    n_rows: int | None = None) -> tuple[Array, Array]:
    """Compute the network's output and count the rows whose output is not finite.

    A row whose output layer (its pre-activation ``z_L`` or its activation
    ``a_L``) is not finite overflowed the dtype; `mlp.MLP.predict` refuses them.

    Parameters
    ----------
    spec : NetworkSpec
        The network's math (`mlp.MLP.spec`).
    params : list of (W, b)
        Per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape ``(fan_out,)``.
    x : array of shape (n_samples, n_features)
        The inputs.
    n_rows : int, 0-d array of int or None, default None
        Count only the first ``n_rows`` rows: those after them are padding
        (`mlp.buckets`). None: all.

    Returns
    -------
    a : array of shape (n_samples, n_outputs)
        The network's output.
    n_bad : 0-d array of int
        The number of rows whose output is not finite.
    """
    xp = spec.xp
    z, a = forward_logits(spec, params, x)
    bad = ~(xp.all(xp.isfinite(z), axis=1) & xp.all(xp.isfinite(a), axis=1))
    if n_rows is not None:
        bad = bad & (xp.arange(x.shape[0], device=device(x)) < n_rows)
    return a, xp.sum(xp.astype(bad, xp.int32))


def all_finite_flag(xp: Namespace, arrays: Sequence[Array]) -> Array:
    """Tell whether every entry of ``arrays`` is finite, as a bool 0-d array.

    NaN propagates through ``max``: one small reduction per array.

    Parameters
    ----------
    xp : namespace
        The arrays' array-API namespace.
    arrays : sequence of arrays
        The arrays.

    Returns
    -------
    0-d array of bool
        Whether they are all finite.
    """
    return xp.all(xp.isfinite(xp.stack([xp.max(xp.abs(a)) for a in arrays])))


def zero_weight_rows(xp: Namespace, x: Array, weights: Array | None) -> Array:
    """Set the rows of weight 0 of ``x`` to 0.

    Parameters
    ----------
    xp : namespace
        The array-API namespace.
    x : array of shape (n_samples, n_features)
        The inputs.
    weights : array of shape (n_samples,) or None
        The rows' weights.

    Returns
    -------
    array of shape (n_samples, n_features)
        ``x`` with those rows 0 (``x`` itself when ``weights`` is None).
    """
    if weights is None:
        return x
    return xp.where(weights[:, None] > 0, x, 0.0)


def loss_value(spec: NetworkSpec, params: Params, x: Array, y: Array,
               weights: Array | None = None, masks: Masks = None, training: bool = False
               ) -> Array:
    """Compute the mean loss of ``params`` on ``(x, y)`` (no gradient).

    Parameters
    ----------
    spec : NetworkSpec
        The network's math (`mlp.MLP.spec`).
    params : list of (W, b)
        Per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape ``(fan_out,)``.
    x : array of shape (n_samples, n_features)
        The inputs.
    y : array of shape (n_samples, n_outputs)
        The targets as the loss expects them (one-hot rows for cross-entropy).
    weights : array of shape (n_samples,) or None, default None
        Non-negative row weights in the model's dtype: the loss becomes
        ``sum_i w_i * l_i / sum_i w_i`` (0, with zero gradients, if they sum to
        0); None is the unweighted mean.
    masks : sequence of (array of shape (n_samples, fan_in) or None), or None, default None
        Training's dropout masks, one per layer's input (`mlp.dropout.masks`):
        layer ``i``'s input is multiplied by ``masks[i]``; None (inference): no
        unit dropped.
    training : bool, default False
        Batch normalization with the batch's statistics (the loss a training step
        differentiates), not the running averages.

    Returns
    -------
    0-d array
        The mean loss.
    """
    z, a = forward_logits(spec, params, zero_weight_rows(spec.xp, x, weights), masks,
                          weights, training)
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
    """Compute ``0.5 * alpha * sum ||W||^2`` over the weight matrices (not the biases).

    Parameters
    ----------
    xp : namespace
        The array-API namespace.
    params : list of (W, b)
        The weights and biases.
    alpha : float or 0-d array
        The penalty's strength.

    Returns
    -------
    0-d array
        The penalty.
    """
    total = 0.0
    for W, _ in params:
        total = total + xp.sum(W * W)
    return 0.5 * alpha * total


def has_l2(alpha: float | Array) -> bool:
    """Tell whether ``alpha`` adds an L2 term.

    A nonzero number does, and so does any array: a traced coefficient such as
    scikit-learn's ``alpha / sum(w_batch)`` is not known while compiling, so it
    always counts.

    Parameters
    ----------
    alpha : float or array
        The penalty's strength.

    Returns
    -------
    bool
        Whether the loss has an L2 term.
    """
    return not isinstance(alpha, (int, float)) or alpha != 0


def loss_and_gradients(spec: NetworkSpec, params: Params, x: Array, y: Array,
                       alpha: float | Array = 0.0,
                       weights: Array | None = None, masks: Masks = None
                       ) -> tuple[Array, Grads]:
    """Compute the mean loss and its exact gradients, from one forward pass.

    (`loss_gradients_and_totals` returns the batch's training totals as well.)

    Parameters
    ----------
    spec : NetworkSpec
        The network's math (`mlp.MLP.spec`).
    params : list of (W, b)
        Per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape ``(fan_out,)``.
    x : array of shape (n_samples, n_features)
        The inputs.
    y : array of shape (n_samples, n_outputs)
        The targets as the loss expects them (one-hot rows for cross-entropy).
    alpha : float or 0-d array, default 0.0
        L2 penalty ``0.5 * alpha * sum ||W||^2`` added to the loss (weights only).
    weights : array of shape (n_samples,) or None, default None
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
        The mean loss (with the penalty).
    grads : list of (dW, db)
        Its gradients, shaped as ``params``.
    """
    loss, grads, _ = _loss_and_gradients(spec, params, x, y, alpha, weights, False, masks)
    return loss, grads


def loss_gradients_and_totals(spec: NetworkSpec, params: Params, x: Array, y: Array,
                              alpha: float | Array = 0.0, weights: Array | None = None,
                              masks: Masks = None) -> tuple[Array, Grads, Array]:
    """Compute `loss_and_gradients` and the batch's training totals, from one forward pass.

    The totals are `mlp.losses.Loss.train_totals`.

    Parameters
    ----------
    spec : NetworkSpec
        The network's math (`mlp.MLP.spec`).
    params : list of (W, b)
        Per layer ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape ``(fan_out,)``.
    x : array of shape (n_samples, n_features)
        The inputs.
    y : array of shape (n_samples, n_outputs)
        The targets as the loss expects them (one-hot rows for cross-entropy).
    alpha : float or 0-d array, default 0.0
        L2 penalty ``0.5 * alpha * sum ||W||^2`` added to the loss (weights only).
    weights : array of shape (n_samples,) or None, default None
        Non-negative row weights in the model's dtype: the loss becomes
        ``sum_i w_i * l_i / sum_i w_i`` (0, with zero gradients, if they sum to
        0); None is the unweighted mean.
    masks : sequence of (array of shape (n_samples, fan_in) or None), or None, default None
        Training's dropout masks, one per layer's input (`mlp.dropout.masks`):
        layer ``i``'s input is multiplied by ``masks[i]``; None (inference): no
        unit dropped.

    Returns
    -------
    loss : 0-d array
        The mean loss (with the penalty).
    grads : list of (dW, db)
        Its gradients, shaped as ``params``.
    totals : array of shape (t,)
        The batch's training totals.
    """
    return _loss_and_gradients(spec, params, x, y, alpha, weights, True, masks)


def _loss_and_gradients(spec: NetworkSpec, params: Params, x: Array, y: Array,
                        alpha: float | Array, weights: Array | None,
                        with_totals: bool, masks: Masks = None
                        ) -> tuple[Array, Grads, Array | None]:
    loss, grads, totals, _ = training_pass(spec, params, x, y, alpha, weights, with_totals,
                                           masks)
    return loss, grads, totals


class _Forward(NamedTuple):
    """A training forward pass's values that the backward pass needs, per layer."""

    inputs: list[Array]  # each layer's input, after dropout
    acts: list[Array]  # the activations, before it
    zs: list[Array]
    norms: list[bn.Normalized | None]  # a batch-normalized layer's statistics
    a: Array | None  # the output layer's activation (None: the loss takes z alone)


def _training_forward(spec: NetworkSpec, params: Params, x: Array, weights: Array | None,
                      masks: Sequence[Array | None]) -> _Forward:
    xp = spec.xp
    n_layers = len(params)
    out = _Forward([], [], [], [], None)
    a = zero_weight_rows(xp, x, weights)
    for i, (W, b) in enumerate(params):
        out.acts.append(a)
        a = dropped(a, masks[i])
        out.inputs.append(a)
        norm = None
        if spec.normalizes and i < n_layers - 1:
            z, norm = bn.layer_forward(xp, a @ W, b, weights, spec.batch_norm[1])
        else:
            z = a @ W + b
        out.zs.append(z)
        out.norms.append(norm)
        if i < n_layers - 1:
            a = spec.hidden.forward(xp, z)
        elif spec.loss.needs_output:
            a = spec.output.forward(xp, z)
        else:  # the loss works from z alone (softmax fused into cross-entropy)
            a = None
    return out._replace(a=a)


def training_pass(spec: NetworkSpec, params: Params, x: Array, y: Array,
                  alpha: float | Array = 0.0, weights: Array | None = None,
                  with_totals: bool = False, masks: Masks = None
                  ) -> tuple[Array, Grads, Array | None, list[bn.Normalized | None]]:
    """Compute a training step's forward and backward pass, with the batch statistics.

    `loss_gradients_and_totals`, and the statistics of the batch-normalized layers.

    Parameters
    ----------
    spec : NetworkSpec
        The network's math (`mlp.MLP.spec`).
    params : list of (W, b)
        The weights.
    x : array of shape (n_samples, n_features)
        The inputs.
    y : array of shape (n_samples, n_outputs)
        The targets as the loss expects them.
    alpha : float or 0-d array, default 0.0
        L2 penalty ``0.5 * alpha * sum ||W||^2``.
    weights : array of shape (n_samples,) or None, default None
        Non-negative row weights (None: the unweighted mean).
    with_totals : bool, default False
        Compute the batch's training totals.
    masks : sequence of (array or None), or None, default None
        Dropout masks (`mlp.dropout.masks`).

    Returns
    -------
    loss : 0-d array
        The mean loss (with the penalty).
    grads : list of (dW, db)
        Its gradients, shaped as ``params``.
    totals : array of shape (t,) or None
        The training totals (None without ``with_totals``).
    norms : list of (Normalized or None)
        Per layer, its batch statistics (`mlp.batch_norm.Normalized`; None on a
        layer that is not batch-normalized).
    """
    xp = spec.xp
    # (a hidden activation has a backward rule: `mlp.activations.get_activation` checks it)
    backward = cast("Callable[..., Array]", spec.hidden.backward)
    n_layers = len(params)
    masks = [None] * n_layers if masks is None else masks
    fw = _training_forward(spec, params, x, weights, masks)
    loss, delta = spec.loss.value_and_delta(xp, fw.zs[-1], fw.a, y, spec.output, weights)
    totals = spec.loss.train_totals(xp, fw.zs[-1], fw.a, y, weights) if with_totals else None

    grads: list[Any] = [None] * n_layers
    for i in range(n_layers - 1, -1, -1):
        W, norm = params[i][0], fw.norms[i]
        if norm is None:
            db = xp.sum(delta, axis=0)
        else:
            delta, dgamma, dbeta = bn.backward(xp, delta, params[i][1][1, ...], norm)
            db = bn.bias_gradient(xp, dgamma, dbeta)
        dW = fw.inputs[i].T @ delta
        if has_l2(alpha):
            dW = dW + alpha * W
        grads[i] = (dW, db)
        if i > 0:
            delta = backward(xp, dropped(delta @ W.T, masks[i]), fw.zs[i - 1], fw.acts[i])
    if has_l2(alpha):
        loss = loss + l2_penalty(xp, params, alpha)
    return loss, grads, totals, fw.norms
