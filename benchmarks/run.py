"""Run the benchmark suite: W1-W3 for every installed backend next to the peers.

    python -m benchmarks.run                        # W1-W3, every backend, ~5-10 min
    python -m benchmarks.run --quick                # smoke run, ~1-2 min
    python -m benchmarks.run --workloads W2 --backends numpy,jax --repeats 9
    python -m benchmarks.run --gpu                  # adds W3-GPU (batch 4096) on CuPy/JAX GPU
    nox -s bench                                    # the same, in a fresh environment

Everything runs in one process: each implementation is set up and warmed up
(JAX compiles), then the repeats alternate the implementations (the order is
rotated every round), and the median time is reported. Peak memory on W3 is
measured per implementation in a fresh subprocess. Results go to
``--out`` (default ``benchmarks/results``): ``results.json``, ``results.png``
and ``latest.md`` (the tables, in Markdown).

Timing is wall-clock and sensitive to other load on the machine: the load
average is recorded before and after, and a warning is printed when it is high.

Threads: by default the suite runs twice, each in a fresh process: with every
library pinned to one thread (``--threads 1``: BLAS, OpenMP, XLA, torch, and
the process to one CPU) and with the libraries' own thread counts, as users run
them (``--threads default``); each run's ratios compare implementations timed
in that run. ``--threads N`` or ``--threads default`` makes one run only. The
two runs' tables go to ``threads-1/`` and ``threads-default/`` under ``--out``,
and ``latest.md`` there puts their ratios side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .threads import describe, thread_counts

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REPEATS = {"W1": 7, "W2": 7, "W3": 3, "W3-GPU": 3}
QUICK_REPEATS = {"W1": 3, "W2": 3, "W3": 1, "W3-GPU": 1}


def _set_threads(n):
    """Pin every library to ``n`` threads and the process to ``n`` CPUs.

    Must run before numpy/jax/torch are imported. The CPU affinity is what
    really holds XLA:CPU, whose thread pools do not all follow the flags.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if n < len(cpus):
            os.sched_setaffinity(0, cpus[:n])
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def _thread_mode(text):
    """``--threads``: a positive int, or ``"default"`` / ``"both"``."""
    if text in ("default", "both"):
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a positive number, 'default' or 'both', not {text!r}")
    return n


def _pinned(args):
    """The thread count every library is pinned to (None: the libraries' own)."""
    return args.threads if isinstance(args.threads, int) else None


def _parse(argv=None):
    p = argparse.ArgumentParser(description="mlp benchmark suite (W1-W3 against the peers)")
    p.add_argument("--workloads", default="W1,W2,W3", help="comma-separated: W1,W2,W3")
    p.add_argument("--backends", default=None,
                   help="our backends to time (default: every installed one); numpy-pure "
                        "and torch-pure are NumPy and PyTorch without their fast path")
    p.add_argument("--peers", default=None, help="peers to time (default: every installed one)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per implementation (default: W1/W2 7, W3 3)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: W3 on 12000 samples, fewer repeats, no memory probes")
    p.add_argument("--gpu", action="store_true",
                   help="also run W3-GPU (batch 4096) on CuPy and JAX on a GPU")
    p.add_argument("--no-memory", action="store_true", help="skip W3's peak-memory probes")
    p.add_argument("--threads", default="both", type=_thread_mode,
                   help="N: pin BLAS/OpenMP/XLA/torch to N threads for every workload; "
                        "'default': the libraries' own thread counts; 'both' (default): "
                        "one run with 1 thread and one with the default, each in a fresh "
                        "process")
    p.add_argument("--out", default=None,
                   help="output folder (default benchmarks/results, with --quick "
                        "benchmarks/results/quick)")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------ machine


