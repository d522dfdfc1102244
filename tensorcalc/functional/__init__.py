"""Composites only: functions built from primitives. No derivative code here, ever.

``import tensorcalc.functional as F``: activations, losses, linear, normalisation, dropout and
regularisation helpers, besides the basic statistics and softmax.
"""

from . import (
    boxes,  # noqa: F401  (F.boxes: IoU and box losses)
    generative,  # noqa: F401  (F.generative: ELBO, KL, IWAE, GAN losses, gradient penalty)
    linalg,  # noqa: F401  (tc.linalg)
)
from .activations import (  # noqa: F401
    celu,
    elu,
    gelu,
    hard_sigmoid,
    hard_swish,
    hard_tanh,
    leaky_relu,
    log_sigmoid,
    mish,
    prelu,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softplus,
    softsign,
    swish,
    tanh,
)
from .attention import (  # noqa: F401  (attention composites)
    additive_attention,
    causal_mask,
    dot_attention,
    general_attention,
    multi_head_attention,
    scaled_dot_product_attention,
)
from .basic import (  # noqa: F401
    argmax,
    argmin,
    clip,
    flatten,
    log_softmax,
    mean,
    safe_sqrt,
    softmax,
    split,
    std,
    var,
)
from .conv import conv1d, conv2d, conv_transpose2d  # noqa: F401  (CNN work)
from .dropout import dropout, dropout2d  # noqa: F401
from .fftconv import conv2d_fft  # noqa: F401
from .linear import bilinear, embedding, linear  # noqa: F401
from .losses import (  # noqa: F401
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cosine_embedding_loss,
    cross_entropy,
    gaussian_nll_loss,
    hinge_embedding_loss,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    multi_margin_loss,
    nll_loss,
    poisson_nll_loss,
    smooth_l1_loss,
)
from .normalization import batch_norm, group_norm, layer_norm  # noqa: F401
from .ode import ODEStats, odeint  # noqa: F401  (ODE solvers; tc.odeint)
from .pool import (  # noqa: F401
    adaptive_avg_pool2d,
    avg_pool2d,
    global_avg_pool2d,
    max_pool2d,
)
from .regularization import l1_penalty, l2_penalty, max_norm_  # noqa: F401
from .rnn import gru, gru_cell, lstm, lstm_cell, rnn, rnn_cell  # noqa: F401
