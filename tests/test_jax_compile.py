"""JAX: float64 scoped to mlp's own work, compilations counted, the persistent cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mlp

pytest.importorskip("jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(code, **env):
    """Run ``code`` in a fresh Python; its last stdout line, parsed as JSON. An ``env``
    value of None removes that variable."""
    full_env = {**os.environ, "PYTHONPATH": ROOT, **env}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    full_env.pop("JAX_ENABLE_X64", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_float64_model_inside_precision_leaves_the_global_flag_alone():
    out = run_script("""
        import json, warnings
        warnings.simplefilter("error")          # no truncation warning anywhere
        import numpy as np, jax, jax.numpy as jnp
        import mlp
        from mlp import backends
        be = backends.get_backend("jax")
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(40, 3)), rng.integers(0, 3, size=40)
        with be.precision(be.dtype("float64")):
            m = mlp.MLP([3, 4, 3], loss="cross_entropy", backend="jax", dtype="float64", seed=0)
            m.fit(x, y, epochs=3, batch_size=8, optimizer="adam", validation_split=0.25)
            m.fit(x, np.eye(3)[y], epochs=2)
            p = m.predict(x)
        ref = mlp.MLP([3, 4, 3], loss="cross_entropy", backend="numpy", dtype="float64", seed=0)
        ref.fit(x, y, epochs=3, batch_size=8, optimizer="adam", validation_split=0.25)
        ref.fit(x, np.eye(3)[y], epochs=2)
        err = max(float(np.max(np.abs(a - b))) for (a, _), (b, _) in
                  zip(m.get_weights(), ref.get_weights()))
        print(json.dumps(dict(flag=jax.config.jax_enable_x64, arange=str(jnp.arange(3).dtype),
                              ones=str(jnp.ones(2).dtype), W=str(m.params[0][0].dtype),
                              p=str(p.dtype), err=err)))
    """)
    assert out["flag"] is False
    assert out["arange"] == "int32" and out["ones"] == "float32"
    assert out["W"] == "float64" and out["p"] == "float64"
    assert out["err"] < 1e-12  # float64 all the way: NumPy's float64 weights to 1e-12


def test_every_method_of_a_float64_model_scopes_its_own_precision():
    """No precision block in the user's code: each public method of a float64 model
    computes in float64 and leaves JAX's 64-bit flag off, without a warning."""
    out = run_script("""
        import json, warnings
        warnings.simplefilter("error")          # no truncation warning anywhere
        import numpy as np, jax, jax.numpy as jnp
        import mlp
        rng = np.random.default_rng(0)
        x = rng.normal(size=(40, 3))
        dtypes = {}
        for loss, y in [("cross_entropy", rng.integers(0, 3, size=40)),
                        ("binary_cross_entropy", rng.integers(0, 2, size=(40, 3)))]:
            m = mlp.MLP([3, 4, 3], loss=loss, backend="jax", dtype="float64", seed=0)
            m.fit(x, y, epochs=2, batch_size=8)
            m.evaluate(x, y), m.loss(x, y), m.gradients(x, y)
            dtypes[loss] = [str(m.predict(x).dtype), str(m.predict_proba(x).dtype),
                            str(m.predict_classes(x).dtype)]
        print(json.dumps(dict(flag=jax.config.jax_enable_x64, arange=str(jnp.arange(3).dtype),
                              dtypes=dtypes)))
    """)
    assert out["flag"] is False and out["arange"] == "int32"
    assert out["dtypes"] == {"cross_entropy": ["float64", "float64", "int64"],
                             "binary_cross_entropy": ["float64", "float64", "int64"]}


def test_float64_outside_precision_turns_x64_on_with_one_warning():
    """Work on float64 that code outside the backend could see unscoped: JAX's way."""
    out = run_script("""
        import json, warnings
        import numpy as np, jax
        from mlp import backends
        be = backends.get_backend("jax")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with be.precision(be.dtype("float64")):
                inside = be.asarray(np.ones(3), "float64")
            flag_after_scope = jax.config.jax_enable_x64
            a = be.asarray(np.ones(3), "float64")
            b = be.asarray(np.ones(2), "float64")
        ours = [str(w.message) for w in seen if "backend.precision" in str(w.message)]
        print(json.dumps(dict(n=len(ours), before=flag_after_scope,
                              flag=jax.config.jax_enable_x64,
                              dtypes=[str(inside.dtype), str(a.dtype), str(b.dtype)])))
    """)
    assert out == {"n": 1, "before": False, "flag": True,
                   "dtypes": ["float64", "float64", "float64"]}