def sgemm_peak(seconds=1.5, n=2048):
    """Measured float32 matmul rate (FLOP/s) of NumPy's BLAS: best of repeated n x n products."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def gpu_matmul_peak(n=8192, reps=10):
    """``(FLOP/s, device name)`` of a float32 matmul on the GPU, or None when there is none."""
    try:
        import cupy

        if cupy.cuda.is_available():
            a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
            a @ a
            cupy.cuda.Device().synchronize()
            t = time.perf_counter()
            for _ in range(reps):
                a @ a
            cupy.cuda.Device().synchronize()
            name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
            return 2 * n**3 * reps / (time.perf_counter() - t), name
    except Exception:  # noqa: BLE001 - no usable CuPy: try JAX
        pass
    try:
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus:
            import jax.numpy as jnp

            a = jax.device_put(jnp.ones((n, n), jnp.float32), gpus[0])
            f = jax.jit(lambda a: a @ a)
            f(a).block_until_ready()
            t = time.perf_counter()
            for _ in range(reps):
                out = f(a)
            out.block_until_ready()
            return 2 * n**3 * reps / (time.perf_counter() - t), gpus[0].device_kind
    except Exception:  # noqa: BLE001
        pass
    return None


def machine_info():
    import numpy as np

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                            if line.startswith("model name")), platform.processor())
        flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
        info["avx512"] = "avx512f" in flags
    except OSError:
        info["cpu"] = platform.processor()
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, "
                f"{i['num_threads']} threads)" for i in threadpool_info()
                if i["user_api"] == "blas" and "numpy" in i["filepath"]]
        info["blas"] = blas[0] if blas else None
    except ImportError:
        pass
    for mod in ("jax", "torch", "sklearn", "optax"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
    return info


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ------------------------------------------------------------- implementations


def implementations(args, workload):
    from mlp import backends

    from . import peers

    names = (args.backends.split(",") if args.backends else
             [b for b in backends.available_backends() if b != "cupy" or args.gpu])
    impls = []
    for name in names:
        name = name.strip()
        if name in peers.PURE_BACKENDS:  # without the fast path (issue 14's "before")
            impls.append(peers.Ours(name))
            continue
        try:
            be = backends.get_backend(name)
        except backends.BackendUnavailableError as exc:
            print(f"  skip mlp[{name}]: {exc}")
            continue
        if workload.name == "W3-GPU":
            on_gpu = name == "cupy" or getattr(be.device, "platform", "cpu") == "gpu" or \
                getattr(be.device, "type", "cpu") == "cuda"
            if not on_gpu:
                continue
        impls.append(peers.Ours(be.name))
    wanted = args.peers.split(",") if args.peers else peers.available_peers()
    for name in wanted:
        impl = peers.PEERS[name.strip()]()
        if workload.name == "W3-GPU" and name not in ("jax-scan", "jax-optax", "torch-nn"):
            continue
        impls.append(impl)
    return [i for i in impls if i.supports(workload)]


def get_workload(name, quick):
    from . import workloads

    wl = workloads.get(name)
    if quick and name.startswith("W3"):
        wl = wl.scaled(12000)
    return wl


def time_workload(args, wl, repeats, peak):
    """Set up, warm up, then alternate the timed runs; returns one row per implementation."""
    from . import peers

    impls = implementations(args, wl)
    rows = []
    threads = thread_counts()
    print(f"\n{wl.name}: {wl.description} ({len(impls)} implementations, {repeats} repeats; "
          f"{describe(threads)})")
    for impl in impls:
        t = time.perf_counter()
        impl.setup(wl)
        # Warm-up: compiles JAX programs for these shapes; on W3 only where it compiles.
        if impl.compiles or not wl.name.startswith("W3"):
            impl.train()
        print(f"  set up {impl.name:14s} in {time.perf_counter() - t:6.2f} s")
    times = {impl.name: [] for impl in impls}
    for r in range(repeats):
        k = r % len(impls)
        order = impls[k:] + impls[:k]
        if r % 2:
            order = order[::-1]
        for impl in order:
            t = time.perf_counter()
            impl.train()
            times[impl.name].append(time.perf_counter() - t)
    flops = wl.training_flops()
    for impl in impls:
        w = impl.weights()
        out = impl.output_activation
        train = peers.evaluate(wl, w, wl.x_train, wl.y_train, out)
        test = (peers.evaluate(wl, w, wl.x_test, wl.y_test, out) if wl.x_test is not None
                else {"loss": None, "accuracy": None})
        med = statistics.median(times[impl.name])
        rows.append({
            "workload": wl.name, "impl": impl.name, "kind": impl.kind, "device": impl.device,
            "median_s": med, "times_s": times[impl.name],
            "samples_per_s": wl.n_samples * wl.epochs / med,
            "gflops": flops / med / 1e9,
            "peak_fraction": flops / med / peak if peak else None,
            "train_loss": train["loss"], "test_loss": test["loss"],
            "test_accuracy": test["accuracy"], "threads": threads,
        })
        acc = "" if test["accuracy"] is None else f"  test acc {test['accuracy']:.4f}"
        print(f"  {impl.name:14s} median {med * 1000:10.2f} ms  loss {train['loss']:.5f}{acc}")
    return rows


def _peak_rss_mib():
    """This process's peak resident set (MiB): VmHWM, which starts afresh at exec.

    (``ru_maxrss`` would not do: Linux carries it over fork and exec, so a child
    started from the big benchmark process reports the parent's peak.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_probe(spec, quick):
    """Child process: run one implementation once on a workload, print peak RSS (MiB)."""
    from . import peers

    wl_name, impl_name = spec.split(":", 1)
    wl = get_workload(wl_name, quick)
    impl = (peers.Ours(impl_name[4:-1]) if impl_name.startswith("mlp[")
            else peers.PEERS[impl_name]())
    wl.x_train.sum()  # data resident
    impl.setup(wl)
    before = _peak_rss_mib()
    impl.train()
    after = _peak_rss_mib()
    print(json.dumps({"peak_mib": after, "before_mib": before}))


def measure_memory(args, rows, wl_name):
    for row in rows:
        if row["workload"] != wl_name:
            continue
        cmd = [sys.executable, "-m", "benchmarks.run", "--memory-probe",
               f"{wl_name}:{row['impl']}", "--threads", str(args.threads)] + (
                   ["--quick"] if args.quick else [])
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600,
                                 check=True).stdout
            got = json.loads(out.strip().splitlines()[-1])
            row["peak_rss_mib"] = got["peak_mib"]
            row["rss_growth_mib"] = got["peak_mib"] - got["before_mib"]
            print(f"  {row['impl']:14s} peak RSS {got['peak_mib']:8.1f} MiB "
                  f"(+{row['rss_growth_mib']:.1f} MiB while training)")
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            print(f"  {row['impl']}: memory probe failed ({exc})")


