"""tensorcalc — deep learning built from its mathematics.

Tensors and hand-derived primitives on NumPy (CuPy on a GPU); reverse and forward mode automatic
differentiation; transforms (grad, jvp, vjp, jacobian, hessian, hvp); a numerical gradient check.
"""

from . import backend  # noqa: F401  (first: tunes BLAS/malloc before numpy loads)
from .autodiff import (  # noqa: F401
    backward, detect_anomaly, enable_grad, grad, gradients, hessian, hvp, is_grad_enabled,
    jacobian, jvp, no_grad, set_grad_enabled, value_and_grad, vjp,
)
from .backend import get_default_dtype, set_default_dtype  # noqa: F401
from .creation import (  # noqa: F401
    arange, as_tensor, eye, full, full_like, linspace, normal, ones, ones_like, rand, randn,
    tensor, uniform, zeros, zeros_like,
)
from .diagnostics import GradcheckError, gradcheck, gradgradcheck  # noqa: F401
from .functional import (  # noqa: F401
    argmax, argmin, clip, flatten, log_softmax, mean, softmax, std, var,
)
from .ops import (  # noqa: F401
    abs, add, affine, broadcast_to, cast, concat, cos, div, erf, exp, expand_dims, expm1, flip, getitem,
    log, log1p, logsumexp, matmul, max, maximum, min, minimum, mul, neg, pad, pow, relu,
    reshape, scatter_add, sigmoid, sin, softplus, split, sqrt, squeeze, stack, sub, sum, sum_to,
    swapaxes, take, tanh, transpose, where,
)
from .ops import fold, irfft2, linalg, rfft2, unfold  # noqa: F401
from .tensor import Tensor  # noqa: F401

# Subpackages above the core (imported after Tensor so they can use it).
from . import data, functional, models, nn, optim, serialization  # noqa: E402, F401, I001
from .serialization import (  # noqa: E402, F401
    CheckpointError, load_checkpoint, load_weights, save_checkpoint, save_weights,
)

__version__ = "0.1.0"
