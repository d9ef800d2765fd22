"""Bad input and faults (issue 5): clear errors, nothing lost, on every backend.

Every bad input must be rejected up front with a ValueError or TypeError whose
message names the argument and what was expected, and a rejected call must
leave the model exactly as it was. Faults (Ctrl-C, divergence, a crash while
saving, a damaged file) must never leave half-updated weights or a broken file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pickle
import zipfile

import numpy as np
import pytest

import mlp
from mlp.io import ModelFileError
from mlp.optimizers import step_count
from tests._helpers import rewrite_npz

N, F, OUT, CLASSES = 12, 3, 2, 4


# ------------------------------------------------------------------ helpers
def make(backend, sizes=(F, 5, OUT), *, loss="mse", dtype="float32", **kw):
    return mlp.MLP(list(sizes), loss=loss, backend=backend, dtype=dtype, seed=0, **kw)


def regression_data(n=N, f=F, out=OUT, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, f)), rng.normal(size=(n, out))


def class_data(n=N, f=F, classes=CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, f)), np.arange(n) % classes


def trained(backend, **kw):
    """A model whose weights are not the initial ones (as after some training).

    Set rather than trained, so that no test compiles a training loop it does not need.
    """
    model = make(backend, **kw)
    model.set_weights([(W * 0.9 + 0.01 * i, b + 0.02 * (i + 1))
                       for i, (W, b) in enumerate(model.get_weights())])
    return model


def assert_weights_equal(got, want):
    assert len(got) == len(want)
    for (W1, b1), (W2, b2) in zip(got, want, strict=True):
        assert W1.dtype == W2.dtype and b1.dtype == b2.dtype
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


@contextlib.contextmanager
def unchanged(model):
    """Asserts that the block leaves the model's weights and last history as they were."""
    weights, history, state = model.get_weights(), model.history_, model.optimizer_state_
    yield
    assert_weights_equal(model.get_weights(), weights)
    assert model.history_ is history
    assert model.optimizer_state_ is state


def native(backend, array):
    """``array`` as the backend's own array (to test the native-array code path)."""
    return backend.asarray(np.asarray(array))


# ------------------------------------------------------- bad data for fit
def _x(shape):
    return np.random.default_rng(1).normal(size=shape)


# (id, loss, n_outputs, x, y, exception, message fragment); x/y of None mean "the good data"
DATA_CASES = [
    ("x-features", "mse", OUT, _x((N, F + 1)), None, ValueError,
     r"x has 4 features \(columns\), but the model's first layer expects 3"),
    ("x-too-few-features", "mse", OUT, _x((N, 1)), None, ValueError,
     r"x has 1 features .* expects 3"),
    ("rows-differ", "mse", OUT, None, _x((N - 1, OUT)), ValueError,
     r"x and y have different numbers of samples: 12 and 11"),
    ("empty", "mse", OUT, np.zeros((0, F)), np.zeros((0, OUT)), ValueError,
     r"x is empty \(0 samples\)"),
    ("x-1d", "mse", OUT, _x((F,)), None, ValueError,
     r"x must be 2-D \(n_samples, n_features\), got a 1-D array of shape \(3,\).*"
     r"x\.reshape\(1, -1\)"),
    ("x-3d", "mse", OUT, _x((N, F, 1)), None, ValueError,
     r"x must be 2-D \(n_samples, n_features\), got shape \(12, 3, 1\)"),
    ("x-0d", "mse", OUT, np.float64(1.0), None, ValueError, r"x must be 2-D .* shape \(\)"),
    ("x-nan", "mse", OUT, np.where(np.eye(N, F) > 0, np.nan, _x((N, F))), None, ValueError,
     r"x contains 3 NaN or infinite value\(s\)"),
    ("x-inf", "mse", OUT, np.full((N, F), np.inf), None, ValueError,
     r"x contains 36 NaN or infinite"),
    ("y-nan", "mse", OUT, None, np.full((N, OUT), np.nan), ValueError,
     r"y contains 24 NaN or infinite"),
    ("y-inf-labels", "cross_entropy", CLASSES, None, np.r_[np.inf, np.zeros(N - 1)],
     ValueError, r"y contains 1 NaN or infinite"),
    ("x-complex", "mse", OUT, _x((N, F)) + 1j, None, TypeError,
     r"x must hold real numbers, got .*complex"),
    ("y-complex", "mse", OUT, None, _x((N, OUT)) + 0j, TypeError,
     r"y must hold real numbers, got .*complex"),
    ("x-object", "mse", OUT, np.array([[{}] * F] * N, dtype=object), None, TypeError,
     r"x must hold real numbers, got an array of Python objects"),
    ("x-strings", "mse", OUT, np.array([["a"] * F] * N), None, TypeError,
     r"x must hold real numbers, got an array of strings"),
    ("x-none", "mse", OUT, "NONE", None, TypeError, r"x is None; expected an array"),
    ("y-none", "mse", OUT, None, "NONE", TypeError, r"y is None; expected an array"),
    ("x-ragged", "mse", OUT, [[1.0, 2.0, 3.0], [1.0]], None, TypeError,
     r"x must be an array of numbers; cannot turn a list into one"),
    ("labels-too-large", "cross_entropy", CLASSES, None, np.arange(N) % (CLASSES + 1),
     ValueError, r"class labels must be in 0\.\.3 \(the model has 4 outputs\); "
     r"y has labels from 0 to 4"),
    ("labels-negative", "cross_entropy", CLASSES, None, np.arange(N) % CLASSES - 1,
     ValueError, r"class labels must be in 0\.\.3 .* from -1 to 2"),
    ("labels-float", "cross_entropy", CLASSES, None, (np.arange(N) % CLASSES) + 0.5,
     ValueError, r"cross_entropy needs integer class labels 0\.\.3; y has dtype float"),
    ("labels-column", "cross_entropy", CLASSES, None, (np.arange(N) % CLASSES)[:, None],
     ValueError, r"y has shape \(12, 1\); cross_entropy takes integer labels.*y\.ravel\(\)"),
    ("onehot-width", "cross_entropy", CLASSES, None, np.eye(CLASSES + 1)[np.arange(N) % 5],
     ValueError, r"y is one-hot with 5 columns but the model has 4 output classes"),
    ("onehot-not-rows", "cross_entropy", CLASSES, None, np.full((N, CLASSES), 0.5),
     ValueError, r"must be one-hot \(or probability\) rows"),
    ("labels-3d", "cross_entropy", CLASSES, None, np.zeros((N, 1, 1), dtype=int), ValueError,
     r"y must be 1-D or 2-D, got shape \(12, 1, 1\)"),
    ("bce-not-binary", "binary_cross_entropy", OUT, None, np.full((N, OUT), 0.5), ValueError,
     r"binary_cross_entropy needs targets in \{0, 1\}; y has other values"),
    ("bce-labels-2", "binary_cross_entropy", OUT, None, np.full((N, OUT), 2), ValueError,
     r"binary_cross_entropy needs targets in \{0, 1\}"),
    ("bce-width", "binary_cross_entropy", OUT, None, np.zeros((N, OUT + 1)), ValueError,
     r"y has 3 columns but the model's output layer has 2 units"),
    ("mse-width", "mse", OUT, None, _x((N, OUT + 1)), ValueError,
     r"y has 3 columns but the model's output layer has 2 units"),
    ("mse-1d-many-outputs", "mse", OUT, None, _x((N,)), ValueError,
     r"y has shape \(12,\) but the model has 2 outputs; y must be \(n_samples, 2\)"),
    ("mse-y-0d", "mse", OUT, None, np.float64(1.0), ValueError,
     r"y must be 1-D or 2-D, got shape \(\)"),
]


def _good_data(loss, n_out):
    if loss == "cross_entropy":
        return class_data(classes=n_out)
    if loss == "binary_cross_entropy":
        x, _ = regression_data()
        return x, (np.arange(N * n_out).reshape(N, n_out) % 2).astype(float)
    return regression_data(out=n_out)


def _case_data(backend, loss, n_out, x, y, as_native):
    good_x, good_y = _good_data(loss, n_out)
    x = good_x if x is None else (None if isinstance(x, str) else x)
    y = good_y if y is None else (None if isinstance(y, str) else y)
    if as_native:
        x, y = (native(backend, v) if _convertible(v) else v for v in (x, y))
    return x, y


