"""Training from a float32 memmap of >= 2 GB: memory and throughput (not a test).

    python -m benchmarks.memmap [--folder /tmp/mlp-memmap] [--gigabytes 2.2]

Creates (once, then reuses) ``x.f32`` - rows of 784 float32 features, at least
``--gigabytes`` GB - and ``y.i8`` (their labels) in ``--folder``, reads the file
once so that it sits in the page cache, then for each BLAS thread count (1 and the
default):

- *memmap*: `mlp.MLP.fit` over the memmap itself (one epoch over its first
  ``--rows`` rows, all by default: a slice of a memmap is a memmap, read by
  batch), with a thread sampling the process's anonymous resident memory
  (``RssAnon`` of ``/proc/self/status``: the file's mapped pages are page cache,
  counted in ``RssFile``, not there) every few milliseconds;
- *throughput*: the file's first ``--memory-rows`` rows, read from the memmap and
  copied into memory (the whole set need not fit twice), the same fit over each,
  alternated ``--repeats`` times (the best of each: on a busy machine short
  alternating runs compare like with like).

It reports the peak growth of anonymous memory during the whole-file fit over the
memory held before it, what the model itself needs (weights, gradients, Adam's two
moments, the in-place executor's flat store and its copy, the batch buffers), and
rows per second, and writes ``benchmarks/results/memmap.md``.
Targets: growth < 512 MB, memmap throughput >= 0.8x in memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

FEATURES = 784
CLASSES = 10
RESULTS = Path(__file__).resolve().parent / "results" / "memmap.md"


def rss_anon() -> int:
    """The process's anonymous resident memory in bytes (``RssAnon``)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakSampler:
    """Samples `rss_anon` in a thread every ``interval`` seconds; ``peak`` the largest."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak = interval, rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())


def make_files(folder: Path, gigabytes: float, seed: int = 0) -> tuple[Path, Path, int]:
    """``(x path, y path, rows)``: the files, created in blocks if absent (or too small)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = int(np.ceil(gigabytes * 1e9 / (FEATURES * 4)))
    x_path, y_path = folder / "x.f32", folder / "y.i8"
    if x_path.exists() and y_path.exists() and x_path.stat().st_size == rows * FEATURES * 4:
        return x_path, y_path, rows
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLASSES, FEATURES)).astype(np.float32)
    x = np.memmap(x_path, dtype=np.float32, mode="w+", shape=(rows, FEATURES))
    y = np.memmap(y_path, dtype=np.int8, mode="w+", shape=(rows,))
    block = 2**15
    for lo in range(0, rows, block):
        hi = min(lo + block, rows)
        labels = rng.integers(0, CLASSES, hi - lo)
        x[lo:hi] = centers[labels] + rng.standard_normal((hi - lo, FEATURES), dtype=np.float32)
        y[lo:hi] = labels
    x.flush()
    y.flush()
    del x, y
    return x_path, y_path, rows


def warm_page_cache(path: Path) -> float:
    """Read the file once (so it sits in the page cache); seconds it took."""
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(bytearray(2**24)):
            pass
    return time.perf_counter() - start


def model_needs(layer_sizes: list[int], batch_size: int, itemsize: int = 4) -> int:
    """Bytes the model needs to train: weights, gradients, Adam's two moments, the
    in-place executor's store and its saved copy (weights and moments each), and the
    batch's activations and deltas (a few arrays of batch x width)."""
    params = sum(a * b + b for a, b in zip(layer_sizes, layer_sizes[1:]))
    widths = sum(layer_sizes)
    return itemsize * (params * (1 + 1 + 2 + 2 * 3) + 8 * batch_size * widths)


def timed_fit(model, x, y, batch_size: int, epochs: int = 1) -> tuple[float, float, int]:
    """``(seconds of the fit, seconds of its last epoch, peak RssAnon growth)`` of
    ``model.fit`` over ``(x, y)`` for ``epochs`` epochs."""
    import gc

    gc.collect()
    before = rss_anon()
    ends: list[float] = []
    with PeakSampler() as sampler:
        start = time.perf_counter()
        model.fit(x, y, epochs=epochs, batch_size=batch_size, optimizer="adam",
                  callbacks=[lambda epoch, logs: ends.append(time.perf_counter())])
        seconds = time.perf_counter() - start
    last = ends[-1] - (ends[-2] if len(ends) > 1 else start)
    return seconds, last, sampler.peak - before


