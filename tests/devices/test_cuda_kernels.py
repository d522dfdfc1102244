"""The fused CUDA kernels (tensorcalc/devices/cuda.py): never used off the GPU; the GEMV sum's
axis bookkeeping checked on NumPy (the same code with NumPy as its array module); on a GPU, every
kernel against the generic CuPy path."""

import numpy as np
import pytest

from tensorcalc.devices import cuda, is_available
from tensorcalc.devices.gemv_sum import gemv_sum
from tensorcalc.ops._util import sum_axes


def test_cpu_and_standin_never_take_the_gpu_kernels():
    from tensorcalc.devices import standin

    assert not cuda.uses(np) and not cuda.uses(standin.xp)
    assert not cuda.on_cuda(np.zeros(3)) and not cuda.on_cuda(standin.xp.zeros(3))


def _layouts(rng):
    x = rng.standard_normal((4, 6, 5, 7))
    yield x, "NCHW"
    yield np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), "NHWC-backed"
    yield x[:, :, :, ::2], "strided (not dense)"
    yield rng.standard_normal((3, 1, 200, 60)), "unit axis"


@pytest.mark.parametrize("axis", [(0,), (0, 2, 3), (1,), (2, 3), (0, 1), (0, 3), (1, 2), (3,)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("innermost", [True, False])
def test_gemv_sum_matches_sum_on_every_layout(axis, keepdims, innermost):
    """The device-independent GEMV sum (devices/gemv_sum.py), run with NumPy as its module."""
    rng = np.random.default_rng(0)
    taken = 0
    for x, what in _layouts(rng):
        got = gemv_sum(np, x, axis, keepdims, min_size=1, innermost=innermost)
        if got is None:  # only where the memory is not dense, nothing / everything is summed,
            big = [a for a in range(x.ndim) if x.shape[a] != 1]  # or (CPU) the inner run is
            inner = min(big, key=lambda a: x.strides[a])          # summed
            assert what.startswith("strided") or all(a in axis for a in big) \
                or not any(a in axis for a in big) or (not innermost and inner in axis), what
            continue
        taken += 1
        ref = x.sum(axis=axis, keepdims=keepdims)
        assert got.shape == ref.shape, what
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=what)
    assert taken >= 1


@pytest.mark.parametrize("axis", [(0,), (0, 2, 3), (1,), (2, 3), (0, 3)])
def test_sum_axes_on_numpy_equals_sum(axis):
    """ops' forward sum: GEMVs only where the summed run is not innermost; same values."""
    rng = np.random.default_rng(1)
    x = np.ascontiguousarray(rng.standard_normal((8, 20, 20, 6)).astype(np.float32))
    x = x.transpose(0, 3, 1, 2)  # NCHW view of NHWC memory, 19,200 values (above the cut)
    for keepdims in (False, True):
        got = sum_axes(np, x, axis, keepdims)
        ref = x.astype(np.float64).sum(axis=axis, keepdims=keepdims)
        assert got.shape == ref.shape and got.dtype == x.dtype
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-4)


def test_reduce_sum_declines_small_and_integer_arrays():
    assert cuda.reduce_sum(np.ones((4, 4)), (0,)) is None  # below _MIN_SUM (and not CuPy)
    assert cuda.reduce_sum(np.ones((300, 300), dtype=np.int64), (0,)) is None


@pytest.mark.skipif(not is_available("cuda"), reason="no CUDA GPU / CuPy here")
def test_fused_kernels_match_the_generic_cupy_path():  # pragma: no cover - GPU only
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "gpu"))
    from profile_gpu import check_kernels

    for what, err in check_kernels():
        assert err == "declined" or isinstance(err, float) and err < 1e-5, what
