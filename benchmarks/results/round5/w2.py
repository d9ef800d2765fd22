"""W2: mlp[numpy] and numpy-lean, set up, warmed up, then alternating timed fits.

    PYTHONPATH=. python benchmarks/results/round5/w2.py THREADS REPEATS

THREADS: 1 (``threadpool_limits(1)`` around the timed fits) or 0 (no limit).
"""

import contextlib
import statistics
import sys
import time

from threadpoolctl import threadpool_limits

from benchmarks import peers, workloads

threads, repeats = int(sys.argv[1]), int(sys.argv[2])
wl = workloads.get("W2")
impls = [peers.Ours("numpy"), peers.NumpyLean()]
for impl in impls:
    impl.setup(wl)
    impl.train()
times = {impl.name: [] for impl in impls}
with threadpool_limits(threads) if threads else contextlib.nullcontext():
    for r in range(repeats):
        for impl in impls if r % 2 == 0 else impls[::-1]:
            t0 = time.perf_counter()
            impl.train()
            times[impl.name].append(time.perf_counter() - t0)
med = {k: statistics.median(v) for k, v in times.items()}
print(f"threads={threads or 'default'}", {k: round(v * 1000, 1) for k, v in med.items()},
      "ratio", round(med["mlp[numpy]"] / med["numpy-lean"], 3))