def _convertible(v):
    return isinstance(v, np.ndarray | np.generic) and v.dtype.kind in "biufc" and v.ndim > 0


@pytest.mark.parametrize("as_native", [False, True], ids=["host", "native"])
@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_fit_rejects_bad_data(backend, case, as_native):
    _, loss, n_out, x, y, exc, match = case
    model = trained(backend, sizes=(F, 5, n_out), loss=loss)
    x, y = _case_data(backend, loss, n_out, x, y, as_native)
    with unchanged(model), pytest.raises(exc, match=match):
        model.fit(x, y, epochs=3, learning_rate=0.1)


@pytest.mark.parametrize("method", ["evaluate", "loss", "gradients"])
@pytest.mark.parametrize("case", [c for c in DATA_CASES if c[0] in (
    "x-features", "rows-differ", "empty", "x-1d", "x-nan", "y-nan", "labels-too-large",
    "labels-float", "bce-not-binary", "mse-width", "x-complex")], ids=lambda c: c[0])
def test_other_methods_reject_bad_data(backend, case, method):
    _, loss, n_out, x, y, exc, match = case
    model = trained(backend, sizes=(F, 5, n_out), loss=loss)
    x, y = _case_data(backend, loss, n_out, x, y, False)
    with unchanged(model), pytest.raises(exc, match=match):
        getattr(model, method)(x, y)


@pytest.mark.parametrize("x, exc, match", [
    (_x((N, F + 2)), ValueError, r"x has 5 features .* expects 3"),
    (_x((F,)), ValueError, r"x\.reshape\(1, -1\)"),
    (np.zeros((0, F)), ValueError, r"x is empty"),
    (np.full((N, F), np.nan), ValueError, r"x contains 36 NaN"),
    (np.array([["1"] * F]), TypeError, r"x must hold real numbers"),
    (None, TypeError, r"x is None"),
], ids=["features", "1d", "empty", "nan", "strings", "none"])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_classes"])
def test_predict_rejects_bad_x(backend, x, exc, match, method):
    model = trained(backend, sizes=(F, 5, CLASSES), loss="cross_entropy")
    with unchanged(model), pytest.raises(exc, match=match):
        getattr(model, method)(x)


def test_predict_proba_needs_classifier(backend):
    model = make(backend)
    with pytest.raises(ValueError, match=r"predict_proba needs a classification loss .*'mse'"):
        model.predict_proba(regression_data()[0])


def test_x_overflowing_the_model_dtype(backend):
    """Finite float64 data too large for a float32 model is not silently turned into inf."""
    model = trained(backend)
    x, y = regression_data()
    x[0, 0] = 1e300
    with unchanged(model), pytest.raises(ValueError, match=r"x .*too large for float32"):
        model.fit(x, y, epochs=1)


_OVERFLOW = (r"overflows float32: the inputs are too large for float32 \(largest \|x\| "
             r"3e\+38.*; the weights' largest \|W\| .*\)\. Rescale the inputs \(e\.g\. "
             r"standardize x as for training\), or build the model with dtype='float64'")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow in the forward pass
@pytest.mark.parametrize("loss, n_out, labels", [
    ("cross_entropy", 3, np.array([0, 2])), ("binary_cross_entropy", 1, np.array([[1.0], [0.0]])),
    ("mse", 2, np.ones((2, 2))), ("poisson", 1, np.ones((2, 1)))])
def test_inputs_whose_forward_pass_overflows_are_refused(backend, loss, n_out, labels):
    """x = 3e38 passes the float32 range check, but x @ W overflows: no NaN comes back from
    predict, predict_proba, predict_classes, loss, evaluate or gradients, on any backend;
    a clear error says the inputs are too large for float32. In float64 they are not."""
    model = mlp.MLP([2, 4, n_out], loss=loss, backend=backend, seed=0)
    x = np.array([[3e38, 3e38], [1.0, 2.0]])
    calls = [model.predict, lambda v: model.loss(v, labels), lambda v: model.evaluate(v, labels),
             lambda v: model.gradients(v, labels)]
    if model.is_classifier:
        calls += [model.predict_proba, model.predict_classes]
    for call in calls:
        with unchanged(model), pytest.raises(ValueError, match=_OVERFLOW):
            call(x)
    with pytest.raises(ValueError, match=r"the network's output for 1 of 2 row\(s\) of x "
                                         r"overflows float32"):
        model.predict(x)
    # the row that fits is predicted as it is alone
    assert np.all(np.isfinite(backend.to_numpy(model.predict(x[1:]))))
    wide = mlp.MLP([2, 4, n_out], loss=loss, backend=backend, seed=0, dtype="float64")
    out = backend.to_numpy(wide.predict(x))
    if loss != "poisson":  # (exp of ~1e38 overflows float64 as well)
        assert np.all(np.isfinite(out))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_training_on_inputs_whose_forward_pass_overflows_blames_the_data(backend):
    model = mlp.MLP([2, 4, 3], loss="cross_entropy", backend=backend, seed=0)
    start = model.get_weights()
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r"the loss was already nan: the data's scale \(largest \|x\| "
                             r"3e\+38.*not the learning rate"):
        model.fit(np.array([[3e38, 3e38], [1.0, 2.0]]), np.array([0, 2]), epochs=2)
    assert_weights_equal(model.get_weights(), start)
    # as it was before the fit: no epoch completed
    assert model.epochs_trained_ == 0 and model.history_ is None and model.optimizer_ is None
    # validation data whose metrics overflow would log NaN every epoch: refused up front
    fresh = mlp.MLP([2, 4, 3], loss="cross_entropy", backend=backend, seed=0)
    x, y = np.random.default_rng(0).normal(size=(9, 2)), np.arange(9) % 3
    with unchanged(fresh), pytest.raises(ValueError, match=r"the loss of the validation data "
                                                           r"\(it is nan\) " + _OVERFLOW):
        fresh.fit(x, y, epochs=2, validation_data=(np.full((3, 2), 3e38), np.arange(3)))
    assert fresh.epochs_trained_ == 0


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32", "int64", "uint8", "float16"])
@pytest.mark.parametrize("model_dtype", ["float32", "float64"])
def test_integer_and_bool_x_are_converted(backend, dtype, model_dtype):
    """Bool, integer and half-precision x are cast to the model's dtype, not rejected."""
    model = make(backend, dtype=model_dtype)
    host = (np.arange(N * F).reshape(N, F) % 3 == 0) if dtype == "bool" else (
        np.arange(N * F).reshape(N, F) % 7).astype(dtype)
    want = model.backend.to_numpy(model.predict(host.astype(model_dtype)))
    variants = [host]
    if not (backend.name == "array_api_strict" and dtype == "float16"):  # no float16 there
        variants.append(native(backend, host))
    for x in variants:
        got = model.predict(x)
        assert backend.dtype_name(got.dtype) == model_dtype
        np.testing.assert_array_equal(backend.to_numpy(got), want)
    if dtype not in ("bool", "int64"):
        return
    y = regression_data()[1]
    model.fit(host, y, epochs=1, learning_rate=0.01)  # accepted for training too
    labels = (np.arange(N) % CLASSES).astype("int32")
    clf = make(backend, sizes=(F, 5, CLASSES), loss="cross_entropy", dtype=model_dtype)
    clf.fit(host, labels, epochs=1)
    clf.fit(host, native(backend, labels.astype("uint8")), epochs=1)