def test_int64_labels_beyond_int32_are_refused_on_float32_jax_without_the_flag():
    out = run_script("""
        import json, warnings
        warnings.simplefilter("error")
        import numpy as np, jax
        import mlp
        m = mlp.MLP([3, 2], loss="cross_entropy", backend="jax", seed=0)
        x = np.random.default_rng(0).normal(size=(10, 3))
        m.fit(x, np.arange(10, dtype=np.uint64) % 2, epochs=1)
        try:
            m.fit(x, np.r_[np.zeros(9, np.int64), 2**32 + 2], epochs=1)
            message = None
        except ValueError as exc:
            message = str(exc)
        print(json.dumps(dict(message=message, flag=jax.config.jax_enable_x64,
                              W=str(m.params[0][0].dtype))))
    """)
    assert out["message"].endswith("labels from 0 to 4294967298")
    assert out["flag"] is False and out["W"] == "float32"


def test_one_compilation_per_function_across_fit_calls(count_jax_compiles):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 5)), rng.integers(0, 3, size=32)
    model = mlp.MLP([5, 7, 3], loss="cross_entropy", backend="jax", seed=0)
    model.fit(x, y, epochs=2, batch_size=8)
    model.predict(x)
    first = count_jax_compiles.compiles
    assert first >= 1
    for _ in range(3):
        model.fit(x, y, epochs=2, batch_size=8)
        model.predict(x)
    assert count_jax_compiles.compiles == first  # nothing recompiles for the same shapes


CACHE_SCRIPT = """
    import json
    import numpy as np
    import mlp
    from tests.conftest import JaxCompiles
    import jax.monitoring as mon
    counts = JaxCompiles()
    mon.register_event_duration_secs_listener(counts.on_duration)
    mon.register_event_listener(counts.on_event)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)), rng.integers(0, 3, size=64)
    m = mlp.MLP([4, 6, 3], loss="cross_entropy", backend="jax", seed=0)
    m.fit(x, y, epochs=2, batch_size=16, optimizer="adam")
    m.predict(x)
    print(json.dumps(dict(compiles=counts.compiles, hits=counts.cache_hits)))
"""


def test_persistent_cache_lets_a_second_process_skip_compiling(tmp_path):
    cache = str(tmp_path / "jax-cache")
    first = run_script(CACHE_SCRIPT, MLP_JAX_CACHE_DIR=cache)
    assert first["compiles"] >= 1 and first["hits"] == 0
    assert os.listdir(cache)
    second = run_script(CACHE_SCRIPT, MLP_JAX_CACHE_DIR=cache)
    assert second["compiles"] == first["compiles"]
    assert second["hits"] == second["compiles"]  # every program loaded, none compiled


def test_the_cache_is_on_by_default_in_the_users_cache_folder(tmp_path):
    """Without $MLP_JAX_CACHE_DIR the programs go to mlp's folder of the user's cache
    ($XDG_CACHE_HOME on Linux), bounded to 1 GiB; the second run loads every one."""
    env = dict(MLP_JAX_CACHE_DIR=None, XDG_CACHE_HOME=str(tmp_path / "user-cache"))
    first = run_script(CACHE_SCRIPT, **env)
    folder = tmp_path / "user-cache" / "mlp" / "jax"
    assert first["compiles"] >= 1 and first["hits"] == 0
    assert len(os.listdir(folder)) >= first["compiles"]
    second = run_script(CACHE_SCRIPT, **env)
    assert second["compiles"] == first["compiles"]
    assert second["hits"] == second["compiles"]
    settings = run_script("""
        import json, jax, backends
        backends.get_backend("jax")
        print(json.dumps(dict(dir=jax.config.jax_compilation_cache_dir,
                              size=jax.config.jax_compilation_cache_max_size,
                              default=backends.default_cache_dir())))
    """, **env)
    assert settings["dir"] == settings["default"] == str(folder)
    assert settings["size"] == 2**30


def test_an_empty_cache_variable_keeps_nothing_on_disk(tmp_path):
    env = dict(MLP_JAX_CACHE_DIR="", XDG_CACHE_HOME=str(tmp_path / "user-cache"))
    first = run_script(CACHE_SCRIPT, **env)
    second = run_script(CACHE_SCRIPT, **env)
    assert first["compiles"] >= 1 and second["hits"] == 0
    assert not (tmp_path / "user-cache").exists()


