"""`mlp.sklearn`: scikit-learn's MLP semantics on every backend.

scikit-learn's own MLP tests run against these estimators in
`test_sklearn_reference.py`, its conformance suite in `test_sklearn_checks.py`;
here: the same numbers as scikit-learn's MLP, weights, labels, namespaces,
pickling and the meta-estimators.
"""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.preprocessing import LabelBinarizer  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from mlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from tests._sklearn_ci import numpy_only  # noqa: E402

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_REG, Y_REG = make_regression(n_samples=60, n_features=5, n_targets=2, noise=1.0,
                               random_state=0)
Y_REG = Y_REG / 100


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _close(ours, theirs, backend):
    # float64 everywhere; the backends' matmuls round differently in the last bits
    tol = 1e-9 if backend.name == "numpy" else 1e-6
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_classifier_matches_scikit_learn_weight_for_weight(backend, solver):
    kw = dict(hidden_layer_sizes=(7,), max_iter=15, random_state=3, solver=solver,
              learning_rate="invscaling", alpha=0.01, batch_size=40)
    theirs = _quiet(sk.MLPClassifier(**kw).fit, X_IRIS, Y_IRIS)
    ours = _quiet(MLPClassifier(**kw, backend=backend).fit, X_IRIS, Y_IRIS)
    assert ours.n_iter_ == theirs.n_iter_
    _close(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, backend)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-7)
    if solver != "lbfgs":
        assert ours.loss_curve_ == pytest.approx(theirs.loss_curve_, rel=1e-7)
        assert all(type(v) is float for v in ours.loss_curve_)
        assert ours.t_ == theirs.t_ == 15 * len(X_IRIS)


@pytest.mark.parametrize("kw", [dict(solver="sgd", momentum=0.5, nesterovs_momentum=False,
                                     learning_rate="adaptive", tol=0.5, n_iter_no_change=2),
                                dict(solver="adam", early_stopping=True, n_iter_no_change=3,
                                     learning_rate_init=0.05)])
def test_regressor_matches_scikit_learn_stopping_rules(backend, kw):
    kw = dict(hidden_layer_sizes=(6,), max_iter=40, random_state=0, **kw)
    theirs = _quiet(sk.MLPRegressor(**kw).fit, X_REG, Y_REG)
    ours = _quiet(MLPRegressor(**kw, backend=backend).fit, X_REG, Y_REG)
    assert ours.n_iter_ == theirs.n_iter_
    _close(ours.coefs_, theirs.coefs_, backend)
    if kw["solver"] == "sgd":
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
    if kw.get("early_stopping"):
        assert ours.validation_scores_ == pytest.approx(theirs.validation_scores_, rel=1e-7)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)


def _objective_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4))
    w = rng.uniform(0.1, 3.0, size=12)
    multilabel = make_multilabel_classification(n_samples=12, n_features=4, n_classes=3,
                                                random_state=0)[1]
    yield "multiclass", MLPClassifier, x, np.arange(12) % 3, w
    yield "binary", MLPClassifier, x, np.arange(12) % 2, w
    yield "multilabel", MLPClassifier, x, multilabel, w
    yield "poisson", MLPRegressor, x, rng.poisson(2.0, size=12).astype(float), w
    yield "regression", MLPRegressor, x, rng.normal(size=12), None


@pytest.mark.parametrize("case", list(_objective_cases()), ids=lambda c: c[0])
def test_weighted_objective_and_gradient_equal_scikit_learns(backend, case):
    """Loss and gradient of scikit-learn's own `_loss_grad_lbfgs` (weighted mean, L2 term
    divided by the sum of the weights) at the same point, on every backend."""
    name, cls, x, y, w = case
    kw = dict(hidden_layer_sizes=(5,), alpha=0.3, solver="lbfgs", max_iter=1, random_state=0,
              activation="tanh")
    if name == "poisson":
        kw["loss"] = "poisson"
    ours = _quiet(cls(**kw, backend=backend).fit, x, y, sample_weight=w)
    theirs = _quiet(getattr(sk, cls.__name__)(**kw).fit, x, y, sample_weight=w)
    Y = LabelBinarizer().fit(y).transform(y) if cls is MLPClassifier else y.reshape(12, -1)
    theta = np.concatenate([c.ravel() for c in theirs.coefs_ + theirs.intercepts_])
    ours.coefs_, ours.intercepts_ = theirs.coefs_, theirs.intercepts_
    n = len(theirs.coefs_) + 1
    scratch = ([x] + [None] * (n - 1), [None] * (n - 1), [None] * (n - 1), [None] * (n - 1))
    loss, grad = theirs._loss_grad_lbfgs(theta.copy(), x, Y, w, *scratch)
    our_loss, our_grad = ours._loss_grad_lbfgs(theta, x, Y, w)
    assert our_loss == pytest.approx(loss, rel=1e-9)
    np.testing.assert_allclose(our_grad, grad, rtol=1e-8, atol=1e-12)


