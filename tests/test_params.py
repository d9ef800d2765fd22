"""The parameter constraints of `mlp.params`: one message form for every parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlp.params import Boolean, Callable, Integer, Options, Real, check, validate


def test_integer_accepts_numpy_integers_and_returns_python_int():
    value = check("patience", np.int64(3), [Integer(1)])
    assert value == 3 and type(value) is int


@pytest.mark.parametrize("bad, error", [(0, ValueError), (2.0, TypeError), (True, TypeError),
                                         ("5", TypeError), (np.True_, TypeError)])
def test_integer_refusals_name_the_argument(bad, error):
    with pytest.raises(error, match=r"^epochs must be an integer >= 1, got "):
        check("epochs", bad, [Integer(1)])


def test_real_accepts_numpy_floats_and_returns_python_float():
    value = check("min_delta", np.float32(0.25), [Real(0)])
    assert value == 0.25 and type(value) is float


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_real_refuses_out_of_range_and_non_finite(bad):
    with pytest.raises(ValueError, match=r"^alpha must be a finite number >= 0, got "):
        check("alpha", bad, [Real(0)])


def test_real_open_interval_message():
    with pytest.raises(ValueError, match=r"validation_split must be a finite number in \(0, 1\)"):
        check("validation_split", 1.0, [Real(0, 1, closed="neither")])


@pytest.mark.parametrize("bad", ["no", 1, 0, None, "False"])
def test_boolean_accepts_only_booleans(bad):
    with pytest.raises(TypeError, match=r"^early_stopping must be True or False, got "):
        check("early_stopping", bad, [Boolean()])
    assert check("early_stopping", np.True_, [Boolean()]) is True


def test_options_and_none():
    assert check("verbose", np.int64(2), [Options(0, 1, 2)]) == 2
    assert check("batch_size", None, [None, Integer(1)]) is None
    with pytest.raises(ValueError, match=r"^verbose must be one of 0, 1, 2, got 3$"):
        check("verbose", 3, [Options(0, 1, 2)])
    with pytest.raises(TypeError, match=r"^batch_size must be None or an integer >= 1"):
        check("batch_size", "64", [None, Integer(1)])


def test_callable_or_number():
    rules = [Real(0, closed="neither"), Callable()]
    assert check("learning_rate", np.float64(0.1), rules) == 0.1
    fn = lambda step: 0.1  # noqa: E731
    assert check("learning_rate", fn, rules) is fn
    with pytest.raises(TypeError, match=r"learning_rate must be a finite number > 0 or a "
                                        r"callable, got 'fast'"):
        check("learning_rate", "fast", rules)


def test_validate_checks_every_value_and_refuses_unknown_names():
    out = validate({"a": [Integer(0)], "b": [Boolean()]}, {"a": np.int32(4), "b": True})
    assert out == {"a": 4, "b": True}
    with pytest.raises(KeyError):
        validate({"a": [Integer(0)]}, {"c": 1})
