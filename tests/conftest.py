import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # `import op_db` from the tests


import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def threads():
    """Run a callable with T kernel threads and BLAS pinned to one thread; restore 'follow
    BLAS' afterwards. These tests are about the kernel pool: BLAS's own threads split a GEMV
    row sum differently (its rounding then depends on BLAS's thread count, a documented
    difference between 1 and 2 threads), and whether they were awake depended on the tests
    run before, so the T = 1 / T > 1 comparisons failed at OPENBLAS_NUM_THREADS=2 in some
    orders."""
    from threadpoolctl import threadpool_limits

    from tensorcalc import backend

    def run(t, fn):
        backend.set_kernel_threads(t)
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                return fn()
        finally:
            backend.set_kernel_threads(None)
    yield run
    backend.set_kernel_threads(None)


def same_bits(a, b):
    """a and b are the same array, bit for bit (dtype, shape and every byte)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), "bits differ"
