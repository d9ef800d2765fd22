"""Parity of `mlp.sklearn` with scikit-learn's own MLP (issue 10).

For each dataset (digits, iris, wine, breast_cancer: test accuracy;
diabetes: test R^2) and seed, one stratified 75/25 split (``random_state=seed``),
standardized, and the same estimator parameters for scikit-learn's
``MLPClassifier``/``MLPRegressor`` and ours on each backend, ``random_state=seed``.
Prints a Markdown table of the means over the seeds and the largest gap.

    PYTHONPATH=. python benchmarks/sklearn_parity.py                       # 5 seeds, CPU backends
    PYTHONPATH=. python benchmarks/sklearn_parity.py --seeds 2 --backends numpy,jax
    PYTHONPATH=. python benchmarks/sklearn_parity.py --dtype float32   # ours in float32

In float64 (the default for float64 input) the same ``random_state`` draws the
same initial weights and batches as scikit-learn, so the scores agree to the
last digit; float32 follows a different rounding path.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn import datasets, neural_network
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlp import backends
from mlp.sklearn import MLPClassifier, MLPRegressor

#: name -> (loader, classification?, estimator parameters shared by both sides)
DATASETS = {
    "digits": (datasets.load_digits, True, dict(hidden_layer_sizes=(100,), max_iter=200)),
    "iris": (datasets.load_iris, True, dict(hidden_layer_sizes=(100,), max_iter=500)),
    "wine": (datasets.load_wine, True, dict(hidden_layer_sizes=(100,), max_iter=500)),
    "breast_cancer": (datasets.load_breast_cancer, True,
                      dict(hidden_layer_sizes=(100,), max_iter=300)),
    "diabetes": (datasets.load_diabetes, False,
                 dict(hidden_layer_sizes=(100,), max_iter=500, early_stopping=True)),
}


def score(dataset: str, seed: int, backend: str | None, dtype: str | None = None) -> float:
    """Test accuracy (R^2 for diabetes) of one fit; ``backend=None`` is scikit-learn's MLP."""
    load, classify, params = DATASETS[dataset]
    X, y = load(return_X_y=True)
    if not classify:
        y = (y - y.mean()) / y.std()
    split = train_test_split(X, y, test_size=0.25, random_state=seed,
                             stratify=y if classify else None)
    X_train, X_test, y_train, y_test = split
    if backend is None:
        cls = neural_network.MLPClassifier if classify else neural_network.MLPRegressor
        est = cls(**params, random_state=seed)
    else:
        cls = MLPClassifier if classify else MLPRegressor
        est = cls(**params, random_state=seed, backend=backend, dtype=dtype)
    model = make_pipeline(StandardScaler(), est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    return float(model.score(X_test, y_test))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    cpu = [b for b in backends.available_backends() if b != "cupy"]
    parser.add_argument("--backends", default=",".join(cpu))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"],
                        help="our estimators' dtype (default: the input's, float64)")
    args = parser.parse_args(argv)
    names = [b for b in args.backends.split(",") if b]
    seeds = range(args.seeds)
    header = ["dataset", "metric", "scikit-learn", *names, "largest gap"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for dataset in args.datasets.split(","):
        t0 = time.perf_counter()
        theirs = np.mean([score(dataset, s, None) for s in seeds])
        ours = {b: np.mean([score(dataset, s, b, args.dtype) for s in seeds]) for b in names}
        gap = max(abs(v - theirs) for v in ours.values())
        percent = DATASETS[dataset][1]
        fmt = (lambda v: f"{100 * v:.2f} %") if percent else (lambda v: f"{v:.4f}")
        gap_text = f"{100 * gap:.2f} pp" if percent else f"{gap:.4f}"
        row = [dataset, "accuracy" if percent else "R^2", fmt(theirs),
               *(fmt(ours[b]) for b in names), gap_text]
        print("| " + " | ".join(row) + " |", flush=True)
        print(f"<!-- {dataset}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
