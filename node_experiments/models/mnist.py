"""The MNIST classifiers of the paper's Table 1 (Chen et al. 2018, section 3).

The convolutional networks follow the authors' reproduction code (torchdiffeq's ``odenet_mnist.py`` example):

- downsampling: a 3x3 convolution to ``width`` channels, then two 4x4 stride-2 convolutions with GroupNorm and
  ReLU between them (28x28 -> 26x26 -> 13x13 -> 6x6);
- a feature block at 6x6: one ODE block (ODE-Net, RK-Net) or ``num_blocks`` pre-activation residual blocks
  (ResNet), with the same layers inside, so that the ODE block is the residual stack's continuous limit;
- head: GroupNorm, ReLU, global average pooling and a linear layer.

Normalisation is ``GroupNorm(min(32, C), C)`` throughout. With ``width=64`` the ODE-Net has about 0.21M
parameters and the ResNet about 0.58M; the 1-hidden-layer MLP of 300 units has about 0.24M.

Beyond the paper, the ODE-Net takes ANODE's augmentation (Dupont, Doucet and Teh, NeurIPS 2019: ``augment_dim``
zero channels appended to the features before the ODE block, so that the flow has room to move them without its
trajectories crossing; the block and the head then work on ``width + augment_dim`` channels) and RNODE's penalties
(``regularization``, see ``regularization.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .ode_block import ODEBlock


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(32, channels) groups, the authors' normalisation."""
    return nn.GroupNorm(min(32, channels), channels)


def check_group_norm_width(width: int, name: str = "width") -> None:
    """A ValueError unless ``width`` channels can be normalised by ``group_norm`` (at most 32, or a multiple of 32)."""
    if width < 1 or (width > 32 and width % 32):
        raise ValueError(
            f"{name}={width} cannot be normalised by GroupNorm(min(32, {name}), {name}): use a width of at most 32 or "
            "a multiple of 32, e.g. 64."
        )


def downsampling(in_channels: int, width: int) -> nn.Sequential:
    """28x28 images to ``width`` x 6 x 6 features: 3x3 conv, then two 4x4 stride-2 convs."""
    check_group_norm_width(width)
    return nn.Sequential(
        nn.Conv2d(in_channels, width, kernel_size=3, stride=1),
        group_norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, kernel_size=4, stride=2, padding=1),
        group_norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, kernel_size=4, stride=2, padding=1),
    )


def classifier_head(width: int, num_classes: int) -> nn.Sequential:
    """GroupNorm, ReLU, global average pooling, linear."""
    return nn.Sequential(
        group_norm(width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


class ConcatConv2d(nn.Module):
    """A 3x3 convolution that also sees the time: ``t`` is appended to the input as a constant channel.

    This makes the vector field f(t, h) of the ODE block depend on t, as in the paper's ODE-Net.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 1, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        time_channel = t.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        return self.conv(torch.cat([time_channel, x], dim=1))


class ConvODEFunc(nn.Module):
    """The ODE-Net's vector field: norm, ReLU, time-conv, norm, ReLU, time-conv, norm."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = group_norm(width)
        self.conv1 = ConcatConv2d(width, width)
        self.norm2 = group_norm(width)
        self.conv2 = ConcatConv2d(width, width)
        self.norm3 = group_norm(width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, self.relu(self.norm1(h)))
        out = self.conv2(t, self.relu(self.norm2(out)))
        return self.norm3(out)


class ResBlock(nn.Module):
    """A pre-activation residual block (He et al. 2016): h + conv(relu(norm(conv(relu(norm(h))))))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = group_norm(width)
        self.conv1 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        self.norm2 = group_norm(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.norm1(h)))
        out = self.conv2(self.relu(self.norm2(out)))
        return h + out


class ZeroChannels(nn.Module):
    """ANODE's augmentation: ``channels`` zero channels appended to a batch of feature maps (N, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.new_zeros(x.shape[0], self.channels, *x.shape[2:])], dim=1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class ODENet(nn.Sequential):
    """ODE-Net (and, with ``solver["gradient"] = "backprop"``, RK-Net): downsampling, one ODE block, head.

    Args:
        in_channels, num_classes: of the data set.
        width: channels of the features (64 in the paper).
        solver: the ODE block's settings, the ``solver`` config group (method, rtol, atol, gradient, options,
            adjoint_options); see ``ODEBlock``.
        augment_dim: ANODE's zero channels appended before the ODE block (0: the paper's ODE-Net, module for
            module); ``width + augment_dim`` must suit GroupNorm (at most 32, or a multiple of 32).
        regularization: RNODE's penalty weights for the ODE block (``{"kinetic": w, "jacobian": w}``; None: none).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int,
        solver: Mapping[str, Any],
        augment_dim: int = 0,
        regularization: Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(augment_dim, bool) or not isinstance(augment_dim, int) or augment_dim < 0:
            raise ValueError(f"augment_dim={augment_dim!r} must be a whole number of channels >= 0 (0: none).")
        channels = width + augment_dim
        features = downsampling(in_channels, width)
        if augment_dim:  # inside the first module, so that the modules' names are the paper's ODE-Net's
            check_group_norm_width(channels, "width + augment_dim")
            features.append(ZeroChannels(augment_dim))
        super().__init__(
            features,
            ODEBlock(ConvODEFunc(channels), **solver, regularization=regularization),
            classifier_head(channels, num_classes),
        )


class ResNet(nn.Sequential):
    """The ResNet baseline: downsampling, ``num_blocks`` residual blocks (6 in the paper), head."""

    def __init__(self, in_channels: int, num_classes: int, width: int, num_blocks: int) -> None:
        super().__init__(
            downsampling(in_channels, width),
            *(ResBlock(width) for _ in range(num_blocks)),
            classifier_head(width, num_classes),
        )


class MLP(nn.Sequential):
    """The 1-hidden-layer MLP baseline (LeCun et al. 1998): flatten, linear, ReLU, linear."""

    def __init__(self, in_channels: int, image_size: int, hidden: int, num_classes: int) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