def test_integer_sample_weights_equal_repeated_rows(backend):
    w = np.arange(len(X_IRIS)) % 3
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=30, random_state=0,
              backend=backend)
    weighted = _quiet(MLPClassifier(**kw).fit, X_IRIS, Y_IRIS, sample_weight=w)
    repeated = _quiet(MLPClassifier(**kw).fit, np.repeat(X_IRIS, w, axis=0),
                      np.repeat(Y_IRIS, w))
    np.testing.assert_allclose(weighted.coefs_[0], repeated.coefs_[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 1.0, 1: 3.0, 2: 0.5}])
def test_class_weight_is_a_per_row_sample_weight(backend, class_weight):
    numpy_only(backend)
    x, y = X_IRIS[:120], Y_IRIS[:120]  # unbalanced: 50, 50, 20
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0, backend=backend)
    ours = _quiet(MLPClassifier(**kw, class_weight=class_weight).fit, x, y,
                  sample_weight=np.full(120, 2.0))
    rows = compute_sample_weight(class_weight, y) * 2.0
    same = _quiet(MLPClassifier(**kw).fit, x, y, sample_weight=rows)
    unweighted = _quiet(MLPClassifier(**kw).fit, x, y)
    _close(ours.coefs_, same.coefs_, backend)
    assert not np.allclose(ours.coefs_[0], unweighted.coefs_[0])


@pytest.mark.parametrize("labels", [np.array(["setosa", "versicolor", "virginica"]),
                                    np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0])],
                         ids=["strings", "one-based", "whole-floats"])
def test_any_labels_come_back_as_given(backend, labels):
    numpy_only(backend)
    y = labels[Y_IRIS]
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(10,), max_iter=50, random_state=0,
                               learning_rate_init=0.01, backend=backend).fit, X_IRIS, y)
    pred = clf.predict(X_IRIS)
    assert list(clf.classes_) == list(labels)
    assert pred.dtype == y.dtype and set(pred) <= set(labels)
    assert clf.score(X_IRIS, y) > 0.8
    proba = clf.predict_proba(X_IRIS)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(clf.predict_log_proba(X_IRIS), np.log(proba))


def test_pandas_categorical_labels_and_feature_names(backend):
    numpy_only(backend)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X_IRIS, columns=["a", "b", "c", "d"])
    y = pd.Categorical.from_codes(Y_IRIS, ["s", "ve", "vi"])
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0,
                               backend=backend).fit, frame, y)
    assert list(clf.feature_names_in_) == ["a", "b", "c", "d"]
    assert set(clf.predict(frame)) <= {"s", "ve", "vi"}
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X_IRIS)


def test_multilabel_and_multioutput_shapes(backend):
    numpy_only(backend)
    x, Y = make_multilabel_classification(n_samples=40, n_features=6, n_classes=4,
                                          random_state=0)
    clf = _quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                               backend=backend).fit, x, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 4
    assert clf.predict(x).shape == (40, 4) and clf.predict_proba(x).shape == (40, 4)
    reg = _quiet(MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                              backend=backend).fit, X_REG, Y_REG)
    assert reg.predict(X_REG).shape == (60, 2) and reg.n_outputs_ == 2


