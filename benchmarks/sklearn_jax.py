"""The README's scikit-learn examples on JAX next to the same on NumPy, in fresh processes.

Two examples, as a user runs them, each in a fresh Python process. The timed
part is the example's ``fit`` and ``score`` (JAX's compilations or cache loads
included); the import of JAX, which every JAX script pays before its first
array, is timed on its own (``JAX import``) and is not in the ratios:

- ``pipeline``: ``make_pipeline(StandardScaler(), MLPClassifier(max_iter=100,
  random_state=0))`` fit on digits (75/25 split, ``random_state=0``);
- ``grid``: ``GridSearchCV`` of that pipeline over ``alpha`` in ``[1e-4, 1e-2]``
  with ``cv=3`` (six fits and the refit on the best value).

JAX runs twice per round: with its persistent compilation cache **cold** (a new,
empty cache folder) and **warm** (the folder the cold process filled). Each
process also counts JAX's compilations through JAX's monitoring events
(``/jax/core/compile/backend_compile_duration``: requested compilations;
``/jax/compilation_cache/cache_hits``: those loaded from the cache). Rounds
alternate the order of the processes; the table gives medians and the time
ratio JAX / NumPy (target: at most 2).

    PYTHONPATH=. python -m benchmarks.sklearn_jax [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
    import json, sys, time, warnings
    counts = {"compiles": 0, "hits": 0}
    t0 = time.perf_counter()
    if sys.argv[1] == "jax":
        import jax.monitoring as mon

        def on_duration(event, duration, **kwargs):
            if event == "/jax/core/compile/backend_compile_duration":
                counts["compiles"] += 1

        def on_event(event, **kwargs):
            if event == "/jax/compilation_cache/cache_hits":
                counts["hits"] += 1

        mon.register_event_duration_secs_listener(on_duration)
        mon.register_event_listener(on_event)
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    imported = time.perf_counter() - t0  # the backend's library (JAX: about a second)
    from mlp import backends
    from mlp.sklearn import MLPClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    backends.get_backend(sys.argv[1])
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    t0 = time.perf_counter()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, random_state=0,
                                                         backend=sys.argv[1]))
    if sys.argv[2] == "grid":
        est = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    else:
        est = pipe
    est.fit(X_train, y_train)
    score = est.score(X_test, y_test)
    seconds = time.perf_counter() - t0
    print(json.dumps(dict(seconds=seconds, import_seconds=imported, score=score, **counts)))
"""


def run_example(backend: str, example: str, cache: str | None, threads: int | None) -> dict:
    """One fresh process: ``{"seconds", "score", "compiles", "hits"}``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cache is not None:
        env["MLP_JAX_CACHE_DIR"] = cache
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                                + " --xla_cpu_multi_thread_eigen=false").strip()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), backend, example],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    if done.returncode:
        raise RuntimeError(f"{backend} {example} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(examples: list[str], repeats: int, threads: int | None) -> dict:
    """``{example: {"numpy": [...], "jax-cold": [...], "jax-warm": [...]}}`` of results."""
    got: dict[str, dict[str, list[dict]]] = {}
    for example in examples:
        rows: dict[str, list[dict]] = {"numpy": [], "jax-cold": [], "jax-warm": []}
        for r in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                cache = os.path.join(tmp, "jax-cache")
                runs = [("numpy", None), ("jax-cold", cache), ("jax-warm", cache)]
                if r % 2:  # the JAX pair stays in order (warm needs the cold one's cache)
                    runs = runs[1:] + runs[:1]
                for name, folder in runs:
                    res = run_example(name.split("-")[0], example, folder, threads)
                    rows[name].append(res)
                    print(f"  {example:8s} {name:8s} {res['seconds']:6.2f} s  score "
                          f"{res['score']:.4f}  compiles {res['compiles']} (cache hits "
                          f"{res['hits']})", flush=True)
        got[example] = rows
    return got


def table(got: dict) -> str:
    """The Markdown table of medians and ratios."""
    lines = ["| example | NumPy | JAX, cache cold | JAX, cache warm | cold / NumPy | "
             "warm / NumPy | JAX import | JAX compiles (cache hits warm) |", "|" + "---|" * 8]
    for example, rows in got.items():
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in rows.items()}
        imp = statistics.median(r["import_seconds"] for r in rows["jax-warm"])
        cold, warm = rows["jax-cold"][0], rows["jax-warm"][0]
        lines.append(f"| {example} | {med['numpy']:.2f} s | {med['jax-cold']:.2f} s | "
                     f"{med['jax-warm']:.2f} s | {med['jax-cold'] / med['numpy']:.2f} | "
                     f"{med['jax-warm'] / med['numpy']:.2f} | {imp:.2f} s | {cold['compiles']} "
                     f"({warm['hits']} of {warm['compiles']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", default="pipeline,grid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="pin BLAS/OpenMP/XLA to this many threads (default: the "
                             "libraries' own)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    got = measure([e for e in args.examples.split(",") if e], args.repeats, args.threads)
    text = table(got)
    print(f"\nthreads: {args.threads or 'default'}\n{text}")
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "results": got},
                                             indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
