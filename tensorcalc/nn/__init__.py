"""tensorcalc.nn: Module, Parameter, containers, layers, activations, losses, initialisers.

Layers hold parameters and call the composites of :mod:`tensorcalc.functional`; there is no
derivative code here.
"""

from . import init  # noqa: F401
from .activation import (  # noqa: F401
    CELU,
    ELU,
    GELU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    Mish,
    PReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Swish,
    Tanh,
)
from .attention import (  # noqa: F401  (attention and transformers)
    AdditiveAttention,
    LearnedPositionalEmbedding,
    MultiheadAttention,
    SinusoidalPositionalEncoding,
)
from .container import ModuleDict, ModuleList, Sequential  # noqa: F401
from .conv import (  # noqa: F401  (CNN work)
    AdaptiveAvgPool2d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    GlobalAvgPool2d,
    MaxPool2d,
)
from .dropout import Dropout, Dropout2d  # noqa: F401
from .linear import Bilinear, Embedding, Flatten, Identity, Linear  # noqa: F401
from .loss import (  # noqa: F401
    BCELoss,
    BCEWithLogitsLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    GaussianNLLLoss,
    HingeEmbeddingLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    MultiMarginLoss,
    NLLLoss,
    PoissonNLLLoss,
    SmoothL1Loss,
)
from .module import (  # noqa: F401
    IncompatibleKeys,
    Module,
    Parameter,
    StateDictError,
    functional_call,
)
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm  # noqa: F401
from .ode import ODEBlock  # noqa: F401  (neural ODEs)
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: F401
from .transformer import (  # noqa: F401
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
