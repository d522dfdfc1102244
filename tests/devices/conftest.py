import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # `import op_db`

from tensorcalc.devices import is_available  # noqa: E402

# The device axis: the CPU stand-in always (it is how CI catches host leaks), CUDA where a GPU
# is present (skipped only where none is).
DEVICES = [
    "standin",
    pytest.param("cuda", marks=pytest.mark.skipif(not is_available("cuda"),
                                                  reason="no CUDA GPU / CuPy here")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