def test_validation_data_is_checked(backend):
    model = trained(backend)
    x, y = regression_data()
    with unchanged(model), pytest.raises(ValueError, match=r"x_val has 4 features"):
        model.fit(x, y, epochs=2, validation_data=(_x((5, F + 1)), _x((5, OUT))))
    with unchanged(model), pytest.raises(ValueError, match=r"x_val and y_val have different"):
        model.fit(x, y, epochs=2, validation_data=(_x((5, F)), _x((4, OUT))))
    with unchanged(model), pytest.raises(ValueError, match=r"y_val contains 10 NaN"):
        model.fit(x, y, epochs=2, validation_data=(_x((5, F)), np.full((5, OUT), np.nan)))
    with unchanged(model), pytest.raises(ValueError, match=r"validation_data must be a pair"):
        model.fit(x, y, epochs=2, validation_data=(x, y, y))
    with unchanged(model), pytest.raises(ValueError, match=r"validation_data or validation_split"):
        model.fit(x, y, epochs=2, validation_data=(x, y), validation_split=0.2)
    with unchanged(model), pytest.raises(ValueError, match=r"validation_split=0\.01 leaves 12 "
                                                           r"training and 0 validation"):
        model.fit(x, y, epochs=2, validation_split=0.01)


# ------------------------------------------------------ bad hyperparameters
HYPER_CASES = [
    ("epochs-0", dict(epochs=0), ValueError, r"epochs must be an integer >= 1, got 0"),
    ("epochs-negative", dict(epochs=-3), ValueError, r"epochs must be an integer >= 1, got -3"),
    ("epochs-float", dict(epochs=2.5), TypeError, r"epochs must be an integer >= 1, got 2\.5"),
    ("epochs-none", dict(epochs=None), TypeError, r"epochs must be an integer >= 1, got None"),
    ("epochs-bool", dict(epochs=True), TypeError, r"epochs must be an integer >= 1, got True"),
    ("lr-0", dict(learning_rate=0.0), ValueError,
     r"learning_rate must be a finite number > 0, got 0"),
    ("lr-negative", dict(learning_rate=-0.1), ValueError,
     r"learning_rate must be a finite number > 0, got -0\.1"),
    ("lr-nan", dict(learning_rate=float("nan")), ValueError,
     r"learning_rate must be a finite number > 0, got nan"),
    ("lr-inf", dict(learning_rate=math.inf), ValueError,
     r"learning_rate must be a finite number > 0, got inf"),
    ("lr-string", dict(learning_rate="0.1"), TypeError,
     r"learning_rate must be a positive number or a schedule .*got str"),
    ("lr-numpy-nan", dict(learning_rate=np.float32("nan")), ValueError,
     r"learning_rate must be a finite number > 0, got nan"),
    ("lr-twice", dict(learning_rate=0.1, optimizer=mlp.optimizers.SGD(0.1)), ValueError,
     r"learning_rate was given twice"),
    ("batch-0", dict(batch_size=0), ValueError,
     r"batch_size must be None or an integer >= 1, got 0"),
    ("batch-float", dict(batch_size=4.0), TypeError,
     r"batch_size must be None or an integer >= 1, got 4\.0"),
    ("split-0", dict(validation_split=0.0), ValueError,
     r"validation_split must be None or a finite number in \(0, 1\), got 0\.0"),
    ("split-1", dict(validation_split=1), ValueError,
     r"validation_split must be None or a finite number in \(0, 1\), got 1$"),
    ("split-1.5", dict(validation_split=1.5), ValueError, r"validation_split .* got 1\.5"),
    ("split-negative", dict(validation_split=-0.2), ValueError, r"validation_split .* got -0\.2"),
    ("split-nan", dict(validation_split=float("nan")), ValueError, r"validation_split .* got nan"),
    ("optimizer", dict(optimizer="sgdd"), ValueError,
     r"unknown optimizer 'sgdd'; known: sgd, adam, adamw, rmsprop"),
    ("optimizer-type", dict(optimizer=3), TypeError, r"optimizer must be a name \(sgd, adam"),
    ("alpha", dict(alpha=-1.0), ValueError, r"alpha must be a finite number >= 0, got -1\.0"),
    ("clip", dict(clip_norm=0.0), ValueError,
     r"clip_norm must be None or a finite number > 0, got 0\.0"),
    ("shuffle", dict(shuffle="yes"), TypeError, r"shuffle must be True or False"),
    ("verbose", dict(verbose=5), ValueError, r"verbose must be one of 0, 1, 2, got 5"),
    ("patience", dict(early_stopping=True, patience=0), ValueError,
     r"patience must be an integer >= 1, got 0"),
    ("callbacks", dict(callbacks=[3]), TypeError, r"callbacks must be Callback objects"),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in HYPER_CASES],
                         ids=[c[0] for c in HYPER_CASES])
def test_fit_rejects_bad_hyperparameters(backend, kwargs, exc, match):
    model = trained(backend)
    x, y = regression_data()
    kwargs = {"epochs": 2, **kwargs}
    with unchanged(model), pytest.raises(exc, match=match):
        model.fit(x, y, **kwargs)


def test_numpy_scalar_hyperparameters_are_accepted(backend):
    model = make(backend)
    x, y = regression_data()
    history = model.fit(x, y, epochs=np.int64(2), learning_rate=np.float32(0.01),
                        batch_size=np.int32(5), validation_split=np.float64(0.25))
    assert len(history.history["loss"]) == 2


def test_fit_shows_and_checks_its_keyword_arguments_as_a_function_would():
    """`MLP.fit`'s arguments are `FitSettings`' fields: help and `inspect.signature` show
    them with their defaults, and an unknown or missing one is refused with Python's own
    message, before anything changes."""
    import inspect

    signature = inspect.signature(mlp.MLP.fit)
    assert str(signature) == (
        "(self, x, y=None, *, epochs, learning_rate=None, batch_size=32, shuffle=True, "
        "optimizer=None, reset_optimizer=False, alpha=0.0, clip_norm=None, "
        "validation_data=None, validation_split=None, early_stopping=False, patience=10, "
        "min_delta=0.0, callbacks=None, verbose=0, sample_weight=None, class_weight=None)")
    model = trained("numpy")
    x, y = regression_data()
    assert list(inspect.signature(model.fit).parameters)[:3] == ["x", "y", "epochs"]
    with unchanged(model), pytest.raises(TypeError, match=r"^MLP\.fit\(\) got an unexpected "
                                                          r"keyword argument 'epoch'$"):
        model.fit(x, y, epoch=2)
    with unchanged(model), pytest.raises(TypeError, match=r"^MLP\.fit\(\) missing 1 required "
                                                          r"keyword-only argument: 'epochs'$"):
        model.fit(x, y, batch_size=4)
    with unchanged(model), pytest.raises(TypeError, match=r"takes from 2 to 3 positional "
                                                          r"arguments but 4 were given"):
        model.fit(x, y, 2)


def test_fit_settings_are_checked_when_built():
    """`FitSettings` refuses what fit refuses before it looks at the model, with fit's
    messages, and stores the checked values (an optimizer named becomes the object, NumPy
    numbers Python ones, functions callbacks)."""
    from mlp.fit_settings import FitSettings

    with pytest.raises(ValueError, match=r"epochs must be an integer >= 1, got 0"):
        FitSettings(epochs=0)
    with pytest.raises(ValueError, match=r"validation_data or validation_split, not both"):
        FitSettings(epochs=1, validation_data=([], []), validation_split=0.2)
    settings = FitSettings(epochs=np.int64(3), optimizer="sgd", learning_rate=np.float32(0.5),
                           callbacks=[lambda epoch, logs: None], early_stopping=True,
                           patience=2)
    assert type(settings.epochs) is int and settings.epochs == 3
    assert settings.optimizer == mlp.optimizers.SGD(0.5)
    assert type(settings.learning_rate) is float and settings.learning_rate == 0.5
    assert isinstance(settings.callbacks[0], mlp.callbacks.FunctionCallback)
    assert settings.stopper.patience == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 5


