"""nox sessions: the test suite once per backend, lint, examples and benchmarks.

    nox -s tests                       # every backend (cupy skips without a GPU)
    nox -s "tests(backend='jax')"      # one backend
    nox -s lint
    nox -s docs                        # the site (docs/_build/html) and the doctests
    nox -s bench

Each tests session installs that backend's extra and runs pytest with
MLP_BACKEND set, so the backend-parametrized tests run on that backend.
"""

from __future__ import annotations

import shutil

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# PyTorch's CPU wheel, pinned: a plain `torch` from PyPI is a ~5 GB CUDA build on Linux (the
# README's backend table and the torch backend's error message give the same advice).
TORCH = "torch==2.13.0"

BACKENDS = ["numpy", "jax", "torch", "array_api_strict", "cupy"]


def _has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


@nox.session
@nox.parametrize("backend", BACKENDS)
def tests(session, backend):
    """Run the test suite on one backend."""
    if backend == "cupy":
        if not _has_nvidia_gpu():
            session.skip("the cupy session needs an NVIDIA GPU with a driver (nvidia-smi not "
                         "found on this machine); CuPy cannot run here")
        session.install("-e", ".[test,cupy]")
    elif backend == "torch":
        session.install(TORCH)
        session.install("-e", ".[test]")
    elif backend == "jax":
        session.install("-e", ".[test,jax]")
    else:
        session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs, env={"MLP_BACKEND": backend})


@nox.session
def lint(session):
    """ruff over the code, with pyproject's rules: pycodestyle, pyflakes, isort, bugbear,
    pyupgrade, McCabe complexity (no function over 12) and annotations in the strict
    modules; then mypy over mlp/ and backends/ (pyproject's [tool.mypy]: strict on the
    modules its strict override lists, the same as ruff's ANN list)."""
    session.install("ruff>=0.5", "mypy>=1.11", "numpy>=1.26", "platformdirs>=3")
    session.run("ruff", "check", "mlp", "backends", "tests", "examples", "benchmarks",
                "noxfile.py")
    session.run("python", ".ci/typecheck.py")


@nox.session
def examples(session):
    """Run the examples on every CPU backend."""
    session.install(TORCH)
    session.install("-e", ".[examples,jax]")
    for backend in ("numpy", "jax", "torch", "array_api_strict"):
        for script in ("seed_notebook.py", "digits.py", "diabetes.py", "sklearn_parity.py"):
            session.run("python", f"examples/{script}", env={"MLP_BACKEND": backend})
    session.run("python", "examples/scaling.py")  # JAX on forced host devices


@nox.session
def docs(session):
    """The documentation site, offline: the docstrings' examples (doctests), then
    ``sphinx-build -W --keep-going`` into ``docs/_build/html``, running every example
    of ``examples/`` for its page (sphinx-gallery) and validating every docstring it
    documents with numpydoc (``docs/_validation.py``).

    ``nox -s docs -- -E`` passes ``-E`` (and any other arguments) to sphinx-build.
    """
    session.install("-e", ".[docs]")
    one_thread = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "MPLBACKEND": "Agg"}  # the examples are small: BLAS threads only wait
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--doctest-modules",
                "mlp", env=one_thread)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", *session.posargs,
                "docs", "docs/_build/html", env=one_thread)


@nox.session
def bench(session):
    """The benchmark suite (W1-W3 against the peers): ``nox -s bench -- --quick``.

    It runs at one thread and at the libraries' default thread count, each in a
    fresh process, and reports ratios to the peers measured in the same run.
    Arguments after ``--`` go to ``python -m benchmarks.run`` (``--quick``,
    ``--threads 1`` or ``--threads default`` for one of the two runs only,
    ``--workloads W2``, ``--gpu``...). OPENBLAS_CORETYPE is
    unset for this session only: a forced core type can pick slower kernels than
    OpenBLAS's own detection (tests and CI keep the environment as it is).
    """
    session.install(TORCH)  # first, so that the torch extra does not pull a CUDA build
    session.install("-e", ".[bench,jax,torch]")
    env = {"OPENBLAS_CORETYPE": None}
    session.run("python", "-m", "benchmarks.run", *session.posargs, env=env)