def test_poisson_predictions_are_positive_and_match_scikit_learn(backend):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(80, 3))
    y = rng.poisson(np.exp(x @ [1.0, -0.5, 0.3]))
    kw = dict(loss="poisson", hidden_layer_sizes=(4,), solver="lbfgs", max_iter=50,
              random_state=0)
    ours = _quiet(MLPRegressor(**kw, backend=backend).fit, x, y)
    theirs = _quiet(sk.MLPRegressor(**kw).fit, x, y)
    assert ours.out_activation_ == "exp" and np.all(ours.predict(x) > 0)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-5)
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson", backend=backend).fit(x, y - 10.0)


def test_weighted_poisson_loss_curve_equals_scikit_learns(backend):
    """Two outputs, row weights, a last batch of another size: scikit-learn's ``loss_``
    holds Poisson's data-only term ``y log y - y`` (added on the host, batch by batch)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    y = rng.poisson(np.exp(0.3 * x[:, :2])).astype(float)
    w = rng.uniform(0.2, 2.0, size=50)
    kw = dict(loss="poisson", hidden_layer_sizes=(5,), max_iter=6, batch_size=16, alpha=0.01,
              learning_rate_init=0.01, random_state=0)
    theirs = _quiet(sk.MLPRegressor(**kw).fit, x, y, sample_weight=w)
    ours = _quiet(MLPRegressor(**kw, backend=backend).fit, x, y, sample_weight=w)
    assert ours.n_iter_ == theirs.n_iter_ == 6
    _close(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, backend)
    assert ours.loss_curve_ == pytest.approx(theirs.loss_curve_, rel=1e-9)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)


def test_dtype_follows_the_input_or_is_forced(backend):
    x32 = X_IRIS.astype(np.float32)
    kw = dict(hidden_layer_sizes=(4,), max_iter=2, random_state=0, backend=backend)
    assert _quiet(MLPClassifier(**kw).fit, x32, Y_IRIS).coefs_[0].dtype == np.float32
    assert _quiet(MLPClassifier(**kw).fit, X_IRIS, Y_IRIS).coefs_[0].dtype == np.float64
    forced = _quiet(MLPClassifier(**kw, dtype="float32").fit, X_IRIS, Y_IRIS)
    assert forced.coefs_[0].dtype == np.float32
    assert forced.predict_proba(X_IRIS).dtype == np.float32


def test_sparse_input_equals_dense(backend):
    numpy_only(backend)
    sparse = pytest.importorskip("scipy.sparse")
    kw = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend=backend)
    dense = _quiet(MLPClassifier(**kw).fit, X_IRIS, Y_IRIS)
    for fmt in (sparse.csr_matrix, sparse.csc_matrix):
        est = _quiet(MLPClassifier(**kw).fit, fmt(X_IRIS), Y_IRIS)
        _close(est.coefs_, dense.coefs_, backend)
        np.testing.assert_allclose(est.predict_proba(fmt(X_IRIS)), dense.predict_proba(X_IRIS))


def test_pickle_clone_and_partial_fit_after_reload(backend, tmp_path):
    est = MLPRegressor(hidden_layer_sizes=(5,), random_state=0, backend=backend)
    est.partial_fit(X_REG, Y_REG)
    path = tmp_path / "est.joblib"
    joblib.dump(est, path)
    reloaded = joblib.load(path)
    est.partial_fit(X_REG, Y_REG)
    reloaded.partial_fit(X_REG, Y_REG)  # continues the Adam moments, as without the trip
    _close(reloaded.coefs_, est.coefs_, backend)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict(X_REG), est.predict(X_REG))
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "coefs_")
    assert fresh.backend is backend


def test_a_backend_object_pickles_by_name(backend):
    numpy_only(backend)
    est = _quiet(MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, backend=backend).fit,
                 X_IRIS, Y_IRIS)
    copy = pickle.loads(pickle.dumps(est))
    assert copy.backend is backend
    np.testing.assert_array_equal(copy.predict(X_IRIS), est.predict(X_IRIS))


def test_pipeline_grid_search_and_cross_val_score(backend):
    numpy_only(backend)
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, random_state=0,
                                                         learning_rate_init=0.01,
                                                         backend=backend.name))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (8,)]}, cv=2,
                        n_jobs=2)
    _quiet(grid.fit, X_IRIS, Y_IRIS)
    assert grid.best_score_ > 0.7
    assert isinstance(grid.predict(X_IRIS), np.ndarray)
    scores = _quiet(cross_val_score, pipe, X_IRIS, Y_IRIS, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7


def test_unknown_backend_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known backends: numpy"):
        MLPClassifier(backend="tensorflow").fit(X_IRIS, Y_IRIS)


def test_partial_fit_only_for_stochastic_solvers():
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="sgd"), "partial_fit")


def test_class_weights_may_be_python_integers_of_any_size(backend):
    """A class weight is any real number >= 0: a Python integer beyond NumPy's integers
    (2**70) weighs as the float it equals (only the ratios count, so 2**70, 2**70, 2**71
    trains as 1, 1, 2), and one beyond float64 (10**400) is refused as not finite."""
    numpy_only(backend)
    kw = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0, alpha=0.0, backend=backend)
    big = _quiet(MLPClassifier(**kw, class_weight={0: 2**70, 1: 2**70, 2: 2**71}).fit,
                 X_IRIS, Y_IRIS)
    small = _quiet(MLPClassifier(**kw, class_weight={0: 1, 1: 1, 2: 2}).fit, X_IRIS, Y_IRIS)
    for got, want in zip(big.coefs_ + big.intercepts_, small.coefs_ + small.intercepts_):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"class_weight\[2\] must be a finite number >= 0, got "
                                         r"1000+$"):
        MLPClassifier(**kw, class_weight={2: 10**400}).fit(X_IRIS, Y_IRIS)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_negative_weights_are_refused_as_the_core_refuses_them(backend, solver):
    """scikit-learn's MLP trains on negative weights (an objective with no minimum: its
    lbfgs regressor reports loss_ nan); ours refuses them, as `mlp.MLP.fit` does, naming
    the sample or class. A weight of 0 drops a sample in both."""
    numpy_only(backend)
    kw = dict(hidden_layer_sizes=(4,), max_iter=5, random_state=0, solver=solver)
    w = np.ones(len(Y_IRIS))
    w[7] = -0.5
    for cls, y in ((MLPClassifier, Y_IRIS), (MLPRegressor, X_IRIS[:, 0])):
        with pytest.raises(ValueError, match=r"sample_weight must be >= 0, got -0\.5 for sample "
                                             r"7 \(1 negative in all\): a negative weight "
                                             r"rewards a larger loss on its sample"):
            cls(**kw, backend=backend).fit(X_IRIS, y, sample_weight=w)
        with pytest.raises(ValueError, match=r"mlp\.MLP\.fit: sample_weight must be >= 0"):
            mlp_core_fit(y, w, classify=cls is MLPClassifier)
    with pytest.raises(ValueError, match=r"sample_weight must be >= 0"):
        MLPClassifier(**{**kw, "solver": "adam"}, backend=backend).partial_fit(
            X_IRIS, Y_IRIS, sample_weight=w, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"class_weight\[1\] must be a finite number >= 0, got "
                                         r"-2: a negative weight rewards a larger loss on its "
                                         r"class"):
        MLPClassifier(**kw, class_weight={1: -2}, backend=backend).fit(X_IRIS, Y_IRIS)
    with pytest.raises(TypeError, match=r"class_weight\[1\] must be a number >= 0, got str 'x'"):
        MLPClassifier(**kw, class_weight={1: "x"}, backend=backend).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match=r"the samples' weights \(sample_weight times "
                                         r"class_weight\) are 0 for every sample"):
        MLPClassifier(**kw, class_weight={0: 0, 1: 0, 2: 0},
                      backend=backend).fit(X_IRIS, Y_IRIS)
    zero = np.ones(len(Y_IRIS))
    zero[:10] = 0
    ours = _quiet(MLPClassifier(**kw, backend=backend).fit, X_IRIS, Y_IRIS, sample_weight=zero)
    theirs = _quiet(sk.MLPClassifier(**kw).fit, X_IRIS, Y_IRIS, sample_weight=zero)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-7)


def mlp_core_fit(y, w, classify):
    """`mlp.MLP.fit` with the same weights, for the message (prefixed by its name)."""
    import mlp

    model = mlp.MLP([4, 3 if classify else 1], loss="cross_entropy" if classify else "mse",
                    backend="numpy", seed=0)
    try:
        model.fit(X_IRIS, y, epochs=1, sample_weight=w)
    except ValueError as exc:
        raise ValueError(f"mlp.MLP.fit: {exc}") from None


def test_one_fit_at_a_time_per_estimator_and_a_copy_is_free(backend):
    """A second fit or partial_fit from another thread while one runs is refused at once;
    a clone, pickle or deepcopy is another estimator, and carries no lock."""
    import copy
    import threading

    import mlp

    numpy_only(backend)
    est = MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, random_state=0, backend=backend)
    inside, release = threading.Event(), threading.Event()
    end_epoch = est._end_epoch

    def pausing(*args):
        inside.set()
        assert release.wait(60)
        return end_epoch(*args)

    est._end_epoch = pausing
    worker = threading.Thread(target=lambda: _quiet(est.fit, X_IRIS, Y_IRIS))
    worker.start()
    try:
        assert inside.wait(60)
        for call in (lambda: est.fit(X_IRIS, Y_IRIS),
                     lambda: est.partial_fit(X_IRIS, Y_IRIS, classes=[0, 1, 2])):
            with pytest.raises(mlp.ModelBusyError, match=r"^(fit|partial_fit) was called on an "
                                                         r"estimator while another thread runs "
                                                         r"fit on it; an estimator runs one "
                                                         r"training call at a time"):
                call()
        # the settings the running fit reads: set_params and assignments refused
        with pytest.raises(mlp.ModelBusyError, match=r"^set_params was called on an estimator "
                                                     r"while another thread runs fit on it"):
            est.set_params(alpha=1.0, max_iter=50)
        with pytest.raises(mlp.ModelBusyError, match=r"^setting max_iter was called on an "
                                                     r"estimator while another thread runs fit"):
            est.max_iter = 50
        assert est.get_params()["alpha"] == 1e-4 and est.max_iter == 3
        est.coefs_seen = True  # (not a parameter: free)
        _quiet(clone(est).fit, X_IRIS, Y_IRIS)  # another estimator
    finally:
        release.set()
        worker.join(60)
    del est._end_epoch
    assert est.n_iter_ == 3
    est.set_params(alpha=1e-3)
    est.max_iter = 4
    assert est.get_params()["alpha"] == 1e-3 and est.max_iter == 4
    for twin in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est), clone(est)):
        assert mlp.guard.ATTRIBUTE not in vars(twin)
        _quiet(twin.fit, X_IRIS, Y_IRIS)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_pickled_estimator_holds_no_object_of_its_backends_library(backend, solver):
    import io

    est = _quiet(MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, solver=solver,
                               random_state=0, backend=backend).fit, X_IRIS, Y_IRIS)
    found = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add(module.split(".")[0])
            return super().find_class(module, name)

    copy = Recorder(io.BytesIO(pickle.dumps(est))).load()
    assert found <= {"mlp", "numpy", "sklearn", "copyreg", "builtins", "_codecs"}
    np.testing.assert_array_equal(copy.predict_proba(X_IRIS), est.predict_proba(X_IRIS))


@pytest.mark.parametrize("hidden, match", [
    ((10**12,), r"hidden_layer_sizes=\(1000000000000,\): layer_sizes \[4, 1000000000000, "
                r"\d\] makes a model of [\d,]+ parameters, whose initial weights need about "
                r"[\d.]+ [TP]B \(drawn in float64\): (more than this machine's memory \(.*\)|"
                r"cannot be allocated here); use smaller layers"),
    ((2**62,), r"hidden_layer_sizes=\(4611686018427387904,\): layer_sizes \[4, "
               r"4611686018427387904, \d\] makes a model of"),
], ids=["1e12", "2**62"])
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_layers_too_large_for_the_machine_are_refused_before_allocating(Estimator, hidden,
                                                                       match):
    """As `mlp.MLP` refuses them: a MemoryError naming the layers, before the initial weights
    are drawn (not NumPy's raw "array is too big", or an allocation that kills the process)."""
    x, y = load_iris(return_X_y=True)
    estimator = Estimator(hidden_layer_sizes=hidden, max_iter=2)
    with pytest.raises(MemoryError, match=match):
        estimator.fit(x, y)
    assert not hasattr(estimator, "coefs_")


def test_a_failed_allocation_of_the_estimators_layers_names_them(monkeypatch):
    def no_memory(*args):
        raise MemoryError("Unable to allocate 3 GiB")

    monkeypatch.setattr(MLPClassifier, "_initialize", no_memory)
    x, y = load_iris(return_X_y=True)
    with pytest.raises(MemoryError, match=r"^hidden_layer_sizes=\(5,\): layer_sizes \[4, 5, 3\] "
                                          r"makes a model of 43 parameters, .*: cannot be "
                                          r"allocated here; use smaller layers$"):
        MLPClassifier(hidden_layer_sizes=(5,)).fit(x, y)


FLOAT32_REFUSED = [
    (dict(solver="sgd", learning_rate_init=1e-45), r"learning_rate_init=1e-45 is too small for "
     r"the model's dtype float32: it would become the subnormal number 1\.401e-45"),
    (dict(solver="adam", learning_rate_init=1e-46), r"learning_rate_init=1e-46 is too small "
     r"for the model's dtype float32: it would become 0"),
    (dict(learning_rate_init=1e39), r"learning_rate_init=1e\+39 is too large for the model's "
     r"dtype float32 \(largest 3\.403e\+38\): it would become inf"),
    (dict(alpha=1e39), r"alpha=1e\+39 is too large for the model's dtype float32"),
    (dict(solver="lbfgs", alpha=1e39), r"alpha=1e\+39 is too large"),
    (dict(epsilon=1e39), r"epsilon=1e\+39 is too large"),
    (dict(beta_1=1 - 1e-9), r"beta_1=0\.999999999 rounds to 1 in the model's dtype float32"),
    (dict(beta_2=1 - 1e-9), r"beta_2=0\.999999999 rounds to 1 .*or fit float64 X \(or set "
     r"dtype='float64'\)"),
]


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("params, message", FLOAT32_REFUSED,
                         ids=["lr-subnormal", "lr-zero", "lr-inf", "alpha-inf", "lbfgs-alpha",
                              "eps-inf", "beta1", "beta2"])
def test_settings_the_compute_dtype_cannot_hold_are_refused_as_the_core_refuses_them(
        backend, cls, params, message):
    """With float32 X (computed in float32) scikit-learn silently trains nothing (a
    learning rate that becomes 0 or subnormal, an epsilon that becomes inf), or fails
    after training ("non-finite parameter weights"): refused before training, with the
    core's message. float64 X computes in float64, where these values are fine."""
    kw = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0, **params)
    y = Y_IRIS if cls is MLPClassifier else X_IRIS[:, 0]
    with pytest.raises(ValueError, match=message):
        cls(**kw, backend=backend).fit(X_IRIS.astype(np.float32), y)
    with pytest.raises(ValueError, match=message):
        cls(**kw, backend=backend, dtype="float32").fit(X_IRIS, y)
    if "learning_rate_init" not in params or params["learning_rate_init"] > 1:
        return
    est = _quiet(cls(**kw, backend=backend).fit, X_IRIS, y)  # float64: a normal number
    assert est.coefs_[0].dtype == np.float64


