import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # `import op_db` from the tests


import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def threads():
    """Run a callable with T kernel threads; restore 'follow BLAS' afterwards."""
    from tensorcalc import backend

    def run(t, fn):
        backend.set_kernel_threads(t)
        try:
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