# ------------------------------------------------------------------ reporting


def _fmt_time(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _get(rows, wl, impl):
    return next((r for r in rows if r["workload"] == wl and r["impl"] == impl), None)


def tables(rows, info):
    """The Markdown tables: per-workload results and ratios to every peer."""
    out = []
    for wl in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == wl]
        peers_ = [r for r in group if r["kind"] == "peer"]
        mem = any("peak_rss_mib" in r for r in group)
        head = ["implementation", "median", "samples/s", "GFLOP/s", "of peak", "train loss",
                "test acc"] + (["peak RSS"] if mem else [])
        threads = group[0].get("threads")
        out.append(f"**{wl}**" + (f" ({describe(threads)})" if threads else "") + "\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for r in group:
            cells = [("**" + r["impl"] + "**") if r["kind"] == "ours" else r["impl"],
                     _fmt_time(r["median_s"]), f"{r['samples_per_s']:,.0f}",
                     f"{r['gflops']:.2f}",
                     "-" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}%",
                     f"{r['train_loss']:.5f}",
                     "-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"]
            if mem:
                cells.append(f"{r['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in r else "-")
            out.append("| " + " | ".join(cells) + " |")
        ours = [r for r in group if r["kind"] == "ours"]
        if ours and peers_:
            out.append("")
            out.append("time ratio ours / peer (below 1: ours faster)\n")
            out.append("| ours | " + " | ".join(p["impl"] for p in peers_) + " |")
            out.append("|" + "---|" * (len(peers_) + 1))
            for r in ours:
                out.append(f"| {r['impl']} | " + " | ".join(
                    f"{r['median_s'] / p['median_s']:.2f}" for p in peers_) + " |")
        out.append("")
    return "\n".join(out)


def targets(rows):
    """Each target of issue 4 with its measured value: ``(target, measured, met)``."""
    res = []

    def t(wl, impl):
        r = _get(rows, wl, impl)
        return None if r is None else r["median_s"]

    def ratio(wl, a, b):
        ta, tb = t(wl, a), t(wl, b)
        return None if ta is None or tb is None else ta / tb

    def add(name, value, limit, fmt="{:.2f}x", better="<="):
        if value is None:
            return
        met = value <= limit if better == "<=" else value >= limit
        res.append({"target": name, "measured": fmt.format(value), "met": met,
                    "value": value, "limit": limit})

    add("W1 mlp[numpy] time / notebook-f64 <= 1", ratio("W1", "mlp[numpy]", "notebook-f64"), 1)
    add("W1 mlp[jax] time / jax-scan <= 2", ratio("W1", "mlp[jax]", "jax-scan"), 2)
    add("W2 mlp[numpy] time / numpy-f32 <= 1.2", ratio("W2", "mlp[numpy]", "numpy-f32"), 1.2)
    add("W2 mlp[numpy] time / sklearn <= 0.4", ratio("W2", "mlp[numpy]", "sklearn"), 0.4)
    for wl in ("W2", "W3"):  # issue 14: the lean hand-written NumPy peer
        add(f"{wl} mlp[numpy] time / numpy-lean <= 1.05", ratio(wl, "mlp[numpy]", "numpy-lean"),
            1.05)
    add("W2 mlp[jax] time / jax-scan <= 1.2", ratio("W2", "mlp[jax]", "jax-scan"), 1.2)
    add("W2 mlp[torch] time / torch-nn < 1", ratio("W2", "mlp[torch]", "torch-nn"), 0.9999)
    for r in rows:
        if r["workload"] == "W2" and r["test_accuracy"] is not None:
            add(f"W2 {r['impl']} test accuracy >= 0.97", r["test_accuracy"], 0.97, "{:.4f}",
                ">=")
    best = min((r["median_s"] for r in rows if r["workload"] == "W3" and r["impl"] in
                ("numpy-f32", "jax-scan", "jax-optax")), default=None)
    for impl in ("mlp[numpy]", "mlp[jax]"):
        if best is not None and t("W3", impl) is not None:
            add(f"W3 {impl} speed >= 0.9x best hand-written peer", best / t("W3", impl), 0.9,
                better=">=")
            add(f"W3 {impl} >= 70% of sgemm floor", _get(rows, "W3", impl)["peak_fraction"],
                0.7, "{:.0%}", ">=")
    ref = _get(rows, "W3", "numpy-f32")
    for impl in ("mlp[numpy]", "mlp[jax]"):
        r = _get(rows, "W3", impl)
        if r and ref and "peak_rss_mib" in r and "peak_rss_mib" in ref:
            add(f"W3 {impl} peak RSS / numpy-f32 <= 1.3", r["peak_rss_mib"] / ref["peak_rss_mib"],
                1.3)
    for r in rows:
        if r["workload"] == "W3-GPU" and r["kind"] == "ours" and r.get("gpu_fraction"):
            add(f"W3-GPU {r['impl']} >= 50% of GPU matmul rate", r["gpu_fraction"], 0.5,
                "{:.0%}", ">=")
    return res


def targets_table(res):
    lines = ["| target | measured | met |", "|---|---|---|"]
    for r in res:
        lines.append(f"| {r['target']} | {r['measured']} | {'yes' if r['met'] else '**no**'} |")
    return "\n".join(lines)


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wls = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(1, len(wls), figsize=(5 * len(wls), 4.2), squeeze=False)
    for ax, wl in zip(axes[0], wls):
        group = [r for r in rows if r["workload"] == wl]
        names = [r["impl"] for r in group]
        vals = [r["median_s"] * 1000 for r in group]
        colors = ["tab:blue" if r["kind"] == "ours" else "tab:gray" for r in group]
        ax.barh(names, vals, color=colors)
        log = max(vals) > 10 * min(vals)
        if log:
            ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(wl)
        ax.set_xlabel("median time (ms" + (", log scale)" if log else ")"))
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.0f}" if v >= 10 else f" {v:.1f}", va="center", fontsize=8)
    fig.suptitle("mlp (blue) vs peers (gray): training time, lower is better")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- main


