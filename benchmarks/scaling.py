"""Data-parallel scaling: the same fit on 1, 2, 4 and 8 devices (issue 11).

    python -m benchmarks.scaling                      # CPU: 8 forced host devices
    python -m benchmarks.scaling --devices 1,2,4,8 --samples 32768 --epochs 3
    python -m benchmarks.scaling --quick              # smoke run, ~30 s on 2 cores

Trains one model, ``784 -> 512 -> 512 -> 10`` (W3's network) on seeded synthetic
data, on the one-device JAX backend and on `backends.get_backend("jax", devices=n)`
for each ``n``, and reports the median time of an epoch, samples per second and
the speedup over one device. Every configuration is compiled and warmed up
first; the timed repeats alternate the configurations.

On a CPU the devices are forced (``XLA_FLAGS=--xla_force_host_platform_device_count=8``,
set here before JAX is imported): they share the same cores, so the table shows
the overhead of sharding, not a speedup. On a machine with several GPUs the same
command shows the speedup (``--devices`` beyond what JAX sees are skipped).
Results go to ``--out`` (default ``benchmarks/results``): ``scaling.json`` and
``scaling.md``, with the hardware they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from .threads import describe, thread_counts

ROOT = Path(__file__).resolve().parent.parent


def _force_cpu_devices(n):
    """Ask XLA:CPU for ``n`` devices (only before JAX is imported; GPUs are unaffected)."""
    flag = f"--xla_force_host_platform_device_count={n}"
    if "jax" not in sys.modules and "device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()


def _data(n, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    x = centers[y] + rng.normal(scale=2.0, size=(n, 784)).astype(np.float32)
    return x, y


def _configurations(counts):
    import jax

    from mlp import backends

    configs = [("jax, 1 device (no mesh)", backends.get_backend("jax"), 1)]
    for n in counts:
        if n <= len(jax.devices()):
            configs.append((f"jax, devices={n}", backends.get_backend("jax", devices=n), n))
    return configs


def _fit(backend, x, y, args):
    import mlp

    model = mlp.MLP([784, 512, 512, 10], loss="cross_entropy", backend=backend, seed=0)
    start = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, learning_rate=0.01)
    model.params[0][0].block_until_ready()
    return (time.perf_counter() - start) / args.epochs, model.evaluate(x, y)["loss"]


def measure(args):
    """Rows ``{name, devices, epoch_s, samples_per_s, speedup, loss}``: medians of the repeats."""
    x, y = _data(args.samples)
    configs = _configurations(args.devices)
    times = {name: [] for name, _, _ in configs}
    losses = {}
    for _, backend, _ in configs:  # compile and warm up
        _fit(backend, x, y, args)
    for r in range(args.repeats):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for name, backend, _ in order:
            seconds, losses[name] = _fit(backend, x, y, args)
            times[name].append(seconds)
    base = statistics.median(times[configs[1][0]] if len(configs) > 1 else times[configs[0][0]])
    rows = []
    for name, _, n in configs:
        epoch = statistics.median(times[name])
        rows.append(dict(name=name, devices=n, epoch_s=epoch,
                         samples_per_s=args.samples / epoch, speedup=base / epoch,
                         loss=losses[name]))
    return rows


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def hardware():
    import jax

    devices = jax.devices()
    return dict(platform=devices[0].platform, device_kind=devices[0].device_kind,
                jax_devices=len(devices), cpu=_cpu_name(),
                cpu_count=os.cpu_count(), load_average=os.getloadavg(), jax=jax.__version__,
                python=platform.python_version(), threads=thread_counts())


def markdown(rows, hw, args):
    lines = [f"# Data-parallel scaling ({hw['jax_devices']} {hw['platform']} devices: "
             f"{hw['device_kind']})", "",
             f"784-512-512-10, {args.samples} samples, batch {args.batch_size}, SGD, "
             f"{args.epochs} epoch(s) per fit, median of {args.repeats}. Host: "
             f"{hw['cpu']}, {hw['cpu_count']} cores, load {hw['load_average'][0]:.1f}, "
             f"{describe(hw['threads'])}; "
             f"JAX {hw['jax']}.", "",
             "| configuration | devices | s / epoch | samples / s | speedup vs devices=1 |"
             " final loss |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['devices']} | {r['epoch_s']:.3f} | {r['samples_per_s']:,.0f} "
              f"| {r['speedup']:.2f} | {r['loss']:.4f} |" for r in rows]
    if hw["platform"] == "cpu":
        lines += ["", "CPU devices forced with XLA_FLAGS share the same cores: this shows the "
                  "cost of sharding and the all-reduce, not a speedup."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4,8",
                        type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--samples", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="4096 samples, 1 repeat")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.repeats, args.epochs = 4096, 1, 1
    _force_cpu_devices(max(args.devices))
    sys.path.insert(0, str(ROOT))
    rows = measure(args)
    hw = hardware()
    text = markdown(rows, hw, args)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.md").write_text(text)
    (args.out / "scaling.json").write_text(json.dumps(
        dict(rows=rows, hardware=hw, settings=dict(
            samples=args.samples, batch_size=args.batch_size, epochs=args.epochs,
            repeats=args.repeats)), indent=2))


if __name__ == "__main__":
    main()
