"""
scikit-learn parity: the same fits as ``sklearn.neural_network``
================================================================

``mlp.sklearn.MLPClassifier`` takes scikit-learn's parameters, draws the same
initial weights and batches from the same ``random_state`` and follows the same
stopping rule, so in float64 it trains to the weights scikit-learn's own
``MLPClassifier`` reaches, up to rounding, on any backend. Here on three of
scikit-learn's bundled data sets (no download), side by side::

    python examples/sklearn_parity.py            # backend from $MLP_BACKEND (default numpy)
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.preprocessing import StandardScaler

from mlp.sklearn import MLPClassifier

DATASETS = {"digits": load_digits, "wine": load_wine, "breast_cancer": load_breast_cancer}
PARAMS = {"hidden_layer_sizes": (64,), "max_iter": 60, "random_state": 0}


def compare(name, backend=None):
    """Both estimators on one data set: test accuracies, the largest weight gap, loss curves."""
    x, y = DATASETS[name](return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is kept short
        theirs = SklearnMLPClassifier(**PARAMS).fit(x_train, y_train)
        ours = MLPClassifier(**PARAMS, backend=backend).fit(x_train, y_train)
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(theirs.coefs_, ours.coefs_))
    return {"dataset": name, "scikit-learn": theirs.score(x_test, y_test),
            "mlp": ours.score(x_test, y_test), "weight_gap": gap,
            "curves": (theirs.loss_curve_, ours.loss_curve_)}


# %%
# Test accuracy and the largest difference of any weight
# ------------------------------------------------------

if __name__ == "__main__":
    backend = os.environ.get("MLP_BACKEND") or None
    results = [compare(name, backend) for name in DATASETS]
    print(f"backend: {backend or 'numpy'}")
    print("| dataset | scikit-learn | mlp | largest weight difference |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['dataset']} | {r['scikit-learn']:.4f} | {r['mlp']:.4f} | "
              f"{r['weight_gap']:.1e} |")

# %%
# The training loss, epoch by epoch
# ---------------------------------
# The two curves lie on each other.

if __name__ == "__main__":
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(10, 3), layout="constrained")
    for axis, r in zip(axes, results):
        axis.plot(r["curves"][0], label="scikit-learn", linewidth=3, alpha=0.5)
        axis.plot(r["curves"][1], label="mlp.sklearn", linestyle="--")
        axis.set_title(r["dataset"])
        axis.set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    axes[0].legend()