def test_disable_compilation_cache_stops_keeping_programs(tmp_path):
    out = run_script(f"""
        import json, os
        import numpy as np
        import mlp
        from mlp import backends
        path = backends.enable_compilation_cache({str(tmp_path / "c")!r})
        x = np.ones((8, 3))
        mlp.MLP([3, 2], backend="jax", seed=0).predict(x)
        kept = len(os.listdir(path))
        backends.disable_compilation_cache()
        mlp.MLP([3, 5, 2], backend="jax", seed=0).fit(x, np.ones((8, 2)), epochs=1)
        print(json.dumps(dict(kept=kept, after=len(os.listdir(path)))))
    """, MLP_JAX_CACHE_DIR=None, XDG_CACHE_HOME=str(tmp_path / "user-cache"))
    assert out["kept"] >= 1 and out["after"] == out["kept"]
    assert not (tmp_path / "user-cache").exists()  # the choice stood when the backend began


def test_a_cache_folder_that_cannot_be_made_warns_and_trains(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = run_script("""
        import json, warnings
        import numpy as np
        import mlp
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = mlp.MLP([3, 2], backend="jax", seed=0)
            m.fit(np.ones((8, 3)), np.ones((8, 2)), epochs=1)
        print(json.dumps([str(w.message) for w in caught]))
    """, MLP_JAX_CACHE_DIR=None, XDG_CACHE_HOME=str(blocker))
    assert any("JAX compiles without a cache on disk" in m and "MLP_JAX_CACHE_DIR" in m
               for m in out), out


@pytest.mark.parametrize("size", [-2, 1.5, True, "1GB"])
def test_a_cache_size_that_is_not_a_byte_count_is_refused(tmp_path, size):
    from mlp import backends

    with pytest.raises(ValueError, match="max_size is the most bytes"):
        backends.enable_compilation_cache(tmp_path / "c", max_size=size)


def test_enable_compilation_cache_works_after_the_first_compilation(tmp_path):
    out = run_script(f"""
        import json, os
        import numpy as np, jax
        import mlp
        from mlp import backends
        x = np.ones((8, 3))
        mlp.MLP([3, 2], backend="jax", seed=0).predict(x)       # compiled, nothing cached
        path = backends.enable_compilation_cache({str(tmp_path / "c")!r})
        mlp.MLP([3, 5, 2], backend="jax", seed=0).fit(x, np.ones((8, 2)), epochs=1)
        print(json.dumps(dict(path=path, files=len(os.listdir(path)),
                              dir=jax.config.jax_compilation_cache_dir,
                              min_time=jax.config.jax_persistent_cache_min_compile_time_secs,
                              min_size=jax.config.jax_persistent_cache_min_entry_size_bytes)))
    """)
    assert out["path"] == out["dir"] == str(tmp_path / "c")
    assert out["files"] >= 1
    assert out["min_time"] == 0.0 and out["min_size"] == 0


def test_a_first_fit_compiles_a_handful_of_programs(count_jax_compiles):
    """Data checks, one-hot encoding, the validation split and the final finiteness check
    add no per-array programs (28 compilations before, 11 now): the run at its two call
    lengths, the finiteness check, and the optimizer's zeros (one small program per
    parameter shape and dtype, once per process)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(96, 6)), rng.integers(0, 3, size=96)
    model = mlp.MLP([6, 9, 3], loss="cross_entropy", backend="jax", seed=0)
    model.fit(x, y, epochs=30, batch_size=32, optimizer="adam")
    assert count_jax_compiles.compiles <= 11
    before = count_jax_compiles.compiles
    model.fit(x, y, epochs=30, batch_size=32, optimizer="adam")
    model.evaluate(x, y)
    model.evaluate(x, y)
    assert count_jax_compiles.compiles == before + 1  # evaluate's metrics, once
    before = count_jax_compiles.compiles
    model.fit(x, y, epochs=1, batch_size=32, validation_split=0.25)
    # the split (one gather program) and the run and metrics on the new row counts
    assert count_jax_compiles.compiles - before <= 3


@pytest.mark.parametrize("path", [3, None, b"/tmp/cache"])
def test_a_cache_dir_that_is_not_a_folder_name_is_a_clear_error(path):
    from mlp import backends

    with pytest.raises(TypeError, match=r"the JAX compilation cache needs a folder name \(str or "
                                        r"os\.PathLike\), got "):
        backends.enable_compilation_cache(path)


def test_a_cache_dir_that_is_a_file_is_a_clear_error(tmp_path):
    from mlp import backends

    afile = tmp_path / "notadir"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"compilation cache needs a folder .*notadir"):
        backends.enable_compilation_cache(afile)


# ------------------------------------------------ row counts padded to the ladder
LADDER_1000 = [16, 32, 64, 128, 256, 512, 1024]


def test_the_ladder_bounds_programs_and_padding():
    assert mlp.buckets.ladder(1000) == LADDER_1000
    assert [mlp.buckets.bucket(n) for n in (1, 16, 17, 1024, 1025, 2048, 2049)] == [
        16, 16, 32, 1024, 1152, 2048, 2304]
    for n in range(1025, 40000, 7):  # beyond 1024: under 1/8 more rows
        assert n <= mlp.buckets.bucket(n) < n * 1.125
    assert mlp.buckets.bucket(45, multiple=6) == 66  # e.g. a mesh of 6 devices
    assert len(mlp.buckets.ladder(10**6)) == 87


def test_predict_on_every_batch_size_compiles_one_program_per_size_of_the_ladder(
        count_jax_compiles):
    """1 to 1000 rows: one program for each of 16, 32, ..., 1024 rows; predict_proba shares
    them and predict_classes has its own; JAX arrays off the ladder compile nothing more."""
    import jax

    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, 5)).astype(np.float32)
    model = mlp.MLP([5, 7, 3], loss="cross_entropy", backend="jax", seed=0)
    before = count_jax_compiles.compiles  # (the weights' copies on the device)
    for n in range(1, 1001):
        assert model.predict(x[:n]).shape == (n, 3)
    assert count_jax_compiles.compiles - before <= len(LADDER_1000)
    before = count_jax_compiles.compiles
    for n in range(1, 1001, 3):
        model.predict_proba(x[:n])
    assert count_jax_compiles.compiles == before
    for n in range(1, 1001, 3):
        assert model.predict_classes(x[:n]).shape == (n,)
    assert count_jax_compiles.compiles <= before + len(LADDER_1000)
    before = count_jax_compiles.compiles
    for n in (1, 2, 3, 17, 500, 999, 1000):
        on_device = jax.device_put(x[:n])
        assert np.array_equal(np.asarray(model.predict(on_device)),
                              np.asarray(model.predict(x[:n])))
    assert count_jax_compiles.compiles == before


def test_evaluate_loss_and_gradients_compile_one_program_per_size_of_the_ladder(
        count_jax_compiles):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(1000, 5)), rng.integers(0, 3, size=1000)
    w = rng.uniform(0.5, 2.0, size=1000)
    model = mlp.MLP([5, 7, 3], loss="cross_entropy", backend="jax", seed=0)
    sizes = sorted({1, 2, 3, 999, 1000, *range(4, 1000, 29)})
    for method in (model.evaluate, model.loss, model.gradients):
        before = count_jax_compiles.compiles
        for n in sizes:
            method(x[:n], y[:n])
            method(x[:n], y[:n], w[:n])  # weighted or not: the same programs
        assert count_jax_compiles.compiles - before <= len(LADDER_1000), method.__name__


def test_validation_data_of_any_size_compiles_no_new_program_within_a_size(
        count_jax_compiles):
    """fit's validation metrics run on the validation rows padded once per fit: sizes 20
    to 32 share the program of 32 rows (and the logs are evaluate's)."""
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(64, 5)), rng.integers(0, 3, size=64)
    x_val, y_val = rng.normal(size=(32, 5)), rng.integers(0, 3, size=32)
    model = mlp.MLP([5, 7, 3], loss="cross_entropy", backend="jax", seed=0)
    model.fit(x, y, epochs=2, batch_size=16, validation_data=(x_val[:20], y_val[:20]))
    before = count_jax_compiles.compiles
    for n in (21, 26, 31, 32):
        history = model.fit(x, y, epochs=2, batch_size=16,
                            validation_data=(x_val[:n], y_val[:n]))
        logs = model.evaluate(x_val[:n], y_val[:n])
        assert history.history["val_loss"][-1] == logs["loss"]
        assert history.history["val_accuracy"][-1] == logs["accuracy"]
    assert count_jax_compiles.compiles == before


# ------------------------------------------------ training rows padded to the ladder
def test_fit_on_every_data_size_compiles_one_run_per_size_of_the_ladder(count_jax_compiles):
    """Training rows pad to the ladder's size for one row more (a padding row the last
    batch fills up with), and an epoch's batch count is known only when the run runs:
    sizes from 20 to 300 rows train with the programs of 32, 64, 128, 256 and 512 rows."""
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(300, 5)), rng.integers(0, 3, size=300)
    model = mlp.MLP([5, 7, 3], loss="cross_entropy", backend="jax", seed=0)
    sizes = [20, 21, 30, 31, 40, 63, 64, 70, 100, 127, 128, 129, 200, 255, 256, 257, 300]
    model.fit(x[:20], y[:20], epochs=2, batch_size=16, optimizer="adam")
    before = count_jax_compiles.compiles
    for n in sizes:
        model.fit(x[:n], y[:n], epochs=2, batch_size=16, optimizer="adam")
    rows = {mlp.buckets.training_rows(n) for n in sizes}
    assert rows == {32, 64, 128, 256, 512}
    assert count_jax_compiles.compiles - before <= len(rows) - 1  # (32 rows: before)


