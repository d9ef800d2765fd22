"""Training time of `mlp.sklearn`'s estimators next to scikit-learn's own MLP (issue 10).

Two workloads, the same parameters on both sides, float64 (scikit-learn's dtype
for float64 input), every epoch run (``n_iter_no_change=inf``):

- digits: 1797 x 64 -> 100 -> 10, Adam, batch 200, 50 epochs;
- wide: 2000 x 2000 (synthetic, 5 classes) -> 256 -> 5, Adam, batch 200, 10 epochs.

Each estimator is fitted once to warm up (JAX compiles), then the timed fits
alternate between the implementations; the table gives the median wall time
and scikit-learn's time divided by ours (above 1: ours is faster).

    PYTHONPATH=. python benchmarks/sklearn_speed.py [--backends numpy,jax] [--repeats 5]
    PYTHONPATH=. python benchmarks/sklearn_speed.py --threads 1     # NumPy's BLAS on one thread
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn import neural_network
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning

from benchmarks.threads import describe, thread_counts
from mlp.sklearn import MLPClassifier


def workloads():
    X, y = load_digits(return_X_y=True)
    yield "digits", X / 16.0, y, dict(hidden_layer_sizes=(100,), max_iter=50)
    X, y = make_classification(n_samples=2000, n_features=2000, n_informative=50,
                               n_classes=5, random_state=0)
    yield "wide", X, y, dict(hidden_layer_sizes=(256,), max_iter=10)


def timed_fit(make, X, y) -> float:
    est = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(X, y)
        return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="numpy,jax")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads for NumPy (threadpoolctl); default: the library's")
    args = parser.parse_args(argv)
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    names = [b for b in args.backends.split(",") if b]
    print(describe(thread_counts()))
    print("| workload | scikit-learn | " + " | ".join(f"mlp {b}" for b in names)
          + " | " + " | ".join(f"speed-up {b}" for b in names) + " |")
    print("|" + "---|" * (2 + 2 * len(names)))
    for name, X, y, params in workloads():
        common = dict(params, random_state=0, n_iter_no_change=np.inf, solver="adam")
        makers = {"sklearn": lambda c=common: neural_network.MLPClassifier(**c)}
        for b in names:
            makers[b] = lambda b=b, c=common: MLPClassifier(**c, backend=b)
        times = {k: [] for k in makers}
        for make in makers.values():
            timed_fit(make, X, y)  # warm-up
        for r in range(args.repeats):
            keys = list(makers)[r % len(makers):] + list(makers)[:r % len(makers)]
            for k in keys:
                times[k].append(timed_fit(makers[k], X, y))
        med = {k: statistics.median(v) for k, v in times.items()}
        row = [name, f"{med['sklearn']:.3f} s", *(f"{med[b]:.3f} s" for b in names),
               *(f"{med['sklearn'] / med[b]:.2f}x" for b in names)]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
