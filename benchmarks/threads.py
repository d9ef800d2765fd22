"""The thread counts a benchmark ran with, recorded beside its timings.

On a shared or busy machine the thread count decides the result more than the
code does: two BLAS/OpenMP threads fighting for two busy cores can make a
small-batch fit many times slower than one thread. Every benchmark records
what it ran with (`thread_counts`) and prints it with its tables (`describe`).
"""

from __future__ import annotations

import sys


def thread_counts() -> dict[str, int | None]:
    """The threads each library would use now.

    Returns
    -------
    dict
        ``blas``: NumPy's BLAS; ``openmp``: the OpenMP runtime's (threadpoolctl);
        ``torch``: PyTorch's intra-op pool, if PyTorch is imported; None where a
        library is absent or threadpoolctl is not installed.
    """
    counts: dict[str, int | None] = {"blas": None, "openmp": None, "torch": None}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = list
    for pool in threadpool_info():
        if pool["user_api"] == "blas" and "numpy" in pool["filepath"]:
            counts["blas"] = counts["blas"] or pool["num_threads"]
        elif pool["user_api"] == "openmp":
            counts["openmp"] = counts["openmp"] or pool["num_threads"]
    torch = sys.modules.get("torch")
    if torch is not None:
        counts["torch"] = torch.get_num_threads()
    return counts


def describe(counts: dict[str, int | None]) -> str:
    """``"threads: BLAS 2, OpenMP 2, torch 2"`` (the libraries present)."""
    names = {"blas": "BLAS", "openmp": "OpenMP", "torch": "torch"}
    parts = [f"{names[k]} {v}" for k, v in counts.items() if v is not None]
    return "threads: " + (", ".join(parts) if parts else "unknown")
