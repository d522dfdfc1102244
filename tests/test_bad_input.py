"""Bad input gets a clear error naming the op, the shapes and the rule — never a silent answer."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc


def test_matmul_shape_mismatch_names_shapes():
    x = tc.zeros((32, 28, 28))
    w = tc.zeros((784, 256))
    with pytest.raises(ValueError,
                       match=r"matmul: x\[\.\.\., 784\] @ W\[784, 256\].*\(32, 28, 28\)"):
        x @ w


def test_broadcast_mismatch_names_op_and_rule():
    with pytest.raises(ValueError, match=r"add: shapes \(3, 4\), \(5,\) do not broadcast"):
        tc.zeros((3, 4)) + tc.zeros(5)
    with pytest.raises(ValueError, match="broadcast_to: cannot broadcast"):
        tc.broadcast_to(tc.zeros(3), (2, 4))


def test_concat_and_reshape_mismatch():
    with pytest.raises(ValueError, match="concat: shapes .* must agree on every axis but axis 0"):
        tc.concat([tc.zeros((2, 3)), tc.zeros((2, 4))], axis=0)
    with pytest.raises(ValueError, match=r"reshape: cannot reshape \(3, 4\) \(12 elements\)"):
        tc.zeros((3, 4)).reshape(5, 3)


def test_backward_of_non_scalar_needs_grad_outputs():
    x = tc.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="not a scalar; pass grad_outputs"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.ones(3))
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_requires_grad_on_integer_tensor_is_type_error():
    with pytest.raises(TypeError, match="only float tensors can require gradients"):
        tc.tensor([1, 2, 3], requires_grad=True)
    t = tc.arange(3)
    with pytest.raises(TypeError):
        t.requires_grad = True


def test_in_place_change_after_save_is_detected_at_backward():
    x = tc.tensor(np.ones(3))
    w = tc.tensor(np.ones(3), requires_grad=True)
    y = (w * x).sum()  # mul saves x for w's gradient
    x.add_(1.0)
    with pytest.raises(RuntimeError, match=r"mul: input 1 .* modified in place"):
        y.backward()


def test_in_place_on_leaf_requiring_grad_refused_outside_no_grad():
    w = tc.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place change of a tensor that requires grad"):
        w.add_(1.0)
    with tc.no_grad():
        w.add_(1.0)
    assert w.numpy().tolist() == [2.0, 2.0, 2.0]


def test_detect_anomaly_names_first_op_producing_nan():
    x = tc.tensor(np.array([-1.0, 4.0]), requires_grad=True)
    with tc.detect_anomaly():
        with np.errstate(invalid="ignore"):
            with pytest.raises(FloatingPointError,
                               match="sqrt produced a NaN or Inf in its forward"):
                tc.sqrt(x) * 2.0


def test_detect_anomaly_in_backward():
    x = tc.tensor(np.array([0.0, 4.0]), requires_grad=True)
    y = tc.sqrt(x).sum()
    with tc.detect_anomaly():
        with np.errstate(divide="ignore"):
            with pytest.raises(FloatingPointError,
                               match="sqrt produced a NaN or Inf in its backward"):
                y.backward()


def test_axis_out_of_range_and_bad_squeeze():
    with pytest.raises(ValueError, match="sum: axis 2 is out of range"):
        tc.zeros((2, 2)).sum(axis=2)
    with pytest.raises(ValueError, match="squeeze: axis 0 has size 2"):
        tc.squeeze(tc.zeros((2, 1)), 0)


def test_take_out_of_range_and_non_integer():
    w = tc.zeros((5, 3))
    with pytest.raises(IndexError, match="take: index 7 is out of range for axis 0 of size 5"):
        tc.take(w, np.array([1, 7]))
    with pytest.raises(TypeError, match="take: indices must be integers"):
        tc.take(w, np.array([1.0]))


def test_grad_of_non_scalar_function():
    with pytest.raises(ValueError, match="grad: f must return a scalar"):
        tc.grad(lambda x: x * 2.0)(np.ones(3))


# ------------------------------------------------------------------------------ user data
def test_check_numeric_names_what_a_file_holds():
    from tensorcalc.data import DataError, check_numeric

    assert check_numeric(np.ones((2, 3), np.uint8), "x").dtype == np.uint8
    assert check_numeric([True, False], "x").dtype == bool
    for bad, words in [(np.array(["a"]), "holds text"), (np.array([b"a"]), "holds bytes"),
                       (np.ones(2, np.complex64), "holds complex numbers"),
                       (np.array([None, 1]), "holds Python objects"),
                       (np.array(["2020-01-01"], "datetime64[D]"), "holds dates"),
                       (np.zeros((0, 28, 28)), r"holds no values \(shape \(0, 28, 28\)\)")]:
        with pytest.raises(DataError, match="inputs: " + words):
            check_numeric(bad, "inputs")
    assert check_numeric(np.zeros(0), "x", allow_empty=True).size == 0
    assert issubclass(DataError, ValueError)


def test_data_checks_raise_data_error():
    from tensorcalc.data import DataError, check_finite, check_labels

    with pytest.raises(DataError, match="row 1 contains NaN/Inf"):
        check_finite(np.array([[0.0], [np.nan]]), "d")
    with pytest.raises(DataError, match="label 7 at row 0 is out of range"):
        check_labels(np.array([7]), 3, "y")


def test_settings_helpers_say_what_was_expected():
    from tensorcalc.data import check_at_least, check_fraction, check_widths

    assert check_fraction(0.0, "--dropout") == 0.0 and check_fraction(1, "p", closed=True) == 1
    for v in (1.0, 1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"--dropout must be in \[0, 1\)"):
            check_fraction(v, "--dropout")
    assert check_at_least(0, "--shift", integer=True) == 0
    with pytest.raises(ValueError, match="--shift must be an integer >= 0, got -1"):
        check_at_least(-1, "--shift", integer=True)
    with pytest.raises(ValueError, match="--shift must be an integer >= 0, got 1.5"):
        check_at_least(1.5, "--shift", integer=True)
    with pytest.raises(ValueError, match="--temperature must be a number >= 0.5"):
        check_at_least(float("inf"), "--temperature", 0.5)
    assert check_widths((256, np.int64(128)), "--hidden") == (256, 128)
    assert check_widths(64, "--hidden") == (64,) and check_widths((), "--hidden") == ()
    for bad in ((-5,), (0, 10), (2.5,), (True,), "256"):
        with pytest.raises(ValueError, match="--hidden must be widths >= 1"):
            check_widths(bad, "--hidden")
    with pytest.raises(ValueError, match="--channels must be widths >= 1"):
        check_widths((), "--channels", allow_empty=False)