CONSTRUCTOR_CASES = [
    ("activation", dict(activation="relux"), ValueError,
     r"activation must be one of 'relu', 'leaky_relu', 'tanh', 'sigmoid', 'identity', "
     r"got 'relux'"),
    ("activation-softmax", dict(activation="softmax"), ValueError,
     r"activation must be one of 'relu', .*'identity', got 'softmax'"),
    ("activation-type", dict(activation=3), TypeError,
     r"activation must be one of 'relu', .*, got 3"),
    ("output-activation", dict(output_activation="swish"), ValueError,
     r"output_activation must be one of 'relu', .*'softmax' or None, got 'swish'"),
    ("loss", dict(loss="hinge"), ValueError,
     r"loss must be one of 'mse', 'cross_entropy', 'binary_cross_entropy', 'poisson', "
     r"got 'hinge'"),
    ("loss-output", dict(loss="cross_entropy", output_activation="sigmoid"), ValueError,
     r"loss 'cross_entropy' cannot be used with output_activation 'sigmoid'; allowed: softmax"),
    ("cross-entropy-one-output", dict(loss="cross_entropy", layer_sizes=[F, 5, 1]), ValueError,
     r"loss 'cross_entropy' needs at least 2 output units, but layer_sizes ends in 1\. .*"
     r"For one yes/no output use loss='binary_cross_entropy'"),
    ("init", dict(init="xavier"), ValueError,
     r"init must be one of 'he', 'glorot', 'normal' or None, got 'xavier'"),
    ("dtype", dict(dtype="float16"), ValueError,
     r"dtype must be 'float32' or 'float64' \(or np\.float32, np\.float64\), got 'float16'"),
    ("dtype-numpy-int", dict(dtype=np.int32), ValueError, r"dtype must be 'float32' or "),
    ("dtype-object", dict(dtype=[1]), TypeError, r"dtype must be 'float32' or 'float64'"),
    ("seed", dict(seed=-1), ValueError, r"seed must be an integer >= 0 or None, got -1"),
    ("seed-float", dict(seed=1.5), TypeError, r"seed must be an integer >= 0 or None, got 1\.5"),
    ("seed-bool", dict(seed=True), TypeError, r"seed must be an integer >= 0 or None, got True"),
    ("backend-type", dict(backend=3), TypeError,
     r"backend must be a backend name or a Backend or None, got 3"),
    ("layers-one", dict(layer_sizes=[3]), ValueError,
     r"layer_sizes needs at least two entries \(inputs and outputs\).*got \[3\]"),
    ("layers-empty", dict(layer_sizes=[]), ValueError, r"layer_sizes needs at least two entries"),
    ("layers-zero", dict(layer_sizes=[3, 0, 2]), ValueError,
     r"layer_sizes\[1\] must be a positive integer, got 0"),
    ("layers-negative", dict(layer_sizes=[3, 4, -2]), ValueError,
     r"layer_sizes\[2\] must be a positive integer, got -2"),
    ("layers-float", dict(layer_sizes=[3, 4.5, 2]), ValueError,
     r"layer_sizes\[1\] must be a positive integer, got 4\.5"),
    ("layers-int", dict(layer_sizes=5), TypeError,
     r"layer_sizes must be a sequence of integers such as \[n_features, 64, n_outputs\]"),
    ("layers-set", dict(layer_sizes={3, 4, 1}), TypeError,
     r"layer_sizes must be an ordered sequence .*a set has no order"),
    ("layers-dict", dict(layer_sizes={3: 1, 4: 2}), TypeError, r"a dict has no order"),
    ("layers-generator", dict(layer_sizes=(s for s in (3, 4, 1))), TypeError,
     r"layer_sizes must be a sequence of integers .*got generator"),
    ("layers-str", dict(layer_sizes="341"), TypeError, r"layer_sizes must be a sequence"),
    ("layers-bool", dict(layer_sizes=[3, True, 2]), ValueError,
     r"layer_sizes\[1\] must be a positive integer, got True"),
]


@pytest.mark.parametrize("kwargs, exc, match", [c[1:] for c in CONSTRUCTOR_CASES],
                         ids=[c[0] for c in CONSTRUCTOR_CASES])
def test_constructor_rejects_bad_arguments(backend, kwargs, exc, match):
    kwargs = {"layer_sizes": [F, 5, OUT], "backend": backend, **kwargs}
    with pytest.raises(exc, match=match):
        mlp.MLP(kwargs.pop("layer_sizes"), **kwargs)


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'numpyy'; known backends: numpy, jax"):
        mlp.MLP([F, OUT], backend="numpyy")


# ------------------------------------------------------- foreign arrays
def _library_array(lib, host):
    if lib == "numpy":
        return host
    if lib == "torch":
        torch = pytest.importorskip("torch")
        return torch.as_tensor(host)
    if lib == "torch-grad":
        torch = pytest.importorskip("torch")
        return torch.tensor(host, requires_grad=True)
    if lib == "jax":
        pytest.importorskip("jax")
        import jax.numpy as jnp
        return jnp.asarray(host)
    if lib == "strict":
        xp = pytest.importorskip("array_api_strict")
        return xp.asarray(host)
    if lib == "list":
        return host.tolist()
    raise AssertionError(lib)


@pytest.mark.parametrize("lib", ["numpy", "list", "torch", "torch-grad", "jax", "strict"])
def test_foreign_arrays_are_converted(backend, lib):
    """A CPU array of another library gives the same predictions and training as NumPy data."""
    x, y = regression_data()
    x32, y32 = x.astype("float32"), y.astype("float32")
    model = make(backend)
    want = backend.to_numpy(model.predict(x32))
    got = model.predict(_library_array(lib, x32))
    assert backend.is_native(got)
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-6, atol=1e-6)

    a, b = make(backend), make(backend)
    a.fit(x32, y32, epochs=2, learning_rate=0.1)
    b.fit(_library_array(lib, x32), _library_array(lib, y32), epochs=2, learning_rate=0.1)
    for (W1, b1), (W2, b2) in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(W1, W2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b1, b2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lib", ["torch", "jax", "strict"])
def test_foreign_labels_are_converted(backend, lib):
    x, labels = class_data()
    model = make(backend, sizes=(F, 5, CLASSES), loss="cross_entropy")
    want = model.evaluate(x, labels)
    assert model.evaluate(x, _library_array(lib, labels.astype("int32"))) == pytest.approx(want)
    with pytest.raises(ValueError, match=r"class labels must be in 0\.\.3"):
        model.evaluate(x, _library_array(lib, (labels + 1).astype("int32")))


class _FakeCupyArray:
    """Stands in for a cupy.ndarray (which cannot exist on a machine without a GPU)."""

    __module__ = "cupy._core.core"
    shape, ndim, dtype = (N, F), 2, np.dtype("float32")

    def __array__(self, *a, **k):  # CuPy refuses implicit host copies
        raise TypeError("Implicit conversion to a NumPy array is not allowed.")


class _FakeCudaTensor:
    __module__ = "torch"

    class device:  # noqa: N801 - mimics torch.device
        type = "cuda"

        def __str__(self):
            return "cuda:0"

    device = device()


class _FakeGpuJaxArray:
    __module__ = "jaxlib.xla_extension"

    class _Dev:
        platform = "gpu"

    def devices(self):
        return {self._Dev()}


@pytest.mark.parametrize("fake, match", [
    (_FakeCupyArray(), r"x is a CuPy array \(on the GPU\), but this model is on the '{b}' "
                       r"backend.*x\.get\(\).*backend='cupy'"),
    (_FakeCudaTensor(), r"x is a torch tensor on cuda:0, but this model is on the '{b}' "
                        r"backend.*x\.cpu\(\).*backend='torch'"),
    (_FakeGpuJaxArray(), r"x is a JAX array on gpu, but this model is on the '{b}' backend"
                         r".*backend='jax'"),
], ids=["cupy", "torch-cuda", "jax-gpu"])
def test_gpu_arrays_of_another_library_get_a_clear_error(backend, fake, match):
    model = trained(backend)
    if backend.is_native(fake):  # pragma: no cover - only with the real library on a GPU
        pytest.skip("native to this backend")
    with unchanged(model), pytest.raises(TypeError, match=match.format(b=backend.name)):
        model.fit(fake, regression_data()[1], epochs=1)
    with pytest.raises(TypeError, match=match.replace("x ", "y ", 1).replace(
            r"x\.", r"y\.").format(b=backend.name)):
        model.fit(regression_data()[0], fake, epochs=1)


def test_unconvertible_object(backend):
    model = make(backend)
    with pytest.raises(TypeError, match=r"x must hold real numbers, got an array of Python "
                                        r"objects"):
        model.predict(object())


# ----------------------------------------------------------- interruption
class _InterruptAt:
    """A callback that presses Ctrl-C at the end of epoch ``at``."""

    def __init__(self, at):
        self.at = at

    def __call__(self, epoch, logs):
        if epoch == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("batch_size", [None, 5])
def test_keyboard_interrupt_keeps_the_last_completed_epoch(backend, batch_size):
    x, y = regression_data()
    reference = make(backend)
    reference.fit(x, y, epochs=3, learning_rate=0.05, batch_size=batch_size)
    model = make(backend)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=10, learning_rate=0.05, batch_size=batch_size,
                  callbacks=[_InterruptAt(2)])
    assert_weights_equal(model.get_weights(), reference.get_weights())
    assert model.history_.epoch == [0, 1, 2]
    # still usable: predicts, evaluates and trains on
    assert np.all(np.isfinite(backend.to_numpy(model.predict(x))))
    history = model.fit(x, y, epochs=2, learning_rate=0.05)
    assert history.epoch == [3, 4] and model.history_.epoch == [0, 1, 2, 3, 4]


