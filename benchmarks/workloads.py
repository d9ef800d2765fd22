"""The benchmark workloads W1-W3 (and W3-GPU): data, architecture, hyperparameters.

Everything is generated locally from fixed seeds (no downloads):

- ``W1`` the seed notebook: ``x: (100, 3)`` and ``y: (100, 1)`` uniform in [0, 1)
  from ``np.random.seed(0)``, a ``3 -> 4 -> 1`` ReLU network with a ReLU output,
  standard-normal weights (seed 6: one whose output unit is not dead from the
  start), ``mean(0.5 * (pred - y)**2)``, full-batch SGD 0.01, 1000 epochs;
- ``W2`` scikit-learn's bundled digits: 75/25 split (``random_state=0``),
  standardized on the training set, ``64 -> 128 -> 64 -> 10`` ReLU + softmax,
  cross-entropy, Adam 1e-3, batch 64, 30 epochs;
- ``W3`` "MNIST-sized" synthetic data: 60000 x 784 float32, 10 Gaussian
  classes (seeded), ``784 -> 512 -> 512 -> 10``, SGD 0.01, batch 256, 1 epoch;
- ``W3-GPU`` the same data, batch 4096, 3 epochs (only with ``--gpu``).

Every implementation starts from the same initial weights
(`Workload.initial_weights`, float64 on the host, cast by each implementation)
and sees the same batches in the same order (`Workload.orders`, the order
`mlp.MLP` draws from its seed), except scikit-learn, which shuffles with its
own generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from mlp.initializers import initial_weights as _initial_weights


@dataclass
class Workload:
    name: str
    description: str
    layer_sizes: tuple[int, ...]
    loss: str  # "mse" or "cross_entropy"
    output_activation: str  # "relu" (W1) or "softmax"
    init: str
    optimizer: str  # "sgd" or "adam"
    learning_rate: float
    batch_size: int | None  # None: full batch
    epochs: int
    x_train: np.ndarray
    y_train: np.ndarray  # (n, 1) float32 for mse, (n,) int64 labels for cross-entropy
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return self.x_train.shape[0]

    @property
    def classification(self) -> bool:
        return self.loss == "cross_entropy"

    @property
    def steps_per_epoch(self) -> int:
        if self.batch_size is None:
            return 1
        return -(-self.n_samples // self.batch_size)

    def initial_weights(self, dtype=np.float32):
        """The shared initial ``[(W, b), ...]`` (``mlp.MLP``'s own from ``seed``)."""
        rng = np.random.default_rng([self.seed, 0])
        return [(W.astype(dtype), b.astype(dtype))
                for W, b in _initial_weights(self.layer_sizes, self.init, rng)]

    def orders(self):
        """One permutation of the training rows per epoch: the very order `mlp.MLP.fit`
        draws from the same seed, so the peers see the same batches as ours."""
        rng = np.random.default_rng([self.seed, 1])
        return [rng.permutation(self.n_samples) for _ in range(self.epochs)]

    def training_flops(self) -> float:
        """Matmul FLOPs a training run must do (forward, dW, delta; no dX for the input)."""
        pairs = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        per_sample = sum(2 * i * o for i, o in pairs)  # forward
        per_sample += sum(2 * i * o for i, o in pairs)  # weight gradients
        per_sample += sum(2 * i * o for i, o in pairs[1:])  # deltas, not for the input
        return float(per_sample) * self.n_samples * self.epochs

    def scaled(self, n_samples=None, epochs=None, name=None):
        """A smaller copy (for --quick and the tests)."""
        n = self.n_samples if n_samples is None else min(n_samples, self.n_samples)
        return Workload(**{**self.__dict__, "x_train": self.x_train[:n], "y_train":
                           self.y_train[:n], "epochs": epochs or self.epochs,
                           "name": name or self.name})


def w1() -> Workload:
    # The notebook's data, seeded: uniform inputs and targets.
    np.random.seed(0)
    x = np.random.rand(100, 3).astype(np.float32)
    y = np.random.rand(100, 1).astype(np.float32)
    return Workload("W1", "seed notebook: 100x3 -> 4 -> 1, full batch, SGD 0.01, 1000 epochs",
                    (3, 4, 1), "mse", "relu", "normal", "sgd", 0.01, None, 1000, x, y, seed=6)


@cache
def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(x_train)
    return (scaler.transform(x_train).astype(np.float32), scaler.transform(x_test)
            .astype(np.float32), y_train.astype(np.int64), y_test.astype(np.int64))


def w2() -> Workload:
    x_train, x_test, y_train, y_test = _digits()
    return Workload("W2", "digits: 64 -> 128 -> 64 -> 10, Adam 1e-3, batch 64, 30 epochs",
                    (64, 128, 64, 10), "cross_entropy", "softmax", "he", "adam", 1e-3, 64, 30,
                    x_train, y_train, x_test, y_test, seed=0)


def synthetic_classes(n, n_features=784, n_classes=10, seed=0, chunk=10000):
    """Seeded Gaussian classes, float32, generated in chunks (no float64 copy of the whole)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_classes, n_features)).astype(np.float32) * 0.35
    x = np.empty((n, n_features), dtype=np.float32)
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        x[start:stop] = rng.standard_normal((stop - start, n_features), dtype=np.float32)
        x[start:stop] += centers[y[start:stop]]
    return x, y


@cache
def _wide(n_train=60000, n_test=10000):
    x, y = synthetic_classes(n_train + n_test, seed=1234)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def w3(batch_size=256, epochs=1, name="W3") -> Workload:
    x_train, y_train, x_test, y_test = _wide()
    return Workload(name, f"wide: 60000x784 -> 512 -> 512 -> 10, SGD 0.01, batch {batch_size}, "
                    f"{epochs} epoch{'s' if epochs > 1 else ''}",
                    (784, 512, 512, 10), "cross_entropy", "softmax", "he", "sgd", 0.01,
                    batch_size, epochs, x_train, y_train, x_test, y_test, seed=0)


def w3_gpu() -> Workload:
    return w3(batch_size=4096, epochs=3, name="W3-GPU")


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3, "W3-GPU": w3_gpu}


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]()
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
