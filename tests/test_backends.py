"""The backend selector and the Backend interface."""

from __future__ import annotations

import ast
import pathlib
import sys

import numpy as np
import pytest

import mlp
from mlp import backends
from mlp.backends import BackendUnavailableError, get_backend


def test_numpy_is_the_default(monkeypatch):
    monkeypatch.delenv("MLP_BACKEND", raising=False)
    assert get_backend().name == "numpy"
    assert mlp.MLP([2, 1], seed=0).backend.name == "numpy"


def test_env_variable_selects_the_backend(monkeypatch):
    monkeypatch.setenv("MLP_BACKEND", "array_api_strict")
    assert get_backend().name == "array_api_strict"
    model = mlp.MLP([2, 3, 1], seed=0)
    assert model.backend.name == "array_api_strict"
    assert type(model.predict(np.ones((4, 2)))).__module__.startswith("array_api_strict")


def test_explicit_name_wins_over_env(monkeypatch):
    monkeypatch.setenv("MLP_BACKEND", "array_api_strict")
    assert get_backend("numpy").name == "numpy"


def test_unknown_name_lists_every_known_backend():
    with pytest.raises(ValueError) as info:
        get_backend("tensorflow")
    message = str(info.value)
    assert "'tensorflow'" in message
    for name in ("numpy", "jax", "cupy", "torch", "array_api_strict"):
        assert name in message


def test_unknown_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("MLP_BACKEND", "nmupy")
    with pytest.raises(ValueError, match=r"\$MLP_BACKEND 'nmupy'.*numpy, jax, cupy, torch"):
        get_backend()


def test_missing_library_raises_unavailable_with_the_extra(monkeypatch):
    monkeypatch.setattr(backends, "_cache", {})
    monkeypatch.setitem(sys.modules, "jax", None)  # makes `import jax` fail
    with pytest.raises(BackendUnavailableError, match=r"pip install 'mlp-array-api\[jax\]'"):
        get_backend("jax")
    assert isinstance(BackendUnavailableError("x"), RuntimeError)


def test_cupy_without_gpu_says_so(monkeypatch):
    class FakeCuda:
        @staticmethod
        def is_available():
            return False

    class FakeCupy:
        cuda = FakeCuda

    monkeypatch.setattr(backends, "_cache", {})
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    with pytest.raises(BackendUnavailableError, match="no|needs an NVIDIA GPU"):
        get_backend("cupy")


def test_available_backends_run_here_and_start_with_numpy():
    names = backends.available_backends()
    assert names[0] == "numpy"
    for name in names:
        be = get_backend(name)
        assert float(be.to_numpy(be.xp.sum(be.asarray([1.0, 2.0])))) == 3.0
    assert set(names) | set(backends.unavailable_backends()) == set(backends.KNOWN_BACKENDS)


def test_asarray_to_numpy_round_trip(backend):
    host = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    arr = backend.asarray(host, "float64")
    assert backend.is_native(arr)
    assert backend.dtype_name(arr.dtype) == "float64"
    back = backend.to_numpy(arr)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    arr32 = backend.asarray(host.tolist(), "float32")
    assert backend.dtype_name(arr32.dtype) == "float32"
    np.testing.assert_array_equal(backend.to_numpy(arr32), host.astype(np.float32))


def test_to_numpy_is_a_copy(backend):
    arr = backend.asarray(np.zeros(3), "float32")
    out = backend.to_numpy(arr)
    out[0] = 5.0
    assert float(backend.to_numpy(arr)[0]) == 0.0


def test_float64_is_honoured(backend):
    """JAX truncates float64 to float32 unless x64 is on; the backend turns it on."""
    model = mlp.MLP([3, 2], backend=backend, dtype="float64", seed=0)
    W, _ = model.params[0]
    assert backend.dtype_name(W.dtype) == "float64"
    out = model.predict(np.ones((2, 3)))
    assert backend.dtype_name(out.dtype) == "float64"
    assert model.get_weights()[0][0].dtype == np.float64