def run_once(x_mm, y_mm, rows: int, memory_rows: int, batch_size: int, backend: str,
             hidden: int, repeats: int) -> dict[str, float]:
    """At the current thread count: one epoch over the memmap's first ``rows`` rows (its
    memory growth and rows/s), then ``repeats`` rounds alternating the same fit over the
    memmap's first ``memory_rows`` rows and over those rows copied into memory (the best
    rows/s of each: on a busy machine alternating short runs compares like with like)."""
    import mlp

    sizes = [FEATURES, hidden, CLASSES]

    def model():
        return mlp.MLP(sizes, loss="cross_entropy", seed=0, backend=backend)

    warm = model()  # compile / allocate once outside the timings
    warm.fit(np.asarray(x_mm[:batch_size * 4]), np.asarray(y_mm[:batch_size * 4]), epochs=1,
             batch_size=batch_size)
    full_s, _, growth = timed_fit(model(), x_mm[:rows], y_mm[:rows], batch_size)
    x_mem, y_mem = np.array(x_mm[:memory_rows]), np.array(y_mm[:memory_rows])
    best = {"disk": (np.inf, np.inf), "memory": (np.inf, np.inf)}
    for _ in range(repeats):
        for name, (x, y) in (("disk", (x_mm[:memory_rows], y_mm[:memory_rows])),
                             ("memory", (x_mem, y_mem))):
            seconds, epoch, _ = timed_fit(model(), x, y, batch_size, epochs=2)
            best[name] = (min(best[name][0], seconds), min(best[name][1], epoch))
    del x_mem, y_mem
    return {"rows": rows, "full_rows_per_s": rows / full_s, "disk_growth": growth,
            "memory_rows": memory_rows, "needs": model_needs(sizes, batch_size),
            "disk_rows_per_s": 2 * memory_rows / best["disk"][0],
            "memory_rows_per_s": 2 * memory_rows / best["memory"][0],
            "disk_epoch_rows_per_s": memory_rows / best["disk"][1],
            "memory_epoch_rows_per_s": memory_rows / best["memory"][1]}


def machine() -> str:
    """The CPU model, cores and memory, in a line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()}"


def report(results: list[tuple[str, dict[str, float]]], size_gb: float, batch_size: int,
           hidden: int, backend: str, repeats: int) -> str:
    """The results as a markdown page."""
    mb = 2**20
    lines = [
        "# Training from a float32 memmap on disk",
        "",
        f"Machine: {machine()}. Backend: {backend}. Data: {size_gb:.2f} GB float32 memmap "
        f"({FEATURES} features), model [{FEATURES}, {hidden}, {CLASSES}], Adam, batch size "
        f"{batch_size}; the file in the page cache. *Whole file*: one epoch over every row "
        f"of the memmap, with the peak growth of `RssAnon` (anonymous resident memory; the "
        f"file's mapped pages are page cache, not counted) during the fit over what the "
        f"process held before it, sampled every 2 ms. *Throughput*: two epochs over the "
        f"file's first rows read from the memmap, against the same rows copied into memory "
        f"(same model, batch size and seed), alternated {repeats} times, the best "
        f"of each: rows/s of the whole `fit` (in memory it checks and converts the whole "
        f"array first; from the memmap each window is checked as it is read) and of its "
        f"second epoch alone (the steady state).",
        "",
        "| BLAS threads | whole file: rows/s | RssAnon growth | model needs "
        "| rows compared | fit rows/s: memmap / in memory (ratio) "
        "| 2nd epoch rows/s: memmap / in memory (ratio) | targets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for threads, r in results:
        ratio = r["disk_rows_per_s"] / r["memory_rows_per_s"]
        steady = r["disk_epoch_rows_per_s"] / r["memory_epoch_rows_per_s"]
        ok = r["disk_growth"] < 512 * mb and min(ratio, steady) >= 0.8
        lines.append(
            f"| {threads} | {r['full_rows_per_s']:.0f} ({int(r['rows'])} rows) | "
            f"{r['disk_growth'] / mb:.1f} MB | {r['needs'] / mb:.1f} MB | "
            f"{int(r['memory_rows'])} | {r['disk_rows_per_s']:.0f} / "
            f"{r['memory_rows_per_s']:.0f} ({ratio:.2f}) | {r['disk_epoch_rows_per_s']:.0f} / "
            f"{r['memory_epoch_rows_per_s']:.0f} ({steady:.2f}) | "
            f"{'met' if ok else 'missed'} |")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines += ["", f"Load average when the table was written (1, 5, 15 min): {load} - on a "
              f"machine busy with other work the default thread count competes for the cores "
              f"with the reading thread and with the other processes, so its rows are noisy.",
              "", "Targets: RssAnon growth < 512 MB over the model's needs; memmap throughput "
              ">= 0.8x in memory. Run: `python -m benchmarks.memmap`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark; the markdown report (also written to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/mlp-memmap"))
    parser.add_argument("--gigabytes", type=float, default=2.2)
    parser.add_argument("--rows", type=int, default=0, help="rows trained on (0: all)")
    parser.add_argument("--memory-rows", type=int, default=2**17)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--threads", default="1,default",
                        help="BLAS thread counts, comma-separated ('default': unchanged)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    x_path, y_path, rows = make_files(args.folder, args.gigabytes)
    warm_page_cache(x_path)
    x_mm = np.memmap(x_path, dtype=np.float32, mode="r", shape=(rows, FEATURES))
    y_mm = np.memmap(y_path, dtype=np.int8, mode="r", shape=(rows,))
    trained = args.rows or rows
    results = []
    for threads in args.threads.split(","):
        limit = None if threads == "default" else int(threads)
        with threadpool_limits(limits=limit):
            from benchmarks.threads import describe, thread_counts

            label = describe(thread_counts()).removeprefix("threads: ")
            results.append((label, run_once(x_mm, y_mm, trained, min(args.memory_rows, rows),
                                            args.batch_size, args.backend, args.hidden,
                                            args.repeats)))
    text = report(results, x_path.stat().st_size / 1e9, args.batch_size, args.hidden,
                  args.backend, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