class _InterruptingSGD:
    """An SGD whose ``update`` raises KeyboardInterrupt on its ``at``-th call (mid-epoch)."""

    def __init__(self, at):
        self.inner, self.calls, self.at = mlp.optimizers.SGD(0.05), 0, at
        self.learning_rate = 0.05

    def init(self, params):
        return self.inner.init(params)

    def update(self, grads, state, params):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.update(grads, state, params)


@pytest.mark.parametrize("with_callback", [True, False])
def test_keyboard_interrupt_mid_epoch_is_never_half_applied(backend, with_callback):
    """Ctrl-C in the middle of the third epoch leaves the weights after the second."""
    if backend.compiles:
        pytest.skip("the step is compiled: Python code in it runs once, at tracing")
    x, y = regression_data()
    reference = make(backend)
    reference.fit(x, y, epochs=2, learning_rate=0.05, batch_size=4, shuffle=False,
                  optimizer="sgd")
    model = make(backend)
    # 3 steps per epoch: the 8th update is the middle of the third epoch
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=5, optimizer=_InterruptingSGD(8), batch_size=4, shuffle=False,
                  callbacks=[lambda epoch, logs: None] if with_callback else None)
    assert_weights_equal(model.get_weights(), reference.get_weights())
    assert model.history_.epoch == [0, 1]
    # the completed epochs keep their training scores too (the data's totals joined)
    assert list(model.history_.history) == ["loss", "r2", "mse"]
    for name, values in reference.history_.history.items():
        np.testing.assert_allclose(model.history_.history[name], values, rtol=1e-6)



@pytest.mark.parametrize("per_epoch", [False, True], ids=["histories-only", "callbacks"])
def test_ctrl_c_at_any_line_of_taking_an_epoch_leaves_a_consistent_model(backend, per_epoch):
    """Ctrl-C at every line of `Trainer.keep` (and what it calls: `commit`, the histories,
    the callbacks' on_epoch_end) and of `run_chunk`: the weights, the optimizer's state,
    the epoch count, the history and the training state always agree, at the end of the
    same epoch (none completed: the model as before the fit)."""
    import sys

    from mlp.callbacks import CallbackList, History
    from mlp.training import Trainer
    from tests._helpers import InterruptAtLine

    val = regression_data(seed=1) if per_epoch else None
    weights = _per_epoch_weights(backend, 3, validation_data=val)
    codes = {f.__code__ for f in (Trainer.keep, Trainer.commit, Trainer.run_chunk,
                                  Trainer.rewind, History.append, History.append_epochs,
                                  History._add_metrics, History.on_epochs_end,
                                  History.drop_epochs_from, CallbackList.on_epoch_end,
                                  CallbackList.on_epochs_end, CallbackList._end)}
    kept, k = set(), 0
    while True:
        k += 1
        model = make(backend)
        before = _whole_state(model)
        sys.settrace(InterruptAtLine(k, codes))
        try:
            model.fit(*regression_data(), epochs=3, batch_size=5, optimizer="sgd",
                      validation_data=val,
                      callbacks=[lambda e, logs: None] if per_epoch else None)
        except KeyboardInterrupt:
            pass
        else:
            break  # no line left to interrupt at
        finally:
            sys.settrace(None)
        epochs = model.epochs_trained_
        kept.add(epochs)
        if epochs == 0:
            _assert_same_state(model, before)
        else:
            _assert_consistent(model, weights, epochs)
    assert_weights_equal(model.get_weights(), weights[3])
    assert {0, 1, 2} <= kept if per_epoch else {0} <= kept


