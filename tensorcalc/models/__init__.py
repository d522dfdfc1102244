"""tensorcalc.models: reusable model families."""

from .inception import InceptionBlock, InceptionNet  # noqa: F401
from .lenet import LeNet5  # noqa: F401
from .resnet import BasicBlock, ResNet, resnet_small  # noqa: F401
from .vgg import VGG  # noqa: F401