def test_validation_split_of_any_size_compiles_nothing_new_within_a_size(count_jax_compiles):
    """The split is made on the host: no program per pair of sizes."""
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(60, 5)), rng.integers(0, 3, size=60)
    model = mlp.MLP([5, 7, 3], loss="cross_entropy", backend="jax", seed=0)
    model.fit(x[:50], y[:50], epochs=2, batch_size=8, validation_split=0.3)
    before = count_jax_compiles.compiles
    for n in (47, 49, 52, 55, 60):  # 33-42 training rows (64), 14-18 validation rows (16, 32)
        model.fit(x[:n], y[:n], epochs=2, batch_size=8, validation_split=0.3)
    assert count_jax_compiles.compiles - before <= 1  # the metrics at 32 validation rows


def _grid_search_data():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:301] / 16, y[:301]  # folds of 101, 100, 100 rows: training splits of 200, 201


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_compiles_no_more_than_two_fits_of_the_largest_split(count_jax_compiles):
    """GridSearchCV(cv=3) over two values of alpha: its six fits and their scores compile
    what two fits (one per alpha) on the largest split and their scores compile, though
    the splits differ in size."""
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from mlp.engine.pipeline import _BUILT
    from mlp.sklearn import MLPClassifier

    x, y = _grid_search_data()
    folds = list(StratifiedKFold(3).split(x, y))
    assert len({len(train) for train, _ in folds}) > 1  # the splits differ in size
    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, backend="jax")
    largest, held_out = max(folds, key=lambda fold: len(fold[0]))

    def two_fits():
        for alpha in (1e-4, 1e-2):
            clf = MLPClassifier(alpha=alpha, **params).fit(x[largest], y[largest])
            clf.score(x[held_out], y[held_out])

    two_fits()  # JAX's own small programs (the optimizer's zeros...) compiled once
    _BUILT.clear()  # the estimators' programs built afresh (JAX keeps programs per function)
    start = count_jax_compiles.compiles
    two_fits()
    compiled = count_jax_compiles.compiles - start
    assert compiled >= 3  # a run per alpha and the forward pass
    _BUILT.clear()
    start = count_jax_compiles.compiles
    GridSearchCV(MLPClassifier(**params), {"alpha": [1e-4, 1e-2]}, cv=3,
                 refit=False).fit(x, y)
    assert count_jax_compiles.compiles - start <= compiled


