"""tensorcalc — deep learning built from its mathematics.

Tensors and hand-derived primitives on NumPy (CuPy on a GPU); reverse and forward mode automatic
differentiation; transforms (grad, jvp, vjp, jacobian, hessian, hvp); a numerical gradient check;
layers, losses, optimisers, data sets and training on top.
"""
# ruff: noqa: F401, E402, I001  (the import order below is deliberate)

# First: tunes OpenBLAS / malloc through the environment before numpy is loaded.
from . import backend
from .backend import get_default_dtype, set_default_dtype

# The core: Tensor, primitives, engine and transforms.
from .tensor import Tensor
from .autodiff import (
    backward, checkpoint, custom_vjp, detect_anomaly, enable_grad, grad, gradients, hessian,
    hvp, is_grad_enabled, jacobian, jvp, no_grad, set_grad_enabled, tree_flatten, tree_map,
    tree_unflatten, value_and_grad, vjp,
)
from .creation import (
    arange, as_tensor, eye, full, full_like, linspace, normal, ones, ones_like, rand, randn,
    tensor, uniform, zeros, zeros_like,
)
from . import functional, ops
from .ops._util import PUBLIC as _PUBLIC

globals().update(_PUBLIC)  # tc.<op>: every @public wrapper (ops/ and functional/), generated
linalg = functional.linalg  # tc.linalg: ops.linalg's primitives and the composites
from .diagnostics import GradcheckError, gradcheck, gradcheck_module, gradgradcheck
from .diagnostics import explain  # noqa: E402  (tc.explain(model, x, loss_fn=...))

# Above the core: layers, optimisers, data, models, checkpoints.
from . import data, models, nn, optim, serialization
from .serialization import (
    CheckpointError, load_checkpoint, load_weights, save_checkpoint, save_weights,
)

# Training (the Loop, Steps, metrics): ``tc.train`` as an attribute, not only a subpackage.
from . import train
from . import distributed  # MPI data parallelism (mpi4py imported only under mpiexec)
from . import rl  # reinforcement learning (gymnasium imported only where an env is made)

__version__ = "0.1.0"
