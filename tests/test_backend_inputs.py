"""Every backend takes the same inputs and gives the same answers (issue 12):
any NumPy integer dtype for labels, any strides, read-only arrays, torch tensors
that require grad; values are never narrowed silently."""

from __future__ import annotations

import numpy as np
import pytest

import mlp

N, F, K = 24, 3, 3


def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, F))
    return x, np.arange(N) % K


def classifier(backend):
    return mlp.MLP([F, 5, K], loss="cross_entropy", backend=backend, seed=3)


def weights_after(backend, x, y, epochs=3):
    model = classifier(backend)
    model.fit(x, y, epochs=epochs, learning_rate=0.1, batch_size=8)
    return model


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64", "int8", "int16",
                                   "int32", "int64"])
def test_labels_of_any_integer_dtype_train_like_int64(backend, dtype):
    x, y = data()
    reference = weights_after("numpy", x, y)
    model = weights_after(backend, x, y.astype(dtype))
    for (W, b), (W0, b0) in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(W, W0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, b0, rtol=1e-5, atol=1e-6)
    classes = np.asarray(backend.to_numpy(model.predict_classes(x)))
    np.testing.assert_array_equal(classes, reference.predict_classes(x))
    assert model.evaluate(x, y.astype(dtype))["loss"] == pytest.approx(
        reference.evaluate(x, y)["loss"], rel=1e-5)


@pytest.mark.parametrize("label, dtype", [(2**31 + 5, "int64"), (2**32 + 2, "int64"),
                                          (2**32 + 2, "uint64"), (2**31, "uint32")])
def test_a_label_beyond_int32_is_refused_like_numpy_not_wrapped(backend, label, dtype):
    x, y = data()
    y = y.astype(dtype)
    y[4] = label
    model = classifier(backend)
    before = model.get_weights()
    with pytest.raises(ValueError, match=rf"class labels must be in 0\.\.{K - 1} .* "
                                         rf"labels from 0 to {label}$"):
        model.fit(x, y, epochs=1)
    for (W, b), (W0, b0) in zip(model.get_weights(), before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_reversed_and_strided_views_are_read_as_their_values(backend):
    x, y = data()
    big = np.zeros((2 * N, 2 * F))
    big[::2, ::2] = x
    reference = weights_after("numpy", np.ascontiguousarray(x[::-1]), y[::-1].copy())
    model = weights_after(backend, big[::2, ::2][::-1], y[::-1])
    for (W, _), (W0, _) in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(W, W0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(model.predict(x.T.copy().T[::-1])),
                               reference.predict(x[::-1]), rtol=1e-5, atol=1e-6)


def test_read_only_arrays_are_accepted(backend):
    x, y = data()
    x.flags.writeable = False
    y.flags.writeable = False
    model = weights_after(backend, x, y)
    reference = weights_after("numpy", x.copy(), y.copy())
    for (W, _), (W0, _) in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(W, W0, rtol=1e-5, atol=1e-6)
    arr = backend.asarray(x, "float32")
    assert backend.to_numpy(arr).shape == (N, F)


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64", "int64", "int8"])
def test_asarray_keeps_every_integer_value(backend, dtype):
    host = np.array([0, 7, 100, np.iinfo(dtype).max // 2], dtype=dtype)
    arr = backend.asarray(host)
    back = backend.to_numpy(arr)
    assert back.dtype.kind in "iu"
    assert [int(v) for v in back] == [int(v) for v in host]


def test_asarray_refuses_integers_the_library_cannot_hold():
    torch = pytest.importorskip("torch")  # noqa: F841 - only torch lacks a 64-bit unsigned type
    from mlp import backends
    be = backends.get_backend("torch")
    with pytest.raises(ValueError, match=r"from 0 to 18446744073709551615 \(dtype uint64\) do "
                                         r"not fit in int64"):
        be.asarray(np.array([0, 2**64 - 1], dtype=np.uint64))


def test_torch_inputs_that_require_grad_carry_no_graph():
    torch = pytest.importorskip("torch")
    x, y = data()
    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    yt_onehot = torch.tensor(np.eye(K)[y], dtype=torch.float32, requires_grad=True)
    reference = weights_after("numpy", x, y)
    for backend in ("torch", "numpy"):
        model = weights_after(backend, xt, yt_onehot)
        for W, b in model.params:
            for p in (W, b):
                assert getattr(p, "grad_fn", None) is None
                assert not getattr(p, "requires_grad", False)
        for (W, _), (W0, _) in zip(model.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(W, W0, rtol=1e-5, atol=1e-6)
        out = model.predict(xt)
        assert getattr(out, "grad_fn", None) is None
    assert xt.grad is None


def test_torch_unsigned_tensors_are_labels_too():
    torch = pytest.importorskip("torch")
    x, y = data()
    reference = weights_after("numpy", x, y)
    model = weights_after("torch", torch.tensor(x), torch.tensor(y.astype(np.int64)).to(
        torch.uint32))
    for (W, _), (W0, _) in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(W, W0, rtol=1e-5, atol=1e-6)
