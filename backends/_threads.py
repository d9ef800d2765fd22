"""One BLAS thread for small matrix products, while a training run needs it.

A multi-threaded BLAS splits a matrix product between its threads once the
product is large enough for its own threshold (OpenBLAS: 2^18 multiply-adds).
Just above that threshold, as in a step of a small network on a small batch
(digits, 64-128-64-10, batch 64: 2^19), the product is a few microseconds of
work: waking the second thread for each product, and the threads waiting on
each other between products, cost more than the split saves. Measured on a
2-core machine, such a fit took 1.5x as long with two BLAS threads as with
one (and many times as long when other work holds the second core). So the
in-place executor runs a training call whose largest matrix product has at
most `SMALL_PRODUCT` multiply-adds with NumPy's BLAS on one thread.

The thread count does not change a result: a threaded BLAS splits the rows
and columns of the product between the threads, each element still summed in
the same order by the same kernel (``tests/test_threads.py`` checks it on the
installed BLAS). Needs threadpoolctl; without it the thread count stays as it
is. The limit is process-wide (a BLAS's thread count is) and set from the main
thread only: OpenBLAS lets no other thread raise a count the main thread
lowered, so a run in another thread (joblib's threading backend) leaves the
count as it finds it. Nested runs share one limit, lifted after the outermost.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

#: The largest matrix product (multiply-adds, ``batch * fan_in * fan_out``) a training call
#: may have for it to run with one BLAS thread; 0 turns the limit off.
SMALL_PRODUCT = 2**21

_lock = threading.Lock()
_state: dict[str, Any] = {"users": 0, "limiter": None, "controller": None}


def _controller() -> Any:
    """threadpoolctl's controller of the loaded thread pools, made once (None without
    threadpoolctl)."""
    if _state["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _state["controller"] = False
        else:
            _state["controller"] = ThreadpoolController()
    return _state["controller"] or None


def _limit_blas() -> Any:
    """Limit the BLAS libraries to one thread; the limiter that restores them, or None
    where nothing is limited (no threadpoolctl, or already one thread)."""
    controller = _controller()
    if controller is None:
        return None
    blas = controller.select(user_api="blas")
    if all(pool.num_threads <= 1 for pool in blas.lib_controllers):
        return None
    return blas.limit(limits=1)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with every BLAS library on one thread, then restore them.

    Re-entrant: the outermost use sets the limit and restores the thread counts
    found before. From any thread but the main one it changes nothing.

    Yields
    ------
    None
        The block runs with the limit in place.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        if _state["users"] == 0:
            _state["limiter"] = _limit_blas()
        _state["users"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["users"] -= 1
            if _state["users"] == 0 and _state["limiter"] is not None:
                _state["limiter"].restore_original_limits()
                _state["limiter"] = None


def threads_for(largest_product: int) -> contextlib.AbstractContextManager[None]:
    """The thread setting for a run whose largest matrix product has ``largest_product``
    multiply-adds: `one_blas_thread` up to `SMALL_PRODUCT`, else the BLAS's own.

    Parameters
    ----------
    largest_product : int
        ``batch * fan_in * fan_out`` of the run's largest layer.

    Returns
    -------
    contextlib.AbstractContextManager
        `one_blas_thread()`, or a context manager that changes nothing.
    """
    if 0 < largest_product <= SMALL_PRODUCT:
        return one_blas_thread()
    return contextlib.nullcontext()