SKLEARN_SCRIPT = """
    import json
    import jax.monitoring as mon
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from mlp.sklearn import MLPClassifier
    from tests.conftest import JaxCompiles
    counts = JaxCompiles()
    mon.register_event_duration_secs_listener(counts.on_duration)
    mon.register_event_listener(counts.on_event)
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=3, random_state=0,
                                                         backend="jax"))
    pipe.fit(X, y)
    fit = counts.compiles
    pipe.score(X, y)
    scored = counts.compiles
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3).fit(X, y)
    print(json.dumps(dict(fit=fit, scored=scored, search=counts.compiles)))
"""


def test_a_scikit_learn_fit_on_jax_compiles_its_epoch_and_nothing_else():
    """The estimator's work on the device is the compiled epoch (one program per data
    size bucket) and the forward pass: its optimizer state is made on the host and
    the epoch's rows and loss cross through the host, so no eager operation compiles
    a program of its own (13 programs for the fit before, 1 now)."""
    out = run_script(SKLEARN_SCRIPT, MLP_JAX_CACHE_DIR="")
    assert out["fit"] == 1  # the epoch
    assert out["scored"] == 2  # and the forward pass
    # six fits and a refit: the folds' sizes (400 rows to train, 200 to score) take a
    # bucket each of the epoch and of the forward pass (and a third at most); the two
    # alpha values and the refit on all 600 rows need no program of their own
    assert out["search"] - out["scored"] <= 3