@pytest.mark.parametrize("params", [dict(alpha=1e-45), dict(epsilon=1e-45),
                                    dict(solver="sgd", momentum=1e-45),
                                    dict(solver="sgd", momentum=1 - 1e-9)],
                         ids=["alpha", "eps", "momentum-tiny", "momentum-near-1"])
def test_tiny_settings_act_as_zero_as_in_scikit_learn(backend, params):
    """Values scikit-learn takes in float32 and trains well with (a tiny alpha, epsilon or
    momentum acts as 0): accepted, with scikit-learn's loss."""
    numpy_only(backend)
    kw = dict(hidden_layer_sizes=(5,), max_iter=10, random_state=0, **params)
    X, y = X_IRIS.astype(np.float32), X_IRIS[:, 0].astype(np.float32)
    ours = _quiet(MLPRegressor(**kw, backend=backend).fit, X, y)
    theirs = _quiet(sk.MLPRegressor(**kw).fit, X, y)
    assert ours.coefs_[0].dtype == np.float32
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-4)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_sample_weights_the_compute_dtype_holds_only_as_subnormals_are_refused(backend, cls):
    """In float32 scikit-learn fails after training on weights of 1e-45 ("non-finite
    parameter weights"); devices that flush subnormals to 0 would give yet other results:
    refused up front, as `mlp.MLP.fit` refuses them. In float64 they are normal numbers."""
    kw = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    y = Y_IRIS if cls is MLPClassifier else X_IRIS[:, 0]
    w = np.ones(len(y))
    w[5] = 1e-45
    w[9] = 1e-46  # 0 in float32
    with pytest.raises(ValueError, match=r"sample_weight has 2 weight\(s\) too small for the "
                                         r"model's dtype float32 \(e\.g\. 1e-45 for sample 5; "
                                         r"the smallest normal float32 number is 1\.175e-38\)"
                                         r".*or fit float64 X"):
        cls(**kw, backend=backend).fit(X_IRIS.astype(np.float32), y, sample_weight=w)
    if cls is MLPClassifier:
        with pytest.raises(ValueError, match=r"sample_weight times class_weight has 150 "
                                             r"weight\(s\) too small"):
            cls(**kw, class_weight={0: 1e-45, 1: 1e-45, 2: 1e-45}, backend=backend).fit(
                X_IRIS.astype(np.float32), y, sample_weight=np.ones(len(y)))
    numpy_only(backend)
    est = _quiet(cls(**kw, backend=backend).fit, X_IRIS, y, sample_weight=w)  # float64
    assert est.coefs_[0].dtype == np.float64