def test_jit_gives_the_same_result(backend):
    xp = backend.xp

    def f(a, b):
        return xp.sum(a * b) + 1.0

    a = backend.asarray(np.arange(4.0), "float32")
    fast = backend.jit(f)
    assert float(fast(a, a)) == float(f(a, a)) == 15.0


def test_scan_matches_a_loop(backend):
    xp = backend.xp
    xs = backend.asarray(np.arange(5.0), "float32")

    def body(carry, x):
        carry = carry + x
        return carry, carry * 2.0

    carry, ys = backend.scan(body, backend.asarray(0.0, "float32"), xs)
    assert float(carry) == 10.0
    np.testing.assert_array_equal(backend.to_numpy(ys), [0.0, 2.0, 6.0, 12.0, 20.0])
    carry, ys = backend.scan(lambda c, _: (c + 1.0, c), backend.asarray(0.0, "float32"), None,
                             length=3)
    assert float(carry) == 3.0
    assert ys.shape == (3,) and float(xp.sum(ys)) == 3.0


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_mlp_never_imports_a_concrete_array_library():
    root = pathlib.Path(mlp.__file__).parent
    for path in root.rglob("*.py"):  # the subpackages (callbacks, sklearn) too
        found = set(_imports(path))
        assert not found & {"jax", "jaxlib", "torch", "cupy", "array_api_strict"}, path.name
    # numpy is used only for host-side random draws, input checks, padding and file I/O
    numpy_users = {p.name for p in root.glob("*.py") if "numpy" in set(_imports(p))}
    assert numpy_users <= {"initializers.py", "io.py", "validation.py", "model.py",
                           "training.py", "params.py", "weights.py", "fit_settings.py",
                           "losses.py", "buckets.py",  # (host-side padding)
                           "shards.py",  # (host-side row maps of per-process shards)
                           "dropout.py",  # (host-side per-epoch keys of the masks' hash)
                           "data.py",  # (host-side reads of arrays on disk, by window)
                           "batch_norm.py",  # (initial (4, units) biases, made on the host)
                           "export.py", "network.py"}, numpy_users  # (ONNX weights; types)
    assert "numpy" not in set(_imports(root / "core.py"))
    assert "numpy" not in set(_imports(root / "optimizers.py"))


def _imported_modules(path):
    """Every module ``path`` imports, at any depth (lazy imports in functions too), as
    written (``from .x import y``: ``.x``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or "")


def test_backends_import_nothing_of_mlp():
    """The layering runs one way: `mlp` uses `backends`, never the reverse (not even
    lazily, inside a function)."""
    root = pathlib.Path(backends.__file__).parent
    paths = sorted(root.glob("*.py"))
    assert len(paths) >= 8
    for path in paths:
        upward = [m for m in _imported_modules(path)
                  if m.split(".")[0] == "mlp" or m.startswith("..")]
        assert not upward, (path.name, upward)


def test_base_names_no_array_library_each_module_converts_its_own():
    source = (pathlib.Path(backends.__file__).parent / "_base.py").read_text()
    strings = {node.value for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    for library in ("torch", "jax", "jaxlib", "cupy", "array_api_strict"):
        assert library not in strings, library  # no `module == "torch"` tests in _base
    assert backends.to_host is backends.foreign_to_numpy
    for module in (backends._jax, backends._torch, backends._strict, backends._cupy):
        assert module.to_host(np.ones(2), get_backend("numpy"), "x") is None
        assert module.to_host([1.0], get_backend("numpy"), "x") is None


def test_to_host_converts_every_installed_librarys_cpu_arrays(backend):
    numpy_backend = get_backend("numpy")
    native = backend.asarray(np.arange(6.0).reshape(2, 3), "float64" if backend.name != "jax"
                             else "float32")
    host = backends.to_host(native, numpy_backend, "x")
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match=r"x must be an array of numbers; cannot turn a "
                                        r"_Unconvertible"):
        backends.to_host(_Unconvertible(), numpy_backend, "x")


class _Unconvertible:
    def __array__(self, *args, **kwargs):
        raise ValueError("no")
