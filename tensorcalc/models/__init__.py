"""tensorcalc.models: reusable model families."""

from .char_lm import CharLM  # noqa: F401
from .digit_cnn import DigitCNN  # noqa: F401
from .dqn import QNetwork  # noqa: F401
from .feedback_mlp import FeedbackMLP  # noqa: F401
from .gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator  # noqa: F401,E501
from .inception import InceptionBlock, InceptionNet  # noqa: F401
from .lenet import LeNet5  # noqa: F401
from .localization import LocalizationNet  # noqa: F401
from .mlp import build_mlp  # noqa: F401
from .odenet import ConvDynamics, ODENet, SpiralDynamics  # noqa: F401
from .resnet import BasicBlock, ResNet, resnet_small  # noqa: F401
from .seq_classifier import SeqClassifier  # noqa: F401
from .vae import VAE  # noqa: F401
from .vgg import VGG  # noqa: F401