PADDED_ESTIMATORS = {
    "adam-classifier": (MLPClassifier, dict(solver="adam", batch_size=32)),
    "sgd-early-stopping": (MLPClassifier, dict(solver="sgd", batch_size=16, momentum=0.8,
                                               early_stopping=True, n_iter_no_change=2)),
    "lbfgs-classifier": (MLPClassifier, dict(solver="lbfgs")),
    "adam-weighted-regressor": (MLPRegressor, dict(solver="adam", batch_size=13)),
}


@pytest.mark.parametrize("case", list(PADDED_ESTIMATORS))
def test_padded_rows_give_the_unpadded_results(backend, monkeypatch, case):
    """On JAX the estimators pad their rows to `mlp.buckets`' sizes with rows of weight 0
    (training, L-BFGS's objective, the forward pass of predict and of early stopping's
    scores): the weights, loss curve and predictions equal those of the rows as they
    are to 1e-12 in float64 (elsewhere nothing pads)."""
    from mlp.sklearn._base import BaseMLP

    cls, kw = PADDED_ESTIMATORS[case]
    regression = cls is MLPRegressor
    x, y = (X_REG, Y_REG) if regression else (X_IRIS[:137], Y_IRIS[:137])
    weight = np.random.default_rng(3).uniform(0.5, 2.0, size=len(x)) if regression else None

    def fitted(padded):
        with monkeypatch.context() as patch:
            if not padded:
                patch.setattr(BaseMLP, "_pads", lambda self, be: False)
            est = cls(hidden_layer_sizes=(7,), max_iter=12, random_state=0, backend=backend,
                      dtype="float64", **kw)
            _quiet(est.fit, x, y, sample_weight=weight)
            return est, est.predict(x[:23])

    (est, out), (ref, ref_out) = fitted(True), fitted(False)
    for a, b in zip([*est.coefs_, *est.intercepts_], [*ref.coefs_, *ref.intercepts_]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out, dtype=float), np.asarray(ref_out, dtype=float),
                               atol=1e-12)
    np.testing.assert_allclose(getattr(est, "loss_curve_", [est.loss_]),
                               getattr(ref, "loss_curve_", [ref.loss_]), rtol=1e-12)
    assert est.n_iter_ == ref.n_iter_
