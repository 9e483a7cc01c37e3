"""Neural networks of the experiments: the ODE block and the MNIST classifiers of the paper's Table 1."""

from .mnist import MLP, ODENet, ResNet
from .ode_block import ODEBlock

__all__ = ["ODEBlock", "ODENet", "ResNet", "MLP"]
