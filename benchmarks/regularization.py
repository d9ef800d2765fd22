"""The per-step cost of dropout and of batch normalization, as ratios to the plain model.

The digits workload: 64 -> 128 -> 64 -> 10 ReLU, cross-entropy, Adam, batch 64, the
1347 training rows of examples/digits.py's split (22 steps an epoch). Each backend
trains the plain model, the model with dropout (0.5 on the hidden layers, 0.2 on
the inputs) and the model with batch normalization (``batch_norm=True``) alternately,
in the same run, a warm-up fit first (JAX compiles there), then the best of
``--repeats`` fits of ``--epochs`` epochs each; the step time is the fit's time over
its steps. On NumPy and PyTorch the plain model trains through the in-place executor
and the regularized ones through the pure one (which the in-place executor leaves
dropout and batch normalization to); the pure plain model is timed too, to tell the
executors' difference from the regularization's own cost. Also timed: drawing one
step's masks with the counter-based hash (`mlp.dropout.masks`) against drawing them
with a seeded NumPy Generator on the host (the alternative design), on NumPy.

    python benchmarks/regularization.py --backends numpy,jax,torch --threads 1
"""

from __future__ import annotations

import argparse
import os
import time


def _limit_threads(n: int) -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                          "intra_op_parallelism_threads=1")


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.25, random_state=0)
    return StandardScaler().fit_transform(x_train).astype("float32"), y_train


def _fit_seconds(backend: str, options: dict, epochs: int, seed: int, data) -> float:
    import mlp

    x, y = data
    model = mlp.MLP([64, 128, 64, 10], loss="cross_entropy", backend=backend, seed=seed,
                    **options)
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=64, optimizer="adam")
    model.backend.synchronize()
    return time.perf_counter() - start


def step_seconds(backend: str, variants: dict[str, tuple[dict, bool]], epochs: int,
                 repeats: int) -> dict[str, float]:
    """``name -> best seconds per step`` of each variant ``(options, pure)`` (``pure``:
    the in-place executor switched off), the variants' fits interleaved (one of each per
    round, so that a busy machine slows them alike), after a warm-up fit of each."""
    from mlp.engine import pipeline

    data = _data()
    steps = epochs * -(-len(data[0]) // 64)
    best = dict.fromkeys(variants, float("inf"))
    original = pipeline.fast_run
    for i in range(repeats + 1):
        for name, (options, pure) in variants.items():
            pipeline.fast_run = (lambda *a, **k: None) if pure else original
            try:
                seconds = _fit_seconds(backend, options, 1 if i == 0 else epochs, i, data)
            finally:
                pipeline.fast_run = original
            if i:
                best[name] = min(best[name], seconds / steps)
    return best


def mask_seconds(repeats: int = 2000) -> tuple[float, float]:
    """One step's masks (64 rows, widths 64, 128, 64): ``(hash, host generator)`` seconds."""
    import numpy as np

    from mlp import dropout

    rates, widths = (0.2, 0.5, 0.5), (64, 128, 64)
    stream = dropout.epoch_streams(0, 0, 1)[0]  # (the epoch's key, hashed on the host)
    rows = np.arange(64, dtype=np.int32)
    start = time.perf_counter()
    for _ in range(repeats):
        dropout.masks(np, rates, widths, stream, rows, np.float32)
    hashed = (time.perf_counter() - start) / repeats
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(repeats):
        for rate, width in zip(rates, widths):
            u = rng.random((64, width), dtype=np.float32)
            np.where(u >= rate, np.float32(1 / (1 - rate)), np.float32(0))
    return hashed, (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="numpy,jax,torch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    _limit_threads(args.threads)
    regularized = {"dropout": {"dropout": 0.5, "input_dropout": 0.2},
                   "batch norm": {"batch_norm": True}}
    print(f"digits 64-128-64-10, Adam, batch 64, {args.threads} thread(s); us per step")
    for backend in args.backends.split(","):
        variants = {"plain": ({}, False),
                    **{name: (options, False) for name, options in regularized.items()}}
        if backend in ("numpy", "torch"):
            variants["plain, pure executor"] = ({}, True)
        t = step_seconds(backend, variants, args.epochs, args.repeats)
        line = "  ".join(f"{name} {t[name] * 1e6:.1f}" for name in t)
        ratios = "  ".join(f"{r} / {name} {t[r] / t[name]:.2f}" for r in regularized
                           for name in t if name not in regularized)
        print(f"{backend:>6}: {line}  ({ratios})", flush=True)
    hashed, host = mask_seconds()
    print(f"one step's masks on numpy: hash {hashed * 1e6:.1f} us, host Generator "
          f"{host * 1e6:.1f} us")


if __name__ == "__main__":
    main()
