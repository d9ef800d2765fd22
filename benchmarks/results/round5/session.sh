#!/bin/bash
# before/after in one session, interleaved. Trees: before=<copy of d1d67eb with this benchmarks/> (d1d67eb + this benchmarks/), after=/work/wt-perf
PY=/work/main/.venv/bin/python
R=benchmarks/results/round5
run() { # tree label args...
  local tree=$1 label=$2; shift 2
  local dir; [ "$tree" = before ] && dir=<copy of d1d67eb with this benchmarks/> || dir=/work/wt-perf
  echo "=== $(date -u +%H:%M:%S) $tree $label: $* (load $(cut -d' ' -f1 /proc/loadavg))"
  (cd $dir && env -u OPENBLAS_CORETYPE PYTHONPATH=. $PY "$@" > $R/$tree-$label.log 2>&1)
  echo "    rc=$? $(date -u +%H:%M:%S)"
}
# 1. W2 focused: numpy vs numpy-lean, numpy-f32, 7 repeats, both thread modes, alternating trees
for mode in 1 default; do
  for r in 0 1; do
    if [ $r = 0 ]; then order="before after"; else order="after before"; fi
    for t in $order; do run $t w2-$mode-$r -m benchmarks.run --workloads W2 --backends numpy --peers numpy-lean,numpy-f32 --repeats 7 --threads $mode --out $R/$t-w2-$mode-$r; done
  done
done
# 2. quick suite, every backend and peer, both modes
for mode in 1 default; do
  for r in 0 1; do
    if [ $r = 0 ]; then order="before after"; else order="after before"; fi
    for t in $order; do run $t quick-$mode-$r -m benchmarks.run --quick --no-memory --threads $mode --out $R/$t-quick-$mode-$r; done
  done
done
# 3. scikit-learn estimators against scikit-learn
for mode in 1 default; do
  if [ $mode = 1 ]; then th="--threads 1"; order="before after"; else th=""; order="after before"; fi
  for t in $order; do run $t sk-$mode benchmarks/sklearn_speed.py --repeats 3 $th; done
done
# 4. the README's scikit-learn examples on JAX vs NumPy (fresh processes, cache cold and warm)
run after skjax -m benchmarks.sklearn_jax --repeats 3 --out $R/after-skjax.json
run before skjax -m benchmarks.sklearn_jax --repeats 1 --out $R/before-skjax.json
echo "=== done $(date -u +%H:%M:%S)"