# -------------------------------------------------------------- divergence
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in the diverging math
@pytest.mark.parametrize("batch_size", [None, 4])
@pytest.mark.parametrize("with_callback", [False, True])
@pytest.mark.parametrize("learning_rate", [1e6, 1e38], ids=["loss-overflows", "weights-overflow"])
def test_divergence_restores_finite_weights(backend, batch_size, with_callback, learning_rate):
    """1e6: the loss overflows first; 1e38: the first step already makes the weights inf."""
    x, y = regression_data()
    y = y * 100
    model = make(backend, sizes=(F, 8, OUT), activation="identity")
    callbacks = [lambda epoch, logs: None] if with_callback else None
    # (with a callback, weights that became inf are caught as their epoch ends: callbacks
    # never see them)
    with pytest.raises(mlp.TrainingDivergedError, match=r"training diverged: the (loss|weights) "
                       r"became (nan|inf|NaN or infinite) in epoch \d+ .*learning rate "
                       r"(1000000\.0|1e\+38) may be too large.*restored") as info:
        model.fit(x, y, epochs=200, learning_rate=learning_rate, batch_size=batch_size,
                  callbacks=callbacks, optimizer="sgd")
    assert isinstance(info.value, FloatingPointError)
    for W, b in model.get_weights():
        assert np.all(np.isfinite(W)) and np.all(np.isfinite(b))
    losses = info.value.history.history.get("loss", [])
    assert all(math.isfinite(v) for v in losses)
    assert info.value.history.epoch == list(range(len(losses)))
    assert len(losses) < 200
    # the history, the epoch count and the optimizer's step count agree with the weights
    # (no epoch kept: the model is as it was before the fit, with no history nor optimizer)
    kept = [] if model.history_ is None else model.history_.epoch
    assert model.epochs_trained_ == len(losses) == len(kept)
    if not losses:
        assert model.optimizer_ is None and model.optimizer_state_ is None
    else:
        assert step_count(model.optimizer_state_) == len(losses) * (
            1 if batch_size is None else -(-N // batch_size))
    if batch_size is None and learning_rate == 1e6:  # epoch 0's loss and end weights are
        assert len(losses) >= 1                       # finite (1e38: its end weights are inf)
    assert tuple(model.predict(x).shape) == (N, OUT)  # still usable (if huge)


# ------------------------------------------------------------------ saving
def test_save_is_atomic(backend, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = trained(backend)
    old.save(path)
    content = path.read_bytes()
    new = make(backend, sizes=(F, 7, OUT))

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_weights_equal(mlp.load(path, backend=backend).get_weights(), old.get_weights())


def test_interrupted_save_leaves_no_temp_file(backend, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        make(backend).save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_save_to_a_missing_folder(backend, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot save to .*nowhere.*does not exist"):
        make(backend).save(tmp_path / "nowhere" / "model.npz")


@pytest.mark.parametrize("flag", ["yes", 1, 0, None, np.array(True), "False"])
def test_include_optimizer_is_a_boolean_not_a_truth_value(backend, tmp_path, flag):
    model = make(backend)
    model.fit(*regression_data(), epochs=1)
    with pytest.raises(TypeError, match=r"include_optimizer must be True or False, got "):
        model.save(tmp_path / "m.npz", include_optimizer=flag)
    assert not (tmp_path / "m.npz").exists() and os.listdir(tmp_path) == []
    model.save(tmp_path / "m.npz", include_optimizer=np.True_)
    assert mlp.load(tmp_path / "m.npz").epochs_trained_ == model.epochs_trained_


@pytest.mark.parametrize("path", [3, None, 2.5, True, ["m.npz"]])
def test_load_names_its_argument_when_it_is_no_path(path):
    with pytest.raises(TypeError, match=r"^load needs the path of a model file \(str or "
                                        r"os\.PathLike\), got "):
        mlp.load(path)


def test_summary_and_plot_name_an_argument_of_the_wrong_kind(capsys):
    model = make("numpy")
    with pytest.raises(TypeError, match=r"print_fn must be a function that takes the text "
                                        r"\(e\.g\. print or a list's append\) or None, got "
                                        r"str 'stdout'"):
        model.summary(print_fn="stdout")
    assert capsys.readouterr().out == ""
    x, y = regression_data()
    history = model.fit(x, y, epochs=1)
    pytest.importorskip("matplotlib")
    with pytest.raises(TypeError, match=r"History\.plot's path must be a file name \(str or "
                                        r"os\.PathLike\) or None, got int 3"):
        history.plot(path=3)


# ----------------------------------------------------------------- loading
def _good_file(tmp_path, backend):
    path = tmp_path / "good.npz"
    trained(backend).save(path)
    return path


def test_load_missing_file(tmp_path):
    path = tmp_path / "missing.npz"
    with pytest.raises(FileNotFoundError, match=r"no model file at .*missing\.npz"):
        mlp.load(path)


def test_load_folder(tmp_path):
    with pytest.raises(ModelFileError, match=r"is a folder, not a model file"):
        mlp.load(tmp_path)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_load_truncated_file(backend, tmp_path, keep):
    good = _good_file(tmp_path, backend)
    data = good.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[:int(len(data) * keep)])
    match = (r"truncated\.npz' is empty" if keep == 0 else
             r"truncated\.npz' is not a complete mlp model file: .*truncated or corrupted")
    with pytest.raises(ModelFileError, match=match):
        mlp.load(bad, backend=backend)


def test_load_corrupted_file(backend, tmp_path):
    good = _good_file(tmp_path, backend)
    data = bytearray(good.read_bytes())
    # flip bytes inside the stored arrays (the zip's CRC check must catch it)
    for i in range(len(data) // 3, len(data) // 3 + 40):
        data[i] ^= 0xFF
    bad = tmp_path / "corrupted.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"corrupted\.npz'"):
        mlp.load(bad, backend=backend)


@pytest.mark.parametrize("content, match", [
    (b"this is not a model\n" * 10, r"garbage\.npz' is not an mlp model file \(not an \.npz"),
    (b"\x00" * 100, r"garbage\.npz' is not an mlp model file"),
    (b"{\"layer_sizes\": [3, 2]}", r"garbage\.npz' is not an mlp model file"),
])
def test_load_garbage_file(tmp_path, content, match):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError, match=match):
        mlp.load(bad)


def test_load_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(3), bias=np.zeros(2))
    with pytest.raises(ModelFileError, match=r"foreign\.npz' is an \.npz file but not an mlp "
                                             r"model \(it holds \['bias', 'weights'\]\)"):
        mlp.load(path)


def test_load_plain_npy(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.ones((3, 2)))
    with pytest.raises(ModelFileError, match=r"array\.npy' is a single NumPy array \(\.npy\), "
                                             r"not an mlp model"):
        mlp.load(path)


class _Exploit:
    """Unpickling this would create ``marker`` (if pickle were ever used)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ModelFileError, match=r"raw\.pkl' is not an mlp model file"):
        mlp.load(raw)
    npy = tmp_path / "object.npy"
    np.save(npy, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match=r"object\.npy'"):
        mlp.load(npy)
    npz = tmp_path / "object.npz"
    mlp.MLP([F, OUT], seed=0).save(npz)
    with zipfile.ZipFile(npz) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    with zipfile.ZipFile(npz, "w") as zf:  # a real model file whose W0 is a pickled object
        for name, blob in entries.items():
            if name == "W0.npy":
                with zf.open(name, "w") as fh:
                    np.save(fh, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
            else:
                zf.writestr(name, blob)
    with pytest.raises(ModelFileError, match=r"object\.npz' cannot be read safely: it holds "
                                             r"Python objects, which only pickle could load"):
        mlp.load(npz)
    assert not marker.exists()


@pytest.mark.parametrize("changes, match", [
    (dict(W0=np.ones((2, 2))), r"holds a damaged mlp model: layer 0 expects W of shape \(3, 5\)"),
    (dict(b1=None), r"holds a damaged mlp model: .*b1"),
    (dict(W0=np.full((F, 5), np.nan)), r"holds a damaged mlp model: weights of layer 0 contain"),
    (dict(config=np.asarray("{not json")), r"holds a damaged mlp model"),
    (dict(config=np.asarray('{"layer_sizes": [3, 5, 2]}')), r"holds a damaged mlp model"),
    (dict(config=np.asarray('{"layer_sizes": [3, 5, 2], "activation": "evil", '
                            '"output_activation": null, "loss": "mse", "init": "he", '
                            '"dtype": "float32", "seed": 0}')),
     r"holds a model with activation 'evil', which is not registered in this process: "
     r"call mlp\.register_activation"),
    (dict(mlp_format=np.asarray(99)), r"was written by a newer mlp \(format 99"),
    (dict(mlp_format=np.asarray("one")), r"damaged mlp model|format"),
    (dict(optimizer=np.asarray('{"name": "nope", "fields": {}}'),
          optimizer_state=np.asarray("null")), r"holds a damaged mlp model: .*optimizer"),
    (dict(optimizer=np.asarray('{"name": "sgd", "fields": {"learning_rate": '
                               '{"schedule": "array_namespace"}}}'),
          optimizer_state=np.asarray("null")), r"holds a damaged mlp model: .*schedule"),
], ids=["shape", "missing-array", "nan", "bad-json", "missing-keys", "bad-activation",
        "newer-format", "bad-format", "bad-optimizer", "bad-schedule"])
def test_load_damaged_model(tmp_path, changes, match):
    path = tmp_path / "model.npz"
    mlp.MLP([F, 5, OUT], seed=0).save(path)
    rewrite_npz(path, **changes)
    with pytest.raises(ModelFileError, match=r"model\.npz' " + match):
        mlp.load(path)


# ------------------------------------------------------------- set_weights
def test_set_weights_checks_the_architecture(backend):
    model = trained(backend)
    good = model.get_weights()
    (W0, b0), (W1, b1) = good
    cases = [
        (good[:1], ValueError, r"set_weights needs a list of 2 \(W, b\) pairs, got list of "
                               r"length 1"),
        (good + good[:1], ValueError, r"needs a list of 2 \(W, b\) pairs, got list of length 3"),
        (W0, ValueError, r"needs a list of 2 \(W, b\) pairs, got ndarray"),
        ({"W0": W0}, ValueError, r"needs a list of 2 \(W, b\) pairs, got dict"),
        ([(W0,), (W1, b1)], ValueError, r"weights\[0\] must be a pair \(W, b\)"),
        ([(W0.T, b0), (W1, b1)], ValueError,
         r"layer 0 expects W of shape \(3, 5\) and b of shape \(5,\), got \(5, 3\) and \(5,\)"),
        ([(W0, b0), (W1, b1[:1])], ValueError,
         r"layer 1 expects W of shape \(5, 2\) and b of shape \(2,\), got \(5, 2\) and \(1,\)"),
        ([(W0, b0[:, None]), (W1, b1)], ValueError, r"b of shape \(5,\), got .* and \(5, 1\)"),
        ([(np.full_like(W0, np.nan), b0), (W1, b1)], ValueError,
         r"weights of layer 0 contain NaN or infinite values"),
        ([(W0, b0), (W1, np.full_like(b1, np.inf))], ValueError,
         r"weights of layer 1 contain NaN or infinite values"),
        ([(W0 + 0j, b0), (W1, b1)], TypeError, r"weights\[0\]\[0\] \(W\) must hold real numbers"),
        ([(W0, b0.astype(str)), (W1, b1)], TypeError,
         r"weights\[0\]\[1\] \(b\) must hold real numbers"),
        ([(W0, b0), ([[1.0], [1.0, 2.0]], b1)], TypeError, r"weights\[1\]\[0\] \(W\)"),
        ([(W0, b0), (W1, None)], TypeError, r"weights\[1\]\[1\] \(b\)"),
    ]
    if model.dtype_name == "float32":
        cases.append(([(W0.astype("float64") * 1e300, b0), (W1, b1)], ValueError,
                      r"weights\[0\]\[0\] \(W\) has values too large for float32"))
    for weights, exc, match in cases:
        with unchanged(model), pytest.raises(exc, match=match):
            model.set_weights(weights)


def test_set_weights_accepts_and_copies(backend):
    model = make(backend)
    weights = [(np.ones((F, 5), "float32"), np.zeros(5, "float32")),
               (np.ones((5, OUT), "float32"), np.zeros(OUT, "float32"))]
    model.set_weights(weights)
    weights[0][0][...] = 7.0  # the caller's arrays stay theirs
    assert np.all(model.get_weights()[0][0] == 1.0)
    # integer, float64, list and backend arrays are cast to the model's dtype
    model.set_weights([(np.ones((F, 5), int), [0.0] * 5),
                       (native(backend, np.ones((5, OUT))), np.zeros(OUT))])
    for W, b in model.get_weights():
        assert W.dtype == np.float32 and b.dtype == np.float32


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_float64_model_that_overflows_is_not_advised_float64(backend):
    """The advice to build the model with dtype='float64' goes to the narrower dtypes only:
    a float64 model whose forward pass or training overflows is told to rescale."""
    model = mlp.MLP([2, 4, 3], loss="cross_entropy", backend=backend, seed=0, dtype="float64")
    x, labels = np.array([[1e308, 1e308], [1.0, 2.0]]), np.array([0, 2])
    with pytest.raises(ValueError, match=r"overflows float64: the inputs are too large for "
                                         r"float64 .*Rescale the inputs \(e\.g\. standardize x "
                                         r"as for training\)$"):
        model.gradients(x, labels)
    with pytest.raises(mlp.TrainingDivergedError,
                       match=r"overflow float64, not the learning rate\. Rescale x and y \(e\.g\. "
                             r"standardize them\) or start from fresh weights;") as info:
        model.fit(x, labels, epochs=2)
    assert "dtype='float64'" not in str(info.value)
    narrow = mlp.MLP([2, 4, 3], loss="cross_entropy", backend=backend, seed=0)
    with pytest.raises(mlp.TrainingDivergedError, match=r"or start from fresh weights, or build "
                                                       r"the model with dtype='float64'"):
        narrow.fit(np.array([[3e38, 3e38], [1.0, 2.0]]), labels, epochs=2)


# ------------------------------------------------- a failed fit loses nothing
def _whole_state(model):
    """Everything a fit may change, as comparable values (objects by identity)."""
    history = model.history_
    return {"weights": model.get_weights(), "optimizer": id(model.optimizer_),
            "opt_state": id(model.optimizer_state_), "train_state": id(model.train_state_),
            "epochs": model.epochs_trained_, "history": id(history),
            "history_epochs": None if history is None else list(history.epoch),
            "history_values": None if history is None else {
                k: list(v) for k, v in history.history.items()},
            "history_params": None if history is None else id(history.params),
            "rng": model._shuffle_rng.bit_generator.state, "seed": model.seed,
            "stop": model.stop_training}


def _assert_same_state(model, before):
    after = _whole_state(model)
    assert_weights_equal(after.pop("weights"), before["weights"])
    assert after == {k: v for k, v in before.items() if k != "weights"}


def test_restore_state_puts_every_part_back_together(backend):
    """`MLP.restore_state` of a `snapshot_state` taken before two more epochs puts the
    weights, the optimizer's state, the epoch count, the history (the same objects,
    refilled), the shuffle stream, the seed and the training state back as they were; a
    fit from there ends where the first continuation ended."""
    model = make(backend)
    x, y = regression_data()
    model.fit(x, y, epochs=2, batch_size=5)
    before, snapshot = _whole_state(model), model.snapshot_state()
    train = model.train_state_
    model.fit(x, y, epochs=2, batch_size=5)
    after = model.get_weights()
    assert model.epochs_trained_ == 4 and model.train_state_ is not train
    model.restore_state(snapshot)
    _assert_same_state(model, before)
    assert model.train_state_.epoch == 2 and model.train_state_.params is model.params
    model.fit(x, y, epochs=2, batch_size=5)
    assert_weights_equal(model.get_weights(), after)


@pytest.mark.parametrize("part, value, match", [
    ("params", [], r"the weights are a list of 0 items where the model has 2 \(W, b\) pairs"),
    ("epochs_trained", -1, r"the epoch count -1 is not a count"),
    ("epochs_trained", 1, r"the history has 2 epochs, more than the 1"),
    ("optimizer", "adam", r"the optimizer str is not an optimizer"),
    ("shuffle_state", {"bit_generator": "PCG64"}, r"the shuffle stream's state is not one"),
    ("seed", -2, r"the seed -2 is not an integer >= 0"),
], ids=["params", "epochs-negative", "epochs-below-history", "optimizer", "shuffle", "seed"])
def test_restore_state_checks_everything_before_changing_anything(backend, part, value,
                                                                  match):
    """A state with one bad part is refused with a message naming it; nothing of the
    model changes (not even the parts that were sound)."""
    model = make(backend)
    x, y = regression_data()
    model.fit(x, y, epochs=2, batch_size=5)
    sound = model.snapshot_state()
    model.fit(x, y, epochs=1, batch_size=5)
    before = _whole_state(model)
    bad = dataclasses.replace(sound, **{part: value})
    with pytest.raises(ValueError, match=r"^restore_state: " + match):
        model.restore_state(bad)
    _assert_same_state(model, before)
    with pytest.raises(ValueError, match=r"a ModelState \(from snapshot_state\) is needed"):
        model.restore_state({"params": model.params})
    _assert_same_state(model, before)


def test_restore_state_without_a_history_leaves_the_model_without_one(backend):
    """A state whose history is None takes the model's history away, whatever record of
    a history it carries: the restore completes, and the history object the model had
    keeps its contents (the record is not put back into it)."""
    model = make(backend)
    x, y = regression_data()
    model.fit(x, y, epochs=2, batch_size=5)
    snapshot = model.snapshot_state()
    model.fit(x, y, epochs=1, batch_size=5)
    history = model.history_
    kept = (list(history.epoch), {k: list(v) for k, v in history.history.items()})
    model.restore_state(dataclasses.replace(snapshot, history=None))
    assert model.history_ is None and model.epochs_trained_ == 2
    to = model.backend.to_numpy
    assert_weights_equal(model.get_weights(), [(to(W), to(b)) for W, b in snapshot.params])
    assert (list(history.epoch), {k: list(v) for k, v in history.history.items()}) == kept
    assert kept[0] == [0, 1, 2]


def _adam_trained(backend):
    """A model trained 2 epochs with Adam, its learning rate scale reduced."""
    model = make(backend)
    model.fit(*regression_data(), epochs=2, batch_size=5,
              callbacks=[mlp.ReduceLROnPlateau("loss", patience=1, min_delta=10.0)])
    assert mlp.optimizers.learning_rate_scale(model.optimizer_state_) < 1
    return model


class _Raising(mlp.Callback):
    """A callback that raises ``error`` in ``hook`` (for the epoch hooks: at epoch ``at``, or
    at the first epoch it sees with ``at=None``)."""

    def __init__(self, hook, error=RuntimeError, at=0):
        self.hook, self.error, self.at = hook, error, at
        self.ended, self.seen = False, []

    def _maybe(self, hook, epoch=None):
        if hook == self.hook and (self.at is None or epoch in (None, self.at)):
            raise self.error(f"{hook} failed")

    def on_train_begin(self, logs=None):
        self._maybe("on_train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self._maybe("on_epoch_begin", epoch)

    def on_epoch_end(self, epoch, logs):
        self.seen.append(epoch)
        self._maybe("on_epoch_end", epoch)

    def on_train_end(self, logs=None):
        self.ended = True
        self._maybe("on_train_end")


def _raising_update(g, s, p=None):
    raise RuntimeError("update failed")


FIRST_EPOCH_FAILURES = {
    "update-raises": lambda: dict(optimizer=mlp.optimizers.GradientTransformation(
        lambda p: (), _raising_update)),
    "update-returns-None": lambda: dict(optimizer=mlp.optimizers.GradientTransformation(
        lambda p: (), lambda g, s, p=None: None)),
    "chain-of-own": lambda: dict(optimizer=mlp.optimizers.chain(
        mlp.optimizers.GradientTransformation(lambda p: (), _raising_update),
        mlp.optimizers.scale_by_learning_rate(0.1))),
    "on_train_begin": lambda: dict(callbacks=[_Raising("on_train_begin")]),
    "on_epoch_begin": lambda: dict(callbacks=[_Raising("on_epoch_begin", at=None)]),
    "ctrl-c-on_epoch_begin": lambda: dict(callbacks=[_Raising("on_epoch_begin",
                                                               KeyboardInterrupt, None)]),
    "schedule-fails": lambda: dict(optimizer=mlp.optimizers.SGD(
        lambda step: 1 / 0)),
    "init-raises": lambda: dict(optimizer=mlp.optimizers.GradientTransformation(
        lambda p: 1 / 0, _raising_update)),
    "diverges": lambda: dict(optimizer="sgd", learning_rate=1e38, batch_size=None),
}


@pytest.mark.parametrize("case", list(FIRST_EPOCH_FAILURES))
@pytest.mark.parametrize("untrained", [False, True], ids=["trained", "untrained"])
def test_a_fit_failing_before_its_first_epoch_completes_leaves_the_model_as_it_was(
        backend, case, untrained):
    """The optimizer, its state (the learning-rate scale included), the training state,
    the history (the same object and lists), the epoch count, the weights, the shuffle
    stream: all as before the call, whatever fails before an epoch completes."""
    model = make(backend) if untrained else _adam_trained(backend)
    before = _whole_state(model)
    with pytest.raises((Exception, KeyboardInterrupt)), np.errstate(all="ignore"):
        model.fit(*regression_data(), **{"epochs": 3, "batch_size": 5,
                                         **FIRST_EPOCH_FAILURES[case]()})
    _assert_same_state(model, before)
    model.fit(*regression_data(), epochs=1, batch_size=5)  # and it trains on
    assert model.epochs_trained_ == (1 if untrained else 3)


def _per_epoch_weights(backend, epochs, **kw):
    """The weights after each of ``epochs`` epochs of an undisturbed fit (index: epochs)."""
    model = make(backend)
    weights = [model.get_weights()]
    model.fit(*regression_data(), epochs=epochs, batch_size=5, optimizer="sgd",
              callbacks=[lambda e, logs: weights.append(model.get_weights())], **kw)
    return weights


def _assert_consistent(model, weights, epochs):
    """The model is at the end of epoch ``epochs - 1``: weights, count, history, training
    state and the optimizer's step count (3 steps an epoch) agree."""
    state = model.train_state_
    assert model.epochs_trained_ == state.epoch == epochs
    assert model.history_.epoch == list(range(epochs))
    assert all(len(v) == epochs for v in model.history_.history.values())
    assert state.params is model.params and state.opt_state is model.optimizer_state_
    assert step_count(model.optimizer_state_) == 3 * epochs
    assert_weights_equal(model.get_weights(), weights[epochs])


def test_a_failing_validation_keeps_the_epochs_completed_before(backend, monkeypatch):
    """An error computing epoch 2's validation metrics: the model stays at epoch 1's end
    (its weights were never taken without their epoch)."""
    x, y = regression_data()
    val = regression_data(seed=1)
    weights = _per_epoch_weights(backend, 3, validation_data=val)
    model = make(backend)
    real, calls = mlp.MLP.validation_logs, []

    def failing(self, *args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("validation failed")
        return real(self, *args, **kw)

    monkeypatch.setattr(mlp.MLP, "validation_logs", failing)
    with pytest.raises(MemoryError):
        model.fit(x, y, epochs=3, batch_size=5, optimizer="sgd", validation_data=val)
    _assert_consistent(model, weights, 2)
    assert "val_loss" in model.history_.history


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_callback_raising_at_an_epochs_end_keeps_that_epoch(backend, error):
    """The epoch completed (the model took it, the callbacks are told of it): a callback
    raising in its on_epoch_end keeps it, as Ctrl-C there does; the callbacks after it see
    the epoch too (not after Ctrl-C, which stops at once), and every callback's
    on_train_end runs."""
    weights = _per_epoch_weights(backend, 3)
    model = make(backend)
    raising, after = _Raising("on_epoch_end", error, at=1), _Raising("never")
    with pytest.raises(error):
        model.fit(*regression_data(), epochs=3, batch_size=5, optimizer="sgd",
                  callbacks=[raising, after])
    _assert_consistent(model, weights, 2)
    assert raising.ended and after.ended
    assert after.seen == ([0, 1] if error is RuntimeError else [0])


def test_a_callback_raising_at_the_first_epochs_end_keeps_it(backend):
    weights = _per_epoch_weights(backend, 1)
    model = make(backend)
    with pytest.raises(RuntimeError, match="on_epoch_end failed"):
        model.fit(*regression_data(), epochs=3, batch_size=5, optimizer="sgd",
                  callbacks=[_Raising("on_epoch_end", at=0)])
    _assert_consistent(model, weights, 1)


def test_a_callback_raising_in_on_train_end_leaves_a_consistent_model(backend, tmp_path):
    """Early stopping's best weights (restored in its on_train_end) are the training
    state's too; the callbacks after the one that raised end as well (a backup lets its
    folder go: the next fit may use it)."""
    x, y = regression_data()
    model = make(backend)
    stopper = mlp.EarlyStopping("loss", patience=50)
    raising, after = _Raising("on_train_end"), _Raising("never")
    backup = mlp.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="on_train_end failed"):
        model.fit(x, y, epochs=4, batch_size=5, optimizer="sgd",
                  callbacks=[stopper, raising, after, backup])
    assert after.ended and model.epochs_trained_ == model.train_state_.epoch == 4
    assert model.params is model.train_state_.params is stopper.best_params
    assert not (tmp_path / "backup").exists()  # completed: the backup removed, lock let go
    model.fit(x, y, epochs=1, batch_size=5, callbacks=[backup])
    assert model.epochs_trained_ == 5


def test_a_resumed_backup_whose_first_step_fails_is_undone(backend, tmp_path):
    """A fit that resumed a backup (on_train_begin) and then fails before an epoch of its
    own completes leaves the model as the call found it; the backup stays to resume."""
    x, y = regression_data()
    folder = tmp_path / "backup"
    first = make(backend)
    with pytest.raises(RuntimeError):
        first.fit(x, y, epochs=4, batch_size=5, optimizer="sgd",
                  callbacks=[mlp.BackupAndRestore(folder), _Raising("on_epoch_end", at=1)])
    model = make(backend)
    before = _whole_state(model)
    with pytest.raises(RuntimeError, match="on_epoch_begin failed"):
        model.fit(x, y, epochs=4, batch_size=5, optimizer="sgd",
                  callbacks=[_Raising("on_epoch_begin", at=None), mlp.BackupAndRestore(folder)])
    _assert_same_state(model, before)
    model.fit(x, y, epochs=4, batch_size=5, optimizer="sgd",
              callbacks=[mlp.BackupAndRestore(folder)])
    assert model.history_.epoch == [0, 1, 2, 3]


def test_a_callback_cannot_restore_a_state_from_outside_its_fit():
    """A callback of a running fit that puts in a state taken before that fit is refused
    before anything changes, naming what to do; the fit keeps its epochs as for any
    callback error, and the model stays consistent (epoch count, history, state)."""
    x = np.random.default_rng(0).normal(size=(40, 3))
    y = x.sum(axis=1)
    model = mlp.MLP([3, 8, 1], seed=0)
    model.fit(x, y, epochs=2)
    old = model.snapshot_state()

    class Rewind(mlp.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 3:
                self.model.restore_state(old)

    with pytest.raises(ValueError, match="state taken outside that fit.*set_weights"):
        model.fit(x, y, epochs=4, callbacks=[Rewind()])
    assert model.epochs_trained_ == 4 == len(model.history_.epoch) == model.train_state_.epoch
    model.restore_state(old)  # after the fit: taken as any state
    assert model.epochs_trained_ == 2 and len(model.history_.epoch) == 2
