"""Neural networks of the experiments: the ODE block and the MNIST classifiers of the paper's Table 1."""

from .mnist import MLP, ODENet, ResNet
from .ode_block import ODEBlock, check_solver_config

__all__ = ["ODEBlock", "check_solver_config", "ODENet", "ResNet", "MLP"]
