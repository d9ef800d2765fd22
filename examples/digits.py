"""
Handwritten digits: a classifier and its learning curves
========================================================

Classify scikit-learn's bundled handwritten digits (8x8 images, no download).
75/25 split (random_state=0), standardized inputs, a 64 -> 128 -> 64 -> 10
ReLU network trained with Adam (learning rate 1e-3), batch 64, 30 epochs. The test
set is also evaluated after every epoch (it is never trained on), and the learning
curves - loss and accuracy, training and test - are drawn to a PNG::

    python examples/digits.py                  # backend from $MLP_BACKEND (default numpy)
    python examples/digits.py --backend jax
    python examples/digits.py --plot curve.png # where the learning curve goes
"""

from __future__ import annotations

import argparse
import os
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

try:
    import mlp
except ImportError:  # run from a checkout without installing: use the repository's mlp
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import mlp


# %%
# The data and the model
# ----------------------
# The scaler is fit on the training rows only; the test rows are scored after
# every epoch (``validation_data``) but never trained on.


def load_data(random_state=0):
    """Standardized ``(x_train, x_test, y_train, y_test)``.

    The scaler is fit on the training set only.
    """
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=random_state
    )
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test), y_train, y_test


def main(backend=None, *, epochs=30, seed=0, dtype="float32", verbose=0, quiet=False,
         plot=None):
    """Train and evaluate; returns a dict with the test accuracy, loss, seconds taken
    and the training's `History` (``"history"``).

    ``plot``: a path for the learning curve (PNG), or None for none.
    """
    x_train, x_test, y_train, y_test = load_data()
    model = mlp.MLP([64, 128, 64, 10], loss="cross_entropy", backend=backend, dtype=dtype,
                    seed=seed)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=epochs, optimizer="adam",
                        learning_rate=1e-3, batch_size=64, validation_data=(x_test, y_test),
                        verbose=verbose)
    seconds = time.perf_counter() - start
    metrics = model.evaluate(x_test, y_test)
    result = {
        "backend": model.backend.name,
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "train_loss": history.history["loss"][-1],
        "seconds": seconds,
        "history": history,
    }
    if not quiet:
        print(f"backend {result['backend']} ({model.backend.device}), dtype {dtype}")
        print(f"trained {epochs} epochs on {len(x_train)} samples in {seconds:.2f} s "
              f"(final training loss {result['train_loss']:.4f})")
        print(f"test accuracy {result['test_accuracy']:.4f} on {len(x_test)} samples "
              f"(test loss {result['test_loss']:.4f})")
    if plot is not None:
        history.plot(path=plot)
        result["plot"] = plot
        if not quiet:
            print(f"learning curve (loss and accuracy per epoch, training and test): {plot}")
    return result


def _parse(argv=None):
    parser = argparse.ArgumentParser(description="Classify scikit-learn's handwritten digits.")
    parser.add_argument("--backend", default=os.environ.get("MLP_BACKEND") or None,
                        help="numpy, jax, torch, cupy or array_api_strict "
                             "(default: $MLP_BACKEND, else numpy)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0)
    parser.add_argument("--plot", default="digits_learning_curve.png",
                        help="the learning curve's PNG (default: %(default)s); '' for none")
    return parser.parse_args(argv)


# %%
# Train and evaluate
# ------------------
# 30 epochs of Adam on batches of 64; the test accuracy reaches about 0.98.

if __name__ == "__main__":
    args = _parse()
    result = main(args.backend, epochs=args.epochs, seed=args.seed, dtype=args.dtype,
                  verbose=args.verbose, plot=args.plot or None)

# %%
# The learning curves
# -------------------
# ``History.plot`` draws one panel per metric, the training scores (from each
# epoch's own batches) next to the test set's (``val_``). Given axes, it draws
# into them; here pyplot's, so that the figure shows.

if __name__ == "__main__":
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    result["history"].plot(ax=axes)
