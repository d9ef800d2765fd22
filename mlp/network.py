"""`Network`: the seed notebook's API, built on the array-API core.

Notebook users switch with one import::

    from mlp import Network          # instead of the notebook's class
    net = Network(input_dim=3, hidden_dim=4, output_dim=1, seed=0)
    net.train(x, y, epochs=1000, learning_rate=0.01)

As in the notebook: ReLU on *both* layers (so the output is never negative),
standard-normal initial weights, zero biases, the loss ``mean(0.5 * (pred - y)**2)``
and full-batch gradient descent, printing ``epoch N, loss: L`` every 100 epochs.

One difference, on purpose: the gradient is that of the loss printed. The
notebook divides the output gradient by ``n`` only, which equals the true
gradient only for one output; here it divides by ``n * output_dim``.

Beware the ReLU output: for some seeds the output unit starts "dead" (negative
pre-activation for every sample), its gradient is zero and the loss never
moves. Pick another seed, or use `mlp.MLP` with an identity output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._typing import Array
from .model import MLP
from .params import Integer, check

if TYPE_CHECKING:
    import numpy.typing as npt

    from .backends import Backend
    from .schedules import Schedule


class Network:
    """The notebook's two-layer ReLU network (``input_dim -> hidden_dim -> output_dim``).

    Parameters
    ----------
    input_dim : int
        The number of input features.
    hidden_dim : int
        The hidden layer's width.
    output_dim : int
        The number of outputs.
    backend : str, Backend or None, default None
        None reads ``$MLP_BACKEND`` (default numpy).
    seed : int or None, default None
        Seeds the initial weights.
    dtype : {"float32", "float64"}, default "float32"
        The floating-point type of the weights.
    """

    print_every = 100

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, *,
                 backend: str | Backend | None = None, seed: int | None = None,
                 dtype: npt.DTypeLike = "float32") -> None:
        sizes = [check(name, value, [Integer(1)]) for name, value in (
            ("input_dim", input_dim), ("hidden_dim", hidden_dim), ("output_dim", output_dim))]
        self.model = MLP(sizes, activation="relu",
                         output_activation="relu", loss="mse", init="normal",
                         backend=backend, dtype=dtype, seed=seed)

    @property
    def backend(self) -> Backend:
        """The backend the network runs on."""
        return self.model.backend

    def forward(self, x: Array) -> Array:
        """Compute the network's output.

        Parameters
        ----------
        x : array-like of shape (n_samples, input_dim)
            The inputs.

        Returns
        -------
        array of shape (n_samples, output_dim)
            The outputs, a backend array.
        """
        return self.model.predict(x)

    def backward(self, x: Array, y: Array, learning_rate: float | Schedule) -> None:
        """Take one full-batch gradient-descent step on ``(x, y)`` (forward pass included).

        Parameters
        ----------
        x : array-like of shape (n_samples, input_dim)
            The inputs.
        y : array-like of shape (n_samples, output_dim)
            The targets.
        learning_rate : float or callable
            The step size, or a schedule (`mlp.schedules`).
        """
        self.model.fit(x, y, epochs=1, learning_rate=learning_rate, optimizer="sgd",
                       batch_size=None)

    def train(self, x: Array, y: Array, epochs: int, learning_rate: float | Schedule
              ) -> list[float]:
        """Train by full-batch gradient descent, printing ``epoch N, loss: L`` every 100 epochs.

        The printed loss is the one before that epoch's update, as in the notebook.

        Parameters
        ----------
        x : array-like of shape (n_samples, input_dim)
            The inputs.
        y : array-like of shape (n_samples, output_dim)
            The targets.
        epochs : int
            The number of epochs (>= 1).
        learning_rate : float or callable
            The step size, or a schedule (`mlp.schedules`).

        Returns
        -------
        list of float
            Every epoch's loss, before its update.

        Raises
        ------
        ValueError
            ``epochs`` is not an integer >= 1.
        """
        epochs = check("epochs", epochs, [Integer(1)])
        losses: list[float] = []
        for start in range(0, epochs, self.print_every):
            n = min(self.print_every, epochs - start)
            history = self.model.fit(x, y, epochs=n, learning_rate=learning_rate,
                                     optimizer="sgd", batch_size=None)
            losses.extend(history.history["loss"])
            print(f"epoch {start}, loss: {history.history['loss'][0]}")
        return losses
