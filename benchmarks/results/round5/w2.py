"""W2: mlp[numpy] vs numpy-lean, alternating; argv: threads(0=default) repeats"""
import sys, time, statistics
sys.path.insert(0, ".")
from threadpoolctl import threadpool_limits
import numpy as np
from benchmarks import workloads, peers
th = int(sys.argv[1]); reps = int(sys.argv[2])
wl = workloads.get("W2")
impls = [peers.Ours("numpy"), peers.NumpyLean()]
for i in impls: i.setup(wl); i.train()
import contextlib
ctx = threadpool_limits(th) if th else contextlib.nullcontext()
t = {i.name: [] for i in impls}
with ctx:
    for r in range(reps):
        order = impls if r % 2 == 0 else impls[::-1]
        for i in order:
            t0 = time.perf_counter(); i.train(); t[i.name].append(time.perf_counter() - t0)
m = {k: statistics.median(v) for k, v in t.items()}
print(f"threads={th or 'default'}", {k: round(v*1000,1) for k, v in m.items()}, "ratio", round(m["mlp[numpy]"]/m["numpy-lean"], 3))
