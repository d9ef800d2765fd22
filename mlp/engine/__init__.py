"""The training engine: one step -> epoch -> run pipeline and its two executors.

- `layout`: the flat layout of all weights and biases (`Layout`), shared by the
  packed pure run and the in-place executor;
- `pipeline`: the run's definition (`make_run`), what a step minimises and an
  epoch reports (`Objective`: mlp's own, or scikit-learn's), the one Ctrl-C
  protocol (`InterruptedRun`) and the one cache of built runs;
- `pure`: the pure executor (``backend.jit`` / ``backend.scan``; compiled on JAX);
- `inplace`: the in-place executor, for backends that offer in-place operations
  (``backend.inplace_ops()``: NumPy, PyTorch on the CPU), bit-identical to the pure one;
- `kernels`: what an in-place kernel declares (`PureOnly`) and shares.

The in-place kernels themselves sit beside the definitions they mirror
(`mlp.activations`, `mlp.losses`, `mlp.optimizers`). This package imports none of
its modules at import time, so those modules can import `kernels`.
"""