THREAD_MODES = ("1", "default")


def _child_argv(argv):
    """``argv`` without its ``--threads`` and ``--out`` options."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--threads", "--out"):
            skip = True
        elif not a.startswith(("--threads=", "--out=")):
            out.append(a)
    return out


def run_both(args, argv):
    """One fresh process per thread mode (`THREAD_MODES`), then their ratios side by side
    in ``latest.md``."""
    out = _out_folder(args)
    runs = {}
    for mode in THREAD_MODES:
        folder = out / f"threads-{mode}"
        cmd = [sys.executable, "-m", "benchmarks.run", *_child_argv(argv), "--threads", mode,
               "--out", str(folder)]
        print(f"\n===== threads: {mode} ({' '.join(cmd[1:])})", flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
        runs[mode] = json.loads((folder / "results.json").read_text())
    text = both_tables(runs)
    (out / "latest.md").write_text(text)
    print("\n" + text + f"\nwrote {out / 'latest.md'}")
    return 0


def both_tables(runs):
    """Markdown: each (workload, ours, peer) time ratio in every thread mode's run."""
    modes = list(runs)
    lines = ["Time ratio ours / peer, each measured in the same run (below 1: ours faster); "
             "one run per thread mode.", ""]
    for mode, got in runs.items():
        m = got["machine"]
        lines.append(f"- threads {mode}: {m.get('cpu')} ({m['cpus']} CPUs), BLAS "
                     f"{m.get('blas')}, load average {m['load_average_start']:.1f} -> "
                     f"{m['load_average_end']:.1f}, {m['seconds']:.0f} s")
    lines += ["", "| workload | ours | peer | " + " | ".join(f"threads {m}" for m in modes)
              + " |", "|" + "---|" * (3 + len(modes))]
    first = runs[modes[0]]["results"]
    for r in first:
        if r["kind"] != "ours":
            continue
        for p in first:
            if p["workload"] != r["workload"] or p["kind"] != "peer":
                continue
            cells = []
            for mode in modes:
                rows = runs[mode]["results"]
                a, b = _get(rows, r["workload"], r["impl"]), _get(rows, p["workload"], p["impl"])
                cells.append("-" if a is None or b is None else
                             f"{a['median_s'] / b['median_s']:.2f}")
            lines.append(f"| {r['workload']} | {r['impl']} | {p['impl']} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _out_folder(args):
    return Path(args.out or ROOT / "benchmarks" / "results" / ("quick" if args.quick else ""))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(argv)
    if args.threads == "both" and not args.memory_probe:
        return run_both(args, argv)
    pinned = _pinned(args)
    if pinned:
        _set_threads(pinned)
    sys.path.insert(0, str(ROOT))
    if args.memory_probe:
        memory_probe(args.memory_probe, args.quick)
        return 0
    if pinned:
        try:
            import torch

            torch.set_num_threads(pinned)
        except ImportError:
            pass
    start = time.time()
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if args.gpu and "W3-GPU" not in names:
        names.append("W3-GPU")
    info = machine_info()
    info["load_average_start"] = load_average()
    if info["load_average_start"] and info["load_average_start"] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {info['load_average_start']:.1f} on "
              f"{os.cpu_count()} CPUs: other work is running; timings will be noisy")
    peak = sgemm_peak()
    info["sgemm_peak_gflops"] = peak / 1e9
    print(f"machine: {info.get('cpu')}, {info['cpus']} CPUs; BLAS {info.get('blas')}")
    print(f"measured float32 sgemm peak: {peak / 1e9:.1f} GFLOP/s")
    rows = []
    for name in names:
        if name == "W3-GPU":
            gpu = gpu_matmul_peak()
            if gpu is None:
                print("\nW3-GPU: skipped - no GPU here (CuPy cannot see a CUDA device and JAX "
                      "has no 'gpu' device); run with --gpu on a machine with an NVIDIA GPU")
                continue
            info["gpu"], info["gpu_matmul_tflops"] = gpu[1], gpu[0] / 1e12
            print(f"\nGPU {gpu[1]}: measured float32 matmul {gpu[0] / 1e12:.1f} TFLOP/s")
        wl = get_workload(name, args.quick)
        repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)[name]
        got = time_workload(args, wl, repeats, peak)
        if name == "W3-GPU":
            for r in got:
                r["gpu_fraction"] = wl.training_flops() / r["median_s"] / gpu[0]
                r["peak_fraction"] = r["gpu_fraction"]
        rows += got
        if name == "W3" and not (args.quick or args.no_memory):
            print("  peak memory, one fresh process each:")
            measure_memory(args, rows, name)
    info["load_average_end"] = load_average()
    info["seconds"] = round(time.time() - start, 1)
    res = targets(rows)
    md = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
          f"{info.get('cpu')} ({info['cpus']} CPUs, AVX-512: {info.get('avx512')}), "
          f"BLAS {info.get('blas')}, measured float32 sgemm peak "
          f"{info['sgemm_peak_gflops']:.1f} GFLOP/s; load average "
          f"{info['load_average_start']:.1f} -> {info['load_average_end']:.1f}"
          + (f"; threads pinned to {pinned}" if pinned else
             "; every library with its default thread count")
          + (" (--quick)" if args.quick else "") + ".", "", tables(rows, info),
          "**Targets (issues 4 and 14)**", "", targets_table(res), ""]
    text = "\n".join(md)
    print("\n" + text)
    out = _out_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "args": vars(args), "results": rows, "targets": res}, indent=1))
    (out / "latest.md").write_text(text)
    chart(rows, out / "results.png")
    print(f"wrote {out / 'results.json'}, {out / 'latest.md'}, {out / 'results.png'} "
          f"({info['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
